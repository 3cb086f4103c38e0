/*
 * test_nat_wire.c - the NAT service's messages (nat/nat_wire.c): a round
 * trip per type, and a table of malformed bodies, each refused by the codec
 * on its own and, sealed and sent to a node, dropped and counted by its
 * NAT service with nothing answered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "nat.h"
#include "nat_wire.h"
#include "netsim.h"

static const uint8_t NONCE[NAT_NONCE_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t COOKIE[DHT_TOKEN_LEN] = {0xc0, 0x0c, 0x1e};
static uint8_t BLOOM[NAT_BLOOM_LEN], PK[DHT_PK_LEN];

static dht_addr v4(void) {
  dht_addr a;
  memset(&a, 0, sizeof a);
  a.family = DHT_AF_INET;
  a.ip[0] = 198;
  a.ip[1] = 18;
  a.ip[2] = 7;
  a.ip[3] = 9;
  a.port = 40001;
  return a;
}

static void roundtrip(const nat_wire_msg *m) {
  uint8_t buf[DHT_MAX_BODY];
  dht_ssize n = nat_wire_encode(buf, sizeof buf, m);
  assert_true(n > 0);
  nat_wire_msg d;
  assert_int_equal(nat_wire_decode(&d, buf, (size_t)n), 0);
  assert_int_equal(d.type, m->type);
  assert_int_equal(d.txid, m->txid);
  uint8_t again[DHT_MAX_BODY];
  dht_ssize n2 = nat_wire_encode(again, sizeof again, &d);
  assert_int_equal(n2, n);
  assert_memory_equal(again, buf, (size_t)n);
  /* every shorter prefix and one byte more are refused */
  for (dht_ssize k = 0; k < n; k++)
    assert_int_not_equal(nat_wire_decode(&d, buf, (size_t)k), 0);
  buf[n] = 0xc0;
  assert_int_equal(nat_wire_decode(&d, buf, (size_t)n + 1), DHT_ERR_PROTO);
  /* too small a buffer */
  assert_int_equal(nat_wire_encode(buf, (size_t)n - 1, m), DHT_ERR_NOBUF);
}

static void test_roundtrips(void **state) {
  (void)state;
  memset(BLOOM, 0xa5, sizeof BLOOM);
  memset(PK, 0x33, sizeof PK);
  nat_wire_msg m = {.type = NAT_T_DIAL_REQ, .txid = 0xdeadbeef};
  m.u.dial_req.port = 40001;
  m.u.dial_req.nonce = NONCE;
  m.u.dial_req.cookie = COOKIE;
  m.u.dial_req.exclude = BLOOM;
  roundtrip(&m);
  m.u.dial_req.exclude = NULL; /* the filter is optional */
  roundtrip(&m);
  nat_wire_msg r = {.type = NAT_T_DIAL_RESP, .txid = 7};
  r.u.dial_resp.status = NAT_W_NO_PROBER;
  roundtrip(&r);
  r.type = NAT_T_DIAL_FWD_ACK;
  roundtrip(&r);
  nat_wire_msg f = {.type = NAT_T_DIAL_FWD, .txid = 1};
  f.u.dial_fwd.target = v4();
  f.u.dial_fwd.pk = PK;
  f.u.dial_fwd.nonce = NONCE;
  roundtrip(&f);
  f.u.dial_fwd.target.family = DHT_AF_INET6;
  f.u.dial_fwd.target.ip[15] = 1;
  roundtrip(&f);
  nat_wire_msg p = {.type = NAT_T_PROBE, .txid = 2};
  p.u.probe.nonce = NONCE;
  roundtrip(&p);
  nat_wire_msg a = {.type = NAT_T_PROBE_ACK, .txid = 3};
  roundtrip(&a);
  /* vouching: VOUCH_REQ is DIAL_FWD's layout, VOUCH_ACK a status, CHECK
   * names the asker, CHECK_ACK nothing, VOUCHED the nonce */
  nat_wire_msg vq = f;
  vq.type = NAT_T_VOUCH_REQ;
  roundtrip(&vq);
  vq.u.vouch_req.target = v4();
  roundtrip(&vq);
  nat_wire_msg va = {.type = NAT_T_VOUCH_ACK, .txid = 9};
  va.u.vouch_ack.status = NAT_W_REFUSED;
  roundtrip(&va);
  nat_wire_msg c = {.type = NAT_T_CHECK, .txid = 0xffffffff};
  c.u.check.nonce = NONCE;
  c.u.check.pk = PK;
  c.u.check.asker = v4();
  roundtrip(&c);
  c.u.check.asker = f.u.dial_fwd.target; /* IPv6 */
  roundtrip(&c);
  nat_wire_msg ca = {.type = NAT_T_CHECK_ACK, .txid = 4};
  roundtrip(&ca);
  nat_wire_msg vd = {.type = NAT_T_VOUCHED, .txid = 5};
  vd.u.vouched.nonce = NONCE;
  roundtrip(&vd);
  /* hole punching */
  nat_wire_msg reg = {.type = NAT_T_INTRO_REG, .txid = 11};
  reg.u.punch.ms = 37;
  reg.u.punch.cookie = COOKIE;
  roundtrip(&reg); /* no candidates */
  reg.u.punch.ncands = 2;
  reg.u.punch.cands[0] = v4();
  reg.u.punch.cands[1] = f.u.dial_fwd.target; /* IPv6 */
  roundtrip(&reg);
  nat_wire_msg pr = {.type = NAT_T_PUNCH_REQ, .txid = 12};
  pr.u.punch.pk = PK;
  pr.u.punch.nonce = NONCE;
  pr.u.punch.ms = NAT_WAIT_MAX_MS;
  pr.u.punch.cookie = COOKIE;
  pr.u.punch.ncands = NAT_CANDS;
  for (int i = 0; i < NAT_CANDS; i++) {
    pr.u.punch.cands[i] = v4();
    pr.u.punch.cands[i].port = (uint16_t)(1000 + i);
  }
  roundtrip(&pr);
  nat_wire_msg pf = pr;
  pf.type = NAT_T_PUNCH_FWD;
  pf.u.punch.cookie = NULL;
  roundtrip(&pf);
  nat_wire_msg pa = {.type = NAT_T_PUNCH_ACK, .txid = 13};
  pa.u.punch.status = NAT_W_UNKNOWN;
  pa.u.punch.ms = 12;
  pa.u.punch.ncands = 1;
  pa.u.punch.cands[0] = v4();
  roundtrip(&pa);
  nat_wire_msg ho = {.type = NAT_T_HOLE, .txid = 14};
  ho.u.hole.nonce = NONCE;
  roundtrip(&ho);
  nat_wire_msg rq = {.type = NAT_T_RELAY_REQ, .txid = 15};
  rq.u.relay_req.pk = PK;
  rq.u.relay_req.nonce = NONCE;
  roundtrip(&rq);
  nat_wire_msg ra = {.type = NAT_T_RELAY_ACK, .txid = 16};
  ra.u.dial_resp.status = NAT_W_PENDING;
  roundtrip(&ra);
  nat_wire_msg kp = {.type = NAT_T_KEEP, .txid = 17};
  roundtrip(&kp);
  kp.type = NAT_T_KEEP_ACK;
  roundtrip(&kp);
  /* the encoder refuses what its reader would drop */
  uint8_t buf[256];
  nat_wire_msg bad = pr;
  bad.u.punch.ncands = NAT_CANDS + 1;
  assert_int_equal(nat_wire_encode(buf, sizeof buf, &bad), DHT_ERR_INVAL);
  bad = pr;
  bad.u.punch.cands[1].port = 0;
  assert_int_equal(nat_wire_encode(buf, sizeof buf, &bad), DHT_ERR_INVAL);
  bad = pr;
  bad.u.punch.ms = NAT_WAIT_MAX_MS + 1;
  assert_int_equal(nat_wire_encode(buf, sizeof buf, &bad), DHT_ERR_INVAL);
  bad = pr;
  bad.u.punch.cookie = NULL;
  assert_int_equal(nat_wire_encode(buf, sizeof buf, &bad), DHT_ERR_INVAL);
  bad = pf;
  bad.u.punch.nonce = NULL;
  assert_int_equal(nat_wire_encode(buf, sizeof buf, &bad), DHT_ERR_INVAL);
  bad = ho;
  bad.u.hole.nonce = NULL;
  assert_int_equal(nat_wire_encode(buf, sizeof buf, &bad), DHT_ERR_INVAL);
  bad = m;
  bad.u.dial_req.port = 0;
  assert_int_equal(nat_wire_encode(buf, sizeof buf, &bad), DHT_ERR_INVAL);
  bad = f;
  bad.u.dial_fwd.target.port = 0;
  assert_int_equal(nat_wire_encode(buf, sizeof buf, &bad), DHT_ERR_INVAL);
  bad.type = 0x50;
  assert_int_equal(nat_wire_encode(buf, sizeof buf, &bad), DHT_ERR_INVAL);
  bad = c;
  bad.u.check.asker.port = 0;
  assert_int_equal(nat_wire_encode(buf, sizeof buf, &bad), DHT_ERR_INVAL);
  bad = c;
  bad.u.check.pk = NULL;
  assert_int_equal(nat_wire_encode(buf, sizeof buf, &bad), DHT_ERR_INVAL);
  bad = vd;
  bad.u.vouched.nonce = NULL;
  assert_int_equal(nat_wire_encode(buf, sizeof buf, &bad), DHT_ERR_INVAL);
}

/* ---- malformed bodies ------------------------------------------------------ */

typedef struct bad {
  const char *what;
  uint8_t body[96];
  size_t len;
  int want; /* DHT_ERR_PROTO, or DHT_ERR_NOTFOUND for an unknown type */
} bad;

static int nbad;
static bad bads[80];

/* Builds [type, txid=5, fields...] with dht_wire; fields given as a small
 * program: 'u' uint, 'b' bin of the given length, 'n' nil, 't' true. */
static void add(const char *what, int want, uint8_t type, int arity, const char *prog,
                const uint64_t *vals) {
  bad *b = &bads[nbad++];
  b->what = what;
  b->want = want;
  dht_wire_w w;
  dht_wire_w_init(&w, b->body, sizeof b->body);
  dht_wire_w_array(&w, (uint32_t)arity);
  dht_wire_w_uint(&w, type);
  dht_wire_w_uint(&w, 5);
  static const uint8_t zeros[64];
  for (int i = 0; prog[i]; i++) {
    switch (prog[i]) {
    case 'u':
      dht_wire_w_uint(&w, vals[i]);
      break;
    case 'b':
      dht_wire_w_bin(&w, zeros, (size_t)vals[i]);
      break;
    case 'n':
      dht_wire_w_nil(&w);
      break;
    case 'a':
      dht_wire_w_array(&w, (uint32_t)vals[i]);
      break;
    case 'x': /* an IPv4 address with port 4000 */
      dht_wire_w_bin(&w, (const uint8_t[]){198, 18, 7, 9, 0x0f, 0xa0}, 6);
      break;
    default:
      dht_wire_w_bool(&w, true);
      break;
    }
  }
  assert_int_equal(w.err, 0);
  b->len = w.len;
}

static void build_table(void) {
  nbad = 0;
  const int P = DHT_ERR_PROTO;
  /* DIAL_REQ [t, txid, port, nonce16, cookie16, exclude0|32] */
  add("dial_req ok-shape, port 0", P, 0x40, 6, "ubbb", (uint64_t[]){0, 16, 16, 32});
  add("dial_req port 65536", P, 0x40, 6, "ubbb", (uint64_t[]){65536, 16, 16, 0});
  add("dial_req nonce 15", P, 0x40, 6, "ubbb", (uint64_t[]){4000, 15, 16, 0});
  add("dial_req nonce 17", P, 0x40, 6, "ubbb", (uint64_t[]){4000, 17, 16, 0});
  add("dial_req cookie 15", P, 0x40, 6, "ubbb", (uint64_t[]){4000, 16, 15, 0});
  add("dial_req exclude 31", P, 0x40, 6, "ubbb", (uint64_t[]){4000, 16, 16, 31});
  add("dial_req exclude 33", P, 0x40, 6, "ubbb", (uint64_t[]){4000, 16, 16, 33});
  add("dial_req arity 5", P, 0x40, 5, "ubb", (uint64_t[]){4000, 16, 16});
  add("dial_req arity 7", P, 0x40, 7, "ubbbu", (uint64_t[]){4000, 16, 16, 0, 1});
  add("dial_req port nil", P, 0x40, 6, "nbbb", (uint64_t[]){0, 16, 16, 0});
  add("dial_req nonce is a uint", P, 0x40, 6, "uubb", (uint64_t[]){4000, 16, 16, 0});
  /* DIAL_RESP, DIAL_FWD_ACK [t, txid, status] */
  add("dial_resp status 256", P, 0x41, 3, "u", (uint64_t[]){256});
  add("dial_resp status bool", P, 0x41, 3, "t", (uint64_t[]){0});
  add("dial_resp arity 2", P, 0x41, 2, "", (uint64_t[]){0});
  add("fwd_ack status bin", P, 0x43, 3, "b", (uint64_t[]){1});
  /* DIAL_FWD [t, txid, target 6|18, pk32, nonce16] */
  add("dial_fwd target 7", P, 0x42, 5, "bbb", (uint64_t[]){7, 32, 16});
  add("dial_fwd target 0", P, 0x42, 5, "bbb", (uint64_t[]){0, 32, 16});
  add("dial_fwd target port 0 (zeros)", P, 0x42, 5, "bbb", (uint64_t[]){6, 32, 16});
  add("dial_fwd pk 31", P, 0x42, 5, "bbb", (uint64_t[]){6, 31, 16});
  add("dial_fwd nonce 0", P, 0x42, 5, "bbb", (uint64_t[]){6, 32, 0});
  add("dial_fwd arity 4", P, 0x42, 4, "bb", (uint64_t[]){6, 32});
  /* PROBE [t, txid, nonce16], PROBE_ACK [t, txid] */
  add("probe nonce 15", P, 0x44, 3, "b", (uint64_t[]){15});
  add("probe arity 2", P, 0x44, 2, "", (uint64_t[]){0});
  add("probe_ack arity 3", P, 0x45, 3, "u", (uint64_t[]){0});
  /* VOUCH_REQ [t, txid, target6|18, pk32, nonce16], VOUCH_ACK [t, txid, status] */
  add("vouch_req target 5", P, 0x46, 5, "bbb", (uint64_t[]){5, 32, 16});
  add("vouch_req target port 0 (zeros)", P, 0x46, 5, "bbb", (uint64_t[]){18, 32, 16});
  add("vouch_req pk 33", P, 0x46, 5, "bbb", (uint64_t[]){6, 33, 16});
  add("vouch_req nonce 15", P, 0x46, 5, "bbb", (uint64_t[]){6, 32, 15});
  add("vouch_req arity 6", P, 0x46, 6, "bbbu", (uint64_t[]){6, 32, 16, 0});
  add("vouch_ack status 256", P, 0x47, 3, "u", (uint64_t[]){256});
  add("vouch_ack status nil", P, 0x47, 3, "n", (uint64_t[]){0});
  /* CHECK [t, txid, nonce16, asker_pk32, asker6|18] */
  add("check nonce 17", P, 0x48, 5, "bbb", (uint64_t[]){17, 32, 6});
  add("check pk 0", P, 0x48, 5, "bbb", (uint64_t[]){16, 0, 6});
  add("check asker 19", P, 0x48, 5, "bbb", (uint64_t[]){16, 32, 19});
  add("check asker port 0 (zeros)", P, 0x48, 5, "bbb", (uint64_t[]){16, 32, 6});
  add("check arity 4", P, 0x48, 4, "bb", (uint64_t[]){16, 32});
  /* CHECK_ACK [t, txid], VOUCHED [t, txid, nonce16] */
  add("check_ack arity 3", P, 0x49, 3, "u", (uint64_t[]){0});
  add("vouched nonce 32", P, 0x4a, 3, "b", (uint64_t[]){32});
  add("vouched nonce uint", P, 0x4a, 3, "u", (uint64_t[]){16});
  add("vouched arity 4", P, 0x4a, 4, "bu", (uint64_t[]){16, 0});
  /* INTRO_REG [t, txid, rtt_ms, cands, cookie16] */
  add("intro_reg ms 5001", P, 0x4b, 5, "uab", (uint64_t[]){5001, 0, 16});
  add("intro_reg 5 cands", P, 0x4b, 5, "uaxxxxxb", (uint64_t[]){1, 5, 0, 0, 0, 0, 0, 16});
  add("intro_reg cand port 0 (zeros)", P, 0x4b, 5, "uabb", (uint64_t[]){1, 1, 6, 16});
  add("intro_reg cand 7 bytes", P, 0x4b, 5, "uabb", (uint64_t[]){1, 1, 7, 16});
  add("intro_reg cands not an array", P, 0x4b, 5, "uxb", (uint64_t[]){1, 0, 16});
  add("intro_reg array short", P, 0x4b, 5, "uaxb", (uint64_t[]){1, 2, 0, 16});
  add("intro_reg cookie 15", P, 0x4b, 5, "uab", (uint64_t[]){1, 0, 15});
  add("intro_reg arity 4 (no cookie)", P, 0x4b, 4, "ua", (uint64_t[]){1, 0});
  /* PUNCH_REQ [t, txid, pk32, nonce16, ms, cands, cookie16], PUNCH_FWD without the cookie */
  add("punch_req pk 31", P, 0x4c, 8, "bbuab", (uint64_t[]){31, 16, 0, 0, 16});
  add("punch_req nonce 17", P, 0x4c, 8, "bbuab", (uint64_t[]){32, 17, 0, 0, 16});
  add("punch_req ms nil", P, 0x4c, 8, "bbnab", (uint64_t[]){32, 16, 0, 0, 16});
  add("punch_req cookie 17", P, 0x4c, 8, "bbuab", (uint64_t[]){32, 16, 0, 0, 17});
  add("punch_req arity 7 (no cookie)", P, 0x4c, 7, "bbua", (uint64_t[]){32, 16, 0, 0});
  add("punch_fwd arity 6", P, 0x4d, 6, "bbu", (uint64_t[]){32, 16, 0});
  add("punch_fwd wait 65535", P, 0x4d, 7, "bbua", (uint64_t[]){32, 16, 65535, 0});
  /* PUNCH_ACK [t, txid, status, ms, cands] */
  add("punch_ack status 256", P, 0x4e, 5, "uua", (uint64_t[]){256, 0, 0});
  add("punch_ack cands nil", P, 0x4e, 5, "uun", (uint64_t[]){0, 0, 0});
  /* HOLE [t, txid, nonce16] */
  add("hole nonce 15", P, 0x4f, 3, "b", (uint64_t[]){15});
  add("hole arity 2", P, 0x4f, 2, "", (uint64_t[]){0});
  /* RELAY_REQ [t, txid, pk32, nonce16], RELAY_ACK [t, txid, status], KEEP(_ACK) [t, txid] */
  add("relay_req pk 33", P, 0x50, 4, "bb", (uint64_t[]){33, 16});
  add("relay_req nonce 0", P, 0x50, 4, "bb", (uint64_t[]){32, 0});
  add("relay_req arity 3", P, 0x50, 3, "b", (uint64_t[]){32});
  add("relay_ack status 256", P, 0x51, 3, "u", (uint64_t[]){256});
  add("keep arity 3", P, 0x52, 3, "u", (uint64_t[]){0});
  add("keep_ack arity 3", P, 0x53, 3, "n", (uint64_t[]){0});
  /* types of our range no version knows: ignored, not malformed */
  add("type 0x54", DHT_ERR_NOTFOUND, 0x54, 2, "", (uint64_t[]){0});
  add("type 0x5f", DHT_ERR_NOTFOUND, 0x5f, 3, "u", (uint64_t[]){1});
}

static void test_malformed_codec(void **state) {
  (void)state;
  build_table();
  for (int i = 0; i < nbad; i++) {
    nat_wire_msg m;
    int rv = nat_wire_decode(&m, bads[i].body, bads[i].len);
    if (rv != bads[i].want)
      fail_msg("%s: decode gave %d, want %d", bads[i].what, rv, bads[i].want);
  }
  printf("%d malformed bodies refused by the codec\n", nbad);
}

/* Each malformed body, sent to a node, is dropped and counted by its NAT
 * service, and nothing goes back. */
static void test_malformed_dropped(void **state) {
  (void)state;
  build_table();
  netsim_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.n = 2;
  cfg.seed = tu_seed("nat_wire");
  dht_settings_default(&cfg.settings);
  netsim *ns;
  assert_int_equal(netsim_new(&ns, &cfg), 0);
  nat_svc *n;
  dht_callbacks cb = {netsim_rng(ns), tu_rand_cb, NULL};
  assert_int_equal(nat_svc_new(&n, netsim_engine(ns, 1), NULL, &cb, NULL, netsim_now(ns)), 0);
  dht *e0 = netsim_engine(ns, 0);
  dht_peer p1 = netsim_peer(ns, 1);
  /* node 1 proves itself to node 0 first (a PING answered), so that node
   * 0's notices may go out */
  assert_true(dht_ping(e0, &p1, netsim_now(ns)) > 0);
  netsim_touch(ns, 0);
  netsim_run(ns, netsim_now(ns) + 1000, NULL, NULL);
  dht_stats s0, s1;
  dht_get_stats(netsim_engine(ns, 1), &s0);
  nat_status st0, st1;
  nat_get_status(n, netsim_now(ns), &st0);
  for (int i = 0; i < nbad; i++)
    assert_int_equal(dht_svc_send(e0, &p1, NULL, bads[i].body, bads[i].len), 0);
  netsim_touch(ns, 0);
  netsim_run(ns, netsim_now(ns) + 2000, NULL, NULL);
  dht_get_stats(netsim_engine(ns, 1), &s1);
  nat_get_status(n, netsim_now(ns), &st1);
  printf("%d malformed datagrams: %llu dropped by the NAT service, %llu datagrams back\n", nbad,
         (unsigned long long)(st1.dropped - st0.dropped),
         (unsigned long long)(s1.tx_packets - s0.tx_packets));
  assert_int_equal(st1.dropped - st0.dropped, (uint64_t)nbad);
  assert_int_equal(s1.tx_packets, s0.tx_packets);
  nat_svc_del(n);
  netsim_del(ns);
}

int main(void) {
  if (sodium_init() < 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrips),
      cmocka_unit_test(test_malformed_codec),
      cmocka_unit_test(test_malformed_dropped),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

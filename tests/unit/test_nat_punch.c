/*
 * test_nat_punch.c - hole punching at the lowest layer: 16 engines on
 * netsim (counter clock, 10 ms links), each with the NAT service; two of
 * them, A and B, are clients behind filtering NATs (netsim_set_filter:
 * address- and port-dependent, what most home routers do), so neither can
 * reach the other until both sent to each other.  A punches to B through
 * an introducer named in B's record; then a service's request to B's key
 * (no address) takes the path, both ways.  Also: the path is kept alive,
 * then dropped when idle; a punch through introducers that do not know
 * the target fails cleanly; only B's own introducers can make B probe, and
 * a HOLE nobody expects gets no answer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "dht_int.h"
#include "drive1.h"
#include "nat.h"
#include "nat_int.h"
#include "nat_wire.h"
#include "netsim.h"

#define N 16
#define A 4
#define B 6

/* a test service outside nat/'s range: T_REQ is answered with T_ANS */
#define T_REQ 0x60
#define T_ANS 0x61

typedef struct tsvc {
  int id;
  int msgs, answers, timeouts;
} tsvc;

typedef struct world {
  netsim *ns;
  nat_svc *nat[N];
  tsvc t[N];
  int boots, want;
  int64_t get_cmd;
  bool got;
  dht_lookup_result get;
  nat_event pev; /* the last NAT_EV_PATH of A */
  bool has_pev;
} world;

static size_t body2(uint8_t *buf, size_t cap, uint8_t type, uint32_t txid) {
  dht_wire_w w;
  dht_wire_w_init(&w, buf, cap);
  dht_wire_w_array(&w, 2);
  dht_wire_w_uint(&w, type);
  dht_wire_w_uint(&w, txid);
  assert_int_equal(w.err, 0);
  return w.len;
}

static void ts_msg(void *ctx, dht *e, const dht_msg_in *in, dht_ts now) {
  tsvc *t = ctx;
  (void)now;
  t->msgs++;
  if (in->type == T_REQ) {
    uint8_t out[16];
    size_t n = body2(out, sizeof out, T_ANS, in->txid);
    dht_tx tx = {.local = in->local};
    dht_svc_send(e, &in->from, &tx, out, n);
  }
}

static void ts_answer(void *ctx, dht *e, const dht_req *req, const dht_msg_in *in, dht_ts now) {
  (void)e, (void)req, (void)in, (void)now;
  ((tsvc *)ctx)->answers++;
}

static void ts_timeout(void *ctx, dht *e, const dht_req *req, bool soft, dht_ts now) {
  (void)e, (void)req, (void)now;
  if (!soft)
    ((tsvc *)ctx)->timeouts++;
}

static void on_event(void *ctx, int node, const dht_event *ev) {
  (void)node;
  world *w = ctx;
  if (ev->type == DHT_EV_BOOTSTRAP)
    w->boots++;
  if (ev->type == DHT_EV_LOOKUP && ev->cmd == w->get_cmd && ev->u.lookup) {
    w->get = *ev->u.lookup;
    w->got = true;
  }
}

static bool boots_done(void *ctx) {
  world *w = ctx;
  return w->boots >= w->want;
}

static bool got_done(void *ctx) {
  return ((world *)ctx)->got;
}

static bool path_done(void *ctx) {
  world *w = ctx;
  nat_event ev;
  while (nat_poll_event(w->nat[A], &ev) == 0)
    if (ev.type == NAT_EV_PATH) {
      w->pev = ev;
      w->has_pev = true;
    }
  return w->has_pev;
}

typedef struct opts {
  int64_t relay_bytes; /* 0: the default */
  int max_circuits;    /* -1: the default */
} opts;

static void world_new_opts(world *w, const char *seed_name, const opts *op) {
  memset(w, 0, sizeof *w);
  netsim_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.n = N;
  cfg.seed = tu_seed(seed_name);
  dht_settings_default(&cfg.settings);
  if (op && op->max_circuits >= 0)
    cfg.settings.max_circuits = op->max_circuits;
  cfg.on_event = on_event;
  cfg.ctx = w;
  assert_int_equal(netsim_new(&w->ns, &cfg), 0);
  for (int i = 0; i < N; i++) {
    nat_settings s;
    nat_settings_default(&s);
    s.mode = i == A || i == B ? NAT_MODE_CLIENT : NAT_MODE_SERVER;
    s.path_idle_ms = 4 * 60000;
    if (op && op->relay_bytes)
      s.relay_bytes = op->relay_bytes;
    dht_callbacks cb = {netsim_rng(w->ns), tu_rand_cb, NULL};
    assert_int_equal(
        nat_svc_new(&w->nat[i], netsim_engine(w->ns, i), &s, &cb, NULL, netsim_now(w->ns)), 0);
    dht_service ts = {.type_lo = T_REQ,
                      .type_hi = T_ANS,
                      .ctx = &w->t[i],
                      .on_msg = ts_msg,
                      .on_answer = ts_answer,
                      .on_timeout = ts_timeout};
    w->t[i].id = dht_service_add(netsim_engine(w->ns, i), &ts);
    assert_true(w->t[i].id > 0);
  }
  netsim_set_filter(w->ns, A, true);
  netsim_set_filter(w->ns, B, true);
  dht_peer seed = netsim_peer(w->ns, 0);
  assert_true(dht_bootstrap(netsim_engine(w->ns, 0), NULL, 0, netsim_now(w->ns)) > 0);
  netsim_touch(w->ns, 0);
  w->want = 1;
  assert_int_equal(netsim_run(w->ns, netsim_now(w->ns) + 30000, boots_done, w), 1);
  for (int i = 1; i < N; i++) {
    assert_true(dht_bootstrap(netsim_engine(w->ns, i), &seed, 1, netsim_now(w->ns)) > 0);
    netsim_touch(w->ns, i);
    w->want++;
    assert_int_equal(netsim_run(w->ns, netsim_now(w->ns) + 30000, boots_done, w), 1);
  }
  /* B publishes its record, finds introducers and registers with them */
  assert_true(dht_put_record(netsim_engine(w->ns, B), netsim_now(w->ns)) > 0);
  netsim_touch(w->ns, B);
  netsim_run(w->ns, netsim_now(w->ns) + 60000, NULL, NULL);
}

static void world_new(world *w, const char *seed_name) {
  world_new_opts(w, seed_name, NULL);
}

static void world_del(world *w) {
  for (int i = 0; i < N; i++)
    nat_svc_del(w->nat[i]);
  netsim_del(w->ns);
}

/* B's record as A's lookup finds it: its introducers. */
static int b_introducers(world *w, dht_introducer *out) {
  w->got = false;
  uint8_t id[DHT_ID_LEN];
  dht_id_from_pk(id, netsim_identity(w->ns, B)->pk);
  w->get_cmd = dht_get_record(netsim_engine(w->ns, A), id, netsim_now(w->ns));
  assert_true(w->get_cmd > 0);
  netsim_touch(w->ns, A);
  assert_int_equal(netsim_run(w->ns, netsim_now(w->ns) + 30000, got_done, w), 1);
  assert_true(w->get.has_record);
  assert_int_equal(w->get.record.flags & DHT_REC_REACHABLE, 0);
  for (int i = 0; i < w->get.record.nintro; i++)
    out[i] = w->get.record.intro[i];
  return w->get.record.nintro;
}

/* A request of the test service from node `from` to node `to`'s key
 * (no address: its path) or to its address. */
static int request(world *w, int from, int to, bool by_key) {
  uint8_t body[16];
  dht *e = netsim_engine(w->ns, from);
  size_t n = body2(body, sizeof body, T_REQ, dht_svc_txid(e));
  dht_peer p = netsim_peer(w->ns, to);
  if (by_key)
    memset(&p.addr, 0, sizeof p.addr);
  dht_req_opts o = {.answer = T_ANS, .tries = 1, .timeout_ms = 1000};
  int rv = dht_svc_request(e, w->t[from].id, &p, body, n, &o, netsim_now(w->ns));
  netsim_touch(w->ns, from);
  netsim_run(w->ns, netsim_now(w->ns) + 2000, NULL, NULL);
  return rv;
}

static void test_punch_through_two_nats(void **state) {
  (void)state;
  world w;
  world_new(&w, "nat_punch");
  dht_introducer intro[NAT_INTROS];
  int ni = b_introducers(&w, intro);
  assert_true(ni >= 2);
  int clients = 0;
  for (int i = 0; i < N; i++) {
    nat_status st;
    nat_get_status(w.nat[i], netsim_now(w.ns), &st);
    clients += st.clients;
  }
  printf("B names %d introducers; %d registrations held (A's too)\n", ni, clients);
  for (int i = 0; i < ni; i++) { /* each of B's holds a registration */
    int k = -1;
    for (int j = 0; j < N; j++)
      if (memcmp(netsim_identity(w.ns, j)->pk, intro[i].pk, DHT_PK_LEN) == 0)
        k = j;
    assert_true(k >= 0);
    nat_status st;
    nat_get_status(w.nat[k], netsim_now(w.ns), &st);
    assert_true(st.clients >= 1);
  }

  /* without a hole, A cannot reach B at its address: B's NAT drops it */
  uint64_t filtered = netsim_filtered(w.ns);
  assert_int_equal(request(&w, A, B, false), 0);
  assert_int_equal(w.t[A].answers, 0);
  assert_true(netsim_filtered(w.ns) > filtered);
  assert_int_equal(request(&w, A, B, true), DHT_ERR_NOTFOUND); /* no path yet */

  dht_ts t0 = netsim_now(w.ns);
  assert_int_equal(nat_connect(w.nat[A], netsim_identity(w.ns, B)->pk, intro, ni, t0), 0);
  netsim_touch(w.ns, A);
  assert_int_equal(netsim_run(w.ns, t0 + 30000, path_done, &w), 1);
  printf("A -> B: %s in %lld ms\n", w.pev.ok ? "path" : "no path", (long long)w.pev.ms);
  assert_true(w.pev.ok);
  assert_memory_equal(w.pev.pk, netsim_identity(w.ns, B)->pk, DHT_PK_LEN);
  dht_addr ba = netsim_addr(w.ns, B), aa = netsim_addr(w.ns, A);
  assert_true(dht_addr_eq(&w.pev.addr, &ba));
  /* two links of 10 ms to the introducer and back, then the probes: well
   * under a second on this network */
  assert_true(w.pev.ms < 1000);
  dht_path_info pa, pb;
  assert_int_equal(dht_path_get(netsim_engine(w.ns, A), netsim_identity(w.ns, B)->pk, &pa), 0);
  assert_int_equal(pa.method, DHT_PATH_PUNCHED);
  assert_true(dht_addr_eq(&pa.path.remote, &ba));
  netsim_run(w.ns, netsim_now(w.ns) + 1000, NULL, NULL);
  assert_int_equal(dht_path_get(netsim_engine(w.ns, B), netsim_identity(w.ns, A)->pk, &pb), 0);
  assert_true(dht_addr_eq(&pb.path.remote, &aa));

  /* a service's request to the key goes over the path, both ways */
  assert_int_equal(request(&w, A, B, true), 0);
  assert_int_equal(w.t[A].answers, 1);
  assert_int_equal(request(&w, B, A, true), 0);
  assert_int_equal(w.t[B].answers, 1);

  nat_status sa, sb;
  nat_get_status(w.nat[A], netsim_now(w.ns), &sa);
  nat_get_status(w.nat[B], netsim_now(w.ns), &sb);
  printf("A: punches %llu ok %llu, %llu HOLEs; B: %llu HOLEs\n", (unsigned long long)sa.punches,
         (unsigned long long)sa.punches_ok, (unsigned long long)sa.holes_sent,
         (unsigned long long)sb.holes_sent);
  assert_int_equal(sa.punches_ok, 1);
  assert_int_equal(sa.npunch_log, 1);
  assert_true(sa.punch_log[0].ok && sa.punch_log[0].initiator);
  assert_true(sb.npunch_log == 1 && sb.punch_log[0].ok && !sb.punch_log[0].initiator);
  /* a bounded spray: at most one attempt's rounds to each candidate */
  assert_true(sa.holes_sent <= (uint64_t)16 * NAT_CANDS);
  assert_true(sb.holes_sent <= (uint64_t)16 * NAT_CANDS);

  /* kept alive past both NATs' 2-minute memory while in use ... */
  netsim_run(w.ns, netsim_now(w.ns) + 3 * 60000, NULL, NULL);
  assert_int_equal(request(&w, A, B, true), 0);
  assert_int_equal(w.t[A].answers, 2);
  /* ... and dropped once idle (path_idle_ms, 4 minutes here) */
  netsim_run(w.ns, netsim_now(w.ns) + 3 * 60000, NULL, NULL);
  assert_int_equal(dht_path_get(netsim_engine(w.ns, A), netsim_identity(w.ns, B)->pk, NULL),
                   DHT_ERR_NOTFOUND);
  world_del(&w);
}

/* Introducers that do not know the target (here: servers B never chose)
 * answer UNKNOWN; the punch tries each, then ends with no path, cleanly. */
static void test_punch_unknown_target(void **state) {
  (void)state;
  world w;
  world_new(&w, "nat_punch_unknown");
  dht_introducer wrong[2];
  int wi[2], nw = 0;
  for (int i = 1; i < N && nw < 2; i++) { /* servers nobody registered with */
    nat_status st;
    nat_get_status(w.nat[i], netsim_now(w.ns), &st);
    if (i == A || i == B || st.clients)
      continue;
    dht_peer p = netsim_peer(w.ns, i);
    memcpy(wrong[nw].pk, p.pk, DHT_PK_LEN);
    wrong[nw].addr = p.addr;
    wi[nw++] = i;
  }
  assert_int_equal(nw, 2);
  dht_ts t0 = netsim_now(w.ns);
  assert_int_equal(nat_connect(w.nat[A], netsim_identity(w.ns, B)->pk, wrong, 2, t0), 0);
  netsim_touch(w.ns, A);
  assert_int_equal(netsim_run(w.ns, t0 + 60000, path_done, &w), 1);
  printf("through strangers: %s after %lld ms\n", w.pev.ok ? "path" : "no path",
         (long long)w.pev.ms);
  assert_false(w.pev.ok);
  nat_status sa, sb;
  nat_get_status(w.nat[A], netsim_now(w.ns), &sa);
  nat_get_status(w.nat[B], netsim_now(w.ns), &sb);
  assert_int_equal(sa.punches_failed, 1);
  assert_int_equal(sa.holes_sent, 0); /* no candidates came back */
  assert_int_equal(sb.holes_sent, 0);
  uint64_t refused = 0;
  for (int i = 0; i < 2; i++) {
    nat_status st;
    nat_get_status(w.nat[wi[i]], netsim_now(w.ns), &st);
    refused += st.intro_refused;
  }
  assert_int_equal(refused, 2 * 3); /* each asked once per attempt */
  assert_int_equal(nat_connect(w.nat[A], netsim_identity(w.ns, A)->pk, wrong, 2, t0),
                   DHT_ERR_INVAL);
  assert_int_equal(nat_connect(w.nat[A], netsim_identity(w.ns, B)->pk, wrong, 0, t0),
                   DHT_ERR_INVAL);
  world_del(&w);
}

/* Sends node `to` a NAT request from node `from` (sealed by from's key). */
static void send_nat(world *w, int from, int to, const nat_wire_msg *m) {
  uint8_t buf[DHT_MAX_BODY];
  dht_ssize len = nat_wire_encode(buf, sizeof buf, m);
  assert_true(len > 0);
  dht_peer p = netsim_peer(w->ns, to);
  /* as a request of from's NAT service (a notice to an address that never
   * proved itself would stop at the amplification rule) */
  dht_req_opts o = {.answer = m->type == NAT_T_HOLE ? NAT_T_HOLE : NAT_T_PUNCH_ACK, .tries = 1};
  assert_int_equal(dht_svc_request(netsim_engine(w->ns, from), w->nat[from]->svc_id, &p, buf,
                                   (size_t)len, &o, netsim_now(w->ns)),
                   0);
  netsim_touch(w->ns, from);
  netsim_run(w->ns, netsim_now(w->ns) + 2000, NULL, NULL);
}

/* Only B's own introducers can make it probe: a PUNCH_FWD from another
 * node, naming a victim's address, is refused and nothing is sent there;
 * a HOLE with a nonce B does not expect gets no answer. */
static void test_punch_not_a_reflector(void **state) {
  (void)state;
  world w;
  world_new(&w, "nat_punch_abuse");
  /* B's NAT aside: what is tested is what B itself does with them */
  netsim_set_filter(w.ns, B, false);
  nat_status before;
  nat_get_status(w.nat[B], netsim_now(w.ns), &before);
  int C = -1; /* a server that is not one of B's introducers */
  for (int i = 1; i < N && C < 0; i++) {
    bool intro = i == A || i == B;
    for (int j = 0; j < before.nintro; j++)
      intro |= memcmp(before.intro[j].who.pk, netsim_identity(w.ns, i)->pk, DHT_PK_LEN) == 0;
    if (!intro)
      C = i;
  }
  assert_true(C > 0);
  static const uint8_t nonce[NAT_NONCE_LEN] = {9, 9, 9};
  nat_wire_msg f = {.type = NAT_T_PUNCH_FWD, .txid = 77};
  f.u.punch.pk = netsim_identity(w.ns, C)->pk;
  f.u.punch.nonce = nonce;
  f.u.punch.ncands = 1;
  f.u.punch.cands[0] = netsim_addr(w.ns, C == 12 ? 14 : 12); /* the victim */
  send_nat(&w, C, B, &f);
  nat_status st;
  nat_get_status(w.nat[B], netsim_now(w.ns), &st);
  assert_int_equal(st.fwds_refused, before.fwds_refused + 1);
  assert_int_equal(st.holes_sent, before.holes_sent);

  nat_wire_msg h = {.type = NAT_T_HOLE, .txid = 78};
  h.u.hole.nonce = nonce;
  uint64_t dropped = st.dropped;
  nat_status sc0, sc1;
  nat_get_status(w.nat[C], netsim_now(w.ns), &sc0);
  send_nat(&w, C, B, &h);
  nat_get_status(w.nat[B], netsim_now(w.ns), &st);
  nat_get_status(w.nat[C], netsim_now(w.ns), &sc1);
  assert_int_equal(st.dropped, dropped + 1);
  /* an answering HOLE would reach C's service and be dropped there */
  assert_int_equal(sc1.dropped, sc0.dropped);
  printf("B: forward from a non-introducer refused, stray HOLE dropped unanswered\n");
  world_del(&w);
}

/* No hole gets through between A and B (netsim_block: both NATs
 * symmetric, say); A connects to B through B's introducers and the run
 * goes on until A's path event (within wait ms). */
static void connect_blocked(world *w, dht_ts wait) {
  netsim_block(w->ns, A, B);
  dht_introducer intro[NAT_INTROS];
  int ni = b_introducers(w, intro);
  dht_ts t0 = netsim_now(w->ns);
  assert_int_equal(nat_connect(w->nat[A], netsim_identity(w->ns, B)->pk, intro, ni, t0), 0);
  netsim_touch(w->ns, A);
  assert_int_equal(netsim_run(w->ns, t0 + wait, path_done, w), 1);
}

/* Relay stats summed over every node but the ends. */
static void relay_totals(world *w, dht_stats *sum) {
  memset(sum, 0, sizeof *sum);
  for (int i = 0; i < N; i++) {
    if (i == A || i == B)
      continue;
    dht_stats st;
    dht_get_stats(netsim_engine(w->ns, i), &st);
    sum->relay_opened += st.relay_opened;
    sum->relay_refused += st.relay_refused;
    sum->relay_closed += st.relay_closed;
    sum->relay_datagrams += st.relay_datagrams;
    sum->relay_bytes += st.relay_bytes;
    sum->drop_relay += st.drop_relay;
  }
}

/* No hole gets through between A and B (netsim_block: both NATs
 * symmetric, say): after the first attempt both ask the introducer between
 * them for a circuit, and the path goes through it; a service's requests
 * to B's key take it, both ways, sealed end to end. */
static void test_relay_when_no_hole(void **state) {
  (void)state;
  world w;
  world_new(&w, "nat_relay");
  connect_blocked(&w, 30000);
  printf("A -> B blocked: %s (method %d) in %lld ms\n", w.pev.ok ? "path" : "no path", w.pev.tag,
         (long long)w.pev.ms);
  assert_true(w.pev.ok);
  assert_int_equal(w.pev.tag, DHT_PATH_RELAYED);
  dht_path_info pa, pb;
  assert_int_equal(dht_path_get(netsim_engine(w.ns, A), netsim_identity(w.ns, B)->pk, &pa), 0);
  assert_int_equal(pa.method, DHT_PATH_RELAYED);
  assert_true(dht_addr_eq(&pa.path.remote, &w.pev.addr)); /* the relay's address */
  netsim_run(w.ns, netsim_now(w.ns) + 2000, NULL, NULL);
  assert_int_equal(dht_path_get(netsim_engine(w.ns, B), netsim_identity(w.ns, A)->pk, &pb), 0);
  assert_int_equal(pb.method, DHT_PATH_RELAYED);

  dht_stats r0, r1;
  relay_totals(&w, &r0);
  assert_int_equal(r0.relay_opened, 1);
  assert_int_equal(request(&w, A, B, true), 0);
  assert_int_equal(w.t[A].answers, 1);
  assert_int_equal(request(&w, B, A, true), 0);
  assert_int_equal(w.t[B].answers, 1);
  relay_totals(&w, &r1);
  printf("relayed: %llu datagrams, %llu bytes\n",
         (unsigned long long)(r1.relay_datagrams - r0.relay_datagrams),
         (unsigned long long)(r1.relay_bytes - r0.relay_bytes));
  assert_true(r1.relay_datagrams >= r0.relay_datagrams + 4); /* two requests, two answers */
  nat_status sa;
  nat_get_status(w.nat[A], netsim_now(w.ns), &sa);
  assert_int_equal(sa.relayed_paths, 1);
  assert_int_equal(sa.punches_ok, 0);
  world_del(&w);
}

/* A circuit past its bytes is closed and counted, and what the ends send
 * then is dropped at the relay, counted too. */
static void test_relay_byte_limit(void **state) {
  (void)state;
  world w;
  opts op = {.relay_bytes = 1500, .max_circuits = -1};
  world_new_opts(&w, "nat_relay_bytes", &op);
  connect_blocked(&w, 30000);
  assert_true(w.pev.ok);
  int answered = 0;
  for (int i = 0; i < 20; i++) {
    assert_int_equal(request(&w, A, B, true), 0);
    answered = w.t[A].answers;
  }
  dht_stats r;
  relay_totals(&w, &r);
  printf("1,500-byte circuit: %d of 20 requests answered; closed %llu, dropped after %llu\n",
         answered, (unsigned long long)r.relay_closed, (unsigned long long)r.drop_relay);
  assert_true(answered >= 1 && answered < 20);
  assert_int_equal(r.relay_closed, 1);
  assert_true(r.drop_relay >= 1);
  assert_true(r.relay_bytes <= 1500);
  world_del(&w);
}

/* A relay with no circuit to spare refuses clearly (RELAY_ACK FULL): the
 * punch ends without a path, and the relays count the refusals. */
static void test_relay_full(void **state) {
  (void)state;
  world w;
  opts op = {.max_circuits = 0};
  world_new_opts(&w, "nat_relay_full", &op);
  connect_blocked(&w, 60000);
  dht_stats r;
  relay_totals(&w, &r);
  uint64_t refused = 0;
  for (int i = 0; i < N; i++) {
    nat_status st;
    nat_get_status(w.nat[i], netsim_now(w.ns), &st);
    refused += st.relay_refused;
  }
  printf("no circuits: %s after %lld ms; relays refused %llu (engine %llu)\n",
         w.pev.ok ? "path" : "no path", (long long)w.pev.ms, (unsigned long long)refused,
         (unsigned long long)r.relay_refused);
  assert_false(w.pev.ok);
  assert_true(refused >= 1 && r.relay_refused >= 1);
  assert_int_equal(r.relay_opened, 0);
  world_del(&w);
}

int main(void) {
  if (sodium_init() < 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_punch_through_two_nats), cmocka_unit_test(test_punch_unknown_target),
      cmocka_unit_test(test_punch_not_a_reflector),  cmocka_unit_test(test_relay_when_no_hole),
      cmocka_unit_test(test_relay_byte_limit),       cmocka_unit_test(test_relay_full),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

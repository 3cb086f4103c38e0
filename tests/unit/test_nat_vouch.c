/*
 * test_nat_vouch.c - vouching at the lowest layer: 16 engines on netsim
 * (counter clock, 10 ms links, one extra socket per node), each with the
 * NAT service in server mode, node A among them.  Behind a port-restricted
 * NAT (netsim_set_filter: only the addresses and ports it sent to get in),
 * A asks everybody things with the server flag set and enters nobody's
 * table: the voucher's CHECK comes from a port A never sent to.  Without
 * the NAT, A enters tables through the vouchers.  Without the NAT service,
 * the engine's verify PING lets the filtered A in (the hole this closes).
 * And the parts: a VOUCHED with another nonce or from another key inserts
 * nothing; a CHECK naming a node A never sent to makes A send nothing; a
 * voucher refuses an asker network over its rate.
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
#include "nat_int.h"
#include "nat_wire.h"
#include "netsim.h"

#define N 16
#define A 8 /* the node under test (IPv4: netsim's even nodes) */

typedef struct world {
  netsim *ns;
  nat_svc *nat[N];
  int boots, want;
} world;

static void on_event(void *ctx, int node, const dht_event *ev) {
  (void)node;
  world *w = ctx;
  if (ev->type == DHT_EV_BOOTSTRAP)
    w->boots++;
}

static bool boots_done(void *ctx) {
  world *w = ctx;
  return w->boots >= w->want;
}

static void join(world *w, int i, const dht_peer *seed) {
  assert_true(dht_bootstrap(netsim_engine(w->ns, i), seed, seed ? 1 : 0, netsim_now(w->ns)) > 0);
  netsim_touch(w->ns, i);
  w->want++;
  assert_int_equal(netsim_run(w->ns, netsim_now(w->ns) + 30000, boots_done, w), 1);
}

/* Everybody but A joins through node 0; A joins last, filtered or not. */
static void world_new(world *w, bool nat, bool filter_a) {
  memset(w, 0, sizeof *w);
  netsim_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.n = N;
  cfg.seed = tu_seed("nat_vouch");
  cfg.sockets = 1;
  dht_settings_default(&cfg.settings);
  cfg.on_event = on_event;
  cfg.ctx = w;
  assert_int_equal(netsim_new(&w->ns, &cfg), 0);
  for (int i = 0; i < N && nat; i++) {
    dht_callbacks cb = {netsim_rng(w->ns), tu_rand_cb, NULL};
    assert_int_equal(
        nat_svc_new(&w->nat[i], netsim_engine(w->ns, i), NULL, &cb, NULL, netsim_now(w->ns)), 0);
  }
  if (filter_a)
    netsim_set_filter(w->ns, A, true);
  dht_peer seed = netsim_peer(w->ns, 0);
  join(w, 0, NULL);
  for (int i = 1; i < N; i++)
    if (i != A)
      join(w, i, &seed);
  join(w, A, &seed);
}

static void world_del(world *w) {
  for (int i = 0; i < N; i++)
    nat_svc_del(w->nat[i]);
  netsim_del(w->ns);
}

static bool has(world *w, int node, int who) {
  dht_peer_info t[N * 2];
  int n = dht_table(netsim_engine(w->ns, node), t, N * 2);
  dht_peer p = netsim_peer(w->ns, who);
  for (int i = 0; i < n; i++)
    if (memcmp(t[i].c.pk, p.pk, DHT_PK_LEN) == 0)
      return true;
  return false;
}

/* How many tables hold A; and the vouching counters summed over the others. */
static int tables_with_a(world *w, nat_status *sum) {
  int n = 0;
  memset(sum, 0, sizeof *sum);
  for (int i = 0; i < N; i++) {
    if (i == A)
      continue;
    n += has(w, i, A);
    if (!w->nat[i])
      continue;
    nat_status st;
    nat_get_status(w->nat[i], netsim_now(w->ns), &st);
    sum->vouch_asked += st.vouch_asked;
    sum->vouch_ok += st.vouch_ok;
    sum->vouch_failed += st.vouch_failed;
    sum->vouch_fallback += st.vouch_fallback;
    sum->checks_sent += st.checks_sent;
    sum->checks_main_socket += st.checks_main_socket;
  }
  return n;
}

static void report(const char *what, world *w, int n, const nat_status *s) {
  printf("%s: A in %d of %d tables; checks asked %llu, vouched %llu, failed %llu, handed back "
         "%llu; CHECKs %llu (%llu from a main socket); filtered %llu\n",
         what, n, N - 1, (unsigned long long)s->vouch_asked, (unsigned long long)s->vouch_ok,
         (unsigned long long)s->vouch_failed, (unsigned long long)s->vouch_fallback,
         (unsigned long long)s->checks_sent, (unsigned long long)s->checks_main_socket,
         (unsigned long long)netsim_filtered(w->ns));
}

static void test_natted_server_not_stored(void **state) {
  (void)state;
  world w;
  world_new(&w, true, true);
  assert_true(dht_is_server(netsim_engine(w.ns, A))); /* the misconfiguration */
  /* its refreshes ask more nodes; a check asked again after 10 minutes fails again */
  netsim_run(w.ns, netsim_now(w.ns) + 12 * 60000, NULL, NULL);
  nat_status s;
  int n = tables_with_a(&w, &s);
  report("A behind a port-restricted NAT", &w, n, &s);
  assert_int_equal(n, 0);
  assert_true(s.vouch_failed >= 3);
  assert_int_equal(s.checks_main_socket, 0);
  /* no CHECK got through to A (the others' checks of each other did) */
  nat_status sa;
  nat_get_status(w.nat[A], netsim_now(w.ns), &sa);
  assert_int_equal(sa.vouched_sent, 0);
  assert_true(netsim_filtered(w.ns) >= 3);
  /* A itself still uses the network: it holds the others */
  dht_peer_info t[N];
  assert_true(dht_table(netsim_engine(w.ns, A), t, N) >= 5);
  world_del(&w);
}

static void test_public_server_stored(void **state) {
  (void)state;
  world w;
  world_new(&w, true, false);
  netsim_run(w.ns, netsim_now(w.ns) + 60000, NULL, NULL);
  nat_status s;
  int n = tables_with_a(&w, &s);
  report("A with no NAT", &w, n, &s);
  assert_true(n >= 3);
  assert_true(s.vouch_ok >= 3);
  assert_int_equal(s.checks_main_socket, 0);
  world_del(&w);
}

static void test_no_service_verify_ping(void **state) {
  (void)state;
  world w;
  world_new(&w, false, true);
  netsim_run(w.ns, netsim_now(w.ns) + 60000, NULL, NULL);
  nat_status s;
  int n = tables_with_a(&w, &s);
  report("no NAT service, A filtered", &w, n, &s);
  assert_true(n >= 3); /* the verify PING came from where A had sent: it got in */
  world_del(&w);
}

/* ---- the parts ---------------------------------------------------------------- */

static void send_nat(world *w, int from, int to, const nat_wire_msg *m) {
  uint8_t buf[128];
  dht_ssize len = nat_wire_encode(buf, sizeof buf, m);
  assert_true(len > 0);
  dht_peer p = netsim_peer(w->ns, to);
  assert_int_equal(dht_svc_send(netsim_engine(w->ns, from), &p, NULL, buf, (size_t)len), 0);
  netsim_touch(w->ns, from);
  netsim_run(w->ns, netsim_now(w->ns) + 100, NULL, NULL);
}

/* A small world with no joins: B (0) holds C (2) in its table, X (6) has
 * been answered by B; A (4) is filtered.  All IPv4. */
enum { MB = 0, MC = 2, MA = 4, MX = 6 };

static void ping(world *w, int from, int to) {
  dht_peer p = netsim_peer(w->ns, to);
  assert_true(dht_ping(netsim_engine(w->ns, from), &p, netsim_now(w->ns)) > 0);
  netsim_touch(w->ns, from);
  netsim_run(w->ns, netsim_now(w->ns) + 50, NULL, NULL);
}

static void mini_new(world *w) {
  memset(w, 0, sizeof *w);
  netsim_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.n = 8;
  cfg.seed = tu_seed("nat_vouch_mini");
  cfg.sockets = 1;
  dht_settings_default(&cfg.settings);
  assert_int_equal(netsim_new(&w->ns, &cfg), 0);
  for (int i = 0; i < 8; i++) {
    dht_callbacks cb = {netsim_rng(w->ns), tu_rand_cb, NULL};
    assert_int_equal(
        nat_svc_new(&w->nat[i], netsim_engine(w->ns, i), NULL, &cb, NULL, netsim_now(w->ns)), 0);
  }
  netsim_run(w->ns, 10, NULL, NULL); /* the vouchers' sockets */
  ping(w, MB, MC);
  ping(w, MX, MB);
  netsim_set_filter(w->ns, MA, true);
}

/* A asks B to store it; while B's check runs (C's CHECK was filtered),
 * VOUCHEDs with B's nonce from another key, and with another nonce from A's
 * key, insert nothing; the right one from A's key does. */
static void test_forged_vouched(void **state) {
  (void)state;
  world w;
  mini_new(&w);
  ping(&w, MA, MB);
  nat_svc *nb = w.nat[MB];
  nat_vouch *v = NULL;
  dht_peer pa = netsim_peer(w.ns, MA);
  for (int i = 0; i < nb->set.vouches; i++)
    if (nb->vouches[i].used && memcmp(nb->vouches[i].cand.pk, pa.pk, DHT_PK_LEN) == 0)
      v = &nb->vouches[i];
  assert_non_null(v);
  assert_true(netsim_filtered(w.ns) >= 1); /* C's CHECK */
  uint8_t nonce[NAT_NONCE_LEN];
  memcpy(nonce, v->nonce, NAT_NONCE_LEN);
  uint64_t dropped = nb->dropped;
  nat_wire_msg m = {.type = NAT_T_VOUCHED, .txid = 77};
  m.u.vouched.nonce = nonce;
  send_nat(&w, MX, MB, &m); /* the nonce, another key */
  uint8_t wrong[NAT_NONCE_LEN];
  memcpy(wrong, nonce, NAT_NONCE_LEN);
  wrong[0] ^= 1;
  m.u.vouched.nonce = wrong;
  send_nat(&w, MA, MB, &m); /* A's key, another nonce */
  assert_false(has(&w, MB, MA));
  assert_int_equal(nb->dropped, dropped + 2);
  assert_true(v->used); /* the check still waits */
  m.u.vouched.nonce = nonce;
  send_nat(&w, MA, MB, &m);
  assert_true(has(&w, MB, MA));
  assert_false(v->used);
  /* without it, the check would have failed at its deadline */
  world_del(&w);
}

/* A filtered A is checked and not stored: the deadline passes. */
static void test_deadline(void **state) {
  (void)state;
  world w;
  mini_new(&w);
  ping(&w, MA, MB);
  netsim_run(w.ns, netsim_now(w.ns) + w.nat[MB]->set.vouch_wait_ms + 100, NULL, NULL);
  nat_status sb;
  nat_get_status(w.nat[MB], netsim_now(w.ns), &sb);
  assert_false(has(&w, MB, MA));
  assert_int_equal(sb.vouch_failed, 1);
  /* asked again at once: the engine remembers it checked A */
  ping(&w, MA, MB);
  nat_get_status(w.nat[MB], netsim_now(w.ns), &sb);
  assert_int_equal(sb.vouch_asked, 2); /* X's, then A's */
  world_del(&w);
}

static void check(world *w, int from, int to, const nat_wire_msg *m) {
  uint8_t buf[128];
  dht_ssize len = nat_wire_encode(buf, sizeof buf, m);
  assert_true(len > 0);
  dht_peer p = netsim_peer(w->ns, to);
  dht_req_opts o = {.answer = NAT_T_CHECK_ACK, .tries = 1, .unsolicited = true};
  assert_int_equal(dht_svc_request(netsim_engine(w->ns, from), w->nat[from]->svc_id, &p, buf,
                                   (size_t)len, &o, netsim_now(w->ns)),
                   0);
  netsim_touch(w->ns, from);
  netsim_run(w->ns, netsim_now(w->ns) + 100, NULL, NULL);
}

/* X sends A (no NAT this time) a CHECK naming B, whom A never sent to: A
 * sends nothing.  Once A has sent to B, the same CHECK gets a VOUCHED to B
 * and an ack. */
static void test_check_aims_nowhere(void **state) {
  (void)state;
  world w;
  mini_new(&w);
  netsim_set_filter(w.ns, MA, false);
  dht_peer pb = netsim_peer(w.ns, MB);
  nat_wire_msg c = {.type = NAT_T_CHECK, .txid = 5};
  uint8_t nonce[NAT_NONCE_LEN] = {1, 2, 3};
  c.u.check.nonce = nonce;
  c.u.check.pk = pb.pk;
  c.u.check.asker = pb.addr;
  dht_stats s0, s1;
  nat_status a0, a1;
  dht_get_stats(netsim_engine(w.ns, MA), &s0);
  nat_get_status(w.nat[MA], netsim_now(w.ns), &a0);
  check(&w, MX, MA, &c);
  dht_get_stats(netsim_engine(w.ns, MA), &s1);
  nat_get_status(w.nat[MA], netsim_now(w.ns), &a1);
  printf("CHECK naming a node A never sent to: A sent %llu datagrams, ignored %llu\n",
         (unsigned long long)(s1.tx_packets - s0.tx_packets),
         (unsigned long long)(a1.checks_ignored - a0.checks_ignored));
  assert_int_equal(s1.rx_packets, s0.rx_packets + 1);
  assert_int_equal(s1.tx_packets, s0.tx_packets);
  assert_int_equal(a1.checks_ignored, a0.checks_ignored + 1);
  assert_int_equal(a1.vouched_sent, a0.vouched_sent);
  /* once A has sent to B, the same CHECK is answered */
  ping(&w, MA, MB);
  netsim_run(w.ns, netsim_now(w.ns) + 6000, NULL, NULL); /* B's own check of A is over */
  dht_get_stats(netsim_engine(w.ns, MA), &s0);
  check(&w, MX, MA, &c);
  dht_get_stats(netsim_engine(w.ns, MA), &s1);
  nat_get_status(w.nat[MA], netsim_now(w.ns), &a1);
  assert_int_equal(a1.vouched_sent, a0.vouched_sent + 2); /* B's check, then X's */
  assert_int_equal(s1.tx_packets - s0.tx_packets, 2);     /* VOUCHED and the ack */
  world_del(&w);
}

static void vouch_req(world *w, int from, int to, const nat_wire_msg *m) {
  uint8_t buf[128];
  dht_ssize len = nat_wire_encode(buf, sizeof buf, m);
  assert_true(len > 0);
  dht_peer p = netsim_peer(w->ns, to);
  dht_req_opts o = {.answer = NAT_T_VOUCH_ACK, .tries = 1};
  assert_int_equal(dht_svc_request(netsim_engine(w->ns, from), w->nat[from]->svc_id, &p, buf,
                                   (size_t)len, &o, netsim_now(w->ns)),
                   0);
  netsim_touch(w->ns, from);
  netsim_run(w->ns, netsim_now(w->ns) + 100, NULL, NULL);
}

/* B sends voucher C two VOUCH_REQs within voucher_gap_ms: one CHECK, one
 * refusal; after the gap, another CHECK. */
static void test_voucher_rate(void **state) {
  (void)state;
  world w;
  mini_new(&w);
  /* B's check of X asked C already */
  netsim_run(w.ns, netsim_now(w.ns) + w.nat[MC]->set.voucher_gap_ms, NULL, NULL);
  nat_status c0, c1;
  nat_get_status(w.nat[MC], netsim_now(w.ns), &c0);
  uint8_t nonce[NAT_NONCE_LEN] = {9};
  dht_peer t1 = netsim_peer(w.ns, MA), t2 = netsim_peer(w.ns, MX);
  /* a txid as wide as a real one: the CHECK (whose txid is C's) must not be larger */
  nat_wire_msg q = {.type = NAT_T_VOUCH_REQ, .txid = 0xdeadbeef};
  q.u.vouch_req.target = t1.addr;
  q.u.vouch_req.pk = t1.pk;
  q.u.vouch_req.nonce = nonce;
  vouch_req(&w, MB, MC, &q);
  q.u.vouch_req.target = t2.addr;
  q.u.vouch_req.pk = t2.pk;
  vouch_req(&w, MB, MC, &q);
  nat_get_status(w.nat[MC], netsim_now(w.ns), &c1);
  printf("voucher: %llu CHECKs, %llu refused\n",
         (unsigned long long)(c1.checks_sent - c0.checks_sent),
         (unsigned long long)(c1.vouch_refused - c0.vouch_refused));
  assert_int_equal(c1.checks_sent, c0.checks_sent + 1);
  assert_int_equal(c1.vouch_refused, c0.vouch_refused + 1);
  assert_int_equal(c1.checks_main_socket, c0.checks_main_socket);
  netsim_run(w.ns, netsim_now(w.ns) + w.nat[MC]->set.voucher_gap_ms, NULL, NULL);
  vouch_req(&w, MB, MC, &q);
  nat_get_status(w.nat[MC], netsim_now(w.ns), &c1);
  assert_int_equal(c1.checks_sent, c0.checks_sent + 2);
  /* a VOUCH_REQ about the asker itself, or about the voucher, is refused */
  netsim_run(w.ns, netsim_now(w.ns) + w.nat[MC]->set.voucher_gap_ms, NULL, NULL);
  dht_peer pb = netsim_peer(w.ns, MB);
  q.u.vouch_req.target = pb.addr;
  q.u.vouch_req.pk = pb.pk;
  vouch_req(&w, MB, MC, &q);
  nat_get_status(w.nat[MC], netsim_now(w.ns), &c1);
  assert_int_equal(c1.checks_sent, c0.checks_sent + 2);
  assert_int_equal(c1.vouch_refused, c0.vouch_refused + 2);
  world_del(&w);
}

int main(void) {
  if (sodium_init() < 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_natted_server_not_stored),
      cmocka_unit_test(test_public_server_stored),
      cmocka_unit_test(test_no_service_verify_ping),
      cmocka_unit_test(test_forged_vouched),
      cmocka_unit_test(test_deadline),
      cmocka_unit_test(test_check_aims_nowhere),
      cmocka_unit_test(test_voucher_rate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

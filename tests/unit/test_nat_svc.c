/*
 * test_nat_svc.c - the NAT service on engines wired by netsim: it gathers
 * witnesses by itself (PINGs it owns), takes the address reports before the
 * driver, and its vote names the address peers see.
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
#include "netsim.h"

#define N 8

typedef struct world {
  netsim *ns;
  int boots, seen_by_driver, pings_by_driver;
} world;

static int64_t g_rec_cmd;
static int g_rec_flags = -1;

static void on_event(void *ctx, int node, const dht_event *ev) {
  world *w = ctx;
  if (node == 3 && ev->type == DHT_EV_LOOKUP && ev->cmd == g_rec_cmd && ev->u.lookup &&
      ev->u.lookup->has_record)
    g_rec_flags = ev->u.lookup->record.flags;
  if (ev->type == DHT_EV_BOOTSTRAP)
    w->boots++;
  if (node == 0 && ev->type == DHT_EV_ADDR_SEEN)
    w->seen_by_driver++;
  if (node == 0 && ev->type == DHT_EV_PING)
    w->pings_by_driver++;
}

static world *g_w;
static int *g_want;
static bool boots_done(void *ctx) {
  (void)ctx;
  return g_w->boots >= *g_want;
}

static void test_vote_from_own_witnesses(void **state) {
  (void)state;
  world w;
  memset(&w, 0, sizeof w);
  g_w = &w;
  netsim_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.n = N;
  cfg.seed = tu_seed("nat_svc");
  dht_settings_default(&cfg.settings);
  cfg.on_event = on_event;
  cfg.ctx = &w;
  assert_int_equal(netsim_new(&w.ns, &cfg), 0);
  nat_svc *n;
  dht_callbacks cb = {netsim_rng(w.ns), tu_rand_cb, NULL};
  assert_int_equal(nat_svc_new(&n, netsim_engine(w.ns, 0), NULL, &cb, NULL, netsim_now(w.ns)), 0);
  /* node 1 starts the network; the others join through it one by one */
  dht_peer seed = netsim_peer(w.ns, 1);
  assert_true(dht_bootstrap(netsim_engine(w.ns, 1), NULL, 0, netsim_now(w.ns)) > 0);
  netsim_touch(w.ns, 1);
  int want = 1;
  g_want = &want;
  assert_int_equal(netsim_run(w.ns, netsim_now(w.ns) + 30000, boots_done, NULL), 1);
  for (int i = 0; i < N; i++) {
    if (i == 1)
      continue;
    assert_true(dht_bootstrap(netsim_engine(w.ns, i), &seed, 1, netsim_now(w.ns)) > 0);
    netsim_touch(w.ns, i);
    want++;
    assert_int_equal(netsim_run(w.ns, netsim_now(w.ns) + 30000, boots_done, NULL), 1);
  }
  nat_status st;
  /* a few seconds in, the service asks for witnesses by itself */
  netsim_run(w.ns, netsim_now(w.ns) + 10000, NULL, NULL);
  nat_get_status(n, netsim_now(w.ns), &st);
  printf("nat: %llu witnesses asked, %llu reports; IPv4 vote: %d prefixes, known %d\n",
         (unsigned long long)st.witnesses_asked, (unsigned long long)st.reports,
         st.vote[0].prefixes, st.vote[0].known);
  assert_true(st.witnesses_asked >= 3);
  assert_true(st.vote[0].known);
  dht_addr me = netsim_addr(w.ns, 0);
  assert_true(dht_addr_eq(&st.vote[0].addr, &me));
  assert_int_equal(st.vote[0].mapping, NAT_MAP_EIM);
  /* the record carries the NAT class the vote found */
  assert_true(dht_put_record(netsim_engine(w.ns, 0), netsim_now(w.ns)) > 0);
  netsim_touch(w.ns, 0);
  netsim_run(w.ns, netsim_now(w.ns) + 3000, NULL, NULL);
  g_rec_cmd =
      dht_get_record(netsim_engine(w.ns, 3), dht_self_id(netsim_engine(w.ns, 0)), netsim_now(w.ns));
  assert_true(g_rec_cmd > 0);
  netsim_touch(w.ns, 3);
  netsim_run(w.ns, netsim_now(w.ns) + 3000, NULL, NULL);
  assert_int_equal(g_rec_flags & DHT_REC_NAT_MASK, DHT_NAT_CONE << DHT_REC_NAT_SHIFT);
  assert_true(g_rec_flags & DHT_REC_REACHABLE);
  /* the reports and the service's own pings stayed with the service */
  assert_int_equal(w.seen_by_driver, 0);
  assert_int_equal(w.pings_by_driver, 0);
  /* unplugged: the driver gets the reports again */
  nat_svc_del(n);
  dht_peer p2 = netsim_peer(w.ns, 2);
  assert_true(dht_ping(netsim_engine(w.ns, 0), &p2, netsim_now(w.ns)) > 0);
  netsim_touch(w.ns, 0);
  netsim_run(w.ns, netsim_now(w.ns) + 1000, NULL, NULL);
  assert_int_equal(w.seen_by_driver, 1);
  netsim_del(w.ns);
}

static void test_bad_settings(void **state) {
  (void)state;
  nat_settings s;
  nat_settings_default(&s);
  s.vote.min_votes = 0;
  nat_svc *n = (nat_svc *)1;
  dht_callbacks cb = {NULL, tu_rand_cb, NULL};
  assert_int_equal(nat_svc_new(&n, NULL, &s, &cb, NULL, 0), DHT_ERR_INVAL);
  assert_null(n);
  assert_string_equal(nat_mapping_name(NAT_MAP_EDM), "symmetric");
  assert_string_equal(nat_mapping_name(99), "unknown");
  nat_svc_del(NULL);
}

int main(void) {
  if (sodium_init() < 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vote_from_own_witnesses),
      cmocka_unit_test(test_bad_settings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_allocfail.c - the failing-allocation sweep (ngtcp2's lesson): run a
 * small network through bootstrap, a record publish, lookups and a record
 * GET with an allocator that fails the Nth allocation, for every N up to the
 * number of allocations a clean run makes.  Every run must end without a
 * crash, every engine must be freed with zero live allocations, and the
 * engines must still answer what they can.  A second sweep makes every
 * allocation from the Nth on fail ("sticky"), for a sample of N.
 * Under the sanitizer build this also proves there is no leak or overflow on
 * any error path.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "dht_int.h"
#include "netsim.h"

#define NODES 6

typedef struct run {
  int boots, lookups, puts;
} run;

static void on_event(void *ctx, int node, const dht_event *ev) {
  (void)node;
  run *r = ctx;
  if (ev->type == DHT_EV_BOOTSTRAP)
    r->boots++;
  else if (ev->type == DHT_EV_LOOKUP)
    r->lookups++;
  else if (ev->type == DHT_EV_PUT)
    r->puts++;
}

/* One scripted run.  Returns the allocator's call count; *ok tells whether
 * the whole script completed (it may not when allocations fail). */
static uint64_t one_run(uint64_t seed, uint64_t fail_at, int sticky, bool *ok) {
  tu_alloc a;
  memset(&a, 0, sizeof a);
  a.fail_at = fail_at;
  a.fail_sticky = sticky;
  dht_mem mem = tu_alloc_mem(&a);
  run r = {0, 0, 0};
  netsim_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.n = NODES;
  cfg.seed = seed;
  dht_settings_default(&cfg.settings);
  cfg.settings.replay_window = 64;
  cfg.settings.key_cache = 16;
  cfg.settings.max_records = 16;
  cfg.mem = &mem;
  cfg.on_event = on_event;
  cfg.ctx = &r;
  netsim *ns = NULL;
  *ok = false;
  if (netsim_new(&ns, &cfg) == 0) {
    dht_peer seedp = netsim_peer(ns, 0);
    bool fine = dht_bootstrap(netsim_engine(ns, 0), NULL, 0, 0) > 0;
    netsim_touch(ns, 0);
    for (int i = 1; i < NODES; i++) {
      fine &= dht_bootstrap(netsim_engine(ns, i), &seedp, 1, netsim_now(ns)) > 0;
      netsim_touch(ns, i);
    }
    fine &= netsim_run(ns, netsim_now(ns) + 40000, NULL, NULL) == 0;
    for (int i = 0; i < NODES; i++) {
      dht_typed_addr ta = {DHT_ADDR_LAN, netsim_addr(ns, i)};
      fine &= dht_set_addrs(netsim_engine(ns, i), &ta, 1) == 0;
      fine &= dht_put_record(netsim_engine(ns, i), netsim_now(ns)) > 0;
      netsim_touch(ns, i);
    }
    fine &= netsim_run(ns, netsim_now(ns) + 40000, NULL, NULL) == 0;
    for (int i = 0; i < NODES; i++) {
      uint8_t target[DHT_ID_LEN];
      tu_rng_bytes(netsim_rng(ns), target, sizeof target);
      fine &= dht_find_node(netsim_engine(ns, i), target, netsim_now(ns)) > 0;
      uint8_t id[DHT_ID_LEN];
      dht_id_from_pk(id, netsim_identity(ns, (i + 1) % NODES)->pk);
      fine &= dht_get_record(netsim_engine(ns, i), id, netsim_now(ns)) > 0;
      netsim_touch(ns, i);
    }
    fine &= netsim_run(ns, netsim_now(ns) + 40000, NULL, NULL) == 0;
    /* a snapshot round trip also allocates */
    uint8_t snap[8192];
    dht_ssize n = dht_save_table(netsim_engine(ns, 1), snap, sizeof snap, NULL);
    fine &= n > 0 && dht_load_table(netsim_engine(ns, 2), snap, (size_t)n, netsim_now(ns)) >= 0;
    *ok = fine && r.boots == NODES && r.puts == NODES && r.lookups == 2 * NODES;
  }
  netsim_del(ns);
  /* whatever failed, every engine freed everything it had */
  if (a.live != 0 || a.bytes_live != 0) {
    printf("fail_at %llu sticky %d: %llu allocations (%zu bytes) leaked\n",
           (unsigned long long)fail_at, sticky, (unsigned long long)a.live, a.bytes_live);
    fail();
  }
  return a.calls;
}

static void test_sweep(void **state) {
  (void)state;
  uint64_t seed = tu_seed("allocfail");
  bool ok;
  uint64_t total = one_run(seed, 0, 0, &ok);
  assert_true(ok); /* the clean run completes the whole script */
  printf("a clean run makes %llu allocations; failing each one in turn\n",
         (unsigned long long)total);
  assert_true(total > 50);
  int completed = 0;
  for (uint64_t n = 1; n <= total; n++) {
    one_run(seed, n, 0, &ok);
    completed += ok;
  }
  printf("single failures: %llu runs, %d still completed the whole script\n",
         (unsigned long long)total, completed);
  int sampled = 0;
  for (uint64_t n = 1; n <= total; n += 1 + total / 200) {
    one_run(seed, n, 1, &ok);
    sampled++;
  }
  printf("sticky failures: %d runs from allocation N onwards, no crash, no leak\n", sampled);
}

int main(void) {
  if (sodium_init() < 0)
    return 1;
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_sweep)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}

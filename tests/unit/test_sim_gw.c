/*
 * test_sim_gw.c - roost-sim's scripted port-mapping gateway (sim/sim_gw.c)
 * under the real policy (nat/nat_portmap.c), and the run that wires them to
 * the NAT service (sim/sim_run.c).  A upnp box's gateway grants a forward
 * over both protocols after its scripted delays, a stranger then gets in,
 * a clean stop deletes it and a vanished host's forward lapses with its
 * lease while a live one is renewed; a box without a gateway makes the
 * policy back off; misbehaving gateways time out or answer garbage; the
 * share of them follows the setting; and in a whole run upnp hosts become
 * servers through a verified mapping while port-restricted ones stay
 * clients, with no unreachable table entry.
 *
 * Random inputs come from a seed that is printed; ROOST_SEED=<n> replays it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nat.h"
#include "sim_int.h"

#define HOST_STREAM 0x4000000000ull /* sim_run.c's per-host streams */

static uint64_t seed;

/* Host 0 behind a box of the given type, host 1 public: a stranger. */
typedef struct rig {
  sim_config c;
  sim_net *net;
  sim_gw gw;
  nat_portmap *pm;
  dht_ts now;
  int mapped[NAT_PM_NPROTO]; /* NAT_PM_EV_MAPPED seen */
  int failed[NAT_PM_NPROTO]; /* NAT_PM_EV_FAILED seen */
} rig;

static void rig_up(rig *r, int box, int kind, uint32_t lease_s) {
  memset(r, 0, sizeof *r);
  sim_config_default(&r->c);
  r->c.seed = seed;
  r->c.jitter = 0;
  char err[256];
  assert_int_equal(sim_net_new(&r->net, &r->c, err, sizeof err), 0);
  for (int i = 0; i < 2; i++) {
    sim_rng g;
    sim_rng_init(&g, r->c.seed, HOST_STREAM + (uint64_t)i);
    assert_int_equal(sim_net_host_add(r->net, i, &g), 0);
  }
  assert_int_equal(sim_net_nat_set(r->net, 0, box, 120000, false), 0);
  sim_gw_init(&r->gw, r->net, 0, kind, &r->now);
  nat_portmap_settings ps;
  nat_portmap_settings_default(&ps);
  ps.lease_s = lease_s;
  nat_gw_ops ops[NAT_PM_NPROTO];
  sim_gw_ops(&r->gw, ops);
  const nat_gw_ops *po[NAT_PM_NPROTO] = {&ops[0], &ops[1]};
  assert_int_equal(nat_portmap_new(&r->pm, &ps, po, NULL, NULL), 0);
  assert_int_equal(nat_portmap_start(r->pm, 4000, r->now), 0);
}

static void rig_down(rig *r) {
  nat_portmap_del(r->pm);
  sim_net_del(r->net);
}

/* Runs the policy and its gateway as sim_run.c does, until `until`. */
static void rig_run(rig *r, dht_ts until) {
  for (;;) {
    nat_pm_event ev;
    while (nat_portmap_poll_event(r->pm, &ev) == 0) {
      if (ev.type == NAT_PM_EV_MAPPED)
        r->mapped[ev.proto]++;
      if (ev.type == NAT_PM_EV_FAILED)
        r->failed[ev.proto]++;
    }
    dht_ts t = nat_portmap_get_expiry(r->pm), g = sim_gw_expiry(&r->gw);
    if (g < t)
      t = g;
    if (t > until)
      break;
    if (t > r->now)
      r->now = t;
    uint64_t id;
    nat_gw_result res;
    while (sim_gw_take(&r->gw, r->now, &id, &res) == 1)
      assert_int_equal(nat_portmap_done(r->pm, id, &res, r->now), 0);
    if (nat_portmap_get_expiry(r->pm) <= r->now)
      nat_portmap_handle_expiry(r->pm, r->now);
  }
  r->now = until;
}

/* Whether a datagram from the public host reaches host 0's port 4000 at
 * its box's public address now. */
static bool stranger_gets_in(rig *r) {
  dht_addr to = sim_net_public_addr(r->net, 0);
  to.port = 4000;
  sim_delivery dv;
  uint8_t b[8] = {0};
  if (sim_net_send(r->net, 1, 0, &to, 0, b, sizeof b, r->now, &dv) != 0)
    return false;
  bool in = dv.dst == 0 && sim_net_arrives(r->net, dv.d, 0, dv.at) && dv.d->local == 0;
  sim_net_dgram_free(r->net, dv.d);
  return in;
}

static void test_upnp_maps_renews_deletes(void **state) {
  (void)state;
  rig r;
  rig_up(&r, SIM_NAT_UPNP, SIM_GW_OK, 7200);
  assert_false(stranger_gets_in(&r));
  /* NAT-PMP answers in milliseconds, UPnP after its 2 s discovery */
  rig_run(&r, 100);
  assert_int_equal(r.mapped[NAT_PM_NATPMP], 1);
  assert_int_equal(r.mapped[NAT_PM_UPNP], 0);
  assert_true(sim_net_nat_forwarded(r.net, 0, 4000, r.now));
  assert_true(stranger_gets_in(&r));
  rig_run(&r, 3000);
  assert_int_equal(r.mapped[NAT_PM_UPNP], 1);
  nat_pm_info mi;
  assert_int_equal(nat_portmap_info(r.pm, NAT_PM_UPNP, &mi, r.now), 0);
  assert_int_equal(mi.state, NAT_PM_MAPPED);
  dht_addr pub = sim_net_public_addr(r.net, 0);
  assert_memory_equal(mi.ext.ip, pub.ip, 4);
  assert_int_equal(mi.ext.port, 4000);
  assert_int_equal(r.gw.asked, 2);
  assert_int_equal(r.gw.granted, 2);
  /* the dial-back's verdict makes it count */
  dht_addr ext;
  assert_int_equal(nat_portmap_external(r.pm, &ext, r.now), DHT_ERR_NOTFOUND);
  assert_int_equal(nat_portmap_verified(r.pm, NAT_PM_UPNP, true, r.now), 0);
  assert_int_equal(nat_portmap_external(r.pm, &ext, r.now), 0);
  assert_int_equal(ext.port, 4000);
  /* renewed at half the lease: three lease lengths later it is still there */
  rig_run(&r, 3 * 7200 * 1000);
  assert_true(r.gw.granted >= 2 + 2 * 5);
  assert_true(sim_net_nat_forwarded(r.net, 0, 4000, r.now));
  /* a clean stop deletes it at once */
  assert_int_equal(nat_portmap_stop(r.pm, r.now), 0);
  assert_false(sim_net_nat_forwarded(r.net, 0, 4000, r.now));
  assert_false(stranger_gets_in(&r));
  rig_run(&r, r.now + 1000);
  assert_true(nat_portmap_is_stopped(r.pm, r.now));
  assert_int_equal(r.gw.bad_req, 0);
  rig_down(&r);
}

static void test_lease_lapses(void **state) {
  (void)state;
  rig r;
  rig_up(&r, SIM_NAT_UPNP, SIM_GW_OK, 120);
  rig_run(&r, 3000);
  assert_true(sim_net_nat_forwarded(r.net, 0, 4000, r.now));
  /* while the policy runs, renewals keep it */
  rig_run(&r, 10 * 60 * 1000);
  assert_true(sim_net_nat_forwarded(r.net, 0, 4000, r.now));
  /* the host vanishes: nobody renews, nobody deletes; the last grant was
   * at most half a lease ago */
  dht_ts t = r.now;
  assert_true(sim_net_nat_forwarded(r.net, 0, 4000, t + 59 * 1000));
  assert_false(sim_net_nat_forwarded(r.net, 0, 4000, t + 121 * 1000));
  r.now = t + 121 * 1000;
  assert_false(stranger_gets_in(&r));
  rig_down(&r);
}

static void test_no_gateway_backs_off(void **state) {
  (void)state;
  rig r;
  rig_up(&r, SIM_NAT_PORT, SIM_GW_NONE, 7200);
  assert_int_equal(sim_gw_kind_of(r.net, 0, seed, 0), SIM_GW_NONE);
  rig_run(&r, 16 * 60 * 1000);
  assert_int_equal(r.mapped[0] + r.mapped[1], 0);
  assert_int_equal(r.failed[NAT_PM_NATPMP], 1); /* once per run of failures */
  assert_int_equal(r.failed[NAT_PM_UPNP], 1);
  static const int want[NAT_PM_NPROTO] = {NAT_GW_ERR_UNSUPPORTED, NAT_GW_ERR_NOGATEWAY};
  for (int p = 0; p < NAT_PM_NPROTO; p++) {
    nat_pm_info mi;
    assert_int_equal(nat_portmap_info(r.pm, p, &mi, r.now), 0);
    assert_int_equal(mi.state, NAT_PM_FAILED);
    assert_int_equal(mi.last_error, want[p]);
    /* backoff 30 s doubling: tries at 0, 30, 90, 210, 450 s and 930 s */
    assert_int_equal(mi.attempts, 6);
    assert_int_equal(mi.failures_row, 6);
  }
  assert_int_equal(r.gw.asked, 0);
  assert_false(sim_net_nat_forwarded(r.net, 0, 4000, r.now));
  rig_down(&r);
}

static void test_misbehaving(void **state) {
  (void)state;
  rig r;
  rig_up(&r, SIM_NAT_UPNP, SIM_GW_SILENT, 7200);
  rig_run(&r, 5 * 60 * 1000);
  nat_pm_info mi;
  assert_int_equal(nat_portmap_info(r.pm, NAT_PM_UPNP, &mi, r.now), 0);
  assert_int_equal(mi.last_error, NAT_GW_ERR_TIMEOUT);
  assert_int_equal(r.mapped[0] + r.mapped[1], 0);
  rig_down(&r);

  rig_up(&r, SIM_NAT_UPNP, SIM_GW_GARBAGE, 7200);
  rig_run(&r, 5 * 60 * 1000);
  nat_pm_stats st;
  nat_portmap_get_stats(r.pm, &st);
  assert_true(st.garbage >= 2);
  assert_int_equal(nat_portmap_info(r.pm, NAT_PM_NATPMP, &mi, r.now), 0);
  assert_int_equal(mi.last_error, NAT_GW_ERR_GARBAGE);
  assert_int_equal(r.mapped[0] + r.mapped[1], 0);
  assert_false(sim_net_nat_forwarded(r.net, 0, 4000, r.now));
  rig_down(&r);
}

static void test_kind_share(void **state) {
  (void)state;
  sim_config c;
  sim_config_default(&c);
  c.seed = seed;
  memset(c.nat_mix, 0, sizeof c.nat_mix);
  c.nat_mix[SIM_NAT_UPNP] = 0.5;
  c.nat_mix[SIM_NAT_PORT] = 0.5;
  sim_net *net;
  char err[256];
  assert_int_equal(sim_net_new(&net, &c, err, sizeof err), 0);
  int n = 4000, upnp = 0, bad = 0, silent = 0;
  for (int i = 0; i < n; i++) {
    sim_rng g;
    sim_rng_init(&g, c.seed, HOST_STREAM + (uint64_t)i);
    assert_int_equal(sim_net_host_add(net, i, &g), 0);
    int k = sim_gw_kind_of(net, i, c.seed, 0.2);
    assert_int_equal(k, sim_gw_kind_of(net, i, c.seed, 0.2)); /* a function, no draw */
    if (sim_net_nat_type(net, i) != SIM_NAT_UPNP) {
      assert_int_equal(k, SIM_GW_NONE);
      continue;
    }
    upnp++;
    bad += k != SIM_GW_OK;
    silent += k == SIM_GW_SILENT;
    assert_int_equal(sim_gw_kind_of(net, i, c.seed, 0), SIM_GW_OK);
  }
  assert_true(upnp > 1900 && upnp < 2100);
  assert_true(bad > upnp * 0.15 && bad < upnp * 0.25);
  assert_true(silent > bad / 3 && silent < bad * 2 / 3);
  sim_net_del(net);
}

/* A whole run, small: upnp hosts become servers through verified mappings
 * their records carry; port-restricted ones back off and stay clients. */
static void test_run(void **state) {
  (void)state;
  sim_config c;
  sim_config_default(&c);
  c.seed = seed;
  c.nodes = 120;
  c.join_ms = 30 * 1000;
  c.warmup_ms = 60 * 1000;
  c.duration_ms = 7 * 60 * 1000;
  c.lookup_rate = 1;
  c.crypto = false;
  c.progress = false;
  c.quiet = true;
  memset(c.nat_mix, 0, sizeof c.nat_mix);
  c.nat_mix[SIM_NAT_PUBLIC] = 0.4;
  c.nat_mix[SIM_NAT_UPNP] = 0.3;
  c.nat_mix[SIM_NAT_PORT] = 0.3;
  c.nat_svc = true;
  c.nat_seeds = 16;
  sim_result res;
  char err[256];
  assert_int_equal(sim_run(&c, &res, err, sizeof err), 0);
  const sim_natsvc_stats *t = &res.natsvc;
  int upnp = 0, upnp_srv = 0, upnp_mapped = 0, port = 0;
  for (int i = 0; i < t->nhosts; i++) {
    const sim_nat_host *h = &t->hosts[i];
    assert_true(h->up);
    if (h->type == SIM_NAT_UPNP) {
      upnp++;
      /* a host that never knew its public address (the first to join,
       * alone) has nothing to dial back */
      if (h->class_ms < 0)
        continue;
      /* Reachable, and a server, in every case; the mapping's own verdict
       * may still be owed when a dial-back of the observed address went
       * through the forward first (the box's port for the host's flows is
       * the forwarded one): then its record has no mapped address yet. */
      if (!h->mapped)
        printf("upnp host %d: reachable, mapping not verified yet (class at %lld ms, mode at "
               "%lld ms)\n",
               i, (long long)h->class_ms, (long long)h->mode_ms);
      assert_true(h->server);
      assert_int_equal(h->reach, NAT_REACH_YES);
      upnp_srv++;
      upnp_mapped += h->mapped;
    } else if (h->type == SIM_NAT_PORT) {
      port++;
      assert_false(h->mapped);
      assert_false(h->server);
    }
  }
  assert_true(upnp >= 30 && port >= 30);
  assert_true(upnp_srv >= upnp - 1);
  assert_true(upnp_mapped * 10 >= upnp_srv * 9); /* at least 90% verified in 7 minutes */
  assert_true(t->maps_granted >= (uint64_t)upnp_srv);
  assert_true(t->maps_verified >= (uint64_t)upnp_srv);
  assert_true(t->maps_asked >= t->maps_granted);
  assert_true(t->pm_bytes > 0 && t->pm_bytes < 2048);
  assert_true(t->entries > 0);
  assert_int_equal(t->entries_unreachable, 0);
  sim_result_free(&res);
}

int main(void) {
  const char *env = getenv("ROOST_SEED");
  if (env && *env) {
    seed = strtoull(env, NULL, 0);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec;
  }
  printf("test_sim_gw seed: %llu (set ROOST_SEED=%llu to repeat)\n", (unsigned long long)seed,
         (unsigned long long)seed);

  /* roost-sim's deterministic libsodium, for the whole run of test_run */
  if (sim_sodium_deterministic(seed) != 0 || sodium_init() < 0)
    return 1;

  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_upnp_maps_renews_deletes),
      cmocka_unit_test(test_lease_lapses),
      cmocka_unit_test(test_no_gateway_backs_off),
      cmocka_unit_test(test_misbehaving),
      cmocka_unit_test(test_kind_share),
      cmocka_unit_test(test_run),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_nat_dial.c - dial-backs at the lowest layer: 32 engines on netsim
 * (counter clock, 10 ms links), each with the NAT service; one of them in
 * auto mode.  Without a NAT in the way it becomes a server once a probe from
 * a node it never sent to gets in; behind a filtering NAT (netsim_set_filter:
 * only nodes it sent to get in) it stays a client; a dial-back cannot be
 * aimed at an address other than the requester's.  A client keeps
 * introducers and names them in its record; a server drops them.
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

#define N 32
#define A 4 /* the node under test (IPv4: netsim's even nodes) */

typedef struct world {
  netsim *ns;
  nat_svc *nat[N];
  int boots, want;
  int64_t get_cmd; /* a GET whose result we keep */
  bool got;
  dht_lookup_result get;
} world;

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

static bool got_done(void *ctx) {
  return ((world *)ctx)->got;
}

static bool boots_done(void *ctx) {
  world *w = ctx;
  return w->boots >= w->want;
}

static void world_new(world *w, bool filter_a) {
  memset(w, 0, sizeof *w);
  netsim_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.n = N;
  cfg.seed = tu_seed("nat_dial");
  dht_settings_default(&cfg.settings);
  cfg.on_event = on_event;
  cfg.ctx = w;
  assert_int_equal(netsim_new(&w->ns, &cfg), 0);
  for (int i = 0; i < N; i++) {
    nat_settings s;
    nat_settings_default(&s);
    s.mode = i == A ? NAT_MODE_AUTO : NAT_MODE_SERVER;
    dht_callbacks cb = {netsim_rng(w->ns), tu_rand_cb, NULL};
    assert_int_equal(
        nat_svc_new(&w->nat[i], netsim_engine(w->ns, i), &s, &cb, NULL, netsim_now(w->ns)), 0);
  }
  if (filter_a)
    netsim_set_filter(w->ns, A, true);
  /* auto mode starts as a client */
  assert_false(dht_is_server(netsim_engine(w->ns, A)));
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
}

static void world_del(world *w) {
  for (int i = 0; i < N; i++)
    nat_svc_del(w->nat[i]);
  netsim_del(w->ns);
}

static void status(world *w, nat_status *st) {
  nat_get_status(w->nat[A], netsim_now(w->ns), st);
  printf("A: %s, %s; dials %llu (ok %llu, failed %llu, nothing learnt %llu); filtered %llu\n",
         st->server ? "server" : "client", nat_reach_name(st->reach), (unsigned long long)st->dials,
         (unsigned long long)st->dials_ok, (unsigned long long)st->dials_failed,
         (unsigned long long)st->dials_inconclusive, (unsigned long long)netsim_filtered(w->ns));
}

static void test_reachable_becomes_server(void **state) {
  (void)state;
  world w;
  world_new(&w, false);
  nat_status st;
  netsim_run(w.ns, netsim_now(w.ns) + 3 * 60000, NULL, NULL);
  status(&w, &st);
  assert_int_equal(st.reach, NAT_REACH_YES);
  assert_true(st.server);
  assert_true(st.mode_changes >= 1);
  dht_addr me = netsim_addr(w.ns, A);
  assert_true(dht_addr_eq(&st.reach_addr, &me));
  /* per family: its IPv4 address was tested; it has no IPv6 one */
  assert_int_equal(st.fam[0].reach, NAT_REACH_YES);
  assert_true(dht_addr_eq(&st.fam[0].addr, &me));
  assert_int_equal(st.fam[1].reach, NAT_REACH_UNKNOWN);
  /* the helpers and probers were others */
  uint64_t helped = 0, probes = 0;
  for (int i = 0; i < N; i++) {
    nat_status o;
    nat_get_status(w.nat[i], netsim_now(w.ns), &o);
    if (i != A) {
      helped += o.helped;
      probes += o.probes_sent;
    }
  }
  assert_true(helped >= 1 && probes >= 1);
  assert_int_equal(st.nintro, 0); /* a server needs no introducer */
  world_del(&w);
}

/* Node at i's record, as a GET from node `from` finds it. */
static void get_record(world *w, int from, int i) {
  w->got = false;
  uint8_t id[DHT_ID_LEN];
  dht_id_from_pk(id, netsim_identity(w->ns, i)->pk);
  w->get_cmd = dht_get_record(netsim_engine(w->ns, from), id, netsim_now(w->ns));
  assert_true(w->get_cmd > 0);
  netsim_touch(w->ns, from);
  assert_int_equal(netsim_run(w->ns, netsim_now(w->ns) + 30000, got_done, w), 1);
  assert_true(w->get.has_record);
}

static int node_of(world *w, const uint8_t pk[DHT_PK_LEN]) {
  for (int i = 0; i < N; i++)
    if (memcmp(netsim_identity(w->ns, i)->pk, pk, DHT_PK_LEN) == 0)
      return i;
  return -1;
}

/* A client behind a filtering NAT keeps 3 introducers, in distinct
 * networks, alive with keepalives, and its record names them; one that
 * goes silent is replaced, and the record follows. */
static void test_introducers(void **state) {
  (void)state;
  world w;
  world_new(&w, true);
  assert_true(dht_put_record(netsim_engine(w.ns, A), netsim_now(w.ns)) > 0);
  netsim_touch(w.ns, A);
  netsim_run(w.ns, netsim_now(w.ns) + 2 * 60000, NULL, NULL);
  nat_status st;
  status(&w, &st);
  assert_false(st.server);
  assert_int_equal(st.nintro, NAT_INTROS);
  /* a keepalive every 25 s each, for 2 minutes: about 12 or more */
  printf("introducers %d, keepalives %llu\n", st.nintro, (unsigned long long)st.keepalives);
  assert_true(st.keepalives >= 3 * 4);
  for (int i = 0; i < st.nintro; i++) {
    int k = node_of(&w, st.intro[i].who.pk);
    assert_true(k >= 0 && k != A);
    dht_addr ka = netsim_addr(w.ns, k);
    assert_true(dht_addr_eq(&st.intro[i].who.addr, &ka));
    for (int j = 0; j < i; j++)
      assert_true(nat_prefix_key(&st.intro[j].who.addr) != nat_prefix_key(&ka));
  }
  get_record(&w, 1, A);
  assert_int_equal(w.get.record.flags & DHT_REC_REACHABLE, 0);
  assert_int_equal(w.get.record.nintro, st.nintro);
  for (int i = 0; i < st.nintro; i++)
    assert_memory_equal(w.get.record.intro[i].pk, st.intro[i].who.pk, DHT_PK_LEN);

  /* the first goes silent: 3 keepalives unanswered, then another */
  int dead = node_of(&w, st.intro[0].who.pk);
  uint64_t changes = st.intro_changes;
  netsim_set_up(w.ns, dead, false);
  netsim_run(w.ns, netsim_now(w.ns) + 90000, NULL, NULL);
  status(&w, &st);
  printf("after node %d went silent: introducers %d, changes %llu -> %llu\n", dead, st.nintro,
         (unsigned long long)changes, (unsigned long long)st.intro_changes);
  assert_int_equal(st.nintro, NAT_INTROS);
  assert_true(st.intro_changes >= changes + 2); /* one lost, one gained */
  for (int i = 0; i < st.nintro; i++)
    assert_int_not_equal(node_of(&w, st.intro[i].who.pk), dead);
  get_record(&w, dead == 2 ? 3 : 2, A); /* from a node that is up */
  assert_int_equal(w.get.record.nintro, NAT_INTROS);
  for (int i = 0; i < w.get.record.nintro; i++)
    assert_int_not_equal(node_of(&w, w.get.record.intro[i].pk), dead);
  world_del(&w);
}

/* When every introducer goes silent at once the fault is more likely ours
 * (our link, our NAT) than theirs: none is shunned, and once we are back
 * the same ones serve again rather than strangers, each of which would be
 * a dial-back prober fewer. */
static void test_introducers_all_silent(void **state) {
  (void)state;
  world w;
  world_new(&w, true);
  netsim_run(w.ns, netsim_now(w.ns) + 2 * 60000, NULL, NULL);
  nat_status st;
  status(&w, &st);
  assert_int_equal(st.nintro, NAT_INTROS);
  int before[NAT_INTROS];
  for (int i = 0; i < NAT_INTROS; i++)
    before[i] = node_of(&w, st.intro[i].who.pk);
  netsim_set_deaf(w.ns, A, true); /* our own link breaks for 2 minutes */
  netsim_run(w.ns, netsim_now(w.ns) + 2 * 60000, NULL, NULL);
  status(&w, &st);
  printf("while down: introducers %d\n", st.nintro);
  assert_int_equal(st.nintro, 0);
  netsim_set_deaf(w.ns, A, false);
  netsim_run(w.ns, netsim_now(w.ns) + 60000, NULL, NULL);
  status(&w, &st);
  int same = 0;
  for (int i = 0; i < st.nintro; i++)
    for (int j = 0; j < NAT_INTROS; j++)
      same += node_of(&w, st.intro[i].who.pk) == before[j];
  printf("back up: introducers %d, %d of them as before (%d %d %d)\n", st.nintro, same, before[0],
         before[1], before[2]);
  assert_int_equal(st.nintro, NAT_INTROS);
  assert_int_equal(same, NAT_INTROS);
  world_del(&w);
}

static void test_filtered_stays_client(void **state) {
  (void)state;
  world w;
  world_new(&w, true);
  nat_status st;
  netsim_run(w.ns, netsim_now(w.ns) + 6 * 60000, NULL, NULL);
  status(&w, &st);
  assert_int_equal(st.dials_ok, 0);
  assert_true(st.dials_failed >= 3);
  assert_int_equal(st.reach, NAT_REACH_NO);
  assert_int_equal(st.fam[0].reach, NAT_REACH_NO);
  assert_true(st.fam[0].fails >= 3);
  assert_false(st.server);
  assert_true(netsim_filtered(w.ns) > 0);
  world_del(&w);
}

static void ignore(void *ctx, dht *e, const dht_msg_in *in, dht_ts now) {
  (void)ctx, (void)e, (void)in, (void)now;
}

/* Delivers the NAT message q, sealed by sender's key, to node `to` from addr
 * on its local socket `local`. */
static void deliver(world *w, int sender, int to, const dht_addr *addr, uint32_t local,
                    const nat_wire_msg *q, uint8_t answer) {
  uint8_t body[128];
  dht_ssize n = nat_wire_encode(body, sizeof body, q);
  assert_true(n > 0);
  dht *x;
  dht_callbacks xcb = {netsim_rng(w->ns), tu_rand_cb, NULL};
  assert_int_equal(dht_new(&x, netsim_identity(w->ns, sender), NULL, &xcb, NULL, netsim_now(w->ns)),
                   0);
  dht_service xs = {.type_lo = NAT_MSG_LO, .type_hi = NAT_MSG_HI, .on_msg = ignore};
  int xid = dht_service_add(x, &xs);
  assert_true(xid > 0);
  dht_peer pt = netsim_peer(w->ns, to);
  dht_req_opts o = {.answer = answer};
  assert_int_equal(dht_svc_request(x, xid, &pt, body, (size_t)n, &o, netsim_now(w->ns)), 0);
  uint8_t dg[DHT_MAX_PKT];
  dht_addr dst;
  dht_ssize dl = d1_write(x, &dst, dg, sizeof dg, netsim_now(w->ns));
  assert_true(dl > 0);
  dht_del(x);
  dht_path path = {.local = local, .remote = *addr};
  assert_int_equal(dht_read_pkt(netsim_engine(w->ns, to), &path, dg, (size_t)dl, netsim_now(w->ns)),
                   0);
}

static void deliver_probe(world *w, int sender, const dht_addr *addr, uint32_t local,
                          const uint8_t *nonce) {
  nat_wire_msg q = {.type = NAT_T_PROBE, .txid = 77};
  q.u.probe.nonce = nonce;
  deliver(w, sender, A, addr, local, &q, NAT_T_PROBE_ACK);
}

/* The prober's node-wide budget: DIAL_FWDs from 60 helper networks at one
 * instant, each for a target in its own network (so neither the per-asker
 * gap nor the engine's per-destination bucket decides), get others_burst
 * probes; a second later others_pps more. */
static void test_others_budget(void **state) {
  (void)state;
  world w;
  world_new(&w, false);
  int c = 9;
  uint8_t nonce[NAT_NONCE_LEN] = {4};
  nat_settings set;
  nat_settings_default(&set);
  nat_status s0, s1;
  nat_get_status(w.nat[c], netsim_now(w.ns), &s0);
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < 60; i++) {
      dht_addr helper = netsim_addr(w.ns, 11);
      helper.ip[0] = 198, helper.ip[1] = (uint8_t)(51 + round), helper.ip[2] = (uint8_t)i;
      nat_wire_msg f = {.type = NAT_T_DIAL_FWD, .txid = 900 + (uint32_t)i};
      f.u.dial_fwd.target.family = DHT_AF_INET;
      memcpy(f.u.dial_fwd.target.ip, (const uint8_t[]){203, (uint8_t)(round + 1), (uint8_t)i, 9},
             4);
      f.u.dial_fwd.target.port = 4000;
      f.u.dial_fwd.pk = netsim_peer(w.ns, A).pk;
      f.u.dial_fwd.nonce = nonce;
      deliver(&w, 12 + i % 16, c, &helper, 0, &f, NAT_T_DIAL_FWD_ACK);
    }
    nat_get_status(w.nat[c], netsim_now(w.ns), &s1);
    printf("round %d: 60 DIAL_FWDs at once, %llu probes sent, %llu refused\n", round,
           (unsigned long long)(s1.probes_sent - s0.probes_sent),
           (unsigned long long)(s1.refused - s0.refused));
    /* the network's own dial-backs and vouches (PROBEs and CHECKs of
     * this node's) may have used a few tokens of the budget meanwhile: 3
     * with seed 1796653665837348 */
    int want = round == 0 ? set.others_burst : set.others_pps;
    int sent = (int)(s1.probes_sent - s0.probes_sent);
    assert_true(sent <= want && sent >= want - 5);
    assert_int_equal(s1.refused - s0.refused, 60 - sent);
    s0 = s1;
    netsim_run(w.ns, netsim_now(w.ns) + 1000, NULL, NULL); /* refills others_pps */
  }
  world_del(&w);
}

/* Port mappings: a dial-back at the mapped port proves or disproves it, and
 * the verdict comes back with the caller's tag.  netsim has no gateway: the
 * node's own port stands for a working forward, another port for one that
 * leads nowhere.  Behind the filter even the right port is not proven. */
static void test_mapping_verdicts(void **state) {
  (void)state;
  for (int filtered = 0; filtered < 2; filtered++) {
    world w;
    world_new(&w, filtered);
    netsim_run(w.ns, netsim_now(w.ns) + 30000, NULL, NULL); /* the vote first */
    dht_addr me = netsim_addr(w.ns, A);
    assert_int_equal(nat_verify_mapping(w.nat[A], 7, me.port, netsim_now(w.ns)), 0);
    assert_int_equal(nat_verify_mapping(w.nat[A], 8, (uint16_t)(me.port + 1), netsim_now(w.ns)), 0);
    netsim_touch(w.ns, A);
    bool got7 = false, got8 = false, ok7 = false, ok8 = false;
    for (int k = 0; k < 30 && !(got7 && got8); k++) {
      netsim_run(w.ns, netsim_now(w.ns) + 10000, NULL, NULL);
      nat_event ev;
      while (nat_poll_event(w.nat[A], &ev) == 0) {
        assert_int_equal(ev.type, NAT_EV_MAPPING);
        if (ev.tag == 7) {
          got7 = true;
          ok7 = ev.ok;
          assert_int_equal(ev.addr.port, me.port);
        } else if (ev.tag == 8) {
          got8 = true;
          ok8 = ev.ok;
        }
      }
    }
    printf("mappings %s: right port %s, wrong port %s\n",
           filtered ? "behind the filter" : "without a NAT", ok7 ? "proven" : "not proven",
           ok8 ? "proven" : "not proven");
    assert_true(got7 && got8);
    assert_int_equal(ok7, !filtered);
    assert_false(ok8);
    world_del(&w);
  }
}

/* A requester whose DIAL_REQ names a source it does not receive at (a spoofed
 * address, or no cookie) gets nothing sent anywhere. */
static void test_cannot_aim(void **state) {
  (void)state;
  world w;
  world_new(&w, false);
  int b = 7;
  nat_status s0, s1;
  nat_get_status(w.nat[b], netsim_now(w.ns), &s0);
  /* a DIAL_REQ from A's key with a made-up cookie, delivered to B from a
   * victim's address */
  uint8_t nonce[NAT_NONCE_LEN] = {1}, cookie[DHT_TOKEN_LEN] = {2};
  nat_wire_msg q = {.type = NAT_T_DIAL_REQ, .txid = 99};
  q.u.dial_req.port = 4000;
  q.u.dial_req.nonce = nonce;
  q.u.dial_req.cookie = cookie;
  dht_addr victim = netsim_addr(w.ns, 20); /* another node's address */
  victim.port = 4001;
  deliver(&w, A, b, &victim, 0, &q, NAT_T_DIAL_RESP);
  netsim_touch(w.ns, b);
  netsim_run(w.ns, netsim_now(w.ns) + 5000, NULL, NULL);
  nat_get_status(w.nat[b], netsim_now(w.ns), &s1);
  assert_int_equal(s1.refused - s0.refused, 1);
  assert_int_equal(s1.helped, s0.helped);
  world_del(&w);
}

/* A prober probes only unicast addresses in the public space or in its
 * helper's own scope: a helper on the Internet cannot have it probe a host
 * on its LAN, its loopback or a multicast group. */
static void test_prober_targets(void **state) {
  (void)state;
  world w;
  world_new(&w, false);
  int c = 9;
  uint8_t nonce[NAT_NONCE_LEN] = {3};
  dht_addr lan_helper = netsim_addr(w.ns, 11); /* netsim's hosts are on a LAN (10/8) */
  dht_addr net_helper = lan_helper;
  net_helper.ip[0] = 198, net_helper.ip[1] = 51, net_helper.ip[2] = 100; /* public */
  struct {
    const dht_addr *from;
    uint8_t t[4];
    bool ok;
  } cases[] = {
      {&net_helper, {10, 0, 0, 2}, false},        {&net_helper, {127, 0, 0, 1}, false},
      {&net_helper, {224, 0, 0, 251}, false},     {&net_helper, {0, 1, 2, 3}, false},
      {&net_helper, {255, 255, 255, 255}, false}, {&net_helper, {100, 64, 1, 2}, false},
      {&lan_helper, {10, 0, 0, 2}, true},         {&net_helper, {203, 0, 113, 9}, true},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    nat_status s0, s1;
    nat_get_status(w.nat[c], netsim_now(w.ns), &s0);
    nat_wire_msg f = {.type = NAT_T_DIAL_FWD, .txid = 500 + (uint32_t)i};
    f.u.dial_fwd.target.family = DHT_AF_INET;
    memcpy(f.u.dial_fwd.target.ip, cases[i].t, 4);
    f.u.dial_fwd.target.port = 4000;
    f.u.dial_fwd.pk = netsim_peer(w.ns, A).pk;
    f.u.dial_fwd.nonce = nonce;
    /* each from another helper key, so the per-asker gap does not decide */
    deliver(&w, 12 + (int)i, c, cases[i].from, 0, &f, NAT_T_DIAL_FWD_ACK);
    nat_get_status(w.nat[c], netsim_now(w.ns), &s1);
    printf("probe %u.%u.%u.%u for a %s helper: %s\n", cases[i].t[0], cases[i].t[1], cases[i].t[2],
           cases[i].t[3], cases[i].from == &lan_helper ? "LAN" : "public",
           s1.probes_sent > s0.probes_sent ? "sent" : "refused");
    assert_int_equal(s1.probes_sent - s0.probes_sent, cases[i].ok ? 1 : 0);
    assert_int_equal(s1.refused - s0.refused, cases[i].ok ? 0 : 1);
    netsim_run(w.ns, netsim_now(w.ns) + 2000, NULL, NULL); /* past the prober's gap */
  }
  world_del(&w);
}

/* The nonce of the next dial-back A starts (run until one is under way). */
static const nat_dial *wait_dial(world *w, uint8_t nonce[NAT_NONCE_LEN]) {
  nat_svc *na = w->nat[A];
  for (int k = 0; k < 600; k++) {
    netsim_run(w->ns, netsim_now(w->ns) + 500, NULL, NULL);
    for (int i = 0; i < NAT_DIALS; i++)
      if (na->dials[i].used) {
        memcpy(nonce, na->dials[i].nonce, NAT_NONCE_LEN);
        return &na->dials[i];
      }
  }
  fail_msg("no dial-back within 300 s");
  return NULL;
}

/* A PROBE proves the address only if it comes from a node A has not sent to
 * lately, when it asked or since (a filtering NAT lets those in: the helper,
 * who knows the nonce, is one; so is a prober A happened to send to while
 * the probe flew), and on A's main socket; one that does not ends the
 * dial-back with nothing learnt (neither a proof nor a failure). */
static void test_probe_from_contacted_proves_nothing(void **state) {
  (void)state;
  world w;
  world_new(&w, true); /* the real probers cannot get in */
  nat_svc *na = w.nat[A];
  uint8_t nonce[NAT_NONCE_LEN];
  nat_status s0, s1;
  dht_addr contacted = netsim_addr(w.ns, 0); /* A's bootstrap node: A has sent to it */
  dht_addr stranger = netsim_addr(w.ns, 20);
  stranger.ip[2] ^= 0x55;    /* an address no node has */
  dht_addr later = stranger; /* a stranger until A pings it, after asking */
  later.ip[1] ^= 0x33;
  for (int round = 0; round < 4; round++) {
    const nat_dial *d = wait_dial(&w, nonce);
    nat_get_status(na, netsim_now(w.ns), &s0);
    if (round == 0) {
      deliver_probe(&w, 0, &contacted, 0, nonce);
    } else if (round == 1) {
      deliver_probe(&w, 20, &stranger, 1, nonce); /* a stranger, but on another socket */
    } else if (round == 2) {
      dht_peer p = netsim_peer(w.ns, 21);
      p.addr = later;
      assert_true(dht_ping(netsim_engine(w.ns, A), &p, netsim_now(w.ns)) > 0);
      netsim_touch(w.ns, A);
      netsim_run(w.ns, netsim_now(w.ns) + 1, NULL, NULL);
      assert_true(d->used);                    /* still waiting for its probe */
      deliver_probe(&w, 20, &later, 0, nonce); /* sent to after asking */
    } else {
      deliver_probe(&w, 20, &stranger, 0, nonce); /* a stranger on the main socket */
    }
    nat_get_status(na, netsim_now(w.ns), &s1);
    assert_false(d->used); /* decided, one way or the other */
    if (round < 3) {
      assert_int_equal(s1.dials_ok, s0.dials_ok);
      assert_int_equal(s1.dials_inconclusive, s0.dials_inconclusive + 1);
      assert_int_equal(s1.dials_failed, s0.dials_failed);
      assert_false(s1.server);
    } else {
      assert_int_equal(s1.dials_ok, s0.dials_ok + 1);
      assert_true(s1.server);
    }
  }
  world_del(&w);
}

/* A proof through the observed address does not outlive a NAT that turns
 * symmetric (a laptop carried from home into a hotel): the next dial-back
 * round finds the vote symmetric and the node a client again. */
static void test_symmetric_undoes_proof(void **state) {
  (void)state;
  world w;
  world_new(&w, false);
  netsim_run(w.ns, netsim_now(w.ns) + 3 * 60000, NULL, NULL);
  nat_status st;
  nat_get_status(w.nat[A], netsim_now(w.ns), &st);
  assert_int_equal(st.reach, NAT_REACH_YES);
  assert_true(st.server);
  /* peers in three networks now see a new port each */
  nat_svc *na = w.nat[A];
  nat_vote *v = &na->socks[0].v;
  assert_true(na->socks[0].used && na->socks[0].local == 0);
  nat_vote_init(v);
  dht_addr me = netsim_addr(w.ns, A);
  for (int i = 0; i < 3; i++) {
    dht_addr seen = me, from = netsim_addr(w.ns, 2 * (i + 3));
    seen.port = (uint16_t)(50000 + i);
    nat_vote_add(v, &seen, &from, netsim_now(w.ns));
  }
  na->next_dial = netsim_now(w.ns); /* the next round now, not in 10 minutes */
  netsim_touch(w.ns, A);
  netsim_run(w.ns, netsim_now(w.ns) + 1000, NULL, NULL);
  nat_get_status(na, netsim_now(w.ns), &st);
  printf("after the NAT turned symmetric: %s, %s\n", st.server ? "server" : "client",
         nat_reach_name(st.reach));
  assert_int_equal(st.reach, NAT_REACH_NO);
  assert_false(st.server);
  world_del(&w);
}

int main(void) {
  if (sodium_init() < 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reachable_becomes_server),
      cmocka_unit_test(test_filtered_stays_client),
      cmocka_unit_test(test_introducers),
      cmocka_unit_test(test_introducers_all_silent),
      cmocka_unit_test(test_cannot_aim),
      cmocka_unit_test(test_mapping_verdicts),
      cmocka_unit_test(test_probe_from_contacted_proves_nothing),
      cmocka_unit_test(test_prober_targets),
      cmocka_unit_test(test_others_budget),
      cmocka_unit_test(test_symmetric_undoes_proof),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_sim_net.c - roost-sim's virtual network (sim/sim_net.c, sim_int.h):
 * addresses and their way back to hosts, what a send returns (the delivery's
 * time from the latency model, the source address, the bytes), what it
 * drops (unknown addresses, loss, partitions, a full uplink queue), arrival
 * across a partition that started in flight, the uplink queue and its reset
 * when a host starts, reuse of datagram buffers, and that a seed reproduces
 * every delivery.  NAT boxes: the mix, RFC 5780-style probes of every type,
 * what is not routable, lazy mapping timeouts, hairpinning, TTL priming,
 * port forwards, the box's table and its cap, reproducible ports.  The
 * run's use of all this is checked end to end by the trace hashes in
 * tests/sim/test_sim.py.
 *
 * Random inputs come from a seed that is printed; ROOST_SEED=<n> replays it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim_int.h"

#define HOST_STREAM 0x4000000000ull /* sim_run.c's per-host streams */

static uint64_t seed;

/* A network of n hosts placed as sim_run.c places them: from each host's
 * own stream. */
static sim_net *net_of(const sim_config *c, int n) {
  sim_net *net;
  char err[256];
  assert_int_equal(sim_net_new(&net, c, err, sizeof err), 0);
  for (int i = 0; i < n; i++) {
    sim_rng r;
    sim_rng_init(&r, c->seed, HOST_STREAM + (uint64_t)i);
    assert_int_equal(sim_net_host_add(net, i, &r), 0);
  }
  return net;
}

/* The host's point on the torus, drawn as sim_net_host_add draws it. */
static sim_coord xy_of(const sim_config *c, int i) {
  sim_rng r;
  sim_rng_init(&r, c->seed, HOST_STREAM + (uint64_t)i);
  sim_coord p;
  p.x = (float)sim_rng_unit(&r);
  p.y = (float)sim_rng_unit(&r);
  return p;
}

static void config(sim_config *c) {
  sim_config_default(c);
  c->seed = seed;
  c->jitter = 0;
  c->loss = 0;
}

static void test_addresses(void **state) {
  (void)state;
  sim_config c;
  config(&c);
  sim_net *net = net_of(&c, 300);
  for (int i = 0; i < 300; i++) {
    dht_addr a = sim_net_addr(net, i);
    assert_int_equal(a.family, DHT_AF_INET);
    assert_int_equal(sim_net_host_of(net, &a), i);
    /* a /24 each: the engines' per-prefix limits see different networks */
    if (i > 0) {
      dht_addr b = sim_net_addr(net, i - 1);
      assert_true(memcmp(a.ip, b.ip, 3) != 0);
    }
  }
  dht_addr a = sim_net_addr(net, 7), b;
  b = a;
  b.port++;
  assert_int_equal(sim_net_host_of(net, &b), -1);
  b = a;
  b.ip[3] = 2;
  assert_int_equal(sim_net_host_of(net, &b), -1);
  b = a;
  b.family = DHT_AF_INET6;
  assert_int_equal(sim_net_host_of(net, &b), -1);
  b = a;
  b.ip[0] = 10; /* below the hosts' range */
  assert_int_equal(sim_net_host_of(net, &b), -1);
  b = sim_net_addr(net, 299);
  b.ip[2]++; /* host 300: not added */
  assert_int_equal(sim_net_host_of(net, &b), -1);
  sim_net_del(net);
  sim_net_del(NULL);
}

static void test_send_latency(void **state) {
  (void)state;
  sim_config c;
  config(&c);
  sim_net *net = net_of(&c, 50);
  uint8_t buf[300];
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = (uint8_t)(i * 7);
  for (int k = 0; k < 200; k++) {
    int a = k % 50, b = (k * 13 + 1) % 50;
    dht_addr to = sim_net_addr(net, b);
    sim_delivery dv;
    dht_ts now = 1000 * k;
    size_t len = 1 + (size_t)k % sizeof buf;
    assert_int_equal(sim_net_send(net, a, 0, &to, 0, buf, len, now, &dv), 0);
    assert_int_equal(dv.dst, b);
    /* without jitter the delay is half the model's RTT, rounded */
    double rtt = sim_synth_rtt(xy_of(&c, a), xy_of(&c, b), c.synth_base_ms, c.synth_per_unit_ms);
    double one = rtt / 2 < 0.05 ? 0.05 : rtt / 2;
    assert_int_equal(dv.at, now + llround(one));
    dht_addr from = sim_net_addr(net, a);
    assert_true(dht_addr_eq(&dv.d->from, &from));
    assert_int_equal(dv.d->len, len);
    assert_memory_equal(dv.d->data, buf, len);
    assert_true(sim_net_arrives(net, dv.d, b, dv.at));
    sim_net_dgram_free(net, dv.d);
  }
  sim_net_dgram_free(net, NULL);
  sim_net_del(net);
}

/* A host's extra sockets (dht_sock_open in the simulator): ports of its
 * address; a datagram from one carries that port, one to one arrives on it;
 * a closed or never-opened one is nobody; a TTL below the hop count dies. */
static void test_sockets(void **state) {
  (void)state;
  sim_config c;
  config(&c);
  sim_net *net = net_of(&c, 4);
  uint8_t buf[16] = {1, 2, 3};
  uint32_t id1, id2;
  assert_int_equal(sim_net_sock_next(net, 1, &id1), 0);
  assert_int_equal(sim_net_sock_next(net, 1, &id2), 0);
  assert_int_equal(id1, 1);
  assert_int_equal(id2, 2);
  assert_int_equal(sim_net_sock_open(net, 1, 2), -1); /* already open */
  assert_int_equal(sim_net_sock_open(net, 1, 0), -1);
  /* host 0 -> host 1's socket 2 */
  dht_addr to = sim_net_addr(net, 1);
  to.port = SIM_NET_SOCK_PORT + 2;
  assert_int_equal(sim_net_host_of(net, &to), 1);
  sim_delivery dv;
  assert_int_equal(sim_net_send(net, 0, 0, &to, 0, buf, sizeof buf, 0, &dv), 0);
  assert_int_equal(dv.dst, 1);
  assert_int_equal(dv.d->local, 2);
  sim_net_dgram_free(net, dv.d);
  /* host 1's socket 1 -> host 0: the source port names the socket */
  dht_addr to0 = sim_net_addr(net, 0);
  assert_int_equal(sim_net_send(net, 1, 1, &to0, 0, buf, sizeof buf, 0, &dv), 0);
  assert_int_equal(dv.d->from.port, SIM_NET_SOCK_PORT + 1);
  assert_int_equal(dv.d->local, 0);
  sim_net_dgram_free(net, dv.d);
  /* a socket closed while a datagram to it flies: it does not get in */
  assert_int_equal(sim_net_send(net, 0, 0, &to, 0, buf, sizeof buf, 0, &dv), 0);
  sim_net_sock_close(net, 1, 2);
  assert_false(sim_net_arrives(net, dv.d, 1, dv.at));
  sim_net_dgram_free(net, dv.d);
  /* closed, never opened, or another host's: nobody there */
  assert_int_equal(sim_net_host_of(net, &to), -1);
  assert_int_equal(sim_net_send(net, 0, 0, &to, 0, buf, sizeof buf, 0, &dv), SIM_NET_DROPPED);
  assert_int_equal(sim_net_send(net, 1, 2, &to0, 0, buf, sizeof buf, 0, &dv), SIM_NET_DROPPED);
  /* a TTL below the hop count dies on the way; at it, it arrives */
  assert_int_equal(sim_net_send(net, 0, 0, &to0, SIM_NET_HOPS - 1, buf, 1, 0, &dv),
                   SIM_NET_DROPPED);
  dht_addr to1 = sim_net_addr(net, 1);
  assert_int_equal(sim_net_send(net, 0, 0, &to1, SIM_NET_HOPS, buf, 1, 0, &dv), 0);
  sim_net_dgram_free(net, dv.d);
  /* a restarted host has none */
  sim_net_host_up(net, 1);
  assert_false(sim_net_sock_is_open(net, 1, 1));
  sim_net_del(net);
}

static void test_drops(void **state) {
  (void)state;
  sim_config c;
  config(&c);
  c.loss = 1;
  sim_net *net = net_of(&c, 10);
  uint8_t buf[8] = {0};
  sim_delivery dv = {-1, -1, NULL};
  dht_addr to = sim_net_addr(net, 3);
  assert_int_equal(sim_net_send(net, 0, 0, &to, 0, buf, sizeof buf, 0, &dv), SIM_NET_DROPPED);
  assert_null(dv.d); /* untouched */
  sim_net_del(net);

  c.loss = 0.25;
  net = net_of(&c, 10);
  int lost = 0, n = 4000;
  for (int k = 0; k < n; k++) {
    int rv = sim_net_send(net, k % 10, 0, &to, 0, buf, sizeof buf, 0, &dv);
    assert_true(rv == 0 || rv == SIM_NET_DROPPED);
    if (rv == 0)
      sim_net_dgram_free(net, dv.d);
    lost += rv == SIM_NET_DROPPED;
  }
  /* 4,000 draws at 1/4: the standard deviation is 27 */
  assert_in_range(lost, 850, 1150);
  /* no host at the address */
  dht_addr nobody = to;
  nobody.port = 1;
  assert_int_equal(sim_net_send(net, 0, 0, &nobody, 0, buf, sizeof buf, 0, &dv), SIM_NET_DROPPED);
  sim_net_del(net);
}

static void test_partition(void **state) {
  (void)state;
  sim_config c;
  config(&c);
  sim_net *net = net_of(&c, 100);
  assert_false(sim_net_is_partitioned(net));
  uint8_t buf[8] = {0};
  sim_rng r;
  sim_rng_init(&r, seed, 1);
  /* in flight before the cut: a datagram from every host to host 0 */
  sim_delivery early[100];
  dht_addr to0 = sim_net_addr(net, 0);
  for (int i = 0; i < 100; i++)
    assert_int_equal(sim_net_send(net, i, 0, &to0, 0, buf, sizeof buf, 0, &early[i]), 0);
  sim_net_partition(net, 0.3, &r);
  assert_true(sim_net_is_partitioned(net));
  int with0 = 0;
  for (int i = 0; i < 100; i++)
    with0 += sim_net_same_side(net, 0, i);
  assert_true(with0 == 30 || with0 == 70);
  for (int i = 0; i < 100; i++) {
    bool same = sim_net_same_side(net, 0, i);
    assert_int_equal(sim_net_same_side(net, i, 0), same);
    assert_int_equal(sim_net_arrives(net, early[i].d, 0, early[i].at), same);
    sim_delivery dv;
    int rv = sim_net_send(net, i, 0, &to0, 0, buf, sizeof buf, 0, &dv);
    assert_int_equal(rv, same ? 0 : SIM_NET_DROPPED);
    if (rv == 0)
      sim_net_dgram_free(net, dv.d);
  }
  sim_net_heal(net);
  assert_false(sim_net_is_partitioned(net));
  for (int i = 0; i < 100; i++) {
    assert_true(sim_net_same_side(net, 0, i));
    assert_true(sim_net_arrives(net, early[i].d, 0, early[i].at));
    sim_net_dgram_free(net, early[i].d);
  }
  /* a new cut starts from scratch: every host is placed again */
  sim_net_partition(net, 0.5, &r);
  with0 = 0;
  for (int i = 0; i < 100; i++)
    with0 += sim_net_same_side(net, 0, i);
  assert_int_equal(with0, 50);
  sim_net_del(net);
}

static void test_uplink(void **state) {
  (void)state;
  sim_config c;
  config(&c);
  c.bandwidth_bps = 8000; /* a byte per ms */
  c.queue_bytes = 100;
  sim_net *net = net_of(&c, 2);
  uint8_t buf[72] = {0}; /* 100 bytes on the wire with the IP and UDP headers */
  dht_addr to = sim_net_addr(net, 1);
  sim_delivery d1, d2, d3;
  assert_int_equal(sim_net_send(net, 0, 0, &to, 0, buf, sizeof buf, 0, &d1), 0);
  assert_int_equal(sim_net_send(net, 0, 0, &to, 0, buf, sizeof buf, 0, &d2), 0);
  /* the second waits for the first: 100 ms of serialisation between them */
  assert_int_equal(d2.at - d1.at, 100);
  /* 200 bytes queued now: past the queue, tail drop */
  assert_int_equal(sim_net_send(net, 0, 0, &to, 0, buf, sizeof buf, 0, &d3), SIM_NET_DROPPED);
  /* the other host's uplink is its own */
  dht_addr back = sim_net_addr(net, 0);
  assert_int_equal(sim_net_send(net, 1, 0, &back, 0, buf, sizeof buf, 0, &d3), 0);
  sim_net_dgram_free(net, d3.d);
  /* a host that starts again starts with an empty queue */
  sim_net_host_up(net, 0);
  assert_int_equal(sim_net_send(net, 0, 0, &to, 0, buf, sizeof buf, 0, &d3), 0);
  assert_int_equal(d3.at, d1.at);
  sim_net_dgram_free(net, d1.d);
  sim_net_dgram_free(net, d2.d);
  sim_net_dgram_free(net, d3.d);
  sim_net_del(net);
}

static void test_buffers(void **state) {
  (void)state;
  sim_config c;
  config(&c);
  sim_net *net = net_of(&c, 2);
  static uint8_t buf[DHT_MAX_PKT];
  dht_addr to = sim_net_addr(net, 1);
  size_t lens[] = {1, 128, 129, 256, 257, 512, 513, DHT_MAX_PKT};
  for (size_t k = 0; k < sizeof lens / sizeof *lens; k++) {
    sim_delivery a, b;
    memset(buf, (int)k + 1, lens[k]);
    assert_int_equal(sim_net_send(net, 0, 0, &to, 0, buf, lens[k], 0, &a), 0);
    assert_memory_equal(a.d->data, buf, lens[k]);
    sim_net_dgram_free(net, a.d);
    /* the same size class gives the buffer back */
    assert_int_equal(sim_net_send(net, 0, 0, &to, 0, buf, lens[k], 0, &b), 0);
    assert_ptr_equal(a.d, b.d);
    assert_int_equal(b.d->len, lens[k]);
    sim_net_dgram_free(net, b.d);
  }
  sim_net_del(net);
}

static void test_seed_reproduces(void **state) {
  (void)state;
  sim_config c;
  config(&c);
  c.jitter = 0.3;
  c.loss = 0.1;
  dht_ts at[2][500];
  for (int run = 0; run < 2; run++) {
    sim_net *net = net_of(&c, 40);
    uint8_t buf[16] = {0};
    for (int k = 0; k < 500; k++) {
      dht_addr to = sim_net_addr(net, (k * 7 + 3) % 40);
      sim_delivery dv;
      int rv = sim_net_send(net, k % 40, 0, &to, 0, buf, sizeof buf, k, &dv);
      at[run][k] = rv == 0 ? dv.at : -1;
      if (rv == 0) {
        /* jitter stays within its fraction of the one-way delay */
        double rtt = sim_synth_rtt(xy_of(&c, k % 40), xy_of(&c, dv.dst), c.synth_base_ms,
                                   c.synth_per_unit_ms);
        assert_true(dv.at - k >= (dht_ts)floor(rtt / 2 * 0.7) - 1);
        assert_true(dv.at - k <= (dht_ts)ceil(rtt / 2 * 1.3) + 1);
        sim_net_dgram_free(net, dv.d);
      }
    }
    sim_net_del(net);
  }
  assert_memory_equal(at[0], at[1], sizeof at[0]);
}

/* ---- NAT boxes ------------------------------------------------------------- */

#define T_OUT 120000 /* the boxes' mapping timeout in these tests */

/* Sends from host `from`'s socket `local` to `to` at time now and, if it
 * flies, lets it arrive at its time `at` (its own time when at < 0): 1 when
 * it got in (the socket it reached in *sock, its source in *src), 0 when a
 * filter stopped it, -1 when the send dropped it. */
static int deliver(sim_net *net, int from, uint32_t local, dht_addr to, dht_ts now, dht_ts at,
                   int *dst, uint32_t *sock, dht_addr *src) {
  uint8_t buf[4] = {9, 8, 7, 6};
  sim_delivery dv;
  int rv = sim_net_send(net, from, local, &to, 0, buf, sizeof buf, now, &dv);
  if (rv != 0)
    return -1;
  assert_memory_equal(dv.d->data, buf, sizeof buf);
  bool in = sim_net_arrives(net, dv.d, dv.dst, at < 0 ? dv.at : at);
  if (dst)
    *dst = dv.dst;
  if (sock)
    *sock = dv.d->local;
  if (src)
    *src = dv.d->from;
  sim_net_dgram_free(net, dv.d);
  return in ? 1 : 0;
}

/* The box address of host i at port. */
static dht_addr box_at(sim_net *net, int i, uint16_t port) {
  dht_addr a = sim_net_public_addr(net, i);
  a.port = port;
  return a;
}

static dht_addr addr_port(sim_net *net, int i, uint16_t port) {
  dht_addr a = sim_net_addr(net, i);
  a.port = port;
  return a;
}

/* The mix: a host's type follows nat-mix, every run of hosts matches it to
 * within a host or two, a seed reproduces it; NATed hosts have a private
 * address of their own and their box the public one; an all-public network
 * has no box and no NAT memory. */
static void test_nat_mix(void **state) {
  (void)state;
  sim_config c;
  config(&c);
  sim_net *net = net_of(&c, 500);
  sim_nat_stats st;
  sim_net_nat_stats(net, &st);
  assert_int_equal(st.hosts[SIM_NAT_PUBLIC], 500);
  assert_int_equal(st.bytes, 0);
  assert_int_equal(st.peak_bytes, 0);
  for (int i = 0; i < 500; i++)
    assert_int_equal(sim_net_nat_type(net, i), SIM_NAT_PUBLIC);
  sim_net_del(net);

  static const double mix[SIM_NAT_TYPES] = {0.30, 0.05, 0, 0.40, 0.15, 0.10};
  memcpy(c.nat_mix, mix, sizeof mix);
  net = net_of(&c, 1000);
  sim_net *again = net_of(&c, 1000);
  int count[SIM_NAT_TYPES] = {0}, first[SIM_NAT_TYPES] = {0};
  for (int i = 0; i < 1000; i++) {
    int t = sim_net_nat_type(net, i);
    assert_int_equal(sim_net_nat_type(again, i), t);
    count[t]++;
    if (i < 100)
      first[t]++;
    dht_addr own = sim_net_addr(net, i), pub = sim_net_public_addr(net, i);
    assert_int_equal(sim_net_host_of(net, &own), i);
    assert_int_equal(pub.ip[0], 11);
    assert_int_equal((pub.ip[1] << 8 | pub.ip[2]), i);
    if (t == SIM_NAT_PUBLIC) {
      assert_true(dht_addr_eq(&own, &pub));
    } else {
      /* 10.0.0.0 + i, port 4000; its box's address is nobody's own */
      assert_int_equal(own.ip[0], 10);
      assert_int_equal((own.ip[1] << 16 | own.ip[2] << 8 | own.ip[3]), i);
      assert_int_equal(own.port, 4000);
      assert_int_equal(pub.port, 0);
      pub.port = 4000;
      assert_int_equal(sim_net_host_of(net, &pub), -1);
    }
  }
  sim_net_nat_stats(net, &st);
  for (int t = 0; t < SIM_NAT_TYPES; t++) {
    assert_int_equal(st.hosts[t], count[t]);
    if (abs(count[t] - (int)lround(1000 * mix[t])) > 2 ||
        abs(first[t] - (int)lround(100 * mix[t])) > 2)
      fail_msg("%s: %d of 1000 hosts, %d of the first 100", sim_nat_type_name(t), count[t],
               first[t]);
  }
  assert_int_equal(count[SIM_NAT_RESTRICTED], 0);
  /* another seed, another assignment */
  c.seed = seed + 1;
  sim_net *other = net_of(&c, 1000);
  int differ = 0;
  for (int i = 0; i < 1000; i++)
    differ += sim_net_nat_type(other, i) != sim_net_nat_type(net, i);
  assert_true(differ > 0);
  sim_net_del(other);
  sim_net_del(again);
  sim_net_del(net);
}

/* RFC 5780-style probes of each type.  Host 0 (behind the box) sends from
 * socket 0 to S = host 1 port 4000, and from socket 1 to host 2; then the
 * box's port for socket 0 is probed from S itself, S's other port, host 2
 * (an IP the host contacted, but from another socket: filtering is per
 * mapping) and host 3 (never contacted). */
static void test_nat_types(void **state) {
  (void)state;
  static const struct {
    int type;
    bool in[4]; /* S, S other port, host 2, host 3 */
  } want[] = {
      {SIM_NAT_FULL, {true, true, true, true}},    {SIM_NAT_RESTRICTED, {true, true, false, false}},
      {SIM_NAT_PORT, {true, false, false, false}}, {SIM_NAT_SYMMETRIC, {true, false, false, false}},
      {SIM_NAT_UPNP, {true, false, false, false}}, /* port-restricted without a forward */
  };
  for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
    sim_config c;
    config(&c);
    sim_net *net = net_of(&c, 4);
    assert_int_equal(sim_net_nat_set(net, 0, want[w].type, T_OUT, false), 0);
    assert_int_equal(sim_net_nat_type(net, 0), want[w].type);
    uint32_t id;
    assert_int_equal(sim_net_sock_next(net, 0, &id), 0);
    assert_int_equal(sim_net_sock_next(net, 1, &id), 0);
    int dst;
    uint32_t sock;
    dht_addr src, box = sim_net_public_addr(net, 0);
    /* out: the box's address, and a port */
    assert_int_equal(deliver(net, 0, 0, sim_net_addr(net, 1), 0, -1, &dst, &sock, &src), 1);
    assert_int_equal(dst, 1);
    assert_int_equal(sock, 0);
    assert_memory_equal(src.ip, box.ip, 4);
    uint16_t e = src.port;
    if (want[w].type != SIM_NAT_SYMMETRIC)
      assert_int_equal(e, 4000); /* endpoint-independent boxes keep the port */
    assert_int_equal(deliver(net, 0, 1, sim_net_addr(net, 2), 0, -1, NULL, NULL, &src), 1);
    uint16_t e1 = src.port;
    assert_int_not_equal(e1, e);
    /* in: the probes */
    struct {
      int host;
      uint32_t sock;
    } from[4] = {{1, 0}, {1, 1}, {2, 0}, {3, 0}};
    for (int p = 0; p < 4; p++) {
      sim_nat_stats b4, af;
      sim_net_nat_stats(net, &b4);
      int rv =
          deliver(net, from[p].host, from[p].sock, box_at(net, 0, e), 1000, -1, &dst, &sock, &src);
      sim_net_nat_stats(net, &af);
      if (rv != (want[w].in[p] ? 1 : 0))
        fail_msg("type %s, probe %d: %s", sim_nat_type_name(want[w].type), p,
                 rv == 1 ? "delivered" : "filtered");
      assert_int_equal(dst, 0);
      assert_int_equal(af.filtered - b4.filtered, rv == 0);
      if (rv == 1) {
        assert_int_equal(sock, 0); /* translated to the host's socket */
        dht_addr sender = addr_port(net, from[p].host, from[p].sock ? 20001 : 4000);
        assert_true(dht_addr_eq(&src, &sender));
      }
    }
    /* a port the box never mapped lets nobody in */
    assert_int_equal(deliver(net, 1, 0, box_at(net, 0, 4001), 1000, -1, NULL, NULL, NULL), 0);
    /* mapping: the same port to every destination, or a new one each */
    uint16_t seen[3];
    dht_addr dests[3] = {addr_port(net, 1, 20001), sim_net_addr(net, 3), sim_net_addr(net, 1)};
    for (int k = 0; k < 3; k++) {
      assert_int_equal(deliver(net, 0, 0, dests[k], 2000, -1, NULL, NULL, &src), 1);
      seen[k] = src.port;
    }
    if (want[w].type == SIM_NAT_SYMMETRIC) {
      assert_int_not_equal(seen[0], e);
      assert_int_not_equal(seen[1], e);
      assert_int_not_equal(seen[0], seen[1]);
      assert_int_equal(seen[2], e); /* S again: its flow */
      /* each destination gets in through its own port only */
      assert_int_equal(deliver(net, 1, 1, box_at(net, 0, seen[0]), 3000, -1, NULL, NULL, NULL), 1);
      assert_int_equal(deliver(net, 3, 0, box_at(net, 0, seen[0]), 3000, -1, NULL, NULL, NULL), 0);
      assert_int_equal(deliver(net, 3, 0, box_at(net, 0, seen[1]), 3000, -1, NULL, NULL, NULL), 1);
    } else {
      for (int k = 0; k < 3; k++)
        assert_int_equal(seen[k], e);
    }
    sim_net_del(net);
  }
}

/* What is not routable: a private address from anywhere but its own host;
 * a NATed host reaches its own private address without its box. */
static void test_nat_private(void **state) {
  (void)state;
  sim_config c;
  config(&c);
  sim_net *net = net_of(&c, 3);
  assert_int_equal(sim_net_nat_set(net, 0, SIM_NAT_FULL, T_OUT, false), 0);
  assert_int_equal(sim_net_nat_set(net, 1, SIM_NAT_FULL, T_OUT, false), 0);
  sim_nat_stats b4, af;
  sim_net_nat_stats(net, &b4);
  assert_int_equal(deliver(net, 2, 0, sim_net_addr(net, 0), 0, -1, NULL, NULL, NULL), -1);
  assert_int_equal(deliver(net, 1, 0, sim_net_addr(net, 0), 0, -1, NULL, NULL, NULL), -1);
  int dst;
  uint32_t sock;
  dht_addr src;
  assert_int_equal(deliver(net, 0, 0, sim_net_addr(net, 0), 0, -1, &dst, &sock, &src), 1);
  assert_int_equal(dst, 0);
  dht_addr own = sim_net_addr(net, 0);
  assert_true(dht_addr_eq(&src, &own));
  sim_net_nat_stats(net, &af);
  assert_int_equal(af.flows, b4.flows); /* none of these made a mapping */
  /* a box without a port is nobody */
  assert_int_equal(deliver(net, 2, 0, box_at(net, 0, 0), 0, -1, NULL, NULL, NULL), -1);
  /* taken out of its box, the host is public again */
  assert_int_equal(sim_net_nat_set(net, 0, SIM_NAT_PUBLIC, T_OUT, false), 0);
  assert_int_equal(deliver(net, 2, 0, sim_net_addr(net, 0), 0, -1, &dst, NULL, NULL), 1);
  assert_int_equal(sim_net_nat_set(net, 0, SIM_NAT_TYPES, T_OUT, false), -1);
  assert_int_equal(sim_net_nat_set(net, 3, SIM_NAT_FULL, T_OUT, false), -1);
  assert_int_equal(sim_net_nat_set(net, 0, SIM_NAT_FULL, 0, false), -1);
  sim_net_del(net);
}

/* Mapping timeouts, kept lazily: a flow idle past its box's timeout is gone
 * when next looked at; only outbound datagrams refresh it; the filter looks
 * at the flows as they stand when a datagram arrives (what hole punching
 * needs); a symmetric box maps an expired flow to a new port. */
static void test_nat_timeout(void **state) {
  (void)state;
  sim_config c;
  config(&c);
  sim_net *net = net_of(&c, 4);
  assert_int_equal(sim_net_nat_set(net, 0, SIM_NAT_PORT, T_OUT, false), 0);
  dht_addr s = sim_net_addr(net, 1), e = box_at(net, 0, 4000);
  /* S's datagram flies before the host's: it arrives after the mapping */
  uint8_t buf[1] = {0};
  sim_delivery early;
  assert_int_equal(sim_net_send(net, 1, 0, &e, 0, buf, 1, 0, &early), 0);
  assert_int_equal(deliver(net, 0, 0, s, 0, -1, NULL, NULL, NULL), 1);
  assert_true(early.at > 0);
  assert_true(sim_net_arrives(net, early.d, 0, early.at));
  sim_net_dgram_free(net, early.d);
  /* idle: alive until the timeout, gone after it (a second of grain) */
  assert_int_equal(deliver(net, 1, 0, e, 0, T_OUT - 1, NULL, NULL, NULL), 1);
  assert_int_equal(deliver(net, 1, 0, e, 0, T_OUT + 1000, NULL, NULL, NULL), 0);
  /* inbound does not refresh: S keeps sending, the flow still ends */
  dht_ts t0 = 200000;
  assert_int_equal(deliver(net, 0, 0, s, t0, -1, NULL, NULL, NULL), 1);
  for (dht_ts t = t0 + 10000; t < t0 + T_OUT; t += 10000)
    assert_int_equal(deliver(net, 1, 0, e, t, -1, NULL, NULL, NULL), 1);
  assert_int_equal(deliver(net, 1, 0, e, t0 + T_OUT, t0 + T_OUT + 1000, NULL, NULL, NULL), 0);
  /* outbound does: a send at t0 + 100 s keeps it 120 s more */
  dht_ts t1 = 500000;
  assert_int_equal(deliver(net, 0, 0, s, t1, -1, NULL, NULL, NULL), 1);
  assert_int_equal(deliver(net, 0, 0, s, t1 + 100000, -1, NULL, NULL, NULL), 1);
  assert_int_equal(deliver(net, 1, 0, e, t1, t1 + 200000, NULL, NULL, NULL), 1);
  assert_int_equal(deliver(net, 1, 0, e, t1, t1 + 221000, NULL, NULL, NULL), 0);

  /* the timeout is the box's own */
  assert_int_equal(sim_net_nat_set(net, 2, SIM_NAT_FULL, 30000, false), 0);
  dht_addr e2 = box_at(net, 2, 4000);
  assert_int_equal(deliver(net, 2, 0, s, 0, -1, NULL, NULL, NULL), 1);
  assert_int_equal(deliver(net, 3, 0, e2, 0, 29000, NULL, NULL, NULL), 1);
  assert_int_equal(deliver(net, 3, 0, e2, 0, 31000, NULL, NULL, NULL), 0);

  /* symmetric: after expiry the same destination gets a new port */
  assert_int_equal(sim_net_nat_set(net, 0, SIM_NAT_SYMMETRIC, T_OUT, false), 0);
  dht_addr src;
  assert_int_equal(deliver(net, 0, 0, s, 0, -1, NULL, NULL, &src), 1);
  uint16_t p0 = src.port;
  assert_int_equal(deliver(net, 0, 0, s, T_OUT - 1000, -1, NULL, NULL, &src), 1);
  assert_int_equal(src.port, p0); /* refreshed, same flow */
  assert_int_equal(deliver(net, 0, 0, s, 2 * T_OUT + 1000, -1, NULL, NULL, &src), 1);
  assert_int_not_equal(src.port, p0);
  assert_int_equal(deliver(net, 1, 0, box_at(net, 0, p0), 2 * T_OUT + 1000, -1, NULL, NULL, NULL),
                   0);
  assert_int_equal(
      deliver(net, 1, 0, box_at(net, 0, src.port), 2 * T_OUT + 1000, -1, NULL, NULL, NULL), 1);
  sim_net_del(net);
}

/* Hairpinning: a host sending to its own box's public address comes back
 * in through the box's filter when the box hairpins, and is dropped at the
 * box when it does not. */
static void test_nat_hairpin(void **state) {
  (void)state;
  sim_config c;
  config(&c);
  sim_net *net = net_of(&c, 2);
  uint32_t id;
  assert_int_equal(sim_net_nat_set(net, 0, SIM_NAT_FULL, T_OUT, true), 0);
  assert_int_equal(sim_net_sock_next(net, 0, &id), 0);
  /* socket 1 maps port 20001 by talking to host 1 */
  assert_int_equal(deliver(net, 0, 1, sim_net_addr(net, 1), 0, -1, NULL, NULL, NULL), 1);
  uint8_t buf[1] = {0};
  dht_addr to1 = box_at(net, 0, 20001);
  sim_delivery dv;
  assert_int_equal(sim_net_send(net, 0, 0, &to1, 0, buf, 1, 5000, &dv), 0);
  assert_int_equal(dv.dst, 0);
  assert_int_equal(dv.at, 5000 + SIM_NAT_HAIRPIN_MS);
  assert_true(sim_net_arrives(net, dv.d, 0, dv.at));
  assert_int_equal(dv.d->local, 1);
  dht_addr want = box_at(net, 0, 4000); /* from the box, socket 0's port */
  assert_true(dht_addr_eq(&dv.d->from, &want));
  sim_net_dgram_free(net, dv.d);
  sim_nat_stats st;
  sim_net_nat_stats(net, &st);
  assert_int_equal(st.hairpinned, 1);
  assert_int_equal(st.no_hairpin, 0);

  /* port-restricted: each side must have sent to the other's public port */
  assert_int_equal(sim_net_nat_set(net, 0, SIM_NAT_PORT, T_OUT, true), 0);
  dht_addr to0 = box_at(net, 0, 4000);
  assert_int_equal(deliver(net, 0, 0, to1, 0, -1, NULL, NULL, NULL), 0);
  uint32_t sock;
  assert_int_equal(deliver(net, 0, 1, to0, 0, -1, NULL, &sock, NULL), 1);
  assert_int_equal(sock, 0);
  assert_int_equal(deliver(net, 0, 0, to1, 0, -1, NULL, &sock, NULL), 1);
  assert_int_equal(sock, 1);

  /* off: dropped at the box, counted */
  assert_int_equal(sim_net_nat_set(net, 0, SIM_NAT_FULL, T_OUT, false), 0);
  assert_int_equal(deliver(net, 0, 1, sim_net_addr(net, 1), 0, -1, NULL, NULL, NULL), 1);
  assert_int_equal(deliver(net, 0, 0, to1, 0, -1, NULL, NULL, NULL), -1);
  sim_net_nat_stats(net, &st);
  assert_int_equal(st.no_hairpin, 1);
  sim_net_del(net);
}

/* NAT priming: a datagram whose TTL dies beyond the sender's own box makes
 * (or refreshes) the mapping there, and is delivered nowhere. */
static void test_nat_ttl(void **state) {
  (void)state;
  sim_config c;
  config(&c);
  sim_net *net = net_of(&c, 4);
  assert_int_equal(sim_net_nat_set(net, 0, SIM_NAT_PORT, T_OUT, false), 0);
  assert_int_equal(sim_net_nat_set(net, 2, SIM_NAT_PORT, T_OUT, false), 0);
  dht_addr s = sim_net_addr(net, 1);
  uint8_t buf[1] = {0};
  sim_delivery dv;
  for (uint8_t ttl = 1; ttl < SIM_NET_HOPS; ttl++) {
    sim_nat_stats b4, af;
    sim_net_nat_stats(net, &b4);
    assert_int_equal(sim_net_send(net, 0, 0, &s, ttl, buf, 1, 0, &dv), SIM_NET_DROPPED);
    sim_net_nat_stats(net, &af);
    assert_int_equal(af.primed - b4.primed, 1);
    assert_int_equal(af.flows - b4.flows, ttl == 1); /* the first makes it, later ones refresh */
  }
  /* S gets in through the primed mapping; not through an unprimed box */
  assert_int_equal(deliver(net, 1, 0, box_at(net, 0, 4000), 1000, -1, NULL, NULL, NULL), 1);
  assert_int_equal(deliver(net, 1, 0, box_at(net, 2, 4000), 1000, -1, NULL, NULL, NULL), 0);
  /* a TTL of the full path arrives */
  assert_int_equal(sim_net_send(net, 2, 0, &s, SIM_NET_HOPS, buf, 1, 0, &dv), 0);
  assert_int_equal(dv.dst, 1);
  sim_net_dgram_free(net, dv.d);
  /* a public sender's short TTL dies as before, priming nothing */
  sim_nat_stats b4, af;
  sim_net_nat_stats(net, &b4);
  dht_addr h3 = sim_net_addr(net, 3);
  assert_int_equal(sim_net_send(net, 1, 0, &h3, 2, buf, 1, 0, &dv), SIM_NET_DROPPED);
  sim_net_nat_stats(net, &af);
  assert_int_equal(af.primed, b4.primed);
  /* symmetric: the primed flow is the one the real datagram then uses */
  assert_int_equal(sim_net_nat_set(net, 0, SIM_NAT_SYMMETRIC, T_OUT, false), 0);
  sim_net_nat_stats(net, &b4);
  assert_int_equal(sim_net_send(net, 0, 0, &s, 2, buf, 1, 0, &dv), SIM_NET_DROPPED);
  dht_addr src;
  assert_int_equal(deliver(net, 0, 0, s, 10, -1, NULL, NULL, &src), 1);
  sim_net_nat_stats(net, &af);
  assert_int_equal(af.flows - b4.flows, 1);
  assert_int_equal(deliver(net, 1, 0, box_at(net, 0, src.port), 20, -1, NULL, NULL, NULL), 1);
  sim_net_del(net);
}

/* The gateway's port forwards (an upnp box): anyone gets in through one,
 * the host's datagrams leave from it, a lease ends it, a delete ends it for
 * strangers (the flows it made stay), a port another socket holds is
 * refused; only upnp boxes have a gateway. */
static void test_nat_forward(void **state) {
  (void)state;
  sim_config c;
  config(&c);
  sim_net *net = net_of(&c, 4);
  assert_int_equal(sim_net_nat_set(net, 0, SIM_NAT_UPNP, T_OUT, false), 0);
  assert_int_equal(sim_net_nat_set(net, 2, SIM_NAT_PORT, T_OUT, false), 0);
  uint32_t id, sock;
  assert_int_equal(sim_net_sock_next(net, 0, &id), 0);
  dht_addr e = box_at(net, 0, 4000), s = sim_net_addr(net, 1);
  assert_int_equal(deliver(net, 3, 0, e, 0, -1, NULL, NULL, NULL), 0);
  assert_int_equal(sim_net_nat_forward_add(net, 0, 4000, 4000, 0, 0), 0);
  assert_int_equal(deliver(net, 3, 0, e, 0, -1, NULL, &sock, NULL), 1);
  assert_int_equal(sock, 0);
  assert_int_equal(deliver(net, 1, 0, e, 0, 10 * T_OUT, NULL, NULL, NULL), 1); /* no lease */
  /* another external port to socket 1 */
  assert_int_equal(sim_net_nat_forward_add(net, 0, 5555, 20001, 0, 0), 0);
  dht_addr e5 = box_at(net, 0, 5555), src;
  assert_int_equal(deliver(net, 3, 0, e5, 0, -1, NULL, &sock, NULL), 1);
  assert_int_equal(sock, 1);
  assert_int_equal(deliver(net, 0, 1, s, 0, -1, NULL, NULL, &src), 1);
  assert_int_equal(src.port, 5555);
  /* deleted: strangers are filtered, the flow to S stays */
  assert_int_equal(sim_net_nat_forward_del(net, 0, 5555), 0);
  assert_int_equal(sim_net_nat_forward_del(net, 0, 5555), -1);
  assert_int_equal(deliver(net, 3, 0, e5, 0, -1, NULL, NULL, NULL), 0);
  assert_int_equal(deliver(net, 1, 0, e5, 0, -1, NULL, NULL, NULL), 1);
  /* a lease */
  assert_int_equal(sim_net_nat_forward_add(net, 0, 6000, 4000, 60000, 0), 0);
  dht_addr e6 = box_at(net, 0, 6000);
  assert_int_equal(deliver(net, 3, 0, e6, 0, 59000, NULL, NULL, NULL), 1);
  assert_int_equal(deliver(net, 3, 0, e6, 0, 61000, NULL, NULL, NULL), 0);
  /* socket 1's flow holds 5555: not for socket 0 */
  assert_int_equal(sim_net_nat_forward_add(net, 0, 5555, 4000, 0, 0), -1);
  assert_int_equal(sim_net_nat_forward_add(net, 0, 5555, 20001, 0, 0), 0);
  /* re-adding replaces */
  assert_int_equal(sim_net_nat_forward_add(net, 0, 4000, 20001, 0, 0), 0);
  assert_int_equal(deliver(net, 3, 0, e, 0, -1, NULL, &sock, NULL), 1);
  assert_int_equal(sock, 1);
  /* a forward to a socket that is not open leads nowhere */
  assert_int_equal(sim_net_nat_forward_add(net, 0, 7000, 20002, 0, 0), 0);
  assert_int_equal(deliver(net, 3, 0, box_at(net, 0, 7000), 0, -1, NULL, NULL, NULL), 0);
  /* bad arguments; no gateway on other boxes or public hosts */
  assert_int_equal(sim_net_nat_forward_add(net, 0, 0, 4000, 0, 0), -1);
  assert_int_equal(sim_net_nat_forward_add(net, 0, 8000, 1234, 0, 0), -1);
  assert_int_equal(sim_net_nat_forward_add(net, 2, 8000, 4000, 0, 0), -1);
  assert_int_equal(sim_net_nat_forward_add(net, 1, 8000, 4000, 0, 0), -1);
  assert_int_equal(sim_net_nat_forward_del(net, 2, 4000), -1);
  /* at most SIM_NAT_MAX_FORWARDS (4 are there: 4000, 5555, 6000 lapsed, 7000) */
  int added = 0;
  for (int k = 0; k < 2 * SIM_NAT_MAX_FORWARDS; k++)
    added += sim_net_nat_forward_add(net, 0, (uint16_t)(30000 + k), 4000, 0, 100000) == 0;
  assert_int_equal(added, SIM_NAT_MAX_FORWARDS - 3);
  sim_net_del(net);
}

/* A box's table: it grows by doubling from 4 slots with the flows alive,
 * stops at SIM_NAT_MAX_FLOWS (a new flow past it is dropped, counted), and
 * reuses the slots of expired flows. */
static void test_nat_table(void **state) {
  (void)state;
  sim_config c;
  config(&c);
  sim_net *net = net_of(&c, 2);
  assert_int_equal(sim_net_nat_set(net, 0, SIM_NAT_PORT, T_OUT, false), 0);
  sim_nat_stats b4, af;
  sim_net_nat_stats(net, &b4);
  assert_int_equal(deliver(net, 0, 0, sim_net_addr(net, 1), 0, -1, NULL, NULL, NULL), 1);
  sim_net_nat_stats(net, &af);
  assert_int_equal(af.bytes - b4.bytes, 4 * 16); /* 4 slots of 16 bytes */
  /* destinations nobody listens on still make flows at the box */
  dht_addr to = sim_net_addr(net, 1);
  for (int k = 1; k < SIM_NAT_MAX_FLOWS; k++) {
    to.port = (uint16_t)(4001 + k); /* S listens on 4000 only */
    assert_int_equal(deliver(net, 0, 0, to, 0, -1, NULL, NULL, NULL), -1);
  }
  sim_net_nat_stats(net, &af);
  assert_int_equal(af.flows - b4.flows, SIM_NAT_MAX_FLOWS);
  assert_int_equal(af.bytes - b4.bytes, SIM_NAT_MAX_FLOWS * 16);
  assert_int_equal(af.table_full, 0);
  to.port = 60000;
  assert_int_equal(deliver(net, 0, 0, to, 1000, -1, NULL, NULL, NULL), -1);
  assert_int_equal(deliver(net, 0, 0, sim_net_addr(net, 1), 1000, -1, NULL, NULL, NULL), 1);
  sim_net_nat_stats(net, &b4);
  assert_int_equal(b4.table_full, 1);
  /* after the timeout every slot is free again, and nothing grows */
  for (int k = 0; k < 100; k++) {
    to.port = (uint16_t)(50000 + k);
    assert_int_equal(deliver(net, 0, 0, to, 2 * T_OUT, -1, NULL, NULL, NULL), -1);
  }
  sim_net_nat_stats(net, &af);
  assert_int_equal(af.bytes, b4.bytes);
  assert_int_equal(af.table_full, b4.table_full);
  assert_int_equal(af.flows - b4.flows, 100);
  sim_net_del(net);
}

/* The boxes' random ports come from the seed. */
static void test_nat_reproducible(void **state) {
  (void)state;
  sim_config c;
  config(&c);
  uint16_t ports[2][50];
  for (int run = 0; run < 2; run++) {
    sim_net *net = net_of(&c, 51);
    assert_int_equal(sim_net_nat_set(net, 0, SIM_NAT_SYMMETRIC, T_OUT, false), 0);
    for (int k = 0; k < 50; k++) {
      dht_addr src;
      assert_int_equal(deliver(net, 0, 0, sim_net_addr(net, k + 1), k, -1, NULL, NULL, &src), 1);
      ports[run][k] = src.port;
      assert_true(src.port >= 1024);
    }
    sim_net_del(net);
  }
  assert_memory_equal(ports[0], ports[1], sizeof ports[0]);
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
  printf("test_sim_net seed: %llu (set ROOST_SEED=%llu to repeat)\n", (unsigned long long)seed,
         (unsigned long long)seed);

  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_addresses),
      cmocka_unit_test(test_send_latency),
      cmocka_unit_test(test_drops),
      cmocka_unit_test(test_partition),
      cmocka_unit_test(test_uplink),
      cmocka_unit_test(test_buffers),
      cmocka_unit_test(test_seed_reproduces),
      cmocka_unit_test(test_sockets),
      cmocka_unit_test(test_nat_mix),
      cmocka_unit_test(test_nat_types),
      cmocka_unit_test(test_nat_private),
      cmocka_unit_test(test_nat_timeout),
      cmocka_unit_test(test_nat_hairpin),
      cmocka_unit_test(test_nat_ttl),
      cmocka_unit_test(test_nat_forward),
      cmocka_unit_test(test_nat_table),
      cmocka_unit_test(test_nat_reproducible),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

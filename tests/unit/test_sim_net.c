/*
 * test_sim_net.c - roost-sim's virtual network (sim/sim_net.c, sim_int.h):
 * addresses and their way back to hosts, what a send returns (the delivery's
 * time from the latency model, the source address, the bytes), what it
 * drops (unknown addresses, loss, partitions, a full uplink queue), arrival
 * across a partition that started in flight, the uplink queue and its reset
 * when a host starts, reuse of datagram buffers, and that a seed reproduces
 * every delivery.  The run's use of all this is checked end to end by the
 * trace hashes in tests/sim/test_sim.py.
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
    assert_true(sim_net_arrives(net, dv.d, b));
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
  assert_false(sim_net_arrives(net, dv.d, 1));
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
    assert_int_equal(sim_net_arrives(net, early[i].d, 0), same);
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
    assert_true(sim_net_arrives(net, early[i].d, 0));
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
      cmocka_unit_test(test_addresses),       cmocka_unit_test(test_send_latency),
      cmocka_unit_test(test_drops),           cmocka_unit_test(test_partition),
      cmocka_unit_test(test_uplink),          cmocka_unit_test(test_buffers),
      cmocka_unit_test(test_seed_reproduces), cmocka_unit_test(test_sockets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

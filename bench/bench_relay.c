/*
 * bench_relay.c - what relaying costs the relay (docs/benchmarks.md,
 * "bench_relay"): three engines in one process, A and B with a relayed path
 * to each other through R, which holds their circuit.  A's service sends B
 * requests of a chosen size, B answers each (a small answer); each datagram
 * goes through R by hand (no sockets).  Timed: R's dht_read_pkt and
 * dht_write_pkt for each datagram, the whole of a relay's work (it never
 * opens them).  Printed: nanoseconds a relayed
 * datagram, the datagrams and bytes a second one core relays, and the
 * bytes on the wire of a relayed datagram against a direct one (the
 * framing's overhead).  R's per-source-prefix rate limit is off here: with
 * it (the default, 400 datagrams a second a prefix, burst 800) one sender's
 * relayed traffic is capped at that, whatever the CPU.
 *
 * Usage: bench_relay [--quick]   (ROOST_SEED=N for other identities)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "dht_int.h"
#include "drive1.h"
#include "testutil.h"

#define T_DATA 0x60
#define T_ACK 0x61

static int g_got;

/* B answers each request: through the relay too (its path to A) */
static void on_msg(void *ctx, dht *e, const dht_msg_in *in, dht_ts now) {
  (void)ctx, (void)now;
  if (in->type != T_DATA)
    return;
  g_got++;
  uint8_t a[16];
  dht_wire_w w;
  dht_wire_w_init(&w, a, sizeof a);
  dht_wire_w_array(&w, 2);
  dht_wire_w_uint(&w, T_ACK);
  dht_wire_w_uint(&w, in->txid);
  dht_svc_send(e, &in->from, NULL, a, w.len);
}

/* R's part for one datagram: in from `from`, out; the time it took added
 * to *t.  Returns the length out (0: none) and its destination in *dst. */
static dht_ssize relay_one(dht *r, const dht_addr *from, const uint8_t *pkt, size_t len,
                           uint8_t *out, dht_addr *dst, double *t, dht_ts now);

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t body(uint8_t *buf, size_t cap, uint32_t txid, size_t pad) {
  static const uint8_t zeros[DHT_MAX_BODY];
  dht_wire_w w;
  dht_wire_w_init(&w, buf, cap);
  dht_wire_w_array(&w, 3);
  dht_wire_w_uint(&w, T_DATA);
  dht_wire_w_uint(&w, txid);
  dht_wire_w_bin(&w, zeros, pad);
  return w.err ? 0 : w.len;
}

static dht_ssize relay_one(dht *r, const dht_addr *from, const uint8_t *pkt, size_t len,
                           uint8_t *out, dht_addr *dst, double *t, dht_ts now) {
  double t0 = mono();
  d1_read(r, from, pkt, len, now);
  dht_ssize ol = d1_write(r, dst, out, DHT_MAX_PKT, now);
  *t += mono() - t0;
  return ol;
}

int main(int argc, char **argv) {
  bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
  int n = quick ? 20000 : 200000;
  if (sodium_init() < 0)
    return 1;
  uint64_t seed = tu_seed("bench_relay");
  dht_settings set;
  dht_settings_default(&set);
  set.rate_pps = 0; /* the relay's rate limit off: the CPU is measured */
  set.replay_window = 1 << 16;
  int svc[3];
  dht *e[3];
  dht_identity id[3];
  tu_rng rng[3];
  dht_addr addr[3];
  const char *names[3] = {"A", "R", "B"};
  for (int i = 0; i < 3; i++) {
    tu_identity(&id[i], seed, 0x700 + (uint64_t)i);
    tu_rng_init(&rng[i], seed, 0x710 + (uint64_t)i);
    addr[i] = tu_addr4(198, 18, (uint8_t)(10 + i), 2, 7464);
    dht_callbacks cb = {&rng[i], tu_rand_cb, NULL};
    if (dht_new(&e[i], &id[i], &set, &cb, NULL, 1000) != 0) {
      fprintf(stderr, "bench_relay: engine %s\n", names[i]);
      return 1;
    }
    dht_service s = {.type_lo = T_DATA, .type_hi = T_ACK, .on_msg = on_msg};
    if ((svc[i] = dht_service_add(e[i], &s)) <= 0)
      return 1;
  }
  dht_ts now = 2000;
  dht_peer pa = {.addr = addr[0]}, pb = {.addr = addr[2]};
  memcpy(pa.pk, id[0].pk, DHT_PK_LEN);
  memcpy(pb.pk, id[2].pk, DHT_PK_LEN);
  if (dht_relay_open(e[1], &pa, &pb, UINT64_MAX, DHT_TS_NEVER - 1, now) <= 0)
    return 1;
  dht_path via = {.local = 0, .remote = addr[1]};
  dht_path_set(e[0], id[2].pk, &via, DHT_PATH_RELAYED, now);
  dht_path_set(e[2], id[0].pk, &via, DHT_PATH_RELAYED, now);
  dht_peer to;
  memset(&to, 0, sizeof to);
  memcpy(to.pk, id[2].pk, DHT_PK_LEN);

  printf("bench_relay: %d datagrams A -> R -> B a size, in one process%s\n", n,
         quick ? " (--quick)" : "");
  static const size_t sizes[] = {0, 400, DHT_MAX_BODY - 10}; /* the last: a full datagram */
  for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
    uint8_t b[DHT_MAX_BODY], pkt[DHT_MAX_PKT], out[DHT_MAX_PKT];
    double in_r = 0;
    size_t wire = 0, wire_out = 0;
    int relayed = 0;
    g_got = 0;
    for (int k = 0; k < n; k++) {
      size_t bl = body(b, sizeof b, dht_svc_txid(e[0]), sizes[si]);
      dht_req_opts o = {.answer = T_ACK, .tries = 1};
      if (!bl || dht_svc_request(e[0], svc[0], &to, b, bl, &o, now) != 0)
        return 1;
      dht_addr dst;
      dht_ssize pl = d1_write(e[0], &dst, pkt, sizeof pkt, now);
      if (pl <= 0 || pkt[0] != DHT_VERSION_RELAY || !dht_addr_eq(&dst, &addr[1]))
        return 1;
      wire = (size_t)pl;
      dht_ssize ol = relay_one(e[1], &addr[0], pkt, (size_t)pl, out, &dst, &in_r, now);
      if (ol <= 0 || !dht_addr_eq(&dst, &addr[2]))
        continue;
      relayed++;
      wire_out = (size_t)ol;
      d1_read(e[2], &addr[1], out, (size_t)ol, now);
      /* B's answer, back through R to A */
      pl = d1_write(e[2], &dst, pkt, sizeof pkt, now);
      if (pl > 0 && (ol = relay_one(e[1], &addr[2], pkt, (size_t)pl, out, &dst, &in_r, now)) > 0) {
        relayed++;
        d1_read(e[0], &addr[1], out, (size_t)ol, now);
      }
      now++;
    }
    dht_stats st;
    dht_get_stats(e[1], &st);
    printf("  request body %4zu B: %zu B on the wire to the relay and %zu B from it (0 B of "
           "framing); %d datagrams relayed (requests and answers), %d requests opened at B\n",
           sizes[si], wire, wire_out, relayed, g_got);
    printf("    relay: %.0f ns a datagram, %.0f datagrams/s on one core\n", in_r / relayed * 1e9,
           relayed / in_r);
  }
  for (int i = 0; i < 3; i++)
    dht_del(e[i]);
  return 0;
}

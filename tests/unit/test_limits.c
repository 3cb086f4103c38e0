/*
 * test_limits.c - the bounded helpers behind the receive path.
 *
 * dht_rate (per-prefix token buckets): a burst is allowed and the next
 * packet refused; tokens come back at pps and never beyond the burst; two
 * /24s (or /48s) are independent while addresses inside one share a bucket;
 * v4 and v6 never share; loopback is keyed by address and port; a table with
 * more prefixes than entries keeps working (a forgotten prefix starts full,
 * a remembered one stays empty); pps 0 turns it off without allocating.
 *
 * dht_replay (recent nonces): a (sender, nonce) seen twice is caught; the
 * same nonce from another sender is not (also when the two keys share their
 * first bytes, and when the second sender picks its nonce knowing the first
 * one's); nonces with a fixed 16-byte prefix and a counter in the last 8
 * bytes, as the engine makes them, are all distinct (an early version folded
 * only the first 8 bytes and took every datagram of a sender for a replay);
 * at least the last `window` entries are remembered and at most 2 x window;
 * window 0 turns it off.
 *
 * dht_cache (set-associative LRU map): get/put/remove, one slot per key, LRU
 * eviction within a set, a freed way reused before any eviction, the value
 * wiped when a slot changes hands, the size rounding, allocation failure.
 *
 * Seeded: the seed is printed and ROOST_SEED=<n> replays a run.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "dht_int.h"
#include "testutil.h"

/* the filter's SipHash key (an engine draws its own from its random source) */
static const uint8_t replay_key[16] = {0x52, 0x6f, 0x6f, 0x73, 0x74, 1, 2,  3,
                                       4,    5,    6,    7,    8,    9, 10, 11};

static uint64_t g_seed;

/* 2001:db8:g2:g3::g7 */
static dht_addr v6(uint16_t g2, uint16_t g3, uint16_t g7, uint16_t port) {
  dht_addr x;
  memset(&x, 0, sizeof x);
  x.family = DHT_AF_INET6;
  x.ip[0] = 0x20;
  x.ip[1] = 0x01;
  x.ip[2] = 0x0d;
  x.ip[3] = 0xb8;
  x.ip[4] = (uint8_t)(g2 >> 8);
  x.ip[5] = (uint8_t)g2;
  x.ip[6] = (uint8_t)(g3 >> 8);
  x.ip[7] = (uint8_t)g3;
  x.ip[14] = (uint8_t)(g7 >> 8);
  x.ip[15] = (uint8_t)g7;
  x.port = port;
  return x;
}

/* ---- dht_rate ------------------------------------------------------------- */

/* Packets from a allowed at now, asking up to max times; stops at the
 * first refusal. */
static int drain(dht_rate *r, const dht_addr *a, dht_ts now, int max) {
  int n = 0;
  while (n < max && dht_rate_allow(r, a, now))
    n++;
  return n;
}

static void test_rate_burst_refill(void **state) {
  (void)state;
  tu_alloc al;
  memset(&al, 0, sizeof al);
  dht_mem mem = tu_alloc_mem(&al);
  dht_rate r;
  assert_int_equal(dht_rate_init(&r, 64, 10, 5, 24, 48, 0x1234567, &mem), 0);
  dht_addr a = tu_addr4(203, 0, 113, 5, 4000);
  dht_ts t = 1000000;
  /* a new prefix starts with a full bucket: exactly burst, then refusals */
  assert_int_equal(drain(&r, &a, t, 100), 5);
  assert_false(dht_rate_allow(&r, &a, t));
  assert_false(dht_rate_allow(&r, &a, t));
  /* 10 pps: one token per 100 ms, none before */
  assert_false(dht_rate_allow(&r, &a, t + 99));
  assert_true(dht_rate_allow(&r, &a, t + 100));
  assert_false(dht_rate_allow(&r, &a, t + 100));
  /* partial tokens accumulate across calls, refused ones included */
  assert_false(dht_rate_allow(&r, &a, t + 150));
  assert_true(dht_rate_allow(&r, &a, t + 200));
  /* 300 ms: three tokens */
  assert_int_equal(drain(&r, &a, t + 500, 100), 3);
  /* a long pause refills to burst, not beyond */
  assert_int_equal(drain(&r, &a, t + 60000, 100), 5);
  assert_int_equal(drain(&r, &a, t + 60000 + 100, 100), 1);
  dht_rate_free(&r, &mem);
  assert_int_equal(al.live, 0);

  /* the engine's defaults: 400 pps, burst 800 */
  assert_int_equal(dht_rate_init(&r, 1024, 400, 800, 24, 48, 99, &mem), 0);
  assert_int_equal(drain(&r, &a, t, 10000), 800);
  assert_int_equal(drain(&r, &a, t + 1000, 10000), 400);
  assert_int_equal(drain(&r, &a, t + 1005, 10000), 2);
  dht_rate_free(&r, &mem);
  assert_int_equal(al.live, 0);
}

static void test_rate_prefixes(void **state) {
  (void)state;
  dht_rate r;
  assert_int_equal(dht_rate_init(&r, 64, 10, 5, 24, 48, 0xabcdef, &dht_mem_libc), 0);
  dht_ts t = 5000;
  dht_addr a1 = tu_addr4(203, 0, 113, 5, 4000), a2 = tu_addr4(203, 0, 113, 77, 5000);
  dht_addr b1 = tu_addr4(203, 0, 114, 5, 4000), c1 = tu_addr4(198, 51, 100, 1, 4000);
  assert_int_equal(drain(&r, &a1, t, 100), 5);
  /* same /24, another host and port: the same bucket, empty */
  assert_false(dht_rate_allow(&r, &a2, t));
  /* neighbouring /24 and an unrelated one: full buckets of their own */
  assert_int_equal(drain(&r, &b1, t, 100), 5);
  assert_int_equal(drain(&r, &c1, t, 100), 5);
  assert_false(dht_rate_allow(&r, &a1, t));

  /* IPv6: /48 */
  dht_addr x1 = v6(1, 0, 1, 4000), x2 = v6(1, 0xffff, 0x99, 4001), y1 = v6(2, 0, 1, 4000);
  assert_int_equal(drain(&r, &x1, t, 100), 5);
  assert_false(dht_rate_allow(&r, &x2, t));
  assert_int_equal(drain(&r, &y1, t, 100), 5);
  /* a v6 address whose first bytes equal an exhausted v4 prefix */
  dht_addr z = v6(0, 0, 1, 4000);
  memcpy(z.ip, a1.ip, 3);
  assert_int_equal(drain(&r, &z, t, 100), 5);

  /* loopback: keyed by address and port, not by prefix */
  dht_addr l1 = tu_addr4(127, 0, 0, 1, 4000), l2 = tu_addr4(127, 0, 0, 1, 4001),
           l3 = tu_addr4(127, 0, 0, 2, 4000);
  assert_int_equal(drain(&r, &l1, t, 100), 5);
  assert_false(dht_rate_allow(&r, &l1, t));
  assert_int_equal(drain(&r, &l2, t, 100), 5);
  assert_int_equal(drain(&r, &l3, t, 100), 5);
  dht_addr lo6 = v6(0, 0, 1, 4000), lo6b;
  memset(lo6.ip, 0, 16);
  lo6.ip[15] = 1;
  lo6b = lo6;
  lo6b.port = 4001;
  assert_int_equal(drain(&r, &lo6, t, 100), 5);
  assert_false(dht_rate_allow(&r, &lo6, t));
  assert_int_equal(drain(&r, &lo6b, t, 100), 5);
  dht_rate_free(&r, &dht_mem_libc);

  /* other prefix lengths: /16 and /32 for v4 */
  assert_int_equal(dht_rate_init(&r, 64, 10, 3, 16, 64, 7, &dht_mem_libc), 0);
  assert_int_equal(drain(&r, &a1, t, 100), 3);
  assert_false(dht_rate_allow(&r, &b1, t)); /* 203.0.114.x is in 203.0/16 */
  dht_rate_free(&r, &dht_mem_libc);
  assert_int_equal(dht_rate_init(&r, 64, 10, 3, 32, 128, 7, &dht_mem_libc), 0);
  assert_int_equal(drain(&r, &a1, t, 100), 3);
  assert_int_equal(drain(&r, &a2, t, 100), 3); /* another host */
  dht_addr a1p = a1;
  a1p.port = 9;
  assert_false(dht_rate_allow(&r, &a1p, t)); /* same host, port ignored */
  dht_rate_free(&r, &dht_mem_libc);
}

static void test_rate_bounded(void **state) {
  (void)state;
  tu_rng rng;
  tu_rng_init(&rng, g_seed, 1);
  dht_rate r;
  /* one set of four ways; 1 pps so that refills over a few ms are nothing */
  assert_int_equal(dht_rate_init(&r, 4, 1, 3, 24, 48, tu_rng_u64(&rng), &dht_mem_libc), 0);
  assert_int_equal(r.nsets, 1);
  dht_addr p[10];
  for (int i = 0; i < 10; i++)
    p[i] = tu_addr4(198, 18, (uint8_t)i, 1, 4000);
  dht_ts t = 100;
  /* p0..p3 exhaust their buckets */
  for (int i = 0; i < 4; i++)
    assert_int_equal(drain(&r, &p[i], t++, 100), 3);
  for (int i = 0; i < 4; i++)
    assert_false(dht_rate_allow(&r, &p[i], t++));
  /* p4 takes the least recently seen way (p0's): full bucket */
  assert_int_equal(drain(&r, &p[4], t++, 100), 3);
  /* p0 was forgotten, so it starts full again, evicting p1 */
  assert_int_equal(drain(&r, &p[0], t++, 100), 3);
  /* p2 and p3 were remembered: still empty */
  assert_false(dht_rate_allow(&r, &p[2], t++));
  assert_false(dht_rate_allow(&r, &p[3], t++));
  /* and p1 was the one evicted */
  assert_int_equal(drain(&r, &p[1], t++, 100), 3);
  /* many more prefixes than entries, round robin (after a pause that
   * refills the four remembered): each one is new when it comes back, and
   * any one of them is still limited to its burst */
  t += 10000;
  for (int round = 0; round < 5; round++)
    for (int i = 0; i < 10; i++)
      assert_true(dht_rate_allow(&r, &p[i], t++));
  assert_int_equal(drain(&r, &p[7], t, 100), 2);
  assert_false(dht_rate_allow(&r, &p[7], t));

  /* a bigger table under many random prefixes: never more than burst from
   * one prefix at one instant */
  dht_rate big;
  assert_int_equal(dht_rate_init(&big, 64, 1, 3, 24, 48, tu_rng_u64(&rng), &dht_mem_libc), 0);
  for (int i = 0; i < 2000; i++) {
    dht_addr a = tu_addr4((uint8_t)tu_rng_u64(&rng), (uint8_t)tu_rng_u64(&rng),
                          (uint8_t)tu_rng_u64(&rng), 1, 4000);
    assert_true(drain(&big, &a, t, 100) <= 3);
    t++;
  }
  dht_addr a = tu_addr4(192, 0, 2, 1, 1);
  assert_int_equal(drain(&big, &a, t, 100), 3);
  dht_rate_free(&big, &dht_mem_libc);
  dht_rate_free(&r, &dht_mem_libc);
}

static void test_rate_off(void **state) {
  (void)state;
  tu_alloc al;
  memset(&al, 0, sizeof al);
  dht_mem mem = tu_alloc_mem(&al);
  dht_rate r;
  assert_int_equal(dht_rate_init(&r, 1024, 0, 800, 24, 48, 5, &mem), 0);
  assert_int_equal(al.calls, 0); /* off: no table */
  dht_addr a = tu_addr4(203, 0, 113, 5, 4000);
  assert_int_equal(drain(&r, &a, 0, 100000), 100000);
  dht_rate_free(&r, &mem);
  /* allocation failure */
  al.fail_at = al.calls + 1;
  assert_int_equal(dht_rate_init(&r, 1024, 10, 10, 24, 48, 5, &mem), DHT_ERR_NOMEM);
  dht_rate_free(&r, &mem);
  assert_int_equal(al.live, 0);
}

/* ---- dht_replay ----------------------------------------------------------- */

static void test_replay_basic(void **state) {
  (void)state;
  tu_rng rng;
  tu_rng_init(&rng, g_seed, 2);
  dht_replay r;
  assert_int_equal(dht_replay_init(&r, 64, replay_key, &dht_mem_libc), 0);
  uint8_t s1[DHT_PK_LEN], s2[DHT_PK_LEN], n1[DHT_NONCE_LEN], n2[DHT_NONCE_LEN];
  tu_rng_bytes(&rng, s1, sizeof s1);
  tu_rng_bytes(&rng, s2, sizeof s2);
  tu_rng_bytes(&rng, n1, sizeof n1);
  tu_rng_bytes(&rng, n2, sizeof n2);
  assert_false(dht_replay_seen(&r, s1, n1));
  assert_true(dht_replay_seen(&r, s1, n1));
  assert_true(dht_replay_seen(&r, s1, n1));
  /* same nonce, other sender; same sender, other nonce */
  assert_false(dht_replay_seen(&r, s2, n1));
  assert_false(dht_replay_seen(&r, s1, n2));
  assert_true(dht_replay_seen(&r, s2, n1));
  assert_true(dht_replay_seen(&r, s1, n2));
  dht_replay_free(&r, &dht_mem_libc);
  /* a nonce one bit away from a seen one, anywhere, is another nonce */
  for (int bit = 0; bit < DHT_NONCE_LEN * 8; bit++) {
    assert_int_equal(dht_replay_init(&r, 64, replay_key, &dht_mem_libc), 0);
    assert_false(dht_replay_seen(&r, s1, n1));
    uint8_t n[DHT_NONCE_LEN];
    memcpy(n, n1, sizeof n);
    n[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    assert_false(dht_replay_seen(&r, s1, n));
    assert_true(dht_replay_seen(&r, s1, n));
    dht_replay_free(&r, &dht_mem_libc);
  }
}

/* Distinct nonces of one sender are never taken for each other: here all the
 * nonces one or two bit flips away from a random one (18,528 of them). */
static void test_replay_nearby_nonces(void **state) {
  (void)state;
  tu_rng rng;
  tu_rng_init(&rng, g_seed, 8);
  dht_replay r;
  assert_int_equal(dht_replay_init(&r, 32768, replay_key, &dht_mem_libc), 0);
  uint8_t s[DHT_PK_LEN], n0[DHT_NONCE_LEN], n[DHT_NONCE_LEN];
  tu_rng_bytes(&rng, s, sizeof s);
  tu_rng_bytes(&rng, n0, sizeof n0);
  int bits = DHT_NONCE_LEN * 8, caught = 0;
  assert_false(dht_replay_seen(&r, s, n0));
  for (int a = 0; a < bits; a++) {
    for (int b = a; b < bits; b++) {
      memcpy(n, n0, sizeof n);
      n[a / 8] ^= (uint8_t)(1u << (a % 8));
      if (b != a)
        n[b / 8] ^= (uint8_t)(1u << (b % 8));
      if (dht_replay_seen(&r, s, n))
        caught++;
    }
  }
  dht_replay_free(&r, &dht_mem_libc);
  assert_int_equal(caught, 0);
}

/* Two senders whose keys share everything but their last bytes send the same
 * nonce: two datagrams, no replay. */
static void test_replay_sender_keys(void **state) {
  (void)state;
  tu_rng rng;
  tu_rng_init(&rng, g_seed, 3);
  dht_replay r;
  assert_int_equal(dht_replay_init(&r, 64, replay_key, &dht_mem_libc), 0);
  uint8_t s1[DHT_PK_LEN], s2[DHT_PK_LEN], n[DHT_NONCE_LEN];
  tu_rng_bytes(&rng, s1, sizeof s1);
  tu_rng_bytes(&rng, n, sizeof n);
  assert_false(dht_replay_seen(&r, s1, n));
  int caught = 0;
  for (int i = 0; i < DHT_PK_LEN; i++) {
    memcpy(s2, s1, sizeof s2);
    s2[i] ^= 0x01;
    if (dht_replay_seen(&r, s2, n))
      caught++;
    assert_true(dht_replay_seen(&r, s2, n));
  }
  assert_true(dht_replay_seen(&r, s1, n));
  dht_replay_free(&r, &dht_mem_libc);
  assert_int_equal(caught, 0);
}

/* Nonces travel in the clear, so anyone who got one datagram from a victim
 * knows its nonce prefix and counter.  Whatever nonce an attacker chooses
 * under its own key, it must not make the victim's next datagram look like a
 * replay.  (The attacker here uses the fingerprint's algebra: with the
 * fingerprint keyed by a secret it has no better chance than a guess.) */
static void test_replay_forged_collision(void **state) {
  (void)state;
  tu_rng rng;
  tu_rng_init(&rng, g_seed, 4);
  dht_replay r;
  assert_int_equal(dht_replay_init(&r, 4096, replay_key, &dht_mem_libc), 0);
  uint8_t victim[DHT_PK_LEN], attacker[DHT_PK_LEN], prefix[16];
  tu_rng_bytes(&rng, victim, sizeof victim);
  tu_rng_bytes(&rng, attacker, sizeof attacker);
  tu_rng_bytes(&rng, prefix, sizeof prefix);
  uint64_t kv, ka;
  memcpy(&kv, victim, 8);
  memcpy(&ka, attacker, 8);
  int caught = 0;
  for (uint64_t ctr = 1000; ctr < 1100; ctr++) {
    /* the victim's nonce for counter ctr, as dht_write_pkt makes it */
    uint8_t vn[DHT_NONCE_LEN], an[DHT_NONCE_LEN];
    memcpy(vn, prefix, 16);
    memcpy(vn + 16, &ctr, 8);
    /* the attacker's nonce: the same, first word xored with both keys */
    memcpy(an, vn, sizeof an);
    uint64_t w0;
    memcpy(&w0, an, 8);
    w0 ^= kv ^ ka;
    memcpy(an, &w0, 8);
    assert_false(dht_replay_seen(&r, attacker, an)); /* the attacker's own datagram */
    if (dht_replay_seen(&r, victim, vn))
      caught++;
  }
  dht_replay_free(&r, &dht_mem_libc);
  assert_int_equal(caught, 0);
}

#define CTR_N 50000

static void test_replay_counter_nonces(void **state) {
  (void)state;
  tu_rng rng;
  tu_rng_init(&rng, g_seed, 5);
  dht_replay r;
  assert_int_equal(dht_replay_init(&r, CTR_N, replay_key, &dht_mem_libc), 0);
  uint8_t s[DHT_PK_LEN], prefix[16], n[DHT_NONCE_LEN];
  tu_rng_bytes(&rng, s, sizeof s);
  tu_rng_bytes(&rng, prefix, sizeof prefix);
  uint64_t base = tu_rng_u64(&rng) >> 1;
  memcpy(n, prefix, 16);
  /* the engine's nonces: fixed prefix, counter in the last 8 bytes */
  for (uint64_t i = 0; i < CTR_N; i++) {
    uint64_t ctr = base + i;
    memcpy(n + 16, &ctr, 8);
    assert_false(dht_replay_seen(&r, s, n));
  }
  /* all remembered: every one is now a replay */
  for (uint64_t i = 0; i < CTR_N; i++) {
    uint64_t ctr = base + i;
    memcpy(n + 16, &ctr, 8);
    assert_true(dht_replay_seen(&r, s, n));
  }
  dht_replay_free(&r, &dht_mem_libc);

  /* the counter big-endian in the last bytes, or in the first 8 bytes with
   * a fixed suffix: still all distinct */
  assert_int_equal(dht_replay_init(&r, 4096, replay_key, &dht_mem_libc), 0);
  for (uint64_t i = 1; i <= 4096; i++) {
    memcpy(n, prefix, 16);
    for (int k = 0; k < 8; k++)
      n[16 + k] = (uint8_t)(i >> (56 - 8 * k));
    assert_false(dht_replay_seen(&r, s, n));
  }
  dht_replay_free(&r, &dht_mem_libc);
  assert_int_equal(dht_replay_init(&r, 4096, replay_key, &dht_mem_libc), 0);
  for (uint64_t i = 1; i <= 4096; i++) {
    memcpy(n, &i, 8);
    memcpy(n + 8, prefix, 16);
    assert_false(dht_replay_seen(&r, s, n));
  }
  dht_replay_free(&r, &dht_mem_libc);
}

#define WIN 100
#define TOTAL 1037

static void test_replay_window(void **state) {
  (void)state;
  tu_rng rng;
  tu_rng_init(&rng, g_seed, 6);
  tu_alloc al;
  memset(&al, 0, sizeof al);
  dht_mem mem = tu_alloc_mem(&al);
  dht_replay r;
  assert_int_equal(dht_replay_init(&r, WIN, replay_key, &mem), 0);
  static uint8_t snd[TOTAL][DHT_PK_LEN], non[TOTAL][DHT_NONCE_LEN];
  tu_rng_bytes(&rng, &snd[0][0], sizeof snd);
  tu_rng_bytes(&rng, &non[0][0], sizeof non);
  for (int i = 0; i < TOTAL; i++) {
    assert_false(dht_replay_seen(&r, snd[i], non[i]));
    /* after every insertion the last WIN are all remembered */
    if (i % 97 == 0 || i == TOTAL - 1)
      for (int j = i; j >= 0 && j > i - WIN; j--)
        assert_true(dht_replay_seen(&r, snd[j], non[j]));
  }
  /* at most 2 x WIN are remembered: the oldest ones are forgotten (asked
   * last, since asking records them again) */
  int forgotten = 0;
  for (int j = 0; j < TOTAL - 2 * WIN; j++)
    if (!dht_replay_seen(&r, snd[j], non[j]))
      forgotten++;
  assert_int_equal(forgotten, TOTAL - 2 * WIN);
  dht_replay_free(&r, &mem);
  assert_int_equal(al.live, 0);

  /* window 0: off, nothing allocated, nothing is a replay */
  uint64_t calls = al.calls;
  assert_int_equal(dht_replay_init(&r, 0, replay_key, &mem), 0);
  assert_int_equal(al.calls, calls);
  for (int i = 0; i < 3; i++)
    assert_false(dht_replay_seen(&r, snd[0], non[0]));
  dht_replay_free(&r, &mem);

  /* allocation failure of either generation */
  for (uint64_t k = 1; k <= 2; k++) {
    al.fail_at = al.calls + k;
    assert_int_equal(dht_replay_init(&r, 10, replay_key, &mem), DHT_ERR_NOMEM);
    assert_int_equal(al.live, 0);
    dht_replay_free(&r, &mem);
  }
  al.fail_at = 0;
}

/* ---- dht_cache ------------------------------------------------------------ */

static void key_of(uint8_t k[32], int i) {
  memset(k, 0, 32);
  k[0] = (uint8_t)i;
  k[1] = (uint8_t)(i >> 8);
  k[31] = 0x5a;
}

static void test_cache_basic(void **state) {
  (void)state;
  tu_alloc al;
  memset(&al, 0, sizeof al);
  dht_mem mem = tu_alloc_mem(&al);
  uint8_t hkey[16] = {7};
  dht_cache c;
  assert_int_equal(dht_cache_init(&c, 64, 24, hkey, &mem), 0);
  assert_int_equal(c.nsets, 16);
  uint8_t k1[32], k2[32];
  key_of(k1, 1);
  key_of(k2, 2);
  assert_null(dht_cache_get(&c, k1));
  uint8_t *v = dht_cache_put(&c, k1);
  assert_non_null(v);
  uint8_t zero[24] = {0};
  assert_memory_equal(v, zero, 24);
  memset(v, 0x11, 24);
  assert_ptr_equal(dht_cache_get(&c, k1), v);
  assert_null(dht_cache_get(&c, k2));
  uint8_t *v2 = dht_cache_put(&c, k2);
  memset(v2, 0x22, 24);
  assert_ptr_not_equal(v, v2);
  assert_int_equal(dht_cache_get(&c, k1)[0], 0x11);
  assert_int_equal(dht_cache_get(&c, k2)[23], 0x22);
  /* one slot per key: a second put returns the same slot, and a remove
   * leaves nothing behind */
  assert_ptr_equal(dht_cache_put(&c, k1), v);
  dht_cache_remove(&c, k1);
  assert_null(dht_cache_get(&c, k1));
  assert_non_null(dht_cache_get(&c, k2));
  dht_cache_remove(&c, k1); /* absent: no effect */
  assert_non_null(dht_cache_get(&c, k2));
  /* removing wipes the value */
  dht_cache_remove(&c, k2);
  assert_memory_equal(v2, zero, 24);
  dht_cache_free(&c, &mem);
  assert_int_equal(al.live, 0);

  /* sizes: rounded up to whole sets of four, at least one set */
  static const int want[][2] = {{0, 1}, {1, 1}, {4, 1}, {5, 2}, {8, 2}, {9, 3}, {1024, 256}};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    assert_int_equal(dht_cache_init(&c, want[i][0], 8, hkey, &mem), 0);
    assert_int_equal(c.nsets, want[i][1]);
    dht_cache_free(&c, &mem);
  }
  /* allocation failure of either array */
  for (uint64_t k = 1; k <= 2; k++) {
    al.fail_at = al.calls + k;
    assert_int_equal(dht_cache_init(&c, 16, 8, hkey, &mem), DHT_ERR_NOMEM);
    assert_int_equal(al.live, 0);
  }
  al.fail_at = 0;
}

static void test_cache_lru(void **state) {
  (void)state;
  uint8_t hkey[16] = {9};
  dht_cache c;
  assert_int_equal(dht_cache_init(&c, 4, 16, hkey, &dht_mem_libc), 0);
  assert_int_equal(c.nsets, 1); /* every key in one set of four ways */
  uint8_t k[8][32];
  for (int i = 0; i < 8; i++)
    key_of(k[i], 100 + i);
  for (int i = 0; i < 4; i++)
    memset(dht_cache_put(&c, k[i]), 0xa0 + i, 16);
  for (int i = 0; i < 4; i++)
    assert_int_equal(dht_cache_get(&c, k[i])[0], 0xa0 + i);
  /* use k0 again: k1 is now the least recently used */
  assert_non_null(dht_cache_get(&c, k[0]));
  uint8_t *v = dht_cache_put(&c, k[4]);
  /* the slot changed hands: wiped */
  uint8_t zero[16] = {0};
  assert_memory_equal(v, zero, 16);
  assert_null(dht_cache_get(&c, k[1]));
  assert_non_null(dht_cache_get(&c, k[0]));
  assert_non_null(dht_cache_get(&c, k[2]));
  assert_non_null(dht_cache_get(&c, k[3]));
  assert_non_null(dht_cache_get(&c, k[4]));
  /* now k0 is the oldest: the next newcomer takes its slot */
  dht_cache_put(&c, k[5]);
  assert_null(dht_cache_get(&c, k[0]));
  /* a removed way is reused before anything is evicted */
  dht_cache_remove(&c, k[3]);
  dht_cache_put(&c, k[6]);
  assert_non_null(dht_cache_get(&c, k[2]));
  assert_non_null(dht_cache_get(&c, k[4]));
  assert_non_null(dht_cache_get(&c, k[5]));
  assert_non_null(dht_cache_get(&c, k[6]));
  assert_null(dht_cache_get(&c, k[3]));
  dht_cache_free(&c, &dht_mem_libc);

  /* many sets, many keys: the most recent key is always there, no more than
   * capacity are, and every key found carries its own value */
  tu_rng rng;
  tu_rng_init(&rng, g_seed, 7);
  assert_int_equal(dht_cache_init(&c, 64, 32, hkey, &dht_mem_libc), 0);
  static uint8_t keys[1000][32];
  tu_rng_bytes(&rng, &keys[0][0], sizeof keys);
  for (int i = 0; i < 1000; i++) {
    memcpy(dht_cache_put(&c, keys[i]), keys[i], 32);
    assert_memory_equal(dht_cache_get(&c, keys[i]), keys[i], 32);
  }
  int found = 0;
  for (int i = 0; i < 1000; i++) {
    uint8_t *x = dht_cache_get(&c, keys[i]);
    if (x) {
      found++;
      assert_memory_equal(x, keys[i], 32);
    }
  }
  assert_int_equal(found, 64); /* every set full of its four most recent keys */
  dht_cache_free(&c, &dht_mem_libc);
}

int main(void) {
  if (sodium_init() < 0)
    return 1;
  g_seed = tu_seed("limits");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rate_burst_refill),     cmocka_unit_test(test_rate_prefixes),
      cmocka_unit_test(test_rate_bounded),          cmocka_unit_test(test_rate_off),
      cmocka_unit_test(test_replay_basic),          cmocka_unit_test(test_replay_nearby_nonces),
      cmocka_unit_test(test_replay_sender_keys),    cmocka_unit_test(test_replay_forged_collision),
      cmocka_unit_test(test_replay_counter_nonces), cmocka_unit_test(test_replay_window),
      cmocka_unit_test(test_cache_basic),           cmocka_unit_test(test_cache_lru),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

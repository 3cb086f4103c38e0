/*
 * test_rt.c - the routing table (dht_rt.c): bucket splitting, the k cap, the
 * replacement cache, ping-before-evict, IP diversity, address updates,
 * closest() against brute force, the RTT estimator, refresh bookkeeping and
 * a failing-allocation sweep.
 *
 * Contacts have random 32-byte keys (the table derives ID = BLAKE2b(pk)); a
 * contact for a chosen bucket is mined by drawing keys until the ID has the
 * wanted common prefix with our own.  Random inputs come from a seeded
 * generator; the seed is printed and ROOST_SEED=<n> replays a run.
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

#include "dht_int.h"

/* ---- helpers ------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng_next(void) {
  /* splitmix64 */
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void rng_fill(uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t)(rng_next() >> 56);
}

typedef struct tc {
  uint8_t pk[DHT_PK_LEN];
  uint8_t id[DHT_ID_LEN];
  dht_addr addr;
} tc;

static dht_addr addr4(int a, int b, int c, int d, int port) {
  dht_addr x;
  memset(&x, 0, sizeof x);
  x.family = DHT_AF_INET;
  x.ip[0] = (uint8_t)a;
  x.ip[1] = (uint8_t)b;
  x.ip[2] = (uint8_t)c;
  x.ip[3] = (uint8_t)d;
  x.port = (uint16_t)port;
  return x;
}

static dht_addr addr6(uint16_t g0, uint16_t g1, uint16_t g2, uint16_t g3, uint16_t g7) {
  dht_addr x;
  memset(&x, 0, sizeof x);
  x.family = DHT_AF_INET6;
  uint16_t g[8] = {g0, g1, g2, g3, 0, 0, 0, g7};
  for (int i = 0; i < 8; i++) {
    x.ip[2 * i] = (uint8_t)(g[i] >> 8);
    x.ip[2 * i + 1] = (uint8_t)g[i];
  }
  x.port = 4000;
  return x;
}

/* A public IPv4 address, almost surely on a /24 of its own. */
static dht_addr addr_random(void) {
  uint64_t r = rng_next();
  return addr4(11 + (int)(r % 80), (int)(r >> 8 & 255), (int)(r >> 16 & 255),
               1 + (int)(r >> 24 & 127), 1024 + (int)(r >> 32 & 0x7fff));
}

static void tc_random(tc *c) {
  rng_fill(c->pk, sizeof c->pk);
  dht_id_from_pk(c->id, c->pk);
  c->addr = addr_random();
}

/* A contact whose ID has exactly cpl leading bits in common with self:
 * about 2^(cpl+1) draws. */
static void tc_mined(tc *c, const uint8_t self[static DHT_ID_LEN], int cpl) {
  do
    tc_random(c);
  while (dht_id_cpl(self, c->id) != cpl);
}

/* The ID of a table contact (the table keeps its key, not its ID). */
static const uint8_t *id_of(const dht_rt_contact *c, uint8_t id[static DHT_ID_LEN]) {
  dht_id_from_pk(id, c->pk);
  return id;
}

static dht_rt_settings settings(int k, int rc) {
  dht_rt_settings s;
  memset(&s, 0, sizeof s);
  s.k = k;
  s.replacement_cache = rc;
  s.max_per_prefix_bucket = 0;
  s.max_per_prefix_table = 0;
  s.diversity_exempt_private = true;
  s.questionable_after_ms = 1000;
  s.max_failures = 3;
  return s;
}

static dht_rt *rt_make(const uint8_t self[static DHT_ID_LEN], const dht_rt_settings *s) {
  dht_rt *rt = NULL;
  assert_int_equal(dht_rt_new(&rt, self, s, NULL), 0);
  assert_non_null(rt);
  return rt;
}

static int add(dht_rt *rt, const tc *c, bool confirmed, dht_ts now) {
  return dht_rt_update(rt, c->pk, &c->addr, confirmed, -1, now, NULL);
}

static int expected_bucket(const dht_rt *rt, const uint8_t self[static DHT_ID_LEN],
                           const uint8_t id[static DHT_ID_LEN]) {
  int cpl = dht_id_cpl(self, id);
  int last = dht_rt_buckets(rt) - 1;
  return cpl < last ? cpl : last;
}

/* Internal invariants, then what the public API shows of them: dht_rt_at
 * walks buckets in order, each holds at most k, every contact is found by
 * its key and id. */
static void check(const dht_rt *rt, const uint8_t self[static DHT_ID_LEN], int k) {
  assert_int_equal(dht_rt_check(rt), 0);
  int nb = dht_rt_buckets(rt), size = dht_rt_size(rt);
  assert_true(nb >= 1 && nb <= 256);
  assert_true(size <= nb * k);
  int prev = 0, run = 0;
  for (int i = 0; i < size; i++) {
    const dht_rt_contact *c = dht_rt_at(rt, i);
    assert_non_null(c);
    uint8_t id[DHT_ID_LEN];
    int bi = expected_bucket(rt, self, id_of(c, id));
    assert_true(bi >= prev);
    run = bi == prev ? run + 1 : 1;
    prev = bi;
    assert_true(run <= k);
    assert_ptr_equal(dht_rt_find(rt, c->pk, id), c);
  }
  assert_null(dht_rt_at(rt, size));
  assert_null(dht_rt_at(rt, -1));
}

/* The bucket a contact sits in, as the refresh bookkeeping sees it: touch
 * every bucket at t0, refresh the contact at t0 + 10, then every bucket but
 * its own is stale at t0 + 5 with interval 5. */
static int observed_bucket(dht_rt *rt, const tc *c, dht_ts t0) {
  int nb = dht_rt_buckets(rt);
  for (int i = 0; i < nb; i++)
    dht_rt_touch_bucket(rt, i, t0);
  assert_int_equal(dht_rt_update(rt, c->pk, &c->addr, true, -1, t0 + 10, NULL), DHT_RT_UPDATED);
  int fresh = -1, stale = 0;
  bool seen[256] = {false};
  for (;;) {
    int i = dht_rt_stale_bucket(rt, t0 + 5, 5);
    if (i < 0)
      break;
    assert_false(seen[i]);
    seen[i] = true;
    stale++;
    dht_rt_touch_bucket(rt, i, t0 + 20); /* no longer stale at t0 + 5 */
  }
  assert_int_equal(stale, nb - 1);
  for (int i = 0; i < nb; i++)
    if (!seen[i])
      fresh = i;
  return fresh;
}

/* ---- life cycle -------------------------------------------------------- */

static void test_new_invalid(void **state) {
  (void)state;
  uint8_t self[DHT_ID_LEN] = {1};
  dht_rt *rt = NULL;
  dht_rt_settings s = settings(20, 8);
  s.k = 0;
  assert_int_equal(dht_rt_new(&rt, self, &s, NULL), DHT_ERR_INVAL);
  s.k = DHT_K_MAX + 1;
  assert_int_equal(dht_rt_new(&rt, self, &s, NULL), DHT_ERR_INVAL);
  s = settings(20, -1);
  assert_int_equal(dht_rt_new(&rt, self, &s, NULL), DHT_ERR_INVAL);
  s = settings(20, 8);
  s.max_failures = 0;
  assert_int_equal(dht_rt_new(&rt, self, &s, NULL), DHT_ERR_INVAL);
  s = settings(20, 8);
  s.max_per_prefix_table = -1;
  assert_int_equal(dht_rt_new(&rt, self, &s, NULL), DHT_ERR_INVAL);
  assert_null(rt);
  assert_int_equal(dht_rt_new(&rt, self, NULL, NULL), DHT_ERR_INVAL);

  s = settings(DHT_K_MAX, 0);
  assert_int_equal(dht_rt_new(&rt, self, &s, &dht_mem_libc), 0);
  assert_int_equal(dht_rt_size(rt), 0);
  assert_int_equal(dht_rt_buckets(rt), 1);
  const dht_rt_contact *out[4];
  assert_int_equal(dht_rt_closest(rt, self, false, out, 4), 0);
  assert_null(dht_rt_next_to_ping(rt, 0));
  dht_rt_del(rt);
  dht_rt_del(NULL);
}

static void test_self_rejected(void **state) {
  (void)state;
  tc me;
  tc_random(&me);
  dht_rt_settings s = settings(20, 8);
  dht_rt *rt = rt_make(me.id, &s);
  const dht_rt_contact *ping = (const dht_rt_contact *)1;
  assert_int_equal(dht_rt_update(rt, me.pk, &me.addr, true, 5, 10, &ping), DHT_RT_REJECTED);
  assert_null(ping);
  assert_int_equal(dht_rt_size(rt), 0);
  assert_null(dht_rt_find(rt, me.pk, me.id));
  dht_rt_del(rt);
}

/* A contact whose ID shares its first 64 bits with ours (self is chosen
 * that way here; hashed IDs never do it): the table keeps only 8 bytes of
 * each ID, so every split must place it by its full ID, hashed from its
 * key.  One newcomer at cpl 5 splits the one-contact bucket six times. */
static void test_self_prefix(void **state) {
  (void)state;
  tc c, x;
  tc_random(&c);
  uint8_t self[DHT_ID_LEN];
  memcpy(self, c.id, DHT_ID_LEN);
  self[DHT_ID_LEN - 1] ^= 1; /* cpl 255 */
  tc_mined(&x, self, 5);
  dht_rt_settings s = settings(1, 0);
  dht_rt *rt = rt_make(self, &s);
  assert_int_equal(add(rt, &c, true, 10), DHT_RT_ADDED);
  assert_int_equal(add(rt, &x, true, 11), DHT_RT_ADDED);
  assert_int_equal(dht_rt_buckets(rt), 7);
  assert_int_equal(dht_rt_size(rt), 2);
  /* c sits in the last bucket, x in bucket 5 */
  assert_int_equal(observed_bucket(rt, &c, 1000), 6);
  assert_int_equal(observed_bucket(rt, &x, 2000), 5);
  const dht_rt_contact *out[2];
  assert_int_equal(dht_rt_closest(rt, self, false, out, 2), 2);
  assert_memory_equal(out[0]->pk, c.pk, DHT_PK_LEN);
  assert_memory_equal(out[1]->pk, x.pk, DHT_PK_LEN);
  check(rt, self, 1);
  dht_rt_del(rt);
}

static void test_add_update_find(void **state) {
  (void)state;
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  dht_rt_settings s = settings(20, 8);
  dht_rt *rt = rt_make(self, &s);
  tc a, b;
  tc_random(&a);
  tc_random(&b);

  assert_int_equal(add(rt, &a, true, 100), DHT_RT_ADDED);
  const dht_rt_contact *c = dht_rt_find(rt, a.pk, a.id);
  assert_non_null(c);
  assert_memory_equal(c->pk, a.pk, DHT_PK_LEN);
  assert_true(dht_addr_eq(&c->addr, &a.addr));
  assert_int_equal(c->first_seen, 100);
  assert_int_equal(c->last_reply, 100);
  assert_int_equal(c->fails, 0);

  /* the ID only locates a slot: the key must match as well (b's key with
   * a's ID is nobody, though the table holds a slot with a's ID) */
  assert_null(dht_rt_find(rt, b.pk, a.id));
  assert_false(dht_rt_failed(rt, b.pk, a.id, 110));
  dht_rt_pinged(rt, b.pk, a.id, 120);
  dht_rt_heard(rt, b.pk, a.id, &a.addr, 130);
  assert_false(dht_rt_remove(rt, b.pk, a.id));
  assert_ptr_equal(dht_rt_find(rt, a.pk, a.id), c);
  assert_int_equal(c->fails, 0);
  assert_int_equal(c->last_ping, 0);
  assert_int_equal(c->last_reply, 100);

  assert_false(dht_rt_failed(rt, a.pk, a.id, 150));
  assert_int_equal(dht_rt_find(rt, a.pk, a.id)->fails, 1);
  assert_int_equal(add(rt, &a, true, 200), DHT_RT_UPDATED);
  c = dht_rt_find(rt, a.pk, a.id);
  assert_int_equal(c->last_reply, 200);
  assert_int_equal(c->first_seen, 100);
  assert_int_equal(c->fails, 0);

  /* hearsay changes nothing */
  assert_int_equal(add(rt, &a, false, 300), DHT_RT_UPDATED);
  assert_int_equal(dht_rt_find(rt, a.pk, a.id)->last_reply, 200);

  /* an unconfirmed newcomer enters as never having answered */
  assert_int_equal(add(rt, &b, false, 300), DHT_RT_ADDED);
  assert_int_equal(dht_rt_find(rt, b.pk, b.id)->last_reply, 0);
  assert_int_equal(dht_rt_find(rt, b.pk, b.id)->first_seen, 300);
  assert_int_equal(dht_rt_size(rt), 2);

  /* bad arguments */
  dht_addr none;
  memset(&none, 0, sizeof none);
  assert_int_equal(dht_rt_update(rt, a.pk, &none, true, -1, 400, NULL), DHT_ERR_INVAL);
  assert_int_equal(dht_rt_update(rt, a.pk, NULL, true, -1, 400, NULL), DHT_ERR_INVAL);
  check(rt, self, s.k);
  dht_rt_del(rt);
}

/* ---- buckets and splits -------------------------------------------------- */

static void test_splits_random(void **state) {
  (void)state;
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  dht_rt_settings s = settings(8, 2);
  dht_rt *rt = rt_make(self, &s);
  int nb = 1, added = 0;
  for (int i = 0; i < 3000; i++) {
    tc c;
    tc_random(&c);
    int r = add(rt, &c, true, 1000 + i);
    assert_true(r == DHT_RT_ADDED || r == DHT_RT_CACHED || r == DHT_RT_REJECTED);
    added += r == DHT_RT_ADDED;
    assert_true(dht_rt_buckets(rt) >= nb); /* never shrinks */
    nb = dht_rt_buckets(rt);
    if (i % 250 == 0)
      check(rt, self, s.k);
  }
  check(rt, self, s.k);
  assert_int_equal(dht_rt_size(rt), added);
  /* 3000 uniform IDs: about log2(3000 / 8) ~ 8.5 levels of full buckets. */
  assert_true(nb >= 6 && nb <= 20);
  /* the far buckets saw hundreds of candidates: full */
  for (int bi = 0; bi < 4; bi++) {
    int n = 0;
    for (int i = 0; i < dht_rt_size(rt); i++) {
      uint8_t id[DHT_ID_LEN];
      n += expected_bucket(rt, self, id_of(dht_rt_at(rt, i), id)) == bi;
    }
    assert_int_equal(n, s.k);
  }
  dht_rt_del(rt);
}

static void test_crafted_buckets(void **state) {
  (void)state;
  enum { K = 4, DEPTH = 10 };
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  tc c[DEPTH * K];
  for (int cpl = 0; cpl < DEPTH; cpl++)
    for (int j = 0; j < K; j++)
      tc_mined(&c[cpl * K + j], self, cpl);
  /* shuffle: the outcome must not depend on arrival order */
  for (int i = DEPTH * K - 1; i > 0; i--) {
    int j = (int)(rng_next() % (uint64_t)(i + 1));
    tc t = c[i];
    c[i] = c[j];
    c[j] = t;
  }
  dht_rt_settings s = settings(K, 2);
  dht_rt *rt = rt_make(self, &s);
  for (int i = 0; i < DEPTH * K; i++) {
    assert_int_equal(add(rt, &c[i], true, 10 + i), DHT_RT_ADDED);
    check(rt, self, K);
  }
  assert_int_equal(dht_rt_size(rt), DEPTH * K);
  /* K contacts at each cpl 0..DEPTH-1: buckets 0..DEPTH-2 are full and the
   * last holds the rest, or one more (empty) split happened. */
  int nb = dht_rt_buckets(rt);
  assert_true(nb >= DEPTH - 1 && nb <= DEPTH + 1);
  for (int i = 0; i < DEPTH * K; i++) {
    int cpl = dht_id_cpl(self, c[i].id);
    int want = cpl < nb - 1 ? cpl : nb - 1;
    assert_int_equal(observed_bucket(rt, &c[i], 1000 * (i + 1)), want);
    const dht_rt_contact *out[1];
    assert_int_equal(dht_rt_closest(rt, c[i].id, false, out, 1), 1);
    assert_memory_equal(out[0]->pk, c[i].pk, DHT_PK_LEN);
  }
  check(rt, self, K);
  dht_rt_del(rt);
}

static void test_bucket_cap_and_cache(void **state) {
  (void)state;
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  dht_rt_settings s = settings(4, 3);
  dht_rt *rt = rt_make(self, &s);
  tc c[9];
  for (int i = 0; i < 9; i++)
    tc_mined(&c[i], self, 0);
  for (int i = 0; i < 4; i++)
    assert_int_equal(add(rt, &c[i], true, 10 + i), DHT_RT_ADDED);
  for (int i = 4; i < 9; i++)
    assert_int_equal(add(rt, &c[i], true, 20 + i), DHT_RT_CACHED);
  assert_int_equal(dht_rt_size(rt), 4);
  assert_true(dht_rt_buckets(rt) <= 2); /* one useless split at most */
  for (int i = 4; i < 9; i++)
    assert_null(dht_rt_find(rt, c[i].pk, c[i].id));
  check(rt, self, 4);

  /* A cached entry that answers again stays cached (the bucket is full of
   * good contacts) and is refreshed. */
  assert_int_equal(add(rt, &c[8], true, 40), DHT_RT_CACHED);

  /* The cache kept the three most recent: c8, c7, c6, promoted in that
   * order as bucket contacts fail max_failures times. */
  static const int promoted[] = {8, 7, 6};
  for (int r = 0; r < 3; r++) {
    assert_false(dht_rt_failed(rt, c[r].pk, c[r].id, 50));
    assert_false(dht_rt_failed(rt, c[r].pk, c[r].id, 51));
    assert_true(dht_rt_failed(rt, c[r].pk, c[r].id, 52));
    assert_null(dht_rt_find(rt, c[r].pk, c[r].id));
    const dht_rt_contact *p = dht_rt_find(rt, c[promoted[r]].pk, c[promoted[r]].id);
    assert_non_null(p);
    assert_true(p->last_reply > 0);
    assert_int_equal(dht_rt_size(rt), 4);
    check(rt, self, 4);
  }
  assert_int_equal(dht_rt_find(rt, c[8].pk, c[8].id)->last_reply, 40);
  /* c4 and c5 fell off the cache: with no replacement waiting, c3 stays,
   * marked bad (Kademlia's rule: a dead link must not empty the table) */
  for (int f = 0; f < 3; f++)
    assert_false(dht_rt_failed(rt, c[3].pk, c[3].id, 60));
  assert_int_equal(dht_rt_size(rt), 4);
  assert_int_equal(dht_rt_find(rt, c[3].pk, c[3].id)->fails, 3);
  assert_null(dht_rt_find(rt, c[4].pk, c[4].id));
  assert_null(dht_rt_find(rt, c[5].pk, c[5].id));
  /* and the first newcomer takes the bad contact's slot */
  assert_int_equal(add(rt, &c[4], true, 70), DHT_RT_ADDED);
  assert_null(dht_rt_find(rt, c[3].pk, c[3].id));
  assert_int_equal(dht_rt_size(rt), 4);
  check(rt, self, 4);
  dht_rt_del(rt);
}

static void test_cache_policy(void **state) {
  (void)state;
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  dht_rt_settings s = settings(2, 2);
  dht_rt *rt = rt_make(self, &s);
  tc b[2], u[3], k[2], d[2];
  for (int i = 0; i < 2; i++) {
    tc_mined(&b[i], self, 0);
    tc_mined(&k[i], self, 0);
    tc_mined(&d[i], self, 0);
  }
  for (int i = 0; i < 3; i++)
    tc_mined(&u[i], self, 0);
  assert_int_equal(add(rt, &b[0], true, 10), DHT_RT_ADDED);
  assert_int_equal(add(rt, &b[1], true, 11), DHT_RT_ADDED);

  assert_int_equal(add(rt, &u[0], false, 20), DHT_RT_CACHED);   /* free slot */
  assert_int_equal(add(rt, &k[0], true, 21), DHT_RT_CACHED);    /* ahead of u0 */
  assert_int_equal(add(rt, &u[1], false, 22), DHT_RT_CACHED);   /* displaces u0 */
  assert_int_equal(add(rt, &k[1], true, 23), DHT_RT_CACHED);    /* displaces u1 */
  assert_int_equal(add(rt, &u[2], false, 24), DHT_RT_REJECTED); /* never a confirmed one */
  check(rt, self, 2);

  /* promotion order: k1 then k0; none of the unconfirmed ones remain */
  for (int f = 0; f < 3; f++)
    dht_rt_failed(rt, b[0].pk, b[0].id, 30);
  assert_non_null(dht_rt_find(rt, k[1].pk, k[1].id));
  assert_null(dht_rt_find(rt, k[0].pk, k[0].id));
  for (int f = 0; f < 3; f++)
    dht_rt_failed(rt, b[1].pk, b[1].id, 31);
  assert_non_null(dht_rt_find(rt, k[0].pk, k[0].id));
  for (int f = 0; f < 3; f++)
    dht_rt_failed(rt, k[1].pk, k[1].id, 32);
  /* no replacement left: k1 stays, marked bad; u0..u2 were never kept */
  assert_int_equal(dht_rt_size(rt), 2);
  assert_int_equal(dht_rt_find(rt, k[1].pk, k[1].id)->fails, 3);
  for (int i = 0; i < 3; i++)
    assert_null(dht_rt_find(rt, u[i].pk, u[i].id));
  assert_int_equal(add(rt, &b[0], true, 40), DHT_RT_ADDED); /* takes k1's slot */
  assert_null(dht_rt_find(rt, k[1].pk, k[1].id));

  /* a refreshed cache entry moves to the front */
  assert_int_equal(add(rt, &d[0], true, 50), DHT_RT_CACHED);
  assert_int_equal(add(rt, &d[1], true, 51), DHT_RT_CACHED);
  assert_int_equal(add(rt, &d[0], true, 52), DHT_RT_CACHED);
  for (int f = 0; f < 3; f++)
    dht_rt_failed(rt, b[0].pk, b[0].id, 60);
  assert_non_null(dht_rt_find(rt, d[0].pk, d[0].id));
  assert_int_equal(dht_rt_find(rt, d[0].pk, d[0].id)->last_reply, 52);

  /* a cache entry that times out is dropped, not promoted */
  assert_int_equal(add(rt, &b[1], true, 70), DHT_RT_CACHED);
  assert_false(dht_rt_failed(rt, d[1].pk, d[1].id, 71));
  assert_false(dht_rt_failed(rt, b[1].pk, b[1].id, 71)); /* cached: dropped as well */
  for (int f = 0; f < 3; f++)
    dht_rt_failed(rt, d[0].pk, d[0].id, 72);
  assert_null(dht_rt_find(rt, d[1].pk, d[1].id));
  assert_null(dht_rt_find(rt, b[1].pk, b[1].id));
  /* the cache is empty, so d0 stays (marked bad) rather than leaving a hole */
  assert_int_equal(dht_rt_size(rt), 2);
  assert_int_equal(dht_rt_find(rt, d[0].pk, d[0].id)->fails, 3);
  check(rt, self, 2);
  dht_rt_del(rt);
}

static void test_ping_before_evict(void **state) {
  (void)state;
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  dht_rt_settings s = settings(4, 4); /* questionable after 1000 ms */
  dht_rt *rt = rt_make(self, &s);
  tc b[4], n[6];
  for (int i = 0; i < 4; i++)
    tc_mined(&b[i], self, 0);
  for (int i = 0; i < 6; i++)
    tc_mined(&n[i], self, 0);
  for (int i = 0; i < 4; i++)
    assert_int_equal(add(rt, &b[i], true, 100 * (i + 1)), DHT_RT_ADDED);

  /* at 1250, b0 and b1 have gone questionable: the oldest is pinged first */
  const dht_rt_contact *ping = NULL;
  assert_int_equal(dht_rt_update(rt, n[0].pk, &n[0].addr, true, 30, 1250, &ping), DHT_RT_CACHED);
  assert_non_null(ping);
  assert_memory_equal(ping->pk, b[0].pk, DHT_PK_LEN);
  dht_rt_pinged(rt, b[0].pk, b[0].id, 1250);
  assert_int_equal(dht_rt_find(rt, b[0].pk, b[0].id)->last_ping, 1250);

  assert_int_equal(dht_rt_update(rt, n[1].pk, &n[1].addr, true, 30, 1260, &ping), DHT_RT_CACHED);
  assert_non_null(ping);
  assert_memory_equal(ping->pk, b[1].pk, DHT_PK_LEN);
  dht_rt_pinged(rt, b[1].pk, b[1].id, 1260);

  /* b2 is still good (970 ms), b0 and b1 were just pinged: nobody */
  ping = (const dht_rt_contact *)1;
  assert_int_equal(dht_rt_update(rt, n[2].pk, &n[2].addr, true, 30, 1270, &ping), DHT_RT_CACHED);
  assert_null(ping);
  /* an unconfirmed newcomer never triggers a ping */
  ping = (const dht_rt_contact *)1;
  assert_int_equal(dht_rt_update(rt, n[5].pk, &n[5].addr, false, -1, 1400, &ping), DHT_RT_CACHED);
  assert_null(ping);
  assert_true(dht_rt_remove(rt, n[5].pk, n[5].id)); /* out of the cache again */

  /* at 1300, b2 turns questionable exactly */
  assert_int_equal(dht_rt_update(rt, n[3].pk, &n[3].addr, true, 30, 1300, &ping), DHT_RT_CACHED);
  assert_non_null(ping);
  assert_memory_equal(ping->pk, b[2].pk, DHT_PK_LEN);

  /* nobody was evicted by the newcomers */
  assert_int_equal(dht_rt_size(rt), 4);
  for (int i = 0; i < 4; i++)
    assert_non_null(dht_rt_find(rt, b[i].pk, b[i].id));

  /* b1 answers its ping: it stays, good again */
  assert_int_equal(dht_rt_update(rt, b[1].pk, &b[1].addr, true, 40, 1310, NULL), DHT_RT_UPDATED);
  /* b0 does not: after max_failures it leaves for the freshest newcomer */
  assert_false(dht_rt_failed(rt, b[0].pk, b[0].id, 1400));
  assert_false(dht_rt_failed(rt, b[0].pk, b[0].id, 1500));
  assert_true(dht_rt_failed(rt, b[0].pk, b[0].id, 1600));
  assert_null(dht_rt_find(rt, b[0].pk, b[0].id));
  assert_non_null(dht_rt_find(rt, n[3].pk, n[3].id));
  assert_non_null(dht_rt_find(rt, b[1].pk, b[1].id));
  check(rt, self, 4);

  /* a pinged contact that stays silent is due again after the interval */
  dht_rt_pinged(rt, b[2].pk, b[2].id, 1300);
  dht_rt_pinged(rt, b[3].pk, b[3].id, 1300);
  assert_int_equal(dht_rt_update(rt, n[4].pk, &n[4].addr, true, 30, 2000, &ping), DHT_RT_CACHED);
  assert_null(ping);
  ping = NULL;
  assert_int_equal(dht_rt_update(rt, n[4].pk, &n[4].addr, true, 30, 2300, &ping), DHT_RT_CACHED);
  assert_null(ping); /* a known cache entry: refreshed, no ping */
  tc m;
  tc_mined(&m, self, 0);
  assert_int_equal(dht_rt_update(rt, m.pk, &m.addr, true, 30, 2300, &ping), DHT_RT_CACHED);
  assert_non_null(ping);
  assert_memory_equal(ping->pk, b[2].pk, DHT_PK_LEN);
  dht_rt_del(rt);
}

static void test_good_never_evicted(void **state) {
  (void)state;
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  dht_rt_settings s = settings(4, 2);
  dht_rt *rt = rt_make(self, &s);
  tc b[4];
  for (int i = 0; i < 4; i++) {
    tc_mined(&b[i], self, 0);
    assert_int_equal(add(rt, &b[i], true, 100), DHT_RT_ADDED);
  }
  for (int i = 0; i < 50; i++) {
    tc n;
    tc_mined(&n, self, 0);
    const dht_rt_contact *ping = (const dht_rt_contact *)1;
    int t = 200 + 10 * i; /* all within questionable_after of 100 */
    assert_int_equal(dht_rt_update(rt, n.pk, &n.addr, true, 5, t, &ping), DHT_RT_CACHED);
    assert_null(ping);
  }
  for (int i = 0; i < 4; i++)
    assert_non_null(dht_rt_find(rt, b[i].pk, b[i].id));

  /* a contact loaded from a snapshot (never answered) is the first pinged */
  dht_rt_del(rt);
  rt = rt_make(self, &s);
  assert_int_equal(add(rt, &b[0], true, 100), DHT_RT_ADDED);
  assert_int_equal(add(rt, &b[1], false, 100), DHT_RT_ADDED);
  assert_int_equal(add(rt, &b[2], true, 100), DHT_RT_ADDED);
  assert_int_equal(add(rt, &b[3], true, 100), DHT_RT_ADDED);
  tc n;
  tc_mined(&n, self, 0);
  const dht_rt_contact *ping = NULL;
  assert_int_equal(dht_rt_update(rt, n.pk, &n.addr, true, 5, 5000, &ping), DHT_RT_CACHED);
  assert_non_null(ping);
  assert_memory_equal(ping->pk, b[1].pk, DHT_PK_LEN);
  dht_rt_del(rt);
}

/* The interface keeps "bad" contacts (fails >= max_failures) out of buckets:
 * with no replacement cache, a contact at the limit stays (bad) and the
 * next newcomer takes its slot; below the limit it is not replaced. */
static void test_failed_contact_replaced(void **state) {
  (void)state;
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  dht_rt_settings s = settings(2, 0);
  dht_rt *rt = rt_make(self, &s);
  tc b[2], n;
  tc_mined(&b[0], self, 0);
  tc_mined(&b[1], self, 0);
  tc_mined(&n, self, 0);
  assert_int_equal(add(rt, &b[0], true, 10), DHT_RT_ADDED);
  assert_int_equal(add(rt, &b[1], true, 11), DHT_RT_ADDED);
  assert_int_equal(add(rt, &n, true, 12), DHT_RT_REJECTED); /* no cache */
  assert_false(dht_rt_failed(rt, b[0].pk, b[0].id, 20));
  assert_false(dht_rt_failed(rt, b[0].pk, b[0].id, 21));
  assert_int_equal(dht_rt_find(rt, b[0].pk, b[0].id)->fails, 2);
  assert_int_equal(add(rt, &n, true, 22), DHT_RT_REJECTED);
  /* at the limit, with no replacement cache, it stays but is bad ... */
  assert_false(dht_rt_failed(rt, b[0].pk, b[0].id, 23));
  assert_int_equal(dht_rt_find(rt, b[0].pk, b[0].id)->fails, 3);
  /* ... and the next newcomer replaces it */
  assert_int_equal(add(rt, &n, true, 25), DHT_RT_ADDED);
  assert_null(dht_rt_find(rt, b[0].pk, b[0].id));
  assert_non_null(dht_rt_find(rt, b[1].pk, b[1].id));
  check(rt, self, 2);
  dht_rt_del(rt);
}

/* ---- IP diversity -------------------------------------------------------- */

static void test_diversity_bucket_and_table(void **state) {
  (void)state;
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  dht_rt_settings s = settings(8, 0);
  s.max_per_prefix_bucket = 2;
  s.max_per_prefix_table = 3;
  s.diversity_exempt_private = true;
  dht_rt *rt = rt_make(self, &s);
  tc x[9], y[6];
  for (int i = 0; i < 9; i++)
    tc_mined(&x[i], self, 0);
  for (int i = 0; i < 6; i++)
    tc_mined(&y[i], self, 1);
  /* bucket 0: two on 1.2.3.0/24, six elsewhere: full */
  for (int i = 0; i < 8; i++) {
    x[i].addr = i < 2 ? addr4(1, 2, 3, 10 + i, 5000) : addr4(20 + i, 1, 1, 1, 5000);
    assert_int_equal(add(rt, &x[i], true, 10 + i), DHT_RT_ADDED);
  }
  /* a third on 1.2.3.0/24 in bucket 0: per-bucket limit */
  x[8].addr = addr4(1, 2, 3, 99, 5000);
  assert_int_equal(add(rt, &x[8], true, 20), DHT_RT_REJECTED);

  /* in bucket 1 (after a split) the bucket count is 0, the table count 2 */
  y[0].addr = addr4(1, 2, 3, 50, 6000);
  assert_int_equal(add(rt, &y[0], true, 30), DHT_RT_ADDED);
  assert_true(dht_rt_buckets(rt) >= 2);
  /* now 3 in the table: the table limit refuses a fourth anywhere */
  y[1].addr = addr4(1, 2, 3, 51, 6000);
  assert_int_equal(add(rt, &y[1], true, 31), DHT_RT_REJECTED);
  /* per-bucket limit alone: two on 9.9.9.0/24 in bucket 1, not a third */
  y[2].addr = addr4(9, 9, 9, 1, 6000);
  y[3].addr = addr4(9, 9, 9, 2, 6000);
  y[4].addr = addr4(9, 9, 9, 3, 6000);
  assert_int_equal(add(rt, &y[2], true, 32), DHT_RT_ADDED);
  assert_int_equal(add(rt, &y[3], true, 33), DHT_RT_ADDED);
  assert_int_equal(add(rt, &y[4], true, 34), DHT_RT_REJECTED);
  /* another /24 is fine */
  y[5].addr = addr4(1, 2, 4, 1, 6000);
  assert_int_equal(add(rt, &y[5], true, 35), DHT_RT_ADDED);
  check(rt, self, 8);

  /* a freed slot is not refilled with a refused prefix... */
  assert_true(dht_rt_remove(rt, x[2].pk, x[2].id));
  assert_int_equal(add(rt, &x[8], true, 40), DHT_RT_REJECTED);
  /* ...but the same contact on a fresh prefix is welcome */
  x[8].addr = addr4(77, 7, 7, 7, 5000);
  assert_int_equal(add(rt, &x[8], true, 41), DHT_RT_ADDED);
  dht_rt_del(rt);
}

/* n contacts in one bucket (nb stays 1 while n <= k) on the given addresses;
 * returns how many were added. */
static int add_many(dht_rt *rt, const dht_addr *addrs, int n) {
  int added = 0;
  for (int i = 0; i < n; i++) {
    tc c;
    tc_random(&c);
    c.addr = addrs[i];
    int r = add(rt, &c, true, 100 + i);
    assert_true(r == DHT_RT_ADDED || r == DHT_RT_REJECTED);
    added += r == DHT_RT_ADDED;
  }
  return added;
}

static void test_diversity_exemptions(void **state) {
  (void)state;
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  dht_addr a[6];
  dht_rt_settings s = settings(20, 0);
  s.max_per_prefix_bucket = 2;
  s.max_per_prefix_table = 2;

  /* loopback: always exempt, even without the private exemption */
  s.diversity_exempt_private = false;
  dht_rt *rt = rt_make(self, &s);
  for (int i = 0; i < 6; i++)
    a[i] = i < 3 ? addr4(127, 0, 0, 1, 7000 + i) : addr6(0, 0, 0, 0, 1);
  assert_int_equal(add_many(rt, a, 6), 6);
  dht_rt_del(rt);

  /* private: limited without the flag... */
  rt = rt_make(self, &s);
  for (int i = 0; i < 6; i++)
    a[i] = addr4(192, 168, 1, 10 + i, 7000);
  assert_int_equal(add_many(rt, a, 6), 2);
  dht_rt_del(rt);
  /* ...exempt with it */
  s.diversity_exempt_private = true;
  rt = rt_make(self, &s);
  assert_int_equal(add_many(rt, a, 6), 6);
  for (int i = 0; i < 6; i++) /* ULA too */
    a[i] = addr6(0xfd00, 1, 2, 3, (uint16_t)(i + 1));
  assert_int_equal(add_many(rt, a, 6), 6);
  /* the flag does not exempt public addresses */
  for (int i = 0; i < 6; i++)
    a[i] = addr4(8, 8, 8, i + 1, 53);
  assert_int_equal(add_many(rt, a, 6), 2);
  dht_rt_del(rt);

  /* IPv6 counts /48s; families never share a prefix */
  rt = rt_make(self, &s);
  a[0] = addr6(0x2001, 0xdb8, 1, 0, 1);
  a[1] = addr6(0x2001, 0xdb8, 1, 0xffff, 2);
  a[2] = addr6(0x2001, 0xdb8, 1, 7, 3); /* same /48: refused */
  a[3] = addr6(0x2001, 0xdb8, 2, 0, 1); /* next /48 */
  a[4] = addr4(32, 1, 13, 1, 1);        /* 0x2001:0x0db8 as IPv4 bytes */
  a[5] = addr4(32, 1, 13, 2, 1);
  assert_int_equal(add_many(rt, a, 6), 5);
  dht_rt_del(rt);

  /* limit 0 = off */
  s.max_per_prefix_bucket = 0;
  s.max_per_prefix_table = 0;
  rt = rt_make(self, &s);
  for (int i = 0; i < 6; i++)
    a[i] = addr4(8, 8, 8, i + 1, 53);
  assert_int_equal(add_many(rt, a, 6), 6);
  dht_rt_del(rt);

  /* only one limit set: the other is off */
  s.max_per_prefix_bucket = 0;
  s.max_per_prefix_table = 4;
  rt = rt_make(self, &s);
  assert_int_equal(add_many(rt, a, 6), 4);
  dht_rt_del(rt);
}

static void test_diversity_cache(void **state) {
  (void)state;
  /* a full bucket may cache a newcomer whose prefix is at its limit (the
   * limits are checked where a contact takes a slot: on promotion), but it
   * never promotes it while the prefix is full */
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  dht_rt_settings s = settings(2, 2);
  s.max_per_prefix_bucket = 2;
  dht_rt *rt = rt_make(self, &s);
  tc b[2], n;
  tc_mined(&b[0], self, 0);
  tc_mined(&b[1], self, 0);
  tc_mined(&n, self, 0);
  b[0].addr = addr4(5, 5, 5, 1, 1);
  b[1].addr = addr4(5, 5, 5, 2, 1);
  assert_int_equal(add(rt, &b[0], true, 10), DHT_RT_ADDED);
  assert_int_equal(add(rt, &b[1], true, 11), DHT_RT_ADDED);
  n.addr = addr4(5, 5, 5, 3, 1);
  assert_int_equal(add(rt, &n, true, 12), DHT_RT_CACHED);
  n.addr = addr4(6, 5, 5, 3, 1);
  assert_int_equal(add(rt, &n, true, 13), DHT_RT_CACHED);
  /* a cached entry that moves onto the full prefix is not promoted into
   * it: it waits until the prefix has room */
  n.addr = addr4(5, 5, 5, 3, 1);
  assert_int_equal(add(rt, &n, true, 14), DHT_RT_CACHED);
  for (int f = 0; f < 3; f++)
    dht_rt_failed(rt, b[0].pk, b[0].id, 20);
  /* b0 left: 5.5.5/24 has one contact, so n fits */
  assert_non_null(dht_rt_find(rt, n.pk, n.id));
  assert_int_equal(dht_rt_size(rt), 2);
  check(rt, self, 2);
  dht_rt_del(rt);
}

static void test_addr_update(void **state) {
  (void)state;
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  dht_rt_settings s = settings(8, 0);
  s.max_per_prefix_bucket = 2;
  dht_rt *rt = rt_make(self, &s);
  tc a, p1, p2;
  tc_random(&a);
  tc_random(&p1);
  tc_random(&p2);
  a.addr = addr4(30, 0, 0, 1, 1000);
  p1.addr = addr4(40, 0, 0, 1, 1000);
  p2.addr = addr4(40, 0, 0, 2, 1000);
  assert_int_equal(add(rt, &a, true, 10), DHT_RT_ADDED);
  assert_int_equal(add(rt, &p1, true, 11), DHT_RT_ADDED);
  assert_int_equal(add(rt, &p2, true, 12), DHT_RT_ADDED);

  /* a confirmed reply from a new address moves the contact */
  dht_addr moved = addr4(31, 0, 0, 1, 2000);
  assert_int_equal(dht_rt_update(rt, a.pk, &moved, true, -1, 20, NULL), DHT_RT_UPDATED);
  assert_true(dht_addr_eq(&dht_rt_find(rt, a.pk, a.id)->addr, &moved));
  /* hearsay does not */
  dht_addr rumour = addr4(32, 0, 0, 1, 2000);
  assert_int_equal(dht_rt_update(rt, a.pk, &rumour, false, -1, 21, NULL), DHT_RT_UPDATED);
  assert_true(dht_addr_eq(&dht_rt_find(rt, a.pk, a.id)->addr, &moved));
  /* onto a full prefix: refreshed, but the old address is kept */
  dht_addr full = addr4(40, 0, 0, 3, 2000);
  assert_int_equal(dht_rt_update(rt, a.pk, &full, true, -1, 22, NULL), DHT_RT_UPDATED);
  assert_true(dht_addr_eq(&dht_rt_find(rt, a.pk, a.id)->addr, &moved));
  assert_int_equal(dht_rt_find(rt, a.pk, a.id)->last_reply, 22);
  /* within its own prefix a contact may move (it does not count itself) */
  dht_addr port = addr4(40, 0, 0, 1, 3000);
  assert_int_equal(dht_rt_update(rt, p1.pk, &port, true, -1, 23, NULL), DHT_RT_UPDATED);
  assert_true(dht_addr_eq(&dht_rt_find(rt, p1.pk, p1.id)->addr, &port));
  /* v4 -> v6 */
  dht_addr v6 = addr6(0x2001, 0xdb8, 9, 9, 9);
  assert_int_equal(dht_rt_update(rt, a.pk, &v6, true, -1, 24, NULL), DHT_RT_UPDATED);
  assert_true(dht_addr_eq(&dht_rt_find(rt, a.pk, a.id)->addr, &v6));
  check(rt, self, 8);
  dht_rt_del(rt);
}

/* ---- closest ------------------------------------------------------------- */

static const uint8_t *sort_target;

typedef struct with_id {
  const dht_rt_contact *c;
  uint8_t id[DHT_ID_LEN]; /* BLAKE2b(c->pk) */
} with_id;

static int cmp_by_dist(const void *a, const void *b) {
  const with_id *x = a, *y = b;
  return dht_id_cmp_dist(x->id, y->id, sort_target);
}

static void closest_vs_brute(const dht_rt *rt, const uint8_t target[static DHT_ID_LEN],
                             bool only_good, int n) {
  static with_id all[8192];
  static const dht_rt_contact *got[8192];
  int m = 0;
  for (int i = 0; i < dht_rt_size(rt); i++) {
    const dht_rt_contact *c = dht_rt_at(rt, i);
    if (!only_good || (c->last_reply != 0 && c->fails == 0)) {
      all[m].c = c;
      id_of(c, all[m++].id);
    }
  }
  sort_target = target;
  qsort(all, (size_t)m, sizeof all[0], cmp_by_dist);
  int want = n < m ? n : m;
  if (want < 0)
    want = 0;
  int cnt = dht_rt_closest(rt, target, only_good, got, n);
  assert_int_equal(cnt, want);
  for (int i = 0; i < cnt; i++)
    assert_ptr_equal(got[i], all[i].c);
}

static void test_closest_brute_force(void **state) {
  (void)state;
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  dht_rt_settings s = settings(20, 4);
  dht_rt *rt = rt_make(self, &s);
  /* 20,000 offered: a table of a few hundred in about 11 buckets */
  for (int i = 0; i < 20000; i++) {
    tc c;
    tc_random(&c);
    bool confirmed = rng_next() % 10 != 0; /* some never answered */
    add(rt, &c, confirmed, 100 + i);
    if (rng_next() % 10 == 0) /* some failed once */
      dht_rt_failed(rt, c.pk, c.id, 100 + i);
  }
  /* a few deep ones, so that targets near self see several buckets */
  for (int cpl = 8; cpl < 14; cpl++) {
    tc c;
    tc_mined(&c, self, cpl);
    add(rt, &c, true, 30000 + cpl);
  }
  check(rt, self, 20);
  int size = dht_rt_size(rt);
  assert_true(size >= 150);
  printf("  closest: %d contacts in %d buckets\n", size, dht_rt_buckets(rt));

  static const int ns[] = {1, 2, 3, 8, 20, 32};
  uint8_t t[DHT_ID_LEN], rnd[DHT_ID_LEN];
  for (int it = 0; it < 1000; it++) {
    rng_fill(t, sizeof t);
    int n = ns[it % 6];
    closest_vs_brute(rt, t, false, n);
    closest_vs_brute(rt, t, true, n);
  }
  /* near self, at every depth (these exercise the deep groups) */
  for (int cpl = 0; cpl < 256; cpl++) {
    rng_fill(rnd, sizeof rnd);
    dht_id_in_bucket(t, self, cpl, rnd);
    closest_vs_brute(rt, t, false, 20);
    closest_vs_brute(rt, t, true, 7);
  }
  /* self, each contact's own id, and odd n */
  closest_vs_brute(rt, self, false, 20);
  closest_vs_brute(rt, self, true, 20);
  closest_vs_brute(rt, self, false, size);
  closest_vs_brute(rt, self, false, size + 50);
  closest_vs_brute(rt, t, false, size + 1);
  for (int i = 0; i < size; i += 7) {
    uint8_t id[DHT_ID_LEN];
    closest_vs_brute(rt, id_of(dht_rt_at(rt, i), id), false, 5);
  }
  const dht_rt_contact *out[4];
  assert_int_equal(dht_rt_closest(rt, t, false, out, 0), 0);
  assert_int_equal(dht_rt_closest(rt, t, false, out, -3), 0);
  dht_rt_del(rt);
}

static void test_only_good(void **state) {
  (void)state;
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  dht_rt_settings s = settings(20, 0);
  dht_rt *rt = rt_make(self, &s);
  tc good, unconf, failing;
  tc_random(&good);
  tc_random(&unconf);
  tc_random(&failing);
  add(rt, &good, true, 10);
  add(rt, &unconf, false, 10);
  add(rt, &failing, true, 10);
  dht_rt_failed(rt, failing.pk, failing.id, 20);
  const dht_rt_contact *out[8];
  assert_int_equal(dht_rt_closest(rt, self, false, out, 8), 3);
  assert_int_equal(dht_rt_closest(rt, self, true, out, 8), 1);
  assert_memory_equal(out[0]->pk, good.pk, DHT_PK_LEN);
  /* answering clears both marks */
  add(rt, &failing, true, 30);
  add(rt, &unconf, true, 30);
  assert_int_equal(dht_rt_closest(rt, self, true, out, 8), 3);
  dht_rt_del(rt);
}

/* ---- RTT, liveness, refresh ------------------------------------------ */

static void test_rtt_and_timeout(void **state) {
  (void)state;
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  dht_rt_settings s = settings(20, 0);
  dht_rt *rt = rt_make(self, &s);
  tc a;
  tc_random(&a);

  /* unknown RTT: the ceiling */
  assert_int_equal(add(rt, &a, false, 10), DHT_RT_ADDED);
  const dht_rt_contact *c = dht_rt_find(rt, a.pk, a.id);
  assert_int_equal(c->srtt_ms, 0);
  assert_int_equal(c->rttvar_ms, 0);
  assert_int_equal(dht_rt_timeout(c, 200, 2000), 2000);
  /* rtt < 0: no sample */
  assert_int_equal(dht_rt_update(rt, a.pk, &a.addr, true, -1, 20, NULL), DHT_RT_UPDATED);
  assert_int_equal(c->srtt_ms, 0);

  /* RFC 6298: first sample R gives srtt = R, rttvar = R / 2 */
  dht_rt_update(rt, a.pk, &a.addr, true, 100, 30, NULL);
  assert_int_equal(c->srtt_ms, 100);
  assert_int_equal(c->rttvar_ms, 50);
  assert_int_equal(dht_rt_timeout(c, 200, 2000), 300);
  /* then rttvar = 3/4 rttvar + 1/4 |srtt - R|, srtt = 7/8 srtt + 1/8 R */
  double srtt = 100, var = 50;
  for (int i = 0; i < 60; i++) {
    dht_ts r = 20 + (dht_ts)(rng_next() % 400);
    dht_rt_update(rt, a.pk, &a.addr, true, r, 40 + i, NULL);
    double dev = srtt > (double)r ? srtt - (double)r : (double)r - srtt;
    var = 0.75 * var + 0.25 * dev;
    srtt = 0.875 * srtt + 0.125 * (double)r;
    /* whole-ms rounding drifts by a few ms at most */
    assert_true(c->srtt_ms >= srtt - 6 && c->srtt_ms <= srtt + 6);
    assert_true(c->rttvar_ms >= var - 6 && c->rttvar_ms <= var + 6);
  }

  /* clamping */
  dht_rt_contact x;
  memset(&x, 0, sizeof x);
  x.srtt_ms = 10;
  x.rttvar_ms = 5;
  assert_int_equal(dht_rt_timeout(&x, 200, 2000), 200);
  x.srtt_ms = 300;
  x.rttvar_ms = 100;
  assert_int_equal(dht_rt_timeout(&x, 200, 2000), 700);
  x.srtt_ms = 5000;
  x.rttvar_ms = 2500;
  assert_int_equal(dht_rt_timeout(&x, 200, 2000), 2000);
  x.srtt_ms = 65535;
  x.rttvar_ms = 65535;
  assert_int_equal(dht_rt_timeout(&x, 200, 2000), 2000);

  /* a 0 ms sample (simulator) still makes the RTT known; huge ones clamp */
  tc b, d;
  tc_random(&b);
  tc_random(&d);
  dht_rt_update(rt, b.pk, &b.addr, true, 0, 50, NULL);
  c = dht_rt_find(rt, b.pk, b.id);
  assert_true(c->srtt_ms > 0);
  assert_int_equal(dht_rt_timeout(c, 200, 2000), 200);
  dht_rt_update(rt, d.pk, &d.addr, true, 1000000, 50, NULL);
  c = dht_rt_find(rt, d.pk, d.id);
  assert_int_equal(c->srtt_ms, 65535);
  assert_int_equal(dht_rt_timeout(c, 200, 2000), 2000);
  dht_rt_del(rt);
}

static void test_next_to_ping(void **state) {
  (void)state;
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  dht_rt_settings s = settings(20, 0); /* questionable after 1000 */
  dht_rt *rt = rt_make(self, &s);
  tc a, b, c;
  tc_random(&a);
  tc_random(&b);
  tc_random(&c);
  add(rt, &a, true, 100);
  add(rt, &b, true, 200);
  add(rt, &c, false, 300); /* never answered */

  const dht_rt_contact *p = dht_rt_next_to_ping(rt, 500);
  assert_non_null(p);
  assert_memory_equal(p->pk, c.pk, DHT_PK_LEN);
  dht_rt_pinged(rt, c.pk, c.id, 500);
  assert_null(dht_rt_next_to_ping(rt, 600));
  p = dht_rt_next_to_ping(rt, 1150);
  assert_non_null(p);
  assert_memory_equal(p->pk, a.pk, DHT_PK_LEN);
  dht_rt_pinged(rt, a.pk, a.id, 1150);
  p = dht_rt_next_to_ping(rt, 1200);
  assert_non_null(p);
  assert_memory_equal(p->pk, b.pk, DHT_PK_LEN);
  dht_rt_pinged(rt, b.pk, b.id, 1200);
  assert_null(dht_rt_next_to_ping(rt, 1300));
  /* c's ping went unanswered: due again after the interval */
  p = dht_rt_next_to_ping(rt, 1500);
  assert_non_null(p);
  assert_memory_equal(p->pk, c.pk, DHT_PK_LEN);
  /* an answer makes a contact good again */
  add(rt, &a, true, 1500);
  add(rt, &b, true, 1500);
  add(rt, &c, true, 1500);
  assert_null(dht_rt_next_to_ping(rt, 2000));
  /* pinging an unknown contact is harmless */
  tc u;
  tc_random(&u);
  dht_rt_pinged(rt, u.pk, u.id, 2000);
  assert_null(dht_rt_find(rt, u.pk, u.id));
  assert_null(dht_rt_next_to_ping(rt, 2000));
  dht_rt_del(rt);
}

/* BEP 5's rules: a request from a contact that answered before keeps it
 * good; a bucket full of good contacts that cannot split is settled. */
static void test_heard_and_settled(void **state) {
  (void)state;
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  dht_rt_settings s = settings(2, 2); /* questionable after 1000 */
  dht_rt *rt = rt_make(self, &s);
  tc a, b, c, d, far;
  tc_mined(&a, self, 0);
  tc_mined(&b, self, 0);
  tc_mined(&c, self, 1);
  tc_mined(&d, self, 1);
  tc_mined(&far, self, 0);

  /* one bucket (the last one can split): never settled */
  assert_false(dht_rt_is_settled(rt, far.id, 0));
  add(rt, &a, true, 100);
  add(rt, &b, true, 100);
  assert_false(dht_rt_is_settled(rt, far.id, 100));
  add(rt, &c, true, 100); /* splits: bucket 0 = {a, b} */
  add(rt, &d, true, 100);
  assert_int_equal(dht_rt_buckets(rt), 2);
  assert_true(dht_rt_is_settled(rt, far.id, 100));
  assert_false(dht_rt_is_settled(rt, c.id, 100)); /* the last bucket */

  /* a request from a at its address keeps it good; b goes questionable */
  dht_rt_heard(rt, a.pk, a.id, &a.addr, 1050);
  assert_int_equal(dht_rt_find(rt, a.pk, a.id)->last_reply, 1050);
  assert_false(dht_rt_is_settled(rt, far.id, 1100));
  const dht_rt_contact *p = dht_rt_next_to_ping(rt, 1100);
  assert_non_null(p);
  assert_memory_equal(p->pk, b.pk, DHT_PK_LEN);
  dht_rt_heard(rt, b.pk, b.id, &b.addr, 1100);
  assert_true(dht_rt_is_settled(rt, far.id, 1100));

  /* not from another address, not for a contact with failures, not for
   * one that never answered, not for an unknown id */
  dht_addr other = addr4(198, 51, 100, 7, 4000);
  dht_rt_heard(rt, a.pk, a.id, &other, 1200);
  assert_int_equal(dht_rt_find(rt, a.pk, a.id)->last_reply, 1050);
  assert_false(dht_rt_failed(rt, b.pk, b.id, 1200));
  dht_rt_heard(rt, b.pk, b.id, &b.addr, 1300);
  assert_int_equal(dht_rt_find(rt, b.pk, b.id)->last_reply, 1100);
  assert_false(dht_rt_is_settled(rt, far.id, 1300)); /* b has a failure */
  tc u;
  tc_mined(&u, self, 1);
  dht_rt_remove(rt, d.pk, d.id);
  add(rt, &u, false, 1300);
  dht_rt_heard(rt, u.pk, u.id, &u.addr, 1400);
  assert_int_equal(dht_rt_find(rt, u.pk, u.id)->last_reply, 0);
  dht_rt_heard(rt, far.pk, far.id, &far.addr, 1400);
  assert_null(dht_rt_find(rt, far.pk, far.id));
  check(rt, self, 2);
  dht_rt_del(rt);
}

static void test_stale_buckets(void **state) {
  (void)state;
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  dht_rt_settings s = settings(2, 0);
  dht_rt *rt = rt_make(self, &s);
  assert_int_equal(dht_rt_stale_bucket(rt, 50, 100), -1);
  assert_int_equal(dht_rt_stale_bucket(rt, 100, 100), 0);
  dht_rt_touch_bucket(rt, 0, 100);
  assert_int_equal(dht_rt_stale_bucket(rt, 150, 100), -1);
  dht_rt_touch_bucket(rt, 5, 10000); /* no such bucket: ignored */
  dht_rt_touch_bucket(rt, -1, 10000);

  /* an added contact refreshes its bucket */
  tc a, b, c;
  tc_mined(&a, self, 0);
  tc_mined(&b, self, 0);
  tc_mined(&c, self, 1);
  add(rt, &a, true, 500);
  assert_int_equal(dht_rt_stale_bucket(rt, 550, 100), -1);
  assert_int_equal(dht_rt_stale_bucket(rt, 600, 100), 0);
  add(rt, &b, true, 600);
  add(rt, &c, true, 700); /* splits; c then refreshes bucket 1 */
  assert_int_equal(dht_rt_buckets(rt), 2);
  assert_int_equal(dht_rt_stale_bucket(rt, 750, 100), 0); /* oldest first */
  dht_rt_touch_bucket(rt, 0, 750);
  assert_int_equal(dht_rt_stale_bucket(rt, 799, 100), -1); /* bucket 1: 700 */
  assert_int_equal(dht_rt_stale_bucket(rt, 800, 100), 1);
  /* an answer refreshes too; hearsay does not */
  add(rt, &c, false, 900);
  assert_int_equal(dht_rt_stale_bucket(rt, 900, 100), 1);
  add(rt, &c, true, 900);
  assert_int_equal(dht_rt_stale_bucket(rt, 900, 100), 0);
  dht_rt_del(rt);
}

static void test_remove_and_at(void **state) {
  (void)state;
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  dht_rt_settings s = settings(2, 2);
  dht_rt *rt = rt_make(self, &s);
  tc b[2], r[2];
  for (int i = 0; i < 2; i++) {
    tc_mined(&b[i], self, 0);
    tc_mined(&r[i], self, 0);
  }
  add(rt, &b[0], true, 10);
  add(rt, &b[1], true, 11);
  assert_int_equal(add(rt, &r[0], true, 12), DHT_RT_CACHED);
  assert_int_equal(add(rt, &r[1], true, 13), DHT_RT_CACHED);
  assert_memory_equal(dht_rt_at(rt, 0)->pk, b[0].pk, DHT_PK_LEN);
  assert_memory_equal(dht_rt_at(rt, 1)->pk, b[1].pk, DHT_PK_LEN);

  assert_true(dht_rt_remove(rt, r[1].pk, r[1].id)); /* from the cache */
  assert_false(dht_rt_remove(rt, r[1].pk, r[1].id));
  assert_true(dht_rt_remove(rt, b[0].pk, b[0].id)); /* from the bucket: r0 moves up */
  assert_int_equal(dht_rt_size(rt), 2);
  assert_non_null(dht_rt_find(rt, r[0].pk, r[0].id));
  assert_memory_equal(dht_rt_at(rt, 0)->pk, b[1].pk, DHT_PK_LEN);
  assert_memory_equal(dht_rt_at(rt, 1)->pk, r[0].pk, DHT_PK_LEN);
  tc u;
  tc_random(&u);
  assert_false(dht_rt_remove(rt, u.pk, u.id));
  check(rt, self, 2);
  dht_rt_del(rt);
}

/* ---- allocation ---------------------------------------------------------- */

typedef struct counting {
  long calls;   /* allocations so far (malloc, and realloc that may move) */
  long fail_at; /* fail this call (1-based); 0 = never */
  long live;    /* blocks not yet freed */
  size_t bytes; /* bytes requested by live blocks (for the size report) */
} counting;

typedef struct blk {
  size_t n;
  max_align_t pad[];
} blk;

static void *c_malloc(void *ctx, size_t n) {
  counting *a = ctx;
  if (++a->calls == a->fail_at)
    return NULL;
  blk *b = malloc(sizeof *b + n);
  if (!b)
    return NULL;
  b->n = n;
  a->live++;
  a->bytes += n;
  return b->pad;
}

static void c_free(void *ctx, void *p) {
  counting *a = ctx;
  if (!p)
    return;
  blk *b = (blk *)((char *)p - offsetof(blk, pad));
  a->live--;
  a->bytes -= b->n;
  free(b);
}

static void *c_realloc(void *ctx, void *p, size_t n) {
  counting *a = ctx;
  if (!p)
    return c_malloc(ctx, n);
  if (++a->calls == a->fail_at)
    return NULL;
  blk *b = (blk *)((char *)p - offsetof(blk, pad));
  size_t old = b->n;
  blk *nb = realloc(b, sizeof *nb + n);
  if (!nb)
    return NULL;
  nb->n = n;
  a->bytes = a->bytes - old + n;
  return nb->pad;
}

enum { SWEEP_N = 1200 };

/* What the call that failed was doing, judged by its retry: */
enum {
  FAILED_SPLIT = 1, /* splitting (the retry made buckets) */
  FAILED_ADD = 2,   /* growing a bucket for a contact */
  FAILED_CACHE = 4, /* growing a bucket for a cache entry */
};

/* Runs the sweep scenario on a table of buckets of k and caches of rc, with
 * allocation fail_at failing; returns the allocations made, and the
 * resulting table's contacts in out_ids; *failed gets a FAILED_ flag. */
static long sweep_run(const uint8_t self[static DHT_ID_LEN], const tc *cs, int k, int rc,
                      long fail_at, uint8_t (*out_ids)[DHT_ID_LEN], int *out_n, int *out_nb,
                      int *failed) {
  counting a = {0, fail_at, 0, 0};
  dht_mem mem = {&a, c_malloc, c_realloc, c_free};
  dht_rt_settings s = settings(k, rc);
  *failed = 0;
  dht_rt *rt = NULL;
  int r = dht_rt_new(&rt, self, &s, &mem);
  if (r == DHT_ERR_NOMEM) {
    assert_null(rt);
    assert_int_equal(a.live, 0);
    *out_n = -1;
    return a.calls;
  }
  assert_int_equal(r, 0);
  int nomem = 0;
  for (int i = 0; i < SWEEP_N; i++) {
    int before = dht_rt_size(rt), nb = dht_rt_buckets(rt);
    r = dht_rt_update(rt, cs[i].pk, &cs[i].addr, true, 10, 100 + i, NULL);
    if (r == DHT_ERR_NOMEM) {
      nomem++;
      assert_int_equal(dht_rt_check(rt), 0);
      assert_int_equal(dht_rt_size(rt), before);
      assert_null(dht_rt_find(rt, cs[i].pk, cs[i].id));
      /* the allocator fails once: the same call now goes through */
      r = dht_rt_update(rt, cs[i].pk, &cs[i].addr, true, 10, 100 + i, NULL);
      *failed = dht_rt_buckets(rt) > nb ? FAILED_SPLIT
                : r == DHT_RT_ADDED     ? FAILED_ADD
                : r == DHT_RT_CACHED    ? FAILED_CACHE
                                        : 0;
    }
    assert_true(r >= 0);
  }
  assert_int_equal(nomem, fail_at > 3 && fail_at <= a.calls ? 1 : 0);
  check(rt, self, k);
  *out_n = dht_rt_size(rt);
  *out_nb = dht_rt_buckets(rt);
  for (int i = 0; i < *out_n; i++)
    id_of(dht_rt_at(rt, i), out_ids[i]);
  dht_rt_del(rt);
  assert_int_equal(a.live, 0);
  assert_int_equal(a.bytes, 0);
  return a.calls;
}

/* Every allocation of a scenario fails in turn: the call that made it
 * returns DHT_ERR_NOMEM with the table unchanged, and a retry ends in the
 * same table as a run without failures.  Two shapes: k = 2 and rc = 1 (many
 * splits; a bucket is allocated at its full 3 slots at once), and k = 6 and
 * rc = 5 (a bucket grows 0 -> 4 -> 8 -> 11 slots, for contacts and for cache
 * entries). */
static void sweep(int k, int rc, int min_buckets, int want_failed) {
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  static tc cs[SWEEP_N];
  for (int i = 0; i < SWEEP_N; i++)
    tc_random(&cs[i]);
  /* three contacts at each cpl 8..11, spread out: with k = 2 the table must
   * split to at least 12 buckets, so the bucket array grows past 8 */
  for (int i = 0; i < 12; i++)
    tc_mined(&cs[50 + 97 * i], self, 8 + i / 3);
  static uint8_t ref[512][DHT_ID_LEN], got[512][DHT_ID_LEN];
  int ref_n, ref_nb, n, nb, failed = 0, all_failed = 0;
  long total = sweep_run(self, cs, k, rc, 0, ref, &ref_n, &ref_nb, &failed);
  assert_int_equal(failed, 0);
  assert_true(ref_nb >= min_buckets);
  assert_true(total > 10);
  for (long f = 1; f <= total; f++) {
    sweep_run(self, cs, k, rc, f, got, &n, &nb, &failed);
    all_failed |= failed;
    if (n < 0) {
      assert_true(f <= 3); /* dht_rt_new's own allocations */
      continue;
    }
    /* a failed-then-retried call ends in the same table */
    assert_int_equal(n, ref_n);
    assert_int_equal(nb, ref_nb);
    assert_memory_equal(got, ref, (size_t)n * DHT_ID_LEN);
  }
  assert_int_equal(all_failed, want_failed); /* every allocation site failed */
}

static void test_alloc_failures(void **state) {
  (void)state;
  sweep(2, 1, 12, FAILED_SPLIT | FAILED_ADD); /* the bucket array had to grow */
  sweep(6, 5, 6, FAILED_SPLIT | FAILED_ADD | FAILED_CACHE);
}

/* What a table costs: a young one that has heard of a few dozen nodes, and
 * one of a large network (every node of a 100,000-node network offered,
 * more than any real node learns).  A bucket costs a 32-byte header and
 * 100 bytes per slot (an 88-byte contact, its 8-byte ID prefix and 4-byte
 * prefix key), and holds at most GROW_STEP - 1 = 3 slots it does not use. */
static void test_memory(void **state) {
  (void)state;
  counting a = {0, 0, 0, 0};
  dht_mem mem = {&a, c_malloc, c_realloc, c_free};
  uint8_t self[DHT_ID_LEN];
  rng_fill(self, sizeof self);
  dht_rt_settings s = settings(20, 8);
  dht_rt *rt = NULL;
  assert_int_equal(dht_rt_new(&rt, self, &s, &mem), 0);
  size_t empty = a.bytes;
  int cached = 0; /* an upper bound on the cache entries */
  for (int i = 0; i < 40; i++) {
    tc c;
    tc_random(&c);
    cached += add(rt, &c, true, 10 + i) == DHT_RT_CACHED;
  }
  int nb = dht_rt_buckets(rt), size = dht_rt_size(rt);
  printf("  memory: empty %zu B; 40 nodes offered: %d contacts, %d buckets, %zu B\n", empty, size,
         nb, a.bytes);
  assert_true(a.bytes <= empty + (size_t)(nb - 1) * 32 + (size_t)(size + cached + 3 * nb) * 100);
  for (int i = 40; i < 100000; i++) {
    tc c;
    tc_random(&c);
    add(rt, &c, true, 10 + i);
  }
  nb = dht_rt_buckets(rt);
  printf("  memory: 100k nodes offered: %d contacts, %d buckets, %zu B "
         "(%zu B per bucket of %d + %d slots)\n",
         dht_rt_size(rt), nb, a.bytes, (a.bytes - empty) / (size_t)(nb > 1 ? nb - 1 : 1), s.k,
         s.replacement_cache);
  /* log2(100000 / 20) ~ 12.3: about 13-15 buckets, never hundreds */
  assert_true(nb >= 10 && nb <= 20);
  /* every bucket full, and every cache but the last bucket's: 2,824 B per
   * bucket of 28 slots (3,720 B when a contact held its ID) */
  assert_true(a.bytes < (size_t)nb * 2850 + 1024);
  dht_rt_del(rt);
  assert_int_equal(a.live, 0);
}

int main(void) {
  if (sodium_init() < 0)
    return 1;
  const char *env = getenv("ROOST_SEED");
  uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
  printf("test_rt: ROOST_SEED=%llu\n", (unsigned long long)seed);
  rng_state = seed;

  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_invalid),
      cmocka_unit_test(test_self_rejected),
      cmocka_unit_test(test_self_prefix),
      cmocka_unit_test(test_add_update_find),
      cmocka_unit_test(test_splits_random),
      cmocka_unit_test(test_crafted_buckets),
      cmocka_unit_test(test_bucket_cap_and_cache),
      cmocka_unit_test(test_cache_policy),
      cmocka_unit_test(test_ping_before_evict),
      cmocka_unit_test(test_good_never_evicted),
      cmocka_unit_test(test_failed_contact_replaced),
      cmocka_unit_test(test_diversity_bucket_and_table),
      cmocka_unit_test(test_diversity_exemptions),
      cmocka_unit_test(test_diversity_cache),
      cmocka_unit_test(test_addr_update),
      cmocka_unit_test(test_closest_brute_force),
      cmocka_unit_test(test_only_good),
      cmocka_unit_test(test_rtt_and_timeout),
      cmocka_unit_test(test_next_to_ping),
      cmocka_unit_test(test_heard_and_settled),
      cmocka_unit_test(test_stale_buckets),
      cmocka_unit_test(test_remove_and_at),
      cmocka_unit_test(test_alloc_failures),
      cmocka_unit_test(test_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

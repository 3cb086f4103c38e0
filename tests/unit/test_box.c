/*
 * test_box.c - the datagram envelope (dht_box.c): seal/open round trips
 * between two identities in both directions and at every body size class;
 * the header layout; a flipped bit anywhere in the nonce or ciphertext, a
 * truncated datagram, a wrong key or a short output buffer fails to open;
 * unusable sender keys (all-zero, the identity point, the other small-order
 * points, a non-canonical encoding, points off the curve, a valid key plus a
 * torsion component) give NULL from dht_box_key and DHT_ERR_CRYPTO from
 * dht_box_seal, and are never cached; the hit/miss counters; eviction from a
 * cache smaller than the set of peers (keys are recomputed and every box
 * still opens); the size constants (73 bytes of overhead, DHT_MAX_BODY fills
 * a 1232-byte datagram exactly); allocation failure in dht_box_init.
 *
 * Identities and nonces come from a seeded generator; the seed is printed and
 * ROOST_SEED=<n> replays a run.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <string.h>

#include "dht_int.h"
#include "testutil.h"

static uint64_t g_seed;

/* A box for identity (seed, idx) with a cache of `entries` keys. */
static void box_for(dht_box *b, dht_identity *id, uint64_t idx, int entries, const dht_mem *mem) {
  uint8_t hkey[16];
  tu_rng r;
  tu_identity(id, g_seed, idx);
  tu_rng_init(&r, g_seed, 0xb0c5000u + idx);
  tu_rng_bytes(&r, hkey, sizeof hkey);
  assert_int_equal(dht_box_init(b, id, entries, hkey, mem), 0);
}

/* Seals body from `from` to `to_pk`, then opens it as `to` (which must know
 * the sender only by the key in the header) and checks the body. */
static void roundtrip(dht_box *from, dht_box *to, const uint8_t to_pk[DHT_PK_LEN],
                      const uint8_t *body, size_t len, tu_rng *r) {
  uint8_t nonce[DHT_NONCE_LEN], pkt[DHT_MAX_PKT], out[DHT_MAX_BODY];
  tu_rng_bytes(r, nonce, sizeof nonce);
  dht_ssize n = dht_box_seal(from, to_pk, nonce, body, len, pkt, sizeof pkt);
  assert_int_equal(n, (dht_ssize)(len + DHT_OVERHEAD));
  /* header: version, sender key, nonce */
  assert_int_equal(pkt[0], DHT_VERSION);
  assert_memory_equal(pkt + 1, from->pk, DHT_PK_LEN);
  assert_memory_equal(pkt + 1 + DHT_PK_LEN, nonce, DHT_NONCE_LEN);
  const uint8_t *k = dht_box_key(to, pkt + 1);
  assert_non_null(k);
  dht_ssize m = dht_box_open(k, pkt, (size_t)n, out, len);
  assert_int_equal(m, (dht_ssize)len);
  if (len)
    assert_memory_equal(out, body, len);
}

static void test_roundtrip(void **state) {
  (void)state;
  dht_box a, b;
  dht_identity ia, ib;
  box_for(&a, &ia, 1, 16, &dht_mem_libc);
  box_for(&b, &ib, 2, 16, &dht_mem_libc);
  tu_rng r;
  tu_rng_init(&r, g_seed, 1);
  static const size_t sizes[] = {0, 1, 2, 31, 100, 500, DHT_MAX_BODY - 1, DHT_MAX_BODY};
  uint8_t body[DHT_MAX_BODY];
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    tu_rng_bytes(&r, body, sizes[i]);
    roundtrip(&a, &b, ib.pk, body, sizes[i], &r);
    roundtrip(&b, &a, ia.pk, body, sizes[i], &r);
  }
  /* the shared key is symmetric, and the entry carries the peer's node ID */
  uint8_t kab[DHT_BOX_ENTRY_LEN], kba[DHT_BOX_ENTRY_LEN], want[DHT_ID_LEN];
  memcpy(kab, dht_box_key(&a, ib.pk), sizeof kab);
  memcpy(kba, dht_box_key(&b, ia.pk), sizeof kba);
  assert_memory_equal(kab, kba, 32);
  dht_id_from_pk(want, ib.pk);
  assert_memory_equal(kab + 32, want, DHT_ID_LEN);
  dht_id_from_pk(want, ia.pk);
  assert_memory_equal(kba + 32, want, DHT_ID_LEN);
  /* the same body under two nonces gives two different ciphertexts */
  uint8_t n1[DHT_NONCE_LEN] = {1}, n2[DHT_NONCE_LEN] = {2}, p1[200], p2[200];
  memset(body, 7, 50);
  assert_int_equal(dht_box_seal(&a, ib.pk, n1, body, 50, p1, sizeof p1), 50 + DHT_OVERHEAD);
  assert_int_equal(dht_box_seal(&a, ib.pk, n2, body, 50, p2, sizeof p2), 50 + DHT_OVERHEAD);
  assert_memory_not_equal(p1 + DHT_HDR_LEN, p2 + DHT_HDR_LEN, 50 + DHT_MAC_LEN);
  dht_box_free(&a, &dht_mem_libc);
  dht_box_free(&b, &dht_mem_libc);
}

static void test_tamper(void **state) {
  (void)state;
  dht_box a, b, c;
  dht_identity ia, ib, ic;
  box_for(&a, &ia, 1, 16, &dht_mem_libc);
  box_for(&b, &ib, 2, 16, &dht_mem_libc);
  box_for(&c, &ic, 3, 16, &dht_mem_libc);
  tu_rng r;
  tu_rng_init(&r, g_seed, 2);
  uint8_t nonce[DHT_NONCE_LEN], body[300], pkt[DHT_MAX_PKT], out[DHT_MAX_BODY];
  tu_rng_bytes(&r, nonce, sizeof nonce);
  tu_rng_bytes(&r, body, sizeof body);
  dht_ssize n = dht_box_seal(&a, ib.pk, nonce, body, sizeof body, pkt, sizeof pkt);
  assert_int_equal(n, (dht_ssize)(sizeof body + DHT_OVERHEAD));
  uint8_t key[32];
  memcpy(key, dht_box_key(&b, ia.pk), 32);
  assert_int_equal(dht_box_open(key, pkt, (size_t)n, out, sizeof out), (dht_ssize)sizeof body);

  /* every bit of the nonce and of the ciphertext (MAC included) matters */
  for (size_t i = 1 + DHT_PK_LEN; i < (size_t)n; i++) {
    for (int bit = 0; bit < 8; bit++) {
      pkt[i] ^= (uint8_t)(1u << bit);
      assert_int_equal(dht_box_open(key, pkt, (size_t)n, out, sizeof out), DHT_ERR_CRYPTO);
      pkt[i] ^= (uint8_t)(1u << bit);
    }
  }
  /* any flipped bit of the sender key: not a usable key, or the wrong shared
   * key -- including the sign bit (byte 31, 0x80) that the Ed25519 to
   * X25519 conversion ignores (a regression: that flip used to open) */
  for (size_t i = 1; i < 1 + DHT_PK_LEN; i++) {
    for (int bit = 0; bit < 8; bit++) {
      pkt[i] ^= (uint8_t)(1u << bit);
      const uint8_t *k = dht_box_key(&b, pkt + 1);
      if (k)
        assert_int_equal(dht_box_open(k, pkt, (size_t)n, out, sizeof out), DHT_ERR_CRYPTO);
      pkt[i] ^= (uint8_t)(1u << bit);
    }
  }
  /* truncated at every length, and one byte too long */
  for (size_t len = 0; len < (size_t)n; len++)
    assert_int_equal(dht_box_open(key, pkt, len, out, sizeof out), DHT_ERR_CRYPTO);
  pkt[n] = 0;
  assert_int_equal(dht_box_open(key, pkt, (size_t)n + 1, out, sizeof out), DHT_ERR_CRYPTO);
  /* wrong keys: a third party's key with the sender, the receiver's key for
   * another sender, all zeros */
  const uint8_t *kc = dht_box_key(&c, ia.pk);
  assert_non_null(kc);
  assert_int_equal(dht_box_open(kc, pkt, (size_t)n, out, sizeof out), DHT_ERR_CRYPTO);
  const uint8_t *kbc = dht_box_key(&b, ic.pk);
  assert_non_null(kbc);
  assert_int_equal(dht_box_open(kbc, pkt, (size_t)n, out, sizeof out), DHT_ERR_CRYPTO);
  uint8_t zero[32] = {0};
  assert_int_equal(dht_box_open(zero, pkt, (size_t)n, out, sizeof out), DHT_ERR_CRYPTO);
  /* a box sealed for C does not open for B */
  n = dht_box_seal(&a, ic.pk, nonce, body, sizeof body, pkt, sizeof pkt);
  assert_true(n > 0);
  assert_int_equal(dht_box_open(key, pkt, (size_t)n, out, sizeof out), DHT_ERR_CRYPTO);
  assert_int_equal(dht_box_open(dht_box_key(&c, ia.pk), pkt, (size_t)n, out, sizeof out),
                   (dht_ssize)sizeof body);
  /* an output buffer one byte short is refused, not overrun (ASan) */
  uint8_t *tight = test_malloc(sizeof body - 1);
  assert_int_equal(dht_box_open(dht_box_key(&c, ia.pk), pkt, (size_t)n, tight, sizeof body - 1),
                   DHT_ERR_CRYPTO);
  test_free(tight);
  dht_box_free(&a, &dht_mem_libc);
  dht_box_free(&b, &dht_mem_libc);
  dht_box_free(&c, &dht_mem_libc);
}

/* 8 x p (by repeated addition) == the identity: p has order dividing 8. */
static void check_small_order(const uint8_t p[32], int order) {
  static const uint8_t ident[32] = {1};
  uint8_t acc[32];
  memcpy(acc, p, 32);
  int k = 1;
  while (memcmp(acc, ident, 32) != 0) {
    assert_true(k < 8);
    assert_int_equal(crypto_core_ed25519_add(acc, acc, p), 0);
    k++;
  }
  assert_int_equal(k, order);
}

static void expect_unusable(dht_box *b, const uint8_t pk[DHT_PK_LEN]) {
  uint64_t misses = b->misses, hits = b->hits;
  assert_null(dht_box_key(b, pk));
  /* not cached: asking again is another miss */
  assert_null(dht_box_key(b, pk));
  assert_int_equal(b->misses, misses + 2);
  assert_int_equal(b->hits, hits);
  uint8_t nonce[DHT_NONCE_LEN] = {0}, body[10] = {0}, pkt[100];
  assert_int_equal(dht_box_seal(b, pk, nonce, body, sizeof body, pkt, sizeof pkt), DHT_ERR_CRYPTO);
}

static void test_bad_keys(void **state) {
  (void)state;
  dht_box a;
  dht_identity ia;
  box_for(&a, &ia, 1, 16, &dht_mem_libc);

  uint8_t pk[32];
  memset(pk, 0, 32); /* y = 0: a point of order 4 */
  check_small_order(pk, 4);
  expect_unusable(&a, pk);
  pk[0] = 1; /* y = 1: the identity point */
  check_small_order(pk, 1);
  expect_unusable(&a, pk);
  /* the two order-8 points (x > 0 and x < 0 of the same y) */
  static const uint8_t o8[2][32] = {
      {0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4,
       0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6,
       0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05},
      {0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b,
       0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39,
       0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a},
  };
  for (int i = 0; i < 2; i++) {
    check_small_order(o8[i], 8);
    expect_unusable(&a, o8[i]);
  }
  /* y = p - 1 (order 2), and the non-canonical encodings y = p, p + 1 */
  memset(pk, 0xff, 32);
  pk[31] = 0x7f;
  pk[0] = 0xec;
  check_small_order(pk, 2);
  expect_unusable(&a, pk);
  pk[0] = 0xed;
  expect_unusable(&a, pk);
  pk[0] = 0xee;
  expect_unusable(&a, pk);

  /* a valid key plus a torsion component: on the curve, wrong subgroup */
  uint8_t mixed[32];
  assert_int_equal(crypto_core_ed25519_add(mixed, ia.pk, o8[0]), 0);
  assert_int_equal(crypto_core_ed25519_is_valid_point(mixed), 0);
  expect_unusable(&a, mixed);

  /* random encodings that are not valid points (off the curve, or not in
   * the prime-order subgroup): all refused; valid ones all accepted */
  tu_rng r;
  tu_rng_init(&r, g_seed, 3);
  int bad = 0, good = 0;
  while (bad < 50 || good < 3) {
    tu_rng_bytes(&r, pk, 32);
    if (crypto_core_ed25519_is_valid_point(pk)) {
      good++;
      assert_non_null(dht_box_key(&a, pk));
      continue;
    }
    bad++;
    expect_unusable(&a, pk);
  }
  /* a real identity's key is fine */
  dht_identity ib;
  tu_identity(&ib, g_seed, 99);
  assert_non_null(dht_box_key(&a, ib.pk));
  dht_box_free(&a, &dht_mem_libc);
}

static void test_cache_counters(void **state) {
  (void)state;
  dht_box a, b, c;
  dht_identity ia, ib, ic;
  box_for(&a, &ia, 1, 16, &dht_mem_libc);
  box_for(&b, &ib, 2, 16, &dht_mem_libc);
  box_for(&c, &ic, 3, 16, &dht_mem_libc);
  tu_rng r;
  tu_rng_init(&r, g_seed, 4);
  assert_int_equal(a.hits, 0);
  assert_int_equal(a.misses, 0);
  assert_non_null(dht_box_key(&a, ib.pk));
  assert_int_equal(a.misses, 1);
  assert_int_equal(a.hits, 0);
  assert_non_null(dht_box_key(&a, ib.pk));
  assert_int_equal(a.misses, 1);
  assert_int_equal(a.hits, 1);
  /* a seal to a known peer is a hit, to a new one a miss */
  uint8_t body[20] = {0};
  roundtrip(&a, &b, ib.pk, body, sizeof body, &r); /* a: hit; b: miss */
  assert_int_equal(a.hits, 2);
  assert_int_equal(a.misses, 1);
  assert_int_equal(b.misses, 1);
  assert_int_equal(b.hits, 0);
  roundtrip(&a, &c, ic.pk, body, sizeof body, &r);
  assert_int_equal(a.hits, 2);
  assert_int_equal(a.misses, 2);
  /* b learnt a's key when it opened: its reply is a hit on both sides */
  roundtrip(&b, &a, ia.pk, body, sizeof body, &r);
  assert_int_equal(b.misses, 1);
  assert_int_equal(b.hits, 1);
  assert_int_equal(a.hits, 3);
  roundtrip(&a, &b, ib.pk, body, sizeof body, &r);
  assert_int_equal(a.hits, 4);
  assert_int_equal(a.misses, 2);
  assert_int_equal(b.hits, 2);
  assert_int_equal(b.misses, 1);
  dht_box_free(&a, &dht_mem_libc);
  dht_box_free(&b, &dht_mem_libc);
  dht_box_free(&c, &dht_mem_libc);
}

#define NPEERS 10

static void test_cache_eviction(void **state) {
  (void)state;
  tu_alloc al;
  memset(&al, 0, sizeof al);
  dht_mem mem = tu_alloc_mem(&al);
  dht_box a, p[NPEERS];
  dht_identity ia, ip[NPEERS];
  box_for(&a, &ia, 1, 4, &mem); /* one set of four ways */
  assert_int_equal(a.keys.nsets, 1);
  for (int i = 0; i < NPEERS; i++)
    box_for(&p[i], &ip[i], 100 + (uint64_t)i, 16, &mem);
  tu_rng r;
  tu_rng_init(&r, g_seed, 5);
  uint8_t body[64];
  /* ten peers in turn through four entries: every access evicts, every key
   * is recomputed, every datagram still opens at its peer */
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < NPEERS; i++) {
      tu_rng_bytes(&r, body, sizeof body);
      roundtrip(&a, &p[i], ip[i].pk, body, sizeof body, &r);
      roundtrip(&p[i], &a, ia.pk, body, sizeof body, &r);
    }
  }
  /* per round per peer: one miss on seal, then a hit on the key lookup for
   * the reply (the entry was just made) */
  assert_int_equal(a.misses, 3 * NPEERS);
  assert_int_equal(a.hits, 3 * NPEERS);
  /* the four most recent peers are cached: hits */
  uint64_t h = a.hits, m = a.misses;
  for (int i = NPEERS - 1; i >= NPEERS - 4; i--)
    assert_non_null(dht_box_key(&a, ip[i].pk));
  assert_int_equal(a.hits, h + 4);
  assert_int_equal(a.misses, m);
  /* an older one is not */
  assert_non_null(dht_box_key(&a, ip[0].pk));
  assert_int_equal(a.misses, m + 1);

  /* a bigger cache (8 entries, 2 sets) and many peers: hits + misses add up,
   * and the most recently used key is always a hit */
  dht_box big;
  dht_identity ibig;
  box_for(&big, &ibig, 2, 8, &mem);
  assert_int_equal(big.keys.nsets, 2);
  for (int k = 0; k < 200; k++) {
    int i = (int)tu_rng_below(&r, NPEERS);
    tu_rng_bytes(&r, body, sizeof body);
    roundtrip(&big, &p[i], ip[i].pk, body, sizeof body, &r);
    uint64_t hh = big.hits;
    assert_non_null(dht_box_key(&big, ip[i].pk));
    assert_int_equal(big.hits, hh + 1);
  }
  assert_int_equal(big.hits + big.misses, 400);
  assert_true(big.misses >= NPEERS - 8);
  dht_box_free(&big, &mem);

  dht_box_free(&a, &mem);
  for (int i = 0; i < NPEERS; i++)
    dht_box_free(&p[i], &mem);
  assert_int_equal(al.live, 0);
}

static void test_sizes(void **state) {
  (void)state;
  assert_int_equal(DHT_OVERHEAD, 73);
  assert_int_equal(DHT_HDR_LEN, 1 + DHT_PK_LEN + DHT_NONCE_LEN);
  assert_int_equal(DHT_MAC_LEN, crypto_box_MACBYTES);
  assert_int_equal(DHT_NONCE_LEN, crypto_box_NONCEBYTES);
  assert_int_equal(DHT_MAX_BODY, 1159);
  assert_int_equal(DHT_MAX_BODY + DHT_OVERHEAD, DHT_MAX_PKT);
  assert_int_equal(DHT_MAX_PKT, 1232);

  dht_box a, b;
  dht_identity ia, ib;
  box_for(&a, &ia, 1, 16, &dht_mem_libc);
  box_for(&b, &ib, 2, 16, &dht_mem_libc);
  uint8_t nonce[DHT_NONCE_LEN] = {9};
  static uint8_t body[DHT_MAX_BODY + 1], out[DHT_MAX_BODY];
  memset(body, 0x5a, sizeof body);
  /* exactly DHT_MAX_PKT bytes for the largest body (ASan checks the bound) */
  uint8_t *pkt = test_malloc(DHT_MAX_PKT);
  assert_int_equal(dht_box_seal(&a, ib.pk, nonce, body, DHT_MAX_BODY, pkt, DHT_MAX_PKT),
                   DHT_MAX_PKT);
  assert_int_equal(dht_box_open(dht_box_key(&b, ia.pk), pkt, DHT_MAX_PKT, out, sizeof out),
                   DHT_MAX_BODY);
  assert_memory_equal(out, body, DHT_MAX_BODY);
  /* one byte more than a datagram can carry, or one byte less room */
  assert_int_equal(dht_box_seal(&a, ib.pk, nonce, body, DHT_MAX_BODY + 1, pkt, DHT_MAX_PKT),
                   DHT_ERR_NOBUF);
  assert_int_equal(dht_box_seal(&a, ib.pk, nonce, body, DHT_MAX_BODY, pkt, DHT_MAX_PKT - 1),
                   DHT_ERR_NOBUF);
  /* a body too big for a datagram is refused however big the buffer */
  static uint8_t roomy[2 * DHT_MAX_PKT];
  assert_int_equal(dht_box_seal(&a, ib.pk, nonce, body, DHT_MAX_BODY + 1, roomy, sizeof roomy),
                   DHT_ERR_NOBUF);
  assert_int_equal(dht_box_seal(&a, ib.pk, nonce, body, 10, pkt, 10 + DHT_OVERHEAD - 1),
                   DHT_ERR_NOBUF);
  assert_int_equal(dht_box_seal(&a, ib.pk, nonce, body, 10, pkt, 10 + DHT_OVERHEAD),
                   10 + DHT_OVERHEAD);
  test_free(pkt);
  dht_box_free(&a, &dht_mem_libc);
  dht_box_free(&b, &dht_mem_libc);
}

static void test_init_free(void **state) {
  (void)state;
  dht_identity id;
  tu_identity(&id, g_seed, 7);
  uint8_t hkey[16] = {1, 2, 3};
  /* every allocation of init failing in turn: an error, nothing leaked */
  for (uint64_t n = 1;; n++) {
    tu_alloc al;
    memset(&al, 0, sizeof al);
    al.fail_at = n;
    dht_mem mem = tu_alloc_mem(&al);
    dht_box b;
    int rv = dht_box_init(&b, &id, 64, hkey, &mem);
    if (rv == 0) {
      assert_int_equal(al.failed, 0);
      assert_true(n > 1);
      dht_box_free(&b, &mem);
      assert_int_equal(al.live, 0);
      break;
    }
    assert_int_equal(rv, DHT_ERR_NOMEM);
    assert_int_equal(al.live, 0);
  }
  /* free wipes the secret */
  dht_box b;
  assert_int_equal(dht_box_init(&b, &id, 4, hkey, &dht_mem_libc), 0);
  uint8_t zero[32] = {0};
  assert_memory_not_equal(b.xsk, zero, 32);
  dht_box_free(&b, &dht_mem_libc);
  assert_memory_equal(b.xsk, zero, 32);
  assert_null(b.keys.ents);
}

int main(void) {
  if (sodium_init() < 0)
    return 1;
  g_seed = tu_seed("box");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip),      cmocka_unit_test(test_tamper),
      cmocka_unit_test(test_bad_keys),       cmocka_unit_test(test_cache_counters),
      cmocka_unit_test(test_cache_eviction), cmocka_unit_test(test_sizes),
      cmocka_unit_test(test_init_free),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

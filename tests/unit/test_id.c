/*
 * test_id.c - node ID arithmetic (dht_id.c): common prefix length, XOR
 * distance order, IDs crafted for a bucket, and ID = BLAKE2b-256(pk).
 *
 * Random inputs come from a seeded generator; the seed is printed, and
 * ROOST_SEED=<n> replays a run.
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

/* Sets bit `bit` (0 = most significant of byte 0) of id. */
static void flip_bit(uint8_t id[static DHT_ID_LEN], int bit) {
  id[bit / 8] ^= (uint8_t)(0x80u >> (bit % 8));
}

static void test_cpl_vectors(void **state) {
  (void)state;
  uint8_t a[DHT_ID_LEN] = {0}, b[DHT_ID_LEN] = {0};
  assert_int_equal(dht_id_cpl(a, b), 256);

  static const int bits[] = {0, 1, 7, 8, 9, 15, 16, 63, 64, 127, 128, 200, 254, 255};
  for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++) {
    memset(b, 0, sizeof b);
    flip_bit(b, bits[i]);
    assert_int_equal(dht_id_cpl(a, b), bits[i]);
    assert_int_equal(dht_id_cpl(b, a), bits[i]);
    /* later differences do not matter */
    if (bits[i] < 255) {
      flip_bit(b, 255);
      assert_int_equal(dht_id_cpl(a, b), bits[i]);
    }
  }

  /* 0x80... vs 0x00...: differ at the very first bit */
  memset(b, 0, sizeof b);
  b[0] = 0x80;
  assert_int_equal(dht_id_cpl(a, b), 0);
  /* bit 9 = second byte's 0x40 */
  memset(b, 0, sizeof b);
  b[1] = 0x40;
  assert_int_equal(dht_id_cpl(a, b), 9);
  b[1] = 0x7f;
  assert_int_equal(dht_id_cpl(a, b), 9);

  /* equal non-zero IDs */
  memset(a, 0xa5, sizeof a);
  memcpy(b, a, sizeof b);
  assert_int_equal(dht_id_cpl(a, b), 256);
}

static void test_cpl_random(void **state) {
  (void)state;
  uint8_t a[DHT_ID_LEN], b[DHT_ID_LEN];
  for (int it = 0; it < 2000; it++) {
    rng_fill(a, sizeof a);
    int bit = (int)(rng_next() % 256);
    memcpy(b, a, sizeof b);
    flip_bit(b, bit);
    for (int j = bit + 1; j < 256; j++)
      if (rng_next() & 1)
        flip_bit(b, j);
    assert_int_equal(dht_id_cpl(a, b), bit);
  }
}

static void test_cmp_dist(void **state) {
  (void)state;
  uint8_t t[DHT_ID_LEN] = {0}, a[DHT_ID_LEN] = {0}, b[DHT_ID_LEN] = {0};
  a[31] = 1;
  b[31] = 2;
  assert_true(dht_id_cmp_dist(a, b, t) < 0);
  assert_true(dht_id_cmp_dist(b, a, t) > 0);
  assert_int_equal(dht_id_cmp_dist(a, a, t), 0);

  /* 0x80 00.. is farther from 0 than 0x7f ff..: the high bit dominates */
  memset(a, 0, sizeof a);
  a[0] = 0x80;
  memset(b, 0xff, sizeof b);
  b[0] = 0x7f;
  assert_true(dht_id_cmp_dist(a, b, t) > 0);
  assert_true(dht_id_cmp_dist(b, a, t) < 0);

  /* with t = ff.., the order flips */
  memset(t, 0xff, sizeof t);
  assert_true(dht_id_cmp_dist(a, b, t) < 0);

  /* the target itself is closest to itself */
  rng_fill(t, sizeof t);
  memcpy(a, t, sizeof a);
  memcpy(b, t, sizeof b);
  flip_bit(b, 255);
  assert_true(dht_id_cmp_dist(a, b, t) < 0);

  /* XOR is not numeric difference: t = 0x08, a = 0x07 (d = 0x0f), b = 0x10
   * (d = 0x18).  Numerically a is 1 away and b 8, and by XOR a is still
   * closer; but c = 0x0c (numerically 4 away) has d = 0x04: closer than a. */
  memset(t, 0, sizeof t);
  memset(a, 0, sizeof a);
  memset(b, 0, sizeof b);
  uint8_t c[DHT_ID_LEN] = {0};
  t[31] = 0x08;
  a[31] = 0x07;
  b[31] = 0x10;
  c[31] = 0x0c;
  assert_true(dht_id_cmp_dist(a, b, t) < 0);
  assert_true(dht_id_cmp_dist(c, a, t) < 0);

  /* agrees with a reference over random triples */
  for (int it = 0; it < 2000; it++) {
    rng_fill(t, sizeof t);
    rng_fill(a, sizeof a);
    memcpy(b, a, sizeof b);
    if (it % 3)
      flip_bit(b, (int)(rng_next() % 256));
    uint8_t da[DHT_ID_LEN], db[DHT_ID_LEN];
    dht_id_xor(da, a, t);
    dht_id_xor(db, b, t);
    int ref = memcmp(da, db, DHT_ID_LEN);
    int got = dht_id_cmp_dist(a, b, t);
    assert_true((ref < 0 && got < 0) || (ref == 0 && got == 0) || (ref > 0 && got > 0));
  }
}

static void test_xor(void **state) {
  (void)state;
  uint8_t a[DHT_ID_LEN], b[DHT_ID_LEN], x[DHT_ID_LEN];
  rng_fill(a, sizeof a);
  rng_fill(b, sizeof b);
  dht_id_xor(x, a, b);
  for (int i = 0; i < DHT_ID_LEN; i++)
    assert_int_equal(x[i], a[i] ^ b[i]);
  dht_id_xor(x, a, a);
  for (int i = 0; i < DHT_ID_LEN; i++)
    assert_int_equal(x[i], 0);
}

static void test_in_bucket(void **state) {
  (void)state;
  uint8_t self[DHT_ID_LEN], rnd[DHT_ID_LEN], out[DHT_ID_LEN];
  for (int round = 0; round < 8; round++) {
    rng_fill(self, sizeof self);
    for (int cpl = 0; cpl < 256; cpl++) {
      rng_fill(rnd, sizeof rnd);
      dht_id_in_bucket(out, self, cpl, rnd);
      assert_int_equal(dht_id_cpl(out, self), cpl);
      /* bits after cpl come from rnd */
      for (int bit = cpl + 1; bit < 256; bit++) {
        int ob = out[bit / 8] >> (7 - bit % 8) & 1;
        int rb = rnd[bit / 8] >> (7 - bit % 8) & 1;
        assert_int_equal(ob, rb);
      }
    }
  }
  /* rnd equal to self still yields the requested cpl */
  memset(self, 0x5a, sizeof self);
  for (int cpl = 0; cpl < 256; cpl++) {
    dht_id_in_bucket(out, self, cpl, self);
    assert_int_equal(dht_id_cpl(out, self), cpl);
  }
  /* out-of-range requests are clamped */
  rng_fill(rnd, sizeof rnd);
  dht_id_in_bucket(out, self, -3, rnd);
  assert_int_equal(dht_id_cpl(out, self), 0);
  dht_id_in_bucket(out, self, 300, rnd);
  assert_int_equal(dht_id_cpl(out, self), 255);
}

static void test_from_pk(void **state) {
  (void)state;
  /* Known answer: BLAKE2b-256 of 32 zero bytes. */
  static const uint8_t zero_id[DHT_ID_LEN] = {0x89, 0xeb, 0x0d, 0x6a, 0x8a, 0x69, 0x1d, 0xae,
                                              0x2c, 0xd1, 0x5e, 0xd0, 0x36, 0x99, 0x31, 0xce,
                                              0x0a, 0x94, 0x9e, 0xca, 0xfa, 0x5c, 0x3f, 0x93,
                                              0xf8, 0x12, 0x18, 0x33, 0x64, 0x6e, 0x15, 0xc3};
  uint8_t pk[DHT_PK_LEN] = {0}, id[DHT_ID_LEN], ref[DHT_ID_LEN];
  dht_id_from_pk(id, pk);
  assert_memory_equal(id, zero_id, DHT_ID_LEN);

  for (int it = 0; it < 100; it++) {
    rng_fill(pk, sizeof pk);
    dht_id_from_pk(id, pk);
    crypto_generichash(ref, sizeof ref, pk, sizeof pk, NULL, 0);
    assert_memory_equal(id, ref, DHT_ID_LEN);
  }
  /* a real Ed25519 key through the identity path */
  dht_identity ident;
  uint8_t seed[32];
  rng_fill(seed, sizeof seed);
  assert_int_equal(crypto_sign_seed_keypair(ident.pk, ident.sk, seed), 0);
  dht_id_from_pk(id, ident.pk);
  crypto_generichash(ref, sizeof ref, ident.pk, sizeof ident.pk, NULL, 0);
  assert_memory_equal(id, ref, DHT_ID_LEN);
}

static void test_short(void **state) {
  (void)state;
  uint8_t id[DHT_ID_LEN] = {0x01, 0x23, 0xab, 0xcd, 0xff};
  char buf[9];
  assert_string_equal(dht_id_short(id, buf), "0123abcd");
}

int main(void) {
  if (sodium_init() < 0)
    return 1;
  const char *env = getenv("ROOST_SEED");
  uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
  printf("test_id: ROOST_SEED=%llu\n", (unsigned long long)seed);
  rng_state = seed;

  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cpl_vectors), cmocka_unit_test(test_cpl_random),
      cmocka_unit_test(test_cmp_dist),    cmocka_unit_test(test_xor),
      cmocka_unit_test(test_in_bucket),   cmocka_unit_test(test_from_pk),
      cmocka_unit_test(test_short),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

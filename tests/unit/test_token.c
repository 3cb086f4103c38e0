/*
 * test_token.c - address-bound tokens (dht_token.c).  A token checks for the
 * address and key it was made for and for nothing else: not another port, IP
 * (in any byte), family (v4 against the v4-mapped v6 form), key, or a token
 * with any one bit flipped; it survives one secret rotation and dies at the
 * second; tokens of two engines (two secrets) never cross-check; free wipes.
 * The randomised part draws addresses and keys from a seeded generator; the
 * seed is printed and ROOST_SEED=<n> replays a run.
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

static dht_addr v6_random(tu_rng *r) {
  dht_addr x;
  memset(&x, 0, sizeof x);
  x.family = DHT_AF_INET6;
  tu_rng_bytes(r, x.ip, 16);
  x.port = (uint16_t)(1 + tu_rng_below(r, 65535));
  return x;
}

static dht_addr v4_random(tu_rng *r) {
  dht_addr x;
  memset(&x, 0, sizeof x);
  x.family = DHT_AF_INET;
  tu_rng_bytes(r, x.ip, 4);
  x.port = (uint16_t)(1 + tu_rng_below(r, 65535));
  return x;
}

static void init_token(dht_token *t, tu_rng *r, dht_ts now) {
  uint8_t rnd[32];
  tu_rng_bytes(r, rnd, sizeof rnd);
  dht_token_init(t, rnd, now);
}

static void rotate(dht_token *t, tu_rng *r, dht_ts now) {
  uint8_t rnd[32];
  tu_rng_bytes(r, rnd, sizeof rnd);
  dht_token_rotate(t, rnd, now);
}

/* Every way to get the address or key a little wrong fails the check. */
static void check_binding(const dht_token *t, const dht_addr *a, const uint8_t pk[DHT_PK_LEN]) {
  uint8_t tok[DHT_TOKEN_LEN], again[DHT_TOKEN_LEN];
  dht_token_make(t, a, pk, tok);
  dht_token_make(t, a, pk, again);
  assert_memory_equal(tok, again, DHT_TOKEN_LEN); /* deterministic */
  assert_true(dht_token_check(t, a, pk, tok));

  dht_addr b = *a;
  b.port = (uint16_t)(a->port ^ 1);
  if (b.port == 0)
    b.port = 2;
  assert_false(dht_token_check(t, &b, pk, tok));
  b.port = (uint16_t)(a->port + 256);
  assert_false(dht_token_check(t, &b, pk, tok));
  int iplen = a->family == DHT_AF_INET ? 4 : 16;
  for (int i = 0; i < iplen; i++) {
    b = *a;
    b.ip[i] ^= 0x01;
    assert_false(dht_token_check(t, &b, pk, tok));
    b.ip[i] ^= 0x81;
    assert_false(dht_token_check(t, &b, pk, tok));
  }
  uint8_t pk2[DHT_PK_LEN];
  for (int i = 0; i < DHT_PK_LEN; i += 7) {
    memcpy(pk2, pk, DHT_PK_LEN);
    pk2[i] ^= 0x10;
    assert_false(dht_token_check(t, a, pk2, tok));
  }
  for (int bit = 0; bit < DHT_TOKEN_LEN * 8; bit++) {
    uint8_t bad[DHT_TOKEN_LEN];
    memcpy(bad, tok, DHT_TOKEN_LEN);
    bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    assert_false(dht_token_check(t, a, pk, bad));
  }
}

static void test_binding_v4(void **state) {
  (void)state;
  tu_rng r;
  tu_rng_init(&r, g_seed, 1);
  dht_token t;
  init_token(&t, &r, 0);
  uint8_t pk[DHT_PK_LEN];
  tu_rng_bytes(&r, pk, sizeof pk);
  dht_addr a = tu_addr4(203, 0, 113, 7, 4000);
  check_binding(&t, &a, pk);
  /* neighbours in the same /24 and the same host on another port */
  uint8_t tok[DHT_TOKEN_LEN];
  dht_token_make(&t, &a, pk, tok);
  dht_addr b = tu_addr4(203, 0, 113, 8, 4000);
  assert_false(dht_token_check(&t, &b, pk, tok));
  b = tu_addr4(203, 0, 113, 7, 4001);
  assert_false(dht_token_check(&t, &b, pk, tok));
  b = tu_addr4(10, 0, 0, 1, 4000);
  assert_false(dht_token_check(&t, &b, pk, tok));
  /* randomised */
  for (int i = 0; i < 200; i++) {
    a = v4_random(&r);
    tu_rng_bytes(&r, pk, sizeof pk);
    check_binding(&t, &a, pk);
  }
  dht_token_free(&t);
}

static void test_binding_v6(void **state) {
  (void)state;
  tu_rng r;
  tu_rng_init(&r, g_seed, 2);
  dht_token t;
  init_token(&t, &r, 0);
  uint8_t pk[DHT_PK_LEN];
  for (int i = 0; i < 200; i++) {
    dht_addr a = v6_random(&r);
    tu_rng_bytes(&r, pk, sizeof pk);
    check_binding(&t, &a, pk);
  }
  dht_token_free(&t);
}

static void test_v4_vs_v6(void **state) {
  (void)state;
  tu_rng r;
  tu_rng_init(&r, g_seed, 3);
  dht_token t;
  init_token(&t, &r, 0);
  uint8_t pk[DHT_PK_LEN];
  tu_rng_bytes(&r, pk, sizeof pk);
  /* 198.51.100.20:5000 and ::ffff:198.51.100.20:5000 are different
   * endpoints to us, and so is an IPv6 address that starts with the same
   * four bytes */
  dht_addr a4 = tu_addr4(198, 51, 100, 20, 5000), m6, p6;
  memset(&m6, 0, sizeof m6);
  m6.family = DHT_AF_INET6;
  m6.ip[10] = m6.ip[11] = 0xff;
  memcpy(m6.ip + 12, a4.ip, 4);
  m6.port = 5000;
  p6 = m6;
  memset(p6.ip, 0, 16);
  memcpy(p6.ip, a4.ip, 4);
  uint8_t t4[DHT_TOKEN_LEN], tm[DHT_TOKEN_LEN], tp[DHT_TOKEN_LEN];
  dht_token_make(&t, &a4, pk, t4);
  dht_token_make(&t, &m6, pk, tm);
  dht_token_make(&t, &p6, pk, tp);
  assert_memory_not_equal(t4, tm, DHT_TOKEN_LEN);
  assert_memory_not_equal(t4, tp, DHT_TOKEN_LEN);
  assert_memory_not_equal(tm, tp, DHT_TOKEN_LEN);
  assert_true(dht_token_check(&t, &a4, pk, t4));
  assert_true(dht_token_check(&t, &m6, pk, tm));
  assert_true(dht_token_check(&t, &p6, pk, tp));
  assert_false(dht_token_check(&t, &m6, pk, t4));
  assert_false(dht_token_check(&t, &p6, pk, t4));
  assert_false(dht_token_check(&t, &a4, pk, tm));
  assert_false(dht_token_check(&t, &a4, pk, tp));
  assert_false(dht_token_check(&t, &p6, pk, tm));
  /* bytes of ip[] beyond an IPv4 address are not part of it */
  dht_addr junk = a4;
  memset(junk.ip + 4, 0xee, 12);
  assert_true(dht_token_check(&t, &junk, pk, t4));
  dht_token_free(&t);
}

static void test_rotation(void **state) {
  (void)state;
  tu_rng r;
  tu_rng_init(&r, g_seed, 4);
  dht_token t;
  init_token(&t, &r, 1000);
  assert_int_equal(t.rotated, 1000);
  uint8_t pk[DHT_PK_LEN];
  tu_rng_bytes(&r, pk, sizeof pk);
  dht_addr a = tu_addr4(192, 0, 2, 1, 7000);
  uint8_t t0[DHT_TOKEN_LEN], t1[DHT_TOKEN_LEN], t2[DHT_TOKEN_LEN];
  dht_token_make(&t, &a, pk, t0);

  rotate(&t, &r, 1000 + DHT_TOKEN_ROTATE_MS);
  assert_int_equal(t.rotated, 1000 + DHT_TOKEN_ROTATE_MS);
  dht_token_make(&t, &a, pk, t1);
  assert_memory_not_equal(t0, t1, DHT_TOKEN_LEN); /* new secret, new token */
  assert_true(dht_token_check(&t, &a, pk, t0));   /* previous secret still good */
  assert_true(dht_token_check(&t, &a, pk, t1));
  /* the old token is still bound to its address and key */
  dht_addr b = a;
  b.port++;
  assert_false(dht_token_check(&t, &b, pk, t0));

  rotate(&t, &r, 1000 + 2 * DHT_TOKEN_ROTATE_MS);
  dht_token_make(&t, &a, pk, t2);
  assert_false(dht_token_check(&t, &a, pk, t0)); /* two rotations: dead */
  assert_true(dht_token_check(&t, &a, pk, t1));
  assert_true(dht_token_check(&t, &a, pk, t2));

  rotate(&t, &r, 1000 + 3 * DHT_TOKEN_ROTATE_MS);
  assert_false(dht_token_check(&t, &a, pk, t1));
  assert_true(dht_token_check(&t, &a, pk, t2));

  /* free wipes both secrets */
  dht_token_free(&t);
  uint8_t zero[sizeof t.secret] = {0};
  assert_memory_equal(t.secret, zero, sizeof zero);
}

static void test_two_secrets(void **state) {
  (void)state;
  tu_rng r;
  tu_rng_init(&r, g_seed, 5);
  dht_token t, u;
  init_token(&t, &r, 0);
  init_token(&u, &r, 0);
  uint8_t pk[DHT_PK_LEN], tok[DHT_TOKEN_LEN];
  for (int i = 0; i < 100; i++) {
    dht_addr a = i % 2 ? v4_random(&r) : v6_random(&r);
    tu_rng_bytes(&r, pk, sizeof pk);
    dht_token_make(&t, &a, pk, tok);
    assert_true(dht_token_check(&t, &a, pk, tok));
    assert_false(dht_token_check(&u, &a, pk, tok));
  }
  dht_token_free(&t);
  dht_token_free(&u);
}

int main(void) {
  if (sodium_init() < 0)
    return 1;
  g_seed = tu_seed("token");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_binding_v4),  cmocka_unit_test(test_binding_v6),
      cmocka_unit_test(test_v4_vs_v6),    cmocka_unit_test(test_rotation),
      cmocka_unit_test(test_two_secrets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

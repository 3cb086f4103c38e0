/*
 * test_store_crypto.c - the mailbox cryptography (store_crypto.c): the pair
 * secret is symmetric, differs per pair and refuses unusable keys; known-answer
 * vectors for the pair secret, the mailbox keys and the item hash, each also
 * recomputed here from libsodium primitives by the documented formula; the
 * mailbox depends on direction and epoch; seal/open round trips at every
 * padded size boundary and the plaintext layout under the AEAD; refusals of
 * open (wrong keys or epoch, any flipped byte, sizes that are not padded
 * sizes, a bad kind, length or padding); deposit, receipt, FETCH and DELETE
 * signatures over exactly the documented messages, and each of them refused
 * when any signed field changes; store_epoch_of at its boundaries; distinct
 * names from store_strerror.
 *
 * Identities, bodies and nonces come from a seeded generator; the seed is
 * printed and ROOST_SEED=<n> replays a run.  The vectors use fixed seeds.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <string.h>

#include "store.h"
#include "testutil.h"

#define DAY_MS 86400000

static uint64_t g_seed;

/* Hex of n bytes into a static buffer (one at a time is enough here). */
static const char *hex(const uint8_t *b, size_t n) {
  static char buf[2 * 64 + 1];
  assert_true(n <= 64);
  sodium_bin2hex(buf, sizeof buf, b, n);
  return buf;
}

static void put_be(uint8_t *p, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

/* A random message of body length len. */
static void rand_msg(store_msg *m, tu_rng *r, uint16_t len, uint8_t kind) {
  memset(m, 0, sizeof *m);
  tu_rng_bytes(r, m->id, sizeof m->id);
  m->sent_unix_ms = (int64_t)tu_rng_u64(r);
  m->kind = kind;
  m->len = len;
  tu_rng_bytes(r, m->body, len);
}

/* Friends a and b (random identities) and the a->b mailbox of epoch e. */
typedef struct pair_fx {
  dht_identity a, b;
  uint8_t pair[STORE_KEY_LEN];
  store_mbox_keys k;
} pair_fx;

static void pair_fx_init(pair_fx *f, uint64_t idx, uint32_t epoch) {
  tu_identity(&f->a, g_seed, 2 * idx);
  tu_identity(&f->b, g_seed, 2 * idx + 1);
  assert_int_equal(store_pair_secret(f->pair, &f->a, f->b.pk), 0);
  store_mbox_derive(&f->k, f->pair, f->a.pk, f->b.pk, epoch);
}

/* ---- strerror ---------------------------------------------------------- */

static void test_strerror(void **state) {
  (void)state;
  const int codes[] = {
      DHT_ERR_INVAL,       DHT_ERR_NOBUF,      DHT_ERR_FULL,         DHT_ERR_NOTFOUND,
      DHT_ERR_PROTO,       DHT_ERR_CRYPTO,     DHT_ERR_STALE,        DHT_ERR_CANCELLED,
      DHT_ERR_TIMEOUT,     DHT_ERR_NOMEM,      DHT_ERR_INTERNAL,     STORE_ERR_MBOX_FULL,
      STORE_ERR_NODE_FULL, STORE_ERR_BADSIG,   STORE_ERR_TIME,       STORE_ERR_TOOBIG,
      STORE_ERR_DB,        STORE_ERR_DB_NEWER, STORE_ERR_DB_CORRUPT,
  };
  const int n = (int)(sizeof codes / sizeof codes[0]);
  const char *unknown = store_strerror(-77);
  assert_non_null(unknown);
  for (int i = 0; i < n; i++) {
    const char *s = store_strerror(codes[i]);
    assert_non_null(s);
    assert_true(strlen(s) > 0);
    assert_string_not_equal(s, unknown);
    if (codes[i] > STORE_ERR_MBOX_FULL) /* the DHT codes: dht_strerror's names */
      assert_string_equal(s, dht_strerror(codes[i]));
    for (int j = 0; j < i; j++)
      assert_string_not_equal(s, store_strerror(codes[j]));
  }
}

/* ---- pair secret ------------------------------------------------------- */

/* The documented formula, from libsodium primitives. */
static void pair_by_hand(uint8_t out[32], const dht_identity *me, const uint8_t peer[32]) {
  uint8_t xsk[32], xpk[32], shared[32], buf[13 + 32 + 64];
  assert_int_equal(crypto_sign_ed25519_sk_to_curve25519(xsk, me->sk), 0);
  assert_int_equal(crypto_sign_ed25519_pk_to_curve25519(xpk, peer), 0);
  assert_int_equal(crypto_scalarmult(shared, xsk, xpk), 0);
  bool me_first = memcmp(me->pk, peer, 32) < 0;
  memcpy(buf, "roost-pair-v1", 13);
  memcpy(buf + 13, shared, 32);
  memcpy(buf + 45, me_first ? me->pk : peer, 32);
  memcpy(buf + 77, me_first ? peer : me->pk, 32);
  crypto_generichash(out, 32, buf, sizeof buf, NULL, 0);
}

static void test_pair_symmetric(void **state) {
  (void)state;
  for (uint64_t i = 0; i < 8; i++) {
    dht_identity a, b, c;
    tu_identity(&a, g_seed, 3 * i);
    tu_identity(&b, g_seed, 3 * i + 1);
    tu_identity(&c, g_seed, 3 * i + 2);
    uint8_t ab[32], ba[32], ac[32], bc[32], hand[32];
    assert_int_equal(store_pair_secret(ab, &a, b.pk), 0);
    assert_int_equal(store_pair_secret(ba, &b, a.pk), 0);
    assert_int_equal(store_pair_secret(ac, &a, c.pk), 0);
    assert_int_equal(store_pair_secret(bc, &b, c.pk), 0);
    assert_memory_equal(ab, ba, 32);
    assert_memory_not_equal(ab, ac, 32);
    assert_memory_not_equal(ab, bc, 32);
    assert_memory_not_equal(ac, bc, 32);
    pair_by_hand(hand, &a, b.pk);
    assert_memory_equal(ab, hand, 32);
  }
}

/* 8 x p == the identity, so p has small order (the helper checks the list). */
static bool small_order(const uint8_t p[32]) {
  static const uint8_t ident[32] = {1};
  uint8_t acc[32];
  memcpy(acc, p, 32);
  for (int k = 1; k <= 8; k++) {
    if (memcmp(acc, ident, 32) == 0)
      return true;
    if (crypto_core_ed25519_add(acc, acc, p) != 0)
      return false;
  }
  return false;
}

static void test_pair_bad_keys(void **state) {
  (void)state;
  dht_identity me;
  tu_identity(&me, g_seed, 100);
  /* the identity point, a point of order 2 (y = -1) and one of order 4 (y = 0) */
  uint8_t ident[32] = {1}, order2[32], order4[32] = {0};
  memset(order2, 0xff, 32);
  order2[0] = 0xec;
  order2[31] = 0x7f;
  assert_true(small_order(ident));
  assert_true(small_order(order2));
  const uint8_t *bad[] = {ident, order2, order4};
  uint8_t out[32];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(store_pair_secret(out, &me, bad[i]), DHT_ERR_CRYPTO);
  /* not a point: y = 2 has no x on the curve */
  uint8_t off[32] = {2};
  assert_int_equal(crypto_core_ed25519_is_valid_point(off), 0);
  assert_int_equal(store_pair_secret(out, &me, off), DHT_ERR_CRYPTO);
  /* and a good key right after still works */
  dht_identity peer;
  tu_identity(&peer, g_seed, 101);
  assert_int_equal(store_pair_secret(out, &me, peer.pk), 0);
}

/* ---- known answers ----------------------------------------------------- */

/* Fixed identities: seeds 00 01 .. 1f and 80 81 .. 9f. */
static void kat_identities(dht_identity *a, dht_identity *b) {
  uint8_t sa[32], sb[32];
  for (int i = 0; i < 32; i++) {
    sa[i] = (uint8_t)i;
    sb[i] = (uint8_t)(0x80 + i);
  }
  assert_int_equal(dht_identity_from_seed(a, sa), 0);
  assert_int_equal(dht_identity_from_seed(b, sb), 0);
}

/* BLAKE2b-256(key = pair, label || from || to || epoch BE), by hand. */
static void derive_by_hand(uint8_t out[32], const uint8_t pair[32], const char *label,
                           const uint8_t from[32], const uint8_t to[32], uint32_t epoch) {
  uint8_t buf[13 + 32 + 32 + 4];
  assert_int_equal(strlen(label), 13);
  memcpy(buf, label, 13);
  memcpy(buf + 13, from, 32);
  memcpy(buf + 45, to, 32);
  put_be(buf + 77, epoch, 4);
  crypto_generichash(out, 32, buf, sizeof buf, pair, 32);
}

static void test_kat_pair_mbox(void **state) {
  (void)state;
  dht_identity a, b;
  kat_identities(&a, &b);
  uint8_t pair[32], hand[32];
  assert_int_equal(store_pair_secret(pair, &a, b.pk), 0);
  assert_string_equal(hex(pair, 32),
                      "1a9d72f09c5709f864c96613ef7e8aeba89f21367206829fcc2a275437ea4871");
  pair_by_hand(hand, &b, a.pk);
  assert_memory_equal(pair, hand, 32);

  const uint32_t epoch = 19675; /* 2023-11-14 */
  store_mbox_keys k;
  store_mbox_derive(&k, pair, a.pk, b.pk, epoch);
  assert_int_equal(k.epoch, epoch);
  assert_string_equal(hex(k.pk, 32),
                      "8baf78b8f7639021ac5095012ec3a139e56f6ab26f411d94d997b21a4576baaf");
  assert_string_equal(hex(k.id, 32),
                      "c1f32c328184a9c68f9b2916e59b7ddffc92db2ba8c826b113808c113fba25e7");
  assert_string_equal(hex(k.payload_key, 32),
                      "7edd1535d943b3455fb89ecab5785e9d1f993160d520ee85d2c752b9ceb08c6a");
  /* the same by the documented formulas */
  uint8_t seed[32], pk[32], sk[64], id[32], key[32];
  derive_by_hand(seed, pair, "roost-mbox-v1", a.pk, b.pk, epoch);
  assert_int_equal(crypto_sign_seed_keypair(pk, sk, seed), 0);
  assert_memory_equal(k.pk, pk, 32);
  assert_memory_equal(k.sk, sk, 64);
  crypto_generichash(id, 32, pk, 32, NULL, 0);
  assert_memory_equal(k.id, id, 32);
  assert_true(store_mbox_id_matches(k.id, k.pk));
  derive_by_hand(key, pair, "roost-mkey-v1", a.pk, b.pk, epoch);
  assert_memory_equal(k.payload_key, key, 32);
  /* the payload key is not the signing seed */
  assert_memory_not_equal(seed, key, 32);
}

static void test_kat_item_hash(void **state) {
  (void)state;
  uint8_t item[168], h[STORE_HASH_LEN], hand[16];
  for (size_t i = 0; i < sizeof item; i++)
    item[i] = (uint8_t)i;
  store_item_hash(h, item, sizeof item);
  assert_string_equal(hex(h, 16), "e78820f570786f324118cdae096abeae");
  crypto_generichash(hand, 16, item, sizeof item, NULL, 0);
  assert_memory_equal(h, hand, 16);
  item[167] ^= 1;
  store_item_hash(h, item, sizeof item);
  assert_memory_not_equal(h, hand, 16);
}

/* A sealed item with a fixed nonce: its hash is a regression vector, and the
 * plaintext under the AEAD has exactly the documented layout. */
static void test_kat_seal_layout(void **state) {
  (void)state;
  dht_identity a, b;
  kat_identities(&a, &b);
  uint8_t pair[32], nonce[STORE_NONCE_LEN], item[STORE_ITEM_MAX], h[16];
  assert_int_equal(store_pair_secret(pair, &a, b.pk), 0);
  store_mbox_keys k;
  store_mbox_derive(&k, pair, a.pk, b.pk, 19675);
  store_msg m;
  memset(&m, 0, sizeof m);
  for (int i = 0; i < STORE_MSGID_LEN; i++)
    m.id[i] = (uint8_t)(0xa0 + i);
  m.sent_unix_ms = -2; /* the int64 as u64: ff..fe */
  m.kind = STORE_KIND_TEXT;
  m.len = 5;
  memcpy(m.body, "hello", 5);
  for (int i = 0; i < STORE_NONCE_LEN; i++)
    nonce[i] = (uint8_t)(0x40 + i);
  assert_int_equal(store_seal(item, &k, &m, nonce), 168);
  assert_memory_equal(item, nonce, STORE_NONCE_LEN);
  store_item_hash(h, item, 168);
  assert_string_equal(hex(h, 16), "ab4ae9e43c028ee66e256519bfea8109");

  uint8_t plain[128], want[128] = {0};
  unsigned long long n;
  assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &n, NULL, item + 24, 144, k.id,
                                                              32, nonce, k.payload_key),
                   0);
  assert_int_equal(n, 128);
  memcpy(want, m.id, 16);
  memset(want + 16, 0xff, 8);
  want[23] = 0xfe;
  want[24] = STORE_KIND_TEXT;
  want[25] = 0;
  want[26] = 5;
  memcpy(want + 27, "hello", 5);
  assert_memory_equal(plain, want, 128);
}

/* ---- mailboxes --------------------------------------------------------- */

static void test_mbox_direction_epoch(void **state) {
  (void)state;
  pair_fx f;
  pair_fx_init(&f, 10, 500);
  uint8_t pair_b[32];
  assert_int_equal(store_pair_secret(pair_b, &f.b, f.a.pk), 0);
  store_mbox_keys ab_b, ba, ab_next, ab_prev;
  /* b derives the same a->b mailbox from its side */
  store_mbox_derive(&ab_b, pair_b, f.a.pk, f.b.pk, 500);
  assert_memory_equal(&ab_b, &f.k, sizeof ab_b);
  store_mbox_derive(&ba, pair_b, f.b.pk, f.a.pk, 500);
  store_mbox_derive(&ab_next, f.pair, f.a.pk, f.b.pk, 501);
  store_mbox_derive(&ab_prev, f.pair, f.a.pk, f.b.pk, 499);
  const store_mbox_keys *other[] = {&ba, &ab_next, &ab_prev};
  for (int i = 0; i < 3; i++) {
    assert_memory_not_equal(other[i]->id, f.k.id, 32);
    assert_memory_not_equal(other[i]->pk, f.k.pk, 32);
    assert_memory_not_equal(other[i]->sk, f.k.sk, 32);
    assert_memory_not_equal(other[i]->payload_key, f.k.payload_key, 32);
  }
  /* another pair's mailbox for the same keys and epoch differs too */
  pair_fx g;
  pair_fx_init(&g, 11, 500);
  store_mbox_keys x;
  store_mbox_derive(&x, g.pair, f.a.pk, f.b.pk, 500);
  assert_memory_not_equal(x.id, f.k.id, 32);
  assert_memory_not_equal(x.payload_key, f.k.payload_key, 32);
}

static void test_epoch_of(void **state) {
  (void)state;
  assert_int_equal(store_epoch_of(0, DAY_MS), 0);
  assert_int_equal(store_epoch_of(DAY_MS - 1, DAY_MS), 0);
  assert_int_equal(store_epoch_of(DAY_MS, DAY_MS), 1);
  assert_int_equal(store_epoch_of(2 * (int64_t)DAY_MS - 1, DAY_MS), 1);
  assert_int_equal(store_epoch_of(2 * (int64_t)DAY_MS, DAY_MS), 2);
  assert_int_equal(store_epoch_of(1700000000000, DAY_MS), 19675);
  assert_int_equal(store_epoch_of(1700000000000, 3600000), 472222);
  /* before 1970: epoch 0, not a wrapped huge one */
  assert_int_equal(store_epoch_of(-1, DAY_MS), 0);
  assert_int_equal(store_epoch_of(INT64_MIN, DAY_MS), 0);
  /* past u32: saturates */
  assert_int_equal(store_epoch_of((int64_t)UINT32_MAX, 1), UINT32_MAX);
  assert_int_equal(store_epoch_of((int64_t)UINT32_MAX + 1, 1), UINT32_MAX);
  assert_int_equal(store_epoch_of(INT64_MAX, 1), UINT32_MAX);
  assert_int_equal(store_epoch_of(INT64_MAX, DAY_MS), UINT32_MAX);
  /* a bad epoch length (the caller's bug) does not divide by zero */
  assert_int_equal(store_epoch_of(12345, 0), 0);
  assert_int_equal(store_epoch_of(12345, -5), 0);
}

/* ---- seal / open ------------------------------------------------------- */

static void test_roundtrip(void **state) {
  (void)state;
  static const struct {
    uint16_t len;
    dht_ssize size;
  } cases[] = {
      {0, 168},   {1, 168},   {100, 168}, {101, 168},  {102, 296},
      {229, 296}, {230, 552}, {485, 552}, {486, 1000}, {933, 1000},
  };
  pair_fx f;
  pair_fx_init(&f, 20, 7);
  tu_rng r;
  tu_rng_init(&r, g_seed, 0x5ea1);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    for (uint8_t kind = STORE_KIND_TEXT; kind <= STORE_KIND_READ; kind++) {
      store_msg m, out;
      uint8_t nonce[STORE_NONCE_LEN], item[STORE_ITEM_MAX + 8];
      rand_msg(&m, &r, cases[i].len, kind);
      tu_rng_bytes(&r, nonce, sizeof nonce);
      memset(item, 0xee, sizeof item);
      dht_ssize n = store_seal(item, &f.k, &m, nonce);
      assert_int_equal(n, cases[i].size);
      /* writes exactly n bytes */
      for (size_t j = (size_t)n; j < sizeof item; j++)
        assert_int_equal(item[j], 0xee);
      memset(&out, 0x55, sizeof out);
      assert_int_equal(store_open(&out, &f.k, item, (size_t)n), 0);
      assert_memory_equal(out.id, m.id, STORE_MSGID_LEN);
      assert_true(out.sent_unix_ms == m.sent_unix_ms);
      assert_int_equal(out.kind, kind);
      assert_int_equal(out.len, m.len);
      if (m.len)
        assert_memory_equal(out.body, m.body, m.len);
      /* the same message under another nonce is another item */
      uint8_t item2[STORE_ITEM_MAX];
      nonce[0] ^= 1;
      assert_int_equal(store_seal(item2, &f.k, &m, nonce), n);
      assert_memory_not_equal(item2 + STORE_NONCE_LEN, item + STORE_NONCE_LEN,
                              (size_t)n - STORE_NONCE_LEN);
    }
  }
}

static void test_toobig(void **state) {
  (void)state;
  pair_fx f;
  pair_fx_init(&f, 21, 7);
  tu_rng r;
  tu_rng_init(&r, g_seed, 0xb16);
  store_msg m;
  rand_msg(&m, &r, STORE_TEXT_MAX, STORE_KIND_TEXT);
  uint8_t nonce[STORE_NONCE_LEN] = {0}, item[STORE_ITEM_MAX];
  assert_int_equal(store_seal(item, &f.k, &m, nonce), STORE_ITEM_MAX);
  m.len = STORE_TEXT_MAX + 1; /* 934 */
  assert_int_equal(store_seal(item, &f.k, &m, nonce), STORE_ERR_TOOBIG);
  m.len = UINT16_MAX;
  assert_int_equal(store_seal(item, &f.k, &m, nonce), STORE_ERR_TOOBIG);
}

/* A small item sealed in mailbox f.k. */
static dht_ssize seal_small(uint8_t *item, const store_mbox_keys *k, tu_rng *r) {
  store_msg m;
  uint8_t nonce[STORE_NONCE_LEN];
  rand_msg(&m, r, 40, STORE_KIND_TEXT);
  tu_rng_bytes(r, nonce, sizeof nonce);
  dht_ssize n = store_seal(item, k, &m, nonce);
  assert_int_equal(n, 168);
  store_msg out;
  assert_int_equal(store_open(&out, k, item, (size_t)n), 0);
  return n;
}

static void test_open_wrong_keys(void **state) {
  (void)state;
  pair_fx f, g;
  pair_fx_init(&f, 30, 100);
  pair_fx_init(&g, 31, 100);
  tu_rng r;
  tu_rng_init(&r, g_seed, 0x0be7);
  uint8_t item[STORE_ITEM_MAX];
  dht_ssize n = seal_small(item, &f.k, &r);
  store_msg out;
  store_mbox_keys ba, next;
  store_mbox_derive(&ba, f.pair, f.b.pk, f.a.pk, 100);
  store_mbox_derive(&next, f.pair, f.a.pk, f.b.pk, 101);
  assert_int_equal(store_open(&out, &g.k, item, (size_t)n), DHT_ERR_CRYPTO);
  assert_int_equal(store_open(&out, &ba, item, (size_t)n), DHT_ERR_CRYPTO);
  assert_int_equal(store_open(&out, &next, item, (size_t)n), DHT_ERR_CRYPTO);
  /* the mailbox ID is bound: the right payload key under another ID fails */
  store_mbox_keys moved = f.k;
  moved.id[31] ^= 0x80;
  assert_int_equal(store_open(&out, &moved, item, (size_t)n), DHT_ERR_CRYPTO);
  store_mbox_keys rekeyed = f.k;
  rekeyed.payload_key[0] ^= 1;
  assert_int_equal(store_open(&out, &rekeyed, item, (size_t)n), DHT_ERR_CRYPTO);
}

static void test_open_flipped(void **state) {
  (void)state;
  pair_fx f;
  pair_fx_init(&f, 32, 3);
  tu_rng r;
  tu_rng_init(&r, g_seed, 0xf11b);
  uint8_t item[STORE_ITEM_MAX];
  dht_ssize n = seal_small(item, &f.k, &r);
  store_msg out;
  for (dht_ssize i = 0; i < n; i++) {
    uint8_t bit = (uint8_t)(1u << tu_rng_below(&r, 8));
    item[i] ^= bit;
    assert_int_equal(store_open(&out, &f.k, item, (size_t)n), DHT_ERR_CRYPTO);
    item[i] ^= bit;
  }
  assert_int_equal(store_open(&out, &f.k, item, (size_t)n), 0);
}

static void test_open_sizes(void **state) {
  (void)state;
  pair_fx f;
  pair_fx_init(&f, 33, 3);
  tu_rng r;
  tu_rng_init(&r, g_seed, 0x512e);
  uint8_t item[STORE_ITEM_MAX + 2];
  memset(item, 0, sizeof item);
  dht_ssize n = seal_small(item, &f.k, &r);
  store_msg out;
  /* truncated and extended (by a zero byte, as a lax length would allow) */
  assert_int_equal(store_open(&out, &f.k, item, (size_t)n - 1), DHT_ERR_PROTO);
  assert_int_equal(store_open(&out, &f.k, item, (size_t)n + 1), DHT_ERR_PROTO);
  assert_int_equal(store_open(&out, &f.k, item, (size_t)n - STORE_AEAD_LEN), DHT_ERR_PROTO);
  assert_int_equal(store_open(&out, &f.k, item, 0), DHT_ERR_PROTO);
  /* every length that is not a padded item size is refused before the AEAD */
  int accepted = 0;
  for (size_t len = 0; len <= STORE_ITEM_MAX + 1; len++) {
    int rv = store_open(&out, &f.k, item, len);
    if (len == 168 || len == 296 || len == 552 || len == 1000) {
      assert_int_equal(rv, len == (size_t)n ? 0 : DHT_ERR_CRYPTO);
      accepted++;
    } else {
      assert_int_equal(rv, DHT_ERR_PROTO);
    }
  }
  assert_int_equal(accepted, 4);
}

/* Encrypts a hand-made padded plaintext as an item of mailbox k. */
static size_t seal_raw(uint8_t *item, const store_mbox_keys *k, const uint8_t *plain, size_t plen,
                       tu_rng *r) {
  unsigned long long clen;
  tu_rng_bytes(r, item, STORE_NONCE_LEN);
  assert_int_equal(crypto_aead_xchacha20poly1305_ietf_encrypt(item + STORE_NONCE_LEN, &clen, plain,
                                                              plen, k->id, STORE_MBOX_LEN, NULL,
                                                              item, k->payload_key),
                   0);
  return STORE_NONCE_LEN + (size_t)clen;
}

static void test_open_bad_plaintext(void **state) {
  (void)state;
  pair_fx f;
  pair_fx_init(&f, 34, 3);
  tu_rng r;
  tu_rng_init(&r, g_seed, 0xbad);
  uint8_t plain[STORE_PLAIN_MAX], item[STORE_ITEM_MAX];
  store_msg out;
  size_t n;
  /* a hand-made good one opens (so the refusals below are about the field) */
  memset(plain, 0, sizeof plain);
  plain[24] = STORE_KIND_READ;
  plain[26] = 32;
  memset(plain + 27, 0x11, 32);
  n = seal_raw(item, &f.k, plain, 128, &r);
  assert_int_equal(store_open(&out, &f.k, item, n), 0);
  assert_int_equal(out.kind, STORE_KIND_READ);
  assert_int_equal(out.len, 32);
  /* kind outside enum store_kind */
  const uint8_t kinds[] = {0, 4, 0x80, 0xff};
  for (size_t i = 0; i < sizeof kinds; i++) {
    plain[24] = kinds[i];
    n = seal_raw(item, &f.k, plain, 128, &r);
    assert_int_equal(store_open(&out, &f.k, item, n), DHT_ERR_PROTO);
  }
  plain[24] = STORE_KIND_TEXT;
  /* len: exactly fills 128 -> ok; one more, or 0x0100+, or 0xffff -> refused */
  memset(plain + 27, 0x22, 128 - 27);
  plain[25] = 0;
  plain[26] = 101;
  n = seal_raw(item, &f.k, plain, 128, &r);
  assert_int_equal(store_open(&out, &f.k, item, n), 0);
  assert_int_equal(out.len, 101);
  const uint16_t lens[] = {102, 0x100, 0xffff};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    plain[25] = (uint8_t)(lens[i] >> 8);
    plain[26] = (uint8_t)lens[i];
    n = seal_raw(item, &f.k, plain, 128, &r);
    assert_int_equal(store_open(&out, &f.k, item, n), DHT_ERR_PROTO);
  }
  /* a 960-byte plaintext holding 934 bytes of body */
  memset(plain + 27, 0x33, STORE_PLAIN_MAX - 27);
  put_be(plain + 25, STORE_TEXT_MAX + 1, 2);
  n = seal_raw(item, &f.k, plain, STORE_PLAIN_MAX, &r);
  assert_int_equal(n, STORE_ITEM_MAX);
  assert_int_equal(store_open(&out, &f.k, item, n), DHT_ERR_PROTO);
  /* non-zero padding, at the first and at the last padding byte */
  memset(plain, 0, sizeof plain);
  plain[24] = STORE_KIND_TEXT;
  plain[26] = 10;
  const size_t at[] = {27 + 10, 255};
  for (size_t i = 0; i < 2; i++) {
    plain[at[i]] = 1;
    n = seal_raw(item, &f.k, plain, 256, &r);
    assert_int_equal(store_open(&out, &f.k, item, n), DHT_ERR_PROTO);
    plain[at[i]] = 0;
  }
  /* padded beyond the smallest size that fits: accepted (authenticated, and
   * a sender may pad more to hide a length) */
  n = seal_raw(item, &f.k, plain, 256, &r);
  assert_int_equal(n, 296);
  assert_int_equal(store_open(&out, &f.k, item, n), 0);
  assert_int_equal(out.len, 10);
}

/* ---- deposits ---------------------------------------------------------- */

static void test_deposit(void **state) {
  (void)state;
  pair_fx f, g;
  pair_fx_init(&f, 40, 9);
  pair_fx_init(&g, 41, 9);
  tu_rng r;
  tu_rng_init(&r, g_seed, 0xde9);
  uint8_t item[STORE_ITEM_MAX], sig[DHT_SIG_LEN];
  dht_ssize n = seal_small(item, &f.k, &r);
  const uint64_t ts = 1700000000;
  store_deposit_sign(sig, &f.k, ts, item, (size_t)n);
  assert_true(store_deposit_verify(sig, f.k.id, f.k.pk, ts, item, (size_t)n));

  /* the documented message, verified by libsodium directly */
  uint8_t msg[16 + 32 + 8 + STORE_ITEM_MAX];
  memcpy(msg, "roost-deposit-v1", 16);
  memcpy(msg + 16, f.k.id, 32);
  put_be(msg + 48, ts, 8);
  memcpy(msg + 56, item, (size_t)n);
  assert_int_equal(crypto_sign_verify_detached(sig, msg, 56 + (size_t)n, f.k.pk), 0);

  assert_false(store_deposit_verify(sig, f.k.id, f.k.pk, ts + 1, item, (size_t)n));
  assert_false(store_deposit_verify(sig, f.k.id, f.k.pk, ts ^ (1ull << 63), item, (size_t)n));
  for (dht_ssize i = 0; i < n; i += 7) {
    item[i] ^= 0x04;
    assert_false(store_deposit_verify(sig, f.k.id, f.k.pk, ts, item, (size_t)n));
    item[i] ^= 0x04;
  }
  assert_false(store_deposit_verify(sig, f.k.id, f.k.pk, ts, item, (size_t)n - 1));
  /* another mailbox (its ID matches its key, the signature does not) */
  assert_false(store_deposit_verify(sig, g.k.id, g.k.pk, ts, item, (size_t)n));
  /* the signing key, but named under another mailbox ID */
  assert_false(store_deposit_verify(sig, g.k.id, f.k.pk, ts, item, (size_t)n));
  /* an ID that is not the hash of the key: refused even with a signature
   * that is valid over that ID (g's key signing under f's mailbox ID) */
  store_mbox_keys forged = g.k;
  memcpy(forged.id, f.k.id, STORE_MBOX_LEN);
  store_deposit_sign(sig, &forged, ts, item, (size_t)n);
  memcpy(msg + 16, f.k.id, 32);
  assert_int_equal(crypto_sign_verify_detached(sig, msg, 56 + (size_t)n, g.k.pk), 0);
  assert_false(store_deposit_verify(sig, f.k.id, g.k.pk, ts, item, (size_t)n));
  store_deposit_sign(sig, &g.k, ts, item, (size_t)n);
  assert_true(store_deposit_verify(sig, g.k.id, g.k.pk, ts, item, (size_t)n));
  assert_false(store_mbox_id_matches(f.k.id, g.k.pk));
  assert_false(store_deposit_verify(sig, f.k.id, g.k.pk, ts, item, (size_t)n));
  uint8_t bad_id[32];
  memcpy(bad_id, g.k.id, 32);
  bad_id[0] ^= 1;
  assert_false(store_mbox_id_matches(bad_id, g.k.pk));
  bad_id[0] ^= 1;
  for (int i = 0; i < STORE_MBOX_LEN; i++) { /* every byte of the ID counts */
    bad_id[i] ^= 0x20;
    assert_false(store_mbox_id_matches(bad_id, g.k.pk));
    bad_id[i] ^= 0x20;
  }
  assert_true(store_mbox_id_matches(bad_id, g.k.pk));
  bad_id[0] ^= 1;
  assert_false(store_deposit_verify(sig, bad_id, g.k.pk, ts, item, (size_t)n));
  /* a flipped signature bit */
  sig[5] ^= 0x10;
  assert_false(store_deposit_verify(sig, g.k.id, g.k.pk, ts, item, (size_t)n));

  /* the largest item signs; longer ones never verify */
  uint8_t big[STORE_ITEM_MAX + 1];
  tu_rng_bytes(&r, big, sizeof big);
  store_deposit_sign(sig, &f.k, ts, big, STORE_ITEM_MAX);
  assert_true(store_deposit_verify(sig, f.k.id, f.k.pk, ts, big, STORE_ITEM_MAX));
  assert_false(store_deposit_verify(sig, f.k.id, f.k.pk, ts, big, STORE_ITEM_MAX + 1));
  store_deposit_sign(sig, &f.k, ts, big, STORE_ITEM_MAX + 1);
  assert_false(store_deposit_verify(sig, f.k.id, f.k.pk, ts, big, STORE_ITEM_MAX + 1));
  /* not even with the mailbox key's signature of the empty message */
  assert_int_equal(crypto_sign_detached(sig, NULL, big, 0, f.k.sk), 0);
  assert_false(store_deposit_verify(sig, f.k.id, f.k.pk, ts, big, STORE_ITEM_MAX + 1));
}

/* ---- receipts ---------------------------------------------------------- */

static void test_receipt(void **state) {
  (void)state;
  dht_identity node, other;
  tu_identity(&node, g_seed, 50);
  tu_identity(&other, g_seed, 51);
  pair_fx f, g;
  pair_fx_init(&f, 52, 9);
  pair_fx_init(&g, 53, 9);
  tu_rng r;
  tu_rng_init(&r, g_seed, 0x4ec);
  uint8_t hash[STORE_HASH_LEN], sig[DHT_SIG_LEN];
  tu_rng_bytes(&r, hash, sizeof hash);
  store_receipt_sign(sig, &node, f.k.id, hash);
  assert_true(store_receipt_verify(sig, node.pk, f.k.id, hash));
  uint8_t msg[16 + 32 + 16];
  memcpy(msg, "roost-receipt-v1", 16);
  memcpy(msg + 16, f.k.id, 32);
  memcpy(msg + 48, hash, 16);
  assert_int_equal(crypto_sign_verify_detached(sig, msg, sizeof msg, node.pk), 0);

  assert_false(store_receipt_verify(sig, other.pk, f.k.id, hash));
  assert_false(store_receipt_verify(sig, node.pk, g.k.id, hash));
  for (int i = 0; i < STORE_HASH_LEN; i++) {
    hash[i] ^= 0x01;
    assert_false(store_receipt_verify(sig, node.pk, f.k.id, hash));
    hash[i] ^= 0x01;
  }
  assert_true(store_receipt_verify(sig, node.pk, f.k.id, hash));
}

/* ---- FETCH and DELETE -------------------------------------------------- */

static void test_auth(void **state) {
  (void)state;
  pair_fx f, g;
  pair_fx_init(&f, 60, 9);
  pair_fx_init(&g, 61, 9);
  dht_identity storage, requester, stranger;
  tu_identity(&storage, g_seed, 62);
  tu_identity(&requester, g_seed, 63);
  tu_identity(&stranger, g_seed, 64);
  uint8_t sid[DHT_ID_LEN], other_sid[DHT_ID_LEN];
  dht_id_from_pk(sid, storage.pk);
  dht_id_from_pk(other_sid, stranger.pk);
  tu_rng r;
  tu_rng_init(&r, g_seed, 0xa07);
  uint8_t hashes[(STORE_DEL_MAX + 1) * STORE_HASH_LEN];
  tu_rng_bytes(&r, hashes, sizeof hashes);
  const uint64_t t = 1700000123;
  const uint8_t *rq = requester.pk;
  uint8_t fsig[DHT_SIG_LEN], dsig[DHT_SIG_LEN], msg[15 + 32 * 3 + 8 + STORE_DEL_MAX * 16];

  /* FETCH: ok, over the documented message */
  store_auth_sign(fsig, STORE_AUTH_FETCH, &f.k, sid, rq, t, NULL, 0);
  assert_true(store_auth_verify(fsig, STORE_AUTH_FETCH, f.k.id, f.k.pk, sid, rq, t, NULL, 0));
  memcpy(msg, "roost-fetch-v1", 14);
  memcpy(msg + 14, f.k.id, 32);
  memcpy(msg + 46, sid, 32);
  memcpy(msg + 78, rq, 32);
  put_be(msg + 110, t, 8);
  assert_int_equal(crypto_sign_verify_detached(fsig, msg, 118, f.k.pk), 0);

  /* DELETE of 3 hashes: ok, over the documented message */
  const size_t nh = 3;
  store_auth_sign(dsig, STORE_AUTH_DELETE, &f.k, sid, rq, t, hashes, nh);
  assert_true(store_auth_verify(dsig, STORE_AUTH_DELETE, f.k.id, f.k.pk, sid, rq, t, hashes, nh));
  memcpy(msg, "roost-delete-v1", 15);
  memcpy(msg + 15, f.k.id, 32);
  memcpy(msg + 47, sid, 32);
  memcpy(msg + 79, rq, 32);
  put_be(msg + 111, t, 8);
  memcpy(msg + 119, hashes, nh * 16);
  assert_int_equal(crypto_sign_verify_detached(dsig, msg, 119 + nh * 16, f.k.pk), 0);

  /* wrong storage node, requester, time */
  assert_false(
      store_auth_verify(fsig, STORE_AUTH_FETCH, f.k.id, f.k.pk, other_sid, rq, t, NULL, 0));
  assert_false(
      store_auth_verify(dsig, STORE_AUTH_DELETE, f.k.id, f.k.pk, other_sid, rq, t, hashes, nh));
  assert_false(
      store_auth_verify(fsig, STORE_AUTH_FETCH, f.k.id, f.k.pk, sid, stranger.pk, t, NULL, 0));
  assert_false(
      store_auth_verify(dsig, STORE_AUTH_DELETE, f.k.id, f.k.pk, sid, stranger.pk, t, hashes, nh));
  const uint64_t times[] = {t - 1, t + 1, t + (1ull << 32), 0};
  for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
    assert_false(
        store_auth_verify(fsig, STORE_AUTH_FETCH, f.k.id, f.k.pk, sid, rq, times[i], NULL, 0));
    assert_false(
        store_auth_verify(dsig, STORE_AUTH_DELETE, f.k.id, f.k.pk, sid, rq, times[i], hashes, nh));
  }
  /* different op: a FETCH is no DELETE and the other way round */
  assert_false(store_auth_verify(fsig, STORE_AUTH_DELETE, f.k.id, f.k.pk, sid, rq, t, hashes, nh));
  assert_false(store_auth_verify(dsig, STORE_AUTH_FETCH, f.k.id, f.k.pk, sid, rq, t, NULL, 0));
  /* changed hash list: a byte, one fewer, one more, reordered */
  for (size_t i = 0; i < nh * STORE_HASH_LEN; i += 5) {
    hashes[i] ^= 0x40;
    assert_false(
        store_auth_verify(dsig, STORE_AUTH_DELETE, f.k.id, f.k.pk, sid, rq, t, hashes, nh));
    hashes[i] ^= 0x40;
  }
  assert_false(
      store_auth_verify(dsig, STORE_AUTH_DELETE, f.k.id, f.k.pk, sid, rq, t, hashes, nh - 1));
  assert_false(
      store_auth_verify(dsig, STORE_AUTH_DELETE, f.k.id, f.k.pk, sid, rq, t, hashes, nh + 1));
  uint8_t swapped[3 * STORE_HASH_LEN];
  memcpy(swapped, hashes + 16, 16);
  memcpy(swapped + 16, hashes, 16);
  memcpy(swapped + 32, hashes + 32, 16);
  assert_false(store_auth_verify(dsig, STORE_AUTH_DELETE, f.k.id, f.k.pk, sid, rq, t, swapped, nh));
  /* wrong mailbox key: another mailbox, or a key that is not the ID's */
  assert_false(store_auth_verify(fsig, STORE_AUTH_FETCH, g.k.id, g.k.pk, sid, rq, t, NULL, 0));
  assert_false(store_auth_verify(fsig, STORE_AUTH_FETCH, f.k.id, g.k.pk, sid, rq, t, NULL, 0));
  assert_false(store_auth_verify(fsig, STORE_AUTH_FETCH, g.k.id, f.k.pk, sid, rq, t, NULL, 0));
  assert_false(store_auth_verify(dsig, STORE_AUTH_DELETE, g.k.id, g.k.pk, sid, rq, t, hashes, nh));
  /* g's key signing under f's mailbox ID: the signature is good over that
   * message, but the key is not the ID's */
  store_mbox_keys forged = g.k;
  memcpy(forged.id, f.k.id, STORE_MBOX_LEN);
  uint8_t xsig[DHT_SIG_LEN];
  store_auth_sign(xsig, STORE_AUTH_FETCH, &forged, sid, rq, t, NULL, 0);
  assert_false(store_auth_verify(xsig, STORE_AUTH_FETCH, f.k.id, g.k.pk, sid, rq, t, NULL, 0));
  store_auth_sign(xsig, STORE_AUTH_DELETE, &forged, sid, rq, t, hashes, nh);
  assert_false(store_auth_verify(xsig, STORE_AUTH_DELETE, f.k.id, g.k.pk, sid, rq, t, hashes, nh));
  /* the same check by hand: the message is the documented one, so only the
   * ID check refuses it */
  memcpy(msg, "roost-delete-v1", 15);
  memcpy(msg + 15, f.k.id, 32);
  memcpy(msg + 47, sid, 32);
  memcpy(msg + 79, rq, 32);
  put_be(msg + 111, t, 8);
  memcpy(msg + 119, hashes, nh * 16);
  assert_int_equal(crypto_sign_verify_detached(xsig, msg, 119 + nh * 16, g.k.pk), 0);
  /* signed by another mailbox but presented as f's */
  uint8_t gsig[DHT_SIG_LEN];
  store_auth_sign(gsig, STORE_AUTH_FETCH, &g.k, sid, rq, t, NULL, 0);
  assert_true(store_auth_verify(gsig, STORE_AUTH_FETCH, g.k.id, g.k.pk, sid, rq, t, NULL, 0));
  assert_false(store_auth_verify(gsig, STORE_AUTH_FETCH, f.k.id, f.k.pk, sid, rq, t, NULL, 0));

  /* the bounds of the hash count: 1 and STORE_DEL_MAX sign and verify */
  const size_t okn[] = {1, STORE_DEL_MAX};
  for (size_t i = 0; i < 2; i++) {
    store_auth_sign(dsig, STORE_AUTH_DELETE, &f.k, sid, rq, t, hashes, okn[i]);
    assert_true(
        store_auth_verify(dsig, STORE_AUTH_DELETE, f.k.id, f.k.pk, sid, rq, t, hashes, okn[i]));
  }
  /* a count without hashes (a caller's bug) is refused, not read */
  assert_false(store_auth_verify(dsig, STORE_AUTH_DELETE, f.k.id, f.k.pk, sid, rq, t, NULL, 1));
  /* bad op or count: refused by verify, and sign writes a signature that
   * verifies as nothing */
  const struct {
    int op;
    size_t n;
  } bad[] = {
      {0, 0},
      {3, 0},
      {-1, 0},
      {STORE_AUTH_FETCH, 1},
      {STORE_AUTH_DELETE, 0},
      {STORE_AUTH_DELETE, STORE_DEL_MAX + 1},
  };
  const uint8_t zero[DHT_SIG_LEN] = {0};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint8_t s[DHT_SIG_LEN];
    store_auth_sign(s, bad[i].op, &f.k, sid, rq, t, hashes, bad[i].n);
    assert_memory_equal(s, zero, DHT_SIG_LEN);
    assert_false(store_auth_verify(s, bad[i].op, f.k.id, f.k.pk, sid, rq, t, hashes, bad[i].n));
    /* even a real signature under a bad op or count is refused, and so is
     * the mailbox key's signature of the empty message */
    assert_int_equal(crypto_sign_detached(s, NULL, hashes, 0, f.k.sk), 0);
    assert_false(store_auth_verify(s, bad[i].op, f.k.id, f.k.pk, sid, rq, t, hashes, bad[i].n));
    assert_false(store_auth_verify(fsig, bad[i].op, f.k.id, f.k.pk, sid, rq, t, hashes, bad[i].n));
  }
  /* a deposit signature is no FETCH (distinct labels) */
  uint8_t depsig[DHT_SIG_LEN];
  store_deposit_sign(depsig, &f.k, t, msg, 8);
  assert_false(store_auth_verify(depsig, STORE_AUTH_FETCH, f.k.id, f.k.pk, sid, rq, t, NULL, 0));
}

int main(void) {
  if (sodium_init() < 0)
    return 1;
  g_seed = tu_seed("store_crypto");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_strerror),
      cmocka_unit_test(test_pair_symmetric),
      cmocka_unit_test(test_pair_bad_keys),
      cmocka_unit_test(test_kat_pair_mbox),
      cmocka_unit_test(test_kat_item_hash),
      cmocka_unit_test(test_kat_seal_layout),
      cmocka_unit_test(test_mbox_direction_epoch),
      cmocka_unit_test(test_epoch_of),
      cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_toobig),
      cmocka_unit_test(test_open_wrong_keys),
      cmocka_unit_test(test_open_flipped),
      cmocka_unit_test(test_open_sizes),
      cmocka_unit_test(test_open_bad_plaintext),
      cmocka_unit_test(test_deposit),
      cmocka_unit_test(test_receipt),
      cmocka_unit_test(test_auth),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

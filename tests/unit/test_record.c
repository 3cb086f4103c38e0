/*
 * test_record.c - signed peer records (dht_record.c) and the store of records
 * held for others (dht_recstore.c).
 *
 * Records: sign/parse/verify round trips with 0, 1 and 8 addresses (both
 * families, every type, the 275-byte version-1 and 429-byte version-2
 * maxima; introducers); the signer's refusals; a
 * flipped bit in any byte of the signed part or of the signature fails
 * verification, and so does a signature made without the domain prefix; the
 * parser refuses, in records written byte by byte here (and correctly signed,
 * so that only the layout is wrong): a wrong version, 9 addresses, address
 * lengths other than 6 and 18, address types 0 and 5, port 0, bytes between
 * the addresses and the signature, a count that does not match the entries,
 * and every truncation of a valid record.
 *
 * Store: a newer sequence number replaces, an older one or an equal one with
 * other bytes is STALE, an equal one with the same bytes is OK; expired
 * records are refused and dropped by dht_recstore_expire; at the cap a record
 * farther than everything stored is refused with FULL while a closer one
 * evicts the farthest (and an expired one gives way first); out of memory
 * leaves the store as it was; a binary search finds each of many records.
 *
 * Seeded (identities, addresses, order): the seed is printed and
 * ROOST_SEED=<n> replays a run.
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

static uint64_t g_seed;

#define FIXED 51 /* version + pk + seq + expires + flags + naddrs */
#define NOW_S 1700000000ull

/* ---- helpers ------------------------------------------------------------- */

static dht_addr rand_addr(tu_rng *r, int family) {
  dht_addr a;
  memset(&a, 0, sizeof a);
  a.family = (uint8_t)family;
  tu_rng_bytes(r, a.ip, family == DHT_AF_INET ? 4 : 16);
  a.port = (uint16_t)(1 + tu_rng_below(r, 65535));
  return a;
}

/* A record of identity id with n addresses: families alternate, types
 * cycle through 1..4. */
static void make_rec(dht_record *rec, const dht_identity *id, int n, tu_rng *r) {
  memset(rec, 0, sizeof *rec);
  memcpy(rec->pk, id->pk, DHT_PK_LEN);
  rec->seq = tu_rng_u64(r);
  rec->expires_unix_s = NOW_S + 3600;
  rec->flags = (uint8_t)tu_rng_below(r, 256);
  rec->naddrs = (uint8_t)n;
  for (int i = 0; i < n; i++) {
    rec->addrs[i].type = (uint8_t)(DHT_ADDR_LAN + i % 4);
    rec->addrs[i].addr = rand_addr(r, i % 2 ? DHT_AF_INET6 : DHT_AF_INET);
  }
}

static void assert_rec_equal(const dht_record *a, const dht_record *b) {
  assert_memory_equal(a->pk, b->pk, DHT_PK_LEN);
  assert_true(a->seq == b->seq);
  assert_true(a->expires_unix_s == b->expires_unix_s);
  assert_int_equal(a->flags, b->flags);
  assert_int_equal(a->naddrs, b->naddrs);
  for (int i = 0; i < a->naddrs; i++) {
    assert_int_equal(a->addrs[i].type, b->addrs[i].type);
    assert_int_equal(a->addrs[i].addr.family, b->addrs[i].addr.family);
    assert_true(dht_addr_eq(&a->addrs[i].addr, &b->addrs[i].addr));
  }
  assert_int_equal(a->nintro, b->nintro);
  for (int i = 0; i < a->nintro; i++) {
    assert_memory_equal(a->intro[i].pk, b->intro[i].pk, DHT_PK_LEN);
    assert_true(dht_addr_eq(&a->intro[i].addr, &b->intro[i].addr));
  }
}

/* Signs len - 64 bytes of buf in place, the way dht_record_sign does. */
static void sign_raw(uint8_t *buf, size_t len, const uint8_t sk[DHT_SK_LEN]) {
  static const uint8_t domain[16] = "roost-record-v1";
  uint8_t msg[16 + 512];
  assert_true(len >= DHT_SIG_LEN && len - DHT_SIG_LEN + 16 <= sizeof msg);
  memcpy(msg, domain, 16);
  memcpy(msg + 16, buf, len - DHT_SIG_LEN);
  crypto_sign_detached(buf + len - DHT_SIG_LEN, NULL, msg, 16 + len - DHT_SIG_LEN, sk);
}

static void put64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

/* One address entry as raw bytes: type, declared length, then len bytes. */
typedef struct raw_ent {
  uint8_t type, len;
  uint8_t bytes[32];
} raw_ent;

static raw_ent ent4(uint8_t type, uint16_t port) {
  raw_ent e = {type, 6, {192, 0, 2, 55, (uint8_t)(port >> 8), (uint8_t)port}};
  return e;
}

static raw_ent ent6(uint8_t type, uint16_t port) {
  raw_ent e = {
      type,
      18,
      {0x20, 0x01, 0x0d, 0xb8, [15] = 1, [16] = (uint8_t)(port >> 8), [17] = (uint8_t)port}};
  return e;
}

/* Writes a record byte by byte: header with naddrs_field, the entries,
 * `extra` zero bytes, and a valid signature by id.  Returns the length. */
static size_t build(uint8_t *buf, size_t cap, uint8_t version, const dht_identity *id,
                    uint8_t naddrs_field, const raw_ent *ents, int n, size_t extra) {
  size_t p = 0;
  assert_true(cap >= 512);
  buf[p++] = version;
  memcpy(buf + p, id->pk, DHT_PK_LEN);
  p += DHT_PK_LEN;
  put64(buf + p, 42);
  p += 8;
  put64(buf + p, NOW_S + 600);
  p += 8;
  buf[p++] = DHT_REC_REACHABLE;
  buf[p++] = naddrs_field;
  for (int i = 0; i < n; i++) {
    buf[p++] = ents[i].type;
    buf[p++] = ents[i].len;
    memcpy(buf + p, ents[i].bytes, ents[i].len);
    p += ents[i].len;
  }
  memset(buf + p, 0, extra);
  p += extra + DHT_SIG_LEN;
  sign_raw(buf, p, id->sk);
  return p;
}

/* ---- records ------------------------------------------------------------- */

static void roundtrip(const dht_identity *id, int n, tu_rng *r) {
  dht_record rec, got;
  make_rec(&rec, id, n, r);
  uint8_t buf[DHT_RECORD_MAX_LEN];
  dht_ssize len = dht_record_sign(&rec, id->sk, buf, sizeof buf);
  size_t want = FIXED + DHT_SIG_LEN;
  for (int i = 0; i < n; i++)
    want += 2 + (rec.addrs[i].addr.family == DHT_AF_INET ? 6 : 18);
  assert_int_equal(len, (dht_ssize)want);
  memset(&got, 0xa5, sizeof got);
  assert_int_equal(dht_record_parse(&got, buf, (size_t)len), 0);
  assert_rec_equal(&got, &rec);
  assert_int_equal(dht_record_verify(buf, (size_t)len), 0);
  /* signing is deterministic (Ed25519) and the layout canonical */
  uint8_t again[DHT_RECORD_MAX_LEN];
  assert_int_equal(dht_record_sign(&got, id->sk, again, sizeof again), len);
  assert_memory_equal(buf, again, (size_t)len);
  /* every buffer too small is refused */
  for (size_t cap = 0; cap < (size_t)len; cap += 13)
    assert_int_equal(dht_record_sign(&rec, id->sk, again, cap), DHT_ERR_NOBUF);
  assert_int_equal(dht_record_sign(&rec, id->sk, again, (size_t)len - 1), DHT_ERR_NOBUF);
}

static void test_roundtrip(void **state) {
  (void)state;
  tu_rng r;
  tu_rng_init(&r, g_seed, 1);
  dht_identity id;
  tu_identity(&id, g_seed, 1);
  for (int rep = 0; rep < 20; rep++) {
    roundtrip(&id, 0, &r);
    roundtrip(&id, 1, &r);
    roundtrip(&id, 8, &r);
    roundtrip(&id, (int)tu_rng_below(&r, 9), &r);
  }
  /* one address of each family and type */
  for (int fam = 0; fam < 2; fam++) {
    for (int type = DHT_ADDR_LAN; type <= DHT_ADDR_RELAY; type++) {
      dht_record rec, got;
      make_rec(&rec, &id, 1, &r);
      rec.addrs[0].type = (uint8_t)type;
      rec.addrs[0].addr = rand_addr(&r, fam ? DHT_AF_INET6 : DHT_AF_INET);
      uint8_t buf[DHT_RECORD_MAX_LEN];
      dht_ssize len = dht_record_sign(&rec, id.sk, buf, sizeof buf);
      assert_int_equal(len, FIXED + 2 + (fam ? 18 : 6) + DHT_SIG_LEN);
      assert_int_equal(dht_record_parse(&got, buf, (size_t)len), 0);
      assert_rec_equal(&got, &rec);
      assert_int_equal(dht_record_verify(buf, (size_t)len), 0);
    }
  }
  /* the largest version-1 record: eight IPv6 addresses, 275 bytes (the cap
   * of the nodes that know only version 1) */
  dht_record rec, got;
  make_rec(&rec, &id, 8, &r);
  for (int i = 0; i < 8; i++)
    rec.addrs[i].addr = rand_addr(&r, DHT_AF_INET6);
  uint8_t buf[DHT_RECORD_MAX_LEN];
  assert_int_equal(dht_record_sign(&rec, id.sk, buf, sizeof buf), 275);
  assert_int_equal(buf[0], 1);
  assert_int_equal(dht_record_parse(&got, buf, 275), 0);
  assert_rec_equal(&got, &rec);
  assert_int_equal(dht_record_verify(buf, 275), 0);
  /* the largest record: and three introducers at IPv6 addresses fill
   * DHT_RECORD_MAX_LEN (version 2) */
  rec.nintro = DHT_RECORD_MAX_INTRO;
  for (int i = 0; i < DHT_RECORD_MAX_INTRO; i++) {
    tu_rng_bytes(&r, rec.intro[i].pk, DHT_PK_LEN);
    rec.intro[i].addr = rand_addr(&r, DHT_AF_INET6);
  }
  assert_int_equal(dht_record_sign(&rec, id.sk, buf, sizeof buf), DHT_RECORD_MAX_LEN);
  assert_int_equal(buf[0], 2);
  assert_int_equal(dht_record_parse(&got, buf, DHT_RECORD_MAX_LEN), 0);
  assert_rec_equal(&got, &rec);
  assert_int_equal(dht_record_verify(buf, DHT_RECORD_MAX_LEN), 0);
  rec.nintro = 0;
  /* the fixed layout, big-endian */
  rec.seq = 0x0102030405060708ull;
  rec.expires_unix_s = 0x1112131415161718ull;
  rec.flags = 0x5a;
  rec.naddrs = 1;
  rec.addrs[0].type = DHT_ADDR_MAPPED;
  memset(&rec.addrs[0].addr, 0, sizeof rec.addrs[0].addr);
  rec.addrs[0].addr.family = DHT_AF_INET;
  memcpy(rec.addrs[0].addr.ip, "\x01\x02\x03\x04", 4);
  rec.addrs[0].addr.port = 0x1234;
  assert_int_equal(dht_record_sign(&rec, id.sk, buf, sizeof buf), FIXED + 8 + DHT_SIG_LEN);
  static const uint8_t head[] = {1,
                                 2,
                                 3,
                                 4,
                                 5,
                                 6,
                                 7,
                                 8,
                                 0x11,
                                 0x12,
                                 0x13,
                                 0x14,
                                 0x15,
                                 0x16,
                                 0x17,
                                 0x18,
                                 0x5a,
                                 1,
                                 DHT_ADDR_MAPPED,
                                 6,
                                 1,
                                 2,
                                 3,
                                 4,
                                 0x12,
                                 0x34};
  assert_int_equal(buf[0], DHT_RECORD_VERSION);
  assert_memory_equal(buf + 1, id.pk, DHT_PK_LEN);
  assert_memory_equal(buf + 1 + DHT_PK_LEN, head, sizeof head);
}

static void test_sign_refuses(void **state) {
  (void)state;
  tu_rng r;
  tu_rng_init(&r, g_seed, 2);
  dht_identity id;
  tu_identity(&id, g_seed, 2);
  dht_record rec;
  uint8_t buf[512];
  make_rec(&rec, &id, 8, &r);
  rec.naddrs = 9;
  assert_int_equal(dht_record_sign(&rec, id.sk, buf, sizeof buf), DHT_ERR_INVAL);
  static const uint8_t bad_types[] = {0, 5, 0xff};
  for (size_t i = 0; i < sizeof bad_types; i++) {
    make_rec(&rec, &id, 3, &r);
    rec.addrs[2].type = bad_types[i];
    assert_int_equal(dht_record_sign(&rec, id.sk, buf, sizeof buf), DHT_ERR_INVAL);
  }
  make_rec(&rec, &id, 3, &r);
  rec.addrs[1].addr.port = 0;
  assert_int_equal(dht_record_sign(&rec, id.sk, buf, sizeof buf), DHT_ERR_INVAL);
  make_rec(&rec, &id, 3, &r);
  rec.addrs[0].addr.family = DHT_AF_NONE;
  assert_int_equal(dht_record_sign(&rec, id.sk, buf, sizeof buf), DHT_ERR_INVAL);
}

static void test_bad_signature(void **state) {
  (void)state;
  tu_rng r;
  tu_rng_init(&r, g_seed, 3);
  dht_identity id, other;
  tu_identity(&id, g_seed, 3);
  tu_identity(&other, g_seed, 4);
  for (int n = 0; n <= 8; n += 4) {
    dht_record rec;
    make_rec(&rec, &id, n, &r);
    uint8_t buf[DHT_RECORD_MAX_LEN];
    dht_ssize len = dht_record_sign(&rec, id.sk, buf, sizeof buf);
    assert_true(len > 0);
    assert_int_equal(dht_record_verify(buf, (size_t)len), 0);
    /* any byte, signed part or signature, low bit or high bit */
    for (dht_ssize i = 0; i < len; i++) {
      static const uint8_t masks[] = {0x01, 0x80, 0xff};
      for (size_t m = 0; m < sizeof masks; m++) {
        buf[i] ^= masks[m];
        assert_int_equal(dht_record_verify(buf, (size_t)len), DHT_ERR_CRYPTO);
        buf[i] ^= masks[m];
      }
    }
    assert_int_equal(dht_record_verify(buf, (size_t)len), 0);
    /* cut or extended: the signature is no longer where it was */
    assert_int_equal(dht_record_verify(buf, (size_t)len - 1), DHT_ERR_CRYPTO);
    if (len < DHT_RECORD_MAX_LEN) {
      uint8_t longer[DHT_RECORD_MAX_LEN + 1];
      memcpy(longer, buf, (size_t)len);
      longer[len] = 0;
      assert_int_equal(dht_record_verify(longer, (size_t)len + 1), DHT_ERR_CRYPTO);
    }
    /* someone else's signature over the same bytes */
    sign_raw(buf, (size_t)len, other.sk);
    assert_int_equal(dht_record_verify(buf, (size_t)len), DHT_ERR_CRYPTO);
    /* the owner's signature without the domain prefix */
    crypto_sign_detached(buf + len - DHT_SIG_LEN, NULL, buf, (size_t)len - DHT_SIG_LEN, id.sk);
    assert_int_equal(dht_record_verify(buf, (size_t)len), DHT_ERR_CRYPTO);
  }
  /* a record that claims another owner's key but is signed by us */
  dht_record rec;
  make_rec(&rec, &other, 1, &r);
  uint8_t buf[DHT_RECORD_MAX_LEN];
  dht_ssize len = dht_record_sign(&rec, id.sk, buf, sizeof buf);
  assert_true(len > 0);
  assert_int_equal(dht_record_verify(buf, (size_t)len), DHT_ERR_CRYPTO);
  /* too short or too long to be a record at all */
  uint8_t big[DHT_RECORD_MAX_LEN + 1] = {1};
  assert_int_equal(dht_record_verify(big, 0), DHT_ERR_CRYPTO);
  assert_int_equal(dht_record_verify(big, FIXED + DHT_SIG_LEN - 1), DHT_ERR_CRYPTO);
  assert_int_equal(dht_record_verify(big, sizeof big), DHT_ERR_CRYPTO);
}

static void expect_proto(const uint8_t *buf, size_t len) {
  dht_record rec;
  assert_int_equal(dht_record_parse(&rec, buf, len), DHT_ERR_PROTO);
}

static void test_parse_rejects(void **state) {
  (void)state;
  dht_identity id;
  tu_identity(&id, g_seed, 5);
  uint8_t buf[512];
  dht_record rec;
  raw_ent ents[9];
  for (int i = 0; i < 9; i++)
    ents[i] = i % 2 ? ent6(DHT_ADDR_OBSERVED, 4000) : ent4(DHT_ADDR_LAN, 4000);

  /* the builder itself makes records that parse and verify */
  size_t len = build(buf, sizeof buf, 1, &id, 2, ents, 2, 0);
  assert_int_equal(dht_record_parse(&rec, buf, len), 0);
  assert_int_equal(dht_record_verify(buf, len), 0);
  assert_int_equal(rec.naddrs, 2);
  assert_int_equal(rec.addrs[0].addr.family, DHT_AF_INET);
  assert_int_equal(rec.addrs[1].addr.family, DHT_AF_INET6);
  assert_int_equal(rec.addrs[1].type, DHT_ADDR_OBSERVED);
  assert_int_equal(rec.addrs[0].addr.port, 4000);
  len = build(buf, sizeof buf, 1, &id, 8, ents, 8, 0);
  assert_int_equal(dht_record_parse(&rec, buf, len), 0);

  /* wrong version */
  static const uint8_t versions[] = {0, 2, 0x81, 0xff};
  for (size_t i = 0; i < sizeof versions; i++) {
    len = build(buf, sizeof buf, versions[i], &id, 1, ents, 1, 0);
    assert_int_equal(dht_record_verify(buf, len), 0);
    expect_proto(buf, len);
  }
  /* nine addresses, well formed otherwise (and under the length cap) */
  raw_ent v4s[9];
  for (int i = 0; i < 9; i++)
    v4s[i] = ent4(DHT_ADDR_LAN, (uint16_t)(1000 + i));
  len = build(buf, sizeof buf, 1, &id, 9, v4s, 9, 0);
  assert_true(len <= DHT_RECORD_MAX_LEN);
  assert_int_equal(dht_record_verify(buf, len), 0);
  expect_proto(buf, len);
  len = build(buf, sizeof buf, 1, &id, 0xff, v4s, 9, 0);
  expect_proto(buf, len);
  /* address lengths other than 6 and 18 (the bytes are there) */
  static const uint8_t lens[] = {0, 1, 5, 7, 16, 17, 19};
  for (size_t i = 0; i < sizeof lens; i++) {
    raw_ent e[2] = {ent4(DHT_ADDR_LAN, 4000), ent6(DHT_ADDR_LAN, 4000)};
    e[1].len = lens[i];
    memset(e[1].bytes, 0x33, sizeof e[1].bytes); /* no zero port anywhere */
    len = build(buf, sizeof buf, 1, &id, 2, e, 2, 0);
    assert_int_equal(dht_record_verify(buf, len), 0);
    expect_proto(buf, len);
  }
  /* unknown address types */
  static const uint8_t types[] = {0, 5, 0x80, 0xff};
  for (size_t i = 0; i < sizeof types; i++) {
    raw_ent e[2] = {ent4(DHT_ADDR_LAN, 4000), ent4(types[i], 4000)};
    len = build(buf, sizeof buf, 1, &id, 2, e, 2, 0);
    expect_proto(buf, len);
    e[1] = ent6(types[i], 4000);
    len = build(buf, sizeof buf, 1, &id, 2, e, 2, 0);
    expect_proto(buf, len);
  }
  /* port 0, either family, first or last entry */
  for (int fam = 0; fam < 2; fam++) {
    raw_ent e[3] = {ent4(DHT_ADDR_LAN, 1), ent6(DHT_ADDR_LAN, 1), ent4(DHT_ADDR_LAN, 1)};
    raw_ent z = fam ? ent6(DHT_ADDR_RELAY, 0) : ent4(DHT_ADDR_RELAY, 0);
    e[0] = z;
    len = build(buf, sizeof buf, 1, &id, 3, e, 3, 0);
    expect_proto(buf, len);
    e[0] = ent4(DHT_ADDR_LAN, 1);
    e[2] = z;
    len = build(buf, sizeof buf, 1, &id, 3, e, 3, 0);
    expect_proto(buf, len);
  }
  /* bytes between the addresses and the signature */
  for (size_t extra = 1; extra <= 3; extra++) {
    len = build(buf, sizeof buf, 1, &id, 1, ents, 1, extra);
    assert_int_equal(dht_record_verify(buf, len), 0);
    expect_proto(buf, len);
    len = build(buf, sizeof buf, 1, &id, 0, ents, 0, extra);
    expect_proto(buf, len);
  }
  /* a count that does not match the entries */
  len = build(buf, sizeof buf, 1, &id, 1, ents, 0, 0);
  expect_proto(buf, len);
  len = build(buf, sizeof buf, 1, &id, 2, ents, 1, 0);
  expect_proto(buf, len);
  len = build(buf, sizeof buf, 1, &id, 0, ents, 1, 0);
  expect_proto(buf, len);
  len = build(buf, sizeof buf, 1, &id, 3, ents, 4, 0);
  expect_proto(buf, len);
  /* an entry whose length runs into the signature */
  {
    raw_ent e = ent4(DHT_ADDR_LAN, 4000);
    e.len = 18;
    len = build(buf, sizeof buf, 1, &id, 1, &e, 1, 0);
    len -= 12; /* only 6 bytes of it precede the signature */
    sign_raw(buf, len, id.sk);
    expect_proto(buf, len);
  }
  /* longer than any record */
  {
    raw_ent e[8];
    for (int i = 0; i < 8; i++)
      e[i] = ent6(DHT_ADDR_LAN, 9);
    len = build(buf, sizeof buf, 1, &id, 8, e, 8, 0);
    assert_int_equal(len, 275);
    assert_int_equal(dht_record_parse(&rec, buf, len), 0);
    len = build(buf, sizeof buf, 1, &id, 8, e, 8, 1);
    expect_proto(buf, len);
  }
}

/* Version 2: one to three introducers after the addresses, each a key, a
 * length and an address; anything else is refused. */
static void test_introducers(void **state) {
  (void)state;
  tu_rng r;
  tu_rng_init(&r, g_seed, 11);
  dht_identity id;
  tu_identity(&id, g_seed, 11);
  for (int rep = 0; rep < 20; rep++) {
    dht_record rec, got;
    make_rec(&rec, &id, (int)tu_rng_below(&r, 9), &r);
    rec.nintro = (uint8_t)(1 + tu_rng_below(&r, DHT_RECORD_MAX_INTRO));
    size_t want = FIXED + 1 + DHT_SIG_LEN;
    for (int i = 0; i < rec.naddrs; i++)
      want += 2 + (rec.addrs[i].addr.family == DHT_AF_INET ? 6 : 18);
    for (int i = 0; i < rec.nintro; i++) {
      tu_rng_bytes(&r, rec.intro[i].pk, DHT_PK_LEN);
      rec.intro[i].addr = rand_addr(&r, tu_rng_below(&r, 2) ? DHT_AF_INET6 : DHT_AF_INET);
      want += DHT_PK_LEN + 1 + (rec.intro[i].addr.family == DHT_AF_INET ? 6 : 18);
    }
    uint8_t buf[DHT_RECORD_MAX_LEN];
    dht_ssize len = dht_record_sign(&rec, id.sk, buf, sizeof buf);
    assert_int_equal(len, (dht_ssize)want);
    assert_int_equal(buf[0], 2);
    assert_int_equal(dht_record_parse(&got, buf, (size_t)len), 0);
    assert_rec_equal(&got, &rec);
    assert_int_equal(dht_record_verify(buf, (size_t)len), 0);
    /* every cut is refused */
    for (dht_ssize cut = 0; cut < len; cut++) {
      uint8_t *p = test_malloc(cut ? (size_t)cut : 1);
      memcpy(p, buf, (size_t)cut);
      expect_proto(p, (size_t)cut);
      test_free(p);
    }
    /* the same record without introducers is version 1 */
    rec.nintro = 0;
    len = dht_record_sign(&rec, id.sk, buf, sizeof buf);
    assert_true(len > 0);
    assert_int_equal(buf[0], 1);
    assert_int_equal(dht_record_parse(&got, buf, (size_t)len), 0);
    assert_int_equal(got.nintro, 0);
  }
  /* signing refuses too many introducers and an introducer without a port */
  dht_record rec;
  uint8_t buf[DHT_RECORD_MAX_LEN + 64];
  make_rec(&rec, &id, 1, &r);
  rec.nintro = DHT_RECORD_MAX_INTRO + 1;
  assert_int_equal(dht_record_sign(&rec, id.sk, buf, sizeof buf), DHT_ERR_INVAL);
  rec.nintro = 1;
  rec.intro[0].addr = rand_addr(&r, DHT_AF_INET);
  rec.intro[0].addr.port = 0;
  assert_int_equal(dht_record_sign(&rec, id.sk, buf, sizeof buf), DHT_ERR_INVAL);
  rec.intro[0].addr.family = DHT_AF_NONE;
  rec.intro[0].addr.port = 7;
  assert_int_equal(dht_record_sign(&rec, id.sk, buf, sizeof buf), DHT_ERR_INVAL);
  /* byte by byte: a version-2 record with 0 or 4 introducers, a bad
   * introducer length, an introducer section in a version-1 record */
  raw_ent a = ent4(DHT_ADDR_OBSERVED, 7464);
  uint8_t raw[512];
  for (int k = 0; k < 5; k++) {
    size_t len = build(raw, sizeof raw, 2, &id, 1, &a, 1, 0) - DHT_SIG_LEN;
    uint8_t nin = k == 0 ? 0 : k == 1 ? 4 : 1;
    raw[len++] = nin;
    int entries = nin > 3 ? 4 : nin;
    for (int i = 0; i < entries; i++) {
      memset(raw + len, 0x11, DHT_PK_LEN);
      len += DHT_PK_LEN;
      raw[len++] = k == 2 ? 5 : 6; /* 5: no address has that length */
      memcpy(raw + len, (const uint8_t[]){198, 18, 0, 1, 0x1d, 0x28}, 6);
      len += k == 2 ? 5 : 6;
    }
    if (k == 4)
      raw[0] = 1; /* a version-1 record has no introducer section */
    len += DHT_SIG_LEN;
    sign_raw(raw, len, id.sk);
    assert_int_equal(dht_record_verify(raw, len), 0);
    dht_record got;
    if (k == 3) { /* well formed: accepted */
      assert_int_equal(dht_record_parse(&got, raw, len), 0);
      assert_int_equal(got.nintro, 1);
      assert_int_equal(got.intro[0].addr.port, 7464);
    } else {
      expect_proto(raw, len);
    }
  }
  /* a version this code does not know */
  size_t len = build(raw, sizeof raw, 3, &id, 1, &a, 1, 0);
  expect_proto(raw, len);
}

static void test_parse_truncated(void **state) {
  (void)state;
  tu_rng r;
  tu_rng_init(&r, g_seed, 6);
  dht_identity id;
  tu_identity(&id, g_seed, 6);
  for (int n = 0; n <= 8; n++) {
    dht_record rec;
    make_rec(&rec, &id, n, &r);
    uint8_t buf[DHT_RECORD_MAX_LEN];
    dht_ssize len = dht_record_sign(&rec, id.sk, buf, sizeof buf);
    assert_true(len > 0);
    for (dht_ssize cut = 0; cut < len; cut++) {
      /* a copy of exactly cut bytes, so ASan sees any read past it */
      uint8_t *p = test_malloc(cut ? (size_t)cut : 1);
      memcpy(p, buf, (size_t)cut);
      expect_proto(p, (size_t)cut);
      test_free(p);
    }
  }
}

/* ---- the record store -------------------------------------------------- */

typedef struct srec {
  dht_identity id;
  uint8_t nid[DHT_ID_LEN];
  dht_record rec;
  uint8_t bytes[DHT_RECORD_MAX_LEN];
  size_t len;
} srec;

static void srec_make(srec *s, uint64_t idx, uint64_t seq, uint64_t expires, tu_rng *r) {
  tu_identity(&s->id, g_seed, idx);
  dht_id_from_pk(s->nid, s->id.pk);
  make_rec(&s->rec, &s->id, (int)tu_rng_below(r, 3), r);
  s->rec.seq = seq;
  s->rec.expires_unix_s = expires;
  dht_ssize n = dht_record_sign(&s->rec, s->id.sk, s->bytes, sizeof s->bytes);
  assert_true(n > 0);
  s->len = (size_t)n;
  dht_record chk;
  assert_int_equal(dht_record_parse(&chk, s->bytes, s->len), 0);
}

/* The same owner, another seq/expiry (new bytes, new signature). */
static void srec_resign(srec *s, uint64_t seq, uint64_t expires) {
  s->rec.seq = seq;
  s->rec.expires_unix_s = expires;
  dht_ssize n = dht_record_sign(&s->rec, s->id.sk, s->bytes, sizeof s->bytes);
  assert_true(n > 0);
  s->len = (size_t)n;
}

static int put(dht_recstore *rs, const srec *s, uint64_t now, const dht_mem *mem) {
  (void)mem;
  return dht_recstore_put(rs, &s->rec, s->bytes, s->len, now);
}

static void expect_stored(const dht_recstore *rs, const srec *s, uint64_t now) {
  const dht_recstore_ent *e = dht_recstore_get(rs, s->nid, now);
  assert_non_null(e);
  assert_memory_equal(e->id, s->nid, DHT_ID_LEN);
  assert_true(e->seq == s->rec.seq);
  assert_true(e->expires_unix_s == s->rec.expires_unix_s);
  assert_int_equal(e->len, s->len);
  assert_memory_equal(e->bytes, s->bytes, s->len);
}

static void assert_sorted(const dht_recstore *rs) {
  for (int i = 1; i < rs->n; i++)
    assert_true(memcmp(rs->v[i - 1].id, rs->v[i].id, DHT_ID_LEN) < 0);
}

static void test_store_seq(void **state) {
  (void)state;
  tu_rng r;
  tu_rng_init(&r, g_seed, 7);
  uint8_t self[DHT_ID_LEN];
  tu_rng_bytes(&r, self, sizeof self);
  dht_recstore rs;
  const dht_mem *mem = &dht_mem_libc;
  dht_recstore_init(&rs, self, 16, mem);
  srec s, first;
  srec_make(&s, 100, 5, NOW_S + 3600, &r);
  assert_int_equal(put(&rs, &s, NOW_S, mem), DHT_ACK_OK);
  expect_stored(&rs, &s, NOW_S);
  assert_int_equal(rs.n, 1);
  /* newer replaces */
  srec_resign(&s, 6, NOW_S + 3000);
  assert_int_equal(put(&rs, &s, NOW_S, mem), DHT_ACK_OK);
  expect_stored(&rs, &s, NOW_S);
  assert_int_equal(rs.n, 1);
  first = s;
  /* older is stale and changes nothing */
  srec_resign(&s, 4, NOW_S + 3600);
  assert_int_equal(put(&rs, &s, NOW_S, mem), DHT_ACK_STALE);
  expect_stored(&rs, &first, NOW_S);
  /* equal seq, other bytes: a conflict, the first one stays */
  srec_resign(&s, 6, NOW_S + 3601);
  assert_int_equal(put(&rs, &s, NOW_S, mem), DHT_ACK_STALE);
  expect_stored(&rs, &first, NOW_S);
  s = first;
  s.bytes[s.len - 1] ^= 1; /* same fields, different signature bytes */
  assert_int_equal(put(&rs, &s, NOW_S, mem), DHT_ACK_STALE);
  expect_stored(&rs, &first, NOW_S);
  /* equal seq, same bytes: fine (a republish) */
  assert_int_equal(put(&rs, &first, NOW_S, mem), DHT_ACK_OK);
  expect_stored(&rs, &first, NOW_S);
  assert_int_equal(rs.n, 1);
  /* a much newer one */
  s = first;
  srec_resign(&s, UINT64_MAX, NOW_S + 10);
  assert_int_equal(put(&rs, &s, NOW_S, mem), DHT_ACK_OK);
  expect_stored(&rs, &s, NOW_S);
  /* too long to be a record */
  assert_int_equal(dht_recstore_put(&rs, &s.rec, s.bytes, DHT_RECORD_MAX_LEN + 1, NOW_S),
                   DHT_ACK_STALE);
  assert_int_equal(rs.n, 1);
  dht_recstore_free(&rs);
  assert_int_equal(rs.n, 0);
  assert_null(rs.v);
}

static void test_store_expiry(void **state) {
  (void)state;
  tu_rng r;
  tu_rng_init(&r, g_seed, 8);
  uint8_t self[DHT_ID_LEN];
  tu_rng_bytes(&r, self, sizeof self);
  dht_recstore rs;
  const dht_mem *mem = &dht_mem_libc;
  dht_recstore_init(&rs, self, 16, mem);
  srec a, b, c;
  /* expired on arrival (or expiring this second): refused */
  srec_make(&a, 200, 1, NOW_S, &r);
  assert_int_equal(put(&rs, &a, NOW_S, mem), DHT_ACK_STALE);
  srec_resign(&a, 1, NOW_S - 1);
  assert_int_equal(put(&rs, &a, NOW_S, mem), DHT_ACK_STALE);
  assert_int_equal(rs.n, 0);
  assert_null(dht_recstore_get(&rs, a.nid, NOW_S - 10));

  srec_resign(&a, 10, NOW_S + 100);
  srec_make(&b, 201, 10, NOW_S + 200, &r);
  srec_make(&c, 202, 10, NOW_S + 300, &r);
  assert_int_equal(put(&rs, &a, NOW_S, mem), DHT_ACK_OK);
  assert_int_equal(put(&rs, &b, NOW_S, mem), DHT_ACK_OK);
  assert_int_equal(put(&rs, &c, NOW_S, mem), DHT_ACK_OK);
  assert_int_equal(rs.n, 3);
  assert_int_equal(dht_recstore_expire(&rs, NOW_S + 99), 0);
  assert_int_equal(rs.n, 3);
  /* past its expiry a record is not served, even before it is dropped */
  assert_null(dht_recstore_get(&rs, a.nid, NOW_S + 100));
  expect_stored(&rs, &b, NOW_S + 100);
  assert_int_equal(rs.n, 3);
  /* an expired entry gives way to any fresh record of its owner, even an
   * older sequence number */
  srec a2 = a;
  srec_resign(&a2, 3, NOW_S + 500);
  assert_int_equal(put(&rs, &a2, NOW_S + 150, mem), DHT_ACK_OK);
  expect_stored(&rs, &a2, NOW_S + 150);
  /* expire drops exactly the expired ones */
  assert_int_equal(dht_recstore_expire(&rs, NOW_S + 200), 1); /* b */
  assert_int_equal(rs.n, 2);
  assert_null(dht_recstore_get(&rs, b.nid, NOW_S));
  expect_stored(&rs, &a2, NOW_S + 200);
  expect_stored(&rs, &c, NOW_S + 200);
  assert_sorted(&rs);
  assert_int_equal(dht_recstore_expire(&rs, NOW_S + 200), 0);
  assert_int_equal(dht_recstore_expire(&rs, NOW_S + 1000), 2);
  assert_int_equal(rs.n, 0);
  dht_recstore_free(&rs);
}

static const uint8_t *g_self;

static int by_distance(const void *a, const void *b) {
  return dht_id_cmp_dist(((const srec *)a)->nid, ((const srec *)b)->nid, g_self);
}

#define CAPN 40

static void test_store_cap(void **state) {
  (void)state;
  tu_rng r;
  tu_rng_init(&r, g_seed, 9);
  uint8_t self[DHT_ID_LEN];
  tu_rng_bytes(&r, self, sizeof self);
  static srec s[CAPN];
  for (int i = 0; i < CAPN; i++)
    srec_make(&s[i], 300 + (uint64_t)i, 1, NOW_S + 3600, &r);
  g_self = self;
  qsort(s, CAPN, sizeof s[0], by_distance); /* s[0] is the closest to self */
  const dht_mem *mem = &dht_mem_libc;

  dht_recstore rs;
  dht_recstore_init(&rs, self, 4, mem);
  for (int i = 10; i < 14; i++)
    assert_int_equal(put(&rs, &s[i], NOW_S, mem), DHT_ACK_OK);
  assert_int_equal(rs.n, 4);
  /* farther than everything stored: refused, nothing changes */
  assert_int_equal(put(&rs, &s[30], NOW_S, mem), DHT_ACK_FULL);
  assert_int_equal(put(&rs, &s[14], NOW_S, mem), DHT_ACK_FULL);
  assert_int_equal(rs.n, 4);
  assert_null(dht_recstore_get(&rs, s[30].nid, NOW_S));
  for (int i = 10; i < 14; i++)
    expect_stored(&rs, &s[i], NOW_S);
  /* an update of a stored record is not an insertion: fine at the cap */
  srec_resign(&s[13], 2, NOW_S + 3600);
  assert_int_equal(put(&rs, &s[13], NOW_S, mem), DHT_ACK_OK);
  expect_stored(&rs, &s[13], NOW_S);
  /* closer: the farthest (s[13]) gives way */
  assert_int_equal(put(&rs, &s[2], NOW_S, mem), DHT_ACK_OK);
  assert_int_equal(rs.n, 4);
  assert_null(dht_recstore_get(&rs, s[13].nid, NOW_S));
  expect_stored(&rs, &s[2], NOW_S);
  for (int i = 10; i < 13; i++)
    expect_stored(&rs, &s[i], NOW_S);
  assert_sorted(&rs);
  /* s[13] is now the farther one: refused */
  assert_int_equal(put(&rs, &s[13], NOW_S, mem), DHT_ACK_FULL);
  /* the closest of all evicts s[12], then s[11] */
  assert_int_equal(put(&rs, &s[0], NOW_S, mem), DHT_ACK_OK);
  assert_null(dht_recstore_get(&rs, s[12].nid, NOW_S));
  assert_int_equal(put(&rs, &s[1], NOW_S, mem), DHT_ACK_OK);
  assert_null(dht_recstore_get(&rs, s[11].nid, NOW_S));
  int order[4] = {0, 1, 2, 10};
  for (int i = 0; i < 4; i++)
    expect_stored(&rs, &s[order[i]], NOW_S);
  assert_sorted(&rs);
  /* an expired entry makes room before distance is considered: a far
   * record gets in and the expired one (not the farthest) goes */
  srec_resign(&s[1], 5, NOW_S + 10);
  assert_int_equal(put(&rs, &s[1], NOW_S, mem), DHT_ACK_OK);
  assert_int_equal(put(&rs, &s[35], NOW_S + 10, mem), DHT_ACK_OK);
  assert_int_equal(rs.n, 4);
  expect_stored(&rs, &s[35], NOW_S + 10);
  expect_stored(&rs, &s[10], NOW_S + 10);
  assert_null(dht_recstore_get(&rs, s[1].nid, NOW_S));
  dht_recstore_free(&rs);

  /* max 0: nothing is ever stored */
  dht_recstore_init(&rs, self, 0, mem);
  assert_int_equal(put(&rs, &s[0], NOW_S, mem), DHT_ACK_FULL);
  assert_int_equal(rs.n, 0);
  dht_recstore_free(&rs);
}

#define MANY 600

static void test_store_many(void **state) {
  (void)state;
  tu_rng r;
  tu_rng_init(&r, g_seed, 10);
  uint8_t self[DHT_ID_LEN];
  tu_rng_bytes(&r, self, sizeof self);
  srec *s = test_malloc(MANY * sizeof *s);
  for (int i = 0; i < MANY; i++)
    srec_make(&s[i], 1000 + (uint64_t)i, 1 + tu_rng_below(&r, 100), NOW_S + 3600, &r);
  tu_alloc al;
  memset(&al, 0, sizeof al);
  dht_mem mem = tu_alloc_mem(&al);
  dht_recstore rs;
  dht_recstore_init(&rs, self, 2048, &mem);
  for (int i = 0; i < MANY; i++) {
    assert_int_equal(put(&rs, &s[i], NOW_S, &mem), DHT_ACK_OK);
    assert_int_equal(rs.n, i + 1);
    /* what was just stored and a random earlier one are found */
    expect_stored(&rs, &s[i], NOW_S);
    expect_stored(&rs, &s[tu_rng_below(&r, (uint64_t)i + 1)], NOW_S);
  }
  assert_sorted(&rs);
  assert_true(rs.alloc <= 2048);
  for (int i = 0; i < MANY; i++)
    expect_stored(&rs, &s[i], NOW_S);
  /* IDs that are not there, including ones next to stored ones */
  for (int i = 0; i < 200; i++) {
    uint8_t id[DHT_ID_LEN];
    tu_rng_bytes(&r, id, sizeof id);
    assert_null(dht_recstore_get(&rs, id, NOW_S));
    memcpy(id, s[i].nid, DHT_ID_LEN);
    id[DHT_ID_LEN - 1] ^= 1;
    assert_null(dht_recstore_get(&rs, id, NOW_S));
  }
  assert_null(dht_recstore_get(&rs, rs.v[0].id, NOW_S + 3600));
  /* updates in random order keep the order and the count */
  for (int k = 0; k < 200; k++) {
    srec *x = &s[tu_rng_below(&r, MANY)];
    srec_resign(x, x->rec.seq + 1, NOW_S + 3600);
    assert_int_equal(put(&rs, x, NOW_S, &mem), DHT_ACK_OK);
    expect_stored(&rs, x, NOW_S);
  }
  assert_int_equal(rs.n, MANY);
  assert_sorted(&rs);
  dht_recstore_free(&rs);
  assert_int_equal(al.live, 0);
  test_free(s);
}

static void test_store_nomem(void **state) {
  (void)state;
  tu_rng r;
  tu_rng_init(&r, g_seed, 11);
  uint8_t self[DHT_ID_LEN];
  tu_rng_bytes(&r, self, sizeof self);
  static srec s[20];
  for (int i = 0; i < 20; i++)
    srec_make(&s[i], 2000 + (uint64_t)i, 1, NOW_S + 3600, &r);
  tu_alloc al;
  memset(&al, 0, sizeof al);
  dht_mem mem = tu_alloc_mem(&al);
  dht_recstore rs;
  dht_recstore_init(&rs, self, 100, &mem);
  /* first growth fails: nothing stored; then it works */
  al.fail_at = 1;
  assert_int_equal(put(&rs, &s[0], NOW_S, &mem), DHT_ERR_NOMEM);
  assert_int_equal(rs.n, 0);
  assert_null(dht_recstore_get(&rs, s[0].nid, NOW_S));
  for (int i = 0; i < 8; i++)
    assert_int_equal(put(&rs, &s[i], NOW_S, &mem), DHT_ACK_OK);
  /* the next growth (8 -> 16) fails: the eight stored stay intact */
  al.fail_at = al.calls + 1;
  assert_int_equal(put(&rs, &s[8], NOW_S, &mem), DHT_ERR_NOMEM);
  assert_int_equal(rs.n, 8);
  for (int i = 0; i < 8; i++)
    expect_stored(&rs, &s[i], NOW_S);
  assert_null(dht_recstore_get(&rs, s[8].nid, NOW_S));
  assert_int_equal(put(&rs, &s[8], NOW_S, &mem), DHT_ACK_OK);
  for (int i = 9; i < 20; i++)
    assert_int_equal(put(&rs, &s[i], NOW_S, &mem), DHT_ACK_OK);
  for (int i = 0; i < 20; i++)
    expect_stored(&rs, &s[i], NOW_S);
  assert_sorted(&rs);
  dht_recstore_free(&rs);
  assert_int_equal(al.live, 0);
}

int main(void) {
  if (sodium_init() < 0)
    return 1;
  g_seed = tu_seed("record");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip),       cmocka_unit_test(test_sign_refuses),
      cmocka_unit_test(test_bad_signature),   cmocka_unit_test(test_parse_rejects),
      cmocka_unit_test(test_parse_truncated), cmocka_unit_test(test_introducers),
      cmocka_unit_test(test_store_seq),       cmocka_unit_test(test_store_expiry),
      cmocka_unit_test(test_store_cap),       cmocka_unit_test(test_store_many),
      cmocka_unit_test(test_store_nomem),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

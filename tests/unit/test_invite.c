/*
 * test_invite.c - invites (node/node_invite.c): round trip, every refusal
 * (prefix, base32, length, checksum, version, fields, signature, expiry),
 * a changed bit anywhere in the text or in the signed blob, expiry
 * boundaries, display names, and the strict base32 and size helpers of
 * node_text.c.
 */
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "node.h"

static dht_identity ident;
static const uint64_t EXP = 1900000000; /* 2030-03-17 */

static int setup(void **state) {
  (void)state;
  assert_true(sodium_init() >= 0);
  uint8_t seed[32];
  memset(seed, 7, sizeof seed);
  dht_identity_from_seed(&ident, seed);
  return 0;
}

static void full_invite(node_invite *inv) {
  memset(inv, 0, sizeof *inv);
  snprintf(inv->name, sizeof inv->name, "Ann \xc3\xa9lise");
  inv->naddrs = 2;
  assert_int_equal(node_addr_parse("192.0.2.1:7464", &inv->addrs[0]), 0);
  assert_int_equal(node_addr_parse("[2001:db8::1]:7465", &inv->addrs[1]), 0);
  inv->nhosts = 2;
  memset(inv->hosts[0].pk, 0xaa, DHT_PK_LEN);
  assert_int_equal(node_addr_parse("198.51.100.2:9000", &inv->hosts[0].addr), 0);
  memset(inv->hosts[1].pk, 0xbb, DHT_PK_LEN);
  inv->hosts[1].addr.family = DHT_AF_NONE;
  inv->expires_s = EXP;
}

static void make(char *text, size_t len) {
  node_invite inv;
  full_invite(&inv);
  assert_true(node_invite_encode(&inv, &ident, text, len) > 0);
}

static void test_round_trip(void **state) {
  (void)state;
  node_invite inv, got;
  full_invite(&inv);
  char text[NODE_INVITE_TEXT_MAX + 1], err[256] = "";
  dht_ssize n = node_invite_encode(&inv, &ident, text, sizeof text);
  assert_true(n > 0);
  assert_int_equal((size_t)n, strlen(text));
  assert_memory_equal(text, "roost-invite:", 13);
  assert_int_equal(node_invite_decode(text, EXP - 1000, &got, err, sizeof err), 0);
  assert_int_equal(got.version, 1);
  assert_memory_equal(got.pk, ident.pk, DHT_PK_LEN);
  assert_string_equal(got.name, inv.name);
  assert_int_equal(got.naddrs, 2);
  assert_true(dht_addr_eq(&got.addrs[0], &inv.addrs[0]));
  assert_true(dht_addr_eq(&got.addrs[1], &inv.addrs[1]));
  assert_int_equal(got.nhosts, 2);
  assert_memory_equal(got.hosts[0].pk, inv.hosts[0].pk, DHT_PK_LEN);
  assert_true(dht_addr_eq(&got.hosts[0].addr, &inv.hosts[0].addr));
  assert_int_equal(got.hosts[1].addr.family, DHT_AF_NONE);
  assert_int_equal(got.expires_s, EXP);
  /* white space around it (a pasted line) is fine */
  char padded[NODE_INVITE_TEXT_MAX + 8];
  snprintf(padded, sizeof padded, "  %s\r\n", text);
  assert_int_equal(node_invite_decode(padded, EXP - 1, &got, err, sizeof err), 0);

  /* the smallest and the largest invites */
  node_invite small;
  memset(&small, 0, sizeof small);
  small.expires_s = EXP;
  assert_true(node_invite_encode(&small, &ident, text, sizeof text) > 0);
  assert_int_equal(node_invite_decode(text, 0, &got, err, sizeof err), 0);
  assert_string_equal(got.name, "");
  assert_int_equal(got.naddrs + got.nhosts, 0);

  node_invite big;
  memset(&big, 0, sizeof big);
  memset(big.name, 'n', NODE_INVITE_NAME_MAX);
  big.naddrs = NODE_INVITE_MAX_ADDRS;
  for (int i = 0; i < big.naddrs; i++)
    assert_int_equal(node_addr_parse("[2001:db8::9]:1", &big.addrs[i]), 0);
  big.nhosts = STORE_MAX_HOSTS;
  for (int i = 0; i < big.nhosts; i++)
    assert_int_equal(node_addr_parse("[2001:db8::8]:2", &big.hosts[i].addr), 0);
  big.expires_s = UINT64_MAX;
  n = node_invite_encode(&big, &ident, text, sizeof text);
  assert_int_equal((size_t)n, NODE_INVITE_TEXT_MAX);
  assert_true(n <= STORE_NOTE_MAX); /* it fits in a friend request */
  assert_int_equal(node_invite_decode(text, UINT64_MAX - 1, &got, err, sizeof err), 0);
  assert_int_equal(got.nhosts, STORE_MAX_HOSTS);
  /* too small a buffer */
  assert_int_equal(node_invite_encode(&big, &ident, text, (size_t)n), -1);
}

static void test_encode_refuses(void **state) {
  (void)state;
  char text[NODE_INVITE_TEXT_MAX + 1];
  node_invite inv;
  full_invite(&inv);
  inv.naddrs = NODE_INVITE_MAX_ADDRS + 1;
  assert_int_equal(node_invite_encode(&inv, &ident, text, sizeof text), -1);
  full_invite(&inv);
  inv.nhosts = STORE_MAX_HOSTS + 1;
  assert_int_equal(node_invite_encode(&inv, &ident, text, sizeof text), -1);
  full_invite(&inv);
  inv.addrs[0].family = DHT_AF_NONE;
  assert_int_equal(node_invite_encode(&inv, &ident, text, sizeof text), -1);
  full_invite(&inv);
  snprintf(inv.name, sizeof inv.name, "tab\there");
  assert_int_equal(node_invite_encode(&inv, &ident, text, sizeof text), -1);
}

static void expect(const char *text, uint64_t now, int code, const char *needle) {
  node_invite got;
  char err[256] = "";
  assert_int_equal(node_invite_decode(text, now, &got, err, sizeof err), code);
  assert_true(strlen(err) > 10);
  if (needle && !strstr(err, needle)) {
    print_error("message '%s' lacks '%s'\n", err, needle);
    fail();
  }
}

static void test_refusals(void **state) {
  (void)state;
  char text[NODE_INVITE_TEXT_MAX + 1], bad[NODE_INVITE_TEXT_MAX + 32];
  make(text, sizeof text);
  size_t len = strlen(text);

  /* prefix */
  expect("", 0, NODE_INVITE_ERR_PREFIX, "roost-invite:");
  expect("roost-invit", 0, NODE_INVITE_ERR_PREFIX, NULL);
  snprintf(bad, sizeof bad, "Roost-invite:%s", text + 13);
  expect(bad, 0, NODE_INVITE_ERR_PREFIX, NULL);
  snprintf(bad, sizeof bad, "%s", text + 13);
  expect(bad, 0, NODE_INVITE_ERR_PREFIX, NULL);

  /* base32 alphabet: upper case, 0, 1, 8, 9, padding, space inside */
  static const char others[] = "A018=9 -_";
  for (const char *o = others; *o; o++) {
    snprintf(bad, sizeof bad, "%s", text);
    bad[40] = *o;
    expect(bad, 0, NODE_INVITE_ERR_BASE32, "character");
  }

  /* length: cut, one character more, one less, far too long */
  snprintf(bad, sizeof bad, "%.*s", (int)(len - 10), text);
  expect(bad, 0, NODE_INVITE_ERR_LENGTH, "length");
  snprintf(bad, sizeof bad, "roost-invite:abcdefgh");
  expect(bad, 0, NODE_INVITE_ERR_LENGTH, NULL);
  snprintf(bad, sizeof bad, "roost-invite:");
  expect(bad, 0, NODE_INVITE_ERR_LENGTH, NULL);
  static char huge[4096];
  memcpy(huge, "roost-invite:", 13);
  memset(huge + 13, 'a', 2000);
  expect(huge, 0, NODE_INVITE_ERR_LENGTH, NULL);
  /* one character added or dropped: either a length no encoder makes, or
   * whole bytes that the checksum catches */
  snprintf(bad, sizeof bad, "%sa", text);
  node_invite got;
  char err[256];
  int rv = node_invite_decode(bad, 0, &got, err, sizeof err);
  assert_true(rv == NODE_INVITE_ERR_LENGTH || rv == NODE_INVITE_ERR_CHECKSUM);
  snprintf(bad, sizeof bad, "%.*s", (int)(len - 1), text);
  rv = node_invite_decode(bad, 0, &got, err, sizeof err);
  assert_true(rv == NODE_INVITE_ERR_LENGTH || rv == NODE_INVITE_ERR_CHECKSUM);

  /* checksum: one character changed to another valid one */
  snprintf(bad, sizeof bad, "%s", text);
  bad[50] = bad[50] == 'a' ? 'b' : 'a';
  expect(bad, 0, NODE_INVITE_ERR_CHECKSUM, "typo");
  /* two characters swapped */
  snprintf(bad, sizeof bad, "%s", text);
  for (size_t i = 13; i + 1 < len; i++)
    if (bad[i] != bad[i + 1]) {
      char t = bad[i];
      bad[i] = bad[i + 1];
      bad[i + 1] = t;
      break;
    }
  expect(bad, 0, NODE_INVITE_ERR_CHECKSUM, NULL);
}

/* Re-wraps text's blob after f changed it (a valid checksum, so the check
 * behind it is what refuses). */
static void rewrap(const char *text, char *out, size_t outlen, void (*f)(uint8_t *b, size_t *n)) {
  uint8_t b[NODE_INVITE_BLOB_MAX];
  dht_ssize n = node_invite_unwrap(text, b, sizeof b);
  assert_true(n > 0);
  size_t len = (size_t)n;
  f(b, &len);
  assert_true(node_invite_wrap(b, len, out, outlen) > 0);
}

static void set_version2(uint8_t *b, size_t *n) {
  (void)n;
  b[0] = 2;
}
static void flip_name(uint8_t *b, size_t *n) {
  (void)n;
  b[1 + DHT_PK_LEN + 1] ^= 1; /* first byte of the name */
}
static void other_key(uint8_t *b, size_t *n) {
  (void)n;
  b[1] ^= 0x40;
}
static void drop_sig_byte(uint8_t *b, size_t *n) {
  (void)b;
  (*n)--;
}
static void bad_family(uint8_t *b, size_t *n) {
  (void)n;
  size_t o = 1 + DHT_PK_LEN;
  o += 1 + b[o]; /* name */
  b[o + 1] = 5;  /* first address family */
}

static void test_refusals_behind_checksum(void **state) {
  (void)state;
  char text[NODE_INVITE_TEXT_MAX + 1], bad[NODE_INVITE_TEXT_MAX + 32];
  make(text, sizeof text);
  rewrap(text, bad, sizeof bad, set_version2);
  expect(bad, 0, NODE_INVITE_ERR_VERSION, "version 2");
  rewrap(text, bad, sizeof bad, flip_name);
  expect(bad, 0, NODE_INVITE_ERR_SIGNATURE, "signature");
  rewrap(text, bad, sizeof bad, other_key);
  expect(bad, 0, NODE_INVITE_ERR_SIGNATURE, "signature");
  rewrap(text, bad, sizeof bad, drop_sig_byte);
  expect(bad, 0, NODE_INVITE_ERR_LENGTH, NULL);
  rewrap(text, bad, sizeof bad, bad_family);
  expect(bad, 0, NODE_INVITE_ERR_FORMAT, "address");
  /* signed by another identity than the one it names */
  dht_identity other;
  uint8_t seed[32];
  memset(seed, 9, sizeof seed);
  dht_identity_from_seed(&other, seed);
  node_invite inv;
  full_invite(&inv);
  char forged[NODE_INVITE_TEXT_MAX + 1];
  assert_true(node_invite_encode(&inv, &other, forged, sizeof forged) > 0);
  uint8_t b[NODE_INVITE_BLOB_MAX];
  dht_ssize n = node_invite_unwrap(forged, b, sizeof b);
  assert_true(n > 0);
  memcpy(b + 1, ident.pk, DHT_PK_LEN);
  assert_true(node_invite_wrap(b, (size_t)n, bad, sizeof bad) > 0);
  expect(bad, 0, NODE_INVITE_ERR_SIGNATURE, NULL);
}

static void test_every_bit(void **state) {
  (void)state;
  char text[NODE_INVITE_TEXT_MAX + 1], bad[NODE_INVITE_TEXT_MAX + 1];
  node_invite got;
  char err[256];
  make(text, sizeof text);
  size_t len = strlen(text);
  /* every bit of every character of the text */
  for (size_t i = 0; i < len; i++)
    for (int bit = 0; bit < 8; bit++) {
      memcpy(bad, text, len + 1);
      bad[i] = (char)(bad[i] ^ (1 << bit));
      if (bad[i] == 0)
        continue; /* a cut string: covered by the length tests */
      int rv = node_invite_decode(bad, 0, &got, err, sizeof err);
      if (rv >= 0) {
        print_error("char %zu bit %d accepted\n", i, bit);
        fail();
      }
    }
  /* every bit of the blob, re-wrapped with a valid checksum */
  uint8_t b[NODE_INVITE_BLOB_MAX], c[NODE_INVITE_BLOB_MAX];
  dht_ssize n = node_invite_unwrap(text, b, sizeof b);
  assert_true(n > 0);
  for (size_t i = 0; i < (size_t)n; i++)
    for (int bit = 0; bit < 8; bit++) {
      memcpy(c, b, (size_t)n);
      c[i] ^= (uint8_t)(1 << bit);
      assert_true(node_invite_wrap(c, (size_t)n, bad, sizeof bad) > 0);
      int rv = node_invite_decode(bad, 0, &got, err, sizeof err);
      if (rv >= 0) {
        print_error("blob byte %zu bit %d accepted\n", i, bit);
        fail();
      }
    }
}

static void test_expiry(void **state) {
  (void)state;
  char text[NODE_INVITE_TEXT_MAX + 1];
  node_invite got;
  char err[256];
  make(text, sizeof text);
  assert_int_equal(node_invite_decode(text, 0, &got, err, sizeof err), 0);
  assert_int_equal(node_invite_decode(text, EXP - 1, &got, err, sizeof err), 0);
  expect(text, EXP, NODE_INVITE_ERR_EXPIRED, "2030-03-17 17:46:40 UTC");
  expect(text, EXP + 1, NODE_INVITE_ERR_EXPIRED, "expired");
  expect(text, UINT64_MAX, NODE_INVITE_ERR_EXPIRED, NULL);
  /* expiry 0: never valid */
  node_invite inv;
  full_invite(&inv);
  inv.expires_s = 0;
  assert_true(node_invite_encode(&inv, &ident, text, sizeof text) > 0);
  expect(text, 0, NODE_INVITE_ERR_EXPIRED, "1970-01-01 00:00:00 UTC");
}

static void test_names(void **state) {
  (void)state;
  assert_true(node_invite_name_ok(""));
  assert_true(node_invite_name_ok("bob"));
  assert_true(node_invite_name_ok("Zo\xc3\xab \xe6\x9d\x8e \xf0\x9f\x90\xa6"));
  char s[80];
  memset(s, 'x', 63);
  s[63] = 0;
  assert_true(node_invite_name_ok(s));
  s[63] = 'x';
  s[64] = 0;
  assert_false(node_invite_name_ok(s));
  assert_false(node_invite_name_ok("a\nb"));
  assert_false(node_invite_name_ok("a\x1b[31m"));
  assert_false(node_invite_name_ok("a\x7f"));
  assert_false(node_invite_name_ok("\xc2\x85"));     /* C1 control */
  assert_false(node_invite_name_ok("\xc3"));         /* cut */
  assert_false(node_invite_name_ok("\xc0\xaf"));     /* overlong */
  assert_false(node_invite_name_ok("\xed\xa0\x80")); /* surrogate */
  assert_false(node_invite_name_ok("\xff"));
}

static void test_base32_and_sizes(void **state) {
  (void)state;
  uint8_t in[7] = {0, 1, 2, 0xfe, 0xff, 0x80, 0x7f}, out[7];
  char t[32];
  for (size_t n = 0; n <= sizeof in; n++) {
    node_base32_encode(in, n, t);
    assert_int_equal(strlen(t), node_base32_len(n));
    assert_int_equal(node_base32_decode(t, strlen(t), out, sizeof out), (dht_ssize)n);
    assert_memory_equal(in, out, n);
  }
  node_base32_encode(in, 1, t); /* 2 characters, 2 unused bits */
  t[1] = 'b';                   /* sets an unused bit */
  assert_int_equal(node_base32_decode(t, 2, out, sizeof out), -1);
  assert_int_equal(node_base32_decode("abc", 3, out, sizeof out), -2); /* no encoder makes 3 */
  assert_int_equal(node_base32_decode("A", 1, out, sizeof out), -2);
  assert_int_equal(node_base32_decode("AA", 2, out, sizeof out), -1);
  assert_int_equal(node_base32_decode("aaaaaaaa", 8, out, 4), -2);

  int64_t v;
  assert_int_equal(node_size_parse("0", &v), 0);
  assert_int_equal(v, 0);
  assert_int_equal(node_size_parse("65536", &v), 0);
  assert_int_equal(v, 65536);
  assert_int_equal(node_size_parse("10M", &v), 0);
  assert_int_equal(v, 10 << 20);
  assert_int_equal(node_size_parse("1G", &v), 0);
  assert_int_equal(v, 1 << 30);
  assert_int_equal(node_size_parse("64KiB", &v), 0);
  assert_int_equal(v, 64 << 10);
  assert_int_equal(node_size_parse("2mb", &v), 0);
  assert_int_equal(v, 2 << 20);
  static const char *const bad[] = {
      "",     "-1", "+1", " 1", "1X", "1M2", "M", "1.5G", "99999999999999999999", "9000000000T",
      "1MiBs"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(node_size_parse(bad[i], &v), -1);
  char f[32];
  node_size_fmt(10 << 20, f, sizeof f);
  assert_string_equal(f, "10 MiB");
  node_size_fmt(1536, f, sizeof f);
  assert_string_equal(f, "1.5 KiB");
  node_size_fmt(12, f, sizeof f);
  assert_string_equal(f, "12 B");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip), cmocka_unit_test(test_encode_refuses),
      cmocka_unit_test(test_refusals),   cmocka_unit_test(test_refusals_behind_checksum),
      cmocka_unit_test(test_every_bit),  cmocka_unit_test(test_expiry),
      cmocka_unit_test(test_names),      cmocka_unit_test(test_base32_and_sizes),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}

/*
 * test_wire.c - the msgpack primitives of dht_wire.c.  Writer: exact bytes
 * for every width, sticky DHT_ERR_NOBUF that never writes past cap (guard
 * bytes).  Reader: every accepted encoding (non-minimal widths included),
 * every rejected type, counts and lengths checked against the bytes left,
 * sticky errors.  Reader inputs are byte arrays written by hand, so these
 * tests do not lean on the writer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "dht_int.h"

#define B(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

/* ---- writer ------------------------------------------------------------ */

static void expect_bytes(const dht_wire_w *w, const uint8_t *want, size_t n) {
  assert_int_equal(w->err, 0);
  assert_int_equal(w->len, n);
  assert_memory_equal(w->buf, want, n);
}

static void test_w_uint_minimal(void **state) {
  (void)state;
  static const struct {
    uint64_t v;
    uint8_t len, bytes[9];
  } cases[] = {
      {0, 1, {0x00}},
      {127, 1, {0x7f}},
      {128, 2, {0xcc, 0x80}},
      {255, 2, {0xcc, 0xff}},
      {256, 3, {0xcd, 0x01, 0x00}},
      {65535, 3, {0xcd, 0xff, 0xff}},
      {65536, 5, {0xce, 0x00, 0x01, 0x00, 0x00}},
      {UINT32_MAX, 5, {0xce, 0xff, 0xff, 0xff, 0xff}},
      {(uint64_t)UINT32_MAX + 1, 9, {0xcf, 0, 0, 0, 1, 0, 0, 0, 0}},
      {UINT64_MAX, 9, {0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint8_t buf[16];
    dht_wire_w w;
    dht_wire_w_init(&w, buf, sizeof buf);
    dht_wire_w_uint(&w, cases[i].v);
    expect_bytes(&w, cases[i].bytes, cases[i].len);
  }
}

static void test_w_array_headers(void **state) {
  (void)state;
  static const struct {
    uint32_t n;
    uint8_t len, bytes[5];
  } cases[] = {
      {0, 1, {0x90}},
      {15, 1, {0x9f}},
      {16, 3, {0xdc, 0x00, 0x10}},
      {65535, 3, {0xdc, 0xff, 0xff}},
      {65536, 5, {0xdd, 0x00, 0x01, 0x00, 0x00}},
      {UINT32_MAX, 5, {0xdd, 0xff, 0xff, 0xff, 0xff}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint8_t buf[8];
    dht_wire_w w;
    dht_wire_w_init(&w, buf, sizeof buf);
    dht_wire_w_array(&w, cases[i].n);
    expect_bytes(&w, cases[i].bytes, cases[i].len);
  }
}

static void test_w_bin_headers(void **state) {
  (void)state;
  static const struct {
    size_t n;
    uint8_t hlen, hdr[5];
  } cases[] = {
      {0, 2, {0xc4, 0x00}},           {1, 2, {0xc4, 0x01}},
      {255, 2, {0xc4, 0xff}},         {256, 3, {0xc5, 0x01, 0x00}},
      {65535, 3, {0xc5, 0xff, 0xff}}, {65536, 5, {0xc6, 0x00, 0x01, 0x00, 0x00}},
  };
  uint8_t *src = malloc(65536), *buf = malloc(65536 + 5);
  assert_non_null(src);
  assert_non_null(buf);
  for (size_t i = 0; i < 65536; i++)
    src[i] = (uint8_t)(i * 31 + 7);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dht_wire_w w;
    dht_wire_w_init(&w, buf, cases[i].hlen + cases[i].n);
    dht_wire_w_bin(&w, cases[i].n ? src : NULL, cases[i].n);
    assert_int_equal(w.err, 0);
    assert_int_equal(w.len, cases[i].hlen + cases[i].n);
    assert_memory_equal(buf, cases[i].hdr, cases[i].hlen);
    if (cases[i].n)
      assert_memory_equal(buf + cases[i].hlen, src, cases[i].n);
  }
  free(src);
  free(buf);
}

static void test_w_nil_bool(void **state) {
  (void)state;
  uint8_t buf[4];
  dht_wire_w w;
  dht_wire_w_init(&w, buf, sizeof buf);
  dht_wire_w_nil(&w);
  dht_wire_w_bool(&w, true);
  dht_wire_w_bool(&w, false);
  const uint8_t want[] = {0xc0, 0xc3, 0xc2};
  expect_bytes(&w, want, sizeof want);
}

/* A fixed sequence of writes; returns the end offset of each object in ends[]. */
static int write_sequence(dht_wire_w *w, size_t *ends) {
  static const uint8_t blob[40] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  int n = 0;
  dht_wire_w_array(w, 20);
  ends[n++] = w->len;
  dht_wire_w_uint(w, 300);
  ends[n++] = w->len;
  dht_wire_w_bin(w, blob, sizeof blob);
  ends[n++] = w->len;
  dht_wire_w_nil(w);
  ends[n++] = w->len;
  dht_wire_w_bool(w, true);
  ends[n++] = w->len;
  dht_wire_w_uint(w, UINT64_MAX);
  ends[n++] = w->len;
  dht_wire_w_bin(w, blob, 0);
  ends[n++] = w->len;
  dht_wire_w_uint(w, 5);
  ends[n++] = w->len;
  return n;
}

static void test_w_overflow_every_cap(void **state) {
  (void)state;
  uint8_t ref[128];
  size_t ends[16], ends2[16];
  dht_wire_w w;
  dht_wire_w_init(&w, ref, sizeof ref);
  int nobj = write_sequence(&w, ends);
  assert_int_equal(w.err, 0);
  size_t total = w.len;
  assert_int_equal(total, 3 + 3 + 42 + 1 + 1 + 9 + 2 + 1);

  for (size_t cap = 0; cap <= total; cap++) {
    /* heap buffer of cap bytes + 16 guard bytes: ASan and the guard both see
     * a stray write */
    uint8_t *buf = malloc(cap + 16);
    assert_non_null(buf);
    memset(buf, 0xa5, cap + 16);
    dht_wire_w_init(&w, buf, cap);
    write_sequence(&w, ends2);
    for (size_t i = cap; i < cap + 16; i++)
      assert_int_equal(buf[i], 0xa5);
    if (cap == total) {
      assert_int_equal(w.err, 0);
      assert_int_equal(w.len, total);
    } else {
      assert_int_equal(w.err, DHT_ERR_NOBUF);
      assert_true(w.len <= cap);
      /* len stops at the end of the last object that fitted whole */
      size_t last = 0;
      for (int i = 0; i < nobj && ends[i] <= cap; i++)
        last = ends[i];
      assert_int_equal(w.len, last);
    }
    assert_memory_equal(buf, ref, w.len);
    free(buf);
  }
}

static void test_w_sticky(void **state) {
  (void)state;
  static const uint8_t ten[10] = {0};
  uint8_t buf[8];
  memset(buf, 0x5a, sizeof buf);
  dht_wire_w w;
  dht_wire_w_init(&w, buf, 4);
  dht_wire_w_bin(&w, ten, sizeof ten); /* header fits, body does not */
  assert_int_equal(w.err, DHT_ERR_NOBUF);
  assert_int_equal(w.len, 0);
  /* everything after fails, even what would fit */
  dht_wire_w_uint(&w, 1);
  dht_wire_w_nil(&w);
  dht_wire_w_bool(&w, true);
  dht_wire_w_array(&w, 1);
  dht_wire_w_bin(&w, ten, 0);
  assert_int_equal(w.err, DHT_ERR_NOBUF);
  assert_int_equal(w.len, 0);
  for (size_t i = 2; i < sizeof buf; i++) /* bytes 0..1 may hold the dropped header */
    assert_int_equal(buf[i], 0x5a);
}

static void test_w_null_buf(void **state) {
  (void)state;
  dht_wire_w w;
  dht_wire_w_init(&w, NULL, 100);
  dht_wire_w_nil(&w);
  assert_int_equal(w.err, DHT_ERR_NOBUF);
  assert_int_equal(w.len, 0);
}

/* ---- reader: integers ---------------------------------------------------- */

typedef struct bytes_case {
  const char *name;
  const uint8_t *p;
  size_t n;
} bytes_case;

#define CASE(name, ...)                                                                            \
  { name, B(__VA_ARGS__) }
#define EMPTY(name)                                                                                \
  { name, NULL, 0 }

static void test_r_uint_every_width(void **state) {
  (void)state;
  const struct {
    bytes_case in;
    uint64_t v;
  } cases[] = {
      {CASE("fixint 0", 0x00), 0},
      {CASE("fixint 127", 0x7f), 127},
      {CASE("uint8 5", 0xcc, 0x05), 5},
      {CASE("uint8 255", 0xcc, 0xff), 255},
      {CASE("uint16 5", 0xcd, 0x00, 0x05), 5},
      {CASE("uint16 max", 0xcd, 0xff, 0xff), 65535},
      {CASE("uint32 5", 0xce, 0, 0, 0, 0x05), 5},
      {CASE("uint32 max", 0xce, 0xff, 0xff, 0xff, 0xff), UINT32_MAX},
      {CASE("uint64 5", 0xcf, 0, 0, 0, 0, 0, 0, 0, 0x05), 5},
      {CASE("uint64 max", 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), UINT64_MAX},
      {CASE("int8 0", 0xd0, 0x00), 0},
      {CASE("int8 5", 0xd0, 0x05), 5},
      {CASE("int8 max", 0xd0, 0x7f), 127},
      {CASE("int16 5", 0xd1, 0x00, 0x05), 5},
      {CASE("int16 max", 0xd1, 0x7f, 0xff), 32767},
      {CASE("int32 5", 0xd2, 0, 0, 0, 0x05), 5},
      {CASE("int32 max", 0xd2, 0x7f, 0xff, 0xff, 0xff), INT32_MAX},
      {CASE("int64 5", 0xd3, 0, 0, 0, 0, 0, 0, 0, 0x05), 5},
      {CASE("int64 max", 0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), INT64_MAX},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dht_wire_r r;
    uint64_t v = 0xdeadbeef;
    dht_wire_r_init(&r, cases[i].in.p, cases[i].in.n);
    int rc = dht_wire_r_uint(&r, UINT64_MAX, &v);
    if (rc != 0 || v != cases[i].v || dht_wire_r_end(&r) != 0)
      fail_msg("%s: rc %d value %llu", cases[i].in.name, rc, (unsigned long long)v);
  }
}

static void test_r_uint_rejects(void **state) {
  (void)state;
  const bytes_case cases[] = {
      EMPTY("empty"),
      CASE("negative fixint -1", 0xff),
      CASE("negative fixint -32", 0xe0),
      CASE("int8 -1", 0xd0, 0xff),
      CASE("int8 -128", 0xd0, 0x80),
      CASE("int16 -1", 0xd1, 0xff, 0xff),
      CASE("int32 -1", 0xd2, 0xff, 0xff, 0xff, 0xff),
      CASE("int64 min", 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0),
      CASE("float32 1.0", 0xca, 0x3f, 0x80, 0x00, 0x00),
      CASE("float64 0.0", 0xcb, 0, 0, 0, 0, 0, 0, 0, 0),
      CASE("nil", 0xc0),
      CASE("false", 0xc2),
      CASE("true", 0xc3),
      CASE("never used", 0xc1),
      CASE("bin8", 0xc4, 0x01, 0x05),
      CASE("fixstr", 0xa1, '5'),
      CASE("str8", 0xd9, 0x01, '5'),
      CASE("fixarray", 0x91, 0x05),
      CASE("fixmap", 0x81, 0x01, 0x05),
      CASE("fixext1", 0xd4, 0x01, 0x05),
      CASE("ext8", 0xc7, 0x01, 0x01, 0x05),
      CASE("uint8 truncated", 0xcc),
      CASE("uint16 truncated", 0xcd, 0x00),
      CASE("uint32 truncated", 0xce, 0x00, 0x00, 0x00),
      CASE("uint64 truncated", 0xcf, 0, 0, 0, 0, 0, 0, 0),
      CASE("int8 truncated", 0xd0),
      CASE("int64 truncated", 0xd3, 0, 0, 0, 0, 0, 0, 0),
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dht_wire_r r;
    uint64_t v = 0xdeadbeef;
    dht_wire_r_init(&r, cases[i].p, cases[i].n);
    int rc = dht_wire_r_uint(&r, UINT64_MAX, &v);
    if (rc != DHT_ERR_PROTO || r.err != DHT_ERR_PROTO || v != 0xdeadbeef)
      fail_msg("%s: rc %d err %d", cases[i].name, rc, r.err);
  }
}

static void test_r_uint_max(void **state) {
  (void)state;
  const struct {
    bytes_case in;
    uint64_t max;
    int want;
  } cases[] = {
      {CASE("255 <= 255", 0xcc, 0xff), 255, 0},
      {CASE("256 > 255", 0xcd, 0x01, 0x00), 255, DHT_ERR_PROTO},
      {CASE("1 > 0", 0x01), 0, DHT_ERR_PROTO},
      {CASE("0 <= 0", 0x00), 0, 0},
      {CASE("2^32-1", 0xce, 0xff, 0xff, 0xff, 0xff), UINT32_MAX, 0},
      {CASE("2^32", 0xcf, 0, 0, 0, 1, 0, 0, 0, 0), UINT32_MAX, DHT_ERR_PROTO},
      {CASE("int8 127 > 100", 0xd0, 0x7f), 100, DHT_ERR_PROTO},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dht_wire_r r;
    uint64_t v;
    dht_wire_r_init(&r, cases[i].in.p, cases[i].in.n);
    int rc = dht_wire_r_uint(&r, cases[i].max, &v);
    if (rc != cases[i].want)
      fail_msg("%s: rc %d", cases[i].in.name, rc);
  }
}

/* ---- reader: bins ---------------------------------------------------------- */

static void test_r_bin_widths(void **state) {
  (void)state;
  const struct {
    bytes_case in;
    size_t hlen, n;
  } cases[] = {
      {CASE("bin8 empty", 0xc4, 0x00), 2, 0},
      {CASE("bin8 3", 0xc4, 0x03, 1, 2, 3), 2, 3},
      {CASE("bin16 3", 0xc5, 0x00, 0x03, 1, 2, 3), 3, 3},
      {CASE("bin32 3", 0xc6, 0, 0, 0, 0x03, 1, 2, 3), 5, 3},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dht_wire_r r;
    const uint8_t *p = NULL;
    size_t n = 99;
    dht_wire_r_init(&r, cases[i].in.p, cases[i].in.n);
    int rc = dht_wire_r_bin(&r, 0, 10, &p, &n);
    /* zero copy: p points into the input, just past the header */
    if (rc != 0 || n != cases[i].n || p != cases[i].in.p + cases[i].hlen || dht_wire_r_end(&r) != 0)
      fail_msg("%s: rc %d n %zu", cases[i].in.name, rc, n);
  }
}

static void test_r_bin_rejects(void **state) {
  (void)state;
  const struct {
    bytes_case in;
    size_t min, max;
  } cases[] = {
      {EMPTY("empty"), 0, 10},
      {CASE("shorter than min", 0xc4, 0x02, 1, 2), 3, 10},
      {CASE("longer than max", 0xc4, 0x04, 1, 2, 3, 4), 0, 3},
      {CASE("exact 16 wants 16, got 15", 0xc4, 0x0f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
       16, 16},
      {CASE("body truncated", 0xc4, 0x03, 1, 2), 0, 10},
      {CASE("bin8 header truncated", 0xc4), 0, 10},
      {CASE("bin16 header truncated", 0xc5, 0x00), 0, 10},
      {CASE("bin32 header truncated", 0xc6, 0x00, 0x00, 0x00), 0, 10},
      {CASE("bin32 claims 4 GiB", 0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2, 3), 0, SIZE_MAX},
      {CASE("bin16 claims 64 KiB", 0xc5, 0xff, 0xff, 1, 2, 3), 0, SIZE_MAX},
      {CASE("fixstr", 0xa3, 'a', 'b', 'c'), 0, 10},
      {CASE("empty fixstr", 0xa0), 0, 10},
      {CASE("str8", 0xd9, 0x03, 'a', 'b', 'c'), 0, 10},
      {CASE("str16", 0xda, 0x00, 0x03, 'a', 'b', 'c'), 0, 10},
      {CASE("ext8", 0xc7, 0x03, 0x01, 1, 2, 3), 0, 10},
      {CASE("fixext4", 0xd6, 0x01, 1, 2, 3, 4), 0, 10},
      {CASE("nil", 0xc0), 0, 10},
      {CASE("uint", 0x03), 0, 10},
      {CASE("array", 0x93, 1, 2, 3), 0, 10},
      {CASE("map", 0x81, 1, 2), 0, 10},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dht_wire_r r;
    const uint8_t *p = NULL;
    size_t n = 99;
    dht_wire_r_init(&r, cases[i].in.p, cases[i].in.n);
    int rc = dht_wire_r_bin(&r, cases[i].min, cases[i].max, &p, &n);
    if (rc != DHT_ERR_PROTO || r.err != DHT_ERR_PROTO || p != NULL || n != 99)
      fail_msg("%s: rc %d", cases[i].in.name, rc);
  }
}

/* ---- reader: arrays ----------------------------------------------------- */

static void test_r_array_accepts(void **state) {
  (void)state;
  const struct {
    bytes_case in;
    uint32_t n;
  } cases[] = {
      {CASE("fixarray 0", 0x90), 0},
      {CASE("fixarray 2", 0x92, 1, 2), 2},
      {CASE("fixarray 15", 0x9f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 15},
      {CASE("array16 2", 0xdc, 0x00, 0x02, 1, 2), 2},
      {CASE("array32 2", 0xdd, 0, 0, 0, 0x02, 1, 2), 2},
      {CASE("array32 0", 0xdd, 0, 0, 0, 0), 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dht_wire_r r;
    uint32_t n = 99;
    uint64_t v;
    dht_wire_r_init(&r, cases[i].in.p, cases[i].in.n);
    int rc = dht_wire_r_array_max(&r, 15, &n);
    for (uint32_t j = 0; rc == 0 && j < n; j++)
      rc = dht_wire_r_uint(&r, 255, &v);
    if (rc != 0 || n != cases[i].n || dht_wire_r_end(&r) != 0)
      fail_msg("%s: rc %d n %u", cases[i].in.name, rc, n);
    /* and the exact-count form */
    dht_wire_r_init(&r, cases[i].in.p, cases[i].in.n);
    assert_int_equal(dht_wire_r_array(&r, cases[i].n), 0);
    dht_wire_r_init(&r, cases[i].in.p, cases[i].in.n);
    assert_int_equal(dht_wire_r_array(&r, cases[i].n + 1), DHT_ERR_PROTO);
    if (cases[i].n) {
      dht_wire_r_init(&r, cases[i].in.p, cases[i].in.n);
      assert_int_equal(dht_wire_r_array(&r, cases[i].n - 1), DHT_ERR_PROTO);
    }
  }
}

static void test_r_array_rejects(void **state) {
  (void)state;
  const struct {
    bytes_case in;
    uint32_t max;
  } cases[] = {
      {EMPTY("empty"), 100},
      {CASE("count over max", 0x93, 1, 2, 3), 2},
      {CASE("count over bytes left", 0x93, 1, 2), 100},
      {CASE("array16 over bytes left", 0xdc, 0x00, 0x03, 1, 2), 100},
      {CASE("array32 claims 4G", 0xdd, 0xff, 0xff, 0xff, 0xff, 1, 2, 3), UINT32_MAX},
      {CASE("array16 claims 64K", 0xdc, 0xff, 0xff, 1, 2, 3), UINT32_MAX},
      {CASE("array16 header truncated", 0xdc, 0x00), 100},
      {CASE("array32 header truncated", 0xdd, 0x00, 0x00, 0x00), 100},
      {CASE("fixmap", 0x81, 1, 2), 100},
      {CASE("map16", 0xde, 0x00, 0x01, 1, 2), 100},
      {CASE("map32", 0xdf, 0, 0, 0, 0x01, 1, 2), 100},
      {CASE("bin", 0xc4, 0x01, 0x01), 100},
      {CASE("str", 0xa1, 'a'), 100},
      {CASE("uint", 0x01), 100},
      {CASE("nil", 0xc0), 100},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dht_wire_r r;
    uint32_t n = 99;
    dht_wire_r_init(&r, cases[i].in.p, cases[i].in.n);
    int rc = dht_wire_r_array_max(&r, cases[i].max, &n);
    if (rc != DHT_ERR_PROTO || r.err != DHT_ERR_PROTO || n != 99)
      fail_msg("%s: rc %d", cases[i].in.name, rc);
  }
}

/* ---- reader: nil, bool, end, stickiness ------------------------------------ */

static void test_r_nil(void **state) {
  (void)state;
  dht_wire_r r;
  uint64_t v;
  dht_wire_r_init(&r, B(0xc0, 0x07));
  assert_int_equal(dht_wire_r_nil(&r), 1); /* consumed */
  assert_int_equal(dht_wire_r_nil(&r), 0); /* not nil: left in place */
  assert_int_equal(dht_wire_r_uint(&r, 255, &v), 0);
  assert_int_equal(v, 7);
  assert_int_equal(dht_wire_r_end(&r), 0);
  assert_int_equal(dht_wire_r_nil(&r), DHT_ERR_PROTO); /* nothing left */
}

static void test_r_bool(void **state) {
  (void)state;
  dht_wire_r r;
  bool v = false;
  dht_wire_r_init(&r, B(0xc3, 0xc2));
  assert_int_equal(dht_wire_r_bool(&r, &v), 0);
  assert_true(v);
  assert_int_equal(dht_wire_r_bool(&r, &v), 0);
  assert_false(v);
  assert_int_equal(dht_wire_r_end(&r), 0);
  const bytes_case bad[] = {EMPTY("empty"), CASE("1", 0x01), CASE("nil", 0xc0), CASE("0x00", 0x00)};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    dht_wire_r_init(&r, bad[i].p, bad[i].n);
    if (dht_wire_r_bool(&r, &v) != DHT_ERR_PROTO)
      fail_msg("%s accepted as bool", bad[i].name);
  }
}

static void test_r_end(void **state) {
  (void)state;
  dht_wire_r r;
  uint64_t v;
  dht_wire_r_init(&r, B(0x01, 0x02));
  assert_int_equal(dht_wire_r_uint(&r, 255, &v), 0);
  assert_int_equal(dht_wire_r_end(&r), DHT_ERR_PROTO); /* one byte left */
  assert_int_equal(r.err, DHT_ERR_PROTO);

  dht_wire_r_init(&r, NULL, 0);
  assert_int_equal(dht_wire_r_end(&r), 0);
  assert_int_equal(dht_wire_r_uint(&r, 255, &v), DHT_ERR_PROTO);
  assert_int_equal(dht_wire_r_end(&r), DHT_ERR_PROTO);
}

static void test_r_sticky(void **state) {
  (void)state;
  /* valid for every getter below, one after the other */
  const uint8_t buf[] = {0x01, 0x91, 0xc4, 0x00, 0xc0, 0xc3};
  dht_wire_r r;
  const uint8_t *p;
  size_t n;
  uint32_t cnt;
  uint64_t v;
  bool b;

  dht_wire_r_init(&r, buf, sizeof buf);
  assert_int_equal(dht_wire_r_bin(&r, 0, 10, &p, &n), DHT_ERR_PROTO); /* 0x01 is no bin */
  const uint8_t *at = r.p;
  assert_int_equal(dht_wire_r_uint(&r, 255, &v), DHT_ERR_PROTO);
  assert_int_equal(dht_wire_r_array(&r, 1), DHT_ERR_PROTO);
  assert_int_equal(dht_wire_r_array_max(&r, 10, &cnt), DHT_ERR_PROTO);
  assert_int_equal(dht_wire_r_nil(&r), DHT_ERR_PROTO);
  assert_int_equal(dht_wire_r_bool(&r, &b), DHT_ERR_PROTO);
  assert_int_equal(dht_wire_r_end(&r), DHT_ERR_PROTO);
  assert_ptr_equal(r.p, at);

  /* the same sequence without the error succeeds */
  dht_wire_r_init(&r, buf, sizeof buf);
  assert_int_equal(dht_wire_r_uint(&r, 255, &v), 0);
  assert_int_equal(dht_wire_r_array(&r, 1), 0);
  assert_int_equal(dht_wire_r_bin(&r, 0, 10, &p, &n), 0);
  assert_int_equal(dht_wire_r_nil(&r), 1);
  assert_int_equal(dht_wire_r_bool(&r, &b), 0);
  assert_int_equal(dht_wire_r_end(&r), 0);
}

/* ---- writer -> reader ------------------------------------------------------ */

static void test_roundtrip(void **state) {
  (void)state;
  static const uint64_t vals[] = {
      0, 1, 127, 128, 255, 256, 65535, 65536, UINT32_MAX, 1ull << 32, UINT64_MAX - 1, UINT64_MAX};
  static uint8_t blob[300];
  uint8_t buf[1024];
  size_t nv = sizeof vals / sizeof vals[0];
  for (size_t i = 0; i < sizeof blob; i++)
    blob[i] = (uint8_t)i;

  dht_wire_w w;
  dht_wire_w_init(&w, buf, sizeof buf);
  dht_wire_w_array(&w, (uint32_t)nv + 4);
  for (size_t i = 0; i < nv; i++)
    dht_wire_w_uint(&w, vals[i]);
  dht_wire_w_bin(&w, blob, sizeof blob);
  dht_wire_w_bin(&w, blob, 0);
  dht_wire_w_nil(&w);
  dht_wire_w_bool(&w, true);
  assert_int_equal(w.err, 0);

  dht_wire_r r;
  uint64_t v;
  const uint8_t *p;
  size_t n;
  bool b;
  dht_wire_r_init(&r, buf, w.len);
  assert_int_equal(dht_wire_r_array(&r, (uint32_t)nv + 4), 0);
  for (size_t i = 0; i < nv; i++) {
    assert_int_equal(dht_wire_r_uint(&r, UINT64_MAX, &v), 0);
    assert_true(v == vals[i]);
  }
  assert_int_equal(dht_wire_r_bin(&r, 0, sizeof blob, &p, &n), 0);
  assert_int_equal(n, sizeof blob);
  assert_memory_equal(p, blob, n);
  assert_int_equal(dht_wire_r_bin(&r, 0, 0, &p, &n), 0);
  assert_int_equal(n, 0);
  assert_int_equal(dht_wire_r_nil(&r), 1);
  assert_int_equal(dht_wire_r_bool(&r, &b), 0);
  assert_true(b);
  assert_int_equal(dht_wire_r_end(&r), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_w_uint_minimal),
      cmocka_unit_test(test_w_array_headers),
      cmocka_unit_test(test_w_bin_headers),
      cmocka_unit_test(test_w_nil_bool),
      cmocka_unit_test(test_w_overflow_every_cap),
      cmocka_unit_test(test_w_sticky),
      cmocka_unit_test(test_w_null_buf),
      cmocka_unit_test(test_r_uint_every_width),
      cmocka_unit_test(test_r_uint_rejects),
      cmocka_unit_test(test_r_uint_max),
      cmocka_unit_test(test_r_bin_widths),
      cmocka_unit_test(test_r_bin_rejects),
      cmocka_unit_test(test_r_array_accepts),
      cmocka_unit_test(test_r_array_rejects),
      cmocka_unit_test(test_r_nil),
      cmocka_unit_test(test_r_bool),
      cmocka_unit_test(test_r_end),
      cmocka_unit_test(test_r_sticky),
      cmocka_unit_test(test_roundtrip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

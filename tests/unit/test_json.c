/*
 * test_json.c - node_json.c over jansson: exact writer output (jansson's
 * compact form) and the repair of invalid UTF-8, the writer's cap and misuse
 * errors, the reader's rules (a table of refused inputs, each with its error
 * code: syntax, bad UTF-8, trailing bytes, duplicate keys, depth, value
 * count, range, a NUL in a key), the accessors at their edges, and a seeded
 * fuzz loop: random bytes, mutated valid documents and random writer
 * documents must never crash the reader, writer output must always parse,
 * and whatever parses must re-serialise to a fixed point (what roost --json
 * relies on to print roostd's result unchanged).
 *
 * The seed is printed; ROOST_SEED=<n> replays a run.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node_json.h"

#define NVAL 256          /* the value cap roostd puts on a request */
enum { FUZZ_MAX = 2048 }; /* longest fuzz input */

static uint64_t rng_state;

static uint64_t rng_next(void) {
  /* splitmix64 */
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static size_t rng_below(size_t n) {
  return (size_t)(rng_next() % n);
}

/* Parses a NUL-terminated literal; asserts success and returns the tree. */
static json_t *parse_ok(const char *s) {
  json_t *v;
  char why[200];
  int rv = node_json_parse(s, strlen(s), NVAL, &v, why, sizeof why);
  if (rv != 0)
    fail_msg("refused (%d, %s): %s", rv, why, s);
  return v;
}

/* The writer's document, which must be complete. */
static const char *done(node_jw *w) {
  const char *s = node_jw_done(w, NULL);
  if (!s)
    fail_msg("writer failed (%d)", w->err);
  return s;
}

/* ---- writer ------------------------------------------------------------ */

static void test_writer_nested(void **state) {
  (void)state;
  node_jw w;
  size_t len = 0;
  node_jw_init(&w, 4096);
  node_jw_obj(&w);
  node_jw_kstr(&w, "name", "roost");
  node_jw_kint(&w, "n", -42);
  node_jw_kint(&w, "min", INT64_MIN);
  node_jw_kuint(&w, "max", INT64_MAX);
  node_jw_kuint(&w, "u", UINT64_MAX); /* past int64: a real */
  node_jw_kbool(&w, "ok", true);
  node_jw_kdouble(&w, "d", 0.5);
  node_jw_kdouble(&w, "tenth", 0.1);
  node_jw_kdouble(&w, "nan", NAN);
  node_jw_kdouble(&w, "inf", -INFINITY);
  node_jw_kstr(&w, "none", NULL);
  node_jw_key(&w, "list");
  node_jw_arr(&w);
  node_jw_int(&w, 1);
  node_jw_str(&w, "two");
  node_jw_null(&w);
  node_jw_obj(&w);
  node_jw_obj_end(&w);
  node_jw_arr(&w);
  node_jw_arr_end(&w);
  node_jw_raw(&w, " [3] ", 5);
  node_jw_arr_end(&w);
  node_jw_key(&w, "nested");
  node_jw_obj(&w);
  node_jw_key(&w, "deep");
  node_jw_arr(&w);
  node_jw_bool(&w, false);
  node_jw_double(&w, -0.0);
  node_jw_double(&w, 1e300);
  node_jw_arr_end(&w);
  node_jw_obj_end(&w);
  node_jw_obj_end(&w);
  const char *want = "{\"name\":\"roost\",\"n\":-42,\"min\":-9223372036854775808,"
                     "\"max\":9223372036854775807,\"u\":1.8446744073709552e19,\"ok\":true,"
                     "\"d\":0.5,\"tenth\":0.10000000000000001,\"nan\":null,\"inf\":null,"
                     "\"none\":null,\"list\":[1,\"two\",null,{},[],[3]],"
                     "\"nested\":{\"deep\":[false,-0.0,1.0000000000000001e300]}}";
  const char *got = node_jw_done(&w, &len);
  assert_non_null(got);
  assert_string_equal(got, want);
  assert_int_equal(len, strlen(want));
  assert_ptr_equal(node_jw_done(&w, NULL), got); /* done twice: the same text */
  node_jw_free(&w);
  assert_null(node_jw_done(&w, NULL)); /* reset: nothing written */

  /* a scalar is a whole document too */
  node_jw_str(&w, "x");
  assert_string_equal(done(&w), "\"x\"");
  node_jw_free(&w);

  /* a parsed value goes in as it is (the writer takes its own reference) */
  json_t *v = parse_ok("{\"a\":[1,{\"b\":null}],\"c\":\"\\u00e9\"}");
  node_jw_obj(&w);
  node_jw_key(&w, "v");
  node_jw_value(&w, v);
  node_jw_obj_end(&w);
  json_decref(v);
  assert_string_equal(done(&w), "{\"v\":{\"a\":[1,{\"b\":null}],\"c\":\"\xc3\xa9\"}}");
  node_jw_free(&w);
}

static void test_writer_escapes(void **state) {
  (void)state;
  node_jw w;
  char want[16];
  node_jw_init(&w, 1024);
  for (int c = 0; c < 0x20; c++) {
    char ch = (char)c;
    static const char shortesc[] = {
        ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't'};
    node_jw_strn(&w, &ch, 1);
    if (c < (int)sizeof shortesc && shortesc[c])
      snprintf(want, sizeof want, "\"\\%c\"", shortesc[c]);
    else
      snprintf(want, sizeof want, "\"\\u%04X\"", c);
    assert_string_equal(done(&w), want);
    node_jw_free(&w);
  }
  static const struct {
    const char *in, *out;
  } cases[] = {
      {"a\"b\\c/d\x7f", "\"a\\\"b\\\\c/d\x7f\""},
      {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf",
       "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\""},
      {"\xff", "\"\xef\xbf\xbd\""},
      {"a\xc0\xaf", "\"a\xef\xbf\xbd\xef\xbf\xbd\""},               /* overlong '/' */
      {"\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""}, /* surrogate */
      {"\xf4\x90\x80\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
      {"\xe2\x82", "\"\xef\xbf\xbd\xef\xbf\xbd\""}, /* cut short */
      {"\xe2\x82z", "\"\xef\xbf\xbd\xef\xbf\xbdz\""},
      {"\x80x\xc3\xa9\n", "\"\xef\xbf\xbdx\xc3\xa9\\n\""},
      {"", "\"\""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    node_jw_str(&w, cases[i].in);
    assert_string_equal(done(&w), cases[i].out);
    node_jw_free(&w);
  }
  /* keys are repaired the same way; a NUL inside strn is kept */
  node_jw_obj(&w);
  node_jw_key(&w, "k\"\n\xff");
  node_jw_strn(&w, "a\0b", 3);
  node_jw_obj_end(&w);
  assert_string_equal(done(&w), "{\"k\\\"\\n\xef\xbf\xbd\":\"a\\u0000b\"}");
  node_jw_free(&w);
}

static void test_writer_misuse(void **state) {
  (void)state;
  node_jw w;
  node_jw_init(&w, 1024);

  node_jw_key(&w, "top"); /* key outside an object */
  assert_int_equal(w.err, NODE_JW_ERR_USAGE);
  node_jw_free(&w);

  node_jw_obj(&w);
  node_jw_int(&w, 1); /* value without key */
  assert_int_equal(w.err, NODE_JW_ERR_USAGE);
  node_jw_free(&w);

  node_jw_arr(&w);
  node_jw_key(&w, "k"); /* key in an array */
  assert_int_equal(w.err, NODE_JW_ERR_USAGE);
  node_jw_free(&w);

  node_jw_obj(&w);
  node_jw_key(&w, "k");
  node_jw_key(&w, "k2"); /* two keys in a row */
  assert_int_equal(w.err, NODE_JW_ERR_USAGE);
  node_jw_free(&w);

  node_jw_obj(&w);
  node_jw_kint(&w, "k", 1);
  node_jw_kint(&w, "k", 2); /* a key twice: the reader would refuse it */
  assert_int_equal(w.err, NODE_JW_ERR_USAGE);
  node_jw_free(&w);

  node_jw_obj(&w);
  node_jw_key(&w, "k");
  node_jw_obj_end(&w); /* key left dangling */
  assert_int_equal(w.err, NODE_JW_ERR_USAGE);
  node_jw_free(&w);

  node_jw_arr(&w);
  node_jw_obj_end(&w); /* wrong close */
  assert_int_equal(w.err, NODE_JW_ERR_USAGE);
  node_jw_free(&w);

  node_jw_arr_end(&w); /* close with nothing open */
  assert_int_equal(w.err, NODE_JW_ERR_USAGE);
  node_jw_free(&w);

  node_jw_int(&w, 1);
  node_jw_int(&w, 2); /* two top-level values */
  assert_int_equal(w.err, NODE_JW_ERR_USAGE);
  assert_null(node_jw_done(&w, NULL));
  node_jw_free(&w);

  node_jw_raw(&w, "[1] 2", 5); /* raw text that is not one value */
  assert_int_equal(w.err, NODE_JW_ERR_USAGE);
  node_jw_free(&w);
  node_jw_value(&w, NULL);
  assert_int_equal(w.err, NODE_JW_ERR_USAGE);
  node_jw_free(&w);

  node_jw_obj(&w); /* unbalanced: no error code, but no document */
  assert_int_equal(w.err, 0);
  assert_null(node_jw_done(&w, NULL));
  node_jw_free(&w);

  node_jw_null(&w); /* nothing after done */
  assert_non_null(node_jw_done(&w, NULL));
  node_jw_null(&w);
  assert_int_equal(w.err, NODE_JW_ERR_USAGE);
  node_jw_free(&w);

  /* NODE_JSON_MAX_DEPTH containers are fine, one more is not */
  for (int d = 0; d < NODE_JSON_MAX_DEPTH; d++)
    node_jw_arr(&w);
  for (int d = 0; d < NODE_JSON_MAX_DEPTH; d++)
    node_jw_arr_end(&w);
  assert_non_null(node_jw_done(&w, NULL));
  node_jw_free(&w);
  for (int d = 0; d <= NODE_JSON_MAX_DEPTH; d++) {
    node_jw_obj(&w);
    node_jw_key(&w, "k");
  }
  assert_int_equal(w.err, NODE_JW_ERR_DEPTH);
  node_jw_free(&w);

  /* errors are sticky: nothing more is written, and no document comes */
  node_jw_arr(&w);
  node_jw_key(&w, "k");
  node_jw_int(&w, 1);
  node_jw_arr_end(&w);
  assert_int_equal(w.err, NODE_JW_ERR_USAGE);
  assert_int_equal(json_array_size(w.root), 0);
  assert_null(node_jw_done(&w, NULL));
  node_jw_free(&w);
}

static void test_writer_cap(void **state) {
  (void)state;
  node_jw w;
  node_jw_init(&w, 4); /* "[1]" and its NUL fit exactly */
  node_jw_arr(&w);
  node_jw_int(&w, 1);
  node_jw_arr_end(&w);
  assert_string_equal(done(&w), "[1]");
  node_jw_free(&w);

  node_jw_init(&w, 3);
  node_jw_arr(&w);
  node_jw_int(&w, 1);
  node_jw_arr_end(&w);
  assert_null(node_jw_done(&w, NULL));
  assert_int_equal(w.err, NODE_JW_ERR_FULL);
  node_jw_arr_end(&w); /* sticky, no crash */
  assert_int_equal(w.err, NODE_JW_ERR_FULL);
  assert_null(w.text);
  node_jw_free(&w);

  node_jw_init(&w, 0);
  node_jw_null(&w);
  assert_null(node_jw_done(&w, NULL));
  assert_int_equal(w.err, NODE_JW_ERR_FULL);
  node_jw_free(&w);

  /* "[" + 13 bytes per element, "]" and the NUL: 76 elements fit in 1000 */
  for (int n = 76; n <= 77; n++) {
    node_jw_init(&w, 1000);
    node_jw_arr(&w);
    for (int i = 0; i < n; i++)
      node_jw_str(&w, "0123456789");
    node_jw_arr_end(&w);
    if (n == 76) {
      size_t len;
      assert_non_null(node_jw_done(&w, &len));
      assert_int_equal(len, 13 * 76 + 1);
    } else {
      assert_null(node_jw_done(&w, NULL));
      assert_int_equal(w.err, NODE_JW_ERR_FULL);
    }
    node_jw_free(&w);
  }
}

/* ---- reader: round trip and accessors ---------------------------------- */

static void test_roundtrip(void **state) {
  (void)state;
  node_jw w;
  char buf[64];
  int64_t iv;
  bool bv;
  node_jw_init(&w, 4096);
  node_jw_obj(&w);
  node_jw_kstr(&w, "cmd", "send \"hi\"\n\xc3\xa9");
  node_jw_kint(&w, "id", -7);
  node_jw_kbool(&w, "urgent", true);
  node_jw_kdouble(&w, "ttl", 2.5);
  node_jw_key(&w, "to");
  node_jw_arr(&w);
  node_jw_str(&w, "alice");
  node_jw_obj(&w);
  node_jw_kstr(&w, "name", "bob");
  node_jw_obj_end(&w);
  node_jw_null(&w);
  node_jw_arr_end(&w);
  node_jw_kint(&w, "big", INT64_MAX);
  node_jw_obj_end(&w);
  size_t len;
  const char *s = node_jw_done(&w, &len);
  assert_non_null(s);

  json_t *v;
  /* obj, 6 keys, 6 values, 3 elements, bob's key + value: 18 */
  assert_int_equal(node_json_parse(s, len, 17, &v, NULL, 0), NODE_JSON_ERR_TOOMANY);
  assert_null(v);
  assert_int_equal(node_json_parse(s, len, 18, &v, NULL, 0), 0);
  assert_true(json_is_object(v));
  assert_int_equal(json_object_size(v), 6);

  assert_int_equal(node_json_str(json_object_get(v, "cmd"), buf, sizeof buf), 12);
  assert_string_equal(buf, "send \"hi\"\n\xc3\xa9");
  assert_int_equal(node_json_int(json_object_get(v, "id"), &iv), 0);
  assert_int_equal(iv, -7);
  assert_int_equal(node_json_bool(json_object_get(v, "urgent"), &bv), 0);
  assert_true(bv);
  assert_true(json_real_value(json_object_get(v, "ttl")) == 2.5);
  assert_int_equal(node_json_int(json_object_get(v, "big"), &iv), 0);
  assert_int_equal(iv, INT64_MAX);

  const json_t *to = json_object_get(v, "to");
  assert_int_equal(json_array_size(to), 3);
  assert_int_equal(node_json_str(json_array_get(to, 0), buf, sizeof buf), 5);
  assert_string_equal(buf, "alice");
  assert_int_equal(node_json_str(json_object_get(json_array_get(to, 1), "name"), buf, sizeof buf),
                   3);
  assert_string_equal(buf, "bob");
  assert_true(json_is_null(json_array_get(to, 2)));

  /* keys come back in the order written */
  static const char *keys[] = {"cmd", "id", "urgent", "ttl", "to", "big"};
  const char *k;
  json_t *c;
  int i = 0;
  json_object_foreach(v, k, c) {
    assert_string_equal(k, keys[i]);
    i++;
  }

  /* re-serialising reproduces the writer's text byte for byte */
  size_t dl;
  char *d = node_json_dump(v, &dl);
  assert_non_null(d);
  assert_int_equal(dl, len);
  assert_string_equal(d, s);
  free(d);

  /* misses and wrong types */
  assert_null(json_object_get(v, "nope"));
  assert_null(json_object_get(v, "cm"));
  assert_null(json_object_get(to, "cmd"));
  assert_null(json_object_get(NULL, "cmd"));
  assert_int_equal(node_json_str(NULL, buf, sizeof buf), -1);
  assert_int_equal(node_json_str(v, buf, sizeof buf), -1);
  assert_int_equal(node_json_str(json_object_get(v, "id"), buf, sizeof buf), -1);
  assert_int_equal(node_json_int(NULL, &iv), -1);
  assert_int_equal(node_json_int(json_object_get(v, "cmd"), &iv), -1);
  assert_int_equal(node_json_int(json_object_get(v, "ttl"), &iv), -1);
  assert_int_equal(node_json_bool(json_object_get(v, "cmd"), &bv), -1);
  assert_int_equal(node_json_bool(NULL, &bv), -1);
  assert_null(node_json_dump(NULL, NULL));
  json_decref(v);
  node_jw_free(&w);
}

static void test_strings(void **state) {
  (void)state;
  char buf[32];
  json_t *v = parse_ok("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"");
  assert_int_equal(node_json_str(v, buf, sizeof buf), 8);
  assert_string_equal(buf, "\"\\/\b\f\n\r\t");
  json_decref(v);

  v = parse_ok("\"\\u00e9\\u20AC\\ud83d\\ude00\\uD83D\\uDE00x\"");
  assert_int_equal(node_json_str(v, buf, sizeof buf), 14);
  assert_string_equal(buf, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf0\x9f\x98\x80x");
  json_decref(v);

  /* out must hold length + 1 */
  v = parse_ok("\"abcd\"");
  assert_int_equal(node_json_str(v, buf, 5), 4);
  assert_string_equal(buf, "abcd");
  assert_int_equal(node_json_str(v, buf, 4), -2);
  assert_int_equal(node_json_str(v, buf, 0), -2);
  json_decref(v);
  v = parse_ok("\"\"");
  assert_int_equal(node_json_str(v, buf, 1), 0);
  assert_int_equal(node_json_str(v, buf, 0), -2);
  json_decref(v);

  /* U+0000 is valid JSON in a value, but cannot be a C string, even where
   * it would not fit */
  v = parse_ok("\"a\\u0000b\"");
  assert_int_equal(json_string_length(v), 3);
  assert_int_equal(node_json_str(v, buf, sizeof buf), -3);
  assert_int_equal(node_json_str(v, buf, 1), -3);
  json_decref(v);

  /* raw UTF-8 at the edges of the ranges */
  v = parse_ok("\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xf0\x90\x80\x80\xf4\x8f"
               "\xbf\xbf\x7f\"");
  assert_int_equal(node_json_str(v, buf, sizeof buf), 22);
  json_decref(v);

  /* keys compare unescaped; duplicates are per object */
  v = parse_ok("{\"\\u0061\":1,\"\\u00e9\":{\"a\":2},\"\":3}");
  int64_t n;
  assert_int_equal(node_json_int(json_object_get(v, "a"), &n), 0);
  assert_int_equal(n, 1);
  const json_t *o = json_object_get(v, "\xc3\xa9");
  assert_true(json_is_object(o));
  assert_int_equal(node_json_int(json_object_get(o, "a"), &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(node_json_int(json_object_get(v, ""), &n), 0);
  assert_int_equal(n, 3);
  json_decref(v);
}

static void test_numbers(void **state) {
  (void)state;
  static const struct {
    const char *s;
    int ok;
    int64_t v;
  } ints[] = {
      {"0", 0, 0},
      {"-0", 0, 0},
      {"123", 0, 123},
      {"9223372036854775807", 0, INT64_MAX},
      {"-9223372036854775808", 0, INT64_MIN},
      {"1.0", -1, 0}, /* reals are not integers, whole or not */
      {"1e2", -1, 0},
      {"-1E0", -1, 0},
  };
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    json_t *j = parse_ok(ints[i].s);
    int64_t v = 42;
    assert_int_equal(node_json_int(j, &v), ints[i].ok);
    assert_int_equal(v, ints[i].ok ? 42 : ints[i].v);
    json_decref(j);
  }
  json_t *j = parse_ok("-0.0");
  assert_true(json_real_value(j) == 0 && signbit(json_real_value(j)));
  json_decref(j);
  j = parse_ok("1e308");
  assert_true(json_real_value(j) == 1e308);
  json_decref(j);
  j = parse_ok("-1.5E-3");
  assert_true(json_real_value(j) == -1.5e-3);
  json_decref(j);
  j = parse_ok("4.9e-325"); /* underflows to zero: accepted */
  assert_true(json_real_value(j) == 0);
  json_decref(j);
}

static void test_valid_edges(void **state) {
  (void)state;
  bool b;
  json_t *v = parse_ok("{}");
  assert_true(json_is_object(v));
  assert_int_equal(json_object_size(v), 0);
  json_decref(v);

  v = parse_ok(" \t\r\n[ ] \n");
  assert_true(json_is_array(v));
  json_decref(v);

  v = parse_ok("[true,false,null]");
  assert_int_equal(node_json_bool(json_array_get(v, 0), &b), 0);
  assert_true(b);
  assert_int_equal(node_json_bool(json_array_get(v, 1), &b), 0);
  assert_false(b);
  assert_true(json_is_null(json_array_get(v, 2)));
  json_decref(v);

  /* the same key in different objects is fine */
  json_decref(parse_ok("{\"a\":{\"a\":[{\"a\":1},{\"a\":2}]},\"b\":1}"));

  /* exactly NODE_JSON_MAX_DEPTH deep, with an object in the middle */
  char deep[2 * NODE_JSON_MAX_DEPTH + 16];
  size_t k = 0;
  for (int d = 0; d < NODE_JSON_MAX_DEPTH; d++)
    k += (size_t)snprintf(deep + k, sizeof deep - k, d == 10 ? "{\"\":" : "[");
  for (int d = NODE_JSON_MAX_DEPTH - 1; d >= 0; d--)
    deep[k++] = d == 10 ? '}' : ']';
  assert_int_equal(node_json_parse(deep, k, NVAL, &v, NULL, 0), 0);
  json_decref(v);

  /* the input needs no NUL, and is never read past len */
  const char nul[] = "[1]\0";
  assert_int_equal(node_json_parse(nul, 3, NVAL, &v, NULL, 0), 0);
  json_decref(v);
  assert_int_equal(node_json_parse(NULL, 0, NVAL, &v, NULL, 0), NODE_JSON_ERR_SYNTAX);
  assert_null(v);
  assert_int_equal(node_json_parse("1", NODE_JSON_MAX_INPUT + 1, NVAL, &v, NULL, 0),
                   NODE_JSON_ERR_TOOBIG);
}

/* ---- reader: refusals -------------------------------------------------- */

struct bad {
  const char *s;
  size_t len;
  int err;
  int max_values; /* 0: NVAL; -1: 0 */
};
#define BAD(lit, e)                                                                                \
  { lit, sizeof(lit) - 1, e, 0 }
#define SYN(lit) BAD(lit, NODE_JSON_ERR_SYNTAX)
#define UTF(lit) BAD(lit, NODE_JSON_ERR_UTF8)

static const struct bad bad_inputs[] = {
    SYN(""),
    SYN(" \t\r\n "),
    SYN("\v1"),            /* not JSON whitespace */
    SYN("\xef\xbb\xbf{}"), /* BOM */
    SYN("[1,]"),           /* trailing commas */
    SYN("{\"a\":1,}"),
    SYN("[,1]"),
    SYN("[1 2]"),
    SYN("[1,,2]"),
    SYN("01"), /* numbers */
    SYN("-01"),
    SYN("[00]"),
    SYN("1."),
    SYN("1.e5"),
    SYN(".5"),
    SYN("-"),
    SYN("- 1"),
    SYN("+1"),
    SYN("1e"),
    SYN("1e+"),
    SYN("1E-"),
    BAD("0x10", NODE_JSON_ERR_TRAILING),
    BAD("1e5.0", NODE_JSON_ERR_TRAILING),
    BAD("1x", NODE_JSON_ERR_TRAILING),
    SYN("NaN"),
    SYN("-NaN"),
    SYN("Infinity"),
    SYN("-Infinity"),
    SYN("\"\\x\""), /* escapes */
    SYN("\"\\u12\""),
    SYN("\"\\u12G4\""),
    SYN("\"\\U0041\""),
    SYN("\"\\"),
    SYN("\"\\ud800\""), /* lone surrogates */
    SYN("\"\\udc00\""),
    SYN("\"\\ud800x\""),
    SYN("\"\\ud800\\u0041\""),
    SYN("\"\\udbff\\udbff\""),
    SYN("\"\\ude00\\ud83d\""),
    SYN("\"\\ud800\\"),
    SYN("\"a\tb\""), /* raw control characters */
    SYN("\"a\nb\""),
    SYN("\"\x1f\""),
    SYN("\"\x00\""),
    UTF("\"\xff\""), /* invalid UTF-8 */
    UTF("\"\x80\""),
    UTF("\"\xc1\xbf\""), /* overlong, 2 bytes */
    UTF("\"\xc0\xaf\""),
    UTF("\"\xe0\x80\xaf\""), /* overlong, 3 bytes */
    UTF("\"\xe0\x9f\xbf\""),
    UTF("\"\xf0\x80\x80\xaf\""), /* overlong, 4 bytes */
    UTF("\"\xf0\x8f\xbf\xbf\""),
    UTF("\"\xed\xa0\x80\""),     /* UTF-8 encoded surrogate */
    UTF("\"\xf4\x90\x80\x80\""), /* past U+10FFFF */
    UTF("\"\xf5\x80\x80\x80\""),
    UTF("\"\xe2\x82\""), /* cut short */
    UTF("\"\xe2\x82"),
    UTF("\"\xc3\""),
    UTF("\"\xc3\x28\""),
    SYN("\"abc"), /* unclosed */
    SYN("["),
    SYN("[1,2"),
    SYN("[1,2,"),
    SYN("{"),
    SYN("{\"a\":1"),
    SYN("{\"a\""),
    SYN("{\"a\":"),
    SYN("[[[]]"),
    SYN("[1}"), /* mismatched */
    SYN("{\"a\":1]"),
    SYN("[}"),
    SYN("{]"),
    SYN("]"),
    SYN("}"),
    SYN("{\"a\" 1}"), /* object grammar */
    SYN("{\"a\"}"),
    SYN("{1:2}"),
    SYN("{a:1}"),
    SYN("{\"a\":1;\"b\":2}"),
    SYN("[1:2]"),
    SYN("[\"a\";\"b\"]"),
    SYN("{\"a\":{}|\"b\":1}"),
    SYN("/* c */ 1"), /* comments */
    SYN("// c\n1"),
    SYN("'a'"), /* single quotes */
    SYN("{'a':1}"),
    SYN("tru"), /* misspelt literals */
    SYN("True"),
    SYN("truex"),
    SYN("fals"),
    SYN("falsee"),
    SYN("nul"),
    SYN("NULL"),
    SYN("nil"),
    SYN("undefined"),
    BAD("1 2", NODE_JSON_ERR_TRAILING), /* two values */
    BAD("{} {}", NODE_JSON_ERR_TRAILING),
    BAD("\"a\"\"b\"", NODE_JSON_ERR_TRAILING),
    BAD("[]]", NODE_JSON_ERR_TRAILING),
    BAD("[1] // c", NODE_JSON_ERR_TRAILING),
    BAD("[1]\0", NODE_JSON_ERR_TRAILING),
    BAD("null,", NODE_JSON_ERR_TRAILING),
    BAD("{\"a\":1,\"a\":2}", NODE_JSON_ERR_DUPKEY),
    BAD("{\"a\":1,\"\\u0061\":2}", NODE_JSON_ERR_DUPKEY),
    BAD("{\"\\ud83d\\ude00\":1,\"\xf0\x9f\x98\x80\":2}", NODE_JSON_ERR_DUPKEY),
    BAD("{\"\":1,\"b\":[],\"\":2}", NODE_JSON_ERR_DUPKEY),
    BAD("{\"x\":{\"b\":{},\"c\":1,\"b\":1}}", NODE_JSON_ERR_DUPKEY),
    {"[1,2,3]", 7, NODE_JSON_ERR_TOOMANY, 3},        /* 4 values */
    {"{\"a\":1}", 7, NODE_JSON_ERR_TOOMANY, 2},      /* object, key, value */
    {"\"a\"", 3, NODE_JSON_ERR_TOOMANY, -1},         /* -1: a max of 0 */
    BAD("9223372036854775808", NODE_JSON_ERR_RANGE), /* integers past int64 */
    BAD("-9223372036854775809", NODE_JSON_ERR_RANGE),
    BAD("{\"n\":99999999999999999999999}", NODE_JSON_ERR_RANGE),
    BAD("1e309", NODE_JSON_ERR_RANGE), /* no finite double */
    BAD("{\"a\\u0000\":1}", NODE_JSON_ERR_NULKEY),
};

static void test_refused(void **state) {
  (void)state;
  size_t n = sizeof bad_inputs / sizeof bad_inputs[0];
  assert_true(n >= 40);
  int seen[16] = {0};
  for (size_t i = 0; i < n; i++) {
    const struct bad *b = &bad_inputs[i];
    /* an exact-size heap copy, so the sanitizer sees any read past len */
    char *s = malloc(b->len ? b->len : 1);
    assert_non_null(s);
    memcpy(s, b->s, b->len);
    size_t max = b->max_values > 0 ? (size_t)b->max_values : b->max_values < 0 ? 0 : NVAL;
    json_t *v = (json_t *)1;
    char why[200];
    int r = node_json_parse(s, b->len, max, &v, why, sizeof why);
    if (r != b->err)
      fail_msg("case %zu \"%s\": got %d (%s), want %d", i, b->s, r, why, b->err);
    assert_null(v);
    assert_true(why[0] != '\0'); /* every refusal says why */
    seen[-r]++;
    free(s);
  }
  /* the table covers every rule */
  for (int e = 1; e <= 9; e++)
    if (e != -NODE_JSON_ERR_DEPTH && e != -NODE_JSON_ERR_TOOBIG && !seen[e])
      fail_msg("no case for error %d", -e);

  /* one more value than needed is exactly enough */
  json_t *v;
  assert_int_equal(node_json_parse("[1,2,3]", 7, 4, &v, NULL, 0), 0);
  json_decref(v);
  assert_int_equal(node_json_parse("{\"a\":1}", 7, 3, &v, NULL, 0), 0);
  json_decref(v);

  /* nesting one past NODE_JSON_MAX_DEPTH, as arrays and as objects */
  char deep[8 * NODE_JSON_MAX_DEPTH];
  size_t k = 0;
  for (int d = 0; d <= NODE_JSON_MAX_DEPTH; d++)
    deep[k++] = '[';
  assert_int_equal(node_json_parse(deep, k, NVAL, &v, NULL, 0), NODE_JSON_ERR_SYNTAX); /* open */
  for (int d = 0; d <= NODE_JSON_MAX_DEPTH; d++)
    deep[k++] = ']';
  assert_int_equal(node_json_parse(deep, k, NVAL, &v, NULL, 0), NODE_JSON_ERR_DEPTH);
  k = 0;
  for (int d = 0; d <= NODE_JSON_MAX_DEPTH; d++)
    k += (size_t)snprintf(deep + k, sizeof deep - k, "{\"a\":");
  deep[k++] = '1';
  for (int d = 0; d <= NODE_JSON_MAX_DEPTH; d++)
    deep[k++] = '}';
  assert_int_equal(node_json_parse(deep, k, NVAL, &v, NULL, 0), NODE_JSON_ERR_DEPTH);
  assert_null(v);

  /* far past jansson's own limit (2048): still DEPTH, and no crash */
  size_t big = 100000;
  char *huge = malloc(2 * big);
  assert_non_null(huge);
  memset(huge, '[', big);
  memset(huge + big, ']', big);
  assert_int_equal(node_json_parse(huge, 2 * big, SIZE_MAX, &v, NULL, 0), NODE_JSON_ERR_DEPTH);
  free(huge);
}

/* ---- fuzz -------------------------------------------------------------- */

static const char alphabet[] = "{}[]\",:0123456789-+.eEtrufalsn \\u\t\n/abdfx\xc3\xa9\xed\xa0\xff";

/* A random document from the writer: strings of any bytes; keys unique by
 * construction (a distinct prefix before ':'). */
static void gen(node_jw *w, int depth) {
  char str[24];
  size_t sl = rng_below(sizeof str);
  for (size_t i = 0; i < sl; i++)
    str[i] = (char)rng_next();
  switch (depth < NODE_JSON_MAX_DEPTH ? rng_below(9) : 2 + rng_below(7)) {
  case 0:
  case 1: {
    bool is_obj = rng_below(2);
    size_t m = rng_below(5);
    if (is_obj)
      node_jw_obj(w);
    else
      node_jw_arr(w);
    for (size_t i = 0; i < m; i++) {
      if (is_obj) {
        char key[40];
        int kl = snprintf(key, sizeof key, "%zu:", i);
        for (size_t j = 0, kn = rng_below(8); j < kn; j++)
          key[kl++] = (char)(1 + rng_below(255)); /* no NUL in a C string */
        key[kl] = '\0';
        node_jw_key(w, key);
      }
      gen(w, depth + 1);
    }
    if (is_obj)
      node_jw_obj_end(w);
    else
      node_jw_arr_end(w);
    break;
  }
  case 2:
    node_jw_strn(w, str, sl);
    break;
  case 3:
    node_jw_int(w, (int64_t)rng_next() >> rng_below(64));
    break;
  case 4:
    node_jw_uint(w, rng_next());
    break;
  case 5: {
    uint64_t bits = rng_next();
    double d;
    memcpy(&d, &bits, sizeof d);
    node_jw_double(w, rng_below(2) ? d : (double)(int64_t)rng_next() / 1e6);
    break;
  }
  case 6:
    node_jw_bool(w, rng_below(2));
    break;
  case 7:
    node_jw_null(w);
    break;
  default:
    node_jw_str(w, "");
    break;
  }
}

static void test_fuzz(void **state) {
  (void)state;
  static const char *seeds[] = {
      "{\"cmd\":\"send\",\"to\":[\"a\",\"b\"],\"n\":-12.5e3,\"ok\":true,\"x\":null}",
      "[0,-0,1e308,-1E-5,9223372036854775807,-9223372036854775808,false]",
      "{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\xc3\xa9\",\"e\":{},\"a\":[]}",
      "[[[[{\"a\":[[{}]]}]]]]",
      "\"\\u0000\"",
      "{\"\\u0061\":1,\"b\":{\"c\":[1,2,{\"c\":\"d\\u0000\"}]}}",
  };
  char *in = malloc(FUZZ_MAX);
  assert_non_null(in);
  int parsed[10] = {0}, errs[16] = {0};
  node_jw g;
  node_jw_init(&g, FUZZ_MAX);

  for (int iter = 0; iter < 100000; iter++) {
    size_t len = 0;
    int kind = (int)rng_below(10);
    if (kind < 4) { /* random bytes, mostly from a JSON-ish alphabet */
      len = rng_below(48);
      bool any = rng_below(4) == 0;
      for (size_t i = 0; i < len; i++)
        in[i] = any ? (char)rng_next() : alphabet[rng_below(sizeof alphabet - 1)];
    } else if (kind < 8) { /* mutations of a seed or a writer document */
      const char *src = seeds[rng_below(sizeof seeds / sizeof seeds[0])];
      size_t sl = strlen(src);
      if (rng_below(2)) {
        node_jw_free(&g);
        gen(&g, 0);
        const char *doc = node_jw_done(&g, &sl);
        if (doc)
          src = doc;
        else
          sl = strlen(src);
      }
      memcpy(in, src, sl);
      len = sl;
      for (size_t m = rng_below(4) ? 1 : 2 + rng_below(3); m > 0; m--) {
        size_t at = len ? rng_below(len) : 0;
        switch (rng_below(5)) {
        case 0: /* replace */
          if (len)
            in[at] = rng_below(2) ? alphabet[rng_below(sizeof alphabet - 1)] : (char)rng_next();
          break;
        case 1: /* insert */
          if (len < FUZZ_MAX) {
            memmove(in + at + 1, in + at, len - at);
            in[at] = alphabet[rng_below(sizeof alphabet - 1)];
            len++;
          }
          break;
        case 2: /* delete */
          if (len) {
            memmove(in + at, in + at + 1, len - at - 1);
            len--;
          }
          break;
        case 3: /* truncate */
          len = at;
          break;
        default: { /* copy a span over another place */
          size_t from = len ? rng_below(len) : 0, k = rng_below(len - from + 1);
          if (at + k <= len)
            memmove(in + at, in + from, k);
          break;
        }
        }
      }
    } else if (kind == 8) { /* nesting around the limit: refused exactly past it */
      int d = 28 + (int)rng_below(9);
      char closers[40];
      for (int k = 0; k < d; k++) {
        bool o = rng_below(2);
        memcpy(in + len, o ? "{\"\":" : "[", o ? 4 : 1);
        len += o ? 4 : 1;
        closers[k] = o ? '}' : ']';
      }
      in[len++] = '1';
      while (d > 0)
        in[len++] = closers[--d];
    } else { /* a whole writer document: it must parse */
      node_jw_free(&g);
      gen(&g, 0);
      const char *doc = node_jw_done(&g, &len);
      if (!doc) { /* only the cap may stop the writer */
        assert_int_equal(g.err, NODE_JW_ERR_FULL);
        continue;
      }
      memcpy(in, doc, len);
    }

    /* exact-size copy: a read past len is a sanitizer report */
    char *s = malloc(len ? len : 1);
    assert_non_null(s);
    memcpy(s, in, len);
    size_t max = rng_below(8) ? NVAL : rng_below(8);
    json_t *v;
    int r = node_json_parse(s, len, max, &v, NULL, 0);
    if (kind == 9 && max == NVAL && r != 0 && r != NODE_JSON_ERR_TOOMANY)
      fail_msg("writer output refused (%d): %.*s", r, (int)len, s);
    if (kind == 8 && max == NVAL) {
      int opens = 0;
      for (size_t i = 0; i < len; i++)
        opens += in[i] == '[' || in[i] == '{';
      assert_true(opens <= NODE_JSON_MAX_DEPTH ? r == 0 : r == NODE_JSON_ERR_DEPTH);
    }
    if (r != 0) {
      assert_null(v);
      assert_true(r >= NODE_JSON_ERR_NOMEM && r != NODE_JSON_ERR_NOMEM);
      errs[-r]++;
      free(s);
      continue;
    }
    parsed[kind]++;

    /* what parses re-serialises to a fixed point: dump, parse, dump again */
    size_t olen, olen2;
    char *out = node_json_dump(v, &olen);
    assert_non_null(out);
    json_t *v2;
    r = node_json_parse(out, olen, SIZE_MAX, &v2, NULL, 0);
    if (r != 0)
      fail_msg("re-serialised %.*s as %s: refused (%d)", (int)len, s, out, r);
    assert_true(json_equal(v, v2));
    char *out2 = node_json_dump(v2, &olen2);
    assert_non_null(out2);
    assert_int_equal(olen, olen2);
    assert_string_equal(out, out2);
    if (kind == 9) /* the writer's own text is that fixed point */
      assert_memory_equal(out, in, len);
    free(out);
    free(out2);
    json_decref(v);
    json_decref(v2);
    free(s);
  }
  int random = parsed[0] + parsed[1] + parsed[2] + parsed[3];
  int mutated = parsed[4] + parsed[5] + parsed[6] + parsed[7];
  printf("test_json: fuzz parsed random %d, mutated %d, deep %d, gen %d; refused syntax %d, "
         "toomany %d, depth %d, trailing %d, dupkey %d, utf8 %d, range %d, nulkey %d\n",
         random, mutated, parsed[8], parsed[9], errs[1], errs[2], errs[3], errs[4], errs[5],
         errs[7], errs[8], errs[9]);
  /* the loop must have reached every outcome, or it tests less than it says */
  assert_true(random > 100 && mutated > 5000 && parsed[8] > 1000 && parsed[9] > 5000);
  for (int e = 1; e <= 7; e++)
    if (e != -NODE_JSON_ERR_TOOBIG)
      assert_true(errs[e] > 0);
  node_jw_free(&g);
  free(in);
}

int main(void) {
  const char *env = getenv("ROOST_SEED");
  uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
  printf("test_json: ROOST_SEED=%llu\n", (unsigned long long)seed);
  rng_state = seed;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_writer_nested), cmocka_unit_test(test_writer_escapes),
      cmocka_unit_test(test_writer_misuse), cmocka_unit_test(test_writer_cap),
      cmocka_unit_test(test_roundtrip),     cmocka_unit_test(test_strings),
      cmocka_unit_test(test_numbers),       cmocka_unit_test(test_valid_edges),
      cmocka_unit_test(test_refused),       cmocka_unit_test(test_fuzz),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

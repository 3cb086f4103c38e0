/*
 * test_json.c - node_json.c: exact writer output and escaping, the writer's
 * caps and misuse errors, strict parsing (a table of refused inputs, each
 * with its error), accessors at their edges, and a seeded fuzz loop: random
 * bytes, mutated valid documents and random writer documents must never
 * crash the parser, writer output must always parse, and whatever parses
 * must re-serialise into JSON that parses to the same structure.
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

#define NTOK 256
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

/* Parses a NUL-terminated literal; asserts success and returns the count. */
static int parse_ok(const char *s, node_jt *t) {
  int n = node_json_parse(s, strlen(s), t, NTOK);
  if (n <= 0)
    fail_msg("refused (%d): %s", n, s);
  return n;
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
  node_jw_kuint(&w, "u", UINT64_MAX);
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
  node_jw_raw(&w, "[3]", 3);
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
                     "\"u\":18446744073709551615,\"ok\":true,\"d\":0.5,"
                     "\"tenth\":0.10000000000000001,\"nan\":null,\"inf\":null,\"none\":null,"
                     "\"list\":[1,\"two\",null,{},[],[3]],"
                     "\"nested\":{\"deep\":[false,-0,1.0000000000000001e+300]}}";
  const char *got = node_jw_done(&w, &len);
  assert_non_null(got);
  assert_string_equal(got, want);
  assert_int_equal(len, strlen(want));
  node_jw_free(&w);
  assert_null(node_jw_done(&w, NULL)); /* reset: nothing written */

  /* a scalar is a whole document too */
  node_jw_str(&w, "x");
  assert_string_equal(node_jw_done(&w, NULL), "\"x\"");
  node_jw_free(&w);
}

static void test_writer_escapes(void **state) {
  (void)state;
  node_jw w;
  char want[16];
  node_jw_init(&w, 1024);
  for (int c = 0; c < 0x20; c++) {
    char ch = (char)c;
    node_jw_strn(&w, &ch, 1);
    snprintf(want, sizeof want, "\"\\u%04x\"", c);
    assert_string_equal(node_jw_done(&w, NULL), want);
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
      {"\x80x\xc3\xa9", "\"\xef\xbf\xbdx\xc3\xa9\""},
      {"", "\"\""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    node_jw_str(&w, cases[i].in);
    assert_string_equal(node_jw_done(&w, NULL), cases[i].out);
    node_jw_free(&w);
  }
  /* keys are escaped the same way; a NUL inside strn is kept */
  node_jw_obj(&w);
  node_jw_key(&w, "k\"\n\xff");
  node_jw_strn(&w, "a\0b", 3);
  node_jw_obj_end(&w);
  assert_string_equal(node_jw_done(&w, NULL), "{\"k\\\"\\u000a\xef\xbf\xbd\":\"a\\u0000b\"}");
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

  node_jw_obj(&w); /* unbalanced: no error code, but no document */
  assert_int_equal(w.err, 0);
  assert_null(node_jw_done(&w, NULL));
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

  /* errors are sticky: nothing more is written */
  node_jw_arr(&w);
  node_jw_key(&w, "k");
  size_t len = w.len;
  node_jw_int(&w, 1);
  node_jw_arr_end(&w);
  assert_int_equal(w.len, len);
  assert_int_equal(w.err, NODE_JW_ERR_USAGE);
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
  assert_string_equal(node_jw_done(&w, NULL), "[1]");
  assert_true(w.cap <= 4);
  node_jw_free(&w);

  node_jw_init(&w, 3);
  node_jw_arr(&w);
  node_jw_int(&w, 1);
  node_jw_arr_end(&w);
  assert_int_equal(w.err, NODE_JW_ERR_FULL);
  assert_null(node_jw_done(&w, NULL));
  node_jw_arr_end(&w); /* sticky, no crash */
  assert_int_equal(w.err, NODE_JW_ERR_FULL);
  node_jw_free(&w);

  node_jw_init(&w, 0);
  node_jw_null(&w);
  assert_int_equal(w.err, NODE_JW_ERR_FULL);
  assert_null(w.buf);
  node_jw_free(&w);

  /* growth by doubling across many writes, never past max */
  node_jw_init(&w, 1000);
  node_jw_arr(&w);
  int i;
  for (i = 0; !w.err; i++) {
    node_jw_str(&w, "0123456789");
    assert_true(w.cap <= 1000);
  }
  assert_int_equal(w.err, NODE_JW_ERR_FULL);
  assert_int_equal(i, 77); /* "[" + 13 bytes per element + NUL: 76 fit */
  assert_null(node_jw_done(&w, NULL));
  node_jw_free(&w);
}

/* ---- parser: round trip and accessors ---------------------------------- */

static void test_roundtrip(void **state) {
  (void)state;
  node_jw w;
  node_jt t[NTOK];
  char buf[64];
  int64_t iv;
  double dv;
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
  node_jw_kuint(&w, "big", UINT64_MAX);
  node_jw_obj_end(&w);
  size_t len;
  const char *s = node_jw_done(&w, &len);
  assert_non_null(s);

  int n = node_json_parse(s, len, t, NTOK);
  assert_int_equal(n, 18); /* obj, 6 keys, 6 values, 3 elements, bob's key + value */
  assert_int_equal(t[0].type, NODE_JSON_OBJ);
  assert_int_equal(t[0].size, 6);
  assert_int_equal(t[0].next, n);
  assert_int_equal(t[0].start, 0);
  assert_int_equal(t[0].end, (int)len);

  int i = node_json_get(s, t, n, 0, "cmd");
  assert_int_equal(node_json_str(s, t, i, buf, sizeof buf), 12);
  assert_string_equal(buf, "send \"hi\"\n\xc3\xa9");
  assert_int_equal(node_json_int(s, t, node_json_get(s, t, n, 0, "id"), &iv), 0);
  assert_int_equal(iv, -7);
  assert_int_equal(node_json_bool(s, t, node_json_get(s, t, n, 0, "urgent"), &bv), 0);
  assert_true(bv);
  assert_int_equal(node_json_double(s, t, node_json_get(s, t, n, 0, "ttl"), &dv), 0);
  assert_true(dv == 2.5);
  assert_int_equal(node_json_int(s, t, node_json_get(s, t, n, 0, "big"), &iv), -1);
  assert_int_equal(node_json_double(s, t, node_json_get(s, t, n, 0, "big"), &dv), 0);
  assert_true(dv == 18446744073709551615.0);

  /* walking the array through next links */
  int to = node_json_get(s, t, n, 0, "to");
  assert_int_equal(t[to].type, NODE_JSON_ARR);
  assert_int_equal(t[to].size, 3);
  int c = to + 1;
  assert_int_equal(node_json_str(s, t, c, buf, sizeof buf), 5);
  assert_string_equal(buf, "alice");
  c = t[c].next;
  assert_int_equal(t[c].type, NODE_JSON_OBJ);
  int name = node_json_get(s, t, n, c, "name");
  assert_int_equal(node_json_str(s, t, name, buf, sizeof buf), 3);
  assert_string_equal(buf, "bob");
  c = t[c].next;
  assert_true(node_json_is_null(t, c));
  assert_int_equal(t[c].next, t[to].next);

  /* walking the object's keys: a key's next is the next key */
  static const char *keys[] = {"cmd", "id", "urgent", "ttl", "to", "big"};
  c = 1;
  for (int k = 0; k < t[0].size; k++, c = t[c].next) {
    assert_int_equal(node_json_str(s, t, c, buf, sizeof buf), (int)strlen(keys[k]));
    assert_string_equal(buf, keys[k]);
    assert_int_equal(t[c].size, 1);
  }
  assert_int_equal(c, n);

  /* misses and wrong types */
  assert_int_equal(node_json_get(s, t, n, 0, "nope"), -1);
  assert_int_equal(node_json_get(s, t, n, 0, "cm"), -1);
  assert_int_equal(node_json_get(s, t, n, 0, "cmdx"), -1);
  assert_int_equal(node_json_get(s, t, n, to, "cmd"), -1);
  assert_int_equal(node_json_get(s, t, n, -1, "cmd"), -1);
  assert_int_equal(node_json_get(s, t, n, n, "cmd"), -1);
  assert_int_equal(node_json_str(s, t, -1, buf, sizeof buf), -1);
  assert_int_equal(node_json_str(s, t, 0, buf, sizeof buf), -1);
  assert_int_equal(node_json_int(s, t, -1, &iv), -1);
  assert_int_equal(node_json_int(s, t, i, &iv), -1);
  assert_int_equal(node_json_bool(s, t, i, &bv), -1);
  assert_int_equal(node_json_bool(s, t, -1, &bv), -1);
  assert_int_equal(node_json_double(s, t, i, &dv), -1);
  assert_false(node_json_is_null(t, -1));
  assert_false(node_json_is_null(t, i));
  node_jw_free(&w);
}

static void test_strings(void **state) {
  (void)state;
  node_jt t[NTOK];
  char buf[32];
  const char *s = "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"";
  parse_ok(s, t);
  assert_int_equal(node_json_str(s, t, 0, buf, sizeof buf), 8);
  assert_string_equal(buf, "\"\\/\b\f\n\r\t");

  s = "\"\\u00e9\\u20AC\\ud83d\\ude00\\uD83D\\uDE00x\"";
  parse_ok(s, t);
  assert_int_equal(node_json_str(s, t, 0, buf, sizeof buf), 14);
  assert_string_equal(buf, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf0\x9f\x98\x80x");

  /* out must hold length + 1 */
  s = "\"abcd\"";
  parse_ok(s, t);
  assert_int_equal(node_json_str(s, t, 0, buf, 5), 4);
  assert_string_equal(buf, "abcd");
  assert_int_equal(node_json_str(s, t, 0, buf, 4), -2);
  assert_int_equal(node_json_str(s, t, 0, buf, 0), -2);
  s = "\"\"";
  parse_ok(s, t);
  assert_int_equal(node_json_str(s, t, 0, buf, 1), 0);
  assert_int_equal(node_json_str(s, t, 0, buf, 0), -2);

  /* U+0000 cannot be a C string, even where it would not fit */
  s = "\"a\\u0000b\"";
  parse_ok(s, t);
  assert_int_equal(node_json_str(s, t, 0, buf, sizeof buf), -3);
  assert_int_equal(node_json_str(s, t, 0, buf, 1), -3);

  /* raw UTF-8 at the edges of the ranges */
  s = "\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\x7f"
      "\"";
  parse_ok(s, t);
  assert_int_equal(node_json_str(s, t, 0, buf, sizeof buf), 22);

  /* keys compare unescaped; duplicates are per object */
  s = "{\"\\u0061\":1,\"\\u00e9\":{\"a\":2},\"\":3}";
  int n = parse_ok(s, t);
  int64_t v;
  assert_int_equal(node_json_int(s, t, node_json_get(s, t, n, 0, "a"), &v), 0);
  assert_int_equal(v, 1);
  int o = node_json_get(s, t, n, 0, "\xc3\xa9");
  assert_int_equal(t[o].type, NODE_JSON_OBJ);
  assert_int_equal(node_json_int(s, t, node_json_get(s, t, n, o, "a"), &v), 0);
  assert_int_equal(v, 2);
  assert_int_equal(node_json_int(s, t, node_json_get(s, t, n, 0, ""), &v), 0);
  assert_int_equal(v, 3);
}

static void test_numbers(void **state) {
  (void)state;
  node_jt t[NTOK];
  int64_t v;
  double d;
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
      {"9223372036854775808", -1, 0},
      {"-9223372036854775809", -1, 0},
      {"18446744073709551616", -1, 0},
      {"99999999999999999999999", -1, 0},
      {"1.0", -1, 0},
      {"1e2", -1, 0},
      {"-1E0", -1, 0},
  };
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    parse_ok(ints[i].s, t);
    v = 42;
    assert_int_equal(node_json_int(ints[i].s, t, 0, &v), ints[i].ok);
    assert_int_equal(v, ints[i].ok ? 42 : ints[i].v);
  }

  parse_ok("-0", t);
  assert_int_equal(node_json_double("-0", t, 0, &d), 0);
  assert_true(d == 0 && signbit(d));
  parse_ok("1e308", t);
  assert_int_equal(node_json_double("1e308", t, 0, &d), 0);
  assert_true(d == 1e308);
  parse_ok("-1.5E-3", t);
  assert_int_equal(node_json_double("-1.5E-3", t, 0, &d), 0);
  assert_true(d == -1.5e-3);
  parse_ok("1e309", t); /* valid JSON, but no finite double */
  assert_int_equal(node_json_double("1e309", t, 0, &d), -1);
  parse_ok("4.9e-325", t); /* underflows to zero: accepted */
  assert_int_equal(node_json_double("4.9e-325", t, 0, &d), 0);

  char big[200];
  memset(big, '1', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  parse_ok(big, t);
  assert_int_equal(node_json_double(big, t, 0, &d), -1); /* longer than 127 bytes */
  big[128] = '\0';
  parse_ok(big, t);
  assert_int_equal(node_json_double(big, t, 0, &d), -1);
  big[127] = '\0';
  parse_ok(big, t);
  assert_int_equal(node_json_double(big, t, 0, &d), 0);
}

static void test_valid_edges(void **state) {
  (void)state;
  node_jt t[NTOK];
  bool b;
  int n = parse_ok("{}", t);
  assert_int_equal(n, 1);
  assert_int_equal(t[0].type, NODE_JSON_OBJ);
  assert_int_equal(t[0].size, 0);
  assert_int_equal(t[0].next, 1);

  n = parse_ok(" \t\r\n[ ] \n", t);
  assert_int_equal(n, 1);
  assert_int_equal(t[0].type, NODE_JSON_ARR);
  assert_int_equal(t[0].start, 4);
  assert_int_equal(t[0].end, 7);

  n = parse_ok("[true,false,null]", t);
  assert_int_equal(n, 4);
  assert_int_equal(node_json_bool("", t, 1, &b), 0);
  assert_true(b);
  assert_int_equal(node_json_bool("", t, 2, &b), 0);
  assert_false(b);
  assert_true(node_json_is_null(t, 3));

  n = parse_ok("\"ab\"", t);
  assert_int_equal(t[0].start, 1);
  assert_int_equal(t[0].end, 3);

  /* the same key in different objects is fine */
  parse_ok("{\"a\":{\"a\":[{\"a\":1},{\"a\":2}]},\"b\":1}", t);

  /* exactly NODE_JSON_MAX_DEPTH deep, with an object in the middle */
  char deep[2 * NODE_JSON_MAX_DEPTH + 16];
  size_t k = 0;
  for (int d = 0; d < NODE_JSON_MAX_DEPTH; d++)
    k += (size_t)snprintf(deep + k, sizeof deep - k, d == 10 ? "{\"\":" : "[");
  for (int d = NODE_JSON_MAX_DEPTH - 1; d >= 0; d--)
    deep[k++] = d == 10 ? '}' : ']';
  n = node_json_parse(deep, k, t, NTOK);
  assert_int_equal(n, NODE_JSON_MAX_DEPTH + 1);

  /* the input needs no NUL, and one in the middle is just a byte */
  const char nul[] = "[1]\0";
  assert_int_equal(node_json_parse(nul, 3, t, NTOK), 2);
  assert_int_equal(node_json_parse(NULL, 0, t, NTOK), NODE_JSON_ERR_SYNTAX);
}

/* ---- parser: refusals -------------------------------------------------- */

struct bad {
  const char *s;
  size_t len;
  int err;
  int max_tokens; /* 0: NTOK */
};
#define BAD(lit, e)                                                                                \
  { lit, sizeof(lit) - 1, e, 0 }
#define SYN(lit) BAD(lit, NODE_JSON_ERR_SYNTAX)

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
    SYN("0x10"),
    SYN("1e5.0"),
    SYN("1x"),
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
    SYN("\"\xff\""), /* invalid UTF-8 */
    SYN("\"\x80\""),
    SYN("\"\xc1\xbf\""), /* overlong, 2 bytes */
    SYN("\"\xc0\xaf\""),
    SYN("\"\xe0\x80\xaf\""), /* overlong, 3 bytes */
    SYN("\"\xe0\x9f\xbf\""),
    SYN("\"\xf0\x80\x80\xaf\""), /* overlong, 4 bytes */
    SYN("\"\xf0\x8f\xbf\xbf\""),
    SYN("\"\xed\xa0\x80\""),     /* UTF-8 encoded surrogate */
    SYN("\"\xf4\x90\x80\x80\""), /* past U+10FFFF */
    SYN("\"\xf5\x80\x80\x80\""),
    SYN("\"\xe2\x82\""), /* cut short */
    SYN("\"\xe2\x82"),
    SYN("\"\xc3\""),
    SYN("\"\xc3\x28\""),
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
    {"[1,2,3]", 7, NODE_JSON_ERR_TOOMANY, 3},
    {"{\"a\":1}", 7, NODE_JSON_ERR_TOOMANY, 2},
    {"\"a\"", 3, NODE_JSON_ERR_TOOMANY, -1},
};

static void test_refused(void **state) {
  (void)state;
  node_jt t[NTOK];
  size_t n = sizeof bad_inputs / sizeof bad_inputs[0];
  assert_true(n >= 40);
  for (size_t i = 0; i < n; i++) {
    const struct bad *b = &bad_inputs[i];
    /* an exact-size heap copy, so the sanitizer sees any read past len */
    char *s = malloc(b->len ? b->len : 1);
    assert_non_null(s);
    memcpy(s, b->s, b->len);
    int r = node_json_parse(s, b->len, t, b->max_tokens ? b->max_tokens : NTOK);
    if (r != b->err)
      fail_msg("case %zu \"%s\": got %d, want %d", i, b->s, r, b->err);
    free(s);
  }

  /* one more token than needed is exactly enough */
  assert_int_equal(node_json_parse("[1,2,3]", 7, t, 4), 4);
  assert_int_equal(node_json_parse("{\"a\":1}", 7, t, 3), 3);

  /* nesting one past NODE_JSON_MAX_DEPTH, as arrays and as objects */
  char deep[8 * NODE_JSON_MAX_DEPTH];
  size_t k = 0;
  for (int d = 0; d <= NODE_JSON_MAX_DEPTH; d++)
    deep[k++] = '[';
  assert_int_equal(node_json_parse(deep, k, t, NTOK), NODE_JSON_ERR_DEPTH);
  for (int d = 0; d <= NODE_JSON_MAX_DEPTH; d++)
    deep[k++] = ']';
  assert_int_equal(node_json_parse(deep, k, t, NTOK), NODE_JSON_ERR_DEPTH);
  k = 0;
  for (int d = 0; d <= NODE_JSON_MAX_DEPTH; d++)
    k += (size_t)snprintf(deep + k, sizeof deep - k, "{\"a\":");
  deep[k++] = '1';
  for (int d = 0; d <= NODE_JSON_MAX_DEPTH; d++)
    deep[k++] = '}';
  assert_int_equal(node_json_parse(deep, k, t, NTOK), NODE_JSON_ERR_DEPTH);
}

/* ---- fuzz -------------------------------------------------------------- */

/* Writes token i and its subtree with the writer; the index after it, or -1
 * if the value cannot be written (a key holding U+0000: node_jw_key takes a C
 * string).  Also checks the token links as it goes. */
static int walk(const char *s, int len, const node_jt *t, int n, int i, node_jw *w) {
  char buf[FUZZ_MAX + 1];
  int64_t v;
  assert_true(i < n && t[i].start >= 0 && t[i].start <= t[i].end && t[i].end <= len);
  switch (t[i].type) {
  case NODE_JSON_OBJ:
  case NODE_JSON_ARR: {
    bool is_obj = t[i].type == NODE_JSON_OBJ;
    if (is_obj)
      node_jw_obj(w);
    else
      node_jw_arr(w);
    int c = i + 1;
    for (int k = 0; k < t[i].size; k++) {
      if (is_obj) {
        assert_int_equal(t[c].type, NODE_JSON_STR);
        assert_int_equal(t[c].size, 1);
        int r = node_json_str(s, t, c, buf, sizeof buf);
        if (r == -3)
          return -1;
        assert_true(r >= 0);
        node_jw_key(w, buf);
        int next = walk(s, len, t, n, c + 1, w);
        if (next < 0)
          return -1;
        assert_int_equal(next, t[c].next);
        c = next;
      } else if ((c = walk(s, len, t, n, c, w)) < 0) {
        return -1;
      }
    }
    if (is_obj)
      node_jw_obj_end(w);
    else
      node_jw_arr_end(w);
    assert_int_equal(c, t[i].next);
    return c;
  }
  case NODE_JSON_STR: {
    assert_true(s[t[i].start - 1] == '"' && s[t[i].end] == '"');
    int r = node_json_str(s, t, i, buf, sizeof buf);
    if (r == -3)
      node_jw_raw(w, s + t[i].start - 1, (size_t)(t[i].end - t[i].start + 2));
    else
      node_jw_strn(w, buf, (size_t)r);
    break;
  }
  case NODE_JSON_NUM:
    if (node_json_int(s, t, i, &v) == 0)
      node_jw_int(w, v);
    else
      node_jw_raw(w, s + t[i].start, (size_t)(t[i].end - t[i].start));
    break;
  case NODE_JSON_TRUE:
  case NODE_JSON_FALSE:
  case NODE_JSON_NULL:
    node_jw_raw(w, s + t[i].start, (size_t)(t[i].end - t[i].start));
    break;
  default:
    fail_msg("bad token type %d", t[i].type);
  }
  assert_int_equal(t[i].next, i + 1);
  return i + 1;
}

/* Same structure: types, sizes, links, unescaped strings, integer values,
 * other numbers by their text. */
static void same(const char *a, const node_jt *ta, const char *b, const node_jt *tb, int n) {
  static char x[FUZZ_MAX + 1], y[FUZZ_MAX + 1];
  int64_t u, v;
  for (int i = 0; i < n; i++) {
    assert_int_equal(ta[i].type, tb[i].type);
    assert_int_equal(ta[i].size, tb[i].size);
    assert_int_equal(ta[i].next, tb[i].next);
    if (ta[i].type == NODE_JSON_STR) {
      int r = node_json_str(a, ta, i, x, sizeof x);
      assert_int_equal(r, node_json_str(b, tb, i, y, sizeof y));
      if (r >= 0)
        assert_memory_equal(x, y, (size_t)r);
    } else if (ta[i].type == NODE_JSON_NUM && node_json_int(a, ta, i, &u) == 0) {
      assert_int_equal(node_json_int(b, tb, i, &v), 0);
      assert_int_equal(u, v);
    } else if (ta[i].type == NODE_JSON_NUM) {
      assert_int_equal(ta[i].end - ta[i].start, tb[i].end - tb[i].start);
      assert_memory_equal(a + ta[i].start, b + tb[i].start, (size_t)(ta[i].end - ta[i].start));
    }
  }
}

static const char alphabet[] = "{}[]\",:0123456789-+.eEtrufalsn \\u\t\n/abdfx\xc3\xa9\xed\xa0\xff";

/* A random document from the writer: strings of any bytes; keys unique by
 * construction (a distinct prefix before ':'), or with few_keys drawn from
 * "a", "b", "c" so that duplicates happen. */
static void gen(node_jw *w, int depth, bool few_keys) {
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
        node_jw_key(w, few_keys ? (const char *[]){"a", "b", "c"}[rng_below(3)] : key);
      }
      gen(w, depth + 1, few_keys);
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
      "{\"\\u0061\":1,\"b\":{\"\\u0000\":[1,2,{\"c\":\"d\"}]}}",
  };
  static node_jt t[NTOK], t2[NTOK];
  char *in = malloc(FUZZ_MAX);
  assert_non_null(in);
  int parsed[10] = {0}, skipped = 0, errs[8] = {0};
  bool few_keys = false;
  node_jw w, w2, g;
  node_jw_init(&w, 1 << 16);
  node_jw_init(&w2, 1 << 16);
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
        gen(&g, 0, false);
        if (node_jw_done(&g, &sl))
          src = g.buf;
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
      few_keys = rng_below(4) == 0;
      node_jw_free(&g);
      gen(&g, 0, few_keys);
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
    int max = rng_below(8) ? NTOK : (int)rng_below(8);
    int n = node_json_parse(s, len, t, max);
    if (kind == 9 && max == NTOK && n <= 0 && n != NODE_JSON_ERR_TOOMANY &&
        !(few_keys && n == NODE_JSON_ERR_DUPKEY))
      fail_msg("writer output refused (%d): %.*s", n, (int)len, s);
    if (kind == 8 && max == NTOK) {
      int opens = 0;
      for (size_t i = 0; i < len; i++)
        opens += in[i] == '[' || in[i] == '{';
      assert_true(opens <= NODE_JSON_MAX_DEPTH ? n > 0 : n == NODE_JSON_ERR_DEPTH);
    }
    if (n <= 0) {
      assert_true(n >= NODE_JSON_ERR_DUPKEY);
      errs[-n]++;
      free(s);
      continue;
    }
    assert_true(n <= max);
    assert_int_equal(t[0].next, n);
    parsed[kind]++;

    node_jw_free(&w);
    if (walk(s, (int)len, t, n, 0, &w) < 0) {
      skipped++;
      free(s);
      continue;
    }
    size_t olen;
    const char *out = node_jw_done(&w, &olen);
    assert_non_null(out);
    int n2 = node_json_parse(out, olen, t2, NTOK);
    if (n2 != n)
      fail_msg("re-serialised %.*s as %s: %d tokens, want %d", (int)len, s, out, n2, n);
    same(s, t, out, t2, n);

    /* and a second pass changes nothing */
    node_jw_free(&w2);
    assert_int_equal(walk(out, (int)olen, t2, n2, 0, &w2), n2);
    assert_string_equal(node_jw_done(&w2, NULL), out);
    free(s);
  }
  int random = parsed[0] + parsed[1] + parsed[2] + parsed[3];
  int mutated = parsed[4] + parsed[5] + parsed[6] + parsed[7];
  printf("test_json: fuzz parsed random %d, mutated %d, deep %d, gen %d (skipped %d); refused "
         "syntax %d, toomany %d, depth %d, trailing %d, dupkey %d\n",
         random, mutated, parsed[8], parsed[9], skipped, errs[1], errs[2], errs[3], errs[4],
         errs[5]);
  /* the loop must have reached every outcome, or it tests less than it says */
  assert_true(random > 100 && mutated > 5000 && parsed[8] > 1000 && parsed[9] > 5000);
  assert_true(skipped < mutated / 4);
  for (int e = 1; e <= 5; e++)
    assert_true(errs[e] > 0);
  node_jw_free(&w);
  node_jw_free(&w2);
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

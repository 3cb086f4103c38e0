/*
 * node_json.c - the control socket's JSON over jansson (node_json.h has the
 * contract).  This file is the one place that decides how roostd and roost
 * read and write a line: jansson's flags, the bounds jansson does not keep
 * (depth, value count), the mapping of jansson's errors to our codes, and
 * the repair of invalid UTF-8 on the way out.
 *
 * Writer invariants: open[0, depth) are the containers still open, each held
 * by its parent (open[0] by root); key is set only while the innermost open
 * container is an object and its value has not come; once err is set
 * nothing more is written, and once text is set the tree is gone.
 *
 * Reader invariants: a tree handed out has passed check(): at most
 * NODE_JSON_MAX_DEPTH containers deep and at most max_values values and keys.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_json.h"

/* How both sides serialise: no spaces, any value at the top, doubles with
 * 17 digits so they read back exactly. */
#define DUMP_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17))

/* How both sides parse.  JSON_ALLOW_NUL: "\u0000" is valid JSON in a string
 * value; node_json_str refuses it where a C string is wanted, so a request
 * holding one gets an error about that argument, not about the line. */
#define LOAD_FLAGS (JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)

/* ---- UTF-8 ------------------------------------------------------------- */

/* Length (2-4) of the well-formed UTF-8 sequence at p[0, n), whose lead byte
 * is >= 0x80, or 0: no overlongs, no surrogates, nothing past U+10FFFF
 * (Unicode 15, table 3-7).  jansson checks its input the same way; we need
 * our own to repair what we are asked to write. */
static size_t utf8_seq(const unsigned char *p, size_t n) {
  unsigned char c = p[0], lo = 0x80, hi = 0xbf;
  size_t len = 4;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    lo = c == 0xe0 ? 0xa0 : 0x80;
    hi = c == 0xed ? 0x9f : 0xbf;
  } else if (c >= 0xf0 && c <= 0xf4) {
    lo = c == 0xf0 ? 0x90 : 0x80;
    hi = c == 0xf4 ? 0x8f : 0xbf;
  } else {
    return 0;
  }
  if (n < len || p[1] < lo || p[1] > hi)
    return 0;
  for (size_t i = 2; i < len; i++)
    if (p[i] < 0x80 || p[i] > 0xbf)
      return 0;
  return len;
}

/* A malloc'd copy of s[0, n) with each byte that does not start a valid
 * sequence replaced by U+FFFD (at most 3 bytes for 1), NUL-terminated; its
 * length in *outn.  NULL when out of memory. */
static char *utf8_repair(const char *s, size_t n, size_t *outn) {
  const unsigned char *u = (const unsigned char *)s;
  char *out = malloc(3 * n + 1);
  size_t o = 0;
  if (!out)
    return NULL;
  for (size_t i = 0; i < n;) {
    size_t k = u[i] < 0x80 ? 1 : utf8_seq(u + i, n - i);
    if (k == 0) {
      memcpy(out + o, "\xef\xbf\xbd", 3);
      o += 3;
      i++;
      continue;
    }
    memcpy(out + o, s + i, k);
    o += k;
    i += k;
  }
  out[o] = '\0';
  *outn = o;
  return out;
}

/* ---- writer ------------------------------------------------------------ */

static void set_err(node_jw *w, int err) {
  if (!w->err)
    w->err = err;
}

/* Puts v (a new reference, which this takes over even on failure) where the
 * next value goes: the pending key of the open object, the end of the open
 * array, or the top.  false after setting an error. */
static bool insert(node_jw *w, json_t *v) {
  if (!v) {
    set_err(w, NODE_JW_ERR_NOMEM);
    return false;
  }
  if (w->err || w->text) {
    json_decref(v);
    set_err(w, NODE_JW_ERR_USAGE);
    return false;
  }
  if (w->depth == 0) {
    if (w->root) { /* one document, one value */
      json_decref(v);
      set_err(w, NODE_JW_ERR_USAGE);
      return false;
    }
    w->root = v;
    return true;
  }
  json_t *top = w->open[w->depth - 1];
  int rv;
  if (json_is_object(top)) {
    if (!w->key) {
      json_decref(v);
      set_err(w, NODE_JW_ERR_USAGE);
      return false;
    }
    rv = json_object_set_new_nocheck(top, w->key, v); /* the key was repaired */
    free(w->key);
    w->key = NULL;
  } else {
    rv = json_array_append_new(top, v);
  }
  if (rv) {
    set_err(w, NODE_JW_ERR_NOMEM);
    return false;
  }
  return true;
}

static void push(node_jw *w, bool is_obj) {
  if (w->err)
    return;
  if (w->depth >= NODE_JSON_MAX_DEPTH) {
    set_err(w, NODE_JW_ERR_DEPTH);
    return;
  }
  json_t *c = is_obj ? json_object() : json_array();
  if (insert(w, c)) /* its parent holds it: the pointer stays valid */
    w->open[w->depth++] = c;
}

static void pop(node_jw *w, bool is_obj) {
  if (w->err)
    return;
  if (w->depth == 0 || json_is_object(w->open[w->depth - 1]) != is_obj || w->key) {
    set_err(w, NODE_JW_ERR_USAGE);
    return;
  }
  w->depth--;
}

void node_jw_init(node_jw *w, size_t max_bytes) {
  memset(w, 0, sizeof *w);
  w->max = max_bytes;
}

void node_jw_free(node_jw *w) {
  json_decref(w->root);
  free(w->key);
  free(w->text);
  node_jw_init(w, w->max);
}

void node_jw_obj(node_jw *w) {
  push(w, true);
}

void node_jw_obj_end(node_jw *w) {
  pop(w, true);
}

void node_jw_arr(node_jw *w) {
  push(w, false);
}

void node_jw_arr_end(node_jw *w) {
  pop(w, false);
}

void node_jw_key(node_jw *w, const char *k) {
  if (w->err)
    return;
  if (!k || w->text || w->depth == 0 || !json_is_object(w->open[w->depth - 1]) || w->key) {
    set_err(w, NODE_JW_ERR_USAGE);
    return;
  }
  size_t n;
  char *key = utf8_repair(k, strlen(k), &n);
  if (!key) {
    set_err(w, NODE_JW_ERR_NOMEM);
    return;
  }
  if (json_object_get(w->open[w->depth - 1], key)) {
    free(key);
    set_err(w, NODE_JW_ERR_USAGE);
    return;
  }
  w->key = key;
}

void node_jw_strn(node_jw *w, const char *s, size_t n) {
  if (w->err)
    return;
  json_t *v = json_stringn(s, n);
  if (!v) { /* not UTF-8 (or no memory): write the repaired bytes */
    size_t rn;
    char *r = utf8_repair(s, n, &rn);
    v = r ? json_stringn_nocheck(r, rn) : NULL;
    free(r);
  }
  insert(w, v);
}

void node_jw_str(node_jw *w, const char *s) {
  if (!s)
    node_jw_null(w);
  else
    node_jw_strn(w, s, strlen(s));
}

void node_jw_raw(node_jw *w, const char *json, size_t n) {
  json_t *v;
  if (w->err)
    return;
  if (node_json_parse(json, n, SIZE_MAX, &v, NULL, 0) != 0) {
    set_err(w, NODE_JW_ERR_USAGE);
    return;
  }
  insert(w, v);
}

void node_jw_value(node_jw *w, json_t *v) {
  if (!v) {
    set_err(w, NODE_JW_ERR_USAGE);
    return;
  }
  if (!w->err)
    insert(w, json_incref(v));
}

void node_jw_int(node_jw *w, int64_t v) {
  if (!w->err)
    insert(w, json_integer((json_int_t)v));
}

void node_jw_uint(node_jw *w, uint64_t v) {
  if (w->err)
    return;
  insert(w, v <= INT64_MAX ? json_integer((json_int_t)v) : json_real((double)v));
}

void node_jw_double(node_jw *w, double v) {
  if (w->err)
    return;
  insert(w, isfinite(v) ? json_real(v) : json_null());
}

void node_jw_bool(node_jw *w, bool v) {
  if (!w->err)
    insert(w, json_boolean(v));
}

void node_jw_null(node_jw *w) {
  if (!w->err)
    insert(w, json_null());
}

void node_jw_kstr(node_jw *w, const char *k, const char *s) {
  node_jw_key(w, k);
  node_jw_str(w, s);
}

void node_jw_kint(node_jw *w, const char *k, int64_t v) {
  node_jw_key(w, k);
  node_jw_int(w, v);
}

void node_jw_kuint(node_jw *w, const char *k, uint64_t v) {
  node_jw_key(w, k);
  node_jw_uint(w, v);
}

void node_jw_kbool(node_jw *w, const char *k, bool v) {
  node_jw_key(w, k);
  node_jw_bool(w, v);
}

void node_jw_kdouble(node_jw *w, const char *k, double v) {
  node_jw_key(w, k);
  node_jw_double(w, v);
}

const char *node_jw_done(node_jw *w, size_t *len) {
  if (w->err)
    return NULL;
  if (!w->text) {
    if (w->depth || w->key || !w->root)
      return NULL;
    size_t n = json_dumpb(w->root, NULL, 0, DUMP_FLAGS);
    if (n == 0) { /* every value has at least one byte: this is jansson failing */
      set_err(w, NODE_JW_ERR_NOMEM);
      return NULL;
    }
    if (w->max == 0 || n > w->max - 1) {
      set_err(w, NODE_JW_ERR_FULL);
      return NULL;
    }
    char *t = malloc(n + 1);
    if (!t) {
      set_err(w, NODE_JW_ERR_NOMEM);
      return NULL;
    }
    json_dumpb(w->root, t, n, DUMP_FLAGS);
    t[n] = '\0';
    json_decref(w->root); /* the text is all that is needed from here */
    w->root = NULL;
    w->text = t;
    w->len = n;
  }
  if (len)
    *len = w->len;
  return w->text;
}

/* ---- reader ------------------------------------------------------------ */

/* Counts v and its subtree against max and checks its depth (containers
 * around it).  0 or a NODE_JSON_ERR_*.  Recursion is bounded by the depth
 * check. */
static int check(json_t *v, int depth, size_t *count, size_t max) {
  if (++*count > max)
    return NODE_JSON_ERR_TOOMANY;
  const char *k;
  json_t *c;
  size_t i;
  int rv;
  if (json_is_object(v)) {
    if (depth >= NODE_JSON_MAX_DEPTH)
      return NODE_JSON_ERR_DEPTH;
    json_object_foreach(v, k, c) {
      if (++*count > max) /* the key */
        return NODE_JSON_ERR_TOOMANY;
      if ((rv = check(c, depth + 1, count, max)) != 0)
        return rv;
    }
  } else if (json_is_array(v)) {
    if (depth >= NODE_JSON_MAX_DEPTH)
      return NODE_JSON_ERR_DEPTH;
    json_array_foreach(v, i, c) {
      if ((rv = check(c, depth + 1, count, max)) != 0)
        return rv;
    }
  }
  return 0;
}

static int map_error(const json_error_t *e) {
  switch (json_error_code(e)) {
  case json_error_invalid_utf8:
    return NODE_JSON_ERR_UTF8;
  case json_error_end_of_input_expected:
    return NODE_JSON_ERR_TRAILING;
  case json_error_duplicate_key:
    return NODE_JSON_ERR_DUPKEY;
  case json_error_numeric_overflow:
    return NODE_JSON_ERR_RANGE;
  case json_error_null_byte_in_key:
    return NODE_JSON_ERR_NULKEY;
  case json_error_stack_overflow: /* deeper than jansson's 2048: deeper than ours too */
    return NODE_JSON_ERR_DEPTH;
  case json_error_out_of_memory:
    return NODE_JSON_ERR_NOMEM;
  default:
    return NODE_JSON_ERR_SYNTAX;
  }
}

int node_json_parse(const char *s, size_t len, size_t max_values, json_t **out, char *why,
                    size_t whylen) {
  json_error_t e;
  int rv;
  *out = NULL;
  if (why && whylen)
    why[0] = '\0';
  if (len > NODE_JSON_MAX_INPUT) {
    if (why && whylen)
      snprintf(why, whylen, "longer than %zu bytes", NODE_JSON_MAX_INPUT);
    return NODE_JSON_ERR_TOOBIG;
  }
  json_t *v = json_loadb(s, len, LOAD_FLAGS, &e);
  if (!v) {
    if (why && whylen)
      snprintf(why, whylen, "%s (at byte %d)", e.text, e.position);
    return map_error(&e);
  }
  size_t count = 0;
  if ((rv = check(v, 0, &count, max_values)) != 0) {
    json_decref(v);
    if (why && whylen)
      snprintf(why, whylen, "%s",
               rv == NODE_JSON_ERR_DEPTH ? "nested too deeply" : "too many values");
    return rv;
  }
  *out = v;
  return 0;
}

int node_json_str(const json_t *v, char *out, size_t outlen) {
  if (!json_is_string(v))
    return -1;
  size_t n = json_string_length(v);
  const char *s = json_string_value(v);
  if (memchr(s, '\0', n))
    return -3;
  if (n >= outlen || n > INT_MAX)
    return -2;
  memcpy(out, s, n + 1);
  return (int)n;
}

int node_json_int(const json_t *v, int64_t *out) {
  if (!json_is_integer(v))
    return -1;
  *out = (int64_t)json_integer_value(v);
  return 0;
}

int node_json_bool(const json_t *v, bool *out) {
  if (!json_is_boolean(v))
    return -1;
  *out = json_is_true(v);
  return 0;
}

char *node_json_dump(const json_t *v, size_t *len) {
  size_t n = v ? json_dumpb(v, NULL, 0, DUMP_FLAGS) : 0;
  if (n == 0)
    return NULL;
  char *t = malloc(n + 1);
  if (!t)
    return NULL;
  json_dumpb(v, t, n, DUMP_FLAGS);
  t[n] = '\0';
  if (len)
    *len = n;
  return t;
}

/*
 * node_json.c - the control socket's JSON: a capped writer and a strict,
 * allocation-free parser (node_json.h has the contract).
 *
 * Writer invariants: buf is NULL or holds len bytes and a NUL within
 * cap <= max bytes; once err is set nothing more is written; bit d of
 * first/obj describes the container open at depth d, and depth 0 is the top
 * level, which takes exactly one value.
 *
 * Parser invariants: recursive descent at most NODE_JSON_MAX_DEPTH
 * containers deep; s[len] and beyond are never read; tokens are claimed in
 * document order, so the subtree of token i is exactly [i, t[i].next).
 * String rules live in one place, unit(), which the parser uses to validate
 * and the accessors use to unescape.
 */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_json.h"

/* ---- UTF-8 ------------------------------------------------------------- */

/* Length (2-4) of the well-formed UTF-8 sequence at p[0, n), whose lead byte
 * is >= 0x80, or 0: no overlongs, no surrogates, nothing past U+10FFFF
 * (Unicode 15, table 3-7). */
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

/* Writes code point cp (<= U+10FFFF, not a surrogate) as UTF-8; its length. */
static int utf8_put(uint32_t cp, char out[static 4]) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xc0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xe0 | cp >> 12);
    out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  out[0] = (char)(0xf0 | cp >> 18);
  out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
  out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
  out[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* ---- writer ------------------------------------------------------------ */

static void put(node_jw *w, const char *p, size_t n) {
  if (w->err || n == 0)
    return;
  if (n >= w->max - w->len) { /* len + n + NUL must fit in max */
    w->err = NODE_JW_ERR_FULL;
    return;
  }
  if (w->len + n + 1 > w->cap) {
    size_t cap = w->cap ? w->cap : 64;
    if (cap > w->max)
      cap = w->max;
    while (cap < w->len + n + 1)
      cap = cap > w->max / 2 ? w->max : cap * 2;
    char *b = realloc(w->buf, cap);
    if (!b) {
      w->err = NODE_JW_ERR_NOMEM;
      return;
    }
    w->buf = b;
    w->cap = cap;
  }
  memcpy(w->buf + w->len, p, n);
  w->len += n;
  w->buf[w->len] = '\0';
}

static void put_str(node_jw *w, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *u = (const unsigned char *)s;
  size_t from = 0; /* bytes [from, i) pass through unchanged */
  put(w, "\"", 1);
  for (size_t i = 0, k; i < n; i += k) {
    char esc[6] = {'\\', (char)u[i]};
    size_t elen = 0;
    k = 1;
    if (u[i] == '"' || u[i] == '\\') {
      elen = 2;
    } else if (u[i] < 0x20) {
      memcpy(esc + 1, "u00", 3);
      esc[4] = hex[u[i] >> 4];
      esc[5] = hex[u[i] & 15];
      elen = 6;
    } else if (u[i] >= 0x80 && (k = utf8_seq(u + i, n - i)) == 0) {
      memcpy(esc, "\xef\xbf\xbd", 3); /* U+FFFD for this one byte */
      elen = 3;
      k = 1;
    }
    if (elen) {
      put(w, s + from, i - from);
      put(w, esc, elen);
      from = i + k;
    }
  }
  put(w, s + from, n - from);
  put(w, "\"", 1);
}

static bool usage(node_jw *w) {
  if (!w->err)
    w->err = NODE_JW_ERR_USAGE;
  return false;
}

/* Claims the slot for the next value: the key's in an object (after its
 * comma), the next element's in an array, or the one top-level slot. */
static bool begin_value(node_jw *w) {
  uint64_t bit = 1ull << w->depth;
  if (w->err)
    return false;
  if (w->depth == 0) {
    if (!(w->first & 1))
      return usage(w);
  } else if (w->obj & bit) {
    if (!w->after_key)
      return usage(w);
    w->after_key = false;
  } else if (!(w->first & bit)) {
    put(w, ",", 1);
  }
  w->first &= ~bit;
  return !w->err;
}

static void push(node_jw *w, char c, bool is_obj) {
  if (!begin_value(w))
    return;
  if (w->depth >= NODE_JSON_MAX_DEPTH) {
    w->err = NODE_JW_ERR_DEPTH;
    return;
  }
  put(w, &c, 1);
  w->depth++;
  uint64_t bit = 1ull << w->depth;
  w->first |= bit;
  w->obj = is_obj ? w->obj | bit : w->obj & ~bit;
}

static void pop(node_jw *w, char c, bool is_obj) {
  if (w->err)
    return;
  if (w->depth == 0 || (bool)(w->obj >> w->depth & 1) != is_obj || w->after_key) {
    usage(w);
    return;
  }
  put(w, &c, 1);
  w->depth--;
}

void node_jw_init(node_jw *w, size_t max_bytes) {
  *w = (node_jw){.max = max_bytes, .first = 1};
}

void node_jw_free(node_jw *w) {
  free(w->buf);
  node_jw_init(w, w->max);
}

void node_jw_obj(node_jw *w) {
  push(w, '{', true);
}

void node_jw_obj_end(node_jw *w) {
  pop(w, '}', true);
}

void node_jw_arr(node_jw *w) {
  push(w, '[', false);
}

void node_jw_arr_end(node_jw *w) {
  pop(w, ']', false);
}

void node_jw_key(node_jw *w, const char *k) {
  uint64_t bit = 1ull << w->depth;
  if (w->err)
    return;
  if (!k || w->depth == 0 || !(w->obj & bit) || w->after_key) {
    usage(w);
    return;
  }
  if (!(w->first & bit))
    put(w, ",", 1);
  w->first &= ~bit;
  put_str(w, k, strlen(k));
  put(w, ":", 1);
  w->after_key = true;
}

void node_jw_strn(node_jw *w, const char *s, size_t n) {
  if (begin_value(w))
    put_str(w, s, n);
}

void node_jw_str(node_jw *w, const char *s) {
  if (!s)
    node_jw_null(w);
  else
    node_jw_strn(w, s, strlen(s));
}

void node_jw_raw(node_jw *w, const char *json, size_t n) {
  if (begin_value(w))
    put(w, json, n);
}

void node_jw_int(node_jw *w, int64_t v) {
  char b[24];
  node_jw_raw(w, b, (size_t)snprintf(b, sizeof b, "%" PRId64, v));
}

void node_jw_uint(node_jw *w, uint64_t v) {
  char b[24];
  node_jw_raw(w, b, (size_t)snprintf(b, sizeof b, "%" PRIu64, v));
}

void node_jw_double(node_jw *w, double v) {
  char b[32]; /* "-1.2345678901234567e-308" is 24 */
  if (!isfinite(v))
    node_jw_null(w);
  else
    node_jw_raw(w, b, (size_t)snprintf(b, sizeof b, "%.17g", v));
}

void node_jw_bool(node_jw *w, bool v) {
  node_jw_raw(w, v ? "true" : "false", v ? 4 : 5);
}

void node_jw_null(node_jw *w) {
  node_jw_raw(w, "null", 4);
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
  if (w->err || w->depth || (w->first & 1) || !w->buf)
    return NULL;
  if (len)
    *len = w->len;
  return w->buf;
}

/* ---- parser ------------------------------------------------------------ */

typedef struct parser {
  const char *s;
  int len, pos; /* pos <= len */
  node_jt *t;
  int n, max; /* tokens used, tokens available */
} parser;

/* Value of the 4 hex digits at s[pos], or -1 (also if fewer than 4 remain). */
static int32_t hex4(const char *s, int pos, int end) {
  int32_t v = 0;
  if (end - pos < 4)
    return -1;
  for (int i = pos; i < pos + 4; i++) {
    int c = (unsigned char)s[i], lc = c | 0x20;
    if (c >= '0' && c <= '9')
      v = v << 4 | (c - '0');
    else if (lc >= 'a' && lc <= 'f')
      v = v << 4 | (lc - 'a' + 10);
    else
      return -1;
  }
  return v;
}

/* Decodes the string unit at s[*pos] (*pos < end, inside the quotes): a
 * plain byte, a whole UTF-8 sequence or an escape (a surrogate pair being one
 * escape).  Writes its UTF-8 to out, advances *pos past it and returns its
 * length (1-4), or -1 if no valid unit starts there (this includes '"'). */
static int unit(const char *s, int *pos, int end, char out[static 4]) {
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  const unsigned char *u = (const unsigned char *)s;
  int i = *pos;
  if (u[i] < 0x20 || u[i] == '"')
    return -1;
  if (u[i] >= 0x80) {
    int k = (int)utf8_seq(u + i, (size_t)(end - i));
    if (k)
      memcpy(out, s + i, (size_t)k);
    *pos = i + k;
    return k ? k : -1;
  }
  if (u[i] != '\\') {
    out[0] = s[i];
    *pos = i + 1;
    return 1;
  }
  if (end - i < 2)
    return -1;
  const char *e = memchr(from, s[i + 1], sizeof from - 1);
  if (e) {
    out[0] = to[e - from];
    *pos = i + 2;
    return 1;
  }
  int32_t cp = s[i + 1] == 'u' ? hex4(s, i + 2, end) : -1, lo;
  i += 6;
  if (cp < 0 || (cp >= 0xdc00 && cp <= 0xdfff))
    return -1; /* bad escape, bad hex, lone low surrogate */
  if (cp >= 0xd800 && cp <= 0xdbff) {
    if (end - i < 6 || s[i] != '\\' || s[i + 1] != 'u')
      return -1;
    lo = hex4(s, i + 2, end);
    if (lo < 0xdc00 || lo > 0xdfff)
      return -1;
    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    i += 6;
  }
  *pos = i;
  return utf8_put((uint32_t)cp, out);
}

/* True if raw strings a and b unescape to the same bytes.  Unit by unit is
 * enough: every unit is one whole code point. */
static bool str_eq(const char *s, const node_jt *a, const node_jt *b) {
  int i = a->start, j = b->start;
  char x[4], y[4];
  while (i < a->end && j < b->end) {
    int nx = unit(s, &i, a->end, x), ny = unit(s, &j, b->end, y);
    if (nx < 0 || nx != ny || memcmp(x, y, (size_t)nx))
      return false;
  }
  return i == a->end && j == b->end;
}

static void skip_ws(parser *p) {
  while (p->pos < p->len && memchr(" \t\n\r", p->s[p->pos], 4))
    p->pos++;
}

/* Claims the next token; its index or NODE_JSON_ERR_TOOMANY. */
static int tok(parser *p, node_json_type type, int start, int end) {
  if (p->n >= p->max)
    return NODE_JSON_ERR_TOOMANY;
  p->t[p->n] = (node_jt){.type = (uint8_t)type, .start = start, .end = end, .next = p->n + 1};
  return p->n++;
}

/* A number or literal spanning [pos, end): it must end at a delimiter, so
 * "01", "1x" and "truex" are syntax errors rather than trailing data. */
static int scalar(parser *p, node_json_type type, int end) {
  if (end < p->len && !memchr(" \t\n\r,]}", p->s[end], 7))
    return NODE_JSON_ERR_SYNTAX;
  int i = tok(p, type, p->pos, end);
  if (i >= 0)
    p->pos = end;
  return i;
}

static int digits(const parser *p, int *i) {
  int from = *i;
  while (*i < p->len && p->s[*i] >= '0' && p->s[*i] <= '9')
    (*i)++;
  return *i - from;
}

static int number(parser *p) {
  const char *s = p->s;
  int i = p->pos + (s[p->pos] == '-');
  if (i < p->len && s[i] == '0')
    i++;
  else if (i >= p->len || s[i] < '1' || s[i] > '9' || !digits(p, &i))
    return NODE_JSON_ERR_SYNTAX;
  if (i < p->len && s[i] == '.') {
    i++;
    if (!digits(p, &i))
      return NODE_JSON_ERR_SYNTAX;
  }
  if (i < p->len && (s[i] | 0x20) == 'e') {
    i++;
    if (i < p->len && (s[i] == '+' || s[i] == '-'))
      i++;
    if (!digits(p, &i))
      return NODE_JSON_ERR_SYNTAX;
  }
  return scalar(p, NODE_JSON_NUM, i);
}

static int literal(parser *p, const char *word, node_json_type type) {
  int n = (int)strlen(word);
  if (p->len - p->pos < n || memcmp(p->s + p->pos, word, (size_t)n))
    return NODE_JSON_ERR_SYNTAX;
  return scalar(p, type, p->pos + n);
}

/* A string at the opening quote; its token index or an error. */
static int string(parser *p) {
  int start = ++p->pos;
  char u[4];
  while (p->pos < p->len && p->s[p->pos] != '"')
    if (unit(p->s, &p->pos, p->len, u) < 0)
      return NODE_JSON_ERR_SYNTAX;
  if (p->pos >= p->len)
    return NODE_JSON_ERR_SYNTAX;
  return tok(p, NODE_JSON_STR, start, p->pos++);
}

static int value(parser *p, int depth);

/* An object or array at its opening bracket, inside depth containers. */
static int container(parser *p, int depth) {
  bool is_obj = p->s[p->pos] == '{';
  char close = is_obj ? '}' : ']';
  if (depth >= NODE_JSON_MAX_DEPTH)
    return NODE_JSON_ERR_DEPTH;
  int i = tok(p, is_obj ? NODE_JSON_OBJ : NODE_JSON_ARR, p->pos, p->pos);
  if (i < 0)
    return i;
  p->pos++;
  skip_ws(p);
  if (p->pos < p->len && p->s[p->pos] == close) {
    p->pos++;
  } else {
    for (;;) {
      int r, k = -1;
      if (is_obj) {
        if (p->pos >= p->len || p->s[p->pos] != '"')
          return NODE_JSON_ERR_SYNTAX;
        if ((k = string(p)) < 0)
          return k;
        for (int o = i + 1; o < k; o = p->t[o].next)
          if (str_eq(p->s, &p->t[o], &p->t[k]))
            return NODE_JSON_ERR_DUPKEY;
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != ':')
          return NODE_JSON_ERR_SYNTAX;
        p->pos++;
        skip_ws(p);
      }
      if ((r = value(p, depth + 1)) < 0)
        return r;
      if (k >= 0) {
        p->t[k].size = 1; /* a key's subtree is its value */
        p->t[k].next = p->n;
      }
      p->t[i].size++;
      skip_ws(p);
      if (p->pos >= p->len)
        return NODE_JSON_ERR_SYNTAX;
      char c = p->s[p->pos++];
      if (c == close)
        break;
      if (c != ',')
        return NODE_JSON_ERR_SYNTAX;
      skip_ws(p);
    }
  }
  p->t[i].end = p->pos;
  p->t[i].next = p->n;
  return i;
}

/* One value at p->pos, inside depth containers; its token index or an error. */
static int value(parser *p, int depth) {
  if (p->pos >= p->len)
    return NODE_JSON_ERR_SYNTAX;
  switch (p->s[p->pos]) {
  case '{':
  case '[':
    return container(p, depth);
  case '"':
    return string(p);
  case 't':
    return literal(p, "true", NODE_JSON_TRUE);
  case 'f':
    return literal(p, "false", NODE_JSON_FALSE);
  case 'n':
    return literal(p, "null", NODE_JSON_NULL);
  default:
    return number(p);
  }
}

int node_json_parse(const char *s, size_t len, node_jt *t, int max_tokens) {
  if (len > INT_MAX)
    return NODE_JSON_ERR_TOOBIG;
  parser p = {.s = s, .len = (int)len, .t = t, .max = max_tokens < 0 ? 0 : max_tokens};
  skip_ws(&p);
  int r = value(&p, 0);
  if (r < 0)
    return r;
  skip_ws(&p);
  return p.pos < p.len ? NODE_JSON_ERR_TRAILING : p.n;
}

/* ---- accessors --------------------------------------------------------- */

/* True if raw string k unescapes to exactly the klen bytes of key. */
static bool key_is(const char *s, const node_jt *k, const char *key, size_t klen) {
  size_t off = 0;
  char u[4];
  for (int i = k->start; i < k->end;) {
    int m = unit(s, &i, k->end, u);
    if (m < 0 || klen - off < (size_t)m || memcmp(u, key + off, (size_t)m))
      return false;
    off += (size_t)m;
  }
  return off == klen;
}

int node_json_get(const char *s, const node_jt *t, int n, int obj, const char *key) {
  if (obj < 0 || obj >= n || t[obj].type != NODE_JSON_OBJ)
    return -1;
  size_t klen = strlen(key);
  for (int k = 0, c = obj + 1; k < t[obj].size && c + 1 < n; k++, c = t[c].next)
    if (key_is(s, &t[c], key, klen))
      return c + 1;
  return -1;
}

int node_json_str(const char *s, const node_jt *t, int i, char *out, size_t outlen) {
  if (i < 0 || t[i].type != NODE_JSON_STR)
    return -1;
  bool fits = outlen > 0;
  size_t n = 0;
  char u[4];
  for (int pos = t[i].start; pos < t[i].end;) {
    int k = unit(s, &pos, t[i].end, u);
    if (k < 0)
      return -1; /* defensive: the parser validated it */
    if (k == 1 && u[0] == '\0')
      return -3;
    if (fits && outlen - n > (size_t)k)
      memcpy(out + n, u, (size_t)k);
    else
      fits = false;
    n += (size_t)k;
  }
  if (!fits)
    return -2;
  out[n] = '\0';
  return (int)n;
}

int node_json_int(const char *s, const node_jt *t, int i, int64_t *v) {
  if (i < 0 || t[i].type != NODE_JSON_NUM)
    return -1;
  int p = t[i].start + (s[t[i].start] == '-');
  bool neg = p > t[i].start;
  uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, x = 0;
  if (p == t[i].end)
    return -1;
  for (; p < t[i].end; p++) {
    unsigned d = (unsigned)((unsigned char)s[p] - '0');
    if (d > 9 || x > (lim - d) / 10)
      return -1;
    x = x * 10 + d;
  }
  *v = !neg ? (int64_t)x : x == lim ? INT64_MIN : -(int64_t)x;
  return 0;
}

int node_json_bool(const char *s, const node_jt *t, int i, bool *v) {
  (void)s;
  if (i < 0 || (t[i].type != NODE_JSON_TRUE && t[i].type != NODE_JSON_FALSE))
    return -1;
  *v = t[i].type == NODE_JSON_TRUE;
  return 0;
}

int node_json_double(const char *s, const node_jt *t, int i, double *v) {
  char b[128];
  if (i < 0 || t[i].type != NODE_JSON_NUM || t[i].end - t[i].start >= (int)sizeof b)
    return -1;
  memcpy(b, s + t[i].start, (size_t)(t[i].end - t[i].start));
  b[t[i].end - t[i].start] = '\0';
  double d = strtod(b, NULL);
  if (!isfinite(d))
    return -1;
  *v = d;
  return 0;
}

bool node_json_is_null(const node_jt *t, int i) {
  return i >= 0 && t[i].type == NODE_JSON_NULL;
}

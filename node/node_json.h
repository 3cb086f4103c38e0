/*
 * node_json.h - the strict, bounded JSON of the control socket (one object
 * per line between roostd and the roost CLI).
 *
 * Two halves, no dependencies:
 *   - a writer (node_jw) that appends into one growable buffer with a hard
 *     cap, inserts commas itself and makes errors sticky, so a caller writes a
 *     whole reply and checks once, at node_jw_done;
 *   - a jsmn-style parser that allocates nothing: it fills a caller array of
 *     tokens (byte offsets into the input) and refuses anything RFC 8259 does
 *     not allow, plus duplicate keys, nesting deeper than NODE_JSON_MAX_DEPTH
 *     and inputs longer than INT_MAX.  Accessors then unescape and range-check
 *     one token at a time.
 *
 * Tokens are in document order (pre-order).  Children of token i (the keys
 * of an object, the elements of an array) are walked like this:
 *
 *     for (int k = 0, c = i + 1; k < t[i].size; k++, c = t[c].next)
 *         ... child c; for an object, c is a key and c + 1 its value ...
 *
 * A key's subtree is its value, so a key's `next` is the next key.
 *
 * Numbers are written and read in the "C" locale (roostd never calls
 * setlocale).  Ownership: inputs are borrowed for the call; parser output
 * goes into caller arrays and buffers; the writer owns its buffer until
 * node_jw_free.
 */
#ifndef ROOST_NODE_JSON_H
#define ROOST_NODE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NODE_JSON_MAX_DEPTH 32 /* containers nested in containers, both halves */

/* ---- writer ------------------------------------------------------------ */

enum node_jw_err {
  NODE_JW_ERR_FULL = -1,  /* the output would exceed max bytes */
  NODE_JW_ERR_NOMEM = -2, /* malloc/realloc failed */
  NODE_JW_ERR_DEPTH = -3, /* more than NODE_JSON_MAX_DEPTH open containers */
  NODE_JW_ERR_USAGE = -4, /* key outside an object, value without a key, two top-level values,
                             a close that does not match */
};

typedef struct node_jw {
  char *buf;            /* owned; NUL-terminated whenever non-NULL */
  size_t len, cap, max; /* max counts the terminating NUL */
  int err;              /* first error, sticky; 0 if none */
  int depth;            /* open containers */
  uint64_t first;       /* bit per depth: no comma needed yet (bit 0: top level empty) */
  uint64_t obj;         /* bit per depth: the container there is an object */
  bool after_key;       /* a key was written and awaits its value */
} node_jw;

/* Starts an empty writer whose output, with its NUL, may take up to max_bytes.
 * Allocates nothing yet; the buffer grows by doubling up to max_bytes. */
void node_jw_init(node_jw *w, size_t max_bytes);

/* Frees the buffer (a pointer from node_jw_done dies here) and resets w to
 * an empty writer with the same max.  Safe on a writer that wrote nothing. */
void node_jw_free(node_jw *w);

/* Opens / closes an object or an array.  Opening is a value: in an object it
 * must follow a key.  A close that does not match the open container sets
 * NODE_JW_ERR_USAGE. */
void node_jw_obj(node_jw *w);
void node_jw_obj_end(node_jw *w);
void node_jw_arr(node_jw *w);
void node_jw_arr_end(node_jw *w);

/* Writes "k": inside an object (escaped like node_jw_str). */
void node_jw_key(node_jw *w, const char *k);

/* Writes a string value: '"' and '\' are escaped, bytes below 0x20 become
 * \u00xx, valid UTF-8 passes through and each byte of invalid UTF-8 becomes
 * U+FFFD.  node_jw_str takes a C string (NULL writes null); node_jw_strn
 * takes n bytes, which may include NULs (written as \u0000). */
void node_jw_str(node_jw *w, const char *s);
void node_jw_strn(node_jw *w, const char *s, size_t n);

/* Scalar values.  Doubles are written with %.17g (they read back exactly);
 * NaN and infinities are written as null. */
void node_jw_int(node_jw *w, int64_t v);
void node_jw_uint(node_jw *w, uint64_t v);
void node_jw_double(node_jw *w, double v);
void node_jw_bool(node_jw *w, bool v);
void node_jw_null(node_jw *w);

/* Appends n bytes verbatim as one value.  The caller vouches that they are
 * exactly one valid JSON value (a token span from node_json_parse, say);
 * nothing is checked.  For forwarding parsed values unchanged. */
void node_jw_raw(node_jw *w, const char *json, size_t n);

/* Key + value in one call. */
void node_jw_kstr(node_jw *w, const char *k, const char *s);
void node_jw_kint(node_jw *w, const char *k, int64_t v);
void node_jw_kuint(node_jw *w, const char *k, uint64_t v);
void node_jw_kbool(node_jw *w, const char *k, bool v);
void node_jw_kdouble(node_jw *w, const char *k, double v);

/* Returns the NUL-terminated document and sets *len (if len is non-NULL) to
 * its length without the NUL, or returns NULL if any error happened, a
 * container is still open or nothing was written.  The text stays owned by
 * w: valid until the next write or node_jw_free. */
const char *node_jw_done(node_jw *w, size_t *len);

/* ---- parser ------------------------------------------------------------ */

typedef enum {
  NODE_JSON_OBJ = 1,
  NODE_JSON_ARR,
  NODE_JSON_STR,
  NODE_JSON_NUM,
  NODE_JSON_TRUE,
  NODE_JSON_FALSE,
  NODE_JSON_NULL,
} node_json_type;

enum node_json_err {
  NODE_JSON_ERR_SYNTAX = -1,   /* not RFC 8259 JSON (also: empty input) */
  NODE_JSON_ERR_TOOMANY = -2,  /* more than max_tokens tokens */
  NODE_JSON_ERR_DEPTH = -3,    /* nesting deeper than NODE_JSON_MAX_DEPTH */
  NODE_JSON_ERR_TRAILING = -4, /* something other than whitespace after the value */
  NODE_JSON_ERR_DUPKEY = -5,   /* an object has two keys that unescape equal */
  NODE_JSON_ERR_TOOBIG = -6,   /* input longer than INT_MAX bytes */
};

typedef struct node_jt {
  uint8_t type;   /* node_json_type */
  int start, end; /* byte offsets [start, end) in the input; for STR inside the quotes, still
                     escaped; for OBJ/ARR including the brackets */
  int size;       /* OBJ: keys; ARR: elements; a key: 1 (its value); else 0 */
  int next;       /* index of the token after this one's whole subtree */
} node_jt;

/* Parses exactly one JSON value from s[0, len) (s need not be NUL-
 * terminated and is never read past len) into t[0, max_tokens).  Returns
 * the token count (> 0; t[0] is the top-level value) or a negative
 * NODE_JSON_ERR_*: the first problem met scanning left to right.  Strings
 * must be valid UTF-8 with no raw control characters and valid escapes
 * (surrogates only in pairs).  Costs O(len) plus, per object, a comparison
 * of each key with the earlier keys of that object (bounded by
 * max_tokens^2 / 8 key comparisons). */
int node_json_parse(const char *s, size_t len, node_jt *t, int max_tokens);

/* Index of the value of key in object token obj, or -1 if obj is out of
 * [0, n) or not an object, or the key is absent.  Keys are compared
 * unescaped, byte for byte.  (Parsing refuses duplicate keys, so the answer
 * is unique.) */
int node_json_get(const char *s, const node_jt *t, int n, int obj, const char *key);

/* Unescapes STR token i into out and NUL-terminates it.  Returns the length
 * (without the NUL), -1 if i < 0 or not a string, -2 if outlen is too small
 * (length + 1 bytes are needed; raw length + 1 always suffices), -3 if it
 * contains U+0000, which a C string cannot carry.  out is undefined after an
 * error. */
int node_json_str(const char *s, const node_jt *t, int i, char *out, size_t outlen);

/* Reads NUM token i if it is an integer written as digits with an optional
 * minus (no fraction, no exponent) that fits in int64_t.  0, or -1 (and *v
 * untouched). */
int node_json_int(const char *s, const node_jt *t, int i, int64_t *v);

/* Reads TRUE/FALSE token i.  0, or -1 if i < 0 or not a boolean. */
int node_json_bool(const char *s, const node_jt *t, int i, bool *v);

/* Reads NUM token i as a double (nearest, as strtod).  0, or -1 if i < 0,
 * not a number, the value overflows to infinity, or the token is longer than
 * 127 bytes (refused rather than copied to the heap). */
int node_json_double(const char *s, const node_jt *t, int i, double *v);

/* True if i >= 0 and token i is null. */
bool node_json_is_null(const node_jt *t, int i);

#endif

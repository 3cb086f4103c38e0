/*
 * node_json.h - the control socket's JSON (one object per line between
 * roostd and the roost CLI), on top of jansson.
 *
 * Two halves:
 *   - a writer (node_jw) that builds one document as a jansson tree and
 *     serialises it once, in jansson's compact form, at node_jw_done.  It
 *     inserts nothing itself (jansson does the commas), makes errors sticky so
 *     a caller writes a whole reply and checks once, and refuses a document
 *     longer than its cap;
 *   - a reader, node_json_parse, that takes exactly one value from a buffer
 *     through jansson and adds the rules jansson leaves to us: duplicate keys
 *     refused (JSON_REJECT_DUPLICATES), containers nested at most
 *     NODE_JSON_MAX_DEPTH deep (jansson's own limit is 2048, so the depth is
 *     checked on the tree after parsing), at most max_values values and keys,
 *     and no trailing bytes.  Values are then read with jansson's accessors
 *     (json_object_get, json_array_foreach ...) and the checked helpers
 *     below.
 *
 * The size of a line is capped by the caller before it is parsed (the
 * control socket never buffers more than NODE_PROTO_LINE_MAX bytes).
 *
 * Both roostd and roost serialise with node_json_dump's flags, and
 * re-serialising a parsed document reproduces jansson's compact form byte for
 * byte; this is how roost --json prints roostd's result unchanged.
 *
 * Numbers are written and read in the "C" locale (roostd never calls
 * setlocale).  Ownership: inputs are borrowed for the call; node_json_parse
 * hands the caller a tree to json_decref; the writer owns its tree and text
 * until node_jw_free.
 */
#ifndef ROOST_NODE_JSON_H
#define ROOST_NODE_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NODE_JSON_MAX_DEPTH 32 /* containers nested in containers, both halves */

/* ---- writer ------------------------------------------------------------ */

enum node_jw_err {
  NODE_JW_ERR_FULL = -1,  /* the output would exceed max bytes */
  NODE_JW_ERR_NOMEM = -2, /* jansson could not allocate */
  NODE_JW_ERR_DEPTH = -3, /* more than NODE_JSON_MAX_DEPTH open containers */
  NODE_JW_ERR_USAGE = -4, /* key outside an object, value without a key, a key twice in one
                             object, two top-level values, a close that does not match,
                             raw text that is not one JSON value */
};

typedef struct node_jw {
  json_t *root;                      /* owned; NULL until the first value */
  json_t *open[NODE_JSON_MAX_DEPTH]; /* borrowed from root: the open containers */
  int depth;                         /* entries used in open */
  char *key;                         /* owned: a key that awaits its value */
  char *text;                        /* owned: the document, once done */
  size_t len, max;                   /* text length; max counts the NUL */
  int err;                           /* first error, sticky; 0 if none */
} node_jw;

/* Starts an empty writer whose output, with its NUL, may take up to max_bytes.
 * Allocates nothing yet. */
void node_jw_init(node_jw *w, size_t max_bytes);

/* Frees the tree and the text (a pointer from node_jw_done dies here) and
 * resets w to an empty writer with the same max.  Safe on a writer that wrote
 * nothing. */
void node_jw_free(node_jw *w);

/* Opens / closes an object or an array.  Opening is a value: in an object it
 * must follow a key.  A close that does not match the open container sets
 * NODE_JW_ERR_USAGE. */
void node_jw_obj(node_jw *w);
void node_jw_obj_end(node_jw *w);
void node_jw_arr(node_jw *w);
void node_jw_arr_end(node_jw *w);

/* Sets the key of the next value, inside an object.  A key already in that
 * object is NODE_JW_ERR_USAGE: the reader refuses duplicates, so the writer
 * never makes them. */
void node_jw_key(node_jw *w, const char *k);

/* Writes a string value.  Valid UTF-8 passes through; each byte of invalid
 * UTF-8 becomes U+FFFD (also in keys), so whatever a caller hands in, the
 * output is JSON.  node_jw_str takes a C string (NULL writes null);
 * node_jw_strn takes n bytes, which may include NULs (written as \u0000). */
void node_jw_str(node_jw *w, const char *s);
void node_jw_strn(node_jw *w, const char *s, size_t n);

/* Scalar values.  An unsigned value above INT64_MAX is written as a real
 * (jansson's integers are 64-bit signed; roostd writes none that large).
 * Doubles are written with 17 significant digits (they read back exactly);
 * NaN and infinities are written as null. */
void node_jw_int(node_jw *w, int64_t v);
void node_jw_uint(node_jw *w, uint64_t v);
void node_jw_double(node_jw *w, double v);
void node_jw_bool(node_jw *w, bool v);
void node_jw_null(node_jw *w);

/* Parses n bytes of JSON text (node_json_parse's rules) and writes the value
 * they hold, e.g. a request's id kept as text.  Text that is not exactly one
 * value sets NODE_JW_ERR_USAGE. */
void node_jw_raw(node_jw *w, const char *json, size_t n);

/* Writes v, a value from node_json_parse (borrowed: the writer takes its own
 * reference), e.g. to forward part of a reply unchanged. */
void node_jw_value(node_jw *w, json_t *v);

/* Key + value in one call. */
void node_jw_kstr(node_jw *w, const char *k, const char *s);
void node_jw_kint(node_jw *w, const char *k, int64_t v);
void node_jw_kuint(node_jw *w, const char *k, uint64_t v);
void node_jw_kbool(node_jw *w, const char *k, bool v);
void node_jw_kdouble(node_jw *w, const char *k, double v);

/* Serialises the document and returns it NUL-terminated, with *len (if len
 * is non-NULL) its length without the NUL; or returns NULL if any error
 * happened, a container is still open, nothing was written, or the text
 * would not fit in max bytes (NODE_JW_ERR_FULL).  The text stays owned by w:
 * valid until node_jw_free.  Once done, w takes no more writes (USAGE). */
const char *node_jw_done(node_jw *w, size_t *len);

/* ---- reader ------------------------------------------------------------ */

enum node_json_err {
  NODE_JSON_ERR_SYNTAX = -1,   /* not RFC 8259 JSON (also: empty input, raw control characters) */
  NODE_JSON_ERR_TOOMANY = -2,  /* more than max_values values and keys */
  NODE_JSON_ERR_DEPTH = -3,    /* nesting deeper than NODE_JSON_MAX_DEPTH */
  NODE_JSON_ERR_TRAILING = -4, /* something other than whitespace after the value */
  NODE_JSON_ERR_DUPKEY = -5,   /* an object has two keys that unescape equal */
  NODE_JSON_ERR_TOOBIG = -6,   /* input longer than NODE_JSON_MAX_INPUT bytes */
  NODE_JSON_ERR_UTF8 = -7,     /* bytes that are not UTF-8 */
  NODE_JSON_ERR_RANGE = -8,    /* an integer outside int64, or a real that overflows */
  NODE_JSON_ERR_NULKEY = -9,   /* a key holding U+0000 (a string value may) */
  NODE_JSON_ERR_NOMEM = -10,
};

/* Longest input node_json_parse looks at; the callers cap far below it. */
#define NODE_JSON_MAX_INPUT ((size_t)1 << 30)

/* Parses exactly one JSON value (any type at the top) from s[0, len) (s
 * need not be NUL-terminated and is never read past len).  Strings must be
 * valid UTF-8 with valid escapes; U+0000 is allowed in string values.
 * Returns 0 and a new tree in *out (the caller json_decrefs it), or a
 * negative NODE_JSON_ERR_* with *out NULL and, if why is non-NULL, jansson's
 * one-line reason (with the column) in why.  Costs O(len); memory is
 * proportional to len. */
int node_json_parse(const char *s, size_t len, size_t max_values, json_t **out, char *why,
                    size_t whylen);

/* Copies string v into out and NUL-terminates it.  Returns the length
 * (without the NUL), -1 if v is NULL or not a string, -2 if outlen is too
 * small (length + 1 bytes are needed), -3 if it contains U+0000, which a C
 * string cannot carry.  out is undefined after an error. */
int node_json_str(const json_t *v, char *out, size_t outlen);

/* Reads v if it is an integer (written without fraction or exponent).  0, or
 * -1 (and *out untouched). */
int node_json_int(const json_t *v, int64_t *out);

/* Reads v if it is true or false.  0, or -1 (and *out untouched). */
int node_json_bool(const json_t *v, bool *out);

/* Serialises v (any value) in the compact form both sides write.  A
 * malloc'd NUL-terminated string (the caller frees it) and *len, or NULL. */
char *node_json_dump(const json_t *v, size_t *len);

#endif

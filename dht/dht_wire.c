/*
 * dht_wire.c - the msgpack primitives under every dht/ codec and every
 * service (dht_wire_* in dht.h).  This is the one file in the project that
 * includes <msgpack.h>.
 *
 * Writer: msgpack-c's packer, with a write callback that appends into the
 * caller's buffer.  Errors are sticky: once an object would pass cap, w->err
 * is DHT_ERR_NOBUF, nothing more is written, and w->len stays at the end of
 * the last whole object.  No byte is ever written at or past buf + cap.
 *
 * Reader: hand-written, strict, zero-allocation and zero-copy.  msgpack-c's
 * unpacker is not used on network input because it allocates
 * n * sizeof(msgpack_object) from an array header's count before it has seen
 * the elements, so a 5-byte array32 header in a hostile datagram asks for
 * gigabytes.  Here every count and length is checked against the bytes that
 * remain, and bins come back as pointers into the input.  Accepted: unsigned
 * integers in any width (positive fixint, uint8..64, and int8..64 holding a
 * value >= 0), bin8/16/32, fixarray/array16/array32, nil, true/false.
 * Anything else where a getter expects its type (negative ints, floats, str,
 * ext, maps, 0xc1) is DHT_ERR_PROTO.  Errors are sticky in r->err.
 */
#include <string.h>

#include <msgpack.h>

#include "dht_int.h"

/* ---- writer ------------------------------------------------------------ */

static int append(void *data, const char *p, size_t n) {
  dht_wire_w *w = data;
  if (w->err)
    return -1;
  if (n > w->cap - w->len) {
    w->err = DHT_ERR_NOBUF;
    return -1;
  }
  if (n) /* msgpack-c passes (NULL, 0) for an empty bin body */
    memcpy(w->buf + w->len, p, n);
  w->len += n;
  return 0;
}

/* A packer is two pointers: make one per call rather than keep one in w. */
static msgpack_packer packer(dht_wire_w *w) {
  msgpack_packer pk;
  msgpack_packer_init(&pk, w, append);
  return pk;
}

void dht_wire_w_init(dht_wire_w *w, uint8_t *buf, size_t cap) {
  w->buf = buf;
  w->cap = buf ? cap : 0;
  w->len = 0;
  w->err = 0;
}

void dht_wire_w_array(dht_wire_w *w, uint32_t n) {
  msgpack_packer pk = packer(w);
  if (!w->err)
    msgpack_pack_array(&pk, n);
}

void dht_wire_w_uint(dht_wire_w *w, uint64_t v) {
  msgpack_packer pk = packer(w);
  if (!w->err)
    msgpack_pack_uint64(&pk, v);
}

void dht_wire_w_bin(dht_wire_w *w, const uint8_t *p, size_t n) {
  msgpack_packer pk = packer(w);
  if (w->err)
    return;
  if (n > UINT32_MAX) { /* msgpack-c would truncate the bin32 length */
    w->err = DHT_ERR_NOBUF;
    return;
  }
  size_t mark = w->len;
  if (msgpack_pack_bin(&pk, n) || msgpack_pack_bin_body(&pk, p, n))
    w->len = mark; /* header fitted, body did not: drop the header too */
}

void dht_wire_w_nil(dht_wire_w *w) {
  msgpack_packer pk = packer(w);
  if (!w->err)
    msgpack_pack_nil(&pk);
}

void dht_wire_w_bool(dht_wire_w *w, bool v) {
  msgpack_packer pk = packer(w);
  if (w->err)
    return;
  if (v)
    msgpack_pack_true(&pk);
  else
    msgpack_pack_false(&pk);
}

/* ---- reader ------------------------------------------------------------ */

static int fail(dht_wire_r *r) {
  r->err = DHT_ERR_PROTO;
  return r->err;
}

static size_t left(const dht_wire_r *r) {
  return (size_t)(r->end - r->p);
}

static uint64_t load_be(const uint8_t *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++)
    v = v << 8 | p[i];
  return v;
}

/* The tag of the next object, or -1 (and r->err set) when there is none. */
static int tag(dht_wire_r *r) {
  if (r->err)
    return -1;
  if (r->p == r->end) {
    fail(r);
    return -1;
  }
  return *r->p;
}

/* Reads the w-byte big-endian field after the tag and consumes both. */
static int field(dht_wire_r *r, size_t w, uint64_t *v) {
  if (left(r) - 1 < w)
    return fail(r);
  *v = load_be(r->p + 1, w);
  r->p += 1 + w;
  return 0;
}

void dht_wire_r_init(dht_wire_r *r, const uint8_t *p, size_t n) {
  r->p = p;
  r->end = n ? p + n : p;
  r->err = 0;
}

static int array_hdr(dht_wire_r *r, uint32_t *n) {
  int t = tag(r);
  uint64_t v;
  if (t < 0)
    return r->err;
  if (t >= 0x90 && t <= 0x9f) {
    v = (uint64_t)t & 0x0f;
    r->p++;
  } else if (t == 0xdc || t == 0xdd) {
    if (field(r, t == 0xdc ? 2 : 4, &v))
      return r->err;
  } else {
    return fail(r);
  }
  if (v > left(r)) /* every element takes at least one byte */
    return fail(r);
  *n = (uint32_t)v;
  return 0;
}

int dht_wire_r_array(dht_wire_r *r, uint32_t n) {
  uint32_t got;
  if (array_hdr(r, &got))
    return r->err;
  return got == n ? 0 : fail(r);
}

int dht_wire_r_array_max(dht_wire_r *r, uint32_t max, uint32_t *n) {
  uint32_t got;
  if (array_hdr(r, &got))
    return r->err;
  if (got > max)
    return fail(r);
  *n = got;
  return 0;
}

int dht_wire_r_uint(dht_wire_r *r, uint64_t max, uint64_t *v) {
  int t = tag(r);
  uint64_t x;
  if (t < 0)
    return r->err;
  if (t <= 0x7f) {
    x = (uint64_t)t;
    r->p++;
  } else if (t >= 0xcc && t <= 0xd3) {
    /* 0xcc..0xcf uint8..64, 0xd0..0xd3 int8..64: width in the low 2 bits */
    size_t w = (size_t)1 << (t & 3);
    if (field(r, w, &x))
      return r->err;
    if (t >= 0xd0 && x >> (8 * w - 1))
      return fail(r); /* negative */
  } else {
    return fail(r);
  }
  if (x > max)
    return fail(r);
  *v = x;
  return 0;
}

int dht_wire_r_bin(dht_wire_r *r, size_t min, size_t max, const uint8_t **p, size_t *n) {
  int t = tag(r);
  uint64_t len;
  if (t < 0)
    return r->err;
  if (t < 0xc4 || t > 0xc6)
    return fail(r);
  if (field(r, (size_t)1 << (t - 0xc4), &len))
    return r->err;
  if (len < min || len > max || len > left(r))
    return fail(r);
  *p = r->p;
  *n = (size_t)len;
  r->p += len;
  return 0;
}

int dht_wire_r_nil(dht_wire_r *r) {
  int t = tag(r);
  if (t < 0)
    return r->err;
  if (t != 0xc0)
    return 0;
  r->p++;
  return 1;
}

int dht_wire_r_bool(dht_wire_r *r, bool *v) {
  int t = tag(r);
  if (t < 0)
    return r->err;
  if (t != 0xc2 && t != 0xc3)
    return fail(r);
  *v = t == 0xc3;
  r->p++;
  return 0;
}

int dht_wire_r_end(dht_wire_r *r) {
  if (!r->err && r->p != r->end)
    fail(r);
  return r->err;
}

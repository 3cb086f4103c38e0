/*
 * dht_msg.c - the engine's core messages (enum dht_msg_type in dht_int.h) on
 * top of the dht_wire primitives; no msgpack.h here.
 *
 * Every message is an array [type, txid, ...] with a fixed arity per type.
 * Decoding is strict: exact arity, element types and lengths, no trailing
 * bytes.  It allocates nothing and copies only fixed-size fields into the
 * dht_msg; a record stays a pointer into the body.  Encoding refuses what
 * decoding would refuse (bad lengths, port 0), so we never send a message a
 * peer must drop.
 */
#include <string.h>

#include "dht_int.h"

/* Elements in each core message, type and txid included. */
static const uint8_t arity[DHT_MSG_ACK + 1] = {
    [DHT_MSG_PING] = 3, [DHT_MSG_PONG] = 4,  [DHT_MSG_FIND_NODE] = 6, [DHT_MSG_NODES] = 4,
    [DHT_MSG_GET] = 6,  [DHT_MSG_VALUE] = 5, [DHT_MSG_PUT] = 5,       [DHT_MSG_ACK] = 3,
};

static bool is_core(unsigned type) {
  return type >= DHT_MSG_PING && type <= DHT_MSG_ACK;
}

/* ---- decoding ---------------------------------------------------------- */

static int read_head(dht_wire_r *r, uint32_t *n, uint8_t *type, uint32_t *txid) {
  uint64_t t, x;
  if (dht_wire_r_array_max(r, UINT32_MAX, n) || *n < 2 || dht_wire_r_uint(r, 0xff, &t) ||
      dht_wire_r_uint(r, UINT32_MAX, &x))
    return DHT_ERR_PROTO;
  *type = (uint8_t)t;
  *txid = (uint32_t)x;
  return 0;
}

int dht_msg_peek(const uint8_t *body, size_t len, uint8_t *type, uint32_t *txid) {
  dht_wire_r r;
  uint32_t n;
  dht_wire_r_init(&r, body, len);
  return read_head(&r, &n, type, txid);
}

static int get_u8(dht_wire_r *r, uint8_t *v) {
  uint64_t x;
  if (dht_wire_r_uint(r, 0xff, &x))
    return DHT_ERR_PROTO;
  *v = (uint8_t)x;
  return 0;
}

static int get_fixed(dht_wire_r *r, uint8_t *out, size_t len) {
  const uint8_t *p;
  size_t n;
  if (dht_wire_r_bin(r, len, len, &p, &n))
    return DHT_ERR_PROTO;
  memcpy(out, p, len);
  return 0;
}

/* A token (exactly 16 bytes), or with may_be_empty a cookie (0 or 16). */
static int get_token(dht_wire_r *r, dht_msg *m, bool may_be_empty) {
  const uint8_t *p;
  size_t n;
  if (dht_wire_r_bin(r, may_be_empty ? 0 : DHT_TOKEN_LEN, DHT_TOKEN_LEN, &p, &n) ||
      (n != 0 && n != DHT_TOKEN_LEN))
    return DHT_ERR_PROTO;
  memcpy(m->token, p, n);
  m->token_len = (uint8_t)n;
  return 0;
}

static int get_seen(dht_wire_r *r, dht_msg *m) {
  const uint8_t *p;
  size_t n;
  if (dht_wire_r_bin(r, DHT_WADDR4_LEN, DHT_WADDR6_LEN, &p, &n) ||
      dht_addr_from_wire(&m->seen, p, n))
    return DHT_ERR_PROTO;
  return 0;
}

static int get_pad(dht_wire_r *r, dht_msg *m) {
  const uint8_t *p;
  return dht_wire_r_bin(r, 0, DHT_MAX_BODY, &p, &m->pad_len) ? DHT_ERR_PROTO : 0;
}

static int get_record(dht_wire_r *r, dht_msg *m) {
  return dht_wire_r_bin(r, 1, DHT_RECORD_MAX_LEN, &m->record, &m->record_len) ? DHT_ERR_PROTO : 0;
}

static int get_contacts(dht_wire_r *r, dht_msg *m) {
  uint32_t n;
  if (dht_wire_r_array_max(r, DHT_K_MAX, &n))
    return DHT_ERR_PROTO;
  for (uint32_t i = 0; i < n; i++) {
    dht_peer *c = &m->contacts[i];
    const uint8_t *p;
    size_t len;
    /* dht_addr_from_wire refuses every length but 6 and 18 */
    if (dht_wire_r_bin(r, DHT_WCONTACT4_LEN, DHT_WCONTACT6_LEN, &p, &len) ||
        dht_addr_from_wire(&c->addr, p + DHT_PK_LEN, len - DHT_PK_LEN))
      return DHT_ERR_PROTO;
    memcpy(c->pk, p, DHT_PK_LEN);
  }
  m->ncontacts = (int)n;
  return 0;
}

int dht_msg_decode(dht_msg *m, const uint8_t *body, size_t len) {
  dht_wire_r r;
  uint32_t n;
  int rc;

  memset(m, 0, sizeof *m);
  dht_wire_r_init(&r, body, len);
  if (read_head(&r, &n, &m->type, &m->txid))
    return DHT_ERR_PROTO;
  if (!is_core(m->type))
    return DHT_ERR_NOTFOUND;
  if (n != arity[m->type])
    return DHT_ERR_PROTO;

  switch (m->type) {
  case DHT_MSG_PING:
    rc = get_u8(&r, &m->flags);
    break;
  case DHT_MSG_PONG:
    rc = get_seen(&r, m) || get_token(&r, m, true);
    break;
  case DHT_MSG_FIND_NODE:
  case DHT_MSG_GET:
    rc = get_u8(&r, &m->flags) || get_token(&r, m, true) || get_fixed(&r, m->target, DHT_ID_LEN) ||
         get_pad(&r, m);
    break;
  case DHT_MSG_NODES:
    rc = get_token(&r, m, false) || get_contacts(&r, m);
    break;
  case DHT_MSG_VALUE:
    rc = get_token(&r, m, false) || get_record(&r, m) || get_contacts(&r, m);
    break;
  case DHT_MSG_PUT:
    rc = get_u8(&r, &m->flags) || get_token(&r, m, false) || get_record(&r, m);
    break;
  default: /* DHT_MSG_ACK */
    rc = get_u8(&r, &m->status);
    break;
  }
  return rc || dht_wire_r_end(&r) ? DHT_ERR_PROTO : 0;
}

/* ---- encoding ---------------------------------------------------------- */

/* Source of the padding bytes: a pad carries length, not content. */
static const uint8_t zeros[DHT_MAX_BODY];

size_t dht_msg_contact_size(const dht_peer *c) {
  /* bin8 tag + length byte + key + address; 0 for a family we cannot send */
  switch (c->addr.family) {
  case DHT_AF_INET:
    return 2 + DHT_WCONTACT4_LEN;
  case DHT_AF_INET6:
    return 2 + DHT_WCONTACT6_LEN;
  default:
    return 0;
  }
}

static int put_addr(dht_wire_w *w, const uint8_t *pk, const dht_addr *a) {
  uint8_t buf[DHT_WCONTACT6_LEN];
  size_t off = pk ? DHT_PK_LEN : 0;
  int n = dht_addr_to_wire(a, buf + off);
  if (n < 0 || a->port == 0)
    return DHT_ERR_INVAL;
  if (pk)
    memcpy(buf, pk, DHT_PK_LEN);
  dht_wire_w_bin(w, buf, off + (size_t)n);
  return 0;
}

static int put_contacts(dht_wire_w *w, const dht_msg *m) {
  if (m->ncontacts < 0 || m->ncontacts > DHT_K_MAX)
    return DHT_ERR_INVAL;
  dht_wire_w_array(w, (uint32_t)m->ncontacts);
  for (int i = 0; i < m->ncontacts; i++)
    if (put_addr(w, m->contacts[i].pk, &m->contacts[i].addr))
      return DHT_ERR_INVAL;
  return 0;
}

static int put_token(dht_wire_w *w, const dht_msg *m, bool may_be_empty) {
  if (m->token_len != DHT_TOKEN_LEN && !(may_be_empty && m->token_len == 0))
    return DHT_ERR_INVAL;
  dht_wire_w_bin(w, m->token, m->token_len);
  return 0;
}

static int put_record(dht_wire_w *w, const dht_msg *m) {
  if (!m->record || m->record_len < 1 || m->record_len > DHT_RECORD_MAX_LEN)
    return DHT_ERR_INVAL;
  dht_wire_w_bin(w, m->record, m->record_len);
  return 0;
}

dht_ssize dht_msg_encode(const dht_msg *m, uint8_t *buf, size_t cap) {
  dht_wire_w w;
  int rc = 0;

  if (!is_core(m->type))
    return DHT_ERR_INVAL;
  dht_wire_w_init(&w, buf, cap);
  dht_wire_w_array(&w, arity[m->type]);
  dht_wire_w_uint(&w, m->type);
  dht_wire_w_uint(&w, m->txid);

  switch (m->type) {
  case DHT_MSG_PING:
    dht_wire_w_uint(&w, m->flags);
    break;
  case DHT_MSG_PONG:
    rc = put_addr(&w, NULL, &m->seen) || put_token(&w, m, true);
    break;
  case DHT_MSG_FIND_NODE:
  case DHT_MSG_GET:
    if (m->pad_len > DHT_MAX_BODY)
      return DHT_ERR_INVAL;
    dht_wire_w_uint(&w, m->flags);
    rc = put_token(&w, m, true);
    dht_wire_w_bin(&w, m->target, DHT_ID_LEN);
    dht_wire_w_bin(&w, zeros, m->pad_len);
    break;
  case DHT_MSG_NODES:
    rc = put_token(&w, m, false) || put_contacts(&w, m);
    break;
  case DHT_MSG_VALUE:
    rc = put_token(&w, m, false) || put_record(&w, m) || put_contacts(&w, m);
    break;
  case DHT_MSG_PUT:
    dht_wire_w_uint(&w, m->flags);
    rc = put_token(&w, m, false) || put_record(&w, m);
    break;
  default: /* DHT_MSG_ACK */
    dht_wire_w_uint(&w, m->status);
    break;
  }
  if (rc)
    return DHT_ERR_INVAL;
  return w.err ? w.err : (dht_ssize)w.len;
}

/*
 * nat_wire.c - the codec of the NAT service's messages (nat_wire.h).
 * Invariants: decoding accepts exactly what encoding writes (any msgpack
 * width for integers, exact byte lengths, no trailing bytes); the encoder
 * refuses a field out of its bounds rather than write a body its own reader
 * would drop.
 */
#include <string.h>

#include "nat_wire.h"

/* Elements per type, [type, txid] included; index type - 0x40. */
static const uint8_t arity[] = {6, 3, 5, 3, 3, 2, 5, 3, 5, 2, 3, 5, 8, 7, 5, 3, 4, 3, 2, 2};
#define NTYPES (sizeof arity / sizeof arity[0])

static int head(dht_wire_r *r, uint8_t *type, uint32_t *txid, bool *known) {
  uint32_t n;
  uint64_t t, x;
  if (dht_wire_r_array_max(r, 16, &n) || dht_wire_r_uint(r, 0x7f, &t) ||
      dht_wire_r_uint(r, UINT32_MAX, &x))
    return DHT_ERR_PROTO;
  *type = (uint8_t)t;
  *txid = (uint32_t)x;
  *known = t >= NAT_MSG_LO && t < NAT_MSG_LO + NTYPES;
  if (*known && n != arity[t - NAT_MSG_LO])
    return DHT_ERR_PROTO;
  return 0;
}

int nat_wire_head(const uint8_t *body, size_t len, uint8_t *type, uint32_t *txid) {
  dht_wire_r r;
  bool known;
  dht_wire_r_init(&r, body, len);
  return head(&r, type, txid, &known);
}

static int fixed(dht_wire_r *r, size_t len, const uint8_t **out) {
  size_t n;
  return dht_wire_r_bin(r, len, len, out, &n);
}

/* An array of 0..NAT_CANDS unicast addresses with a port. */
static int get_cands(dht_wire_r *r, int *n, dht_addr out[static NAT_CANDS]) {
  uint32_t k;
  if (dht_wire_r_array_max(r, NAT_CANDS, &k))
    return DHT_ERR_PROTO;
  for (uint32_t i = 0; i < k; i++) {
    const uint8_t *p;
    size_t len;
    if (dht_wire_r_bin(r, DHT_WADDR4_LEN, DHT_WADDR6_LEN, &p, &len) ||
        dht_addr_from_wire(&out[i], p, len) || out[i].port == 0)
      return DHT_ERR_PROTO;
  }
  *n = (int)k;
  return 0;
}

static int put_cands(dht_wire_w *w, int n, const dht_addr *c) {
  if (n < 0 || n > NAT_CANDS)
    return DHT_ERR_INVAL;
  dht_wire_w_array(w, (uint32_t)n);
  for (int i = 0; i < n; i++) {
    uint8_t a[DHT_WADDR6_LEN];
    int al = dht_addr_to_wire(&c[i], a);
    if (al < 0 || c[i].port == 0)
      return DHT_ERR_INVAL;
    dht_wire_w_bin(w, a, (size_t)al);
  }
  return 0;
}

int nat_wire_decode(nat_wire_msg *m, const uint8_t *body, size_t len) {
  dht_wire_r r;
  bool known;
  memset(m, 0, sizeof *m);
  dht_wire_r_init(&r, body, len);
  if (head(&r, &m->type, &m->txid, &known))
    return DHT_ERR_PROTO;
  if (!known)
    return DHT_ERR_NOTFOUND;
  uint64_t v;
  const uint8_t *p;
  size_t n;
  switch (m->type) {
  case NAT_T_DIAL_REQ:
    if (dht_wire_r_uint(&r, 65535, &v) || v == 0 ||
        fixed(&r, NAT_NONCE_LEN, &m->u.dial_req.nonce) ||
        fixed(&r, DHT_TOKEN_LEN, &m->u.dial_req.cookie) ||
        dht_wire_r_bin(&r, 0, NAT_BLOOM_LEN, &p, &n) || (n != 0 && n != NAT_BLOOM_LEN))
      return DHT_ERR_PROTO;
    m->u.dial_req.port = (uint16_t)v;
    m->u.dial_req.exclude = n ? p : NULL;
    break;
  case NAT_T_DIAL_RESP:
  case NAT_T_DIAL_FWD_ACK:
  case NAT_T_VOUCH_ACK:
  case NAT_T_RELAY_ACK:
    if (dht_wire_r_uint(&r, 255, &v))
      return DHT_ERR_PROTO;
    m->u.dial_resp.status = (uint8_t)v;
    break;
  case NAT_T_DIAL_FWD:
  case NAT_T_VOUCH_REQ:
    if (dht_wire_r_bin(&r, DHT_WADDR4_LEN, DHT_WADDR6_LEN, &p, &n) ||
        dht_addr_from_wire(&m->u.dial_fwd.target, p, n) ||
        fixed(&r, DHT_PK_LEN, &m->u.dial_fwd.pk) || fixed(&r, NAT_NONCE_LEN, &m->u.dial_fwd.nonce))
      return DHT_ERR_PROTO;
    break;
  case NAT_T_PROBE:
  case NAT_T_VOUCHED:
    if (fixed(&r, NAT_NONCE_LEN, &m->u.probe.nonce))
      return DHT_ERR_PROTO;
    break;
  case NAT_T_CHECK:
    if (fixed(&r, NAT_NONCE_LEN, &m->u.check.nonce) || fixed(&r, DHT_PK_LEN, &m->u.check.pk) ||
        dht_wire_r_bin(&r, DHT_WADDR4_LEN, DHT_WADDR6_LEN, &p, &n) ||
        dht_addr_from_wire(&m->u.check.asker, p, n))
      return DHT_ERR_PROTO;
    break;
  case NAT_T_INTRO_REG:
  case NAT_T_PUNCH_REQ:
  case NAT_T_PUNCH_FWD:
  case NAT_T_PUNCH_ACK:
    if (m->type == NAT_T_PUNCH_ACK) {
      if (dht_wire_r_uint(&r, 255, &v))
        return DHT_ERR_PROTO;
      m->u.punch.status = (uint8_t)v;
    } else if (m->type != NAT_T_INTRO_REG) {
      if (fixed(&r, DHT_PK_LEN, &m->u.punch.pk) || fixed(&r, NAT_NONCE_LEN, &m->u.punch.nonce))
        return DHT_ERR_PROTO;
    }
    if (dht_wire_r_uint(&r, NAT_WAIT_MAX_MS, &v) ||
        get_cands(&r, &m->u.punch.ncands, m->u.punch.cands) ||
        ((m->type == NAT_T_INTRO_REG || m->type == NAT_T_PUNCH_REQ) &&
         fixed(&r, DHT_TOKEN_LEN, &m->u.punch.cookie)))
      return DHT_ERR_PROTO;
    m->u.punch.ms = (uint16_t)v;
    break;
  case NAT_T_HOLE:
    if (fixed(&r, NAT_NONCE_LEN, &m->u.hole.nonce))
      return DHT_ERR_PROTO;
    break;
  case NAT_T_RELAY_REQ:
    if (fixed(&r, DHT_PK_LEN, &m->u.relay_req.pk) ||
        fixed(&r, NAT_NONCE_LEN, &m->u.relay_req.nonce))
      return DHT_ERR_PROTO;
    break;
  default: /* NAT_T_PROBE_ACK, NAT_T_CHECK_ACK, NAT_T_KEEP, NAT_T_KEEP_ACK */
    break;
  }
  return dht_wire_r_end(&r) ? DHT_ERR_PROTO : 0;
}

dht_ssize nat_wire_encode(uint8_t *buf, size_t cap, const nat_wire_msg *m) {
  if (m->type < NAT_MSG_LO || m->type >= NAT_MSG_LO + NTYPES)
    return DHT_ERR_INVAL;
  dht_wire_w w;
  dht_wire_w_init(&w, buf, cap);
  dht_wire_w_array(&w, arity[m->type - NAT_MSG_LO]);
  dht_wire_w_uint(&w, m->type);
  dht_wire_w_uint(&w, m->txid);
  uint8_t a[DHT_WADDR6_LEN];
  int al;
  switch (m->type) {
  case NAT_T_DIAL_REQ:
    if (!m->u.dial_req.port || !m->u.dial_req.nonce || !m->u.dial_req.cookie)
      return DHT_ERR_INVAL;
    dht_wire_w_uint(&w, m->u.dial_req.port);
    dht_wire_w_bin(&w, m->u.dial_req.nonce, NAT_NONCE_LEN);
    dht_wire_w_bin(&w, m->u.dial_req.cookie, DHT_TOKEN_LEN);
    dht_wire_w_bin(&w, m->u.dial_req.exclude, m->u.dial_req.exclude ? NAT_BLOOM_LEN : 0);
    break;
  case NAT_T_DIAL_RESP:
  case NAT_T_DIAL_FWD_ACK:
  case NAT_T_VOUCH_ACK:
  case NAT_T_RELAY_ACK:
    dht_wire_w_uint(&w, m->u.dial_resp.status);
    break;
  case NAT_T_DIAL_FWD:
  case NAT_T_VOUCH_REQ:
    if ((al = dht_addr_to_wire(&m->u.dial_fwd.target, a)) < 0 || m->u.dial_fwd.target.port == 0 ||
        !m->u.dial_fwd.pk || !m->u.dial_fwd.nonce)
      return DHT_ERR_INVAL;
    dht_wire_w_bin(&w, a, (size_t)al);
    dht_wire_w_bin(&w, m->u.dial_fwd.pk, DHT_PK_LEN);
    dht_wire_w_bin(&w, m->u.dial_fwd.nonce, NAT_NONCE_LEN);
    break;
  case NAT_T_PROBE:
  case NAT_T_VOUCHED:
    if (!m->u.probe.nonce)
      return DHT_ERR_INVAL;
    dht_wire_w_bin(&w, m->u.probe.nonce, NAT_NONCE_LEN);
    break;
  case NAT_T_CHECK:
    if ((al = dht_addr_to_wire(&m->u.check.asker, a)) < 0 || m->u.check.asker.port == 0 ||
        !m->u.check.nonce || !m->u.check.pk)
      return DHT_ERR_INVAL;
    dht_wire_w_bin(&w, m->u.check.nonce, NAT_NONCE_LEN);
    dht_wire_w_bin(&w, m->u.check.pk, DHT_PK_LEN);
    dht_wire_w_bin(&w, a, (size_t)al);
    break;
  case NAT_T_INTRO_REG:
  case NAT_T_PUNCH_REQ:
  case NAT_T_PUNCH_FWD:
  case NAT_T_PUNCH_ACK:
    if (m->u.punch.ms > NAT_WAIT_MAX_MS)
      return DHT_ERR_INVAL;
    if (m->type == NAT_T_PUNCH_ACK) {
      dht_wire_w_uint(&w, m->u.punch.status);
    } else if (m->type != NAT_T_INTRO_REG) {
      if (!m->u.punch.pk || !m->u.punch.nonce)
        return DHT_ERR_INVAL;
      dht_wire_w_bin(&w, m->u.punch.pk, DHT_PK_LEN);
      dht_wire_w_bin(&w, m->u.punch.nonce, NAT_NONCE_LEN);
    }
    dht_wire_w_uint(&w, m->u.punch.ms);
    if (put_cands(&w, m->u.punch.ncands, m->u.punch.cands))
      return DHT_ERR_INVAL;
    if (m->type == NAT_T_INTRO_REG || m->type == NAT_T_PUNCH_REQ) {
      if (!m->u.punch.cookie)
        return DHT_ERR_INVAL;
      dht_wire_w_bin(&w, m->u.punch.cookie, DHT_TOKEN_LEN);
    }
    break;
  case NAT_T_HOLE:
    if (!m->u.hole.nonce)
      return DHT_ERR_INVAL;
    dht_wire_w_bin(&w, m->u.hole.nonce, NAT_NONCE_LEN);
    break;
  case NAT_T_RELAY_REQ:
    if (!m->u.relay_req.pk || !m->u.relay_req.nonce)
      return DHT_ERR_INVAL;
    dht_wire_w_bin(&w, m->u.relay_req.pk, DHT_PK_LEN);
    dht_wire_w_bin(&w, m->u.relay_req.nonce, NAT_NONCE_LEN);
    break;
  default:
    break;
  }
  return w.err ? w.err : (dht_ssize)w.len;
}

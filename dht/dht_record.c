/*
 * dht_record.c - signed peer records.
 *
 * A record says where a node can be reached: its identity key, a sequence
 * number (newest wins), an expiry in unix seconds, flags, up to eight typed
 * addresses and (version 2) up to three introducers.  The layout is fixed
 * and big-endian, so the signed bytes are canonical by construction and a
 * record is stored and forwarded as the exact bytes its owner signed:
 *
 *   u8 version | pk[32] | u64 seq | u64 expires | u8 flags | u8 naddrs |
 *   naddrs x (u8 type | u8 len (6|18) | address wire form) |
 *   [version 2: u8 nintro | nintro x (pk[32] | u8 len | address)] | sig[64]
 *
 * The signature covers "roost-record-v1\0" || all bytes before it, so a
 * record signature can never be confused with another use of the same key.
 */
#include <sodium.h>
#include <string.h>

#include "dht_int.h"

static const uint8_t domain[16] = "roost-record-v1";

#define FIXED_LEN (1 + DHT_PK_LEN + 8 + 8 + 1 + 1)

static void put64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

dht_ssize dht_record_sign(const dht_record *r, const uint8_t sk[static DHT_SK_LEN], uint8_t *buf,
                          size_t cap) {
  if (r->naddrs > DHT_RECORD_MAX_ADDRS)
    return DHT_ERR_INVAL;
  uint8_t msg[sizeof domain + DHT_RECORD_MAX_LEN];
  uint8_t *p = msg + sizeof domain;
  memcpy(msg, domain, sizeof domain);
  if (r->nintro > DHT_RECORD_MAX_INTRO)
    return DHT_ERR_INVAL;
  p[0] = r->nintro ? DHT_RECORD_VERSION_INTRO : DHT_RECORD_VERSION;
  memcpy(p + 1, r->pk, DHT_PK_LEN);
  put64(p + 1 + DHT_PK_LEN, r->seq);
  put64(p + 9 + DHT_PK_LEN, r->expires_unix_s);
  p[17 + DHT_PK_LEN] = r->flags;
  p[18 + DHT_PK_LEN] = r->naddrs;
  size_t n = FIXED_LEN;
  for (int i = 0; i < r->naddrs; i++) {
    const dht_typed_addr *ta = &r->addrs[i];
    if (ta->type < DHT_ADDR_LAN || ta->type > DHT_ADDR_RELAY)
      return DHT_ERR_INVAL;
    int w = dht_addr_to_wire(&ta->addr, p + n + 2);
    if (w < 0 || ta->addr.port == 0)
      return DHT_ERR_INVAL;
    p[n] = ta->type;
    p[n + 1] = (uint8_t)w;
    n += 2 + (size_t)w;
  }
  if (r->nintro)
    p[n++] = r->nintro;
  for (int i = 0; i < r->nintro; i++) {
    const dht_introducer *in = &r->intro[i];
    int w = dht_addr_to_wire(&in->addr, p + n + DHT_PK_LEN + 1);
    if (w < 0 || in->addr.port == 0)
      return DHT_ERR_INVAL;
    memcpy(p + n, in->pk, DHT_PK_LEN);
    p[n + DHT_PK_LEN] = (uint8_t)w;
    n += DHT_PK_LEN + 1 + (size_t)w;
  }
  if (cap < n + DHT_SIG_LEN)
    return DHT_ERR_NOBUF;
  memcpy(buf, p, n);
  crypto_sign_detached(buf + n, NULL, msg, sizeof domain + n, sk);
  sodium_memzero(msg, sizeof msg);
  return (dht_ssize)(n + DHT_SIG_LEN);
}

int dht_record_parse(dht_record *r, const uint8_t *buf, size_t len) {
  if (len < FIXED_LEN + DHT_SIG_LEN || len > DHT_RECORD_MAX_LEN ||
      (buf[0] != DHT_RECORD_VERSION && buf[0] != DHT_RECORD_VERSION_INTRO))
    return DHT_ERR_PROTO;
  memset(r, 0, sizeof *r);
  memcpy(r->pk, buf + 1, DHT_PK_LEN);
  r->seq = get64(buf + 1 + DHT_PK_LEN);
  r->expires_unix_s = get64(buf + 9 + DHT_PK_LEN);
  r->flags = buf[17 + DHT_PK_LEN];
  r->naddrs = buf[18 + DHT_PK_LEN];
  if (r->naddrs > DHT_RECORD_MAX_ADDRS)
    return DHT_ERR_PROTO;
  size_t n = FIXED_LEN, end = len - DHT_SIG_LEN;
  for (int i = 0; i < r->naddrs; i++) {
    if (end - n < 2)
      return DHT_ERR_PROTO;
    uint8_t type = buf[n], w = buf[n + 1];
    if (type < DHT_ADDR_LAN || type > DHT_ADDR_RELAY || end - n - 2 < w ||
        dht_addr_from_wire(&r->addrs[i].addr, buf + n + 2, w) != 0)
      return DHT_ERR_PROTO;
    r->addrs[i].type = type;
    n += 2 + (size_t)w;
  }
  if (buf[0] == DHT_RECORD_VERSION)
    return n == end ? 0 : DHT_ERR_PROTO;
  /* version 2: at least one introducer, or it would have been version 1 */
  if (n == end || buf[n] < 1 || buf[n] > DHT_RECORD_MAX_INTRO)
    return DHT_ERR_PROTO;
  r->nintro = buf[n++];
  for (int i = 0; i < r->nintro; i++) {
    if (end - n < DHT_PK_LEN + 1)
      return DHT_ERR_PROTO;
    uint8_t w = buf[n + DHT_PK_LEN];
    if (end - n - DHT_PK_LEN - 1 < w ||
        dht_addr_from_wire(&r->intro[i].addr, buf + n + DHT_PK_LEN + 1, w) != 0)
      return DHT_ERR_PROTO;
    memcpy(r->intro[i].pk, buf + n, DHT_PK_LEN);
    n += DHT_PK_LEN + 1 + (size_t)w;
  }
  return n == end ? 0 : DHT_ERR_PROTO;
}

int dht_record_verify(const uint8_t *buf, size_t len) {
  if (len < FIXED_LEN + DHT_SIG_LEN || len > DHT_RECORD_MAX_LEN)
    return DHT_ERR_CRYPTO;
  uint8_t msg[sizeof domain + DHT_RECORD_MAX_LEN];
  size_t n = len - DHT_SIG_LEN;
  memcpy(msg, domain, sizeof domain);
  memcpy(msg + sizeof domain, buf, n);
  return crypto_sign_verify_detached(buf + n, msg, sizeof domain + n, buf + 1) == 0
             ? 0
             : DHT_ERR_CRYPTO;
}

/*
 * fuzz_common.c - the helpers the fuzz targets share (see fuzz_common.h).
 * Stateless: nothing here keeps anything between calls.
 */
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>

bool fc_op_next(const uint8_t *data, size_t size, size_t *pos, uint8_t *op, const uint8_t **p,
                size_t *len) {
  if (size - *pos < 3)
    return false;
  size_t l = (size_t)(data[*pos + 1] << 8 | data[*pos + 2]);
  if (l > size - *pos - 3)
    return false;
  *op = data[*pos];
  *p = data + *pos + 3;
  *len = l;
  *pos += 3 + l;
  return true;
}

size_t fc_op_config(const uint8_t *data, size_t size, uint8_t count, uint8_t config,
                    const uint8_t **p, size_t *len) {
  size_t pos = 0;
  uint8_t op;
  const uint8_t *q;
  size_t l;
  if (!fc_op_next(data, size, &pos, &op, &q, &l) || op % count != config)
    return 0;
  *p = q;
  *len = l;
  return pos;
}

void fc_identity(dht_identity *id, uint8_t fill, int n) {
  uint8_t seed[32];
  memset(seed, fill, sizeof seed);
  seed[0] = (uint8_t)n;
  dht_identity_from_seed(id, seed);
}

void fc_box_entry(uint8_t entry[static DHT_BOX_ENTRY_LEN], const dht_identity *peer,
                  const uint8_t hkey[static 16], const uint8_t engine_pk[static DHT_PK_LEN]) {
  dht_box b;
  if (dht_box_init(&b, peer, 4, hkey, &dht_mem_libc) != 0)
    abort();
  const uint8_t *ent = dht_box_key(&b, engine_pk);
  if (!ent)
    abort();
  memcpy(entry, ent, DHT_BOX_ENTRY_LEN);
  dht_box_free(&b, &dht_mem_libc);
}

void fc_box_ready(dht_box *box, const dht_identity *peer, const uint8_t hkey[static 16],
                  const uint8_t engine_pk[static DHT_PK_LEN],
                  const uint8_t entry[static DHT_BOX_ENTRY_LEN]) {
  if (dht_box_init(box, peer, 4, hkey, &dht_mem_libc) != 0)
    abort();
  /* the precomputed entry: the shared key costs ~46 us to derive */
  uint8_t *slot = dht_cache_put(&box->keys, engine_pk);
  memcpy(slot, entry, DHT_BOX_ENTRY_LEN);
}

void fc_peer_addr(dht_addr *a, int i, bool v6, const uint8_t v4[static 4], uint8_t v6_last,
                  uint16_t port_base) {
  memset(a, 0, sizeof *a);
  if (v6) {
    static const uint8_t pfx[4] = {0x20, 0x01, 0x0d, 0xb8};
    a->family = DHT_AF_INET6;
    memcpy(a->ip, pfx, 4);
    a->ip[5] = (uint8_t)(1 + i);
    a->ip[15] = v6_last;
  } else {
    a->family = DHT_AF_INET;
    memcpy(a->ip, v4, 4);
  }
  a->port = (uint16_t)(port_base + i);
}

int fc_peer_at(const dht_addr *a, int npeers, fc_addr_fn addr) {
  for (int i = 0; i < npeers; i++)
    for (int v6 = 0; v6 < 2; v6++) {
      dht_addr p;
      addr(i, v6, &p);
      if (dht_addr_eq(a, &p))
        return i;
    }
  return -1;
}

void fc_peer_list(dht_peer *out, int npeers, const dht_identity *ids, fc_addr_fn addr,
                  unsigned v6_bits) {
  for (int i = 0; i < npeers; i++) {
    memcpy(out[i].pk, ids[i].pk, DHT_PK_LEN);
    addr(i, (v6_bits >> i) & 1, &out[i].addr);
  }
}

size_t fc_seal(dht_box *box, uint8_t tag, uint64_t ctr, const uint8_t engine_pk[static DHT_PK_LEN],
               const uint8_t *body, size_t len, uint8_t *pkt, size_t cap) {
  uint8_t nonce[DHT_NONCE_LEN];
  memset(nonce, 0, sizeof nonce);
  nonce[0] = tag;
  for (int j = 0; j < 8; j++)
    nonce[1 + j] = (uint8_t)(ctr >> (8 * j));
  dht_ssize n = dht_box_seal(box, engine_pk, nonce, body, len, pkt, cap);
  if (n < 0)
    abort();
  return (size_t)n;
}

void fc_check_dgram(dht_ssize n, const dht_addr *to) {
  if (n < 0 || n > DHT_MAX_PKT || n < (dht_ssize)DHT_OVERHEAD)
    abort();
  if ((to->family != DHT_AF_INET && to->family != DHT_AF_INET6) || to->port == 0)
    abort();
}

void fc_settings(dht_settings *s) {
  dht_settings_default(s);
  s->key_cache = 16;
  s->cookie_cache = 16;
  s->max_records = 16;
  s->rate_pps = 0;
}

void fc_engine_new(dht **e, const dht_identity *self, const dht_settings *s,
                   const dht_callbacks *cb, dht_ts now) {
  if (dht_new(e, self, s, cb, NULL, now) != 0)
    abort();
  dht_set_clock_offset(*e, FC_UNIX_MS - FC_T0);
}

dht_ts fc_time_ms(const uint8_t *p, size_t n, int shift_mul, dht_ts max_advance, dht_ts *advanced) {
  dht_ts ms = n >= 2 ? (dht_ts)(p[0] << 8 | p[1]) : n == 1 ? p[0] : 0;
  if (n >= 3)
    ms <<= (p[2] & 7) * shift_mul;
  if (ms > max_advance - *advanced)
    ms = max_advance - *advanced;
  *advanced += ms;
  return ms;
}

bool fc_run_clock(dht *e, dht_ts *now, dht_ts target, int steps, void (*expire)(void *ctx),
                  bool (*stop)(void *ctx), void *ctx) {
  for (int i = 0; i < steps; i++) {
    dht_ts t = dht_get_expiry(e);
    if (t > target)
      break;
    if (t > *now)
      *now = t;
    expire(ctx);
    if (stop && stop(ctx))
      return true;
  }
  *now = target;
  if (dht_get_expiry(e) <= *now)
    expire(ctx);
  return false;
}

size_t fc_array_head(const uint8_t *b, size_t len) {
  if (len == 0)
    return 0;
  size_t p = (b[0] >= 0x90 && b[0] <= 0x9f) ? 1 : b[0] == 0xdc ? 3 : b[0] == 0xdd ? 5 : 0;
  return p && p < len ? p : 0;
}

size_t fc_skip_uint(const uint8_t *p, size_t n, uint8_t last) {
  if (n == 0)
    return 0;
  if (p[0] <= 0x7f)
    return 1;
  if (p[0] >= 0xcc && p[0] <= last) {
    size_t w = (size_t)1 << (p[0] & 3);
    return n >= 1 + w ? 1 + w : 0;
  }
  return 0;
}

size_t fc_patch_u32(uint8_t *b, size_t len, size_t at, size_t x, uint32_t v) {
  memmove(b + at + 5, b + at + x, len - at - x);
  b[at] = 0xce;
  b[at + 1] = (uint8_t)(v >> 24);
  b[at + 2] = (uint8_t)(v >> 16);
  b[at + 3] = (uint8_t)(v >> 8);
  b[at + 4] = (uint8_t)v;
  return len - x + 5;
}

void fc_ring_push(void *ring, size_t elsize, int cap, int *n) {
  memmove((uint8_t *)ring + elsize, ring, (size_t)(cap - 1) * elsize);
  if (*n < cap)
    (*n)++;
}

/*
 * dht_rate.c - token buckets per source prefix, checked before any
 * decryption, so that a flood costs us a table probe and not an X25519.
 *
 * The table is set-associative (4 ways) with fixed memory; a prefix not in
 * the table takes the least recently seen way of its set and starts with a
 * full bucket.  That is the price of bounded memory: an attacker cycling many
 * prefixes gets at most burst packets per prefix per eviction, and every one
 * of those still has to pass authentication.
 */
#include <string.h>

#include "dht_int.h"

#define WAYS 4

int dht_rate_init(dht_rate *r, int prefixes, int pps, int burst, int v4bits, int v6bits,
                  uint64_t rnd, const dht_mem *mem) {
  memset(r, 0, sizeof *r);
  r->pps = pps;
  r->burst = burst > 0 ? burst : 1;
  r->v4bits = v4bits;
  r->v6bits = v6bits;
  r->mul = rnd | 1;
  if (pps <= 0)
    return 0; /* off */
  if (prefixes < WAYS)
    prefixes = WAYS;
  r->nsets = (prefixes + WAYS - 1) / WAYS;
  r->ents = dht_mem_calloc(mem, (size_t)r->nsets * WAYS, sizeof *r->ents);
  return r->ents ? 0 : DHT_ERR_NOMEM;
}

void dht_rate_free(dht_rate *r, const dht_mem *mem) {
  dht_mem_free(mem, r->ents);
  r->ents = NULL;
}

bool dht_rate_allow(dht_rate *r, const dht_addr *a, dht_ts now) {
  if (!r->ents)
    return true;
  uint64_t key;
  if (dht_addr_is_loopback(a))
    key = dht_addr_prefix_key(a, 32, 128) ^ ((uint64_t)a->port * 0x9e3779b97f4a7c15ull);
  else
    key = dht_addr_prefix_key(a, r->v4bits, r->v6bits);
  key |= 1; /* 0 marks an empty way */
  size_t base = (size_t)((key * r->mul) >> 32) % (size_t)r->nsets * WAYS;
  struct dht_rate_ent *e = NULL, *victim = &r->ents[base];
  for (size_t i = base; i < base + WAYS; i++) {
    if (r->ents[i].key == key) {
      e = &r->ents[i];
      break;
    }
    if (r->ents[i].key == 0 || r->ents[i].last < victim->last)
      victim = &r->ents[i];
    if (victim->key == 0)
      break;
  }
  const int64_t full = (int64_t)r->burst * 1000;
  if (!e) {
    e = victim;
    e->key = key;
    e->milli = full;
  } else if (now > e->last) {
    int64_t add = (now - e->last) * r->pps; /* ms x pps = milli-tokens */
    e->milli = add > full - e->milli ? full : e->milli + add;
  }
  e->last = now;
  if (e->milli < 1000)
    return false;
  e->milli -= 1000;
  return true;
}

/*
 * dht_cache.c - a bounded map from 32-byte keys to fixed-size values.
 *
 * Set-associative with DHT_CACHE_WAYS ways and LRU within a set: memory is
 * fixed at init, a lookup touches one set, and eviction needs no lists.  The
 * set index is keyed SipHash so remote peers cannot choose colliding keys.
 * Invariant: stamp == 0 marks an empty way; stamps grow with every access.
 */
#include <sodium.h>
#include <string.h>

#include "dht_int.h"

int dht_cache_init(dht_cache *c, int entries, size_t vlen, const uint8_t hkey[static 16],
                   const dht_mem *mem) {
  memset(c, 0, sizeof *c);
  if (entries < DHT_CACHE_WAYS)
    entries = DHT_CACHE_WAYS;
  c->nsets = (entries + DHT_CACHE_WAYS - 1) / DHT_CACHE_WAYS;
  c->vlen = vlen;
  memcpy(c->hkey, hkey, 16);
  size_t n = (size_t)c->nsets * DHT_CACHE_WAYS;
  c->ents = dht_mem_calloc(mem, n, sizeof *c->ents);
  c->vals = dht_mem_calloc(mem, n, vlen);
  if (!c->ents || !c->vals) {
    dht_cache_free(c, mem);
    return DHT_ERR_NOMEM;
  }
  return 0;
}

void dht_cache_free(dht_cache *c, const dht_mem *mem) {
  if (c->vals)
    sodium_memzero(c->vals, (size_t)c->nsets * DHT_CACHE_WAYS * c->vlen);
  dht_mem_free(mem, c->vals);
  dht_mem_free(mem, c->ents);
  sodium_memzero(c, sizeof *c);
}

static size_t set_of(const dht_cache *c, const uint8_t key[static 32]) {
  uint8_t h[crypto_shorthash_BYTES];
  crypto_shorthash(h, key, 32, c->hkey);
  uint64_t v;
  memcpy(&v, h, sizeof v);
  return (size_t)(v % (uint64_t)c->nsets) * DHT_CACHE_WAYS;
}

uint8_t *dht_cache_get(dht_cache *c, const uint8_t key[static 32]) {
  size_t base = set_of(c, key);
  for (size_t i = base; i < base + DHT_CACHE_WAYS; i++) {
    if (c->ents[i].stamp && memcmp(c->ents[i].key, key, 32) == 0) {
      c->ents[i].stamp = ++c->clock;
      return c->vals + i * c->vlen;
    }
  }
  return NULL;
}

uint8_t *dht_cache_put(dht_cache *c, const uint8_t key[static 32]) {
  size_t base = set_of(c, key), victim = base;
  for (size_t i = base; i < base + DHT_CACHE_WAYS; i++) {
    if (c->ents[i].stamp && memcmp(c->ents[i].key, key, 32) == 0) {
      victim = i;
      break;
    }
    if (c->ents[i].stamp < c->ents[victim].stamp)
      victim = i;
  }
  memcpy(c->ents[victim].key, key, 32);
  c->ents[victim].stamp = ++c->clock;
  uint8_t *v = c->vals + victim * c->vlen;
  sodium_memzero(v, c->vlen);
  return v;
}

void dht_cache_remove(dht_cache *c, const uint8_t key[static 32]) {
  size_t base = set_of(c, key);
  for (size_t i = base; i < base + DHT_CACHE_WAYS; i++) {
    if (c->ents[i].stamp && memcmp(c->ents[i].key, key, 32) == 0) {
      c->ents[i].stamp = 0;
      sodium_memzero(c->vals + i * c->vlen, c->vlen);
    }
  }
}

/*
 * dht_replay.c - drops datagrams whose (sender, nonce) we accepted recently.
 *
 * A datagram is identified by a 64-bit keyed hash of (sender key, nonce).  Two generations of
 * open-addressing sets, each holding up to window fingerprints at load <= 1/2: when the current one
 * fills, it becomes the previous one and the old previous one is cleared.  So at least the last
 * window datagrams are always remembered, in fixed memory.  Older replays pass this filter; what
 * they can do is bounded by txids (a reply matches nothing) and by idempotent request handling.
 */
#include <sodium.h>
#include <string.h>

#include "dht_int.h"

int dht_replay_init(dht_replay *r, int window, const uint8_t key[static 16], const dht_mem *mem) {
  memset(r, 0, sizeof *r);
  memcpy(r->key, key, sizeof r->key);
  if (window <= 0)
    return 0;
  int slots = 16;
  while (slots < 2 * window)
    slots *= 2;
  r->window = window;
  r->mask = slots - 1;
  r->gen[0] = dht_mem_calloc(mem, (size_t)slots, sizeof(uint64_t));
  r->gen[1] = dht_mem_calloc(mem, (size_t)slots, sizeof(uint64_t));
  if (!r->gen[0] || !r->gen[1]) {
    dht_replay_free(r, mem);
    return DHT_ERR_NOMEM;
  }
  return 0;
}

void dht_replay_free(dht_replay *r, const dht_mem *mem) {
  dht_mem_free(mem, r->gen[0]);
  dht_mem_free(mem, r->gen[1]);
  memset(r, 0, sizeof *r);
}

static bool has(const uint64_t *t, int mask, uint64_t fp) {
  for (int i = (int)((fp >> 7) & (uint64_t)mask);; i = (i + 1) & mask) {
    if (t[i] == fp)
      return true;
    if (t[i] == 0)
      return false;
  }
}

bool dht_replay_seen(dht_replay *r, const uint8_t sender[static DHT_PK_LEN],
                     const uint8_t nonce[static DHT_NONCE_LEN]) {
  if (!r->window)
    return false;
  /* Keyed SipHash over the whole sender key and nonce: nonces travel in the
   * clear, so an unkeyed fingerprint would let anyone pre-fill our filter
   * with the fingerprints of another sender's next datagrams. */
  uint8_t in[DHT_PK_LEN + DHT_NONCE_LEN], h[crypto_shorthash_BYTES];
  memcpy(in, sender, DHT_PK_LEN);
  memcpy(in + DHT_PK_LEN, nonce, DHT_NONCE_LEN);
  crypto_shorthash(h, in, sizeof in, r->key);
  uint64_t fp;
  memcpy(&fp, h, sizeof fp);
  fp |= 1; /* 0 marks an empty slot */
  if (has(r->gen[0], r->mask, fp) || has(r->gen[1], r->mask, fp))
    return true;
  if (r->count >= r->window) {
    uint64_t *old = r->gen[1];
    r->gen[1] = r->gen[0];
    memset(old, 0, ((size_t)r->mask + 1) * sizeof *old);
    r->gen[0] = old;
    r->count = 0;
  }
  int i = (int)((fp >> 7) & (uint64_t)r->mask);
  while (r->gen[0][i])
    i = (i + 1) & r->mask;
  r->gen[0][i] = fp;
  r->count++;
  return false;
}

/*
 * dht_box.c - the datagram envelope.
 *
 *   [u8 version][32 B sender Ed25519 pk][24 B nonce][crypto_box ciphertext]
 *
 * The sender's Ed25519 key is its identity (node ID = BLAKE2b-256 of it);
 * libsodium converts both sides to X25519 for crypto_box, and the box key is
 * BLAKE2b(X25519 shared key || both Ed25519 keys in byte order).  The X25519 result
 * is the expensive part (the point check in the Ed25519 conversion plus
 * X25519: some hundred times a cached seal or open, docs/benchmarks.md "Cache
 * misses"), so shared keys live in a bounded cache keyed by the peer's key.
 */
#include <sodium.h>
#include <string.h>

#include "dht_int.h"

int dht_box_init(dht_box *b, const dht_identity *id, int cache_entries,
                 const uint8_t hkey[static 16], const dht_mem *mem) {
  memset(b, 0, sizeof *b);
  memcpy(b->pk, id->pk, DHT_PK_LEN);
  if (crypto_sign_ed25519_sk_to_curve25519(b->xsk, id->sk) != 0)
    return DHT_ERR_INVAL;
  int rv = dht_cache_init(&b->keys, cache_entries, DHT_BOX_ENTRY_LEN, hkey, mem);
  if (rv)
    sodium_memzero(b->xsk, sizeof b->xsk);
  return rv;
}

void dht_box_free(dht_box *b, const dht_mem *mem) {
  dht_cache_free(&b->keys, mem);
  sodium_memzero(b, sizeof *b);
}

void dht_box_set_plaintext(dht_box *b, bool on) {
  b->plaintext = on;
}

const uint8_t *dht_box_key(dht_box *b, const uint8_t peer[static DHT_PK_LEN]) {
  uint8_t *k = dht_cache_get(&b->keys, peer);
  if (k) {
    b->hits++;
    return k;
  }
  b->misses++;
  if (b->plaintext) {
    /* simulation only: no key agreement; an all-zero key marks the entry */
    k = dht_cache_put(&b->keys, peer);
    dht_id_from_pk(k + 32, peer);
    return k;
  }
  uint8_t xpk[32], shared[crypto_box_BEFORENMBYTES];
  /* Fails for encodings that are not points; beforenm fails for low-order
   * points (all-zero shared secret).  Neither is cached: the per-prefix rate
   * limit bounds how often a sender can make us try. */
  if (crypto_sign_ed25519_pk_to_curve25519(xpk, peer) != 0 ||
      crypto_box_beforenm(shared, xpk, b->xsk) != 0)
    return NULL;
  /* The Ed25519 -> X25519 conversion ignores the sign bit of the encoded key,
   * so two Ed25519 encodings (two node IDs) share one X25519 key.  Binding
   * both Ed25519 keys into the box key makes a datagram open only under the
   * exact sender key it was sealed for (found by the fuzzer: a replayed
   * datagram with that bit flipped authenticated as another node). */
  const uint8_t *lo = memcmp(b->pk, peer, DHT_PK_LEN) < 0 ? b->pk : peer;
  const uint8_t *hi = lo == peer ? b->pk : peer;
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, sizeof shared);
  crypto_generichash_update(&st, shared, sizeof shared);
  crypto_generichash_update(&st, lo, DHT_PK_LEN);
  crypto_generichash_update(&st, hi, DHT_PK_LEN);
  crypto_generichash_final(&st, shared, sizeof shared);
  k = dht_cache_put(&b->keys, peer);
  memcpy(k, shared, sizeof shared);
  dht_id_from_pk(k + 32, peer);
  sodium_memzero(shared, sizeof shared);
  return k;
}

dht_ssize dht_box_seal(dht_box *b, const uint8_t peer[static DHT_PK_LEN],
                       const uint8_t nonce[static DHT_NONCE_LEN], const uint8_t *body, size_t len,
                       uint8_t *out, size_t cap) {
  if (len > DHT_MAX_BODY || cap < len + DHT_OVERHEAD)
    return DHT_ERR_NOBUF;
  const uint8_t *k = dht_box_key(b, peer);
  if (!k)
    return DHT_ERR_CRYPTO;
  out[0] = DHT_VERSION;
  memcpy(out + 1, b->pk, DHT_PK_LEN);
  memcpy(out + 1 + DHT_PK_LEN, nonce, DHT_NONCE_LEN);
  if (b->plaintext) {
    memset(out + DHT_HDR_LEN, 0, DHT_MAC_LEN);
    memcpy(out + DHT_HDR_LEN + DHT_MAC_LEN, body, len);
  } else {
    crypto_box_easy_afternm(out + DHT_HDR_LEN, body, len, nonce, k);
  }
  return (dht_ssize)(len + DHT_OVERHEAD);
}

dht_ssize dht_box_open(const uint8_t key[static 32], const uint8_t *pkt, size_t len, uint8_t *out,
                       size_t cap) {
  if (len < DHT_OVERHEAD || cap < len - DHT_OVERHEAD)
    return DHT_ERR_CRYPTO;
  static const uint8_t zero[32];
  if (sodium_memcmp(key, zero, 32) == 0) {
    /* the plaintext (simulation) entry: a real box key is a hash output and
     * never all zero */
    if (sodium_memcmp(pkt + DHT_HDR_LEN, zero, DHT_MAC_LEN) != 0)
      return DHT_ERR_CRYPTO;
    memcpy(out, pkt + DHT_HDR_LEN + DHT_MAC_LEN, len - DHT_OVERHEAD);
    return (dht_ssize)(len - DHT_OVERHEAD);
  }
  const uint8_t *nonce = pkt + 1 + DHT_PK_LEN;
  if (crypto_box_open_easy_afternm(out, pkt + DHT_HDR_LEN, len - DHT_HDR_LEN, nonce, key) != 0)
    return DHT_ERR_CRYPTO;
  return (dht_ssize)(len - DHT_OVERHEAD);
}

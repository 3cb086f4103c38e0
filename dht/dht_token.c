/*
 * dht_token.c - address-bound tokens.
 *
 * A token proves that whoever presents it received a datagram we sent to that
 * address (BitTorrent's write-token rule, BEP 5).  We use it twice: a PUT
 * must carry one, and a request that echoes one lifts the anti-amplification
 * limit on our reply.  Nothing is stored per peer: the token is a keyed hash
 * of the address and the peer's key under a rotating secret.
 * (DHT_TOKEN_LEN == crypto_shorthash_siphashx24_BYTES == 16.)
 */
#include <sodium.h>
#include <string.h>

#include "dht_int.h"

void dht_token_init(dht_token *t, const uint8_t rnd[static 32], dht_ts now) {
  memcpy(t->secret[0], rnd, 32);
  memcpy(t->secret[1], rnd, 32);
  t->rotated = now;
}

void dht_token_rotate(dht_token *t, const uint8_t rnd[static 32], dht_ts now) {
  memcpy(t->secret[1], t->secret[0], 32);
  memcpy(t->secret[0], rnd, 32);
  t->rotated = now;
}

static void mac(const uint8_t secret[32], const dht_addr *a, const uint8_t pk[static DHT_PK_LEN],
                uint8_t out[static DHT_TOKEN_LEN]) {
  uint8_t in[DHT_WADDR6_LEN + DHT_PK_LEN];
  int n = dht_addr_to_wire(a, in);
  if (n < 0)
    n = 0;
  memcpy(in + n, pk, DHT_PK_LEN);
  /* SipHash-2-4 with 128-bit output: a PRF is all a token needs, and at
   * ~50 ns it costs a twentieth of a keyed BLAKE2b on the request path. */
  crypto_shorthash_siphashx24(out, in, (size_t)n + DHT_PK_LEN, secret);
}

void dht_token_make(const dht_token *t, const dht_addr *a, const uint8_t pk[static DHT_PK_LEN],
                    uint8_t out[static DHT_TOKEN_LEN]) {
  mac(t->secret[0], a, pk, out);
}

bool dht_token_check(const dht_token *t, const dht_addr *a, const uint8_t pk[static DHT_PK_LEN],
                     const uint8_t tok[static DHT_TOKEN_LEN]) {
  uint8_t want[DHT_TOKEN_LEN];
  for (int i = 0; i < 2; i++) {
    mac(t->secret[i], a, pk, want);
    if (sodium_memcmp(want, tok, DHT_TOKEN_LEN) == 0)
      return true;
  }
  return false;
}

void dht_token_free(dht_token *t) {
  sodium_memzero(t, sizeof *t);
}

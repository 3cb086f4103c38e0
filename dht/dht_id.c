/*
 * dht_id.c - node IDs: 256-bit strings under the XOR metric.
 *
 * IDs are BLAKE2b-256 of an Ed25519 public key, so they are uniformly spread
 * and bound to the key.  All comparisons are big-endian bitwise: bit 0 is the
 * most significant bit of byte 0.
 */
#include <sodium.h>

#include "dht_int.h"

void dht_id_from_pk(uint8_t id[static DHT_ID_LEN], const uint8_t pk[static DHT_PK_LEN]) {
  crypto_generichash(id, DHT_ID_LEN, pk, DHT_PK_LEN, NULL, 0);
}

int dht_id_cpl(const uint8_t a[static DHT_ID_LEN], const uint8_t b[static DHT_ID_LEN]) {
  for (int i = 0; i < DHT_ID_LEN; i++) {
    uint8_t x = a[i] ^ b[i];
    if (x)
      return i * 8 + __builtin_clz((unsigned)x) - 24;
  }
  return DHT_ID_LEN * 8;
}

int dht_id_cmp_dist(const uint8_t a[static DHT_ID_LEN], const uint8_t b[static DHT_ID_LEN],
                    const uint8_t target[static DHT_ID_LEN]) {
  for (int i = 0; i < DHT_ID_LEN; i++) {
    uint8_t da = a[i] ^ target[i], db = b[i] ^ target[i];
    if (da != db)
      return da < db ? -1 : 1;
  }
  return 0;
}

void dht_id_xor(uint8_t out[static DHT_ID_LEN], const uint8_t a[static DHT_ID_LEN],
                const uint8_t b[static DHT_ID_LEN]) {
  for (int i = 0; i < DHT_ID_LEN; i++)
    out[i] = a[i] ^ b[i];
}

void dht_id_in_bucket(uint8_t out[static DHT_ID_LEN], const uint8_t self[static DHT_ID_LEN],
                      int cpl, const uint8_t rnd[static DHT_ID_LEN]) {
  if (cpl < 0)
    cpl = 0;
  if (cpl > 255)
    cpl = 255;
  int byte = cpl / 8, bit = cpl % 8;
  uint8_t mask = (uint8_t)(0x80u >> bit);   /* the bit that differs */
  uint8_t keep = (uint8_t)(0xff00u >> bit); /* bits above it, from self */
  for (int i = 0; i < DHT_ID_LEN; i++)
    out[i] = i < byte ? self[i] : rnd[i];
  out[byte] =
      (uint8_t)((self[byte] & keep) | ((~self[byte]) & mask) | (rnd[byte] & ~(keep | mask)));
}

const char *dht_id_short(const uint8_t id[static DHT_ID_LEN], char buf[static 9]) {
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 4; i++) {
    buf[2 * i] = hex[id[i] >> 4];
    buf[2 * i + 1] = hex[id[i] & 15];
  }
  buf[8] = 0;
  return buf;
}

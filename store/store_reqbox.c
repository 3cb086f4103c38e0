/*
 * store_reqbox.c - friend requests: a request box per identity and epoch,
 * public (anyone who knows the key can deposit), guarded by proof of work
 * instead of a mailbox signature.
 *
 * A request is the sender's key and note sealed to the recipient's identity
 * (crypto_box_seal) and padded so the sealed box is exactly the largest
 * item size; the deposit's "signature" starts with a nonce that gives
 * BLAKE2b-256("roost-pow-v1" || box || item || nonce) POW_BITS leading zero
 * bits.  Storage nodes keep at most REQBOX_ITEMS per box; the owner fetches
 * and deletes with its identity key (store_serve.c, check_auth).
 *
 * Invariants: a request box is accepted for the epoch of now and the ones
 * either side (clock skew around midnight); an opened request is reported
 * only when its note fits STORE_NOTE_MAX.
 */
#include <string.h>

#include <sodium.h>

#include "store_int.h"

/* Request box of pk for epoch: BLAKE2b-256("roost-reqbox-v1" || pk || epoch BE). */
void store_reqbox_id(uint8_t out[STORE_MBOX_LEN], const uint8_t pk[DHT_PK_LEN], uint32_t epoch) {
  crypto_generichash_state st;
  uint8_t e4[4] = {(uint8_t)(epoch >> 24), (uint8_t)(epoch >> 16), (uint8_t)(epoch >> 8),
                   (uint8_t)epoch};
  crypto_generichash_init(&st, NULL, 0, STORE_MBOX_LEN);
  crypto_generichash_update(&st, (const uint8_t *)"roost-reqbox-v1", 15);
  crypto_generichash_update(&st, pk, DHT_PK_LEN);
  crypto_generichash_update(&st, e4, 4);
  crypto_generichash_final(&st, out, STORE_MBOX_LEN);
}

#define POW_BITS 16 /* store_reqbox_pow_ok tests two zero bytes */
/* A request's plaintext (sender key, length, note, zeros) is padded so that
 * the sealed box is exactly the largest item size. */
#define REQ_PLAIN (STORE_ITEM_MAX - crypto_box_SEALBYTES)

/* Proof of work of a friend request: the first 8 bytes of its "signature"
 * are a nonce such that BLAKE2b-256("roost-pow-v1" || mbox || item || nonce)
 * starts with POW_BITS zero bits. */
bool store_reqbox_pow_ok(const uint8_t mbox[STORE_MBOX_LEN], const uint8_t *item, size_t len,
                         const uint8_t nonce[8]) {
  uint8_t h[32];
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, sizeof h);
  crypto_generichash_update(&st, (const uint8_t *)"roost-pow-v1", 12);
  crypto_generichash_update(&st, mbox, STORE_MBOX_LEN);
  crypto_generichash_update(&st, item, len);
  crypto_generichash_update(&st, nonce, 8);
  crypto_generichash_final(&st, h, sizeof h);
  return h[0] == 0 && h[1] == 0; /* POW_BITS = 16 */
}

/* Is mbox the request box of pk for an epoch near now? */
bool store_reqbox_is_current(store_svc *s, const uint8_t mbox[STORE_MBOX_LEN],
                             const uint8_t pk[DHT_PK_LEN], dht_ts now) {
  uint32_t e = store_svc_epoch(s, now);
  for (int d = -1; d <= 1; d++) {
    uint8_t id[STORE_MBOX_LEN];
    store_reqbox_id(id, pk, e + (uint32_t)d);
    if (!memcmp(id, mbox, STORE_MBOX_LEN))
      return true;
  }
  return false;
}

/* The request branch of sealing an outgoing message (store_outbox.c): the
 * mailbox "keys" of a request box hold its ID and the recipient's key, no
 * secret, and the proof of work stands in for the deposit signature. */
int store_reqbox_seal(store_svc *s, sendq *o, uint32_t ep) {
  uint8_t xpk[32];
  if (crypto_sign_ed25519_pk_to_curve25519(xpk, o->friend_pk))
    return DHT_ERR_CRYPTO;
  uint8_t plain[REQ_PLAIN];
  size_t padded = REQ_PLAIN;
  memset(plain, 0, sizeof plain);
  memcpy(plain, s->self.pk, DHT_PK_LEN);
  plain[32] = (uint8_t)(o->msg.len >> 8);
  plain[33] = (uint8_t)o->msg.len;
  memcpy(plain + 34, o->msg.body, o->msg.len);
  /* crypto_box_seal draws its own ephemeral key from libsodium's RNG,
   * which roost-sim makes deterministic; the item is padded to one size */
  if (crypto_box_seal(o->item, plain, padded, xpk))
    return DHT_ERR_CRYPTO;
  o->item_len = (uint16_t)(padded + crypto_box_SEALBYTES);
  memset(&o->k, 0, sizeof o->k);
  store_reqbox_id(o->k.id, o->friend_pk, ep);
  memcpy(o->k.pk, o->friend_pk, DHT_PK_LEN);
  o->k.epoch = ep;
  uint64_t ctr = 0;
  uint8_t nonce8[8];
  for (;; ctr++) {
    for (int i = 0; i < 8; i++)
      nonce8[i] = (uint8_t)(ctr >> (8 * i));
    if (store_reqbox_pow_ok(o->k.id, o->item, o->item_len, nonce8))
      break;
  }
  memset(o->sig, 0, sizeof o->sig);
  memcpy(o->sig, nonce8, 8);
  return 0;
}

void store_reqbox_open(store_svc *s, const uint8_t *item, size_t len) {
  uint8_t xpk[32], xsk[32], plain[REQ_PLAIN];
  if (len != STORE_ITEM_MAX)
    return;
  if (crypto_sign_ed25519_pk_to_curve25519(xpk, s->self.pk) ||
      crypto_sign_ed25519_sk_to_curve25519(xsk, s->self.sk))
    return;
  int rc = crypto_box_seal_open(plain, item, len, xpk, xsk);
  sodium_memzero(xsk, sizeof xsk);
  if (rc)
    return;
  size_t n = ((size_t)plain[32] << 8) | plain[33];
  if (n > STORE_NOTE_MAX || n + 34 > REQ_PLAIN)
    return;
  store_event *ev = store_svc_event(s, STORE_EV_REQUEST, 0, 0);
  if (!ev)
    return;
  memcpy(ev->u.request.from_pk, plain, DHT_PK_LEN);
  ev->u.request.len = (uint16_t)n;
  memcpy(ev->u.request.note, plain + 34, n);
}

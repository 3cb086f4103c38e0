/*
 * store_crypto.c - the mailbox cryptography: pair secrets, per-pair
 * per-epoch mailbox keys, sealed items, and the signatures of deposits,
 * storage receipts and FETCH/DELETE authorisations; plus store_strerror.
 * Pure functions: no I/O, no clock, no randomness (the caller draws nonces),
 * no state.  Every secret on the stack is wiped before return.
 *
 * Derivations (BLAKE2b = crypto_generichash; labels are ASCII without a NUL;
 * every field after a label has a fixed length, so no two inputs collide):
 *
 *   pair    = BLAKE2b-256(key = none,
 *                         "roost-pair-v1" || X25519(my_x25519_sk, peer_x25519_pk)
 *                         || min(pk_a, pk_b) || max(pk_a, pk_b))
 *             (Ed25519 keys converted to X25519; min/max in memcmp order.
 *             Both Ed25519 keys are bound because the conversion drops the
 *             sign bit: two encodings must not share a pair.)
 *   seed    = BLAKE2b-256(key = pair, "roost-mbox-v1" || from_pk || to_pk || epoch)
 *   pk, sk  = crypto_sign_seed_keypair(seed)         (the mailbox key pair)
 *   payload = BLAKE2b-256(key = pair, "roost-mkey-v1" || from_pk || to_pk || epoch)
 *   id      = BLAKE2b-256(key = none, pk)            (= the DHT ID of pk)
 *   item ID = BLAKE2b-128(key = none, item bytes)
 *
 * Integers are big-endian: epoch a u32 here, len a u16 in the plaintext,
 * and every integer of a signed message a u64.
 *
 * Item = nonce(24) || XChaCha20-Poly1305(payload, nonce, AD = mailbox id,
 *   msg_id(16) || sent_unix_ms(8, the int64 as u64) || kind(1) || len(2)
 *   || body(len) || zeros up to the smallest of STORE_PAD_SIZES that fits).
 * store_open accepts any of the padded sizes (not only the smallest that
 * fits): the AEAD already proves the sender holds the pair secret.
 *
 * Signed messages (Ed25519, crypto_sign_detached over the whole message,
 * built in a bounded stack buffer; never Ed25519ph):
 *
 *   deposit  "roost-deposit-v1" || mbox_id || deposited_s || item
 *            (mailbox key; at most 16 + 32 + 8 + STORE_ITEM_MAX bytes)
 *   receipt  "roost-receipt-v1" || mbox_id || item hash       (node identity)
 *   fetch    "roost-fetch-v1"  || mbox_id || storage_id || requester_pk || time_s
 *   delete   "roost-delete-v1" || mbox_id || storage_id || requester_pk || time_s
 *            || hashes (1..STORE_DEL_MAX of 16 bytes)          (mailbox key)
 *
 * No label is a prefix of another, so a signature for one kind of message
 * never verifies as another.  A sign call with arguments no verifier accepts
 * (an item over STORE_ITEM_MAX, a bad op or hash count) writes an all-zero
 * signature, which never verifies (its R is a small-order point).
 */
#include <string.h>

#include <sodium.h>

#include "store.h"

#define LABEL_PAIR "roost-pair-v1"
#define LABEL_MBOX "roost-mbox-v1"
#define LABEL_MKEY "roost-mkey-v1"
#define LABEL_DEPOSIT "roost-deposit-v1"
#define LABEL_RECEIPT "roost-receipt-v1"
#define LABEL_FETCH "roost-fetch-v1"
#define LABEL_DELETE "roost-delete-v1"
#define LABEL_LEN(l) (sizeof(l) - 1)

#define DEPOSIT_MSG_MAX (LABEL_LEN(LABEL_DEPOSIT) + STORE_MBOX_LEN + 8 + STORE_ITEM_MAX)
#define RECEIPT_MSG_LEN (LABEL_LEN(LABEL_RECEIPT) + STORE_MBOX_LEN + STORE_HASH_LEN)
#define AUTH_MSG_MAX                                                                               \
  (LABEL_LEN(LABEL_DELETE) + STORE_MBOX_LEN + DHT_ID_LEN + DHT_PK_LEN + 8 +                        \
   STORE_DEL_MAX * STORE_HASH_LEN)

static const uint16_t pad_sizes[STORE_NPADS] = STORE_PAD_SIZES;

_Static_assert(STORE_TEXT_MAX + STORE_PLAIN_HDR == STORE_PLAIN_MAX, "header + text = max");
_Static_assert(STORE_NONCE_LEN == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce size");
_Static_assert(STORE_AEAD_LEN == crypto_aead_xchacha20poly1305_ietf_ABYTES, "tag size");
_Static_assert(STORE_KEY_LEN == crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "key size");
_Static_assert(DHT_SK_LEN == crypto_sign_SECRETKEYBYTES, "Ed25519 secret key size");
_Static_assert(DHT_SIG_LEN == crypto_sign_BYTES, "Ed25519 signature size");

const char *store_strerror(int err) {
  switch (err) {
  case STORE_ERR_MBOX_FULL:
    return "mailbox quota reached";
  case STORE_ERR_NODE_FULL:
    return "storage node full";
  case STORE_ERR_BADSIG:
    return "bad signature or mailbox key";
  case STORE_ERR_TIME:
    return "timestamp outside the accepted window";
  case STORE_ERR_TOOBIG:
    return "message too long";
  case STORE_ERR_DB:
    return "database error";
  case STORE_ERR_DB_NEWER:
    return "database written by a newer roost";
  case STORE_ERR_DB_CORRUPT:
    return "database corrupt";
  default:
    return dht_strerror(err);
  }
}

static void put_u16be(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static uint16_t get_u16be(const uint8_t *p) {
  return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static void put_u32be(uint8_t *p, uint32_t v) {
  for (int i = 3; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

static void put_u64be(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

static uint64_t get_u64be(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

int store_pair_secret(uint8_t out[static STORE_KEY_LEN], const dht_identity *me,
                      const uint8_t peer_pk[static DHT_PK_LEN]) {
  uint8_t xsk[crypto_scalarmult_SCALARBYTES], xpk[crypto_scalarmult_BYTES];
  uint8_t shared[crypto_scalarmult_BYTES];
  int rv = DHT_ERR_CRYPTO;
  /* pk_to_curve25519 refuses non-points and small-order points, and
   * crypto_scalarmult an all-zero result; the explicit all-zero check is
   * defensive (it does not rely on the libsodium version). */
  if (crypto_sign_ed25519_pk_to_curve25519(xpk, peer_pk) != 0 ||
      crypto_sign_ed25519_sk_to_curve25519(xsk, me->sk) != 0 ||
      crypto_scalarmult(shared, xsk, xpk) != 0 || sodium_is_zero(shared, sizeof shared))
    goto fail;
  const uint8_t *lo = memcmp(me->pk, peer_pk, DHT_PK_LEN) <= 0 ? me->pk : peer_pk;
  const uint8_t *hi = lo == peer_pk ? me->pk : peer_pk;
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, STORE_KEY_LEN);
  crypto_generichash_update(&st, (const uint8_t *)LABEL_PAIR, LABEL_LEN(LABEL_PAIR));
  crypto_generichash_update(&st, shared, sizeof shared);
  crypto_generichash_update(&st, lo, DHT_PK_LEN);
  crypto_generichash_update(&st, hi, DHT_PK_LEN);
  crypto_generichash_final(&st, out, STORE_KEY_LEN);
  sodium_memzero(&st, sizeof st);
  rv = 0;
fail:
  sodium_memzero(shared, sizeof shared);
  sodium_memzero(xsk, sizeof xsk);
  return rv;
}

/* BLAKE2b-256(key = pair, label || from_pk || to_pk || epoch u32 BE). */
static void derive(uint8_t out[static 32], const uint8_t pair[static STORE_KEY_LEN],
                   const char *label, size_t label_len, const uint8_t from_pk[static DHT_PK_LEN],
                   const uint8_t to_pk[static DHT_PK_LEN], uint32_t epoch) {
  uint8_t e[4];
  put_u32be(e, epoch);
  crypto_generichash_state st;
  crypto_generichash_init(&st, pair, STORE_KEY_LEN, 32);
  crypto_generichash_update(&st, (const uint8_t *)label, label_len);
  crypto_generichash_update(&st, from_pk, DHT_PK_LEN);
  crypto_generichash_update(&st, to_pk, DHT_PK_LEN);
  crypto_generichash_update(&st, e, sizeof e);
  crypto_generichash_final(&st, out, 32);
  sodium_memzero(&st, sizeof st);
}

void store_mbox_derive(store_mbox_keys *out, const uint8_t pair[static STORE_KEY_LEN],
                       const uint8_t from_pk[static DHT_PK_LEN],
                       const uint8_t to_pk[static DHT_PK_LEN], uint32_t epoch) {
  uint8_t seed[crypto_sign_SEEDBYTES];
  derive(seed, pair, LABEL_MBOX, LABEL_LEN(LABEL_MBOX), from_pk, to_pk, epoch);
  crypto_sign_seed_keypair(out->pk, out->sk, seed);
  sodium_memzero(seed, sizeof seed);
  derive(out->payload_key, pair, LABEL_MKEY, LABEL_LEN(LABEL_MKEY), from_pk, to_pk, epoch);
  crypto_generichash(out->id, STORE_MBOX_LEN, out->pk, DHT_PK_LEN, NULL, 0);
  out->epoch = epoch;
}

/* Negative times give epoch 0 and quotients past UINT32_MAX saturate (only a
 * tiny epoch_ms can get there); epoch_ms <= 0 is a caller's bug and gives 0. */
uint32_t store_epoch_of(int64_t unix_ms, int64_t epoch_ms) {
  if (epoch_ms <= 0 || unix_ms < 0)
    return 0;
  int64_t e = unix_ms / epoch_ms;
  return e > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)e;
}

/* The smallest padded plaintext size holding n bytes, or 0. */
static size_t pad_for(size_t n) {
  for (int i = 0; i < STORE_NPADS; i++)
    if (n <= pad_sizes[i])
      return pad_sizes[i];
  return 0;
}

dht_ssize store_seal(uint8_t *item, const store_mbox_keys *k, const store_msg *m,
                     const uint8_t nonce[static STORE_NONCE_LEN]) {
  if (m->len > STORE_TEXT_MAX)
    return STORE_ERR_TOOBIG;
  size_t plen = pad_for(STORE_PLAIN_HDR + (size_t)m->len);
  uint8_t plain[STORE_PLAIN_MAX];
  memset(plain, 0, plen);
  memcpy(plain, m->id, STORE_MSGID_LEN);
  put_u64be(plain + 16, (uint64_t)m->sent_unix_ms);
  plain[24] = m->kind;
  put_u16be(plain + 25, m->len);
  memcpy(plain + STORE_PLAIN_HDR, m->body, m->len);
  memcpy(item, nonce, STORE_NONCE_LEN);
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(item + STORE_NONCE_LEN, &clen, plain, plen, k->id,
                                             STORE_MBOX_LEN, NULL, nonce, k->payload_key);
  sodium_memzero(plain, plen);
  return (dht_ssize)(STORE_NONCE_LEN + clen);
}

int store_open(store_msg *m, const store_mbox_keys *k, const uint8_t *item, size_t len) {
  size_t plen = 0;
  for (int i = 0; i < STORE_NPADS; i++)
    if (len == (size_t)STORE_NONCE_LEN + pad_sizes[i] + STORE_AEAD_LEN)
      plen = pad_sizes[i];
  if (plen == 0)
    return DHT_ERR_PROTO;
  uint8_t plain[STORE_PLAIN_MAX];
  unsigned long long n = 0;
  int rv = DHT_ERR_CRYPTO;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &n, NULL, item + STORE_NONCE_LEN,
                                                 len - STORE_NONCE_LEN, k->id, STORE_MBOX_LEN, item,
                                                 k->payload_key) != 0 ||
      n != plen)
    goto fail;
  rv = DHT_ERR_PROTO;
  uint8_t kind = plain[24];
  size_t blen = get_u16be(plain + 25);
  if (kind < STORE_KIND_TEXT || kind > STORE_KIND_READ || STORE_PLAIN_HDR + blen > plen)
    goto fail;
  /* authenticated already: the padding check need not be constant-time */
  for (size_t i = STORE_PLAIN_HDR + blen; i < plen; i++)
    if (plain[i] != 0)
      goto fail;
  memcpy(m->id, plain, STORE_MSGID_LEN);
  m->sent_unix_ms = (int64_t)get_u64be(plain + 16);
  m->kind = kind;
  m->len = (uint16_t)blen;
  memcpy(m->body, plain + STORE_PLAIN_HDR, blen);
  rv = 0;
fail:
  sodium_memzero(plain, sizeof plain);
  return rv;
}

void store_item_hash(uint8_t out[static STORE_HASH_LEN], const uint8_t *item, size_t len) {
  crypto_generichash(out, STORE_HASH_LEN, item, len, NULL, 0);
}

bool store_mbox_id_matches(const uint8_t mbox_id[static STORE_MBOX_LEN],
                           const uint8_t mbox_pk[static DHT_PK_LEN]) {
  uint8_t id[STORE_MBOX_LEN];
  crypto_generichash(id, sizeof id, mbox_pk, DHT_PK_LEN, NULL, 0);
  return memcmp(id, mbox_id, STORE_MBOX_LEN) == 0; /* public data */
}

/* The deposit message into buf (DEPOSIT_MSG_MAX bytes); its length, or 0
 * when the item is too long to be one. */
static size_t deposit_msg(uint8_t *buf, const uint8_t mbox_id[static STORE_MBOX_LEN],
                          uint64_t deposited_s, const uint8_t *item, size_t len) {
  if (len > STORE_ITEM_MAX)
    return 0;
  uint8_t *p = buf;
  memcpy(p, LABEL_DEPOSIT, LABEL_LEN(LABEL_DEPOSIT));
  p += LABEL_LEN(LABEL_DEPOSIT);
  memcpy(p, mbox_id, STORE_MBOX_LEN);
  p += STORE_MBOX_LEN;
  put_u64be(p, deposited_s);
  p += 8;
  if (len)
    memcpy(p, item, len);
  return (size_t)(p - buf) + len;
}

void store_deposit_sign(uint8_t sig[static DHT_SIG_LEN], const store_mbox_keys *k,
                        uint64_t deposited_s, const uint8_t *item, size_t len) {
  uint8_t msg[DEPOSIT_MSG_MAX];
  size_t n = deposit_msg(msg, k->id, deposited_s, item, len);
  if (n == 0) {
    memset(sig, 0, DHT_SIG_LEN);
    return;
  }
  crypto_sign_detached(sig, NULL, msg, n, k->sk);
}

bool store_deposit_verify(const uint8_t sig[static DHT_SIG_LEN],
                          const uint8_t mbox_id[static STORE_MBOX_LEN],
                          const uint8_t mbox_pk[static DHT_PK_LEN], uint64_t deposited_s,
                          const uint8_t *item, size_t len) {
  uint8_t msg[DEPOSIT_MSG_MAX];
  if (!store_mbox_id_matches(mbox_id, mbox_pk))
    return false;
  size_t n = deposit_msg(msg, mbox_id, deposited_s, item, len);
  return n > 0 && crypto_sign_verify_detached(sig, msg, n, mbox_pk) == 0;
}

static void receipt_msg(uint8_t buf[static RECEIPT_MSG_LEN],
                        const uint8_t mbox_id[static STORE_MBOX_LEN],
                        const uint8_t hash[static STORE_HASH_LEN]) {
  memcpy(buf, LABEL_RECEIPT, LABEL_LEN(LABEL_RECEIPT));
  memcpy(buf + LABEL_LEN(LABEL_RECEIPT), mbox_id, STORE_MBOX_LEN);
  memcpy(buf + LABEL_LEN(LABEL_RECEIPT) + STORE_MBOX_LEN, hash, STORE_HASH_LEN);
}

void store_receipt_sign(uint8_t sig[static DHT_SIG_LEN], const dht_identity *node,
                        const uint8_t mbox_id[static STORE_MBOX_LEN],
                        const uint8_t hash[static STORE_HASH_LEN]) {
  uint8_t msg[RECEIPT_MSG_LEN];
  receipt_msg(msg, mbox_id, hash);
  crypto_sign_detached(sig, NULL, msg, sizeof msg, node->sk);
}

bool store_receipt_verify(const uint8_t sig[static DHT_SIG_LEN],
                          const uint8_t node_pk[static DHT_PK_LEN],
                          const uint8_t mbox_id[static STORE_MBOX_LEN],
                          const uint8_t hash[static STORE_HASH_LEN]) {
  uint8_t msg[RECEIPT_MSG_LEN];
  receipt_msg(msg, mbox_id, hash);
  return crypto_sign_verify_detached(sig, msg, sizeof msg, node_pk) == 0;
}

/* The FETCH or DELETE message into buf (AUTH_MSG_MAX bytes); its length, or
 * 0 for a bad op or hash count (FETCH: none; DELETE: 1..STORE_DEL_MAX). */
static size_t auth_msg(uint8_t *buf, int op, const uint8_t mbox_id[static STORE_MBOX_LEN],
                       const uint8_t storage_id[static DHT_ID_LEN],
                       const uint8_t requester_pk[static DHT_PK_LEN], uint64_t time_s,
                       const uint8_t *hashes, size_t nhashes) {
  uint8_t *p = buf;
  if (op == STORE_AUTH_FETCH && nhashes == 0) {
    memcpy(p, LABEL_FETCH, LABEL_LEN(LABEL_FETCH));
    p += LABEL_LEN(LABEL_FETCH);
  } else if (op == STORE_AUTH_DELETE && nhashes >= 1 && nhashes <= STORE_DEL_MAX && hashes) {
    memcpy(p, LABEL_DELETE, LABEL_LEN(LABEL_DELETE));
    p += LABEL_LEN(LABEL_DELETE);
  } else {
    return 0;
  }
  memcpy(p, mbox_id, STORE_MBOX_LEN);
  p += STORE_MBOX_LEN;
  memcpy(p, storage_id, DHT_ID_LEN);
  p += DHT_ID_LEN;
  memcpy(p, requester_pk, DHT_PK_LEN);
  p += DHT_PK_LEN;
  put_u64be(p, time_s);
  p += 8;
  if (nhashes) {
    memcpy(p, hashes, nhashes * STORE_HASH_LEN);
    p += nhashes * STORE_HASH_LEN;
  }
  return (size_t)(p - buf);
}

void store_auth_sign(uint8_t sig[static DHT_SIG_LEN], int op, const store_mbox_keys *k,
                     const uint8_t storage_id[static DHT_ID_LEN],
                     const uint8_t requester_pk[static DHT_PK_LEN], uint64_t time_s,
                     const uint8_t *hashes, size_t nhashes) {
  uint8_t msg[AUTH_MSG_MAX];
  size_t n = auth_msg(msg, op, k->id, storage_id, requester_pk, time_s, hashes, nhashes);
  if (n == 0) {
    memset(sig, 0, DHT_SIG_LEN);
    return;
  }
  crypto_sign_detached(sig, NULL, msg, n, k->sk);
}

bool store_auth_verify(const uint8_t sig[static DHT_SIG_LEN], int op,
                       const uint8_t mbox_id[static STORE_MBOX_LEN],
                       const uint8_t mbox_pk[static DHT_PK_LEN],
                       const uint8_t storage_id[static DHT_ID_LEN],
                       const uint8_t requester_pk[static DHT_PK_LEN], uint64_t time_s,
                       const uint8_t *hashes, size_t nhashes) {
  uint8_t msg[AUTH_MSG_MAX];
  if (!store_mbox_id_matches(mbox_id, mbox_pk))
    return false;
  size_t n = auth_msg(msg, op, mbox_id, storage_id, requester_pk, time_s, hashes, nhashes);
  return n > 0 && crypto_sign_verify_detached(sig, msg, n, mbox_pk) == 0;
}

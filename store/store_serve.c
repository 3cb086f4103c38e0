/*
 * store_serve.c - the storage node: what a node does with the requests of
 * others.  It owns deposits (checks, quotas, capacity, TTL), storage
 * receipts and the receipts waiting for durability (store_svc_durable),
 * FETCH and the GETITEM grants it gives, DELETE and the tombstones that
 * carry its signed proof (TOMB, from reconciliation), and the friends this
 * node hosts (store_host_set, REGISTER).
 *
 * Invariants: nothing is evicted to make room (a full mailbox or node
 * refuses); a receipt or a DELETE's ACK leaves only once the backend
 * reports the write durable; a tombstone replaces only a record we hold and
 * keeps its expiry, so it lives exactly as long as the item would have; a
 * FETCH or DELETE is taken only when signed for this node, by the sender of
 * the datagram, within the time window; GETITEM is served only within
 * GRANT_MS of an accepted FETCH by the same requester for the same mailbox.
 */
#include <string.h>

#include <sodium.h>

#include "store_int.h"

/* ---- hosted friends ------------------------------------------------ */

static hosted *hosted_find(store_svc *s, const uint8_t pk[DHT_PK_LEN]) {
  for (int i = 0; i < s->nhosts; i++)
    if (!memcmp(s->hosts[i].pk, pk, DHT_PK_LEN))
      return &s->hosts[i];
  return NULL;
}

/* The hosted friend that registered mailbox mbox, or NULL. */
static hosted *hosted_for_mbox(store_svc *s, const uint8_t mbox[STORE_MBOX_LEN]) {
  for (int i = 0; i < s->nhosts; i++)
    for (int j = 0; j < s->hosts[i].nids; j++)
      if (!memcmp(s->hosts[i].ids[j], mbox, STORE_MBOX_LEN))
        return &s->hosts[i];
  return NULL;
}

/* Bytes used by the mailboxes of hosted friend h. */
static int64_t hosted_usage(store_svc *s, const hosted *h) {
  int64_t total = 0;
  for (int j = 0; j < h->nids; j++) {
    store_usage u;
    if (s->be.usage(s->be.ctx, h->ids[j], &u) == 0)
      total += u.bytes;
  }
  return total;
}

int store_host_set(store_svc *s, const uint8_t pk[static DHT_PK_LEN], int64_t quota_bytes) {
  if (quota_bytes < 0)
    return DHT_ERR_INVAL;
  for (int i = 0; i < s->nhosts; i++)
    if (!memcmp(s->hosts[i].pk, pk, DHT_PK_LEN)) {
      if (quota_bytes == 0) {
        store_svc_free(s, s->hosts[i].ids);
        memmove(&s->hosts[i], &s->hosts[i + 1], (size_t)(s->nhosts - i - 1) * sizeof *s->hosts);
        s->nhosts--;
      } else {
        s->hosts[i].quota = quota_bytes;
      }
      return 0;
    }
  if (quota_bytes == 0)
    return DHT_ERR_NOTFOUND;
  int rc = store_svc_grow(s, (void **)&s->hosts, s->nhosts, &s->caphosts, sizeof *s->hosts,
                          s->set.max_hosted);
  if (rc)
    return rc;
  hosted *h = &s->hosts[s->nhosts++];
  memset(h, 0, sizeof *h);
  memcpy(h->pk, pk, DHT_PK_LEN);
  h->quota = quota_bytes;
  return 0;
}

void store_serve_register(store_svc *s, const dht_peer *from, const store_wire_msg *m) {
  const uint8_t *ids = m->u.reg.ids, *sig = m->u.reg.sig;
  size_t in = m->u.reg.nids * STORE_MBOX_LEN;
  uint32_t txid = m->txid;
  hosted *h = hosted_find(s, from->pk);
  uint8_t msg[17 + 32 * 32];
  memcpy(msg, "roost-register-v1", 17);
  memcpy(msg + 17, ids, in);
  if (!h) {
    store_svc_reply_status(s, from, STORE_T_ACK, txid, STORE_W_REFUSED);
    return;
  }
  if (crypto_sign_verify_detached(sig, msg, 17 + in, from->pk) != 0) {
    store_svc_reply_status(s, from, STORE_T_ACK, txid, STORE_W_BADSIG);
    return;
  }
  for (size_t i = 0; i < in / 32; i++) {
    bool known = false;
    for (int j = 0; j < h->nids && !known; j++)
      known = !memcmp(h->ids[j], ids + i * 32, 32);
    if (known)
      continue;
    if (!h->ids) {
      h->ids = store_svc_realloc(s, NULL, HOST_MBOX_MAX * sizeof *h->ids);
      if (!h->ids)
        break;
    }
    if (h->nids == HOST_MBOX_MAX) { /* oldest registration out */
      memmove(h->ids, h->ids + 1, (HOST_MBOX_MAX - 1) * sizeof *h->ids);
      h->nids--;
    }
    memcpy(h->ids[h->nids++], ids + i * 32, 32);
  }
  store_svc_reply_status(s, from, STORE_T_ACK, txid, STORE_W_OK);
}

/* ---- deposits and receipts ----------------------------------------- */

/* Remembers a receipt (or a DELETE's ACK: type) to send once the backend
 * reports write seq durable (store_svc_durable). */
static void queue_receipt(store_svc *s, int64_t seq, const dht_peer *to, uint32_t txid,
                          const uint8_t mbox[STORE_MBOX_LEN], const uint8_t hash[STORE_HASH_LEN],
                          uint8_t type) {
  if (store_svc_grow(s, (void **)&s->waits, s->nwaits, &s->capwaits, sizeof *s->waits,
                     s->set.max_pending_rpcs))
    return; /* no receipt: the sender retries, and finds the item stored */
  wait_rcpt *w = &s->waits[s->nwaits++];
  w->seq = seq;
  w->to = *to;
  w->txid = txid;
  memcpy(w->mbox, mbox, STORE_MBOX_LEN);
  memcpy(w->hash, hash, STORE_HASH_LEN);
  w->type = type;
}

static void send_receipt(store_svc *s, const dht_peer *to, uint32_t txid,
                         const uint8_t mbox[STORE_MBOX_LEN], const uint8_t hash[STORE_HASH_LEN]) {
  uint8_t buf[160], sig[DHT_SIG_LEN];
  store_receipt_sign(sig, &s->self, mbox, hash);
  store_wire_msg m = {.type = STORE_T_RECEIPT, .txid = txid};
  m.u.receipt.status = STORE_W_OK;
  m.u.receipt.hash = hash;
  m.u.receipt.sig = sig;
  dht_ssize n = store_wire_encode(buf, sizeof buf, &m);
  if (n > 0 && store_svc_send(s, to, buf, (size_t)n) == 0)
    s->st.receipts_out++;
}

/* Checks and stores one deposit.  Returns STORE_W_OK with *seq set (0 when the
 * record was already there), or a W_* refusal. */
static int accept_deposit(store_svc *s, uint8_t flags, const uint8_t mbox[STORE_MBOX_LEN],
                          const uint8_t mbox_pk[DHT_PK_LEN], uint64_t dep_s, const uint8_t *item,
                          size_t len, const uint8_t sig[DHT_SIG_LEN], bool request, dht_ts now,
                          uint8_t hash[STORE_HASH_LEN], int64_t *seq) {
  *seq = 0;
  if (len < STORE_NONCE_LEN + 128 + STORE_AEAD_LEN || len > STORE_ITEM_MAX)
    return STORE_W_TOOBIG;
  int64_t t = store_svc_unix_s(s, now);
  hosted *h = (flags & STORE_F_HOSTED) ? hosted_for_mbox(s, mbox) : NULL;
  int64_t ttl = h ? s->set.ttl_hosted_s : s->set.ttl_dht_s;
  if ((int64_t)dep_s > t + s->set.time_window_s || (int64_t)dep_s + ttl < t)
    return STORE_W_TIME;
  if (request) {
    if (!store_reqbox_is_current(s, mbox, mbox_pk, now) ||
        !store_reqbox_pow_ok(mbox, item, len, sig))
      return STORE_W_BADSIG;
  } else if (!store_deposit_verify(sig, mbox, mbox_pk, dep_s, item, len)) {
    return STORE_W_BADSIG;
  }
  store_item_hash(hash, item, len);
  if (s->be.get(s->be.ctx, mbox, hash, &s->rec2) == 0)
    return STORE_W_OK; /* already here (an item, or a tombstone that wins) */
  store_usage mu, all;
  if (s->be.usage(s->be.ctx, mbox, &mu) || s->be.usage(s->be.ctx, NULL, &all))
    return STORE_W_REFUSED;
  if (h) {
    if (hosted_usage(s, h) + (int64_t)len > h->quota)
      return STORE_W_MBOX_FULL;
  } else {
    int64_t qi = request ? REQBOX_ITEMS : s->set.mbox_quota_items;
    if (mu.items + 1 > qi || mu.bytes + (int64_t)len > s->set.mbox_quota_bytes)
      return STORE_W_MBOX_FULL;
  }
  if (all.bytes + (int64_t)len > s->set.capacity_bytes)
    return STORE_W_NODE_FULL;
  store_rec *r = &s->rec;
  memset(r, 0, offsetof(store_rec, data));
  memcpy(r->mbox, mbox, STORE_MBOX_LEN);
  memcpy(r->hash, hash, STORE_HASH_LEN);
  r->kind = STORE_REC_ITEM;
  r->hosted = h != NULL;
  memcpy(r->mbox_pk, mbox_pk, DHT_PK_LEN);
  r->deposited_s = dep_s;
  r->expires_s = (int64_t)dep_s + ttl;
  memcpy(r->sig, sig, DHT_SIG_LEN);
  r->len = (uint16_t)len;
  memcpy(r->data, item, len);
  int64_t q = s->be.put(s->be.ctx, r);
  if (q < 0)
    return STORE_W_REFUSED;
  *seq = q;
  s->st.deposits_stored++;
  return STORE_W_OK;
}

void store_serve_deposit(store_svc *s, const dht_peer *from, const store_wire_msg *m, dht_ts now) {
  uint8_t flags = m->u.deposit.flags;
  const uint8_t *mbox = m->u.deposit.mbox;
  uint32_t txid = m->txid;
  s->st.deposits_in++;
  uint8_t hash[STORE_HASH_LEN];
  int64_t seq;
  bool request = (flags & STORE_F_REQUEST) != 0;
  int w = accept_deposit(s, flags, mbox, m->u.deposit.mbox_pk, m->u.deposit.deposited_s,
                         m->u.deposit.item, m->u.deposit.item_len, m->u.deposit.sig, request, now,
                         hash, &seq);
  if (w != STORE_W_OK) {
    s->st.deposits_refused++;
    store_svc_reply_status(s, from, STORE_T_RECEIPT, txid, (uint64_t)w);
    return;
  }
  if (seq > 0 && (flags & STORE_F_PUSH))
    s->st.recon_items_pulled++;
  if (seq > 0 && s->be.durable(s->be.ctx) < seq)
    queue_receipt(s, seq, from, txid, mbox, hash, STORE_T_RECEIPT);
  else
    send_receipt(s, from, txid, mbox, hash);
}

void store_svc_durable(store_svc *s, int64_t seq, dht_ts now) {
  (void)now;
  int j = 0;
  for (int i = 0; i < s->nwaits; i++) {
    wait_rcpt *w = &s->waits[i];
    if (w->seq <= seq) {
      if (w->type == STORE_T_RECEIPT)
        send_receipt(s, &w->to, w->txid, w->mbox, w->hash);
      else
        store_svc_reply_status(s, &w->to, w->type, w->txid, STORE_W_OK);
    } else {
      s->waits[j++] = *w;
    }
  }
  s->nwaits = j;
}

/* ---- fetch and getitem --------------------------------------------- */

static bool grant_ok(store_svc *s, const uint8_t pk[DHT_PK_LEN], const uint8_t mbox[32],
                     dht_ts now) {
  for (int i = 0; i < s->ngrants; i++)
    if (s->grants[i].until > now && !memcmp(s->grants[i].pk, pk, DHT_PK_LEN) &&
        !memcmp(s->grants[i].mbox, mbox, STORE_MBOX_LEN))
      return true;
  return false;
}

static void grant_add(store_svc *s, const uint8_t pk[DHT_PK_LEN], const uint8_t mbox[32],
                      dht_ts now) {
  int j = 0;
  for (int i = 0; i < s->ngrants; i++) /* drop expired ones and the same pair */
    if (s->grants[i].until > now && (memcmp(s->grants[i].pk, pk, DHT_PK_LEN) ||
                                     memcmp(s->grants[i].mbox, mbox, STORE_MBOX_LEN)))
      s->grants[j++] = s->grants[i];
  s->ngrants = j;
  if (s->ngrants >= s->set.max_grants && s->ngrants > 0) { /* oldest out */
    memmove(s->grants, s->grants + 1, (size_t)(s->ngrants - 1) * sizeof *s->grants);
    s->ngrants--;
  }
  if (store_svc_grow(s, (void **)&s->grants, s->ngrants, &s->capgrants, sizeof *s->grants,
                     s->set.max_grants))
    return;
  grant *g = &s->grants[s->ngrants++];
  memcpy(g->pk, pk, DHT_PK_LEN);
  memcpy(g->mbox, mbox, STORE_MBOX_LEN);
  g->until = now + GRANT_MS;
}

/* Checks a FETCH/DELETE authorisation.  Pair mailboxes: the mailbox key
 * signs.  Request boxes: the owner's identity key signs, and the box must be
 * its request box for an epoch near now. */
static int check_auth(store_svc *s, int op, const dht_peer *from, const uint8_t mbox[32],
                      const uint8_t mpk[32], uint64_t t, const uint8_t sig[64],
                      const uint8_t *hashes, size_t nh, dht_ts now) {
  int64_t ut = store_svc_unix_s(s, now);
  if ((int64_t)t > ut + s->set.time_window_s || (int64_t)t < ut - s->set.time_window_s)
    return STORE_W_TIME;
  if (store_auth_verify(sig, op, mbox, mpk, s->self_id, from->pk, t, hashes, nh))
    return STORE_W_OK;
  if (store_reqbox_is_current(s, mbox, mpk, now)) {
    /* The same signed layout, with the box's own ID standing in for the
     * mailbox key's hash: verify against a derived "mailbox" whose ID is
     * BLAKE2b(pk) and compare the owner key. */
    if (!memcmp(mpk, from->pk, DHT_PK_LEN)) {
      uint8_t id2[STORE_MBOX_LEN];
      crypto_generichash(id2, sizeof id2, mpk, DHT_PK_LEN, NULL, 0);
      if (store_auth_verify(sig, op, id2, mpk, s->self_id, from->pk, t, hashes, nh))
        return STORE_W_OK;
    }
  }
  return STORE_W_BADSIG;
}

void store_serve_fetch(store_svc *s, const dht_peer *from, const store_wire_msg *m, dht_ts now) {
  const uint8_t *mbox = m->u.fetch.mbox, *after = m->u.fetch.after;
  uint32_t txid = m->txid;
  s->st.fetches_in++;
  int w = check_auth(s, STORE_AUTH_FETCH, from, mbox, m->u.fetch.mbox_pk, m->u.fetch.time_s,
                     m->u.fetch.sig, NULL, 0, now);
  if (w != STORE_W_OK) {
    s->st.fetches_refused++;
    store_svc_reply_status(s, from, STORE_T_LIST, txid, (uint64_t)w);
    return;
  }
  grant_add(s, from->pk, mbox, now);
  uint8_t ents[STORE_LIST_MAX * STORE_ENTRY_LEN];
  int ne = 0;
  bool more = false;
  /* scan in small pages into the scratch record to keep the stack small */
  uint8_t cur[STORE_HASH_LEN];
  bool have_cur = after != NULL;
  if (have_cur)
    memcpy(cur, after, 16);
  while (ne < STORE_LIST_MAX) {
    int got = s->be.scan_mbox(s->be.ctx, mbox, have_cur ? cur : NULL, &s->rec, 1);
    if (got <= 0)
      break;
    memcpy(cur, s->rec.hash, 16);
    have_cur = true;
    memcpy(ents + ne * STORE_ENTRY_LEN, s->rec.hash, 16);
    ents[ne * STORE_ENTRY_LEN + 16] = s->rec.kind;
    ne++;
  }
  if (ne == STORE_LIST_MAX && s->be.scan_mbox(s->be.ctx, mbox, cur, &s->rec, 1) > 0)
    more = true;
  uint8_t buf[DHT_MAX_BODY];
  store_wire_msg l = {.type = STORE_T_LIST, .txid = txid};
  l.u.list.status = STORE_W_OK;
  l.u.list.entries = ents;
  l.u.list.nentries = (size_t)ne;
  l.u.list.more = more;
  dht_ssize n = store_wire_encode(buf, sizeof buf, &l);
  if (n > 0)
    store_svc_send(s, from, buf, (size_t)n);
}

void store_serve_getitem(store_svc *s, const dht_peer *from, const store_wire_msg *m, dht_ts now) {
  const uint8_t *mbox = m->u.getitem.mbox, *hash = m->u.getitem.hash;
  uint32_t txid = m->txid;
  if (!grant_ok(s, from->pk, mbox, now)) {
    store_svc_reply_status(s, from, STORE_T_ITEM, txid, STORE_W_BADSIG);
    return;
  }
  if (s->be.get(s->be.ctx, mbox, hash, &s->rec) != 0 || s->rec.kind != STORE_REC_ITEM) {
    store_svc_reply_status(s, from, STORE_T_ITEM, txid, STORE_W_NOTFOUND);
    return;
  }
  uint8_t buf[DHT_MAX_BODY];
  store_wire_msg it = {.type = STORE_T_ITEM, .txid = txid};
  it.u.item.status = STORE_W_OK;
  it.u.item.deposited_s = s->rec.deposited_s;
  it.u.item.item = s->rec.data;
  it.u.item.item_len = s->rec.len;
  it.u.item.sig = s->rec.sig;
  dht_ssize n = store_wire_encode(buf, sizeof buf, &it);
  if (n > 0 && store_svc_send(s, from, buf, (size_t)n) == 0)
    s->st.items_served++;
}

/* ---- delete and tombstones ----------------------------------------- */

/* Serialises a delete proof: storage_id(32) requester(32) time(8 BE) n(1)
 * hashes(n*16) sig(64). */
size_t store_serve_proof_pack(uint8_t *out, const uint8_t sid[32], const uint8_t req[32],
                              uint64_t t, const uint8_t *hashes, size_t nh, const uint8_t sig[64]) {
  size_t o = 0;
  memcpy(out + o, sid, 32), o += 32;
  memcpy(out + o, req, 32), o += 32;
  for (int i = 7; i >= 0; i--)
    out[o++] = (uint8_t)(t >> (8 * i));
  out[o++] = (uint8_t)nh;
  memcpy(out + o, hashes, nh * 16), o += nh * 16;
  memcpy(out + o, sig, 64), o += 64;
  return o;
}

/* Verifies a proof for mailbox (mbox, mpk) and returns its hashes, or -1. */
static int proof_check(const uint8_t *p, size_t len, const uint8_t mbox[32], const uint8_t mpk[32],
                       const uint8_t **hashes) {
  if (len < 32 + 32 + 8 + 1 + 64)
    return -1;
  size_t nh = p[72];
  if (nh == 0 || nh > STORE_DEL_MAX || len != 73 + nh * 16 + 64)
    return -1;
  uint64_t t = 0;
  for (int i = 0; i < 8; i++)
    t = (t << 8) | p[64 + i];
  if (!store_auth_verify(p + 73 + nh * 16, STORE_AUTH_DELETE, mbox, mpk, p, p + 32, t, p + 73, nh))
    return -1;
  *hashes = p + 73;
  return (int)nh;
}

/* Replaces each listed hash of mbox with a tombstone carrying the proof.
 * Returns the write sequence of the last write (0 if none). */
int64_t store_serve_put_tombs(store_svc *s, const uint8_t mbox[32], const uint8_t mpk[32],
                              const uint8_t *hashes, int nh, const uint8_t *proof, size_t plen,
                              int *deleted) {
  int64_t last = 0;
  for (int i = 0; i < nh; i++) {
    const uint8_t *h = hashes + i * 16;
    int64_t exp = 0;
    bool hosted_f = false;
    if (s->be.get(s->be.ctx, mbox, h, &s->rec2) == 0) {
      if (s->rec2.kind == STORE_REC_TOMB)
        continue;
      exp = s->rec2.expires_s;
      hosted_f = s->rec2.hosted;
      if (s->rec2.kind == STORE_REC_ITEM && deleted)
        (*deleted)++;
    } else {
      continue; /* we never had it: nothing to keep out */
    }
    store_rec *r = &s->rec;
    memset(r, 0, offsetof(store_rec, data));
    memcpy(r->mbox, mbox, 32);
    memcpy(r->hash, h, 16);
    r->kind = STORE_REC_TOMB;
    r->hosted = hosted_f;
    memcpy(r->mbox_pk, mpk, 32);
    r->expires_s = exp;
    r->len = (uint16_t)plen;
    memcpy(r->data, proof, plen);
    int64_t q = s->be.put(s->be.ctx, r);
    if (q > 0)
      last = q;
  }
  return last;
}

void store_serve_delete(store_svc *s, const dht_peer *from, const store_wire_msg *m, dht_ts now) {
  const uint8_t *mbox = m->u.del.mbox, *mpk = m->u.del.mbox_pk, *hashes = m->u.del.hashes,
                *sig = m->u.del.sig;
  size_t hn = m->u.del.nhashes * STORE_HASH_LEN;
  uint64_t t = m->u.del.time_s;
  uint32_t txid = m->txid;
  s->st.deletes_in++;
  int w = check_auth(s, STORE_AUTH_DELETE, from, mbox, mpk, t, sig, hashes, hn / 16, now);
  if (w != STORE_W_OK) {
    s->st.deletes_refused++;
    store_svc_reply_status(s, from, STORE_T_ACK, txid, (uint64_t)w);
    return;
  }
  uint8_t proof[STORE_PROOF_MAX];
  size_t plen = store_serve_proof_pack(proof, s->self_id, from->pk, t, hashes, hn / 16, sig);
  int deleted = 0;
  int64_t seq = store_serve_put_tombs(s, mbox, mpk, hashes, (int)(hn / 16), proof, plen, &deleted);
  /* evicted notices go for good once their owner has seen them */
  for (size_t i = 0; i < hn / 16; i++)
    if (s->be.get(s->be.ctx, mbox, hashes + i * 16, &s->rec2) == 0 &&
        s->rec2.kind == STORE_REC_EVICTED)
      s->be.del(s->be.ctx, mbox, hashes + i * 16);
  if (seq > 0 && s->be.durable(s->be.ctx) < seq)
    queue_receipt(s, seq, from, txid, mbox, hashes, STORE_T_ACK);
  else
    store_svc_reply_status(s, from, STORE_T_ACK, txid, STORE_W_OK);
}

void store_serve_tomb(store_svc *s, const dht_peer *from, const store_wire_msg *m) {
  const uint8_t *mbox = m->u.tomb.mbox, *mpk = m->u.tomb.mbox_pk, *proof = m->u.tomb.proof;
  const uint8_t *hashes;
  size_t plen = m->u.tomb.proof_len;
  uint32_t txid = m->txid;
  int nh = proof_check(proof, plen, mbox, mpk, &hashes);
  if (nh < 0) {
    store_svc_reply_status(s, from, STORE_T_ACK, txid, STORE_W_BADSIG);
    return;
  }
  store_serve_put_tombs(s, mbox, mpk, hashes, nh, proof, plen, NULL);
  store_svc_reply_status(s, from, STORE_T_ACK, txid, STORE_W_OK);
}

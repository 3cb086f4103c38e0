/*
 * store_recon.c - reconciliation of one mailbox between two replicas, and
 * the periodic pass that runs it over every mailbox this node keeps.
 *
 * A fixed two-level range split of the item-hash space, after Meyer's
 * range-based set reconciliation: the initiator sends the XOR fingerprint of
 * its entries (hash || kind) and their count; equal sets cost one small
 * round trip.  Otherwise the responder answers with the fingerprints of 16
 * sub-ranges (the first nibble of the hash), the initiator sends its
 * entries in the sub-ranges that differ, and each side pushes (DEPOSIT with
 * the push flag, or TOMB) what the other lacks.  Traffic grows with the
 * number of differing sub-ranges, not with the mailbox.
 *
 * Only replicas reconcile (store_replica.c holds the rule): a RECON from a
 * node that is not a replica of the mailbox by our view gets a refusal and
 * nothing else (no fingerprint, no count), and a RECON_L from one gets no
 * pushes, only the list of its own entries we lack.  A node that is no
 * longer a replica hands its items over that way: it sends its entries
 * (RECON_L) to the r closest nodes it knows and pushes what they lack.
 *
 * Invariants: pushes forward the depositor's own signature or the owner's
 * delete proof, so no replica can forge or alter an item; a tombstone beats
 * an item with the same hash; a mailbox kept for a hosted friend is never
 * reconciled (it is ours alone); one push is tried once (the next pass
 * repairs a loss).  Evicted notices are local and never reconciled.  What we
 * send a node that is not a replica is never larger than what it sent.
 */
#include <string.h>

#include <sodium.h>

#include "store_int.h"

/* ---- fingerprints -------------------------------------------------- */

/* Entry of a record for reconciliation: hash || kind (items and tombstones
 * only; evicted notices are local). */
static bool rec_entry(const store_rec *r, uint8_t e[STORE_ENTRY_LEN]) {
  if (r->kind != STORE_REC_ITEM && r->kind != STORE_REC_TOMB)
    return false;
  memcpy(e, r->hash, 16);
  e[16] = r->kind;
  return true;
}

static void fp_add(uint8_t fp[16], const uint8_t e[STORE_ENTRY_LEN]) {
  for (int i = 0; i < 16; i++)
    fp[i] ^= e[i];
  fp[15] ^= (uint8_t)(e[16] * 0x5b); /* an item and its tombstone differ */
}

/* Fingerprints of the whole mailbox and of its 16 sub-ranges. */
static int mbox_fps(store_svc *s, const uint8_t mbox[32], uint8_t all[16], int *count,
                    uint8_t bfp[STORE_NBUCKETS][16], int bcount[STORE_NBUCKETS]) {
  memset(all, 0, 16);
  memset(bfp, 0, STORE_NBUCKETS * 16);
  memset(bcount, 0, STORE_NBUCKETS * sizeof(int));
  *count = 0;
  uint8_t cur[16];
  bool have = false;
  for (;;) {
    int got = s->be.scan_mbox(s->be.ctx, mbox, have ? cur : NULL, &s->rec, 1);
    if (got <= 0)
      break;
    memcpy(cur, s->rec.hash, 16);
    have = true;
    uint8_t e[STORE_ENTRY_LEN];
    if (!rec_entry(&s->rec, e))
      continue;
    fp_add(all, e);
    fp_add(bfp[e[0] >> 4], e);
    bcount[e[0] >> 4]++;
    (*count)++;
  }
  return 0;
}

/* ---- pushes -------------------------------------------------------- */

/* Pushes one record (item or tombstone) of ours to peer. */
static void push_rec(store_svc *s, const dht_peer *to, const store_rec *r, dht_ts now) {
  uint8_t buf[DHT_MAX_BODY];
  uint32_t txid = store_svc_txid(s);
  store_wire_msg m = {.txid = txid};
  if (r->kind == STORE_REC_ITEM) {
    m.type = STORE_T_DEPOSIT;
    m.u.deposit.flags = (uint8_t)(STORE_F_PUSH | (r->hosted ? STORE_F_HOSTED : 0));
    m.u.deposit.mbox = r->mbox;
    m.u.deposit.mbox_pk = r->mbox_pk;
    m.u.deposit.deposited_s = r->deposited_s;
    m.u.deposit.item = r->data;
    m.u.deposit.item_len = r->len;
    m.u.deposit.sig = r->sig;
  } else if (r->kind == STORE_REC_TOMB) {
    m.type = STORE_T_TOMB;
    m.u.tomb.mbox = r->mbox;
    m.u.tomb.mbox_pk = r->mbox_pk;
    m.u.tomb.proof = r->data;
    m.u.tomb.proof_len = r->len;
  } else {
    return;
  }
  dht_ssize n = store_wire_encode(buf, sizeof buf, &m);
  if (n < 0)
    return;
  /* one try: the next reconciliation repairs a loss */
  if (store_svc_rpc_start(s, to, buf, (size_t)n, txid, m.type, O_OTHER, 0, 0, 1,
                          s->set.rpc_timeout_ms, now) == 0) {
    s->st.recon_items_pushed++;
    s->st.recon_bytes += (uint64_t)n;
  }
}

static void push_all(store_svc *s, const dht_peer *to, const uint8_t mbox[32], int bucket_mask,
                     dht_ts now) {
  uint8_t cur[16];
  bool have = false;
  for (;;) {
    int got = s->be.scan_mbox(s->be.ctx, mbox, have ? cur : NULL, &s->rec2, 1);
    if (got <= 0)
      break;
    memcpy(cur, s->rec2.hash, 16);
    have = true;
    if (bucket_mask & (1 << (s->rec2.hash[0] >> 4)))
      push_rec(s, to, &s->rec2, now);
  }
}

/* ---- one reconciliation -------------------------------------------- */

/* Sends RECON_L for reconciliation ri: our entries in the sub-ranges of
 * mask (up to STORE_LIST_MAX; the next round takes the rest).  Returns 0, or
 * -1 when nothing was sent (the caller ends the reconciliation). */
static int send_list(store_svc *s, int ri, int mask, dht_ts now) {
  recon *rc = &s->recons[ri];
  uint8_t ents[STORE_LIST_MAX * STORE_ENTRY_LEN];
  int ne = 0;
  uint8_t cur[16];
  bool have = false;
  while (ne < STORE_LIST_MAX) {
    int got = s->be.scan_mbox(s->be.ctx, rc->mbox, have ? cur : NULL, &s->rec, 1);
    if (got <= 0)
      break;
    memcpy(cur, s->rec.hash, 16);
    have = true;
    uint8_t e[STORE_ENTRY_LEN];
    if (rec_entry(&s->rec, e) && (mask & (1 << (e[0] >> 4))))
      memcpy(ents + STORE_ENTRY_LEN * ne++, e, STORE_ENTRY_LEN);
  }
  uint8_t buf[DHT_MAX_BODY];
  uint32_t txid = store_svc_txid(s);
  store_wire_msg l = {.type = STORE_T_RECON_L, .txid = txid};
  l.u.recon_l.mbox = rc->mbox;
  l.u.recon_l.mask = (uint16_t)mask;
  l.u.recon_l.entries = ents;
  l.u.recon_l.nentries = (size_t)ne;
  dht_ssize n = store_wire_encode(buf, sizeof buf, &l);
  store_svc_rpc_drop_owner(s, O_RECON, rc->id);
  if (n < 0 || store_svc_rpc_start(s, &rc->peer, buf, (size_t)n, txid, STORE_T_RECON_L, O_RECON,
                                   rc->id, 0, 2, s->set.rpc_timeout_ms, now))
    return -1;
  s->st.recon_bytes += (uint64_t)n;
  return 0;
}

/* Starts a reconciliation of mbox with peer: as a replica, with RECON; as a
 * node that is not one any more (handoff), with our entries (RECON_L) at
 * once, since a replica tells a non-replica nothing else. */
static void recon_start(store_svc *s, const uint8_t mbox[32], const dht_contact *peer, bool handoff,
                        dht_ts now) {
  if (store_svc_grow(s, (void **)&s->recons, s->nrecons, &s->caprecons, sizeof *s->recons,
                     s->set.max_pending_rpcs))
    return;
  recon *rc = &s->recons[s->nrecons];
  rc->id = ++s->next_id;
  memcpy(rc->mbox, mbox, 32);
  memcpy(rc->peer.pk, peer->pk, DHT_PK_LEN);
  rc->peer.addr = peer->addr;
  rc->handoff = handoff;
  if (handoff) {
    s->nrecons++;
    if (send_list(s, s->nrecons - 1, 0xffff, now) != 0) {
      s->nrecons--;
      return;
    }
    s->st.recon_rounds++;
    s->st.handed_off++;
    return;
  }
  uint8_t all[16], bfp[STORE_NBUCKETS][16];
  int count, bc[STORE_NBUCKETS];
  mbox_fps(s, mbox, all, &count, bfp, bc);
  uint8_t buf[128];
  uint32_t txid = store_svc_txid(s);
  store_wire_msg m = {.type = STORE_T_RECON, .txid = txid};
  m.u.recon.mbox = mbox;
  m.u.recon.fp = all;
  m.u.recon.count = (uint32_t)count;
  dht_ssize n = store_wire_encode(buf, sizeof buf, &m);
  if (n < 0 || store_svc_rpc_start(s, &rc->peer, buf, (size_t)n, txid, STORE_T_RECON, O_RECON,
                                   rc->id, 0, 2, s->set.rpc_timeout_ms, now))
    return;
  s->nrecons++;
  s->st.recon_rounds++;
  s->st.recon_bytes += (uint64_t)n;
}

int store_recon_find(store_svc *s, uint32_t id) {
  for (int i = 0; i < s->nrecons; i++)
    if (s->recons[i].id == id)
      return i;
  return -1;
}

void store_recon_end(store_svc *s, int i) {
  store_svc_rpc_drop_owner(s, O_RECON, s->recons[i].id);
  memmove(&s->recons[i], &s->recons[i + 1], (size_t)(s->nrecons - i - 1) * sizeof *s->recons);
  s->nrecons--;
}

/* Responder, step 1. */
/* Responder: an answer to a RECON or RECON_L, counted as reconciliation
 * traffic. */
static void recon_answer(store_svc *s, const dht_peer *to, const store_wire_msg *a) {
  uint8_t buf[DHT_MAX_BODY];
  dht_ssize n = store_wire_encode(buf, sizeof buf, a);
  if (n > 0) {
    store_svc_send(s, to, buf, (size_t)n);
    s->st.recon_bytes += (uint64_t)n;
  }
}

void store_recon_on_recon(store_svc *s, const dht_peer *from, const store_wire_msg *m) {
  const uint8_t *mbox = m->u.recon.mbox, *fp = m->u.recon.fp;
  uint32_t count = m->u.recon.count;
  if (!store_replica_is_peer(s, mbox, from)) {
    /* not a replica: it learns nothing, not even whether we hold anything */
    s->st.recon_refused++;
    store_svc_reply_status(s, from, STORE_T_RECON_R, m->txid, STORE_W_REFUSED);
    return;
  }
  uint8_t all[16], bfp[STORE_NBUCKETS][16];
  int cnt, bc[STORE_NBUCKETS];
  mbox_fps(s, mbox, all, &cnt, bfp, bc);
  uint8_t b[STORE_NBUCKETS * STORE_BUCKET_LEN];
  store_wire_msg a = {.type = STORE_T_RECON_R, .txid = m->txid};
  if (cnt == (int)count && !memcmp(all, fp, 16)) {
    a.u.recon_r.status = STORE_W_EQUAL;
    s->st.recon_equal++;
  } else if (cnt == 0) {
    a.u.recon_r.status = STORE_W_EMPTY;
  } else {
    for (int i = 0; i < STORE_NBUCKETS; i++) {
      memcpy(b + i * 18, bfp[i], 16);
      b[i * 18 + 16] = (uint8_t)(bc[i] >> 8);
      b[i * 18 + 17] = (uint8_t)bc[i];
    }
    a.u.recon_r.status = STORE_W_DIFFER;
    a.u.recon_r.buckets = b;
    a.u.recon_r.buckets_len = sizeof b;
  }
  recon_answer(s, from, &a);
}

/* Initiator, step 2: the responder's answer to RECON. */
void store_recon_on_buckets(store_svc *s, int ri, const store_wire_msg *m, dht_ts now) {
  recon *rc = &s->recons[ri];
  uint8_t status = m->u.recon_r.status;
  const uint8_t *b = m->u.recon_r.buckets;
  /* the layout allows a status without buckets; DIFFER needs them */
  if (status == STORE_W_DIFFER && !b) {
    s->st.drop_malformed++;
    store_recon_end(s, ri);
    return;
  }
  if (status == STORE_W_EQUAL) {
    s->st.recon_equal++;
    store_recon_end(s, ri);
    return;
  }
  if (status == STORE_W_EMPTY) {
    push_all(s, &rc->peer, rc->mbox, 0xffff, now);
    store_recon_end(s, ri);
    return;
  }
  if (status != STORE_W_DIFFER) {
    store_recon_end(s, ri);
    return;
  }
  uint8_t all[16], bfp[STORE_NBUCKETS][16];
  int cnt, bc[STORE_NBUCKETS];
  mbox_fps(s, rc->mbox, all, &cnt, bfp, bc);
  int mask = 0;
  for (int i = 0; i < STORE_NBUCKETS; i++) {
    int theirs = (b[i * 18 + 16] << 8) | b[i * 18 + 17];
    if (theirs != bc[i] || memcmp(b + i * 18, bfp[i], 16))
      mask |= 1 << i;
  }
  if (send_list(s, ri, mask, now) != 0)
    store_recon_end(s, ri);
}

static bool ents_has(const uint8_t *ents, int n, const uint8_t e[STORE_ENTRY_LEN]) {
  for (int i = 0; i < n; i++)
    if (!memcmp(ents + i * STORE_ENTRY_LEN, e, STORE_ENTRY_LEN))
      return true;
  return false;
}

/* Responder, step 3: the initiator's entries in the differing sub-ranges. */
void store_recon_on_list(store_svc *s, const dht_peer *from, const store_wire_msg *m, dht_ts now) {
  const uint8_t *mbox = m->u.recon_l.mbox, *ents = m->u.recon_l.entries;
  uint16_t mask = m->u.recon_l.mask;
  int ne = (int)m->u.recon_l.nentries;
  /* a node that is not a replica (handing its items over, or a stranger)
   * gets no pushes: only which of the entries it named we lack */
  bool replica = store_replica_is_peer(s, mbox, from);
  if (!replica)
    s->st.recon_stranger++;
  /* what we have there and they lack: push; what they have and we lack: want */
  uint8_t mine[STORE_LIST_MAX * 4 * STORE_ENTRY_LEN];
  int nm = 0;
  uint8_t cur[16];
  bool have = false;
  for (;;) {
    int got = s->be.scan_mbox(s->be.ctx, mbox, have ? cur : NULL, &s->rec2, 1);
    if (got <= 0)
      break;
    memcpy(cur, s->rec2.hash, 16);
    have = true;
    uint8_t e[STORE_ENTRY_LEN];
    if (!rec_entry(&s->rec2, e) || !(mask & (1u << (e[0] >> 4))))
      continue;
    if (nm < STORE_LIST_MAX * 4)
      memcpy(mine + STORE_ENTRY_LEN * nm++, e, STORE_ENTRY_LEN);
    if (replica && !ents_has(ents, ne, e)) {
      store_rec keep = s->rec2;
      push_rec(s, from, &keep, now);
      s->rec2 = keep;
    }
  }
  uint8_t want[STORE_LIST_MAX * STORE_ENTRY_LEN];
  int nw = 0;
  for (int i = 0; i < ne; i++) {
    const uint8_t *e = ents + i * STORE_ENTRY_LEN;
    if (ents_has(mine, nm, e))
      continue;
    /* a tombstone here beats their item: they get it pushed above */
    if (e[16] == STORE_REC_ITEM && s->be.get(s->be.ctx, mbox, e, &s->rec) == 0 &&
        s->rec.kind == STORE_REC_TOMB)
      continue;
    memcpy(want + STORE_ENTRY_LEN * nw++, e, STORE_ENTRY_LEN);
  }
  store_wire_msg a = {.type = STORE_T_RECON_LR, .txid = m->txid};
  a.u.recon_lr.status = STORE_W_OK;
  a.u.recon_lr.want = want;
  a.u.recon_lr.nwant = (size_t)nw;
  recon_answer(s, from, &a);
}

/* Initiator, step 4: push what they asked for. */
void store_recon_on_want(store_svc *s, int ri, const store_wire_msg *m, dht_ts now) {
  recon *rc = &s->recons[ri];
  const uint8_t *want = m->u.recon_lr.want;
  size_t wn = m->u.recon_lr.nwant * STORE_ENTRY_LEN;
  dht_peer peer = rc->peer;
  uint8_t mbox[32];
  memcpy(mbox, rc->mbox, 32);
  store_recon_end(s, ri);
  for (size_t i = 0; i < wn / STORE_ENTRY_LEN; i++)
    if (s->be.get(s->be.ctx, mbox, want + i * STORE_ENTRY_LEN, &s->rec2) == 0) {
      store_rec keep = s->rec2;
      push_rec(s, &peer, &keep, now);
    }
}

/* ---- the periodic pass --------------------------------------------- */

/* Runs the periodic reconciliation over a slice of our mailboxes. */
void store_recon_tick(store_svc *s, dht_ts now) {
  uint8_t ids[RECON_PER_TICK][STORE_MBOX_LEN];
  uint8_t hosted_f[RECON_PER_TICK];
  int n = s->be.scan_mboxes(s->be.ctx, s->recon_cursor_set ? s->recon_after : NULL, ids, hosted_f,
                            RECON_PER_TICK);
  if (n <= 0) {
    s->recon_cursor_set = false;
    s->next_recon = now + s->set.reconcile_interval_ms;
    return;
  }
  memcpy(s->recon_after, ids[n - 1], 32);
  s->recon_cursor_set = true;
  for (int i = 0; i < n; i++) {
    if (hosted_f[i])
      continue; /* a friend's mailbox we host is ours alone to keep */
    dht_contact cl[MAX_REPL];
    int nc = dht_closest(s->e, ids[i], cl, s->set.replicas);
    bool handoff = !store_replica_is_self(s, ids[i]);
    for (int j = 0; j < nc && j < s->set.replicas; j++)
      recon_start(s, ids[i], &cl[j], handoff, now);
  }
  s->next_recon = n < RECON_PER_TICK ? now + s->set.reconcile_interval_ms : now + 1000;
  if (n < RECON_PER_TICK)
    s->recon_cursor_set = false;
}

/* A replica set changes when our own neighbourhood does (the nodes closest
 * to us are the ones closest to the mailboxes we keep): when the nearest
 * contacts change, reconcile now instead of at the next period. */
void store_recon_neighbourhood(store_svc *s, dht_ts now) {
  dht_contact cl[8];
  int n = dht_closest(s->e, s->self_id, cl, 8);
  uint8_t h[16];
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, sizeof h);
  for (int i = 0; i < n; i++)
    crypto_generichash_update(&st, cl[i].id, DHT_ID_LEN);
  crypto_generichash_final(&st, h, sizeof h);
  if (!memcmp(h, s->nb_hash, sizeof h))
    return;
  bool first = !s->nb_known;
  memcpy(s->nb_hash, h, sizeof h);
  s->nb_known = true;
  if (!first && !s->recon_cursor_set && s->next_recon > now) {
    s->next_recon = now;
    s->st.recon_triggered++;
  }
}

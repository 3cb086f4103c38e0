/*
 * store_fetch.c - the recipient: fetching friends' mailboxes for our user,
 * messages delivered to us directly, and registering our mailboxes with the
 * friends who host us (so they keep what we will fetch).
 *
 * A fetch round (store_fetch, every poll_interval_ms) makes one job per
 * friend and epoch since the last complete fetch (at most max_fetch_epochs)
 * plus our request boxes; FETCH_JOBS run at once.  A job looks up the
 * mailbox, takes what our own store holds, FETCHes from the replicas and our
 * hosts, takes the union of their lists, GETITEMs each unseen item from a
 * replica that listed it (another if that fails), reports it, then DELETEs
 * everything fetched at every replica that listed it and sends one
 * delivered-receipt.  Evicted entries become a loss notice.
 *
 * Invariants: a friend's fetched_epoch moves on only when the whole round
 * succeeded (every job reached a replica and got every item), so nothing is
 * skipped; at most JOB_ITEMS items per job and MAX_JOBS jobs per round (the
 * next round takes the rest); duplicates are the user's to drop by message
 * ID (a message may arrive directly and through a mailbox).
 */
#include <string.h>

#include <sodium.h>

#include "store_int.h"

/* ---- delivery ------------------------------------------------------ */

/* A message from friend pk opened: report it, or apply a receipt. */
static void deliver(store_svc *s, const uint8_t pk[DHT_PK_LEN], const store_msg *m, bool direct,
                    job *jb) {
  if (m->kind == STORE_KIND_TEXT) {
    store_event *ev = store_svc_event(s, STORE_EV_MESSAGE, jb ? jb->round : 0, 0);
    if (ev) {
      memcpy(ev->u.message.friend_pk, pk, DHT_PK_LEN);
      ev->u.message.msg = *m;
      ev->u.message.direct = direct;
    }
    s->st.delivered_msgs++;
    if (jb) {
      jb->newmsgs++;
      if (jb->ndelivered < STORE_LIST_MAX)
        memcpy(jb->delivered[jb->ndelivered++], m->id, STORE_MSGID_LEN);
    }
    return;
  }
  int state = m->kind == STORE_KIND_READ ? STORE_ST_READ : STORE_ST_DELIVERED;
  for (int i = 0; i + STORE_MSGID_LEN <= m->len; i += STORE_MSGID_LEN) {
    store_event *ev = store_svc_event(s, STORE_EV_STATE, 0, 0);
    if (!ev)
      break;
    memcpy(ev->u.state.msg_id, m->body + i, STORE_MSGID_LEN);
    memcpy(ev->u.state.friend_pk, pk, DHT_PK_LEN);
    ev->u.state.state = state;
  }
}

/* We are the recipient of a direct delivery. */
void store_fetch_on_direct(store_svc *s, const dht_peer *from, const store_wire_msg *msg,
                           dht_ts now) {
  const uint8_t *mbox = msg->u.direct.mbox, *item = msg->u.direct.item;
  size_t il = msg->u.direct.item_len;
  uint32_t txid = msg->txid;
  if (!store_svc_friend_find(s, from->pk)) {
    store_svc_reply_status(s, from, STORE_T_DIRECT_ACK, txid, STORE_W_REFUSED);
    return;
  }
  uint8_t pair[STORE_KEY_LEN];
  if (store_pair_secret(pair, &s->self, from->pk)) {
    store_svc_reply_status(s, from, STORE_T_DIRECT_ACK, txid, STORE_W_REFUSED);
    return;
  }
  uint32_t ep = store_svc_epoch(s, now);
  int status = STORE_W_BADSIG;
  for (int d = -1; d <= 1; d++) {
    store_mbox_keys k;
    store_mbox_derive(&k, pair, from->pk, s->self.pk, ep + (uint32_t)d);
    store_msg m;
    if (!memcmp(k.id, mbox, 32) && store_open(&m, &k, item, il) == 0) {
      deliver(s, from->pk, &m, true, NULL);
      status = STORE_W_OK;
    }
    sodium_memzero(&k, sizeof k);
    if (status == STORE_W_OK)
      break;
  }
  sodium_memzero(pair, sizeof pair);
  store_svc_reply_status(s, from, STORE_T_DIRECT_ACK, txid, (uint64_t)status);
}

/* ---- jobs ---------------------------------------------------------- */

int store_fetch_job_find(store_svc *s, uint32_t id) {
  for (int i = 0; i < s->njobs; i++)
    if (s->jobs[i].id == id)
      return i;
  return -1;
}

static void job_add(store_svc *s, const uint8_t pk[DHT_PK_LEN], bool reqbox, uint32_t ep) {
  if (store_svc_grow(s, (void **)&s->jobs, s->njobs, &s->capjobs, sizeof *s->jobs, MAX_JOBS)) {
    s->round_failed = true; /* fetched epochs do not move on: a later round retries */
    return;
  }
  job *j = &s->jobs[s->njobs];
  memset(j, 0, sizeof *j);
  j->id = ++s->next_id;
  j->round = s->round_cmd;
  memcpy(j->friend_pk, pk, DHT_PK_LEN);
  j->reqbox = reqbox;
  if (reqbox) {
    store_reqbox_id(j->k.id, s->self.pk, ep);
    memcpy(j->k.pk, s->self.pk, DHT_PK_LEN);
    memcpy(j->k.sk, s->self.sk, DHT_SK_LEN);
    j->k.epoch = ep;
  } else {
    uint8_t pair[STORE_KEY_LEN];
    if (store_pair_secret(pair, &s->self, pk)) {
      s->round_failed = true;
      return;
    }
    store_mbox_derive(&j->k, pair, pk, s->self.pk, ep);
    sodium_memzero(pair, sizeof pair);
  }
  s->njobs++;
}

static void job_fetch_from(store_svc *s, job *j, int ri, const uint8_t *after, dht_ts now) {
  uint8_t buf[DHT_MAX_BODY], sig[DHT_SIG_LEN];
  uint64_t t = (uint64_t)store_svc_unix_s(s, now);
  if (j->reqbox) {
    store_mbox_keys k2 = j->k; /* request boxes: see check_auth */
    crypto_generichash(k2.id, sizeof k2.id, k2.pk, DHT_PK_LEN, NULL, 0);
    store_auth_sign(sig, STORE_AUTH_FETCH, &k2, j->rep_id[ri], s->self.pk, t, NULL, 0);
    sodium_memzero(&k2, sizeof k2);
  } else {
    store_auth_sign(sig, STORE_AUTH_FETCH, &j->k, j->rep_id[ri], s->self.pk, t, NULL, 0);
  }
  uint32_t txid = store_svc_txid(s);
  store_wire_msg m = {.type = STORE_T_FETCH, .txid = txid};
  m.u.fetch.mbox = j->k.id;
  m.u.fetch.mbox_pk = j->k.pk;
  m.u.fetch.time_s = t;
  m.u.fetch.sig = sig;
  m.u.fetch.after = after;
  dht_ssize n = store_wire_encode(buf, sizeof buf, &m);
  if (n > 0 && store_svc_rpc_start(s, &j->rep[ri], buf, (size_t)n, txid, STORE_T_FETCH, O_JOB,
                                   j->id, ri, s->set.rpc_tries, s->set.rpc_timeout_ms, now) == 0)
    j->rep_pending++;
}

/* We may be one of the nodes keeping our own mailbox: take what our own
 * store holds first (opened, reported, and replaced by a tombstone whose
 * proof we sign ourselves), and remember it so the replicas' lists do not
 * report it twice. */
static void job_local(store_svc *s, job *j, dht_ts now) {
  store_rec r;
  uint8_t cur[STORE_HASH_LEN];
  bool have = false;
  while (j->nitems < JOB_ITEMS &&
         s->be.scan_mbox(s->be.ctx, j->k.id, have ? cur : NULL, &r, 1) == 1) {
    memcpy(cur, r.hash, STORE_HASH_LEN);
    have = true;
    if (r.kind == STORE_REC_TOMB)
      continue;
    jitem *it = &j->items[j->nitems++];
    memset(it, 0, sizeof *it);
    memcpy(it->hash, r.hash, STORE_HASH_LEN);
    it->kind = r.kind;
    it->state = 2;
    if (r.kind == STORE_REC_EVICTED) {
      j->lost++;
      s->be.del(s->be.ctx, j->k.id, r.hash);
      continue;
    }
    s->st.fetched_items++;
    if (j->reqbox) {
      store_reqbox_open(s, r.data, r.len);
    } else {
      store_msg m;
      if (store_open(&m, &j->k, r.data, r.len) == 0)
        deliver(s, j->friend_pk, &m, false, j);
    }
    uint64_t t = (uint64_t)store_svc_unix_s(s, now);
    uint8_t sig[DHT_SIG_LEN], proof[STORE_PROOF_MAX];
    store_mbox_keys k2 = j->k;
    if (j->reqbox)
      crypto_generichash(k2.id, sizeof k2.id, k2.pk, DHT_PK_LEN, NULL, 0);
    store_auth_sign(sig, STORE_AUTH_DELETE, &k2, s->self_id, s->self.pk, t, r.hash, 1);
    sodium_memzero(&k2, sizeof k2);
    size_t plen = store_serve_proof_pack(proof, s->self_id, s->self.pk, t, r.hash, 1, sig);
    store_serve_put_tombs(s, j->k.id, r.mbox_pk, r.hash, 1, proof, plen, NULL);
  }
}

void store_fetch_lookup_done(store_svc *s, job *j, const dht_lookup_result *res, dht_ts now) {
  j->lookup = 0;
  j->nrep = 0;
  j->rep_answered_mask = 0;
  job_local(s, j, now);
  for (int i = 0; res && i < res->ncontacts && j->nrep < s->set.replicas; i++) {
    memcpy(j->rep[j->nrep].pk, res->contacts[i].pk, DHT_PK_LEN);
    j->rep[j->nrep].addr = res->contacts[i].addr;
    memcpy(j->rep_id[j->nrep], res->contacts[i].id, DHT_ID_LEN);
    j->nrep++;
  }
  for (int i = 0; !j->reqbox && i < s->nmy_hosts && j->nrep < MAX_REPL; i++) {
    if (s->my_hosts[i].addr.family == DHT_AF_NONE)
      continue;
    memcpy(j->rep[j->nrep].pk, s->my_hosts[i].pk, DHT_PK_LEN);
    j->rep[j->nrep].addr = s->my_hosts[i].addr;
    dht_id_from_pk(j->rep_id[j->nrep], s->my_hosts[i].pk);
    j->nrep++;
  }
  j->phase = J_LIST;
  for (int i = 0; i < j->nrep; i++)
    job_fetch_from(s, j, i, NULL, now);
  s->round_asked += j->nrep;
  if (j->rep_pending == 0) {
    j->phase = J_DONE;
    s->round_failed = true;
  }
}

void store_fetch_on_list(store_svc *s, job *j, int ri, const store_wire_msg *m, dht_ts now) {
  uint8_t status = m->u.list.status;
  const uint8_t *ents = m->u.list.entries;
  size_t en = m->u.list.nentries * STORE_ENTRY_LEN;
  bool more = m->u.list.more;
  j->rep_pending--;
  if (status == STORE_W_OK) {
    if (!(j->rep_answered_mask & (1u << ri))) { /* a replica counts once, however many pages */
      j->rep_answered_mask |= (uint16_t)(1u << ri);
      j->rep_answered++;
      s->round_answered++;
    }
    for (size_t i = 0; i < en / STORE_ENTRY_LEN; i++) {
      const uint8_t *e = ents + i * STORE_ENTRY_LEN;
      int k;
      for (k = 0; k < j->nitems; k++)
        if (!memcmp(j->items[k].hash, e, 16))
          break;
      if (k == j->nitems) {
        if (j->nitems == JOB_ITEMS)
          continue; /* the next round takes the rest */
        memset(&j->items[k], 0, sizeof j->items[k]);
        memcpy(j->items[k].hash, e, 16);
        j->items[k].kind = e[16];
        j->nitems++;
      } else if (e[16] == STORE_REC_TOMB) {
        j->items[k].kind = STORE_REC_TOMB;
      }
      j->items[k].holders |= (uint16_t)(1u << ri);
    }
    if (more && en >= STORE_ENTRY_LEN)
      job_fetch_from(s, j, ri, ents + en - STORE_ENTRY_LEN, now);
  }
}

/* Asks for the next items not fetched yet (up to 4 at once). */
static void job_pump_items(store_svc *s, job *j, dht_ts now) {
  for (int k = 0; k < j->nitems && j->inflight < 4; k++) {
    jitem *it = &j->items[k];
    if (it->state != 0)
      continue;
    if (it->kind == STORE_REC_EVICTED) {
      it->state = 2;
      j->lost++;
      continue;
    }
    if (it->kind != STORE_REC_ITEM) {
      it->state = 2;
      continue;
    }
    int ri = -1;
    for (int r = 0; r < j->nrep; r++)
      if ((it->holders & (1u << r)) && !(it->tried & (1 << r))) {
        ri = r;
        break;
      }
    if (ri < 0) {
      it->state = 2; /* nobody could give it: a later round tries again */
      s->round_failed = true;
      continue;
    }
    it->tried |= 1 << ri;
    uint8_t buf[128];
    uint32_t txid = store_svc_txid(s);
    store_wire_msg m = {.type = STORE_T_GETITEM, .txid = txid};
    m.u.getitem.mbox = j->k.id;
    m.u.getitem.hash = it->hash;
    dht_ssize n = store_wire_encode(buf, sizeof buf, &m);
    if (n > 0 && store_svc_rpc_start(s, &j->rep[ri], buf, (size_t)n, txid, STORE_T_GETITEM, O_JOB,
                                     j->id, k, s->set.rpc_tries, s->set.rpc_timeout_ms, now) == 0) {
      it->state = 1;
      j->inflight++;
    }
  }
}

void store_fetch_on_item(store_svc *s, job *j, int k, const store_wire_msg *w, dht_ts now) {
  uint8_t status = w->u.item.status;
  const uint8_t *item = w->u.item.item;
  size_t il = w->u.item.item_len;
  jitem *it = &j->items[k];
  j->inflight--;
  uint8_t h[STORE_HASH_LEN];
  if (status != STORE_W_OK || il == 0) {
    it->state = 0; /* try another holder */
    job_pump_items(s, j, now);
    return;
  }
  store_item_hash(h, item, il);
  if (memcmp(h, it->hash, 16)) {
    it->state = 0;
    job_pump_items(s, j, now);
    return;
  }
  it->state = 2;
  s->st.fetched_items++;
  if (j->reqbox) {
    store_reqbox_open(s, item, il);
  } else {
    store_msg m;
    if (store_open(&m, &j->k, item, il) == 0)
      deliver(s, j->friend_pk, &m, false, j);
  }
  job_pump_items(s, j, now);
}

/* Deletes what we fetched (items, tombstones' notices) at every replica
 * that listed them. */
static void job_delete(store_svc *s, job *j, dht_ts now) {
  j->phase = J_DELETE;
  for (int ri = 0; ri < j->nrep; ri++) {
    uint8_t hs[STORE_DEL_MAX * 16];
    int nh = 0;
    for (int k = 0; k <= j->nitems; k++) {
      bool flush = k == j->nitems || nh == STORE_DEL_MAX;
      if (flush && nh > 0) {
        uint8_t buf[DHT_MAX_BODY], sig[DHT_SIG_LEN];
        uint64_t t = (uint64_t)store_svc_unix_s(s, now);
        store_mbox_keys k2 = j->k;
        if (j->reqbox)
          crypto_generichash(k2.id, sizeof k2.id, k2.pk, DHT_PK_LEN, NULL, 0);
        store_auth_sign(sig, STORE_AUTH_DELETE, &k2, j->rep_id[ri], s->self.pk, t, hs, (size_t)nh);
        sodium_memzero(&k2, sizeof k2);
        uint32_t txid = store_svc_txid(s);
        store_wire_msg m = {.type = STORE_T_DELETE, .txid = txid};
        m.u.del.mbox = j->k.id;
        m.u.del.mbox_pk = j->k.pk;
        m.u.del.time_s = t;
        m.u.del.hashes = hs;
        m.u.del.nhashes = (size_t)nh;
        m.u.del.sig = sig;
        dht_ssize n = store_wire_encode(buf, sizeof buf, &m);
        if (n > 0 &&
            store_svc_rpc_start(s, &j->rep[ri], buf, (size_t)n, txid, STORE_T_DELETE, O_JOB, j->id,
                                ri, s->set.rpc_tries, s->set.rpc_timeout_ms, now) == 0)
          j->rep_pending++;
        nh = 0;
      }
      if (k == j->nitems)
        break;
      const jitem *it = &j->items[k];
      if ((it->holders & (1u << ri)) &&
          (it->kind == STORE_REC_ITEM || it->kind == STORE_REC_EVICTED))
        memcpy(hs + 16 * nh++, it->hash, 16);
    }
  }
  if (j->ndelivered > 0)
    store_outbox_receipts(s, j->friend_pk, STORE_KIND_DELIVERED,
                          (const uint8_t(*)[STORE_MSGID_LEN])j->delivered, j->ndelivered, now);
  if (j->lost > 0) {
    store_event *ev = store_svc_event(s, STORE_EV_LOSS, j->round, 0);
    if (ev) {
      memcpy(ev->u.loss.friend_pk, j->friend_pk, DHT_PK_LEN);
      ev->u.loss.epoch = j->k.epoch;
      ev->u.loss.items = j->lost;
    }
  }
  if (j->rep_pending == 0)
    j->phase = J_DONE;
}

/* Moves job j on after an answer or a timeout. */
void store_fetch_job_step(store_svc *s, job *j, dht_ts now) {
  if (j->phase == J_LIST && j->rep_pending == 0) {
    if (j->rep_answered == 0)
      s->round_failed = true;
    j->phase = J_ITEMS;
  }
  if (j->phase == J_ITEMS) {
    job_pump_items(s, j, now);
    if (j->inflight == 0)
      job_delete(s, j, now);
  }
  if (j->phase == J_DELETE && j->rep_pending == 0)
    j->phase = J_DONE;
}

/* Starts waiting jobs, retires finished ones, ends the round. */
void store_fetch_jobs_run(store_svc *s, dht_ts now) {
  int active = 0;
  for (int i = 0; i < s->njobs; i++)
    if (s->jobs[i].phase != J_WAIT && s->jobs[i].phase != J_DONE)
      active++;
  for (int i = 0; i < s->njobs && active < FETCH_JOBS; i++) {
    job *j = &s->jobs[i];
    if (j->phase != J_WAIT)
      continue;
    j->phase = J_LOOKUP;
    j->lookup = store_svc_lookup(s, j->k.id, false, now);
    if (j->lookup < 0) {
      j->phase = J_DONE;
      s->round_failed = true;
      continue;
    }
    active++;
  }
  for (int i = s->njobs - 1; i >= 0; i--)
    if (s->jobs[i].phase == J_DONE) {
      store_svc_rpc_drop_owner(s, O_JOB, s->jobs[i].id);
      sodium_memzero(&s->jobs[i].k, sizeof s->jobs[i].k);
      s->round_msgs += s->jobs[i].newmsgs;
      memmove(&s->jobs[i], &s->jobs[i + 1], (size_t)(s->njobs - i - 1) * sizeof *s->jobs);
      s->njobs--;
    }
  if (s->round_cmd && s->njobs == 0) {
    store_event *ev =
        store_svc_event(s, STORE_EV_FETCHED, s->round_cmd, s->round_failed ? DHT_ERR_TIMEOUT : 0);
    if (ev) {
      ev->u.fetched.friends = s->round_friends;
      ev->u.fetched.messages = s->round_msgs;
      ev->u.fetched.replicas_asked = s->round_asked;
      ev->u.fetched.replicas_answered = s->round_answered;
      uint32_t ep = store_svc_epoch(s, now);
      ev->u.fetched.epoch = s->round_failed || ep == 0 ? 0 : ep - 1;
    }
    if (!s->round_failed && store_svc_epoch(s, now) > 0) {
      uint32_t ep = store_svc_epoch(s, now);
      for (int i = 0; i < s->nfriends; i++)
        if (s->friends[i].fetched_epoch < ep - 1)
          s->friends[i].fetched_epoch = ep - 1;
    }
    s->round_cmd = 0;
  }
}

/* ---- rounds -------------------------------------------------------- */

int64_t store_fetch(store_svc *s, dht_ts now) {
  if (s->round_cmd)
    return s->round_cmd;
  s->round_cmd = ++s->next_cmd;
  s->round_friends = s->nfriends;
  s->round_msgs = s->round_asked = s->round_answered = 0;
  s->round_failed = false;
  uint32_t ep = store_svc_epoch(s, now);
  uint32_t lo = ep > (uint32_t)s->set.max_fetch_epochs ? ep - (uint32_t)s->set.max_fetch_epochs : 0;
  for (int i = 0; i < s->nfriends; i++) {
    uint32_t from = s->friends[i].fetched_epoch > lo ? s->friends[i].fetched_epoch : lo;
    if (from > ep)
      from = ep;
    for (uint32_t e = from; e <= ep; e++)
      job_add(s, s->friends[i].pk, false, e);
  }
  if (ep > 0)
    job_add(s, s->self.pk, true, ep - 1);
  job_add(s, s->self.pk, true, ep);
  s->next_poll = s->set.poll_interval_ms > 0 ? now + s->set.poll_interval_ms : DHT_TS_NEVER;
  store_fetch_jobs_run(s, now);
  return s->round_cmd;
}

/* ---- our hosts ----------------------------------------------------- */

int store_my_hosts_set(store_svc *s, const store_host_ref *hosts, int n, dht_ts now) {
  if (n < 0 || n > STORE_MAX_HOSTS || (n && !hosts))
    return DHT_ERR_INVAL;
  if (n)
    memcpy(s->my_hosts, hosts, (size_t)n * sizeof *hosts);
  s->nmy_hosts = n;
  s->next_register = now;
  return 0;
}

void store_fetch_register_tick(store_svc *s, dht_ts now) {
  s->next_register = now + (s->set.poll_interval_ms > 0 ? s->set.poll_interval_ms : 600000);
  if (s->nmy_hosts == 0 || s->nfriends == 0)
    return;
  uint32_t ep = store_svc_epoch(s, now);
  uint8_t ids[32][32];
  int n = 0;
  for (int f = 0; f <= s->nfriends; f++) {
    for (int d = 0; f < s->nfriends && d < REG_EPOCHS; d++) {
      uint8_t pair[STORE_KEY_LEN];
      store_mbox_keys k;
      if (store_pair_secret(pair, &s->self, s->friends[f].pk))
        break;
      store_mbox_derive(&k, pair, s->friends[f].pk, s->self.pk, ep + (uint32_t)d);
      memcpy(ids[n++], k.id, 32);
      sodium_memzero(pair, sizeof pair);
      sodium_memzero(&k, sizeof k);
      if (n == 32)
        break;
    }
    if ((n == 32 || f == s->nfriends) && n > 0) {
      uint8_t msg[17 + 32 * 32], sig[64];
      memcpy(msg, "roost-register-v1", 17);
      memcpy(msg + 17, ids, (size_t)n * 32);
      crypto_sign_detached(sig, NULL, msg, 17 + (size_t)n * 32, s->self.sk);
      for (int h = 0; h < s->nmy_hosts; h++) {
        if (s->my_hosts[h].addr.family == DHT_AF_NONE)
          continue;
        dht_peer p;
        memcpy(p.pk, s->my_hosts[h].pk, DHT_PK_LEN);
        p.addr = s->my_hosts[h].addr;
        uint8_t buf[DHT_MAX_BODY];
        uint32_t txid = store_svc_txid(s);
        store_wire_msg m = {.type = STORE_T_REGISTER, .txid = txid};
        m.u.reg.ids = ids[0];
        m.u.reg.nids = (size_t)n;
        m.u.reg.sig = sig;
        dht_ssize len = store_wire_encode(buf, sizeof buf, &m);
        if (len > 0)
          store_svc_rpc_start(s, &p, buf, (size_t)len, txid, STORE_T_REGISTER, O_OTHER, 0, 0,
                              s->set.rpc_tries, s->set.rpc_timeout_ms, now);
      }
      n = 0;
    }
  }
}

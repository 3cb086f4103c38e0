/*
 * store_outbox.c - the sender: the messages in flight from our user (and
 * our own delivered/read receipts, which are small messages too).
 *
 * A message is sealed for the current epoch's mailbox; then direct first
 * (the friend's peer record, DIRECT to up to two addresses), else a lookup
 * of the mailbox ID and a DEPOSIT at the r closest nodes and at every host
 * the friend named; verified storage receipts count, stored_receipts of
 * them make it "stored"; fewer, and it is retried with backoff (retry_min_ms
 * doubling to retry_max_ms), sealed again into the mailbox of the epoch of
 * the retry.  Friend requests take the same path into the recipient's
 * request box (store_reqbox.c).
 *
 * Invariants: at most max_outgoing messages; a message sent again while in
 * flight (same id, same friend) is the same entry; a receipt counts once
 * per storage node and only when its signature is the node's over our
 * item's hash; the mailbox keys are wiped when an entry goes.
 */
#include <string.h>

#include <sodium.h>

#include "store_int.h"

/* ---- the queue ----------------------------------------------------- */

int store_outbox_find(store_svc *s, uint32_t id) {
  for (int i = 0; i < s->nouts; i++)
    if (s->outs[i].id == id)
      return i;
  return -1;
}

void store_outbox_event(store_svc *s, const sendq *o, int state, int status) {
  if (o->internal)
    return;
  store_event *ev = store_svc_event(s, STORE_EV_STATE, o->cmd, status);
  if (!ev)
    return;
  memcpy(ev->u.state.msg_id, o->msg.id, STORE_MSGID_LEN);
  memcpy(ev->u.state.friend_pk, o->friend_pk, DHT_PK_LEN);
  ev->u.state.state = state;
  ev->u.state.receipts = o->nrcpt;
  ev->u.state.replicas = o->asked;
  ev->u.state.refused = o->refused;
  ev->u.state.reason = o->reason;
  ev->u.state.direct = state == STORE_ST_DELIVERED && o->phase == P_DIRECT;
  ev->u.state.path = ev->u.state.direct ? o->path : 0;
}

void store_outbox_remove(store_svc *s, int i) {
  store_svc_rpc_drop_owner(s, O_OUT, s->outs[i].id);
  if (s->outs[i].lookup > 0)
    dht_cancel(s->e, s->outs[i].lookup);
  sodium_memzero(&s->outs[i].k, sizeof s->outs[i].k);
  memmove(&s->outs[i], &s->outs[i + 1], (size_t)(s->nouts - i - 1) * sizeof *s->outs);
  s->nouts--;
}

/* ---- sealing and starting ------------------------------------------ */

/* Seals o's message for this epoch's mailbox (a retry in a later epoch goes
 * to that epoch's mailbox: the recipient fetches every epoch since its last
 * fetch, and drops duplicates by message ID). */
static int out_seal(store_svc *s, sendq *o, dht_ts now) {
  uint32_t ep = store_svc_epoch(s, now);
  uint8_t nonce[STORE_NONCE_LEN];
  store_svc_rand(s, nonce, sizeof nonce);
  o->deposited_s = (uint64_t)store_svc_unix_s(s, now);
  if (o->request) {
    int rc = store_reqbox_seal(s, o, ep);
    if (rc)
      return rc;
  } else {
    uint8_t pair[STORE_KEY_LEN];
    int rc = store_pair_secret(pair, &s->self, o->friend_pk);
    if (rc)
      return rc;
    store_mbox_derive(&o->k, pair, s->self.pk, o->friend_pk, ep);
    sodium_memzero(pair, sizeof pair);
    dht_ssize n = store_seal(o->item, &o->k, &o->msg, nonce);
    if (n < 0)
      return (int)n;
    o->item_len = (uint16_t)n;
    store_deposit_sign(o->sig, &o->k, o->deposited_s, o->item, o->item_len);
  }
  store_item_hash(o->hash, o->item, o->item_len);
  o->nrcpt = o->asked = o->answered = o->refused = 0;
  o->reason = 0;
  return 0;
}

void store_outbox_begin(store_svc *s, sendq *o, dht_ts now) {
  if (out_seal(s, o, now)) {
    o->phase = P_WAIT;
    o->retry_at = now + o->backoff;
    return;
  }
  if (o->request) {
    o->phase = P_LOOKUP;
    o->lookup = store_svc_lookup(s, o->k.id, false, now);
  } else {
    o->phase = P_RECORD;
    uint8_t fid[DHT_ID_LEN];
    dht_id_from_pk(fid, o->friend_pk);
    o->lookup = store_svc_lookup(s, fid, true, now);
  }
  if (o->lookup < 0) {
    o->phase = P_WAIT;
    o->retry_at = now + o->backoff;
  }
}

/* ---- deposits and direct delivery ---------------------------------- */

/* o's DEPOSIT into buf (DHT_MAX_BODY bytes).  Returns its length, 0 if it
 * does not fit. */
static size_t build_deposit(const sendq *o, uint8_t *buf, uint32_t txid, uint8_t flags) {
  store_wire_msg m = {.type = STORE_T_DEPOSIT, .txid = txid};
  m.u.deposit.flags = flags;
  m.u.deposit.mbox = o->k.id;
  m.u.deposit.mbox_pk = o->k.pk;
  m.u.deposit.deposited_s = o->deposited_s;
  m.u.deposit.item = o->item;
  m.u.deposit.item_len = o->item_len;
  m.u.deposit.sig = o->sig;
  dht_ssize n = store_wire_encode(buf, DHT_MAX_BODY, &m);
  return n < 0 ? 0 : (size_t)n;
}

/* Deposit at the r closest contacts and the friend's hosts. */
void store_outbox_deposit(store_svc *s, sendq *o, const dht_lookup_result *res, dht_ts now) {
  o->phase = P_DEPOSIT;
  uint8_t buf[DHT_MAX_BODY];
  uint8_t flags = o->request ? STORE_F_REQUEST : 0;
  int n = 0;
  for (int i = 0; res && i < res->ncontacts && n < s->set.replicas; i++) {
    dht_peer p;
    memcpy(p.pk, res->contacts[i].pk, DHT_PK_LEN);
    p.addr = res->contacts[i].addr;
    uint32_t txid = store_svc_txid(s);
    size_t len = build_deposit(o, buf, txid, flags);
    if (len && store_svc_rpc_start(s, &p, buf, len, txid, STORE_T_DEPOSIT, O_OUT, o->id, n,
                                   s->set.rpc_tries, s->set.rpc_timeout_ms, now) == 0)
      n++;
  }
  const store_friend *f = o->request ? NULL : store_svc_friend_find(s, o->friend_pk);
  for (int i = 0; f && i < f->nhosts; i++) {
    if (f->hosts[i].addr.family == DHT_AF_NONE)
      continue;
    dht_peer p;
    memcpy(p.pk, f->hosts[i].pk, DHT_PK_LEN);
    p.addr = f->hosts[i].addr;
    uint32_t txid = store_svc_txid(s);
    size_t len = build_deposit(o, buf, txid, STORE_F_HOSTED);
    if (len && store_svc_rpc_start(s, &p, buf, len, txid, STORE_T_DEPOSIT, O_OUT, o->id, n,
                                   s->set.rpc_tries, s->set.rpc_timeout_ms, now) == 0)
      n++;
  }
  o->asked = n;
  s->st.sent_deposited++;
  if (n == 0) {
    o->phase = P_WAIT;
    o->retry_at = now + o->backoff;
    store_outbox_event(s, o, STORE_ST_QUEUED, DHT_ERR_NOTFOUND);
  }
}

/* All deposit answers are in (or timed out). */
void store_outbox_deposit_done(store_svc *s, int i, dht_ts now) {
  sendq *o = &s->outs[i];
  if (o->nrcpt >= s->set.stored_receipts || (o->asked > 0 && o->nrcpt >= o->asked)) {
    store_outbox_event(s, o, STORE_ST_STORED, 0);
    store_outbox_remove(s, i);
    return;
  }
  o->phase = P_WAIT;
  o->retry_at = now + o->backoff;
  o->backoff = o->backoff * 2 > s->set.retry_max_ms ? s->set.retry_max_ms : o->backoff * 2;
  store_outbox_event(s, o, STORE_ST_QUEUED, o->reason ? o->reason : DHT_ERR_TIMEOUT);
}

void store_outbox_on_receipt(store_svc *s, int oi, const rpc *rq, const store_wire_msg *m,
                             dht_ts now) {
  sendq *o = &s->outs[oi];
  uint8_t status = m->u.receipt.status;
  const uint8_t *hash = m->u.receipt.hash, *sig = m->u.receipt.sig;
  o->answered++;
  if (status != STORE_W_OK) {
    o->refused++;
    o->reason = store_wire_status_err(status);
  } else {
    uint8_t nid[DHT_ID_LEN];
    dht_id_from_pk(nid, rq->to.pk);
    if (sig && !memcmp(hash, o->hash, 16) && store_receipt_verify(sig, rq->to.pk, o->k.id, hash)) {
      bool dup = false;
      for (int j = 0; j < o->nrcpt; j++)
        dup |= !memcmp(o->rcpt[j], nid, DHT_ID_LEN);
      if (!dup && o->nrcpt < MAX_REPL) {
        memcpy(o->rcpt[o->nrcpt++], nid, DHT_ID_LEN);
        s->st.receipts_in++;
      }
      if (o->nrcpt >= s->set.stored_receipts && !o->stored_reported) {
        o->stored_reported = true;
        store_outbox_event(s, o, STORE_ST_STORED, 0);
      }
    }
  }
  if (o->answered >= o->asked)
    store_outbox_deposit_done(s, oi, now);
}

/* One DIRECT to the friend at p (an address, or its key alone: its path). */
static bool direct_to(store_svc *s, sendq *o, const dht_peer *p, int aux, dht_ts now) {
  uint8_t buf[DHT_MAX_BODY];
  uint32_t txid = store_svc_txid(s);
  store_wire_msg m = {.type = STORE_T_DIRECT, .txid = txid};
  m.u.direct.mbox = o->k.id;
  m.u.direct.deposited_s = o->deposited_s;
  m.u.direct.item = o->item;
  m.u.direct.item_len = o->item_len;
  m.u.direct.sig = o->sig;
  dht_ssize n = store_wire_encode(buf, sizeof buf, &m);
  return n > 0 && store_svc_rpc_start(s, p, buf, (size_t)n, txid, STORE_T_DIRECT, O_OUT, o->id, aux,
                                      1, s->set.direct_timeout_ms, now) == 0;
}

static void to_mailbox(store_svc *s, sendq *o, dht_ts now) {
  o->phase = P_LOOKUP;
  o->lookup = store_svc_lookup(s, o->k.id, false, now);
  if (o->lookup < 0) {
    o->phase = P_WAIT;
    o->retry_at = now + o->backoff;
  }
}

/* Over the path the engine holds for the friend's key; false when none. */
static bool direct_over_path(store_svc *s, sendq *o, dht_ts now) {
  dht_path_info pi;
  if (dht_path_get(s->e, o->friend_pk, &pi) != 0)
    return false;
  dht_peer p;
  memset(&p, 0, sizeof p); /* no address: the engine takes the key's path */
  memcpy(p.pk, o->friend_pk, DHT_PK_LEN);
  o->phase = P_DIRECT;
  o->direct_left = 0;
  o->path = pi.method;
  if (direct_to(s, o, &p, 0, now))
    o->direct_left++;
  return o->direct_left > 0;
}

void store_outbox_direct(store_svc *s, sendq *o, const dht_record *rec, dht_ts now) {
  if (direct_over_path(s, o, now))
    return;
  /* a friend behind a NAT that names introducers: the driver punches a
   * path (STORE_EV_PATH), and we wait for it a while before the mailbox */
  if (!(rec->flags & DHT_REC_REACHABLE) && rec->nintro > 0 && s->set.path_wait_ms > 0) {
    store_event *ev = store_svc_event(s, STORE_EV_PATH, 0, 0);
    if (ev) {
      memcpy(ev->u.path.friend_pk, o->friend_pk, DHT_PK_LEN);
      ev->u.path.nintro = rec->nintro;
      memcpy(ev->u.path.intro, rec->intro, (size_t)rec->nintro * sizeof rec->intro[0]);
      o->phase = P_PATH;
      o->retry_at = now + s->set.path_wait_ms;
      return;
    }
  }
  o->phase = P_DIRECT;
  o->direct_left = 0;
  o->path = 0;
  for (int i = 0; i < rec->naddrs && o->direct_left < 2; i++) {
    dht_peer p;
    memcpy(p.pk, o->friend_pk, DHT_PK_LEN);
    p.addr = rec->addrs[i].addr;
    if (direct_to(s, o, &p, i, now))
      o->direct_left++;
  }
  if (o->direct_left == 0)
    to_mailbox(s, o, now);
}

void store_outbox_no_path(store_svc *s, sendq *o, dht_ts now) {
  to_mailbox(s, o, now);
}

void store_path_ready(store_svc *s, const uint8_t pk[static DHT_PK_LEN], bool ok, dht_ts now) {
  for (int i = 0; i < s->nouts; i++) {
    sendq *o = &s->outs[i];
    if (o->phase != P_PATH || memcmp(o->friend_pk, pk, DHT_PK_LEN) != 0)
      continue;
    if (!ok || !direct_over_path(s, o, now))
      to_mailbox(s, o, now);
  }
}

/* ---- commands ------------------------------------------------------ */

static int64_t out_new(store_svc *s, const uint8_t pk[DHT_PK_LEN], const store_msg *msg,
                       bool internal, bool request, dht_ts now) {
  for (int i = 0; i < s->nouts; i++) /* a re-send of a message in flight */
    if (!memcmp(s->outs[i].msg.id, msg->id, STORE_MSGID_LEN) &&
        !memcmp(s->outs[i].friend_pk, pk, DHT_PK_LEN))
      return s->outs[i].cmd;
  int rc = store_svc_grow(s, (void **)&s->outs, s->nouts, &s->capouts, sizeof *s->outs,
                          s->set.max_outgoing);
  if (rc)
    return rc;
  sendq *o = &s->outs[s->nouts++];
  memset(o, 0, sizeof *o);
  o->id = ++s->next_id;
  o->cmd = ++s->next_cmd;
  memcpy(o->friend_pk, pk, DHT_PK_LEN);
  o->msg = *msg;
  o->internal = internal;
  o->request = request;
  o->backoff = s->set.retry_min_ms;
  store_outbox_begin(s, o, now);
  return o->cmd;
}

int64_t store_send(store_svc *s, const uint8_t friend_pk[static DHT_PK_LEN], const store_msg *msg,
                   dht_ts now) {
  if (!msg || msg->len > STORE_TEXT_MAX)
    return msg ? STORE_ERR_TOOBIG : DHT_ERR_INVAL;
  if (!store_svc_friend_find(s, friend_pk) || msg->kind != STORE_KIND_TEXT)
    return DHT_ERR_INVAL;
  return out_new(s, friend_pk, msg, false, false, now);
}

int64_t store_request_send(store_svc *s, const uint8_t to_pk[static DHT_PK_LEN],
                           const uint8_t *note, size_t len, dht_ts now) {
  if (len > STORE_NOTE_MAX || (len && !note) || !memcmp(to_pk, s->self.pk, DHT_PK_LEN))
    return DHT_ERR_INVAL;
  store_msg m;
  memset(&m, 0, sizeof m);
  store_svc_rand(s, m.id, sizeof m.id);
  m.kind = STORE_KIND_TEXT;
  m.len = (uint16_t)len;
  m.sent_unix_ms = dht_unix_ms(s->e, now);
  if (len)
    memcpy(m.body, note, len);
  return out_new(s, to_pk, &m, false, true, now);
}

int store_send_cancel(store_svc *s, const uint8_t msg_id[static STORE_MSGID_LEN]) {
  for (int i = 0; i < s->nouts; i++)
    if (!memcmp(s->outs[i].msg.id, msg_id, STORE_MSGID_LEN)) {
      store_outbox_remove(s, i);
      return 0;
    }
  return DHT_ERR_NOTFOUND;
}

/* Sends a receipt (delivered or read) for ids to friend pk. */
void store_outbox_receipts(store_svc *s, const uint8_t pk[DHT_PK_LEN], int kind,
                           const store_msgid *ids, int n, dht_ts now) {
  while (n > 0) {
    int k = n > STORE_TEXT_MAX / STORE_MSGID_LEN ? STORE_TEXT_MAX / STORE_MSGID_LEN : n;
    store_msg m;
    memset(&m, 0, sizeof m);
    store_svc_rand(s, m.id, sizeof m.id);
    m.kind = (uint8_t)kind;
    m.sent_unix_ms = dht_unix_ms(s->e, now);
    m.len = (uint16_t)(k * STORE_MSGID_LEN);
    memcpy(m.body, ids, m.len);
    out_new(s, pk, &m, true, false, now);
    ids += k;
    n -= k;
  }
}

int store_mark_read(store_svc *s, const uint8_t friend_pk[static DHT_PK_LEN],
                    const store_msgid *ids, int n, dht_ts now) {
  if (!store_svc_friend_find(s, friend_pk) || n < 0 || (n && !ids))
    return DHT_ERR_INVAL;
  store_outbox_receipts(s, friend_pk, STORE_KIND_READ, ids, n, now);
  return 0;
}

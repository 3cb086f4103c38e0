/*
 * store_svc.c - the mailbox service: a dht/ service owning message types
 * 0x30-0x3f (docs/mailbox.md is the protocol).
 *
 * It plays two parts on every node:
 *
 *  - storage node: accepts signed deposits within quotas, answers signed
 *    FETCH/DELETE, keeps tombstones, hands items to closer nodes and keeps
 *    the r replicas of each mailbox in agreement (reconciliation below);
 *  - user agent: sends (direct first, then deposit at the r nodes closest to
 *    the mailbox ID plus the friend's hosts, retried with backoff until
 *    "stored"), fetches friends' mailboxes, deletes what it fetched and sends
 *    delivery receipts, which are themselves small mailbox messages.
 *
 * Everything it remembers is capped by store_settings; objects refer to each
 * other by 32-bit ids, never by pointers (arrays move when they grow).  Order
 * never depends on pointers: arrays keep insertion order or are sorted.
 *
 * Reconciliation of one mailbox between two replicas (a fixed two-level
 * range split of the item-hash space, after Meyer's range-based set
 * reconciliation): the initiator sends the XOR fingerprint of its entries;
 * equal sets cost one small round trip.  Otherwise the responder answers with
 * the fingerprints of 16 sub-ranges (first nibble of the hash), the initiator
 * sends its entries in the sub-ranges that differ, and each side pushes what
 * the other lacks.  Traffic grows with the number of differing sub-ranges,
 * not with the mailbox.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "store.h"
#include "store_wire.h"

#define MAX_REPL 12 /* r + hosts + slack */
#define JOB_ITEMS 256
#define HOST_MBOX_MAX 256 /* registered mailbox IDs per hosted friend */
#define REG_EPOCHS 3      /* register this epoch and the next two */
#define FETCH_JOBS 8      /* mailboxes fetched at once */
#define RECON_PER_TICK 32 /* mailboxes reconciled per timer run */
#define GRANT_MS 120000
#define EXPIRE_PER_TICK 256 /* records expired per timer run */
#define MAX_JOBS 4096       /* mailboxes in one fetch round */

/* ---- state -------------------------------------------------------------- */

enum owner { O_NONE = 0, O_OUT, O_JOB, O_RECON, O_OTHER };

typedef struct rpc {
  uint32_t txid;
  uint8_t type;
  uint8_t owner; /* enum owner */
  uint16_t len;
  uint32_t oid; /* the owner's id */
  int aux;      /* owner-specific (replica index ...) */
  int tries;
  dht_ts deadline, timeout;
  dht_peer to;
  uint8_t *body; /* retransmit copy */
} rpc;

enum out_phase { P_RECORD = 1, P_DIRECT, P_LOOKUP, P_DEPOSIT, P_WAIT };

typedef struct sendq {
  uint32_t id;
  int64_t cmd;
  uint8_t friend_pk[DHT_PK_LEN];
  store_msg msg;
  bool internal; /* a receipt: no STATE events */
  bool request;  /* a friend request (request box, PoW) */
  bool stored_reported;
  int phase;
  int64_t lookup;
  int direct_left;
  store_mbox_keys k;
  uint64_t deposited_s;
  uint16_t item_len;
  uint8_t item[STORE_ITEM_MAX];
  uint8_t hash[STORE_HASH_LEN];
  uint8_t sig[DHT_SIG_LEN];
  uint8_t rcpt[MAX_REPL][DHT_ID_LEN];
  int nrcpt, asked, answered, refused, reason;
  dht_ts retry_at, backoff;
} sendq;

typedef struct jitem {
  uint8_t hash[STORE_HASH_LEN];
  uint8_t kind;
  uint8_t state;    /* 0 listed, 1 asking, 2 done */
  uint16_t holders; /* bit per replica */
  int tried;
} jitem;

enum job_phase { J_WAIT = 0, J_LOOKUP, J_LIST, J_ITEMS, J_DELETE, J_DONE };

typedef struct job {
  uint32_t id;
  int64_t round;
  uint8_t friend_pk[DHT_PK_LEN];
  bool reqbox;
  store_mbox_keys k;
  int phase;
  int64_t lookup;
  int nrep;
  dht_peer rep[MAX_REPL];
  uint8_t rep_id[MAX_REPL][DHT_ID_LEN];
  int rep_answered, rep_pending;
  int nitems;
  jitem items[JOB_ITEMS];
  int inflight;
  int lost;
  int newmsgs;
  uint8_t delivered[STORE_LIST_MAX][STORE_MSGID_LEN];
  int ndelivered;
} job;

typedef struct grant {
  uint8_t pk[DHT_PK_LEN];
  uint8_t mbox[STORE_MBOX_LEN];
  dht_ts until;
} grant;

typedef struct wait_rcpt { /* a receipt that waits for durability */
  int64_t seq;
  dht_peer to;
  uint32_t txid;
  uint8_t mbox[STORE_MBOX_LEN];
  uint8_t hash[STORE_HASH_LEN];
  uint8_t type; /* STORE_T_RECEIPT or STORE_T_ACK */
} wait_rcpt;

typedef struct hosted {
  uint8_t pk[DHT_PK_LEN];
  int64_t quota;
  int nids;
  uint8_t (*ids)[STORE_MBOX_LEN];
} hosted;

typedef struct recon { /* one reconciliation with one peer */
  uint32_t id;
  uint8_t mbox[STORE_MBOX_LEN];
  dht_peer peer;
  bool handoff; /* we are not a replica any more */
} recon;

struct store_svc {
  dht *e;
  dht_identity self;
  uint8_t self_id[DHT_ID_LEN];
  store_backend be;
  store_settings set;
  dht_callbacks cb;
  dht_mem mem;
  store_stats st;
  uint32_t next_id;
  int64_t next_cmd;

  rpc *rpcs;
  int nrpcs, caprpcs;
  sendq *outs;
  int nouts, capouts;
  job *jobs;
  int njobs, capjobs;
  int64_t round_cmd; /* the fetch round in progress, 0 if none */
  int round_friends, round_msgs, round_asked, round_answered;
  bool round_failed;
  grant *grants;
  int ngrants, capgrants;
  wait_rcpt *waits;
  int nwaits, capwaits;
  store_friend *friends;
  int nfriends, capfriends;
  hosted *hosts;
  int nhosts, caphosts;
  store_host_ref my_hosts[STORE_MAX_HOSTS];
  int nmy_hosts;
  recon *recons;
  int nrecons, caprecons;
  store_event *evs;
  int nevs, capevs, evhead;

  dht_ts next_poll, next_recon, next_expire, next_register;
  uint8_t recon_after[STORE_MBOX_LEN];
  bool recon_cursor_set;
  uint8_t nb_hash[16]; /* our neighbourhood, to notice membership changes */
  bool nb_known;
  store_rec rec;  /* scratch */
  store_rec rec2; /* scratch */
};

/* ---- small helpers ---------------------------------------------------- */

static void *xrealloc(store_svc *s, void *p, size_t n) {
  if (s->mem.realloc)
    return s->mem.realloc(s->mem.ctx, p, n);
  return realloc(p, n);
}

static void xfree(store_svc *s, void *p) {
  if (!p)
    return;
  if (s->mem.free)
    s->mem.free(s->mem.ctx, p);
  else
    free(p);
}

/* Makes room for one more element in *arr (count n, capacity *cap) up to
 * limit.  0 or DHT_ERR_FULL / DHT_ERR_NOMEM. */
static int grow(store_svc *s, void **arr, int n, int *cap, size_t elem, int limit) {
  if (n < *cap)
    return 0;
  if (n >= limit)
    return DHT_ERR_FULL;
  int nc = *cap ? *cap * 2 : 4;
  if (nc > limit)
    nc = limit;
  void *na = xrealloc(s, *arr, (size_t)nc * elem);
  if (!na)
    return DHT_ERR_NOMEM;
  *arr = na;
  *cap = nc;
  return 0;
}

static void rnd(store_svc *s, void *buf, size_t n) {
  s->cb.rand(s->cb.ctx, buf, n);
}

static uint32_t new_txid(store_svc *s) {
  uint32_t t;
  do
    rnd(s, &t, sizeof t);
  while (t == 0);
  return t;
}

static int64_t unix_s(const store_svc *s, dht_ts now) {
  return dht_unix_ms(s->e, now) / 1000;
}

static uint32_t epoch_now(const store_svc *s, dht_ts now) {
  return store_epoch_of(dht_unix_ms(s->e, now), s->set.epoch_ms);
}

static dht_ts min_ts(dht_ts a, dht_ts b) {
  return a < b ? a : b;
}

static int xor_cmp(const uint8_t *target, const uint8_t *a, const uint8_t *b) {
  for (int i = 0; i < DHT_ID_LEN; i++) {
    uint8_t da = a[i] ^ target[i], db = b[i] ^ target[i];
    if (da != db)
      return da < db ? -1 : 1;
  }
  return 0;
}

/* ---- events ------------------------------------------------------------- */

static store_event *ev_push(store_svc *s, int type, int64_t cmd, int status) {
  if (s->evhead > 0 && s->evhead == s->nevs)
    s->evhead = s->nevs = 0;
  if (s->nevs - s->evhead >= s->set.max_events)
    return NULL;
  if (s->nevs == s->capevs && s->evhead > 0) {
    memmove(s->evs, s->evs + s->evhead, (size_t)(s->nevs - s->evhead) * sizeof *s->evs);
    s->nevs -= s->evhead;
    s->evhead = 0;
  }
  if (grow(s, (void **)&s->evs, s->nevs, &s->capevs, sizeof *s->evs, s->set.max_events))
    return NULL;
  store_event *ev = &s->evs[s->nevs++];
  memset(ev, 0, sizeof *ev);
  ev->type = type;
  ev->cmd = cmd;
  ev->status = status;
  return ev;
}

int store_poll_event(store_svc *s, store_event *ev) {
  if (s->evhead >= s->nevs)
    return DHT_ERR_NOTFOUND;
  *ev = s->evs[s->evhead++];
  if (s->evhead == s->nevs)
    s->evhead = s->nevs = 0;
  return 0;
}

/* ---- rpcs -------------------------------------------------------------- */

static int send_body(store_svc *s, const dht_peer *to, const uint8_t *body, size_t len) {
  return dht_svc_send(s->e, to, body, len);
}

/* Sends a request and remembers it for retransmission.  Returns 0 or an
 * error (the request was not sent). */
static int rpc_start(store_svc *s, const dht_peer *to, const uint8_t *body, size_t len,
                     uint32_t txid, uint8_t type, int owner, uint32_t oid, int aux, int tries,
                     dht_ts timeout, dht_ts now) {
  int rc =
      grow(s, (void **)&s->rpcs, s->nrpcs, &s->caprpcs, sizeof *s->rpcs, s->set.max_pending_rpcs);
  if (rc)
    return rc;
  uint8_t *copy = xrealloc(s, NULL, len);
  if (!copy)
    return DHT_ERR_NOMEM;
  memcpy(copy, body, len);
  rpc *r = &s->rpcs[s->nrpcs++];
  memset(r, 0, sizeof *r);
  r->txid = txid;
  r->type = type;
  r->owner = (uint8_t)owner;
  r->oid = oid;
  r->aux = aux;
  r->tries = tries;
  r->timeout = timeout;
  r->deadline = now + timeout;
  r->to = *to;
  r->len = (uint16_t)len;
  r->body = copy;
  send_body(s, to, body, len);
  return 0;
}

static void rpc_drop(store_svc *s, int i) {
  xfree(s, s->rpcs[i].body);
  memmove(&s->rpcs[i], &s->rpcs[i + 1], (size_t)(s->nrpcs - i - 1) * sizeof *s->rpcs);
  s->nrpcs--;
}

static int rpc_find(store_svc *s, uint32_t txid, const uint8_t pk[DHT_PK_LEN]) {
  for (int i = 0; i < s->nrpcs; i++)
    if (s->rpcs[i].txid == txid && !memcmp(s->rpcs[i].to.pk, pk, DHT_PK_LEN))
      return i;
  return -1;
}

static void drop_owner_rpcs(store_svc *s, int owner, uint32_t oid) {
  for (int i = s->nrpcs - 1; i >= 0; i--)
    if (s->rpcs[i].owner == owner && s->rpcs[i].oid == oid)
      rpc_drop(s, i);
}

/* ---- message building ------------------------------------------------ */

/* Sends an answer that carries only a status (a refusal, or an ACK):
 * every other field empty or zero, as the layout of its type allows. */
static void reply_status(store_svc *s, const dht_peer *to, uint8_t type, uint32_t txid,
                         uint64_t status) {
  static const uint8_t zero[STORE_HASH_LEN] = {0};
  uint8_t buf[64];
  store_wire_msg m;
  memset(&m, 0, sizeof m);
  m.type = type;
  m.txid = txid;
  switch (type) {
  case STORE_T_DIRECT_ACK:
    m.u.direct_ack.status = (uint8_t)status;
    break;
  case STORE_T_ACK:
    m.u.ack.status = (uint8_t)status;
    break;
  case STORE_T_RECEIPT: /* the hash field is fixed-size: zeros */
    m.u.receipt.status = (uint8_t)status;
    m.u.receipt.hash = zero;
    break;
  case STORE_T_LIST:
    m.u.list.status = (uint8_t)status;
    break;
  case STORE_T_ITEM:
    m.u.item.status = (uint8_t)status;
    break;
  case STORE_T_RECON_R:
    m.u.recon_r.status = (uint8_t)status;
    break;
  default: /* STORE_T_RECON_LR */
    m.u.recon_lr.status = (uint8_t)status;
    break;
  }
  dht_ssize n = store_wire_encode(buf, sizeof buf, &m);
  if (n > 0)
    send_body(s, to, buf, (size_t)n);
}

/* ---- the storage node: deposits --------------------------------------- */

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

static void queue_receipt(store_svc *s, int64_t seq, const dht_peer *to, uint32_t txid,
                          const uint8_t mbox[STORE_MBOX_LEN], const uint8_t hash[STORE_HASH_LEN],
                          uint8_t type);

static void send_receipt(store_svc *s, const dht_peer *to, uint32_t txid,
                         const uint8_t mbox[STORE_MBOX_LEN], const uint8_t hash[STORE_HASH_LEN]) {
  uint8_t buf[160], sig[DHT_SIG_LEN];
  store_receipt_sign(sig, &s->self, mbox, hash);
  store_wire_msg m = {.type = STORE_T_RECEIPT, .txid = txid};
  m.u.receipt.status = STORE_W_OK;
  m.u.receipt.hash = hash;
  m.u.receipt.sig = sig;
  dht_ssize n = store_wire_encode(buf, sizeof buf, &m);
  if (n > 0 && send_body(s, to, buf, (size_t)n) == 0)
    s->st.receipts_out++;
}

/* Request box of pk for epoch: BLAKE2b-256("roost-reqbox-v1" || pk || epoch BE). */
static void reqbox_id(uint8_t out[STORE_MBOX_LEN], const uint8_t pk[DHT_PK_LEN], uint32_t epoch) {
  crypto_generichash_state st;
  uint8_t e4[4] = {(uint8_t)(epoch >> 24), (uint8_t)(epoch >> 16), (uint8_t)(epoch >> 8),
                   (uint8_t)epoch};
  crypto_generichash_init(&st, NULL, 0, STORE_MBOX_LEN);
  crypto_generichash_update(&st, (const uint8_t *)"roost-reqbox-v1", 15);
  crypto_generichash_update(&st, pk, DHT_PK_LEN);
  crypto_generichash_update(&st, e4, 4);
  crypto_generichash_final(&st, out, STORE_MBOX_LEN);
}

#define POW_BITS 16
/* A request's plaintext (sender key, length, note, zeros) is padded so that
 * the sealed box is exactly the largest item size. */
#define REQ_PLAIN (STORE_ITEM_MAX - crypto_box_SEALBYTES)
#define REQBOX_ITEMS 16

/* Proof of work of a friend request: the first 8 bytes of its "signature"
 * are a nonce such that BLAKE2b-256("roost-pow-v1" || mbox || item || nonce)
 * starts with POW_BITS zero bits. */
static bool pow_ok(const uint8_t mbox[STORE_MBOX_LEN], const uint8_t *item, size_t len,
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
static bool is_reqbox(store_svc *s, const uint8_t mbox[STORE_MBOX_LEN],
                      const uint8_t pk[DHT_PK_LEN], dht_ts now) {
  uint32_t e = epoch_now(s, now);
  for (int d = -1; d <= 1; d++) {
    uint8_t id[STORE_MBOX_LEN];
    reqbox_id(id, pk, e + (uint32_t)d);
    if (!memcmp(id, mbox, STORE_MBOX_LEN))
      return true;
  }
  return false;
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
  int64_t t = unix_s(s, now);
  hosted *h = (flags & STORE_F_HOSTED) ? hosted_for_mbox(s, mbox) : NULL;
  int64_t ttl = h ? s->set.ttl_hosted_s : s->set.ttl_dht_s;
  if ((int64_t)dep_s > t + s->set.time_window_s || (int64_t)dep_s + ttl < t)
    return STORE_W_TIME;
  if (request) {
    if (!is_reqbox(s, mbox, mbox_pk, now) || !pow_ok(mbox, item, len, sig))
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

static void on_deposit(store_svc *s, const dht_peer *from, const store_wire_msg *m, dht_ts now) {
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
    reply_status(s, from, STORE_T_RECEIPT, txid, (uint64_t)w);
    return;
  }
  if (seq > 0 && (flags & STORE_F_PUSH))
    s->st.recon_items_pulled++;
  if (seq > 0 && s->be.durable(s->be.ctx) < seq)
    queue_receipt(s, seq, from, txid, mbox, hash, STORE_T_RECEIPT);
  else
    send_receipt(s, from, txid, mbox, hash);
}

static void queue_receipt(store_svc *s, int64_t seq, const dht_peer *to, uint32_t txid,
                          const uint8_t mbox[STORE_MBOX_LEN], const uint8_t hash[STORE_HASH_LEN],
                          uint8_t type) {
  if (grow(s, (void **)&s->waits, s->nwaits, &s->capwaits, sizeof *s->waits,
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

void store_svc_durable(store_svc *s, int64_t seq, dht_ts now) {
  (void)now;
  int j = 0;
  for (int i = 0; i < s->nwaits; i++) {
    wait_rcpt *w = &s->waits[i];
    if (w->seq <= seq) {
      if (w->type == STORE_T_RECEIPT)
        send_receipt(s, &w->to, w->txid, w->mbox, w->hash);
      else
        reply_status(s, &w->to, w->type, w->txid, STORE_W_OK);
    } else {
      s->waits[j++] = *w;
    }
  }
  s->nwaits = j;
}

/* ---- the storage node: fetch, get, delete ----------------------------- */

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
  if (grow(s, (void **)&s->grants, s->ngrants, &s->capgrants, sizeof *s->grants, s->set.max_grants))
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
  int64_t ut = unix_s(s, now);
  if ((int64_t)t > ut + s->set.time_window_s || (int64_t)t < ut - s->set.time_window_s)
    return STORE_W_TIME;
  if (store_auth_verify(sig, op, mbox, mpk, s->self_id, from->pk, t, hashes, nh))
    return STORE_W_OK;
  if (is_reqbox(s, mbox, mpk, now)) {
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

static void on_fetch(store_svc *s, const dht_peer *from, const store_wire_msg *m, dht_ts now) {
  const uint8_t *mbox = m->u.fetch.mbox, *after = m->u.fetch.after;
  uint32_t txid = m->txid;
  s->st.fetches_in++;
  int w = check_auth(s, STORE_AUTH_FETCH, from, mbox, m->u.fetch.mbox_pk, m->u.fetch.time_s,
                     m->u.fetch.sig, NULL, 0, now);
  if (w != STORE_W_OK) {
    s->st.fetches_refused++;
    reply_status(s, from, STORE_T_LIST, txid, (uint64_t)w);
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
    send_body(s, from, buf, (size_t)n);
}

static void on_getitem(store_svc *s, const dht_peer *from, const store_wire_msg *m, dht_ts now) {
  const uint8_t *mbox = m->u.getitem.mbox, *hash = m->u.getitem.hash;
  uint32_t txid = m->txid;
  if (!grant_ok(s, from->pk, mbox, now)) {
    reply_status(s, from, STORE_T_ITEM, txid, STORE_W_BADSIG);
    return;
  }
  if (s->be.get(s->be.ctx, mbox, hash, &s->rec) != 0 || s->rec.kind != STORE_REC_ITEM) {
    reply_status(s, from, STORE_T_ITEM, txid, STORE_W_NOTFOUND);
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
  if (n > 0 && send_body(s, from, buf, (size_t)n) == 0)
    s->st.items_served++;
}

/* Serialises a delete proof: storage_id(32) requester(32) time(8 BE) n(1)
 * hashes(n*16) sig(64). */
static size_t proof_pack(uint8_t *out, const uint8_t sid[32], const uint8_t req[32], uint64_t t,
                         const uint8_t *hashes, size_t nh, const uint8_t sig[64]) {
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
static int64_t put_tombs(store_svc *s, const uint8_t mbox[32], const uint8_t mpk[32],
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

static void on_delete(store_svc *s, const dht_peer *from, const store_wire_msg *m, dht_ts now) {
  const uint8_t *mbox = m->u.del.mbox, *mpk = m->u.del.mbox_pk, *hashes = m->u.del.hashes,
                *sig = m->u.del.sig;
  size_t hn = m->u.del.nhashes * STORE_HASH_LEN;
  uint64_t t = m->u.del.time_s;
  uint32_t txid = m->txid;
  s->st.deletes_in++;
  int w = check_auth(s, STORE_AUTH_DELETE, from, mbox, mpk, t, sig, hashes, hn / 16, now);
  if (w != STORE_W_OK) {
    s->st.deletes_refused++;
    reply_status(s, from, STORE_T_ACK, txid, (uint64_t)w);
    return;
  }
  uint8_t proof[STORE_PROOF_MAX];
  size_t plen = proof_pack(proof, s->self_id, from->pk, t, hashes, hn / 16, sig);
  int deleted = 0;
  int64_t seq = put_tombs(s, mbox, mpk, hashes, (int)(hn / 16), proof, plen, &deleted);
  /* evicted notices go for good once their owner has seen them */
  for (size_t i = 0; i < hn / 16; i++)
    if (s->be.get(s->be.ctx, mbox, hashes + i * 16, &s->rec2) == 0 &&
        s->rec2.kind == STORE_REC_EVICTED)
      s->be.del(s->be.ctx, mbox, hashes + i * 16);
  if (seq > 0 && s->be.durable(s->be.ctx) < seq)
    queue_receipt(s, seq, from, txid, mbox, hashes, STORE_T_ACK);
  else
    reply_status(s, from, STORE_T_ACK, txid, STORE_W_OK);
}

static void on_tomb(store_svc *s, const dht_peer *from, const store_wire_msg *m) {
  const uint8_t *mbox = m->u.tomb.mbox, *mpk = m->u.tomb.mbox_pk, *proof = m->u.tomb.proof;
  const uint8_t *hashes;
  size_t plen = m->u.tomb.proof_len;
  uint32_t txid = m->txid;
  int nh = proof_check(proof, plen, mbox, mpk, &hashes);
  if (nh < 0) {
    reply_status(s, from, STORE_T_ACK, txid, STORE_W_BADSIG);
    return;
  }
  put_tombs(s, mbox, mpk, hashes, nh, proof, plen, NULL);
  reply_status(s, from, STORE_T_ACK, txid, STORE_W_OK);
}

/* ---- the storage node: friend hosting --------------------------------- */

static void on_register(store_svc *s, const dht_peer *from, const store_wire_msg *m) {
  const uint8_t *ids = m->u.reg.ids, *sig = m->u.reg.sig;
  size_t in = m->u.reg.nids * STORE_MBOX_LEN;
  uint32_t txid = m->txid;
  hosted *h = hosted_find(s, from->pk);
  uint8_t msg[17 + 32 * 32];
  memcpy(msg, "roost-register-v1", 17);
  memcpy(msg + 17, ids, in);
  if (!h) {
    reply_status(s, from, STORE_T_ACK, txid, STORE_W_REFUSED);
    return;
  }
  if (crypto_sign_verify_detached(sig, msg, 17 + in, from->pk) != 0) {
    reply_status(s, from, STORE_T_ACK, txid, STORE_W_BADSIG);
    return;
  }
  for (size_t i = 0; i < in / 32; i++) {
    bool known = false;
    for (int j = 0; j < h->nids && !known; j++)
      known = !memcmp(h->ids[j], ids + i * 32, 32);
    if (known)
      continue;
    if (!h->ids) {
      h->ids = xrealloc(s, NULL, HOST_MBOX_MAX * sizeof *h->ids);
      if (!h->ids)
        break;
    }
    if (h->nids == HOST_MBOX_MAX) { /* oldest registration out */
      memmove(h->ids, h->ids + 1, (HOST_MBOX_MAX - 1) * sizeof *h->ids);
      h->nids--;
    }
    memcpy(h->ids[h->nids++], ids + i * 32, 32);
  }
  reply_status(s, from, STORE_T_ACK, txid, STORE_W_OK);
}

/* ---- the storage node: reconciliation ---------------------------------- */

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

/* Pushes one record (item or tombstone) of ours to peer. */
static void push_rec(store_svc *s, const dht_peer *to, const store_rec *r, dht_ts now) {
  uint8_t buf[DHT_MAX_BODY];
  uint32_t txid = new_txid(s);
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
  if (rpc_start(s, to, buf, (size_t)n, txid, m.type, O_OTHER, 0, 0, 1, s->set.rpc_timeout_ms,
                now) == 0) {
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

/* Starts a reconciliation of mbox with peer. */
static void recon_start(store_svc *s, const uint8_t mbox[32], const dht_contact *peer, bool handoff,
                        dht_ts now) {
  if (grow(s, (void **)&s->recons, s->nrecons, &s->caprecons, sizeof *s->recons,
           s->set.max_pending_rpcs))
    return;
  uint8_t all[16], bfp[STORE_NBUCKETS][16];
  int count, bc[STORE_NBUCKETS];
  mbox_fps(s, mbox, all, &count, bfp, bc);
  recon *rc = &s->recons[s->nrecons];
  rc->id = ++s->next_id;
  memcpy(rc->mbox, mbox, 32);
  memcpy(rc->peer.pk, peer->pk, DHT_PK_LEN);
  rc->peer.addr = peer->addr;
  rc->handoff = handoff;
  uint8_t buf[128];
  uint32_t txid = new_txid(s);
  store_wire_msg m = {.type = STORE_T_RECON, .txid = txid};
  m.u.recon.mbox = mbox;
  m.u.recon.fp = all;
  m.u.recon.count = (uint32_t)count;
  dht_ssize n = store_wire_encode(buf, sizeof buf, &m);
  if (n < 0 || rpc_start(s, &rc->peer, buf, (size_t)n, txid, STORE_T_RECON, O_RECON, rc->id, 0, 2,
                         s->set.rpc_timeout_ms, now))
    return;
  s->nrecons++;
  s->st.recon_rounds++;
  s->st.recon_bytes += (uint64_t)n;
}

static int recon_find(store_svc *s, uint32_t id) {
  for (int i = 0; i < s->nrecons; i++)
    if (s->recons[i].id == id)
      return i;
  return -1;
}

static void recon_end(store_svc *s, int i) {
  drop_owner_rpcs(s, O_RECON, s->recons[i].id);
  memmove(&s->recons[i], &s->recons[i + 1], (size_t)(s->nrecons - i - 1) * sizeof *s->recons);
  s->nrecons--;
}

/* Responder, step 1. */
static void on_recon(store_svc *s, const dht_peer *from, const store_wire_msg *m) {
  const uint8_t *mbox = m->u.recon.mbox, *fp = m->u.recon.fp;
  uint32_t count = m->u.recon.count;
  uint8_t all[16], bfp[STORE_NBUCKETS][16];
  int cnt, bc[STORE_NBUCKETS];
  mbox_fps(s, mbox, all, &cnt, bfp, bc);
  uint8_t buf[512];
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
  dht_ssize n = store_wire_encode(buf, sizeof buf, &a);
  if (n > 0) {
    send_body(s, from, buf, (size_t)n);
    s->st.recon_bytes += (uint64_t)n;
  }
}

/* Initiator, step 2: the responder's answer to RECON. */
static void recon_reply(store_svc *s, int ri, const store_wire_msg *m, dht_ts now) {
  recon *rc = &s->recons[ri];
  uint8_t status = m->u.recon_r.status;
  const uint8_t *b = m->u.recon_r.buckets;
  /* the layout allows a status without buckets; DIFFER needs them */
  if (status == STORE_W_DIFFER && !b) {
    s->st.drop_malformed++;
    recon_end(s, ri);
    return;
  }
  if (status == STORE_W_EQUAL) {
    s->st.recon_equal++;
    recon_end(s, ri);
    return;
  }
  if (status == STORE_W_EMPTY) {
    push_all(s, &rc->peer, rc->mbox, 0xffff, now);
    recon_end(s, ri);
    return;
  }
  if (status != STORE_W_DIFFER) {
    recon_end(s, ri);
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
  /* our entries in the differing sub-ranges (up to STORE_LIST_MAX; the next round
   * takes the rest) */
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
  uint32_t txid = new_txid(s);
  store_wire_msg l = {.type = STORE_T_RECON_L, .txid = txid};
  l.u.recon_l.mbox = rc->mbox;
  l.u.recon_l.mask = (uint16_t)mask;
  l.u.recon_l.entries = ents;
  l.u.recon_l.nentries = (size_t)ne;
  dht_ssize n = store_wire_encode(buf, sizeof buf, &l);
  drop_owner_rpcs(s, O_RECON, rc->id);
  if (n < 0 || rpc_start(s, &rc->peer, buf, (size_t)n, txid, STORE_T_RECON_L, O_RECON, rc->id, 0, 2,
                         s->set.rpc_timeout_ms, now)) {
    recon_end(s, ri);
    return;
  }
  s->st.recon_bytes += (uint64_t)n;
}

static bool ents_has(const uint8_t *ents, int n, const uint8_t e[STORE_ENTRY_LEN]) {
  for (int i = 0; i < n; i++)
    if (!memcmp(ents + i * STORE_ENTRY_LEN, e, STORE_ENTRY_LEN))
      return true;
  return false;
}

/* Responder, step 3: the initiator's entries in the differing sub-ranges. */
static void on_recon_l(store_svc *s, const dht_peer *from, const store_wire_msg *m, dht_ts now) {
  const uint8_t *mbox = m->u.recon_l.mbox, *ents = m->u.recon_l.entries;
  uint16_t mask = m->u.recon_l.mask;
  int ne = (int)m->u.recon_l.nentries;
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
    if (!ents_has(ents, ne, e)) {
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
  uint8_t buf[DHT_MAX_BODY];
  store_wire_msg a = {.type = STORE_T_RECON_LR, .txid = m->txid};
  a.u.recon_lr.status = STORE_W_OK;
  a.u.recon_lr.want = want;
  a.u.recon_lr.nwant = (size_t)nw;
  dht_ssize n = store_wire_encode(buf, sizeof buf, &a);
  if (n > 0) {
    send_body(s, from, buf, (size_t)n);
    s->st.recon_bytes += (uint64_t)n;
  }
}

/* Initiator, step 4: push what they asked for. */
static void recon_want(store_svc *s, int ri, const store_wire_msg *m, dht_ts now) {
  recon *rc = &s->recons[ri];
  const uint8_t *want = m->u.recon_lr.want;
  size_t wn = m->u.recon_lr.nwant * STORE_ENTRY_LEN;
  dht_peer peer = rc->peer;
  uint8_t mbox[32];
  memcpy(mbox, rc->mbox, 32);
  recon_end(s, ri);
  for (size_t i = 0; i < wn / STORE_ENTRY_LEN; i++)
    if (s->be.get(s->be.ctx, mbox, want + i * STORE_ENTRY_LEN, &s->rec2) == 0) {
      store_rec keep = s->rec2;
      push_rec(s, &peer, &keep, now);
    }
}

/* Runs the periodic reconciliation over a slice of our mailboxes. */
static void recon_tick(store_svc *s, dht_ts now) {
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
    int closer = 0;
    for (int j = 0; j < nc; j++)
      if (xor_cmp(ids[i], cl[j].id, s->self_id) < 0)
        closer++;
    bool handoff = closer >= s->set.replicas && nc >= s->set.replicas;
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
static void neighbourhood_check(store_svc *s, dht_ts now) {
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

/* Expiry: items past their TTL go; an unread item leaves a notice. */
static void expire_tick(store_svc *s, dht_ts now) {
  int64_t t = unix_s(s, now);
  int round;
  for (round = 0; round < EXPIRE_PER_TICK; round++) {
    int n = s->be.scan_expired(s->be.ctx, t, &s->rec, 1);
    if (n <= 0)
      break;
    store_rec *r = &s->rec;
    s->be.del(s->be.ctx, r->mbox, r->hash);
    s->st.expired++;
    if (r->kind == STORE_REC_ITEM) {
      /* never silence: the owner finds a notice where the item was */
      r->kind = STORE_REC_EVICTED;
      r->len = 0;
      r->expires_s = t + s->set.ttl_dht_s;
      s->be.put(s->be.ctx, r);
      s->st.evicted++;
    }
  }
  /* more due: come back soon, in slices that keep each timer run short */
  s->next_expire = now + (round == EXPIRE_PER_TICK ? 1000 : 60000);
}

/* ---- the user agent: sending -------------------------------------------- */

static int out_find(store_svc *s, uint32_t id) {
  for (int i = 0; i < s->nouts; i++)
    if (s->outs[i].id == id)
      return i;
  return -1;
}

static void out_state_event(store_svc *s, const sendq *o, int state, int status) {
  if (o->internal)
    return;
  store_event *ev = ev_push(s, STORE_EV_STATE, o->cmd, status);
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
}

static void out_remove(store_svc *s, int i) {
  drop_owner_rpcs(s, O_OUT, s->outs[i].id);
  if (s->outs[i].lookup > 0)
    dht_cancel(s->e, s->outs[i].lookup);
  sodium_memzero(&s->outs[i].k, sizeof s->outs[i].k);
  memmove(&s->outs[i], &s->outs[i + 1], (size_t)(s->nouts - i - 1) * sizeof *s->outs);
  s->nouts--;
}

static const store_friend *friend_find(const store_svc *s, const uint8_t pk[DHT_PK_LEN]) {
  for (int i = 0; i < s->nfriends; i++)
    if (!memcmp(s->friends[i].pk, pk, DHT_PK_LEN))
      return &s->friends[i];
  return NULL;
}

/* Seals o's message for this epoch's mailbox (a retry in a later epoch goes
 * to that epoch's mailbox: the recipient fetches every epoch since its last
 * fetch, and drops duplicates by message ID). */
static int out_seal(store_svc *s, sendq *o, dht_ts now) {
  uint32_t ep = epoch_now(s, now);
  uint8_t nonce[STORE_NONCE_LEN];
  rnd(s, nonce, sizeof nonce);
  o->deposited_s = (uint64_t)unix_s(s, now);
  if (o->request) {
    /* a friend request: sealed to the recipient's identity, in its request
     * box, with proof of work instead of a mailbox signature */
    uint8_t xpk[32];
    if (crypto_sign_ed25519_pk_to_curve25519(xpk, o->friend_pk))
      return DHT_ERR_CRYPTO;
    uint8_t plain[REQ_PLAIN];
    size_t pl = DHT_PK_LEN + 2 + o->msg.len;
    size_t padded = REQ_PLAIN;
    memset(plain, 0, sizeof plain);
    memcpy(plain, s->self.pk, DHT_PK_LEN);
    plain[32] = (uint8_t)(o->msg.len >> 8);
    plain[33] = (uint8_t)o->msg.len;
    memcpy(plain + 34, o->msg.body, o->msg.len);
    (void)pl;
    /* crypto_box_seal draws its own ephemeral key from libsodium's RNG,
     * which roost-sim makes deterministic; the item is padded to one size */
    if (crypto_box_seal(o->item, plain, padded, xpk))
      return DHT_ERR_CRYPTO;
    o->item_len = (uint16_t)(padded + crypto_box_SEALBYTES);
    memset(&o->k, 0, sizeof o->k);
    reqbox_id(o->k.id, o->friend_pk, ep);
    memcpy(o->k.pk, o->friend_pk, DHT_PK_LEN);
    o->k.epoch = ep;
    uint64_t ctr = 0;
    uint8_t nonce8[8];
    for (;; ctr++) {
      for (int i = 0; i < 8; i++)
        nonce8[i] = (uint8_t)(ctr >> (8 * i));
      if (pow_ok(o->k.id, o->item, o->item_len, nonce8))
        break;
    }
    memset(o->sig, 0, sizeof o->sig);
    memcpy(o->sig, nonce8, 8);
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

static void out_begin(store_svc *s, sendq *o, dht_ts now) {
  if (out_seal(s, o, now)) {
    o->phase = P_WAIT;
    o->retry_at = now + o->backoff;
    return;
  }
  if (o->request) {
    o->phase = P_LOOKUP;
    o->lookup = dht_find_node(s->e, o->k.id, now);
  } else {
    o->phase = P_RECORD;
    uint8_t fid[DHT_ID_LEN];
    dht_id_from_pk(fid, o->friend_pk);
    o->lookup = dht_get_record(s->e, fid, now);
  }
  if (o->lookup < 0) {
    o->phase = P_WAIT;
    o->retry_at = now + o->backoff;
  }
}

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
static void out_deposit(store_svc *s, sendq *o, const dht_lookup_result *res, dht_ts now) {
  o->phase = P_DEPOSIT;
  uint8_t buf[DHT_MAX_BODY];
  uint8_t flags = o->request ? STORE_F_REQUEST : 0;
  int n = 0;
  for (int i = 0; res && i < res->ncontacts && n < s->set.replicas; i++) {
    dht_peer p;
    memcpy(p.pk, res->contacts[i].pk, DHT_PK_LEN);
    p.addr = res->contacts[i].addr;
    uint32_t txid = new_txid(s);
    size_t len = build_deposit(o, buf, txid, flags);
    if (len && rpc_start(s, &p, buf, len, txid, STORE_T_DEPOSIT, O_OUT, o->id, n, s->set.rpc_tries,
                         s->set.rpc_timeout_ms, now) == 0)
      n++;
  }
  const store_friend *f = o->request ? NULL : friend_find(s, o->friend_pk);
  for (int i = 0; f && i < f->nhosts; i++) {
    if (f->hosts[i].addr.family == DHT_AF_NONE)
      continue;
    dht_peer p;
    memcpy(p.pk, f->hosts[i].pk, DHT_PK_LEN);
    p.addr = f->hosts[i].addr;
    uint32_t txid = new_txid(s);
    size_t len = build_deposit(o, buf, txid, STORE_F_HOSTED);
    if (len && rpc_start(s, &p, buf, len, txid, STORE_T_DEPOSIT, O_OUT, o->id, n, s->set.rpc_tries,
                         s->set.rpc_timeout_ms, now) == 0)
      n++;
  }
  o->asked = n;
  s->st.sent_deposited++;
  if (n == 0) {
    o->phase = P_WAIT;
    o->retry_at = now + o->backoff;
    out_state_event(s, o, STORE_ST_QUEUED, DHT_ERR_NOTFOUND);
  }
}

/* All deposit answers are in (or timed out). */
static void out_deposit_done(store_svc *s, int i, dht_ts now) {
  sendq *o = &s->outs[i];
  if (o->nrcpt >= s->set.stored_receipts || (o->asked > 0 && o->nrcpt >= o->asked)) {
    out_state_event(s, o, STORE_ST_STORED, 0);
    out_remove(s, i);
    return;
  }
  o->phase = P_WAIT;
  o->retry_at = now + o->backoff;
  o->backoff = o->backoff * 2 > s->set.retry_max_ms ? s->set.retry_max_ms : o->backoff * 2;
  out_state_event(s, o, STORE_ST_QUEUED, o->reason ? o->reason : DHT_ERR_TIMEOUT);
}

static void out_on_receipt(store_svc *s, int oi, const rpc *rq, const store_wire_msg *m,
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
        out_state_event(s, o, STORE_ST_STORED, 0);
      }
    }
  }
  if (o->answered >= o->asked)
    out_deposit_done(s, oi, now);
}

static void out_direct(store_svc *s, sendq *o, const dht_record *rec, dht_ts now) {
  uint8_t buf[DHT_MAX_BODY];
  o->phase = P_DIRECT;
  o->direct_left = 0;
  for (int i = 0; i < rec->naddrs && o->direct_left < 2; i++) {
    dht_peer p;
    memcpy(p.pk, o->friend_pk, DHT_PK_LEN);
    p.addr = rec->addrs[i].addr;
    uint32_t txid = new_txid(s);
    store_wire_msg m = {.type = STORE_T_DIRECT, .txid = txid};
    m.u.direct.mbox = o->k.id;
    m.u.direct.deposited_s = o->deposited_s;
    m.u.direct.item = o->item;
    m.u.direct.item_len = o->item_len;
    m.u.direct.sig = o->sig;
    dht_ssize n = store_wire_encode(buf, sizeof buf, &m);
    if (n > 0 && rpc_start(s, &p, buf, (size_t)n, txid, STORE_T_DIRECT, O_OUT, o->id, i, 1,
                           s->set.direct_timeout_ms, now) == 0)
      o->direct_left++;
  }
  if (o->direct_left == 0) {
    o->phase = P_LOOKUP;
    o->lookup = dht_find_node(s->e, o->k.id, now);
  }
}

static int64_t out_new(store_svc *s, const uint8_t pk[DHT_PK_LEN], const store_msg *msg,
                       bool internal, bool request, dht_ts now) {
  for (int i = 0; i < s->nouts; i++) /* a re-send of a message in flight */
    if (!memcmp(s->outs[i].msg.id, msg->id, STORE_MSGID_LEN) &&
        !memcmp(s->outs[i].friend_pk, pk, DHT_PK_LEN))
      return s->outs[i].cmd;
  int rc = grow(s, (void **)&s->outs, s->nouts, &s->capouts, sizeof *s->outs, s->set.max_outgoing);
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
  out_begin(s, o, now);
  return o->cmd;
}

int64_t store_send(store_svc *s, const uint8_t friend_pk[static DHT_PK_LEN], const store_msg *msg,
                   dht_ts now) {
  if (!msg || msg->len > STORE_TEXT_MAX)
    return msg ? STORE_ERR_TOOBIG : DHT_ERR_INVAL;
  if (!friend_find(s, friend_pk) || msg->kind != STORE_KIND_TEXT)
    return DHT_ERR_INVAL;
  return out_new(s, friend_pk, msg, false, false, now);
}

int64_t store_request_send(store_svc *s, const uint8_t to_pk[static DHT_PK_LEN],
                           const uint8_t *note, size_t len, dht_ts now) {
  if (len > STORE_NOTE_MAX || (len && !note) || !memcmp(to_pk, s->self.pk, DHT_PK_LEN))
    return DHT_ERR_INVAL;
  store_msg m;
  memset(&m, 0, sizeof m);
  rnd(s, m.id, sizeof m.id);
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
      out_remove(s, i);
      return 0;
    }
  return DHT_ERR_NOTFOUND;
}

/* Sends a receipt (delivered or read) for ids to friend pk. */
static void send_receipt_msg(store_svc *s, const uint8_t pk[DHT_PK_LEN], int kind,
                             const uint8_t (*ids)[STORE_MSGID_LEN], int n, dht_ts now) {
  while (n > 0) {
    int k = n > STORE_TEXT_MAX / STORE_MSGID_LEN ? STORE_TEXT_MAX / STORE_MSGID_LEN : n;
    store_msg m;
    memset(&m, 0, sizeof m);
    rnd(s, m.id, sizeof m.id);
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
  if (!friend_find(s, friend_pk) || n < 0 || (n && !ids))
    return DHT_ERR_INVAL;
  send_receipt_msg(s, friend_pk, STORE_KIND_READ, ids, n, now);
  return 0;
}

/* A message from friend pk opened: report it, or apply a receipt. */
static void deliver(store_svc *s, const uint8_t pk[DHT_PK_LEN], const store_msg *m, bool direct,
                    job *jb) {
  if (m->kind == STORE_KIND_TEXT) {
    store_event *ev = ev_push(s, STORE_EV_MESSAGE, jb ? jb->round : 0, 0);
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
    store_event *ev = ev_push(s, STORE_EV_STATE, 0, 0);
    if (!ev)
      break;
    memcpy(ev->u.state.msg_id, m->body + i, STORE_MSGID_LEN);
    memcpy(ev->u.state.friend_pk, pk, DHT_PK_LEN);
    ev->u.state.state = state;
  }
}

/* We are the recipient of a direct delivery. */
static void on_direct(store_svc *s, const dht_peer *from, const store_wire_msg *msg, dht_ts now) {
  const uint8_t *mbox = msg->u.direct.mbox, *item = msg->u.direct.item;
  size_t il = msg->u.direct.item_len;
  uint32_t txid = msg->txid;
  if (!friend_find(s, from->pk)) {
    reply_status(s, from, STORE_T_DIRECT_ACK, txid, STORE_W_REFUSED);
    return;
  }
  uint8_t pair[STORE_KEY_LEN];
  if (store_pair_secret(pair, &s->self, from->pk)) {
    reply_status(s, from, STORE_T_DIRECT_ACK, txid, STORE_W_REFUSED);
    return;
  }
  uint32_t ep = epoch_now(s, now);
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
  reply_status(s, from, STORE_T_DIRECT_ACK, txid, (uint64_t)status);
}

/* ---- the user agent: fetching ------------------------------------------ */

static int job_find(store_svc *s, uint32_t id) {
  for (int i = 0; i < s->njobs; i++)
    if (s->jobs[i].id == id)
      return i;
  return -1;
}

static void job_add(store_svc *s, const uint8_t pk[DHT_PK_LEN], bool reqbox, uint32_t ep) {
  if (grow(s, (void **)&s->jobs, s->njobs, &s->capjobs, sizeof *s->jobs, MAX_JOBS)) {
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
    reqbox_id(j->k.id, s->self.pk, ep);
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
  uint64_t t = (uint64_t)unix_s(s, now);
  if (j->reqbox) {
    store_mbox_keys k2 = j->k; /* request boxes: see check_auth */
    crypto_generichash(k2.id, sizeof k2.id, k2.pk, DHT_PK_LEN, NULL, 0);
    store_auth_sign(sig, STORE_AUTH_FETCH, &k2, j->rep_id[ri], s->self.pk, t, NULL, 0);
    sodium_memzero(&k2, sizeof k2);
  } else {
    store_auth_sign(sig, STORE_AUTH_FETCH, &j->k, j->rep_id[ri], s->self.pk, t, NULL, 0);
  }
  uint32_t txid = new_txid(s);
  store_wire_msg m = {.type = STORE_T_FETCH, .txid = txid};
  m.u.fetch.mbox = j->k.id;
  m.u.fetch.mbox_pk = j->k.pk;
  m.u.fetch.time_s = t;
  m.u.fetch.sig = sig;
  m.u.fetch.after = after;
  dht_ssize n = store_wire_encode(buf, sizeof buf, &m);
  if (n > 0 && rpc_start(s, &j->rep[ri], buf, (size_t)n, txid, STORE_T_FETCH, O_JOB, j->id, ri,
                         s->set.rpc_tries, s->set.rpc_timeout_ms, now) == 0)
    j->rep_pending++;
}

static void open_request(store_svc *s, const uint8_t *item, size_t len);

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
      open_request(s, r.data, r.len);
    } else {
      store_msg m;
      if (store_open(&m, &j->k, r.data, r.len) == 0)
        deliver(s, j->friend_pk, &m, false, j);
    }
    uint64_t t = (uint64_t)unix_s(s, now);
    uint8_t sig[DHT_SIG_LEN], proof[STORE_PROOF_MAX];
    store_mbox_keys k2 = j->k;
    if (j->reqbox)
      crypto_generichash(k2.id, sizeof k2.id, k2.pk, DHT_PK_LEN, NULL, 0);
    store_auth_sign(sig, STORE_AUTH_DELETE, &k2, s->self_id, s->self.pk, t, r.hash, 1);
    sodium_memzero(&k2, sizeof k2);
    size_t plen = proof_pack(proof, s->self_id, s->self.pk, t, r.hash, 1, sig);
    put_tombs(s, j->k.id, r.mbox_pk, r.hash, 1, proof, plen, NULL);
  }
}

static void job_lookup_done(store_svc *s, job *j, const dht_lookup_result *res, dht_ts now) {
  j->lookup = 0;
  j->nrep = 0;
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

static void job_on_list(store_svc *s, job *j, int ri, const store_wire_msg *m, dht_ts now) {
  uint8_t status = m->u.list.status;
  const uint8_t *ents = m->u.list.entries;
  size_t en = m->u.list.nentries * STORE_ENTRY_LEN;
  bool more = m->u.list.more;
  j->rep_pending--;
  if (status == STORE_W_OK) {
    j->rep_answered++;
    s->round_answered++;
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
    uint32_t txid = new_txid(s);
    store_wire_msg m = {.type = STORE_T_GETITEM, .txid = txid};
    m.u.getitem.mbox = j->k.id;
    m.u.getitem.hash = it->hash;
    dht_ssize n = store_wire_encode(buf, sizeof buf, &m);
    if (n > 0 && rpc_start(s, &j->rep[ri], buf, (size_t)n, txid, STORE_T_GETITEM, O_JOB, j->id, k,
                           s->set.rpc_tries, s->set.rpc_timeout_ms, now) == 0) {
      it->state = 1;
      j->inflight++;
    }
  }
}

static void open_request(store_svc *s, const uint8_t *item, size_t len) {
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
  store_event *ev = ev_push(s, STORE_EV_REQUEST, 0, 0);
  if (!ev)
    return;
  memcpy(ev->u.request.from_pk, plain, DHT_PK_LEN);
  ev->u.request.len = (uint16_t)n;
  memcpy(ev->u.request.note, plain + 34, n);
}

static void job_on_item(store_svc *s, job *j, int k, const store_wire_msg *w, dht_ts now) {
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
    open_request(s, item, il);
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
        uint64_t t = (uint64_t)unix_s(s, now);
        store_mbox_keys k2 = j->k;
        if (j->reqbox)
          crypto_generichash(k2.id, sizeof k2.id, k2.pk, DHT_PK_LEN, NULL, 0);
        store_auth_sign(sig, STORE_AUTH_DELETE, &k2, j->rep_id[ri], s->self.pk, t, hs, (size_t)nh);
        sodium_memzero(&k2, sizeof k2);
        uint32_t txid = new_txid(s);
        store_wire_msg m = {.type = STORE_T_DELETE, .txid = txid};
        m.u.del.mbox = j->k.id;
        m.u.del.mbox_pk = j->k.pk;
        m.u.del.time_s = t;
        m.u.del.hashes = hs;
        m.u.del.nhashes = (size_t)nh;
        m.u.del.sig = sig;
        dht_ssize n = store_wire_encode(buf, sizeof buf, &m);
        if (n > 0 && rpc_start(s, &j->rep[ri], buf, (size_t)n, txid, STORE_T_DELETE, O_JOB, j->id,
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
    send_receipt_msg(s, j->friend_pk, STORE_KIND_DELIVERED,
                     (const uint8_t(*)[STORE_MSGID_LEN])j->delivered, j->ndelivered, now);
  if (j->lost > 0) {
    store_event *ev = ev_push(s, STORE_EV_LOSS, j->round, 0);
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
static void job_step(store_svc *s, job *j, dht_ts now) {
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
static void jobs_run(store_svc *s, dht_ts now) {
  int active = 0;
  for (int i = 0; i < s->njobs; i++)
    if (s->jobs[i].phase != J_WAIT && s->jobs[i].phase != J_DONE)
      active++;
  for (int i = 0; i < s->njobs && active < FETCH_JOBS; i++) {
    job *j = &s->jobs[i];
    if (j->phase != J_WAIT)
      continue;
    j->phase = J_LOOKUP;
    j->lookup = dht_find_node(s->e, j->k.id, now);
    if (j->lookup < 0) {
      j->phase = J_DONE;
      s->round_failed = true;
      continue;
    }
    active++;
  }
  for (int i = s->njobs - 1; i >= 0; i--)
    if (s->jobs[i].phase == J_DONE) {
      drop_owner_rpcs(s, O_JOB, s->jobs[i].id);
      sodium_memzero(&s->jobs[i].k, sizeof s->jobs[i].k);
      s->round_msgs += s->jobs[i].newmsgs;
      memmove(&s->jobs[i], &s->jobs[i + 1], (size_t)(s->njobs - i - 1) * sizeof *s->jobs);
      s->njobs--;
    }
  if (s->round_cmd && s->njobs == 0) {
    store_event *ev =
        ev_push(s, STORE_EV_FETCHED, s->round_cmd, s->round_failed ? DHT_ERR_TIMEOUT : 0);
    if (ev) {
      ev->u.fetched.friends = s->round_friends;
      ev->u.fetched.messages = s->round_msgs;
      ev->u.fetched.replicas_asked = s->round_asked;
      ev->u.fetched.replicas_answered = s->round_answered;
      uint32_t ep = epoch_now(s, now);
      ev->u.fetched.epoch = s->round_failed || ep == 0 ? 0 : ep - 1;
    }
    if (!s->round_failed && epoch_now(s, now) > 0) {
      uint32_t ep = epoch_now(s, now);
      for (int i = 0; i < s->nfriends; i++)
        if (s->friends[i].fetched_epoch < ep - 1)
          s->friends[i].fetched_epoch = ep - 1;
    }
    s->round_cmd = 0;
  }
}

int64_t store_fetch(store_svc *s, dht_ts now) {
  if (s->round_cmd)
    return s->round_cmd;
  s->round_cmd = ++s->next_cmd;
  s->round_friends = s->nfriends;
  s->round_msgs = s->round_asked = s->round_answered = 0;
  s->round_failed = false;
  uint32_t ep = epoch_now(s, now);
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
  jobs_run(s, now);
  return s->round_cmd;
}

/* ---- hosts: registering our mailboxes with the friends who host us ---- */

static void register_tick(store_svc *s, dht_ts now) {
  s->next_register = now + (s->set.poll_interval_ms > 0 ? s->set.poll_interval_ms : 600000);
  if (s->nmy_hosts == 0 || s->nfriends == 0)
    return;
  uint32_t ep = epoch_now(s, now);
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
        uint32_t txid = new_txid(s);
        store_wire_msg m = {.type = STORE_T_REGISTER, .txid = txid};
        m.u.reg.ids = ids[0];
        m.u.reg.nids = (size_t)n;
        m.u.reg.sig = sig;
        dht_ssize len = store_wire_encode(buf, sizeof buf, &m);
        if (len > 0)
          rpc_start(s, &p, buf, (size_t)len, txid, STORE_T_REGISTER, O_OTHER, 0, 0,
                    s->set.rpc_tries, s->set.rpc_timeout_ms, now);
      }
      n = 0;
    }
  }
}

/* ---- dispatch -------------------------------------------------------------- */

static void rpc_timeout(store_svc *s, rpc *rq, dht_ts now);

/* An answer to one of our requests.  Its shape is checked (strictly, by the
 * codec) only once the request it answers is known, so an answer to nothing
 * counts as drop_unknown_txid whatever it holds; a malformed answer to a
 * request is dropped, counted, and treated like no answer at all (never
 * half-applied). */
static void on_reply(store_svc *s, const dht_peer *from, uint8_t type, uint32_t txid,
                     const uint8_t *body, size_t len, dht_ts now) {
  int i = rpc_find(s, txid, from->pk);
  if (i < 0) {
    s->st.drop_unknown_txid++;
    return;
  }
  rpc rq = s->rpcs[i];
  rq.body = NULL;
  if (store_wire_answer_type(rq.type) != type) {
    s->st.drop_malformed++;
    return;
  }
  rpc_drop(s, i);
  store_wire_msg m;
  if (store_wire_decode(&m, body, len)) {
    s->st.drop_malformed++;
    rpc_timeout(s, &rq, now); /* as if it never came: the owner moves on */
    return;
  }
  if (rq.owner == O_OUT) {
    int oi = out_find(s, rq.oid);
    if (oi < 0)
      return;
    sendq *o = &s->outs[oi];
    if (type == STORE_T_RECEIPT) {
      out_on_receipt(s, oi, &rq, &m, now);
    } else if (type == STORE_T_DIRECT_ACK) {
      o->direct_left--;
      if (m.u.direct_ack.status == STORE_W_OK) {
        s->st.sent_direct++;
        out_state_event(s, o, STORE_ST_DELIVERED, 0);
        out_remove(s, oi);
      } else if (o->direct_left <= 0) {
        o->phase = P_LOOKUP;
        o->lookup = dht_find_node(s->e, o->k.id, now);
      }
    }
  } else if (rq.owner == O_JOB) {
    int ji = job_find(s, rq.oid);
    if (ji < 0)
      return;
    job *j = &s->jobs[ji];
    if (type == STORE_T_LIST) {
      job_on_list(s, j, rq.aux, &m, now);
    } else if (type == STORE_T_ITEM) {
      job_on_item(s, j, rq.aux, &m, now);
    } else if (type == STORE_T_ACK) {
      j->rep_pending--;
    }
    j = &s->jobs[ji];
    job_step(s, j, now);
    jobs_run(s, now);
  } else if (rq.owner == O_RECON) {
    int ri = recon_find(s, rq.oid);
    if (ri < 0)
      return;
    if (type == STORE_T_RECON_R)
      recon_reply(s, ri, &m, now);
    else if (type == STORE_T_RECON_LR)
      recon_want(s, ri, &m, now);
  }
}

static void on_msg(void *ctx, dht *e, const dht_peer *from, const uint8_t *body, size_t len,
                   dht_ts now) {
  store_svc *s = ctx;
  (void)e;
  uint8_t type;
  uint32_t txid;
  if (store_wire_head(body, len, &type, &txid)) {
    s->st.drop_malformed++;
    return;
  }
  if (!store_wire_answer_type(type)) { /* an answer: on_reply decodes it */
    on_reply(s, from, type, txid, body, len, now);
    return;
  }
  store_wire_msg m;
  if (store_wire_decode(&m, body, len)) {
    s->st.drop_malformed++;
    return;
  }
  switch (type) {
  case STORE_T_DEPOSIT:
    on_deposit(s, from, &m, now);
    break;
  case STORE_T_FETCH:
    on_fetch(s, from, &m, now);
    break;
  case STORE_T_GETITEM:
    on_getitem(s, from, &m, now);
    break;
  case STORE_T_DELETE:
    on_delete(s, from, &m, now);
    break;
  case STORE_T_RECON:
    on_recon(s, from, &m);
    break;
  case STORE_T_RECON_L:
    on_recon_l(s, from, &m, now);
    break;
  case STORE_T_TOMB:
    on_tomb(s, from, &m);
    break;
  case STORE_T_DIRECT:
    on_direct(s, from, &m, now);
    break;
  default: /* STORE_T_REGISTER */
    on_register(s, from, &m);
    break;
  }
}

bool store_svc_on_dht_event(store_svc *s, const dht_event *ev, dht_ts now) {
  if (ev->type != DHT_EV_LOOKUP || ev->cmd <= 0)
    return false;
  for (int i = 0; i < s->nouts; i++) {
    sendq *o = &s->outs[i];
    if (o->lookup != ev->cmd)
      continue;
    o->lookup = 0;
    const dht_lookup_result *res = ev->u.lookup;
    if (o->phase == P_RECORD) {
      if (ev->status == 0 && res && res->has_record && res->record.naddrs > 0) {
        out_direct(s, o, &res->record, now);
      } else {
        o->phase = P_LOOKUP;
        o->lookup = dht_find_node(s->e, o->k.id, now);
      }
      if (o->lookup < 0) {
        o->phase = P_WAIT;
        o->retry_at = now + o->backoff;
      }
    } else if (o->phase == P_LOOKUP) {
      out_deposit(s, o, res, now);
    }
    return true;
  }
  for (int i = 0; i < s->njobs; i++) {
    job *j = &s->jobs[i];
    if (j->lookup != ev->cmd)
      continue;
    job_lookup_done(s, j, ev->status == DHT_ERR_CANCELLED ? NULL : ev->u.lookup, now);
    job_step(s, j, now);
    jobs_run(s, now);
    return true;
  }
  return false;
}

/* ---- timers ----------------------------------------------------------------- */

static dht_ts get_expiry(void *ctx) {
  store_svc *s = ctx;
  dht_ts t = min_ts(s->next_poll, min_ts(s->next_recon, s->next_expire));
  t = min_ts(t, s->next_register);
  for (int i = 0; i < s->nrpcs; i++)
    t = min_ts(t, s->rpcs[i].deadline);
  for (int i = 0; i < s->nouts; i++)
    if (s->outs[i].phase == P_WAIT)
      t = min_ts(t, s->outs[i].retry_at);
  return t;
}

static void rpc_timeout(store_svc *s, rpc *rq, dht_ts now) {
  if (rq->owner == O_OUT) {
    int oi = out_find(s, rq->oid);
    if (oi < 0)
      return;
    sendq *o = &s->outs[oi];
    if (rq->type == STORE_T_DIRECT) {
      if (--o->direct_left <= 0) {
        o->phase = P_LOOKUP;
        o->lookup = dht_find_node(s->e, o->k.id, now);
        if (o->lookup < 0) {
          o->phase = P_WAIT;
          o->retry_at = now + o->backoff;
        }
      }
    } else if (rq->type == STORE_T_DEPOSIT) {
      o->answered++;
      if (o->answered >= o->asked)
        out_deposit_done(s, oi, now);
    }
  } else if (rq->owner == O_JOB) {
    int ji = job_find(s, rq->oid);
    if (ji < 0)
      return;
    job *j = &s->jobs[ji];
    if (rq->type == STORE_T_GETITEM) {
      j->inflight--;
      j->items[rq->aux].state = 0; /* another holder */
    } else {
      j->rep_pending--;
    }
    job_step(s, j, now);
    jobs_run(s, now);
  } else if (rq->owner == O_RECON) {
    int ri = recon_find(s, rq->oid);
    if (ri >= 0)
      recon_end(s, ri);
  }
}

static void handle_expiry(void *ctx, dht *e, dht_ts now) {
  store_svc *s = ctx;
  (void)e;
  /* retransmissions and timeouts; an owner's handler may add or drop rpcs,
   * so restart the scan after each timeout */
  for (int guard = 0; guard < 100000; guard++) {
    int i;
    for (i = 0; i < s->nrpcs; i++)
      if (s->rpcs[i].deadline <= now)
        break;
    if (i == s->nrpcs)
      break;
    rpc *rq = &s->rpcs[i];
    if (--rq->tries > 0) {
      rq->deadline = now + rq->timeout;
      send_body(s, &rq->to, rq->body, rq->len);
      continue;
    }
    rpc copy = *rq;
    copy.body = NULL;
    rpc_drop(s, i);
    rpc_timeout(s, &copy, now);
  }
  for (int i = 0; i < s->nouts; i++)
    if (s->outs[i].phase == P_WAIT && s->outs[i].retry_at <= now) {
      s->outs[i].stored_reported = false;
      out_begin(s, &s->outs[i], now);
    }
  if (s->next_expire <= now) {
    expire_tick(s, now);
    neighbourhood_check(s, now);
  }
  if (s->next_recon <= now)
    recon_tick(s, now);
  if (s->next_register <= now)
    register_tick(s, now);
  if (s->next_poll <= now) {
    if (s->round_cmd == 0)
      store_fetch(s, now); /* sets next_poll */
    else                   /* a round is still running: look again later */
      s->next_poll = now + (s->set.poll_interval_ms > 0 ? s->set.poll_interval_ms : 60000);
  }
}

/* ---- the public face ---------------------------------------------------- */

void store_settings_default(store_settings *s) {
  memset(s, 0, sizeof *s);
  s->replicas = 5;
  s->stored_receipts = 3;
  s->epoch_ms = STORE_EPOCH_MS_DEFAULT;
  s->ttl_dht_s = 7 * 86400;
  s->ttl_hosted_s = 30 * 86400;
  s->mbox_quota_bytes = 64 * 1024;
  s->mbox_quota_items = 64;
  s->capacity_bytes = 64 * 1024 * 1024;
  s->time_window_s = 300;
  s->rpc_timeout_ms = 2000;
  s->rpc_tries = 3;
  s->direct_timeout_ms = 1000;
  s->retry_min_ms = 30000;
  s->retry_max_ms = 600000;
  s->poll_interval_ms = 300000;
  s->reconcile_interval_ms = 600000;
  s->max_friends = 1024;
  s->max_hosted = 64;
  s->max_outgoing = 1024;
  s->max_pending_rpcs = 1024;
  s->max_grants = 1024;
  s->max_events = 1024;
  s->max_fetch_epochs = 30;
}

static bool settings_ok(const store_settings *s) {
  return s->replicas >= 1 && s->replicas <= 8 && s->stored_receipts >= 1 &&
         s->stored_receipts <= s->replicas && s->epoch_ms >= 1000 && s->ttl_dht_s > 0 &&
         s->ttl_hosted_s > 0 && s->mbox_quota_bytes >= STORE_ITEM_MAX && s->mbox_quota_items >= 1 &&
         s->capacity_bytes >= 0 && s->time_window_s > 0 && s->rpc_timeout_ms > 0 &&
         s->rpc_tries >= 1 && s->direct_timeout_ms > 0 && s->retry_min_ms > 0 &&
         s->retry_max_ms >= s->retry_min_ms && s->poll_interval_ms >= 0 &&
         s->reconcile_interval_ms > 0 && s->max_friends >= 1 && s->max_hosted >= 0 &&
         s->max_outgoing >= 1 && s->max_pending_rpcs >= 8 && s->max_grants >= 1 &&
         s->max_events >= 4 && s->max_fetch_epochs >= 1;
}

int store_svc_new(store_svc **out, dht *e, const dht_identity *id, const store_backend *backend,
                  const store_settings *set, const dht_callbacks *cb, const dht_mem *mem,
                  dht_ts now) {
  if (!out || !e || !id || !backend || !cb || !cb->rand || memcmp(id->pk, dht_self_pk(e), 32))
    return DHT_ERR_INVAL;
  store_settings def;
  if (!set) {
    store_settings_default(&def);
    set = &def;
  }
  if (!settings_ok(set))
    return DHT_ERR_INVAL;
  store_svc *s = mem && mem->malloc ? mem->malloc(mem->ctx, sizeof *s) : malloc(sizeof *s);
  if (!s)
    return DHT_ERR_NOMEM;
  memset(s, 0, sizeof *s);
  s->e = e;
  s->self = *id;
  memcpy(s->self_id, dht_self_id(e), DHT_ID_LEN);
  s->be = *backend;
  s->set = *set;
  s->cb = *cb;
  if (mem)
    s->mem = *mem;
  /* spread periodic work so that hosts started together do not beat in step */
  uint32_t j;
  rnd(s, &j, sizeof j);
  s->next_expire = now + 60000;
  s->next_recon = now + (dht_ts)(j % (uint32_t)s->set.reconcile_interval_ms);
  s->next_register = now + 5000;
  s->next_poll = s->set.poll_interval_ms > 0 ? now + 3000 : DHT_TS_NEVER;
  dht_service svc = {STORE_MSG_LO, STORE_MSG_HI, s, on_msg, get_expiry, handle_expiry};
  int rc = dht_service_add(e, &svc);
  if (rc) {
    if (mem && mem->free)
      mem->free(mem->ctx, s);
    else
      free(s);
    return rc;
  }
  *out = s;
  return 0;
}

void store_svc_del(store_svc *s) {
  if (!s)
    return;
  for (int i = 0; i < s->nrpcs; i++)
    xfree(s, s->rpcs[i].body);
  xfree(s, s->rpcs);
  if (s->outs)
    sodium_memzero(s->outs, (size_t)s->capouts * sizeof *s->outs);
  xfree(s, s->outs);
  if (s->jobs)
    sodium_memzero(s->jobs, (size_t)s->capjobs * sizeof *s->jobs);
  xfree(s, s->jobs);
  xfree(s, s->grants);
  xfree(s, s->waits);
  xfree(s, s->friends);
  for (int i = 0; i < s->nhosts; i++)
    xfree(s, s->hosts[i].ids);
  xfree(s, s->hosts);
  xfree(s, s->recons);
  xfree(s, s->evs);
  if (s->be.close)
    s->be.close(s->be.ctx);
  sodium_memzero(&s->self, sizeof s->self);
  dht_mem m = s->mem;
  if (m.free)
    m.free(m.ctx, s);
  else
    free(s);
}

int store_friend_set(store_svc *s, const store_friend *f, dht_ts now) {
  (void)now;
  if (!f || f->nhosts < 0 || f->nhosts > STORE_MAX_HOSTS || !memcmp(f->pk, s->self.pk, 32))
    return DHT_ERR_INVAL;
  for (int i = 0; i < s->nfriends; i++)
    if (!memcmp(s->friends[i].pk, f->pk, DHT_PK_LEN)) {
      s->friends[i] = *f;
      return 0;
    }
  int rc = grow(s, (void **)&s->friends, s->nfriends, &s->capfriends, sizeof *s->friends,
                s->set.max_friends);
  if (rc)
    return rc;
  s->friends[s->nfriends++] = *f;
  s->next_register = now; /* hosts learn the new friend's mailboxes */
  return 0;
}

int store_friend_remove(store_svc *s, const uint8_t pk[static DHT_PK_LEN]) {
  for (int i = 0; i < s->nfriends; i++)
    if (!memcmp(s->friends[i].pk, pk, DHT_PK_LEN)) {
      memmove(&s->friends[i], &s->friends[i + 1],
              (size_t)(s->nfriends - i - 1) * sizeof *s->friends);
      s->nfriends--;
      return 0;
    }
  return DHT_ERR_NOTFOUND;
}

int store_host_set(store_svc *s, const uint8_t pk[static DHT_PK_LEN], int64_t quota_bytes) {
  if (quota_bytes < 0)
    return DHT_ERR_INVAL;
  for (int i = 0; i < s->nhosts; i++)
    if (!memcmp(s->hosts[i].pk, pk, DHT_PK_LEN)) {
      if (quota_bytes == 0) {
        xfree(s, s->hosts[i].ids);
        memmove(&s->hosts[i], &s->hosts[i + 1], (size_t)(s->nhosts - i - 1) * sizeof *s->hosts);
        s->nhosts--;
      } else {
        s->hosts[i].quota = quota_bytes;
      }
      return 0;
    }
  if (quota_bytes == 0)
    return DHT_ERR_NOTFOUND;
  int rc =
      grow(s, (void **)&s->hosts, s->nhosts, &s->caphosts, sizeof *s->hosts, s->set.max_hosted);
  if (rc)
    return rc;
  hosted *h = &s->hosts[s->nhosts++];
  memset(h, 0, sizeof *h);
  memcpy(h->pk, pk, DHT_PK_LEN);
  h->quota = quota_bytes;
  return 0;
}

int store_my_hosts_set(store_svc *s, const store_host_ref *hosts, int n, dht_ts now) {
  if (n < 0 || n > STORE_MAX_HOSTS || (n && !hosts))
    return DHT_ERR_INVAL;
  if (n)
    memcpy(s->my_hosts, hosts, (size_t)n * sizeof *hosts);
  s->nmy_hosts = n;
  s->next_register = now;
  return 0;
}

void store_get_stats(const store_svc *s, store_stats *st) {
  *st = s->st;
  store_usage u;
  if (s->be.usage(s->be.ctx, NULL, &u) == 0) {
    st->stored_items = u.items;
    st->stored_bytes = u.bytes;
  }
  st->outgoing = s->nouts;
  st->pending_rpcs = s->nrpcs;
  st->friends = s->nfriends;
  st->hosted = s->nhosts;
}

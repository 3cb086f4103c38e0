/*
 * fuzz_store.c - the libFuzzer target for the mailbox service (store/,
 * message types 0x30-0x3f) on the memory backend.
 *
 * It owns: an interpreter that turns one input into calls on ONE fresh
 * engine with a store_svc plugged in; four simulated peers that seal bodies
 * with their own dht_box, answer the engine's core requests by themselves
 * (PONG, NODES listing each other, ACK, and with CONFIG bit 1 a signed peer
 * record, so lookups finish and the service reaches its DEPOSIT, FETCH,
 * DIRECT ... paths), keep what the engine deposits with them, and build
 * correctly signed store messages on request (so inputs get past the
 * signature checks); and the oracles.  A broken oracle is abort(), which
 * libFuzzer reports as a crash.
 *
 * Input: a sequence of ops [u8 op][u16 len, big-endian][len bytes]; a
 * truncated tail ends the input; at most FS_MAX_OPS ops run.  op % 7 is:
 *   0 BODY    [sel][body]: peer sel & 3 seals body (any msgpack) for the
 *             engine.  sel bit 2: from the peer's IPv6 address; bit 3: the
 *             body's txid becomes that of a service request the engine sent
 *             to the peer (bits 5-6: 0 = the newest, 1 = the one before ...);
 *             bit 4: a fixint type outside 0x30-0x3f is folded into it.
 *   1 TIME    [ms u16][shift]: advance the clock by ms << 2 * (shift & 7)
 *             (at most FS_MAX_ADVANCE per input) running the timers on the
 *             way; shift bit 7: stop once a timer sent a store request.
 *   2 CMD     [which][args]: a service command (fs_cmd).
 *   3 DEPOSIT [sel][ft][ep][dt][bytes]: a DEPOSIT (or DIRECT) signed by a
 *             mailbox key of the fixed identities (fs_deposit).
 *   4 AUTH    [sel][kind][ft][ep][dt][args]: a signed FETCH, DELETE, TOMB or
 *             REGISTER, or a GETITEM (fs_auth).
 *   5 REPLY   [sel][idx][status][variant][extra]: peer sel & 3 answers one of
 *             the service requests the engine sent it (fs_reply).
 *   6 CONFIG  [flags]: first op only (ignored elsewhere): settings (fs_config).
 *
 * Identities: 0 is the engine, 1-4 are the peers (peer i is identity i + 1).
 * A mailbox is chosen by ft (from = ft & 7 mod 5, to = (ft >> 3) & 7 mod 5,
 * bumped when equal; message kind 1 + (ft >> 6) mod 3) and ep (a signed
 * epoch delta from the current epoch).
 *
 * Oracles: every datagram fits DHT_MAX_PKT and, to a peer's address, opens
 * under that peer's key; every 0x30-0x3f body the engine sends parses with
 * the exact arity and field types of its layout; store_get_stats stays sane
 * (pending rpcs, outgoing, friends, hosted under their caps; stored bytes
 * under capacity_bytes; per mailbox bytes under the quota and items under
 * mbox_quota_items unless the input hosts someone; refused <= received);
 * events have known types, states and statuses, message texts fit
 * STORE_TEXT_MAX, command ids were issued; after the timers ran the next
 * expiry is in the future; ASan, UBSan and LeakSanitizer.
 *
 * Determinism: fixed identities, a ChaCha20 stream (tu_rng) for the rand
 * callback, a fixed clock.  The only global is the key setup made once on
 * first use (identities, pair secrets, the peers' shared keys).
 *
 * What it shares with fuzz_packet.c (op reader, identities, peer boxes and
 * addresses, sealing, datagram checks, clock) is in fuzz_common.c (fc_*).
 *
 * tests/fuzz/gen_corpus_store.c includes this file to write and run seeds.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dht_int.h"
#include "drive1.h"
#include "fuzz_common.h"
#include "store.h"
#include "store_wire.h"
#include "testutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FS_PEERS 4
#define FS_NID (FS_PEERS + 1)
#define FS_MAX_OPS 128
#define FS_T0 FC_T0
#define FS_UNIX_MS FC_UNIX_MS
#define FS_MAX_ADVANCE (10LL * 86400 * 1000) /* past TTLs and epochs */
#define FS_EXPIRY_STEPS 64
#define FS_RING 4    /* service requests remembered per peer */
#define FS_ITEMS 16  /* items the peers know (built or received) */
#define FS_ROUNDS 16 /* auto-answer rounds per op */
#define FS_AUTOQ 64  /* auto answers queued per round */
#define FS_REQBOX 16 /* REQBOX_ITEMS in store/store_int.h */
#define FS_MAX_QUOTA (256 * 1024)

enum {
  FS_OP_BODY,
  FS_OP_TIME,
  FS_OP_CMD,
  FS_OP_DEPOSIT,
  FS_OP_AUTH,
  FS_OP_REPLY,
  FS_OP_CONFIG,
  FS_OP_COUNT
};

/* CONFIG flags */
#define FS_CFG_NOAUTO 0x01   /* peers do not answer core requests */
#define FS_CFG_RECORDS 0x02  /* peers answer GET with the peer's record: DIRECT */
#define FS_CFG_QUOTA 0x04    /* 2 items / 2000 B per mailbox, 4000 B capacity */
#define FS_CFG_TINY 0x08     /* tiny caps: rpcs 8, events 4, outgoing 2, ... */
#define FS_CFG_NOBOOT 0x10   /* no bootstrap at the start */
#define FS_CFG_NOPOLL 0x20   /* poll_interval 0 */
#define FS_CFG_SHORTTTL 0x40 /* ttl 600 s / 1200 s */
#define FS_CFG_ONEREP 0x80   /* replicas 1, receipts 1 */

enum {
  FS_CMD_SEND,
  FS_CMD_FETCH,
  FS_CMD_FRIEND,
  FS_CMD_UNFRIEND,
  FS_CMD_HOST,
  FS_CMD_MYHOSTS,
  FS_CMD_READ,
  FS_CMD_CANCEL,
  FS_CMD_BOOT,
  FS_CMD_DURABLE,
  FS_CMD_COUNT
};

enum {
  FS_AUTH_FETCH,
  FS_AUTH_DELETE,
  FS_AUTH_GETITEM,
  FS_AUTH_TOMB,
  FS_AUTH_REGISTER,
  FS_AUTH_COUNT
};

/* ---- the immutable setup ------------------------------------------------ */

typedef struct fs_keys {
  dht_identity id[FS_NID];
  uint8_t nid[FS_NID][DHT_ID_LEN];
  uint8_t entry[FS_PEERS][DHT_BOX_ENTRY_LEN]; /* peer i's box entry for the engine */
  uint8_t pair[FS_NID][FS_NID][STORE_KEY_LEN];
} fs_keys;

static const uint8_t fs_hkey[16] = "roost-fzstore-hk";
static fs_keys fs_k;
static bool fs_k_ready;

static const fs_keys *fs_setup(void) {
  if (fs_k_ready)
    return &fs_k;
  if (sodium_init() < 0)
    abort();
  for (int n = 0; n < FS_NID; n++) {
    fc_identity(&fs_k.id[n], 0x6b, n);
    dht_id_from_pk(fs_k.nid[n], fs_k.id[n].pk);
  }
  for (int a = 0; a < FS_NID; a++)
    for (int b = 0; b < FS_NID; b++)
      if (a != b && store_pair_secret(fs_k.pair[a][b], &fs_k.id[a], fs_k.id[b].pk) != 0)
        abort();
  for (int i = 0; i < FS_PEERS; i++)
    fc_box_entry(fs_k.entry[i], &fs_k.id[i + 1], fs_hkey, fs_k.id[0].pk);
  fs_k_ready = true;
  return &fs_k;
}

static void fs_peer_addr(int i, bool v6, dht_addr *a) {
  static const uint8_t v4[FS_PEERS][4] = {
      {192, 0, 2, 20}, {198, 51, 100, 21}, {203, 0, 113, 22}, {198, 18, 0, 23}};
  fc_peer_addr(a, i, v6, v4[i], 0x20, 5000);
}

/* ---- per-input state ------------------------------------------------------ */

typedef struct fs_req { /* a service request the engine sent to a peer */
  uint8_t type;
  uint32_t txid;
  uint8_t mbox[STORE_MBOX_LEN];
  uint8_t hash[STORE_HASH_LEN];
  bool answered; /* by a REPLY op */
} fs_req;

typedef struct fs_peer {
  bool ready;
  dht_box box;
  uint64_t nonce_ctr;
  fs_req ring[FS_RING]; /* newest first */
  int nring;
} fs_peer;

typedef struct fs_item { /* an item a peer can list and serve */
  uint8_t mbox[STORE_MBOX_LEN], mpk[DHT_PK_LEN], hash[STORE_HASH_LEN], sig[DHT_SIG_LEN];
  int from, to; /* identities of the mailbox, -1 when unknown */
  uint32_t epoch;
  uint64_t dep_s;
  uint16_t len;
  uint8_t data[STORE_ITEM_MAX];
} fs_item;

typedef struct fs_auto { /* an automatic answer waiting to be delivered */
  int peer;
  uint16_t len;
  uint8_t body[DHT_MAX_BODY];
} fs_auto;

typedef struct fs {
  const fs_keys *k;
  dht *e;
  store_svc *svc;
  store_backend be;
  dht_settings set;
  store_settings ss;
  tu_rng rng;
  uint8_t cfg;
  dht_ts now, advanced;
  int64_t max_cmd; /* highest id store_send returned */
  uint64_t nonce_ctr;
  uint8_t last_msgid[STORE_MSGID_LEN];
  int64_t max_quota;
  bool ever_hosted;
  uint64_t nreqs;     /* store requests sent to the peers */
  uint64_t time_reqs; /* nreqs when the running TIME op began */
  int evcount[8];     /* store events by type (for gen_corpus_store) */
  fs_peer p[FS_PEERS];
  fs_item items[FS_ITEMS];
  int nitems, item_next;
  fs_auto q[FS_AUTOQ];
  int nq;
  uint8_t pkt[DHT_MAX_PKT + 64];
  uint8_t body[DHT_MAX_BODY + 64];
  store_rec rec;
} fs;

static fs_peer *fs_peer_get(fs *h, int i) {
  fs_peer *p = &h->p[i];
  if (p->ready)
    return p;
  fc_box_ready(&p->box, &h->k->id[i + 1], fs_hkey, h->k->id[0].pk, h->k->entry[i]);
  p->ready = true;
  return p;
}

static int64_t fs_unix_s(const fs *h) {
  return dht_unix_ms(h->e, h->now) / 1000;
}

static uint32_t fs_epoch(const fs *h) {
  return store_epoch_of(dht_unix_ms(h->e, h->now), h->ss.epoch_ms);
}

/* The mailbox from -> to (identities) in epoch ep. */
static void fs_mbox(const fs *h, store_mbox_keys *k, int from, int to, uint32_t ep) {
  store_mbox_derive(k, h->k->pair[from][to], h->k->id[from].pk, h->k->id[to].pk, ep);
}

/* Decodes ft / ep bytes into a mailbox. */
static void fs_mbox_sel(const fs *h, uint8_t ft, uint8_t ep, store_mbox_keys *k, int *from,
                        int *to) {
  int f = (ft & 7) % FS_NID, t = ((ft >> 3) & 7) % FS_NID;
  if (f == t)
    t = (t + 1) % FS_NID;
  *from = f;
  *to = t;
  fs_mbox(h, k, f, t, fs_epoch(h) + (uint32_t)(int32_t)(int8_t)ep);
}

static fs_item *fs_item_find(fs *h, const uint8_t mbox[32], const uint8_t hash[16]) {
  for (int i = 0; i < h->nitems; i++)
    if (!memcmp(h->items[i].mbox, mbox, 32) && !memcmp(h->items[i].hash, hash, 16))
      return &h->items[i];
  return NULL;
}

static void fs_item_add(fs *h, const uint8_t mbox[32], const uint8_t mpk[32], uint64_t dep_s,
                        const uint8_t *item, size_t len, const uint8_t sig[64], int from, int to,
                        uint32_t ep) {
  uint8_t hash[16];
  if (len > STORE_ITEM_MAX)
    return;
  store_item_hash(hash, item, len);
  if (fs_item_find(h, mbox, hash))
    return;
  fs_item *it = &h->items[h->item_next];
  h->item_next = (h->item_next + 1) % FS_ITEMS;
  if (h->nitems < FS_ITEMS)
    h->nitems++;
  memcpy(it->mbox, mbox, 32);
  memcpy(it->mpk, mpk, 32);
  memcpy(it->hash, hash, 16);
  memcpy(it->sig, sig, 64);
  it->from = from;
  it->to = to;
  it->epoch = ep;
  it->dep_s = dep_s;
  it->len = (uint16_t)len;
  memcpy(it->data, item, len);
}

/* ---- sending to the engine ------------------------------------------------ */

/* Peer i seals body and the engine reads it. */
static void fs_send(fs *h, int i, bool v6, const uint8_t *body, size_t len) {
  fs_peer *p = fs_peer_get(h, i);
  if (len > DHT_MAX_BODY)
    return;
  p->nonce_ctr++;
  size_t n = fc_seal(&p->box, (uint8_t)(0xe0 | i), p->nonce_ctr, h->k->id[0].pk, body, len, h->pkt,
                     sizeof h->pkt);
  dht_addr from;
  fs_peer_addr(i, v6, &from);
  if (d1_read(h->e, &from, h->pkt, n, h->now) != 0)
    abort();
}

/* ---- what the engine sends ------------------------------------------------ */

/* Full parse of a store body the engine sent (any 0x30-0x3f type): the
 * engine must never send what its own strict reader would drop.  Notes the
 * requests in peer i's ring (i < 0: not to a peer). */
static void fs_take_svc(fs *h, int i, const uint8_t *b, size_t len) {
  store_wire_msg m;
  if (store_wire_decode(&m, b, len))
    abort(); /* the engine sent a store body a peer must drop */
  if (i < 0 || !store_wire_answer_type(m.type))
    return; /* an answer, not a request */
  const uint8_t *mbox = NULL, *mpk = NULL, *hash = NULL, *item = NULL, *sig = NULL;
  size_t il = 0;
  switch (m.type) {
  case STORE_T_DEPOSIT:
    mbox = m.u.deposit.mbox, mpk = m.u.deposit.mbox_pk, sig = m.u.deposit.sig;
    item = m.u.deposit.item, il = m.u.deposit.item_len;
    break;
  case STORE_T_FETCH:
    mbox = m.u.fetch.mbox;
    break;
  case STORE_T_GETITEM:
    mbox = m.u.getitem.mbox, hash = m.u.getitem.hash;
    break;
  case STORE_T_DELETE:
    mbox = m.u.del.mbox;
    break;
  case STORE_T_RECON:
    mbox = m.u.recon.mbox;
    break;
  case STORE_T_RECON_L:
    mbox = m.u.recon_l.mbox;
    break;
  case STORE_T_TOMB:
    mbox = m.u.tomb.mbox, mpk = m.u.tomb.mbox_pk;
    break;
  case STORE_T_DIRECT:
    mbox = m.u.direct.mbox, sig = m.u.direct.sig;
    item = m.u.direct.item, il = m.u.direct.item_len;
    break;
  default: /* STORE_T_REGISTER */
    break;
  }
  fs_peer *pe = &h->p[i];
  fc_ring_push(pe->ring, sizeof pe->ring[0], FS_RING, &pe->nring);
  fs_req *q = &pe->ring[0];
  memset(q, 0, sizeof *q);
  q->type = m.type;
  q->txid = m.txid;
  if (mbox)
    memcpy(q->mbox, mbox, 32);
  if (hash)
    memcpy(q->hash, hash, 16);
  if (item) {
    store_item_hash(q->hash, item, il);
    if (m.type == STORE_T_DEPOSIT) /* the peer keeps it: later LIST / ITEM serve it */
      fs_item_add(h, mbox, mpk, 0, item, il, sig, -1, -1, 0);
  }
  h->nreqs++;
}

/* Peer i's automatic answer to a core request. */
static void fs_auto_answer(fs *h, int i, const dht_msg *m) {
  if ((h->cfg & FS_CFG_NOAUTO) || h->nq >= FS_AUTOQ)
    return;
  dht_msg a;
  memset(&a, 0, sizeof a);
  a.txid = m->txid;
  uint8_t rec[DHT_RECORD_MAX_LEN];
  switch (m->type) {
  case DHT_MSG_PING:
    a.type = DHT_MSG_PONG;
    a.seen.family = DHT_AF_INET;
    a.seen.ip[0] = 203;
    a.seen.ip[2] = 113;
    a.seen.ip[3] = 99;
    a.seen.port = 7000;
    break;
  case DHT_MSG_PUT:
    a.type = DHT_MSG_ACK;
    a.status = DHT_ACK_OK;
    break;
  case DHT_MSG_FIND_NODE:
  case DHT_MSG_GET:
    a.type = DHT_MSG_NODES;
    a.token_len = DHT_TOKEN_LEN;
    memset(a.token, 0x70 + i, DHT_TOKEN_LEN);
    for (int j = 0; j < FS_PEERS; j++) {
      if (j == i)
        continue;
      memcpy(a.contacts[a.ncontacts].pk, h->k->id[j + 1].pk, DHT_PK_LEN);
      fs_peer_addr(j, false, &a.contacts[a.ncontacts].addr);
      a.ncontacts++;
    }
    if (m->type == DHT_MSG_GET && (h->cfg & FS_CFG_RECORDS)) {
      for (int j = 0; j < FS_PEERS; j++) {
        if (memcmp(m->target, h->k->nid[j + 1], DHT_ID_LEN))
          continue;
        dht_record r;
        memset(&r, 0, sizeof r);
        memcpy(r.pk, h->k->id[j + 1].pk, DHT_PK_LEN);
        r.seq = 1;
        r.expires_unix_s = (uint64_t)fs_unix_s(h) + 3600;
        r.flags = DHT_REC_REACHABLE;
        r.naddrs = 1;
        r.addrs[0].type = DHT_ADDR_OBSERVED;
        fs_peer_addr(j, false, &r.addrs[0].addr);
        dht_ssize rl = dht_record_sign(&r, h->k->id[j + 1].sk, rec, sizeof rec);
        if (rl < 0)
          abort();
        a.type = DHT_MSG_VALUE;
        a.record = rec;
        a.record_len = (size_t)rl;
      }
    }
    break;
  default:
    return;
  }
  fs_auto *q = &h->q[h->nq];
  dht_ssize n = dht_msg_encode(&a, q->body, sizeof q->body);
  if (n < 0)
    abort();
  q->peer = i;
  q->len = (uint16_t)n;
  h->nq++;
}

static void fs_check_event(fs *h, const store_event *ev) {
  if (ev->status > 0 || ev->status < DHT_ERR_INTERNAL)
    abort();
  if (ev->cmd < 0)
    abort();
  switch (ev->type) {
  case STORE_EV_STATE:
    /* a command id that store_send returned, or 0 (a receipt came in) */
    if (ev->cmd > h->max_cmd || ev->u.state.state < STORE_ST_QUEUED ||
        ev->u.state.state > STORE_ST_READ || ev->u.state.receipts < 0 || ev->u.state.refused < 0 ||
        ev->u.state.replicas < 0 || ev->u.state.refused > ev->u.state.replicas)
      abort();
    break;
  case STORE_EV_MESSAGE:
    if (ev->u.message.msg.len > STORE_TEXT_MAX || ev->u.message.msg.kind != STORE_KIND_TEXT)
      abort();
    break;
  case STORE_EV_LOSS:
    if (ev->u.loss.items <= 0)
      abort();
    break;
  case STORE_EV_FETCHED:
    if (ev->u.fetched.replicas_answered < 0 ||
        ev->u.fetched.replicas_answered > ev->u.fetched.replicas_asked ||
        ev->u.fetched.messages < 0 || ev->u.fetched.friends < 0)
      abort();
    break;
  case STORE_EV_REQUEST:
    if (ev->u.request.len > STORE_NOTE_MAX)
      abort();
    break;
  default:
    abort();
  }
}

/* The quota and counter oracles. */
static void fs_check_stats(fs *h) {
  store_stats st;
  store_get_stats(h->svc, &st);
  const store_settings *s = &h->ss;
  if (st.pending_rpcs < 0 || st.pending_rpcs > s->max_pending_rpcs || st.outgoing < 0 ||
      st.outgoing > s->max_outgoing || st.friends < 0 || st.friends > s->max_friends ||
      st.hosted < 0 || st.hosted > s->max_hosted)
    abort();
  if (st.stored_items < 0 || st.stored_bytes < 0 || st.stored_bytes > s->capacity_bytes ||
      st.stored_bytes > st.stored_items * STORE_ITEM_MAX)
    abort();
  if (st.deposits_stored + st.deposits_refused > st.deposits_in ||
      st.fetches_refused > st.fetches_in || st.deletes_refused > st.deletes_in)
    abort();
  int64_t qb = s->mbox_quota_bytes > h->max_quota ? s->mbox_quota_bytes : h->max_quota;
  int64_t qi = s->mbox_quota_items > FS_REQBOX ? s->mbox_quota_items : FS_REQBOX;
  uint8_t ids[8][STORE_MBOX_LEN];
  uint8_t hf[8];
  int64_t items = 0, bytes = 0;
  bool have = false;
  uint8_t after[STORE_MBOX_LEN];
  for (;;) {
    int n = h->be.scan_mboxes(h->be.ctx, have ? after : NULL, ids, hf, 8);
    if (n < 0 || n > 8)
      abort();
    for (int i = 0; i < n; i++) {
      store_usage u;
      if (h->be.usage(h->be.ctx, ids[i], &u) != 0)
        abort();
      if (u.bytes > qb || (!h->ever_hosted && u.items > qi) || u.items > u.records)
        abort();
      items += u.items;
      bytes += u.bytes;
    }
    if (n < 8)
      break;
    memcpy(after, ids[n - 1], STORE_MBOX_LEN);
    have = true;
  }
  if (items != st.stored_items || bytes != st.stored_bytes)
    abort(); /* the per-mailbox sums make the whole */
}

/* Drains the engine: datagrams (checked, answered), engine events (to the
 * service first), service events; then delivers the automatic answers, and
 * again, a bounded number of rounds. */
static void fs_drain(fs *h) {
  for (int round = 0; round < FS_ROUNDS; round++) {
    dht_addr to;
    dht_ssize n;
    while ((n = d1_write(h->e, &to, h->pkt, DHT_MAX_PKT, h->now)) != 0) {
      fc_check_dgram(n, &to);
      int i = fc_peer_at(&to, FS_PEERS, fs_peer_addr);
      if (i < 0)
        continue; /* nobody there */
      dht_ssize bn = dht_box_open(h->k->entry[i], h->pkt, (size_t)n, h->body, sizeof h->body);
      if (bn < 0)
        abort(); /* to a peer's address, not under its key */
      uint8_t type;
      uint32_t txid;
      if (dht_msg_peek(h->body, (size_t)bn, &type, &txid) != 0)
        abort();
      if (type >= STORE_MSG_LO && type <= STORE_MSG_HI) {
        fs_take_svc(h, i, h->body, (size_t)bn);
        continue;
      }
      dht_msg m;
      if (dht_msg_decode(&m, h->body, (size_t)bn) != 0)
        abort();
      fs_auto_answer(h, i, &m);
    }
    dht_event dev;
    while (dht_poll_event(h->e, &dev) == 0)
      ; /* the service's own lookups went to it inside dht_poll_event */
    store_event ev;
    int nev = 0;
    while (store_poll_event(h->svc, &ev) == 0) {
      fs_check_event(h, &ev);
      h->evcount[ev.type & 7]++;
      if (++nev > h->ss.max_events)
        abort();
    }
    /* the service may have queued datagrams from an engine event */
    dht_stats st;
    dht_get_stats(h->e, &st);
    if (h->nq == 0 && st.out_queue == 0 && st.events_queued == 0)
      break;
    int nq = h->nq;
    h->nq = 0;
    for (int k = 0; k < nq; k++) {
      fs_auto a = h->q[k]; /* copy: delivering may queue more */
      fs_send(h, a.peer, false, a.body, a.len);
    }
  }
  fs_check_stats(h);
}

static void fs_expire(void *ctx) {
  fs *h = ctx;
  if (dht_handle_expiry(h->e, h->now) != 0)
    abort();
  fs_drain(h);
  if (dht_get_expiry(h->e) <= h->now)
    abort(); /* a driver would spin */
}

/* fs_time's stop: a timer run sent a store request since the TIME op began. */
static bool fs_time_stop(void *ctx) {
  const fs *h = ctx;
  return h->nreqs != h->time_reqs;
}

/* TIME [ms u16][shift]: ms << 2 * (shift & 7) (up to ~12 days); with shift
 * bit 7 the clock stops at the first timer run that sent a store request
 * to a peer, so an input can answer it before it times out. */
static void fs_time(fs *h, const uint8_t *p, size_t n) {
  bool stop = n >= 3 && (p[2] & 0x80);
  h->time_reqs = h->nreqs;
  dht_ts target = h->now + fc_time_ms(p, n, 2, FS_MAX_ADVANCE, &h->advanced);
  if (fc_run_clock(h->e, &h->now, target, FS_EXPIRY_STEPS, fs_expire, stop ? fs_time_stop : NULL,
                   h))
    h->advanced -= target - h->now;
}

/* ---- ops --------------------------------------------------------------------- */

/* Length of the uint (0xcc-0xcf only, unlike fuzz_packet) at p, or 0. */
static size_t fs_skip_uint(const uint8_t *p, size_t n) {
  return fc_skip_uint(p, n, 0xcf);
}

/* BODY: any msgpack from peer sel & 3, with the optional patches. */
static void fs_body(fs *h, uint8_t sel, const uint8_t *body, size_t len) {
  int i = sel & 3;
  uint8_t b[DHT_MAX_BODY + 8];
  if (len > DHT_MAX_BODY)
    return;
  memcpy(b, body, len);
  size_t t = fc_array_head(b, len); /* the type's offset, 0 if none */
  if ((sel & 0x10) && t && b[t] <= 0x7f && (b[t] < STORE_MSG_LO || b[t] > STORE_MSG_HI))
    b[t] = (uint8_t)(STORE_MSG_LO | (b[t] & 0x0f));
  const fs_peer *p = &h->p[i];
  int r = (sel >> 5) & 3;
  if ((sel & 0x08) && t && r < p->nring) {
    size_t ts = fs_skip_uint(b + t, len - t);
    size_t x = ts ? fs_skip_uint(b + t + ts, len - t - ts) : 0;
    if (x)
      len = fc_patch_u32(b, len, t + ts, x, p->ring[r].txid);
  }
  fs_send(h, i, (sel & 4) != 0, b, len);
}

static void fs_nonce(fs *h, uint8_t nonce[static STORE_NONCE_LEN]) {
  memset(nonce, 0, STORE_NONCE_LEN);
  h->nonce_ctr++;
  for (int j = 0; j < 8; j++)
    nonce[j] = (uint8_t)(h->nonce_ctr >> (8 * j));
  nonce[23] = 0xa5;
}

/* DEPOSIT [sel][ft][ep][dt][bytes]: sel bits 0-1 the sending peer; bit 2 the
 * bytes are a message text sealed into a proper item (else the raw item);
 * bit 3 sent as DIRECT instead; bit 4 a corrupted signature; bits 5-7 the
 * DEPOSIT flags (push, hosted, request box).  deposited_s = now + (int8)dt *
 * 20 s. */
static void fs_deposit(fs *h, const uint8_t *p, size_t n) {
  if (n < 4)
    return;
  uint8_t sel = p[0];
  store_mbox_keys k;
  int from, to;
  fs_mbox_sel(h, p[1], p[2], &k, &from, &to);
  uint64_t dep = (uint64_t)(fs_unix_s(h) + (int64_t)(int8_t)p[3] * 20);
  uint8_t item[STORE_ITEM_MAX];
  size_t il;
  const uint8_t *rest = p + 4;
  size_t rn = n - 4;
  if (sel & 4) {
    store_msg m;
    memset(&m, 0, sizeof m);
    h->nonce_ctr++;
    memcpy(m.id, &h->nonce_ctr, sizeof h->nonce_ctr);
    m.sent_unix_ms = dht_unix_ms(h->e, h->now);
    m.kind = (uint8_t)(1 + ((p[1] >> 6) % 3));
    m.len = (uint16_t)(rn > STORE_TEXT_MAX ? STORE_TEXT_MAX : rn);
    memcpy(m.body, rest, m.len);
    uint8_t nonce[STORE_NONCE_LEN];
    fs_nonce(h, nonce);
    dht_ssize sl = store_seal(item, &k, &m, nonce);
    if (sl < 0)
      abort();
    il = (size_t)sl;
  } else {
    il = rn > STORE_ITEM_MAX ? STORE_ITEM_MAX : rn;
    memcpy(item, rest, il);
  }
  uint8_t sig[DHT_SIG_LEN];
  store_deposit_sign(sig, &k, dep, item, il);
  fs_item_add(h, k.id, k.pk, dep, item, il, sig, from, to, k.epoch);
  if (sel & 0x10)
    sig[sel % 64] ^= 0x40;
  uint8_t buf[DHT_MAX_BODY];
  /* the item may be empty (a raw deposit of no bytes): the encoder writes
   * it, the service must drop it */
  store_wire_msg m = {.txid = (uint32_t)(1000 + h->nonce_ctr)};
  if (sel & 8) {
    m.type = STORE_T_DIRECT;
    m.u.direct.mbox = k.id;
    m.u.direct.deposited_s = dep;
    m.u.direct.item = item;
    m.u.direct.item_len = il;
    m.u.direct.sig = sig;
  } else {
    m.type = STORE_T_DEPOSIT;
    m.u.deposit.flags = (uint8_t)(sel >> 5);
    m.u.deposit.mbox = k.id;
    m.u.deposit.mbox_pk = k.pk;
    m.u.deposit.deposited_s = dep;
    m.u.deposit.item = item;
    m.u.deposit.item_len = il;
    m.u.deposit.sig = sig;
  }
  dht_ssize bl = store_wire_encode(buf, sizeof buf, &m);
  sodium_memzero(&k, sizeof k);
  if (bl < 0)
    return;
  fs_send(h, sel & 3, false, buf, (size_t)bl);
}

/* The mailbox keys of a known item (re-derived), or false. */
static bool fs_item_keys(const fs *h, const fs_item *it, store_mbox_keys *k) {
  if (it->from < 0)
    return false;
  fs_mbox(h, k, it->from, it->to, it->epoch);
  return true;
}

/* AUTH [sel][kind][ft][ep][dt][args]: sel bits 0-1 the requesting peer; bit
 * 2 signed for another requester; bit 3 names another storage node; bit 4 a
 * corrupted signature; bit 5 the mailbox of known item args[0] instead of
 * (ft, ep); bit 6 DELETE/TOMB hashes are raw argument bytes.  time = now +
 * (int8)dt * 10 s. */
static void fs_auth(fs *h, const uint8_t *p, size_t n) {
  if (n < 5)
    return;
  uint8_t sel = p[0];
  int kind = p[1] % FS_AUTH_COUNT;
  const uint8_t *args = p + 5;
  size_t na = n - 5;
  int me = sel & 3;
  store_mbox_keys k;
  int from, to;
  fs_mbox_sel(h, p[2], p[3], &k, &from, &to);
  const fs_item *it = NULL;
  if (h->nitems > 0)
    it = &h->items[(na ? args[0] : 0) % h->nitems];
  if ((sel & 0x20) && it && !fs_item_keys(h, it, &k)) {
    memset(&k, 0, sizeof k); /* unknown keys: its ID, a zero key */
    memcpy(k.id, it->mbox, 32);
    memcpy(k.pk, it->mpk, 32);
  }
  uint64_t t = (uint64_t)(fs_unix_s(h) + (int64_t)(int8_t)p[4] * 10);
  const uint8_t *req_pk = h->k->id[1 + ((sel & 4) ? (me + 1) % FS_PEERS : me)].pk;
  const uint8_t *sid = (sel & 8) ? h->k->nid[1 + (me + 2) % FS_PEERS] : h->k->nid[0];
  uint8_t hashes[STORE_DEL_MAX * 16];
  size_t nh = na >= 2 ? args[1] % (STORE_DEL_MAX + 1) : 1;
  for (size_t j = 0; j < nh; j++) {
    if ((sel & 0x40) || h->nitems == 0) {
      memset(hashes + 16 * j, 0, 16);
      if (na > 2)
        for (int b = 0; b < 16; b++)
          hashes[16 * j + b] = args[2 + (16 * j + b) % (na - 2)];
    } else {
      const fs_item *x = &h->items[(na > 2 + j ? args[2 + j] : j) % h->nitems];
      memcpy(hashes + 16 * j, x->hash, 16);
    }
  }
  uint8_t sig[64], buf[DHT_MAX_BODY];
  uint8_t proof[STORE_PROOF_MAX], msg[17 + 32 * 32];
  /* nh may be 0 (a DELETE or REGISTER of nothing): the encoder writes it,
   * the service must drop it */
  store_wire_msg m = {.txid = (uint32_t)(2000 + h->nonce_ctr++)};
  switch (kind) {
  case FS_AUTH_FETCH:
    store_auth_sign(sig, STORE_AUTH_FETCH, &k, sid, req_pk, t, NULL, 0);
    if (sel & 0x10)
      sig[5] ^= 1;
    m.type = STORE_T_FETCH;
    m.u.fetch.mbox = k.id;
    m.u.fetch.mbox_pk = k.pk;
    m.u.fetch.time_s = t;
    m.u.fetch.sig = sig;
    m.u.fetch.after = na >= 18 ? args + 2 : NULL;
    break;
  case FS_AUTH_DELETE:
    store_auth_sign(sig, STORE_AUTH_DELETE, &k, sid, req_pk, t, hashes, nh);
    if (sel & 0x10)
      sig[5] ^= 1;
    m.type = STORE_T_DELETE;
    m.u.del.mbox = k.id;
    m.u.del.mbox_pk = k.pk;
    m.u.del.time_s = t;
    m.u.del.hashes = hashes;
    m.u.del.nhashes = nh;
    m.u.del.sig = sig;
    break;
  case FS_AUTH_GETITEM:
    m.type = STORE_T_GETITEM;
    m.u.getitem.mbox = (sel & 0x20) && it ? it->mbox : k.id;
    m.u.getitem.hash = it && !(sel & 0x40) ? it->hash : hashes;
    break;
  case FS_AUTH_TOMB: {
    /* a delete proof: storage_id(32) requester(32) time(8 BE) n(1)
     * hashes(n*16) sig(64), the DELETE signature inside */
    size_t o = 0;
    store_auth_sign(sig, STORE_AUTH_DELETE, &k, sid, req_pk, t, hashes, nh);
    if (sel & 0x10)
      sig[5] ^= 1;
    memcpy(proof, sid, 32), o += 32;
    memcpy(proof + o, req_pk, 32), o += 32;
    for (int b = 7; b >= 0; b--)
      proof[o++] = (uint8_t)(t >> (8 * b));
    proof[o++] = (uint8_t)nh;
    memcpy(proof + o, hashes, nh * 16), o += nh * 16;
    memcpy(proof + o, sig, 64), o += 64;
    m.type = STORE_T_TOMB;
    m.u.tomb.mbox = k.id;
    m.u.tomb.mbox_pk = k.pk;
    m.u.tomb.proof = proof;
    m.u.tomb.proof_len = o;
    break;
  }
  default: { /* FS_AUTH_REGISTER: mailboxes X -> me for this epoch and the next */
    size_t ni = nh;
    memcpy(msg, "roost-register-v1", 17);
    for (size_t j = 0; j < ni; j++) {
      store_mbox_keys r;
      int f = (int)((na > 2 + j ? args[2 + j] : j) % FS_NID);
      if (f == me + 1)
        f = 0;
      fs_mbox(h, &r, f, me + 1, fs_epoch(h) + (uint32_t)(j % 3));
      memcpy(msg + 17 + 32 * j, r.id, 32);
    }
    crypto_sign_detached(sig, NULL, msg, 17 + 32 * ni, h->k->id[1 + me].sk);
    if (sel & 0x10)
      sig[5] ^= 1;
    m.type = STORE_T_REGISTER;
    m.u.reg.ids = msg + 17;
    m.u.reg.nids = ni;
    m.u.reg.sig = sig;
    break;
  }
  }
  dht_ssize bl = store_wire_encode(buf, sizeof buf, &m);
  sodium_memzero(&k, sizeof k);
  if (bl > 0)
    fs_send(h, me, false, buf, (size_t)bl);
}

/* REPLY [sel][idx][status][variant][extra]: peer sel & 3 answers one of the
 * service requests the engine sent it: with idx bit 7 the newest unanswered
 * one of type 0x30 | (idx & 15) (nothing if none), else ring[idx % n].
 * variant bit 0: use the status byte (else the usual success); bit 1: extra
 * bytes replace the computed payload (entries, buckets, item); bit 2: LIST
 * more = true / RECEIPT without signature; bit 3: a wrong hash in a RECEIPT. */
static void fs_reply(fs *h, const uint8_t *p, size_t n) {
  if (n < 4)
    return;
  int i = p[0] & 3;
  fs_peer *pe = &h->p[i];
  if (pe->nring == 0)
    return;
  fs_req *q = NULL;
  if (p[1] & 0x80) {
    for (int j = 0; j < pe->nring && !q; j++)
      if (!pe->ring[j].answered && pe->ring[j].type == (STORE_MSG_LO | (p[1] & 0x0f)))
        q = &pe->ring[j];
    if (!q)
      return;
  } else {
    q = &pe->ring[p[1] % pe->nring];
  }
  q->answered = true;
  uint8_t var = p[3];
  const uint8_t *x = p + 4;
  size_t nx = n - 4;
  uint64_t st = (var & 1) ? p[2] : 0;
  uint8_t buf[DHT_MAX_BODY];
  uint8_t sig[64], hash[16], ents[STORE_LIST_MAX * STORE_ENTRY_LEN], b[16 * 18];
  store_wire_msg m = {.type = store_wire_answer_type(q->type), .txid = q->txid};
  switch (q->type) {
  case STORE_T_DEPOSIT: {
    memcpy(hash, q->hash, 16);
    if (var & 8)
      hash[0] ^= 1;
    store_receipt_sign(sig, &h->k->id[i + 1], q->mbox, hash);
    m.u.receipt.status = (uint8_t)st;
    m.u.receipt.hash = hash;
    m.u.receipt.sig = (var & 4) ? NULL : sig;
    break;
  }
  case STORE_T_FETCH: {
    size_t ne = 0;
    if (var & 2) {
      ne = nx / STORE_ENTRY_LEN > STORE_LIST_MAX ? STORE_LIST_MAX : nx / STORE_ENTRY_LEN;
      memcpy(ents, x, ne * STORE_ENTRY_LEN);
    } else {
      for (int j = 0; j < h->nitems; j++)
        if (!memcmp(h->items[j].mbox, q->mbox, 32)) {
          memcpy(ents + ne * STORE_ENTRY_LEN, h->items[j].hash, 16);
          ents[ne * STORE_ENTRY_LEN + 16] = nx ? x[0] % 4 : STORE_REC_ITEM;
          if (ents[ne * STORE_ENTRY_LEN + 16] == 0)
            ents[ne * STORE_ENTRY_LEN + 16] = STORE_REC_ITEM;
          ne++;
        }
    }
    m.u.list.status = (uint8_t)st;
    m.u.list.entries = ents;
    m.u.list.nentries = ne;
    m.u.list.more = (var & 4) != 0;
    break;
  }
  case STORE_T_GETITEM: {
    fs_item *it = fs_item_find(h, q->mbox, q->hash);
    m.u.item.status = (uint8_t)st;
    if (it && !(var & 2)) {
      m.u.item.deposited_s = it->dep_s;
      m.u.item.item = it->data;
      m.u.item.item_len = it->len;
      m.u.item.sig = it->sig;
    } else {
      m.u.item.deposited_s = (uint64_t)fs_unix_s(h);
      m.u.item.item = x;
      m.u.item.item_len = nx > STORE_ITEM_MAX ? STORE_ITEM_MAX : nx;
    }
    break;
  }
  case STORE_T_DELETE:
  case STORE_T_TOMB:
  case STORE_T_REGISTER:
    m.u.ack.status = (uint8_t)st;
    m.u.ack.n = nx ? x[0] : 0;
    break;
  case STORE_T_RECON: {
    size_t bl = 0;
    if (!(var & 1))
      st = STORE_W_DIFFER;
    if (st == STORE_W_DIFFER && !(var & 2)) {
      memset(b, 0, sizeof b);
      memcpy(b, x, nx > sizeof b ? sizeof b : nx);
      bl = sizeof b;
    } else {
      bl = nx > sizeof b ? sizeof b : nx;
      memcpy(b, x, bl);
    }
    /* any length: a RECON_R whose buckets are neither absent nor whole
     * must be dropped */
    m.u.recon_r.status = (uint8_t)st;
    m.u.recon_r.buckets = b;
    m.u.recon_r.buckets_len = bl;
    break;
  }
  case STORE_T_RECON_L: {
    uint8_t *want = ents;
    size_t ne = 0;
    if (var & 2) {
      ne = nx / STORE_ENTRY_LEN > STORE_LIST_MAX ? STORE_LIST_MAX : nx / STORE_ENTRY_LEN;
      memcpy(want, x, ne * STORE_ENTRY_LEN);
    } else { /* everything of that mailbox the peers know of */
      for (int j = 0; j < h->nitems; j++)
        if (!memcmp(h->items[j].mbox, q->mbox, 32)) {
          memcpy(want + ne * STORE_ENTRY_LEN, h->items[j].hash, 16);
          want[ne * STORE_ENTRY_LEN + 16] = STORE_REC_ITEM;
          ne++;
        }
    }
    m.u.recon_lr.status = (uint8_t)st;
    m.u.recon_lr.want = want;
    m.u.recon_lr.nwant = ne;
    break;
  }
  default: /* STORE_T_DIRECT */
    m.u.direct_ack.status = (uint8_t)st;
    break;
  }
  dht_ssize enc = store_wire_encode(buf, sizeof buf, &m);
  if (enc > 0)
    fs_send(h, i, false, buf, (size_t)enc);
}

static void fs_issued(fs *h, int64_t id) {
  (void)h;
  if (id < 0 && !store_strerror((int)id))
    abort();
}

static void fs_boot(fs *h) {
  dht_peer peers[FS_PEERS];
  fc_peer_list(peers, FS_PEERS, &h->k->id[1], fs_peer_addr, 0);
  dht_bootstrap(h->e, peers, FS_PEERS, h->now);
}

static void fs_cmd(fs *h, const uint8_t *p, size_t n) {
  int which = n ? p[0] % FS_CMD_COUNT : FS_CMD_FETCH;
  const uint8_t *a = n ? p + 1 : p;
  size_t na = n ? n - 1 : 0;
  uint8_t a0 = na ? a[0] : 0, a1 = na > 1 ? a[1] : 0;
  const uint8_t *peer_pk = h->k->id[1 + (a0 & 3)].pk;
  switch (which) {
  case FS_CMD_SEND: {
    store_msg m;
    memset(&m, 0, sizeof m);
    h->nonce_ctr++;
    memcpy(m.id, &h->nonce_ctr, sizeof h->nonce_ctr);
    m.id[15] = 0x5e;
    memcpy(h->last_msgid, m.id, STORE_MSGID_LEN);
    m.sent_unix_ms = dht_unix_ms(h->e, h->now);
    m.kind = (a0 & 0x80) ? (uint8_t)(a0 >> 4 & 3) : STORE_KIND_TEXT;
    size_t tl = na > 1 ? na - 1 : 0;
    m.len = (uint16_t)(tl > STORE_TEXT_MAX ? (size_t)STORE_TEXT_MAX + (a0 & 0x40 ? 1 : 0) : tl);
    memcpy(m.body, a + 1, tl > STORE_TEXT_MAX ? STORE_TEXT_MAX : tl);
    int64_t id = store_send(h->svc, peer_pk, &m, h->now);
    fs_issued(h, id);
    if (id > h->max_cmd)
      h->max_cmd = id;
    break;
  }
  case FS_CMD_FETCH:
    fs_issued(h, store_fetch(h->svc, h->now));
    break;
  case FS_CMD_FRIEND: {
    store_friend f;
    memset(&f, 0, sizeof f);
    memcpy(f.pk, (a0 & 4) ? h->k->id[0].pk : peer_pk, DHT_PK_LEN); /* ourselves: refused */
    f.nhosts = (a0 >> 3) & 7;
    for (int j = 0; j < STORE_MAX_HOSTS; j++) {
      int q = (a1 + j) % FS_PEERS;
      memcpy(f.hosts[j].pk, h->k->id[1 + q].pk, DHT_PK_LEN);
      if (!((a1 >> 4) & (1 << j)))
        fs_peer_addr(q, false, &f.hosts[j].addr);
    }
    uint32_t ep = fs_epoch(h);
    f.fetched_epoch = na > 2 ? ep - a[2] % 40 : ep;
    int rc = store_friend_set(h->svc, &f, h->now);
    if (f.nhosts > STORE_MAX_HOSTS && rc != DHT_ERR_INVAL)
      abort();
    break;
  }
  case FS_CMD_UNFRIEND:
    store_friend_remove(h->svc, peer_pk);
    break;
  case FS_CMD_HOST: {
    int64_t quota = (int64_t)(a1 << 8 | (na > 2 ? a[2] : 0)) * 4;
    if (a0 & 0x80)
      quota = -1;
    int rc = store_host_set(h->svc, peer_pk, quota);
    if (quota < 0 && rc != DHT_ERR_INVAL)
      abort();
    if (rc == 0 && quota > 0) {
      h->ever_hosted = true;
      if (quota > h->max_quota)
        h->max_quota = quota;
    }
    break;
  }
  case FS_CMD_MYHOSTS: {
    store_host_ref hr[STORE_MAX_HOSTS + 1];
    int nh = a0 % (STORE_MAX_HOSTS + 2);
    memset(hr, 0, sizeof hr);
    for (int j = 0; j < nh && j < STORE_MAX_HOSTS + 1; j++) {
      int q = (a1 + j) % FS_PEERS;
      memcpy(hr[j].pk, h->k->id[1 + q].pk, DHT_PK_LEN);
      fs_peer_addr(q, (a1 >> (4 + j % 4)) & 1, &hr[j].addr);
    }
    int rc = store_my_hosts_set(h->svc, hr, nh, h->now);
    if ((nh > STORE_MAX_HOSTS) != (rc == DHT_ERR_INVAL))
      abort();
    break;
  }
  case FS_CMD_READ: {
    store_msgid ids[4];
    int ni = a1 % 5;
    for (int j = 0; j < ni; j++) {
      memcpy(ids[j], h->last_msgid, STORE_MSGID_LEN);
      ids[j][0] ^= (uint8_t)j;
    }
    store_mark_read(h->svc, peer_pk, ids, ni, h->now);
    break;
  }
  case FS_CMD_CANCEL:
    store_send_cancel(h->svc, h->last_msgid);
    break;
  case FS_CMD_BOOT:
    fs_boot(h);
    break;
  default: /* FS_CMD_DURABLE: nothing waits on the memory backend */
    store_svc_durable(h->svc, INT64_MAX, h->now);
    break;
  }
}

static void fs_config(fs *h, uint8_t f) {
  store_settings *s = &h->ss;
  h->cfg = f;
  if (f & FS_CFG_QUOTA) {
    s->mbox_quota_items = 2;
    s->mbox_quota_bytes = 2000;
    s->capacity_bytes = 4000;
  }
  if (f & FS_CFG_TINY) {
    s->max_pending_rpcs = 8;
    s->max_events = 4;
    s->max_outgoing = 2;
    s->max_grants = 1;
    s->max_friends = 2;
    s->max_hosted = 1;
    s->max_fetch_epochs = 2;
  }
  if (f & FS_CFG_NOPOLL)
    s->poll_interval_ms = 0;
  if (f & FS_CFG_SHORTTTL) {
    s->ttl_dht_s = 600;
    s->ttl_hosted_s = 1200;
  }
  if (f & FS_CFG_ONEREP) {
    s->replicas = 1;
    s->stored_receipts = 1;
  }
}

/* Runs one input on a fresh engine and service; copies the final stats into
 * *out if out is not NULL. */
static void fs_run(const uint8_t *data, size_t size, store_stats *out, int *evcount) {
  fs *h = calloc(1, sizeof *h);
  if (!h)
    abort();
  h->k = fs_setup();
  tu_rng_init(&h->rng, 0x5eed, 7);
  h->now = FS_T0;
  fc_settings(&h->set); /* key and cookie caches 16, max_records 16, rate_pps 0 */
  h->set.k = 8;
  h->set.max_out_queue = 256;
  h->set.max_events = 64;
  h->set.max_lookups = 32;
  h->set.log_level = DHT_LOG_ERROR;
  store_settings_default(&h->ss);
  h->max_quota = 0;

  const uint8_t *cp = NULL;
  size_t clen = 0;
  size_t pos = fc_op_config(data, size, FS_OP_COUNT, FS_OP_CONFIG, &cp, &clen);
  if (pos)
    fs_config(h, clen ? cp[0] : 0);
  dht_callbacks cb = {.ctx = &h->rng, .rand = tu_rand_cb, .log = NULL};
  fc_engine_new(&h->e, &h->k->id[0], &h->set, &cb, h->now);
  if (store_mem_new(&h->be, NULL) != 0)
    abort();
  if (store_svc_new(&h->svc, h->e, &h->k->id[0], &h->be, &h->ss, &cb, NULL, h->now) != 0)
    abort();
  if (!(h->cfg & FS_CFG_NOBOOT)) {
    fs_boot(h);
    fs_drain(h);
  }

  uint8_t op;
  const uint8_t *p;
  size_t len;
  for (int ops = 0; ops < FS_MAX_OPS && fc_op_next(data, size, &pos, &op, &p, &len); ops++) {
    switch (op % FS_OP_COUNT) {
    case FS_OP_BODY:
      if (len >= 1)
        fs_body(h, p[0], p + 1, len - 1);
      break;
    case FS_OP_TIME:
      fs_time(h, p, len);
      break;
    case FS_OP_CMD:
      fs_cmd(h, p, len);
      break;
    case FS_OP_DEPOSIT:
      fs_deposit(h, p, len);
      break;
    case FS_OP_AUTH:
      fs_auth(h, p, len);
      break;
    case FS_OP_REPLY:
      fs_reply(h, p, len);
      break;
    default:
      break;
    }
    fs_drain(h);
  }

  if (out)
    store_get_stats(h->svc, out);
  if (evcount)
    memcpy(evcount, h->evcount, sizeof h->evcount);
  store_svc_del(h->svc); /* closes the backend */
  dht_del(h->e);
  for (int i = 0; i < FS_PEERS; i++)
    if (h->p[i].ready)
      dht_box_free(&h->p[i].box, &dht_mem_libc);
  free(h);
}

#ifndef FS_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fs_run(data, size, NULL, NULL);
  return 0;
}
#endif

/*
 * store.h - mailboxes: a message reaches a friend who was offline.
 *
 * The one facade of store/ (the SQLite adapter has its own header,
 * store_sqlite.h, and its own CMake target that only node/ links).
 * Like dht/, store/ is sans-I/O: no sockets, clocks, files, threads or
 * mutable globals.  Time comes in as `now` (monotonic ms) plus the engine's
 * wall-clock offset; randomness and logging through the engine's callbacks.
 *
 * Three parts:
 *
 *  1. Crypto (store_crypto.c): the pair secret of two identities, per-pair
 *     per-epoch mailbox keys and IDs, sealing a message into a padded
 *     XChaCha20-Poly1305 item, storage receipts, and the signed FETCH and
 *     DELETE authorisations.  Pure functions; test vectors in
 *     tests/unit/test_store_crypto.c.
 *  2. Backends (store_mem.c here, store_sqlite.c in the adapter): where a
 *     storage node keeps the items and tombstones it holds for others.
 *  3. The mailbox service (store_svc.c and the files store/README.md lists;
 *     the messages are store_wire.h's): a dht/ service that owns message
 *     types 0x30-0x3f.  It stores items for others (quotas, TTL, receipts,
 *     replica reconciliation, hand-off), and for its own user it sends
 *     (direct first, else deposit at the replicas), fetches, deletes and
 *     acknowledges.  docs/mailbox.md is the protocol.
 *
 * Errors are the DHT_ERR_* codes of dht.h plus the STORE_ERR_* below.
 */
#ifndef ROOST_STORE_H
#define ROOST_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dht.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- sizes (wire format: not settings) ------------------------------- */

#define STORE_MBOX_LEN 32  /* mailbox ID: BLAKE2b-256(mailbox public key) */
#define STORE_HASH_LEN 16  /* item ID: BLAKE2b-128(item bytes) */
#define STORE_MSGID_LEN 16 /* message ID, chosen by the sender at random */
#define STORE_KEY_LEN 32
#define STORE_NONCE_LEN 24 /* XChaCha20-Poly1305 */
#define STORE_AEAD_LEN 16
/* Padded plaintext sizes.  An item is nonce || ciphertext, so its size is
 * one of 168, 296, 552 or 1000 bytes: storage nodes learn only which. */
#define STORE_PAD_SIZES                                                                            \
  { 128, 256, 512, 960 }
#define STORE_NPADS 4
#define STORE_PLAIN_MAX 960
#define STORE_ITEM_MAX (STORE_NONCE_LEN + STORE_PLAIN_MAX + STORE_AEAD_LEN) /* 1000 */
/* Plaintext header: msg_id(16) sent_unix_ms(8, BE) kind(1) len(2, BE). */
#define STORE_PLAIN_HDR 27
#define STORE_TEXT_MAX (STORE_PLAIN_MAX - STORE_PLAIN_HDR) /* 933 */
#define STORE_DEL_MAX 32                                   /* hashes in one DELETE */
#define STORE_PROOF_MAX 700 /* a tombstone's delete proof, serialised */

#define STORE_EPOCH_MS_DEFAULT 86400000 /* one day */

enum store_err {
  STORE_ERR_MBOX_FULL = -20, /* per-mailbox quota reached at a storage node */
  STORE_ERR_NODE_FULL = -21, /* the storage node's capacity is used up */
  STORE_ERR_BADSIG = -22,    /* a signature or a mailbox key does not match */
  STORE_ERR_TIME = -23,      /* a timestamp is outside the accepted window */
  STORE_ERR_TOOBIG = -24,    /* a message longer than STORE_TEXT_MAX */
  STORE_ERR_DB = -25,        /* backend failure (SQLite said no) */
  STORE_ERR_DB_NEWER = -26,  /* database written by a newer roost */
  STORE_ERR_DB_CORRUPT = -27,
};

/* A short static name for a DHT_ERR_* or STORE_ERR_* code. */
const char *store_strerror(int err);

/* ---- 1. crypto ------------------------------------------------------- */

/* What a message item carries once opened. */
enum store_kind {
  STORE_KIND_TEXT = 1,      /* a message for the user */
  STORE_KIND_DELIVERED = 2, /* receipt: body is a list of msg IDs (16 B each) */
  STORE_KIND_READ = 3,      /* receipt: the user has read these msg IDs */
};

/* The pair secret of identities a and b: X25519 of our secret and their
 * public key (both converted from Ed25519), hashed with both public keys in
 * canonical (memcmp) order, so both sides get the same 32 bytes.  Returns 0
 * or DHT_ERR_CRYPTO (a key that does not convert, or an all-zero result). */
int store_pair_secret(uint8_t out[static STORE_KEY_LEN], const dht_identity *me,
                      const uint8_t peer_pk[static DHT_PK_LEN]);

/* The mailbox for messages from `from_pk` to `to_pk` in epoch `epoch`: an
 * Ed25519 key pair derived from the pair secret, its ID = BLAKE2b-256(pk),
 * and the payload key.  Only the two friends can compute it; storage nodes
 * see an ID that changes every epoch and is unlinkable to either identity. */
typedef struct store_mbox_keys {
  uint8_t id[STORE_MBOX_LEN];
  uint8_t pk[DHT_PK_LEN];
  uint8_t sk[DHT_SK_LEN];
  uint8_t payload_key[STORE_KEY_LEN];
  uint32_t epoch;
} store_mbox_keys;

void store_mbox_derive(store_mbox_keys *out, const uint8_t pair[static STORE_KEY_LEN],
                       const uint8_t from_pk[static DHT_PK_LEN],
                       const uint8_t to_pk[static DHT_PK_LEN], uint32_t epoch);

/* The epoch of a unix time in ms: floor(unix_ms / epoch_ms). */
uint32_t store_epoch_of(int64_t unix_ms, int64_t epoch_ms);

/* A message before sealing / after opening. */
typedef struct store_msg {
  uint8_t id[STORE_MSGID_LEN];
  int64_t sent_unix_ms;
  uint8_t kind; /* enum store_kind */
  uint16_t len;
  uint8_t body[STORE_TEXT_MAX];
} store_msg;

/* Seals m into item (>= STORE_ITEM_MAX bytes): pads the plaintext to the
 * smallest of STORE_PAD_SIZES that fits, encrypts with the mailbox payload
 * key and a random nonce (from `nonce`, 24 bytes the caller drew), and binds
 * the mailbox ID as associated data.  Returns the item length or
 * STORE_ERR_TOOBIG. */
dht_ssize store_seal(uint8_t *item, const store_mbox_keys *k, const store_msg *m,
                     const uint8_t nonce[static STORE_NONCE_LEN]);
/* Opens an item sealed for mailbox k.  Returns 0, DHT_ERR_CRYPTO (forged,
 * wrong mailbox, damaged) or DHT_ERR_PROTO (a size that is not a padded size,
 * or a bad header or padding that is not zero). */
int store_open(store_msg *m, const store_mbox_keys *k, const uint8_t *item, size_t len);

/* The item ID: BLAKE2b-128 over the item bytes. */
void store_item_hash(uint8_t out[static STORE_HASH_LEN], const uint8_t *item, size_t len);

/* A deposit: the item, when it was deposited (wall clock, seconds; fixes its
 * expiry on every replica), and the mailbox key's signature over
 * ("roost-deposit-v1" || mailbox_id || deposited_s (8 B BE) || item).  Every
 * replica checks it; reconciliation forwards the original. */
void store_deposit_sign(uint8_t sig[static DHT_SIG_LEN], const store_mbox_keys *k,
                        uint64_t deposited_s, const uint8_t *item, size_t len);
bool store_deposit_verify(const uint8_t sig[static DHT_SIG_LEN],
                          const uint8_t mbox_id[static STORE_MBOX_LEN],
                          const uint8_t mbox_pk[static DHT_PK_LEN], uint64_t deposited_s,
                          const uint8_t *item, size_t len);
/* true when mbox_id == BLAKE2b-256(mbox_pk). */
bool store_mbox_id_matches(const uint8_t mbox_id[static STORE_MBOX_LEN],
                           const uint8_t mbox_pk[static DHT_PK_LEN]);

/* A storage receipt: the storage node's identity signs ("roost-receipt-v1"
 * || mailbox_id || item hash). */
void store_receipt_sign(uint8_t sig[static DHT_SIG_LEN], const dht_identity *node,
                        const uint8_t mbox_id[static STORE_MBOX_LEN],
                        const uint8_t hash[static STORE_HASH_LEN]);
bool store_receipt_verify(const uint8_t sig[static DHT_SIG_LEN],
                          const uint8_t node_pk[static DHT_PK_LEN],
                          const uint8_t mbox_id[static STORE_MBOX_LEN],
                          const uint8_t hash[static STORE_HASH_LEN]);

/* FETCH and DELETE authorisations, signed by the mailbox key over
 * (label || mailbox_id || storage node ID || requester's node key || time
 * (8 B BE, unix s) [|| the hashes, for DELETE]).  A storage node accepts one
 * only when it names this node, the requester is the authenticated sender
 * of the datagram, and the time is within the accepted window: so a copy
 * replayed by anybody else, to another node, or later, is useless. */
enum store_auth_op { STORE_AUTH_FETCH = 1, STORE_AUTH_DELETE = 2 };
void store_auth_sign(uint8_t sig[static DHT_SIG_LEN], int op, const store_mbox_keys *k,
                     const uint8_t storage_id[static DHT_ID_LEN],
                     const uint8_t requester_pk[static DHT_PK_LEN], uint64_t time_s,
                     const uint8_t *hashes, size_t nhashes);
bool store_auth_verify(const uint8_t sig[static DHT_SIG_LEN], int op,
                       const uint8_t mbox_id[static STORE_MBOX_LEN],
                       const uint8_t mbox_pk[static DHT_PK_LEN],
                       const uint8_t storage_id[static DHT_ID_LEN],
                       const uint8_t requester_pk[static DHT_PK_LEN], uint64_t time_s,
                       const uint8_t *hashes, size_t nhashes);

/* ---- 2. backends ------------------------------------------------------ */

enum store_rec_kind {
  STORE_REC_ITEM = 1,    /* a deposited item: data = item, sig = deposit sig */
  STORE_REC_TOMB = 2,    /* deleted by the owner: data = the delete proof */
  STORE_REC_EVICTED = 3, /* dropped unread (capacity): a notice for the owner */
};

/* One stored record.  Keyed by (mbox, hash). */
typedef struct store_rec {
  uint8_t mbox[STORE_MBOX_LEN];
  uint8_t hash[STORE_HASH_LEN];
  uint8_t kind;                /* enum store_rec_kind */
  uint8_t hosted;              /* 1: kept for a friend we host (longer TTL) */
  uint8_t mbox_pk[DHT_PK_LEN]; /* the mailbox key that signed it */
  uint64_t deposited_s;        /* signed by the depositor */
  int64_t expires_s;           /* unix seconds; the record goes after this */
  uint8_t sig[DHT_SIG_LEN];
  uint16_t len;
  uint8_t data[STORE_ITEM_MAX];
} store_rec;

/* Per-mailbox and whole-store usage, for quotas. */
typedef struct store_usage {
  int64_t items;   /* STORE_REC_ITEM records */
  int64_t bytes;   /* their data bytes */
  int64_t records; /* every record, tombstones and notices included */
} store_usage;

/* The backend interface.  Every call is made from the engine's thread.
 *
 * put() makes a record visible to get/scan/usage at once and returns a
 * write sequence number (> 0); the record is durable once durable()
 * reports a sequence >= it.  A memory backend is durable at once; the
 * SQLite backend commits batches off the event loop (store_sqlite.h) and the
 * driver tells the service (store_svc_durable).  The service sends a storage
 * receipt only after its write is durable. */
typedef struct store_backend {
  void *ctx;
  /* Insert or replace the record with the same (mbox, hash). */
  int64_t (*put)(void *ctx, const store_rec *r);
  /* 0 and *out, or DHT_ERR_NOTFOUND. */
  int (*get)(void *ctx, const uint8_t mbox[STORE_MBOX_LEN], const uint8_t hash[STORE_HASH_LEN],
             store_rec *out);
  /* Returns the write sequence number of the delete (as put), or <0. */
  int64_t (*del)(void *ctx, const uint8_t mbox[STORE_MBOX_LEN], const uint8_t hash[STORE_HASH_LEN]);
  /* Up to max records of mailbox mbox with hash > after (NULL: from the
   * start), in hash order.  Returns how many were written. */
  int (*scan_mbox)(void *ctx, const uint8_t mbox[STORE_MBOX_LEN],
                   const uint8_t after[STORE_HASH_LEN], store_rec *out, int max);
  /* Up to max distinct mailbox IDs > after (NULL: from the start), in ID
   * order, each with its `hosted` flag.  Returns how many. */
  int (*scan_mboxes)(void *ctx, const uint8_t after[STORE_MBOX_LEN], uint8_t (*ids)[STORE_MBOX_LEN],
                     uint8_t *hosted, int max);
  /* Usage of one mailbox (mbox != NULL) or of the whole store (NULL). */
  int (*usage)(void *ctx, const uint8_t mbox[STORE_MBOX_LEN], store_usage *out);
  /* Up to max records with expires_s < now_s, in (expires, mbox, hash)
   * order.  The service deletes them and leaves notices where needed. */
  int (*scan_expired)(void *ctx, int64_t now_s, store_rec *out, int max);
  /* The highest write sequence number known durable. */
  int64_t (*durable)(void *ctx);
  /* Frees the backend (commits what it can first). */
  void (*close)(void *ctx);
} store_backend;

/* The memory backend: AVL trees keyed by (mbox, hash), by expiry and by
 * mailbox, so every order comes from the keys; durable at once.
 * Bounded by the service's capacity settings.  Returns 0 or DHT_ERR_NOMEM. */
int store_mem_new(store_backend *out, const dht_mem *mem);

/* ---- 3. the mailbox service ------------------------------------------ */

#define STORE_MSG_LO 0x30 /* the message types the service owns */
#define STORE_MSG_HI 0x3f

typedef struct store_settings {
  int replicas;                 /* r: DHT replicas per mailbox: 5 */
  int replica_margin;           /* ranks beyond r that still count as a replica: 3 */
  int stored_receipts;          /* receipts for "stored": 3 */
  int64_t epoch_ms;             /* mailbox epoch: 1 day */
  int64_t ttl_dht_s;            /* items on DHT replicas live: 7 days */
  int64_t ttl_hosted_s;         /* items kept for hosted friends: 30 days */
  int64_t mbox_quota_bytes;     /* per mailbox on a DHT replica: 64 KiB */
  int64_t mbox_quota_items;     /* per mailbox on a DHT replica: 64 */
  int64_t capacity_bytes;       /* everything we store for others: 64 MiB */
  int time_window_s;            /* FETCH/DELETE/deposit clock skew accepted: 300 */
  dht_ts rpc_timeout_ms;        /* one try's timeout; 0 = the engine's RTT estimate: 0 */
  int rpc_tries;                /* attempts per request (1..8): 3 */
  dht_ts direct_timeout_ms;     /* wait for a direct delivery's answer: 1000 */
  dht_ts path_wait_ms;          /* wait for a path to a friend behind a NAT (STORE_EV_PATH)
                                 * before the mailbox: 10 s (0: straight to the mailbox) */
  dht_ts retry_min_ms;          /* first retry of a message not yet stored: 30 s */
  dht_ts retry_max_ms;          /* backoff cap: 10 min */
  dht_ts poll_interval_ms;      /* fetch friends' mailboxes every: 5 min (0 = only on request) */
  dht_ts reconcile_interval_ms; /* replica reconciliation: 10 min */
  int max_friends;              /* 1024 */
  int max_hosted;               /* friends we host: 64 */
  int max_outgoing;             /* messages in flight (sending/retrying): 1024 */
  int max_pending_rpcs;         /* requests awaiting answers: 1024 */
  int max_grants;               /* FETCH grants remembered: 1024 */
  int max_events;               /* events waiting for store_poll_event: 1024 */
  int max_fetch_epochs;         /* epochs looked back at most: ttl_hosted / epoch = 30 */
} store_settings;

void store_settings_default(store_settings *s);

typedef struct store_svc store_svc;

/* Creates the service and plugs it into engine e (dht_service_add).  The
 * identity must be e's.  backend is copied; the service calls its close()
 * in store_svc_del.  Returns 0, DHT_ERR_INVAL, DHT_ERR_NOMEM or what
 * dht_service_add returned. */
int store_svc_new(store_svc **out, dht *e, const dht_identity *id, const store_backend *backend,
                  const store_settings *s, const dht_callbacks *cb, const dht_mem *mem, dht_ts now);
void store_svc_del(store_svc *s);

/* The driver tells the service that the backend's writes up to seq are
 * durable (after a batch commit finished).  Receipts waiting on them go out. */
void store_svc_durable(store_svc *s, int64_t seq, dht_ts now);

/* ---- friends and hosts: the driver keeps them durable and tells us ---- */

#define STORE_MAX_HOSTS 4 /* friend hosts named in an invite */

typedef struct store_host_ref {
  uint8_t pk[DHT_PK_LEN];
  dht_addr addr; /* a hint; family DHT_AF_NONE when unknown (looked up) */
} store_host_ref;

typedef struct store_friend {
  uint8_t pk[DHT_PK_LEN];
  int nhosts;
  store_host_ref hosts[STORE_MAX_HOSTS]; /* where they asked us to deposit too */
  uint32_t fetched_epoch;                /* their mailboxes to us are fetched up to here */
} store_friend;

/* Adds or replaces a friend.  DHT_ERR_FULL past max_friends. */
int store_friend_set(store_svc *s, const store_friend *f, dht_ts now);
int store_friend_remove(store_svc *s, const uint8_t pk[static DHT_PK_LEN]);

/* We host `pk` (a friend) with quota_bytes: their registered mailboxes are
 * kept with ttl_hosted_s and that quota.  quota 0 removes. */
int store_host_set(store_svc *s, const uint8_t pk[static DHT_PK_LEN], int64_t quota_bytes);
/* Our own friend hosts: we register our upcoming mailbox IDs with them and
 * fetch from them too.  n <= STORE_MAX_HOSTS. */
int store_my_hosts_set(store_svc *s, const store_host_ref *hosts, int n, dht_ts now);

/* ---- commands: each returns an id (> 0) or an error; outcomes are events */

/* Sends a message to friend pk.  msg->id is the caller's (so a message
 * re-sent after a restart keeps its ID and the recipient drops the
 * duplicate); msg->sent_unix_ms is kept.  Direct delivery is tried first;
 * otherwise the item is deposited at the r replicas and the friend's hosts,
 * and retried with backoff until "stored".  Events: STORE_EV_STATE. */
int64_t store_send(store_svc *s, const uint8_t friend_pk[static DHT_PK_LEN], const store_msg *msg,
                   dht_ts now);
/* Forgets a message (no more retries). */
int store_send_cancel(store_svc *s, const uint8_t msg_id[static STORE_MSGID_LEN]);
/* Fetches every friend's mailboxes for us now (also done every
 * poll_interval_ms).  Events: STORE_EV_MESSAGE per message, STORE_EV_LOSS,
 * then STORE_EV_FETCHED. */
int64_t store_fetch(store_svc *s, dht_ts now);
/* The user has read these messages from friend pk: sends a read receipt. */
typedef uint8_t store_msgid[STORE_MSGID_LEN];
int store_mark_read(store_svc *s, const uint8_t friend_pk[static DHT_PK_LEN],
                    const store_msgid *ids, int n, dht_ts now);

/* Friend request to a stranger whose key we know (from an invite): `note`
 * (<= STORE_NOTE_MAX bytes, typically our own invite text so they can add us
 * back with one command) is sealed to their key (crypto_box_seal) and
 * deposited in their public request box for this epoch, with proof of work.
 * Events: STORE_EV_STATE (msg_id = the request's ID, states QUEUED/STORED). */
#define STORE_NOTE_MAX 800
int64_t store_request_send(store_svc *s, const uint8_t to_pk[static DHT_PK_LEN],
                           const uint8_t *note, size_t len, dht_ts now);

/* ---- events ----------------------------------------------------------- */

enum store_state {
  STORE_ST_QUEUED = 1,    /* not stored anywhere yet (retrying) */
  STORE_ST_STORED = 2,    /* >= stored_receipts storage receipts */
  STORE_ST_DELIVERED = 3, /* the recipient has it (direct ack or receipt) */
  STORE_ST_READ = 4,      /* the recipient has read it */
};

enum store_event_type {
  STORE_EV_STATE = 1, /* u.state: a sent message moved on */
  STORE_EV_MESSAGE,   /* u.message: a message from a friend (maybe a duplicate) */
  STORE_EV_LOSS,      /* u.loss: a storage node dropped unread items */
  STORE_EV_FETCHED,   /* u.fetched: a fetch round ended */
  STORE_EV_REQUEST,   /* u.request: a friend request from someone */
  STORE_EV_PATH,      /* u.path: open a path to this friend (the driver asks nat/) */
};

typedef struct store_event {
  int type;
  int64_t cmd; /* the command id, 0 when unsolicited */
  int status;  /* 0 or an error */
  union {
    struct {
      uint8_t msg_id[STORE_MSGID_LEN];
      uint8_t friend_pk[DHT_PK_LEN];
      int state;    /* enum store_state */
      int receipts; /* storage receipts so far */
      int replicas; /* storage nodes asked */
      int refused;  /* storage nodes that refused */
      int reason;   /* the last refusal's STORE_ERR_* code, 0 if none */
      bool direct;  /* delivered directly, not through a mailbox */
      int path;     /* then over which path: a dht_path_method (0: the record's address) */
    } state;
    struct {
      uint8_t friend_pk[DHT_PK_LEN];
      store_msg msg; /* kind is always STORE_KIND_TEXT here */
      bool direct;
    } message;
    struct {
      uint8_t friend_pk[DHT_PK_LEN];
      uint32_t epoch;
      int items; /* how many were lost */
    } loss;
    struct {
      int friends;
      int messages; /* new messages reported in this round */
      int replicas_asked, replicas_answered;
      uint32_t epoch; /* fetched up to this epoch (for store_friend.fetched_epoch) */
    } fetched;
    struct {
      uint8_t from_pk[DHT_PK_LEN];
      uint16_t len;
      uint8_t note[STORE_NOTE_MAX];
    } request;
    /* a friend that is not reachable and names introducers in its record:
     * the driver has nat/ punch a path (nat_connect) and reports how it went
     * (store_path_ready); messages to it wait up to path_wait_ms */
    struct {
      uint8_t friend_pk[DHT_PK_LEN];
      int nintro;
      dht_introducer intro[DHT_RECORD_MAX_INTRO];
    } path;
  } u;
} store_event;

/* The driver's answer to STORE_EV_PATH: a path to pk now exists (ok: the
 * engine has it, dht_path_get) or none could be made.  Messages waiting for
 * it go direct over it, or to the mailbox. */
void store_path_ready(store_svc *s, const uint8_t pk[static DHT_PK_LEN], bool ok, dht_ts now);

/* Pops the next event.  0 or DHT_ERR_NOTFOUND. */
int store_poll_event(store_svc *s, store_event *ev);

typedef struct store_stats {
  /* as a storage node */
  uint64_t deposits_in, deposits_stored, deposits_refused, receipts_out;
  uint64_t fetches_in, fetches_refused, deletes_in, deletes_refused, items_served;
  uint64_t expired, evicted, handed_off;
  uint64_t recon_rounds, recon_equal, recon_items_pushed, recon_items_pulled, recon_bytes;
  uint64_t recon_triggered; /* passes started early: our neighbourhood changed */
  uint64_t recon_refused;   /* RECON from a node that is not a replica: answered with nothing */
  uint64_t recon_stranger;  /* RECON_L from one: no pushes, only what we lack of its entries */
  uint64_t drop_malformed, drop_unknown_txid;
  /* as a user */
  uint64_t sent_direct, sent_deposited, receipts_in, fetched_items, delivered_msgs;
  int64_t stored_items, stored_bytes;
  int outgoing, pending_rpcs, friends, hosted;
} store_stats;

void store_get_stats(const store_svc *s, store_stats *st);

#ifdef __cplusplus
}
#endif
#endif /* ROOST_STORE_H */

/*
 * store_int.h - the mailbox service's state and the interfaces between its
 * files.  Private to store/: everything outside uses store.h (and the
 * message layouts in store_wire.h).
 *
 * Files and what they own (each opens with its own paragraph):
 *   store_svc.c     the service: creation, settings, friends, events, the
 *                   request table (retransmission, timeouts), dispatch of
 *                   every message and answer, timers, expiry
 *   store_serve.c   the storage node: deposits, receipts (after durability),
 *                   FETCH/GETITEM grants, DELETE and tombstones, hosting
 *   store_recon.c   reconciliation of a mailbox between replicas
 *   store_outbox.c  the sender: direct first, deposits, retries, receipts
 *   store_fetch.c   the recipient: fetch rounds and their jobs, direct
 *                   deliveries, registering our mailboxes with our hosts
 *   store_reqbox.c  friend requests: request boxes, proof of work, sealing
 *   store_wire.c    the codec of messages 0x30-0x3f
 *
 * Invariants: everything the service remembers is capped by store_settings
 * or a fixed cap below; objects refer to each other by 32-bit ids (an rpc
 * names its owner by kind and id), never by pointers, because the arrays
 * move when they grow or shrink; order never depends on pointers (arrays
 * keep insertion order or are sorted).  A function that may remove entries
 * of an array (out, job, recon) is called with an index and leaves pointers
 * into that array stale: callers look the entry up again.  s->rec and
 * s->rec2 are scratch records (a store_rec is 1 KiB: kept off the stack):
 * any function may fill them, so one that needs a record across a call
 * copies it first (store_recon.c does, around push_rec).
 */
#ifndef ROOST_STORE_INT_H
#define ROOST_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "store_wire.h"

/* ---- fixed caps (not settings: they size arrays or bound one timer run) */

#define MAX_REPL 12 /* r + hosts + slack */
_Static_assert(MAX_REPL <= 16, "job.rep_answered_mask has 16 bits");
#define JOB_ITEMS 256
#define HOST_MBOX_MAX 256   /* registered mailbox IDs per hosted friend */
#define REG_EPOCHS 3        /* register this epoch and the next two */
#define FETCH_JOBS 8        /* mailboxes fetched at once */
#define RECON_PER_TICK 32   /* mailboxes reconciled per timer run */
#define GRANT_MS 120000     /* a FETCH allows GETITEM for this long */
#define EXPIRE_PER_TICK 256 /* records expired per timer run */
#define MAX_JOBS 4096       /* mailboxes in one fetch round */
#define REQBOX_ITEMS 16     /* friend requests one request box keeps */

/* ---- state -------------------------------------------------------------- */

enum owner { O_NONE = 0, O_OUT, O_JOB, O_RECON, O_OTHER };

/* One of our requests, as the engine hands it back with its answer or its
 * timeout (the engine keeps, retransmits and times requests:
 * dht_svc_request). */
typedef struct rpc {
  uint32_t txid;
  uint8_t type;
  uint8_t owner; /* enum owner */
  uint32_t oid;  /* the owner's id */
  int aux;       /* owner-specific (replica index ...) */
  dht_peer to;
} rpc;

/* The engine's request tag: owner kind and id, so that dht_svc_cancel can
 * forget one owner's requests at once. */
#define RPC_TAG(owner, oid) ((uint64_t)(owner) << 32 | (uint32_t)(oid))

/* P_PATH: waiting for a path to a friend behind a NAT (until retry_at) */
enum out_phase { P_RECORD = 1, P_DIRECT, P_LOOKUP, P_DEPOSIT, P_WAIT, P_PATH };

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
  int path; /* the direct tries go over the key's path (a dht_path_method), or 0 */
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
  uint16_t rep_answered_mask; /* which of rep[] answered (a paged list answers more than once) */
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

  int svc_id; /* ours in the engine */
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

/* ---- store_svc.c: helpers every file uses -------------------------------- */

/* The service's allocator (dht_mem, or libc). */
void *store_svc_realloc(store_svc *s, void *p, size_t n);
void store_svc_free(store_svc *s, void *p);
/* Makes room for one more element in *arr (count n, capacity *cap) up to
 * limit.  0 or DHT_ERR_FULL / DHT_ERR_NOMEM. */
int store_svc_grow(store_svc *s, void **arr, int n, int *cap, size_t elem, int limit);
/* n bytes from the engine's rand callback (deterministic in roost-sim). */
void store_svc_rand(store_svc *s, void *buf, size_t n);
/* A random non-zero transaction id. */
uint32_t store_svc_txid(store_svc *s);
/* A lookup of target (FIND_NODE, or a record GET when get) whose result the
 * engine hands to this service, not to the driver.  The command's id, or a
 * negative error. */
int64_t store_svc_lookup(store_svc *s, const uint8_t target[static DHT_ID_LEN], bool get,
                         dht_ts now);
/* Wall-clock unix seconds, and the mailbox epoch, at monotonic time now. */
int64_t store_svc_unix_s(const store_svc *s, dht_ts now);
uint32_t store_svc_epoch(const store_svc *s, dht_ts now);
/* Queues an event for store_poll_event and returns it zeroed but for type,
 * cmd and status; NULL when max_events are waiting (the event is lost). */
store_event *store_svc_event(store_svc *s, int type, int64_t cmd, int status);
/* Queues body for peer to (dht_svc_send): 0 or its error. */
int store_svc_send(store_svc *s, const dht_peer *to, const uint8_t *body, size_t len);
/* Sends a request through the engine (dht_svc_request): tries sends in all,
 * each waiting timeout ms, or the engine's RTT estimate for the peer when
 * timeout is 0; the answer or the timeout goes to the owner kind `owner`, id
 * oid, with aux.  At most max_pending_rpcs at once.  Returns 0 or an error
 * (then nothing was sent). */
int store_svc_rpc_start(store_svc *s, const dht_peer *to, const uint8_t *body, size_t len,
                        uint32_t txid, uint8_t type, int owner, uint32_t oid, int aux, int tries,
                        dht_ts timeout, dht_ts now);
/* Forgets every request of owner (kind, id): their answers will count as
 * unknown. */
void store_svc_rpc_drop_owner(store_svc *s, int owner, uint32_t oid);
/* Sends an answer of type that carries only a status (a refusal, or ok). */
void store_svc_reply_status(store_svc *s, const dht_peer *to, uint8_t type, uint32_t txid,
                            uint64_t status);
/* Our friend with key pk, or NULL. */
const store_friend *store_svc_friend_find(const store_svc *s, const uint8_t pk[DHT_PK_LEN]);

/* ---- store_serve.c: the storage node ------------------------------------- */

/* The requests a storage node answers, decoded (m borrowed). */
void store_serve_deposit(store_svc *s, const dht_peer *from, const store_wire_msg *m, dht_ts now);
void store_serve_fetch(store_svc *s, const dht_peer *from, const store_wire_msg *m, dht_ts now);
void store_serve_getitem(store_svc *s, const dht_peer *from, const store_wire_msg *m, dht_ts now);
void store_serve_delete(store_svc *s, const dht_peer *from, const store_wire_msg *m, dht_ts now);
void store_serve_tomb(store_svc *s, const dht_peer *from, const store_wire_msg *m);
void store_serve_register(store_svc *s, const dht_peer *from, const store_wire_msg *m);
/* Serialises a delete proof into out (>= STORE_PROOF_MAX): storage_id(32)
 * requester(32) time(8 BE) n(1) hashes(n*16) sig(64).  Returns its length. */
size_t store_serve_proof_pack(uint8_t *out, const uint8_t sid[32], const uint8_t req[32],
                              uint64_t t, const uint8_t *hashes, size_t nh, const uint8_t sig[64]);
/* Replaces each listed hash of mbox that we hold with a tombstone carrying
 * the proof; counts replaced items in *deleted (may be NULL).  Returns the
 * write sequence of the last write (0 if none). */
int64_t store_serve_put_tombs(store_svc *s, const uint8_t mbox[32], const uint8_t mpk[32],
                              const uint8_t *hashes, int nh, const uint8_t *proof, size_t plen,
                              int *deleted);

/* ---- store_recon.c: reconciliation ---------------------------------------- */

/* The index of reconciliation id in s->recons, or -1. */
/* store_replica.c: the replica rule (docs/mailbox.md, "Who is a replica") */
int store_replica_limit(const store_svc *s); /* r + margin */
bool store_replica_is(store_svc *s, const uint8_t mbox[static STORE_MBOX_LEN],
                      const uint8_t id[static DHT_ID_LEN]);
bool store_replica_is_peer(store_svc *s, const uint8_t mbox[static STORE_MBOX_LEN],
                           const dht_peer *p);
bool store_replica_is_self(store_svc *s, const uint8_t mbox[static STORE_MBOX_LEN]);

int store_recon_find(store_svc *s, uint32_t id);
/* Ends reconciliation i (and forgets its requests). */
void store_recon_end(store_svc *s, int i);
/* Responder: RECON (step 1) and RECON_L (step 3) in. */
void store_recon_on_recon(store_svc *s, const dht_peer *from, const store_wire_msg *m);
void store_recon_on_list(store_svc *s, const dht_peer *from, const store_wire_msg *m, dht_ts now);
/* Initiator: the answers RECON_R (step 2) and RECON_LR (step 4) to
 * reconciliation ri.  Either may end it. */
void store_recon_on_buckets(store_svc *s, int ri, const store_wire_msg *m, dht_ts now);
void store_recon_on_want(store_svc *s, int ri, const store_wire_msg *m, dht_ts now);
/* The periodic pass over a slice of our mailboxes. */
void store_recon_tick(store_svc *s, dht_ts now);
/* Starts the next pass early when our nearest contacts changed. */
void store_recon_neighbourhood(store_svc *s, dht_ts now);

/* ---- store_outbox.c: sending ---------------------------------------------- */

/* The index of outgoing message id in s->outs, or -1. */
int store_outbox_find(store_svc *s, uint32_t id);
/* A STORE_EV_STATE event for o (none for internal receipts). */
void store_outbox_event(store_svc *s, const sendq *o, int state, int status);
/* Forgets outgoing message i: its requests, its lookup, its keys. */
void store_outbox_remove(store_svc *s, int i);
/* (Re)starts o: sealed for this epoch, then the friend's record is looked
 * up (direct first), or the request box's nodes for a friend request. */
void store_outbox_begin(store_svc *s, sendq *o, dht_ts now);
/* o's lookup ended: deposit at the r closest and the friend's hosts. */
void store_outbox_deposit(store_svc *s, sendq *o, const dht_lookup_result *res, dht_ts now);
/* Every deposit of message i was answered or timed out: stored, or retry
 * later.  May remove i. */
void store_outbox_deposit_done(store_svc *s, int i, dht_ts now);
/* A RECEIPT for message oi from the peer of request rq.  May remove oi. */
void store_outbox_on_receipt(store_svc *s, int oi, const rpc *rq, const store_wire_msg *m,
                             dht_ts now);
/* The friend's record has addresses: DIRECT to up to two of them. */
void store_outbox_direct(store_svc *s, sendq *o, const dht_record *rec, dht_ts now);
/* A message that waited for a path (P_PATH) in vain goes to the mailbox. */
void store_outbox_no_path(store_svc *s, sendq *o, dht_ts now);
/* Sends receipts of kind (delivered or read) for n message ids to friend
 * pk, as many internal messages as they need. */
void store_outbox_receipts(store_svc *s, const uint8_t pk[DHT_PK_LEN], int kind,
                           const store_msgid *ids, int n, dht_ts now);

/* ---- store_fetch.c: the recipient ----------------------------------------- */

/* A DIRECT from a friend (m borrowed). */
void store_fetch_on_direct(store_svc *s, const dht_peer *from, const store_wire_msg *m, dht_ts now);
/* The index of job id in s->jobs, or -1. */
int store_fetch_job_find(store_svc *s, uint32_t id);
/* Job j's lookup ended (res NULL when cancelled): FETCH from the replicas. */
void store_fetch_lookup_done(store_svc *s, job *j, const dht_lookup_result *res, dht_ts now);
/* Answers to job j: a LIST from replica ri, an ITEM for its item k. */
void store_fetch_on_list(store_svc *s, job *j, int ri, const store_wire_msg *m, dht_ts now);
void store_fetch_on_item(store_svc *s, job *j, int k, const store_wire_msg *m, dht_ts now);
/* Moves job j on after an answer or a timeout. */
void store_fetch_job_step(store_svc *s, job *j, dht_ts now);
/* Starts waiting jobs, retires finished ones (the array moves), ends the
 * round. */
void store_fetch_jobs_run(store_svc *s, dht_ts now);
/* Registers our upcoming mailbox IDs with the friends who host us. */
void store_fetch_register_tick(store_svc *s, dht_ts now);

/* ---- store_reqbox.c: friend requests -------------------------------------- */

/* The request box of pk for epoch: BLAKE2b-256("roost-reqbox-v1" || pk ||
 * epoch BE). */
void store_reqbox_id(uint8_t out[STORE_MBOX_LEN], const uint8_t pk[DHT_PK_LEN], uint32_t epoch);
/* Whether nonce is a proof of work for item in box mbox. */
bool store_reqbox_pow_ok(const uint8_t mbox[STORE_MBOX_LEN], const uint8_t *item, size_t len,
                         const uint8_t nonce[8]);
/* Whether mbox is pk's request box for an epoch within one of now's. */
bool store_reqbox_is_current(store_svc *s, const uint8_t mbox[STORE_MBOX_LEN],
                             const uint8_t pk[DHT_PK_LEN], dht_ts now);
/* Seals friend request o (its note in o->msg) to the recipient's identity
 * into its request box of epoch ep, with proof of work in o->sig.  Returns 0
 * or DHT_ERR_CRYPTO. */
int store_reqbox_seal(store_svc *s, sendq *o, uint32_t ep);
/* Opens a request item sent to us and reports it (STORE_EV_REQUEST); drops
 * what does not open. */
void store_reqbox_open(store_svc *s, const uint8_t *item, size_t len);

#endif /* ROOST_STORE_INT_H */

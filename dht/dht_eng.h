/*
 * dht_eng.h - the engine's private state, shared by dht_engine.c (the drive
 * API, RPC handlers, queues, timers) and dht_lookup.c (commands and
 * iterative lookups), dht_svc.c and dht_paths.c.  Nothing else includes it.
 *
 * Invariants:
 * - every outstanding request is one entry of rpcs[] (dense, swap-removed),
 *   found by txid; a reply whose txid, sender key or type does not match an
 *   entry is dropped and counted;
 * - every command is one entry of cmds[] (dense); an rpc refers to its
 *   command by id, never by pointer, so removing a command cannot leave a
 *   dangling reference;
 * - out[] and ev[] are rings with caps from the settings; at the cap the new
 *   item is dropped and counted.
 */
#ifndef ROOST_DHT_ENG_H
#define ROOST_DHT_ENG_H

#include "dht_int.h"

/* What an outstanding request is for. */
enum rpc_kind {
  RPC_LOOKUP = 1, /* FIND_NODE or GET of a lookup */
  RPC_PUT,        /* PUT of a publish */
  RPC_PING,       /* dht_ping() */
  RPC_VERIFY,     /* ping of a peer that asked to be stored: insert on PONG */
  RPC_LIVENESS,   /* ping of a questionable table contact */
};

typedef struct rpc {
  uint32_t txid;
  uint8_t kind;  /* enum rpc_kind */
  uint8_t type;  /* message type sent */
  uint8_t phase; /* the command's phase when sent (BOOT retargets, PUT stores) */
  int64_t cmd;   /* owning command, 0 if none */
  dht_peer to;   /* no ID: BLAKE2b(to.pk) is known again where needed (a
                  * reply opened with the key cache's entry; a timeout hashes
                  * it), so an rpc is 88 bytes, not 120 */
  dht_ts sent, deadline;
} rpc;

enum cand_state { CAND_NEW = 0, CAND_INFLIGHT, CAND_DONE, CAND_FAILED };

typedef struct cand {
  uint64_t d64; /* the top 64 bits of the XOR distance of id to the target */
  uint8_t id[DHT_ID_LEN];
  dht_peer peer;
  uint8_t state;
  uint8_t depth; /* 1 for seeds; responder's depth + 1 for referrals */
  uint8_t has_token;
  uint8_t acked; /* PUT phase: 1 asked, 2 acked */
  uint8_t token[DHT_TOKEN_LEN];
} cand;

enum cmd_kind { CMD_FIND = 1, CMD_GET, CMD_PUT, CMD_PING, CMD_BOOT, CMD_REFRESH };

typedef struct cmd {
  int64_t id;
  uint8_t kind;  /* enum cmd_kind */
  uint8_t phase; /* PUT: 0 lookup, 1 storing; BOOT: bucket being refreshed */
  uint8_t msg;   /* DHT_MSG_FIND_NODE or DHT_MSG_GET */
  bool done;
  bool quiet; /* internal (refresh, republish): no event */
  uint8_t target[DHT_ID_LEN];
  dht_ts start, deadline;
  cand *c; /* sorted by distance to target, closest first */
  int nc;
  int inflight, messages, replies;
  int rounds;       /* PUT: rounds of its lookup phase */
  int boot_buckets; /* BOOT: how many far buckets to refresh */
  /* GET: the newest valid record seen */
  bool has_record;
  dht_record rec;
  uint16_t rec_len;
  uint8_t rec_bytes[DHT_RECORD_MAX_LEN];
  /* PUT */
  int acks, asked;
} cmd;

/* A circuit this node relays (dht_relay.c). */
typedef struct dht_circuit {
  bool used;
  dht_peer end[2]; /* each end's key and the address it asked from */
  uint64_t bytes, max_bytes;
  dht_ts since, until;
} dht_circuit;

/* outmsg.key of a datagram sent as it is (a relayed one): no sealing */
#define OUT_RAW 0xff

typedef struct outmsg {
  dht_peer to;
  uint32_t local; /* dht_path.local */
  uint8_t ttl;    /* dht_pkt_info.ttl */
  uint8_t key;    /* sealed under: 0 our identity, else xkeys[key - 1] */
  bool relay;     /* to the key's relay, to send on (DHT_VERSION_RELAY) */
  uint16_t len;
  uint8_t body[]; /* len bytes */
} outmsg;

/* A service's outstanding request (dht_svc.c). */
typedef struct svc_rpc {
  dht_req r;
  uint8_t svc;    /* index into svcs */
  uint8_t answer; /* the answer's message type */
  uint8_t tries;  /* sends left after the current one */
  bool retried;   /* sent more than once: its answer gives no RTT sample (Karn) */
  bool soft_done; /* the soft timeout has been reported */
  bool keyless;   /* its sending key was removed: no answer can match it */
  dht_ts try_ms, deadline, soft_at;
  uint16_t len;
  dht_tx tx;
  uint8_t key;   /* the sending key (dht_req_opts.key) */
  uint8_t *body; /* retransmit copy; NULL when no try is left */
} svc_rpc;

/* A sending key besides our identity (dht_key_add). */
typedef struct xkey {
  bool used;
  dht_box box; /* its own shared-key cache: the peers it talked to */
} xkey;

/* A local socket a service holds, and a request for more. */
typedef struct sock_ent {
  uint32_t id;
  uint8_t svc;
} sock_ent;

typedef struct sock_req {
  int64_t id;
  uint8_t svc, family;
  int n;
} sock_req;

/* An event waiting to be handed to a service at a safe point. */
typedef struct svc_ev {
  dht_event ev;
  void *res; /* owned: the lookup result, or the ids of opened sockets */
  int svc;   /* index into svcs, or -1: offered to every service */
} svc_ev;

/* A command whose event goes to a service. */
typedef struct owned_cmd {
  int64_t cmd;
  int svc;
} owned_cmd;

/* Value of the cookie cache, keyed by the peer's public key. */
typedef struct cookie {
  uint8_t token[DHT_TOKEN_LEN];
  dht_addr addr; /* the address the token is bound to (as we sent to it) */
  dht_ts at;
} cookie;

struct dht {
  dht_mem mem;
  dht_callbacks cb;
  dht_settings set;
  dht_identity ident;
  uint8_t id[DHT_ID_LEN];
  int64_t clock_offset;

  dht_rt *rt;
  dht_box box;
  dht_token tok;
  dht_rate rate;
  dht_replay replay;
  dht_cache cookies;     /* peer pk -> struct cookie */
  dht_cache verified;    /* peer pk -> dht_ts of our last verification ping */
  dht_cache paths;       /* peer pk -> a path a service found (dht_paths.c) */
  bool relayed_paths;    /* a relayed path was ever set: only then does a send look one up */
  dht_circuit *circuits; /* set.max_circuits of them (dht_relay.c) */
  dht_recstore recs;
  dht_stats st;

  uint8_t nonce_prefix[16];
  uint64_t nonce_ctr;

  outmsg **out;
  int out_head, out_n, out_alloc;

  dht_event *ev;
  dht_lookup_result **ev_res; /* parallel to ev: owned result or NULL */
  int ev_head, ev_n, ev_alloc;
  dht_lookup_result *ev_hold; /* result of the last polled event */

  rpc *rpcs;
  int nrpcs, rpc_cap;

  cmd *cmds;
  int ncmds;
  int64_t next_cmd;
  bool refreshing; /* a CMD_REFRESH is running */

  /* our own record */
  dht_typed_addr addrs[DHT_RECORD_MAX_ADDRS];
  int naddrs;
  dht_introducer intro[DHT_RECORD_MAX_INTRO];
  int nintro;
  uint64_t rec_seq;
  uint16_t rec_len;
  uint8_t rec_bytes[DHT_RECORD_MAX_LEN];
  bool published;    /* a publish has run: keep republishing */
  uint8_t nat_class; /* enum dht_nat_class, in the record's flags */

  dht_ts next_rotate, next_expire, next_republish, next_refresh, next_liveness;

  dht_proof proof;
  /* destinations of the main socket, two generations of DEST_GEN_MS */
  uint8_t dests[2][32];
  dht_ts dests_at; /* when dests[0] began */
  /* The datagram being handled (inside read_pkt): its sender, whether it
   * proved its address, and the credit it earned.  Answers sent while it is
   * handled spend this first, without touching the caches; what is left of
   * the credit goes to the credit cache only when a service got the
   * datagram (services may answer later: a receipt after a disk commit). */
  struct {
    bool on, proven, to_service;
    dht_peer from;
    uint32_t credit;
  } cur;
  dht_ts last_now; /* the clock of the last driver call (dht_svc_send's credit) */
  /* Smoothed RTT over every answer measured (ms): the timeout default for a
   * service's request to a peer with no estimate of its own. */
  int32_t all_srtt, all_rttvar;
  bool all_rtt_known;

  dht_service *svcs;
  int nsvcs;
  svc_rpc *sreq;
  int nsreq, sreq_cap;
  int nsreq_keyed; /* of them, sent under a key that is not our identity */
  xkey *xkeys;     /* settings.max_keys slots, allocated at the first dht_key_add */
  sock_ent *socks; /* services' extra sockets */
  int nsocks, socks_cap;
  sock_req *sockq; /* open requests the driver has not answered */
  int nsockq, sockq_cap;
  dht_event *sockev; /* socket events waiting for room in the driver's queue */
  int nsockev, sockev_cap;
  int64_t next_sock_req;
  svc_ev *sev; /* ring */
  int sev_head, sev_n, sev_alloc;
  owned_cmd *owned;
  int nowned, owned_cap;
  bool svc_events; /* some service has on_event: unsolicited events go to them first */
};

/* dht_engine.c */
void dht_eng_log(dht *e, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define DHT_LOG(e, lvl, ...)                                                                       \
  do {                                                                                             \
    if ((lvl) <= (e)->set.log_level && (e)->cb.log)                                                \
      dht_eng_log((e), (lvl), __VA_ARGS__);                                                        \
  } while (0)
uint64_t dht_eng_unix_s(const dht *e, dht_ts now);
/* Encodes m (txid filled in) and queues it to peer; for requests, registers
 * an rpc of the given kind and command.  Returns 0 or a negative code. */
int dht_eng_request(dht *e, const dht_peer *to, dht_msg *m, int kind, int64_t cmd_id, dht_ts now);
/* Queues body to peer.  A request (ours, its answer awaited) goes as is;
 * anything else to an address that has not proven it receives must fit that
 * address's credit, or is dropped and counted (drop_amplification, return 0).
 * Returns 0, DHT_ERR_INVAL, DHT_ERR_FULL or DHT_ERR_NOMEM. */
int dht_eng_queue(dht *e, const dht_peer *to, const dht_tx *tx, int key, const uint8_t *body,
                  size_t len, bool request, dht_ts now);
/* Sends the verify PING of a stranger that asked to be stored (RPC_VERIFY:
 * inserted on the PONG).  Returns dht_eng_request's code. */
int dht_eng_verify(dht *e, const dht_peer *peer, dht_ts now);
/* Has peer shown it receives at peer->addr (a table contact that answered
 * there, or a remembered proof)? */
bool dht_eng_proven(dht *e, const dht_peer *peer, dht_ts now);
/* One RTT sample for the engine-wide estimate. */
void dht_eng_rtt_sample(dht *e, dht_ts rtt_ms);
/* Queues an event; res (may be NULL) is owned by the queue from then on.
 * An event of a command a service owns, and an unsolicited event while a
 * service listens, go to the services' queue instead (dht_svc.c). */
void dht_eng_emit(dht *e, const dht_event *ev, dht_lookup_result *res);
/* The driver's queue only. */
void dht_eng_emit_driver(dht *e, const dht_event *ev, dht_lookup_result *res);

/* dht_svc.c */
/* Routes an event to a service if one owns or listens; false: not routed
 * (res untouched). */
bool dht_svc_route_event(dht *e, const dht_event *ev, dht_lookup_result *res);
/* Hands queued events to services; called at safe points. */
void dht_svc_dispatch(dht *e, dht_ts now);
/* A datagram of a service's range: an answer to one of its requests goes to
 * on_answer, anything else to on_msg. */
void dht_svc_on_datagram(dht *e, const dht_msg_in *in, dht_ts now);
/* Retransmits and timeouts of services' requests, then their timers. */
void dht_svc_expire(dht *e, dht_ts now);
dht_ts dht_svc_expiry(const dht *e);
/* The smallest sending key handle > after under which a request to pk is
 * outstanding, or 0. */
int dht_svc_keyed_next(const dht *e, const uint8_t pk[static DHT_PK_LEN], int after);
/* Moves socket events that found the driver's queue full into it, as far as
 * there is room (they must not be lost: a socket would leak). */
void dht_svc_sock_flush(dht *e);
/* Is (pk, txid, type) the answer to a request outstanding under key? */
bool dht_svc_is_keyed_answer(const dht *e, int key, const uint8_t pk[static DHT_PK_LEN],
                             uint32_t txid, uint8_t type);
/* Frees every request, queued event and ownership (dht_del). */
void dht_svc_free_all(dht *e);
/* id = BLAKE2b(pk), from the key cache when the peer is known. */
void dht_eng_peer_id(dht *e, const uint8_t pk[static DHT_PK_LEN], uint8_t id[static DHT_ID_LEN]);
/* Builds our record bytes with a fresh sequence number. */
int dht_eng_make_record(dht *e, dht_ts now);

/* dht_lookup.c */
cmd *dht_lookup_find(dht *e, int64_t id);
/* Starts a lookup-shaped command; returns its id or a negative code. */
int64_t dht_lookup_start(dht *e, int kind, const uint8_t target[static DHT_ID_LEN],
                         const dht_peer *seeds, size_t nseeds, bool quiet, dht_ts now);
/* A reply (NODES or VALUE) for rpc r of command c arrived. */
void dht_lookup_on_reply(dht *e, cmd *c, const rpc *r, const dht_msg *m, dht_ts now);
/* ACK for a PUT of command c. */
void dht_lookup_on_ack(dht *e, cmd *c, const rpc *r, const dht_msg *m, dht_ts now);
/* Request r of command c timed out. */
void dht_lookup_on_timeout(dht *e, cmd *c, const rpc *r, dht_ts now);
/* Sends what can be sent, finishes what is finished; removes finished
 * commands.  Call after any change. */
void dht_lookup_step(dht *e, dht_ts now);
dht_ts dht_lookup_expiry(const dht *e);
void dht_lookup_free_all(dht *e);

/* dht_paths.c */
size_t dht_paths_vlen(void);
/* An authenticated, fresh datagram from pk came in on p. */
void dht_paths_heard(dht *e, const uint8_t pk[static DHT_PK_LEN], const dht_path *p, dht_ts now);
/* A peer without an address (family DHT_AF_NONE) gets its key's path: 0,
 * or DHT_ERR_NOTFOUND (counted).  Others are left as they are. */
int dht_paths_resolve(dht *e, dht_peer *to, dht_tx *tx);
/* Whether a datagram to `to` goes through its key's relay: a relayed path
 * whose relay is at to->addr (an answer to what came through it). */
bool dht_paths_via_relay(dht *e, const dht_peer *to);

/* dht_relay.c */
/* A datagram of version DHT_VERSION_RELAY came in on path: on to the other
 * end of its circuit, or dropped (drop_relay). */
void dht_relay_forward(dht *e, const dht_path *path, const uint8_t *data, size_t len, dht_ts now);
/* dht_engine.c: queues a whole datagram to send as it is (version 1) to to. */
int dht_eng_queue_raw(dht *e, const dht_addr *to, const uint8_t *data, size_t len);

#endif /* ROOST_DHT_ENG_H */

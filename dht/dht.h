/*
 * dht.h - the roost DHT engine: a sans-I/O Kademlia core with authenticated,
 * encrypted datagrams.
 *
 * This is the one facade of dht/. The engine never touches a socket, a clock,
 * a file, a thread or a mutable global: the caller (node/ on libuv, sim/ on a
 * virtual clock) feeds it datagrams with a timestamp and drains what it wants
 * to send, ngtcp2-style:
 *
 *     dht_read_pkt(e, &path, buf, len, now);   for every datagram received; then
 *     do                                       (and after issuing a command):
 *       while ((n = dht_write_pkt(e, &path, &pi, out, sizeof out, now)) > 0)
 *         send(&path, &pi, out, n);
 *     while (dht_poll_event(e, &ev) == 0 && handle(&ev)); (it may issue commands)
 *     rearm_timer(dht_get_expiry(e));          and on expiry:
 *     dht_handle_expiry(e, now);               then drain again
 *
 * A path names the driver's local socket and the remote address, so a driver
 * with many sockets routes every datagram exactly (ngtcp2_path's idea).
 *
 * Time is monotonic milliseconds (dht_ts), as uv_now gives.  Randomness,
 * logging and memory come in through dht_callbacks and dht_mem.  The caller
 * must have called sodium_init() before dht_new().
 *
 * Errors are negative DHT_ERR_* codes.  A dropped datagram (malformed, forged,
 * rate-limited, replayed, unknown txid) is not an error: it is counted in
 * dht_stats and ignored.  Only codes <= DHT_ERR_FATAL leave the engine unusable.
 *
 * Ownership: every pointer argument is borrowed for the duration of the call
 * unless the comment says otherwise.  Output goes to caller buffers.
 */
#ifndef ROOST_DHT_H
#define ROOST_DHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- basic types ------------------------------------------------------ */

typedef int64_t dht_ts;      /* monotonic milliseconds */
typedef ptrdiff_t dht_ssize; /* size or negative error */

#define DHT_ID_LEN 32
#define DHT_PK_LEN 32 /* Ed25519 public key */
#define DHT_SK_LEN 64 /* Ed25519 secret key (libsodium layout: seed || pk) */
#define DHT_SIG_LEN 64
#define DHT_TOKEN_LEN 16

/* Protocol limits (not settings: they are part of the wire format). */
#define DHT_VERSION 1
/* The version byte of a datagram to relay: the rest is an envelope for the
 * other end of one of the receiver's circuits (dht_relay_open). */
#define DHT_VERSION_RELAY 2
#define DHT_MAX_PKT 1232 /* IPv6 minimum MTU minus IPv6 + UDP headers */
#define DHT_HDR_LEN 57   /* version + sender public key + nonce */
#define DHT_MAC_LEN 16
#define DHT_MAX_BODY (DHT_MAX_PKT - DHT_HDR_LEN - DHT_MAC_LEN) /* 1159 */
#define DHT_K_MAX 32 /* largest bucket size a setting may ask for */
#define DHT_RECORD_MAX_ADDRS 8
#define DHT_RECORD_MAX_INTRO 3 /* introducers named in one record */
/* A version-2 record with 8 IPv6 addresses and 3 introducers at IPv6
 * addresses: 51 fixed + 8 x 20 + 1 + 3 x 51 + 64 signature.  A version-1
 * record (no introducers) is at most 275, the old cap. */
#define DHT_RECORD_MAX_LEN 429
#define DHT_RECORD_MAX_TTL_S 7200 /* a record never claims to live longer */

#define DHT_TS_NEVER INT64_MAX

enum dht_err {
  DHT_OK = 0,
  DHT_ERR_INVAL = -1, /* bad argument from the caller */
  DHT_ERR_NOBUF = -2, /* caller's buffer too small */
  DHT_ERR_FULL = -3,  /* a capped table or queue is at its cap */
  DHT_ERR_NOTFOUND = -4,
  DHT_ERR_PROTO = -5,  /* malformed bytes (used by codecs, never fatal) */
  DHT_ERR_CRYPTO = -6, /* authentication or key failure */
  DHT_ERR_STALE = -7,  /* older sequence number or expired */
  DHT_ERR_CANCELLED = -8,
  DHT_ERR_TIMEOUT = -9,
  DHT_ERR_FATAL = -100, /* codes at or below this are fatal */
  DHT_ERR_NOMEM = -101,
  DHT_ERR_INTERNAL = -102,
};

/* A short, static, human-readable name for an error code. */
const char *dht_strerror(int err);

/* ---- addresses ---------------------------------------------------------- */

enum dht_family { DHT_AF_NONE = 0, DHT_AF_INET = 4, DHT_AF_INET6 = 6 };

/* A UDP endpoint, in network byte order bytes.  IPv4 uses ip[0..3]. */
typedef struct dht_addr {
  uint8_t family; /* enum dht_family */
  uint8_t ip[16];
  uint16_t port; /* host byte order */
} dht_addr;

/* Address types in peer records (DESIGN.md section 2). */
enum dht_addr_type {
  DHT_ADDR_LAN = 1,
  DHT_ADDR_OBSERVED = 2, /* reflexive: as peers see us */
  DHT_ADDR_MAPPED = 3,   /* UPnP / NAT-PMP */
  DHT_ADDR_RELAY = 4,    /* an introducer or relay that reaches us */
};

typedef struct dht_typed_addr {
  uint8_t type; /* enum dht_addr_type */
  dht_addr addr;
} dht_typed_addr;

/* A reachable node that an unreachable one keeps a path open to (a
 * keepalive at least every 25 s), named in its record so that others can
 * reach it through that node. */
typedef struct dht_introducer {
  uint8_t pk[DHT_PK_LEN];
  dht_addr addr;
} dht_introducer;

bool dht_addr_eq(const dht_addr *a, const dht_addr *b);
bool dht_addr_is_loopback(const dht_addr *a);
bool dht_addr_is_private(const dht_addr *a); /* LAN or CGN scope, below */

/* Where an address can be reached from.  LAN: RFC 1918, IPv4 and IPv6
 * link-local, ULA (fc00::/7): a home or office network.  CGN: RFC 6598's
 * 100.64.0.0/10, the shared space of carrier-grade NAT: an address there
 * means a NAT of the carrier's beyond ours, so a port mapping on our own
 * router cannot make us reachable.  Everything else, including the ranges
 * set aside for documentation (TEST-NETs) and for benchmark networks
 * (198.18.0.0/15, the NAT lab's "internet"), counts as public. */
enum dht_addr_scope {
  DHT_SCOPE_PUBLIC = 0,
  DHT_SCOPE_LOOPBACK,
  DHT_SCOPE_LAN,
  DHT_SCOPE_CGN,
};
int dht_addr_scope(const dht_addr *a);
/* An address on the wire: IPv4 = 4 B address + 2 B port (6 B), IPv6 = 16 +
 * 2 (18 B), big-endian port; the family is implied by the length. */
#define DHT_WADDR4_LEN 6
#define DHT_WADDR6_LEN 18
/* Writes a's wire form into out (>= 18 bytes); returns 6 or 18, or
 * DHT_ERR_INVAL for a family other than v4/v6. */
int dht_addr_to_wire(const dht_addr *a, uint8_t out[static DHT_WADDR6_LEN]);
/* Parses 6 or 18 bytes; DHT_ERR_PROTO for any other length or port 0. */
int dht_addr_from_wire(dht_addr *a, const uint8_t *p, size_t n);
#define DHT_ADDR_STRLEN 48
/* Writes "1.2.3.4:5" or "[2001:db8::1]:5" into buf (>= DHT_ADDR_STRLEN
 * bytes); returns buf. */
char *dht_addr_fmt(const dht_addr *a, char *buf, size_t len);

/* Where a datagram came in, or must leave: the driver's local socket and the
 * remote address.  Socket 0 is the driver's main socket (for the remote's
 * family); other ids are sockets that a service asked the driver for
 * (dht_sock_open), numbered by the driver. */
typedef struct dht_path {
  uint32_t local;
  dht_addr remote;
} dht_path;

/* Attributes of a datagram out, which the driver honours. */
typedef struct dht_pkt_info {
  uint8_t ttl; /* IPv4 TTL / IPv6 hop limit for this datagram alone; 0: the socket's */
} dht_pkt_info;

/* A peer we can talk to: its identity key and an address. */
typedef struct dht_peer {
  uint8_t pk[DHT_PK_LEN];
  dht_addr addr;
} dht_peer;

/* ---- identity ----------------------------------------------------------- */

typedef struct dht_identity {
  uint8_t pk[DHT_PK_LEN];
  uint8_t sk[DHT_SK_LEN];
} dht_identity;

/* Creates a fresh Ed25519 identity from 32 bytes of seed (the caller draws
 * them from its random source).  Returns 0. */
int dht_identity_from_seed(dht_identity *id, const uint8_t seed[static 32]);
/* Node ID = BLAKE2b-256(Ed25519 public key). */
void dht_id_from_pk(uint8_t id[static DHT_ID_LEN], const uint8_t pk[static DHT_PK_LEN]);
/* Compares the XOR distances of a and b to target: <0 if a is closer, 0 if
 * equal (a == b), >0 if b is closer. */
int dht_id_cmp_dist(const uint8_t a[static DHT_ID_LEN], const uint8_t b[static DHT_ID_LEN],
                    const uint8_t target[static DHT_ID_LEN]);

/* ---- callbacks, memory, settings -------------------------------------- */

enum dht_log_level { DHT_LOG_ERROR = 0, DHT_LOG_WARN, DHT_LOG_INFO, DHT_LOG_DEBUG };

/* Leaves: they never call back into the engine. */
typedef struct dht_callbacks {
  void *ctx;
  /* Fill buf with len random bytes.  Required. */
  void (*rand)(void *ctx, uint8_t *buf, size_t len);
  /* One formatted line, no trailing newline.  Optional.  Only called for
   * levels <= settings.log_level, so a quiet engine formats nothing. */
  void (*log)(void *ctx, int level, const char *msg);
} dht_callbacks;

/* Allocator (ngtcp2_mem style).  NULL means libc malloc/realloc/free. */
typedef struct dht_mem {
  void *ctx;
  void *(*malloc)(void *ctx, size_t n);
  void *(*realloc)(void *ctx, void *p, size_t n);
  void (*free)(void *ctx, void *p);
} dht_mem;

/* The allocator's wrappers, for services and drivers that allocate through
 * the same dht_mem as the engine (so an allocation-failure sweep reaches
 * them too).  calloc checks nmemb x size for overflow. */
void *dht_mem_malloc(const dht_mem *m, size_t n);
void *dht_mem_calloc(const dht_mem *m, size_t nmemb, size_t size);
void *dht_mem_realloc(const dht_mem *m, void *p, size_t n);
void dht_mem_free(const dht_mem *m, void *p);
/* The libc allocator, used when the caller passes NULL. */
extern const dht_mem dht_mem_libc;

/* Every cap the engine has.  dht_settings_default() fills the defaults given
 * in the comments; change what you need before dht_new(). */
typedef struct dht_settings {
  int k;                 /* bucket size and lookup result size: 20 (1..32) */
  int alpha;             /* lookup requests in flight: 3 */
  int replacement_cache; /* spare contacts per bucket: 8 */
  bool server_mode;      /* we are reachable: others may store us: true */
  int log_level;         /* enum dht_log_level: DHT_LOG_WARN */

  /* IP diversity (0 = no limit).  Loopback addresses are always exempt;
   * private (LAN) addresses are exempt when diversity_exempt_private. */
  int max_per_prefix_bucket;     /* same /24 (v4) or /48 (v6) per bucket: 2 */
  int max_per_prefix_table;      /* same prefix in the whole table: 10 */
  bool diversity_exempt_private; /* true */

  /* Liveness. */
  dht_ts questionable_after_ms; /* no reply for this long: ping before keeping: 15 min */
  int max_failures;             /* consecutive timeouts before eviction: 3 */
  dht_ts refresh_interval_ms;   /* bucket refresh: 15 min */

  /* Timeouts. */
  dht_ts rpc_timeout_min_ms; /* floor of the adaptive timeout: 200 */
  dht_ts rpc_timeout_max_ms; /* ceiling, and the timeout for unknown RTT: 2000 */
  dht_ts lookup_timeout_ms;  /* a whole lookup gives up after: 30000 */

  /* Caps. */
  int max_lookups;       /* concurrent commands: 64 */
  int lookup_candidates; /* candidates kept per lookup: 3k = 60 */
  int max_out_queue;     /* datagrams waiting for write_pkt: 512 */
  int max_events;        /* events waiting for poll_event: 256 */
  int key_cache;         /* shared keys cached (4-way sets; ~104 B each): 4096 */
  int cookie_cache;      /* address-validation tokens remembered: 512 */
  int replay_window;     /* recent nonces remembered per generation: 4096 */
  int max_records;       /* peer records stored for others: 2048 */
  int max_services;      /* plugged services: 8 */
  int max_requests;      /* services' requests outstanding, all services: 1024 */
  int max_sockets;       /* extra local sockets open for services: 512 */
  int max_keys;          /* sending keys besides the identity (dht_key_add): 8 */
  int max_paths;         /* peer keys with a path a service found (dht_path_set): 256 */
  int max_circuits;      /* circuits this node relays at once (dht_relay_open): 64 */

  /* Per-source-prefix token buckets, before any decryption (0 = off). */
  int rate_pps;       /* refill, packets per second per prefix: 400 */
  int rate_burst;     /* bucket depth: 800 */
  int rate_prefixes;  /* prefixes tracked: 1024 */
  int rate_v4_prefix; /* bits: 24 */
  int rate_v6_prefix; /* bits: 48 */

  /* Anti-amplification (docs/protocol.md, "Amplification"): until an
   * address has proven it can receive (echoed a cookie, answered one of our
   * requests there, or is a table contact that answered there), the bytes
   * we send it that are not our own requests stay within factor x the bytes
   * it sent us, whatever service sends them and in however many datagrams. */
  int amplification_factor; /* 3 */
  int proof_cache;          /* proven addresses and unproven credit remembered: 256 each */
  /* Datagrams started on our own toward an unproven address (the verify
   * PING; services' requests marked unsolicited) pass a token bucket per
   * destination prefix (rate_v4_prefix / rate_v6_prefix).  Loopback is exempt. */
  int unsolicited_pps;   /* refill per destination prefix: 2 */
  int unsolicited_burst; /* bucket depth: 10 */

  /* Records. */
  dht_ts record_ttl_ms; /* our record's lifetime: 2 h (<= DHT_RECORD_MAX_TTL_S) */
  dht_ts republish_ms;  /* republish our record every: 30 min */

  /* SIMULATION ONLY: datagrams keep the envelope layout but are neither
   * encrypted nor authenticated (no key agreement, a zero MAC), and record
   * signatures are made but not checked.  For roost-sim scale runs, where
   * X25519 per pair of hosts and Ed25519 checks dominate; every report says
   * when it was on.  Never set by roostd.  Default false. */
  bool insecure_plaintext;
} dht_settings;

void dht_settings_default(dht_settings *s);

/* ---- the engine ------------------------------------------------------- */

typedef struct dht dht;

/* Creates an engine for identity (copied).  callbacks is copied; mem may be
 * NULL.  Returns 0 and sets *out, or DHT_ERR_INVAL / DHT_ERR_NOMEM. */
int dht_new(dht **out, const dht_identity *identity, const dht_settings *settings,
            const dht_callbacks *callbacks, const dht_mem *mem, dht_ts now);
/* Frees everything; NULL is fine.  Secrets are wiped. */
void dht_del(dht *e);

const uint8_t *dht_self_id(const dht *e);
const uint8_t *dht_self_pk(const dht *e);

/* The engine keeps wall-clock time only for record expiry: unix milliseconds =
 * now + offset.  Drivers set it at start and whenever they notice a step. */
void dht_set_clock_offset(dht *e, int64_t unix_ms_minus_now);
/* Wall-clock unix milliseconds at now (now + the offset; 0 if negative).
 * Services use it for anything that must agree between hosts. */
int64_t dht_unix_ms(const dht *e, dht_ts now);

/* Feeds one datagram received on path (path->remote: where it came from).
 * Returns 0 (also when the datagram was dropped: see dht_stats) or a fatal
 * error. */
int dht_read_pkt(dht *e, const dht_path *path, const uint8_t *data, size_t len, dht_ts now);

/* Writes the next datagram to send into buf, the path it must take into
 * *path and its attributes into *pi (pi may be NULL for a driver that honours
 * none).  Returns its length, 0 when nothing is queued, DHT_ERR_NOBUF when
 * buflen is smaller than DHT_MAX_PKT, or a fatal error. */
dht_ssize dht_write_pkt(dht *e, dht_path *path, dht_pkt_info *pi, uint8_t *buf, size_t buflen,
                        dht_ts now);

/* When dht_handle_expiry() next wants to run (DHT_TS_NEVER if idle). */
dht_ts dht_get_expiry(const dht *e);
/* Runs timers due at now: retransmits, timeouts, refreshes, republish. */
int dht_handle_expiry(dht *e, dht_ts now);

/* ---- commands ----------------------------------------------------------- */

/* Commands return a command id (> 0) at once, or a negative error; the
 * outcome arrives later as one event carrying that id. */

/* Joins the network: looks up our own ID starting from the given peers
 * (may be none when a table was loaded), then refreshes every bucket farther
 * than ours.  Event: DHT_EV_BOOTSTRAP, status DHT_ERR_TIMEOUT if requests
 * were sent and none was answered. */
int64_t dht_bootstrap(dht *e, const dht_peer *peers, size_t n, dht_ts now);
/* Iterative FIND_NODE.  Event: DHT_EV_LOOKUP with the k closest contacts. */
int64_t dht_find_node(dht *e, const uint8_t target[static DHT_ID_LEN], dht_ts now);
/* Iterative GET of the peer record of node id.  Event: DHT_EV_LOOKUP with
 * the newest valid record found (if any) and the k closest contacts. */
int64_t dht_get_record(dht *e, const uint8_t id[static DHT_ID_LEN], dht_ts now);
/* Publishes our own peer record (built from dht_set_addrs) at the k closest
 * nodes to our ID.  Event: DHT_EV_PUT with the number of acks. */
int64_t dht_put_record(dht *e, dht_ts now);
/* One PING.  Event: DHT_EV_PING with the RTT and the address the peer saw. */
int64_t dht_ping(dht *e, const dht_peer *peer, dht_ts now);
/* Cancels a command; its event arrives with status DHT_ERR_CANCELLED.
 * Returns 0 or DHT_ERR_NOTFOUND. */
int dht_cancel(dht *e, int64_t cmd);

/* Sets the typed addresses our record advertises (copied; at most
 * DHT_RECORD_MAX_ADDRS).  The next publish uses them; the sequence number
 * grows.  Returns 0 or DHT_ERR_INVAL. */
int dht_set_addrs(dht *e, const dht_typed_addr *addrs, size_t n);
/* Sets the introducers our record names (copied; at most
 * DHT_RECORD_MAX_INTRO; 0 clears them).  A record with introducers is
 * version 2, which nodes older than it refuse (docs/protocol.md, "Peer
 * records"); one without is version 1, byte for byte as before.  Like
 * dht_set_mode, a change re-publishes a published record.  Returns 0 or
 * DHT_ERR_INVAL. */
int dht_set_introducers(dht *e, const dht_introducer *intro, size_t n, dht_ts now);

/* ---- events ------------------------------------------------------------- */

enum dht_event_type {
  DHT_EV_BOOTSTRAP = 1, /* cmd, status, u.bootstrap */
  DHT_EV_LOOKUP,        /* cmd, status, u.lookup */
  DHT_EV_PUT,           /* cmd, status, u.put */
  DHT_EV_PING,          /* cmd, status, u.ping */
  DHT_EV_ADDR_SEEN,     /* a PONG told us how a peer sees us: u.seen */
  DHT_EV_SOCK_OPEN,     /* for the driver: open sockets, cmd = the request, u.sock */
  DHT_EV_SOCK_CLOSE,    /* for the driver: close socket u.sock.id */
  DHT_EV_SOCK_OPENED,   /* for the service that asked: cmd, status, u.sock */
  DHT_EV_CANDIDATE,     /* for services only: a stranger asked to be stored: u.candidate */
};

/* A contact as reported in results. */
typedef struct dht_contact {
  uint8_t id[DHT_ID_LEN];
  uint8_t pk[DHT_PK_LEN];
  dht_addr addr;
} dht_contact;

/* A peer record, verified. */
typedef struct dht_record {
  uint8_t pk[DHT_PK_LEN];
  uint64_t seq;
  uint64_t expires_unix_s;
  uint8_t flags; /* DHT_REC_REACHABLE, ... */
  uint8_t naddrs;
  dht_typed_addr addrs[DHT_RECORD_MAX_ADDRS];
  uint8_t nintro; /* > 0 only in a version-2 record */
  dht_introducer intro[DHT_RECORD_MAX_INTRO];
} dht_record;

#define DHT_REC_REACHABLE 0x01 /* the owner runs in server mode */
/* Bits 1-3: the owner's NAT class (enum dht_nat_class).  Version-1 parsers
 * never checked the flags, so older nodes store and serve such records and
 * ignore the bits. */
#define DHT_REC_NAT_SHIFT 1
#define DHT_REC_NAT_MASK 0x0e

enum dht_nat_class {
  DHT_NAT_UNKNOWN = 0,
  DHT_NAT_NONE = 1,      /* the public address is the node's own */
  DHT_NAT_CONE = 2,      /* endpoint-independent mapping: one public port for every peer */
  DHT_NAT_SYMMETRIC = 3, /* endpoint-dependent mapping: a port per peer */
};

typedef struct dht_lookup_result {
  uint8_t target[DHT_ID_LEN];
  int ncontacts;
  dht_contact contacts[DHT_K_MAX]; /* closest first */
  bool has_record;
  dht_record record;
  int rounds;   /* longest chain of referrals that led to a result contact */
  int messages; /* requests sent */
  int replies;  /* replies received */
  dht_ts elapsed_ms;
} dht_lookup_result;

typedef struct dht_event {
  int type;    /* enum dht_event_type */
  int64_t cmd; /* command id, 0 for unsolicited events */
  int status;  /* 0 or a DHT_ERR_* code */
  union {
    struct {
      int table_size;
      int pinged;
      int answered;
    } bootstrap;
    /* Owned by the engine; valid until the next dht_poll_event/dht_del.
     * NULL when status is DHT_ERR_CANCELLED or DHT_ERR_NOMEM; a lookup that
     * timed out reports what it had found. */
    const dht_lookup_result *lookup;
    struct {
      int acks;
      int asked;
      int rounds;
      int messages;
      dht_ts elapsed_ms;
    } put;
    struct {
      dht_ts rtt_ms;
      dht_addr seen_as;
      uint8_t id[DHT_ID_LEN];
    } ping;
    struct {
      dht_addr seen_as;
      dht_addr reporter;
      uint8_t reporter_id[DHT_ID_LEN];
      uint32_t local; /* the socket the PONG came in on */
      bool stranger;  /* the PONG answered the verify PING of a node that asked
                         to be stored: it, not we, chose to be asked */
    } seen;
    /* A node we do not know sent us a request with the server flag, and
     * would go into a bucket with room (the conditions and the rate limit
     * of the engine's verify PING have passed).  Offered to services only,
     * at the usual safe points: a service that takes it checks the node its
     * own way and inserts it with dht_svc_add_contact; when none takes it,
     * the engine sends its verify PING and inserts the node on the PONG. */
    struct {
      dht_peer peer;          /* its key, and the address its request came from */
      uint8_t id[DHT_ID_LEN]; /* BLAKE2b(peer.pk) */
      uint32_t local;         /* the local socket the request came in on */
    } candidate;
    struct {
      int n;               /* OPEN: how many wanted; OPENED: how many opened */
      uint8_t family;      /* enum dht_family */
      uint32_t id;         /* CLOSE: the socket */
      const uint32_t *ids; /* OPENED: the n sockets, valid during the hook */
    } sock;
  } u;
} dht_event;

/* Pops the next event into *ev.  Returns 0, or DHT_ERR_NOTFOUND when there is
 * none.  Pointers inside *ev stay valid until the next call. */
int dht_poll_event(dht *e, dht_event *ev);

/* ---- statistics ------------------------------------------------------- */

typedef struct dht_stats {
  uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
  /* drops, each counted once at the first check that failed */
  uint64_t drop_ratelimit, drop_size, drop_version, drop_self, drop_badkey, drop_decrypt,
      drop_replay, drop_malformed, drop_unknown_type, drop_unknown_txid, drop_bad_token,
      drop_bad_record, drop_out_full, drop_event_full;
  uint64_t requests_in, replies_in, requests_out, timeouts;
  uint64_t amplification_limited; /* replies shrunk for an unproven address */
  uint64_t drop_amplification;    /* datagrams not sent: past an unproven address's credit */
  uint64_t unsolicited_out; /* verify PINGs and unsolicited requests sent to unproven addresses */
  uint64_t unsolicited_limited; /* ... not sent: the destination prefix's bucket was empty */
  uint64_t candidates_taken;    /* strangers a service checked (DHT_EV_CANDIDATE), no verify PING */
  uint64_t svc_requests_out, svc_retries, svc_answers, svc_timeouts;
  uint64_t path_roams;   /* paths moved to where their key's datagrams now come from */
  uint64_t path_missing; /* sends to a key with no path (dht_paths), refused */
  /* as a relay: circuits opened, refused (all in use), closed at their
   * limits; datagrams and bytes forwarded; datagrams of no circuit */
  uint64_t relay_opened, relay_refused, relay_closed, relay_datagrams, relay_bytes, drop_relay;
  uint64_t keycache_hits, keycache_misses;
  uint64_t lookups_started, lookups_done;
  uint64_t records_accepted, records_rejected;
  int rt_size, rt_buckets, records_stored, out_queue, events_queued;
} dht_stats;

void dht_get_stats(const dht *e, dht_stats *st);

/* ---- routing table persistence --------------------------------------- */

/* Serialises the routing table's contacts (keys and addresses) into buf.
 * Returns the length, or DHT_ERR_NOBUF with the needed size in *need. */
dht_ssize dht_save_table(const dht *e, uint8_t *buf, size_t buflen, size_t *need);
/* Adds the contacts of a saved table as questionable: they are pinged at
 * the next bootstrap.  Malformed input is refused whole with DHT_ERR_PROTO.
 * Returns the number of contacts taken. */
int dht_load_table(dht *e, const uint8_t *buf, size_t len, dht_ts now);

/* One routing-table contact with what the engine knows of it. */
typedef struct dht_peer_info {
  dht_contact c;
  dht_ts rtt_ms;        /* smoothed RTT, -1 when unknown */
  dht_ts last_reply_ms; /* time of the last answer, 0 if never */
  dht_ts first_seen_ms;
  int fails; /* consecutive timeouts */
} dht_peer_info;

/* Copies up to n routing-table contacts in bucket order (the bucket of
 * farthest IDs first).  Returns the number copied. */
int dht_table(const dht *e, dht_peer_info *out, int n);

/* Copies up to n contacts from the routing table closest to target (closest
 * first).  Returns the number copied. */
int dht_closest(const dht *e, const uint8_t target[static DHT_ID_LEN], dht_contact *out, int n);

/* ---- services: nat/ and store/ plug in here -------------------------- */

/* Message types 0x01-0x1f belong to the engine; a service owns a range in
 * 0x20-0x7f.  The engine authenticates and decrypts; the service gets the
 * plain msgpack body (an array whose first two elements are type and txid)
 * and decodes it with the dht_wire_* helpers below.
 *
 * Everything reaches a service through its hooks (docs/architecture.md,
 * "The service interface"):
 *  - on_msg: a datagram of its range that is not the answer to one of its
 *    requests;
 *  - on_answer / on_timeout: the answer to a request it sent with
 *    dht_svc_request(), or the request's timeout;
 *  - on_event: the results of the commands it issued with dht_svc_own(), and
 *    unsolicited events (DHT_EV_ADDR_SEEN, DHT_EV_CANDIDATE), which are
 *    offered to services first and reach the driver only when no service
 *    took them (a candidate never does: the engine verifies it itself);
 *  - get_expiry / handle_expiry: its timers.
 * From a hook a service may send, issue commands and cancel (they only
 * queue); it must not call dht_read_pkt, dht_handle_expiry or
 * dht_poll_event.  Events and answers are handed over at safe points (at the
 * end of dht_read_pkt, dht_handle_expiry and in dht_poll_event), never from
 * inside the engine's own bookkeeping. */

/* One datagram of a service's range, as it arrived. */
typedef struct dht_msg_in {
  dht_peer from;       /* the sender's key and the address it came from */
  uint32_t local;      /* the local socket it came in on (dht_path.local) */
  int key;             /* which of our keys it was sealed to: 0 our identity, else dht_key_add's */
  uint8_t type;        /* body[1] */
  uint32_t txid;       /* body[2] */
  const uint8_t *body; /* the whole msgpack body; valid during the hook */
  size_t len;
  size_t wire_len; /* the datagram's size on the wire */
} dht_msg_in;

/* A service's request, as the engine hands it back. */
typedef struct dht_req {
  uint32_t txid;
  uint8_t type; /* the request's message type */
  dht_peer to;  /* where it went */
  uint64_t tag; /* the owner's, from dht_req_opts */
  int32_t aux;  /* likewise */
  dht_ts sent;  /* first sent at */
} dht_req;

typedef struct dht_service {
  uint8_t type_lo, type_hi; /* inclusive */
  void *ctx;
  void (*on_msg)(void *ctx, dht *e, const dht_msg_in *in, dht_ts now); /* required */
  /* Optional: without it, answers go to on_msg. */
  void (*on_answer)(void *ctx, dht *e, const dht_req *req, const dht_msg_in *in, dht_ts now);
  /* Optional.  soft: the request's soft timeout passed; it stays open and a
   * late answer still arrives.  Otherwise it is gone. */
  void (*on_timeout)(void *ctx, dht *e, const dht_req *req, bool soft, dht_ts now);
  /* Optional.  Returns true when it took an unsolicited event (the driver
   * then does not see it); the return value is ignored for own commands. */
  bool (*on_event)(void *ctx, dht *e, const dht_event *ev, dht_ts now);
  dht_ts (*get_expiry)(void *ctx);                      /* optional */
  void (*handle_expiry)(void *ctx, dht *e, dht_ts now); /* optional */
} dht_service;

/* Registers a service (copied).  Returns its id (> 0), DHT_ERR_INVAL for a
 * bad or overlapping range, DHT_ERR_FULL past settings.max_services. */
int dht_service_add(dht *e, const dht_service *svc);

/* Unplugs service svc: its requests are forgotten, its commands' events go to
 * the driver, its sockets are closed, nothing of its range reaches it again
 * (counted as unknown types) until another service takes the range.  The
 * service calls it before it frees its context; a removed id is refused by
 * every call that takes one.  Returns 0 (also for an id removed already) or
 * DHT_ERR_INVAL. */
int dht_service_remove(dht *e, int svc);
/* How many of service svc's requests are outstanding. */
int dht_svc_pending(const dht *e, int svc);

/* Hands the event of command cmd (issued by the service: dht_find_node,
 * dht_get_record, dht_ping ...) to service svc's on_event instead of the
 * driver.  Returns 0, DHT_ERR_INVAL or DHT_ERR_NOTFOUND (no such command
 * running, or it finished already: then the driver got the event). */
int dht_svc_own(dht *e, int svc, int64_t cmd);

/* How a service's datagram leaves. */
typedef struct dht_tx {
  uint32_t local; /* the local socket: 0 the main one, or one of the service's */
  uint8_t ttl;    /* 0, or an IP TTL for this datagram (priming a NAT) */
} dht_tx;

/* Queues a datagram that is not a request: an answer, or a notice.  To an
 * address that has not proven it can receive, it must fit that address's
 * amplification credit or it is dropped and counted (drop_amplification).
 * tx may be NULL (main socket, default TTL).  body must be <= DHT_MAX_BODY,
 * of a service's range.  Returns 0 (also when dropped for amplification),
 * DHT_ERR_INVAL or DHT_ERR_FULL. */
int dht_svc_send(dht *e, const dht_peer *to, const dht_tx *tx, const uint8_t *body, size_t len);

typedef struct dht_req_opts {
  uint8_t answer;    /* the message type that answers it (required) */
  int tries;         /* sends in all, 1..8 (retransmitted on timeout): 1 */
  dht_ts soft_ms;    /* 0, or call on_timeout(soft) after this long */
  dht_ts timeout_ms; /* 0 = the engine's estimate for the peer, per try */
  bool unsolicited;  /* started on our own toward a peer that did not ask */
  dht_tx tx;         /* socket and TTL, for every try */
  int key;           /* the key it travels under: 0 our identity, else dht_key_add's */
  uint64_t tag;      /* the owner's, handed back */
  int32_t aux;
} dht_req_opts;

/* A transaction id that no outstanding service request uses; encode it in
 * the request's body, then call dht_svc_request() with that body. */
uint32_t dht_svc_txid(dht *e);
/* Sends a request of service svc to peer and keeps it until its answer (type
 * o->answer, same txid, from the same key) or its timeout, both handed to the
 * service.  The timeout of each try is the engine's RTT estimate for the
 * peer (srtt + 4 rttvar of a table contact, clamped to rpc_timeout_min_ms ..
 * rpc_timeout_max_ms), else the adaptive default: the same over all answers
 * the engine has measured, else rpc_timeout_max_ms.  An unsolicited request
 * to an unproven address passes the per-destination-prefix bucket
 * (unsolicited_pps).  Returns 0, DHT_ERR_INVAL, DHT_ERR_FULL (at
 * max_requests, the out queue's cap, or rate-limited: counted). */
int dht_svc_request(dht *e, int svc, const dht_peer *to, const uint8_t *body, size_t len,
                    const dht_req_opts *o, dht_ts now);
/* Forgets service svc's outstanding requests whose tag is tag: no answer or
 * timeout reaches the service for them.  Returns how many. */
int dht_svc_cancel(dht *e, int svc, uint64_t tag);

/* Sending keys.  A service's request may travel under a key that is not the
 * node's identity (so that, say, mailbox traffic is not linked to the node's
 * long-term key): dht_key_add registers one (copied; at most
 * settings.max_keys) and returns its handle (> 0) for dht_req_opts.key.  The
 * answer, sealed by the peer to that key, is opened with it: the engine
 * tries it only for a peer with a request outstanding under that key, and
 * takes only the answer to such a request (a peer cannot start a
 * conversation with it).  dht_key_remove forgets a key (its outstanding
 * requests time out).  Returns: dht_key_add the handle, DHT_ERR_INVAL or
 * DHT_ERR_FULL; dht_key_remove 0 or DHT_ERR_NOTFOUND. */
int dht_key_add(dht *e, const dht_identity *id);
int dht_key_remove(dht *e, int key);

/* More local sockets, for a service (the birthday method of hole punching
 * opens about 256).  The driver sees DHT_EV_SOCK_OPEN (cmd: the request;
 * u.sock.n, u.sock.family), opens what it can, bound to ephemeral ports of
 * its main address of that family, and reports them with dht_sock_opened();
 * the service then gets DHT_EV_SOCK_OPENED (status, u.sock.n, u.sock.ids)
 * on its on_event.  Datagrams on those sockets carry their id in
 * dht_path.local / dht_msg_in.local; a service sends on one with dht_tx.
 * dht_sock_close() gives one back (the driver sees DHT_EV_SOCK_CLOSE); a
 * removed service's sockets are closed for it.  At most
 * settings.max_sockets are open at once. */
/* Returns the request's id (> 0), DHT_ERR_INVAL or DHT_ERR_FULL. */
int64_t dht_sock_open(dht *e, int svc, int n, uint8_t family);
/* The driver's answer to DHT_EV_SOCK_OPEN req: the n (>= 0) sockets it
 * opened (ids > 0, unique among its open sockets).  Returns 0, or
 * DHT_ERR_NOTFOUND for a request the engine does not know (the driver then
 * closes them). */
int dht_sock_opened(dht *e, int64_t req, const uint32_t *ids, int n);
/* Returns 0, or DHT_ERR_NOTFOUND when svc does not hold socket id. */
int dht_sock_close(dht *e, int svc, uint32_t id);

/* Paths to peer keys (dht_paths.c): how a service reached a key that its
 * record's addresses do not (a punched hole, later a relay).  A service
 * sends to a key over its path by leaving the address out: a dht_peer whose
 * addr.family is DHT_AF_NONE, given to dht_svc_send or dht_svc_request,
 * goes where the key's path says, on the path's local socket (refused with
 * DHT_ERR_NOTFOUND, counted in path_missing, when there is none).  An
 * authenticated, fresh datagram from the key on another path moves the path
 * there (roaming, counted in path_roams).  At most settings.max_paths keys;
 * the least recently used goes. */
enum dht_path_method { DHT_PATH_DIRECT = 1, DHT_PATH_PUNCHED = 2, DHT_PATH_RELAYED = 3 };
typedef struct dht_path_info {
  uint8_t pk[DHT_PK_LEN];
  dht_path path;
  uint8_t method; /* enum dht_path_method */
  dht_ts since;   /* set (or moved to another method or address) at */
  dht_ts last_rx; /* the last datagram from the key on it, or the set */
  uint64_t roams; /* times it moved */
} dht_path_info;
/* A DHT_PATH_RELAYED path's remote is the relay: datagrams to the key go
 * there sealed to the key, with version DHT_VERSION_RELAY, and the relay
 * sends them on.  Returns 0 or DHT_ERR_INVAL. */
int dht_path_set(dht *e, const uint8_t pk[static DHT_PK_LEN], const dht_path *p, int method,
                 dht_ts now);
/* Fills *out (may be NULL); 0 or DHT_ERR_NOTFOUND. */
int dht_path_get(dht *e, const uint8_t pk[static DHT_PK_LEN], dht_path_info *out);
/* 0 or DHT_ERR_NOTFOUND. */
int dht_path_drop(dht *e, const uint8_t pk[static DHT_PK_LEN]);
/* Up to max paths into out, in no particular order; returns how many. */
int dht_paths_list(dht *e, dht_path_info *out, int max);

/* Relaying (dht_relay.c): a circuit forwards datagrams between a and b,
 * each at the address it asked from, as they are (the envelope stays sealed
 * end to end; the relay only swaps the version byte), until max_bytes have
 * passed or until; then it closes (relay_closed).  A service opens one when
 * both ends asked for it (nat/).  dht_relay_open returns the circuit's id
 * (> 0; the existing one's for the same pair), DHT_ERR_INVAL or
 * DHT_ERR_FULL (max_circuits open, counted in relay_refused). */
int dht_relay_open(dht *e, const dht_peer *a, const dht_peer *b, uint64_t max_bytes, dht_ts until,
                   dht_ts now);
/* 0 or DHT_ERR_NOTFOUND. */
int dht_relay_close(dht *e, int id);
/* The id of an open circuit between keys a and b, or DHT_ERR_NOTFOUND. */
int dht_relay_find(const dht *e, const uint8_t a[static DHT_PK_LEN],
                   const uint8_t b[static DHT_PK_LEN]);
int dht_relay_count(const dht *e);

/* Proof of address for services (docs/protocol.md, "Amplification").  A
 * service whose answer may be large, or that acts on the source address of
 * a request (a dial-back), can make the requester prove it receives there:
 * the requester puts the cookie it holds from us (dht_svc_cookie: what our
 * NODES/VALUE replies gave it, for its current address) in its request, and
 * we check it (dht_svc_cookie_ok), which also marks the address proven for
 * the amplification rule.  dht_svc_cookie returns 0 and fills tok, or
 * DHT_ERR_NOTFOUND when we hold no fresh cookie from peer at that address. */
int dht_svc_cookie(dht *e, const dht_peer *peer, uint8_t tok[static DHT_TOKEN_LEN], dht_ts now);
bool dht_svc_cookie_ok(dht *e, const dht_peer *from, const uint8_t tok[static DHT_TOKEN_LEN],
                       dht_ts now);

/* Inserts peer into the routing table as a contact that has just answered
 * us at peer->addr, as the PONG to the engine's verify PING would: for a
 * service that took a DHT_EV_CANDIDATE and has proven, its own way, that the
 * node can be reached there.  A node already in the table is left as it is;
 * the bucket rules apply (a full bucket keeps it in its replacement cache
 * and pings a questionable contact), and so does IP diversity.  Returns 0
 * when it is in a bucket now, DHT_ERR_FULL when it was only cached or
 * refused (full, diversity, our own key), DHT_ERR_INVAL when it is in the
 * table already or peer is bad, DHT_ERR_NOMEM. */
int dht_svc_add_contact(dht *e, const dht_peer *peer, dht_ts now);
/* Hands a DHT_EV_CANDIDATE the service took back to the engine, which sends
 * its verify PING and inserts peer on the PONG, as if no service had taken
 * it: for a check the service could not run (nobody to ask answered).  The
 * candidate's rate limit was paid when it was offered.  Returns 0,
 * DHT_ERR_INVAL or DHT_ERR_FULL (the engine's request table). */
int dht_svc_verify(dht *e, const dht_peer *peer, dht_ts now);

/* The IP addresses our main socket sent to in the last 2 to 4 minutes (how
 * long a NAT remembers whom we talked to), as a 256-bit Bloom filter: bit
 * (h >> 8k) & 255 for k = 0, 1, 2 of h = dht_dest_hash(addr).  On loopback and
 * LANs the port counts too (every node there shares one IP).  A dial-back
 * prober must not be one of them, or a filtering NAT would let its probe in. */
void dht_recent_dests(const dht *e, uint8_t bloom[static 32], dht_ts now);
uint32_t dht_dest_hash(const dht_addr *a);

/* The engine's current timeout for one request to peer (see
 * dht_svc_request). */
dht_ts dht_peer_timeout(dht *e, const uint8_t pk[static DHT_PK_LEN]);
/* The smoothed RTT to a routing-table contact, or -1 when unknown. */
dht_ts dht_peer_rtt(dht *e, const uint8_t pk[static DHT_PK_LEN]);

/* Switches between server mode (reachable: others may store us; our record
 * says so) and client mode at run time.  When our record has been published,
 * it is made again and re-published.  Returns 0. */
int dht_set_mode(dht *e, bool server, dht_ts now);
/* Our NAT class for the record (enum dht_nat_class); like dht_set_mode, a
 * change re-publishes a published record.  0 or DHT_ERR_INVAL. */
int dht_set_nat_class(dht *e, int cls, dht_ts now);
bool dht_is_server(const dht *e);

/* ---- msgpack helpers for services (implemented in dht_wire.c, the one
 * file that includes msgpack.h) ----------------------------------------- */

/* Writer into a caller buffer.  Errors are sticky: check w.err once. */
typedef struct dht_wire_w {
  uint8_t *buf;
  size_t cap, len;
  int err; /* 0 or DHT_ERR_NOBUF */
} dht_wire_w;

void dht_wire_w_init(dht_wire_w *w, uint8_t *buf, size_t cap);
void dht_wire_w_array(dht_wire_w *w, uint32_t n);
void dht_wire_w_uint(dht_wire_w *w, uint64_t v);
void dht_wire_w_bin(dht_wire_w *w, const uint8_t *p, size_t n);
void dht_wire_w_nil(dht_wire_w *w);
void dht_wire_w_bool(dht_wire_w *w, bool v);

/* Strict reader.  Every getter returns 0 or DHT_ERR_PROTO (sticky in r.err). */
typedef struct dht_wire_r {
  const uint8_t *p, *end;
  int err;
} dht_wire_r;

void dht_wire_r_init(dht_wire_r *r, const uint8_t *p, size_t n);
/* Expects an array header with exactly n elements (and no more elements
 * than bytes left, as for every count below). */
int dht_wire_r_array(dht_wire_r *r, uint32_t n);
/* Reads an array header of any size up to max into *n. */
int dht_wire_r_array_max(dht_wire_r *r, uint32_t max, uint32_t *n);
/* Reads a non-negative integer <= max. */
int dht_wire_r_uint(dht_wire_r *r, uint64_t max, uint64_t *v);
/* Reads a bin whose length is in [min, max]; *p points into the input. */
int dht_wire_r_bin(dht_wire_r *r, size_t min, size_t max, const uint8_t **p, size_t *n);
/* Returns 1 when the next object is nil (consumed), 0 when it is something
 * else (not consumed), DHT_ERR_PROTO on error: test for == 1. */
int dht_wire_r_nil(dht_wire_r *r);
int dht_wire_r_bool(dht_wire_r *r, bool *v);
/* 0 when every byte was consumed and no error happened, else DHT_ERR_PROTO. */
int dht_wire_r_end(dht_wire_r *r);

#ifdef __cplusplus
}
#endif
#endif /* ROOST_DHT_H */

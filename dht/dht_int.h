/*
 * dht_int.h - interfaces between the files of dht/.  Not installed, not for
 * other folders: nat/, store/, node/ and sim/ use dht.h only.
 *
 * Files and what they own:
 *   dht_id.c       ID arithmetic (XOR distance, common prefix length)
 *   dht_addr.c     dht_addr helpers and the fixed wire layout of addresses
 *   dht_wire.c     msgpack writer/reader primitives (the one msgpack.h includer)
 *   dht_msg.c      the engine's message types on top of dht_wire
 *   dht_rt.c       the routing table
 *   dht_cache.c    a bounded set-associative map (shared keys, cookies)
 *   dht_box.c      the datagram envelope: seal/open with cached shared keys
 *   dht_token.c    address-bound tokens (write tokens and cookies)
 *   dht_rate.c     per-source-prefix token buckets
 *   dht_proof.c    proof of address and the amplification credit
 *   dht_svc.c      the service interface: requests, command ownership, events
 *   dht_replay.c   recently seen nonces
 *   dht_record.c   signed peer records
 *   dht_recstore.c records held for other nodes
 *   dht_lookup.c   iterative lookups
 *   dht_engine.c   the engine: drive API, RPC handlers, commands, timers
 */
#ifndef ROOST_DHT_INT_H
#define ROOST_DHT_INT_H

#include "dht.h"

/* ---- memory ----------------------------------------------------------- */

/* dht_mem_malloc/calloc/realloc/free and dht_mem_libc are in dht.h. */

/* ---- IDs (dht_id.c) ---------------------------------------------------- */

/* Number of leading bits a and b share: 0..256. */
int dht_id_cpl(const uint8_t a[static DHT_ID_LEN], const uint8_t b[static DHT_ID_LEN]);
/* dht_id_cmp_dist (XOR distance order) is in dht.h. */
void dht_id_xor(uint8_t out[static DHT_ID_LEN], const uint8_t a[static DHT_ID_LEN],
                const uint8_t b[static DHT_ID_LEN]);
/* An ID whose common prefix with self is exactly cpl bits (0..255): the first
 * cpl bits copied from self, bit cpl flipped, the rest from rnd. */
void dht_id_in_bucket(uint8_t out[static DHT_ID_LEN], const uint8_t self[static DHT_ID_LEN],
                      int cpl, const uint8_t rnd[static DHT_ID_LEN]);
/* "0123abcd": the first 4 bytes as hex, for logs.  buf >= 9 bytes. */
const char *dht_id_short(const uint8_t id[static DHT_ID_LEN], char buf[static 9]);

/* ---- addresses on the wire (dht_addr.c) --------------------------------- */

/* DHT_WADDR*_LEN, dht_addr_to_wire and dht_addr_from_wire are in dht.h
 * (services put addresses on the wire too). */
#define DHT_WCONTACT4_LEN (DHT_PK_LEN + DHT_WADDR4_LEN) /* 38 */
#define DHT_WCONTACT6_LEN (DHT_PK_LEN + DHT_WADDR6_LEN) /* 50 */
/* Same prefix for diversity/rate purposes: first v4bits of IPv4 or v6bits
 * of IPv6.  Different families never share a prefix. */
bool dht_addr_same_prefix(const dht_addr *a, const dht_addr *b, int v4bits, int v6bits);
/* 64-bit key of a's prefix (family folded in). */
uint64_t dht_addr_prefix_key(const dht_addr *a, int v4bits, int v6bits);

/* ---- messages (dht_msg.c) --------------------------------------------- */

enum dht_msg_type {
  DHT_MSG_PING = 1,      /* [1, txid, flags] */
  DHT_MSG_PONG = 2,      /* [2, txid, seen(bin 6|18), cookie(bin 0|16)] */
  DHT_MSG_FIND_NODE = 3, /* [3, txid, flags, cookie(bin 0|16), target(bin 32), pad(bin)] */
  DHT_MSG_NODES = 4,     /* [4, txid, token(bin 16), contacts(array <= 32 of bin 38|50)] */
  DHT_MSG_GET = 5,       /* [5, txid, flags, cookie(bin 0|16), key(bin 32), pad(bin)] */
  DHT_MSG_VALUE = 6,     /* [6, txid, token(bin 16), record(bin 1..275), contacts(array)] */
  DHT_MSG_PUT = 7,       /* [7, txid, flags, token(bin 16), record(bin 1..275)] */
  DHT_MSG_ACK = 8,       /* [8, txid, status(uint <= 255)] */
  DHT_MSG_CORE_MAX = 0x1f,
};

/* flags in requests */
#define DHT_MSGF_SERVER 0x01 /* the sender is reachable and may be stored */

/* status in ACK */
enum dht_ack_status {
  DHT_ACK_OK = 0,
  DHT_ACK_BAD_TOKEN = 1,
  DHT_ACK_BAD_RECORD = 2,
  DHT_ACK_STALE = 3,
  DHT_ACK_FULL = 4,
};

/* One decoded message.  Which fields are meaningful depends on type (see the
 * layouts above).  Pointers (record) point into the decoded body. */
typedef struct dht_msg {
  uint8_t type;
  uint32_t txid;
  uint8_t flags;
  uint8_t token_len; /* cookie (0|16) in FIND_NODE/GET, token (16) elsewhere */
  uint8_t token[DHT_TOKEN_LEN];
  uint8_t target[DHT_ID_LEN]; /* FIND_NODE target, GET key */
  dht_addr seen;              /* PONG */
  int ncontacts;              /* NODES, VALUE */
  dht_peer contacts[DHT_K_MAX];
  const uint8_t *record; /* VALUE, PUT */
  size_t record_len;
  size_t pad_len; /* FIND_NODE, GET: padding bytes carried / to add */
  uint8_t status; /* ACK */
} dht_msg;

/* Reads only [type, txid, ...] from a body: for dispatch.  Returns 0 or
 * DHT_ERR_PROTO. */
int dht_msg_peek(const uint8_t *body, size_t len, uint8_t *type, uint32_t *txid);
/* Decodes a core message strictly: exact arity, types, lengths, no trailing
 * bytes.  Returns 0, DHT_ERR_PROTO (malformed) or DHT_ERR_NOTFOUND (a
 * well-formed [type, txid, ...] head whose type is not a core type; the rest
 * is not examined).  On error *m is unspecified. */
int dht_msg_decode(dht_msg *m, const uint8_t *body, size_t len);
/* Encodes m into buf.  Returns the length or DHT_ERR_NOBUF / DHT_ERR_INVAL
 * (anything the decoder would refuse, e.g. a contact with port 0). */
dht_ssize dht_msg_encode(const dht_msg *m, uint8_t *buf, size_t cap);
/* Encoded size of one contact inside a contacts array (bin8 header + 38|50,
 * 0 for an address that cannot be sent), so the engine can fit a reply under
 * a byte budget without encoding twice.  The array header itself grows from
 * 1 to 3 bytes at 16 contacts: budget for 3. */
size_t dht_msg_contact_size(const dht_peer *c);

/* ---- routing table (dht_rt.c) ----------------------------------------- */

/* One table slot: 88 bytes (x86-64), 120 when it also held the ID.  The ID
 * is not stored: it is BLAKE2b(pk) (dht_id_from_pk), and the table keeps its
 * first 8 bytes in an array beside the slots, which is what lookups search.
 * So the functions below that find a contact take its key and its ID (the
 * table matches on the ID's first 8 bytes, then on the key, exactly), and a
 * caller that needs a contact's ID derives it from pk (dht_eng_peer_id, or
 * dht_id_from_pk).  A bucket's allocation grows with use (dht_rt.c), so a
 * contact pointer the table returns is valid until the table next changes. */
typedef struct dht_rt_contact {
  uint8_t pk[DHT_PK_LEN];
  dht_addr addr;
  dht_ts first_seen;           /* when it entered the table */
  dht_ts last_reply;           /* 0: never answered us (loaded from a snapshot) */
  dht_ts last_ping;            /* when we last pinged it for liveness */
  uint16_t srtt_ms, rttvar_ms; /* 0,0: unknown */
  uint8_t fails;               /* consecutive timeouts */
} dht_rt_contact;

typedef struct dht_rt_settings {
  int k;
  int replacement_cache;
  int max_per_prefix_bucket, max_per_prefix_table;
  bool diversity_exempt_private;
  dht_ts questionable_after_ms;
  int max_failures;
} dht_rt_settings;

typedef struct dht_rt dht_rt;

enum dht_rt_result {
  DHT_RT_ADDED = 0,    /* now in a bucket */
  DHT_RT_UPDATED = 1,  /* was in a bucket; liveness refreshed */
  DHT_RT_CACHED = 2,   /* bucket full: kept in the replacement cache */
  DHT_RT_REJECTED = 3, /* self, diversity limit, or bucket and cache full */
};

int dht_rt_new(dht_rt **out, const uint8_t self[static DHT_ID_LEN], const dht_rt_settings *s,
               const dht_mem *mem);
void dht_rt_del(dht_rt *rt);

/* A contact answered us at addr (confirmed=true) or was learnt without proof
 * (confirmed=false: loaded snapshot).  rtt_ms >= 0 feeds the RTT estimate.
 * When the bucket is full and holds a contact that has gone questionable,
 * the newcomer is cached and *ping (if not NULL) is set to the contact the
 * engine should ping now (ping-before-evict); otherwise *ping = NULL.
 * Returns enum dht_rt_result or DHT_ERR_NOMEM. */
int dht_rt_update(dht_rt *rt, const uint8_t pk[static DHT_PK_LEN], const dht_addr *addr,
                  bool confirmed, dht_ts rtt_ms, dht_ts now, const dht_rt_contact **ping);
/* dht_rt_update for a caller that already knows id = BLAKE2b(pk). */
int dht_rt_update_id(dht_rt *rt, const uint8_t pk[static DHT_PK_LEN],
                     const uint8_t id[static DHT_ID_LEN], const dht_addr *addr, bool confirmed,
                     dht_ts rtt_ms, dht_ts now, const dht_rt_contact **ping);
/* In the calls below that take pk and id, id must be BLAKE2b(pk): the
 * contact is the one with that key (found by the ID, confirmed on the key). */

/* A request to (pk, id) timed out.  After max_failures in a row the contact
 * is replaced by the freshest replacement-cache entry; with none waiting it
 * stays, marked bad, until a newcomer takes its slot (Kademlia's rule: an
 * outage of our own link must not empty the table).  Returns true if
 * removed. */
bool dht_rt_failed(dht_rt *rt, const uint8_t pk[static DHT_PK_LEN],
                   const uint8_t id[static DHT_ID_LEN], dht_ts now);
/* The table contact (pk, id), which has answered us before, sent us a
 * request from addr, its known address: a sign of life as good as a reply
 * (BEP 5's "good node" rule), so it is not pinged for liveness.  Contacts
 * with failures, unknown keys and other addresses are left alone. */
void dht_rt_heard(dht_rt *rt, const uint8_t pk[static DHT_PK_LEN],
                  const uint8_t id[static DHT_ID_LEN], const dht_addr *addr, dht_ts now);
/* True when a newcomer with this id could only wait in the replacement
 * cache: its bucket is full of good contacts (answered within
 * questionable_after_ms, no failures) and cannot split.  The engine skips
 * verifying such a peer (BEP 5 drops it; it still enters the cache when it
 * answers one of our own requests). */
bool dht_rt_is_settled(const dht_rt *rt, const uint8_t id[static DHT_ID_LEN], dht_ts now);
/* Marks that we pinged (pk, id) at now (so it is not pinged again at once). */
void dht_rt_pinged(dht_rt *rt, const uint8_t pk[static DHT_PK_LEN],
                   const uint8_t id[static DHT_ID_LEN], dht_ts now);
/* Removes (pk, id) from its bucket or its replacement cache. */
bool dht_rt_remove(dht_rt *rt, const uint8_t pk[static DHT_PK_LEN],
                   const uint8_t id[static DHT_ID_LEN]);
/* The live contact (pk, id), or NULL.  Valid until the next change. */
const dht_rt_contact *dht_rt_find(const dht_rt *rt, const uint8_t pk[static DHT_PK_LEN],
                                  const uint8_t id[static DHT_ID_LEN]);
/* Up to n contacts closest to target, closest first, into out[] (pointers
 * valid until the next change).  only_good skips contacts that never
 * answered or have failures.  Returns the count. */
int dht_rt_closest(const dht_rt *rt, const uint8_t target[static DHT_ID_LEN], bool only_good,
                   const dht_rt_contact **out, int n);
int dht_rt_size(const dht_rt *rt);    /* contacts in buckets (not caches) */
int dht_rt_buckets(const dht_rt *rt); /* buckets currently allocated (1..256) */
/* Contacts in the bucket that id falls in (0..k). */
int dht_rt_bucket_fill(const dht_rt *rt, const uint8_t id[static DHT_ID_LEN]);
/* The i-th contact in bucket order (0 <= i < size), for snapshots. */
const dht_rt_contact *dht_rt_at(const dht_rt *rt, int i);
/* A contact that should be pinged now: questionable (no reply for
 * questionable_after_ms, or never) and not pinged within that time; NULL if
 * none.  The engine calls this from its timer to keep the table fresh. */
const dht_rt_contact *dht_rt_next_to_ping(dht_rt *rt, dht_ts now);
/* No contact is due a liveness ping before this time (a lower bound: any
 * change that could make one due sooner lowers it; dht_rt_next_to_ping
 * raises it again).  The engine sleeps until then instead of polling. */
dht_ts dht_rt_ping_due(const dht_rt *rt);
/* Bucket refresh: index (cpl) of a bucket not changed for interval, or -1;
 * dht_rt_touch_bucket marks one refreshed. */
int dht_rt_stale_bucket(const dht_rt *rt, dht_ts now, dht_ts interval);
void dht_rt_touch_bucket(dht_rt *rt, int idx, dht_ts now);
/* Checks every internal invariant of the table (tests and fuzzing).
 * Returns 0 or DHT_ERR_INTERNAL.  It hashes every key: not for hot paths. */
int dht_rt_check(const dht_rt *rt);
/* Adaptive RPC timeout for a contact: srtt + 4 rttvar, clamped. */
dht_ts dht_rt_timeout(const dht_rt_contact *c, dht_ts min_ms, dht_ts max_ms);

/* ---- bounded set-associative map (dht_cache.c) ------------------------ */

/* 32-byte keys, fixed-size values, 4 ways per set, least recently used way
 * evicted.  The set index is SipHash of the key under a per-engine secret, so
 * a peer cannot aim many keys at one set.  Values are wiped on eviction/free
 * (they may be secrets). */
#define DHT_CACHE_WAYS 4

typedef struct dht_cache {
  int nsets;
  size_t vlen;
  uint64_t clock;
  uint8_t hkey[16];
  struct dht_cache_ent {
    uint8_t key[32];
    uint64_t stamp; /* 0 = empty */
  } * ents;
  uint8_t *vals;
} dht_cache;

/* entries is rounded up to a multiple of the ways (>= 4). */
int dht_cache_init(dht_cache *c, int entries, size_t vlen, const uint8_t hkey[static 16],
                   const dht_mem *mem);
void dht_cache_free(dht_cache *c, const dht_mem *mem);
/* The value stored under key (refreshing its age), or NULL. */
uint8_t *dht_cache_get(dht_cache *c, const uint8_t key[static 32]);
/* The value slot for key, taking the least recently used way of its set if
 * key is absent (the slot's old contents are wiped).  Never NULL. */
uint8_t *dht_cache_put(dht_cache *c, const uint8_t key[static 32]);
void dht_cache_remove(dht_cache *c, const uint8_t key[static 32]);

/* ---- the envelope (dht_box.c) ------------------------------------------ */

/* [u8 version][32 B sender Ed25519 pk][24 B nonce][crypto_box(body)]: 73 B of
 * overhead.  Shared keys (X25519 of our key and the peer's, converted from
 * Ed25519) are computed once per peer and cached: a fresh one costs some
 * hundred times a cached box (docs/benchmarks.md, "Cache misses"). */
#define DHT_OVERHEAD (DHT_HDR_LEN + DHT_MAC_LEN)
#define DHT_NONCE_LEN 24

typedef struct dht_box {
  bool plaintext;         /* dht_settings.insecure_plaintext (simulation only) */
  uint8_t pk[DHT_PK_LEN]; /* our Ed25519 public key, sent in every header */
  uint8_t xsk[32];        /* our X25519 secret key */
  dht_cache keys;         /* peer Ed25519 pk -> shared key */
  uint64_t hits, misses;
} dht_box;

int dht_box_init(dht_box *b, const dht_identity *id, int cache_entries,
                 const uint8_t hkey[static 16], const dht_mem *mem);
void dht_box_free(dht_box *b, const dht_mem *mem);
/* Simulation only: no encryption, no authentication (see dht_settings). */
void dht_box_set_plaintext(dht_box *b, bool on);
/* The cached entry for peer, computed on a miss: 64 bytes, the shared key
 * then the peer's node ID (so the request path never hashes the key again).
 * NULL when peer is not a usable key (not a point, low order).  Valid until
 * the next call. */
#define DHT_BOX_ENTRY_LEN (32 + DHT_ID_LEN)
const uint8_t *dht_box_key(dht_box *b, const uint8_t peer[static DHT_PK_LEN]);
/* Seals body for peer into out (cap >= len + DHT_OVERHEAD).  Returns the
 * datagram length, DHT_ERR_NOBUF, or DHT_ERR_CRYPTO for an unusable peer key. */
dht_ssize dht_box_seal(dht_box *b, const uint8_t peer[static DHT_PK_LEN],
                       const uint8_t nonce[static DHT_NONCE_LEN], const uint8_t *body, size_t len,
                       uint8_t *out, size_t cap);
/* Opens a datagram whose header the caller has checked (length, version) with
 * key; writes the body into out (cap >= len - DHT_OVERHEAD).  Returns the body
 * length or DHT_ERR_CRYPTO. */
dht_ssize dht_box_open(const uint8_t key[static 32], const uint8_t *pkt, size_t len, uint8_t *out,
                       size_t cap);

/* ---- address-bound tokens (dht_token.c) -------------------------------- */

/* token = SipHash-128(secret, addr || sender pk).  The secret rotates every
 * DHT_TOKEN_ROTATE_MS and the previous one stays valid, so a token lives 5 to
 * 10 minutes.  The same tokens serve as write tokens (PUT) and as cookies that
 * prove an address can receive (anti-amplification). */
#define DHT_TOKEN_ROTATE_MS (5 * 60 * 1000)

typedef struct dht_token {
  uint8_t secret[2][32]; /* [0] current, [1] previous */
  dht_ts rotated;
} dht_token;

void dht_token_init(dht_token *t, const uint8_t rnd[static 32], dht_ts now);
/* Rotates when due; the engine passes fresh random bytes. */
void dht_token_rotate(dht_token *t, const uint8_t rnd[static 32], dht_ts now);
void dht_token_make(const dht_token *t, const dht_addr *a, const uint8_t pk[static DHT_PK_LEN],
                    uint8_t out[static DHT_TOKEN_LEN]);
bool dht_token_check(const dht_token *t, const dht_addr *a, const uint8_t pk[static DHT_PK_LEN],
                     const uint8_t tok[static DHT_TOKEN_LEN]);
void dht_token_free(dht_token *t); /* wipes */

/* ---- per-prefix token buckets (dht_rate.c) ----------------------------- */

/* Run before any decryption.  Keyed by source prefix (/24, /48 by default);
 * loopback sources are keyed by address and port, so that many local nodes
 * do not share one bucket.  Bounded: at the cap the least recently seen
 * prefix of a set is forgotten. */
typedef struct dht_rate {
  int nsets, pps, burst, v4bits, v6bits;
  uint64_t mul; /* random odd multiplier for the set index */
  struct dht_rate_ent {
    uint64_t key;
    dht_ts last;
    int64_t milli; /* tokens x 1000 */
  } * ents;
} dht_rate;

int dht_rate_init(dht_rate *r, int prefixes, int pps, int burst, int v4bits, int v6bits,
                  uint64_t rnd, const dht_mem *mem);
void dht_rate_free(dht_rate *r, const dht_mem *mem);
/* True if a packet from a may pass now (and takes a token). */
bool dht_rate_allow(dht_rate *r, const dht_addr *a, dht_ts now);

/* ---- proof of address and amplification credit (dht_proof.c) ---------- */

typedef struct dht_proof_settings {
  int entries; /* per cache (proven keys, credited addresses, destination prefixes) */
  int factor;  /* amplification factor */
  int pps, burst, v4bits, v6bits; /* unsolicited datagrams per destination prefix */
} dht_proof_settings;

typedef struct dht_proof {
  int factor;
  dht_cache proven;     /* peer pk -> the address it proved, and when */
  dht_cache credit;     /* address -> bytes we may still send it, and when earned */
  dht_rate unsolicited; /* per destination prefix */
} dht_proof;

/* rnd: 40 random bytes (cache keys and the rate table's multiplier). */
int dht_proof_init(dht_proof *p, const dht_proof_settings *s, const uint8_t rnd[static 40],
                   const dht_mem *mem);
void dht_proof_free(dht_proof *p, const dht_mem *mem);
/* peer showed it receives at peer->addr. */
void dht_proof_mark(dht_proof *p, const dht_peer *peer, dht_ts now);
/* A remembered, unexpired proof for exactly (peer->pk, peer->addr). */
bool dht_proof_has(dht_proof *p, const dht_peer *peer, dht_ts now);
/* `from` earned `bytes` of credit (factor x what it sent, already multiplied). */
void dht_proof_credit(dht_proof *p, const dht_addr *from, uint32_t bytes, dht_ts now);
/* Takes wire_len bytes of to's credit; false (nothing taken) without enough. */
bool dht_proof_spend(dht_proof *p, const dht_addr *to, size_t wire_len, dht_ts now);
/* May we start one datagram toward to's prefix now (takes a token)? */
bool dht_proof_unsolicited(dht_proof *p, const dht_addr *to, dht_ts now);

/* ---- replayed datagrams (dht_replay.c) --------------------------------- */

/* Remembers the nonces of the last 1..2 x window authenticated datagrams in
 * two generations of open-addressing sets; a datagram whose (sender, nonce)
 * was seen is a replay.  window 0 turns it off. */
typedef struct dht_replay {
  int window, count, mask;
  uint8_t key[16];  /* SipHash key for fingerprints */
  uint64_t *gen[2]; /* [0] current */
} dht_replay;

int dht_replay_init(dht_replay *r, int window, const uint8_t key[static 16], const dht_mem *mem);
void dht_replay_free(dht_replay *r, const dht_mem *mem);
/* Records (sender, nonce); returns true if it had been seen already. */
bool dht_replay_seen(dht_replay *r, const uint8_t sender[static DHT_PK_LEN],
                     const uint8_t nonce[static DHT_NONCE_LEN]);

/* ---- signed peer records (dht_record.c) -------------------------------- */

/* Fixed layout, signed as a whole, canonical by construction:
 *   u8 version (1|2) | pk 32 | seq u64 | expires u64 (unix s) | flags u8 |
 *   naddrs u8 (<= 8) | naddrs x (type u8, len u8 (6|18), address wire form) |
 *   version 2 only: nintro u8 (1..3) | nintro x (pk 32, len u8 (6|18), address) |
 *   Ed25519 signature 64 over "roost-record-v1\0" || everything before it.
 * Integers big-endian.  A record without introducers is version 1, so the
 * nodes that know only version 1 keep storing it. */
#define DHT_RECORD_VERSION 1
#define DHT_RECORD_VERSION_INTRO 2

/* Signs r with sk into buf.  Returns the length, DHT_ERR_INVAL, DHT_ERR_NOBUF. */
dht_ssize dht_record_sign(const dht_record *r, const uint8_t sk[static DHT_SK_LEN], uint8_t *buf,
                          size_t cap);
/* Parses the layout (no signature check).  0 or DHT_ERR_PROTO. */
int dht_record_parse(dht_record *r, const uint8_t *buf, size_t len);
/* Checks the signature of a record that parses.  0 or DHT_ERR_CRYPTO. */
int dht_record_verify(const uint8_t *buf, size_t len);

/* ---- records held for others (dht_recstore.c) -------------------------- */

typedef struct dht_recstore_ent {
  uint8_t id[DHT_ID_LEN];
  uint64_t seq, expires_unix_s;
  uint16_t len;
  uint8_t *bytes; /* len bytes of their own allocation (most records are
                   * under half of DHT_RECORD_MAX_LEN) */
} dht_recstore_ent;

/* Sorted by ID (binary search); at the cap the record farthest from our own
 * ID gives way to a closer one, since we are responsible for the closest. */
typedef struct dht_recstore {
  dht_mem mem;
  uint8_t self[DHT_ID_LEN];
  dht_recstore_ent *v;
  int n, alloc, max;
} dht_recstore;

void dht_recstore_init(dht_recstore *rs, const uint8_t self[static DHT_ID_LEN], int max,
                       const dht_mem *mem);
void dht_recstore_free(dht_recstore *rs);
/* Stores a verified record (r parsed from bytes).  Returns an enum
 * dht_ack_status (OK, STALE for an older or conflicting sequence number,
 * FULL) or DHT_ERR_NOMEM. */
int dht_recstore_put(dht_recstore *rs, const dht_record *r, const uint8_t *bytes, size_t len,
                     uint64_t now_unix_s);
const dht_recstore_ent *dht_recstore_get(const dht_recstore *rs,
                                         const uint8_t id[static DHT_ID_LEN], uint64_t now_unix_s);
/* Drops expired records; returns how many. */
int dht_recstore_expire(dht_recstore *rs, uint64_t now_unix_s);

#endif /* ROOST_DHT_INT_H */

/*
 * fuzz_packet.c - the libFuzzer target for the dht/ engine's packet path and
 * its service interface.
 *
 * It owns: an interpreter that turns one input into a sequence of engine
 * calls on ONE fresh engine, four simulated peers that seal bodies with their
 * own dht_box (so fuzzed msgpack reaches the decoder and the handlers), a
 * test service plugged in through the service interface (requests, owned
 * commands, sockets, sending keys), the driver's side of that interface
 * (paths, DHT_EV_SOCK_*), and the oracles.  A broken oracle is abort(), which
 * libFuzzer reports as a crash.
 *
 * Input: a sequence of ops [u8 op][u16 len, big-endian][len bytes]; a
 * truncated tail ends the input; at most FZ_MAX_OPS ops run.  op % 8 is:
 *   0 RAW     the bytes as a datagram from address A (pre-auth checks);
 *   1 BODY    [sel][body]: body sealed by peer sel as a valid datagram;
 *   2 TIME    [ms u16][shift]: advance the clock by ms << (shift & 7) and run
 *             the timers that fall due on the way;
 *   3 CMD     [which][args]: a command (see fz_cmd);
 *   4 TAMPER  [sel][off u16][mask][body]: like BODY, then byte off (mod the
 *             datagram length) XORed with mask (0 means 0x80);
 *   5 CONFIG  [flags][k][svc flags]: only as the first op: changes the
 *             settings (rate limiter on, small caps, ...); ignored elsewhere;
 *   6 SVC     [which][args]: the service acts (see fz_svc_op): a request,
 *             a cancel, an owned command, sockets, sending keys, the mode,
 *             the socket datagrams arrive on, a notice, removal;
 *   7 ANSWER  [sel][idx][variant][payload]: a peer answers one of the
 *             service's requests (see fz_answer), rightly or wrongly.
 * sel (BODY, TAMPER): bits 0-1 the peer, bit 2 IPv6 source address, bit 3
 * replace the body's txid with one the engine sent to that peer (bits 5-6:
 * 0 = its most recent request, 1 = the one before, ...), bit 4 replace the
 * first bin 16 of the body with the last token the engine gave that peer,
 * bit 7 reuse the peer's previous nonce (a replay).  The patches let the
 * fuzzer answer requests whose txids and tokens come from the engine.
 *
 * The service owns message types 0x20-0x2f (see fz_svc_msg for those peers
 * send it, FZ_SVC_REQ/FZ_SVC_REQ2 for its requests).  After the last op the
 * clock runs on until every request and owned command has ended, and the
 * service is removed, so the end-of-life oracles run on every input.
 *
 * Determinism: the engine's identity, the peers' identities and the random
 * stream (ChaCha20 under a constant key) are fixed, so an input always runs
 * the same way.  Nothing mutable survives an input: the only global is the
 * key setup made once on first use and never written again.
 *
 * What it shares with fuzz_store.c (op reader, identities, peer boxes and
 * addresses, sealing, datagram checks, clock) is in fuzz_common.c (fc_*).
 *
 * tests/fuzz/gen_corpus.c includes this file to reuse the identities and to
 * run each seed it writes (fz_run with a stats pointer).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dht_int.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_PEERS 4
#define FZ_MAX_OPS 256
#define FZ_T0 FC_T0                        /* the engine's clock at dht_new */
#define FZ_UNIX_MS FC_UNIX_MS              /* wall clock at FZ_T0 */
#define FZ_UNIX_S (FZ_UNIX_MS / 1000)      /* the same in unix seconds */
#define FZ_MAX_ADVANCE (6LL * 3600 * 1000) /* total clock advance per input */
#define FZ_EXPIRY_STEPS 64                 /* timer runs per TIME op */
#define FZ_RING 4                          /* recent txids remembered per peer */
#define FZ_MAX_CMD 4096                    /* command ids tracked for uniqueness */
#define FZ_SKEYS 3                         /* identities the service may send under */
#define FZ_MAX_REQS 96                     /* service requests tracked per input */
#define FZ_MAX_SOCKREQ FZ_MAX_OPS          /* socket requests tracked: one per op at most */
#define FZ_MAX_SOCKS 256                   /* sockets the driver opened, per input */
#define FZ_SOCK_GIVE 10                    /* most sockets the driver gives at once */
#define FZ_MAX_OUTREQ 1024                 /* the engine's requests to peers, tracked */
#define FZ_MAX_TOKENS 32                   /* tokens the engine gave a peer, tracked */
#define FZ_MAX_AMP 64                      /* remote addresses accounted */
#define FZ_PATHS 16                        /* requests in remembered with their socket */
#define FZ_GENS 8                          /* service generations (removal, re-adding) */
#define FZ_END_MS (90 * 1000)              /* how long the clock runs on after the ops */
#define FZ_END_STEPS 4096

enum {
  FZ_OP_RAW,
  FZ_OP_BODY,
  FZ_OP_TIME,
  FZ_OP_CMD,
  FZ_OP_TAMPER,
  FZ_OP_CONFIG,
  FZ_OP_SVC,
  FZ_OP_ANSWER,
  FZ_OP_COUNT
};

/* sel bits */
#define FZ_SEL_PEER 0x03
#define FZ_SEL_V6 0x04
#define FZ_SEL_TXID 0x08
#define FZ_SEL_TOKEN 0x10
#define FZ_SEL_RING_SHIFT 5
#define FZ_SEL_REPLAY 0x80

/* CONFIG flags */
#define FZ_CFG_RATE 0x01      /* rate limiter on: 2 pps, burst 4 */
#define FZ_CFG_CLIENT 0x02    /* server_mode off */
#define FZ_CFG_K 0x04         /* k = 1 + (second byte % DHT_K_MAX) */
#define FZ_CFG_NOREPLAY 0x08  /* replay_window 0 */
#define FZ_CFG_AMP1 0x10      /* amplification_factor 1 */
#define FZ_CFG_SMALLKEYS 0x20 /* key_cache and cookie_cache 1 (rounded to 4) */
#define FZ_CFG_TINYQ 0x40     /* max_out_queue 2, max_events 1, max_lookups 2 */
#define FZ_CFG_TINYREC 0x80   /* max_records 1, replacement_cache 0 */
/* CONFIG's third byte: the service interface's caps */
#define FZ_CFG2_REQS 0x01   /* max_requests 2 */
#define FZ_CFG2_KEYS 0x02   /* max_keys 1 */
#define FZ_CFG2_SOCKS 0x04  /* max_sockets 3 */
#define FZ_CFG2_UNSOL 0x08  /* unsolicited_burst 1 */
#define FZ_CFG2_EVENTS 0x10 /* max_events 3 */
#define FZ_CFG2_SVCS 0x20   /* max_services 2: adding again runs out */
#define FZ_CFG2_NOEND 0x40  /* no end phase: dht_del with everything outstanding */

/* CMD numbers (first payload byte % FZ_CMD_COUNT) */
enum {
  FZ_CMD_BOOTSTRAP,
  FZ_CMD_FIND,
  FZ_CMD_GET,
  FZ_CMD_PUT,
  FZ_CMD_PING,
  FZ_CMD_CANCEL,
  FZ_CMD_LOAD,
  FZ_CMD_SAVE,
  FZ_CMD_CLOSEST,
  FZ_CMD_CLOCK,
  FZ_CMD_COUNT
};

/* SVC numbers (first payload byte % FZ_SVC_COUNT) */
enum {
  FZ_SVC_OP_REQ,        /* dht_svc_request */
  FZ_SVC_OP_CANCEL,     /* dht_svc_cancel by tag */
  FZ_SVC_OP_OWN,        /* a command, then dht_svc_own */
  FZ_SVC_OP_SOCK_OPEN,  /* dht_sock_open, with the driver's answer policy */
  FZ_SVC_OP_SOCK_REPLY, /* the driver answers a deferred (or unknown) request */
  FZ_SVC_OP_SOCK_CLOSE, /* dht_sock_close */
  FZ_SVC_OP_KEY_ADD,    /* dht_key_add */
  FZ_SVC_OP_KEY_REMOVE, /* dht_key_remove */
  FZ_SVC_OP_MODE,       /* dht_set_mode */
  FZ_SVC_OP_PATH,       /* the local socket datagrams arrive on from now */
  FZ_SVC_OP_NOTICE,     /* dht_svc_send of a notice */
  FZ_SVC_OP_REMOVE,     /* dht_service_remove, or add it again */
  FZ_SVC_OP_TAKE,       /* whether on_event takes unsolicited events */
  FZ_SVC_COUNT
};

/* The service's message types (all [type, txid, ...]). */
#define FZ_SVC_LO 0x20
#define FZ_SVC_HI 0x2f
enum {
  FZ_SVC_ECHO = 0x20, /* [0x20, txid, bin]: answered at once with [0x21, txid, bin] */
  FZ_SVC_ECHOED,      /* 0x21 */
  FZ_SVC_TIMER,       /* [0x22, txid, nil|bool, ms <= 60000]: answered after ms */
  FZ_SVC_RING,        /* [0x23, txid, bool, nil], the timer's answer */
  FZ_SVC_FIND,        /* [0x24, txid, bin 32 (, bool own)]: the hook starts dht_find_node */
  FZ_SVC_NOTICE,      /* [0x25, txid, bin]: a notice the service sends (not a request) */
  FZ_SVC_ASK,         /* [0x26, txid, n <= 4]: the hook sends the sender n requests */
  FZ_SVC_REQ = 0x28,  /* [0x28, txid, bin]: the service's request ... */
  FZ_SVC_ANS,         /* [0x29, txid, bin]: ... and its answer */
  FZ_SVC_REQ2,        /* 0x2a, a second kind ... */
  FZ_SVC_ANS2,        /* 0x2b, ... with its own answer */
};

/* Message types that are requests (the engine's and the service's): what
 * the amplification rule does not count. */
static bool fz_is_request(uint8_t type) {
  return type == DHT_MSG_PING || type == DHT_MSG_FIND_NODE || type == DHT_MSG_GET ||
         type == DHT_MSG_PUT || type == FZ_SVC_REQ || type == FZ_SVC_REQ2;
}

/* ---- the immutable setup ------------------------------------------------ */

typedef struct fz_keys {
  dht_identity self;
  uint8_t self_id[DHT_ID_LEN];
  dht_identity peer[FZ_PEERS];
  uint8_t peer_id[FZ_PEERS][DHT_ID_LEN];
  /* what each peer's box caches for the engine: shared key, engine ID */
  uint8_t entry[FZ_PEERS][DHT_BOX_ENTRY_LEN];
  /* the identities the service sends under (dht_key_add), and each peer's
   * entry for them */
  dht_identity skey[FZ_SKEYS];
  uint8_t sentry[FZ_PEERS][FZ_SKEYS][DHT_BOX_ENTRY_LEN];
} fz_keys;

static const uint8_t fz_hkey[16] = "roost-fuzz-hkey";

static fz_keys fz_k;
static bool fz_k_ready;
/* ROOST_FUZZ_STRICT=1: also check the invariants the engine is known to
 * break (see tests/fuzz/README.md, "Known engine bugs"), so that their
 * reproducers crash.  Read once, with the keys. */
static bool fz_strict;

/* Identity number n (0 = the engine, 1.. = peers, more for seeds). */
static void fz_identity(dht_identity *id, int n) {
  fc_identity(id, 0x5a, n);
}

static const fz_keys *fz_setup(void) {
  if (fz_k_ready)
    return &fz_k;
  if (sodium_init() < 0)
    abort();
  const char *s = getenv("ROOST_FUZZ_STRICT");
  fz_strict = !(s && s[0] == '0');
  fz_identity(&fz_k.self, 0);
  dht_id_from_pk(fz_k.self_id, fz_k.self.pk);
  for (int j = 0; j < FZ_SKEYS; j++)
    fz_identity(&fz_k.skey[j], 40 + j);
  for (int i = 0; i < FZ_PEERS; i++) {
    fz_identity(&fz_k.peer[i], 1 + i);
    dht_id_from_pk(fz_k.peer_id[i], fz_k.peer[i].pk);
    fc_box_entry(fz_k.entry[i], &fz_k.peer[i], fz_hkey, fz_k.self.pk);
    for (int j = 0; j < FZ_SKEYS; j++)
      fc_box_entry(fz_k.sentry[i][j], &fz_k.peer[i], fz_hkey, fz_k.skey[j].pk);
  }
  fz_k_ready = true;
  return &fz_k;
}

/* Peer i's address: distinct public /24s and /48s, so IP diversity limits do
 * not refuse them. */
static void fz_peer_addr(int i, bool v6, dht_addr *a) {
  static const uint8_t v4[FZ_PEERS][4] = {
      {192, 0, 2, 10}, {198, 51, 100, 11}, {203, 0, 113, 12}, {198, 18, 0, 13}};
  fc_peer_addr(a, i, v6, v4[i], 0x10, 4000);
}

/* Address A: where raw datagrams come from (shares peer 0's /24, so with the
 * rate limiter on the two compete for one bucket). */
static void fz_addr_a(dht_addr *a) {
  memset(a, 0, sizeof *a);
  a->family = DHT_AF_INET;
  a->ip[0] = 192;
  a->ip[1] = 0;
  a->ip[2] = 2;
  a->ip[3] = 200;
  a->port = 7777;
}

/* ---- a deterministic random stream: ChaCha20 under a constant key ------- */

typedef struct fz_rng {
  uint32_t in[16];
  uint8_t buf[64];
  size_t off;
} fz_rng;

static uint32_t rotl32(uint32_t v, int n) {
  return v << n | v >> (32 - n);
}

#define FZ_QR(a, b, c, d)                                                                          \
  do {                                                                                             \
    a += b;                                                                                        \
    d = rotl32(d ^ a, 16);                                                                         \
    c += d;                                                                                        \
    b = rotl32(b ^ c, 12);                                                                         \
    a += b;                                                                                        \
    d = rotl32(d ^ a, 8);                                                                          \
    c += d;                                                                                        \
    b = rotl32(b ^ c, 7);                                                                          \
  } while (0)

static void fz_rng_init(fz_rng *r) {
  /* "expand 32-byte k", a constant key, block counter 0, nonce 0 */
  static const uint32_t init[16] = {0x61707865, 0x3320646e, 0x79622d32, 0x6b206574,
                                    0x74736f6f, 0x757a662d, 0x73207a7a, 0x00646565,
                                    0x01234567, 0x89abcdef, 0xfedcba98, 0x76543210};
  memcpy(r->in, init, sizeof init);
  r->off = sizeof r->buf;
}

static void fz_rng_block(fz_rng *r) {
  uint32_t x[16];
  memcpy(x, r->in, sizeof x);
  for (int i = 0; i < 10; i++) {
    FZ_QR(x[0], x[4], x[8], x[12]);
    FZ_QR(x[1], x[5], x[9], x[13]);
    FZ_QR(x[2], x[6], x[10], x[14]);
    FZ_QR(x[3], x[7], x[11], x[15]);
    FZ_QR(x[0], x[5], x[10], x[15]);
    FZ_QR(x[1], x[6], x[11], x[12]);
    FZ_QR(x[2], x[7], x[8], x[13]);
    FZ_QR(x[3], x[4], x[9], x[14]);
  }
  for (int i = 0; i < 16; i++) {
    uint32_t v = x[i] + r->in[i];
    r->buf[4 * i] = (uint8_t)v;
    r->buf[4 * i + 1] = (uint8_t)(v >> 8);
    r->buf[4 * i + 2] = (uint8_t)(v >> 16);
    r->buf[4 * i + 3] = (uint8_t)(v >> 24);
  }
  if (++r->in[12] == 0)
    r->in[13]++;
  r->off = 0;
}

static void fz_rand(void *ctx, uint8_t *buf, size_t len) {
  fz_rng *r = ctx;
  while (len) {
    if (r->off == sizeof r->buf)
      fz_rng_block(r);
    size_t n = sizeof r->buf - r->off;
    if (n > len)
      n = len;
    memcpy(buf, r->buf + r->off, n);
    r->off += n;
    buf += n;
    len -= n;
  }
}

static void fz_log(void *ctx, int level, const char *msg) {
  (void)ctx;
  if (level < DHT_LOG_ERROR || level > DHT_LOG_DEBUG || strlen(msg) >= 256)
    abort();
}

/* ---- per-input state ------------------------------------------------------ */

typedef struct fz_peer {
  bool ready;
  dht_box box;
  uint64_t nonce_ctr;     /* the last nonce this peer used */
  uint32_t txid[FZ_RING]; /* the engine's recent requests to it, newest first */
  int ntxid;
  bool has_token;
  uint8_t token[DHT_TOKEN_LEN]; /* the last token the engine gave it */
  /* every token the engine gave it (what can prove an address) */
  uint8_t tokens[FZ_MAX_TOKENS][DHT_TOKEN_LEN];
  int ntokens;
  bool tokens_lost; /* more than FZ_MAX_TOKENS: any token counts */
  /* its recent requests in (core and ECHO), with the socket they came in on:
   * the answer must leave by it */
  uint32_t in_txid[FZ_PATHS], in_local[FZ_PATHS];
  int nin;
} fz_peer;

/* The service's one timer. */
typedef struct fz_svc {
  dht_ts due; /* DHT_TS_NEVER when idle */
  dht_peer to;
  uint32_t txid;
  bool flag;
} fz_svc;

/* A request the service sent, as the harness expects it to end. */
enum { FZ_RQ_OPEN, FZ_RQ_ANSWERED, FZ_RQ_TIMEDOUT, FZ_RQ_CANCELLED, FZ_RQ_GONE };

typedef struct fz_req {
  uint32_t txid;
  uint8_t type, answer, state;
  int peer; /* whose key it went to */
  dht_peer to;
  uint64_t tag;
  int32_t aux;
  int key;   /* the sending key's handle, 0 our identity */
  int kid;   /* the identity under that handle */
  int tries; /* sends in all */
  int sends; /* datagrams of it written so far */
  dht_ts sent, soft_ms, timeout_ms;
  dht_tx tx;
  bool soft_seen;
  bool key_gone; /* its sending key was removed: it times out at once */
  int gen;
} fz_req;

/* A socket request (dht_sock_open) as the driver and the service see it. */
enum { FZ_SQ_PENDING, FZ_SQ_ANSWERED, FZ_SQ_VOID };

typedef struct fz_sockreq {
  int64_t id;
  int n, gen;
  int given; /* ids the engine took (at most n) */
  uint8_t family, policy, state;
  bool open_seen, opened_seen;
  uint32_t ids[FZ_SOCK_GIVE];
} fz_sockreq;

/* A socket the driver opened: held by the engine, released (its CLOSE event
 * due), closed by the driver, or never taken by the engine. */
enum { FZ_SK_TAKEN, FZ_SK_CLOSING, FZ_SK_CLOSED, FZ_SK_DRIVER };

typedef struct fz_sock {
  uint32_t id;
  uint8_t state;
} fz_sock;

/* A remote address: bytes it sent the engine, non-request bytes the engine
 * sent it, and whether the harness ever let it prove itself. */
typedef struct fz_amp {
  dht_addr a;
  uint64_t in, out;
  bool proven;
} fz_amp;

/* A request of the engine to a peer (core or the service's). */
typedef struct fz_outreq {
  uint32_t txid;
  int peer;
  dht_addr to;
} fz_outreq;

struct fz;

/* A service generation's hook context. */
typedef struct fz_gen {
  struct fz *h;
  int gen;
} fz_gen;

typedef struct fz {
  const fz_keys *k;
  dht *e;
  dht_settings set;
  fz_rng rng;
  dht_ts now, advanced;
  int64_t last_cmd, max_cmd;
  uint8_t cmd_seen[FZ_MAX_CMD / 8];  /* ids whose event the driver had */
  uint8_t cmd_owned[FZ_MAX_CMD / 8]; /* ids the service owns (dht_svc_own said 0) */
  uint8_t cmd_svc[FZ_MAX_CMD / 8];   /* ids whose event the service had */
  uint8_t cmd_must[FZ_MAX_CMD / 8];  /* owned lookups and pings: they must end */
  /* An input told the engine of a contact at a peer's address with another
   * key: datagrams to that address may be for that key. */
  bool aliased;
  fz_peer p[FZ_PEERS];
  bool server; /* the mode, as set */

  /* the service */
  fz_gen gens[FZ_GENS];
  int ngens;    /* generations added (ids 1..ngens) */
  int svc;      /* the live generation's id, 0 while removed */
  bool take;    /* on_event takes unsolicited events */
  int declined; /* unsolicited events it declined that the driver has not seen */
  fz_svc timer;
  fz_req req[FZ_MAX_REQS];
  int nreq;
  bool key_used[256];
  int key_kid[256];
  fz_sockreq sq[FZ_MAX_SOCKREQ];
  int nsq;
  fz_sock sock[FZ_MAX_SOCKS];
  int nsock;
  uint32_t next_sock;
  uint32_t svc_sock[FZ_MAX_SOCKS]; /* the sockets the service knows it holds */
  int nsvc_sock;

  /* the datagram being read */
  uint32_t in_local; /* the socket datagrams arrive on (SVC PATH) */
  bool reading;
  dht_path cur;
  size_t cur_len;
  int in_hook; /* inside on_msg, on_answer, on_timeout or the timer */
  int msgs;    /* on_msg calls */
  int answers; /* on_answer calls */
  bool expect; /* this read must reach on_answer for expect_txid */
  uint32_t expect_txid;
  bool got;

  /* amplification */
  fz_amp amp[FZ_MAX_AMP];
  int namp;
  fz_outreq outreq[FZ_MAX_OUTREQ];
  int noutreq;
  bool amp_off; /* the harness lost track: no verdicts */

  uint8_t pkt[DHT_MAX_PKT + 64];
  uint8_t body[DHT_MAX_BODY + 64];
} fz;

static fz_peer *fz_peer_get(fz *h, int i) {
  fz_peer *p = &h->p[i];
  if (p->ready)
    return p;
  /* room for the engine's key and every sending key, all precomputed */
  if (dht_box_init(&p->box, &h->k->peer[i], 16, fz_hkey, &dht_mem_libc) != 0)
    abort();
  memcpy(dht_cache_put(&p->box.keys, h->k->self.pk), h->k->entry[i], DHT_BOX_ENTRY_LEN);
  for (int j = 0; j < FZ_SKEYS; j++)
    memcpy(dht_cache_put(&p->box.keys, h->k->skey[j].pk), h->k->sentry[i][j], DHT_BOX_ENTRY_LEN);
  p->ready = true;
  return p;
}

/* Peer whose v4 or v6 address is a, or -1. */
static int fz_peer_at(const dht_addr *a) {
  return fc_peer_at(a, FZ_PEERS, fz_peer_addr);
}

static bool fz_bit(const uint8_t *bits, int64_t i) {
  return i > 0 && i < FZ_MAX_CMD && ((bits[i / 8] >> (i % 8)) & 1);
}

static void fz_set_bit(uint8_t *bits, int64_t i, bool on) {
  if (i <= 0 || i >= FZ_MAX_CMD)
    return;
  if (on)
    bits[i / 8] |= (uint8_t)(1u << (i % 8));
  else
    bits[i / 8] &= (uint8_t) ~(1u << (i % 8));
}

static void fz_stats(const fz *h, dht_stats *st) {
  dht_get_stats(h->e, st);
}

/* ---- amplification bookkeeping ------------------------------------------ */

/* The entry of address a (added if there is room), or NULL. */
static fz_amp *fz_amp_at(fz *h, const dht_addr *a) {
  for (int i = 0; i < h->namp; i++)
    if (dht_addr_eq(&h->amp[i].a, a))
      return &h->amp[i];
  if (h->namp == FZ_MAX_AMP)
    return NULL; /* never tracked: never judged */
  fz_amp *p = &h->amp[h->namp++];
  memset(p, 0, sizeof *p);
  p->a = *a;
  return p;
}

static void fz_amp_proven(fz *h, const dht_addr *a) {
  fz_amp *p = fz_amp_at(h, a);
  if (p)
    p->proven = true;
}

/* A datagram that is not a request went to a: the amplification oracle.
 * Until the harness let a prove itself (answered a request the engine sent
 * there, or echoed a token from there), the engine may send it at most
 * factor x what it received from it, ever. */
static void fz_amp_out(fz *h, const dht_addr *a, size_t n) {
  fz_amp *p = fz_amp_at(h, a);
  if (!p || h->amp_off)
    return;
  p->out += n;
  if (!p->proven && p->out > (uint64_t)h->set.amplification_factor * p->in)
    abort();
}

static void fz_outreq_add(fz *h, int peer, uint32_t txid, const dht_addr *to) {
  if (h->noutreq == FZ_MAX_OUTREQ) {
    h->amp_off = true; /* a later answer could prove an address we forgot */
    return;
  }
  fz_outreq *o = &h->outreq[h->noutreq++];
  o->txid = txid;
  o->peer = peer;
  o->to = *to;
}

static bool fz_has_token(const fz_peer *p, const uint8_t *body, size_t len) {
  for (size_t i = 0; i + DHT_TOKEN_LEN <= len; i++) {
    if (p->tokens_lost && i >= 2 && body[i - 2] == 0xc4 && body[i - 1] == DHT_TOKEN_LEN)
      return true;
    for (int t = 0; t < p->ntokens; t++)
      if (memcmp(body + i, p->tokens[t], DHT_TOKEN_LEN) == 0)
        return true;
  }
  return false;
}

/* Peer i's authentic body from address from is about to reach the engine:
 * what it may prove.  An answer (its txid is one of a request the engine
 * sent that peer) proves the address the request went to; a token the engine
 * gave the peer proves where it comes from.  Loose on purpose: it may prove
 * more than the engine accepts, never less. */
static void fz_note_proof(fz *h, int i, const uint8_t *body, size_t len, const dht_addr *from) {
  uint8_t type;
  uint32_t txid;
  if (dht_msg_peek(body, len, &type, &txid) == 0)
    for (int j = 0; j < h->noutreq; j++)
      if (h->outreq[j].peer == i && h->outreq[j].txid == txid)
        fz_amp_proven(h, &h->outreq[j].to);
  if (fz_has_token(&h->p[i], body, len))
    fz_amp_proven(h, from);
}

/* ---- what peers tell the engine -------------------------------------------- */

static void fz_note_contact(fz *h, const uint8_t pk[static DHT_PK_LEN], const dht_addr *a) {
  int i = fz_peer_at(a);
  if (i >= 0 && memcmp(pk, h->k->peer[i].pk, DHT_PK_LEN) != 0)
    h->aliased = true;
}

/* Peer i's body that authenticates is about to reach the engine on socket
 * local: note what its contacts will teach it, and remember a request's
 * socket (its answer must leave by it). */
static void fz_note_body(fz *h, int i, const uint8_t *body, size_t len, uint32_t local) {
  uint8_t type;
  uint32_t txid;
  if (dht_msg_peek(body, len, &type, &txid) == 0 &&
      (type == DHT_MSG_PING || type == DHT_MSG_FIND_NODE || type == DHT_MSG_GET ||
       type == DHT_MSG_PUT || type == FZ_SVC_ECHO)) {
    fz_peer *p = &h->p[i];
    fc_ring_push(p->in_txid, sizeof p->in_txid[0], FZ_PATHS, &p->nin);
    int n = 0;
    fc_ring_push(p->in_local, sizeof p->in_local[0], FZ_PATHS, &n);
    p->in_txid[0] = txid;
    p->in_local[0] = local;
  }
  dht_msg m;
  if (dht_msg_decode(&m, body, len) != 0)
    return;
  if (m.type != DHT_MSG_NODES && m.type != DHT_MSG_VALUE)
    return;
  for (int j = 0; j < m.ncontacts; j++)
    fz_note_contact(h, m.contacts[j].pk, &m.contacts[j].addr);
}

/* The same for a table snapshot (layout in dht_engine.c); loose on purpose:
 * it may see more than dht_load_table takes, never less. */
static void fz_note_snapshot(fz *h, const uint8_t *buf, size_t len) {
  if (len < 12 + 16)
    return;
  size_t p = 12, end = len - 16;
  while (p < end && end - p >= 1 + (size_t)DHT_PK_LEN + buf[p]) {
    dht_addr a;
    if (dht_addr_from_wire(&a, buf + p + 1 + DHT_PK_LEN, buf[p]) == 0)
      fz_note_contact(h, buf + p + 1, &a);
    p += 1 + DHT_PK_LEN + buf[p];
  }
}

/* dht_read_pkt on the current socket, with the bookkeeping every datagram
 * in gets. */
static void fz_read(fz *h, const dht_addr *from, const uint8_t *pkt, size_t n) {
  fz_amp *a = fz_amp_at(h, from);
  if (a)
    a->in += n;
  h->cur.local = h->in_local;
  h->cur.remote = *from;
  h->cur_len = n;
  h->reading = true;
  h->got = false;
  if (dht_read_pkt(h->e, &h->cur, pkt, n, h->now) != 0)
    abort();
  h->reading = false;
  if (h->expect && !h->got)
    abort(); /* a valid answer to an open request did not reach on_answer */
  h->expect = false;
}

/* ---- the service's model ---------------------------------------------------- */

static fz_req *fz_req_open(fz *h, uint32_t txid) {
  for (int i = 0; i < h->nreq; i++)
    if (h->req[i].state == FZ_RQ_OPEN && h->req[i].gen == h->ngens && h->req[i].txid == txid)
      return &h->req[i];
  return NULL;
}

static int fz_req_count(const fz *h) {
  int n = 0;
  for (int i = 0; i < h->nreq; i++)
    if (h->req[i].state == FZ_RQ_OPEN && h->req[i].gen == h->ngens)
      n++;
  return n;
}

static fz_sockreq *fz_sq_find(fz *h, int64_t id) {
  for (int i = 0; i < h->nsq; i++)
    if (h->sq[i].id == id)
      return &h->sq[i];
  return NULL;
}

static fz_sock *fz_sock_find(fz *h, uint32_t id) {
  for (int i = 0; i < h->nsock; i++)
    if (h->sock[i].id == id)
      return &h->sock[i];
  return NULL;
}

static int fz_sock_count(const fz *h, uint8_t state) {
  int n = 0;
  for (int i = 0; i < h->nsock; i++)
    if (h->sock[i].state == state)
      n++;
  return n;
}

static void fz_svc_sock_drop(fz *h, uint32_t id) {
  for (int i = 0; i < h->nsvc_sock; i++)
    if (h->svc_sock[i] == id) {
      h->svc_sock[i] = h->svc_sock[--h->nsvc_sock];
      return;
    }
}

/* The service closes socket id: the engine's answer must be the model's. */
static void fz_sock_close(fz *h, int svc, uint32_t id) {
  fz_sock *s = fz_sock_find(h, id);
  bool held = svc == h->svc && svc > 0 && s && s->state == FZ_SK_TAKEN;
  int rv = dht_sock_close(h->e, svc, id);
  if (rv != (held ? 0 : DHT_ERR_NOTFOUND))
    abort();
  if (held) {
    s->state = FZ_SK_CLOSING;
    fz_svc_sock_drop(h, id);
  }
}

/* The hook's harness, after checking that the hook may run at all: only the
 * live generation's hooks are ever called, only with our engine, never
 * later than the driver's clock. */
static fz *fz_hook(void *ctx, const dht *e, dht_ts now) {
  fz_gen *g = ctx;
  fz *h = g->h;
  if (e != h->e || g->gen != h->ngens || h->svc == 0 || now > h->now)
    abort();
  return h;
}

/* ---- engine output -------------------------------------------------------- */

/* Checks of a command's event, whoever gets it. */
static void fz_check_cmd_event(fz *h, const dht_event *ev) {
  if (ev->status > 0 || ev->status < DHT_ERR_INTERNAL)
    abort();
  if (ev->cmd <= 0 || ev->cmd > h->max_cmd)
    abort(); /* one event per command, for a command that was issued */
  if (ev->type == DHT_EV_LOOKUP) {
    const dht_lookup_result *r = ev->u.lookup;
    if (!r) {
      if (ev->status == 0)
        abort(); /* success carries a result */
      return;
    }
    if (r->ncontacts < 0 || r->ncontacts > DHT_K_MAX || r->ncontacts > h->set.k)
      abort();
    for (int i = 0; i < r->ncontacts; i++)
      if (r->contacts[i].addr.family != DHT_AF_INET && r->contacts[i].addr.family != DHT_AF_INET6)
        abort();
    if (r->has_record && r->record.naddrs > DHT_RECORD_MAX_ADDRS)
      abort();
  } else if (ev->type == DHT_EV_PUT) {
    if (ev->u.put.acks < 0 || ev->u.put.acks > ev->u.put.asked || ev->u.put.asked > h->set.k)
      abort();
  } else if (ev->type != DHT_EV_BOOTSTRAP && ev->type != DHT_EV_PING) {
    abort();
  }
}

static void fz_sock_reply(fz *h, fz_sockreq *q, uint8_t policy);

/* The driver's side of the socket events. */
static void fz_driver_sock_event(fz *h, const dht_event *ev) {
  if (ev->type == DHT_EV_SOCK_OPEN) {
    fz_sockreq *q = fz_sq_find(h, ev->cmd);
    if (!q || q->open_seen || q->state != FZ_SQ_PENDING || ev->u.sock.n != q->n ||
        ev->u.sock.family != q->family || ev->status != 0)
      abort();
    q->open_seen = true;
    if (!(q->policy & 0x04))
      fz_sock_reply(h, q, q->policy);
    return;
  }
  /* DHT_EV_SOCK_CLOSE: only for a socket the engine took and released */
  fz_sock *s = fz_sock_find(h, ev->u.sock.id);
  if (ev->cmd != 0 || !s || s->state != FZ_SK_CLOSING)
    abort();
  s->state = FZ_SK_CLOSED;
}

static void fz_check_event(fz *h, const dht_event *ev) {
  switch (ev->type) {
  case DHT_EV_ADDR_SEEN:
    if (ev->cmd != 0 || ev->status != 0)
      abort();
    /* with the service plugged in, the driver sees only what it declined */
    if (h->svc) {
      if (h->declined <= 0)
        abort();
      h->declined--;
    }
    return;
  case DHT_EV_SOCK_OPEN:
  case DHT_EV_SOCK_CLOSE:
    fz_driver_sock_event(h, ev);
    return;
  case DHT_EV_SOCK_OPENED:
    abort(); /* the service's, never the driver's */
  default:
    break;
  }
  fz_check_cmd_event(h, ev);
  if (fz_bit(h->cmd_seen, ev->cmd) || fz_bit(h->cmd_owned, ev->cmd))
    abort(); /* twice, or the service's */
  fz_set_bit(h->cmd_seen, ev->cmd, true);
}

/* The peer side: what peer i makes of a core message from the engine that
 * went out on path with pi. */
static void fz_peer_take(fz *h, int i, const dht_msg *m, const dht_path *path,
                         const dht_pkt_info *pi) {
  fz_peer *p = &h->p[i];
  switch (m->type) {
  case DHT_MSG_PING:
  case DHT_MSG_FIND_NODE:
  case DHT_MSG_GET:
  case DHT_MSG_PUT:
    /* a request says what mode we are in */
    if (((m->flags & DHT_MSGF_SERVER) != 0) != h->server)
      abort();
    fc_ring_push(p->txid, sizeof p->txid[0], FZ_RING, &p->ntxid);
    p->txid[0] = m->txid;
    fz_outreq_add(h, i, m->txid, &path->remote);
    return;
  case DHT_MSG_NODES:
  case DHT_MSG_VALUE:
    memcpy(p->token, m->token, DHT_TOKEN_LEN);
    p->has_token = true;
    if (p->ntokens < FZ_MAX_TOKENS)
      memcpy(p->tokens[p->ntokens++], m->token, DHT_TOKEN_LEN);
    else
      p->tokens_lost = true;
    break;
  default:
    break;
  }
  if (pi->ttl != 0)
    abort(); /* only a service's datagram asks for a TTL */
}

/* An answer (core, or the service's ECHOED) to peer i with txid must leave by
 * the socket the request came in on. */
static void fz_check_path(fz *h, int i, uint32_t txid, const dht_path *path) {
  const fz_peer *p = &h->p[i];
  bool known = false;
  for (int j = 0; j < p->nin; j++) {
    if (p->in_txid[j] != txid)
      continue;
    if (p->in_local[j] == path->local)
      return;
    known = true;
  }
  if (known)
    abort();
}

/* The service's request, as written: it must be one that is open, to where
 * it was sent, by its socket, with its TTL, under its key, at most tries
 * times. */
static void fz_check_svc_req(fz *h, int i, uint8_t type, uint32_t txid, const dht_path *path,
                             const dht_pkt_info *pi, const uint8_t *hdr_pk) {
  fz_req *q = fz_req_open(h, txid);
  if (!q || q->type != type || q->peer != i || !dht_addr_eq(&q->to.addr, &path->remote) ||
      path->local != q->tx.local || pi->ttl != q->tx.ttl || ++q->sends > q->tries)
    abort();
  const uint8_t *want = q->key ? h->k->skey[q->kid].pk : h->k->self.pk;
  if (memcmp(hdr_pk, want, DHT_PK_LEN) != 0 && (fz_strict || !q->key))
    abort(); /* not sealed under the key it was sent under */
  fz_outreq_add(h, i, txid, &path->remote);
}

/* Opens a datagram from the engine as peer i, under the key its header
 * names; the body goes to h->body.  Returns its length, or -1. */
static dht_ssize fz_peer_open(fz *h, int i, const uint8_t *pkt, size_t len) {
  fz_peer *p = fz_peer_get(h, i);
  const uint8_t *key = dht_box_key(&p->box, pkt + 1);
  if (!key)
    abort();
  return dht_box_open(key, pkt, len, h->body, sizeof h->body);
}

/* Peer i opened a datagram (body in h->body): the checks on what it says.
 * Returns whether it is a request. */
static bool fz_peer_got(fz *h, int i, size_t n, const dht_path *path, const dht_pkt_info *pi) {
  const uint8_t *hdr_pk = h->pkt + 1;
  bool ours = memcmp(hdr_pk, h->k->self.pk, DHT_PK_LEN) == 0;
  dht_msg m;
  int rv = dht_msg_decode(&m, h->body, n);
  if (rv == DHT_ERR_NOTFOUND) {
    /* not a core type: only our service sends those */
    uint8_t type;
    uint32_t txid;
    if (dht_msg_peek(h->body, n, &type, &txid) != 0 || type < FZ_SVC_LO || type > FZ_SVC_HI)
      abort();
    if (type == FZ_SVC_REQ || type == FZ_SVC_REQ2) {
      fz_check_svc_req(h, i, type, txid, path, pi, hdr_pk);
      return true;
    }
    if (!ours)
      abort(); /* only requests travel under a sending key */
    if (type == FZ_SVC_ECHOED)
      fz_check_path(h, i, txid, path);
    return false;
  }
  if (rv != 0 || !ours)
    abort(); /* the engine sent a body a peer must drop, or under a sending key */
  fz_peer_take(h, i, &m, path, pi);
  if (m.type == DHT_MSG_PONG || m.type == DHT_MSG_NODES || m.type == DHT_MSG_VALUE ||
      m.type == DHT_MSG_ACK)
    fz_check_path(h, i, m.txid, path);
  return fz_is_request(m.type);
}

static bool fz_known_sender(const fz *h, const uint8_t *pk) {
  if (memcmp(pk, h->k->self.pk, DHT_PK_LEN) == 0)
    return true;
  for (int j = 0; j < FZ_SKEYS; j++)
    if (memcmp(pk, h->k->skey[j].pk, DHT_PK_LEN) == 0)
      return true;
  return false;
}

static void fz_check_model(fz *h);
static void fz_req_track(fz *h, int peer, uint8_t type, uint32_t txid, const dht_peer *to,
                         const dht_req_opts *o);
static void fz_svc_remove(fz *h);

static void fz_drain(fz *h) {
  dht_path path;
  dht_pkt_info pi;
  dht_ssize n;
  while ((n = dht_write_pkt(h->e, &path, &pi, h->pkt, DHT_MAX_PKT, h->now)) != 0) {
    fc_check_dgram(n, &path.remote);
    if (h->pkt[0] != DHT_VERSION || !fz_known_sender(h, h->pkt + 1))
      abort();
    int i = fz_peer_at(&path.remote);
    bool request = true; /* what no peer can open went to a key the engine learnt */
    dht_ssize bl = i >= 0 ? fz_peer_open(h, i, h->pkt, (size_t)n) : -1;
    if (bl >= 0) {
      request = fz_peer_got(h, i, (size_t)bl, &path, &pi);
    } else {
      if (i >= 0 && !h->aliased)
        abort(); /* to a peer's address, yet not under its key */
      /* a peer's key learnt at another address, or an alias: try them all */
      for (int j = 0; j < FZ_PEERS; j++)
        if (j != i && (bl = fz_peer_open(h, j, h->pkt, (size_t)n)) >= 0) {
          request = fz_peer_got(h, j, (size_t)bl, &path, &pi);
          break;
        }
    }
    if (!request)
      fz_amp_out(h, &path.remote, (size_t)n);
  }
  dht_event ev;
  while (dht_poll_event(h->e, &ev) == 0)
    fz_check_event(h, &ev);
  fz_check_model(h);
}

/* After a drain: the engine agrees with the model. */
static void fz_check_model(fz *h) {
  dht_stats st;
  fz_stats(h, &st);
  if (st.out_queue != 0 || st.events_queued != 0 || st.rt_size < 0)
    abort();
  if (h->svc && dht_svc_pending(h->e, h->svc) != fz_req_count(h))
    abort();
  for (int g = 1; g <= h->ngens; g++)
    if (g != h->svc && dht_svc_pending(h->e, g) != 0)
      abort();                        /* a removed service keeps nothing */
  bool lost = st.drop_event_full > 0; /* the events' queue overflowed once */
  if (h->declined != 0 && !lost)
    abort(); /* a declined event never reached the driver */
  for (int i = 0; i < h->nsq; i++) {
    const fz_sockreq *q = &h->sq[i];
    /* the driver saw every request, the service every answer */
    if ((!q->open_seen ||
         (q->state == FZ_SQ_ANSWERED && q->gen == h->ngens && h->svc && !q->opened_seen)) &&
        (fz_strict || !lost))
      abort();
  }
  if (fz_sock_count(h, FZ_SK_CLOSING) != 0 && (fz_strict || !lost))
    abort(); /* the engine let a socket go and the driver was not told */
}

static void fz_issued(fz *h, int64_t id) {
  if (id <= 0) {
    if (id < 0 && !dht_strerror((int)id))
      abort();
    return;
  }
  if (id <= h->max_cmd)
    abort(); /* ids only grow */
  h->last_cmd = h->max_cmd = id;
}

/* [type, txid, bin payload] into out; returns the length. */
static size_t fz_svc_body(uint8_t *out, size_t cap, uint8_t type, uint32_t txid, const uint8_t *p,
                          size_t n) {
  dht_wire_w w;
  dht_wire_w_init(&w, out, cap);
  dht_wire_w_array(&w, 3);
  dht_wire_w_uint(&w, type);
  dht_wire_w_uint(&w, txid);
  dht_wire_w_bin(&w, p, n);
  if (w.err)
    abort();
  return w.len;
}

/* ---- the service ------------------------------------------------------------ */

static void fz_svc_send(fz *h, const dht_peer *to, const dht_tx *tx, const uint8_t *body,
                        size_t len) {
  int rv = dht_svc_send(h->e, to, tx, body, len);
  if (rv != 0 && rv != DHT_ERR_FULL)
    abort();
}

/* Checks common to on_msg and on_answer: in describes the datagram being
 * read. */
static void fz_check_in(fz *h, const dht_msg_in *in, dht_ts now) {
  uint8_t type;
  uint32_t txid;
  if (!h->reading || now != h->now || in->local != h->cur.local ||
      !dht_addr_eq(&in->from.addr, &h->cur.remote) || in->wire_len != h->cur_len ||
      in->len + DHT_OVERHEAD != in->wire_len ||
      dht_msg_peek(in->body, in->len, &type, &txid) != 0 || type != in->type || txid != in->txid ||
      in->type < FZ_SVC_LO || in->type > FZ_SVC_HI)
    abort();
}

static void fz_svc_msg_run(void *ctx, dht *e, const dht_msg_in *in, dht_ts now) {
  fz *h = fz_hook(ctx, e, now);
  const dht_peer *from = &in->from;
  dht_wire_r r;
  dht_wire_w w;
  uint8_t out[DHT_MAX_BODY];
  uint32_t n;
  uint64_t type, txid, ms;
  const uint8_t *p;
  size_t pl;
  bool flag = false;

  fz_check_in(h, in, now);
  h->msgs++;
  /* a peer cannot start a conversation with a sending key */
  if (in->key != 0)
    abort();
  /* an answer to one of our open requests goes to on_answer */
  const fz_req *q = fz_req_open(h, in->txid);
  if (q && q->answer == in->type && q->key == in->key &&
      memcmp(q->to.pk, in->from.pk, DHT_PK_LEN) == 0)
    abort();

  dht_wire_r_init(&r, in->body, in->len);
  if (dht_wire_r_array_max(&r, 8, &n) || n < 2 || dht_wire_r_uint(&r, 0xff, &type) ||
      dht_wire_r_uint(&r, UINT32_MAX, &txid))
    return;
  switch (type) {
  case FZ_SVC_ECHO: {
    if (n != 3 || dht_wire_r_bin(&r, 0, DHT_MAX_BODY, &p, &pl) || dht_wire_r_end(&r))
      return;
    dht_wire_w_init(&w, out, sizeof out);
    dht_wire_w_array(&w, 3);
    dht_wire_w_uint(&w, FZ_SVC_ECHOED);
    dht_wire_w_uint(&w, txid);
    dht_wire_w_bin(&w, p, pl);
    /* the answer leaves by the socket the request came in on */
    dht_tx tx = {.local = in->local};
    if (w.err == 0)
      fz_svc_send(h, from, &tx, out, w.len);
    else if (w.err != DHT_ERR_NOBUF || w.len > sizeof out)
      abort();
    return;
  }
  case FZ_SVC_TIMER: {
    if (n != 4)
      return;
    int nil = dht_wire_r_nil(&r);
    if (nil < 0 || (nil == 0 && dht_wire_r_bool(&r, &flag)) || dht_wire_r_uint(&r, 60000, &ms) ||
        dht_wire_r_end(&r))
      return;
    h->timer.due = now + (dht_ts)ms + 1;
    h->timer.to = *from;
    h->timer.txid = (uint32_t)txid;
    h->timer.flag = flag;
    return;
  }
  case FZ_SVC_ASK: {
    if (n != 3 || dht_wire_r_uint(&r, 4, &ms) || dht_wire_r_end(&r))
      return;
    int peer = -1;
    for (int i = 0; i < FZ_PEERS; i++)
      if (memcmp(from->pk, h->k->peer[i].pk, DHT_PK_LEN) == 0)
        peer = i;
    if (peer < 0)
      abort(); /* only the peers can seal */
    for (uint64_t i = 0; i < ms; i++) {
      /* from a hook: it only queues; the out queue may be full */
      dht_req_opts o = {.answer = FZ_SVC_ANS, .tries = 2, .timeout_ms = 700, .tag = 6};
      uint32_t x = dht_svc_txid(e);
      size_t len = fz_svc_body(out, sizeof out, FZ_SVC_REQ, x, NULL, 0);
      int rv = dht_svc_request(e, h->svc, from, out, len, &o, now);
      if (rv == 0)
        fz_req_track(h, peer, FZ_SVC_REQ, x, from, &o);
      else if (rv != DHT_ERR_FULL)
        abort();
    }
    return;
  }
  case FZ_SVC_FIND: {
    bool quit = false;
    if (n < 3 || n > 5 || dht_wire_r_bin(&r, DHT_ID_LEN, DHT_ID_LEN, &p, &pl) ||
        (n >= 4 && dht_wire_r_bool(&r, &flag)) || (n == 5 && dht_wire_r_bool(&r, &quit)) ||
        dht_wire_r_end(&r))
      return;
    /* commands may be called from a hook: they only queue; with the flag,
     * the service owns it at once */
    int64_t id = dht_find_node(e, p, now);
    fz_issued(h, id);
    if (flag && id > 0) {
      int rv = dht_svc_own(e, h->svc, id);
      dht_stats st;
      fz_stats(h, &st);
      if (rv != 0 && !(rv == DHT_ERR_NOTFOUND && st.drop_event_full > 0))
        abort();
      fz_set_bit(h->cmd_owned, id, rv == 0);
      fz_set_bit(h->cmd_must, id, rv == 0);
    }
    /* with quit, the service unplugs itself from its own hook: what waits
     * for it (the owned event) goes to the driver */
    if (quit)
      fz_svc_remove(h);
    return;
  }
  default:
    return;
  }
}

/* The hooks run with in_hook set (see fz_svc_event). */
static void fz_svc_msg(void *ctx, dht *e, const dht_msg_in *in, dht_ts now) {
  fz_gen *g = ctx;
  g->h->in_hook++;
  fz_svc_msg_run(ctx, e, in, now);
  g->h->in_hook--;
}

static void fz_svc_answer_run(void *ctx, dht *e, const dht_req *req, const dht_msg_in *in,
                              dht_ts now) {
  fz *h = fz_hook(ctx, e, now);
  fz_check_in(h, in, now);
  h->answers++;
  fz_req *q = fz_req_open(h, req->txid);
  /* one end per request, for one that is open; everything handed back as
   * given; the answer of the right type, from the right key, to the right
   * key */
  if (!q || req->type != q->type || req->tag != q->tag || req->aux != q->aux ||
      req->sent != q->sent || memcmp(req->to.pk, q->to.pk, DHT_PK_LEN) != 0 ||
      !dht_addr_eq(&req->to.addr, &q->to.addr) || in->type != q->answer || in->txid != q->txid ||
      in->key != q->key || memcmp(in->from.pk, q->to.pk, DHT_PK_LEN) != 0)
    abort();
  q->state = FZ_RQ_ANSWERED;
  if (h->expect && q->txid == h->expect_txid)
    h->got = true;
}

static void fz_svc_answer(void *ctx, dht *e, const dht_req *req, const dht_msg_in *in, dht_ts now) {
  fz_gen *g = ctx;
  g->h->in_hook++;
  fz_svc_answer_run(ctx, e, req, in, now);
  g->h->in_hook--;
}

static void fz_svc_timeout_run(void *ctx, dht *e, const dht_req *req, bool soft, dht_ts now) {
  fz *h = fz_hook(ctx, e, now);
  fz_req *q = fz_req_open(h, req->txid);
  if (h->reading || now != h->now || !q || req->type != q->type || req->tag != q->tag ||
      req->aux != q->aux || req->sent != q->sent || memcmp(req->to.pk, q->to.pk, DHT_PK_LEN) != 0)
    abort();
  if (soft) {
    if (q->soft_ms <= 0 || q->soft_seen || now < q->sent + q->soft_ms)
      abort();
    q->soft_seen = true;
    return;
  }
  if (q->key_gone) { /* ended with its key: early, with tries left */
    q->state = FZ_RQ_TIMEDOUT;
    return;
  }
  dht_ts per_try = q->timeout_ms > 0 ? q->timeout_ms : h->set.rpc_timeout_min_ms;
  if (now < q->sent + q->tries * per_try)
    abort(); /* gave up early */
  dht_stats st;
  fz_stats(h, &st);
  if (q->sends != q->tries && st.drop_out_full == 0 && st.drop_badkey == 0)
    abort(); /* a try was never sent */
  q->state = FZ_RQ_TIMEDOUT;
}

static void fz_svc_timeout(void *ctx, dht *e, const dht_req *req, bool soft, dht_ts now) {
  fz_gen *g = ctx;
  g->h->in_hook++;
  fz_svc_timeout_run(ctx, e, req, soft, now);
  g->h->in_hook--;
}

static bool fz_svc_event(void *ctx, dht *e, const dht_event *ev, dht_ts now) {
  fz *h = fz_hook(ctx, e, now);
  if (h->in_hook)
    abort(); /* events wait for a safe point, never inside another hook */
  if (ev->type == DHT_EV_SOCK_OPENED) {
    fz_sockreq *q = fz_sq_find(h, ev->cmd);
    if (!q || q->gen != h->ngens || q->state != FZ_SQ_ANSWERED || q->opened_seen ||
        ev->u.sock.n != q->given || ev->u.sock.family != q->family ||
        ev->status != (q->given > 0 ? 0 : DHT_ERR_FULL) || (q->given > 0 && !ev->u.sock.ids))
      abort();
    q->opened_seen = true;
    for (int i = 0; i < q->given; i++) {
      if (ev->u.sock.ids[i] != q->ids[i])
        abort();
      fz_sock *s = fz_sock_find(h, q->ids[i]);
      if (!s || s->state != FZ_SK_TAKEN)
        abort();
      h->svc_sock[h->nsvc_sock++] = q->ids[i];
    }
    /* policy bit 3: give the first one back at once, from the hook */
    if ((q->policy & 0x08) && q->given > 0)
      fz_sock_close(h, h->svc, q->ids[0]);
    return false;
  }
  if (ev->cmd > 0) {
    /* an owned command's one event */
    fz_check_cmd_event(h, ev);
    if (!fz_bit(h->cmd_owned, ev->cmd) || fz_bit(h->cmd_svc, ev->cmd) ||
        fz_bit(h->cmd_seen, ev->cmd))
      abort();
    fz_set_bit(h->cmd_svc, ev->cmd, true);
    return false;
  }
  /* a stranger to check: taken (and inserted at once, as a service that
   * proved it reachable would) or left to the engine's verify PING */
  if (ev->type == DHT_EV_CANDIDATE) {
    uint8_t id[DHT_ID_LEN];
    dht_id_from_pk(id, ev->u.candidate.peer.pk);
    if (ev->cmd != 0 || memcmp(id, ev->u.candidate.id, DHT_ID_LEN) != 0 ||
        memcmp(ev->u.candidate.peer.pk, dht_self_pk(e), DHT_PK_LEN) == 0)
      abort();
    if (!h->take)
      return false;
    int rv = dht_svc_add_contact(e, &ev->u.candidate.peer, now);
    if (rv != 0 && rv != DHT_ERR_FULL && rv != DHT_ERR_INVAL)
      abort();
    return true;
  }
  /* unsolicited: offered first; the driver gets it when we decline */
  if (ev->type != DHT_EV_ADDR_SEEN || ev->cmd != 0)
    abort();
  if (!h->take)
    h->declined++;
  return h->take;
}

static dht_ts fz_svc_expiry(void *ctx) {
  const fz_gen *g = ctx;
  return g->h->timer.due;
}

static void fz_svc_timer_run(void *ctx, dht *e, dht_ts now) {
  fz *h = fz_hook(ctx, e, now);
  if (now < h->timer.due || now != h->now)
    abort(); /* called before it was due */
  uint8_t out[16];
  dht_wire_w w;
  dht_wire_w_init(&w, out, sizeof out);
  dht_wire_w_array(&w, 4);
  dht_wire_w_uint(&w, FZ_SVC_RING);
  dht_wire_w_uint(&w, h->timer.txid);
  dht_wire_w_bool(&w, h->timer.flag);
  dht_wire_w_nil(&w);
  if (w.err)
    abort();
  h->timer.due = DHT_TS_NEVER;
  fz_svc_send(h, &h->timer.to, NULL, out, w.len);
}

static void fz_svc_timer(void *ctx, dht *e, dht_ts now) {
  fz_gen *g = ctx;
  g->h->in_hook++;
  fz_svc_timer_run(ctx, e, now);
  g->h->in_hook--;
}

/* Plugs in a new generation of the service.  Its id is the next slot: a
 * removed service's slot stays. */
static void fz_svc_add(fz *h) {
  int want = h->ngens < h->set.max_services ? h->ngens + 1 : DHT_ERR_FULL;
  fz_gen spare; /* past FZ_GENS the engine must refuse: it never keeps this */
  fz_gen *g = h->ngens < FZ_GENS ? &h->gens[h->ngens] : &spare;
  g->h = h;
  g->gen = h->ngens + 1;
  dht_service svc = {.type_lo = FZ_SVC_LO,
                     .type_hi = FZ_SVC_HI,
                     .ctx = g,
                     .on_msg = fz_svc_msg,
                     .on_answer = fz_svc_answer,
                     .on_timeout = fz_svc_timeout,
                     .on_event = fz_svc_event,
                     .get_expiry = fz_svc_expiry,
                     .handle_expiry = fz_svc_timer};
  int id = dht_service_add(h->e, &svc);
  if (id != want)
    abort();
  if (id < 0)
    return;
  h->ngens = id;
  h->svc = id;
  h->timer.due = DHT_TS_NEVER;
  h->nsvc_sock = 0;
  svc.type_lo = FZ_SVC_HI; /* overlaps: refused */
  svc.type_hi = FZ_SVC_HI + 1;
  if (dht_service_add(h->e, &svc) != DHT_ERR_INVAL)
    abort();
  svc.type_lo = DHT_MSG_PONG; /* the engine's range: refused */
  if (dht_service_add(h->e, &svc) != DHT_ERR_INVAL)
    abort();
}

/* Unplugs the live generation: nothing of it runs again; its requests are
 * forgotten, its owned commands' events go to the driver, its sockets are
 * closed (the driver sees each close) and its socket requests die. */
static void fz_svc_remove(fz *h) {
  if (dht_service_remove(h->e, h->svc) != 0)
    abort();
  for (int i = 0; i < h->nreq; i++)
    if (h->req[i].state == FZ_RQ_OPEN)
      h->req[i].state = FZ_RQ_GONE;
  for (int i = 0; i < h->nsq; i++)
    if (h->sq[i].state == FZ_SQ_PENDING)
      h->sq[i].state = FZ_SQ_VOID;
  for (int i = 0; i < h->nsock; i++)
    if (h->sock[i].state == FZ_SK_TAKEN)
      h->sock[i].state = FZ_SK_CLOSING;
  for (int64_t c = 1; c <= h->max_cmd && c < FZ_MAX_CMD; c++)
    if (fz_bit(h->cmd_owned, c) && !fz_bit(h->cmd_svc, c)) {
      fz_set_bit(h->cmd_owned, c, false); /* the driver's now */
      fz_set_bit(h->cmd_must, c, false);
    }
  h->nsvc_sock = 0;
  h->timer.due = DHT_TS_NEVER;
  h->svc = 0;
  h->take = false;
  if (dht_service_remove(h->e, h->ngens) != 0 || dht_service_remove(h->e, h->ngens + 1) == 0)
    abort(); /* again: harmless; an id never given: refused */
}

/* ---- ops ------------------------------------------------------------------ */

/* Length of the uint or int (0xcc-0xd3) at p, or 0. */
static size_t fz_skip_uint(const uint8_t *p, size_t n) {
  return fc_skip_uint(p, n, 0xd3);
}

/* Replaces the txid of [type, txid, ...] in body (len, room for 4 more bytes)
 * by v.  Returns the new length (len when the head does not parse). */
static size_t fz_patch_txid(uint8_t *body, size_t len, uint32_t v) {
  size_t p = fc_array_head(body, len);
  if (!p)
    return len;
  size_t t = fz_skip_uint(body + p, len - p);
  if (!t)
    return len;
  p += t;
  size_t x = fz_skip_uint(body + p, len - p);
  if (!x)
    return len;
  return fc_patch_u32(body, len, p, x, v);
}

/* Overwrites the first bin 16 (c4 10 + 16 bytes) of body with tok. */
static void fz_patch_token(uint8_t *body, size_t len, const uint8_t tok[static DHT_TOKEN_LEN]) {
  for (size_t i = 0; i + 2 + DHT_TOKEN_LEN <= len; i++) {
    if (body[i] == 0xc4 && body[i + 1] == DHT_TOKEN_LEN) {
      memcpy(body + i + 2, tok, DHT_TOKEN_LEN);
      return;
    }
  }
}

/* Peer i seals body for the key pk (the engine's, or a sending key) with its
 * next nonce (its previous one if replay) into h->pkt; returns the length. */
static size_t fz_seal(fz *h, int i, const uint8_t pk[static DHT_PK_LEN], const uint8_t *body,
                      size_t len, bool replay) {
  fz_peer *p = fz_peer_get(h, i);
  if (!replay || p->nonce_ctr == 0)
    p->nonce_ctr++;
  return fc_seal(&p->box, (uint8_t)(0xf0 | i), p->nonce_ctr, pk, body, len, h->pkt, sizeof h->pkt);
}

/* BODY and TAMPER: peer sel seals body; with tamper, one byte is flipped. */
static void fz_deliver(fz *h, uint8_t sel, const uint8_t *body, size_t len, bool tamper, size_t off,
                       uint8_t mask) {
  int i = sel & FZ_SEL_PEER;
  fz_peer *p = fz_peer_get(h, i);
  uint8_t b[DHT_MAX_BODY + 8];
  if (len > DHT_MAX_BODY)
    return; /* cannot be sealed: the size check is RAW's business */
  memcpy(b, body, len);
  if (sel & FZ_SEL_TXID) {
    int r = (sel >> FZ_SEL_RING_SHIFT) & 3;
    if (r < p->ntxid)
      len = fz_patch_txid(b, len, p->txid[r]);
    if (len > DHT_MAX_BODY)
      return;
  }
  if ((sel & FZ_SEL_TOKEN) && p->has_token)
    fz_patch_token(b, len, p->token);

  size_t n = fz_seal(h, i, h->k->self.pk, b, len, (sel & FZ_SEL_REPLAY) != 0);
  dht_addr from;
  fz_peer_addr(i, (sel & FZ_SEL_V6) != 0, &from);
  dht_stats before, after;
  int msgs = h->msgs, answers = h->answers;
  if (tamper) {
    h->pkt[off % n] ^= mask ? mask : 0x80;
    fz_stats(h, &before);
  } else {
    fz_note_body(h, i, b, len, h->in_local);
    fz_note_proof(h, i, b, len, &from);
  }
  fz_read(h, &from, h->pkt, n);
  if (tamper) {
    /* a changed datagram must not authenticate */
    fz_stats(h, &after);
    if (after.drop_replay != before.drop_replay || after.drop_malformed != before.drop_malformed ||
        after.drop_unknown_type != before.drop_unknown_type ||
        after.drop_unknown_txid != before.drop_unknown_txid ||
        after.requests_in != before.requests_in || after.replies_in != before.replies_in ||
        h->msgs != msgs || h->answers != answers)
      abort();
  }
}

static void fz_raw(fz *h, const uint8_t *data, size_t len) {
  dht_addr a;
  fz_addr_a(&a);
  /* a raw datagram can still be a valid one (a seed may hold one), to our
   * identity or to a sending key */
  if (len >= DHT_OVERHEAD && len <= DHT_MAX_PKT) {
    for (int i = 0; i < FZ_PEERS; i++) {
      if (memcmp(data + 1, h->k->peer[i].pk, DHT_PK_LEN) != 0)
        continue;
      for (int j = -1; j < FZ_SKEYS; j++) {
        const uint8_t *ent = j < 0 ? h->k->entry[i] : h->k->sentry[i][j];
        dht_ssize n = dht_box_open(ent, data, len, h->body, sizeof h->body);
        if (n < 0)
          continue;
        if (j < 0)
          fz_note_body(h, i, h->body, (size_t)n, h->in_local);
        fz_note_proof(h, i, h->body, (size_t)n, &a);
      }
    }
  }
  fz_read(h, &a, data, len);
}

static void fz_expire(void *ctx) {
  fz *h = ctx;
  if (dht_handle_expiry(h->e, h->now) != 0)
    abort();
  if (dht_get_expiry(h->e) <= h->now)
    abort(); /* a driver would spin */
  fz_drain(h);
}

static void fz_time(fz *h, const uint8_t *p, size_t n) {
  dht_ts ms = fc_time_ms(p, n, 1, FZ_MAX_ADVANCE, &h->advanced);
  /* as a driver would: wake at each expiry on the way */
  fc_run_clock(h->e, &h->now, h->now + ms, FZ_EXPIRY_STEPS, fz_expire, NULL, h);
}

static void fz_target(fz *h, const uint8_t *p, size_t n, uint8_t t[static DHT_ID_LEN]) {
  if (n >= DHT_ID_LEN) {
    memcpy(t, p, DHT_ID_LEN);
    return;
  }
  if (n == 0) {
    memcpy(t, h->k->self_id, DHT_ID_LEN);
    return;
  }
  /* near a peer's ID (or ours): the bytes after the first perturb its tail */
  memcpy(t, (p[0] & 4) ? h->k->self_id : h->k->peer_id[p[0] & 3], DHT_ID_LEN);
  for (size_t i = 1; i < n; i++)
    t[DHT_ID_LEN - i] ^= p[i];
}

static void fz_save(fz *h) {
  size_t need = 0;
  uint8_t small[8];
  if (dht_save_table(h->e, small, 0, &need) != DHT_ERR_NOBUF || need < 12 + 16)
    abort();
  uint8_t *buf = malloc(need);
  if (!buf)
    abort();
  size_t need2 = 0;
  dht_ssize n = dht_save_table(h->e, buf, need, &need2);
  if (n < 0 || (size_t)n != need || need2 != need)
    abort();
  /* a snapshot we wrote always loads */
  if (dht_load_table(h->e, buf, (size_t)n, h->now) < 0)
    abort();
  free(buf);
}

static void fz_cmd(fz *h, const uint8_t *p, size_t n) {
  uint8_t t[DHT_ID_LEN];
  uint8_t b1 = n >= 2 ? p[1] : 0;
  int which = n ? p[0] % FZ_CMD_COUNT : FZ_CMD_BOOTSTRAP;
  const uint8_t *arg = n ? p + 1 : p;
  size_t narg = n ? n - 1 : 0;

  switch (which) {
  case FZ_CMD_BOOTSTRAP: {
    dht_peer peers[FZ_PEERS];
    fc_peer_list(peers, FZ_PEERS, h->k->peer, fz_peer_addr, b1);
    fz_issued(h, dht_bootstrap(h->e, peers, (b1 & 0x10) ? 0 : FZ_PEERS, h->now));
    break;
  }
  case FZ_CMD_FIND:
    fz_target(h, arg, narg, t);
    fz_issued(h, dht_find_node(h->e, t, h->now));
    break;
  case FZ_CMD_GET:
    fz_target(h, arg, narg, t);
    fz_issued(h, dht_get_record(h->e, t, h->now));
    break;
  case FZ_CMD_PUT: {
    /* addresses from the payload: [count][per address: type, 4 bytes] */
    dht_typed_addr a[DHT_RECORD_MAX_ADDRS + 1];
    size_t na = narg ? arg[0] % (DHT_RECORD_MAX_ADDRS + 2) : 1;
    memset(a, 0, sizeof a);
    for (size_t i = 0; i < na && i < DHT_RECORD_MAX_ADDRS + 1; i++) {
      const uint8_t *q = narg >= 1 + 5 * (i + 1) ? arg + 1 + 5 * i : NULL;
      a[i].type = q ? q[0] % 6 : DHT_ADDR_OBSERVED;
      a[i].addr.family = q && (q[0] & 0x80) ? DHT_AF_INET6 : DHT_AF_INET;
      a[i].addr.ip[0] = q ? q[1] : 203;
      a[i].addr.ip[1] = q ? q[2] : 0;
      a[i].addr.ip[2] = q ? q[3] : 113;
      a[i].addr.ip[3] = (uint8_t)(q ? q[4] : 50 + i);
      a[i].addr.port = (uint16_t)(q ? (q[4] << 4 | q[0]) : 5000);
    }
    dht_set_addrs(h->e, a, na); /* may refuse: then the old set is kept */
    fz_issued(h, dht_put_record(h->e, h->now));
    break;
  }
  case FZ_CMD_PING: {
    dht_peer peer;
    memcpy(peer.pk, h->k->peer[b1 & 3].pk, DHT_PK_LEN);
    fz_peer_addr(b1 & 3, (b1 & 4) != 0, &peer.addr);
    fz_issued(h, dht_ping(h->e, &peer, h->now));
    break;
  }
  case FZ_CMD_CANCEL: {
    int64_t id = (b1 & 0x80) ? (int64_t)(b1 & 0x7f) : h->last_cmd;
    int rv = dht_cancel(h->e, id);
    if (rv != 0 && rv != DHT_ERR_NOTFOUND)
      abort();
    break;
  }
  case FZ_CMD_LOAD:
    fz_note_snapshot(h, arg, narg);
    dht_load_table(h->e, arg, narg, h->now);
    break;
  case FZ_CMD_SAVE:
    fz_save(h);
    break;
  case FZ_CMD_CLOSEST: {
    dht_contact c[DHT_K_MAX];
    fz_target(h, arg, narg, t);
    int got = dht_closest(h->e, t, c, DHT_K_MAX);
    dht_stats st;
    fz_stats(h, &st);
    if (got < 0 || got > DHT_K_MAX || got > st.rt_size || st.rt_buckets < 1 ||
        st.rt_buckets > 256 || st.rt_size > st.rt_buckets * h->set.k ||
        st.records_stored > h->set.max_records)
      abort();
    break;
  }
  default: { /* FZ_CMD_CLOCK: the wall clock steps by a signed number of minutes */
    int16_t d = (int16_t)(n >= 3 ? (uint16_t)(p[1] << 8 | p[2]) : b1);
    dht_set_clock_offset(h->e, FZ_UNIX_MS - FZ_T0 + (int64_t)d * 60000);
    break;
  }
  }
}

/* ---- the service's ops -------------------------------------------------------- */

/* Byte i of an op's arguments, 0 past the end. */
static uint8_t fz_arg(const uint8_t *a, size_t n, size_t i) {
  return i < n ? a[i] : 0;
}

/* Peer i at its v4 or v6 address, or (at_a) at address A. */
static void fz_peer_to(fz *h, int i, bool v6, bool at_a, dht_peer *to) {
  memcpy(to->pk, h->k->peer[i].pk, DHT_PK_LEN);
  if (at_a)
    fz_addr_a(&to->addr);
  else
    fz_peer_addr(i, v6, &to->addr);
}

/* A socket of the service's for selector s (0 when it holds none). */
static uint32_t fz_svc_sock_pick(const fz *h, uint8_t s) {
  return h->nsvc_sock ? h->svc_sock[s % h->nsvc_sock] : 0;
}

/* Tracks the request dht_svc_request just took. */
static void fz_req_track(fz *h, int peer, uint8_t type, uint32_t txid, const dht_peer *to,
                         const dht_req_opts *o) {
  if (h->nreq == FZ_MAX_REQS) {
    /* out of room: forget the oldest that ended */
    int i = 0;
    while (i < h->nreq && h->req[i].state == FZ_RQ_OPEN)
      i++;
    if (i == h->nreq)
      abort(); /* more open than max_requests allows */
    memmove(&h->req[i], &h->req[i + 1], (size_t)(h->nreq - i - 1) * sizeof h->req[0]);
    h->nreq--;
  }
  fz_req *q = &h->req[h->nreq++];
  memset(q, 0, sizeof *q);
  q->txid = txid;
  q->type = type;
  q->answer = o->answer;
  q->state = FZ_RQ_OPEN;
  q->peer = peer;
  q->to = *to;
  q->tag = o->tag;
  q->aux = o->aux;
  q->key = o->key;
  q->kid = o->key ? h->key_kid[o->key] : 0;
  q->tries = o->tries > 0 ? o->tries : 1;
  q->sent = h->now;
  q->soft_ms = o->soft_ms;
  q->timeout_ms = o->timeout_ms;
  q->tx = o->tx;
  q->gen = h->ngens;
}

/* REQ: [a0 peer:2 v6:1 atA:1 kind2:1 unsolicited:1 invalid:2]
 *      [a1 tries:3 default:1 soft:2 timeout:2] [a2 socket] [a3 ttl] [a4 key]
 *      [a5 tag] [a6 aux] [payload] */
static void fz_svc_req(fz *h, const uint8_t *a, size_t n) {
  uint8_t a0 = fz_arg(a, n, 0), a1 = fz_arg(a, n, 1), a2 = fz_arg(a, n, 2);
  static const dht_ts soft[4] = {0, 100, 500, 1500};
  static const dht_ts tmo[4] = {0, 300, 1000, 3000};
  dht_peer to;
  fz_peer_to(h, a0 & 3, (a0 & 4) != 0, (a0 & 8) != 0, &to);
  bool two = (a0 & 0x10) != 0;
  dht_req_opts o;
  memset(&o, 0, sizeof o);
  o.answer = two ? FZ_SVC_ANS2 : FZ_SVC_ANS;
  o.tries = (a1 & 8) ? 0 : 1 + (a1 & 7);
  o.soft_ms = soft[(a1 >> 4) & 3];
  o.timeout_ms = tmo[a1 >> 6];
  o.unsolicited = (a0 & 0x20) != 0;
  o.tx.local = (a2 & 1) ? fz_svc_sock_pick(h, a2 >> 1) : 0;
  o.tx.ttl = fz_arg(a, n, 3);
  o.key = fz_arg(a, n, 4) & 7;
  o.tag = fz_arg(a, n, 5) & 7;
  o.aux = (int8_t)fz_arg(a, n, 6);
  uint8_t type = two ? FZ_SVC_REQ2 : FZ_SVC_REQ;
  uint32_t txid = dht_svc_txid(h->e);
  if (fz_req_open(h, txid))
    abort(); /* a txid an outstanding request uses */
  /* invalid variants: a txid in use, too many tries, an answer type outside
   * our range, a negative soft timeout */
  bool bad = false;
  switch (a0 >> 6) {
  case 1:
    for (int i = h->nreq - 1; i >= 0; i--)
      if (h->req[i].state == FZ_RQ_OPEN && h->req[i].gen == h->ngens) {
        txid = h->req[i].txid;
        bad = true;
        break;
      }
    break;
  case 2:
    o.tries = 9 + (a1 & 7);
    bad = true;
    break;
  case 3:
    if (a1 & 1)
      o.answer = 0x30 + (a1 >> 1 & 0x0f);
    else
      o.soft_ms = -1;
    bad = true;
    break;
  default:
    break;
  }
  bool badkey = o.key != 0 && (o.key > h->set.max_keys || !h->key_used[o.key]);
  uint8_t body[DHT_MAX_BODY];
  size_t pl = n > 7 ? n - 7 : 0;
  if (pl > 1000)
    pl = 1000;
  size_t len = fz_svc_body(body, sizeof body, type, txid, a + 7, pl);
  if (!h->svc) {
    /* a removed service cannot send (known: it can, README) */
    if (fz_strict && dht_svc_request(h->e, h->ngens, &to, body, len, &o, h->now) != DHT_ERR_INVAL)
      abort();
    return;
  }
  dht_stats before, after;
  fz_stats(h, &before);
  int rv = dht_svc_request(h->e, h->svc, &to, body, len, &o, h->now);
  fz_stats(h, &after);
  if (rv != 0 && (after.svc_requests_out != before.svc_requests_out ||
                  (after.unsolicited_out != before.unsolicited_out && (fz_strict || !badkey))))
    abort(); /* counted as sent, yet not sent */
  if (rv == DHT_ERR_INVAL) {
    if (!bad && !badkey)
      abort();
    return;
  }
  if (rv == DHT_ERR_FULL) {
    if (bad || (fz_req_count(h) < h->set.max_requests &&
                after.unsolicited_limited == before.unsolicited_limited &&
                after.drop_out_full == before.drop_out_full))
      abort();
    return;
  }
  if (rv != 0 || bad || badkey || after.svc_requests_out != before.svc_requests_out + 1)
    abort();
  fz_req_track(h, a0 & 3, type, txid, &to, &o);
}

/* CANCEL: [tag]: every open request with that tag, and only those. */
static void fz_svc_cancel(fz *h, const uint8_t *a, size_t n) {
  uint64_t tag = fz_arg(a, n, 0) & 7;
  if (!h->svc)
    return;
  int want = 0;
  for (int i = 0; i < h->nreq; i++)
    if (h->req[i].state == FZ_RQ_OPEN && h->req[i].gen == h->ngens && h->req[i].tag == tag) {
      h->req[i].state = FZ_RQ_CANCELLED;
      want++;
    }
  if (dht_svc_cancel(h->e, h->svc, tag) != want)
    abort();
}

/* OWN: [kind:2 .. twice:1][args]: dht_find_node / dht_get_record / dht_ping
 * issued and owned at once, or the driver's last command owned. */
static void fz_svc_own(fz *h, const uint8_t *a, size_t n) {
  uint8_t a0 = fz_arg(a, n, 0), a1 = fz_arg(a, n, 1);
  uint8_t t[DHT_ID_LEN];
  int64_t id;
  switch (a0 & 3) {
  case 0:
    fz_target(h, a + (n ? 1 : 0), n ? n - 1 : 0, t);
    fz_issued(h, id = dht_find_node(h->e, t, h->now));
    break;
  case 1:
    fz_target(h, a + (n ? 1 : 0), n ? n - 1 : 0, t);
    fz_issued(h, id = dht_get_record(h->e, t, h->now));
    break;
  case 2: {
    dht_peer peer;
    fz_peer_to(h, a1 & 3, (a1 & 4) != 0, false, &peer);
    fz_issued(h, id = dht_ping(h->e, &peer, h->now));
    break;
  }
  default:
    id = h->last_cmd;
    break;
  }
  if (id > 0 && !h->svc && fz_strict && dht_svc_own(h->e, h->ngens, id) == 0)
    abort(); /* a removed service cannot own (known: it can, README) */
  if (id <= 0 || !h->svc)
    return;
  if (dht_svc_own(h->e, 0, id) != DHT_ERR_INVAL || dht_svc_own(h->e, h->svc, 0) != DHT_ERR_INVAL)
    abort();
  bool fresh = (a0 & 3) != 3;
  for (int k = 0; k < ((a0 & 0x80) ? 2 : 1); k++) {
    int rv = dht_svc_own(h->e, h->svc, id);
    dht_stats st;
    fz_stats(h, &st);
    if (rv == 0) {
      /* never one whose event the driver had */
      if (fz_bit(h->cmd_seen, id) || fz_bit(h->cmd_svc, id))
        abort();
      fz_set_bit(h->cmd_owned, id, true);
      if (fresh)
        fz_set_bit(h->cmd_must, id, true);
    } else if (rv != DHT_ERR_NOTFOUND || (fresh && k == 0 && st.drop_event_full == 0)) {
      abort(); /* a command just issued is running, or its event waits */
    }
  }
}

/* The driver answers socket request q: policy bits 0-1 how many (all,
 * fewer, none, more than asked).  Ids are fresh. */
static void fz_sock_reply(fz *h, fz_sockreq *q, uint8_t policy) {
  uint32_t ids[FZ_SOCK_GIVE];
  int m;
  switch (policy & 3) {
  case 0:
    m = q->n;
    break;
  case 1:
    m = q->n / 2;
    break;
  case 2:
    m = 0;
    break;
  default:
    m = q->n + 2;
    break;
  }
  if (m > FZ_SOCK_GIVE)
    m = FZ_SOCK_GIVE;
  if (h->nsock + m > FZ_MAX_SOCKS)
    m = 0;
  for (int i = 0; i < m; i++) {
    ids[i] = h->next_sock += 1 + (policy >> 5);
    fz_sock *s = &h->sock[h->nsock++];
    s->id = ids[i];
    s->state = FZ_SK_DRIVER;
  }
  bool known = q->state == FZ_SQ_PENDING;
  int rv = dht_sock_opened(h->e, q->id, ids, m);
  if (rv != (known ? 0 : DHT_ERR_NOTFOUND))
    abort();
  if (!known)
    return; /* the driver closes them */
  q->state = FZ_SQ_ANSWERED;
  q->given = m < q->n ? m : q->n; /* the rest stay the driver's */
  for (int i = 0; i < q->given; i++) {
    q->ids[i] = ids[i];
    fz_sock_find(h, ids[i])->state = FZ_SK_TAKEN;
  }
  /* policy bit 4: the service is removed before its DHT_EV_SOCK_OPENED is
   * handed over (the event dies, the sockets are closed) */
  if ((policy & 0x10) && h->svc && q->gen == h->ngens)
    fz_svc_remove(h);
}

/* SOCK_OPEN: [n:3 full:1 v6:1 nofamily:1][policy: how many:2 defer:1
 * close-one:1 .. id step:3] */
static void fz_svc_sock_open(fz *h, const uint8_t *a, size_t n) {
  uint8_t a0 = fz_arg(a, n, 0);
  int cnt = (a0 & 8) ? h->set.max_sockets + 1 : a0 & 7;
  uint8_t family = (a0 & 0x20) ? 0 : (a0 & 0x10) ? DHT_AF_INET6 : DHT_AF_INET;
  if (!h->svc) {
    /* a removed service cannot ask for sockets (known: it can, README) */
    if (fz_strict && dht_sock_open(h->e, h->ngens, cnt, family) > 0)
      abort();
    return;
  }
  int pending = 0;
  for (int i = 0; i < h->nsq; i++)
    if (h->sq[i].state == FZ_SQ_PENDING)
      pending += h->sq[i].n;
  int64_t want = cnt < 1 || family == 0 ? DHT_ERR_INVAL
                 : fz_sock_count(h, FZ_SK_TAKEN) + pending + cnt > h->set.max_sockets ? DHT_ERR_FULL
                                                                                      : 0;
  int64_t id = dht_sock_open(h->e, h->svc, cnt, family);
  if (want < 0) {
    if (id != want)
      abort();
    return;
  }
  if (id <= 0 || (h->nsq > 0 && id <= h->sq[h->nsq - 1].id) || id <= h->max_cmd)
    abort(); /* ids grow, apart from command ids */
  if (h->nsq == FZ_MAX_SOCKREQ)
    abort(); /* one per op: cannot happen */
  fz_sockreq *q = &h->sq[h->nsq++];
  memset(q, 0, sizeof *q);
  q->id = id;
  q->n = cnt;
  q->gen = h->ngens;
  q->family = family;
  q->policy = fz_arg(a, n, 1);
  q->state = FZ_SQ_PENDING;
}

/* SOCK_REPLY: [unknown:1 policy:2 ..][id bytes]: the driver answers the
 * oldest request it deferred, or one it answered already or that died, or an
 * id it never saw. */
static void fz_svc_sock_reply(fz *h, const uint8_t *a, size_t n) {
  uint8_t a0 = fz_arg(a, n, 0);
  fz_sockreq stray;
  memset(&stray, 0, sizeof stray);
  stray.state = FZ_SQ_VOID;
  fz_sockreq *q = NULL;
  if (!(a0 & 1)) {
    for (int i = 0; i < h->nsq && !q; i++)
      if (h->sq[i].state == FZ_SQ_PENDING && h->sq[i].open_seen)
        q = &h->sq[i];
    for (int i = 0; i < h->nsq && !q; i++)
      if (h->sq[i].state != FZ_SQ_PENDING)
        q = &h->sq[i];
  }
  if (!q) {
    q = &stray;
    q->n = 1 + (a0 >> 5);
    q->id = ((int64_t)1 << 62) + 1000 + fz_arg(a, n, 1);
    if (a0 & 0x10)
      q->id = (int64_t)fz_arg(a, n, 1) << 8 | fz_arg(a, n, 2); /* a command's id, or 0 */
    if (fz_sq_find(h, q->id))
      return;
  }
  fz_sock_reply(h, q, (uint8_t)(a0 >> 1));
}

/* SOCK_CLOSE: [index .. wrong service:1 stray:1][id]. */
static void fz_svc_sock_close(fz *h, const uint8_t *a, size_t n) {
  uint8_t a0 = fz_arg(a, n, 0);
  uint32_t id = (a0 & 0x80) ? fz_arg(a, n, 1) : fz_svc_sock_pick(h, a0);
  if ((a0 & 0x80) && (a0 & 1) && h->nsock)
    id = h->sock[fz_arg(a, n, 1) % h->nsock].id; /* one the driver opened, any state */
  if (!h->svc)
    return;
  fz_sock_close(h, (a0 & 0x40) ? h->svc + 1 : h->svc, id);
}

/* KEY_ADD: [identity]: the lowest free handle, or FULL. */
static void fz_svc_key_add(fz *h, const uint8_t *a, size_t n) {
  int kid = fz_arg(a, n, 0) % FZ_SKEYS;
  int want = DHT_ERR_FULL;
  for (int k = 1; k <= h->set.max_keys; k++)
    if (!h->key_used[k]) {
      want = k;
      break;
    }
  int rv = dht_key_add(h->e, &h->k->skey[kid]);
  if (rv != want)
    abort();
  if (rv > 0) {
    h->key_used[rv] = true;
    h->key_kid[rv] = kid;
  }
  if (dht_key_add(h->e, NULL) != DHT_ERR_INVAL)
    abort();
}

/* KEY_REMOVE: [handle]. */
static void fz_svc_key_remove(fz *h, const uint8_t *a, size_t n) {
  int k = fz_arg(a, n, 0) % (h->set.max_keys + 2);
  bool used = k >= 1 && k <= h->set.max_keys && h->key_used[k];
  if (dht_key_remove(h->e, k) != (used ? 0 : DHT_ERR_NOTFOUND))
    abort();
  if (used) {
    h->key_used[k] = false;
    for (int i = 0; i < h->nreq; i++)
      if (h->req[i].state == FZ_RQ_OPEN && h->req[i].key == k)
        h->req[i].key_gone = true;
  }
}

/* PATH: [which:2 index:6][u32]: the socket datagrams arrive on from now: 0,
 * one the service holds, one the driver opened (any state), or any number. */
static void fz_svc_path(fz *h, const uint8_t *a, size_t n) {
  uint8_t a0 = fz_arg(a, n, 0);
  switch (a0 & 3) {
  case 0:
    h->in_local = 0;
    break;
  case 1:
    h->in_local = fz_svc_sock_pick(h, a0 >> 2);
    break;
  case 2:
    h->in_local = h->nsock ? h->sock[(a0 >> 2) % h->nsock].id : 0;
    break;
  default:
    h->in_local = (uint32_t)fz_arg(a, n, 1) << 24 | (uint32_t)fz_arg(a, n, 2) << 16 |
                  (uint32_t)fz_arg(a, n, 3) << 8 | fz_arg(a, n, 4);
    break;
  }
}

/* NOTICE: [peer:2 v6:1 atA:1 notx:1 coretype:1][size u16][socket][ttl]: a
 * datagram that is not a request, as large as asked: the amplification
 * rule decides whether it leaves. */
static void fz_svc_notice(fz *h, const uint8_t *a, size_t n) {
  uint8_t a0 = fz_arg(a, n, 0);
  dht_peer to;
  fz_peer_to(h, a0 & 3, (a0 & 4) != 0, (a0 & 8) != 0, &to);
  size_t size = (size_t)(fz_arg(a, n, 1) << 8 | fz_arg(a, n, 2)) % 1100;
  dht_tx tx = {.local = fz_svc_sock_pick(h, fz_arg(a, n, 3)), .ttl = fz_arg(a, n, 4)};
  uint8_t pay[1100], body[DHT_MAX_BODY];
  memset(pay, 0x6e, size);
  size_t len = fz_svc_body(body, sizeof body, (a0 & 0x20) ? DHT_MSG_PONG : FZ_SVC_NOTICE,
                           (uint32_t)size, pay, size);
  int rv = dht_svc_send(h->e, &to, (a0 & 0x10) ? NULL : &tx, body, len);
  if ((a0 & 0x20) ? rv != DHT_ERR_INVAL : (rv != 0 && rv != DHT_ERR_FULL))
    abort(); /* a core type is not a service's to send */
}

/* SVC: [which][args]. */
static void fz_svc_op(fz *h, const uint8_t *p, size_t n) {
  int which = n ? p[0] % FZ_SVC_COUNT : FZ_SVC_OP_REQ;
  const uint8_t *a = n ? p + 1 : p;
  size_t na = n ? n - 1 : 0;
  switch (which) {
  case FZ_SVC_OP_REQ:
    fz_svc_req(h, a, na);
    break;
  case FZ_SVC_OP_CANCEL:
    fz_svc_cancel(h, a, na);
    break;
  case FZ_SVC_OP_OWN:
    fz_svc_own(h, a, na);
    break;
  case FZ_SVC_OP_SOCK_OPEN:
    fz_svc_sock_open(h, a, na);
    break;
  case FZ_SVC_OP_SOCK_REPLY:
    fz_svc_sock_reply(h, a, na);
    break;
  case FZ_SVC_OP_SOCK_CLOSE:
    fz_svc_sock_close(h, a, na);
    break;
  case FZ_SVC_OP_KEY_ADD:
    fz_svc_key_add(h, a, na);
    break;
  case FZ_SVC_OP_KEY_REMOVE:
    fz_svc_key_remove(h, a, na);
    break;
  case FZ_SVC_OP_MODE: {
    bool server = (fz_arg(a, na, 0) & 1) != 0;
    if (dht_set_mode(h->e, server, h->now) != 0 || dht_is_server(h->e) != server)
      abort();
    h->server = server;
    break;
  }
  case FZ_SVC_OP_PATH:
    fz_svc_path(h, a, na);
    break;
  case FZ_SVC_OP_NOTICE:
    fz_svc_notice(h, a, na);
    break;
  case FZ_SVC_OP_REMOVE:
    if (h->svc)
      fz_svc_remove(h);
    else
      fz_svc_add(h);
    break;
  default: /* FZ_SVC_OP_TAKE */
    h->take = (fz_arg(a, na, 0) & 1) != 0;
    break;
  }
}

/* ANSWER: [sel][idx][variant][payload].  Peer answers one of the service's
 * requests: idx bit 7 the newest open one, else idx % the requests tracked
 * (answered, timed out and cancelled ones too: late answers).  variant % 8:
 *   0 right; 1 wrong type; 2 sealed to the wrong key (ours for a request
 *   under a sending key, a sending key for one under ours); 3 from another
 *   peer (sel & 3); 4 wrong txid; 5 the payload as a whole body, sealed to a
 *   sending key (a peer trying to start a conversation with it); 6 right,
 *   twice; 7 right, from address A.
 * sel bit 2: from the peer's IPv6 address; bit 7: its previous nonce. */
static void fz_answer(fz *h, const uint8_t *p, size_t n) {
  uint8_t sel = fz_arg(p, n, 0), idx = fz_arg(p, n, 1), var = fz_arg(p, n, 2);
  const uint8_t *pay = n > 3 ? p + 3 : p;
  size_t pl = n > 3 ? n - 3 : 0;
  if (h->nreq == 0)
    return;
  fz_req *q = NULL;
  if (idx & 0x80) {
    for (int i = h->nreq - 1; i >= 0 && !q; i--)
      if (h->req[i].state == FZ_RQ_OPEN)
        q = &h->req[i];
    if (!q)
      return;
  } else {
    q = &h->req[idx % h->nreq];
  }
  int v = var & 7;
  int peer = v == 3 ? (sel & 3) : q->peer;
  if (v == 3 && peer == q->peer)
    peer = (peer + 1) & 3;
  uint8_t type = q->answer;
  if (v == 1)
    type = (var & 8) ? q->type : (uint8_t)(q->answer ^ 2);
  uint32_t txid = v == 4 ? q->txid ^ (1u + (var >> 3)) : q->txid;
  /* the key it is sealed to */
  int kid = q->key ? q->kid : -1;
  if (v == 2 || v == 5) {
    if (q->key && v == 2) {
      kid = -1;
    } else {
      kid = (var >> 4) % FZ_SKEYS;
      for (int k = 1; k <= h->set.max_keys; k++)
        if (h->key_used[k]) {
          kid = h->key_kid[k];
          break;
        }
    }
  }
  const uint8_t *pk = kid < 0 ? h->k->self.pk : h->k->skey[kid].pk;
  uint8_t body[DHT_MAX_BODY];
  size_t len;
  if (v == 5) {
    if (pl > DHT_MAX_BODY)
      return;
    memcpy(body, pay, pl);
    len = pl;
  } else {
    len = fz_svc_body(body, sizeof body, type, txid, pay, pl > 1000 ? 1000 : pl);
  }
  dht_addr from;
  if (v == 7)
    fz_addr_a(&from);
  else
    fz_peer_addr(peer, (sel & 4) != 0, &from);
  bool replay = (sel & 0x80) != 0;
  /* A right answer to an open request must reach on_answer: unless a rate
   * limit or the replay filter drops it, or its key is gone. */
  bool right = (v == 0 || v == 6 || v == 7) && q->state == FZ_RQ_OPEN && q->gen == h->ngens &&
               h->svc && h->set.rate_pps == 0 && !replay && !q->key_gone &&
               (!q->key || (h->key_used[q->key] && h->key_kid[q->key] == q->kid));
  if (right && q->key && !fz_strict) {
    /* known: the engine opens a sending key's answer only under the key of
     * the first keyed request to that peer (README, "Known engine bugs") */
    for (int i = 0; i < h->nreq; i++) {
      const fz_req *o = &h->req[i];
      if (o->state == FZ_RQ_OPEN && o->gen == h->ngens && o->key && h->key_used[o->key] &&
          memcmp(o->to.pk, q->to.pk, DHT_PK_LEN) == 0) {
        if (o->key != q->key)
          right = false; /* even for the same identity under another handle */
        break;
      }
    }
  }
  for (int k = 0; k < (v == 6 ? 2 : 1); k++) {
    size_t pn = fz_seal(h, peer, pk, body, len, replay);
    fz_note_body(h, peer, body, len, h->in_local);
    fz_note_proof(h, peer, body, len, &from);
    dht_stats before, after;
    fz_stats(h, &before);
    int msgs = h->msgs;
    h->expect = right && k == 0;
    h->expect_txid = q->txid;
    fz_read(h, &from, h->pkt, pn);
    fz_stats(h, &after);
    /* to a sending key, only an answer is taken: no request, no reply, no
     * message */
    if (kid >= 0 && (after.requests_in != before.requests_in ||
                     after.replies_in != before.replies_in || h->msgs != msgs))
      abort();
  }
}

static void fz_config(dht_settings *s, const uint8_t *p, size_t n) {
  uint8_t f = n ? p[0] : 0;
  if (f & FZ_CFG_RATE) {
    s->rate_pps = 2;
    s->rate_burst = 4;
    s->rate_prefixes = 4;
  }
  if (f & FZ_CFG_CLIENT)
    s->server_mode = false;
  if (f & FZ_CFG_K)
    s->k = 1 + (n >= 2 ? p[1] : 0) % DHT_K_MAX;
  if (f & FZ_CFG_NOREPLAY)
    s->replay_window = 0;
  if (f & FZ_CFG_AMP1)
    s->amplification_factor = 1;
  if (f & FZ_CFG_SMALLKEYS) {
    s->key_cache = 1;
    s->cookie_cache = 1;
  }
  if (f & FZ_CFG_TINYQ) {
    s->max_out_queue = 2;
    s->max_events = 1;
    s->max_lookups = 2;
  }
  if (f & FZ_CFG_TINYREC) {
    s->max_records = 1;
    s->replacement_cache = 0;
  }
  uint8_t g = n >= 3 ? p[2] : 0;
  if (g & FZ_CFG2_REQS)
    s->max_requests = 2;
  if (g & FZ_CFG2_KEYS)
    s->max_keys = 1;
  if (g & FZ_CFG2_SOCKS)
    s->max_sockets = 3;
  if (g & FZ_CFG2_UNSOL)
    s->unsolicited_burst = 1;
  if (g & FZ_CFG2_EVENTS)
    s->max_events = 3;
  if (g & FZ_CFG2_SVCS)
    s->max_services = 2;
}

/* After the last op: the clock runs on until every request and every owned
 * command has ended (each must), then the service is removed (every socket
 * the engine took must be closed). */
static void fz_end(fz *h) {
  bool wait = h->svc && fz_req_count(h) > 0;
  for (int64_t c = 1; c <= h->max_cmd && c < FZ_MAX_CMD && !wait; c++)
    wait = fz_bit(h->cmd_must, c) && !fz_bit(h->cmd_svc, c);
  if (wait)
    fc_run_clock(h->e, &h->now, h->now + FZ_END_MS, FZ_END_STEPS, fz_expire, NULL, h);
  dht_stats st;
  fz_stats(h, &st);
  if (h->svc && fz_req_count(h) != 0)
    abort(); /* a request that never ended */
  for (int64_t c = 1; c <= h->max_cmd && c < FZ_MAX_CMD; c++)
    if (fz_bit(h->cmd_must, c) && !fz_bit(h->cmd_svc, c) && st.drop_event_full == 0)
      abort(); /* an owned command whose event never came */
  if (h->svc) {
    fz_svc_remove(h);
    fz_drain(h);
  }
  if (fz_sock_count(h, FZ_SK_TAKEN) != 0)
    abort(); /* the engine holds a socket of a service that is gone */
}

/* Runs one input on a fresh engine; copies its final stats into *st if st is
 * not NULL. */
static void fz_run(const uint8_t *data, size_t size, dht_stats *st) {
  fz *h = calloc(1, sizeof *h);
  if (!h)
    abort();
  h->k = fz_setup();
  fz_rng_init(&h->rng);
  h->now = FZ_T0;
  fc_settings(&h->set); /* key and cookie caches 16, max_records 16, rate_pps 0 */
  h->set.k = 20;
  h->set.max_out_queue = 64;
  h->set.max_events = 32;
  h->set.replay_window = 64;
  h->set.max_lookups = 16;
  h->set.rate_prefixes = 16;
  h->set.log_level = DHT_LOG_DEBUG;
  h->set.max_requests = 32;
  h->set.max_sockets = 40;
  h->set.max_keys = 4;

  const uint8_t *cp = NULL;
  size_t clen = 0;
  size_t pos = fc_op_config(data, size, FZ_OP_COUNT, FZ_OP_CONFIG, &cp, &clen);
  if (pos)
    fz_config(&h->set, cp, clen);
  h->server = h->set.server_mode;
  h->next_sock = 100;
  dht_callbacks cb = {.ctx = &h->rng, .rand = fz_rand, .log = fz_log};
  fc_engine_new(&h->e, &h->k->self, &h->set, &cb, h->now);
  if (memcmp(dht_self_pk(h->e), h->k->self.pk, DHT_PK_LEN) != 0 ||
      memcmp(dht_self_id(h->e), h->k->self_id, DHT_ID_LEN) != 0)
    abort();
  fz_svc_add(h);
  if (h->svc != 1)
    abort();

  uint8_t op;
  const uint8_t *p;
  size_t len;
  for (int ops = 0; ops < FZ_MAX_OPS && fc_op_next(data, size, &pos, &op, &p, &len); ops++) {
    switch (op % FZ_OP_COUNT) {
    case FZ_OP_RAW:
      fz_raw(h, p, len);
      break;
    case FZ_OP_BODY:
      if (len >= 1)
        fz_deliver(h, p[0], p + 1, len - 1, false, 0, 0);
      break;
    case FZ_OP_TIME:
      fz_time(h, p, len);
      break;
    case FZ_OP_CMD:
      fz_cmd(h, p, len);
      break;
    case FZ_OP_TAMPER:
      if (len >= 4)
        fz_deliver(h, p[0], p + 4, len - 4, true, (size_t)(p[1] << 8 | p[2]), p[3]);
      break;
    case FZ_OP_SVC:
      fz_svc_op(h, p, len);
      break;
    case FZ_OP_ANSWER:
      fz_answer(h, p, len);
      break;
    default: /* FZ_OP_CONFIG after the first op */
      break;
    }
    fz_drain(h);
  }
  if (!(clen >= 3 && (cp[2] & FZ_CFG2_NOEND)))
    fz_end(h);

  if (st)
    dht_get_stats(h->e, st);
  dht_del(h->e);
  for (int i = 0; i < FZ_PEERS; i++)
    if (h->p[i].ready)
      dht_box_free(&h->p[i].box, &dht_mem_libc);
  free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_run(data, size, NULL);
  return 0;
}

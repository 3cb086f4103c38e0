/*
 * fuzz_packet.c - the libFuzzer target for the dht/ engine's packet path.
 *
 * It owns: an interpreter that turns one input into a sequence of engine
 * calls on ONE fresh engine, four simulated peers that seal bodies with their
 * own dht_box (so fuzzed msgpack reaches the decoder and the handlers), and
 * the oracles (every datagram the engine emits fits DHT_MAX_PKT, opens under
 * the addressed peer's key and decodes strictly; events are sane; a tampered
 * datagram never authenticates; timers move forward; ids grow).  A broken
 * oracle is abort(), which libFuzzer reports as a crash.
 *
 * Input: a sequence of ops [u8 op][u16 len, big-endian][len bytes]; a
 * truncated tail ends the input; at most FZ_MAX_OPS ops run.  op % 6 is:
 *   0 RAW     the bytes as a datagram from address A (pre-auth checks);
 *   1 BODY    [sel][body]: body sealed by peer sel as a valid datagram;
 *   2 TIME    [ms u16][shift]: advance the clock by ms << (shift & 7) and run
 *             the timers that fall due on the way;
 *   3 CMD     [which][args]: a command (see fz_cmd);
 *   4 TAMPER  [sel][off u16][mask][body]: like BODY, then byte off (mod the
 *             datagram length) XORed with mask (0 means 0x80);
 *   5 CONFIG  [flags][k]: only as the first op: changes the settings (rate
 *             limiter on, small caps, ...); ignored anywhere else.
 * sel (BODY, TAMPER): bits 0-1 the peer, bit 2 IPv6 source address, bit 3
 * replace the body's txid with one the engine sent to that peer (bits 5-6:
 * 0 = its most recent request, 1 = the one before, ...), bit 4 replace the
 * first bin 16 of the body with the last token the engine gave that peer,
 * bit 7 reuse the peer's previous nonce (a replay).  The patches let the
 * fuzzer answer requests whose txids and tokens come from the engine.
 *
 * A small service owns message types 0x20-0x2f, so bodies above the core
 * range reach the service hook too (see fz_svc_msg for its messages).
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
#include "drive1.h"
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

enum { FZ_OP_RAW, FZ_OP_BODY, FZ_OP_TIME, FZ_OP_CMD, FZ_OP_TAMPER, FZ_OP_CONFIG, FZ_OP_COUNT };

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

/* The service's message types (all [type, txid, ...]). */
#define FZ_SVC_LO 0x20
#define FZ_SVC_HI 0x2f
enum {
  FZ_SVC_ECHO = 0x20, /* [0x20, txid, bin]: answered at once with [0x21, txid, bin] */
  FZ_SVC_ECHOED,      /* 0x21 */
  FZ_SVC_TIMER,       /* [0x22, txid, nil|bool, ms <= 60000]: answered after ms */
  FZ_SVC_RING,        /* [0x23, txid, bool, nil], the timer's answer */
  FZ_SVC_FIND,        /* [0x24, txid, bin 32]: the hook starts dht_find_node */
};

/* ---- the immutable setup ------------------------------------------------ */

typedef struct fz_keys {
  dht_identity self;
  uint8_t self_id[DHT_ID_LEN];
  dht_identity peer[FZ_PEERS];
  uint8_t peer_id[FZ_PEERS][DHT_ID_LEN];
  /* what each peer's box caches for the engine: shared key, engine ID */
  uint8_t entry[FZ_PEERS][DHT_BOX_ENTRY_LEN];
} fz_keys;

static const uint8_t fz_hkey[16] = "roost-fuzz-hkey";

static fz_keys fz_k;
static bool fz_k_ready;

/* Identity number n (0 = the engine, 1.. = peers, more for seeds). */
static void fz_identity(dht_identity *id, int n) {
  fc_identity(id, 0x5a, n);
}

static const fz_keys *fz_setup(void) {
  if (fz_k_ready)
    return &fz_k;
  if (sodium_init() < 0)
    abort();
  fz_identity(&fz_k.self, 0);
  dht_id_from_pk(fz_k.self_id, fz_k.self.pk);
  for (int i = 0; i < FZ_PEERS; i++) {
    fz_identity(&fz_k.peer[i], 1 + i);
    dht_id_from_pk(fz_k.peer_id[i], fz_k.peer[i].pk);
    fc_box_entry(fz_k.entry[i], &fz_k.peer[i], fz_hkey, fz_k.self.pk);
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
} fz_peer;

/* The service's one timer. */
typedef struct fz_svc {
  dht_ts due; /* DHT_TS_NEVER when idle */
  dht_peer to;
  uint32_t txid;
  bool flag;
} fz_svc;

typedef struct fz {
  const fz_keys *k;
  dht *e;
  dht_settings set;
  fz_rng rng;
  dht_ts now, advanced;
  int64_t last_cmd, max_cmd;
  uint8_t cmd_seen[FZ_MAX_CMD / 8]; /* ids that had their event */
  /* An input told the engine of a contact at a peer's address with another
   * key: datagrams to that address may be for that key. */
  bool aliased;
  fz_peer p[FZ_PEERS];
  fz_svc svc;
  uint8_t pkt[DHT_MAX_PKT + 64];
  uint8_t body[DHT_MAX_BODY + 64];
} fz;

static fz_peer *fz_peer_get(fz *h, int i) {
  fz_peer *p = &h->p[i];
  if (p->ready)
    return p;
  fc_box_ready(&p->box, &h->k->peer[i], fz_hkey, h->k->self.pk, h->k->entry[i]);
  p->ready = true;
  return p;
}

/* Peer whose v4 or v6 address is a, or -1. */
static int fz_peer_at(const dht_addr *a) {
  return fc_peer_at(a, FZ_PEERS, fz_peer_addr);
}

static void fz_note_contact(fz *h, const uint8_t pk[static DHT_PK_LEN], const dht_addr *a) {
  int i = fz_peer_at(a);
  if (i >= 0 && memcmp(pk, h->k->peer[i].pk, DHT_PK_LEN) != 0)
    h->aliased = true;
}

/* A body that authenticates is about to reach the engine: note what its
 * contacts will teach it. */
static void fz_note_body(fz *h, const uint8_t *body, size_t len) {
  dht_msg m;
  if (dht_msg_decode(&m, body, len) != 0)
    return;
  if (m.type != DHT_MSG_NODES && m.type != DHT_MSG_VALUE)
    return;
  for (int i = 0; i < m.ncontacts; i++)
    fz_note_contact(h, m.contacts[i].pk, &m.contacts[i].addr);
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

/* ---- engine output -------------------------------------------------------- */

static bool fz_bit(const uint8_t *bits, int64_t i) {
  return (bits[i / 8] >> (i % 8)) & 1;
}

static void fz_check_event(fz *h, const dht_event *ev) {
  if (ev->type < DHT_EV_BOOTSTRAP || ev->type > DHT_EV_ADDR_SEEN)
    abort();
  if (ev->status > 0 || ev->status < DHT_ERR_INTERNAL)
    abort();
  if (ev->type == DHT_EV_ADDR_SEEN) {
    if (ev->cmd != 0)
      abort();
    return;
  }
  /* one event per command, for a command that was issued */
  if (ev->cmd <= 0 || ev->cmd > h->max_cmd)
    abort();
  if (ev->cmd < FZ_MAX_CMD) {
    if (fz_bit(h->cmd_seen, ev->cmd))
      abort();
    h->cmd_seen[ev->cmd / 8] |= (uint8_t)(1u << (ev->cmd % 8));
  }
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
  }
}

/* The peer side: what peer i makes of a request or reply from the engine. */
static void fz_peer_take(fz *h, int i, const dht_msg *m) {
  fz_peer *p = &h->p[i];
  switch (m->type) {
  case DHT_MSG_PING:
  case DHT_MSG_FIND_NODE:
  case DHT_MSG_GET:
  case DHT_MSG_PUT:
    fc_ring_push(p->txid, sizeof p->txid[0], FZ_RING, &p->ntxid);
    p->txid[0] = m->txid;
    break;
  case DHT_MSG_NODES:
  case DHT_MSG_VALUE:
    memcpy(p->token, m->token, DHT_TOKEN_LEN);
    p->has_token = true;
    break;
  default:
    break;
  }
}

/* Opens a datagram from the engine as peer i; true if it opened. */
static bool fz_peer_open(fz *h, int i, const uint8_t *pkt, size_t len) {
  fz_peer *p = fz_peer_get(h, i);
  const uint8_t *key = dht_box_key(&p->box, h->k->self.pk);
  if (!key)
    abort();
  dht_ssize n = dht_box_open(key, pkt, len, h->body, sizeof h->body);
  if (n < 0)
    return false;
  dht_msg m;
  int rv = dht_msg_decode(&m, h->body, (size_t)n);
  if (rv == DHT_ERR_NOTFOUND) {
    /* not a core type: only our service sends those */
    uint8_t type;
    uint32_t txid;
    if (dht_msg_peek(h->body, (size_t)n, &type, &txid) != 0 || type < FZ_SVC_LO || type > FZ_SVC_HI)
      abort();
    return true;
  }
  if (rv != 0)
    abort(); /* the engine sent a body a peer must drop */
  fz_peer_take(h, i, &m);
  return true;
}

static void fz_drain(fz *h) {
  dht_addr to;
  dht_ssize n;
  while ((n = d1_write(h->e, &to, h->pkt, DHT_MAX_PKT, h->now)) != 0) {
    fc_check_dgram(n, &to);
    if (h->pkt[0] != DHT_VERSION || memcmp(h->pkt + 1, h->k->self.pk, DHT_PK_LEN) != 0)
      abort();
    int i = fz_peer_at(&to);
    if (i >= 0 && fz_peer_open(h, i, h->pkt, (size_t)n))
      continue;
    if (i >= 0 && !h->aliased)
      abort(); /* to a peer's address, yet not under its key */
    /* a peer's key learnt at another address, or an alias: try them all */
    for (int j = 0; j < FZ_PEERS; j++)
      if (j != i && fz_peer_open(h, j, h->pkt, (size_t)n))
        break;
  }
  dht_event ev;
  while (dht_poll_event(h->e, &ev) == 0)
    fz_check_event(h, &ev);
  dht_stats st;
  dht_get_stats(h->e, &st);
  if (st.out_queue != 0 || st.events_queued != 0 || st.rt_size < 0)
    abort();
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

/* ---- the service ------------------------------------------------------------ */

static void fz_svc_send(dht *e, const dht_peer *to, const uint8_t *body, size_t len) {
  int rv = dht_svc_send(e, to, NULL, body, len);
  if (rv != 0 && rv != DHT_ERR_FULL)
    abort();
}

static void fz_svc_msg(void *ctx, dht *e, const dht_msg_in *in, dht_ts now) {
  fz *h = ctx;
  const dht_peer *from = &in->from;
  const uint8_t *body = in->body;
  size_t len = in->len;
  dht_wire_r r;
  dht_wire_w w;
  uint8_t out[DHT_MAX_BODY];
  uint32_t n;
  uint64_t type, txid, ms;
  const uint8_t *p;
  size_t pl;
  bool flag = false;

  if (e != h->e || now != h->now)
    abort();
  dht_wire_r_init(&r, body, len);
  if (dht_wire_r_array_max(&r, 8, &n) || n < 2 || dht_wire_r_uint(&r, 0xff, &type) ||
      dht_wire_r_uint(&r, UINT32_MAX, &txid))
    return;
  if (type < FZ_SVC_LO || type > FZ_SVC_HI)
    abort(); /* dispatched outside our range */
  switch (type) {
  case FZ_SVC_ECHO:
    if (n != 3 || dht_wire_r_bin(&r, 0, DHT_MAX_BODY, &p, &pl) || dht_wire_r_end(&r))
      return;
    dht_wire_w_init(&w, out, sizeof out);
    dht_wire_w_array(&w, 3);
    dht_wire_w_uint(&w, FZ_SVC_ECHOED);
    dht_wire_w_uint(&w, txid);
    dht_wire_w_bin(&w, p, pl);
    if (w.err == 0)
      fz_svc_send(e, from, out, w.len);
    else if (w.err != DHT_ERR_NOBUF || w.len > sizeof out)
      abort();
    return;
  case FZ_SVC_TIMER: {
    if (n != 4)
      return;
    int nil = dht_wire_r_nil(&r);
    if (nil < 0 || (nil == 0 && dht_wire_r_bool(&r, &flag)) || dht_wire_r_uint(&r, 60000, &ms) ||
        dht_wire_r_end(&r))
      return;
    h->svc.due = now + (dht_ts)ms + 1;
    h->svc.to = *from;
    h->svc.txid = (uint32_t)txid;
    h->svc.flag = flag;
    return;
  }
  case FZ_SVC_FIND:
    if (n != 3 || dht_wire_r_bin(&r, DHT_ID_LEN, DHT_ID_LEN, &p, &pl) || dht_wire_r_end(&r))
      return;
    /* commands may be called from a hook: they only queue */
    fz_issued(h, dht_find_node(e, p, now));
    return;
  default:
    return;
  }
}

static dht_ts fz_svc_expiry(void *ctx) {
  const fz *h = ctx;
  return h->svc.due;
}

static void fz_svc_timer(void *ctx, dht *e, dht_ts now) {
  fz *h = ctx;
  if (now < h->svc.due || now != h->now)
    abort(); /* called before it was due */
  uint8_t out[16];
  dht_wire_w w;
  dht_wire_w_init(&w, out, sizeof out);
  dht_wire_w_array(&w, 4);
  dht_wire_w_uint(&w, FZ_SVC_RING);
  dht_wire_w_uint(&w, h->svc.txid);
  dht_wire_w_bool(&w, h->svc.flag);
  dht_wire_w_nil(&w);
  if (w.err)
    abort();
  h->svc.due = DHT_TS_NEVER;
  fz_svc_send(e, &h->svc.to, out, w.len);
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

  if (!(sel & FZ_SEL_REPLAY) || p->nonce_ctr == 0)
    p->nonce_ctr++;
  size_t n = fc_seal(&p->box, (uint8_t)(0xf0 | i), p->nonce_ctr, h->k->self.pk, b, len, h->pkt,
                     sizeof h->pkt);
  dht_addr from;
  fz_peer_addr(i, (sel & FZ_SEL_V6) != 0, &from);
  dht_stats before, after;
  if (tamper) {
    h->pkt[off % n] ^= mask ? mask : 0x80;
    dht_get_stats(h->e, &before);
  } else {
    fz_note_body(h, b, len);
  }
  if (d1_read(h->e, &from, h->pkt, n, h->now) != 0)
    abort();
  if (tamper) {
    /* a changed datagram must not authenticate */
    dht_get_stats(h->e, &after);
    if (after.drop_replay != before.drop_replay || after.drop_malformed != before.drop_malformed ||
        after.drop_unknown_type != before.drop_unknown_type ||
        after.drop_unknown_txid != before.drop_unknown_txid ||
        after.requests_in != before.requests_in || after.replies_in != before.replies_in)
      abort();
  }
}

static void fz_raw(fz *h, const uint8_t *data, size_t len) {
  /* a raw datagram can still be a valid one (a seed may hold one) */
  if (len >= DHT_OVERHEAD && len <= DHT_MAX_PKT) {
    for (int i = 0; i < FZ_PEERS; i++) {
      if (memcmp(data + 1, h->k->peer[i].pk, DHT_PK_LEN) != 0)
        continue;
      dht_ssize n = dht_box_open(h->k->entry[i], data, len, h->body, sizeof h->body);
      if (n >= 0)
        fz_note_body(h, h->body, (size_t)n);
    }
  }
  dht_addr a;
  fz_addr_a(&a);
  if (d1_read(h->e, &a, data, len, h->now) != 0)
    abort();
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
    dht_get_stats(h->e, &st);
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

  const uint8_t *cp = NULL;
  size_t clen = 0;
  size_t pos = fc_op_config(data, size, FZ_OP_COUNT, FZ_OP_CONFIG, &cp, &clen);
  if (pos)
    fz_config(&h->set, cp, clen);
  dht_callbacks cb = {.ctx = &h->rng, .rand = fz_rand, .log = fz_log};
  fc_engine_new(&h->e, &h->k->self, &h->set, &cb, h->now);
  if (memcmp(dht_self_pk(h->e), h->k->self.pk, DHT_PK_LEN) != 0 ||
      memcmp(dht_self_id(h->e), h->k->self_id, DHT_ID_LEN) != 0)
    abort();
  h->svc.due = DHT_TS_NEVER;
  dht_service svc = {.type_lo = FZ_SVC_LO,
                     .type_hi = FZ_SVC_HI,
                     .ctx = h,
                     .on_msg = fz_svc_msg,
                     .get_expiry = fz_svc_expiry,
                     .handle_expiry = fz_svc_timer};
  if (dht_service_add(h->e, &svc) != 1)
    abort();
  svc.type_lo = FZ_SVC_HI; /* overlaps: refused */
  svc.type_hi = FZ_SVC_HI + 1;
  if (dht_service_add(h->e, &svc) != DHT_ERR_INVAL)
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
    default: /* FZ_OP_CONFIG after the first op */
      break;
    }
    fz_drain(h);
  }

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

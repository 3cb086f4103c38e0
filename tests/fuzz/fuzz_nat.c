/*
 * fuzz_nat.c - the libFuzzer target for the NAT service (nat/, message
 * types 0x40-0x4f): the address vote and the dial-backs in their three
 * roles (tested, helper, prober).
 *
 * It owns: an interpreter that turns one input into calls on ONE fresh
 * engine with a nat_svc plugged in (server, auto or client mode, by the
 * CONFIG op); six simulated senders with fixed identities (four peers that
 * answer the engine's core requests by themselves, PONG with the `seen`
 * address an input chose, NODES listing each other with a token, ACK; and
 * two outsiders the engine never hears of except through the input) that
 * seal bodies with their own dht_box; structured NAT messages (DIAL_REQ with
 * a real, borrowed, made-up or damaged cookie; DIAL_FWD naming any target
 * and key; PROBE with the nonce of one of the engine's dial-backs or
 * another; answers to the engine's NAT requests with the right or a wrong
 * txid); and the oracles.  A broken oracle is abort(), which libFuzzer
 * reports as a crash.
 *
 * Input: ops [u8 op][u16 len, big-endian][len bytes]; a truncated tail ends
 * the input; at most FN_MAX_OPS ops run.  op % 9 is:
 *   0 BODY    [sel][body]: sender sel % 8 (6, 7: peers 0, 1) seals body;
 *             sel bit 3 from its IPv6 address, bit 4 from its other port,
 *             bit 5 a fixint type is folded into 0x40-0x4f, bit 6 the txid
 *             becomes that of the engine's newest request to the sender,
 *             bit 7 the first bin 16 becomes the cookie the engine gave that
 *             address (fn_body).
 *   1 TIME    [ms u16][shift]: advance by ms << 2 * (shift & 7), running the
 *             timers on the way (at most FN_MAX_ADVANCE per input); shift
 *             bit 7: stop once a timer sent a NAT request.
 *   2 NAT     [kind][sel][args]: a structured NAT message (fn_nat).
 *   3 ANSWER  [sel][idx][variant][status]: a sender answers one of the NAT
 *             requests the engine sent it (fn_answer).
 *   4 PONG    [sel][idx][seen][raw]: a sender answers one of the engine's
 *             PINGs with a chosen `seen` (fn_pong).
 *   5 SEEN    [who][seen]: what a peer's automatic PONGs report from now on.
 *   6 CMD     [which][args]: the driver acts (fn_cmd).
 *   7 RAW     [bytes]: dht_read_pkt of the bytes as they are.
 *   8 CONFIG  [flags][more]: first op only (fn_config).
 *
 * Oracles (each abort()):
 *  - every datagram the engine writes that a known identity opens has a body
 *    its own codec accepts: nat_wire_decode 0 for 0x40-0x4f, dht_msg_decode
 *    0 for core types, and no other type;
 *  - prober: every PROBE answers a DIAL_FWD delivered to the engine: sealed
 *    to the key it named, to exactly the target it named, with its nonce, no
 *    larger on the wire than the DIAL_FWD, at most one per DIAL_FWD, and at
 *    most one per asker network per prober_gap_ms; probes_sent never exceeds
 *    the DIAL_FWDs delivered;
 *  - helper: every DIAL_FWD the engine writes names the key, nonce, IP and
 *    port of a DIAL_REQ delivered to it whose cookie is one the engine gave
 *    that key at that very address (a made-up, borrowed or damaged cookie
 *    never leads to a DIAL_FWD); the prober is not the requester, has its
 *    family and is outside its Bloom filter; one requester network is
 *    forwarded at most every helper_gap_ms; helped <= DIAL_REQs delivered;
 *  - nat_get_status's counters only grow; the dial-backs that ended (ok,
 *    failed, inconclusive) never outnumber those started, and at most
 *    NAT_DIALS are open; dials_ok grows only in the read of a PROBE with a
 *    nonce the engine put in a DIAL_REQ, by one, once per nonce; reports
 *    taken or ignored never outnumber the PONGs delivered;
 *  - the vote: its address (per family) is an IP the harness reported in a
 *    PONG's `seen`, and when the mapping is endpoint-independent, with a
 *    port reported with that IP; a reachable address is one of those IPs;
 *  - the mode: server mode stays a server and client mode a client (no mode
 *    change counted); auto starts as a client, becomes a server only in the
 *    read of a PROBE carrying the nonce of an engine DIAL_REQ, and a client
 *    again only when the reach is "no" after fails_to_client failures or a
 *    symmetric mapping;
 *  - bounded state: dht_svc_pending of the service within max_requests;
 *    the driver never sees DHT_EV_ADDR_SEEN (the service takes them all);
 *    after the timers ran the next expiry is in the future; dht_read_pkt and
 *    dht_handle_expiry return 0;
 *  - ASan, UBSan, LeakSanitizer.
 *
 * A datagram no known identity opens (a PROBE sealed to a made-up key, or
 * a contact whose key only a crafted body taught the engine) is counted and
 * otherwise not checked.
 *
 * Determinism: fixed identities, a ChaCha20 stream (tu_rng) for the rand
 * callback, a fixed clock.  The only global is the key setup made once on
 * first use.  tests/fuzz/gen_corpus_nat.c includes this file.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dht_int.h"
#include "fuzz_common.h"
#include "nat.h"
#include "nat_int.h"
#include "nat_wire.h"
#include "testutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FN_PEERS 4          /* answer core requests, listed in NODES */
#define FN_WHO 6            /* senders: the peers and two outsiders */
#define FN_NID (FN_WHO + 1) /* identities: 0 the engine, 1.. the senders */
#define FN_MAX_OPS 192
#define FN_MAX_ADVANCE (6LL * 3600 * 1000)
#define FN_EXPIRY_STEPS 128
#define FN_RING 8    /* engine requests remembered per sender */
#define FN_ROUNDS 16 /* automatic answer rounds per drain */
#define FN_AUTOQ 64
#define FN_TOKENS 32 /* tokens the engine gave, remembered */
#define FN_DREQS 16  /* DIAL_REQs delivered, remembered */
#define FN_ASKS 16   /* DIAL_FWDs delivered, remembered */
#define FN_NONCES 8  /* nonces of the engine's DIAL_REQs */
#define FN_SEENS 64  /* `seen` addresses reported */
#define FN_FWDS 16   /* DIAL_FWDs the engine wrote: requester and time */
#define FN_ALT_PORT 1000

enum {
  FN_OP_BODY,
  FN_OP_TIME,
  FN_OP_NAT,
  FN_OP_ANSWER,
  FN_OP_PONG,
  FN_OP_SEEN,
  FN_OP_CMD,
  FN_OP_RAW,
  FN_OP_CONFIG,
  FN_OP_COUNT
};

/* NAT kinds (fn_nat) */
enum {
  FN_NAT_DIAL_REQ,
  FN_NAT_DIAL_FWD,
  FN_NAT_PROBE,
  FN_NAT_STRAY, /* an answer type nobody asked for */
  FN_NAT_COUNT
};

/* CMD (fn_cmd) */
enum { FN_CMD_BOOT, FN_CMD_PING, FN_CMD_FIND, FN_CMD_ASK, FN_CMD_COUNT };

/* CONFIG flags, first byte; bits 0-1 the mode: 0 server, 1 auto, 2 client, 3 auto */
#define FN_CFG_NOPONG 0x04  /* peers leave PINGs to PONG ops */
#define FN_CFG_NOBOOT 0x08  /* no bootstrap at the start */
#define FN_CFG_TIGHT 0x10   /* fast NAT timers, min_votes 1, fails_to_client 1, no gaps */
#define FN_CFG_SMALL 0x20   /* max_requests 3, unsolicited_burst 1, out queue 16 */
#define FN_CFG_V6 0x40      /* NODES list the peers' IPv6 addresses too */
#define FN_CFG_NOTOKEN 0x80 /* NODES carry no cookie for the engine */
/* second byte */
#define FN_CFG2_SOCKS1 0x01 /* nat max_sockets 1 */
#define FN_CFG2_AMP1 0x02   /* amplification factor 1 */
#define FN_CFG2_MINV2 0x04  /* min_votes 2 */
#define FN_CFG2_SLOW 0x08   /* long gaps: helper 60 s, prober 30 s */

/* ---- the immutable setup ------------------------------------------------ */

typedef struct fn_keys {
  dht_identity id[FN_NID];
  uint8_t entry[FN_NID][DHT_BOX_ENTRY_LEN]; /* identity i's box entry for the engine */
} fn_keys;

static const uint8_t fn_hkey[16] = "roost-fznat-hkey";
static fn_keys fn_k;
static bool fn_k_ready;

static const fn_keys *fn_setup(void) {
  if (fn_k_ready)
    return &fn_k;
  if (sodium_init() < 0)
    abort();
  for (int n = 0; n < FN_NID; n++)
    fc_identity(&fn_k.id[n], 0x6e, n);
  /* the engine's entry for itself too: a DIAL_FWD may name our own key */
  for (int n = 0; n < FN_NID; n++)
    fc_box_entry(fn_k.entry[n], &fn_k.id[n], fn_hkey, fn_k.id[0].pk);
  fn_k_ready = true;
  return &fn_k;
}

/* Sender i's address: distinct /24s and /48s (the vote and the helper
 * count networks); alt: the same IP, another port (another NAT mapping). */
static void fn_addr(int i, bool v6, bool alt, dht_addr *a) {
  static const uint8_t v4[FN_WHO][4] = {{192, 0, 2, 40},  {198, 51, 100, 41}, {203, 0, 113, 42},
                                        {198, 18, 0, 43}, {45, 67, 89, 44},   {100, 64, 7, 45}};
  memset(a, 0, sizeof *a);
  if (v6) {
    a->family = DHT_AF_INET6;
    a->ip[0] = 0x20, a->ip[1] = 0x01, a->ip[2] = 0x0d, a->ip[3] = 0xb8;
    a->ip[4] = (uint8_t)(0x10 + i);
    a->ip[15] = (uint8_t)(0x40 + i);
  } else {
    a->family = DHT_AF_INET;
    memcpy(a->ip, v4[i], 4);
  }
  a->port = (uint16_t)(6000 + i + (alt ? FN_ALT_PORT : 0));
}

static void fn_addr_fc(int i, bool v6, dht_addr *a) {
  fn_addr(i, v6, false, a);
}

/* The sender at a (any of its addresses), or -1. */
static int fn_who_at(const dht_addr *a) {
  for (int i = 0; i < FN_WHO; i++)
    for (int x = 0; x < 4; x++) {
      dht_addr p;
      fn_addr(i, x & 1, x & 2, &p);
      if (dht_addr_eq(a, &p))
        return i;
    }
  return -1;
}

/* The `seen` addresses automatic PONGs and PONG ops choose from. */
static void fn_seen(int idx, dht_addr *a) {
  memset(a, 0, sizeof *a);
  switch (idx & 7) {
  case 0:
  case 1:
  case 2:
    a->family = DHT_AF_INET;
    a->ip[0] = 203, a->ip[1] = 0, a->ip[2] = 113, a->ip[3] = 200;
    a->port = (uint16_t)(40000 + (idx == 1));
    if (idx == 2)
      a->ip[0] = 198, a->ip[1] = 51, a->ip[2] = 100;
    break;
  case 3:
  case 4:
    a->family = DHT_AF_INET6;
    a->ip[0] = 0x20, a->ip[1] = 0x01, a->ip[2] = 0x0d, a->ip[3] = 0xb8, a->ip[4] = 0xaa;
    a->ip[15] = 1;
    a->port = (uint16_t)(idx == 3 ? 40000 : 40002);
    break;
  case 5:
    a->family = DHT_AF_INET;
    a->ip[0] = 127, a->ip[3] = 1;
    a->port = 40000;
    break;
  case 6: /* v4-mapped */
    a->family = DHT_AF_INET6;
    a->ip[10] = 0xff, a->ip[11] = 0xff;
    a->ip[12] = 203, a->ip[13] = 0, a->ip[14] = 113, a->ip[15] = 200;
    a->port = 40000;
    break;
  default: /* 10.0.0.1: a LAN */
    a->family = DHT_AF_INET;
    a->ip[0] = 10, a->ip[3] = 1;
    a->port = 40000;
    break;
  }
}

/* ---- per-input state ------------------------------------------------------ */

typedef struct fn_req { /* a request the engine sent to a sender */
  uint8_t type;
  uint32_t txid;
  bool answered;
  dht_addr to;
} fn_req;

typedef struct fn_who_st {
  bool ready;
  dht_box box;
  uint64_t nonce_ctr;
  uint8_t seen; /* what automatic PONGs report */
  fn_req ring[FN_RING];
  int nring;
} fn_who_st;

typedef struct fn_token { /* a token the engine gave identity who at addr */
  int who;
  dht_addr addr;
  uint8_t tok[DHT_TOKEN_LEN];
} fn_token;

typedef struct fn_dreq { /* a DIAL_REQ delivered to the engine */
  int who;
  dht_addr from;
  uint16_t port;
  uint8_t nonce[NAT_NONCE_LEN];
  bool cookie_ok, has_bloom;
  uint8_t bloom[NAT_BLOOM_LEN];
} fn_dreq;

typedef struct fn_ask { /* a DIAL_FWD delivered to the engine */
  dht_addr target, from;
  uint8_t pk[DHT_PK_LEN], nonce[NAT_NONCE_LEN];
  size_t wire_len;
  dht_ts at;
  bool probed;
} fn_ask;

typedef struct fn_nonce { /* the nonce of an engine DIAL_REQ */
  uint8_t n[NAT_NONCE_LEN];
  bool proven;
} fn_nonce;

typedef struct fn_fwd { /* a DIAL_FWD the engine wrote, by requester */
  dht_addr req;
  dht_ts at;
} fn_fwd;

typedef struct fn_auto {
  int who;
  dht_addr to; /* the address the request went to: the answer comes from there */
  uint16_t len;
  uint8_t body[DHT_MAX_BODY];
} fn_auto;

typedef struct fn {
  const fn_keys *k;
  dht *e;
  nat_svc *nat;
  dht_settings set;
  nat_settings ns;
  tu_rng rng;
  uint8_t cfg, cfg2;
  dht_ts now, advanced;
  fn_who_st w[FN_WHO];
  fn_token tok[FN_TOKENS];
  int ntok;
  fn_dreq dreq[FN_DREQS];
  int ndreq;
  fn_ask ask[FN_ASKS];
  int nask;
  fn_nonce nonce[FN_NONCES];
  int nnonce;
  fn_fwd fwd[FN_FWDS];
  int nfwd;
  dht_addr seen[FN_SEENS];
  int nseen;
  bool seen_overflow;
  fn_ask probe_at[FN_ASKS]; /* asks that drew a probe: asker and time */
  int nprobe_at;
  /* counts for the oracles */
  uint64_t dreqs_in, fwds_in, pongs_in, unopened, sent_ctr;
  uint64_t nat_reqs, time_reqs; /* NAT requests the engine wrote; at the TIME op's start */
  bool probe_hit;               /* this read delivered a PROBE with an engine nonce */
  int probe_hit_ix;             /* ... which one */
  nat_status last;
  bool have_last;
  fn_auto q[FN_AUTOQ];
  int nq;
  uint8_t pkt[DHT_MAX_PKT + 64];
  uint8_t body[DHT_MAX_BODY + 64];
  /* what gen_corpus_nat prints */
  uint64_t nat_out[NAT_MSG_HI - NAT_MSG_LO + 1], nat_in[NAT_MSG_HI - NAT_MSG_LO + 1];
} fn;

static fn_who_st *fn_who(fn *h, int i) {
  fn_who_st *w = &h->w[i];
  if (w->ready)
    return w;
  fc_box_ready(&w->box, &h->k->id[i + 1], fn_hkey, h->k->id[0].pk, h->k->entry[i + 1]);
  w->ready = true;
  return w;
}

/* ---- helpers for the oracles ------------------------------------------------ */

/* nat/'s idea of "one network": /24, /48, the whole address on loopback and LANs. */
static bool fn_same_net(const dht_addr *a, const dht_addr *b) {
  if (a->family != b->family)
    return false;
  int sa = dht_addr_scope(a), sb = dht_addr_scope(b);
  bool wa = sa == DHT_SCOPE_LOOPBACK || sa == DHT_SCOPE_LAN;
  bool wb = sb == DHT_SCOPE_LOOPBACK || sb == DHT_SCOPE_LAN;
  if (wa || wb)
    return wa && wb && dht_addr_eq(a, b);
  return memcmp(a->ip, b->ip, a->family == DHT_AF_INET ? 3 : 6) == 0;
}

static bool fn_in_bloom(const uint8_t bloom[static NAT_BLOOM_LEN], const dht_addr *a) {
  uint32_t hv = dht_dest_hash(a);
  for (int k = 0; k < 3; k++) {
    uint8_t bit = (uint8_t)(hv >> (8 * k));
    if (!(bloom[bit >> 3] & (1u << (bit & 7))))
      return false;
  }
  return true;
}

static void fn_seen_add(fn *h, const dht_addr *a) {
  for (int i = 0; i < h->nseen; i++)
    if (h->seen[i].family == a->family && h->seen[i].port == a->port &&
        memcmp(h->seen[i].ip, a->ip, 16) == 0)
      return;
  if (h->nseen == FN_SEENS) {
    h->seen_overflow = true; /* the vote check stops: never wrong */
    return;
  }
  h->seen[h->nseen++] = *a;
}

/* Was ip (with port, when port >= 0) reported for family? */
static bool fn_seen_has(const fn *h, uint8_t family, const uint8_t ip[16], int port) {
  for (int i = 0; i < h->nseen; i++)
    if (h->seen[i].family == family && memcmp(h->seen[i].ip, ip, 16) == 0 &&
        (port < 0 || h->seen[i].port == port))
      return true;
  return false;
}

static bool fn_token_given(const fn *h, int who, const dht_addr *a, const uint8_t *tok) {
  for (int i = 0; i < h->ntok; i++)
    if (h->tok[i].who == who && dht_addr_eq(&h->tok[i].addr, a) &&
        memcmp(h->tok[i].tok, tok, DHT_TOKEN_LEN) == 0)
      return true;
  return false;
}

/* The newest token the engine gave sender who at a, or NULL. */
static const uint8_t *fn_token_of(const fn *h, int who, const dht_addr *a) {
  for (int i = 0; i < h->ntok; i++)
    if (h->tok[i].who == who && dht_addr_eq(&h->tok[i].addr, a))
      return h->tok[i].tok;
  return NULL;
}

static int fn_nonce_ix(const fn *h, const uint8_t *n) {
  for (int i = 0; i < h->nnonce; i++)
    if (memcmp(h->nonce[i].n, n, NAT_NONCE_LEN) == 0)
      return i;
  return -1;
}

/* The whole status after every engine call: counters only grow, the vote
 * says what was reported, the mode moves only as the rules say. */
static void fn_check(fn *h) {
  nat_status st;
  nat_get_status(h->nat, h->now, &st);
  if (st.server != dht_is_server(h->e) || st.mode != h->ns.mode)
    abort();
  int pend = dht_svc_pending(h->e, h->nat->svc_id);
  if (pend < 0 || pend > h->set.max_requests)
    abort();
  uint64_t ended = st.dials_ok + st.dials_failed + st.dials_inconclusive;
  if (ended > st.dials || st.dials - ended > NAT_DIALS)
    abort();
  if (st.helped > h->dreqs_in || st.probes_sent > h->fwds_in ||
      st.reports + st.reports_ignored > h->pongs_in)
    abort();
  if (st.fails < 0 || st.reach < NAT_REACH_UNKNOWN || st.reach > NAT_REACH_NO)
    abort();
  /* the vote: only what was reported */
  for (int f = 0; f < 2 && !h->seen_overflow; f++) {
    const nat_vote_result *v = &st.vote[f];
    uint8_t fam = f ? DHT_AF_INET6 : DHT_AF_INET;
    if (v->known && v->prefixes < h->ns.vote.min_votes)
      abort();
    if (v->addr.family == 0)
      continue;
    if (v->addr.family != fam || !fn_seen_has(h, fam, v->addr.ip, -1))
      abort(); /* an address nobody reported */
    if (v->mapping == NAT_MAP_EIM && !fn_seen_has(h, fam, v->addr.ip, v->addr.port))
      abort();
  }
  if (st.reach == NAT_REACH_YES && !h->seen_overflow &&
      !fn_seen_has(h, st.reach_addr.family, st.reach_addr.ip, -1))
    abort();
  /* modes */
  if (h->ns.mode == NAT_MODE_SERVER && !st.server)
    abort();
  if (h->ns.mode == NAT_MODE_CLIENT && st.server)
    abort();
  if (h->have_last) {
    const nat_status *o = &h->last;
    if (st.dials < o->dials || st.dials_ok < o->dials_ok || st.dials_failed < o->dials_failed ||
        st.dials_inconclusive < o->dials_inconclusive || st.helped < o->helped ||
        st.probes_sent < o->probes_sent || st.refused < o->refused ||
        st.mode_changes < o->mode_changes || st.dropped < o->dropped ||
        st.witnesses_asked < o->witnesses_asked || st.reports < o->reports ||
        st.reports_ignored < o->reports_ignored)
      abort();
    /* fixed modes: the one change at the start (to a client) and no other */
    if (h->ns.mode != NAT_MODE_AUTO && st.mode_changes != o->mode_changes)
      abort();
    if (st.dials_ok != o->dials_ok) {
      /* one proof, by a probe with the nonce of one of our dial-backs, once */
      if (!h->probe_hit || st.dials_ok != o->dials_ok + 1 || h->nonce[h->probe_hit_ix].proven)
        abort();
      h->nonce[h->probe_hit_ix].proven = true;
    }
    if (h->ns.mode == NAT_MODE_AUTO && st.server && !o->server && !h->probe_hit)
      abort(); /* a server without a probe getting in */
    if (h->ns.mode == NAT_MODE_AUTO && !st.server && o->server) {
      const nat_vote_result *v = st.vote[0].known ? &st.vote[0] : &st.vote[1];
      bool edm = v->known && v->mapping == NAT_MAP_EDM;
      if (st.reach != NAT_REACH_NO || (st.fails < h->ns.fails_to_client && !edm))
        abort();
    }
  } else if (h->ns.mode == NAT_MODE_AUTO && st.server) {
    abort(); /* auto starts as a client */
  }
  h->last = st;
  h->have_last = true;
  h->probe_hit = false;
}

/* ---- sending to the engine ---------------------------------------------------- */

/* Notes what a body of ours means to the NAT oracles before the engine reads it. */
static void fn_note_in(fn *h, int who, const dht_addr *from, const uint8_t *b, size_t len,
                       size_t wire) {
  nat_wire_msg m;
  if (nat_wire_decode(&m, b, len) != 0)
    return;
  h->nat_in[m.type - NAT_MSG_LO]++;
  switch (m.type) {
  case NAT_T_DIAL_REQ: {
    fc_ring_push(h->dreq, sizeof h->dreq[0], FN_DREQS, &h->ndreq);
    fn_dreq *d = &h->dreq[0];
    memset(d, 0, sizeof *d);
    d->who = who;
    d->from = *from;
    d->port = m.u.dial_req.port;
    memcpy(d->nonce, m.u.dial_req.nonce, NAT_NONCE_LEN);
    d->cookie_ok = fn_token_given(h, who, from, m.u.dial_req.cookie);
    d->has_bloom = m.u.dial_req.exclude != NULL;
    if (d->has_bloom)
      memcpy(d->bloom, m.u.dial_req.exclude, NAT_BLOOM_LEN);
    h->dreqs_in++;
    break;
  }
  case NAT_T_DIAL_FWD: {
    fc_ring_push(h->ask, sizeof h->ask[0], FN_ASKS, &h->nask);
    fn_ask *a = &h->ask[0];
    memset(a, 0, sizeof *a);
    a->target = m.u.dial_fwd.target;
    a->from = *from;
    memcpy(a->pk, m.u.dial_fwd.pk, DHT_PK_LEN);
    memcpy(a->nonce, m.u.dial_fwd.nonce, NAT_NONCE_LEN);
    a->wire_len = wire;
    a->at = h->now;
    h->fwds_in++;
    break;
  }
  case NAT_T_PROBE: {
    int ix = fn_nonce_ix(h, m.u.probe.nonce);
    if (ix >= 0) {
      h->probe_hit = true;
      h->probe_hit_ix = ix;
    }
    break;
  }
  default:
    break;
  }
}

/* Sender who seals body and the engine reads it from from, on socket local. */
static void fn_send_at(fn *h, int who, const dht_addr *from, uint32_t local, const uint8_t *body,
                       size_t len) {
  fn_who_st *w = fn_who(h, who);
  if (len > DHT_MAX_BODY)
    return;
  w->nonce_ctr++;
  size_t n = fc_seal(&w->box, (uint8_t)(0xd0 | who), w->nonce_ctr, h->k->id[0].pk, body, len,
                     h->pkt, sizeof h->pkt);
  fn_note_in(h, who, from, body, len, n);
  uint8_t type;
  uint32_t txid;
  if (dht_msg_peek(body, len, &type, &txid) == 0 && type == DHT_MSG_PONG) {
    dht_msg pm;
    if (dht_msg_decode(&pm, body, len) == 0) {
      fn_seen_add(h, &pm.seen);
      h->pongs_in++;
    }
  }
  dht_path p = {.local = local, .remote = *from};
  if (dht_read_pkt(h->e, &p, h->pkt, n, h->now) != 0)
    abort();
  fn_check(h);
}

static void fn_send(fn *h, int who, bool v6, bool alt, const uint8_t *body, size_t len) {
  dht_addr from;
  fn_addr(who, v6, alt, &from);
  fn_send_at(h, who, &from, 0, body, len);
}

/* ---- what the engine sends ------------------------------------------------------ */

static void fn_ring_add(fn *h, int who, uint8_t type, uint32_t txid, const dht_addr *to) {
  fn_who_st *w = &h->w[who];
  fc_ring_push(w->ring, sizeof w->ring[0], FN_RING, &w->nring);
  fn_req *q = &w->ring[0];
  memset(q, 0, sizeof *q);
  q->type = type;
  q->txid = txid;
  q->to = *to;
}

/* A DIAL_FWD the engine wrote to prober `to` (identity pw, -1 for the
 * engine itself): it must come from a DIAL_REQ with a valid cookie. */
static void fn_take_fwd(fn *h, const nat_wire_msg *m, const dht_addr *to, int pw) {
  const fn_dreq *d = NULL;
  bool asked = false;
  for (int i = 0; i < h->ndreq && !d; i++) {
    const fn_dreq *x = &h->dreq[i];
    if (memcmp(x->nonce, m->u.dial_fwd.nonce, NAT_NONCE_LEN) != 0 ||
        memcmp(h->k->id[x->who + 1].pk, m->u.dial_fwd.pk, DHT_PK_LEN) != 0 ||
        x->from.family != m->u.dial_fwd.target.family ||
        memcmp(x->from.ip, m->u.dial_fwd.target.ip, 16) != 0 ||
        x->port != m->u.dial_fwd.target.port || !x->cookie_ok)
      continue;
    asked = true;
    /* the prober the rules allow: not the requester, its family, another
     * network, outside the requester's filter */
    if (pw != x->who && to->family == x->from.family && !fn_same_net(to, &x->from) &&
        !(x->has_bloom && fn_in_bloom(x->bloom, to)))
      d = x;
  }
  if (!asked)
    abort(); /* a dial-back no DIAL_REQ with a valid cookie asked for, or at another IP */
  if (!d)
    abort(); /* a prober the rules exclude */
  for (int i = 0; i < h->nfwd; i++)
    if (fn_same_net(&h->fwd[i].req, &d->from) && h->now - h->fwd[i].at < h->ns.helper_gap_ms)
      abort(); /* one requester network served twice within helper_gap_ms */
  fc_ring_push(h->fwd, sizeof h->fwd[0], FN_FWDS, &h->nfwd);
  h->fwd[0].req = d->from;
  h->fwd[0].at = h->now;
}

/* A PROBE the engine wrote to `to`, sealed to identity key (0 the engine's,
 * else sender key - 1), n bytes on the wire. */
static void fn_take_probe(fn *h, const nat_wire_msg *m, const dht_addr *to, int key, size_t n) {
  fn_ask *a = NULL;
  for (int i = 0; i < h->nask && !a; i++) {
    fn_ask *x = &h->ask[i];
    if (!x->probed && memcmp(x->nonce, m->u.probe.nonce, NAT_NONCE_LEN) == 0 &&
        memcmp(x->pk, h->k->id[key].pk, DHT_PK_LEN) == 0 && dht_addr_eq(&x->target, to))
      a = x;
  }
  if (!a || n > a->wire_len)
    abort(); /* a probe nobody asked for, elsewhere, or larger than what asked */
  for (int i = 0; i < h->nprobe_at; i++)
    if (fn_same_net(&h->probe_at[i].from, &a->from) &&
        a->at - h->probe_at[i].at < h->ns.prober_gap_ms)
      abort(); /* one asker network honoured twice within prober_gap_ms */
  a->probed = true;
  fc_ring_push(h->probe_at, sizeof h->probe_at[0], FN_ASKS, &h->nprobe_at);
  h->probe_at[0] = *a;
}

/* A NAT body the engine sent (to sender who, or -1; sealed to key). */
static void fn_take_nat(fn *h, int who, int key, const dht_addr *to, const uint8_t *b, size_t len,
                        size_t n) {
  nat_wire_msg m;
  if (nat_wire_decode(&m, b, len) != 0)
    abort(); /* the engine sent a NAT body its own codec drops */
  h->nat_out[m.type - NAT_MSG_LO]++;
  switch (m.type) {
  case NAT_T_DIAL_REQ:
    if (h->nnonce == 0 || memcmp(h->nonce[0].n, m.u.dial_req.nonce, NAT_NONCE_LEN) != 0) {
      if (fn_nonce_ix(h, m.u.dial_req.nonce) < 0) { /* not a retry */
        fc_ring_push(h->nonce, sizeof h->nonce[0], FN_NONCES, &h->nnonce);
        memcpy(h->nonce[0].n, m.u.dial_req.nonce, NAT_NONCE_LEN);
        h->nonce[0].proven = false;
      }
    }
    break;
  case NAT_T_DIAL_FWD:
    fn_take_fwd(h, &m, to, key - 1);
    break;
  case NAT_T_PROBE:
    fn_take_probe(h, &m, to, key, n);
    break;
  case NAT_T_VOUCH_REQ: /* the engine checks a stranger, or vouches */
  case NAT_T_CHECK:
    break;
  default:
    return; /* an answer, or a VOUCHED */
  }
  h->nat_reqs++;
  if (who >= 0)
    fn_ring_add(h, who, m.type, m.txid, to);
}

/* A peer's automatic answer to a core request. */
static void fn_auto_answer(fn *h, int who, const dht_addr *to, const dht_msg *m) {
  if (h->nq >= FN_AUTOQ)
    return;
  dht_msg a;
  memset(&a, 0, sizeof a);
  a.txid = m->txid;
  switch (m->type) {
  case DHT_MSG_PING:
    if (h->cfg & FN_CFG_NOPONG)
      return;
    a.type = DHT_MSG_PONG;
    fn_seen(h->w[who].seen, &a.seen);
    break;
  case DHT_MSG_PUT:
    a.type = DHT_MSG_ACK;
    a.status = DHT_ACK_OK;
    break;
  case DHT_MSG_FIND_NODE:
  case DHT_MSG_GET:
    a.type = DHT_MSG_NODES;
    a.token_len = DHT_TOKEN_LEN; /* NODES always carry one: a wrong one without cookies */
    memset(a.token, (h->cfg & FN_CFG_NOTOKEN) ? 0 : 0x70 + who, DHT_TOKEN_LEN);
    for (int j = 0; j < FN_PEERS; j++) {
      for (int v6 = 0; v6 < ((h->cfg & FN_CFG_V6) ? 2 : 1); v6++) {
        if (j == who)
          continue;
        memcpy(a.contacts[a.ncontacts].pk, h->k->id[j + 1].pk, DHT_PK_LEN);
        fn_addr(j, v6, false, &a.contacts[a.ncontacts].addr);
        a.ncontacts++;
      }
    }
    break;
  default:
    return;
  }
  fn_auto *q = &h->q[h->nq];
  dht_ssize n = dht_msg_encode(&a, q->body, sizeof q->body);
  if (n < 0)
    abort();
  q->who = who;
  q->to = *to;
  q->len = (uint16_t)n;
  h->nq++;
}

/* One datagram the engine wrote: open it, check it, note it. */
static void fn_take(fn *h, const uint8_t *pkt, size_t n, const dht_addr *to) {
  int who = fn_who_at(to);
  int key = -1;
  dht_ssize bn = -1;
  if (who >= 0) {
    bn = dht_box_open(h->k->entry[who + 1], pkt, n, h->body, sizeof h->body);
    if (bn >= 0)
      key = who + 1;
  }
  for (int k = 0; k < FN_NID && bn < 0; k++) {
    bn = dht_box_open(h->k->entry[k], pkt, n, h->body, sizeof h->body);
    if (bn >= 0)
      key = k;
  }
  if (bn < 0) {
    h->unopened++; /* sealed to a key no sender holds */
    return;
  }
  if (key != who + 1)
    who = -1; /* to a sender's address, under another key: not its conversation */
  uint8_t type;
  uint32_t txid;
  if (dht_msg_peek(h->body, (size_t)bn, &type, &txid) != 0)
    abort();
  if (type >= NAT_MSG_LO && type <= NAT_MSG_HI) {
    fn_take_nat(h, who, key, to, h->body, (size_t)bn, n);
    return;
  }
  if (type > DHT_MSG_CORE_MAX)
    abort(); /* no other service is plugged in */
  dht_msg m;
  if (dht_msg_decode(&m, h->body, (size_t)bn) != 0)
    abort();
  if ((m.type == DHT_MSG_NODES || m.type == DHT_MSG_VALUE) && key >= 1) {
    /* a token (cookie) the engine gave identity key at to */
    fc_ring_push(h->tok, sizeof h->tok[0], FN_TOKENS, &h->ntok);
    h->tok[0].who = key - 1;
    h->tok[0].addr = *to;
    memcpy(h->tok[0].tok, m.token, DHT_TOKEN_LEN);
  }
  if (who < 0)
    return;
  if (m.type == DHT_MSG_PING || m.type == DHT_MSG_FIND_NODE || m.type == DHT_MSG_GET ||
      m.type == DHT_MSG_PUT) {
    fn_ring_add(h, who, m.type, m.txid, to);
    if (who < FN_PEERS)
      fn_auto_answer(h, who, to, &m);
  }
}

/* Drains the engine: datagrams (checked, answered), the driver's events;
 * then delivers the automatic answers, and again, a bounded number of rounds. */
static void fn_drain(fn *h) {
  for (int round = 0; round < FN_ROUNDS; round++) {
    dht_path p;
    dht_ssize n;
    while ((n = dht_write_pkt(h->e, &p, NULL, h->pkt, DHT_MAX_PKT, h->now)) != 0) {
      fc_check_dgram(n, &p.remote);
      fn_take(h, h->pkt, (size_t)n, &p.remote);
    }
    dht_event ev;
    while (dht_poll_event(h->e, &ev) == 0)
      if (ev.type == DHT_EV_ADDR_SEEN)
        abort(); /* the NAT service takes every report */
    fn_check(h);
    dht_stats st;
    dht_get_stats(h->e, &st);
    if (h->nq == 0 && st.out_queue == 0 && st.events_queued == 0)
      break;
    int nq = h->nq;
    h->nq = 0;
    for (int k = 0; k < nq; k++) {
      fn_auto a = h->q[k]; /* copy: delivering may queue more */
      fn_send_at(h, a.who, &a.to, 0, a.body, a.len);
    }
  }
}

static void fn_expire(void *ctx) {
  fn *h = ctx;
  if (dht_handle_expiry(h->e, h->now) != 0)
    abort();
  fn_check(h);
  fn_drain(h);
  if (dht_get_expiry(h->e) <= h->now)
    abort(); /* a driver would spin */
}

/* fn_time's stop: a timer run sent a NAT request since the TIME op began. */
static bool fn_time_stop(void *ctx) {
  const fn *h = ctx;
  return h->nat_reqs != h->time_reqs;
}

/* TIME [ms u16][shift]: ms << 2 * (shift & 7); with shift bit 7 the clock
 * stops at the first timer run that sent a NAT request (a DIAL_REQ), so an
 * input can answer it before it times out. */
static void fn_time(fn *h, const uint8_t *p, size_t n) {
  bool stop = n >= 3 && (p[2] & 0x80);
  h->time_reqs = h->nat_reqs;
  dht_ts target = h->now + fc_time_ms(p, n, 2, FN_MAX_ADVANCE, &h->advanced);
  if (fc_run_clock(h->e, &h->now, target, FN_EXPIRY_STEPS, fn_expire, stop ? fn_time_stop : NULL,
                   h))
    h->advanced -= target - h->now;
}

/* ---- ops ----------------------------------------------------------------------- */

static int fn_who_sel(uint8_t sel) {
  return (sel & 7) % FN_WHO;
}

/* The first bin 16 of a msgpack body (0xc4 0x10), or 0. */
static size_t fn_find_bin16(const uint8_t *b, size_t len) {
  for (size_t i = 0; i + 2 + DHT_TOKEN_LEN <= len; i++)
    if (b[i] == 0xc4 && b[i + 1] == DHT_TOKEN_LEN)
      return i + 2;
  return 0;
}

/* BODY [sel][body]: any msgpack from sender sel, with the optional patches. */
static void fn_body(fn *h, uint8_t sel, const uint8_t *body, size_t len) {
  int who = fn_who_sel(sel);
  bool v6 = sel & 8, alt = sel & 0x10;
  uint8_t b[DHT_MAX_BODY + 8];
  if (len > DHT_MAX_BODY)
    return;
  memcpy(b, body, len);
  size_t t = fc_array_head(b, len);
  if ((sel & 0x20) && t && b[t] <= 0x7f)
    b[t] = (uint8_t)(NAT_MSG_LO | (b[t] & 0x0f));
  const fn_who_st *w = &h->w[who];
  if ((sel & 0x40) && t && w->nring > 0) {
    size_t ts = fc_skip_uint(b + t, len - t, 0xcf);
    size_t x = ts ? fc_skip_uint(b + t + ts, len - t - ts, 0xcf) : 0;
    if (x)
      len = fc_patch_u32(b, len, t + ts, x, w->ring[0].txid);
  }
  if (sel & 0x80) {
    dht_addr from;
    fn_addr(who, v6, alt, &from);
    const uint8_t *tok = fn_token_of(h, who, &from);
    size_t at = fn_find_bin16(b, len);
    if (tok && at)
      memcpy(b + at, tok, DHT_TOKEN_LEN);
  }
  fn_send(h, who, v6, alt, b, len);
}

/* Sender who asks the engine a FIND_NODE from one of its addresses: the
 * NODES reply gives it a cookie for that address.  server: with the server
 * flag, so that a sender the engine does not know is a candidate. */
static void fn_ask_cookie(fn *h, int who, bool v6, bool alt, bool server) {
  dht_msg m;
  memset(&m, 0, sizeof m);
  m.type = DHT_MSG_FIND_NODE;
  if (server)
    m.flags = DHT_MSGF_SERVER;
  m.txid = (uint32_t)(0x5000 + ++h->sent_ctr);
  memset(m.target, 0x33 + who, DHT_ID_LEN);
  uint8_t b[DHT_MAX_BODY];
  dht_ssize n = dht_msg_encode(&m, b, sizeof b);
  if (n < 0)
    abort();
  fn_send(h, who, v6, alt, b, (size_t)n);
  fn_drain(h);
}

static void fn_encode_send(fn *h, int who, bool v6, bool alt, const nat_wire_msg *m) {
  uint8_t b[DHT_MAX_BODY];
  dht_ssize n = nat_wire_encode(b, sizeof b, m);
  if (n > 0)
    fn_send(h, who, v6, alt, b, (size_t)n);
}

/* A NAT target from a selector: tsel & 7 a sender (6, 7: raw bytes from
 * raw[0..5] as IPv4 or raw[0..17] as IPv6), bit 3 its IPv6 address, bit 4
 * its other port. */
static void fn_target(uint8_t tsel, const uint8_t *raw, size_t nraw, dht_addr *a) {
  int t = tsel & 7;
  if (t < FN_WHO) {
    fn_addr(t, tsel & 8, tsel & 0x10, a);
    return;
  }
  uint8_t w[DHT_WADDR6_LEN];
  memset(w, 0, sizeof w);
  memcpy(w, raw, nraw < sizeof w ? nraw : sizeof w);
  if (dht_addr_from_wire(a, w, t == 6 ? DHT_WADDR4_LEN : DHT_WADDR6_LEN) != 0 || a->port == 0)
    fn_addr(0, t == 7, false, a);
}

/* NAT [kind][sel][args]: kind % 4:
 *  0 DIAL_REQ [ck][port u16][ex][cookie 16]: sel the sender (bits as BODY's);
 *    ck & 3: 0 the cookie the engine gave this address (asked for first when
 *    there is none), 1 one it gave another address of the sender (ck bit 2:
 *    another sender's), 2 made up (the cookie bytes), 3 the real one with
 *    bit ck >> 3 flipped; port 0: the sender's own; ex & 3: no filter, all
 *    ones, the filter of peer ex >> 2 & 3's v4 address, all zeros;
 *  1 DIAL_FWD [tsel][psel][nonce 16][raw target]: the target (fn_target);
 *    psel & 7: the key of sender psel (6: the target's, 7: the engine's),
 *    bit 3 a made-up key from the nonce bytes;
 *  2 PROBE [nsel][txid][nonce 16]: nsel & 3: 0 the nonce of the engine's
 *    newest DIAL_REQ, 1 the (nsel >> 2)-th newest, 2 one of them with a bit
 *    flipped, 3 the nonce bytes; nsel bit 5: arrives on local socket 1;
 *  3 STRAY [type][txid][status]: DIAL_RESP / DIAL_FWD_ACK / PROBE_ACK nobody
 *    asked for. */
static void fn_nat(fn *h, const uint8_t *p, size_t n) {
  if (n < 2)
    return;
  int kind = p[0] % FN_NAT_COUNT;
  uint8_t sel = p[1];
  int who = fn_who_sel(sel);
  bool v6 = sel & 8, alt = sel & 0x10;
  const uint8_t *a = p + 2;
  size_t na = n - 2;
  uint8_t a0 = na ? a[0] : 0;
  nat_wire_msg m;
  memset(&m, 0, sizeof m);
  m.txid = (uint32_t)(0x7000 + ++h->sent_ctr);
  switch (kind) {
  case FN_NAT_DIAL_REQ: {
    dht_addr from;
    fn_addr(who, v6, alt, &from);
    uint8_t cookie[DHT_TOKEN_LEN], nonce[NAT_NONCE_LEN], bloom[NAT_BLOOM_LEN];
    memset(cookie, 0x5a, sizeof cookie);
    if (na > 4)
      memcpy(cookie, a + 4, na - 4 < DHT_TOKEN_LEN ? na - 4 : DHT_TOKEN_LEN);
    const uint8_t *tok = NULL;
    switch (a0 & 3) {
    case 0:
    case 3:
      tok = fn_token_of(h, who, &from);
      if (!tok) {
        fn_ask_cookie(h, who, v6, alt, false);
        tok = fn_token_of(h, who, &from);
      }
      break;
    default: {
      if ((a0 & 3) == 1) {
        dht_addr other;
        int ow = (a0 & 4) ? (who + 1) % FN_WHO : who;
        fn_addr(ow, (a0 & 4) ? v6 : !v6, alt, &other);
        tok = fn_token_of(h, ow, &other);
        if (!tok)
          fn_addr(ow, v6, !alt, &other), tok = fn_token_of(h, ow, &other);
      }
      break;
    }
    }
    if (tok)
      memcpy(cookie, tok, DHT_TOKEN_LEN);
    if ((a0 & 3) == 3)
      cookie[(a0 >> 3) & 15] ^= (uint8_t)(1u << (a0 >> 5 & 7));
    memset(nonce, 0, sizeof nonce);
    memcpy(nonce, &h->sent_ctr, sizeof h->sent_ctr);
    nonce[15] = 0xd1;
    uint16_t port = na > 2 ? (uint16_t)(a[1] << 8 | a[2]) : 0;
    m.type = NAT_T_DIAL_REQ;
    m.u.dial_req.port = port ? port : from.port;
    m.u.dial_req.nonce = nonce;
    m.u.dial_req.cookie = cookie;
    uint8_t ex = na > 3 ? a[3] : 0;
    switch (ex & 3) {
    case 1:
      memset(bloom, 0xff, sizeof bloom);
      m.u.dial_req.exclude = bloom;
      break;
    case 2: {
      dht_addr x;
      fn_addr((ex >> 2) & 3, false, false, &x);
      memset(bloom, 0, sizeof bloom);
      uint32_t hv = dht_dest_hash(&x);
      for (int k = 0; k < 3; k++) {
        uint8_t bit = (uint8_t)(hv >> (8 * k));
        bloom[bit >> 3] |= (uint8_t)(1u << (bit & 7));
      }
      m.u.dial_req.exclude = bloom;
      break;
    }
    case 3:
      memset(bloom, 0, sizeof bloom);
      m.u.dial_req.exclude = bloom;
      break;
    default:
      break;
    }
    fn_encode_send(h, who, v6, alt, &m);
    break;
  }
  case FN_NAT_DIAL_FWD: {
    uint8_t tsel = a0, psel = na > 1 ? a[1] : 0;
    uint8_t nonce[NAT_NONCE_LEN], pk[DHT_PK_LEN];
    memset(nonce, 0, sizeof nonce);
    if (na > 2)
      memcpy(nonce, a + 2, na - 2 < NAT_NONCE_LEN ? na - 2 : NAT_NONCE_LEN);
    const uint8_t *raw = na > 18 ? a + 18 : a;
    fn_target(tsel, raw, na > 18 ? na - 18 : 0, &m.u.dial_fwd.target);
    int pi = psel & 7;
    if (pi == 6)
      pi = (tsel & 7) < FN_WHO ? tsel & 7 : 0;
    if (psel & 8) {
      memset(pk, 0, sizeof pk);
      memcpy(pk, nonce, NAT_NONCE_LEN);
      pk[31] = psel;
    } else {
      memcpy(pk, h->k->id[pi == 7 ? 0 : pi + 1].pk, DHT_PK_LEN);
    }
    m.type = NAT_T_DIAL_FWD;
    m.u.dial_fwd.pk = pk;
    m.u.dial_fwd.nonce = nonce;
    fn_encode_send(h, who, v6, alt, &m);
    break;
  }
  case FN_NAT_PROBE: {
    uint8_t nonce[NAT_NONCE_LEN];
    memset(nonce, 0, sizeof nonce);
    int mode = a0 & 3;
    if (mode < 3 && h->nnonce > 0) {
      int ix = mode == 0 ? 0 : (a0 >> 2 & 7) % h->nnonce;
      memcpy(nonce, h->nonce[ix].n, NAT_NONCE_LEN);
      if (mode == 2)
        nonce[(a0 >> 4) & 15] ^= 0x01;
    } else if (na > 2) {
      memcpy(nonce, a + 2, na - 2 < NAT_NONCE_LEN ? na - 2 : NAT_NONCE_LEN);
    }
    if (na > 1)
      m.txid = a[1];
    m.type = NAT_T_PROBE;
    m.u.probe.nonce = nonce;
    uint8_t b[DHT_MAX_BODY];
    dht_ssize bl = nat_wire_encode(b, sizeof b, &m);
    if (bl <= 0)
      abort();
    dht_addr from;
    fn_addr(who, v6, alt, &from);
    fn_send_at(h, who, &from, (a0 & 0x20) ? 1 : 0, b, (size_t)bl);
    break;
  }
  default: { /* FN_NAT_STRAY */
    static const uint8_t types[3] = {NAT_T_DIAL_RESP, NAT_T_DIAL_FWD_ACK, NAT_T_PROBE_ACK};
    m.type = types[a0 % 3];
    if (na > 1)
      m.txid = a[1];
    m.u.dial_resp.status = na > 2 ? a[2] : 0;
    fn_encode_send(h, who, v6, alt, &m);
    break;
  }
  }
}

/* A request in sender who's ring: idx bit 7 the newest unanswered one of
 * (type & 0x0f) | base, else ring[idx % n]. */
static fn_req *fn_pick(fn *h, int who, uint8_t idx, uint8_t base) {
  fn_who_st *w = &h->w[who];
  if (w->nring == 0)
    return NULL;
  if (!(idx & 0x80))
    return &w->ring[idx % w->nring];
  for (int j = 0; j < w->nring; j++)
    if (!w->ring[j].answered && w->ring[j].type == (base | (idx & 0x0f)))
      return &w->ring[j];
  return NULL;
}

/* ANSWER [sel][idx][variant][status]: sender sel answers one of the NAT
 * requests the engine sent it (idx bit 7: the newest unanswered of type
 * 0x40 | (idx & 15)).  variant % 7: 0 right, 1 wrong txid, 2 the answer
 * type of another request, 3 from another sender, 4 malformed (one element
 * more), 5 right and again, 6 right, from the sender's other address.  The
 * status byte goes into DIAL_RESP and DIAL_FWD_ACK. */
static void fn_answer(fn *h, const uint8_t *p, size_t n) {
  if (n < 3)
    return;
  int who = fn_who_sel(p[0]);
  fn_req *q = fn_pick(h, who, p[1], NAT_MSG_LO);
  if (!q || q->type < NAT_MSG_LO || q->type > NAT_T_CHECK || (q->type & 1))
    return;
  q->answered = true;
  int var = p[2] % 7;
  uint8_t status = n > 3 ? p[3] : NAT_W_OK;
  uint8_t ans = (uint8_t)(q->type + 1);
  if (var == 2)
    ans = ans == NAT_T_DIAL_RESP ? NAT_T_PROBE_ACK : NAT_T_DIAL_RESP;
  uint32_t txid = q->txid + (var == 1 ? 1 : 0);
  uint8_t b[64];
  dht_wire_w w;
  dht_wire_w_init(&w, b, sizeof b);
  bool st = ans != NAT_T_PROBE_ACK && ans != NAT_T_CHECK_ACK;
  dht_wire_w_array(&w, (uint32_t)(2 + st + (var == 4)));
  dht_wire_w_uint(&w, ans);
  dht_wire_w_uint(&w, txid);
  if (st)
    dht_wire_w_uint(&w, status);
  if (var == 4)
    dht_wire_w_nil(&w);
  if (w.err)
    abort();
  int sender = var == 3 ? (who + 1) % FN_WHO : who;
  dht_addr from = q->to;
  if (var == 6)
    from.port = (uint16_t)(from.port ^ 1);
  fn_send_at(h, sender, &from, 0, b, w.len);
  if (var == 5)
    fn_send_at(h, sender, &from, 0, b, w.len);
}

/* PONG [sel][idx][seen][raw]: sender sel answers one of the engine's PINGs
 * (idx bit 7: the newest unanswered one; else ring[idx % n], any type: a
 * PONG to another request is dropped), seen & 7 from fn_seen, seen bit 3:
 * the raw bytes as a wire address (6 or 18 bytes, by bit 4); sel bits 5-7
 * the local socket (0, 0, 1, 2, 3, 4, 5, 9) it comes in on. */
static void fn_pong(fn *h, const uint8_t *p, size_t n) {
  if (n < 3)
    return;
  static const uint32_t locals[8] = {0, 0, 1, 2, 3, 4, 5, 9};
  int who = fn_who_sel(p[0]);
  fn_req *q = fn_pick(h, who, (p[1] & 0x80) ? 0x80 | DHT_MSG_PING : p[1], 0);
  dht_msg m;
  memset(&m, 0, sizeof m);
  m.type = DHT_MSG_PONG;
  m.txid = q ? q->txid : p[1];
  fn_seen(p[2] & 7, &m.seen);
  if ((p[2] & 8) && n > 3) {
    uint8_t w[DHT_WADDR6_LEN];
    memset(w, 0, sizeof w);
    memcpy(w, p + 3, n - 3 < sizeof w ? n - 3 : sizeof w);
    dht_addr a;
    if (dht_addr_from_wire(&a, w, (p[2] & 0x10) ? DHT_WADDR6_LEN : DHT_WADDR4_LEN) == 0)
      m.seen = a;
  }
  uint8_t b[DHT_MAX_BODY];
  dht_ssize bl = dht_msg_encode(&m, b, sizeof b);
  if (bl < 0)
    return; /* an address the codec refuses (port 0) */
  if (q)
    q->answered = true;
  dht_addr from;
  if (q)
    from = q->to;
  else
    fn_addr(who, false, false, &from);
  fn_send_at(h, who, &from, locals[p[0] >> 5], b, (size_t)bl);
}

static void fn_boot(fn *h) {
  dht_peer peers[FN_PEERS];
  fc_peer_list(peers, FN_PEERS, &h->k->id[1], fn_addr_fc, 0);
  dht_bootstrap(h->e, peers, FN_PEERS, h->now);
}

/* CMD [which][args]: which % 4: 0 dht_bootstrap; 1 dht_ping of sender a0 % 6
 * (bit 3 its IPv6 address); 2 dht_find_node of a target from a0; 3 sender
 * a0 asks us a FIND_NODE (bit 3 from its IPv6 address, bit 4 its other
 * port, bit 5 with the server flag: a candidate to check): it gets a
 * cookie. */
static void fn_cmd(fn *h, const uint8_t *p, size_t n) {
  int which = n ? p[0] % FN_CMD_COUNT : FN_CMD_BOOT;
  uint8_t a0 = n > 1 ? p[1] : 0;
  switch (which) {
  case FN_CMD_BOOT:
    fn_boot(h);
    break;
  case FN_CMD_PING: {
    dht_peer pe;
    int who = fn_who_sel(a0);
    memcpy(pe.pk, h->k->id[who + 1].pk, DHT_PK_LEN);
    fn_addr(who, a0 & 8, a0 & 0x10, &pe.addr);
    dht_ping(h->e, &pe, h->now);
    break;
  }
  case FN_CMD_FIND: {
    uint8_t t[DHT_ID_LEN];
    memset(t, a0, sizeof t);
    dht_find_node(h->e, t, h->now);
    break;
  }
  default:
    fn_ask_cookie(h, fn_who_sel(a0), a0 & 8, a0 & 0x10, a0 & 0x20);
    break;
  }
}

/* CONFIG [flags][flags2] (see FN_CFG_*). */
static void fn_config(fn *h, uint8_t f, uint8_t f2) {
  static const int modes[4] = {NAT_MODE_SERVER, NAT_MODE_AUTO, NAT_MODE_CLIENT, NAT_MODE_AUTO};
  h->cfg = f;
  h->cfg2 = f2;
  h->ns.mode = modes[f & 3];
  if (f & FN_CFG_TIGHT) {
    h->ns.vote.min_votes = 1;
    h->ns.solicit_ms = 3000;
    h->ns.recheck_ms = 20000;
    h->ns.dial_ms = 2000;
    h->ns.redial_ms = 8000;
    h->ns.probe_wait_ms = 1000;
    h->ns.fails_to_client = 1;
    h->ns.helper_gap_ms = 0;
    h->ns.prober_gap_ms = 0;
  }
  if (f & FN_CFG_SMALL) {
    h->set.max_requests = 3;
    h->set.unsolicited_burst = 1;
    h->set.max_out_queue = 16;
  }
  if (f2 & FN_CFG2_SOCKS1)
    h->ns.max_sockets = 1;
  if (f2 & FN_CFG2_AMP1)
    h->set.amplification_factor = 1;
  if (f2 & FN_CFG2_MINV2)
    h->ns.vote.min_votes = 2;
  if (f2 & FN_CFG2_SLOW) {
    h->ns.helper_gap_ms = 60000;
    h->ns.prober_gap_ms = 30000;
  }
}

/* Runs one input on a fresh engine and service; copies the final status
 * into *out if out is not NULL. */
static void fn_run(const uint8_t *data, size_t size, nat_status *out, fn **keep) {
  fn *h = calloc(1, sizeof *h);
  if (!h)
    abort();
  h->k = fn_setup();
  tu_rng_init(&h->rng, 0x5eed, 11);
  h->now = FC_T0;
  fc_settings(&h->set); /* key and cookie caches 16, max_records 16, rate_pps 0 */
  h->set.k = 8;
  h->set.max_out_queue = 256;
  h->set.max_events = 64;
  h->set.max_lookups = 16;
  h->set.max_requests = 32;
  h->set.log_level = DHT_LOG_ERROR;
  nat_settings_default(&h->ns);

  const uint8_t *cp = NULL;
  size_t clen = 0;
  size_t pos = fc_op_config(data, size, FN_OP_COUNT, FN_OP_CONFIG, &cp, &clen);
  if (pos)
    fn_config(h, clen ? cp[0] : 0, clen > 1 ? cp[1] : 0);
  dht_callbacks cb = {.ctx = &h->rng, .rand = tu_rand_cb, .log = NULL};
  fc_engine_new(&h->e, &h->k->id[0], &h->set, &cb, h->now);
  if (nat_svc_new(&h->nat, h->e, &h->ns, &cb, NULL, h->now) != 0)
    abort();
  fn_check(h);
  if (!(h->cfg & FN_CFG_NOBOOT)) {
    fn_boot(h);
    fn_drain(h);
  }

  uint8_t op;
  const uint8_t *p;
  size_t len;
  for (int ops = 0; ops < FN_MAX_OPS && fc_op_next(data, size, &pos, &op, &p, &len); ops++) {
    switch (op % FN_OP_COUNT) {
    case FN_OP_BODY:
      if (len >= 1)
        fn_body(h, p[0], p + 1, len - 1);
      break;
    case FN_OP_TIME:
      fn_time(h, p, len);
      break;
    case FN_OP_NAT:
      fn_nat(h, p, len);
      break;
    case FN_OP_ANSWER:
      fn_answer(h, p, len);
      break;
    case FN_OP_PONG:
      fn_pong(h, p, len);
      break;
    case FN_OP_SEEN:
      if (len >= 2)
        h->w[fn_who_sel(p[0])].seen = p[1] & 7;
      break;
    case FN_OP_CMD:
      fn_cmd(h, p, len);
      break;
    case FN_OP_RAW: {
      dht_addr from;
      fn_addr(0, false, false, &from);
      dht_path pa = {.local = 0, .remote = from};
      if (dht_read_pkt(h->e, &pa, p, len, h->now) != 0)
        abort();
      fn_check(h);
      break;
    }
    default:
      break;
    }
    fn_drain(h);
  }

  if (out)
    nat_get_status(h->nat, h->now, out);
  nat_svc_del(h->nat);
  dht_del(h->e);
  for (int i = 0; i < FN_WHO; i++)
    if (h->w[i].ready)
      dht_box_free(&h->w[i].box, &dht_mem_libc);
  if (keep)
    *keep = h;
  else
    free(h);
}

#ifndef FN_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fn_run(data, size, NULL, NULL);
  return 0;
}
#endif

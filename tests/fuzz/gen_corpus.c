/*
 * gen_corpus.c - writes the seed corpus of the fuzz_packet target
 * (tests/fuzz/corpus/seed-*) in its op format, and runs every seed through
 * the target to print what it reached.  Not part of the build: build it by
 * hand and rerun it whenever the op format, the identities or a message
 * layout changes, then commit the files it wrote:
 *
 *   cc -std=c11 -D_POSIX_C_SOURCE=200809L -Idht tests/fuzz/gen_corpus.c \
 *      tests/fuzz/fuzz_common.c dht/dht_*.c \
 *      $(pkg-config --cflags --libs msgpack libsodium) -o /tmp/gen_corpus
 *   rm -f tests/fuzz/corpus/seed-* && /tmp/gen_corpus tests/fuzz/corpus
 *
 * It includes fuzz_packet.c, so the identities, addresses, clock and op
 * codes cannot drift from the target's.  Output is deterministic: the same
 * source writes the same bytes.  Inputs found by fuzzing (regress-*) live
 * beside the seeds and are not written here.
 */
#include <stdio.h>

#include "fuzz_packet.c"

typedef struct seed {
  uint8_t b[8192];
  size_t n;
} seed;

static void put(seed *s, const uint8_t *p, size_t n) {
  if (n > sizeof s->b - s->n) {
    fprintf(stderr, "gen_corpus: seed too large\n");
    exit(1);
  }
  if (n)
    memcpy(s->b + s->n, p, n);
  s->n += n;
}

/* [op][u16 len][a][b] */
static void op(seed *s, uint8_t code, const uint8_t *a, size_t na, const uint8_t *b, size_t nb) {
  uint8_t hdr[3] = {code, (uint8_t)((na + nb) >> 8), (uint8_t)(na + nb)};
  put(s, hdr, 3);
  put(s, a, na);
  put(s, b, nb);
}

static void raw(seed *s, const uint8_t *p, size_t n) {
  op(s, FZ_OP_RAW, p, n, NULL, 0);
}

static void body_bytes(seed *s, uint8_t sel, const uint8_t *p, size_t n) {
  op(s, FZ_OP_BODY, &sel, 1, p, n);
}

static size_t enc(const dht_msg *m, uint8_t *buf, size_t cap) {
  dht_ssize n = dht_msg_encode(m, buf, cap);
  if (n < 0) {
    fprintf(stderr, "gen_corpus: cannot encode type %u: %d\n", m->type, (int)n);
    exit(1);
  }
  return (size_t)n;
}

static void body(seed *s, uint8_t sel, const dht_msg *m) {
  uint8_t buf[DHT_MAX_BODY];
  body_bytes(s, sel, buf, enc(m, buf, sizeof buf));
}

static void tamper(seed *s, uint8_t sel, uint16_t off, uint8_t mask, const dht_msg *m) {
  uint8_t hdr[4] = {sel, (uint8_t)(off >> 8), (uint8_t)off, mask};
  uint8_t buf[DHT_MAX_BODY];
  op(s, FZ_OP_TAMPER, hdr, 4, buf, enc(m, buf, sizeof buf));
}

static void tick(seed *s, uint16_t ms, uint8_t shift) {
  uint8_t p[3] = {(uint8_t)(ms >> 8), (uint8_t)ms, shift};
  op(s, FZ_OP_TIME, p, shift ? 3 : 2, NULL, 0);
}

static void cmd(seed *s, uint8_t which, const uint8_t *arg, size_t n) {
  op(s, FZ_OP_CMD, &which, 1, arg, n);
}

static void cmd1(seed *s, uint8_t which, uint8_t a) {
  cmd(s, which, &a, 1);
}

static void config(seed *s, uint8_t flags, uint8_t k) {
  uint8_t p[2] = {flags, k};
  op(s, FZ_OP_CONFIG, p, 2, NULL, 0);
}

/* ---- messages --------------------------------------------------------------- */

static dht_msg msg(uint8_t type, uint32_t txid) {
  dht_msg m;
  memset(&m, 0, sizeof m);
  m.type = type;
  m.txid = txid;
  return m;
}

/* Contacts beyond the four peers: identities 16.., nobody answers for them. */
static void extra(int n, bool v6, dht_peer *p) {
  dht_identity id;
  fz_identity(&id, 16 + n);
  memcpy(p->pk, id.pk, DHT_PK_LEN);
  memset(&p->addr, 0, sizeof p->addr);
  if (v6) {
    p->addr.family = DHT_AF_INET6;
    p->addr.ip[0] = 0x2a;
    p->addr.ip[1] = 0x00;
    p->addr.ip[3] = (uint8_t)(16 + n);
    p->addr.ip[15] = 1;
  } else {
    p->addr.family = DHT_AF_INET;
    p->addr.ip[0] = 45;
    p->addr.ip[1] = (uint8_t)(16 + n);
    p->addr.ip[3] = 1;
  }
  p->addr.port = (uint16_t)(6000 + n);
}

static void peer(int i, bool v6, dht_peer *p) {
  memcpy(p->pk, fz_k.peer[i].pk, DHT_PK_LEN);
  fz_peer_addr(i, v6, &p->addr);
}

/* NODES from peer `from`: the other peers, then nextra extras. */
static dht_msg nodes(int from, bool v6, int nextra, int extra0) {
  dht_msg m = msg(DHT_MSG_NODES, 0);
  m.token_len = DHT_TOKEN_LEN;
  memset(m.token, 0x40 + from, DHT_TOKEN_LEN);
  for (int i = 0; i < FZ_PEERS; i++)
    if (i != from)
      peer(i, v6, &m.contacts[m.ncontacts++]);
  for (int i = 0; i < nextra; i++)
    extra(extra0 + i, v6, &m.contacts[m.ncontacts++]);
  return m;
}

static uint8_t rec_buf[FZ_PEERS][DHT_RECORD_MAX_LEN];
static size_t rec_len[FZ_PEERS];

/* Introducers the next records name (a version-2 record when > 0). */
static int rec_intro;

/* Peer i's signed record with sequence number FZ_UNIX_MS + i + dseq. */
static void make_record_seq(int i, uint64_t dseq, uint64_t expires) {
  dht_record r;
  memset(&r, 0, sizeof r);
  memcpy(r.pk, fz_k.peer[i].pk, DHT_PK_LEN);
  r.seq = (uint64_t)FZ_UNIX_MS + (uint64_t)i + dseq;
  r.expires_unix_s = expires;
  r.flags = DHT_REC_REACHABLE;
  r.naddrs = 2;
  r.addrs[0].type = DHT_ADDR_OBSERVED;
  fz_peer_addr(i, false, &r.addrs[0].addr);
  r.addrs[1].type = DHT_ADDR_LAN;
  r.addrs[1].addr.family = DHT_AF_INET6;
  r.addrs[1].addr.ip[0] = 0xfd;
  r.addrs[1].addr.ip[15] = (uint8_t)(1 + i);
  r.addrs[1].addr.port = 4000;
  r.nintro = (uint8_t)rec_intro;
  for (int k = 0; k < rec_intro; k++) {
    memcpy(r.intro[k].pk, fz_k.peer[(i + 1 + k) % FZ_PEERS].pk, DHT_PK_LEN);
    fz_peer_addr((i + 1 + k) % FZ_PEERS, k == 1, &r.intro[k].addr);
  }
  dht_ssize n = dht_record_sign(&r, fz_k.peer[i].sk, rec_buf[i], sizeof rec_buf[i]);
  if (n < 0)
    exit(1);
  rec_len[i] = (size_t)n;
}

static void make_record(int i, uint64_t expires) {
  make_record_seq(i, 0, expires);
}

static dht_msg lookup_req(uint8_t type, const uint8_t target[static DHT_ID_LEN], size_t pad) {
  dht_msg m = msg(type, 7);
  m.flags = DHT_MSGF_SERVER;
  memcpy(m.target, target, DHT_ID_LEN);
  m.pad_len = pad;
  return m;
}

/* cookie: 16 placeholder bytes, replaced by the engine's token (sel bit 4) */
static dht_msg with_cookie(dht_msg m) {
  m.token_len = DHT_TOKEN_LEN;
  memset(m.token, 0xcc, DHT_TOKEN_LEN);
  return m;
}

static dht_msg put_msg(int owner) {
  dht_msg m = msg(DHT_MSG_PUT, 9);
  m.flags = DHT_MSGF_SERVER;
  m.token_len = DHT_TOKEN_LEN;
  memset(m.token, 0xcc, DHT_TOKEN_LEN);
  m.record = rec_buf[owner];
  m.record_len = rec_len[owner];
  return m;
}

#define TX(i) ((uint8_t)((i) | FZ_SEL_TXID))
#define TXR(i, r) ((uint8_t)((i) | FZ_SEL_TXID | (r) << FZ_SEL_RING_SHIFT))

/* Bootstrap with the four peers and answer the FIND_NODEs: every peer
 * replies (a txid it was not sent is dropped), then the timers run. */
static void bootstrap_exchange(seed *s, bool v6, int nextra) {
  cmd1(s, FZ_CMD_BOOTSTRAP, v6 ? 0x0f : 0x00);
  for (int round = 0; round < 2; round++)
    for (int i = 0; i < FZ_PEERS; i++) {
      dht_msg m = nodes(i, v6, round == 0 ? nextra : 0, i * 2);
      body(s, (uint8_t)(TX(i) | (v6 ? FZ_SEL_V6 : 0)), &m);
    }
  tick(s, 2500, 0);
  tick(s, 2500, 0);
}

/* ---- the service's ops ------------------------------------------------------ */

static void svc(seed *s, uint8_t which, const uint8_t *arg, size_t n) {
  op(s, FZ_OP_SVC, &which, 1, arg, n);
}

static void svc1(seed *s, uint8_t which, uint8_t a) {
  svc(s, which, &a, 1);
}

/* A request of the service: a0 = peer | flags (FZ_SVC_REQ's layout in
 * fuzz_packet.c), tries 1..8, soft and timeout choices 0..3, socket selector
 * (odd: one of the service's), TTL, key handle, tag. */
static void req(seed *s, uint8_t a0, int tries, int soft, int tmo, uint8_t sock, uint8_t ttl,
                uint8_t key, uint8_t tag) {
  uint8_t a[7 + 4] = {a0,          (uint8_t)(((tries - 1) & 7) | soft << 4 | tmo << 6),
                      sock,        ttl,
                      key,         tag,
                      (uint8_t)-3, 'p',
                      'i',         'n',
                      'g'};
  svc(s, FZ_SVC_OP_REQ, a, sizeof a);
}

#define REQ_V6 0x04
#define REQ_AT_A 0x08
#define REQ_KIND2 0x10
#define REQ_UNSOL 0x20
#define REQ_BAD(v) ((uint8_t)((v) << 6))

/* ANSWER: sel, request index (0x80: the newest open one), variant. */
static void answer(seed *s, uint8_t sel, uint8_t idx, uint8_t var) {
  uint8_t a[3 + 3] = {sel, idx, var, 'p', 'o', 'n'};
  op(s, FZ_OP_ANSWER, a, sizeof a, NULL, 0);
}

#define NEWEST 0x80
enum { ANS_OK, ANS_TYPE, ANS_KEY, ANS_PEER, ANS_TXID, ANS_CONVERSE, ANS_TWICE, ANS_FROM_A };

/* SOCK_OPEN of n (family v6 or v4) with the driver's policy byte. */
static void sock_open(seed *s, uint8_t n, bool v6, uint8_t policy) {
  uint8_t a[2] = {(uint8_t)(n | (v6 ? 0x10 : 0)), policy};
  svc(s, FZ_SVC_OP_SOCK_OPEN, a, sizeof a);
}

#define POL_ALL 0
#define POL_FEWER 1
#define POL_NONE 2
#define POL_MORE 3
#define POL_DEFER 0x04
#define POL_CLOSE1 0x08

static void svc_body(seed *s, uint8_t sel, uint8_t type, uint32_t txid, const uint8_t *p,
                     size_t n) {
  uint8_t b[DHT_MAX_BODY];
  dht_wire_w w;
  dht_wire_w_init(&w, b, sizeof b);
  dht_wire_w_array(&w, 3);
  dht_wire_w_uint(&w, type);
  dht_wire_w_uint(&w, txid);
  dht_wire_w_bin(&w, p, n);
  body_bytes(s, sel, b, w.len);
}

/* ---- output ----------------------------------------------------------------- */

static size_t total;
static int nseeds;

static void emit(const char *dir, const char *name, const seed *s) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(s->b, 1, s->n, f) != s->n || fclose(f) != 0) {
    fprintf(stderr, "gen_corpus: cannot write %s\n", path);
    exit(1);
  }
  dht_stats st;
  fz_run(s->b, s->n, &st);
  printf(
      "%-28s %5zu B  req %2llu rep %2llu out %2llu | malf %llu unk %llu txid %llu dec %llu "
      "repl %llu tok %llu rec %llu rate %llu | rt %d recs %d acc %llu lk %llu/%llu | svc out %llu "
      "ans %llu to %llu re %llu | amp %llu/%llu unsol %llu/%llu\n",
      name, s->n, (unsigned long long)st.requests_in, (unsigned long long)st.replies_in,
      (unsigned long long)st.requests_out, (unsigned long long)st.drop_malformed,
      (unsigned long long)st.drop_unknown_type, (unsigned long long)st.drop_unknown_txid,
      (unsigned long long)st.drop_decrypt, (unsigned long long)st.drop_replay,
      (unsigned long long)st.drop_bad_token, (unsigned long long)st.drop_bad_record,
      (unsigned long long)st.drop_ratelimit, st.rt_size, st.records_stored,
      (unsigned long long)st.records_accepted, (unsigned long long)st.lookups_done,
      (unsigned long long)st.lookups_started, (unsigned long long)st.svc_requests_out,
      (unsigned long long)st.svc_answers, (unsigned long long)st.svc_timeouts,
      (unsigned long long)st.svc_retries, (unsigned long long)st.drop_amplification,
      (unsigned long long)st.amplification_limited, (unsigned long long)st.unsolicited_out,
      (unsigned long long)st.unsolicited_limited);
  total += s->n;
  nseeds++;
}

#define SEED(name) for (seed s_ = {.n = 0}, *s = &s_; s; emit(dir, name, s), s = NULL)

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: gen_corpus DIR\n");
    return 2;
  }
  const char *dir = argv[1];
  fz_setup();
  for (int i = 0; i < FZ_PEERS; i++)
    make_record(i, (uint64_t)FZ_UNIX_S + 3600);

  dht_addr seen_v4, seen_v6;
  memset(&seen_v4, 0, sizeof seen_v4);
  seen_v4.family = DHT_AF_INET;
  seen_v4.ip[0] = 198;
  seen_v4.ip[1] = 51;
  seen_v4.ip[2] = 100;
  seen_v4.ip[3] = 77;
  seen_v4.port = 3333;
  seen_v6 = seen_v4;
  seen_v6.family = DHT_AF_INET6;
  memset(seen_v6.ip, 0, sizeof seen_v6.ip);
  seen_v6.ip[0] = 0x20;
  seen_v6.ip[1] = 0x01;
  seen_v6.ip[2] = 0x0d;
  seen_v6.ip[3] = 0xb8;
  seen_v6.ip[15] = 0x77;

  /* ---- each core message, valid ---- */
  SEED("seed-ping") {
    dht_msg m = msg(DHT_MSG_PING, 1);
    body(s, 0, &m);
  }
  SEED("seed-ping-server-verify") {
    /* a server-mode peer pings us: we ping it back, it answers, it is in */
    dht_msg m = msg(DHT_MSG_PING, 2);
    m.flags = DHT_MSGF_SERVER;
    body(s, 1 | FZ_SEL_V6, &m);
    dht_msg r = msg(DHT_MSG_PONG, 0);
    r.seen = seen_v6;
    body(s, TX(1) | FZ_SEL_V6, &r);
    cmd1(s, FZ_CMD_CLOSEST, 1);
  }
  SEED("seed-reply-unsolicited") {
    /* replies to nothing we sent: PONG, ACK, VALUE */
    dht_msg m = msg(DHT_MSG_PONG, 12345);
    m.seen = seen_v4;
    body(s, 2, &m);
    m = msg(DHT_MSG_ACK, 77);
    m.status = DHT_ACK_STALE;
    body(s, 3, &m);
    m = msg(DHT_MSG_VALUE, 78);
    m.token_len = DHT_TOKEN_LEN;
    m.record = rec_buf[1];
    m.record_len = rec_len[1];
    peer(2, true, &m.contacts[m.ncontacts++]);
    body(s, 1, &m);
  }
  SEED("seed-find-node") {
    dht_msg m = lookup_req(DHT_MSG_FIND_NODE, fz_k.peer_id[3], 0);
    body(s, 2, &m);
  }
  SEED("seed-find-node-padded") {
    dht_msg m = lookup_req(DHT_MSG_FIND_NODE, fz_k.peer_id[0], 400);
    m.flags = 0;
    body(s, 3 | FZ_SEL_V6, &m);
  }
  SEED("seed-find-node-cookie") {
    /* the first reply carries a token; echoing it proves the address */
    dht_msg m = lookup_req(DHT_MSG_FIND_NODE, fz_k.self_id, 0);
    body(s, 2, &m);
    m = with_cookie(m);
    body(s, 2 | FZ_SEL_TOKEN, &m);
  }
  SEED("seed-get") {
    dht_msg m = lookup_req(DHT_MSG_GET, fz_k.peer_id[1], 0);
    body(s, 0, &m);
  }
  SEED("seed-get-self-record") {
    /* publish with an empty table (fails), then our record is served */
    uint8_t addrs[1 + 5] = {1, DHT_ADDR_MAPPED, 203, 0, 113, 99};
    cmd(s, FZ_CMD_PUT, addrs, sizeof addrs);
    dht_msg m = lookup_req(DHT_MSG_GET, fz_k.self_id, 0);
    body(s, 1, &m);
  }
  SEED("seed-put-store-get") {
    /* peer 2 gets a token, stores its record; peer 3 fetches it */
    dht_msg m = lookup_req(DHT_MSG_FIND_NODE, fz_k.self_id, 0);
    body(s, 2, &m);
    m = put_msg(2);
    body(s, 2 | FZ_SEL_TOKEN, &m);
    m = lookup_req(DHT_MSG_GET, fz_k.peer_id[2], 0);
    body(s, 3, &m);
    cmd1(s, FZ_CMD_SAVE, 0);
  }
  SEED("seed-put-store-get-v2") {
    /* the same with a version-2 record: three introducers */
    rec_intro = DHT_RECORD_MAX_INTRO;
    make_record(2, (uint64_t)FZ_UNIX_S + 3600);
    rec_intro = 0;
    dht_msg m = lookup_req(DHT_MSG_FIND_NODE, fz_k.self_id, 0);
    body(s, 2, &m);
    m = put_msg(2);
    body(s, 2 | FZ_SEL_TOKEN, &m);
    m = lookup_req(DHT_MSG_GET, fz_k.peer_id[2], 0);
    body(s, 3, &m);
    make_record(2, (uint64_t)FZ_UNIX_S + 3600);
  }
  SEED("seed-put-badtoken") {
    dht_msg m = put_msg(1);
    body(s, 1, &m);
  }
  SEED("seed-put-badrecord") {
    dht_msg m = lookup_req(DHT_MSG_FIND_NODE, fz_k.self_id, 0);
    body(s, 0, &m);
    uint8_t junk[120];
    for (size_t i = 0; i < sizeof junk; i++)
      junk[i] = (uint8_t)(i * 37 + 1);
    junk[0] = DHT_RECORD_VERSION;
    m = put_msg(0);
    m.record = junk;
    m.record_len = sizeof junk;
    body(s, FZ_SEL_TOKEN, &m);
    /* a record signed by its owner but claiming too long a life */
    make_record(0, (uint64_t)FZ_UNIX_S + 100000);
    m = put_msg(0);
    body(s, FZ_SEL_TOKEN, &m);
    make_record(0, (uint64_t)FZ_UNIX_S + 3600);
  }

  /* ---- exchanges ---- */
  SEED("seed-bootstrap-exchange") {
    bootstrap_exchange(s, false, 3);
    tick(s, 30000, 0);
  }
  SEED("seed-nodes-v6") {
    bootstrap_exchange(s, true, 3);
  }
  SEED("seed-value") {
    bootstrap_exchange(s, false, 0);
    cmd1(s, FZ_CMD_GET, 3);
    for (int i = 0; i < FZ_PEERS; i++) {
      dht_msg m = msg(DHT_MSG_VALUE, 0);
      m.token_len = DHT_TOKEN_LEN;
      memset(m.token, 0x50 + i, DHT_TOKEN_LEN);
      m.record = rec_buf[3];
      m.record_len = rec_len[3];
      for (int j = 0; j < FZ_PEERS; j++)
        if (j != i)
          peer(j, false, &m.contacts[m.ncontacts++]);
      body(s, TX(i), &m);
    }
    tick(s, 2500, 0);
  }
  SEED("seed-ack") {
    /* publish: GET phase answered with tokens, then PUTs acked */
    bootstrap_exchange(s, false, 0);
    uint8_t addrs[1 + 10] = {2, DHT_ADDR_OBSERVED, 203, 0, 113, 7, 0x80 | DHT_ADDR_LAN, 10, 0, 0,
                             7};
    cmd(s, FZ_CMD_PUT, addrs, sizeof addrs);
    for (int i = 0; i < FZ_PEERS; i++) {
      dht_msg m = nodes(i, false, 0, 0);
      body(s, TX(i), &m);
    }
    for (int i = 0; i < FZ_PEERS; i++) {
      dht_msg m = msg(DHT_MSG_ACK, 0);
      m.status = i == 3 ? DHT_ACK_FULL : DHT_ACK_OK;
      body(s, TX(i), &m);
    }
    tick(s, 2500, 0);
  }
  SEED("seed-ping-cmd") {
    cmd1(s, FZ_CMD_PING, 1);
    dht_msg m = msg(DHT_MSG_PONG, 0);
    m.seen = seen_v4;
    body(s, TX(1), &m);
    cmd1(s, FZ_CMD_PING, 2 | 4);
    m.seen = seen_v6;
    body(s, TX(2) | FZ_SEL_V6, &m);
  }
  SEED("seed-ping-timeout") {
    cmd1(s, FZ_CMD_PING, 2);
    cmd1(s, FZ_CMD_PING, 3);
    cmd1(s, FZ_CMD_CANCEL, 0);
    tick(s, 3000, 0);
  }
  SEED("seed-cancel") {
    bootstrap_exchange(s, false, 2);
    uint8_t t[2] = {1, 0x55};
    cmd(s, FZ_CMD_FIND, t, sizeof t);
    cmd1(s, FZ_CMD_CANCEL, 0);
    cmd1(s, FZ_CMD_CANCEL, 0x80 | 1);
    dht_msg m = nodes(1, false, 0, 0);
    body(s, TX(1), &m);
  }
  SEED("seed-time-steps") {
    /* token rotation, refresh, liveness, republish, record expiry */
    bootstrap_exchange(s, false, 1);
    dht_msg m = lookup_req(DHT_MSG_FIND_NODE, fz_k.self_id, 0);
    body(s, 2, &m);
    m = put_msg(2);
    body(s, 2 | FZ_SEL_TOKEN, &m);
    cmd1(s, FZ_CMD_PUT, 0);
    for (int i = 0; i < 6; i++)
      tick(s, 0xffff, 5); /* ~35 min each */
  }
  SEED("seed-save-load") {
    /* a valid snapshot of the four peers and two extras, then a bootstrap
     * with no peers (the table seeds it) */
    uint8_t snap[12 + 6 * (1 + DHT_PK_LEN + DHT_WADDR6_LEN) + 16];
    size_t n = 12;
    memcpy(snap, "roostrt1", 8);
    snap[8] = snap[9] = snap[10] = 0;
    snap[11] = 6;
    for (int i = 0; i < 6; i++) {
      dht_peer p;
      if (i < FZ_PEERS)
        peer(i, i & 1, &p);
      else
        extra(i, false, &p);
      int w = dht_addr_to_wire(&p.addr, snap + n + 1 + DHT_PK_LEN);
      snap[n] = (uint8_t)w;
      memcpy(snap + n + 1, p.pk, DHT_PK_LEN);
      n += 1 + DHT_PK_LEN + (size_t)w;
    }
    crypto_generichash(snap + n, 16, snap, n, NULL, 0);
    n += 16;
    cmd(s, FZ_CMD_LOAD, snap, n);
    cmd1(s, FZ_CMD_BOOTSTRAP, 0x10);
    for (int i = 0; i < FZ_PEERS; i++) {
      dht_msg m = nodes(i, i & 1, 0, 0);
      body(s, (uint8_t)(TX(i) | ((i & 1) ? FZ_SEL_V6 : 0)), &m);
    }
    cmd1(s, FZ_CMD_SAVE, 0);
    cmd1(s, FZ_CMD_CLOSEST, 4);
  }
  SEED("seed-load-garbage") {
    uint8_t g[64];
    memcpy(g, "roostrt1", 8);
    for (size_t i = 8; i < sizeof g; i++)
      g[i] = (uint8_t)(i * 11);
    cmd(s, FZ_CMD_LOAD, g, sizeof g);
    /* right checksum, entry length 7 */
    uint8_t b[12 + 1 + DHT_PK_LEN + 7 + 16];
    memset(b, 0x22, sizeof b);
    memcpy(b, "roostrt1", 8);
    b[8] = b[9] = b[10] = 0;
    b[11] = 1;
    b[12] = 7;
    crypto_generichash(b + sizeof b - 16, 16, b, sizeof b - 16, NULL, 0);
    cmd(s, FZ_CMD_LOAD, b, sizeof b);
  }
  SEED("seed-clock-step") {
    dht_msg m = lookup_req(DHT_MSG_FIND_NODE, fz_k.self_id, 0);
    body(s, 1, &m);
    m = put_msg(1);
    body(s, 1 | FZ_SEL_TOKEN, &m);
    uint8_t d[2] = {0x00, 0x78}; /* +2 h */
    cmd(s, FZ_CMD_CLOCK, d, sizeof d);
    tick(s, 0xffff, 0);
    m = lookup_req(DHT_MSG_GET, fz_k.peer_id[1], 0);
    body(s, 2, &m);
  }

  /* ---- hostile input ---- */
  SEED("seed-tampered") {
    dht_msg m = lookup_req(DHT_MSG_FIND_NODE, fz_k.peer_id[2], 0);
    tamper(s, 0, 100, 0x01, &m);
    tamper(s, 1, 0, 0x02, &m);           /* version */
    tamper(s, 2, 5, 0x80, &m);           /* sender key */
    tamper(s, 3, 40, 0x10, &m);          /* nonce */
    tamper(s, 3 | FZ_SEL_V6, 60, 0, &m); /* first ciphertext byte */
  }
  SEED("seed-replay") {
    dht_msg m = msg(DHT_MSG_PING, 3);
    body(s, 1, &m);
    body(s, 1 | FZ_SEL_REPLAY, &m);
    m.txid = 4;
    body(s, 1 | FZ_SEL_REPLAY, &m);
  }
  SEED("seed-raw-garbage") {
    uint8_t g[200];
    for (size_t i = 0; i < sizeof g; i++)
      g[i] = (uint8_t)(i * 73 + 5);
    g[0] = DHT_VERSION;
    raw(s, g, sizeof g);
  }
  SEED("seed-raw-prechecks") {
    uint8_t g[DHT_OVERHEAD + 20];
    memset(g, 0x33, sizeof g);
    raw(s, g, 10); /* short */
    g[0] = 2;
    raw(s, g, sizeof g); /* version */
    g[0] = DHT_VERSION;
    memcpy(g + 1, fz_k.self.pk, DHT_PK_LEN);
    raw(s, g, sizeof g); /* our own key */
    memset(g + 1, 0, DHT_PK_LEN);
    raw(s, g, sizeof g); /* not a usable key */
    memcpy(g + 1, fz_k.peer[0].pk, DHT_PK_LEN);
    raw(s, g, sizeof g); /* does not open */
    uint8_t big[DHT_MAX_PKT + 1];
    memset(big, 1, sizeof big);
    raw(s, big, sizeof big); /* too long */
  }
  SEED("seed-raw-sealed") {
    /* a valid datagram of peer 0, arriving from address A */
    dht_box b;
    if (dht_box_init(&b, &fz_k.peer[0], 4, fz_hkey, &dht_mem_libc) != 0)
      return 1;
    uint8_t nonce[DHT_NONCE_LEN], body_[DHT_MAX_BODY], pkt[DHT_MAX_PKT];
    memset(nonce, 0xee, sizeof nonce);
    dht_msg m = msg(DHT_MSG_PING, 5);
    m.flags = DHT_MSGF_SERVER;
    size_t bl = enc(&m, body_, sizeof body_);
    dht_ssize n = dht_box_seal(&b, fz_k.self.pk, nonce, body_, bl, pkt, sizeof pkt);
    dht_box_free(&b, &dht_mem_libc);
    if (n < 0)
      return 1;
    raw(s, pkt, (size_t)n);
    raw(s, pkt, (size_t)n); /* replayed */
  }
  SEED("seed-malformed-head") {
    static const uint8_t bodies[][12] = {
        {0x92, 0x01, 0x01},                         /* PING, arity 2 */
        {0x93, 0x01, 0x01, 0x00, 0x00},             /* trailing byte */
        {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01},       /* array32, 4G elements */
        {0x93, 0x01, 0xd2, 0xff, 0xff, 0xff, 0xff}, /* negative txid */
        {0x93, 0xa1, 0x01, 0x01, 0x00},             /* str type */
        {0x81, 0x01, 0x01},                         /* a map */
        {0x93, 0xcd, 0x01, 0x00, 0x01, 0x00},       /* type 256 */
        {0x93, 0x01, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0}, /* txid > 32 bits */
        {0xc1},                                     /* never used */
        {0x93, 0x09, 0x01, 0x00},                   /* unknown core type */
        {0x93, 0x40, 0x01, 0x00},                   /* service range, none */
        {0x93, 0x01, 0x01, 0xcd, 0x00},             /* truncated uint16 */
    };
    static const uint8_t lens[] = {3, 5, 6, 7, 5, 3, 6, 11, 1, 4, 4, 5};
    for (size_t i = 0; i < sizeof lens; i++)
      body_bytes(s, (uint8_t)(i & 3), bodies[i], lens[i]);
    body_bytes(s, 0, NULL, 0); /* empty body */
  }
  SEED("seed-malformed-fields") {
    /* PONG with port 0; FIND_NODE with a 15-byte cookie, a 31-byte target;
     * PUT with an empty record; ACK status 256 */
    static const uint8_t pong[] = {0x93, 0x02, 0x01, 0xc4, 0x06, 1, 2, 3, 4, 0, 0};
    body_bytes(s, 0, pong, sizeof pong);
    uint8_t f[64] = {0x96, 0x03, 0x01, 0x00, 0xc4, 15};
    size_t n = 6 + 15;
    f[n++] = 0xc4;
    f[n++] = 32;
    n += 32;
    f[n++] = 0xc4;
    f[n++] = 0;
    body_bytes(s, 1, f, n);
    uint8_t g[64] = {0x96, 0x03, 0x01, 0x00, 0xc4, 0, 0xc4, 31};
    n = 8 + 31;
    g[n++] = 0xc4;
    g[n++] = 0;
    body_bytes(s, 2, g, n);
    uint8_t p[32] = {0x95, 0x07, 0x01, 0x00, 0xc4, 16};
    n = 6 + 16;
    p[n++] = 0xc4;
    p[n++] = 0;
    body_bytes(s, 3, p, n);
    static const uint8_t ack[] = {0x93, 0x08, 0x01, 0xcd, 0x01, 0x00};
    body_bytes(s, 0, ack, sizeof ack);
  }
  SEED("seed-malformed-contacts") {
    /* NODES answering a real request: a contact of 40 bytes, then 33
     * contacts, then a contact with port 0 */
    bootstrap_exchange(s, false, 0);
    /* each answers a lookup of the replying peer's ID: it is asked first */
    cmd1(s, FZ_CMD_FIND, 0);
    uint8_t b[96] = {0x94, 0x04, 0x00, 0xc4, 16};
    size_t n = 5 + 16;
    b[n++] = 0x91;
    b[n++] = 0xc4;
    b[n++] = 40;
    memset(b + n, 0x21, 40);
    body_bytes(s, TX(0), b, n + 40);
    cmd1(s, FZ_CMD_FIND, 1);
    uint8_t c[] = {0x94, 0x04, 0x00, 0xc4, 16, 0, 0, 0, 0, 0,    0,    0,
                   0,    0,    0,    0,    0,  0, 0, 0, 0, 0xdc, 0x00, 33};
    body_bytes(s, TX(1), c, sizeof c);
    cmd1(s, FZ_CMD_FIND, 2);
    dht_msg m = nodes(2, false, 1, 0);
    m.contacts[m.ncontacts - 1].addr.port = 1; /* patched to 0 below */
    uint8_t buf[DHT_MAX_BODY];
    size_t bl = enc(&m, buf, sizeof buf);
    buf[bl - 1] = 0;
    buf[bl - 2] = 0;
    body_bytes(s, TX(2), buf, bl);
  }
  SEED("seed-nodes-full") {
    /* as many IPv6 contacts as a body holds */
    bootstrap_exchange(s, false, 0);
    cmd1(s, FZ_CMD_FIND, 3);
    dht_msg m = msg(DHT_MSG_NODES, 0);
    m.token_len = DHT_TOKEN_LEN;
    for (int i = 0; i < 21; i++)
      extra(i, true, &m.contacts[m.ncontacts++]);
    body(s, TX(3), &m);
  }

  /* ---- other settings ---- */
  SEED("seed-config-ratelimit") {
    config(s, FZ_CFG_RATE, 0);
    dht_msg m = msg(DHT_MSG_PING, 1);
    for (int i = 0; i < 6; i++)
      body(s, 0, &m);
    uint8_t g[DHT_OVERHEAD + 4];
    memset(g, 1, sizeof g);
    raw(s, g, sizeof g);
    tick(s, 2000, 0);
    body(s, 0, &m);
    body(s, 1, &m);
  }
  SEED("seed-config-smallk") {
    config(s, FZ_CFG_K | FZ_CFG_TINYREC | FZ_CFG_CLIENT, 1); /* k = 2 */
    bootstrap_exchange(s, false, 4);
    dht_msg m = lookup_req(DHT_MSG_FIND_NODE, fz_k.self_id, 0);
    body(s, 2, &m);
    m = put_msg(2);
    body(s, 2 | FZ_SEL_TOKEN, &m);
    m = lookup_req(DHT_MSG_FIND_NODE, fz_k.self_id, 0);
    body(s, 3, &m);
    m = put_msg(3);
    body(s, 3 | FZ_SEL_TOKEN, &m);
  }
  SEED("seed-config-amp1") {
    /* amplification factor 1: requests are padded to a whole datagram */
    config(s, FZ_CFG_AMP1 | FZ_CFG_RATE, 0);
    bootstrap_exchange(s, false, 0);
    dht_msg m = lookup_req(DHT_MSG_GET, fz_k.peer_id[0], 0);
    body(s, 1, &m);
  }

  SEED("seed-put-replace") {
    /* the same record again, a newer one, an older one, an expired one */
    dht_msg m = lookup_req(DHT_MSG_FIND_NODE, fz_k.self_id, 0);
    body(s, 1, &m);
    m = put_msg(1);
    body(s, 1 | FZ_SEL_TOKEN, &m);
    body(s, 1 | FZ_SEL_TOKEN, &m);
    make_record_seq(1, 10, (uint64_t)FZ_UNIX_S + 3600);
    m = put_msg(1);
    body(s, 1 | FZ_SEL_TOKEN, &m);
    make_record_seq(1, 5, (uint64_t)FZ_UNIX_S + 3600);
    m = put_msg(1);
    body(s, 1 | FZ_SEL_TOKEN, &m);
    make_record_seq(1, 20, (uint64_t)FZ_UNIX_S - 10);
    m = put_msg(1);
    body(s, 1 | FZ_SEL_TOKEN, &m);
    make_record(1, (uint64_t)FZ_UNIX_S + 3600);
  }
  SEED("seed-config-k1-evict") {
    /* k = 1: the peers that answer fill and split buckets, go questionable,
     * and a newcomer makes the engine ping before evicting */
    config(s, FZ_CFG_K, 0);
    bootstrap_exchange(s, false, 0);
    for (int i = 0; i < FZ_PEERS; i++) {
      dht_msg m = msg(DHT_MSG_PING, 40 + (uint32_t)i);
      m.flags = DHT_MSGF_SERVER;
      body(s, (uint8_t)i, &m);
      dht_msg r = msg(DHT_MSG_PONG, 0);
      r.seen = seen_v4;
      body(s, TX(i), &r);
    }
    tick(s, 0xffff, 4); /* ~17 min: everyone questionable */
    for (int i = 0; i < FZ_PEERS; i++) {
      dht_msg r = msg(DHT_MSG_PONG, 0);
      r.seen = seen_v4;
      body(s, TX(i), &r);
    }
    cmd1(s, FZ_CMD_PING, 3);
    dht_msg r = msg(DHT_MSG_PONG, 0);
    r.seen = seen_v4;
    body(s, TX(3), &r);
    cmd1(s, FZ_CMD_SAVE, 0);
  }
  SEED("seed-config-tinyq-flood") {
    /* queues of 2 and 1: sends and events overflow; key caches of 4, no
     * replay filter */
    config(s, FZ_CFG_TINYQ | FZ_CFG_SMALLKEYS | FZ_CFG_NOREPLAY, 0);
    cmd1(s, FZ_CMD_BOOTSTRAP, 0);
    for (int i = 0; i < FZ_PEERS; i++) {
      dht_msg m = nodes(i, false, 2, 2 * i);
      body(s, TX(i), &m);
    }
    cmd1(s, FZ_CMD_PING, 0);
    cmd1(s, FZ_CMD_PING, 1);
    cmd1(s, FZ_CMD_PING, 2);
    dht_msg r = msg(DHT_MSG_PONG, 0);
    r.seen = seen_v4;
    body(s, TX(0), &r);
    uint8_t t[1] = {1};
    cmd(s, FZ_CMD_FIND, t, 1);
    cmd(s, FZ_CMD_GET, t, 1);
    cmd(s, FZ_CMD_FIND, t, 1);
    dht_msg p = msg(DHT_MSG_PING, 1);
    body(s, 0, &p);
    body(s, 0 | FZ_SEL_REPLAY, &p);
    tick(s, 3000, 0);
  }
  SEED("seed-service") {
    /* echo, a timer answered later, and a lookup started from the hook */
    uint8_t b[64];
    dht_wire_w w;
    dht_wire_w_init(&w, b, sizeof b);
    dht_wire_w_array(&w, 3);
    dht_wire_w_uint(&w, FZ_SVC_ECHO);
    dht_wire_w_uint(&w, 1);
    dht_wire_w_bin(&w, (const uint8_t *)"hello", 5);
    body_bytes(s, 0, b, w.len);
    dht_wire_w_init(&w, b, sizeof b);
    dht_wire_w_array(&w, 4);
    dht_wire_w_uint(&w, FZ_SVC_TIMER);
    dht_wire_w_uint(&w, 2);
    dht_wire_w_bool(&w, true);
    dht_wire_w_uint(&w, 1500);
    body_bytes(s, 1 | FZ_SEL_V6, b, w.len);
    tick(s, 2000, 0);
    dht_wire_w_init(&w, b, sizeof b);
    dht_wire_w_array(&w, 4);
    dht_wire_w_uint(&w, FZ_SVC_TIMER);
    dht_wire_w_uint(&w, 3);
    dht_wire_w_nil(&w);
    dht_wire_w_uint(&w, 10);
    body_bytes(s, 2, b, w.len);
    cmd1(s, FZ_CMD_PING, 2);
    dht_msg r = msg(DHT_MSG_PONG, 0);
    r.seen = seen_v4;
    body(s, TX(2), &r);
    dht_wire_w_init(&w, b, sizeof b);
    dht_wire_w_array(&w, 3);
    dht_wire_w_uint(&w, FZ_SVC_FIND);
    dht_wire_w_uint(&w, 4);
    dht_wire_w_bin(&w, fz_k.peer_id[1], DHT_ID_LEN);
    body_bytes(s, 3, b, w.len);
    tick(s, 3000, 0);
    static const uint8_t junk[] = {0x93, 0x2f, 0x01, 0xc0}; /* ours, unknown */
    body_bytes(s, 0, junk, sizeof junk);
  }

  /* ---- the service interface ---- */
  SEED("seed-svc-request-answer") {
    /* answered at once; a second kind answered after its soft timeout, and
     * late once more (on_msg) */
    req(s, 0, 1, 0, 0, 0, 0, 0, 1);
    answer(s, 0, NEWEST, ANS_OK);
    req(s, 1 | REQ_V6 | REQ_KIND2, 3, 1, 2, 0, 0, 0, 2);
    tick(s, 150, 0);
    answer(s, 4, NEWEST, ANS_OK);
    answer(s, 4, 1, ANS_OK);
    req(s, 2, 2, 0, 1, 0, 0, 0, 3);
    answer(s, 0, NEWEST, ANS_TWICE);
  }
  SEED("seed-svc-request-timeout") {
    /* tries on the engine's estimate and on a given timeout, soft and final
     * timeouts, then answers after the end */
    req(s, 3, 3, 0, 1, 0, 0, 0, 1);
    req(s, 2 | REQ_V6, 2, 2, 0, 0, 0, 0, 1);
    req(s, 1, 1, 3, 0, 0, 0, 0, 2);
    tick(s, 5000, 0);
    answer(s, 0, 0, ANS_OK);
    answer(s, 0, 1, ANS_OK);
    tick(s, 0xffff, 0);
  }
  SEED("seed-svc-answer-wrong") {
    /* wrong type, key, peer, txid; the answer from another address; then
     * the right one */
    req(s, 0, 2, 0, 2, 0, 0, 0, 1);
    answer(s, 0, NEWEST, ANS_TYPE);
    answer(s, 0, NEWEST, ANS_TYPE | 8);
    answer(s, 0, NEWEST, ANS_KEY);
    answer(s, 2, NEWEST, ANS_PEER);
    answer(s, 0, NEWEST, ANS_TXID);
    answer(s, 0x80, NEWEST, ANS_OK); /* a replayed nonce */
    answer(s, 0, NEWEST, ANS_FROM_A);
    answer(s, 0, 0, ANS_OK);
  }
  SEED("seed-svc-cancel") {
    req(s, 0, 4, 0, 1, 0, 0, 0, 1);
    req(s, 1, 4, 0, 1, 0, 0, 0, 1);
    req(s, 2, 4, 1, 1, 0, 0, 0, 2);
    svc1(s, FZ_SVC_OP_CANCEL, 1);
    answer(s, 0, 0, ANS_OK); /* after the cancel: on_msg */
    tick(s, 200, 0);
    svc1(s, FZ_SVC_OP_CANCEL, 2);
    svc1(s, FZ_SVC_OP_CANCEL, 5);
    tick(s, 5000, 0);
  }
  SEED("seed-svc-invalid") {
    /* a txid in use, 9+ tries, an answer type not ours, a negative soft
     * timeout, a key never added; unsolicited requests to address A */
    req(s, 0, 1, 0, 0, 0, 0, 0, 0);
    req(s, 1 | REQ_BAD(1), 1, 0, 0, 0, 0, 0, 0);
    req(s, 1 | REQ_BAD(2), 1, 0, 0, 0, 0, 0, 0);
    req(s, 1 | REQ_BAD(3), 2, 0, 0, 0, 0, 0, 0);
    req(s, 1 | REQ_BAD(3), 1, 0, 0, 0, 0, 0, 0);
    req(s, 2, 1, 0, 0, 0, 0, 3, 0);
    for (int i = 0; i < 12; i++)
      req(s, (uint8_t)(i & 3) | REQ_AT_A | REQ_UNSOL, 1, 0, 1, 0, 0, 0, 4);
    tick(s, 1000, 0);
  }
  SEED("seed-svc-own") {
    /* owned at once with an empty table, then on a table: a lookup, a GET,
     * a ping answered, the driver's command, and one from the hook */
    uint8_t o[2] = {0, 0};
    svc(s, FZ_SVC_OP_OWN, o, 1);
    bootstrap_exchange(s, false, 0);
    svc(s, FZ_SVC_OP_OWN, o, 1);
    o[0] = 1;
    svc(s, FZ_SVC_OP_OWN, o, 1);
    for (int i = 0; i < FZ_PEERS; i++) {
      dht_msg m = nodes(i, false, 0, 0);
      body(s, TX(i), &m);
    }
    o[0] = 2 | 0x80;
    o[1] = 1;
    svc(s, FZ_SVC_OP_OWN, o, 2);
    dht_msg r = msg(DHT_MSG_PONG, 0);
    r.seen = seen_v4;
    body(s, TX(1), &r);
    cmd1(s, FZ_CMD_PING, 2);
    o[0] = 3;
    svc(s, FZ_SVC_OP_OWN, o, 1);
    uint8_t b[64];
    dht_wire_w w;
    dht_wire_w_init(&w, b, sizeof b);
    dht_wire_w_array(&w, 4);
    dht_wire_w_uint(&w, FZ_SVC_FIND);
    dht_wire_w_uint(&w, 9);
    dht_wire_w_bin(&w, fz_k.peer_id[3], DHT_ID_LEN);
    dht_wire_w_bool(&w, true);
    body_bytes(s, 3, b, w.len);
    tick(s, 5000, 0);
  }
  SEED("seed-svc-unsolicited") {
    /* ADDR_SEEN taken by the service, then declined (the driver has it) */
    svc1(s, FZ_SVC_OP_TAKE, 1);
    cmd1(s, FZ_CMD_PING, 1);
    dht_msg r = msg(DHT_MSG_PONG, 0);
    r.seen = seen_v4;
    body(s, TX(1), &r);
    svc1(s, FZ_SVC_OP_TAKE, 0);
    cmd1(s, FZ_CMD_PING, 2 | 4);
    r.seen = seen_v6;
    body(s, TX(2) | FZ_SEL_V6, &r);
  }
  SEED("seed-svc-sockets") {
    /* all, fewer, none and more than asked; one deferred; an unknown
     * request; closes from the hook, by the service, of a stray id; too
     * many; no family; then removal closes the rest and the service is
     * added again */
    sock_open(s, 4, false, POL_ALL);
    sock_open(s, 3, true, POL_FEWER | POL_CLOSE1);
    sock_open(s, 2, false, POL_NONE);
    sock_open(s, 2, true, POL_MORE);
    sock_open(s, 3, false, POL_DEFER);
    svc1(s, FZ_SVC_OP_SOCK_REPLY, 0);
    svc1(s, FZ_SVC_OP_SOCK_REPLY, 0);
    uint8_t u[2] = {1, 7};
    svc(s, FZ_SVC_OP_SOCK_REPLY, u, 2);
    svc1(s, FZ_SVC_OP_SOCK_CLOSE, 1);
    uint8_t c[2] = {0x80, 55};
    svc(s, FZ_SVC_OP_SOCK_CLOSE, c, 2);
    svc1(s, FZ_SVC_OP_SOCK_CLOSE, 0x40);
    svc1(s, FZ_SVC_OP_SOCK_OPEN, 8);
    svc1(s, FZ_SVC_OP_SOCK_OPEN, 0x22);
    svc1(s, FZ_SVC_OP_SOCK_OPEN, 0);
    sock_open(s, 2, false, POL_DEFER);
    svc1(s, FZ_SVC_OP_REMOVE, 0);
    svc1(s, FZ_SVC_OP_SOCK_REPLY, 0);
    svc1(s, FZ_SVC_OP_REMOVE, 0);
    sock_open(s, 1, false, POL_ALL);
  }
  SEED("seed-svc-paths") {
    /* requests in on the service's sockets and on unknown ones: the answers
     * leave by them; the service's request on a socket with a TTL */
    sock_open(s, 3, false, POL_ALL);
    svc1(s, FZ_SVC_OP_PATH, 1 | 1 << 2);
    dht_msg m = msg(DHT_MSG_PING, 21);
    body(s, 0, &m);
    m = lookup_req(DHT_MSG_FIND_NODE, fz_k.peer_id[1], 0);
    body(s, 1 | FZ_SEL_V6, &m);
    svc_body(s, 2, FZ_SVC_ECHO, 22, (const uint8_t *)"hi", 2);
    uint8_t pth[5] = {3, 0xde, 0xad, 0xbe, 0xef};
    svc(s, FZ_SVC_OP_PATH, pth, sizeof pth);
    m = msg(DHT_MSG_PING, 23);
    body(s, 3, &m);
    svc_body(s, 3, FZ_SVC_ECHO, 24, (const uint8_t *)"x", 1);
    svc1(s, FZ_SVC_OP_PATH, 2);
    m = lookup_req(DHT_MSG_GET, fz_k.peer_id[2], 0);
    body(s, 0, &m);
    svc1(s, FZ_SVC_OP_PATH, 0);
    req(s, 1, 2, 0, 1, 3, 7, 0, 1);
    answer(s, 0, NEWEST, ANS_OK);
  }
  SEED("seed-svc-keys") {
    /* requests under sending keys: answered under the key, answered to our
     * identity, a conversation started under a key; keys removed with a
     * request outstanding, and a handle taken again */
    svc1(s, FZ_SVC_OP_KEY_ADD, 0);
    svc1(s, FZ_SVC_OP_KEY_ADD, 1);
    req(s, 2, 1, 0, 0, 0, 0, 1, 1);
    answer(s, 0, NEWEST, ANS_OK);
    req(s, 3 | REQ_V6, 2, 0, 1, 0, 0, 2, 1);
    answer(s, 0, NEWEST, ANS_KEY);
    answer(s, 0, NEWEST, ANS_OK);
    req(s, 1, 3, 0, 1, 0, 0, 1, 2);
    dht_msg m = msg(DHT_MSG_PING, 31);
    uint8_t cb[3 + 64] = {1, NEWEST, ANS_CONVERSE};
    size_t cn = enc(&m, cb + 3, sizeof cb - 3);
    op(s, FZ_OP_ANSWER, cb, 3 + cn, NULL, 0);
    svc_body(s, 1, FZ_SVC_ECHO, 32, NULL, 0);
    svc1(s, FZ_SVC_OP_KEY_REMOVE, 1);
    svc1(s, FZ_SVC_OP_KEY_REMOVE, 5);
    tick(s, 400, 0);  /* its retry is dropped: the key is gone */
    tick(s, 3000, 0); /* and it times out */
    svc1(s, FZ_SVC_OP_KEY_ADD, 1);
    svc1(s, FZ_SVC_OP_KEY_ADD, 2);
    svc1(s, FZ_SVC_OP_KEY_ADD, 2);
    svc1(s, FZ_SVC_OP_KEY_ADD, 0);
    tick(s, 3000, 0);
  }
  SEED("seed-svc-mode") {
    /* client mode: requests say so; publish, then back to server mode (the
     * record is made again and published) */
    svc1(s, FZ_SVC_OP_MODE, 0);
    bootstrap_exchange(s, false, 0);
    uint8_t addrs[1 + 5] = {1, DHT_ADDR_MAPPED, 203, 0, 113, 99};
    cmd(s, FZ_CMD_PUT, addrs, sizeof addrs);
    for (int i = 0; i < FZ_PEERS; i++) {
      dht_msg m = nodes(i, false, 0, 0);
      body(s, TX(i), &m);
    }
    svc1(s, FZ_SVC_OP_MODE, 1);
    svc1(s, FZ_SVC_OP_MODE, 1);
    tick(s, 2500, 0);
  }
  SEED("seed-svc-amplification") {
    /* notices to unproven addresses, within the credit and past it; a
     * proof by answering a request; notices without a tx and on a socket */
    uint8_t nb[5] = {0, 0x03, 0xe8, 0, 0};
    svc(s, FZ_SVC_OP_NOTICE, nb, sizeof nb); /* no credit */
    dht_msg m = msg(DHT_MSG_PING, 41);
    body(s, 0, &m);
    nb[1] = 0;
    nb[2] = 40;
    svc(s, FZ_SVC_OP_NOTICE, nb, sizeof nb); /* fits */
    nb[1] = 0x03;
    svc(s, FZ_SVC_OP_NOTICE, nb, sizeof nb); /* does not */
    nb[0] = 0x08 | 0x10;
    svc(s, FZ_SVC_OP_NOTICE, nb, sizeof nb); /* to A */
    nb[0] = 0x20;
    svc(s, FZ_SVC_OP_NOTICE, nb, sizeof nb); /* a core type */
    req(s, 0, 1, 0, 0, 0, 0, 0, 0);
    answer(s, 0, NEWEST, ANS_OK);
    nb[0] = 0;
    svc(s, FZ_SVC_OP_NOTICE, nb, sizeof nb); /* proven: sent */
    svc_body(s, 1 | FZ_SEL_V6, FZ_SVC_ECHO, 42, nb, 4);
  }
  SEED("seed-svc-remove") {
    /* removal with a request, an owned ping and a timer outstanding; the
     * range is dead; added again, it works */
    req(s, 0, 3, 0, 1, 0, 0, 0, 1);
    uint8_t o[2] = {2, 3};
    svc(s, FZ_SVC_OP_OWN, o, 2);
    dht_wire_w w;
    uint8_t b[32];
    dht_wire_w_init(&w, b, sizeof b);
    dht_wire_w_array(&w, 4);
    dht_wire_w_uint(&w, FZ_SVC_TIMER);
    dht_wire_w_uint(&w, 5);
    dht_wire_w_nil(&w);
    dht_wire_w_uint(&w, 500);
    body_bytes(s, 1, b, w.len);
    svc1(s, FZ_SVC_OP_REMOVE, 0);
    answer(s, 0, 0, ANS_OK);
    tick(s, 3000, 0);
    svc1(s, FZ_SVC_OP_REMOVE, 0);
    req(s, 1, 1, 0, 0, 0, 0, 0, 1);
    answer(s, 0, NEWEST, ANS_OK);
    svc1(s, FZ_SVC_OP_REMOVE, 0);
    svc1(s, FZ_SVC_OP_REMOVE, 0);
  }
  SEED("seed-svc-config-caps") {
    /* two requests at most, one key, three sockets, a burst of one
     * unsolicited datagram, three events */
    uint8_t cfg[3] = {0, 0, FZ_CFG2_REQS | FZ_CFG2_KEYS | FZ_CFG2_SOCKS | FZ_CFG2_UNSOL};
    op(s, FZ_OP_CONFIG, cfg, 3, NULL, 0);
    req(s, 0, 1, 0, 0, 0, 0, 0, 0);
    req(s, 1, 1, 0, 0, 0, 0, 0, 0);
    req(s, 2, 1, 0, 0, 0, 0, 0, 0);
    answer(s, 0, NEWEST, ANS_OK);
    req(s, 3 | REQ_AT_A | REQ_UNSOL, 1, 0, 0, 0, 0, 0, 0);
    req(s, 3 | REQ_AT_A | REQ_UNSOL, 1, 0, 0, 0, 0, 0, 0);
    svc1(s, FZ_SVC_OP_KEY_ADD, 0);
    svc1(s, FZ_SVC_OP_KEY_ADD, 1);
    sock_open(s, 2, false, POL_ALL);
    sock_open(s, 2, false, POL_ALL);
    sock_open(s, 1, false, POL_DEFER);
    tick(s, 3000, 0);
  }
  SEED("seed-svc-config-events") {
    /* a queue of three events: owned events, socket events and
     * unsolicited ones compete for it */
    uint8_t cfg[3] = {0, 0, FZ_CFG2_EVENTS};
    op(s, FZ_OP_CONFIG, cfg, 3, NULL, 0);
    uint8_t o[2] = {0, 0};
    svc(s, FZ_SVC_OP_OWN, o, 1);
    svc(s, FZ_SVC_OP_OWN, o, 1);
    sock_open(s, 2, false, POL_ALL);
    sock_open(s, 1, true, POL_ALL);
    svc1(s, FZ_SVC_OP_REMOVE, 0);
  }

  SEED("seed-svc-hook") {
    /* requests sent from a hook (a queue of two: some do not fit), answered
     * and not; a lookup owned from a hook, then the service unplugs itself
     * from it */
    uint8_t cfg[3] = {FZ_CFG_TINYQ, 0, 0};
    op(s, FZ_OP_CONFIG, cfg, 3, NULL, 0);
    uint8_t b[64];
    dht_wire_w w;
    dht_wire_w_init(&w, b, sizeof b);
    dht_wire_w_array(&w, 3);
    dht_wire_w_uint(&w, FZ_SVC_ASK);
    dht_wire_w_uint(&w, 1);
    dht_wire_w_uint(&w, 4);
    body_bytes(s, 2, b, w.len);
    answer(s, 0, NEWEST, ANS_OK);
    tick(s, 800, 0);
    dht_wire_w_init(&w, b, sizeof b);
    dht_wire_w_array(&w, 5);
    dht_wire_w_uint(&w, FZ_SVC_FIND);
    dht_wire_w_uint(&w, 2);
    dht_wire_w_bin(&w, fz_k.peer_id[0], DHT_ID_LEN);
    dht_wire_w_bool(&w, true);
    dht_wire_w_bool(&w, true);
    body_bytes(s, 1, b, w.len);
    tick(s, 3000, 0);
  }
  SEED("seed-svc-sock-remove") {
    /* the service is removed between the driver's answer and its
     * DHT_EV_SOCK_OPENED; a socket request while another waits */
    sock_open(s, 2, false, POL_DEFER);
    sock_open(s, 3, true, POL_ALL);
    svc1(s, FZ_SVC_OP_SOCK_REPLY, 0x10 << 1);
    svc1(s, FZ_SVC_OP_REMOVE, 0);
    sock_open(s, 2, false, POL_ALL | 0x10);
    cmd1(s, FZ_CMD_PING, 1);
    dht_msg r = msg(DHT_MSG_PONG, 0);
    r.seen = seen_v4;
    body(s, TX(1), &r); /* no service listens: the driver has ADDR_SEEN */
  }
  SEED("seed-svc-config-noend") {
    /* the engine is freed with requests, sockets, keys and owned commands
     * outstanding */
    uint8_t cfg[3] = {0, 0, FZ_CFG2_NOEND | FZ_CFG2_SVCS};
    op(s, FZ_OP_CONFIG, cfg, 3, NULL, 0);
    svc1(s, FZ_SVC_OP_KEY_ADD, 2);
    req(s, 0, 4, 1, 2, 0, 0, 1, 1);
    req(s, 1, 3, 0, 0, 0, 0, 0, 1);
    uint8_t o[2] = {2, 2};
    svc(s, FZ_SVC_OP_OWN, o, 2);
    sock_open(s, 3, false, POL_ALL);
    sock_open(s, 2, false, POL_DEFER);
    tick(s, 100, 0);
    svc1(s, FZ_SVC_OP_REMOVE, 0);
    svc1(s, FZ_SVC_OP_REMOVE, 0);
    svc1(s, FZ_SVC_OP_REMOVE, 0);
    svc1(s, FZ_SVC_OP_REMOVE, 0); /* a third service: refused */
  }

  printf("%d seeds, %zu bytes\n", nseeds, total);
  return 0;
}

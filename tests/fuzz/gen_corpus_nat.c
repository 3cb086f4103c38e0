/*
 * gen_corpus_nat.c - writes the seed-* files of tests/fuzz/corpus_nat/ and
 * runs each one, printing what it reached (nat_get_status and the NAT
 * messages each way).
 *
 * It includes fuzz_nat.c, so identities, addresses, clock and op codes
 * cannot drift.  Built by hand (see tests/fuzz/README.md):
 *
 *   cc -std=c11 -D_POSIX_C_SOURCE=200809L -Idht -Inat -Itests/support \
 *      tests/fuzz/gen_corpus_nat.c tests/fuzz/fuzz_common.c dht/dht_*.c \
 *      nat/nat_svc.c nat/nat_dial.c nat/nat_vouch.c nat/nat_vote.c nat/nat_wire.c \
 *      nat/nat_intro.c nat/nat_punch.c \
 *      tests/support/testutil.c \
 *      $(pkg-config --cflags --libs msgpack libsodium) -o /tmp/gen_corpus_nat
 *   rm -f tests/fuzz/corpus_nat/seed-* && /tmp/gen_corpus_nat tests/fuzz/corpus_nat
 */
#include <stdio.h>

#include "fuzz_nat.c"

static uint8_t g_buf[1 << 16];
static const fn_keys *g_keys;
static size_t g_len;
static const char *g_dir;

static void op(int code, const void *p, size_t n) {
  if (g_len + 3 + n > sizeof g_buf)
    abort();
  g_buf[g_len++] = (uint8_t)code;
  g_buf[g_len++] = (uint8_t)(n >> 8);
  g_buf[g_len++] = (uint8_t)n;
  memcpy(g_buf + g_len, p, n);
  g_len += n;
}

#define OP(code, ...)                                                                              \
  do {                                                                                             \
    const uint8_t b_[] = {__VA_ARGS__};                                                            \
    op(code, b_, sizeof b_);                                                                       \
  } while (0)

static void config(uint8_t f, uint8_t f2) {
  OP(FN_OP_CONFIG, f, f2);
}

static void time_ms2(uint32_t ms, uint8_t flags) {
  int shift = 0;
  while (ms > 0xffff) {
    ms >>= 2;
    shift++;
  }
  OP(FN_OP_TIME, (uint8_t)(ms >> 8), (uint8_t)ms, (uint8_t)(shift | flags));
}

static void time_ms(uint32_t ms) {
  time_ms2(ms, 0);
}

/* Every peer and outsider answers its newest unanswered NAT request of
 * type with variant v and status st (only the ones that have one do). */
static void answer_all(uint8_t type, uint8_t v, uint8_t st) {
  for (int w = 0; w < FN_WHO; w++)
    OP(FN_OP_ANSWER, (uint8_t)w, (uint8_t)(0x80 | (type & 0x0f)), v, st);
}

/* DIAL_REQ from sender sel: cookie mode ck, port, filter ex. */
static void dial_req(uint8_t sel, uint8_t ck, uint16_t port, uint8_t ex) {
  OP(FN_OP_NAT, FN_NAT_DIAL_REQ, sel, ck, (uint8_t)(port >> 8), (uint8_t)port, ex);
}

/* DIAL_FWD from sender sel naming target tsel with key psel, nonce byte nb. */
static void dial_fwd(uint8_t sel, uint8_t tsel, uint8_t psel, uint8_t nb) {
  OP(FN_OP_NAT, FN_NAT_DIAL_FWD, sel, tsel, psel, nb, nb, nb, nb, nb, nb, nb, nb, nb, nb, nb, nb,
     nb, nb, nb, nb);
}

static void probe(uint8_t sel, uint8_t nsel) {
  OP(FN_OP_NAT, FN_NAT_PROBE, sel, nsel, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
}

/* A body from sender sel. */
static void body(uint8_t sel, const uint8_t *b, size_t n) {
  uint8_t t[DHT_MAX_BODY + 1];
  t[0] = sel;
  memcpy(t + 1, b, n);
  op(FN_OP_BODY, t, n + 1);
}

/* A VOUCH_REQ (pk, nonce n) or CHECK (nonce n, pk) body naming sender who's
 * key and address (its IPv4 main port), from sender sel. */
static void vouch_body(uint8_t sel, uint8_t type, int who, uint8_t n) {
  dht_addr a;
  fn_addr(who, false, false, &a);
  uint8_t nonce[NAT_NONCE_LEN];
  memset(nonce, n, sizeof nonce);
  nat_wire_msg m = {.type = type, .txid = 0x7a000000u + n};
  if (type == NAT_T_VOUCH_REQ) {
    m.u.vouch_req.target = a;
    m.u.vouch_req.pk = g_keys->id[who + 1].pk;
    m.u.vouch_req.nonce = nonce;
  } else {
    m.u.check.asker = a;
    m.u.check.pk = g_keys->id[who + 1].pk;
    m.u.check.nonce = nonce;
  }
  uint8_t b[128];
  dht_ssize len = nat_wire_encode(b, sizeof b, &m);
  if (len <= 0)
    abort();
  body(sel, b, (size_t)len);
}

/* Until the vote is known and the engine has sent its first DIAL_REQ
 * (solicit round at +5 s, first dial-back at +10 s). */
static void to_first_dial(void) {
  time_ms2(20000, 0x80);
}

static void seed(const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", g_dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(g_buf, 1, g_len, f) != g_len || fclose(f) != 0) {
    fprintf(stderr, "cannot write %s\n", path);
    exit(1);
  }
  nat_status st;
  fn *h = NULL;
  fn_run(g_buf, g_len, &st, &h);
  printf("%-30s %4zu B  %-6s v4 %d/%d/%s v6 %d/%d/%s reach %-13s dials %llu ok %llu failed %llu "
         "inconcl %llu helped %llu probes %llu refused %llu modes %llu dropped %llu asked %llu "
         "reports %llu ignored %llu  out %llu/%llu/%llu/%llu/%llu/%llu in "
         "%llu/%llu/%llu/%llu/%llu/%llu unopened %llu\n",
         name, g_len, st.server ? "server" : "client", st.vote[0].known, st.vote[0].prefixes,
         nat_mapping_name(st.vote[0].mapping), st.vote[1].known, st.vote[1].prefixes,
         nat_mapping_name(st.vote[1].mapping), nat_reach_name(st.reach),
         (unsigned long long)st.dials, (unsigned long long)st.dials_ok,
         (unsigned long long)st.dials_failed, (unsigned long long)st.dials_inconclusive,
         (unsigned long long)st.helped, (unsigned long long)st.probes_sent,
         (unsigned long long)st.refused, (unsigned long long)st.mode_changes,
         (unsigned long long)st.dropped, (unsigned long long)st.witnesses_asked,
         (unsigned long long)st.reports, (unsigned long long)st.reports_ignored,
         (unsigned long long)h->nat_out[0], (unsigned long long)h->nat_out[1],
         (unsigned long long)h->nat_out[2], (unsigned long long)h->nat_out[3],
         (unsigned long long)h->nat_out[4], (unsigned long long)h->nat_out[5],
         (unsigned long long)h->nat_in[0], (unsigned long long)h->nat_in[1],
         (unsigned long long)h->nat_in[2], (unsigned long long)h->nat_in[3],
         (unsigned long long)h->nat_in[4], (unsigned long long)h->nat_in[5],
         (unsigned long long)h->unopened);
  printf("%-30s vouching: checked %llu ok %llu failed %llu full %llu back %llu; checks %llu "
         "refused %llu; vouched %llu ignored %llu\n",
         "", (unsigned long long)st.vouch_asked, (unsigned long long)st.vouch_ok,
         (unsigned long long)st.vouch_failed, (unsigned long long)st.vouch_full,
         (unsigned long long)st.vouch_fallback, (unsigned long long)st.checks_sent,
         (unsigned long long)st.vouch_refused, (unsigned long long)st.vouched_sent,
         (unsigned long long)st.checks_ignored);
  printf("%-30s punching: clients %d introduced %llu refused %llu; holes %llu fwds refused %llu "
         "paths %d\n",
         "", st.clients, (unsigned long long)st.introduced, (unsigned long long)st.intro_refused,
         (unsigned long long)st.holes_sent, (unsigned long long)st.fwds_refused, st.npunch_log);
  free(h);
  g_len = 0;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: gen_corpus_nat DIR\n");
    return 2;
  }
  g_dir = argv[1];
  g_keys = fn_setup();

  /* ---- the vote ---- */

  /* server mode: solicit rounds gather reports, the vote is known (EIM) */
  config(0, 0);
  time_ms(70000);
  seed("seed-vote-server");

  /* the peers report different ports: a symmetric NAT; auto stays a client
   * (reach: no) */
  config(1, 0);
  for (int w = 0; w < FN_PEERS; w++)
    OP(FN_OP_SEEN, (uint8_t)w, (uint8_t)(w & 1));
  OP(FN_OP_SEEN, 2, 2);
  to_first_dial();
  seed("seed-vote-symmetric");

  /* IPv6 reports, a v4-mapped one, loopback and a LAN address */
  config(0, 0);
  OP(FN_OP_SEEN, 0, 3);
  OP(FN_OP_SEEN, 1, 3);
  OP(FN_OP_SEEN, 2, 6);
  OP(FN_OP_SEEN, 3, 5);
  time_ms(70000);
  OP(FN_OP_SEEN, 3, 7);
  time_ms(70000);
  seed("seed-vote-families");

  /* PINGs left to PONG ops: chosen and raw `seen`, other local sockets
   * (some past max_sockets), a PONG nobody asked for */
  config(FN_CFG_NOPONG, 0);
  for (int w = 0; w < FN_PEERS; w++)
    OP(FN_OP_CMD, FN_CMD_PING, (uint8_t)w);
  OP(FN_OP_PONG, 0, 0x80, 0);
  OP(FN_OP_PONG, 1, 0x80, 4);
  OP(FN_OP_PONG, 2, 0x80, 0x08, 198, 51, 100, 77, 0x13, 0x88);
  OP(FN_OP_PONG, 3, 0x80, 0x18, 0x20, 0x01, 0x0d, 0xb8, 0xbb, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0x13,
     0x88);
  for (int w = 0; w < FN_PEERS; w++)
    OP(FN_OP_CMD, FN_CMD_PING, (uint8_t)w);
  for (int w = 0; w < FN_PEERS; w++)
    OP(FN_OP_PONG, (uint8_t)(w | (w + 2) << 5), 0x80, 0);
  OP(FN_OP_PONG, 4, 0x80, 0); /* nothing asked: a PONG with a made-up txid */
  time_ms(70000);
  seed("seed-pong-chosen");

  /* one vote socket only: reports on others are ignored */
  config(FN_CFG_NOPONG, FN_CFG2_SOCKS1);
  for (int w = 0; w < FN_PEERS; w++)
    OP(FN_OP_CMD, FN_CMD_PING, (uint8_t)w);
  for (int w = 0; w < FN_PEERS; w++)
    OP(FN_OP_PONG, (uint8_t)(w | 3 << 5), 0x80, 0);
  seed("seed-pong-sockets");

  /* ---- the tested role ---- */

  /* auto: DIAL_REQ out, DIAL_RESP ok, the PROBE from an outsider: server */
  config(1, 0);
  to_first_dial();
  answer_all(NAT_T_DIAL_REQ, 0, NAT_W_OK);
  probe(4, 0);
  answer_all(NAT_T_DIAL_REQ, 0, NAT_W_OK); /* a late answer */
  time_ms(60000);
  seed("seed-dial-ok");

  /* the probe before the helper's answer, then the same nonce again */
  config(1, 0);
  to_first_dial();
  probe(5, 0);
  probe(4, 0);
  answer_all(NAT_T_DIAL_REQ, 0, NAT_W_OK);
  seed("seed-dial-probe-first");

  /* a helper that asked a prober, and no probe: failed, three times: the
   * reach is "no" */
  config(1, 0);
  to_first_dial();
  for (int r = 0; r < 4; r++) {
    answer_all(NAT_T_DIAL_REQ, 0, NAT_W_OK);
    time_ms(8000);
    time_ms2(40000, 0x80);
  }
  seed("seed-dial-failed");

  /* tight timers: server after a probe, a client again after one failure */
  config(1 | FN_CFG_TIGHT, 0);
  time_ms2(20000, 0x80);
  answer_all(NAT_T_DIAL_REQ, 0, NAT_W_OK);
  probe(4, 0);
  time_ms2(20000, 0x80);
  answer_all(NAT_T_DIAL_REQ, 0, NAT_W_OK);
  time_ms(3000);
  time_ms2(20000, 0x80);
  answer_all(NAT_T_DIAL_REQ, 0, NAT_W_OK);
  probe(5, 0);
  time_ms(20000);
  seed("seed-dial-flip");

  /* no prober, refused, an unknown status: inconclusive */
  config(1, 0);
  to_first_dial();
  answer_all(NAT_T_DIAL_REQ, 0, NAT_W_NO_PROBER);
  time_ms2(40000, 0x80);
  answer_all(NAT_T_DIAL_REQ, 0, NAT_W_REFUSED);
  time_ms2(40000, 0x80);
  answer_all(NAT_T_DIAL_REQ, 0, 77);
  seed("seed-dial-inconclusive");

  /* no answer: the request times out after its two tries */
  config(1, 0);
  to_first_dial();
  time_ms(40000);
  seed("seed-dial-timeout");

  /* wrong answers: txid, type, another sender, malformed, twice, from
   * another address */
  for (uint8_t v = 1; v <= 6; v++) {
    char name[64];
    config(1, 0);
    to_first_dial();
    answer_all(NAT_T_DIAL_REQ, v, NAT_W_OK);
    probe(4, 0);
    snprintf(name, sizeof name, "seed-dial-answer-v%u", v);
    seed(name);
  }

  /* probes with a flipped nonce, a made-up one, on another socket */
  config(1, 0);
  to_first_dial();
  answer_all(NAT_T_DIAL_REQ, 0, NAT_W_OK);
  probe(4, 0x12);
  probe(5, 3);
  probe(4, 0x20);
  seed("seed-probe-nonces");

  /* client mode: dial-backs still run, the mode never moves */
  config(2, 0);
  to_first_dial();
  answer_all(NAT_T_DIAL_REQ, 0, NAT_W_OK);
  probe(4, 0);
  seed("seed-client");

  /* no cookies for the engine: no helper to ask */
  config(1 | FN_CFG_NOTOKEN, 0);
  time_ms(45000);
  seed("seed-dial-nocookie");

  /* ---- the helper role ---- */

  /* peer 0 asks for a dial-back with the cookie we gave it: a DIAL_FWD to
   * a prober, its ack; peer 1 too (its own network) */
  config(0, 0);
  dial_req(0, 0, 0, 0);
  answer_all(NAT_T_DIAL_FWD, 0, NAT_W_OK);
  dial_req(1, 0, 0, 3);
  answer_all(NAT_T_DIAL_FWD, 0, NAT_W_REFUSED);
  seed("seed-helper-ok");

  /* made-up, borrowed (another address, another sender) and damaged
   * cookies: refused */
  config(0, 0);
  OP(FN_OP_CMD, FN_CMD_ASK, 1);
  OP(FN_OP_CMD, FN_CMD_ASK, 0x10);
  dial_req(0, 2, 0, 0);
  dial_req(0, 1, 0, 0);
  dial_req(0, 5, 0, 0);
  dial_req(0, 3 | 5 << 3, 0, 0);
  seed("seed-helper-cookies");

  /* from the sender's other port with that port's cookie; a port claimed */
  config(0, 0);
  dial_req(0x10, 0, 0, 0);
  time_ms(6000);
  dial_req(2, 0, 4444, 0);
  seed("seed-helper-ports");

  /* Bloom filters: all ones (no prober), one peer excluded */
  config(0, 0);
  dial_req(0, 0, 0, 1);
  time_ms(6000);
  dial_req(0, 0, 0, 2 | 1 << 2);
  time_ms(6000);
  dial_req(0, 0, 0, 2 | 2 << 2);
  seed("seed-helper-bloom");

  /* one network every helper_gap_ms: the second is refused */
  config(0, FN_CFG2_SLOW);
  dial_req(3, 0, 0, 0);
  dial_req(3, 0, 0, 0);
  time_ms(61000);
  dial_req(3, 0, 0, 0);
  seed("seed-helper-gap");

  /* IPv6: the peers in the table with their IPv6 addresses */
  config(FN_CFG_V6, 0);
  time_ms(2000);
  dial_req(0x08, 0, 0, 0);
  answer_all(NAT_T_DIAL_FWD, 0, NAT_W_OK);
  seed("seed-helper-v6");

  /* an outsider (not in the table) asks */
  config(0, 0);
  dial_req(4, 0, 0, 0);
  dial_req(5, 0, 0, 0);
  seed("seed-helper-outsider");

  /* max_requests 3: the DIAL_FWD cannot be sent */
  config(FN_CFG_SMALL | FN_CFG_NOPONG, 0);
  for (int w = 0; w < FN_PEERS; w++)
    dial_req((uint8_t)w, 0, 0, 0);
  seed("seed-helper-full");

  /* ---- the prober role ---- */

  /* a DIAL_FWD naming an outsider with its key: one PROBE, its ack */
  config(0, 0);
  dial_fwd(0, 4, 6, 0x11);
  answer_all(NAT_T_PROBE, 0, 0);
  dial_fwd(1, 5 | 0x08, 6, 0x12);
  answer_all(NAT_T_PROBE, 1, 0);
  seed("seed-prober-ok");

  /* another key than the target's, ours, a made-up one */
  config(0, 0);
  dial_fwd(0, 1, 2, 0x21);
  time_ms(1500);
  dial_fwd(0, 1, 7, 0x22);
  time_ms(1500);
  dial_fwd(0, 2, 0x08, 0x23);
  seed("seed-prober-keys");

  /* raw targets, IPv4 and IPv6 */
  config(0, 0);
  OP(FN_OP_NAT, FN_NAT_DIAL_FWD, 0, 6, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 9,
     9, 9, 9, 0x30, 0x39);
  time_ms(1500);
  OP(FN_OP_NAT, FN_NAT_DIAL_FWD, 0, 7, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17,
     0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0x30, 0x39);
  seed("seed-prober-raw");

  /* one asker network every prober_gap_ms; unsolicited bucket of one */
  config(FN_CFG_SMALL, FN_CFG2_SLOW);
  dial_fwd(2, 4, 6, 0x31);
  dial_fwd(2, 5, 6, 0x32);
  dial_fwd(3, 5, 6, 0x33);
  time_ms(31000);
  dial_fwd(2, 4 | 0x10, 6, 0x34);
  seed("seed-prober-gap");

  /* ---- vouching ---- */

  /* the voucher: a VOUCH_REQ naming an outsider (one CHECK, acked), one
   * naming the asker itself, one from the same asker at once (its rate), one
   * from another peer naming the engine */
  config(0, 0);
  vouch_body(0, NAT_T_VOUCH_REQ, 4, 0x41);
  answer_all(NAT_T_CHECK, 0, 0);
  vouch_body(1, NAT_T_VOUCH_REQ, 1, 0x42);
  vouch_body(1, NAT_T_VOUCH_REQ, 5, 0x43);
  time_ms(1500);
  vouch_body(2, NAT_T_VOUCH_REQ, 5, 0x44);
  seed("seed-vouch-voucher");

  /* the candidate: a CHECK naming a peer the engine sent to (a VOUCHED
   * to it), one naming an outsider it never sent to (nothing), one on
   * another port */
  config(0, 0);
  time_ms(2000);
  vouch_body(5, NAT_T_CHECK, 4, 0x52);
  vouch_body(4, NAT_T_CHECK, 0, 0x51);
  vouch_body(0x14, NAT_T_CHECK, 1, 0x53);
  seed("seed-vouch-candidate");

  /* the checker: outsiders ask with the server flag; the engine asks a
   * peer to vouch; one voucher acks, one refuses, the rest stay silent;
   * then VOUCHEDs nobody can match */
  config(0, 0);
  OP(FN_OP_CMD, FN_CMD_ASK, 4 | 0x20);
  OP(FN_OP_CMD, FN_CMD_ASK, 5 | 0x20);
  answer_all(NAT_T_VOUCH_REQ, 0, NAT_W_OK);
  time_ms(300);
  answer_all(NAT_T_VOUCH_REQ, 0, NAT_W_REFUSED);
  {
    static const uint8_t vd[] = {0x93, 0x4a, 0x01, 0xc4, 0x10, 1,  2,  3,  4,  5, 6,
                                 7,    8,    9,    10,   11,   12, 13, 14, 15, 16};
    body(4, vd, sizeof vd);
  }
  time_ms(12000);
  seed("seed-vouch-checker");

  /* ---- hole punching ---- */

  /* the engine as an introducer: an outsider registers (with the cookie
   * the engine gave its address), another asks for a punch to it, to a key
   * nobody registered, and with no cookie; HOLEs nobody expects */
  config(0, 0);
  time_ms(3000);
  OP(FN_OP_CMD, FN_CMD_ASK, 4); /* their cookies for their addresses */
  OP(FN_OP_CMD, FN_CMD_ASK, 5);
  {
    nat_wire_msg m = {.type = NAT_T_INTRO_REG, .txid = 0x7b000001u};
    static const uint8_t ck[DHT_TOKEN_LEN] = {1};
    m.u.punch.ms = 40;
    m.u.punch.cookie = ck;
    uint8_t b[160];
    dht_ssize len = nat_wire_encode(b, sizeof b, &m);
    if (len <= 0)
      abort();
    body(4 | 0x80, b, (size_t)len); /* bit 7: the engine's own cookie for sender 4 */
    static const uint8_t nonce[NAT_NONCE_LEN] = {7, 7, 7};
    nat_wire_msg q = {.type = NAT_T_PUNCH_REQ, .txid = 0x7b000002u};
    q.u.punch.pk = g_keys->id[5].pk; /* sender 4 */
    q.u.punch.nonce = nonce;
    q.u.punch.ms = 12;
    q.u.punch.ncands = 1;
    fn_addr(5, false, false, &q.u.punch.cands[0]);
    q.u.punch.cookie = ck;
    len = nat_wire_encode(b, sizeof b, &q);
    if (len <= 0)
      abort();
    body(5, b, (size_t)len);
    time_ms(50);
    q.u.punch.pk = g_keys->id[2].pk; /* a peer that never registered */
    body(5, b, (size_t)nat_wire_encode(b, sizeof b, &q));
    nat_wire_msg h = {.type = NAT_T_HOLE, .txid = 0x7b000003u};
    h.u.hole.nonce = nonce;
    len = nat_wire_encode(b, sizeof b, &h);
    body(5, b, (size_t)len);
    body(1, b, (size_t)len);
  }
  time_ms(60000);
  seed("seed-punch-introducer");

  /* the engine as a client: it keeps introducers among the peers and
   * registers; a peer forwards a punch naming sender 5 (an introducer's
   * PUNCH_FWD starts HOLEs; anyone else's is refused); sender 5's HOLEs
   * with the forwarded nonce and with another */
  config(2, 0);
  time_ms(40000);
  answer_all(NAT_T_INTRO_REG, 0, NAT_W_OK);
  {
    static const uint8_t nonce[NAT_NONCE_LEN] = {5, 5, 5};
    nat_wire_msg f = {.type = NAT_T_PUNCH_FWD, .txid = 0x7b000004u};
    f.u.punch.pk = g_keys->id[6].pk; /* sender 5 */
    f.u.punch.nonce = nonce;
    f.u.punch.ms = 20;
    f.u.punch.ncands = 2;
    fn_addr(5, false, false, &f.u.punch.cands[0]);
    fn_addr(5, true, false, &f.u.punch.cands[1]);
    uint8_t b[160];
    dht_ssize len = nat_wire_encode(b, sizeof b, &f);
    if (len <= 0)
      abort();
    for (uint8_t w = 0; w < 4; w++)
      body(w, b, (size_t)len);
    body(4, b, (size_t)len);
    time_ms(100);
    nat_wire_msg h = {.type = NAT_T_HOLE, .txid = 0x7b000005u};
    h.u.hole.nonce = nonce;
    len = nat_wire_encode(b, sizeof b, &h);
    body(5, b, (size_t)len);
    static const uint8_t other[NAT_NONCE_LEN] = {6};
    h.u.hole.nonce = other;
    body(5, b, (size_t)nat_wire_encode(b, sizeof b, &h));
  }
  time_ms(10000);
  seed("seed-punch-client");

  /* ---- everything else ---- */

  /* answers nobody asked for, of each type */
  config(0, 0);
  for (uint8_t t = 0; t < 3; t++)
    OP(FN_OP_NAT, FN_NAT_STRAY, t, t, 42, 0);
  seed("seed-stray");

  /* malformed NAT bodies of each type, an unknown type, a non-NAT type */
  {
    static const uint8_t bad[][24] = {
        {0x95, 0x40, 0x01, 0x01, 0xc4, 0x00},                         /* DIAL_REQ, short arity */
        {0x96, 0x40, 0x01, 0x00, 0xc4, 0x00, 0xc4, 0x00, 0xc4, 0x00}, /* port 0 */
        {0x94, 0x41, 0x01, 0x00, 0x00},                               /* DIAL_RESP, one more */
        {0x95, 0x42, 0x01, 0xc4, 0x02, 1, 2, 0xc4, 0x00, 0xc4, 0x00}, /* bad target */
        {0x93, 0x43, 0x01, 0xcd, 0x01, 0x00},                         /* status 256 */
        {0x93, 0x44, 0x01, 0xc4, 0x03, 1, 2, 3},                      /* short nonce */
        {0x93, 0x45, 0x01, 0x00},                                     /* PROBE_ACK, one more */
        {0x94, 0x46, 0x01, 0xc4, 0x00, 0xc4, 0x00},                   /* VOUCH_REQ, short */
        {0x93, 0x48, 0x01, 0xc4, 0x00},                               /* CHECK, short */
        {0x93, 0x4a, 0x01, 0xc4, 0x03, 1, 2, 3},                      /* VOUCHED, short nonce */
        {0x92, 0x4e, 0x01},                                           /* unknown type: ignored */
        {0x92, 0x50, 0x01},                                           /* nobody's range */
        {0xc1},
    };
    static const uint8_t lens[] = {6, 10, 5, 11, 6, 8, 4, 7, 5, 8, 3, 3, 1};
    config(0, 0);
    for (size_t i = 0; i < sizeof lens; i++)
      body((uint8_t)(i % 6), bad[i], lens[i]);
    seed("seed-malformed");
  }

  /* a raw DIAL_REQ body with the cookie patched in (BODY bit 7) and a txid
   * of the engine's (bit 6) */
  {
    uint8_t b[80];
    size_t n = 0;
    b[n++] = 0x96, b[n++] = 0x40, b[n++] = 0x07, b[n++] = 0xcd, b[n++] = 0x17, b[n++] = 0x70;
    b[n++] = 0xc4, b[n++] = 16;
    memset(b + n, 0x42, 16), n += 16;
    b[n++] = 0xc4, b[n++] = 16;
    memset(b + n, 0, 16), n += 16;
    b[n++] = 0xc4, b[n++] = 0;
    config(0, 0);
    OP(FN_OP_CMD, FN_CMD_ASK, 2);
    /* the nonce is the first bin 16: give a wrong cookie here, then the real one */
    body(2, b, n);
    memset(b + 8, 0xc0, 16); /* no bin 16 header left before the cookie's */
    b[6] = 0xc4, b[7] = 15;  /* a 15-byte nonce: malformed */
    body(0x82, b, n - 1);
    seed("seed-body-patch");
  }

  /* raw datagrams */
  config(0, 0);
  OP(FN_OP_RAW, 1, 2, 3);
  {
    uint8_t r[120];
    memset(r, 0, sizeof r);
    r[0] = DHT_VERSION;
    op(FN_OP_RAW, r, sizeof r);
  }
  seed("seed-raw");

  /* hours of clock: recheck rounds, redials, votes ageing out */
  config(1, 0);
  to_first_dial();
  answer_all(NAT_T_DIAL_REQ, 0, NAT_W_OK);
  probe(4, 0);
  time_ms(3u * 3600 * 1000);
  seed("seed-hours");

  /* no bootstrap: an empty table, nobody to ask, then a bootstrap */
  config(1 | FN_CFG_NOBOOT, 0);
  time_ms(20000);
  OP(FN_OP_CMD, FN_CMD_BOOT);
  OP(FN_OP_CMD, FN_CMD_FIND, 0x55);
  time_ms(20000);
  seed("seed-noboot");

  /* min_votes 2, amplification factor 1 */
  config(3, FN_CFG2_MINV2 | FN_CFG2_AMP1);
  OP(FN_OP_SEEN, 0, 1);
  to_first_dial();
  answer_all(NAT_T_DIAL_REQ, 0, NAT_W_OK);
  probe(5, 0);
  dial_req(1, 0, 0, 0);
  seed("seed-minvotes-amp");
  return 0;
}

/*
 * nat_vouch.c - vouching: a stranger that asks to be stored enters our
 * routing table only once a third node reached it (docs/protocol.md,
 * "Routing table" and "Vouching").
 *
 * The engine's own check, a PING to the stranger, proves nothing about a
 * NAT: it comes from the very address the stranger has just sent its
 * request to, so every NAT lets it in, and a node behind one that runs in
 * server mode by mistake would enter every table while nobody else can
 * reach it.  So the proof comes from elsewhere.  Three roles, every node
 * plays each:
 *  - checker (B): takes the engine's DHT_EV_CANDIDATE, picks a voucher C
 *    from its table (the stranger's family, another network) and sends it
 *    VOUCH_REQ {the stranger's address as B saw it, its key, a fresh
 *    nonce}; inserts the stranger (dht_svc_add_contact) when a VOUCHED with
 *    that nonce comes from its key and address within vouch_wait_ms;
 *  - voucher (C): honours an asker network at most every voucher_gap_ms,
 *    a target that nat_target_ok allows, and sends the stranger one CHECK
 *    {nonce, B's key and address as C saw B}, sealed to the stranger's key,
 *    never larger than the VOUCH_REQ, as an unsolicited request (the engine
 *    rate-limits those per destination prefix), from a socket of its own
 *    (check_sock): the stranger has likely sent to C's main port already
 *    (in a small network everybody talks to everybody), and a
 *    port-restricted NAT would let a CHECK from there in;
 *  - candidate (A): answers a CHECK that came in on its main socket, and
 *    only when it names a B its main socket sent to lately
 *    (dht_recent_dests), with a VOUCHED {nonce} to B: nobody can aim it at
 *    a third party, and the engine holds it to the amplification rule.
 * The checker paces itself by the vouchers' rule (one VOUCH_REQ per voucher
 * per voucher_gap_ms; with all busy it waits, NAT_VOUCHERS times at most),
 * and a voucher that refuses anyway or stays silent (an older node ignores
 * VOUCH_REQ) is replaced by another, NAT_VOUCHERS in all.  When all
 * of them were silent, or nobody is in another network than the stranger's
 * (a network's first few nodes), the candidate goes back to the engine's
 * verify PING: vouching cannot run there, and the stranger has no say in
 * whether it can.  A refusal is a voucher that could have run the check:
 * the stranger is then not stored this time.
 *
 * Bounds: set.vouches checks at once (a candidate finding them all busy is
 * dropped; the engine asks again after 10 minutes at the earliest); one
 * CHECK per VOUCH_REQ; one VOUCHED per CHECK.
 */
#include <string.h>

#include <sodium.h>

#include "nat_int.h"

/* Tags of our VOUCH_REQs: the slot + VOUCH_TAG (dial-backs use 1..NAT_DIALS);
 * our VOUCHEDs (their answer only says it arrived) VOUCHED_TAG. */
#define VOUCH_TAG 0x100
#define VOUCHED_TAG 0x200

static int fam_ix(uint8_t family) {
  return family == DHT_AF_INET6 ? 1 : 0;
}

static void send_body(nat_svc *n, const dht_peer *to, uint32_t local, const nat_wire_msg *m) {
  uint8_t buf[128];
  dht_ssize len = nat_wire_encode(buf, sizeof buf, m);
  if (len > 0) {
    dht_tx tx = {.local = local};
    dht_svc_send(n->e, to, &tx, buf, (size_t)len);
  }
}

void nat_vouch_start(nat_svc *n) {
  static const uint8_t fams[2] = {DHT_AF_INET, DHT_AF_INET6};
  for (int i = 0; i < 2; i++) {
    int64_t r = dht_sock_open(n->e, n->svc_id, 1, fams[i]);
    n->check_req[i] = r > 0 ? r : 0;
  }
}

/* ---- the checker (B) ------------------------------------------------------------ */

static void vlog(const nat_svc *n, const dht_addr *a, const char *what) {
  char t[DHT_ADDR_STRLEN];
  nat_log(n, DHT_LOG_DEBUG, "vouching for %s: %s", dht_addr_fmt(a, t, sizeof t), what);
}

static void vouch_end(nat_svc *n, nat_vouch *v) {
  v->used = false;
  /* a late VOUCH_ACK must not end the check that takes the slot next */
  dht_svc_cancel(n->e, n->svc_id, (uint64_t)(v - n->vouches) + VOUCH_TAG);
}

/* Asks a voucher for candidate v (not the last one asked, nor one we asked
 * within voucher_gap_ms).  Returns 0; NO_VOUCHER when nobody in our table
 * can vouch (or the request cannot go); ALL_BUSY when all who can were
 * asked too recently. */
enum { NO_VOUCHER = -1, ALL_BUSY = -2 };

static int ask_voucher(nat_svc *n, nat_vouch *v, dht_ts now) {
  uint8_t rnd[DHT_ID_LEN];
  n->cb.rand(n->cb.ctx, rnd, sizeof rnd);
  dht_contact cl[DHT_K_MAX];
  int nc = dht_closest(n->e, rnd, cl, DHT_K_MAX);
  uint64_t a_net = nat_prefix_key(&v->cand.addr);
  const dht_contact *c = NULL;
  bool any = false;
  for (int i = 0; i < nc && !c; i++) {
    if (cl[i].addr.family != v->cand.addr.family || memcmp(cl[i].pk, v->cand.pk, DHT_PK_LEN) == 0 ||
        (v->asked > 0 && memcmp(cl[i].pk, v->voucher, DHT_PK_LEN) == 0) ||
        nat_prefix_key(&cl[i].addr) == a_net)
      continue;
    any = true;
    if (!nat_gap_busy(n->vouchers_used, nat_prefix_key(&cl[i].addr), n->set.voucher_gap_ms, now))
      c = &cl[i];
  }
  if (!c)
    return any ? ALL_BUSY : NO_VOUCHER;
  nat_wire_msg q = {.type = NAT_T_VOUCH_REQ, .txid = dht_svc_txid(n->e)};
  q.u.vouch_req.target = v->cand.addr;
  q.u.vouch_req.pk = v->cand.pk;
  q.u.vouch_req.nonce = v->nonce;
  uint8_t buf[128];
  dht_ssize len = nat_wire_encode(buf, sizeof buf, &q);
  dht_peer pc;
  memcpy(pc.pk, c->pk, DHT_PK_LEN);
  pc.addr = c->addr;
  dht_req_opts o = {
      .answer = NAT_T_VOUCH_ACK, .tries = 1, .tag = (uint64_t)(v - n->vouches) + VOUCH_TAG};
  if (len <= 0 || dht_svc_request(n->e, n->svc_id, &pc, buf, (size_t)len, &o, now) != 0)
    return NO_VOUCHER;
  nat_gap_ok(n->vouchers_used, nat_prefix_key(&c->addr), 0, now);
  memcpy(v->voucher, c->pk, DHT_PK_LEN);
  v->asked++;
  v->waiting = false;
  v->deadline = now + n->set.vouch_wait_ms;
  return 0;
}

/* Every voucher is busy: try again once one is free, a few times. */
static bool wait_voucher(nat_svc *n, nat_vouch *v, dht_ts now) {
  if (v->waits >= NAT_VOUCHERS)
    return false;
  v->waits++;
  v->waiting = true;
  v->deadline = now + n->set.voucher_gap_ms;
  return true;
}

/* Every voucher asked was silent (a node of an older version ignores
 * VOUCH_REQ), or there is nobody to ask.  The candidate goes back to the
 * engine's verify PING: a stranger cannot make a voucher we picked keep
 * quiet, so this only happens where vouching cannot run at all. */
static void hand_back(nat_svc *n, nat_vouch *v, dht_ts now) {
  dht_peer a = v->cand;
  vlog(n, &a.addr, "no voucher answered: the engine's PING decides");
  vouch_end(n, v);
  n->v_fallback++;
  dht_svc_verify(n->e, &a, now);
}

static bool on_candidate(nat_svc *n, const dht_event *ev, dht_ts now) {
  if (!n->set.vouch)
    return false;
  /* the table exists only while checks run: most of the time none does,
   * and the simulator counts every idle byte a million times */
  if (!n->vouches &&
      !(n->vouches = dht_mem_calloc(&n->mem, (size_t)n->set.vouches, sizeof *n->vouches)))
    return false; /* out of memory: the engine's PING */
  nat_vouch *v = NULL;
  for (int i = 0; i < n->set.vouches && !v; i++)
    if (!n->vouches[i].used)
      v = &n->vouches[i];
  if (!v) {
    n->v_full++;
    return true; /* not stored this time: a verify PING would prove nothing */
  }
  memset(v, 0, sizeof *v);
  v->cand = ev->u.candidate.peer;
  n->cb.rand(n->cb.ctx, v->nonce, NAT_NONCE_LEN);
  int rv = ask_voucher(n, v, now);
  if (rv == NO_VOUCHER) {
    n->v_fallback++;
    return false; /* the engine's PING, at once */
  }
  if (rv == ALL_BUSY)
    wait_voucher(n, v, now);
  v->used = true;
  n->v_asked++;
  vlog(n, &v->cand.addr, "asked a voucher");
  return true;
}

static void on_vouched(nat_svc *n, const dht_msg_in *in, const nat_wire_msg *m, dht_ts now) {
  /* VOUCHED is a request, so that it leaves the candidate even before our
   * answer to its request reached it (the CHECK may take a shorter way
   * round): a small answer, paid from the credit its VOUCHED earned */
  nat_wire_msg ack = {.type = NAT_T_VOUCH_ACK, .txid = in->txid};
  ack.u.vouch_ack.status = NAT_W_OK;
  send_body(n, &in->from, in->local, &ack);
  for (int i = 0; n->vouches && i < n->set.vouches; i++) {
    nat_vouch *v = &n->vouches[i];
    if (!v->used || memcmp(v->cand.pk, in->from.pk, DHT_PK_LEN) != 0 ||
        sodium_memcmp(v->nonce, m->u.vouched.nonce, NAT_NONCE_LEN) != 0 ||
        !dht_addr_eq(&v->cand.addr, &in->from.addr))
      continue;
    dht_peer a = v->cand;
    vouch_end(n, v);
    n->v_ok++;
    vlog(n, &a.addr, "its VOUCHED came: stored");
    dht_svc_add_contact(n->e, &a, now); /* a full bucket may still refuse it */
    return;
  }
  n->dropped++; /* no check of ours: another key, nonce or address, or too late */
}

/* ---- the voucher (C) ------------------------------------------------------------- */

static void on_vouch_req(nat_svc *n, const dht_msg_in *in, const nat_wire_msg *m, dht_ts now) {
  dht_peer a;
  memcpy(a.pk, m->u.vouch_req.pk, DHT_PK_LEN);
  a.addr = m->u.vouch_req.target;
  uint32_t sock = n->check_sock[fam_ix(a.addr.family)];
  nat_wire_msg c = {.type = NAT_T_CHECK, .txid = dht_svc_txid(n->e)};
  c.u.check.nonce = m->u.vouch_req.nonce;
  c.u.check.pk = in->from.pk;
  c.u.check.asker = in->from.addr;
  uint8_t buf[128];
  dht_ssize len = nat_wire_encode(buf, sizeof buf, &c);
  dht_req_opts o = {
      .answer = NAT_T_CHECK_ACK, .tries = 1, .unsolicited = true, .tx = {.local = sock}};
  /* one CHECK, no larger than what asked for it, to a target a stranger may
   * aim us at, at the asker network's pace; unsolicited, so the engine holds
   * it to the destination prefix's rate too */
  bool ok =
      len > 0 && (size_t)len <= in->len && memcmp(a.pk, in->from.pk, DHT_PK_LEN) != 0 &&
      memcmp(a.pk, dht_self_pk(n->e), DHT_PK_LEN) != 0 && nat_target_ok(&a.addr, &in->from.addr) &&
      nat_gap_ok(n->voucher_gaps, nat_prefix_key(&in->from.addr), n->set.voucher_gap_ms, now) &&
      nat_others_ok(n, now) && dht_svc_request(n->e, n->svc_id, &a, buf, (size_t)len, &o, now) == 0;
  if (ok) {
    n->v_checks++;
    if (sock == 0)
      n->v_checks_main++; /* the driver gave us no socket of our own */
  } else {
    n->v_refused++;
  }
  nat_wire_msg ack = {.type = NAT_T_VOUCH_ACK, .txid = in->txid};
  ack.u.vouch_ack.status = ok ? NAT_W_OK : NAT_W_REFUSED;
  send_body(n, &in->from, in->local, &ack);
}

/* ---- the candidate (A) ------------------------------------------------------------ */

static void on_check(nat_svc *n, const dht_msg_in *in, const nat_wire_msg *m, dht_ts now) {
  dht_peer b;
  memcpy(b.pk, m->u.check.pk, DHT_PK_LEN);
  b.addr = m->u.check.asker;
  uint8_t sent[NAT_BLOOM_LEN];
  dht_recent_dests(n->e, sent, now);
  /* The main socket is the one whose address is under test; and we answer
   * only an asker we sent to lately: the node we asked something of. */
  if (in->local != 0 || !nat_in_bloom(sent, &b.addr) ||
      memcmp(b.pk, dht_self_pk(n->e), DHT_PK_LEN) == 0) {
    n->v_ignored++;
    return;
  }
  /* A request, not a notice: B may not have proven its address to us yet
   * (its answer to our request can arrive after the CHECK that its
   * VOUCH_REQ caused, when B-C-A is shorter than B-A), and a notice to an
   * unproven address is paid from a credit B never earned.  We sent to B
   * lately, so this is no reflection. */
  nat_wire_msg v = {.type = NAT_T_VOUCHED, .txid = dht_svc_txid(n->e)};
  v.u.vouched.nonce = m->u.check.nonce;
  uint8_t buf[64];
  dht_ssize len = nat_wire_encode(buf, sizeof buf, &v);
  dht_req_opts o = {.answer = NAT_T_VOUCH_ACK, .tries = 2, .tag = VOUCHED_TAG};
  if (len > 0 && dht_svc_request(n->e, n->svc_id, &b, buf, (size_t)len, &o, now) == 0)
    n->v_vouched++;
  nat_wire_msg ack = {.type = NAT_T_CHECK_ACK, .txid = in->txid};
  send_body(n, &in->from, in->local, &ack);
}

/* ---- hooks ------------------------------------------------------------------------ */

bool nat_vouch_on_event(nat_svc *n, const dht_event *ev, dht_ts now) {
  if (ev->type == DHT_EV_CANDIDATE)
    return on_candidate(n, ev, now);
  if (ev->type != DHT_EV_SOCK_OPENED)
    return false;
  for (int i = 0; i < 2; i++)
    if (n->check_req[i] && ev->cmd == n->check_req[i]) {
      n->check_req[i] = 0;
      if (ev->status == 0 && ev->u.sock.n >= 1)
        n->check_sock[i] = ev->u.sock.ids[0];
      return true;
    }
  return false;
}

void nat_vouch_on_msg(nat_svc *n, const dht_msg_in *in, const nat_wire_msg *m, dht_ts now) {
  switch (m->type) {
  case NAT_T_VOUCH_REQ:
    on_vouch_req(n, in, m, now);
    break;
  case NAT_T_CHECK:
    on_check(n, in, m, now);
    break;
  case NAT_T_VOUCHED:
    on_vouched(n, in, m, now);
    break;
  default: /* an answer that matched none of our requests */
    n->dropped++;
    break;
  }
}

void nat_vouch_on_answer(nat_svc *n, const dht_req *req, const nat_wire_msg *m, dht_ts now) {
  if (req->type != NAT_T_VOUCH_REQ || !n->vouches || req->tag < VOUCH_TAG ||
      req->tag >= VOUCH_TAG + (uint64_t)n->set.vouches)
    return; /* a CHECK's answer only tells the voucher it arrived */
  nat_vouch *v = &n->vouches[req->tag - VOUCH_TAG];
  if (!v->used || (m && m->u.vouch_ack.status == NAT_W_OK))
    return; /* the CHECK is out: the VOUCHED decides */
  /* refused or silent: the next voucher, while there is one */
  dht_svc_cancel(n->e, n->svc_id, req->tag);
  if (!m)
    v->silent++;
  if (v->asked < NAT_VOUCHERS) {
    int rv = ask_voucher(n, v, now);
    if (rv == 0 || (rv == ALL_BUSY && wait_voucher(n, v, now)))
      return;
  }
  if (v->silent == v->asked) {
    hand_back(n, v, now);
  } else { /* a voucher that refused (busy) could run the check: not stored this time */
    vlog(n, &v->cand.addr, "the vouchers refused: not stored");
    vouch_end(n, v);
    n->v_failed++;
  }
}

dht_ts nat_vouch_expiry(const nat_svc *n) {
  dht_ts t = DHT_TS_NEVER;
  for (int i = 0; n->vouches && i < n->set.vouches; i++)
    if (n->vouches[i].used && n->vouches[i].deadline < t)
      t = n->vouches[i].deadline;
  return t;
}

void nat_vouch_tick(nat_svc *n, dht_ts now) {
  if (!n->vouches)
    return;
  bool any = false;
  for (int i = 0; i < n->set.vouches; i++) {
    nat_vouch *v = &n->vouches[i];
    if (!v->used || v->deadline > now)
      continue;
    if (v->waiting) {
      int rv = ask_voucher(n, v, now);
      if (rv == 0 || (rv == ALL_BUSY && wait_voucher(n, v, now)))
        continue;
      if (rv == NO_VOUCHER && v->silent == v->asked) {
        hand_back(n, v, now);
        continue;
      }
    }
    vlog(n, &v->cand.addr,
         v->waiting ? "no voucher free in time: not stored" : "no VOUCHED in time: not stored");
    vouch_end(n, v); /* not stored: the engine asks again in 10 minutes at the earliest */
    n->v_failed++;
  }
  for (int i = 0; i < n->set.vouches; i++)
    any |= n->vouches[i].used;
  if (!any) {
    dht_mem_free(&n->mem, n->vouches);
    n->vouches = NULL;
  }
}

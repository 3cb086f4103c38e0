/*
 * nat_svc.c - the NAT service: a dht/ service (message types 0x40-0x4f)
 * that keeps the public-address vote of each local socket, gathers its
 * witnesses, sets the node's DHT mode from the dial-backs (nat_dial.c), and
 * has strangers that ask to be stored checked by a third node
 * (nat_vouch.c).
 *
 * Witnesses: every PONG tells how its sender sees us (DHT_EV_ADDR_SEEN,
 * which the engine offers to services before the driver).  The engine's own
 * pings give some; while the vote of the main socket is open the service
 * asks a few routing-table contacts more (a PING each, its result owned by
 * the service), in distinct prefixes, at most one round per solicit_ms;
 * once the vote is decided, a round every recheck_ms notices a NAT that
 * changed its address or its mapping.
 *
 * Mode: NAT_MODE_SERVER and NAT_MODE_CLIENT are what they say from the
 * start.  NAT_MODE_AUTO starts as a client (it queries, it is never stored
 * in others' tables) and becomes a server when a dial-back proves its
 * address reachable; fails_to_client failed dial-backs in a row make it a
 * client again.  Each change re-publishes the record (dht_set_mode).
 *
 * Introducers (nat_intro.c): while not a server, a few reachable contacts
 * kept open with keepalives and named in the record.
 *
 * Invariants: a vote per local socket, at most max_sockets of them (reports
 * on others are counted and ignored); no state grows with what peers send.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "nat_int.h"

void nat_log(const nat_svc *n, int level, const char *fmt, ...) {
  if (!n->cb.log || level > n->set.log_level)
    return;
  char line[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  n->cb.log(n->cb.ctx, level, line);
}

void nat_settings_default(nat_settings *s) {
  memset(s, 0, sizeof *s);
  nat_vote_settings_default(&s->vote);
  s->solicit = 4;
  s->solicit_ms = 15 * 1000;
  s->recheck_ms = 10 * 60 * 1000;
  s->max_sockets = 4;
  s->dial_ms = 30 * 1000;
  s->redial_ms = 10 * 60 * 1000;
  s->probe_wait_ms = 5000;
  s->fails_to_client = 3;
  s->helper_gap_ms = 5000;
  s->prober_gap_ms = 1000;
  s->introducers = NAT_INTROS;
  s->keepalive_ms = 25 * 1000;
  s->intro_misses = 3;
  s->log_level = DHT_LOG_WARN;
  s->others_pps = 20;
  s->others_burst = 40;
  s->vouch = true;
  s->vouches = 8;
  s->vouch_wait_ms = 5000;
  s->voucher_gap_ms = 1000;
  s->clients = 32;
  s->client_ttl_ms = 5 * 60 * 1000;
  s->punch_gap_ms = 1000;
  s->punch_ms = 3000;
  s->punch_tries = 3;
  s->punch_rounds = 16;
  s->prime_ttl = 3;
  s->hole_pps = 100;
  s->hole_burst = 200;
  s->path_idle_ms = 10 * 60 * 1000;
  s->relay = true;
  s->relay_ms = 10 * 60 * 1000;
  s->relay_bytes = 16 << 20;
}

static bool settings_ok(const nat_settings *s) {
  return s->vote.min_votes >= 1 && s->vote.min_votes <= NAT_VOTE_REPORTS &&
         s->vote.max_age_ms > 0 && s->solicit >= 0 && s->solicit <= 16 && s->solicit_ms > 0 &&
         s->recheck_ms > 0 && s->max_sockets >= 1 && s->max_sockets <= 1024 &&
         s->mode >= NAT_MODE_SERVER && s->mode <= NAT_MODE_AUTO && s->dial_ms > 0 &&
         s->redial_ms > 0 && s->probe_wait_ms > 0 && s->fails_to_client >= 1 &&
         s->helper_gap_ms >= 0 && s->prober_gap_ms >= 0 && s->introducers >= 0 &&
         s->introducers <= NAT_INTROS && s->keepalive_ms >= 1000 && s->intro_misses >= 1 &&
         s->vouches >= 1 && s->vouches <= 64 && s->vouch_wait_ms > 0 && s->voucher_gap_ms >= 0 &&
         s->others_pps >= 1 && s->others_pps <= 100000 && s->others_burst >= 1 &&
         s->others_burst <= 100000 && s->clients >= 0 && s->clients <= 1024 &&
         s->client_ttl_ms > 0 && s->punch_gap_ms >= 0 && s->punch_ms >= 100 &&
         s->punch_tries >= 1 && s->punch_tries <= 8 && s->punch_rounds >= 1 &&
         s->punch_rounds <= 64 && s->prime_ttl >= 0 && s->prime_ttl <= 255 && s->hole_pps >= 1 &&
         s->hole_pps <= 100000 && s->hole_burst >= 1 && s->hole_burst <= 100000 &&
         s->path_idle_ms > 0 && s->relay_ms > 0 && s->relay_bytes > 0;
}

const char *nat_mapping_name(int mapping) {
  switch (mapping) {
  case NAT_MAP_EIM:
    return "endpoint-independent";
  case NAT_MAP_EDM:
    return "symmetric";
  default:
    return "unknown";
  }
}

const char *nat_reach_name(int reach) {
  switch (reach) {
  case NAT_REACH_YES:
    return "reachable";
  case NAT_REACH_NO:
    return "not reachable";
  default:
    return "unknown";
  }
}

void nat_svc_vote(const nat_svc *n, uint8_t family, dht_ts now, nat_vote_result *r) {
  const nat_vote *v = nat_socket_vote(n, 0);
  if (v)
    nat_vote_get(v, family, &n->set.vote, now, r);
  else
    memset(r, 0, sizeof *r);
}

void nat_svc_apply_mode(nat_svc *n, dht_ts now) {
  bool reachable = n->fr[0].reach == NAT_REACH_YES || n->fr[1].reach == NAT_REACH_YES;
  bool server = n->set.mode == NAT_MODE_SERVER || (n->set.mode == NAT_MODE_AUTO && reachable);
  if (dht_is_server(n->e) == server)
    return;
  dht_set_mode(n->e, server, now);
  n->n_modes++;
  nat_intro_mode_changed(n, now);
}

static nat_sock *sock_of(nat_svc *n, uint32_t local, bool create) {
  nat_sock *free_slot = NULL;
  for (int i = 0; i < n->nsocks; i++) {
    if (n->socks[i].used && n->socks[i].local == local)
      return &n->socks[i];
    if (!n->socks[i].used && !free_slot)
      free_slot = &n->socks[i];
  }
  if (create && !free_slot && n->nsocks < n->set.max_sockets) {
    /* most nodes only ever vote on their main socket: the others' tables
     * come when a service opens them (the simulator's 2 KiB a host) */
    int want = n->nsocks * 2 > n->set.max_sockets ? n->set.max_sockets : n->nsocks * 2;
    nat_sock *ns = dht_mem_realloc(&n->mem, n->socks, (size_t)want * sizeof *ns);
    if (ns) {
      memset(ns + n->nsocks, 0, (size_t)(want - n->nsocks) * sizeof *ns);
      free_slot = &ns[n->nsocks];
      n->socks = ns;
      n->nsocks = want;
    }
  }
  if (!create || !free_slot)
    return NULL;
  free_slot->used = true;
  free_slot->local = local;
  nat_vote_init(&free_slot->v);
  return free_slot;
}

const nat_vote *nat_socket_vote(const nat_svc *n, uint32_t local) {
  for (int i = 0; i < n->nsocks; i++)
    if (n->socks[i].used && n->socks[i].local == local)
      return &n->socks[i].v;
  return NULL;
}

static bool main_vote_known(nat_svc *n, dht_ts now) {
  const nat_vote *v = nat_socket_vote(n, 0);
  if (!v)
    return false;
  nat_vote_result r4, r6;
  nat_vote_get(v, DHT_AF_INET, &n->set.vote, now, &r4);
  nat_vote_get(v, DHT_AF_INET6, &n->set.vote, now, &r6);
  return r4.known || r6.known;
}

/* A round of witnesses: PINGs to up to `solicit` table contacts in distinct
 * prefixes, starting near a random ID so that rounds ask different peers.
 * Returns how many were asked. */
static int solicit(nat_svc *n, dht_ts now) {
  uint8_t target[DHT_ID_LEN];
  n->cb.rand(n->cb.ctx, target, sizeof target);
  dht_contact cl[DHT_K_MAX];
  int nc = dht_closest(n->e, target, cl, DHT_K_MAX);
  uint8_t prefix[16][16];
  int asked = 0;
  for (int i = 0; i < nc && asked < n->set.solicit; i++) {
    const dht_addr *a = &cl[i].addr;
    int keep = a->family == DHT_AF_INET ? 3 : 6;
    bool dup = false;
    for (int k = 0; k < asked && !dup; k++)
      dup = prefix[k][0] == a->family && memcmp(prefix[k] + 1, a->ip, (size_t)keep) == 0;
    if (dup && dht_addr_scope(a) != DHT_SCOPE_LOOPBACK && dht_addr_scope(a) != DHT_SCOPE_LAN)
      continue;
    dht_peer p;
    memcpy(p.pk, cl[i].pk, DHT_PK_LEN);
    p.addr = *a;
    int64_t cmd = dht_ping(n->e, &p, now);
    if (cmd <= 0)
      break;
    dht_svc_own(n->e, n->svc_id, cmd);
    prefix[asked][0] = a->family;
    memcpy(prefix[asked] + 1, a->ip, (size_t)keep);
    asked++;
  }
  n->asked += (uint64_t)asked;
  return asked;
}

/* ---- hooks ------------------------------------------------------------------ */

static void on_msg(void *ctx, dht *e, const dht_msg_in *in, dht_ts now) {
  (void)e;
  nat_svc *n = ctx;
  nat_wire_msg m;
  if (nat_wire_decode(&m, in->body, in->len) != 0) {
    n->dropped++; /* malformed, or a type of a newer version */
    return;
  }
  if (m.type >= NAT_T_INTRO_REG)
    nat_punch_on_msg(n, in, &m, now);
  else if (m.type >= NAT_T_VOUCH_REQ)
    nat_vouch_on_msg(n, in, &m, now);
  else
    nat_dial_on_msg(n, in, &m, now);
}

/* The answer to one of our requests (m NULL: none came), to its owner. */
static void answer(nat_svc *n, const dht_req *req, const nat_wire_msg *m, dht_ts now) {
  if (req->type >= NAT_T_VOUCH_REQ)
    nat_vouch_on_answer(n, req, m, now);
  else
    nat_dial_on_answer(n, req, m, now);
}

static void on_answer(void *ctx, dht *e, const dht_req *req, const dht_msg_in *in, dht_ts now) {
  (void)e;
  nat_svc *n = ctx;
  nat_wire_msg m;
  bool ok = nat_wire_decode(&m, in->body, in->len) == 0;
  if (!ok)
    n->dropped++;                   /* as if it never came */
  if (req->type >= NAT_T_INTRO_REG) /* the punch needs where it came from */
    nat_punch_on_answer(n, req, ok ? in : NULL, ok ? &m : NULL, now);
  else
    answer(n, req, ok ? &m : NULL, now);
}

static void on_timeout(void *ctx, dht *e, const dht_req *req, bool soft, dht_ts now) {
  (void)e;
  nat_svc *n = ctx;
  if (soft)
    return;
  if (req->type >= NAT_T_INTRO_REG)
    nat_punch_on_answer(n, req, NULL, NULL, now);
  else
    answer(n, req, NULL, now);
}

static bool on_event(void *ctx, dht *e, const dht_event *ev, dht_ts now) {
  (void)e;
  nat_svc *n = ctx;
  if (ev->type == DHT_EV_CANDIDATE || ev->type == DHT_EV_SOCK_OPENED)
    return nat_vouch_on_event(n, ev, now);
  if (ev->type == DHT_EV_ADDR_SEEN) {
    /* A stranger decides when we ask it (by contacting us), so it could
     * crowd our witnesses out with fresh keys: only peers we chose vote. */
    nat_sock *s = ev->u.seen.stranger ? NULL : sock_of(n, ev->u.seen.local, true);
    if (!s) {
      n->ignored++;
      return true;
    }
    nat_vote_add(&s->v, &ev->u.seen.seen_as, &ev->u.seen.reporter, now);
    n->reports++;
    if (s->local == 0) { /* the main socket's mapping is the one others use */
      nat_vote_result r;
      nat_svc_vote(n, ev->u.seen.seen_as.family, now, &r);
      if (r.known)
        dht_set_nat_class(n->e, r.mapping == NAT_MAP_EDM ? DHT_NAT_SYMMETRIC : DHT_NAT_CONE, now);
    }
    return true; /* the vote is ours: the driver reads its result */
  }
  if (nat_intro_on_event(n, ev, now) || nat_punch_on_event(n, ev, now))
    return true;
  return false; /* our witness PINGs' results: their PONGs were the point */
}

static dht_ts get_expiry(void *ctx) {
  nat_svc *n = ctx;
  dht_ts d = nat_dial_expiry(n), i = nat_intro_expiry(n), v = nat_vouch_expiry(n),
         p = nat_punch_expiry(n);
  if (i < d)
    d = i;
  if (v < d)
    d = v;
  if (p < d)
    d = p;
  return d < n->next_solicit ? d : n->next_solicit;
}

static void handle_expiry(void *ctx, dht *e, dht_ts now) {
  (void)e;
  nat_svc *n = ctx;
  nat_dial_tick(n, now);
  nat_intro_tick(n, now);
  nat_vouch_tick(n, now);
  nat_punch_tick(n, now);
  if (now < n->next_solicit)
    return;
  bool known = main_vote_known(n, now);
  int asked = solicit(n, now);
  /* a table still filling gave fewer peers than a round wants: soon again */
  dht_ts again = known ? n->set.recheck_ms : asked < n->set.solicit ? 5000 : n->set.solicit_ms;
  n->next_solicit = now + again;
}

/* ---- the public face -------------------------------------------------------- */

int nat_svc_new(nat_svc **out, dht *e, const nat_settings *s, const dht_callbacks *cb,
                const dht_mem *mem, dht_ts now) {
  *out = NULL;
  nat_settings defaults;
  if (!s) {
    nat_settings_default(&defaults);
    s = &defaults;
  }
  if (!e || !cb || !cb->rand || !settings_ok(s))
    return DHT_ERR_INVAL;
  if (!mem)
    mem = &dht_mem_libc;
  nat_svc *n = dht_mem_calloc(mem, 1, sizeof *n);
  if (!n)
    return DHT_ERR_NOMEM;
  n->e = e;
  n->set = *s;
  n->cb = *cb;
  n->mem = *mem;
  n->socks = dht_mem_calloc(mem, 1, sizeof *n->socks); /* the main socket's */
  n->nsocks = 1;
  if (!n->socks) {
    dht_mem_free(mem, n);
    return DHT_ERR_NOMEM;
  }
  /* the first round once the table has had a few seconds to fill */
  n->next_solicit = now + 5000;
  n->next_dial = now + 10000;
  n->next_intro = now + 1000; /* once the join filled the table: a friend's first message
                               * may come seconds after our start, and needs them */
  n->others_milli = (uint32_t)s->others_burst * 1000;
  n->others_at = (uint32_t)now;
  nat_svc_apply_mode(n, now); /* a client until proven, in auto */
  dht_service svc = {.type_lo = NAT_MSG_LO,
                     .type_hi = NAT_MSG_HI,
                     .ctx = n,
                     .on_msg = on_msg,
                     .on_answer = on_answer,
                     .on_timeout = on_timeout,
                     .on_event = on_event,
                     .get_expiry = get_expiry,
                     .handle_expiry = handle_expiry};
  int id = dht_service_add(e, &svc);
  if (id < 0) {
    dht_mem_free(mem, n->vouches);
    dht_mem_free(mem, n->socks);
    dht_mem_free(mem, n);
    return id;
  }
  n->svc_id = id;
  if (s->vouch)
    nat_vouch_start(n);
  *out = n;
  return 0;
}

void nat_svc_del(nat_svc *n) {
  if (!n)
    return;
  dht_service_remove(n->e, n->svc_id);
  nat_punch_free(n);
  dht_mem mem = n->mem;
  dht_mem_free(&mem, n->vouches);
  dht_mem_free(&mem, n->socks);
  dht_mem_free(&mem, n);
}

void nat_get_status(const nat_svc *n, dht_ts now, nat_status *st) {
  memset(st, 0, sizeof *st);
  const nat_vote *v = nat_socket_vote(n, 0);
  if (v) {
    nat_vote_get(v, DHT_AF_INET, &n->set.vote, now, &st->vote[0]);
    nat_vote_get(v, DHT_AF_INET6, &n->set.vote, now, &st->vote[1]);
  }
  st->mode = n->set.mode;
  st->server = dht_is_server(n->e);
  /* overall: reachable when one family is (IPv4's address first), not
   * reachable when a family was tested and none is */
  for (int f = 0; f < 2; f++) {
    st->fam[f].reach = n->fr[f].reach;
    st->fam[f].addr = n->fr[f].addr;
    st->fam[f].fails = n->fr[f].fails;
    if (n->fr[f].reach == NAT_REACH_YES && st->reach != NAT_REACH_YES) {
      st->reach = NAT_REACH_YES;
      st->reach_addr = n->fr[f].addr;
    } else if (n->fr[f].reach == NAT_REACH_NO && st->reach == NAT_REACH_UNKNOWN) {
      st->reach = NAT_REACH_NO;
    }
    if (n->fr[f].fails > st->fails)
      st->fails = n->fr[f].fails;
  }
  st->dials = n->n_dials;
  st->dials_ok = n->n_ok;
  st->dials_failed = n->n_failed;
  st->dials_inconclusive = n->n_inconclusive;
  st->helped = n->n_helped;
  st->probes_sent = n->n_probes;
  st->refused = n->n_refused;
  st->mode_changes = n->n_modes;
  st->dropped = n->dropped;
  st->witnesses_asked = n->asked;
  st->reports = n->reports;
  st->reports_ignored = n->ignored;
  for (int i = 0; i < NAT_INTROS; i++) {
    const nat_intro *in = &n->intro[i];
    if (!in->used || !in->ok)
      continue;
    memcpy(st->intro[st->nintro].who.pk, in->pk, DHT_PK_LEN);
    st->intro[st->nintro].who.addr = in->addr;
    st->intro[st->nintro].since_ms = now - in->since;
    st->intro[st->nintro].rtt_ms = in->rtt_ms;
    st->nintro++;
  }
  st->intro_changes = n->n_intro_changes;
  nat_punch_status(n, now, st);
  st->keepalives = n->n_keepalives;
  st->vouch_asked = n->v_asked;
  st->vouch_ok = n->v_ok;
  st->vouch_failed = n->v_failed;
  st->vouch_full = n->v_full;
  st->vouch_fallback = n->v_fallback;
  st->checks_sent = n->v_checks;
  st->checks_main_socket = n->v_checks_main;
  st->vouch_refused = n->v_refused;
  st->vouched_sent = n->v_vouched;
  st->checks_ignored = n->v_ignored;
}

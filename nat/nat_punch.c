/*
 * nat_punch.c - hole punching: two nodes behind NATs open a path to each
 * other with the help of an introducer both reach (docs/protocol.md, "Hole
 * punching").  The method is the one Ford, Srisuresh and Kegel measured in
 * 2005; starting both sides together and the low-TTL primer come from
 * hyperdht's puncher.
 *
 * Three roles, every node plays each:
 *  - client (B): registers with each of its introducers (INTRO_REG, with
 *    the introducer's cookie, so the address it keeps is one B receives at;
 *    again every 4th keepalive);
 *  - introducer (I): on a PUNCH_REQ from A for a client B it knows, sends B
 *    a PUNCH_FWD (A's key and nonce, A's address as I saw it, A's declared
 *    candidates) and answers A with B's (PUNCH_ACK).  It sends both at
 *    once, so each carries a wait that makes both sides start together:
 *    the side whose RTT to I is shorter by d waits d/2;
 *  - both ends: after the wait, rounds of HOLE requests to every candidate
 *    of the other, 10 ms apart and growing by half up to 200 ms, jittered,
 *    punch_rounds of them; the first to each candidate leaves with a low
 *    TTL (it opens our own NAT and dies before theirs, which some NATs
 *    punish for an unsolicited datagram).  A HOLE of the right key and
 *    nonce from any address (peer-reflexive: the port a symmetric NAT
 *    chose) is answered and makes the path, and so does the answer to one
 *    of ours.  An attempt that ends without one starts over through the
 *    introducers, with a new nonce, up to punch_tries times.
 *
 * Bounds (what a third party can make a node send): a client probes only
 * what one of its own introducers forwarded (a node it chose), NAT_CANDS
 * addresses, punch_rounds HOLEs to each, and every HOLE, node-wide, passes
 * a bucket (hole_pps, hole_burst); a HOLE of a key and nonce we do not
 * expect gets no answer.  An introducer forwards only for an asker whose
 * cookie proves its address, once per punch_gap_ms per asker prefix, and
 * keeps at most `clients` registrations.
 */
#include <string.h>

#include "nat_int.h"

#define GAP0_MS 10     /* the first probe interval */
#define GAP_MAX_MS 200 /* and the largest */
#define PUNCH_TAG 0x300

static nat_punch_state *state(nat_svc *n) {
  if (!n->ps)
    n->ps = dht_mem_calloc(&n->mem, 1, sizeof *n->ps);
  return n->ps;
}

nat_punch_state *nat_punch_state_of(nat_svc *n) {
  return state(n);
}

void nat_punch_free(nat_svc *n) {
  dht_mem_free(&n->mem, n->lan);
  n->lan = NULL;
  if (!n->ps)
    return;
  dht_mem_free(&n->mem, n->ps->clients);
  dht_mem_free(&n->mem, n->ps);
  n->ps = NULL;
}

static uint64_t tag_of(const nat_punch_state *ps, const nat_punch *p) {
  return PUNCH_TAG + (uint64_t)(p - ps->p);
}

static nat_punch *by_tag(nat_punch_state *ps, uint64_t tag) {
  if (!ps || tag < PUNCH_TAG || tag >= PUNCH_TAG + NAT_PUNCHES)
    return NULL;
  nat_punch *p = &ps->p[tag - PUNCH_TAG];
  return p->used ? p : NULL;
}

static nat_punch *by_pk(nat_punch_state *ps, const uint8_t pk[static DHT_PK_LEN]) {
  for (int i = 0; ps && i < NAT_PUNCHES; i++)
    if (ps->p[i].used && memcmp(ps->p[i].pk, pk, DHT_PK_LEN) == 0)
      return &ps->p[i];
  return NULL;
}

/* The node-wide HOLE bucket (a token bucket in 1/1000 of a datagram). */
static bool hole_ok(nat_svc *n, nat_punch_state *ps, dht_ts now) {
  uint32_t now32 = (uint32_t)now, cap = (uint32_t)n->set.hole_burst * 1000;
  if (ps->hole_at == 0 && ps->hole_milli == 0)
    ps->hole_milli = cap; /* full at the start */
  uint64_t add = (uint64_t)(uint32_t)(now32 - ps->hole_at) * (uint64_t)n->set.hole_pps;
  ps->hole_at = now32;
  ps->hole_milli = add >= cap - ps->hole_milli ? cap : ps->hole_milli + (uint32_t)add;
  if (ps->hole_milli < 1000)
    return false;
  ps->hole_milli -= 1000;
  return true;
}

static void send_ack(nat_svc *n, const dht_msg_in *in, uint8_t status, dht_ts wait, int ncands,
                     const dht_addr *cands) {
  uint8_t buf[160];
  nat_wire_msg a = {.type = NAT_T_PUNCH_ACK, .txid = in->txid};
  a.u.punch.status = status;
  a.u.punch.ms = (uint16_t)(wait < 0 ? 0 : wait > NAT_WAIT_MAX_MS ? NAT_WAIT_MAX_MS : wait);
  a.u.punch.ncands = ncands;
  for (int i = 0; i < ncands; i++)
    a.u.punch.cands[i] = cands[i];
  dht_ssize len = nat_wire_encode(buf, sizeof buf, &a);
  if (len > 0) {
    dht_tx tx = {.local = in->local};
    dht_svc_send(n->e, &in->from, &tx, buf, (size_t)len);
  }
}

static uint16_t clamp_ms(dht_ts ms) {
  return (uint16_t)(ms < 0 ? 0 : ms > NAT_WAIT_MAX_MS ? NAT_WAIT_MAX_MS : ms);
}

/* The other side's candidates, those not known yet, up to NAT_CANDS. */
static void add_cands(nat_punch *p, const dht_addr *c, int n) {
  for (int i = 0; i < n && p->ncands < NAT_CANDS; i++) {
    bool dup = false;
    for (int j = 0; j < p->ncands; j++)
      dup |= dht_addr_eq(&p->cands[j], &c[i]);
    if (!dup)
      p->cands[p->ncands++] = c[i];
  }
}

/* ---- the end of a punch ------------------------------------------------------ */

static void log_punch(nat_svc *n, nat_punch_state *ps, const nat_punch *p, bool ok, int method,
                      const dht_addr *addr, dht_ts now) {
  nat_punch_log *l = &ps->log[ps->log_next];
  memset(l, 0, sizeof *l);
  memcpy(l->pk, p->pk, DHT_PK_LEN);
  l->ok = ok;
  l->method = ok ? method : 0;
  l->initiator = p->initiator;
  l->attempts = p->attempt;
  l->ms = now - p->begin;
  l->at = now;
  if (addr)
    l->addr = *addr;
  ps->log_next = (ps->log_next + 1) % NAT_PUNCH_LOG;
  if (ps->log_n < NAT_PUNCH_LOG)
    ps->log_n++;
  (void)n;
}

static void keep_path(nat_svc *n, nat_punch_state *ps, const uint8_t pk[static DHT_PK_LEN],
                      dht_ts now) {
  nat_keep *k = NULL;
  for (int i = 0; i < NAT_KEEPS && !k; i++)
    if (ps->keep[i].used && memcmp(ps->keep[i].pk, pk, DHT_PK_LEN) == 0)
      k = &ps->keep[i];
  for (int i = 0; i < NAT_KEEPS && !k; i++)
    if (!ps->keep[i].used)
      k = &ps->keep[i];
  if (!k) { /* the one idle soonest goes, and its path with it */
    k = &ps->keep[0];
    for (int i = 1; i < NAT_KEEPS; i++)
      if (ps->keep[i].until < k->until)
        k = &ps->keep[i];
    dht_path_drop(n->e, k->pk);
  }
  k->used = true;
  memcpy(k->pk, pk, DHT_PK_LEN);
  k->until = now + n->set.path_idle_ms;
  k->next = now + n->set.keepalive_ms;
}

/* The slot goes, with its requests. */
static void drop_slot(nat_svc *n, nat_punch_state *ps, nat_punch *p) {
  dht_svc_cancel(n->e, n->svc_id, tag_of(ps, p));
  if (p->ping_cmd > 0)
    dht_cancel(n->e, p->ping_cmd);
  memset(p, 0, sizeof *p);
}

/* A path (by method) or none: the log and the event (the initiator's, and
 * any path's). */
static void report(nat_svc *n, nat_punch_state *ps, nat_punch *p, bool ok, int method,
                   const dht_addr *addr, dht_ts now) {
  char ta[DHT_ADDR_STRLEN] = "-";
  if (addr)
    dht_addr_fmt(addr, ta, sizeof ta);
  nat_log(n, DHT_LOG_DEBUG, "punch %s %02x%02x%02x%02x...: %s%s after %lld ms, attempt %d",
          p->initiator ? "to" : "from", p->pk[0], p->pk[1], p->pk[2], p->pk[3], ok ? ta : "no path",
          ok && method == DHT_PATH_RELAYED ? " (relayed)" : "", (long long)(now - p->begin),
          p->attempt);
  log_punch(n, ps, p, ok, method, addr, now);
  if (p->initiator || ok) {
    nat_event ev = {.type = NAT_EV_PATH, .ok = ok, .ms = now - p->begin, .tag = method};
    memcpy(ev.pk, p->pk, DHT_PK_LEN);
    if (addr)
      ev.addr = *addr;
    nat_push_event(n, &ev);
  }
}

static void finish(nat_svc *n, nat_punch_state *ps, nat_punch *p, bool ok, const dht_addr *addr,
                   dht_ts now) {
  report(n, ps, p, ok, DHT_PATH_PUNCHED, addr, now);
  drop_slot(n, ps, p);
}

static void succeed(nat_svc *n, nat_punch_state *ps, nat_punch *p, uint32_t local,
                    const dht_addr *addr, dht_ts now) {
  dht_path path = {.local = local, .remote = *addr};
  if (dht_path_set(n->e, p->pk, &path, DHT_PATH_PUNCHED, now) != 0)
    return;
  NAT_PCOUNT(n, ok);
  keep_path(n, ps, p->pk, now);
  finish(n, ps, p, true, addr, now);
}

/* ---- asking an introducer (A) -------------------------------------------------- */

static void attempt_over(nat_svc *n, nat_punch_state *ps, nat_punch *p, dht_ts now);

static void ask(nat_svc *n, nat_punch_state *ps, nat_punch *p, dht_ts now) {
  while (p->intro_i < p->nintro) {
    dht_peer ip;
    memcpy(ip.pk, p->intro[p->intro_i].pk, DHT_PK_LEN);
    ip.addr = p->intro[p->intro_i].addr;
    uint8_t cookie[DHT_TOKEN_LEN];
    if (dht_svc_cookie(n->e, &ip, cookie, now) == 0) {
      uint8_t buf[160];
      nat_wire_msg q = {.type = NAT_T_PUNCH_REQ, .txid = dht_svc_txid(n->e)};
      q.u.punch.pk = p->pk;
      q.u.punch.nonce = p->nonce;
      q.u.punch.ms = clamp_ms(dht_peer_rtt(n->e, ip.pk));
      q.u.punch.cookie = cookie;
      q.u.punch.ncands = n->nlan; /* a peer behind the same router needs no hairpin */
      if (n->nlan)
        memcpy(q.u.punch.cands, n->lan, (size_t)n->nlan * sizeof n->lan[0]);
      dht_ssize len = nat_wire_encode(buf, sizeof buf, &q);
      dht_req_opts o = {.answer = NAT_T_PUNCH_ACK, .tries = 2, .tag = tag_of(ps, p)};
      if (len > 0 && dht_svc_request(n->e, n->svc_id, &ip, buf, (size_t)len, &o, now) == 0) {
        p->asking = true;
        return;
      }
    } else if (!p->pinged) {
      /* a PONG carries its cookie: one PING, then ask */
      int64_t c = dht_ping(n->e, &ip, now);
      if (c > 0 && dht_svc_own(n->e, n->svc_id, c) == 0) {
        p->ping_cmd = c;
        p->pinged = true;
        p->asking = true;
        return;
      }
    }
    p->pinged = false;
    p->intro_i++;
  }
  p->asking = false;
  attempt_over(n, ps, p, now); /* no introducer took it */
}

static void start_probing(nat_svc *n, nat_punch *p, dht_ts wait, dht_ts now) {
  p->asking = false;
  p->rounds = 0;
  p->gap = GAP0_MS;
  p->next = now + (wait > 0 ? wait : 0);
  p->deadline = p->next + n->set.punch_ms;
}

/* The relay answered OK: the path goes through it, unless a punch made a
 * direct one meanwhile. */
static void relay_open(nat_svc *n, nat_punch_state *ps, nat_punch *p, dht_ts now) {
  p->relay_state = NAT_RELAY_OPEN;
  dht_path_info pi;
  if (dht_path_get(n->e, p->pk, &pi) == 0 && pi.method == DHT_PATH_PUNCHED)
    return;
  dht_path path = {.local = 0, .remote = p->relay.addr};
  if (dht_path_set(n->e, p->pk, &path, DHT_PATH_RELAYED, now) != 0)
    return;
  NAT_PCOUNT(n, relayed);
  keep_path(n, ps, p->pk, now);
  report(n, ps, p, true, DHT_PATH_RELAYED, &p->relay.addr, now);
  if (!p->initiator || p->final)
    drop_slot(n, ps, p); /* the initiator's next attempts may still go direct */
}

/* Waits for the relay's answer, probing no more. */
static void await_relay(nat_svc *n, nat_punch *p) {
  p->asking = false;
  p->rounds = (uint8_t)n->set.punch_rounds;
  p->deadline = p->relay_until;
}

static void attempt_over(nat_svc *n, nat_punch_state *ps, nat_punch *p, dht_ts now) {
  /* the first attempt without a path: the relay, while punching goes on */
  if (p->has_relay && p->relay_state == NAT_RELAY_NONE)
    nat_relay_ask(n, ps, p, tag_of(ps, p), now);
  bool last = !p->initiator || p->attempt >= n->set.punch_tries || p->final;
  if (last) {
    if (p->relay_state == NAT_RELAY_ASKING && now < p->relay_until) {
      p->final = true;
      await_relay(n, p);
      return;
    }
    if (p->relay_state == NAT_RELAY_OPEN) {
      drop_slot(n, ps, p); /* the relayed path stays */
      return;
    }
    if (p->initiator)
      NAT_PCOUNT(n, failed);
    finish(n, ps, p, false, NULL, now);
    return;
  }
  p->attempt++;
  n->cb.rand(n->cb.ctx, p->nonce, NAT_NONCE_LEN);
  dht_svc_cancel(n->e, n->svc_id, tag_of(ps, p));
  p->intro_i = 0;
  p->pinged = false;
  ask(n, ps, p, now);
}

int nat_connect(nat_svc *n, const uint8_t pk[static DHT_PK_LEN], const dht_introducer *intro,
                int nintro, dht_ts now) {
  if (!n || !intro || nintro < 1 || memcmp(pk, dht_self_pk(n->e), DHT_PK_LEN) == 0)
    return DHT_ERR_INVAL;
  nat_punch_state *ps = state(n);
  if (!ps)
    return DHT_ERR_NOMEM;
  for (int i = 0; i < NAT_KEEPS; i++) /* a path we keep: used again, kept longer */
    if (ps->keep[i].used && memcmp(ps->keep[i].pk, pk, DHT_PK_LEN) == 0)
      ps->keep[i].until = now + n->set.path_idle_ms;
  nat_punch *p = by_pk(ps, pk);
  if (p) {
    if (!p->initiator) { /* it started one to us: ours goes along */
      p->initiator = true;
      p->attempt = p->attempt ? p->attempt : 1;
      p->nintro = (uint8_t)(nintro < NAT_INTROS ? nintro : NAT_INTROS);
      memcpy(p->intro, intro, (size_t)p->nintro * sizeof *intro);
    }
    return 0;
  }
  for (int i = 0; i < NAT_PUNCHES && !p; i++)
    if (!ps->p[i].used)
      p = &ps->p[i];
  if (!p)
    return DHT_ERR_FULL;
  memset(p, 0, sizeof *p);
  p->used = true;
  p->initiator = true;
  p->attempt = 1;
  memcpy(p->pk, pk, DHT_PK_LEN);
  n->cb.rand(n->cb.ctx, p->nonce, NAT_NONCE_LEN);
  memcpy(p->relay_nonce, p->nonce, NAT_NONCE_LEN);
  p->nintro = (uint8_t)(nintro < NAT_INTROS ? nintro : NAT_INTROS);
  memcpy(p->intro, intro, (size_t)p->nintro * sizeof *intro);
  p->begin = now;
  NAT_PCOUNT(n, started);
  ask(n, ps, p, now);
  return 0;
}

bool nat_punch_on_event(nat_svc *n, const dht_event *ev, dht_ts now) {
  nat_punch_state *ps = n->ps;
  if (!ps || ev->type != DHT_EV_PING || ev->cmd <= 0)
    return false;
  for (int i = 0; i < NAT_PUNCHES; i++) {
    nat_punch *p = &ps->p[i];
    if (p->used && p->ping_cmd == ev->cmd) {
      p->ping_cmd = 0;
      if (ev->status != 0) { /* that introducer is gone: the next */
        p->intro_i++;
        p->pinged = false;
      }
      ask(n, ps, p, now); /* with the PONG's cookie now, or the next introducer */
      return true;
    }
  }
  return false;
}

/* ---- the introducer (I) ---------------------------------------------------------- */

static nat_client *client_of(nat_svc *n, const uint8_t pk[static DHT_PK_LEN], dht_ts now) {
  nat_punch_state *ps = n->ps;
  for (int i = 0; ps && ps->clients && i < n->set.clients; i++) {
    nat_client *c = &ps->clients[i];
    if (c->used && memcmp(c->pk, pk, DHT_PK_LEN) == 0)
      return now - c->at < n->set.client_ttl_ms ? c : NULL;
  }
  return NULL;
}

static void on_register(nat_svc *n, const dht_msg_in *in, const nat_wire_msg *m, dht_ts now) {
  nat_punch_state *ps = n->set.clients > 0 ? state(n) : NULL;
  if (ps && !ps->clients)
    ps->clients = dht_mem_calloc(&n->mem, (size_t)n->set.clients, sizeof *ps->clients);
  if (!ps || !ps->clients || !dht_svc_cookie_ok(n->e, &in->from, m->u.punch.cookie, now)) {
    NAT_PCOUNT(n, intro_refused);
    send_ack(n, in, NAT_W_REFUSED, 0, 0, NULL);
    return;
  }
  nat_client *c = NULL, *free_c = NULL;
  for (int i = 0; i < n->set.clients && !c; i++) {
    nat_client *x = &ps->clients[i];
    if (x->used && memcmp(x->pk, in->from.pk, DHT_PK_LEN) == 0)
      c = x;
    else if (!free_c && (!x->used || now - x->at >= n->set.client_ttl_ms))
      free_c = x;
  }
  if (!c)
    c = free_c;
  if (!c) {
    NAT_PCOUNT(n, intro_refused);
    send_ack(n, in, NAT_W_FULL, 0, 0, NULL);
    return;
  }
  c->used = true;
  memcpy(c->pk, in->from.pk, DHT_PK_LEN);
  c->addr = in->from.addr;
  c->local = in->local;
  c->rtt_ms = m->u.punch.ms;
  c->ncands = (uint8_t)(m->u.punch.ncands < NAT_CANDS - 1 ? m->u.punch.ncands : NAT_CANDS - 1);
  memcpy(c->cands, m->u.punch.cands, c->ncands * sizeof *c->cands);
  c->at = now;
  send_ack(n, in, NAT_W_OK, 0, 1, &in->from.addr); /* where we see it, for free */
}

static void on_punch_req(nat_svc *n, const dht_msg_in *in, const nat_wire_msg *m, dht_ts now) {
  nat_punch_state *ps = n->ps;
  nat_client *c = client_of(n, m->u.punch.pk, now);
  if (!c || memcmp(m->u.punch.pk, in->from.pk, DHT_PK_LEN) == 0) {
    NAT_PCOUNT(n, intro_refused);
    send_ack(n, in, NAT_W_UNKNOWN, 0, 0, NULL);
    return;
  }
  if (!dht_svc_cookie_ok(n->e, &in->from, m->u.punch.cookie, now) ||
      !nat_gap_ok(ps->asker_gaps, nat_prefix_key(&in->from.addr), n->set.punch_gap_ms, now)) {
    NAT_PCOUNT(n, intro_refused);
    send_ack(n, in, NAT_W_REFUSED, 0, 0, NULL);
    return;
  }
  /* both start together: each waits half the amount its RTT to us is
   * shorter than the other's */
  dht_ts ra = m->u.punch.ms, rb = c->rtt_ms;
  uint8_t buf[160];
  nat_wire_msg f = {.type = NAT_T_PUNCH_FWD, .txid = dht_svc_txid(n->e)};
  f.u.punch.pk = in->from.pk;
  f.u.punch.nonce = m->u.punch.nonce;
  f.u.punch.ms = clamp_ms((ra - rb) / 2);
  f.u.punch.cands[f.u.punch.ncands++] = in->from.addr;
  for (int i = 0; i < m->u.punch.ncands && f.u.punch.ncands < NAT_CANDS; i++)
    if (!dht_addr_eq(&m->u.punch.cands[i], &in->from.addr))
      f.u.punch.cands[f.u.punch.ncands++] = m->u.punch.cands[i];
  dht_ssize len = nat_wire_encode(buf, sizeof buf, &f);
  dht_peer to;
  memcpy(to.pk, c->pk, DHT_PK_LEN);
  to.addr = c->addr;
  dht_req_opts o = {.answer = NAT_T_PUNCH_ACK, .tries = 2, .tx = {.local = c->local}};
  if (len <= 0 || dht_svc_request(n->e, n->svc_id, &to, buf, (size_t)len, &o, now) != 0) {
    send_ack(n, in, NAT_W_REFUSED, 0, 0, NULL);
    return;
  }
  NAT_PCOUNT(n, introduced);
  dht_addr bc[NAT_CANDS];
  int nb = 0;
  bc[nb++] = c->addr;
  for (int i = 0; i < c->ncands && nb < NAT_CANDS; i++)
    bc[nb++] = c->cands[i];
  send_ack(n, in, NAT_W_OK, (rb - ra) / 2, nb, bc);
}

/* ---- the client (B) ------------------------------------------------------------- */

int nat_set_candidates(nat_svc *n, const dht_addr *a, int count) {
  n->nlan = 0;
  if (count > 0 && !n->lan) /* most hosts have none: no room kept for them */
    n->lan = dht_mem_calloc(&n->mem, NAT_LAN_CANDS, sizeof *n->lan);
  for (int i = 0; n->lan && i < count && n->nlan < NAT_LAN_CANDS; i++)
    if ((a[i].family == DHT_AF_INET || a[i].family == DHT_AF_INET6) && a[i].port)
      n->lan[n->nlan++] = a[i];
  return n->nlan;
}

void nat_punch_register(nat_svc *n, const dht_peer *who, dht_ts rtt_ms, dht_ts now) {
  uint8_t cookie[DHT_TOKEN_LEN];
  if (dht_svc_cookie(n->e, who, cookie, now) != 0)
    return; /* the next keepalive's PONG brings one */
  uint8_t buf[160];
  nat_wire_msg q = {.type = NAT_T_INTRO_REG, .txid = dht_svc_txid(n->e)};
  q.u.punch.ms = clamp_ms(rtt_ms);
  q.u.punch.cookie = cookie;
  q.u.punch.ncands = n->nlan;
  if (n->nlan)
    memcpy(q.u.punch.cands, n->lan, (size_t)n->nlan * sizeof n->lan[0]);
  dht_ssize len = nat_wire_encode(buf, sizeof buf, &q);
  dht_req_opts o = {.answer = NAT_T_PUNCH_ACK, .tries = 2};
  if (len > 0)
    dht_svc_request(n->e, n->svc_id, who, buf, (size_t)len, &o, now);
}

static bool is_introducer(const nat_svc *n, const uint8_t pk[static DHT_PK_LEN]) {
  for (int i = 0; i < NAT_INTROS; i++)
    if (n->intro[i].used && n->intro[i].ok && memcmp(n->intro[i].pk, pk, DHT_PK_LEN) == 0)
      return true;
  return false;
}

static void on_punch_fwd(nat_svc *n, const dht_msg_in *in, const nat_wire_msg *m, dht_ts now) {
  nat_punch_state *ps = is_introducer(n, in->from.pk) ? state(n) : NULL;
  if (!ps || memcmp(m->u.punch.pk, dht_self_pk(n->e), DHT_PK_LEN) == 0) {
    NAT_PCOUNT(n, fwd_refused);
    send_ack(n, in, NAT_W_REFUSED, 0, 0, NULL);
    return;
  }
  nat_punch *p = by_pk(ps, m->u.punch.pk);
  if (p && p->initiator) {
    /* we are punching to it too: take its nonce as well, and its addresses */
    memcpy(p->theirs, m->u.punch.nonce, NAT_NONCE_LEN);
    p->has_theirs = true;
  } else {
    if (!p)
      for (int i = 0; i < NAT_PUNCHES && !p; i++)
        if (!ps->p[i].used)
          p = &ps->p[i];
    if (!p) {
      NAT_PCOUNT(n, fwd_refused);
      send_ack(n, in, NAT_W_FULL, 0, 0, NULL);
      return;
    }
    bool again = p->used; /* the asker's previous attempt made no path */
    if (!p->used) {
      memset(p, 0, sizeof *p);
      p->used = true;
      p->begin = now;
      memcpy(p->pk, m->u.punch.pk, DHT_PK_LEN);
      memcpy(p->relay_nonce, m->u.punch.nonce, NAT_NONCE_LEN);
    }
    if (again && p->has_relay && p->relay_state == NAT_RELAY_NONE)
      nat_relay_ask(n, ps, p, tag_of(ps, p), now);
    p->attempt++;
    memcpy(p->nonce, m->u.punch.nonce, NAT_NONCE_LEN);
    p->ncands = 0;
  }
  add_cands(p, m->u.punch.cands, m->u.punch.ncands);
  if (!p->has_relay) { /* the introducer between us: the relay if punching fails */
    p->relay = in->from;
    p->has_relay = true;
  }
  if (!p->initiator || p->asking)
    start_probing(n, p, m->u.punch.ms, now);
  send_ack(n, in, NAT_W_OK, 0, 0, NULL);
}

/* ---- both ends: the probes ------------------------------------------------------ */

static void send_round(nat_svc *n, nat_punch_state *ps, nat_punch *p, dht_ts now) {
  for (int i = 0; i < p->ncands; i++) {
    if (!hole_ok(n, ps, now)) {
      NAT_PCOUNT(n, limited);
      continue;
    }
    uint8_t buf[48];
    nat_wire_msg h = {.type = NAT_T_HOLE, .txid = dht_svc_txid(n->e)};
    h.u.hole.nonce = p->nonce;
    dht_ssize len = nat_wire_encode(buf, sizeof buf, &h);
    dht_peer to;
    memcpy(to.pk, p->pk, DHT_PK_LEN);
    to.addr = p->cands[i];
    dht_ts left = p->deadline - now;
    dht_req_opts o = {.answer = NAT_T_HOLE,
                      .tries = 1,
                      .timeout_ms = left > 100 ? left : 100,
                      .tag = tag_of(ps, p),
                      .tx = {.ttl = p->rounds == 0 ? (uint8_t)n->set.prime_ttl : 0}};
    if (len > 0 && dht_svc_request(n->e, n->svc_id, &to, buf, (size_t)len, &o, now) == 0)
      NAT_PCOUNT(n, holes);
  }
  p->rounds++;
  /* 10 ms, growing by half to 200 ms, +-25% (from the node's randomness:
   * the simulator stays deterministic) */
  uint8_t r;
  n->cb.rand(n->cb.ctx, &r, 1);
  dht_ts g = p->gap * 3 / 4 + p->gap * r / 510;
  p->next = now + (g > 0 ? g : 1);
  p->gap = p->gap * 3 / 2 > GAP_MAX_MS ? GAP_MAX_MS : p->gap * 3 / 2;
}

static void on_hole(nat_svc *n, const dht_msg_in *in, const nat_wire_msg *m, dht_ts now) {
  nat_punch_state *ps = n->ps;
  nat_punch *p = by_pk(ps, in->from.pk);
  if (!p || (memcmp(p->nonce, m->u.hole.nonce, NAT_NONCE_LEN) != 0 &&
             !(p->has_theirs && memcmp(p->theirs, m->u.hole.nonce, NAT_NONCE_LEN) == 0))) {
    n->dropped++; /* not one we expect: no answer, so no reflector */
    return;
  }
  uint8_t buf[48];
  nat_wire_msg h = {.type = NAT_T_HOLE, .txid = in->txid};
  h.u.hole.nonce = m->u.hole.nonce;
  dht_ssize len = nat_wire_encode(buf, sizeof buf, &h);
  if (len > 0) {
    dht_tx tx = {.local = in->local};
    dht_svc_send(n->e, &in->from, &tx, buf, (size_t)len);
  }
  succeed(n, ps, p, in->local, &in->from.addr, now);
}

void nat_punch_on_msg(nat_svc *n, const dht_msg_in *in, const nat_wire_msg *m, dht_ts now) {
  switch (m->type) {
  case NAT_T_INTRO_REG:
    on_register(n, in, m, now);
    break;
  case NAT_T_PUNCH_REQ:
    on_punch_req(n, in, m, now);
    break;
  case NAT_T_PUNCH_FWD:
    on_punch_fwd(n, in, m, now);
    break;
  case NAT_T_HOLE:
    on_hole(n, in, m, now);
    break;
  case NAT_T_RELAY_REQ:
    nat_relay_on_req(n, in, m, now);
    break;
  case NAT_T_KEEP: { /* answered where it came from: no larger than it */
    uint8_t buf[16];
    nat_wire_msg a = {.type = NAT_T_KEEP_ACK, .txid = in->txid};
    dht_ssize len = nat_wire_encode(buf, sizeof buf, &a);
    dht_tx tx = {.local = in->local};
    if (len > 0)
      dht_svc_send(n->e, &in->from, &tx, buf, (size_t)len);
    break;
  }
  default: /* a RELAY_ACK answering nothing of ours, too */ /* a PUNCH_ACK that answers nothing of
                                                               ours */
    n->dropped++;
    break;
  }
}

void nat_punch_on_answer(nat_svc *n, const dht_req *req, const dht_msg_in *in,
                         const nat_wire_msg *m, dht_ts now) {
  nat_punch_state *ps = n->ps;
  nat_punch *p = by_tag(ps, req->tag);
  if (!p)
    return; /* a registration's or a forward's answer: nothing to do */
  if (req->type == NAT_T_RELAY_REQ) {
    if (p->relay_state != NAT_RELAY_ASKING)
      return;
    if (m && m->u.dial_resp.status == NAT_W_OK)
      relay_open(n, ps, p, now);
    else if (m && m->u.dial_resp.status != NAT_W_PENDING)
      p->relay_state = NAT_RELAY_FAILED; /* refused or full; PENDING or lost: asked again */
    return;
  }
  if (req->type == NAT_T_HOLE) {
    if (m && in && memcmp(in->from.pk, p->pk, DHT_PK_LEN) == 0)
      succeed(n, ps, p, in->local, &in->from.addr, now);
    return; /* a lost probe: the others go on */
  }
  if (req->type != NAT_T_PUNCH_REQ)
    return;
  if (m && m->u.punch.status == NAT_W_OK) {
    add_cands(p, m->u.punch.cands, m->u.punch.ncands);
    if (!p->has_relay) { /* the introducer between us: the relay if punching fails */
      memcpy(p->relay.pk, req->to.pk, DHT_PK_LEN);
      p->relay.addr = req->to.addr;
      p->has_relay = true;
    }
    if (p->asking) /* else its own punch to us started ours already */
      start_probing(n, p, m->u.punch.ms, now);
    return;
  }
  if (!p->asking)
    return;
  p->intro_i++; /* refused, unknown there, or silent: the next introducer */
  p->pinged = false;
  ask(n, ps, p, now);
}

/* ---- timers ------------------------------------------------------------------------ */

void nat_punch_tick(nat_svc *n, dht_ts now) {
  nat_punch_state *ps = n->ps;
  if (!ps)
    return;
  for (int i = 0; i < NAT_PUNCHES; i++) {
    nat_punch *p = &ps->p[i];
    if (!p->used)
      continue;
    if (p->relay_state == NAT_RELAY_ASKING && now >= p->relay_next) {
      if (now >= p->relay_until)
        p->relay_state = NAT_RELAY_FAILED;
      else
        nat_relay_ask(n, ps, p, tag_of(ps, p), now); /* PENDING, or lost */
    }
    if (p->asking)
      continue;
    if (now >= p->deadline)
      attempt_over(n, ps, p, now);
    else if (now >= p->next && p->rounds < n->set.punch_rounds)
      send_round(n, ps, p, now);
  }
  for (int i = 0; i < NAT_KEEPS; i++) {
    nat_keep *k = &ps->keep[i];
    if (!k->used)
      continue;
    dht_path_info pi;
    if (now >= k->until || dht_path_get(n->e, k->pk, &pi) != 0) {
      dht_path_drop(n->e, k->pk); /* idle: both NATs forget it soon */
      k->used = false;
      continue;
    }
    if (now < k->next)
      continue;
    /* a PING both ways keeps both NATs' state; its PONG is not needed */
    /* a KEEP over the path (to the key, by no address): both ends send
     * one, so both NATs keep their state (and a relay its circuit) */
    uint8_t buf[16];
    nat_wire_msg q = {.type = NAT_T_KEEP, .txid = dht_svc_txid(n->e)};
    dht_ssize len = nat_wire_encode(buf, sizeof buf, &q);
    dht_peer to;
    memset(&to, 0, sizeof to);
    memcpy(to.pk, k->pk, DHT_PK_LEN);
    dht_req_opts o = {.answer = NAT_T_KEEP_ACK, .tries = 1};
    if (len > 0)
      dht_svc_request(n->e, n->svc_id, &to, buf, (size_t)len, &o, now);
    k->next = now + n->set.keepalive_ms;
  }
}

dht_ts nat_punch_expiry(const nat_svc *n) {
  const nat_punch_state *ps = n->ps;
  dht_ts t = DHT_TS_NEVER;
  if (!ps)
    return t;
  for (int i = 0; i < NAT_PUNCHES; i++) {
    const nat_punch *p = &ps->p[i];
    if (!p->used)
      continue;
    if (p->relay_state == NAT_RELAY_ASKING && p->relay_next < t)
      t = p->relay_next;
    if (p->asking)
      continue;
    dht_ts x = p->rounds < n->set.punch_rounds && p->next < p->deadline ? p->next : p->deadline;
    if (x < t)
      t = x;
  }
  for (int i = 0; i < NAT_KEEPS; i++) {
    const nat_keep *k = &ps->keep[i];
    if (k->used) {
      dht_ts x = k->next < k->until ? k->next : k->until;
      if (x < t)
        t = x;
    }
  }
  return t;
}

void nat_punch_status(const nat_svc *n, dht_ts now, nat_status *st) {
  const nat_punch_state *ps = n->ps;

  st->clients = 0;
  st->npunch_log = 0;
  if (!ps)
    return;
  st->punches = ps->started;
  st->punches_ok = ps->ok;
  st->punches_failed = ps->failed;
  st->holes_sent = ps->holes;
  st->holes_limited = ps->limited;
  st->fwds_refused = ps->fwd_refused;
  st->introduced = ps->introduced;
  st->intro_refused = ps->intro_refused;
  st->relayed_paths = ps->relayed;
  st->relay_asked = ps->relay_asked;
  st->relay_refused = ps->relay_refused;
  for (int i = 0; ps->clients && i < n->set.clients; i++)
    st->clients += ps->clients[i].used && now - ps->clients[i].at < n->set.client_ttl_ms;
  for (int i = 0; i < ps->log_n; i++) {
    int k = (ps->log_next - 1 - i + NAT_PUNCH_LOG) % NAT_PUNCH_LOG;
    st->punch_log[st->npunch_log++] = ps->log[k];
  }
}

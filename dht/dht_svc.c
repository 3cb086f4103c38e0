/*
 * dht_svc.c - the service interface: how nat/ and store/ plug into the
 * engine (docs/architecture.md, "The service interface").
 *
 * It owns four things:
 *  - the registry of services and the dispatch of datagrams of their ranges;
 *  - services' requests: sent through the engine, kept until the answer
 *    (type, txid and sender key must all match) or the timeout, retransmitted
 *    on the engine's RTT estimate, handed back through on_answer/on_timeout;
 *  - command ownership: the event of a command a service issued goes to that
 *    service's on_event, not to the driver;
 *  - the services' event queue: owned events and unsolicited events (offered
 *    to every listening service before the driver) wait there and are handed
 *    over at safe points (the end of dht_read_pkt and dht_handle_expiry, and
 *    dht_poll_event), never from inside the engine's bookkeeping, so a hook
 *    may issue commands and send freely.
 *
 * Invariants: sreq[] is dense and in sending order (swap-free removal keeps
 * timeouts deterministic); every svc_ev in the ring owns its result; an
 * owned_cmd entry lives from dht_svc_own until its command's one event.
 */
#include <stddef.h>
#include <string.h>

#include "dht_eng.h"

#define MAX_TRIES 8
/* Owned commands at once: every command slot, and as many pings again. */
#define OWNED_MAX(e) (4 * (e)->set.max_lookups + 64)

static const dht_service *svc_at(const dht *e, int i) {
  return &e->svcs[i];
}

static void noop_msg(void *ctx, dht *e, const dht_msg_in *in, dht_ts now);

/* A removed service keeps its slot (ids stay stable) with noop_msg. */
static bool svc_removed(const dht_service *s) {
  return s->on_msg == noop_msg;
}

/* The live service whose range holds type; else a removed one's (its
 * datagrams are counted and dropped); else -1. */
/* svc is the id of a live service. */
static bool svc_live(const dht *e, int svc) {
  return svc >= 1 && svc <= e->nsvcs && !svc_removed(&e->svcs[svc - 1]);
}

static int svc_for_type(const dht *e, uint8_t type) {
  int removed = -1;
  for (int i = 0; i < e->nsvcs; i++)
    if (type >= e->svcs[i].type_lo && type <= e->svcs[i].type_hi) {
      if (!svc_removed(&e->svcs[i]))
        return i;
      removed = i;
    }
  return removed;
}

int dht_service_add(dht *e, const dht_service *svc) {
  if (!svc || !svc->on_msg || svc->type_lo <= DHT_MSG_CORE_MAX || svc->type_lo > svc->type_hi ||
      svc->type_hi > 0x7f)
    return DHT_ERR_INVAL;
  for (int i = 0; i < e->nsvcs; i++)
    if (!svc_removed(&e->svcs[i]) && svc->type_lo <= e->svcs[i].type_hi &&
        e->svcs[i].type_lo <= svc->type_hi)
      return DHT_ERR_INVAL;
  if (e->nsvcs >= e->set.max_services)
    return DHT_ERR_FULL;
  dht_service *ns = dht_mem_realloc(&e->mem, e->svcs, (size_t)(e->nsvcs + 1) * sizeof *ns);
  if (!ns)
    return DHT_ERR_NOMEM;
  e->svcs = ns;
  e->svcs[e->nsvcs++] = *svc;
  if (svc->on_event)
    e->svc_events = true;
  return e->nsvcs; /* id = index + 1 */
}

static void sreq_remove(dht *e, int i);

static void noop_msg(void *ctx, dht *e, const dht_msg_in *in, dht_ts now) {
  (void)ctx, (void)in, (void)now;
  e->st.drop_unknown_type++;
}

int dht_service_remove(dht *e, int svc) {
  if (svc < 1 || svc > e->nsvcs)
    return DHT_ERR_INVAL;
  if (svc_removed(&e->svcs[svc - 1]))
    return 0; /* again: nothing left to do */
  int si = svc - 1;
  for (int i = e->nsreq - 1; i >= 0; i--)
    if (e->sreq[i].svc == si)
      sreq_remove(e, i);
  for (int i = e->nowned - 1; i >= 0; i--)
    if (e->owned[i].svc == si) {
      memmove(&e->owned[i], &e->owned[i + 1], (size_t)(e->nowned - i - 1) * sizeof *e->owned);
      e->nowned--;
    }
  for (int i = 0; i < e->sev_n; i++) {
    svc_ev *q = &e->sev[(e->sev_head + i) % e->sev_alloc];
    if (q->svc == si && q->ev.type == DHT_EV_SOCK_OPENED) {
      q->ev.type = 0; /* its sockets are closed below; the event is void */
      q->svc = -3;
    } else if (q->svc == si) {
      q->svc = -2; /* the driver's, at the next dispatch */
    }
  }
  for (int i = e->nsockq - 1; i >= 0; i--)
    if (e->sockq[i].svc == si)
      e->sockq[i] = e->sockq[--e->nsockq]; /* what the driver opens for it is closed */
  for (int i = e->nsocks - 1; i >= 0; i--)
    if (e->socks[i].svc == si)
      dht_sock_close(e, svc, e->socks[i].id);
  /* The slot stays, so that other services keep their ids; what arrives in
   * its range is counted and dropped until another service takes it. */
  dht_service *s = &e->svcs[si];
  memset(&s->ctx, 0, sizeof *s - offsetof(dht_service, ctx));
  s->on_msg = noop_msg;
  e->svc_events = false;
  for (int i = 0; i < e->nsvcs; i++)
    if (e->svcs[i].on_event)
      e->svc_events = true;
  return 0;
}

int dht_svc_pending(const dht *e, int svc) {
  int n = 0;
  for (int i = 0; i < e->nsreq; i++)
    if (e->sreq[i].svc == svc - 1)
      n++;
  return n;
}

/* ---- the services' event queue ------------------------------------------ */

static int sev_push(dht *e, const dht_event *ev, void *res, int svc) {
  if (e->sev_n >= e->set.max_events) {
    e->st.drop_event_full++;
    dht_mem_free(&e->mem, res);
    return DHT_ERR_FULL;
  }
  if (e->sev_n == e->sev_alloc) {
    int na = e->sev_alloc ? e->sev_alloc * 2 : 4;
    if (na > e->set.max_events)
      na = e->set.max_events;
    svc_ev *nq = dht_mem_malloc(&e->mem, (size_t)na * sizeof *nq);
    if (!nq) {
      e->st.drop_event_full++;
      dht_mem_free(&e->mem, res);
      return DHT_ERR_NOMEM;
    }
    for (int i = 0; i < e->sev_n; i++)
      nq[i] = e->sev[(e->sev_head + i) % e->sev_alloc];
    dht_mem_free(&e->mem, e->sev);
    e->sev = nq;
    e->sev_head = 0;
    e->sev_alloc = na;
  }
  svc_ev *q = &e->sev[(e->sev_head + e->sev_n) % e->sev_alloc];
  q->ev = *ev;
  q->res = res;
  q->svc = svc;
  e->sev_n++;
  return 0;
}

static int owned_take(dht *e, int64_t cid) {
  for (int i = 0; i < e->nowned; i++)
    if (e->owned[i].cmd == cid) {
      int svc = e->owned[i].svc;
      memmove(&e->owned[i], &e->owned[i + 1], (size_t)(e->nowned - i - 1) * sizeof *e->owned);
      e->nowned--;
      return svc;
    }
  return -1;
}

bool dht_svc_route_event(dht *e, const dht_event *ev, dht_lookup_result *res) {
  int svc = -1;
  if (ev->cmd > 0) {
    if (e->nowned == 0 || (svc = owned_take(e, ev->cmd)) < 0)
      return false;
  } else if (!e->svc_events) {
    return false;
  }
  /* a candidate that finds no room is verified by the engine at once */
  return sev_push(e, ev, res, svc) == 0 || ev->type != DHT_EV_CANDIDATE;
}

static bool cmd_running(dht *e, int64_t cid) {
  const cmd *c = dht_lookup_find(e, cid);
  if (c && !c->done && !c->quiet)
    return true;
  for (int i = 0; i < e->nrpcs; i++)
    if (e->rpcs[i].kind == RPC_PING && e->rpcs[i].cmd == cid)
      return true;
  return false;
}

/* A command can finish inside the call that issued it (an empty table): its
 * event is then in the driver's queue already, and moves to the service. */
static bool take_from_driver(dht *e, int64_t cid, int svc) {
  for (int i = 0; i < e->ev_n; i++) {
    int at = (e->ev_head + i) % e->ev_alloc;
    if (e->ev[at].cmd != cid)
      continue;
    dht_event ev = e->ev[at];
    dht_lookup_result *res = e->ev_res[at];
    for (int j = i; j + 1 < e->ev_n; j++) {
      int a = (e->ev_head + j) % e->ev_alloc, b = (e->ev_head + j + 1) % e->ev_alloc;
      e->ev[a] = e->ev[b];
      e->ev_res[a] = e->ev_res[b];
    }
    e->ev_n--;
    sev_push(e, &ev, res, svc);
    return true;
  }
  return false;
}

int dht_svc_own(dht *e, int svc, int64_t cid) {
  if (!svc_live(e, svc) || cid <= 0)
    return DHT_ERR_INVAL;
  if (!cmd_running(e, cid))
    return take_from_driver(e, cid, svc - 1) ? 0 : DHT_ERR_NOTFOUND;
  if (e->nowned >= OWNED_MAX(e))
    return DHT_ERR_FULL;
  if (e->nowned == e->owned_cap) {
    int na = e->owned_cap ? e->owned_cap * 2 : 8;
    owned_cmd *no = dht_mem_realloc(&e->mem, e->owned, (size_t)na * sizeof *no);
    if (!no)
      return DHT_ERR_NOMEM;
    e->owned = no;
    e->owned_cap = na;
  }
  e->owned[e->nowned].cmd = cid;
  e->owned[e->nowned].svc = svc - 1;
  e->nowned++;
  return 0;
}

void dht_svc_dispatch(dht *e, dht_ts now) {
  /* bounded: a hook may queue more events, but each round takes one */
  for (int guard = 0; e->sev_n > 0 && guard < 4 * e->set.max_events; guard++) {
    svc_ev q = e->sev[e->sev_head];
    e->sev_head = (e->sev_head + 1) % e->sev_alloc;
    e->sev_n--;
    if (q.ev.type == DHT_EV_LOOKUP)
      q.ev.u.lookup = q.res;
    else if (q.ev.type == DHT_EV_SOCK_OPENED)
      q.ev.u.sock.ids = q.res;
    if (q.svc == -2) {
      dht_eng_emit_driver(e, &q.ev, q.res);
      continue;
    }
    if (q.svc == -3) { /* voided */
      dht_mem_free(&e->mem, q.res);
      continue;
    }
    if (q.svc >= 0) {
      const dht_service *s = svc_at(e, q.svc);
      if (s->on_event)
        s->on_event(s->ctx, e, &q.ev, now);
      dht_mem_free(&e->mem, q.res);
      continue;
    }
    bool taken = false;
    for (int i = 0; i < e->nsvcs && !taken; i++) {
      const dht_service *s = svc_at(e, i);
      if (s->on_event)
        taken = s->on_event(s->ctx, e, &q.ev, now);
    }
    if (q.ev.type == DHT_EV_CANDIDATE) { /* the driver has no use for it */
      if (taken)
        e->st.candidates_taken++;
      else
        dht_eng_verify(e, &q.ev.u.candidate.peer, now);
    } else if (taken) {
      dht_mem_free(&e->mem, q.res);
    } else {
      dht_eng_emit_driver(e, &q.ev, q.res);
    }
  }
}

/* ---- more local sockets ----------------------------------------------------- */

void dht_svc_sock_flush(dht *e) {
  if (e->nsockev == 0)
    return;
  int k = 0;
  while (k < e->nsockev && e->ev_n < e->set.max_events)
    dht_eng_emit_driver(e, &e->sockev[k++], NULL);
  memmove(e->sockev, e->sockev + k, (size_t)(e->nsockev - k) * sizeof *e->sockev);
  e->nsockev -= k;
}

/* A socket event for the driver.  It must not be lost (a socket would be
 * opened for nobody, or never closed), so when the driver's queue is full
 * it waits in a list of its own, which open sockets and requests bound
 * (max_sockets); 0, or DHT_ERR_NOMEM. */
static int sock_event(dht *e, int type, int64_t req, int n, uint8_t family, uint32_t id) {
  dht_event ev;
  memset(&ev, 0, sizeof ev);
  ev.type = type;
  ev.cmd = req;
  ev.u.sock.n = n;
  ev.u.sock.family = family;
  ev.u.sock.id = id;
  if (e->nsockev == 0 && e->ev_n < e->set.max_events) {
    dht_eng_emit_driver(e, &ev, NULL);
    return 0;
  }
  if (e->nsockev == e->sockev_cap) {
    int na = e->sockev_cap ? 2 * e->sockev_cap : 8;
    dht_event *nq = dht_mem_realloc(&e->mem, e->sockev, (size_t)na * sizeof *nq);
    if (!nq)
      return DHT_ERR_NOMEM;
    e->sockev = nq;
    e->sockev_cap = na;
  }
  e->sockev[e->nsockev++] = ev;
  return 0;
}

int64_t dht_sock_open(dht *e, int svc, int n, uint8_t family) {
  if (!svc_live(e, svc) || n < 1 || (family != DHT_AF_INET && family != DHT_AF_INET6))
    return DHT_ERR_INVAL;
  int pending = 0;
  for (int i = 0; i < e->nsockq; i++)
    pending += e->sockq[i].n;
  if (e->nsocks + pending + n > e->set.max_sockets)
    return DHT_ERR_FULL;
  if (e->nsockq == e->sockq_cap) {
    int na = e->sockq_cap ? 2 * e->sockq_cap : 4;
    sock_req *nq = dht_mem_realloc(&e->mem, e->sockq, (size_t)na * sizeof *nq);
    if (!nq)
      return DHT_ERR_NOMEM;
    e->sockq = nq;
    e->sockq_cap = na;
  }
  /* its own counter, apart from command ids (which count from 1) by a high
   * bit, so that an event's cmd is never ambiguous */
  int64_t id = ((int64_t)1 << 62) + ++e->next_sock_req;
  if (sock_event(e, DHT_EV_SOCK_OPEN, id, n, family, 0) != 0)
    return DHT_ERR_NOMEM;
  sock_req *q = &e->sockq[e->nsockq++];
  q->id = id;
  q->svc = (uint8_t)(svc - 1);
  q->family = family;
  q->n = n;
  return id;
}

int dht_sock_opened(dht *e, int64_t req, const uint32_t *ids, int n) {
  int qi = -1;
  for (int i = 0; i < e->nsockq; i++)
    if (e->sockq[i].id == req)
      qi = i;
  if (qi < 0 || n < 0 || (n > 0 && !ids))
    return DHT_ERR_NOTFOUND;
  sock_req q = e->sockq[qi];
  e->sockq[qi] = e->sockq[--e->nsockq];
  if (n > q.n)
    n = q.n; /* never more than asked: the rest stay the driver's to close */
  uint32_t *copy = n ? dht_mem_malloc(&e->mem, (size_t)n * sizeof *copy) : NULL;
  if (n && e->nsocks + n > e->socks_cap) {
    int na = e->socks_cap ? e->socks_cap : 16;
    while (na < e->nsocks + n)
      na *= 2;
    sock_ent *ns = dht_mem_realloc(&e->mem, e->socks, (size_t)na * sizeof *ns);
    if (ns) {
      e->socks = ns;
      e->socks_cap = na;
    }
  }
  if (n && (!copy || e->nsocks + n > e->socks_cap)) {
    dht_mem_free(&e->mem, copy);
    for (int i = 0; i < n; i++)
      sock_event(e, DHT_EV_SOCK_CLOSE, 0, 0, q.family, ids[i]);
    copy = NULL;
    n = 0;
  }
  for (int i = 0; i < n; i++) {
    copy[i] = ids[i];
    e->socks[e->nsocks].id = ids[i];
    e->socks[e->nsocks].svc = q.svc;
    e->nsocks++;
  }
  dht_event ev;
  memset(&ev, 0, sizeof ev);
  ev.type = DHT_EV_SOCK_OPENED;
  ev.cmd = req;
  ev.status = n > 0 ? 0 : DHT_ERR_FULL;
  ev.u.sock.n = n;
  ev.u.sock.family = q.family;
  sev_push(e, &ev, copy, q.svc);
  return 0;
}

int dht_sock_close(dht *e, int svc, uint32_t id) {
  for (int i = 0; i < e->nsocks; i++)
    if (e->socks[i].id == id && e->socks[i].svc == svc - 1) {
      memmove(&e->socks[i], &e->socks[i + 1], (size_t)(e->nsocks - i - 1) * sizeof *e->socks);
      e->nsocks--;
      sock_event(e, DHT_EV_SOCK_CLOSE, 0, 0, 0, id);
      return 0;
    }
  return DHT_ERR_NOTFOUND;
}

/* ---- requests ------------------------------------------------------------ */

static int sreq_find(const dht *e, uint32_t txid) {
  for (int i = 0; i < e->nsreq; i++)
    if (e->sreq[i].r.txid == txid)
      return i;
  return -1;
}

static void sreq_remove(dht *e, int i) {
  if (e->sreq[i].key)
    e->nsreq_keyed--;
  dht_mem_free(&e->mem, e->sreq[i].body);
  memmove(&e->sreq[i], &e->sreq[i + 1], (size_t)(e->nsreq - i - 1) * sizeof *e->sreq);
  e->nsreq--;
}

uint32_t dht_svc_txid(dht *e) {
  uint32_t txid;
  do
    e->cb.rand(e->cb.ctx, (uint8_t *)&txid, sizeof txid);
  while (sreq_find(e, txid) >= 0);
  return txid;
}

dht_ts dht_peer_rtt(dht *e, const uint8_t pk[static DHT_PK_LEN]) {
  uint8_t id[DHT_ID_LEN];
  dht_eng_peer_id(e, pk, id);
  const dht_rt_contact *c = dht_rt_find(e->rt, pk, id);
  return c && (c->srtt_ms || c->rttvar_ms) ? (dht_ts)c->srtt_ms : -1;
}

dht_ts dht_peer_timeout(dht *e, const uint8_t pk[static DHT_PK_LEN]) {
  uint8_t id[DHT_ID_LEN];
  dht_eng_peer_id(e, pk, id);
  const dht_rt_contact *c = dht_rt_find(e->rt, pk, id);
  if (c && (c->srtt_ms || c->rttvar_ms))
    return dht_rt_timeout(c, e->set.rpc_timeout_min_ms, e->set.rpc_timeout_max_ms);
  if (!e->all_rtt_known)
    return e->set.rpc_timeout_max_ms;
  dht_ts t = (dht_ts)e->all_srtt + 4 * (dht_ts)e->all_rttvar;
  if (t < e->set.rpc_timeout_min_ms)
    t = e->set.rpc_timeout_min_ms;
  if (t > e->set.rpc_timeout_max_ms)
    t = e->set.rpc_timeout_max_ms;
  return t;
}

int dht_svc_request(dht *e, int svc, const dht_peer *to, const uint8_t *body, size_t len,
                    const dht_req_opts *o, dht_ts now) {
  uint8_t type;
  uint32_t txid;
  /* every check that can refuse comes before the unsolicited bucket takes a
   * token */
  if (!svc_live(e, svc) || !to || !body || !o || len > DHT_MAX_BODY ||
      dht_msg_peek(body, len, &type, &txid) != 0 || svc_for_type(e, type) != svc - 1 ||
      svc_for_type(e, o->answer) != svc - 1 || o->tries > MAX_TRIES || o->soft_ms < 0 ||
      o->timeout_ms < 0 || sreq_find(e, txid) >= 0 || o->key < 0 || o->key > e->set.max_keys ||
      (o->key && !(e->xkeys && e->xkeys[o->key - 1].used)))
    return DHT_ERR_INVAL;
  dht_peer rto = *to; /* a key without an address goes over its path */
  dht_req_opts ro = *o;
  if (dht_paths_resolve(e, &rto, &ro.tx) != 0)
    return DHT_ERR_NOTFOUND;
  to = &rto;
  o = &ro;
  if (e->nsreq >= e->set.max_requests) {
    e->st.drop_out_full++;
    return DHT_ERR_FULL;
  }
  if (o->unsolicited && !dht_eng_proven(e, to, now)) {
    if (!dht_proof_unsolicited(&e->proof, &to->addr, now)) {
      e->st.unsolicited_limited++;
      return DHT_ERR_FULL;
    }
    e->st.unsolicited_out++;
  }
  int tries = o->tries > 0 ? o->tries : 1;
  uint8_t *copy = NULL;
  if (tries > 1) {
    copy = dht_mem_malloc(&e->mem, len);
    if (!copy)
      return DHT_ERR_NOMEM;
    memcpy(copy, body, len);
  }
  if (e->nsreq == e->sreq_cap) {
    int na = e->sreq_cap ? e->sreq_cap * 2 : 8;
    if (na > e->set.max_requests)
      na = e->set.max_requests;
    svc_rpc *nr = dht_mem_realloc(&e->mem, e->sreq, (size_t)na * sizeof *nr);
    if (!nr) {
      dht_mem_free(&e->mem, copy);
      return DHT_ERR_NOMEM;
    }
    e->sreq = nr;
    e->sreq_cap = na;
  }
  int rv = dht_eng_queue(e, to, &o->tx, o->key, body, len, true, now);
  if (rv) {
    dht_mem_free(&e->mem, copy);
    return rv;
  }
  svc_rpc *q = &e->sreq[e->nsreq++];
  memset(q, 0, sizeof *q);
  q->r.txid = txid;
  q->r.type = type;
  q->r.to = *to;
  q->r.tag = o->tag;
  q->r.aux = o->aux;
  q->r.sent = now;
  q->svc = (uint8_t)(svc - 1);
  q->answer = o->answer;
  q->tries = (uint8_t)(tries - 1);
  q->try_ms = o->timeout_ms > 0 ? o->timeout_ms : dht_peer_timeout(e, to->pk);
  q->deadline = now + q->try_ms;
  q->soft_at = o->soft_ms > 0 ? now + o->soft_ms : DHT_TS_NEVER;
  q->soft_done = o->soft_ms <= 0;
  q->len = (uint16_t)len;
  q->tx = o->tx;
  q->key = (uint8_t)o->key;
  if (q->key)
    e->nsreq_keyed++;
  q->body = copy;
  e->st.svc_requests_out++;
  return 0;
}

int dht_svc_cancel(dht *e, int svc, uint64_t tag) {
  int n = 0;
  for (int i = e->nsreq - 1; i >= 0; i--)
    if (e->sreq[i].svc == svc - 1 && e->sreq[i].r.tag == tag) {
      sreq_remove(e, i);
      n++;
    }
  return n;
}

int dht_svc_send(dht *e, const dht_peer *to, const dht_tx *tx, const uint8_t *body, size_t len) {
  uint8_t type;
  uint32_t txid;
  if (!to || !body || len > DHT_MAX_BODY || dht_msg_peek(body, len, &type, &txid) != 0 ||
      type <= DHT_MSG_CORE_MAX)
    return DHT_ERR_INVAL;
  dht_peer rto = *to; /* a key without an address goes over its path */
  dht_tx rtx = tx ? *tx : (dht_tx){0};
  if (dht_paths_resolve(e, &rto, &rtx) != 0)
    return DHT_ERR_NOTFOUND;
  /* The clock for the credit is the last one the engine saw: services send
   * from their hooks, which run inside a driver call that gave it. */
  return dht_eng_queue(e, &rto, &rtx, 0, body, len, false, e->last_now);
}

void dht_svc_on_datagram(dht *e, const dht_msg_in *in, dht_ts now) {
  int si = svc_for_type(e, in->type);
  if (si < 0) {
    e->st.drop_unknown_type++;
    return;
  }
  const dht_service *s = svc_at(e, si);
  int i = sreq_find(e, in->txid);
  if (i >= 0 && !e->sreq[i].keyless && e->sreq[i].svc == si && e->sreq[i].answer == in->type &&
      e->sreq[i].key == in->key && memcmp(e->sreq[i].r.to.pk, in->from.pk, DHT_PK_LEN) == 0) {
    svc_rpc q = e->sreq[i];
    q.body = NULL;
    sreq_remove(e, i);
    e->st.svc_answers++;
    /* The answer carries our txid from inside the box: the peer got our
     * request at the address we sent it to. */
    dht_proof_mark(&e->proof, &q.r.to, now);
    if (!q.retried)
      dht_eng_rtt_sample(e, now - q.r.sent);
    if (s->on_answer) {
      s->on_answer(s->ctx, e, &q.r, in, now);
      return;
    }
  }
  s->on_msg(s->ctx, e, in, now);
}

void dht_svc_expire(dht *e, dht_ts now) {
  /* A hook may add or cancel requests: rescan after each one (bounded). */
  for (int guard = 0; guard < 4 * e->set.max_requests + 16; guard++) {
    int i;
    for (i = 0; i < e->nsreq; i++)
      if (e->sreq[i].deadline <= now || (!e->sreq[i].soft_done && e->sreq[i].soft_at <= now))
        break;
    if (i == e->nsreq)
      break;
    svc_rpc *q = &e->sreq[i];
    const dht_service *s = svc_at(e, q->svc);
    if (q->deadline > now) { /* the soft timeout */
      q->soft_done = true;
      dht_req r = q->r;
      if (s->on_timeout)
        s->on_timeout(s->ctx, e, &r, true, now);
      continue;
    }
    if (q->tries > 0 && q->body) {
      q->tries--;
      q->retried = true;
      q->deadline = now + q->try_ms;
      e->st.svc_retries++;
      dht_eng_queue(e, &q->r.to, &q->tx, q->key, q->body, q->len, true, now);
      if (q->tries == 0) {
        dht_mem_free(&e->mem, q->body);
        q->body = NULL;
      }
      continue;
    }
    dht_req r = q->r;
    sreq_remove(e, i);
    e->st.svc_timeouts++;
    if (s->on_timeout)
      s->on_timeout(s->ctx, e, &r, false, now);
  }
  for (int i = 0; i < e->nsvcs; i++) {
    const dht_service *s = svc_at(e, i);
    if (s->handle_expiry && s->get_expiry && s->get_expiry(s->ctx) <= now)
      s->handle_expiry(s->ctx, e, now);
  }
}

dht_ts dht_svc_expiry(const dht *e) {
  dht_ts t = DHT_TS_NEVER;
  if (e->sev_n > 0)
    return 0; /* events wait for a safe point: run the timer at once */
  for (int i = 0; i < e->nsreq; i++) {
    const svc_rpc *q = &e->sreq[i];
    if (q->deadline < t)
      t = q->deadline;
    if (!q->soft_done && q->soft_at < t)
      t = q->soft_at;
  }
  for (int i = 0; i < e->nsvcs; i++)
    if (e->svcs[i].get_expiry) {
      dht_ts x = e->svcs[i].get_expiry(e->svcs[i].ctx);
      if (x < t)
        t = x;
    }
  return t;
}

int dht_svc_keyed_next(const dht *e, const uint8_t pk[static DHT_PK_LEN], int after) {
  int best = 0;
  for (int i = 0; i < e->nsreq; i++) {
    int k = e->sreq[i].key;
    if (k > after && (best == 0 || k < best) && e->xkeys[k - 1].used &&
        memcmp(e->sreq[i].r.to.pk, pk, DHT_PK_LEN) == 0)
      best = k;
  }
  return best;
}

bool dht_svc_is_keyed_answer(const dht *e, int key, const uint8_t pk[static DHT_PK_LEN],
                             uint32_t txid, uint8_t type) {
  int i = sreq_find(e, txid);
  return i >= 0 && e->sreq[i].key == key && e->sreq[i].answer == type &&
         memcmp(e->sreq[i].r.to.pk, pk, DHT_PK_LEN) == 0;
}

/* ---- sending keys ------------------------------------------------------------ */

int dht_key_add(dht *e, const dht_identity *id) {
  if (!id)
    return DHT_ERR_INVAL;
  if (!e->xkeys && e->set.max_keys > 0 &&
      !(e->xkeys = dht_mem_calloc(&e->mem, (size_t)e->set.max_keys, sizeof *e->xkeys)))
    return DHT_ERR_NOMEM;
  for (int i = 0; i < e->set.max_keys; i++) {
    if (e->xkeys[i].used)
      continue;
    uint8_t hkey[16];
    e->cb.rand(e->cb.ctx, hkey, sizeof hkey);
    /* a small cache: a sending key talks to a few storage nodes at a time */
    int rv = dht_box_init(&e->xkeys[i].box, id, 16, hkey, &e->mem);
    if (rv)
      return rv;
    dht_box_set_plaintext(&e->xkeys[i].box, e->set.insecure_plaintext);
    e->xkeys[i].used = true;
    return i + 1;
  }
  return DHT_ERR_FULL;
}

int dht_key_remove(dht *e, int key) {
  if (!e->xkeys || key < 1 || key > e->set.max_keys || !e->xkeys[key - 1].used)
    return DHT_ERR_NOTFOUND;
  dht_box_free(&e->xkeys[key - 1].box, &e->mem);
  e->xkeys[key - 1].used = false;
  /* Its requests time out at the next timer run, with no try left, and
   * forget the handle: a later dht_key_add may give it to another key, and
   * nothing of this one may go out under that (it would link the two). */
  for (int i = 0; i < e->nsreq; i++) {
    svc_rpc *q = &e->sreq[i];
    if (q->key != key)
      continue;
    q->key = 0;
    q->keyless = true; /* nor may an answer under our identity take it */
    e->nsreq_keyed--;
    q->tries = 0;
    dht_mem_free(&e->mem, q->body);
    q->body = NULL;
    q->soft_done = true;
    q->deadline = 0;
  }
  for (int i = 0; i < e->out_n; i++) {
    outmsg *m = e->out[(e->out_head + i) % e->out_alloc];
    if (m->key == key)
      m->key = UINT8_MAX; /* past max_keys: dropped when its turn comes */
  }
  return 0;
}

void dht_svc_free_all(dht *e) {
  for (int i = 0; e->xkeys && i < e->set.max_keys; i++)
    if (e->xkeys[i].used)
      dht_box_free(&e->xkeys[i].box, &e->mem);
  dht_mem_free(&e->mem, e->xkeys);
  for (int i = 0; i < e->nsreq; i++)
    dht_mem_free(&e->mem, e->sreq[i].body);
  dht_mem_free(&e->mem, e->sreq);
  for (int i = 0; i < e->sev_n; i++)
    dht_mem_free(&e->mem, e->sev[(e->sev_head + i) % e->sev_alloc].res);
  dht_mem_free(&e->mem, e->sev);
  dht_mem_free(&e->mem, e->owned);
  dht_mem_free(&e->mem, e->socks);
  dht_mem_free(&e->mem, e->sockq);
  dht_mem_free(&e->mem, e->sockev);
  dht_mem_free(&e->mem, e->svcs);
}

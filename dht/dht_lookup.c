/*
 * dht_lookup.c - commands and iterative lookups.
 *
 * A lookup keeps up to lookup_candidates contacts sorted by XOR distance to
 * its target.  The "window" is the k closest candidates that have not failed.
 * It queries the closest unqueried candidates of the window, alpha at a time,
 * and is finished when every candidate of the window has answered: then the
 * k closest nodes it has seen are exactly the k closest that answered.
 * Referrals closer than the window's edge enter it and must answer in turn.
 *
 * Commands built on this:
 *   CMD_FIND     FIND_NODE lookup -> DHT_EV_LOOKUP
 *   CMD_GET      GET lookup, newest valid record kept -> DHT_EV_LOOKUP
 *   CMD_PUT      GET lookup of our ID (collecting write tokens), then PUT to
 *                the k closest that answered -> DHT_EV_PUT
 *   CMD_BOOT     lookup of our ID, then one refresh lookup per far bucket,
 *                each ending once the bucket holds k/4 contacts
 *                -> DHT_EV_BOOTSTRAP
 *   CMD_REFRESH  a quiet lookup of a random ID in a stale bucket
 *   pings        dht_ping(): a lone rpc, no command entry
 *
 * Commands are kept in creation order and removed when finished, so the
 * order in which the engine sends never depends on memory addresses.
 */
#include <string.h>

#include "dht_eng.h"

cmd *dht_lookup_find(dht *e, int64_t id) {
  for (int i = 0; i < e->ncmds; i++)
    if (e->cmds[i].id == id)
      return e->cmds[i].done ? NULL : &e->cmds[i];
  return NULL;
}

/* The first 8 bytes of an ID, big-endian: XOR of two is the top of their
 * distance. */
static uint64_t top64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

/* Inserts a candidate in distance order; ignores ourselves, duplicates and
 * anything beyond the cap that is farther than everything kept.  The place
 * is found by binary search on the top 64 bits of the distance, with the
 * whole distance only where those are equal. */
static void cand_add(dht *e, cmd *c, const dht_peer *p, int depth) {
  if (memcmp(p->pk, e->ident.pk, DHT_PK_LEN) == 0)
    return;
  uint8_t id[DHT_ID_LEN];
  dht_eng_peer_id(e, p->pk, id);
  uint64_t d64 = top64(id) ^ top64(c->target);
  int lo = 0, hi = c->nc; /* the first candidate not closer than id */
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    const cand *m = &c->c[mid];
    if (m->d64 < d64 || (m->d64 == d64 && dht_id_cmp_dist(m->id, id, c->target) < 0))
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < c->nc && c->c[lo].d64 == d64 && memcmp(c->c[lo].id, id, DHT_ID_LEN) == 0) {
    if (depth < c->c[lo].depth)
      c->c[lo].depth = (uint8_t)depth;
    return;
  }
  int pos = lo;
  int cap = e->set.lookup_candidates;
  if (pos >= cap)
    return;
  int n = c->nc < cap ? c->nc : cap - 1;
  if (c->nc == cap && c->c[cap - 1].state == CAND_INFLIGHT)
    c->inflight--; /* pushed out while asked: its answer will find no candidate */
  memmove(&c->c[pos + 1], &c->c[pos], (size_t)(n - pos) * sizeof *c->c);
  if (c->nc < cap)
    c->nc++;
  cand *x = &c->c[pos];
  memset(x, 0, sizeof *x);
  x->d64 = d64;
  memcpy(x->id, id, DHT_ID_LEN);
  x->peer = *p;
  x->depth = (uint8_t)(depth > 255 ? 255 : depth);
}

static cand *cand_by_pk(cmd *c, const uint8_t pk[static DHT_PK_LEN]) {
  for (int i = 0; i < c->nc; i++)
    if (memcmp(c->c[i].peer.pk, pk, DHT_PK_LEN) == 0)
      return &c->c[i];
  return NULL;
}

/* Seeds a lookup from the routing table (and extra peers). */
static void seed(dht *e, cmd *c, const dht_peer *seeds, size_t nseeds) {
  for (size_t i = 0; i < nseeds; i++)
    cand_add(e, c, &seeds[i], 1);
  const dht_rt_contact *cl[DHT_K_MAX];
  int n = dht_rt_closest(e->rt, c->target, false, cl, e->set.k);
  for (int i = 0; i < n; i++) {
    dht_peer p;
    memcpy(p.pk, cl[i]->pk, DHT_PK_LEN);
    p.addr = cl[i]->addr;
    cand_add(e, c, &p, 1);
  }
}

int64_t dht_lookup_start(dht *e, int kind, const uint8_t target[static DHT_ID_LEN],
                         const dht_peer *seeds, size_t nseeds, bool quiet, dht_ts now) {
  if (e->ncmds >= e->set.max_lookups)
    return DHT_ERR_FULL;
  cand *cands = dht_mem_calloc(&e->mem, (size_t)e->set.lookup_candidates, sizeof *cands);
  if (!cands)
    return DHT_ERR_NOMEM;
  cmd *nc = dht_mem_realloc(&e->mem, e->cmds, (size_t)(e->ncmds + 1) * sizeof *nc);
  if (!nc) {
    dht_mem_free(&e->mem, cands);
    return DHT_ERR_NOMEM;
  }
  e->cmds = nc;
  cmd *c = &e->cmds[e->ncmds++];
  memset(c, 0, sizeof *c);
  c->id = e->next_cmd++;
  c->kind = (uint8_t)kind;
  c->quiet = quiet;
  c->msg = (kind == CMD_GET || kind == CMD_PUT) ? DHT_MSG_GET : DHT_MSG_FIND_NODE;
  memcpy(c->target, target, DHT_ID_LEN);
  c->start = now;
  c->deadline = now + e->set.lookup_timeout_ms;
  c->c = cands;
  seed(e, c, seeds, nseeds);
  e->st.lookups_started++;
  static const char *const kinds[] = {"?", "find", "get", "put", "ping", "join", "refresh"};
  DHT_LOG(e, DHT_LOG_DEBUG, "lookup %lld (%s%s) of %02x%02x%02x%02x..., %d candidates",
          (long long)c->id, kind >= CMD_FIND && kind <= CMD_REFRESH ? kinds[kind] : "?",
          quiet ? ", internal" : "", target[0], target[1], target[2], target[3], c->nc);
  return c->id;
}

static void fill_result(const dht *e, const cmd *c, dht_lookup_result *res, dht_ts now) {
  memset(res, 0, sizeof *res);
  memcpy(res->target, c->target, DHT_ID_LEN);
  for (int i = 0; i < c->nc && res->ncontacts < e->set.k; i++) {
    const cand *x = &c->c[i];
    if (x->state != CAND_DONE)
      continue;
    dht_contact *o = &res->contacts[res->ncontacts++];
    memcpy(o->id, x->id, DHT_ID_LEN);
    memcpy(o->pk, x->peer.pk, DHT_PK_LEN);
    o->addr = x->peer.addr;
    if (x->depth > res->rounds)
      res->rounds = x->depth;
  }
  res->has_record = c->has_record;
  if (c->has_record)
    res->record = c->rec;
  res->messages = c->messages;
  res->replies = c->replies;
  res->elapsed_ms = now - c->start;
}

static void finish(dht *e, cmd *c, int status, dht_ts now) {
  c->done = true;
  e->st.lookups_done++;
  if (c->kind == CMD_REFRESH)
    e->refreshing = false;
  if (c->quiet)
    return;
  dht_event ev;
  memset(&ev, 0, sizeof ev);
  ev.cmd = c->id;
  ev.status = status;
  switch (c->kind) {
  case CMD_FIND:
  case CMD_GET: {
    dht_lookup_result *res = dht_mem_malloc(&e->mem, sizeof *res);
    ev.type = DHT_EV_LOOKUP;
    if (res)
      fill_result(e, c, res, now);
    else
      ev.status = DHT_ERR_NOMEM;
    dht_eng_emit(e, &ev, res);
    return;
  }
  case CMD_PUT:
    ev.type = DHT_EV_PUT;
    ev.u.put.acks = c->acks;
    ev.u.put.asked = c->asked;
    ev.u.put.messages = c->messages;
    ev.u.put.elapsed_ms = now - c->start;
    ev.u.put.rounds = c->rounds;
    break;
  case CMD_BOOT:
    ev.type = DHT_EV_BOOTSTRAP;
    ev.u.bootstrap.table_size = dht_rt_size(e->rt);
    ev.u.bootstrap.pinged = c->messages;
    ev.u.bootstrap.answered = c->replies;
    break;
  }
  dht_eng_emit(e, &ev, NULL);
}

/* Contacts a far bucket needs at bootstrap before its refresh lookup stops:
 * k/4 (5 of 20).  Kademlia refreshes every bucket farther than the closest
 * neighbour at join, and each refresh lookup asks ~17 nodes to fill a bucket
 * only by those that answer, so a join cost ~17 requests per bucket (13
 * buckets at 100,000 nodes).  A lookup through a bucket needs alpha (3)
 * contacts there and a spare; the rest of each bucket fills from the traffic
 * the node sees (a requester is verified and added while its bucket has
 * room) and from the periodic refresh (docs/architecture.md, decision 19,
 * has the figures). */
static int boot_fill(const dht *e) {
  return (e->set.k + 3) / 4;
}

/* Restarts c towards a new target (BOOT refreshing a far bucket). */
static void retarget(dht *e, cmd *c, const uint8_t target[static DHT_ID_LEN]) {
  memcpy(c->target, target, DHT_ID_LEN);
  c->nc = 0;
  seed(e, c, NULL, 0);
}

/* The lookup phase is over: move on (PUT, BOOT) or finish. */
static void lookup_done(dht *e, cmd *c, dht_ts now) {
  if (c->kind == CMD_BOOT) {
    if (c->phase == 0)
      c->boot_buckets = dht_rt_buckets(e->rt) - 1;
    while (c->phase < c->boot_buckets) {
      uint8_t rnd[DHT_ID_LEN], target[DHT_ID_LEN];
      e->cb.rand(e->cb.ctx, rnd, sizeof rnd);
      dht_id_in_bucket(target, e->id, c->phase, rnd);
      dht_rt_touch_bucket(e->rt, c->phase, now);
      c->phase++;
      if (dht_rt_bucket_fill(e->rt, target) >= boot_fill(e))
        continue; /* filled enough by answers to earlier phases */
      retarget(e, c, target);
      return;
    }
    /* asked someone and nobody answered: the peers (or the network) are gone */
    finish(e, c, c->messages > 0 && c->replies == 0 ? DHT_ERR_TIMEOUT : 0, now);
    return;
  }
  if (c->kind == CMD_PUT && c->phase == 0) {
    c->phase = 1;
    for (int i = 0, n = 0; i < c->nc && n < e->set.k; i++) {
      cand *x = &c->c[i];
      if (x->state != CAND_DONE)
        continue;
      n++;
      if (x->depth > c->rounds)
        c->rounds = x->depth;
      if (!x->has_token)
        continue;
      dht_msg m;
      memset(&m, 0, sizeof m);
      m.type = DHT_MSG_PUT;
      m.token_len = DHT_TOKEN_LEN;
      memcpy(m.token, x->token, DHT_TOKEN_LEN);
      m.record = e->rec_bytes;
      m.record_len = e->rec_len;
      if (dht_eng_request(e, &x->peer, &m, RPC_PUT, c->id, now) == 0) {
        e->rpcs[e->nrpcs - 1].phase = c->phase;
        x->acked = 1;
        c->asked++;
        c->inflight++;
        c->messages++;
      }
    }
    if (c->inflight == 0)
      finish(e, c, c->acks ? 0 : DHT_ERR_NOTFOUND, now);
    return;
  }
  /* nobody to ask (an empty table) is not a result */
  finish(e, c, c->messages == 0 ? DHT_ERR_NOTFOUND : c->replies == 0 ? DHT_ERR_TIMEOUT : 0, now);
}

/* One step of the iterative algorithm for a lookup-phase command. */
static void advance(dht *e, cmd *c, dht_ts now) {
  /* A far-bucket refresh of BOOT is for putting contacts into that bucket:
   * once it holds boot_fill of them, the rest of the lookup buys nothing.
   * Requests still out belong to this phase; their answers are ignored by
   * the phase check but still reach the routing table. */
  if (c->kind == CMD_BOOT && c->phase > 0 && dht_rt_bucket_fill(e->rt, c->target) >= boot_fill(e)) {
    c->inflight = 0;
    lookup_done(e, c, now);
    return;
  }
  bool finished = true;
  for (int i = 0, w = 0; i < c->nc && w < e->set.k; i++) {
    cand *x = &c->c[i];
    if (x->state == CAND_FAILED)
      continue;
    w++;
    if (x->state == CAND_INFLIGHT) {
      finished = false;
    } else if (x->state == CAND_NEW) {
      finished = false;
      if (c->inflight >= e->set.alpha)
        continue;
      dht_msg m;
      memset(&m, 0, sizeof m);
      m.type = c->msg;
      memcpy(m.target, c->target, DHT_ID_LEN);
      int rv = dht_eng_request(e, &x->peer, &m, RPC_LOOKUP, c->id, now);
      if (rv == 0) {
        e->rpcs[e->nrpcs - 1].phase = c->phase;
        x->state = CAND_INFLIGHT;
        c->inflight++;
        c->messages++;
      } else if (rv == DHT_ERR_FULL) {
        break; /* the queue is full: retry on the next step */
      } else {
        x->state = CAND_FAILED; /* cannot be encoded or allocated: skip it */
      }
    }
  }
  if (finished && c->inflight == 0)
    lookup_done(e, c, now);
}

void dht_lookup_on_reply(dht *e, cmd *c, const rpc *r, const dht_msg *m, dht_ts now) {
  if (r->phase != c->phase || (c->kind == CMD_PUT && c->phase != 0))
    return; /* an answer from an earlier phase */
  cand *x = cand_by_pk(c, r->to.pk);
  if (!x || x->state != CAND_INFLIGHT)
    return;
  x->state = CAND_DONE;
  c->inflight--;
  c->replies++;
  if (m->token_len == DHT_TOKEN_LEN) {
    memcpy(x->token, m->token, DHT_TOKEN_LEN);
    x->has_token = 1;
  }
  int depth = x->depth + 1;
  for (int i = 0; i < m->ncontacts; i++)
    cand_add(e, c, &m->contacts[i], depth);

  if (m->type == DHT_MSG_VALUE && c->kind == CMD_GET) {
    dht_record rec;
    uint8_t id[DHT_ID_LEN];
    if (dht_record_parse(&rec, m->record, m->record_len) != 0) {
      e->st.drop_bad_record++;
      return;
    }
    dht_id_from_pk(id, rec.pk);
    if (memcmp(id, c->target, DHT_ID_LEN) != 0 || rec.expires_unix_s <= dht_eng_unix_s(e, now) ||
        rec.expires_unix_s > dht_eng_unix_s(e, now) + DHT_RECORD_MAX_TTL_S + 600) {
      e->st.drop_bad_record++;
      return;
    }
    if (c->has_record && rec.seq <= c->rec.seq)
      return; /* not newer: no need to spend a signature check on it */
    if (!e->set.insecure_plaintext && dht_record_verify(m->record, m->record_len) != 0) {
      e->st.drop_bad_record++;
      return;
    }
    c->has_record = true;
    c->rec = rec;
    c->rec_len = (uint16_t)m->record_len;
    memcpy(c->rec_bytes, m->record, m->record_len);
  }
}

void dht_lookup_on_ack(dht *e, cmd *c, const rpc *r, const dht_msg *m, dht_ts now) {
  (void)now;
  cand *x = cand_by_pk(c, r->to.pk);
  if (r->phase != c->phase || c->phase != 1 || !x || x->acked != 1)
    return;
  x->acked = 2;
  c->inflight--;
  c->replies++;
  if (m->status == DHT_ACK_OK)
    c->acks++;
  else
    DHT_LOG(e, DHT_LOG_DEBUG, "put refused with status %u", m->status);
}

void dht_lookup_on_timeout(dht *e, cmd *c, const rpc *r, dht_ts now) {
  (void)e;
  (void)now;
  cand *x = cand_by_pk(c, r->to.pk);
  if (!x || r->phase != c->phase)
    return;
  if (c->kind == CMD_PUT && c->phase == 1) {
    if (x->acked == 1) {
      x->acked = 2;
      c->inflight--;
    }
  } else if (x->state == CAND_INFLIGHT) {
    x->state = CAND_FAILED;
    c->inflight--;
  }
}

void dht_lookup_step(dht *e, dht_ts now) {
  for (int i = 0; i < e->ncmds; i++) {
    cmd *c = &e->cmds[i];
    if (c->done)
      continue;
    if (now >= c->deadline) {
      finish(e, c, DHT_ERR_TIMEOUT, now);
      continue;
    }
    if (c->kind == CMD_PUT && c->phase == 1) {
      if (c->inflight == 0)
        finish(e, c, c->acks ? 0 : DHT_ERR_NOTFOUND, now);
      continue;
    }
    /* BOOT may retarget inside advance(); loop until it is waiting */
    uint8_t phase;
    do {
      phase = c->phase;
      advance(e, c, now);
    } while (!c->done && c->phase != phase && c->kind == CMD_BOOT);
  }
  /* drop finished commands, keeping creation order */
  int w = 0;
  for (int i = 0; i < e->ncmds; i++) {
    if (e->cmds[i].done) {
      dht_mem_free(&e->mem, e->cmds[i].c);
      continue;
    }
    if (w != i)
      e->cmds[w] = e->cmds[i];
    w++;
  }
  e->ncmds = w;
}

dht_ts dht_lookup_expiry(const dht *e) {
  dht_ts t = DHT_TS_NEVER;
  for (int i = 0; i < e->ncmds; i++)
    if (!e->cmds[i].done && e->cmds[i].deadline < t)
      t = e->cmds[i].deadline;
  return t;
}

void dht_lookup_free_all(dht *e) {
  for (int i = 0; i < e->ncmds; i++)
    dht_mem_free(&e->mem, e->cmds[i].c);
  dht_mem_free(&e->mem, e->cmds);
  e->cmds = NULL;
  e->ncmds = 0;
}

/* ---- public commands ---------------------------------------------------- */

static int64_t start_and_step(dht *e, int kind, const uint8_t target[static DHT_ID_LEN],
                              const dht_peer *seeds, size_t nseeds, dht_ts now) {
  int64_t id = dht_lookup_start(e, kind, target, seeds, nseeds, false, now);
  if (id > 0)
    dht_lookup_step(e, now);
  return id;
}

int64_t dht_bootstrap(dht *e, const dht_peer *peers, size_t n, dht_ts now) {
  if (n && !peers)
    return DHT_ERR_INVAL;
  return start_and_step(e, CMD_BOOT, e->id, peers, n, now);
}

int64_t dht_find_node(dht *e, const uint8_t target[static DHT_ID_LEN], dht_ts now) {
  return start_and_step(e, CMD_FIND, target, NULL, 0, now);
}

int64_t dht_get_record(dht *e, const uint8_t id[static DHT_ID_LEN], dht_ts now) {
  return start_and_step(e, CMD_GET, id, NULL, 0, now);
}

int64_t dht_put_record(dht *e, dht_ts now) {
  int rv = dht_eng_make_record(e, now);
  if (rv)
    return rv;
  e->published = true;
  e->next_republish = now + e->set.republish_ms;
  return start_and_step(e, CMD_PUT, e->id, NULL, 0, now);
}

int64_t dht_ping(dht *e, const dht_peer *peer, dht_ts now) {
  if (!peer || (peer->addr.family != DHT_AF_INET && peer->addr.family != DHT_AF_INET6))
    return DHT_ERR_INVAL;
  int64_t id = e->next_cmd++;
  dht_msg m;
  memset(&m, 0, sizeof m);
  m.type = DHT_MSG_PING;
  int rv = dht_eng_request(e, peer, &m, RPC_PING, id, now);
  return rv ? rv : id;
}

int dht_cancel(dht *e, int64_t id) {
  cmd *c = dht_lookup_find(e, id);
  if (c && !c->quiet) {
    /* its in-flight requests stay in the rpc table and are ignored */
    c->done = true;
    e->st.lookups_done++;
    dht_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = c->kind == CMD_PUT    ? DHT_EV_PUT
              : c->kind == CMD_BOOT ? DHT_EV_BOOTSTRAP
                                    : DHT_EV_LOOKUP;
    ev.cmd = id;
    ev.status = DHT_ERR_CANCELLED;
    dht_eng_emit(e, &ev, NULL);
    return 0;
  }
  for (int i = 0; i < e->nrpcs; i++) {
    if (e->rpcs[i].kind == RPC_PING && e->rpcs[i].cmd == id) {
      dht_event ev;
      memset(&ev, 0, sizeof ev);
      ev.type = DHT_EV_PING;
      ev.cmd = id;
      ev.status = DHT_ERR_CANCELLED;
      e->rpcs[i] = e->rpcs[--e->nrpcs];
      dht_eng_emit(e, &ev, NULL);
      return 0;
    }
  }
  return DHT_ERR_NOTFOUND;
}

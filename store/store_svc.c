/*
 * store_svc.c - the mailbox service: a dht/ service owning message types
 * 0x30-0x3f (docs/mailbox.md is the protocol).  It plays two parts on every
 * node, a storage node for others (store_serve.c, store_recon.c) and a user
 * agent for its own user (store_outbox.c, store_fetch.c); this file is what
 * they share.
 *
 * It owns: creation and settings; the friends table; the event queue; the
 * glue to the engine's requests (store_svc_rpc_start, on_answer, on_timeout:
 * the engine keeps each request, retransmits it on its RTT estimate and
 * hands back the answer or the timeout with the owner kind and id as its
 * tag); the dispatch of every message (requests to their handlers, answers
 * to the owner of the request they answer); the timers, and expiry of what
 * the storage node keeps.
 *
 * Invariants: a message reaches a handler only after the codec
 * (store_wire.c) accepted all of it; the engine matches an answer to a
 * request by (type, txid, peer key) before it is decoded, and forgets the
 * request before its owner sees the answer or the timeout, so each request
 * ends exactly once.  Expiry never silences an unread item: it leaves an
 * "evicted" notice for the owner to find.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "store_int.h"

/* ---- small helpers ------------------------------------------------- */

void *store_svc_realloc(store_svc *s, void *p, size_t n) {
  if (s->mem.realloc)
    return s->mem.realloc(s->mem.ctx, p, n);
  return realloc(p, n);
}

void store_svc_free(store_svc *s, void *p) {
  if (!p)
    return;
  if (s->mem.free)
    s->mem.free(s->mem.ctx, p);
  else
    free(p);
}

/* Makes room for one more element in *arr (count n, capacity *cap) up to
 * limit.  0 or DHT_ERR_FULL / DHT_ERR_NOMEM. */
int store_svc_grow(store_svc *s, void **arr, int n, int *cap, size_t elem, int limit) {
  if (n < *cap)
    return 0;
  if (n >= limit)
    return DHT_ERR_FULL;
  int nc = *cap ? *cap * 2 : 4;
  if (nc > limit)
    nc = limit;
  void *na = store_svc_realloc(s, *arr, (size_t)nc * elem);
  if (!na)
    return DHT_ERR_NOMEM;
  *arr = na;
  *cap = nc;
  return 0;
}

void store_svc_rand(store_svc *s, void *buf, size_t n) {
  s->cb.rand(s->cb.ctx, buf, n);
}

uint32_t store_svc_txid(store_svc *s) {
  return dht_svc_txid(s->e);
}

int64_t store_svc_unix_s(const store_svc *s, dht_ts now) {
  return dht_unix_ms(s->e, now) / 1000;
}

uint32_t store_svc_epoch(const store_svc *s, dht_ts now) {
  return store_epoch_of(dht_unix_ms(s->e, now), s->set.epoch_ms);
}

static dht_ts min_ts(dht_ts a, dht_ts b) {
  return a < b ? a : b;
}

/* ---- events -------------------------------------------------------- */

store_event *store_svc_event(store_svc *s, int type, int64_t cmd, int status) {
  if (s->evhead > 0 && s->evhead == s->nevs)
    s->evhead = s->nevs = 0;
  if (s->nevs - s->evhead >= s->set.max_events)
    return NULL;
  if (s->nevs == s->capevs && s->evhead > 0) {
    memmove(s->evs, s->evs + s->evhead, (size_t)(s->nevs - s->evhead) * sizeof *s->evs);
    s->nevs -= s->evhead;
    s->evhead = 0;
  }
  if (store_svc_grow(s, (void **)&s->evs, s->nevs, &s->capevs, sizeof *s->evs, s->set.max_events))
    return NULL;
  store_event *ev = &s->evs[s->nevs++];
  memset(ev, 0, sizeof *ev);
  ev->type = type;
  ev->cmd = cmd;
  ev->status = status;
  return ev;
}

int store_poll_event(store_svc *s, store_event *ev) {
  if (s->evhead >= s->nevs)
    return DHT_ERR_NOTFOUND;
  *ev = s->evs[s->evhead++];
  if (s->evhead == s->nevs)
    s->evhead = s->nevs = 0;
  return 0;
}

/* ---- requests: the service's own table ----------------------------- */

int store_svc_send(store_svc *s, const dht_peer *to, const uint8_t *body, size_t len) {
  return dht_svc_send(s->e, to, NULL, body, len);
}

int store_svc_rpc_start(store_svc *s, const dht_peer *to, const uint8_t *body, size_t len,
                        uint32_t txid, uint8_t type, int owner, uint32_t oid, int aux, int tries,
                        dht_ts timeout, dht_ts now) {
  (void)txid; /* in the body, where the engine reads it */
  if (dht_svc_pending(s->e, s->svc_id) >= s->set.max_pending_rpcs)
    return DHT_ERR_FULL;
  dht_req_opts o = {.answer = store_wire_answer_type(type),
                    .tries = tries,
                    .timeout_ms = timeout,
                    .tag = RPC_TAG(owner, oid),
                    .aux = aux};
  return dht_svc_request(s->e, s->svc_id, to, body, len, &o, now);
}

void store_svc_rpc_drop_owner(store_svc *s, int owner, uint32_t oid) {
  dht_svc_cancel(s->e, s->svc_id, RPC_TAG(owner, oid));
}

/* An answer's owner moves on as if the answer never came: a request that
 * ran out of tries, or whose answer was malformed. */
static void rpc_timeout(store_svc *s, const rpc *rq, dht_ts now) {
  if (rq->owner == O_OUT) {
    int oi = store_outbox_find(s, rq->oid);
    if (oi < 0)
      return;
    sendq *o = &s->outs[oi];
    if (rq->type == STORE_T_DIRECT) {
      if (--o->direct_left <= 0) {
        o->phase = P_LOOKUP;
        o->lookup = store_svc_lookup(s, o->k.id, false, now);
        if (o->lookup < 0) {
          o->phase = P_WAIT;
          o->retry_at = now + o->backoff;
        }
      }
    } else if (rq->type == STORE_T_DEPOSIT) {
      o->answered++;
      if (o->answered >= o->asked)
        store_outbox_deposit_done(s, oi, now);
    }
  } else if (rq->owner == O_JOB) {
    int ji = store_fetch_job_find(s, rq->oid);
    if (ji < 0)
      return;
    job *j = &s->jobs[ji];
    if (rq->type == STORE_T_GETITEM) {
      j->inflight--;
      j->items[rq->aux].state = 0; /* another holder */
    } else {
      j->rep_pending--;
    }
    store_fetch_job_step(s, j, now);
    store_fetch_jobs_run(s, now);
  } else if (rq->owner == O_RECON) {
    int ri = store_recon_find(s, rq->oid);
    if (ri >= 0)
      store_recon_end(s, ri);
  }
}

static rpc rpc_of(const dht_req *req) {
  rpc rq;
  memset(&rq, 0, sizeof rq);
  rq.txid = req->txid;
  rq.type = req->type;
  rq.owner = (uint8_t)(req->tag >> 32);
  rq.oid = (uint32_t)req->tag;
  rq.aux = req->aux;
  rq.to = req->to;
  return rq;
}

/* An answer to one of our requests (the engine matched its type, txid and
 * key).  Its shape is checked (strictly, by the codec) only now, so an
 * answer to nothing counts as drop_unknown_txid whatever it holds (on_msg);
 * a malformed answer to a request is dropped, counted, and treated like no
 * answer at all (never half-applied). */
static void on_answer(void *ctx, dht *e, const dht_req *req, const dht_msg_in *in, dht_ts now) {
  store_svc *s = ctx;
  (void)e;
  rpc rq = rpc_of(req);
  uint8_t type = in->type;
  const uint8_t *body = in->body;
  size_t len = in->len;
  store_wire_msg m;
  if (store_wire_decode(&m, body, len)) {
    s->st.drop_malformed++;
    rpc_timeout(s, &rq, now); /* as if it never came: the owner moves on */
    return;
  }
  if (rq.owner == O_OUT) {
    int oi = store_outbox_find(s, rq.oid);
    if (oi < 0)
      return;
    sendq *o = &s->outs[oi];
    if (type == STORE_T_RECEIPT) {
      store_outbox_on_receipt(s, oi, &rq, &m, now);
    } else if (type == STORE_T_DIRECT_ACK) {
      o->direct_left--;
      if (m.u.direct_ack.status == STORE_W_OK) {
        s->st.sent_direct++;
        store_outbox_event(s, o, STORE_ST_DELIVERED, 0);
        store_outbox_remove(s, oi);
      } else if (o->direct_left <= 0) {
        o->phase = P_LOOKUP;
        o->lookup = store_svc_lookup(s, o->k.id, false, now);
      }
    }
  } else if (rq.owner == O_JOB) {
    int ji = store_fetch_job_find(s, rq.oid);
    if (ji < 0)
      return;
    job *j = &s->jobs[ji];
    if (type == STORE_T_LIST) {
      store_fetch_on_list(s, j, rq.aux, &m, now);
    } else if (type == STORE_T_ITEM) {
      store_fetch_on_item(s, j, rq.aux, &m, now);
    } else if (type == STORE_T_ACK) {
      j->rep_pending--;
    }
    j = &s->jobs[ji];
    store_fetch_job_step(s, j, now);
    store_fetch_jobs_run(s, now);
  } else if (rq.owner == O_RECON) {
    int ri = store_recon_find(s, rq.oid);
    if (ri < 0)
      return;
    if (type == STORE_T_RECON_R)
      store_recon_on_buckets(s, ri, &m, now);
    else if (type == STORE_T_RECON_LR)
      store_recon_on_want(s, ri, &m, now);
  }
}

/* ---- answers that carry only a status ---------------------------- */

/* Sends an answer that carries only a status (a refusal, or an ACK):
 * every other field empty or zero, as the layout of its type allows. */
void store_svc_reply_status(store_svc *s, const dht_peer *to, uint8_t type, uint32_t txid,
                            uint64_t status) {
  static const uint8_t zero[STORE_HASH_LEN] = {0};
  uint8_t buf[64];
  store_wire_msg m;
  memset(&m, 0, sizeof m);
  m.type = type;
  m.txid = txid;
  switch (type) {
  case STORE_T_DIRECT_ACK:
    m.u.direct_ack.status = (uint8_t)status;
    break;
  case STORE_T_ACK:
    m.u.ack.status = (uint8_t)status;
    break;
  case STORE_T_RECEIPT: /* the hash field is fixed-size: zeros */
    m.u.receipt.status = (uint8_t)status;
    m.u.receipt.hash = zero;
    break;
  case STORE_T_LIST:
    m.u.list.status = (uint8_t)status;
    break;
  case STORE_T_ITEM:
    m.u.item.status = (uint8_t)status;
    break;
  case STORE_T_RECON_R:
    m.u.recon_r.status = (uint8_t)status;
    break;
  default: /* STORE_T_RECON_LR */
    m.u.recon_lr.status = (uint8_t)status;
    break;
  }
  dht_ssize n = store_wire_encode(buf, sizeof buf, &m);
  if (n > 0)
    store_svc_send(s, to, buf, (size_t)n);
}

/* ---- friends ------------------------------------------------------- */

const store_friend *store_svc_friend_find(const store_svc *s, const uint8_t pk[DHT_PK_LEN]) {
  for (int i = 0; i < s->nfriends; i++)
    if (!memcmp(s->friends[i].pk, pk, DHT_PK_LEN))
      return &s->friends[i];
  return NULL;
}

/* ---- dispatch ------------------------------------------------------ */

static void on_timeout(void *ctx, dht *e, const dht_req *req, bool soft, dht_ts now) {
  store_svc *s = ctx;
  (void)e;
  if (soft)
    return; /* none of ours asks for a soft timeout */
  rpc rq = rpc_of(req);
  rpc_timeout(s, &rq, now);
}

static void on_msg(void *ctx, dht *e, const dht_msg_in *in, dht_ts now) {
  store_svc *s = ctx;
  (void)e;
  const dht_peer *from = &in->from;
  const uint8_t *body = in->body;
  size_t len = in->len;
  uint8_t type;
  uint32_t txid;
  if (store_wire_head(body, len, &type, &txid)) {
    s->st.drop_malformed++;
    return;
  }
  if (!store_wire_answer_type(type)) {
    /* an answer the engine matched to none of our outstanding requests */
    s->st.drop_unknown_txid++;
    return;
  }
  store_wire_msg m;
  if (store_wire_decode(&m, body, len)) {
    s->st.drop_malformed++;
    return;
  }
  switch (type) {
  case STORE_T_DEPOSIT:
    store_serve_deposit(s, from, &m, now);
    break;
  case STORE_T_FETCH:
    store_serve_fetch(s, from, &m, now);
    break;
  case STORE_T_GETITEM:
    store_serve_getitem(s, from, &m, now);
    break;
  case STORE_T_DELETE:
    store_serve_delete(s, from, &m, now);
    break;
  case STORE_T_RECON:
    store_recon_on_recon(s, from, &m);
    break;
  case STORE_T_RECON_L:
    store_recon_on_list(s, from, &m, now);
    break;
  case STORE_T_TOMB:
    store_serve_tomb(s, from, &m);
    break;
  case STORE_T_DIRECT:
    store_fetch_on_direct(s, from, &m, now);
    break;
  default: /* STORE_T_REGISTER */
    store_serve_register(s, from, &m);
    break;
  }
}

int64_t store_svc_lookup(store_svc *s, const uint8_t target[static DHT_ID_LEN], bool get,
                         dht_ts now) {
  int64_t cmd = get ? dht_get_record(s->e, target, now) : dht_find_node(s->e, target, now);
  if (cmd > 0 && dht_svc_own(s->e, s->svc_id, cmd) != 0) {
    /* cannot happen (the command was just issued), but a lookup whose result
     * went elsewhere would leave its owner waiting: give it up */
    dht_cancel(s->e, cmd);
    return DHT_ERR_INTERNAL;
  }
  return cmd;
}

/* The results of our own lookups (store_svc_lookup); unsolicited events
 * are not ours. */
static bool on_event(void *ctx, dht *e, const dht_event *ev, dht_ts now) {
  store_svc *s = ctx;
  (void)e;
  if (ev->type != DHT_EV_LOOKUP || ev->cmd <= 0)
    return false;
  for (int i = 0; i < s->nouts; i++) {
    sendq *o = &s->outs[i];
    if (o->lookup != ev->cmd)
      continue;
    o->lookup = 0;
    const dht_lookup_result *res = ev->u.lookup;
    if (o->phase == P_RECORD) {
      if (ev->status == 0 && res && res->has_record &&
          (res->record.naddrs > 0 || res->record.nintro > 0)) {
        store_outbox_direct(s, o, &res->record, now);
      } else {
        o->phase = P_LOOKUP;
        o->lookup = store_svc_lookup(s, o->k.id, false, now);
      }
      if (o->lookup < 0) {
        o->phase = P_WAIT;
        o->retry_at = now + o->backoff;
      }
    } else if (o->phase == P_LOOKUP) {
      store_outbox_deposit(s, o, res, now);
    }
    return true;
  }
  for (int i = 0; i < s->njobs; i++) {
    job *j = &s->jobs[i];
    if (j->lookup != ev->cmd)
      continue;
    store_fetch_lookup_done(s, j, ev->status == DHT_ERR_CANCELLED ? NULL : ev->u.lookup, now);
    store_fetch_job_step(s, j, now);
    store_fetch_jobs_run(s, now);
    return true;
  }
  return false;
}

/* ---- timers and expiry --------------------------------------------- */

/* Expiry: items past their TTL go; an unread item leaves a notice. */
static void expire_tick(store_svc *s, dht_ts now) {
  int64_t t = store_svc_unix_s(s, now);
  int round;
  for (round = 0; round < EXPIRE_PER_TICK; round++) {
    int n = s->be.scan_expired(s->be.ctx, t, &s->rec, 1);
    if (n <= 0)
      break;
    store_rec *r = &s->rec;
    s->be.del(s->be.ctx, r->mbox, r->hash);
    s->st.expired++;
    if (r->kind == STORE_REC_ITEM) {
      /* never silence: the owner finds a notice where the item was */
      r->kind = STORE_REC_EVICTED;
      r->len = 0;
      r->expires_s = t + s->set.ttl_dht_s;
      s->be.put(s->be.ctx, r);
      s->st.evicted++;
    }
  }
  /* more due: come back soon, in slices that keep each timer run short */
  s->next_expire = now + (round == EXPIRE_PER_TICK ? 1000 : 60000);
}

static dht_ts get_expiry(void *ctx) {
  store_svc *s = ctx;
  dht_ts t = min_ts(s->next_poll, min_ts(s->next_recon, s->next_expire));
  t = min_ts(t, s->next_register);
  for (int i = 0; i < s->nouts; i++)
    if (s->outs[i].phase == P_WAIT || s->outs[i].phase == P_PATH)
      t = min_ts(t, s->outs[i].retry_at);
  return t;
}

static void handle_expiry(void *ctx, dht *e, dht_ts now) {
  store_svc *s = ctx;
  (void)e;
  for (int i = 0; i < s->nouts; i++) {
    if (s->outs[i].phase == P_WAIT && s->outs[i].retry_at <= now) {
      s->outs[i].stored_reported = false;
      store_outbox_begin(s, &s->outs[i], now);
    } else if (s->outs[i].phase == P_PATH && s->outs[i].retry_at <= now) {
      store_outbox_no_path(s, &s->outs[i], now); /* no path in time: the mailbox */
    }
  }
  if (s->next_expire <= now) {
    expire_tick(s, now);
    store_recon_neighbourhood(s, now);
  }
  if (s->next_recon <= now)
    store_recon_tick(s, now);
  if (s->next_register <= now)
    store_fetch_register_tick(s, now);
  if (s->next_poll <= now) {
    if (s->round_cmd == 0)
      store_fetch(s, now); /* sets next_poll */
    else                   /* a round is still running: look again later */
      s->next_poll = now + (s->set.poll_interval_ms > 0 ? s->set.poll_interval_ms : 60000);
  }
}

/* ---- the public face ----------------------------------------------- */

void store_settings_default(store_settings *s) {
  memset(s, 0, sizeof *s);
  s->replicas = 5;
  s->replica_margin = 3;
  s->stored_receipts = 3;
  s->epoch_ms = STORE_EPOCH_MS_DEFAULT;
  s->ttl_dht_s = 7 * 86400;
  s->ttl_hosted_s = 30 * 86400;
  s->mbox_quota_bytes = 64 * 1024;
  s->mbox_quota_items = 64;
  s->capacity_bytes = 64 * 1024 * 1024;
  s->time_window_s = 300;
  s->rpc_timeout_ms = 0;
  s->rpc_tries = 3;
  s->direct_timeout_ms = 1000;
  s->path_wait_ms = 10000;
  s->retry_min_ms = 30000;
  s->retry_max_ms = 600000;
  s->poll_interval_ms = 300000;
  s->reconcile_interval_ms = 600000;
  s->max_friends = 1024;
  s->max_hosted = 64;
  s->max_outgoing = 1024;
  s->max_pending_rpcs = 1024;
  s->max_grants = 1024;
  s->max_events = 1024;
  s->max_fetch_epochs = 30;
}

static bool settings_ok(const store_settings *s) {
  return s->replicas >= 1 && s->replicas <= 8 && s->replica_margin >= 0 &&
         s->replica_margin <= 16 && s->stored_receipts >= 1 && s->stored_receipts <= s->replicas &&
         s->epoch_ms >= 1000 && s->ttl_dht_s > 0 && s->ttl_hosted_s > 0 &&
         s->mbox_quota_bytes >= STORE_ITEM_MAX && s->mbox_quota_items >= 1 &&
         s->capacity_bytes >= 0 && s->time_window_s > 0 && s->rpc_timeout_ms >= 0 &&
         s->rpc_tries >= 1 && s->rpc_tries <= 8 && s->direct_timeout_ms > 0 &&
         s->path_wait_ms >= 0 && s->retry_min_ms > 0 && s->retry_max_ms >= s->retry_min_ms &&
         s->poll_interval_ms >= 0 && s->reconcile_interval_ms > 0 && s->max_friends >= 1 &&
         s->max_hosted >= 0 && s->max_outgoing >= 1 && s->max_pending_rpcs >= 8 &&
         s->max_grants >= 1 && s->max_events >= 4 && s->max_fetch_epochs >= 1;
}

int store_svc_new(store_svc **out, dht *e, const dht_identity *id, const store_backend *backend,
                  const store_settings *set, const dht_callbacks *cb, const dht_mem *mem,
                  dht_ts now) {
  if (!out || !e || !id || !backend || !cb || !cb->rand || memcmp(id->pk, dht_self_pk(e), 32))
    return DHT_ERR_INVAL;
  store_settings def;
  if (!set) {
    store_settings_default(&def);
    set = &def;
  }
  if (!settings_ok(set))
    return DHT_ERR_INVAL;
  store_svc *s = mem && mem->malloc ? mem->malloc(mem->ctx, sizeof *s) : malloc(sizeof *s);
  if (!s)
    return DHT_ERR_NOMEM;
  memset(s, 0, sizeof *s);
  s->e = e;
  s->self = *id;
  memcpy(s->self_id, dht_self_id(e), DHT_ID_LEN);
  s->be = *backend;
  s->set = *set;
  s->cb = *cb;
  if (mem)
    s->mem = *mem;
  /* spread periodic work so that hosts started together do not beat in step */
  uint32_t j;
  store_svc_rand(s, &j, sizeof j);
  s->next_expire = now + 60000;
  s->next_recon = now + (dht_ts)(j % (uint32_t)s->set.reconcile_interval_ms);
  s->next_register = now + 5000;
  s->next_poll = s->set.poll_interval_ms > 0 ? now + 3000 : DHT_TS_NEVER;
  dht_service svc = {.type_lo = STORE_MSG_LO,
                     .type_hi = STORE_MSG_HI,
                     .ctx = s,
                     .on_msg = on_msg,
                     .on_answer = on_answer,
                     .on_timeout = on_timeout,
                     .on_event = on_event,
                     .get_expiry = get_expiry,
                     .handle_expiry = handle_expiry};
  int rc = dht_service_add(e, &svc);
  s->svc_id = rc;
  if (rc < 0) {
    if (mem && mem->free)
      mem->free(mem->ctx, s);
    else
      free(s);
    return rc;
  }
  *out = s;
  return 0;
}

void store_svc_del(store_svc *s) {
  if (!s)
    return;
  dht_service_remove(s->e, s->svc_id);
  if (s->outs)
    sodium_memzero(s->outs, (size_t)s->capouts * sizeof *s->outs);
  store_svc_free(s, s->outs);
  if (s->jobs)
    sodium_memzero(s->jobs, (size_t)s->capjobs * sizeof *s->jobs);
  store_svc_free(s, s->jobs);
  store_svc_free(s, s->grants);
  store_svc_free(s, s->waits);
  store_svc_free(s, s->friends);
  for (int i = 0; i < s->nhosts; i++)
    store_svc_free(s, s->hosts[i].ids);
  store_svc_free(s, s->hosts);
  store_svc_free(s, s->recons);
  store_svc_free(s, s->evs);
  if (s->be.close)
    s->be.close(s->be.ctx);
  sodium_memzero(&s->self, sizeof s->self);
  dht_mem m = s->mem;
  if (m.free)
    m.free(m.ctx, s);
  else
    free(s);
}

int store_friend_set(store_svc *s, const store_friend *f, dht_ts now) {
  (void)now;
  if (!f || f->nhosts < 0 || f->nhosts > STORE_MAX_HOSTS || !memcmp(f->pk, s->self.pk, 32))
    return DHT_ERR_INVAL;
  for (int i = 0; i < s->nfriends; i++)
    if (!memcmp(s->friends[i].pk, f->pk, DHT_PK_LEN)) {
      s->friends[i] = *f;
      return 0;
    }
  int rc = store_svc_grow(s, (void **)&s->friends, s->nfriends, &s->capfriends, sizeof *s->friends,
                          s->set.max_friends);
  if (rc)
    return rc;
  s->friends[s->nfriends++] = *f;
  s->next_register = now; /* hosts learn the new friend's mailboxes */
  return 0;
}

int store_friend_remove(store_svc *s, const uint8_t pk[static DHT_PK_LEN]) {
  for (int i = 0; i < s->nfriends; i++)
    if (!memcmp(s->friends[i].pk, pk, DHT_PK_LEN)) {
      memmove(&s->friends[i], &s->friends[i + 1],
              (size_t)(s->nfriends - i - 1) * sizeof *s->friends);
      s->nfriends--;
      return 0;
    }
  return DHT_ERR_NOTFOUND;
}

void store_get_stats(const store_svc *s, store_stats *st) {
  *st = s->st;
  store_usage u;
  if (s->be.usage(s->be.ctx, NULL, &u) == 0) {
    st->stored_items = u.items;
    st->stored_bytes = u.bytes;
  }
  st->outgoing = s->nouts;
  st->pending_rpcs = dht_svc_pending(s->e, s->svc_id);
  st->friends = s->nfriends;
  st->hosted = s->nhosts;
}

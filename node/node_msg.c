/*
 * node_msg.c - roostd's messaging state, its node_msg: the two databases,
 * the mailbox service on the engine, its batched commits, the pending
 * friend requests, and the service's events applied to roost.db.  The
 * commands that act on this state, and what clients see of the events,
 * live in node_cmd_msg.c, which pulls them through node_msg_poll.  This
 * file knows no daemon: when a commit finishes on the thread pool it calls
 * the owner's wake hook, so the receipts that waited for it go out.
 *
 *   roost.db      (store_appdb) the user's own state: friends, hosts we
 *                 give, outbox, inbox, loss notices.  Written synchronously
 *                 on the loop: small rows, a few per user action.
 *   mailboxes.db  (store_sqlite) what we store for others.  Written through
 *                 the backend's overlay; batches are committed on the libuv
 *                 thread pool (one at a time) and the service is told what
 *                 is durable, so a storage receipt never precedes its fsync.
 *   requests.txt  pending friend requests: "<pk hex> <unix ms> <note hex>"
 *                 lines, rewritten atomically (at most MAX_REQUESTS).
 *
 * Invariants: what was queued in the outbox before a restart is handed to
 * the service again at start (same message ID: the recipient drops
 * duplicates).  At shutdown the batch in flight finishes and the rest is
 * committed before the files close.  The service is deleted before the
 * databases it writes to are closed, and it owns mailboxes.db's backend
 * from store_svc_new on.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node_msg.h"
#include "node_proto.h"

static int64_t unix_ms(void) {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int unhex(const char *s, size_t n, uint8_t *out) {
  for (size_t i = 0; i < n; i++) {
    int v = 0;
    for (int k = 0; k < 2; k++) {
      char ch = s[2 * i + (size_t)k];
      int x = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
      if (x < 0)
        return -1;
      v = v << 4 | x;
    }
    out[i] = (uint8_t)v;
  }
  return 0;
}

/* ---- opening, starting, closing --------------------------------------- */

int node_msg_open(node_msg *m, const char *data_dir, char *err, size_t errlen) {
  char path[PATH_MAX + 32], why[512] = "";
  snprintf(path, sizeof path, "%s/roost.db", data_dir);
  int rv = store_appdb_open(&m->app, path, why, sizeof why);
  if (rv) {
    m->app = NULL;
    if (why[0]) /* the adapter's message names the file and says it is left alone */
      snprintf(err, errlen, "%s", why);
    else
      snprintf(err, errlen, "cannot open %s (%s); the file is left as it is", path,
               store_strerror(rv));
    return -1;
  }
  snprintf(path, sizeof path, "%s/mailboxes.db", data_dir);
  why[0] = 0;
  rv = store_sqlite_open(&m->mbdb, &m->mbbe, path, why, sizeof why);
  if (rv) {
    m->mbdb = NULL;
    store_appdb_close(m->app);
    m->app = NULL;
    if (why[0]) /* the adapter's message names the file and says it is left alone */
      snprintf(err, errlen, "%s", why);
    else
      snprintf(err, errlen, "cannot open %s (%s); the file is left as it is", path,
               store_strerror(rv));
    return -1;
  }
  if (snprintf(m->req_path, sizeof m->req_path, "%s/requests.txt", data_dir) >=
      (int)sizeof m->req_path)
    m->req_path[0] = 0; /* cannot happen: the data dir was checked shorter */
  return 0;
}

void node_msg_set_wake(node_msg *m, void (*wake)(void *ctx), void *ctx) {
  m->wake = wake;
  m->wake_ctx = ctx;
}

static void requests_load(node_msg *m) {
  uint8_t *buf;
  size_t len;
  int rv = node_read_file(m->req_path, &buf, &len, 1 << 20);
  if (rv == -ENOENT)
    return;
  if (rv) {
    NLOG(NODE_LOG_WARN, "msg", "cannot read %s: %s", m->req_path, strerror(-rv));
    return;
  }
  buf[len] = 0;
  char *save = NULL;
  for (char *line = strtok_r((char *)buf, "\n", &save); line && m->nreqs < MAX_REQUESTS;
       line = strtok_r(NULL, "\n", &save)) {
    friend_req *r = &m->reqs[m->nreqs];
    char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || sp1 - line != 2 * DHT_PK_LEN)
      continue;
    size_t nl = strlen(sp2 + 1);
    if (nl % 2 || nl / 2 > STORE_NOTE_MAX || unhex(line, DHT_PK_LEN, r->pk) ||
        unhex(sp2 + 1, nl / 2, r->note))
      continue;
    r->unix_ms = strtoll(sp1 + 1, NULL, 10);
    r->len = (uint16_t)(nl / 2);
    m->nreqs++;
  }
  free(buf);
}

/* Rewrites requests.txt from the pending friend requests. */
static void requests_save(node_msg *m) {
  size_t cap = (size_t)MAX_REQUESTS * (2 * DHT_PK_LEN + 24 + 2 * STORE_NOTE_MAX + 2), n = 0;
  char *buf = malloc(cap);
  if (!buf)
    return;
  for (int i = 0; i < m->nreqs; i++) {
    const friend_req *r = &m->reqs[i];
    node_proto_hex(r->pk, DHT_PK_LEN, buf + n);
    n += 2 * DHT_PK_LEN;
    n += (size_t)snprintf(buf + n, cap - n, " %lld ", (long long)r->unix_ms);
    node_proto_hex(r->note, r->len, buf + n);
    n += 2 * (size_t)r->len;
    buf[n++] = '\n';
  }
  int rv = node_write_atomic(m->req_path, buf, n, 0600);
  if (rv)
    NLOG(NODE_LOG_WARN, "msg", "cannot save %s: %s", m->req_path, strerror(-rv));
  free(buf);
}

static void settings_from_config(store_settings *s, const node_config *c) {
  store_settings_default(s);
  s->capacity_bytes = c->mbox_capacity;
  s->mbox_quota_bytes = c->mbox_quota;
  s->mbox_quota_items = c->mbox_quota_items;
  s->poll_interval_ms = (dht_ts)c->poll_interval_s * 1000;
  s->ttl_dht_s = (int64_t)c->ttl_days * 86400;
  s->ttl_hosted_s = (int64_t)c->hosted_ttl_days * 86400;
  s->retry_max_ms = (dht_ts)c->retry_max_s * 1000;
  if (s->retry_min_ms > s->retry_max_ms)
    s->retry_min_ms = s->retry_max_ms;
}

void node_msg_start(node_msg *m, uv_loop_t *loop, dht *e, const dht_identity *ident,
                    const node_config *cfg, const dht_callbacks *cb) {
  m->loop = loop;
  dht_ts now = (dht_ts)uv_now(m->loop);
  settings_from_config(&m->sset, cfg);
  requests_load(m);
  int rv = store_svc_new(&m->svc, e, ident, &m->mbbe, &m->sset, cb, NULL, now);
  if (rv) {
    m->svc = NULL;
    NLOG(NODE_LOG_ERROR, "msg",
         "the mailbox service did not start (%s): sending and fetching messages will fail",
         store_strerror(rv));
    return;
  }
  /* the service owns the backend now (it closes it in store_svc_del) */
  int max = m->sset.max_friends > 0 ? m->sset.max_friends : 1;
  store_friend_row *fr = calloc((size_t)max, sizeof *fr);
  int nf = fr ? store_appdb_friend_list(m->app, fr, max) : 0;
  for (int i = 0; i < nf; i++)
    if ((rv = store_friend_set(m->svc, &fr[i].f, now)) != 0)
      NLOG(NODE_LOG_WARN, "msg", "friend %s not loaded: %s", fr[i].name, store_strerror(rv));
  free(fr);
  store_hosted_row hr[256];
  int nh = store_appdb_hosted_list(m->app, hr, 256);
  for (int i = 0; i < nh; i++)
    store_host_set(m->svc, hr[i].pk, hr[i].quota_bytes);
  if (cfg->nmy_hosts > 0) {
    store_host_ref refs[STORE_MAX_HOSTS];
    for (int i = 0; i < cfg->nmy_hosts; i++) {
      memcpy(refs[i].pk, cfg->my_hosts[i].pk, DHT_PK_LEN);
      refs[i].addr = cfg->my_hosts[i].addr;
    }
    store_my_hosts_set(m->svc, refs, cfg->nmy_hosts, now);
  }
  /* the outbox is durable: what was queued before a restart goes out again */
  max = m->sset.max_outgoing > 0 ? m->sset.max_outgoing : 1;
  store_out_row *orow = calloc((size_t)max, sizeof *orow);
  int no = orow ? store_appdb_out_list(m->app, STORE_ST_STORED, orow, max) : 0;
  int resent = 0;
  for (int i = 0; i < no; i++) {
    int64_t id = store_send(m->svc, orow[i].to_pk, &orow[i].msg, now);
    if (id > 0)
      resent++;
    else
      NLOG(NODE_LOG_WARN, "msg", "a queued message was not re-sent: %s", store_strerror((int)id));
  }
  free(orow);
  NLOG(NODE_LOG_INFO, "msg", "mailbox service started: %d friends, %d hosted, %d queued re-sent",
       nf, nh, resent);
}

/* Commits everything pending, synchronously (at shutdown only). */
static void commit_all_now(node_msg *m) {
  for (int i = 0; i < 16 && m->mbdb && store_sqlite_commit_begin(m->mbdb); i++) {
    int rv = store_sqlite_commit_run(m->mbdb);
    int64_t seq = store_sqlite_commit_end(m->mbdb);
    if (rv) {
      NLOG(NODE_LOG_ERROR, "data", "final commit of mailboxes.db failed: %s", store_strerror(rv));
      break;
    }
    if (m->svc) /* a service exists only after node_msg_start set the loop */
      store_svc_durable(m->svc, seq, (dht_ts)uv_now(m->loop));
  }
}

void node_msg_close(node_msg *m) {
  /* uv_run has returned: no batch is in flight any more */
  commit_all_now(m);
  if (m->svc)
    store_svc_del(m->svc); /* closes the backend: it commits what is left */
  else if (m->mbdb)
    m->mbbe.close(m->mbbe.ctx);
  m->svc = NULL;
  m->mbdb = NULL;
  store_appdb_close(m->app);
  m->app = NULL;
}

/* ---- batched commits of mailboxes.db ---------------------------------- */

static void commit_run(uv_work_t *w) {
  node_msg *m = w->data;
  m->commit_rv = store_sqlite_commit_run(m->mbdb);
}

static void commit_after(uv_work_t *w, int status) {
  node_msg *m = w->data;
  m->commit_busy = false;
  int64_t seq = store_sqlite_commit_end(m->mbdb);
  uint64_t now = uv_now(m->loop);
  if (status != 0 || m->commit_rv != 0) {
    m->commit_failures++;
    m->commit_retry_at = now + 1000;
    NLOG(NODE_LOG_WARN, "data", "commit of mailboxes.db failed (%s); retrying",
         status ? uv_strerror(status) : store_strerror(m->commit_rv));
  } else {
    m->commits++;
  }
  if (m->svc)
    store_svc_durable(m->svc, seq, (dht_ts)now);
  /* receipts that waited for this go out; the owner's pump starts the next
   * batch */
  if (m->wake)
    m->wake(m->wake_ctx);
}

void node_msg_flush(node_msg *m) {
  /* no service, no loop: nothing was written through the overlay yet */
  if (!m->mbdb || !m->loop || m->commit_busy || uv_now(m->loop) < m->commit_retry_at)
    return;
  if (!store_sqlite_commit_begin(m->mbdb))
    return;
  m->commit_busy = true;
  m->commit_work.data = m;
  int rv = uv_queue_work(m->loop, &m->commit_work, commit_run, commit_after);
  if (rv) {
    /* the batch goes back to pending (commit_end without a run) */
    m->commit_busy = false;
    store_sqlite_commit_end(m->mbdb);
    m->commit_retry_at = uv_now(m->loop) + 1000;
    NLOG(NODE_LOG_WARN, "data", "cannot queue a commit: %s", uv_strerror(rv));
  }
}

/* A friend request: kept (one per sender, the newest note; the oldest
 * goes when full) unless they are a friend already. */
static void on_request(node_msg *m, const store_event *ev) {
  store_friend_row row;
  if (store_appdb_friend_get(m->app, NULL, ev->u.request.from_pk, &row) == 0)
    return; /* already a friend: nothing to accept */
  int i = 0;
  while (i < m->nreqs && memcmp(m->reqs[i].pk, ev->u.request.from_pk, DHT_PK_LEN) != 0)
    i++;
  if (i == m->nreqs) {
    if (m->nreqs == MAX_REQUESTS) { /* the oldest goes */
      memmove(m->reqs, m->reqs + 1, (MAX_REQUESTS - 1) * sizeof m->reqs[0]);
      m->nreqs--;
    }
    i = m->nreqs++;
  }
  friend_req *r = &m->reqs[i];
  memcpy(r->pk, ev->u.request.from_pk, DHT_PK_LEN);
  r->unix_ms = unix_ms();
  r->len = ev->u.request.len > STORE_NOTE_MAX ? STORE_NOTE_MAX : ev->u.request.len;
  memcpy(r->note, ev->u.request.note, r->len);
  requests_save(m);
  char idt[NODE_IDTEXT_LEN + 1];
  node_idtext_encode(r->pk, idt);
  NLOG(NODE_LOG_INFO, "msg", "friend request from %.8s (roost friend requests)", idt);
}

/* A fetch round ended: every friend is fetched up to its epoch. */
static void on_fetched(node_msg *m, const store_event *ev) {
  int max = m->sset.max_friends > 0 ? m->sset.max_friends : 1;
  store_friend_row *fr = calloc((size_t)max, sizeof *fr);
  int nf = fr ? store_appdb_friend_list(m->app, fr, max) : 0;
  for (int i = 0; i < nf; i++)
    if (fr[i].f.fetched_epoch < ev->u.fetched.epoch)
      store_appdb_friend_set_fetched(m->app, fr[i].f.pk, ev->u.fetched.epoch);
  free(fr);
}

int node_msg_poll(node_msg *m, node_msg_event *out) {
  if (!m->svc || store_poll_event(m->svc, &out->ev) != 0)
    return -1;
  const store_event *ev = &out->ev;
  int64_t now = unix_ms();
  out->type = NODE_MSG_EV_NONE;
  switch (ev->type) {
  case STORE_EV_STATE: {
    int rv = store_appdb_out_update(m->app, ev->u.state.msg_id, ev->u.state.state,
                                    ev->u.state.receipts, ev->u.state.reason, now);
    if (rv && rv != DHT_ERR_NOTFOUND && rv != DHT_ERR_STALE)
      NLOG(NODE_LOG_WARN, "msg", "outbox update failed: %s", store_strerror(rv));
    break;
  }
  case STORE_EV_MESSAGE: {
    store_in_row *r = &out->in;
    memset(r, 0, sizeof *r);
    r->msg = ev->u.message.msg;
    memcpy(r->from_pk, ev->u.message.friend_pk, DHT_PK_LEN);
    r->received_unix_ms = now;
    r->direct = ev->u.message.direct;
    bool dup = false;
    int rv = store_appdb_in_add(m->app, r, &dup);
    if (rv)
      NLOG(NODE_LOG_ERROR, "msg", "cannot save a received message: %s", store_strerror(rv));
    else if (!dup) /* a duplicate was shown when it first came */
      out->type = NODE_MSG_EV_MESSAGE;
    break;
  }
  case STORE_EV_LOSS:
    store_appdb_loss_add(m->app, ev->u.loss.friend_pk, ev->u.loss.epoch, ev->u.loss.items, now);
    out->type = NODE_MSG_EV_LOSS;
    break;
  case STORE_EV_FETCHED:
    on_fetched(m, ev);
    out->type = NODE_MSG_EV_FETCHED;
    break;
  case STORE_EV_REQUEST:
    on_request(m, ev);
    break;
  case STORE_EV_PATH:
    out->type = NODE_MSG_EV_PATH;
    break;
  default:
    break;
  }
  return 0;
}

/* ---- what the messaging commands use ---------------------------------- */

store_appdb *node_msg_app(node_msg *m) {
  return m->app;
}

store_svc *node_msg_svc(node_msg *m) {
  return m->svc;
}

const store_settings *node_msg_settings(const node_msg *m) {
  return &m->sset;
}

int node_msg_nrequests(const node_msg *m) {
  return m->nreqs;
}

const friend_req *node_msg_request(const node_msg *m, int i) {
  return i >= 0 && i < m->nreqs ? &m->reqs[i] : NULL;
}

int node_msg_request_drop(node_msg *m, const uint8_t pk[DHT_PK_LEN]) {
  for (int i = 0; i < m->nreqs; i++)
    if (!memcmp(m->reqs[i].pk, pk, DHT_PK_LEN)) {
      memmove(m->reqs + i, m->reqs + i + 1, (size_t)(m->nreqs - i - 1) * sizeof m->reqs[0]);
      m->nreqs--;
      requests_save(m);
      return 0;
    }
  return -1;
}

/*
 * node_msg.c - roostd's messaging state: the two databases, the mailbox
 * service on the engine, its batched commits, the pending friend requests,
 * and the draining of the service's events into roost.db.  The commands
 * that act on this state, and what clients see of the events, live in
 * node_cmd_msg.c.
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
 * committed before the files close.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node_cmd.h"

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

int node_msg_open(rd_daemon *d, char *err, size_t errlen) {
  char path[PATH_MAX + 32], why[512] = "";
  snprintf(path, sizeof path, "%s/roost.db", d->cfg.data_dir);
  int rv = store_appdb_open(&d->app, path, why, sizeof why);
  if (rv) {
    d->app = NULL;
    if (why[0]) /* the adapter's message names the file and says it is left alone */
      snprintf(err, errlen, "%s", why);
    else
      snprintf(err, errlen, "cannot open %s (%s); the file is left as it is", path,
               store_strerror(rv));
    return -1;
  }
  snprintf(path, sizeof path, "%s/mailboxes.db", d->cfg.data_dir);
  why[0] = 0;
  rv = store_sqlite_open(&d->mbdb, &d->mbbe, path, why, sizeof why);
  if (rv) {
    d->mbdb = NULL;
    store_appdb_close(d->app);
    d->app = NULL;
    if (why[0]) /* the adapter's message names the file and says it is left alone */
      snprintf(err, errlen, "%s", why);
    else
      snprintf(err, errlen, "cannot open %s (%s); the file is left as it is", path,
               store_strerror(rv));
    return -1;
  }
  if (snprintf(d->req_path, sizeof d->req_path, "%s/requests.txt", d->cfg.data_dir) >=
      (int)sizeof d->req_path)
    d->req_path[0] = 0; /* cannot happen: the data dir was checked shorter */
  return 0;
}

static void requests_load(rd_daemon *d) {
  uint8_t *buf;
  size_t len;
  int rv = node_read_file(d->req_path, &buf, &len, 1 << 20);
  if (rv == -ENOENT)
    return;
  if (rv) {
    NLOG(NODE_LOG_WARN, "msg", "cannot read %s: %s", d->req_path, strerror(-rv));
    return;
  }
  buf[len] = 0;
  char *save = NULL;
  for (char *line = strtok_r((char *)buf, "\n", &save); line && d->nreqs < MAX_REQUESTS;
       line = strtok_r(NULL, "\n", &save)) {
    friend_req *r = &d->reqs[d->nreqs];
    char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || sp1 - line != 2 * DHT_PK_LEN)
      continue;
    size_t nl = strlen(sp2 + 1);
    if (nl % 2 || nl / 2 > STORE_NOTE_MAX || unhex(line, DHT_PK_LEN, r->pk) ||
        unhex(sp2 + 1, nl / 2, r->note))
      continue;
    r->unix_ms = strtoll(sp1 + 1, NULL, 10);
    r->len = (uint16_t)(nl / 2);
    d->nreqs++;
  }
  free(buf);
}

void node_msg_requests_save(rd_daemon *d) {
  size_t cap = (size_t)MAX_REQUESTS * (2 * DHT_PK_LEN + 24 + 2 * STORE_NOTE_MAX + 2), n = 0;
  char *buf = malloc(cap);
  if (!buf)
    return;
  for (int i = 0; i < d->nreqs; i++) {
    const friend_req *r = &d->reqs[i];
    node_proto_hex(r->pk, DHT_PK_LEN, buf + n);
    n += 2 * DHT_PK_LEN;
    n += (size_t)snprintf(buf + n, cap - n, " %lld ", (long long)r->unix_ms);
    node_proto_hex(r->note, r->len, buf + n);
    n += 2 * (size_t)r->len;
    buf[n++] = '\n';
  }
  int rv = node_write_atomic(d->req_path, buf, n, 0600);
  if (rv)
    NLOG(NODE_LOG_WARN, "msg", "cannot save %s: %s", d->req_path, strerror(-rv));
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

void node_msg_start(rd_daemon *d, const dht_callbacks *cb) {
  dht_ts now = (dht_ts)uv_now(&d->loop);
  settings_from_config(&d->sset, &d->cfg);
  requests_load(d);
  int rv = store_svc_new(&d->svc, d->e, &d->ident, &d->mbbe, &d->sset, cb, NULL, now);
  if (rv) {
    d->svc = NULL;
    NLOG(NODE_LOG_ERROR, "msg",
         "the mailbox service did not start (%s): sending and fetching messages will fail",
         store_strerror(rv));
    return;
  }
  /* the service owns the backend now (it closes it in store_svc_del) */
  int max = d->sset.max_friends > 0 ? d->sset.max_friends : 1;
  store_friend_row *fr = calloc((size_t)max, sizeof *fr);
  int nf = fr ? store_appdb_friend_list(d->app, fr, max) : 0;
  for (int i = 0; i < nf; i++)
    if ((rv = store_friend_set(d->svc, &fr[i].f, now)) != 0)
      NLOG(NODE_LOG_WARN, "msg", "friend %s not loaded: %s", fr[i].name, store_strerror(rv));
  free(fr);
  store_hosted_row hr[256];
  int nh = store_appdb_hosted_list(d->app, hr, 256);
  for (int i = 0; i < nh; i++)
    store_host_set(d->svc, hr[i].pk, hr[i].quota_bytes);
  if (d->cfg.nmy_hosts > 0) {
    store_host_ref refs[STORE_MAX_HOSTS];
    for (int i = 0; i < d->cfg.nmy_hosts; i++) {
      memcpy(refs[i].pk, d->cfg.my_hosts[i].pk, DHT_PK_LEN);
      refs[i].addr = d->cfg.my_hosts[i].addr;
    }
    store_my_hosts_set(d->svc, refs, d->cfg.nmy_hosts, now);
  }
  /* the outbox is durable: what was queued before a restart goes out again */
  max = d->sset.max_outgoing > 0 ? d->sset.max_outgoing : 1;
  store_out_row *orow = calloc((size_t)max, sizeof *orow);
  int no = orow ? store_appdb_out_list(d->app, STORE_ST_STORED, orow, max) : 0;
  int resent = 0;
  for (int i = 0; i < no; i++) {
    int64_t id = store_send(d->svc, orow[i].to_pk, &orow[i].msg, now);
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
static void commit_all_now(rd_daemon *d) {
  for (int i = 0; i < 16 && d->mbdb && store_sqlite_commit_begin(d->mbdb); i++) {
    int rv = store_sqlite_commit_run(d->mbdb);
    int64_t seq = store_sqlite_commit_end(d->mbdb);
    if (rv) {
      NLOG(NODE_LOG_ERROR, "data", "final commit of mailboxes.db failed: %s", store_strerror(rv));
      break;
    }
    if (d->svc)
      store_svc_durable(d->svc, seq, (dht_ts)uv_now(&d->loop));
  }
}

void node_msg_close(rd_daemon *d) {
  /* uv_run has returned: no batch is in flight any more */
  commit_all_now(d);
  if (d->svc)
    store_svc_del(d->svc); /* closes the backend: it commits what is left */
  else if (d->mbdb)
    d->mbbe.close(d->mbbe.ctx);
  d->svc = NULL;
  d->mbdb = NULL;
  store_appdb_close(d->app);
  d->app = NULL;
}

/* ---- batched commits of mailboxes.db ---------------------------------- */

static void commit_run(uv_work_t *w) {
  rd_daemon *d = w->data;
  d->commit_rv = store_sqlite_commit_run(d->mbdb);
}

static void commit_after(uv_work_t *w, int status) {
  rd_daemon *d = w->data;
  d->commit_busy = false;
  int64_t seq = store_sqlite_commit_end(d->mbdb);
  uint64_t now = uv_now(&d->loop);
  if (status != 0 || d->commit_rv != 0) {
    d->commit_failures++;
    d->commit_retry_at = now + 1000;
    NLOG(NODE_LOG_WARN, "data", "commit of mailboxes.db failed (%s); retrying",
         status ? uv_strerror(status) : store_strerror(d->commit_rv));
  } else {
    d->commits++;
  }
  if (d->svc)
    store_svc_durable(d->svc, seq, (dht_ts)now);
  /* receipts that waited for this go out; the next batch starts */
  node_daemon_pump(d);
}

void node_msg_commit(rd_daemon *d) {
  if (!d->mbdb || d->commit_busy || d->stopping || uv_now(&d->loop) < d->commit_retry_at)
    return;
  if (!store_sqlite_commit_begin(d->mbdb))
    return;
  d->commit_busy = true;
  d->commit_work.data = d;
  int rv = uv_queue_work(&d->loop, &d->commit_work, commit_run, commit_after);
  if (rv) {
    /* the batch goes back to pending (commit_end without a run) */
    d->commit_busy = false;
    store_sqlite_commit_end(d->mbdb);
    d->commit_retry_at = uv_now(&d->loop) + 1000;
    NLOG(NODE_LOG_WARN, "data", "cannot queue a commit: %s", uv_strerror(rv));
  }
}

static void on_request(rd_daemon *d, const store_event *ev) {
  store_friend_row row;
  if (store_appdb_friend_get(d->app, NULL, ev->u.request.from_pk, &row) == 0)
    return; /* already a friend: nothing to accept */
  int i = 0;
  while (i < d->nreqs && memcmp(d->reqs[i].pk, ev->u.request.from_pk, DHT_PK_LEN) != 0)
    i++;
  if (i == d->nreqs) {
    if (d->nreqs == MAX_REQUESTS) { /* the oldest goes */
      memmove(d->reqs, d->reqs + 1, (MAX_REQUESTS - 1) * sizeof d->reqs[0]);
      d->nreqs--;
    }
    i = d->nreqs++;
  }
  friend_req *r = &d->reqs[i];
  memcpy(r->pk, ev->u.request.from_pk, DHT_PK_LEN);
  r->unix_ms = unix_ms();
  r->len = ev->u.request.len > STORE_NOTE_MAX ? STORE_NOTE_MAX : ev->u.request.len;
  memcpy(r->note, ev->u.request.note, r->len);
  node_msg_requests_save(d);
  char idt[NODE_IDTEXT_LEN + 1];
  node_idtext_encode(r->pk, idt);
  NLOG(NODE_LOG_INFO, "msg", "friend request from %.8s (roost friend requests)", idt);
}

static void on_fetched(rd_daemon *d, const store_event *ev) {
  int max = d->sset.max_friends > 0 ? d->sset.max_friends : 1;
  store_friend_row *fr = calloc((size_t)max, sizeof *fr);
  int nf = fr ? store_appdb_friend_list(d->app, fr, max) : 0;
  for (int i = 0; i < nf; i++)
    if (fr[i].f.fetched_epoch < ev->u.fetched.epoch)
      store_appdb_friend_set_fetched(d->app, fr[i].f.pk, ev->u.fetched.epoch);
  free(fr);
  node_cmd_msg_fetched(d, ev);
}

bool node_msg_drain(rd_daemon *d) {
  if (!d->svc)
    return false;
  bool any = false;
  store_event ev;
  for (int k = 0; k < 4096 && store_poll_event(d->svc, &ev) == 0; k++) {
    any = true;
    int64_t now = unix_ms();
    switch (ev.type) {
    case STORE_EV_STATE: {
      int rv = store_appdb_out_update(d->app, ev.u.state.msg_id, ev.u.state.state,
                                      ev.u.state.receipts, ev.u.state.reason, now);
      if (rv && rv != DHT_ERR_NOTFOUND && rv != DHT_ERR_STALE)
        NLOG(NODE_LOG_WARN, "msg", "outbox update failed: %s", store_strerror(rv));
      break;
    }
    case STORE_EV_MESSAGE: {
      store_in_row r;
      memset(&r, 0, sizeof r);
      r.msg = ev.u.message.msg;
      memcpy(r.from_pk, ev.u.message.friend_pk, DHT_PK_LEN);
      r.received_unix_ms = now;
      r.direct = ev.u.message.direct;
      bool dup = false;
      int rv = store_appdb_in_add(d->app, &r, &dup);
      if (rv)
        NLOG(NODE_LOG_ERROR, "msg", "cannot save a received message: %s", store_strerror(rv));
      else if (!dup)
        node_cmd_msg_notify(d, &r, NULL);
      break;
    }
    case STORE_EV_LOSS:
      store_appdb_loss_add(d->app, ev.u.loss.friend_pk, ev.u.loss.epoch, ev.u.loss.items, now);
      node_cmd_msg_notify(d, NULL, &ev);
      break;
    case STORE_EV_FETCHED:
      on_fetched(d, &ev);
      break;
    case STORE_EV_REQUEST:
      on_request(d, &ev);
      break;
    default:
      break;
    }
  }
  return any;
}

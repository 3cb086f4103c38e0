/*
 * node_cmd_msg.c - roostd's messaging commands of the control protocol
 * (docs/control.md): invite, friend_add, friend_list, friend_remove,
 * friend_requests, friend_accept, send, outbox, inbox (and its follow
 * subscriptions), fetch, host_add, host_list, host_remove and mailbox; and
 * what the clients see of the mailbox service's events: new messages and
 * loss notices pushed to inbox followers, fetch rounds that end a fetch
 * command.  The state they act on (roost.db, the service, the pending friend
 * requests) is node_msg.c's, reached through node_msg.h; this file pulls
 * the service's events from it (node_cmd_msg_drain).  Its own state is
 * node_cmd_msg (node_cmd.h): the inbox followers and the fetch commands
 * waiting for their round.  The daemon's fields are read, and changed only
 * through node_daemon_* (node_daemon.h).
 *
 * Invariants: the outbox row of a message is written before store_send, so
 * a message the user was told is queued survives a crash; clients are
 * named by serial, never by pointer; every command replies exactly once (or
 * leaves a waiter or a follower that will).
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_daemon.h"

#define LIST_MAX 1000 /* messages in one inbox or outbox reply */
#define INVITE_DAYS 7 /* default validity of our invites */

/* Wall-clock milliseconds: message and request times are unix times. */
static int64_t unix_ms(void) {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* The messaging state's parts, lent for the call (node_msg.h). */
static store_appdb *app(rd_daemon *d) {
  return node_msg_app(&d->msg);
}

static store_svc *svc(rd_daemon *d) {
  return node_msg_svc(&d->msg);
}

static const store_settings *sset(rd_daemon *d) {
  return node_msg_settings(&d->msg);
}

static const char *state_name(int s) {
  switch (s) {
  case STORE_ST_QUEUED:
    return "queued";
  case STORE_ST_STORED:
    return "stored";
  case STORE_ST_DELIVERED:
    return "delivered";
  case STORE_ST_READ:
    return "read";
  }
  return "unknown";
}

/* ---- names ------------------------------------------------------------- */

/* The friend named who (a name, else an ID).  0 or -1. */
static int find_friend(rd_daemon *d, const char *who, store_friend_row *row) {
  if (store_appdb_friend_get(app(d), who, NULL, row) == 0)
    return 0;
  uint8_t pk[DHT_PK_LEN];
  if (node_idtext_decode(who, pk) == 0 && store_appdb_friend_get(app(d), NULL, pk, row) == 0)
    return 0;
  return -1;
}

/* Writes "from"/"to" (ID text) and "name" (null when not a friend). */
static void jw_who(rd_daemon *d, node_jw *w, const char *key, const uint8_t pk[DHT_PK_LEN]) {
  char idt[NODE_IDTEXT_LEN + 1];
  node_idtext_encode(pk, idt);
  node_jw_kstr(w, key, idt);
  store_friend_row row;
  node_jw_key(w, "name");
  if (store_appdb_friend_get(app(d), NULL, pk, &row) == 0)
    node_jw_str(w, row.name);
  else
    node_jw_null(w);
}

/* ---- events from the service ------------------------------------------ */

static void jw_in_row(rd_daemon *d, node_jw *w, const store_in_row *r) {
  char mid[2 * STORE_MSGID_LEN + 1];
  node_proto_hex(r->msg.id, STORE_MSGID_LEN, mid);
  node_jw_obj(w);
  node_jw_kint(w, "seq", r->seq);
  node_jw_kstr(w, "msg_id", mid);
  jw_who(d, w, "from", r->from_pk);
  node_jw_kint(w, "sent_unix_ms", r->msg.sent_unix_ms);
  node_jw_kint(w, "received_unix_ms", r->received_unix_ms);
  node_jw_kbool(w, "read", r->read);
  node_jw_kbool(w, "direct", r->direct);
  node_jw_key(w, "text");
  node_jw_strn(w, (const char *)r->msg.body, r->msg.len);
  node_jw_obj_end(w);
}

static void jw_loss(rd_daemon *d, node_jw *w, const uint8_t pk[DHT_PK_LEN], uint32_t epoch,
                    int items, int64_t when) {
  node_jw_obj(w);
  jw_who(d, w, "from", pk);
  node_jw_kuint(w, "epoch", epoch);
  node_jw_kint(w, "epoch_start_unix_ms", (int64_t)epoch * sset(d)->epoch_ms);
  node_jw_kint(w, "items", items);
  node_jw_kint(w, "unix_ms", when);
  node_jw_obj_end(w);
}

static void mark_read(rd_daemon *d, store_in_row *rows, int nr);

/* Sends {"id":..,"progress":{kind: obj}} to every follower; drops the ones
 * whose client is gone.  A message shown to a follower is read. */
static void notify(rd_daemon *d, store_in_row *in, const store_event *loss) {
  int shown = 0;
  node_cmd_msg *cm = &d->cmd_msg;
  for (int i = 0; i < cm->nfollowers;) {
    follower *f = &cm->followers[i];
    client *c = node_ctl_client(&d->ctl, f->client);
    if (!c) {
      *f = cm->followers[--cm->nfollowers];
      continue;
    }
    node_jw w;
    node_ctl_reply_begin(&w, f->reqid);
    node_jw_key(&w, "progress");
    node_jw_obj(&w);
    if (in) {
      node_jw_key(&w, "message");
      jw_in_row(d, &w, in);
    } else {
      node_jw_key(&w, "notice");
      jw_loss(d, &w, loss->u.loss.friend_pk, loss->u.loss.epoch, loss->u.loss.items, unix_ms());
    }
    node_jw_obj_end(&w);
    node_ctl_reply_end(c, &w);
    shown += f->mark;
    i++;
  }
  if (in && shown)
    mark_read(d, in, 1);
}

/* A fetch round ended: the fetch commands waiting for it (all of them
 * when the round was the service's own, cmd 0) get its result. */
static void fetched(rd_daemon *d, const store_event *ev) {
  node_cmd_msg *cm = &d->cmd_msg;
  for (int i = 0; i < cm->nfetches;) {
    fetch_wait *f = &cm->fetches[i];
    if (ev->cmd && f->cmd != ev->cmd) {
      i++;
      continue;
    }
    client *c = node_ctl_client(&d->ctl, f->client);
    if (c && ev->status) {
      node_ctl_error(c, f->reqid, "failed", "the fetch failed: %s", store_strerror(ev->status));
    } else if (c) {
      node_jw jw;
      node_ctl_result_begin(&jw, f->reqid);
      node_jw_kint(&jw, "friends", ev->u.fetched.friends);
      node_jw_kint(&jw, "messages", ev->u.fetched.messages);
      node_jw_kint(&jw, "replicas_asked", ev->u.fetched.replicas_asked);
      node_jw_kint(&jw, "replicas_answered", ev->u.fetched.replicas_answered);
      node_jw_kuint(&jw, "epoch", ev->u.fetched.epoch);
      node_ctl_result_end(c, &jw);
    }
    *f = cm->fetches[--cm->nfetches];
  }
}

bool node_cmd_msg_drain(rd_daemon *d) {
  bool any = false;
  node_msg_event ev;
  for (int k = 0; k < 4096 && node_msg_poll(&d->msg, &ev) == 0; k++) {
    any = true;
    switch (ev.type) {
    case NODE_MSG_EV_MESSAGE:
      notify(d, &ev.in, NULL);
      break;
    case NODE_MSG_EV_LOSS:
      notify(d, NULL, &ev.ev);
      break;
    case NODE_MSG_EV_FETCHED:
      fetched(d, &ev.ev);
      break;
    case NODE_MSG_EV_PATH: {
      /* a friend behind a NAT: a punch through its introducers; the
       * verdict comes back as a NAT_EV_PATH (node_daemon.c) */
      dht_ts now = (dht_ts)uv_now(&d->loop);
      const uint8_t *pk = ev.ev.u.path.friend_pk;
      if (!d->nat || nat_connect(d->nat, pk, ev.ev.u.path.intro, ev.ev.u.path.nintro, now) != 0)
        store_path_ready(svc(d), pk, false, now);
      break;
    }
    default:
      break;
    }
  }
  return any;
}

void node_cmd_msg_tick(rd_daemon *d, uint64_t now) {
  node_cmd_msg *cm = &d->cmd_msg;
  for (int i = 0; i < cm->nfetches;) {
    fetch_wait *f = &cm->fetches[i];
    client *c = node_ctl_client(&d->ctl, f->client);
    if (c && now < f->deadline) {
      i++;
      continue;
    }
    if (c)
      node_ctl_error(c, f->reqid, "timeout", "no result in time");
    *f = cm->fetches[--cm->nfetches];
  }
}

/* ---- invites and friends ---------------------------------------------- */

/* Our invite, valid for days. */
static dht_ssize make_invite(rd_daemon *d, int days, char *out, size_t outlen, uint64_t *expires) {
  node_invite inv;
  memset(&inv, 0, sizeof inv);
  const char *name = d->cfg.display_name;
  const char *user = getenv("USER");
  if (!*name && user && node_invite_name_ok(user))
    name = user;
  snprintf(inv.name, sizeof inv.name, "%s", name);
  for (int i = 0; i < d->naddrs && inv.naddrs < NODE_INVITE_MAX_ADDRS; i++)
    if (!node_addr_is_any(&d->addrs[i].addr))
      inv.addrs[inv.naddrs++] = d->addrs[i].addr;
  if (inv.naddrs == 0) /* nothing learnt yet: the bound sockets */
    for (int i = 0; i < d->nsocks && inv.naddrs < NODE_INVITE_MAX_ADDRS; i++)
      if (!node_addr_is_any(&d->socks[i].bound))
        inv.addrs[inv.naddrs++] = d->socks[i].bound;
  for (int i = 0; i < d->cfg.nmy_hosts; i++) {
    memcpy(inv.hosts[i].pk, d->cfg.my_hosts[i].pk, DHT_PK_LEN);
    inv.hosts[i].addr = d->cfg.my_hosts[i].addr;
  }
  inv.nhosts = d->cfg.nmy_hosts;
  inv.expires_s = (uint64_t)(unix_ms() / 1000) + (uint64_t)days * 86400;
  if (expires)
    *expires = inv.expires_s;
  return node_invite_encode(&inv, &d->ident, out, outlen);
}

/* Reads string args[key] into out.  1 present, 0 absent, -1 after replying
 * with an error. */
static int arg_str(client *c, const char *reqid, const json_t *args, const char *key, char *out,
                   size_t len, bool required) {
  const json_t *v = json_object_get(args, key);
  if (!v) {
    if (!required)
      return 0;
    node_ctl_error(c, reqid, "bad_request", "missing string argument '%s'", key);
    return -1;
  }
  int rv = node_json_str(v, out, len);
  if (rv == -2) {
    node_ctl_error(c, reqid, "bad_argument", "'%s' is too long (at most %zu bytes)", key, len - 1);
    return -1;
  }
  if (rv < 0) {
    node_ctl_error(c, reqid, "bad_request", "'%s' must be a string", key);
    return -1;
  }
  return 1;
}

static int arg_int(client *c, const char *reqid, const json_t *args, const char *key, int64_t lo,
                   int64_t hi, int64_t *out) {
  const json_t *v = json_object_get(args, key);
  if (!v)
    return 0;
  if (node_json_int(v, out) != 0 || *out < lo || *out > hi) {
    node_ctl_error(c, reqid, "bad_argument", "'%s' must be a whole number from %lld to %lld", key,
                   (long long)lo, (long long)hi);
    return -1;
  }
  return 1;
}

static int arg_bool(client *c, const char *reqid, const json_t *args, const char *key, bool *out) {
  const json_t *v = json_object_get(args, key);
  if (!v)
    return 0;
  if (node_json_bool(v, out) != 0) {
    node_ctl_error(c, reqid, "bad_request", "'%s' must be true or false", key);
    return -1;
  }
  return 1;
}

static bool need_svc(rd_daemon *d, client *c, const char *reqid) {
  if (svc(d))
    return true;
  node_ctl_error(c, reqid, "failed",
                 "the mailbox service is not running (see roostd's log from its start)");
  return false;
}

/* Adds (or updates) the friend of invite text, under name (NULL: the
 * invite's), and sends them a friend request with our own invite.  Replies. */
static void friend_add(rd_daemon *d, client *c, const char *reqid, const char *text,
                       const char *name) {
  node_invite inv;
  char why[256];
  int64_t now_ms = unix_ms();
  dht_ts now = (dht_ts)uv_now(&d->loop);
  if (node_invite_decode(text, (uint64_t)(now_ms / 1000), &inv, why, sizeof why) != 0) {
    node_ctl_error(c, reqid, "bad_argument", "%s", why);
    return;
  }
  if (!memcmp(inv.pk, d->ident.pk, DHT_PK_LEN)) {
    node_ctl_error(c, reqid, "bad_argument", "that is this node's own invite");
    return;
  }
  store_friend_row row, old;
  bool known = store_appdb_friend_get(app(d), NULL, inv.pk, &old) == 0;
  if (!name || !*name)
    name = known ? old.name : inv.name;
  if (!*name) {
    node_ctl_error(c, reqid, "bad_argument", "the invite carries no name: give one (--name)");
    return;
  }
  if (!node_invite_name_ok(name)) {
    node_ctl_error(c, reqid, "bad_argument",
                   "a name is 1 to %d bytes of UTF-8 without control characters",
                   NODE_INVITE_NAME_MAX);
    return;
  }
  uint8_t idpk[DHT_PK_LEN];
  if (node_idtext_decode(name, idpk) == 0) {
    node_ctl_error(c, reqid, "bad_argument", "a name cannot be a roost ID: choose another");
    return;
  }
  store_friend_row clash;
  if (store_appdb_friend_get(app(d), name, NULL, &clash) == 0 &&
      memcmp(clash.f.pk, inv.pk, DHT_PK_LEN) != 0) {
    char idt[NODE_IDTEXT_LEN + 1];
    node_idtext_encode(clash.f.pk, idt);
    node_ctl_error(c, reqid, "bad_argument",
                   "you already have a friend named '%s' (%.8s...): choose another name (--name)",
                   name, idt);
    return;
  }
  memset(&row, 0, sizeof row);
  snprintf(row.name, sizeof row.name, "%s", name);
  memcpy(row.f.pk, inv.pk, DHT_PK_LEN);
  row.f.nhosts = inv.nhosts;
  memcpy(row.f.hosts, inv.hosts, sizeof inv.hosts);
  uint32_t ep = store_epoch_of(now_ms, sset(d)->epoch_ms);
  row.f.fetched_epoch = known ? old.f.fetched_epoch : (ep > 0 ? ep - 1 : 0);
  row.added_unix_ms = known ? old.added_unix_ms : now_ms;
  int rv = store_appdb_friend_put(app(d), &row);
  if (rv) {
    node_ctl_error(c, reqid, "failed", "cannot save the friend: %s", store_strerror(rv));
    return;
  }
  /* their addresses help us reach (and join) the network */
  for (int i = 0; i < inv.naddrs; i++) {
    dht_peer p;
    memcpy(p.pk, inv.pk, DHT_PK_LEN);
    p.addr = inv.addrs[i];
    dht_ping(d->e, &p, now);
    if (d->state != ST_READY)
      node_daemon_add_bootstrap(d, &p);
  }
  if (d->state != ST_READY && inv.naddrs > 0 && !d->boot_cmd)
    node_daemon_bootstrap(d);
  /* a request from them is answered by this */
  node_msg_request_drop(&d->msg, inv.pk);
  const char *request = "not sent: the mailbox service is not running";
  char reqwhy[128];
  if (svc(d)) {
    if ((rv = store_friend_set(svc(d), &row.f, now)) != 0)
      NLOG(NODE_LOG_WARN, "msg", "the service did not take the friend: %s", store_strerror(rv));
    char mine[NODE_INVITE_TEXT_MAX + 1];
    dht_ssize ml = make_invite(d, INVITE_DAYS, mine, sizeof mine, NULL);
    int64_t id = ml > 0 ? store_request_send(svc(d), inv.pk, (const uint8_t *)mine, (size_t)ml, now)
                        : DHT_ERR_INVAL;
    if (id > 0) {
      request = "sent";
    } else {
      snprintf(reqwhy, sizeof reqwhy, "not sent: %s", store_strerror((int)id));
      request = reqwhy;
    }
  }
  char idt[NODE_IDTEXT_LEN + 1];
  node_idtext_encode(inv.pk, idt);
  NLOG(NODE_LOG_INFO, "msg", "friend %s %s (%.8s)", known ? "updated" : "added", row.name, idt);
  node_jw w;
  node_ctl_result_begin(&w, reqid);
  node_jw_kstr(&w, "name", row.name);
  node_jw_kstr(&w, "id", idt);
  node_jw_kbool(&w, "added", !known);
  node_jw_kint(&w, "hosts", inv.nhosts);
  node_jw_kstr(&w, "request", request);
  node_ctl_result_end(c, &w);
}

/* ---- the commands ------------------------------------------------------ */

static void big_result_begin(node_jw *w, const char *reqid) {
  node_jw_init(w, NODE_PROTO_BIG_MAX);
  node_jw_obj(w);
  node_jw_key(w, "id");
  node_jw_raw(w, reqid, strlen(reqid));
  node_jw_kbool(w, "ok", true);
  node_jw_key(w, "result");
  node_jw_obj(w);
}

static void cmd_invite(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  int64_t days = INVITE_DAYS;
  if (arg_int(c, reqid, args, "expires_days", 1, 365, &days) < 0)
    return;
  char text[NODE_INVITE_TEXT_MAX + 1];
  uint64_t exp;
  if (make_invite(d, (int)days, text, sizeof text, &exp) < 0) {
    node_ctl_error(c, reqid, "failed", "cannot make the invite");
    return;
  }
  node_invite inv;
  char why[128];
  node_invite_decode(text, 0, &inv, why, sizeof why);
  node_jw w;
  node_ctl_result_begin(&w, reqid);
  node_jw_kstr(&w, "invite", text);
  node_jw_kstr(&w, "name", inv.name);
  node_jw_kuint(&w, "expires_unix_s", exp);
  node_jw_kint(&w, "addresses", inv.naddrs);
  node_jw_kint(&w, "hosts", inv.nhosts);
  node_ctl_result_end(c, &w);
}

static void cmd_friend_list(rd_daemon *d, client *c, const char *reqid) {
  int max = sset(d)->max_friends > 0 ? sset(d)->max_friends : 1;
  store_friend_row *fr = calloc((size_t)max, sizeof *fr);
  if (!fr) {
    node_ctl_error(c, reqid, "failed", "out of memory");
    return;
  }
  int nf = store_appdb_friend_list(app(d), fr, max);
  node_jw w;
  big_result_begin(&w, reqid);
  node_jw_key(&w, "friends");
  node_jw_arr(&w);
  for (int i = 0; i < nf; i++) {
    char idt[NODE_IDTEXT_LEN + 1];
    node_idtext_encode(fr[i].f.pk, idt);
    node_jw_obj(&w);
    node_jw_kstr(&w, "name", fr[i].name);
    node_jw_kstr(&w, "id", idt);
    node_jw_kint(&w, "hosts", fr[i].f.nhosts);
    node_jw_kint(&w, "added_unix_ms", fr[i].added_unix_ms);
    node_jw_kuint(&w, "fetched_epoch", fr[i].f.fetched_epoch);
    node_jw_obj_end(&w);
  }
  node_jw_arr_end(&w);
  node_ctl_result_end(c, &w);
  free(fr);
}

static void cmd_friend_requests(rd_daemon *d, client *c, const char *reqid) {
  node_jw w;
  big_result_begin(&w, reqid);
  node_jw_key(&w, "requests");
  node_jw_arr(&w);
  uint64_t now_s = (uint64_t)(unix_ms() / 1000);
  for (int i = 0; i < node_msg_nrequests(&d->msg); i++) {
    const friend_req *r = node_msg_request(&d->msg, i);
    char idt[NODE_IDTEXT_LEN + 1], note[STORE_NOTE_MAX + 1], why[256];
    node_idtext_encode(r->pk, idt);
    memcpy(note, r->note, r->len);
    note[r->len] = 0;
    node_invite inv;
    int rv = strlen(note) == r->len ? node_invite_decode(note, now_s, &inv, why, sizeof why)
                                    : NODE_INVITE_ERR_PREFIX;
    if (rv == 0 && memcmp(inv.pk, r->pk, DHT_PK_LEN) != 0) {
      rv = NODE_INVITE_ERR_SIGNATURE;
      snprintf(why, sizeof why, "the invite in the request is someone else's");
    } else if (rv == NODE_INVITE_ERR_PREFIX) {
      snprintf(why, sizeof why, "the request carries no invite");
    }
    node_jw_obj(&w);
    node_jw_kint(&w, "n", i + 1);
    node_jw_kstr(&w, "id", idt);
    node_jw_key(&w, "name");
    if (rv == 0)
      node_jw_str(&w, inv.name);
    else
      node_jw_null(&w);
    node_jw_kint(&w, "received_unix_ms", r->unix_ms);
    node_jw_kbool(&w, "valid", rv == 0);
    if (rv)
      node_jw_kstr(&w, "problem", why);
    node_jw_obj_end(&w);
  }
  node_jw_arr_end(&w);
  node_ctl_result_end(c, &w);
}

static void cmd_friend_accept(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  int64_t k = 0;
  char name[NODE_INVITE_NAME_MAX + 2] = "";
  int rv = arg_int(c, reqid, args, "n", 1, MAX_REQUESTS, &k);
  if (rv < 0)
    return;
  if (rv == 0) {
    node_ctl_error(c, reqid, "bad_request", "missing number argument 'n'");
    return;
  }
  if (arg_str(c, reqid, args, "name", name, sizeof name, false) < 0)
    return;
  const friend_req *r = node_msg_request(&d->msg, (int)k - 1);
  if (!r) {
    node_ctl_error(c, reqid, "not_found", "there is no request %lld (%d pending)", (long long)k,
                   node_msg_nrequests(&d->msg));
    return;
  }
  char note[STORE_NOTE_MAX + 1];
  memcpy(note, r->note, r->len);
  note[r->len] = 0;
  node_invite inv;
  char why[256];
  if (strlen(note) != r->len || strncmp(note, NODE_INVITE_PREFIX, 13) != 0) {
    node_ctl_error(c, reqid, "bad_argument", "request %lld carries no invite: ask them for one",
                   (long long)k);
    return;
  }
  if (node_invite_decode(note, (uint64_t)(unix_ms() / 1000), &inv, why, sizeof why) == 0 &&
      memcmp(inv.pk, r->pk, DHT_PK_LEN) != 0) {
    node_ctl_error(c, reqid, "bad_argument",
                   "request %lld carries someone else's invite: it is not accepted", (long long)k);
    return;
  }
  friend_add(d, c, reqid, note, name[0] ? name : NULL);
}

static void cmd_friend_remove(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  char who[128];
  store_friend_row row;
  if (arg_str(c, reqid, args, "name", who, sizeof who, true) < 0)
    return;
  if (find_friend(d, who, &row) != 0) {
    node_ctl_error(c, reqid, "not_found", "no friend named '%s'", who);
    return;
  }
  int rv = store_appdb_friend_del(app(d), row.f.pk);
  if (rv) {
    node_ctl_error(c, reqid, "failed", "cannot remove: %s", store_strerror(rv));
    return;
  }
  store_appdb_hosted_del(app(d), row.f.pk);
  if (svc(d)) {
    store_friend_remove(svc(d), row.f.pk);
    store_host_set(svc(d), row.f.pk, 0);
  }
  node_jw w;
  node_ctl_result_begin(&w, reqid);
  node_jw_kstr(&w, "removed", row.name);
  node_ctl_result_end(c, &w);
}

static void cmd_send(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  char who[128];
  static char text[STORE_TEXT_MAX + 2];
  if (arg_str(c, reqid, args, "to", who, sizeof who, true) < 0)
    return;
  int len = node_json_str(json_object_get(args, "text"), text, sizeof text);
  if (len == -1 || len == -3) {
    node_ctl_error(c, reqid, "bad_request", "missing string argument 'text'");
    return;
  }
  if (len == -2) {
    node_ctl_error(c, reqid, "bad_argument", "the message is longer than %d bytes", STORE_TEXT_MAX);
    return;
  }
  if (len == 0) {
    node_ctl_error(c, reqid, "bad_argument", "the message is empty");
    return;
  }
  store_friend_row row;
  if (find_friend(d, who, &row) != 0) {
    node_ctl_error(c, reqid, "not_found", "no friend named '%s' (roost friend list)", who);
    return;
  }
  if (!need_svc(d, c, reqid))
    return;
  store_out_row o;
  memset(&o, 0, sizeof o);
  randombytes_buf(o.msg.id, STORE_MSGID_LEN);
  o.msg.sent_unix_ms = unix_ms();
  o.msg.kind = STORE_KIND_TEXT;
  o.msg.len = (uint16_t)len;
  memcpy(o.msg.body, text, (size_t)len);
  memcpy(o.to_pk, row.f.pk, DHT_PK_LEN);
  o.state = STORE_ST_QUEUED;
  o.updated_unix_ms = o.msg.sent_unix_ms;
  int rv = store_appdb_out_add(app(d), &o);
  if (rv) {
    node_ctl_error(c, reqid, "failed", "cannot save the message: %s", store_strerror(rv));
    return;
  }
  int64_t id = store_send(svc(d), row.f.pk, &o.msg, (dht_ts)uv_now(&d->loop));
  char mid[2 * STORE_MSGID_LEN + 1];
  node_proto_hex(o.msg.id, STORE_MSGID_LEN, mid);
  if (id < 0) {
    node_ctl_error(c, reqid, "failed",
                   "the message is in the outbox but the service refused it now (%s); it is "
                   "sent again when roostd restarts",
                   store_strerror((int)id));
    return;
  }
  node_jw w;
  node_ctl_result_begin(&w, reqid);
  node_jw_kstr(&w, "msg_id", mid);
  node_jw_kint(&w, "seq", o.seq);
  node_jw_kstr(&w, "to", row.name);
  node_jw_kstr(&w, "state", "queued");
  node_ctl_result_end(c, &w);
}

static void cmd_outbox(rd_daemon *d, client *c, const char *reqid) {
  store_out_row *rows = calloc(LIST_MAX, sizeof *rows);
  if (!rows) {
    node_ctl_error(c, reqid, "failed", "out of memory");
    return;
  }
  int nr = store_appdb_out_list(app(d), 0, rows, LIST_MAX);
  node_jw w;
  big_result_begin(&w, reqid);
  node_jw_key(&w, "messages");
  node_jw_arr(&w);
  for (int i = 0; i < nr; i++) {
    const store_out_row *o = &rows[i];
    char mid[2 * STORE_MSGID_LEN + 1];
    node_proto_hex(o->msg.id, STORE_MSGID_LEN, mid);
    node_jw_obj(&w);
    node_jw_kint(&w, "seq", o->seq);
    node_jw_kstr(&w, "msg_id", mid);
    jw_who(d, &w, "to", o->to_pk);
    node_jw_kint(&w, "sent_unix_ms", o->msg.sent_unix_ms);
    node_jw_kint(&w, "updated_unix_ms", o->updated_unix_ms);
    node_jw_kstr(&w, "state", state_name(o->state));
    node_jw_kint(&w, "receipts", o->receipts);
    node_jw_kint(&w, "replicas", sset(d)->replicas);
    node_jw_key(&w, "reason");
    if (o->reason)
      node_jw_str(&w, store_strerror(o->reason));
    else
      node_jw_null(&w);
    node_jw_key(&w, "text");
    node_jw_strn(&w, (const char *)o->msg.body, o->msg.len);
    node_jw_obj_end(&w);
  }
  node_jw_arr_end(&w);
  node_ctl_result_end(c, &w);
  free(rows);
}

/* Marks rows read in roost.db and tells their senders (read receipts). */
static void mark_read(rd_daemon *d, store_in_row *rows, int nr) {
  dht_ts now = (dht_ts)uv_now(&d->loop);
  bool *done = calloc((size_t)nr + 1, sizeof *done);
  store_msgid *ids = calloc(64, sizeof *ids);
  if (!done || !ids)
    goto out;
  for (int i = 0; i < nr; i++) {
    if (rows[i].read || done[i])
      continue;
    int k = 0;
    for (int j = i; j < nr; j++) {
      if (rows[j].read || done[j] || memcmp(rows[j].from_pk, rows[i].from_pk, DHT_PK_LEN))
        continue;
      store_appdb_in_mark_read(app(d), rows[j].seq);
      done[j] = true;
      memcpy(ids[k++], rows[j].msg.id, STORE_MSGID_LEN);
      if (k == 64) {
        if (svc(d))
          store_mark_read(svc(d), rows[i].from_pk, (const store_msgid *)ids, k, now);
        k = 0;
      }
    }
    if (k && svc(d))
      store_mark_read(svc(d), rows[i].from_pk, (const store_msgid *)ids, k, now);
  }
out:
  free(done);
  free(ids);
}

static void cmd_inbox(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  bool follow = false, unread = false, mark = true;
  if (arg_bool(c, reqid, args, "follow", &follow) < 0 ||
      arg_bool(c, reqid, args, "unread", &unread) < 0 ||
      arg_bool(c, reqid, args, "mark_read", &mark) < 0)
    return;
  node_cmd_msg *cm = &d->cmd_msg;
  if (follow && cm->nfollowers >= MAX_FOLLOWERS) {
    node_ctl_error(c, reqid, "busy", "too many inbox subscriptions (%d)", MAX_FOLLOWERS);
    return;
  }
  store_in_row *rows = calloc(LIST_MAX, sizeof *rows);
  store_loss_row *loss = calloc(256, sizeof *loss);
  if (!rows || !loss) {
    free(rows);
    free(loss);
    node_ctl_error(c, reqid, "failed", "out of memory");
    return;
  }
  int nr = store_appdb_in_list(app(d), 0, unread, rows, LIST_MAX);
  int nl = store_appdb_loss_list(app(d), loss, 256);
  if (nr < 0)
    nr = 0;
  if (nl < 0)
    nl = 0;
  if (!follow) {
    node_jw w;
    big_result_begin(&w, reqid);
    node_jw_key(&w, "messages");
    node_jw_arr(&w);
    for (int i = 0; i < nr; i++)
      jw_in_row(d, &w, &rows[i]);
    node_jw_arr_end(&w);
    node_jw_key(&w, "notices");
    node_jw_arr(&w);
    for (int i = 0; i < nl; i++)
      jw_loss(d, &w, loss[i].from_pk, loss[i].epoch, loss[i].items, loss[i].unix_ms);
    node_jw_arr_end(&w);
    node_jw_kbool(&w, "more", nr == LIST_MAX);
    node_ctl_result_end(c, &w);
  } else {
    /* what is there now, then new ones as they come: progress lines, no
     * final reply (the client ends it by closing) */
    for (int i = 0; i < nl; i++) {
      node_jw w;
      node_ctl_reply_begin(&w, reqid);
      node_jw_key(&w, "progress");
      node_jw_obj(&w);
      node_jw_key(&w, "notice");
      jw_loss(d, &w, loss[i].from_pk, loss[i].epoch, loss[i].items, loss[i].unix_ms);
      node_jw_obj_end(&w);
      node_ctl_reply_end(c, &w);
    }
    for (int i = 0; i < nr; i++) {
      node_jw w;
      node_ctl_reply_begin(&w, reqid);
      node_jw_key(&w, "progress");
      node_jw_obj(&w);
      node_jw_key(&w, "message");
      jw_in_row(d, &w, &rows[i]);
      node_jw_obj_end(&w);
      node_ctl_reply_end(c, &w);
    }
    follower *f = &cm->followers[cm->nfollowers++];
    f->client = c->serial;
    f->mark = mark;
    snprintf(f->reqid, sizeof f->reqid, "%s", reqid);
  }
  if (mark)
    mark_read(d, rows, nr);
  free(rows);
  free(loss);
}

static void cmd_fetch(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  int64_t timeout = NODE_PROTO_FETCH_TIMEOUT_MS;
  if (arg_int(c, reqid, args, "timeout_ms", 1, 600000, &timeout) < 0)
    return;
  if (!need_svc(d, c, reqid))
    return;
  int64_t id = store_fetch(svc(d), (dht_ts)uv_now(&d->loop));
  if (id < 0) {
    node_ctl_error(c, reqid, id == DHT_ERR_FULL ? "busy" : "failed", "cannot fetch: %s",
                   store_strerror((int)id));
    return;
  }
  node_cmd_msg *cm = &d->cmd_msg;
  if (cm->nfetches >= MAX_FETCHES) {
    /* the round runs anyway; only its answer to this client is lost */
    node_ctl_error(c, reqid, "busy", "too many commands in flight (%d)", MAX_FETCHES);
    return;
  }
  fetch_wait *f = &cm->fetches[cm->nfetches++];
  f->client = c->serial;
  snprintf(f->reqid, sizeof f->reqid, "%s", reqid);
  f->cmd = id;
  f->deadline = uv_now(&d->loop) + (uint64_t)timeout;
}

static void cmd_host_add(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  char who[128];
  int64_t quota = 0;
  if (arg_str(c, reqid, args, "name", who, sizeof who, true) < 0)
    return;
  int rv = arg_int(c, reqid, args, "quota", 1, (int64_t)1 << 50, &quota);
  if (rv < 0)
    return;
  if (rv == 0) {
    node_ctl_error(c, reqid, "bad_request", "missing number argument 'quota' (bytes)");
    return;
  }
  store_friend_row row;
  if (find_friend(d, who, &row) != 0) {
    node_ctl_error(c, reqid, "not_found",
                   "no friend named '%s': only friends can be hosted (roost friend add)", who);
    return;
  }
  store_hosted_row h;
  memcpy(h.pk, row.f.pk, DHT_PK_LEN);
  h.quota_bytes = quota;
  if ((rv = store_appdb_hosted_put(app(d), &h)) != 0) {
    node_ctl_error(c, reqid, "failed", "cannot save: %s", store_strerror(rv));
    return;
  }
  if (svc(d) && (rv = store_host_set(svc(d), row.f.pk, quota)) != 0) {
    store_appdb_hosted_del(app(d), row.f.pk);
    node_ctl_error(c, reqid, rv == DHT_ERR_FULL ? "busy" : "failed", "cannot host %s: %s", row.name,
                   store_strerror(rv));
    return;
  }
  node_jw w;
  node_ctl_result_begin(&w, reqid);
  node_jw_kstr(&w, "name", row.name);
  node_jw_kint(&w, "quota", quota);
  node_ctl_result_end(c, &w);
}

static void cmd_host_list(rd_daemon *d, client *c, const char *reqid) {
  store_hosted_row hr[256];
  int nh = store_appdb_hosted_list(app(d), hr, 256);
  node_jw w;
  big_result_begin(&w, reqid);
  node_jw_key(&w, "hosted");
  node_jw_arr(&w);
  for (int i = 0; i < nh; i++) {
    node_jw_obj(&w);
    jw_who(d, &w, "id", hr[i].pk);
    node_jw_kint(&w, "quota", hr[i].quota_bytes);
    node_jw_obj_end(&w);
  }
  node_jw_arr_end(&w);
  node_jw_key(&w, "my_hosts");
  node_jw_arr(&w);
  for (int i = 0; i < d->cfg.nmy_hosts; i++) {
    char addr[DHT_ADDR_STRLEN];
    node_jw_obj(&w);
    jw_who(d, &w, "id", d->cfg.my_hosts[i].pk);
    node_jw_kstr(&w, "addr", dht_addr_fmt(&d->cfg.my_hosts[i].addr, addr, sizeof addr));
    node_jw_obj_end(&w);
  }
  node_jw_arr_end(&w);
  node_ctl_result_end(c, &w);
}

static void cmd_host_remove(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  char who[128];
  if (arg_str(c, reqid, args, "name", who, sizeof who, true) < 0)
    return;
  store_friend_row row;
  if (find_friend(d, who, &row) != 0) {
    node_ctl_error(c, reqid, "not_found", "no friend named '%s'", who);
    return;
  }
  if (store_appdb_hosted_del(app(d), row.f.pk) != 0) {
    node_ctl_error(c, reqid, "not_found", "you do not host %s", row.name);
    return;
  }
  if (svc(d))
    store_host_set(svc(d), row.f.pk, 0);
  node_jw w;
  node_ctl_result_begin(&w, reqid);
  node_jw_kstr(&w, "removed", row.name);
  node_ctl_result_end(c, &w);
}

static void cmd_mailbox(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  char who[128];
  if (arg_str(c, reqid, args, "friend", who, sizeof who, true) < 0)
    return;
  store_friend_row row;
  if (find_friend(d, who, &row) != 0) {
    node_ctl_error(c, reqid, "not_found", "no friend named '%s'", who);
    return;
  }
  uint8_t pair[STORE_KEY_LEN];
  if (store_pair_secret(pair, &d->ident, row.f.pk) != 0) {
    node_ctl_error(c, reqid, "failed", "that friend's key gives no pair secret");
    return;
  }
  uint32_t ep = store_epoch_of(unix_ms(), sset(d)->epoch_ms);
  store_mbox_keys out, in;
  store_mbox_derive(&out, pair, d->ident.pk, row.f.pk, ep);
  store_mbox_derive(&in, pair, row.f.pk, d->ident.pk, ep);
  char a[2 * STORE_MBOX_LEN + 1], b[2 * STORE_MBOX_LEN + 1];
  node_proto_hex(out.id, STORE_MBOX_LEN, a);
  node_proto_hex(in.id, STORE_MBOX_LEN, b);
  sodium_memzero(pair, sizeof pair);
  sodium_memzero(&out, sizeof out);
  sodium_memzero(&in, sizeof in);
  node_jw w;
  node_ctl_result_begin(&w, reqid);
  node_jw_kstr(&w, "name", row.name);
  node_jw_kuint(&w, "epoch", ep);
  node_jw_kstr(&w, "to_friend", a);
  node_jw_kstr(&w, "from_friend", b);
  node_ctl_result_end(c, &w);
}

static void cmd_friend_add(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  static char text[NODE_INVITE_TEXT_MAX + 64];
  char name[NODE_INVITE_NAME_MAX + 2] = "";
  if (arg_str(c, reqid, args, "invite", text, sizeof text, true) < 0 ||
      arg_str(c, reqid, args, "name", name, sizeof name, false) < 0)
    return;
  friend_add(d, c, reqid, text, name[0] ? name : NULL);
}

/* The commands without arguments take them all the same (and ignore them). */
static void cmd_friend_list_any(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  (void)args;
  cmd_friend_list(d, c, reqid);
}

static void cmd_friend_requests_any(rd_daemon *d, client *c, const char *reqid,
                                    const json_t *args) {
  (void)args;
  cmd_friend_requests(d, c, reqid);
}

static void cmd_outbox_any(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  (void)args;
  cmd_outbox(d, c, reqid);
}

static void cmd_host_list_any(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  (void)args;
  cmd_host_list(d, c, reqid);
}

static const node_cmd cmds[] = {
    {"invite", cmd_invite},
    {"friend_add", cmd_friend_add},
    {"friend_list", cmd_friend_list_any},
    {"friend_remove", cmd_friend_remove},
    {"friend_requests", cmd_friend_requests_any},
    {"friend_accept", cmd_friend_accept},
    {"send", cmd_send},
    {"outbox", cmd_outbox_any},
    {"inbox", cmd_inbox},
    {"fetch", cmd_fetch},
    {"host_add", cmd_host_add},
    {"host_list", cmd_host_list_any},
    {"host_remove", cmd_host_remove},
    {"mailbox", cmd_mailbox},
};
const node_cmd_table node_cmd_msg_table = {cmds, sizeof cmds / sizeof cmds[0]};

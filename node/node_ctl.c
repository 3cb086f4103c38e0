/*
 * node_ctl.c - roostd's control socket, transport only: a Unix stream
 * socket (mode 0600, peer uid checked with SO_PEERCRED) speaking one JSON
 * object per line (docs/control.md).  It owns its node_ctl: the listening
 * socket and its path, the clients and their line buffers, the framing and
 * the request envelope (id, cmd, args), the reply helpers, and the table of
 * waiters with their deadlines.  It knows no command and no daemon: a
 * request goes to the owner's run hook, and the owner's wake hook runs
 * after each one (node_ctl.h).
 *
 * A waiter holds the client's serial number, never a pointer, so a client
 * that disconnects early cannot leave a dangling reference; the
 * once-a-second tick polls waiters and enforces deadlines.  A client's
 * memory is freed only in its close callback (libuv's rule), and a client
 * that is closing is never written to nor found by serial.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node_ctl.h"

/* Values and keys in one request: a send with its text is about 10. */
#define REQ_MAX_VALUES 256

/* ---- control clients: writing --------------------------------------------- */

client *node_ctl_client(node_ctl *ctl, uint64_t serial) {
  for (client *c = ctl->clients; c; c = c->next)
    if (c->serial == serial && !c->closing)
      return c;
  return NULL;
}

static void on_written(uv_write_t *req, int status) {
  (void)status;
  free(req->data);
  free(req);
}

static void client_write(client *c, const char *s, size_t n) {
  if (!c || c->closing)
    return;
  uv_write_t *req = malloc(sizeof *req);
  char *copy = malloc(n + 1);
  if (!req || !copy) {
    free(req);
    free(copy);
    return;
  }
  memcpy(copy, s, n);
  copy[n] = '\n';
  req->data = copy;
  uv_buf_t b = uv_buf_init(copy, (unsigned)n + 1);
  if (uv_write(req, (uv_stream_t *)&c->pipe, &b, 1, on_written) != 0) {
    free(copy);
    free(req);
  }
}

/* Starts a reply object: {"id": <reqid>, ...  The caller adds the rest. */
void node_ctl_reply_begin(node_jw *w, const char *reqid) {
  node_jw_init(w, NODE_PROTO_LINE_MAX);
  node_jw_obj(w);
  node_jw_key(w, "id");
  node_jw_raw(w, reqid, strlen(reqid));
}

void node_ctl_reply_end(client *c, node_jw *w) {
  node_jw_obj_end(w);
  size_t n;
  const char *s = node_jw_done(w, &n);
  if (s)
    client_write(c, s, n);
  node_jw_free(w);
}

void node_ctl_error(client *c, const char *reqid, const char *code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  node_jw w;
  node_ctl_reply_begin(&w, reqid);
  node_jw_kbool(&w, "ok", false);
  node_jw_key(&w, "error");
  node_jw_obj(&w);
  node_jw_kstr(&w, "code", code);
  node_jw_kstr(&w, "message", msg);
  node_jw_obj_end(&w);
  node_ctl_reply_end(c, &w);
}

/* {"id":..,"ok":true,"result":{   -- the caller writes fields, then node_ctl_result_end */
void node_ctl_result_begin(node_jw *w, const char *reqid) {
  node_ctl_reply_begin(w, reqid);
  node_jw_kbool(w, "ok", true);
  node_jw_key(w, "result");
  node_jw_obj(w);
}

void node_ctl_result_end(client *c, node_jw *w) {
  node_jw_obj_end(w);
  node_ctl_reply_end(c, w);
}

/* ---- waiters ------------------------------------------------------------- */

waiter *node_ctl_add_waiter(node_ctl *ctl, client *c, const char *reqid, int kind, int64_t cmd,
                            uint64_t timeout_ms) {
  if (ctl->nwaiters >= MAX_WAITERS) {
    node_ctl_error(c, reqid, "busy", "too many commands in flight (%d)", MAX_WAITERS);
    return NULL;
  }
  waiter *w = &ctl->waiters[ctl->nwaiters++];
  memset(w, 0, sizeof *w);
  w->kind = (uint8_t)kind;
  w->client = c->serial;
  snprintf(w->reqid, sizeof w->reqid, "%s", reqid);
  w->cmd = cmd;
  w->deadline = uv_now(ctl->loop) + timeout_ms;
  return w;
}

void node_ctl_remove_waiter(node_ctl *ctl, waiter *w) {
  *w = ctl->waiters[--ctl->nwaiters];
}

waiter *node_ctl_find_waiter(node_ctl *ctl, int64_t cmd) {
  for (int i = 0; i < ctl->nwaiters; i++)
    if (ctl->waiters[i].cmd == cmd)
      return &ctl->waiters[i];
  return NULL;
}

/* Parses one request line and hands it to the owner's run hook; every path
 * replies (or the command leaves a waiter that will). */
static void handle_request(node_ctl *ctl, client *c, const char *line, size_t len) {
  json_t *req;
  char why[200];
  if (node_json_parse(line, len, REQ_MAX_VALUES, &req, why, sizeof why) != 0 ||
      !json_is_object(req)) {
    ctl->stats.bad++;
    node_ctl_error(c, "null", "bad_request", "a request is one JSON object per line (%s)",
                   req ? "this is another JSON value" : why);
    json_decref(req);
    return;
  }
  char reqid[80] = "null";
  const json_t *jid = json_object_get(req, "id");
  if (json_is_integer(jid) || json_is_string(jid)) {
    char *q = node_json_dump(jid, NULL);
    if (q && strlen(q) < sizeof reqid)
      memcpy(reqid, q, strlen(q) + 1);
    free(q);
  }
  char cmd[32];
  if (node_json_str(json_object_get(req, "cmd"), cmd, sizeof cmd) < 0) {
    node_ctl_error(c, reqid, "bad_request", "missing string field 'cmd'");
    json_decref(req);
    return;
  }
  const json_t *args = json_object_get(req, "args");
  if (args && !json_is_object(args)) {
    node_ctl_error(c, reqid, "bad_request", "'args' must be an object");
    json_decref(req);
    return;
  }
  NLOG(NODE_LOG_DEBUG, "ctl", "request %s %s", reqid, cmd);
  if (ctl->hooks.run(ctl->hooks.ctx, c, reqid, cmd, args) != 0)
    node_ctl_error(c, reqid, "unknown_command", "unknown command '%s'", cmd);
  json_decref(req);
}

/* Once a second: a waiter whose command can finish on its own (poll) is
 * asked first; one whose client is gone or whose deadline has passed is
 * expired (its command's expire, or a "timeout" reply) and removed. */
void node_ctl_tick(node_ctl *ctl, uint64_t now) {
  for (int i = 0; i < ctl->nwaiters;) {
    waiter *w = &ctl->waiters[i];
    client *c = node_ctl_client(ctl, w->client);
    bool late = !c || now >= w->deadline;
    if (c && w->poll && w->poll(ctl->hooks.ctx, w, c, late)) {
      node_ctl_remove_waiter(ctl, w);
      continue;
    }
    if (late) {
      if (w->expire)
        w->expire(ctl->hooks.ctx, w, c);
      else if (c)
        node_ctl_error(c, w->reqid, "timeout", "no result in time");
      node_ctl_remove_waiter(ctl, w);
      continue;
    }
    i++;
  }
}

/* ---- control socket ------------------------------------------------------ */

static void on_client_closed(uv_handle_t *h) {
  client *c = h->data;
  node_ctl *ctl = c->ctl;
  for (client **p = &ctl->clients; *p; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      break;
    }
  ctl->nclients--;
  free(c->buf);
  free(c);
}

static void client_close(client *c) {
  if (!c->closing) {
    c->closing = true;
    uv_close((uv_handle_t *)&c->pipe, on_client_closed);
  }
}

static void on_client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  client *c = h->data;
  if (!c->buf)
    c->buf = malloc(NODE_PROTO_LINE_MAX);
  if (!c->buf || c->len >= NODE_PROTO_LINE_MAX) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init(c->buf + c->len, (unsigned)(NODE_PROTO_LINE_MAX - c->len));
}

static void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  client *c = s->data;
  (void)buf;
  if (nread < 0) {
    client_close(c);
    return;
  }
  c->len += (size_t)nread;
  for (;;) {
    char *nl = memchr(c->buf, '\n', c->len);
    if (!nl)
      break;
    size_t l = (size_t)(nl - c->buf);
    if (l > 0 && !c->closing) {
      handle_request(c->ctl, c, c->buf, l);
      if (c->ctl->hooks.wake) /* a command may have queued datagrams */
        c->ctl->hooks.wake(c->ctl->hooks.ctx);
    }
    if (c->closing)
      return;
    memmove(c->buf, nl + 1, c->len - l - 1);
    c->len -= l + 1;
  }
  if (c->len >= NODE_PROTO_LINE_MAX) {
    c->ctl->stats.bad++;
    node_ctl_error(c, "null", "bad_request", "line longer than %d bytes", NODE_PROTO_LINE_MAX);
    client_close(c);
  }
}

static void on_connection(uv_stream_t *server, int status) {
  node_ctl *ctl = server->data;
  if (status < 0)
    return;
  client *c = calloc(1, sizeof *c);
  if (!c)
    return;
  c->ctl = ctl;
  uv_pipe_init(ctl->loop, &c->pipe, 0);
  c->pipe.data = c;
  c->serial = ++ctl->next_serial;
  c->next = ctl->clients;
  ctl->clients = c;
  ctl->nclients++;
  if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0) {
    client_close(c);
    return;
  }
  /* only our own user (or root) may control us */
  uv_os_fd_t fd;
  struct ucred cred;
  socklen_t cl = sizeof cred;
  if (uv_fileno((uv_handle_t *)&c->pipe, &fd) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 ||
      (cred.uid != geteuid() && cred.uid != 0) || ctl->nclients > MAX_CLIENTS) {
    ctl->stats.refused++;
    NLOG(NODE_LOG_WARN, "ctl", "refused a control connection (uid %d)", (int)cred.uid);
    node_ctl_error(c, "null", "forbidden", "%s",
                   ctl->nclients > MAX_CLIENTS ? "too many control connections"
                                               : "only roostd's own user (or root) may control it");
    client_close(c);
    return;
  }
  uv_read_start((uv_stream_t *)&c->pipe, on_client_alloc, on_client_read);
}

void node_ctl_init(node_ctl *ctl, uv_loop_t *loop, const node_ctl_hooks *hooks) {
  ctl->loop = loop;
  ctl->hooks = *hooks;
}

int node_ctl_open(node_ctl *ctl, const char *path) {
  if (snprintf(ctl->path, sizeof ctl->path, "%s", path) >= (int)sizeof ctl->path) {
    ctl->path[0] = 0; /* never unlink a truncated path */
    NLOG(NODE_LOG_ERROR, "ctl", "control socket path too long: %s", path);
    return -1;
  }
  /* we hold the data-directory lock, so a socket file left at our path is
   * a stale one from a crashed roostd */
  unlink(ctl->path);
  if (uv_pipe_init(ctl->loop, &ctl->pipe, 0) != 0)
    return -1;
  ctl->pipe.data = ctl;
  ctl->open = true;
  mode_t old = umask(077);
  int rv = uv_pipe_bind(&ctl->pipe, ctl->path);
  umask(old);
  if (rv == 0)
    rv = chmod(ctl->path, 0600) == 0 ? 0 : uv_translate_sys_error(errno);
  if (rv == 0)
    rv = uv_listen((uv_stream_t *)&ctl->pipe, 16, on_connection);
  if (rv) {
    NLOG(NODE_LOG_ERROR, "ctl", "cannot open control socket %s: %s", ctl->path, uv_strerror(rv));
    return -1;
  }
  return 0;
}

void node_ctl_close(node_ctl *ctl) {
  if (ctl->open && ctl->path[0])
    unlink(ctl->path);
  for (client *c = ctl->clients; c; c = c->next)
    client_close(c);
  if (ctl->open && !uv_is_closing((uv_handle_t *)&ctl->pipe))
    uv_close((uv_handle_t *)&ctl->pipe, NULL);
}

void node_ctl_get_stats(const node_ctl *ctl, node_ctl_stats *st) {
  *st = ctl->stats;
}

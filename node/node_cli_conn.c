/*
 * node_cli_conn.c - roost's side of the control protocol (docs/control.md):
 * the connection to roostd's socket, the request line, and the wait for the
 * final reply to it (progress lines handed to the command on the way), plus
 * the way every failure is reported (stderr, and a JSON error line with
 * --json) and the helpers that read fields of a reply.
 *
 * Invariants: plain blocking POSIX sockets, every wait bounded by poll()
 * against one monotonic deadline; a reply line is at most c->line_max bytes
 * (NODE_PROTO_LINE_MAX, or NODE_PROTO_BIG_MAX for the long replies) and
 * never more is buffered; a line that is not a JSON object, or a reply
 * without "ok", is a protocol error, never a crash; lines carrying another
 * request's id are skipped.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "node_cli.h"

/* ---- errors ------------------------------------------------------------ */

/* Prints {"error": {"code", "message"}} on stdout. */
void node_cli_json_error(const char *code, const char *msg) {
  node_jw w;
  node_jw_init(&w, 8192);
  node_jw_obj(&w);
  node_jw_key(&w, "error");
  node_jw_obj(&w);
  node_jw_kstr(&w, "code", code);
  node_jw_kstr(&w, "message", msg);
  node_jw_obj_end(&w);
  node_jw_obj_end(&w);
  const char *s = node_jw_done(&w, NULL);
  if (s)
    printf("%s\n", s);
  node_jw_free(&w);
}

/* Reports an error: "roost: MSG" on stderr (plus "try 'roost help'" for a
 * usage error) and, with --json, the error object on stdout.  Returns
 * ex, the exit code. */
int node_cli_fail(const node_cli *c, int ex, const char *code, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fflush(stdout);
  fprintf(stderr, "roost: %s\n", msg);
  if (ex == EXIT_USAGE)
    fprintf(stderr, "try 'roost help'\n");
  if (c && c->o.json)
    node_cli_json_error(code, msg);
  return ex;
}

/* ---- reading a reply --------------------------------------------------- */

void node_cli_reply_free(node_cli_reply *r) {
  json_decref(r->root);
  r->root = NULL;
}

/* v as a printable string in buf, or "-" when it is not a string (or does
 * not fit). */
const char *node_cli_str(const json_t *v, char *buf, size_t len) {
  if (node_json_str(v, buf, len) < 0)
    snprintf(buf, len, "-");
  node_cli_sanitize(buf);
  return buf;
}

bool node_cli_int(const json_t *v, int64_t *out) {
  return node_json_int(v, out) == 0;
}

/* v, a number (integer or not), as JSON writes it, or "-". */
const char *node_cli_num(const json_t *v, char *buf, size_t len) {
  char *t = json_is_number(v) ? node_json_dump(v, NULL) : NULL;
  if (!t || strlen(t) >= len)
    snprintf(buf, len, "-");
  else
    snprintf(buf, len, "%s", t);
  free(t);
  return buf;
}

int64_t node_cli_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads the next line (without '\n') into a malloc'd *out before deadline.
 * LINE_OK, or LINE_EOF (*partial tells whether part of a line had come),
 * LINE_TIMEOUT, LINE_TOOLONG, LINE_IOERR (errno kept). */
int node_cli_conn_line(node_cli_conn *k, int64_t deadline, char **out, size_t *outlen,
                       bool *partial) {
  for (;;) {
    char *nl = memchr(k->buf, '\n', k->len);
    if (nl) {
      size_t n = (size_t)(nl - k->buf);
      char *line = malloc(n + 1);
      if (!line) {
        errno = ENOMEM;
        return LINE_IOERR;
      }
      memcpy(line, k->buf, n);
      line[n] = 0;
      memmove(k->buf, nl + 1, k->len - n - 1);
      k->len -= n + 1;
      *out = line;
      *outlen = n;
      return LINE_OK;
    }
    if (k->len >= k->max)
      return LINE_TOOLONG;
    if (k->len == k->cap) {
      size_t cap = k->cap * 2 > k->max ? k->max : k->cap * 2;
      char *nb = realloc(k->buf, cap);
      if (!nb) {
        errno = ENOMEM;
        return LINE_IOERR;
      }
      k->buf = nb;
      k->cap = cap;
    }
    int64_t left = deadline - node_cli_now_ms();
    if (left <= 0)
      return LINE_TIMEOUT;
    struct pollfd p = {.fd = k->fd, .events = POLLIN};
    int rv = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
    if (rv < 0 && errno == EINTR)
      continue;
    if (rv < 0)
      return LINE_IOERR;
    if (rv == 0)
      continue; /* the deadline check above ends it */
    size_t room = (k->cap < k->max ? k->cap : k->max) - k->len;
    ssize_t got = recv(k->fd, k->buf + k->len, room, 0);
    if (got < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (got == 0 || (got < 0 && (errno == ECONNRESET || errno == EPIPE))) {
      *partial = k->len > 0;
      return LINE_EOF;
    }
    if (got < 0)
      return LINE_IOERR;
    k->len += (size_t)got;
  }
}

/* Parses line[0, len) into r.  0, or -1 if it is not a JSON object. */
static int reply_parse(node_cli_reply *r, const char *line, size_t len) {
  r->root = NULL;
  /* no bound on values beyond the line's: a peers reply holds thousands */
  if (node_json_parse(line, len, SIZE_MAX, &r->root, NULL, 0) != 0)
    return -1;
  return json_is_object(r->root) ? 0 : -1;
}

void node_cli_conn_close(node_cli_conn *k) {
  if (k->fd >= 0)
    close(k->fd);
  free(k->buf);
  k->fd = -1;
  k->buf = NULL;
}

/* Connects to roostd's socket before deadline.  0, or an exit code after
 * reporting. */
int node_cli_conn_open(const node_cli *c, node_cli_conn *k, int64_t deadline) {
  k->fd = -1;
  k->len = 0;
  k->max = c->line_max;
  k->cap = 16384 < k->max ? 16384 : k->max;
  k->buf = malloc(k->cap);
  if (!k->buf)
    return node_cli_fail(c, EXIT_FAILED, "failed", "out of memory");
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, c->sock, strlen(c->sock) + 1); /* length checked in main */
  bool told = false;
  int e;
  for (;;) {
    k->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (k->fd < 0)
      return node_cli_fail(c, EXIT_FAILED, "failed", "socket: %s", strerror(errno));
    /* bounds a connect that waits on a full backlog (Linux honours it), and
     * later sends */
    int64_t left = deadline - node_cli_now_ms();
    if (left < 1)
      left = 1;
    struct timeval tv = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000};
    setsockopt(k->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int rv;
    do
      rv = connect(k->fd, (struct sockaddr *)&sa, sizeof sa);
    while (rv != 0 && errno == EINTR);
    if (rv == 0)
      return 0;
    e = errno;
    close(k->fd);
    k->fd = -1;
    /* status --wait also waits for a roostd that is still starting */
    if (!c->wait_start || (e != ENOENT && e != ECONNREFUSED) || node_cli_now_ms() + 100 >= deadline)
      break;
    if (!told)
      fprintf(stderr, "waiting for roostd to start (socket %s)...\n", c->sock);
    told = true;
    struct timespec ts = {0, 100 * 1000000};
    nanosleep(&ts, NULL);
  }
  if (e == ENOENT || e == ECONNREFUSED) {
    if (c->sock_given)
      return node_cli_fail(c, EXIT_NOT_RUNNING, "not_running",
                           "roostd is not running (socket %s): start it with: roostd --data-dir %s "
                           "--control-socket %s",
                           c->sock, c->cfg.data_dir, c->sock);
    return node_cli_fail(c, EXIT_NOT_RUNNING, "not_running",
                         "roostd is not running (socket %s): start it with: roostd --data-dir %s",
                         c->sock, c->cfg.data_dir);
  }
  if (e == EACCES || e == EPERM)
    return node_cli_fail(c, EXIT_FAILED, "failed",
                         "cannot connect to %s: %s (roostd only answers the user it runs as)",
                         c->sock, strerror(e));
  if (e == EAGAIN || e == EWOULDBLOCK || e == ETIMEDOUT)
    return node_cli_fail(c, EXIT_FAILED, "timeout",
                         "roostd did not accept the connection on %s in time", c->sock);
  return node_cli_fail(c, EXIT_FAILED, "failed", "cannot connect to %s: %s", c->sock, strerror(e));
}

/* Sends all of buf.  0, or an exit code after reporting. */
int node_cli_conn_send(const node_cli *c, node_cli_conn *k, const char *buf, size_t len) {
  while (len) {
    ssize_t n = send(k->fd, buf, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
      return node_cli_fail(c, EXIT_FAILED, "disconnected",
                           "roostd closed the connection before taking the request");
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return node_cli_fail(c, EXIT_FAILED, "timeout", "roostd did not take the request in time");
    if (n < 0)
      return node_cli_fail(c, EXIT_FAILED, "failed", "sending to roostd: %s", strerror(errno));
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Reads lines until the final reply to request NODE_CLI_REQ_ID, handing progress
 * lines to on_progress (if any).  On ok:true fills *r (the caller frees it)
 * and returns EXIT_OK; ok:false and every failure are reported and return
 * their exit code.  With eof_ok, a connection closed before any reply
 * returns CALL_CLOSED silently. */
int node_cli_call(const node_cli *c, node_cli_conn *k, int64_t deadline, int64_t timeout_ms,
                  node_cli_progress_fn on_progress, bool eof_ok, node_cli_reply *r) {
  memset(r, 0, sizeof *r);
  for (;;) {
    char *line = NULL;
    size_t len = 0;
    bool partial = false;
    int rv = node_cli_conn_line(k, deadline, &line, &len, &partial);
    if (rv == LINE_TIMEOUT)
      return node_cli_fail(c, EXIT_FAILED, "timeout",
                           "no reply from roostd within %.3g s (socket %s)",
                           (double)timeout_ms / 1000.0, c->sock);
    if (rv == LINE_TOOLONG)
      return node_cli_fail(c, EXIT_FAILED, "protocol", "roostd sent a line longer than %zu bytes",
                           k->max);
    if (rv == LINE_IOERR)
      return node_cli_fail(c, EXIT_FAILED, "failed", "reading from roostd: %s", strerror(errno));
    if (rv == LINE_EOF) {
      if (eof_ok && !partial)
        return CALL_CLOSED;
      return node_cli_fail(c, EXIT_FAILED, "disconnected", "roostd closed the connection %s",
                           partial ? "in the middle of a reply" : "without replying");
    }
    int prv = reply_parse(r, line, len);
    free(line);
    if (prv != 0) {
      node_cli_reply_free(r);
      return node_cli_fail(c, EXIT_FAILED, "protocol",
                           "roostd sent a line that is not a JSON object");
    }
    const json_t *id = json_object_get(r->root, "id");
    int64_t idv = 0;
    /* an id we did not send is not ours; a missing or null id is roostd
     * answering a request it could not read, which can only be ours */
    if (id && !json_is_null(id) && !(node_cli_int(id, &idv) && idv == NODE_CLI_REQ_ID)) {
      node_cli_reply_free(r);
      continue;
    }
    const json_t *prog = json_object_get(r->root, "progress");
    const json_t *ok = json_object_get(r->root, "ok");
    if (prog && !ok) {
      if (on_progress && json_is_object(prog))
        on_progress(c, prog);
      node_cli_reply_free(r);
      continue;
    }
    bool okv = false;
    if (node_json_bool(ok, &okv) != 0) {
      node_cli_reply_free(r);
      return node_cli_fail(c, EXIT_FAILED, "protocol", "roostd sent a reply without \"ok\"");
    }
    if (okv)
      return EXIT_OK;
    const json_t *err = json_object_get(r->root, "error");
    char code[64], msg[1024];
    node_cli_str(json_object_get(err, "code"), code, sizeof code);
    node_cli_str(json_object_get(err, "message"), msg, sizeof msg);
    node_cli_reply_free(r);
    if (!strcmp(msg, "-"))
      snprintf(msg, sizeof msg, "roostd reported an error");
    if (!strcmp(code, "-"))
      snprintf(code, sizeof code, "failed");
    /* the daemon's code and message go out unchanged in --json */
    fprintf(stderr, "roost: %s: %s\n", code, msg);
    if (c->o.json)
      node_cli_json_error(code, msg);
    return EXIT_FAILED;
  }
}

/* A request being built: {"id":1,"cmd":cmd[,"args":{...}]}. */
void node_cli_req_begin(node_jw *w, const char *cmd) {
  node_jw_init(w, NODE_PROTO_LINE_MAX);
  node_jw_obj(w);
  node_jw_kint(w, "id", NODE_CLI_REQ_ID);
  node_jw_kstr(w, "cmd", cmd);
}

void node_cli_req_args(node_jw *w) {
  node_jw_key(w, "args");
  node_jw_obj(w);
}

/* Finishes request w, connects, sends it and waits (timeout_ms) for the
 * final reply into *r (freed by the caller on EXIT_OK).  The connection is
 * closed again unless keep is non-NULL, where it is handed over (open or
 * not).  Returns an exit code; failures are reported. */
int node_cli_remote(const node_cli *c, node_jw *w, int64_t timeout_ms,
                    node_cli_progress_fn on_progress, node_cli_reply *r, node_cli_conn *keep) {
  int64_t deadline = node_cli_now_ms() + timeout_ms;
  memset(r, 0, sizeof *r);
  node_jw_obj_end(w);
  size_t len;
  const char *req = node_jw_done(w, &len);
  if (!req) {
    node_jw_free(w);
    return node_cli_fail(c, EXIT_FAILED, "failed", "cannot build the request");
  }
  char *line = malloc(len + 2);
  if (!line) {
    node_jw_free(w);
    return node_cli_fail(c, EXIT_FAILED, "failed", "out of memory");
  }
  memcpy(line, req, len);
  line[len++] = '\n';
  node_jw_free(w);

  node_cli_conn k;
  int rv = node_cli_conn_open(c, &k, deadline);
  if (rv == 0)
    rv = node_cli_conn_send(c, &k, line, len);
  free(line);
  if (rv == 0)
    rv = node_cli_call(c, &k, deadline, timeout_ms, on_progress, keep != NULL, r);
  if (keep)
    *keep = k;
  else
    node_cli_conn_close(&k);
  return rv;
}

/* Prints res, the result of a reply, as one JSON line in the form roostd
 * wrote it ({} when there is none).  Both sides serialise with
 * node_json_dump, so this is roostd's line byte for byte. */
void node_cli_print_result(const json_t *res) {
  char *t = res ? node_json_dump(res, NULL) : NULL;
  printf("%s\n", t ? t : "{}");
  free(t);
}

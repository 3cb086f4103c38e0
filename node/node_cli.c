/*
 * node_cli.c - roost, the command-line client of roostd.  It owns the
 * command-line syntax (global options before or after the command), the two
 * commands that need no daemon (init, id: they read or create the identity
 * key in the data directory), and the client half of the control protocol
 * (docs/control.md): one connection, one request with id 1, lines read until
 * the final reply for id 1, progress lines shown for status --wait.  It
 * turns replies into aligned human text or, with --json, prints the
 * daemon's result object unchanged on one line.  docs/cli.md is its manual.
 *
 * Invariants: plain blocking POSIX sockets, every wait bounded by poll()
 * against one monotonic deadline; a reply line is at most 64 KiB (8 MiB for
 * peers, which roostd writes longer) and never more is buffered; nothing a
 * daemon sends can crash it (a missing or mistyped field prints "-"); the
 * exit code is always one of EXIT_* below.  Errors go to stderr (and, with
 * --json, also to stdout as {"error": {"code", "message"}}).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <qrencode.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "node.h"
#include "node_json.h"
#include "node_proto.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_NOT_RUNNING = 3 };

#define DEFAULT_TIMEOUT_MS 10000
#define WAIT_TIMEOUT_MS 30000 /* status --wait */
#define WAIT_GRACE_MS 3000    /* we outwait roostd's own timeout to get its answer */
#define MAX_TIMEOUT_S 86400.0
#define MAX_POS 8 /* positional arguments kept; more is a usage error anyway */
#define FOLLOW_TIMEOUT_MS ((int64_t)1 << 52) /* inbox --follow: until Ctrl-C */
#define STDIN_MAX (64 * 1024) /* a message read from stdin, before its limit is checked */
#define REQ_ID 1

/* ---- the command line -------------------------------------------------- */

typedef struct cli_opts {
  const char *data_dir; /* NULL: $ROOST_DATA_DIR, else ~/.local/share/roost */
  const char *socket;   /* NULL: DATA_DIR/roostd.sock */
  bool json, wait, help, version;
  bool qr, no_qr, follow, unread, no_fetch;
  const char *name;    /* --name (friend add, friend accept) */
  const char *quota;   /* --quota SIZE (host add) */
  const char *expires; /* --expires DAYS (invite) */
  int64_t timeout_ms;  /* -1: the command's default */
  const char *cmd;     /* NULL: none given */
  const char *pos[MAX_POS];
  int npos;
} cli_opts;

typedef struct cli {
  cli_opts o;
  node_config cfg; /* data_dir resolved */
  char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
  bool sock_given; /* --socket, or a path that differs from DATA_DIR/roostd.sock */
  size_t line_max; /* longest reply line accepted, '\n' included */
  bool wait_start; /* retry connecting until the deadline (status --wait) */
} cli;

typedef struct command {
  const char *name;
  int min, max; /* positional arguments after the name */
  int (*run)(cli *c);
} command;

static void usage(FILE *out) {
  fputs("usage: roost [--data-dir DIR] [--socket PATH] [--json] [--timeout SECONDS]\n"
        "             COMMAND [ARGS]\n"
        "\n"
        "roost is the command-line client of roostd, the roost node.  It talks to a\n"
        "running roostd over its control socket; init and id work without one.\n"
        "\n"
        "Commands:\n"
        "  init                        create the data directory and the identity key\n"
        "                              (no daemon needed); prints the ID\n"
        "  id                          print this node's ID (no daemon needed)\n"
        "  status [--wait]             the node's state, table, addresses and counters;\n"
        "                              --wait first waits until roostd is up and has\n"
        "                              joined the network, with progress on stderr\n"
        "  peers                       the contacts in the routing table\n"
        "  lookup ID                   find a node's record: its addresses\n"
        "  ping ID [HOST:PORT]         ask a node for a reply; without HOST:PORT its\n"
        "                              record is looked up first\n"
        "  bootstrap add ID@HOST:PORT  join the network through this node now (it is\n"
        "                              not written to roostd's configuration)\n"
        "  invite [--expires DAYS] [--qr|--no-qr]\n"
        "                              print an invite for a friend (valid 7 days, or\n"
        "                              DAYS from 1 to 365), and its QR code when stdout\n"
        "                              is a terminal (--qr: always, --no-qr: never)\n"
        "  friend add INVITE [--name NAME]\n"
        "                              add the friend of an invite (named as it says, or\n"
        "                              NAME) and send them a friend request with ours\n"
        "  friend list                 your friends\n"
        "  friend remove NAME          forget a friend\n"
        "  friend requests             friend requests waiting for an answer\n"
        "  friend accept N [--name NAME]\n"
        "                              add the sender of request N as a friend\n"
        "  send NAME [TEXT|-]          send a message (TEXT omitted or -: read it from\n"
        "                              stdin; at most 933 bytes)\n"
        "  outbox                      sent messages and their delivery states\n"
        "  inbox [--unread] [--follow] [--no-fetch]\n"
        "                              fetch friends' mailboxes (not with --no-fetch),\n"
        "                              then show messages from friends, oldest first,\n"
        "                              and notices of lost ones; shown messages are\n"
        "                              marked read; --follow then prints new ones\n"
        "                              until Ctrl-C\n"
        "  fetch                       fetch friends' mailboxes now, wait for the result\n"
        "  host add NAME --quota SIZE  keep friend NAME's mailboxes, up to SIZE (e.g.\n"
        "                              10M, 1G)\n"
        "  host list                   friends you host, and who hosts you\n"
        "  host remove NAME            stop hosting friend NAME\n"
        "  mailbox NAME                this epoch's mailbox IDs between you and friend\n"
        "                              NAME (for debugging)\n"
        "  metrics                     roostd's counters, Prometheus text format\n"
        "  stop                        stop roostd and wait until it has exited\n"
        "  help                        this text\n"
        "\n"
        "Options, before or after the command (--opt VALUE or --opt=VALUE; after\n"
        "\"--\" every word is an argument):\n"
        "  --data-dir DIR      roostd's data directory (default $ROOST_DATA_DIR,\n"
        "                      else ~/.local/share/roost)\n"
        "  --socket PATH       roostd's control socket (default DATA_DIR/roostd.sock)\n"
        "  --json              print the result as one line of JSON; errors too, as\n"
        "                      {\"error\": {\"code\": ..., \"message\": ...}} on stdout\n"
        "  --timeout SECONDS   give up waiting for roostd after this long (default 10;\n"
        "                      for status --wait, how long to wait: default 30)\n"
        "  --help, -h          this text\n"
        "  --version           print the version\n"
        "\n"
        "An ID is the 56-character text form 'roost id' prints.\n"
        "\n"
        "Exit status: 0 ok; 1 the command failed (roostd answered with an error or\n"
        "not in time, or a file could not be read); 2 usage error; 3 roostd is not\n"
        "running.\n",
        out);
}

/* The value of option name: after '=' or the next argument.  NULL + err. */
static const char *opt_value(int argc, char **argv, int *i, const char *eq, const char *name,
                             char *err, size_t errlen) {
  if (eq)
    return eq + 1;
  if (*i + 1 >= argc) {
    snprintf(err, errlen, "%s needs a value", name);
    return NULL;
  }
  return argv[++*i];
}

/* Seconds (a positive decimal number) -> milliseconds, or -1. */
static int64_t parse_seconds(const char *s) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (!*s || *end || errno || !(v > 0) || v > MAX_TIMEOUT_S)
    return -1;
  int64_t ms = (int64_t)(v * 1000.0 + 0.999);
  return ms < 1 ? 1 : ms;
}

/* Parses argv into o: options anywhere, "--" ends them, the first other
 * word is the command and the rest are its arguments.  Checks syntax only
 * (the command's name and arity are checked by the caller).  0, or -1 with
 * a one-line reason in err. */
static int parse_args(int argc, char **argv, cli_opts *o, char *err, size_t errlen) {
  memset(o, 0, sizeof *o);
  o->timeout_ms = -1;
  bool opts_done = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (opts_done || a[0] != '-' || a[1] == 0) {
      if (!o->cmd)
        o->cmd = a;
      else if (o->npos < MAX_POS)
        o->pos[o->npos++] = a;
      else {
        snprintf(err, errlen, "too many arguments");
        return -1;
      }
      continue;
    }
    if (!strcmp(a, "--")) {
      opts_done = true;
      continue;
    }
    if (!strcmp(a, "-h")) {
      o->help = true;
      continue;
    }
    if (a[1] != '-') {
      snprintf(err, errlen, "unknown option '%s'", a);
      return -1;
    }
    const char *eq = strchr(a, '=');
    size_t n = eq ? (size_t)(eq - a) : strlen(a);
    char name[32];
    if (n >= sizeof name) {
      snprintf(err, errlen, "unknown option '%.*s'", (int)(n > 64 ? 64 : n), a);
      return -1;
    }
    memcpy(name, a, n);
    name[n] = 0;
    bool flag = !strcmp(name, "--json") || !strcmp(name, "--wait") || !strcmp(name, "--help") ||
                !strcmp(name, "--version") || !strcmp(name, "--qr") || !strcmp(name, "--no-qr") ||
                !strcmp(name, "--follow") || !strcmp(name, "--unread") ||
                !strcmp(name, "--no-fetch");
    if (flag && eq) {
      snprintf(err, errlen, "%s takes no value", name);
      return -1;
    }
    if (!strcmp(name, "--json")) {
      o->json = true;
    } else if (!strcmp(name, "--wait")) {
      o->wait = true;
    } else if (!strcmp(name, "--help")) {
      o->help = true;
    } else if (!strcmp(name, "--version")) {
      o->version = true;
    } else if (!strcmp(name, "--qr")) {
      o->qr = true;
    } else if (!strcmp(name, "--no-qr")) {
      o->no_qr = true;
    } else if (!strcmp(name, "--follow")) {
      o->follow = true;
    } else if (!strcmp(name, "--unread")) {
      o->unread = true;
    } else if (!strcmp(name, "--no-fetch")) {
      o->no_fetch = true;
    } else if (!strcmp(name, "--name") || !strcmp(name, "--quota") || !strcmp(name, "--expires")) {
      const char *v = opt_value(argc, argv, &i, eq, name, err, errlen);
      if (!v)
        return -1;
      if (!*v) {
        snprintf(err, errlen, "%s: empty value", name);
        return -1;
      }
      if (name[2] == 'n')
        o->name = v;
      else if (name[2] == 'q')
        o->quota = v;
      else
        o->expires = v;
    } else if (!strcmp(name, "--data-dir") || !strcmp(name, "--socket") ||
               !strcmp(name, "--timeout")) {
      const char *v = opt_value(argc, argv, &i, eq, name, err, errlen);
      if (!v)
        return -1;
      if (name[2] == 't') {
        if ((o->timeout_ms = parse_seconds(v)) < 0) {
          snprintf(err, errlen, "--timeout: '%s' is not a number of seconds above 0 (at most %.0f)",
                   v, MAX_TIMEOUT_S);
          return -1;
        }
      } else if (!*v) {
        snprintf(err, errlen, "%s: empty path", name);
        return -1;
      } else if (name[2] == 'd') {
        o->data_dir = v;
      } else {
        o->socket = v;
      }
    } else {
      snprintf(err, errlen, "unknown option '%s'", name);
      return -1;
    }
  }
  return 0;
}

/* ---- output ------------------------------------------------------------ */

/* Prints {"error": {"code", "message"}} on stdout. */
static void json_error(const char *code, const char *msg) {
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
static int fail(const cli *c, int ex, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(const cli *c, int ex, const char *code, const char *fmt, ...) {
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
    json_error(code, msg);
  return ex;
}

/* Replaces control characters in s (from the daemon) so they cannot drive
 * the terminal. */
static void sanitize(char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      *s = '?';
}

/* Terminal columns of UTF-8 s, counting one per character. */
static size_t columns(const char *s) {
  size_t n = 0;
  for (; *s; s++)
    n += ((unsigned char)*s & 0xc0) != 0x80;
  return n;
}

static void pad(FILE *f, const char *s, size_t width) {
  fputs(s, f);
  for (size_t n = columns(s); n < width; n++)
    fputc(' ', f);
}

/* "42s", "3m 07s", "5h 02m", "2d 04h". */
static void fmt_duration(int64_t s, char *buf, size_t len) {
  if (s < 0)
    snprintf(buf, len, "-");
  else if (s < 60)
    snprintf(buf, len, "%llds", (long long)s);
  else if (s < 3600)
    snprintf(buf, len, "%lldm %02llds", (long long)(s / 60), (long long)(s % 60));
  else if (s < 86400)
    snprintf(buf, len, "%lldh %02lldm", (long long)(s / 3600), (long long)(s / 60 % 60));
  else
    snprintf(buf, len, "%lldd %02lldh", (long long)(s / 86400), (long long)(s / 3600 % 24));
}

/* ---- reading a reply --------------------------------------------------- */

/* One parsed line from roostd. */
typedef struct reply {
  json_t *root; /* owned */
} reply;

static void reply_free(reply *r) {
  json_decref(r->root);
  r->root = NULL;
}

/* Field key of object obj, or NULL (also when obj is NULL or no object). */
static const json_t *jget(const json_t *obj, const char *key) {
  return json_object_get(obj, key);
}

/* v as a printable string in buf, or "-" when it is not a string (or does
 * not fit). */
static const char *jstr(const json_t *v, char *buf, size_t len) {
  if (node_json_str(v, buf, len) < 0)
    snprintf(buf, len, "-");
  sanitize(buf);
  return buf;
}

static bool jint(const json_t *v, int64_t *out) {
  return node_json_int(v, out) == 0;
}

/* v, a number (integer or not), as JSON writes it, or "-". */
static const char *jnum(const json_t *v, char *buf, size_t len) {
  char *t = json_is_number(v) ? node_json_dump(v, NULL) : NULL;
  if (!t || strlen(t) >= len)
    snprintf(buf, len, "-");
  else
    snprintf(buf, len, "%s", t);
  free(t);
  return buf;
}

static bool is_obj(const json_t *v) {
  return json_is_object(v);
}

/* The connection to roostd and what it has sent that is not read yet. */
typedef struct conn {
  int fd;
  char *buf;  /* owned; grows by doubling up to max */
  size_t len; /* bytes held */
  size_t cap; /* bytes allocated */
  size_t max; /* longest line, '\n' included */
} conn;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum { LINE_OK = 1, LINE_EOF = 0, LINE_TIMEOUT = -1, LINE_TOOLONG = -2, LINE_IOERR = -3 };

/* Reads the next line (without '\n') into a malloc'd *out before deadline.
 * LINE_OK, or LINE_EOF (*partial tells whether part of a line had come),
 * LINE_TIMEOUT, LINE_TOOLONG, LINE_IOERR (errno kept). */
static int conn_line(conn *k, int64_t deadline, char **out, size_t *outlen, bool *partial) {
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
    int64_t left = deadline - now_ms();
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
static int reply_parse(reply *r, const char *line, size_t len) {
  r->root = NULL;
  /* no bound on values beyond the line's: a peers reply holds thousands */
  if (node_json_parse(line, len, SIZE_MAX, &r->root, NULL, 0) != 0)
    return -1;
  return json_is_object(r->root) ? 0 : -1;
}

/* The connection, the request and the wait for its final reply. */
typedef void (*progress_fn)(const cli *c, const json_t *progress);

static void conn_close(conn *k) {
  if (k->fd >= 0)
    close(k->fd);
  free(k->buf);
  k->fd = -1;
  k->buf = NULL;
}

/* Connects to roostd's socket before deadline.  0, or an exit code after
 * reporting. */
static int conn_open(const cli *c, conn *k, int64_t deadline) {
  k->fd = -1;
  k->len = 0;
  k->max = c->line_max;
  k->cap = 16384 < k->max ? 16384 : k->max;
  k->buf = malloc(k->cap);
  if (!k->buf)
    return fail(c, EXIT_FAILED, "failed", "out of memory");
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, c->sock, strlen(c->sock) + 1); /* length checked in main */
  bool told = false;
  int e;
  for (;;) {
    k->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (k->fd < 0)
      return fail(c, EXIT_FAILED, "failed", "socket: %s", strerror(errno));
    /* bounds a connect that waits on a full backlog (Linux honours it), and
     * later sends */
    int64_t left = deadline - now_ms();
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
    if (!c->wait_start || (e != ENOENT && e != ECONNREFUSED) || now_ms() + 100 >= deadline)
      break;
    if (!told)
      fprintf(stderr, "waiting for roostd to start (socket %s)...\n", c->sock);
    told = true;
    struct timespec ts = {0, 100 * 1000000};
    nanosleep(&ts, NULL);
  }
  if (e == ENOENT || e == ECONNREFUSED) {
    if (c->sock_given)
      return fail(c, EXIT_NOT_RUNNING, "not_running",
                  "roostd is not running (socket %s): start it with: roostd --data-dir %s "
                  "--control-socket %s",
                  c->sock, c->cfg.data_dir, c->sock);
    return fail(c, EXIT_NOT_RUNNING, "not_running",
                "roostd is not running (socket %s): start it with: roostd --data-dir %s", c->sock,
                c->cfg.data_dir);
  }
  if (e == EACCES || e == EPERM)
    return fail(c, EXIT_FAILED, "failed",
                "cannot connect to %s: %s (roostd only answers the user it runs as)", c->sock,
                strerror(e));
  if (e == EAGAIN || e == EWOULDBLOCK || e == ETIMEDOUT)
    return fail(c, EXIT_FAILED, "timeout", "roostd did not accept the connection on %s in time",
                c->sock);
  return fail(c, EXIT_FAILED, "failed", "cannot connect to %s: %s", c->sock, strerror(e));
}

/* Sends all of buf.  0, or an exit code after reporting. */
static int conn_send(const cli *c, conn *k, const char *buf, size_t len) {
  while (len) {
    ssize_t n = send(k->fd, buf, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
      return fail(c, EXIT_FAILED, "disconnected",
                  "roostd closed the connection before taking the request");
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return fail(c, EXIT_FAILED, "timeout", "roostd did not take the request in time");
    if (n < 0)
      return fail(c, EXIT_FAILED, "failed", "sending to roostd: %s", strerror(errno));
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

#define CALL_CLOSED (-1) /* returned by call() when eof_ok and roostd closed before replying */

/* Reads lines until the final reply to request REQ_ID, handing progress
 * lines to on_progress (if any).  On ok:true fills *r (the caller frees it)
 * and returns EXIT_OK; ok:false and every failure are reported and return
 * their exit code.  With eof_ok, a connection closed before any reply
 * returns CALL_CLOSED silently. */
static int call(const cli *c, conn *k, int64_t deadline, int64_t timeout_ms,
                progress_fn on_progress, bool eof_ok, reply *r) {
  memset(r, 0, sizeof *r);
  for (;;) {
    char *line = NULL;
    size_t len = 0;
    bool partial = false;
    int rv = conn_line(k, deadline, &line, &len, &partial);
    if (rv == LINE_TIMEOUT)
      return fail(c, EXIT_FAILED, "timeout", "no reply from roostd within %.3g s (socket %s)",
                  (double)timeout_ms / 1000.0, c->sock);
    if (rv == LINE_TOOLONG)
      return fail(c, EXIT_FAILED, "protocol", "roostd sent a line longer than %zu bytes", k->max);
    if (rv == LINE_IOERR)
      return fail(c, EXIT_FAILED, "failed", "reading from roostd: %s", strerror(errno));
    if (rv == LINE_EOF) {
      if (eof_ok && !partial)
        return CALL_CLOSED;
      return fail(c, EXIT_FAILED, "disconnected", "roostd closed the connection %s",
                  partial ? "in the middle of a reply" : "without replying");
    }
    int prv = reply_parse(r, line, len);
    free(line);
    if (prv != 0) {
      reply_free(r);
      return fail(c, EXIT_FAILED, "protocol", "roostd sent a line that is not a JSON object");
    }
    const json_t *id = jget(r->root, "id");
    int64_t idv = 0;
    /* an id we did not send is not ours; a missing or null id is roostd
     * answering a request it could not read, which can only be ours */
    if (id && !json_is_null(id) && !(jint(id, &idv) && idv == REQ_ID)) {
      reply_free(r);
      continue;
    }
    const json_t *prog = jget(r->root, "progress");
    const json_t *ok = jget(r->root, "ok");
    if (prog && !ok) {
      if (on_progress && is_obj(prog))
        on_progress(c, prog);
      reply_free(r);
      continue;
    }
    bool okv = false;
    if (node_json_bool(ok, &okv) != 0) {
      reply_free(r);
      return fail(c, EXIT_FAILED, "protocol", "roostd sent a reply without \"ok\"");
    }
    if (okv)
      return EXIT_OK;
    const json_t *err = jget(r->root, "error");
    char code[64], msg[1024];
    jstr(jget(err, "code"), code, sizeof code);
    jstr(jget(err, "message"), msg, sizeof msg);
    reply_free(r);
    if (!strcmp(msg, "-"))
      snprintf(msg, sizeof msg, "roostd reported an error");
    if (!strcmp(code, "-"))
      snprintf(code, sizeof code, "failed");
    /* the daemon's code and message go out unchanged in --json */
    fprintf(stderr, "roost: %s: %s\n", code, msg);
    if (c->o.json)
      json_error(code, msg);
    return EXIT_FAILED;
  }
}

/* A request being built: {"id":1,"cmd":cmd[,"args":{...}]}. */
static void req_begin(node_jw *w, const char *cmd) {
  node_jw_init(w, NODE_PROTO_LINE_MAX);
  node_jw_obj(w);
  node_jw_kint(w, "id", REQ_ID);
  node_jw_kstr(w, "cmd", cmd);
}

static void req_args(node_jw *w) {
  node_jw_key(w, "args");
  node_jw_obj(w);
}

/* Finishes request w, connects, sends it and waits (timeout_ms) for the
 * final reply into *r (freed by the caller on EXIT_OK).  The connection is
 * closed again unless keep is non-NULL, where it is handed over (open or
 * not).  Returns an exit code; failures are reported. */
static int remote(const cli *c, node_jw *w, int64_t timeout_ms, progress_fn on_progress, reply *r,
                  conn *keep) {
  int64_t deadline = now_ms() + timeout_ms;
  memset(r, 0, sizeof *r);
  node_jw_obj_end(w);
  size_t len;
  const char *req = node_jw_done(w, &len);
  if (!req) {
    node_jw_free(w);
    return fail(c, EXIT_FAILED, "failed", "cannot build the request");
  }
  char *line = malloc(len + 2);
  if (!line) {
    node_jw_free(w);
    return fail(c, EXIT_FAILED, "failed", "out of memory");
  }
  memcpy(line, req, len);
  line[len++] = '\n';
  node_jw_free(w);

  conn k;
  int rv = conn_open(c, &k, deadline);
  if (rv == 0)
    rv = conn_send(c, &k, line, len);
  free(line);
  if (rv == 0)
    rv = call(c, &k, deadline, timeout_ms, on_progress, keep != NULL, r);
  if (keep)
    *keep = k;
  else
    conn_close(&k);
  return rv;
}

/* Prints res, the result of a reply, as one JSON line in the form roostd
 * wrote it ({} when there is none).  Both sides serialise with
 * node_json_dump, so this is roostd's line byte for byte. */
static void print_json_result(const json_t *res) {
  char *t = res ? node_json_dump(res, NULL) : NULL;
  printf("%s\n", t ? t : "{}");
  free(t);
}

static int timeout_or(const cli *c, int64_t def) {
  return (int)(c->o.timeout_ms > 0 ? c->o.timeout_ms : def);
}

/* ---- commands without a daemon ----------------------------------------- */

/* Prints the identity as JSON: id, node_id and, for init, created and
 * data_dir. */
static void print_identity_json(const cli *c, const uint8_t pk[static DHT_PK_LEN], int created) {
  char text[NODE_IDTEXT_LEN + 1], nid[2 * DHT_ID_LEN + 1];
  uint8_t id[DHT_ID_LEN];
  node_idtext_encode(pk, text);
  dht_id_from_pk(id, pk);
  node_proto_hex(id, sizeof id, nid);
  node_jw w;
  node_jw_init(&w, 8192);
  node_jw_obj(&w);
  node_jw_kstr(&w, "id", text);
  node_jw_kstr(&w, "node_id", nid);
  if (created >= 0) {
    node_jw_kbool(&w, "created", created);
    node_jw_kstr(&w, "data_dir", c->cfg.data_dir);
  }
  node_jw_obj_end(&w);
  const char *s = node_jw_done(&w, NULL);
  if (s)
    printf("%s\n", s);
  node_jw_free(&w);
}

static void key_path(const cli *c, char *out, size_t len) {
  snprintf(out, len, "%s/identity.key", c->cfg.data_dir);
}

static int cmd_init(cli *c) {
  char err[PATH_MAX + 256], path[PATH_MAX + 32];
  if (node_dir_prepare(c->cfg.data_dir, err, sizeof err) != 0)
    return fail(c, EXIT_FAILED, "failed", "%s", err);
  key_path(c, path, sizeof path);
  struct stat st;
  bool existed = lstat(path, &st) == 0;
  dht_identity ident;
  if (node_identity_load(path, &ident, !existed, err, sizeof err) != 0)
    return fail(c, EXIT_FAILED, "failed", "%s", err);
  uint8_t pk[DHT_PK_LEN];
  memcpy(pk, ident.pk, sizeof pk);
  sodium_memzero(&ident, sizeof ident);
  char text[NODE_IDTEXT_LEN + 1];
  node_idtext_encode(pk, text);
  if (c->o.json)
    print_identity_json(c, pk, !existed);
  else if (existed)
    printf("identity already exists: %s\n", text);
  else
    printf("created identity %s in %s\n", text, c->cfg.data_dir);
  return EXIT_OK;
}

static int cmd_id(cli *c) {
  char err[PATH_MAX + 256], path[PATH_MAX + 32];
  key_path(c, path, sizeof path);
  dht_identity ident;
  if (node_identity_load(path, &ident, false, err, sizeof err) != 0)
    return fail(c, EXIT_FAILED, "failed", "%s", err);
  uint8_t pk[DHT_PK_LEN];
  memcpy(pk, ident.pk, sizeof pk);
  sodium_memzero(&ident, sizeof ident);
  if (c->o.json) {
    print_identity_json(c, pk, -1);
  } else {
    char text[NODE_IDTEXT_LEN + 1];
    node_idtext_encode(pk, text);
    printf("%s\n", text);
  }
  return EXIT_OK;
}

static int cmd_help(cli *c) {
  (void)c;
  usage(stdout);
  return EXIT_OK;
}

/* ---- commands through roostd -------------------------------------------- */

/* Checks an ID typed by the user and writes its canonical (lower-case)
 * form.  0, or a usage error after reporting. */
static int check_id(const cli *c, const char *s, char out[static NODE_IDTEXT_LEN + 1]) {
  uint8_t pk[DHT_PK_LEN];
  int rv = node_idtext_decode(s, pk);
  if (rv == -1)
    return fail(c, EXIT_USAGE, "usage", "'%s' is not a roost ID (%d characters a-z, 2-7)", s,
                NODE_IDTEXT_LEN);
  if (rv == -2)
    return fail(c, EXIT_USAGE, "usage", "the ID '%s' has a typo (its checksum does not match)", s);
  node_idtext_encode(pk, out);
  return 0;
}

static void kv(const char *key, const char *value) {
  printf("%-16s%s\n", key, value);
}

/* Prints a list value: the first item after the key, the rest aligned
 * under it. */
static void kv_item(const char *key, int index, const char *value) {
  kv(index == 0 ? key : "", value);
}

static void print_status(const json_t *res) {
  char a[512], b[64], d[64], e[64], line[768];
  int64_t v;
  kv("state", jstr(jget(res, "state"), a, sizeof a));
  kv("ID", jstr(jget(res, "id"), a, sizeof a));
  kv("mode", jstr(jget(res, "mode"), a, sizeof a));
  kv("version", jstr(jget(res, "version"), a, sizeof a));
  if (jint(jget(res, "uptime_s"), &v))
    fmt_duration(v, a, sizeof a);
  else
    snprintf(a, sizeof a, "-");
  kv("uptime", a);
  kv("table size", jnum(jget(res, "table_size"), a, sizeof a));
  kv("buckets", jnum(jget(res, "buckets"), a, sizeof a));
  kv("records stored", jnum(jget(res, "records_stored"), a, sizeof a));

  const json_t *l = jget(res, "listen"), *x;
  size_t i;
  int shown = 0;
  json_array_foreach(l, i, x) {
    kv_item("listen", shown++, jstr(x, a, sizeof a));
  }
  if (!shown)
    kv("listen", "-");

  const json_t *ad = jget(res, "addresses");
  shown = 0;
  json_array_foreach(ad, i, x) {
    jstr(jget(x, "type"), b, sizeof b);
    jstr(jget(x, "addr"), a, sizeof a);
    snprintf(line, sizeof line, "%-10s%s", b, a);
    kv_item("addresses", shown++, line);
  }
  if (!shown)
    kv("addresses", "-");

  snprintf(line, sizeof line, "rx %s, tx %s, dropped %s",
           jnum(jget(res, "rx_packets"), b, sizeof b), jnum(jget(res, "tx_packets"), d, sizeof d),
           jnum(jget(res, "dropped"), e, sizeof e));
  kv("packets", line);
}

/* status --wait: "bootstrapping: 12 contacts..." on stderr. */
static void status_progress(const cli *c, const json_t *prog) {
  (void)c;
  char state[64], n[32];
  const json_t *st = jget(prog, "state");
  const json_t *ts = jget(prog, "table_size");
  if (!ts)
    ts = jget(prog, "contacts");
  jstr(st, state, sizeof state);
  if (!st)
    snprintf(state, sizeof state, "waiting");
  if (ts)
    fprintf(stderr, "%s: %s contacts...\n", state, jnum(ts, n, sizeof n));
  else
    fprintf(stderr, "%s...\n", state);
}

static int cmd_status(cli *c) {
  node_jw w;
  req_begin(&w, "status");
  int64_t timeout = timeout_or(c, c->o.wait ? WAIT_TIMEOUT_MS : DEFAULT_TIMEOUT_MS);
  if (c->o.wait) {
    req_args(&w);
    node_jw_kbool(&w, "wait", true);
    node_jw_kint(&w, "timeout_ms", timeout);
    node_jw_obj_end(&w);
    timeout += WAIT_GRACE_MS; /* roostd's own "timeout" error says more than ours */
    c->wait_start = true;
  }
  reply r;
  int rv = remote(c, &w, timeout, c->o.wait ? status_progress : NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = jget(r.root, "result");
  if (c->o.json)
    print_json_result(res);
  else
    print_status(res);
  reply_free(&r);
  return EXIT_OK;
}

enum { PCOLS = 5 };

static int cmd_peers(cli *c) {
  c->line_max = NODE_PROTO_BIG_MAX;
  node_jw w;
  req_begin(&w, "peers");
  reply r;
  int rv = remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = jget(r.root, "result");
  if (c->o.json) {
    print_json_result(res);
    reply_free(&r);
    return EXIT_OK;
  }
  const json_t *arr = jget(res, "peers"), *x;
  int count = (int)json_array_size(arr);
  if (count == 0) {
    printf("no peers in the routing table\n");
    reply_free(&r);
    return EXIT_OK;
  }
  typedef char cell[DHT_ADDR_STRLEN + 16];
  cell *cells = calloc((size_t)(count + 1) * PCOLS, sizeof *cells);
  if (!cells) {
    reply_free(&r);
    return fail(c, EXIT_FAILED, "failed", "out of memory");
  }
  static const char *const head[PCOLS] = {"ID", "ADDRESS", "RTT", "LAST SEEN", "FAILS"};
  size_t width[PCOLS] = {0};
  for (int j = 0; j < PCOLS; j++)
    snprintf(cells[j], sizeof cells[j], "%s", head[j]);
  size_t i;
  json_array_foreach(arr, i, x) {
    cell *row = cells + (i + 1) * PCOLS;
    char idt[NODE_IDTEXT_LEN + 8], num[32];
    int64_t v;
    jstr(jget(x, "id"), idt, sizeof idt);
    if (strlen(idt) > 12)
      snprintf(row[0], sizeof row[0], "%.12s\u2026", idt);
    else
      snprintf(row[0], sizeof row[0], "%s", idt);
    jstr(jget(x, "addr"), row[1], sizeof row[1]);
    const json_t *rtt = jget(x, "rtt_ms");
    if (json_is_number(rtt))
      snprintf(row[2], sizeof row[2], "%s ms", jnum(rtt, num, sizeof num));
    else
      snprintf(row[2], sizeof row[2], "-");
    const json_t *seen = jget(x, "last_reply_s");
    if (json_is_null(seen)) {
      snprintf(row[3], sizeof row[3], "never");
    } else if (jint(seen, &v)) {
      fmt_duration(v, num, sizeof num);
      snprintf(row[3], sizeof row[3], "%s ago", num);
    } else {
      snprintf(row[3], sizeof row[3], "-");
    }
    jnum(jget(x, "fails"), row[4], sizeof row[4]);
  }
  for (int k = 0; k <= count; k++)
    for (int j = 0; j < PCOLS; j++) {
      size_t n = columns(cells[(size_t)k * PCOLS + (size_t)j]);
      if (n > width[j])
        width[j] = n;
    }
  for (int k = 0; k <= count; k++) {
    for (int j = 0; j < PCOLS; j++) {
      const char *s = cells[(size_t)k * PCOLS + (size_t)j];
      if (j == PCOLS - 1)
        fputs(s, stdout);
      else
        pad(stdout, s, width[j] + 2);
    }
    fputc('\n', stdout);
  }
  free(cells);
  reply_free(&r);
  return EXIT_OK;
}

static int cmd_lookup(cli *c) {
  char id[NODE_IDTEXT_LEN + 1];
  int rv = check_id(c, c->o.pos[0], id);
  if (rv)
    return rv;
  node_jw w;
  req_begin(&w, "lookup");
  req_args(&w);
  node_jw_kstr(&w, "id", id);
  node_jw_obj_end(&w);
  reply r;
  if ((rv = remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL)) != EXIT_OK)
    return rv;
  const json_t *res = jget(r.root, "result");
  if (c->o.json) {
    print_json_result(res);
    reply_free(&r);
    return EXIT_OK;
  }
  const json_t *ad = jget(res, "addresses"), *x;
  size_t count = json_array_size(ad), i;
  size_t tw = 0;
  char type[64], addr[512], a[32], b[32], d[32];
  json_array_foreach(ad, i, x) {
    size_t n = columns(jstr(jget(x, "type"), type, sizeof type));
    if (n > tw)
      tw = n;
  }
  json_array_foreach(ad, i, x) {
    pad(stdout, jstr(jget(x, "type"), type, sizeof type), tw + 2);
    printf("%s\n", jstr(jget(x, "addr"), addr, sizeof addr));
  }
  if (count == 0)
    printf("the record lists no addresses\n");
  jnum(jget(res, "rounds"), a, sizeof a);
  jnum(jget(res, "messages"), b, sizeof b);
  printf("found in %s round%s, %s message%s, %s ms\n", a, strcmp(a, "1") ? "s" : "", b,
         strcmp(b, "1") ? "s" : "", jnum(jget(res, "time_ms"), d, sizeof d));
  reply_free(&r);
  return EXIT_OK;
}

static int cmd_ping(cli *c) {
  char id[NODE_IDTEXT_LEN + 1];
  int rv = check_id(c, c->o.pos[0], id);
  if (rv)
    return rv;
  char addr[DHT_ADDR_STRLEN];
  if (c->o.npos > 1) {
    dht_addr a;
    if (node_addr_parse(c->o.pos[1], &a) != 0)
      return fail(c, EXIT_USAGE, "usage",
                  "'%s' is not a numeric HOST:PORT (e.g. 192.0.2.1:7464 or [2001:db8::1]:7464)",
                  c->o.pos[1]);
    dht_addr_fmt(&a, addr, sizeof addr);
  }
  node_jw w;
  req_begin(&w, "ping");
  req_args(&w);
  node_jw_kstr(&w, "id", id);
  if (c->o.npos > 1)
    node_jw_kstr(&w, "addr", addr);
  node_jw_obj_end(&w);
  reply r;
  if ((rv = remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL)) != EXIT_OK)
    return rv;
  const json_t *res = jget(r.root, "result");
  if (c->o.json) {
    print_json_result(res);
  } else {
    char from[512], seen[512], rtt[32];
    printf("reply from %s in %s ms (it sees us as %s)\n",
           jstr(jget(res, "addr"), from, sizeof from), jnum(jget(res, "rtt_ms"), rtt, sizeof rtt),
           jstr(jget(res, "seen_as"), seen, sizeof seen));
  }
  reply_free(&r);
  return EXIT_OK;
}

static int cmd_bootstrap(cli *c) {
  if (strcmp(c->o.pos[0], "add") != 0)
    return fail(c, EXIT_USAGE, "usage", "unknown bootstrap command '%s' (only: bootstrap add)",
                c->o.pos[0]);
  if (c->o.npos < 2)
    return fail(c, EXIT_USAGE, "usage", "bootstrap add needs ID@HOST:PORT");
  dht_peer p;
  char err[512];
  if (node_peer_parse(c->o.pos[1], &p, err, sizeof err) != 0)
    return fail(c, EXIT_USAGE, "usage", "%s", err);
  char peer[NODE_IDTEXT_LEN + 1 + DHT_ADDR_STRLEN + 1], id[NODE_IDTEXT_LEN + 1];
  char addr[DHT_ADDR_STRLEN];
  node_idtext_encode(p.pk, id);
  snprintf(peer, sizeof peer, "%s@%s", id, dht_addr_fmt(&p.addr, addr, sizeof addr));
  node_jw w;
  req_begin(&w, "bootstrap_add");
  req_args(&w);
  node_jw_kstr(&w, "peer", peer);
  node_jw_obj_end(&w);
  reply r;
  int rv = remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  if (c->o.json)
    print_json_result(jget(r.root, "result"));
  else
    printf("added bootstrap peer %s; roostd is joining through it\n", peer);
  reply_free(&r);
  return EXIT_OK;
}

static int cmd_metrics(cli *c) {
  node_jw w;
  req_begin(&w, "metrics");
  reply r;
  int rv = remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = jget(r.root, "result");
  if (c->o.json) {
    print_json_result(res);
    reply_free(&r);
    return EXIT_OK;
  }
  const json_t *tx = jget(res, "text");
  size_t cap = json_string_length(tx) + 1;
  char *text = malloc(cap);
  int n = text ? node_json_str(tx, text, cap) : -1;
  if (n < 0) {
    free(text);
    reply_free(&r);
    return fail(c, EXIT_FAILED, "protocol", "roostd's metrics reply has no text");
  }
  fwrite(text, 1, (size_t)n, stdout);
  free(text);
  reply_free(&r);
  return EXIT_OK;
}

/* True once nothing answers on the socket any more. */
static bool socket_gone(const cli *c) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, c->sock, strlen(c->sock) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return false;
  int rv = connect(fd, (struct sockaddr *)&sa, sizeof sa);
  int e = errno;
  close(fd);
  return rv != 0 && (e == ENOENT || e == ECONNREFUSED);
}

/* 1 once no process holds DATA_DIR/roostd.lock (roostd holds it until it
 * exits; a zombie holds nothing), 0 while one does, -1 when there is no lock
 * file to ask or we do not know the data directory (--socket alone).  The
 * probe is a shared lock dropped at once: a roostd starting in that instant
 * would refuse to start, which is why it is only asked during stop. */
static int lock_released(const cli *c) {
  if (c->o.socket && !c->o.data_dir)
    return -1;
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/roostd.lock", c->cfg.data_dir);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return -1;
  int rv = flock(fd, LOCK_SH | LOCK_NB);
  int e = errno;
  close(fd); /* drops the lock if we got it */
  if (rv == 0)
    return 1;
  return e == EWOULDBLOCK ? 0 : -1;
}

static void nap_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

static int cmd_stop(cli *c) {
  int64_t timeout = timeout_or(c, DEFAULT_TIMEOUT_MS);
  int64_t deadline = now_ms() + timeout;
  node_jw w;
  req_begin(&w, "stop");
  reply r;
  conn k;
  int rv = remote(c, &w, timeout, NULL, &r, &k);
  if (rv != EXIT_OK && rv != CALL_CLOSED) {
    conn_close(&k);
    return rv;
  }
  /* roostd has said yes (or has gone already): wait for our connection to
   * close, then for the socket to stop answering */
  bool closed = rv == CALL_CLOSED;
  while (!closed && now_ms() < deadline) {
    char *line = NULL;
    size_t len;
    bool partial;
    int lr = conn_line(&k, deadline, &line, &len, &partial);
    free(line);
    if (lr == LINE_EOF || lr == LINE_IOERR || lr == LINE_TOOLONG)
      closed = true;
  }
  conn_close(&k);
  bool gone = false;
  while (closed && !(gone = socket_gone(c)) && now_ms() < deadline)
    nap_ms(50);
  /* the socket goes before the process does: wait for the exit itself, so
   * that "roost stop && roostd ..." finds the data directory free */
  int released = gone ? lock_released(c) : -1;
  while (released == 0 && now_ms() < deadline) {
    nap_ms(50);
    released = lock_released(c);
  }
  if (!gone || released == 0) {
    if (rv == EXIT_OK)
      reply_free(&r);
    return fail(c, EXIT_FAILED, "timeout", "roostd accepted the stop command but %s after %.3g s",
                gone ? "has not exited" : "still answers", (double)timeout / 1000.0);
  }
  if (c->o.json)
    print_json_result(rv == EXIT_OK ? jget(r.root, "result") : NULL);
  else
    printf("roostd stopped\n");
  if (rv == EXIT_OK)
    reply_free(&r);
  return EXIT_OK;
}

/* ---- messaging ------------------------------------------------------------ */

/* "2025-01-02 13:04" in local time, or "-". */
static void fmt_time(int64_t unix_ms, char *buf, size_t len) {
  time_t t = (time_t)(unix_ms / 1000);
  struct tm tm;
  if (unix_ms <= 0 || !localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M", &tm))
    snprintf(buf, len, "-");
}

static bool qr_dark(const QRcode *q, int x, int y) {
  return x >= 0 && y >= 0 && x < q->width && y < q->width && (q->data[y * q->width + x] & 1);
}

/* Prints text as a QR code with Unicode half blocks, two rows of modules
 * per line, light modules drawn (for a terminal with a dark background, as
 * qrencode -t UTF8 does) with a quiet zone of 2.  0 or -1. */
static int print_qr(FILE *out, const char *text) {
  QRcode *q = QRcode_encodeString8bit(text, 0, QR_ECLEVEL_L);
  if (!q)
    return -1;
  const int m = 2;
  for (int y = -m; y < q->width + m; y += 2) {
    for (int x = -m; x < q->width + m; x++) {
      bool top = qr_dark(q, x, y), bot = qr_dark(q, x, y + 1);
      fputs(!top && !bot ? "\u2588" : !top ? "\u2580" : !bot ? "\u2584" : " ", out);
    }
    fputc('\n', out);
  }
  QRcode_free(q);
  return 0;
}

/* A command with a positive whole number argument.  -1 when s is not one
 * in [lo, hi]. */
static int64_t parse_count(const char *s, int64_t lo, int64_t hi) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (!*s || *end || errno || *s == '+' || *s == '-' || v < lo || v > hi)
    return -1;
  return v;
}

static int cmd_invite(cli *c) {
  int64_t days = 7;
  if (c->o.expires && (days = parse_count(c->o.expires, 1, 365)) < 0)
    return fail(c, EXIT_USAGE, "usage", "--expires: '%s' is not a number of days from 1 to 365",
                c->o.expires);
  node_jw w;
  req_begin(&w, "invite");
  req_args(&w);
  node_jw_kint(&w, "expires_days", days);
  node_jw_obj_end(&w);
  reply r;
  int rv = remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = jget(r.root, "result");
  if (c->o.json) {
    print_json_result(res);
    reply_free(&r);
    return EXIT_OK;
  }
  char text[NODE_INVITE_TEXT_MAX + 1], name[NODE_INVITE_NAME_MAX * 2 + 2], when[32];
  int64_t exp = 0;
  jstr(jget(res, "invite"), text, sizeof text);
  jstr(jget(res, "name"), name, sizeof name);
  jint(jget(res, "expires_unix_s"), &exp);
  reply_free(&r);
  fmt_time(exp * 1000, when, sizeof when);
  bool qr = c->o.qr || (!c->o.no_qr && isatty(STDOUT_FILENO));
  if (qr && print_qr(stdout, text) != 0)
    fprintf(stderr, "roost: cannot draw the QR code (the text below is the invite)\n");
  printf("%s\n", text);
  if (isatty(STDOUT_FILENO))
    printf("\nan invite from %s, valid until %s; your friend adds you with:\n"
           "  roost friend add %.24s...\n",
           *name ? name : "(no name)", when, text);
  return EXIT_OK;
}

/* Prints the rows of a table: cells[(row)*cols + col], row 0 the header;
 * the last column is not padded. */
static void print_table(char (*cells)[160], int rows, int cols) {
  size_t width[8] = {0};
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) {
      size_t n = columns(cells[i * cols + j]);
      if (n > width[j])
        width[j] = n;
    }
  for (int i = 0; i < rows; i++) {
    for (int j = 0; j < cols; j++) {
      if (j == cols - 1)
        fputs(cells[i * cols + j], stdout);
      else
        pad(stdout, cells[i * cols + j], width[j] + 2);
    }
    fputc('\n', stdout);
  }
}

/* Cuts s to at most n columns (UTF-8 aware), "..." marking a cut, with
 * newlines and tabs shown as spaces. */
static void shorten(char *s, size_t n) {
  for (char *p = s; *p; p++)
    if (*p == '\n' || *p == '\t' || *p == '\r')
      *p = ' ';
  sanitize(s);
  if (columns(s) <= n)
    return;
  size_t cols = 0;
  char *p = s;
  for (; *p; p++) {
    if (((unsigned char)*p & 0xc0) != 0x80 && ++cols > n - 1)
      break;
  }
  snprintf(p, 4, "\u2026");
}

static int friend_add_req(cli *c, const char *cmdname, const char *key, const char *val,
                          int64_t num) {
  node_jw w;
  req_begin(&w, cmdname);
  req_args(&w);
  if (val)
    node_jw_kstr(&w, key, val);
  else
    node_jw_kint(&w, key, num);
  if (c->o.name)
    node_jw_kstr(&w, "name", c->o.name);
  node_jw_obj_end(&w);
  reply r;
  int rv = remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = jget(r.root, "result");
  if (c->o.json) {
    print_json_result(res);
  } else {
    char name[160], id[80], req[160];
    bool added = true;
    node_json_bool(jget(res, "added"), &added);
    jstr(jget(res, "name"), name, sizeof name);
    jstr(jget(res, "id"), id, sizeof id);
    jstr(jget(res, "request"), req, sizeof req);
    printf("%s %s (%s)\n", added ? "added friend" : "updated friend", name, id);
    if (!strcmp(req, "sent"))
      printf("a friend request with your invite went to them: they accept it with "
             "'roost friend requests' and 'roost friend accept N'\n");
    else
      printf("friend request %s; give them your invite ('roost invite')\n", req);
  }
  reply_free(&r);
  return EXIT_OK;
}

static int simple(cli *c, const char *cmdname, const char *key, const char *val, const char *done) {
  node_jw w;
  req_begin(&w, cmdname);
  if (key) {
    req_args(&w);
    node_jw_kstr(&w, key, val);
    node_jw_obj_end(&w);
  }
  reply r;
  int rv = remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  if (c->o.json)
    print_json_result(jget(r.root, "result"));
  else if (done)
    printf("%s\n", done);
  reply_free(&r);
  return EXIT_OK;
}

static int cmd_friend(cli *c) {
  const char *sub = c->o.pos[0];
  int want = !strcmp(sub, "add") || !strcmp(sub, "remove") || !strcmp(sub, "accept") ? 2
             : !strcmp(sub, "list") || !strcmp(sub, "requests")                      ? 1
                                                                                     : -1;
  if (want < 0)
    return fail(c, EXIT_USAGE, "usage",
                "unknown friend command '%s' (add, list, remove, requests, accept)", sub);
  if (c->o.npos != want)
    return fail(c, EXIT_USAGE, "usage", "friend %s: %s (usage: roost friend %s)", sub,
                c->o.npos < want ? "missing argument" : "unexpected argument",
                !strcmp(sub, "add")      ? "add INVITE [--name NAME]"
                : !strcmp(sub, "remove") ? "remove NAME"
                : !strcmp(sub, "accept") ? "accept N [--name NAME]"
                                         : sub);
  if (c->o.name && strcmp(sub, "add") && strcmp(sub, "accept"))
    return fail(c, EXIT_USAGE, "usage", "--name only applies to friend add and friend accept");
  if (!strcmp(sub, "add")) {
    if (strncmp(c->o.pos[1], NODE_INVITE_PREFIX, strlen(NODE_INVITE_PREFIX)) != 0)
      return fail(c, EXIT_USAGE, "usage",
                  "'%.40s' is not an invite (it starts with roost-invite:; 'roost invite' "
                  "prints one)",
                  c->o.pos[1]);
    return friend_add_req(c, "friend_add", "invite", c->o.pos[1], 0);
  }
  if (!strcmp(sub, "accept")) {
    int64_t n = parse_count(c->o.pos[1], 1, 1000000);
    if (n < 0)
      return fail(c, EXIT_USAGE, "usage",
                  "friend accept: '%s' is not a request number (see roost friend requests)",
                  c->o.pos[1]);
    return friend_add_req(c, "friend_accept", "n", NULL, n);
  }
  if (!strcmp(sub, "remove")) {
    char done[256];
    snprintf(done, sizeof done, "removed friend %s", c->o.pos[1]);
    return simple(c, "friend_remove", "name", c->o.pos[1], done);
  }
  bool list = !strcmp(sub, "list");
  c->line_max = NODE_PROTO_BIG_MAX;
  node_jw w;
  req_begin(&w, list ? "friend_list" : "friend_requests");
  reply r;
  int rv = remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = jget(r.root, "result");
  if (c->o.json) {
    print_json_result(res);
    reply_free(&r);
    return EXIT_OK;
  }
  const json_t *arr = jget(res, list ? "friends" : "requests"), *x;
  int count = (int)json_array_size(arr);
  if (count == 0) {
    printf("%s\n", list ? "no friends yet: 'roost invite' prints an invite to give one"
                        : "no friend requests");
    reply_free(&r);
    return EXIT_OK;
  }
  char(*cells)[160] = calloc((size_t)(count + 1) * 4, sizeof *cells);
  if (!cells) {
    reply_free(&r);
    return fail(c, EXIT_FAILED, "failed", "out of memory");
  }
  static const char *const lh[4] = {"NAME", "ID", "HOSTS", "ADDED"};
  static const char *const rh[4] = {"N", "NAME", "ID", "RECEIVED"};
  for (int j = 0; j < 4; j++)
    snprintf(cells[j], sizeof cells[j], "%s", list ? lh[j] : rh[j]);
  size_t i;
  json_array_foreach(arr, i, x) {
    char(*row)[160] = cells + (i + 1) * 4;
    int64_t v = 0;
    char id[80];
    jstr(jget(x, "id"), id, sizeof id);
    if (list) {
      jstr(jget(x, "name"), row[0], sizeof row[0]);
      snprintf(row[1], sizeof row[1], "%s", id);
      jnum(jget(x, "hosts"), row[2], sizeof row[2]);
      jint(jget(x, "added_unix_ms"), &v);
      fmt_time(v, row[3], sizeof row[3]);
    } else {
      jnum(jget(x, "n"), row[0], sizeof row[0]);
      const json_t *nm = jget(x, "name");
      if (json_is_null(nm)) {
        char prob[140];
        snprintf(row[1], sizeof row[1], "(%s)", jstr(jget(x, "problem"), prob, 120));
      } else {
        jstr(nm, row[1], sizeof row[1]);
      }
      snprintf(row[2], sizeof row[2], "%s", id);
      jint(jget(x, "received_unix_ms"), &v);
      fmt_time(v, row[3], sizeof row[3]);
    }
  }
  print_table(cells, count + 1, 4);
  free(cells);
  reply_free(&r);
  return EXIT_OK;
}

/* The message of send: TEXT, or stdin for "-" or none.  0 and a malloc'd
 * *out, or an exit code after reporting. */
static int message_text(cli *c, char **out, size_t *len) {
  const char *arg = c->o.npos > 1 ? c->o.pos[1] : "-";
  char *buf;
  size_t n = 0;
  if (strcmp(arg, "-") != 0) {
    n = strlen(arg);
    buf = malloc(n + 1);
    if (!buf)
      return fail(c, EXIT_FAILED, "failed", "out of memory");
    memcpy(buf, arg, n + 1);
  } else {
    if (isatty(STDIN_FILENO))
      fprintf(stderr, "type the message, then Ctrl-D:\n");
    buf = malloc(STDIN_MAX + 1);
    if (!buf)
      return fail(c, EXIT_FAILED, "failed", "out of memory");
    size_t got;
    while (n < STDIN_MAX && (got = fread(buf + n, 1, STDIN_MAX - n, stdin)) > 0)
      n += got;
    if (ferror(stdin)) {
      free(buf);
      return fail(c, EXIT_FAILED, "failed", "cannot read the message from stdin");
    }
    if (n == STDIN_MAX && fgetc(stdin) != EOF)
      n++; /* longer still: refused below */
    if (n <= STDIN_MAX && n > 0 && buf[n - 1] == '\n')
      n--; /* the newline that ends the last line is not part of the message */
    buf[n < STDIN_MAX ? n : STDIN_MAX] = 0;
  }
  if (n == 0) {
    free(buf);
    return fail(c, EXIT_USAGE, "usage", "the message is empty");
  }
  if (n > STORE_TEXT_MAX) {
    free(buf);
    return fail(c, EXIT_USAGE, "usage", "the message is %s%zu bytes; the limit is %d bytes",
                n > STDIN_MAX ? "over " : "", n > STDIN_MAX ? (size_t)STDIN_MAX : n,
                STORE_TEXT_MAX);
  }
  if (memchr(buf, 0, n)) {
    free(buf);
    return fail(c, EXIT_USAGE, "usage", "the message contains a NUL byte");
  }
  *out = buf;
  *len = n;
  return 0;
}

static int cmd_send(cli *c) {
  char *text = NULL;
  size_t len = 0;
  int rv = message_text(c, &text, &len);
  if (rv)
    return rv;
  node_jw w;
  req_begin(&w, "send");
  req_args(&w);
  node_jw_kstr(&w, "to", c->o.pos[0]);
  node_jw_key(&w, "text");
  node_jw_strn(&w, text, len);
  node_jw_obj_end(&w);
  free(text);
  reply r;
  if ((rv = remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL)) != EXIT_OK)
    return rv;
  const json_t *res = jget(r.root, "result");
  if (c->o.json) {
    print_json_result(res);
  } else {
    char to[160];
    printf("queued for %s ('roost outbox' shows how far it got)\n",
           jstr(jget(res, "to"), to, sizeof to));
  }
  reply_free(&r);
  return EXIT_OK;
}

static int cmd_outbox(cli *c) {
  c->line_max = NODE_PROTO_BIG_MAX;
  node_jw w;
  req_begin(&w, "outbox");
  reply r;
  int rv = remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = jget(r.root, "result");
  if (c->o.json) {
    print_json_result(res);
    reply_free(&r);
    return EXIT_OK;
  }
  const json_t *arr = jget(res, "messages"), *x;
  int count = (int)json_array_size(arr);
  if (count == 0) {
    printf("the outbox is empty\n");
    reply_free(&r);
    return EXIT_OK;
  }
  char(*cells)[160] = calloc((size_t)(count + 1) * 4, sizeof *cells);
  if (!cells) {
    reply_free(&r);
    return fail(c, EXIT_FAILED, "failed", "out of memory");
  }
  static const char *const head[4] = {"TO", "WHEN", "STATE", "TEXT"};
  for (int j = 0; j < 4; j++)
    snprintf(cells[j], sizeof cells[j], "%s", head[j]);
  size_t i;
  json_array_foreach(arr, i, x) {
    char(*row)[160] = cells + (i + 1) * 4;
    int64_t v = 0, rec = 0, reps = 0;
    const json_t *nm = jget(x, "name");
    jstr(json_is_null(nm) ? jget(x, "to") : nm, row[0], 40);
    jint(jget(x, "sent_unix_ms"), &v);
    fmt_time(v, row[1], sizeof row[1]);
    char st[32];
    jstr(jget(x, "state"), st, sizeof st);
    jint(jget(x, "receipts"), &rec);
    jint(jget(x, "replicas"), &reps);
    if (!strcmp(st, "stored"))
      snprintf(row[2], sizeof row[2], "stored (%lld of %lld)", (long long)rec, (long long)reps);
    else if (!strcmp(st, "queued") && rec > 0)
      snprintf(row[2], sizeof row[2], "queued (%lld of %lld)", (long long)rec, (long long)reps);
    else
      snprintf(row[2], sizeof row[2], "%s", st);
    char text[4096];
    if (node_json_str(jget(x, "text"), text, sizeof text) < 0)
      snprintf(text, sizeof text, "-");
    shorten(text, 40); /* 40 columns: at most 160 bytes with the NUL */
    memcpy(row[3], text, strlen(text) < sizeof row[3] ? strlen(text) + 1 : sizeof row[3]);
    row[3][sizeof row[3] - 1] = 0;
  }
  print_table(cells, count + 1, 4);
  free(cells);
  reply_free(&r);
  return EXIT_OK;
}

/* One inbox message (token m) for people: "WHEN  NAME: text", continuation
 * lines indented. */
static void print_inbox_message(const json_t *m) {
  int64_t v = 0;
  char when[32], name[160];
  jint(jget(m, "sent_unix_ms"), &v);
  fmt_time(v, when, sizeof when);
  const json_t *nm = jget(m, "name");
  jstr(json_is_null(nm) ? jget(m, "from") : nm, name, sizeof name);
  const json_t *tx = jget(m, "text");
  size_t cap = json_string_length(tx) + 1;
  char *text = malloc(cap);
  if (!text || node_json_str(tx, text, cap) < 0) {
    free(text);
    text = NULL;
  }
  printf("%s  %s: ", when, name);
  for (const char *p = text ? text : "-"; *p; p++) {
    if (*p == '\n')
      printf("\n%*s", (int)(columns(when) + 2 + columns(name) + 2), "");
    else if ((unsigned char)*p < 0x20 || *p == 0x7f)
      fputc('?', stdout);
    else
      fputc(*p, stdout);
  }
  fputc('\n', stdout);
  free(text);
}

static void print_inbox_notice(const json_t *m) {
  int64_t v = 0, items = 0, start = 0;
  char when[32], day[32], name[160];
  jint(jget(m, "unix_ms"), &v);
  jint(jget(m, "items"), &items);
  jint(jget(m, "epoch_start_unix_ms"), &start);
  fmt_time(v, when, sizeof when);
  fmt_time(start, day, sizeof day);
  const json_t *nm = jget(m, "name");
  jstr(json_is_null(nm) ? jget(m, "from") : nm, name, sizeof name);
  printf("%s  notice: %lld message%s from %s (mailbox of %.10s) %s lost: a storage node "
         "dropped %s before it was fetched\n",
         when, (long long)items, items == 1 ? "" : "s", name, day, items == 1 ? "was" : "were",
         items == 1 ? "it" : "them");
}

static void inbox_progress(const cli *c, const json_t *prog) {
  const json_t *m = jget(prog, "message"), *n = jget(prog, "notice");
  if (c->o.json) {
    char *t = node_json_dump(m ? m : n, NULL);
    if (t)
      printf("{\"%s\":%s}\n", m ? "message" : "notice", t);
    free(t);
  } else if (m) {
    print_inbox_message(m);
  } else if (n) {
    print_inbox_notice(n);
  }
  fflush(stdout);
}

static int cmd_inbox(cli *c) {
  c->line_max = NODE_PROTO_BIG_MAX;
  node_jw w;
  if (!c->o.no_fetch) {
    /* fetch first, so the inbox shows what waits in the mailboxes; a
     * failure here is a warning: the messages already here still show */
    int64_t ft = NODE_PROTO_FETCH_TIMEOUT_MS;
    req_begin(&w, "fetch");
    req_args(&w);
    node_jw_kint(&w, "timeout_ms", ft);
    node_jw_obj_end(&w);
    reply fr;
    cli quiet = *c; /* its errors go to stderr only: one JSON line on stdout */
    quiet.o.json = false;
    int frv = remote(&quiet, &w, ft + WAIT_GRACE_MS, NULL, &fr, NULL);
    if (frv == EXIT_NOT_RUNNING) { /* quiet said how to start it */
      if (c->o.json)
        json_error("not_running", "roostd is not running");
      return frv;
    }
    if (frv == EXIT_OK)
      reply_free(&fr);
    else
      fprintf(stderr, "roost: fetching the mailboxes failed; showing what is already here\n");
  }
  req_begin(&w, "inbox");
  req_args(&w);
  node_jw_kbool(&w, "unread", c->o.unread);
  node_jw_kbool(&w, "follow", c->o.follow);
  node_jw_obj_end(&w);
  reply r;
  int rv = remote(c, &w, c->o.follow ? FOLLOW_TIMEOUT_MS : timeout_or(c, DEFAULT_TIMEOUT_MS),
                  c->o.follow ? inbox_progress : NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = jget(r.root, "result");
  if (c->o.json) {
    print_json_result(res);
    reply_free(&r);
    return EXIT_OK;
  }
  const json_t *arr = jget(res, "messages"), *nts = jget(res, "notices"), *x;
  size_t count = json_array_size(arr), nn = json_array_size(nts), i;
  json_array_foreach(arr, i, x) {
    print_inbox_message(x);
  }
  json_array_foreach(nts, i, x) {
    print_inbox_notice(x);
  }
  if (count + nn == 0)
    printf("%s\n", c->o.unread ? "no unread messages" : "no messages");
  bool more = false;
  node_json_bool(jget(res, "more"), &more);
  if (more)
    printf("(only the first %zu are shown)\n", count);
  reply_free(&r);
  return EXIT_OK;
}

static int cmd_fetch(cli *c) {
  int64_t timeout = timeout_or(c, NODE_PROTO_FETCH_TIMEOUT_MS);
  node_jw w;
  req_begin(&w, "fetch");
  req_args(&w);
  node_jw_kint(&w, "timeout_ms", timeout);
  node_jw_obj_end(&w);
  reply r;
  int rv = remote(c, &w, timeout + WAIT_GRACE_MS, NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = jget(r.root, "result");
  if (c->o.json) {
    print_json_result(res);
  } else {
    char f[32], m[32], a[32], b[32];
    printf("fetched the mailboxes of %s friend(s): %s new message(s) (%s of %s storage nodes "
           "answered)\n",
           jnum(jget(res, "friends"), f, sizeof f), jnum(jget(res, "messages"), m, sizeof m),
           jnum(jget(res, "replicas_answered"), a, sizeof a),
           jnum(jget(res, "replicas_asked"), b, sizeof b));
  }
  reply_free(&r);
  return EXIT_OK;
}

static int cmd_host(cli *c) {
  const char *sub = c->o.pos[0];
  int want = !strcmp(sub, "add") || !strcmp(sub, "remove") ? 2 : !strcmp(sub, "list") ? 1 : -1;
  if (want < 0)
    return fail(c, EXIT_USAGE, "usage", "unknown host command '%s' (add, list, remove)", sub);
  if (c->o.npos != want)
    return fail(c, EXIT_USAGE, "usage", "host %s: %s (usage: roost host %s)", sub,
                c->o.npos < want ? "missing argument" : "unexpected argument",
                !strcmp(sub, "add")      ? "add NAME --quota SIZE"
                : !strcmp(sub, "remove") ? "remove NAME"
                                         : "list");
  if (c->o.quota && strcmp(sub, "add"))
    return fail(c, EXIT_USAGE, "usage", "--quota only applies to host add");
  if (!strcmp(sub, "add")) {
    int64_t q;
    if (!c->o.quota)
      return fail(c, EXIT_USAGE, "usage", "host add needs --quota SIZE (e.g. 10M or 1G)");
    if (node_size_parse(c->o.quota, &q) != 0 || q <= 0 || q > ((int64_t)1 << 50))
      return fail(c, EXIT_USAGE, "usage",
                  "--quota: '%s' is not a size above 0 like 65536, 64K, 10M or 1G", c->o.quota);
    node_jw w;
    req_begin(&w, "host_add");
    req_args(&w);
    node_jw_kstr(&w, "name", c->o.pos[1]);
    node_jw_kint(&w, "quota", q);
    node_jw_obj_end(&w);
    reply r;
    int rv = remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
    if (rv != EXIT_OK)
      return rv;
    if (c->o.json) {
      print_json_result(jget(r.root, "result"));
    } else {
      char sz[32];
      node_size_fmt(q, sz, sizeof sz);
      printf("hosting %s's mailboxes, up to %s\n", c->o.pos[1], sz);
    }
    reply_free(&r);
    return EXIT_OK;
  }
  if (!strcmp(sub, "remove")) {
    char done[256];
    snprintf(done, sizeof done, "no longer hosting %s", c->o.pos[1]);
    return simple(c, "host_remove", "name", c->o.pos[1], done);
  }
  node_jw w;
  req_begin(&w, "host_list");
  reply r;
  int rv = remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = jget(r.root, "result");
  if (c->o.json) {
    print_json_result(res);
    reply_free(&r);
    return EXIT_OK;
  }
  const json_t *arr = jget(res, "hosted"), *mine = jget(res, "my_hosts"), *x;
  size_t count = json_array_size(arr), i;
  if (count == 0)
    printf("you host nobody ('roost host add NAME --quota SIZE')\n");
  json_array_foreach(arr, i, x) {
    char name[160], sz[32];
    int64_t q = 0;
    const json_t *n = jget(x, "name");
    jstr(json_is_null(n) ? jget(x, "id") : n, name, sizeof name);
    jint(jget(x, "quota"), &q);
    node_size_fmt(q, sz, sizeof sz);
    printf("you host %s, up to %s\n", name, sz);
  }
  json_array_foreach(mine, i, x) {
    char name[160], addr[80];
    const json_t *n = jget(x, "name");
    jstr(json_is_null(n) ? jget(x, "id") : n, name, sizeof name);
    printf("%s hosts you (at %s)\n", name, jstr(jget(x, "addr"), addr, sizeof addr));
  }
  reply_free(&r);
  return EXIT_OK;
}

static int cmd_mailbox(cli *c) {
  node_jw w;
  req_begin(&w, "mailbox");
  req_args(&w);
  node_jw_kstr(&w, "friend", c->o.pos[0]);
  node_jw_obj_end(&w);
  reply r;
  int rv = remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = jget(r.root, "result");
  if (c->o.json) {
    print_json_result(res);
  } else {
    char e[32], a[80], b[80], name[160];
    jstr(jget(res, "name"), name, sizeof name);
    printf("epoch       %s\n", jnum(jget(res, "epoch"), e, sizeof e));
    printf("to %s  %s\n", name, jstr(jget(res, "to_friend"), a, sizeof a));
    printf("from %s  %s\n", name, jstr(jget(res, "from_friend"), b, sizeof b));
  }
  reply_free(&r);
  return EXIT_OK;
}

/* ---- main -------------------------------------------------------------- */

static const command commands[] = {
    {"init", 0, 0, cmd_init},           {"id", 0, 0, cmd_id},
    {"status", 0, 0, cmd_status},       {"peers", 0, 0, cmd_peers},
    {"lookup", 1, 1, cmd_lookup},       {"ping", 1, 2, cmd_ping},
    {"bootstrap", 1, 2, cmd_bootstrap}, {"metrics", 0, 0, cmd_metrics},
    {"stop", 0, 0, cmd_stop},           {"help", 0, 0, cmd_help},
    {"invite", 0, 0, cmd_invite},       {"friend", 1, 2, cmd_friend},
    {"send", 1, 2, cmd_send},           {"outbox", 0, 0, cmd_outbox},
    {"inbox", 0, 0, cmd_inbox},         {"fetch", 0, 0, cmd_fetch},
    {"host", 1, 2, cmd_host},           {"mailbox", 1, 1, cmd_mailbox},
};

static const char *const synopsis[] = {
    "init",
    "id",
    "status [--wait]",
    "peers",
    "lookup ID",
    "ping ID [HOST:PORT]",
    "bootstrap add ID@HOST:PORT",
    "metrics",
    "stop",
    "help",
    "invite [--expires DAYS] [--qr|--no-qr]",
    "friend add|list|remove|requests|accept ...",
    "send NAME [TEXT|-]",
    "outbox",
    "inbox [--unread] [--follow] [--no-fetch]",
    "fetch",
    "host add|list|remove ...",
    "mailbox NAME",
};

int main(int argc, char **argv) {
  static cli c;
  char err[512];
  /* --json anywhere decides how even an error in the arguments is shown */
  for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
    if (!strcmp(argv[i], "--json"))
      c.o.json = true;
  if (parse_args(argc, argv, &c.o, err, sizeof err) != 0)
    return fail(&c, EXIT_USAGE, "usage", "%s", err);
  if (c.o.help) {
    usage(stdout);
    return EXIT_OK;
  }
  if (c.o.version) {
    if (c.o.json)
      printf("{\"version\":\"%s\"}\n", ROOST_VERSION);
    else
      printf("roost %s\n", ROOST_VERSION);
    return EXIT_OK;
  }
  if (!c.o.cmd)
    return fail(&c, EXIT_USAGE, "usage", "no command given");
  const command *cmd = NULL;
  size_t ci = 0;
  for (; ci < sizeof commands / sizeof commands[0]; ci++)
    if (!strcmp(commands[ci].name, c.o.cmd)) {
      cmd = &commands[ci];
      break;
    }
  if (!cmd)
    return fail(&c, EXIT_USAGE, "usage", "unknown command '%s'", c.o.cmd);
  if (c.o.npos < cmd->min)
    return fail(&c, EXIT_USAGE, "usage", "%s: missing argument (usage: roost %s)", cmd->name,
                synopsis[ci]);
  if (c.o.npos > cmd->max)
    return fail(&c, EXIT_USAGE, "usage", "%s: unexpected argument '%s' (usage: roost %s)",
                cmd->name, c.o.pos[cmd->max], synopsis[ci]);
  if (c.o.wait && cmd->run != cmd_status)
    return fail(&c, EXIT_USAGE, "usage", "--wait only applies to status");
  if ((c.o.qr || c.o.no_qr || c.o.expires) && cmd->run != cmd_invite)
    return fail(&c, EXIT_USAGE, "usage", "--qr, --no-qr and --expires only apply to invite");
  if (c.o.qr && c.o.no_qr)
    return fail(&c, EXIT_USAGE, "usage", "--qr and --no-qr contradict each other");
  if ((c.o.follow || c.o.unread || c.o.no_fetch) && cmd->run != cmd_inbox)
    return fail(&c, EXIT_USAGE, "usage", "--follow, --unread and --no-fetch only apply to inbox");
  if (c.o.name && cmd->run != cmd_friend)
    return fail(&c, EXIT_USAGE, "usage", "--name only applies to friend add and friend accept");
  if (c.o.quota && cmd->run != cmd_host)
    return fail(&c, EXIT_USAGE, "usage", "--quota only applies to host add");

  node_config_default(&c.cfg);
  if (c.o.data_dir) {
    if (strlen(c.o.data_dir) >= sizeof c.cfg.data_dir)
      return fail(&c, EXIT_USAGE, "usage", "--data-dir: path too long");
    snprintf(c.cfg.data_dir, sizeof c.cfg.data_dir, "%s", c.o.data_dir);
  }
  char def[PATH_MAX + 32];
  node_config_socket_path(&c.cfg, def, sizeof def);
  const char *sock = c.o.socket ? c.o.socket : def;
  size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
  if (strlen(sock) > max)
    return fail(&c, EXIT_USAGE, "usage",
                "the control socket path %s is longer than %zu bytes (give a shorter one with "
                "--socket)",
                sock, max);
  memcpy(c.sock, sock, strlen(sock) + 1);
  c.sock_given = strcmp(c.sock, def) != 0;
  c.line_max = NODE_PROTO_LINE_MAX;
  if (sodium_init() < 0)
    return fail(&c, EXIT_FAILED, "failed", "libsodium failed to initialise");
  int rv = cmd->run(&c);
  if (fflush(stdout) != 0 && rv == EXIT_OK)
    return EXIT_FAILED; /* e.g. stdout is a full disk */
  return rv;
}

/*
 * node_cli.h - the pieces of roost, the command-line client, shared by its
 * files and its unit test: the options and the client state (node_cli_args.c
 * parses them), the connection and reply helpers (node_cli_conn.c), the text
 * formatting (node_cli_fmt.c) and the entry point with the commands
 * (node_cli.c).  roostd links none of it.
 */
#ifndef ROOST_NODE_CLI_H
#define ROOST_NODE_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/un.h>

#include "node.h"
#include "node_json.h"
#include "node_proto.h"

/* Exit codes (docs/cli.md); every path of roost ends in one of them. */
enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_NOT_RUNNING = 3 };

#define NODE_CLI_MAX_POS 8             /* positional arguments kept; more is a usage error anyway */
#define NODE_CLI_MAX_TIMEOUT_S 86400.0 /* --timeout's largest value */
#define NODE_CLI_REQ_ID 1              /* the id of roost's one request per connection */

/* ---- the command line (node_cli_args.c) --------------------------------- */

typedef struct node_cli_opts {
  const char *data_dir; /* NULL: $ROOST_DATA_DIR, else ~/.local/share/roost */
  const char *socket;   /* NULL: DATA_DIR/roostd.sock */
  bool json, wait, help, version;
  bool qr, no_qr, follow, unread, no_fetch;
  const char *name;    /* --name (friend add, friend accept) */
  const char *quota;   /* --quota SIZE (host add) */
  const char *expires; /* --expires DAYS (invite) */
  int64_t timeout_ms;  /* -1: the command's default */
  const char *cmd;     /* NULL: none given */
  const char *pos[NODE_CLI_MAX_POS];
  int npos;
} node_cli_opts;

/* The client: options, resolved paths, and the limits of this run. */
typedef struct node_cli {
  node_cli_opts o;
  node_config cfg; /* data_dir resolved */
  char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
  bool sock_given; /* --socket, or a path that differs from DATA_DIR/roostd.sock */
  size_t line_max; /* longest reply line accepted, '\n' included */
  bool wait_start; /* retry connecting until the deadline (status --wait) */
} node_cli;

/* Writes the usage text (roost help) to out. */
void node_cli_usage(FILE *out);

/* Parses argv into o: options anywhere, "--" ends them, the first other
 * word is the command and the rest are its arguments.  Checks syntax only
 * (the command's name and arity are checked by the caller).  0, or -1 with
 * a one-line reason in err.  o's strings point into argv. */
int node_cli_parse_args(int argc, char **argv, node_cli_opts *o, char *err, size_t errlen);

/* Seconds (a decimal number above 0, at most NODE_CLI_MAX_TIMEOUT_S) ->
 * milliseconds (at least 1), or -1. */
int64_t node_cli_parse_seconds(const char *s);

/* A whole number in [lo, hi] written as plain digits (no sign), or -1. */
int64_t node_cli_parse_count(const char *s, int64_t lo, int64_t hi);

/* ---- errors, the connection and replies (node_cli_conn.c) -------------- */

/* Prints {"error": {"code", "message"}} on stdout. */
void node_cli_json_error(const char *code, const char *msg);

/* Reports an error: "roost: MSG" on stderr (plus "try 'roost help'" for a
 * usage error) and, with --json, the error object on stdout.  Returns ex,
 * the exit code, so a command can return fail(...). */
int node_cli_fail(const node_cli *c, int ex, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* One parsed line from roostd. */
typedef struct node_cli_reply {
  json_t *root; /* owned */
} node_cli_reply;

void node_cli_reply_free(node_cli_reply *r);

/* v as a printable string in buf ("-" when it is not a string or does not
 * fit); control characters are replaced (node_cli_sanitize).  Returns buf. */
const char *node_cli_str(const json_t *v, char *buf, size_t len);
/* true and *out when v is an integer. */
bool node_cli_int(const json_t *v, int64_t *out);
/* v, a number (integer or not), as JSON writes it, or "-".  Returns buf. */
const char *node_cli_num(const json_t *v, char *buf, size_t len);

/* Monotonic milliseconds: every deadline is on this clock. */
int64_t node_cli_now_ms(void);

/* The connection to roostd and what it has sent that is not read yet. */
typedef struct node_cli_conn {
  int fd;
  char *buf;  /* owned; grows by doubling up to max */
  size_t len; /* bytes held */
  size_t cap; /* bytes allocated */
  size_t max; /* longest line, '\n' included */
} node_cli_conn;

enum { LINE_OK = 1, LINE_EOF = 0, LINE_TIMEOUT = -1, LINE_TOOLONG = -2, LINE_IOERR = -3 };

/* Reads the next line (without '\n') into a malloc'd *out before deadline.
 * LINE_OK, or LINE_EOF (*partial tells whether part of a line had come),
 * LINE_TIMEOUT, LINE_TOOLONG, LINE_IOERR (errno kept). */
int node_cli_conn_line(node_cli_conn *k, int64_t deadline, char **out, size_t *outlen,
                       bool *partial);
/* Connects to roostd's socket before deadline.  0, or an exit code after
 * reporting. */
int node_cli_conn_open(const node_cli *c, node_cli_conn *k, int64_t deadline);
/* Sends all of buf.  0, or an exit code after reporting. */
int node_cli_conn_send(const node_cli *c, node_cli_conn *k, const char *buf, size_t len);
/* Closes the socket and frees the buffer; safe twice. */
void node_cli_conn_close(node_cli_conn *k);

/* Called with each progress object of our request (borrowed for the call). */
typedef void (*node_cli_progress_fn)(const node_cli *c, const json_t *progress);

#define CALL_CLOSED                                                                                \
  (-1) /* returned by node_cli_call() when eof_ok and roostd closed before replying */

/* Reads lines until the final reply to request NODE_CLI_REQ_ID, handing
 * progress lines to on_progress (if any).  On ok:true fills *r (the caller
 * frees it) and returns EXIT_OK; ok:false and every failure are reported and
 * return their exit code.  With eof_ok, a connection closed before any reply
 * returns CALL_CLOSED silently. */
int node_cli_call(const node_cli *c, node_cli_conn *k, int64_t deadline, int64_t timeout_ms,
                  node_cli_progress_fn on_progress, bool eof_ok, node_cli_reply *r);

/* Starts request w: {"id":1,"cmd":cmd ... ; node_cli_req_args opens "args". */
void node_cli_req_begin(node_jw *w, const char *cmd);
void node_cli_req_args(node_jw *w);

/* Finishes request w, connects, sends it and waits (timeout_ms) for the
 * final reply into *r (freed by the caller on EXIT_OK).  The connection is
 * closed again unless keep is non-NULL, where it is handed over (open or
 * not).  Returns an exit code; failures are reported. */
int node_cli_remote(const node_cli *c, node_jw *w, int64_t timeout_ms,
                    node_cli_progress_fn on_progress, node_cli_reply *r, node_cli_conn *keep);

/* Prints res, the result of a reply, as one JSON line in the form roostd
 * wrote it ({} when res is NULL). */
void node_cli_print_result(const json_t *res);

/* ---- text for people (node_cli_fmt.c) ---------------------------------- */

/* Replaces control characters in s (from the daemon) with '?' so they
 * cannot drive the terminal. */
void node_cli_sanitize(char *s);
/* Terminal columns of UTF-8 s, counting one per character. */
size_t node_cli_columns(const char *s);
/* Writes s, then spaces up to width columns. */
void node_cli_pad(FILE *f, const char *s, size_t width);
/* "42s", "3m 07s", "5h 02m", "2d 04h"; "-" for a negative s. */
void node_cli_duration(int64_t s, char *buf, size_t len);
/* "2025-01-02 13:04" in local time, or "-". */
void node_cli_time(int64_t unix_ms, char *buf, size_t len);
/* Prints text as a QR code on a terminal.  0 or -1. */
int node_cli_qr(FILE *out, const char *text);
/* Prints a table: cells[row * cols + col], row 0 the header, at most 8
 * columns; the last column is not padded. */
void node_cli_table(char (*cells)[160], int rows, int cols);
/* Cuts s to at most n columns (UTF-8 aware), an ellipsis marking a cut,
 * with newlines and tabs shown as spaces. */
void node_cli_shorten(char *s, size_t n);

/* ---- the program (node_cli.c) ------------------------------------------ */

/* roost's main: parses argv, runs the command, returns the exit code. */
int node_cli_main(int argc, char **argv);

#endif

/*
 * node_ctl.h - roostd's control socket (node_ctl.c): the clients, the
 * request envelope, the reply helpers and the table of waiters.  It knows
 * no command and no daemon: its owner hands it a loop, a socket path and
 * hooks (run a command, wake the owner after one ran, a context for both),
 * and everything it calls back goes through those hooks.
 *
 * The owner embeds a node_ctl and touches it only through these functions.
 * A waiter's payload (kind, cmd, peer, poll, expire) is the command's that
 * left it: the command fills it in after node_ctl_add_waiter and may update
 * it later; the table itself is node_ctl.c's.
 */
#ifndef ROOST_NODE_CTL_H
#define ROOST_NODE_CTL_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "node.h"
#include "node_json.h"
#include "node_proto.h"

#define MAX_CLIENTS 64  /* control connections at once */
#define MAX_WAITERS 256 /* commands waiting at once */

/* One control connection.  Commands keep its serial, never the pointer. */
typedef struct client {
  uv_pipe_t pipe;
  struct node_ctl *ctl;
  uint64_t serial;
  char *buf; /* the request line being read, NODE_PROTO_LINE_MAX bytes */
  size_t len;
  bool closing;
  struct client *next;
} client;

/* A command waiting for something (the engine, the node to join): it holds
 * the client's serial, never a pointer.  node_ctl_tick asks poll (if set)
 * once a second and calls expire (if set; else a "timeout" reply) when the
 * client is gone or the deadline has passed.  ctx is the owner's. */
typedef struct waiter {
  uint8_t kind;      /* the command's own tag */
  uint64_t client;   /* serial */
  char reqid[80];    /* the request's id, as JSON text */
  int64_t cmd;       /* what is awaited (0: nothing in particular) */
  uint64_t deadline; /* loop time, ms */
  dht_peer peer;     /* for the command's use */
  /* true once it has replied (the waiter goes); late: past its deadline */
  bool (*poll)(void *ctx, struct waiter *w, client *c, bool late);
  void (*expire)(void *ctx, struct waiter *w, client *c /* NULL: gone */);
} waiter;

/* What the control socket calls back; ctx is handed to each. */
typedef struct node_ctl_hooks {
  void *ctx;
  /* Runs command cmd of a request (args: its "args" object, or NULL).  0
   * when cmd is known (it replied or left a waiter), -1 when it is not (the
   * control socket replies "unknown_command"). */
  int (*run)(void *ctx, client *c, const char *reqid, const char *cmd, const json_t *args);
  /* After each request: a command may have queued work for the owner. */
  void (*wake)(void *ctx);
} node_ctl_hooks;

typedef struct node_ctl_stats {
  uint64_t refused; /* connections refused: wrong uid, too many */
  uint64_t bad;     /* requests that were not one JSON object, lines too long */
} node_ctl_stats;

typedef struct node_ctl {
  uv_loop_t *loop; /* borrowed: the owner's */
  node_ctl_hooks hooks;
  uv_pipe_t pipe; /* the listening socket */
  bool open;      /* pipe initialised: close (and unlink path) at the end */
  char path[PATH_MAX];
  client *clients;
  int nclients;
  uint64_t next_serial;
  waiter waiters[MAX_WAITERS];
  int nwaiters;
  node_ctl_stats stats;
} node_ctl;

/* Prepares ctl (zeroed by the caller) to run on loop with hooks (copied).
 * Nothing is opened yet. */
void node_ctl_init(node_ctl *ctl, uv_loop_t *loop, const node_ctl_hooks *hooks);
/* Opens the control socket at path (0600, peer uid checked; a stale socket
 * file there is replaced).  0 or -1 (logged). */
int node_ctl_open(node_ctl *ctl, const char *path);
/* At shutdown: removes the socket file, closes every connection and the
 * listening socket (their memory goes in libuv's close callbacks). */
void node_ctl_close(node_ctl *ctl);
/* Once a second: waiters' progress and deadlines (now: loop time, ms). */
void node_ctl_tick(node_ctl *ctl, uint64_t now);
void node_ctl_get_stats(const node_ctl *ctl, node_ctl_stats *st);

/* The open connection with this serial, or NULL when it is gone. */
client *node_ctl_client(node_ctl *ctl, uint64_t serial);

/* Replies.  A reply is {"id": <reqid>, ...}: begin, add fields, end (which
 * writes the line and frees w).  result_begin adds "ok": true and opens
 * "result"; result_end closes it.  c may be NULL or closing: the line is
 * dropped. */
void node_ctl_reply_begin(node_jw *w, const char *reqid);
void node_ctl_reply_end(client *c, node_jw *w);
void node_ctl_error(client *c, const char *reqid, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void node_ctl_result_begin(node_jw *w, const char *reqid);
void node_ctl_result_end(client *c, node_jw *w);

/* A waiter for client c, cleared but for kind, cmd and a deadline
 * timeout_ms from now; the caller sets its hooks.  NULL after replying
 * "busy" when the table is full. */
waiter *node_ctl_add_waiter(node_ctl *ctl, client *c, const char *reqid, int kind, int64_t cmd,
                            uint64_t timeout_ms);
/* Removes w (it moves another waiter into its slot: pointers to waiters
 * do not survive this). */
void node_ctl_remove_waiter(node_ctl *ctl, waiter *w);
/* The first waiter awaiting cmd, or NULL. */
waiter *node_ctl_find_waiter(node_ctl *ctl, int64_t cmd);

#endif /* ROOST_NODE_CTL_H */

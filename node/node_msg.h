/*
 * node_msg.h - roostd's messaging state (node_msg.c): roost.db,
 * mailboxes.db and its batched commits, the mailbox service on the engine,
 * and the pending friend requests.  It knows no daemon and no client: the
 * owner hands it a loop, the engine and a wake hook, pulls the service's
 * events through node_msg_poll (node_msg.c applies them to roost.db first
 * and returns what clients should see), and starts commits with
 * node_msg_flush.
 *
 * The owner embeds a node_msg and touches it only through these functions.
 * The databases and the service are lent to the messaging commands through
 * the accessors below, to act on (read, write rows, send); their lifetime
 * is node_msg.c's.
 */
#ifndef ROOST_NODE_MSG_H
#define ROOST_NODE_MSG_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "node.h"
#include "store_sqlite.h"

#define MAX_REQUESTS 64 /* pending friend requests kept */

/* A friend request someone sent us, waiting for friend accept. */
typedef struct friend_req {
  uint8_t pk[DHT_PK_LEN];
  int64_t unix_ms;
  uint16_t len;
  uint8_t note[STORE_NOTE_MAX];
} friend_req;

/* What the clients see of one service event (node_msg_poll). */
enum node_msg_ev {
  NODE_MSG_EV_NONE = 0, /* nothing: it only changed roost.db or the requests */
  NODE_MSG_EV_MESSAGE,  /* a new message, saved as in */
  NODE_MSG_EV_LOSS,     /* a loss notice, saved; the service's event in ev */
  NODE_MSG_EV_FETCHED,  /* a fetch round ended; the service's event in ev */
  NODE_MSG_EV_PATH,     /* the service wants a path to a friend (ev.u.path): ask nat/ */
};

typedef struct node_msg_event {
  int type;        /* enum node_msg_ev */
  store_in_row in; /* NODE_MSG_EV_MESSAGE: the row as roost.db holds it */
  store_event ev;  /* the service's event */
} node_msg_event;

typedef struct node_msg {
  uv_loop_t *loop;         /* borrowed: the owner's, from node_msg_start */
  void (*wake)(void *ctx); /* a commit finished: receipts may go out */
  void *wake_ctx;
  store_appdb *app;   /* roost.db */
  store_sqlite *mbdb; /* mailboxes.db */
  store_backend mbbe; /* its backend, owned by svc once it exists */
  store_svc *svc;     /* NULL when the service could not start */
  store_settings sset;
  uv_work_t commit_work;
  bool commit_busy; /* a batch is on the thread pool */
  int commit_rv;    /* written by the worker, read after it */
  uint64_t commit_retry_at, commits, commit_failures;
  friend_req reqs[MAX_REQUESTS]; /* oldest first */
  int nreqs;
  char req_path[PATH_MAX];
} node_msg;

/* Opens roost.db and mailboxes.db in data_dir (before the loop; m zeroed
 * by the caller).  0, or -1 + a one-line reason in err (a newer schema, a
 * damaged file: never rewritten). */
int node_msg_open(node_msg *m, const char *data_dir, char *err, size_t errlen);
/* Sets the hook node_msg.c calls (with ctx) when a batch commit has
 * finished on the thread pool: the owner should run its pump. */
void node_msg_set_wake(node_msg *m, void (*wake)(void *ctx), void *ctx);
/* Starts the mailbox service on engine e (ident, cb: borrowed for the
 * call, as store_svc_new takes them) and loads friends, hosts and the
 * outbox's queued messages.  A service that cannot start is logged and
 * node_msg_svc stays NULL; the node still runs. */
void node_msg_start(node_msg *m, uv_loop_t *loop, dht *e, const dht_identity *ident,
                    const node_config *cfg, const dht_callbacks *cb);
/* Takes the service's next event and applies it to roost.db and the
 * pending requests.  0 with *out filled (type NONE when clients see
 * nothing of it), -1 when there is none (or no service). */
int node_msg_poll(node_msg *m, node_msg_event *out);
/* Starts a batch commit of mailboxes.db on the thread pool when writes are
 * pending, none is in flight and no retry is being waited out. */
void node_msg_flush(node_msg *m);
/* After the loop: commits what is left, closes the service and both
 * databases.  Safe to call again, and on a node_msg never opened. */
void node_msg_close(node_msg *m);

/* Lent for the call's caller to act on; NULL when not open (svc: when the
 * service did not start). */
store_appdb *node_msg_app(node_msg *m);
store_svc *node_msg_svc(node_msg *m);
const store_settings *node_msg_settings(const node_msg *m);

/* The pending friend requests, oldest first: how many, and the i-th (NULL
 * out of range; valid until the requests change). */
int node_msg_nrequests(const node_msg *m);
const friend_req *node_msg_request(const node_msg *m, int i);
/* Forgets the request from pk (befriending them answers it) and rewrites
 * requests.txt.  0, or -1 when there was none. */
int node_msg_request_drop(node_msg *m, const uint8_t pk[DHT_PK_LEN]);

#endif /* ROOST_NODE_MSG_H */

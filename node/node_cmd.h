/*
 * node_cmd.h - the commands of roostd's control socket, in files by area:
 * node_cmd_net.c (the node and the network) and node_cmd_msg.c (friends and
 * messages).  Each file exports its table of commands, which the daemon
 * runs from the control socket's run hook, and the entry points through
 * which engine and service events reach the commands that wait for them.
 *
 * The commands are the daemon's: their .c files include node_daemon.h and
 * act on rd_daemon through its fields and node_daemon_* functions.  This
 * header does not include node_daemon.h (the daemon embeds node_cmd_msg,
 * so node_daemon.h includes this one): it names rd_daemon only.
 */
#ifndef ROOST_NODE_CMD_H
#define ROOST_NODE_CMD_H

#include "node_ctl.h"

typedef struct rd_daemon rd_daemon;

/* A command of the control protocol: it replies to the client (or leaves a
 * waiter that will).  args is the request's "args" object, or NULL. */
typedef struct node_cmd {
  const char *name;
  void (*run)(rd_daemon *d, client *c, const char *reqid, const json_t *args);
} node_cmd;

typedef struct node_cmd_table {
  const node_cmd *cmds;
  size_t n;
} node_cmd_table;

/* ---- node_cmd_net.c: id, status, peers, lookup, ping, bootstrap_add,
 * metrics, stop ---------------------------------------------------------- */

extern const node_cmd_table node_cmd_net_table;
/* A lookup or ping event: ends (or advances) the waiter for its command. */
void node_cmd_net_on_event(rd_daemon *d, const dht_event *ev);

/* ---- node_cmd_msg.c: invite, friend_*, send, outbox, inbox, fetch,
 * host_*, mailbox ------------------------------------------------------- */

#define MAX_FOLLOWERS 32 /* inbox --follow subscriptions */
#define MAX_FETCHES 256  /* fetch commands waiting for their round */

/* An inbox --follow subscription: new messages go to this client. */
typedef struct follower {
  uint64_t client; /* serial */
  char reqid[80];
  bool mark; /* what it is shown is marked read */
} follower;

/* A fetch command waiting for the service's fetch round cmd. */
typedef struct fetch_wait {
  uint64_t client; /* serial */
  char reqid[80];
  int64_t cmd;
  uint64_t deadline; /* loop time, ms */
} fetch_wait;

/* node_cmd_msg.c's state: the clients that wait for messaging events.
 * Clients are named by serial; a gone client's entries are dropped when
 * next looked at. */
typedef struct node_cmd_msg {
  follower followers[MAX_FOLLOWERS];
  int nfollowers;
  fetch_wait fetches[MAX_FETCHES];
  int nfetches;
} node_cmd_msg;

extern const node_cmd_table node_cmd_msg_table;
/* Pulls the messaging state's events (node_msg_poll, at most 4096 at a
 * time) and shows clients what they wait for: new messages and loss
 * notices to inbox followers (a message shown to a follower that marks is
 * marked read), fetch results to fetch commands.  true when there were
 * any events. */
bool node_cmd_msg_drain(rd_daemon *d);
/* Once a second: fetch commands whose client is gone are dropped, those
 * past their deadline get a "timeout" reply. */
void node_cmd_msg_tick(rd_daemon *d, uint64_t now);

#endif /* ROOST_NODE_CMD_H */

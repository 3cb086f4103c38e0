/*
 * node_daemon.h - roostd's private state, shared by node_daemon.c (UDP, the
 * engine's pump, timers, signals, LAN discovery), node_ctl.c (the control
 * socket), node_msg.c (the messaging state) and the command files
 * (node_cmd_net.c, node_cmd_msg.c, through node_cmd.h).  Nothing else
 * includes it.
 */
#ifndef ROOST_NODE_DAEMON_H
#define ROOST_NODE_DAEMON_H

#include <sys/socket.h>
#include <uv.h>

#include "node.h"
#include "node_json.h"
#include "node_proto.h"
#include "store_sqlite.h"

#define MAX_CLIENTS 64
#define MAX_WAITERS 256
#define RECV_BUF (64 * 1024 * 20) /* recvmmsg: 20 datagrams a batch (libuv's most) */
#define SEND_BATCH 64
#define BOOT_RETRY_MIN_MS 2000
#define BOOT_RETRY_MAX_MS (5 * 60 * 1000)
#define VOTES 16
#define LAN_EVERY_MS 30000
#define LAN_MAGIC "ROOST1 "
#define MAX_FOLLOWERS 32 /* inbox --follow subscriptions */
#define MAX_REQUESTS 64  /* pending friend requests kept */

typedef struct rd_daemon rd_daemon;

struct client {
  uv_pipe_t pipe;
  rd_daemon *d;
  uint64_t serial;
  char *buf;
  size_t len;
  bool closing;
  struct client *next;
};

enum wait_kind { W_STATUS = 1, W_LOOKUP, W_PING_LOOKUP, W_PING, W_FETCH };

typedef struct client client;

/* A command waiting for something (the engine, the service, the node to
 * join): it holds the client's serial, never a pointer.  node_ctl_tick asks
 * poll (if set) once a second and calls expire (if set; else a "timeout"
 * reply) when the client is gone or the deadline has passed. */
typedef struct waiter {
  uint8_t kind;
  uint64_t client; /* serial */
  char reqid[80];  /* the request's id, as JSON text */
  int64_t cmd;     /* engine command awaited (0 for W_STATUS) */
  uint64_t deadline;
  dht_peer peer; /* W_PING_LOOKUP: whose record */
  /* true once it has replied (the waiter goes); late: past its deadline */
  bool (*poll)(rd_daemon *d, struct waiter *w, client *c, bool late);
  void (*expire)(rd_daemon *d, struct waiter *w, client *c /* NULL: gone */);
} waiter;

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

/* An inbox --follow subscription: new messages go to this client. */
typedef struct follower {
  uint64_t client;
  char reqid[80];
  bool mark; /* what it is shown is marked read */
} follower;

/* A friend request someone sent us, waiting for friend accept. */
typedef struct friend_req {
  uint8_t pk[DHT_PK_LEN];
  int64_t unix_ms;
  uint16_t len;
  uint8_t note[STORE_NOTE_MAX];
} friend_req;

typedef struct usock {
  uv_udp_t h;
  dht_addr bound;
  rd_daemon *d;
  uint32_t id;   /* dht_path.local: 0 for the listen sockets, else a service's */
  uint8_t state; /* extra sockets: 0 free, 1 open, 2 closing */
} usock;

/* Extra sockets services ask for (dht_sock_open): a fixed pool, so that a
 * handle's memory stays put until libuv's close callback. */
#define NODE_MAX_XSOCKS 512

typedef struct sendreq {
  uv_udp_send_t req;
  rd_daemon *d;
  uint16_t len;
  uint8_t data[DHT_MAX_PKT];
} sendreq;

struct rd_daemon {
  uv_loop_t loop;
  node_config cfg;
  int argc;
  char **argv;
  dht *e;
  dht_identity ident;
  char idtext[NODE_IDTEXT_LEN + 1];
  int lock_fd;
  char sock_path[PATH_MAX], snap_path[PATH_MAX];
  usock socks[NODE_MAX_LISTEN];
  int nsocks;
  usock *xsocks; /* NODE_MAX_XSOCKS slots, allocated at the first request; id = slot + 1 */
  int nxsocks;   /* open */
  uint64_t ttl_sends, ttl_errors, xsock_refused;
  uv_timer_t timer, tick, snap;
  uv_signal_t sig_term, sig_int, sig_hup;
  uv_pipe_t ctl;
  bool ctl_open;
  const node_cmd_table *cmd_tables[2]; /* what the control socket dispatches to */
  int ncmd_tables;
  client *clients;
  int nclients;
  uint64_t next_serial;
  waiter waiters[MAX_WAITERS];
  int nwaiters;
  int sends_inflight;
  uint64_t start_ms;
  /* bootstrap */
  enum { ST_STARTING, ST_BOOTSTRAPPING, ST_READY, ST_ALONE } state;
  int64_t boot_cmd;
  uint64_t boot_retry_at, boot_backoff;
  dht_peer extra_boot[NODE_MAX_BOOTSTRAP]; /* added at run time */
  int nextra;
  /* our record */
  dht_typed_addr addrs[DHT_RECORD_MAX_ADDRS];
  int naddrs;
  bool need_publish;
  struct vote {
    dht_addr seen;
    uint8_t reporter[DHT_ID_LEN];
  } votes[VOTES];
  int nvotes, vote_next;
  /* LAN discovery */
  uv_udp_t lan;
  bool lan_open;
  uint64_t lan_next;
  /* counters the engine cannot see */
  uint64_t send_dropped, send_errors, recv_truncated, recv_errors, ctl_refused, ctl_bad;
  uint64_t lan_heard;
  bool stopping;
  int exit_code;
  /* replies made while libuv hands us one recvmmsg batch go out in one
   * sendmmsg when the batch ends: one system call instead of one each */
  bool batching;
  int nbatch;
  usock *batch_sock;
  struct mmsghdr batch_msg[SEND_BATCH];
  struct iovec batch_iov[SEND_BATCH];
  struct sockaddr_storage batch_addr[SEND_BATCH];
  uint8_t batch_data[SEND_BATCH][DHT_MAX_PKT];
  /* messaging (node_msg.c) */
  store_appdb *app;   /* roost.db */
  store_sqlite *mbdb; /* mailboxes.db */
  store_backend mbbe; /* its backend, owned by svc once it exists */
  store_svc *svc;     /* NULL when the service could not start */
  store_settings sset;
  uv_work_t commit_work;
  bool commit_busy; /* a batch is on the thread pool */
  int commit_rv;    /* written by the worker, read after it */
  uint64_t commit_retry_at, commits, commit_failures;
  follower followers[MAX_FOLLOWERS];
  int nfollowers;
  friend_req reqs[MAX_REQUESTS];
  int nreqs;
  char req_path[PATH_MAX];
  uint8_t recvbuf[RECV_BUF];
};

/* node_daemon.c */
const char *node_daemon_state_name(int state);
void node_daemon_pump(rd_daemon *d);
void node_daemon_shutdown(rd_daemon *d, int code);
void node_daemon_bootstrap(rd_daemon *d);

/* node_ctl.c */
/* Opens the control socket (0600, peer uid checked).  0 or -1 (logged). */
int node_ctl_open(rd_daemon *d);
/* Closes every control connection (at shutdown). */
void node_ctl_close_all(rd_daemon *d);
void node_ctl_tick(rd_daemon *d, uint64_t now);
/* Helpers for the commands in other files. */
client *node_ctl_client(rd_daemon *d, uint64_t serial); /* NULL when gone */
void node_ctl_reply_begin(node_jw *w, const char *reqid);
void node_ctl_reply_end(client *c, node_jw *w); /* writes the line, frees w */
void node_ctl_error(client *c, const char *reqid, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void node_ctl_result_begin(node_jw *w, const char *reqid);
void node_ctl_result_end(client *c, node_jw *w);
waiter *node_ctl_add_waiter(rd_daemon *d, client *c, const char *reqid, int kind, int64_t cmd,
                            uint64_t timeout_ms);
void node_ctl_remove_waiter(rd_daemon *d, waiter *w);

/* node_msg.c: friends, messages and the mailbox service */
/* Opens roost.db and mailboxes.db (before the loop).  0, or -1 + a
 * one-line reason in err (a newer schema, a damaged file: never rewritten). */
int node_msg_open(rd_daemon *d, char *err, size_t errlen);
/* Starts the mailbox service on the engine and loads friends, hosts and the
 * outbox's queued messages.  A service that cannot start is logged and the
 * messaging commands say so; the node still runs. */
void node_msg_start(rd_daemon *d, const dht_callbacks *cb);
/* Drains the service's events into roost.db and subscribers.  true when
 * there were some. */
bool node_msg_drain(rd_daemon *d);
/* Starts a batch commit of mailboxes.db on the thread pool when writes are
 * pending and none is in flight. */
void node_msg_commit(rd_daemon *d);
/* After the loop: commits what is left, closes the service and both
 * databases. */
void node_msg_close(rd_daemon *d);
/* Rewrites requests.txt from the pending friend requests. */
void node_msg_requests_save(rd_daemon *d);

#endif /* ROOST_NODE_DAEMON_H */

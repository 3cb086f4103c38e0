/*
 * node_daemon.h - roostd's state: rd_daemon, owned by node_daemon.c (UDP,
 * the engine's pump, timers, signals, LAN discovery, our addresses, the
 * bootstrap), with one embedded struct per other file: node_ctl (the
 * control socket, node_ctl.c), node_msg (the messaging state, node_msg.c)
 * and node_cmd_msg (the clients waiting for messaging events,
 * node_cmd_msg.c).  Each file edits only its own struct; the others reach
 * it through that file's header.
 *
 * Included by node_daemon.c and by the command files (node_cmd_net.c,
 * node_cmd_msg.c), which read the daemon's fields and change them only
 * through the node_daemon_* functions below.  node_ctl.c and node_msg.c
 * never include it: they call back through hooks the daemon sets.
 */
#ifndef ROOST_NODE_DAEMON_H
#define ROOST_NODE_DAEMON_H

#include <sys/socket.h>
#include <uv.h>

#include "nat.h"
#include "node.h"
#include "node_cmd.h"
#include "node_ctl.h"
#include "node_msg.h"
#include "node_portmap.h"

#define RECV_BUF (64 * 1024 * 20) /* recvmmsg: 20 datagrams a batch (libuv's most) */
#define SEND_BATCH 64
#define BOOT_RETRY_MIN_MS 2000
#define BOOT_RETRY_MAX_MS (5 * 60 * 1000)
#define LAN_EVERY_MS 30000
#define LAN_MAGIC "ROOST1 "

typedef struct rd_daemon rd_daemon;

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
  char snap_path[PATH_MAX];
  usock socks[NODE_MAX_LISTEN];
  int nsocks;
  usock *xsocks; /* NODE_MAX_XSOCKS slots, allocated at the first request; id = slot + 1 */
  int nxsocks;   /* open */
  uint64_t ttl_sends, ttl_errors, xsock_refused;
  uv_timer_t timer, tick, snap;
  uv_signal_t sig_term, sig_int, sig_hup;
  int sends_inflight;
  uint64_t start_ms;
  /* bootstrap */
  enum { ST_STARTING, ST_BOOTSTRAPPING, ST_READY, ST_ALONE } state;
  int64_t boot_cmd;
  uint64_t boot_retry_at, boot_backoff;
  dht_peer extra_boot[NODE_MAX_BOOTSTRAP]; /* added at run time: node_daemon_add_bootstrap */
  int nextra;
  /* our record */
  dht_typed_addr addrs[DHT_RECORD_MAX_ADDRS];
  int naddrs;
  int nbound; /* addrs[0..nbound): the bound ones; the rest follow the NAT service */
  bool need_publish;
  /* the NAT service: our public address, from peers in distinct networks */
  nat_svc *nat;
  uint64_t nat_sync_at; /* uv_now of the next look at its vote */
  uint64_t lan_at;      /* uv_now of the next look at our interfaces (LAN candidates) */
  /* LAN discovery */
  uv_udp_t lan;
  bool lan_open;
  uint64_t lan_next;
  /* counters the engine cannot see */
  uint64_t send_dropped, send_errors, recv_truncated, recv_errors;
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
  node_ctl ctl;         /* node_ctl.c's */
  node_msg msg;         /* node_msg.c's */
  node_cmd_msg cmd_msg; /* node_cmd_msg.c's */
  node_portmap portmap; /* node_portmap.c's */
  uint8_t recvbuf[RECV_BUF];
};

/* node_daemon.c */
const char *node_daemon_state_name(int state);
void node_daemon_pump(rd_daemon *d);
void node_daemon_shutdown(rd_daemon *d, int code);
void node_daemon_bootstrap(rd_daemon *d);
/* Adds p to the peers the next bootstrap joins through (after the
 * configured ones): nothing if it is there already (same key and address),
 * and the oldest added goes when the list is full. */
void node_daemon_add_bootstrap(rd_daemon *d, const dht_peer *p);

#endif /* ROOST_NODE_DAEMON_H */

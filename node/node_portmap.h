/*
 * node_portmap.h - roostd's port mapping: the libuv driver of nat/'s
 * port-mapping policy and its two adapters (node_portmap.c).
 *
 * The daemon embeds one node_portmap, starts it once its UDP sockets are
 * bound, stops it on a clean shutdown (the callback runs when the deletes
 * are done or their bound passed), closes its handles before the loop's
 * last run and frees it after the loop ended.
 */
#ifndef ROOST_NODE_PORTMAP_H
#define ROOST_NODE_PORTMAP_H

#include <uv.h>

#include "nat_portmap.h"
#include "node.h"

typedef struct node_portmap node_portmap;

/* One miniupnpc request on the thread pool. */
typedef struct node_upnp_job {
  uv_work_t w;
  node_portmap *np;
  nat_gw_req req;
  nat_gw_result res;
} node_upnp_job;

struct node_portmap {
  uv_loop_t *loop;
  nat_portmap *pm; /* NULL: port mapping is off */
  nat_upnp *upnp;
  nat_pmp *pmp;
  nat_gw_ops ops[NAT_PM_NPROTO];
  uv_timer_t timer;     /* the policy's expiry */
  uv_timer_t pmp_timer; /* libnatpmp's retransmissions */
  uv_poll_t *poll;      /* libnatpmp's socket (heap: made again when the socket changes) */
  bool timers_open;
  /* UPnP: one job on the thread pool at a time (a hung gateway holds one
   * thread, never more), and the one request waiting for it */
  node_upnp_job job;
  bool job_running;
  bool have_waiting;
  nat_gw_req waiting;
  bool closed;
  void (*on_stopped)(void *ctx);
  void *stop_ctx;
  /* a new mapping to prove: the daemon hands it to nat/'s dial-back (set
   * before node_portmap_start, which keeps it) */
  void (*on_mapped)(void *ctx, int proto, const dht_addr *ext);
  void *mapped_ctx;
};

/* Why nothing is mapped (node_portmap_choose). */
enum {
  NODE_PORTMAP_NO_MODE = -1,     /* --portmap off */
  NODE_PORTMAP_NO_SOCKET = -2,   /* no IPv4 or dual-stack socket */
  NODE_PORTMAP_NO_LOOPBACK = -3, /* it is bound to loopback: no gateway can reach it */
  NODE_PORTMAP_NO_PUBLIC = -4,   /* it is bound to a public address: nothing to map */
};

/* Which socket's port to map, given the mode and the sockets' bound
 * addresses: 0 and *out (its address), or a NODE_PORTMAP_NO_* reason (*out
 * is then the socket looked at, family 0 when none).  Pure: tests call it. */
int node_portmap_choose(int mode, const dht_addr *bound, int nbound, dht_addr *out);

/* Decides (node_portmap_choose) and starts: nothing when mode is off or when no listen socket
 * could be reached through a gateway (loopback only, or a public address
 * already); else maps the port of the IPv4 (or dual-stack) socket.  bound
 * are the sockets' bound addresses.  Always returns 0: a port mapping that
 * cannot start is logged, never fatal. */
int node_portmap_start(node_portmap *np, uv_loop_t *loop, int mode, const dht_addr *bound,
                       int nbound, int log_level);
/* Begins the clean stop: deletes our mappings; done(ctx) runs once, when they
 * are deleted or the policy's stop bound passed (at once when there is
 * nothing to delete, before this returns). */
void node_portmap_stop(node_portmap *np, void (*done)(void *ctx), void *ctx);
/* Closes the handles (after stop; a job on the thread pool finishes on its
 * own and is then ignored). */
void node_portmap_close(node_portmap *np);
/* Frees what is left; after the loop ended.  Fine on a zeroed struct. */
void node_portmap_free(node_portmap *np);
/* The policy's snapshot of proto; DHT_ERR_NOTFOUND when port mapping is off. */
int node_portmap_info(const node_portmap *np, int proto, nat_pm_info *out);
/* nat/'s dial-back verdict on the mapping of proto (a NAT_EV_MAPPING). */
void node_portmap_verified(node_portmap *np, int proto, bool ok);

#endif /* ROOST_NODE_PORTMAP_H */

/*
 * node_portmap.c - roostd's port mapping: runs nat/'s policy on the loop
 * and its two adapters the way each needs.
 *
 * UPnP (miniupnpc) blocks, so its requests run on the libuv thread pool,
 * one at a time: a gateway that hangs holds one pool thread, never more (a
 * request the policy issues meanwhile waits in one slot, a newer one
 * replaces it).  NAT-PMP (libnatpmp) does not block: its socket is watched
 * with uv_poll and its retransmissions run on a uv_timer.  The policy's own
 * timer is a third.  Completions go back to the policy
 * (nat_portmap_done), then its events are drained and its timer re-armed,
 * always from a libuv callback, never from inside one of the policy's calls.
 *
 * Nothing here blocks the loop: initnatpmp reads /proc/net/route and opens
 * a socket; everything else is a non-blocking send or the thread pool.
 */
#include <stdlib.h>
#include <string.h>

#include "node_portmap.h"

static void after(node_portmap *np);

static dht_ts now_of(const node_portmap *np) {
  return (dht_ts)uv_now(np->loop);
}

/* ---- UPnP on the thread pool -------------------------------------------------- */

static void upnp_work(uv_work_t *w) {
  node_upnp_job *j = (node_upnp_job *)w;
  nat_upnp_run(j->np->upnp, &j->req, &j->res);
}

static void upnp_after(uv_work_t *w, int status);

static int upnp_submit(node_portmap *np, const nat_gw_req *req) {
  np->job.np = np;
  np->job.req = *req;
  memset(&np->job.res, 0, sizeof np->job.res);
  if (uv_queue_work(np->loop, &np->job.w, upnp_work, upnp_after) != 0)
    return NAT_GW_ERR_IO;
  np->job_running = true;
  return 0;
}

static void upnp_after(uv_work_t *w, int status) {
  node_upnp_job *j = (node_upnp_job *)w;
  node_portmap *np = j->np;
  np->job_running = false;
  if (np->closed || !np->pm)
    return;
  uint64_t id = j->req.id;
  nat_gw_result res = j->res;
  if (status == UV_ECANCELED)
    res.status = NAT_GW_ERR_TIMEOUT; /* the policy gave up on it already */
  if (np->have_waiting) {
    np->have_waiting = false;
    nat_gw_req next = np->waiting;
    int rv = upnp_submit(np, &next);
    if (rv) {
      nat_gw_result f = {.status = rv};
      nat_portmap_done(np->pm, next.id, &f, now_of(np));
    }
  }
  nat_portmap_done(np->pm, id, &res, now_of(np));
  after(np);
}

static int upnp_op(void *ctx, const nat_gw_req *req) {
  node_portmap *np = ctx;
  if (np->job_running) {
    np->waiting = *req;
    np->have_waiting = true;
    return 0;
  }
  return upnp_submit(np, req);
}

static void upnp_cancel(void *ctx, uint64_t id) {
  node_portmap *np = ctx;
  if (np->have_waiting && np->waiting.id == id)
    np->have_waiting = false;
  else if (np->job_running && np->job.req.id == id)
    uv_cancel((uv_req_t *)&np->job.w); /* only if it has not started: it then ends as cancelled */
}

/* ---- NAT-PMP on the loop ---------------------------------------------------------- */

static void on_poll_closed(uv_handle_t *h) {
  free(h);
}

static void poll_close(node_portmap *np) {
  if (!np->poll)
    return;
  uv_close((uv_handle_t *)np->poll, on_poll_closed); /* stops watching the fd now */
  np->poll = NULL;
}

static void on_pmp_timer(uv_timer_t *t);

static void pmp_rearm(node_portmap *np) {
  int64_t t = nat_pmp_timeout_ms(np->pmp);
  if (t < 0)
    uv_timer_stop(&np->pmp_timer);
  else /* +1: libnatpmp retransmits only once its retry time has passed */
    uv_timer_start(&np->pmp_timer, on_pmp_timer, (uint64_t)t + 1, 0);
}

static void pmp_read(node_portmap *np) {
  uint64_t id;
  nat_gw_result res;
  if (nat_pmp_read(np->pmp, &id, &res) == 1)
    nat_portmap_done(np->pm, id, &res, now_of(np));
  pmp_rearm(np);
  after(np);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  node_portmap *np = h->data;
  (void)events;
  if (status <
      0) { /* the socket broke: stop watching it; a later request finds the gateway again */
    poll_close(np);
    return;
  }
  pmp_read(np);
}

static void on_pmp_timer(uv_timer_t *t) {
  pmp_read(t->data);
}

static void poll_open(node_portmap *np) {
  int fd = nat_pmp_fd(np->pmp);
  if (fd < 0 || np->poll)
    return;
  uv_poll_t *p = malloc(sizeof *p);
  if (!p)
    return;
  if (uv_poll_init(np->loop, p, fd) != 0) {
    free(p);
    return;
  }
  p->data = np;
  np->poll = p;
  if (uv_poll_start(p, UV_READABLE, on_poll) != 0)
    poll_close(np);
}

static int pmp_op(void *ctx, const nat_gw_req *req) {
  node_portmap *np = ctx;
  if (req->discover_ms > 0)
    poll_close(np); /* libnatpmp closes its socket to find the gateway again */
  int rv = nat_pmp_start(np->pmp, req);
  poll_open(np);
  pmp_rearm(np);
  return rv;
}

static void pmp_cancel(void *ctx, uint64_t id) {
  node_portmap *np = ctx;
  (void)id;
  nat_pmp_cancel(np->pmp);
  uv_timer_stop(&np->pmp_timer);
}

/* ---- the policy ------------------------------------------------------------------ */

static void on_timer(uv_timer_t *t) {
  node_portmap *np = t->data;
  nat_portmap_handle_expiry(np->pm, now_of(np));
  after(np);
}

static void policy_log(void *ctx, int level, const char *msg) {
  (void)ctx;
  node_log(level, "nat", "%s", msg);
}

/* Drains the events (a MAPPED address goes to the daemon, whose NAT service
 * dial-backs it), re-arms the timer, and ends a stop that is done. */
static void after(node_portmap *np) {
  if (!np->pm || np->closed)
    return;
  nat_pm_event ev;
  while (nat_portmap_poll_event(np->pm, &ev) == 0) {
    char txt[DHT_ADDR_STRLEN];
    NLOG(NODE_LOG_DEBUG, "nat", "port mapping event %d (%s) %s", ev.type,
         nat_portmap_proto_name(ev.proto),
         ev.ext.family ? dht_addr_fmt(&ev.ext, txt, sizeof txt) : "-");
    if (ev.type == NAT_PM_EV_MAPPED && np->on_mapped)
      np->on_mapped(np->mapped_ctx, ev.proto, &ev.ext);
  }
  dht_ts now = now_of(np);
  if (np->on_stopped && nat_portmap_is_stopped(np->pm, now)) {
    void (*done)(void *) = np->on_stopped;
    np->on_stopped = NULL;
    uv_timer_stop(&np->timer);
    done(np->stop_ctx);
    return;
  }
  dht_ts exp = nat_portmap_get_expiry(np->pm);
  if (exp == DHT_TS_NEVER) {
    uv_timer_stop(&np->timer);
    return;
  }
  uv_timer_start(&np->timer, on_timer, exp > now ? (uint64_t)(exp - now) : 0, 0);
}

/* The socket whose port we map: the IPv4 one, else a dual-stack [::]. */
static const dht_addr *pick(const dht_addr *bound, int n) {
  const dht_addr *dual = NULL;
  for (int i = 0; i < n; i++) {
    if (bound[i].family == DHT_AF_INET)
      return &bound[i];
    if (bound[i].family == DHT_AF_INET6 && node_addr_is_any(&bound[i]))
      dual = &bound[i];
  }
  return dual;
}

int node_portmap_choose(int mode, const dht_addr *bound, int nbound, dht_addr *out) {
  memset(out, 0, sizeof *out);
  if (mode == NODE_PORTMAP_OFF)
    return NODE_PORTMAP_NO_MODE;
  const dht_addr *a = pick(bound, nbound);
  if (!a || !a->port)
    return NODE_PORTMAP_NO_SOCKET;
  *out = *a;
  if (dht_addr_is_loopback(a))
    return NODE_PORTMAP_NO_LOOPBACK;
  if (!node_addr_is_any(a) && !dht_addr_is_private(a))
    return NODE_PORTMAP_NO_PUBLIC;
  return 0;
}

int node_portmap_start(node_portmap *np, uv_loop_t *loop, int mode, const dht_addr *bound,
                       int nbound, int log_level) {
  /* the caller's hook, set before the start, survives the reset */
  void (*on_mapped)(void *, int, const dht_addr *) = np->on_mapped;
  void *mapped_ctx = np->mapped_ctx;
  memset(np, 0, sizeof *np);
  np->on_mapped = on_mapped;
  np->mapped_ctx = mapped_ctx;
  np->loop = loop;
  dht_addr use;
  char txt[DHT_ADDR_STRLEN];
  int why = node_portmap_choose(mode, bound, nbound, &use);
  dht_addr_fmt(&use, txt, sizeof txt);
  switch (why) {
  case NODE_PORTMAP_NO_MODE:
    NLOG(NODE_LOG_INFO, "nat", "port mapping is off");
    return 0;
  case NODE_PORTMAP_NO_SOCKET:
    NLOG(NODE_LOG_INFO, "nat", "port mapping: no IPv4 socket to map");
    return 0;
  case NODE_PORTMAP_NO_LOOPBACK:
    /* no gateway can forward to it, and nothing goes out looking for one */
    NLOG(NODE_LOG_INFO, "nat", "port mapping: not used (%s is a loopback address)", txt);
    return 0;
  case NODE_PORTMAP_NO_PUBLIC:
    NLOG(NODE_LOG_INFO, "nat", "port mapping: not needed (%s is a public address)", txt);
    return 0;
  default:
    break;
  }
  const dht_addr *a = &use;
  if (mode == NODE_PORTMAP_AUTO || mode == NODE_PORTMAP_UPNP) {
    nat_upnp_settings us;
    nat_upnp_settings_default(&us);
    if (a->family == DHT_AF_INET && !node_addr_is_any(a)) {
      us.internal = *a; /* bound to one LAN address: map to that one */
      us.internal.port = 0;
    }
    if (nat_upnp_new(&np->upnp, &us) != 0)
      NLOG(NODE_LOG_WARN, "nat", "port mapping: UPnP unavailable (out of memory)");
  }
  if ((mode == NODE_PORTMAP_AUTO || mode == NODE_PORTMAP_NATPMP) &&
      nat_pmp_new(&np->pmp, NULL) != 0)
    NLOG(NODE_LOG_WARN, "nat", "port mapping: NAT-PMP unavailable (out of memory)");
  const nat_gw_ops *ops[NAT_PM_NPROTO] = {NULL, NULL};
  if (np->pmp) {
    np->ops[NAT_PM_NATPMP] = (nat_gw_ops){np, pmp_op, pmp_op, pmp_op, pmp_cancel};
    ops[NAT_PM_NATPMP] = &np->ops[NAT_PM_NATPMP];
  }
  if (np->upnp) {
    np->ops[NAT_PM_UPNP] = (nat_gw_ops){np, upnp_op, upnp_op, upnp_op, upnp_cancel};
    ops[NAT_PM_UPNP] = &np->ops[NAT_PM_UPNP];
  }
  nat_portmap_settings s;
  nat_portmap_settings_default(&s);
  s.log_level = log_level;
  nat_portmap_callbacks cb = {NULL, policy_log};
  if (nat_portmap_new(&np->pm, &s, ops, &cb, NULL) != 0) {
    NLOG(NODE_LOG_WARN, "nat", "port mapping: cannot start (out of memory)");
    node_portmap_free(np);
    return 0;
  }
  uv_timer_init(loop, &np->timer);
  uv_timer_init(loop, &np->pmp_timer);
  np->timer.data = np->pmp_timer.data = np;
  np->timers_open = true;
  NLOG(NODE_LOG_INFO, "nat", "port mapping: asking the gateway to forward UDP port %u (%s%s%s)",
       a->port, np->pmp ? "NAT-PMP" : "", np->pmp && np->upnp ? " and " : "",
       np->upnp ? "UPnP" : "");
  nat_portmap_start(np->pm, a->port, now_of(np));
  after(np);
  return 0;
}

void node_portmap_stop(node_portmap *np, void (*done)(void *ctx), void *ctx) {
  if (!np->pm || np->closed) {
    done(ctx);
    return;
  }
  np->on_stopped = done;
  np->stop_ctx = ctx;
  nat_portmap_stop(np->pm, now_of(np));
  after(np); /* calls done at once when there is nothing to delete */
}

static void close_timer(uv_timer_t *t) {
  if (!uv_is_closing((uv_handle_t *)t))
    uv_close((uv_handle_t *)t, NULL);
}

void node_portmap_close(node_portmap *np) {
  if (np->closed)
    return;
  np->closed = true;
  np->have_waiting = false;
  if (np->job_running)
    uv_cancel((uv_req_t *)&np->job.w);
  poll_close(np);
  if (np->timers_open) {
    close_timer(&np->timer);
    close_timer(&np->pmp_timer);
  }
}

void node_portmap_free(node_portmap *np) {
  nat_portmap_del(np->pm);
  nat_upnp_del(np->upnp);
  nat_pmp_del(np->pmp);
  np->pm = NULL;
  np->upnp = NULL;
  np->pmp = NULL;
}

int node_portmap_info(const node_portmap *np, int proto, nat_pm_info *out) {
  if (!np->pm)
    return DHT_ERR_NOTFOUND;
  return nat_portmap_info(np->pm, proto, out, now_of(np));
}

void node_portmap_verified(node_portmap *np, int proto, bool ok) {
  if (!np->pm || np->closed)
    return;
  nat_portmap_verified(np->pm, proto, ok, now_of(np));
  after(np);
}

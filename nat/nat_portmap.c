/*
 * nat_portmap.c - the port-mapping policy: which request to send a gateway,
 * when, and what its answer means.  Sans-I/O: the gateways are behind
 * nat_gw_ops (nat_portmap.h), time is an argument.
 *
 * Each protocol (NAT-PMP, UPnP) runs the same cycle on its own, in
 * parallel: EXTERNAL (the gateway's WAN address; finds the gateway too when
 * nothing is cached) -> ADD (our UDP port, lease_s) -> wait half the lease
 * -> the cycle again.  A failure waits backoff_min_ms, doubling up to
 * backoff_max_ms; a failure of a request that used the adapter's cached
 * gateway drops the cache and retries at once with discovery (once per run
 * of failures).  725 (only permanent leases) re-asks with lease 0 at once and
 * then re-adds every permanent_renew_ms anyway; 718 (conflict) tries the next
 * external port, port_tries in all.
 *
 * Invariants: at most one request in flight per protocol (op != 0), bounded
 * by its deadline; a completion is accepted only for the request in flight
 * (matched by id); held_until covers every mapping the gateway may hold for
 * us (set when an ADD is sent, since an ADD that timed out may still have
 * been applied), so a stop deletes it.  The state shown to the UI is derived
 * from these fields (state_of), never stored, so it cannot drift from them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "nat_portmap.h"

typedef struct proto_st {
  nat_gw_ops ops;
  bool on;
  uint8_t op; /* the request in flight: enum nat_gw_op, 0 none */
  uint64_t req_id;
  dht_ts req_deadline;
  int32_t req_discover;
  uint16_t req_ext_port;
  uint32_t req_lease;
  dht_ts next_at; /* when the next cycle begins (retry or renewal) */
  bool cache_ok;  /* the adapter's cached gateway worked last time */
  bool cache_retried;
  bool permanent; /* the gateway takes only lease 0 (725) */
  bool behind;    /* private/reserved WAN, or "not connected" */
  bool failed_reported;
  dht_addr wan; /* port 0 */
  /* the mapping granted */
  bool have_map;
  dht_addr ext;
  uint32_t lease_s;
  dht_ts lease_end; /* DHT_TS_NEVER when permanent */
  /* what the gateway may hold for us, granted or not */
  dht_ts held_until;
  uint16_t held_port;
  uint16_t want_port;
  int port_try;
  uint8_t verify;
  int last_error;
  uint32_t attempts, failures, failures_row;
  dht_ts backoff;
} proto_st;

struct nat_portmap {
  nat_portmap_settings s;
  nat_portmap_callbacks cb;
  dht_mem mem;
  proto_st p[NAT_PM_NPROTO];
  uint16_t int_port;
  bool started, stopping;
  dht_ts stop_deadline;
  uint64_t next_id;
  nat_pm_stats stats;
  int ev_head, ev_len;
  nat_pm_event ev[]; /* settings.max_events */
};

void nat_portmap_settings_default(nat_portmap_settings *s) {
  memset(s, 0, sizeof *s);
  s->lease_s = 7200;
  s->renew_min_ms = 30 * 1000;
  s->permanent_renew_ms = 3600 * 1000;
  s->backoff_min_ms = 30 * 1000;
  s->backoff_max_ms = 30 * 60 * 1000;
  s->upnp_discover_ms = 2000;
  s->upnp_timeout_ms = 10 * 1000;
  s->natpmp_timeout_ms = 4000;
  s->stop_timeout_ms = 3000;
  s->port_tries = 4;
  s->max_events = 16;
  s->log_level = DHT_LOG_WARN;
}

static bool settings_ok(const nat_portmap_settings *s) {
  return s->lease_s >= 60 && s->lease_s <= 604800 && s->renew_min_ms >= 1000 &&
         s->permanent_renew_ms >= 60 * 1000 && s->backoff_min_ms >= 1000 &&
         s->backoff_max_ms >= s->backoff_min_ms && s->backoff_max_ms <= 24 * 3600 * 1000 &&
         s->upnp_discover_ms >= 100 && s->upnp_discover_ms <= 10000 &&
         s->upnp_timeout_ms > s->upnp_discover_ms && s->upnp_timeout_ms <= 120 * 1000 &&
         s->natpmp_timeout_ms >= 100 && s->natpmp_timeout_ms <= 120 * 1000 &&
         s->stop_timeout_ms >= 0 && s->stop_timeout_ms <= 60 * 1000 && s->port_tries >= 1 &&
         s->port_tries <= 64 && s->max_events >= 1 && s->max_events <= 256;
}

/* ---- names and words ------------------------------------------------------- */

const char *nat_portmap_proto_name(int proto) {
  return proto == NAT_PM_NATPMP ? "NAT-PMP" : proto == NAT_PM_UPNP ? "UPnP" : "?";
}

const char *nat_portmap_state_name(int state) {
  static const char *const n[] = {"off",      "discovering", "mapping",  "mapped",
                                  "renewing", "failed",      "deleting", "stopped"};
  return state >= 0 && state <= NAT_PM_STOPPED ? n[state] : "?";
}

const char *nat_portmap_strerror(int st) {
  switch (st) {
  case NAT_GW_OK:
    return "ok";
  case NAT_GW_ERR_NOGATEWAY:
    return "no gateway found";
  case NAT_GW_ERR_UNSUPPORTED:
    return "the gateway does not offer this protocol";
  case NAT_GW_ERR_TIMEOUT:
    return "the gateway did not answer in time";
  case NAT_GW_ERR_GARBAGE:
    return "the gateway's answer made no sense";
  case NAT_GW_ERR_HTTP:
    return "the gateway's UPnP web service failed or could not be reached";
  case NAT_GW_ERR_REFUSED:
    return "the gateway refused: not authorized";
  case NAT_GW_ERR_NETWORK:
    return "the gateway has no usable internet connection";
  case NAT_GW_ERR_RESOURCES:
    return "the gateway has no room for another mapping";
  case NAT_GW_ERR_IO:
    return "a local network error";
  case NAT_GW_ERR_NOMEM:
    return "out of memory";
  case NAT_GW_ERR_INTERNAL:
    return "internal error in the gateway adapter";
  case 402:
    return "the gateway rejected the request's arguments (UPnP 402)";
  case 501:
    return "the gateway refused the mapping (UPnP 501 ActionFailed)";
  case 606:
    return "the gateway refused: not authorized (UPnP 606)";
  case NAT_UPNP_ERR_NO_SUCH_ENTRY:
    return "no such mapping on the gateway (UPnP 714)";
  case 715:
  case 716:
    return "the gateway does not accept wildcards here (UPnP 715/716)";
  case NAT_UPNP_ERR_CONFLICT:
    return "the external port is mapped to another host (UPnP 718)";
  case 724:
    return "the gateway wants the same internal and external port (UPnP 724)";
  case NAT_UPNP_ERR_ONLY_PERMANENT:
    return "the gateway takes only permanent leases (UPnP 725)";
  case 728:
    return "the gateway's mapping table is full (UPnP 728)";
  default:
    return st > 0 ? "the gateway refused (UPnP error)" : "unknown error";
  }
}

/* ---- helpers ---------------------------------------------------------------- */

static void plog(const nat_portmap *pm, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void plog(const nat_portmap *pm, int level, const char *fmt, ...) {
  if (!pm->cb.log || level > pm->s.log_level)
    return;
  char line[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  pm->cb.log(pm->cb.ctx, level, line);
}

static void push_event(nat_portmap *pm, uint8_t type, int proto, const dht_addr *a, int error) {
  if (pm->ev_len == pm->s.max_events) { /* drop the oldest */
    pm->ev_head = (pm->ev_head + 1) % pm->s.max_events;
    pm->ev_len--;
    pm->stats.events_dropped++;
  }
  nat_pm_event *ev = &pm->ev[(pm->ev_head + pm->ev_len) % pm->s.max_events];
  memset(ev, 0, sizeof *ev);
  ev->type = type;
  ev->proto = (uint8_t)proto;
  if (a)
    ev->ext = *a;
  ev->error = error;
  pm->ev_len++;
}

/* An IPv4 address no gateway on the internet has: RFC 1918, carrier-grade
 * NAT (RFC 6598), loopback, link-local, "this network", IETF protocol
 * assignments, the TEST-NETs, benchmarking (198.18/15), multicast and the
 * reserved 240/4. */
static bool wan_reserved(const dht_addr *a) {
  if (a->family != DHT_AF_INET)
    return true;
  const uint8_t *b = a->ip;
  return b[0] == 0 || b[0] == 10 || b[0] == 127 || b[0] >= 224 ||
         (b[0] == 100 && (b[1] & 0xc0) == 64) || (b[0] == 169 && b[1] == 254) ||
         (b[0] == 172 && (b[1] & 0xf0) == 16) || (b[0] == 192 && b[1] == 168) ||
         (b[0] == 192 && b[1] == 0 && (b[2] == 0 || b[2] == 2)) ||
         (b[0] == 198 && (b[1] & 0xfe) == 18) || (b[0] == 198 && b[1] == 51 && b[2] == 100) ||
         (b[0] == 203 && b[1] == 0 && b[2] == 113);
}

static dht_ts timeout_of(const nat_portmap *pm, int proto) {
  return proto == NAT_PM_UPNP ? pm->s.upnp_timeout_ms : pm->s.natpmp_timeout_ms;
}

static bool held(const proto_st *p, dht_ts now) {
  return p->held_until > now;
}

static int state_of(const nat_portmap *pm, const proto_st *p) {
  if (!p->on || !pm->started)
    return NAT_PM_OFF;
  if (pm->stopping)
    return p->op == NAT_GW_OP_DELETE ? NAT_PM_DELETING : NAT_PM_STOPPED;
  if (p->op == NAT_GW_OP_EXTERNAL || p->op == NAT_GW_OP_ADD)
    return p->have_map                   ? NAT_PM_RENEWING
           : p->op == NAT_GW_OP_EXTERNAL ? NAT_PM_DISCOVERING
                                         : NAT_PM_MAPPING;
  return p->have_map ? NAT_PM_MAPPED : NAT_PM_FAILED;
}

static void fail(nat_portmap *pm, int proto, int status, dht_ts now);
static void delete_done(nat_portmap *pm, int proto, int status);

/* Sends one request; a start that fails is that request's completion. */
static void issue(nat_portmap *pm, int proto, uint8_t op, uint16_t ext_port, uint32_t lease_s,
                  dht_ts now) {
  proto_st *p = &pm->p[proto];
  nat_gw_req r;
  memset(&r, 0, sizeof r);
  r.id = ++pm->next_id;
  r.proto = (uint8_t)proto;
  r.op = op;
  r.int_port = pm->int_port;
  r.ext_port = ext_port;
  r.lease_s = lease_s;
  r.discover_ms = p->cache_ok ? 0 : proto == NAT_PM_UPNP ? (int32_t)pm->s.upnp_discover_ms : 1;
  p->op = op;
  p->req_id = r.id;
  p->req_discover = r.discover_ms;
  p->req_ext_port = ext_port;
  p->req_lease = lease_s;
  p->req_deadline = op == NAT_GW_OP_DELETE ? pm->stop_deadline : now + timeout_of(pm, proto);
  p->next_at = DHT_TS_NEVER;
  p->attempts++;
  if (op == NAT_GW_OP_ADD) {
    /* from now on the gateway may hold it, answered or not */
    dht_ts until = lease_s ? now + (dht_ts)lease_s * 1000 : DHT_TS_NEVER;
    if (until > p->held_until || ext_port != p->held_port)
      p->held_until = until;
    p->held_port = ext_port;
  }
  int (*fn)(void *, const nat_gw_req *) = op == NAT_GW_OP_EXTERNAL ? p->ops.get_external
                                          : op == NAT_GW_OP_ADD    ? p->ops.add
                                                                   : p->ops.del;
  int rv = fn(p->ops.ctx, &r);
  if (rv != 0 && p->op == op && p->req_id == r.id) {
    p->op = 0;
    rv = rv < 0 ? rv : NAT_GW_ERR_INTERNAL;
    if (op == NAT_GW_OP_DELETE)
      delete_done(pm, proto, rv);
    else
      fail(pm, proto, rv, now);
  }
}

/* A cycle: the WAN address first (finding the gateway if need be), then the
 * mapping. */
static void begin(nat_portmap *pm, int proto, dht_ts now) {
  issue(pm, proto, NAT_GW_OP_EXTERNAL, 0, 0, now);
}

static void lose(nat_portmap *pm, int proto, const char *why) {
  proto_st *p = &pm->p[proto];
  if (!p->have_map)
    return;
  char txt[DHT_ADDR_STRLEN];
  plog(pm, DHT_LOG_INFO, "port mapping: %s mapping %s lost: %s", nat_portmap_proto_name(proto),
       dht_addr_fmt(&p->ext, txt, sizeof txt), why);
  p->have_map = false;
  p->verify = NAT_PM_UNVERIFIED;
  push_event(pm, NAT_PM_EV_LOST, proto, &p->ext, 0);
}

static void fail(nat_portmap *pm, int proto, int status, dht_ts now) {
  proto_st *p = &pm->p[proto];
  p->last_error = status;
  p->failures++;
  p->failures_row++;
  if (pm->stopping)
    return; /* a delete: not retried (the lease ends the mapping) */
  /* an answer that makes sense (a UPnP error code, "not authorized", "no
   * WAN") says the gateway is there: the cache stays */
  bool gone = status < 0 && status != NAT_GW_ERR_REFUSED && status != NAT_GW_ERR_NETWORK &&
              status != NAT_GW_ERR_RESOURCES && status != NAT_GW_ERR_NOMEM;
  bool used_cache = p->req_discover == 0;
  if (gone)
    p->cache_ok = false;
  if (gone && used_cache && !p->cache_retried) {
    /* the cached gateway may be stale (a router that rebooted): find it
     * again now rather than after a backoff */
    p->cache_retried = true;
    plog(pm, DHT_LOG_DEBUG, "port mapping: %s: %s with the cached gateway; discovering again",
         nat_portmap_proto_name(proto), nat_portmap_strerror(status));
    begin(pm, proto, now);
    return;
  }
  p->backoff = p->backoff ? p->backoff * 2 : pm->s.backoff_min_ms;
  if (p->backoff > pm->s.backoff_max_ms)
    p->backoff = pm->s.backoff_max_ms;
  p->next_at = now + p->backoff;
  p->port_try = 0;
  p->want_port = pm->int_port;
  if (p->have_map && now >= p->lease_end)
    lose(pm, proto, "its lease ended");
  if (!p->failed_reported) {
    p->failed_reported = true;
    push_event(pm, NAT_PM_EV_FAILED, proto, NULL, status);
    plog(pm, DHT_LOG_INFO, "port mapping: %s: %s (%d); trying again in %lld s",
         nat_portmap_proto_name(proto), nat_portmap_strerror(status), status,
         (long long)(p->backoff / 1000));
  } else {
    plog(pm, DHT_LOG_DEBUG, "port mapping: %s: %s (%d); trying again in %lld s",
         nat_portmap_proto_name(proto), nat_portmap_strerror(status), status,
         (long long)(p->backoff / 1000));
  }
}

static void garbage(nat_portmap *pm, int proto, dht_ts now) {
  pm->stats.garbage++;
  fail(pm, proto, NAT_GW_ERR_GARBAGE, now);
}

/* ---- completions -------------------------------------------------------------- */

static void external_done(nat_portmap *pm, int proto, const nat_gw_result *res, dht_ts now) {
  proto_st *p = &pm->p[proto];
  if (res->wan.family != DHT_AF_INET) {
    garbage(pm, proto, now);
    return;
  }
  dht_addr wan = res->wan;
  wan.port = 0;
  bool behind = wan_reserved(&wan) || (res->flags & NAT_GW_F_NOT_CONNECTED);
  if (behind && (!p->behind || !dht_addr_eq(&wan, &p->wan))) {
    char txt[DHT_ADDR_STRLEN];
    dht_addr_fmt(&wan, txt, sizeof txt);
    txt[strcspn(txt, ":")] = 0;
    plog(pm, DHT_LOG_WARN,
         "port mapping: the %s gateway's WAN address %s is private or reserved%s: behind a "
         "carrier NAT or a double NAT, port mapping cannot help (trying anyway; a dial-back "
         "decides)",
         nat_portmap_proto_name(proto), txt,
         (res->flags & NAT_GW_F_NOT_CONNECTED) ? " (it says it is not connected)" : "");
    push_event(pm, NAT_PM_EV_BEHIND, proto, &wan, 0);
  }
  p->behind = behind;
  p->wan = wan;
  p->cache_ok = true;
  uint16_t port = p->have_map ? p->ext.port : p->want_port;
  issue(pm, proto, NAT_GW_OP_ADD, port, p->permanent ? 0 : pm->s.lease_s, now);
}

static void add_done(nat_portmap *pm, int proto, const nat_gw_result *res, dht_ts now) {
  proto_st *p = &pm->p[proto];
  uint32_t asked = p->req_lease;
  if (res->ext_port == 0 || (asked > 0 && res->lease_s == 0) ||
      (res->wan.family != DHT_AF_NONE && res->wan.family != DHT_AF_INET)) {
    garbage(pm, proto, now);
    return;
  }
  dht_addr ext = res->wan.family == DHT_AF_INET ? res->wan : p->wan;
  ext.port = res->ext_port;
  uint32_t lease = asked ? res->lease_s : 0;
  p->lease_s = lease;
  p->lease_end = lease ? now + (dht_ts)lease * 1000 : DHT_TS_NEVER;
  p->held_until = p->lease_end;
  p->held_port = res->ext_port;
  if (!p->have_map || !dht_addr_eq(&ext, &p->ext)) {
    char txt[DHT_ADDR_STRLEN];
    if (p->have_map)
      push_event(pm, NAT_PM_EV_LOST, proto, &p->ext, 0);
    p->verify = NAT_PM_UNVERIFIED;
    p->ext = ext;
    p->have_map = true;
    push_event(pm, NAT_PM_EV_MAPPED, proto, &ext, 0);
    if (lease)
      plog(pm, DHT_LOG_INFO, "port mapping: %s mapped %s -> port %u for %u s (unverified)",
           nat_portmap_proto_name(proto), dht_addr_fmt(&ext, txt, sizeof txt), pm->int_port, lease);
    else
      plog(pm, DHT_LOG_INFO, "port mapping: %s mapped %s -> port %u, permanent (unverified)",
           nat_portmap_proto_name(proto), dht_addr_fmt(&ext, txt, sizeof txt), pm->int_port);
  }
  p->failures_row = 0;
  p->backoff = 0;
  p->failed_reported = false;
  p->cache_retried = false;
  p->cache_ok = true;
  p->port_try = 0;
  p->want_port = res->ext_port;
  dht_ts wait;
  if (!lease) {
    wait = pm->s.permanent_renew_ms;
  } else {
    uint32_t l = lease < pm->s.lease_s ? lease : pm->s.lease_s; /* never trust a longer one */
    wait = (dht_ts)l * 1000 / 2;
  }
  if (wait < pm->s.renew_min_ms)
    wait = pm->s.renew_min_ms;
  p->next_at = now + wait;
}

static void add_failed(nat_portmap *pm, int proto, int status, dht_ts now) {
  proto_st *p = &pm->p[proto];
  if (status == NAT_UPNP_ERR_ONLY_PERMANENT && !p->permanent) {
    p->permanent = true;
    p->last_error = status;
    plog(pm, DHT_LOG_INFO,
         "port mapping: the %s gateway takes only permanent leases: asking for one, re-added "
         "every %lld s",
         nat_portmap_proto_name(proto), (long long)(pm->s.permanent_renew_ms / 1000));
    issue(pm, proto, NAT_GW_OP_ADD, p->req_ext_port, 0, now);
    return;
  }
  if (status == NAT_UPNP_ERR_CONFLICT && !p->have_map && p->port_try + 1 < pm->s.port_tries) {
    p->last_error = status;
    p->failures++;
    p->port_try++;
    uint32_t next = (uint32_t)pm->int_port + (uint32_t)p->port_try;
    if (next > 65535)
      next = 1024 + next % 65536;
    p->want_port = (uint16_t)next;
    plog(pm, DHT_LOG_INFO, "port mapping: %s: external port %u is taken; trying %u",
         nat_portmap_proto_name(proto), p->req_ext_port, p->want_port);
    p->held_until = 0; /* the conflict was not ours */
    issue(pm, proto, NAT_GW_OP_ADD, p->want_port, p->permanent ? 0 : pm->s.lease_s, now);
    return;
  }
  fail(pm, proto, status, now);
}

static void delete_done(nat_portmap *pm, int proto, int status) {
  proto_st *p = &pm->p[proto];
  if (status == NAT_GW_OK || status == NAT_UPNP_ERR_NO_SUCH_ENTRY) {
    p->held_until = 0;
    plog(pm, DHT_LOG_INFO, "port mapping: %s mapping of port %u deleted",
         nat_portmap_proto_name(proto), p->held_port);
  } else {
    p->last_error = status;
    p->failures++;
    p->failures_row++;
    plog(pm, DHT_LOG_INFO, "port mapping: %s: could not delete the mapping of port %u (%s); %s",
         nat_portmap_proto_name(proto), p->held_port, nat_portmap_strerror(status),
         p->held_until == DHT_TS_NEVER ? "it is permanent and stays on the gateway"
                                       : "the gateway drops it when its lease ends");
  }
  if (p->have_map) {
    p->have_map = false;
    p->verify = NAT_PM_UNVERIFIED;
    push_event(pm, NAT_PM_EV_LOST, proto, &p->ext, 0);
  }
}

int nat_portmap_done(nat_portmap *pm, uint64_t id, const nat_gw_result *res, dht_ts now) {
  if (!res)
    return DHT_ERR_INVAL;
  int proto = -1;
  for (int i = 0; i < NAT_PM_NPROTO; i++)
    if (pm->p[i].op && pm->p[i].req_id == id)
      proto = i;
  if (proto < 0) {
    pm->stats.stale_done++;
    return 0;
  }
  proto_st *p = &pm->p[proto];
  uint8_t op = p->op;
  p->op = 0;
  switch (op) {
  case NAT_GW_OP_EXTERNAL:
    if (res->status == NAT_GW_OK)
      external_done(pm, proto, res, now);
    else
      fail(pm, proto, res->status, now);
    break;
  case NAT_GW_OP_ADD:
    if (res->status == NAT_GW_OK)
      add_done(pm, proto, res, now);
    else
      add_failed(pm, proto, res->status, now);
    break;
  default:
    delete_done(pm, proto, res->status);
    break;
  }
  return 0;
}

/* ---- life cycle ---------------------------------------------------------------- */

int nat_portmap_new(nat_portmap **out, const nat_portmap_settings *settings,
                    const nat_gw_ops *const ops[NAT_PM_NPROTO], const nat_portmap_callbacks *cb,
                    const dht_mem *mem) {
  nat_portmap_settings s;
  if (settings)
    s = *settings;
  else
    nat_portmap_settings_default(&s);
  if (!out || !settings_ok(&s))
    return DHT_ERR_INVAL;
  if (!mem)
    mem = &dht_mem_libc;
  nat_portmap *pm = dht_mem_calloc(mem, 1, sizeof *pm + (size_t)s.max_events * sizeof pm->ev[0]);
  if (!pm)
    return DHT_ERR_NOMEM;
  pm->s = s;
  pm->mem = *mem;
  if (cb)
    pm->cb = *cb;
  for (int i = 0; i < NAT_PM_NPROTO; i++) {
    proto_st *p = &pm->p[i];
    p->next_at = DHT_TS_NEVER;
    if (ops && ops[i] && ops[i]->get_external && ops[i]->add && ops[i]->del) {
      p->ops = *ops[i];
      p->on = true;
    }
  }
  *out = pm;
  return 0;
}

void nat_portmap_del(nat_portmap *pm) {
  if (!pm)
    return;
  dht_mem mem = pm->mem;
  dht_mem_free(&mem, pm);
}

int nat_portmap_start(nat_portmap *pm, uint16_t int_port, dht_ts now) {
  if (int_port == 0 || pm->started || pm->stopping)
    return DHT_ERR_INVAL;
  pm->started = true;
  pm->int_port = int_port;
  for (int i = 0; i < NAT_PM_NPROTO; i++) {
    pm->p[i].want_port = int_port;
    if (pm->p[i].on)
      begin(pm, i, now);
  }
  return 0;
}

int nat_portmap_verified(nat_portmap *pm, int proto, bool ok, dht_ts now) {
  if (proto < 0 || proto >= NAT_PM_NPROTO)
    return DHT_ERR_INVAL;
  proto_st *p = &pm->p[proto];
  if (!p->have_map || now >= p->lease_end)
    return 0;
  uint8_t v = ok ? NAT_PM_VERIFIED : NAT_PM_REFUTED;
  if (v != p->verify) {
    char txt[DHT_ADDR_STRLEN];
    plog(pm, ok ? DHT_LOG_INFO : DHT_LOG_WARN, "port mapping: %s mapping %s %s",
         nat_portmap_proto_name(proto), dht_addr_fmt(&p->ext, txt, sizeof txt),
         ok ? "verified: a dial-back reached us through it"
            : "does not work: a dial-back could not reach us through it");
  }
  p->verify = v;
  return 0;
}

dht_ts nat_portmap_get_expiry(const nat_portmap *pm) {
  dht_ts t = DHT_TS_NEVER;
  if (!pm->started)
    return t;
  for (int i = 0; i < NAT_PM_NPROTO; i++) {
    const proto_st *p = &pm->p[i];
    if (!p->on)
      continue;
    if (p->op && p->req_deadline < t)
      t = p->req_deadline;
    if (pm->stopping)
      continue;
    if (!p->op && p->next_at < t)
      t = p->next_at;
    if (p->have_map && !p->op && p->lease_end < t) /* a renewal in flight ends first */
      t = p->lease_end;
  }
  return t;
}

int nat_portmap_handle_expiry(nat_portmap *pm, dht_ts now) {
  if (!pm->started)
    return 0;
  for (int i = 0; i < NAT_PM_NPROTO; i++) {
    proto_st *p = &pm->p[i];
    if (!p->on)
      continue;
    if (p->op && now >= p->req_deadline) {
      uint8_t op = p->op;
      p->op = 0;
      if (p->ops.cancel)
        p->ops.cancel(p->ops.ctx, p->req_id);
      plog(pm, DHT_LOG_DEBUG, "port mapping: %s: request %llu got no answer in time",
           nat_portmap_proto_name(i), (unsigned long long)p->req_id);
      if (op == NAT_GW_OP_DELETE)
        delete_done(pm, i, NAT_GW_ERR_TIMEOUT);
      else
        fail(pm, i, NAT_GW_ERR_TIMEOUT, now);
    }
    if (pm->stopping)
      continue;
    if (p->have_map && now >= p->lease_end && !p->op)
      lose(pm, i, "its lease ended before a renewal succeeded");
    if (!p->op && now >= p->next_at)
      begin(pm, i, now);
  }
  return 0;
}

int nat_portmap_stop(nat_portmap *pm, dht_ts now) {
  if (pm->stopping)
    return 0;
  pm->stopping = true;
  pm->stop_deadline = now + pm->s.stop_timeout_ms;
  if (!pm->started)
    return 0;
  for (int i = 0; i < NAT_PM_NPROTO; i++) {
    proto_st *p = &pm->p[i];
    if (!p->on)
      continue;
    p->next_at = DHT_TS_NEVER;
    if (p->op) { /* an EXTERNAL or ADD: abandon it (an ADD is in held_until) */
      p->op = 0;
      if (p->ops.cancel)
        p->ops.cancel(p->ops.ctx, p->req_id);
    }
    if (held(p, now) && pm->s.stop_timeout_ms > 0)
      issue(pm, i, NAT_GW_OP_DELETE, p->held_port, 0, now);
    else if (p->have_map) {
      p->have_map = false;
      push_event(pm, NAT_PM_EV_LOST, i, &p->ext, 0);
    }
  }
  return 0;
}

bool nat_portmap_is_stopped(const nat_portmap *pm, dht_ts now) {
  if (!pm->stopping)
    return false;
  if (now >= pm->stop_deadline)
    return true;
  for (int i = 0; i < NAT_PM_NPROTO; i++)
    if (pm->p[i].op)
      return false;
  return true;
}

/* ---- what it found ---------------------------------------------------------------- */

int nat_portmap_poll_event(nat_portmap *pm, nat_pm_event *ev) {
  if (pm->ev_len == 0)
    return DHT_ERR_NOTFOUND;
  *ev = pm->ev[pm->ev_head];
  pm->ev_head = (pm->ev_head + 1) % pm->s.max_events;
  pm->ev_len--;
  return 0;
}

int nat_portmap_external(const nat_portmap *pm, dht_addr *out, dht_ts now) {
  for (int i = 0; i < NAT_PM_NPROTO; i++) {
    const proto_st *p = &pm->p[i];
    if (p->have_map && p->verify == NAT_PM_VERIFIED && now < p->lease_end && !pm->stopping) {
      *out = p->ext;
      return 0;
    }
  }
  return DHT_ERR_NOTFOUND;
}

int nat_portmap_info(const nat_portmap *pm, int proto, nat_pm_info *out, dht_ts now) {
  if (proto < 0 || proto >= NAT_PM_NPROTO || !out)
    return DHT_ERR_INVAL;
  const proto_st *p = &pm->p[proto];
  memset(out, 0, sizeof *out);
  out->state = (uint8_t)state_of(pm, p);
  out->verify = p->have_map ? p->verify : NAT_PM_UNVERIFIED;
  out->behind_nat = p->behind;
  out->permanent = p->permanent;
  out->wan = p->wan;
  out->int_port = pm->int_port;
  if (p->have_map) {
    out->ext = p->ext;
    out->lease_s = p->lease_s;
    out->lease_left_ms = p->lease_end == DHT_TS_NEVER ? -1
                         : p->lease_end > now         ? p->lease_end - now
                                                      : 0;
  }
  out->next_ms = -1;
  if (p->on && pm->started && !pm->stopping && !p->op && p->next_at != DHT_TS_NEVER)
    out->next_ms = p->next_at > now ? p->next_at - now : 0;
  out->last_error = p->last_error;
  if (p->last_error)
    snprintf(out->last_error_text, sizeof out->last_error_text, "%s",
             nat_portmap_strerror(p->last_error));
  out->attempts = p->attempts;
  out->failures = p->failures;
  out->failures_row = p->failures_row;
  return 0;
}

void nat_portmap_get_stats(const nat_portmap *pm, nat_pm_stats *out) {
  *out = pm->stats;
}

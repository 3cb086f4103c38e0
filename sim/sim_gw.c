/*
 * sim_gw.c - roost-sim's scripted port-mapping gateway: what a host's home
 * router answers when the host's port-mapping policy (nat/nat_portmap.c,
 * the one roostd runs) asks it over UPnP IGD or NAT-PMP, behind the same
 * nat_gw_ops tables node/'s adapters fill (sim_int.h).
 *
 * A request is held until its scripted answer is due on the run's virtual
 * clock; the run asks sim_gw_expiry when that is and takes the answer with
 * sim_gw_take, which is when an ADD makes the box's port forward
 * (sim_net_nat_forward_add), so the forward exists from the moment the
 * host learns of it.  A DELETE removes the forward when it is asked: a host
 * that stops cleanly sends its deletes and is gone before the answers.
 * Only an upnp box has a working gateway (it speaks both protocols, as
 * miniupnpd does); every other box is a router without one, which answers
 * what a real one does: no IGD answers SSDP (after the whole discovery
 * wait), nothing listens on NAT-PMP's port (an ICMP port unreachable at
 * once).  A share of upnp gateways misbehave (sim_gw_kind_of).
 *
 * Invariants: at most one request in flight per protocol (the policy's own
 * invariant; a new one replaces an abandoned one); nothing here draws from
 * a random stream or reads a wall clock, so a seed reproduces every answer;
 * answers due at the same time come NAT-PMP first, then UPnP.
 */
#include <string.h>

#include "sim_int.h"

#define SSDP_DEFAULT_MS 2000 /* a discovery the request did not time (it asked for the cache) */

int sim_gw_kind_of(const sim_net *n, int host, uint64_t seed, double bad) {
  if (sim_net_nat_type(n, host) != SIM_NAT_UPNP)
    return SIM_GW_NONE;
  if (bad <= 0)
    return SIM_GW_OK;
  /* splitmix64 of (seed, host): a fixed function, so the choice takes no
   * draw from any stream and a run with bad = 0 draws what it drew before */
  uint64_t z = seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(host + 1));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  if ((double)(z >> 11) * 0x1.0p-53 >= bad)
    return SIM_GW_OK;
  return z & 1 ? SIM_GW_SILENT : SIM_GW_GARBAGE;
}

void sim_gw_init(sim_gw *g, sim_net *n, int host, int kind, const dht_ts *clock) {
  memset(g, 0, sizeof *g);
  g->net = n;
  g->clock = clock;
  g->host = host;
  g->kind = (uint8_t)kind;
}

/* When the answer to r, asked now, is due. */
static dht_ts delay_of(sim_gw *g, const nat_gw_req *r) {
  if (r->proto == NAT_PM_NATPMP)
    return SIM_GW_NATPMP_MS;
  if (g->kind == SIM_GW_NONE) /* nobody answers SSDP: the whole wait, then nothing */
    return r->discover_ms > 0 ? r->discover_ms : SSDP_DEFAULT_MS;
  if (r->discover_ms > 0 || !g->found) {
    g->found = 1;
    return (r->discover_ms > 0 ? r->discover_ms : SSDP_DEFAULT_MS) + SIM_GW_UPNP_DISCOVERED_MS;
  }
  return SIM_GW_UPNP_MS;
}

static int start(sim_gw *g, const nat_gw_req *r, uint8_t op) {
  if (r->proto >= NAT_PM_NPROTO || r->op != op || r->id == 0 || r->int_port == 0) {
    g->bad_req++;
    return NAT_GW_ERR_INTERNAL; /* the policy's bug, not the gateway's: its completion */
  }
  if (op == NAT_GW_OP_ADD)
    g->asked++;
  if (op == NAT_GW_OP_DELETE && g->kind == SIM_GW_OK)
    sim_net_nat_forward_del(g->net, g->host, r->ext_port);
  if (g->kind == SIM_GW_SILENT)
    return 0; /* taken, never answered: the policy's bound gives up on it */
  g->req[r->proto] = *r;
  g->due[r->proto] = *g->clock + delay_of(g, r);
  return 0;
}

static int gw_external(void *ctx, const nat_gw_req *r) {
  return start(ctx, r, NAT_GW_OP_EXTERNAL);
}

static int gw_add(void *ctx, const nat_gw_req *r) {
  return start(ctx, r, NAT_GW_OP_ADD);
}

static int gw_del(void *ctx, const nat_gw_req *r) {
  return start(ctx, r, NAT_GW_OP_DELETE);
}

static void gw_cancel(void *ctx, uint64_t id) {
  sim_gw *g = ctx;
  for (int p = 0; p < NAT_PM_NPROTO; p++)
    if (g->req[p].id == id)
      g->req[p].id = 0;
}

void sim_gw_ops(sim_gw *g, nat_gw_ops ops[NAT_PM_NPROTO]) {
  for (int p = 0; p < NAT_PM_NPROTO; p++)
    ops[p] = (nat_gw_ops){g, gw_external, gw_add, gw_del, gw_cancel};
}

dht_ts sim_gw_expiry(const sim_gw *g) {
  dht_ts t = DHT_TS_NEVER;
  for (int p = 0; p < NAT_PM_NPROTO; p++)
    if (g->req[p].id && g->due[p] < t)
      t = g->due[p];
  return t;
}

/* A working gateway's answer to r at now. */
static void answer_ok(sim_gw *g, const nat_gw_req *r, dht_ts now, nat_gw_result *res) {
  switch (r->op) {
  case NAT_GW_OP_EXTERNAL:
    res->wan = sim_net_public_addr(g->net, g->host);
    res->wan.port = 0;
    return;
  case NAT_GW_OP_ADD: {
    /* NAT-PMP's external port is a suggestion: 0 asks for any (ours) */
    uint16_t ext = r->ext_port ? r->ext_port : r->int_port;
    if (r->proto == NAT_PM_NATPMP && r->lease_s == 0) {
      res->status = NAT_GW_ERR_INTERNAL; /* lifetime 0 deletes in NAT-PMP: never an ADD */
      g->bad_req++;
      return;
    }
    if (sim_net_nat_forward_add(g->net, g->host, ext, r->int_port, (dht_ts)r->lease_s * 1000,
                                now) != 0) {
      /* the port is another socket's, or the gateway's table is full */
      res->status = r->proto == NAT_PM_UPNP ? NAT_UPNP_ERR_CONFLICT : NAT_GW_ERR_RESOURCES;
      return;
    }
    g->granted++;
    res->ext_port = ext;
    res->lease_s = r->lease_s;
    return;
  }
  default: /* DELETE: done when asked, and answered ok */
    return;
  }
}

int sim_gw_take(sim_gw *g, dht_ts now, uint64_t *id, nat_gw_result *res) {
  int p = -1;
  for (int k = 0; k < NAT_PM_NPROTO; k++)
    if (g->req[k].id && g->due[k] <= now && (p < 0 || g->due[k] < g->due[p]))
      p = k;
  if (p < 0)
    return 0;
  nat_gw_req r = g->req[p];
  g->req[p].id = 0;
  memset(res, 0, sizeof *res);
  *id = r.id;
  switch (g->kind) {
  case SIM_GW_NONE:
    res->status = p == NAT_PM_UPNP ? NAT_GW_ERR_NOGATEWAY : NAT_GW_ERR_UNSUPPORTED;
    break;
  case SIM_GW_GARBAGE: /* "OK", with no address and no port */
    break;
  default:
    answer_ok(g, &r, now, res);
    break;
  }
  return 1;
}

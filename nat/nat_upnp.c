/*
 * nat_upnp.c - the UPnP IGD adapter on miniupnpc (Debian 12: miniupnpc
 * 2.2.4, API 17; anything newer is guarded by MINIUPNPC_API_VERSION).
 *
 * Every call here blocks (SSDP discovery, HTTP to the gateway): node/ runs
 * nat_upnp_run on the libuv thread pool, one request at a time per
 * nat_upnp, so the IGD it caches needs no lock.  It owns that cache: the
 * IGD's description URL and what was parsed from it, kept after the first
 * discovery so that later requests cost one SOAP call (~50 ms) instead of
 * 2 s of SSDP.  A request with discover_ms > 0 drops the cache and finds
 * the gateway again.
 *
 * Whatever the gateway sends is a status in the result, never a crash:
 * miniupnpc parses the XML; this file checks what it got (an IPv4 address,
 * an error code in range) and caps how many SSDP answers it fetches.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <miniupnpc/miniupnpc.h>
#include <miniupnpc/upnpcommands.h>

#include "nat_portmap.h"

#define URL_MAX 512

struct nat_upnp {
  char desc[64];
  char fixed_url[URL_MAX]; /* "" = discover with SSDP */
  int max_devices;
  dht_addr internal;
  /* the cache */
  bool loaded;
  bool not_connected;
  struct UPNPUrls urls;
  struct IGDdatas data;
  char lanaddr[64];
  char url[URL_MAX]; /* the IGD description URL, "" none */
};

void nat_upnp_settings_default(nat_upnp_settings *s) {
  memset(s, 0, sizeof *s);
  s->desc = "roost";
  s->max_devices = 8;
}

int nat_upnp_new(nat_upnp **out, const nat_upnp_settings *s) {
  nat_upnp_settings d;
  if (!s) {
    nat_upnp_settings_default(&d);
    s = &d;
  }
  if (!out || s->max_devices < 1 || s->max_devices > 64 ||
      (s->internal.family != DHT_AF_NONE && s->internal.family != DHT_AF_INET) ||
      (s->igd_url && strlen(s->igd_url) >= URL_MAX))
    return DHT_ERR_INVAL;
  nat_upnp *u = calloc(1, sizeof *u);
  if (!u)
    return DHT_ERR_NOMEM;
  snprintf(u->desc, sizeof u->desc, "%s", s->desc ? s->desc : "roost");
  if (s->igd_url)
    snprintf(u->fixed_url, sizeof u->fixed_url, "%s", s->igd_url);
  u->max_devices = s->max_devices;
  u->internal = s->internal;
  *out = u;
  return 0;
}

static void unload(nat_upnp *u) {
  if (u->loaded)
    FreeUPNPUrls(&u->urls);
  u->loaded = false;
  memset(&u->urls, 0, sizeof u->urls);
}

void nat_upnp_del(nat_upnp *u) {
  if (!u)
    return;
  unload(u);
  free(u);
}

/* A SOAP call's return: 0, a miniupnpc code (< 0) or a UPnP error code. */
static int map_cmd(int r) {
  if (r == UPNPCOMMAND_SUCCESS)
    return NAT_GW_OK;
  if (r > 0)
    return r < 1000 ? r : NAT_GW_ERR_GARBAGE; /* UPnP error codes have 3 digits */
  switch (r) {
  case UPNPCOMMAND_HTTP_ERROR:
    return NAT_GW_ERR_HTTP;
  case UPNPCOMMAND_MEM_ALLOC_ERROR:
    return NAT_GW_ERR_NOMEM;
  case UPNPCOMMAND_INVALID_ARGS:
    return NAT_GW_ERR_INTERNAL;
  default: /* UNKNOWN_ERROR, INVALID_RESPONSE and anything else */
    return NAT_GW_ERR_GARBAGE;
  }
}

/* What UPNP_GetValidIGD returned: 0 and whether it says "not connected", or
 * a NAT_GW_ERR_*.  API 17 (2.2.4): 1 connected, 2 not connected (2.2.x
 * also says so when the WAN address is private or reserved), 3 not an IGD.
 * API 18 (2.2.8) tells those apart: 1 connected, 2 private/reserved WAN
 * address, 3 not connected, 4 not an IGD, -1 internal error. */
static int valid_igd(int r, bool *not_connected) {
  *not_connected = false;
#if MINIUPNPC_API_VERSION >= 18
  switch (r) {
  case 1:
    return 0;
  case 2:
  case 3:
    *not_connected = true;
    return 0;
  case 4:
    return NAT_GW_ERR_UNSUPPORTED;
  case 0:
    return NAT_GW_ERR_NOGATEWAY;
  default:
    return NAT_GW_ERR_INTERNAL;
  }
#else
  switch (r) {
  case 1:
    return 0;
  case 2:
    *not_connected = true;
    return 0;
  case 3:
    return NAT_GW_ERR_UNSUPPORTED;
  case 0:
    return NAT_GW_ERR_NOGATEWAY;
  default:
    return NAT_GW_ERR_INTERNAL;
  }
#endif
}

static int from_url(nat_upnp *u, const char *url) {
  memset(&u->urls, 0, sizeof u->urls);
  memset(&u->data, 0, sizeof u->data);
  u->lanaddr[0] = 0;
  if (!UPNP_GetIGDFromUrl(url, &u->urls, &u->data, u->lanaddr, sizeof u->lanaddr)) {
    FreeUPNPUrls(&u->urls);
    memset(&u->urls, 0, sizeof u->urls);
    return NAT_GW_ERR_NOGATEWAY;
  }
  u->loaded = true;
  u->not_connected = false; /* this call does not say */
  return 0;
}

static int discover(nat_upnp *u, int delay_ms) {
  if (u->fixed_url[0])
    return from_url(u, u->fixed_url);
  int err = 0;
  struct UPNPDev *devs =
      upnpDiscover(delay_ms, NULL, NULL, UPNP_LOCAL_PORT_ANY, 0 /* IPv4 */, 2 /* TTL */, &err);
  if (!devs)
    return err == UPNPDISCOVER_SOCKET_ERROR   ? NAT_GW_ERR_IO
           : err == UPNPDISCOVER_MEMORY_ERROR ? NAT_GW_ERR_NOMEM
                                              : NAT_GW_ERR_NOGATEWAY;
  /* every answer costs an HTTP fetch of its description: keep the first few
   * (anyone on the LAN can answer SSDP) */
  struct UPNPDev *d = devs;
  for (int i = 1; d && i < u->max_devices; i++)
    d = d->pNext;
  if (d && d->pNext) {
    freeUPNPDevlist(d->pNext);
    d->pNext = NULL;
  }
  memset(&u->urls, 0, sizeof u->urls);
  memset(&u->data, 0, sizeof u->data);
  u->lanaddr[0] = 0;
#if MINIUPNPC_API_VERSION >= 18
  char wan[64] = "";
  int r =
      UPNP_GetValidIGD(devs, &u->urls, &u->data, u->lanaddr, sizeof u->lanaddr, wan, sizeof wan);
#else
  int r = UPNP_GetValidIGD(devs, &u->urls, &u->data, u->lanaddr, sizeof u->lanaddr);
#endif
  freeUPNPDevlist(devs);
  bool nc;
  int st = valid_igd(r, &nc);
  if (st != 0) {
    if (r > 0) /* the structures were filled */
      FreeUPNPUrls(&u->urls);
    memset(&u->urls, 0, sizeof u->urls);
    return st;
  }
  u->loaded = true;
  u->not_connected = nc;
  if (u->urls.rootdescURL && strlen(u->urls.rootdescURL) < URL_MAX)
    snprintf(u->url, sizeof u->url, "%s", u->urls.rootdescURL);
  else
    u->url[0] = 0;
  return 0;
}

/* The IGD to talk to: the cache, or a new discovery. */
static int load(nat_upnp *u, int discover_ms) {
  if (discover_ms > 0 || (!u->loaded && !u->url[0])) {
    unload(u);
    u->url[0] = 0;
    return discover(u, discover_ms > 0 ? discover_ms : 2000);
  }
  if (u->loaded)
    return 0;
  return from_url(u, u->url);
}

void nat_upnp_run(nat_upnp *u, const nat_gw_req *req, nat_gw_result *res) {
  memset(res, 0, sizeof *res);
  if (req->proto != NAT_PM_UPNP || req->int_port == 0 ||
      (req->op != NAT_GW_OP_EXTERNAL && req->ext_port == 0)) {
    res->status = NAT_GW_ERR_INTERNAL;
    return;
  }
  int st = load(u, req->discover_ms);
  if (st) {
    res->status = st;
    return;
  }
  if (u->not_connected)
    res->flags |= NAT_GW_F_NOT_CONNECTED;
  const char *ctl = u->urls.controlURL, *svc = u->data.first.servicetype;
  if (!ctl || !ctl[0] || !svc[0]) {
    res->status = NAT_GW_ERR_GARBAGE; /* a description without WAN*Connection */
    unload(u);
    return;
  }
  char ext[8], in[8], lease[16];
  snprintf(ext, sizeof ext, "%u", req->ext_port);
  snprintf(in, sizeof in, "%u", req->int_port);
  snprintf(lease, sizeof lease, "%u", req->lease_s);
  switch (req->op) {
  case NAT_GW_OP_EXTERNAL: {
    char ip[64];
    memset(ip, 0, sizeof ip);
    st = map_cmd(UPNP_GetExternalIPAddress(ctl, svc, ip));
    if (st) {
      res->status = st;
      return;
    }
    ip[sizeof ip - 1] = 0;
    struct in_addr a;
    if (inet_pton(AF_INET, ip, &a) != 1) {
      res->status = NAT_GW_ERR_GARBAGE;
      return;
    }
    res->wan.family = DHT_AF_INET;
    memcpy(res->wan.ip, &a, 4);
    return;
  }
  case NAT_GW_OP_ADD: {
    char client[64];
    if (u->internal.family == DHT_AF_INET)
      snprintf(client, sizeof client, "%u.%u.%u.%u", u->internal.ip[0], u->internal.ip[1],
               u->internal.ip[2], u->internal.ip[3]);
    else
      snprintf(client, sizeof client, "%s", u->lanaddr);
    struct in_addr a;
    if (inet_pton(AF_INET, client, &a) != 1) {
      res->status = NAT_GW_ERR_IO; /* we do not know our own LAN address */
      return;
    }
    st = map_cmd(UPNP_AddPortMapping(ctl, svc, ext, in, client, u->desc, "UDP", NULL, lease));
    res->status = st;
    if (st == 0) {
      /* UPnP does not say what lease it granted: the one asked */
      res->ext_port = req->ext_port;
      res->lease_s = req->lease_s;
    }
    return;
  }
  case NAT_GW_OP_DELETE:
    res->status = map_cmd(UPNP_DeletePortMapping(ctl, svc, ext, "UDP", NULL));
    return;
  default:
    res->status = NAT_GW_ERR_INTERNAL;
    return;
  }
}

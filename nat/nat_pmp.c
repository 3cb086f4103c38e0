/*
 * nat_pmp.c - the NAT-PMP adapter on libnatpmp (20150609), non-blocking.
 *
 * It owns one natpmp_t: a UDP socket connected to the gateway's port 5351
 * (the default route's gateway, or a fixed one) and the request in flight.
 * libnatpmp retransmits on its own schedule (250 ms, doubling) whenever
 * readnatpmpresponseorretry runs after the retry time; the driver watches
 * the socket and a timer (nat_pmp_fd, nat_pmp_timeout_ms) and calls
 * nat_pmp_read.  The policy's deadline bounds a request, not libnatpmp's 9
 * tries (over two minutes).
 *
 * Hostile answers: the socket is connected, so the kernel drops datagrams
 * from anyone but the gateway; an answer of the wrong type or for another
 * internal port is ignored and the request sent again, at most
 * STRAY_MAX times, then the request fails as garbage (so a gateway that
 * answers nonsense at line rate cannot make us spin).
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <natpmp.h>

#include "nat_portmap.h"

#define STRAY_MAX 4

struct nat_pmp {
  natpmp_t n;
  bool init;
  bool pending;
  bool forced;
  in_addr_t gw;
  nat_gw_req req;
  int strays;
};

int nat_pmp_new(nat_pmp **out, const dht_addr *gateway) {
  if (!out || (gateway && gateway->family != DHT_AF_INET))
    return DHT_ERR_INVAL;
  nat_pmp *p = calloc(1, sizeof *p);
  if (!p)
    return DHT_ERR_NOMEM;
  p->n.s = -1;
  if (gateway) {
    p->forced = true;
    memcpy(&p->gw, gateway->ip, 4);
  }
  *out = p;
  return 0;
}

static void shut(nat_pmp *p) {
  if (p->init)
    closenatpmp(&p->n);
  p->init = false;
  p->pending = false;
  p->n.s = -1;
}

void nat_pmp_del(nat_pmp *p) {
  if (!p)
    return;
  shut(p);
  free(p);
}

int nat_pmp_fd(const nat_pmp *p) {
  return p->init ? p->n.s : -1;
}

static int map_err(int r) {
  switch (r) {
  case NATPMP_ERR_CANNOTGETGATEWAY:
    return NAT_GW_ERR_NOGATEWAY;
  case NATPMP_ERR_NOGATEWAYSUPPORT:
    /* ECONNREFUSED (an ICMP port unreachable: nothing on 5351), or no answer
     * to any of libnatpmp's 9 tries (2 min: the policy's bound comes first) */
  case NATPMP_ERR_RECVFROM:
  case NATPMP_ERR_UNSUPPORTEDVERSION:
  case NATPMP_ERR_UNSUPPORTEDOPCODE:
    return NAT_GW_ERR_UNSUPPORTED;
  case NATPMP_ERR_NOTAUTHORIZED:
    return NAT_GW_ERR_REFUSED;
  case NATPMP_ERR_NETWORKFAILURE:
    return NAT_GW_ERR_NETWORK;
  case NATPMP_ERR_OUTOFRESOURCES:
    return NAT_GW_ERR_RESOURCES;
  case NATPMP_ERR_UNDEFINEDERROR:
    return NAT_GW_ERR_GARBAGE;
  case NATPMP_ERR_INVALIDARGS:
    return NAT_GW_ERR_INTERNAL;
  default: /* socket, fcntl, connect, send, gettimeofday, close */
    return NAT_GW_ERR_IO;
  }
}

static int send_req(nat_pmp *p) {
  const nat_gw_req *r = &p->req;
  int rv;
  switch (r->op) {
  case NAT_GW_OP_EXTERNAL:
    rv = sendpublicaddressrequest(&p->n);
    break;
  case NAT_GW_OP_ADD:
    if (r->lease_s == 0) /* lifetime 0 deletes in NAT-PMP */
      return NAT_GW_ERR_INTERNAL;
    rv =
        sendnewportmappingrequest(&p->n, NATPMP_PROTOCOL_UDP, r->int_port, r->ext_port, r->lease_s);
    break;
  case NAT_GW_OP_DELETE:
    /* RFC 6886 3.4: lifetime 0 and external port 0 delete the mapping of
     * our internal port (every one of them: the gateway has no other key) */
    rv = sendnewportmappingrequest(&p->n, NATPMP_PROTOCOL_UDP, r->int_port, 0, 0);
    break;
  default:
    return NAT_GW_ERR_INTERNAL;
  }
  return rv < 0 ? map_err(rv) : 0;
}

int nat_pmp_start(nat_pmp *p, const nat_gw_req *req) {
  if (req->proto != NAT_PM_NATPMP || req->int_port == 0)
    return NAT_GW_ERR_INTERNAL;
  if (req->discover_ms > 0 || !p->init) {
    shut(p);
    int rv = initnatpmp(&p->n, p->forced ? 1 : 0, p->gw);
    if (rv < 0) {
      p->n.s = -1;
      return map_err(rv);
    }
    p->init = true;
  }
  p->req = *req;
  p->strays = 0;
  p->pending = false;
  int rv = send_req(p);
  if (rv)
    return rv;
  p->pending = true;
  return 0;
}

void nat_pmp_cancel(nat_pmp *p) {
  p->pending = false;
}

int64_t nat_pmp_timeout_ms(nat_pmp *p) {
  if (!p->pending)
    return -1;
  struct timeval tv;
  if (getnatpmprequesttimeout(&p->n, &tv) < 0)
    return -1;
  int64_t ms = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
  return ms < 0 ? 0 : ms;
}

/* Reads and drops what is waiting when no request is (late answers), so a
 * level-triggered poll does not spin on it. */
static void drain(nat_pmp *p) {
  uint8_t buf[64];
  for (int i = 0; i < 8; i++)
    if (recv(p->n.s, buf, sizeof buf, MSG_DONTWAIT) < 0)
      break;
}

int nat_pmp_read(nat_pmp *p, uint64_t *id, nat_gw_result *res) {
  if (!p->init)
    return 0;
  if (!p->pending) {
    drain(p);
    return 0;
  }
  natpmpresp_t r;
  memset(&r, 0, sizeof r);
  int rv = readnatpmpresponseorretry(&p->n, &r);
  if (rv == NATPMP_TRYAGAIN || rv == NATPMP_ERR_WRONGPACKETSOURCE)
    return 0;
  memset(res, 0, sizeof *res);
  *id = p->req.id;
  if (rv < 0) {
    p->pending = false;
    res->status = map_err(rv);
    return 1;
  }
  bool want_addr = p->req.op == NAT_GW_OP_EXTERNAL;
  bool match = want_addr ? r.type == NATPMP_RESPTYPE_PUBLICADDRESS
                         : r.type == NATPMP_RESPTYPE_UDPPORTMAPPING &&
                               r.pnu.newportmapping.privateport == p->req.int_port;
  if (!match) {
    /* an answer to an earlier request, or nonsense: ask again, a few times */
    if (++p->strays > STRAY_MAX) {
      p->pending = false;
      res->status = NAT_GW_ERR_GARBAGE;
      return 1;
    }
    int st = send_req(p);
    if (st) {
      p->pending = false;
      res->status = st;
      return 1;
    }
    return 0;
  }
  p->pending = false;
  switch (p->req.op) {
  case NAT_GW_OP_EXTERNAL:
    res->wan.family = DHT_AF_INET;
    memcpy(res->wan.ip, &r.pnu.publicaddress.addr.s_addr, 4);
    break;
  case NAT_GW_OP_ADD:
    res->ext_port = r.pnu.newportmapping.mappedpublicport;
    res->lease_s = r.pnu.newportmapping.lifetime;
    break;
  default:
    break;
  }
  res->status = NAT_GW_OK;
  return 1;
}

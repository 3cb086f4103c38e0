/*
 * sim_int.h - interfaces between roost-sim's own files, not for the command
 * line or other folders (the unit tests may reach in, as they do into
 * dht_int.h).  Today: the virtual network (sim_net.c), which sim_run.c
 * drives.
 *
 * The network owns what happens between two hosts' sockets: addresses, the
 * path a datagram takes (latency, jitter, loss, the sender's uplink queue,
 * partitions) and the buffers of datagrams in flight.  It owns no clock and
 * no event queue: a send returns a delivery (when, to which host, what) and
 * the run schedules it; when that event comes up the run asks the network
 * whether the datagram still gets in, hands it to the host's engine and gives
 * the buffer back.  NAT boxes sit on that seam: a box rewrites the source
 * on the way out (at the send) and filters on the way in (at the arrival,
 * so a mapping made while a datagram flew lets it in, as hole punching
 * needs).
 *
 * Hosts are numbered densely from 0 in the order they are added, the same
 * numbers sim_run.c uses; the network never removes one (a host that leaves
 * keeps its address, and its box, and comes back with them).
 */
#ifndef ROOST_SIM_INT_H
#define ROOST_SIM_INT_H

#include "nat_portmap.h"
#include "sim.h"

/* ---- the virtual network (sim_net.c) ------------------------------------- */

/* A datagram in flight, from sim_net_send until the run gives it back with
 * sim_net_dgram_free.  The run reads from, len and data; the rest is the
 * network's. */
typedef struct sim_dgram {
  struct sim_dgram *next; /* in the network's free list */
  dht_addr from;          /* the source address the receiver sees */
  uint32_t local;         /* the receiver's socket it arrives on (dht_path.local); for
                           * one sent to a box, set by sim_net_arrives */
  uint16_t len;
  uint8_t cls;      /* size class of the buffer, for the free list */
  uint16_t to_port; /* sent to the receiver's box at this port; 0: straight to the host */
  uint8_t data[];
} sim_dgram;

/* What a send produced: deliver d to host dst at time at. */
typedef struct sim_delivery {
  dht_ts at;
  int dst;
  sim_dgram *d;
} sim_delivery;

/* sim_net_send's outcomes besides 0 (in flight). */
enum sim_net_status {
  SIM_NET_DROPPED = -1, /* the network dropped it: no such address, loss, partition, full queue */
  SIM_NET_NOMEM = -2,   /* no buffer for it: gone, and not counted as network loss */
};

typedef struct sim_net sim_net;

/* Creates the network of a run with configuration c (borrowed for the
 * network's life): loads c->rtt_file when one is given.  0, or -1 with a
 * reason in err. */
int sim_net_new(sim_net **out, const sim_config *c, char *err, size_t errlen);
/* Frees the network and the buffers given back to it.  Every datagram must
 * have been given back first.  NULL is fine. */
void sim_net_del(sim_net *n);

/* Adds host number `host` (the next one: hosts are dense) and places it,
 * drawing from r, the host's own stream: its point on the torus, then its
 * country when an RTT table is loaded.  Its NAT type follows c->nat_mix (no
 * draw from r: see sim_net.c), and a NATed host gets its box.  0 or -1 (out
 * of memory). */
int sim_net_host_add(sim_net *n, int host, sim_rng *r);
/* The host (re)starts: its uplink queue starts empty. */
void sim_net_host_up(sim_net *n, int host);

/* A host's extra sockets (dht_sock_open): socket id k is port
 * SIM_NET_SOCK_PORT + k of the host's address, k in 1..SIM_NET_MAX_SOCK. */
#define SIM_NET_SOCK_PORT 20000
#define SIM_NET_MAX_SOCK 40000
/* Hops between any two hosts: a datagram sent with a TTL below this dies on
 * the way, after the sender's own NAT box (so it makes or refreshes the
 * box's mapping: NAT priming). */
#define SIM_NET_HOPS 8
/* Opens socket id on host (1..SIM_NET_MAX_SOCK, not open yet): 0 or -1. */
int sim_net_sock_open(sim_net *n, int host, uint32_t id);
/* Opens the host's lowest free socket id into *id: 0 or -1 (none left). */
int sim_net_sock_next(sim_net *n, int host, uint32_t *id);
void sim_net_sock_close(sim_net *n, int host, uint32_t id);
bool sim_net_sock_is_open(const sim_net *n, int host, uint32_t id);

/* The host's own address, port 4000: a public host's is public, IPv4 with
 * a /24 of its own (11.(i >> 8).(i & 255).1); a NATed host's is private,
 * 10.(i >> 16).(i >> 8 & 255).(i & 255), and its box has the public one. */
dht_addr sim_net_addr(const sim_net *n, int host);
/* The host whose own address (sim_net_addr, or an open extra socket's port
 * of it) a is, or -1.  A box's public address is no host's own: what is
 * behind it depends on the box's mappings at the time. */
int sim_net_host_of(const sim_net *n, const dht_addr *a);

/* Sends len bytes of buf (borrowed for the call) from socket `local` of host
 * `from` to address `to` at time now, with IP TTL ttl (0: the default, which
 * always arrives).  A NATed sender's datagram passes its box first (which
 * maps it, and may drop it: hairpinning off, a full table, a TTL that dies
 * after the box).  0: in flight, *out says when and to whom it arrives and
 * owns the buffer until sim_net_dgram_free; SIM_NET_DROPPED or
 * SIM_NET_NOMEM otherwise (*out untouched).  Draws loss and jitter from the
 * network's stream, in that order, so the order of sends is the order of
 * draws; a box draws from the NAT stream only. */
int sim_net_send(sim_net *n, int from, uint32_t local, const dht_addr *to, uint8_t ttl,
                 const uint8_t *buf, size_t len, dht_ts now, sim_delivery *out);
/* Whether d, arriving at host dst at time now, gets in: a partition that
 * started while it was in flight stops it; a datagram for dst's box must
 * pass the box's filter as its mappings stand now, and is then translated
 * (d->local set to the host's socket); the socket must still be open.
 * (Whether dst is up is the run's business.) */
bool sim_net_arrives(sim_net *n, sim_dgram *d, int dst, dht_ts now);
/* Gives a datagram's buffer back.  NULL is fine. */
void sim_net_dgram_free(sim_net *n, sim_dgram *d);

/* Cuts the network in two: round(fraction x hosts) hosts, drawn from r, on
 * one side, the rest on the other.  Datagrams between the sides are dropped
 * until sim_net_heal. */
void sim_net_partition(sim_net *n, double fraction, sim_rng *r);
void sim_net_heal(sim_net *n);
bool sim_net_is_partitioned(const sim_net *n);
/* Whether hosts a and b are on the same side of the partition (true when
 * there is none). */
bool sim_net_same_side(const sim_net *n, int a, int b);

/* ---- NAT boxes (sim_net.c) ----------------------------------------------- */

/* A box's mappings (its flows, as conntrack keeps them, and its port
 * forwards) at most; a new flow past it is dropped.  Home routers' tables
 * hold a few thousand. */
#define SIM_NAT_MAX_FLOWS 4096
/* Port forwards a box's gateway holds at most (UPnP IGDs cap them too). */
#define SIM_NAT_MAX_FORWARDS 32
/* The trip from a host to its box and back, for a hairpinned datagram. */
#define SIM_NAT_HAIRPIN_MS 1

/* The host's enum sim_nat_type (SIM_NAT_PUBLIC: no box). */
int sim_net_nat_type(const sim_net *n, int host);
/* Puts host behind a new, empty box of the given type, mapping timeout
 * (ms, 1 to UINT32_MAX) and hairpinning, or (SIM_NAT_PUBLIC) takes it out
 * of its box; for tests and experiments (sim_net_host_add follows the
 * configured mix).  0, or -1 for a bad argument or out of memory. */
int sim_net_nat_set(sim_net *n, int host, int type, dht_ts timeout_ms, bool hairpin);
/* The host's public address: its own for a public host (port 4000), its
 * box's for a NATed one (port 0: which port reaches the host is the box's
 * business). */
dht_addr sim_net_public_addr(const sim_net *n, int host);
/* The gateway of host's box (a SIM_NAT_UPNP box) forwards its external port
 * ext to the host's port in_port (4000, or SIM_NET_SOCK_PORT + k for an
 * extra socket, open or not), from anyone, for lease_ms from now (0: until
 * deleted); the host's datagrams from in_port leave from ext.  Adding an ext
 * that is forwarded already replaces that forward, as IGDs do.  0, or -1:
 * no gateway, a bad port, ext in use by another port's mapping, or
 * SIM_NAT_MAX_FORWARDS reached. */
int sim_net_nat_forward_add(sim_net *n, int host, uint16_t ext, uint16_t in_port, dht_ts lease_ms,
                            dht_ts now);
/* Deletes the forward of ext: 0, or -1 when there is none. */
int sim_net_nat_forward_del(sim_net *n, int host, uint16_t ext);
/* Whether a live forward of host's box reaches its port in_port at now:
 * then anyone reaches that port (the box model's truth for reports). */
bool sim_net_nat_forwarded(const sim_net *n, int host, uint16_t in_port, dht_ts now);
/* What the boxes did and hold so far (sim.h). */
void sim_net_nat_stats(const sim_net *n, sim_nat_stats *out);

/* ---- port-mapping gateways (sim_gw.c) ------------------------------------- */

/* What a host's box answers a port-mapping request with (sim_gw_kind_of
 * picks it): a box without a gateway (no IGD answers SSDP, nothing listens
 * on NAT-PMP's port), an upnp box's working gateway (UPnP IGD and NAT-PMP,
 * as miniupnpd offers both), or one that misbehaves: it never answers, or
 * it answers what makes no sense. */
enum sim_gw_kind {
  SIM_GW_NONE = 0,
  SIM_GW_OK,
  SIM_GW_SILENT,
  SIM_GW_GARBAGE,
};

/* The scripted delays of the virtual gateway: SSDP discovery waits the
 * request's discover_ms (miniupnpc listens that long), then the IGD's
 * description and one SOAP call; a cached IGD costs the SOAP call; NAT-PMP
 * is one datagram to the box and back; a box without NAT-PMP answers with
 * an ICMP port unreachable in the same time. */
#define SIM_GW_UPNP_DISCOVERED_MS 20
#define SIM_GW_UPNP_MS 50
#define SIM_GW_NATPMP_MS 4

/* One host's gateway, as the host's port-mapping policy (nat_portmap.h)
 * sees it through the two nat_gw_ops tables sim_gw_ops fills: each request
 * is held until its scripted answer is due on the run's clock, and the run
 * takes the answers with sim_gw_take and hands them to nat_portmap_done.
 * ADD makes the port forward (sim_net_nat_forward_add) when it is answered;
 * DELETE removes it when asked (the router acts on the request whether or
 * not the host is still there to read the answer).  Embed it; it owns no
 * memory. */
typedef struct sim_gw {
  sim_net *net;
  const dht_ts *clock; /* the run's virtual clock, read when a request starts */
  int host;
  uint8_t kind;                  /* enum sim_gw_kind */
  uint8_t found;                 /* UPnP: discovery found the IGD (its description URL is cached) */
  nat_gw_req req[NAT_PM_NPROTO]; /* the request in flight per protocol; id 0: none */
  dht_ts due[NAT_PM_NPROTO];     /* when its answer comes */
  uint32_t asked, granted;       /* ADD requests, and those that made a forward */
  uint32_t bad_req;              /* requests that made no sense (counted, answered INTERNAL) */
} sim_gw;

/* The kind of host's gateway: SIM_GW_OK for an upnp box but a share bad of
 * them (a function of seed and host, no stream drawn: misbehaving ones
 * alternate silent and garbage), SIM_GW_NONE for every other box. */
int sim_gw_kind_of(const sim_net *n, int host, uint64_t seed, double bad);
/* Starts g for host with nothing in flight; clock is borrowed for g's life. */
void sim_gw_init(sim_gw *g, sim_net *n, int host, int kind, const dht_ts *clock);
/* Fills ops[NAT_PM_NATPMP] and ops[NAT_PM_UPNP] with tables whose context is
 * g (the policy copies them). */
void sim_gw_ops(sim_gw *g, nat_gw_ops ops[NAT_PM_NPROTO]);
/* When the next answer is due, DHT_TS_NEVER when none is. */
dht_ts sim_gw_expiry(const sim_gw *g);
/* Takes the answer due first at now (by time, then NAT-PMP before UPnP)
 * into *id and *res, applying an ADD to the box: 1, or 0 when none is due. */
int sim_gw_take(sim_gw *g, dht_ts now, uint64_t *id, nat_gw_result *res);

#endif /* ROOST_SIM_INT_H */

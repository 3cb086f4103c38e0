/*
 * sim_net.c - roost-sim's virtual network: host addresses, sending a
 * datagram from a host to an address (loss, the sender's uplink queue,
 * latency from sim_rtt.c's models, jitter), partitions, NAT boxes, and the
 * buffers of datagrams in flight.  The run schedules what a send returns as
 * a delivery event and asks sim_net_arrives when it comes up (sim_int.h).
 *
 * Addresses.  Host i's /24 is 11.(i >> 8).(i & 255).0: the engines'
 * per-prefix limits see every host as a different network.  A public host
 * is .1 of it; a NATed host's box (a home router, one per host) is, and the
 * host behind it has the private 10.(i >> 16).(i >> 8 & 255).(i & 255).  An
 * address maps back to its host by arithmetic, so there is no table to
 * keep.  Socket 0 is port 4000, extra socket k port SIM_NET_SOCK_PORT + k,
 * on both sides of a box.
 *
 * NAT boxes (the RFC 4787 types of sim.h).  A box keeps its flows as
 * conntrack does: one per (host socket, remote address and port), each with
 * the external port it leaves from and a time it expires at; port forwards
 * (the gateway of an upnp box) sit in the same array, flagged.  A flow
 * expires lazily: nothing fires when its time passes, it is only found dead
 * when next looked at, and its slot is taken by the next new flow.  Only
 * outbound datagrams refresh a flow (RFC 4787 REQ-6's outbound refresh; the
 * inbound one is optional and not modelled).  Mapping: endpoint-independent
 * boxes keep the host's port (as Linux masquerade does when the port is
 * free, and it always is with one host behind a box), a forward's port when
 * the socket has one; symmetric boxes draw a random port per flow.
 * Filtering at arrival by the flows alive then: full cone any flow of the
 * port, restricted one to the sender's IP, port and symmetric one to the
 * sender's IP and port; a forward lets anyone in.  The array starts at 4
 * slots and doubles only when no slot is free or dead, so it stays at the
 * peak number of live flows, never a hash table per box.
 *
 * Invariants: every random draw (loss, then jitter, per send) comes from the
 * network's own stream (seed, 0x3002), the boxes' ports from the NAT stream
 * (seed, 0x3004), and a host's place from the host's stream, so a seed
 * reproduces every path and a run without boxes draws what it drew before
 * boxes existed; a host's NAT type is a function of the seed, the mix and
 * its number; a link's base RTT is a function of its two hosts and the seed
 * (fixed per link, whatever the order of sends); the partition is one bit
 * per host plus one flag, so healing restores every path at once; a public
 * host's net_host is the 32 bytes it was before boxes; a datagram buffer
 * belongs to exactly one of the free lists or one delivery.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_int.h"

#define NET_PORT 4000
#define NET_BASE 0x0B000000u /* 11.0.0.0: host i is 11.(i >> 8).(i & 255).1 */
#define NET_PRIV 0x0A000000u /* 10.0.0.0: host i behind a box is 10.0.0.0 + i */
#define DGRAM_CLASSES 4
#define NAT_FWD 1                     /* a flow that is a port forward */
#define NAT_GOLDEN 0.6180339887498949 /* the mix's low-discrepancy step */
#define NAT_PORT_TRIES 64             /* random port draws before giving up */

/* Per host, what the network needs to know; the host's engine and identity
 * are sim_run.c's.  32 bytes with or without a box (checked below). */
typedef struct net_host {
  dht_ts uplink_free; /* when the uplink has sent what is queued on it */
  sim_coord xy;       /* synthetic model: the host's point on the torus */
  uint16_t *socks;    /* NULL until the host opens one: most never do */
  int16_t country;    /* RTT table: the host's country, -1 without a table */
  uint16_t nsocks;    /* extra sockets open, ids in socks[] ascending */
  uint32_t part : 1;  /* its side of the partition */
  uint32_t box : 31;  /* its NAT box + 1 in sim_net.box, 0: a public host */
} net_host;

_Static_assert(sizeof(net_host) <= 32, "a public host must cost what it did before NAT boxes");

/* One flow of a box (or a port forward, flagged NAT_FWD), 16 bytes. */
typedef struct nat_flow {
  uint32_t rip;   /* the remote IPv4 address (forwards: 0) */
  uint16_t rport; /* its port */
  uint16_t ext;   /* the box's external port; 0: a free slot */
  uint16_t sock;  /* the host's socket: 0, or extra socket k */
  uint8_t flags;  /* NAT_FWD */
  uint8_t unused;
  uint32_t exp_s; /* alive while now < exp_s seconds; UINT32_MAX: a forward without lease */
} nat_flow;

/* A home router: its flows in a small array grown with use. */
typedef struct nat_box {
  nat_flow *f;
  uint16_t nf, af; /* slots in use (alive, dead or free) and allocated */
  uint8_t type;    /* enum sim_nat_type, never PUBLIC */
  uint8_t hairpin;
  uint32_t timeout_ms; /* a flow idle this long is gone */
} nat_box;

struct sim_net {
  const sim_config *c;
  sim_rtt *rtt; /* NULL: the synthetic model */
  sim_rng rng;  /* loss and jitter */
  net_host *h;
  int nh, ah;
  bool partitioned;
  sim_dgram *dfree[DGRAM_CLASSES]; /* free datagram buffers by size class */
  /* NAT boxes: nothing is allocated while every host is public */
  nat_box *box;
  int nbox, abox;
  sim_rng nat_rng; /* the boxes' random ports; its first draw offsets the mix */
  double mix_u0;
  sim_nat_stats nat;
};

int sim_net_new(sim_net **out, const sim_config *c, char *err, size_t errlen) {
  *out = NULL;
  sim_net *n = calloc(1, sizeof *n);
  if (!n) {
    snprintf(err, errlen, "out of memory for the network");
    return -1;
  }
  n->c = c;
  if (c->rtt_file[0] && sim_rtt_load(&n->rtt, c->rtt_file, err, errlen) != 0) {
    free(n);
    return -1;
  }
  sim_rng_init(&n->rng, c->seed, 0x3002);
  sim_rng_init(&n->nat_rng, c->seed, 0x3004);
  n->mix_u0 = sim_rng_unit(&n->nat_rng);
  *out = n;
  return 0;
}

/* ---- datagram buffers ------------------------------------------------------ */

/* Datagrams in flight come from per-size free lists (payloads up to 128,
 * 256, 512 bytes and DHT_MAX_PKT), so a datagram costs no malloc once the
 * run has warmed up.  The lists only grow: their peak is the peak number of
 * datagrams in flight. */
static const uint16_t dgram_class_len[DGRAM_CLASSES] = {128, 256, 512, DHT_MAX_PKT};

static sim_dgram *dgram_new(sim_net *n, size_t len) {
  int k = 0;
  while (len > dgram_class_len[k])
    k++;
  sim_dgram *d = n->dfree[k];
  if (d) {
    n->dfree[k] = d->next;
  } else {
    d = malloc(sizeof *d + dgram_class_len[k]);
    if (!d)
      return NULL;
    d->cls = (uint8_t)k;
  }
  d->len = (uint16_t)len;
  return d;
}

void sim_net_dgram_free(sim_net *n, sim_dgram *d) {
  if (!d)
    return;
  d->next = n->dfree[d->cls];
  n->dfree[d->cls] = d;
}

void sim_net_del(sim_net *n) {
  if (!n)
    return;
  for (int k = 0; k < DGRAM_CLASSES; k++) {
    while (n->dfree[k]) {
      sim_dgram *d = n->dfree[k];
      n->dfree[k] = d->next;
      free(d);
    }
  }
  for (int i = 0; i < n->nh; i++)
    free(n->h[i].socks);
  for (int b = 0; b < n->nbox; b++)
    free(n->box[b].f);
  free(n->box);
  free(n->h);
  sim_rtt_free(n->rtt);
  free(n);
}

/* ---- hosts and addresses ----------------------------------------------------- */

static int box_attach(sim_net *n, int host, int type, dht_ts timeout_ms, bool hairpin);

/* The type of host i in the configured mix: the slice of [0, 1) that
 * frac(u0 + i x golden ratio) falls in.  The sequence spreads evenly, so
 * every run of consecutive hosts (the join order) matches the mix to within
 * a few hosts, where independent draws would be off by the square root;
 * u0 comes from the NAT stream, so another seed is another assignment. */
static int mix_type(const sim_net *n, int i) {
  double u = n->mix_u0 + (double)i * NAT_GOLDEN;
  u -= floor(u);
  double cum = 0;
  int last = SIM_NAT_PUBLIC;
  for (int t = 0; t < SIM_NAT_TYPES; t++) {
    if (n->c->nat_mix[t] <= 0)
      continue;
    cum += n->c->nat_mix[t];
    last = t;
    if (u < cum)
      return t;
  }
  return last; /* rounding left u past the last slice */
}

int sim_net_host_add(sim_net *n, int host, sim_rng *r) {
  if (host != n->nh)
    return -1; /* defensive: sim_run.c adds hosts in order */
  if (n->nh == n->ah) {
    int na = n->ah ? n->ah * 2 : 1024;
    net_host *nh = realloc(n->h, (size_t)na * sizeof *nh);
    if (!nh)
      return -1;
    n->h = nh;
    n->ah = na;
  }
  net_host *h = &n->h[n->nh++];
  memset(h, 0, sizeof *h);
  h->xy.x = (float)sim_rng_unit(r);
  h->xy.y = (float)sim_rng_unit(r);
  h->country = (int16_t)(n->rtt ? sim_rtt_pick_country(n->rtt, r) : -1);
  int type = mix_type(n, host);
  if (type != SIM_NAT_PUBLIC &&
      box_attach(n, host, type, n->c->nat_timeout_ms, n->c->nat_hairpin) != 0) {
    n->nh--;
    return -1;
  }
  n->nat.hosts[type]++;
  return 0;
}

void sim_net_host_up(sim_net *n, int host) {
  n->h[host].uplink_free = 0;
  /* a restarted host's engine is new: the sockets it had are gone (its box
   * stays up, and keeps its flows until they expire, as a router does) */
  free(n->h[host].socks);
  n->h[host].socks = NULL;
  n->h[host].nsocks = 0;
}

static int sock_find(const net_host *h, uint32_t id) {
  int lo = 0, hi = h->nsocks;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (h->socks[mid] < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

bool sim_net_sock_is_open(const sim_net *n, int host, uint32_t id) {
  const net_host *h = &n->h[host];
  int i = sock_find(h, id);
  return i < h->nsocks && h->socks[i] == id;
}

int sim_net_sock_open(sim_net *n, int host, uint32_t id) {
  net_host *h = &n->h[host];
  if (id < 1 || id > SIM_NET_MAX_SOCK || sim_net_sock_is_open(n, host, id) ||
      h->nsocks >= SIM_NET_MAX_SOCK)
    return -1;
  uint16_t *ns = realloc(h->socks, (size_t)(h->nsocks + 1) * sizeof *ns);
  if (!ns)
    return -1;
  h->socks = ns;
  int i = sock_find(h, id);
  memmove(&ns[i + 1], &ns[i], (size_t)(h->nsocks - i) * sizeof *ns);
  ns[i] = (uint16_t)id;
  h->nsocks++;
  return 0;
}

int sim_net_sock_next(sim_net *n, int host, uint32_t *id) {
  const net_host *h = &n->h[host];
  uint32_t want = 1;
  for (int i = 0; i < h->nsocks && h->socks[i] == want; i++)
    want++;
  *id = want;
  return sim_net_sock_open(n, host, want);
}

void sim_net_sock_close(sim_net *n, int host, uint32_t id) {
  net_host *h = &n->h[host];
  int i = sock_find(h, id);
  if (i < h->nsocks && h->socks[i] == id) {
    memmove(&h->socks[i], &h->socks[i + 1], (size_t)(h->nsocks - i - 1) * sizeof *h->socks);
    h->nsocks--;
  }
}

static dht_addr ip4_addr(uint32_t ip, uint16_t port) {
  dht_addr a;
  memset(&a, 0, sizeof a);
  a.family = DHT_AF_INET;
  a.ip[0] = (uint8_t)(ip >> 24);
  a.ip[1] = (uint8_t)(ip >> 16);
  a.ip[2] = (uint8_t)(ip >> 8);
  a.ip[3] = (uint8_t)ip;
  a.port = port;
  return a;
}

static uint32_t ip4_of(const dht_addr *a) {
  return (uint32_t)a->ip[0] << 24 | (uint32_t)a->ip[1] << 16 | (uint32_t)a->ip[2] << 8 | a->ip[3];
}

/* Host i's public address (or its box's): 11.(i >> 8).(i & 255).1:4000. */
static dht_addr host_addr(int i) {
  return ip4_addr(NET_BASE + ((uint32_t)i << 8) + 1, NET_PORT);
}

static bool is_private(const dht_addr *a) {
  return a->family == DHT_AF_INET && a->ip[0] == 10;
}

/* The host whose public IP (or whose box's) a has, whatever the port, or -1. */
static int host_by_ip(const sim_net *n, const dht_addr *a) {
  if (a->family != DHT_AF_INET || a->ip[3] != 1)
    return -1;
  uint32_t ip = ip4_of(a) & 0xffffff00u;
  if (ip < NET_BASE)
    return -1;
  uint32_t i = (ip - NET_BASE) >> 8;
  return i < (uint32_t)n->nh ? (int)i : -1;
}

/* The NATed host whose private IP a has, or -1. */
static int host_by_priv(const sim_net *n, const dht_addr *a) {
  if (!is_private(a))
    return -1;
  uint32_t i = ip4_of(a) - NET_PRIV;
  return i < (uint32_t)n->nh && n->h[i].box ? (int)i : -1;
}

/* The socket of host i that port names (0 or k) in *local: false when none
 * is open there. */
static bool sock_at(const sim_net *n, int i, uint16_t port, uint32_t *local) {
  *local = 0;
  if (port == NET_PORT)
    return true;
  if (port > SIM_NET_SOCK_PORT && sim_net_sock_is_open(n, i, port - SIM_NET_SOCK_PORT)) {
    *local = port - SIM_NET_SOCK_PORT;
    return true;
  }
  return false;
}

/* The host whose own address a is, and the socket of it that a names in
 * *local: a public host's public address or a NATed host's private one. */
static int host_of(const sim_net *n, const dht_addr *a, uint32_t *local) {
  int i = is_private(a) ? host_by_priv(n, a) : host_by_ip(n, a);
  if (i < 0 || (n->h[i].box != 0) != is_private(a))
    return -1;
  return sock_at(n, i, a->port, local) ? i : -1;
}

/* The host a datagram from host `from` to a is for, or -1: the host with
 * that own address (a private one only from the host itself: each box's LAN
 * holds one host), or the host behind the box with that public address,
 * with the box's port in *to_port (the box decides at arrival). */
static int route(const sim_net *n, int from, const dht_addr *a, uint32_t *local,
                 uint16_t *to_port) {
  *local = 0;
  *to_port = 0;
  if (is_private(a)) {
    int i = host_of(n, a, local);
    return i == from ? i : -1;
  }
  int i = host_by_ip(n, a);
  if (i >= 0 && n->h[i].box) {
    *to_port = a->port;
    return a->port ? i : -1;
  }
  return host_of(n, a, local);
}

dht_addr sim_net_addr(const sim_net *n, int host) {
  if (n->h[host].box)
    return ip4_addr(NET_PRIV + (uint32_t)host, NET_PORT);
  return host_addr(host);
}

dht_addr sim_net_public_addr(const sim_net *n, int host) {
  dht_addr a = host_addr(host);
  if (n->h[host].box)
    a.port = 0;
  return a;
}

int sim_net_host_of(const sim_net *n, const dht_addr *a) {
  uint32_t local;
  return host_of(n, a, &local);
}

/* ---- NAT boxes ------------------------------------------------------------------ */

static void bytes_add(sim_net *n, ptrdiff_t d) {
  n->nat.bytes = (size_t)((ptrdiff_t)n->nat.bytes + d);
  if (n->nat.bytes > n->nat.peak_bytes)
    n->nat.peak_bytes = n->nat.bytes;
}

/* Puts host behind a new box (the table grows by doubling, from 256). */
static int box_attach(sim_net *n, int host, int type, dht_ts timeout_ms, bool hairpin) {
  if (n->nbox == n->abox) {
    int na = n->abox ? n->abox * 2 : 256;
    if (na > (1 << 30))
      return -1;
    nat_box *nb = realloc(n->box, (size_t)na * sizeof *nb);
    if (!nb)
      return -1;
    n->box = nb;
    bytes_add(n, (ptrdiff_t)((size_t)(na - n->abox) * sizeof *nb));
    n->abox = na;
  }
  nat_box *b = &n->box[n->nbox++];
  memset(b, 0, sizeof *b);
  b->type = (uint8_t)type;
  b->hairpin = hairpin;
  b->timeout_ms = (uint32_t)timeout_ms;
  n->h[host].box = (uint32_t)n->nbox;
  return 0;
}

static nat_box *box_of(sim_net *n, int host) {
  return n->h[host].box ? &n->box[n->h[host].box - 1] : NULL;
}

/* The internal port of a host's socket. */
static uint16_t sock_port(uint32_t sock) {
  return (uint16_t)(sock ? SIM_NET_SOCK_PORT + sock : NET_PORT);
}

static bool flow_alive(const nat_flow *f, dht_ts now) {
  return f->ext && now < (dht_ts)f->exp_s * 1000;
}

/* A flow used now lives timeout_ms more, to the next whole second (a 32-bit
 * count of seconds keeps a flow at 16 bytes; the mapping lives at least the
 * timeout and less than a second more). */
static uint32_t flow_exp(dht_ts now, dht_ts life_ms) {
  dht_ts s = (now + life_ms + 999) / 1000;
  return s < UINT32_MAX ? (uint32_t)s : UINT32_MAX - 1; /* a lease of centuries is one */
}

/* Whether no live flow or forward of b uses external port ext, except
 * those of socket `mine` (-1: none excepted). */
static bool port_free(const nat_box *b, uint16_t ext, int mine, dht_ts now) {
  for (int k = 0; k < b->nf; k++) {
    const nat_flow *f = &b->f[k];
    if (f->ext == ext && flow_alive(f, now) && f->sock != mine)
      return false;
  }
  return true;
}

/* A random external port no live flow uses and not `avoid` (a symmetric
 * box does not hand a flow the port it had before it expired), from the
 * NAT stream; 0 when none was found. */
static uint16_t random_port(sim_net *n, const nat_box *b, uint16_t avoid, dht_ts now) {
  for (int t = 0; t < NAT_PORT_TRIES; t++) {
    uint16_t p = (uint16_t)(1024 + sim_rng_below(&n->nat_rng, 65536 - 1024));
    if (p != avoid && port_free(b, p, -1, now))
      return p;
  }
  return 0;
}

/* A slot for a new flow: a dead or free one (first_dead), else a new one at
 * the end, growing the array; -1 at SIM_NAT_MAX_FLOWS or out of memory. */
static int flow_slot(sim_net *n, nat_box *b, int first_dead) {
  if (first_dead >= 0)
    return first_dead;
  if (b->nf == b->af) {
    int na = b->af ? b->af * 2 : 4;
    if (na > SIM_NAT_MAX_FLOWS)
      na = SIM_NAT_MAX_FLOWS;
    if (na == b->af)
      return -1;
    nat_flow *nf = realloc(b->f, (size_t)na * sizeof *nf);
    if (!nf)
      return -1;
    bytes_add(n, (ptrdiff_t)((size_t)(na - b->af) * sizeof *nf));
    b->f = nf;
    b->af = (uint16_t)na;
  }
  return b->nf++;
}

/* A datagram from the host's socket `sock` to `to` passes the box at time
 * now: finds or makes its flow and refreshes it.  The external port it
 * leaves from in *ext; 0, or -1 when the box has no room (or no port). */
static int box_out(sim_net *n, nat_box *b, uint32_t sock, const dht_addr *to, dht_ts now,
                   uint16_t *ext) {
  uint32_t rip = ip4_of(to);
  int dead = -1;
  uint16_t fwd = 0, same = 0;
  for (int k = 0; k < b->nf; k++) {
    nat_flow *f = &b->f[k];
    if (!flow_alive(f, now)) {
      if (dead < 0) /* expired, a lapsed forward or a free slot */
        dead = k;
      continue;
    }
    if (f->sock != sock)
      continue;
    if (f->flags & NAT_FWD) {
      fwd = fwd ? fwd : f->ext;
    } else if (f->rip == rip && f->rport == to->port) {
      f->exp_s = flow_exp(now, b->timeout_ms);
      *ext = f->ext;
      return 0;
    } else if (!same) {
      same = f->ext;
    }
  }
  uint16_t port;
  if (b->type == SIM_NAT_SYMMETRIC)
    port = random_port(n, b, dead >= 0 ? b->f[dead].ext : 0, now);
  else if (fwd)
    port = fwd; /* the gateway's mapping is the socket's mapping */
  else if (same)
    port = same; /* endpoint-independent: one port per socket */
  else if (port_free(b, sock_port(sock), (int)sock, now))
    port = sock_port(sock); /* port preservation */
  else
    port = random_port(n, b, 0, now);
  int k = port ? flow_slot(n, b, dead) : -1;
  if (k < 0)
    return -1;
  nat_flow *f = &b->f[k];
  memset(f, 0, sizeof *f);
  f->rip = rip;
  f->rport = to->port;
  f->ext = port;
  f->sock = (uint16_t)sock;
  f->exp_s = flow_exp(now, b->timeout_ms);
  n->nat.flows++;
  *ext = port;
  return 0;
}

/* The host's socket a datagram from `from` to external port ext of box b
 * reaches at time now, or -1 when the box's filter drops it. */
static int box_in(const nat_box *b, uint16_t ext, const dht_addr *from, dht_ts now) {
  uint32_t rip = ip4_of(from);
  for (int k = 0; k < b->nf; k++) {
    const nat_flow *f = &b->f[k];
    if (f->ext != ext || !flow_alive(f, now))
      continue;
    if (f->flags & NAT_FWD)
      return f->sock;
    switch (b->type) {
    case SIM_NAT_FULL:
      return f->sock;
    case SIM_NAT_RESTRICTED:
      if (f->rip == rip)
        return f->sock;
      break;
    default: /* port, upnp, symmetric */
      if (f->rip == rip && f->rport == from->port)
        return f->sock;
      break;
    }
  }
  return -1;
}

int sim_net_nat_type(const sim_net *n, int host) {
  return n->h[host].box ? n->box[n->h[host].box - 1].type : SIM_NAT_PUBLIC;
}

int sim_net_nat_set(sim_net *n, int host, int type, dht_ts timeout_ms, bool hairpin) {
  if (host < 0 || host >= n->nh || type < 0 || type >= SIM_NAT_TYPES || timeout_ms < 1 ||
      timeout_ms > UINT32_MAX)
    return -1;
  nat_box *b = box_of(n, host);
  int was = sim_net_nat_type(n, host);
  if (type == SIM_NAT_PUBLIC) {
    if (b) {
      /* its slot in the table stays, empty: this is for tests */
      bytes_add(n, -(ptrdiff_t)((size_t)b->af * sizeof *b->f));
      free(b->f);
      memset(b, 0, sizeof *b);
      n->h[host].box = 0;
    }
  } else if (b) {
    b->nf = 0; /* a new box starts empty */
    b->type = (uint8_t)type;
    b->hairpin = hairpin;
    b->timeout_ms = (uint32_t)timeout_ms;
  } else if (box_attach(n, host, type, timeout_ms, hairpin) != 0) {
    return -1;
  }
  n->nat.hosts[was]--;
  n->nat.hosts[type]++;
  return 0;
}

/* The socket of a host's internal port, or -1 when no socket can be there. */
static int port_sock(uint16_t in_port) {
  if (in_port == NET_PORT)
    return 0;
  if (in_port > SIM_NET_SOCK_PORT && in_port <= SIM_NET_SOCK_PORT + SIM_NET_MAX_SOCK)
    return in_port - SIM_NET_SOCK_PORT;
  return -1;
}

int sim_net_nat_forward_add(sim_net *n, int host, uint16_t ext, uint16_t in_port, dht_ts lease_ms,
                            dht_ts now) {
  nat_box *b = host >= 0 && host < n->nh ? box_of(n, host) : NULL;
  int sock = port_sock(in_port);
  if (!b || b->type != SIM_NAT_UPNP || !ext || sock < 0 || lease_ms < 0)
    return -1;
  int slot = -1, dead = -1, nfwd = 0;
  for (int k = 0; k < b->nf; k++) {
    nat_flow *f = &b->f[k];
    if (!flow_alive(f, now)) {
      if (dead < 0)
        dead = k;
      continue;
    }
    if (f->flags & NAT_FWD) {
      nfwd++;
      if (f->ext == ext)
        slot = k; /* replaced, as IGDs do */
    } else if (f->ext == ext && f->sock != sock) {
      return -1; /* another socket's mapping holds the port */
    }
  }
  if (slot < 0) {
    if (nfwd >= SIM_NAT_MAX_FORWARDS || (slot = flow_slot(n, b, dead)) < 0)
      return -1;
  }
  nat_flow *f = &b->f[slot];
  memset(f, 0, sizeof *f);
  f->ext = ext;
  f->sock = (uint16_t)sock;
  f->flags = NAT_FWD;
  /* a lease past 2^32 s (136 years) would overflow the count: it is none */
  f->exp_s =
      lease_ms && lease_ms < (dht_ts)UINT32_MAX * 1000 ? flow_exp(now, lease_ms) : UINT32_MAX;
  return 0;
}

int sim_net_nat_forward_del(sim_net *n, int host, uint16_t ext) {
  nat_box *b = host >= 0 && host < n->nh ? box_of(n, host) : NULL;
  for (int k = 0; b && ext && k < b->nf; k++) {
    nat_flow *f = &b->f[k];
    if ((f->flags & NAT_FWD) && f->ext == ext) {
      memset(f, 0, sizeof *f); /* a free slot */
      return 0;
    }
  }
  return -1;
}

bool sim_net_nat_forwarded(const sim_net *n, int host, uint16_t in_port, dht_ts now) {
  const nat_box *b =
      host >= 0 && host < n->nh && n->h[host].box ? &n->box[n->h[host].box - 1] : NULL;
  int sock = port_sock(in_port);
  for (int k = 0; b && sock >= 0 && k < b->nf; k++) {
    const nat_flow *f = &b->f[k];
    if ((f->flags & NAT_FWD) && f->sock == sock && flow_alive(f, now))
      return true;
  }
  return false;
}

void sim_net_nat_stats(const sim_net *n, sim_nat_stats *out) {
  *out = n->nat;
}

/* ---- sending and arriving ------------------------------------------------------ */

static double one_way_ms(sim_net *n, int a, int b) {
  const net_host *ha = &n->h[a], *hb = &n->h[b];
  double rtt;
  if (n->rtt) {
    uint64_t lo = (uint64_t)(a < b ? a : b), hi = (uint64_t)(a < b ? b : a);
    rtt = sim_rtt_link(n->rtt, ha->country, hb->country, n->c->seed ^ (lo << 32 | hi));
  } else {
    rtt = sim_synth_rtt(ha->xy, hb->xy, n->c->synth_base_ms, n->c->synth_per_unit_ms);
  }
  double d = rtt / 2;
  if (n->c->jitter > 0)
    d *= 1 + n->c->jitter * (2 * sim_rng_unit(&n->rng) - 1);
  return d < 0.05 ? 0.05 : d;
}

static sim_dgram *dgram_fill(sim_net *n, const dht_addr *from, uint32_t local, uint16_t to_port,
                             const uint8_t *buf, size_t len) {
  sim_dgram *d = dgram_new(n, len);
  if (!d)
    return NULL;
  d->from = *from;
  d->local = local;
  d->to_port = to_port;
  memcpy(d->data, buf, len);
  return d;
}

int sim_net_send(sim_net *n, int from, uint32_t local, const dht_addr *to, uint8_t ttl,
                 const uint8_t *buf, size_t len, dht_ts now, sim_delivery *out) {
  net_host *hf = &n->h[from];
  uint32_t dst_local;
  uint16_t to_port;
  int dst = route(n, from, to, &dst_local, &to_port);
  if (local && !sim_net_sock_is_open(n, from, local))
    return SIM_NET_DROPPED; /* a socket the driver closed */
  dht_addr src = sim_net_addr(n, from);
  src.port = sock_port(local);
  if (hf->box && !(dst == from && !to_port)) {
    /* out through the host's box; what the LAN cannot route (another host's
     * private address, IPv6 here) never reaches the box */
    nat_box *b = box_of(n, from);
    if (to->family != DHT_AF_INET || is_private(to))
      return SIM_NET_DROPPED;
    bool hairpin = dst == from;
    if (hairpin && !b->hairpin) {
      n->nat.no_hairpin++;
      return SIM_NET_DROPPED;
    }
    uint16_t ext;
    if (box_out(n, b, local, to, now, &ext) != 0) {
      n->nat.table_full++;
      return SIM_NET_DROPPED;
    }
    src = host_addr(from); /* the box's address */
    src.port = ext;
    if (ttl && ttl < SIM_NET_HOPS) {
      n->nat.primed++; /* the mapping is made; the datagram dies beyond the box */
      return SIM_NET_DROPPED;
    }
    if (hairpin) {
      /* turned back at the box: no Internet path, no loss, no uplink */
      sim_dgram *d = dgram_fill(n, &src, 0, to_port, buf, len);
      if (!d)
        return SIM_NET_NOMEM;
      n->nat.hairpinned++;
      out->at = now + SIM_NAT_HAIRPIN_MS;
      out->dst = from;
      out->d = d;
      return 0;
    }
  } else if (ttl && ttl < SIM_NET_HOPS) {
    /* a datagram whose TTL runs out dies on the way (before any draw, so
     * that a run without them draws as it always did) */
    return SIM_NET_DROPPED;
  }
  if (dst < 0 || (n->c->loss > 0 && sim_rng_unit(&n->rng) < n->c->loss) ||
      (n->partitioned && n->h[dst].part != hf->part))
    return SIM_NET_DROPPED;
  dht_ts depart = now;
  if (n->c->bandwidth_bps) {
    /* serialisation on the sender's uplink; tail drop past the queue */
    dht_ts start = hf->uplink_free > now ? hf->uplink_free : now;
    double queued_bytes = (double)(start - now) * (double)n->c->bandwidth_bps / 8000.0;
    if (queued_bytes > n->c->queue_bytes)
      return SIM_NET_DROPPED;
    dht_ts tx_ms = (dht_ts)ceil((double)(len + 28) * 8000.0 / (double)n->c->bandwidth_bps);
    hf->uplink_free = start + tx_ms;
    depart = hf->uplink_free;
  }
  sim_dgram *d = dgram_fill(n, &src, dst_local, to_port, buf, len);
  if (!d)
    return SIM_NET_NOMEM;
  out->at = depart + (dht_ts)llround(one_way_ms(n, from, dst));
  out->dst = dst;
  out->d = d;
  return 0;
}

bool sim_net_arrives(sim_net *n, sim_dgram *d, int dst, dht_ts now) {
  if (n->partitioned) {
    /* the sender is the host of the source's /24, or of its own private address */
    int src = is_private(&d->from) ? host_by_priv(n, &d->from) : host_by_ip(n, &d->from);
    if (n->h[src].part != n->h[dst].part)
      return false;
  }
  if (d->to_port) {
    /* the box's filter, as its flows stand now, then the translation */
    const nat_box *b = box_of(n, dst);
    int sock = b ? box_in(b, d->to_port, &d->from, now) : -1;
    if (sock < 0) {
      n->nat.filtered++;
      return false;
    }
    d->local = (uint32_t)sock;
  }
  return !(d->local && !sim_net_sock_is_open(n, dst, d->local)); /* closed while it flew */
}

/* ---- partitions ------------------------------------------------------------- */

void sim_net_partition(sim_net *n, double fraction, sim_rng *r) {
  int cut = (int)llround(fraction * n->nh);
  for (int i = 0; i < n->nh; i++)
    n->h[i].part = 0;
  /* bounded tries: a fraction near 1 must not spin on the last few hosts */
  for (int k = 0, tries = 0; k < cut && tries < 100 * n->nh; tries++) {
    int i = (int)sim_rng_below(r, (uint64_t)n->nh);
    if (!n->h[i].part) {
      n->h[i].part = 1;
      k++;
    }
  }
  n->partitioned = true;
}

void sim_net_heal(sim_net *n) {
  n->partitioned = false;
}

bool sim_net_is_partitioned(const sim_net *n) {
  return n->partitioned;
}

bool sim_net_same_side(const sim_net *n, int a, int b) {
  return !n->partitioned || n->h[a].part == n->h[b].part;
}

/*
 * sim_net.c - roost-sim's virtual network: host addresses, sending a
 * datagram from a host to an address (loss, the sender's uplink queue,
 * latency from sim_rtt.c's models, jitter), partitions, and the buffers of
 * datagrams in flight.  The run schedules what a send returns as a delivery
 * event and asks sim_net_arrives when it comes up (sim_int.h).
 *
 * Hosts get IPv4 addresses with a distinct /24 each (11.0.0.1, 11.0.1.1,
 * ...): the engines' per-prefix limits see them as different networks.  An
 * address maps back to its host by arithmetic, so there is no table to keep.
 *
 * Invariants: every random draw (loss, then jitter, per send) comes from the
 * network's own stream (seed, 0x3002), and a host's place from the host's
 * stream, so a seed reproduces every path; a link's base RTT is a function of
 * its two hosts and the seed (fixed per link, whatever the order of sends);
 * the partition is one bit per host plus one flag, so healing restores every
 * path at once; a datagram buffer belongs to exactly one of the free lists or
 * one delivery.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_int.h"

#define NET_PORT 4000
#define NET_BASE 0x0B000000u /* 11.0.0.0: host i is 11.(i >> 8).(i & 255).1 */
#define DGRAM_CLASSES 4

/* Per host, what the network needs to know; the host's engine and identity
 * are sim_run.c's. */
typedef struct net_host {
  dht_ts uplink_free; /* when the uplink has sent what is queued on it */
  sim_coord xy;       /* synthetic model: the host's point on the torus */
  int16_t country;    /* RTT table: the host's country, -1 without a table */
  uint8_t part;       /* its side of the partition */
  uint16_t nsocks;    /* extra sockets open, ids in socks[] ascending */
  uint16_t *socks;    /* NULL until the host opens one: most never do */
} net_host;

struct sim_net {
  const sim_config *c;
  sim_rtt *rtt; /* NULL: the synthetic model */
  sim_rng rng;  /* loss and jitter */
  net_host *h;
  int nh, ah;
  bool partitioned;
  sim_dgram *dfree[DGRAM_CLASSES]; /* free datagram buffers by size class */
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
  free(n->h);
  sim_rtt_free(n->rtt);
  free(n);
}

/* ---- hosts and addresses ----------------------------------------------------- */

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
  return 0;
}

void sim_net_host_up(sim_net *n, int host) {
  n->h[host].uplink_free = 0;
  /* a restarted host's engine is new: the sockets it had are gone */
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

static dht_addr host_addr(int i) {
  dht_addr a;
  memset(&a, 0, sizeof a);
  a.family = DHT_AF_INET;
  uint32_t ip = NET_BASE + ((uint32_t)i << 8) + 1;
  a.ip[0] = (uint8_t)(ip >> 24);
  a.ip[1] = (uint8_t)(ip >> 16);
  a.ip[2] = (uint8_t)(ip >> 8);
  a.ip[3] = (uint8_t)ip;
  a.port = NET_PORT;
  return a;
}

/* The host whose IP a has (whatever the port), or -1. */
static int host_by_ip(const sim_net *n, const dht_addr *a) {
  if (a->family != DHT_AF_INET || a->ip[3] != 1)
    return -1;
  uint32_t ip = (uint32_t)a->ip[0] << 24 | (uint32_t)a->ip[1] << 16 | (uint32_t)a->ip[2] << 8;
  if (ip < NET_BASE)
    return -1;
  uint32_t i = (ip - NET_BASE) >> 8;
  return i < (uint32_t)n->nh ? (int)i : -1;
}

/* The host at a, and the socket of it that a names in *local. */
static int host_of(const sim_net *n, const dht_addr *a, uint32_t *local) {
  int i = host_by_ip(n, a);
  if (i < 0)
    return -1;
  *local = 0;
  if (a->port == NET_PORT)
    return i;
  if (a->port > SIM_NET_SOCK_PORT && sim_net_sock_is_open(n, i, a->port - SIM_NET_SOCK_PORT)) {
    *local = a->port - SIM_NET_SOCK_PORT;
    return i;
  }
  return -1;
}

dht_addr sim_net_addr(const sim_net *n, int host) {
  (void)n; /* addresses are arithmetic today; NAT boxes will need the network */
  return host_addr(host);
}

int sim_net_host_of(const sim_net *n, const dht_addr *a) {
  uint32_t local;
  return host_of(n, a, &local);
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

int sim_net_send(sim_net *n, int from, uint32_t local, const dht_addr *to, uint8_t ttl,
                 const uint8_t *buf, size_t len, dht_ts now, sim_delivery *out) {
  net_host *hf = &n->h[from];
  uint32_t dst_local;
  int dst = host_of(n, to, &dst_local);
  if (local && !sim_net_sock_is_open(n, from, local))
    return SIM_NET_DROPPED; /* a socket the driver closed */
  /* a datagram whose TTL runs out dies on the way (before any draw, so that
   * a run without them draws as it always did) */
  if (ttl && ttl < SIM_NET_HOPS)
    return SIM_NET_DROPPED;
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
  sim_dgram *d = dgram_new(n, len);
  if (!d)
    return SIM_NET_NOMEM;
  d->from = host_addr(from);
  if (local)
    d->from.port = (uint16_t)(SIM_NET_SOCK_PORT + local);
  d->local = dst_local;
  memcpy(d->data, buf, len);
  out->at = depart + (dht_ts)llround(one_way_ms(n, from, dst));
  out->dst = dst;
  out->d = d;
  return 0;
}

bool sim_net_arrives(const sim_net *n, const sim_dgram *d, int dst) {
  if (d->local && !sim_net_sock_is_open(n, dst, d->local))
    return false; /* the socket closed while it was in flight */
  return !(n->partitioned && n->h[host_by_ip(n, &d->from)].part != n->h[dst].part);
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

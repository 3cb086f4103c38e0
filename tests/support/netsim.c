/*
 * netsim.c - see netsim.h.  Datagrams in flight sit in a binary heap ordered
 * by (delivery time, sequence), so ties are broken by send order and a seed
 * reproduces a run exactly.
 */
#include "netsim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct dgram {
  dht_ts at;
  uint64_t seq;
  dht_addr from;
  int to;
  uint32_t local; /* the receiving socket */
  uint16_t len;
  uint8_t data[DHT_MAX_PKT];
} dgram;

/* Whom (node and port) a filtering node sent to, and when. */
#define CONTACTS 256
#define MAX_SOCKS 32 /* extra sockets per node */

typedef struct node {
  dht *e;
  dht_identity id;
  dht_addr addr;
  tu_rng rng;
  bool up, dirty;
  bool deaf;   /* runs and sends, but nothing reaches it (its link or NAT broke) */
  int blocked; /* node index + 1 whose datagrams to and from this one vanish, or 0 */
  bool filter; /* inbound only from nodes it sent to within FILTER_MS */
  int contacted[CONTACTS];
  uint16_t contacted_port[CONTACTS];
  dht_ts contacted_at[CONTACTS];
  int ncontacted;
  bool sock_open[MAX_SOCKS + 1]; /* [id] */
} node;

#define FILTER_MS 120000

static void note_contact(node *nd, int to, uint16_t port, dht_ts now) {
  for (int i = 0; i < nd->ncontacted; i++)
    if (nd->contacted[i] == to && nd->contacted_port[i] == port) {
      nd->contacted_at[i] = now;
      return;
    }
  int i = nd->ncontacted < CONTACTS ? nd->ncontacted++ : 0;
  nd->contacted[i] = to;
  nd->contacted_port[i] = port;
  nd->contacted_at[i] = now;
}

static bool filter_lets_in(const node *nd, int from, uint16_t port, dht_ts now) {
  if (!nd->filter)
    return true;
  for (int i = 0; i < nd->ncontacted; i++)
    if (nd->contacted[i] == from && nd->contacted_port[i] == port &&
        now - nd->contacted_at[i] < FILTER_MS)
      return true;
  return false;
}

struct netsim {
  netsim_config cfg;
  node *nodes;
  int n;
  dht_ts now;
  tu_rng rng, loss;
  dgram **heap;
  size_t nheap, aheap;
  uint64_t seq, delivered, steps, filtered;
  int *dirty;
  int ndirty;
};

static dht_addr addr_of(int i) {
  dht_addr a;
  memset(&a, 0, sizeof a);
  a.port = 4000;
  if (i % 2 == 0) {
    a.family = DHT_AF_INET;
    a.ip[0] = 10;
    a.ip[1] = (uint8_t)(i >> 8);
    a.ip[2] = (uint8_t)i;
    a.ip[3] = 1;
  } else {
    a.family = DHT_AF_INET6;
    a.ip[0] = 0xfd;
    a.ip[2] = (uint8_t)(i >> 8); /* distinct /48 per node */
    a.ip[3] = (uint8_t)i;
    a.ip[15] = 1;
  }
  return a;
}

/* The node at a (any of its sockets' ports), or -1; *local: the socket. */
static int index_of(const netsim *ns, const dht_addr *a, uint32_t *local) {
  int i;
  if (a->family == DHT_AF_INET && a->ip[0] == 10)
    i = a->ip[1] << 8 | a->ip[2];
  else if (a->family == DHT_AF_INET6 && a->ip[0] == 0xfd)
    i = a->ip[2] << 8 | a->ip[3];
  else
    return -1;
  if (i < 0 || i >= ns->n)
    return -1;
  dht_addr main = ns->nodes[i].addr;
  uint32_t k = (uint32_t)(a->port - main.port);
  main.port = a->port;
  if (a->port < 4000 || k > MAX_SOCKS || !dht_addr_eq(&main, a) ||
      (k > 0 && !ns->nodes[i].sock_open[k]))
    return -1;
  if (local)
    *local = k;
  return i;
}

static void mark(netsim *ns, int i) {
  if (!ns->nodes[i].dirty) {
    ns->nodes[i].dirty = true;
    ns->dirty[ns->ndirty++] = i;
  }
}

int netsim_new(netsim **out, const netsim_config *cfg) {
  *out = NULL;
  if (cfg->n < 1 || cfg->n > 65536)
    return DHT_ERR_INVAL;
  netsim *ns = calloc(1, sizeof *ns);
  if (!ns)
    return DHT_ERR_NOMEM;
  ns->cfg = *cfg;
  if (ns->cfg.sockets > MAX_SOCKS)
    ns->cfg.sockets = MAX_SOCKS;
  if (!ns->cfg.latency_ms)
    ns->cfg.latency_ms = 10;
  ns->nodes = calloc((size_t)cfg->n, sizeof *ns->nodes);
  ns->dirty = calloc((size_t)cfg->n, sizeof *ns->dirty);
  if (!ns->nodes || !ns->dirty) {
    netsim_del(ns);
    return DHT_ERR_NOMEM;
  }
  tu_rng_init(&ns->rng, cfg->seed, 0xfeed);
  tu_rng_init(&ns->loss, cfg->seed, 0x1055);
  for (int i = 0; i < cfg->n; i++) {
    node *nd = &ns->nodes[i];
    tu_identity(&nd->id, cfg->seed, (uint64_t)i);
    nd->addr = addr_of(i);
    nd->up = true;
    tu_rng_init(&nd->rng, cfg->seed, 0x5000000u + (uint64_t)i);
    dht_callbacks cb = {&nd->rng, tu_rand_cb, NULL};
    int rv = dht_new(&nd->e, &nd->id, &cfg->settings, &cb, cfg->mem, 0);
    ns->n = i + 1;
    if (rv) {
      netsim_del(ns);
      return rv;
    }
  }
  *out = ns;
  return 0;
}

void netsim_del(netsim *ns) {
  if (!ns)
    return;
  for (int i = 0; i < ns->n; i++)
    dht_del(ns->nodes[i].e);
  for (size_t i = 0; i < ns->nheap; i++)
    free(ns->heap[i]);
  free(ns->heap);
  free(ns->nodes);
  free(ns->dirty);
  free(ns);
}

int netsim_size(const netsim *ns) {
  return ns->n;
}
dht *netsim_engine(netsim *ns, int i) {
  return ns->nodes[i].e;
}
const dht_identity *netsim_identity(const netsim *ns, int i) {
  return &ns->nodes[i].id;
}
dht_addr netsim_addr(const netsim *ns, int i) {
  return ns->nodes[i].addr;
}
dht_peer netsim_peer(const netsim *ns, int i) {
  dht_peer p;
  memcpy(p.pk, ns->nodes[i].id.pk, DHT_PK_LEN);
  p.addr = ns->nodes[i].addr;
  return p;
}
tu_rng *netsim_rng(netsim *ns) {
  return &ns->rng;
}
dht_ts netsim_now(const netsim *ns) {
  return ns->now;
}
void netsim_set_up(netsim *ns, int i, bool up) {
  ns->nodes[i].up = up;
}
void netsim_touch(netsim *ns, int i) {
  mark(ns, i);
}
void netsim_block(netsim *ns, int i, int j) {
  ns->nodes[i].blocked = j + 1;
  ns->nodes[j].blocked = i + 1;
}
void netsim_set_deaf(netsim *ns, int i, bool deaf) {
  ns->nodes[i].deaf = deaf;
}
void netsim_set_filter(netsim *ns, int i, bool on) {
  ns->nodes[i].filter = on;
}

uint64_t netsim_filtered(const netsim *ns) {
  return ns->filtered;
}

uint64_t netsim_delivered(const netsim *ns) {
  return ns->delivered;
}
uint64_t netsim_steps(const netsim *ns) {
  return ns->steps;
}

static bool before(const dgram *a, const dgram *b) {
  return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static int push(netsim *ns, dgram *d) {
  if (ns->nheap == ns->aheap) {
    size_t na = ns->aheap ? ns->aheap * 2 : 1024;
    dgram **nh = realloc(ns->heap, na * sizeof *nh);
    if (!nh)
      return DHT_ERR_NOMEM;
    ns->heap = nh;
    ns->aheap = na;
  }
  size_t i = ns->nheap++;
  while (i > 0 && before(d, ns->heap[(i - 1) / 2])) {
    ns->heap[i] = ns->heap[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  ns->heap[i] = d;
  return 0;
}

static dgram *pop(netsim *ns) {
  dgram *top = ns->heap[0], *last = ns->heap[--ns->nheap];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= ns->nheap)
      break;
    if (c + 1 < ns->nheap && before(ns->heap[c + 1], ns->heap[c]))
      c++;
    if (!before(ns->heap[c], last))
      break;
    ns->heap[i] = ns->heap[c];
    i = c;
  }
  if (ns->nheap)
    ns->heap[i] = last;
  return top;
}

int netsim_inject(netsim *ns, const dht_addr *from, int to, const uint8_t *data, size_t len) {
  if (len > DHT_MAX_PKT || to < 0 || to >= ns->n)
    return DHT_ERR_INVAL;
  dgram *d = malloc(sizeof *d);
  if (!d)
    return DHT_ERR_NOMEM;
  d->at = ns->now;
  d->seq = ns->seq++;
  d->from = *from;
  d->to = to;
  d->local = 0;
  d->len = (uint16_t)len;
  memcpy(d->data, data, len);
  return push(ns, d);
}

static int write_all(netsim *ns, int i);

/* The driver's part of dht_sock_open: up to cfg.sockets ports per node.
 * True when ev was a socket event. */
static bool sock_event(netsim *ns, int i, const dht_event *ev) {
  node *nd = &ns->nodes[i];
  if (ev->type == DHT_EV_SOCK_CLOSE) {
    if (ev->u.sock.id >= 1 && ev->u.sock.id <= MAX_SOCKS)
      nd->sock_open[ev->u.sock.id] = false;
    return true;
  }
  if (ev->type != DHT_EV_SOCK_OPEN)
    return false;
  uint32_t ids[MAX_SOCKS];
  int n = 0;
  for (uint32_t k = 1; k <= (uint32_t)ns->cfg.sockets && n < ev->u.sock.n; k++)
    if (!nd->sock_open[k] && ev->u.sock.family == nd->addr.family) {
      nd->sock_open[k] = true;
      ids[n++] = k;
    }
  if (dht_sock_opened(nd->e, ev->cmd, ids, n) != 0)
    for (int k = 0; k < n; k++)
      nd->sock_open[ids[k]] = false;
  return true;
}

/* Drains one engine's datagrams, then one event, and again until neither is
 * left: the drive loop of dht.h (services handle their events inside
 * dht_poll_event and may queue datagrams there). */
static int drain(netsim *ns, int i) {
  node *nd = &ns->nodes[i];
  dht_event ev;
  do {
    int rv = write_all(ns, i);
    if (rv)
      return rv;
  } while (dht_poll_event(nd->e, &ev) == 0 && (sock_event(ns, i, &ev) || !ns->cfg.on_event ||
                                               (ns->cfg.on_event(ns->cfg.ctx, i, &ev), true)));
  return 0;
}

/* Puts every datagram node i has queued on the wire. */
static int write_all(netsim *ns, int i) {
  node *nd = &ns->nodes[i];
  for (;;) {
    dgram *d = malloc(sizeof *d);
    if (!d)
      return DHT_ERR_NOMEM;
    dht_path path;
    dht_ssize n = dht_write_pkt(nd->e, &path, NULL, d->data, sizeof d->data, ns->now);
    const dht_addr to = path.remote;
    if (n <= 0) {
      free(d);
      if (n < 0)
        return (int)n;
      break;
    }
    uint32_t dst_local = 0;
    int dst = index_of(ns, &to, &dst_local);
    if (dst < 0 ||
        (ns->cfg.loss_permille && (int)tu_rng_below(&ns->loss, 1000) < ns->cfg.loss_permille)) {
      free(d);
      continue;
    }
    d->at = ns->now + ns->cfg.latency_ms;
    d->seq = ns->seq++;
    note_contact(nd, dst, to.port, ns->now);
    d->from = nd->addr;
    if (path.local >= 1 && path.local <= MAX_SOCKS && nd->sock_open[path.local])
      d->from.port = (uint16_t)(nd->addr.port + path.local);
    d->to = dst;
    d->local = dst_local;
    d->len = (uint16_t)n;
    if (push(ns, d)) {
      free(d);
      return DHT_ERR_NOMEM;
    }
  }
  return 0;
}

static int drain_dirty(netsim *ns) {
  /* a drain may mark other nodes (events can issue commands) */
  for (int k = 0; k < ns->ndirty; k++) {
    int i = ns->dirty[k];
    ns->nodes[i].dirty = false;
    int rv = drain(ns, i);
    if (rv)
      return rv;
  }
  ns->ndirty = 0;
  return 0;
}

int netsim_run(netsim *ns, dht_ts until, bool (*done)(void *ctx), void *ctx) {
  for (;;) {
    int rv = drain_dirty(ns);
    if (rv)
      return rv;
    if (done && done(ctx))
      return 1;
    dht_ts t = ns->nheap ? ns->heap[0]->at : DHT_TS_NEVER;
    for (int i = 0; i < ns->n; i++) {
      if (!ns->nodes[i].up)
        continue;
      dht_ts x = dht_get_expiry(ns->nodes[i].e);
      if (x < t)
        t = x;
    }
    if (t > until) {
      ns->now = until;
      return 0;
    }
    if (t > ns->now)
      ns->now = t;
    ns->steps++;
    while (ns->nheap && ns->heap[0]->at <= ns->now) {
      dgram *d = pop(ns);
      node *nd = &ns->nodes[d->to];
      int from = index_of(ns, &d->from, NULL);
      if (nd->up && (nd->deaf || (from >= 0 && nd->blocked == from + 1) ||
                     !filter_lets_in(nd, from, d->from.port, ns->now))) {
        ns->filtered++;
      } else if (nd->up) {
        if (getenv("NETSIM_TRACE"))
          fprintf(stderr, "t=%lld deliver %d bytes -> node %d\n", (long long)ns->now, d->len,
                  d->to);
        dht_path path = {.local = d->local, .remote = d->from};
        rv = dht_read_pkt(nd->e, &path, d->data, d->len, ns->now);
        ns->delivered++;
        mark(ns, d->to);
      }
      free(d);
      if (rv)
        return rv;
    }
    for (int i = 0; i < ns->n; i++) {
      if (ns->nodes[i].up && dht_get_expiry(ns->nodes[i].e) <= ns->now) {
        rv = dht_handle_expiry(ns->nodes[i].e, ns->now);
        if (rv)
          return rv;
        mark(ns, i);
      }
    }
  }
}

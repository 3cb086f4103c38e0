/*
 * sim_run.c - the event loop of roost-sim: the hosts (their engines, the
 * drive loop, starts and stops), churn, the lookup/get/put workloads and
 * their ground truth, the script, samples and the trace hash.  The network
 * between the hosts is sim_net.c's; the messaging workload (sim_msg.c) plugs
 * in through the sim_workload_ops table the run holds.
 *
 * Every host runs the real dht/ engine through the drive loop roostd runs:
 * after anything happens to a host, its datagrams are drained into the
 * network, its events handled, and its next expiry scheduled.  Events sit in
 * one 4-ary heap ordered by (time, sequence), so ties are broken by the
 * order in which they were scheduled and a seed reproduces a run exactly.
 * Timer events are lazy: a host keeps one generation number, and a timer
 * event whose generation is stale is skipped.
 *
 * A datagram an engine writes goes to sim_net_send; what the network lets
 * through comes back as an EV_DELIVER event, which feeds the datagram to the
 * receiving engine if the host is up and the network still lets it in (a
 * NAT box filters there).  With NATed hosts, joining hosts bootstrap from
 * public ones.  With nat on, every host runs the NAT service (nat/) beside
 * its engine: a dht/ service, so its timers are the engine's expiry; the
 * seeds are its servers by declaration and the bootstrap list.
 *
 * Invariants: every random choice comes from a stream of the seed (work
 * 0x3001, churn 0x3003, one per host; the network has its own), never from
 * time or pointers; a pending command belongs to a host that is up (a stop
 * cancels the host's); the trace hash is BLAKE2b over (time, kind, host,
 * length) of every event processed, in order, so two runs with the same seed
 * and configuration print the same hash.
 */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "nat.h"
#include "sim_int.h"

enum ev_kind {
  EV_DELIVER = 1,
  EV_TIMER,
  EV_JOIN,
  EV_LEAVE,
  EV_LOOKUP,
  EV_GET,
  EV_PUT,
  EV_SCRIPT,
  EV_SAMPLE,
  EV_WORKLOAD, /* the workload's own events (sim_run_ops.schedule) */
  EV_GW,       /* a host's port mapping: its gateway's answer or its policy's timer */
  EV_PUNCH,    /* the punch experiment: one more nat_connect */
};

typedef struct event {
  dht_ts at;
  uint64_t seq;
  uint32_t kind;
  int32_t host;
  uint32_t gen;
  sim_dgram *d; /* EV_DELIVER: the datagram, the network's buffer */
} event;

typedef struct host {
  dht *e;
  dht_identity id;
  uint8_t nid[DHT_ID_LEN];
  uint64_t nid64; /* first 8 bytes of the ID, big-endian: fast distance */
  uint8_t up, joined;
  uint32_t gen, incarnation;
  dht_ts timer_at;
  uint64_t rng_state[4]; /* xoshiro256** for the engine's rand callback */
  uint8_t *snap;
  uint32_t snap_len;
  int64_t boot_cmd;
} host;

/* A host's port mapping (nat on, a host behind a box): the policy roostd
 * runs and the box's scripted gateway.  Allocated at the host's first start
 * and kept, so its EV_GW generation never goes back; the policy lives for
 * one incarnation. */
typedef struct host_pm {
  nat_portmap *pm; /* NULL while the host is down */
  sim_gw gw;
  dht_ts timer_at; /* the EV_GW pending, -1: none */
  uint32_t gen;
  dht_addr mapped; /* the verified mapping in the host's record (family 0: none) */
} host_pm;

typedef struct pending {
  int32_t host;
  int64_t cmd;
  size_t op;
  uint8_t target[DHT_ID_LEN];
  int32_t target_host; /* GET: whose record */
} pending;

typedef struct sim {
  const sim_config *c;
  sim_result *res;
  host *h;
  int nh, ah;
  event *heap;
  size_t nheap, aheap;
  uint64_t seq;
  dht_ts now, end;
  sim_rng rng_work, rng_churn;
  sim_net *net;
  crypto_generichash_state trace;
  pending *pend;
  size_t npend, apend;
  int online;
  uint64_t issued_lookups;
  dht_settings set;
  sim_sample cur; /* the interval being counted */
  char *err;
  size_t errlen;
  const sim_workload_ops *wl; /* the workload, NULL when off */
  void *wl_st;                /* its state */
  sim_run_ops run_ops;        /* what the workload may ask of the run */
  /* the NAT service (c->nat_svc): one per host that is up, NULL otherwise */
  nat_svc **nat;
  int nat_seeds;       /* seeds chosen so far: the first c->nat_seeds public hosts */
  int nat_seed_of[64]; /* their host numbers (nat-seeds is at most 64) */
  size_t nat_alloc;    /* bytes the service being created asked for */
  host_pm **pm;        /* per host (nat on): NULL for a public host */
  dht_ts tbl_next;     /* the next sample that walks the routing tables */
  uint64_t issued_punches;
} sim;

/* Routing tables are walked for series.csv at most this often. */
#define TBL_SAMPLE_MS 60000

/* ---- the heap ------------------------------------------------------------ */

/* A 4-ary heap: half the depth of a binary one, and the four children of a
 * node share a cache line or two, so a pop touches fewer lines. */
#define HEAP_D 4

static bool before(const event *a, const event *b) {
  return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static int push(sim *s, event ev) {
  if (s->nheap == s->aheap) {
    size_t na = s->aheap ? s->aheap * 2 : 4096;
    event *nh = realloc(s->heap, na * sizeof *nh);
    if (!nh)
      return -1;
    s->heap = nh;
    s->aheap = na;
  }
  ev.seq = s->seq++;
  size_t i = s->nheap++;
  while (i > 0 && before(&ev, &s->heap[(i - 1) / HEAP_D])) {
    s->heap[i] = s->heap[(i - 1) / HEAP_D];
    i = (i - 1) / HEAP_D;
  }
  s->heap[i] = ev;
  return 0;
}

static event pop(sim *s) {
  event top = s->heap[0], last = s->heap[--s->nheap];
  size_t i = 0, n = s->nheap;
  for (;;) {
    size_t c = HEAP_D * i + 1;
    if (c >= n)
      break;
    size_t end = c + HEAP_D < n ? c + HEAP_D : n;
    size_t m = c;
    for (size_t j = c + 1; j < end; j++)
      if (before(&s->heap[j], &s->heap[m]))
        m = j;
    if (!before(&s->heap[m], &last))
      break;
    s->heap[i] = s->heap[m];
    i = m;
  }
  if (n)
    s->heap[i] = last;
  return top;
}

static void schedule(sim *s, dht_ts at, int kind, int host_i, uint32_t gen, sim_dgram *d) {
  event ev = {at, 0, (uint32_t)kind, host_i, gen, d};
  if (push(s, ev) != 0) {
    fprintf(stderr, "roost-sim: out of memory for events\n");
    exit(1);
  }
}

/* ---- hosts ---------------------------------------------------------------- */

static uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

static void host_rand(void *ctx, uint8_t *buf, size_t len) {
  uint64_t *st = ctx;
  while (len) {
    uint64_t r = rotl(st[1] * 5, 7) * 9, t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    size_t n = len < 8 ? len : 8;
    memcpy(buf, &r, n);
    buf += n;
    len -= n;
  }
}

static int host_add(sim *s) {
  if (s->nh == s->ah) {
    int na = s->ah ? s->ah * 2 : 1024;
    host *nh = realloc(s->h, (size_t)na * sizeof *nh);
    if (!nh)
      return -1;
    s->h = nh;
    s->ah = na;
    uint64_t *tx = realloc(s->res->tx_per_host, (size_t)na * sizeof *tx);
    if (!tx)
      return -1;
    s->res->tx_per_host = tx;
    if (s->c->nat_svc) {
      nat_svc **nn = realloc(s->nat, (size_t)na * sizeof *nn);
      if (!nn)
        return -1;
      s->nat = nn;
      host_pm **np = realloc(s->pm, (size_t)na * sizeof *np);
      if (!np)
        return -1;
      s->pm = np;
      sim_nat_host *nh2 = realloc(s->res->natsvc.hosts, (size_t)na * sizeof *nh2);
      if (!nh2)
        return -1;
      s->res->natsvc.hosts = nh2;
    }
  }
  int i = s->nh++;
  host *h = &s->h[i];
  memset(h, 0, sizeof *h);
  s->res->tx_per_host[i] = 0;
  s->res->nhosts = s->nh;
  sim_rng r;
  sim_rng_init(&r, s->c->seed, 0x4000000000ull + (uint64_t)i);
  uint8_t seed[32];
  sim_rng_bytes(&r, seed, sizeof seed);
  dht_identity_from_seed(&h->id, seed);
  dht_id_from_pk(h->nid, h->id.pk);
  for (int k = 0; k < 8; k++)
    h->nid64 = h->nid64 << 8 | h->nid[k];
  sim_rng_bytes(&r, (uint8_t *)h->rng_state, sizeof h->rng_state);
  /* the network places the host with the rest of the host's stream */
  if (sim_net_host_add(s->net, i, &r) != 0)
    return -1;
  if (s->c->nat_svc) {
    s->nat[i] = NULL;
    s->pm[i] = NULL;
    sim_nat_host *nh = &s->res->natsvc.hosts[i];
    memset(nh, 0, sizeof *nh);
    nh->start_ms = nh->class_ms = nh->mode_ms = -1;
    nh->type = (uint8_t)sim_net_nat_type(s->net, i);
    if (nh->type == SIM_NAT_PUBLIC && s->nat_seeds < s->c->nat_seeds) {
      nh->seed = 1;
      s->nat_seed_of[s->nat_seeds++] = i;
    }
    s->res->natsvc.nhosts = s->nh;
  }
  return i;
}

/* ---- the network ------------------------------------------------------------ */

/* Counts what the network drops and schedules what it delivers.  A datagram
 * with no buffer (out of memory) is neither, as it always was. */
static void send_dgram(sim *s, int from, const dht_path *to, const dht_pkt_info *pi,
                       const uint8_t *buf, size_t len) {
  s->res->tx_per_host[from]++;
  sim_delivery dv;
  int rv = sim_net_send(s->net, from, to->local, &to->remote, pi->ttl, buf, len, s->now, &dv);
  if (rv == SIM_NET_DROPPED) {
    s->res->lost++;
    s->cur.dropped++;
  } else if (rv == 0) {
    schedule(s, dv.at, EV_DELIVER, dv.dst, 0, dv.d);
  }
}

/* ---- operations and their truth ------------------------------------------ */

static size_t op_new(sim *s, int kind, int host_i) {
  sim_result *r = s->res;
  if (r->nops == r->aops) {
    size_t na = r->aops ? r->aops * 2 : 1024;
    sim_op *no = realloc(r->ops, na * sizeof *no);
    if (!no) {
      fprintf(stderr, "roost-sim: out of memory for results\n");
      exit(1);
    }
    r->ops = no;
    r->aops = na;
  }
  sim_op *o = &r->ops[r->nops];
  memset(o, 0, sizeof *o);
  o->kind = (uint8_t)kind;
  o->host = host_i;
  o->start_ms = s->now;
  o->end_ms = -1;
  return r->nops++;
}

static void op_done(sim *s, size_t i, int status, bool ok) {
  sim_op *o = &s->res->ops[i];
  o->end_ms = s->now;
  o->status = status;
  o->ok = ok;
  s->cur.ops_done++;
  s->cur.ops_ok += ok;
}

static void pend_add(sim *s, int host_i, int64_t cmd, size_t op, const uint8_t *target, int th) {
  if (s->npend == s->apend) {
    size_t na = s->apend ? s->apend * 2 : 256;
    pending *np = realloc(s->pend, na * sizeof *np);
    if (!np)
      exit(1);
    s->pend = np;
    s->apend = na;
  }
  pending *p = &s->pend[s->npend++];
  p->host = host_i;
  p->cmd = cmd;
  p->op = op;
  p->target_host = th;
  if (target)
    memcpy(p->target, target, DHT_ID_LEN);
}

/* The true k closest hosts that are up to target (excluding `skip`, and
 * during a partition the hosts on the other side of it; with the NAT
 * service, the servers among them): indices in out,
 * closest first.  A host that is (re)joining counts: it answers queries, so
 * a lookup may rightly find it.  Brute force with a 64-bit prefilter. */
static int truth(sim *s, const uint8_t target[DHT_ID_LEN], int skip, int k, int *out) {
  uint64_t t64 = 0;
  for (int i = 0; i < 8; i++)
    t64 = t64 << 8 | target[i];
  int n = 0;
  bool cut = sim_net_is_partitioned(s->net); /* asked once: this loop is hot */
  for (int i = 0; i < s->nh; i++) {
    const host *h = &s->h[i];
    if (!h->up || i == skip || (cut && !sim_net_same_side(s->net, i, skip)))
      continue;
    if (s->nat && !dht_is_server(h->e))
      continue; /* a client is never stored, so no lookup can find it */
    uint64_t d = h->nid64 ^ t64;
    if (n == k) {
      uint64_t worst = s->h[out[k - 1]].nid64 ^ t64;
      if (d > worst || (d == worst && dht_id_cmp_dist(h->nid, s->h[out[k - 1]].nid, target) >= 0))
        continue;
      n--;
    }
    int pos = n;
    while (pos > 0) {
      const host *p = &s->h[out[pos - 1]];
      uint64_t dp = p->nid64 ^ t64;
      if (dp < d || (dp == d && dht_id_cmp_dist(p->nid, h->nid, target) < 0))
        break;
      out[pos] = out[pos - 1];
      pos--;
    }
    out[pos] = i;
    n++;
  }
  return n;
}

static void lookup_done(sim *s, const pending *p, const dht_event *ev) {
  sim_op *o = &s->res->ops[p->op];
  const dht_lookup_result *r = ev->u.lookup;
  int k = s->set.k, want[DHT_K_MAX];
  if (r) {
    o->rounds = (uint8_t)(r->rounds > 255 ? 255 : r->rounds);
    o->messages = (uint16_t)(r->messages > 65535 ? 65535 : r->messages);
  }
  if (o->kind == SIM_OP_GET) {
    const host *t = &s->h[p->target_host];
    dht_addr a = sim_net_addr(s->net, p->target_host);
    bool ok = r && r->has_record && !memcmp(r->record.pk, t->id.pk, DHT_PK_LEN) &&
              r->record.naddrs > 0 && dht_addr_eq(&r->record.addrs[0].addr, &a);
    op_done(s, p->op, ev->status, ok);
    return;
  }
  int n = truth(s, p->target, p->host, k, want);
  int overlap = 0;
  bool exact = r && r->ncontacts == n;
  for (int i = 0; r && i < r->ncontacts; i++) {
    bool in = false;
    for (int j = 0; j < n && !in; j++)
      in = !memcmp(r->contacts[i].id, s->h[want[j]].nid, DHT_ID_LEN);
    overlap += in;
    if (exact && i < n && memcmp(r->contacts[i].id, s->h[want[i]].nid, DHT_ID_LEN) != 0)
      exact = false;
  }
  o->overlap = (uint8_t)overlap;
  op_done(s, p->op, ev->status, ev->status == 0 && exact);
}

/* ---- driving one host ------------------------------------------------------- */

/* The host's record: its own address first (what a GET's truth checks),
 * then, as roostd adds it, a port mapping a dial-back verified. */
static void publish(sim *s, int i) {
  dht_typed_addr ta[2] = {{DHT_ADDR_OBSERVED, sim_net_addr(s->net, i)}};
  size_t n = 1;
  if (s->pm && s->pm[i] && s->pm[i]->mapped.family)
    ta[n++] = (dht_typed_addr){DHT_ADDR_MAPPED, s->pm[i]->mapped};
  dht_set_addrs(s->h[i].e, ta, n);
  dht_put_record(s->h[i].e, s->now);
}

/* The driver's part of dht_sock_open: sockets are ports of the host's
 * address (sim_net.c). */
static void on_sock_event(sim *s, int i, const dht_event *ev) {
  if (ev->type == DHT_EV_SOCK_CLOSE) {
    sim_net_sock_close(s->net, i, ev->u.sock.id);
    return;
  }
  uint32_t ids[512];
  int n = 0;
  /* only IPv4 hosts here; the family asked for is the one we have */
  while (n < ev->u.sock.n && n < (int)(sizeof ids / sizeof ids[0]) &&
         ev->u.sock.family == DHT_AF_INET && sim_net_sock_next(s->net, i, &ids[n]) == 0)
    n++;
  if (dht_sock_opened(s->h[i].e, ev->cmd, ids, n) != 0)
    for (int k = 0; k < n; k++)
      sim_net_sock_close(s->net, i, ids[k]);
}

static void on_event(sim *s, int i, const dht_event *ev) {
  host *h = &s->h[i];
  if (ev->type == DHT_EV_SOCK_OPEN || ev->type == DHT_EV_SOCK_CLOSE) {
    on_sock_event(s, i, ev);
    return;
  }
  if (ev->type == DHT_EV_BOOTSTRAP && ev->cmd == h->boot_cmd) {
    h->boot_cmd = 0;
    for (size_t k = 0; k < s->npend; k++) {
      pending *p = &s->pend[k];
      if (p->host == i && p->cmd == ev->cmd) {
        /* the very first host has nobody to ask: that is not a failure */
        op_done(s, p->op, ev->status,
                ev->u.bootstrap.table_size > 0 ||
                    (ev->status == 0 && ev->u.bootstrap.pinged == 0 && s->online == 1));
        *p = s->pend[--s->npend];
        break;
      }
    }
    if (!h->joined) {
      h->joined = 1;
      publish(s, i);
    }
    return;
  }
  if (ev->type != DHT_EV_LOOKUP && ev->type != DHT_EV_PUT)
    return;
  for (size_t k = 0; k < s->npend; k++) {
    pending p = s->pend[k];
    if (p.host != i || p.cmd != ev->cmd)
      continue;
    s->pend[k] = s->pend[--s->npend];
    if (ev->type == DHT_EV_PUT) {
      s->res->ops[p.op].messages = (uint16_t)ev->u.put.messages;
      s->res->ops[p.op].rounds = (uint8_t)ev->u.put.rounds;
      op_done(s, p.op, ev->status, ev->u.put.acks > 0);
    } else {
      lookup_done(s, &p, ev);
    }
    return;
  }
}

/* ---- the NAT service (c->nat_svc) ------------------------------------------ */

/* Counts what nat_svc_new allocates: the service's memory with nothing in
 * flight (the vouch and punch tables come later, while in use). */
static void *nat_mem_malloc(void *ctx, size_t n) {
  *(size_t *)ctx += n;
  return malloc(n);
}

static void *nat_mem_realloc(void *ctx, void *p, size_t n) {
  (void)ctx;
  return realloc(p, n);
}

static void nat_mem_free(void *ctx, void *p) {
  (void)ctx;
  free(p);
}

/* ---- port mapping (nat on, hosts behind a box) ------------------------------ */

/* The record follows the policy's verified mapping, as roostd's
 * rebuild_addrs does: republished when it appears, changes or goes. */
static void pm_publish(sim *s, int i) {
  host_pm *p = s->pm[i];
  dht_addr m = {0};
  for (int k = 0; k < NAT_PM_NPROTO && !m.family; k++) {
    nat_pm_info mi;
    if (nat_portmap_info(p->pm, k, &mi, s->now) == 0 && mi.verify == NAT_PM_VERIFIED &&
        mi.ext.family && (mi.state == NAT_PM_MAPPED || mi.state == NAT_PM_RENEWING))
      m = mi.ext;
  }
  if (m.family == p->mapped.family && (!m.family || dht_addr_eq(&m, &p->mapped)))
    return;
  p->mapped = m;
  s->res->natsvc.hosts[i].mapped = m.family != 0;
  if (s->h[i].joined)
    publish(s, i);
}

/* The policy's events, as node/node_daemon.c's on_mapped takes them: a new
 * mapping goes to the NAT service for a dial-back; a lost one leaves the
 * record.  Then its next timer: the sooner of the policy's expiry and the
 * gateway's next answer, one lazy EV_GW per host. */
static void pm_drive(sim *s, int i) {
  host_pm *p = s->pm[i];
  if (!p || !p->pm)
    return;
  nat_pm_event ev;
  bool lost = false;
  while (nat_portmap_poll_event(p->pm, &ev) == 0) {
    if (ev.type == NAT_PM_EV_MAPPED)
      nat_verify_mapping(s->nat[i], ev.proto, ev.ext.port, s->now);
    lost |= ev.type == NAT_PM_EV_LOST;
  }
  if (lost)
    pm_publish(s, i);
  dht_ts exp = nat_portmap_get_expiry(p->pm), g = sim_gw_expiry(&p->gw);
  if (g < exp)
    exp = g;
  if (exp < s->now)
    exp = s->now;
  if (exp != p->timer_at) {
    p->timer_at = exp;
    p->gen++;
    if (exp != DHT_TS_NEVER)
      schedule(s, exp, EV_GW, i, p->gen, NULL);
  }
}

/* A dial-back's verdict on a mapping, back to the policy (node_daemon.c's
 * nat_events). */
static void pm_verdict(sim *s, int i, const nat_event *ev) {
  host_pm *p = s->pm[i];
  if (!p || !p->pm)
    return; /* defensive: only a policy asks for verdicts */
  if (ev->ok)
    s->res->natsvc.maps_verified++;
  else
    s->res->natsvc.maps_refuted++;
  nat_portmap_verified(p->pm, ev->tag, ev->ok, s->now);
  pm_publish(s, i);
}

/* EV_GW: the gateway's answers due now to the policy, then its timer. */
static void pm_expiry(sim *s, int i) {
  host_pm *p = s->pm[i];
  p->timer_at = -1;
  uint64_t id;
  nat_gw_result r;
  while (sim_gw_take(&p->gw, s->now, &id, &r) == 1)
    nat_portmap_done(p->pm, id, &r, s->now);
  if (nat_portmap_get_expiry(p->pm) <= s->now)
    nat_portmap_handle_expiry(p->pm, s->now);
}

/* A host behind a box starts its policy, as roostd does on a private
 * address (a public host has nothing to map).  0 or -1. */
static int pm_start(sim *s, int i) {
  host_pm *p = s->pm[i];
  if (!p) {
    p = calloc(1, sizeof *p);
    if (!p)
      return -1;
    s->pm[i] = p;
  }
  sim_gw_init(&p->gw, s->net, i, sim_gw_kind_of(s->net, i, s->c->seed, s->c->nat_gw_bad), &s->now);
  p->timer_at = -1;
  p->gen++;
  memset(&p->mapped, 0, sizeof p->mapped);
  nat_portmap_settings ps;
  nat_portmap_settings_default(&ps);
  ps.max_events = 4; /* drained after every call into it */
  nat_gw_ops ops[NAT_PM_NPROTO];
  sim_gw_ops(&p->gw, ops);
  const nat_gw_ops *po[NAT_PM_NPROTO] = {&ops[NAT_PM_NATPMP], &ops[NAT_PM_UPNP]};
  dht_mem mem = {&s->nat_alloc, nat_mem_malloc, nat_mem_realloc, nat_mem_free};
  s->nat_alloc = 0;
  if (nat_portmap_new(&p->pm, &ps, po, NULL, &mem) != 0)
    return -1;
  s->res->natsvc.pm_bytes = s->nat_alloc + sizeof *p;
  s->res->natsvc.hosts[i].mapped = 0;
  return nat_portmap_start(p->pm, sim_net_addr(s->net, i).port, s->now) == 0 ? 0 : -1;
}

/* The host goes: cleanly (its deletes reach the gateway, which removes the
 * forward at once) or not (the forward lapses with its lease). */
static void pm_stop(sim *s, int i, bool clean) {
  host_pm *p = s->pm[i];
  if (!p || !p->pm)
    return;
  if (clean)
    nat_portmap_stop(p->pm, s->now);
  s->res->natsvc.maps_asked += p->gw.asked;
  s->res->natsvc.maps_granted += p->gw.granted;
  nat_portmap_del(p->pm);
  p->pm = NULL;
  p->gen++; /* its EV_GW is stale */
  p->timer_at = -1;
}

/* ---- the punch experiment (punches > 0) ----------------------------------- */

static void drive(sim *s, int i);
static int random_online(sim *s, sim_rng *r, int skip);

/* Host i's path event: the first for a punch of its that is still open
 * decides it (a later one is the upgrade of a relayed path, not counted). */
static void punch_done(sim *s, int i, const nat_event *ev) {
  sim_result *r = s->res;
  for (size_t k = r->npunches; k-- > 0;) {
    sim_punch_rec *p = &r->punches[k];
    if (p->from != i || p->method != -1 || memcmp(s->h[p->to].id.pk, ev->pk, DHT_PK_LEN) != 0)
      continue;
    p->method = (int8_t)(ev->ok ? (ev->tag ? ev->tag : DHT_PATH_PUNCHED) : 0);
    p->ms = s->now - p->start_ms;
    return;
  }
}

/* A host that is up behind a box, other than skip; a target (to) must not
 * be a server either: those are reached at their address, no punch needed
 * (a full-cone host, an upnp one with its mapping). */
static int punch_host(sim *s, int skip, bool to) {
  for (int tries = 0; tries < 64; tries++) {
    int i = random_online(s, &s->rng_work, skip);
    if (i < 0)
      return -1;
    if (s->nat[i] && sim_net_nat_type(s->net, i) != SIM_NAT_PUBLIC &&
        !(to && dht_is_server(s->h[i].e)))
      return i;
  }
  return -1;
}

static void do_punch(sim *s) {
  int i = punch_host(s, -1, false), t = i >= 0 ? punch_host(s, i, true) : -1;
  if (i < 0 || t < 0)
    return;
  nat_status st;
  nat_get_status(s->nat[t], s->now, &st);
  if (st.nintro == 0)
    return; /* not registered anywhere yet: nobody could introduce us */
  /* what a lookup of its record would give (the record carries them) */
  dht_introducer intro[NAT_INTROS];
  for (int k = 0; k < st.nintro; k++)
    intro[k] = st.intro[k].who;
  sim_result *r = s->res;
  if (r->npunches == r->apunches) {
    size_t na = r->apunches ? 2 * r->apunches : 1024;
    sim_punch_rec *np = realloc(r->punches, na * sizeof *np);
    if (!np)
      return;
    r->punches = np;
    r->apunches = na;
  }
  if (nat_connect(s->nat[i], s->h[t].id.pk, intro, st.nintro, s->now) != 0)
    return; /* its punch slots are busy */
  sim_punch_rec *p = &r->punches[r->npunches++];
  p->from = i;
  p->to = t;
  p->ftype = (uint8_t)sim_net_nat_type(s->net, i);
  p->ttype = (uint8_t)sim_net_nat_type(s->net, t);
  p->method = -1;
  p->start_ms = s->now;
  p->ms = -1;
  s->issued_punches++;
  drive(s, i);
}

/* After the host's drive loop: drains the service's events (the verdicts
 * on mappings go to the policy) and notes when the host first knew its
 * class and when its (server, reach) pair last changed; then the policy's
 * events and timer. */
static void nat_drive(sim *s, int i) {
  nat_svc *n = s->nat[i];
  if (!n)
    return;
  nat_event nev;
  while (nat_poll_event(n, &nev) == 0) {
    if (nev.type == NAT_EV_MAPPING)
      pm_verdict(s, i, &nev);
    else if (nev.type == NAT_EV_PATH) {
      punch_done(s, i, &nev);
      if (s->wl && s->wl->path_ready)
        s->wl->path_ready(s->wl_st, i, nev.pk, nev.ok, s->now);
    }
  }
  sim_nat_host *nh = &s->res->natsvc.hosts[i];
  nat_status st;
  nat_get_status(n, s->now, &st);
  if (nh->class_ms < 0 && st.vote[0].known)
    nh->class_ms = s->now;
  if (st.server != nh->server || st.reach != nh->reach) {
    nh->server = st.server;
    nh->reach = (uint8_t)st.reach;
    nh->mode_ms = s->now;
  }
  nh->cls = (uint8_t)st.vote[0].mapping;
  pm_drive(s, i);
}

static int nat_start(sim *s, int i, const dht_callbacks *cb) {
  sim_nat_host *nh = &s->res->natsvc.hosts[i];
  nat_settings ns;
  nat_settings_default(&ns);
  /* seeds are servers by declaration: a network needs reachable nodes
   * before anyone can be dialled back; the rest prove themselves */
  ns.mode = nh->seed || s->c->nat_force_server ? NAT_MODE_SERVER : NAT_MODE_AUTO;
  ns.vouch = s->c->nat_vouch;
  dht_mem mem = {&s->nat_alloc, nat_mem_malloc, nat_mem_realloc, nat_mem_free};
  s->nat_alloc = 0;
  if (nat_svc_new(&s->nat[i], s->h[i].e, &ns, cb, &mem, s->now) != 0)
    return -1;
  s->res->natsvc.svc_bytes = s->nat_alloc;
  if (sim_net_nat_type(s->net, i) != SIM_NAT_PUBLIC && pm_start(s, i) != 0)
    return -1;
  nh->start_ms = s->now;
  nh->class_ms = -1;
  nh->mode_ms = s->now;
  nh->server = dht_is_server(s->h[i].e);
  nh->reach = NAT_REACH_UNKNOWN;
  nh->up = 1;
  return 0;
}

/* The host goes (cleanly: its port mappings are deleted): its counters
 * join the run's totals, its policy and service go before its engine. */
static void nat_stop(sim *s, int i, bool clean) {
  nat_svc *n = s->nat[i];
  if (!n)
    return;
  nat_drive(s, i);
  pm_stop(s, i, clean);
  nat_status st;
  nat_get_status(n, s->now, &st);
  sim_natsvc_stats *t = &s->res->natsvc;
  t->dials += st.dials;
  t->dials_ok += st.dials_ok;
  t->dials_failed += st.dials_failed;
  t->dials_inconclusive += st.dials_inconclusive;
  t->helped += st.helped;
  t->probes += st.probes_sent;
  t->vouch_asked += st.vouch_asked;
  t->vouch_ok += st.vouch_ok;
  t->vouch_failed += st.vouch_failed;
  t->vouch_fallback += st.vouch_fallback;
  t->checks += st.checks_sent;
  t->checks_main += st.checks_main_socket;
  nat_svc_del(n);
  s->nat[i] = NULL;
}

typedef struct nid_ix {
  uint64_t nid64;
  int host;
} nid_ix;

static int nid_cmp(const void *a, const void *b) {
  const nid_ix *x = a, *y = b;
  return x->nid64 < y->nid64 ? -1 : x->nid64 > y->nid64;
}

/* Whether a datagram from a stranger reaches host i: the box model's truth.
 * A full cone lets anyone in through a live mapping (and a DHT host keeps
 * its mapping alive); the filtering boxes let in only whom the host sent
 * to, but an upnp box also whomever reaches a live forward of the host's
 * main port.  A host that left is judged as it was when it left (a clean
 * stop deletes the forward: its stale entries are churn's, not NAT's). */
static bool stranger_reaches(const sim *s, int i) {
  int t = sim_net_nat_type(s->net, i);
  if (t == SIM_NAT_UPNP && !s->h[i].up)
    return s->res->natsvc.hosts[i].mapped;
  return t == SIM_NAT_PUBLIC || t == SIM_NAT_FULL ||
         (t == SIM_NAT_UPNP &&
          sim_net_nat_forwarded(s->net, i, sim_net_addr(s->net, i).port, s->now));
}

/* Every routing-table entry of every host up, by whether its host is
 * reachable from a stranger: at the end into the run's totals, and at every
 * sample.  Reads only: the trace is untouched. */
static void nat_tables(sim *s, uint64_t *entries, uint64_t *unreachable, uint64_t *unknown) {
  nid_ix *ix = malloc((size_t)s->nh * sizeof *ix);
  int cap = 8192;
  dht_peer_info *pi = malloc((size_t)cap * sizeof *pi);
  if (!ix || !pi) {
    free(ix);
    free(pi);
    return;
  }
  for (int i = 0; i < s->nh; i++)
    ix[i] = (nid_ix){s->h[i].nid64, i};
  qsort(ix, (size_t)s->nh, sizeof *ix, nid_cmp);
  for (int i = 0; i < s->nh; i++) {
    if (!s->h[i].up)
      continue;
    int n = dht_table(s->h[i].e, pi, cap);
    for (int k = 0; k < n; k++) {
      uint64_t v = 0;
      for (int b = 0; b < 8; b++)
        v = v << 8 | pi[k].c.id[b];
      nid_ix key = {v, 0};
      nid_ix *f = bsearch(&key, ix, (size_t)s->nh, sizeof *ix, nid_cmp);
      int who = -1;
      if (f) { /* IDs sharing 64 bits: walk the run of equal prefixes */
        while (f > ix && f[-1].nid64 == v)
          f--;
        for (; f < ix + s->nh && f->nid64 == v && who < 0; f++)
          if (!memcmp(s->h[f->host].nid, pi[k].c.id, DHT_ID_LEN))
            who = f->host;
      }
      (*entries)++;
      if (who < 0)
        (*unknown)++;
      else if (!stranger_reaches(s, who))
        (*unreachable)++;
    }
  }
  free(ix);
  free(pi);
}

static void drive(sim *s, int i) {
  host *h = &s->h[i];
  if (!h->up)
    return;
  uint8_t buf[DHT_MAX_PKT];
  dht_path to;
  dht_pkt_info pi;
  dht_ssize n;
  dht_event ev;
  /* the drive loop of dht.h: datagrams, then one event, until neither is left */
  do {
    while ((n = dht_write_pkt(h->e, &to, &pi, buf, sizeof buf, s->now)) > 0)
      send_dgram(s, i, &to, &pi, buf, (size_t)n);
  } while (dht_poll_event(h->e, &ev) == 0 && (on_event(s, i, &ev), true));
  if (s->wl) {
    s->wl->drain(s->wl_st, i, s->now);
    /* the workload's events may have sent something */
    while ((n = dht_write_pkt(h->e, &to, &pi, buf, sizeof buf, s->now)) > 0)
      send_dgram(s, i, &to, &pi, buf, (size_t)n);
  }
  if (s->nat)
    nat_drive(s, i);
  dht_ts exp = dht_get_expiry(h->e);
  if (exp < s->now)
    exp = s->now;
  if (exp != h->timer_at) {
    h->timer_at = exp;
    h->gen++;
    if (exp != DHT_TS_NEVER)
      schedule(s, exp, EV_TIMER, i, h->gen, NULL);
  }
}

/* Whether host i can be picked: online, joined, not skip, and public when
 * public_only. */
static bool pickable(const sim *s, int i, int skip, bool public_only) {
  return s->h[i].up && s->h[i].joined && i != skip &&
         (!public_only || sim_net_nat_type(s->net, i) == SIM_NAT_PUBLIC);
}

static int random_online_of(sim *s, sim_rng *r, int skip, bool public_only) {
  if (s->online <= (skip >= 0 && s->h[skip].up ? 1 : 0))
    return -1;
  /* random probes first (cheap when most hosts are up), then a scan from a
   * random start, so a sparse network still finds its few online hosts */
  for (int tries = 0; tries < 64; tries++) {
    int i = (int)sim_rng_below(r, (uint64_t)s->nh);
    if (pickable(s, i, skip, public_only))
      return i;
  }
  int start = (int)sim_rng_below(r, (uint64_t)s->nh);
  for (int k = 0; k < s->nh; k++) {
    int i = (start + k) % s->nh;
    if (pickable(s, i, skip, public_only))
      return i;
  }
  return -1;
}

static int random_online(sim *s, sim_rng *r, int skip) {
  return random_online_of(s, r, skip, false);
}

/* Up to max distinct online, joined seeds other than i, drawn from the
 * churn stream. */
static size_t seed_peers(sim *s, int i, dht_peer *peers, int max) {
  int cand[64], nc = 0;
  for (int k = 0; k < s->nat_seeds; k++) {
    int j = s->nat_seed_of[k];
    if (j != i && s->h[j].up && s->h[j].joined)
      cand[nc++] = j;
  }
  size_t np = 0;
  while (nc > 0 && (int)np < max) {
    int k = (int)sim_rng_below(&s->rng_churn, (uint64_t)nc);
    int j = cand[k];
    cand[k] = cand[--nc];
    memcpy(peers[np].pk, s->h[j].id.pk, DHT_PK_LEN);
    peers[np].addr = sim_net_addr(s->net, j);
    np++;
  }
  return np;
}

static int host_start(sim *s, int i) {
  host *h = &s->h[i];
  dht_callbacks cb = {h->rng_state, host_rand, NULL};
  h->incarnation++;
  /* a new nonce prefix per incarnation: the random stream moves on */
  int rv = dht_new(&h->e, &h->id, &s->set, &cb, NULL, s->now);
  if (rv) {
    snprintf(s->err, s->errlen, "cannot create engine %d: %s", i, dht_strerror(rv));
    return -1;
  }
  if (s->nat && nat_start(s, i, &cb) != 0) {
    snprintf(s->err, s->errlen, "cannot create the NAT service of host %d", i);
    return -1;
  }
  if (s->wl && s->wl->host_up(s->wl_st, i, h->e, &h->id, &cb, s->now) != 0) {
    snprintf(s->err, s->errlen, "cannot create the mailbox service of host %d", i);
    return -1;
  }
  h->up = 1;
  h->joined = 0;
  h->timer_at = -1;
  sim_net_host_up(s->net, i);
  s->online++;
  dht_peer peers[16];
  size_t np = 0;
  if (h->snap) {
    dht_load_table(h->e, h->snap, h->snap_len, s->now);
    free(h->snap);
    h->snap = NULL;
    h->snap_len = 0;
  }
  /* bootstrap peers are public hosts once there are NATed ones, as a real
   * bootstrap list is: a NATed host's own address is private (a run without
   * boxes picks, and draws, as it always did) */
  bool public_only = s->c->nat_mix[SIM_NAT_PUBLIC] < 1;
  /* with the NAT service, the bootstrap list is the seeds (the servers by
   * declaration) once one is up, as a real list names reachable nodes */
  if (s->nat)
    np = seed_peers(s, i, peers, s->c->bootstrap_peers < 16 ? s->c->bootstrap_peers : 16);
  bool seeded = np > 0;
  for (int k = 0; !seeded && k < s->c->bootstrap_peers && k < 16; k++) {
    int j = random_online_of(s, &s->rng_churn, i, public_only);
    if (j < 0)
      break;
    memcpy(peers[np].pk, s->h[j].id.pk, DHT_PK_LEN);
    peers[np].addr = sim_net_addr(s->net, j);
    np++;
  }
  size_t op = op_new(s, SIM_OP_BOOTSTRAP, i);
  h->boot_cmd = dht_bootstrap(h->e, peers, np, s->now);
  if (h->boot_cmd > 0)
    pend_add(s, i, h->boot_cmd, op, NULL, -1);
  else
    op_done(s, op, (int)h->boot_cmd, false);
  drive(s, i);
  return 0;
}

static void host_stop(sim *s, int i, bool keep_state) {
  host *h = &s->h[i];
  if (!h->up)
    return;
  if (keep_state) {
    size_t need = 0;
    uint8_t tiny[1];
    dht_save_table(h->e, tiny, 0, &need);
    h->snap = malloc(need);
    if (h->snap && dht_save_table(h->e, h->snap, need, NULL) > 0)
      h->snap_len = (uint32_t)need;
  }
  if (s->wl)
    s->wl->host_down(s->wl_st, i, keep_state);
  if (s->nat) {
    nat_stop(s, i, keep_state); /* a host that vanishes did not stop cleanly */
    s->res->natsvc.hosts[i].up = 0;
  }
  dht_del(h->e);
  h->e = NULL;
  h->up = 0;
  h->joined = 0;
  h->gen++;
  s->online--;
  /* its commands die with it */
  for (size_t k = 0; k < s->npend;) {
    if (s->pend[k].host == i) {
      op_done(s, s->pend[k].op, DHT_ERR_CANCELLED, false);
      s->pend[k] = s->pend[--s->npend];
    } else {
      k++;
    }
  }
}

/* ---- workloads and churn -------------------------------------------------- */

static dht_ts exp_gap(sim_rng *r, double rate_per_s) {
  double u = sim_rng_unit(r);
  return (dht_ts)ceil(-log(1 - u) / rate_per_s * 1000.0);
}

static void do_lookup(sim *s) {
  int i = random_online(s, &s->rng_work, -1);
  if (i < 0)
    return;
  uint8_t target[DHT_ID_LEN];
  sim_rng_bytes(&s->rng_work, target, sizeof target);
  size_t op = op_new(s, SIM_OP_LOOKUP, i);
  int64_t cmd = dht_find_node(s->h[i].e, target, s->now);
  if (cmd <= 0) {
    op_done(s, op, (int)cmd, false);
    return;
  }
  pend_add(s, i, cmd, op, target, -1);
  s->issued_lookups++;
  drive(s, i);
}

static void do_get(sim *s) {
  int i = random_online(s, &s->rng_work, -1), t = random_online(s, &s->rng_work, i);
  if (i < 0 || t < 0)
    return;
  size_t op = op_new(s, SIM_OP_GET, i);
  int64_t cmd = dht_get_record(s->h[i].e, s->h[t].nid, s->now);
  if (cmd <= 0) {
    op_done(s, op, (int)cmd, false);
    return;
  }
  pend_add(s, i, cmd, op, s->h[t].nid, t);
  drive(s, i);
}

static void do_put(sim *s) {
  int i = random_online(s, &s->rng_work, -1);
  if (i < 0)
    return;
  size_t op = op_new(s, SIM_OP_PUT, i);
  int64_t cmd = dht_put_record(s->h[i].e, s->now);
  if (cmd <= 0) {
    op_done(s, op, (int)cmd, false);
    return;
  }
  pend_add(s, i, cmd, op, NULL, -1);
  drive(s, i);
}

static bool churning(const sim *s) {
  return s->c->session.kind != SIM_DIST_NONE;
}

static void sample(sim *s) {
  sim_result *r = s->res;
  if (r->nsamples == r->asamples) {
    size_t na = r->asamples ? r->asamples * 2 : 256;
    sim_sample *ns = realloc(r->samples, na * sizeof *ns);
    if (!ns)
      exit(1);
    r->samples = ns;
    r->asamples = na;
  }
  s->cur.t_ms = s->now;
  s->cur.online = s->online;
  /* the walk costs ~0.2 us an entry (a minute of CPU over a 10,000-host
   * run if done every 10 s): once a simulated minute is enough for a curve */
  if (s->nat && s->now >= s->tbl_next) {
    uint64_t unknown = 0;
    nat_tables(s, &s->cur.tbl_entries, &s->cur.tbl_unreachable, &unknown);
    s->cur.has_tbl = true;
    s->tbl_next = s->now + TBL_SAMPLE_MS;
  }
  r->samples[r->nsamples++] = s->cur;
  memset(&s->cur, 0, sizeof s->cur);
}

static void run_script(sim *s, const sim_script *sc) {
  switch (sc->action) {
  case SIM_ACT_PARTITION:
    sim_net_partition(s->net, sc->arg, &s->rng_churn);
    break;
  case SIM_ACT_HEAL:
    sim_net_heal(s->net);
    break;
  case SIM_ACT_LEAVE: {
    int n = (int)llround(sc->arg * s->online);
    for (int k = 0; k < n; k++) {
      int i = random_online(s, &s->rng_churn, -1);
      if (i >= 0)
        host_stop(s, i, false);
    }
    break;
  }
  case SIM_ACT_JOIN:
    for (int k = 0; k < (int)sc->arg; k++) {
      int i = host_add(s);
      if (i < 0)
        exit(1);
      schedule(s, s->now, EV_JOIN, i, 0, NULL);
    }
    break;
  case SIM_ACT_LOOKUPS:
    for (int k = 0; k < (int)sc->arg; k++)
      do_lookup(s);
    break;
  }
}

static void hash_event(sim *s, const event *ev) {
  uint8_t rec[8 + 4 + 4 + 2];
  memcpy(rec, &ev->at, 8);
  memcpy(rec + 8, &ev->kind, 4);
  memcpy(rec + 12, &ev->host, 4);
  uint16_t len = ev->d ? ev->d->len : 0;
  memcpy(rec + 16, &len, 2);
  crypto_generichash_update(&s->trace, rec, sizeof rec);
}

static size_t rss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (size_t)ru.ru_maxrss;
}

static void progress(sim *s, dht_ts total) {
  static int last = -1;
  int pct = total > 0 ? (int)(100 * s->now / total) : 0;
  if (pct > 100)
    pct = 100;
  if (pct == last)
    return;
  last = pct;
  char bar[41];
  int fill = pct * 40 / 100;
  for (int i = 0; i < 40; i++)
    bar[i] = i < fill ? '#' : '.';
  bar[40] = 0;
  fprintf(stderr, "\r[%s] %3d%%  t=%llds  online %d  ops %zu ", bar, pct,
          (long long)(s->now / 1000), s->online, s->res->nops);
  if (pct == 100)
    fputc('\n', stderr);
}

/* ---- what the workload may ask of the run (sim_run_ops) ------------------ */

static void run_schedule(void *ctx, dht_ts at, int host_i, uint32_t arg) {
  schedule(ctx, at, EV_WORKLOAD, host_i, arg, NULL);
}

static void run_schedule_join(void *ctx, dht_ts at, int host_i, uint32_t gen) {
  schedule(ctx, at, EV_JOIN, host_i, gen, NULL);
}

static void run_leave(void *ctx, int host_i, bool keep) {
  host_stop(ctx, host_i, keep);
}

static void run_drive(void *ctx, int host_i) {
  drive(ctx, host_i);
}

static bool run_is_up(const void *ctx, int host_i) {
  const sim *s = ctx;
  return s->h[host_i].up;
}

static dht_addr run_address(const void *ctx, int host_i) {
  const sim *s = ctx;
  return sim_net_addr(s->net, host_i);
}

static const dht_identity *run_identity(const void *ctx, int host_i) {
  const sim *s = ctx;
  return &s->h[host_i].id;
}

static int run_connect(void *ctx, int i, const uint8_t *pk, const dht_introducer *intro, int n) {
  sim *s = ctx;
  if (!s->nat || !s->nat[i])
    return DHT_ERR_INVAL;
  return nat_connect(s->nat[i], pk, intro, n, s->now);
}

static sim_run_ops run_ops(sim *s) {
  sim_run_ops o = {
      .ctx = s,
      .schedule = run_schedule,
      .schedule_join = run_schedule_join,
      .leave = run_leave,
      .drive = run_drive,
      .is_up = run_is_up,
      .address = run_address,
      .identity = run_identity,
      .connect = run_connect,
  };
  return o;
}

/* The workload's say on churn (sim_workload_ops): without one, every churn
 * event applies and carries generation 0. */
static uint32_t churn_gen(const sim *s, int i) {
  return s->wl ? s->wl->churn_gen(s->wl_st, i) : 0;
}

static bool churn_join_ok(const sim *s, int i, uint32_t gen) {
  return !s->wl || s->wl->join_ok(s->wl_st, i, gen);
}

static bool churn_leave_ok(const sim *s, int i, uint32_t gen) {
  return !s->wl || s->wl->leave_ok(s->wl_st, i, gen);
}

int sim_run(const sim_config *c, sim_result *res, char *err, size_t errlen) {
  sim S;
  memset(&S, 0, sizeof S);
  memset(res, 0, sizeof *res);
  sim *s = &S;
  s->c = c;
  s->res = res;
  s->err = err;
  s->errlen = errlen;
  res->crypto = c->crypto;
  if (sim_net_new(&s->net, c, err, errlen) != 0) /* the network's stream is 0x3002 */
    return -1;
  sim_rng_init(&s->rng_work, c->seed, 0x3001);
  sim_rng_init(&s->rng_churn, c->seed, 0x3003);
  crypto_generichash_init(&s->trace, NULL, 0, 32);

  /* engine settings for many engines in one process: small caches */
  dht_settings_default(&s->set);
  s->set.k = c->k;
  s->set.replacement_cache = 4;
  s->set.key_cache = 128;
  s->set.cookie_cache = 32; /* also sizes the verified-peer cache; larger ones
                             * change no trace (docs/sim.md, Scale) */
  s->set.replay_window = 128;
  s->set.max_out_queue = 128;
  s->set.max_events = 64;
  s->set.rate_prefixes = 64;
  s->set.max_records = 256;
  /* proofs of address and amplification credit: a simulated host answers
   * within the call that received the request (the memory backend commits at
   * once), so the credit is spent before it could be evicted */
  s->set.proof_cache = 4;
  s->set.lookup_candidates = 3 * c->k;
  s->set.insecure_plaintext = !c->crypto;
  if (!c->crypto) {
    /* Without crypto the key cache only saves a BLAKE2b of the peer's key
     * (not a key agreement), and a replay filter guards nothing when nothing
     * is authenticated: smaller ones change no behaviour (the trace hash is
     * the same) and save memory per host (docs/sim.md, Scale). */
    s->set.key_cache = 32;
    s->set.replay_window = 0;
  }

  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < c->nodes; i++) {
    if (host_add(s) < 0) {
      snprintf(err, errlen, "out of memory for %d hosts", c->nodes);
      return -1;
    }
    schedule(s, c->nodes > 1 ? (dht_ts)((double)c->join_ms * i / (c->nodes - 1)) : 0, EV_JOIN, i, 0,
             NULL);
  }
  dht_ts work_start = c->join_ms + c->warmup_ms;
  s->end = c->join_ms + c->duration_ms;
  if (c->lookup_rate > 0)
    schedule(s, work_start + exp_gap(&s->rng_work, c->lookup_rate), EV_LOOKUP, -1, 0, NULL);
  if (c->get_rate > 0)
    schedule(s, work_start + exp_gap(&s->rng_work, c->get_rate), EV_GET, -1, 0, NULL);
  if (c->put_rate > 0)
    schedule(s, work_start + exp_gap(&s->rng_work, c->put_rate), EV_PUT, -1, 0, NULL);
  if (c->punch_rate > 0)
    schedule(s, work_start + exp_gap(&s->rng_work, c->punch_rate), EV_PUNCH, -1, 0, NULL);
  for (int k = 0; k < c->nscript; k++)
    schedule(s, c->script[k].at, EV_SCRIPT, k, 0, NULL);
  schedule(s, c->sample_ms, EV_SAMPLE, -1, 0, NULL);
  /* after the run's own first events: the workload's come after them */
  const sim_workload_ops *wl = sim_msg_workload();
  s->run_ops = run_ops(s);
  if (wl->start(&s->wl_st, c, &s->run_ops, res, work_start) != 0) {
    snprintf(err, errlen, "out of memory for the messaging workload");
    return -1;
  }
  s->wl = s->wl_st ? wl : NULL;

  int rv = 0;
  while (s->nheap) {
    event ev = pop(s);
    if (ev.at > s->end) {
      sim_net_dgram_free(s->net, ev.d);
      break;
    }
    s->now = ev.at;
    if (ev.kind == EV_TIMER &&
        (ev.host >= s->nh || !s->h[ev.host].up || ev.gen != s->h[ev.host].gen)) {
      continue; /* stale */
    }
    if (ev.kind == EV_GW && (!s->h[ev.host].up || !s->pm[ev.host] || !s->pm[ev.host]->pm ||
                             ev.gen != s->pm[ev.host]->gen))
      continue; /* stale: only a port-mapping policy schedules these */
    res->events++;
    hash_event(s, &ev);
    switch (ev.kind) {
    case EV_DELIVER: {
      host *h = &s->h[ev.host];
      if (h->up && sim_net_arrives(s->net, ev.d, ev.host, s->now)) {
        res->packets++;
        s->cur.packets++;
        dht_path path = {.local = ev.d->local, .remote = ev.d->from};
        if (dht_read_pkt(h->e, &path, ev.d->data, ev.d->len, s->now) <= DHT_ERR_FATAL) {
          snprintf(err, errlen, "engine %d failed", ev.host);
          rv = -1;
        }
        drive(s, ev.host);
      } else {
        res->lost++;
        s->cur.dropped++;
      }
      sim_net_dgram_free(s->net, ev.d);
      break;
    }
    case EV_TIMER:
      s->h[ev.host].timer_at = -1;
      if (dht_handle_expiry(s->h[ev.host].e, s->now) <= DHT_ERR_FATAL) {
        snprintf(err, errlen, "engine %d failed", ev.host);
        rv = -1;
      }
      drive(s, ev.host);
      break;
    case EV_JOIN:
      if (!churn_join_ok(s, ev.host, ev.gen))
        break;
      if (!s->h[ev.host].up && host_start(s, ev.host) != 0)
        rv = -1;
      if (rv == 0 && churning(s)) {
        dht_ts from = s->now > work_start ? s->now : work_start;
        schedule(s, from + sim_dist_draw(&c->session, &s->rng_churn), EV_LEAVE, ev.host,
                 churn_gen(s, ev.host), NULL);
      }
      break;
    case EV_LEAVE:
      if (s->h[ev.host].up && churn_leave_ok(s, ev.host, ev.gen)) {
        bool vanish = sim_rng_unit(&s->rng_churn) < c->vanish;
        host_stop(s, ev.host, !vanish);
        schedule(s, s->now + sim_dist_draw(&c->downtime, &s->rng_churn), EV_JOIN, ev.host,
                 churn_gen(s, ev.host), NULL);
      }
      break;
    case EV_GW:
      pm_expiry(s, ev.host);
      drive(s, ev.host);
      break;
    case EV_WORKLOAD:
      if (s->wl) /* defensive: only a workload schedules these */
        s->wl->event(s->wl_st, ev.host, ev.gen, s->now);
      break;
    case EV_PUNCH:
      if (!c->max_punches || s->issued_punches < (uint64_t)c->max_punches) {
        do_punch(s);
        schedule(s, s->now + exp_gap(&s->rng_work, c->punch_rate), EV_PUNCH, -1, 0, NULL);
      }
      break;
    case EV_LOOKUP:
      if (!c->max_lookups || s->issued_lookups < (uint64_t)c->max_lookups) {
        do_lookup(s);
        schedule(s, s->now + exp_gap(&s->rng_work, c->lookup_rate), EV_LOOKUP, -1, 0, NULL);
      }
      break;
    case EV_GET:
      do_get(s);
      schedule(s, s->now + exp_gap(&s->rng_work, c->get_rate), EV_GET, -1, 0, NULL);
      break;
    case EV_PUT:
      do_put(s);
      schedule(s, s->now + exp_gap(&s->rng_work, c->put_rate), EV_PUT, -1, 0, NULL);
      break;
    case EV_SCRIPT:
      run_script(s, &c->script[ev.host]);
      break;
    case EV_SAMPLE:
      sample(s);
      schedule(s, s->now + c->sample_ms, EV_SAMPLE, -1, 0, NULL);
      if (c->progress)
        progress(s, s->end);
      break;
    }
    if (rv)
      break;
  }
  if (c->progress) {
    s->now = s->end;
    progress(s, s->end);
  }
  /* ops still open at the end did not complete */
  for (size_t k = 0; k < s->npend; k++)
    res->ops[s->pend[k].op].status = DHT_ERR_TIMEOUT;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  res->wall_s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  res->peak_rss_kb = rss_kb();
  crypto_generichash_final(&s->trace, res->trace_hash, sizeof res->trace_hash);
  sim_net_nat_stats(s->net, &res->nat);
  if (s->nat) {
    sim_natsvc_stats *t = &s->res->natsvc;
    nat_tables(s, &t->entries, &t->entries_unreachable, &t->entries_unknown);
    for (int i = 0; i < s->nh; i++)
      if (s->h[i].up)
        nat_stop(s, i, false);
    for (int i = 0; i < s->nh; i++)
      free(s->pm[i]);
  }

  while (s->nheap) {
    event ev = pop(s);
    sim_net_dgram_free(s->net, ev.d);
  }
  free(s->heap);
  if (s->wl)
    s->wl->stop(s->wl_st);
  for (int i = 0; i < s->nh; i++) {
    dht_del(s->h[i].e);
    free(s->h[i].snap);
  }
  free(s->h);
  free(s->nat);
  free(s->pm);
  free(s->pend);
  sim_net_del(s->net);
  return rv;
}

void sim_result_free(sim_result *res) {
  free(res->punches);
  free(res->msgs);
  free(res->ops);
  free(res->samples);
  free(res->tx_per_host);
  free(res->natsvc.hosts);
  memset(res, 0, sizeof *res);
}

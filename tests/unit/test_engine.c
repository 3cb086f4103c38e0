/*
 * test_engine.c - the engine through its public API (dht.h), with engines
 * wired together by hand on a counter clock and with hand-crafted peers.
 *
 * The harness below is a small network of engines (a FIFO of datagrams with
 * a fixed latency, a counter clock, per-node settings, nodes that can go down
 * or be recreated from a snapshot) and "fakes": identities that are not
 * engines but seal, open and decode datagrams with dht_box and the message
 * codec, so a test can say exactly what a peer sends and read exactly what
 * the engine answers.  netsim cannot route to a peer that is not one of its
 * engines, nor recreate one, hence this harness.
 *
 * Covered:
 *   - PING round trip: DHT_EV_PING with the RTT and the address the peer saw,
 *     DHT_EV_ADDR_SEEN; a ping to a dead peer times out;
 *   - replies that do not match an outstanding request (other key, spoofed
 *     address, wrong type, wrong txid, duplicate) -> drop_unknown_txid;
 *   - every drop counter of dht_stats reached and counted exactly once for
 *     its cause, with no change to the routing table, the queues or events;
 *   - PUT: bad token, forged or unacceptable record, a valid one (then served
 *     by GET), a stale one;
 *   - anti-amplification: unproven requester limited to 3x, cookie or padding
 *     lifts the limit, a cookie is bound to address and key;
 *   - routing-table snapshots: round trip, and every corruption refused whole;
 *   - warm restart from a snapshot with no bootstrap peers;
 *   - services: registration rules, delivery, dht_svc_send both ways, timers;
 *   - dht_cancel of lookups and pings; lookups whose peers are all down;
 *     settings validation; client mode.
 *
 * Seeded: the seed is printed and ROOST_SEED=<n> replays a run.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "dht_int.h"
#include "drive1.h"
#include "testutil.h"

static uint64_t g_seed;

#define UNIX_MS 1700000000000ll /* wall clock at now == 0, for record expiry */

/* ---- addresses ------------------------------------------------------------ */

/* Node i: 10.0.i.1:4000 when even, [fd00:0:i::1]:4000 when odd. */
static dht_addr node_addr(int i) {
  if (i % 2 == 0)
    return tu_addr4(10, (uint8_t)(i >> 8), (uint8_t)i, 1, 4000);
  dht_addr x;
  memset(&x, 0, sizeof x);
  x.family = DHT_AF_INET6;
  x.ip[0] = 0xfd;
  x.ip[4] = (uint8_t)(i >> 8);
  x.ip[5] = (uint8_t)i;
  x.ip[15] = 1;
  x.port = 4000;
  return x;
}

/* ---- a small network of engines ------------------------------------------ */

#define MAXN 40

typedef struct mnode {
  dht *e;
  dht_identity id;
  uint8_t nid[DHT_ID_LEN];
  dht_addr addr;
  tu_rng rng;
  bool up;
} mnode;

typedef struct mpkt {
  dht_ts at;
  dht_addr from, to;
  uint16_t len;
  uint8_t data[DHT_MAX_PKT];
} mpkt;

typedef struct mev {
  int node;
  dht_ts at;
  dht_event ev; /* ev.u.lookup cleared: see res */
  bool has_res;
  dht_lookup_result res;
} mev;

typedef struct net {
  mnode n[MAXN];
  int count;
  dht_ts now, latency;
  mpkt *q; /* FIFO: at is non-decreasing since now is */
  size_t qhead, qlen, qcap;
  mev *ev;
  size_t nev, evcap;
  mpkt *out; /* datagrams to addresses that are not nodes */
  size_t nout, outcap;
} net;

static void *grow(void *p, size_t *cap, size_t need, size_t size) {
  if (need <= *cap)
    return p;
  size_t nc = *cap ? *cap * 2 : 64;
  while (nc < need)
    nc *= 2;
  p = realloc(p, nc * size);
  assert_non_null(p);
  *cap = nc;
  return p;
}

static void node_start(net *w, int i, const dht_settings *s, uint64_t stream) {
  mnode *nd = &w->n[i];
  tu_rng_init(&nd->rng, g_seed, stream);
  dht_callbacks cb = {&nd->rng, tu_rand_cb, NULL};
  assert_int_equal(dht_new(&nd->e, &nd->id, s, &cb, NULL, w->now), 0);
  dht_set_clock_offset(nd->e, UNIX_MS);
  nd->up = true;
}

/* Adds node i = w->count with settings s (NULL: defaults). */
static int net_add(net *w, const dht_settings *s) {
  int i = w->count++;
  assert_true(i < MAXN);
  mnode *nd = &w->n[i];
  memset(nd, 0, sizeof *nd);
  tu_identity(&nd->id, g_seed, 0x100 + (uint64_t)i);
  dht_id_from_pk(nd->nid, nd->id.pk);
  nd->addr = node_addr(i);
  node_start(w, i, s, 0x200 + (uint64_t)i);
  return i;
}

static void net_init(net *w, int n, const dht_settings *s) {
  memset(w, 0, sizeof *w);
  w->latency = 10;
  w->now = 1000;
  for (int i = 0; i < n; i++)
    net_add(w, s);
}

static void net_free(net *w) {
  for (int i = 0; i < w->count; i++)
    dht_del(w->n[i].e);
  free(w->q);
  free(w->ev);
  free(w->out);
  memset(w, 0, sizeof *w);
}

/* Recreates node i's engine: same identity and address, fresh state, and a
 * random stream of its own (a restarted process draws new nonce prefixes). */
static void net_restart(net *w, int i, const dht_settings *s, uint64_t stream) {
  dht_del(w->n[i].e);
  node_start(w, i, s, stream);
  /* forget the old engine's events: command ids start again at 1 */
  size_t k = 0;
  for (size_t j = 0; j < w->nev; j++)
    if (w->ev[j].node != i)
      w->ev[k++] = w->ev[j];
  w->nev = k;
}

static dht_peer net_peer(const net *w, int i) {
  dht_peer p;
  memcpy(p.pk, w->n[i].id.pk, DHT_PK_LEN);
  p.addr = w->n[i].addr;
  return p;
}

static void net_record(net *w, int i, const dht_event *ev) {
  w->ev = grow(w->ev, &w->evcap, w->nev + 1, sizeof *w->ev);
  mev *m = &w->ev[w->nev++];
  memset(m, 0, sizeof *m);
  m->node = i;
  m->at = w->now;
  m->ev = *ev;
  if (ev->type == DHT_EV_LOOKUP) {
    m->ev.u.lookup = NULL;
    if (ev->u.lookup) {
      m->has_res = true;
      m->res = *ev->u.lookup;
    }
  }
}

/* Moves node i's queued datagrams onto the wire and its events into w->ev. */
static void net_drain(net *w, int i) {
  mnode *nd = &w->n[i];
  for (;;) {
    w->q = grow(w->q, &w->qcap, w->qlen + 1, sizeof *w->q);
    mpkt *p = &w->q[w->qlen];
    dht_ssize n = d1_write(nd->e, &p->to, p->data, sizeof p->data, w->now);
    assert_true(n >= 0);
    if (n == 0)
      break;
    p->at = w->now + w->latency;
    p->from = nd->addr;
    p->len = (uint16_t)n;
    w->qlen++;
  }
  dht_event ev;
  while (dht_poll_event(nd->e, &ev) == 0)
    net_record(w, i, &ev);
}

static int node_at(const net *w, const dht_addr *a) {
  for (int i = 0; i < w->count; i++)
    if (dht_addr_eq(&w->n[i].addr, a))
      return i;
  return -1;
}

/* Runs until done(w, ctx) or the clock passes until.  Returns 1 if done. */
static int net_run(net *w, dht_ts until, bool (*done)(net *, const void *), const void *ctx) {
  for (;;) {
    for (int i = 0; i < w->count; i++)
      if (w->n[i].up)
        net_drain(w, i);
    if (done && done(w, ctx))
      return 1;
    dht_ts t = w->qhead < w->qlen ? w->q[w->qhead].at : DHT_TS_NEVER;
    for (int i = 0; i < w->count; i++) {
      if (!w->n[i].up)
        continue;
      dht_ts x = dht_get_expiry(w->n[i].e);
      if (x < t)
        t = x;
    }
    if (t > until) {
      w->now = until;
      return 0;
    }
    if (t > w->now)
      w->now = t;
    while (w->qhead < w->qlen && w->q[w->qhead].at <= w->now) {
      mpkt *p = &w->q[w->qhead++];
      int to = node_at(w, &p->to);
      if (to < 0) {
        w->out = grow(w->out, &w->outcap, w->nout + 1, sizeof *w->out);
        w->out[w->nout++] = *p;
      } else if (w->n[to].up) {
        assert_int_equal(d1_read(w->n[to].e, &p->from, p->data, p->len, w->now), 0);
      }
    }
    if (w->qhead == w->qlen)
      w->qhead = w->qlen = 0;
    for (int i = 0; i < w->count; i++)
      if (w->n[i].up && dht_get_expiry(w->n[i].e) <= w->now)
        assert_int_equal(dht_handle_expiry(w->n[i].e, w->now), 0);
  }
}

typedef struct evwant {
  int node, type;
  int64_t cmd; /* 0: any */
} evwant;

static mev *net_event(net *w, int node, int type, int64_t cmd) {
  for (size_t i = 0; i < w->nev; i++) {
    mev *m = &w->ev[i];
    if (m->node == node && m->ev.type == type && (cmd == 0 || m->ev.cmd == cmd))
      return m;
  }
  return NULL;
}

static int net_count(const net *w, int node, int type, int64_t cmd) {
  int n = 0;
  for (size_t i = 0; i < w->nev; i++) {
    const mev *m = &w->ev[i];
    if (m->node == node && m->ev.type == type && (cmd == 0 || m->ev.cmd == cmd))
      n++;
  }
  return n;
}

static bool has_event(net *w, const void *ctx) {
  const evwant *x = ctx;
  return net_event(w, x->node, x->type, x->cmd) != NULL;
}

/* Runs until node's event of type (and cmd) has arrived; returns it. */
static mev *net_wait(net *w, int node, int type, int64_t cmd, dht_ts limit) {
  evwant x = {node, type, cmd};
  assert_int_equal(net_run(w, w->now + limit, has_event, &x), 1);
  return net_event(w, node, type, cmd);
}

/* Node 0 starts the network; nodes [1, n) join through it one by one. */
static void net_join(net *w, int from, int to) {
  for (int i = from; i < to; i++) {
    dht_peer seed = net_peer(w, 0);
    int64_t cmd = dht_bootstrap(w->n[i].e, i ? &seed : NULL, i ? 1 : 0, w->now);
    assert_true(cmd > 0);
    mev *m = net_wait(w, i, DHT_EV_BOOTSTRAP, cmd, 60000);
    assert_int_equal(m->ev.status, 0);
  }
  net_run(w, w->now + 5000, NULL, NULL);
}

/* ---- brute force and table inspection --------------------------------- */

/* The k up nodes other than skip closest to target, closest first. */
static int true_closest(const net *w, const uint8_t target[DHT_ID_LEN], int skip, int *out, int k) {
  int n = 0;
  for (int i = 0; i < w->count; i++) {
    if (i == skip || !w->n[i].up)
      continue;
    int pos = n;
    while (pos > 0 && dht_id_cmp_dist(w->n[i].nid, w->n[out[pos - 1]].nid, target) < 0)
      pos--;
    if (pos >= k)
      continue;
    int last = n < k ? n : k - 1;
    memmove(&out[pos + 1], &out[pos], (size_t)(last - pos) * sizeof out[0]);
    out[pos] = i;
    if (n < k)
      n++;
  }
  return n;
}

static void assert_true_closest(const net *w, const dht_lookup_result *res, int self, int k) {
  int truth[DHT_K_MAX];
  int n = true_closest(w, res->target, self, truth, k);
  assert_int_equal(res->ncontacts, n);
  for (int i = 0; i < n; i++) {
    assert_memory_equal(res->contacts[i].id, w->n[truth[i]].nid, DHT_ID_LEN);
    assert_memory_equal(res->contacts[i].pk, w->n[truth[i]].id.pk, DHT_PK_LEN);
    assert_true(dht_addr_eq(&res->contacts[i].addr, &w->n[truth[i]].addr));
  }
}

#define SNAP_MAX 16384

typedef struct snap_ent {
  uint8_t pk[DHT_PK_LEN];
  dht_addr addr;
} snap_ent;

static int snap_cmp(const void *a, const void *b) {
  return memcmp(a, b, DHT_PK_LEN);
}

/* The contacts of e's table (from its snapshot), sorted by key. */
static int table_of(const dht *e, snap_ent *out, int max) {
  static uint8_t buf[SNAP_MAX];
  size_t need = 0;
  dht_ssize len = dht_save_table(e, buf, sizeof buf, &need);
  assert_true(len > 0);
  assert_int_equal((size_t)len, need);
  assert_memory_equal(buf, "roostrt1", 8);
  uint32_t n = (uint32_t)buf[8] << 24 | (uint32_t)buf[9] << 16 | (uint32_t)buf[10] << 8 | buf[11];
  assert_true((int)n <= max);
  size_t p = 12;
  for (uint32_t i = 0; i < n; i++) {
    uint8_t al = buf[p];
    memcpy(out[i].pk, buf + p + 1, DHT_PK_LEN);
    assert_int_equal(dht_addr_from_wire(&out[i].addr, buf + p + 1 + DHT_PK_LEN, al), 0);
    p += 1 + DHT_PK_LEN + al;
  }
  assert_int_equal(p + 16, (size_t)len);
  qsort(out, n, sizeof *out, snap_cmp);
  dht_stats st;
  dht_get_stats(e, &st);
  assert_int_equal(st.rt_size, (int)n);
  return (int)n;
}

static bool table_has(const dht *e, const uint8_t pk[DHT_PK_LEN]) {
  static snap_ent t[2048];
  int n = table_of(e, t, 2048);
  for (int i = 0; i < n; i++)
    if (memcmp(t[i].pk, pk, DHT_PK_LEN) == 0)
      return true;
  return false;
}

/* ---- fakes: hand-crafted peers --------------------------------------- */

typedef struct fake {
  dht_identity id;
  dht_box box;
  dht_addr addr;
  uint8_t prefix[16];
  uint64_t ctr;
} fake;

static void fake_init_id(fake *f, const dht_identity *id, dht_addr addr) {
  memset(f, 0, sizeof *f);
  f->id = *id;
  f->addr = addr;
  /* a stream of its own: two fakes of one identity never repeat a nonce */
  static uint64_t stream = 0xfa4e0000u;
  uint8_t hkey[16];
  tu_rng r;
  tu_rng_init(&r, g_seed, stream++);
  tu_rng_bytes(&r, hkey, sizeof hkey);
  tu_rng_bytes(&r, f->prefix, sizeof f->prefix);
  assert_int_equal(dht_box_init(&f->box, id, 64, hkey, &dht_mem_libc), 0);
}

static void fake_init(fake *f, uint64_t idx, dht_addr addr) {
  dht_identity id;
  tu_identity(&id, g_seed, 0x900 + idx);
  fake_init_id(f, &id, addr);
}

static void fake_free(fake *f) {
  dht_box_free(&f->box, &dht_mem_libc);
}

static size_t fake_seal(fake *f, const uint8_t to[DHT_PK_LEN], const uint8_t *body, size_t len,
                        uint8_t out[DHT_MAX_PKT]) {
  uint8_t nonce[DHT_NONCE_LEN];
  memcpy(nonce, f->prefix, 16);
  uint64_t c = ++f->ctr;
  memcpy(nonce + 16, &c, 8);
  dht_ssize n = dht_box_seal(&f->box, to, nonce, body, len, out, DHT_MAX_PKT);
  assert_true(n > 0);
  return (size_t)n;
}

static size_t fake_msg(fake *f, const uint8_t to[DHT_PK_LEN], const dht_msg *m,
                       uint8_t out[DHT_MAX_PKT]) {
  uint8_t body[DHT_MAX_BODY];
  dht_ssize n = dht_msg_encode(m, body, sizeof body);
  assert_true(n > 0);
  return fake_seal(f, to, body, (size_t)n, out);
}

/* A received datagram, opened and decoded (m.record points into body). */
typedef struct got {
  dht_addr to;
  size_t pktlen, bodylen;
  int rc; /* of dht_msg_decode */
  uint8_t body[DHT_MAX_BODY];
  dht_msg m;
} got;

static void fake_open(fake *f, const uint8_t *pkt, size_t len, got *g) {
  assert_true(len >= DHT_OVERHEAD);
  assert_int_equal(pkt[0], DHT_VERSION);
  const uint8_t *k = dht_box_key(&f->box, pkt + 1);
  assert_non_null(k);
  dht_ssize n = dht_box_open(k, pkt, len, g->body, sizeof g->body);
  assert_true(n >= 0);
  g->pktlen = len;
  g->bodylen = (size_t)n;
  g->rc = dht_msg_decode(&g->m, g->body, (size_t)n);
}

/* Drains e's queue; every datagram must be for f.  Returns how many. */
static int collect(dht *e, fake *f, dht_ts now, got *g, int max) {
  int n = 0;
  for (;;) {
    uint8_t pkt[DHT_MAX_PKT];
    dht_addr to;
    dht_ssize len = d1_write(e, &to, pkt, sizeof pkt, now);
    assert_true(len >= 0);
    if (len == 0)
      return n;
    assert_true(dht_addr_eq(&to, &f->addr));
    assert_true(n < max);
    g[n].to = to;
    fake_open(f, pkt, (size_t)len, &g[n]);
    n++;
  }
}

/* Takes e's next datagram, which must be for f. */
static void take_one(dht *e, fake *f, dht_ts now, got *g) {
  uint8_t pkt[DHT_MAX_PKT];
  dht_addr to;
  dht_ssize len = d1_write(e, &to, pkt, sizeof pkt, now);
  assert_true(len > 0);
  assert_true(dht_addr_eq(&to, &f->addr));
  g->to = to;
  fake_open(f, pkt, (size_t)len, g);
  assert_int_equal(g->rc, 0);
}

/* The one message of the given type that e sends f (others are ignored). */
static got *reply_of(dht *e, fake *f, dht_ts now, uint8_t type) {
  static got g[8];
  int n = collect(e, f, now, g, 8);
  got *found = NULL;
  for (int i = 0; i < n; i++) {
    assert_int_equal(g[i].rc, 0);
    if (g[i].m.type == type) {
      assert_null(found);
      found = &g[i];
    }
  }
  assert_non_null(found);
  return found;
}

/* A body [type, txid, "x" x extra] for services and unknown types. */
static size_t body_of(uint8_t *buf, size_t cap, uint64_t type, uint64_t txid, int extra) {
  dht_wire_w w;
  dht_wire_w_init(&w, buf, cap);
  dht_wire_w_array(&w, (uint32_t)(2 + extra));
  dht_wire_w_uint(&w, type);
  dht_wire_w_uint(&w, txid);
  for (int i = 0; i < extra; i++)
    dht_wire_w_bin(&w, (const uint8_t *)"x", 1);
  assert_int_equal(w.err, 0);
  return w.len;
}

static size_t ping_of(fake *f, const uint8_t to[DHT_PK_LEN], uint32_t txid, uint8_t flags,
                      uint8_t out[DHT_MAX_PKT]) {
  dht_msg m;
  memset(&m, 0, sizeof m);
  m.type = DHT_MSG_PING;
  m.txid = txid;
  m.flags = flags;
  return fake_msg(f, to, &m, out);
}

/* ---- drop accounting ------------------------------------------------------ */

#define DROP(f)                                                                                    \
  { #f, offsetof(dht_stats, f) }
static const struct {
  const char *name;
  size_t off;
} drops[] = {
    DROP(drop_ratelimit),  DROP(drop_size),         DROP(drop_version),      DROP(drop_relay),
    DROP(drop_self),       DROP(drop_badkey),       DROP(drop_decrypt),      DROP(drop_replay),
    DROP(drop_malformed),  DROP(drop_unknown_type), DROP(drop_unknown_txid), DROP(drop_bad_token),
    DROP(drop_bad_record), DROP(drop_out_full),     DROP(drop_event_full),
};
#define NDROPS (sizeof drops / sizeof drops[0])

static uint64_t stat_at(const dht_stats *s, size_t off) {
  uint64_t v;
  memcpy(&v, (const char *)s + off, sizeof v);
  return v;
}

/* Feeds one datagram to e and checks that exactly the counter at `off` went
 * up by one and that nothing else moved: no request or reply handled,
 * nothing queued, no event, the routing table unchanged. */
static void expect_drop(dht *e, const dht_addr *from, const uint8_t *pkt, size_t len, dht_ts now,
                        size_t off) {
  static uint8_t t0[SNAP_MAX], t1[SNAP_MAX];
  dht_stats a, b;
  dht_get_stats(e, &a);
  dht_ssize n0 = dht_save_table(e, t0, sizeof t0, NULL);
  /* a private copy of exactly len bytes, so ASan sees any overread */
  uint8_t *copy = test_malloc(len ? len : 1);
  memcpy(copy, pkt, len);
  assert_int_equal(d1_read(e, from, copy, len, now), 0);
  test_free(copy);
  dht_get_stats(e, &b);
  for (size_t i = 0; i < NDROPS; i++) {
    uint64_t want = stat_at(&a, drops[i].off) + (drops[i].off == off ? 1 : 0);
    if (stat_at(&b, drops[i].off) != want)
      fail_msg("%s: %llu, want %llu", drops[i].name, (unsigned long long)stat_at(&b, drops[i].off),
               (unsigned long long)want);
  }
  assert_int_equal(b.rx_packets, a.rx_packets + 1);
  assert_int_equal(b.requests_in, a.requests_in);
  assert_int_equal(b.replies_in, a.replies_in);
  assert_int_equal(b.out_queue, a.out_queue);
  assert_int_equal(b.events_queued, a.events_queued);
  assert_int_equal(b.rt_size, a.rt_size);
  assert_int_equal(b.records_stored, a.records_stored);
  dht_ssize n1 = dht_save_table(e, t1, sizeof t1, NULL);
  assert_int_equal(n0, n1);
  assert_memory_equal(t0, t1, (size_t)n0);
}

#define OFF(f) offsetof(dht_stats, f)

/* ---- PING --------------------------------------------------------------- */

static void test_ping_roundtrip(void **state) {
  (void)state;
  net w;
  net_init(&w, 3, NULL);
  /* A sits behind a NAT: B sees it at an address A cannot know */
  w.n[0].addr = tu_addr4(203, 0, 113, 7, 6000);
  dht *a = w.n[0].e;
  dht_peer pb = net_peer(&w, 1);
  dht_ts t0 = w.now;
  int64_t cmd = dht_ping(a, &pb, t0);
  assert_true(cmd > 0);
  /* a buffer smaller than a datagram is refused and the datagram kept */
  uint8_t small[100];
  dht_addr to;
  assert_int_equal(d1_write(a, &to, small, sizeof small, t0), DHT_ERR_NOBUF);
  dht_stats st;
  dht_get_stats(a, &st);
  assert_int_equal(st.out_queue, 1);

  mev *m = net_wait(&w, 0, DHT_EV_PING, cmd, 10000);
  assert_int_equal(m->ev.status, 0);
  assert_int_equal(m->ev.cmd, cmd);
  assert_int_equal(m->ev.u.ping.rtt_ms, 2 * w.latency);
  assert_int_equal(m->at, t0 + 2 * w.latency);
  assert_true(dht_addr_eq(&m->ev.u.ping.seen_as, &w.n[0].addr));
  assert_memory_equal(m->ev.u.ping.id, w.n[1].nid, DHT_ID_LEN);
  mev *s = net_event(&w, 0, DHT_EV_ADDR_SEEN, 0);
  assert_non_null(s);
  assert_true(s < m); /* reported before the ping's own event */
  assert_int_equal(s->ev.cmd, 0);
  assert_int_equal(s->ev.status, 0);
  assert_true(dht_addr_eq(&s->ev.u.seen.seen_as, &w.n[0].addr));
  assert_true(dht_addr_eq(&s->ev.u.seen.reporter, &w.n[1].addr));
  assert_memory_equal(s->ev.u.seen.reporter_id, w.n[1].nid, DHT_ID_LEN);
  assert_false(s->ev.u.seen.stranger); /* A chose to ask B */

  net_run(&w, w.now + 1000, NULL, NULL);
  assert_int_equal(net_count(&w, 0, DHT_EV_PING, 0), 1);
  /* every PONG A gets reports it (B's also answers A's verification ping
   * when the two verify each other): always A's address, from B */
  int seen = 0;
  for (size_t i = 0; i < w.nev; i++) {
    if (w.ev[i].node != 0 || w.ev[i].ev.type != DHT_EV_ADDR_SEEN)
      continue;
    seen++;
    assert_true(dht_addr_eq(&w.ev[i].ev.u.seen.seen_as, &w.n[0].addr));
    assert_true(dht_addr_eq(&w.ev[i].ev.u.seen.reporter, &w.n[1].addr));
  }
  assert_true(seen >= 1 && seen <= 2);
  /* B verified A with a ping of its own (A said it is a server): B learns
   * how A sees it, but gets no DHT_EV_PING, which it did not ask for */
  assert_int_equal(net_count(&w, 1, DHT_EV_PING, 0), 0);
  s = net_event(&w, 1, DHT_EV_ADDR_SEEN, 0);
  assert_non_null(s);
  assert_true(dht_addr_eq(&s->ev.u.seen.seen_as, &w.n[1].addr));
  assert_true(dht_addr_eq(&s->ev.u.seen.reporter, &w.n[0].addr));
  assert_true(s->ev.u.seen.stranger); /* A chose when B asked it */
  assert_true(table_has(a, w.n[1].id.pk));
  assert_true(table_has(w.n[1].e, w.n[0].id.pk));
  assert_false(table_has(a, w.n[2].id.pk));

  /* a peer that is down: DHT_EV_PING with DHT_ERR_TIMEOUT after the
   * ceiling for a peer of unknown RTT */
  w.n[2].up = false;
  dht_peer pc = net_peer(&w, 2);
  t0 = w.now;
  cmd = dht_ping(a, &pc, t0);
  assert_true(cmd > 0);
  m = net_wait(&w, 0, DHT_EV_PING, cmd, 10000);
  assert_int_equal(m->ev.status, DHT_ERR_TIMEOUT);
  assert_int_equal(m->at - t0, 2000);
  assert_memory_equal(m->ev.u.ping.id, w.n[2].nid, DHT_ID_LEN);
  dht_get_stats(a, &st);
  assert_int_equal(st.timeouts, 1);

  /* bad arguments */
  dht_peer bad = pb;
  bad.addr.family = DHT_AF_NONE;
  assert_int_equal(dht_ping(a, &bad, w.now), DHT_ERR_INVAL);
  assert_int_equal(dht_ping(a, NULL, w.now), DHT_ERR_INVAL);
  net_free(&w);
}

/* Replies that do not answer an outstanding request of ours. */
static void test_reply_mismatch(void **state) {
  (void)state;
  net w;
  net_init(&w, 1, NULL);
  dht *a = w.n[0].e;
  const uint8_t *apk = w.n[0].id.pk;
  dht_ts now = w.now;
  fake fb, fc;
  fake_init(&fb, 1, tu_addr4(192, 0, 2, 10, 4000));    /* B: we ping it */
  fake_init(&fc, 2, tu_addr4(198, 51, 100, 20, 4000)); /* C: nobody asked it */
  dht_peer pb;
  memcpy(pb.pk, fb.id.pk, DHT_PK_LEN);
  pb.addr = fb.addr;
  int64_t cmd = dht_ping(a, &pb, now);
  assert_true(cmd > 0);
  got *req = reply_of(a, &fb, now, DHT_MSG_PING);
  uint32_t txid = req->m.txid;
  assert_true(req->m.flags & DHT_MSGF_SERVER);

  dht_msg pong;
  memset(&pong, 0, sizeof pong);
  pong.type = DHT_MSG_PONG;
  pong.txid = txid;
  pong.seen = tu_addr4(203, 0, 113, 99, 1234);
  uint8_t pkt[DHT_MAX_PKT];
  size_t len;
  /* another key, from its own address and from B's */
  len = fake_msg(&fc, apk, &pong, pkt);
  expect_drop(a, &fc.addr, pkt, len, now + 1, OFF(drop_unknown_txid));
  len = fake_msg(&fc, apk, &pong, pkt);
  expect_drop(a, &fb.addr, pkt, len, now + 2, OFF(drop_unknown_txid));
  /* B's key, the txid, but not the type that answers a PING */
  dht_msg other;
  memset(&other, 0, sizeof other);
  other.type = DHT_MSG_NODES;
  other.txid = txid;
  other.token_len = DHT_TOKEN_LEN;
  len = fake_msg(&fb, apk, &other, pkt);
  expect_drop(a, &fb.addr, pkt, len, now + 3, OFF(drop_unknown_txid));
  memset(&other, 0, sizeof other);
  other.type = DHT_MSG_ACK;
  other.txid = txid;
  len = fake_msg(&fb, apk, &other, pkt);
  expect_drop(a, &fb.addr, pkt, len, now + 4, OFF(drop_unknown_txid));
  /* B's key, another txid */
  pong.txid = txid + 1;
  len = fake_msg(&fb, apk, &pong, pkt);
  expect_drop(a, &fb.addr, pkt, len, now + 5, OFF(drop_unknown_txid));
  dht_event ev;
  assert_int_equal(dht_poll_event(a, &ev), DHT_ERR_NOTFOUND);

  /* the real answer still works */
  pong.txid = txid;
  len = fake_msg(&fb, apk, &pong, pkt);
  assert_int_equal(d1_read(a, &fb.addr, pkt, len, now + 30), 0);
  assert_int_equal(dht_poll_event(a, &ev), 0);
  assert_int_equal(ev.type, DHT_EV_ADDR_SEEN);
  assert_true(dht_addr_eq(&ev.u.seen.seen_as, &pong.seen));
  assert_int_equal(dht_poll_event(a, &ev), 0);
  assert_int_equal(ev.type, DHT_EV_PING);
  assert_int_equal(ev.cmd, cmd);
  assert_int_equal(ev.status, 0);
  assert_int_equal(ev.u.ping.rtt_ms, 30);
  assert_true(dht_addr_eq(&ev.u.ping.seen_as, &pong.seen));
  assert_int_equal(dht_poll_event(a, &ev), DHT_ERR_NOTFOUND);
  assert_true(table_has(a, fb.id.pk));
  /* answered once: a second answer (a new datagram) matches nothing */
  len = fake_msg(&fb, apk, &pong, pkt);
  expect_drop(a, &fb.addr, pkt, len, now + 40, OFF(drop_unknown_txid));
  dht_stats st;
  dht_get_stats(a, &st);
  assert_int_equal(st.drop_unknown_txid, 6);
  assert_int_equal(st.replies_in, 1);
  fake_free(&fb);
  fake_free(&fc);
  net_free(&w);
}

/* ---- every drop counter ------------------------------------------------------ */

static void test_drop_counters(void **state) {
  (void)state;
  net w;
  net_init(&w, 2, NULL);
  dht *a = w.n[0].e;
  const uint8_t *apk = w.n[0].id.pk;
  /* A knows B, so that there is a table to leave alone */
  dht_peer pb = net_peer(&w, 1);
  mev *m = net_wait(&w, 0, DHT_EV_PING, dht_ping(a, &pb, w.now), 10000);
  assert_int_equal(m->ev.status, 0);
  net_run(&w, w.now + 100, NULL, NULL);
  dht_stats st;
  dht_get_stats(a, &st);
  assert_int_equal(st.rt_size, 1);
  dht_ts now = w.now;

  fake f;
  fake_init(&f, 1, tu_addr4(198, 51, 100, 7, 5555));
  static uint8_t pkt[4096];
  uint8_t good[DHT_MAX_PKT];
  size_t glen = ping_of(&f, apk, 77, 0, good);
  assert_int_equal(glen, DHT_OVERHEAD + 4);

  /* size: empty, one byte, one short of the smallest, one over the largest */
  expect_drop(a, &f.addr, good, 0, ++now, OFF(drop_size));
  expect_drop(a, &f.addr, good, 1, ++now, OFF(drop_size));
  expect_drop(a, &f.addr, good, DHT_OVERHEAD + 2, ++now, OFF(drop_size));
  memset(pkt, 0, sizeof pkt);
  memcpy(pkt, good, glen);
  expect_drop(a, &f.addr, pkt, DHT_MAX_PKT + 1, ++now, OFF(drop_size));
  expect_drop(a, &f.addr, pkt, sizeof pkt, ++now, OFF(drop_size));

  /* version (2, a datagram to relay, is dropped as one of no circuit) */
  static const uint8_t versions[] = {0, 3, 0xff};
  for (size_t i = 0; i < sizeof versions; i++) {
    memcpy(pkt, good, glen);
    pkt[0] = versions[i];
    expect_drop(a, &f.addr, pkt, glen, ++now, OFF(drop_version));
  }
  memcpy(pkt, good, glen);
  pkt[0] = DHT_VERSION_RELAY;
  expect_drop(a, &f.addr, pkt, glen, ++now, OFF(drop_relay));

  /* our own key in the header (sealed with our own identity) */
  fake me;
  fake_init_id(&me, &w.n[0].id, f.addr);
  size_t len = ping_of(&me, apk, 1, 0, pkt);
  expect_drop(a, &f.addr, pkt, len, ++now, OFF(drop_self));
  fake_free(&me);

  /* unusable sender keys: all zero, the identity point, an order-8 point */
  static const uint8_t o8[32] = {0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4,
                                 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6,
                                 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05};
  memcpy(pkt, good, glen);
  memset(pkt + 1, 0, DHT_PK_LEN);
  expect_drop(a, &f.addr, pkt, glen, ++now, OFF(drop_badkey));
  pkt[1] = 1;
  expect_drop(a, &f.addr, pkt, glen, ++now, OFF(drop_badkey));
  memcpy(pkt + 1, o8, 32);
  expect_drop(a, &f.addr, pkt, glen, ++now, OFF(drop_badkey));

  /* a flipped bit in the nonce, the ciphertext or the MAC */
  static const size_t pos[] = {1 + DHT_PK_LEN, DHT_HDR_LEN - 1, DHT_HDR_LEN, DHT_HDR_LEN + 2,
                               DHT_OVERHEAD + 3};
  for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++) {
    assert_true(pos[i] < glen);
    memcpy(pkt, good, glen);
    pkt[pos[i]] ^= 0x10;
    expect_drop(a, &f.addr, pkt, glen, ++now, OFF(drop_decrypt));
  }
  /* sealed for someone else */
  len = ping_of(&f, w.n[1].id.pk, 78, 0, pkt);
  expect_drop(a, &f.addr, pkt, len, ++now, OFF(drop_decrypt));

  /* none of that was remembered: the untouched datagram is handled, once */
  dht_stats before, after;
  dht_get_stats(a, &before);
  assert_int_equal(d1_read(a, &f.addr, good, glen, ++now), 0);
  dht_get_stats(a, &after);
  assert_int_equal(after.requests_in, before.requests_in + 1);
  assert_int_equal(after.out_queue, before.out_queue + 1);
  got *r = reply_of(a, &f, now, DHT_MSG_PONG);
  assert_int_equal(r->m.txid, 77);
  assert_true(dht_addr_eq(&r->m.seen, &f.addr));
  /* replayed: the same datagram again, also from elsewhere */
  expect_drop(a, &f.addr, good, glen, ++now, OFF(drop_replay));
  dht_addr elsewhere = tu_addr4(192, 0, 2, 200, 9);
  expect_drop(a, &elsewhere, good, glen, ++now, OFF(drop_replay));

  /* validly sealed bodies that are not msgpack, or not a message */
  uint8_t body[DHT_MAX_BODY];
  static const struct {
    size_t len;
    uint8_t b[8];
  } bad[] = {
      {3, {0xc1, 0xc1, 0xc1}},                   /* never-used msgpack byte */
      {3, {0x80, 0x00, 0x00}},                   /* a map */
      {3, {0x91, 0x01, 0x00}},                   /* [1] and a stray byte */
      {3, {0x92, 0x01, 0x05}},                   /* [1, 5]: PING with 2 elements */
      {5, {0x94, 0x01, 0x05, 0x00, 0x00}},       /* PING with 4 elements */
      {5, {0x93, 0x01, 0x05, 0x00, 0x00}},       /* PING and a trailing byte */
      {6, {0x93, 0x01, 0x05, 0xc4, 0x01, 0x78}}, /* PING with bin flags */
      {4, {0x93, 0xff, 0x05, 0x00}},             /* type -1 */
      {3, {0x93, 0x01, 0x05}},                   /* PING without its flags */
      {6, {0x93, 0x08, 0x05, 0xcd, 0x01, 0x00}}, /* ACK status 256 */
      {4, {0x93, 0x02, 0x05, 0xc0}},             /* PONG with nil address */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    len = fake_seal(&f, apk, bad[i].b, bad[i].len, pkt);
    expect_drop(a, &f.addr, pkt, len, ++now, OFF(drop_malformed));
  }
  {
    /* txid beyond 32 bits */
    static const uint8_t b[] = {0x93, 0x01, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0, 0x00};
    len = fake_seal(&f, apk, b, sizeof b, pkt);
    expect_drop(a, &f.addr, pkt, len, ++now, OFF(drop_malformed));
  }
  {
    /* FIND_NODE with a 31-byte target */
    dht_wire_w ww;
    dht_wire_w_init(&ww, body, sizeof body);
    dht_wire_w_array(&ww, 6);
    dht_wire_w_uint(&ww, DHT_MSG_FIND_NODE);
    dht_wire_w_uint(&ww, 9);
    dht_wire_w_uint(&ww, 0);
    dht_wire_w_bin(&ww, body, 0);
    dht_wire_w_bin(&ww, good, 31);
    dht_wire_w_bin(&ww, body, 0);
    assert_int_equal(ww.err, 0);
    len = fake_seal(&f, apk, body, ww.len, pkt);
    expect_drop(a, &f.addr, pkt, len, ++now, OFF(drop_malformed));
  }

  /* well-formed, but of a type nobody handles (no service registered) */
  static const uint64_t types[] = {0x42, 0x00, 0x09, 0x1f, 0x20, 0x7f, 0x80, 0xff};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
    for (int extra = 0; extra <= 1; extra++) {
      size_t bl = body_of(body, sizeof body, types[i], 5, extra);
      len = fake_seal(&f, apk, body, bl, pkt);
      expect_drop(a, &f.addr, pkt, len, ++now, OFF(drop_unknown_type));
    }
  }

  /* after all that, A still answers and still knows only B */
  len = ping_of(&f, apk, 79, 0, pkt);
  assert_int_equal(d1_read(a, &f.addr, pkt, len, ++now), 0);
  r = reply_of(a, &f, now, DHT_MSG_PONG);
  assert_int_equal(r->m.txid, 79);
  dht_get_stats(a, &st);
  assert_int_equal(st.rt_size, 1);
  assert_true(table_has(a, w.n[1].id.pk));
  assert_int_equal(st.drop_ratelimit, 0);
  assert_int_equal(st.drop_size, 5);
  assert_int_equal(st.drop_version, 3);
  assert_int_equal(st.drop_self, 1);
  assert_int_equal(st.drop_badkey, 3);
  assert_int_equal(st.drop_decrypt, 6);
  assert_int_equal(st.drop_replay, 2);
  assert_int_equal(st.drop_malformed, 13);
  assert_int_equal(st.drop_unknown_type, 16);
  fake_free(&f);
  net_free(&w);
}

static void test_drop_ratelimit(void **state) {
  (void)state;
  net w;
  net_init(&w, 1, NULL);
  dht *a = w.n[0].e;
  const uint8_t *apk = w.n[0].id.pk;
  dht_settings def;
  dht_settings_default(&def);
  fake f, g, h;
  fake_init(&f, 1, tu_addr4(198, 51, 100, 7, 5555));
  fake_init(&g, 2, tu_addr4(198, 51, 100, 200, 7000)); /* the same /24 */
  fake_init(&h, 3, tu_addr4(198, 51, 101, 9, 5555));   /* the next /24 */
  /* the clock stands still: no refill */
  dht_ts now = w.now;
  uint8_t junk[10] = {1};
  for (int i = 0; i < def.rate_burst; i++)
    assert_int_equal(d1_read(a, i % 2 ? &f.addr : &g.addr, junk, sizeof junk, now), 0);
  dht_stats st;
  dht_get_stats(a, &st);
  assert_int_equal(st.drop_size, def.rate_burst);
  assert_int_equal(st.drop_ratelimit, 0);
  /* over the burst, from either host of the /24: refused before anything
   * else is looked at, even a perfectly good request */
  uint8_t pf[DHT_MAX_PKT], pg[DHT_MAX_PKT], ph[DHT_MAX_PKT];
  size_t lf = ping_of(&f, apk, 1, 0, pf), lg = ping_of(&g, apk, 2, 0, pg);
  size_t lh = ping_of(&h, apk, 3, 0, ph);
  expect_drop(a, &f.addr, pf, lf, now, OFF(drop_ratelimit));
  expect_drop(a, &g.addr, pg, lg, now, OFF(drop_ratelimit));
  expect_drop(a, &f.addr, junk, sizeof junk, now, OFF(drop_ratelimit));
  /* another /24 has its own bucket */
  assert_int_equal(d1_read(a, &h.addr, ph, lh, now), 0);
  assert_int_equal(reply_of(a, &h, now, DHT_MSG_PONG)->m.txid, 3);
  /* 10 ms later, 4 tokens (400 pps): the refused datagram gets through (it
   * was not remembered as seen), then three more, then refusal again */
  dht_get_stats(a, &st);
  uint64_t req = st.requests_in, sz = st.drop_size;
  assert_int_equal(d1_read(a, &f.addr, pf, lf, now + 10), 0);
  assert_int_equal(reply_of(a, &f, now + 10, DHT_MSG_PONG)->m.txid, 1);
  for (int i = 0; i < 3; i++)
    assert_int_equal(d1_read(a, &g.addr, junk, sizeof junk, now + 10), 0);
  expect_drop(a, &g.addr, pg, lg, now + 10, OFF(drop_ratelimit));
  dht_get_stats(a, &st);
  assert_int_equal(st.requests_in, req + 1);
  assert_int_equal(st.drop_size, sz + 3);
  assert_int_equal(st.drop_replay, 0);
  assert_int_equal(st.drop_ratelimit, 4);
  assert_int_equal(st.rx_packets, (uint64_t)def.rate_burst + 9);
  fake_free(&f);
  fake_free(&g);
  fake_free(&h);
  net_free(&w);
}

/* The queue and event caps, the last two drop counters. */
static void test_drop_caps(void **state) {
  (void)state;
  dht_settings s;
  dht_settings_default(&s);
  s.max_out_queue = 2;
  s.max_events = 1;
  net w;
  net_init(&w, 1, &s);
  dht *a = w.n[0].e;
  dht_ts now = w.now;
  fake f[3];
  dht_peer p[3];
  for (int i = 0; i < 3; i++) {
    fake_init(&f[i], 10 + (uint64_t)i, tu_addr4(192, 0, 2, (uint8_t)(10 + i), 4000));
    memcpy(p[i].pk, f[i].id.pk, DHT_PK_LEN);
    p[i].addr = f[i].addr;
  }
  int64_t c0 = dht_ping(a, &p[0], now);
  assert_true(c0 > 0);
  assert_true(dht_ping(a, &p[1], now) > 0);
  assert_int_equal(dht_ping(a, &p[2], now), DHT_ERR_FULL);
  uint8_t body[16];
  size_t bl = body_of(body, sizeof body, 0x30, 1, 0);
  assert_int_equal(dht_svc_send(a, &p[2], NULL, body, bl), DHT_ERR_FULL);
  dht_stats st;
  dht_get_stats(a, &st);
  assert_int_equal(st.drop_out_full, 2);
  assert_int_equal(st.out_queue, 2);
  assert_int_equal(st.requests_out, 2);
  /* once drained there is room again */
  static got g0;
  take_one(a, &f[0], now, &g0);
  assert_int_equal(g0.m.type, DHT_MSG_PING);
  uint32_t txid = g0.m.txid;
  take_one(a, &f[1], now, &g0);
  assert_true(dht_ping(a, &p[2], now) > 0);
  take_one(a, &f[2], now, &g0);
  dht_get_stats(a, &st);
  assert_int_equal(st.out_queue, 0);

  /* one event slot: a PONG makes two events (ADDR_SEEN, PING) */
  dht_msg pong;
  memset(&pong, 0, sizeof pong);
  pong.type = DHT_MSG_PONG;
  pong.txid = txid;
  pong.seen = tu_addr4(203, 0, 113, 1, 1);
  uint8_t pkt[DHT_MAX_PKT];
  size_t len = fake_msg(&f[0], w.n[0].id.pk, &pong, pkt);
  assert_int_equal(d1_read(a, &f[0].addr, pkt, len, now + 5), 0);
  dht_get_stats(a, &st);
  assert_int_equal(st.drop_event_full, 1);
  assert_int_equal(st.events_queued, 1);
  dht_event ev;
  assert_int_equal(dht_poll_event(a, &ev), 0);
  assert_int_equal(ev.type, DHT_EV_ADDR_SEEN);
  assert_int_equal(dht_poll_event(a, &ev), DHT_ERR_NOTFOUND);
  for (int i = 0; i < 3; i++)
    fake_free(&f[i]);
  net_free(&w);
}

/* ---- PUT ------------------------------------------------------------------- */

/* Sends PUT(token, record) from f at addr and returns the ACK's status. */
static int put_from(dht *e, fake *f, const dht_addr *addr, const uint8_t token[DHT_TOKEN_LEN],
                    const uint8_t *rec, size_t rl, dht_ts now) {
  static uint32_t txid = 1000;
  dht_msg m;
  memset(&m, 0, sizeof m);
  m.type = DHT_MSG_PUT;
  m.txid = ++txid;
  m.token_len = DHT_TOKEN_LEN;
  memcpy(m.token, token, DHT_TOKEN_LEN);
  m.record = rec;
  m.record_len = rl;
  uint8_t pkt[DHT_MAX_PKT];
  size_t len = fake_msg(f, dht_self_pk(e), &m, pkt);
  assert_int_equal(d1_read(e, addr, pkt, len, now), 0);
  dht_addr keep = f->addr;
  f->addr = *addr; /* the reply goes where the request came from */
  got *r = reply_of(e, f, now, DHT_MSG_ACK);
  f->addr = keep;
  assert_int_equal(r->m.txid, txid);
  return r->m.status;
}

/* Sends GET(target) from f (no cookie, no padding); returns the reply. */
static got *get_from(dht *e, fake *f, const uint8_t target[DHT_ID_LEN], dht_ts now) {
  dht_msg m;
  memset(&m, 0, sizeof m);
  m.type = DHT_MSG_GET;
  m.txid = 7;
  memcpy(m.target, target, DHT_ID_LEN);
  uint8_t pkt[DHT_MAX_PKT];
  size_t len = fake_msg(f, dht_self_pk(e), &m, pkt);
  assert_int_equal(d1_read(e, &f->addr, pkt, len, now), 0);
  static got g[4];
  assert_int_equal(collect(e, f, now, g, 4), 1);
  assert_int_equal(g[0].rc, 0);
  assert_int_equal(g[0].m.txid, 7);
  assert_int_equal(g[0].m.token_len, DHT_TOKEN_LEN);
  return &g[0];
}

static size_t sign_rec(const fake *owner, const uint8_t *signer_sk, uint64_t seq, uint64_t expires,
                       uint8_t out[DHT_RECORD_MAX_LEN]) {
  dht_record r;
  memset(&r, 0, sizeof r);
  memcpy(r.pk, owner->id.pk, DHT_PK_LEN);
  r.seq = seq;
  r.expires_unix_s = expires;
  r.flags = DHT_REC_REACHABLE;
  r.naddrs = 1;
  r.addrs[0].type = DHT_ADDR_OBSERVED;
  r.addrs[0].addr = owner->addr;
  dht_ssize n = dht_record_sign(&r, signer_sk, out, DHT_RECORD_MAX_LEN);
  assert_true(n > 0);
  return (size_t)n;
}

static void test_put(void **state) {
  (void)state;
  net w;
  net_init(&w, 1, NULL);
  dht *a = w.n[0].e;
  dht_ts now = w.now;
  uint64_t unix_now = (uint64_t)(UNIX_MS + now) / 1000;
  fake f, g;
  fake_init(&f, 1, tu_addr4(198, 51, 100, 7, 5555));
  fake_init(&g, 2, tu_addr4(192, 0, 2, 8, 5555));
  uint8_t fid[DHT_ID_LEN];
  dht_id_from_pk(fid, f.id.pk);
  uint8_t rec[DHT_RECORD_MAX_LEN], bad[DHT_RECORD_MAX_LEN];
  size_t rl = sign_rec(&f, f.id.sk, 10, unix_now + 3600, rec);

  /* a GET gives F a write token (there is no record yet: NODES) */
  got *r = get_from(a, &f, fid, now);
  assert_int_equal(r->m.type, DHT_MSG_NODES);
  uint8_t token[DHT_TOKEN_LEN];
  memcpy(token, r->m.token, DHT_TOKEN_LEN);

  /* bad tokens: made up, F's used from another port, F's used by G */
  dht_stats st;
  uint8_t made_up[DHT_TOKEN_LEN];
  memcpy(made_up, token, sizeof made_up);
  made_up[0] ^= 1;
  assert_int_equal(put_from(a, &f, &f.addr, made_up, rec, rl, ++now), DHT_ACK_BAD_TOKEN);
  dht_addr port2 = f.addr;
  port2.port++;
  assert_int_equal(put_from(a, &f, &port2, token, rec, rl, ++now), DHT_ACK_BAD_TOKEN);
  assert_int_equal(put_from(a, &g, &f.addr, token, rec, rl, ++now), DHT_ACK_BAD_TOKEN);
  dht_get_stats(a, &st);
  assert_int_equal(st.drop_bad_token, 3);
  assert_int_equal(st.records_stored, 0);

  /* a valid token with records that must not be stored */
  memcpy(bad, rec, rl);
  bad[rl - 1] ^= 0x01; /* forged signature */
  assert_int_equal(put_from(a, &f, &f.addr, token, bad, rl, ++now), DHT_ACK_BAD_RECORD);
  memcpy(bad, rec, rl);
  bad[1 + DHT_PK_LEN + 7] ^= 0x01; /* a signed byte (seq) changed */
  assert_int_equal(put_from(a, &f, &f.addr, token, bad, rl, ++now), DHT_ACK_BAD_RECORD);
  size_t bl = sign_rec(&f, g.id.sk, 10, unix_now + 3600, bad); /* F's record, G's signature */
  assert_int_equal(put_from(a, &f, &f.addr, token, bad, bl, ++now), DHT_ACK_BAD_RECORD);
  bl = sign_rec(&f, f.id.sk, 10, unix_now + DHT_RECORD_MAX_TTL_S + 601, bad); /* lives too long */
  assert_int_equal(put_from(a, &f, &f.addr, token, bad, bl, ++now), DHT_ACK_BAD_RECORD);
  memset(bad, 0x42, 100); /* not a record */
  assert_int_equal(put_from(a, &f, &f.addr, token, bad, 100, ++now), DHT_ACK_BAD_RECORD);
  dht_get_stats(a, &st);
  assert_int_equal(st.drop_bad_record, 5);
  assert_int_equal(st.drop_bad_token, 3);
  assert_int_equal(st.records_stored, 0);
  assert_int_equal(st.records_accepted, 0);

  /* the real thing */
  assert_int_equal(put_from(a, &f, &f.addr, token, rec, rl, ++now), DHT_ACK_OK);
  dht_get_stats(a, &st);
  assert_int_equal(st.records_stored, 1);
  assert_int_equal(st.records_accepted, 1);
  /* served to anyone who asks, as the owner's exact bytes */
  r = get_from(a, &g, fid, ++now);
  assert_int_equal(r->m.type, DHT_MSG_VALUE);
  assert_int_equal(r->m.record_len, rl);
  assert_memory_equal(r->m.record, rec, rl);
  /* older: stale; the same again: fine */
  bl = sign_rec(&f, f.id.sk, 9, unix_now + 3600, bad);
  assert_int_equal(put_from(a, &f, &f.addr, token, bad, bl, ++now), DHT_ACK_STALE);
  assert_int_equal(put_from(a, &f, &f.addr, token, rec, rl, ++now), DHT_ACK_OK);
  /* F may store G's record: the token binds the storer, the signature the
   * owner */
  bl = sign_rec(&g, g.id.sk, 1, unix_now + 600, bad);
  assert_int_equal(put_from(a, &f, &f.addr, token, bad, bl, ++now), DHT_ACK_OK);
  dht_get_stats(a, &st);
  assert_int_equal(st.records_stored, 2);
  assert_int_equal(st.records_accepted, 3);
  assert_int_equal(st.records_rejected, 1);
  assert_int_equal(st.rt_size, 0); /* F and G never said they are servers */

  /* the token outlives one rotation of the secret, not two */
  now += DHT_TOKEN_ROTATE_MS;
  assert_int_equal(dht_handle_expiry(a, now), 0);
  bl = sign_rec(&f, f.id.sk, 11, unix_now + 3600, bad);
  assert_int_equal(put_from(a, &f, &f.addr, token, bad, bl, now), DHT_ACK_OK);
  now += DHT_TOKEN_ROTATE_MS;
  assert_int_equal(dht_handle_expiry(a, now), 0);
  bl = sign_rec(&f, f.id.sk, 12, unix_now + 3600, bad);
  assert_int_equal(put_from(a, &f, &f.addr, token, bad, bl, now), DHT_ACK_BAD_TOKEN);
  fake_free(&f);
  fake_free(&g);
  net_free(&w);
}

/* ---- anti-amplification -------------------------------------------------- */

static size_t find_of(fake *f, const uint8_t to[DHT_PK_LEN], uint32_t txid,
                      const uint8_t target[DHT_ID_LEN], const uint8_t *cookie, size_t pad,
                      uint8_t out[DHT_MAX_PKT]) {
  dht_msg m;
  memset(&m, 0, sizeof m);
  m.type = DHT_MSG_FIND_NODE;
  m.txid = txid;
  memcpy(m.target, target, DHT_ID_LEN);
  if (cookie) {
    memcpy(m.token, cookie, DHT_TOKEN_LEN);
    m.token_len = DHT_TOKEN_LEN;
  }
  m.pad_len = pad;
  return fake_msg(f, to, &m, out);
}

/* Sends a request from f at addr to e and returns e's NODES reply. */
static got *ask(dht *e, fake *f, const dht_addr *addr, const uint8_t *pkt, size_t len, dht_ts now) {
  assert_int_equal(d1_read(e, addr, pkt, len, now), 0);
  dht_addr keep = f->addr;
  f->addr = *addr;
  got *r = reply_of(e, f, now, DHT_MSG_NODES);
  f->addr = keep;
  return r;
}

static void test_amplification(void **state) {
  (void)state;
  net w;
  net_init(&w, 30, NULL);
  net_join(&w, 0, 30);
  dht *e = w.n[0].e;
  const uint8_t *epk = w.n[0].id.pk;
  net_drain(&w, 0); /* the responder's queue is empty from here on */
  dht_stats st;
  dht_get_stats(e, &st);
  assert_true(st.rt_size >= 21);
  uint64_t limited = st.amplification_limited;
  dht_ts now = w.now;
  fake f, g;
  fake_init(&f, 1, tu_addr4(198, 51, 100, 7, 5555));
  fake_init(&g, 2, tu_addr4(198, 51, 100, 8, 5555));
  tu_rng rng;
  tu_rng_init(&rng, g_seed, 0xa3);
  uint8_t target[DHT_ID_LEN], pkt[DHT_MAX_PKT];
  tu_rng_bytes(&rng, target, sizeof target);

  /* first contact, no cookie, no padding: at most 3x the request */
  size_t len = find_of(&f, epk, 1, target, NULL, 0, pkt);
  got *r = ask(e, &f, &f.addr, pkt, len, now);
  assert_true(r->pktlen <= 3 * len);
  assert_true(r->m.ncontacts >= 1);
  assert_true(r->m.ncontacts < 20);
  assert_int_equal(r->m.token_len, DHT_TOKEN_LEN);
  dht_get_stats(e, &st);
  assert_int_equal(st.amplification_limited, ++limited);
  uint8_t cookie[DHT_TOKEN_LEN];
  memcpy(cookie, r->m.token, DHT_TOKEN_LEN);
  int few = r->m.ncontacts;

  /* the cookie echoed: the full 20, the closest first */
  len = find_of(&f, epk, 2, target, cookie, 0, pkt);
  r = ask(e, &f, &f.addr, pkt, len, ++now);
  assert_int_equal(r->m.ncontacts, 20);
  assert_true(r->pktlen > 3 * len);
  assert_true(r->pktlen <= DHT_MAX_PKT);
  dht_get_stats(e, &st);
  assert_int_equal(st.amplification_limited, limited);
  dht_contact cl[20];
  assert_int_equal(dht_closest(e, target, cl, 20), 20);
  for (int i = 0; i < 20; i++) {
    assert_memory_equal(r->m.contacts[i].pk, cl[i].pk, DHT_PK_LEN);
    assert_true(dht_addr_eq(&r->m.contacts[i].addr, &cl[i].addr));
  }
  /* the limited reply was the head of the same list */
  len = find_of(&f, epk, 3, target, NULL, 0, pkt);
  r = ask(e, &f, &f.addr, pkt, len, ++now);
  assert_int_equal(r->m.ncontacts, few);
  for (int i = 0; i < few; i++)
    assert_memory_equal(r->m.contacts[i].pk, cl[i].pk, DHT_PK_LEN);
  limited++;

  /* a cookie is bound to the address and the key it was given to */
  dht_addr port2 = f.addr;
  port2.port++;
  len = find_of(&f, epk, 4, target, cookie, 0, pkt);
  r = ask(e, &f, &port2, pkt, len, ++now);
  assert_true(r->m.ncontacts < 20);
  assert_true(r->pktlen <= 3 * len);
  len = find_of(&g, epk, 5, target, cookie, 0, pkt);
  r = ask(e, &g, &f.addr, pkt, len, ++now);
  assert_true(r->m.ncontacts < 20);
  assert_true(r->pktlen <= 3 * len);
  dht_get_stats(e, &st);
  limited += 2;
  assert_int_equal(st.amplification_limited, limited);

  /* padding instead: a request of >= 1232/3 bytes earns the full reply */
  len = find_of(&g, epk, 6, target, NULL, 300, pkt);
  assert_true(3 * len >= DHT_MAX_PKT);
  r = ask(e, &g, &g.addr, pkt, len, ++now);
  assert_int_equal(r->m.ncontacts, 20);
  /* one byte of padding short of it: limited */
  size_t want = (DHT_MAX_PKT + 2) / 3;
  size_t pad = 300 - (len - want) - 1;
  len = find_of(&g, epk, 7, target, NULL, pad, pkt);
  assert_int_equal(len, want - 1);
  r = ask(e, &g, &g.addr, pkt, len, ++now);
  assert_true(r->pktlen <= 3 * len);
  dht_get_stats(e, &st);
  assert_int_equal(st.amplification_limited, limited + 1);

  /* GET is limited the same way */
  dht_msg m;
  memset(&m, 0, sizeof m);
  m.type = DHT_MSG_GET;
  m.txid = 8;
  memcpy(m.target, target, DHT_ID_LEN);
  len = fake_msg(&g, epk, &m, pkt);
  r = ask(e, &g, &g.addr, pkt, len, ++now);
  assert_true(r->pktlen <= 3 * len);
  assert_true(r->m.ncontacts < 20);
  dht_get_stats(e, &st);
  assert_int_equal(st.amplification_limited, limited + 2);
  fake_free(&f);
  fake_free(&g);
  net_free(&w);
}

/* ---- routing-table snapshots --------------------------------------------- */

static void expect_refused(dht *e, const uint8_t *buf, size_t len, dht_ts now) {
  uint8_t *copy = test_malloc(len ? len : 1);
  memcpy(copy, buf, len);
  assert_int_equal(dht_load_table(e, copy, len, now), DHT_ERR_PROTO);
  test_free(copy);
  dht_stats st;
  dht_get_stats(e, &st);
  assert_int_equal(st.rt_size, 0);
}

static void resum(uint8_t *buf, size_t len) {
  crypto_generichash(buf + len - 16, 16, buf, len - 16, NULL, 0);
}

static void test_snapshot(void **state) {
  (void)state;
  net w;
  net_init(&w, 30, NULL);
  net_join(&w, 0, 30);
  dht *e = w.n[3].e;
  size_t need = 0;
  assert_int_equal(dht_save_table(e, NULL, 0, &need), DHT_ERR_NOBUF);
  static uint8_t buf[SNAP_MAX], bad[SNAP_MAX + 1];
  assert_true(need > 28 && need <= sizeof buf);
  assert_int_equal(dht_save_table(e, buf, need - 1, NULL), DHT_ERR_NOBUF);
  dht_ssize len = dht_save_table(e, buf, sizeof buf, NULL);
  assert_int_equal((size_t)len, need);
  static snap_ent t0[MAXN], t1[MAXN];
  int n0 = table_of(e, t0, MAXN);
  assert_true(n0 >= 20);

  /* a fresh engine of the same identity */
  tu_rng rng;
  tu_rng_init(&rng, g_seed, 0x5a);
  dht_callbacks cb = {&rng, tu_rand_cb, NULL};
  dht *x;
  assert_int_equal(dht_new(&x, &w.n[3].id, NULL, &cb, NULL, w.now), 0);
  dht_ts now = w.now;

  /* every byte flipped, every truncation, one byte more: refused whole */
  for (dht_ssize i = 0; i < len; i++) {
    memcpy(bad, buf, (size_t)len);
    bad[i] ^= 0x20;
    expect_refused(x, bad, (size_t)len, now);
  }
  for (dht_ssize cut = 0; cut < len; cut++)
    expect_refused(x, buf, (size_t)cut, now);
  memcpy(bad, buf, (size_t)len);
  bad[len] = 0;
  expect_refused(x, bad, (size_t)len + 1, now);
  /* structural errors under a valid checksum */
  memcpy(bad, buf, (size_t)len);
  bad[7] = '2'; /* magic "roostrt2" */
  resum(bad, (size_t)len);
  expect_refused(x, bad, (size_t)len, now);
  for (int d = -1; d <= 1; d += 2) { /* count off by one */
    memcpy(bad, buf, (size_t)len);
    bad[11] = (uint8_t)(bad[11] + d);
    resum(bad, (size_t)len);
    expect_refused(x, bad, (size_t)len, now);
  }
  memcpy(bad, buf, (size_t)len);
  bad[8] = 0x80; /* a count far beyond the bytes */
  resum(bad, (size_t)len);
  expect_refused(x, bad, (size_t)len, now);
  /* the last entry's address length changed (6 <-> 18 or to 7) */
  size_t p = 12, last = 12;
  while (p < (size_t)len - 16) {
    last = p;
    p += 1 + DHT_PK_LEN + buf[p];
  }
  static const uint8_t lens[] = {0, 5, 7, 17};
  for (size_t i = 0; i < sizeof lens; i++) {
    memcpy(bad, buf, (size_t)len);
    bad[last] = lens[i];
    resum(bad, (size_t)len);
    expect_refused(x, bad, (size_t)len, now);
  }
  /* a port 0 in the last entry */
  memcpy(bad, buf, (size_t)len);
  bad[len - 17] = 0;
  bad[len - 18] = 0;
  resum(bad, (size_t)len);
  expect_refused(x, bad, (size_t)len, now);
  /* an extra byte before the checksum */
  memcpy(bad, buf, (size_t)len - 16);
  bad[len - 16] = 0;
  resum(bad, (size_t)len + 1);
  expect_refused(x, bad, (size_t)len + 1, now);

  /* the real snapshot: the same contacts */
  assert_int_equal(dht_load_table(x, buf, (size_t)len, now), n0);
  int n1 = table_of(x, t1, MAXN);
  assert_int_equal(n1, n0);
  for (int i = 0; i < n0; i++) {
    assert_memory_equal(t1[i].pk, t0[i].pk, DHT_PK_LEN);
    assert_true(dht_addr_eq(&t1[i].addr, &t0[i].addr));
  }
  /* and its own snapshot is the same set again */
  uint8_t again[SNAP_MAX];
  assert_int_equal(dht_save_table(x, again, sizeof again, NULL), len);
  dht_del(x);

  /* an empty table: magic, count 0, checksum */
  tu_rng_init(&rng, g_seed, 0x5b);
  assert_int_equal(dht_new(&x, &w.n[3].id, NULL, &cb, NULL, now), 0);
  len = dht_save_table(x, buf, sizeof buf, NULL);
  assert_int_equal(len, 8 + 4 + 16);
  assert_int_equal(dht_load_table(x, buf, (size_t)len, now), 0);
  dht_del(x);
  net_free(&w);
}

/* A node restarts from its snapshot, with no bootstrap peers. */
static void test_warm_restart(void **state) {
  (void)state;
  net w;
  net_init(&w, 30, NULL);
  net_join(&w, 0, 30);
  static uint8_t buf[SNAP_MAX];
  dht_ssize len = dht_save_table(w.n[7].e, buf, sizeof buf, NULL);
  assert_true(len > 0);
  dht_stats st;
  dht_get_stats(w.n[7].e, &st);
  int saved = st.rt_size;
  assert_true(saved >= 20);

  /* without a snapshot a restarted node knows nobody */
  net_restart(&w, 8, NULL, 0x800);
  int64_t cmd = dht_bootstrap(w.n[8].e, NULL, 0, w.now);
  assert_true(cmd > 0);
  uint8_t target[DHT_ID_LEN];
  memset(target, 0x33, sizeof target);
  int64_t look = dht_find_node(w.n[8].e, target, w.now);
  net_drain(&w, 8);
  mev *m = net_event(&w, 8, DHT_EV_BOOTSTRAP, cmd);
  assert_non_null(m);
  assert_int_equal(m->ev.u.bootstrap.table_size, 0);
  m = net_event(&w, 8, DHT_EV_LOOKUP, look);
  assert_non_null(m);
  assert_true(m->has_res);
  assert_int_equal(m->res.ncontacts, 0);

  /* node 7 comes back from its snapshot */
  net_restart(&w, 7, NULL, 0x700);
  assert_int_equal(dht_load_table(w.n[7].e, buf, (size_t)len, w.now), saved);
  cmd = dht_bootstrap(w.n[7].e, NULL, 0, w.now);
  assert_true(cmd > 0);
  m = net_wait(&w, 7, DHT_EV_BOOTSTRAP, cmd, 60000);
  assert_int_equal(m->ev.status, 0);
  assert_true(m->ev.u.bootstrap.answered > 0);
  assert_true(m->ev.u.bootstrap.table_size >= 20);

  tu_rng rng;
  tu_rng_init(&rng, g_seed, 0x77);
  int64_t cmds[10];
  for (int i = 0; i < 10; i++) {
    tu_rng_bytes(&rng, target, sizeof target);
    cmds[i] = dht_find_node(w.n[7].e, target, w.now);
    assert_true(cmds[i] > 0);
  }
  for (int i = 0; i < 10; i++) {
    m = net_wait(&w, 7, DHT_EV_LOOKUP, cmds[i], 60000);
    assert_int_equal(m->ev.status, 0);
    assert_true(m->has_res);
    assert_true(m->res.replies > 0);
    assert_true_closest(&w, &m->res, 7, 20);
  }
  net_free(&w);
}

/* ---- services ------------------------------------------------------------ */

typedef struct svc_log {
  int msgs;
  dht_peer from;
  uint8_t body[DHT_MAX_BODY];
  size_t len;
  dht_ts at;
  bool echo; /* answer [type + 1, txid, "pong"] */
  int echo_rv;
  dht_ts due;
  int expiries;
  dht_ts expired_at;
} svc_log;

static void svc_on_msg(void *ctx, dht *e, const dht_msg_in *in, dht_ts now) {
  svc_log *l = ctx;
  const dht_peer *from = &in->from;
  const uint8_t *body = in->body;
  size_t len = in->len;
  l->msgs++;
  l->from = *from;
  assert_true(len <= sizeof l->body);
  memcpy(l->body, body, len);
  l->len = len;
  l->at = now;
  if (l->echo) {
    uint8_t type;
    uint32_t txid;
    assert_int_equal(dht_msg_peek(body, len, &type, &txid), 0);
    uint8_t out[64];
    dht_wire_w w;
    dht_wire_w_init(&w, out, sizeof out);
    dht_wire_w_array(&w, 3);
    dht_wire_w_uint(&w, type + 1u);
    dht_wire_w_uint(&w, txid);
    dht_wire_w_bin(&w, (const uint8_t *)"pong", 4);
    assert_int_equal(w.err, 0);
    l->echo_rv = dht_svc_send(e, from, NULL, out, w.len);
  }
}

static dht_ts svc_get_expiry(void *ctx) {
  return ((svc_log *)ctx)->due;
}

static void svc_handle_expiry(void *ctx, dht *e, dht_ts now) {
  (void)e;
  svc_log *l = ctx;
  l->expiries++;
  l->expired_at = now;
  l->due = DHT_TS_NEVER;
}

static void test_service_add(void **state) {
  (void)state;
  dht_settings s;
  dht_settings_default(&s);
  s.max_services = 3;
  net w;
  net_init(&w, 1, &s);
  dht *e = w.n[0].e;
  svc_log log;
  memset(&log, 0, sizeof log);
  dht_service svc = {.type_lo = 0x30, .type_hi = 0x3f, .ctx = &log, .on_msg = svc_on_msg};
  assert_int_equal(dht_service_add(e, &svc), 1); /* ids count from 1 */
  /* overlapping an existing range, in every way */
  static const uint8_t overlap[][2] = {{0x30, 0x3f}, {0x20, 0x30}, {0x3f, 0x40},
                                       {0x31, 0x32}, {0x20, 0x7f}, {0x35, 0x35}};
  for (size_t i = 0; i < sizeof overlap / sizeof overlap[0]; i++) {
    dht_service o = svc;
    o.type_lo = overlap[i][0];
    o.type_hi = overlap[i][1];
    assert_int_equal(dht_service_add(e, &o), DHT_ERR_INVAL);
  }
  /* the core range, beyond 0x7f, reversed, without a handler */
  static const uint8_t invalid[][2] = {{0x00, 0x20}, {0x1f, 0x21}, {0x01, 0x05},
                                       {0x70, 0x80}, {0x80, 0x90}, {0x50, 0x4f}};
  for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
    dht_service o = svc;
    o.type_lo = invalid[i][0];
    o.type_hi = invalid[i][1];
    assert_int_equal(dht_service_add(e, &o), DHT_ERR_INVAL);
  }
  dht_service o = svc;
  o.type_lo = o.type_hi = 0x50;
  o.on_msg = NULL;
  assert_int_equal(dht_service_add(e, &o), DHT_ERR_INVAL);
  assert_int_equal(dht_service_add(e, NULL), DHT_ERR_INVAL);
  /* adjacent ranges are fine; past max_services: full */
  o = svc;
  o.type_lo = 0x20;
  o.type_hi = 0x2f;
  assert_int_equal(dht_service_add(e, &o), 2);
  o.type_lo = 0x40;
  o.type_hi = 0x7f;
  assert_int_equal(dht_service_add(e, &o), 3);
  o.type_lo = o.type_hi = 0x7f;
  assert_int_equal(dht_service_add(e, &o), DHT_ERR_INVAL);
  dht_settings_default(&s);
  s.max_services = 1;
  net_free(&w);
  net_init(&w, 1, &s);
  assert_int_equal(dht_service_add(w.n[0].e, &svc), 1);
  o = svc;
  o.type_lo = 0x40;
  o.type_hi = 0x41;
  assert_int_equal(dht_service_add(w.n[0].e, &o), DHT_ERR_FULL);

  /* dht_svc_send refuses core types, bodies that are not messages, and
   * oversized ones */
  dht_peer to = {{1}, tu_addr4(192, 0, 2, 1, 1)};
  uint8_t body[DHT_MAX_BODY + 1];
  size_t bl = body_of(body, sizeof body, DHT_MSG_PING, 1, 1);
  assert_int_equal(dht_svc_send(w.n[0].e, &to, NULL, body, bl), DHT_ERR_INVAL);
  bl = body_of(body, sizeof body, DHT_MSG_CORE_MAX, 1, 0);
  assert_int_equal(dht_svc_send(w.n[0].e, &to, NULL, body, bl), DHT_ERR_INVAL);
  memset(body, 0xc1, 10);
  assert_int_equal(dht_svc_send(w.n[0].e, &to, NULL, body, 10), DHT_ERR_INVAL);
  bl = body_of(body, sizeof body, 0x40, 1, 0);
  assert_int_equal(dht_svc_send(w.n[0].e, NULL, NULL, body, bl), DHT_ERR_INVAL);
  memset(body, 0, sizeof body);
  body[0] = 0x92;
  body[1] = 0x40;
  body[2] = 0x01; /* [0x40, 1] then zeros: peeks fine, too long */
  assert_int_equal(dht_svc_send(w.n[0].e, &to, NULL, body, DHT_MAX_BODY + 1), DHT_ERR_INVAL);
  /* well-formed, but to an address that never sent us anything: no credit,
   * no proof, so the engine drops it and counts (the amplification rule) */
  assert_int_equal(dht_svc_send(w.n[0].e, &to, NULL, body, DHT_MAX_BODY), 0);
  dht_stats st;
  dht_get_stats(w.n[0].e, &st);
  assert_int_equal(st.out_queue, 0);
  assert_int_equal(st.drop_amplification, 1);
  net_free(&w);
}

static void test_service_messages(void **state) {
  (void)state;
  net w;
  net_init(&w, 2, NULL);
  dht *a = w.n[0].e, *b = w.n[1].e;
  svc_log la, lb;
  memset(&la, 0, sizeof la);
  memset(&lb, 0, sizeof lb);
  la.due = lb.due = DHT_TS_NEVER;
  lb.echo = true;
  dht_service sa = {.type_lo = 0x30,
                    .type_hi = 0x3f,
                    .ctx = &la,
                    .on_msg = svc_on_msg,
                    .get_expiry = svc_get_expiry,
                    .handle_expiry = svc_handle_expiry};
  dht_service sb = sa;
  sb.ctx = &lb;
  int ida = dht_service_add(a, &sa);
  assert_int_equal(ida, 1);
  assert_int_equal(dht_service_add(b, &sb), 1);

  /* A -> B: B's service gets the body, the sender's key and address */
  uint8_t body[64];
  size_t bl = body_of(body, sizeof body, 0x31, 4242, 2);
  dht_peer pb = net_peer(&w, 1);
  dht_ts t0 = w.now;
  /* a first contact is a request (an answer to an address that sent us
   * nothing would be dropped); B's echo is within B's credit for A */
  dht_req_opts ro = {.answer = 0x32};
  assert_int_equal(dht_svc_request(a, ida, &pb, body, bl, &ro, w.now), 0);
  net_run(&w, w.now + 1000, NULL, NULL);
  assert_int_equal(lb.msgs, 1);
  assert_memory_equal(lb.from.pk, w.n[0].id.pk, DHT_PK_LEN);
  assert_true(dht_addr_eq(&lb.from.addr, &w.n[0].addr));
  assert_int_equal(lb.len, bl);
  assert_memory_equal(lb.body, body, bl);
  assert_int_equal(lb.at, t0 + w.latency);
  /* B answered from inside its hook; A's service got it */
  assert_int_equal(lb.echo_rv, 0);
  assert_int_equal(la.msgs, 1);
  assert_memory_equal(la.from.pk, w.n[1].id.pk, DHT_PK_LEN);
  assert_true(dht_addr_eq(&la.from.addr, &w.n[1].addr));
  assert_int_equal(la.at, t0 + 2 * w.latency);
  uint8_t type;
  uint32_t txid;
  assert_int_equal(dht_msg_peek(la.body, la.len, &type, &txid), 0);
  assert_int_equal(type, 0x32);
  assert_int_equal(txid, 4242);
  /* service traffic is neither a request nor a reply of the core */
  dht_stats st;
  dht_get_stats(b, &st);
  assert_int_equal(st.requests_in, 0);
  assert_int_equal(st.drop_unknown_type, 0);

  /* a type outside every range is still unknown (B is proven now: it
   * answered A's request at its address) */
  bl = body_of(body, sizeof body, 0x42, 1, 0);
  assert_int_equal(dht_svc_send(a, &pb, NULL, body, bl), 0);
  net_run(&w, w.now + 1000, NULL, NULL);
  dht_get_stats(b, &st);
  assert_int_equal(st.drop_unknown_type, 1);
  assert_int_equal(lb.msgs, 1);

  /* timers: the service's expiry drives the engine's, and its handler runs
   * when due, not before */
  dht_ts due = w.now + 1234;
  la.due = due;
  assert_true(dht_get_expiry(a) <= due);
  while (dht_get_expiry(a) < due) /* engine timers that come first */
    assert_int_equal(dht_handle_expiry(a, dht_get_expiry(a)), 0);
  assert_int_equal(dht_get_expiry(a), due);
  assert_int_equal(dht_handle_expiry(a, due - 1), 0);
  assert_int_equal(la.expiries, 0);
  assert_int_equal(dht_handle_expiry(a, due), 0);
  assert_int_equal(la.expiries, 1);
  assert_int_equal(la.expired_at, due);
  assert_true(dht_get_expiry(a) > due);
  assert_int_equal(dht_handle_expiry(a, due + 1), 0);
  assert_int_equal(la.expiries, 1);
  assert_int_equal(lb.expiries, 0);
  net_free(&w);
}

/* ---- commands: cancel, lookups with everyone down ------------------------- */

static void test_cancel(void **state) {
  (void)state;
  net w;
  net_init(&w, 2, NULL);
  dht *a = w.n[0].e;
  dht_peer pb = net_peer(&w, 1);
  mev *m = net_wait(&w, 0, DHT_EV_PING, dht_ping(a, &pb, w.now), 10000);
  assert_int_equal(m->ev.status, 0);
  net_run(&w, w.now + 100, NULL, NULL);

  uint8_t target[DHT_ID_LEN];
  memset(target, 0x5c, sizeof target);
  int64_t cmd = dht_find_node(a, target, w.now);
  assert_true(cmd > 0);
  assert_int_equal(dht_cancel(a, cmd), 0);
  assert_int_equal(dht_cancel(a, cmd), DHT_ERR_NOTFOUND);
  dht_stats st0, st1;
  dht_get_stats(a, &st0);
  net_run(&w, w.now + 5000, NULL, NULL);
  assert_int_equal(net_count(&w, 0, DHT_EV_LOOKUP, cmd), 1);
  m = net_event(&w, 0, DHT_EV_LOOKUP, cmd);
  assert_int_equal(m->ev.status, DHT_ERR_CANCELLED);
  /* B's answer to the request already sent changed nothing */
  dht_get_stats(a, &st1);
  assert_int_equal(st1.replies_in, st0.replies_in + 1);
  assert_int_equal(st1.lookups_done, st0.lookups_done);

  /* a GET, a publish and a bootstrap cancel the same way, with their own
   * event types */
  int64_t c1 = dht_get_record(a, target, w.now);
  int64_t c2 = dht_put_record(a, w.now);
  int64_t c3 = dht_bootstrap(a, NULL, 0, w.now);
  assert_true(c1 > 0 && c2 > 0 && c3 > 0);
  assert_int_equal(dht_cancel(a, c2), 0);
  assert_int_equal(dht_cancel(a, c1), 0);
  net_run(&w, w.now + 5000, NULL, NULL);
  m = net_event(&w, 0, DHT_EV_LOOKUP, c1);
  assert_non_null(m);
  assert_int_equal(m->ev.status, DHT_ERR_CANCELLED);
  m = net_event(&w, 0, DHT_EV_PUT, c2);
  assert_non_null(m);
  assert_int_equal(m->ev.status, DHT_ERR_CANCELLED);
  assert_int_equal(net_count(&w, 0, DHT_EV_LOOKUP, c1), 1);
  assert_int_equal(net_count(&w, 0, DHT_EV_PUT, c2), 1);
  m = net_event(&w, 0, DHT_EV_BOOTSTRAP, c3); /* not cancelled: ran to the end */
  assert_non_null(m);
  assert_int_equal(dht_cancel(a, c3), DHT_ERR_NOTFOUND);

  /* a ping: DHT_EV_PING cancelled, and the PONG then matches nothing */
  dht_get_stats(a, &st0);
  int64_t p = dht_ping(a, &pb, w.now);
  assert_true(p > 0);
  assert_int_equal(dht_cancel(a, p), 0);
  assert_int_equal(dht_cancel(a, p), DHT_ERR_NOTFOUND);
  net_run(&w, w.now + 5000, NULL, NULL);
  assert_int_equal(net_count(&w, 0, DHT_EV_PING, p), 1);
  m = net_event(&w, 0, DHT_EV_PING, p);
  assert_int_equal(m->ev.status, DHT_ERR_CANCELLED);
  dht_get_stats(a, &st1);
  assert_int_equal(st1.drop_unknown_txid, st0.drop_unknown_txid + 1);
  assert_int_equal(st1.timeouts, st0.timeouts);
  assert_int_equal(dht_cancel(a, 999999), DHT_ERR_NOTFOUND);
  net_free(&w);
}

/* Every peer of a lookup is down: it must finish, before lookup_timeout,
 * having found nobody, and say so. */
static void test_lookup_all_down(void **state) {
  (void)state;
  net w;
  net_init(&w, 30, NULL);
  net_join(&w, 0, 30);
  dht_stats st;
  dht_get_stats(w.n[0].e, &st);
  assert_true(st.rt_size >= 20);
  for (int i = 1; i < 30; i++)
    w.n[i].up = false;
  dht_settings def;
  dht_settings_default(&def);
  uint8_t target[DHT_ID_LEN];
  memset(target, 0xa7, sizeof target);
  dht_ts t0 = w.now;
  int64_t cmd = dht_find_node(w.n[0].e, target, t0);
  assert_true(cmd > 0);
  mev *m = net_wait(&w, 0, DHT_EV_LOOKUP, cmd, def.lookup_timeout_ms + 1000);
  assert_true(m->at - t0 <= def.lookup_timeout_ms);
  assert_true(m->has_res);
  assert_int_equal(m->res.ncontacts, 0);
  assert_int_equal(m->res.replies, 0);
  assert_true(m->res.messages >= 20);
  int status = m->ev.status;
  net_free(&w);
  assert_int_equal(status, DHT_ERR_TIMEOUT);
}

/* A bootstrap whose only seed never answers has not joined anything. */
static void test_bootstrap_unreachable(void **state) {
  (void)state;
  net w;
  net_init(&w, 2, NULL);
  w.n[1].up = false;
  dht_peer seed = net_peer(&w, 1);
  int64_t cmd = dht_bootstrap(w.n[0].e, &seed, 1, w.now);
  assert_true(cmd > 0);
  mev *m = net_wait(&w, 0, DHT_EV_BOOTSTRAP, cmd, 60000);
  assert_int_equal(m->ev.u.bootstrap.answered, 0);
  assert_int_equal(m->ev.u.bootstrap.table_size, 0);
  assert_int_equal(m->ev.status, DHT_ERR_TIMEOUT);
  net_free(&w);
}

/* The lookup deadline comes before any request can time out. */
static void test_lookup_deadline(void **state) {
  (void)state;
  dht_settings s;
  dht_settings_default(&s);
  s.rpc_timeout_min_ms = 1500;
  s.lookup_timeout_ms = 1000;
  net w;
  net_init(&w, 3, &s);
  dht *a = w.n[0].e;
  for (int i = 1; i < 3; i++) {
    dht_peer p = net_peer(&w, i);
    assert_int_equal(net_wait(&w, 0, DHT_EV_PING, dht_ping(a, &p, w.now), 10000)->ev.status, 0);
  }
  net_run(&w, w.now + 100, NULL, NULL);
  w.n[1].up = w.n[2].up = false;
  uint8_t target[DHT_ID_LEN];
  memset(target, 0x11, sizeof target);
  dht_ts t0 = w.now;
  int64_t cmd = dht_find_node(a, target, t0);
  mev *m = net_wait(&w, 0, DHT_EV_LOOKUP, cmd, 10000);
  assert_int_equal(m->ev.status, DHT_ERR_TIMEOUT);
  assert_int_equal(m->at - t0, 1000);
  assert_true(m->has_res);
  assert_int_equal(m->res.ncontacts, 0);
  assert_int_equal(m->res.messages, 2);
  assert_int_equal(m->res.elapsed_ms, 1000);
  net_free(&w);
}

/* ---- settings, client mode ------------------------------------------------ */

static void test_settings(void **state) {
  (void)state;
  dht_identity id;
  tu_identity(&id, g_seed, 1);
  tu_rng rng;
  tu_rng_init(&rng, g_seed, 1);
  dht_callbacks cb = {&rng, tu_rand_cb, NULL};
  dht *e = (dht *)&id; /* anything but NULL: must be cleared on failure */
  dht_settings s;
#define BAD(field, value)                                                                          \
  do {                                                                                             \
    dht_settings_default(&s);                                                                      \
    s.field = value;                                                                               \
    e = (dht *)&id;                                                                                \
    assert_int_equal(dht_new(&e, &id, &s, &cb, NULL, 0), DHT_ERR_INVAL);                           \
    assert_null(e);                                                                                \
  } while (0)
  BAD(k, 0);
  BAD(k, 33);
  BAD(k, -1);
  BAD(alpha, 0);
  BAD(alpha, 33);
  BAD(lookup_candidates, 19);
  BAD(rpc_timeout_min_ms, 0);
  BAD(rpc_timeout_max_ms, 100);
  BAD(lookup_timeout_ms, 0);
  BAD(max_out_queue, 0);
  BAD(max_events, 0);
  BAD(key_cache, 0);
  BAD(max_failures, 0);
  BAD(rate_v4_prefix, 33);
  BAD(rate_v6_prefix, 129);
  BAD(amplification_factor, 0);
  BAD(record_ttl_ms, (dht_ts)DHT_RECORD_MAX_TTL_S * 1000 + 1);
#undef BAD
  /* the edges that are allowed */
  static const int ks[] = {1, 32};
  for (size_t i = 0; i < 2; i++) {
    dht_settings_default(&s);
    s.k = ks[i];
    s.alpha = 1;
    assert_int_equal(dht_new(&e, &id, &s, &cb, NULL, 0), 0);
    assert_non_null(e);
    dht_del(e);
  }
  /* defaults, and no settings at all */
  dht_settings_default(&s);
  assert_int_equal(s.k, 20);
  assert_int_equal(s.alpha, 3);
  assert_int_equal(s.amplification_factor, 3);
  assert_int_equal(dht_new(&e, &id, NULL, &cb, NULL, 0), 0);
  assert_memory_equal(dht_self_pk(e), id.pk, DHT_PK_LEN);
  uint8_t nid[DHT_ID_LEN];
  dht_id_from_pk(nid, id.pk);
  assert_memory_equal(dht_self_id(e), nid, DHT_ID_LEN);
  dht_del(e);
  dht_del(NULL);
  /* a random source is required */
  dht_callbacks nocb = {NULL, NULL, NULL};
  assert_int_equal(dht_new(&e, &id, &s, &nocb, NULL, 0), DHT_ERR_INVAL);
  assert_int_equal(dht_new(&e, NULL, &s, &cb, NULL, 0), DHT_ERR_INVAL);
}

static void test_client_mode(void **state) {
  (void)state;
  net w;
  net_init(&w, 30, NULL);
  net_join(&w, 0, 30);
  dht_settings cs;
  dht_settings_default(&cs);
  cs.server_mode = false;
  int c = net_add(&w, &cs);
  dht_peer seed = net_peer(&w, 0);
  int64_t cmd = dht_bootstrap(w.n[c].e, &seed, 1, w.now);
  mev *m = net_wait(&w, c, DHT_EV_BOOTSTRAP, cmd, 60000);
  assert_int_equal(m->ev.status, 0);
  assert_true(m->ev.u.bootstrap.table_size >= 20);

  /* its lookups work */
  tu_rng rng;
  tu_rng_init(&rng, g_seed, 0xc1);
  int64_t cmds[10];
  uint8_t target[DHT_ID_LEN];
  for (int i = 0; i < 10; i++) {
    tu_rng_bytes(&rng, target, sizeof target);
    cmds[i] = dht_find_node(w.n[c].e, target, w.now);
    assert_true(cmds[i] > 0);
  }
  for (int i = 0; i < 10; i++) {
    m = net_wait(&w, c, DHT_EV_LOOKUP, cmds[i], 60000);
    assert_int_equal(m->ev.status, 0);
    assert_true(m->has_res);
    /* the true closest servers: the client itself is never a result */
    assert_true_closest(&w, &m->res, c, 20);
  }
  /* let refreshes and liveness pings run a while */
  net_run(&w, w.now + 20 * 60 * 1000, NULL, NULL);

  /* no server has the client in its table; a server that joined the same
   * way is in many */
  int with_last = 0;
  for (int i = 0; i < 30; i++) {
    assert_false(table_has(w.n[i].e, w.n[c].id.pk));
    if (i != 29 && table_has(w.n[i].e, w.n[29].id.pk))
      with_last++;
  }
  assert_true(with_last >= 10);
  /* and no lookup ever returns it */
  for (int i = 0; i < 5; i++) {
    cmd = dht_find_node(w.n[i].e, w.n[c].nid, w.now);
    m = net_wait(&w, i, DHT_EV_LOOKUP, cmd, 60000);
    assert_int_equal(m->ev.status, 0);
    for (int j = 0; j < m->res.ncontacts; j++)
      assert_memory_not_equal(m->res.contacts[j].pk, w.n[c].id.pk, DHT_PK_LEN);
  }
  net_free(&w);
}

int main(void) {
  if (sodium_init() < 0)
    return 1;
  g_seed = tu_seed("engine");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ping_roundtrip),   cmocka_unit_test(test_reply_mismatch),
      cmocka_unit_test(test_drop_counters),    cmocka_unit_test(test_drop_ratelimit),
      cmocka_unit_test(test_drop_caps),        cmocka_unit_test(test_put),
      cmocka_unit_test(test_amplification),    cmocka_unit_test(test_snapshot),
      cmocka_unit_test(test_warm_restart),     cmocka_unit_test(test_service_add),
      cmocka_unit_test(test_service_messages), cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_lookup_all_down),  cmocka_unit_test(test_bootstrap_unreachable),
      cmocka_unit_test(test_lookup_deadline),  cmocka_unit_test(test_settings),
      cmocka_unit_test(test_client_mode),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_svc.c - the engine's service interface at the lowest layer: a few
 * engines wired by hand, a counter clock, every byte on the wire counted per
 * destination.
 *
 * What it proves:
 *  - a service's answers to an address that has not proven it can receive
 *    never exceed amplification_factor x what that address sent, however
 *    many datagrams the service tries, also when the source is spoofed; a
 *    proven address gets everything;
 *  - services' requests: the answer (type, txid and key must match) reaches
 *    on_answer with the owner's tag; retransmissions and the final timeout;
 *    a soft timeout, then a late answer; cancel by tag; the timeout comes
 *    from the engine's RTT estimate;
 *  - a command a service owns reports to the service and not to the driver,
 *    also when it finished inside the call that issued it; unsolicited
 *    events are offered to services first;
 *  - the verify PING toward one destination prefix is rate-limited;
 *  - a stranger that asks to be stored is offered to services first
 *    (DHT_EV_CANDIDATE): one that takes it stops the verify PING and inserts
 *    the stranger itself (dht_svc_add_contact); untaken, the PING goes out;
 *  - switching to client mode re-publishes a record that says so.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>
#include <sodium.h>
#include <string.h>

#include "dht_int.h"
#include "drive1.h"
#include "testutil.h"

static uint64_t g_seed;

#define UNIX_MS 1700000000000ll
#define HN 6
#define LAT 10 /* one-way latency, ms */

typedef struct pkt {
  dht_ts at;
  dht_addr from, to;
  uint16_t len;
  uint8_t data[DHT_MAX_PKT];
} pkt;

typedef struct hw {
  int n;
  dht *e[HN];
  dht_identity id[HN];
  dht_addr addr[HN];
  tu_rng rng[HN];
  dht_ts now;
  pkt *q;
  int nq, capq;
  uint64_t bytes_to[HN][HN]; /* [from][to] on the wire */
  uint64_t outside_bytes;    /* to addresses of no node */
  int outside_pkts;
  dht_event ev[256]; /* the driver's events (lookup results not kept) */
  int evnode[256];
  int rec_flags[256]; /* a lookup's record flags, -1 without a record */
  int nev;
} hw;

static dht_addr haddr(int i) {
  return tu_addr4(10, 1, (uint8_t)i, 1, 4000); /* one /24 each */
}

static void hw_init(hw *w, int n, const dht_settings *s) {
  memset(w, 0, sizeof *w);
  w->n = n;
  w->now = 1000;
  for (int i = 0; i < n; i++) {
    tu_identity(&w->id[i], g_seed, 0x500 + (uint64_t)i);
    tu_rng_init(&w->rng[i], g_seed, 0x600 + (uint64_t)i);
    w->addr[i] = haddr(i);
    dht_callbacks cb = {&w->rng[i], tu_rand_cb, NULL};
    assert_int_equal(dht_new(&w->e[i], &w->id[i], s, &cb, NULL, w->now), 0);
    dht_set_clock_offset(w->e[i], UNIX_MS);
  }
}

static void hw_free(hw *w) {
  for (int i = 0; i < w->n; i++)
    dht_del(w->e[i]);
  free(w->q);
}

static dht_peer hpeer(const hw *w, int i) {
  dht_peer p;
  memcpy(p.pk, w->id[i].pk, DHT_PK_LEN);
  p.addr = w->addr[i];
  return p;
}

static int node_at(const hw *w, const dht_addr *a) {
  for (int i = 0; i < w->n; i++)
    if (dht_addr_eq(&w->addr[i], a))
      return i;
  return -1;
}

static void drain(hw *w, int i) {
  for (;;) {
    if (w->nq == w->capq) {
      w->capq = w->capq ? 2 * w->capq : 64;
      w->q = realloc(w->q, (size_t)w->capq * sizeof *w->q);
      assert_non_null(w->q);
    }
    pkt *p = &w->q[w->nq];
    dht_ssize n = d1_write(w->e[i], &p->to, p->data, sizeof p->data, w->now);
    assert_true(n >= 0);
    if (n == 0)
      break;
    int to = node_at(w, &p->to);
    if (to >= 0) {
      w->bytes_to[i][to] += (uint64_t)n;
    } else {
      w->outside_bytes += (uint64_t)n;
      w->outside_pkts++;
      continue;
    }
    p->at = w->now + LAT;
    p->from = w->addr[i];
    p->len = (uint16_t)n;
    w->nq++;
  }
  dht_event ev;
  while (dht_poll_event(w->e[i], &ev) == 0)
    if (w->nev < 256) {
      w->evnode[w->nev] = i;
      w->rec_flags[w->nev] = -1;
      if (ev.type == DHT_EV_LOOKUP && ev.u.lookup && ev.u.lookup->has_record)
        w->rec_flags[w->nev] = ev.u.lookup->record.flags;
      w->ev[w->nev] = ev;
      w->ev[w->nev].u.lookup = NULL;
      w->nev++;
    }
}

/* Runs the clock to until: deliveries in order, timers when due. */
static void hw_run(hw *w, dht_ts until) {
  for (;;) {
    for (int i = 0; i < w->n; i++)
      drain(w, i);
    dht_ts t = until + 1;
    for (int k = 0; k < w->nq; k++)
      if (w->q[k].at < t)
        t = w->q[k].at;
    for (int i = 0; i < w->n; i++) {
      dht_ts x = dht_get_expiry(w->e[i]);
      if (x < t)
        t = x;
    }
    if (t > until) {
      w->now = until;
      return;
    }
    if (t > w->now)
      w->now = t;
    for (int k = 0; k < w->nq;) {
      if (w->q[k].at > w->now) {
        k++;
        continue;
      }
      pkt p = w->q[k];
      memmove(&w->q[k], &w->q[k + 1], (size_t)(w->nq - k - 1) * sizeof *w->q);
      w->nq--;
      int to = node_at(w, &p.to);
      assert_int_equal(d1_read(w->e[to], &p.from, p.data, p.len, w->now), 0);
    }
    for (int i = 0; i < w->n; i++)
      if (dht_get_expiry(w->e[i]) <= w->now)
        assert_int_equal(dht_handle_expiry(w->e[i], w->now), 0);
  }
}

static int count_ev(const hw *w, int node, int type, int64_t cmd) {
  int c = 0;
  for (int i = 0; i < w->nev; i++)
    if (w->evnode[i] == node && w->ev[i].type == type && (cmd == 0 || w->ev[i].cmd == cmd))
      c++;
  return c;
}

static size_t body3(uint8_t *buf, size_t cap, uint8_t type, uint32_t txid, size_t padlen) {
  static const uint8_t zeros[DHT_MAX_BODY];
  dht_wire_w w;
  dht_wire_w_init(&w, buf, cap);
  dht_wire_w_array(&w, 3);
  dht_wire_w_uint(&w, type);
  dht_wire_w_uint(&w, txid);
  dht_wire_w_bin(&w, zeros, padlen);
  assert_int_equal(w.err, 0);
  return w.len;
}

/* ---- a test service ------------------------------------------------------- */

#define T_REQ 0x40
#define T_ANS 0x41
#define T_BIG 0x42 /* answered with `burst` datagrams of ~1,000 bytes */

typedef struct tsvc {
  int id;
  uint8_t last_from[DHT_PK_LEN]; /* the key the last on_msg datagram came from */
  int last_key;                  /* and which of our keys it was sealed to */
  int burst;                     /* datagrams sent for each T_BIG */
  bool silent;                   /* do not answer T_REQ */
  int msgs, answers, soft, timeouts;
  uint64_t last_tag;
  int32_t last_aux;
  dht_ts last_at;
  int events, own_lookups;
  bool take_unsolicited;
  int unsolicited;
  int candidates;     /* DHT_EV_CANDIDATE offered */
  dht_peer candidate; /* the last one */
  uint32_t cand_local;
  int sock_events, socks_n, sock_status;
  uint32_t socks[8];
} tsvc;

static void ts_msg(void *ctx, dht *e, const dht_msg_in *in, dht_ts now) {
  tsvc *t = ctx;
  (void)now;
  t->msgs++;
  memcpy(t->last_from, in->from.pk, DHT_PK_LEN);
  t->last_key = in->key;
  uint8_t out[DHT_MAX_BODY];
  if (in->type == T_REQ && !t->silent) {
    size_t n = body3(out, sizeof out, T_ANS, in->txid, 4);
    assert_int_equal(dht_svc_send(e, &in->from, NULL, out, n), 0);
  } else if (in->type == T_BIG) {
    for (int i = 0; i < t->burst; i++) {
      size_t n = body3(out, sizeof out, T_ANS, in->txid, 1000);
      assert_int_equal(dht_svc_send(e, &in->from, NULL, out, n), 0); /* dropped or not */
    }
  }
}

static void ts_answer(void *ctx, dht *e, const dht_req *req, const dht_msg_in *in, dht_ts now) {
  tsvc *t = ctx;
  (void)e;
  assert_int_equal(in->type, T_ANS);
  assert_int_equal(in->txid, req->txid);
  t->answers++;
  t->last_key = in->key;
  t->last_tag = req->tag;
  t->last_aux = req->aux;
  t->last_at = now;
}

static void ts_timeout(void *ctx, dht *e, const dht_req *req, bool soft, dht_ts now) {
  tsvc *t = ctx;
  (void)e;
  if (soft)
    t->soft++;
  else
    t->timeouts++;
  t->last_tag = req->tag;
  t->last_at = now;
}

static bool ts_event(void *ctx, dht *e, const dht_event *ev, dht_ts now) {
  tsvc *t = ctx;
  (void)e, (void)now;
  t->events++;
  if (ev->cmd == 0) {
    t->unsolicited++;
    if (ev->type == DHT_EV_CANDIDATE) {
      t->candidates++;
      t->candidate = ev->u.candidate.peer;
      t->cand_local = ev->u.candidate.local;
      uint8_t id[DHT_ID_LEN];
      dht_id_from_pk(id, ev->u.candidate.peer.pk);
      assert_memory_equal(id, ev->u.candidate.id, DHT_ID_LEN);
    }
    return t->take_unsolicited;
  }
  if (ev->type == DHT_EV_LOOKUP)
    t->own_lookups++;
  if (ev->type == DHT_EV_SOCK_OPENED) {
    t->sock_events++;
    t->sock_status = ev->status;
    t->socks_n = ev->u.sock.n;
    for (int i = 0; i < ev->u.sock.n && i < 8; i++)
      t->socks[i] = ev->u.sock.ids[i];
  }
  return false;
}

static int ts_add(dht *e, tsvc *t) {
  dht_service s = {.type_lo = 0x40,
                   .type_hi = 0x4f,
                   .ctx = t,
                   .on_msg = ts_msg,
                   .on_answer = ts_answer,
                   .on_timeout = ts_timeout,
                   .on_event = ts_event};
  t->id = dht_service_add(e, &s);
  assert_true(t->id > 0);
  return t->id;
}

static int send_req(hw *w, int from, tsvc *t, int to, uint8_t type, size_t pad,
                    const dht_req_opts *o) {
  uint8_t body[DHT_MAX_BODY];
  size_t n = body3(body, sizeof body, type, dht_svc_txid(w->e[from]), pad);
  dht_peer p = hpeer(w, to);
  return dht_svc_request(w->e[from], t->id, &p, body, n, o, w->now);
}

/* ---- amplification -------------------------------------------------------- */

/* B's service answers a 100-byte request with 5 datagrams of ~1 KB.  To an
 * address that never proved itself, at most 3x the request leaves B. */
static void test_amplification_unproven(void **state) {
  (void)state;
  hw w;
  hw_init(&w, 2, NULL);
  tsvc a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  ts_add(w.e[0], &a);
  ts_add(w.e[1], &b);
  b.burst = 5;
  dht_req_opts o = {.answer = T_ANS};
  assert_int_equal(send_req(&w, 0, &a, 1, T_BIG, 20, &o), 0);
  drain(&w, 0);
  uint64_t req_bytes = w.bytes_to[0][1];
  assert_true(req_bytes > 0 && req_bytes < 200);
  hw_run(&w, w.now + 100);
  uint64_t ans_bytes = w.bytes_to[1][0];
  printf("unproven: request %llu B, answers %llu B\n", (unsigned long long)req_bytes,
         (unsigned long long)ans_bytes);
  assert_true(ans_bytes <= 3 * req_bytes);
  dht_stats st;
  dht_get_stats(w.e[1], &st);
  assert_int_equal(st.drop_amplification, 5); /* none fits 3 x ~110 bytes */

  /* B asks A something and A answers: A has proven its address to B, and
   * the same request now gets all five. */
  dht_peer pa = hpeer(&w, 0);
  assert_true(dht_ping(w.e[1], &pa, w.now) > 0);
  hw_run(&w, w.now + 100);
  assert_int_equal(count_ev(&w, 1, DHT_EV_PING, 0), 1);
  uint64_t before = w.bytes_to[1][0];
  assert_int_equal(send_req(&w, 0, &a, 1, T_BIG, 20, &o), 0);
  hw_run(&w, w.now + 100);
  assert_true(w.bytes_to[1][0] - before > 5 * 1000);
  dht_get_stats(w.e[1], &st);
  assert_int_equal(st.drop_amplification, 5); /* no new drops */
  hw_free(&w);
}

/* An attacker C seals requests under its own key but gives a victim's
 * address as the source.  Whatever B's service answers goes to the victim:
 * at most 3x what the attacker sent, in total. */
static void test_amplification_spoofed(void **state) {
  (void)state;
  hw w;
  hw_init(&w, 3, NULL);
  tsvc b, c;
  memset(&b, 0, sizeof b);
  memset(&c, 0, sizeof c);
  ts_add(w.e[1], &b);
  ts_add(w.e[2], &c);
  b.burst = 8;
  dht_addr victim = tu_addr4(192, 0, 2, 77, 9999);
  uint64_t sent = 0;
  for (int i = 0; i < 20; i++) {
    uint8_t body[DHT_MAX_BODY];
    size_t n = body3(body, sizeof body, T_BIG, dht_svc_txid(w.e[2]), (size_t)(i * 37 % 400));
    dht_peer pb = hpeer(&w, 1);
    dht_req_opts o = {.answer = T_ANS};
    assert_int_equal(dht_svc_request(w.e[2], c.id, &pb, body, n, &o, w.now), 0);
    uint8_t dg[DHT_MAX_PKT];
    dht_addr to;
    dht_ssize dl = d1_write(w.e[2], &to, dg, sizeof dg, w.now);
    assert_true(dl > 0);
    sent += (uint64_t)dl;
    assert_int_equal(d1_read(w.e[1], &victim, dg, (size_t)dl, w.now), 0);
    drain(&w, 1);
    w.now += 50;
  }
  printf("spoofed: attacker sent %llu B, victim got %llu B in %d datagrams\n",
         (unsigned long long)sent, (unsigned long long)w.outside_bytes, w.outside_pkts);
  assert_true(w.outside_bytes <= 3 * sent);
  dht_stats st;
  dht_get_stats(w.e[1], &st);
  assert_true(st.drop_amplification > 0);
  assert_int_equal(st.drop_amplification + (uint64_t)w.outside_pkts, 20 * (uint64_t)b.burst);
  hw_free(&w);
}

/* ---- requests ------------------------------------------------------------- */

static void test_request_answer_and_timeout(void **state) {
  (void)state;
  hw w;
  hw_init(&w, 2, NULL);
  tsvc a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  ts_add(w.e[0], &a);
  ts_add(w.e[1], &b);

  /* answered: the owner's tag and aux come back, after one round trip */
  dht_req_opts o = {.answer = T_ANS, .tag = 0x1234567890ull, .aux = -7, .tries = 3};
  dht_ts t0 = w.now;
  assert_int_equal(send_req(&w, 0, &a, 1, T_REQ, 8, &o), 0);
  assert_int_equal(dht_svc_pending(w.e[0], a.id), 1);
  hw_run(&w, w.now + 5000);
  assert_int_equal(a.answers, 1);
  assert_int_equal(a.timeouts, 0);
  assert_int_equal(a.last_tag, 0x1234567890ull);
  assert_int_equal(a.last_aux, -7);
  assert_int_equal(a.last_at, t0 + 2 * LAT);
  assert_int_equal(dht_svc_pending(w.e[0], a.id), 0);

  /* an answer of the wrong type, or from another key, is not the answer */
  b.silent = true;
  dht_req_opts o2 = {.answer = T_ANS + 2, .tries = 1, .timeout_ms = 300};
  assert_int_equal(send_req(&w, 0, &a, 1, T_REQ, 8, &o2), 0);
  b.silent = false; /* B answers T_ANS, not T_ANS + 2 */
  hw_run(&w, w.now + 1000);
  assert_int_equal(a.answers, 1);
  assert_int_equal(a.timeouts, 1);

  /* silent peer: tries sends in all, each after the try's timeout, then one
   * timeout to the owner */
  b.silent = true;
  dht_stats st0, st1;
  dht_get_stats(w.e[0], &st0);
  uint64_t bytes0 = w.bytes_to[0][1];
  dht_req_opts o3 = {.answer = T_ANS, .tries = 3, .timeout_ms = 250, .tag = 9};
  t0 = w.now;
  assert_int_equal(send_req(&w, 0, &a, 1, T_REQ, 8, &o3), 0);
  hw_run(&w, w.now + 5000);
  dht_get_stats(w.e[0], &st1);
  assert_int_equal(st1.svc_retries - st0.svc_retries, 2);
  assert_int_equal(st1.svc_timeouts - st0.svc_timeouts, 1);
  assert_int_equal(a.timeouts, 2);
  assert_int_equal(a.last_tag, 9);
  assert_int_equal(a.last_at, t0 + 3 * 250);
  assert_true(w.bytes_to[0][1] - bytes0 > 0);

  /* soft timeout, then the late answer still arrives */
  b.silent = false;
  dht_req_opts o4 = {.answer = T_ANS, .tries = 1, .soft_ms = 5, .timeout_ms = 1000};
  assert_int_equal(send_req(&w, 0, &a, 1, T_REQ, 8, &o4), 0);
  hw_run(&w, w.now + 2000);
  assert_int_equal(a.soft, 1);
  assert_int_equal(a.answers, 2);
  assert_int_equal(a.timeouts, 2);

  /* cancelled by tag: no answer, no timeout */
  b.silent = true;
  dht_req_opts o5 = {.answer = T_ANS, .tries = 2, .timeout_ms = 100, .tag = 77};
  assert_int_equal(send_req(&w, 0, &a, 1, T_REQ, 8, &o5), 0);
  assert_int_equal(send_req(&w, 0, &a, 1, T_REQ, 8, &o5), 0);
  assert_int_equal(dht_svc_cancel(w.e[0], a.id, 77), 2);
  hw_run(&w, w.now + 2000);
  assert_int_equal(a.timeouts, 2);
  assert_int_equal(dht_svc_pending(w.e[0], a.id), 0);

  /* bad requests */
  uint8_t body[64];
  size_t n = body3(body, sizeof body, 0x30, 1, 0); /* outside the range */
  dht_peer pb = hpeer(&w, 1);
  dht_req_opts ok = {.answer = T_ANS};
  assert_int_equal(dht_svc_request(w.e[0], a.id, &pb, body, n, &ok, w.now), DHT_ERR_INVAL);
  n = body3(body, sizeof body, T_REQ, 1, 0);
  dht_req_opts bad = {.answer = 0x30};
  assert_int_equal(dht_svc_request(w.e[0], a.id, &pb, body, n, &bad, w.now), DHT_ERR_INVAL);
  bad = ok;
  bad.tries = 9;
  assert_int_equal(dht_svc_request(w.e[0], a.id, &pb, body, n, &bad, w.now), DHT_ERR_INVAL);
  assert_int_equal(dht_svc_request(w.e[0], a.id + 1, &pb, body, n, &ok, w.now), DHT_ERR_INVAL);
  assert_int_equal(dht_svc_request(w.e[0], a.id, &pb, body, n, &ok, w.now), 0);
  /* the same txid while it is outstanding */
  assert_int_equal(dht_svc_request(w.e[0], a.id, &pb, body, n, &ok, w.now), DHT_ERR_INVAL);
  hw_free(&w);
}

/* The per-try timeout: the ceiling for a peer the engine knows nothing of,
 * the measured RTT once it has one. */
static void test_request_timeout_estimate(void **state) {
  (void)state;
  dht_settings s;
  dht_settings_default(&s);
  hw w;
  hw_init(&w, 3, &s);
  assert_int_equal(dht_peer_timeout(w.e[0], w.id[1].pk), s.rpc_timeout_max_ms);
  /* B joins through A: A learns B's RTT (2 x LAT) */
  dht_peer pa = hpeer(&w, 0);
  assert_true(dht_bootstrap(w.e[1], &pa, 1, w.now) > 0);
  hw_run(&w, w.now + 3000);
  dht_peer pb = hpeer(&w, 1);
  assert_true(dht_ping(w.e[0], &pb, w.now) > 0);
  hw_run(&w, w.now + 1000);
  dht_ts tb = dht_peer_timeout(w.e[0], w.id[1].pk);
  printf("timeout for a measured peer: %lld ms (ceiling %lld)\n", (long long)tb,
         (long long)s.rpc_timeout_max_ms);
  assert_true(tb >= s.rpc_timeout_min_ms && tb < s.rpc_timeout_max_ms);
  /* a peer A never measured gets the engine-wide estimate, not the ceiling */
  dht_ts tc = dht_peer_timeout(w.e[0], w.id[2].pk);
  assert_true(tc < s.rpc_timeout_max_ms);
  hw_free(&w);
}

/* ---- sending keys ------------------------------------------------------------ */

/* A request under a key that is not A's identity: B sees only that key, its
 * answer comes back sealed to it; nobody can start a conversation with it. */
static void test_sending_key(void **state) {
  (void)state;
  hw w;
  hw_init(&w, 2, NULL);
  tsvc a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  ts_add(w.e[0], &a);
  ts_add(w.e[1], &b);
  dht_identity k;
  tu_identity(&k, g_seed, 0x777);
  int kh = dht_key_add(w.e[0], &k);
  assert_true(kh > 0);
  dht_req_opts o = {.answer = T_ANS, .key = kh, .timeout_ms = 500};
  assert_int_equal(send_req(&w, 0, &a, 1, T_REQ, 8, &o), 0);
  hw_run(&w, w.now + 1000);
  assert_int_equal(b.msgs, 1);
  assert_memory_equal(b.last_from, k.pk, DHT_PK_LEN); /* not A's identity */
  assert_int_equal(a.answers, 1);
  assert_int_equal(a.last_key, kh);
  assert_int_equal(a.timeouts, 0);

  /* B starts a conversation with the key at A's address: dropped */
  dht_stats st0, st1;
  dht_get_stats(w.e[0], &st0);
  uint8_t body[64];
  size_t n = body3(body, sizeof body, T_REQ, dht_svc_txid(w.e[1]), 0);
  dht_peer to_k = {.addr = w.addr[0]};
  memcpy(to_k.pk, k.pk, DHT_PK_LEN);
  dht_req_opts ob = {.answer = T_ANS, .timeout_ms = 300};
  assert_int_equal(dht_svc_request(w.e[1], b.id, &to_k, body, n, &ob, w.now), 0);
  hw_run(&w, w.now + 1000);
  dht_get_stats(w.e[0], &st1);
  assert_int_equal(a.msgs, 0);
  assert_int_equal(st1.drop_decrypt - st0.drop_decrypt, 1);
  assert_int_equal(b.timeouts, 1);

  /* a removed key: its answer is not opened, the request times out */
  assert_int_equal(send_req(&w, 0, &a, 1, T_REQ, 8, &o), 0);
  drain(&w, 0);
  assert_int_equal(dht_key_remove(w.e[0], kh), 0);
  assert_int_equal(dht_key_remove(w.e[0], kh), DHT_ERR_NOTFOUND);
  hw_run(&w, w.now + 2000);
  assert_int_equal(a.answers, 1);
  assert_int_equal(a.timeouts, 1);
  /* and a request under it is refused */
  assert_int_equal(send_req(&w, 0, &a, 1, T_REQ, 8, &o), DHT_ERR_INVAL);
  hw_free(&w);
}

/* ---- events ---------------------------------------------------------------- */

static void test_owned_events(void **state) {
  (void)state;
  hw w;
  hw_init(&w, 3, NULL);
  tsvc a;
  memset(&a, 0, sizeof a);
  ts_add(w.e[0], &a);
  /* with an empty table the lookup ends inside the call: its event is
   * already queued for the driver, and moves to the owner */
  uint8_t target[DHT_ID_LEN];
  memset(target, 0x77, sizeof target);
  int64_t c1 = dht_find_node(w.e[0], target, w.now);
  assert_true(c1 > 0);
  assert_int_equal(dht_svc_own(w.e[0], a.id, c1), 0);
  hw_run(&w, w.now + 10);
  assert_int_equal(a.own_lookups, 1);
  assert_int_equal(count_ev(&w, 0, DHT_EV_LOOKUP, c1), 0);
  assert_int_equal(dht_svc_own(w.e[0], a.id, c1), DHT_ERR_NOTFOUND);
  assert_int_equal(dht_svc_own(w.e[0], a.id + 1, c1), DHT_ERR_INVAL);

  /* a running lookup: the owner gets it at the end, the driver never */
  dht_peer pa = hpeer(&w, 0);
  for (int i = 1; i < 3; i++)
    assert_true(dht_bootstrap(w.e[i], &pa, 1, w.now) > 0);
  hw_run(&w, w.now + 3000);
  int64_t c2 = dht_find_node(w.e[0], target, w.now);
  assert_int_equal(dht_svc_own(w.e[0], a.id, c2), 0);
  int64_t c3 = dht_find_node(w.e[0], target, w.now); /* not owned */
  hw_run(&w, w.now + 3000);
  assert_int_equal(a.own_lookups, 2);
  assert_int_equal(count_ev(&w, 0, DHT_EV_LOOKUP, c2), 0);
  assert_int_equal(count_ev(&w, 0, DHT_EV_LOOKUP, c3), 1);

  /* unsolicited events are offered to services first: taken, the driver
   * does not see them; declined, it does */
  int seen0 = count_ev(&w, 0, DHT_EV_ADDR_SEEN, 0);
  dht_peer p1 = hpeer(&w, 1);
  a.take_unsolicited = true;
  assert_true(dht_ping(w.e[0], &p1, w.now) > 0);
  hw_run(&w, w.now + 100);
  assert_true(a.unsolicited >= 1);
  assert_int_equal(count_ev(&w, 0, DHT_EV_ADDR_SEEN, 0), seen0);
  a.take_unsolicited = false;
  assert_true(dht_ping(w.e[0], &p1, w.now) > 0);
  hw_run(&w, w.now + 100);
  assert_int_equal(count_ev(&w, 0, DHT_EV_ADDR_SEEN, 0), seen0 + 1);

  /* a removed service: its range is dropped and counted */
  assert_int_equal(dht_service_remove(w.e[0], a.id), 0);
  tsvc b;
  memset(&b, 0, sizeof b);
  ts_add(w.e[1], &b);
  int msgs = a.msgs;
  dht_req_opts o = {.answer = T_ANS, .timeout_ms = 100};
  assert_int_equal(send_req(&w, 1, &b, 0, T_REQ, 0, &o), 0);
  hw_run(&w, w.now + 500);
  assert_int_equal(a.msgs, msgs);
  assert_int_equal(b.timeouts, 1);
  hw_free(&w);
}

/* ---- paths and sockets -------------------------------------------------- */

/* The driver's side of dht_sock_open, by hand: the request reaches the
 * driver, the sockets it opens reach the service, datagrams carry their
 * socket and TTL both ways, and every socket is given back. */
static void test_sockets(void **state) {
  (void)state;
  dht_settings s;
  dht_settings_default(&s);
  s.max_sockets = 4;
  hw w;
  hw_init(&w, 2, &s);
  tsvc a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  ts_add(w.e[0], &a);
  ts_add(w.e[1], &b);
  dht *e = w.e[0];
  assert_int_equal(dht_sock_open(e, a.id, 0, DHT_AF_INET), DHT_ERR_INVAL);
  assert_int_equal(dht_sock_open(e, a.id, 1, 5), DHT_ERR_INVAL);
  assert_int_equal(dht_sock_open(e, a.id, 5, DHT_AF_INET), DHT_ERR_FULL); /* past max_sockets */
  int64_t req = dht_sock_open(e, a.id, 3, DHT_AF_INET);
  assert_true(req > 0);
  dht_event ev;
  assert_int_equal(dht_poll_event(e, &ev), 0);
  assert_int_equal(ev.type, DHT_EV_SOCK_OPEN);
  assert_int_equal(ev.cmd, req);
  assert_int_equal(ev.u.sock.n, 3);
  assert_int_equal(ev.u.sock.family, DHT_AF_INET);
  /* the driver opens two of the three */
  uint32_t ids[2] = {7, 9};
  assert_int_equal(dht_sock_opened(e, req + 1, ids, 2), DHT_ERR_NOTFOUND);
  assert_int_equal(dht_sock_opened(e, req, ids, 2), 0);
  assert_int_equal(dht_sock_opened(e, req, ids, 2), DHT_ERR_NOTFOUND); /* answered */
  assert_int_equal(dht_poll_event(e, &ev), DHT_ERR_NOTFOUND);          /* not the driver's */
  assert_int_equal(a.sock_events, 1);
  assert_int_equal(a.sock_status, 0);
  assert_int_equal(a.socks_n, 2);
  assert_int_equal(a.socks[0], 7);
  assert_int_equal(a.socks[1], 9);

  /* a request from socket 9 with a TTL; the answer comes back on 9 */
  uint8_t body[64];
  size_t n = body3(body, sizeof body, T_REQ, dht_svc_txid(e), 0);
  dht_peer pb = hpeer(&w, 1);
  dht_req_opts o = {.answer = T_ANS, .tx = {.local = 9, .ttl = 3}, .timeout_ms = 500};
  assert_int_equal(dht_svc_request(e, a.id, &pb, body, n, &o, w.now), 0);
  uint8_t dg[DHT_MAX_PKT];
  dht_path path;
  dht_pkt_info pi;
  dht_ssize dl = dht_write_pkt(e, &path, &pi, dg, sizeof dg, w.now);
  assert_true(dl > 0);
  assert_int_equal(path.local, 9);
  assert_int_equal(pi.ttl, 3);
  assert_true(dht_addr_eq(&path.remote, &w.addr[1]));
  /* B sees it as coming from A's address (the driver's port for socket 9
   * would differ; the test keeps the address) and answers */
  dht_path in_b = {.local = 0, .remote = w.addr[0]};
  assert_int_equal(dht_read_pkt(w.e[1], &in_b, dg, (size_t)dl, w.now), 0);
  dl = dht_write_pkt(w.e[1], &path, &pi, dg, sizeof dg, w.now);
  assert_true(dl > 0);
  assert_int_equal(path.local, 0); /* B's answer leaves by the socket the request came in on */
  assert_int_equal(pi.ttl, 0);
  dht_path in_a = {.local = 9, .remote = w.addr[1]};
  assert_int_equal(dht_read_pkt(e, &in_a, dg, (size_t)dl, w.now), 0);
  assert_int_equal(a.answers, 1);

  /* given back: the driver is told; an unknown service or a second time: no */
  assert_int_equal(dht_sock_close(e, a.id, 7), 0);
  assert_int_equal(dht_sock_close(e, a.id, 7), DHT_ERR_NOTFOUND);
  assert_int_equal(dht_sock_close(e, a.id + 1, 9), DHT_ERR_NOTFOUND);
  assert_int_equal(dht_poll_event(e, &ev), 0);
  assert_int_equal(ev.type, DHT_EV_SOCK_CLOSE);
  assert_int_equal(ev.u.sock.id, 7);
  /* a removed service's sockets are closed for it */
  assert_int_equal(dht_service_remove(e, a.id), 0);
  assert_int_equal(dht_poll_event(e, &ev), 0);
  assert_int_equal(ev.type, DHT_EV_SOCK_CLOSE);
  assert_int_equal(ev.u.sock.id, 9);
  assert_int_equal(dht_poll_event(e, &ev), DHT_ERR_NOTFOUND);
  hw_free(&w);
}

/* ---- the verify PING limit ---------------------------------------------- */

/* 40 fresh keys ask A to store them, all from one spoofed /24: A's verify
 * PINGs toward that prefix stop at the bucket's depth. */
static void test_verify_ping_limited(void **state) {
  (void)state;
  dht_settings s;
  dht_settings_default(&s);
  s.rate_pps = 0; /* the receive limit would hide the send limit */
  hw w;
  hw_init(&w, 1, &s);
  for (int i = 0; i < 40; i++) {
    dht_identity id;
    tu_identity(&id, g_seed, 0x900 + (uint64_t)i);
    tu_rng r;
    tu_rng_init(&r, g_seed, 0xa00 + (uint64_t)i);
    dht_callbacks cb = {&r, tu_rand_cb, NULL};
    dht *x;
    assert_int_equal(dht_new(&x, &id, NULL, &cb, NULL, w.now), 0);
    dht_peer pa = hpeer(&w, 0);
    assert_true(dht_ping(x, &pa, w.now) > 0);
    uint8_t dg[DHT_MAX_PKT];
    dht_addr to;
    dht_ssize n = d1_write(x, &to, dg, sizeof dg, w.now);
    assert_true(n > 0);
    dht_addr src = tu_addr4(203, 0, 113, (uint8_t)(i + 1), 4000);
    assert_int_equal(d1_read(w.e[0], &src, dg, (size_t)n, w.now), 0);
    dht_del(x);
  }
  drain(&w, 0);
  dht_stats st;
  dht_get_stats(w.e[0], &st);
  printf("verify pings: %llu sent, %llu limited; %d datagrams to the prefix\n",
         (unsigned long long)st.unsolicited_out, (unsigned long long)st.unsolicited_limited,
         w.outside_pkts);
  assert_int_equal(st.unsolicited_out, (uint64_t)s.unsolicited_burst);
  assert_int_equal(st.unsolicited_limited, 40 - (uint64_t)s.unsolicited_burst);
  /* 40 PONGs and the allowed PINGs */
  assert_int_equal(w.outside_pkts, 40 + s.unsolicited_burst);
  hw_free(&w);
}

/* ---- the candidate seam ----------------------------------------------------- */

static bool in_table(dht *e, const dht_peer *p) {
  dht_peer_info t[64];
  int n = dht_table(e, t, 64);
  for (int i = 0; i < n; i++)
    if (memcmp(t[i].c.pk, p->pk, DHT_PK_LEN) == 0 && dht_addr_eq(&t[i].c.addr, &p->addr))
      return true;
  return false;
}

/* Node 1, a server, pings node 0.  A service on 0 that leaves the
 * candidate alone gets the engine's verify PING (1 is inserted on the
 * PONG); one that takes it stops the PING, and 1 enters the table only when
 * the service calls dht_svc_add_contact, once. */
static void test_candidate(void **state) {
  (void)state;
  for (int take = 0; take <= 1; take++) {
    hw w;
    hw_init(&w, 2, NULL);
    tsvc t;
    memset(&t, 0, sizeof t);
    ts_add(w.e[0], &t);
    t.take_unsolicited = take;
    dht_peer p0 = hpeer(&w, 0), p1 = hpeer(&w, 1);
    assert_true(dht_ping(w.e[1], &p0, w.now) > 0);
    hw_run(&w, w.now + 3000);
    assert_int_equal(t.candidates, 1);
    assert_memory_equal(t.candidate.pk, p1.pk, DHT_PK_LEN);
    assert_true(dht_addr_eq(&t.candidate.addr, &p1.addr));
    assert_int_equal(t.cand_local, 0);
    dht_stats st;
    dht_get_stats(w.e[0], &st);
    assert_int_equal(count_ev(&w, 0, DHT_EV_CANDIDATE, 0), 0); /* never the driver's */
    if (!take) {
      assert_int_equal(st.unsolicited_out, 1);
      assert_int_equal(st.candidates_taken, 0);
      assert_true(in_table(w.e[0], &p1));
      assert_int_equal(dht_svc_add_contact(w.e[0], &p1, w.now), DHT_ERR_INVAL);
    } else {
      assert_int_equal(st.unsolicited_out, 0);
      assert_int_equal(st.candidates_taken, 1);
      assert_false(in_table(w.e[0], &p1));
      assert_int_equal(dht_svc_add_contact(w.e[0], &p1, w.now), 0);
      assert_true(in_table(w.e[0], &p1));
      assert_int_equal(dht_svc_add_contact(w.e[0], &p1, w.now), DHT_ERR_INVAL);
      /* in the table now: not a candidate again */
      assert_true(dht_ping(w.e[1], &p0, w.now) > 0);
      hw_run(&w, w.now + 3000);
      assert_int_equal(t.candidates, 1);
    }
    hw_free(&w);
  }
}

/* ---- modes ---------------------------------------------------------------- */

/* The record flags node asker finds for owner's ID (-1: no record). */
static int find_flags(hw *w, int asker, int owner) {
  int64_t c = dht_get_record(w->e[asker], dht_self_id(w->e[owner]), w->now);
  assert_true(c > 0);
  hw_run(w, w->now + 3000);
  for (int i = w->nev - 1; i >= 0; i--)
    if (w->evnode[i] == asker && w->ev[i].type == DHT_EV_LOOKUP && w->ev[i].cmd == c)
      return w->rec_flags[i];
  fail_msg("no lookup result");
  return -1;
}

static void test_mode_switch(void **state) {
  (void)state;
  hw w;
  hw_init(&w, 4, NULL);
  dht_peer p0 = hpeer(&w, 0);
  for (int i = 1; i < 4; i++)
    assert_true(dht_bootstrap(w.e[i], &p0, 1, w.now) > 0);
  hw_run(&w, w.now + 3000);
  assert_true(dht_is_server(w.e[1]));
  assert_true(dht_put_record(w.e[1], w.now) > 0);
  hw_run(&w, w.now + 3000);
  assert_int_equal(find_flags(&w, 3, 1), DHT_REC_REACHABLE);

  /* to client mode: the record is made again and re-published at once */
  assert_int_equal(dht_set_mode(w.e[1], false, w.now), 0);
  assert_false(dht_is_server(w.e[1]));
  hw_run(&w, w.now + 3000);
  assert_int_equal(find_flags(&w, 3, 1), 0);
  assert_int_equal(find_flags(&w, 2, 1), 0);

  /* and back */
  assert_int_equal(dht_set_mode(w.e[1], true, w.now), 0);
  hw_run(&w, w.now + 3000);
  assert_int_equal(find_flags(&w, 3, 1), DHT_REC_REACHABLE);

  /* switching to the mode it has is a no-op */
  dht_stats st0, st1;
  dht_get_stats(w.e[1], &st0);
  assert_int_equal(dht_set_mode(w.e[1], true, w.now), 0);
  dht_get_stats(w.e[1], &st1);
  assert_int_equal(st1.lookups_started, st0.lookups_started);
  hw_free(&w);
}

/* ---- paths to keys ---------------------------------------------------------- */

static int send_to_key(hw *w, int from, tsvc *t, int to) {
  uint8_t body[DHT_MAX_BODY];
  size_t n = body3(body, sizeof body, T_REQ, dht_svc_txid(w->e[from]), 4);
  dht_peer p;
  memset(&p, 0, sizeof p);
  memcpy(p.pk, w->id[to].pk, DHT_PK_LEN); /* no address: the key's path */
  dht_req_opts o = {.answer = T_ANS, .tries = 1};
  return dht_svc_request(w->e[from], t->id, &p, body, n, &o, w->now);
}

/* A service sends to a key without its address over the path another
 * service set; a key with no path is refused and counted; a fresh
 * datagram from the key at a new address moves the path (its NAT
 * rebound), and the next send goes there. */
static void test_paths(void **state) {
  (void)state;
  hw w;
  hw_init(&w, 3, NULL);
  tsvc t[3];
  memset(t, 0, sizeof t);
  for (int i = 0; i < 3; i++)
    ts_add(w.e[i], &t[i]);
  dht_path bad = {.local = 0};
  assert_int_equal(dht_path_set(w.e[0], w.id[1].pk, &bad, DHT_PATH_PUNCHED, w.now), DHT_ERR_INVAL);
  dht_path p = {.local = 0, .remote = w.addr[1]};
  assert_int_equal(dht_path_set(w.e[0], w.id[1].pk, &p, 0, w.now), DHT_ERR_INVAL);
  assert_int_equal(dht_path_set(w.e[0], w.id[1].pk, &p, DHT_PATH_PUNCHED, w.now), 0);

  assert_int_equal(send_to_key(&w, 0, &t[0], 1), 0);
  hw_run(&w, w.now + 500);
  assert_int_equal(t[0].answers, 1);
  assert_int_equal(t[1].msgs, 1);

  dht_stats st;
  assert_int_equal(send_to_key(&w, 0, &t[0], 2), DHT_ERR_NOTFOUND); /* no path to node 2 */
  dht_get_stats(w.e[0], &st);
  assert_int_equal(st.path_missing, 1);

  /* node 1's NAT gives it another address; its next request moves the path */
  w.addr[1] = tu_addr4(10, 9, 9, 1, 5000);
  assert_int_equal(send_req(&w, 1, &t[1], 0, T_REQ, 4, &(dht_req_opts){.answer = T_ANS}), 0);
  hw_run(&w, w.now + 500);
  assert_int_equal(t[1].answers, 1);
  dht_path_info pi;
  assert_int_equal(dht_path_get(w.e[0], w.id[1].pk, &pi), 0);
  assert_true(dht_addr_eq(&pi.path.remote, &w.addr[1]));
  assert_int_equal(pi.roams, 1);
  assert_int_equal(pi.method, DHT_PATH_PUNCHED);
  assert_int_equal(send_to_key(&w, 0, &t[0], 1), 0);
  hw_run(&w, w.now + 500);
  assert_int_equal(t[0].answers, 2);
  assert_int_equal(w.outside_pkts, 0);
  dht_get_stats(w.e[0], &st);
  assert_int_equal(st.path_roams, 1);
  dht_path_info all[4];
  assert_int_equal(dht_paths_list(w.e[0], all, 4), 1);
  assert_memory_equal(all[0].pk, w.id[1].pk, DHT_PK_LEN);

  assert_int_equal(dht_path_drop(w.e[0], w.id[1].pk), 0);
  assert_int_equal(dht_path_drop(w.e[0], w.id[1].pk), DHT_ERR_NOTFOUND);
  assert_int_equal(send_to_key(&w, 0, &t[0], 1), DHT_ERR_NOTFOUND);
  hw_free(&w);
}

int main(void) {
  g_seed = tu_seed("test_svc");
  if (sodium_init() < 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_amplification_unproven),
      cmocka_unit_test(test_amplification_spoofed),
      cmocka_unit_test(test_request_answer_and_timeout),
      cmocka_unit_test(test_request_timeout_estimate),
      cmocka_unit_test(test_sending_key),
      cmocka_unit_test(test_owned_events),
      cmocka_unit_test(test_sockets),
      cmocka_unit_test(test_verify_ping_limited),
      cmocka_unit_test(test_candidate),
      cmocka_unit_test(test_mode_switch),
      cmocka_unit_test(test_paths),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

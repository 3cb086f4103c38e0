/*
 * test_portmap.c - the port-mapping policy (nat/nat_portmap.c) with fake
 * gateways on a counter clock: leases renewed at half (and what a gateway
 * that grants more, less or almost nothing gets), 725 retried as a
 * permanent lease and renewed anyway, exponential capped backoff (the
 * intervals), the cached gateway dropped and discovered again at once, a
 * gateway that never answers or answers garbage (bounded, reported, late
 * answers ignored), conflicts (718) walking the external port, deletes on
 * stop within the bound (answered, failing, never answered), verified and
 * unverified mappings, a private or reserved WAN address reported while
 * the mapping is still tried, both protocols in parallel, bad settings,
 * allocation failure and the event cap.  Then roostd's two decisions:
 * which socket it maps (never a loopback one: the integration tests' 20-30
 * daemons on 127.0.0.1 send nothing to any gateway), and --portmap.
 *
 * Last, the NAT-PMP adapter (nat_pmp.c, libnatpmp) against a fake gateway
 * on 127.0.0.1:5351: answers, a stray answer, nonsense at line rate, an
 * error code, and no gateway at all (ICMP port unreachable).
 *
 * The policy's tests open no socket: the gateways are the fakes below.  The
 * adapter's test sends to 127.0.0.1 only (a fixed gateway), and skips when
 * the port is taken.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nat_portmap.h"
#include "node_portmap.h"

/* ---- a fake gateway --------------------------------------------------------- */

#define FAKE_MAX 256

typedef struct fake {
  nat_gw_req reqs[FAKE_MAX];
  int n;
  int start_rv; /* what the ops return */
  uint64_t cancelled[FAKE_MAX];
  int ncancel;
} fake;

static int f_start(void *ctx, const nat_gw_req *r) {
  fake *f = ctx;
  assert_true(f->n < FAKE_MAX);
  f->reqs[f->n++] = *r;
  return f->start_rv;
}

static void f_cancel(void *ctx, uint64_t id) {
  fake *f = ctx;
  assert_true(f->ncancel < FAKE_MAX);
  f->cancelled[f->ncancel++] = id;
}

typedef struct rig {
  fake f[NAT_PM_NPROTO];
  nat_gw_ops ops[NAT_PM_NPROTO];
  nat_portmap *pm;
  nat_portmap_settings s;
  dht_ts now;
} rig;

/* on: which protocols the rig offers (bit 1 << proto) */
static void rig_open(rig *r, unsigned on, const nat_portmap_settings *s) {
  memset(r, 0, sizeof *r);
  const nat_gw_ops *ops[NAT_PM_NPROTO] = {NULL, NULL};
  for (int i = 0; i < NAT_PM_NPROTO; i++) {
    r->ops[i] = (nat_gw_ops){&r->f[i], f_start, f_start, f_start, f_cancel};
    if (on & (1u << i))
      ops[i] = &r->ops[i];
  }
  if (s)
    r->s = *s;
  else
    nat_portmap_settings_default(&r->s);
  r->now = 1000;
  assert_int_equal(nat_portmap_new(&r->pm, &r->s, ops, NULL, NULL), 0);
}

static void rig_close(rig *r) {
  nat_portmap_del(r->pm);
}

static const nat_gw_req *last(const rig *r, int proto) {
  assert_true(r->f[proto].n > 0);
  return &r->f[proto].reqs[r->f[proto].n - 1];
}

static dht_addr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  dht_addr x;
  memset(&x, 0, sizeof x);
  x.family = DHT_AF_INET;
  x.ip[0] = a;
  x.ip[1] = b;
  x.ip[2] = c;
  x.ip[3] = d;
  return x;
}

/* Answers the request in flight of proto. */
static void answer(rig *r, int proto, const nat_gw_result *res) {
  assert_int_equal(nat_portmap_done(r->pm, last(r, proto)->id, res, r->now), 0);
}

static void answer_status(rig *r, int proto, int status) {
  nat_gw_result res = {.status = status};
  answer(r, proto, &res);
}

static void answer_ext(rig *r, int proto, dht_addr wan) {
  assert_int_equal(last(r, proto)->op, NAT_GW_OP_EXTERNAL);
  nat_gw_result res = {.status = 0, .wan = wan};
  answer(r, proto, &res);
}

static void answer_add(rig *r, int proto, uint16_t port, uint32_t lease) {
  assert_int_equal(last(r, proto)->op, NAT_GW_OP_ADD);
  nat_gw_result res = {.status = 0, .ext_port = port, .lease_s = lease};
  answer(r, proto, &res);
}

static void expire_at(rig *r, dht_ts t) {
  r->now = t;
  assert_int_equal(nat_portmap_handle_expiry(r->pm, t), 0);
}

static nat_pm_info info(const rig *r, int proto) {
  nat_pm_info in;
  assert_int_equal(nat_portmap_info(r->pm, proto, &in, r->now), 0);
  return in;
}

/* Drains the events; returns how many were of type (and the last in *ev). */
static int events(rig *r, int type, nat_pm_event *ev) {
  int k = 0;
  nat_pm_event e;
  while (nat_portmap_poll_event(r->pm, &e) == 0)
    if (e.type == type) {
      k++;
      if (ev)
        *ev = e;
    }
  return k;
}

/* Starts on port 7464 and maps proto at 1.2.3.4 with lease (granted). */
static void map(rig *r, int proto, uint32_t lease) {
  answer_ext(r, proto, v4(1, 2, 3, 4));
  assert_int_equal(last(r, proto)->lease_s, r->s.lease_s);
  answer_add(r, proto, last(r, proto)->ext_port, lease);
  assert_int_equal(info(r, proto).state, NAT_PM_MAPPED);
}

/* ---- leases ------------------------------------------------------------------ */

static void test_lease_renewed_at_half(void **state) {
  (void)state;
  rig r;
  rig_open(&r, 1u << NAT_PM_UPNP, NULL);
  assert_int_equal(nat_portmap_start(r.pm, 7464, r.now), 0);
  /* the first request finds the gateway: 2 s of SSDP */
  assert_int_equal(r.f[NAT_PM_UPNP].n, 1);
  assert_int_equal(last(&r, NAT_PM_UPNP)->op, NAT_GW_OP_EXTERNAL);
  assert_int_equal(last(&r, NAT_PM_UPNP)->discover_ms, 2000);
  answer_ext(&r, NAT_PM_UPNP, v4(1, 2, 3, 4));
  const nat_gw_req *add = last(&r, NAT_PM_UPNP);
  assert_int_equal(add->op, NAT_GW_OP_ADD);
  assert_int_equal(add->lease_s, 7200);
  assert_int_equal(add->ext_port, 7464);
  assert_int_equal(add->int_port, 7464);
  answer_add(&r, NAT_PM_UPNP, 7464, 7200);
  nat_pm_info in = info(&r, NAT_PM_UPNP);
  assert_int_equal(in.state, NAT_PM_MAPPED);
  assert_int_equal(in.lease_left_ms, 7200 * 1000);
  assert_int_equal(in.ext.port, 7464);
  assert_int_equal(in.ext.ip[0], 1);
  assert_int_equal(in.attempts, 2);
  dht_ts t0 = r.now;
  assert_int_equal(nat_portmap_get_expiry(r.pm), t0 + 3600 * 1000);
  expire_at(&r, t0 + 3600 * 1000 - 1);
  assert_int_equal(r.f[NAT_PM_UPNP].n, 2); /* nothing yet */
  expire_at(&r, t0 + 3600 * 1000);
  assert_int_equal(r.f[NAT_PM_UPNP].n, 3);
  assert_int_equal(last(&r, NAT_PM_UPNP)->op, NAT_GW_OP_EXTERNAL);
  assert_int_equal(last(&r, NAT_PM_UPNP)->discover_ms, 0); /* the cached IGD */
  assert_int_equal(info(&r, NAT_PM_UPNP).state, NAT_PM_RENEWING);
  answer_ext(&r, NAT_PM_UPNP, v4(1, 2, 3, 4));
  assert_int_equal(last(&r, NAT_PM_UPNP)->ext_port, 7464);
  answer_add(&r, NAT_PM_UPNP, 7464, 7200);
  assert_int_equal(nat_portmap_get_expiry(r.pm), r.now + 3600 * 1000);
  assert_int_equal(events(&r, NAT_PM_EV_MAPPED, NULL), 1); /* the same mapping: once */
  rig_close(&r);
}

/* NAT-PMP says what it granted: half of it, never more than half of what we
 * asked, never sooner than renew_min_ms. */
static void test_lease_granted(void **state) {
  (void)state;
  const uint32_t granted[] = {3600, 100000, 10};
  const dht_ts want[] = {1800 * 1000, 3600 * 1000, 30 * 1000};
  for (int k = 0; k < 3; k++) {
    rig r;
    rig_open(&r, 1u << NAT_PM_NATPMP, NULL);
    nat_portmap_start(r.pm, 7464, r.now);
    map(&r, NAT_PM_NATPMP, granted[k]);
    assert_int_equal(info(&r, NAT_PM_NATPMP).next_ms, want[k]);
    assert_int_equal(info(&r, NAT_PM_NATPMP).lease_s, granted[k]);
    dht_ts t0 = r.now;
    int n = r.f[NAT_PM_NATPMP].n;
    if (k == 2) {
      /* 10 s: it lapses at 10 s (lost), and is asked again at 30 s, not sooner */
      assert_int_equal(nat_portmap_get_expiry(r.pm), t0 + 10 * 1000);
      expire_at(&r, t0 + 10 * 1000);
      assert_int_equal(info(&r, NAT_PM_NATPMP).ext.family, 0);
      assert_int_equal(r.f[NAT_PM_NATPMP].n, n);
    }
    assert_int_equal(nat_portmap_get_expiry(r.pm), t0 + want[k]);
    expire_at(&r, t0 + want[k]);
    assert_int_equal(r.f[NAT_PM_NATPMP].n, n + 1);
    rig_close(&r);
  }
}

/* A renewal that keeps failing: the mapping lasts until its lease ends, then
 * it is lost (event) and the state is failed. */
static void test_lease_ends(void **state) {
  (void)state;
  rig r;
  rig_open(&r, 1u << NAT_PM_NATPMP, NULL);
  nat_portmap_start(r.pm, 7464, r.now);
  map(&r, NAT_PM_NATPMP, 120); /* renew at 60 s, lease ends at 120 s */
  dht_ts t0 = r.now;
  events(&r, 0, NULL);
  expire_at(&r, t0 + 60 * 1000);
  answer_status(&r, NAT_PM_NATPMP, NAT_GW_ERR_TIMEOUT); /* with the cache: discover again */
  assert_true(last(&r, NAT_PM_NATPMP)->discover_ms > 0);
  answer_status(&r, NAT_PM_NATPMP, NAT_GW_ERR_NETWORK); /* backoff 30 s */
  nat_pm_info in = info(&r, NAT_PM_NATPMP);
  assert_int_equal(in.state, NAT_PM_MAPPED); /* still held */
  assert_int_equal(in.last_error, NAT_GW_ERR_NETWORK);
  assert_string_equal(in.last_error_text, "the gateway has no usable internet connection");
  assert_int_equal(in.next_ms, 30 * 1000);
  expire_at(&r, t0 + 90 * 1000);
  answer_status(&r, NAT_PM_NATPMP, NAT_GW_ERR_NETWORK); /* next: 60 s later, after the lease */
  assert_int_equal(nat_portmap_get_expiry(r.pm), t0 + 120 * 1000);
  expire_at(&r, t0 + 120 * 1000);
  in = info(&r, NAT_PM_NATPMP);
  assert_int_equal(in.state, NAT_PM_FAILED);
  assert_int_equal(in.ext.family, 0);
  assert_int_equal(events(&r, NAT_PM_EV_LOST, NULL), 1);
  rig_close(&r);
}

/* ---- 725: only permanent leases ------------------------------------------------ */

static void test_permanent_725(void **state) {
  (void)state;
  rig r;
  rig_open(&r, 1u << NAT_PM_UPNP, NULL);
  nat_portmap_start(r.pm, 7464, r.now);
  answer_ext(&r, NAT_PM_UPNP, v4(1, 2, 3, 4));
  assert_int_equal(last(&r, NAT_PM_UPNP)->lease_s, 7200);
  int n = r.f[NAT_PM_UPNP].n;
  answer_status(&r, NAT_PM_UPNP, NAT_UPNP_ERR_ONLY_PERMANENT);
  /* at once, the same port, lease 0 */
  assert_int_equal(r.f[NAT_PM_UPNP].n, n + 1);
  assert_int_equal(last(&r, NAT_PM_UPNP)->op, NAT_GW_OP_ADD);
  assert_int_equal(last(&r, NAT_PM_UPNP)->lease_s, 0);
  assert_int_equal(last(&r, NAT_PM_UPNP)->ext_port, 7464);
  answer_add(&r, NAT_PM_UPNP, 7464, 0);
  nat_pm_info in = info(&r, NAT_PM_UPNP);
  assert_int_equal(in.state, NAT_PM_MAPPED);
  assert_true(in.permanent);
  assert_int_equal(in.lease_left_ms, -1);
  /* renewed anyway, every permanent_renew_ms, still asking for lease 0 */
  dht_ts t0 = r.now;
  assert_int_equal(nat_portmap_get_expiry(r.pm), t0 + 3600 * 1000);
  expire_at(&r, t0 + 3600 * 1000);
  answer_ext(&r, NAT_PM_UPNP, v4(1, 2, 3, 4));
  assert_int_equal(last(&r, NAT_PM_UPNP)->lease_s, 0);
  answer_add(&r, NAT_PM_UPNP, 7464, 0);
  assert_int_equal(nat_portmap_get_expiry(r.pm), r.now + 3600 * 1000);
  /* a second 725 for lease 0 is a plain failure, not a loop */
  expire_at(&r, r.now + 3600 * 1000);
  answer_ext(&r, NAT_PM_UPNP, v4(1, 2, 3, 4));
  n = r.f[NAT_PM_UPNP].n;
  answer_status(&r, NAT_PM_UPNP, NAT_UPNP_ERR_ONLY_PERMANENT);
  assert_int_equal(r.f[NAT_PM_UPNP].n, n); /* a backoff; the IGD answered, so it stays cached */
  assert_int_equal(nat_portmap_get_expiry(r.pm) - r.now, 30 * 1000);
  expire_at(&r, nat_portmap_get_expiry(r.pm));
  assert_int_equal(last(&r, NAT_PM_UPNP)->discover_ms, 0);
  rig_close(&r);
}

/* ---- failures ------------------------------------------------------------------ */

static void test_backoff(void **state) {
  (void)state;
  rig r;
  rig_open(&r, 1u << NAT_PM_NATPMP, NULL);
  nat_portmap_start(r.pm, 7464, r.now);
  const dht_ts want[] = {30, 60, 120, 240, 480, 960, 1800, 1800, 1800};
  for (int k = 0; k < 9; k++) {
    int n = r.f[NAT_PM_NATPMP].n;
    assert_true(last(&r, NAT_PM_NATPMP)->discover_ms > 0); /* never worked: never cached */
    answer_status(&r, NAT_PM_NATPMP, NAT_GW_ERR_NOGATEWAY);
    assert_int_equal(r.f[NAT_PM_NATPMP].n, n); /* nothing at once */
    dht_ts next = nat_portmap_get_expiry(r.pm);
    assert_int_equal(next - r.now, want[k] * 1000);
    assert_int_equal(info(&r, NAT_PM_NATPMP).state, NAT_PM_FAILED);
    assert_int_equal(info(&r, NAT_PM_NATPMP).failures_row, (uint32_t)k + 1);
    expire_at(&r, next - 1);
    assert_int_equal(r.f[NAT_PM_NATPMP].n, n);
    expire_at(&r, next);
    assert_int_equal(r.f[NAT_PM_NATPMP].n, n + 1);
  }
  /* one FAILED event for the whole run of failures */
  nat_pm_event ev;
  assert_int_equal(events(&r, NAT_PM_EV_FAILED, &ev), 1);
  assert_int_equal(ev.error, NAT_GW_ERR_NOGATEWAY);
  /* success resets the backoff */
  map(&r, NAT_PM_NATPMP, 7200);
  assert_int_equal(info(&r, NAT_PM_NATPMP).failures_row, 0);
  assert_int_equal(info(&r, NAT_PM_NATPMP).failures, 9);
  rig_close(&r);
}

/* The cached gateway fails: discover again at once, and only once. */
static void test_cache_dropped(void **state) {
  (void)state;
  rig r;
  rig_open(&r, 1u << NAT_PM_UPNP, NULL);
  nat_portmap_start(r.pm, 7464, r.now);
  map(&r, NAT_PM_UPNP, 7200);
  expire_at(&r, nat_portmap_get_expiry(r.pm));
  assert_int_equal(last(&r, NAT_PM_UPNP)->discover_ms, 0);
  int n = r.f[NAT_PM_UPNP].n;
  answer_status(&r, NAT_PM_UPNP, NAT_GW_ERR_HTTP);
  assert_int_equal(r.f[NAT_PM_UPNP].n, n + 1);
  assert_int_equal(last(&r, NAT_PM_UPNP)->discover_ms, 2000);
  answer_status(&r, NAT_PM_UPNP, NAT_GW_ERR_NOGATEWAY);
  assert_int_equal(r.f[NAT_PM_UPNP].n, n + 1);
  assert_int_equal(nat_portmap_get_expiry(r.pm) - r.now, 30 * 1000);
  rig_close(&r);
}

/* A gateway that never answers: each request costs its bound, is cancelled,
 * reported in words; a late answer is ignored. */
static void test_never_answers(void **state) {
  (void)state;
  rig r;
  rig_open(&r, (1u << NAT_PM_UPNP) | (1u << NAT_PM_NATPMP), NULL);
  nat_portmap_start(r.pm, 7464, r.now);
  dht_ts t0 = r.now;
  uint64_t old_upnp = last(&r, NAT_PM_UPNP)->id, old_pmp = last(&r, NAT_PM_NATPMP)->id;
  assert_int_equal(nat_portmap_get_expiry(r.pm), t0 + 4000); /* NAT-PMP's bound first */
  expire_at(&r, t0 + 4000);
  assert_int_equal(r.f[NAT_PM_NATPMP].ncancel, 1);
  assert_int_equal(r.f[NAT_PM_NATPMP].cancelled[0], old_pmp);
  assert_int_equal(r.f[NAT_PM_UPNP].ncancel, 0);
  expire_at(&r, t0 + 10000);
  assert_int_equal(r.f[NAT_PM_UPNP].ncancel, 1);
  assert_int_equal(r.f[NAT_PM_UPNP].cancelled[0], old_upnp);
  nat_pm_info in = info(&r, NAT_PM_UPNP);
  assert_int_equal(in.state, NAT_PM_FAILED);
  assert_int_equal(in.last_error, NAT_GW_ERR_TIMEOUT);
  assert_string_equal(in.last_error_text, "the gateway did not answer in time");
  assert_int_equal(in.next_ms, 30 * 1000);
  /* the late answer changes nothing */
  nat_gw_result late = {.status = 0, .wan = v4(1, 2, 3, 4)};
  int n = r.f[NAT_PM_UPNP].n;
  assert_int_equal(nat_portmap_done(r.pm, old_upnp, &late, r.now), 0);
  assert_int_equal(r.f[NAT_PM_UPNP].n, n);
  assert_int_equal(info(&r, NAT_PM_UPNP).state, NAT_PM_FAILED);
  nat_pm_stats st;
  nat_portmap_get_stats(r.pm, &st);
  assert_int_equal(st.stale_done, 1);
  /* an id nobody issued */
  assert_int_equal(nat_portmap_done(r.pm, 999999, &late, r.now), 0);
  assert_int_equal(nat_portmap_done(r.pm, last(&r, NAT_PM_UPNP)->id, NULL, r.now), DHT_ERR_INVAL);
  rig_close(&r);
}

/* Answers that make no sense are failures, counted, and back off. */
static void test_garbage(void **state) {
  (void)state;
  for (int k = 0; k < 5; k++) {
    rig r;
    rig_open(&r, 1u << NAT_PM_NATPMP, NULL);
    nat_portmap_start(r.pm, 7464, r.now);
    nat_gw_result res = {.status = 0};
    if (k == 0) { /* EXTERNAL without an address */
      answer(&r, NAT_PM_NATPMP, &res);
    } else if (k == 1) { /* an IPv6 WAN address */
      res.wan.family = DHT_AF_INET6;
      answer(&r, NAT_PM_NATPMP, &res);
    } else {
      answer_ext(&r, NAT_PM_NATPMP, v4(1, 2, 3, 4));
      res.ext_port = k == 2 ? 0 : 7464; /* no port */
      res.lease_s = k == 3 ? 0 : 7200;  /* lease 0 for a lease asked */
      res.wan.family = k == 4 ? 99 : 0; /* a family that does not exist */
      answer(&r, NAT_PM_NATPMP, &res);
    }
    nat_pm_info in = info(&r, NAT_PM_NATPMP);
    assert_int_equal(in.last_error, NAT_GW_ERR_GARBAGE);
    assert_int_equal(in.ext.family, 0);
    if (k >= 2) {
      /* the ADD went to the cached gateway: find it again at once */
      assert_int_equal(in.state, NAT_PM_DISCOVERING);
      assert_true(last(&r, NAT_PM_NATPMP)->discover_ms > 0);
      answer_status(&r, NAT_PM_NATPMP, NAT_GW_ERR_GARBAGE);
      in = info(&r, NAT_PM_NATPMP);
    }
    assert_int_equal(in.state, NAT_PM_FAILED);
    assert_int_equal(in.next_ms, 30 * 1000);
    nat_pm_stats st;
    nat_portmap_get_stats(r.pm, &st);
    assert_int_equal(st.garbage, 1); /* the adapter's own GARBAGE status is not counted here */
    rig_close(&r);
  }
}

/* An op that cannot start is that request's failure. */
static void test_start_fails(void **state) {
  (void)state;
  rig r;
  rig_open(&r, 1u << NAT_PM_NATPMP, NULL);
  r.f[NAT_PM_NATPMP].start_rv = NAT_GW_ERR_NOGATEWAY;
  assert_int_equal(nat_portmap_start(r.pm, 7464, r.now), 0);
  assert_int_equal(r.f[NAT_PM_NATPMP].n, 1);
  nat_pm_info in = info(&r, NAT_PM_NATPMP);
  assert_int_equal(in.state, NAT_PM_FAILED);
  assert_int_equal(in.last_error, NAT_GW_ERR_NOGATEWAY);
  assert_int_equal(nat_portmap_get_expiry(r.pm) - r.now, 30 * 1000);
  rig_close(&r);
}

/* 718: the next external port, port_tries in all, then a failure. */
static void test_conflict(void **state) {
  (void)state;
  rig r;
  rig_open(&r, 1u << NAT_PM_UPNP, NULL);
  nat_portmap_start(r.pm, 7464, r.now);
  answer_ext(&r, NAT_PM_UPNP, v4(1, 2, 3, 4));
  for (int k = 0; k < 3; k++) {
    assert_int_equal(last(&r, NAT_PM_UPNP)->ext_port, 7464 + k);
    answer_status(&r, NAT_PM_UPNP, NAT_UPNP_ERR_CONFLICT);
    assert_int_equal(last(&r, NAT_PM_UPNP)->op, NAT_GW_OP_ADD);
    assert_int_equal(last(&r, NAT_PM_UPNP)->int_port, 7464);
  }
  assert_int_equal(last(&r, NAT_PM_UPNP)->ext_port, 7467);
  int n = r.f[NAT_PM_UPNP].n;
  answer_status(&r, NAT_PM_UPNP, NAT_UPNP_ERR_CONFLICT);
  /* the 4th conflict is a failure: a backoff, then a new cycle (with the
   * cached IGD) from the first port again */
  assert_int_equal(r.f[NAT_PM_UPNP].n, n);
  assert_int_equal(info(&r, NAT_PM_UPNP).last_error, NAT_UPNP_ERR_CONFLICT);
  expire_at(&r, nat_portmap_get_expiry(r.pm));
  assert_int_equal(last(&r, NAT_PM_UPNP)->op, NAT_GW_OP_EXTERNAL);
  assert_int_equal(last(&r, NAT_PM_UPNP)->discover_ms, 0);
  answer_ext(&r, NAT_PM_UPNP, v4(1, 2, 3, 4));
  assert_int_equal(last(&r, NAT_PM_UPNP)->ext_port, 7464);
  /* a free port at last: the mapping says which */
  answer_status(&r, NAT_PM_UPNP, NAT_UPNP_ERR_CONFLICT);
  answer_add(&r, NAT_PM_UPNP, 7465, 7200);
  assert_int_equal(info(&r, NAT_PM_UPNP).ext.port, 7465);
  /* and the renewal asks for that one */
  expire_at(&r, nat_portmap_get_expiry(r.pm));
  answer_ext(&r, NAT_PM_UPNP, v4(1, 2, 3, 4));
  assert_int_equal(last(&r, NAT_PM_UPNP)->ext_port, 7465);
  rig_close(&r);
}

/* ---- stop ---------------------------------------------------------------------- */

static void test_stop_deletes(void **state) {
  (void)state;
  rig r;
  rig_open(&r, (1u << NAT_PM_UPNP) | (1u << NAT_PM_NATPMP), NULL);
  nat_portmap_start(r.pm, 7464, r.now);
  map(&r, NAT_PM_UPNP, 7200);
  map(&r, NAT_PM_NATPMP, 7200);
  assert_false(nat_portmap_is_stopped(r.pm, r.now));
  assert_int_equal(nat_portmap_stop(r.pm, r.now), 0);
  for (int p = 0; p < NAT_PM_NPROTO; p++) {
    assert_int_equal(last(&r, p)->op, NAT_GW_OP_DELETE);
    assert_int_equal(last(&r, p)->ext_port, 7464);
    assert_int_equal(info(&r, p).state, NAT_PM_DELETING);
  }
  assert_false(nat_portmap_is_stopped(r.pm, r.now));
  answer_status(&r, NAT_PM_NATPMP, 0);
  assert_false(nat_portmap_is_stopped(r.pm, r.now));
  assert_int_equal(info(&r, NAT_PM_NATPMP).state, NAT_PM_STOPPED);
  r.now += 50;
  answer_status(&r, NAT_PM_UPNP, NAT_UPNP_ERR_NO_SUCH_ENTRY); /* gone already: fine */
  assert_true(nat_portmap_is_stopped(r.pm, r.now));
  assert_int_equal(info(&r, NAT_PM_UPNP).last_error, 0);
  assert_int_equal(nat_portmap_get_expiry(r.pm), DHT_TS_NEVER);
  assert_int_equal(events(&r, NAT_PM_EV_LOST, NULL), 2);
  /* nothing new after a stop */
  int n = r.f[NAT_PM_UPNP].n;
  expire_at(&r, r.now + 24 * 3600 * 1000);
  assert_int_equal(r.f[NAT_PM_UPNP].n, n);
  assert_int_equal(nat_portmap_start(r.pm, 7464, r.now), DHT_ERR_INVAL);
  rig_close(&r);
}

/* A gateway that never answers the delete: stopped when the bound passes. */
static void test_stop_bound(void **state) {
  (void)state;
  rig r;
  rig_open(&r, 1u << NAT_PM_UPNP, NULL);
  nat_portmap_start(r.pm, 7464, r.now);
  map(&r, NAT_PM_UPNP, 7200);
  dht_ts t0 = r.now;
  nat_portmap_stop(r.pm, t0);
  assert_int_equal(nat_portmap_get_expiry(r.pm), t0 + 3000);
  assert_false(nat_portmap_is_stopped(r.pm, t0 + 2999));
  assert_true(nat_portmap_is_stopped(r.pm, t0 + 3000));
  expire_at(&r, t0 + 3000);
  assert_int_equal(r.f[NAT_PM_UPNP].ncancel, 1);
  nat_pm_info in = info(&r, NAT_PM_UPNP);
  assert_int_equal(in.state, NAT_PM_STOPPED);
  assert_int_equal(in.last_error, NAT_GW_ERR_TIMEOUT);
  rig_close(&r);
}

/* A delete that fails: stopped at once, the failure said. */
static void test_stop_delete_fails(void **state) {
  (void)state;
  rig r;
  rig_open(&r, 1u << NAT_PM_UPNP, NULL);
  nat_portmap_start(r.pm, 7464, r.now);
  map(&r, NAT_PM_UPNP, 7200);
  nat_portmap_stop(r.pm, r.now);
  int n = r.f[NAT_PM_UPNP].n;
  answer_status(&r, NAT_PM_UPNP, 606);
  assert_int_equal(r.f[NAT_PM_UPNP].n, n); /* not retried */
  assert_true(nat_portmap_is_stopped(r.pm, r.now));
  nat_pm_info in = info(&r, NAT_PM_UPNP);
  assert_int_equal(in.state, NAT_PM_STOPPED);
  assert_int_equal(in.last_error, 606);
  assert_string_equal(in.last_error_text, "the gateway refused: not authorized (UPnP 606)");
  /* a delete that cannot even start */
  rig r2;
  rig_open(&r2, 1u << NAT_PM_NATPMP, NULL);
  nat_portmap_start(r2.pm, 7464, r2.now);
  map(&r2, NAT_PM_NATPMP, 7200);
  r2.f[NAT_PM_NATPMP].start_rv = NAT_GW_ERR_IO;
  nat_portmap_stop(r2.pm, r2.now);
  assert_true(nat_portmap_is_stopped(r2.pm, r2.now));
  assert_int_equal(info(&r2, NAT_PM_NATPMP).last_error, NAT_GW_ERR_IO);
  rig_close(&r2);
  rig_close(&r);
}

/* Stop while the ADD is unanswered: it may have been applied, so it is
 * deleted; stop with nothing asked: done at once, no request. */
static void test_stop_inflight(void **state) {
  (void)state;
  rig r;
  rig_open(&r, (1u << NAT_PM_UPNP) | (1u << NAT_PM_NATPMP), NULL);
  nat_portmap_start(r.pm, 7464, r.now);
  answer_ext(&r, NAT_PM_UPNP, v4(1, 2, 3, 4)); /* UPnP: ADD in flight */
  uint64_t add_id = last(&r, NAT_PM_UPNP)->id;
  int npmp = r.f[NAT_PM_NATPMP].n; /* NAT-PMP: EXTERNAL in flight */
  nat_portmap_stop(r.pm, r.now);
  assert_int_equal(r.f[NAT_PM_UPNP].ncancel, 1);
  assert_int_equal(r.f[NAT_PM_UPNP].cancelled[0], add_id);
  assert_int_equal(last(&r, NAT_PM_UPNP)->op, NAT_GW_OP_DELETE);
  assert_int_equal(r.f[NAT_PM_NATPMP].n, npmp); /* nothing to delete */
  assert_int_equal(r.f[NAT_PM_NATPMP].ncancel, 1);
  assert_false(nat_portmap_is_stopped(r.pm, r.now));
  answer_status(&r, NAT_PM_UPNP, 0);
  assert_true(nat_portmap_is_stopped(r.pm, r.now));

  rig r2;
  rig_open(&r2, 1u << NAT_PM_UPNP, NULL);
  assert_int_equal(nat_portmap_stop(r2.pm, r2.now), 0); /* never started */
  assert_true(nat_portmap_is_stopped(r2.pm, r2.now));
  assert_int_equal(r2.f[NAT_PM_UPNP].n, 0);
  rig_close(&r2);
  rig_close(&r);
}

/* ---- verification -------------------------------------------------------------- */

static void test_verified(void **state) {
  (void)state;
  rig r;
  rig_open(&r, (1u << NAT_PM_UPNP) | (1u << NAT_PM_NATPMP), NULL);
  nat_portmap_start(r.pm, 7464, r.now);
  dht_addr out;
  assert_int_equal(nat_portmap_verified(r.pm, NAT_PM_UPNP, true, r.now), 0); /* no mapping */
  map(&r, NAT_PM_UPNP, 7200);
  nat_pm_event ev;
  assert_int_equal(events(&r, NAT_PM_EV_MAPPED, &ev), 1);
  assert_int_equal(ev.proto, NAT_PM_UPNP);
  assert_int_equal(ev.ext.port, 7464);
  assert_int_equal(info(&r, NAT_PM_UPNP).verify, NAT_PM_UNVERIFIED);
  assert_int_equal(nat_portmap_external(r.pm, &out, r.now), DHT_ERR_NOTFOUND);
  assert_int_equal(nat_portmap_verified(r.pm, NAT_PM_UPNP, true, r.now), 0);
  assert_int_equal(info(&r, NAT_PM_UPNP).verify, NAT_PM_VERIFIED);
  assert_int_equal(nat_portmap_external(r.pm, &out, r.now), 0);
  assert_true(dht_addr_eq(&out, &ev.ext));
  /* the NAT-PMP verdict before its mapping is ignored */
  nat_portmap_verified(r.pm, NAT_PM_NATPMP, true, r.now);
  map(&r, NAT_PM_NATPMP, 7200);
  assert_int_equal(info(&r, NAT_PM_NATPMP).verify, NAT_PM_UNVERIFIED);
  /* refuted: it does not count */
  nat_portmap_verified(r.pm, NAT_PM_UPNP, false, r.now);
  assert_int_equal(info(&r, NAT_PM_UPNP).verify, NAT_PM_REFUTED);
  assert_int_equal(nat_portmap_external(r.pm, &out, r.now), DHT_ERR_NOTFOUND);
  nat_portmap_verified(r.pm, NAT_PM_UPNP, true, r.now);
  /* a renewal at another WAN address is a new mapping: unverified again */
  events(&r, 0, NULL);
  expire_at(&r, r.now + 3600 * 1000);
  answer_ext(&r, NAT_PM_UPNP, v4(5, 6, 7, 8));
  answer_add(&r, NAT_PM_UPNP, 7464, 7200);
  assert_int_equal(info(&r, NAT_PM_UPNP).verify, NAT_PM_UNVERIFIED);
  assert_int_equal(events(&r, NAT_PM_EV_MAPPED, &ev), 1);
  assert_int_equal(ev.ext.ip[0], 5);
  /* the same address again keeps the verdict */
  nat_portmap_verified(r.pm, NAT_PM_UPNP, true, r.now);
  expire_at(&r, r.now + 3600 * 1000);
  answer_ext(&r, NAT_PM_UPNP, v4(5, 6, 7, 8));
  answer_add(&r, NAT_PM_UPNP, 7464, 7200);
  assert_int_equal(info(&r, NAT_PM_UPNP).verify, NAT_PM_VERIFIED);
  assert_int_equal(nat_portmap_verified(r.pm, 7, true, r.now), DHT_ERR_INVAL);
  rig_close(&r);
}

/* ---- private or reserved WAN addresses ------------------------------------------ */

static void test_reserved_wan(void **state) {
  (void)state;
  const dht_addr behind[] = {v4(100, 64, 0, 11), v4(10, 0, 0, 1),    v4(192, 168, 1, 1),
                             v4(172, 16, 0, 1),  v4(198, 18, 0, 11), v4(0, 0, 0, 0),
                             v4(203, 0, 113, 9), v4(169, 254, 1, 1)};
  for (size_t k = 0; k < sizeof behind / sizeof behind[0]; k++) {
    rig r;
    rig_open(&r, 1u << NAT_PM_UPNP, NULL);
    nat_portmap_start(r.pm, 7464, r.now);
    answer_ext(&r, NAT_PM_UPNP, behind[k]);
    nat_pm_event ev;
    assert_int_equal(events(&r, NAT_PM_EV_BEHIND, &ev), 1);
    assert_true(dht_addr_eq(&ev.ext, &behind[k]));
    assert_true(info(&r, NAT_PM_UPNP).behind_nat);
    /* tried anyway */
    assert_int_equal(last(&r, NAT_PM_UPNP)->op, NAT_GW_OP_ADD);
    answer_add(&r, NAT_PM_UPNP, 7464, 7200);
    assert_int_equal(info(&r, NAT_PM_UPNP).state, NAT_PM_MAPPED);
    assert_true(info(&r, NAT_PM_UPNP).behind_nat);
    rig_close(&r);
  }
  /* public: not behind; "not connected" (miniupnpc's 2) is behind */
  const dht_addr pub[] = {v4(1, 2, 3, 4), v4(100, 128, 0, 1), v4(172, 32, 0, 1), v4(198, 20, 0, 1)};
  for (size_t k = 0; k < sizeof pub / sizeof pub[0]; k++) {
    rig r;
    rig_open(&r, 1u << NAT_PM_UPNP, NULL);
    nat_portmap_start(r.pm, 7464, r.now);
    answer_ext(&r, NAT_PM_UPNP, pub[k]);
    assert_false(info(&r, NAT_PM_UPNP).behind_nat);
    assert_int_equal(events(&r, NAT_PM_EV_BEHIND, NULL), 0);
    rig_close(&r);
  }
  rig r;
  rig_open(&r, 1u << NAT_PM_UPNP, NULL);
  nat_portmap_start(r.pm, 7464, r.now);
  nat_gw_result res = {.status = 0, .wan = v4(1, 2, 3, 4), .flags = NAT_GW_F_NOT_CONNECTED};
  answer(&r, NAT_PM_UPNP, &res);
  assert_true(info(&r, NAT_PM_UPNP).behind_nat);
  assert_int_equal(events(&r, NAT_PM_EV_BEHIND, NULL), 1);
  assert_int_equal(last(&r, NAT_PM_UPNP)->op, NAT_GW_OP_ADD);
  rig_close(&r);
}

/* ---- both protocols at once ------------------------------------------------------ */

static void test_parallel(void **state) {
  (void)state;
  rig r;
  rig_open(&r, (1u << NAT_PM_UPNP) | (1u << NAT_PM_NATPMP), NULL);
  nat_portmap_start(r.pm, 7464, r.now);
  /* both asked at once, with different ids */
  assert_int_equal(r.f[NAT_PM_UPNP].n, 1);
  assert_int_equal(r.f[NAT_PM_NATPMP].n, 1);
  assert_int_equal(last(&r, NAT_PM_UPNP)->proto, NAT_PM_UPNP);
  assert_int_equal(last(&r, NAT_PM_NATPMP)->proto, NAT_PM_NATPMP);
  assert_int_not_equal(last(&r, NAT_PM_UPNP)->id, last(&r, NAT_PM_NATPMP)->id);
  assert_int_equal(info(&r, NAT_PM_UPNP).state, NAT_PM_DISCOVERING);
  assert_int_equal(info(&r, NAT_PM_NATPMP).state, NAT_PM_DISCOVERING);
  /* UPnP fails; NAT-PMP maps; neither disturbs the other */
  answer_status(&r, NAT_PM_UPNP, NAT_GW_ERR_NOGATEWAY);
  answer_ext(&r, NAT_PM_NATPMP, v4(1, 2, 3, 4));
  assert_int_equal(info(&r, NAT_PM_NATPMP).state, NAT_PM_MAPPING);
  answer_add(&r, NAT_PM_NATPMP, 40000, 7200); /* the gateway picked another port */
  nat_pm_info a = info(&r, NAT_PM_NATPMP), b = info(&r, NAT_PM_UPNP);
  assert_int_equal(a.state, NAT_PM_MAPPED);
  assert_int_equal(a.ext.port, 40000);
  assert_int_equal(b.state, NAT_PM_FAILED);
  assert_int_equal(b.last_error, NAT_GW_ERR_NOGATEWAY);
  assert_string_equal(b.last_error_text, "no gateway found");
  assert_int_equal(a.last_error, 0);
  /* the next event of each comes at its own time */
  assert_int_equal(nat_portmap_get_expiry(r.pm), r.now + 30 * 1000);
  expire_at(&r, r.now + 30 * 1000);
  assert_int_equal(r.f[NAT_PM_UPNP].n, 2);
  assert_int_equal(r.f[NAT_PM_NATPMP].n, 2);
  /* the NAT-PMP renewal asks for the port it was given */
  expire_at(&r, r.now + 3600 * 1000);
  answer_ext(&r, NAT_PM_NATPMP, v4(1, 2, 3, 4));
  assert_int_equal(last(&r, NAT_PM_NATPMP)->ext_port, 40000);
  /* an answer with UPnP's id never lands on NAT-PMP */
  nat_gw_result res = {.status = NAT_GW_ERR_NOGATEWAY};
  assert_int_equal(nat_portmap_done(r.pm, last(&r, NAT_PM_UPNP)->id, &res, r.now), 0);
  assert_int_equal(info(&r, NAT_PM_NATPMP).state, NAT_PM_RENEWING);
  rig_close(&r);
}

/* A protocol left off is never asked; the other runs alone. */
static void test_one_off(void **state) {
  (void)state;
  rig r;
  rig_open(&r, 1u << NAT_PM_NATPMP, NULL);
  nat_portmap_start(r.pm, 7464, r.now);
  assert_int_equal(r.f[NAT_PM_UPNP].n, 0);
  assert_int_equal(info(&r, NAT_PM_UPNP).state, NAT_PM_OFF);
  assert_int_equal(info(&r, NAT_PM_NATPMP).state, NAT_PM_DISCOVERING);
  rig_close(&r);
}

/* ---- settings, memory, events ------------------------------------------------------- */

static void test_settings(void **state) {
  (void)state;
  nat_portmap *pm = NULL;
  nat_portmap_settings s;
  nat_portmap_settings_default(&s);
  assert_int_equal(s.lease_s, 7200);
  assert_int_equal(s.upnp_discover_ms, 2000);
  assert_int_equal(s.stop_timeout_ms, 3000);
  nat_portmap_settings bad[6];
  for (int k = 0; k < 6; k++)
    bad[k] = s;
  bad[0].lease_s = 10;
  bad[1].renew_min_ms = 0;
  bad[2].backoff_max_ms = s.backoff_min_ms - 1;
  bad[3].upnp_timeout_ms = s.upnp_discover_ms;
  bad[4].port_tries = 0;
  bad[5].max_events = 0;
  for (int k = 0; k < 6; k++)
    assert_int_equal(nat_portmap_new(&pm, &bad[k], NULL, NULL, NULL), DHT_ERR_INVAL);
  assert_int_equal(nat_portmap_new(&pm, &s, NULL, NULL, NULL), 0);
  assert_int_equal(nat_portmap_start(pm, 0, 0), DHT_ERR_INVAL);
  assert_int_equal(nat_portmap_start(pm, 7464, 0), 0); /* nothing on: nothing asked */
  assert_int_equal(nat_portmap_get_expiry(pm), DHT_TS_NEVER);
  nat_pm_info in;
  assert_int_equal(nat_portmap_info(pm, 2, &in, 0), DHT_ERR_INVAL);
  nat_portmap_del(pm);
  nat_portmap_del(NULL);
  assert_string_equal(nat_portmap_state_name(NAT_PM_MAPPED), "mapped");
  assert_string_equal(nat_portmap_state_name(99), "?");
  assert_string_equal(nat_portmap_proto_name(NAT_PM_UPNP), "UPnP");
}

static void *no_malloc(void *ctx, size_t n) {
  (void)ctx;
  (void)n;
  return NULL;
}
static void *no_realloc(void *ctx, void *p, size_t n) {
  (void)ctx;
  (void)p;
  (void)n;
  return NULL;
}
static void no_free(void *ctx, void *p) {
  (void)ctx;
  (void)p;
}

static void test_nomem(void **state) {
  (void)state;
  dht_mem m = {NULL, no_malloc, no_realloc, no_free};
  nat_portmap *pm = (nat_portmap *)1;
  assert_int_equal(nat_portmap_new(&pm, NULL, NULL, NULL, &m), DHT_ERR_NOMEM);
}

/* At the cap the oldest events go, counted. */
static void test_event_cap(void **state) {
  (void)state;
  nat_portmap_settings s;
  nat_portmap_settings_default(&s);
  s.max_events = 2;
  rig r;
  rig_open(&r, 1u << NAT_PM_UPNP, &s);
  nat_portmap_start(r.pm, 7464, r.now);
  map(&r, NAT_PM_UPNP, 7200);   /* MAPPED */
  for (int k = 0; k < 3; k++) { /* LOST + MAPPED each */
    expire_at(&r, r.now + 3600 * 1000);
    answer_ext(&r, NAT_PM_UPNP, v4(9, 9, 9, (uint8_t)k));
    answer_add(&r, NAT_PM_UPNP, 7464, 7200);
  }
  nat_pm_stats st;
  nat_portmap_get_stats(r.pm, &st);
  assert_int_equal(st.events_dropped, 5);
  nat_pm_event ev;
  assert_int_equal(nat_portmap_poll_event(r.pm, &ev), 0);
  assert_int_equal(ev.type, NAT_PM_EV_LOST);
  assert_int_equal(nat_portmap_poll_event(r.pm, &ev), 0);
  assert_int_equal(ev.type, NAT_PM_EV_MAPPED);
  assert_int_equal(ev.ext.ip[3], 2);
  assert_int_equal(nat_portmap_poll_event(r.pm, &ev), DHT_ERR_NOTFOUND);
  rig_close(&r);
}

/* ---- roostd: what it maps, and --portmap ---------------------------------------- */

static dht_addr parse(const char *s) {
  dht_addr a;
  assert_int_equal(node_addr_parse(s, &a), 0);
  return a;
}

static void test_node_choose(void **state) {
  (void)state;
  dht_addr out;
  dht_addr lo[] = {parse("127.0.0.1:17464")};
  assert_int_equal(node_portmap_choose(NODE_PORTMAP_AUTO, lo, 1, &out), NODE_PORTMAP_NO_LOOPBACK);
  assert_int_equal(node_portmap_choose(NODE_PORTMAP_UPNP, lo, 1, &out), NODE_PORTMAP_NO_LOOPBACK);
  assert_int_equal(node_portmap_choose(NODE_PORTMAP_NATPMP, lo, 1, &out), NODE_PORTMAP_NO_LOOPBACK);
  dht_addr lo6[] = {parse("[::1]:17464")};
  assert_int_equal(node_portmap_choose(NODE_PORTMAP_AUTO, lo6, 1, &out), NODE_PORTMAP_NO_SOCKET);
  dht_addr any[] = {parse("0.0.0.0:7464"), parse("[::]:7464")};
  assert_int_equal(node_portmap_choose(NODE_PORTMAP_OFF, any, 2, &out), NODE_PORTMAP_NO_MODE);
  assert_int_equal(node_portmap_choose(NODE_PORTMAP_AUTO, any, 2, &out), 0);
  assert_int_equal(out.family, DHT_AF_INET);
  assert_int_equal(out.port, 7464);
  dht_addr dual[] = {parse("[::]:7000")};
  assert_int_equal(node_portmap_choose(NODE_PORTMAP_AUTO, dual, 1, &out), 0);
  assert_int_equal(out.port, 7000);
  dht_addr lan[] = {parse("[::]:7464"), parse("192.168.1.20:7465")};
  assert_int_equal(node_portmap_choose(NODE_PORTMAP_AUTO, lan, 2, &out), 0);
  assert_int_equal(out.port, 7465);
  assert_int_equal(out.ip[3], 20);
  dht_addr pub[] = {parse("1.2.3.4:7464")};
  assert_int_equal(node_portmap_choose(NODE_PORTMAP_AUTO, pub, 1, &out), NODE_PORTMAP_NO_PUBLIC);
  assert_int_equal(node_portmap_choose(NODE_PORTMAP_AUTO, NULL, 0, &out), NODE_PORTMAP_NO_SOCKET);
}

static void test_node_config(void **state) {
  (void)state;
  node_config c;
  char err[256];
  node_config_default(&c);
  assert_int_equal(c.portmap, NODE_PORTMAP_AUTO);
  const char *names[] = {"auto", "upnp", "natpmp", "off"};
  const int want[] = {NODE_PORTMAP_AUTO, NODE_PORTMAP_UPNP, NODE_PORTMAP_NATPMP, NODE_PORTMAP_OFF};
  for (int k = 3; k >= 0; k--) {
    assert_int_equal(node_config_set(&c, "portmap", names[k], "--portmap", err, sizeof err), 0);
    assert_int_equal(c.portmap, want[k]);
  }
  assert_int_equal(node_config_set(&c, "portmap", "yes", "--portmap", err, sizeof err), -1);
  assert_string_equal(err, "--portmap: portmap: 'yes' is not one of auto, upnp, natpmp, off");
  assert_int_equal(c.portmap, NODE_PORTMAP_AUTO);
  /* --mode: auto unless told otherwise; a bad value keeps the last good one */
  node_config_default(&c);
  assert_int_equal(c.mode, NAT_MODE_AUTO);
  const char *modes[] = {"server", "client", "auto"};
  const int mwant[] = {NAT_MODE_SERVER, NAT_MODE_CLIENT, NAT_MODE_AUTO};
  for (int k = 0; k < 3; k++) {
    assert_int_equal(node_config_set(&c, "mode", modes[k], "--mode", err, sizeof err), 0);
    assert_int_equal(c.mode, mwant[k]);
  }
  assert_int_equal(node_config_set(&c, "mode", "public", "--mode", err, sizeof err), -1);
  assert_string_equal(err, "--mode: mode: 'public' is not server, client or auto");
  assert_int_equal(c.mode, NAT_MODE_AUTO);
}

/* ---- the NAT-PMP adapter against a fake gateway on loopback -------------------- */

static int gw_open(void) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  assert_true(s >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(5351)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) {
    close(s);
    return -1;
  }
  return s;
}

/* The next request the fake gateway gets (n bytes into buf), and from whom. */
static ssize_t gw_recv(int s, uint8_t *buf, size_t len, struct sockaddr_in *from) {
  struct pollfd pf = {.fd = s, .events = POLLIN};
  assert_int_equal(poll(&pf, 1, 2000), 1);
  socklen_t fl = sizeof *from;
  return recvfrom(s, buf, len, 0, (struct sockaddr *)from, &fl);
}

static void gw_send(int s, const struct sockaddr_in *to, const uint8_t *buf, size_t len) {
  assert_int_equal(sendto(s, buf, len, 0, (const struct sockaddr *)to, sizeof *to), (ssize_t)len);
}

static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static void put32(uint8_t *p, uint32_t v) {
  put16(p, (uint16_t)(v >> 16));
  put16(p + 2, (uint16_t)v);
}

/* Waits (at most tries x 50 ms) until the adapter completes its request. */
static int pmp_wait_n(nat_pmp *p, uint64_t *id, nat_gw_result *res, int tries) {
  for (int i = 0; i < tries; i++) {
    struct pollfd pf = {.fd = nat_pmp_fd(p), .events = POLLIN};
    int64_t t = nat_pmp_timeout_ms(p);
    poll(&pf, 1, t < 0 || t > 50 ? 50 : (int)t + 1);
    if (nat_pmp_read(p, id, res) == 1)
      return 1;
  }
  return 0;
}

static int pmp_wait(nat_pmp *p, uint64_t *id, nat_gw_result *res) {
  return pmp_wait_n(p, id, res, 100);
}

/* One readable socket, one read: 1 when the request completed. */
static int pmp_step(nat_pmp *p, uint64_t *id, nat_gw_result *res) {
  struct pollfd pf = {.fd = nat_pmp_fd(p), .events = POLLIN};
  assert_int_equal(poll(&pf, 1, 2000), 1);
  return nat_pmp_read(p, id, res);
}

static void test_pmp_adapter(void **state) {
  (void)state;
  int gw = gw_open();
  if (gw < 0) {
    print_message("127.0.0.1:5351 is taken (%s): skipped\n", strerror(errno));
    skip();
  }
  dht_addr lo = v4(127, 0, 0, 1);
  nat_pmp *p;
  assert_int_equal(nat_pmp_new(&p, &lo), 0);
  assert_int_equal(nat_pmp_fd(p), -1);
  uint8_t q[64], a[16];
  struct sockaddr_in from;
  uint64_t id;
  nat_gw_result res;

  /* the external address */
  nat_gw_req r = {.id = 7,
                  .proto = NAT_PM_NATPMP,
                  .op = NAT_GW_OP_EXTERNAL,
                  .int_port = 7464,
                  .discover_ms = 1};
  assert_int_equal(nat_pmp_start(p, &r), 0);
  assert_true(nat_pmp_fd(p) >= 0);
  assert_int_equal(gw_recv(gw, q, sizeof q, &from), 2);
  assert_int_equal(q[0], 0);
  assert_int_equal(q[1], 0);
  memset(a, 0, sizeof a);
  a[1] = 128;
  put32(a + 4, 1000);
  a[8] = 1, a[9] = 2, a[10] = 3, a[11] = 4;
  gw_send(gw, &from, a, 12);
  assert_int_equal(pmp_wait(p, &id, &res), 1);
  assert_int_equal(id, 7);
  assert_int_equal(res.status, NAT_GW_OK);
  assert_int_equal(res.wan.family, DHT_AF_INET);
  assert_int_equal(res.wan.ip[3], 4);

  /* a mapping, after a stray answer (the address again): asked again */
  r = (nat_gw_req){.id = 8,
                   .proto = NAT_PM_NATPMP,
                   .op = NAT_GW_OP_ADD,
                   .int_port = 7464,
                   .ext_port = 7464,
                   .lease_s = 7200};
  assert_int_equal(nat_pmp_start(p, &r), 0);
  assert_int_equal(gw_recv(gw, q, sizeof q, &from), 12);
  assert_int_equal(q[1], 1);                  /* UDP */
  assert_int_equal(q[4] << 8 | q[5], 7464);   /* internal */
  assert_int_equal(q[6] << 8 | q[7], 7464);   /* external */
  assert_int_equal(q[10] << 8 | q[11], 7200); /* lifetime (low half) */
  gw_send(gw, &from, a, 12);
  assert_int_equal(pmp_step(p, &id, &res), 0); /* read, ignored, asked again */
  assert_int_equal(gw_recv(gw, q, sizeof q, &from), 12);
  memset(a, 0, sizeof a);
  a[1] = 129;
  put16(a + 8, 7464);
  put16(a + 10, 40000);
  put32(a + 12, 3600);
  gw_send(gw, &from, a, 16);
  assert_int_equal(pmp_wait(p, &id, &res), 1);
  assert_int_equal(id, 8);
  assert_int_equal(res.status, NAT_GW_OK);
  assert_int_equal(res.ext_port, 40000);
  assert_int_equal(res.lease_s, 3600);

  /* an answer for another internal port, again and again: garbage after a
   * few resends, not a spin */
  r.id = 9;
  assert_int_equal(nat_pmp_start(p, &r), 0);
  put16(a + 8, 1111);
  int sent = 0, done = 0;
  for (int i = 0; i < 20 && !done; i++) {
    assert_int_equal(gw_recv(gw, q, sizeof q, &from), 12);
    gw_send(gw, &from, a, 16);
    sent++;
    done = pmp_step(p, &id, &res);
  }
  assert_int_equal(done, 1);
  assert_int_equal(res.status, NAT_GW_ERR_GARBAGE);
  assert_int_equal(sent, 5);

  /* an error code: not authorized */
  r.id = 10;
  assert_int_equal(nat_pmp_start(p, &r), 0);
  assert_int_equal(gw_recv(gw, q, sizeof q, &from), 12);
  put16(a + 2, 2);
  put16(a + 8, 7464);
  gw_send(gw, &from, a, 16);
  assert_int_equal(pmp_wait(p, &id, &res), 1);
  assert_int_equal(res.status, NAT_GW_ERR_REFUSED);

  /* delete: external port 0, lifetime 0 */
  r = (nat_gw_req){.id = 11,
                   .proto = NAT_PM_NATPMP,
                   .op = NAT_GW_OP_DELETE,
                   .int_port = 7464,
                   .ext_port = 40000};
  assert_int_equal(nat_pmp_start(p, &r), 0);
  assert_int_equal(gw_recv(gw, q, sizeof q, &from), 12);
  assert_int_equal(q[6] << 8 | q[7], 0);
  assert_int_equal(q[8] | q[9] | q[10] | q[11], 0);
  put16(a + 2, 0);
  put16(a + 10, 0);
  put32(a + 12, 0);
  gw_send(gw, &from, a, 16);
  assert_int_equal(pmp_wait(p, &id, &res), 1);
  assert_int_equal(res.status, NAT_GW_OK);

  /* a cancelled request's answer is read and dropped */
  r.id = 12;
  assert_int_equal(nat_pmp_start(p, &r), 0);
  assert_int_equal(gw_recv(gw, q, sizeof q, &from), 12);
  nat_pmp_cancel(p);
  assert_int_equal(nat_pmp_timeout_ms(p), -1);
  gw_send(gw, &from, a, 16);
  assert_int_equal(pmp_wait_n(p, &id, &res, 4), 0);

  /* no NAT-PMP on the gateway: ICMP port unreachable, at once */
  close(gw);
  r.id = 13;
  assert_int_equal(nat_pmp_start(p, &r), 0);
  assert_int_equal(pmp_wait(p, &id, &res), 1);
  assert_int_equal(id, 13);
  assert_int_equal(res.status, NAT_GW_ERR_UNSUPPORTED);
  nat_pmp_del(p);
  nat_pmp_del(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lease_renewed_at_half),
      cmocka_unit_test(test_lease_granted),
      cmocka_unit_test(test_lease_ends),
      cmocka_unit_test(test_permanent_725),
      cmocka_unit_test(test_backoff),
      cmocka_unit_test(test_cache_dropped),
      cmocka_unit_test(test_never_answers),
      cmocka_unit_test(test_garbage),
      cmocka_unit_test(test_start_fails),
      cmocka_unit_test(test_conflict),
      cmocka_unit_test(test_stop_deletes),
      cmocka_unit_test(test_stop_bound),
      cmocka_unit_test(test_stop_delete_fails),
      cmocka_unit_test(test_stop_inflight),
      cmocka_unit_test(test_verified),
      cmocka_unit_test(test_reserved_wan),
      cmocka_unit_test(test_parallel),
      cmocka_unit_test(test_one_off),
      cmocka_unit_test(test_settings),
      cmocka_unit_test(test_nomem),
      cmocka_unit_test(test_event_cap),
      cmocka_unit_test(test_node_choose),
      cmocka_unit_test(test_node_config),
      cmocka_unit_test(test_pmp_adapter),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

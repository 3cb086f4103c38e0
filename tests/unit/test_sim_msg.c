/*
 * test_sim_msg.c - the messaging workload's plug (sim/sim_msg.c through
 * sim_msg_workload): run against a fake run that records what the workload
 * asks of it through sim_run_ops, it is off without pairs, schedules its
 * absences and messages when it starts, takes a recipient out of churn for
 * its absence and back in after, and never lets a friend host leave.  The
 * mailboxes themselves run end to end in tests/sim/test_sim.py.
 *
 * Random inputs come from a seed that is printed; ROOST_SEED=<n> replays it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"

#define MAX_CALLS 256

typedef struct call {
  char what; /* 's' schedule, 'j' schedule_join, 'l' leave, 'd' drive */
  dht_ts at;
  int host;
  uint32_t arg;
  bool keep;
} call;

/* The fake run: every host up, every call recorded. */
typedef struct fake {
  call calls[MAX_CALLS];
  int ncalls;
} fake;

static uint64_t seed;

static void record(void *ctx, char what, dht_ts at, int host, uint32_t arg, bool keep) {
  fake *f = ctx;
  assert_true(f->ncalls < MAX_CALLS);
  f->calls[f->ncalls++] = (call){what, at, host, arg, keep};
}

static void f_schedule(void *ctx, dht_ts at, int host, uint32_t arg) {
  record(ctx, 's', at, host, arg, false);
}
static void f_schedule_join(void *ctx, dht_ts at, int host, uint32_t gen) {
  record(ctx, 'j', at, host, gen, false);
}
static void f_leave(void *ctx, int host, bool keep) {
  record(ctx, 'l', -1, host, 0, keep);
}
static void f_drive(void *ctx, int host) {
  record(ctx, 'd', -1, host, 0, false);
}
static bool f_is_up(const void *ctx, int host) {
  (void)ctx;
  (void)host;
  return true;
}
static dht_addr f_address(const void *ctx, int host) {
  (void)ctx;
  dht_addr a;
  memset(&a, 0, sizeof a);
  a.family = DHT_AF_INET;
  a.ip[0] = 10;
  a.ip[3] = (uint8_t)host;
  a.port = 4000;
  return a;
}
static const dht_identity *f_identity(const void *ctx, int host) {
  (void)ctx;
  (void)host;
  fail_msg("the workload asked for an identity before any host was up");
  return NULL;
}

static sim_run_ops fake_ops(fake *f) {
  sim_run_ops o = {.ctx = f,
                   .schedule = f_schedule,
                   .schedule_join = f_schedule_join,
                   .leave = f_leave,
                   .drive = f_drive,
                   .is_up = f_is_up,
                   .address = f_address,
                   .identity = f_identity};
  return o;
}

static void test_off(void **state) {
  (void)state;
  const sim_workload_ops *wl = sim_msg_workload();
  assert_non_null(wl);
  assert_ptr_equal(wl, sim_msg_workload());
  sim_config c;
  sim_config_default(&c);
  c.seed = seed;
  c.msg_pairs = 0;
  fake f = {.ncalls = 0};
  sim_run_ops run = fake_ops(&f);
  sim_result res;
  memset(&res, 0, sizeof res);
  void *st = (void *)&f;
  assert_int_equal(wl->start(&st, &c, &run, &res, 1000), 0);
  assert_null(st);
  assert_int_equal(f.ncalls, 0);
  assert_int_equal(res.nmsgs, 0);
  wl->stop(NULL);
}

static void test_start_and_churn(void **state) {
  (void)state;
  const sim_workload_ops *wl = sim_msg_workload();
  sim_config c;
  sim_config_default(&c);
  c.seed = seed;
  c.nodes = 40;
  c.msg_pairs = 6;
  c.msg_count = 3;
  c.msg_hosts = 2;
  dht_ts work_start = 60000;
  fake f = {.ncalls = 0};
  sim_run_ops run = fake_ops(&f);
  sim_result res;
  memset(&res, 0, sizeof res);
  void *st = NULL;
  assert_int_equal(wl->start(&st, &c, &run, &res, work_start), 0);
  assert_non_null(st);
  /* per pair: the recipient's absence (away, back) and its sender's messages */
  assert_int_equal(f.ncalls, c.msg_pairs * (2 + c.msg_count));
  assert_int_equal(res.nmsgs, (size_t)(c.msg_pairs * c.msg_count));
  for (int k = 0; k < f.ncalls; k++) {
    assert_int_equal(f.calls[k].what, 's');
    assert_true(f.calls[k].at >= work_start);
    assert_in_range(f.calls[k].host, 0, c.nodes - 1);
  }
  for (size_t i = 0; i < res.nmsgs; i++) {
    const sim_msg_rec *mr = &res.msgs[i];
    assert_int_not_equal(mr->sender, mr->recipient);
    assert_true(mr->host >= 0 && mr->host != mr->sender && mr->host != mr->recipient);
    assert_true(mr->back_ms - mr->offline_ms >= c.msg_offline_min);
    assert_true(mr->back_ms - mr->offline_ms <= c.msg_offline_max);
    assert_true(mr->due_ms > mr->offline_ms && mr->due_ms < mr->back_ms);
    assert_int_equal(mr->sent_ms, -1);
    assert_int_equal(mr->delivered_ms, -1);
    /* friend hosts never leave; the others follow churn of their generation */
    assert_false(wl->leave_ok(st, mr->host, wl->churn_gen(st, mr->host)));
    assert_true(wl->leave_ok(st, mr->sender, wl->churn_gen(st, mr->sender)));
  }

  /* the first recipient goes away: a warm stop, and its churn chain ends */
  const call *off = &f.calls[0];
  int rcv = off->host;
  assert_int_equal(rcv, res.msgs[0].recipient);
  uint32_t gen = wl->churn_gen(st, rcv);
  assert_true(wl->join_ok(st, rcv, gen));
  int before = f.ncalls;
  wl->event(st, rcv, off->arg, off->at);
  assert_int_equal(f.ncalls, before + 1);
  assert_int_equal(f.calls[before].what, 'l');
  assert_int_equal(f.calls[before].host, rcv);
  assert_true(f.calls[before].keep);
  assert_int_not_equal(wl->churn_gen(st, rcv), gen);
  assert_false(wl->join_ok(st, rcv, gen));
  assert_false(wl->join_ok(st, rcv, wl->churn_gen(st, rcv))); /* away: no churn join */
  assert_false(wl->leave_ok(st, rcv, gen));

  /* it comes back: one join now, with the new generation */
  const call *back = &f.calls[1];
  assert_int_equal(back->host, rcv);
  before = f.ncalls;
  wl->event(st, rcv, back->arg, back->at);
  assert_int_equal(f.ncalls, before + 1);
  assert_int_equal(f.calls[before].what, 'j');
  assert_int_equal(f.calls[before].at, back->at);
  assert_int_equal(f.calls[before].arg, wl->churn_gen(st, rcv));
  assert_true(wl->join_ok(st, rcv, wl->churn_gen(st, rcv)));

  wl->stop(st);
  sim_result_free(&res);
}

int main(void) {
  const char *env = getenv("ROOST_SEED");
  if (env && *env) {
    seed = strtoull(env, NULL, 0);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec;
  }
  printf("test_sim_msg seed: %llu (set ROOST_SEED=%llu to repeat)\n", (unsigned long long)seed,
         (unsigned long long)seed);
  if (sodium_init() < 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_off),
      cmocka_unit_test(test_start_and_churn),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_nat_vote.c - the public-address vote (nat/nat_vote.c): witnesses in
 * distinct prefixes, the mapping behaviour (cone or symmetric), ageing, one
 * voice per reporter, liars in one network, the loopback/LAN exemption,
 * families apart, and the fixed table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "nat.h"

static dht_addr a4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port) {
  dht_addr x;
  memset(&x, 0, sizeof x);
  x.family = DHT_AF_INET;
  x.ip[0] = a;
  x.ip[1] = b;
  x.ip[2] = c;
  x.ip[3] = d;
  x.port = port;
  return x;
}

/* Reporter n: public, in a /24 of its own (198.18.n.1). */
static void report(nat_vote *v, const dht_addr *seen, int n, dht_ts now) {
  dht_addr from = a4(198, 18, (uint8_t)n, 1, 4000);
  nat_vote_add(v, seen, &from, now);
}

static nat_vote_settings S;

static void test_three_prefixes(void **state) {
  (void)state;
  nat_vote v;
  nat_vote_init(&v);
  nat_vote_result r;
  dht_addr pub = a4(203, 0, 113, 7, 40001);
  report(&v, &pub, 1, 1000);
  report(&v, &pub, 2, 1000);
  nat_vote_get(&v, DHT_AF_INET, &S, 1000, &r);
  assert_false(r.known); /* two witnesses are not enough */
  assert_int_equal(r.prefixes, 2);
  report(&v, &pub, 3, 1000);
  nat_vote_get(&v, DHT_AF_INET, &S, 1000, &r);
  assert_true(r.known);
  assert_int_equal(r.mapping, NAT_MAP_EIM);
  assert_true(dht_addr_eq(&r.addr, &pub));
  assert_int_equal(r.prefixes, 3);
  /* nothing for the other family */
  nat_vote_get(&v, DHT_AF_INET6, &S, 1000, &r);
  assert_false(r.known);
  assert_int_equal(r.reports, 0);
}

static void test_one_network_is_one_witness(void **state) {
  (void)state;
  nat_vote v;
  nat_vote_init(&v);
  nat_vote_result r;
  dht_addr pub = a4(203, 0, 113, 7, 40001);
  /* ten reporters, all in 198.51.100.0/24 */
  for (int i = 0; i < 10; i++) {
    dht_addr from = a4(198, 51, 100, (uint8_t)(i + 1), 4000);
    nat_vote_add(&v, &pub, &from, 1000);
  }
  nat_vote_get(&v, DHT_AF_INET, &S, 1000, &r);
  assert_false(r.known);
  assert_int_equal(r.prefixes, 1);
  /* the same reporter again and again: one voice */
  nat_vote_init(&v);
  for (int i = 0; i < 10; i++)
    report(&v, &pub, 1, 1000 + i);
  nat_vote_get(&v, DHT_AF_INET, &S, 2000, &r);
  assert_int_equal(r.reports, 1);
  assert_false(r.known);
}

static void test_symmetric(void **state) {
  (void)state;
  nat_vote v;
  nat_vote_init(&v);
  nat_vote_result r;
  for (int i = 1; i <= 4; i++) {
    dht_addr seen = a4(203, 0, 113, 7, (uint16_t)(50000 + 17 * i)); /* a port per peer */
    report(&v, &seen, i, 1000);
  }
  nat_vote_get(&v, DHT_AF_INET, &S, 1000, &r);
  assert_true(r.known);
  assert_int_equal(r.mapping, NAT_MAP_EDM);
  assert_int_equal(r.addr.port, 0);
  assert_int_equal(r.port_prefixes, 1);
}

/* A cone whose mapping changed once: three agree on the new port. */
static void test_stray_port(void **state) {
  (void)state;
  nat_vote v;
  nat_vote_init(&v);
  nat_vote_result r;
  dht_addr old = a4(203, 0, 113, 7, 1111), now = a4(203, 0, 113, 7, 2222);
  report(&v, &old, 1, 1000);
  for (int i = 2; i <= 4; i++)
    report(&v, &now, i, 2000);
  nat_vote_get(&v, DHT_AF_INET, &S, 2000, &r);
  assert_true(r.known);
  assert_int_equal(r.mapping, NAT_MAP_EIM);
  assert_int_equal(r.addr.port, 2222);
}

static void test_ageing(void **state) {
  (void)state;
  nat_vote v;
  nat_vote_init(&v);
  nat_vote_result r;
  dht_addr pub = a4(203, 0, 113, 7, 40001);
  for (int i = 1; i <= 3; i++)
    report(&v, &pub, i, 1000 * i);
  nat_vote_get(&v, DHT_AF_INET, &S, 3000, &r);
  assert_true(r.known);
  /* the first report ages out: two left */
  nat_vote_get(&v, DHT_AF_INET, &S, 1000 + S.max_age_ms + 1, &r);
  assert_false(r.known);
  assert_int_equal(r.prefixes, 2);
  /* a reporter's newer report keeps it in */
  report(&v, &pub, 1, 1000 + S.max_age_ms);
  nat_vote_get(&v, DHT_AF_INET, &S, 1000 + S.max_age_ms + 1, &r);
  assert_true(r.known);
}

/* Two liars (one network) name another address; three networks outvote. */
static void test_liars(void **state) {
  (void)state;
  nat_vote v;
  nat_vote_init(&v);
  nat_vote_result r;
  dht_addr pub = a4(203, 0, 113, 7, 40001), lie = a4(192, 0, 2, 66, 40001);
  for (int i = 0; i < 6; i++) {
    dht_addr from = a4(198, 51, 100, (uint8_t)(i + 1), 4000);
    nat_vote_add(&v, &lie, &from, 1000);
  }
  for (int i = 1; i <= 3; i++)
    report(&v, &pub, i, 1000);
  nat_vote_get(&v, DHT_AF_INET, &S, 1000, &r);
  assert_true(r.known);
  assert_true(dht_addr_eq(&r.addr, &pub));
}

/* Many keys in one network hold one slot: forty reports of a lie from one
 * /24, each from another reporter, cannot push three honest witnesses out
 * of the fixed table. */
static void test_one_network_cannot_crowd(void **state) {
  (void)state;
  nat_vote v;
  nat_vote_init(&v);
  nat_vote_result r;
  dht_addr pub = a4(203, 0, 113, 7, 40001), lie = a4(192, 0, 2, 66, 40001);
  for (int i = 1; i <= 3; i++)
    report(&v, &pub, i, 1000);
  for (int i = 0; i < 40; i++) {
    dht_addr from = a4(198, 51, 100, (uint8_t)(i + 1), 4000);
    nat_vote_add(&v, &lie, &from, 1001 + i);
  }
  nat_vote_get(&v, DHT_AF_INET, &S, 1100, &r);
  assert_int_equal(r.reports, 4);
  assert_true(r.known);
  assert_true(dht_addr_eq(&r.addr, &pub));
}

/* On loopback every address counts as a network of its own (test nets and
 * the README demo run there), as in the diversity limits. */
static void test_loopback_exempt(void **state) {
  (void)state;
  nat_vote v;
  nat_vote_init(&v);
  nat_vote_result r;
  dht_addr seen = a4(127, 0, 0, 1, 7000);
  for (int i = 0; i < 3; i++) {
    dht_addr from = a4(127, 0, 0, 1, (uint16_t)(7001 + i));
    nat_vote_add(&v, &seen, &from, 1000);
  }
  nat_vote_get(&v, DHT_AF_INET, &S, 1000, &r);
  assert_true(r.known);
  assert_int_equal(r.prefixes, 3);
  /* but a carrier NAT's range is no LAN: three reporters in one /24 of it
   * are one witness */
  nat_vote_init(&v);
  for (int i = 0; i < 3; i++) {
    dht_addr from = a4(100, 64, 0, (uint8_t)(i + 1), 4000);
    nat_vote_add(&v, &seen, &from, 1000);
  }
  nat_vote_get(&v, DHT_AF_INET, &S, 1000, &r);
  assert_false(r.known);
}

/* The table is fixed: past NAT_VOTE_REPORTS reporters the oldest go. */
static void test_fixed_table(void **state) {
  (void)state;
  nat_vote v;
  nat_vote_init(&v);
  nat_vote_result r;
  dht_addr a = a4(203, 0, 113, 7, 1), b = a4(203, 0, 113, 8, 1);
  for (int i = 0; i < NAT_VOTE_REPORTS; i++)
    report(&v, &a, i + 1, 1000 + i);
  for (int i = 0; i < NAT_VOTE_REPORTS; i++)
    report(&v, &b, 100 + i, 2000 + i);
  nat_vote_get(&v, DHT_AF_INET, &S, 3000, &r);
  assert_int_equal(r.reports, NAT_VOTE_REPORTS);
  assert_true(dht_addr_eq(&r.addr, &b));
  assert_int_equal(r.prefixes, NAT_VOTE_REPORTS);
}

int main(void) {
  nat_vote_settings_default(&S);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_three_prefixes),
      cmocka_unit_test(test_one_network_is_one_witness),
      cmocka_unit_test(test_symmetric),
      cmocka_unit_test(test_stray_port),
      cmocka_unit_test(test_ageing),
      cmocka_unit_test(test_liars),
      cmocka_unit_test(test_one_network_cannot_crowd),
      cmocka_unit_test(test_loopback_exempt),
      cmocka_unit_test(test_fixed_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

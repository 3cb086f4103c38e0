/*
 * test_addr.c - address scopes (dht_addr_scope): loopback, LAN, carrier NAT
 * and public, at the edges of every range, for IPv4, IPv6 and IPv4-mapped
 * IPv6.  The NAT work depends on telling a carrier NAT (100.64.0.0/10) apart
 * from a LAN, and on the lab's "internet" (198.18.0.0/15) counting as public.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dht.h"

static dht_addr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  dht_addr x;
  memset(&x, 0, sizeof x);
  x.family = DHT_AF_INET;
  x.ip[0] = a;
  x.ip[1] = b;
  x.ip[2] = c;
  x.ip[3] = d;
  x.port = 4000;
  return x;
}

/* IPv6 from its first two bytes and last byte (the rest zero). */
static dht_addr v6(uint8_t b0, uint8_t b1, uint8_t last) {
  dht_addr x;
  memset(&x, 0, sizeof x);
  x.family = DHT_AF_INET6;
  x.ip[0] = b0;
  x.ip[1] = b1;
  x.ip[15] = last;
  x.port = 4000;
  return x;
}

static dht_addr mapped(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  dht_addr x = v6(0, 0, 0);
  x.ip[10] = x.ip[11] = 0xff;
  x.ip[12] = a;
  x.ip[13] = b;
  x.ip[14] = c;
  x.ip[15] = d;
  return x;
}

typedef struct row {
  dht_addr a;
  int scope;
  const char *what;
} row;

static void test_scopes(void **state) {
  (void)state;
  const row rows[] = {
      {v4(127, 0, 0, 1), DHT_SCOPE_LOOPBACK, "127.0.0.1"},
      {v4(127, 255, 255, 255), DHT_SCOPE_LOOPBACK, "127/8 end"},
      {v4(126, 255, 255, 255), DHT_SCOPE_PUBLIC, "before 127/8"},
      {v4(10, 0, 0, 1), DHT_SCOPE_LAN, "10/8"},
      {v4(11, 0, 0, 1), DHT_SCOPE_PUBLIC, "11/8"},
      {v4(172, 15, 255, 255), DHT_SCOPE_PUBLIC, "before 172.16/12"},
      {v4(172, 16, 0, 0), DHT_SCOPE_LAN, "172.16/12 start"},
      {v4(172, 31, 255, 255), DHT_SCOPE_LAN, "172.16/12 end"},
      {v4(172, 32, 0, 0), DHT_SCOPE_PUBLIC, "after 172.16/12"},
      {v4(192, 168, 1, 1), DHT_SCOPE_LAN, "192.168/16"},
      {v4(192, 169, 0, 1), DHT_SCOPE_PUBLIC, "after 192.168/16"},
      {v4(169, 254, 3, 4), DHT_SCOPE_LAN, "link-local"},
      {v4(100, 63, 255, 255), DHT_SCOPE_PUBLIC, "before 100.64/10"},
      {v4(100, 64, 0, 0), DHT_SCOPE_CGN, "100.64/10 start"},
      {v4(100, 100, 1, 1), DHT_SCOPE_CGN, "100.64/10 middle"},
      {v4(100, 127, 255, 255), DHT_SCOPE_CGN, "100.64/10 end"},
      {v4(100, 128, 0, 0), DHT_SCOPE_PUBLIC, "after 100.64/10"},
      {v4(198, 18, 0, 1), DHT_SCOPE_PUBLIC, "198.18/15 (the lab's internet)"},
      {v4(198, 19, 255, 1), DHT_SCOPE_PUBLIC, "198.18/15 end"},
      {v4(192, 0, 2, 1), DHT_SCOPE_PUBLIC, "TEST-NET-1"},
      {v4(203, 0, 113, 9), DHT_SCOPE_PUBLIC, "TEST-NET-3"},
      {v4(8, 8, 8, 8), DHT_SCOPE_PUBLIC, "public"},
      {v6(0, 0, 1), DHT_SCOPE_LOOPBACK, "::1"},
      {v6(0xfe, 0x80, 1), DHT_SCOPE_LAN, "fe80::/10"},
      {v6(0xfe, 0xbf, 1), DHT_SCOPE_LAN, "fe80::/10 end"},
      {v6(0xfe, 0xc0, 1), DHT_SCOPE_PUBLIC, "after fe80::/10"},
      {v6(0xfc, 0x00, 1), DHT_SCOPE_LAN, "ULA fc00::/7"},
      {v6(0xfd, 0x12, 1), DHT_SCOPE_LAN, "ULA fd00::/8"},
      {v6(0xfb, 0xff, 1), DHT_SCOPE_PUBLIC, "before fc00::/7"},
      {v6(0x20, 0x01, 1), DHT_SCOPE_PUBLIC, "2001::"},
      {mapped(127, 0, 0, 1), DHT_SCOPE_LOOPBACK, "::ffff:127.0.0.1"},
      {mapped(10, 1, 2, 3), DHT_SCOPE_LAN, "::ffff:10.1.2.3"},
      {mapped(100, 64, 0, 1), DHT_SCOPE_CGN, "::ffff:100.64.0.1"},
      {mapped(198, 18, 0, 1), DHT_SCOPE_PUBLIC, "::ffff:198.18.0.1"},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    int got = dht_addr_scope(&rows[i].a);
    if (got != rows[i].scope)
      fail_msg("%s: scope %d, want %d", rows[i].what, got, rows[i].scope);
    /* "private" (exempt from the diversity limits) is LAN or carrier NAT */
    bool priv = rows[i].scope == DHT_SCOPE_LAN || rows[i].scope == DHT_SCOPE_CGN;
    if (dht_addr_is_private(&rows[i].a) != priv)
      fail_msg("%s: is_private %d", rows[i].what, !priv);
    if (dht_addr_is_loopback(&rows[i].a) != (rows[i].scope == DHT_SCOPE_LOOPBACK))
      fail_msg("%s: is_loopback disagrees", rows[i].what);
  }
  dht_addr none;
  memset(&none, 0, sizeof none);
  assert_int_equal(dht_addr_scope(&none), DHT_SCOPE_PUBLIC); /* no family: not special */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_scopes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

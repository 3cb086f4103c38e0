/*
 * dht_addr.c - UDP endpoints: comparison, classification, formatting, and the
 * fixed wire layout used in contacts and PONGs (4|16 address bytes, then a
 * big-endian port; the family is implied by the length).
 */
#include <stdio.h>
#include <string.h>

#include "dht_int.h"

static size_t ip_len(const dht_addr *a) {
  return a->family == DHT_AF_INET ? 4 : a->family == DHT_AF_INET6 ? 16 : 0;
}

bool dht_addr_eq(const dht_addr *a, const dht_addr *b) {
  return a->family == b->family && a->port == b->port && memcmp(a->ip, b->ip, ip_len(a)) == 0;
}

static bool v4mapped(const dht_addr *a) {
  static const uint8_t pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return a->family == DHT_AF_INET6 && memcmp(a->ip, pfx, 12) == 0;
}

bool dht_addr_is_loopback(const dht_addr *a) {
  static const uint8_t lo6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  if (a->family == DHT_AF_INET)
    return a->ip[0] == 127;
  if (a->family == DHT_AF_INET6)
    return memcmp(a->ip, lo6, 16) == 0 || (v4mapped(a) && a->ip[12] == 127);
  return false;
}

static int v4_scope(const uint8_t *ip) {
  if (ip[0] == 127)
    return DHT_SCOPE_LOOPBACK;
  if (ip[0] == 10 || (ip[0] == 172 && (ip[1] & 0xf0) == 16) || (ip[0] == 192 && ip[1] == 168) ||
      (ip[0] == 169 && ip[1] == 254))
    return DHT_SCOPE_LAN;
  if (ip[0] == 100 && (ip[1] & 0xc0) == 64) /* RFC 6598 shared address space */
    return DHT_SCOPE_CGN;
  return DHT_SCOPE_PUBLIC;
}

int dht_addr_scope(const dht_addr *a) {
  static const uint8_t lo6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  if (a->family == DHT_AF_INET)
    return v4_scope(a->ip);
  if (a->family == DHT_AF_INET6) {
    if (v4mapped(a))
      return v4_scope(a->ip + 12);
    if (memcmp(a->ip, lo6, 16) == 0)
      return DHT_SCOPE_LOOPBACK;
    if ((a->ip[0] & 0xfe) == 0xfc ||                     /* ULA fc00::/7 */
        (a->ip[0] == 0xfe && (a->ip[1] & 0xc0) == 0x80)) /* link-local fe80::/10 */
      return DHT_SCOPE_LAN;
  }
  return DHT_SCOPE_PUBLIC;
}

bool dht_addr_is_private(const dht_addr *a) {
  int s = dht_addr_scope(a);
  return s == DHT_SCOPE_LAN || s == DHT_SCOPE_CGN;
}

char *dht_addr_fmt(const dht_addr *a, char *buf, size_t len) {
  if (!len)
    return buf;
  if (a->family == DHT_AF_INET) {
    snprintf(buf, len, "%u.%u.%u.%u:%u", a->ip[0], a->ip[1], a->ip[2], a->ip[3], a->port);
  } else if (a->family == DHT_AF_INET6) {
    /* RFC 5952: compress the longest run (>= 2) of zero groups. */
    unsigned g[8];
    int best = -1, bestlen = 1;
    for (int i = 0; i < 8; i++)
      g[i] = (unsigned)a->ip[2 * i] << 8 | a->ip[2 * i + 1];
    for (int i = 0; i < 8;) {
      int j = i;
      while (j < 8 && g[j] == 0)
        j++;
      if (j - i > bestlen) {
        best = i;
        bestlen = j - i;
      }
      i = j > i ? j : i + 1;
    }
    char tmp[48];
    size_t n = 0;
    for (int i = 0; i < 8; i++) {
      if (i == best) {
        n += (size_t)snprintf(tmp + n, sizeof tmp - n, "::");
        i += bestlen - 1;
        continue;
      }
      n += (size_t)snprintf(tmp + n, sizeof tmp - n, "%s%x",
                            (i == 0 || i == best + bestlen) ? "" : ":", g[i]);
    }
    snprintf(buf, len, "[%s]:%u", tmp, a->port);
  } else {
    snprintf(buf, len, "(none)");
  }
  return buf;
}

int dht_addr_to_wire(const dht_addr *a, uint8_t out[static DHT_WADDR6_LEN]) {
  size_t n = ip_len(a);
  if (!n)
    return DHT_ERR_INVAL;
  memcpy(out, a->ip, n);
  out[n] = (uint8_t)(a->port >> 8);
  out[n + 1] = (uint8_t)a->port;
  return (int)n + 2;
}

int dht_addr_from_wire(dht_addr *a, const uint8_t *p, size_t n) {
  size_t iplen;
  if (n == DHT_WADDR4_LEN) {
    a->family = DHT_AF_INET;
    iplen = 4;
  } else if (n == DHT_WADDR6_LEN) {
    a->family = DHT_AF_INET6;
    iplen = 16;
  } else {
    return DHT_ERR_PROTO;
  }
  memset(a->ip, 0, sizeof a->ip);
  memcpy(a->ip, p, iplen);
  a->port = (uint16_t)(p[iplen] << 8 | p[iplen + 1]);
  return a->port ? 0 : DHT_ERR_PROTO;
}

static int prefix_bytes(const dht_addr *a, int v4bits, int v6bits, uint8_t out[16]) {
  int bits = a->family == DHT_AF_INET ? v4bits : v6bits;
  int max = a->family == DHT_AF_INET ? 32 : 128;
  if (bits < 0)
    bits = 0;
  if (bits > max)
    bits = max;
  memset(out, 0, 16);
  for (int i = 0; i < bits / 8; i++)
    out[i] = a->ip[i];
  if (bits % 8)
    out[bits / 8] = (uint8_t)(a->ip[bits / 8] & (0xff00u >> (bits % 8)));
  return bits;
}

bool dht_addr_same_prefix(const dht_addr *a, const dht_addr *b, int v4bits, int v6bits) {
  if (a->family != b->family || !ip_len(a))
    return false;
  int bits = a->family == DHT_AF_INET ? v4bits : v6bits, max = (int)ip_len(a) * 8;
  if (bits > max)
    bits = max;
  if (bits <= 0)
    return true;
  /* whole bytes, then the masked partial one: this runs for every contact of
   * a bucket on every diversity check */
  if (memcmp(a->ip, b->ip, (size_t)(bits / 8)) != 0)
    return false;
  uint8_t mask = (uint8_t)(0xff00u >> (bits % 8));
  return bits % 8 == 0 || ((a->ip[bits / 8] ^ b->ip[bits / 8]) & mask) == 0;
}

uint64_t dht_addr_prefix_key(const dht_addr *a, int v4bits, int v6bits) {
  uint8_t p[16];
  prefix_bytes(a, v4bits, v6bits, p);
  /* FNV-1a over family and prefix bytes: cheap, and only used as a table key
   * by callers that re-check equality or tolerate collisions. */
  uint64_t h = 1469598103934665603ull;
  h = (h ^ a->family) * 1099511628211ull;
  for (int i = 0; i < 16; i++)
    h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

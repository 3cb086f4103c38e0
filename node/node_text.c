/*
 * node_text.c - what people type and copy: the text form of an identity
 * (base32 key + checksum), peer specs "ID@HOST:PORT", and numeric
 * addresses; plus dht_addr <-> sockaddr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
#define RAW_LEN (DHT_PK_LEN + 3) /* 35 bytes = 280 bits = 56 characters */

static void checksum(const uint8_t pk[static DHT_PK_LEN], uint8_t out[3]) {
  uint8_t in[8 + DHT_PK_LEN], h[32];
  memcpy(in, "roost-id", 8);
  memcpy(in + 8, pk, DHT_PK_LEN);
  crypto_generichash(h, sizeof h, in, sizeof in, NULL, 0);
  memcpy(out, h, 3);
}

void node_idtext_encode(const uint8_t pk[static DHT_PK_LEN], char out[static NODE_IDTEXT_LEN + 1]) {
  uint8_t raw[RAW_LEN];
  memcpy(raw, pk, DHT_PK_LEN);
  checksum(pk, raw + DHT_PK_LEN);
  for (int i = 0; i < NODE_IDTEXT_LEN; i++) {
    int bit = i * 5, v = 0;
    for (int j = 0; j < 5; j++, bit++)
      v = v << 1 | ((raw[bit / 8] >> (7 - bit % 8)) & 1);
    out[i] = b32[v];
  }
  out[NODE_IDTEXT_LEN] = 0;
}

int node_idtext_decode(const char *s, uint8_t pk[static DHT_PK_LEN]) {
  if (strlen(s) != NODE_IDTEXT_LEN)
    return -1;
  uint8_t raw[RAW_LEN] = {0};
  for (int i = 0; i < NODE_IDTEXT_LEN; i++) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z')
      c = (char)(c - 'A' + 'a'); /* accept upper case: people retype IDs */
    const char *p = c ? strchr(b32, c) : NULL;
    if (!p)
      return -1;
    int v = (int)(p - b32);
    for (int j = 0; j < 5; j++) {
      int bit = i * 5 + j;
      if ((v >> (4 - j)) & 1)
        raw[bit / 8] |= (uint8_t)(0x80 >> (bit % 8));
    }
  }
  uint8_t sum[3];
  checksum(raw, sum);
  if (memcmp(sum, raw + DHT_PK_LEN, 3) != 0)
    return -2;
  memcpy(pk, raw, DHT_PK_LEN);
  return 0;
}

int node_addr_parse(const char *s, dht_addr *out) {
  char host[64];
  const char *port;
  memset(out, 0, sizeof *out);
  if (s[0] == '[') {
    const char *end = strchr(s, ']');
    if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof host)
      return -1;
    memcpy(host, s + 1, (size_t)(end - s - 1));
    host[end - s - 1] = 0;
    port = end + 2;
    if (inet_pton(AF_INET6, host, out->ip) != 1)
      return -1;
    out->family = DHT_AF_INET6;
  } else {
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host || strchr(s, ':') != colon)
      return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    port = colon + 1;
    if (inet_pton(AF_INET, host, out->ip) != 1)
      return -1;
    out->family = DHT_AF_INET;
  }
  char *end;
  if (!*port || *port == '-' || *port == '+')
    return -1;
  unsigned long p = strtoul(port, &end, 10);
  if (*end || p == 0 || p > 65535)
    return -1;
  out->port = (uint16_t)p;
  return 0;
}

int node_peer_parse(const char *s, dht_peer *out, char *err, size_t errlen) {
  const char *at = strchr(s, '@');
  if (!at) {
    snprintf(err, errlen, "'%s' is not ID@HOST:PORT", s);
    return -1;
  }
  char id[NODE_IDTEXT_LEN + 2];
  if ((size_t)(at - s) >= sizeof id) {
    snprintf(err, errlen, "the ID in '%s' is too long (an ID has %d characters)", s,
             NODE_IDTEXT_LEN);
    return -1;
  }
  memcpy(id, s, (size_t)(at - s));
  id[at - s] = 0;
  int rv = node_idtext_decode(id, out->pk);
  if (rv == -1) {
    snprintf(err, errlen, "'%s' is not a roost ID (%d characters a-z, 2-7)", id, NODE_IDTEXT_LEN);
    return -1;
  }
  if (rv == -2) {
    snprintf(err, errlen, "the ID '%s' has a typo (its checksum does not match)", id);
    return -1;
  }
  if (node_addr_parse(at + 1, &out->addr) != 0) {
    snprintf(err, errlen,
             "'%s' is not a numeric HOST:PORT (e.g. 192.0.2.1:7464 or [2001:db8::1]:7464)", at + 1);
    return -1;
  }
  return 0;
}

void node_addr_to_sockaddr(const dht_addr *a, struct sockaddr_storage *ss, socklen_t *len) {
  memset(ss, 0, sizeof *ss);
  if (a->family == DHT_AF_INET) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(a->port);
    memcpy(&s4->sin_addr, a->ip, 4);
    *len = sizeof *s4;
  } else {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(a->port);
    memcpy(&s6->sin6_addr, a->ip, 16);
    *len = sizeof *s6;
  }
}

int node_addr_from_sockaddr(const struct sockaddr *sa, dht_addr *out) {
  memset(out, 0, sizeof *out);
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    out->family = DHT_AF_INET;
    memcpy(out->ip, &s4->sin_addr, 4);
    out->port = ntohs(s4->sin_port);
    return 0;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(&s6->sin6_addr, mapped, 12) == 0) { /* v4-mapped: treat as IPv4 */
      out->family = DHT_AF_INET;
      memcpy(out->ip, (const uint8_t *)&s6->sin6_addr + 12, 4);
    } else {
      out->family = DHT_AF_INET6;
      memcpy(out->ip, &s6->sin6_addr, 16);
    }
    out->port = ntohs(s6->sin6_port);
    return 0;
  }
  return -1;
}

bool node_addr_is_any(const dht_addr *a) {
  static const uint8_t zero[16];
  return memcmp(a->ip, zero, a->family == DHT_AF_INET ? 4 : 16) == 0;
}

/* ---- generic base32 and sizes -------------------------------------------- */

size_t node_base32_len(size_t nbytes) {
  return (nbytes * 8 + 4) / 5;
}

void node_base32_encode(const uint8_t *in, size_t n, char *out) {
  size_t nch = node_base32_len(n);
  for (size_t i = 0; i < nch; i++) {
    int v = 0;
    for (size_t j = 0, bit = i * 5; j < 5; j++, bit++)
      v = v << 1 | (bit < n * 8 ? (in[bit / 8] >> (7 - bit % 8)) & 1 : 0);
    out[i] = b32[v];
  }
  out[nch] = 0;
}

dht_ssize node_base32_decode(const char *s, size_t len, uint8_t *out, size_t outmax) {
  size_t nbytes = len * 5 / 8;
  /* strict: the length is one an encoder makes, and the bits past the last
   * byte are zero, so one text has one meaning */
  if (node_base32_len(nbytes) != len)
    return -2;
  if (nbytes > outmax)
    return -2;
  memset(out, 0, nbytes);
  for (size_t i = 0; i < len; i++) {
    const char *p = s[i] ? strchr(b32, s[i]) : NULL;
    if (!p)
      return -1;
    int v = (int)(p - b32);
    for (size_t j = 0; j < 5; j++) {
      size_t bit = i * 5 + j;
      if (!((v >> (4 - j)) & 1))
        continue;
      if (bit >= nbytes * 8)
        return -1;
      out[bit / 8] |= (uint8_t)(0x80 >> (bit % 8));
    }
  }
  return (dht_ssize)nbytes;
}

int node_size_parse(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  if (!*s || *s == '-' || *s == '+' || *s == ' ')
    return -1;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s)
    return -1;
  uint64_t mul = 1;
  if (*end) {
    switch (*end) {
    case 'k':
    case 'K':
      mul = 1ull << 10;
      break;
    case 'm':
    case 'M':
      mul = 1ull << 20;
      break;
    case 'g':
    case 'G':
      mul = 1ull << 30;
      break;
    case 't':
    case 'T':
      mul = 1ull << 40;
      break;
    case 'b':
    case 'B':
      mul = 1;
      break;
    default:
      return -1;
    }
    end++;
    if ((*end == 'i' || *end == 'I') && mul > 1)
      end++;
    if ((*end == 'b' || *end == 'B') && mul > 1)
      end++;
    if (*end)
      return -1;
  }
  if (v > (uint64_t)INT64_MAX / mul)
    return -1;
  *out = (int64_t)(v * mul);
  return 0;
}

void node_size_fmt(int64_t v, char *buf, size_t len) {
  static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  double x = (double)v;
  while (x >= 1024 && u < 4) {
    x /= 1024;
    u++;
  }
  if (u == 0)
    snprintf(buf, len, "%lld B", (long long)v);
  else if (x == (double)(int64_t)x)
    snprintf(buf, len, "%lld %s", (long long)x, unit[u]);
  else
    snprintf(buf, len, "%.1f %s", x, unit[u]);
}

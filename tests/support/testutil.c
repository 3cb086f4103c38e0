/*
 * testutil.c - see testutil.h.  Test-side code: it may use the clock, stdio
 * and getenv, which the cores may not.
 */
#include "testutil.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void tu_rng_init(tu_rng *r, uint64_t seed, uint64_t stream) {
  uint8_t in[16];
  memcpy(in, &seed, 8);
  memcpy(in + 8, &stream, 8);
  crypto_generichash(r->key, sizeof r->key, in, sizeof in, NULL, 0);
  r->block = 0;
  r->pos = sizeof r->buf;
}

void tu_rng_bytes(tu_rng *r, uint8_t *out, size_t len) {
  while (len) {
    if (r->pos == sizeof r->buf) {
      uint8_t nonce[crypto_stream_chacha20_NONCEBYTES] = {0};
      memcpy(nonce, &r->block, sizeof r->block < sizeof nonce ? sizeof r->block : sizeof nonce);
      crypto_stream_chacha20(r->buf, sizeof r->buf, nonce, r->key);
      r->block++;
      r->pos = 0;
    }
    size_t n = sizeof r->buf - r->pos;
    if (n > len)
      n = len;
    memcpy(out, r->buf + r->pos, n);
    r->pos += (unsigned)n;
    out += n;
    len -= n;
  }
}

uint64_t tu_rng_u64(tu_rng *r) {
  uint64_t v;
  tu_rng_bytes(r, (uint8_t *)&v, sizeof v);
  return v;
}

uint64_t tu_rng_below(tu_rng *r, uint64_t n) {
  if (n <= 1)
    return 0;
  uint64_t lim = UINT64_MAX - UINT64_MAX % n, v;
  do
    v = tu_rng_u64(r);
  while (v >= lim);
  return v % n;
}

void tu_rand_cb(void *ctx, uint8_t *buf, size_t len) {
  tu_rng_bytes(ctx, buf, len);
}

uint64_t tu_seed(const char *what) {
  const char *s = getenv("ROOST_SEED");
  uint64_t seed;
  if (s && *s) {
    seed = strtoull(s, NULL, 0);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec;
  }
  printf("%s seed: %llu (set ROOST_SEED=%llu to repeat)\n", what ? what : "test",
         (unsigned long long)seed, (unsigned long long)seed);
  fflush(stdout);
  return seed;
}

/* Each block carries its size in front so that live bytes can be counted. */
typedef union {
  size_t n;
  max_align_t align;
} hdr;

static int should_fail(tu_alloc *a) {
  a->calls++;
  if (a->fail_at && (a->calls == a->fail_at || (a->fail_sticky && a->calls > a->fail_at))) {
    a->failed++;
    return 1;
  }
  return 0;
}

static void *ta_malloc(void *ctx, size_t n) {
  tu_alloc *a = ctx;
  if (should_fail(a))
    return NULL;
  hdr *h = malloc(sizeof *h + n);
  if (!h)
    return NULL;
  h->n = n;
  a->live++;
  a->bytes_live += n;
  if (a->bytes_live > a->bytes_peak)
    a->bytes_peak = a->bytes_live;
  return h + 1;
}

static void ta_free(void *ctx, void *p) {
  tu_alloc *a = ctx;
  if (!p)
    return;
  hdr *h = (hdr *)p - 1;
  a->live--;
  a->bytes_live -= h->n;
  free(h);
}

static void *ta_realloc(void *ctx, void *p, size_t n) {
  tu_alloc *a = ctx;
  if (!p)
    return ta_malloc(ctx, n);
  if (should_fail(a))
    return NULL;
  hdr *h = (hdr *)p - 1;
  size_t old = h->n;
  hdr *nh = realloc(h, sizeof *nh + n);
  if (!nh)
    return NULL;
  nh->n = n;
  a->bytes_live = a->bytes_live - old + n;
  if (a->bytes_live > a->bytes_peak)
    a->bytes_peak = a->bytes_live;
  return nh + 1;
}

dht_mem tu_alloc_mem(tu_alloc *a) {
  dht_mem m = {a, ta_malloc, ta_realloc, ta_free};
  return m;
}

void tu_identity(dht_identity *id, uint64_t seed, uint64_t index) {
  tu_rng r;
  uint8_t s[32];
  tu_rng_init(&r, seed, 0x1d000000u + index);
  tu_rng_bytes(&r, s, sizeof s);
  dht_identity_from_seed(id, s);
}

dht_addr tu_addr4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port) {
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

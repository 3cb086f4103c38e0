/*
 * testutil.h - helpers shared by the tests and benchmarks: a deterministic
 * random source per engine, a seed that is printed (and taken from
 * ROOST_SEED when set), and an allocator that counts and can fail the Nth
 * allocation.
 */
#ifndef ROOST_TESTUTIL_H
#define ROOST_TESTUTIL_H

#include <stdint.h>

#include "dht.h"

/* A ChaCha20 keystream used as the engine's rand callback. */
typedef struct tu_rng {
  uint8_t key[32];
  uint64_t block;
  uint8_t buf[256];
  unsigned pos;
} tu_rng;

void tu_rng_init(tu_rng *r, uint64_t seed, uint64_t stream);
void tu_rng_bytes(tu_rng *r, uint8_t *out, size_t len);
uint64_t tu_rng_u64(tu_rng *r);
/* Uniform in [0, n). */
uint64_t tu_rng_below(tu_rng *r, uint64_t n);
/* dht_callbacks.rand adapter: ctx is a tu_rng. */
void tu_rand_cb(void *ctx, uint8_t *buf, size_t len);

/* The run's seed: ROOST_SEED if set, else from the clock.  Printed once as
 * "seed: N (set ROOST_SEED=N to repeat)". */
uint64_t tu_seed(const char *what);

/* Counting allocator.  fail_at = N > 0 makes the Nth allocation (counting
 * malloc and realloc calls from 1) and every later one fail while
 * fail_sticky, or only the Nth otherwise. */
typedef struct tu_alloc {
  uint64_t calls, live, fail_at, failed;
  int fail_sticky;
  size_t bytes_live, bytes_peak;
} tu_alloc;

/* A dht_mem whose ctx is a; a must outlive every engine using it. */
dht_mem tu_alloc_mem(tu_alloc *a);

/* The IPv4 endpoint a.b.c.d:port. */
dht_addr tu_addr4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port);

/* Fills a deterministic identity from (seed, index). */
void tu_identity(dht_identity *id, uint64_t seed, uint64_t index);

#endif

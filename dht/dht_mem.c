/*
 * dht_mem.c - the allocator indirection.  Every allocation in dht/ goes
 * through a dht_mem so that tests can fail the Nth one and the simulator can
 * account memory per host.
 */
#include <stdlib.h>

#include "dht_int.h"

static void *libc_malloc(void *ctx, size_t n) {
  (void)ctx;
  return malloc(n);
}

static void *libc_realloc(void *ctx, void *p, size_t n) {
  (void)ctx;
  return realloc(p, n);
}

static void libc_free(void *ctx, void *p) {
  (void)ctx;
  free(p);
}

const dht_mem dht_mem_libc = {NULL, libc_malloc, libc_realloc, libc_free};

void *dht_mem_malloc(const dht_mem *m, size_t n) {
  return m->malloc(m->ctx, n ? n : 1);
}

void *dht_mem_calloc(const dht_mem *m, size_t nmemb, size_t size) {
  if (size && nmemb > SIZE_MAX / size)
    return NULL;
  size_t n = nmemb * size;
  uint8_t *p = dht_mem_malloc(m, n);
  if (p)
    for (size_t i = 0; i < n; i++)
      p[i] = 0;
  return p;
}

void *dht_mem_realloc(const dht_mem *m, void *p, size_t n) {
  return m->realloc(m->ctx, p, n ? n : 1);
}

void dht_mem_free(const dht_mem *m, void *p) {
  if (p)
    m->free(m->ctx, p);
}

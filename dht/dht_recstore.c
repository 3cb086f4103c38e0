/*
 * dht_recstore.c - peer records this node holds for others.
 *
 * A sorted array of small entries, binary-searched by node ID, grown by
 * doubling up to max; each record's bytes are an allocation of their own
 * length (a record is 120-275 bytes, most near the low end, so fixed
 * 275-byte slots would waste most of what they hold).  Records arrive
 * verified (the engine checks the signature once, when it accepts a PUT) and
 * are served as the owner's bytes.
 * Newest sequence number wins; an equal sequence with different bytes is a
 * conflict and the first one stays.  At the cap the record farthest from our
 * ID is dropped for a closer one: the k closest nodes are responsible.
 */
#include <string.h>

#include "dht_int.h"

void dht_recstore_init(dht_recstore *rs, const uint8_t self[static DHT_ID_LEN], int max,
                       const dht_mem *mem) {
  memset(rs, 0, sizeof *rs);
  rs->mem = *mem;
  memcpy(rs->self, self, DHT_ID_LEN);
  rs->max = max > 0 ? max : 0;
}

void dht_recstore_free(dht_recstore *rs) {
  for (int i = 0; i < rs->n; i++)
    dht_mem_free(&rs->mem, rs->v[i].bytes);
  dht_mem_free(&rs->mem, rs->v);
  rs->v = NULL;
  rs->n = rs->alloc = 0;
}

/* Index of id, or -(insertion point) - 1. */
static int find(const dht_recstore *rs, const uint8_t id[static DHT_ID_LEN]) {
  int lo = 0, hi = rs->n - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2, c = memcmp(rs->v[mid].id, id, DHT_ID_LEN);
    if (c == 0)
      return mid;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return -lo - 1;
}

static void remove_at(dht_recstore *rs, int i) {
  dht_mem_free(&rs->mem, rs->v[i].bytes);
  memmove(&rs->v[i], &rs->v[i + 1], (size_t)(rs->n - i - 1) * sizeof *rs->v);
  rs->n--;
}

/* Sets e to the record; e->bytes is e's allocation (NULL for a new entry),
 * resized when the length changes.  Returns 0 or DHT_ERR_NOMEM (e
 * unchanged). */
static int fill(dht_recstore *rs, dht_recstore_ent *e, const uint8_t id[static DHT_ID_LEN],
                const dht_record *r, const uint8_t *bytes, size_t len) {
  if (!e->bytes || e->len != len) {
    uint8_t *nb = dht_mem_realloc(&rs->mem, e->bytes, len);
    if (!nb)
      return DHT_ERR_NOMEM;
    e->bytes = nb;
  }
  memcpy(e->id, id, DHT_ID_LEN);
  e->seq = r->seq;
  e->expires_unix_s = r->expires_unix_s;
  e->len = (uint16_t)len;
  memcpy(e->bytes, bytes, len);
  return 0;
}

int dht_recstore_put(dht_recstore *rs, const dht_record *r, const uint8_t *bytes, size_t len,
                     uint64_t now_unix_s) {
  if (len == 0 || len > DHT_RECORD_MAX_LEN || r->expires_unix_s <= now_unix_s)
    return DHT_ACK_STALE;
  uint8_t id[DHT_ID_LEN];
  dht_id_from_pk(id, r->pk);
  int i = find(rs, id);
  if (i >= 0) {
    dht_recstore_ent *e = &rs->v[i];
    bool expired = e->expires_unix_s <= now_unix_s;
    if (!expired && (r->seq < e->seq ||
                     (r->seq == e->seq && (e->len != len || memcmp(e->bytes, bytes, len) != 0))))
      return DHT_ACK_STALE;
    return fill(rs, e, id, r, bytes, len) == 0 ? DHT_ACK_OK : DHT_ERR_NOMEM;
  }
  if (rs->max == 0)
    return DHT_ACK_FULL;
  if (rs->n >= rs->max) {
    dht_recstore_expire(rs, now_unix_s);
    i = find(rs, id);
  }
  if (rs->n >= rs->max) {
    int far = 0;
    for (int j = 1; j < rs->n; j++)
      if (dht_id_cmp_dist(rs->v[j].id, rs->v[far].id, rs->self) > 0)
        far = j;
    if (dht_id_cmp_dist(id, rs->v[far].id, rs->self) >= 0)
      return DHT_ACK_FULL;
    remove_at(rs, far);
    i = find(rs, id);
  }
  if (rs->n == rs->alloc) {
    int na = rs->alloc ? rs->alloc * 2 : 8;
    if (na > rs->max)
      na = rs->max;
    dht_recstore_ent *nv = dht_mem_realloc(&rs->mem, rs->v, (size_t)na * sizeof *nv);
    if (!nv)
      return DHT_ERR_NOMEM;
    rs->v = nv;
    rs->alloc = na;
  }
  i = -i - 1;
  dht_recstore_ent ne = {.bytes = NULL};
  if (fill(rs, &ne, id, r, bytes, len) != 0)
    return DHT_ERR_NOMEM;
  memmove(&rs->v[i + 1], &rs->v[i], (size_t)(rs->n - i) * sizeof *rs->v);
  rs->v[i] = ne;
  rs->n++;
  return DHT_ACK_OK;
}

const dht_recstore_ent *dht_recstore_get(const dht_recstore *rs,
                                         const uint8_t id[static DHT_ID_LEN], uint64_t now_unix_s) {
  int i = find(rs, id);
  if (i < 0 || rs->v[i].expires_unix_s <= now_unix_s)
    return NULL;
  return &rs->v[i];
}

int dht_recstore_expire(dht_recstore *rs, uint64_t now_unix_s) {
  int w = 0, dropped = 0;
  for (int i = 0; i < rs->n; i++) {
    if (rs->v[i].expires_unix_s <= now_unix_s) {
      dht_mem_free(&rs->mem, rs->v[i].bytes);
      dropped++;
      continue;
    }
    if (w != i)
      rs->v[w] = rs->v[i];
    w++;
  }
  rs->n = w;
  return dropped;
}

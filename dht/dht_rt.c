/*
 * dht_rt.c - the routing table: Kademlia k-buckets with replacement caches,
 * indexed by the common prefix length (cpl) of a contact's ID with our own.
 *
 * Buckets are made by splitting, so a table costs what the network makes it
 * hold (about log2(N / k) buckets in an N-node network), not 256 of them.  The
 * table starts with one bucket covering every ID; with nb buckets, bucket
 * i < nb-1 holds the contacts whose cpl is exactly i and bucket nb-1 (the one
 * holding our own ID's neighbourhood) those with cpl >= nb-1.  Only that last
 * bucket ever splits, when a contact is due in it and it is full.
 *
 * Each bucket is one allocation that grows with use: a header, cap contact
 * slots and, parallel to them, id64[] (the first 8 bytes of each slot's ID,
 * big-endian) and pfx[] (each slot's diversity prefix key).  A contact keeps
 * its public key, not its ID: the ID is BLAKE2b(pk), and id64 is all that
 * the hot paths need of it.  A search reads the small id64 array, not an
 * 88-byte contact per slot, and confirms a match on the stored key, so the
 * functions that look a contact up take both its key and its ID (the
 * caller always has both; nothing is hashed on that path).  The full ID of
 * a stored contact is hashed from its key only where 64 bits do not decide:
 * a split whose contact shares its first 64 bits with our own ID, a
 * dht_rt_closest tie on the top 59 bits of the distance, and dht_rt_check.
 *
 * Slots [0, n) are the bucket, in the order contacts entered it; slots
 * [n, n + ncache) right after them are the replacement cache: confirmed
 * entries (they answered us: last_reply != 0) first, most recent first,
 * then unconfirmed ones, most recent first.  Entry n is therefore the one
 * to promote next.  A contact entering the bucket shifts the cache up one
 * slot (the cache is empty in most buckets, and small).  A slot (contact,
 * id64, pfx) is 100 bytes and the header 32.  The bucket grows GROW_STEP
 * slots at a time, up to k + replacement_cache, when a contact or a cache
 * entry needs a slot; a split builds both halves anew, each sized to what
 * it holds.  It never shrinks otherwise: a bucket that lost contacts keeps
 * its room for the ones that come back.  Sharing one allocation between
 * bucket and cache means that promoting a cache entry never allocates, so
 * dht_rt_failed and dht_rt_remove cannot fail; every allocation is made by
 * dht_rt_update (and dht_rt_new), before it changes anything.
 *
 * Most buckets of a large network are far from full, so growing with use
 * saves most of a table's memory; GROW_STEP trades a few more reallocations
 * against slack (docs/architecture.md, decision 22, has the measured sizes
 * and the steps tried).
 *
 * Invariants (dht_rt_check verifies them):
 *   - 1 <= nb <= 256 and nb <= cap; every b[i], i < nb, is allocated;
 *   - a contact (bucket or cache) of bucket i, whose id is BLAKE2b(pk), has
 *     cpl == i if i < nb-1, and cpl >= nb-1 if i == nb-1; its id is never
 *     our own;
 *   - an id appears at most once in the whole table, buckets and caches;
 *   - 0 <= n <= k, 0 <= ncache <= replacement_cache, size == sum of n;
 *   - n + ncache <= cap <= k + replacement_cache, and cap is a multiple of
 *     GROW_STEP or k + replacement_cache;
 *   - id64[i] is the first 8 bytes (big-endian) of BLAKE2b(slot[i].pk) for
 *     every used slot, and pfx[i] the diversity key of slot[i].addr;
 *   - no contact of bucket [0, n) is due a liveness ping before ping_check
 *     (a lower bound: contact times only grow, and any insertion resets it),
 *     and ping_due <= every bucket's ping_check;
 *   - every allocation failure returns DHT_ERR_NOMEM with these intact.
 *
 * Long-lived contacts are preferred: a contact that answers is never evicted
 * for a newcomer.  A full bucket keeps the newcomer in its cache and asks the
 * engine to ping its most questionable contact; only if that contact then
 * fails max_failures times in a row does the newcomer get its slot.
 *
 * No clock, no I/O, no globals; every order is by index or by time, never by
 * pointer, so two tables fed the same calls are identical.
 */
#include <string.h>

#include "dht_int.h"

#define ID_BITS (DHT_ID_LEN * 8)
#define DIV_V4_BITS 24 /* IP diversity prefixes: /24 for IPv4, */
#define DIV_V6_BITS 48 /* /48 for IPv6 */
#define RC_MAX 256     /* largest replacement cache a setting may ask for */
#define GROW_STEP 4    /* slots a bucket grows by */

typedef struct bucket {
  dht_ts last_changed;   /* last add, answer or refresh (dht_rt_touch_bucket) */
  dht_ts ping_check;     /* no contact is due a liveness ping before this */
  int n;                 /* contacts in slot[0, n) */
  int ncache;            /* replacement entries in slot[n, n + ncache) */
  int cap;               /* slots allocated */
  dht_rt_contact slot[]; /* cap, then cap uint64_t id64, then cap uint32_t pfx */
} bucket;

#define PING_CHECK_NOW INT64_MIN /* ping_check of a bucket that must be scanned */

struct dht_rt {
  dht_mem mem;
  uint8_t self[DHT_ID_LEN];
  dht_rt_settings s;
  int nb;          /* buckets in use */
  int cap;         /* room in b[] */
  int size;        /* contacts in buckets */
  dht_ts ping_due; /* no contact of any bucket is due a liveness ping before this */
  bucket **b;      /* b[0, nb) */
};

/* ---- helpers ----------------------------------------------------------- */

static int bucket_of(const dht_rt *rt, const uint8_t id[static DHT_ID_LEN]) {
  int cpl = dht_id_cpl(rt->self, id);
  return cpl < rt->nb - 1 ? cpl : rt->nb - 1;
}

static dht_rt_contact *cache_of(bucket *b) {
  return b->slot + b->n;
}

/* The first 8 bytes of an ID as a big-endian integer: XOR of two of these is
 * the top 64 bits of their distance.  (Compilers turn this into one load.) */
static inline uint64_t load64(const uint8_t *p) {
  return (uint64_t)p[0] << 56 | (uint64_t)p[1] << 48 | (uint64_t)p[2] << 40 | (uint64_t)p[3] << 32 |
         (uint64_t)p[4] << 24 | (uint64_t)p[5] << 16 | (uint64_t)p[6] << 8 | (uint64_t)p[7];
}

static uint64_t *ids_of(const bucket *b) {
  return (uint64_t *)(uintptr_t)(b->slot + b->cap);
}

/* The diversity prefix of every slot's address, as a 32-bit key beside the
 * contacts: counting the contacts on a prefix reads this small array, not an
 * address in every 88-byte contact (one cache line per bucket instead of
 * twenty).  The top byte is the family, so the families never share a key;
 * an IPv4 /24 fits whole, an IPv6 /48 is folded, so equal keys are confirmed
 * on the address itself. */
static uint32_t *pfx_of(const bucket *b) {
  return (uint32_t *)(uintptr_t)(ids_of(b) + b->cap);
}

static uint32_t pfx_key(const dht_addr *a) {
  const uint8_t *p = a->ip;
  if (a->family == DHT_AF_INET)
    return 4u << 24 | (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
  uint32_t h = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
  h ^= ((uint32_t)p[3] << 16 | (uint32_t)p[4] << 8 | p[5]) * 0x9E3779B1u >> 8;
  return (uint32_t)(a->family & 0xff) << 24 | (h & 0xffffff);
}

/* Index in slot[base, base + n) of the contact with this key, or -1: found
 * by the 8-byte ID prefix id64 = load64(BLAKE2b(pk)), confirmed on the key
 * itself (no hashing here). */
static int find_in(const bucket *b, int base, int n, const uint8_t pk[static DHT_PK_LEN],
                   uint64_t id64) {
  const uint64_t *ids = ids_of(b) + base;
  for (int i = 0; i < n; i++)
    if (ids[i] == id64 && memcmp(b->slot[base + i].pk, pk, DHT_PK_LEN) == 0)
      return i;
  return -1;
}

/* ---- bucket memory -------------------------------------------------------- */

static size_t bucket_bytes(int cap) {
  return sizeof(bucket) +
         (size_t)cap * (sizeof(dht_rt_contact) + sizeof(uint64_t) + sizeof(uint32_t));
}

/* The slots to allocate for used ones: whole steps, at most k + cache. */
static int cap_for(const dht_rt *rt, int used) {
  int cap = (used + GROW_STEP - 1) / GROW_STEP * GROW_STEP;
  int max = rt->s.k + rt->s.replacement_cache;
  return cap < max ? cap : max;
}

static bucket *bucket_new(const dht_rt *rt, int cap, dht_ts last_changed) {
  bucket *b = dht_mem_malloc(&rt->mem, bucket_bytes(cap));
  if (!b)
    return NULL;
  b->last_changed = last_changed;
  b->ping_check = PING_CHECK_NOW;
  b->n = 0;
  b->ncache = 0;
  b->cap = cap;
  return b;
}

/* Bucket bi with room for one more slot, grown by a step if it is full, or
 * NULL (nothing changed) when the allocation fails.  The caller adds a slot,
 * so it is not at k + replacement_cache already. */
static bucket *make_room(dht_rt *rt, int bi) {
  bucket *b = rt->b[bi];
  int used = b->n + b->ncache;
  if (used < b->cap)
    return b;
  int old = b->cap, cap = cap_for(rt, used + 1);
  b = dht_mem_realloc(&rt->mem, b, bucket_bytes(cap));
  if (!b)
    return NULL;
  /* The arrays after the slots move to their new offsets, the last first:
   * the new id64[] may overlap the old pfx[]. */
  const uint64_t *old_ids = (const uint64_t *)(uintptr_t)(b->slot + old);
  const uint32_t *old_pfx = (const uint32_t *)(old_ids + old);
  b->cap = cap;
  memmove(pfx_of(b), old_pfx, (size_t)used * sizeof *old_pfx);
  memmove(ids_of(b), old_ids, (size_t)used * sizeof *old_ids);
  rt->b[bi] = b;
  return b;
}

/* Opens slot idx of the used slots [0, n + ncache), shifting those after it
 * up one; the caller has made room and fills the slot. */
static void open_at(bucket *b, int idx) {
  size_t tail = (size_t)(b->n + b->ncache - idx);
  memmove(b->slot + idx + 1, b->slot + idx, tail * sizeof *b->slot);
  memmove(ids_of(b) + idx + 1, ids_of(b) + idx, tail * sizeof(uint64_t));
  memmove(pfx_of(b) + idx + 1, pfx_of(b) + idx, tail * sizeof(uint32_t));
}

/* Closes used slot idx, shifting those after it down one. */
static void close_at(bucket *b, int idx) {
  size_t tail = (size_t)(b->n + b->ncache - idx - 1);
  memmove(b->slot + idx, b->slot + idx + 1, tail * sizeof *b->slot);
  memmove(ids_of(b) + idx, ids_of(b) + idx + 1, tail * sizeof(uint64_t));
  memmove(pfx_of(b) + idx, pfx_of(b) + idx + 1, tail * sizeof(uint32_t));
}

/* Writes contact c, whose ID starts with id64, into slot idx. */
static void set_slot(bucket *b, int idx, const dht_rt_contact *c, uint64_t id64) {
  b->slot[idx] = *c;
  ids_of(b)[idx] = id64;
  pfx_of(b)[idx] = pfx_key(&c->addr);
}

/* Appends contact c (not a pointer into b) to bucket b's contacts, before
 * its cache; the caller has made room.  The bucket must be scanned for
 * pings again. */
static void add_contact(dht_rt *rt, bucket *b, const dht_rt_contact *c, uint64_t id64) {
  open_at(b, b->n);
  set_slot(b, b->n, c, id64);
  b->n++;
  b->ping_check = PING_CHECK_NOW;
  rt->ping_due = PING_CHECK_NOW;
}

/* Removes contact i of bucket b, or entry j of its cache, keeping the order. */
static void remove_contact(bucket *b, int i) {
  close_at(b, i);
  b->n--;
}

static void remove_cached(bucket *b, int j) {
  close_at(b, b->n + j);
  b->ncache--;
}

/* ---- contacts ------------------------------------------------------------ */

static bool is_questionable(const dht_rt *rt, const dht_rt_contact *c, dht_ts now) {
  return c->last_reply == 0 || now - c->last_reply >= rt->s.questionable_after_ms;
}

/* Questionable and not pinged within questionable_after_ms (0 = never). */
static bool ping_due(const dht_rt *rt, const dht_rt_contact *c, dht_ts now) {
  return is_questionable(rt, c, now) &&
         (c->last_ping == 0 || now - c->last_ping >= rt->s.questionable_after_ms);
}

/* RFC 6298 with alpha = 1/8, beta = 1/4, in whole milliseconds.  A sample is
 * at least 1 ms so that a known estimate never reads as (0, 0) = unknown. */
static void rtt_sample(dht_rt_contact *c, dht_ts rtt) {
  if (rtt < 0)
    return;
  if (rtt < 1)
    rtt = 1;
  if (rtt > UINT16_MAX)
    rtt = UINT16_MAX;
  int64_t srtt = c->srtt_ms, var = c->rttvar_ms;
  if (srtt == 0 && var == 0) {
    srtt = rtt;
    var = rtt / 2;
  } else {
    int64_t dev = srtt > rtt ? srtt - rtt : rtt - srtt;
    var = (3 * var + dev + 2) / 4; /* uses the old srtt, as the RFC says */
    srtt = (7 * srtt + rtt + 4) / 8;
  }
  c->srtt_ms = (uint16_t)(srtt > UINT16_MAX ? UINT16_MAX : srtt);
  c->rttvar_ms = (uint16_t)(var > UINT16_MAX ? UINT16_MAX : var);
}

/* ---- IP diversity ------------------------------------------------------- */

static bool same_prefix(const dht_addr *a, const dht_addr *b) {
  /* Cheap rejects first: both prefixes are at least one whole byte. */
  return a->family == b->family && a->ip[0] == b->ip[0] &&
         dht_addr_same_prefix(a, b, DIV_V4_BITS, DIV_V6_BITS);
}

static bool diversity_exempt(const dht_rt *rt, const dht_addr *a) {
  return dht_addr_is_loopback(a) || (rt->s.diversity_exempt_private && dht_addr_is_private(a));
}

/* Contacts of bucket b on a's prefix, not counting skip, stopping at limit. */
static int count_prefix(const bucket *b, const dht_addr *a, const dht_rt_contact *skip, int limit,
                        int cnt) {
  const uint32_t *pfx = pfx_of(b);
  uint32_t key = pfx_key(a);
  for (int i = 0; i < b->n && cnt < limit; i++)
    if (pfx[i] == key && &b->slot[i] != skip && same_prefix(&b->slot[i].addr, a))
      cnt++;
  return cnt;
}

/* The per-bucket limit for a contact at a in bucket bi, not counting skip
 * (the contact itself when its address changes).  0 = no limit. */
static bool diversity_ok_bucket(const dht_rt *rt, int bi, const dht_addr *a,
                                const dht_rt_contact *skip) {
  int lb = rt->s.max_per_prefix_bucket;
  return lb <= 0 || diversity_exempt(rt, a) || count_prefix(rt->b[bi], a, skip, lb, 0) < lb;
}

/* The whole-table limit, likewise. */
static bool diversity_ok_table(const dht_rt *rt, const dht_addr *a, const dht_rt_contact *skip) {
  int lt = rt->s.max_per_prefix_table;
  if (lt <= 0 || diversity_exempt(rt, a))
    return true;
  int cnt = 0;
  for (int j = 0; j < rt->nb && cnt < lt; j++)
    cnt = count_prefix(rt->b[j], a, skip, lt, cnt);
  return cnt < lt;
}

static bool diversity_ok(const dht_rt *rt, int bi, const dht_addr *a, const dht_rt_contact *skip) {
  return diversity_ok_bucket(rt, bi, a, skip) && diversity_ok_table(rt, a, skip);
}

/* ---- replacement cache -------------------------------------------------- */

/* Inserts c (not a pointer into b) at its place in bucket b's cache
 * (confirmed first, each group most recent first), dropping the last entry
 * if the cache is full.  The caller has checked that c may displace that
 * entry, and made room if the cache is not full. */
static void cache_insert(dht_rt *rt, bucket *b, const dht_rt_contact *c, uint64_t id64) {
  if (b->ncache == rt->s.replacement_cache)
    b->ncache--;
  const dht_rt_contact *rc = cache_of(b);
  int pos = 0;
  if (c->last_reply == 0)
    while (pos < b->ncache && rc[pos].last_reply != 0)
      pos++;
  open_at(b, b->n + pos);
  set_slot(b, b->n + pos, c, id64);
  b->ncache++;
}

/* Moves cache entries of bucket bi into its free slots, next-to-promote
 * first, skipping entries whose address the diversity limits refuse (they
 * stay cached).  Returns the number moved.  Never allocates: an entry
 * leaves its cache slot for the bucket's. */
static int fill_from_cache(dht_rt *rt, int bi) {
  bucket *b = rt->b[bi];
  int moved = 0;
  for (int j = 0; j < b->ncache && b->n < rt->s.k;) {
    if (!diversity_ok(rt, bi, &cache_of(b)[j].addr, NULL)) {
      j++;
      continue;
    }
    dht_rt_contact c = cache_of(b)[j];
    uint64_t id64 = ids_of(b)[b->n + j];
    remove_cached(b, j);
    add_contact(rt, b, &c, id64);
    rt->size++;
    moved++;
  }
  return moved;
}

/* ---- splitting ----------------------------------------------------------- */

/* The common prefix length of slot idx's ID with our own: from its 8-byte
 * prefix when that differs from ours (exact: the first differing bit is in
 * it), else from the full ID, hashed from the key (a 2^-64 event for a
 * hashed ID, so splits stay hash-free in practice). */
static int slot_cpl(const dht_rt *rt, const bucket *b, int idx) {
  uint64_t x = ids_of(b)[idx] ^ load64(rt->self);
  if (x)
    return __builtin_clzll(x);
  uint8_t id[DHT_ID_LEN];
  dht_id_from_pk(id, b->slot[idx].pk);
  return dht_id_cpl(rt->self, id);
}

/* Splits the last bucket: entries with cpl > nb-1 move, in order, to a new
 * last bucket, which inherits the old one's refresh time (it covered that
 * range until now); the others stay, in order.  Both halves are new
 * allocations sized to what they hold, made before anything changes.
 *
 * The cache is split the same way and both halves fill free slots from it,
 * although while nb < 256 the last bucket's cache is always empty (a full
 * last bucket splits instead of caching): this keeps the invariants true
 * without leaning on that argument. */
static int split_last(dht_rt *rt) {
  if (rt->nb == rt->cap) {
    int cap = rt->cap * 2 < ID_BITS ? rt->cap * 2 : ID_BITS;
    bucket **p = dht_mem_realloc(&rt->mem, rt->b, (size_t)cap * sizeof *p);
    if (!p)
      return DHT_ERR_NOMEM;
    rt->b = p;
    rt->cap = cap;
  }
  int depth = rt->nb - 1;
  bucket *old = rt->b[depth];
  int used = old->n + old->ncache, moving = 0;
  for (int i = 0; i < used; i++)
    moving += slot_cpl(rt, old, i) > depth;
  bucket *stay = bucket_new(rt, cap_for(rt, used - moving), old->last_changed);
  bucket *nw = bucket_new(rt, cap_for(rt, moving), old->last_changed);
  if (!stay || !nw) {
    dht_mem_free(&rt->mem, stay);
    dht_mem_free(&rt->mem, nw);
    return DHT_ERR_NOMEM;
  }
  stay->ping_check = old->ping_check;

  const uint64_t *ids = ids_of(old);
  for (int i = 0; i < old->n; i++)
    add_contact(rt, slot_cpl(rt, old, i) > depth ? nw : stay, &old->slot[i], ids[i]);
  for (int i = old->n; i < used; i++) {
    bucket *to = slot_cpl(rt, old, i) > depth ? nw : stay;
    set_slot(to, to->n + to->ncache++, &old->slot[i], ids[i]);
  }
  dht_mem_free(&rt->mem, old);
  rt->b[depth] = stay;
  rt->b[rt->nb++] = nw;
  rt->ping_due = PING_CHECK_NOW;

  fill_from_cache(rt, depth);
  fill_from_cache(rt, depth + 1);
  return 0;
}

/* ---- life cycle ---------------------------------------------------------- */

int dht_rt_new(dht_rt **out, const uint8_t self[static DHT_ID_LEN], const dht_rt_settings *s,
               const dht_mem *mem) {
  if (!out || !s || s->k < 1 || s->k > DHT_K_MAX || s->replacement_cache < 0 ||
      s->replacement_cache > RC_MAX || s->max_per_prefix_bucket < 0 ||
      s->max_per_prefix_table < 0 || s->questionable_after_ms < 0 || s->max_failures < 1 ||
      s->max_failures > UINT8_MAX)
    return DHT_ERR_INVAL;
  if (!mem)
    mem = &dht_mem_libc;
  *out = NULL;

  dht_rt *rt = dht_mem_malloc(mem, sizeof *rt);
  if (!rt)
    return DHT_ERR_NOMEM;
  memset(rt, 0, sizeof *rt);
  rt->mem = *mem;
  memcpy(rt->self, self, DHT_ID_LEN);
  rt->s = *s;
  rt->cap = 8; /* enough for a few thousand nodes; doubles on demand */
  rt->b = dht_mem_malloc(mem, (size_t)rt->cap * sizeof *rt->b);
  if (!rt->b)
    goto fail;
  rt->b[0] = bucket_new(rt, 0, 0); /* no slots yet */
  if (!rt->b[0])
    goto fail;
  rt->nb = 1;
  rt->ping_due = PING_CHECK_NOW;
  *out = rt;
  return 0;

fail:
  dht_mem_free(mem, rt->b);
  dht_mem_free(mem, rt);
  return DHT_ERR_NOMEM;
}

void dht_rt_del(dht_rt *rt) {
  if (!rt)
    return;
  dht_mem mem = rt->mem;
  for (int i = 0; i < rt->nb; i++)
    dht_mem_free(&mem, rt->b[i]);
  dht_mem_free(&mem, rt->b);
  dht_mem_free(&mem, rt);
}

/* ---- updates ------------------------------------------------------------ */

static void contact_init(dht_rt_contact *c, const uint8_t pk[static DHT_PK_LEN],
                         const dht_addr *addr, bool confirmed, dht_ts rtt_ms, dht_ts now) {
  memset(c, 0, sizeof *c);
  memcpy(c->pk, pk, DHT_PK_LEN);
  c->addr = *addr;
  c->first_seen = now;
  c->last_reply = confirmed ? now : 0;
  if (confirmed)
    rtt_sample(c, rtt_ms);
}

/* When c will be due a liveness ping (see ping_due). */
static dht_ts ping_due_at(const dht_rt *rt, const dht_rt_contact *c) {
  dht_ts q = rt->s.questionable_after_ms;
  dht_ts a = c->last_reply == 0 ? PING_CHECK_NOW : c->last_reply + q;
  dht_ts p = c->last_ping == 0 ? PING_CHECK_NOW : c->last_ping + q;
  return a > p ? a : p;
}

/* The contact of bucket b that a newcomer should be pinged against: the
 * most questionable one due for a ping (oldest last_reply, then lowest
 * index), or NULL.  A scan records when the next contact falls due, so the
 * calls before then (one per cached newcomer, one per liveness tick) cost
 * nothing. */
static const dht_rt_contact *ping_candidate(const dht_rt *rt, bucket *b, dht_ts now) {
  if (now < b->ping_check)
    return NULL;
  const dht_rt_contact *best = NULL;
  dht_ts next = DHT_TS_NEVER;
  for (int i = 0; i < b->n; i++) {
    const dht_rt_contact *c = &b->slot[i];
    dht_ts due = ping_due_at(rt, c);
    if (due < next)
      next = due;
    if (ping_due(rt, c, now) && (!best || c->last_reply < best->last_reply))
      best = c;
  }
  b->ping_check = next;
  return best;
}

/* A contact we already hold, in bucket bi at slot i, was heard from. */
static int update_known(dht_rt *rt, int bi, int i, const dht_addr *addr, bool confirmed,
                        dht_ts rtt_ms, dht_ts now) {
  bucket *b = rt->b[bi];
  dht_rt_contact *c = &b->slot[i];
  if (!confirmed) /* hearsay about a contact we know better */
    return DHT_RT_UPDATED;
  c->last_reply = now;
  c->fails = 0;
  rtt_sample(c, rtt_ms);
  /* The peer may have moved; not onto a prefix that is already full. */
  if (!dht_addr_eq(&c->addr, addr) && diversity_ok(rt, bi, addr, c)) {
    c->addr = *addr;
    pfx_of(b)[i] = pfx_key(addr);
  }
  b->last_changed = now;
  return DHT_RT_UPDATED;
}

/* A contact in bucket bi's cache at index j was heard from. */
static int update_cached(dht_rt *rt, int bi, int j, const dht_addr *addr, bool confirmed,
                         dht_ts rtt_ms, dht_ts now) {
  bucket *b = rt->b[bi];
  if (!confirmed)
    return DHT_RT_CACHED;
  dht_rt_contact c = cache_of(b)[j];
  uint64_t id64 = ids_of(b)[b->n + j];
  c.last_reply = now;
  c.fails = 0;
  c.addr = *addr; /* checked against the limits when it is promoted */
  rtt_sample(&c, rtt_ms);
  remove_cached(b, j); /* its slot is the room for what follows */
  /* Room can appear behind a diversity refusal: take it if allowed now. */
  if (b->n < rt->s.k && diversity_ok(rt, bi, &c.addr, NULL)) {
    add_contact(rt, b, &c, id64);
    rt->size++;
    b->last_changed = now;
    return DHT_RT_ADDED;
  }
  cache_insert(rt, b, &c, id64);
  return DHT_RT_CACHED;
}

int dht_rt_update(dht_rt *rt, const uint8_t pk[static DHT_PK_LEN], const dht_addr *addr,
                  bool confirmed, dht_ts rtt_ms, dht_ts now, const dht_rt_contact **ping) {
  uint8_t id[DHT_ID_LEN];
  dht_id_from_pk(id, pk);
  return dht_rt_update_id(rt, pk, id, addr, confirmed, rtt_ms, now, ping);
}

int dht_rt_update_id(dht_rt *rt, const uint8_t pk[static DHT_PK_LEN],
                     const uint8_t id[static DHT_ID_LEN], const dht_addr *addr, bool confirmed,
                     dht_ts rtt_ms, dht_ts now, const dht_rt_contact **ping) {
  if (ping)
    *ping = NULL;
  if (!rt || !addr || (addr->family != DHT_AF_INET && addr->family != DHT_AF_INET6))
    return DHT_ERR_INVAL;
  if (memcmp(id, rt->self, DHT_ID_LEN) == 0)
    return DHT_RT_REJECTED;

  int bi = bucket_of(rt, id);
  bucket *b = rt->b[bi];
  uint64_t id64 = load64(id);
  int i = find_in(b, 0, b->n, pk, id64);
  if (i >= 0)
    return update_known(rt, bi, i, addr, confirmed, rtt_ms, now);
  i = find_in(b, b->n, b->ncache, pk, id64);
  if (i >= 0)
    return update_cached(rt, bi, i, addr, confirmed, rtt_ms, now);

  /* A newcomer.  The diversity limits are checked only where it would take
   * a slot (a cached newcomer is checked again when it is promoted), so the
   * common case -- an answer from a node that would only be cached -- costs
   * no scan of the table.  The whole-table limit is checked before a split,
   * so a refused address costs no split; the per-bucket limit in the bucket
   * the contact will really sit in (a split only moves contacts out of the
   * last bucket, so checking before it could refuse a contact that the
   * split gives room to). */
  if (b->n == rt->s.k && bi == rt->nb - 1 && rt->nb < ID_BITS) {
    if (!diversity_ok_table(rt, addr, NULL))
      return DHT_RT_REJECTED;
    while (b->n == rt->s.k && bi == rt->nb - 1 && rt->nb < ID_BITS) {
      int err = split_last(rt);
      if (err)
        return err;
      bi = bucket_of(rt, id);
      b = rt->b[bi];
    }
  }

  dht_rt_contact nc;
  contact_init(&nc, pk, addr, confirmed, rtt_ms, now);
  if (b->n < rt->s.k) {
    if (!diversity_ok(rt, bi, addr, NULL))
      return DHT_RT_REJECTED;
    b = make_room(rt, bi);
    if (!b)
      return DHT_ERR_NOMEM;
    add_contact(rt, b, &nc, id64);
    rt->size++;
    b->last_changed = now;
    return DHT_RT_ADDED;
  }

  /* Full.  A bad contact (max_failures timeouts in a row, kept because no
   * replacement was waiting) makes way: the worst one, most failures then
   * oldest reply. */
  int worst = -1;
  for (int j = 0; j < b->n; j++) {
    const dht_rt_contact *c = &b->slot[j];
    if (c->fails < rt->s.max_failures)
      continue;
    if (worst < 0 || c->fails > b->slot[worst].fails ||
        (c->fails == b->slot[worst].fails && c->last_reply < b->slot[worst].last_reply))
      worst = j;
  }
  if (worst >= 0) {
    if (!diversity_ok(rt, bi, addr, &b->slot[worst]))
      return DHT_RT_REJECTED;
    remove_contact(b, worst);
    add_contact(rt, b, &nc, id64);
    b->last_changed = now;
    return DHT_RT_ADDED;
  }

  /* Good contacts stay.  The newcomer waits in the cache: a confirmed one
   * displaces the oldest entry, an unconfirmed one only an unconfirmed one. */
  int rc = rt->s.replacement_cache;
  if (rc == 0 || (b->ncache == rc && !confirmed && cache_of(b)[rc - 1].last_reply != 0))
    return DHT_RT_REJECTED;
  if (b->ncache < rc) { /* the cache grows by one */
    b = make_room(rt, bi);
    if (!b)
      return DHT_ERR_NOMEM;
  }
  cache_insert(rt, b, &nc, id64);
  if (confirmed && ping)
    *ping = ping_candidate(rt, b, now);
  return DHT_RT_CACHED;
}

void dht_rt_heard(dht_rt *rt, const uint8_t pk[static DHT_PK_LEN],
                  const uint8_t id[static DHT_ID_LEN], const dht_addr *addr, dht_ts now) {
  bucket *b = rt->b[bucket_of(rt, id)];
  int i = find_in(b, 0, b->n, pk, load64(id));
  if (i < 0)
    return;
  dht_rt_contact *c = &b->slot[i];
  /* BEP 5's rule: a node that has answered us and queries us now is good.
   * Only at the address it answered from, and not one with failures, whose
   * replies are what is in doubt. */
  if (c->last_reply == 0 || c->fails > 0 || !dht_addr_eq(&c->addr, addr))
    return;
  c->last_reply = now;
}

bool dht_rt_is_settled(const dht_rt *rt, const uint8_t id[static DHT_ID_LEN], dht_ts now) {
  int bi = bucket_of(rt, id);
  const bucket *b = rt->b[bi];
  if (b->n < rt->s.k || (bi == rt->nb - 1 && rt->nb < ID_BITS))
    return false;
  for (int i = 0; i < b->n; i++)
    if (b->slot[i].fails > 0 || is_questionable(rt, &b->slot[i], now))
      return false;
  return true;
}

bool dht_rt_failed(dht_rt *rt, const uint8_t pk[static DHT_PK_LEN],
                   const uint8_t id[static DHT_ID_LEN], dht_ts now) {
  int bi = bucket_of(rt, id);
  bucket *b = rt->b[bi];
  uint64_t id64 = load64(id);
  int i = find_in(b, 0, b->n, pk, id64);
  if (i >= 0) {
    dht_rt_contact *c = &b->slot[i];
    if (c->fails < UINT8_MAX)
      c->fails++;
    /* Kademlia's rule: a contact that stopped answering is dropped only for
     * a replacement.  With none in the cache it stays, marked bad (the first
     * newcomer takes its slot), so a short outage of our own link does not
     * empty the table. */
    if (c->fails < rt->s.max_failures || b->ncache == 0)
      return false;
    remove_contact(b, i);
    rt->size--;
    if (fill_from_cache(rt, bi))
      b->last_changed = now;
    return true;
  }
  i = find_in(b, b->n, b->ncache, pk, id64);
  if (i >= 0) /* a replacement that does not answer is no replacement */
    remove_cached(b, i);
  return false;
}

void dht_rt_pinged(dht_rt *rt, const uint8_t pk[static DHT_PK_LEN],
                   const uint8_t id[static DHT_ID_LEN], dht_ts now) {
  bucket *b = rt->b[bucket_of(rt, id)];
  uint64_t id64 = load64(id);
  int i = find_in(b, 0, b->n, pk, id64);
  if (i >= 0) {
    b->slot[i].last_ping = now;
    return;
  }
  i = find_in(b, b->n, b->ncache, pk, id64);
  if (i >= 0)
    cache_of(b)[i].last_ping = now;
}

bool dht_rt_remove(dht_rt *rt, const uint8_t pk[static DHT_PK_LEN],
                   const uint8_t id[static DHT_ID_LEN]) {
  int bi = bucket_of(rt, id);
  bucket *b = rt->b[bi];
  uint64_t id64 = load64(id);
  int i = find_in(b, 0, b->n, pk, id64);
  if (i >= 0) {
    remove_contact(b, i);
    rt->size--;
    fill_from_cache(rt, bi);
    return true;
  }
  i = find_in(b, b->n, b->ncache, pk, id64);
  if (i < 0)
    return false;
  remove_cached(b, i);
  return true;
}

/* ---- queries -------------------------------------------------------------- */

const dht_rt_contact *dht_rt_find(const dht_rt *rt, const uint8_t pk[static DHT_PK_LEN],
                                  const uint8_t id[static DHT_ID_LEN]) {
  const bucket *b = rt->b[bucket_of(rt, id)];
  int i = find_in(b, 0, b->n, pk, load64(id));
  return i >= 0 ? &b->slot[i] : NULL;
}

typedef struct closest_ctx {
  const uint8_t *target;
  uint64_t t64; /* load64(target) */
  bool only_good;
  const dht_rt_contact **out;
  int n;   /* wanted */
  int cnt; /* out[0, cnt) are taken */
} closest_ctx;

/* Sort keys: the top 59 bits of the distance, then the contact's slot in
 * its bucket (k <= 32 fits in 5 bits).  Equal keys cannot happen, and keys
 * whose distance bits are equal (a 2^-59 event for hashed IDs) are ordered
 * by the full comparison, on IDs hashed from the two keys (the table keeps
 * only their first 8 bytes). */
#define SLOT_BITS 5
#define SLOT_MASK ((uint64_t)(1u << SLOT_BITS) - 1)

static bool key_less(const closest_ctx *x, const bucket *b, uint64_t p, uint64_t q) {
  if ((p ^ q) >> SLOT_BITS)
    return p < q;
  uint8_t ip[DHT_ID_LEN], iq[DHT_ID_LEN];
  dht_id_from_pk(ip, b->slot[p & SLOT_MASK].pk);
  dht_id_from_pk(iq, b->slot[q & SLOT_MASK].pk);
  return dht_id_cmp_dist(ip, iq, x->target) < 0;
}

/* Appends bucket b's eligible contacts to out, closest first, until n are
 * held.  Only the r = n - cnt closest of the bucket are wanted, so they are
 * kept by a bounded insertion sort of their keys (8 bytes each, in a local
 * array): a contact farther than the r-th so far costs one comparison.  That
 * matters when a bucket only tops up the result (the engine asks for k + 1
 * so that it can leave out the requester).  A branch-free rank sort of the
 * whole bucket measured no faster. */
static void closest_take(closest_ctx *x, const bucket *b) {
  uint64_t s[DHT_K_MAX];
  const uint64_t *ids = ids_of(b);
  int r = x->n - x->cnt < DHT_K_MAX ? x->n - x->cnt : DHT_K_MAX;
  int m = 0, n = b->n;
  for (int i = 0; i < n; i++) {
    uint64_t v = ((ids[i] ^ x->t64) & ~SLOT_MASK) | (uint64_t)i;
    if (m == r && !key_less(x, b, v, s[r - 1]))
      continue; /* farther than the r kept: no need to read the contact */
    const dht_rt_contact *c = &b->slot[i];
    if (x->only_good && (c->last_reply == 0 || c->fails > 0))
      continue;
    int j;
    if (m < r) {
      j = m++;
    } else {
      if (!key_less(x, b, v, s[r - 1]))
        continue;
      j = r - 1;
    }
    for (; j > 0 && key_less(x, b, v, s[j - 1]); j--)
      s[j] = s[j - 1];
    s[j] = v;
  }
  for (int i = 0; i < m; i++)
    x->out[x->cnt++] = &b->slot[s[i] & SLOT_MASK];
}

static bool bit_at(const uint8_t *d, int i) {
  return d[i / 8] >> (7 - i % 8) & 1;
}

/*
 * Every bucket is a group: whole buckets are strictly ordered by distance to
 * the target, so walking them in that order and sorting each one alone gives
 * exactly the n closest.  Why: let t be the target, D = self XOR t, L = nb-1.
 * A contact x of bucket j < L agrees with self on bits 0..j-1 and differs at
 * bit j, so x XOR t equals D on bits 0..j-1 and has NOT D_j at bit j; a
 * contact of bucket L agrees with self, so x XOR t equals D, on bits 0..L-1.
 * Take buckets j < j' (j' <= L): their contacts' distances agree on bits
 * 0..j-1 and differ at bit j, where bucket j has NOT D_j and bucket j' has
 * D_j.  So every contact of bucket j is closer than every contact of j'
 * when D_j = 1, and farther when D_j = 0.  The order is therefore:
 *
 *   buckets j < L with D_j = 1, ascending;  bucket L;
 *   buckets j < L with D_j = 0, descending.
 *
 * With c = cpl(self, t) = the first j with D_j = 1, bucket c (if c < L)
 * comes first and buckets c-1, ..., 0 come last in that order, as the usual
 * "buckets >= c, then c-1, c-2, ..." argument says; the bits of D below c
 * also order the deeper buckets among themselves, so no step ever has to
 * merge several buckets.  For a random target c = 0 half the time, and
 * bucket 0 alone, usually full, answers.  target == self: D = 0, so L, L-1,
 * ..., 0.
 */
int dht_rt_closest(const dht_rt *rt, const uint8_t target[static DHT_ID_LEN], bool only_good,
                   const dht_rt_contact **out, int n) {
  if (n <= 0 || rt->size == 0)
    return 0;
  closest_ctx x = {target, load64(target), only_good, out, n, 0};
  uint8_t d[DHT_ID_LEN];
  dht_id_xor(d, rt->self, target);
  int last = rt->nb - 1;
  for (int j = 0; j < last && x.cnt < n; j++)
    if (bit_at(d, j))
      closest_take(&x, rt->b[j]);
  if (x.cnt < n)
    closest_take(&x, rt->b[last]);
  for (int j = last - 1; j >= 0 && x.cnt < n; j--)
    if (!bit_at(d, j))
      closest_take(&x, rt->b[j]);
  return x.cnt;
}

int dht_rt_size(const dht_rt *rt) {
  return rt->size;
}

int dht_rt_buckets(const dht_rt *rt) {
  return rt->nb;
}

int dht_rt_bucket_fill(const dht_rt *rt, const uint8_t id[static DHT_ID_LEN]) {
  return rt->b[bucket_of(rt, id)]->n;
}

const dht_rt_contact *dht_rt_at(const dht_rt *rt, int i) {
  if (i < 0 || i >= rt->size)
    return NULL;
  for (int j = 0; j < rt->nb; j++) {
    if (i < rt->b[j]->n)
      return &rt->b[j]->slot[i];
    i -= rt->b[j]->n;
  }
  return NULL; /* unreachable while size == sum of n */
}

const dht_rt_contact *dht_rt_next_to_ping(dht_rt *rt, dht_ts now) {
  const dht_rt_contact *best = NULL;
  dht_ts due = DHT_TS_NEVER;
  for (int j = 0; j < rt->nb; j++) {
    const dht_rt_contact *c = ping_candidate(rt, rt->b[j], now);
    if (c && (!best || c->last_reply < best->last_reply))
      best = c;
    if (rt->b[j]->ping_check < due)
      due = rt->b[j]->ping_check;
  }
  rt->ping_due = due;
  return best;
}

dht_ts dht_rt_ping_due(const dht_rt *rt) {
  return rt->ping_due;
}

int dht_rt_stale_bucket(const dht_rt *rt, dht_ts now, dht_ts interval) {
  int best = -1;
  for (int i = 0; i < rt->nb; i++) {
    dht_ts t = rt->b[i]->last_changed;
    if (now - t >= interval && (best < 0 || t < rt->b[best]->last_changed))
      best = i;
  }
  return best;
}

void dht_rt_touch_bucket(dht_rt *rt, int idx, dht_ts now) {
  if (idx >= 0 && idx < rt->nb)
    rt->b[idx]->last_changed = now;
}

dht_ts dht_rt_timeout(const dht_rt_contact *c, dht_ts min_ms, dht_ts max_ms) {
  if (c->srtt_ms == 0 && c->rttvar_ms == 0)
    return max_ms;
  dht_ts t = (dht_ts)c->srtt_ms + 4 * (dht_ts)c->rttvar_ms;
  if (t > max_ms)
    t = max_ms;
  if (t < min_ms)
    t = min_ms;
  return t;
}

/* ---- invariant check ------------------------------------------------------ */

/* Slot idx of bucket bi: its ID (hashed from its key) starts with
 * ids[idx], is not ours and belongs in bucket bi; its pfx key matches its
 * address. */
static bool entry_ok(const dht_rt *rt, const bucket *b, int bi, int idx) {
  const dht_rt_contact *c = &b->slot[idx];
  uint8_t id[DHT_ID_LEN];
  dht_id_from_pk(id, c->pk);
  if (ids_of(b)[idx] != load64(id) || memcmp(id, rt->self, DHT_ID_LEN) == 0 ||
      pfx_of(b)[idx] != pfx_key(&c->addr))
    return false;
  int cpl = dht_id_cpl(rt->self, id);
  return bi < rt->nb - 1 ? cpl == bi : cpl >= bi;
}

int dht_rt_check(const dht_rt *rt) {
  if (!rt || rt->nb < 1 || rt->nb > ID_BITS || rt->nb > rt->cap || !rt->b)
    return DHT_ERR_INTERNAL;
  int k = rt->s.k, max = k + rt->s.replacement_cache;
  int size = 0;
  for (int bi = 0; bi < rt->nb; bi++) {
    bucket *b = rt->b[bi];
    if (!b || b->n < 0 || b->n > k || b->ncache < 0 || b->ncache > rt->s.replacement_cache ||
        b->n + b->ncache > b->cap || b->cap > max || (b->cap % GROW_STEP && b->cap != max))
      return DHT_ERR_INTERNAL;
    size += b->n;
    for (int i = 0; i < b->n; i++)
      if (b->ping_check > ping_due_at(rt, &b->slot[i]))
        return DHT_ERR_INTERNAL;
    if (rt->ping_due > b->ping_check)
      return DHT_ERR_INTERNAL;
    const dht_rt_contact *rc = cache_of(b);
    for (int i = 1; i < b->ncache; i++)
      if (rc[i].last_reply != 0 &&
          (rc[i - 1].last_reply == 0 || rc[i - 1].last_reply < rc[i].last_reply))
        return DHT_ERR_INTERNAL; /* confirmed first, most recent first */
    /* Every used slot, bucket and cache, is well formed, and its id unique
     * within the bucket (other buckets hold other cpls, so they cannot
     * collide).  Only slots whose 8-byte prefixes are equal can share an id;
     * those are compared in full. */
    const uint64_t *ids = ids_of(b);
    int used = b->n + b->ncache;
    for (int i = 0; i < used; i++) {
      if (!entry_ok(rt, b, bi, i))
        return DHT_ERR_INTERNAL;
      for (int j = i + 1; j < used; j++) {
        if (ids[i] != ids[j])
          continue;
        uint8_t idi[DHT_ID_LEN], idj[DHT_ID_LEN];
        dht_id_from_pk(idi, b->slot[i].pk);
        dht_id_from_pk(idj, b->slot[j].pk);
        if (memcmp(idi, idj, DHT_ID_LEN) == 0)
          return DHT_ERR_INTERNAL;
      }
    }
  }
  return size == rt->size ? 0 : DHT_ERR_INTERNAL;
}

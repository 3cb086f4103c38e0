/*
 * store_mem.c - the memory backend (store_mem_new): the records a storage
 * node keeps for others, in memory, for roost-sim and the tests.
 *
 * Three AVL trees over the same record nodes, so every order is defined by
 * the keys alone (never by pointers or insertion history):
 *
 *   by key     (mbox, hash)                  get, put, del, scan_mbox
 *   by expiry  (expires_s, mbox, hash)       scan_expired
 *   mailboxes  (mbox) with usage aggregates  scan_mboxes, usage
 *
 * Invariants: every record node is in the first two trees exactly once; a
 * mailbox node exists exactly while it has records and its aggregates are the
 * sums over them; `total` is the sum over all mailboxes.  A record node holds
 * only its own data bytes (tombstones are small), and an empty backend is one
 * small struct.  Writes are durable at once: put/del return the next sequence
 * number and durable() the last one.
 *
 * Iteration needs no parent pointers: the next node after key k is the
 * smallest node greater than k, found from the root (O(log n) per step).
 * put allocates before it changes anything, so out of memory leaves the
 * backend as it was.
 */
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dht.h"
#include "store.h"

#define KEY_LEN (STORE_MBOX_LEN + STORE_HASH_LEN)

/* ---- a small AVL tree (recursive; height <= 1.44 log2 n) ---------------- */

typedef struct avl {
  struct avl *l, *r;
  int h;
} avl;

/* <0, 0, >0 as key is below, equal to, above node n. */
typedef int (*avl_cmp)(const void *key, const avl *n);

static int height(const avl *n) {
  return n ? n->h : 0;
}

static void fix(avl *n) {
  int hl = height(n->l), hr = height(n->r);
  n->h = 1 + (hl > hr ? hl : hr);
}

static avl *rot_right(avl *n) {
  avl *l = n->l;
  n->l = l->r;
  l->r = n;
  fix(n);
  fix(l);
  return l;
}

static avl *rot_left(avl *n) {
  avl *r = n->r;
  n->r = r->l;
  r->l = n;
  fix(n);
  fix(r);
  return r;
}

static avl *balance(avl *n) {
  fix(n);
  int b = height(n->l) - height(n->r);
  if (b > 1) {
    if (height(n->l->l) < height(n->l->r))
      n->l = rot_left(n->l);
    return rot_right(n);
  }
  if (b < -1) {
    if (height(n->r->r) < height(n->r->l))
      n->r = rot_right(n->r);
    return rot_left(n);
  }
  return n;
}

/* Inserts n (whose key is `key`, not yet in the tree).  Returns the root. */
static avl *avl_insert(avl *t, avl *n, avl_cmp cmp, const void *key) {
  if (!t) {
    n->l = n->r = NULL;
    n->h = 1;
    return n;
  }
  if (cmp(key, t) < 0)
    t->l = avl_insert(t->l, n, cmp, key);
  else
    t->r = avl_insert(t->r, n, cmp, key);
  return balance(t);
}

static avl *remove_min(avl *t, avl **min) {
  if (!t->l) {
    *min = t;
    return t->r;
  }
  t->l = remove_min(t->l, min);
  return balance(t);
}

/* Unlinks the node equal to key (which must be there).  Returns the root. */
static avl *avl_remove(avl *t, avl_cmp cmp, const void *key) {
  assert(t);
  int c = cmp(key, t);
  if (c < 0) {
    t->l = avl_remove(t->l, cmp, key);
    return balance(t);
  }
  if (c > 0) {
    t->r = avl_remove(t->r, cmp, key);
    return balance(t);
  }
  if (!t->r)
    return t->l;
  avl *m;
  avl *r = remove_min(t->r, &m);
  m->l = t->l;
  m->r = r;
  return balance(m);
}

static avl *avl_find(avl *t, avl_cmp cmp, const void *key) {
  while (t) {
    int c = cmp(key, t);
    if (c == 0)
      return t;
    t = c < 0 ? t->l : t->r;
  }
  return NULL;
}

/* The smallest node > key (strict) or >= key (!strict), or NULL. */
static avl *avl_after(avl *t, avl_cmp cmp, const void *key, bool strict) {
  avl *best = NULL;
  while (t) {
    int c = cmp(key, t);
    if (c < 0 || (c == 0 && !strict)) {
      best = t;
      t = t->l;
    } else {
      t = t->r;
    }
  }
  return best;
}

static void avl_free_all(avl *t, size_t off, const dht_mem *mem) {
  while (t) {
    avl_free_all(t->l, off, mem);
    avl *r = t->r;
    dht_mem_free(mem, (char *)t - off);
    t = r;
  }
}

/* ---- nodes ---------------------------------------------------------------- */

/* A record: the store_rec fields without the fixed-size data array. */
typedef struct node {
  avl by_key, by_exp;
  uint8_t key[KEY_LEN]; /* mbox || hash */
  uint8_t kind, hosted;
  uint16_t len;
  uint8_t mbox_pk[DHT_PK_LEN];
  uint64_t deposited_s;
  int64_t expires_s;
  uint8_t sig[DHT_SIG_LEN];
  uint8_t data[]; /* len bytes */
} node;

/* A mailbox that has records, with the sums the quotas need. */
typedef struct mbox {
  avl t;
  uint8_t id[STORE_MBOX_LEN];
  store_usage u;
  int64_t nhosted; /* records with hosted = 1 */
} mbox;

typedef struct exp_key {
  int64_t expires_s;
  const uint8_t *key;
} exp_key;

typedef struct mem_be {
  dht_mem mem;
  avl *by_key, *by_exp, *mboxes;
  store_usage total;
  int64_t seq;
} mem_be;

#define NODE_OF(p, field) ((node *)((char *)(p)-offsetof(node, field)))
#define MBOX_OF(p) ((mbox *)((char *)(p)-offsetof(mbox, t)))

static int cmp_key(const void *key, const avl *n) {
  return memcmp(key, NODE_OF(n, by_key)->key, KEY_LEN);
}

static int cmp_exp(const void *key, const avl *n) {
  const exp_key *k = key;
  const node *o = NODE_OF(n, by_exp);
  if (k->expires_s != o->expires_s)
    return k->expires_s < o->expires_s ? -1 : 1;
  return memcmp(k->key, o->key, KEY_LEN);
}

static int cmp_mbox(const void *key, const avl *n) {
  return memcmp(key, MBOX_OF(n)->id, STORE_MBOX_LEN);
}

static void to_rec(const node *n, store_rec *r) {
  memcpy(r->mbox, n->key, STORE_MBOX_LEN);
  memcpy(r->hash, n->key + STORE_MBOX_LEN, STORE_HASH_LEN);
  r->kind = n->kind;
  r->hosted = n->hosted;
  memcpy(r->mbox_pk, n->mbox_pk, DHT_PK_LEN);
  r->deposited_s = n->deposited_s;
  r->expires_s = n->expires_s;
  memcpy(r->sig, n->sig, DHT_SIG_LEN);
  r->len = n->len;
  memcpy(r->data, n->data, n->len);
}

/* Adds (sign 1) or removes (sign -1) n's share of the usage sums. */
static void account(mem_be *b, mbox *m, const node *n, int sign) {
  int64_t items = n->kind == STORE_REC_ITEM ? 1 : 0;
  int64_t bytes = items ? n->len : 0;
  store_usage *us[2] = {&m->u, &b->total};
  for (int i = 0; i < 2; i++) {
    us[i]->items += sign * items;
    us[i]->bytes += sign * bytes;
    us[i]->records += sign;
  }
  m->nhosted += sign * (n->hosted ? 1 : 0);
}

/* Unlinks and frees record n.  Its mailbox goes with its last record unless
 * keep_mbox (a replacement is about to be linked). */
static void unlink_node(mem_be *b, node *n, bool keep_mbox) {
  avl *ma = avl_find(b->mboxes, cmp_mbox, n->key);
  assert(ma);
  mbox *m = MBOX_OF(ma);
  account(b, m, n, -1);
  exp_key ek = {n->expires_s, n->key};
  b->by_key = avl_remove(b->by_key, cmp_key, n->key);
  b->by_exp = avl_remove(b->by_exp, cmp_exp, &ek);
  if (m->u.records == 0 && !keep_mbox) {
    b->mboxes = avl_remove(b->mboxes, cmp_mbox, m->id);
    dht_mem_free(&b->mem, m);
  }
  dht_mem_free(&b->mem, n);
}

/* ---- the backend ------------------------------------------------------------ */

static int64_t mem_put(void *ctx, const store_rec *r) {
  mem_be *b = ctx;
  if (!r || r->len > STORE_ITEM_MAX || r->kind < STORE_REC_ITEM || r->kind > STORE_REC_EVICTED)
    return DHT_ERR_INVAL;
  node *n = dht_mem_malloc(&b->mem, offsetof(node, data) + r->len);
  if (!n)
    return DHT_ERR_NOMEM;
  memcpy(n->key, r->mbox, STORE_MBOX_LEN);
  memcpy(n->key + STORE_MBOX_LEN, r->hash, STORE_HASH_LEN);
  n->kind = r->kind;
  n->hosted = r->hosted ? 1 : 0;
  n->len = r->len;
  memcpy(n->mbox_pk, r->mbox_pk, DHT_PK_LEN);
  n->deposited_s = r->deposited_s;
  n->expires_s = r->expires_s;
  memcpy(n->sig, r->sig, DHT_SIG_LEN);
  memcpy(n->data, r->data, r->len);

  avl *old = avl_find(b->by_key, cmp_key, n->key);
  avl *ma = avl_find(b->mboxes, cmp_mbox, n->key);
  mbox *m = ma ? MBOX_OF(ma) : NULL;
  if (!m) {
    m = dht_mem_calloc(&b->mem, 1, sizeof *m);
    if (!m) {
      dht_mem_free(&b->mem, n);
      return DHT_ERR_NOMEM;
    }
    memcpy(m->id, r->mbox, STORE_MBOX_LEN);
    b->mboxes = avl_insert(b->mboxes, &m->t, cmp_mbox, m->id);
  } else if (old) {
    unlink_node(b, NODE_OF(old, by_key), true);
  }
  exp_key ek = {n->expires_s, n->key};
  b->by_key = avl_insert(b->by_key, &n->by_key, cmp_key, n->key);
  b->by_exp = avl_insert(b->by_exp, &n->by_exp, cmp_exp, &ek);
  account(b, m, n, 1);
  return ++b->seq;
}

static int mem_get(void *ctx, const uint8_t mbox_id[STORE_MBOX_LEN],
                   const uint8_t hash[STORE_HASH_LEN], store_rec *out) {
  mem_be *b = ctx;
  uint8_t key[KEY_LEN];
  memcpy(key, mbox_id, STORE_MBOX_LEN);
  memcpy(key + STORE_MBOX_LEN, hash, STORE_HASH_LEN);
  avl *a = avl_find(b->by_key, cmp_key, key);
  if (!a)
    return DHT_ERR_NOTFOUND;
  to_rec(NODE_OF(a, by_key), out);
  return 0;
}

static int64_t mem_del(void *ctx, const uint8_t mbox_id[STORE_MBOX_LEN],
                       const uint8_t hash[STORE_HASH_LEN]) {
  mem_be *b = ctx;
  uint8_t key[KEY_LEN];
  memcpy(key, mbox_id, STORE_MBOX_LEN);
  memcpy(key + STORE_MBOX_LEN, hash, STORE_HASH_LEN);
  avl *a = avl_find(b->by_key, cmp_key, key);
  if (!a)
    return DHT_ERR_NOTFOUND;
  unlink_node(b, NODE_OF(a, by_key), false);
  return ++b->seq;
}

static int mem_scan_mbox(void *ctx, const uint8_t mbox_id[STORE_MBOX_LEN],
                         const uint8_t after[STORE_HASH_LEN], store_rec *out, int max) {
  mem_be *b = ctx;
  uint8_t key[KEY_LEN];
  memcpy(key, mbox_id, STORE_MBOX_LEN);
  if (after)
    memcpy(key + STORE_MBOX_LEN, after, STORE_HASH_LEN);
  else
    memset(key + STORE_MBOX_LEN, 0, STORE_HASH_LEN);
  int n = 0;
  avl *a = avl_after(b->by_key, cmp_key, key, after != NULL);
  while (a && n < max) {
    const node *o = NODE_OF(a, by_key);
    if (memcmp(o->key, mbox_id, STORE_MBOX_LEN) != 0)
      break;
    to_rec(o, &out[n++]);
    a = avl_after(b->by_key, cmp_key, o->key, true);
  }
  return n;
}

static int mem_scan_mboxes(void *ctx, const uint8_t after[STORE_MBOX_LEN],
                           uint8_t (*ids)[STORE_MBOX_LEN], uint8_t *hosted, int max) {
  mem_be *b = ctx;
  static const uint8_t zero[STORE_MBOX_LEN];
  int n = 0;
  avl *a = avl_after(b->mboxes, cmp_mbox, after ? after : zero, after != NULL);
  while (a && n < max) {
    const mbox *m = MBOX_OF(a);
    memcpy(ids[n], m->id, STORE_MBOX_LEN);
    if (hosted)
      hosted[n] = m->nhosted > 0;
    n++;
    a = avl_after(b->mboxes, cmp_mbox, m->id, true);
  }
  return n;
}

static int mem_usage(void *ctx, const uint8_t mbox_id[STORE_MBOX_LEN], store_usage *out) {
  mem_be *b = ctx;
  if (!mbox_id) {
    *out = b->total;
    return 0;
  }
  avl *a = avl_find(b->mboxes, cmp_mbox, mbox_id);
  if (a)
    *out = MBOX_OF(a)->u;
  else
    memset(out, 0, sizeof *out);
  return 0;
}

static int mem_scan_expired(void *ctx, int64_t now_s, store_rec *out, int max) {
  mem_be *b = ctx;
  int n = 0;
  /* the leftmost node is the first in (expires, mbox, hash) order */
  avl *a = b->by_exp;
  while (a && a->l)
    a = a->l;
  while (a && n < max) {
    const node *o = NODE_OF(a, by_exp);
    if (o->expires_s >= now_s)
      break;
    to_rec(o, &out[n++]);
    exp_key ek = {o->expires_s, o->key};
    a = avl_after(b->by_exp, cmp_exp, &ek, true);
  }
  return n;
}

static int64_t mem_durable(void *ctx) {
  return ((mem_be *)ctx)->seq;
}

static void mem_close(void *ctx) {
  mem_be *b = ctx;
  if (!b)
    return;
  dht_mem mem = b->mem;
  /* every record is in by_key once; by_exp links the same nodes */
  avl_free_all(b->by_key, offsetof(node, by_key), &mem);
  avl_free_all(b->mboxes, offsetof(mbox, t), &mem);
  dht_mem_free(&mem, b);
}

int store_mem_new(store_backend *out, const dht_mem *mem) {
  if (!out)
    return DHT_ERR_INVAL;
  if (!mem)
    mem = &dht_mem_libc;
  mem_be *b = dht_mem_calloc(mem, 1, sizeof *b);
  if (!b)
    return DHT_ERR_NOMEM;
  b->mem = *mem;
  memset(out, 0, sizeof *out);
  out->ctx = b;
  out->put = mem_put;
  out->get = mem_get;
  out->del = mem_del;
  out->scan_mbox = mem_scan_mbox;
  out->scan_mboxes = mem_scan_mboxes;
  out->usage = mem_usage;
  out->scan_expired = mem_scan_expired;
  out->durable = mem_durable;
  out->close = mem_close;
  return 0;
}

/*
 * test_store_backend.c - the store_backend contract (store.h section 2), one
 * conformance suite run against the memory backend and the SQLite backend
 * (in a mkdtemp directory under /tmp, removed at the end).  SQLite runs it
 * three ways: every write committed at once (reads go to the database),
 * nothing committed (reads go to the pending overlay), and each write's batch
 * left in flight (reads go to the batch being committed).
 *
 * Conformance: put/get/replace, del, scan_mbox order and `after` paging,
 * scan_mboxes paging with hosted flags, usage per mailbox and in total
 * (tombstones and notices are records, not items), scan_expired order and
 * its strict bound, sequence numbers and durable().
 *
 * SQLite only: reads see pending writes and the batch in flight before
 * commit_end; another connection sees a write only after its commit, and
 * close commits what is pending; a failed or abandoned batch keeps its
 * writes pending (newer writes of the same keys win); random operation
 * sequences give the same answers from SQLite as from memory, and again
 * after a reopen.  Seeded: the seed is printed, ROOST_SEED=<n> repeats it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "store_sqlite.h"
#include "testutil.h"

static uint64_t g_seed;
static char g_dir[64];
static int g_nfile;

enum mode { M_MEM, M_SQL_COMMIT, M_SQL_PENDING, M_SQL_INFLIGHT };

typedef struct fx {
  enum mode mode;
  store_backend be;
  store_sqlite *sq;
  char path[128];
} fx;

static void new_path(char *out, size_t n) {
  snprintf(out, n, "%s/mbox%d.db", g_dir, g_nfile++);
}

static void sql_open(store_sqlite **sq, store_backend *be, const char *path) {
  char err[256] = "";
  int rc = store_sqlite_open(sq, be, path, err, sizeof err);
  if (rc != 0)
    fail_msg("store_sqlite_open %s: %d %s", path, rc, err);
}

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  f->mode = (enum mode)(intptr_t)*state;
  if (f->mode == M_MEM) {
    assert_int_equal(store_mem_new(&f->be, NULL), 0);
  } else {
    new_path(f->path, sizeof f->path);
    sql_open(&f->sq, &f->be, f->path);
  }
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  if (f->sq && f->mode == M_SQL_INFLIGHT && store_sqlite_commit_end(f->sq) < 0)
    return -1;
  f->be.close(f->be.ctx);
  if (f->path[0]) {
    char p[160];
    unlink(f->path);
    snprintf(p, sizeof p, "%s-wal", f->path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", f->path);
    unlink(p);
  }
  free(f);
  return 0;
}

/* After a write: commit it, leave it pending, or leave it in flight. */
static void sync_(fx *f) {
  if (!f->sq)
    return;
  switch (f->mode) {
  case M_SQL_COMMIT:
    assert_true(store_sqlite_commit_begin(f->sq));
    assert_int_equal(store_sqlite_commit_run(f->sq), 0);
    store_sqlite_commit_end(f->sq);
    break;
  case M_SQL_INFLIGHT:
    /* the previous batch lands now, and this write goes in flight */
    store_sqlite_commit_end(f->sq);
    assert_true(store_sqlite_commit_begin(f->sq));
    assert_int_equal(store_sqlite_commit_run(f->sq), 0);
    break;
  default:
    break;
  }
}

static void mkrec(store_rec *r, uint8_t mbox, uint8_t hash, int kind, int hosted, int64_t expires,
                  int len) {
  memset(r, 0, sizeof *r);
  memset(r->mbox, mbox, STORE_MBOX_LEN);
  memset(r->hash, hash, STORE_HASH_LEN);
  r->kind = (uint8_t)kind;
  r->hosted = (uint8_t)hosted;
  memset(r->mbox_pk, mbox ^ 0x5a, DHT_PK_LEN);
  r->deposited_s = 1700000000u + hash;
  r->expires_s = expires;
  memset(r->sig, hash ^ 0xa5, DHT_SIG_LEN);
  r->len = (uint16_t)len;
  for (int i = 0; i < len; i++)
    r->data[i] = (uint8_t)(i * 7 + hash + mbox);
}

/* Records compared field by field, data up to len only. */
static void assert_rec_eq(const store_rec *a, const store_rec *b) {
  assert_memory_equal(a->mbox, b->mbox, STORE_MBOX_LEN);
  assert_memory_equal(a->hash, b->hash, STORE_HASH_LEN);
  assert_int_equal(a->kind, b->kind);
  assert_int_equal(a->hosted, b->hosted);
  assert_memory_equal(a->mbox_pk, b->mbox_pk, DHT_PK_LEN);
  assert_int_equal(a->deposited_s, b->deposited_s);
  assert_int_equal(a->expires_s, b->expires_s);
  assert_memory_equal(a->sig, b->sig, DHT_SIG_LEN);
  assert_int_equal(a->len, b->len);
  if (a->len)
    assert_memory_equal(a->data, b->data, a->len);
}

static int64_t put(fx *f, const store_rec *r) {
  int64_t s = f->be.put(f->be.ctx, r);
  assert_true(s > 0);
  sync_(f);
  return s;
}

/* ---- conformance --------------------------------------------------------- */

static void t_put_get_replace(void **state) {
  fx *f = *state;
  store_rec r, o;
  mkrec(&r, 1, 2, STORE_REC_ITEM, 0, 100, STORE_ITEM_MAX);
  assert_int_equal(f->be.get(f->be.ctx, r.mbox, r.hash, &o), DHT_ERR_NOTFOUND);
  put(f, &r);
  memset(&o, 0xee, sizeof o);
  assert_int_equal(f->be.get(f->be.ctx, r.mbox, r.hash, &o), 0);
  assert_rec_eq(&o, &r);
  /* the same key replaces: other kind, length, expiry, flag */
  store_rec r2;
  mkrec(&r2, 1, 2, STORE_REC_TOMB, 1, 50, 168);
  r2.data[0] = 0x99;
  put(f, &r2);
  assert_int_equal(f->be.get(f->be.ctx, r.mbox, r.hash, &o), 0);
  assert_rec_eq(&o, &r2);
  /* neighbours are other keys */
  uint8_t h3[STORE_HASH_LEN];
  memset(h3, 3, sizeof h3);
  assert_int_equal(f->be.get(f->be.ctx, r.mbox, h3, &o), DHT_ERR_NOTFOUND);
  /* an empty record and refusals */
  store_rec e;
  mkrec(&e, 1, 4, STORE_REC_EVICTED, 0, 10, 0);
  put(f, &e);
  assert_int_equal(f->be.get(f->be.ctx, e.mbox, e.hash, &o), 0);
  assert_rec_eq(&o, &e);
  e.len = STORE_ITEM_MAX + 1;
  assert_int_equal(f->be.put(f->be.ctx, &e), DHT_ERR_INVAL);
  e.len = 0;
  e.kind = 0;
  assert_int_equal(f->be.put(f->be.ctx, &e), DHT_ERR_INVAL);
  store_usage u;
  assert_int_equal(f->be.usage(f->be.ctx, NULL, &u), 0);
  assert_int_equal(u.records, 2);
}

static void t_del(void **state) {
  fx *f = *state;
  store_rec r, o;
  mkrec(&r, 7, 1, STORE_REC_ITEM, 0, 100, 296);
  int64_t s1 = put(f, &r);
  mkrec(&r, 7, 2, STORE_REC_ITEM, 0, 100, 296);
  put(f, &r);
  int64_t s2 = f->be.del(f->be.ctx, r.mbox, r.hash);
  assert_true(s2 > s1);
  sync_(f);
  assert_int_equal(f->be.get(f->be.ctx, r.mbox, r.hash, &o), DHT_ERR_NOTFOUND);
  assert_int_equal(f->be.del(f->be.ctx, r.mbox, r.hash), DHT_ERR_NOTFOUND);
  mkrec(&r, 7, 1, STORE_REC_ITEM, 0, 100, 296);
  assert_int_equal(f->be.get(f->be.ctx, r.mbox, r.hash, &o), 0);
  store_usage u;
  f->be.usage(f->be.ctx, r.mbox, &u);
  assert_int_equal(u.records, 1);
  assert_int_equal(u.items, 1);
  assert_int_equal(u.bytes, 296);
  /* deleting the last record removes the mailbox */
  assert_true(f->be.del(f->be.ctx, r.mbox, r.hash) > s2);
  sync_(f);
  uint8_t ids[4][STORE_MBOX_LEN];
  assert_int_equal(f->be.scan_mboxes(f->be.ctx, NULL, ids, NULL, 4), 0);
  f->be.usage(f->be.ctx, NULL, &u);
  assert_int_equal(u.records, 0);
  assert_int_equal(u.items, 0);
  assert_int_equal(u.bytes, 0);
  /* and it can come back */
  put(f, &r);
  assert_int_equal(f->be.get(f->be.ctx, r.mbox, r.hash, &o), 0);
}

static void t_scan_mbox(void **state) {
  fx *f = *state;
  tu_rng rng;
  tu_rng_init(&rng, g_seed, 1);
  /* 60 hashes of mailbox 0x40 in random order; neighbours 0x3f and 0x41 */
  int order[60];
  for (int i = 0; i < 60; i++)
    order[i] = i;
  for (int i = 59; i > 0; i--) {
    int j = (int)tu_rng_below(&rng, (uint64_t)i + 1), t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  store_rec r;
  for (int i = 0; i < 60; i++) {
    mkrec(&r, 0x40, (uint8_t)(order[i] * 4 + 1), STORE_REC_ITEM, 0, 100, 168);
    r.hash[15] = (uint8_t)order[i]; /* hashes differ in the first and last byte */
    put(f, &r);
  }
  mkrec(&r, 0x3f, 0xff, STORE_REC_ITEM, 0, 100, 168);
  put(f, &r);
  mkrec(&r, 0x41, 0x00, STORE_REC_ITEM, 0, 100, 168);
  put(f, &r);
  /* delete every 10th */
  for (int i = 0; i < 60; i += 10) {
    mkrec(&r, 0x40, (uint8_t)(i * 4 + 1), STORE_REC_ITEM, 0, 100, 168);
    r.hash[15] = (uint8_t)i;
    assert_true(f->be.del(f->be.ctx, r.mbox, r.hash) > 0);
  }
  sync_(f);
  store_rec *out = calloc(64, sizeof *out);
  uint8_t mbox[STORE_MBOX_LEN];
  memset(mbox, 0x40, sizeof mbox);
  /* all at once */
  int n = f->be.scan_mbox(f->be.ctx, mbox, NULL, out, 64);
  assert_int_equal(n, 54);
  for (int i = 0; i < n; i++) {
    assert_memory_equal(out[i].mbox, mbox, STORE_MBOX_LEN);
    if (i)
      assert_true(memcmp(out[i - 1].hash, out[i].hash, STORE_HASH_LEN) < 0);
    assert_true(out[i].hash[15] % 10 != 0);
  }
  /* in pages of 7 */
  int seen = 0;
  const uint8_t *after = NULL;
  uint8_t last[STORE_HASH_LEN];
  store_rec page[7];
  for (;;) {
    int m = f->be.scan_mbox(f->be.ctx, mbox, after, page, 7);
    assert_true(m >= 0 && m <= 7);
    if (m == 0)
      break;
    for (int i = 0; i < m; i++)
      assert_rec_eq(&page[i], &out[seen + i]);
    seen += m;
    memcpy(last, page[m - 1].hash, STORE_HASH_LEN);
    after = last;
  }
  assert_int_equal(seen, 54);
  /* after a hash that is not stored; after the last; max 0; empty mailbox */
  uint8_t mid[STORE_HASH_LEN];
  memcpy(mid, out[10].hash, STORE_HASH_LEN);
  mid[15] ^= 0x80;
  int m = f->be.scan_mbox(f->be.ctx, mbox, mid, out + 60, 1);
  assert_int_equal(m, 1);
  assert_true(memcmp(out[60].hash, mid, STORE_HASH_LEN) > 0);
  assert_true(memcmp(out[60].hash, out[10].hash, STORE_HASH_LEN) > 0);
  assert_int_equal(f->be.scan_mbox(f->be.ctx, mbox, out[53].hash, page, 7), 0);
  assert_int_equal(f->be.scan_mbox(f->be.ctx, mbox, NULL, page, 0), 0);
  memset(mbox, 0x42, sizeof mbox);
  assert_int_equal(f->be.scan_mbox(f->be.ctx, mbox, NULL, page, 7), 0);
  free(out);
}

static void t_scan_mboxes(void **state) {
  fx *f = *state;
  store_rec r;
  /* mailboxes 10..39; hosted when i % 3 == 0 (one hosted record among
   * plain ones is enough for the flag) */
  for (int i = 10; i < 40; i++) {
    mkrec(&r, (uint8_t)i, 1, STORE_REC_ITEM, 0, 100, 168);
    put(f, &r);
    mkrec(&r, (uint8_t)i, 2, STORE_REC_TOMB, i % 3 == 0, 100, 64);
    put(f, &r);
  }
  /* mailbox 20 loses its records: gone */
  mkrec(&r, 20, 1, STORE_REC_ITEM, 0, 100, 168);
  assert_true(f->be.del(f->be.ctx, r.mbox, r.hash) > 0);
  mkrec(&r, 20, 2, STORE_REC_ITEM, 0, 100, 168);
  assert_true(f->be.del(f->be.ctx, r.mbox, r.hash) > 0);
  /* mailbox 21 (hosted) loses its hosted record: not hosted any more */
  mkrec(&r, 21, 2, STORE_REC_ITEM, 0, 100, 168);
  assert_true(f->be.del(f->be.ctx, r.mbox, r.hash) > 0);
  sync_(f);
  uint8_t ids[40][STORE_MBOX_LEN], hosted[40];
  int n = f->be.scan_mboxes(f->be.ctx, NULL, ids, hosted, 40);
  assert_int_equal(n, 29);
  int k = 0;
  for (int i = 10; i < 40; i++) {
    if (i == 20)
      continue;
    uint8_t want[STORE_MBOX_LEN];
    memset(want, i, sizeof want);
    assert_memory_equal(ids[k], want, STORE_MBOX_LEN);
    assert_int_equal(hosted[k], i % 3 == 0 && i != 21);
    k++;
  }
  /* pages of 4 give the same list */
  uint8_t pid[4][STORE_MBOX_LEN], ph[4], last[STORE_MBOX_LEN];
  int seen = 0;
  const uint8_t *after = NULL;
  for (;;) {
    int m = f->be.scan_mboxes(f->be.ctx, after, pid, ph, 4);
    if (m == 0)
      break;
    for (int i = 0; i < m; i++) {
      assert_memory_equal(pid[i], ids[seen + i], STORE_MBOX_LEN);
      assert_int_equal(ph[i], hosted[seen + i]);
    }
    seen += m;
    memcpy(last, pid[m - 1], STORE_MBOX_LEN);
    after = last;
  }
  assert_int_equal(seen, 29);
  /* `after` between IDs, and hosted may be NULL */
  uint8_t a[STORE_MBOX_LEN];
  memset(a, 25, sizeof a);
  a[31] = 26;
  assert_int_equal(f->be.scan_mboxes(f->be.ctx, a, pid, NULL, 1), 1);
  uint8_t want[STORE_MBOX_LEN];
  memset(want, 26, sizeof want);
  assert_memory_equal(pid[0], want, STORE_MBOX_LEN);
}

static void t_usage(void **state) {
  fx *f = *state;
  store_rec r;
  store_usage u;
  uint8_t m1[STORE_MBOX_LEN], m2[STORE_MBOX_LEN], m3[STORE_MBOX_LEN];
  memset(m1, 1, sizeof m1);
  memset(m2, 2, sizeof m2);
  memset(m3, 3, sizeof m3);
  assert_int_equal(f->be.usage(f->be.ctx, m1, &u), 0);
  assert_true(u.items == 0 && u.bytes == 0 && u.records == 0);
  for (int i = 0; i < 5; i++) {
    mkrec(&r, 1, (uint8_t)i, STORE_REC_ITEM, 0, 100, 168 + i);
    put(f, &r);
  }
  mkrec(&r, 1, 9, STORE_REC_TOMB, 0, 100, 500);
  put(f, &r);
  mkrec(&r, 1, 10, STORE_REC_EVICTED, 0, 100, 0);
  put(f, &r);
  mkrec(&r, 2, 1, STORE_REC_ITEM, 1, 100, 1000);
  put(f, &r);
  f->be.usage(f->be.ctx, m1, &u);
  assert_int_equal(u.items, 5);
  assert_int_equal(u.bytes, 5 * 168 + 10);
  assert_int_equal(u.records, 7);
  f->be.usage(f->be.ctx, m2, &u);
  assert_int_equal(u.items, 1);
  assert_int_equal(u.bytes, 1000);
  assert_int_equal(u.records, 1);
  f->be.usage(f->be.ctx, NULL, &u);
  assert_int_equal(u.items, 6);
  assert_int_equal(u.bytes, 5 * 168 + 10 + 1000);
  assert_int_equal(u.records, 8);
  /* an item replaced by its tombstone: a record, not an item */
  mkrec(&r, 1, 0, STORE_REC_TOMB, 0, 100, 400);
  put(f, &r);
  /* an item replaced by a longer item */
  mkrec(&r, 1, 1, STORE_REC_ITEM, 0, 100, 552);
  put(f, &r);
  f->be.usage(f->be.ctx, m1, &u);
  assert_int_equal(u.items, 4);
  assert_int_equal(u.bytes, 552 + 170 + 171 + 172);
  assert_int_equal(u.records, 7);
  f->be.usage(f->be.ctx, NULL, &u);
  assert_int_equal(u.items, 5);
  assert_int_equal(u.bytes, 552 + 170 + 171 + 172 + 1000);
  assert_int_equal(u.records, 8);
  assert_true(f->be.del(f->be.ctx, m2, r.hash) > 0);
  sync_(f);
  f->be.usage(f->be.ctx, m2, &u);
  assert_true(u.items == 0 && u.bytes == 0 && u.records == 0);
  f->be.usage(f->be.ctx, m3, &u);
  assert_true(u.items == 0 && u.bytes == 0 && u.records == 0);
  f->be.usage(f->be.ctx, NULL, &u);
  assert_int_equal(u.items, 4);
  assert_int_equal(u.records, 7);
}

static void t_scan_expired(void **state) {
  fx *f = *state;
  store_rec r;
  /* (mbox, hash, expires): ties on expiry sort by mailbox, then hash */
  static const int spec[][3] = {{5, 1, 300}, {2, 9, 100}, {2, 3, 100}, {1, 7, 100}, {9, 9, 50},
                                {3, 3, 200}, {4, 4, 400}, {3, 1, 200}, {6, 6, -5}};
  static const int want[][2] = {{6, 6}, {9, 9}, {1, 7}, {2, 3}, {2, 9}, {3, 1}, {3, 3}, {5, 1}};
  for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
    mkrec(&r, (uint8_t)spec[i][0], (uint8_t)spec[i][1], STORE_REC_ITEM, 0, spec[i][2], 168);
    put(f, &r);
  }
  store_rec out[10];
  /* strict: expires_s < now, so 400 is not expired at 400 */
  int n = f->be.scan_expired(f->be.ctx, 400, out, 10);
  assert_int_equal(n, 8);
  for (int i = 0; i < n; i++) {
    assert_int_equal(out[i].mbox[0], want[i][0]);
    assert_int_equal(out[i].hash[0], want[i][1]);
  }
  assert_int_equal(f->be.scan_expired(f->be.ctx, 100, out, 10), 2);
  assert_int_equal(f->be.scan_expired(f->be.ctx, 101, out, 3), 3);
  assert_int_equal(out[2].mbox[0], 1);
  assert_int_equal(f->be.scan_expired(f->be.ctx, -5, out, 10), 0);
  /* a new expiry moves a record */
  mkrec(&r, 9, 9, STORE_REC_TOMB, 0, 1000, 10);
  put(f, &r);
  assert_true(f->be.del(f->be.ctx, out[0].mbox, out[0].hash) > 0); /* 6/6 */
  sync_(f);
  n = f->be.scan_expired(f->be.ctx, 2000, out, 10);
  assert_int_equal(n, 8);
  assert_int_equal(out[0].mbox[0], 1);
  assert_int_equal(out[7].mbox[0], 9);
  assert_int_equal(out[7].expires_s, 1000);
}

static void t_seq_durable(void **state) {
  fx *f = *state;
  store_rec r;
  int64_t last = 0;
  assert_int_equal(f->be.durable(f->be.ctx), 0);
  for (int i = 0; i < 20; i++) {
    mkrec(&r, 1, (uint8_t)(i % 7), STORE_REC_ITEM, 0, 100, 168);
    int64_t s = (i % 5 == 4) ? f->be.del(f->be.ctx, r.mbox, r.hash) : f->be.put(f->be.ctx, &r);
    if (s == DHT_ERR_NOTFOUND)
      continue;
    assert_true(s > last);
    last = s;
    int64_t d = f->be.durable(f->be.ctx);
    assert_true(d <= last);
    if (f->mode == M_MEM)
      assert_int_equal(d, last);
    sync_(f);
    d = f->be.durable(f->be.ctx);
    if (f->mode == M_SQL_COMMIT)
      assert_int_equal(d, last);
    if (f->mode == M_SQL_PENDING || f->mode == M_SQL_INFLIGHT)
      assert_true(d < last);
  }
  if (f->sq) {
    if (f->mode == M_SQL_INFLIGHT)
      assert_int_equal(store_sqlite_commit_end(f->sq), last);
    if (store_sqlite_commit_begin(f->sq)) {
      assert_int_equal(store_sqlite_commit_run(f->sq), 0);
      assert_int_equal(store_sqlite_commit_end(f->sq), last);
    }
    assert_int_equal(f->be.durable(f->be.ctx), last);
    assert_false(store_sqlite_commit_begin(f->sq)); /* nothing pending */
    if (f->mode == M_SQL_INFLIGHT) {
      /* teardown ends a batch: give it one */
      mkrec(&r, 2, 2, STORE_REC_ITEM, 0, 100, 1);
      put(f, &r);
    }
  }
}

/* ---- SQLite only ------------------------------------------------------- */

static void commit(store_sqlite *sq) {
  assert_true(store_sqlite_commit_begin(sq));
  assert_int_equal(store_sqlite_commit_run(sq), 0);
  store_sqlite_commit_end(sq);
}

static void t_sql_overlay(void **state) {
  fx *f = *state;
  store_rec r, o;
  store_usage u;
  mkrec(&r, 1, 1, STORE_REC_ITEM, 0, 100, 168);
  assert_int_equal(f->be.put(f->be.ctx, &r), 1);
  mkrec(&r, 1, 2, STORE_REC_ITEM, 0, 100, 168);
  assert_int_equal(f->be.put(f->be.ctx, &r), 2);
  commit(f->sq);                                             /* 1/1, 1/2 in the file */
  assert_int_equal(f->be.del(f->be.ctx, r.mbox, r.hash), 3); /* 1/2 gone */
  mkrec(&r, 1, 3, STORE_REC_ITEM, 1, 100, 296);
  assert_int_equal(f->be.put(f->be.ctx, &r), 4);
  assert_int_equal(store_sqlite_pending(f->sq), 2);
  assert_true(store_sqlite_commit_begin(f->sq));  /* in flight: del 1/2, put 1/3 */
  assert_false(store_sqlite_commit_begin(f->sq)); /* one batch at a time */
  assert_int_equal(store_sqlite_pending(f->sq), 0);
  mkrec(&r, 1, 3, STORE_REC_TOMB, 0, 100, 50); /* pending over in-flight */
  assert_int_equal(f->be.put(f->be.ctx, &r), 5);
  mkrec(&r, 2, 1, STORE_REC_ITEM, 1, 100, 1000);
  assert_int_equal(f->be.put(f->be.ctx, &r), 6);
  for (int step = 0; step < 3; step++) {
    /* before commit_run, after it, after commit_end: the same answers */
    mkrec(&r, 1, 3, STORE_REC_TOMB, 0, 100, 50);
    assert_int_equal(f->be.get(f->be.ctx, r.mbox, r.hash, &o), 0);
    assert_rec_eq(&o, &r);
    mkrec(&r, 1, 2, STORE_REC_ITEM, 0, 100, 168);
    assert_int_equal(f->be.get(f->be.ctx, r.mbox, r.hash, &o), DHT_ERR_NOTFOUND);
    store_rec out[4];
    assert_int_equal(f->be.scan_mbox(f->be.ctx, r.mbox, NULL, out, 4), 2);
    assert_int_equal(out[0].hash[0], 1);
    assert_int_equal(out[1].hash[0], 3);
    assert_int_equal(out[1].kind, STORE_REC_TOMB);
    f->be.usage(f->be.ctx, r.mbox, &u);
    assert_int_equal(u.items, 1);
    assert_int_equal(u.records, 2);
    f->be.usage(f->be.ctx, NULL, &u);
    assert_int_equal(u.items, 2);
    assert_int_equal(u.bytes, 1168);
    assert_int_equal(u.records, 3);
    uint8_t ids[4][STORE_MBOX_LEN], h[4];
    assert_int_equal(f->be.scan_mboxes(f->be.ctx, NULL, ids, h, 4), 2);
    assert_int_equal(h[0], 0); /* 1/3 hosted in flight, not hosted pending */
    assert_int_equal(h[1], 1);
    assert_int_equal(f->be.scan_expired(f->be.ctx, 101, out, 4), 3);
    if (step == 0) {
      assert_int_equal(f->be.durable(f->be.ctx), 2);
      assert_int_equal(store_sqlite_commit_run(f->sq), 0);
    } else if (step == 1) {
      assert_int_equal(f->be.durable(f->be.ctx), 2);
      assert_int_equal(store_sqlite_commit_end(f->sq), 4);
      assert_int_equal(store_sqlite_pending(f->sq), 2);
    }
  }
  commit(f->sq);
  assert_int_equal(f->be.durable(f->be.ctx), 6);
}

static int count_all(store_backend *be) {
  uint8_t ids[64][STORE_MBOX_LEN];
  int n = be->scan_mboxes(be->ctx, NULL, ids, NULL, 64), total = 0;
  store_rec *out = calloc(64, sizeof *out);
  for (int i = 0; i < n; i++)
    total += be->scan_mbox(be->ctx, ids[i], NULL, out, 64);
  free(out);
  return total;
}

static void t_sql_reopen(void **state) {
  fx *f = *state;
  store_rec r, o;
  mkrec(&r, 1, 1, STORE_REC_ITEM, 0, 100, 1000);
  put(f, &r);
  commit(f->sq);
  mkrec(&r, 1, 2, STORE_REC_ITEM, 0, 100, 1000);
  put(f, &r);
  /* another connection to the file: the committed write only */
  store_sqlite *sq2;
  store_backend be2;
  sql_open(&sq2, &be2, f->path);
  assert_int_equal(count_all(&be2), 1);
  assert_true(store_sqlite_commit_begin(f->sq));
  assert_int_equal(count_all(&be2), 1); /* formed, not run */
  assert_int_equal(store_sqlite_commit_run(f->sq), 0);
  assert_int_equal(count_all(&be2), 2); /* run: in the file */
  store_sqlite_commit_end(f->sq);
  be2.close(be2.ctx);
  /* a pending write is committed by close */
  mkrec(&r, 1, 3, STORE_REC_ITEM, 1, 100, 168);
  put(f, &r);
  assert_true(f->be.del(f->be.ctx, r.mbox, (uint8_t[STORE_HASH_LEN]){1}) == DHT_ERR_NOTFOUND);
  mkrec(&r, 1, 1, STORE_REC_ITEM, 0, 100, 1000);
  assert_true(f->be.del(f->be.ctx, r.mbox, r.hash) > 0);
  f->be.close(f->be.ctx);
  sql_open(&f->sq, &f->be, f->path);
  store_usage u;
  assert_int_equal(count_all(&f->be), 2);
  assert_int_equal(f->be.get(f->be.ctx, r.mbox, r.hash, &o), DHT_ERR_NOTFOUND);
  mkrec(&r, 1, 3, STORE_REC_ITEM, 1, 100, 168);
  assert_int_equal(f->be.get(f->be.ctx, r.mbox, r.hash, &o), 0);
  assert_rec_eq(&o, &r);
  f->be.usage(f->be.ctx, NULL, &u);
  assert_int_equal(u.items, 2);
  assert_int_equal(u.bytes, 1168);
  assert_int_equal(f->be.durable(f->be.ctx), 0); /* sequence numbers are per open */
}

static void t_sql_failed_batch(void **state) {
  fx *f = *state;
  store_rec r, o;
  for (int i = 0; i < 10; i++) {
    mkrec(&r, 1, (uint8_t)i, STORE_REC_ITEM, 0, 100, 168);
    put(f, &r);
  }
  store_sqlite_fail_commits(f->sq, 1);
  assert_true(store_sqlite_commit_begin(f->sq));
  assert_int_equal(store_sqlite_commit_run(f->sq), STORE_ERR_DB);
  /* newer writes while the failed batch is still in flight */
  mkrec(&r, 1, 3, STORE_REC_TOMB, 0, 100, 20);
  assert_int_equal(f->be.put(f->be.ctx, &r), 11);
  assert_int_equal(
      f->be.del(f->be.ctx, r.mbox,
                (uint8_t[STORE_HASH_LEN]){4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4}),
      12);
  assert_int_equal(store_sqlite_commit_end(f->sq), 0);
  assert_int_equal(f->be.durable(f->be.ctx), 0);
  assert_int_equal(store_sqlite_pending(f->sq), 10);
  /* nothing reached the file (the half written was rolled back) */
  store_sqlite *sq2;
  store_backend be2;
  sql_open(&sq2, &be2, f->path);
  assert_int_equal(count_all(&be2), 0);
  /* an abandoned batch (commit_run never ran) stays pending too */
  assert_true(store_sqlite_commit_begin(f->sq));
  assert_int_equal(store_sqlite_commit_end(f->sq), 0);
  assert_int_equal(store_sqlite_pending(f->sq), 10);
  assert_int_equal(count_all(&f->be), 9);
  assert_int_equal(f->be.get(f->be.ctx, r.mbox, r.hash, &o), 0);
  assert_rec_eq(&o, &r);
  /* the retry lands all of it, newest versions */
  commit(f->sq);
  assert_int_equal(f->be.durable(f->be.ctx), 12);
  assert_int_equal(count_all(&be2), 9);
  assert_int_equal(be2.get(be2.ctx, r.mbox, r.hash, &o), 0);
  assert_rec_eq(&o, &r);
  be2.close(be2.ctx);
}

/* Random writes and commits against SQLite and memory side by side; after
 * every step of a few the answers must agree. */
static void compare(store_backend *a, store_backend *b, tu_rng *rng, int64_t now) {
  store_rec *x = calloc(32, sizeof *x), *y = calloc(32, sizeof *y);
  uint8_t ia[16][STORE_MBOX_LEN], ib[16][STORE_MBOX_LEN], ha[16], hb[16];
  int na = a->scan_mboxes(a->ctx, NULL, ia, ha, 16);
  assert_int_equal(na, b->scan_mboxes(b->ctx, NULL, ib, hb, 16));
  for (int i = 0; i < na; i++) {
    assert_memory_equal(ia[i], ib[i], STORE_MBOX_LEN);
    assert_int_equal(ha[i], hb[i]);
    store_usage ua, ub;
    assert_int_equal(a->usage(a->ctx, ia[i], &ua), 0);
    assert_int_equal(b->usage(b->ctx, ia[i], &ub), 0);
    assert_memory_equal(&ua, &ub, sizeof ua);
    /* a page from a random point */
    uint8_t after[STORE_HASH_LEN];
    tu_rng_bytes(rng, after, sizeof after);
    int max = 1 + (int)tu_rng_below(rng, 32);
    bool from_start = tu_rng_below(rng, 2);
    int n = a->scan_mbox(a->ctx, ia[i], from_start ? NULL : after, x, max);
    assert_int_equal(n, b->scan_mbox(b->ctx, ia[i], from_start ? NULL : after, y, max));
    for (int k = 0; k < n; k++)
      assert_rec_eq(&x[k], &y[k]);
  }
  store_usage ua, ub;
  a->usage(a->ctx, NULL, &ua);
  b->usage(b->ctx, NULL, &ub);
  assert_memory_equal(&ua, &ub, sizeof ua);
  int n = a->scan_expired(a->ctx, now, x, 32);
  assert_int_equal(n, b->scan_expired(b->ctx, now, y, 32));
  for (int k = 0; k < n; k++)
    assert_rec_eq(&x[k], &y[k]);
  free(x);
  free(y);
}

static void t_sql_random(void **state) {
  fx *f = *state;
  tu_rng rng;
  tu_rng_init(&rng, g_seed, 2);
  store_backend m;
  assert_int_equal(store_mem_new(&m, NULL), 0);
  int64_t mseq = 0;
  for (int op = 0; op < 4000; op++) {
    int what = (int)tu_rng_below(&rng, 100);
    uint8_t mb = (uint8_t)tu_rng_below(&rng, 8), hh = (uint8_t)tu_rng_below(&rng, 12);
    store_rec r;
    if (what < 55) {
      mkrec(&r, mb, hh, 1 + (int)tu_rng_below(&rng, 3), tu_rng_below(&rng, 4) == 0,
            (int64_t)tu_rng_below(&rng, 50), (int)tu_rng_below(&rng, STORE_ITEM_MAX + 1));
      r.hash[15] = (uint8_t)tu_rng_below(&rng, 2);
      int64_t s = f->be.put(f->be.ctx, &r);
      assert_true(s > 0);
      assert_true(m.put(m.ctx, &r) > mseq);
    } else if (what < 80) {
      uint8_t mbox[STORE_MBOX_LEN], hash[STORE_HASH_LEN];
      memset(mbox, mb, sizeof mbox);
      memset(hash, hh, sizeof hash);
      hash[15] = (uint8_t)tu_rng_below(&rng, 2);
      int64_t s1 = f->be.del(f->be.ctx, mbox, hash), s2 = m.del(m.ctx, mbox, hash);
      assert_int_equal(s1 > 0, s2 > 0);
      if (s1 < 0)
        assert_int_equal(s1, DHT_ERR_NOTFOUND);
    } else if (what < 88) {
      store_sqlite_commit_end(f->sq);
      if (tu_rng_below(&rng, 4) == 0)
        store_sqlite_fail_commits(f->sq, 1);
      if (store_sqlite_commit_begin(f->sq))
        store_sqlite_commit_run(f->sq);
    } else if (what < 94) {
      store_sqlite_commit_end(f->sq);
    } else {
      compare(&f->be, &m, &rng, (int64_t)tu_rng_below(&rng, 60));
    }
  }
  compare(&f->be, &m, &rng, 30);
  store_sqlite_commit_end(f->sq);
  store_sqlite_fail_commits(f->sq, 0);
  f->be.close(f->be.ctx);
  sql_open(&f->sq, &f->be, f->path);
  for (int i = 0; i < 20; i++)
    compare(&f->be, &m, &rng, (int64_t)tu_rng_below(&rng, 60));
  m.close(m.ctx);
}

/* ---- the memory backend's own promises --------------------------------- */

static void t_mem_alloc(void **state) {
  (void)state;
  tu_alloc a;
  memset(&a, 0, sizeof a);
  dht_mem mem = tu_alloc_mem(&a);
  store_backend be;
  assert_int_equal(store_mem_new(&be, &mem), 0);
  /* an empty backend is small */
  assert_true(a.bytes_live < 256);
  /* out of memory leaves it as it was */
  store_rec r, o;
  mkrec(&r, 1, 1, STORE_REC_ITEM, 0, 100, 168);
  assert_true(be.put(be.ctx, &r) > 0);
  for (uint64_t k = 1; k <= 2; k++) {
    a.fail_at = a.calls + k;
    a.fail_sticky = 0;
    mkrec(&r, (uint8_t)(1 + k), 2, STORE_REC_ITEM, 0, 100, 168); /* new mailbox: 2 allocations */
    assert_int_equal(be.put(be.ctx, &r), DHT_ERR_NOMEM);
    assert_int_equal(be.get(be.ctx, r.mbox, r.hash, &o), DHT_ERR_NOTFOUND);
    uint8_t ids[4][STORE_MBOX_LEN];
    assert_int_equal(be.scan_mboxes(be.ctx, NULL, ids, NULL, 4), 1);
  }
  a.fail_at = 0;
  assert_int_equal(be.durable(be.ctx), 1);
  /* tens of thousands of records, then all freed */
  for (int i = 0; i < 30000; i++) {
    mkrec(&r, (uint8_t)(i % 251), 0, STORE_REC_ITEM, 0, i % 977, 168);
    memcpy(r.hash, &i, sizeof i);
    assert_true(be.put(be.ctx, &r) > 0);
  }
  store_usage u;
  be.usage(be.ctx, NULL, &u);
  assert_int_equal(u.records, 30001);
  store_rec out[8];
  assert_int_equal(be.scan_expired(be.ctx, 1, out, 8), 8);
  for (int i = 0; i < 8; i++)
    assert_int_equal(out[i].expires_s, 0);
  be.close(be.ctx);
  assert_int_equal(a.live, 0);
}

/* ---- main ------------------------------------------------------------------ */

#define ON(t, m) cmocka_unit_test_prestate_setup_teardown(t, setup, teardown, (void *)(m))
#define ALL(t) ON(t, M_MEM), ON(t, M_SQL_COMMIT), ON(t, M_SQL_PENDING), ON(t, M_SQL_INFLIGHT)

int main(void) {
  g_seed = tu_seed("test_store_backend");
  snprintf(g_dir, sizeof g_dir, "/tmp/roost-test-backend-XXXXXX");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  const struct CMUnitTest tests[] = {
      ALL(t_put_get_replace),
      ALL(t_del),
      ALL(t_scan_mbox),
      ALL(t_scan_mboxes),
      ALL(t_usage),
      ALL(t_scan_expired),
      ALL(t_seq_durable),
      ON(t_sql_overlay, M_SQL_PENDING),
      ON(t_sql_reopen, M_SQL_PENDING),
      ON(t_sql_failed_batch, M_SQL_PENDING),
      ON(t_sql_random, M_SQL_PENDING),
      cmocka_unit_test(t_mem_alloc),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0)
    rc = 1;
  return rc;
}

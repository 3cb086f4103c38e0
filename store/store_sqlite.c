/*
 * store_sqlite.c - the SQLite adapter's mailbox backend: mailboxes.db as a
 * store_backend with batched off-loop commits.  Opening and checking a
 * database is store_sqlite_db.c's; the user's own roost.db is
 * store_sqlite_app.c's.
 *
 * Two connections: `rd` for the loop thread (query_only) and `wr`, used
 * only by commit_run (and by open/close on the loop thread when no batch is
 * in flight).  Writes go to `pending`, a sorted array of overlay entries
 * keyed by (mbox, hash), newest write per key; commit_begin moves it to
 * `inflight`, which nothing changes until commit_end.  Reads look at
 * pending, then inflight, then the database: an overlay entry (a record or a
 * delete) shadows the database row of its key.  The whole-store usage is kept
 * in memory (summed once at open, then adjusted by each put/del against the
 * version it replaces); per-mailbox usage is the database's sums corrected
 * by the overlay entries of that mailbox, read in one read transaction so the
 * worker's commit cannot land between the two.
 *
 * Invariants: every write up to `seq` is in pending, in inflight, or
 * committed; `durable` <= `seq`; at most one batch is in flight (state).
 */
#include <assert.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "store_sqlite.h"
#include "store_sqlite_int.h"

#define KEY_LEN (STORE_MBOX_LEN + STORE_HASH_LEN)

/* ---- mailboxes.db: the overlay ------------------------------------------ */

typedef struct ent {
  int64_t seq;
  bool del;    /* a delete of (r.mbox, r.hash); r's other fields unused */
  store_rec r; /* the record written */
} ent;

/* Entries sorted by (mbox, hash), one per key. */
typedef struct entv {
  ent **v;
  int n, cap;
} entv;

struct store_sqlite {
  sqlite3 *rd, *wr;
  /* reader statements (loop thread) */
  sqlite3_stmt *s_get, *s_scan, *s_mboxes, *s_mbox_recs, *s_usage, *s_exp;
  /* writer statements (commit_run) */
  sqlite3_stmt *w_put, *w_del;
  entv pending, inflight;
  bool in_batch;      /* between commit_begin and commit_end */
  int run_rc;         /* commit_run's result (STORE_ERR_DB until it ran) */
  int fail_commits;   /* testing: commit_run calls still to fail */
  int64_t seq;        /* the last write's sequence number */
  int64_t durable;    /* the last committed one */
  int64_t batch_last; /* the in-flight batch covers writes up to here */
  store_usage total;  /* of what get/scan see */
};

static int key_cmp(const uint8_t *mbox, const uint8_t *hash, const store_rec *r) {
  int c = memcmp(mbox, r->mbox, STORE_MBOX_LEN);
  return c ? c : memcmp(hash, r->hash, STORE_HASH_LEN);
}

/* The first index with key > (mbox, hash) (strict) or >= (!strict). */
static int ev_bound(const entv *v, const uint8_t *mbox, const uint8_t *hash, bool strict) {
  int lo = 0, hi = v->n;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    int c = key_cmp(mbox, hash, &v->v[mid]->r);
    if (c > 0 || (c == 0 && strict))
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static ent *ev_find(const entv *v, const uint8_t *mbox, const uint8_t *hash) {
  int i = ev_bound(v, mbox, hash, false);
  if (i < v->n && key_cmp(mbox, hash, &v->v[i]->r) == 0)
    return v->v[i];
  return NULL;
}

static int ev_reserve(entv *v, int n) {
  if (n <= v->cap)
    return 0;
  int cap = v->cap ? v->cap * 2 : 64;
  while (cap < n)
    cap *= 2;
  ent **nv = realloc(v->v, (size_t)cap * sizeof *nv);
  if (!nv)
    return DHT_ERR_NOMEM;
  v->v = nv;
  v->cap = cap;
  return 0;
}

static void ev_free(entv *v) {
  for (int i = 0; i < v->n; i++)
    free(v->v[i]);
  free(v->v);
  memset(v, 0, sizeof *v);
}

/* The overlay's word on a key: pending first, then the batch in flight. */
static const ent *ov_find(const store_sqlite *b, const uint8_t *mbox, const uint8_t *hash) {
  const ent *e = ev_find(&b->pending, mbox, hash);
  return e ? e : ev_find(&b->inflight, mbox, hash);
}

/* Walks the overlay's entries in key order, pending winning over the batch. */
typedef struct ov_iter {
  const store_sqlite *b;
  int i, j;
} ov_iter;

static void ov_iter_init(ov_iter *it, const store_sqlite *b, const uint8_t *mbox,
                         const uint8_t *hash, bool strict) {
  it->b = b;
  it->i = ev_bound(&b->pending, mbox, hash, strict);
  it->j = ev_bound(&b->inflight, mbox, hash, strict);
}

static const ent *ov_iter_next(ov_iter *it) {
  const entv *p = &it->b->pending, *f = &it->b->inflight;
  const ent *a = it->i < p->n ? p->v[it->i] : NULL;
  const ent *c = it->j < f->n ? f->v[it->j] : NULL;
  if (!a && !c)
    return NULL;
  if (a && c) {
    int k = key_cmp(a->r.mbox, a->r.hash, &c->r);
    if (k == 0) {
      it->i++;
      it->j++;
      return a;
    }
    if (k > 0)
      a = NULL;
  }
  if (a) {
    it->i++;
    return a;
  }
  it->j++;
  return c;
}

/* ---- mailboxes.db: reading rows ---------------------------------------- */

#define REC_COLS "mbox, hash, kind, hosted, mbox_pk, deposited_s, expires_s, sig, data"

static int row_to_rec(sqlite3_stmt *st, store_rec *r) {
  int len = sqlite3_column_bytes(st, 8);
  if (len > STORE_ITEM_MAX)
    return STORE_ERR_DB;
  if (!store_sqlite_db_col_blob(st, 0, r->mbox, STORE_MBOX_LEN) ||
      !store_sqlite_db_col_blob(st, 1, r->hash, STORE_HASH_LEN) ||
      !store_sqlite_db_col_blob(st, 4, r->mbox_pk, DHT_PK_LEN) ||
      !store_sqlite_db_col_blob(st, 7, r->sig, DHT_SIG_LEN) ||
      !store_sqlite_db_col_blob(st, 8, r->data, len))
    return STORE_ERR_DB;
  r->kind = (uint8_t)sqlite3_column_int(st, 2);
  r->hosted = (uint8_t)sqlite3_column_int(st, 3);
  r->deposited_s = (uint64_t)sqlite3_column_int64(st, 5);
  r->expires_s = sqlite3_column_int64(st, 6);
  r->len = (uint16_t)len;
  return 0;
}

static void done(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

/* The committed version of a key: 0, DHT_ERR_NOTFOUND or STORE_ERR_DB. */
static int db_get(store_sqlite *b, const uint8_t *mbox, const uint8_t *hash, store_rec *out) {
  sqlite3_stmt *st = b->s_get;
  sqlite3_bind_blob(st, 1, mbox, STORE_MBOX_LEN, SQLITE_STATIC);
  sqlite3_bind_blob(st, 2, hash, STORE_HASH_LEN, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  int ret = rc == SQLITE_ROW    ? row_to_rec(st, out)
            : rc == SQLITE_DONE ? DHT_ERR_NOTFOUND
                                : STORE_ERR_DB;
  done(st);
  return ret;
}

/* What get() sees: 0 and *out, DHT_ERR_NOTFOUND or STORE_ERR_DB. */
static int visible(store_sqlite *b, const uint8_t *mbox, const uint8_t *hash, store_rec *out) {
  const ent *e = ov_find(b, mbox, hash);
  if (e) {
    if (e->del)
      return DHT_ERR_NOTFOUND;
    memcpy(out, &e->r, offsetof(store_rec, data) + e->r.len);
    return 0;
  }
  return db_get(b, mbox, hash, out);
}

static void usage_add(store_usage *u, const store_rec *r, int sign) {
  if (r->kind == STORE_REC_ITEM) {
    u->items += sign;
    u->bytes += sign * (int64_t)r->len;
  }
  u->records += sign;
}

/* ---- mailboxes.db: the backend ----------------------------------------- */

/* Records the newest write of a key in pending. */
static int64_t overlay_write(store_sqlite *b, const uint8_t *mbox, const uint8_t *hash,
                             const store_rec *r) {
  int i = ev_bound(&b->pending, mbox, hash, false);
  ent *e;
  if (i < b->pending.n && key_cmp(mbox, hash, &b->pending.v[i]->r) == 0) {
    e = b->pending.v[i];
  } else {
    if (ev_reserve(&b->pending, b->pending.n + 1) < 0)
      return DHT_ERR_NOMEM;
    e = malloc(sizeof *e);
    if (!e)
      return DHT_ERR_NOMEM;
    memmove(&b->pending.v[i + 1], &b->pending.v[i],
            (size_t)(b->pending.n - i) * sizeof b->pending.v[0]);
    b->pending.v[i] = e;
    b->pending.n++;
  }
  if (r) {
    memcpy(&e->r, r, offsetof(store_rec, data) + r->len);
    e->r.hosted = r->hosted ? 1 : 0;
    e->del = false;
  } else {
    memset(&e->r, 0, offsetof(store_rec, data));
    memcpy(e->r.mbox, mbox, STORE_MBOX_LEN);
    memcpy(e->r.hash, hash, STORE_HASH_LEN);
    e->del = true;
  }
  e->seq = ++b->seq;
  return e->seq;
}

static int64_t sq_put(void *ctx, const store_rec *r) {
  store_sqlite *b = ctx;
  if (!r || r->len > STORE_ITEM_MAX || r->kind < STORE_REC_ITEM || r->kind > STORE_REC_EVICTED)
    return DHT_ERR_INVAL;
  store_rec old;
  int rc = visible(b, r->mbox, r->hash, &old);
  if (rc < 0 && rc != DHT_ERR_NOTFOUND)
    return rc;
  int64_t seq = overlay_write(b, r->mbox, r->hash, r);
  if (seq < 0)
    return seq;
  if (rc == 0)
    usage_add(&b->total, &old, -1);
  usage_add(&b->total, r, 1);
  return seq;
}

static int sq_get(void *ctx, const uint8_t mbox[STORE_MBOX_LEN], const uint8_t hash[STORE_HASH_LEN],
                  store_rec *out) {
  return visible(ctx, mbox, hash, out);
}

static int64_t sq_del(void *ctx, const uint8_t mbox[STORE_MBOX_LEN],
                      const uint8_t hash[STORE_HASH_LEN]) {
  store_sqlite *b = ctx;
  store_rec old;
  int rc = visible(b, mbox, hash, &old);
  if (rc < 0)
    return rc;
  int64_t seq = overlay_write(b, mbox, hash, NULL);
  if (seq < 0)
    return seq;
  usage_add(&b->total, &old, -1);
  return seq;
}

/* The merges below hold the next database row in out[n]; before an overlay
 * record takes out[n] the row moves on to out[n + 1] (or is dropped when
 * out is full, and the scan ends there anyway). */
static void keep_row(store_rec *out, int n, int max) {
  if (n + 1 < max)
    memcpy(&out[n + 1], &out[n], offsetof(store_rec, data) + out[n].len);
}

/* Steps st to the next row the overlay does not shadow, into *out: sets
 * *have_row, or *db_done at the end.  0, or -1 on a database error.  (The
 * merge of database rows with the overlay in scan_mbox and scan_expired.) */
static int next_db_row(store_sqlite *b, sqlite3_stmt *st, store_rec *out, bool *have_row,
                       bool *db_done) {
  while (!*have_row && !*db_done) {
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
      *db_done = true;
    else if (rc != SQLITE_ROW || row_to_rec(st, out) < 0)
      return -1;
    else if (!ov_find(b, out->mbox, out->hash))
      *have_row = true;
  }
  return 0;
}

static int sq_scan_mbox(void *ctx, const uint8_t mbox[STORE_MBOX_LEN],
                        const uint8_t after[STORE_HASH_LEN], store_rec *out, int max) {
  store_sqlite *b = ctx;
  static const uint8_t zero[STORE_HASH_LEN];
  sqlite3_stmt *st = b->s_scan;
  int n = 0, ret = 0;
  if (max <= 0)
    return 0;
  sqlite3_bind_blob(st, 1, mbox, STORE_MBOX_LEN, SQLITE_STATIC);
  if (after)
    sqlite3_bind_blob(st, 2, after, STORE_HASH_LEN, SQLITE_STATIC);
  else
    sqlite3_bind_zeroblob(st, 2, 0);
  ov_iter it;
  ov_iter_init(&it, b, mbox, after ? after : zero, after != NULL);
  const ent *e = ov_iter_next(&it);
  bool have_row = false, db_done = false;
  while (n < max) {
    /* the next database row that the overlay does not shadow */
    if (next_db_row(b, st, &out[n], &have_row, &db_done)) {
      ret = STORE_ERR_DB;
      goto out;
    }
    /* the next live overlay entry of this mailbox */
    while (e && memcmp(e->r.mbox, mbox, STORE_MBOX_LEN) == 0 && e->del)
      e = ov_iter_next(&it);
    if (e && memcmp(e->r.mbox, mbox, STORE_MBOX_LEN) != 0)
      e = NULL;
    if (!have_row && !e)
      break;
    if (e && (!have_row || memcmp(e->r.hash, out[n].hash, STORE_HASH_LEN) < 0)) {
      if (have_row)
        keep_row(out, n, max);
      memcpy(&out[n], &e->r, offsetof(store_rec, data) + e->r.len);
      e = ov_iter_next(&it);
    } else {
      have_row = false; /* out[n] holds the row */
    }
    n++;
  }
out:
  done(st);
  return ret < 0 ? ret : n;
}

/* A mailbox the overlay touches: whether it has records and any hosted one,
 * from the database rows that are not shadowed and the live overlay entries.
 * Inside the caller's read transaction. */
static int mbox_state(store_sqlite *b, const uint8_t *mbox, bool *exists, bool *hosted) {
  static const uint8_t zero[STORE_HASH_LEN];
  sqlite3_stmt *st = b->s_mbox_recs;
  *exists = *hosted = false;
  sqlite3_bind_blob(st, 1, mbox, STORE_MBOX_LEN, SQLITE_STATIC);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    uint8_t hash[STORE_HASH_LEN];
    if (!store_sqlite_db_col_blob(st, 0, hash, STORE_HASH_LEN)) {
      rc = SQLITE_CORRUPT;
      break;
    }
    if (ov_find(b, mbox, hash))
      continue;
    *exists = true;
    *hosted = *hosted || sqlite3_column_int(st, 1) != 0;
  }
  done(st);
  if (rc != SQLITE_DONE)
    return STORE_ERR_DB;
  ov_iter it;
  ov_iter_init(&it, b, mbox, zero, false);
  const ent *e;
  while ((e = ov_iter_next(&it)) && memcmp(e->r.mbox, mbox, STORE_MBOX_LEN) == 0) {
    if (e->del)
      continue;
    *exists = true;
    *hosted = *hosted || e->r.hosted;
  }
  return 0;
}

/* true when the overlay has an entry in mailbox mbox. */
static bool ov_touches(const store_sqlite *b, const uint8_t *mbox) {
  static const uint8_t zero[STORE_HASH_LEN];
  ov_iter it;
  ov_iter_init(&it, b, mbox, zero, false);
  const ent *e = ov_iter_next(&it);
  return e && memcmp(e->r.mbox, mbox, STORE_MBOX_LEN) == 0;
}

static int read_begin(store_sqlite *b) {
  return store_sqlite_db_exec(b->rd, "BEGIN") == SQLITE_OK ? 0 : STORE_ERR_DB;
}

static void read_end(store_sqlite *b) {
  store_sqlite_db_exec(b->rd, "COMMIT");
}

static int sq_scan_mboxes(void *ctx, const uint8_t after[STORE_MBOX_LEN],
                          uint8_t (*ids)[STORE_MBOX_LEN], uint8_t *hosted, int max) {
  store_sqlite *b = ctx;
  static const uint8_t zero[STORE_MBOX_LEN];
  static const uint8_t ff[STORE_HASH_LEN] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                             0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  sqlite3_stmt *st = b->s_mboxes;
  int n = 0, ret = 0;
  if (max <= 0)
    return 0;
  if (read_begin(b) < 0)
    return STORE_ERR_DB;
  if (after)
    sqlite3_bind_blob(st, 1, after, STORE_MBOX_LEN, SQLITE_STATIC);
  else
    sqlite3_bind_zeroblob(st, 1, 0);
  ov_iter it;
  /* after NULL: from (0..0, 0..0) inclusive; else past every key of `after` */
  ov_iter_init(&it, b, after ? after : zero, after ? ff : zero, after != NULL);
  const ent *e = ov_iter_next(&it);
  uint8_t row[STORE_MBOX_LEN];
  bool row_hosted = false, have_row = false, db_done = false;
  while (n < max) {
    if (!have_row && !db_done) {
      int rc = sqlite3_step(st);
      if (rc == SQLITE_DONE) {
        db_done = true;
      } else if (rc != SQLITE_ROW || !store_sqlite_db_col_blob(st, 0, row, STORE_MBOX_LEN)) {
        ret = STORE_ERR_DB;
        goto out;
      } else {
        have_row = true;
        row_hosted = sqlite3_column_int(st, 1) != 0;
      }
    }
    if (!have_row && !e)
      break;
    /* the next candidate mailbox: the smaller of the row's and the entry's */
    int c = !have_row ? 1 : !e ? -1 : memcmp(row, e->r.mbox, STORE_MBOX_LEN);
    uint8_t cand[STORE_MBOX_LEN];
    memcpy(cand, c <= 0 ? row : e->r.mbox, STORE_MBOX_LEN);
    bool ex = true, ho = row_hosted;
    bool from_row = c <= 0;
    if (from_row)
      have_row = false;
    while (e && memcmp(e->r.mbox, cand, STORE_MBOX_LEN) == 0)
      e = ov_iter_next(&it);
    if (!from_row || ov_touches(b, cand)) {
      bool hb;
      if (mbox_state(b, cand, &ex, &hb) < 0) {
        ret = STORE_ERR_DB;
        goto out;
      }
      ho = hb;
    }
    if (!ex)
      continue;
    memcpy(ids[n], cand, STORE_MBOX_LEN);
    if (hosted)
      hosted[n] = ho ? 1 : 0;
    n++;
  }
out:
  done(st);
  read_end(b);
  return ret < 0 ? ret : n;
}

static int sq_usage(void *ctx, const uint8_t mbox[STORE_MBOX_LEN], store_usage *out) {
  store_sqlite *b = ctx;
  static const uint8_t zero[STORE_HASH_LEN];
  memset(out, 0, sizeof *out);
  if (!mbox) {
    *out = b->total;
    return 0;
  }
  if (read_begin(b) < 0)
    return STORE_ERR_DB;
  int ret = 0;
  sqlite3_stmt *st = b->s_usage;
  sqlite3_bind_blob(st, 1, mbox, STORE_MBOX_LEN, SQLITE_STATIC);
  if (sqlite3_step(st) == SQLITE_ROW) {
    out->items = sqlite3_column_int64(st, 0);
    out->bytes = sqlite3_column_int64(st, 1);
    out->records = sqlite3_column_int64(st, 2);
  } else {
    ret = STORE_ERR_DB;
  }
  done(st);
  ov_iter it;
  ov_iter_init(&it, b, mbox, zero, false);
  const ent *e;
  while (ret == 0 && (e = ov_iter_next(&it)) && memcmp(e->r.mbox, mbox, STORE_MBOX_LEN) == 0) {
    store_rec old;
    int rc = db_get(b, e->r.mbox, e->r.hash, &old);
    if (rc == 0)
      usage_add(out, &old, -1);
    else if (rc != DHT_ERR_NOTFOUND)
      ret = rc;
    if (!e->del)
      usage_add(out, &e->r, 1);
  }
  read_end(b);
  if (ret < 0)
    memset(out, 0, sizeof *out);
  return ret;
}

static int exp_cmp(const void *x, const void *y) {
  const store_rec *a = *(const store_rec *const *)x, *c = *(const store_rec *const *)y;
  if (a->expires_s != c->expires_s)
    return a->expires_s < c->expires_s ? -1 : 1;
  return key_cmp(a->mbox, a->hash, c);
}

static int sq_scan_expired(void *ctx, int64_t now_s, store_rec *out, int max) {
  store_sqlite *b = ctx;
  static const uint8_t zero[STORE_MBOX_LEN];
  if (max <= 0)
    return 0;
  /* the overlay's live records that expired, in (expires, mbox, hash) order */
  int nov = 0;
  const store_rec **ov = NULL;
  if (b->pending.n + b->inflight.n > 0) {
    ov = malloc((size_t)(b->pending.n + b->inflight.n) * sizeof *ov);
    if (!ov)
      return DHT_ERR_NOMEM;
  }
  ov_iter it;
  ov_iter_init(&it, b, zero, zero, false);
  const ent *e;
  while ((e = ov_iter_next(&it)))
    if (!e->del && e->r.expires_s < now_s)
      ov[nov++] = &e->r;
  if (nov > 1)
    qsort(ov, (size_t)nov, sizeof *ov, exp_cmp);

  sqlite3_stmt *st = b->s_exp;
  sqlite3_bind_int64(st, 1, now_s);
  int n = 0, i = 0, ret = 0;
  bool have_row = false, db_done = false;
  while (n < max) {
    if (next_db_row(b, st, &out[n], &have_row, &db_done)) {
      ret = STORE_ERR_DB;
      goto out;
    }
    if (!have_row && i == nov)
      break;
    const store_rec *rp = &out[n];
    if (i < nov && (!have_row || exp_cmp(&ov[i], &rp) < 0)) {
      if (have_row)
        keep_row(out, n, max);
      memcpy(&out[n], ov[i], offsetof(store_rec, data) + ov[i]->len);
      i++;
    } else {
      have_row = false;
    }
    n++;
  }
out:
  done(st);
  free(ov);
  return ret < 0 ? ret : n;
}

static int64_t sq_durable(void *ctx) {
  return ((store_sqlite *)ctx)->durable;
}

/* ---- commits --------------------------------------------------------------- */

/* Puts a failed batch's writes back into pending, where newer writes of
 * the same keys win.  0 or DHT_ERR_NOMEM (then the batch stays where it is:
 * reads still see it, and commit_begin tries again). */
static int merge_back(store_sqlite *b) {
  entv *p = &b->pending, *f = &b->inflight;
  if (f->n == 0)
    return 0;
  ent **v = malloc((size_t)(p->n + f->n) * sizeof *v);
  if (!v)
    return DHT_ERR_NOMEM;
  int i = 0, j = 0, n = 0;
  while (i < p->n || j < f->n) {
    int c = i == p->n ? 1 : j == f->n ? -1 : key_cmp(p->v[i]->r.mbox, p->v[i]->r.hash, &f->v[j]->r);
    if (c <= 0) {
      v[n++] = p->v[i++];
      if (c == 0)
        free(f->v[j++]);
    } else {
      v[n++] = f->v[j++];
    }
  }
  free(p->v);
  free(f->v);
  memset(f, 0, sizeof *f);
  p->v = v;
  p->n = p->cap = n;
  return 0;
}

bool store_sqlite_commit_begin(store_sqlite *b) {
  if (b->in_batch || merge_back(b) < 0 || b->pending.n == 0)
    return false;
  b->inflight = b->pending;
  memset(&b->pending, 0, sizeof b->pending);
  b->batch_last = b->seq;
  b->run_rc = STORE_ERR_DB; /* until commit_run says otherwise */
  b->in_batch = true;
  return true;
}

static int write_ent(store_sqlite *b, const ent *e) {
  sqlite3_stmt *st = e->del ? b->w_del : b->w_put;
  const store_rec *r = &e->r;
  sqlite3_bind_blob(st, 1, r->mbox, STORE_MBOX_LEN, SQLITE_STATIC);
  sqlite3_bind_blob(st, 2, r->hash, STORE_HASH_LEN, SQLITE_STATIC);
  if (!e->del) {
    sqlite3_bind_int(st, 3, r->kind);
    sqlite3_bind_int(st, 4, r->hosted);
    sqlite3_bind_blob(st, 5, r->mbox_pk, DHT_PK_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, (int64_t)r->deposited_s);
    sqlite3_bind_int64(st, 7, r->expires_s);
    sqlite3_bind_blob(st, 8, r->sig, DHT_SIG_LEN, SQLITE_STATIC);
    if (r->len)
      sqlite3_bind_blob(st, 9, r->data, r->len, SQLITE_STATIC);
    else
      sqlite3_bind_zeroblob(st, 9, 0);
  }
  int rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : STORE_ERR_DB;
}

int store_sqlite_commit_run(store_sqlite *b) {
  if (!b->in_batch)
    return DHT_ERR_INVAL;
  int ret = store_sqlite_db_exec(b->wr, "BEGIN IMMEDIATE") == SQLITE_OK ? 0 : STORE_ERR_DB;
  bool inject = b->fail_commits > 0;
  int upto = inject ? b->inflight.n / 2 : b->inflight.n;
  for (int i = 0; ret == 0 && i < upto; i++)
    ret = write_ent(b, b->inflight.v[i]);
  if (ret == 0 && inject) {
    b->fail_commits--;
    ret = STORE_ERR_DB;
  }
  if (ret == 0 && store_sqlite_db_exec(b->wr, "COMMIT") != SQLITE_OK)
    ret = STORE_ERR_DB;
  if (ret < 0 && !sqlite3_get_autocommit(b->wr))
    store_sqlite_db_exec(b->wr, "ROLLBACK");
  b->run_rc = ret;
  return ret;
}

int64_t store_sqlite_commit_end(store_sqlite *b) {
  if (!b->in_batch)
    return b->durable;
  b->in_batch = false;
  if (b->run_rc == 0) {
    ev_free(&b->inflight);
    b->durable = b->batch_last;
  } else {
    merge_back(b);
  }
  return b->durable;
}

int store_sqlite_pending(const store_sqlite *b) {
  return b->pending.n + (b->in_batch ? 0 : b->inflight.n);
}

void store_sqlite_fail_commits(store_sqlite *b, int n) {
  b->fail_commits = n;
}

/* ---- open and close ------------------------------------------------------ */

static const char MBOX_SCHEMA[] =
    /* A rowid table: records (~1.1 KB) are appended in arrival order and
     * only the small (mbox, hash) index takes random inserts.  Keyed by
     * (mbox, hash) WITHOUT ROWID, every deposit rewrote a random leaf that
     * holds only three records (docs/benchmarks.md, Mailbox deposits). */
    "CREATE TABLE recs("
    " id INTEGER PRIMARY KEY,"
    " mbox BLOB NOT NULL, hash BLOB NOT NULL, kind INTEGER NOT NULL,"
    " hosted INTEGER NOT NULL, mbox_pk BLOB NOT NULL, deposited_s INTEGER NOT NULL,"
    " expires_s INTEGER NOT NULL, sig BLOB NOT NULL, data BLOB NOT NULL,"
    " UNIQUE (mbox, hash));"
    "CREATE INDEX recs_expiry ON recs(expires_s, mbox, hash);";

static void sq_free(store_sqlite *b) {
  sqlite3_stmt *all[] = {b->s_get,   b->s_scan, b->s_mboxes, b->s_mbox_recs,
                         b->s_usage, b->s_exp,  b->w_put,    b->w_del};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    sqlite3_finalize(all[i]);
  sqlite3_close(b->rd);
  sqlite3_close(b->wr);
  ev_free(&b->pending);
  ev_free(&b->inflight);
  free(b);
}

/* Commits what is pending (on the calling thread), then frees everything.
 * Must not be called while commit_run may be running. */
static void sq_close(void *ctx) {
  store_sqlite *b = ctx;
  if (!b)
    return;
  if (b->in_batch)
    store_sqlite_commit_end(b);
  if (store_sqlite_commit_begin(b)) {
    store_sqlite_commit_run(b);
    store_sqlite_commit_end(b);
  }
  sq_free(b);
}

int store_sqlite_open(store_sqlite **out, store_backend *be, const char *path, char *err,
                      size_t errlen) {
  int ret;
  if (!out || !be || !path)
    return DHT_ERR_INVAL;
  *out = NULL;
  store_sqlite *b = calloc(1, sizeof *b);
  if (!b)
    return DHT_ERR_NOMEM;
  ret = store_sqlite_db_open(&b->wr, path, MBOX_SCHEMA, err, errlen);
  if (ret < 0)
    goto fail;
  ret = STORE_ERR_DB;
  if (sqlite3_open_v2(path, &b->rd, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
      SQLITE_OK) {
    store_sqlite_db_seterr(err, errlen, "%s: cannot open a reader: %s", path,
                           sqlite3_errmsg(b->rd));
    goto fail;
  }
  sqlite3_extended_result_codes(b->rd, 1);
  sqlite3_busy_timeout(b->rd, BUSY_MS);
  if (store_sqlite_db_exec(b->rd, "PRAGMA query_only=1") != SQLITE_OK ||
      store_sqlite_db_prep(b->rd, "SELECT " REC_COLS " FROM recs WHERE mbox=?1 AND hash=?2",
                           &b->s_get) ||
      store_sqlite_db_prep(b->rd,
                           "SELECT " REC_COLS " FROM recs WHERE mbox=?1 AND hash>?2 ORDER BY hash",
                           &b->s_scan) ||
      store_sqlite_db_prep(
          b->rd, "SELECT mbox, max(hosted) FROM recs WHERE mbox>?1 GROUP BY mbox ORDER BY mbox",
          &b->s_mboxes) ||
      store_sqlite_db_prep(b->rd, "SELECT hash, hosted FROM recs WHERE mbox=?1", &b->s_mbox_recs) ||
      store_sqlite_db_prep(
          b->rd,
          "SELECT coalesce(sum(kind=1),0),"
          " coalesce(sum(CASE WHEN kind=1 THEN length(data) ELSE 0 END),0), count(*)"
          " FROM recs WHERE mbox=?1",
          &b->s_usage) ||
      store_sqlite_db_prep(
          b->rd, "SELECT " REC_COLS " FROM recs WHERE expires_s<?1 ORDER BY expires_s, mbox, hash",
          &b->s_exp) ||
      store_sqlite_db_prep(
          b->wr, "INSERT OR REPLACE INTO recs(" REC_COLS ") VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)",
          &b->w_put) ||
      store_sqlite_db_prep(b->wr, "DELETE FROM recs WHERE mbox=?1 AND hash=?2", &b->w_del)) {
    store_sqlite_db_seterr(err, errlen, "%s: cannot prepare: %s", path, sqlite3_errmsg(b->rd));
    goto fail;
  }
  /* the whole-store sums, once */
  sqlite3_stmt *st = NULL;
  if (store_sqlite_db_prep(
          b->rd,
          "SELECT coalesce(sum(kind=1),0),"
          " coalesce(sum(CASE WHEN kind=1 THEN length(data) ELSE 0 END),0), count(*) FROM recs",
          &st) != SQLITE_OK ||
      sqlite3_step(st) != SQLITE_ROW) {
    store_sqlite_db_seterr(err, errlen, "%s: cannot sum up: %s", path, sqlite3_errmsg(b->rd));
    sqlite3_finalize(st);
    goto fail;
  }
  b->total.items = sqlite3_column_int64(st, 0);
  b->total.bytes = sqlite3_column_int64(st, 1);
  b->total.records = sqlite3_column_int64(st, 2);
  sqlite3_finalize(st);

  memset(be, 0, sizeof *be);
  be->ctx = b;
  be->put = sq_put;
  be->get = sq_get;
  be->del = sq_del;
  be->scan_mbox = sq_scan_mbox;
  be->scan_mboxes = sq_scan_mboxes;
  be->usage = sq_usage;
  be->scan_expired = sq_scan_expired;
  be->durable = sq_durable;
  be->close = sq_close;
  *out = b;
  return 0;
fail:
  sq_free(b);
  return ret;
}

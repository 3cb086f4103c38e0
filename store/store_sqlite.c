/*
 * store_sqlite.c - the SQLite adapter: mailboxes.db as a store_backend with
 * batched off-loop commits, and roost.db (the user's own state).  The one
 * file besides none that includes <sqlite3.h>.
 *
 * Opening (both databases, db_open): a file that is not a SQLite database,
 * fails PRAGMA quick_check, or is a SQLite database without roost's schema
 * version is refused with STORE_ERR_DB_CORRUPT; one with a user_version above
 * STORE_SQLITE_SCHEMA with STORE_ERR_DB_NEWER.  Nothing is written to a file
 * before it has passed these checks, so a refused file stays byte for byte as
 * it was.  A new (empty) file gets WAL mode, the schema and the version in one
 * transaction.
 *
 * mailboxes.db.  Two connections: `rd` for the loop thread (query_only) and
 * `wr`, used only by commit_run (and by open/close on the loop thread when no
 * batch is in flight).  Writes go to `pending`, a sorted array of overlay
 * entries keyed by (mbox, hash), newest write per key; commit_begin moves it
 * to `inflight`, which nothing changes until commit_end.  Reads look at
 * pending, then inflight, then the database: an overlay entry (a record or a
 * delete) shadows the database row of its key.  The whole-store usage is kept
 * in memory (summed once at open, then adjusted by each put/del against the
 * version it replaces); per-mailbox usage is the database's sums corrected
 * by the overlay entries of that mailbox, read in one read transaction so the
 * worker's commit cannot land between the two.
 *
 * Invariants: every write up to `seq` is in pending, in inflight, or
 * committed; `durable` <= `seq`; at most one batch is in flight (state).
 *
 * roost.db: plain synchronous statements on the caller's thread, cached
 * prepared statements, every value bound.  Keys and IDs are BLOBs.
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

#define BUSY_MS 5000 /* busy_timeout of every connection */
#define KEY_LEN (STORE_MBOX_LEN + STORE_HASH_LEN)
#define HOST_LEN (DHT_PK_LEN + 1 + 16 + 2) /* a serialised store_host_ref */

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* ---- opening and checking a database --------------------------------------- */

static bool is_corrupt_rc(int rc) {
  rc &= 0xff;
  return rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT;
}

/* Runs one statement without parameters, stepping through its rows. */
static int exec1(sqlite3 *db, const char *sql) {
  return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* The integer of a one-row pragma or query. */
static int query_int(sqlite3 *db, const char *sql, int64_t *out) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      *out = sqlite3_column_int64(st, 0);
      rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
      *out = 0;
      rc = SQLITE_OK;
    }
  }
  sqlite3_finalize(st);
  return rc;
}

/* PRAGMA quick_check: SQLITE_OK and *ok, with the first complaint in msg. */
static int quick_check(sqlite3 *db, bool *ok, char *msg, size_t msglen) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &st, NULL);
  *ok = false;
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      const char *t = (const char *)sqlite3_column_text(st, 0);
      *ok = t && strcmp(t, "ok") == 0;
      snprintf(msg, msglen, "%s", t ? t : "(no answer)");
      for (char *c = msg; *c; c++) /* one line */
        if (*c == '\n')
          *c = ' ';
      rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
      snprintf(msg, msglen, "(no answer)");
      rc = SQLITE_OK;
    }
  }
  sqlite3_finalize(st);
  return rc;
}

/* Opens path as a connection of ours: checks it (see the file comment),
 * gives a new file `schema`, and sets WAL, synchronous=FULL and the busy
 * timeout.  Returns 0 or a STORE_ERR_* with a message in err. */
static int db_open(sqlite3 **out, const char *path, const char *schema, char *err, size_t errlen) {
  sqlite3 *db = NULL;
  int ret = STORE_ERR_DB;
  char msg[200];
  *out = NULL;
  if (!sqlite3_threadsafe()) {
    seterr(err, errlen, "%s: this SQLite library was built without thread support", path);
    return STORE_ERR_DB;
  }
  int rc = sqlite3_open_v2(path, &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    seterr(err, errlen, "%s: cannot open: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    goto fail;
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, BUSY_MS);

  int64_t ver = 0, ntables = 0;
  rc = query_int(db, "PRAGMA user_version", &ver);
  if (rc == SQLITE_OK)
    rc = query_int(db, "SELECT count(*) FROM sqlite_schema", &ntables);
  if (is_corrupt_rc(rc)) {
    seterr(err, errlen, "%s: not a SQLite database or damaged (%s); left as it is", path,
           sqlite3_errmsg(db));
    ret = STORE_ERR_DB_CORRUPT;
    goto fail;
  }
  if (rc != SQLITE_OK) {
    seterr(err, errlen, "%s: cannot read: %s", path, sqlite3_errmsg(db));
    goto fail;
  }
  if (ver > STORE_SQLITE_SCHEMA) {
    seterr(err, errlen,
           "%s: written by a newer roost (schema version %lld; this roost knows up to %d); "
           "left as it is",
           path, (long long)ver, STORE_SQLITE_SCHEMA);
    ret = STORE_ERR_DB_NEWER;
    goto fail;
  }
  bool ok;
  rc = quick_check(db, &ok, msg, sizeof msg);
  if (rc != SQLITE_OK || !ok) {
    if (rc != SQLITE_OK && !is_corrupt_rc(rc)) {
      seterr(err, errlen, "%s: cannot check: %s", path, sqlite3_errmsg(db));
      goto fail;
    }
    seterr(err, errlen, "%s: damaged (quick_check: %s); left as it is", path,
           rc != SQLITE_OK ? sqlite3_errmsg(db) : msg);
    ret = STORE_ERR_DB_CORRUPT;
    goto fail;
  }
  if (ver == 0 && ntables > 0) {
    seterr(err, errlen,
           "%s: a SQLite database, but not one of roost's (no schema version); "
           "left as it is",
           path);
    ret = STORE_ERR_DB_CORRUPT;
    goto fail;
  }

  /* the file is ours (or new): from here on we may write */
  int64_t dummy;
  rc = query_int(db, "PRAGMA journal_mode=WAL", &dummy);
  if (rc == SQLITE_OK)
    rc = exec1(db, "PRAGMA synchronous=FULL");
  if (rc == SQLITE_OK && ver == 0) {
    rc = exec1(db, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK)
      rc = exec1(db, schema);
    if (rc == SQLITE_OK) {
      char sql[64];
      snprintf(sql, sizeof sql, "PRAGMA user_version=%d", STORE_SQLITE_SCHEMA);
      rc = exec1(db, sql);
    }
    if (rc == SQLITE_OK)
      rc = exec1(db, "COMMIT");
    if (rc != SQLITE_OK) {
      seterr(err, errlen, "%s: cannot create the schema: %s", path, sqlite3_errmsg(db));
      exec1(db, "ROLLBACK");
      goto fail;
    }
  }
  if (rc != SQLITE_OK) {
    seterr(err, errlen, "%s: cannot set up: %s", path, sqlite3_errmsg(db));
    goto fail;
  }
  *out = db;
  return 0;
fail:
  sqlite3_close(db);
  return ret;
}

/* Copies a BLOB column of exactly n bytes; false when its length differs. */
static bool col_blob(sqlite3_stmt *st, int i, uint8_t *out, int n) {
  const void *p = sqlite3_column_blob(st, i);
  if (sqlite3_column_bytes(st, i) != n || (n && !p))
    return false;
  if (n)
    memcpy(out, p, (size_t)n);
  return true;
}

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
  if (!col_blob(st, 0, r->mbox, STORE_MBOX_LEN) || !col_blob(st, 1, r->hash, STORE_HASH_LEN) ||
      !col_blob(st, 4, r->mbox_pk, DHT_PK_LEN) || !col_blob(st, 7, r->sig, DHT_SIG_LEN) ||
      !col_blob(st, 8, r->data, len))
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
    if (!col_blob(st, 0, hash, STORE_HASH_LEN)) {
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
  return exec1(b->rd, "BEGIN") == SQLITE_OK ? 0 : STORE_ERR_DB;
}

static void read_end(store_sqlite *b) {
  exec1(b->rd, "COMMIT");
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
      } else if (rc != SQLITE_ROW || !col_blob(st, 0, row, STORE_MBOX_LEN)) {
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
  int ret = exec1(b->wr, "BEGIN IMMEDIATE") == SQLITE_OK ? 0 : STORE_ERR_DB;
  bool inject = b->fail_commits > 0;
  int upto = inject ? b->inflight.n / 2 : b->inflight.n;
  for (int i = 0; ret == 0 && i < upto; i++)
    ret = write_ent(b, b->inflight.v[i]);
  if (ret == 0 && inject) {
    b->fail_commits--;
    ret = STORE_ERR_DB;
  }
  if (ret == 0 && exec1(b->wr, "COMMIT") != SQLITE_OK)
    ret = STORE_ERR_DB;
  if (ret < 0 && !sqlite3_get_autocommit(b->wr))
    exec1(b->wr, "ROLLBACK");
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
     * (mbox, hash) WITHOUT ROWID, every deposit rewrote a random 4 KB leaf
     * holding three records (20-30 KB written per 1 KB deposit measured by
     * bench_deposit). */
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

static int prep(sqlite3 *db, const char *sql, sqlite3_stmt **st) {
  return sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
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
  ret = db_open(&b->wr, path, MBOX_SCHEMA, err, errlen);
  if (ret < 0)
    goto fail;
  ret = STORE_ERR_DB;
  if (sqlite3_open_v2(path, &b->rd, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
      SQLITE_OK) {
    seterr(err, errlen, "%s: cannot open a reader: %s", path, sqlite3_errmsg(b->rd));
    goto fail;
  }
  sqlite3_extended_result_codes(b->rd, 1);
  sqlite3_busy_timeout(b->rd, BUSY_MS);
  if (exec1(b->rd, "PRAGMA query_only=1") != SQLITE_OK ||
      prep(b->rd, "SELECT " REC_COLS " FROM recs WHERE mbox=?1 AND hash=?2", &b->s_get) ||
      prep(b->rd, "SELECT " REC_COLS " FROM recs WHERE mbox=?1 AND hash>?2 ORDER BY hash",
           &b->s_scan) ||
      prep(b->rd, "SELECT mbox, max(hosted) FROM recs WHERE mbox>?1 GROUP BY mbox ORDER BY mbox",
           &b->s_mboxes) ||
      prep(b->rd, "SELECT hash, hosted FROM recs WHERE mbox=?1", &b->s_mbox_recs) ||
      prep(b->rd,
           "SELECT coalesce(sum(kind=1),0),"
           " coalesce(sum(CASE WHEN kind=1 THEN length(data) ELSE 0 END),0), count(*)"
           " FROM recs WHERE mbox=?1",
           &b->s_usage) ||
      prep(b->rd, "SELECT " REC_COLS " FROM recs WHERE expires_s<?1 ORDER BY expires_s, mbox, hash",
           &b->s_exp) ||
      prep(b->wr, "INSERT OR REPLACE INTO recs(" REC_COLS ") VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)",
           &b->w_put) ||
      prep(b->wr, "DELETE FROM recs WHERE mbox=?1 AND hash=?2", &b->w_del)) {
    seterr(err, errlen, "%s: cannot prepare: %s", path, sqlite3_errmsg(b->rd));
    goto fail;
  }
  /* the whole-store sums, once */
  sqlite3_stmt *st = NULL;
  if (prep(b->rd,
           "SELECT coalesce(sum(kind=1),0),"
           " coalesce(sum(CASE WHEN kind=1 THEN length(data) ELSE 0 END),0), count(*) FROM recs",
           &st) != SQLITE_OK ||
      sqlite3_step(st) != SQLITE_ROW) {
    seterr(err, errlen, "%s: cannot sum up: %s", path, sqlite3_errmsg(b->rd));
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

/* ---- roost.db ------------------------------------------------------------- */

static const char APP_SCHEMA[] =
    "CREATE TABLE friends("
    " pk BLOB PRIMARY KEY, name TEXT NOT NULL UNIQUE, hosts BLOB NOT NULL,"
    " fetched_epoch INTEGER NOT NULL, added_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE hosted(pk BLOB PRIMARY KEY, quota_bytes INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE outbox("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, msg_id BLOB NOT NULL UNIQUE, to_pk BLOB NOT NULL,"
    " sent_ms INTEGER NOT NULL, kind INTEGER NOT NULL, body BLOB NOT NULL,"
    " state INTEGER NOT NULL, receipts INTEGER NOT NULL, reason INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL);"
    "CREATE INDEX outbox_state ON outbox(state, seq);"
    "CREATE TABLE inbox("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, from_pk BLOB NOT NULL, msg_id BLOB NOT NULL,"
    " sent_ms INTEGER NOT NULL, kind INTEGER NOT NULL, body BLOB NOT NULL,"
    " received_ms INTEGER NOT NULL, read INTEGER NOT NULL, direct INTEGER NOT NULL,"
    " UNIQUE (from_pk, msg_id));"
    "CREATE INDEX inbox_sent ON inbox(sent_ms, seq);"
    "CREATE TABLE losses("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, from_pk BLOB NOT NULL, epoch INTEGER NOT NULL,"
    " items INTEGER NOT NULL, unix_ms INTEGER NOT NULL, UNIQUE (from_pk, epoch));";

enum {
  Q_FRIEND_BY_NAME,
  Q_FRIEND_BY_PK,
  Q_FRIEND_PUT,
  Q_FRIEND_DEL,
  Q_FRIEND_LIST,
  Q_FRIEND_FETCHED,
  Q_HOSTED_PUT,
  Q_HOSTED_DEL,
  Q_HOSTED_LIST,
  Q_OUT_ADD,
  Q_OUT_UPDATE,
  Q_OUT_EXISTS,
  Q_OUT_LIST,
  Q_IN_ADD,
  Q_IN_SEQ,
  Q_IN_LIST,
  Q_IN_READ,
  Q_LOSS_ADD,
  Q_LOSS_LIST,
  Q_COUNT
};

#define FRIEND_COLS "name, pk, hosts, fetched_epoch, added_ms"
#define OUT_COLS "seq, msg_id, sent_ms, kind, body, to_pk, state, receipts, reason, updated_ms"
#define IN_COLS "seq, msg_id, sent_ms, kind, body, from_pk, received_ms, read, direct"

static const char *const APP_SQL[Q_COUNT] = {
    [Q_FRIEND_BY_NAME] = "SELECT " FRIEND_COLS " FROM friends WHERE name=?1",
    [Q_FRIEND_BY_PK] = "SELECT " FRIEND_COLS " FROM friends WHERE pk=?1",
    [Q_FRIEND_PUT] = "INSERT INTO friends(name, pk, hosts, fetched_epoch, added_ms)"
                     " VALUES(?1,?2,?3,?4,?5) ON CONFLICT(pk) DO UPDATE SET"
                     " name=excluded.name, hosts=excluded.hosts,"
                     " fetched_epoch=excluded.fetched_epoch, added_ms=excluded.added_ms",
    [Q_FRIEND_DEL] = "DELETE FROM friends WHERE pk=?1",
    [Q_FRIEND_LIST] = "SELECT " FRIEND_COLS " FROM friends ORDER BY name LIMIT ?1",
    [Q_FRIEND_FETCHED] = "UPDATE friends SET fetched_epoch=?2 WHERE pk=?1",
    [Q_HOSTED_PUT] = "INSERT OR REPLACE INTO hosted(pk, quota_bytes) VALUES(?1,?2)",
    [Q_HOSTED_DEL] = "DELETE FROM hosted WHERE pk=?1",
    [Q_HOSTED_LIST] = "SELECT pk, quota_bytes FROM hosted ORDER BY pk LIMIT ?1",
    [Q_OUT_ADD] = "INSERT INTO outbox(msg_id, sent_ms, kind, body, to_pk, state, receipts,"
                  " reason, updated_ms) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)",
    /* forward only: a later state, or the same state with at least as many
     * receipts (receipts grow while the state stays STORED) */
    [Q_OUT_UPDATE] = "UPDATE outbox SET state=?2, receipts=max(receipts, ?3), reason=?4,"
                     " updated_ms=?5 WHERE msg_id=?1 AND (state<?2 OR (state=?2 AND receipts<=?3))",
    [Q_OUT_EXISTS] = "SELECT 1 FROM outbox WHERE msg_id=?1",
    [Q_OUT_LIST] = "SELECT * FROM (SELECT " OUT_COLS " FROM outbox WHERE ?1<=0 OR state<?1"
                   " ORDER BY seq DESC LIMIT ?2) ORDER BY seq",
    [Q_IN_ADD] = "INSERT INTO inbox(msg_id, sent_ms, kind, body, from_pk, received_ms, read,"
                 " direct) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)"
                 " ON CONFLICT(from_pk, msg_id) DO NOTHING",
    [Q_IN_SEQ] = "SELECT seq FROM inbox WHERE from_pk=?1 AND msg_id=?2",
    [Q_IN_LIST] = "SELECT " IN_COLS " FROM inbox WHERE seq>?1 AND (?2=0 OR read=0)"
                  " ORDER BY sent_ms, seq LIMIT ?3",
    [Q_IN_READ] = "UPDATE inbox SET read=1 WHERE seq=?1",
    [Q_LOSS_ADD] = "INSERT INTO losses(from_pk, epoch, items, unix_ms) VALUES(?1,?2,?3,?4)"
                   " ON CONFLICT(from_pk, epoch) DO UPDATE SET items=max(items, excluded.items)",
    [Q_LOSS_LIST] = "SELECT seq, from_pk, epoch, items, unix_ms FROM losses ORDER BY seq LIMIT ?1",
};

struct store_appdb {
  sqlite3 *db;
  sqlite3_stmt *q[Q_COUNT];
};

int store_appdb_open(store_appdb **out, const char *path, char *err, size_t errlen) {
  if (!out || !path)
    return DHT_ERR_INVAL;
  *out = NULL;
  store_appdb *a = calloc(1, sizeof *a);
  if (!a)
    return DHT_ERR_NOMEM;
  int ret = db_open(&a->db, path, APP_SCHEMA, err, errlen);
  if (ret < 0)
    goto fail;
  for (int i = 0; i < Q_COUNT; i++) {
    if (prep(a->db, APP_SQL[i], &a->q[i]) != SQLITE_OK) {
      seterr(err, errlen, "%s: cannot prepare: %s", path, sqlite3_errmsg(a->db));
      ret = STORE_ERR_DB;
      goto fail;
    }
  }
  *out = a;
  return 0;
fail:
  store_appdb_close(a);
  return ret;
}

void store_appdb_close(store_appdb *a) {
  if (!a)
    return;
  for (int i = 0; i < Q_COUNT; i++)
    sqlite3_finalize(a->q[i]);
  sqlite3_close(a->db);
  free(a);
}

/* The statement q, reset, with no bindings. */
static sqlite3_stmt *Q(store_appdb *a, int q) {
  sqlite3_reset(a->q[q]);
  sqlite3_clear_bindings(a->q[q]);
  return a->q[q];
}

/* Steps a statement that returns no rows: 0 or STORE_ERR_DB. */
static int run(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? 0 : STORE_ERR_DB;
}

static void bind_bytes(sqlite3_stmt *st, int i, const void *p, int n) {
  if (n > 0)
    sqlite3_bind_blob(st, i, p, n, SQLITE_STATIC);
  else
    sqlite3_bind_zeroblob(st, i, 0);
}

/* Friends. */

static bool name_ok(const char *name) {
  size_t n = name ? strnlen(name, sizeof((store_friend_row *)0)->name) : 0;
  return n > 0 && n < sizeof((store_friend_row *)0)->name;
}

static int row_to_friend(sqlite3_stmt *st, store_friend_row *r) {
  memset(r, 0, sizeof *r);
  const char *name = (const char *)sqlite3_column_text(st, 0);
  int hl = sqlite3_column_bytes(st, 2);
  const uint8_t *h = sqlite3_column_blob(st, 2);
  if (!name || strlen(name) >= sizeof r->name || !col_blob(st, 1, r->f.pk, DHT_PK_LEN) ||
      hl % HOST_LEN != 0 || hl / HOST_LEN > STORE_MAX_HOSTS)
    return STORE_ERR_DB;
  memcpy(r->name, name, strlen(name) + 1);
  r->f.nhosts = hl / HOST_LEN;
  for (int i = 0; i < r->f.nhosts; i++, h += HOST_LEN) {
    store_host_ref *x = &r->f.hosts[i];
    memcpy(x->pk, h, DHT_PK_LEN);
    x->addr.family = h[DHT_PK_LEN];
    memcpy(x->addr.ip, h + DHT_PK_LEN + 1, 16);
    x->addr.port = (uint16_t)(h[DHT_PK_LEN + 17] << 8 | h[DHT_PK_LEN + 18]);
  }
  r->f.fetched_epoch = (uint32_t)sqlite3_column_int64(st, 3);
  r->added_unix_ms = sqlite3_column_int64(st, 4);
  return 0;
}

int store_appdb_friend_put(store_appdb *a, const store_friend_row *r) {
  if (!a || !r || !name_ok(r->name) || r->f.nhosts < 0 || r->f.nhosts > STORE_MAX_HOSTS)
    return DHT_ERR_INVAL;
  uint8_t hosts[STORE_MAX_HOSTS * HOST_LEN];
  uint8_t *h = hosts;
  for (int i = 0; i < r->f.nhosts; i++, h += HOST_LEN) {
    const store_host_ref *x = &r->f.hosts[i];
    memcpy(h, x->pk, DHT_PK_LEN);
    h[DHT_PK_LEN] = x->addr.family;
    memcpy(h + DHT_PK_LEN + 1, x->addr.ip, 16);
    h[DHT_PK_LEN + 17] = (uint8_t)(x->addr.port >> 8);
    h[DHT_PK_LEN + 18] = (uint8_t)x->addr.port;
  }
  if (exec1(a->db, "BEGIN IMMEDIATE") != SQLITE_OK)
    return STORE_ERR_DB;
  /* the name may belong to this pk only */
  sqlite3_stmt *st = Q(a, Q_FRIEND_BY_NAME);
  sqlite3_bind_text(st, 1, r->name, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st), ret = 0;
  if (rc == SQLITE_ROW) {
    uint8_t pk[DHT_PK_LEN];
    if (!col_blob(st, 1, pk, DHT_PK_LEN))
      ret = STORE_ERR_DB;
    else if (memcmp(pk, r->f.pk, DHT_PK_LEN) != 0)
      ret = DHT_ERR_INVAL;
  } else if (rc != SQLITE_DONE) {
    ret = STORE_ERR_DB;
  }
  sqlite3_reset(st);
  if (ret == 0) {
    st = Q(a, Q_FRIEND_PUT);
    sqlite3_bind_text(st, 1, r->name, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, r->f.pk, DHT_PK_LEN, SQLITE_STATIC);
    bind_bytes(st, 3, hosts, (int)(h - hosts));
    sqlite3_bind_int64(st, 4, r->f.fetched_epoch);
    sqlite3_bind_int64(st, 5, r->added_unix_ms);
    ret = run(st);
  }
  if (ret == 0 && exec1(a->db, "COMMIT") != SQLITE_OK)
    ret = STORE_ERR_DB;
  if (ret < 0)
    exec1(a->db, "ROLLBACK");
  return ret;
}

/* 0 when a row changed, DHT_ERR_NOTFOUND when none did. */
static int changed(store_appdb *a, int ret) {
  return ret < 0 ? ret : sqlite3_changes(a->db) > 0 ? 0 : DHT_ERR_NOTFOUND;
}

int store_appdb_friend_del(store_appdb *a, const uint8_t pk[static DHT_PK_LEN]) {
  sqlite3_stmt *st = Q(a, Q_FRIEND_DEL);
  sqlite3_bind_blob(st, 1, pk, DHT_PK_LEN, SQLITE_STATIC);
  return changed(a, run(st));
}

int store_appdb_friend_get(store_appdb *a, const char *name, const uint8_t *pk,
                           store_friend_row *out) {
  sqlite3_stmt *st;
  if (pk) {
    st = Q(a, Q_FRIEND_BY_PK);
    sqlite3_bind_blob(st, 1, pk, DHT_PK_LEN, SQLITE_STATIC);
  } else if (name) {
    st = Q(a, Q_FRIEND_BY_NAME);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  } else {
    return DHT_ERR_INVAL;
  }
  int rc = sqlite3_step(st);
  int ret = rc == SQLITE_ROW    ? row_to_friend(st, out)
            : rc == SQLITE_DONE ? DHT_ERR_NOTFOUND
                                : STORE_ERR_DB;
  sqlite3_reset(st);
  return ret;
}

int store_appdb_friend_list(store_appdb *a, store_friend_row *out, int max) {
  if (max <= 0)
    return 0;
  sqlite3_stmt *st = Q(a, Q_FRIEND_LIST);
  sqlite3_bind_int(st, 1, max);
  int n = 0, rc = SQLITE_DONE;
  while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (row_to_friend(st, &out[n]) < 0) {
      n = STORE_ERR_DB;
      break;
    }
    n++;
  }
  if (n >= 0 && n < max && rc != SQLITE_DONE)
    n = STORE_ERR_DB;
  sqlite3_reset(st);
  return n;
}

int store_appdb_friend_set_fetched(store_appdb *a, const uint8_t pk[static DHT_PK_LEN],
                                   uint32_t epoch) {
  sqlite3_stmt *st = Q(a, Q_FRIEND_FETCHED);
  sqlite3_bind_blob(st, 1, pk, DHT_PK_LEN, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, epoch);
  return changed(a, run(st));
}

/* Hosted friends. */

int store_appdb_hosted_put(store_appdb *a, const store_hosted_row *r) {
  sqlite3_stmt *st = Q(a, Q_HOSTED_PUT);
  sqlite3_bind_blob(st, 1, r->pk, DHT_PK_LEN, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, r->quota_bytes);
  return run(st);
}

int store_appdb_hosted_del(store_appdb *a, const uint8_t pk[static DHT_PK_LEN]) {
  sqlite3_stmt *st = Q(a, Q_HOSTED_DEL);
  sqlite3_bind_blob(st, 1, pk, DHT_PK_LEN, SQLITE_STATIC);
  return changed(a, run(st));
}

int store_appdb_hosted_list(store_appdb *a, store_hosted_row *out, int max) {
  if (max <= 0)
    return 0;
  sqlite3_stmt *st = Q(a, Q_HOSTED_LIST);
  sqlite3_bind_int(st, 1, max);
  int n = 0, rc = SQLITE_DONE;
  while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (!col_blob(st, 0, out[n].pk, DHT_PK_LEN)) {
      n = STORE_ERR_DB;
      break;
    }
    out[n].quota_bytes = sqlite3_column_int64(st, 1);
    n++;
  }
  if (n >= 0 && n < max && rc != SQLITE_DONE)
    n = STORE_ERR_DB;
  sqlite3_reset(st);
  return n;
}

/* Messages: columns 1..4 of OUT_COLS and IN_COLS are (msg_id, sent_ms, kind,
 * body). */

static void bind_msg(sqlite3_stmt *st, const store_msg *m) {
  sqlite3_bind_blob(st, 1, m->id, STORE_MSGID_LEN, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, m->sent_unix_ms);
  sqlite3_bind_int(st, 3, m->kind);
  bind_bytes(st, 4, m->body, m->len);
}

static int col_msg(sqlite3_stmt *st, store_msg *m) {
  int len = sqlite3_column_bytes(st, 4);
  if (len > STORE_TEXT_MAX || !col_blob(st, 1, m->id, STORE_MSGID_LEN) ||
      !col_blob(st, 4, m->body, len))
    return STORE_ERR_DB;
  m->sent_unix_ms = sqlite3_column_int64(st, 2);
  m->kind = (uint8_t)sqlite3_column_int(st, 3);
  m->len = (uint16_t)len;
  return 0;
}

int store_appdb_out_add(store_appdb *a, store_out_row *r) {
  if (!r || r->msg.len > STORE_TEXT_MAX || r->state < STORE_ST_QUEUED || r->state > STORE_ST_READ)
    return DHT_ERR_INVAL;
  sqlite3_stmt *st = Q(a, Q_OUT_ADD);
  bind_msg(st, &r->msg);
  sqlite3_bind_blob(st, 5, r->to_pk, DHT_PK_LEN, SQLITE_STATIC);
  sqlite3_bind_int(st, 6, r->state);
  sqlite3_bind_int(st, 7, r->receipts);
  sqlite3_bind_int(st, 8, r->reason);
  sqlite3_bind_int64(st, 9, r->updated_unix_ms);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc == SQLITE_CONSTRAINT_UNIQUE)
    return DHT_ERR_INVAL;
  if (rc != SQLITE_DONE)
    return STORE_ERR_DB;
  r->seq = sqlite3_last_insert_rowid(a->db);
  return 0;
}

int store_appdb_out_update(store_appdb *a, const uint8_t msg_id[static STORE_MSGID_LEN], int state,
                           int receipts, int reason, int64_t unix_ms) {
  if (state < STORE_ST_QUEUED || state > STORE_ST_READ)
    return DHT_ERR_INVAL;
  sqlite3_stmt *st = Q(a, Q_OUT_UPDATE);
  sqlite3_bind_blob(st, 1, msg_id, STORE_MSGID_LEN, SQLITE_STATIC);
  sqlite3_bind_int(st, 2, state);
  sqlite3_bind_int(st, 3, receipts);
  sqlite3_bind_int(st, 4, reason);
  sqlite3_bind_int64(st, 5, unix_ms);
  int ret = changed(a, run(st));
  if (ret != DHT_ERR_NOTFOUND)
    return ret;
  /* nothing changed: an unknown message, or an update that goes back */
  st = Q(a, Q_OUT_EXISTS);
  sqlite3_bind_blob(st, 1, msg_id, STORE_MSGID_LEN, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_ROW ? DHT_ERR_STALE : rc == SQLITE_DONE ? DHT_ERR_NOTFOUND : STORE_ERR_DB;
}

int store_appdb_out_list(store_appdb *a, int max_state, store_out_row *out, int max) {
  if (max <= 0)
    return 0;
  sqlite3_stmt *st = Q(a, Q_OUT_LIST);
  sqlite3_bind_int(st, 1, max_state);
  sqlite3_bind_int(st, 2, max);
  int n = 0, rc = SQLITE_DONE;
  while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    store_out_row *r = &out[n];
    memset(r, 0, sizeof *r);
    r->seq = sqlite3_column_int64(st, 0);
    if (col_msg(st, &r->msg) < 0 || !col_blob(st, 5, r->to_pk, DHT_PK_LEN)) {
      n = STORE_ERR_DB;
      break;
    }
    r->state = sqlite3_column_int(st, 6);
    r->receipts = sqlite3_column_int(st, 7);
    r->reason = sqlite3_column_int(st, 8);
    r->updated_unix_ms = sqlite3_column_int64(st, 9);
    n++;
  }
  if (n >= 0 && n < max && rc != SQLITE_DONE)
    n = STORE_ERR_DB;
  sqlite3_reset(st);
  return n;
}

int store_appdb_in_add(store_appdb *a, store_in_row *r, bool *dup) {
  if (!r || !dup || r->msg.len > STORE_TEXT_MAX)
    return DHT_ERR_INVAL;
  *dup = false;
  sqlite3_stmt *st = Q(a, Q_IN_ADD);
  bind_msg(st, &r->msg);
  sqlite3_bind_blob(st, 5, r->from_pk, DHT_PK_LEN, SQLITE_STATIC);
  sqlite3_bind_int64(st, 6, r->received_unix_ms);
  sqlite3_bind_int(st, 7, r->read ? 1 : 0);
  sqlite3_bind_int(st, 8, r->direct ? 1 : 0);
  int ret = run(st);
  if (ret < 0)
    return ret;
  if (sqlite3_changes(a->db) > 0) {
    r->seq = sqlite3_last_insert_rowid(a->db);
    return 0;
  }
  /* known: hand back the first copy's seq */
  *dup = true;
  st = Q(a, Q_IN_SEQ);
  sqlite3_bind_blob(st, 1, r->from_pk, DHT_PK_LEN, SQLITE_STATIC);
  sqlite3_bind_blob(st, 2, r->msg.id, STORE_MSGID_LEN, SQLITE_STATIC);
  ret = sqlite3_step(st) == SQLITE_ROW ? 0 : STORE_ERR_DB;
  if (ret == 0)
    r->seq = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  return ret;
}

int store_appdb_in_list(store_appdb *a, int64_t after_seq, bool unread_only, store_in_row *out,
                        int max) {
  if (max <= 0)
    return 0;
  sqlite3_stmt *st = Q(a, Q_IN_LIST);
  sqlite3_bind_int64(st, 1, after_seq);
  sqlite3_bind_int(st, 2, unread_only ? 1 : 0);
  sqlite3_bind_int(st, 3, max);
  int n = 0, rc = SQLITE_DONE;
  while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    store_in_row *r = &out[n];
    memset(r, 0, sizeof *r);
    r->seq = sqlite3_column_int64(st, 0);
    if (col_msg(st, &r->msg) < 0 || !col_blob(st, 5, r->from_pk, DHT_PK_LEN)) {
      n = STORE_ERR_DB;
      break;
    }
    r->received_unix_ms = sqlite3_column_int64(st, 6);
    r->read = sqlite3_column_int(st, 7) != 0;
    r->direct = sqlite3_column_int(st, 8) != 0;
    n++;
  }
  if (n >= 0 && n < max && rc != SQLITE_DONE)
    n = STORE_ERR_DB;
  sqlite3_reset(st);
  return n;
}

int store_appdb_in_mark_read(store_appdb *a, int64_t seq) {
  sqlite3_stmt *st = Q(a, Q_IN_READ);
  sqlite3_bind_int64(st, 1, seq);
  return changed(a, run(st));
}

int store_appdb_loss_add(store_appdb *a, const uint8_t from_pk[static DHT_PK_LEN], uint32_t epoch,
                         int items, int64_t unix_ms) {
  sqlite3_stmt *st = Q(a, Q_LOSS_ADD);
  sqlite3_bind_blob(st, 1, from_pk, DHT_PK_LEN, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, epoch);
  sqlite3_bind_int(st, 3, items);
  sqlite3_bind_int64(st, 4, unix_ms);
  return run(st);
}

int store_appdb_loss_list(store_appdb *a, store_loss_row *out, int max) {
  if (max <= 0)
    return 0;
  sqlite3_stmt *st = Q(a, Q_LOSS_LIST);
  sqlite3_bind_int(st, 1, max);
  int n = 0, rc = SQLITE_DONE;
  while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    store_loss_row *r = &out[n];
    r->seq = sqlite3_column_int64(st, 0);
    if (!col_blob(st, 1, r->from_pk, DHT_PK_LEN)) {
      n = STORE_ERR_DB;
      break;
    }
    r->epoch = (uint32_t)sqlite3_column_int64(st, 2);
    r->items = sqlite3_column_int(st, 3);
    r->unix_ms = sqlite3_column_int64(st, 4);
    n++;
  }
  if (n >= 0 && n < max && rc != SQLITE_DONE)
    n = STORE_ERR_DB;
  sqlite3_reset(st);
  return n;
}

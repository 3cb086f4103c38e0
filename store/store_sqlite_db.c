/*
 * store_sqlite_db.c - opening and checking a database of the SQLite adapter,
 * for both mailboxes.db (store_sqlite.c) and roost.db (store_sqlite_app.c),
 * and the small statement helpers they share.
 *
 * Opening (store_sqlite_db_open): a file that is not a SQLite database,
 * fails PRAGMA quick_check, or is a SQLite database without roost's schema
 * version is refused with STORE_ERR_DB_CORRUPT; one with a user_version above
 * STORE_SQLITE_SCHEMA with STORE_ERR_DB_NEWER.  Nothing is written to a file
 * before it has passed these checks, so a refused file stays byte for byte as
 * it was.  A new (empty) file gets WAL mode, the schema and the version in one
 * transaction.
 */
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

/* ---- opening and checking a database --------------------------------------- */

/* Formats a message into err (nothing when err is NULL). */
void store_sqlite_db_seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static bool is_corrupt_rc(int rc) {
  rc &= 0xff;
  return rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT;
}

/* Runs one statement without parameters, stepping through its rows. */
int store_sqlite_db_exec(sqlite3 *db, const char *sql) {
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
int store_sqlite_db_open(sqlite3 **out, const char *path, const char *schema, char *err,
                         size_t errlen) {
  sqlite3 *db = NULL;
  int ret = STORE_ERR_DB;
  char msg[200];
  *out = NULL;
  if (!sqlite3_threadsafe()) {
    store_sqlite_db_seterr(err, errlen, "%s: this SQLite library was built without thread support",
                           path);
    return STORE_ERR_DB;
  }
  int rc = sqlite3_open_v2(path, &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    store_sqlite_db_seterr(err, errlen, "%s: cannot open: %s", path,
                           db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    goto fail;
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, BUSY_MS);

  int64_t ver = 0, ntables = 0;
  rc = query_int(db, "PRAGMA user_version", &ver);
  if (rc == SQLITE_OK)
    rc = query_int(db, "SELECT count(*) FROM sqlite_schema", &ntables);
  if (is_corrupt_rc(rc)) {
    store_sqlite_db_seterr(err, errlen, "%s: not a SQLite database or damaged (%s); left as it is",
                           path, sqlite3_errmsg(db));
    ret = STORE_ERR_DB_CORRUPT;
    goto fail;
  }
  if (rc != SQLITE_OK) {
    store_sqlite_db_seterr(err, errlen, "%s: cannot read: %s", path, sqlite3_errmsg(db));
    goto fail;
  }
  if (ver > STORE_SQLITE_SCHEMA) {
    store_sqlite_db_seterr(
        err, errlen,
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
      store_sqlite_db_seterr(err, errlen, "%s: cannot check: %s", path, sqlite3_errmsg(db));
      goto fail;
    }
    store_sqlite_db_seterr(err, errlen, "%s: damaged (quick_check: %s); left as it is", path,
                           rc != SQLITE_OK ? sqlite3_errmsg(db) : msg);
    ret = STORE_ERR_DB_CORRUPT;
    goto fail;
  }
  if (ver == 0 && ntables > 0) {
    store_sqlite_db_seterr(err, errlen,
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
    rc = store_sqlite_db_exec(db, "PRAGMA synchronous=FULL");
  if (rc == SQLITE_OK && ver == 0) {
    rc = store_sqlite_db_exec(db, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK)
      rc = store_sqlite_db_exec(db, schema);
    if (rc == SQLITE_OK) {
      char sql[64];
      snprintf(sql, sizeof sql, "PRAGMA user_version=%d", STORE_SQLITE_SCHEMA);
      rc = store_sqlite_db_exec(db, sql);
    }
    if (rc == SQLITE_OK)
      rc = store_sqlite_db_exec(db, "COMMIT");
    if (rc != SQLITE_OK) {
      store_sqlite_db_seterr(err, errlen, "%s: cannot create the schema: %s", path,
                             sqlite3_errmsg(db));
      store_sqlite_db_exec(db, "ROLLBACK");
      goto fail;
    }
  }
  if (rc != SQLITE_OK) {
    store_sqlite_db_seterr(err, errlen, "%s: cannot set up: %s", path, sqlite3_errmsg(db));
    goto fail;
  }
  *out = db;
  return 0;
fail:
  sqlite3_close(db);
  return ret;
}

/* Copies a BLOB column of exactly n bytes; false when its length differs. */
bool store_sqlite_db_col_blob(sqlite3_stmt *st, int i, uint8_t *out, int n) {
  const void *p = sqlite3_column_blob(st, i);
  if (sqlite3_column_bytes(st, i) != n || (n && !p))
    return false;
  if (n)
    memcpy(out, p, (size_t)n);
  return true;
}

/* Prepares a statement kept for the connection's life. */
int store_sqlite_db_prep(sqlite3 *db, const char *sql, sqlite3_stmt **st) {
  return sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
}

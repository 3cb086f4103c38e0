/*
 * store_sqlite_app.c - roost.db, the user's own state in the SQLite adapter:
 * friends, the friends we host, the outbox, the inbox and loss notices
 * (store_appdb_*, declared in store_sqlite.h).
 *
 * Plain synchronous statements on the caller's thread (the node's loop: the
 * rows are few and small), prepared once at open and kept, every value
 * bound, never formatted into SQL.  Keys and IDs are BLOBs of their exact
 * length; reading a row whose BLOB has another length fails with
 * STORE_ERR_DB (never a truncated or padded key).  Opening and checking the file is
 * store_sqlite_db.c's, with the same refusals as mailboxes.db (a newer or damaged database is never
 * rewritten).
 *
 * Invariants: an outbox row only moves forward (a later state, or more
 * receipts in the same state: Q_OUT_UPDATE); an inbox row is unique per
 * (sender, message ID), so a message delivered twice (directly and through a
 * mailbox, or re-sent after a restart) is stored once.
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

#define HOST_LEN (DHT_PK_LEN + 1 + 16 + 2) /* a serialised store_host_ref */

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
  int ret = store_sqlite_db_open(&a->db, path, APP_SCHEMA, err, errlen);
  if (ret < 0)
    goto fail;
  for (int i = 0; i < Q_COUNT; i++) {
    if (store_sqlite_db_prep(a->db, APP_SQL[i], &a->q[i]) != SQLITE_OK) {
      store_sqlite_db_seterr(err, errlen, "%s: cannot prepare: %s", path, sqlite3_errmsg(a->db));
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
  if (!name || strlen(name) >= sizeof r->name ||
      !store_sqlite_db_col_blob(st, 1, r->f.pk, DHT_PK_LEN) || hl % HOST_LEN != 0 ||
      hl / HOST_LEN > STORE_MAX_HOSTS)
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
  if (store_sqlite_db_exec(a->db, "BEGIN IMMEDIATE") != SQLITE_OK)
    return STORE_ERR_DB;
  /* the name may belong to this pk only */
  sqlite3_stmt *st = Q(a, Q_FRIEND_BY_NAME);
  sqlite3_bind_text(st, 1, r->name, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st), ret = 0;
  if (rc == SQLITE_ROW) {
    uint8_t pk[DHT_PK_LEN];
    if (!store_sqlite_db_col_blob(st, 1, pk, DHT_PK_LEN))
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
  if (ret == 0 && store_sqlite_db_exec(a->db, "COMMIT") != SQLITE_OK)
    ret = STORE_ERR_DB;
  if (ret < 0)
    store_sqlite_db_exec(a->db, "ROLLBACK");
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
    if (!store_sqlite_db_col_blob(st, 0, out[n].pk, DHT_PK_LEN)) {
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
  if (len > STORE_TEXT_MAX || !store_sqlite_db_col_blob(st, 1, m->id, STORE_MSGID_LEN) ||
      !store_sqlite_db_col_blob(st, 4, m->body, len))
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
    if (col_msg(st, &r->msg) < 0 || !store_sqlite_db_col_blob(st, 5, r->to_pk, DHT_PK_LEN)) {
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
    if (col_msg(st, &r->msg) < 0 || !store_sqlite_db_col_blob(st, 5, r->from_pk, DHT_PK_LEN)) {
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
    if (!store_sqlite_db_col_blob(st, 1, r->from_pk, DHT_PK_LEN)) {
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

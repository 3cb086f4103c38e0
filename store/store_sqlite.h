/*
 * store_sqlite.h - the SQLite adapter of store/ (target roost_store_sqlite,
 * linked only by node/): store_sqlite.c (mailboxes.db), store_sqlite_app.c
 * (roost.db), store_sqlite_db.c (opening and checking either).  Those files
 * are the only ones that include <sqlite3.h>.
 *
 * Two databases in the data directory, kept apart on purpose:
 *
 *   mailboxes.db  what this node stores for others (a store_backend): only
 *                 unlinkable mailbox IDs, padded ciphertext, signatures.
 *   roost.db      the user's own state: friends, hosts, outbox, inbox.
 *
 * Both run in WAL mode with a schema version in PRAGMA user_version.  A
 * database written by a newer roost is refused (STORE_ERR_DB_NEWER), a
 * damaged one too (STORE_ERR_DB_CORRUPT); neither is ever rewritten.
 *
 * Batched, off-loop commits (mailboxes.db).  put()/del() apply to an
 * in-memory overlay that get/scan/usage see at once, and return a write
 * sequence number.  The driver commits in three steps:
 *
 *     if (store_sqlite_commit_begin(b))       loop thread: pending -> batch
 *         uv_queue_work(..., store_sqlite_commit_run(b), ...)   worker thread
 *     after-work: seq = store_sqlite_commit_end(b)  loop thread
 *                 store_svc_durable(svc, seq, now)
 *
 * commit_run uses its own connection and touches nothing the loop thread
 * writes; the loop keeps reading through its own (WAL readers never wait for
 * the writer).  At most one batch is in flight.
 */
#ifndef ROOST_STORE_SQLITE_H
#define ROOST_STORE_SQLITE_H

#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define STORE_SQLITE_SCHEMA 1 /* PRAGMA user_version of both databases */

typedef struct store_sqlite store_sqlite;

/* Opens (creating if missing) the mailbox database at path and fills *be.
 * be->close() commits what is pending (synchronously) and frees b; it must
 * not be called while a commit_run may be running.  del() of a record that
 * is not there is DHT_ERR_NOTFOUND (as in the memory backend).
 * Returns 0 or STORE_ERR_DB / STORE_ERR_DB_NEWER / STORE_ERR_DB_CORRUPT with
 * a message in err (errlen bytes). */
int store_sqlite_open(store_sqlite **out, store_backend *be, const char *path, char *err,
                      size_t errlen);
/* Loop thread.  true when there were pending writes and a batch was formed
 * (then commit_run must follow, then commit_end). */
bool store_sqlite_commit_begin(store_sqlite *b);
/* Worker thread: writes the batch in one transaction.  0 or STORE_ERR_DB. */
int store_sqlite_commit_run(store_sqlite *b);
/* Loop thread: ends the batch.  Returns the durable sequence number (the
 * batch's last, or the previous one when commit_run failed or never ran
 * (the work was cancelled): those writes stay pending, newer writes of the
 * same keys win, and they are retried by the next batch). */
int64_t store_sqlite_commit_end(store_sqlite *b);
/* Writes waiting for a batch. */
int store_sqlite_pending(const store_sqlite *b);
/* Testing: the next n commit_run calls write half of their batch and then
 * fail with STORE_ERR_DB (the transaction is rolled back).  Loop thread, no
 * batch in flight. */
void store_sqlite_fail_commits(store_sqlite *b, int n);

/* ---- roost.db: the user's own state ----------------------------------- */

typedef struct store_appdb store_appdb;

/* Opens (creating if missing) roost.db; writes are synchronous on the
 * caller's thread.  0 or STORE_ERR_DB / _NEWER / _CORRUPT with a message in
 * err.  close(NULL) is fine.  Unless said otherwise the functions below
 * return 0, DHT_ERR_NOTFOUND (nothing to delete or update) or STORE_ERR_DB. */
int store_appdb_open(store_appdb **out, const char *path, char *err, size_t errlen);
void store_appdb_close(store_appdb *db);

/* Friends. */
typedef struct store_friend_row {
  char name[64];
  store_friend f; /* pk, hosts, fetched_epoch */
  int64_t added_unix_ms;
} store_friend_row;

/* Insert or replace by pk; a name already used by another pk is
 * DHT_ERR_INVAL. */
int store_appdb_friend_put(store_appdb *db, const store_friend_row *r);
int store_appdb_friend_del(store_appdb *db, const uint8_t pk[static DHT_PK_LEN]);
/* By name (exact) or by pk (pk != NULL).  0 or DHT_ERR_NOTFOUND. */
int store_appdb_friend_get(store_appdb *db, const char *name, const uint8_t *pk,
                           store_friend_row *out);
/* All friends in name order: up to max.  Returns how many. */
int store_appdb_friend_list(store_appdb *db, store_friend_row *out, int max);
int store_appdb_friend_set_fetched(store_appdb *db, const uint8_t pk[static DHT_PK_LEN],
                                   uint32_t epoch);

/* Friends we host (capacity we give). */
typedef struct store_hosted_row {
  uint8_t pk[DHT_PK_LEN];
  int64_t quota_bytes;
} store_hosted_row;
int store_appdb_hosted_put(store_appdb *db, const store_hosted_row *r);
int store_appdb_hosted_del(store_appdb *db, const uint8_t pk[static DHT_PK_LEN]);
int store_appdb_hosted_list(store_appdb *db, store_hosted_row *out, int max);

/* Outbox: every message we sent, with its state (enum store_state). */
typedef struct store_out_row {
  int64_t seq; /* local order */
  store_msg msg;
  uint8_t to_pk[DHT_PK_LEN];
  int state;
  int receipts;
  int reason; /* last refusal, 0 if none */
  int64_t updated_unix_ms;
} store_out_row;
/* Inserts (seq is assigned and written back).  A msg ID already in the
 * outbox is DHT_ERR_INVAL. */
int store_appdb_out_add(store_appdb *db, store_out_row *r);
/* Moves a message's state forward (never backwards) and stores receipts.
 * Applied when state is later than the stored one, or the same with at
 * least as many receipts (receipts only grow; reason and time follow).
 * 0, DHT_ERR_STALE (it would go back: nothing changed), DHT_ERR_NOTFOUND,
 * DHT_ERR_INVAL (state not an enum store_state). */
int store_appdb_out_update(store_appdb *db, const uint8_t msg_id[static STORE_MSGID_LEN], int state,
                           int receipts, int reason, int64_t unix_ms);
/* Messages in local order: those with state < max_state when
 * max_state > 0 (for the retry queue at start), else all.  The newest
 * `max` when there are more.  Returns how many. */
int store_appdb_out_list(store_appdb *db, int max_state, store_out_row *out, int max);

/* Inbox.  Adding a message whose ID is known (from the same friend) returns
 * 0, sets *dup and r->seq to the first copy's; otherwise *dup = false and
 * r->seq is assigned. */
typedef struct store_in_row {
  int64_t seq;
  store_msg msg;
  uint8_t from_pk[DHT_PK_LEN];
  int64_t received_unix_ms;
  bool read;
  bool direct;
} store_in_row;
int store_appdb_in_add(store_appdb *db, store_in_row *r, bool *dup);
/* Messages with seq > after_seq in (sent time, seq) order, up to max. */
int store_appdb_in_list(store_appdb *db, int64_t after_seq, bool unread_only, store_in_row *out,
                        int max);
int store_appdb_in_mark_read(store_appdb *db, int64_t seq);

/* Loss notices: "n items from friend X in epoch E were dropped unread".
 * One notice per (friend, epoch): every fetch round sees the storage nodes'
 * notices again, so a repeated report keeps the larger count. */
int store_appdb_loss_add(store_appdb *db, const uint8_t from_pk[static DHT_PK_LEN], uint32_t epoch,
                         int items, int64_t unix_ms);
typedef struct store_loss_row {
  int64_t seq; /* local order of the first report */
  uint8_t from_pk[DHT_PK_LEN];
  uint32_t epoch;
  int items;
  int64_t unix_ms; /* of the first report */
} store_loss_row;
/* Loss notices in local order, up to max.  Returns how many. */
int store_appdb_loss_list(store_appdb *db, store_loss_row *out, int max);

#ifdef __cplusplus
}
#endif
#endif /* ROOST_STORE_SQLITE_H */

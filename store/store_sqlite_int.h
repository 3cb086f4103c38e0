/*
 * store_sqlite_int.h - what the files of the SQLite adapter share
 * (store_sqlite.c, store_sqlite_app.c, store_sqlite_db.c).  Private to
 * them; not for the core, which never sees SQLite.
 *
 * It names SQLite's handle types without including <sqlite3.h> (which only
 * store_sqlite*.c may include: scripts/check-headers.sh): each includer has
 * included it first, and the typedefs repeat sqlite3.h's own.
 */
#ifndef ROOST_STORE_SQLITE_INT_H
#define ROOST_STORE_SQLITE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;

#define BUSY_MS 5000 /* busy_timeout of every connection */

/* Formats a message into err (errlen bytes; nothing when err is NULL). */
void store_sqlite_db_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Opens path as a connection of ours: checks it (store_sqlite_db.c's file
 * comment), gives a new file `schema`, and sets WAL, synchronous=FULL and
 * the busy timeout.  Returns 0 or a STORE_ERR_* with a message in err. */
int store_sqlite_db_open(sqlite3 **out, const char *path, const char *schema, char *err,
                         size_t errlen);
/* Runs SQL without parameters, stepping through its rows: an SQLITE_* code. */
int store_sqlite_db_exec(sqlite3 *db, const char *sql);
/* Prepares a statement kept for the connection's life: an SQLITE_* code. */
int store_sqlite_db_prep(sqlite3 *db, const char *sql, sqlite3_stmt **st);
/* Copies a BLOB column of exactly n bytes; false when its length differs. */
bool store_sqlite_db_col_blob(sqlite3_stmt *st, int i, uint8_t *out, int n);

#endif /* ROOST_STORE_SQLITE_INT_H */

/*
 * test_store_appdb.c - roost.db (store_appdb_*) and the schema checks both
 * databases share (store_sqlite.h), in a mkdtemp directory under /tmp that
 * is removed at the end.
 *
 * roost.db: friends (put, get by name and by pk, list in name order, update,
 * a name clash refused, delete, hosts and fetched epoch round trips), hosted
 * friends, the outbox (seq order, states only forward while receipts grow,
 * unknown IDs, the retry list with max_state and the newest `max`), the inbox
 * (duplicates by (friend, msg ID), (sent time, seq) order, unread filter and
 * paging, mark read), loss notices (one per friend and epoch, larger count
 * kept), and everything still there after a reopen.
 *
 * Schema, for mailboxes.db and roost.db: a database with user_version =
 * STORE_SQLITE_SCHEMA + 1 is refused with STORE_ERR_DB_NEWER and a message
 * naming the file and both versions; a file of random bytes, and a real
 * database cut in half, with STORE_ERR_DB_CORRUPT; each refused file is byte
 * for byte unchanged; an empty file is a new database.
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

static void new_path(char *out, size_t n, const char *what) {
  snprintf(out, n, "%s/%s%d.db", g_dir, what, g_nfile++);
}

static store_appdb *app_open(const char *path) {
  store_appdb *a = NULL;
  char err[256] = "";
  int rc = store_appdb_open(&a, path, err, sizeof err);
  if (rc != 0)
    fail_msg("store_appdb_open %s: %d %s", path, rc, err);
  return a;
}

static void pk_of(uint8_t pk[DHT_PK_LEN], int i) {
  memset(pk, 0, DHT_PK_LEN);
  pk[0] = (uint8_t)i;
  pk[31] = (uint8_t)(0x80 | i);
}

static void mkfriend(store_friend_row *r, const char *name, int i, int nhosts) {
  memset(r, 0, sizeof *r);
  snprintf(r->name, sizeof r->name, "%s", name);
  pk_of(r->f.pk, i);
  r->f.nhosts = nhosts; /* may be out of range on purpose */
  for (int h = 0; h < nhosts && h < STORE_MAX_HOSTS; h++) {
    pk_of(r->f.hosts[h].pk, 100 + i * 4 + h);
    if (h % 2 == 0) {
      r->f.hosts[h].addr = tu_addr4(10, 0, (uint8_t)i, (uint8_t)h, (uint16_t)(40000 + h));
    } else {
      r->f.hosts[h].addr.family = DHT_AF_INET6;
      memset(r->f.hosts[h].addr.ip, 0x20 + h, 16);
      r->f.hosts[h].addr.port = 65535;
    }
  }
  r->f.fetched_epoch = 19000u + (uint32_t)i;
  r->added_unix_ms = 1700000000000 + i;
}

static void assert_friend_eq(const store_friend_row *a, const store_friend_row *b) {
  assert_string_equal(a->name, b->name);
  assert_memory_equal(a->f.pk, b->f.pk, DHT_PK_LEN);
  assert_int_equal(a->f.nhosts, b->f.nhosts);
  for (int h = 0; h < a->f.nhosts; h++) {
    assert_memory_equal(a->f.hosts[h].pk, b->f.hosts[h].pk, DHT_PK_LEN);
    assert_int_equal(a->f.hosts[h].addr.family, b->f.hosts[h].addr.family);
    assert_memory_equal(a->f.hosts[h].addr.ip, b->f.hosts[h].addr.ip, 16);
    assert_int_equal(a->f.hosts[h].addr.port, b->f.hosts[h].addr.port);
  }
  assert_int_equal(a->f.fetched_epoch, b->f.fetched_epoch);
  assert_int_equal(a->added_unix_ms, b->added_unix_ms);
}

/* ---- roost.db -------------------------------------------------------------- */

static void t_friends(void **state) {
  (void)state;
  char path[128];
  new_path(path, sizeof path, "app");
  store_appdb *a = app_open(path);
  store_friend_row f[4], o, list[8];
  mkfriend(&f[0], "carol", 3, 0);
  mkfriend(&f[1], "alice", 1, STORE_MAX_HOSTS);
  mkfriend(&f[2], "bob", 2, 1);
  for (int i = 0; i < 3; i++)
    assert_int_equal(store_appdb_friend_put(a, &f[i]), 0);
  assert_int_equal(store_appdb_friend_get(a, "alice", NULL, &o), 0);
  assert_friend_eq(&o, &f[1]);
  assert_int_equal(store_appdb_friend_get(a, NULL, f[2].f.pk, &o), 0);
  assert_friend_eq(&o, &f[2]);
  assert_int_equal(store_appdb_friend_get(a, "Alice", NULL, &o), DHT_ERR_NOTFOUND);
  uint8_t pk[DHT_PK_LEN];
  pk_of(pk, 9);
  assert_int_equal(store_appdb_friend_get(a, NULL, pk, &o), DHT_ERR_NOTFOUND);
  /* name order */
  assert_int_equal(store_appdb_friend_list(a, list, 8), 3);
  assert_friend_eq(&list[0], &f[1]);
  assert_friend_eq(&list[1], &f[2]);
  assert_friend_eq(&list[2], &f[0]);
  assert_int_equal(store_appdb_friend_list(a, list, 2), 2);
  /* a name that another pk has: refused, nothing changed */
  mkfriend(&f[3], "bob", 4, 0);
  assert_int_equal(store_appdb_friend_put(a, &f[3]), DHT_ERR_INVAL);
  assert_int_equal(store_appdb_friend_list(a, list, 8), 3);
  /* the same pk: replaced, and renamed */
  mkfriend(&f[2], "bobby", 2, 2);
  assert_int_equal(store_appdb_friend_put(a, &f[2]), 0);
  assert_int_equal(store_appdb_friend_get(a, "bob", NULL, &o), DHT_ERR_NOTFOUND);
  assert_int_equal(store_appdb_friend_get(a, "bobby", NULL, &o), 0);
  assert_friend_eq(&o, &f[2]);
  /* now "bob" is free */
  assert_int_equal(store_appdb_friend_put(a, &f[3]), 0);
  /* bad rows */
  mkfriend(&o, "", 5, 0);
  assert_int_equal(store_appdb_friend_put(a, &o), DHT_ERR_INVAL);
  mkfriend(&o, "x", 5, STORE_MAX_HOSTS + 1);
  assert_int_equal(store_appdb_friend_put(a, &o), DHT_ERR_INVAL);
  memset(o.name, 'n', sizeof o.name); /* no terminator */
  o.f.nhosts = 0;
  assert_int_equal(store_appdb_friend_put(a, &o), DHT_ERR_INVAL);
  /* fetched epoch */
  assert_int_equal(store_appdb_friend_set_fetched(a, f[1].f.pk, 20001), 0);
  assert_int_equal(store_appdb_friend_set_fetched(a, pk, 20001), DHT_ERR_NOTFOUND);
  /* delete */
  assert_int_equal(store_appdb_friend_del(a, f[0].f.pk), 0);
  assert_int_equal(store_appdb_friend_del(a, f[0].f.pk), DHT_ERR_NOTFOUND);
  assert_int_equal(store_appdb_friend_get(a, "carol", NULL, &o), DHT_ERR_NOTFOUND);
  /* all of it after a reopen */
  store_appdb_close(a);
  a = app_open(path);
  assert_int_equal(store_appdb_friend_list(a, list, 8), 3);
  f[1].f.fetched_epoch = 20001;
  assert_friend_eq(&list[0], &f[1]);
  assert_friend_eq(&list[1], &f[3]);
  assert_friend_eq(&list[2], &f[2]);
  store_appdb_close(a);
  store_appdb_close(NULL);
}

static void t_hosted(void **state) {
  (void)state;
  char path[128];
  new_path(path, sizeof path, "app");
  store_appdb *a = app_open(path);
  store_hosted_row r, list[4];
  for (int i = 3; i >= 1; i--) {
    pk_of(r.pk, i);
    r.quota_bytes = 1000 * i;
    assert_int_equal(store_appdb_hosted_put(a, &r), 0);
  }
  pk_of(r.pk, 2);
  r.quota_bytes = 1 << 20;
  assert_int_equal(store_appdb_hosted_put(a, &r), 0); /* replaces */
  assert_int_equal(store_appdb_hosted_list(a, list, 4), 3);
  for (int i = 0; i < 3; i++)
    assert_int_equal(list[i].pk[0], i + 1);
  assert_int_equal(list[0].quota_bytes, 1000);
  assert_int_equal(list[1].quota_bytes, 1 << 20);
  assert_int_equal(store_appdb_hosted_del(a, r.pk), 0);
  assert_int_equal(store_appdb_hosted_del(a, r.pk), DHT_ERR_NOTFOUND);
  assert_int_equal(store_appdb_hosted_list(a, list, 4), 2);
  assert_int_equal(store_appdb_hosted_list(a, list, 1), 1);
  store_appdb_close(a);
}

static void mkout(store_out_row *r, int i, int state) {
  memset(r, 0, sizeof *r);
  memset(r->msg.id, i, STORE_MSGID_LEN);
  r->msg.sent_unix_ms = 1700000000000 + i;
  r->msg.kind = STORE_KIND_TEXT;
  r->msg.len = (uint16_t)(i * 37 % (STORE_TEXT_MAX + 1));
  for (int k = 0; k < r->msg.len; k++)
    r->msg.body[k] = (uint8_t)(k + i);
  pk_of(r->to_pk, i % 3);
  r->state = state;
  r->updated_unix_ms = 5;
}

static void t_outbox(void **state) {
  (void)state;
  char path[128];
  new_path(path, sizeof path, "app");
  store_appdb *a = app_open(path);
  store_out_row r[6], list[8];
  int64_t last = 0;
  for (int i = 0; i < 6; i++) {
    mkout(&r[i], i + 1, STORE_ST_QUEUED);
    r[i].msg.len = (uint16_t)(i == 5 ? STORE_TEXT_MAX : r[i].msg.len);
    assert_int_equal(store_appdb_out_add(a, &r[i]), 0);
    assert_true(r[i].seq > last);
    last = r[i].seq;
  }
  /* a known ID, a bad state, a body too long */
  store_out_row x = r[2];
  assert_int_equal(store_appdb_out_add(a, &x), DHT_ERR_INVAL);
  mkout(&x, 50, 0);
  assert_int_equal(store_appdb_out_add(a, &x), DHT_ERR_INVAL);
  mkout(&x, 51, STORE_ST_QUEUED);
  x.msg.len = STORE_TEXT_MAX + 1;
  assert_int_equal(store_appdb_out_add(a, &x), DHT_ERR_INVAL);

  const uint8_t *id = r[1].msg.id;
  /* queued with a refusal, stored with 3 receipts then 4, delivered */
  assert_int_equal(store_appdb_out_update(a, id, STORE_ST_QUEUED, 0, STORE_ERR_MBOX_FULL, 10), 0);
  assert_int_equal(store_appdb_out_update(a, id, STORE_ST_STORED, 3, 0, 11), 0);
  assert_int_equal(store_appdb_out_update(a, id, STORE_ST_STORED, 4, 0, 12), 0);
  /* backwards: refused, nothing changed */
  assert_int_equal(store_appdb_out_update(a, id, STORE_ST_QUEUED, 5, 0, 13), DHT_ERR_STALE);
  assert_int_equal(store_appdb_out_update(a, id, STORE_ST_STORED, 2, 0, 14), DHT_ERR_STALE);
  assert_int_equal(store_appdb_out_list(a, 0, list, 8), 6);
  assert_int_equal(list[1].state, STORE_ST_STORED);
  assert_int_equal(list[1].receipts, 4);
  assert_int_equal(list[1].updated_unix_ms, 12);
  /* delivered directly (0 receipts): receipts stay, then read */
  assert_int_equal(store_appdb_out_update(a, id, STORE_ST_DELIVERED, 0, 0, 15), 0);
  assert_int_equal(store_appdb_out_update(a, id, STORE_ST_READ, 0, 0, 16), 0);
  assert_int_equal(store_appdb_out_update(a, id, STORE_ST_DELIVERED, 9, 0, 17), DHT_ERR_STALE);
  assert_int_equal(store_appdb_out_update(a, id, 5, 0, 0, 17), DHT_ERR_INVAL);
  uint8_t unknown[STORE_MSGID_LEN] = {0xee};
  assert_int_equal(store_appdb_out_update(a, unknown, STORE_ST_STORED, 3, 0, 17), DHT_ERR_NOTFOUND);
  assert_int_equal(store_appdb_out_update(a, r[3].msg.id, STORE_ST_STORED, 3, 0, 18), 0);

  /* everything in local order, rows intact */
  assert_int_equal(store_appdb_out_list(a, 0, list, 8), 6);
  for (int i = 0; i < 6; i++) {
    assert_int_equal(list[i].seq, r[i].seq);
    assert_memory_equal(list[i].msg.id, r[i].msg.id, STORE_MSGID_LEN);
    assert_int_equal(list[i].msg.sent_unix_ms, r[i].msg.sent_unix_ms);
    assert_int_equal(list[i].msg.kind, r[i].msg.kind);
    assert_int_equal(list[i].msg.len, r[i].msg.len);
    assert_memory_equal(list[i].msg.body, r[i].msg.body, r[i].msg.len);
    assert_memory_equal(list[i].to_pk, r[i].to_pk, DHT_PK_LEN);
  }
  assert_int_equal(list[1].state, STORE_ST_READ);
  assert_int_equal(list[1].receipts, 4);
  /* the retry queue: not yet stored */
  assert_int_equal(store_appdb_out_list(a, STORE_ST_STORED, list, 8), 4);
  int want[] = {0, 2, 4, 5};
  for (int i = 0; i < 4; i++)
    assert_int_equal(list[i].seq, r[want[i]].seq);
  /* the newest `max`, still in local order */
  assert_int_equal(store_appdb_out_list(a, 0, list, 2), 2);
  assert_int_equal(list[0].seq, r[4].seq);
  assert_int_equal(list[1].seq, r[5].seq);
  assert_int_equal(store_appdb_out_list(a, STORE_ST_DELIVERED, list, 2), 2);
  assert_int_equal(list[0].seq, r[4].seq);
  store_appdb_close(a);
  a = app_open(path);
  assert_int_equal(store_appdb_out_list(a, STORE_ST_STORED, list, 8), 4);
  store_appdb_close(a);
}

static void mkin(store_in_row *r, int from, int id, int64_t sent) {
  memset(r, 0, sizeof *r);
  memset(r->msg.id, id, STORE_MSGID_LEN);
  r->msg.sent_unix_ms = sent;
  r->msg.kind = STORE_KIND_TEXT;
  r->msg.len = (uint16_t)(id % 7 * 10);
  memset(r->msg.body, id, r->msg.len);
  pk_of(r->from_pk, from);
  r->received_unix_ms = sent + 1000;
  r->direct = id % 2;
}

static void t_inbox(void **state) {
  (void)state;
  char path[128];
  new_path(path, sizeof path, "app");
  store_appdb *a = app_open(path);
  store_in_row r, list[8];
  bool dup = true;
  /* (from, id, sent): arrival order differs from sent order */
  static const int spec[][3] = {{1, 1, 300}, {1, 2, 100}, {2, 1, 200}, {2, 3, 100}, {1, 4, 50}};
  int64_t seqs[5];
  for (int i = 0; i < 5; i++) {
    mkin(&r, spec[i][0], spec[i][1], spec[i][2]);
    assert_int_equal(store_appdb_in_add(a, &r, &dup), 0);
    assert_false(dup);
    seqs[i] = r.seq;
    if (i)
      assert_true(seqs[i] > seqs[i - 1]);
  }
  /* the same message again (mailbox and direct): a duplicate, first seq */
  mkin(&r, 1, 2, 999);
  assert_int_equal(store_appdb_in_add(a, &r, &dup), 0);
  assert_true(dup);
  assert_int_equal(r.seq, seqs[1]);
  /* (sent time, seq) order */
  int n = store_appdb_in_list(a, 0, false, list, 8);
  assert_int_equal(n, 5);
  static const int order[] = {4, 1, 3, 2, 0};
  for (int i = 0; i < 5; i++) {
    assert_int_equal(list[i].seq, seqs[order[i]]);
    mkin(&r, spec[order[i]][0], spec[order[i]][1], spec[order[i]][2]);
    assert_memory_equal(list[i].msg.id, r.msg.id, STORE_MSGID_LEN);
    assert_memory_equal(list[i].from_pk, r.from_pk, DHT_PK_LEN);
    assert_int_equal(list[i].msg.len, r.msg.len);
    assert_memory_equal(list[i].msg.body, r.msg.body, r.msg.len);
    assert_int_equal(list[i].received_unix_ms, r.received_unix_ms);
    assert_int_equal(list[i].direct, r.direct);
    assert_false(list[i].read);
  }
  /* seq > after_seq, and max */
  assert_int_equal(store_appdb_in_list(a, seqs[2], false, list, 8), 2);
  assert_int_equal(list[0].seq, seqs[4]);
  assert_int_equal(list[1].seq, seqs[3]);
  assert_int_equal(store_appdb_in_list(a, 0, false, list, 2), 2);
  /* mark read */
  assert_int_equal(store_appdb_in_mark_read(a, seqs[1]), 0);
  assert_int_equal(store_appdb_in_mark_read(a, seqs[4] + 100), DHT_ERR_NOTFOUND);
  assert_int_equal(store_appdb_in_list(a, 0, true, list, 8), 4);
  for (int i = 0; i < 4; i++)
    assert_true(list[i].seq != seqs[1]);
  store_appdb_close(a);
  a = app_open(path);
  assert_int_equal(store_appdb_in_list(a, 0, false, list, 8), 5);
  assert_true(list[1].read);
  mkin(&r, 2, 3, 1);
  assert_int_equal(store_appdb_in_add(a, &r, &dup), 0);
  assert_true(dup);
  store_appdb_close(a);
}

static void t_losses(void **state) {
  (void)state;
  char path[128];
  new_path(path, sizeof path, "app");
  store_appdb *a = app_open(path);
  uint8_t p1[DHT_PK_LEN], p2[DHT_PK_LEN];
  pk_of(p1, 1);
  pk_of(p2, 2);
  assert_int_equal(store_appdb_loss_add(a, p1, 100, 3, 1000), 0);
  assert_int_equal(store_appdb_loss_add(a, p2, 100, 1, 1001), 0);
  assert_int_equal(store_appdb_loss_add(a, p1, 101, 2, 1002), 0);
  assert_int_equal(store_appdb_loss_add(a, p1, 100, 2, 1003), 0); /* seen again, fewer */
  assert_int_equal(store_appdb_loss_add(a, p2, 100, 4, 1004), 0); /* seen again, more */
  store_loss_row l[8];
  assert_int_equal(store_appdb_loss_list(a, l, 8), 3);
  assert_memory_equal(l[0].from_pk, p1, DHT_PK_LEN);
  assert_int_equal(l[0].epoch, 100);
  assert_int_equal(l[0].items, 3);
  assert_int_equal(l[0].unix_ms, 1000);
  assert_memory_equal(l[1].from_pk, p2, DHT_PK_LEN);
  assert_int_equal(l[1].items, 4);
  assert_int_equal(l[2].epoch, 101);
  assert_int_equal(l[2].items, 2);
  assert_true(l[0].seq < l[1].seq && l[1].seq < l[2].seq);
  assert_int_equal(store_appdb_loss_list(a, l, 1), 1);
  store_appdb_close(a);
}

/* ---- schema checks, both databases ------------------------------------- */

static uint8_t *slurp(const char *path, long *len) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  *len = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *p = malloc((size_t)*len + 1);
  assert_int_equal(fread(p, 1, (size_t)*len, f), (size_t)*len);
  fclose(f);
  return p;
}

static void spit(const char *path, const uint8_t *p, long len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(p, 1, (size_t)len, f), (size_t)len);
  fclose(f);
}

enum which { W_MBOX, W_APP };

/* Opens path as mailboxes.db or roost.db: the open's result, err filled. */
static int try_open(enum which w, const char *path, char *err, size_t errlen) {
  err[0] = 0;
  if (w == W_MBOX) {
    store_sqlite *sq;
    store_backend be;
    int rc = store_sqlite_open(&sq, &be, path, err, errlen);
    if (rc == 0)
      be.close(be.ctx);
    return rc;
  }
  store_appdb *a;
  int rc = store_appdb_open(&a, path, err, errlen);
  if (rc == 0)
    store_appdb_close(a);
  return rc;
}

/* A real database with enough rows for many pages, closed. */
static void make_db(enum which w, const char *path) {
  if (w == W_MBOX) {
    store_sqlite *sq;
    store_backend be;
    char err[256];
    assert_int_equal(store_sqlite_open(&sq, &be, path, err, sizeof err), 0);
    store_rec r;
    memset(&r, 0, sizeof r);
    r.kind = STORE_REC_ITEM;
    r.len = STORE_ITEM_MAX;
    for (int i = 0; i < 300; i++) {
      r.mbox[0] = (uint8_t)(i % 7);
      memcpy(r.hash, &i, sizeof i);
      memset(r.data, i, r.len);
      r.expires_s = i;
      assert_true(be.put(be.ctx, &r) > 0);
    }
    be.close(be.ctx); /* commits */
  } else {
    store_appdb *a = app_open(path);
    store_in_row r;
    bool dup;
    for (int i = 0; i < 300; i++) {
      mkin(&r, i % 5, i % 250, i);
      r.msg.id[0] = (uint8_t)(i / 250);
      r.msg.len = STORE_TEXT_MAX;
      assert_int_equal(store_appdb_in_add(a, &r, &dup), 0);
      assert_false(dup);
    }
    store_appdb_close(a);
  }
}

/* The open is refused with `want` and leaves the file as it was. */
static void assert_refused(enum which w, const char *path, int want, const char *need1,
                           const char *need2) {
  long n0, n1;
  uint8_t *before = slurp(path, &n0);
  char err[512];
  int rc = try_open(w, path, err, sizeof err);
  print_message("  %s: %d: %s\n", w == W_MBOX ? "mailboxes.db" : "roost.db", rc, err);
  assert_int_equal(rc, want);
  assert_non_null(strstr(err, path));
  if (need1)
    assert_non_null(strstr(err, need1));
  if (need2)
    assert_non_null(strstr(err, need2));
  /* and again: a refusal is stable */
  assert_int_equal(try_open(w, path, err, sizeof err), want);
  uint8_t *after = slurp(path, &n1);
  assert_int_equal(n0, n1);
  assert_memory_equal(before, after, (size_t)n0);
  free(before);
  free(after);
}

static void schema_newer(enum which w) {
  char path[128];
  new_path(path, sizeof path, w == W_MBOX ? "mbox" : "app");
  make_db(w, path);
  long n;
  uint8_t *p = slurp(path, &n);
  assert_true(n > 100);
  /* the header's user_version: 4 bytes big-endian at offset 60 */
  assert_int_equal(p[60] << 24 | p[61] << 16 | p[62] << 8 | p[63], STORE_SQLITE_SCHEMA);
  uint32_t v = STORE_SQLITE_SCHEMA + 1;
  p[60] = (uint8_t)(v >> 24);
  p[61] = (uint8_t)(v >> 16);
  p[62] = (uint8_t)(v >> 8);
  p[63] = (uint8_t)v;
  spit(path, p, n);
  free(p);
  char v1[16], v2[16];
  snprintf(v1, sizeof v1, "%d", STORE_SQLITE_SCHEMA + 1);
  snprintf(v2, sizeof v2, "%d", STORE_SQLITE_SCHEMA);
  assert_refused(w, path, STORE_ERR_DB_NEWER, v1, v2);
}

static void schema_garbage(enum which w) {
  char path[128];
  new_path(path, sizeof path, w == W_MBOX ? "mbox" : "app");
  tu_rng rng;
  tu_rng_init(&rng, g_seed, 3);
  uint8_t junk[8192];
  tu_rng_bytes(&rng, junk, sizeof junk);
  spit(path, junk, sizeof junk);
  assert_refused(w, path, STORE_ERR_DB_CORRUPT, NULL, NULL);
  /* text that starts like a database but is not one */
  memcpy(junk, "SQLite format 3", 16);
  spit(path, junk, sizeof junk);
  assert_refused(w, path, STORE_ERR_DB_CORRUPT, NULL, NULL);
}

static void schema_truncated(enum which w) {
  char path[128];
  new_path(path, sizeof path, w == W_MBOX ? "mbox" : "app");
  make_db(w, path);
  long n;
  uint8_t *p = slurp(path, &n);
  assert_true(n >= 64 * 1024);
  /* the real thing opens */
  char err[256];
  assert_int_equal(try_open(w, path, err, sizeof err), 0);
  spit(path, p, n / 2);
  assert_refused(w, path, STORE_ERR_DB_CORRUPT, NULL, NULL);
  /* full length, one page in the middle overwritten: only quick_check
   * reads it */
  memset(p + (n / 2 / 4096) * 4096, 0x5a, 4096);
  spit(path, p, n);
  free(p);
  assert_refused(w, path, STORE_ERR_DB_CORRUPT, "quick_check", NULL);
}

static void t_schema_newer_mbox(void **s) {
  (void)s;
  schema_newer(W_MBOX);
}
static void t_schema_newer_app(void **s) {
  (void)s;
  schema_newer(W_APP);
}
static void t_schema_garbage_mbox(void **s) {
  (void)s;
  schema_garbage(W_MBOX);
}
static void t_schema_garbage_app(void **s) {
  (void)s;
  schema_garbage(W_APP);
}
static void t_schema_truncated_mbox(void **s) {
  (void)s;
  schema_truncated(W_MBOX);
}
static void t_schema_truncated_app(void **s) {
  (void)s;
  schema_truncated(W_APP);
}

/* An empty file is a new database; a mailboxes.db is not a roost.db. */
static void t_schema_empty_and_crossed(void **s) {
  (void)s;
  char path[128], err[256];
  new_path(path, sizeof path, "empty");
  spit(path, (const uint8_t *)"", 0);
  assert_int_equal(try_open(W_APP, path, err, sizeof err), 0);
  assert_int_equal(try_open(W_APP, path, err, sizeof err), 0);
  new_path(path, sizeof path, "crossed");
  make_db(W_MBOX, path);
  /* roost.db's statements do not fit mailboxes.db's tables */
  assert_int_equal(try_open(W_APP, path, err, sizeof err), STORE_ERR_DB);
  assert_non_null(strstr(err, path));
}

int main(void) {
  g_seed = tu_seed("test_store_appdb");
  snprintf(g_dir, sizeof g_dir, "/tmp/roost-test-appdb-XXXXXX");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(t_friends),
      cmocka_unit_test(t_hosted),
      cmocka_unit_test(t_outbox),
      cmocka_unit_test(t_inbox),
      cmocka_unit_test(t_losses),
      cmocka_unit_test(t_schema_newer_mbox),
      cmocka_unit_test(t_schema_newer_app),
      cmocka_unit_test(t_schema_garbage_mbox),
      cmocka_unit_test(t_schema_garbage_app),
      cmocka_unit_test(t_schema_truncated_mbox),
      cmocka_unit_test(t_schema_truncated_app),
      cmocka_unit_test(t_schema_empty_and_crossed),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0)
    rc = 1;
  return rc;
}

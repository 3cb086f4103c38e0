/*
 * bench_store.c - deposits per second committed durably through the SQLite
 * mailbox backend (store_sqlite.h): batched commits on a worker thread, the
 * way roostd drives it (put on the loop thread, commit_run on the thread
 * pool, commit_end back on the loop), against one commit per deposit.
 *
 *   bench_store [deposits [dir]]     default 20000 deposits of 1000 bytes,
 *                                    in a fresh mkdtemp directory under /tmp
 *
 * Prints figures only; nothing passes or fails on time.  /tmp on tmpfs makes
 * fsync free: give a directory on a real disk for meaningful numbers.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_sqlite.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void mkrec(store_rec *r, int i) {
  memset(r, 0, sizeof *r);
  memcpy(r->mbox, &i, sizeof i); /* many mailboxes */
  r->mbox[31] = (uint8_t)(i % 64);
  memcpy(r->hash, &i, sizeof i);
  r->kind = STORE_REC_ITEM;
  r->expires_s = 1700000000 + i;
  r->len = STORE_ITEM_MAX;
  for (int k = 0; k < r->len; k++)
    r->data[k] = (uint8_t)(k * 31 + i);
}

static store_sqlite *open_db(const char *dir, const char *name, store_backend *be) {
  char path[512], err[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  store_sqlite *sq;
  if (store_sqlite_open(&sq, be, path, err, sizeof err) != 0) {
    fprintf(stderr, "bench_store: %s\n", err);
    exit(1);
  }
  return sq;
}

/* One commit per deposit: put, then begin/run/end before the next. */
static double run_each(const char *dir, int n) {
  store_backend be;
  store_sqlite *sq = open_db(dir, "each.db", &be);
  store_rec r;
  double t0 = now_s();
  for (int i = 0; i < n; i++) {
    mkrec(&r, i);
    int64_t seq = be.put(be.ctx, &r);
    if (seq <= 0 || !store_sqlite_commit_begin(sq) || store_sqlite_commit_run(sq) != 0 ||
        store_sqlite_commit_end(sq) != seq) {
      fprintf(stderr, "bench_store: commit failed\n");
      exit(1);
    }
  }
  double dt = now_s() - t0;
  be.close(be.ctx);
  return dt;
}

/* The batched driver: this thread is the loop, one worker commits. */
typedef struct worker {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  store_sqlite *sq;
  bool go, done, quit;
  int rc;
} worker;

static void *worker_main(void *arg) {
  worker *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->go && !w->quit)
      pthread_cond_wait(&w->cv, &w->mu);
    if (w->quit)
      break;
    w->go = false;
    pthread_mutex_unlock(&w->mu);
    int rc = store_sqlite_commit_run(w->sq);
    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    w->done = true;
    pthread_cond_broadcast(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

static double run_batched(const char *dir, int n, int *batches, int *max_batch) {
  store_backend be;
  store_sqlite *sq = open_db(dir, "batched.db", &be);
  worker w;
  memset(&w, 0, sizeof w);
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  w.sq = sq;
  pthread_t th;
  pthread_create(&th, NULL, worker_main, &w);
  store_rec r;
  int64_t last = 0, durable = 0;
  bool in_flight = false;
  *batches = *max_batch = 0;
  double t0 = now_s();
  int i = 0;
  while (durable < last || i < n) {
    /* the loop: take in a deposit when there is one */
    if (i < n) {
      mkrec(&r, i++);
      last = be.put(be.ctx, &r);
      if (last <= 0) {
        fprintf(stderr, "bench_store: put failed\n");
        exit(1);
      }
    }
    pthread_mutex_lock(&w.mu);
    if (in_flight && i == n && !w.done) /* nothing else to do: wait */
      while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    bool finished = in_flight && w.done;
    if (finished)
      w.done = false;
    int rc = w.rc;
    pthread_mutex_unlock(&w.mu);
    if (finished) {
      if (rc != 0) {
        fprintf(stderr, "bench_store: batch failed\n");
        exit(1);
      }
      durable = store_sqlite_commit_end(sq);
      in_flight = false;
    }
    if (!in_flight) {
      int pending = store_sqlite_pending(sq);
      if (store_sqlite_commit_begin(sq)) {
        (*batches)++;
        if (pending > *max_batch)
          *max_batch = pending;
        pthread_mutex_lock(&w.mu);
        w.go = true;
        pthread_cond_broadcast(&w.cv);
        pthread_mutex_unlock(&w.mu);
        in_flight = true;
      }
    }
  }
  double dt = now_s() - t0;
  pthread_mutex_lock(&w.mu);
  w.quit = true;
  pthread_cond_broadcast(&w.cv);
  pthread_mutex_unlock(&w.mu);
  pthread_join(th, NULL);
  pthread_mutex_destroy(&w.mu);
  pthread_cond_destroy(&w.cv);
  be.close(be.ctx);
  return dt;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 20000;
  char tmp[] = "/tmp/roost-bench-store-XXXXXX";
  const char *dir = argc > 2 ? argv[2] : NULL;
  if (n <= 0) {
    fprintf(stderr, "usage: bench_store [deposits [dir]]\n");
    return 2;
  }
  if (!dir) {
    if (!mkdtemp(tmp)) {
      perror("mkdtemp");
      return 1;
    }
    dir = tmp;
  }
  printf("bench_store: %d deposits of %d bytes, synchronous=FULL, WAL, in %s\n", n, STORE_ITEM_MAX,
         dir);
  int batches, max_batch;
  double tb = run_batched(dir, n, &batches, &max_batch);
  printf("batched (worker thread): %8.0f deposits/s durable  (%.3f s, %d commits, "
         "%.1f deposits per commit on average, largest %d)\n",
         n / tb, tb, batches, (double)n / batches, max_batch);
  double te = run_each(dir, n);
  printf("one commit per deposit:  %8.0f deposits/s durable  (%.3f s, %d commits)\n", n / te, te,
         n);
  printf("batched / per-deposit:   %8.1fx\n", te / tb);
  if (dir == tmp) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
      return 1;
  }
  return 0;
}

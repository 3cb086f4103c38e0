/*
 * bench_deposit.c - durable mailbox deposits per second through one running
 * roostd over real UDP (loopback), and the time from sending a DEPOSIT to
 * holding its verified storage RECEIPT.  It prints figures; it never fails
 * on time.  The exit status is 0 unless something is functionally broken
 * (not one deposit accepted).
 *
 * What it does (docs/mailbox.md is the protocol, docs/benchmarks.md the
 * figures):
 *
 * - C client identities (Ed25519 keys).  Deposits are service messages
 *   (type 0x30) inside the engine's authenticated envelope: no cookie is
 *   needed.  Each client first makes one warm-up deposit, so that the target
 *   has computed its shared key before the timed run.
 * - Every deposit goes to a fresh random mailbox key pair (mailbox ID =
 *   BLAKE2b-256(mailbox public key)), so per-mailbox quotas never bind;
 *   --per-mailbox M puts M deposits in each mailbox instead (quota 64 by
 *   default).  The item is random bytes of one of the padded sizes (1000 by
 *   default; a storage node cannot open items, so a real sealed item is not
 *   needed), deposited_s = the wall clock when it was built, signed with the
 *   mailbox key (store_deposit_sign).
 * - Deposits are built and sealed before the timed run (a key pair, an
 *   Ed25519 signature and a box each), so the run itself only sends.
 * - The run keeps W deposits in flight (closed loop, one connected socket,
 *   sendmmsg/recvmmsg in batches) until N were sent or S seconds passed,
 *   then waits for the stragglers (at most LOSS_TIMEOUT: a deposit without
 *   an answer by then is lost).
 * - A deposit counts as accepted only when its RECEIPT has status 0, names
 *   the item's hash, and its signature verifies with store_receipt_verify
 *   against the target's key.  roostd sends that receipt only after the
 *   SQLite batch holding the deposit was committed (synchronous=FULL, so
 *   after fsync) on its thread pool: the latency includes waiting for the
 *   disk, which is the point.  Latency is from the send to the arrival of
 *   the receipt (the receipt's verification follows at once, ~50 us).
 * - Printed: accepted deposits/s, latency (mean, p50, p99, max), refusals
 *   by status, lost, bad receipts, kernel drops, the generator's CPU and,
 *   given --target-pid, the target's CPU time per accepted deposit (all its
 *   threads, and the event-loop thread alone), how long it waited for a CPU,
 *   and what it wrote to the disk (/proc/PID/io, when readable).  The last
 *   line is "RESULT key=value ..." for scripts.
 *
 * Usage: bench_deposit --target ID@127.0.0.1:PORT [--deposits N]
 *          [--seconds S] [--clients C] [--window W] [--per-mailbox M]
 *          [--item-size 168|296|552|1000] [--tick US] [--target-pid PID]
 * The target should run with --rate-limit 0 (all clients share one source
 * address) and a --mailbox-capacity above N x item size.
 * scripts/bench-deposit.sh starts roostd nodes and runs this against one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "bench_util.h"
#include "dht_int.h"
#include "store.h"
#include "store_wire.h"

#define BATCH BU_BATCH                   /* datagrams per sendmmsg / recvmmsg */
#define STRIDE DHT_MAX_PKT               /* bytes per pre-built deposit datagram */
#define PREBUILD_MAX ((size_t)512 << 20) /* pre-built deposits: at most this much memory */
#define MAX_DEPOSITS ((long)(PREBUILD_MAX / STRIDE))
#define TXID_RUN 0x40000000u          /* txid of timed deposit i: TXID_RUN + i */
#define TXID_WARM 0x20000000u         /* txid of client c's warm-up deposit */
#define LOSS_TIMEOUT_NS 5000000000ull /* no answer after this: lost */
#define RECV_BUF (8 << 20)
#define NSTATUS 8 /* statuses 0..7 (docs/mailbox.md); 8: anything else */

/* lat[] values besides a latency in ns */
#define PENDING 0u
#define LOST UINT32_MAX
#define REFUSED (UINT32_MAX - 1)
#define BAD (UINT32_MAX - 2)
#define LAT_MAX (UINT32_MAX - 3)

static const char *const status_name[NSTATUS + 1] = {
    "ok",      "mailbox full", "node full", "bad signature", "time outside the window",
    "too big", "refused",      "not found", "unknown status"};

/* ---- helpers (the rest are in bench_util.c) ---------------------------- */

/* Bytes a process caused to be written to storage and its write system
 * calls (/proc/PID/io).  False when unreadable. */
static bool proc_io(const char *pid, long long *write_bytes, long long *syscw) {
  char path[64], line[128];
  snprintf(path, sizeof path, "/proc/%s/io", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return false;
  int got = 0;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "write_bytes: %lld", write_bytes) == 1)
      got |= 1;
    else if (sscanf(line, "syscw: %lld", syscw) == 1)
      got |= 2;
  }
  fclose(f);
  return got == 3;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* ---- clients and deposits ----------------------------------------------- */

typedef bu_client client;

/* What checking a deposit's receipt needs. */
typedef struct dep_meta {
  uint8_t mbox[STORE_MBOX_LEN];
  uint8_t hash[STORE_HASH_LEN];
} dep_meta;

typedef struct bench {
  int fd;
  struct sockaddr_in target_sa;
  uint8_t target_pk[DHT_PK_LEN];
  int nclients;
  client *cl;
  long per_mbox;      /* deposits per mailbox */
  size_t item_len;    /* 168, 296, 552 or 1000 */
  store_mbox_keys mk; /* the current mailbox */
  long mk_used;       /* deposits made into it */
  long mailboxes;     /* mailbox key pairs made */
} bench;

/* Builds and seals one DEPOSIT from client c into out (>= STRIDE bytes):
 * [0x30, txid, flags 0, mbox, mbox_pk, deposited_s, item, sig].  Returns the
 * datagram length; fills *meta. */
static size_t build_deposit(bench *b, int c, uint32_t txid, uint8_t *out, dep_meta *meta) {
  if (b->mk_used == 0 || b->mk_used >= b->per_mbox) {
    memset(&b->mk, 0, sizeof b->mk);
    crypto_sign_keypair(b->mk.pk, b->mk.sk);
    crypto_generichash(b->mk.id, STORE_MBOX_LEN, b->mk.pk, DHT_PK_LEN, NULL, 0);
    b->mk_used = 0;
    b->mailboxes++;
  }
  b->mk_used++;
  uint8_t item[STORE_ITEM_MAX], sig[DHT_SIG_LEN];
  randombytes_buf(item, b->item_len);
  uint64_t dep_s = (uint64_t)time(NULL);
  store_deposit_sign(sig, &b->mk, dep_s, item, b->item_len);
  store_item_hash(meta->hash, item, b->item_len);
  memcpy(meta->mbox, b->mk.id, STORE_MBOX_LEN);

  uint8_t body[DHT_MAX_BODY];
  /* flags 0: a plain deposit (not pushed, not hosted, not a request) */
  store_wire_msg m = {.type = STORE_T_DEPOSIT, .txid = txid};
  m.u.deposit.mbox = b->mk.id;
  m.u.deposit.mbox_pk = b->mk.pk;
  m.u.deposit.deposited_s = dep_s;
  m.u.deposit.item = item;
  m.u.deposit.item_len = (size_t)b->item_len;
  m.u.deposit.sig = sig;
  dht_ssize blen = store_wire_encode(body, sizeof body, &m);
  if (blen < 0)
    bu_die("encoding a DEPOSIT: %s", dht_strerror((int)blen));
  client *k = &b->cl[c];
  dht_ssize len = bu_client_seal(k, b->target_pk, body, (size_t)blen, out, STRIDE);
  if (len < 0)
    bu_die("sealing a DEPOSIT: %s", dht_strerror((int)len));
  return (size_t)len;
}

/* A decoded RECEIPT [0x31, txid, status, hash(16), sig(0|64)]; hash and sig
 * point into body. */
typedef struct receipt {
  uint32_t txid;
  uint64_t status;
  const uint8_t *hash, *sig; /* sig NULL: a refusal */
  uint8_t body[DHT_MAX_PKT];
} receipt;

/* Opens a datagram with client c's key and decodes it as a RECEIPT.
 * 0: *rc holds it; 1: not this client's key; 2: opens but is not a
 * well-formed RECEIPT. */
static int open_receipt(const bench *b, int c, const uint8_t *pkt, size_t len, receipt *rc) {
  dht_ssize n = dht_box_open(b->cl[c].key, pkt, len, rc->body, sizeof rc->body);
  if (n < 0)
    return 1;
  store_wire_msg m;
  if (store_wire_decode(&m, rc->body, (size_t)n) || m.type != STORE_T_RECEIPT)
    return 2;
  rc->txid = m.txid;
  rc->status = m.u.receipt.status;
  rc->hash = m.u.receipt.hash;
  rc->sig = m.u.receipt.sig;
  return 0;
}

/* Status 0, our item's hash, and the target's signature over (mailbox,
 * hash). */
static bool receipt_ok(const bench *b, const receipt *rc, const dep_meta *m) {
  return rc->status == STORE_W_OK && rc->sig && memcmp(rc->hash, m->hash, STORE_HASH_LEN) == 0 &&
         store_receipt_verify(rc->sig, b->target_pk, m->mbox, rc->hash);
}

/* ---- the run ------------------------------------------------------------- */

typedef struct run {
  long n;            /* deposits to send at most */
  uint8_t *pre;      /* pre-built datagrams, STRIDE apart */
  uint16_t *pre_len; /* their lengths */
  dep_meta *meta;    /* per deposit: mailbox and item hash */
  uint64_t *sent_at; /* per deposit: send time (ns since t0) */
  uint32_t *lat;     /* per deposit: PENDING, LOST, REFUSED, BAD, else latency in ns */
  long sent, done, accepted, lost, bad, late, dup, bad_crypto, bad_msg, other;
  long refused[NSTATUS + 1];
  long key_tries;
  long n_send, n_recv, n_poll;
  long cursor; /* the deposit after the last one answered */
  uint64_t t0, t_last;
} run;

static void on_datagram(bench *b, run *r, const uint8_t *pkt, size_t len, uint64_t now) {
  if (!bu_from_target(b->target_pk, pkt, len)) {
    r->other++;
    return;
  }
  /* the receipt is sealed for one client, and only opening tells which:
   * try the client of the deposit after the last one answered first */
  receipt rc;
  int c = -1, rv = 1;
  for (int t = 0; t < b->nclients && rv == 1; t++) {
    c = (int)((r->cursor + t) % b->nclients);
    rv = open_receipt(b, c, pkt, len, &rc);
    r->key_tries++;
  }
  if (rv == 1) {
    r->bad_crypto++;
    return;
  }
  long seq = (long)rc.txid - (long)TXID_RUN;
  if (rv == 2 || seq < 0 || seq >= r->sent || seq % b->nclients != c) {
    if (rv == 0 && rc.txid >= TXID_WARM && rc.txid < TXID_WARM + (uint32_t)b->nclients)
      r->other++; /* a late answer to a warm-up deposit */
    else
      r->bad_msg++;
    return;
  }
  r->cursor = seq + 1;
  if (r->lat[seq] == LOST) {
    r->late++;
    return;
  }
  if (r->lat[seq] != PENDING) {
    r->dup++;
    return;
  }
  r->done++;
  if (rc.status != 0) {
    r->refused[rc.status < NSTATUS ? rc.status : NSTATUS]++;
    r->lat[seq] = REFUSED;
    return;
  }
  if (!receipt_ok(b, &rc, &r->meta[seq])) {
    r->bad++;
    r->lat[seq] = BAD;
    return;
  }
  uint64_t d = now - r->t0 - r->sent_at[seq];
  r->lat[seq] = d == 0 ? 1 : d > LAT_MAX ? LAT_MAX : (uint32_t)d;
  r->accepted++;
  r->t_last = now;
}

static void do_run(bench *b, run *r, int window, double seconds, long tick_us) {
  bu_mbatch sb, rb;
  bu_mbatch_init(&sb, NULL);
  bu_mbatch_init(&rb, NULL);
  const struct timespec tick = {0, tick_us * 1000};
  long oldest = 0; /* every deposit before it is answered or lost */
  long last_acc = 0;
  int sec = 0;
  bool send_blocked = false;
  r->t0 = bu_now_ns();
  uint64_t stop_sending = r->t0 + (uint64_t)(seconds * 1e9);
  uint64_t hard_end = stop_sending + LOSS_TIMEOUT_NS + 100000000ull;
  for (;;) {
    int n, got = 0;
    do {
      n = bu_recv_batch(b->fd, &rb, true);
      if (n)
        r->n_recv++;
      uint64_t t = bu_now_ns();
      for (int j = 0; j < n; j++)
        on_datagram(b, r, rb.buf[j], rb.h[j].msg_len, t);
      got += n;
    } while (n == BATCH);
    uint64_t now = bu_now_ns();
    while (oldest < r->sent &&
           (r->lat[oldest] != PENDING || now - r->t0 - r->sent_at[oldest] > LOSS_TIMEOUT_NS)) {
      if (r->lat[oldest] == PENDING) {
        r->lat[oldest] = LOST;
        r->lost++;
        r->done++;
      }
      oldest++;
    }
    if (now - r->t0 >= (uint64_t)(sec + 1) * 1000000000ull) {
      sec++;
      long ref = 0;
      for (int i = 0; i <= NSTATUS; i++)
        ref += r->refused[i];
      printf("  %2d s: %7ld accepted/s, %ld refused so far, %ld in flight\n", sec,
             r->accepted - last_acc, ref, r->sent - r->done);
      fflush(stdout);
      last_acc = r->accepted;
    }
    bool sending = r->sent < r->n && now < stop_sending;
    if (got > 0)
      send_blocked = false;
    while (sending && !send_blocked) {
      long k = window - (r->sent - r->done);
      if (k > BATCH)
        k = BATCH;
      if (k > r->n - r->sent)
        k = r->n - r->sent;
      if (k <= 0)
        break;
      for (int i = 0; i < k; i++) {
        long seq = r->sent + i;
        sb.iov[i].iov_base = r->pre + (size_t)seq * STRIDE;
        sb.iov[i].iov_len = r->pre_len[seq];
      }
      uint64_t ts = bu_now_ns() - r->t0;
      int sent = bu_send_batch(b->fd, sb.h, (int)k, true);
      r->n_send++;
      for (int i = 0; i < sent; i++)
        r->sent_at[r->sent + i] = ts;
      r->sent += sent;
      if (sent < k)
        send_blocked = true;
    }
    long inflight = r->sent - r->done;
    if ((!sending && inflight == 0) || now >= hard_end)
      break;
    if (tick_us > 0 && inflight > 0 && !send_blocked) {
      nanosleep(&tick, NULL);
      r->n_poll++;
    } else if (got == 0 || send_blocked) {
      struct pollfd p = {.fd = b->fd, .events = POLLIN | (send_blocked ? POLLOUT : 0)};
      int pr = poll(&p, 1, 1);
      r->n_poll++;
      if (pr > 0 && (p.revents & POLLOUT))
        send_blocked = false;
    }
  }
  for (long s = oldest; s < r->sent; s++)
    if (r->lat[s] == PENDING) {
      r->lat[s] = LOST;
      r->lost++;
      r->done++;
    }
  free(sb.buf);
  free(rb.buf);
}

/* One deposit per client before the run, so that the target has every
 * client's shared key cached.  Returns how many were accepted; keeps one
 * receipt datagram (and its client and deposit) for the cost loop. */
static int warm_up(bench *b, uint8_t *sample, size_t *sample_len, int *sample_client,
                   dep_meta *sample_meta, double *first_ms) {
  uint8_t *pkts = bu_xcalloc((size_t)b->nclients, STRIDE);
  dep_meta *meta = bu_xcalloc((size_t)b->nclients, sizeof *meta);
  bool *ok = bu_xcalloc((size_t)b->nclients, sizeof *ok);
  bu_mbatch sb, rb;
  bu_mbatch_init(&sb, NULL);
  bu_mbatch_init(&rb, NULL);
  int i = 0;
  for (int c = 0; c < b->nclients; c++) {
    size_t len = build_deposit(b, c, TXID_WARM + (uint32_t)c, pkts + (size_t)c * STRIDE, &meta[c]);
    sb.iov[i].iov_base = pkts + (size_t)c * STRIDE;
    sb.iov[i].iov_len = len;
    if (++i == BATCH || c == b->nclients - 1) {
      bu_send_all(b->fd, sb.h, i, true);
      i = 0;
    }
  }
  uint64_t t0 = bu_now_ns(), until = t0 + 3000000000ull;
  int have = 0, refused = 0;
  *sample_len = 0;
  *first_ms = -1;
  while (have + refused < b->nclients && bu_now_ns() < until) {
    int n = bu_recv_batch(b->fd, &rb, true);
    if (n == 0) {
      poll(&(struct pollfd){.fd = b->fd, .events = POLLIN}, 1, 10);
      continue;
    }
    for (int j = 0; j < n; j++) {
      const uint8_t *pkt = rb.buf[j];
      size_t len = rb.h[j].msg_len;
      if (!bu_from_target(b->target_pk, pkt, len))
        continue;
      receipt rc;
      for (int c = 0; c < b->nclients; c++) {
        int rv = open_receipt(b, c, pkt, len, &rc);
        if (rv == 1)
          continue;
        if (rv != 0 || rc.txid != TXID_WARM + (uint32_t)c || ok[c])
          break;
        ok[c] = true;
        if (!receipt_ok(b, &rc, &meta[c])) {
          refused++;
          if (rc.status != 0)
            printf("  warm-up deposit of client %d refused: status %llu (%s)\n", c,
                   (unsigned long long)rc.status,
                   status_name[rc.status < NSTATUS ? rc.status : NSTATUS]);
          else
            printf("  warm-up receipt of client %d does not verify\n", c);
          break;
        }
        if (*first_ms < 0)
          *first_ms = (double)(bu_now_ns() - t0) / 1e6;
        have++;
        if (*sample_len == 0) {
          memcpy(sample, pkt, len);
          *sample_len = len;
          *sample_client = c;
          *sample_meta = meta[c];
        }
        break;
      }
    }
  }
  printf("warm-up: %d of %d clients' deposits accepted with a verified receipt in %.0f ms\n", have,
         b->nclients, (double)(bu_now_ns() - t0) / 1e6);
  free(sb.buf);
  free(rb.buf);
  free(pkts);
  free(meta);
  free(ok);
  return have;
}

/* ---- main --------------------------------------------------------------- */

static void usage(void) {
  printf("usage: bench_deposit --target ID@127.0.0.1:PORT [--deposits N] [--seconds S]\n"
         "                     [--clients C] [--window W] [--per-mailbox M] [--item-size B]\n"
         "                     [--tick US] [--target-pid PID]\n"
         "  --deposits N     deposits to send at most (60000; all built before the run)\n"
         "  --seconds S      send for at most S seconds (10)\n"
         "  --clients C      client identities (16)\n"
         "  --window W       deposits in flight (256; roostd holds at most 1024 receipts\n"
         "                   waiting for a commit)\n"
         "  --per-mailbox M  deposits per random mailbox (1: a fresh mailbox each)\n"
         "  --item-size B    168, 296, 552 or 1000 (1000)\n"
         "  --tick US        pause between rounds (0 = wait in poll for the next datagram)\n"
         "  --target-pid PID print the target's CPU time and disk writes per deposit\n"
         "Run the target with --rate-limit 0 and --mailbox-capacity above N x B.\n");
}

int main(int argc, char **argv) {
  bu_die_prefix = "bench_deposit: ";
  const char *target = NULL, *tpid = NULL;
  long ndep = 60000, seconds = 10, nclients = 16, window = 256, per_mbox = 1, item = 1000,
       tick_us = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage();
      return 0;
    }
    if (i + 1 >= argc) {
      usage();
      bu_die("%s needs a value", a);
    }
    const char *v = argv[++i];
    if (!strcmp(a, "--target"))
      target = v;
    else if (!strcmp(a, "--deposits"))
      ndep = bu_parse_long(a, v, 1, MAX_DEPOSITS);
    else if (!strcmp(a, "--seconds"))
      seconds = bu_parse_long(a, v, 1, 3600);
    else if (!strcmp(a, "--clients"))
      nclients = bu_parse_long(a, v, 1, 1024);
    else if (!strcmp(a, "--window"))
      window = bu_parse_long(a, v, 1, 65536);
    else if (!strcmp(a, "--per-mailbox"))
      per_mbox = bu_parse_long(a, v, 1, 1000000);
    else if (!strcmp(a, "--item-size")) {
      item = bu_parse_long(a, v, 168, 1000);
      if (item != 168 && item != 296 && item != 552 && item != 1000)
        bu_die("--item-size wants 168, 296, 552 or 1000 (the padded sizes), not %ld", item);
    } else if (!strcmp(a, "--tick"))
      tick_us = bu_parse_long(a, v, 0, 100000);
    else if (!strcmp(a, "--target-pid"))
      tpid = (bu_parse_long(a, v, 1, INT32_MAX), v);
    else {
      usage();
      bu_die("unknown option %s", a);
    }
  }
  if (!target) {
    usage();
    bu_die("--target is required");
  }
  if (sodium_init() < 0)
    bu_die("sodium_init failed");

  bench b;
  memset(&b, 0, sizeof b);
  bu_parse_target(target, b.target_pk, &b.target_sa);
  b.nclients = (int)nclients;
  b.per_mbox = per_mbox;
  b.item_len = (size_t)item;
  b.cl = bu_xcalloc((size_t)nclients, sizeof *b.cl);
  for (int c = 0; c < b.nclients; c++)
    bu_client_init(&b.cl[c], b.target_pk);
  b.fd = bu_udp_socket(RECV_BUF);
  /* connected: the kernel keeps the route, and sendmmsg takes no address */
  if (connect(b.fd, (const struct sockaddr *)&b.target_sa, sizeof b.target_sa) != 0)
    bu_die("connect: %s", strerror(errno));
  int rcv = 0;
  socklen_t rl = sizeof rcv;
  getsockopt(b.fd, SOL_SOCKET, SO_RCVBUF, &rcv, &rl);

  char tbuf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &b.target_sa.sin_addr, tbuf, sizeof tbuf);
  printf("bench_deposit: DEPOSIT load on %s:%u: up to %ld deposits or %ld s, %ld client "
         "identities, %ld in flight, %ld-byte items, %s\n",
         tbuf, ntohs(b.target_sa.sin_port), ndep, seconds, nclients, window, item,
         per_mbox == 1 ? "a fresh mailbox key pair per deposit" : "several deposits per mailbox");
  if (per_mbox > 1)
    printf("  %ld deposits per mailbox (the default per-mailbox quota is 64 items, 64 KiB)\n",
           per_mbox);
  if (window > 1000)
    printf("  WARNING: roostd keeps at most 1024 receipts waiting for a commit (and queues at "
           "most --send-queue datagrams): a window above that loses receipts\n");
  printf("generator: one connected UDP socket (receive buffer %d KiB), recvmmsg/sendmmsg in "
         "batches of up to %d, %s\n",
         rcv / 2048, BATCH, tick_us > 0 ? "a fixed tick between rounds" : "poll between rounds");

  /* 1. warm-up: every client's key reaches the target's cache */
  uint8_t sample[2048];
  size_t sample_len = 0;
  int sample_client = 0;
  dep_meta sample_meta;
  double first_ms;
  int have = warm_up(&b, sample, &sample_len, &sample_client, &sample_meta, &first_ms);
  if (have == 0)
    bu_die("the target accepted none of %d warm-up deposits (is it running at %s:%u, with "
           "--rate-limit 0 and mailbox capacity?)",
           b.nclients, tbuf, ntohs(b.target_sa.sin_port));
  printf("  first verified receipt after %.1f ms (includes the target computing our shared "
         "keys and one batch commit)\n",
         first_ms);

  /* 2. pre-build */
  run r;
  memset(&r, 0, sizeof r);
  r.n = ndep;
  r.sent_at = bu_xcalloc((size_t)ndep, sizeof *r.sent_at);
  r.lat = bu_xcalloc((size_t)ndep, sizeof *r.lat);
  r.meta = bu_xcalloc((size_t)ndep, sizeof *r.meta);
  r.pre_len = bu_xcalloc((size_t)ndep, sizeof *r.pre_len);
  r.pre = malloc((size_t)ndep * STRIDE);
  if (!r.pre)
    bu_die("out of memory for %ld pre-built deposits", ndep);
  uint64_t w0 = bu_now_ns(), c0 = bu_cpu_ns();
  long mb0 = b.mailboxes;
  b.mk_used = 0; /* the run starts with a fresh mailbox */
  for (long s = 0; s < ndep; s++)
    r.pre_len[s] = (uint16_t)build_deposit(&b, (int)(s % b.nclients), TXID_RUN + (uint32_t)s,
                                           r.pre + (size_t)s * STRIDE, &r.meta[s]);
  double build_ns = (double)(bu_cpu_ns() - c0) / (double)ndep;
  printf("pre-built %ld deposit datagrams (%u bytes each, %ld mailboxes) in %.2f s: %.1f us CPU "
         "each (key pair, signature, hash, box)\n",
         ndep, r.pre_len[0], b.mailboxes - mb0, (double)(bu_now_ns() - w0) / 1e9, build_ns / 1e3);

  /* the generator's cost of checking one receipt: open, decode, verify */
  {
    receipt rc;
    int reps = 0;
    uint64_t cc = bu_cpu_ns(), dl = bu_now_ns() + 300000000ull;
    while (reps < 5000 && bu_now_ns() < dl) {
      if (open_receipt(&b, sample_client, sample, sample_len, &rc) != 0 ||
          !receipt_ok(&b, &rc, &sample_meta))
        bu_die("the sample receipt no longer checks");
      reps++;
    }
    printf("generator: checking one receipt (open, decode, Ed25519 verify) costs %.1f us CPU\n",
           (double)(bu_cpu_ns() - cc) / reps / 1e3);
  }

  /* 3. the run */
  printf("run:\n");
  fflush(stdout);
  double user0, sys0, user1, sys1;
  bu_cpu_s(&user0, &sys0);
  uint64_t trun0 = 0, twait0 = 0, trun1 = 0, twait1 = 0;
  double tu0 = 0, ts0 = 0, tu1 = 0, ts1 = 0;
  long long wb0 = 0, sw0 = 0, wb1 = 0, sw1 = 0;
  bool tsched = tpid && bu_sched_ns(tpid, &trun0, &twait0);
  bool tstat = tpid && bu_proc_cpu(tpid, &tu0, &ts0);
  bool tio = tpid && proc_io(tpid, &wb0, &sw0);
  struct sockaddr_in self_sa;
  socklen_t self_len = sizeof self_sa;
  getsockname(b.fd, (struct sockaddr *)&self_sa, &self_len);
  long tdrops0 = bu_udp_drops(ntohs(b.target_sa.sin_port)),
       sdrops0 = bu_udp_drops(ntohs(self_sa.sin_port));
  do_run(&b, &r, (int)window, (double)seconds, tick_us);
  uint64_t t_end = bu_now_ns();
  bu_cpu_s(&user1, &sys1);
  tsched = tsched && bu_sched_ns(tpid, &trun1, &twait1);
  tstat = tstat && bu_proc_cpu(tpid, &tu1, &ts1);
  tio = tio && proc_io(tpid, &wb1, &sw1);
  long tdrops = bu_udp_drops(ntohs(b.target_sa.sin_port)) - tdrops0;
  long sdrops = bu_udp_drops(ntohs(self_sa.sin_port)) - sdrops0;

  /* 4. figures */
  double dur = (double)((r.t_last > r.t0 ? r.t_last : t_end) - r.t0) / 1e9;
  double dps = (double)r.accepted / dur;
  uint32_t *v = bu_xcalloc((size_t)(r.accepted ? r.accepted : 1), sizeof *v);
  size_t nv = 0;
  double sum = 0;
  for (long s = 0; s < r.sent; s++)
    if (r.lat[s] != PENDING && r.lat[s] <= LAT_MAX) {
      v[nv++] = r.lat[s];
      sum += r.lat[s];
    }
  qsort(v, nv, sizeof *v, bu_cmp_u32);
  /* receipts of one SQLite commit leave the target together: count the
   * bursts of arrivals (gaps > 1 ms) to estimate the commits and their size */
  long bursts = 0;
  {
    uint64_t *arr = bu_xcalloc(nv ? nv : 1, sizeof *arr);
    size_t na = 0;
    for (long s = 0; s < r.sent; s++)
      if (r.lat[s] != PENDING && r.lat[s] <= LAT_MAX)
        arr[na++] = r.sent_at[s] + r.lat[s];
    qsort(arr, na, sizeof *arr, cmp_u64);
    for (size_t i = 0; i < na; i++)
      if (i == 0 || arr[i] - arr[i - 1] > 1000000ull)
        bursts++;
    free(arr);
  }
  long nref = 0;
  for (int i = 0; i <= NSTATUS; i++)
    nref += r.refused[i];
  double p50 = nv ? bu_pct(v, nv, 0.50) / 1e6 : 0, p99 = nv ? bu_pct(v, nv, 0.99) / 1e6 : 0,
         mx = nv ? v[nv - 1] / 1e6 : 0;
  printf("results:\n");
  printf("  deposits sent:        %ld in %.2f s\n", r.sent, dur);
  printf("  accepted (durable, verified receipt): %ld = %.0f deposits/s\n", r.accepted, dps);
  if (nv)
    printf("  latency send->receipt: mean %.2f ms, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
           sum / (double)nv / 1e6, p50, p99, mx);
  if (bursts)
    printf("  receipts arrived in %ld bursts (gaps > 1 ms; about one per SQLite commit): %.0f "
           "deposits and %.1f ms apart on average\n",
           bursts, (double)nv / (double)bursts, dur * 1e3 / (double)bursts);
  printf("  refused:              %ld", nref);
  for (int i = 1; i <= NSTATUS; i++)
    if (r.refused[i])
      printf("  [%d %s: %ld]", i, status_name[i], r.refused[i]);
  printf("\n");
  printf("  receipts that do not verify: %ld; lost (no answer in %llu s): %ld (late %ld, "
         "duplicate %ld, undecryptable %ld, malformed %ld, other %ld)\n",
         r.bad, LOSS_TIMEOUT_NS / 1000000000ull, r.lost, r.late, r.dup, r.bad_crypto, r.bad_msg,
         r.other);
  if (tdrops0 >= 0 && sdrops0 >= 0)
    printf("  kernel drops (receive buffer full): %ld at the target's socket, %ld at ours\n",
           tdrops, sdrops);
  double cpu = user1 - user0 + sys1 - sys0;
  printf("  generator CPU:        %.0f%% of one core, %.1f us per accepted deposit; %ld sendmmsg "
         "(%.1f each), %ld recvmmsg, %ld waits, %.2f key tries per receipt\n",
         100.0 * cpu / dur, r.accepted ? cpu * 1e6 / (double)r.accepted : 0.0, r.n_send,
         r.n_send ? (double)r.sent / (double)r.n_send : 0.0, r.n_recv, r.n_poll,
         r.done > r.lost ? (double)r.key_tries / (double)(r.done - r.lost) : 0.0);
  double tcpu = -1, tloop = -1;
  if (tstat && r.accepted) {
    tcpu = (tu1 - tu0) + (ts1 - ts0);
    printf("  target CPU, all threads: %.0f%% of one core, %.1f us per accepted deposit (%.0f%% "
           "user, %.0f%% system)\n",
           100.0 * tcpu / dur, tcpu * 1e6 / (double)r.accepted,
           tcpu > 0 ? 100.0 * (tu1 - tu0) / tcpu : 0.0,
           tcpu > 0 ? 100.0 * (ts1 - ts0) / tcpu : 0.0);
  }
  if (tsched && r.accepted) {
    tloop = (double)(trun1 - trun0) / 1e9;
    printf("  target event loop:    %.0f%% of one core, %.1f us per accepted deposit; waited for "
           "a CPU %.0f%% of the time\n",
           100.0 * tloop / dur, tloop * 1e6 / (double)r.accepted,
           100.0 * (double)(twait1 - twait0) / 1e9 / dur);
    if (tcpu >= 0)
      printf("  target thread pool (SQLite commits; the rest): ~%.1f us per accepted deposit\n",
             (tcpu - tloop) * 1e6 / (double)r.accepted);
  }
  if (tio && r.accepted)
    printf("  target disk writes:   %.0f bytes per accepted deposit (%.1f MB in all; %lld write "
           "system calls)\n",
           (double)(wb1 - wb0) / (double)r.accepted, (double)(wb1 - wb0) / 1e6, sw1 - sw0);
  printf("RESULT accepted_per_s=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f accepted=%ld refused=%ld "
         "lost=%ld bad=%ld target_cpu_us=%.1f batch=%.0f\n",
         dps, p50, p99, mx, r.accepted, nref, r.lost, r.bad,
         tcpu >= 0 && r.accepted ? tcpu * 1e6 / (double)r.accepted : -1.0,
         bursts ? (double)nv / (double)bursts : 0.0);
  fflush(stdout);

  free(v);
  free(r.pre);
  free(r.pre_len);
  free(r.meta);
  free(r.sent_at);
  free(r.lat);
  for (int c = 0; c < b.nclients; c++)
    dht_box_free(&b.cl[c].box, &dht_mem_libc);
  free(b.cl);
  close(b.fd);
  return r.accepted > 0 ? 0 : 1;
}

/*
 * bench_udp.c - FIND_NODE throughput and latency of one running roostd over
 * real UDP sockets (loopback).  It prints figures; it never fails on time.
 * The exit status is 0 unless something is functionally broken (no cookie
 * from the target, or not one request answered).
 *
 * What it measures:
 *
 * 1. The generator alone.  Before the run, how fast this program can seal and
 *    send request datagrams with sendmmsg into a "blackhole" (a socket of its
 *    own that it never reads), both sealing on the fly and sending pre-built
 *    datagrams, and what opening + decoding one 20-contact NODES reply costs.
 *    If those rates are well above the answered rate, the generator is not
 *    the bottleneck.
 *
 * 2. The target under load.  C client identities (Ed25519 keys) each get a
 *    cookie from the target first (one padded, cookie-less FIND_NODE each),
 *    so every timed request is a small cookie-carrying FIND_NODE (135 bytes,
 *    random target, flags 0 so the target never pings us back).  Request
 *    datagrams are pre-built (sealed) before the timed run when they fit in
 *    512 MiB, else sealed on the fly.  The run keeps W requests in flight
 *    (closed loop, one connected socket) until N requests were sent or S
 *    seconds passed, then waits for the stragglers (at most 1 s: a request
 *    unanswered after 1 s is lost).  Each round receives every waiting reply
 *    with recvmmsg, refills the window with sendmmsg, then pauses for a tick
 *    (100 us) so that the next round finds many replies: the generator then
 *    makes a few system calls per batch instead of two per reply, and the
 *    target's replies seldom have to wake it.  The tick adds up to ~0.15 ms
 *    to the measured latency.
 *
 *    A reply counts as answered when it comes from the target's key, opens
 *    with the client's shared key and decodes as NODES with the txid of a
 *    request in flight.  Printed: answered requests/s, the fraction of
 *    replies carrying 20 contacts, latency from send to reply (mean, p50,
 *    p99, max; matched by txid), loss (and the kernel's drops at both
 *    sockets, from /proc/net/udp), the generator's own CPU use and, given
 *    --target-pid, the target's CPU time per answer.
 *
 * Usage: bench_udp --target ID@127.0.0.1:PORT [--requests N] [--seconds S]
 *                  [--clients C] [--window W] [--tick US] [--target-pid PID]
 *   --requests N  requests to send at most (2,000,000)
 *   --seconds S   send for at most S seconds (10)
 *   --clients C   client identities (64)
 *   --window W    requests in flight (256)
 *   --tick US     pause between rounds (100 us; 0 = sleep in poll until the
 *                 next reply, which costs a wake-up and two system calls
 *                 per reply on both sides)
 *   --target-pid PID  also print the target's CPU time per answered request
 *                 and how long it waited for a CPU (/proc/PID/schedstat)
 * The target should run with --rate-limit 0: all clients share one source
 * address, which the per-prefix limiter caps at 400 datagrams/s by design.
 * scripts/bench-udp.sh starts a network of roostd and runs this against one.
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

#define BATCH BU_BATCH                    /* datagrams per sendmmsg / recvmmsg */
#define REQ_STRIDE 144                    /* bytes per stored request (they are 135) */
#define PREBUILD_MAX ((size_t)512 << 20)  /* pre-build requests up to this much memory */
#define PAD_TOTAL ((DHT_MAX_PKT + 2) / 3) /* a cookie-less request's size: 411 */
#define TXID_RUN 0x40000000u              /* txid of timed request i: TXID_RUN + i */
#define TXID_HELLO 0x20000000u            /* txid of client c's cookie request */
#define LOSS_TIMEOUT_NS 1000000000ull     /* unanswered after this: lost */
#define MAX_REQUESTS 50000000L            /* 12 bytes of bookkeeping each */
#define TARGET_RPS 100000.0
#define CEILING_RPS 175000.0
#define RECV_BUF (8 << 20)
#define TICK_US 100 /* default pause between rounds of recvmmsg + sendmmsg */

/* ---- clients ------------------------------------------------------------ */

typedef struct client {
  bu_client id; /* keys and nonces */
  uint8_t cookie[DHT_TOKEN_LEN];
  bool have_cookie;
} client;

typedef struct bench {
  int fd;
  struct sockaddr_in target_sa;
  uint8_t target_pk[DHT_PK_LEN];
  int nclients;
  client *cl;
  uint64_t xs; /* xorshift state for targets */
} bench;

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* Builds and seals one FIND_NODE from client c into out.  With the client's
 * cookie when it has one, else padded to PAD_TOTAL bytes. */
static size_t build_req(bench *b, int c, uint32_t txid, uint8_t *out, size_t cap) {
  client *k = &b->cl[c];
  dht_msg m;
  memset(&m, 0, sizeof m);
  m.type = DHT_MSG_FIND_NODE;
  m.txid = txid;
  m.flags = 0; /* a client: the target has no reason to ping us */
  for (int i = 0; i < DHT_ID_LEN; i += 8) {
    uint64_t r = xorshift(&b->xs);
    memcpy(m.target + i, &r, 8);
  }
  if (k->have_cookie) {
    memcpy(m.token, k->cookie, DHT_TOKEN_LEN);
    m.token_len = DHT_TOKEN_LEN;
  }
  uint8_t body[DHT_MAX_BODY];
  dht_ssize n = dht_msg_encode(&m, body, sizeof body);
  if (n > 0 && !k->have_cookie && (size_t)n + DHT_OVERHEAD < PAD_TOTAL) {
    /* an empty pad is a 2-byte bin8; past 255 bytes its header is a byte
     * longer (bin16) */
    size_t pad = PAD_TOTAL - (size_t)n - DHT_OVERHEAD;
    m.pad_len = pad > 256 ? pad - 1 : pad;
    n = dht_msg_encode(&m, body, sizeof body);
  }
  if (n < 0)
    bu_die("encoding a FIND_NODE: %s", dht_strerror((int)n));
  dht_ssize len = bu_client_seal(&k->id, b->target_pk, body, (size_t)n, out, cap);
  if (len < 0)
    bu_die("sealing a FIND_NODE: %s", dht_strerror((int)len));
  return (size_t)len;
}

/* Opens a datagram from the target with client c's key and decodes it.
 * Returns 0 (a NODES reply in *m), 1 (not this client's key), 2 (opens but
 * is not a well-formed NODES). */
static int open_as(bench *b, int c, const uint8_t *pkt, size_t len, dht_msg *m) {
  uint8_t body[DHT_MAX_PKT];
  dht_ssize n = dht_box_open(b->cl[c].id.key, pkt, len, body, sizeof body);
  if (n < 0)
    return 1;
  if (dht_msg_decode(m, body, (size_t)n) != 0 || m->type != DHT_MSG_NODES)
    return 2;
  return 0;
}

/* ---- 1. cookies ---------------------------------------------------------- */

/* Every client sends one padded FIND_NODE (txid TXID_HELLO + c) and keeps
 * the token of the reply as its cookie.  A few rounds, 1 s each at most.
 * Keeps one full reply (and its client) for the decode-cost loop. */
static int get_cookies(bench *b, bu_mbatch *sb, bu_mbatch *rb, uint8_t *sample, size_t *sample_len,
                       int *sample_client, int *sample_contacts) {
  int have = 0;
  uint64_t t0 = bu_now_ns();
  *sample_len = 0;
  for (int round = 0; round < 5 && have < b->nclients; round++) {
    int i = 0;
    for (int c = 0; c < b->nclients; c++) {
      if (b->cl[c].have_cookie)
        continue;
      sb->iov[i].iov_len = build_req(b, c, TXID_HELLO + (uint32_t)c, sb->buf[i], sizeof sb->buf[i]);
      if (++i == BATCH || c == b->nclients - 1) {
        bu_send_all(b->fd, sb->h, i, false);
        i = 0;
      }
    }
    if (i > 0)
      bu_send_batch(b->fd, sb->h, i, false);
    uint64_t until = bu_now_ns() + 1000000000ull;
    while (have < b->nclients && bu_now_ns() < until) {
      int n = bu_recv_batch(b->fd, rb, false);
      if (n == 0) {
        poll(&(struct pollfd){.fd = b->fd, .events = POLLIN}, 1, 10);
        continue;
      }
      for (int j = 0; j < n; j++) {
        const uint8_t *pkt = rb->buf[j];
        size_t len = rb->h[j].msg_len;
        if (!bu_from_target(b->target_pk, pkt, len))
          continue;
        dht_msg m;
        for (int c = 0; c < b->nclients; c++) {
          if (open_as(b, c, pkt, len, &m) != 0)
            continue;
          if (m.txid != TXID_HELLO + (uint32_t)c || b->cl[c].have_cookie)
            break;
          memcpy(b->cl[c].cookie, m.token, DHT_TOKEN_LEN);
          b->cl[c].have_cookie = true;
          have++;
          if (m.ncontacts > *sample_contacts || *sample_len == 0) {
            memcpy(sample, pkt, len);
            *sample_len = len;
            *sample_client = c;
            *sample_contacts = m.ncontacts;
          }
          break;
        }
      }
    }
  }
  printf("cookies: %d of %d client identities got one in %.0f ms\n", have, b->nclients,
         (double)(bu_now_ns() - t0) / 1e6);
  return have;
}

/* ---- 2. the generator alone --------------------------------------------- */

static volatile uint64_t g_sink;

/* CPU time of building + sealing one request, of opening + decoding one
 * reply (the sample), and of the open alone, in ns.  200,000 of each or 1 s, whichever comes first.
 */
static void cost_loops(bench *b, const uint8_t *sample, size_t sample_len, int sample_client,
                       double *seal_ns, double *open_ns, double *box_ns) {
  uint8_t out[DHT_MAX_PKT];
  const int reps = 200000;
  uint64_t deadline = bu_now_ns() + 1000000000ull, c0 = bu_cpu_ns();
  int i;
  for (i = 0; i < reps && (i & 1023 || bu_now_ns() < deadline); i++)
    g_sink += build_req(b, i % b->nclients, TXID_RUN, out, sizeof out);
  *seal_ns = (double)(bu_cpu_ns() - c0) / i;
  *open_ns = 0;
  if (!sample_len)
    return;
  deadline = bu_now_ns() + 1000000000ull;
  c0 = bu_cpu_ns();
  dht_msg m;
  for (i = 0; i < reps && (i & 1023 || bu_now_ns() < deadline); i++)
    g_sink += (uint64_t)open_as(b, sample_client, sample, sample_len, &m) + (uint64_t)m.ncontacts;
  *open_ns = (double)(bu_cpu_ns() - c0) / i;
  /* the open alone */
  uint8_t body[DHT_MAX_PKT];
  deadline = bu_now_ns() + 1000000000ull;
  c0 = bu_cpu_ns();
  for (i = 0; i < reps && (i & 1023 || bu_now_ns() < deadline); i++)
    g_sink +=
        (uint64_t)dht_box_open(b->cl[sample_client].id.key, sample, sample_len, body, sizeof body);
  *box_ns = (double)(bu_cpu_ns() - c0) / i;
}

/* Datagrams/s this program sends into a socket of its own that it never
 * reads (the kernel delivers them on loopback, then drops them at the full
 * buffer), either sealing each on the fly (pass 0) or re-sending pre-built
 * ones (pass 1): per wall-clock second and per CPU second (what it would do
 * with a CPU to itself).  Bounded: 1 s or 3,000,000 datagrams each. */
static void blackhole(bench *b, double wall[2], double cpu[2]) {
  int bh = bu_udp_socket(4096);
  struct sockaddr_in sa;
  socklen_t sl = sizeof sa;
  if (getsockname(bh, (struct sockaddr *)&sa, &sl) != 0)
    bu_die("getsockname: %s", strerror(errno));
  bu_mbatch sb;
  bu_mbatch_init(&sb, &sa);
  for (int pass = 0; pass < 2; pass++) {
    bool seal = pass == 0;
    for (int i = 0; i < BATCH; i++)
      sb.iov[i].iov_len = build_req(b, i % b->nclients, TXID_RUN, sb.buf[i], sizeof sb.buf[i]);
    uint64_t t0 = bu_now_ns(), deadline = t0 + 1000000000ull, c0 = bu_cpu_ns();
    long sent = 0;
    while (sent < 3000000 && bu_now_ns() < deadline) {
      if (seal)
        for (int i = 0; i < BATCH; i++)
          sb.iov[i].iov_len = build_req(b, (int)((sent + i) % b->nclients), TXID_RUN + (uint32_t)i,
                                        sb.buf[i], sizeof sb.buf[i]);
      int r = bu_send_batch(b->fd, sb.h, BATCH, false);
      sent += r;
      if (r == 0)
        poll(&(struct pollfd){.fd = b->fd, .events = POLLOUT}, 1, 1);
    }
    wall[pass] = (double)sent / ((double)(bu_now_ns() - t0) / 1e9);
    cpu[pass] = (double)sent / ((double)(bu_cpu_ns() - c0) / 1e9);
  }
  free(sb.buf);
  close(bh);
}

/* ---- 3. the run ---------------------------------------------------------- */

typedef struct run {
  long n;            /* requests to send at most */
  uint8_t *pre;      /* pre-built datagrams, REQ_STRIDE apart, or NULL */
  uint16_t *pre_len; /* their lengths */
  uint64_t *sent_at; /* per request: send time (ns since t0) */
  uint32_t *lat;     /* per request: 0 pending, LOST, else latency in ns (>= 1) */
  long sent, answered, lost, late, dup, full20, bad_crypto, bad_msg, other;
  long key_tries;
  long n_send, n_recv, n_recv_empty, n_poll; /* system calls */
  long cursor;                               /* the request after the last one answered */
  uint64_t t0, t_last;                       /* first send, last answer */
  uint64_t reply_bytes;
} run;

#define LOST UINT32_MAX

/* Which request a datagram from the target answers.  It is sealed for one
 * client, and only opening tells which: replies come back in request order
 * (one socket each way on loopback), so try the client of the request after
 * the last one answered first, then the following ones: one try per reply
 * unless something was lost or reordered. */
static void on_reply(bench *b, run *r, const uint8_t *pkt, size_t len, uint64_t now) {
  if (!bu_from_target(b->target_pk, pkt, len)) {
    r->other++;
    return;
  }
  dht_msg m;
  int c = -1, rv = 1;
  for (int t = 0; t < b->nclients && rv == 1; t++) {
    c = (int)((r->cursor + t) % b->nclients);
    rv = open_as(b, c, pkt, len, &m);
    r->key_tries++;
  }
  if (rv == 1) {
    r->bad_crypto++;
    return;
  }
  long seq = (long)m.txid - (long)TXID_RUN;
  if (rv == 2 || seq < 0 || seq >= r->sent || seq % b->nclients != c) {
    if (rv == 0 && m.txid >= TXID_HELLO && m.txid < TXID_HELLO + (uint32_t)b->nclients)
      r->other++; /* a late answer to a cookie request */
    else
      r->bad_msg++;
    return;
  }
  r->cursor = seq + 1;
  if (r->lat[seq] == LOST) {
    r->late++;
    return;
  }
  if (r->lat[seq] != 0) {
    r->dup++;
    return;
  }
  uint64_t d = now - r->t0 - r->sent_at[seq];
  r->lat[seq] = d == 0 ? 1 : d >= LOST ? LOST - 1 : (uint32_t)d;
  r->answered++;
  r->reply_bytes += len;
  r->t_last = now;
  if (m.ncontacts == 20)
    r->full20++;
}

static void do_run(bench *b, run *r, int window, double seconds, long tick_us) {
  bu_mbatch sb, rb;
  bu_mbatch_init(&sb, NULL);
  bu_mbatch_init(&rb, NULL);
  /* connected from here on: the kernel keeps the route instead of looking it
   * up for every datagram, and sendmmsg takes no address */
  if (connect(b->fd, (const struct sockaddr *)&b->target_sa, sizeof b->target_sa) != 0)
    bu_die("connect: %s", strerror(errno));
  const struct timespec tick = {0, tick_us * 1000};
  long oldest = 0; /* every request before it is answered or lost */
  long last_sec_answered = 0;
  int sec = 0;
  bool send_blocked = false;
  r->t0 = bu_now_ns();
  uint64_t stop_sending = r->t0 + (uint64_t)(seconds * 1e9);
  uint64_t hard_end = stop_sending + LOSS_TIMEOUT_NS + 100000000ull;
  for (;;) {
    /* receive everything that is waiting */
    int n, got = 0;
    do {
      n = bu_recv_batch(b->fd, &rb, false);
      if (n)
        r->n_recv++;
      else
        r->n_recv_empty++;
      uint64_t t = bu_now_ns();
      for (int j = 0; j < n; j++)
        on_reply(b, r, rb.buf[j], rb.h[j].msg_len, t);
      got += n;
    } while (n == BATCH);
    uint64_t now = bu_now_ns();
    /* requests unanswered for LOSS_TIMEOUT_NS are lost: out of the window */
    while (oldest < r->sent &&
           (r->lat[oldest] != 0 || now - r->t0 - r->sent_at[oldest] > LOSS_TIMEOUT_NS)) {
      if (r->lat[oldest] == 0) {
        r->lat[oldest] = LOST;
        r->lost++;
      }
      oldest++;
    }
    /* once a second, a progress line */
    if (now - r->t0 >= (uint64_t)(sec + 1) * 1000000000ull) {
      sec++;
      printf("  %2d s: %8ld answered/s, %ld in flight\n", sec, r->answered - last_sec_answered,
             r->sent - r->answered - r->lost);
      fflush(stdout);
      last_sec_answered = r->answered;
    }
    /* fill the window */
    bool sending = r->sent < r->n && now < stop_sending;
    if (got > 0)
      send_blocked = false; /* try again after draining some replies */
    while (sending && !send_blocked) {
      long k = window - (r->sent - r->answered - r->lost);
      if (k > BATCH)
        k = BATCH;
      if (k > r->n - r->sent)
        k = r->n - r->sent;
      if (k <= 0)
        break;
      for (int i = 0; i < k; i++) {
        long seq = r->sent + i;
        if (r->pre) {
          sb.iov[i].iov_base = r->pre + (size_t)seq * REQ_STRIDE;
          sb.iov[i].iov_len = r->pre_len[seq];
        } else {
          sb.iov[i].iov_base = sb.buf[i];
          sb.iov[i].iov_len = build_req(b, (int)(seq % b->nclients), TXID_RUN + (uint32_t)seq,
                                        sb.buf[i], sizeof sb.buf[i]);
        }
      }
      uint64_t ts = bu_now_ns() - r->t0;
      int sent = bu_send_batch(b->fd, sb.h, (int)k, false);
      r->n_send++;
      for (int i = 0; i < sent; i++)
        r->sent_at[r->sent + i] = ts;
      r->sent += sent;
      if (sent < k)
        send_blocked = true;
    }
    long inflight = r->sent - r->answered - r->lost;
    if ((!sending && inflight == 0) || now >= hard_end)
      break;
    /* wait: a fixed tick lets replies pile up so that the next recvmmsg and
     * sendmmsg carry many datagrams, and the target's sends find nobody
     * asleep on our socket to wake; without a tick, sleep in poll until the
     * next reply */
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
  /* whatever is still pending now is lost */
  for (long s = oldest; s < r->sent; s++)
    if (r->lat[s] == 0) {
      r->lat[s] = LOST;
      r->lost++;
    }
  free(sb.buf);
  free(rb.buf);
}

/* ---- main --------------------------------------------------------------- */

static void usage(void) {
  printf("usage: bench_udp --target ID@127.0.0.1:PORT [--requests N] [--seconds S]\n"
         "                 [--clients C] [--window W] [--tick US] [--target-pid PID]\n"
         "  --requests N  requests to send at most (2000000)\n"
         "  --seconds S   send for at most S seconds (10)\n"
         "  --clients C   client identities (64)\n"
         "  --window W    requests in flight (256)\n"
         "  --tick US     pause between rounds of recvmmsg + sendmmsg (100; 0 = wait in poll\n"
         "                for every reply)\n"
         "  --target-pid PID  print the target's CPU time per answer (/proc/PID/schedstat)\n"
         "Run the target with --rate-limit 0 (all clients share one source address).\n");
}

int main(int argc, char **argv) {
  bu_die_prefix = "bench_udp: ";
  const char *target = NULL, *tpid = NULL;
  long nreq = 2000000, seconds = 10, nclients = 64, window = 256, tick_us = TICK_US;
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
    else if (!strcmp(a, "--requests"))
      nreq = bu_parse_long(a, v, 1, MAX_REQUESTS);
    else if (!strcmp(a, "--seconds"))
      seconds = bu_parse_long(a, v, 1, 3600);
    else if (!strcmp(a, "--clients"))
      nclients = bu_parse_long(a, v, 1, 4096);
    else if (!strcmp(a, "--window"))
      window = bu_parse_long(a, v, 1, 65536);
    else if (!strcmp(a, "--tick"))
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
  b.cl = bu_xcalloc((size_t)nclients, sizeof *b.cl);
  randombytes_buf(&b.xs, sizeof b.xs);
  b.xs |= 1;
  for (int c = 0; c < b.nclients; c++)
    bu_client_init(&b.cl[c].id, b.target_pk);
  b.fd = bu_udp_socket(RECV_BUF);
  int got = 0;
  socklen_t gl = sizeof got;
  getsockopt(b.fd, SOL_SOCKET, SO_RCVBUF, &got, &gl);

  char tbuf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &b.target_sa.sin_addr, tbuf, sizeof tbuf);
  printf("bench_udp: FIND_NODE load on %s:%u: up to %ld requests or %ld s, %ld client "
         "identities, %ld in flight\n",
         tbuf, ntohs(b.target_sa.sin_port), nreq, seconds, nclients, window);
  printf("generator: one UDP socket (receive buffer %d KiB; connected for the run), "
         "recvmmsg/sendmmsg in batches of up to %d, ",
         got / 2048, BATCH); /* the kernel reports twice what it was asked */
  if (tick_us > 0)
    printf("a round every %ld us\n", tick_us);
  else
    printf("poll for every reply\n");

  /* 1. cookies */
  bu_mbatch sb, rb;
  bu_mbatch_init(&sb, &b.target_sa);
  bu_mbatch_init(&rb, NULL);
  uint8_t sample[2048];
  size_t sample_len = 0;
  int sample_client = 0, sample_contacts = -1;
  int have = get_cookies(&b, &sb, &rb, sample, &sample_len, &sample_client, &sample_contacts);
  free(sb.buf);
  free(rb.buf);
  if (have == 0)
    bu_die("the target answered none of %d cookie requests (is it running at %s:%u?)", b.nclients,
           tbuf, ntohs(b.target_sa.sin_port));
  if (have < b.nclients)
    printf("  (clients without a cookie send padded %d-byte requests)\n", PAD_TOTAL);
  printf("  first full reply: %d contacts, %zu bytes\n", sample_contacts, sample_len);
  if (sample_contacts < 20)
    printf("  WARNING: the target's table gives fewer than 20 contacts\n");

  /* 2. the generator alone */
  double seal_ns = 0, open_ns = 0, box_ns = 0, bh_wall[2] = {0, 0}, bh_cpu[2] = {0, 0};
  cost_loops(&b, sample, sample_len, sample_client, &seal_ns, &open_ns, &box_ns);
  blackhole(&b, bh_wall, bh_cpu);
  printf("generator alone (no target; CPU time, so other processes do not count):\n");
  printf("  build + seal one request:         %6.0f ns CPU  (%.0f/s)\n", seal_ns, 1e9 / seal_ns);
  printf("  open + decode one %zu-byte reply: %6.0f ns CPU  (%.0f/s; the open alone %.0f ns)\n",
         sample_len, open_ns, 1e9 / open_ns, box_ns);
  printf("  sendmmsg into a blackhole socket: sealing on the fly %.0f/s (%.0f per CPU second),\n"
         "                                    pre-built %.0f/s (%.0f per CPU second)\n",
         bh_wall[0], bh_cpu[0], bh_wall[1], bh_cpu[1]);

  /* 3. pre-build, then the run */
  run r;
  memset(&r, 0, sizeof r);
  r.n = nreq;
  r.sent_at = bu_xcalloc((size_t)nreq, sizeof *r.sent_at);
  r.lat = bu_xcalloc((size_t)nreq, sizeof *r.lat);
  if ((size_t)nreq * REQ_STRIDE <= PREBUILD_MAX) {
    uint64_t t0 = bu_now_ns();
    r.pre = malloc((size_t)nreq * REQ_STRIDE);
    r.pre_len = bu_xcalloc((size_t)nreq, sizeof *r.pre_len);
    if (!r.pre)
      bu_die("out of memory for %ld pre-built requests", nreq);
    for (long s = 0; s < nreq; s++)
      r.pre_len[s] = (uint16_t)build_req(&b, (int)(s % b.nclients), TXID_RUN + (uint32_t)s,
                                         r.pre + (size_t)s * REQ_STRIDE, REQ_STRIDE);
    printf("pre-built %ld request datagrams (%u bytes each) in %.2f s\n", nreq, r.pre_len[0],
           (double)(bu_now_ns() - t0) / 1e9);
  } else {
    printf("requests are sealed on the fly (%ld would not fit in %zu MiB)\n", nreq,
           PREBUILD_MAX >> 20);
  }
  printf("run:\n");
  fflush(stdout);
  double user0, sys0, user1, sys1;
  bu_cpu_s(&user0, &sys0);
  uint64_t trun0 = 0, twait0 = 0, srun0 = 0, swait0 = 0, trun1 = 0, twait1 = 0, srun1 = 0,
           swait1 = 0;
  bool tsched = tpid && bu_sched_ns(tpid, &trun0, &twait0);
  double tuser0 = 0, tsys0 = 0, tuser1 = 0, tsys1 = 0;
  bool tstat = tpid && bu_proc_cpu(tpid, &tuser0, &tsys0);
  bool ssched = bu_sched_ns("self", &srun0, &swait0);
  struct sockaddr_in self_sa;
  socklen_t self_len = sizeof self_sa;
  getsockname(b.fd, (struct sockaddr *)&self_sa, &self_len);
  long tdrops0 = bu_udp_drops(ntohs(b.target_sa.sin_port)),
       sdrops0 = bu_udp_drops(ntohs(self_sa.sin_port));
  do_run(&b, &r, (int)window, (double)seconds, tick_us);
  bu_cpu_s(&user1, &sys1);
  double cpu = user1 - user0 + sys1 - sys0;
  tsched = tsched && bu_sched_ns(tpid, &trun1, &twait1);
  tstat = tstat && bu_proc_cpu(tpid, &tuser1, &tsys1);
  ssched = ssched && bu_sched_ns("self", &srun1, &swait1);
  long tdrops = bu_udp_drops(ntohs(b.target_sa.sin_port)) - tdrops0;
  long sdrops = bu_udp_drops(ntohs(self_sa.sin_port)) - sdrops0;
  uint64_t t_end = bu_now_ns();

  /* 4. figures */
  double dur = (double)((r.t_last > r.t0 ? r.t_last : t_end) - r.t0) / 1e9;
  double rps = (double)r.answered / dur;
  uint32_t *v = bu_xcalloc((size_t)(r.answered ? r.answered : 1), sizeof *v);
  size_t nv = 0;
  double sum = 0;
  for (long s = 0; s < r.sent; s++)
    if (r.lat[s] != 0 && r.lat[s] != LOST) {
      v[nv++] = r.lat[s];
      sum += r.lat[s];
    }
  qsort(v, nv, sizeof *v, bu_cmp_u32);
  printf("results:\n");
  printf("  requests sent:        %ld in %.2f s\n", r.sent, dur);
  printf("  answered (NODES):     %ld  = %.0f answered FIND_NODE/s\n", r.answered, rps);
  printf("  with 20 contacts:     %ld  (%.2f%% of answered)\n", r.full20,
         r.answered ? 100.0 * (double)r.full20 / (double)r.answered : 0.0);
  if (nv)
    printf("  latency send->reply:  mean %.0f us, p50 %.0f us, p99 %.0f us, max %.0f us\n",
           sum / (double)nv / 1e3, bu_pct(v, nv, 0.50) / 1e3, bu_pct(v, nv, 0.99) / 1e3,
           v[nv - 1] / 1e3);
  printf("  lost (no reply in %llu ms): %ld = %.3f%%", LOSS_TIMEOUT_NS / 1000000, r.lost,
         r.sent ? 100.0 * (double)r.lost / (double)r.sent : 0.0);
  printf("  (late %ld, duplicate %ld, undecryptable %ld, malformed %ld, other %ld)\n", r.late,
         r.dup, r.bad_crypto, r.bad_msg, r.other);
  if (tdrops0 >= 0 && sdrops0 >= 0)
    printf("  kernel drops (receive buffer full): %ld at the target's socket, %ld at ours\n",
           tdrops, sdrops);
  printf("  mean reply size:      %.0f bytes; key tries per reply %.2f\n",
         r.answered ? (double)r.reply_bytes / (double)r.answered : 0.0,
         r.answered ? (double)r.key_tries / (double)(r.answered + r.late + r.dup) : 0.0);
  printf("  generator CPU:        %.0f%% of one core, %.2f us per answer (~%.0f answers/s if it "
         "had a core to itself)",
         100.0 * cpu / dur, r.answered ? cpu * 1e6 / (double)r.answered : 0.0,
         cpu > 0 ? (double)r.answered / cpu : 0.0);
  if (ssched)
    printf("; waited for a CPU %.0f%% of the time", 100.0 * (double)(swait1 - swait0) / 1e9 / dur);
  printf("\n");
  printf("  generator CPU split:  %.0f%% user, %.0f%% system; %ld sendmmsg (%.1f datagrams "
         "each), %ld recvmmsg (%.1f each) + %ld empty, %ld waits\n",
         cpu > 0 ? 100.0 * (user1 - user0) / cpu : 0.0, cpu > 0 ? 100.0 * (sys1 - sys0) / cpu : 0.0,
         r.n_send, r.n_send ? (double)r.sent / (double)r.n_send : 0.0, r.n_recv,
         r.n_recv ? (double)(r.answered + r.late + r.dup + r.other + r.bad_crypto + r.bad_msg) /
                        (double)r.n_recv
                  : 0.0,
         r.n_recv_empty, r.n_poll);
  if (tsched && r.answered) {
    double trun = (double)(trun1 - trun0) / 1e9, twait = (double)(twait1 - twait0) / 1e9;
    printf("  target CPU:           %.0f%% of one core, %.2f us per answer (~%.0f answers/s if "
           "it had a core to itself); waited for a CPU %.0f%% of the time\n",
           100.0 * trun / dur, trun * 1e6 / (double)r.answered, (double)r.answered / trun,
           100.0 * twait / dur);
    double tu = tuser1 - tuser0, ts = tsys1 - tsys0;
    if (tstat && tu + ts > 0)
      printf("  target CPU split:     %.0f%% user (engine, crypto, libuv), %.0f%% system (socket "
             "calls, loopback delivery)\n",
             100.0 * tu / (tu + ts), 100.0 * ts / (tu + ts));
  }
  printf("  target figure:        >= %.0f answered FIND_NODE/s: %s (%.0f%% of it); ceiling of "
         "encrypted UDP round trips on this machine ~%.0f/s\n",
         TARGET_RPS, rps >= TARGET_RPS ? "met" : "NOT met", 100.0 * rps / TARGET_RPS, CEILING_RPS);
  fflush(stdout);

  free(v);
  free(r.pre);
  free(r.pre_len);
  free(r.sent_at);
  free(r.lat);
  for (int c = 0; c < b.nclients; c++)
    dht_box_free(&b.cl[c].id.box, &dht_mem_libc);
  free(b.cl);
  close(b.fd);
  return r.answered > 0 ? 0 : 1;
}

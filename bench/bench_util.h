/*
 * bench_util.h - what the benchmark programs share (bench_udp.c,
 * bench_deposit.c, bench_engine.c): dying with a message, clocks and CPU
 * figures from /proc, percentiles, option parsing, the text form of a roost
 * ID, and loopback UDP sockets driven with sendmmsg/recvmmsg in batches.
 *
 * A program that includes this must define _GNU_SOURCE before its first
 * #include (struct mmsghdr, SO_RCVBUFFORCE).
 */
#ifndef ROOST_BENCH_UTIL_H
#define ROOST_BENCH_UTIL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "dht_int.h"

#define BU_BATCH 64      /* datagrams per sendmmsg / recvmmsg */
#define BU_IDTEXT_LEN 56 /* characters in the text form of an ID */

/* ---- dying and memory ---------------------------------------------------- */

/* What bu_die writes before its message ("bench_udp: "); set by main. */
extern const char *bu_die_prefix;
/* Whether bu_die writes to stdout (bench_engine's "FAILED: ...") rather than stderr. */
extern bool bu_die_stdout;

/* Flushes stdout, prints bu_die_prefix, the message and a newline, then exits 1. */
__attribute__((format(printf, 1, 2), noreturn)) void bu_die(const char *fmt, ...);
/* calloc that dies when out of memory (and never asks for 0 bytes). */
void *bu_xcalloc(size_t n, size_t size);

/* ---- clocks and CPU figures ---------------------------------------------- */

/* The monotonic clock in ns. */
uint64_t bu_now_ns(void);
/* CPU time of this thread in ns (excludes time other processes had the CPU). */
uint64_t bu_cpu_ns(void);
/* This process's user and system CPU time, in seconds. */
void bu_cpu_s(double *user, double *sys);
/* A task's ns on a CPU and ns waiting for one (/proc/PID/schedstat; PID may be "self"). */
bool bu_sched_ns(const char *pid, uint64_t *run_ns, uint64_t *wait_ns);
/* A process's user and system CPU seconds, all threads (/proc/PID/stat); false: unreadable. */
bool bu_proc_cpu(const char *pid, double *user_s, double *sys_s);
/* Datagrams the kernel dropped at the UDP socket on 127.0.0.1:port (/proc/net/udp); -1: none. */
long bu_udp_drops(unsigned port);

/* ---- figures and options ------------------------------------------------- */

/* qsort comparison of two uint32_t. */
int bu_cmp_u32(const void *a, const void *b);
/* Nearest-rank percentile p (0..1) of sorted v[0, n), n >= 1. */
uint32_t bu_pct(const uint32_t *v, size_t n, double p);
/* The integer s for option opt, or death when it is not one in [lo, hi]. */
long bu_parse_long(const char *opt, const char *s, long lo, long hi);

/* ---- targets ------------------------------------------------------------- */

/* Decodes a 56-character ID (copy of node/node_text.c's): 0, -1 malformed, -2 bad checksum. */
int bu_idtext_decode(const char *s, size_t len, uint8_t pk[static DHT_PK_LEN]);
/* Parses "ID@A.B.C.D:PORT" (loopback only) for --target, or dies. */
void bu_parse_target(const char *s, uint8_t pk[static DHT_PK_LEN], struct sockaddr_in *sa);
/* Whether a datagram could come from the target: the right size, version and sender key. */
bool bu_from_target(const uint8_t target_pk[static DHT_PK_LEN], const uint8_t *pkt, size_t len);

/* ---- client identities --------------------------------------------------- */

/* A client identity talking to the target. */
typedef struct bu_client {
  dht_box box;
  uint8_t key[32]; /* shared key with the target */
  uint8_t nonce_prefix[16];
  uint64_t nonce_ctr;
} bu_client;

/* Makes a random identity in *c and its shared key with target_pk, or dies. */
void bu_client_init(bu_client *c, const uint8_t target_pk[static DHT_PK_LEN]);
/* Seals body[0, n) from c for target_pk into out (next nonce); the length or a dht error. */
dht_ssize bu_client_seal(bu_client *c, const uint8_t target_pk[static DHT_PK_LEN],
                         const uint8_t *body, size_t n, uint8_t *out, size_t cap);

/* ---- sockets ------------------------------------------------------------- */

/* A non-blocking UDP socket bound to 127.0.0.1:0 with a large send buffer, or death. */
int bu_udp_socket(int rcvbuf);

/* A batch of datagrams for sendmmsg/recvmmsg. */
typedef struct bu_mbatch {
  struct mmsghdr h[BU_BATCH];
  struct iovec iov[BU_BATCH];
  uint8_t (*buf)[2048];
} bu_mbatch;

/* Points every slot at its own 2 KiB buffer, sending to `to` (NULL: a connected socket). */
void bu_mbatch_init(bu_mbatch *mb, const struct sockaddr_in *to);
/* Receives up to BU_BATCH datagrams without blocking; how many (0: none, or refused_ok). */
int bu_recv_batch(int fd, bu_mbatch *rb, bool refused_ok);
/* Sends h[0, n); how many went (0: socket full, or ECONNREFUSED and refused_ok). */
int bu_send_batch(int fd, struct mmsghdr *h, int n, bool refused_ok);
/* Sends h[0, n), waiting in poll while the socket is full (1000 tries at most). */
void bu_send_all(int fd, struct mmsghdr *h, int n, bool refused_ok);

#endif

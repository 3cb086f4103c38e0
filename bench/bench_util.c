/*
 * bench_util.c - what the benchmark programs share (bench_util.h).
 */
#define _GNU_SOURCE
#include "bench_util.h"

#include <errno.h>
#include <poll.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

const char *bu_die_prefix = "bench: ";
bool bu_die_stdout = false;

/* ---- dying and memory ---------------------------------------------------- */

void bu_die(const char *fmt, ...) {
  FILE *out = bu_die_stdout ? stdout : stderr;
  va_list ap;
  va_start(ap, fmt);
  fflush(stdout);
  fprintf(out, "%s", bu_die_prefix);
  vfprintf(out, fmt, ap);
  fprintf(out, "\n");
  fflush(out);
  va_end(ap);
  exit(1);
}

void *bu_xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p)
    bu_die("out of memory (%zu x %zu bytes)", n, size);
  return p;
}

/* ---- clocks and CPU figures ---------------------------------------------- */

uint64_t bu_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t bu_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void bu_cpu_s(double *user, double *sys) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  *user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6;
  *sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

bool bu_sched_ns(const char *pid, uint64_t *run_ns, uint64_t *wait_ns) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%s/schedstat", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return false;
  unsigned long long a, b;
  int n = fscanf(f, "%llu %llu", &a, &b);
  fclose(f);
  if (n != 2)
    return false;
  *run_ns = a;
  *wait_ns = b;
  return true;
}

bool bu_proc_cpu(const char *pid, double *user_s, double *sys_s) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%s/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return false;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
  unsigned long long ut, st;
  if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return false;
  double tck = (double)sysconf(_SC_CLK_TCK);
  *user_s = (double)ut / tck;
  *sys_s = (double)st / tck;
  return true;
}

long bu_udp_drops(unsigned port) {
  FILE *f = fopen("/proc/net/udp", "r");
  if (!f)
    return -1;
  char line[512];
  long drops = -1;
  while (drops < 0 && fgets(line, sizeof line, f)) {
    char *tok[16], *save = NULL;
    int n = 0;
    for (char *t = strtok_r(line, " \t\n", &save); t && n < 16; t = strtok_r(NULL, " \t\n", &save))
      tok[n++] = t;
    unsigned ip, p;
    if (n >= 13 && sscanf(tok[1], "%8x:%4x", &ip, &p) == 2 && p == port &&
        ip == htonl(INADDR_LOOPBACK))
      drops = strtol(tok[12], NULL, 10);
  }
  fclose(f);
  return drops;
}

/* ---- figures and options ------------------------------------------------- */

int bu_cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

uint32_t bu_pct(const uint32_t *v, size_t n, double p) {
  size_t r = (size_t)(p * (double)n + 0.999999);
  if (r < 1)
    r = 1;
  if (r > n)
    r = n;
  return v[r - 1];
}

long bu_parse_long(const char *opt, const char *s, long lo, long hi) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi)
    bu_die("%s wants an integer in [%ld, %ld], not '%s'", opt, lo, hi, s);
  return v;
}

/* ---- targets ------------------------------------------------------------- */

int bu_idtext_decode(const char *s, size_t len, uint8_t pk[static DHT_PK_LEN]) {
  static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
  uint8_t raw[DHT_PK_LEN + 3] = {0};
  if (len != BU_IDTEXT_LEN)
    return -1;
  for (size_t i = 0; i < BU_IDTEXT_LEN; i++) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z')
      c = (char)(c - 'A' + 'a');
    const char *p = c ? strchr(b32, c) : NULL;
    if (!p)
      return -1;
    int v = (int)(p - b32);
    for (int j = 0; j < 5; j++) {
      size_t bit = i * 5 + (size_t)j;
      if ((v >> (4 - j)) & 1)
        raw[bit / 8] |= (uint8_t)(0x80 >> (bit % 8));
    }
  }
  uint8_t in[8 + DHT_PK_LEN], h[32];
  memcpy(in, "roost-id", 8);
  memcpy(in + 8, raw, DHT_PK_LEN);
  crypto_generichash(h, sizeof h, in, sizeof in, NULL, 0);
  if (memcmp(h, raw + DHT_PK_LEN, 3) != 0)
    return -2;
  memcpy(pk, raw, DHT_PK_LEN);
  return 0;
}

void bu_parse_target(const char *s, uint8_t pk[static DHT_PK_LEN], struct sockaddr_in *sa) {
  const char *at = strchr(s, '@');
  if (!at)
    bu_die("--target wants ID@127.0.0.1:PORT, not '%s'", s);
  int rv = bu_idtext_decode(s, (size_t)(at - s), pk);
  if (rv)
    bu_die("--target: %s",
           rv == -2 ? "the ID's checksum does not match (typo?)" : "not a 56-character roost ID");
  char host[64];
  const char *colon = strrchr(at + 1, ':');
  if (!colon || (size_t)(colon - at - 1) >= sizeof host)
    bu_die("--target: '%s' is not HOST:PORT", at + 1);
  memcpy(host, at + 1, (size_t)(colon - at - 1));
  host[colon - at - 1] = 0;
  memset(sa, 0, sizeof *sa);
  sa->sin_family = AF_INET;
  sa->sin_port = htons((uint16_t)bu_parse_long("--target port", colon + 1, 1, 65535));
  if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
    bu_die("--target: '%s' is not a numeric IPv4 address", host);
  if ((ntohl(sa->sin_addr.s_addr) >> 24) != 127)
    bu_die("--target: loopback (127.0.0.0/8) only, not %s", host);
}

bool bu_from_target(const uint8_t target_pk[static DHT_PK_LEN], const uint8_t *pkt, size_t len) {
  return len >= DHT_OVERHEAD + 3 && len <= DHT_MAX_PKT && pkt[0] == DHT_VERSION &&
         memcmp(pkt + 1, target_pk, DHT_PK_LEN) == 0;
}

/* ---- client identities --------------------------------------------------- */

void bu_client_init(bu_client *c, const uint8_t target_pk[static DHT_PK_LEN]) {
  uint8_t seed[32], hkey[16];
  dht_identity id;
  randombytes_buf(seed, sizeof seed);
  randombytes_buf(hkey, sizeof hkey);
  dht_identity_from_seed(&id, seed);
  if (dht_box_init(&c->box, &id, 4, hkey, &dht_mem_libc) != 0)
    bu_die("dht_box_init failed");
  const uint8_t *k = dht_box_key(&c->box, target_pk);
  if (!k)
    bu_die("the target's key is not a usable Ed25519 point");
  memcpy(c->key, k, 32);
  randombytes_buf(c->nonce_prefix, sizeof c->nonce_prefix);
  sodium_memzero(&id, sizeof id);
}

dht_ssize bu_client_seal(bu_client *c, const uint8_t target_pk[static DHT_PK_LEN],
                         const uint8_t *body, size_t n, uint8_t *out, size_t cap) {
  uint8_t nonce[DHT_NONCE_LEN];
  memcpy(nonce, c->nonce_prefix, 16);
  uint64_t ctr = c->nonce_ctr++;
  memcpy(nonce + 16, &ctr, 8);
  return dht_box_seal(&c->box, target_pk, nonce, body, n, out, cap);
}

/* ---- sockets ------------------------------------------------------------- */

int bu_udp_socket(int rcvbuf) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    bu_die("socket: %s", strerror(errno));
  /* FORCE works as root and ignores net.core.rmem_max; else the capped one */
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  int snd = 4 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof snd) != 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
    bu_die("bind 127.0.0.1:0: %s", strerror(errno));
  return fd;
}

void bu_mbatch_init(bu_mbatch *mb, const struct sockaddr_in *to) {
  memset(mb, 0, sizeof *mb);
  mb->buf = bu_xcalloc(BU_BATCH, sizeof *mb->buf);
  for (int i = 0; i < BU_BATCH; i++) {
    mb->iov[i].iov_base = mb->buf[i];
    mb->iov[i].iov_len = sizeof mb->buf[i];
    mb->h[i].msg_hdr.msg_iov = &mb->iov[i];
    mb->h[i].msg_hdr.msg_iovlen = 1;
    if (to) {
      mb->h[i].msg_hdr.msg_name = (void *)to;
      mb->h[i].msg_hdr.msg_namelen = sizeof *to;
    }
  }
}

int bu_recv_batch(int fd, bu_mbatch *rb, bool refused_ok) {
  for (int i = 0; i < BU_BATCH; i++) {
    rb->iov[i].iov_len = sizeof rb->buf[i];
    rb->h[i].msg_hdr.msg_flags = 0;
  }
  int n = recvmmsg(fd, rb->h, BU_BATCH, MSG_DONTWAIT, NULL);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
        (refused_ok && errno == ECONNREFUSED))
      return 0;
    bu_die("recvmmsg: %s", strerror(errno));
  }
  return n;
}

int bu_send_batch(int fd, struct mmsghdr *h, int n, bool refused_ok) {
  int r = sendmmsg(fd, h, (unsigned)n, 0);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS || errno == EINTR ||
        (refused_ok && errno == ECONNREFUSED))
      return 0;
    bu_die("sendmmsg: %s", strerror(errno));
  }
  return r;
}

void bu_send_all(int fd, struct mmsghdr *h, int n, bool refused_ok) {
  for (int sent = 0, tries = 0; sent < n && tries < 1000; tries++) {
    int r = bu_send_batch(fd, h + sent, n - sent, refused_ok);
    sent += r;
    if (r == 0)
      poll(&(struct pollfd){.fd = fd, .events = POLLOUT}, 1, 1);
  }
}

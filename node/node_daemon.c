/*
 * node_daemon.c - roostd: the libuv driver of the dht/ engine.
 *
 * One UDP socket per listen address (normally one IPv4 and one IPv6), the
 * engine's pump (read_pkt -> drain write_pkt -> drain events -> re-arm the
 * one timer from get_expiry), a Unix control socket for the roost CLI,
 * periodic routing-table snapshots, signals, and LAN discovery.
 *
 * Nothing on the loop blocks: sends use uv_udp_try_send and fall back to a
 * bounded queue of uv_udp_send requests (beyond it, datagrams are dropped
 * and counted); snapshots are small (a few KB) and written at a low rate.
 *
 * Control clients are plain structs on a list; a command that waits for the
 * engine is a "waiter" holding the client's serial number, never a pointer,
 * so a client that disconnects early cannot leave a dangling reference.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "node.h"
#include "node_json.h"

#define LINE_MAX_BYTES (64 * 1024)
#define MAX_CLIENTS 64
#define MAX_WAITERS 256
#define RECV_BUF (64 * 1024 * 20) /* recvmmsg: 20 datagrams a batch (libuv's most) */
#define SEND_BATCH 64
#define BOOT_RETRY_MIN_MS 2000
#define BOOT_RETRY_MAX_MS (5 * 60 * 1000)
#define VOTES 16
#define LAN_EVERY_MS 30000
#define LAN_MAGIC "ROOST1 "

typedef struct rd_daemon rd_daemon;

typedef struct client {
  uv_pipe_t pipe;
  rd_daemon *d;
  uint64_t serial;
  char *buf;
  size_t len;
  bool closing;
  struct client *next;
} client;

enum wait_kind { W_STATUS = 1, W_LOOKUP, W_PING_LOOKUP, W_PING };

typedef struct waiter {
  uint8_t kind;
  uint64_t client; /* serial */
  char reqid[80];  /* the request's id, as JSON text */
  int64_t cmd;     /* engine command awaited (0 for W_STATUS) */
  uint64_t deadline;
  dht_peer peer; /* W_PING_LOOKUP: whose record */
} waiter;

typedef struct usock {
  uv_udp_t h;
  dht_addr bound;
  rd_daemon *d;
} usock;

typedef struct sendreq {
  uv_udp_send_t req;
  rd_daemon *d;
  uint16_t len;
  uint8_t data[DHT_MAX_PKT];
} sendreq;

struct rd_daemon {
  uv_loop_t loop;
  node_config cfg;
  int argc;
  char **argv;
  dht *e;
  dht_identity ident;
  char idtext[NODE_IDTEXT_LEN + 1];
  int lock_fd;
  char sock_path[PATH_MAX], snap_path[PATH_MAX];
  usock socks[NODE_MAX_LISTEN];
  int nsocks;
  uv_timer_t timer, tick, snap;
  uv_signal_t sig_term, sig_int, sig_hup;
  uv_pipe_t ctl;
  bool ctl_open;
  client *clients;
  int nclients;
  uint64_t next_serial;
  waiter waiters[MAX_WAITERS];
  int nwaiters;
  int sends_inflight;
  uint64_t start_ms;
  /* bootstrap */
  enum { ST_STARTING, ST_BOOTSTRAPPING, ST_READY, ST_ALONE } state;
  int64_t boot_cmd;
  uint64_t boot_retry_at, boot_backoff;
  dht_peer extra_boot[NODE_MAX_BOOTSTRAP]; /* added at run time */
  int nextra;
  /* our record */
  dht_typed_addr addrs[DHT_RECORD_MAX_ADDRS];
  int naddrs;
  bool need_publish;
  struct vote {
    dht_addr seen;
    uint8_t reporter[DHT_ID_LEN];
  } votes[VOTES];
  int nvotes, vote_next;
  /* LAN discovery */
  uv_udp_t lan;
  bool lan_open;
  uint64_t lan_next;
  /* counters the engine cannot see */
  uint64_t send_dropped, send_errors, recv_truncated, recv_errors, ctl_refused, ctl_bad;
  uint64_t lan_heard;
  bool stopping;
  int exit_code;
  /* replies made while libuv hands us one recvmmsg batch go out in one
   * sendmmsg when the batch ends: one system call instead of one each */
  bool batching;
  int nbatch;
  usock *batch_sock;
  struct mmsghdr batch_msg[SEND_BATCH];
  struct iovec batch_iov[SEND_BATCH];
  struct sockaddr_storage batch_addr[SEND_BATCH];
  uint8_t batch_data[SEND_BATCH][DHT_MAX_PKT];
  uint8_t recvbuf[RECV_BUF];
};

static const char *state_name(int s) {
  static const char *const n[] = {"starting", "bootstrapping", "ready", "alone"};
  return n[s];
}

static void pump(rd_daemon *d);
static void shutdown_daemon(rd_daemon *d, int code);

/* ---- UDP --------------------------------------------------------------- */

static void on_sent(uv_udp_send_t *req, int status) {
  sendreq *s = (sendreq *)req;
  s->d->sends_inflight--;
  if (status < 0 && status != UV_ECANCELED)
    s->d->send_errors++;
  free(s);
}

static usock *sock_for(rd_daemon *d, const dht_addr *to) {
  usock *any = NULL;
  for (int i = 0; i < d->nsocks; i++) {
    if (d->socks[i].bound.family == to->family)
      return &d->socks[i];
    if (d->socks[i].bound.family == DHT_AF_INET6 && node_addr_is_any(&d->socks[i].bound))
      any = &d->socks[i]; /* dual-stack [::] socket can send to IPv4 */
  }
  return any;
}

/* The socket is busy: hand the datagram to libuv's queue, within the cap. */
static void send_queued(rd_daemon *d, usock *s, const struct sockaddr *sa, const uint8_t *buf,
                        size_t len) {
  if (d->sends_inflight >= d->cfg.send_queue) {
    d->send_dropped++;
    return;
  }
  sendreq *r = malloc(sizeof *r);
  if (!r) {
    d->send_dropped++;
    return;
  }
  r->d = d;
  r->len = (uint16_t)len;
  memcpy(r->data, buf, len);
  uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)len);
  if (uv_udp_send(&r->req, &s->h, &b, 1, sa, on_sent) != 0) {
    free(r);
    d->send_errors++;
    return;
  }
  d->sends_inflight++;
}

/* Sends the batch with sendmmsg; what the kernel does not take goes to the
 * queue.  libuv has no sendmmsg before 1.50, so this uses the socket itself
 * (Linux); the queue keeps its order only among queued datagrams, which UDP
 * never promised anyway. */
static void flush_batch(rd_daemon *d) {
  int n = d->nbatch, sent = 0;
  d->nbatch = 0;
  if (n == 0)
    return;
  usock *s = d->batch_sock;
  uv_os_fd_t fd;
  if (d->sends_inflight == 0 && uv_fileno((uv_handle_t *)&s->h, &fd) == 0) {
    while (sent < n) {
      int rv = sendmmsg(fd, d->batch_msg + sent, (unsigned)(n - sent), MSG_DONTWAIT);
      if (rv > 0) {
        sent += rv;
        continue;
      }
      if (rv < 0 && errno == EINTR)
        continue;
      if (rv < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        /* one bad destination: count it and go on with the rest */
        d->send_errors++;
        sent++;
        continue;
      }
      break;
    }
  }
  for (int i = sent; i < n; i++)
    send_queued(d, s, (const struct sockaddr *)&d->batch_addr[i], d->batch_data[i],
                d->batch_iov[i].iov_len);
}

static void send_dgram(rd_daemon *d, const dht_addr *to, const uint8_t *buf, size_t len) {
  usock *s = sock_for(d, to);
  if (!s) {
    d->send_errors++;
    return;
  }
  struct sockaddr_storage ss;
  socklen_t sl;
  dht_addr dst = *to;
  if (dst.family == DHT_AF_INET && s->bound.family == DHT_AF_INET6) {
    /* v4-mapped destination for a dual-stack socket */
    uint8_t ip4[4];
    memcpy(ip4, dst.ip, 4);
    memset(dst.ip, 0, 16);
    dst.ip[10] = dst.ip[11] = 0xff;
    memcpy(dst.ip + 12, ip4, 4);
    dst.family = DHT_AF_INET6;
  }
  node_addr_to_sockaddr(&dst, &ss, &sl);
  if (d->batching) {
    if (d->nbatch == SEND_BATCH || (d->nbatch && d->batch_sock != s))
      flush_batch(d);
    int i = d->nbatch++;
    d->batch_sock = s;
    memcpy(d->batch_data[i], buf, len);
    d->batch_addr[i] = ss;
    d->batch_iov[i].iov_base = d->batch_data[i];
    d->batch_iov[i].iov_len = len;
    memset(&d->batch_msg[i], 0, sizeof d->batch_msg[i]);
    d->batch_msg[i].msg_hdr.msg_name = &d->batch_addr[i];
    d->batch_msg[i].msg_hdr.msg_namelen = sl;
    d->batch_msg[i].msg_hdr.msg_iov = &d->batch_iov[i];
    d->batch_msg[i].msg_hdr.msg_iovlen = 1;
    return;
  }
  uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
  int rv = uv_udp_try_send(&s->h, &b, 1, (const struct sockaddr *)&ss);
  if (rv >= 0)
    return;
  if (rv != UV_EAGAIN && rv != UV_ENOSYS) {
    d->send_errors++;
    NLOG(NODE_LOG_DEBUG, "net", "send failed: %s", uv_strerror(rv));
    return;
  }
  send_queued(d, s, (const struct sockaddr *)&ss, buf, len);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  usock *s = h->data;
  *buf = uv_buf_init((char *)s->d->recvbuf, sizeof s->d->recvbuf);
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags) {
  usock *s = h->data;
  rd_daemon *d = s->d;
  if (nread < 0) {
    d->recv_errors++;
    return;
  }
  if (!addr) {
    /* the end of a recvmmsg batch (an empty datagram has an address): send
     * what the batch produced, then run the full pump */
    if (d->batching) {
      d->batching = false;
      flush_batch(d);
      pump(d);
    }
    return;
  }
  if (flags & UV_UDP_PARTIAL) {
    d->recv_truncated++;
    return;
  }
  dht_addr from;
  if (node_addr_from_sockaddr(addr, &from) != 0)
    return;
  int rv = dht_read_pkt(d->e, &from, (const uint8_t *)buf->base, (size_t)nread,
                        (dht_ts)uv_now(&d->loop));
  if (rv <= DHT_ERR_FATAL) {
    NLOG(NODE_LOG_ERROR, "dht", "engine failed: %s", dht_strerror(rv));
    shutdown_daemon(d, 1);
    return;
  }
  if (flags & UV_UDP_MMSG_CHUNK) {
    /* inside a recvmmsg batch: only collect the replies; events, commands
     * and the timer wait for the end of the batch */
    d->batching = true;
    uint8_t out[DHT_MAX_PKT];
    dht_addr to;
    dht_ssize n;
    while ((n = dht_write_pkt(d->e, &to, out, sizeof out, (dht_ts)uv_now(&d->loop))) > 0)
      send_dgram(d, &to, out, (size_t)n);
    return;
  }
  pump(d);
}

static int open_sockets(rd_daemon *d) {
  bool have_v4 = false;
  for (int i = 0; i < d->cfg.nlisten; i++)
    have_v4 |= d->cfg.listen[i].family == DHT_AF_INET;
  for (int i = 0; i < d->cfg.nlisten; i++) {
    usock *s = &d->socks[d->nsocks];
    const dht_addr *a = &d->cfg.listen[i];
    char txt[DHT_ADDR_STRLEN];
    dht_addr_fmt(a, txt, sizeof txt);
    int rv = uv_udp_init_ex(&d->loop, &s->h,
                            (a->family == DHT_AF_INET ? AF_INET : AF_INET6) | UV_UDP_RECVMMSG);
    if (rv) {
      NLOG(NODE_LOG_ERROR, "net", "socket for %s: %s", txt, uv_strerror(rv));
      return -1;
    }
    s->h.data = s;
    s->d = d;
    d->nsocks++;
    struct sockaddr_storage ss;
    socklen_t sl;
    node_addr_to_sockaddr(a, &ss, &sl);
    unsigned fl = a->family == DHT_AF_INET6 && have_v4 ? UV_UDP_IPV6ONLY : 0;
    if ((rv = uv_udp_bind(&s->h, (const struct sockaddr *)&ss, fl)) != 0) {
      NLOG(NODE_LOG_ERROR, "net", "cannot listen on %s: %s", txt, uv_strerror(rv));
      return -1;
    }
    /* the bound address, with the port the kernel chose for port 0 */
    struct sockaddr_storage got;
    int gl = sizeof got;
    if (uv_udp_getsockname(&s->h, (struct sockaddr *)&got, &gl) == 0)
      node_addr_from_sockaddr((struct sockaddr *)&got, &s->bound);
    else
      s->bound = *a;
    if ((rv = uv_udp_recv_start(&s->h, on_alloc, on_recv)) != 0) {
      NLOG(NODE_LOG_ERROR, "net", "receive on %s: %s", txt, uv_strerror(rv));
      return -1;
    }
    dht_addr_fmt(&s->bound, txt, sizeof txt);
    NLOG(NODE_LOG_INFO, "net", "listening on %s", txt);
  }
  return 0;
}

/* ---- our addresses and record ------------------------------------------ */

static bool addr_known(const rd_daemon *d, const dht_addr *a) {
  for (int i = 0; i < d->naddrs; i++)
    if (dht_addr_eq(&d->addrs[i].addr, a))
      return true;
  return false;
}

static void add_addr(rd_daemon *d, uint8_t type, const dht_addr *a) {
  if (addr_known(d, a) || d->naddrs >= DHT_RECORD_MAX_ADDRS)
    return;
  d->addrs[d->naddrs].type = type;
  d->addrs[d->naddrs].addr = *a;
  d->naddrs++;
  dht_set_addrs(d->e, d->addrs, (size_t)d->naddrs);
  d->need_publish = true;
}

/* Bound (non-wildcard) addresses are ours for sure: LAN when private or
 * loopback, observed (public) otherwise. */
static void init_addrs(rd_daemon *d) {
  for (int i = 0; i < d->nsocks; i++) {
    const dht_addr *a = &d->socks[i].bound;
    if (node_addr_is_any(a))
      continue;
    add_addr(
        d, dht_addr_is_private(a) || dht_addr_is_loopback(a) ? DHT_ADDR_LAN : DHT_ADDR_OBSERVED, a);
  }
}

/* A PONG told us how a peer sees us.  Two different peers agreeing make it
 * an address of ours (nat/ will refine this into real NAT classification). */
static void on_seen(rd_daemon *d, const dht_addr *seen, const uint8_t reporter[DHT_ID_LEN]) {
  for (int i = 0; i < d->nvotes; i++)
    if (memcmp(d->votes[i].reporter, reporter, DHT_ID_LEN) == 0 &&
        dht_addr_eq(&d->votes[i].seen, seen))
      return;
  struct vote *v = &d->votes[d->vote_next];
  v->seen = *seen;
  memcpy(v->reporter, reporter, DHT_ID_LEN);
  d->vote_next = (d->vote_next + 1) % VOTES;
  if (d->nvotes < VOTES)
    d->nvotes++;
  int agree = 0;
  for (int i = 0; i < d->nvotes; i++)
    agree += dht_addr_eq(&d->votes[i].seen, seen);
  if (agree >= 2 && !addr_known(d, seen)) {
    char txt[DHT_ADDR_STRLEN];
    NLOG(NODE_LOG_INFO, "net", "peers see us at %s", dht_addr_fmt(seen, txt, sizeof txt));
    add_addr(d,
             dht_addr_is_private(seen) || dht_addr_is_loopback(seen) ? DHT_ADDR_LAN
                                                                     : DHT_ADDR_OBSERVED,
             seen);
  }
}

/* ---- snapshots ------------------------------------------------------------- */

static void save_table(rd_daemon *d) {
  size_t need = 0;
  uint8_t small[16];
  dht_save_table(d->e, small, 0, &need);
  uint8_t *buf = malloc(need);
  if (!buf)
    return;
  dht_ssize n = dht_save_table(d->e, buf, need, NULL);
  if (n > 0) {
    int rv = node_write_atomic(d->snap_path, buf, (size_t)n, 0600);
    if (rv)
      NLOG(NODE_LOG_WARN, "data", "cannot save %s: %s", d->snap_path, strerror(-rv));
    else
      NLOG(NODE_LOG_DEBUG, "data", "saved the routing table (%zu bytes)", (size_t)n);
  }
  free(buf);
}

static void load_table(rd_daemon *d) {
  uint8_t *buf;
  size_t len;
  int rv = node_read_file(d->snap_path, &buf, &len, 1 << 20);
  if (rv == -ENOENT)
    return;
  if (rv) {
    NLOG(NODE_LOG_WARN, "data", "cannot read %s: %s", d->snap_path, strerror(-rv));
    return;
  }
  int n = dht_load_table(d->e, buf, len, (dht_ts)uv_now(&d->loop));
  free(buf);
  if (n < 0)
    NLOG(NODE_LOG_WARN, "data", "%s is damaged (%s): starting without it", d->snap_path,
         dht_strerror(n));
  else
    NLOG(NODE_LOG_INFO, "data", "loaded %d contacts from %s", n, d->snap_path);
}

/* ---- bootstrap ------------------------------------------------------------ */

static void start_bootstrap(rd_daemon *d) {
  dht_peer peers[2 * NODE_MAX_BOOTSTRAP];
  size_t n = 0;
  for (int i = 0; i < d->cfg.nbootstrap; i++)
    peers[n++] = d->cfg.bootstrap[i];
  for (int i = 0; i < d->nextra; i++)
    peers[n++] = d->extra_boot[i];
  dht_stats st;
  dht_get_stats(d->e, &st);
  if (n == 0 && st.rt_size == 0) {
    d->state = d->state == ST_READY ? ST_READY : ST_ALONE;
    return;
  }
  int64_t id = dht_bootstrap(d->e, peers, n, (dht_ts)uv_now(&d->loop));
  if (id > 0) {
    d->boot_cmd = id;
    if (d->state != ST_READY)
      d->state = ST_BOOTSTRAPPING;
  }
}

/* ---- control clients: writing --------------------------------------------- */

static client *client_by_serial(rd_daemon *d, uint64_t serial) {
  for (client *c = d->clients; c; c = c->next)
    if (c->serial == serial && !c->closing)
      return c;
  return NULL;
}

static void on_written(uv_write_t *req, int status) {
  (void)status;
  free(req->data);
  free(req);
}

static void client_write(client *c, const char *s, size_t n) {
  if (!c || c->closing)
    return;
  uv_write_t *req = malloc(sizeof *req);
  char *copy = malloc(n + 1);
  if (!req || !copy) {
    free(req);
    free(copy);
    return;
  }
  memcpy(copy, s, n);
  copy[n] = '\n';
  req->data = copy;
  uv_buf_t b = uv_buf_init(copy, (unsigned)n + 1);
  if (uv_write(req, (uv_stream_t *)&c->pipe, &b, 1, on_written) != 0) {
    free(copy);
    free(req);
  }
}

/* Starts a reply object: {"id": <reqid>, ...  The caller adds the rest. */
static void reply_begin(node_jw *w, const char *reqid) {
  node_jw_init(w, LINE_MAX_BYTES);
  node_jw_obj(w);
  node_jw_key(w, "id");
  node_jw_raw(w, reqid, strlen(reqid));
}

static void reply_end(client *c, node_jw *w) {
  node_jw_obj_end(w);
  size_t n;
  const char *s = node_jw_done(w, &n);
  if (s)
    client_write(c, s, n);
  node_jw_free(w);
}

static void reply_error(client *c, const char *reqid, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reply_error(client *c, const char *reqid, const char *code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  node_jw w;
  reply_begin(&w, reqid);
  node_jw_kbool(&w, "ok", false);
  node_jw_key(&w, "error");
  node_jw_obj(&w);
  node_jw_kstr(&w, "code", code);
  node_jw_kstr(&w, "message", msg);
  node_jw_obj_end(&w);
  reply_end(c, &w);
}

/* {"id":..,"ok":true,"result":{   -- the caller writes fields, then result_end */
static void result_begin(node_jw *w, const char *reqid) {
  reply_begin(w, reqid);
  node_jw_kbool(w, "ok", true);
  node_jw_key(w, "result");
  node_jw_obj(w);
}

static void result_end(client *c, node_jw *w) {
  node_jw_obj_end(w);
  reply_end(c, w);
}

static void jw_addr(node_jw *w, const char *k, const dht_addr *a) {
  char txt[DHT_ADDR_STRLEN];
  node_jw_kstr(w, k, dht_addr_fmt(a, txt, sizeof txt));
}

static const char *addr_type_name(int t) {
  switch (t) {
  case DHT_ADDR_LAN:
    return "lan";
  case DHT_ADDR_OBSERVED:
    return "observed";
  case DHT_ADDR_MAPPED:
    return "mapped";
  case DHT_ADDR_RELAY:
    return "relay";
  }
  return "unknown";
}

static void jw_typed_addrs(node_jw *w, const char *k, const dht_typed_addr *a, int n) {
  node_jw_key(w, k);
  node_jw_arr(w);
  for (int i = 0; i < n; i++) {
    node_jw_obj(w);
    node_jw_kstr(w, "type", addr_type_name(a[i].type));
    jw_addr(w, "addr", &a[i].addr);
    node_jw_obj_end(w);
  }
  node_jw_arr_end(w);
}

static void hex(const uint8_t *p, size_t n, char *out) {
  static const char h[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = h[p[i] >> 4];
    out[2 * i + 1] = h[p[i] & 15];
  }
  out[2 * n] = 0;
}

/* ---- commands ------------------------------------------------------------ */

static waiter *add_waiter(rd_daemon *d, client *c, const char *reqid, int kind, int64_t cmd,
                          uint64_t timeout_ms) {
  if (d->nwaiters >= MAX_WAITERS) {
    reply_error(c, reqid, "busy", "too many commands in flight (%d)", MAX_WAITERS);
    return NULL;
  }
  waiter *w = &d->waiters[d->nwaiters++];
  memset(w, 0, sizeof *w);
  w->kind = (uint8_t)kind;
  w->client = c->serial;
  snprintf(w->reqid, sizeof w->reqid, "%s", reqid);
  w->cmd = cmd;
  w->deadline = uv_now(&d->loop) + timeout_ms;
  return w;
}

static void remove_waiter(rd_daemon *d, waiter *w) {
  *w = d->waiters[--d->nwaiters];
}

static void write_status(rd_daemon *d, client *c, const char *reqid) {
  dht_stats st;
  dht_get_stats(d->e, &st);
  char nid[2 * DHT_ID_LEN + 1];
  hex(dht_self_id(d->e), DHT_ID_LEN, nid);
  node_jw w;
  result_begin(&w, reqid);
  node_jw_kstr(&w, "id", d->idtext);
  node_jw_kstr(&w, "node_id", nid);
  node_jw_kstr(&w, "version", ROOST_VERSION);
  node_jw_kuint(&w, "uptime_s", (uv_now(&d->loop) - d->start_ms) / 1000);
  node_jw_kstr(&w, "state", state_name(d->state));
  node_jw_kstr(&w, "mode", d->cfg.server_mode ? "server" : "client");
  node_jw_kint(&w, "table_size", st.rt_size);
  node_jw_kint(&w, "buckets", st.rt_buckets);
  node_jw_kint(&w, "records_stored", st.records_stored);
  node_jw_key(&w, "listen");
  node_jw_arr(&w);
  for (int i = 0; i < d->nsocks; i++) {
    char txt[DHT_ADDR_STRLEN];
    node_jw_str(&w, dht_addr_fmt(&d->socks[i].bound, txt, sizeof txt));
  }
  node_jw_arr_end(&w);
  jw_typed_addrs(&w, "addresses", d->addrs, d->naddrs);
  node_jw_kuint(&w, "rx_packets", st.rx_packets);
  node_jw_kuint(&w, "tx_packets", st.tx_packets);
  /* the same reasons as roost_dropped_total in metrics */
  uint64_t dropped = st.drop_ratelimit + st.drop_size + st.drop_version + st.drop_self +
                     st.drop_badkey + st.drop_decrypt + st.drop_replay + st.drop_malformed +
                     st.drop_unknown_type + st.drop_unknown_txid + st.drop_bad_token +
                     st.drop_bad_record + st.drop_out_full + st.drop_event_full + d->send_dropped +
                     d->recv_truncated;
  node_jw_kuint(&w, "dropped", dropped);
  result_end(c, &w);
}

static void cmd_peers(rd_daemon *d, client *c, const char *reqid) {
  dht_peer_info *info = calloc(256 * DHT_K_MAX, sizeof *info);
  if (!info) {
    reply_error(c, reqid, "failed", "out of memory");
    return;
  }
  int n = dht_table(d->e, info, 256 * DHT_K_MAX);
  dht_ts now = (dht_ts)uv_now(&d->loop);
  node_jw w;
  node_jw_init(&w, 8 << 20); /* a full table is larger than a normal line */
  node_jw_obj(&w);
  node_jw_key(&w, "id");
  node_jw_raw(&w, reqid, strlen(reqid));
  node_jw_kbool(&w, "ok", true);
  node_jw_key(&w, "result");
  node_jw_obj(&w);
  node_jw_key(&w, "peers");
  node_jw_arr(&w);
  for (int i = 0; i < n; i++) {
    char idt[NODE_IDTEXT_LEN + 1], nid[2 * DHT_ID_LEN + 1];
    node_idtext_encode(info[i].c.pk, idt);
    hex(info[i].c.id, DHT_ID_LEN, nid);
    node_jw_obj(&w);
    node_jw_kstr(&w, "id", idt);
    node_jw_kstr(&w, "node_id", nid);
    jw_addr(&w, "addr", &info[i].c.addr);
    node_jw_key(&w, "rtt_ms");
    if (info[i].rtt_ms >= 0)
      node_jw_int(&w, info[i].rtt_ms);
    else
      node_jw_null(&w);
    node_jw_key(&w, "last_reply_s");
    if (info[i].last_reply_ms > 0)
      node_jw_int(&w, (now - info[i].last_reply_ms) / 1000);
    else
      node_jw_null(&w);
    node_jw_kint(&w, "fails", info[i].fails);
    node_jw_obj_end(&w);
  }
  node_jw_arr_end(&w);
  node_jw_obj_end(&w);
  reply_end(c, &w);
  free(info);
}

static void write_metrics(rd_daemon *d, client *c, const char *reqid) {
  dht_stats st;
  dht_get_stats(d->e, &st);
  char *t = malloc(16384);
  if (!t) {
    reply_error(c, reqid, "failed", "out of memory");
    return;
  }
  size_t n = 0, cap = 16384;
#define M(...) n += (size_t)snprintf(t + n, n < cap ? cap - n : 0, __VA_ARGS__)
#define COUNTER(name, help, v)                                                                     \
  M("# HELP roost_" name " " help "\n# TYPE roost_" name " counter\nroost_" name " %llu\n",        \
    (unsigned long long)(v))
#define GAUGE(name, help, v)                                                                       \
  M("# HELP roost_" name " " help "\n# TYPE roost_" name " gauge\nroost_" name " %lld\n",          \
    (long long)(v))
  COUNTER("rx_packets_total", "Datagrams received.", st.rx_packets);
  COUNTER("rx_bytes_total", "Bytes received.", st.rx_bytes);
  COUNTER("tx_packets_total", "Datagrams sent.", st.tx_packets);
  COUNTER("tx_bytes_total", "Bytes sent.", st.tx_bytes);
  M("# HELP roost_dropped_total Datagrams dropped, by the first check that failed.\n"
    "# TYPE roost_dropped_total counter\n");
  const struct {
    const char *r;
    uint64_t v;
  } drops[] = {
      {"ratelimit", st.drop_ratelimit},
      {"size", st.drop_size},
      {"version", st.drop_version},
      {"self", st.drop_self},
      {"bad_key", st.drop_badkey},
      {"decrypt", st.drop_decrypt},
      {"replay", st.drop_replay},
      {"malformed", st.drop_malformed},
      {"unknown_type", st.drop_unknown_type},
      {"unknown_txid", st.drop_unknown_txid},
      {"bad_token", st.drop_bad_token},
      {"bad_record", st.drop_bad_record},
      {"engine_queue_full", st.drop_out_full},
      {"event_queue_full", st.drop_event_full},
      {"send_queue_full", d->send_dropped},
      {"truncated", d->recv_truncated},
  };
  for (size_t i = 0; i < sizeof drops / sizeof drops[0]; i++)
    M("roost_dropped_total{reason=\"%s\"} %llu\n", drops[i].r, (unsigned long long)drops[i].v);
  COUNTER("requests_in_total", "Requests answered.", st.requests_in);
  COUNTER("requests_out_total", "Requests sent.", st.requests_out);
  COUNTER("replies_in_total", "Replies received.", st.replies_in);
  COUNTER("timeouts_total", "Requests that timed out.", st.timeouts);
  COUNTER("amplification_limited_total", "Replies shrunk for an unproven address.",
          st.amplification_limited);
  COUNTER("lookups_total", "Lookups started.", st.lookups_started);
  COUNTER("records_accepted_total", "Peer records accepted for storage.", st.records_accepted);
  COUNTER("records_rejected_total", "Peer records refused.", st.records_rejected);
  COUNTER("send_errors_total", "Datagrams the kernel refused to send.", d->send_errors);
  COUNTER("recv_errors_total", "Socket receive errors.", d->recv_errors);
  COUNTER("control_refused_total", "Control connections refused (wrong uid or too many).",
          d->ctl_refused);
  COUNTER("lan_announcements_heard_total", "LAN discovery announcements heard.", d->lan_heard);
  GAUGE("routing_table_contacts", "Contacts in the routing table.", st.rt_size);
  GAUGE("routing_table_buckets", "Buckets in the routing table.", st.rt_buckets);
  GAUGE("records_stored", "Peer records held for other nodes.", st.records_stored);
  GAUGE("uptime_seconds", "Seconds since roostd started.",
        (long long)((uv_now(&d->loop) - d->start_ms) / 1000));
  GAUGE("ready", "1 when the node has joined the network.", d->state == ST_READY);
#undef GAUGE
#undef COUNTER
#undef M
  node_jw w;
  result_begin(&w, reqid);
  node_jw_key(&w, "text");
  node_jw_strn(&w, t, n < cap ? n : cap - 1);
  result_end(c, &w);
  free(t);
}

static void write_record(node_jw *w, const dht_lookup_result *r, uint64_t unix_now) {
  char idt[NODE_IDTEXT_LEN + 1];
  node_idtext_encode(r->record.pk, idt);
  node_jw_kstr(w, "id", idt);
  node_jw_kbool(w, "found", true);
  node_jw_kuint(w, "seq", r->record.seq);
  node_jw_kint(w, "expires_in_s", (int64_t)r->record.expires_unix_s - (int64_t)unix_now);
  node_jw_kbool(w, "reachable", r->record.flags & DHT_REC_REACHABLE);
  jw_typed_addrs(w, "addresses", r->record.addrs, r->record.naddrs);
  node_jw_kint(w, "rounds", r->rounds);
  node_jw_kint(w, "messages", r->messages);
  node_jw_kint(w, "time_ms", r->elapsed_ms);
}

static bool parse_id_arg(client *c, const char *reqid, const char *s, const node_jt *t, int n,
                         int args, const char *key, uint8_t pk[DHT_PK_LEN]) {
  char text[128];
  int i = args >= 0 ? node_json_get(s, t, n, args, key) : -1;
  if (i < 0 || node_json_str(s, t, i, text, sizeof text) < 0) {
    reply_error(c, reqid, "bad_request", "missing string argument '%s'", key);
    return false;
  }
  int rv = node_idtext_decode(text, pk);
  if (rv == -1) {
    reply_error(c, reqid, "bad_argument", "'%s' is not a roost ID (%d characters a-z, 2-7)", text,
                NODE_IDTEXT_LEN);
    return false;
  }
  if (rv == -2) {
    reply_error(c, reqid, "bad_argument", "the ID '%s' has a typo (its checksum does not match)",
                text);
    return false;
  }
  return true;
}

static uint64_t unix_now_s(void) {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  return (uint64_t)tv.tv_sec;
}

static void handle_request(rd_daemon *d, client *c, const char *line, size_t len) {
  node_jt t[256];
  int n = node_json_parse(line, len, t, 256);
  if (n < 0 || t[0].type != NODE_JSON_OBJ) {
    d->ctl_bad++;
    reply_error(c, "null", "bad_request", "a request is one JSON object per line");
    return;
  }
  char reqid[80] = "null";
  int iid = node_json_get(line, t, n, 0, "id");
  if (iid > 0) {
    int64_t v;
    char sv[64];
    if (node_json_int(line, t, iid, &v) == 0) {
      snprintf(reqid, sizeof reqid, "%lld", (long long)v);
    } else if (node_json_str(line, t, iid, sv, sizeof sv) >= 0) {
      node_jw w;
      node_jw_init(&w, sizeof reqid);
      node_jw_str(&w, sv);
      size_t l;
      const char *q = node_jw_done(&w, &l);
      if (q && l < sizeof reqid)
        memcpy(reqid, q, l + 1);
      node_jw_free(&w);
    }
  }
  char cmd[32];
  int icmd = node_json_get(line, t, n, 0, "cmd");
  if (icmd < 0 || node_json_str(line, t, icmd, cmd, sizeof cmd) < 0) {
    reply_error(c, reqid, "bad_request", "missing string field 'cmd'");
    return;
  }
  int args = node_json_get(line, t, n, 0, "args");
  if (args >= 0 && t[args].type != NODE_JSON_OBJ) {
    reply_error(c, reqid, "bad_request", "'args' must be an object");
    return;
  }
  dht_ts now = (dht_ts)uv_now(&d->loop);
  NLOG(NODE_LOG_DEBUG, "ctl", "request %s %s", reqid, cmd);

  if (!strcmp(cmd, "id")) {
    char nid[2 * DHT_ID_LEN + 1];
    hex(dht_self_id(d->e), DHT_ID_LEN, nid);
    node_jw w;
    result_begin(&w, reqid);
    node_jw_kstr(&w, "id", d->idtext);
    node_jw_kstr(&w, "node_id", nid);
    result_end(c, &w);
  } else if (!strcmp(cmd, "status")) {
    bool wait = false;
    int64_t timeout = 30000;
    int i = args >= 0 ? node_json_get(line, t, n, args, "wait") : -1;
    if (i >= 0 && node_json_bool(line, t, i, &wait) != 0) {
      reply_error(c, reqid, "bad_request", "'wait' must be true or false");
      return;
    }
    i = args >= 0 ? node_json_get(line, t, n, args, "timeout_ms") : -1;
    if (i >= 0 &&
        (node_json_int(line, t, i, &timeout) != 0 || timeout < 0 || timeout > 24 * 3600 * 1000)) {
      reply_error(c, reqid, "bad_request", "'timeout_ms' must be a number of milliseconds");
      return;
    }
    if (!wait || d->state == ST_READY)
      write_status(d, c, reqid);
    else
      add_waiter(d, c, reqid, W_STATUS, 0, (uint64_t)timeout);
  } else if (!strcmp(cmd, "peers")) {
    cmd_peers(d, c, reqid);
  } else if (!strcmp(cmd, "metrics")) {
    write_metrics(d, c, reqid);
  } else if (!strcmp(cmd, "lookup") || !strcmp(cmd, "ping")) {
    uint8_t pk[DHT_PK_LEN], id[DHT_ID_LEN];
    if (!parse_id_arg(c, reqid, line, t, n, args, "id", pk))
      return;
    dht_id_from_pk(id, pk);
    bool ping = cmd[0] == 'p';
    char addr[80];
    int64_t timeout = 30000;
    int it = args >= 0 ? node_json_get(line, t, n, args, "timeout_ms") : -1;
    if (it >= 0 && (node_json_int(line, t, it, &timeout) != 0 || timeout < 1 || timeout > 600000)) {
      reply_error(c, reqid, "bad_request", "'timeout_ms' must be 1 to 600000 milliseconds");
      return;
    }
    int ia = args >= 0 ? node_json_get(line, t, n, args, "addr") : -1;
    if (ping && ia >= 0) {
      dht_peer p;
      memcpy(p.pk, pk, DHT_PK_LEN);
      if (node_json_str(line, t, ia, addr, sizeof addr) < 0 || node_addr_parse(addr, &p.addr)) {
        reply_error(c, reqid, "bad_argument", "'addr' must be a numeric HOST:PORT");
        return;
      }
      int64_t cid = dht_ping(d->e, &p, now);
      if (cid < 0) {
        reply_error(c, reqid, "failed", "cannot ping: %s", dht_strerror((int)cid));
        return;
      }
      waiter *w = add_waiter(d, c, reqid, W_PING, cid, (uint64_t)timeout);
      if (w)
        w->peer = p;
    } else {
      int64_t cid = dht_get_record(d->e, id, now);
      if (cid < 0) {
        reply_error(c, reqid, cid == DHT_ERR_FULL ? "busy" : "failed", "cannot look up: %s",
                    dht_strerror((int)cid));
        return;
      }
      waiter *w = add_waiter(d, c, reqid, ping ? W_PING_LOOKUP : W_LOOKUP, cid, (uint64_t)timeout);
      if (w)
        memcpy(w->peer.pk, pk, DHT_PK_LEN);
    }
  } else if (!strcmp(cmd, "bootstrap_add")) {
    char spec[256], why[256];
    dht_peer p;
    int i = args >= 0 ? node_json_get(line, t, n, args, "peer") : -1;
    if (i < 0 || node_json_str(line, t, i, spec, sizeof spec) < 0) {
      reply_error(c, reqid, "bad_request", "missing string argument 'peer'");
      return;
    }
    if (node_peer_parse(spec, &p, why, sizeof why) != 0) {
      reply_error(c, reqid, "bad_argument", "%s", why);
      return;
    }
    if (!memcmp(p.pk, d->ident.pk, DHT_PK_LEN)) {
      reply_error(c, reqid, "bad_argument", "that is this node's own ID");
      return;
    }
    bool dup = false;
    for (int k = 0; k < d->nextra; k++)
      dup |= !memcmp(d->extra_boot[k].pk, p.pk, DHT_PK_LEN) &&
             dht_addr_eq(&d->extra_boot[k].addr, &p.addr);
    if (!dup) {
      if (d->nextra == NODE_MAX_BOOTSTRAP)
        memmove(d->extra_boot, d->extra_boot + 1, (NODE_MAX_BOOTSTRAP - 1) * sizeof p);
      else
        d->nextra++;
      d->extra_boot[d->nextra - 1] = p;
    }
    start_bootstrap(d);
    node_jw w;
    result_begin(&w, reqid);
    node_jw_kbool(&w, "added", true);
    result_end(c, &w);
  } else if (!strcmp(cmd, "stop")) {
    node_jw w;
    result_begin(&w, reqid);
    result_end(c, &w);
    NLOG(NODE_LOG_INFO, "ctl", "stop requested");
    shutdown_daemon(d, 0);
  } else {
    reply_error(c, reqid, "unknown_command", "unknown command '%s'", cmd);
  }
}

/* ---- engine events ---------------------------------------------------------- */

static void on_event(rd_daemon *d, const dht_event *ev) {
  dht_ts now = (dht_ts)uv_now(&d->loop);
  switch (ev->type) {
  case DHT_EV_BOOTSTRAP:
    if (ev->cmd != d->boot_cmd)
      break;
    d->boot_cmd = 0;
    if (ev->status == 0 && ev->u.bootstrap.table_size > 0) {
      if (d->state != ST_READY)
        NLOG(NODE_LOG_INFO, "dht", "joined: %d contacts", ev->u.bootstrap.table_size);
      d->state = ST_READY;
      d->boot_backoff = BOOT_RETRY_MIN_MS;
      d->boot_retry_at = 0;
      d->need_publish = true;
    } else {
      if (d->state != ST_READY)
        d->state = ST_BOOTSTRAPPING;
      d->boot_retry_at = uv_now(&d->loop) + d->boot_backoff;
      NLOG(NODE_LOG_WARN, "dht", "bootstrap found no peers (%s); retrying in %llu s",
           dht_strerror(ev->status), (unsigned long long)d->boot_backoff / 1000);
      d->boot_backoff =
          d->boot_backoff * 2 > BOOT_RETRY_MAX_MS ? BOOT_RETRY_MAX_MS : d->boot_backoff * 2;
    }
    break;
  case DHT_EV_ADDR_SEEN:
    on_seen(d, &ev->u.seen.seen_as, ev->u.seen.reporter_id);
    break;
  case DHT_EV_LOOKUP:
  case DHT_EV_PING:
    for (int i = 0; i < d->nwaiters; i++) {
      waiter *w = &d->waiters[i];
      if (w->cmd != ev->cmd || w->kind == W_STATUS)
        continue;
      client *c = client_by_serial(d, w->client);
      if (w->kind == W_LOOKUP || w->kind == W_PING_LOOKUP) {
        const dht_lookup_result *r = ev->u.lookup;
        if (!r || !r->has_record) {
          if (c)
            reply_error(c, w->reqid, ev->status == DHT_ERR_TIMEOUT ? "timeout" : "not_found",
                        "no peer record found for that ID (%d requests sent)", r ? r->messages : 0);
          remove_waiter(d, w);
          break;
        }
        if (w->kind == W_LOOKUP) {
          node_jw jw;
          result_begin(&jw, w->reqid);
          write_record(&jw, r, unix_now_s());
          if (c)
            result_end(c, &jw);
          else
            node_jw_free(&jw);
          remove_waiter(d, w);
          break;
        }
        /* W_PING_LOOKUP: ping the first address of the record */
        if (r->record.naddrs == 0) {
          if (c)
            reply_error(c, w->reqid, "not_found", "the peer's record has no address");
          remove_waiter(d, w);
          break;
        }
        w->peer.addr = r->record.addrs[0].addr;
        int64_t cid = dht_ping(d->e, &w->peer, now);
        if (cid < 0) {
          if (c)
            reply_error(c, w->reqid, "failed", "cannot ping: %s", dht_strerror((int)cid));
          remove_waiter(d, w);
          break;
        }
        w->cmd = cid;
        w->kind = W_PING;
        break;
      }
      /* W_PING */
      if (c && ev->status) {
        reply_error(c, w->reqid, "timeout", "no answer (%s)", dht_strerror(ev->status));
      } else if (c) {
        node_jw jw;
        result_begin(&jw, w->reqid);
        node_jw_kint(&jw, "rtt_ms", ev->u.ping.rtt_ms);
        jw_addr(&jw, "addr", &w->peer.addr);
        jw_addr(&jw, "seen_as", &ev->u.ping.seen_as);
        result_end(c, &jw);
      }
      remove_waiter(d, w);
      break;
    }
    break;
  default:
    break;
  }
}

/* ---- the pump and timers ------------------------------------------------- */

static void on_timer(uv_timer_t *t);

static void pump(rd_daemon *d) {
  if (d->stopping)
    return;
  uint8_t buf[DHT_MAX_PKT];
  dht_addr to;
  /* events can issue commands that queue datagrams: loop until both are dry
   * (bounded: each pass either sends or handles an event) */
  for (int pass = 0; pass < 64; pass++) {
    bool any = false;
    dht_ssize n;
    while ((n = dht_write_pkt(d->e, &to, buf, sizeof buf, (dht_ts)uv_now(&d->loop))) > 0) {
      send_dgram(d, &to, buf, (size_t)n);
      any = true;
    }
    dht_event ev;
    while (dht_poll_event(d->e, &ev) == 0) {
      on_event(d, &ev);
      any = true;
    }
    if (d->need_publish && d->state == ST_READY && d->cfg.server_mode) {
      d->need_publish = false;
      dht_put_record(d->e, (dht_ts)uv_now(&d->loop));
      any = true;
    }
    if (!any)
      break;
  }
  dht_ts exp = dht_get_expiry(d->e);
  if (exp == DHT_TS_NEVER) {
    uv_timer_stop(&d->timer);
    return;
  }
  uint64_t now = uv_now(&d->loop);
  uint64_t delay = exp > (dht_ts)now ? (uint64_t)(exp - (dht_ts)now) : 0;
  uv_timer_start(&d->timer, on_timer, delay, 0);
}

static void on_timer(uv_timer_t *t) {
  rd_daemon *d = t->data;
  int rv = dht_handle_expiry(d->e, (dht_ts)uv_now(&d->loop));
  if (rv <= DHT_ERR_FATAL) {
    NLOG(NODE_LOG_ERROR, "dht", "engine failed: %s", dht_strerror(rv));
    shutdown_daemon(d, 1);
    return;
  }
  pump(d);
}

static void lan_announce(rd_daemon *d);

/* Once a second: waiters' progress and deadlines, bootstrap retries, LAN. */
static void on_tick(uv_timer_t *t) {
  rd_daemon *d = t->data;
  uint64_t now = uv_now(&d->loop);
  for (int i = 0; i < d->nwaiters;) {
    waiter *w = &d->waiters[i];
    client *c = client_by_serial(d, w->client);
    if (w->kind == W_STATUS && c && d->state == ST_READY) {
      write_status(d, c, w->reqid);
      remove_waiter(d, w);
      continue;
    }
    if (!c || now >= w->deadline) {
      if (c)
        reply_error(c, w->reqid, "timeout", "%s",
                    w->kind == W_STATUS ? "not bootstrapped yet" : "no result in time");
      if (w->cmd && w->kind != W_STATUS)
        dht_cancel(d->e, w->cmd);
      remove_waiter(d, w);
      continue;
    }
    if (w->kind == W_STATUS) {
      dht_stats st;
      dht_get_stats(d->e, &st);
      node_jw jw;
      reply_begin(&jw, w->reqid);
      node_jw_key(&jw, "progress");
      node_jw_obj(&jw);
      node_jw_kstr(&jw, "state", state_name(d->state));
      node_jw_kint(&jw, "table_size", st.rt_size);
      node_jw_obj_end(&jw);
      reply_end(c, &jw);
    }
    i++;
  }
  if (d->state == ST_ALONE && !d->boot_cmd) {
    /* others found us (we are someone's bootstrap node): join through them */
    dht_stats st;
    dht_get_stats(d->e, &st);
    if (st.rt_size > 0)
      start_bootstrap(d);
  }
  if (d->boot_retry_at && now >= d->boot_retry_at && !d->boot_cmd) {
    d->boot_retry_at = 0;
    start_bootstrap(d);
  }
  if (d->lan_open && now >= d->lan_next)
    lan_announce(d);
  pump(d);
}

static void on_snapshot(uv_timer_t *t) {
  save_table(t->data);
}

/* ---- LAN discovery ---------------------------------------------------------- */

/* Announcements: "ROOST1 <ID> <port>\n" to 239.255.70.77:lan-port (IPv4
 * multicast, link scope TTL 1), every 30 s with jitter.  What we hear is a
 * hint only: we PING the announced node through the engine (authenticated)
 * and it enters the table when it answers.  At most one ping per announcer
 * per announcement period, and announcements for our own ID are ignored. */
static const char lan_group[] = "239.255.70.77";

static void lan_announce(rd_daemon *d) {
  uint16_t port = 0;
  for (int i = 0; i < d->nsocks; i++)
    if (d->socks[i].bound.family == DHT_AF_INET || node_addr_is_any(&d->socks[i].bound))
      port = d->socks[i].bound.port;
  uint32_t jitter = randombytes_uniform(LAN_EVERY_MS / 3);
  d->lan_next = uv_now(&d->loop) + LAN_EVERY_MS - LAN_EVERY_MS / 6 + jitter;
  if (!port)
    return;
  char msg[128];
  int n = snprintf(msg, sizeof msg, LAN_MAGIC "%s %u\n", d->idtext, port);
  struct sockaddr_in to;
  uv_ip4_addr(lan_group, d->cfg.lan_port, &to);
  uv_buf_t b = uv_buf_init(msg, (unsigned)n);
  uv_udp_try_send(&d->lan, &b, 1, (const struct sockaddr *)&to);
}

static void on_lan_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *addr, unsigned flags) {
  rd_daemon *d = h->data;
  (void)flags;
  if (nread <= 0 || !addr || addr->sa_family != AF_INET || nread > 120)
    return;
  char msg[128], idt[NODE_IDTEXT_LEN + 2];
  memcpy(msg, buf->base, (size_t)nread);
  msg[nread] = 0;
  unsigned port;
  if (strncmp(msg, LAN_MAGIC, strlen(LAN_MAGIC)) != 0 ||
      sscanf(msg + strlen(LAN_MAGIC), "%57s %u", idt, &port) != 2 || port == 0 || port > 65535)
    return;
  dht_peer p;
  if (node_idtext_decode(idt, p.pk) != 0 || !memcmp(p.pk, d->ident.pk, DHT_PK_LEN))
    return;
  node_addr_from_sockaddr(addr, &p.addr);
  p.addr.port = (uint16_t)port;
  d->lan_heard++;
  uint8_t id[DHT_ID_LEN];
  dht_id_from_pk(id, p.pk);
  dht_contact known[DHT_K_MAX];
  int nk = dht_closest(d->e, id, known, 1);
  if (nk == 1 && !memcmp(known[0].id, id, DHT_ID_LEN))
    return; /* already in our table */
  /* a node we did not know: join through it as well */
  bool dup = false;
  for (int k = 0; k < d->nextra; k++)
    dup |= !memcmp(d->extra_boot[k].pk, p.pk, DHT_PK_LEN);
  if (!dup && d->nextra < NODE_MAX_BOOTSTRAP)
    d->extra_boot[d->nextra++] = p;
  if (d->state != ST_READY && !d->boot_cmd)
    start_bootstrap(d);
  else
    dht_ping(d->e, &p, (dht_ts)uv_now(&d->loop));
  pump(d);
}

static void on_lan_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  static char lanbuf[256];
  (void)h;
  *buf = uv_buf_init(lanbuf, sizeof lanbuf);
}

static void lan_start(rd_daemon *d) {
  if (!d->cfg.lan_discovery || d->lan_open)
    return;
  struct sockaddr_in any;
  uv_ip4_addr("0.0.0.0", d->cfg.lan_port, &any);
  if (uv_udp_init(&d->loop, &d->lan) != 0)
    return;
  d->lan.data = d;
  d->lan_open = true;
  int rv = uv_udp_bind(&d->lan, (const struct sockaddr *)&any, UV_UDP_REUSEADDR);
  if (!rv)
    rv = uv_udp_set_membership(&d->lan, lan_group, NULL, UV_JOIN_GROUP);
  if (!rv)
    rv = uv_udp_set_multicast_ttl(&d->lan, 1);
  if (!rv)
    rv = uv_udp_set_multicast_loop(&d->lan, 1);
  if (!rv)
    rv = uv_udp_recv_start(&d->lan, on_lan_alloc, on_lan_recv);
  if (rv) {
    NLOG(NODE_LOG_WARN, "lan", "LAN discovery unavailable: %s", uv_strerror(rv));
    uv_close((uv_handle_t *)&d->lan, NULL);
    d->lan_open = false;
    return;
  }
  d->lan_next = uv_now(&d->loop) + 500;
}

static void lan_stop(rd_daemon *d) {
  if (d->lan_open) {
    uv_close((uv_handle_t *)&d->lan, NULL);
    d->lan_open = false;
  }
}

/* ---- control socket ------------------------------------------------------ */

static void on_client_closed(uv_handle_t *h) {
  client *c = h->data;
  rd_daemon *d = c->d;
  for (client **p = &d->clients; *p; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      break;
    }
  d->nclients--;
  free(c->buf);
  free(c);
}

static void client_close(client *c) {
  if (!c->closing) {
    c->closing = true;
    uv_close((uv_handle_t *)&c->pipe, on_client_closed);
  }
}

static void on_client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  client *c = h->data;
  if (!c->buf)
    c->buf = malloc(LINE_MAX_BYTES);
  if (!c->buf || c->len >= LINE_MAX_BYTES) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init(c->buf + c->len, (unsigned)(LINE_MAX_BYTES - c->len));
}

static void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  client *c = s->data;
  (void)buf;
  if (nread < 0) {
    client_close(c);
    return;
  }
  c->len += (size_t)nread;
  for (;;) {
    char *nl = memchr(c->buf, '\n', c->len);
    if (!nl)
      break;
    size_t l = (size_t)(nl - c->buf);
    if (l > 0 && !c->closing) {
      handle_request(c->d, c, c->buf, l);
      pump(c->d); /* a command may have queued datagrams */
    }
    if (c->closing)
      return;
    memmove(c->buf, nl + 1, c->len - l - 1);
    c->len -= l + 1;
  }
  if (c->len >= LINE_MAX_BYTES) {
    c->d->ctl_bad++;
    reply_error(c, "null", "bad_request", "line longer than %d bytes", LINE_MAX_BYTES);
    client_close(c);
  }
}

static void on_connection(uv_stream_t *server, int status) {
  rd_daemon *d = server->data;
  if (status < 0)
    return;
  client *c = calloc(1, sizeof *c);
  if (!c)
    return;
  c->d = d;
  uv_pipe_init(&d->loop, &c->pipe, 0);
  c->pipe.data = c;
  c->serial = ++d->next_serial;
  c->next = d->clients;
  d->clients = c;
  d->nclients++;
  if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0) {
    client_close(c);
    return;
  }
  /* only our own user (or root) may control us */
  uv_os_fd_t fd;
  struct ucred cred;
  socklen_t cl = sizeof cred;
  if (uv_fileno((uv_handle_t *)&c->pipe, &fd) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 ||
      (cred.uid != geteuid() && cred.uid != 0) || d->nclients > MAX_CLIENTS) {
    d->ctl_refused++;
    NLOG(NODE_LOG_WARN, "ctl", "refused a control connection (uid %d)", (int)cred.uid);
    reply_error(c, "null", "forbidden", "%s",
                d->nclients > MAX_CLIENTS ? "too many control connections"
                                          : "only roostd's own user (or root) may control it");
    client_close(c);
    return;
  }
  uv_read_start((uv_stream_t *)&c->pipe, on_client_alloc, on_client_read);
}

static int open_control(rd_daemon *d) {
  /* we hold the data-directory lock, so a socket file left at our path is
   * a stale one from a crashed roostd */
  unlink(d->sock_path);
  if (uv_pipe_init(&d->loop, &d->ctl, 0) != 0)
    return -1;
  d->ctl.data = d;
  d->ctl_open = true;
  mode_t old = umask(077);
  int rv = uv_pipe_bind(&d->ctl, d->sock_path);
  umask(old);
  if (rv == 0)
    rv = chmod(d->sock_path, 0600) == 0 ? 0 : uv_translate_sys_error(errno);
  if (rv == 0)
    rv = uv_listen((uv_stream_t *)&d->ctl, 16, on_connection);
  if (rv) {
    NLOG(NODE_LOG_ERROR, "ctl", "cannot open control socket %s: %s", d->sock_path, uv_strerror(rv));
    return -1;
  }
  return 0;
}

/* ---- signals, reload, shutdown ------------------------------------------- */

static void reload(rd_daemon *d) {
  node_config nc;
  char err[512];
  node_config_default(&nc);
  if (node_config_from_args(&nc, d->argc, d->argv, err, sizeof err) != 0) {
    NLOG(NODE_LOG_ERROR, "config", "reload failed, keeping the running configuration: %s", err);
    return;
  }
  node_log_set_level(nc.log_level);
  d->cfg.log_level = nc.log_level;
  memcpy(d->cfg.bootstrap, nc.bootstrap, sizeof nc.bootstrap);
  d->cfg.nbootstrap = nc.nbootstrap;
  if (nc.lan_discovery != d->cfg.lan_discovery) {
    d->cfg.lan_discovery = nc.lan_discovery;
    if (nc.lan_discovery)
      lan_start(d);
    else
      lan_stop(d);
  }
  NLOG(NODE_LOG_WARN, "config",
       "reloaded: log-level, bootstrap and lan-discovery applied; other options need a "
       "restart");
  if (d->state != ST_READY && !d->boot_cmd)
    start_bootstrap(d);
  pump(d);
}

static void on_signal(uv_signal_t *s, int signum) {
  rd_daemon *d = s->data;
  if (signum == SIGHUP) {
    reload(d);
    return;
  }
  NLOG(NODE_LOG_INFO, "main", "signal %d: saving state and stopping", signum);
  shutdown_daemon(d, 0);
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static void shutdown_daemon(rd_daemon *d, int code) {
  if (d->stopping)
    return;
  d->stopping = true;
  d->exit_code = code;
  save_table(d);
  if (d->ctl_open)
    unlink(d->sock_path);
  for (client *c = d->clients; c; c = c->next)
    client_close(c);
  uv_walk(&d->loop, close_walk, NULL);
}

/* ---- main ---------------------------------------------------------------------- */

static void engine_log(void *ctx, int level, const char *msg) {
  (void)ctx;
  node_log(level, "dht", "%s", msg);
}

static void engine_rand(void *ctx, uint8_t *buf, size_t len) {
  (void)ctx;
  randombytes_buf(buf, len);
}

int node_daemon_run(const node_config *cfg, int argc, char **argv) {
  rd_daemon *d = calloc(1, sizeof *d);
  char err[512];
  if (!d) {
    fprintf(stderr, "roostd: out of memory\n");
    return 1;
  }
  d->cfg = *cfg;
  d->argc = argc;
  d->argv = argv;
  d->lock_fd = -1;
  d->boot_backoff = BOOT_RETRY_MIN_MS;
  int code = 1;
  if (node_dir_prepare(cfg->data_dir, err, sizeof err) != 0 ||
      node_lock_dir(cfg->data_dir, &d->lock_fd, err, sizeof err) != 0) {
    fprintf(stderr, "roostd: %s\n", err);
    free(d);
    return 1;
  }
  char keypath[PATH_MAX];
  if (snprintf(keypath, sizeof keypath, "%s/identity.key", cfg->data_dir) >= (int)sizeof keypath ||
      snprintf(d->snap_path, sizeof d->snap_path, "%s/peers.dat", cfg->data_dir) >=
          (int)sizeof d->snap_path) {
    fprintf(stderr, "roostd: data directory path too long\n");
    goto out;
  }
  if (node_identity_load(keypath, &d->ident, true, err, sizeof err) != 0) {
    fprintf(stderr, "roostd: %s\n", err);
    goto out;
  }
  node_idtext_encode(d->ident.pk, d->idtext);
  node_config_socket_path(cfg, d->sock_path, sizeof d->sock_path);
  if (!d->sock_path[0] || strlen(d->sock_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    fprintf(stderr,
            "roostd: the control socket path is too long for a Unix socket (at most %zu bytes): "
            "set --control-socket to a shorter path\n",
            sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
    goto out;
  }
  if (uv_loop_init(&d->loop) != 0) {
    fprintf(stderr, "roostd: cannot create the event loop\n");
    goto out;
  }
  d->start_ms = uv_now(&d->loop);

  dht_settings s;
  dht_settings_default(&s);
  s.k = cfg->k;
  s.server_mode = cfg->server_mode;
  s.rate_pps = cfg->rate_pps;
  s.rate_burst = cfg->rate_burst;
  s.max_records = cfg->max_records;
  s.max_per_prefix_bucket = cfg->max_per_prefix_bucket;
  s.max_per_prefix_table = cfg->max_per_prefix_table;
  s.diversity_exempt_private = cfg->diversity_exempt_private;
  s.log_level = cfg->log_level;
  dht_callbacks cb = {NULL, engine_rand, engine_log};
  int rv = dht_new(&d->e, &d->ident, &s, &cb, NULL, (dht_ts)uv_now(&d->loop));
  if (rv) {
    fprintf(stderr, "roostd: cannot start the engine: %s\n", dht_strerror(rv));
    goto loop_out;
  }
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  dht_set_clock_offset(d->e, tv.tv_sec * 1000 + tv.tv_usec / 1000 - (int64_t)uv_now(&d->loop));

  if (open_sockets(d) != 0 || open_control(d) != 0) {
    fprintf(stderr, "roostd: startup failed (see the log above)\n");
    shutdown_daemon(d, 1);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    goto engine_out;
  }
  uv_timer_init(&d->loop, &d->timer);
  d->timer.data = d;
  uv_timer_init(&d->loop, &d->tick);
  d->tick.data = d;
  uv_timer_start(&d->tick, on_tick, 1000, 1000);
  uv_timer_init(&d->loop, &d->snap);
  d->snap.data = d;
  uv_timer_start(&d->snap, on_snapshot, (uint64_t)cfg->snapshot_interval_s * 1000,
                 (uint64_t)cfg->snapshot_interval_s * 1000);
  uv_signal_init(&d->loop, &d->sig_term);
  uv_signal_init(&d->loop, &d->sig_int);
  uv_signal_init(&d->loop, &d->sig_hup);
  d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
  uv_signal_start(&d->sig_term, on_signal, SIGTERM);
  uv_signal_start(&d->sig_int, on_signal, SIGINT);
  uv_signal_start(&d->sig_hup, on_signal, SIGHUP);
  signal(SIGPIPE, SIG_IGN);

  init_addrs(d);
  load_table(d);
  lan_start(d);
  start_bootstrap(d);
  NLOG(NODE_LOG_INFO, "main", "roostd %s started: %s (%s)", ROOST_VERSION, d->idtext,
       state_name(d->state));
  pump(d);
  uv_run(&d->loop, UV_RUN_DEFAULT);
  code = d->exit_code;
engine_out:
  dht_del(d->e);
loop_out:
  if (uv_loop_close(&d->loop) != 0) {
    uv_walk(&d->loop, close_walk, NULL);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    uv_loop_close(&d->loop);
  }
out:
  sodium_memzero(&d->ident, sizeof d->ident);
  if (d->lock_fd >= 0)
    close(d->lock_fd);
  free(d);
  return code;
}

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
 * The control socket lives in node_ctl.c, the commands it runs in
 * node_cmd_net.c and node_cmd_msg.c, the messaging state in node_msg.c.
 * Each owns its struct inside rd_daemon (node_daemon.h); this file owns the
 * rest, and sets the hooks through which the control socket runs commands
 * and both it and the messaging state wake the pump.
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

#include "node_daemon.h"

const char *node_daemon_state_name(int s) {
  static const char *const n[] = {"starting", "bootstrapping", "ready", "alone"};
  return n[s];
}

void node_daemon_pump(rd_daemon *d);
void node_daemon_shutdown(rd_daemon *d, int code);

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

static usock *xsock(rd_daemon *d, uint32_t id) {
  if (!d->xsocks || id < 1 || id > NODE_MAX_XSOCKS || d->xsocks[id - 1].state != 1)
    return NULL;
  return &d->xsocks[id - 1];
}

/* One datagram with its own TTL: set on the socket, sent at once, set back
 * (never batched or queued, so that the TTL cannot leak onto another
 * datagram).  Best effort: a busy socket drops it, counted. */
static void send_ttl(rd_daemon *d, usock *s, const struct sockaddr *sa, const uint8_t *buf,
                     size_t len, uint8_t ttl) {
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&s->h, &fd) != 0) {
    d->ttl_errors++;
    return;
  }
  bool v6 = s->bound.family == DHT_AF_INET6;
  int lvl = v6 ? IPPROTO_IPV6 : IPPROTO_IP, opt = v6 ? IPV6_UNICAST_HOPS : IP_TTL;
  int old = 0, want = ttl;
  socklen_t ol = sizeof old;
  if (getsockopt(fd, lvl, opt, &old, &ol) != 0 || setsockopt(fd, lvl, opt, &want, sizeof want)) {
    d->ttl_errors++;
    return;
  }
  uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
  if (uv_udp_try_send(&s->h, &b, 1, sa) < 0)
    d->ttl_errors++;
  else
    d->ttl_sends++;
  setsockopt(fd, lvl, opt, &old, sizeof old);
}

static void send_dgram(rd_daemon *d, const dht_path *path, const dht_pkt_info *pi,
                       const uint8_t *buf, size_t len) {
  const dht_addr *to = &path->remote;
  usock *s = path->local ? xsock(d, path->local) : sock_for(d, to);
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
  if (pi && pi->ttl) {
    if (d->nbatch)
      flush_batch(d); /* in order */
    send_ttl(d, s, (const struct sockaddr *)&ss, buf, len, pi->ttl);
    return;
  }
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
      node_daemon_pump(d);
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
  dht_path path = {.local = s->id, .remote = from};
  int rv = dht_read_pkt(d->e, &path, (const uint8_t *)buf->base, (size_t)nread,
                        (dht_ts)uv_now(&d->loop));
  if (rv <= DHT_ERR_FATAL) {
    NLOG(NODE_LOG_ERROR, "dht", "engine failed: %s", dht_strerror(rv));
    node_daemon_shutdown(d, 1);
    return;
  }
  if (flags & UV_UDP_MMSG_CHUNK) {
    /* inside a recvmmsg batch: only collect the replies; events, commands
     * and the timer wait for the end of the batch */
    d->batching = true;
    uint8_t out[DHT_MAX_PKT];
    dht_path to;
    dht_pkt_info pi;
    dht_ssize n;
    while ((n = dht_write_pkt(d->e, &to, &pi, out, sizeof out, (dht_ts)uv_now(&d->loop))) > 0)
      send_dgram(d, &to, &pi, out, (size_t)n);
    return;
  }
  node_daemon_pump(d);
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
    /* a deeper receive queue absorbs bursts (the kernel caps it at
     * net.core.rmem_max); the rate is the CPU's business, not this */
    int rcvbuf = 4 << 20;
    uv_recv_buffer_size((uv_handle_t *)&s->h, &rcvbuf);
    if ((rv = uv_udp_recv_start(&s->h, on_alloc, on_recv)) != 0) {
      NLOG(NODE_LOG_ERROR, "net", "receive on %s: %s", txt, uv_strerror(rv));
      return -1;
    }
    dht_addr_fmt(&s->bound, txt, sizeof txt);
    NLOG(NODE_LOG_INFO, "net", "listening on %s", txt);
  }
  return 0;
}

/* ---- extra sockets for services (dht_sock_open) -------------------------- */

static void on_xclose(uv_handle_t *h) {
  usock *s = h->data;
  s->state = 0;
}

/* An ephemeral port on the address of our listen socket of that family. */
static int xsock_open(rd_daemon *d, uint8_t family, uint32_t *id) {
  const usock *main = NULL;
  for (int i = 0; i < d->nsocks && !main; i++)
    if (d->socks[i].bound.family == family)
      main = &d->socks[i];
  if (!main)
    return -1;
  if (!d->xsocks && !(d->xsocks = calloc(NODE_MAX_XSOCKS, sizeof *d->xsocks)))
    return -1;
  int slot = -1;
  for (int i = 0; i < NODE_MAX_XSOCKS && slot < 0; i++)
    if (d->xsocks[i].state == 0)
      slot = i;
  if (slot < 0)
    return -1;
  usock *s = &d->xsocks[slot];
  memset(s, 0, sizeof *s);
  if (uv_udp_init(&d->loop, &s->h) != 0)
    return -1;
  s->h.data = s;
  s->d = d;
  s->id = (uint32_t)slot + 1;
  s->state = 1;
  dht_addr a = main->bound;
  a.port = 0;
  struct sockaddr_storage ss;
  socklen_t sl;
  node_addr_to_sockaddr(&a, &ss, &sl);
  struct sockaddr_storage got;
  int gl = sizeof got;
  if (uv_udp_bind(&s->h, (const struct sockaddr *)&ss,
                  family == DHT_AF_INET6 ? UV_UDP_IPV6ONLY : 0) ||
      uv_udp_getsockname(&s->h, (struct sockaddr *)&got, &gl) ||
      node_addr_from_sockaddr((struct sockaddr *)&got, &s->bound) ||
      uv_udp_recv_start(&s->h, on_alloc, on_recv)) {
    s->state = 2;
    uv_close((uv_handle_t *)&s->h, on_xclose);
    return -1;
  }
  d->nxsocks++;
  *id = s->id;
  return 0;
}

static void on_sock_event(rd_daemon *d, const dht_event *ev) {
  if (ev->type == DHT_EV_SOCK_CLOSE) {
    usock *s = xsock(d, ev->u.sock.id);
    if (s) {
      s->state = 2;
      d->nxsocks--;
      uv_close((uv_handle_t *)&s->h, on_xclose);
    }
    return;
  }
  uint32_t ids[NODE_MAX_XSOCKS] = {0};
  int n = 0;
  while (n < ev->u.sock.n && n < NODE_MAX_XSOCKS && xsock_open(d, ev->u.sock.family, &ids[n]) == 0)
    n++;
  if (n < ev->u.sock.n) {
    d->xsock_refused += (uint64_t)(ev->u.sock.n - n);
    NLOG(NODE_LOG_INFO, "net", "opened %d of %d sockets a service asked for", n, ev->u.sock.n);
  }
  if (dht_sock_opened(d->e, ev->cmd, ids, n) != 0) {
    for (int i = 0; i < n; i++) {
      dht_event c = {.type = DHT_EV_SOCK_CLOSE};
      c.u.sock.id = ids[i];
      on_sock_event(d, &c);
    }
  }
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
  d->nbound = d->naddrs;
}

/* Our record takes the address the NAT service's vote settled on (peers in
 * three distinct networks saw it; on loopback or a LAN each peer counts), when
 * the mapping lets every peer use it (endpoint-independent): a symmetric
 * NAT's ports are per peer, so its address is worth nothing to others. */
/* The gateway mapped our port: the NAT service proves it with a dial-back. */
static void on_mapped(void *ctx, int proto, const dht_addr *ext) {
  rd_daemon *d = ctx;
  if (d->nat)
    nat_verify_mapping(d->nat, proto, ext->port, (dht_ts)uv_now(&d->loop));
  node_daemon_pump(d); /* the service's timer may run sooner now */
}

/* The NAT service's verdicts on our mappings: to the mapping policy, and a
 * proven mapping's address into our record. */
static void nat_events(rd_daemon *d) {
  nat_event ev;
  while (d->nat && nat_poll_event(d->nat, &ev) == 0) {
    if (ev.type == NAT_EV_PATH) {
      char idt[NODE_IDTEXT_LEN + 1], txt[DHT_ADDR_STRLEN];
      node_idtext_encode(ev.pk, idt);
      NLOG(ev.ok ? NODE_LOG_INFO : NODE_LOG_WARN, "nat", "path to %.8s: %s after %lld ms", idt,
           ev.ok ? dht_addr_fmt(&ev.addr, txt, sizeof txt) : "none (punching failed)",
           (long long)ev.ms);
      if (node_msg_svc(&d->msg))
        store_path_ready(node_msg_svc(&d->msg), ev.pk, ev.ok, (dht_ts)uv_now(&d->loop));
      continue;
    }
    if (ev.type != NAT_EV_MAPPING)
      continue;
    char txt[DHT_ADDR_STRLEN];
    dht_addr_fmt(&ev.addr, txt, sizeof txt);
    NLOG(NODE_LOG_INFO, "nat", "%s mapping at %s: %s", nat_portmap_proto_name(ev.tag), txt,
         ev.ok ? "verified by a dial-back" : "a dial-back did not get in");
    node_portmap_verified(&d->portmap, ev.tag, ev.ok);
    d->nat_sync_at = 0; /* the record follows at once */
  }
}

static int push_addr(dht_typed_addr *l, int n, uint8_t type, const dht_addr *a) {
  for (int i = 0; i < n; i++)
    if (dht_addr_eq(&l[i].addr, a))
      return n;
  if (n == DHT_RECORD_MAX_ADDRS)
    return n;
  l[n].type = type;
  l[n].addr = *a;
  return n + 1;
}

/* Our record's addresses, rebuilt from what is true now: the bound ones, the
 * vote's (a new address replaces the old; a symmetric verdict removes it; an
 * open vote keeps it, so ageing reports do not make the record flap), and
 * the mappings a dial-back proved and the gateway still holds. */
static void rebuild_addrs(rd_daemon *d, const nat_status *st) {
  dht_typed_addr l[DHT_RECORD_MAX_ADDRS];
  int n = d->nbound;
  memcpy(l, d->addrs, (size_t)n * sizeof l[0]);
  for (int f = 0; f < 2; f++) {
    const nat_vote_result *r = &st->vote[f];
    uint8_t fam = f == 0 ? DHT_AF_INET : DHT_AF_INET6;
    if (!r->known) { /* reports aged out between two rounds: keep what we had */
      for (int i = d->nbound; i < d->naddrs; i++)
        if (d->addrs[i].type != DHT_ADDR_MAPPED && d->addrs[i].addr.family == fam)
          n = push_addr(l, n, d->addrs[i].type, &d->addrs[i].addr);
      continue;
    }
    if (r->mapping != NAT_MAP_EIM)
      continue; /* symmetric: its ports are per peer, worth nothing to others */
    if (!addr_known(d, &r->addr)) {
      char txt[DHT_ADDR_STRLEN];
      NLOG(NODE_LOG_INFO, "nat", "peers in %d networks see us at %s", r->prefixes,
           dht_addr_fmt(&r->addr, txt, sizeof txt));
    }
    int scope = dht_addr_scope(&r->addr);
    n = push_addr(l, n,
                  scope == DHT_SCOPE_LAN || scope == DHT_SCOPE_LOOPBACK ? DHT_ADDR_LAN
                                                                        : DHT_ADDR_OBSERVED,
                  &r->addr);
  }
  for (int p = 0; p < NAT_PM_NPROTO; p++) {
    nat_pm_info mi;
    if (node_portmap_info(&d->portmap, p, &mi) == 0 && mi.verify == NAT_PM_VERIFIED &&
        mi.ext.family && (mi.state == NAT_PM_MAPPED || mi.state == NAT_PM_RENEWING))
      n = push_addr(l, n, DHT_ADDR_MAPPED, &mi.ext);
  }
  /* field by field: memcmp would compare the padding after `type` too, and
   * a record re-published every few seconds for nothing is a lookup each */
  bool same = n == d->naddrs;
  for (int i = 0; i < n && same; i++)
    same = l[i].type == d->addrs[i].type && dht_addr_eq(&l[i].addr, &d->addrs[i].addr);
  if (same)
    return;
  memcpy(d->addrs, l, (size_t)n * sizeof l[0]);
  d->naddrs = n;
  dht_set_addrs(d->e, d->addrs, (size_t)d->naddrs);
  d->need_publish = true;
  NLOG(NODE_LOG_DEBUG, "nat", "our record's addresses changed: %d now", n);
}

/* Our LAN addresses with the main IPv4 socket's port, for hole punching
 * (nat_set_candidates): a friend behind the same router reaches us there
 * without the router hairpinning.  A socket bound to one address gives
 * that one; a wildcard socket, the private IPv4 addresses of our
 * interfaces (looked at again every minute: Wi-Fi and DHCP change them). */
static void lan_candidates(rd_daemon *d) {
  dht_addr c[NAT_LAN_CANDS];
  int n = 0;
  for (int i = 0; i < d->nsocks && n < NAT_LAN_CANDS; i++) {
    const dht_addr *b = &d->socks[i].bound;
    if (b->family != DHT_AF_INET)
      continue;
    if (!node_addr_is_any(b)) {
      if (dht_addr_is_private(b) && !dht_addr_is_loopback(b))
        c[n++] = *b;
      continue;
    }
    uv_interface_address_t *ifs;
    int cnt;
    if (uv_interface_addresses(&ifs, &cnt) != 0)
      continue;
    for (int k = 0; k < cnt && n < NAT_LAN_CANDS; k++) {
      dht_addr a;
      if (ifs[k].is_internal || ifs[k].address.address4.sin_family != AF_INET ||
          node_addr_from_sockaddr((const struct sockaddr *)&ifs[k].address.address4, &a) != 0)
        continue;
      a.port = b->port;
      if (dht_addr_is_private(&a) && !dht_addr_is_loopback(&a))
        c[n++] = a;
    }
    uv_free_interface_addresses(ifs, cnt);
  }
  nat_set_candidates(d->nat, c, n);
}

static void nat_sync(rd_daemon *d) {
  nat_events(d);
  uint64_t now = uv_now(&d->loop);
  if (!d->nat || now < d->nat_sync_at)
    return;
  d->nat_sync_at = now + 1000; /* the pump runs per batch of datagrams: once a second is plenty */
  if (now >= d->lan_at) {
    d->lan_at = now + 60 * 1000;
    lan_candidates(d);
  }
  nat_status st;
  nat_get_status(d->nat, (dht_ts)now, &st);
  rebuild_addrs(d, &st);
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

void node_daemon_bootstrap(rd_daemon *d) {
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

void node_daemon_add_bootstrap(rd_daemon *d, const dht_peer *p) {
  for (int k = 0; k < d->nextra; k++)
    if (!memcmp(d->extra_boot[k].pk, p->pk, DHT_PK_LEN) &&
        dht_addr_eq(&d->extra_boot[k].addr, &p->addr))
      return;
  if (d->nextra == NODE_MAX_BOOTSTRAP) /* the oldest goes */
    memmove(d->extra_boot, d->extra_boot + 1, (NODE_MAX_BOOTSTRAP - 1) * sizeof *p);
  else
    d->nextra++;
  d->extra_boot[d->nextra - 1] = *p;
}

/* ---- engine events ---------------------------------------------------------- */

static void on_event(rd_daemon *d, const dht_event *ev) {
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
      NLOG(NODE_LOG_DEBUG, "dht", "bootstrap done: publishing our record");
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
  case DHT_EV_ADDR_SEEN: /* only without the NAT service: it takes them */
    break;
  case DHT_EV_LOOKUP:
  case DHT_EV_PING:
    node_cmd_net_on_event(d, ev);
    break;
  case DHT_EV_SOCK_OPEN:
  case DHT_EV_SOCK_CLOSE:
    on_sock_event(d, ev);
    break;
  default:
    break;
  }
}

/* ---- the pump and timers ------------------------------------------------- */

static void on_timer(uv_timer_t *t);

void node_daemon_pump(rd_daemon *d) {
  if (d->stopping)
    return;
  uint8_t buf[DHT_MAX_PKT];
  dht_path to;
  dht_pkt_info pi;
  /* events can issue commands that queue datagrams: loop until both are dry
   * (bounded: each pass either sends or handles an event) */
  for (int pass = 0; pass < 64; pass++) {
    bool any = false;
    dht_ssize n;
    while ((n = dht_write_pkt(d->e, &to, &pi, buf, sizeof buf, (dht_ts)uv_now(&d->loop))) > 0) {
      send_dgram(d, &to, &pi, buf, (size_t)n);
      any = true;
    }
    dht_event ev;
    while (dht_poll_event(d->e, &ev) == 0) {
      any = true;
      on_event(d, &ev);
    }
    /* the mailbox service's events into roost.db and on to the clients
     * that wait for them */
    if (node_cmd_msg_drain(d))
      any = true;
    nat_sync(d); /* may change our addresses: before the publish step */
    /* a client publishes too: its record says it is not reachable, and
     * names the introducers others can reach it through */
    if (d->need_publish && d->state == ST_READY) {
      d->need_publish = false;
      dht_put_record(d->e, (dht_ts)uv_now(&d->loop));
      any = true;
    }
    if (!any)
      break;
  }
  node_msg_flush(&d->msg); /* a batch commit of mailboxes.db, when one is due */
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
    node_daemon_shutdown(d, 1);
    return;
  }
  node_daemon_pump(d);
}

static void lan_announce(rd_daemon *d);

/* Once a second: waiters' progress and deadlines, bootstrap retries, LAN. */
static void on_tick(uv_timer_t *t) {
  rd_daemon *d = t->data;
  uint64_t now = uv_now(&d->loop);
  node_ctl_tick(&d->ctl, now);
  node_cmd_msg_tick(d, now);
  if (d->state == ST_ALONE && !d->boot_cmd) {
    /* others found us (we are someone's bootstrap node): join through them */
    dht_stats st;
    dht_get_stats(d->e, &st);
    if (st.rt_size > 0)
      node_daemon_bootstrap(d);
  }
  if (d->boot_retry_at && now >= d->boot_retry_at && !d->boot_cmd) {
    d->boot_retry_at = 0;
    node_daemon_bootstrap(d);
  }
  if (d->lan_open && now >= d->lan_next)
    lan_announce(d);
  node_daemon_pump(d);
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
    node_daemon_bootstrap(d);
  else
    dht_ping(d->e, &p, (dht_ts)uv_now(&d->loop));
  node_daemon_pump(d);
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
    node_daemon_bootstrap(d);
  node_daemon_pump(d);
}

static void on_signal(uv_signal_t *s, int signum) {
  rd_daemon *d = s->data;
  if (signum == SIGHUP) {
    reload(d);
    return;
  }
  NLOG(NODE_LOG_INFO, "main", "signal %d: saving state and stopping", signum);
  node_daemon_shutdown(d, 0);
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

/* The deletes of our port mappings are done (or their bound passed): close
 * everything. */
static void shutdown_finish(void *ctx) {
  rd_daemon *d = ctx;
  node_portmap_close(&d->portmap);
  uv_walk(&d->loop, close_walk, NULL);
}

void node_daemon_shutdown(rd_daemon *d, int code) {
  if (d->stopping)
    return;
  d->stopping = true;
  d->exit_code = code;
  save_table(d);
  node_ctl_close(&d->ctl);
  if (d->portmap.pm) { /* quiet while the router deletes our mappings (at most 3 s) */
    uv_timer_stop(&d->tick);
    uv_timer_stop(&d->snap);
    lan_stop(d);
  }
  node_portmap_stop(&d->portmap, shutdown_finish, d);
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

/* The control socket's run hook: the network's commands, then
 * messaging's. */
static int run_command(void *ctx, client *c, const char *reqid, const char *name,
                       const json_t *args) {
  static const node_cmd_table *const tables[] = {&node_cmd_net_table, &node_cmd_msg_table};
  for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
    for (size_t k = 0; k < tables[t]->n; k++)
      if (!strcmp(tables[t]->cmds[k].name, name)) {
        tables[t]->cmds[k].run(ctx, c, reqid, args);
        return 0;
      }
  return -1;
}

/* The control socket's and the messaging state's wake hook: a command ran
 * or a commit finished, so datagrams may be waiting. */
static void wake(void *ctx) {
  node_daemon_pump(ctx);
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
  umask(077); /* every file roostd creates (databases, snapshots) is its user's alone */
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
  if (node_msg_open(&d->msg, cfg->data_dir, err, sizeof err) != 0) {
    fprintf(stderr, "roostd: %s\n", err);
    goto out;
  }
  char sock_path[PATH_MAX];
  node_config_socket_path(cfg, sock_path, sizeof sock_path);
  if (!sock_path[0] || strlen(sock_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
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
  s.server_mode = cfg->mode == NAT_MODE_SERVER;
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
  node_msg_set_wake(&d->msg, wake, d);
  node_msg_start(&d->msg, &d->loop, d->e, &d->ident, &d->cfg, &cb);
  nat_settings ns;
  nat_settings_default(&ns);
  ns.mode = cfg->mode;
  ns.log_level = cfg->log_level;
  if ((rv = nat_svc_new(&d->nat, d->e, &ns, &cb, NULL, (dht_ts)uv_now(&d->loop))) != 0)
    NLOG(NODE_LOG_WARN, "nat", "no NAT service (%s): our public address stays unknown",
         dht_strerror(rv));

  node_ctl_hooks hooks = {.ctx = d, .run = run_command, .wake = wake};
  node_ctl_init(&d->ctl, &d->loop, &hooks);
  if (open_sockets(d) != 0 || node_ctl_open(&d->ctl, sock_path) != 0) {
    fprintf(stderr, "roostd: startup failed (see the log above)\n");
    node_daemon_shutdown(d, 1);
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

  dht_addr bound[NODE_MAX_LISTEN];
  for (int i = 0; i < d->nsocks; i++)
    bound[i] = d->socks[i].bound;
  d->portmap.on_mapped = on_mapped;
  d->portmap.mapped_ctx = d;
  node_portmap_start(&d->portmap, &d->loop, cfg->portmap, bound, d->nsocks, cfg->log_level);
  init_addrs(d);
  load_table(d);
  lan_start(d);
  node_daemon_bootstrap(d);
  NLOG(NODE_LOG_INFO, "main", "roostd %s started: %s (%s)", ROOST_VERSION, d->idtext,
       node_daemon_state_name(d->state));
  /* say which promise the node makes: a server in the wrong place fills
   * others' tables with an address they cannot reach */
  if (cfg->mode == NAT_MODE_SERVER)
    NLOG(NODE_LOG_INFO, "nat",
         "mode server: others may store us from the start (for a node "
         "whose UDP port is reachable: a seed, a VPS, a test on loopback)");
  else if (cfg->mode == NAT_MODE_AUTO)
    NLOG(NODE_LOG_INFO, "nat", "mode auto: a client until a dial-back proves us reachable");
  node_daemon_pump(d);
  uv_run(&d->loop, UV_RUN_DEFAULT);
  code = d->exit_code;
engine_out:
  node_msg_close(&d->msg); /* before the engine: the services are plugged into it */
  nat_svc_del(d->nat);
  d->nat = NULL;
  dht_del(d->e);
loop_out:
  if (uv_loop_close(&d->loop) != 0) {
    uv_walk(&d->loop, close_walk, NULL);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    uv_loop_close(&d->loop);
  }
out:
  node_portmap_free(&d->portmap); /* the loop is closed: no job is on the thread pool */
  free(d->xsocks);                /* the loop is closed: every handle's close callback ran */
  node_msg_close(&d->msg);        /* what is still open when we did not get that far */
  sodium_memzero(&d->ident, sizeof d->ident);
  if (d->lock_fd >= 0)
    close(d->lock_fd);
  free(d);
  return code;
}

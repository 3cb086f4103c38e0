/*
 * netsim.h - a tiny in-memory network for tests and benchmarks: N engines,
 * a counter clock, datagrams delivered after a fixed latency (plus optional
 * deterministic loss), all in one thread.  It runs the same drive loop as
 * node/ and sim/: read_pkt -> drain write_pkt -> drain events -> expiry.
 *
 * Node i has address 10.(i>>8).(i&255).1:4000 when even and
 * [fd00::(i)]:4000 when odd, so both families and distinct /24 and /48
 * prefixes are exercised.  (These addresses never leave the process.)  Its
 * extra sockets (dht_sock_open, up to netsim_config.sockets) are ports
 * 4001, 4002 ... of that address, with ids 1, 2 ...
 */
#ifndef ROOST_NETSIM_H
#define ROOST_NETSIM_H

#include "dht.h"
#include "testutil.h"

typedef struct netsim netsim;

typedef void (*netsim_event_fn)(void *ctx, int node, const dht_event *ev);

typedef struct netsim_config {
  int n;
  uint64_t seed;
  dht_settings settings;    /* for every engine */
  const dht_mem *mem;       /* NULL: libc */
  dht_ts latency_ms;        /* one-way: default 10 when 0 */
  int loss_permille;        /* datagrams dropped, 0..1000 */
  int sockets;              /* extra sockets a node's services may open: 0 */
  netsim_event_fn on_event; /* may be NULL; never sees the socket events */
  void *ctx;
} netsim_config;

/* Creates n engines (not yet bootstrapped).  Returns 0 or the first engine
 * creation error. */
int netsim_new(netsim **out, const netsim_config *cfg);
void netsim_del(netsim *ns);

int netsim_size(const netsim *ns);
dht *netsim_engine(netsim *ns, int i);
const dht_identity *netsim_identity(const netsim *ns, int i);
dht_addr netsim_addr(const netsim *ns, int i);
dht_peer netsim_peer(const netsim *ns, int i);
tu_rng *netsim_rng(netsim *ns); /* the test's own stream */
dht_ts netsim_now(const netsim *ns);
/* Node i is down: datagrams to it vanish, its timers do not run. */
void netsim_set_up(netsim *ns, int i, bool up);
/* Call after issuing a command on node i, so its queue is drained. */
void netsim_touch(netsim *ns, int i);
/* Puts a raw datagram on the wire from `from` to node `to` (for hostile
 * input tests). */
int netsim_inject(netsim *ns, const dht_addr *from, int to, const uint8_t *data, size_t len);

/* Runs until done(ctx) returns true (checked after every step) or the clock
 * passes until.  Returns 1 if done, 0 if time ran out, or a fatal engine
 * error. */
int netsim_run(netsim *ns, dht_ts until, bool (*done)(void *ctx), void *ctx);

/* Node i behind a filtering NAT (on) or not: datagrams reach it only from
 * the addresses and ports it sent one to in the last 2 minutes (address-
 * and port-dependent filtering, as most home routers do).  Counted in
 * netsim_filtered. */
/* Node i keeps running and sending, but receives nothing (counted as
 * filtered): its own link or NAT broke, not its peers. */
void netsim_set_deaf(netsim *ns, int i, bool deaf);
/* Nothing passes between nodes i and j, either way (counted as filtered):
 * two NATs no hole gets through, symmetric both. */
void netsim_block(netsim *ns, int i, int j);
void netsim_set_filter(netsim *ns, int i, bool on);
uint64_t netsim_filtered(const netsim *ns);
uint64_t netsim_delivered(const netsim *ns);
uint64_t netsim_steps(const netsim *ns);

#endif

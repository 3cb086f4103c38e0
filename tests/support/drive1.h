/*
 * drive1.h - the engine's drive calls for a harness with one socket: every
 * datagram in arrives on socket 0 with no attributes out, so a test that is
 * not about paths writes an address where the API takes a path.  The real
 * drivers (node/, sim/, tests/support/netsim.c) use dht_path themselves.
 */
#ifndef ROOST_DRIVE1_H
#define ROOST_DRIVE1_H

#include "dht.h"

/* dht_read_pkt from `from` on socket 0. */
static inline int d1_read(dht *e, const dht_addr *from, const uint8_t *data, size_t len,
                          dht_ts now) {
  dht_path p = {.local = 0, .remote = *from};
  return dht_read_pkt(e, &p, data, len, now);
}

/* dht_write_pkt, keeping only the destination address. */
static inline dht_ssize d1_write(dht *e, dht_addr *to, uint8_t *buf, size_t cap, dht_ts now) {
  dht_path p;
  dht_ssize n = dht_write_pkt(e, &p, NULL, buf, cap, now);
  if (n > 0)
    *to = p.remote;
  return n;
}

#endif /* ROOST_DRIVE1_H */

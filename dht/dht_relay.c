/*
 * dht_relay.c - circuits: this node forwards datagrams between two keys
 * that both asked a service of ours for it (nat/ decides who and for how
 * long).  The relayed datagram is the sender's own envelope, sealed to the
 * other end, with its version byte set to DHT_VERSION_RELAY: we cannot
 * open it, we only look up the circuit by the sender's address and key,
 * put the version byte back and send it on.  So relaying costs no byte of
 * framing, every body that fits a direct datagram fits a relayed one, and
 * the relay sees only that two keys talk.  A datagram of no circuit is
 * dropped and counted (drop_relay); a circuit past its bytes or its time
 * is closed and counted (relay_closed).
 */
#include <string.h>

#include "dht_eng.h"

static bool side_is(const dht_circuit *c, int s, const dht_addr *from,
                    const uint8_t pk[static DHT_PK_LEN]) {
  return dht_addr_eq(&c->end[s].addr, from) && memcmp(c->end[s].pk, pk, DHT_PK_LEN) == 0;
}

int dht_relay_open(dht *e, const dht_peer *a, const dht_peer *b, uint64_t max_bytes, dht_ts until,
                   dht_ts now) {
  if (!a || !b || memcmp(a->pk, b->pk, DHT_PK_LEN) == 0 || max_bytes == 0 || until <= now)
    return DHT_ERR_INVAL;
  if (!e->circuits && e->set.max_circuits > 0) /* at the first: most nodes never relay */
    e->circuits = dht_mem_calloc(&e->mem, (size_t)e->set.max_circuits, sizeof *e->circuits);
  if (!e->circuits) {
    e->st.relay_refused++;
    return e->set.max_circuits > 0 ? DHT_ERR_NOMEM : DHT_ERR_FULL;
  }
  int freei = -1;
  for (int i = 0; i < e->set.max_circuits; i++) {
    dht_circuit *c = &e->circuits[i];
    if (!c->used) {
      if (freei < 0)
        freei = i;
      continue;
    }
    if ((side_is(c, 0, &a->addr, a->pk) && side_is(c, 1, &b->addr, b->pk)) ||
        (side_is(c, 0, &b->addr, b->pk) && side_is(c, 1, &a->addr, a->pk)))
      return i + 1; /* open already */
  }
  if (freei < 0) {
    e->st.relay_refused++;
    return DHT_ERR_FULL;
  }
  dht_circuit *c = &e->circuits[freei];
  memset(c, 0, sizeof *c);
  c->used = true;
  c->end[0] = *a;
  c->end[1] = *b;
  c->max_bytes = max_bytes;
  c->until = until;
  c->since = now;
  e->st.relay_opened++;
  return freei + 1;
}

int dht_relay_close(dht *e, int id) {
  if (!e->circuits || id < 1 || id > e->set.max_circuits || !e->circuits[id - 1].used)
    return DHT_ERR_NOTFOUND;
  e->circuits[id - 1].used = false;
  return 0;
}

int dht_relay_find(const dht *e, const uint8_t a[static DHT_PK_LEN],
                   const uint8_t b[static DHT_PK_LEN]) {
  for (int i = 0; e->circuits && i < e->set.max_circuits; i++) {
    const dht_circuit *c = &e->circuits[i];
    if (c->used &&
        ((!memcmp(c->end[0].pk, a, DHT_PK_LEN) && !memcmp(c->end[1].pk, b, DHT_PK_LEN)) ||
         (!memcmp(c->end[0].pk, b, DHT_PK_LEN) && !memcmp(c->end[1].pk, a, DHT_PK_LEN))))
      return i + 1;
  }
  return DHT_ERR_NOTFOUND;
}

int dht_relay_count(const dht *e) {
  int n = 0;
  for (int i = 0; e->circuits && i < e->set.max_circuits; i++)
    n += e->circuits[i].used;
  return n;
}

void dht_relay_forward(dht *e, const dht_path *path, const uint8_t *data, size_t len, dht_ts now) {
  const uint8_t *pk = data + 1;
  for (int i = 0; e->circuits && i < e->set.max_circuits; i++) {
    dht_circuit *c = &e->circuits[i];
    if (!c->used)
      continue;
    int s = side_is(c, 0, &path->remote, pk) ? 0 : side_is(c, 1, &path->remote, pk) ? 1 : -1;
    if (s < 0)
      continue;
    if (now >= c->until || c->bytes + len > c->max_bytes) {
      c->used = false; /* its limits: the ends fall back to punching again */
      e->st.relay_closed++;
      break;
    }
    c->bytes += len;
    if (dht_eng_queue_raw(e, &c->end[1 - s].addr, data, len) == 0) {
      e->st.relay_datagrams++;
      e->st.relay_bytes += len;
    }
    return;
  }
  e->st.drop_relay++;
}

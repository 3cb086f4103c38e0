/*
 * dht_paths.c - the path to a peer key that a service found: a hole punched
 * through two NATs, a mapping, later a relay.  Services send to a key
 * without knowing how it is reached (dht_peer with no address); the engine
 * looks the key up here.  Roaming (WireGuard's rule): an authenticated,
 * fresh datagram from the key that arrives on another path moves the path
 * there, so a peer whose NAT rebinds or whose Wi-Fi changes comes back by
 * itself, and a relayed path becomes direct when the key's datagrams come
 * straight from it.  Bounded: a 4-way cache of max_paths keys, the least
 * recently used goes.
 */
#include <string.h>

#include "dht_eng.h"

typedef struct path_ent {
  dht_path path;
  uint8_t method;
  dht_ts since, last_rx;
  uint64_t roams;
} path_ent;

size_t dht_paths_vlen(void) {
  return sizeof(path_ent);
}

int dht_path_set(dht *e, const uint8_t pk[static DHT_PK_LEN], const dht_path *p, int method,
                 dht_ts now) {
  if (!p || method < DHT_PATH_DIRECT || method > DHT_PATH_RELAYED ||
      (p->remote.family != DHT_AF_INET && p->remote.family != DHT_AF_INET6) || !p->remote.port)
    return DHT_ERR_INVAL;
  path_ent *pe = (path_ent *)dht_cache_get(&e->paths, pk);
  if (!pe) {
    pe = (path_ent *)dht_cache_put(&e->paths, pk);
    pe->since = now;
  } else if (pe->method != method || !dht_addr_eq(&pe->path.remote, &p->remote)) {
    pe->since = now;
  }
  pe->path = *p;
  pe->method = (uint8_t)method;
  if (method == DHT_PATH_RELAYED)
    e->relayed_paths = true;
  pe->last_rx = now;
  return 0;
}

int dht_path_get(dht *e, const uint8_t pk[static DHT_PK_LEN], dht_path_info *out) {
  const path_ent *pe = (const path_ent *)dht_cache_get(&e->paths, pk);
  if (!pe)
    return DHT_ERR_NOTFOUND;
  if (out) {
    memcpy(out->pk, pk, DHT_PK_LEN);
    out->path = pe->path;
    out->method = pe->method;
    out->since = pe->since;
    out->last_rx = pe->last_rx;
    out->roams = pe->roams;
  }
  return 0;
}

int dht_path_drop(dht *e, const uint8_t pk[static DHT_PK_LEN]) {
  if (!dht_cache_get(&e->paths, pk))
    return DHT_ERR_NOTFOUND;
  dht_cache_remove(&e->paths, pk);
  return 0;
}

int dht_paths_list(dht *e, dht_path_info *out, int max) {
  int n = 0, all = e->paths.nsets * DHT_CACHE_WAYS;
  for (int i = 0; i < all && n < max; i++) {
    const struct dht_cache_ent *ce = &e->paths.ents[i];
    if (!ce->stamp)
      continue;
    const path_ent *pe = (const path_ent *)(e->paths.vals + (size_t)i * e->paths.vlen);
    memcpy(out[n].pk, ce->key, DHT_PK_LEN);
    out[n].path = pe->path;
    out[n].method = pe->method;
    out[n].since = pe->since;
    out[n].last_rx = pe->last_rx;
    out[n].roams = pe->roams;
    n++;
  }
  return n;
}

void dht_paths_heard(dht *e, const uint8_t pk[static DHT_PK_LEN], const dht_path *p, dht_ts now) {
  path_ent *pe = (path_ent *)dht_cache_get(&e->paths, pk);
  if (!pe)
    return;
  pe->last_rx = now;
  if (pe->path.local != p->local || !dht_addr_eq(&pe->path.remote, &p->remote)) {
    /* from elsewhere than the relay of a relayed path: the key reached us
     * directly, and so we go (the upgrade after a late punch) */
    pe->path = *p;
    if (pe->method == DHT_PATH_RELAYED)
      pe->method = DHT_PATH_PUNCHED;
    pe->roams++;
    e->st.path_roams++;
  }
}

int dht_paths_resolve(dht *e, dht_peer *to, dht_tx *tx) {
  if (to->addr.family != DHT_AF_NONE)
    return 0;
  const path_ent *pe = (const path_ent *)dht_cache_get(&e->paths, to->pk);
  if (!pe) {
    e->st.path_missing++;
    return DHT_ERR_NOTFOUND;
  }
  to->addr = pe->path.remote;
  tx->local = pe->path.local;
  return 0;
}

bool dht_paths_via_relay(dht *e, const dht_peer *to) {
  const path_ent *pe = (const path_ent *)dht_cache_get(&e->paths, to->pk);
  return pe && pe->method == DHT_PATH_RELAYED && dht_addr_eq(&pe->path.remote, &to->addr);
}

/*
 * nat_vote.c - our public address and the NAT's mapping behaviour, from the
 * addresses peers report seeing us at (the `seen` field of every PONG:
 * every peer is a free STUN server).
 *
 * One vote table per local socket (a NAT maps each socket on its own).  A
 * network (a prefix, below) holds one slot: its newest report, from
 * whichever reporter, replaces its older one; reports age out.  The public
 * address is the reported IP with reporters in the most distinct prefixes
 * (/24 IPv4, /48 IPv6), and it is known once those are at least min_votes
 * (3): two colluding or mistaken peers in one network cannot move
 * it.  Reporters on loopback or a LAN are exempt from the distinct-prefix
 * rule (each address counts on its own), as they are from the routing
 * table's diversity limits, so that a test network on 127.0.0.1 or a LAN
 * can vote.
 *
 * Mapping behaviour (RFC 4787): when the same external port was seen from
 * at least min_votes distinct prefixes, the mapping is endpoint-independent
 * (a "cone": one port for every peer); when the reporters for the public IP
 * reach min_votes prefixes but no port does, it is endpoint-dependent
 * (symmetric: a new port per peer).  A stray older port (a mapping the NAT
 * renewed) does not make a cone look symmetric once three agree.
 *
 * Invariants: fixed memory (NAT_VOTE_REPORTS per table); no order from
 * pointers; ties break by the smaller address bytes.
 */
#include <string.h>

#include "nat.h"

void nat_vote_init(nat_vote *v) {
  memset(v, 0, sizeof *v);
}

/* What makes two reporters "the same network" for the distinct-prefix
 * rule: their prefix, or their whole address on loopback or a LAN. */
static uint32_t prefix_key(const dht_addr *a) {
  int scope = dht_addr_scope(a);
  uint64_t h = 1469598103934665603ull; /* FNV-1a over the bytes that count */
  int n = a->family == DHT_AF_INET ? 4 : 16;
  int keep = a->family == DHT_AF_INET ? 3 : 6; /* /24, /48 */
  bool whole = scope == DHT_SCOPE_LOOPBACK || scope == DHT_SCOPE_LAN;
  h = (h ^ a->family) * 1099511628211ull;
  for (int i = 0; i < (whole ? n : keep); i++)
    h = (h ^ a->ip[i]) * 1099511628211ull;
  if (whole)
    h = ((h ^ (a->port >> 8)) * 1099511628211ull ^ (a->port & 0xff)) * 1099511628211ull;
  return (uint32_t)(h ^ h >> 32) | 1; /* 0 marks an empty slot */
}

void nat_vote_add(nat_vote *v, const dht_addr *seen, const dht_addr *reporter, dht_ts now) {
  if (seen->family != DHT_AF_INET && seen->family != DHT_AF_INET6)
    return;
  uint32_t key = prefix_key(reporter);
  int slot = -1, empty = -1, oldest = 0;
  for (int i = 0; i < NAT_VOTE_REPORTS; i++) {
    const nat_report *r = &v->r[i];
    if (r->key && r->key == key) {
      /* this network again, whatever the key: its newest report replaces the
       * old, so many keys in one network hold one slot, not all of them */
      slot = i;
      break;
    }
    if (!r->key && empty < 0)
      empty = i;
    if (r->at_s < v->r[oldest].at_s)
      oldest = i;
  }
  if (slot < 0)
    slot = empty >= 0 ? empty : oldest;
  nat_report *r = &v->r[slot];
  r->seen = *seen;
  r->key = key;
  r->at_s = (uint32_t)(now / 1000);
}

/* Distinct prefixes among the live reports for family that match (ip, and
 * port when port >= 0). */
static int prefixes(const nat_vote *v, uint8_t family, const uint8_t ip[16], int port,
                    dht_ts cutoff) {
  uint32_t seen_keys[NAT_VOTE_REPORTS];
  int n = 0;
  int len = family == DHT_AF_INET ? 4 : 16;
  for (int i = 0; i < NAT_VOTE_REPORTS; i++) {
    const nat_report *r = &v->r[i];
    if (!r->key || (dht_ts)r->at_s * 1000 < cutoff || r->seen.family != family ||
        memcmp(r->seen.ip, ip, len) || (port >= 0 && r->seen.port != port))
      continue;
    bool dup = false;
    for (int k = 0; k < n && !dup; k++)
      dup = seen_keys[k] == r->key;
    if (!dup)
      seen_keys[n++] = r->key;
  }
  return n;
}

void nat_vote_get(const nat_vote *v, uint8_t family, const nat_vote_settings *s, dht_ts now,
                  nat_vote_result *out) {
  memset(out, 0, sizeof *out);
  dht_ts cutoff = now - s->max_age_ms;
  int len = family == DHT_AF_INET ? 4 : 16;
  const nat_report *best = NULL;
  int best_n = 0;
  for (int i = 0; i < NAT_VOTE_REPORTS; i++) {
    const nat_report *r = &v->r[i];
    if (!r->key || (dht_ts)r->at_s * 1000 < cutoff || r->seen.family != family)
      continue;
    out->reports++;
    int n = prefixes(v, family, r->seen.ip, -1, cutoff);
    if (n > best_n || (n == best_n && best && memcmp(r->seen.ip, best->seen.ip, len) < 0)) {
      best = r;
      best_n = n;
    }
  }
  if (!best)
    return;
  out->addr.family = family;
  memcpy(out->addr.ip, best->seen.ip, 16);
  out->prefixes = best_n;
  /* the port seen from the most prefixes, for that IP */
  int port_n = 0, port = 0;
  for (int i = 0; i < NAT_VOTE_REPORTS; i++) {
    const nat_report *r = &v->r[i];
    if (!r->key || (dht_ts)r->at_s * 1000 < cutoff || r->seen.family != family ||
        memcmp(r->seen.ip, best->seen.ip, len))
      continue;
    int n = prefixes(v, family, r->seen.ip, r->seen.port, cutoff);
    if (n > port_n || (n == port_n && r->seen.port < port)) {
      port_n = n;
      port = r->seen.port;
    }
  }
  out->port_prefixes = port_n;
  if (best_n < s->min_votes)
    return; /* not enough independent witnesses yet */
  out->known = true;
  if (port_n >= s->min_votes) {
    out->mapping = NAT_MAP_EIM;
    out->addr.port = (uint16_t)port;
  } else {
    out->mapping = NAT_MAP_EDM; /* every peer sees another port: symmetric */
  }
}

void nat_vote_settings_default(nat_vote_settings *s) {
  s->min_votes = 3;
  s->max_age_ms = 10 * 60 * 1000;
}

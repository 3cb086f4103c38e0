/*
 * nat.h - the one facade of nat/: how a node behind a NAT learns its public
 * address, its NAT's behaviour and whether it can be reached, as a service
 * of the dht/ engine (docs/architecture.md, "The service interface").
 *
 * Like dht/ and store/, nat/'s core never touches a socket, a clock, a file
 * or a thread: time is an argument, and the gateway protocols (UPnP IGD,
 * NAT-PMP) are behind an ops table whose adapters only node/ links.
 *
 * This header grows with the NAT work; today it holds the address vote.
 */
#ifndef ROOST_NAT_H
#define ROOST_NAT_H

#include <stdbool.h>
#include <stdint.h>

#include "dht.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the public-address vote (nat_vote.c) ------------------------------- */

/* Reports kept per local socket: enough for min_votes witnesses in a busy
 * network several times over, small enough for a million simulated hosts. */
#define NAT_VOTE_REPORTS 16

typedef struct nat_vote_settings {
  int min_votes;     /* reporters in distinct prefixes to believe an address: 3 */
  dht_ts max_age_ms; /* a report counts this long: 10 min */
} nat_vote_settings;

void nat_vote_settings_default(nat_vote_settings *s);

/* One report: what a peer saw, the network it is in (a hash of its /24 or
 * /48, or of its whole address on loopback or a LAN), a short form of its
 * ID, and when.  key 0 marks an empty slot. */
typedef struct nat_report {
  dht_addr seen;
  uint64_t key;
  uint32_t rid;
  dht_ts at;
} nat_report;

/* The vote of one local socket.  Embed it; nat_vote_init zeroes it. */
typedef struct nat_vote {
  nat_report r[NAT_VOTE_REPORTS];
} nat_vote;

enum nat_mapping {
  NAT_MAP_UNKNOWN = 0,
  NAT_MAP_EIM, /* endpoint-independent: the same external port for every peer */
  NAT_MAP_EDM, /* endpoint-dependent (symmetric): a new port per peer */
};

typedef struct nat_vote_result {
  bool known;        /* prefixes >= min_votes */
  dht_addr addr;     /* the public IP; its port when the mapping is EIM, else 0 */
  int mapping;       /* enum nat_mapping (UNKNOWN until known) */
  int prefixes;      /* distinct reporter prefixes that saw that IP */
  int port_prefixes; /* ... that saw the most common port with it */
  int reports;       /* live reports of the family */
} nat_vote_result;

void nat_vote_init(nat_vote *v);
/* A peer at `reporter` (ID reporter_id) saw us at `seen` at now. */
void nat_vote_add(nat_vote *v, const dht_addr *seen, const dht_addr *reporter,
                  const uint8_t reporter_id[static DHT_ID_LEN], dht_ts now);
/* The vote for one address family (DHT_AF_INET or DHT_AF_INET6) at now. */
void nat_vote_get(const nat_vote *v, uint8_t family, const nat_vote_settings *s, dht_ts now,
                  nat_vote_result *out);

#ifdef __cplusplus
}
#endif
#endif /* ROOST_NAT_H */

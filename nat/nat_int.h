/*
 * nat_int.h - the NAT service's state, shared by its files: nat_svc.c (the
 * service, the votes, the mode) and nat_dial.c (dial-backs, in all three
 * roles).  Not for other folders: they use nat.h.
 */
#ifndef ROOST_NAT_INT_H
#define ROOST_NAT_INT_H

#include "nat.h"
#include "nat_wire.h"

typedef struct nat_sock {
  bool used;
  uint32_t local;
  nat_vote v;
} nat_sock;

/* A dial-back we asked for (as the one tested). */
typedef struct nat_dial {
  bool used, prober; /* prober: the helper said it asked one */
  int mapping;       /* index into mappings[], or -1: the observed address */
  uint8_t nonce[NAT_NONCE_LEN];
  uint8_t sent_to[NAT_BLOOM_LEN]; /* whom we had sent to when we asked, the helper too */
  dht_addr addr;                  /* the address under test: our public IP and the port claimed */
  dht_ts deadline;
} nat_dial;

#define NAT_DIALS 2
#define NAT_GAPS 16 /* prefixes remembered for the helper's and prober's rates */

/* 8 bytes, so that 2 x 16 of them fit the simulator's 2 KiB a host: a
 * 32-bit hash of the prefix and the time in ms mod 2^32 (a slot 49 days
 * old can look recent and cost one refusal) */
typedef struct nat_gap {
  uint32_t key, at;
} nat_gap;

/* A port mapping waiting for its dial-back. */
typedef struct nat_pending_map {
  bool used, dialing;
  int tag;
  uint16_t port;
} nat_pending_map;

#define NAT_EVENTS NAT_MAPPINGS /* a verdict per mapping; a newer one supersedes */

/* An introducer (nat_intro.c). */
typedef struct nat_intro {
  bool used, ok; /* ok: it answered a keepalive; only then in our record */
  uint8_t misses;
  uint8_t pk[DHT_PK_LEN];
  dht_addr addr;
  int64_t cmd;         /* the keepalive PING in flight, or 0 */
  dht_ts next, since;  /* next keepalive; first answer */
  dht_ts rtt_ms;
} nat_intro;

struct nat_svc {
  dht *e;
  int svc_id;
  nat_settings set;
  dht_callbacks cb;
  dht_mem mem;
  nat_sock *socks; /* nsocks of them, grown on demand up to set.max_sockets */
  int nsocks;
  dht_ts next_solicit, next_dial;
  uint64_t asked, reports, ignored, dropped;
  /* dial-backs */
  nat_dial dials[NAT_DIALS];
  int reach, fails;
  dht_addr reach_addr;
  bool reach_mapped; /* the proof came through a gateway's mapping */
  uint64_t n_dials, n_ok, n_failed, n_inconclusive, n_helped, n_probes, n_refused, n_modes;
  nat_gap helper_gaps[NAT_GAPS], prober_gaps[NAT_GAPS];
  nat_pending_map mappings[NAT_MAPPINGS];
  nat_intro intro[NAT_INTROS];
  uint64_t shunned[NAT_INTROS]; /* the last introducers that went silent (pk hashes) */
  int shun_next;
  dht_ts next_intro;
  uint64_t n_intro_changes, n_keepalives;
  nat_event ev[NAT_EVENTS]; /* ring */
  int ev_head, ev_n;
  uint64_t ev_dropped;
};

/* nat_svc.c */
/* The main socket's vote for family at now. */
void nat_svc_vote(const nat_svc *n, uint8_t family, dht_ts now, nat_vote_result *r);
/* Server or client, as the mode setting and the dial-backs say. */
void nat_svc_apply_mode(nat_svc *n, dht_ts now);

/* nat_dial.c */
/* A message of ours that is a dial-back's (everything but nothing else). */
void nat_dial_on_msg(nat_svc *n, const dht_msg_in *in, const nat_wire_msg *m, dht_ts now);
/* The answer to one of our dial-back requests, or its timeout (in == NULL). */
void nat_dial_on_answer(nat_svc *n, const dht_req *req, const nat_wire_msg *m, dht_ts now);
/* Starts a dial-back when one is due; ends those whose probe never came. */
void nat_dial_tick(nat_svc *n, dht_ts now);
dht_ts nat_dial_expiry(const nat_svc *n);

/* nat_intro.c */
/* Keepalives due, introducers to find or (a server) to drop. */
void nat_intro_tick(nat_svc *n, dht_ts now);
dht_ts nat_intro_expiry(const nat_svc *n);
/* The engine's mode changed: the next tick finds or drops introducers. */
void nat_intro_mode_changed(nat_svc *n, dht_ts now);
/* A keepalive's result; false when ev is not one. */
bool nat_intro_on_event(nat_svc *n, const dht_event *ev, dht_ts now);

/* The network an address is in, as a hash: its /24 or /48, or the whole
 * address and port on loopback and LANs (every node there a network of its
 * own), never 0. */
uint64_t nat_prefix_key(const dht_addr *a);

#endif /* ROOST_NAT_INT_H */

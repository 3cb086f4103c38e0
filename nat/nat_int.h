/*
 * nat_int.h - the NAT service's state, shared by its files: nat_svc.c (the
 * service, the votes, the mode), nat_dial.c (dial-backs, in all three
 * roles) and nat_vouch.c (vouching for strangers, in all three roles).  Not
 * for other folders: they use nat.h.
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

/* What the dial-backs showed of our public address in one family: a node
 * may be reachable over IPv6 and not over IPv4. */
typedef struct nat_fam_reach {
  dht_addr addr;          /* the address a probe reached (NAT_REACH_YES) */
  uint8_t reach;          /* enum nat_reach */
  uint8_t fails;          /* failed dial-backs in a row */
  bool mapped;            /* the proof came through a gateway's mapping */
  uint32_t last_fail_net; /* the network of the helper of the last failure */
} nat_fam_reach;

/* A dial-back we asked for (as the one tested). */
typedef struct nat_dial {
  bool used, prober;   /* prober: the helper said it asked one */
  int mapping;         /* index into mappings[], or -1: the observed address */
  uint32_t helper_net; /* the helper's network (32 bits of nat_prefix_key) */
  uint8_t nonce[NAT_NONCE_LEN];
  uint8_t sent_to[NAT_BLOOM_LEN]; /* whom we had sent to when we asked, the helper too */
  dht_addr addr;                  /* the address under test: our public IP and the port claimed */
  dht_ts deadline;
} nat_dial;

#define NAT_DIALS 2
/* Prefixes remembered for each per-network rate (helper, prober, voucher,
 * checker).  Past them the oldest is forgotten, so many networks can each
 * get their turn: the budget for others (others_pps) bounds the sum. */
#define NAT_GAPS 12

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
  int64_t cmd;        /* the keepalive PING in flight, or 0 */
  uint8_t since_reg;  /* keepalives answered since we registered (nat_punch.c) */
  dht_ts next, since; /* next keepalive; first answer */
  dht_ts rtt_ms;
} nat_intro;

/* A stranger we are having checked (as the checker). */
typedef struct nat_vouch {
  bool used;
  uint8_t asked;  /* vouchers asked so far */
  uint8_t silent; /* of them, those that never answered */
  uint8_t waits;  /* times every voucher was busy (waiting: until deadline) */
  bool waiting;
  dht_peer cand;                /* its key, and the address its request came from */
  uint8_t voucher[DHT_PK_LEN];  /* the one asked last */
  uint8_t nonce[NAT_NONCE_LEN]; /* one per candidate: every voucher carries it */
  dht_ts deadline;
} nat_vouch;

/* Vouchers asked per candidate before it goes back to the engine. */
#define NAT_VOUCHERS 3

/* A mapping verdict waiting for nat_poll_event (nat_event without what only
 * path events carry, so that the ring stays small). */
typedef struct nat_mev {
  int tag;
  bool ok;
  dht_addr addr;
} nat_mev;

/* A client we introduce (as an introducer, nat_punch.c). */
typedef struct nat_client {
  bool used;
  uint8_t pk[DHT_PK_LEN];
  dht_addr addr; /* where its registration came from: its NAT's mapping */
  uint32_t local;
  uint16_t rtt_ms; /* its RTT to us, as it measured it */
  uint8_t ncands;
  dht_addr cands[NAT_CANDS - 1]; /* those it declared */
  dht_ts at;
} nat_client;

/* A punch, on either side (nat_punch.c). */
typedef struct nat_punch {
  bool used, initiator, asking; /* asking: waiting for the introducer's answer */
  bool has_theirs;              /* the other side started one too: its nonce */
  bool pinged;                  /* the introducer intro_i was pinged for its cookie */
  uint8_t attempt, rounds, intro_i, nintro;
  uint8_t pk[DHT_PK_LEN];
  uint8_t nonce[NAT_NONCE_LEN], theirs[NAT_NONCE_LEN];
  int ncands;
  dht_addr cands[NAT_CANDS];
  dht_introducer intro[NAT_INTROS];
  int64_t ping_cmd; /* a PING to the introducer, for its cookie */
  dht_ts begin, next, gap, deadline;
  /* the relay fallback: the introducer between us (nat_relay.c) */
  dht_peer relay;
  /* the punch's first nonce, which both ends' RELAY_REQs carry: attempts
   * change the nonce, and requests of two attempts would never meet */
  uint8_t relay_nonce[NAT_NONCE_LEN];
  bool has_relay, final; /* final: the last attempt ended, the relay's answer awaited */
  uint8_t relay_state;   /* enum nat_relay_state */
  dht_ts relay_next, relay_until;
} nat_punch;

enum nat_relay_state { NAT_RELAY_NONE = 0, NAT_RELAY_ASKING, NAT_RELAY_OPEN, NAT_RELAY_FAILED };

/* A relay request waiting for the other end's (as the relay). */
typedef struct nat_halfopen {
  bool used;
  dht_peer from; /* the end that asked, at the address it asked from */
  uint8_t to[DHT_PK_LEN];
  uint8_t nonce[NAT_NONCE_LEN];
  dht_ts until;
} nat_halfopen;
#define NAT_HALFOPEN 16

/* A punched path kept alive until idle. */
typedef struct nat_keep {
  bool used;
  uint8_t pk[DHT_PK_LEN];
  dht_ts until, next;
} nat_keep;
/* Keepalives to an introducer between our registrations with it. */
#define NAT_REG_EVERY 4
#define NAT_KEEPS 16

/* Allocated at the first punch or registration: most hosts of a large
 * simulation never punch, and the service's 2 KiB a host holds without it. */
typedef struct nat_punch_state {
  nat_punch p[NAT_PUNCHES];
  nat_keep keep[NAT_KEEPS];
  nat_punch_log log[NAT_PUNCH_LOG];
  int log_n, log_next;
  nat_client *clients; /* set.clients of them, allocated at the first registration */
  nat_gap asker_gaps[NAT_GAPS];
  uint32_t hole_milli, hole_at; /* the node-wide HOLE bucket, as others_milli */
  nat_halfopen half[NAT_HALFOPEN];
  nat_event pev[2 * NAT_PUNCHES]; /* path events waiting for nat_poll_event: a ring */
  int pev_head, pev_n;
  /* counters (nat_status's punch and relay ones) */
  uint64_t started, ok, failed, holes, limited, fwd_refused, introduced, intro_refused, relayed,
      relay_asked, relay_refused;
} nat_punch_state;

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
  nat_fam_reach fr[2]; /* per address family: [0] IPv4, [1] IPv6 */
  uint8_t quick;       /* helpers asked again at once this round (no prober) */
  bool quick_round;    /* the next round is such a quick one */
  /* the budget for datagrams sent for others (PROBEs, CHECKs): a token
   * bucket, in 1/1000 of a datagram, refilled at others_pps */
  uint32_t others_milli, others_at;
  uint32_t n_dials, n_ok, n_failed, n_inconclusive, n_helped, n_probes, n_refused, n_modes;
  /* as a helper: the probers we forwarded to last (prefix hash, ms), so
   * that we do not send one a second forward within its prober_gap_ms,
   * which it would refuse after we answered OK (a false failure) */
  nat_gap fwd_recent[2];
  nat_gap helper_gaps[NAT_GAPS], prober_gaps[NAT_GAPS];
  nat_pending_map mappings[NAT_MAPPINGS];
  nat_intro intro[NAT_INTROS];
  uint64_t shunned[NAT_INTROS]; /* the last introducers that went silent (pk hashes) */
  int shun_next;
  dht_ts next_intro;
  uint64_t n_intro_changes, n_keepalives;
  nat_mev ev[NAT_EVENTS]; /* ring of the mapping verdicts (path events: ps) */
  int ev_head, ev_n;
  uint64_t ev_dropped;
  /* vouching */
  nat_vouch *vouches;              /* set.vouches of them while a check runs, else NULL */
  uint32_t check_sock[2];          /* the voucher's own socket, [0] IPv4, [1] IPv6; 0: none */
  int64_t check_req[2];            /* their dht_sock_open requests */
  nat_gap voucher_gaps[NAT_GAPS];  /* as the voucher: askers served */
  nat_gap vouchers_used[NAT_GAPS]; /* as the checker: vouchers asked */
  uint32_t v_asked, v_ok, v_failed, v_full, v_fallback, v_checks, v_checks_main, v_refused,
      v_vouched, v_ignored;
  /* hole punching */
  nat_punch_state *ps; /* NULL until the first punch or registration */
  dht_addr *lan;       /* our LAN candidates (nat_set_candidates): NULL until there are some */
  int nlan;
};

/* nat_svc.c */
/* One line to cb.log at level, when set.log_level lets it through. */
void nat_log(const nat_svc *n, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The main socket's vote for family at now. */
void nat_svc_vote(const nat_svc *n, uint8_t family, dht_ts now, nat_vote_result *r);
/* 0 for IPv4, 1 for IPv6: the index into fr[] and nat_status's families. */
static inline int nat_fam(uint8_t family) {
  return family == DHT_AF_INET6 ? 1 : 0;
}
/* Server or client, as the mode setting and the dial-backs say. */
void nat_svc_apply_mode(nat_svc *n, dht_ts now);

/* nat_dial.c */
/* A hash of a's network (/24, /48; on loopback and LANs the whole address
 * and port), never 0. */
uint64_t nat_prefix_key(const dht_addr *a);
/* One more event from prefix key: allowed (and noted) when the last was gap ago. */
bool nat_gap_ok(nat_gap *g, uint64_t key, dht_ts gap, dht_ts now);
/* One datagram for someone else (a PROBE, a CHECK) from the node-wide
 * budget: true and spent, or false (over the budget, counted by the caller). */
bool nat_others_ok(nat_svc *n, dht_ts now);
/* Whether nat_gap_ok would refuse key now (it records nothing). */
bool nat_gap_busy(const nat_gap *g, uint64_t key, dht_ts gap, dht_ts now);
/* Whether a is in a dht_recent_dests-style Bloom filter. */
bool nat_in_bloom(const uint8_t bloom[static NAT_BLOOM_LEN], const dht_addr *a);
/* Whether a stranger at `from` may have us send to t (nat_dial.c says why). */
bool nat_target_ok(const dht_addr *t, const dht_addr *from);
/* Queues an event for nat_poll_event (the oldest goes when full). */
void nat_push_event(nat_svc *n, const nat_event *ev);
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

/* nat_vouch.c */
/* Asks the driver for the voucher's own sockets (at the start). */
void nat_vouch_start(nat_svc *n);
/* DHT_EV_CANDIDATE and our sockets' DHT_EV_SOCK_OPENED; true when taken. */
bool nat_vouch_on_event(nat_svc *n, const dht_event *ev, dht_ts now);
/* VOUCH_REQ, CHECK and VOUCHED that are not answers. */
void nat_vouch_on_msg(nat_svc *n, const dht_msg_in *in, const nat_wire_msg *m, dht_ts now);
/* The answer to our VOUCH_REQ or CHECK, or its timeout (m == NULL). */
void nat_vouch_on_answer(nat_svc *n, const dht_req *req, const nat_wire_msg *m, dht_ts now);
/* Ends the checks whose VOUCHED never came. */
void nat_vouch_tick(nat_svc *n, dht_ts now);
dht_ts nat_vouch_expiry(const nat_svc *n);

/* nat_punch.c */
/* One more of the punch state's counter f (the state allocated if need be). */
#define NAT_PCOUNT(n, f)                                                                           \
  do {                                                                                             \
    nat_punch_state *ps_ = nat_punch_state_of(n);                                                  \
    if (ps_)                                                                                       \
      ps_->f++;                                                                                    \
  } while (0)
/* INTRO_REG, PUNCH_REQ, PUNCH_FWD and HOLE that are not answers. */
void nat_punch_on_msg(nat_svc *n, const dht_msg_in *in, const nat_wire_msg *m, dht_ts now);
/* The answer to one of our punch requests (in and m NULL: none came). */
void nat_punch_on_answer(nat_svc *n, const dht_req *req, const dht_msg_in *in,
                         const nat_wire_msg *m, dht_ts now);
/* The PING for an introducer's cookie; false when ev is not one. */
bool nat_punch_on_event(nat_svc *n, const dht_event *ev, dht_ts now);
/* Probe rounds, attempts that ran out, keepalives of punched paths. */
void nat_punch_tick(nat_svc *n, dht_ts now);
dht_ts nat_punch_expiry(const nat_svc *n);
/* Registers us with introducer `who` (as a client; nat_intro.c calls it). */
void nat_punch_register(nat_svc *n, const dht_peer *who, dht_ts rtt_ms, dht_ts now);
/* For nat_get_status. */
void nat_punch_status(const nat_svc *n, dht_ts now, nat_status *st);
void nat_punch_free(nat_svc *n);
/* The punch state, allocated at the first call (NULL: out of memory). */
nat_punch_state *nat_punch_state_of(nat_svc *n);

/* nat_relay.c */
/* A RELAY_REQ (as the relay). */
void nat_relay_on_req(nat_svc *n, const dht_msg_in *in, const nat_wire_msg *m, dht_ts now);
/* Asks punch p's relay for a circuit (as an end); again while PENDING. */
void nat_relay_ask(nat_svc *n, nat_punch_state *ps, nat_punch *p, uint64_t tag, dht_ts now);

#endif /* ROOST_NAT_INT_H */

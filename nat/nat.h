/*
 * nat.h - the one facade of nat/: how a node behind a NAT learns its public
 * address, its NAT's behaviour and whether it can be reached, as a service
 * of the dht/ engine (docs/architecture.md, "The service interface").
 *
 * Like dht/ and store/, nat/'s core never touches a socket, a clock, a file
 * or a thread: time is an argument, and the gateway protocols (UPnP IGD,
 * NAT-PMP) are behind an ops table whose adapters only node/ links.
 *
 * This header grows with the NAT work: the address vote, dial-backs and the
 * mode, introducers, and the verdicts on port mappings.
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
 * network four times over, small enough for a million simulated hosts. */
#define NAT_VOTE_REPORTS 12

typedef struct nat_vote_settings {
  int min_votes;     /* reporters in distinct prefixes to believe an address: 3 */
  dht_ts max_age_ms; /* a report counts this long: 10 min */
} nat_vote_settings;

void nat_vote_settings_default(nat_vote_settings *s);

/* One report: what a peer saw, the network it is in (a 32-bit hash of its
 * /24 or /48, or of its whole address on loopback or a LAN), and when (in
 * seconds: reports live minutes).  key 0 marks an empty slot. */
typedef struct nat_report {
  dht_addr seen;
  uint32_t key;
  uint32_t at_s;
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
/* A peer at `reporter` saw us at `seen` at now.  Its network's slot takes
 * the report, whoever in that network sent it. */
void nat_vote_add(nat_vote *v, const dht_addr *seen, const dht_addr *reporter, dht_ts now);
/* The vote for one address family (DHT_AF_INET or DHT_AF_INET6) at now. */
void nat_vote_get(const nat_vote *v, uint8_t family, const nat_vote_settings *s, dht_ts now,
                  nat_vote_result *out);

/* ---- the service (nat_svc.c) ---------------------------------------------- */

#define NAT_INTROS DHT_RECORD_MAX_INTRO

/* Message types nat/ owns in the engine (0x40-0x5f). */
#define NAT_MSG_LO 0x40
#define NAT_MSG_HI 0x5f

/* How the node decides its DHT mode. */
enum nat_mode {
  NAT_MODE_SERVER = 0, /* reachable by declaration: seeds, VPS, tests on loopback */
  NAT_MODE_CLIENT,     /* never stored in others' tables */
  NAT_MODE_AUTO,       /* client until a dial-back proves an address reachable */
};

/* What the dial-backs have shown of our main socket's address. */
enum nat_reach {
  NAT_REACH_UNKNOWN = 0, /* not tested, or nobody could test it */
  NAT_REACH_YES,         /* a probe from a node we never sent to got in */
  NAT_REACH_NO,          /* probes were sent and none got in, or a symmetric NAT */
};

typedef struct nat_settings {
  int mode; /* enum nat_mode: NAT_MODE_SERVER */
  nat_vote_settings vote;
  int solicit;          /* peers asked for a witness (a PING) per round: 4 */
  dht_ts solicit_ms;    /* a round at most this often while the vote is open: 15 s (a round
                         * whose PONGs were lost must not leave a new node without
                         * its address for a minute) */
  dht_ts recheck_ms;    /* once known, ask again this often (the NAT may change): 10 min */
  int max_sockets;      /* local sockets with a vote of their own: 4 */
  dht_ts dial_ms;       /* a dial-back at most this often while undecided: 30 s */
  dht_ts redial_ms;     /* and once decided, again after: 10 min */
  dht_ts probe_wait_ms; /* a probe must arrive this long after DIAL_RESP ok: 5 s */
  int fails_to_client;  /* failed dial-backs in a row before client mode: 3 */
  dht_ts helper_gap_ms; /* DIAL_REQ served per requester prefix at most every: 5 s */
  dht_ts prober_gap_ms; /* DIAL_FWD honoured per asker prefix at most every: 1 s */
  int introducers;      /* kept while not a server, 0..NAT_INTROS: 3 */
  dht_ts keepalive_ms;  /* a PING to each introducer this often: 25 s */
  int intro_misses;     /* unanswered keepalives in a row that drop one: 3 */
  int log_level;        /* enum dht_log_level, for cb.log: DHT_LOG_WARN */
  int others_pps;       /* PROBEs and CHECKs sent for others, per second, node-wide: 20 */
  int others_burst;     /* ... at most this many at once: 40 */
  /* Vouching (nat_vouch.c): a stranger that asks to be stored enters the
   * table only once a third node's CHECK reached it (docs/protocol.md,
   * "Routing table"). */
  bool vouch;            /* check strangers through a voucher, not the engine's PING: true */
  int vouches;           /* strangers being checked at once (1..64): 8 */
  dht_ts vouch_wait_ms;  /* the VOUCHED must arrive this long after the VOUCH_REQ: 5 s */
  dht_ts voucher_gap_ms; /* VOUCH_REQ honoured per asker prefix at most every: 1 s */
  /* Hole punching (nat_punch.c; docs/protocol.md, "Hole punching"). */
  int clients;          /* as an introducer: clients registered at once (0..1024): 32 */
  dht_ts client_ttl_ms; /* a registration lasts (clients renew every 4th keepalive): 5 min */
  dht_ts punch_gap_ms;  /* PUNCH_REQ served per asker prefix at most every: 1 s */
  dht_ts punch_ms;      /* one attempt's probing lasts: 3 s */
  int punch_tries;      /* attempts, each through the introducers again (1..8): 3 */
  int punch_rounds;     /* probe rounds an attempt, a HOLE to every candidate each (1..64): 16 */
  int prime_ttl;        /* IP TTL of the first HOLE to each candidate, 0 = the socket's: 3 */
  int hole_pps;         /* HOLEs to candidates, node-wide, per second: 100 */
  int hole_burst;       /* ... at most this many at once: 200 */
  dht_ts path_idle_ms;  /* a punched path is kept (a PING every keepalive_ms) this long
                         * after the last nat_connect to its key: 10 min */
  /* Relaying (nat_relay.c): when the first attempt of a punch fails, both
   * ends ask the introducer between them for a circuit; as a server we
   * offer one to two keys that both asked for it, within these limits (the
   * engine's max_circuits, 64, bounds how many at once). */
  bool relay;          /* offer circuits (a server only): true */
  dht_ts relay_ms;     /* a circuit lasts at most: 10 min */
  int64_t relay_bytes; /* ... and carries at most: 16 MiB */
} nat_settings;

void nat_settings_default(nat_settings *s);

typedef struct nat_svc nat_svc;

/* Plugs a NAT service into engine e (it must outlive the service).  cb.rand
 * is required; mem may be NULL.  Returns 0, DHT_ERR_INVAL or DHT_ERR_NOMEM. */
int nat_svc_new(nat_svc **out, dht *e, const nat_settings *s, const dht_callbacks *cb,
                const dht_mem *mem, dht_ts now);
/* Unplugs it (before dht_del) and frees it; NULL is fine. */
void nat_svc_del(nat_svc *n);

/* The last punches, for roost nat. */
#define NAT_PUNCH_LOG 8
typedef struct nat_punch_log {
  uint8_t pk[DHT_PK_LEN];
  bool ok, initiator;
  int method; /* the path's (ok): DHT_PATH_PUNCHED or DHT_PATH_RELAYED */
  int attempts;
  dht_ts ms;     /* from the start to the path, or to giving up */
  dht_ts at;     /* ended at */
  dht_addr addr; /* the peer's address on the path (ok) */
} nat_punch_log;

/* What the node knows of its own addresses, for people and for its record. */
typedef struct nat_status {
  /* per family: [0] IPv4, [1] IPv6; from the main socket's vote */
  nat_vote_result vote[2];
  int mode;    /* enum nat_mode (settings) */
  bool server; /* the engine's mode now */
  int reach;   /* enum nat_reach: YES when a family is, NO when one was tested and none is */
  dht_addr reach_addr; /* the address a probe reached (NAT_REACH_YES) */
  int fails;           /* failed dial-backs in a row (the family with most) */
  struct {
    int reach;     /* enum nat_reach, of this family's public address */
    dht_addr addr; /* the address a probe reached (NAT_REACH_YES) */
    int fails;     /* failed dial-backs in a row */
  } fam[2];        /* [0] IPv4, [1] IPv6 */
  uint64_t dials, dials_ok, dials_failed, dials_inconclusive; /* as the one tested */
  uint64_t helped, probes_sent, refused;                      /* for others */
  uint64_t mode_changes;
  uint64_t dropped;         /* datagrams of our range dropped: malformed, unknown, unasked */
  uint64_t witnesses_asked; /* PINGs sent to gather reports */
  uint64_t reports;         /* address reports taken */
  uint64_t reports_ignored; /* from sockets past max_sockets */
  /* introducers (while not a server): each answered a keepalive */
  int nintro;
  struct {
    dht_introducer who;
    dht_ts since_ms; /* answering for this long */
    dht_ts rtt_ms;   /* the last keepalive's */
  } intro[NAT_INTROS];
  uint64_t intro_changes; /* introducers gained or lost */
  uint64_t keepalives;    /* keepalive PINGs sent */
  /* vouching, as the checker: strangers handed to a voucher, inserted after
   * their VOUCHED, not inserted (no VOUCHED in time, or the voucher
   * refused), dropped with every slot busy, left to the engine's verify PING
   * (no voucher in another network than the stranger's) */
  uint64_t vouch_asked, vouch_ok, vouch_failed, vouch_full, vouch_fallback;
  /* as the voucher: CHECKs sent (of them from the main socket, for want of
   * another), VOUCH_REQs refused */
  uint64_t checks_sent, checks_main_socket, vouch_refused;
  /* as the candidate: VOUCHEDs sent; CHECKs ignored (another socket, or an
   * asker we had not sent to) */
  uint64_t vouched_sent, checks_ignored;
  /* hole punching: as the one connecting or connected to, and as an
   * introducer (clients registered now, punches introduced, refused) */
  uint64_t punches, punches_ok, punches_failed, holes_sent, holes_limited, fwds_refused;
  /* relaying: circuits we got (as an end), asked for and refused (as the relay) */
  uint64_t relayed_paths, relay_asked, relay_refused;
  int clients;
  uint64_t introduced, intro_refused;
  int npunch_log; /* newest first */
  nat_punch_log punch_log[NAT_PUNCH_LOG];
} nat_status;

void nat_get_status(const nat_svc *n, dht_ts now, nat_status *st);
/* The vote of local socket `local` (0: the main socket), or NULL. */
const nat_vote *nat_socket_vote(const nat_svc *n, uint32_t local);

/* Port mappings to prove.  The driver's port-mapping policy (nat_portmap.h)
 * reports that the gateway mapped our main socket's port to external port
 * `port`; the service has that port dial-backed at our public IPv4 address,
 * as peers see it (a gateway behind another NAT maps an address nobody can
 * reach, and the dial-back shows it; NAT-PMP and IGDv1 map IPv4 only, so
 * the verdict waits for the IPv4 vote), and reports the verdict as a NAT_EV_MAPPING
 * event carrying the caller's tag.  A newer call with the same tag replaces
 * the older.  Returns 0 or DHT_ERR_FULL (NAT_MAPPINGS tags pending). */
#define NAT_MAPPINGS 4
int nat_verify_mapping(nat_svc *n, int tag, uint16_t port, dht_ts now);

enum nat_event_type {
  NAT_EV_MAPPING = 1, /* tag, ok, addr (our public IP and the mapped port) */
  NAT_EV_PATH = 2,    /* pk, ok, addr (where the peer answered), ms (time to connect) */
};

typedef struct nat_event {
  int type;
  int tag;
  bool ok;
  dht_addr addr;
  uint8_t pk[DHT_PK_LEN];
  dht_ts ms;
} nat_event;

/* Hole punching (nat_punch.c).  Opens a path to the node of key pk, which
 * is not reachable and names introducers in its record: through the first
 * of them that knows it, both sides learn each other's candidate addresses
 * and probe them at the same moment until a probe gets through a hole both
 * NATs opened; up to punch_tries attempts.  The path goes into the engine
 * (dht_path_set, DHT_PATH_PUNCHED), so every service's datagrams to pk take
 * it, and NAT_EV_PATH says how it went.  A punch already running for pk
 * just goes on.  Returns 0, DHT_ERR_INVAL (no introducer, or pk is ours),
 * DHT_ERR_FULL (NAT_PUNCHES running) or DHT_ERR_NOMEM. */
#define NAT_PUNCHES 4
int nat_connect(nat_svc *n, const uint8_t pk[static DHT_PK_LEN], const dht_introducer *intro,
                int nintro, dht_ts now);
/* Our own addresses that a peer behind the same router reaches without
 * hairpinning (LAN addresses with our port): the driver's, from its
 * interfaces.  Sent to our introducers and in our punch requests; at most
 * NAT_LAN_CANDS are kept.  Returns how many were taken. */
#define NAT_LAN_CANDS 3
int nat_set_candidates(nat_svc *n, const dht_addr *a, int count);

/* Pops the next event.  0, or DHT_ERR_NOTFOUND. */
int nat_poll_event(nat_svc *n, nat_event *ev);

/* Short names for people and logs. */
const char *nat_mapping_name(int mapping); /* "unknown", "endpoint-independent", "symmetric" */
const char *nat_reach_name(int reach);     /* "unknown", "reachable", "not reachable" */

#ifdef __cplusplus
}
#endif
#endif /* ROOST_NAT_H */

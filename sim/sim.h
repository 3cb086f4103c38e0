/*
 * sim.h - roost-sim: network experiments on the real protocol code.
 *
 * One process, a virtual clock, an event heap ordered by (time, sequence),
 * and many simulated hosts, each running the real dht/ engine through the
 * same drive loop as roostd (read_pkt -> drain write_pkt -> drain events ->
 * timer from get_expiry).  A seed reproduces a run exactly; a hash over every
 * processed event (the trace hash) proves it.
 *
 * Files:
 *   sim_main.c      the roost-sim command line
 *   sim_scenario.c  scenario files and flags -> sim_config
 *   sim_rtt.c       latency models: an RTT table from a file, the synthetic torus
 *   sim_dist.c      random distributions (session lengths, truncated normal)
 *   sim_net.c       the virtual network: addresses, sending and delivering
 *                   datagrams, latency, jitter, loss, uplink queues, partitions,
 *                   NAT boxes
 *   sim_run.c       the event loop: hosts and their drive loop, churn,
 *                   workloads, metrics, the NAT service on every host (nat on)
 *   sim_msg.c       the messaging workload (a sim_workload_ops table): a mailbox
 *                   service on every host, friend pairs sending messages
 *   sim_out.c       manifest, CSV and JSON metrics, gnuplot plots
 *   sim_int.h       interfaces between these files that are nobody else's:
 *                   the network's, for sim_run.c
 */
#ifndef ROOST_SIM_H
#define ROOST_SIM_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dht.h"

#define SIM_VERSION "0.1.0"

/* ---- random streams (sim_dist.c) --------------------------------------- */

/* A ChaCha20 keystream: one per host and one per purpose, all derived from
 * the master seed, so adding a host never shifts another's stream. */
typedef struct sim_rng {
  uint8_t key[32];
  uint64_t block;
  uint8_t buf[256];
  unsigned pos;
} sim_rng;

void sim_rng_init(sim_rng *r, uint64_t seed, uint64_t stream);
void sim_rng_bytes(sim_rng *r, uint8_t *out, size_t len);
uint64_t sim_rng_u64(sim_rng *r);
uint64_t sim_rng_below(sim_rng *r, uint64_t n); /* uniform in [0, n) */
double sim_rng_unit(sim_rng *r);                /* uniform in [0, 1) */
double sim_rng_normal(sim_rng *r);              /* standard normal */

/* Replaces libsodium's randombytes with a deterministic generator seeded
 * from seed.  Must run before sodium_init().  Returns 0 or -1. */
int sim_sodium_deterministic(uint64_t seed);

enum sim_dist_kind { SIM_DIST_NONE = 0, SIM_DIST_EXP, SIM_DIST_WEIBULL, SIM_DIST_PARETO };

/* A session-length (or down-time) distribution, in milliseconds.
 *   exp      mean
 *   weibull  shape k, scale lambda
 *   pareto   shape alpha, minimum x_m */
typedef struct sim_dist {
  int kind;
  double a, b; /* exp: a = mean; weibull: a = k, b = lambda; pareto: a = alpha, b = x_m */
} sim_dist;

/* Draws one value (ms, >= 1).  NONE gives DHT_TS_NEVER. */
dht_ts sim_dist_draw(const sim_dist *d, sim_rng *r);
/* The median of d in ms (for reports). */
double sim_dist_median(const sim_dist *d);
/* Parses "exp(mean=30m)", "weibull(k=0.5,scale=1h)", "pareto(alpha=1.5,min=10m)",
 * "none"; also a "median=" form for each (scale/mean/min derived).  0 or -1
 * with a reason in err. */
int sim_dist_parse(sim_dist *d, const char *s, char *err, size_t errlen);
/* Durations: "250ms", "30s", "10m", "2h", "1d", plain numbers are ms.
 * 0 or -1. */
int sim_parse_duration(const char *s, dht_ts *out);

/* ---- latency (sim_rtt.c) ------------------------------------------------- */

typedef struct sim_rtt sim_rtt; /* an RTT table loaded from a file */

/* Loads a country-to-country RTT table in the format of RIPE-derived
 * country_rtt_stat.csv(.gz): header "cty1,cty2,rtt_cnt,rtt_avg,rtt_std,
 * rtt_min,rtt_max", one row per unordered pair (gzip or plain text).
 * Returns 0 or -1 with a reason naming the file and line in err. */
int sim_rtt_load(sim_rtt **out, const char *path, char *err, size_t errlen);
void sim_rtt_free(sim_rtt *t);
int sim_rtt_countries(const sim_rtt *t);
const char *sim_rtt_country_name(const sim_rtt *t, int c);
/* Picks a country for a host, weighted by how many measurements involve it
 * (a stand-in for where Internet hosts are). */
int sim_rtt_pick_country(const sim_rtt *t, sim_rng *r);
/* The base RTT (ms) of the link between two hosts in countries ca and cb: a
 * truncated normal draw from the pair's statistics, fixed per link (derived
 * from link_seed), bounded by the pair's min and max and by [avg/2, 2 avg]
 * (the aggregates carry outliers that would give impossible links).  Pairs without data
 * fall back to the same-country statistics or the global mean. */
double sim_rtt_link(const sim_rtt *t, int ca, int cb, uint64_t link_seed);

/* The default synthetic model: hosts at random points of a unit torus; RTT =
 * base + per_unit x distance (a metric, so the triangle inequality holds). */
typedef struct sim_coord {
  float x, y;
} sim_coord;

double sim_synth_rtt(sim_coord a, sim_coord b, double base_ms, double per_unit_ms);

/* ---- NAT boxes (sim_net.c models them, sim_scenario.c names them) ------- */

/* What stands between a host and the Internet.  PUBLIC: nothing, the host
 * has a public address.  The others put the host behind a box of its own
 * (a home router) with the RFC 4787 behaviour named:
 *   FULL        endpoint-independent mapping and filtering (full cone)
 *   RESTRICTED  EIM, address-dependent filtering
 *   PORT        EIM, address-and-port-dependent filtering (most home routers)
 *   SYMMETRIC   address-and-port-dependent mapping (a new external port per
 *               destination) and filtering
 *   UPNP        PORT, and the box's gateway accepts port forwards */
enum sim_nat_type {
  SIM_NAT_PUBLIC = 0,
  SIM_NAT_FULL,
  SIM_NAT_RESTRICTED,
  SIM_NAT_PORT,
  SIM_NAT_SYMMETRIC,
  SIM_NAT_UPNP,
  SIM_NAT_TYPES
};

/* The type's name in nat-mix and reports ("public", "full", "restricted",
 * "port", "symmetric", "upnp"); "?" for anything else. */
const char *sim_nat_type_name(int type);

/* What the boxes did over a run (all zero without boxes). */
typedef struct sim_nat_stats {
  int hosts[SIM_NAT_TYPES]; /* hosts of each type, public included */
  uint64_t flows;           /* mappings (flows) created, refreshes not counted */
  uint64_t filtered;        /* inbound datagrams a box's filter dropped */
  uint64_t primed;          /* low-TTL datagrams that died after their own box */
  uint64_t hairpinned;      /* datagrams a box turned back inward */
  uint64_t no_hairpin;      /* ... or dropped, hairpinning being off */
  uint64_t table_full;      /* outbound datagrams dropped: the box had no room */
  size_t bytes, peak_bytes; /* the boxes' memory: table and mappings */
} sim_nat_stats;

/* ---- configuration (sim_scenario.c) -------------------------------------- */

enum sim_action {
  SIM_ACT_PARTITION = 1, /* arg: fraction of hosts cut off from the rest */
  SIM_ACT_HEAL,
  SIM_ACT_LEAVE,   /* arg: fraction of online hosts that vanish */
  SIM_ACT_JOIN,    /* arg: number of new hosts that join */
  SIM_ACT_LOOKUPS, /* arg: burst of lookups now */
};

typedef struct sim_script {
  dht_ts at;
  int action;
  double arg;
} sim_script;

#define SIM_MAX_SCRIPT 64

typedef struct sim_config {
  int nodes; /* hosts at the start */
  uint64_t seed;
  char out_dir[PATH_MAX];
  char rtt_file[PATH_MAX]; /* "" = synthetic model */
  char scenario_file[PATH_MAX];

  dht_ts duration_ms;  /* simulated time after the join phase */
  dht_ts join_ms;      /* hosts join spread over this window */
  dht_ts warmup_ms;    /* after the join window, before the workload starts */
  int bootstrap_peers; /* how many online hosts a joining host is given */

  /* network */
  double synth_base_ms, synth_per_unit_ms;
  double jitter;          /* fraction of the one-way delay, uniform +- */
  double loss;            /* probability a datagram is lost */
  uint64_t bandwidth_bps; /* per-host uplink, 0 = unlimited */
  uint32_t queue_bytes;   /* uplink queue before tail drop */

  /* NAT boxes (sim_net.c): the share of hosts of each enum sim_nat_type
   * (fractions summing to 1; all public by default), every box's mapping
   * timeout and whether boxes hairpin */
  double nat_mix[SIM_NAT_TYPES];
  dht_ts nat_timeout_ms;
  bool nat_hairpin;
  /* the NAT service (nat/) on every host: off by default, so runs without
   * it keep their trace hash; nat_seeds public hosts run it in server mode
   * and are what joining hosts bootstrap from (docs/sim.md, NAT service) */
  bool nat_svc;
  int nat_seeds;
  /* with nat_svc: every host in server mode, NATed ones too (the
   * misconfiguration vouching guards against); and whether services vouch
   * for strangers (off: the engine's verify PING) */
  bool nat_force_server;
  bool nat_vouch;
  /* with nat_svc: the share of upnp boxes whose gateway misbehaves (never
   * answers, or answers nonsense; sim_gw.c) */
  double nat_gw_bad;
  /* punching (nat on): after the warm-up, a random host that is not a
   * server connects to another (nat_connect, through the target's
   * introducers) at this rate, up to max_punches (0: no limit) */
  double punch_rate;
  int max_punches;

  /* churn */
  sim_dist session, downtime;
  double vanish; /* fraction of departures that lose all state */

  /* workload, network-wide rates per second */
  double lookup_rate, get_rate, put_rate;
  int max_lookups; /* stop issuing after this many (0 = no limit) */

  /* messaging workload (sim_msg.c); msg_pairs 0 = off */
  int msg_pairs;          /* friend pairs (sender, recipient) */
  int msg_count;          /* messages each sender sends while its friend is away */
  dht_ts msg_offline_min; /* recipient offline for uniform [min, max] */
  dht_ts msg_offline_max;
  dht_ts msg_start_window; /* offline periods start uniformly in this window after warm-up */
  int msg_hosts;           /* always-online friend hosts shared by the recipients; 0 = DHT only */
  dht_ts msg_poll_ms;      /* the services' fetch interval */

  /* engine */
  bool crypto; /* false: datagrams neither encrypted nor authenticated */
  int k;

  /* output */
  dht_ts sample_ms; /* time-series interval */
  bool progress;    /* progress bar (on when stderr is a terminal) */
  bool quiet;

  sim_script script[SIM_MAX_SCRIPT];
  int nscript;
} sim_config;

void sim_config_default(sim_config *c);
/* Applies one "key = value" (from a scenario file or a --key VALUE flag).
 * where names the source ("file:line" or "--flag").  0 or -1 + err. */
int sim_config_set(sim_config *c, const char *key, const char *value, const char *where, char *err,
                   size_t errlen);
/* Reads a scenario file: "key = value" lines, "at TIME ACTION [ARG]" script
 * lines, '#' comments.  0 or -1 + err naming file, line and problem. */
int sim_scenario_load(sim_config *c, const char *path, char *err, size_t errlen);
/* Checks cross-field sanity (e.g. join window, rates).  0 or -1 + err. */
int sim_config_check(const sim_config *c, char *err, size_t errlen);
/* Writes the configuration as a JSON object body (for the manifest). */
void sim_config_json(const sim_config *c, FILE *f);
void sim_config_help(FILE *f);

/* ---- results (sim_run.c produces, sim_out.c writes) ---------------------- */

enum sim_op_kind { SIM_OP_LOOKUP = 1, SIM_OP_GET, SIM_OP_PUT, SIM_OP_BOOTSTRAP };

typedef struct sim_op {
  uint8_t kind;
  uint8_t ok;      /* lookup: exact k closest; get: record with the right address; put: >= 1 ack */
  uint8_t overlap; /* lookup: how many of the true k closest were found */
  uint8_t rounds;
  uint16_t messages;
  int32_t host;
  dht_ts start_ms, end_ms;
  int status;
} sim_op;

typedef struct sim_sample {
  dht_ts t_ms;
  int online;
  uint64_t ops_done, ops_ok; /* in this interval */
  uint64_t packets;          /* datagrams delivered in this interval */
  uint64_t dropped;          /* lost, partitioned or queue-dropped in this interval */
  /* nat on, at most once a simulated minute (has_tbl): routing-table
   * entries of the hosts up at the sample, and those a stranger cannot
   * reach (the box model's truth, as at the end) */
  uint64_t tbl_entries, tbl_unreachable;
  bool has_tbl;
} sim_sample;

/* One message of the messaging workload (-1: never). */
/* direct: to an address the record gave; punched, relayed: over a path
 * nat/ opened (the recipient's engine holds it for the sender's key) */
enum sim_msg_path {
  SIM_PATH_NONE = 0,
  SIM_PATH_DIRECT,
  SIM_PATH_MAILBOX,
  SIM_PATH_HOST,
  SIM_PATH_PUNCHED,
  SIM_PATH_RELAYED,
  SIM_PATHS
};

typedef struct sim_msg_rec {
  int32_t sender, recipient, host; /* host: the recipient's friend host, -1 if none */
  dht_ts offline_ms, back_ms;      /* the recipient's scripted absence */
  dht_ts due_ms;                   /* when the sender meant to send */
  dht_ts sent_ms;                  /* store_send (later than due if the sender was down) */
  dht_ts stored_ms;                /* STORE_ST_STORED at the sender */
  dht_ts delivered_ms;             /* first STORE_EV_MESSAGE at the recipient */
  uint8_t path;                    /* enum sim_msg_path */
  uint16_t dups;                   /* further STORE_EV_MESSAGE for it (dropped) */
  uint16_t sends;                  /* store_send calls (re-sent after a sender restart) */
} sim_msg_rec;

/* One host's NAT service as the run saw it (times absolute, -1: never),
 * for its last incarnation. */
typedef struct sim_nat_host {
  dht_ts start_ms; /* the incarnation started (joined the network) */
  dht_ts class_ms; /* the vote of its main socket first known */
  dht_ts mode_ms;  /* the (server, reach) pair last changed; start_ms if never */
  uint8_t type;    /* enum sim_nat_type */
  uint8_t seed;    /* NAT_MODE_SERVER by configuration */
  uint8_t up, server, reach;
  uint8_t cls;    /* enum nat_mapping of the vote at the end */
  uint8_t mapped; /* a port mapping a dial-back verified is in its record */
} sim_nat_host;

/* What the NAT services did (empty unless nat_svc). */
typedef struct sim_natsvc_stats {
  sim_nat_host *hosts; /* nhosts of them */
  int nhosts;
  uint64_t dials, dials_ok, dials_failed, dials_inconclusive; /* all incarnations */
  uint64_t helped, probes;
  /* vouching (all incarnations): strangers checked, inserted, not inserted,
   * handed back to the engine's verify PING; CHECKs sent, of them from a
   * main socket */
  uint64_t vouch_asked, vouch_ok, vouch_failed, vouch_fallback, checks, checks_main;
  /* routing-table entries of the hosts up at the end, and those whose host
   * a stranger's datagram cannot reach (the box model's truth) */
  uint64_t entries, entries_unreachable, entries_unknown;
  size_t svc_bytes; /* one service with nothing in flight: struct and heap */
  /* port mapping (hosts behind a box run the policy, nat_portmap.h):
   * ADD requests sent to gateways (renewals included) and those granted,
   * over every incarnation; dial-back verdicts on mappings; the policy and
   * its gateway's state for one host */
  uint64_t maps_asked, maps_granted, maps_verified, maps_refuted;
  size_t pm_bytes;
} sim_natsvc_stats;

/* One nat_connect of the punch experiment (punch.csv). */
typedef struct sim_punch_rec {
  int from, to;         /* hosts */
  uint8_t ftype, ttype; /* their enum sim_nat_type */
  int8_t method;        /* the path's dht_path_method, 0: none (failed), -1: still open */
  dht_ts start_ms, ms;  /* started at; time to the path or to giving up */
} sim_punch_rec;

typedef struct sim_result {
  sim_op *ops;
  size_t nops, aops;
  sim_sample *samples;
  size_t nsamples, asamples;
  uint64_t *tx_per_host; /* datagrams sent by each host (indexed by host) */
  int nhosts;
  uint64_t events, packets, lost;
  double wall_s;
  size_t peak_rss_kb;
  uint8_t trace_hash[32];
  bool crypto;
  /* messaging (empty when msg_pairs = 0) */
  sim_msg_rec *msgs;
  size_t nmsgs;
  uint64_t msg_loss_notices, msg_loss_items; /* STORE_EV_LOSS at recipients */
  uint64_t msg_fetch_rounds, msg_deposits_in, msg_recon_pushed, msg_recon_pulled;
  sim_nat_stats nat;       /* what the NAT boxes did */
  sim_natsvc_stats natsvc; /* what the NAT services did (nat_svc on) */
  sim_punch_rec *punches;  /* the punch experiment (punch_rate > 0) */
  size_t npunches, apunches;
} sim_result;

/* Runs the simulation.  Returns 0 or -1 + err. */
int sim_run(const sim_config *c, sim_result *res, char *err, size_t errlen);
void sim_result_free(sim_result *res);

/* Writes manifest.json, ops.csv, series.csv, hosts.csv, summary.json and,
 * when gnuplot is installed, the plots, into c->out_dir.  0 or -1 + err. */
int sim_out_write(const sim_config *c, const sim_result *res, char *err, size_t errlen);

/* ---- workloads (sim_msg.c) ------------------------------------------------ */

/* What the run offers a workload: its hosts and its event queue, as a
 * function table and the run's context (valid for the whole run).  A
 * workload reaches the run only through these. */
typedef struct sim_run_ops {
  void *ctx;
  /* Schedules the workload's event(host, arg) at time at. */
  void (*schedule)(void *ctx, dht_ts at, int host, uint32_t arg);
  /* Schedules a churn join of host at time at, with churn generation gen. */
  void (*schedule_join)(void *ctx, dht_ts at, int host, uint32_t gen);
  /* Stops host now (its engine and workload state go, host_down is called);
   * keep: a warm stop, it keeps its routing table and stored items. */
  void (*leave)(void *ctx, int host, bool keep);
  /* Runs host's drive loop now: after the workload gave its engine work. */
  void (*drive)(void *ctx, int host);
  bool (*is_up)(const void *ctx, int host);
  dht_addr (*address)(const void *ctx, int host);
  /* The host's identity (the run's; valid for the run). */
  const dht_identity *(*identity)(const void *ctx, int host);
  /* nat on: host opens a path to pk through its introducers (nat_connect);
   * the workload's path_ready says how it went.  0, or an error (no NAT
   * service: the workload goes on without one). */
  int (*connect)(void *ctx, int host, const uint8_t *pk, const dht_introducer *intro, int n);
} sim_run_ops;

/* A workload beside the engines, as a table of operations sim_run.c holds
 * and calls at fixed points of a run; st is the workload's state from start.
 * Once start has turned a workload off (*out NULL), the run calls nothing
 * else of it. */
typedef struct sim_workload_ops {
  /* Sets the workload up for c (borrowed for the run), recording into res.
   * run is copied.  Called after the run has scheduled its own first events,
   * so the events the workload schedules come after them.  *out = NULL when
   * c turns it off.  0 or -1 (out of memory). */
  int (*start)(void **out, const sim_config *c, const sim_run_ops *run, sim_result *res,
               dht_ts work_start);
  /* Deletes the workload's per-host services and state; before the engines
   * are deleted.  NULL is fine. */
  void (*stop)(void *st);
  /* A host's engine e was created (before its bootstrap); id and cb are the
   * host's (borrowed for the call).  0 or -1. */
  int (*host_up)(void *st, int host, dht *e, const dht_identity *id, const dht_callbacks *cb,
                 dht_ts now);
  /* Before the host's engine is deleted; keep: a warm stop keeps what the
   * host stored. */
  void (*host_down)(void *st, int host, bool keep);
  /* Drains the workload's events of host, after the engine's (from the
   * drive loop). */
  void (*drain)(void *st, int host, dht_ts now);
  /* One of the workload's events, with the arg it was scheduled with. */
  void (*event)(void *st, int host, uint32_t arg, dht_ts now);
  /* A path host asked for (run connect) to pk exists now, or none could
   * be made.  NULL is fine. */
  void (*path_ready)(void *st, int host, const uint8_t *pk, bool ok, dht_ts now);
  /* Churn: the generation the run's churn events of host carry, and whether
   * a churn join / leave with generation gen still applies (so a workload
   * can take a host out of churn for a while, or for good). */
  uint32_t (*churn_gen)(const void *st, int host);
  bool (*join_ok)(const void *st, int host, uint32_t gen);
  bool (*leave_ok)(const void *st, int host, uint32_t gen);
} sim_workload_ops;

/* The messaging workload: a mailbox service (store/) on every host, and
 * friend pairs that send messages while the recipient is away (msg_pairs > 0
 * turns it on).  A static table. */
const sim_workload_ops *sim_msg_workload(void);

#endif /* ROOST_SIM_H */

/*
 * sim_scenario.c - roost-sim's configuration: one table of options, read
 * from scenario files ("key = value" lines plus "at TIME ACTION [ARG]"
 * script lines) and from flags (every option is both, except --scenario,
 * which is a flag only).  Precedence: built-in defaults < scenario file <
 * flags; sim_main.c loads the file first and applies the flags after it.
 *
 * Every error names where it came from (file:line or the flag) and the key,
 * as roostd's node_config.c does.  A value that fails to parse leaves the
 * configuration untouched.  The script is kept in non-decreasing time order
 * (sim_scenario_load refuses a line earlier than the one before it), so the
 * runner can walk it front to back.
 *
 * The same table drives sim_config_help (the option list) and
 * sim_config_json (the manifest's record of what produced a run).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "sim.h"

#define SIM_MAX_NODES 2000000 /* hosts at the start and joined by the script */
#define DAY_MS 86400000.0
#define HELP_WIDTH 80 /* columns of sim_config_help */

enum opt_type {
  T_INT,   /* int, [lo, hi] */
  T_SEED,  /* uint64_t, decimal or 0x hex */
  T_PATH,  /* char[PATH_MAX] */
  T_SCEN,  /* the scenario file: a flag only */
  T_DUR,   /* dht_ts, a duration in [lo, hi] ms */
  T_MS,    /* double milliseconds in [lo, hi] */
  T_FRAC,  /* double in [lo, hi]; "0.5%" or 0.005 */
  T_BW,    /* uint64_t bits per second: 0 or [lo, hi] */
  T_BYTES, /* uint32_t bytes in [lo, hi] */
  T_DIST,  /* sim_dist */
  T_RATE,  /* double per second in [lo, hi] */
  T_BOOL,  /* bool: on|off */
  T_MIX,   /* double[SIM_NAT_TYPES]: "type:weight,..." -> fractions summing to 1 */
};

typedef struct opt {
  const char *key;
  uint8_t type;
  double lo, hi;
  size_t off; /* offset in sim_config */
  const char *arg, *help;
} opt;

#define OFF(f) offsetof(sim_config, f)

static const opt opts[] = {
    {"nodes", T_INT, 2, SIM_MAX_NODES, OFF(nodes), "N", "hosts at the start (1000)"},
    {"seed", T_SEED, 0, 0, OFF(seed), "S",
     "master seed; the same seed and options give the same run (1)"},
    {"out", T_PATH, 0, 0, OFF(out_dir), "DIR",
     "directory for the manifest, metrics and plots, created if missing (sim-out)"},
    {"rtt-file", T_PATH, 0, 0, OFF(rtt_file), "FILE",
     "country-to-country RTT table (country_rtt_stat.csv[.gz]); default: synthetic model"},
    {"scenario", T_SCEN, 0, 0, OFF(scenario_file), "FILE",
     "scenario file of these options and a script (a flag only)"},
    {"duration", T_DUR, 1, 365 * DAY_MS, OFF(duration_ms), "TIME",
     "simulated time after the join window (10m)"},
    {"join", T_DUR, 0, 365 * DAY_MS, OFF(join_ms), "TIME",
     "the starting hosts join spread over this window (2m)"},
    {"warmup", T_DUR, 0, 365 * DAY_MS, OFF(warmup_ms), "TIME",
     "after the join window, time for the network to settle before the workload starts (1m)"},
    {"bootstrap-peers", T_INT, 1, 100, OFF(bootstrap_peers), "N",
     "online hosts a joining host is given to bootstrap from (3)"},
    {"synth-base", T_MS, 0, 10000, OFF(synth_base_ms), "MS",
     "synthetic model: RTT floor in ms (10)"},
    {"synth-per-unit", T_MS, 0, 10000, OFF(synth_per_unit_ms), "MS",
     "synthetic model: ms of RTT per unit of torus distance (190)"},
    {"jitter", T_FRAC, 0, 1, OFF(jitter), "FRACTION",
     "each datagram's delay varies uniformly by +- this fraction (0.1)"},
    {"loss", T_FRAC, 0, 1, OFF(loss), "FRACTION",
     "probability a datagram is lost, like 0.5% or 0.005 (0)"},
    {"bandwidth", T_BW, 1000, 1e12, OFF(bandwidth_bps), "BITS/S",
     "uplink of each host, like 500kbit or 10Mbit; 0 = unlimited (0)"},
    {"queue", T_BYTES, DHT_MAX_PKT, 1073741824.0, OFF(queue_bytes), "BYTES",
     "uplink queue before tail drop, like 64KiB (64KiB)"},
    {"session", T_DIST, 0, 0, OFF(session), "DIST",
     "session lengths: none, exp(mean=T), weibull(k=K,scale=T), pareto(alpha=A,min=T), "
     "or median=T instead of the scale (none: no churn)"},
    {"downtime", T_DIST, 0, 0, OFF(downtime), "DIST",
     "time a departed host stays away, same forms as session (exp(median=10m))"},
    {"vanish", T_FRAC, 0, 1, OFF(vanish), "FRACTION",
     "fraction of departures that lose their routing table; the others come back with it (0.5)"},
    {"lookups", T_RATE, 0, 1e6, OFF(lookup_rate), "RATE",
     "lookups per second over the network, like 10/s or 600/min (10/s)"},
    {"gets", T_RATE, 0, 1e6, OFF(get_rate), "RATE", "record gets per second (0)"},
    {"puts", T_RATE, 0, 1e6, OFF(put_rate), "RATE", "record puts per second (0)"},
    {"max-lookups", T_INT, 0, INT_MAX, OFF(max_lookups), "N",
     "stop issuing lookups after this many; 0 = no limit (0)"},
    {"msg-pairs", T_INT, 0, SIM_MAX_NODES / 2, OFF(msg_pairs), "N",
     "messaging: friend pairs; every host then runs the mailbox service (0: off)"},
    {"msg-count", T_INT, 1, 1000, OFF(msg_count), "N",
     "messaging: messages each sender sends while its friend is away (3)"},
    {"msg-offline-min", T_DUR, 2, 365 * DAY_MS, OFF(msg_offline_min), "TIME",
     "messaging: shortest absence of a recipient (1h)"},
    {"msg-offline-max", T_DUR, 2, 365 * DAY_MS, OFF(msg_offline_max), "TIME",
     "messaging: longest absence; uniform between the two (48h)"},
    {"msg-start-window", T_DUR, 0, 365 * DAY_MS, OFF(msg_start_window), "TIME",
     "messaging: absences start uniformly in this window after the warm-up (1h)"},
    {"msg-hosts", T_INT, 0, SIM_MAX_NODES, OFF(msg_hosts), "N",
     "messaging: always-online friend hosts, one per recipient round-robin; 0 = DHT "
     "replicas only (0)"},
    {"msg-poll", T_DUR, 1000, DAY_MS, OFF(msg_poll_ms), "TIME",
     "messaging: how often every mailbox service fetches (5m)"},
    {"nat-mix", T_MIX, 0, 0, OFF(nat_mix), "MIX",
     "NAT boxes: the mix of hosts as type:weight pairs, like public:30,upnp:10,port:40,"
     "symmetric:15,full:5; types public, full (full cone), restricted (address-restricted), "
     "port (port-restricted), symmetric, upnp (port-restricted with a port-forwarding "
     "gateway); weights are relative (public:100)"},
    {"nat-timeout", T_DUR, 1000, DAY_MS, OFF(nat_timeout_ms), "TIME",
     "NAT boxes: a mapping idle this long is gone (120s)"},
    {"nat-hairpin", T_BOOL, 0, 0, OFF(nat_hairpin), "on|off",
     "NAT boxes: a host can reach its own box's public address (off)"},
    {"nat", T_BOOL, 0, 0, OFF(nat_svc), "on|off",
     "every host runs the NAT service (nat/): seeds in server mode, the rest in auto mode, "
     "a server once a dial-back proves it reachable (off)"},
    {"nat-seeds", T_INT, 1, 64, OFF(nat_seeds), "N",
     "with nat on: the first N public hosts run in server mode and are the bootstrap "
     "list (8)"},
    {"nat-force-server", T_BOOL, 0, 0, OFF(nat_force_server), "on|off",
     "with nat on: every host runs in server mode, NATed ones too, as a misconfigured node "
     "does (off)"},
    {"nat-vouch", T_BOOL, 0, 0, OFF(nat_vouch), "on|off",
     "with nat on: a stranger is stored once a voucher's CHECK reached it; off: once it "
     "answered the engine's verify PING (on)"},
    {"punches", T_RATE, 0, 1e6, OFF(punch_rate), "RATE",
     "with nat on: after the warm-up, a random host behind a box opens a path to another "
     "that is not a server, through its introducers (nat_connect), this many per second; "
     "punch.csv (0)"},
    {"max-punches", T_INT, 0, INT_MAX, OFF(max_punches), "N",
     "stop starting punches after this many; 0 = no limit (0)"},
    {"nat-gw-bad", T_FRAC, 0, 1, OFF(nat_gw_bad), "FRACTION",
     "with nat on: the share of upnp boxes whose gateway misbehaves: half never answer, "
     "half answer nonsense (0)"},
    {"crypto", T_BOOL, 0, 0, OFF(crypto), "on|off",
     "off: datagrams are neither encrypted nor authenticated and record signatures are "
     "not checked, for speed; every report says so (on)"},
    {"k", T_INT, 1, DHT_K_MAX, OFF(k), "K", "Kademlia k, the bucket size (20)"},
    {"sample", T_DUR, 1, 365 * DAY_MS, OFF(sample_ms), "TIME",
     "interval of the time series in series.csv (10s)"},
    {"progress", T_BOOL, 0, 0, OFF(progress), "on|off",
     "progress on stderr (on when stderr is a terminal)"},
    {"quiet", T_BOOL, 0, 0, OFF(quiet), "on|off",
     "print only errors and the trace hash line (off)"},
};
#define NOPTS (sizeof opts / sizeof opts[0])

void sim_config_default(sim_config *c) {
  memset(c, 0, sizeof *c);
  c->nodes = 1000;
  c->seed = 1;
  snprintf(c->out_dir, sizeof c->out_dir, "sim-out");
  c->duration_ms = 10 * 60 * 1000;
  c->join_ms = 2 * 60 * 1000;
  c->warmup_ms = 60 * 1000;
  c->bootstrap_peers = 3;
  c->synth_base_ms = 10;
  c->synth_per_unit_ms = 190;
  c->jitter = 0.1;
  c->loss = 0;
  c->bandwidth_bps = 0;
  c->queue_bytes = 64 * 1024;
  c->session.kind = SIM_DIST_NONE;
  c->downtime.kind = SIM_DIST_EXP;
  c->downtime.a = 600000.0 / log(2.0); /* the mean of an exponential of median 10 min */
  c->vanish = 0.5;
  c->lookup_rate = 10;
  c->get_rate = 0;
  c->put_rate = 0;
  c->max_lookups = 0;
  c->msg_pairs = 0;
  c->msg_count = 3;
  c->msg_offline_min = 3600000;
  c->msg_offline_max = 48 * 3600000LL;
  c->msg_start_window = 3600000;
  c->msg_hosts = 0;
  c->msg_poll_ms = 300000;
  c->nat_mix[SIM_NAT_PUBLIC] = 1;
  c->nat_timeout_ms = 120000; /* UDP on common home routers; RFC 4787 REQ-5 asks >= 2 min */
  c->nat_hairpin = false;
  c->nat_svc = false;
  c->nat_seeds = 8;
  c->nat_force_server = false;
  c->nat_vouch = true;
  c->nat_gw_bad = 0;
  c->crypto = true;
  c->k = 20;
  c->sample_ms = 10 * 1000;
  c->progress = isatty(2) == 1;
  c->quiet = false;
}

static const opt *find_opt(const char *key) {
  for (size_t i = 0; i < NOPTS; i++)
    if (strcmp(opts[i].key, key) == 0)
      return &opts[i];
  return NULL;
}

/* A duration in the units a person would write: 0, 250ms, 30s, 10m, 2h, 1d. */
static void fmt_dur(char *out, size_t len, double ms) {
  static const struct {
    double ms;
    const char *unit;
  } units[] = {{DAY_MS, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
  if (ms == 0) {
    snprintf(out, len, "0");
    return;
  }
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
    if (fmod(ms, units[i].ms) == 0) {
      snprintf(out, len, "%.0f%s", ms / units[i].ms, units[i].unit);
      return;
    }
  snprintf(out, len, "%.0fms", ms);
}

/* A non-negative decimal number at the start of s (no sign, no hex, no
 * inf/nan); *rest points past it and past any blanks after it.  0 or -1. */
static int parse_num(const char *s, double *v, const char **rest) {
  if (!((*s >= '0' && *s <= '9') || *s == '.'))
    return -1;
  if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
    return -1;
  char *end;
  errno = 0;
  double d = strtod(s, &end);
  if (end == s || errno || !isfinite(d))
    return -1;
  while (*end == ' ' || *end == '\t')
    end++;
  *v = d;
  *rest = end;
  return 0;
}

/* "0.5%" or 0.005 */
static int parse_frac(const char *s, double *v) {
  const char *rest;
  if (parse_num(s, v, &rest) != 0)
    return -1;
  if (!strcmp(rest, "%"))
    *v /= 100;
  else if (*rest)
    return -1;
  return 0;
}

/* "10/s", "600/min", "36000/h", plain per second */
static int parse_rate(const char *s, double *v) {
  const char *rest;
  if (parse_num(s, v, &rest) != 0)
    return -1;
  if (!*rest || !strcmp(rest, "/s"))
    return 0;
  if (!strcmp(rest, "/min"))
    *v /= 60;
  else if (!strcmp(rest, "/h"))
    *v /= 3600;
  else
    return -1;
  return 0;
}

/* "1Mbit", "500kbit", "10Mbit/s", "2Gbps", plain bits per second.  The
 * prefix is decimal and case-insensitive, as tc writes it ("10mbit"). */
static int parse_bandwidth(const char *s, uint64_t *out) {
  const char *rest;
  double v, mult = 1;
  if (parse_num(s, &v, &rest) != 0)
    return -1;
  if (*rest) {
    switch (*rest) {
    case 'k':
    case 'K':
      mult = 1e3, rest++;
      break;
    case 'm':
    case 'M':
      mult = 1e6, rest++;
      break;
    case 'g':
    case 'G':
      mult = 1e9, rest++;
      break;
    }
    if (strcmp(rest, "bit") && strcmp(rest, "bit/s") && strcmp(rest, "bps"))
      return -1;
  }
  v *= mult;
  if (v > 1e15 || v != floor(v))
    return -1;
  *out = (uint64_t)v;
  return 0;
}

/* "64KiB", "1MiB", "64KB", "1500B", plain bytes; a whole number of bytes */
static int parse_bytes(const char *s, double *out) {
  static const struct {
    const char *unit;
    double mult;
  } units[] = {{"", 1},          {"B", 1},     {"KiB", 1024}, {"MiB", 1048576},
               {"GiB", 1 << 30}, {"KB", 1000}, {"kB", 1000},  {"MB", 1e6},
               {"GB", 1e9},      {"k", 1024},  {"K", 1024},   {"M", 1048576}};
  const char *rest;
  double v;
  if (parse_num(s, &v, &rest) != 0)
    return -1;
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
    if (!strcmp(rest, units[i].unit)) {
      v *= units[i].mult;
      if (v != floor(v))
        return -1;
      *out = v;
      return 0;
    }
  return -1;
}

/* milliseconds as a decimal: "10", "2.5ms", "0.2s" */
static int parse_ms(const char *s, double *v) {
  const char *rest;
  if (parse_num(s, v, &rest) != 0)
    return -1;
  if (!*rest || !strcmp(rest, "ms"))
    return 0;
  if (!strcmp(rest, "s")) {
    *v *= 1000;
    return 0;
  }
  return -1;
}

static int parse_bool(const char *v, bool *b) {
  if (!strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1"))
    *b = true;
  else if (!strcmp(v, "off") || !strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0"))
    *b = false;
  else
    return -1;
  return 0;
}

static int parse_whole(const char *v, double lo, double hi, long long *out) {
  char *end;
  if (!(*v >= '0' && *v <= '9'))
    return -1;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (*end || errno || (double)n < lo || (double)n > hi)
    return -1;
  *out = n;
  return 0;
}

static const char *const nat_names[SIM_NAT_TYPES] = {
    [SIM_NAT_PUBLIC] = "public",         [SIM_NAT_FULL] = "full",
    [SIM_NAT_RESTRICTED] = "restricted", [SIM_NAT_PORT] = "port",
    [SIM_NAT_SYMMETRIC] = "symmetric",   [SIM_NAT_UPNP] = "upnp",
};

const char *sim_nat_type_name(int type) {
  return type >= 0 && type < SIM_NAT_TYPES ? nat_names[type] : "?";
}

static char *trim(char *s);

/* "public:30,port:70": each type at most once, weights of 0 or more and not
 * all 0, normalised into fractions in mix.  0, or -1 with the reason in why. */
static int parse_mix(const char *v, double mix[SIM_NAT_TYPES], char *why, size_t whylen) {
  double w[SIM_NAT_TYPES] = {0}, sum = 0;
  bool seen[SIM_NAT_TYPES] = {false};
  char buf[256];
  if (strlen(v) >= sizeof buf) {
    snprintf(why, whylen, "longer than %zu bytes", sizeof buf - 1);
    return -1;
  }
  snprintf(buf, sizeof buf, "%s", v);
  for (char *item = buf, *next; item; item = next) {
    next = strchr(item, ',');
    if (next)
      *next++ = 0;
    if (!*trim(item)) {
      snprintf(why, whylen, "an empty item (expected type:weight pairs separated by commas)");
      return -1;
    }
    char *colon = strchr(item, ':');
    if (colon)
      *colon = 0;
    char *name = trim(item);
    int t = -1;
    for (int k = 0; k < SIM_NAT_TYPES; k++)
      if (!strcmp(name, nat_names[k]))
        t = k;
    if (t < 0) {
      snprintf(why, whylen, "unknown type '%s' (public, full, restricted, port, symmetric, upnp)",
               name);
      return -1;
    }
    const char *rest;
    double x;
    if (!colon || parse_num(trim(colon + 1), &x, &rest) != 0 || *rest) {
      snprintf(why, whylen, "%s: expected %s:WEIGHT with a number of 0 or more", name, name);
      return -1;
    }
    if (seen[t]) {
      snprintf(why, whylen, "%s given twice", name);
      return -1;
    }
    seen[t] = true;
    w[t] = x;
    sum += x;
  }
  if (!(sum > 0) || !isfinite(sum)) {
    snprintf(why, whylen, "'%s' has no type with a weight above 0 (like public:70,port:30)", v);
    return -1;
  }
  for (int k = 0; k < SIM_NAT_TYPES; k++)
    mix[k] = w[k] / sum;
  return 0;
}

/* Applies one value; from_file says the source is a scenario file. */
static int apply(sim_config *c, const opt *o, const char *v, bool from_file, const char *where,
                 char *err, size_t errlen) {
  char *base = (char *)c;
  char why[512], lo[32], hi[32];
  if (!*v) {
    snprintf(why, sizeof why, "empty value");
    goto bad;
  }
  switch (o->type) {
  case T_INT: {
    long long n;
    if (parse_whole(v, o->lo, o->hi, &n) != 0) {
      snprintf(why, sizeof why, "'%s' is not a whole number from %.0f to %.0f", v, o->lo, o->hi);
      goto bad;
    }
    *(int *)(base + o->off) = (int)n;
    return 0;
  }
  case T_SEED: {
    char *end;
    int hex = v[0] == '0' && (v[1] == 'x' || v[1] == 'X');
    const char *digits = hex ? v + 2 : v;
    errno = 0;
    unsigned long long n = strtoull(digits, &end, hex ? 16 : 10);
    if (!((*digits >= '0' && *digits <= '9') ||
          (hex && *digits && strchr("abcdefABCDEF", *digits))) ||
        *end || errno) {
      snprintf(why, sizeof why, "'%s' is not a whole number from 0 to %" PRIu64 " (or 0x hex)", v,
               UINT64_MAX);
      goto bad;
    }
    c->seed = (uint64_t)n;
    return 0;
  }
  case T_SCEN:
    if (from_file) {
      snprintf(why, sizeof why, "only as a flag (--scenario FILE), not inside a scenario file");
      goto bad;
    }
    /* fall through */
  case T_PATH:
    if (strlen(v) >= PATH_MAX) {
      snprintf(why, sizeof why, "path longer than %d bytes", PATH_MAX - 1);
      goto bad;
    }
    snprintf(base + o->off, PATH_MAX, "%s", v);
    return 0;
  case T_DUR: {
    dht_ts ms;
    if (sim_parse_duration(v, &ms) != 0 || (double)ms < o->lo || (double)ms > o->hi) {
      fmt_dur(lo, sizeof lo, o->lo);
      fmt_dur(hi, sizeof hi, o->hi);
      snprintf(why, sizeof why, "'%s' is not a duration from %s to %s (like 250ms, 30s, 10m, 2h)",
               v, lo, hi);
      goto bad;
    }
    *(dht_ts *)(base + o->off) = ms;
    return 0;
  }
  case T_MS: {
    double d;
    if (parse_ms(v, &d) != 0 || d < o->lo || d > o->hi) {
      snprintf(why, sizeof why, "'%s' is not a time from %.0f to %.0f ms (like 10 or 2.5ms)", v,
               o->lo, o->hi);
      goto bad;
    }
    *(double *)(base + o->off) = d;
    return 0;
  }
  case T_FRAC: {
    double d;
    if (parse_frac(v, &d) != 0 || d < o->lo || d > o->hi) {
      snprintf(why, sizeof why, "'%s' is not a fraction from %g to %g", v, o->lo, o->hi);
      goto bad;
    }
    *(double *)(base + o->off) = d;
    return 0;
  }
  case T_BW: {
    uint64_t bps;
    if (parse_bandwidth(v, &bps) != 0 ||
        (bps != 0 && ((double)bps < o->lo || (double)bps > o->hi))) {
      snprintf(why, sizeof why,
               "'%s' is not a bandwidth: 0 (unlimited) or 1kbit to 1000Gbit (like 500kbit, "
               "10Mbit, or plain bits/s)",
               v);
      goto bad;
    }
    c->bandwidth_bps = bps;
    return 0;
  }
  case T_BYTES: {
    double b;
    if (parse_bytes(v, &b) != 0 || b < o->lo || b > o->hi) {
      snprintf(why, sizeof why, "'%s' is not a size from %.0f bytes to 1GiB (like 64KiB)", v,
               o->lo);
      goto bad;
    }
    c->queue_bytes = (uint32_t)b;
    return 0;
  }
  case T_DIST: {
    sim_dist d;
    char derr[256] = "";
    if (sim_dist_parse(&d, v, derr, sizeof derr) != 0) {
      snprintf(why, sizeof why, "'%s' is not a distribution: %s", v,
               derr[0] ? derr : "expected none, exp(...), weibull(...) or pareto(...)");
      goto bad;
    }
    *(sim_dist *)(base + o->off) = d;
    return 0;
  }
  case T_RATE: {
    double d;
    if (parse_rate(v, &d) != 0 || d < o->lo || d > o->hi) {
      snprintf(why, sizeof why, "'%s' is not a rate from 0 to %.0f/s (like 10/s or 600/min)", v,
               o->hi);
      goto bad;
    }
    *(double *)(base + o->off) = d;
    return 0;
  }
  case T_BOOL:
    if (parse_bool(v, (bool *)(base + o->off)) != 0) {
      snprintf(why, sizeof why, "'%s' is not on or off", v);
      goto bad;
    }
    return 0;
  case T_MIX: {
    double mix[SIM_NAT_TYPES];
    char mwhy[384];
    if (parse_mix(v, mix, mwhy, sizeof mwhy) != 0) {
      snprintf(why, sizeof why, "%s", mwhy);
      goto bad;
    }
    memcpy(c->nat_mix, mix, sizeof mix);
    return 0;
  }
  }
  return 0;
bad:
  snprintf(err, errlen, "%s: %s: %s", where, o->key, why);
  return -1;
}

int sim_config_set(sim_config *c, const char *key, const char *value, const char *where, char *err,
                   size_t errlen) {
  const opt *o = find_opt(key);
  if (!o) {
    snprintf(err, errlen, "%s: unknown key '%s' (roost-sim --help lists them)", where, key);
    return -1;
  }
  return apply(c, o, value, false, where, err, errlen);
}

/* ---- scenario files ------------------------------------------------------ */

static const char *const action_names[] = {
    [SIM_ACT_PARTITION] = "partition", [SIM_ACT_HEAL] = "heal",       [SIM_ACT_LEAVE] = "leave",
    [SIM_ACT_JOIN] = "join",           [SIM_ACT_LOOKUPS] = "lookups",
};
#define NACTIONS ((int)(sizeof action_names / sizeof action_names[0]))

static const char *action_name(int a) {
  return a > 0 && a < NACTIONS ? action_names[a] : "?";
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
    s[--n] = 0;
  return s;
}

/* the next blank-separated word of *s, or NULL */
static char *word(char **s) {
  char *p = *s;
  while (*p == ' ' || *p == '\t')
    p++;
  if (!*p)
    return NULL;
  char *w = p;
  while (*p && *p != ' ' && *p != '\t')
    p++;
  if (*p)
    *p++ = 0;
  *s = p;
  return w;
}

/* "at TIME ACTION [ARG]" (the "at" already taken from s) */
static int script_line(sim_config *c, char *s, const char *where, char *err, size_t errlen) {
  char *t = word(&s), *act = word(&s), *arg = word(&s), *extra = word(&s);
  if (!t || !act) {
    snprintf(err, errlen, "%s: expected 'at TIME ACTION [ARG]'", where);
    return -1;
  }
  sim_script sc = {0, 0, 0};
  if (sim_parse_duration(t, &sc.at) != 0 || sc.at < 0) {
    snprintf(err, errlen, "%s: at: '%s' is not a time (like 90s, 5m, 1h)", where, t);
    return -1;
  }
  for (int a = 1; a < NACTIONS; a++)
    if (!strcmp(act, action_names[a]))
      sc.action = a;
  if (!sc.action) {
    snprintf(err, errlen, "%s: unknown action '%s' (partition, heal, leave, join, lookups)", where,
             act);
    return -1;
  }
  static const char *const need[] = {
      [SIM_ACT_PARTITION] = "a FRACTION of hosts to cut off (like 50%)",
      [SIM_ACT_HEAL] = NULL,
      [SIM_ACT_LEAVE] = "a FRACTION of online hosts (like 10%)",
      [SIM_ACT_JOIN] = "a COUNT of new hosts",
      [SIM_ACT_LOOKUPS] = "a COUNT of lookups",
  };
  if (need[sc.action] && !arg) {
    snprintf(err, errlen, "%s: %s: needs %s", where, act, need[sc.action]);
    return -1;
  }
  const char *surplus = need[sc.action] ? extra : arg;
  if (surplus) {
    snprintf(err, errlen, "%s: %s: unexpected '%s'", where, act, surplus);
    return -1;
  }
  switch (sc.action) {
  case SIM_ACT_PARTITION:
    if (parse_frac(arg, &sc.arg) != 0 || !(sc.arg > 0 && sc.arg < 1)) {
      snprintf(err, errlen, "%s: %s: '%s' is not a fraction above 0 and below 1", where, act, arg);
      return -1;
    }
    break;
  case SIM_ACT_LEAVE:
    if (parse_frac(arg, &sc.arg) != 0 || !(sc.arg > 0 && sc.arg <= 1)) {
      snprintf(err, errlen, "%s: %s: '%s' is not a fraction above 0 and at most 1", where, act,
               arg);
      return -1;
    }
    break;
  case SIM_ACT_JOIN:
  case SIM_ACT_LOOKUPS: {
    long long n;
    double hi = sc.action == SIM_ACT_JOIN ? SIM_MAX_NODES : 10000000;
    if (parse_whole(arg, 1, hi, &n) != 0) {
      snprintf(err, errlen, "%s: %s: '%s' is not a whole number from 1 to %.0f", where, act, arg,
               hi);
      return -1;
    }
    sc.arg = (double)n;
    break;
  }
  }
  if (c->nscript > 0 && sc.at < c->script[c->nscript - 1].at) {
    char now[32], prev[32];
    fmt_dur(now, sizeof now, (double)sc.at);
    fmt_dur(prev, sizeof prev, (double)c->script[c->nscript - 1].at);
    snprintf(err, errlen,
             "%s: at %s: script lines must be in time order (the line before is at %s)", where, now,
             prev);
    return -1;
  }
  if (c->nscript >= SIM_MAX_SCRIPT) {
    snprintf(err, errlen, "%s: more than %d script lines", where, SIM_MAX_SCRIPT);
    return -1;
  }
  c->script[c->nscript++] = sc;
  return 0;
}

/* Cuts a trailing comment: '#' at the start of the line or after a blank. */
static void cut_comment(char *s) {
  for (char *p = s; *p; p++)
    if (*p == '#' && (p == s || p[-1] == ' ' || p[-1] == '\t')) {
      *p = 0;
      return;
    }
}

int sim_scenario_load(sim_config *c, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "cannot read scenario file %s: %s", path, strerror(errno));
    return -1;
  }
  if (strlen(path) < sizeof c->scenario_file)
    snprintf(c->scenario_file, sizeof c->scenario_file, "%s", path);
  char line[4096], where[PATH_MAX + 32];
  int lineno = 0, rv = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    snprintf(where, sizeof where, "%s:%d", path, lineno);
    if (!strchr(line, '\n') && !feof(f)) {
      snprintf(err, errlen, "%s: line longer than %zu bytes", where, sizeof line - 2);
      rv = -1;
      break;
    }
    cut_comment(line);
    char *s = trim(line);
    if (!*s)
      continue;
    if (!strncmp(s, "at", 2) && (s[2] == ' ' || s[2] == '\t')) {
      if (script_line(c, s + 2, where, err, errlen) != 0) {
        rv = -1;
        break;
      }
      continue;
    }
    char *eq = strchr(s, '=');
    if (!eq) {
      snprintf(err, errlen, "%s: expected 'key = value' or 'at TIME ACTION [ARG]', got '%s'", where,
               s);
      rv = -1;
      break;
    }
    *eq = 0;
    char *key = trim(s), *val = trim(eq + 1);
    const opt *o = find_opt(key);
    if (!o) {
      snprintf(err, errlen, "%s: unknown key '%s' (roost-sim --help lists them)", where, key);
      rv = -1;
      break;
    }
    if (apply(c, o, val, true, where, err, errlen) != 0) {
      rv = -1;
      break;
    }
  }
  if (rv == 0 && ferror(f)) {
    snprintf(err, errlen, "cannot read scenario file %s", path);
    rv = -1;
  }
  fclose(f);
  return rv;
}

/* ---- cross-field checks -------------------------------------------------- */

int sim_config_check(const sim_config *c, char *err, size_t errlen) {
  if (c->nodes < 2 || c->nodes > SIM_MAX_NODES) {
    snprintf(err, errlen, "nodes: %d is not from 2 to %d", c->nodes, SIM_MAX_NODES);
    return -1;
  }
  if (!c->out_dir[0]) {
    snprintf(err, errlen, "out: no output directory");
    return -1;
  }
  if (c->warmup_ms >= c->duration_ms) {
    snprintf(err, errlen, "warmup (%lld ms) must be shorter than duration (%lld ms)",
             (long long)c->warmup_ms, (long long)c->duration_ms);
    return -1;
  }
  if (c->duration_ms <= 0 || c->join_ms < 0 || c->sample_ms <= 0) {
    snprintf(err, errlen, "duration, join and sample must be above 0 (join may be 0)");
    return -1;
  }
  double mix = 0;
  for (int t = 0; t < SIM_NAT_TYPES; t++)
    mix += c->nat_mix[t] >= 0 ? c->nat_mix[t] : NAN;
  if (!(fabs(mix - 1) < 1e-9)) {
    snprintf(err, errlen, "nat-mix: the fractions of the types must be 0 or more and sum to 1");
    return -1;
  }
  if (c->nat_timeout_ms < 1000 || c->nat_timeout_ms > UINT32_MAX) {
    snprintf(err, errlen, "nat-timeout: %lld ms is not from 1s to 1d",
             (long long)c->nat_timeout_ms);
    return -1;
  }
  if (c->k < 1 || c->k > DHT_K_MAX) {
    snprintf(err, errlen, "k: %d is not from 1 to %d", c->k, DHT_K_MAX);
    return -1;
  }
  if (c->bootstrap_peers < 1) {
    snprintf(err, errlen, "bootstrap-peers: must be at least 1");
    return -1;
  }
  if (c->bandwidth_bps > 0 && c->queue_bytes < DHT_MAX_PKT) {
    snprintf(err, errlen, "queue: %" PRIu32 " bytes cannot hold one datagram of %d bytes",
             c->queue_bytes, DHT_MAX_PKT);
    return -1;
  }
  if (!(c->loss >= 0 && c->loss <= 1) || !(c->jitter >= 0 && c->jitter <= 1) ||
      !(c->vanish >= 0 && c->vanish <= 1)) {
    snprintf(err, errlen, "loss, jitter and vanish must be fractions from 0 to 1");
    return -1;
  }
  if (!(c->lookup_rate >= 0) || !(c->get_rate >= 0) || !(c->put_rate >= 0)) {
    snprintf(err, errlen, "lookups, gets and puts must be rates of 0 or more");
    return -1;
  }

  if (c->msg_pairs > 0) {
    if (2LL * c->msg_pairs + c->msg_hosts > c->nodes) {
      snprintf(err, errlen,
               "msg-pairs: %d pairs and %d friend hosts need %lld distinct hosts, nodes is %d",
               c->msg_pairs, c->msg_hosts, 2LL * c->msg_pairs + c->msg_hosts, c->nodes);
      return -1;
    }
    if (c->msg_offline_min > c->msg_offline_max) {
      snprintf(err, errlen, "msg-offline-min must not be above msg-offline-max");
      return -1;
    }
    if (c->msg_hosts > 0 && (long long)c->msg_hosts * 64 < c->msg_pairs) {
      snprintf(err, errlen, "msg-hosts: %d hosts cannot host %d recipients (64 each at most)",
               c->msg_hosts, c->msg_pairs);
      return -1;
    }
    if ((long long)c->msg_pairs * c->msg_count >= (1LL << 28)) {
      snprintf(err, errlen, "msg-pairs x msg-count must be below 2^28");
      return -1;
    }
  }

  dht_ts end = c->join_ms + c->duration_ms;
  long long joined = 0;
  bool lookups = c->lookup_rate > 0, partitioned = false;
  char at[32], e1[32], e2[32], e3[32];
  for (int i = 0; i < c->nscript; i++) {
    const sim_script *s = &c->script[i];
    fmt_dur(at, sizeof at, (double)s->at);
    if (i > 0 && s->at < c->script[i - 1].at) {
      snprintf(err, errlen, "at %s %s: script lines must be in time order", at,
               action_name(s->action));
      return -1;
    }
    if (s->at > end) {
      fmt_dur(e1, sizeof e1, (double)end);
      fmt_dur(e2, sizeof e2, (double)c->join_ms);
      fmt_dur(e3, sizeof e3, (double)c->duration_ms);
      snprintf(err, errlen, "at %s %s: after the end of the run at %s (join %s + duration %s)", at,
               action_name(s->action), e1, e2, e3);
      return -1;
    }
    switch (s->action) {
    case SIM_ACT_PARTITION: /* a second partition replaces the first */
      partitioned = true;
      break;
    case SIM_ACT_HEAL:
      if (!partitioned) {
        snprintf(err, errlen, "at %s heal: no partition before it to heal", at);
        return -1;
      }
      partitioned = false;
      break;
    case SIM_ACT_JOIN:
      joined += (long long)s->arg;
      break;
    case SIM_ACT_LOOKUPS:
      lookups = true;
      break;
    case SIM_ACT_LEAVE:
      break;
    default:
      snprintf(err, errlen, "script line %d: unknown action %d", i + 1, s->action);
      return -1;
    }
  }
  if (c->nodes + joined > SIM_MAX_NODES) {
    snprintf(err, errlen, "nodes %d plus %lld joined by the script exceed %d hosts", c->nodes,
             joined, SIM_MAX_NODES);
    return -1;
  }
  if (c->punch_rate > 0 && !c->nat_svc) {
    snprintf(err, errlen, "punches: needs nat on (the NAT service punches)");
    return -1;
  }
  if (c->max_lookups > 0 && !lookups) {
    snprintf(err, errlen,
             "max-lookups: %d, but no lookups are issued (lookups = 0, no script "
             "lookups)",
             c->max_lookups);
    return -1;
  }
  return 0;
}

/* ---- JSON and help ------------------------------------------------------- */

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p < 0x20)
      fprintf(f, "\\u%04x", *p);
    else
      fputc(*p, f);
  }
  fputc('"', f);
}

/* a finite number with 10 significant digits (deterministic), else null */
static void json_num(FILE *f, double v) {
  if (isfinite(v))
    fprintf(f, "%.10g", v);
  else
    fputs("null", f);
}

static void json_dist(FILE *f, const sim_dist *d) {
  switch (d->kind) {
  case SIM_DIST_EXP:
    fputs("{\"kind\": \"exp\", \"mean_ms\": ", f);
    json_num(f, d->a);
    break;
  case SIM_DIST_WEIBULL:
    fputs("{\"kind\": \"weibull\", \"k\": ", f);
    json_num(f, d->a);
    fputs(", \"scale_ms\": ", f);
    json_num(f, d->b);
    break;
  case SIM_DIST_PARETO:
    fputs("{\"kind\": \"pareto\", \"alpha\": ", f);
    json_num(f, d->a);
    fputs(", \"min_ms\": ", f);
    json_num(f, d->b);
    break;
  default:
    fputs("{\"kind\": \"none\"}", f);
    return;
  }
  fputs(", \"median_ms\": ", f);
  json_num(f, sim_dist_median(d));
  fputc('}', f);
}

/* Every member that shapes the result, one per line, indented four spaces,
 * separated by ",\n", with no newline after the last: the caller writes the
 * braces.  out, progress and quiet are left out: they do not change the
 * result, and leaving them out keeps two runs' manifests byte-identical. */
void sim_config_json(const sim_config *c, FILE *f) {
  const char *sep = "";
  for (size_t i = 0; i < NOPTS; i++) {
    const opt *o = &opts[i];
    const char *base = (const char *)c;
    if (!strcmp(o->key, "out") || !strcmp(o->key, "progress") || !strcmp(o->key, "quiet"))
      continue;
    /* JSON names: the key with '_' for '-', and the unit where it has one */
    char name[64];
    snprintf(name, sizeof name, "%s", o->key);
    for (char *p = name; *p; p++)
      if (*p == '-')
        *p = '_';
    static const char *const suffix[] = {[T_DUR] = "_ms",
                                         [T_MS] = "_ms",
                                         [T_BW] = "_bps",
                                         [T_BYTES] = "_bytes",
                                         [T_RATE] = "_per_s"};
    if (o->type < sizeof suffix / sizeof suffix[0] && suffix[o->type])
      snprintf(name + strlen(name), sizeof name - strlen(name), "%s", suffix[o->type]);
    fprintf(f, "%s    \"%s\": ", sep, name);
    sep = ",\n";
    switch (o->type) {
    case T_INT:
      fprintf(f, "%d", *(const int *)(base + o->off));
      break;
    case T_SEED:
      fprintf(f, "%" PRIu64, c->seed);
      break;
    case T_PATH:
    case T_SCEN:
      if (*(base + o->off))
        json_str(f, base + o->off);
      else
        fputs("null", f);
      break;
    case T_DUR:
      fprintf(f, "%" PRId64, (int64_t) * (const dht_ts *)(base + o->off));
      break;
    case T_MS:
    case T_FRAC:
    case T_RATE:
      json_num(f, *(const double *)(base + o->off));
      break;
    case T_BW:
      fprintf(f, "%" PRIu64, c->bandwidth_bps);
      break;
    case T_BYTES:
      fprintf(f, "%" PRIu32, c->queue_bytes);
      break;
    case T_DIST:
      json_dist(f, (const sim_dist *)(base + o->off));
      break;
    case T_BOOL:
      fputs(*(const bool *)(base + o->off) ? "\"on\"" : "\"off\"", f);
      break;
    case T_MIX: /* every type, its fraction of the hosts */
      fputc('{', f);
      for (int k = 0; k < SIM_NAT_TYPES; k++) {
        fprintf(f, "%s\"%s\": ", k ? ", " : "", nat_names[k]);
        json_num(f, c->nat_mix[k]);
      }
      fputc('}', f);
      break;
    }
  }
  fprintf(f, "%s    \"latency_model\": \"%s\"", sep, c->rtt_file[0] ? "rtt-file" : "synthetic");
  fputs(",\n    \"script\": [", f);
  for (int i = 0; i < c->nscript; i++) {
    fprintf(f, "%s{\"at_ms\": %" PRId64 ", \"action\": \"%s\"", i ? ", " : "",
            (int64_t)c->script[i].at, action_name(c->script[i].action));
    if (c->script[i].action != SIM_ACT_HEAL) {
      fputs(", \"arg\": ", f);
      json_num(f, c->script[i].arg);
    }
    fputc('}', f);
  }
  fputc(']', f);
}

void sim_config_help(FILE *f) {
  fprintf(f, "usage: roost-sim --nodes N --seed S --out DIR [--rtt-file FILE] [--scenario FILE]\n"
             "                 [--key VALUE]...\n"
             "\n"
             "roost-sim runs many real roost DHT engines on a virtual clock and network, and\n"
             "writes a manifest, metrics (CSV, JSON) and, when gnuplot is installed, plots into\n"
             "DIR.  The same seed and options give the same run; the last line printed is\n"
             "'trace hash: HEX', a hash over every event, that proves it.\n"
             "\n"
             "  --help              this text\n"
             "  --version           print the version, then exit\n"
             "\n"
             "Options (in a scenario file as 'key = value', or as flags '--key VALUE'; flags\n"
             "override the file).  TIME is 250ms, 30s, 10m, 2h or 1d; a FRACTION is 0.005 or\n"
             "0.5%%; a RATE is 10/s, 600/min or per second:\n");
  for (size_t i = 0; i < NOPTS; i++) {
    char head[64];
    snprintf(head, sizeof head, "--%s %s", opts[i].key, opts[i].arg);
    fprintf(f, "  %-26s ", head);
    /* the help wrapped at blanks into lines of at most HELP_WIDTH columns */
    const char *h = opts[i].help;
    while (strlen(h) > HELP_WIDTH - 29) {
      int cut = HELP_WIDTH - 29;
      while (cut > 0 && h[cut] != ' ')
        cut--;
      if (cut == 0)
        break;
      fprintf(f, "%.*s\n%29s", cut, h, "");
      h += cut + 1;
    }
    fprintf(f, "%s\n", h);
  }
  fprintf(f,
          "\n"
          "Script lines in a scenario file, in time order (TIME from the start of the run,\n"
          "when the join window opens), at most %d:\n"
          "  at TIME partition FRACTION   cut that fraction of hosts off from the rest\n"
          "  at TIME heal                 end the partition\n"
          "  at TIME leave FRACTION       that fraction of online hosts leave at once\n"
          "  at TIME join COUNT           COUNT new hosts join\n"
          "  at TIME lookups COUNT        a burst of COUNT lookups\n"
          "\n"
          "Exit status: 0 done, 1 runtime failure, 2 usage or configuration error.\n",
          SIM_MAX_SCRIPT);
}

/*
 * sim_out.c - what a roost-sim run leaves behind: manifest.json, ops.csv,
 * series.csv, hosts.csv, summary.json and, when gnuplot is on PATH, plots
 * (PNG and SVG) with the small .gp scripts and .dat files that drew them.
 *
 * Invariant: the same configuration and result give the same bytes.  Only
 * wall_s, peak_rss_kb and events_per_s (measurements of the machine, not of
 * the simulation) may differ between two runs of the same seed.  Numbers are
 * printed with fixed formats, nothing depends on pointers, time or locale,
 * and the output directory itself is not recorded.
 *
 * An op is finished when end_ms is at or after start_ms and is not
 * DHT_TS_NEVER; an op still running when the run ended has empty end_ms and
 * latency_ms in ops.csv and counts in "unfinished", not in the statistics.
 *
 * Plots never fail a run: a missing gnuplot skips them silently, a failing
 * one prints a warning (its messages go to plots.log) and the run goes on.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nat.h"
#include "sim.h"

static const char *const kind_names[] = {
    [SIM_OP_LOOKUP] = "lookup",
    [SIM_OP_GET] = "get",
    [SIM_OP_PUT] = "put",
    [SIM_OP_BOOTSTRAP] = "bootstrap",
};
#define NKINDS ((int)(sizeof kind_names / sizeof kind_names[0]))

static const char *kind_name(int k) {
  return k > 0 && k < NKINDS ? kind_names[k] : "unknown";
}

static bool op_finished(const sim_op *o) {
  return o->end_ms != DHT_TS_NEVER && o->end_ms >= o->start_ms;
}

/* ---- files ------------------------------------------------------------- */

/* mkdir -p: every missing component, 0777 less the umask. */
static int make_dirs(const char *dir, char *err, size_t errlen) {
  char p[PATH_MAX];
  if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) {
    snprintf(err, errlen, "output directory %s: path too long", dir);
    return -1;
  }
  if (!p[0]) {
    snprintf(err, errlen, "no output directory");
    return -1;
  }
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s != 0)
      continue;
    char c = *s;
    *s = 0;
    struct stat st;
    if (mkdir(p, 0777) != 0 && errno != EEXIST) {
      snprintf(err, errlen, "cannot create output directory %s: %s", p, strerror(errno));
      return -1;
    }
    if (stat(p, &st) != 0) {
      snprintf(err, errlen, "cannot create output directory %s: %s", p, strerror(errno));
      return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
      snprintf(err, errlen, "cannot create output directory %s: not a directory", p);
      return -1;
    }
    *s = c;
    if (!c)
      break;
  }
  if (access(dir, W_OK | X_OK) != 0) {
    snprintf(err, errlen, "output directory %s is not writable: %s", dir, strerror(errno));
    return -1;
  }
  return 0;
}

typedef struct outfile {
  FILE *f;
  char path[PATH_MAX + 64];
} outfile;

static int out_open(outfile *o, const char *dir, const char *name, char *err, size_t errlen) {
  snprintf(o->path, sizeof o->path, "%s/%s", dir, name);
  o->f = fopen(o->path, "w");
  if (!o->f) {
    snprintf(err, errlen, "cannot write %s: %s", o->path, strerror(errno));
    return -1;
  }
  setvbuf(o->f, NULL, _IOFBF, 1 << 16);
  return 0;
}

static int out_close(outfile *o, char *err, size_t errlen) {
  int bad = ferror(o->f);
  if (fclose(o->f) != 0 || bad) {
    snprintf(err, errlen, "cannot write %s: %s", o->path, bad ? "write error" : strerror(errno));
    return -1;
  }
  return 0;
}

static void hex(char out[static 65], const uint8_t h[static 32]) {
  for (int i = 0; i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* a finite number with 10 significant digits (deterministic), else null */
static void json_num(FILE *f, double v) {
  if (isfinite(v))
    fprintf(f, "%.10g", v);
  else
    fputs("null", f);
}

static void crypto_members(FILE *f, bool crypto, const char *indent) {
  fprintf(f, "%s\"crypto\": \"%s\",\n", indent, crypto ? "on" : "off");
  if (!crypto)
    fprintf(f, "%s\"note\": \"datagrams were neither encrypted nor authenticated\",\n", indent);
}

static int write_manifest(const sim_config *c, const sim_result *r, char *err, size_t errlen) {
  outfile o;
  char h[65];
  if (out_open(&o, c->out_dir, "manifest.json", err, errlen) != 0)
    return -1;
  hex(h, r->trace_hash);
  fprintf(o.f, "{\n  \"roost_sim_version\": \"%s\",\n  \"seed\": %" PRIu64 ",\n", SIM_VERSION,
          c->seed);
  crypto_members(o.f, r->crypto, "  ");
  fputs("  \"config\": {\n", o.f);
  sim_config_json(c, o.f);
  fprintf(o.f, "\n  },\n  \"trace_hash\": \"%s\",\n  \"wall_s\": ", h);
  json_num(o.f, r->wall_s);
  fprintf(o.f, ",\n  \"events\": %" PRIu64 "\n}\n", r->events);
  return out_close(&o, err, errlen);
}

static int write_ops(const sim_config *c, const sim_result *r, char *err, size_t errlen) {
  outfile o;
  if (out_open(&o, c->out_dir, "ops.csv", err, errlen) != 0)
    return -1;
  fputs("kind,host,start_ms,end_ms,latency_ms,status,ok,overlap,rounds,messages\n", o.f);
  for (size_t i = 0; i < r->nops; i++) {
    const sim_op *p = &r->ops[i];
    fprintf(o.f, "%s,%" PRId32 ",%" PRId64 ",", kind_name(p->kind), p->host, (int64_t)p->start_ms);
    if (op_finished(p))
      fprintf(o.f, "%" PRId64 ",%" PRId64 ",", (int64_t)p->end_ms,
              (int64_t)(p->end_ms - p->start_ms));
    else
      fputs(",,", o.f);
    fprintf(o.f, "%d,%u,%u,%u,%u\n", p->status, p->ok, p->overlap, p->rounds, p->messages);
  }
  return out_close(&o, err, errlen);
}

/* milliseconds as seconds with three decimals, exactly */
static void print_s(FILE *f, dht_ts ms) {
  fprintf(f, "%" PRId64 ".%03" PRId64, (int64_t)(ms / 1000), (int64_t)(ms % 1000));
}

static int write_series(const sim_config *c, const sim_result *r, char *err, size_t errlen) {
  outfile o;
  if (out_open(&o, c->out_dir, "series.csv", err, errlen) != 0)
    return -1;
  fputs("t_s,online,ops_done,ops_ok,success_rate,packets,dropped,packets_per_s", o.f);
  fputs(c->nat_svc ? ",table_entries,table_unreachable\n" : "\n", o.f);
  dht_ts prev = 0;
  for (size_t i = 0; i < r->nsamples; i++) {
    const sim_sample *s = &r->samples[i];
    print_s(o.f, s->t_ms);
    fprintf(o.f, ",%d,%" PRIu64 ",%" PRIu64 ",", s->online, s->ops_done, s->ops_ok);
    if (s->ops_done)
      fprintf(o.f, "%.6f", (double)s->ops_ok / (double)s->ops_done);
    fprintf(o.f, ",%" PRIu64 ",%" PRIu64 ",", s->packets, s->dropped);
    if (s->t_ms > prev)
      fprintf(o.f, "%.3f", (double)s->packets * 1000.0 / (double)(s->t_ms - prev));
    if (c->nat_svc && s->has_tbl)
      fprintf(o.f, ",%" PRIu64 ",%" PRIu64, s->tbl_entries, s->tbl_unreachable);
    else if (c->nat_svc)
      fputs(",,", o.f);
    fputc('\n', o.f);
    prev = s->t_ms;
  }
  return out_close(&o, err, errlen);
}

static int write_hosts(const sim_config *c, const sim_result *r, char *err, size_t errlen) {
  outfile o;
  if (out_open(&o, c->out_dir, "hosts.csv", err, errlen) != 0)
    return -1;
  fputs("host,tx_packets\n", o.f);
  for (int i = 0; i < r->nhosts; i++)
    fprintf(o.f, "%d,%" PRIu64 "\n", i, r->tx_per_host ? r->tx_per_host[i] : 0);
  return out_close(&o, err, errlen);
}

/* nat_hosts.csv (nat on): each host's box type and what its NAT service
 * showed in its last incarnation; times in ms from the run's start, empty
 * when never */
static int write_nat_hosts(const sim_config *c, const sim_result *r, char *err, size_t errlen) {
  static const char *const reach[] = {"unknown", "yes", "no"};
  outfile o;
  if (out_open(&o, c->out_dir, "nat_hosts.csv", err, errlen) != 0)
    return -1;
  fputs("host,type,seed,up,start_ms,class_ms,mode_ms,server,reach,mapping,mapped\n", o.f);
  for (int i = 0; i < r->natsvc.nhosts; i++) {
    const sim_nat_host *h = &r->natsvc.hosts[i];
    fprintf(o.f, "%d,%s,%d,%d,", i, sim_nat_type_name(h->type), h->seed, h->up);
    if (h->start_ms >= 0)
      fprintf(o.f, "%" PRId64, (int64_t)h->start_ms);
    fputc(',', o.f);
    if (h->class_ms >= 0)
      fprintf(o.f, "%" PRId64, (int64_t)h->class_ms);
    fputc(',', o.f);
    if (h->mode_ms >= 0)
      fprintf(o.f, "%" PRId64, (int64_t)h->mode_ms);
    fprintf(o.f, ",%d,%s,%s,%d\n", h->server, reach[h->reach <= 2 ? h->reach : 0],
            nat_mapping_name(h->cls), h->mapped);
  }
  return out_close(&o, err, errlen);
}

/* punch.csv (punches > 0): every nat_connect of the punch experiment;
 * method: punched, relayed, none (no path), open (the run ended first) */
static int write_punches(const sim_config *c, const sim_result *r, char *err, size_t errlen) {
  outfile o;
  if (out_open(&o, c->out_dir, "punch.csv", err, errlen) != 0)
    return -1;
  fputs("from,to,from_type,to_type,method,start_ms,ms\n", o.f);
  for (size_t i = 0; i < r->npunches; i++) {
    const sim_punch_rec *p = &r->punches[i];
    const char *m = p->method < 0                   ? "open"
                    : p->method == DHT_PATH_RELAYED ? "relayed"
                    : p->method == DHT_PATH_PUNCHED ? "punched"
                                                    : "none";
    fprintf(o.f, "%d,%d,%s,%s,%s,%" PRId64 ",%" PRId64 "\n", p->from, p->to,
            sim_nat_type_name(p->ftype), sim_nat_type_name(p->ttype), m, (int64_t)p->start_ms,
            (int64_t)p->ms);
  }
  return out_close(&o, err, errlen);
}

static int cmp_ts(const void *a, const void *b) {
  dht_ts x = *(const dht_ts *)a, y = *(const dht_ts *)b;
  return (x > y) - (x < y);
}

/* The matrix of the punch experiment, on stdout: per pair of box types,
 * attempts and how they ended, and the time to a path. */
static void print_punches(const sim_result *r) {
  dht_ts *v = malloc((r->npunches ? r->npunches : 1) * sizeof *v);
  if (!v)
    return;
  printf("punches: %zu (from \\ to: attempts, punched, relayed, no path, open; time to a "
         "path p50/p90)\n",
         r->npunches);
  for (int a = 0; a < SIM_NAT_TYPES; a++)
    for (int b = 0; b < SIM_NAT_TYPES; b++) {
      size_t n = 0, pu = 0, re = 0, no = 0, op = 0, nv = 0;
      for (size_t i = 0; i < r->npunches; i++) {
        const sim_punch_rec *p = &r->punches[i];
        if (p->ftype != a || p->ttype != b)
          continue;
        n++;
        op += p->method < 0;
        no += p->method == 0;
        pu += p->method == DHT_PATH_PUNCHED;
        re += p->method == DHT_PATH_RELAYED;
        if (p->method > 0)
          v[nv++] = p->ms;
      }
      if (!n)
        continue;
      qsort(v, nv, sizeof *v, cmp_ts);
      printf("  %-10s -> %-10s %5zu: punched %5.1f%%, relayed %5.1f%%, no path %5.1f%%, open "
             "%zu; %lld / %lld ms\n",
             sim_nat_type_name(a), sim_nat_type_name(b), n, 100.0 * (double)pu / (double)n,
             100.0 * (double)re / (double)n, 100.0 * (double)no / (double)n, op,
             nv ? (long long)v[nv / 2] : -1LL, nv ? (long long)v[nv * 9 / 10] : -1LL);
    }
  free(v);
}

/* ---- summary ----------------------------------------------------------- */

static int summary_messages(FILE *f, const sim_config *c, const sim_result *r);

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* nearest rank: the smallest value with at least p of the values at or below */
static int64_t pct(const int64_t *v, size_t n, double p) {
  size_t rank = (size_t)ceil(p * (double)n);
  return v[rank ? rank - 1 : 0];
}

static double mean(const int64_t *v, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++)
    s += (double)v[i];
  return s / (double)n;
}

/* "name": {"p50": .., ...} over v (sorted here); null members when empty */
static void stats(FILE *f, const char *name, int64_t *v, size_t n, const char *const *which) {
  fprintf(f, "      \"%s\": {", name);
  if (n)
    qsort(v, n, sizeof *v, cmp_i64);
  for (int i = 0; which[i]; i++) {
    fprintf(f, "%s\"%s\": ", i ? ", " : "", which[i]);
    if (!n)
      fputs("null", f);
    else if (!strcmp(which[i], "mean"))
      json_num(f, mean(v, n));
    else if (!strcmp(which[i], "max"))
      fprintf(f, "%" PRId64, v[n - 1]);
    else
      fprintf(f, "%" PRId64, pct(v, n, atof(which[i] + 1) / 100));
  }
  fputc('}', f);
}

/* the "nat" member of summary.json: the mix asked for, the hosts of each
 * type it gave, and what the boxes did */
static void summary_nat(FILE *f, const sim_config *c, const sim_result *r) {
  const sim_nat_stats *n = &r->nat;
  fputs("  \"nat\": {\n    \"mix\": {", f);
  for (int k = 0; k < SIM_NAT_TYPES; k++) {
    fprintf(f, "%s\"%s\": ", k ? ", " : "", sim_nat_type_name(k));
    json_num(f, c->nat_mix[k]);
  }
  fputs("},\n    \"hosts\": {", f);
  for (int k = 0; k < SIM_NAT_TYPES; k++)
    fprintf(f, "%s\"%s\": %d", k ? ", " : "", sim_nat_type_name(k), n->hosts[k]);
  fprintf(f,
          "},\n    \"timeout_ms\": %" PRId64 ",\n    \"hairpin\": \"%s\",\n    \"flows\": %" PRIu64
          ",\n    \"filtered\": %" PRIu64 ",\n    \"primed\": %" PRIu64
          ",\n    \"hairpinned\": %" PRIu64 ",\n    \"no_hairpin\": %" PRIu64
          ",\n    \"table_full\": %" PRIu64 ",\n    \"peak_bytes\": %zu\n  },\n",
          (int64_t)c->nat_timeout_ms, c->nat_hairpin ? "on" : "off", n->flows, n->filtered,
          n->primed, n->hairpinned, n->no_hairpin, n->table_full, n->peak_bytes);
}

/* the "nat_svc" member (nat on): the services' verdicts over the hosts up
 * at the end, overall and by box type, how long they took from the host's
 * start, the dial-backs, and the routing-table entries a stranger cannot
 * reach.  v has room for nhosts values. */
static void summary_natsvc(FILE *f, const sim_result *r, int64_t *v) {
  const sim_natsvc_stats *t = &r->natsvc;
  int up = 0, servers = 0, reach[3] = {0, 0, 0}, known = 0, seeds = 0, proven = 0;
  int ty_up[SIM_NAT_TYPES] = {0}, ty_srv[SIM_NAT_TYPES] = {0}, ty_known[SIM_NAT_TYPES] = {0};
  int ty_reach[SIM_NAT_TYPES][3] = {{0}}, ty_mapped[SIM_NAT_TYPES] = {0};
  for (int i = 0; i < t->nhosts; i++) {
    const sim_nat_host *h = &t->hosts[i];
    if (!h->up)
      continue;
    int rc = h->reach <= 2 ? h->reach : 0;
    up++;
    servers += h->server;
    seeds += h->seed;
    /* auto mode: a dial-back proved it reachable and made it a server */
    proven += h->server && !h->seed && h->reach == NAT_REACH_YES;
    reach[rc]++;
    known += h->class_ms >= 0;
    ty_up[h->type]++;
    ty_srv[h->type] += h->server;
    ty_known[h->type] += h->class_ms >= 0;
    ty_reach[h->type][rc]++;
    ty_mapped[h->type] += h->mapped;
  }
  fprintf(f,
          "  \"nat_svc\": {\n    \"hosts_up\": %d,\n    \"seeds_up\": %d,\n"
          "    \"servers_by_dialback\": %d,\n    \"mode\": {\"server\": %d, \"client\": %d},"
          "\n    \"reach\": {\"yes\": %d, \"no\": %d, \"unknown\": %d},\n"
          "    \"class_known\": %d,\n    \"by_type\": {",
          up, seeds, proven, servers, up - servers, reach[1], reach[2], reach[0], known);
  for (int k = 0, first = 1; k < SIM_NAT_TYPES; k++) {
    if (!r->nat.hosts[k])
      continue;
    fprintf(f,
            "%s\n      \"%s\": {\"up\": %d, \"server\": %d, \"class_known\": %d, "
            "\"reach_yes\": %d, \"reach_no\": %d, \"reach_unknown\": %d, \"mapped\": %d}",
            first ? "" : ",", sim_nat_type_name(k), ty_up[k], ty_srv[k], ty_known[k],
            ty_reach[k][1], ty_reach[k][2], ty_reach[k][0], ty_mapped[k]);
    first = 0;
  }
  fputs("\n    },\n", f);
  static const char *const p[] = {"p50", "p99", "max", NULL};
  size_t n = 0;
  for (int i = 0; i < t->nhosts; i++)
    if (t->hosts[i].up && t->hosts[i].class_ms >= 0)
      v[n++] = t->hosts[i].class_ms - t->hosts[i].start_ms;
  stats(f, "time_to_class_ms", v, n, p);
  fputs(",\n", f);
  n = 0;
  for (int i = 0; i < t->nhosts; i++)
    if (t->hosts[i].up)
      v[n++] = t->hosts[i].mode_ms - t->hosts[i].start_ms;
  stats(f, "time_to_mode_ms", v, n, p);
  fprintf(f,
          ",\n    \"dials\": {\"started\": %" PRIu64 ", \"ok\": %" PRIu64 ", \"failed\": %" PRIu64
          ", \"inconclusive\": %" PRIu64 ", \"helped\": %" PRIu64 ", \"probes\": %" PRIu64 "},\n"
          "    \"table\": {\"entries\": %" PRIu64 ", \"unreachable\": %" PRIu64
          ", \"unknown\": %" PRIu64 ", \"unreachable_share\": ",
          t->dials, t->dials_ok, t->dials_failed, t->dials_inconclusive, t->helped, t->probes,
          t->entries, t->entries_unreachable, t->entries_unknown);
  if (t->entries)
    json_num(f, (double)t->entries_unreachable / (double)t->entries);
  else
    fputs("null", f);
  fprintf(f,
          "},\n    \"mappings\": {\"asked\": %" PRIu64 ", \"granted\": %" PRIu64
          ", \"verified\": %" PRIu64 ", \"refuted\": %" PRIu64 "},\n"
          "    \"svc_bytes_per_host\": %zu,\n    \"portmap_bytes_per_host\": %zu\n  },\n",
          t->maps_asked, t->maps_granted, t->maps_verified, t->maps_refuted, t->svc_bytes,
          t->pm_bytes);
}

static int write_summary(const sim_config *c, const sim_result *r, char *err, size_t errlen) {
  outfile o;
  size_t nv = r->nops > (size_t)r->natsvc.nhosts ? r->nops : (size_t)r->natsvc.nhosts;
  int64_t *v = malloc((nv ? nv : 1) * sizeof *v);
  if (!v) {
    snprintf(err, errlen, "out of memory writing summary.json");
    return -1;
  }
  if (out_open(&o, c->out_dir, "summary.json", err, errlen) != 0) {
    free(v);
    return -1;
  }
  char h[65];
  hex(h, r->trace_hash);
  fprintf(o.f, "{\n  \"roost_sim_version\": \"%s\",\n  \"seed\": %" PRIu64 ",\n", SIM_VERSION,
          c->seed);
  crypto_members(o.f, r->crypto, "  ");
  summary_nat(o.f, c, r);
  if (c->nat_svc)
    summary_natsvc(o.f, r, v);
  if (r->nmsgs && summary_messages(o.f, c, r) != 0) {
    fclose(o.f);
    free(v);
    snprintf(err, errlen, "out of memory writing summary.json");
    return -1;
  }
  fputs("  \"ops\": {\n", o.f);
  static const char *const lat[] = {"p50", "p90", "p99", "mean", "max", NULL};
  static const char *const rounds[] = {"mean", "p50", "max", NULL};
  static const char *const msgs[] = {"mean", "p50", "p95", NULL};
  for (int k = 1; k < NKINDS; k++) {
    uint64_t count = 0, done = 0, ok = 0;
    double overlap = 0;
    for (size_t i = 0; i < r->nops; i++) {
      const sim_op *p = &r->ops[i];
      if (p->kind != k)
        continue;
      count++;
      if (op_finished(p)) {
        done++;
        ok += p->ok != 0;
        overlap += p->overlap;
      }
    }
    fprintf(o.f,
            "    \"%s\": {\n      \"count\": %" PRIu64 ",\n      \"finished\": %" PRIu64
            ",\n      \"unfinished\": %" PRIu64 ",\n      \"ok\": %" PRIu64
            ",\n      \"success_rate\": ",
            kind_names[k], count, done, count - done, ok);
    json_num(o.f, done ? (double)ok / (double)done : NAN);
    fputs(",\n", o.f);
    size_t n;
#define COLLECT(expr)                                                                              \
  do {                                                                                             \
    n = 0;                                                                                         \
    for (size_t i = 0; i < r->nops; i++) {                                                         \
      const sim_op *p = &r->ops[i];                                                                \
      if (p->kind == k && op_finished(p))                                                          \
        v[n++] = (expr);                                                                           \
    }                                                                                              \
  } while (0)
    COLLECT(p->end_ms - p->start_ms);
    stats(o.f, "latency_ms", v, n, lat);
    fputs(",\n", o.f);
    COLLECT(p->rounds);
    stats(o.f, "rounds", v, n, rounds);
    fputs(",\n", o.f);
    COLLECT(p->messages);
    stats(o.f, "messages", v, n, msgs);
#undef COLLECT
    if (k == SIM_OP_LOOKUP) {
      fputs(",\n      \"overlap\": {\"mean\": ", o.f);
      json_num(o.f, done ? overlap / (double)done : NAN);
      fputc('}', o.f);
    }
    fprintf(o.f, "\n    }%s\n", k + 1 < NKINDS ? "," : "");
  }
  free(v);
  fprintf(o.f,
          "  },\n  \"totals\": {\n    \"events\": %" PRIu64 ",\n    \"packets\": %" PRIu64
          ",\n    \"lost\": %" PRIu64 ",\n    \"events_per_s\": ",
          r->events, r->packets, r->lost);
  json_num(o.f, r->wall_s > 0 ? (double)r->events / r->wall_s : NAN);
  fputs(",\n    \"wall_s\": ", o.f);
  json_num(o.f, r->wall_s);
  fprintf(o.f, ",\n    \"peak_rss_kb\": %zu,\n    \"nodes\": %d,\n    \"hosts\": %d,\n",
          r->peak_rss_kb, c->nodes, r->nhosts);
  fputs("    \"bytes_per_node\": ", o.f);
  json_num(o.f, c->nodes > 0 ? (double)r->peak_rss_kb * 1024.0 / c->nodes : NAN);
  fprintf(o.f, ",\n    \"trace_hash\": \"%s\"\n  }\n}\n", h);
  return out_close(&o, err, errlen);
}

/* ---- messaging ------------------------------------------------------------ */

static const char *const path_names[] = {
    [SIM_PATH_NONE] = "",     [SIM_PATH_DIRECT] = "direct",   [SIM_PATH_MAILBOX] = "mailbox",
    [SIM_PATH_HOST] = "host", [SIM_PATH_PUNCHED] = "punched", [SIM_PATH_RELAYED] = "relayed"};

static void print_ms(FILE *f, dht_ts v) {
  if (v >= 0)
    fprintf(f, "%" PRId64, (int64_t)v);
  else
    fputs("-1", f);
}

static int write_messages(const sim_config *c, const sim_result *r, char *err, size_t errlen) {
  outfile o;
  if (out_open(&o, c->out_dir, "messages.csv", err, errlen) != 0)
    return -1;
  fputs("sender,recipient,host,offline_ms,back_ms,due_ms,sent_ms,stored_ms,delivered_ms,path,"
        "delay_ms,after_return_ms,sends,dups\n",
        o.f);
  for (size_t i = 0; i < r->nmsgs; i++) {
    const sim_msg_rec *m = &r->msgs[i];
    fprintf(o.f, "%d,%d,%d,", m->sender, m->recipient, m->host);
    dht_ts v[] = {m->offline_ms, m->back_ms, m->due_ms, m->sent_ms, m->stored_ms, m->delivered_ms};
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
      print_ms(o.f, v[k]);
      fputc(',', o.f);
    }
    fprintf(o.f, "%s,", m->path < SIM_PATHS ? path_names[m->path] : "");
    print_ms(o.f, m->delivered_ms >= 0 ? m->delivered_ms - m->due_ms : -1);
    fputc(',', o.f);
    if (m->delivered_ms >= 0)
      fprintf(o.f, "%" PRId64,
              (int64_t)(m->delivered_ms > m->back_ms ? m->delivered_ms - m->back_ms : 0));
    else
      fputs("-1", o.f);
    fprintf(o.f, ",%u,%u\n", m->sends, m->dups);
  }
  return out_close(&o, err, errlen);
}

/* the "messages" member of summary.json */
static int summary_messages(FILE *f, const sim_config *c, const sim_result *r) {
  size_t n = r->nmsgs, got = 0, stored = 0, sent = 0, path[SIM_PATHS] = {0};
  uint64_t dups = 0, resent = 0, late = 0;
  int64_t *d = malloc((n ? n : 1) * sizeof *d), *a = malloc((n ? n : 1) * sizeof *a);
  if (!d || !a) {
    free(d);
    free(a);
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    const sim_msg_rec *m = &r->msgs[i];
    stored += m->stored_ms >= 0;
    sent += m->sent_ms >= 0;
    dups += m->dups;
    resent += m->sends > 1;
    late += m->sent_ms < 0 || m->sent_ms >= m->back_ms;
    if (m->delivered_ms >= 0) {
      d[got] = m->delivered_ms - m->due_ms;
      a[got] = m->delivered_ms > m->back_ms ? m->delivered_ms - m->back_ms : 0;
      got++;
      path[m->path < SIM_PATHS ? m->path : 0]++;
    }
  }
  static const char *const which[] = {"p50", "p90", "p99", "max", NULL};
  fprintf(f,
          "  \"messages\": {\n    \"pairs\": %d,\n    \"friend_hosts\": %d,\n"
          "    \"messages\": %zu,\n    \"sent\": %zu,\n    \"unsent\": %zu,\n"
          "    \"stored\": %zu,\n    \"delivered\": %zu,\n    \"delivery_ratio\": ",
          c->msg_pairs, c->msg_hosts, n, sent, n - sent, stored, got);
  /* of the messages sent: one whose sender never came back to send it is no
   * mailbox failure (it is counted in unsent) */
  json_num(f, sent ? (double)got / (double)sent : NAN);
  fputs(",\n    \"delivered_of_all\": ", f);
  json_num(f, n ? (double)got / (double)n : NAN);
  fprintf(
      f,
      ",\n    \"paths\": {\"direct\": %zu, \"punched\": %zu, \"relayed\": %zu, \"mailbox\": %zu, "
      "\"host\": %zu},\n"
      "    \"sent_after_return\": %" PRIu64 ",\n"
      "    \"duplicates\": %" PRIu64 ",\n    \"resent_after_restart\": %" PRIu64
      ",\n    \"lost_notices\": %" PRIu64 ",\n    \"lost_items\": %" PRIu64
      ",\n    \"fetch_rounds\": %" PRIu64 ",\n    \"deposits_in\": %" PRIu64
      ",\n    \"recon_items_pushed\": %" PRIu64 ",\n    \"recon_items_pulled\": %" PRIu64 ",\n",
      path[SIM_PATH_DIRECT], path[SIM_PATH_PUNCHED], path[SIM_PATH_RELAYED], path[SIM_PATH_MAILBOX],
      path[SIM_PATH_HOST], late, dups, resent, r->msg_loss_notices, r->msg_loss_items,
      r->msg_fetch_rounds, r->msg_deposits_in, r->msg_recon_pushed, r->msg_recon_pulled);
  /* stats() indents six spaces: fine inside this object */
  stats(f, "delay_ms", d, got, which);
  fputs(",\n", f);
  stats(f, "after_return_ms", a, got, which);
  fputs("\n  },\n", f);
  free(d);
  free(a);
  return 0;
}

/* ---- plots ------------------------------------------------------------- */

/* gnuplot's full path from PATH into out, or -1.  Empty PATH entries (the
 * current directory, by POSIX) are skipped on purpose. */
static int find_gnuplot(char *out, size_t len) {
  const char *path = getenv("PATH");
  if (!path)
    return -1;
  while (*path) {
    const char *colon = strchr(path, ':');
    size_t n = colon ? (size_t)(colon - path) : strlen(path);
    if (n > 0 && snprintf(out, len, "%.*s/gnuplot", (int)n, path) < (int)len) {
      struct stat st;
      if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
        return 0;
    }
    path += n;
    if (*path == ':')
      path++;
  }
  return -1;
}

/* Runs "gnuplot SCRIPT" in dir, stdin from /dev/null, stdout and stderr
 * appended to dir/plots.log.  Returns 0 or -1 with a reason in why. */
static int run_gnuplot(const char *gp, const char *dir, const char *script, char *why,
                       size_t whylen) {
  char logp[PATH_MAX + 16];
  snprintf(logp, sizeof logp, "%s/plots.log", dir);
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(why, whylen, "fork: %s", strerror(errno));
    return -1;
  }
  if (pid == 0) {
    int in = open("/dev/null", O_RDONLY);
    int log = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0666);
    if (in < 0 || log < 0 || dup2(in, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0 ||
        chdir(dir) != 0)
      _exit(126);
    char *argv[] = {(char *)"gnuplot", (char *)script, NULL};
    execv(gp, argv);
    _exit(127);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) {
      snprintf(why, whylen, "waitpid: %s", strerror(errno));
      return -1;
    }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
    return 0;
  if (WIFEXITED(st))
    snprintf(why, whylen, "exit status %d", WEXITSTATUS(st));
  else
    snprintf(why, whylen, "killed by signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  return -1;
}

/* The terminal lines every script starts with: pngcairo when this gnuplot
 * has it, else png; then the same plot again as SVG. */
static void gp_head(FILE *f, const char *title, bool crypto) {
  fprintf(f,
          "# written by roost-sim; run as: gnuplot %s.gp (in this directory)\n"
          "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
          "  set terminal pngcairo size 800,500 noenhanced\n"
          "} else {\n"
          "  set terminal png size 800,500 noenhanced\n"
          "}\n"
          "set output '%s.png'\n"
          "set grid\n"
          "mode = '%s'\n",
          title, title, crypto ? "" : ", CRYPTO OFF");
}

static void gp_tail(FILE *f, const char *title) {
  fprintf(f,
          "set terminal svg size 800,500 noenhanced\nset output '%s.svg'\nreplot\n"
          "unset output\n",
          title);
}

typedef struct plot {
  const char *name;
  outfile gp, dat;
} plot;

static int plot_open(plot *p, const sim_result *r, const char *dir, const char *name, char *err,
                     size_t errlen) {
  char n[64];
  p->name = name;
  snprintf(n, sizeof n, "%s.dat", name);
  if (out_open(&p->dat, dir, n, err, errlen) != 0)
    return -1;
  snprintf(n, sizeof n, "%s.gp", name);
  if (out_open(&p->gp, dir, n, err, errlen) != 0) {
    fclose(p->dat.f);
    return -1;
  }
  gp_head(p->gp.f, name, r->crypto);
  return 0;
}

static int plot_close(plot *p, char *err, size_t errlen) {
  gp_tail(p->gp.f, p->name);
  int a = out_close(&p->dat, err, errlen);
  int b = out_close(&p->gp, err, errlen);
  return a || b ? -1 : 0;
}

/* lookup latency CDF: at most 2001 points (evenly spaced ranks) */
static int plot_latency(const sim_config *c, const sim_result *r, char *err, size_t errlen) {
  size_t n = 0;
  for (size_t i = 0; i < r->nops; i++)
    n += r->ops[i].kind == SIM_OP_LOOKUP && op_finished(&r->ops[i]);
  if (!n)
    return 1;
  int64_t *v = malloc(n * sizeof *v);
  if (!v) {
    snprintf(err, errlen, "out of memory writing plots");
    return -1;
  }
  n = 0;
  for (size_t i = 0; i < r->nops; i++)
    if (r->ops[i].kind == SIM_OP_LOOKUP && op_finished(&r->ops[i]))
      v[n++] = r->ops[i].end_ms - r->ops[i].start_ms;
  qsort(v, n, sizeof *v, cmp_i64);
  plot p;
  if (plot_open(&p, r, c->out_dir, "latency_cdf", err, errlen) != 0) {
    free(v);
    return -1;
  }
  fputs("# latency_ms fraction_of_finished_lookups\n", p.dat.f);
  size_t steps = n < 2000 ? n : 2000;
  for (size_t s = 1; s <= steps; s++) {
    size_t rank = (s * n + steps - 1) / steps; /* 1..n */
    fprintf(p.dat.f, "%" PRId64 " %.6f\n", v[rank - 1], (double)rank / (double)n);
  }
  free(v);
  fprintf(p.gp.f,
          "set title sprintf('lookup latency (%zu finished lookups%%s)', mode)\n"
          "set xlabel 'latency (ms)'\nset ylabel 'fraction of lookups'\n"
          "set yrange [0:1]\nset key off\n"
          "plot 'latency_cdf.dat' using 1:2 with steps lw 2\n",
          n);
  return plot_close(&p, err, errlen);
}

/* rounds (hops) of finished lookups */
static int plot_rounds(const sim_config *c, const sim_result *r, char *err, size_t errlen) {
  uint64_t hist[256] = {0}, n = 0;
  for (size_t i = 0; i < r->nops; i++)
    if (r->ops[i].kind == SIM_OP_LOOKUP && op_finished(&r->ops[i])) {
      hist[r->ops[i].rounds]++;
      n++;
    }
  if (!n)
    return 1;
  plot p;
  if (plot_open(&p, r, c->out_dir, "rounds_hist", err, errlen) != 0)
    return -1;
  int hi = 255;
  while (hi > 0 && !hist[hi])
    hi--;
  fputs("# rounds lookups\n", p.dat.f);
  for (int i = 0; i <= hi; i++)
    fprintf(p.dat.f, "%d %" PRIu64 "\n", i, hist[i]);
  fprintf(p.gp.f,
          "set title sprintf('rounds per lookup (%" PRIu64 " finished lookups%%s)', mode)\n"
          "set xlabel 'rounds (hops)'\nset ylabel 'lookups'\n"
          "set style fill solid 0.6\nset boxwidth 0.8\nset key off\n"
          "set xrange [-0.5:%d.5]\nset yrange [0:*]\n"
          "plot 'rounds_hist.dat' using 1:2 with boxes\n",
          n, hi);
  return plot_close(&p, err, errlen);
}

/* success rate over time, online hosts on the second axis */
static int plot_success(const sim_config *c, const sim_result *r, char *err, size_t errlen) {
  size_t n = 0;
  int top = 0;
  for (size_t i = 0; i < r->nsamples; i++) {
    n += r->samples[i].ops_done > 0;
    if (r->samples[i].online > top)
      top = r->samples[i].online;
  }
  if (!n)
    return 1;
  plot p;
  if (plot_open(&p, r, c->out_dir, "success_rate", err, errlen) != 0)
    return -1;
  fputs("# t_s success_rate online ('?': no op finished in the interval)\n", p.dat.f);
  for (size_t i = 0; i < r->nsamples; i++) {
    const sim_sample *s = &r->samples[i];
    print_s(p.dat.f, s->t_ms);
    if (s->ops_done)
      fprintf(p.dat.f, " %.6f %d\n", (double)s->ops_ok / (double)s->ops_done, s->online);
    else
      fprintf(p.dat.f, " ? %d\n", s->online);
  }
  fprintf(p.gp.f,
          "set title sprintf('success rate over time (ops finished per interval%%s)', mode)\n"
          "set xlabel 'time (s)'\nset ylabel 'ops ok / ops finished'\nset xrange [0:*]\n"
          "set y2label 'hosts online'\nset yrange [0:1.05]\nset y2range [0:%d]\n"
          "set ytics nomirror\nset y2tics\nset key bottom right\nset datafile missing '?'\n"
          "plot 'success_rate.dat' using 1:2 with linespoints lw 2 title 'success rate', \\\n"
          "     'success_rate.dat' using 1:3 axes x1y2 with lines title 'online'\n",
          top + top / 20 + 1);
  return plot_close(&p, err, errlen);
}

/* datagrams sent per host: at most 50 bins */
static int plot_tx(const sim_config *c, const sim_result *r, char *err, size_t errlen) {
  if (r->nhosts <= 0 || !r->tx_per_host)
    return 1;
  uint64_t max = 0, bins[50] = {0};
  for (int i = 0; i < r->nhosts; i++)
    if (r->tx_per_host[i] > max)
      max = r->tx_per_host[i];
  uint64_t width = max / 50 + 1;
  for (int i = 0; i < r->nhosts; i++)
    bins[r->tx_per_host[i] / width]++;
  plot p;
  if (plot_open(&p, r, c->out_dir, "tx_hist", err, errlen) != 0)
    return -1;
  fputs("# datagrams_sent_from hosts\n", p.dat.f);
  for (uint64_t b = 0; b <= max / width; b++)
    fprintf(p.dat.f, "%" PRIu64 " %" PRIu64 "\n", b * width, bins[b]);
  fprintf(p.gp.f,
          "set title sprintf('datagrams sent per host (%d hosts%%s)', mode)\n"
          "set xlabel 'datagrams sent'\nset ylabel 'hosts'\n"
          "set style fill solid 0.6\nset boxwidth %" PRIu64 " absolute\nset key off\n"
          "set xrange [0:*]\nset yrange [0:*]\n"
          "plot 'tx_hist.dat' using ($1+%g):2 with boxes\n",
          r->nhosts, width, (double)width / 2);
  return plot_close(&p, err, errlen);
}

/* messaging: CDF of the delay after the recipient came back, over all messages */
static int plot_msg_delay(const sim_config *c, const sim_result *r, char *err, size_t errlen) {
  if (!r->nmsgs)
    return 1;
  int64_t *v = malloc(r->nmsgs * sizeof *v);
  if (!v) {
    snprintf(err, errlen, "out of memory writing plots");
    return -1;
  }
  size_t n = 0;
  for (size_t i = 0; i < r->nmsgs; i++) {
    const sim_msg_rec *m = &r->msgs[i];
    if (m->delivered_ms >= 0)
      v[n++] = m->delivered_ms > m->back_ms ? m->delivered_ms - m->back_ms : 0;
  }
  qsort(v, n, sizeof *v, cmp_i64);
  plot p;
  if (plot_open(&p, r, c->out_dir, "msg_delay_cdf", err, errlen) != 0) {
    free(v);
    return -1;
  }
  fputs("# seconds_after_return fraction_of_all_messages\n", p.dat.f);
  size_t steps = n < 2000 ? n : 2000;
  for (size_t s = 1; s <= steps; s++) {
    size_t rank = (s * n + steps - 1) / steps;
    fprintf(p.dat.f, "%.3f %.6f\n", (double)v[rank - 1] / 1000.0, (double)rank / (double)r->nmsgs);
  }
  free(v);
  fprintf(p.gp.f,
          "set title sprintf('delivery after the recipient came back (%zu of %zu messages%%s)', "
          "mode)\n"
          "set xlabel 'seconds after the recipient came back'\nset ylabel 'fraction of messages'\n"
          "set yrange [0:1]\nset key off\n"
          "plot 'msg_delay_cdf.dat' using 1:2 with steps lw 2\n",
          n, r->nmsgs);
  return plot_close(&p, err, errlen);
}

static void write_plots(const sim_config *c, const sim_result *r) {
  char gp[PATH_MAX + 16], err[PATH_MAX + 256], why[128];
  if (find_gnuplot(gp, sizeof gp) != 0)
    return;
  snprintf(err, sizeof err, "%s/plots.log", c->out_dir);
  unlink(err); /* a fresh log for this run */
  static const struct {
    const char *name;
    int (*write)(const sim_config *, const sim_result *, char *, size_t);
  } plots[] = {{"latency_cdf", plot_latency},
               {"rounds_hist", plot_rounds},
               {"success_rate", plot_success},
               {"tx_hist", plot_tx},
               {"msg_delay_cdf", plot_msg_delay}};
  for (size_t i = 0; i < sizeof plots / sizeof plots[0]; i++) {
    int rv = plots[i].write(c, r, err, sizeof err);
    if (rv > 0)
      continue; /* no data for this plot */
    if (rv < 0) {
      fprintf(stderr, "roost-sim: warning: plot %s skipped: %s\n", plots[i].name, err);
      continue;
    }
    char script[64];
    snprintf(script, sizeof script, "%s.gp", plots[i].name);
    if (run_gnuplot(gp, c->out_dir, script, why, sizeof why) != 0)
      fprintf(stderr, "roost-sim: warning: gnuplot failed on %s/%s (%s; see plots.log)\n",
              c->out_dir, script, why);
  }
  struct stat st;
  snprintf(err, sizeof err, "%s/plots.log", c->out_dir);
  if (stat(err, &st) == 0 && st.st_size == 0)
    unlink(err); /* nothing to say */
}

int sim_out_write(const sim_config *c, const sim_result *r, char *err, size_t errlen) {
  if (make_dirs(c->out_dir, err, errlen) != 0)
    return -1;
  if (r->nmsgs && write_messages(c, r, err, errlen) != 0)
    return -1;
  if (c->nat_svc && write_nat_hosts(c, r, err, errlen) != 0)
    return -1;
  if (c->punch_rate > 0 && write_punches(c, r, err, errlen) != 0)
    return -1;
  if (c->punch_rate > 0 && !c->quiet)
    print_punches(r);
  if (write_manifest(c, r, err, errlen) != 0 || write_ops(c, r, err, errlen) != 0 ||
      write_series(c, r, err, errlen) != 0 || write_hosts(c, r, err, errlen) != 0 ||
      write_summary(c, r, err, errlen) != 0)
    return -1;
  write_plots(c, r);
  if (r->nmsgs && !c->quiet) {
    size_t got = 0, sent = 0;
    for (size_t i = 0; i < r->nmsgs; i++) {
      got += r->msgs[i].delivered_ms >= 0;
      sent += r->msgs[i].sent_ms >= 0;
    }
    printf("messages: %zu, %zu sent (the other senders never came back), %zu delivered "
           "(%.2f%% of those sent)\n",
           r->nmsgs, sent, got, sent ? 100.0 * (double)got / (double)sent : 0.0);
  }
  return 0;
}

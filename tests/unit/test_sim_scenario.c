/*
 * test_sim_scenario.c - roost-sim's configuration and output, without
 * running a simulation: the defaults; every option set with good and bad
 * values (a bad one names the source and the key and leaves the config
 * untouched); scenario files (comments, script lines, every error naming
 * file:line); the cross-field checks; the config as JSON; the help text;
 * and sim_out_write on a small hand-made result (files exist, parse back,
 * the same result gives the same bytes; plots only when gnuplot is found).
 */
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

/* ---- helpers ------------------------------------------------------------- */

static char tmpdir[64];

static int setup_dir(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/test_sim_scenario.XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

static void rm_rf(const char *path) {
  nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int teardown_dir(void **state) {
  (void)state;
  rm_rf(tmpdir);
  return 0;
}

/* writes text to tmpdir/name; the path into out */
static void write_file(const char *name, const char *text, char *out, size_t len) {
  snprintf(out, len, "%s/%s", tmpdir, name);
  FILE *f = fopen(out, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

/* the whole file, NUL-terminated (caller frees), or NULL */
static char *slurp(const char *dir, const char *name, size_t *len) {
  char p[PATH_MAX + 64];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  assert_non_null(b);
  assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
  b[n] = 0;
  fclose(f);
  if (len)
    *len = (size_t)n;
  return b;
}

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++)
    n += *s == '\n';
  return n;
}

static bool exists(const char *dir, const char *name) {
  char p[PATH_MAX + 64];
  struct stat st;
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return stat(p, &st) == 0 && st.st_size > 0;
}

/* ---- defaults and single options ------------------------------------------ */

static void test_defaults(void **state) {
  (void)state;
  sim_config c;
  sim_config_default(&c);
  assert_int_equal(c.nodes, 1000);
  assert_int_equal(c.seed, 1);
  assert_string_equal(c.out_dir, "sim-out");
  assert_string_equal(c.rtt_file, "");
  assert_string_equal(c.scenario_file, "");
  assert_int_equal(c.duration_ms, 600000);
  assert_int_equal(c.join_ms, 120000);
  assert_int_equal(c.bootstrap_peers, 3);
  assert_true(c.synth_base_ms == 10);
  assert_true(c.synth_per_unit_ms == 190);
  assert_true(c.jitter == 0.1);
  assert_true(c.loss == 0);
  assert_int_equal(c.bandwidth_bps, 0);
  assert_int_equal(c.queue_bytes, 65536);
  assert_int_equal(c.session.kind, SIM_DIST_NONE);
  assert_int_equal(c.downtime.kind, SIM_DIST_EXP);
  assert_true(fabs(sim_dist_median(&c.downtime) - 600000) < 1e-6);
  assert_true(c.vanish == 0.5);
  assert_true(c.lookup_rate == 10);
  assert_true(c.get_rate == 0);
  assert_true(c.put_rate == 0);
  assert_int_equal(c.max_lookups, 0);
  assert_true(c.crypto);
  assert_int_equal(c.k, 20);
  assert_int_equal(c.sample_ms, 10000);
  assert_int_equal(c.progress, isatty(2) == 1);
  assert_false(c.quiet);
  assert_int_equal(c.nscript, 0);
  assert_true(c.nat_mix[SIM_NAT_PUBLIC] == 1);
  for (int t = SIM_NAT_PUBLIC + 1; t < SIM_NAT_TYPES; t++)
    assert_true(c.nat_mix[t] == 0);
  assert_int_equal(c.nat_timeout_ms, 120000);
  assert_false(c.nat_hairpin);
  char err[256] = "";
  assert_int_equal(sim_config_check(&c, err, sizeof err), 0);
}

/* the field a key sets, as a number (paths: length; distributions: median) */
static double field(const sim_config *c, const char *key) {
  static const struct {
    const char *key;
    size_t off;
    char type; /* i int, u u64, U u32, t dht_ts, d double, b bool, p path, D dist */
  } f[] = {
      {"nodes", offsetof(sim_config, nodes), 'i'},
      {"seed", offsetof(sim_config, seed), 'u'},
      {"out", offsetof(sim_config, out_dir), 'p'},
      {"rtt-file", offsetof(sim_config, rtt_file), 'p'},
      {"scenario", offsetof(sim_config, scenario_file), 'p'},
      {"duration", offsetof(sim_config, duration_ms), 't'},
      {"join", offsetof(sim_config, join_ms), 't'},
      {"bootstrap-peers", offsetof(sim_config, bootstrap_peers), 'i'},
      {"synth-base", offsetof(sim_config, synth_base_ms), 'd'},
      {"synth-per-unit", offsetof(sim_config, synth_per_unit_ms), 'd'},
      {"jitter", offsetof(sim_config, jitter), 'd'},
      {"loss", offsetof(sim_config, loss), 'd'},
      {"bandwidth", offsetof(sim_config, bandwidth_bps), 'u'},
      {"queue", offsetof(sim_config, queue_bytes), 'U'},
      {"session", offsetof(sim_config, session), 'D'},
      {"downtime", offsetof(sim_config, downtime), 'D'},
      {"vanish", offsetof(sim_config, vanish), 'd'},
      {"lookups", offsetof(sim_config, lookup_rate), 'd'},
      {"gets", offsetof(sim_config, get_rate), 'd'},
      {"puts", offsetof(sim_config, put_rate), 'd'},
      {"max-lookups", offsetof(sim_config, max_lookups), 'i'},
      {"crypto", offsetof(sim_config, crypto), 'b'},
      {"k", offsetof(sim_config, k), 'i'},
      {"sample", offsetof(sim_config, sample_ms), 't'},
      {"progress", offsetof(sim_config, progress), 'b'},
      {"quiet", offsetof(sim_config, quiet), 'b'},
      {"nat-timeout", offsetof(sim_config, nat_timeout_ms), 't'},
      {"nat-hairpin", offsetof(sim_config, nat_hairpin), 'b'},
  };
  const char *b = (const char *)c;
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    if (strcmp(f[i].key, key) != 0)
      continue;
    const void *p = b + f[i].off;
    switch (f[i].type) {
    case 'i':
      return *(const int *)p;
    case 'u':
      return (double)*(const uint64_t *)p;
    case 'U':
      return *(const uint32_t *)p;
    case 't':
      return (double)*(const dht_ts *)p;
    case 'd':
      return *(const double *)p;
    case 'b':
      return *(const bool *)p;
    case 'p':
      return (double)strlen((const char *)p);
    case 'D': {
      const sim_dist *d = p;
      return d->kind == SIM_DIST_NONE ? -1 : sim_dist_median(d);
    }
    }
  }
  fail_msg("no field for key %s", key);
  return 0;
}

static void test_set_valid(void **state) {
  (void)state;
  const struct { /* not static: exp(mean=1h) has a computed median */
    const char *key, *value;
    double want;
  } cases[] = {
      {"nodes", "2", 2},
      {"nodes", "2000000", 2000000},
      {"nodes", "10000", 10000},
      {"seed", "0", 0},
      {"seed", "18446744073709551615", 18446744073709551615.0},
      {"seed", "0xff", 255},
      {"out", "runs/a", 6},
      {"rtt-file", "../shared/data/internet-rtt/country_rtt_stat.csv.gz", 51},
      {"scenario", "x.scn", 5},
      {"duration", "30m", 1800000},
      {"duration", "1", 1},
      {"duration", "1.5h", 5400000},
      {"join", "0", 0},
      {"join", "90s", 90000},
      {"bootstrap-peers", "1", 1},
      {"bootstrap-peers", "100", 100},
      {"synth-base", "0", 0},
      {"synth-base", "2.5ms", 2.5},
      {"synth-base", "0.2s", 200},
      {"synth-per-unit", "10000", 10000},
      {"jitter", "0", 0},
      {"jitter", "1", 1},
      {"jitter", "25%", 0.25},
      {"loss", "0.5%", 0.005},
      {"loss", "0.005", 0.005},
      {"loss", "100%", 1},
      {"bandwidth", "0", 0},
      {"bandwidth", "1Mbit", 1e6},
      {"bandwidth", "500kbit", 5e5},
      {"bandwidth", "10Mbit", 1e7},
      {"bandwidth", "10mbit", 1e7},
      {"bandwidth", "2.5Mbit/s", 2.5e6},
      {"bandwidth", "1Gbps", 1e9},
      {"bandwidth", "64000", 64000},
      {"queue", "64KiB", 65536},
      {"queue", "1MiB", 1048576},
      {"queue", "100KB", 100000},
      {"queue", "1232", 1232},
      {"queue", "1GiB", 1073741824.0},
      {"session", "weibull(k=0.5,median=30m)", 1800000},
      {"session", "exp(mean=1h)", 3600000 * log(2.0)},
      {"session", "none", -1},
      {"downtime", "pareto(alpha=2,min=10m)", 600000 * sqrt(2.0)},
      {"vanish", "0", 0},
      {"vanish", "100%", 1},
      {"lookups", "10/s", 10},
      {"lookups", "600/min", 10},
      {"lookups", "36000/h", 10},
      {"lookups", "2.5", 2.5},
      {"lookups", "0", 0},
      {"gets", "1/s", 1},
      {"puts", "60/min", 1},
      {"max-lookups", "0", 0},
      {"max-lookups", "5000", 5000},
      {"crypto", "off", 0},
      {"crypto", "on", 1},
      {"k", "1", 1},
      {"k", "32", 32},
      {"sample", "1s", 1000},
      {"progress", "on", 1},
      {"progress", "no", 0},
      {"quiet", "yes", 1},
      {"quiet", "off", 0},
      {"nat-timeout", "30s", 30000},
      {"nat-timeout", "1s", 1000},
      {"nat-timeout", "1d", 86400000},
      {"nat-hairpin", "on", 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sim_config c;
    char err[512] = "";
    sim_config_default(&c);
    if (sim_config_set(&c, cases[i].key, cases[i].value, "--x", err, sizeof err) != 0)
      fail_msg("%s = %s: %s", cases[i].key, cases[i].value, err);
    double got = field(&c, cases[i].key);
    if (fabs(got - cases[i].want) > 1e-9 * fmax(1, fabs(cases[i].want)))
      fail_msg("%s = %s: got %.17g, want %.17g", cases[i].key, cases[i].value, got, cases[i].want);
  }
  /* the seed is exact, beyond a double's 53 bits */
  sim_config c;
  char err[256];
  sim_config_default(&c);
  assert_int_equal(sim_config_set(&c, "seed", "18446744073709551615", "--seed", err, sizeof err),
                   0);
  assert_true(c.seed == UINT64_MAX);
  assert_int_equal(sim_config_set(&c, "seed", "9007199254740993", "--seed", err, sizeof err), 0);
  assert_true(c.seed == 9007199254740993ull);
}

static void test_set_invalid(void **state) {
  (void)state;
  static const struct {
    const char *key, *value, *why; /* why: what follows "--x: KEY: " */
  } cases[] = {
      {"nodes", "1", "'1' is not a whole number from 2 to 2000000"},
      {"nodes", "2000001", "'2000001' is not a whole number from 2 to 2000000"},
      {"nodes", "-5", "'-5' is not a whole number from 2 to 2000000"},
      {"nodes", "10k", "'10k' is not a whole number from 2 to 2000000"},
      {"nodes", "", "empty value"},
      {"seed", "-1", "'-1' is not a whole number from 0 to 18446744073709551615 (or 0x hex)"},
      {"seed", "18446744073709551616", NULL},
      {"seed", "0x", NULL},
      {"seed", "1.5", NULL},
      {"out", "", "empty value"},
      {"duration", "0", "'0' is not a duration from 1ms to 365d (like 250ms, 30s, 10m, 2h)"},
      {"duration", "10 minutes", NULL},
      {"duration", "366d", NULL},
      {"join", "-1s", "'-1s' is not a duration from 0 to 365d (like 250ms, 30s, 10m, 2h)"},
      {"bootstrap-peers", "0", "'0' is not a whole number from 1 to 100"},
      {"synth-base", "-1", "'-1' is not a time from 0 to 10000 ms (like 10 or 2.5ms)"},
      {"synth-base", "10001", NULL},
      {"synth-base", "5m", NULL},
      {"synth-per-unit", "nan", NULL},
      {"jitter", "1.5", "'1.5' is not a fraction from 0 to 1"},
      {"loss", "150%", "'150%' is not a fraction from 0 to 1"},
      {"loss", "-0.1", NULL},
      {"loss", "inf", NULL},
      {"loss", "0.5 %%", NULL},
      {"loss", "half", NULL},
      {"bandwidth", "10MB",
       "'10MB' is not a bandwidth: 0 (unlimited) or 1kbit to 1000Gbit (like 500kbit, 10Mbit, "
       "or plain bits/s)"},
      {"bandwidth", "999", NULL},
      {"bandwidth", "2Tbit", NULL},
      {"bandwidth", "1.5", NULL},
      {"bandwidth", "10M", NULL},
      {"queue", "1000", "'1000' is not a size from 1232 bytes to 1GiB (like 64KiB)"},
      {"queue", "2GiB", NULL},
      {"queue", "64 KiB extra", NULL},
      {"queue", "1.5", NULL},
      {"session", "weibull(k=0.5)",
       "'weibull(k=0.5)' is not a distribution: weibull: missing scale (or median)"},
      {"session", "lognormal(mu=1)", NULL},
      {"downtime", "exp(mean=-1)", NULL},
      {"vanish", "2", "'2' is not a fraction from 0 to 1"},
      {"lookups", "10/day", "'10/day' is not a rate from 0 to 1000000/s (like 10/s or 600/min)"},
      {"lookups", "-1", NULL},
      {"lookups", "2000000", NULL},
      {"gets", "x", NULL},
      {"puts", "1/", NULL},
      {"max-lookups", "-1", NULL},
      {"crypto", "maybe", "'maybe' is not on or off"},
      {"k", "0", "'0' is not a whole number from 1 to 32"},
      {"k", "33", NULL},
      {"sample", "0", NULL},
      {"progress", "2", NULL},
      {"quiet", "loud", NULL},
      {"nat-timeout", "500ms",
       "'500ms' is not a duration from 1s to 1d (like 250ms, 30s, 10m, 2h)"},
      {"nat-timeout", "2d", NULL},
      {"nat-hairpin", "sometimes", "'sometimes' is not on or off"},
      {"nat-mix", "home:10",
       "unknown type 'home' (public, full, restricted, port, symmetric, upnp)"},
      {"nat-mix", "public", "public: expected public:WEIGHT with a number of 0 or more"},
      {"nat-mix", "port:-1", "port: expected port:WEIGHT with a number of 0 or more"},
      {"nat-mix", "port:x", NULL},
      {"nat-mix", "port:1e999", NULL},
      {"nat-mix", "port:10 %", NULL},
      {"nat-mix", "port:1,port:2", "port given twice"},
      {"nat-mix", "public:0,port:0",
       "'public:0,port:0' has no type with a weight above 0 (like "
       "public:70,port:30)"},
      {"nat-mix", "port:1,,full:1",
       "an empty item (expected type:weight pairs separated by commas)"},
      {"nat-mix", "port:1,", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sim_config c, before;
    char err[512] = "", want[512];
    sim_config_default(&c);
    memcpy(&before, &c, sizeof c);
    if (sim_config_set(&c, cases[i].key, cases[i].value, "--x", err, sizeof err) == 0)
      fail_msg("%s = '%s' was accepted", cases[i].key, cases[i].value);
    /* always "WHERE: KEY: ...", the whole message when the case gives it */
    snprintf(want, sizeof want, "--x: %s: ", cases[i].key);
    if (strncmp(err, want, strlen(want)) != 0)
      fail_msg("%s = '%s': error '%s' does not start with '%s'", cases[i].key, cases[i].value, err,
               want);
    if (cases[i].why) {
      snprintf(want, sizeof want, "--x: %s: %s", cases[i].key, cases[i].why);
      assert_string_equal(err, want);
    }
    if (memcmp(&before, &c, sizeof c) != 0)
      fail_msg("%s = '%s': a rejected value changed the config", cases[i].key, cases[i].value);
  }
}

/* nat-mix: weights become fractions of the hosts; blanks are fine; types
 * left out get none */
static void test_nat_mix_key(void **state) {
  (void)state;
  sim_config c;
  char err[512] = "";
  sim_config_default(&c);
  assert_int_equal(sim_config_set(&c, "nat-mix", "public:30,upnp:10,port:40,symmetric:15,full:5",
                                  "--nat-mix", err, sizeof err),
                   0);
  static const double want[SIM_NAT_TYPES] = {0.30, 0.05, 0, 0.40, 0.15, 0.10};
  for (int t = 0; t < SIM_NAT_TYPES; t++)
    if (fabs(c.nat_mix[t] - want[t]) > 1e-12)
      fail_msg("%s: %g, want %g", sim_nat_type_name(t), c.nat_mix[t], want[t]);
  assert_int_equal(sim_config_check(&c, err, sizeof err), 0);
  assert_int_equal(
      sim_config_set(&c, "nat-mix", " symmetric : 3 , restricted:1", "f:1", err, sizeof err), 0);
  assert_true(c.nat_mix[SIM_NAT_PUBLIC] == 0);
  assert_true(c.nat_mix[SIM_NAT_SYMMETRIC] == 0.75);
  assert_true(c.nat_mix[SIM_NAT_RESTRICTED] == 0.25);
  assert_string_equal(sim_nat_type_name(SIM_NAT_UPNP), "upnp");
  assert_string_equal(sim_nat_type_name(SIM_NAT_TYPES), "?");
  assert_string_equal(sim_nat_type_name(-1), "?");
  /* a mix set by hand must still be one */
  c.nat_mix[SIM_NAT_FULL] = 0.5;
  assert_int_equal(sim_config_check(&c, err, sizeof err), -1);
  assert_string_equal(err, "nat-mix: the fractions of the types must be 0 or more and sum to 1");
  sim_config_default(&c);
  c.nat_mix[SIM_NAT_PUBLIC] = 1.5;
  c.nat_mix[SIM_NAT_PORT] = -0.5;
  assert_int_equal(sim_config_check(&c, err, sizeof err), -1);
  sim_config_default(&c);
  c.nat_timeout_ms = 0;
  assert_int_equal(sim_config_check(&c, err, sizeof err), -1);
}

static void test_unknown_key(void **state) {
  (void)state;
  sim_config c;
  char err[256];
  sim_config_default(&c);
  assert_int_equal(sim_config_set(&c, "lookup-rate", "10", "--lookup-rate", err, sizeof err), -1);
  assert_string_equal(err,
                      "--lookup-rate: unknown key 'lookup-rate' (roost-sim --help lists them)");
  assert_int_equal(sim_config_set(&c, "", "1", "--", err, sizeof err), -1);
}

/* ---- scenario files ---------------------------------------------------------- */

static void test_scenario_load(void **state) {
  (void)state;
  char path[PATH_MAX];
  write_file("ok.scn",
             "# a full scenario\n"
             "\n"
             "nodes = 500\n"
             "   seed=42   \n"
             "session = weibull(k=0.5, median=30m)   # inline comment\n"
             "loss = 1%\r\n"
             "\tduration = 20m\n"
             "rtt-file = data/a#b.csv\n"
             "at 5m partition 50%\n"
             "at 5m lookups 100\n"
             "at\t6m   leave 0.1\n"
             "at 10m heal   # back together\n"
             "at 11m join 20\n",
             path, sizeof path);
  sim_config c;
  char err[512] = "";
  sim_config_default(&c);
  if (sim_scenario_load(&c, path, err, sizeof err) != 0)
    fail_msg("%s", err);
  assert_int_equal(c.nodes, 500);
  assert_int_equal(c.seed, 42);
  assert_int_equal(c.session.kind, SIM_DIST_WEIBULL);
  assert_true(fabs(sim_dist_median(&c.session) - 1800000) < 1e-3);
  assert_true(c.loss == 0.01);
  assert_int_equal(c.duration_ms, 1200000);
  assert_string_equal(c.rtt_file, "data/a#b.csv");
  assert_string_equal(c.scenario_file, path);
  assert_int_equal(c.nscript, 5);
  static const struct {
    dht_ts at;
    int action;
    double arg;
  } want[] = {{300000, SIM_ACT_PARTITION, 0.5},
              {300000, SIM_ACT_LOOKUPS, 100},
              {360000, SIM_ACT_LEAVE, 0.1},
              {600000, SIM_ACT_HEAL, 0},
              {660000, SIM_ACT_JOIN, 20}};
  for (int i = 0; i < 5; i++) {
    assert_int_equal(c.script[i].at, want[i].at);
    assert_int_equal(c.script[i].action, want[i].action);
    assert_true(c.script[i].arg == want[i].arg);
  }
  assert_int_equal(sim_config_check(&c, err, sizeof err), 0);

  /* flags after the file override it (sim_main.c's order) */
  assert_int_equal(sim_config_set(&c, "nodes", "700", "--nodes", err, sizeof err), 0);
  assert_int_equal(c.nodes, 700);
  assert_int_equal(c.seed, 42);

  /* an empty file changes nothing but the scenario name */
  write_file("empty.scn", "", path, sizeof path);
  sim_config d, e;
  sim_config_default(&d);
  memcpy(&e, &d, sizeof d);
  assert_int_equal(sim_scenario_load(&d, path, err, sizeof err), 0);
  snprintf(e.scenario_file, sizeof e.scenario_file, "%s", path);
  assert_memory_equal(&d, &e, sizeof d);
}

static void test_scenario_errors(void **state) {
  (void)state;
  static const struct {
    const char *text, *err; /* err: what follows "PATH:" */
  } cases[] = {
      {"nodes = 10\n\n# c\nloss = 150%\n", "4: loss: '150%' is not a fraction from 0 to 1"},
      {"lookup-rate = 10\n", "1: unknown key 'lookup-rate' (roost-sim --help lists them)"},
      {"nodes 10\n", "1: expected 'key = value' or 'at TIME ACTION [ARG]', got 'nodes 10'"},
      {"nodes =\n", "1: nodes: empty value"},
      {"nodes = # nothing\n", "1: nodes: empty value"},
      {"scenario = other.scn\n",
       "1: scenario: only as a flag (--scenario FILE), not inside a scenario file"},
      {"at 5m split 0.5\n", "1: unknown action 'split' (partition, heal, leave, join, lookups)"},
      {"at 5m\n", "1: expected 'at TIME ACTION [ARG]'"},
      {"at soon heal\n", "1: at: 'soon' is not a time (like 90s, 5m, 1h)"},
      {"at -5m heal\n", "1: at: '-5m' is not a time (like 90s, 5m, 1h)"},
      {"at 5m partition\n", "1: partition: needs a FRACTION of hosts to cut off (like 50%)"},
      {"at 5m partition 150%\n", "1: partition: '150%' is not a fraction above 0 and below 1"},
      {"at 5m partition 1\n", "1: partition: '1' is not a fraction above 0 and below 1"},
      {"at 5m partition 0.5 now\n", "1: partition: unexpected 'now'"},
      {"at 5m heal 1\n", "1: heal: unexpected '1'"},
      {"at 5m leave 0\n", "1: leave: '0' is not a fraction above 0 and at most 1"},
      {"at 5m leave\n", "1: leave: needs a FRACTION of online hosts (like 10%)"},
      {"at 5m join 0\n", "1: join: '0' is not a whole number from 1 to 2000000"},
      {"at 5m join 2.5\n", "1: join: '2.5' is not a whole number from 1 to 2000000"},
      {"at 5m lookups many\n", "1: lookups: 'many' is not a whole number from 1 to 10000000"},
      {"at 10m heal\nat 5m partition 0.5\n",
       "2: at 5m: script lines must be in time order (the line before is at 10m)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char path[PATH_MAX], want[PATH_MAX + 256], err[PATH_MAX + 256] = "";
    write_file("bad.scn", cases[i].text, path, sizeof path);
    sim_config c;
    sim_config_default(&c);
    if (sim_scenario_load(&c, path, err, sizeof err) == 0)
      fail_msg("case %zu was accepted: %s", i, cases[i].text);
    snprintf(want, sizeof want, "%s:%s", path, cases[i].err);
    assert_string_equal(err, want);
  }

  /* the script limit: SIM_MAX_SCRIPT lines load, one more does not */
  char text[8192] = "", path[PATH_MAX], err[PATH_MAX + 256], want[PATH_MAX + 256];
  for (int i = 0; i < SIM_MAX_SCRIPT; i++)
    snprintf(text + strlen(text), sizeof text - strlen(text), "at %ds lookups 1\n", i);
  write_file("limit.scn", text, path, sizeof path);
  sim_config c;
  sim_config_default(&c);
  assert_int_equal(sim_scenario_load(&c, path, err, sizeof err), 0);
  assert_int_equal(c.nscript, SIM_MAX_SCRIPT);
  snprintf(text + strlen(text), sizeof text - strlen(text), "at 1h lookups 1\n");
  write_file("limit.scn", text, path, sizeof path);
  sim_config_default(&c);
  assert_int_equal(sim_scenario_load(&c, path, err, sizeof err), -1);
  snprintf(want, sizeof want, "%s:%d: more than %d script lines", path, SIM_MAX_SCRIPT + 1,
           SIM_MAX_SCRIPT);
  assert_string_equal(err, want);

  /* a line too long, and a file that is not there */
  char *longl = malloc(6000);
  assert_non_null(longl);
  memset(longl, 'x', 5998);
  longl[5998] = '\n';
  longl[5999] = 0;
  write_file("long.scn", longl, path, sizeof path);
  free(longl);
  sim_config_default(&c);
  assert_int_equal(sim_scenario_load(&c, path, err, sizeof err), -1);
  snprintf(want, sizeof want, "%s:1: line longer than", path);
  assert_memory_equal(err, want, strlen(want));
  snprintf(path, sizeof path, "%s/missing.scn", tmpdir);
  assert_int_equal(sim_scenario_load(&c, path, err, sizeof err), -1);
  snprintf(want, sizeof want, "cannot read scenario file %s: No such file or directory", path);
  assert_string_equal(err, want);
}

static void test_check(void **state) {
  (void)state;
  sim_config c;
  char err[512];
  /* the end of the run is join + duration: a script line there is fine */
  sim_config_default(&c);
  c.script[0] = (sim_script){720000, SIM_ACT_LOOKUPS, 10};
  c.nscript = 1;
  assert_int_equal(sim_config_check(&c, err, sizeof err), 0);
  c.script[0].at = 720001;
  assert_int_equal(sim_config_check(&c, err, sizeof err), -1);
  assert_string_equal(err, "at 720001ms lookups: after the end of the run at 12m (join 2m + "
                           "duration 10m)");

  sim_config_default(&c);
  c.nodes = 1;
  assert_int_equal(sim_config_check(&c, err, sizeof err), -1);
  assert_non_null(strstr(err, "nodes"));

  sim_config_default(&c);
  c.script[0] = (sim_script){60000, SIM_ACT_HEAL, 0};
  c.nscript = 1;
  assert_int_equal(sim_config_check(&c, err, sizeof err), -1);
  assert_string_equal(err, "at 1m heal: no partition before it to heal");

  sim_config_default(&c);
  c.script[0] = (sim_script){60000, SIM_ACT_PARTITION, 0.5};
  c.script[1] = (sim_script){120000, SIM_ACT_PARTITION, 0.2};
  c.nscript = 2;
  assert_int_equal(sim_config_check(&c, err, sizeof err), 0); /* the second replaces the first */
  c.script[1].action = SIM_ACT_HEAL;
  assert_int_equal(sim_config_check(&c, err, sizeof err), 0);
  c.script[2] = (sim_script){150000, SIM_ACT_HEAL, 0};
  c.nscript = 3;
  assert_int_equal(sim_config_check(&c, err, sizeof err), -1);
  assert_string_equal(err, "at 150s heal: no partition before it to heal");
  c.nscript = 2;
  c.script[1].at = 30000;
  assert_int_equal(sim_config_check(&c, err, sizeof err), -1);
  assert_non_null(strstr(err, "time order"));

  sim_config_default(&c);
  c.nodes = 1999990;
  c.script[0] = (sim_script){60000, SIM_ACT_JOIN, 11};
  c.nscript = 1;
  assert_int_equal(sim_config_check(&c, err, sizeof err), -1);
  assert_string_equal(err, "nodes 1999990 plus 11 joined by the script exceed 2000000 hosts");
  c.script[0].arg = 10;
  assert_int_equal(sim_config_check(&c, err, sizeof err), 0);

  sim_config_default(&c);
  c.max_lookups = 100;
  c.lookup_rate = 0;
  assert_int_equal(sim_config_check(&c, err, sizeof err), -1);
  assert_non_null(strstr(err, "max-lookups"));
  c.script[0] = (sim_script){60000, SIM_ACT_LOOKUPS, 500};
  c.nscript = 1;
  assert_int_equal(sim_config_check(&c, err, sizeof err), 0);

  sim_config_default(&c);
  c.out_dir[0] = 0;
  assert_int_equal(sim_config_check(&c, err, sizeof err), -1);
  sim_config_default(&c);
  c.sample_ms = 0;
  assert_int_equal(sim_config_check(&c, err, sizeof err), -1);
  sim_config_default(&c);
  c.k = 33;
  assert_int_equal(sim_config_check(&c, err, sizeof err), -1);
  sim_config_default(&c);
  c.script[0] = (sim_script){60000, 99, 0};
  c.nscript = 1;
  assert_int_equal(sim_config_check(&c, err, sizeof err), -1);
}

/* ---- JSON and help ----------------------------------------------------------- */

static char *config_json(const sim_config *c) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  fputs("{\n", f);
  sim_config_json(c, f);
  fputs("\n}\n", f);
  assert_int_equal(fclose(f), 0);
  return buf;
}

static void test_json(void **state) {
  (void)state;
  sim_config c;
  char err[256];
  sim_config_default(&c);
  char *j = config_json(&c);
  static const char *const want[] = {
      "{\n    \"nodes\": 1000,\n",
      "\"seed\": 1,",
      "\"rtt_file\": null,",
      "\"scenario\": null,",
      "\"duration_ms\": 600000,",
      "\"join_ms\": 120000,",
      "\"bootstrap_peers\": 3,",
      "\"synth_base_ms\": 10,",
      "\"synth_per_unit_ms\": 190,",
      "\"jitter\": 0.1,",
      "\"loss\": 0,",
      "\"bandwidth_bps\": 0,",
      "\"queue_bytes\": 65536,",
      "\"session\": {\"kind\": \"none\"},",
      "\"downtime\": {\"kind\": \"exp\", \"mean_ms\": 865617.0245, \"median_ms\": 600000},",
      "\"vanish\": 0.5,",
      "\"lookups_per_s\": 10,",
      "\"gets_per_s\": 0,",
      "\"puts_per_s\": 0,",
      "\"max_lookups\": 0,",
      "\"crypto\": \"on\",",
      "\"k\": 20,",
      "\"sample_ms\": 10000,",
      "\"nat_mix\": {\"public\": 1, \"full\": 0, \"restricted\": 0, \"port\": 0, "
      "\"symmetric\": 0, \"upnp\": 0},",
      "\"nat_timeout_ms\": 120000,",
      "\"nat_hairpin\": \"off\",",
      "\"latency_model\": \"synthetic\",",
      "\"script\": []\n}\n",
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (!strstr(j, want[i]))
      fail_msg("'%s' not in:\n%s", want[i], j);
  /* measured or local settings are not part of the record */
  assert_null(strstr(j, "progress"));
  assert_null(strstr(j, "quiet"));
  assert_null(strstr(j, "sim-out"));
  free(j);

  assert_int_equal(sim_config_set(&c, "session", "weibull(k=0.5,scale=1h)", "--s", err, 256), 0);
  assert_int_equal(sim_config_set(&c, "crypto", "off", "--s", err, 256), 0);
  assert_int_equal(sim_config_set(&c, "nat-mix", "public:1,port:2,full:1", "--s", err, 256), 0);
  assert_int_equal(sim_config_set(&c, "rtt-file", "a\"b\\c.csv", "--s", err, 256), 0);
  c.script[0] = (sim_script){300000, SIM_ACT_PARTITION, 0.5};
  c.script[1] = (sim_script){600000, SIM_ACT_HEAL, 0};
  c.nscript = 2;
  j = config_json(&c);
  static const char *const want2[] = {
      "\"session\": {\"kind\": \"weibull\", \"k\": 0.5, \"scale_ms\": 3600000, \"median_ms\": "
      "1729630.85}",
      "\"crypto\": \"off\"",
      "\"nat_mix\": {\"public\": 0.25, \"full\": 0.25, \"restricted\": 0, \"port\": 0.5, "
      "\"symmetric\": 0, \"upnp\": 0}",
      "\"rtt_file\": \"a\\\"b\\\\c.csv\"",
      "\"latency_model\": \"rtt-file\"",
      "\"script\": [{\"at_ms\": 300000, \"action\": \"partition\", \"arg\": 0.5}, {\"at_ms\": "
      "600000, \"action\": \"heal\"}]",
  };
  for (size_t i = 0; i < sizeof want2 / sizeof want2[0]; i++)
    if (!strstr(j, want2[i]))
      fail_msg("'%s' not in:\n%s", want2[i], j);
  free(j);
}

static void test_help(void **state) {
  (void)state;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  sim_config_help(f);
  assert_int_equal(fclose(f), 0);
  assert_non_null(strstr(buf, "usage: roost-sim --nodes N --seed S --out DIR [--rtt-file FILE] "
                              "[--scenario FILE]\n"));
  static const char *const keys[] = {"nodes",       "seed",           "out",     "rtt-file",
                                     "scenario",    "duration",       "join",    "bootstrap-peers",
                                     "synth-base",  "synth-per-unit", "jitter",  "loss",
                                     "bandwidth",   "queue",          "session", "downtime",
                                     "vanish",      "lookups",        "gets",    "puts",
                                     "max-lookups", "crypto",         "k",       "sample",
                                     "progress",    "quiet"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    char flag[64];
    snprintf(flag, sizeof flag, "  --%s ", keys[i]);
    if (!strstr(buf, flag))
      fail_msg("help lacks %s", flag);
    /* and every key in the help is one sim_config_set knows */
    sim_config c;
    char err[256];
    sim_config_default(&c);
    sim_config_set(&c, keys[i], "", "--x", err, sizeof err);
    assert_null(strstr(err, "unknown key"));
  }
  assert_non_null(strstr(buf, "at TIME partition FRACTION"));
  free(buf);
}

/* ---- output -------------------------------------------------------------- */

/* a small result: 3 lookups (one unfinished), 1 get, 1 put, 1 bootstrap;
 * 3 samples; 4 hosts */
static void make_result(sim_result *r, sim_op *ops, sim_sample *samples, uint64_t *tx) {
  memset(r, 0, sizeof *r);
  const sim_op o[] = {
      {SIM_OP_BOOTSTRAP, 1, 0, 3, 12, 0, 0, 400, 0},
      {SIM_OP_LOOKUP, 1, 20, 3, 30, 1, 1000, 1250, 0},
      {SIM_OP_LOOKUP, 0, 18, 5, 50, 2, 2000, 2600, 0},
      {SIM_OP_LOOKUP, 0, 0, 1, 4, 3, 5000, -1, 0},
      {SIM_OP_GET, 1, 0, 2, 20, 0, 3000, 3100, 0},
      {SIM_OP_PUT, 0, 0, 4, 40, 2, 3500, 33500, DHT_ERR_TIMEOUT},
  };
  memcpy(ops, o, sizeof o);
  r->ops = ops;
  r->nops = r->aops = 6;
  const sim_sample s[] = {
      {10000, 4, 3, 2, 100, 1, 0, 0, false},
      {20000, 4, 0, 0, 50, 0, 0, 0, false},
      {25000, 3, 2, 1, 20, 2, 0, 0, false},
  };
  memcpy(samples, s, sizeof s);
  r->samples = samples;
  r->nsamples = r->asamples = 3;
  tx[0] = 10, tx[1] = 200, tx[2] = 0, tx[3] = 55;
  r->tx_per_host = tx;
  r->nhosts = 4;
  r->events = 12345;
  r->packets = 170;
  r->lost = 3;
  r->wall_s = 0.5;
  r->peak_rss_kb = 2048;
  for (int i = 0; i < 32; i++)
    r->trace_hash[i] = (uint8_t)(0xa0 + i);
  r->crypto = true;
  r->nat.hosts[SIM_NAT_PUBLIC] = 3; /* what a run's boxes report, as they report it */
  r->nat.hosts[SIM_NAT_FULL] = 1;
  r->nat.flows = 7;
  r->nat.filtered = 5;
  r->nat.peak_bytes = 4096;
}

static const char hash_hex[] = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf";

static void test_out_write(void **state) {
  (void)state;
  char *oldpath = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
  setenv("PATH", "", 1); /* no gnuplot: no plots */
  sim_config c;
  sim_result r;
  sim_op ops[6];
  sim_sample samples[3];
  uint64_t tx[4];
  char err[512] = "";
  sim_config_default(&c);
  c.nodes = 4;
  c.seed = 77;
  snprintf(c.out_dir, sizeof c.out_dir, "%s/run/a/b", tmpdir); /* mkdir -p */
  make_result(&r, ops, samples, tx);
  if (sim_out_write(&c, &r, err, sizeof err) != 0)
    fail_msg("%s", err);

  char *m = slurp(c.out_dir, "manifest.json", NULL);
  assert_non_null(m);
  static const char *const mwant[] = {
      "{\n  \"roost_sim_version\": \"" SIM_VERSION "\",\n",
      "\"seed\": 77,",
      "\"crypto\": \"on\",",
      "\"config\": {\n    \"nodes\": 4,",
      "\"trace_hash\": \"a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf\"",
      "\"wall_s\": 0.5,",
      "\"events\": 12345\n}\n",
  };
  for (size_t i = 0; i < sizeof mwant / sizeof mwant[0]; i++)
    if (!strstr(m, mwant[i]))
      fail_msg("'%s' not in manifest:\n%s", mwant[i], m);
  assert_null(strstr(m, "\"note\""));

  char *ops_csv = slurp(c.out_dir, "ops.csv", NULL);
  assert_non_null(ops_csv);
  assert_int_equal(count_lines(ops_csv), 7);
  assert_string_equal(ops_csv, "kind,host,start_ms,end_ms,latency_ms,status,ok,overlap,rounds,"
                               "messages\n"
                               "bootstrap,0,0,400,400,0,1,0,3,12\n"
                               "lookup,1,1000,1250,250,0,1,20,3,30\n"
                               "lookup,2,2000,2600,600,0,0,18,5,50\n"
                               "lookup,3,5000,,,0,0,0,1,4\n"
                               "get,0,3000,3100,100,0,1,0,2,20\n"
                               "put,2,3500,33500,30000,-9,0,0,4,40\n");

  char *series = slurp(c.out_dir, "series.csv", NULL);
  assert_non_null(series);
  assert_string_equal(series,
                      "t_s,online,ops_done,ops_ok,success_rate,packets,dropped,packets_per_s\n"
                      "10.000,4,3,2,0.666667,100,1,10.000\n"
                      "20.000,4,0,0,,50,0,5.000\n"
                      "25.000,3,2,1,0.500000,20,2,4.000\n");

  char *hosts = slurp(c.out_dir, "hosts.csv", NULL);
  assert_non_null(hosts);
  assert_string_equal(hosts, "host,tx_packets\n0,10\n1,200\n2,0\n3,55\n");

  char *sum = slurp(c.out_dir, "summary.json", NULL);
  assert_non_null(sum);
  static const char *const swant[] = {
      "\"crypto\": \"on\",",
      "\"lookup\": {\n      \"count\": 3,\n      \"finished\": 2,\n      \"unfinished\": 1,\n"
      "      \"ok\": 1,\n      \"success_rate\": 0.5,\n"
      "      \"latency_ms\": {\"p50\": 250, \"p90\": 600, \"p99\": 600, \"mean\": 425, "
      "\"max\": 600},\n"
      "      \"rounds\": {\"mean\": 4, \"p50\": 3, \"max\": 5},\n"
      "      \"messages\": {\"mean\": 40, \"p50\": 30, \"p95\": 50},\n"
      "      \"overlap\": {\"mean\": 19}\n    },",
      "\"get\": {\n      \"count\": 1,\n      \"finished\": 1,",
      ("\"put\": {\n      \"count\": 1,\n      \"finished\": 1,\n      \"unfinished\": 0,\n"
       "      \"ok\": 0,\n      \"success_rate\": 0,"),
      "\"bootstrap\": {\n      \"count\": 1,",
      "\"events\": 12345,",
      "\"packets\": 170,",
      "\"lost\": 3,",
      "\"events_per_s\": 24690,",
      "\"wall_s\": 0.5,",
      "\"peak_rss_kb\": 2048,",
      "\"nodes\": 4,",
      "\"hosts\": 4,",
      "\"bytes_per_node\": 524288,",
      "\"trace_hash\": \"a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf\"",
      ("\"nat\": {\n    \"mix\": {\"public\": 1, \"full\": 0, \"restricted\": 0, \"port\": 0, "
       "\"symmetric\": 0, \"upnp\": 0},\n    \"hosts\": {\"public\": 3, \"full\": 1, "
       "\"restricted\": 0, \"port\": 0, \"symmetric\": 0, \"upnp\": 0},\n"
       "    \"timeout_ms\": 120000,\n    \"hairpin\": \"off\",\n    \"flows\": 7,\n"
       "    \"filtered\": 5,\n    \"primed\": 0,\n    \"hairpinned\": 0,\n"
       "    \"no_hairpin\": 0,\n    \"table_full\": 0,\n    \"peak_bytes\": 4096\n  },"),
  };
  for (size_t i = 0; i < sizeof swant / sizeof swant[0]; i++)
    if (!strstr(sum, swant[i]))
      fail_msg("'%s' not in summary:\n%s", swant[i], sum);
  assert_non_null(strstr(sum, hash_hex));
  /* braces balance: a cheap check that the JSON is well formed */
  int depth = 0;
  for (const char *p = sum; *p; p++) {
    depth += (*p == '{') - (*p == '}');
    assert_true(depth >= 0);
  }
  assert_int_equal(depth, 0);

  /* no gnuplot on PATH: no plots, no scripts */
  assert_false(exists(c.out_dir, "latency_cdf.gp"));
  assert_false(exists(c.out_dir, "latency_cdf.png"));

  /* the same result into another directory: the same bytes */
  char first[PATH_MAX];
  snprintf(first, sizeof first, "%s", c.out_dir);
  snprintf(c.out_dir, sizeof c.out_dir, "%s/run2", tmpdir);
  assert_int_equal(sim_out_write(&c, &r, err, sizeof err), 0);
  static const char *const files[] = {"manifest.json", "ops.csv", "series.csv", "hosts.csv",
                                      "summary.json"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    size_t la, lb;
    char *a = slurp(first, files[i], &la), *b = slurp(c.out_dir, files[i], &lb);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    free(a);
    free(b);
  }

  /* crypto off: both reports say so */
  r.crypto = false;
  assert_int_equal(sim_out_write(&c, &r, err, sizeof err), 0);
  free(m);
  free(sum);
  m = slurp(c.out_dir, "manifest.json", NULL);
  sum = slurp(c.out_dir, "summary.json", NULL);
  const char *off = "\"crypto\": \"off\",\n  \"note\": \"datagrams were neither encrypted nor "
                    "authenticated\",";
  assert_non_null(strstr(m, off));
  assert_non_null(strstr(sum, off));

  free(m);
  free(sum);
  free(ops_csv);
  free(series);
  free(hosts);
  if (oldpath) {
    setenv("PATH", oldpath, 1);
    free(oldpath);
  }
}

static void test_out_empty_and_errors(void **state) {
  (void)state;
  setenv("PATH", "", 1);
  sim_config c;
  sim_result r;
  char err[PATH_MAX + 256] = "";
  sim_config_default(&c);
  memset(&r, 0, sizeof r);
  snprintf(c.out_dir, sizeof c.out_dir, "%s/empty/", tmpdir);
  assert_int_equal(sim_out_write(&c, &r, err, sizeof err), 0);
  char *sum = slurp(c.out_dir, "summary.json", NULL), *ops = slurp(c.out_dir, "ops.csv", NULL);
  assert_non_null(sum);
  assert_non_null(ops);
  assert_int_equal(count_lines(ops), 1);
  assert_non_null(strstr(sum, "\"count\": 0,\n      \"finished\": 0,\n      \"unfinished\": 0,\n"
                              "      \"ok\": 0,\n      \"success_rate\": null,\n"
                              "      \"latency_ms\": {\"p50\": null, \"p90\": null, \"p99\": "
                              "null, \"mean\": null, \"max\": null}"));
  assert_non_null(strstr(sum, "\"events_per_s\": null"));
  free(sum);
  free(ops);

  /* a file where a directory should be */
  char path[256];
  write_file("plain", "x", path, sizeof path);
  snprintf(c.out_dir, sizeof c.out_dir, "%s/sub", path);
  assert_int_equal(sim_out_write(&c, &r, err, sizeof err), -1);
  char want[PATH_MAX + 64];
  snprintf(want, sizeof want, "cannot create output directory %s: not a directory", path);
  assert_string_equal(err, want);
  snprintf(c.out_dir, sizeof c.out_dir, "%s", path);
  assert_int_equal(sim_out_write(&c, &r, err, sizeof err), -1);
  assert_string_equal(err, want);
  c.out_dir[0] = 0;
  assert_int_equal(sim_out_write(&c, &r, err, sizeof err), -1);
}

/* with gnuplot installed (not required): PNG and SVG of each plot */
static void test_out_plots(void **state) {
  (void)state;
  static const char *const dirs[] = {"/usr/bin", "/usr/local/bin", "/bin"};
  const char *found = NULL;
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0] && !found; i++) {
    char p[64];
    snprintf(p, sizeof p, "%s/gnuplot", dirs[i]);
    if (access(p, X_OK) == 0)
      found = dirs[i];
  }
  if (!found) {
    skip();
    return;
  }
  char *oldpath = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
  char path[PATH_MAX];
  snprintf(path, sizeof path, "::%s", found); /* empty entries are skipped */
  setenv("PATH", path, 1);
  sim_config c;
  sim_result r;
  sim_op ops[6];
  sim_sample samples[3];
  uint64_t tx[4];
  char err[512] = "";
  sim_config_default(&c);
  c.nodes = 4;
  snprintf(c.out_dir, sizeof c.out_dir, "%s/plots", tmpdir);
  make_result(&r, ops, samples, tx);
  assert_int_equal(sim_out_write(&c, &r, err, sizeof err), 0);
  static const char *const names[] = {"latency_cdf", "rounds_hist", "success_rate", "tx_hist"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    static const char *const ext[] = {"gp", "dat", "png", "svg"};
    for (size_t e = 0; e < 4; e++) {
      char f[64];
      snprintf(f, sizeof f, "%s.%s", names[i], ext[e]);
      if (!exists(c.out_dir, f))
        fail_msg("no %s/%s", c.out_dir, f);
    }
  }
  char *png = slurp(c.out_dir, "latency_cdf.png", NULL);
  assert_memory_equal(png, "\x89PNG", 4);
  free(png);
  char *dat = slurp(c.out_dir, "latency_cdf.dat", NULL);
  assert_string_equal(dat, "# latency_ms fraction_of_finished_lookups\n250 0.500000\n"
                           "600 1.000000\n");
  free(dat);
  dat = slurp(c.out_dir, "rounds_hist.dat", NULL);
  assert_string_equal(dat, "# rounds lookups\n0 0\n1 0\n2 0\n3 1\n4 0\n5 1\n");
  free(dat);
  if (oldpath) {
    setenv("PATH", oldpath, 1);
    free(oldpath);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_set_valid),
      cmocka_unit_test(test_set_invalid),
      cmocka_unit_test(test_unknown_key),
      cmocka_unit_test(test_nat_mix_key),
      cmocka_unit_test(test_scenario_load),
      cmocka_unit_test(test_scenario_errors),
      cmocka_unit_test(test_check),
      cmocka_unit_test(test_json),
      cmocka_unit_test(test_help),
      cmocka_unit_test(test_out_write),
      cmocka_unit_test(test_out_empty_and_errors),
      cmocka_unit_test(test_out_plots),
  };
  return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}

/*
 * test_sim_rtt.c - roost-sim's latency models (sim/sim_rtt.c): loading RTT
 * tables (plain, CRLF and gzip files written here into a mkdtemp folder),
 * per-link draws (bounds, determinism, mean), fallbacks for pairs without
 * data, weighted country choice, a table of malformed files whose errors must
 * name file:line, and the synthetic torus.  If the real RIPE-derived table
 * is present under /work/shared it is loaded and summarised; its absence is
 * not a failure.
 *
 * Random inputs come from a seed that is printed; ROOST_SEED=<n> replays it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "sim.h"

#define REAL_RTT_FILE "/work/shared/data/internet-rtt/country_rtt_stat.csv.gz"
#define HEADER "cty1,cty2,rtt_cnt,rtt_avg,rtt_std,rtt_min,rtt_max\n"

static uint64_t seed;
static char dir[128]; /* the mkdtemp folder */

static const char *path_of(const char *name) {
  static char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return p;
}

static const char *write_file(const char *name, const char *text, size_t len) {
  const char *p = path_of(name);
  FILE *f = fopen(p, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(text, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
  return p;
}

static const char *write_text(const char *name, const char *text) {
  return write_file(name, text, strlen(text));
}

static const char *write_gz(const char *name, const char *text) {
  const char *p = path_of(name);
  gzFile f = gzopen(p, "wb");
  assert_non_null(f);
  assert_int_equal(gzwrite(f, text, (unsigned)strlen(text)), (int)strlen(text));
  assert_int_equal(gzclose(f), Z_OK);
  return p;
}

static int find_country(const sim_rtt *t, const char *code) {
  for (int i = 0; i < sim_rtt_countries(t); i++)
    if (strcmp(sim_rtt_country_name(t, i), code) == 0)
      return i;
  return -1;
}

/* Five countries; two rows with unlocated ends ("Unknown", "None") that the
 * loader skips.  Pairs: US-FR (sd, symmetric bounds), DE-FR (sd 0), DE-DE,
 * JP-US (skewed bounds), DE-US (one sample, empty sd), AT-AT (all zero). */
static const char good_csv[] = HEADER "US,FR,100,100.0,10.0,70.0,130.0\n"
                                      "DE,FR,50,20.0,0,20.0,20.0\n"
                                      "DE,DE,30,5.0,2.0,1.0,12.0\n"
                                      "JP,US,20,150.0,40.0,120.0,400.0\n"
                                      "DE,US,1,90.5,,90.5,90.5\n"
                                      "AT,AT,0,0,0,0,0\n"
                                      "Unknown,US,5,200,1,199,201\n"
                                      "DE,None,7,50,1,49,51\n";
static const double good_global = (100 + 20 + 5 + 150 + 90.5 + 0) / 6.0;
static const double good_same = (5 + 0) / 2.0;

static sim_rtt *load_ok(const char *path) {
  sim_rtt *t = NULL;
  char err[256] = "";
  if (sim_rtt_load(&t, path, err, sizeof err) != 0)
    fail_msg("%s: %s", path, err);
  assert_non_null(t);
  return t;
}

static void test_load_and_link(void **state) {
  (void)state;
  sim_rtt *t = load_ok(write_text("good.csv", good_csv));
  assert_int_equal(sim_rtt_countries(t), 5);
  static const char *const names[] = {"AT", "DE", "FR", "JP", "US"}; /* alphabetical */
  for (int i = 0; i < 5; i++)
    assert_string_equal(sim_rtt_country_name(t, i), names[i]);
  assert_null(sim_rtt_country_name(t, 5));
  assert_null(sim_rtt_country_name(t, -1));
  int at = 0, de = 1, fr = 2, jp = 3, us = 4;

  /* bounds, symmetry and determinism per link seed */
  sim_rng r;
  sim_rng_init(&r, seed, 1);
  double sum = 0;
  enum { LINKS = 20000 };
  int distinct = 0;
  double prev = -1;
  for (int i = 0; i < LINKS; i++) {
    uint64_t ls = sim_rng_u64(&r);
    double v = sim_rtt_link(t, us, fr, ls);
    assert_true(v >= 70.0 && v <= 130.0);
    assert_true(v == sim_rtt_link(t, fr, us, ls));
    assert_true(v == sim_rtt_link(t, us, fr, ls));
    distinct += v != prev;
    prev = v;
    sum += v;
    double w = sim_rtt_link(t, jp, us, ls);
    assert_true(w >= 120.0 && w <= 400.0);
    double d = sim_rtt_link(t, de, de, ls);
    assert_true(d >= 1.0 && d <= 12.0);
  }
  printf("US-FR: mean %.3f ms over %d link seeds (avg 100, sd 10, [70, 130])\n", sum / LINKS,
         LINKS);
  assert_true(fabs(sum / LINKS - 100.0) < 0.5);
  assert_true(distinct > LINKS / 2);

  /* sd 0, and the empty sd of a single sample, give the average */
  assert_true(sim_rtt_link(t, de, fr, 1) == 20.0);
  assert_true(sim_rtt_link(t, us, de, 2) == 90.5);
  /* all-zero pair: floored at 0.1 ms */
  assert_true(sim_rtt_link(t, at, at, 3) == 0.1);
  /* no self pair: the mean over self pairs; no pair: the mean over all */
  assert_true(fabs(sim_rtt_link(t, fr, fr, 4) - good_same) < 1e-9);
  assert_true(fabs(sim_rtt_link(t, jp, jp, 5) - good_same) < 1e-9);
  assert_true(fabs(sim_rtt_link(t, de, jp, 6) - good_global) < 1e-9);
  assert_true(fabs(sim_rtt_link(t, fr, at, 7) - good_global) < 1e-9);
  sim_rtt_free(t);
  sim_rtt_free(NULL);
}

/* Without any self pair, a same-country link without data gets the global
 * mean. */
static void test_fallback_no_self(void **state) {
  (void)state;
  sim_rtt *t = load_ok(write_text("noself.csv", HEADER "AA,BB,3,10,1,8,12\n"
                                                       "BB,CC,3,30,0,30,30\n"));
  int aa = find_country(t, "AA"), cc = find_country(t, "CC");
  assert_true(aa >= 0 && cc >= 0);
  assert_true(fabs(sim_rtt_link(t, aa, aa, 1) - 20.0) < 1e-9);
  assert_true(fabs(sim_rtt_link(t, aa, cc, 1) - 20.0) < 1e-9);
  sim_rtt_free(t);
}

static void test_pick_country(void **state) {
  (void)state;
  sim_rtt *t = load_ok(write_text("pick.csv", good_csv));
  /* weights: sum of rtt_cnt of the pairs involving each country */
  const double w[5] = {0, 50 + 30 + 1, 100 + 50, 20, 100 + 20 + 1};
  const double total = 372;
  enum { N = 100000 };
  int count[5] = {0};
  sim_rng r1, r2;
  sim_rng_init(&r1, seed, 2);
  sim_rng_init(&r2, seed, 2);
  for (int i = 0; i < N; i++) {
    int c = sim_rtt_pick_country(t, &r1);
    assert_true(c >= 0 && c < 5);
    assert_int_equal(c, sim_rtt_pick_country(t, &r2));
    count[c]++;
  }
  assert_int_equal(count[0], 0); /* weight 0 */
  for (int c = 0; c < 5; c++) {
    double got = (double)count[c] / N, want = w[c] / total;
    printf("%s: picked %.4f, weight %.4f\n", sim_rtt_country_name(t, c), got, want);
    assert_true(fabs(got - want) < 0.01);
  }
  sim_rtt_free(t);
}

/* Bounds much narrower than the sd: most links exhaust the redraws and are
 * clamped, yet every value stays inside [min, max]. */
static void test_narrow_bounds(void **state) {
  (void)state;
  sim_rtt *t = load_ok(write_text("narrow.csv", HEADER "AA,BB,9,100,50,99,101\n"
                                                       "CC,CC,9,10,1000,0,20\n"));
  int aa = find_country(t, "AA"), bb = find_country(t, "BB"), cc = find_country(t, "CC");
  int at_edge = 0;
  for (uint64_t ls = 0; ls < 2000; ls++) {
    double v = sim_rtt_link(t, aa, bb, seed + ls);
    assert_true(v >= 99.0 && v <= 101.0);
    at_edge += v == 99.0 || v == 101.0;
    double w = sim_rtt_link(t, cc, cc, seed + ls);
    assert_true(w >= 0.1 && w <= 20.0); /* clamped to 0, then floored */
  }
  assert_true(at_edge > 1000);
  sim_rtt_free(t);
}

/* gzip and CRLF files load to the same table as the plain one. */
static void test_formats_agree(void **state) {
  (void)state;
  char crlf[sizeof good_csv * 2];
  size_t n = 0;
  for (const char *s = good_csv; *s; s++) {
    if (*s == '\n')
      crlf[n++] = '\r';
    crlf[n++] = *s;
  }
  crlf[n] = '\0';
  /* the last line may lack its newline */
  char nonl[sizeof good_csv];
  memcpy(nonl, good_csv, sizeof good_csv);
  nonl[strlen(nonl) - 1] = '\0';

  sim_rtt *plain = load_ok(write_text("plain.csv", good_csv));
  sim_rtt *other[3] = {load_ok(write_gz("gz.csv.gz", good_csv)),
                       load_ok(write_text("crlf.csv", crlf)),
                       load_ok(write_text("nonl.csv", nonl))};
  for (int k = 0; k < 3; k++) {
    assert_int_equal(sim_rtt_countries(other[k]), sim_rtt_countries(plain));
    for (int a = 0; a < 5; a++) {
      assert_string_equal(sim_rtt_country_name(other[k], a), sim_rtt_country_name(plain, a));
      for (int b = 0; b < 5; b++)
        for (uint64_t ls = 0; ls < 20; ls++)
          assert_true(sim_rtt_link(other[k], a, b, seed + ls) ==
                      sim_rtt_link(plain, a, b, seed + ls));
    }
    sim_rtt_free(other[k]);
  }
  sim_rtt_free(plain);
}

static void test_malformed(void **state) {
  (void)state;
  char longline[700];
  snprintf(longline, sizeof longline, HEADER "US,FR,1,10,0,10,10%0600d\n", 0);
  const struct {
    const char *name, *text, *want;
  } bad[] = {
      {"hdr.csv", "cty1,cty2,cnt,avg,std,min,max\nUS,FR,1,1,0,1,1\n", "hdr.csv:1: bad header"},
      {"hdr2.csv", "cty1,cty2,rtt_cnt,rtt_avg,rtt_std,rtt_min,rtt_max \n",
       "hdr2.csv:1: bad header"},
      {"hdr3.csv", "US,FR,1,1,0,1,1\n", "hdr3.csv:1: bad header"},
      {"code1.csv", HEADER "US,FR,1,1,0,1,1\nD1,FR,1,1,0,1,1\n",
       "code1.csv:3: cty1: bad country code 'D1'"},
      {"code2.csv", HEADER "US,usa,1,1,0,1,1\n", "code2.csv:2: cty2: bad country code 'usa'"},
      {"code3.csv", HEADER "de,FR,1,1,0,1,1\n", "code3.csv:2: cty1: bad country code 'de'"},
      {"code4.csv", HEADER ",FR,1,1,0,1,1\n", "code4.csv:2: cty1: bad country code ''"},
      {"neg.csv", HEADER "US,FR,3,-5,0,0,0\n", "neg.csv:2: rtt_avg -5 is negative"},
      {"neg2.csv", HEADER "US,FR,3,5,-1,0,10\n", "neg2.csv:2: rtt_std -1 is negative"},
      {"negcnt.csv", HEADER "US,FR,-3,5,1,0,10\n", "negcnt.csv:2: rtt_cnt: not a count: '-3'"},
      {"fraccnt.csv", HEADER "US,FR,1.5,5,1,0,10\n", "fraccnt.csv:2: rtt_cnt: not a count"},
      {"minavg.csv",
       HEADER "AA,BB,1,1,0,1,1\n"
              "US,FR,3,38.0,1,40.2,50\n",
       "minavg.csv:3: rtt_min 40.2 > rtt_avg 38"},
      {"avgmax.csv", HEADER "US,FR,3,60,1,40,50\n", "avgmax.csv:2: rtt_avg 60 > rtt_max 50"},
      {"dup.csv", HEADER "US,FR,1,1,0,1,1\nDE,DE,1,1,0,1,1\nFR,US,1,1,0,1,1\n",
       "dup.csv:4: duplicate pair FR,US (first at line 2)"},
      {"dupself.csv", HEADER "DE,DE,1,1,0,1,1\nDE,DE,2,1,0,1,1\n",
       "dupself.csv:3: duplicate pair DE,DE (first at line 2)"},
      {"nodata.csv", HEADER, "nodata.csv:1: no data rows"},
      {"unloc.csv", HEADER "None,US,1,1,0,1,1\n", "unloc.csv:2: no data rows (1 with"},
      {"empty.csv", "", "empty.csv:1: empty file"},
      {"fields6.csv", HEADER "US,FR,1,1,0,1\n", "fields6.csv:2: expected 7 fields, got 6"},
      {"fields8.csv", HEADER "US,FR,1,1,0,1,1,1\n", "fields8.csv:2: expected 7 fields, got 8"},
      {"nan.csv", HEADER "US,FR,1,nan,0,1,1\n", "nan.csv:2: rtt_avg: not a finite number: 'nan'"},
      {"inf.csv", HEADER "US,FR,1,1,0,1,inf\n", "inf.csv:2: rtt_max: not a finite number"},
      {"huge.csv", HEADER "US,FR,1,1,0,1,1e999\n", "huge.csv:2: rtt_max: not a finite number"},
      {"junk.csv", HEADER "US,FR,1,1ms,0,1,1\n", "junk.csv:2: rtt_avg: not a finite number: '1ms'"},
      {"space.csv", HEADER "US,FR,1, 1,0,1,1\n", "space.csv:2: rtt_avg: not a finite number"},
      {"nostd.csv", HEADER "US,FR,5,1,,1,1\n", "nostd.csv:2: rtt_std: not a finite number: ''"},
      {"long.csv", longline, "long.csv:2: line too long"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *p = write_text(bad[i].name, bad[i].text);
    sim_rtt *t = (sim_rtt *)&t; /* must be reset to NULL */
    char err[512] = "";
    if (sim_rtt_load(&t, p, err, sizeof err) != -1)
      fail_msg("%s accepted", bad[i].name);
    assert_null(t);
    if (!strstr(err, bad[i].want) || !strstr(err, dir))
      fail_msg("%s: error \"%s\" lacks \"%s\" or the folder", bad[i].name, err, bad[i].want);
  }

  /* a NUL byte inside a line */
  static const char nul[] = HEADER "US,FR,1,1\0,0,1,1\nDE,DE,1,1,0,1,1\n";
  const char *p = write_file("nul.csv", nul, sizeof nul - 1);
  sim_rtt *t = NULL;
  char err[512] = "";
  assert_int_equal(sim_rtt_load(&t, p, err, sizeof err), -1);
  assert_non_null(strstr(err, "nul.csv:2:"));

  /* a gzip file cut short */
  char big[8192];
  size_t n = (size_t)snprintf(big, sizeof big, HEADER);
  for (int a = 0; a < 20; a++)
    for (int b = a; b < 20 && n < sizeof big - 64; b++)
      n += (size_t)snprintf(big + n, sizeof big - n, "A%c,B%c,%d,%d.5,1.25,%d,%d\n", 'A' + a,
                            'A' + b, a * b, 10 + a + b, a + b, 20 + a + b);
  p = write_gz("cut.csv.gz", big);
  FILE *f = fopen(p, "rb");
  assert_non_null(f);
  uint8_t gz[8192];
  size_t gzlen = fread(gz, 1, sizeof gz, f);
  fclose(f);
  p = write_file("cut.csv.gz", (const char *)gz, gzlen / 2);
  assert_int_equal(sim_rtt_load(&t, p, err, sizeof err), -1);
  assert_null(t);
  printf("truncated gzip: %s\n", err);
  assert_non_null(strstr(err, "cut.csv.gz:"));
  assert_non_null(strstr(err, "read error"));

  /* a missing file names the path */
  p = path_of("missing.csv");
  assert_int_equal(sim_rtt_load(&t, p, err, sizeof err), -1);
  assert_non_null(strstr(err, p));
  assert_non_null(strstr(err, "cannot open"));

  /* a NULL or short err buffer is fine */
  assert_int_equal(sim_rtt_load(&t, p, NULL, 0), -1);
  char small[6];
  assert_int_equal(sim_rtt_load(&t, p, small, sizeof small), -1);
  assert_true(strlen(small) < sizeof small);
}

/* Float rounding in the file's min/max columns (float32 next to a double
 * average) is tolerated; a real violation is not. */
static void test_rounding_slack(void **state) {
  (void)state;
  sim_rtt *t =
      load_ok(write_text("slack.csv", HEADER "AE,AL,1,41.2570686340332,,41.25707,41.25707\n"
                                             "AL,BE,1,42.57502746582031,,42.575027,42.575027\n"));
  int ae = find_country(t, "AE"), al = find_country(t, "AL");
  double v = sim_rtt_link(t, ae, al, 9);
  assert_true(fabs(v - 41.2570686340332) < 1e-9);
  sim_rtt_free(t);
}

static void test_synth_torus(void **state) {
  (void)state;
  const double base = 5, per = 100;
  sim_coord o = {0.25f, 0.75f};
  assert_true(sim_synth_rtt(o, o, base, per) == base);
  /* wraps in x, in y, and diagonally */
  assert_true(fabs(sim_synth_rtt((sim_coord){0.05f, 0.5f}, (sim_coord){0.95f, 0.5f}, base, per) -
                   (base + 10)) < 1e-4);
  assert_true(fabs(sim_synth_rtt((sim_coord){0.3f, 0.02f}, (sim_coord){0.3f, 0.98f}, base, per) -
                   (base + 4)) < 1e-4);
  assert_true(fabs(sim_synth_rtt((sim_coord){0.1f, 0.1f}, (sim_coord){0.9f, 0.9f}, base, per) -
                   (base + per * sqrt(0.08))) < 1e-4);
  /* no wrap when the direct way is shorter */
  assert_true(fabs(sim_synth_rtt((sim_coord){0.2f, 0.5f}, (sim_coord){0.6f, 0.5f}, base, per) -
                   (base + 40)) < 1e-4);
  /* the farthest point */
  assert_true(fabs(sim_synth_rtt((sim_coord){0, 0}, (sim_coord){0.5f, 0.5f}, 0, 1) - sqrt(0.5)) <
              1e-6);

  /* a metric: symmetric, bounded, triangle inequality */
  sim_rng r;
  sim_rng_init(&r, seed, 3);
  for (int i = 0; i < 10000; i++) {
    sim_coord p[3];
    for (int k = 0; k < 3; k++)
      p[k] = (sim_coord){(float)sim_rng_unit(&r), (float)sim_rng_unit(&r)};
    double ab = sim_synth_rtt(p[0], p[1], 0, 1), bc = sim_synth_rtt(p[1], p[2], 0, 1),
           ac = sim_synth_rtt(p[0], p[2], 0, 1);
    assert_true(ab == sim_synth_rtt(p[1], p[0], 0, 1));
    assert_true(ab >= 0 && ab <= sqrt(0.5) + 1e-9);
    assert_true(ac <= ab + bc + 1e-9);
  }
}

/* The real table, when present: it must load; prints a summary. */
static void test_real_table(void **state) {
  (void)state;
  if (access(REAL_RTT_FILE, R_OK) != 0) {
    printf("%s absent: skipped\n", REAL_RTT_FILE);
    return;
  }
  sim_rtt *t = load_ok(REAL_RTT_FILE);
  long rows = -1;
  gzFile f = gzopen(REAL_RTT_FILE, "rb");
  assert_non_null(f);
  char line[512];
  while (gzgets(f, line, sizeof line))
    rows += line[strlen(line) - 1] == '\n';
  gzclose(f);
  printf("%s: %d countries, %ld rows\n", REAL_RTT_FILE, sim_rtt_countries(t), rows);
  assert_true(sim_rtt_countries(t) > 100);
  static const char *const pairs[][2] = {{"DE", "US"}, {"GB", "JP"}, {"AU", "BR"},
                                         {"US", "US"}, {"DE", "FR"}, {"ZA", "NZ"}};
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    int a = find_country(t, pairs[i][0]), b = find_country(t, pairs[i][1]);
    if (a < 0 || b < 0) {
      printf("  %s-%s: not in the table\n", pairs[i][0], pairs[i][1]);
      continue;
    }
    printf("  %s-%s: %.1f %.1f %.1f ms (three links)\n", pairs[i][0], pairs[i][1],
           sim_rtt_link(t, a, b, 1), sim_rtt_link(t, a, b, 2), sim_rtt_link(t, a, b, 3));
    assert_true(sim_rtt_link(t, a, b, 1) >= 0.1);
  }
  sim_rng r;
  sim_rng_init(&r, seed, 4);
  printf("  five picks:");
  for (int i = 0; i < 5; i++)
    printf(" %s", sim_rtt_country_name(t, sim_rtt_pick_country(t, &r)));
  printf("\n");
  sim_rtt_free(t);
}

static int group_setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "%s", "/tmp/roost-simrtt-XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  DIR *d = opendir(dir);
  if (!d)
    return -1;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
      unlink(path_of(e->d_name));
  closedir(d);
  return rmdir(dir);
}

int main(void) {
  const char *env = getenv("ROOST_SEED");
  if (env && *env) {
    seed = strtoull(env, NULL, 0);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec;
  }
  printf("test_sim_rtt seed: %llu (set ROOST_SEED=%llu to repeat)\n", (unsigned long long)seed,
         (unsigned long long)seed);

  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_load_and_link), cmocka_unit_test(test_fallback_no_self),
      cmocka_unit_test(test_pick_country),  cmocka_unit_test(test_formats_agree),
      cmocka_unit_test(test_malformed),     cmocka_unit_test(test_rounding_slack),
      cmocka_unit_test(test_synth_torus),   cmocka_unit_test(test_real_table),
      cmocka_unit_test(test_narrow_bounds),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

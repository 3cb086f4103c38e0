/*
 * test_sim_dist.c - roost-sim's random streams and distributions
 * (sim/sim_dist.c): the ChaCha20 keystream against libsodium directly,
 * determinism per (seed, stream), unbiased below(), the normal generator,
 * sample medians of each session distribution, the duration and
 * distribution parsers, and the deterministic libsodium randombytes (in
 * forked children, since it must precede sodium_init and libsodium is
 * process-global: this process never calls sodium_init).
 *
 * Random inputs come from a seed that is printed; ROOST_SEED=<n> replays it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

static uint64_t seed;

static void put_le64(uint8_t out[static 8], uint64_t v) {
  for (int i = 0; i < 8; i++)
    out[i] = (uint8_t)(v >> (8 * i));
}

/* The stream as specified: key = BLAKE2b-256(seed LE || stream LE), then
 * 256 bytes of ChaCha20 per nonce 0, 1, 2, ... (nonce = LE counter). */
static void test_rng_known_answer(void **state) {
  (void)state;
  const uint64_t s = 0x0123456789abcdefull, stream = 42;
  uint8_t in[16], key[32], want[768], got[768], nonce[8];
  put_le64(in, s);
  put_le64(in + 8, stream);
  crypto_generichash(key, sizeof key, in, sizeof in, NULL, 0);
  for (uint64_t b = 0; b < 3; b++) {
    put_le64(nonce, b);
    crypto_stream_chacha20(want + 256 * b, 256, nonce, key);
  }
  sim_rng r;
  sim_rng_init(&r, s, stream);
  sim_rng_bytes(&r, got, 5); /* split reads must not skip or repeat bytes */
  sim_rng_bytes(&r, got + 5, 300);
  sim_rng_bytes(&r, got + 305, sizeof got - 305);
  assert_memory_equal(got, want, sizeof want);

  /* u64 reads the next 8 bytes little-endian */
  uint8_t next[8];
  put_le64(nonce, 3);
  crypto_stream_chacha20(next, sizeof next, nonce, key);
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | next[i];
  assert_true(sim_rng_u64(&r) == v);
}

static void test_rng_determinism(void **state) {
  (void)state;
  uint8_t a[1000], b[1000], c[1000], d[1000];
  sim_rng r1, r2, r3, r4;
  sim_rng_init(&r1, seed, 7);
  sim_rng_init(&r2, seed, 7);
  sim_rng_init(&r3, seed, 8);
  sim_rng_init(&r4, seed + 1, 7);
  sim_rng_bytes(&r1, a, sizeof a);
  /* the same stream read in uneven pieces */
  sim_rng chunk;
  sim_rng_init(&chunk, seed ^ 0x5a5a, 1);
  size_t off = 0;
  while (off < sizeof b) {
    size_t n = 1 + (size_t)sim_rng_below(&chunk, 97);
    if (n > sizeof b - off)
      n = sizeof b - off;
    sim_rng_bytes(&r2, b + off, n);
    off += n;
  }
  sim_rng_bytes(&r3, c, sizeof c);
  sim_rng_bytes(&r4, d, sizeof d);
  assert_memory_equal(a, b, sizeof a);
  assert_memory_not_equal(a, c, sizeof a);
  assert_memory_not_equal(a, d, sizeof a);
  assert_memory_not_equal(c, d, sizeof c);
}

static void test_rng_below(void **state) {
  (void)state;
  sim_rng r;
  sim_rng_init(&r, seed, 100);

  /* chi-square over 10 buckets, 100k draws: 9 degrees of freedom, and
   * P(chi2 > 40) is about 1e-5 */
  enum { DRAWS = 100000, BUCKETS = 10 };
  unsigned count[BUCKETS] = {0};
  for (int i = 0; i < DRAWS; i++) {
    uint64_t v = sim_rng_below(&r, BUCKETS);
    assert_true(v < BUCKETS);
    count[v]++;
  }
  double chi2 = 0, expect = (double)DRAWS / BUCKETS;
  for (int i = 0; i < BUCKETS; i++)
    chi2 += (count[i] - expect) * (count[i] - expect) / expect;
  printf("below(10): chi2 = %.2f over %d draws\n", chi2, DRAWS);
  assert_true(chi2 < 40.0);

  assert_true(sim_rng_below(&r, 0) == 0);
  assert_true(sim_rng_below(&r, 1) == 0);

  /* n = 3 * 2^62: plain modulo would put only 1/4 of draws in the top
   * third [2^63, n); rejection gives 1/3 */
  const uint64_t n = 3ull << 62;
  int top = 0;
  for (int i = 0; i < 30000; i++) {
    uint64_t v = sim_rng_below(&r, n);
    assert_true(v < n);
    top += v >= (1ull << 63);
  }
  printf("below(3*2^62): %.4f in the top third\n", top / 30000.0);
  assert_true(fabs(top / 30000.0 - 1.0 / 3) < 0.02);
}

static void test_rng_unit_normal(void **state) {
  (void)state;
  sim_rng r;
  sim_rng_init(&r, seed, 101);
  enum { N = 200000 };
  double sum = 0, sum2 = 0, usum = 0;
  for (int i = 0; i < N; i++) {
    double u = sim_rng_unit(&r);
    assert_true(u >= 0.0 && u < 1.0);
    usum += u;
    double z = sim_rng_normal(&r);
    assert_true(isfinite(z));
    sum += z;
    sum2 += z * z;
  }
  double mean = sum / N, var = sum2 / N - mean * mean;
  printf("unit mean %.4f, normal mean %.4f var %.4f\n", usum / N, mean, var);
  assert_true(fabs(usum / N - 0.5) < 0.005);
  assert_true(fabs(mean) < 0.015);
  assert_true(fabs(var - 1.0) < 0.02);

  /* deterministic */
  sim_rng a, b;
  sim_rng_init(&a, seed, 102);
  sim_rng_init(&b, seed, 102);
  for (int i = 0; i < 100; i++)
    assert_true(sim_rng_normal(&a) == sim_rng_normal(&b));
}

static int cmp_ts(const void *a, const void *b) {
  dht_ts x = *(const dht_ts *)a, y = *(const dht_ts *)b;
  return (x > y) - (x < y);
}

static void test_dist_medians(void **state) {
  (void)state;
  enum { N = 200000 };
  const sim_dist dists[] = {
      {SIM_DIST_EXP, 1800000.0, 0},       /* exp, mean 30 min */
      {SIM_DIST_WEIBULL, 0.5, 3600000.0}, /* heavy-tailed sessions */
      {SIM_DIST_WEIBULL, 2.0, 3600000.0}, /* light-tailed */
      {SIM_DIST_PARETO, 1.5, 600000.0},   /* alpha 1.5, min 10 min */
      {SIM_DIST_PARETO, 0.8, 1000.0},     /* infinite mean */
  };
  dht_ts *v = malloc(N * sizeof *v);
  assert_non_null(v);
  for (size_t k = 0; k < sizeof dists / sizeof dists[0]; k++) {
    const sim_dist *d = &dists[k];
    sim_rng r;
    sim_rng_init(&r, seed, 200 + k);
    for (int i = 0; i < N; i++) {
      v[i] = sim_dist_draw(d, &r);
      assert_true(v[i] >= 1);
      assert_true(v[i] <= (dht_ts)10 * 365 * 86400000);
      if (d->kind == SIM_DIST_PARETO)
        assert_true(v[i] >= (dht_ts)d->b); /* never below x_m */
    }
    qsort(v, N, sizeof *v, cmp_ts);
    double med = (double)(v[N / 2 - 1] + v[N / 2]) / 2, want = sim_dist_median(d);
    printf("dist %d (%g, %g): sample median %.0f ms, expected %.0f ms\n", d->kind, d->a, d->b, med,
           want);
    assert_true(fabs(med - want) <= 0.03 * want);
  }
  free(v);
}

static void test_dist_edges(void **state) {
  (void)state;
  sim_rng r;
  sim_rng_init(&r, seed, 300);
  sim_dist none = {SIM_DIST_NONE, 0, 0};
  assert_true(sim_dist_draw(&none, &r) == DHT_TS_NEVER);
  assert_true(isinf(sim_dist_median(&none)));

  /* tiny values clamp to 1 ms, huge ones to ten years */
  const dht_ts ten_years = (dht_ts)10 * 365 * 86400000;
  sim_dist tiny = {SIM_DIST_EXP, 1e-6, 0};
  sim_dist huge = {SIM_DIST_EXP, 1e18, 0};
  sim_dist wild = {SIM_DIST_PARETO, 0.05, 1000.0};
  int at_cap = 0;
  for (int i = 0; i < 1000; i++) {
    assert_true(sim_dist_draw(&tiny, &r) == 1);
    dht_ts h = sim_dist_draw(&huge, &r);
    assert_true(h >= 1 && h <= ten_years);
    at_cap += h == ten_years;
    dht_ts w = sim_dist_draw(&wild, &r);
    assert_true(w >= 1000 && w <= ten_years);
  }
  assert_true(at_cap > 900);

  /* exp rounds to whole ms: mean 0.4 ms gives 1 ms most of the time */
  sim_dist small = {SIM_DIST_EXP, 0.4, 0};
  for (int i = 0; i < 1000; i++) {
    dht_ts s = sim_dist_draw(&small, &r);
    assert_true(s >= 1 && s < 100);
  }
}

static void test_parse_duration(void **state) {
  (void)state;
  static const struct {
    const char *s;
    dht_ts want;
  } ok[] = {
      {"0", 0},
      {"250", 250},
      {"250ms", 250},
      {"30s", 30000},
      {"10m", 600000},
      {"2h", 7200000},
      {"1d", 86400000},
      {"1.5h", 5400000},
      {"0.5s", 500},
      {"0.25m", 15000},
      {"1.5", 2}, /* ms, rounded */
      {" 30s ", 30000},
      {"30 s", 30000},
      {"007s", 7000},
      {"9223372036854775806", INT64_MAX - 1},
      {"106751991167d", (dht_ts)106751991167 * 86400000},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    dht_ts v = -42;
    int rc = sim_parse_duration(ok[i].s, &v);
    if (rc != 0 || v != ok[i].want)
      fail_msg("'%s': rc %d value %lld, want %lld", ok[i].s, rc, (long long)v,
               (long long)ok[i].want);
  }
  static const char *const bad[] = {
      "",
      " ",
      "-1",
      "-5s",
      "+5s",
      "abc",
      "5x",
      "5 mss",
      "1e3",
      "s",
      "5.",
      ".5",
      "1..5",
      "5s5",
      "0x10",
      "5S",
      "5M",
      "nan",
      "inf",
      "5 5s",
      "1,5h",
      "5s,",
      "5 s x",
      "9223372036854775807",
      "99999999999999999999999",
      "106751991168d",
      "100000000000000000000.5h",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    dht_ts v = -42;
    if (sim_parse_duration(bad[i], &v) != -1)
      fail_msg("'%s' accepted as %lld", bad[i], (long long)v);
    assert_true(v == -42); /* untouched on failure */
  }
  assert_int_equal(sim_parse_duration(NULL, &(dht_ts){0}), -1);
}

static bool near(double a, double b) {
  return fabs(a - b) <= 1e-9 * fabs(b);
}

static void test_dist_parse(void **state) {
  (void)state;
  const double ln2 = log(2.0);
  static const char *const none_forms[] = {"none", "  none\t"};
  for (size_t i = 0; i < 2; i++) {
    sim_dist d = {SIM_DIST_EXP, 1, 1};
    char err[160] = "";
    assert_int_equal(sim_dist_parse(&d, none_forms[i], err, sizeof err), 0);
    assert_int_equal(d.kind, SIM_DIST_NONE);
  }
  const struct {
    const char *s;
    int kind;
    double a, b;
  } ok[] = {
      {"exp(mean=30m)", SIM_DIST_EXP, 1800000, 0},
      {"exp(median=30m)", SIM_DIST_EXP, 1800000 / ln2, 0},
      {"exp( mean = 1.5h )", SIM_DIST_EXP, 5400000, 0},
      {"weibull(k=0.5,scale=1h)", SIM_DIST_WEIBULL, 0.5, 3600000},
      {"weibull(k=0.5,median=30m)", SIM_DIST_WEIBULL, 0.5, 1800000 / (ln2 * ln2)},
      {" weibull ( scale = 2h , k = 20 ) ", SIM_DIST_WEIBULL, 20, 7200000},
      {"pareto(alpha=1.5,min=10m)", SIM_DIST_PARETO, 1.5, 600000},
      {"pareto(alpha=1.5,median=30m)", SIM_DIST_PARETO, 1.5, 1800000 / pow(2.0, 1 / 1.5)},
      {"pareto(alpha=0.1,min=250)", SIM_DIST_PARETO, 0.1, 250},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    sim_dist d;
    char err[160] = "";
    if (sim_dist_parse(&d, ok[i].s, err, sizeof err) != 0)
      fail_msg("'%s' rejected: %s", ok[i].s, err);
    if (d.kind != ok[i].kind || !near(d.a, ok[i].a) || !near(d.b, ok[i].b))
      fail_msg("'%s': kind %d a %g b %g, want %d %g %g", ok[i].s, d.kind, d.a, d.b, ok[i].kind,
               ok[i].a, ok[i].b);
    if (strstr(ok[i].s, "median=30m"))
      assert_true(near(sim_dist_median(&d), 1800000));
  }

  static const struct {
    const char *s, *want;
  } bad[] = {
      {"gamma(k=1)", "unknown distribution 'gamma' (none, exp, weibull, pareto)"},
      {"EXP(mean=1s)", "unknown distribution 'EXP'"},
      {"", "empty"},
      {"   ", "empty"},
      {"42", "unknown distribution '42'"},
      {"exp", "exp: expected '('"},
      {"exp mean=30m", "exp: expected '('"},
      {"exp(mean=30m", "exp: expected ')'"},
      {"exp(mean=30m) x", "exp: expected ')'"},
      {"exp()", "exp: no parameters"},
      {"exp( )", "exp: no parameters"},
      {"exp(foo=1s)", "exp: unknown parameter 'foo' (mean, median)"},
      {"weibull(k=1,lambda=1h)", "weibull: unknown parameter 'lambda' (k, scale, median)"},
      {"weibull(scale=1h)", "weibull: missing k"},
      {"weibull(k=0.5)", "weibull: missing scale"},
      {"pareto(min=10m)", "pareto: missing alpha"},
      {"pareto(alpha=2)", "pareto: missing min"},
      {"exp(mean=30m,mean=1h)", "exp: duplicate parameter 'mean'"},
      {"weibull(k=1,k=2,scale=1h)", "weibull: duplicate parameter 'k'"},
      {"pareto(alpha=1,median=1h,median=2h)", "pareto: duplicate parameter 'median'"},
      {"exp(mean=30m,median=1h)", "not both"},
      {"weibull(k=0,scale=1h)", "weibull: k must be positive"},
      {"weibull(k=21,scale=1h)", "weibull: k must be in (0, 20]"},
      {"weibull(k=-1,scale=1h)", "weibull: k: not a number: '-1'"},
      {"weibull(k=nan,scale=1h)", "not a number"},
      {"weibull(k=1e3,scale=1h)", "not a number"},
      {"pareto(alpha=0,min=10m)", "pareto: alpha must be positive"},
      {"pareto(alpha=1.5,min=0)", "pareto: min must be positive"},
      {"exp(mean=0s)", "exp: mean must be positive"},
      {"exp(mean=-5m)", "exp: mean: bad duration '-5m'"},
      {"exp(mean=abc)", "bad duration 'abc'"},
      {"exp(mean=)", "bad duration ''"},
      {"exp(mean=30m,)", "exp: trailing ','"},
      {"exp(,mean=30m)", "expected name=value"},
      {"exp(mean)", "expected name=value"},
      {"exp(=30m)", "expected name=value"},
      {"none(x=1)", "none: takes no parameters"},
      {"none x", "none: takes no parameters"},
      {"pareto(alpha=0.0001,median=1ms)", "out of range"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    sim_dist d = {0};
    char err[160] = "";
    if (sim_dist_parse(&d, bad[i].s, err, sizeof err) != -1)
      fail_msg("'%s' accepted", bad[i].s);
    if (!strstr(err, bad[i].want))
      fail_msg("'%s': error \"%s\" lacks \"%s\"", bad[i].s, err, bad[i].want);
  }
  /* a NULL or tiny err buffer is fine */
  sim_dist d;
  assert_int_equal(sim_dist_parse(&d, "gamma()", NULL, 0), -1);
  char small[8];
  assert_int_equal(sim_dist_parse(&d, "gamma()", small, sizeof small), -1);
  assert_true(strlen(small) < sizeof small);
}

/* Runs a child that installs the deterministic randombytes with seed, then
 * sodium_init(), and sends back 64 bytes of randombytes_buf plus
 * randombytes_random() and randombytes_uniform(1000).  Returns the child's
 * exit status (0 = fine). */
enum { CHILD_OUT = 72 };

static int child_randombytes(uint64_t s, uint8_t out[static CHILD_OUT]) {
  int fd[2];
  if (pipe(fd) != 0)
    return -1;
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    close(fd[0]);
    uint8_t buf[CHILD_OUT];
    if (sim_sodium_deterministic(s) != 0)
      _exit(2);
    if (sodium_init() != 0) /* 1 would mean libsodium was initialised earlier */
      _exit(3);
    if (strcmp(randombytes_implementation_name(), "roost-sim-deterministic") != 0)
      _exit(4);
    randombytes_buf(buf, 64);
    uint32_t x = randombytes_random(), u = randombytes_uniform(1000);
    if (u >= 1000 || randombytes_uniform(1) != 0)
      _exit(5);
    memcpy(buf + 64, &x, 4);
    memcpy(buf + 68, &u, 4);
    if (write(fd[1], buf, sizeof buf) != (ssize_t)sizeof buf)
      _exit(6);
    _exit(0);
  }
  close(fd[1]);
  size_t got = 0;
  while (got < CHILD_OUT) {
    ssize_t n = read(fd[0], out + got, CHILD_OUT - got);
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  close(fd[0]);
  int st;
  if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
    return -1;
  if (WEXITSTATUS(st) != 0)
    return WEXITSTATUS(st);
  return got == CHILD_OUT ? 0 : -1;
}

static void test_sodium_deterministic(void **state) {
  (void)state;
  uint8_t a[CHILD_OUT], b[CHILD_OUT], c[CHILD_OUT];
  assert_int_equal(child_randombytes(seed, a), 0);
  assert_int_equal(child_randombytes(seed, b), 0);
  assert_int_equal(child_randombytes(seed + 1, c), 0);
  assert_memory_equal(a, b, sizeof a);
  assert_memory_not_equal(a, c, 64);
  uint8_t zero[64] = {0};
  assert_memory_not_equal(a, zero, sizeof zero);
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
  printf("test_sim_dist seed: %llu (set ROOST_SEED=%llu to repeat)\n", (unsigned long long)seed,
         (unsigned long long)seed);

  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rng_known_answer),
      cmocka_unit_test(test_rng_determinism),
      cmocka_unit_test(test_rng_below),
      cmocka_unit_test(test_rng_unit_normal),
      cmocka_unit_test(test_dist_medians),
      cmocka_unit_test(test_dist_edges),
      cmocka_unit_test(test_parse_duration),
      cmocka_unit_test(test_dist_parse),
      cmocka_unit_test(test_sodium_deterministic),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

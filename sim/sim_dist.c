/*
 * sim_dist.c - roost-sim's random streams and distributions: the ChaCha20
 * keystream every simulated host and purpose draws from (sim_rng), the
 * deterministic libsodium randombytes replacement, session-length
 * distributions (exponential, Weibull, Pareto) with their parsers, and the
 * duration parser shared by scenario files and flags.
 *
 * Invariants: every value here is a pure function of (seed, stream) and the
 * order of draws; no clock, no pointer order, no global state except the one
 * generator behind sim_sodium_deterministic (see there).  Byte order is fixed
 * (little-endian) so a seed reproduces a run on any host.
 */
#include "sim.h"

#include <assert.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The largest value sim_dist_draw returns: ten years of milliseconds. */
#define SIM_DIST_MAX_MS ((dht_ts)10 * 365 * 24 * 3600 * 1000)
/* Weibull shape bound: beyond 20 the distribution is nearly a constant, so
 * the parser takes a larger k for a typo. */
#define SIM_WEIBULL_MAX_K 20.0
/* ln 2 (M_LN2 is not in strict C11/POSIX <math.h>). */
#define LN2 0.693147180559945309417232121458176568

/* ---- sim_rng ------------------------------------------------------------ */

static void put_le64(uint8_t out[static 8], uint64_t v) {
  for (int i = 0; i < 8; i++)
    out[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t in[static 8]) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | in[i];
  return v;
}

/* Key = BLAKE2b-256(seed LE || stream LE).  Works before sodium_init():
 * libsodium's BLAKE2b and ChaCha20 start on their reference code. */
void sim_rng_init(sim_rng *r, uint64_t seed, uint64_t stream) {
  uint8_t in[16];
  put_le64(in, seed);
  put_le64(in + 8, stream);
  crypto_generichash(r->key, sizeof r->key, in, sizeof in, NULL, 0);
  r->block = 0;
  r->pos = sizeof r->buf;
}

/* Refills the buffer with 256 keystream bytes whose nonce is the block
 * counter (LE), so the stream is ChaCha20(key, nonce = 0, 1, 2, ...)
 * truncated to 256 bytes per nonce. */
static void refill(sim_rng *r) {
  uint8_t nonce[crypto_stream_chacha20_NONCEBYTES];
  static_assert(crypto_stream_chacha20_NONCEBYTES == 8, "64-bit ChaCha20 nonce");
  put_le64(nonce, r->block);
  crypto_stream_chacha20(r->buf, sizeof r->buf, nonce, r->key);
  r->block++;
  r->pos = 0;
}

void sim_rng_bytes(sim_rng *r, uint8_t *out, size_t len) {
  while (len) {
    if (r->pos >= sizeof r->buf)
      refill(r);
    size_t n = sizeof r->buf - r->pos;
    if (n > len)
      n = len;
    memcpy(out, r->buf + r->pos, n);
    r->pos += (unsigned)n;
    out += n;
    len -= n;
  }
}

uint64_t sim_rng_u64(sim_rng *r) {
  uint8_t b[8];
  sim_rng_bytes(r, b, sizeof b);
  return get_le64(b);
}

/* Rejection keeps it unbiased: values below 2^64 mod n are redrawn, so the
 * rest split into equally many values per residue.  n = 0 gives 0. */
uint64_t sim_rng_below(sim_rng *r, uint64_t n) {
  if (n <= 1)
    return 0;
  uint64_t reject_below = (0 - n) % n; /* 2^64 mod n */
  uint64_t v;
  do
    v = sim_rng_u64(r);
  while (v < reject_below);
  return v % n;
}

double sim_rng_unit(sim_rng *r) {
  return (double)(sim_rng_u64(r) >> 11) * 0x1p-53;
}

/* Marsaglia's polar method; the second value of each pair is dropped so
 * the generator needs no extra state (sim_rng is fixed by sim.h). */
double sim_rng_normal(sim_rng *r) {
  double u, v, s;
  do {
    u = 2.0 * sim_rng_unit(r) - 1.0;
    v = 2.0 * sim_rng_unit(r) - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  return u * sqrt(-2.0 * log(s) / s);
}

/* A uniform in (0, 1]: safe under log and as a divisor. */
static double unit_open0(sim_rng *r) {
  return 1.0 - sim_rng_unit(r);
}

/* ---- deterministic libsodium randomness ------------------------------- */

/* Process state, on purpose: libsodium's randombytes is process-global, so
 * the generator behind it is too.  sim/ is a driver and may keep it; the
 * cores never see it (they get randomness through dht_callbacks.rand). */
static sim_rng sodium_rng;

static const char *det_name(void) {
  return "roost-sim-deterministic";
}

static uint32_t det_random(void) {
  uint8_t b[4];
  sim_rng_bytes(&sodium_rng, b, sizeof b);
  return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* Nothing to stir: the stream is fixed by the seed. */
static void det_stir(void) {}

/* libsodium's contract: 0 when upper_bound < 2. */
static uint32_t det_uniform(const uint32_t upper_bound) {
  return (uint32_t)sim_rng_below(&sodium_rng, upper_bound);
}

static void det_buf(void *const buf, const size_t size) {
  sim_rng_bytes(&sodium_rng, buf, size);
}

static int det_close(void) {
  return 0;
}

/* libsodium 1.0.18 takes a non-const pointer and keeps it. */
static randombytes_implementation det_impl = {
    .implementation_name = det_name,
    .random = det_random,
    .stir = det_stir,
    .uniform = det_uniform,
    .buf = det_buf,
    .close = det_close,
};

int sim_sodium_deterministic(uint64_t seed) {
  sim_rng_init(&sodium_rng, seed, 0x50d1u);
  return randombytes_set_implementation(&det_impl) == 0 ? 0 : -1;
}

/* ---- distributions ----------------------------------------------------- */

dht_ts sim_dist_draw(const sim_dist *d, sim_rng *r) {
  double v;
  switch (d->kind) {
  case SIM_DIST_EXP:
    v = -d->a * log(unit_open0(r));
    break;
  case SIM_DIST_WEIBULL:
    v = d->b * pow(-log(unit_open0(r)), 1.0 / d->a);
    break;
  case SIM_DIST_PARETO:
    v = d->b / pow(unit_open0(r), 1.0 / d->a);
    break;
  default:
    assert(d->kind == SIM_DIST_NONE);
    return DHT_TS_NEVER;
  }
  /* NaN (from a hand-built, invalid sim_dist) and overflow both clamp. */
  if (!(v < (double)SIM_DIST_MAX_MS))
    return isnan(v) ? 1 : SIM_DIST_MAX_MS;
  dht_ts ms = (dht_ts)floor(v + 0.5);
  return ms < 1 ? 1 : ms;
}

double sim_dist_median(const sim_dist *d) {
  switch (d->kind) {
  case SIM_DIST_EXP:
    return d->a * LN2;
  case SIM_DIST_WEIBULL:
    return d->b * pow(LN2, 1.0 / d->a);
  case SIM_DIST_PARETO:
    return d->b * pow(2.0, 1.0 / d->a);
  default:
    return INFINITY; /* NONE: sessions never end */
  }
}

/* ---- parsing ----------------------------------------------------------- */

static bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

static bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static const char *skip_space(const char *p, const char *end) {
  while (p < end && is_space(*p))
    p++;
  return p;
}

/* Scans digits+ ('.' digits+)? at [p, end) without strtod (no locale, no
 * exponent, no sign, no hex).  Sets *ip (saturating at UINT64_MAX, with
 * *ovf) and *val (the full value as a double); returns the end of the
 * number, or NULL if there is none. */
static const char *scan_number(const char *p, const char *end, uint64_t *ip, double *val,
                               bool *frac, bool *ovf) {
  uint64_t i = 0;
  double v = 0;
  *ovf = false;
  *frac = false;
  if (p >= end || !is_digit(*p))
    return NULL;
  for (; p < end && is_digit(*p); p++) {
    unsigned dgt = (unsigned)(*p - '0');
    if (i > (UINT64_MAX - dgt) / 10)
      *ovf = true;
    else
      i = i * 10 + dgt;
    v = v * 10 + dgt;
  }
  if (p < end && *p == '.') {
    p++;
    if (p >= end || !is_digit(*p))
      return NULL;
    double scale = 0.1;
    for (; p < end && is_digit(*p); p++) {
      v += scale * (*p - '0');
      scale /= 10;
    }
    *frac = true;
  }
  *ip = i;
  *val = v;
  return p;
}

/* The duration parser over [s, end); see sim_parse_duration. */
static int parse_duration_span(const char *s, const char *end, dht_ts *out) {
  static const struct {
    const char *name;
    int64_t ms;
  } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
  uint64_t ip;
  double v;
  bool frac, ovf;
  const char *p = skip_space(s, end);
  p = scan_number(p, end, &ip, &v, &frac, &ovf);
  if (!p)
    return -1;
  p = skip_space(p, end);
  const char *u = p;
  while (p < end && is_alpha(*p))
    p++;
  size_t ulen = (size_t)(p - u);
  if (skip_space(p, end) != end)
    return -1;
  int64_t mult = 0;
  if (ulen == 0) {
    mult = 1;
  } else {
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
      if (strlen(units[i].name) == ulen && memcmp(units[i].name, u, ulen) == 0)
        mult = units[i].ms;
  }
  if (mult == 0)
    return -1;
  if (!frac) { /* exact integer arithmetic */
    if (ovf || ip > (uint64_t)(INT64_MAX - 1) / (uint64_t)mult)
      return -1;
    *out = (dht_ts)(ip * (uint64_t)mult);
    return 0;
  }
  double ms = floor(v * (double)mult + 0.5);
  if (!(ms < 0x1p63))
    return -1;
  *out = (dht_ts)ms;
  return 0;
}

int sim_parse_duration(const char *s, dht_ts *out) {
  if (!s)
    return -1;
  dht_ts v;
  if (parse_duration_span(s, s + strlen(s), &v) < 0)
    return -1;
  *out = v;
  return 0;
}

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* The parameters one distribution takes: a shape (plain number; NULL for
 * exp), a scale (duration) and the alternative "median" (duration). */
typedef struct dist_spec {
  const char *name;
  int kind;
  const char *shape; /* NULL: none */
  const char *scale;
} dist_spec;

static const dist_spec dist_specs[] = {
    {"exp", SIM_DIST_EXP, NULL, "mean"},
    {"weibull", SIM_DIST_WEIBULL, "k", "scale"},
    {"pareto", SIM_DIST_PARETO, "alpha", "min"},
};

/* Parameter slots while parsing. */
enum { P_SHAPE, P_SCALE, P_MEDIAN, P_COUNT };

static bool word_is(const char *w, size_t n, const char *name) {
  return name && strlen(name) == n && memcmp(w, name, n) == 0;
}

int sim_dist_parse(sim_dist *d, const char *s, char *err, size_t errlen) {
  if (!s) {
    seterr(err, errlen, "empty distribution");
    return -1;
  }
  const char *end = s + strlen(s);
  const char *p = skip_space(s, end);
  while (end > p && is_space(end[-1]))
    end--;
  if (p == end) {
    seterr(err, errlen, "empty distribution (none, exp, weibull, pareto)");
    return -1;
  }
  const char *w = p;
  while (p < end && is_alpha(*p))
    p++;
  size_t wlen = (size_t)(p - w);
  if (word_is(w, wlen, "none")) {
    if (p != end) {
      seterr(err, errlen, "none: takes no parameters");
      return -1;
    }
    *d = (sim_dist){.kind = SIM_DIST_NONE};
    return 0;
  }
  const dist_spec *spec = NULL;
  for (size_t i = 0; i < sizeof dist_specs / sizeof dist_specs[0]; i++)
    if (word_is(w, wlen, dist_specs[i].name))
      spec = &dist_specs[i];
  if (!spec) {
    int shown = (int)(wlen ? wlen : (size_t)(end - w));
    if (shown > 32)
      shown = 32;
    seterr(err, errlen, "unknown distribution '%.*s' (none, exp, weibull, pareto)", shown, w);
    return -1;
  }
  p = skip_space(p, end);
  if (p == end || *p != '(') {
    seterr(err, errlen, "%s: expected '(' after '%s'", spec->name, spec->name);
    return -1;
  }
  p++;
  if (end[-1] != ')') {
    seterr(err, errlen, "%s: expected ')' at the end", spec->name);
    return -1;
  }
  const char *close = end - 1; /* parameters lie in [p, close) */

  double val[P_COUNT] = {0};
  bool have[P_COUNT] = {false};
  p = skip_space(p, close);
  if (p == close) {
    seterr(err, errlen, "%s: no parameters", spec->name);
    return -1;
  }
  while (p < close) {
    const char *k = skip_space(p, close);
    const char *q = k;
    while (q < close && is_alpha(*q))
      q++;
    size_t klen = (size_t)(q - k);
    q = skip_space(q, close);
    if (klen == 0 || q == close || *q != '=') {
      seterr(err, errlen, "%s: expected name=value, got '%.*s'", spec->name,
             (int)((size_t)(close - k) > 32 ? 32 : (size_t)(close - k)), k);
      return -1;
    }
    const char *v = q + 1;
    const char *vend = v;
    while (vend < close && *vend != ',')
      vend++;
    int slot;
    if (word_is(k, klen, spec->shape))
      slot = P_SHAPE;
    else if (word_is(k, klen, spec->scale))
      slot = P_SCALE;
    else if (word_is(k, klen, "median"))
      slot = P_MEDIAN;
    else {
      if (spec->shape)
        seterr(err, errlen, "%s: unknown parameter '%.*s' (%s, %s, median)", spec->name,
               (int)(klen > 32 ? 32 : klen), k, spec->shape, spec->scale);
      else
        seterr(err, errlen, "%s: unknown parameter '%.*s' (%s, median)", spec->name,
               (int)(klen > 32 ? 32 : klen), k, spec->scale);
      return -1;
    }
    if (have[slot]) {
      seterr(err, errlen, "%s: duplicate parameter '%.*s'", spec->name, (int)klen, k);
      return -1;
    }
    const char *vs = skip_space(v, vend);
    const char *ve = vend;
    while (ve > vs && is_space(ve[-1]))
      ve--;
    int shown = (int)((size_t)(ve - vs) > 32 ? 32 : (size_t)(ve - vs));
    if (slot == P_SHAPE) {
      uint64_t ip;
      bool frac, ovf;
      const char *ne = scan_number(vs, ve, &ip, &val[slot], &frac, &ovf);
      if (!ne || ne != ve || !isfinite(val[slot])) {
        seterr(err, errlen, "%s: %.*s: not a number: '%.*s'", spec->name, (int)klen, k, shown, vs);
        return -1;
      }
    } else {
      dht_ts ms;
      if (parse_duration_span(vs, ve, &ms) < 0) {
        seterr(err, errlen, "%s: %.*s: bad duration '%.*s' (e.g. 250ms, 30s, 10m, 1.5h, 1d)",
               spec->name, (int)klen, k, shown, vs);
        return -1;
      }
      val[slot] = (double)ms;
    }
    if (!(val[slot] > 0)) {
      seterr(err, errlen, "%s: %.*s must be positive", spec->name, (int)klen, k);
      return -1;
    }
    have[slot] = true;
    p = vend;
    if (p < close) { /* at ',' */
      p++;
      if (skip_space(p, close) == close) {
        seterr(err, errlen, "%s: trailing ','", spec->name);
        return -1;
      }
    }
  }

  if (spec->shape && !have[P_SHAPE]) {
    seterr(err, errlen, "%s: missing %s", spec->name, spec->shape);
    return -1;
  }
  if (have[P_SCALE] && have[P_MEDIAN]) {
    seterr(err, errlen, "%s: give %s or median, not both", spec->name, spec->scale);
    return -1;
  }
  if (!have[P_SCALE] && !have[P_MEDIAN]) {
    seterr(err, errlen, "%s: missing %s (or median)", spec->name, spec->scale);
    return -1;
  }
  double shape = val[P_SHAPE], scale = val[P_SCALE];
  if (spec->kind == SIM_DIST_WEIBULL && shape > SIM_WEIBULL_MAX_K) {
    seterr(err, errlen, "weibull: k must be in (0, %g]", SIM_WEIBULL_MAX_K);
    return -1;
  }
  if (have[P_MEDIAN]) {
    double m = val[P_MEDIAN];
    switch (spec->kind) {
    case SIM_DIST_EXP:
      scale = m / LN2;
      break;
    case SIM_DIST_WEIBULL:
      scale = m / pow(LN2, 1.0 / shape);
      break;
    default:
      scale = m / pow(2.0, 1.0 / shape);
      break;
    }
    if (!isfinite(scale) || !(scale > 0)) {
      seterr(err, errlen, "%s: median %g ms gives %s %g, out of range", spec->name, m, spec->scale,
             scale);
      return -1;
    }
  }
  if (spec->kind == SIM_DIST_EXP)
    *d = (sim_dist){.kind = SIM_DIST_EXP, .a = scale, .b = 0};
  else
    *d = (sim_dist){.kind = spec->kind, .a = shape, .b = scale};
  return 0;
}

/*
 * sim_rtt.c - roost-sim's latency models: the country-to-country RTT table
 * (RIPE-derived country_rtt_stat.csv, gzip or plain), country choice for a
 * host, the fixed base RTT of a link, and the synthetic torus model used when
 * no table is given.
 *
 * Invariants: a loaded table is immutable; countries are indexed in
 * alphabetical order of their codes (so indices do not depend on row order);
 * the pair matrix is symmetric; every RTT returned is >= SIM_RTT_FLOOR_MS.
 * Draws depend only on the table and the seed passed in.
 */
#include "sim.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define SIM_RTT_MAX_COUNTRIES 1000      /* two-letter codes allow 676 anyway */
#define SIM_RTT_MAX_ROWS 1000000        /* data lines; 676 codes allow 228,826 pairs */
#define SIM_RTT_LINE_MAX 512            /* longest accepted line, with its newline */
#define SIM_RTT_FLOOR_MS 0.1            /* no link is faster than this */
#define SIM_RTT_LINK_STREAM 0x4c494e4bu /* "LINK": salt of the link draws */
#define SIM_RTT_TRIES 16                /* truncated-normal rejection tries */
#define CODES (26 * 26)                 /* possible two-letter codes */

static const char rtt_header[] = "cty1,cty2,rtt_cnt,rtt_avg,rtt_std,rtt_min,rtt_max";

/* One row of the file: statistics of an unordered country pair, in ms. */
typedef struct rtt_pair {
  double avg, std, min, max;
  uint64_t cnt;
  int a, b; /* country indices (code indices while loading) */
} rtt_pair;

struct sim_rtt {
  int n;            /* countries */
  char (*names)[3]; /* n codes, alphabetical */
  uint64_t *cum;    /* n cumulative weights (rtt_cnt of pairs involving each) */
  int32_t *cell;    /* n x n: index into pairs, -1 = no data; symmetric */
  rtt_pair *pairs;
  size_t npairs;
  double global_mean; /* unweighted mean of rtt_avg over all pairs */
  double same_mean;   /* the same over self pairs; valid when has_same */
  bool has_same;
};

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

/* A country code field: 0..675, -2 for the file's placeholders for
 * unlocated probes ("None", "Unknown"), -1 otherwise. */
static int parse_code(const char *s) {
  if (strcmp(s, "None") == 0 || strcmp(s, "Unknown") == 0)
    return -2;
  if (strlen(s) != 2 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z')
    return -1;
  return (s[0] - 'A') * 26 + (s[1] - 'A');
}

/* rtt_cnt: decimal digits only, at most 10^12 (so sums of a million rows
 * cannot overflow). */
static int parse_count(const char *s, uint64_t *out) {
  uint64_t v = 0;
  if (!*s)
    return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return -1;
    v = v * 10 + (uint64_t)(*s - '0');
    if (v > 1000000000000ull)
      return -1;
  }
  *out = v;
  return 0;
}

/* A finite number filling the whole field.  0, or -1 if not a number. */
static int parse_real(const char *s, double *out) {
  if (!*s || !(*s == '-' || *s == '+' || *s == '.' || (*s >= '0' && *s <= '9')))
    return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (*end || !isfinite(v) || errno == ERANGE)
    return -1;
  *out = v;
  return 0;
}

/* a <= b, allowing the rounding of the file's float32 min/max columns. */
static bool le_slack(double a, double b) {
  return a <= b + 1e-6 * (1.0 + fabs(b));
}

/* Parses one data row into p (code indices in p->a, p->b).  Returns 0, 1 for
 * a row to skip (an unlocated end), or -1 with err set ("path:line: ..."). */
static int parse_row(char *line, rtt_pair *p, const char *path, long ln, char *err, size_t errlen) {
  static const char *const names[7] = {"cty1",    "cty2",    "rtt_cnt", "rtt_avg",
                                       "rtt_std", "rtt_min", "rtt_max"};
  char *f[7];
  int nf = 0;
  for (char *s = line;; s++) {
    if (nf < 7)
      f[nf] = s;
    nf++;
    s = strchr(s, ',');
    if (!s)
      break;
    *s = '\0';
  }
  if (nf != 7) {
    seterr(err, errlen, "%s:%ld: expected 7 fields, got %d", path, ln, nf);
    return -1;
  }
  int ca = parse_code(f[0]), cb = parse_code(f[1]);
  for (int i = 0; i < 2; i++) {
    if ((i ? cb : ca) == -1) {
      seterr(err, errlen, "%s:%ld: %s: bad country code '%.16s' (want two upper-case letters)",
             path, ln, names[i], f[i]);
      return -1;
    }
  }
  if (parse_count(f[2], &p->cnt) < 0) {
    seterr(err, errlen, "%s:%ld: rtt_cnt: not a count: '%.24s'", path, ln, f[2]);
    return -1;
  }
  double v[4];
  for (int i = 0; i < 4; i++) {
    const char *s = f[3 + i];
    if (i == 1 && !*s && p->cnt <= 1) { /* the sd of one sample is left empty */
      v[i] = 0;
      continue;
    }
    if (parse_real(s, &v[i]) < 0) {
      seterr(err, errlen, "%s:%ld: %s: not a finite number: '%.24s'", path, ln, names[3 + i], s);
      return -1;
    }
    if (v[i] < 0) {
      seterr(err, errlen, "%s:%ld: %s %g is negative", path, ln, names[3 + i], v[i]);
      return -1;
    }
  }
  p->avg = v[0];
  p->std = v[1];
  p->min = v[2];
  p->max = v[3];
  if (!le_slack(p->min, p->avg)) {
    seterr(err, errlen, "%s:%ld: rtt_min %g > rtt_avg %g", path, ln, p->min, p->avg);
    return -1;
  }
  if (!le_slack(p->avg, p->max)) {
    seterr(err, errlen, "%s:%ld: rtt_avg %g > rtt_max %g", path, ln, p->avg, p->max);
    return -1;
  }
  if (ca < 0 || cb < 0)
    return 1;
  p->a = ca < cb ? ca : cb;
  p->b = ca < cb ? cb : ca;
  return 0;
}

/* zlib prefixes its messages with "path: "; ours name the line too. */
static const char *zmsg(const char *msg, const char *path) {
  size_t n = strlen(path);
  if (strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ')
    return msg + n + 2;
  return msg;
}

/* Strips a trailing "\n" or "\r\n". */
static void chomp(char *s) {
  size_t n = strlen(s);
  if (n && s[n - 1] == '\n')
    s[--n] = '\0';
  if (n && s[n - 1] == '\r')
    s[--n] = '\0';
}

int sim_rtt_load(sim_rtt **out, const char *path, char *err, size_t errlen) {
  sim_rtt *t = NULL;
  uint32_t *seen = NULL; /* CODES x CODES: line of the pair's row, 0 = none */
  int *dense = NULL;     /* code index -> country index, -1 = unused */
  uint64_t *weight = NULL;
  rtt_pair *pairs = NULL;
  size_t npairs = 0, apairs = 0, skipped = 0;
  char line[SIM_RTT_LINE_MAX];
  long ln = 0;

  *out = NULL;
  errno = 0;
  gzFile f = gzopen(path, "rb");
  if (!f) {
    seterr(err, errlen, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
    return -1;
  }
  seen = calloc((size_t)CODES * CODES, sizeof *seen);
  dense = malloc(CODES * sizeof *dense);
  if (!seen || !dense) {
    seterr(err, errlen, "%s: out of memory", path);
    goto fail;
  }
  for (int i = 0; i < CODES; i++)
    dense[i] = -1;

  for (;;) {
    if (!gzgets(f, line, sizeof line)) {
      int zerr;
      const char *msg = gzerror(f, &zerr);
      if (zerr != Z_OK && zerr != Z_STREAM_END) {
        seterr(err, errlen, "%s:%ld: read error: %s", path, ln + 1, zmsg(msg, path));
        goto fail;
      }
      break;
    }
    ln++;
    size_t len = strlen(line);
    if (len == 0 || line[len - 1] != '\n') {
      /* a line without its newline: the last one, a cut-off gzip stream
       * (zlib returns the partial line, then reports the error), or junk */
      int zerr;
      const char *msg = gzerror(f, &zerr);
      if (zerr != Z_OK && zerr != Z_STREAM_END) {
        seterr(err, errlen, "%s:%ld: read error: %s", path, ln, zmsg(msg, path));
        goto fail;
      }
      if (!gzeof(f)) {
        seterr(err, errlen, "%s:%ld: line too long or contains a NUL byte", path, ln);
        goto fail;
      }
    }
    chomp(line);
    if (ln == 1) {
      if (strcmp(line, rtt_header) != 0) {
        seterr(err, errlen, "%s:1: bad header (want \"%s\")", path, rtt_header);
        goto fail;
      }
      continue;
    }
    if (ln > SIM_RTT_MAX_ROWS + 1) {
      seterr(err, errlen, "%s:%ld: too many lines (cap %d rows)", path, ln, SIM_RTT_MAX_ROWS);
      goto fail;
    }
    if (!line[0])
      continue; /* blank lines carry nothing */
    rtt_pair p;
    int rc = parse_row(line, &p, path, ln, err, errlen);
    if (rc < 0)
      goto fail;
    if (rc > 0) {
      skipped++;
      continue;
    }
    uint32_t *s = &seen[p.a * CODES + p.b];
    if (*s) {
      seterr(err, errlen, "%s:%ld: duplicate pair %c%c,%c%c (first at line %u)", path, ln,
             'A' + p.a / 26, 'A' + p.a % 26, 'A' + p.b / 26, 'A' + p.b % 26, *s);
      goto fail;
    }
    *s = (uint32_t)ln;
    if (npairs == apairs) {
      size_t na = apairs ? 2 * apairs : 256;
      rtt_pair *np = realloc(pairs, na * sizeof *np);
      if (!np) {
        seterr(err, errlen, "%s: out of memory", path);
        goto fail;
      }
      pairs = np;
      apairs = na;
    }
    pairs[npairs++] = p;
    dense[p.a] = dense[p.b] = 0; /* mark used; numbered below */
  }
  if (ln == 0) {
    seterr(err, errlen, "%s:1: empty file (want header \"%s\")", path, rtt_header);
    goto fail;
  }
  if (npairs == 0) {
    seterr(err, errlen, "%s:%ld: no data rows (%zu with unlocated countries skipped)", path, ln,
           skipped);
    goto fail;
  }

  t = calloc(1, sizeof *t);
  if (!t)
    goto oom;
  for (int i = 0; i < CODES; i++)
    if (dense[i] == 0)
      dense[i] = t->n++;
  if (t->n > SIM_RTT_MAX_COUNTRIES) { /* defensive: CODES is below the cap */
    seterr(err, errlen, "%s: too many countries (%d, cap %d)", path, t->n, SIM_RTT_MAX_COUNTRIES);
    goto fail;
  }
  size_t n = (size_t)t->n;
  t->names = calloc(n, sizeof *t->names);
  t->cum = calloc(n, sizeof *t->cum);
  t->cell = malloc(n * n * sizeof *t->cell);
  weight = calloc(n, sizeof *weight);
  if (!t->names || !t->cum || !t->cell || !weight)
    goto oom;
  for (int i = 0; i < CODES; i++) {
    if (dense[i] >= 0) {
      t->names[dense[i]][0] = (char)('A' + i / 26);
      t->names[dense[i]][1] = (char)('A' + i % 26);
    }
  }
  for (size_t i = 0; i < n * n; i++)
    t->cell[i] = -1;
  double sum = 0, same_sum = 0;
  size_t same_n = 0;
  for (size_t i = 0; i < npairs; i++) {
    rtt_pair *p = &pairs[i];
    p->a = dense[p->a];
    p->b = dense[p->b];
    t->cell[(size_t)p->a * n + (size_t)p->b] = (int32_t)i;
    t->cell[(size_t)p->b * n + (size_t)p->a] = (int32_t)i;
    weight[p->a] += p->cnt;
    if (p->b != p->a)
      weight[p->b] += p->cnt;
    sum += p->avg;
    if (p->a == p->b) {
      same_sum += p->avg;
      same_n++;
    }
  }
  uint64_t acc = 0;
  for (size_t i = 0; i < n; i++)
    t->cum[i] = acc += weight[i];
  t->global_mean = sum / (double)npairs;
  t->has_same = same_n > 0;
  t->same_mean = same_n ? same_sum / (double)same_n : 0;
  t->pairs = pairs;
  t->npairs = npairs;
  free(weight);
  free(dense);
  free(seen);
  gzclose(f);
  *out = t;
  return 0;

oom:
  seterr(err, errlen, "%s: out of memory", path);
fail:
  free(weight);
  sim_rtt_free(t);
  free(pairs);
  free(dense);
  free(seen);
  gzclose(f);
  return -1;
}

/* Frees t and everything it owns; NULL is fine. */
void sim_rtt_free(sim_rtt *t) {
  if (!t)
    return;
  free(t->names);
  free(t->cum);
  free(t->cell);
  free(t->pairs);
  free(t);
}

int sim_rtt_countries(const sim_rtt *t) {
  return t ? t->n : 0;
}

const char *sim_rtt_country_name(const sim_rtt *t, int c) {
  if (!t || c < 0 || c >= t->n)
    return NULL;
  return t->names[c];
}

/* Weighted by measurement counts; uniform if every count is 0.  Consumes
 * exactly one sim_rng_below draw. */
int sim_rtt_pick_country(const sim_rtt *t, sim_rng *r) {
  assert(t && t->n > 0);
  uint64_t total = t->cum[t->n - 1];
  if (total == 0)
    return (int)sim_rng_below(r, (uint64_t)t->n);
  uint64_t x = sim_rng_below(r, total);
  int lo = 0, hi = t->n - 1; /* first i with cum[i] > x */
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if (t->cum[mid] > x)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

/* The link draws: splitmix64 on a state derived from (link_seed,
 * SIM_RTT_LINK_STREAM).  A link's RTT is drawn again for every datagram that
 * crosses it (storing 10^10 links is not an option), so this must be cheap:
 * a sim_rng would cost a BLAKE2b and a ChaCha20 block per datagram. */
typedef struct link_rng {
  uint64_t s;
} link_rng;

static uint64_t link_next(link_rng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double link_unit(link_rng *r) {
  return (double)(link_next(r) >> 11) * 0x1p-53;
}

/* Marsaglia's polar method, as sim_rng_normal. */
static double link_normal(link_rng *r) {
  double u, v, s;
  do {
    u = 2.0 * link_unit(r) - 1.0;
    v = 2.0 * link_unit(r) - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  return u * sqrt(-2.0 * log(s) / s);
}

/* With data: a normal(avg, std) draw from the link's stream, redrawn up to SIM_RTT_TRIES times
 * until inside [min, max], then clamped; std 0 gives avg.  Without data for the pair: same country
 * -> the mean rtt_avg of all self pairs (if the file has any); otherwise -> the mean rtt_avg over
 * all pairs (unweighted: a "typical pair", not a typical ping, which big countries would dominate).
 * The fallbacks are constants: no spread is invented for pairs never measured. Out-of-range
 * countries (a caller bug) also get the global mean. */
double sim_rtt_link(const sim_rtt *t, int ca, int cb, uint64_t link_seed) {
  assert(t && ca >= 0 && ca < t->n && cb >= 0 && cb < t->n);
  double v = t->global_mean;
  if (ca >= 0 && ca < t->n && cb >= 0 && cb < t->n) {
    int32_t i = t->cell[(size_t)ca * (size_t)t->n + (size_t)cb];
    if (i >= 0) {
      const rtt_pair *p = &t->pairs[i];
      v = p->avg;
      if (p->std > 0) {
        /* The RIPE Atlas aggregates carry outliers (DE-US: sd 148 ms around
         * a 114 ms mean, min 0, max 301 s), so [min, max] alone lets many
         * links come out physically impossible.  A link's base RTT is the
         * pair's normal truncated to [min, max] and to [avg/2, 2 avg]. */
        double lo = p->min > p->avg / 2 ? p->min : p->avg / 2;
        double hi = p->max < p->avg * 2 ? p->max : p->avg * 2;
        if (lo > hi)
          lo = hi = p->avg;
        link_rng r = {link_seed};
        r.s = link_next(&r) ^ SIM_RTT_LINK_STREAM;
        for (int k = 0; k < SIM_RTT_TRIES; k++) {
          v = p->avg + p->std * link_normal(&r);
          if (v >= lo && v <= hi)
            break;
        }
        if (v < lo)
          v = lo;
        if (v > hi)
          v = hi;
      }
    } else if (ca == cb && t->has_same) {
      v = t->same_mean;
    }
  }
  return v < SIM_RTT_FLOOR_MS ? SIM_RTT_FLOOR_MS : v;
}

/* Distance on the unit torus: each axis wraps, so the farthest two points
 * can be is sqrt(0.5).  Coordinates outside [0, 1) are reduced first. */
double sim_synth_rtt(sim_coord a, sim_coord b, double base_ms, double per_unit_ms) {
  double dx = fabs((double)a.x - (double)b.x);
  double dy = fabs((double)a.y - (double)b.y);
  dx -= floor(dx);
  dy -= floor(dy);
  if (dx > 0.5)
    dx = 1.0 - dx;
  if (dy > 0.5)
    dy = 1.0 - dy;
  return base_ms + per_unit_ms * sqrt(dx * dx + dy * dy);
}

/*
 * node_cli.c - roost's commands: for each command of docs/cli.md, the
 * request it sends to roostd and how it shows the reply (aligned text for
 * people; with --json the result object unchanged on one line), the two
 * commands that need no daemon (init, id: they read or create the identity
 * key in the data directory), and node_cli_main, which checks that the
 * options given fit the command before running it.
 *
 * Invariants: nothing a daemon sends can crash it (a missing or mistyped
 * field prints "-"); the exit code is always one of EXIT_*.  The argument
 * syntax lives in node_cli_args.c, the protocol in node_cli_conn.c, the
 * formatting in node_cli_fmt.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "node_cli.h"

#define DEFAULT_TIMEOUT_MS 10000
#define WAIT_TIMEOUT_MS 30000                /* status --wait */
#define WAIT_GRACE_MS 3000                   /* we outwait roostd's own timeout to get its answer */
#define FOLLOW_TIMEOUT_MS ((int64_t)1 << 52) /* inbox --follow: until Ctrl-C */
#define STDIN_MAX (64 * 1024) /* a message read from stdin, before its limit is checked */

typedef struct command {
  const char *name;
  int min, max; /* positional arguments after the name */
  int (*run)(node_cli *c);
} command;

static int timeout_or(const node_cli *c, int64_t def) {
  return (int)(c->o.timeout_ms > 0 ? c->o.timeout_ms : def);
}

/* ---- commands without a daemon ----------------------------------------- */

/* Prints the identity as JSON: id, node_id and, for init, created and
 * data_dir. */
static void print_identity_json(const node_cli *c, const uint8_t pk[static DHT_PK_LEN],
                                int created) {
  char text[NODE_IDTEXT_LEN + 1], nid[2 * DHT_ID_LEN + 1];
  uint8_t id[DHT_ID_LEN];
  node_idtext_encode(pk, text);
  dht_id_from_pk(id, pk);
  node_proto_hex(id, sizeof id, nid);
  node_jw w;
  node_jw_init(&w, 8192);
  node_jw_obj(&w);
  node_jw_kstr(&w, "id", text);
  node_jw_kstr(&w, "node_id", nid);
  if (created >= 0) {
    node_jw_kbool(&w, "created", created);
    node_jw_kstr(&w, "data_dir", c->cfg.data_dir);
  }
  node_jw_obj_end(&w);
  const char *s = node_jw_done(&w, NULL);
  if (s)
    printf("%s\n", s);
  node_jw_free(&w);
}

static void key_path(const node_cli *c, char *out, size_t len) {
  snprintf(out, len, "%s/identity.key", c->cfg.data_dir);
}

static int cmd_init(node_cli *c) {
  char err[PATH_MAX + 256], path[PATH_MAX + 32];
  if (node_dir_prepare(c->cfg.data_dir, err, sizeof err) != 0)
    return node_cli_fail(c, EXIT_FAILED, "failed", "%s", err);
  key_path(c, path, sizeof path);
  struct stat st;
  bool existed = lstat(path, &st) == 0;
  dht_identity ident;
  if (node_identity_load(path, &ident, !existed, err, sizeof err) != 0)
    return node_cli_fail(c, EXIT_FAILED, "failed", "%s", err);
  uint8_t pk[DHT_PK_LEN];
  memcpy(pk, ident.pk, sizeof pk);
  sodium_memzero(&ident, sizeof ident);
  char text[NODE_IDTEXT_LEN + 1];
  node_idtext_encode(pk, text);
  if (c->o.json)
    print_identity_json(c, pk, !existed);
  else if (existed)
    printf("identity already exists: %s\n", text);
  else
    printf("created identity %s in %s\n", text, c->cfg.data_dir);
  return EXIT_OK;
}

static int cmd_id(node_cli *c) {
  char err[PATH_MAX + 256], path[PATH_MAX + 32];
  key_path(c, path, sizeof path);
  dht_identity ident;
  if (node_identity_load(path, &ident, false, err, sizeof err) != 0)
    return node_cli_fail(c, EXIT_FAILED, "failed", "%s", err);
  uint8_t pk[DHT_PK_LEN];
  memcpy(pk, ident.pk, sizeof pk);
  sodium_memzero(&ident, sizeof ident);
  if (c->o.json) {
    print_identity_json(c, pk, -1);
  } else {
    char text[NODE_IDTEXT_LEN + 1];
    node_idtext_encode(pk, text);
    printf("%s\n", text);
  }
  return EXIT_OK;
}

static int cmd_help(node_cli *c) {
  (void)c;
  node_cli_usage(stdout);
  return EXIT_OK;
}

/* ---- commands through roostd -------------------------------------------- */

/* Checks an ID typed by the user and writes its canonical (lower-case)
 * form.  0, or a usage error after reporting. */
static int check_id(const node_cli *c, const char *s, char out[static NODE_IDTEXT_LEN + 1]) {
  uint8_t pk[DHT_PK_LEN];
  int rv = node_idtext_decode(s, pk);
  if (rv == -1)
    return node_cli_fail(c, EXIT_USAGE, "usage", "'%s' is not a roost ID (%d characters a-z, 2-7)",
                         s, NODE_IDTEXT_LEN);
  if (rv == -2)
    return node_cli_fail(c, EXIT_USAGE, "usage",
                         "the ID '%s' has a typo (its checksum does not match)", s);
  node_idtext_encode(pk, out);
  return 0;
}

static void kv(const char *key, const char *value) {
  printf("%-16s%s\n", key, value);
}

/* Prints a list value: the first item after the key, the rest aligned
 * under it. */
static void kv_item(const char *key, int index, const char *value) {
  kv(index == 0 ? key : "", value);
}

static void print_status(const json_t *res) {
  char a[512], b[64], d[64], e[64], line[768];
  int64_t v;
  kv("state", node_cli_str(json_object_get(res, "state"), a, sizeof a));
  kv("ID", node_cli_str(json_object_get(res, "id"), a, sizeof a));
  kv("mode", node_cli_str(json_object_get(res, "mode"), a, sizeof a));
  if (json_object_get(res, "public_address"))
    kv("public address", node_cli_str(json_object_get(res, "public_address"), a, sizeof a));
  if (json_object_get(res, "reachability"))
    kv("reachable", node_cli_str(json_object_get(res, "reachability"), a, sizeof a));
  kv("version", node_cli_str(json_object_get(res, "version"), a, sizeof a));
  if (node_cli_int(json_object_get(res, "uptime_s"), &v))
    node_cli_duration(v, a, sizeof a);
  else
    snprintf(a, sizeof a, "-");
  kv("uptime", a);
  kv("table size", node_cli_num(json_object_get(res, "table_size"), a, sizeof a));
  kv("buckets", node_cli_num(json_object_get(res, "buckets"), a, sizeof a));
  kv("records stored", node_cli_num(json_object_get(res, "records_stored"), a, sizeof a));

  const json_t *l = json_object_get(res, "listen"), *x;
  size_t i;
  int shown = 0;
  json_array_foreach(l, i, x) {
    kv_item("listen", shown++, node_cli_str(x, a, sizeof a));
  }
  if (!shown)
    kv("listen", "-");

  const json_t *ad = json_object_get(res, "addresses");
  shown = 0;
  json_array_foreach(ad, i, x) {
    node_cli_str(json_object_get(x, "type"), b, sizeof b);
    node_cli_str(json_object_get(x, "addr"), a, sizeof a);
    snprintf(line, sizeof line, "%-10s%s", b, a);
    kv_item("addresses", shown++, line);
  }
  if (!shown)
    kv("addresses", "-");

  snprintf(line, sizeof line, "rx %s, tx %s, dropped %s",
           node_cli_num(json_object_get(res, "rx_packets"), b, sizeof b),
           node_cli_num(json_object_get(res, "tx_packets"), d, sizeof d),
           node_cli_num(json_object_get(res, "dropped"), e, sizeof e));
  kv("packets", line);
}

/* status --wait: "bootstrapping: 12 contacts..." on stderr. */
static void status_progress(const node_cli *c, const json_t *prog) {
  (void)c;
  char state[64], n[32];
  const json_t *st = json_object_get(prog, "state");
  const json_t *ts = json_object_get(prog, "table_size");
  if (!ts)
    ts = json_object_get(prog, "contacts");
  node_cli_str(st, state, sizeof state);
  if (!st)
    snprintf(state, sizeof state, "waiting");
  if (ts)
    fprintf(stderr, "%s: %s contacts...\n", state, node_cli_num(ts, n, sizeof n));
  else
    fprintf(stderr, "%s...\n", state);
}

static int cmd_status(node_cli *c) {
  node_jw w;
  node_cli_req_begin(&w, "status");
  int64_t timeout = timeout_or(c, c->o.wait ? WAIT_TIMEOUT_MS : DEFAULT_TIMEOUT_MS);
  if (c->o.wait) {
    node_cli_req_args(&w);
    node_jw_kbool(&w, "wait", true);
    node_jw_kint(&w, "timeout_ms", timeout);
    node_jw_obj_end(&w);
    timeout += WAIT_GRACE_MS; /* roostd's own "timeout" error says more than ours */
    c->wait_start = true;
  }
  node_cli_reply r;
  int rv = node_cli_remote(c, &w, timeout, c->o.wait ? status_progress : NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = json_object_get(r.root, "result");
  if (c->o.json)
    node_cli_print_result(res);
  else
    print_status(res);
  node_cli_reply_free(&r);
  return EXIT_OK;
}

enum { PCOLS = 5 };

static int cmd_peers(node_cli *c) {
  c->line_max = NODE_PROTO_BIG_MAX;
  node_jw w;
  node_cli_req_begin(&w, "peers");
  node_cli_reply r;
  int rv = node_cli_remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = json_object_get(r.root, "result");
  if (c->o.json) {
    node_cli_print_result(res);
    node_cli_reply_free(&r);
    return EXIT_OK;
  }
  const json_t *arr = json_object_get(res, "peers"), *x;
  int count = (int)json_array_size(arr);
  if (count == 0) {
    printf("no peers in the routing table\n");
    node_cli_reply_free(&r);
    return EXIT_OK;
  }
  typedef char cell[DHT_ADDR_STRLEN + 16];
  cell *cells = calloc((size_t)(count + 1) * PCOLS, sizeof *cells);
  if (!cells) {
    node_cli_reply_free(&r);
    return node_cli_fail(c, EXIT_FAILED, "failed", "out of memory");
  }
  static const char *const head[PCOLS] = {"ID", "ADDRESS", "RTT", "LAST SEEN", "FAILS"};
  size_t width[PCOLS] = {0};
  for (int j = 0; j < PCOLS; j++)
    snprintf(cells[j], sizeof cells[j], "%s", head[j]);
  size_t i;
  json_array_foreach(arr, i, x) {
    cell *row = cells + (i + 1) * PCOLS;
    char idt[NODE_IDTEXT_LEN + 8], num[32];
    int64_t v;
    node_cli_str(json_object_get(x, "id"), idt, sizeof idt);
    if (strlen(idt) > 12)
      snprintf(row[0], sizeof row[0], "%.12s\u2026", idt);
    else
      snprintf(row[0], sizeof row[0], "%s", idt);
    node_cli_str(json_object_get(x, "addr"), row[1], sizeof row[1]);
    const json_t *rtt = json_object_get(x, "rtt_ms");
    if (json_is_number(rtt))
      snprintf(row[2], sizeof row[2], "%s ms", node_cli_num(rtt, num, sizeof num));
    else
      snprintf(row[2], sizeof row[2], "-");
    const json_t *seen = json_object_get(x, "last_reply_s");
    if (json_is_null(seen)) {
      snprintf(row[3], sizeof row[3], "never");
    } else if (node_cli_int(seen, &v)) {
      node_cli_duration(v, num, sizeof num);
      snprintf(row[3], sizeof row[3], "%s ago", num);
    } else {
      snprintf(row[3], sizeof row[3], "-");
    }
    node_cli_num(json_object_get(x, "fails"), row[4], sizeof row[4]);
  }
  for (int k = 0; k <= count; k++)
    for (int j = 0; j < PCOLS; j++) {
      size_t n = node_cli_columns(cells[(size_t)k * PCOLS + (size_t)j]);
      if (n > width[j])
        width[j] = n;
    }
  for (int k = 0; k <= count; k++) {
    for (int j = 0; j < PCOLS; j++) {
      const char *s = cells[(size_t)k * PCOLS + (size_t)j];
      if (j == PCOLS - 1)
        fputs(s, stdout);
      else
        node_cli_pad(stdout, s, width[j] + 2);
    }
    fputc('\n', stdout);
  }
  free(cells);
  node_cli_reply_free(&r);
  return EXIT_OK;
}

static int cmd_lookup(node_cli *c) {
  char id[NODE_IDTEXT_LEN + 1];
  int rv = check_id(c, c->o.pos[0], id);
  if (rv)
    return rv;
  node_jw w;
  node_cli_req_begin(&w, "lookup");
  node_cli_req_args(&w);
  node_jw_kstr(&w, "id", id);
  node_jw_obj_end(&w);
  node_cli_reply r;
  if ((rv = node_cli_remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL)) != EXIT_OK)
    return rv;
  const json_t *res = json_object_get(r.root, "result");
  if (c->o.json) {
    node_cli_print_result(res);
    node_cli_reply_free(&r);
    return EXIT_OK;
  }
  const json_t *ad = json_object_get(res, "addresses"), *x;
  size_t count = json_array_size(ad), i;
  size_t tw = 0;
  char type[64], addr[512], a[32], b[32], d[32];
  json_array_foreach(ad, i, x) {
    size_t n = node_cli_columns(node_cli_str(json_object_get(x, "type"), type, sizeof type));
    if (n > tw)
      tw = n;
  }
  json_array_foreach(ad, i, x) {
    node_cli_pad(stdout, node_cli_str(json_object_get(x, "type"), type, sizeof type), tw + 2);
    printf("%s\n", node_cli_str(json_object_get(x, "addr"), addr, sizeof addr));
  }
  if (count == 0)
    printf("the record lists no addresses\n");
  if (!json_is_true(json_object_get(res, "reachable")))
    printf("not reachable directly (its NAT: %s)\n",
           node_cli_str(json_object_get(res, "nat"), type, sizeof type));
  json_array_foreach(json_object_get(res, "introducers"), i, x) {
    char who[64];
    printf("introducer %s at %s\n", node_cli_str(json_object_get(x, "id"), who, sizeof who),
           node_cli_str(json_object_get(x, "address"), addr, sizeof addr));
  }
  node_cli_num(json_object_get(res, "rounds"), a, sizeof a);
  node_cli_num(json_object_get(res, "messages"), b, sizeof b);
  printf("found in %s round%s, %s message%s, %s ms\n", a, strcmp(a, "1") ? "s" : "", b,
         strcmp(b, "1") ? "s" : "", node_cli_num(json_object_get(res, "time_ms"), d, sizeof d));
  node_cli_reply_free(&r);
  return EXIT_OK;
}

static int cmd_ping(node_cli *c) {
  char id[NODE_IDTEXT_LEN + 1];
  int rv = check_id(c, c->o.pos[0], id);
  if (rv)
    return rv;
  char addr[DHT_ADDR_STRLEN];
  if (c->o.npos > 1) {
    dht_addr a;
    if (node_addr_parse(c->o.pos[1], &a) != 0)
      return node_cli_fail(
          c, EXIT_USAGE, "usage",
          "'%s' is not a numeric HOST:PORT (e.g. 192.0.2.1:7464 or [2001:db8::1]:7464)",
          c->o.pos[1]);
    dht_addr_fmt(&a, addr, sizeof addr);
  }
  node_jw w;
  node_cli_req_begin(&w, "ping");
  node_cli_req_args(&w);
  node_jw_kstr(&w, "id", id);
  if (c->o.npos > 1)
    node_jw_kstr(&w, "addr", addr);
  node_jw_obj_end(&w);
  node_cli_reply r;
  if ((rv = node_cli_remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL)) != EXIT_OK)
    return rv;
  const json_t *res = json_object_get(r.root, "result");
  if (c->o.json) {
    node_cli_print_result(res);
  } else {
    char from[512], seen[512], rtt[32];
    printf("reply from %s in %s ms (it sees us as %s)\n",
           node_cli_str(json_object_get(res, "addr"), from, sizeof from),
           node_cli_num(json_object_get(res, "rtt_ms"), rtt, sizeof rtt),
           node_cli_str(json_object_get(res, "seen_as"), seen, sizeof seen));
  }
  node_cli_reply_free(&r);
  return EXIT_OK;
}

static int cmd_bootstrap(node_cli *c) {
  if (strcmp(c->o.pos[0], "add") != 0)
    return node_cli_fail(c, EXIT_USAGE, "usage",
                         "unknown bootstrap command '%s' (only: bootstrap add)", c->o.pos[0]);
  if (c->o.npos < 2)
    return node_cli_fail(c, EXIT_USAGE, "usage", "bootstrap add needs ID@HOST:PORT");
  dht_peer p;
  char err[512];
  if (node_peer_parse(c->o.pos[1], &p, err, sizeof err) != 0)
    return node_cli_fail(c, EXIT_USAGE, "usage", "%s", err);
  char peer[NODE_IDTEXT_LEN + 1 + DHT_ADDR_STRLEN + 1], id[NODE_IDTEXT_LEN + 1];
  char addr[DHT_ADDR_STRLEN];
  node_idtext_encode(p.pk, id);
  snprintf(peer, sizeof peer, "%s@%s", id, dht_addr_fmt(&p.addr, addr, sizeof addr));
  node_jw w;
  node_cli_req_begin(&w, "bootstrap_add");
  node_cli_req_args(&w);
  node_jw_kstr(&w, "peer", peer);
  node_jw_obj_end(&w);
  node_cli_reply r;
  int rv = node_cli_remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  if (c->o.json)
    node_cli_print_result(json_object_get(r.root, "result"));
  else
    printf("added bootstrap peer %s; roostd is joining through it\n", peer);
  node_cli_reply_free(&r);
  return EXIT_OK;
}

/* roost nat: how peers see us, per family, in plain words. */
static int cmd_nat(node_cli *c) {
  node_jw w;
  node_cli_req_begin(&w, "nat");
  node_cli_reply r;
  int rv = node_cli_remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = json_object_get(r.root, "result");
  if (c->o.json) {
    node_cli_print_result(res);
    node_cli_reply_free(&r);
    return EXIT_OK;
  }
  char a[256], b[64], line[512];
  const json_t *fams = json_object_get(res, "families"), *x;
  size_t i;
  json_array_foreach(fams, i, x) {
    node_cli_str(json_object_get(x, "family"), b, sizeof b);
    snprintf(line, sizeof line, "public %s", b);
    kv(line, node_cli_str(json_object_get(x, "summary"), a, sizeof a));
    snprintf(line, sizeof line, "%s NAT", b);
    node_cli_str(json_object_get(x, "mapping"), a, sizeof a);
    kv(line, !strcmp(a, "endpoint-independent")
                 ? "endpoint-independent mapping (one public port for every peer)"
             : !strcmp(a, "symmetric") ? "symmetric (a new public port for every peer)"
                                       : "not known yet");
    snprintf(line, sizeof line, "%s reachable", b);
    node_cli_str(json_object_get(x, "reachable"), a, sizeof a);
    kv(line, !strcmp(a, "reachable")       ? "yes (a dial-back got in)"
             : !strcmp(a, "not reachable") ? "no (dial-backs did not get in)"
                                           : "not known yet");
  }
  snprintf(line, sizeof line, "%s asked, %s reports taken",
           node_cli_num(json_object_get(res, "witnesses_asked"), a, sizeof a),
           node_cli_num(json_object_get(res, "reports"), b, sizeof b));
  kv("witnesses", line);
  const json_t *maps = json_object_get(res, "mappings");
  int shown = 0;
  json_array_foreach(maps, i, x) {
    char p[32], st[32], ext[64], pr[32], er[128];
    node_cli_str(json_object_get(x, "protocol"), p, sizeof p);
    node_cli_str(json_object_get(x, "state"), st, sizeof st);
    node_cli_str(json_object_get(x, "external"), ext, sizeof ext);
    node_cli_str(json_object_get(x, "proof"), pr, sizeof pr);
    node_cli_str(json_object_get(x, "last_error"), er, sizeof er);
    int64_t left = -1;
    node_cli_int(json_object_get(x, "lease_left_s"), &left);
    const json_t *bn = json_object_get(x, "behind_another_nat");
    char lease[48];
    if (left < 0)
      snprintf(lease, sizeof lease, "permanent lease");
    else
      snprintf(lease, sizeof lease, "lease %lld s left", (long long)left);
    if (!strcmp(st, "mapped") || !strcmp(st, "renewing"))
      snprintf(line, sizeof line, "%s %s, %s, %s", p, ext, pr, lease);
    else
      snprintf(line, sizeof line, "%s %s%s%s", p, st, er[0] ? ": " : "", er);
    if (json_is_true(bn))
      snprintf(line + strlen(line), sizeof line - strlen(line),
               " (behind a carrier NAT or a double NAT: port mapping cannot help)");
    kv_item("port mapping", shown++, line);
  }
  if (!shown)
    kv("port mapping", "off (or nothing to map)");
  kv("reachable", node_cli_str(json_object_get(res, "reachability"), a, sizeof a));
  shown = 0;
  json_array_foreach(json_object_get(res, "introducers"), i, x) {
    char id[64], ad[64];
    int64_t since = 0, rtt = 0;
    node_cli_int(json_object_get(x, "since_s"), &since);
    node_cli_int(json_object_get(x, "rtt_ms"), &rtt);
    snprintf(line, sizeof line, "%s at %s, answering for %lld s, RTT %lld ms",
             node_cli_str(json_object_get(x, "id"), id, sizeof id),
             node_cli_str(json_object_get(x, "address"), ad, sizeof ad), (long long)since,
             (long long)rtt);
    kv_item("introducer", shown++, line);
  }
  shown = 0;
  json_array_foreach(json_object_get(res, "paths"), i, x) {
    char id[64], ad[64], me[16];
    int64_t since = 0, heard = 0;
    node_cli_int(json_object_get(x, "since_s"), &since);
    node_cli_int(json_object_get(x, "last_heard_s"), &heard);
    snprintf(line, sizeof line, "%.12s... %s at %s, for %lld s, last heard %lld s ago",
             node_cli_str(json_object_get(x, "id"), id, sizeof id),
             node_cli_str(json_object_get(x, "method"), me, sizeof me),
             node_cli_str(json_object_get(x, "address"), ad, sizeof ad), (long long)since,
             (long long)heard);
    kv_item("path", shown++, line);
  }
  shown = 0;
  json_array_foreach(json_object_get(res, "punches"), i, x) {
    char id[64], ad[64], sd[16];
    int64_t ms = 0, ago = 0, att = 0;
    node_cli_int(json_object_get(x, "ms"), &ms);
    node_cli_int(json_object_get(x, "ago_s"), &ago);
    node_cli_int(json_object_get(x, "attempts"), &att);
    bool ok = json_is_true(json_object_get(x, "ok"));
    snprintf(line, sizeof line, "%.12s... (%s): %s%s after %lld ms, %lld attempt(s), %lld s ago",
             node_cli_str(json_object_get(x, "id"), id, sizeof id),
             node_cli_str(json_object_get(x, "side"), sd, sizeof sd), ok ? "path to " : "no path",
             ok ? node_cli_str(json_object_get(x, "address"), ad, sizeof ad) : "", (long long)ms,
             (long long)att, (long long)ago);
    kv_item("punch", shown++, line);
  }
  snprintf(line, sizeof line, "%s (setting: %s)",
           node_cli_str(json_object_get(res, "mode"), a, sizeof a),
           node_cli_str(json_object_get(res, "mode_setting"), b, sizeof b));
  kv("DHT mode", line);
  node_cli_reply_free(&r);
  return EXIT_OK;
}

static int cmd_metrics(node_cli *c) {
  node_jw w;
  node_cli_req_begin(&w, "metrics");
  node_cli_reply r;
  int rv = node_cli_remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = json_object_get(r.root, "result");
  if (c->o.json) {
    node_cli_print_result(res);
    node_cli_reply_free(&r);
    return EXIT_OK;
  }
  const json_t *tx = json_object_get(res, "text");
  size_t cap = json_string_length(tx) + 1;
  char *text = malloc(cap);
  int n = text ? node_json_str(tx, text, cap) : -1;
  if (n < 0) {
    free(text);
    node_cli_reply_free(&r);
    return node_cli_fail(c, EXIT_FAILED, "protocol", "roostd's metrics reply has no text");
  }
  fwrite(text, 1, (size_t)n, stdout);
  free(text);
  node_cli_reply_free(&r);
  return EXIT_OK;
}

/* True once nothing answers on the socket any more. */
static bool socket_gone(const node_cli *c) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, c->sock, strlen(c->sock) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return false;
  int rv = connect(fd, (struct sockaddr *)&sa, sizeof sa);
  int e = errno;
  close(fd);
  return rv != 0 && (e == ENOENT || e == ECONNREFUSED);
}

/* 1 once no process holds DATA_DIR/roostd.lock (roostd holds it until it
 * exits; a zombie holds nothing), 0 while one does, -1 when there is no lock
 * file to ask or we do not know the data directory (--socket alone).  The
 * probe is a shared lock dropped at once: a roostd starting in that instant
 * would refuse to start, which is why it is only asked during stop. */
static int lock_released(const node_cli *c) {
  if (c->o.socket && !c->o.data_dir)
    return -1;
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/roostd.lock", c->cfg.data_dir);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return -1;
  int rv = flock(fd, LOCK_SH | LOCK_NB);
  int e = errno;
  close(fd); /* drops the lock if we got it */
  if (rv == 0)
    return 1;
  return e == EWOULDBLOCK ? 0 : -1;
}

static void nap_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

static int cmd_stop(node_cli *c) {
  int64_t timeout = timeout_or(c, DEFAULT_TIMEOUT_MS);
  int64_t deadline = node_cli_now_ms() + timeout;
  node_jw w;
  node_cli_req_begin(&w, "stop");
  node_cli_reply r;
  node_cli_conn k;
  int rv = node_cli_remote(c, &w, timeout, NULL, &r, &k);
  if (rv != EXIT_OK && rv != CALL_CLOSED) {
    node_cli_conn_close(&k);
    return rv;
  }
  /* roostd has said yes (or has gone already): wait for our connection to
   * close, then for the socket to stop answering */
  bool closed = rv == CALL_CLOSED;
  while (!closed && node_cli_now_ms() < deadline) {
    char *line = NULL;
    size_t len;
    bool partial;
    int lr = node_cli_conn_line(&k, deadline, &line, &len, &partial);
    free(line);
    if (lr == LINE_EOF || lr == LINE_IOERR || lr == LINE_TOOLONG)
      closed = true;
  }
  node_cli_conn_close(&k);
  bool gone = false;
  while (closed && !(gone = socket_gone(c)) && node_cli_now_ms() < deadline)
    nap_ms(50);
  /* the socket goes before the process does: wait for the exit itself, so
   * that "roost stop && roostd ..." finds the data directory free */
  int released = gone ? lock_released(c) : -1;
  while (released == 0 && node_cli_now_ms() < deadline) {
    nap_ms(50);
    released = lock_released(c);
  }
  if (!gone || released == 0) {
    if (rv == EXIT_OK)
      node_cli_reply_free(&r);
    return node_cli_fail(c, EXIT_FAILED, "timeout",
                         "roostd accepted the stop command but %s after %.3g s",
                         gone ? "has not exited" : "still answers", (double)timeout / 1000.0);
  }
  if (c->o.json)
    node_cli_print_result(rv == EXIT_OK ? json_object_get(r.root, "result") : NULL);
  else
    printf("roostd stopped\n");
  if (rv == EXIT_OK)
    node_cli_reply_free(&r);
  return EXIT_OK;
}

/* ---- messaging ------------------------------------------------------------ */

static int cmd_invite(node_cli *c) {
  int64_t days = 7;
  if (c->o.expires && (days = node_cli_parse_count(c->o.expires, 1, 365)) < 0)
    return node_cli_fail(c, EXIT_USAGE, "usage",
                         "--expires: '%s' is not a number of days from 1 to 365", c->o.expires);
  node_jw w;
  node_cli_req_begin(&w, "invite");
  node_cli_req_args(&w);
  node_jw_kint(&w, "expires_days", days);
  node_jw_obj_end(&w);
  node_cli_reply r;
  int rv = node_cli_remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = json_object_get(r.root, "result");
  if (c->o.json) {
    node_cli_print_result(res);
    node_cli_reply_free(&r);
    return EXIT_OK;
  }
  char text[NODE_INVITE_TEXT_MAX + 1], name[NODE_INVITE_NAME_MAX * 2 + 2], when[32];
  int64_t exp = 0;
  node_cli_str(json_object_get(res, "invite"), text, sizeof text);
  node_cli_str(json_object_get(res, "name"), name, sizeof name);
  node_cli_int(json_object_get(res, "expires_unix_s"), &exp);
  node_cli_reply_free(&r);
  node_cli_time(exp * 1000, when, sizeof when);
  bool qr = c->o.qr || (!c->o.no_qr && isatty(STDOUT_FILENO));
  if (qr && node_cli_qr(stdout, text) != 0)
    fprintf(stderr, "roost: cannot draw the QR code (the text below is the invite)\n");
  printf("%s\n", text);
  if (isatty(STDOUT_FILENO))
    printf("\nan invite from %s, valid until %s; your friend adds you with:\n"
           "  roost friend add %.24s...\n",
           *name ? name : "(no name)", when, text);
  return EXIT_OK;
}

static int friend_add_req(node_cli *c, const char *cmdname, const char *key, const char *val,
                          int64_t num) {
  node_jw w;
  node_cli_req_begin(&w, cmdname);
  node_cli_req_args(&w);
  if (val)
    node_jw_kstr(&w, key, val);
  else
    node_jw_kint(&w, key, num);
  if (c->o.name)
    node_jw_kstr(&w, "name", c->o.name);
  node_jw_obj_end(&w);
  node_cli_reply r;
  int rv = node_cli_remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = json_object_get(r.root, "result");
  if (c->o.json) {
    node_cli_print_result(res);
  } else {
    char name[160], id[80], req[160];
    bool added = true;
    node_json_bool(json_object_get(res, "added"), &added);
    node_cli_str(json_object_get(res, "name"), name, sizeof name);
    node_cli_str(json_object_get(res, "id"), id, sizeof id);
    node_cli_str(json_object_get(res, "request"), req, sizeof req);
    printf("%s %s (%s)\n", added ? "added friend" : "updated friend", name, id);
    if (!strcmp(req, "sent"))
      printf("a friend request with your invite went to them: they accept it with "
             "'roost friend requests' and 'roost friend accept N'\n");
    else
      printf("friend request %s; give them your invite ('roost invite')\n", req);
  }
  node_cli_reply_free(&r);
  return EXIT_OK;
}

static int simple(node_cli *c, const char *cmdname, const char *key, const char *val,
                  const char *done) {
  node_jw w;
  node_cli_req_begin(&w, cmdname);
  if (key) {
    node_cli_req_args(&w);
    node_jw_kstr(&w, key, val);
    node_jw_obj_end(&w);
  }
  node_cli_reply r;
  int rv = node_cli_remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  if (c->o.json)
    node_cli_print_result(json_object_get(r.root, "result"));
  else if (done)
    printf("%s\n", done);
  node_cli_reply_free(&r);
  return EXIT_OK;
}

static int cmd_friend(node_cli *c) {
  const char *sub = c->o.pos[0];
  int want = !strcmp(sub, "add") || !strcmp(sub, "remove") || !strcmp(sub, "accept") ? 2
             : !strcmp(sub, "list") || !strcmp(sub, "requests")                      ? 1
                                                                                     : -1;
  if (want < 0)
    return node_cli_fail(c, EXIT_USAGE, "usage",
                         "unknown friend command '%s' (add, list, remove, requests, accept)", sub);
  if (c->o.npos != want)
    return node_cli_fail(c, EXIT_USAGE, "usage", "friend %s: %s (usage: roost friend %s)", sub,
                         c->o.npos < want ? "missing argument" : "unexpected argument",
                         !strcmp(sub, "add")      ? "add INVITE [--name NAME]"
                         : !strcmp(sub, "remove") ? "remove NAME"
                         : !strcmp(sub, "accept") ? "accept N [--name NAME]"
                                                  : sub);
  if (c->o.name && strcmp(sub, "add") && strcmp(sub, "accept"))
    return node_cli_fail(c, EXIT_USAGE, "usage",
                         "--name only applies to friend add and friend accept");
  if (!strcmp(sub, "add")) {
    if (strncmp(c->o.pos[1], NODE_INVITE_PREFIX, strlen(NODE_INVITE_PREFIX)) != 0)
      return node_cli_fail(c, EXIT_USAGE, "usage",
                           "'%.40s' is not an invite (it starts with roost-invite:; 'roost invite' "
                           "prints one)",
                           c->o.pos[1]);
    return friend_add_req(c, "friend_add", "invite", c->o.pos[1], 0);
  }
  if (!strcmp(sub, "accept")) {
    int64_t n = node_cli_parse_count(c->o.pos[1], 1, 1000000);
    if (n < 0)
      return node_cli_fail(
          c, EXIT_USAGE, "usage",
          "friend accept: '%s' is not a request number (see roost friend requests)", c->o.pos[1]);
    return friend_add_req(c, "friend_accept", "n", NULL, n);
  }
  if (!strcmp(sub, "remove")) {
    char done[256];
    snprintf(done, sizeof done, "removed friend %s", c->o.pos[1]);
    return simple(c, "friend_remove", "name", c->o.pos[1], done);
  }
  bool list = !strcmp(sub, "list");
  c->line_max = NODE_PROTO_BIG_MAX;
  node_jw w;
  node_cli_req_begin(&w, list ? "friend_list" : "friend_requests");
  node_cli_reply r;
  int rv = node_cli_remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = json_object_get(r.root, "result");
  if (c->o.json) {
    node_cli_print_result(res);
    node_cli_reply_free(&r);
    return EXIT_OK;
  }
  const json_t *arr = json_object_get(res, list ? "friends" : "requests"), *x;
  int count = (int)json_array_size(arr);
  if (count == 0) {
    printf("%s\n", list ? "no friends yet: 'roost invite' prints an invite to give one"
                        : "no friend requests");
    node_cli_reply_free(&r);
    return EXIT_OK;
  }
  char(*cells)[160] = calloc((size_t)(count + 1) * 4, sizeof *cells);
  if (!cells) {
    node_cli_reply_free(&r);
    return node_cli_fail(c, EXIT_FAILED, "failed", "out of memory");
  }
  static const char *const lh[4] = {"NAME", "ID", "HOSTS", "ADDED"};
  static const char *const rh[4] = {"N", "NAME", "ID", "RECEIVED"};
  for (int j = 0; j < 4; j++)
    snprintf(cells[j], sizeof cells[j], "%s", list ? lh[j] : rh[j]);
  size_t i;
  json_array_foreach(arr, i, x) {
    char(*row)[160] = cells + (i + 1) * 4;
    int64_t v = 0;
    char id[80];
    node_cli_str(json_object_get(x, "id"), id, sizeof id);
    if (list) {
      node_cli_str(json_object_get(x, "name"), row[0], sizeof row[0]);
      snprintf(row[1], sizeof row[1], "%s", id);
      node_cli_num(json_object_get(x, "hosts"), row[2], sizeof row[2]);
      node_cli_int(json_object_get(x, "added_unix_ms"), &v);
      node_cli_time(v, row[3], sizeof row[3]);
    } else {
      node_cli_num(json_object_get(x, "n"), row[0], sizeof row[0]);
      const json_t *nm = json_object_get(x, "name");
      if (json_is_null(nm)) {
        char prob[140];
        snprintf(row[1], sizeof row[1], "(%s)",
                 node_cli_str(json_object_get(x, "problem"), prob, 120));
      } else {
        node_cli_str(nm, row[1], sizeof row[1]);
      }
      snprintf(row[2], sizeof row[2], "%s", id);
      node_cli_int(json_object_get(x, "received_unix_ms"), &v);
      node_cli_time(v, row[3], sizeof row[3]);
    }
  }
  node_cli_table(cells, count + 1, 4);
  free(cells);
  node_cli_reply_free(&r);
  return EXIT_OK;
}

/* The message of send: TEXT, or stdin for "-" or none.  0 and a malloc'd
 * *out, or an exit code after reporting. */
static int message_text(node_cli *c, char **out, size_t *len) {
  const char *arg = c->o.npos > 1 ? c->o.pos[1] : "-";
  char *buf;
  size_t n = 0;
  if (strcmp(arg, "-") != 0) {
    n = strlen(arg);
    buf = malloc(n + 1);
    if (!buf)
      return node_cli_fail(c, EXIT_FAILED, "failed", "out of memory");
    memcpy(buf, arg, n + 1);
  } else {
    if (isatty(STDIN_FILENO))
      fprintf(stderr, "type the message, then Ctrl-D:\n");
    buf = malloc(STDIN_MAX + 1);
    if (!buf)
      return node_cli_fail(c, EXIT_FAILED, "failed", "out of memory");
    size_t got;
    while (n < STDIN_MAX && (got = fread(buf + n, 1, STDIN_MAX - n, stdin)) > 0)
      n += got;
    if (ferror(stdin)) {
      free(buf);
      return node_cli_fail(c, EXIT_FAILED, "failed", "cannot read the message from stdin");
    }
    if (n == STDIN_MAX && fgetc(stdin) != EOF)
      n++; /* longer still: refused below */
    if (n <= STDIN_MAX && n > 0 && buf[n - 1] == '\n')
      n--; /* the newline that ends the last line is not part of the message */
    buf[n < STDIN_MAX ? n : STDIN_MAX] = 0;
  }
  if (n == 0) {
    free(buf);
    return node_cli_fail(c, EXIT_USAGE, "usage", "the message is empty");
  }
  if (n > STORE_TEXT_MAX) {
    free(buf);
    return node_cli_fail(
        c, EXIT_USAGE, "usage", "the message is %s%zu bytes; the limit is %d bytes",
        n > STDIN_MAX ? "over " : "", n > STDIN_MAX ? (size_t)STDIN_MAX : n, STORE_TEXT_MAX);
  }
  if (memchr(buf, 0, n)) {
    free(buf);
    return node_cli_fail(c, EXIT_USAGE, "usage", "the message contains a NUL byte");
  }
  *out = buf;
  *len = n;
  return 0;
}

static int cmd_send(node_cli *c) {
  char *text = NULL;
  size_t len = 0;
  int rv = message_text(c, &text, &len);
  if (rv)
    return rv;
  node_jw w;
  node_cli_req_begin(&w, "send");
  node_cli_req_args(&w);
  node_jw_kstr(&w, "to", c->o.pos[0]);
  node_jw_key(&w, "text");
  node_jw_strn(&w, text, len);
  node_jw_obj_end(&w);
  free(text);
  node_cli_reply r;
  if ((rv = node_cli_remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL)) != EXIT_OK)
    return rv;
  const json_t *res = json_object_get(r.root, "result");
  if (c->o.json) {
    node_cli_print_result(res);
  } else {
    char to[160];
    printf("queued for %s ('roost outbox' shows how far it got)\n",
           node_cli_str(json_object_get(res, "to"), to, sizeof to));
  }
  node_cli_reply_free(&r);
  return EXIT_OK;
}

static int cmd_outbox(node_cli *c) {
  c->line_max = NODE_PROTO_BIG_MAX;
  node_jw w;
  node_cli_req_begin(&w, "outbox");
  node_cli_reply r;
  int rv = node_cli_remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = json_object_get(r.root, "result");
  if (c->o.json) {
    node_cli_print_result(res);
    node_cli_reply_free(&r);
    return EXIT_OK;
  }
  const json_t *arr = json_object_get(res, "messages"), *x;
  int count = (int)json_array_size(arr);
  if (count == 0) {
    printf("the outbox is empty\n");
    node_cli_reply_free(&r);
    return EXIT_OK;
  }
  char(*cells)[160] = calloc((size_t)(count + 1) * 4, sizeof *cells);
  if (!cells) {
    node_cli_reply_free(&r);
    return node_cli_fail(c, EXIT_FAILED, "failed", "out of memory");
  }
  static const char *const head[4] = {"TO", "WHEN", "STATE", "TEXT"};
  for (int j = 0; j < 4; j++)
    snprintf(cells[j], sizeof cells[j], "%s", head[j]);
  size_t i;
  json_array_foreach(arr, i, x) {
    char(*row)[160] = cells + (i + 1) * 4;
    int64_t v = 0, rec = 0, reps = 0;
    const json_t *nm = json_object_get(x, "name");
    node_cli_str(json_is_null(nm) ? json_object_get(x, "to") : nm, row[0], 40);
    node_cli_int(json_object_get(x, "sent_unix_ms"), &v);
    node_cli_time(v, row[1], sizeof row[1]);
    char st[32];
    node_cli_str(json_object_get(x, "state"), st, sizeof st);
    node_cli_int(json_object_get(x, "receipts"), &rec);
    node_cli_int(json_object_get(x, "replicas"), &reps);
    if (!strcmp(st, "stored"))
      snprintf(row[2], sizeof row[2], "stored (%lld of %lld)", (long long)rec, (long long)reps);
    else if (!strcmp(st, "queued") && rec > 0)
      snprintf(row[2], sizeof row[2], "queued (%lld of %lld)", (long long)rec, (long long)reps);
    else
      snprintf(row[2], sizeof row[2], "%s", st);
    char text[4096];
    if (node_json_str(json_object_get(x, "text"), text, sizeof text) < 0)
      snprintf(text, sizeof text, "-");
    node_cli_shorten(text, 40); /* 40 columns: at most 160 bytes with the NUL */
    memcpy(row[3], text, strlen(text) < sizeof row[3] ? strlen(text) + 1 : sizeof row[3]);
    row[3][sizeof row[3] - 1] = 0;
  }
  node_cli_table(cells, count + 1, 4);
  free(cells);
  node_cli_reply_free(&r);
  return EXIT_OK;
}

/* One inbox message (token m) for people: "WHEN  NAME: text", continuation
 * lines indented. */
static void print_inbox_message(const json_t *m) {
  int64_t v = 0;
  char when[32], name[160];
  node_cli_int(json_object_get(m, "sent_unix_ms"), &v);
  node_cli_time(v, when, sizeof when);
  const json_t *nm = json_object_get(m, "name");
  node_cli_str(json_is_null(nm) ? json_object_get(m, "from") : nm, name, sizeof name);
  const json_t *tx = json_object_get(m, "text");
  size_t cap = json_string_length(tx) + 1;
  char *text = malloc(cap);
  if (!text || node_json_str(tx, text, cap) < 0) {
    free(text);
    text = NULL;
  }
  printf("%s  %s: ", when, name);
  for (const char *p = text ? text : "-"; *p; p++) {
    if (*p == '\n')
      printf("\n%*s", (int)(node_cli_columns(when) + 2 + node_cli_columns(name) + 2), "");
    else if ((unsigned char)*p < 0x20 || *p == 0x7f)
      fputc('?', stdout);
    else
      fputc(*p, stdout);
  }
  fputc('\n', stdout);
  free(text);
}

static void print_inbox_notice(const json_t *m) {
  int64_t v = 0, items = 0, start = 0;
  char when[32], day[32], name[160];
  node_cli_int(json_object_get(m, "unix_ms"), &v);
  node_cli_int(json_object_get(m, "items"), &items);
  node_cli_int(json_object_get(m, "epoch_start_unix_ms"), &start);
  node_cli_time(v, when, sizeof when);
  node_cli_time(start, day, sizeof day);
  const json_t *nm = json_object_get(m, "name");
  node_cli_str(json_is_null(nm) ? json_object_get(m, "from") : nm, name, sizeof name);
  printf("%s  notice: %lld message%s from %s (mailbox of %.10s) %s lost: a storage node "
         "dropped %s before it was fetched\n",
         when, (long long)items, items == 1 ? "" : "s", name, day, items == 1 ? "was" : "were",
         items == 1 ? "it" : "them");
}

static void inbox_progress(const node_cli *c, const json_t *prog) {
  const json_t *m = json_object_get(prog, "message"), *n = json_object_get(prog, "notice");
  if (c->o.json) {
    char *t = node_json_dump(m ? m : n, NULL);
    if (t)
      printf("{\"%s\":%s}\n", m ? "message" : "notice", t);
    free(t);
  } else if (m) {
    print_inbox_message(m);
  } else if (n) {
    print_inbox_notice(n);
  }
  fflush(stdout);
}

static int cmd_inbox(node_cli *c) {
  c->line_max = NODE_PROTO_BIG_MAX;
  node_jw w;
  if (!c->o.no_fetch) {
    /* fetch first, so the inbox shows what waits in the mailboxes; a
     * failure here is a warning: the messages already here still show */
    int64_t ft = NODE_PROTO_FETCH_TIMEOUT_MS;
    node_cli_req_begin(&w, "fetch");
    node_cli_req_args(&w);
    node_jw_kint(&w, "timeout_ms", ft);
    node_jw_obj_end(&w);
    node_cli_reply fr;
    node_cli quiet = *c; /* its errors go to stderr only: one JSON line on stdout */
    quiet.o.json = false;
    int frv = node_cli_remote(&quiet, &w, ft + WAIT_GRACE_MS, NULL, &fr, NULL);
    if (frv == EXIT_NOT_RUNNING) { /* quiet said how to start it */
      if (c->o.json)
        node_cli_json_error("not_running", "roostd is not running");
      return frv;
    }
    if (frv == EXIT_OK)
      node_cli_reply_free(&fr);
    else
      fprintf(stderr, "roost: fetching the mailboxes failed; showing what is already here\n");
  }
  node_cli_req_begin(&w, "inbox");
  node_cli_req_args(&w);
  node_jw_kbool(&w, "unread", c->o.unread);
  node_jw_kbool(&w, "follow", c->o.follow);
  node_jw_obj_end(&w);
  node_cli_reply r;
  int rv =
      node_cli_remote(c, &w, c->o.follow ? FOLLOW_TIMEOUT_MS : timeout_or(c, DEFAULT_TIMEOUT_MS),
                      c->o.follow ? inbox_progress : NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = json_object_get(r.root, "result");
  if (c->o.json) {
    node_cli_print_result(res);
    node_cli_reply_free(&r);
    return EXIT_OK;
  }
  const json_t *arr = json_object_get(res, "messages"), *nts = json_object_get(res, "notices"), *x;
  size_t count = json_array_size(arr), nn = json_array_size(nts), i;
  json_array_foreach(arr, i, x) {
    print_inbox_message(x);
  }
  json_array_foreach(nts, i, x) {
    print_inbox_notice(x);
  }
  if (count + nn == 0)
    printf("%s\n", c->o.unread ? "no unread messages" : "no messages");
  bool more = false;
  node_json_bool(json_object_get(res, "more"), &more);
  if (more)
    printf("(only the first %zu are shown)\n", count);
  node_cli_reply_free(&r);
  return EXIT_OK;
}

static int cmd_fetch(node_cli *c) {
  int64_t timeout = timeout_or(c, NODE_PROTO_FETCH_TIMEOUT_MS);
  node_jw w;
  node_cli_req_begin(&w, "fetch");
  node_cli_req_args(&w);
  node_jw_kint(&w, "timeout_ms", timeout);
  node_jw_obj_end(&w);
  node_cli_reply r;
  int rv = node_cli_remote(c, &w, timeout + WAIT_GRACE_MS, NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = json_object_get(r.root, "result");
  if (c->o.json) {
    node_cli_print_result(res);
  } else {
    char f[32], m[32], a[32], b[32];
    printf("fetched the mailboxes of %s friend(s): %s new message(s) (%s of %s storage nodes "
           "answered)\n",
           node_cli_num(json_object_get(res, "friends"), f, sizeof f),
           node_cli_num(json_object_get(res, "messages"), m, sizeof m),
           node_cli_num(json_object_get(res, "replicas_answered"), a, sizeof a),
           node_cli_num(json_object_get(res, "replicas_asked"), b, sizeof b));
  }
  node_cli_reply_free(&r);
  return EXIT_OK;
}

static int cmd_host(node_cli *c) {
  const char *sub = c->o.pos[0];
  int want = !strcmp(sub, "add") || !strcmp(sub, "remove") ? 2 : !strcmp(sub, "list") ? 1 : -1;
  if (want < 0)
    return node_cli_fail(c, EXIT_USAGE, "usage", "unknown host command '%s' (add, list, remove)",
                         sub);
  if (c->o.npos != want)
    return node_cli_fail(c, EXIT_USAGE, "usage", "host %s: %s (usage: roost host %s)", sub,
                         c->o.npos < want ? "missing argument" : "unexpected argument",
                         !strcmp(sub, "add")      ? "add NAME --quota SIZE"
                         : !strcmp(sub, "remove") ? "remove NAME"
                                                  : "list");
  if (c->o.quota && strcmp(sub, "add"))
    return node_cli_fail(c, EXIT_USAGE, "usage", "--quota only applies to host add");
  if (!strcmp(sub, "add")) {
    int64_t q;
    if (!c->o.quota)
      return node_cli_fail(c, EXIT_USAGE, "usage", "host add needs --quota SIZE (e.g. 10M or 1G)");
    if (node_size_parse(c->o.quota, &q) != 0 || q <= 0 || q > ((int64_t)1 << 50))
      return node_cli_fail(c, EXIT_USAGE, "usage",
                           "--quota: '%s' is not a size above 0 like 65536, 64K, 10M or 1G",
                           c->o.quota);
    node_jw w;
    node_cli_req_begin(&w, "host_add");
    node_cli_req_args(&w);
    node_jw_kstr(&w, "name", c->o.pos[1]);
    node_jw_kint(&w, "quota", q);
    node_jw_obj_end(&w);
    node_cli_reply r;
    int rv = node_cli_remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
    if (rv != EXIT_OK)
      return rv;
    if (c->o.json) {
      node_cli_print_result(json_object_get(r.root, "result"));
    } else {
      char sz[32];
      node_size_fmt(q, sz, sizeof sz);
      printf("hosting %s's mailboxes, up to %s\n", c->o.pos[1], sz);
    }
    node_cli_reply_free(&r);
    return EXIT_OK;
  }
  if (!strcmp(sub, "remove")) {
    char done[256];
    snprintf(done, sizeof done, "no longer hosting %s", c->o.pos[1]);
    return simple(c, "host_remove", "name", c->o.pos[1], done);
  }
  node_jw w;
  node_cli_req_begin(&w, "host_list");
  node_cli_reply r;
  int rv = node_cli_remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = json_object_get(r.root, "result");
  if (c->o.json) {
    node_cli_print_result(res);
    node_cli_reply_free(&r);
    return EXIT_OK;
  }
  const json_t *arr = json_object_get(res, "hosted"), *mine = json_object_get(res, "my_hosts"), *x;
  size_t count = json_array_size(arr), i;
  if (count == 0)
    printf("you host nobody ('roost host add NAME --quota SIZE')\n");
  json_array_foreach(arr, i, x) {
    char name[160], sz[32];
    int64_t q = 0;
    const json_t *n = json_object_get(x, "name");
    node_cli_str(json_is_null(n) ? json_object_get(x, "id") : n, name, sizeof name);
    node_cli_int(json_object_get(x, "quota"), &q);
    node_size_fmt(q, sz, sizeof sz);
    printf("you host %s, up to %s\n", name, sz);
  }
  json_array_foreach(mine, i, x) {
    char name[160], addr[80];
    const json_t *n = json_object_get(x, "name");
    node_cli_str(json_is_null(n) ? json_object_get(x, "id") : n, name, sizeof name);
    printf("%s hosts you (at %s)\n", name,
           node_cli_str(json_object_get(x, "addr"), addr, sizeof addr));
  }
  node_cli_reply_free(&r);
  return EXIT_OK;
}

static int cmd_mailbox(node_cli *c) {
  node_jw w;
  node_cli_req_begin(&w, "mailbox");
  node_cli_req_args(&w);
  node_jw_kstr(&w, "friend", c->o.pos[0]);
  node_jw_obj_end(&w);
  node_cli_reply r;
  int rv = node_cli_remote(c, &w, timeout_or(c, DEFAULT_TIMEOUT_MS), NULL, &r, NULL);
  if (rv != EXIT_OK)
    return rv;
  const json_t *res = json_object_get(r.root, "result");
  if (c->o.json) {
    node_cli_print_result(res);
  } else {
    char e[32], a[80], b[80], name[160];
    node_cli_str(json_object_get(res, "name"), name, sizeof name);
    printf("epoch       %s\n", node_cli_num(json_object_get(res, "epoch"), e, sizeof e));
    printf("to %s  %s\n", name, node_cli_str(json_object_get(res, "to_friend"), a, sizeof a));
    printf("from %s  %s\n", name, node_cli_str(json_object_get(res, "from_friend"), b, sizeof b));
  }
  node_cli_reply_free(&r);
  return EXIT_OK;
}

/* ---- main -------------------------------------------------------------- */

static const command commands[] = {
    {"init", 0, 0, cmd_init},
    {"id", 0, 0, cmd_id},
    {"status", 0, 0, cmd_status},
    {"peers", 0, 0, cmd_peers},
    {"lookup", 1, 1, cmd_lookup},
    {"ping", 1, 2, cmd_ping},
    {"bootstrap", 1, 2, cmd_bootstrap},
    {"metrics", 0, 0, cmd_metrics},
    {"nat", 0, 0, cmd_nat},
    {"stop", 0, 0, cmd_stop},
    {"help", 0, 0, cmd_help},
    {"invite", 0, 0, cmd_invite},
    {"friend", 1, 2, cmd_friend},
    {"send", 1, 2, cmd_send},
    {"outbox", 0, 0, cmd_outbox},
    {"inbox", 0, 0, cmd_inbox},
    {"fetch", 0, 0, cmd_fetch},
    {"host", 1, 2, cmd_host},
    {"mailbox", 1, 1, cmd_mailbox},
};

static const char *const synopsis[] = {
    "init",
    "id",
    "status [--wait]",
    "peers",
    "lookup ID",
    "ping ID [HOST:PORT]",
    "bootstrap add ID@HOST:PORT",
    "metrics",
    "nat",
    "stop",
    "help",
    "invite [--expires DAYS] [--qr|--no-qr]",
    "friend add|list|remove|requests|accept ...",
    "send NAME [TEXT|-]",
    "outbox",
    "inbox [--unread] [--follow] [--no-fetch]",
    "fetch",
    "host add|list|remove ...",
    "mailbox NAME",
};

/* one synopsis per command, in the same order */
_Static_assert(sizeof synopsis / sizeof synopsis[0] == sizeof commands / sizeof commands[0],
               "synopsis[] and commands[] differ in length");

int node_cli_main(int argc, char **argv) {
  static node_cli c;
  char err[512];
  /* --json anywhere decides how even an error in the arguments is shown */
  for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
    if (!strcmp(argv[i], "--json"))
      c.o.json = true;
  if (node_cli_parse_args(argc, argv, &c.o, err, sizeof err) != 0)
    return node_cli_fail(&c, EXIT_USAGE, "usage", "%s", err);
  if (c.o.help) {
    node_cli_usage(stdout);
    return EXIT_OK;
  }
  if (c.o.version) {
    if (c.o.json)
      printf("{\"version\":\"%s\"}\n", ROOST_VERSION);
    else
      printf("roost %s\n", ROOST_VERSION);
    return EXIT_OK;
  }
  if (!c.o.cmd)
    return node_cli_fail(&c, EXIT_USAGE, "usage", "no command given");
  const command *cmd = NULL;
  size_t ci = 0;
  for (; ci < sizeof commands / sizeof commands[0]; ci++)
    if (!strcmp(commands[ci].name, c.o.cmd)) {
      cmd = &commands[ci];
      break;
    }
  if (!cmd)
    return node_cli_fail(&c, EXIT_USAGE, "usage", "unknown command '%s'", c.o.cmd);
  if (c.o.npos < cmd->min)
    return node_cli_fail(&c, EXIT_USAGE, "usage", "%s: missing argument (usage: roost %s)",
                         cmd->name, synopsis[ci]);
  if (c.o.npos > cmd->max)
    return node_cli_fail(&c, EXIT_USAGE, "usage", "%s: unexpected argument '%s' (usage: roost %s)",
                         cmd->name, c.o.pos[cmd->max], synopsis[ci]);
  if (c.o.wait && cmd->run != cmd_status)
    return node_cli_fail(&c, EXIT_USAGE, "usage", "--wait only applies to status");
  if ((c.o.qr || c.o.no_qr || c.o.expires) && cmd->run != cmd_invite)
    return node_cli_fail(&c, EXIT_USAGE, "usage",
                         "--qr, --no-qr and --expires only apply to invite");
  if (c.o.qr && c.o.no_qr)
    return node_cli_fail(&c, EXIT_USAGE, "usage", "--qr and --no-qr contradict each other");
  if ((c.o.follow || c.o.unread || c.o.no_fetch) && cmd->run != cmd_inbox)
    return node_cli_fail(&c, EXIT_USAGE, "usage",
                         "--follow, --unread and --no-fetch only apply to inbox");
  if (c.o.name && cmd->run != cmd_friend)
    return node_cli_fail(&c, EXIT_USAGE, "usage",
                         "--name only applies to friend add and friend accept");
  if (c.o.quota && cmd->run != cmd_host)
    return node_cli_fail(&c, EXIT_USAGE, "usage", "--quota only applies to host add");

  node_config_default(&c.cfg);
  if (c.o.data_dir) {
    if (strlen(c.o.data_dir) >= sizeof c.cfg.data_dir)
      return node_cli_fail(&c, EXIT_USAGE, "usage", "--data-dir: path too long");
    snprintf(c.cfg.data_dir, sizeof c.cfg.data_dir, "%s", c.o.data_dir);
  }
  char def[PATH_MAX + 32];
  node_config_socket_path(&c.cfg, def, sizeof def);
  const char *sock = c.o.socket ? c.o.socket : def;
  size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
  if (strlen(sock) > max)
    return node_cli_fail(
        &c, EXIT_USAGE, "usage",
        "the control socket path %s is longer than %zu bytes (give a shorter one with "
        "--socket)",
        sock, max);
  memcpy(c.sock, sock, strlen(sock) + 1);
  c.sock_given = strcmp(c.sock, def) != 0;
  c.line_max = NODE_PROTO_LINE_MAX;
  if (sodium_init() < 0)
    return node_cli_fail(&c, EXIT_FAILED, "failed", "libsodium failed to initialise");
  int rv = cmd->run(&c);
  if (fflush(stdout) != 0 && rv == EXIT_OK)
    return EXIT_FAILED; /* e.g. stdout is a full disk */
  return rv;
}

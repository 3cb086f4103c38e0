/*
 * node_config.c - roostd's configuration: one table of options, read from an
 * INI file and from flags (every option is both).  Precedence: built-in
 * defaults < config file < flags; a list option (listen, bootstrap) given by
 * flags replaces the file's list.  Every error names where it came from
 * (file:line or the flag) and the key.  The daemon never writes its config.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"

enum opt_type {
  T_PATH,
  T_SOCK,
  T_ADDRS,
  T_PEERS,
  T_BOOL,
  T_INT,
  T_LEVEL,
  T_MODE,
  T_SIZE,
  T_NAME,
  T_HOSTS,
  T_PORTMAP
};

typedef struct opt {
  const char *key;
  uint8_t type;
  int lo, hi; /* T_INT range */
  size_t off; /* offset in node_config */
  const char *arg, *help;
} opt;

#define OFF(f) offsetof(node_config, f)

static const opt opts[] = {
    {"listen", T_ADDRS, 0, 0, OFF(listen), "HOST:PORT",
     "UDP address to listen on; repeat for more (default 0.0.0.0:7464 and [::]:7464)"},
    {"bootstrap", T_PEERS, 0, 0, OFF(bootstrap), "ID@HOST:PORT",
     "a node to join the network through; repeat for more"},
    {"lan-discovery", T_BOOL, 0, 0, OFF(lan_discovery), "on|off",
     "announce ourselves on the local link and join nodes we hear (default on)"},
    {"lan-port", T_INT, 1, 65535, OFF(lan_port), "PORT", "UDP port of LAN discovery (7465)"},
    {"mode", T_MODE, 0, 0, OFF(mode), "server|client|auto",
     "auto: a client until a dial-back proves us reachable, then a server; "
     "server: others may store us from the start (seeds, a VPS); client: query only (default "
     "auto)"},
    {"log-level", T_LEVEL, 0, 0, OFF(log_level), "error|warn|info|debug",
     "how much to log on stderr (default warn)"},
    {"control-socket", T_SOCK, 0, 0, OFF(control_socket), "PATH",
     "control socket for the roost CLI (default DATA_DIR/roostd.sock)"},
    {"snapshot-interval", T_INT, 10, 86400, OFF(snapshot_interval_s), "SECONDS",
     "how often the routing table is saved (300)"},
    {"rate-limit", T_INT, 0, 1000000, OFF(rate_pps), "PPS",
     "datagrams per second accepted per source prefix, 0 = unlimited (400)"},
    {"rate-burst", T_INT, 1, 1000000, OFF(rate_burst), "N", "burst per source prefix (800)"},
    {"max-records", T_INT, 0, 1000000, OFF(max_records), "N",
     "peer records stored for other nodes (2048)"},
    {"bucket-size", T_INT, 1, DHT_K_MAX, OFF(k), "K", "Kademlia k (20)"},
    {"diversity-per-bucket", T_INT, 0, DHT_K_MAX, OFF(max_per_prefix_bucket), "N",
     "contacts per /24 (IPv4) or /48 (IPv6) in one bucket, 0 = no limit (2)"},
    {"diversity-per-table", T_INT, 0, 100000, OFF(max_per_prefix_table), "N",
     "contacts per prefix in the whole table, 0 = no limit (10)"},
    {"diversity-exempt-private", T_BOOL, 0, 0, OFF(diversity_exempt_private), "on|off",
     "no diversity limits for private (LAN) addresses (on); loopback is always exempt"},
    {"portmap", T_PORTMAP, 0, 0, OFF(portmap), "auto|upnp|natpmp|off",
     "ask the router to forward our UDP port: NAT-PMP and UPnP (auto), one of them, or off "
     "(auto; never for a loopback or public listen address)"},
    {"send-queue", T_INT, 16, 65536, OFF(send_queue), "N",
     "datagrams held while the socket is busy before new ones are dropped (1024)"},
    {"name", T_NAME, 0, 0, OFF(display_name), "NAME",
     "the display name in our invites, at most 63 bytes (default: the login name)"},
    {"mailbox-capacity", T_SIZE, 0, 0, OFF(mbox_capacity), "SIZE",
     "space for other people's mailboxes, e.g. 64M or 1G (64M)"},
    {"mailbox-quota", T_SIZE, 0, 0, OFF(mbox_quota), "SIZE",
     "space per mailbox of a stranger (64K); friends we host get their own quota"},
    {"mailbox-quota-items", T_INT, 1, 1000000, OFF(mbox_quota_items), "N",
     "messages per mailbox of a stranger (64)"},
    {"poll-interval", T_INT, 0, 86400, OFF(poll_interval_s), "SECONDS",
     "how often friends' mailboxes are fetched, 0 = only on 'roost fetch' (300)"},
    {"mailbox-ttl", T_INT, 1, 365, OFF(ttl_days), "DAYS",
     "how long we keep a stranger's message (7)"},
    {"hosted-ttl", T_INT, 1, 365, OFF(hosted_ttl_days), "DAYS",
     "how long we keep a message for a friend we host (30)"},
    {"retry-max", T_INT, 1, 86400, OFF(retry_max_s), "SECONDS",
     "longest wait between tries of a message not yet stored (600)"},
    {"mailbox-host", T_HOSTS, 0, 0, OFF(my_hosts), "ID@HOST:PORT",
     "a friend who keeps our mailboxes too (named in our invites); repeat, at most 4"},
};
#define NOPTS (sizeof opts / sizeof opts[0])

void node_config_default(node_config *c) {
  memset(c, 0, sizeof *c);
  const char *env = getenv("ROOST_DATA_DIR"), *home = getenv("HOME");
  if (env && *env)
    snprintf(c->data_dir, sizeof c->data_dir, "%s", env);
  else if (home && *home)
    snprintf(c->data_dir, sizeof c->data_dir, "%s/.local/share/roost", home);
  else
    snprintf(c->data_dir, sizeof c->data_dir, "/var/lib/roost");
  node_addr_parse("0.0.0.0:7464", &c->listen[0]);
  node_addr_parse("[::]:7464", &c->listen[1]);
  c->nlisten = 2;
  c->lan_discovery = true;
  c->lan_port = 7465;
  c->log_level = NODE_LOG_WARN;
  c->mode = NAT_MODE_AUTO;
  c->snapshot_interval_s = 300;
  c->rate_pps = 400;
  c->rate_burst = 800;
  c->max_records = 2048;
  c->k = 20;
  c->diversity_exempt_private = true;
  c->max_per_prefix_bucket = 2;
  c->max_per_prefix_table = 10;
  c->send_queue = 1024;
  c->portmap = NODE_PORTMAP_AUTO;
  c->mbox_capacity = 64 << 20;
  c->mbox_quota = 64 << 10;
  c->mbox_quota_items = 64;
  c->poll_interval_s = 300;
  c->ttl_days = 7;
  c->hosted_ttl_days = 30;
  c->retry_max_s = 600;
}

static const opt *find_opt(const char *key) {
  for (size_t i = 0; i < NOPTS; i++)
    if (strcmp(opts[i].key, key) == 0)
      return &opts[i];
  return NULL;
}

static int apply(node_config *c, const opt *o, const char *v, const char *where, char *err,
                 size_t errlen) {
  char *base = (char *)c;
  char why[256];
  switch (o->type) {
  case T_SOCK:
    if (strlen(v) >= sizeof c->control_socket) {
      snprintf(why, sizeof why, "path longer than %zu bytes", sizeof c->control_socket - 1);
      goto bad;
    }
    snprintf(c->control_socket, sizeof c->control_socket, "%s", v);
    return 0;
  case T_PATH:
    return 0;
  case T_ADDRS: {
    if (c->nlisten >= NODE_MAX_LISTEN) {
      snprintf(why, sizeof why, "at most %d listen addresses", NODE_MAX_LISTEN);
      goto bad;
    }
    if (node_addr_parse(v, &c->listen[c->nlisten]) != 0) {
      snprintf(why, sizeof why, "'%s' is not a numeric HOST:PORT", v);
      goto bad;
    }
    for (int i = 0; i < c->nlisten; i++)
      if (dht_addr_eq(&c->listen[i], &c->listen[c->nlisten])) {
        snprintf(why, sizeof why, "'%s' is listed twice", v);
        goto bad;
      }
    c->nlisten++;
    return 0;
  }
  case T_PEERS:
    if (c->nbootstrap >= NODE_MAX_BOOTSTRAP) {
      snprintf(why, sizeof why, "at most %d bootstrap peers", NODE_MAX_BOOTSTRAP);
      goto bad;
    }
    if (node_peer_parse(v, &c->bootstrap[c->nbootstrap], why, sizeof why) != 0)
      goto bad;
    c->nbootstrap++;
    return 0;
  case T_BOOL: {
    bool *b = (bool *)(base + o->off);
    if (!strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1"))
      *b = true;
    else if (!strcmp(v, "off") || !strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0"))
      *b = false;
    else {
      snprintf(why, sizeof why, "'%s' is not on or off", v);
      goto bad;
    }
    return 0;
  }
  case T_INT: {
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (!*v || *end || errno || n < o->lo || n > o->hi) {
      snprintf(why, sizeof why, "'%s' is not a whole number from %d to %d", v, o->lo, o->hi);
      goto bad;
    }
    if (o->off == OFF(lan_port))
      c->lan_port = (uint16_t)n;
    else
      *(int *)(base + o->off) = (int)n;
    return 0;
  }
  case T_LEVEL: {
    int l = node_log_level_parse(v);
    if (l < 0) {
      snprintf(why, sizeof why, "'%s' is not one of error, warn, info, debug", v);
      goto bad;
    }
    c->log_level = l;
    return 0;
  }
  case T_SIZE: {
    int64_t n;
    if (node_size_parse(v, &n) != 0 || n > ((int64_t)1 << 50)) {
      snprintf(why, sizeof why, "'%s' is not a size like 65536, 64K, 10M or 1G", v);
      goto bad;
    }
    *(int64_t *)(base + o->off) = n;
    return 0;
  }
  case T_NAME:
    if (!node_invite_name_ok(v)) {
      snprintf(why, sizeof why, "at most %d bytes of UTF-8 without control characters",
               NODE_INVITE_NAME_MAX);
      goto bad;
    }
    snprintf(c->display_name, sizeof c->display_name, "%s", v);
    return 0;
  case T_HOSTS:
    if (c->nmy_hosts >= STORE_MAX_HOSTS) {
      snprintf(why, sizeof why, "at most %d mailbox hosts", STORE_MAX_HOSTS);
      goto bad;
    }
    if (node_peer_parse(v, &c->my_hosts[c->nmy_hosts], why, sizeof why) != 0)
      goto bad;
    c->nmy_hosts++;
    return 0;
  case T_PORTMAP: {
    static const char *const names[] = {"auto", "upnp", "natpmp", "off"};
    for (int i = 0; i < 4; i++)
      if (!strcmp(v, names[i])) {
        c->portmap = i;
        return 0;
      }
    snprintf(why, sizeof why, "'%s' is not one of auto, upnp, natpmp, off", v);
    goto bad;
  }
  case T_MODE:
    if (!strcmp(v, "server"))
      c->mode = NAT_MODE_SERVER;
    else if (!strcmp(v, "client"))
      c->mode = NAT_MODE_CLIENT;
    else if (!strcmp(v, "auto"))
      c->mode = NAT_MODE_AUTO;
    else {
      snprintf(why, sizeof why, "'%s' is not server, client or auto", v);
      goto bad;
    }
    return 0;
  }
  return 0;
bad:
  snprintf(err, errlen, "%s: %s: %s", where, o->key, why);
  return -1;
}

int node_config_set(node_config *c, const char *key, const char *value, const char *where,
                    char *err, size_t errlen) {
  const opt *o = find_opt(key);
  if (!o) {
    snprintf(err, errlen, "%s: unknown key '%s' (roostd --help lists them)", where, key);
    return -1;
  }
  return apply(c, o, value, where, err, errlen);
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
    s[--n] = 0;
  return s;
}

/* which list options the current source has already started (so that the
 * first occurrence in a source replaces what an earlier source gave) */
typedef struct lists {
  bool listen, bootstrap, hosts;
} lists;

static void list_reset(node_config *c, const opt *o, lists *seen) {
  if (o->type == T_ADDRS && !seen->listen) {
    c->nlisten = 0;
    seen->listen = true;
  } else if (o->type == T_PEERS && !seen->bootstrap) {
    c->nbootstrap = 0;
    seen->bootstrap = true;
  } else if (o->type == T_HOSTS && !seen->hosts) {
    c->nmy_hosts = 0;
    seen->hosts = true;
  }
}

int node_config_load(node_config *c, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "cannot read config file %s: %s", path, strerror(errno));
    return -1;
  }
  char line[4096], where[PATH_MAX + 32];
  int lineno = 0, rv = 0;
  lists seen = {false, false, false};
  while (fgets(line, sizeof line, f)) {
    lineno++;
    snprintf(where, sizeof where, "%s:%d", path, lineno);
    if (!strchr(line, '\n') && !feof(f)) {
      snprintf(err, errlen, "%s: line longer than %zu bytes", where, sizeof line - 2);
      rv = -1;
      break;
    }
    char *s = trim(line);
    if (!*s || *s == '#' || *s == ';')
      continue;
    if (*s == '[') {
      if (strcmp(s, "[roostd]") != 0) {
        snprintf(err, errlen, "%s: unknown section %s (only [roostd])", where, s);
        rv = -1;
        break;
      }
      continue;
    }
    char *eq = strchr(s, '=');
    if (!eq) {
      snprintf(err, errlen, "%s: expected 'key = value', got '%s'", where, s);
      rv = -1;
      break;
    }
    *eq = 0;
    char *key = trim(s), *val = trim(eq + 1);
    const opt *o = find_opt(key);
    if (!o) {
      snprintf(err, errlen, "%s: unknown key '%s' (roostd --help lists them)", where, key);
      rv = -1;
      break;
    }
    if (!*val) {
      snprintf(err, errlen, "%s: %s: empty value", where, key);
      rv = -1;
      break;
    }
    list_reset(c, o, &seen);
    if (apply(c, o, val, where, err, errlen) != 0) {
      rv = -1;
      break;
    }
  }
  if (rv == 0 && ferror(f)) {
    snprintf(err, errlen, "cannot read config file %s", path);
    rv = -1;
  }
  fclose(f);
  return rv;
}

void node_config_socket_path(const node_config *c, char *out, size_t len) {
  if (c->control_socket[0])
    snprintf(out, len, "%s", c->control_socket);
  else if (snprintf(out, len, "%s/roostd.sock", c->data_dir) >= (int)len)
    out[0] = 0; /* too long: callers report an empty path as an error */
}

void node_config_help(FILE *out) {
  fprintf(out, "usage: roostd --data-dir DIR [--config FILE] [--listen HOST:PORT]...\n"
               "              [--bootstrap ID@HOST:PORT]... [OPTION VALUE]...\n"
               "\n"
               "roostd is the roost node: it joins the roost DHT over UDP and answers the\n"
               "roost command-line tool on a Unix control socket.  It runs in the foreground\n"
               "and logs to stderr.  TERM or INT save the routing table, delete the port\n"
               "mappings it made (at most 3 s) and exit; HUP reloads the config file\n"
               "(log-level, bootstrap, lan-discovery).\n"
               "\n"
               "  --data-dir DIR      identity key, routing table, lock and control socket\n"
               "                      (default $ROOST_DATA_DIR or ~/.local/share/roost)\n"
               "  --config FILE       INI file of the options below ('key = value' lines)\n"
               "  --paths             print where everything is, then exit\n"
               "  --version           print the version, then exit\n"
               "  --help              this text\n"
               "\n"
               "Options (in the config file as 'key = value', or as flags '--key VALUE'):\n");
  for (size_t i = 0; i < NOPTS; i++) {
    char head[64];
    snprintf(head, sizeof head, "--%s %s", opts[i].key, opts[i].arg);
    fprintf(out, "  %-34s %s\n", head, opts[i].help);
  }
  fprintf(out, "\nExit status: 0 clean stop, 1 runtime failure, 2 usage or configuration error.\n");
}

static void print_paths(const node_config *c) {
  char sock[PATH_MAX];
  node_config_socket_path(c, sock, sizeof sock);
  printf("config file     %s\n", c->config_file[0] ? c->config_file : "(none)");
  printf("data directory  %s\n", c->data_dir);
  printf("identity key    %s/identity.key\n", c->data_dir);
  printf("routing table   %s/peers.dat\n", c->data_dir);
  printf("user database   %s/roost.db\n", c->data_dir);
  printf("mailboxes       %s/mailboxes.db\n", c->data_dir);
  printf("friend requests %s/requests.txt\n", c->data_dir);
  printf("lock file       %s/roostd.lock\n", c->data_dir);
  printf("control socket  %s\n", sock);
}

/* the value of --name: after '=' or the next argument */
static const char *flag_value(int argc, char **argv, int *i, const char *eq, const char *name,
                              char *err, size_t errlen) {
  if (eq)
    return eq + 1;
  if (*i + 1 >= argc) {
    snprintf(err, errlen, "--%s needs a value", name);
    return NULL;
  }
  return argv[++*i];
}

int node_config_from_args(node_config *c, int argc, char **argv, char *err, size_t errlen) {
  bool paths = false;
  /* pass 1: where to read from, and the flags that end the program */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2) != 0) {
      snprintf(err, errlen, "unexpected argument '%s' (roostd --help)", a);
      return -1;
    }
    char name[64];
    const char *eq = strchr(a, '=');
    size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
    if (n >= sizeof name) {
      snprintf(err, errlen, "unknown flag '%s' (roostd --help)", a);
      return -1;
    }
    memcpy(name, a + 2, n);
    name[n] = 0;
    if (!strcmp(name, "help")) {
      node_config_help(stdout);
      return 1;
    }
    if (!strcmp(name, "version")) {
      printf("roostd %s\n", ROOST_VERSION);
      return 1;
    }
    if (!strcmp(name, "paths")) {
      paths = true;
      continue;
    }
    const char *v;
    if (!strcmp(name, "data-dir") || !strcmp(name, "config")) {
      if (!(v = flag_value(argc, argv, &i, eq, name, err, errlen)))
        return -1;
      char *dst = name[0] == 'd' ? c->data_dir : c->config_file;
      if (!*v || strlen(v) >= PATH_MAX) {
        snprintf(err, errlen, "--%s: invalid path", name);
        return -1;
      }
      snprintf(dst, PATH_MAX, "%s", v);
      continue;
    }
    if (!find_opt(name)) {
      snprintf(err, errlen, "unknown flag '--%s' (roostd --help)", name);
      return -1;
    }
    if (!flag_value(argc, argv, &i, eq, name, err, errlen))
      return -1;
  }
  if (c->config_file[0] && node_config_load(c, c->config_file, err, errlen) != 0)
    return -1;
  /* pass 2: option flags override the file */
  lists seen = {false, false, false};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    char name[64];
    const char *eq = strchr(a, '=');
    size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
    memcpy(name, a + 2, n);
    name[n] = 0;
    if (!strcmp(name, "paths"))
      continue;
    const char *v = flag_value(argc, argv, &i, eq, name, err, errlen);
    if (!strcmp(name, "data-dir") || !strcmp(name, "config"))
      continue;
    const opt *o = find_opt(name);
    char where[80];
    snprintf(where, sizeof where, "--%s", name);
    list_reset(c, o, &seen);
    if (apply(c, o, v, where, err, errlen) != 0)
      return -1;
  }
  if (c->nlisten == 0) {
    snprintf(err, errlen, "no listen address");
    return -1;
  }
  if (paths) {
    print_paths(c);
    return 1;
  }
  return 0;
}

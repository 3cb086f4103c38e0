/*
 * node_cli_args.c - roost's command line: the usage text, the parser of
 * options and words (global options before or after the command, "--" ends
 * them, --opt VALUE or --opt=VALUE), and the checks of the numbers people
 * type (--timeout seconds, day and request counts).  It only reads argv:
 * which command a word names and which options it takes is node_cli.c's
 * business.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_cli.h"

void node_cli_usage(FILE *out) {
  fputs("usage: roost [--data-dir DIR] [--socket PATH] [--json] [--timeout SECONDS]\n"
        "             COMMAND [ARGS]\n"
        "\n"
        "roost is the command-line client of roostd, the roost node.  It talks to a\n"
        "running roostd over its control socket; init and id work without one.\n"
        "\n"
        "Commands:\n"
        "  init                        create the data directory and the identity key\n"
        "                              (no daemon needed); prints the ID\n"
        "  id                          print this node's ID (no daemon needed)\n"
        "  status [--wait]             the node's state, table, addresses and counters;\n"
        "                              --wait first waits until roostd is up and has\n"
        "                              joined the network, with progress on stderr\n"
        "  peers                       the contacts in the routing table\n"
        "  lookup ID                   find a node's record: its addresses\n"
        "  ping ID [HOST:PORT]         ask a node for a reply; without HOST:PORT its\n"
        "                              record is looked up first\n"
        "  bootstrap add ID@HOST:PORT  join the network through this node now (it is\n"
        "                              not written to roostd's configuration)\n"
        "  invite [--expires DAYS] [--qr|--no-qr]\n"
        "                              print an invite for a friend (valid 7 days, or\n"
        "                              DAYS from 1 to 365), and its QR code when stdout\n"
        "                              is a terminal (--qr: always, --no-qr: never)\n"
        "  friend add INVITE [--name NAME]\n"
        "                              add the friend of an invite (named as it says, or\n"
        "                              NAME) and send them a friend request with ours\n"
        "  friend list                 your friends\n"
        "  friend remove NAME          forget a friend\n"
        "  friend requests             friend requests waiting for an answer\n"
        "  friend accept N [--name NAME]\n"
        "                              add the sender of request N as a friend\n"
        "  send NAME [TEXT|-]          send a message (TEXT omitted or -: read it from\n"
        "                              stdin; at most 933 bytes)\n"
        "  outbox                      sent messages and their delivery states\n"
        "  inbox [--unread] [--follow] [--no-fetch]\n"
        "                              fetch friends' mailboxes (not with --no-fetch),\n"
        "                              then show messages from friends, oldest first,\n"
        "                              and notices of lost ones; shown messages are\n"
        "                              marked read; --follow then prints new ones\n"
        "                              until Ctrl-C\n"
        "  fetch                       fetch friends' mailboxes now, wait for the result\n"
        "  host add NAME --quota SIZE  keep friend NAME's mailboxes, up to SIZE (e.g.\n"
        "                              10M, 1G)\n"
        "  host list                   friends you host, and who hosts you\n"
        "  host remove NAME            stop hosting friend NAME\n"
        "  mailbox NAME                this epoch's mailbox IDs between you and friend\n"
        "                              NAME (for debugging)\n"
        "  nat                         how peers see us: public address and NAT\n"
        "                              mapping, per address family, and who vouched\n"
        "  metrics                     roostd's counters, Prometheus text format\n"
        "  stop                        stop roostd and wait until it has exited\n"
        "  help                        this text\n"
        "\n"
        "Options, before or after the command (--opt VALUE or --opt=VALUE; after\n"
        "\"--\" every word is an argument):\n"
        "  --data-dir DIR      roostd's data directory (default $ROOST_DATA_DIR,\n"
        "                      else ~/.local/share/roost)\n"
        "  --socket PATH       roostd's control socket (default DATA_DIR/roostd.sock)\n"
        "  --json              print the result as one line of JSON; errors too, as\n"
        "                      {\"error\": {\"code\": ..., \"message\": ...}} on stdout\n"
        "  --timeout SECONDS   give up waiting for roostd after this long (default 10;\n"
        "                      for status --wait, how long to wait: default 30)\n"
        "  --help, -h          this text\n"
        "  --version           print the version\n"
        "\n"
        "An ID is the 56-character text form 'roost id' prints.\n"
        "\n"
        "Exit status: 0 ok; 1 the command failed (roostd answered with an error or\n"
        "not in time, or a file could not be read); 2 usage error; 3 roostd is not\n"
        "running.\n",
        out);
}

/* The value of option name: after '=' or the next argument.  NULL + err. */
static const char *opt_value(int argc, char **argv, int *i, const char *eq, const char *name,
                             char *err, size_t errlen) {
  if (eq)
    return eq + 1;
  if (*i + 1 >= argc) {
    snprintf(err, errlen, "%s needs a value", name);
    return NULL;
  }
  return argv[++*i];
}

/* Seconds (a positive decimal number) -> milliseconds, or -1. */
int64_t node_cli_parse_seconds(const char *s) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (!*s || *end || errno || !(v > 0) || v > NODE_CLI_MAX_TIMEOUT_S)
    return -1;
  int64_t ms = (int64_t)(v * 1000.0 + 0.999);
  return ms < 1 ? 1 : ms;
}

/* Parses argv into o: options anywhere, "--" ends them, the first other
 * word is the command and the rest are its arguments.  Checks syntax only
 * (the command's name and arity are checked by the caller).  0, or -1 with
 * a one-line reason in err. */
int node_cli_parse_args(int argc, char **argv, node_cli_opts *o, char *err, size_t errlen) {
  memset(o, 0, sizeof *o);
  o->timeout_ms = -1;
  bool opts_done = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (opts_done || a[0] != '-' || a[1] == 0) {
      if (!o->cmd)
        o->cmd = a;
      else if (o->npos < NODE_CLI_MAX_POS)
        o->pos[o->npos++] = a;
      else {
        snprintf(err, errlen, "too many arguments");
        return -1;
      }
      continue;
    }
    if (!strcmp(a, "--")) {
      opts_done = true;
      continue;
    }
    if (!strcmp(a, "-h")) {
      o->help = true;
      continue;
    }
    if (a[1] != '-') {
      snprintf(err, errlen, "unknown option '%s'", a);
      return -1;
    }
    const char *eq = strchr(a, '=');
    size_t n = eq ? (size_t)(eq - a) : strlen(a);
    char name[32];
    if (n >= sizeof name) {
      snprintf(err, errlen, "unknown option '%.*s'", (int)(n > 64 ? 64 : n), a);
      return -1;
    }
    memcpy(name, a, n);
    name[n] = 0;
    bool flag = !strcmp(name, "--json") || !strcmp(name, "--wait") || !strcmp(name, "--help") ||
                !strcmp(name, "--version") || !strcmp(name, "--qr") || !strcmp(name, "--no-qr") ||
                !strcmp(name, "--follow") || !strcmp(name, "--unread") ||
                !strcmp(name, "--no-fetch");
    if (flag && eq) {
      snprintf(err, errlen, "%s takes no value", name);
      return -1;
    }
    if (!strcmp(name, "--json")) {
      o->json = true;
    } else if (!strcmp(name, "--wait")) {
      o->wait = true;
    } else if (!strcmp(name, "--help")) {
      o->help = true;
    } else if (!strcmp(name, "--version")) {
      o->version = true;
    } else if (!strcmp(name, "--qr")) {
      o->qr = true;
    } else if (!strcmp(name, "--no-qr")) {
      o->no_qr = true;
    } else if (!strcmp(name, "--follow")) {
      o->follow = true;
    } else if (!strcmp(name, "--unread")) {
      o->unread = true;
    } else if (!strcmp(name, "--no-fetch")) {
      o->no_fetch = true;
    } else if (!strcmp(name, "--name") || !strcmp(name, "--quota") || !strcmp(name, "--expires")) {
      const char *v = opt_value(argc, argv, &i, eq, name, err, errlen);
      if (!v)
        return -1;
      if (!*v) {
        snprintf(err, errlen, "%s: empty value", name);
        return -1;
      }
      if (name[2] == 'n')
        o->name = v;
      else if (name[2] == 'q')
        o->quota = v;
      else
        o->expires = v;
    } else if (!strcmp(name, "--data-dir") || !strcmp(name, "--socket") ||
               !strcmp(name, "--timeout")) {
      const char *v = opt_value(argc, argv, &i, eq, name, err, errlen);
      if (!v)
        return -1;
      if (name[2] == 't') {
        if ((o->timeout_ms = node_cli_parse_seconds(v)) < 0) {
          snprintf(err, errlen, "--timeout: '%s' is not a number of seconds above 0 (at most %.0f)",
                   v, NODE_CLI_MAX_TIMEOUT_S);
          return -1;
        }
      } else if (!*v) {
        snprintf(err, errlen, "%s: empty path", name);
        return -1;
      } else if (name[2] == 'd') {
        o->data_dir = v;
      } else {
        o->socket = v;
      }
    } else {
      snprintf(err, errlen, "unknown option '%s'", name);
      return -1;
    }
  }
  return 0;
}

/* A command with a positive whole number argument.  -1 when s is not one
 * in [lo, hi]. */
int64_t node_cli_parse_count(const char *s, int64_t lo, int64_t hi) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (!*s || *end || errno || *s == '+' || *s == '-' || v < lo || v > hi)
    return -1;
  return v;
}

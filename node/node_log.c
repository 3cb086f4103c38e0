/*
 * node_log.c - roostd's log: one line per message on stderr, with a level
 * and a subsystem ("dht", "net", "ctl", ...).  Quiet by default (warnings
 * and errors).  Under systemd, stderr goes to the journal: lines then start
 * with a syslog priority "<N>" that journald understands, and carry no
 * timestamp of their own.  The level is checked before anything is
 * formatted.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node.h"

static int log_level = NODE_LOG_WARN;
static int log_journal = -1; /* -1: not decided yet */

static const char *const names[] = {"error", "warn", "info", "debug"};
static const int prio[] = {3, 4, 6, 7}; /* syslog: err, warning, info, debug */

void node_log_init(int level) {
  log_level = level;
  log_journal = getenv("JOURNAL_STREAM") != NULL;
}

void node_log_set_level(int level) {
  log_level = level;
}

bool node_log_on(int level) {
  return level <= log_level;
}

int node_log_level_parse(const char *s) {
  for (int i = 0; i < 4; i++)
    if (strcmp(s, names[i]) == 0)
      return i;
  return -1;
}

const char *node_log_level_name(int level) {
  return level >= 0 && level < 4 ? names[level] : "?";
}

void node_log(int level, const char *subsys, const char *fmt, ...) {
  if (level < 0)
    level = 0;
  if (level > 3)
    level = 3;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (log_journal == 1) {
    fprintf(stderr, "<%d>%s: %s\n", prio[level], subsys, msg);
  } else {
    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ %-5s %s: %s\n", when, ts.tv_nsec / 1000000, names[level], subsys,
            msg);
  }
}

/*
 * node.h - the pieces of roostd and roost (the CLI) that both use: logging,
 * the text form of identities and peers, addresses <-> sockaddr, files in
 * the data directory, and the configuration (file and flags).
 *
 * node/ is a driver: it may do I/O, use libuv and keep process-wide state
 * (the log settings).  The engine stays behind dht.h.
 */
#ifndef ROOST_NODE_H
#define ROOST_NODE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "dht.h"

#define ROOST_VERSION "0.1.0"
#define NODE_DEFAULT_PORT 7464

/* ---- logging (node_log.c) ---------------------------------------------- */

enum { NODE_LOG_ERROR = 0, NODE_LOG_WARN, NODE_LOG_INFO, NODE_LOG_DEBUG };

/* Messages at or below level go to stderr.  Under systemd (JOURNAL_STREAM
 * set) lines carry a "<N>" priority prefix for journald and no timestamp. */
void node_log_init(int level);
void node_log_set_level(int level);
bool node_log_on(int level);
void node_log(int level, const char *subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define NLOG(lvl, sub, ...)                                                                        \
  do {                                                                                             \
    if (node_log_on(lvl))                                                                          \
      node_log((lvl), (sub), __VA_ARGS__);                                                         \
  } while (0)
/* "error", "warn", "info", "debug" -> level, or -1. */
int node_log_level_parse(const char *s);
const char *node_log_level_name(int level);

/* ---- identities and addresses in text (node_text.c) -------------------- */

/* The text form of an identity: base32 (RFC 4648 alphabet, lower case, no
 * padding) of the Ed25519 public key followed by a 3-byte checksum
 * (BLAKE2b-256 of "roost-id" || key, first 3 bytes): 56 characters.  A typo
 * is caught with probability 1 - 2^-24. */
#define NODE_IDTEXT_LEN 56

void node_idtext_encode(const uint8_t pk[static DHT_PK_LEN], char out[static NODE_IDTEXT_LEN + 1]);
/* 0, -1 (wrong length or a character outside the alphabet), -2 (checksum). */
int node_idtext_decode(const char *s, uint8_t pk[static DHT_PK_LEN]);

/* "HOST:PORT" or "[V6]:PORT" with a numeric host.  0 or -1. */
int node_addr_parse(const char *s, dht_addr *out);
/* "ID@HOST:PORT".  0, or -1 with a reason in err. */
int node_peer_parse(const char *s, dht_peer *out, char *err, size_t errlen);
void node_addr_to_sockaddr(const dht_addr *a, struct sockaddr_storage *ss, socklen_t *len);
int node_addr_from_sockaddr(const struct sockaddr *sa, dht_addr *out);
bool node_addr_is_any(const dht_addr *a); /* 0.0.0.0 or :: */

/* ---- files (node_files.c) ---------------------------------------------- */

/* Creates dir (and parents) with mode 0700 if missing.  0 or -1 + err. */
int node_dir_prepare(const char *dir, char *err, size_t errlen);
/* Loads DIR/identity.key; creates it (mode 0600, once) when create and it
 * does not exist.  Refuses a file readable or writable by group or others,
 * or owned by another user.  0 or -1 + err. */
int node_identity_load(const char *path, dht_identity *id, bool create, char *err, size_t errlen);
/* Takes an exclusive lock on DIR/roostd.lock (held until exit); the file
 * holds our PID.  0, or -1 + err naming the PID holding it. */
int node_lock_dir(const char *dir, int *fd, char *err, size_t errlen);
/* Writes path atomically: temporary file, fsync, rename, fsync of the
 * directory.  0 or -errno. */
int node_write_atomic(const char *path, const void *buf, size_t len, unsigned mode);
/* Reads a whole file of at most max bytes into a malloc'd buffer.  0,
 * -ENOENT, -EFBIG, or another -errno. */
int node_read_file(const char *path, uint8_t **buf, size_t *len, size_t max);

/* ---- configuration (node_config.c) ------------------------------------- */

#define NODE_MAX_LISTEN 4
#define NODE_MAX_BOOTSTRAP 64

typedef struct node_config {
  char data_dir[PATH_MAX];
  char config_file[PATH_MAX]; /* "" when none */
  char control_socket[108];   /* sun_path; "" means DATA_DIR/roostd.sock */
  dht_addr listen[NODE_MAX_LISTEN];
  int nlisten;
  dht_peer bootstrap[NODE_MAX_BOOTSTRAP];
  int nbootstrap;
  bool lan_discovery;
  uint16_t lan_port;
  int log_level;
  bool server_mode;
  int snapshot_interval_s;
  int rate_pps, rate_burst;
  int max_records;
  int k;
  bool diversity_exempt_private;
  int max_per_prefix_bucket, max_per_prefix_table;
  int send_queue; /* datagrams waiting when the socket is busy */
} node_config;

void node_config_default(node_config *c);
/* Applies one option.  where names the source for errors ("file:line" or
 * "--flag"); the error names it and the key.  0 or -1 + err. */
int node_config_set(node_config *c, const char *key, const char *value, const char *where,
                    char *err, size_t errlen);
/* Reads an INI file: "key = value" lines, '#' or ';' comments, an optional
 * [roostd] section header (others are errors).  0 or -1 + err. */
int node_config_load(node_config *c, const char *path, char *err, size_t errlen);
/* Parses argv: --data-dir, --config, --paths, --help, --version and
 * --<option> VALUE (or --<option>=VALUE) for every option.  Flags override
 * the file; a list given by flags replaces the file's list.  Returns 0 to
 * run, 1 when --help/--version/--paths was handled (exit 0), -1 + err on a
 * usage error (exit 2). */
int node_config_from_args(node_config *c, int argc, char **argv, char *err, size_t errlen);
/* Prints the options table for --help. */
void node_config_help(FILE *out);
/* Resolved path of the control socket. */
void node_config_socket_path(const node_config *c, char *out, size_t len);

/* ---- the daemon (node_daemon.c) ---------------------------------------- */

/* Runs roostd until TERM/INT or a stop command.  argv is kept to re-read
 * the configuration on HUP.  Returns the exit code. */
int node_daemon_run(const node_config *cfg, int argc, char **argv);

#endif /* ROOST_NODE_H */

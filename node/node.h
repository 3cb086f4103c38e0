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
#include "nat.h"
#include "store.h"

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

/* Base32 of any bytes (the same alphabet, lower case, no padding).
 * node_base32_len: characters for n bytes.  encode writes them and a NUL
 * into out (node_base32_len(n) + 1 bytes).  decode is strict (lower case
 * only, a length an encoder makes, unused trailing bits zero): the byte
 * count, -1 (a character outside the alphabet, or non-zero trailing bits)
 * or -2 (a length no encoder makes, or more than outmax bytes). */
size_t node_base32_len(size_t nbytes);
void node_base32_encode(const uint8_t *in, size_t n, char *out);
dht_ssize node_base32_decode(const char *s, size_t len, uint8_t *out, size_t outmax);

/* Sizes people type: "65536", "64K", "10M", "1G", "2T" (binary multiples;
 * "MiB", "MB", "m" all mean 2^20).  0 or -1. */
int node_size_parse(const char *s, int64_t *out);
/* "64 MiB", "1.5 GiB", "512 B". */
void node_size_fmt(int64_t v, char *buf, size_t len);

/* "HOST:PORT" or "[V6]:PORT" with a numeric host.  0 or -1. */
int node_addr_parse(const char *s, dht_addr *out);
/* "ID@HOST:PORT".  0, or -1 with a reason in err. */
int node_peer_parse(const char *s, dht_peer *out, char *err, size_t errlen);
void node_addr_to_sockaddr(const dht_addr *a, struct sockaddr_storage *ss, socklen_t *len);
int node_addr_from_sockaddr(const struct sockaddr *sa, dht_addr *out);
bool node_addr_is_any(const dht_addr *a); /* 0.0.0.0 or :: */

/* ---- invites (node_invite.c) -------------------------------------------- */

/* An invite is what one person gives another to become friends: a signed
 * blob, as text "roost-invite:" + base32 (node_base32_*), that carries
 *
 *   u8 version (1) | 32 B identity public key | u8 name length | name (UTF-8)
 *   | u8 address count | per address: u8 family (4 or 6), 4 or 16 B IP,
 *     u16 BE port
 *   | u8 host count | per host: 32 B public key, u8 family (0 unknown, 4 or
 *     6), IP, port (absent for family 0)
 *   | u64 BE expiry (unix seconds: valid while now < expiry)
 *   | 64 B Ed25519 signature by the identity over
 *     ("roost-invite-v1" || everything before it)
 *   | 4 B checksum: BLAKE2b-256("roost-invite-ck" || everything before it),
 *     first 4 bytes: a typo is reported as a typo, not as a forgery.
 *
 * At most ~460 bytes, ~750 characters: it fits in a friend request's note
 * (STORE_NOTE_MAX). */
#define NODE_INVITE_PREFIX "roost-invite:"
#define NODE_INVITE_VERSION 1
#define NODE_INVITE_NAME_MAX 63
#define NODE_INVITE_MAX_ADDRS 4
#define NODE_INVITE_BLOB_MAX                                                                       \
  (1 + DHT_PK_LEN + 1 + NODE_INVITE_NAME_MAX + 1 + NODE_INVITE_MAX_ADDRS * 19 + 1 +                \
   STORE_MAX_HOSTS * (DHT_PK_LEN + 19) + 8 + DHT_SIG_LEN + 4)
#define NODE_INVITE_TEXT_MAX (sizeof NODE_INVITE_PREFIX - 1 + (NODE_INVITE_BLOB_MAX * 8 + 4) / 5)

typedef struct node_invite {
  int version;
  uint8_t pk[DHT_PK_LEN];
  char name[NODE_INVITE_NAME_MAX + 1]; /* may be empty */
  int naddrs;
  dht_addr addrs[NODE_INVITE_MAX_ADDRS];
  int nhosts;
  store_host_ref hosts[STORE_MAX_HOSTS];
  uint64_t expires_s;
} node_invite;

enum node_invite_err {
  NODE_INVITE_ERR_PREFIX = -1,    /* does not start with "roost-invite:" */
  NODE_INVITE_ERR_BASE32 = -2,    /* a character that is not base32 */
  NODE_INVITE_ERR_LENGTH = -3,    /* too short, too long, or fields that do not add up */
  NODE_INVITE_ERR_CHECKSUM = -4,  /* a typo or a cut (the checksum does not match) */
  NODE_INVITE_ERR_VERSION = -5,   /* made by a newer roost */
  NODE_INVITE_ERR_FORMAT = -6,    /* a field that is not allowed (family, name) */
  NODE_INVITE_ERR_SIGNATURE = -7, /* not signed by the key it names */
  NODE_INVITE_ERR_EXPIRED = -8,
};

/* A display name is 0..63 bytes of UTF-8 without control characters.
 * true when s is one. */
bool node_invite_name_ok(const char *s);

/* Signs inv (its version and pk are ignored: NODE_INVITE_VERSION and id's
 * key are used) and writes the text with its NUL into out (outlen >=
 * NODE_INVITE_TEXT_MAX + 1).  Returns the text length, or -1 when inv is
 * out of bounds (name, counts, families) or out is too small. */
dht_ssize node_invite_encode(const node_invite *inv, const dht_identity *id, char *out,
                             size_t outlen);

/* Parses and checks text (leading and trailing white space ignored) at unix
 * time now_s.  0 and *out, or a NODE_INVITE_ERR_* with a one-line reason in
 * err (the expiry time for an expired one). */
int node_invite_decode(const char *text, uint64_t now_s, node_invite *out, char *err,
                       size_t errlen);

/* For tests and tools: the text of raw blob bytes (checksum appended).
 * Returns the text length or -1. */
dht_ssize node_invite_wrap(const uint8_t *blob, size_t len, char *out, size_t outlen);
/* The raw blob of a text, checksum removed (no other check).  Its length or
 * a NODE_INVITE_ERR_* (PREFIX, BASE32, LENGTH, CHECKSUM). */
dht_ssize node_invite_unwrap(const char *text, uint8_t *blob, size_t max);

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

/* --portmap: which gateway protocols map our UDP port (node_portmap.c) */
enum { NODE_PORTMAP_AUTO = 0, NODE_PORTMAP_UPNP, NODE_PORTMAP_NATPMP, NODE_PORTMAP_OFF };

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
  int mode; /* enum nat_mode: server, client or auto */
  int snapshot_interval_s;
  int rate_pps, rate_burst;
  int max_records;
  int k;
  bool diversity_exempt_private;
  int max_per_prefix_bucket, max_per_prefix_table;
  int send_queue; /* datagrams waiting when the socket is busy */
  int portmap;    /* NODE_PORTMAP_*: auto */
  /* messaging (node_msg.c) */
  char display_name[NODE_INVITE_NAME_MAX + 1]; /* in our invites; "" = $USER */
  int64_t mbox_capacity;                       /* bytes we store for others */
  int64_t mbox_quota;                          /* bytes per mailbox of a stranger */
  int mbox_quota_items;                        /* items per mailbox of a stranger */
  int poll_interval_s;                         /* fetch friends' mailboxes; 0 = on request */
  int ttl_days, hosted_ttl_days;
  int retry_max_s;                    /* backoff cap of a message not yet stored */
  dht_peer my_hosts[STORE_MAX_HOSTS]; /* friends who keep our mailboxes too */
  int nmy_hosts;
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

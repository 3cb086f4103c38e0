/*
 * nat_portmap.h - port mapping: a sans-I/O policy (nat_portmap.c) and the
 * two gateway adapters that only node/ links (nat_upnp.c on miniupnpc,
 * nat_pmp.c on libnatpmp).
 *
 * The policy asks the gateway to forward one UDP port (the daemon's) over
 * NAT-PMP and UPnP IGD in parallel, renews the lease at half, backs off on
 * failure, deletes what it mapped on a clean stop within a bound, and keeps
 * a snapshot for the UI.  It never touches a socket, a clock, a file or a
 * thread: time is an argument (dht_ts, monotonic milliseconds) and each
 * gateway protocol sits behind a nat_gw_ops table whose requests complete
 * later, reported by the driver with nat_portmap_done().
 *
 * Driving it (node/node_portmap.c does this; a test does it with a counter):
 *
 *     nat_portmap_new(&pm, &settings, ops, &cb, mem);
 *     nat_portmap_start(pm, port, now);           the ops start requests
 *     nat_portmap_done(pm, id, &result, now);     for every completion
 *     nat_portmap_verified(pm, proto, ok, now);   nat/'s dial-back verdict
 *     while (nat_portmap_poll_event(pm, &ev) == 0) ...;
 *     rearm(nat_portmap_get_expiry(pm));  on expiry: nat_portmap_handle_expiry(pm, now)
 *     nat_portmap_stop(pm, now); ... until nat_portmap_is_stopped(pm, now)
 *
 * A mapping only "counts" (nat_portmap_external) once a dial-back proved it:
 * a gateway can say yes and still be behind a carrier NAT.
 *
 * Errors are negative DHT_ERR_* codes from the policy's functions.  What a
 * gateway answers is never an error of the policy: it becomes state, a
 * counted attempt and a last error in plain words.  Every pointer argument
 * is borrowed for the call unless the comment says otherwise.  docs/nat.md
 * says what every default is and why.
 */
#ifndef ROOST_NAT_PORTMAP_H
#define ROOST_NAT_PORTMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dht.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the gateway protocols ---------------------------------------------- */

enum nat_pm_proto {
  NAT_PM_NATPMP = 0, /* NAT-PMP (RFC 6886), libnatpmp */
  NAT_PM_UPNP = 1,   /* UPnP IGD (WANIPConnection), miniupnpc */
  NAT_PM_NPROTO = 2,
};

/* What a request asks the gateway. */
enum nat_gw_op {
  NAT_GW_OP_EXTERNAL = 1, /* the gateway's WAN address */
  NAT_GW_OP_ADD = 2,      /* map ext_port -> our int_port (UDP) for lease_s */
  NAT_GW_OP_DELETE = 3,   /* remove our mapping of ext_port */
};

/* The status of a completed request: 0, one of these, or (> 0) the error
 * code a UPnP gateway answered (718 ConflictInMappingEntry, 725
 * OnlyPermanentLeasesSupported, 501 ActionFailed, 606 not authorized...). */
enum nat_gw_err {
  NAT_GW_OK = 0,
  NAT_GW_ERR_NOGATEWAY = -1,   /* no gateway found (no IGD answered SSDP; no default route) */
  NAT_GW_ERR_UNSUPPORTED = -2, /* it does not speak this protocol (port closed; not an IGD) */
  NAT_GW_ERR_TIMEOUT = -3,     /* it did not answer in time (the policy's bound) */
  NAT_GW_ERR_GARBAGE = -4,     /* it answered something that makes no sense */
  NAT_GW_ERR_HTTP = -5,        /* UPnP: its web service could not be reached or failed */
  NAT_GW_ERR_REFUSED = -6,     /* not authorized */
  NAT_GW_ERR_NETWORK = -7,     /* the gateway has no usable WAN connection (NAT-PMP 3) */
  NAT_GW_ERR_RESOURCES = -8,   /* the gateway is out of mappings */
  NAT_GW_ERR_IO = -9,          /* a local socket error */
  NAT_GW_ERR_NOMEM = -10,
  NAT_GW_ERR_INTERNAL = -11, /* the adapter was asked something it cannot do */
};

/* UPnP error codes the policy acts on. */
#define NAT_UPNP_ERR_NO_SUCH_ENTRY 714
#define NAT_UPNP_ERR_CONFLICT 718
#define NAT_UPNP_ERR_ONLY_PERMANENT 725

/* One request to a gateway (the policy fills it; the adapter copies what it
 * needs: the struct is borrowed for the call that starts it). */
typedef struct nat_gw_req {
  uint64_t id;       /* the policy's; the completion carries it back (> 0) */
  uint8_t proto;     /* enum nat_pm_proto */
  uint8_t op;        /* enum nat_gw_op */
  uint16_t int_port; /* our UDP port */
  uint16_t ext_port; /* ADD/DELETE: the external port */
  uint32_t lease_s;  /* ADD: lease asked, 0 = permanent (UPnP only) */
  /* > 0: find the gateway first (UPnP: SSDP discovery waiting this long;
   * NAT-PMP: the default gateway again); 0: use the gateway the adapter has
   * cached (UPnP: the IGD description URL), discovering only when it has
   * none. */
  int32_t discover_ms;
} nat_gw_req;

#define NAT_GW_F_NOT_CONNECTED                                                                     \
  1u /* the IGD says its WAN is not connected                                                      \
        (miniupnpc: UPNP_GetValidIGD returned 2,                                                   \
        which 2.2.x also does for a private or                                                     \
        reserved WAN address) */

/* A completed request, as the driver reports it. */
typedef struct nat_gw_result {
  int status;        /* NAT_GW_OK, a NAT_GW_ERR_*, or a UPnP error code (> 0) */
  dht_addr wan;      /* EXTERNAL: the gateway's WAN address (IPv4, port ignored);
                        ADD: the same when the protocol says, else family 0 */
  uint16_t ext_port; /* ADD: the external port the gateway gave */
  uint32_t lease_s;  /* ADD: the lease it granted, 0 = permanent (asked 0) */
  uint32_t flags;    /* NAT_GW_F_* */
} nat_gw_result;

/* One gateway protocol, as the driver offers it.  Each function starts one
 * asynchronous request and returns at once: 0 when started (the driver will
 * call nat_portmap_done with req->id later, never from inside this call), or
 * a negative NAT_GW_ERR_* when it could not start (that is the request's
 * completion: the driver does not report it again).  The functions are
 * leaves: they never call into the policy.  cancel (optional) tells the
 * driver that the policy gave up on a request (its bound passed, or stop):
 * the driver abandons it if it can and may still report it (ignored). */
typedef struct nat_gw_ops {
  void *ctx;
  int (*get_external)(void *ctx, const nat_gw_req *req);
  int (*add)(void *ctx, const nat_gw_req *req);
  int (*del)(void *ctx, const nat_gw_req *req);
  void (*cancel)(void *ctx, uint64_t id);
} nat_gw_ops;

/* ---- the policy ----------------------------------------------------------- */

/* Every cap and interval.  nat_portmap_settings_default() fills the values in
 * the comments (docs/nat.md says why each is what it is). */
typedef struct nat_portmap_settings {
  uint32_t lease_s;          /* lease asked for: 7200 s */
  dht_ts renew_min_ms;       /* a renewal never comes sooner than this after a grant: 30 s */
  dht_ts permanent_renew_ms; /* a permanent lease (after 725) is re-added every: 1 h */
  dht_ts backoff_min_ms;     /* first retry after a failure: 30 s */
  dht_ts backoff_max_ms;     /* the retry interval doubles up to: 30 min */
  dht_ts upnp_discover_ms;   /* SSDP wait when no IGD is cached: 2 s */
  dht_ts upnp_timeout_ms;    /* one UPnP request, discovery included, is given up after: 10 s */
  dht_ts natpmp_timeout_ms;  /* one NAT-PMP request is given up after: 4 s */
  dht_ts stop_timeout_ms;    /* a clean stop waits for the deletes at most: 3 s */
  int port_tries;            /* external ports tried after conflicts (718): 4 (1..64) */
  int max_events;            /* events waiting for nat_portmap_poll_event: 16 (1..256) */
  int log_level;             /* enum dht_log_level: DHT_LOG_WARN */
} nat_portmap_settings;

void nat_portmap_settings_default(nat_portmap_settings *s);

/* Logging, a leaf: one line without newline, only for levels <=
 * settings.log_level (a quiet policy formats nothing).  log may be NULL. */
typedef struct nat_portmap_callbacks {
  void *ctx;
  void (*log)(void *ctx, int level, const char *msg);
} nat_portmap_callbacks;

typedef struct nat_portmap nat_portmap;

/* Creates a policy.  ops[NAT_PM_NATPMP] and ops[NAT_PM_UPNP] are the two
 * protocols; a NULL entry (or a table with a NULL function) leaves that
 * protocol off.  ops and cb are copied; settings is copied and checked; mem
 * may be NULL (libc).  Returns 0 and sets *out, or DHT_ERR_INVAL (a setting
 * out of range) or DHT_ERR_NOMEM. */
int nat_portmap_new(nat_portmap **out, const nat_portmap_settings *settings,
                    const nat_gw_ops *const ops[NAT_PM_NPROTO], const nat_portmap_callbacks *cb,
                    const dht_mem *mem);
/* Frees the policy; NULL is fine.  It does not delete mappings: call
 * nat_portmap_stop first for that. */
void nat_portmap_del(nat_portmap *pm);

/* Starts mapping UDP port int_port (> 0) on every protocol that is on.
 * Returns 0, DHT_ERR_INVAL (port 0, already started, or stopped). */
int nat_portmap_start(nat_portmap *pm, uint16_t int_port, dht_ts now);

/* Reports the completion of request id (from any protocol).  A completion
 * for a request the policy no longer waits for (timed out, cancelled,
 * unknown) is counted and ignored.  Returns 0, or DHT_ERR_INVAL for a NULL
 * result. */
int nat_portmap_done(nat_portmap *pm, uint64_t id, const nat_gw_result *res, dht_ts now);

/* nat/'s dial-back verdict on the mapping of proto: ok when a peer reached
 * us at its external address.  A verdict for a protocol that has no mapping
 * now is ignored.  A new mapping (another address or port) starts
 * unverified again.  Returns 0 or DHT_ERR_INVAL (bad proto). */
int nat_portmap_verified(nat_portmap *pm, int proto, bool ok, dht_ts now);

/* When nat_portmap_handle_expiry next wants to run (DHT_TS_NEVER if idle). */
dht_ts nat_portmap_get_expiry(const nat_portmap *pm);
/* Runs what is due at now: request bounds, retries, renewals, expired
 * leases, the stop bound.  Returns 0. */
int nat_portmap_handle_expiry(nat_portmap *pm, dht_ts now);

/* Starts a clean stop: nothing new is asked; every mapping we may hold
 * (granted, or asked for and not yet answered) is deleted.  It is done when
 * every delete completed (failed deletes are not retried: the lease ends
 * them) or when settings.stop_timeout_ms passed, whichever comes first:
 * nat_portmap_is_stopped says which.  Returns 0 (also when already
 * stopping). */
int nat_portmap_stop(nat_portmap *pm, dht_ts now);
/* True once a stop finished: its deletes completed, or its bound passed at
 * now.  False before nat_portmap_stop. */
bool nat_portmap_is_stopped(const nat_portmap *pm, dht_ts now);

/* ---- what it found ---------------------------------------------------------- */

enum nat_pm_event_type {
  NAT_PM_EV_MAPPED = 1, /* a new or changed mapping, unverified: dial-back ext */
  NAT_PM_EV_LOST = 2,   /* the mapping of proto is gone (lease ended, failure, stop) */
  NAT_PM_EV_BEHIND = 3, /* the gateway's WAN address is private or reserved */
  NAT_PM_EV_FAILED = 4, /* the first attempts failed: error says why (once per run of failures) */
};

typedef struct nat_pm_event {
  uint8_t type;  /* enum nat_pm_event_type */
  uint8_t proto; /* enum nat_pm_proto */
  dht_addr ext;  /* MAPPED: our external address:port; BEHIND: the gateway's WAN address */
  int error;     /* FAILED: the status */
} nat_pm_event;

/* Takes the oldest event into *ev.  0, or DHT_ERR_NOTFOUND when none.  At
 * the cap the oldest event is dropped (and counted). */
int nat_portmap_poll_event(nat_portmap *pm, nat_pm_event *ev);

/* Our external address:port through a proven mapping (NAT-PMP's first when
 * both are).  0 and *out, or DHT_ERR_NOTFOUND when no mapping counts. */
int nat_portmap_external(const nat_portmap *pm, dht_addr *out, dht_ts now);

enum nat_pm_state {
  NAT_PM_OFF = 0,     /* this protocol is off, or not started */
  NAT_PM_DISCOVERING, /* looking for the gateway / asking its WAN address */
  NAT_PM_MAPPING,     /* asking for the mapping */
  NAT_PM_MAPPED,      /* a lease is held (see verify) */
  NAT_PM_RENEWING,    /* a lease is held and being renewed */
  NAT_PM_FAILED,      /* no mapping; waiting to try again (see last_error) */
  NAT_PM_DELETING,    /* stopping: our mapping is being deleted */
  NAT_PM_STOPPED,     /* stopped: deleted, or given up on (see last_error) */
};

enum nat_pm_verify {
  NAT_PM_UNVERIFIED = 0, /* no dial-back verdict yet: the mapping does not count */
  NAT_PM_VERIFIED = 1,   /* a dial-back reached us through it */
  NAT_PM_REFUTED = 2,    /* a dial-back failed: the mapping does not help */
};

#define NAT_PM_ERRTEXT_LEN 112

/* The state of one protocol, for the UI. */
typedef struct nat_pm_info {
  uint8_t state;   /* enum nat_pm_state */
  uint8_t verify;  /* enum nat_pm_verify */
  bool behind_nat; /* the gateway's WAN address is private/reserved, or it says
                      it is not connected: carrier NAT or double NAT */
  bool permanent;  /* the gateway takes only permanent leases (725) */
  dht_addr wan;    /* the gateway's WAN address (family 0: unknown) */
  dht_addr ext;    /* our mapped address:port (family 0: none) */
  uint16_t int_port;
  uint32_t lease_s;      /* granted (0 permanent or none) */
  int64_t lease_left_ms; /* 0: no lease; -1: permanent */
  int64_t next_ms;       /* until the next request (retry or renewal); -1: none due */
  int last_error;        /* status of the last failure, 0 none */
  char last_error_text[NAT_PM_ERRTEXT_LEN]; /* it, in plain words ("" none) */
  uint32_t attempts;                        /* requests started */
  uint32_t failures;                        /* failed requests, all told */
  uint32_t failures_row;                    /* failed requests since the last success */
} nat_pm_info;

/* Fills *out for proto at now.  0 or DHT_ERR_INVAL. */
int nat_portmap_info(const nat_portmap *pm, int proto, nat_pm_info *out, dht_ts now);

typedef struct nat_pm_stats {
  uint64_t stale_done; /* completions for requests no longer waited for */
  uint64_t garbage;    /* completions that made no sense (counted as failures too) */
  uint64_t events_dropped;
} nat_pm_stats;
void nat_portmap_get_stats(const nat_portmap *pm, nat_pm_stats *out);

/* Short static names. */
const char *nat_portmap_proto_name(int proto); /* "NAT-PMP", "UPnP" */
const char *nat_portmap_state_name(int state); /* "off", "discovering", ... */
const char *nat_portmap_strerror(int status);  /* a gateway status in plain words */

/* ---- the adapters (roost_nat_adapters: node/ only) ------------------------ */

/*
 * nat_upnp.c: miniupnpc.  Every call blocks (SSDP, HTTP): node/ runs
 * nat_upnp_run on the libuv thread pool, one request at a time per
 * nat_upnp (the IGD cache is not locked).
 */
typedef struct nat_upnp_settings {
  const char *desc;    /* mapping description shown by the router: "roost" (copied) */
  int max_devices;     /* SSDP answers whose description is fetched: 8 (1..64) */
  dht_addr internal;   /* the LAN address to map to; family 0: the one that reaches the IGD */
  const char *igd_url; /* a fixed IGD description URL (no SSDP), or NULL (copied) */
} nat_upnp_settings;
void nat_upnp_settings_default(nat_upnp_settings *s);

typedef struct nat_upnp nat_upnp;
/* 0 and *out, DHT_ERR_INVAL or DHT_ERR_NOMEM. */
int nat_upnp_new(nat_upnp **out, const nat_upnp_settings *s);
void nat_upnp_del(nat_upnp *u); /* NULL is fine */
/* Runs req to completion (blocking) and fills *res.  Never fails otherwise:
 * every problem is a status in *res. */
void nat_upnp_run(nat_upnp *u, const nat_gw_req *req, nat_gw_result *res);

/*
 * nat_pmp.c: libnatpmp, non-blocking.  The driver watches nat_pmp_fd for
 * reading and calls nat_pmp_read when it is readable or when
 * nat_pmp_timeout_ms has passed (libnatpmp retransmits then).  One request
 * at a time: starting one abandons the previous.
 */
typedef struct nat_pmp nat_pmp;
/* gateway: a fixed gateway (IPv4), or NULL for the default route's. */
int nat_pmp_new(nat_pmp **out, const dht_addr *gateway);
void nat_pmp_del(nat_pmp *p); /* NULL is fine; closes the socket */
/* Sends req (finding the gateway first when req->discover_ms > 0 or there
 * is no socket yet: that closes the old socket, so the driver stops
 * watching nat_pmp_fd before).  0, or a NAT_GW_ERR_* (the completion). */
int nat_pmp_start(nat_pmp *p, const nat_gw_req *req);
/* Forgets the request in flight (its answer, if any, is then ignored). */
void nat_pmp_cancel(nat_pmp *p);
/* The socket to watch, or -1. */
int nat_pmp_fd(const nat_pmp *p);
/* Milliseconds until nat_pmp_read wants to run (retransmission), -1: no
 * request in flight. */
int64_t nat_pmp_timeout_ms(nat_pmp *p);
/* Reads an answer if one is there, or retransmits when due.  Returns 1 and
 * fills *id and *res when the request completed, 0 when it is still
 * pending (or none is). */
int nat_pmp_read(nat_pmp *p, uint64_t *id, nat_gw_result *res);

#ifdef __cplusplus
}
#endif

#endif /* ROOST_NAT_PORTMAP_H */

/*
 * nat_wire.h - the NAT service's messages (types 0x40-0x53): the one place
 * their types, fields, bounds and status codes are defined
 * (docs/protocol.md, "Dial-backs", "Vouching" and "Hole punching").  Strict codec: exact arity,
 * exact lengths, no trailing bytes.  Byte fields of a decoded message point into its body.
 */
#ifndef ROOST_NAT_WIRE_H
#define ROOST_NAT_WIRE_H

#include "nat.h"

enum nat_wire_type {
  NAT_T_DIAL_REQ = 0x40,     /* [t, txid, port, nonce(16), cookie(16), exclude(0|32)] */
  NAT_T_DIAL_RESP = 0x41,    /* [t, txid, status] */
  NAT_T_DIAL_FWD = 0x42,     /* [t, txid, target(6|18), pk(32), nonce(16)] */
  NAT_T_DIAL_FWD_ACK = 0x43, /* [t, txid, status] */
  NAT_T_PROBE = 0x44,        /* [t, txid, nonce(16)] */
  NAT_T_PROBE_ACK = 0x45,    /* [t, txid] */
  NAT_T_VOUCH_REQ = 0x46,    /* [t, txid, target(6|18), pk(32), nonce(16)] */
  NAT_T_VOUCH_ACK = 0x47,    /* [t, txid, status] */
  NAT_T_CHECK = 0x48,        /* [t, txid, nonce(16), asker_pk(32), asker(6|18)] */
  NAT_T_CHECK_ACK = 0x49,    /* [t, txid] */
  NAT_T_VOUCHED = 0x4a,      /* [t, txid, nonce(16)] */
  /* hole punching (nat_punch.c); cands: an array of 0..NAT_CANDS addresses */
  NAT_T_INTRO_REG = 0x4b, /* [t, txid, rtt_ms, cands, cookie(16)]: "introduce me" */
  NAT_T_PUNCH_REQ = 0x4c, /* [t, txid, pk(32), nonce(16), rtt_ms, cands, cookie(16)] */
  NAT_T_PUNCH_FWD = 0x4d, /* [t, txid, pk(32), nonce(16), wait_ms, cands] */
  NAT_T_PUNCH_ACK = 0x4e, /* [t, txid, status, wait_ms, cands]: answers the three */
  NAT_T_HOLE = 0x4f,      /* [t, txid, nonce(16)]: a probe; its answer echoes the txid */
  /* relaying (nat_relay.c) */
  NAT_T_RELAY_REQ = 0x50, /* [t, txid, pk(32), nonce(16)]: a circuit to pk, both ask */
  NAT_T_RELAY_ACK = 0x51, /* [t, txid, status] */
  /* a punched or relayed path's keepalive (a service request, not a core
   * PING: a PONG from a client would put it in the pinger's routing table) */
  NAT_T_KEEP = 0x52,     /* [t, txid] */
  NAT_T_KEEP_ACK = 0x53, /* [t, txid] */
};

/* status in DIAL_RESP, DIAL_FWD_ACK and VOUCH_ACK */
enum nat_wire_status {
  NAT_W_OK = 0,        /* a prober was asked / the probe (the check) was sent */
  NAT_W_NO_PROBER = 1, /* nobody to ask that the requester has not talked to */
  NAT_W_REFUSED = 2,   /* no valid cookie, or over the rate */
  NAT_W_UNKNOWN = 3,   /* PUNCH_REQ: the target is not one we introduce */
  NAT_W_FULL = 4,      /* INTRO_REG: we introduce as many as we can; RELAY_REQ: circuits */
  NAT_W_PENDING = 5,   /* RELAY_REQ: the other end has not asked yet */
};

#define NAT_CANDS 4          /* candidate addresses in a punch message */
#define NAT_WAIT_MAX_MS 5000 /* the largest wait_ms a peer may ask for */

#define NAT_NONCE_LEN 16
#define NAT_BLOOM_LEN 32

typedef struct nat_wire_msg {
  uint8_t type;
  uint32_t txid;
  union {
    struct {
      uint16_t port; /* 1..65535 */
      const uint8_t *nonce, *cookie;
      const uint8_t *exclude; /* NAT_BLOOM_LEN bytes, or NULL */
    } dial_req;
    struct {
      uint8_t status;
    } dial_resp, fwd_ack, vouch_ack;
    /* VOUCH_REQ: target is the candidate's address as the asker saw it, pk
     * its key */
    struct {
      dht_addr target;
      const uint8_t *pk, *nonce;
    } dial_fwd, vouch_req;
    struct {
      const uint8_t *nonce;
    } probe, vouched;
    /* the asker (who wants the VOUCHED) as the voucher saw it */
    struct {
      const uint8_t *nonce, *pk;
      dht_addr asker;
    } check;
    /* INTRO_REG, PUNCH_REQ, PUNCH_FWD and PUNCH_ACK: pk and nonce are NULL
     * where the type has none; status only in PUNCH_ACK; ms is rtt_ms or
     * wait_ms (0..NAT_WAIT_MAX_MS) */
    struct {
      const uint8_t *pk, *nonce;
      const uint8_t *cookie; /* INTRO_REG and PUNCH_REQ */
      uint8_t status;
      uint16_t ms;
      int ncands;
      dht_addr cands[NAT_CANDS];
    } punch;
    struct {
      const uint8_t *nonce;
    } hole;
    struct {
      const uint8_t *pk, *nonce;
    } relay_req;
  } u;
} nat_wire_msg;

/* Reads [type, txid] with the arity of the type; 0 or DHT_ERR_PROTO. */
int nat_wire_head(const uint8_t *body, size_t len, uint8_t *type, uint32_t *txid);
/* Decodes body strictly into m; 0 or DHT_ERR_PROTO (DHT_ERR_NOTFOUND for a
 * type of our range that we do not know: ignored, for newer versions). */
int nat_wire_decode(nat_wire_msg *m, const uint8_t *body, size_t len);
/* Encodes m into buf; the length, DHT_ERR_NOBUF or DHT_ERR_INVAL. */
dht_ssize nat_wire_encode(uint8_t *buf, size_t cap, const nat_wire_msg *m);

#endif /* ROOST_NAT_WIRE_H */

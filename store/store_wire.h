/*
 * store_wire.h - the mailbox service's messages (types 0x30-0x3f) as C
 * structs: the one place their types, fields, bounds and status codes are
 * defined (docs/mailbox.md is the protocol; store_wire.c the codec).
 *
 * Every body is a msgpack array [type, txid, fields...] inside the engine's
 * authenticated envelope.  Decoding is strict (rule 10 of the house style):
 * exact arity, every bin within its bounds and of an exact length or
 * multiple where the layout says so, integers within their maxima, no
 * trailing bytes.  A decoded message points into the body it came from: it
 * is valid while that body is.
 *
 * Encoding writes exactly the fields it is given and checks only that they
 * fit the buffer: the decoder is the strict side, and tests and the fuzzer
 * build hostile bodies with the same encoder.  The service only ever
 * encodes what the decoder accepts (the fuzzer checks this on every body).
 */
#ifndef ROOST_STORE_WIRE_H
#define ROOST_STORE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dht.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The message types, each with its fields after [type, txid]. */
enum store_wire_type {
  STORE_T_DEPOSIT = 0x30,    /* flags, mbox, mbox_pk, deposited_s, item, sig */
  STORE_T_RECEIPT = 0x31,    /* status, hash(16), sig(0|64) */
  STORE_T_FETCH = 0x32,      /* mbox, mbox_pk, time_s, sig, after(0|16) */
  STORE_T_LIST = 0x33,       /* status, entries(n*17), more */
  STORE_T_GETITEM = 0x34,    /* mbox, hash */
  STORE_T_ITEM = 0x35,       /* status, deposited_s, item(0..1000), sig(0|64) */
  STORE_T_DELETE = 0x36,     /* mbox, mbox_pk, time_s, hashes(n*16, n >= 1), sig */
  STORE_T_ACK = 0x37,        /* status, n */
  STORE_T_RECON = 0x38,      /* mbox, fp(16), count */
  STORE_T_RECON_R = 0x39,    /* status, buckets(0|16*18) */
  STORE_T_RECON_L = 0x3a,    /* mbox, mask, entries(n*17) */
  STORE_T_RECON_LR = 0x3b,   /* status, want(n*17) */
  STORE_T_TOMB = 0x3c,       /* mbox, mbox_pk, proof(1..700) */
  STORE_T_DIRECT = 0x3d,     /* mbox, deposited_s, item, sig */
  STORE_T_DIRECT_ACK = 0x3e, /* status */
  STORE_T_REGISTER = 0x3f,   /* ids(n*32, n >= 1), sig */
};

/* DEPOSIT flags. */
#define STORE_F_PUSH 0x01    /* a replica forwarding an item (reconciliation) */
#define STORE_F_HOSTED 0x02  /* for a friend the storage node hosts */
#define STORE_F_REQUEST 0x04 /* a friend request: proof of work, no mailbox key */

/* Status codes on the wire: positive, 0 = ok.  docs/mailbox.md lists 0-7;
 * 8-10 are RECON_R's answers. */
enum store_wire_status {
  STORE_W_OK = 0,
  STORE_W_MBOX_FULL = 1,
  STORE_W_NODE_FULL = 2,
  STORE_W_BADSIG = 3,
  STORE_W_TIME = 4,
  STORE_W_TOOBIG = 5,
  STORE_W_REFUSED = 6,
  STORE_W_NOTFOUND = 7,
  STORE_W_EQUAL = 8,  /* RECON_R: the sets are the same */
  STORE_W_DIFFER = 9, /* RECON_R: the buckets follow */
  STORE_W_EMPTY = 10, /* RECON_R: the responder holds nothing */
};

/* Field bounds. */
#define STORE_ENTRY_LEN 17  /* a listed entry: hash(16) || record kind(1) */
#define STORE_LIST_MAX 60   /* entries in one LIST, RECON_L or RECON_LR */
#define STORE_NBUCKETS 16   /* reconciliation sub-ranges: the first nibble */
#define STORE_BUCKET_LEN 18 /* a bucket: fp(16) || count(2, BE) */
#define STORE_REG_MAX 32    /* mailbox IDs in one REGISTER */
#define STORE_FP_LEN 16     /* a reconciliation fingerprint */
#define STORE_RECON_COUNT_MAX (1u << 24)
/* Unix seconds on the wire: deposited_s, time_s (far past 2106 on purpose:
 * a bound for the reader, not a date check). */
#define STORE_WIRE_TIME_MAX (UINT32_MAX * 4ULL)

/* One message.  Byte fields point into the decoded body (or, to encode, at
 * the caller's bytes); fixed-size ones are exactly their size; an optional
 * one (sig of RECEIPT and ITEM, after of FETCH) is NULL when absent. */
typedef struct store_wire_msg {
  uint8_t type; /* enum store_wire_type */
  uint32_t txid;
  union {
    struct {
      uint8_t flags;          /* STORE_F_* */
      const uint8_t *mbox;    /* STORE_MBOX_LEN */
      const uint8_t *mbox_pk; /* DHT_PK_LEN */
      uint64_t deposited_s;
      const uint8_t *item; /* 1..STORE_ITEM_MAX bytes */
      size_t item_len;
      const uint8_t *sig; /* DHT_SIG_LEN */
    } deposit;
    struct {
      uint8_t status;
      const uint8_t *hash; /* STORE_HASH_LEN */
      const uint8_t *sig;  /* DHT_SIG_LEN or NULL (a refusal) */
    } receipt;
    struct {
      const uint8_t *mbox, *mbox_pk;
      uint64_t time_s;
      const uint8_t *sig;
      const uint8_t *after; /* STORE_HASH_LEN, or NULL: from the start */
    } fetch;
    struct {
      uint8_t status;
      const uint8_t *entries; /* nentries * STORE_ENTRY_LEN */
      size_t nentries;        /* <= STORE_LIST_MAX */
      bool more;
    } list;
    struct {
      const uint8_t *mbox, *hash;
    } getitem;
    struct {
      uint8_t status;
      uint64_t deposited_s;
      const uint8_t *item; /* 0..STORE_ITEM_MAX bytes */
      size_t item_len;
      const uint8_t *sig; /* DHT_SIG_LEN or NULL */
    } item;
    struct {
      const uint8_t *mbox, *mbox_pk;
      uint64_t time_s;
      const uint8_t *hashes; /* nhashes * STORE_HASH_LEN */
      size_t nhashes;        /* 1..STORE_DEL_MAX */
      const uint8_t *sig;
    } del;
    struct {
      uint8_t status;
      uint32_t n;
    } ack;
    struct {
      const uint8_t *mbox;
      const uint8_t *fp; /* STORE_FP_LEN */
      uint32_t count;    /* <= STORE_RECON_COUNT_MAX */
    } recon;
    struct {
      uint8_t status;
      const uint8_t *buckets; /* STORE_NBUCKETS * STORE_BUCKET_LEN bytes, or none */
      size_t buckets_len;     /* 0 or STORE_NBUCKETS * STORE_BUCKET_LEN */
    } recon_r;
    struct {
      const uint8_t *mbox;
      uint16_t mask; /* bit i: sub-range i differs */
      const uint8_t *entries;
      size_t nentries; /* <= STORE_LIST_MAX */
    } recon_l;
    struct {
      uint8_t status;
      const uint8_t *want; /* nwant * STORE_ENTRY_LEN */
      size_t nwant;        /* <= STORE_LIST_MAX */
    } recon_lr;
    struct {
      const uint8_t *mbox, *mbox_pk;
      const uint8_t *proof; /* 1..STORE_PROOF_MAX bytes */
      size_t proof_len;
    } tomb;
    struct {
      const uint8_t *mbox;
      uint64_t deposited_s;
      const uint8_t *item; /* 1..STORE_ITEM_MAX bytes */
      size_t item_len;
      const uint8_t *sig;
    } direct;
    struct {
      uint8_t status;
    } direct_ack;
    struct {
      const uint8_t *ids; /* nids * STORE_MBOX_LEN */
      size_t nids;        /* 1..STORE_REG_MAX */
      const uint8_t *sig;
    } reg;
  } u;
} store_wire_msg;

/* Reads the head of body: an array of the exact arity of its type, the type
 * (0x30-0x3f) and the txid.  Returns 0 or DHT_ERR_PROTO.  The engine only
 * hands the service bodies in its range, so a failure is a malformed body. */
int store_wire_head(const uint8_t *body, size_t len, uint8_t *type, uint32_t *txid);

/* Decodes the whole of body into m (pointers into body, borrowed).  Returns
 * 0 or DHT_ERR_PROTO (m is then unspecified). */
int store_wire_decode(store_wire_msg *m, const uint8_t *body, size_t len);

/* Encodes m into buf (cap bytes).  Returns the length, DHT_ERR_NOBUF when
 * it does not fit, DHT_ERR_INVAL for a type outside 0x30-0x3f. */
dht_ssize store_wire_encode(uint8_t *buf, size_t cap, const store_wire_msg *m);

/* The answer type of a request type (DEPOSIT -> RECEIPT, FETCH -> LIST ...),
 * 0 when type is not a request. */
uint8_t store_wire_answer_type(uint8_t type);

/* The error code of a refusal status: STORE_ERR_* or DHT_ERR_NOTFOUND,
 * DHT_ERR_INVAL for a status without its own code. */
int store_wire_status_err(uint64_t status);

#ifdef __cplusplus
}
#endif
#endif /* ROOST_STORE_WIRE_H */

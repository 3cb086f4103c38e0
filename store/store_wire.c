/*
 * store_wire.c - the codec of the mailbox service's messages (store_wire.h).
 *
 * It owns the layout of every type 0x30-0x3f: the arity table, the order
 * and bounds of the fields, and the mapping of wire status codes to error
 * codes.  Nothing else in roost reads or writes these bodies field by field.
 *
 * Invariants: decoding consumes every byte or fails (dht_wire_r_end); a
 * decoded byte field is never shorter than its bound says; encoding a
 * decoded message gives back the same bytes whenever the body used
 * msgpack's shortest forms, as dht_wire writes them (test_store_wire).  The head is read the same
 * way by store_wire_head and store_wire_decode, so a body that passes the one and fails the other
 * has bad fields, not a bad head.
 */
#include <string.h>

#include "store_wire.h"

/* Elements per type, [type, txid] included; index type - 0x30. */
static const uint8_t arity[16] = {8, 5, 7, 5, 4, 6, 7, 4, 5, 4, 5, 4, 5, 6, 3, 4};

static int head(dht_wire_r *r, uint8_t *type, uint32_t *txid) {
  uint32_t n;
  uint64_t t, x;
  /* 16 elements at most: no type has more, and the reader refuses a count
   * larger than the bytes left before anything is allocated */
  if (dht_wire_r_array_max(r, 16, &n) || dht_wire_r_uint(r, 0x7f, &t) ||
      dht_wire_r_uint(r, UINT32_MAX, &x))
    return DHT_ERR_PROTO;
  if (t < STORE_MSG_LO || t > STORE_MSG_HI || n != arity[t - STORE_MSG_LO])
    return DHT_ERR_PROTO;
  *type = (uint8_t)t;
  *txid = (uint32_t)x;
  return 0;
}

int store_wire_head(const uint8_t *body, size_t len, uint8_t *type, uint32_t *txid) {
  dht_wire_r r;
  dht_wire_r_init(&r, body, len);
  return head(&r, type, txid);
}

/* Small readers that store into the struct's narrower fields.  Each returns
 * 0 or DHT_ERR_PROTO (the reader's error is sticky, so a chain of them
 * joined with || stops at the first failure). */

static int r_u8(dht_wire_r *r, uint8_t *out) {
  uint64_t v;
  if (dht_wire_r_uint(r, 0xff, &v))
    return DHT_ERR_PROTO;
  *out = (uint8_t)v;
  return 0;
}

static int r_fixed(dht_wire_r *r, size_t len, const uint8_t **out) {
  size_t n;
  return dht_wire_r_bin(r, len, len, out, &n);
}

/* A bin of n * unit bytes with n in [lo, hi]. */
static int r_units(dht_wire_r *r, size_t unit, size_t lo, size_t hi, const uint8_t **out,
                   size_t *n) {
  size_t len;
  if (dht_wire_r_bin(r, lo * unit, hi * unit, out, &len) || len % unit)
    return DHT_ERR_PROTO;
  *n = len / unit;
  return 0;
}

/* A bin of exactly len bytes or none: *out is NULL when empty. */
static int r_optional(dht_wire_r *r, size_t len, const uint8_t **out) {
  size_t n;
  if (dht_wire_r_bin(r, 0, len, out, &n) || (n != 0 && n != len))
    return DHT_ERR_PROTO;
  if (n == 0)
    *out = NULL;
  return 0;
}

/* Reads the fields of m->type after the head: 0 when every one is within
 * its bounds, nonzero otherwise. */
static int fields(dht_wire_r *r, store_wire_msg *m) {
  uint64_t v;
  switch (m->type) {
  case STORE_T_DEPOSIT:
    return r_u8(r, &m->u.deposit.flags) || r_fixed(r, STORE_MBOX_LEN, &m->u.deposit.mbox) ||
           r_fixed(r, DHT_PK_LEN, &m->u.deposit.mbox_pk) ||
           dht_wire_r_uint(r, STORE_WIRE_TIME_MAX, &m->u.deposit.deposited_s) ||
           dht_wire_r_bin(r, 1, STORE_ITEM_MAX, &m->u.deposit.item, &m->u.deposit.item_len) ||
           r_fixed(r, DHT_SIG_LEN, &m->u.deposit.sig);
  case STORE_T_RECEIPT:
    return r_u8(r, &m->u.receipt.status) || r_fixed(r, STORE_HASH_LEN, &m->u.receipt.hash) ||
           r_optional(r, DHT_SIG_LEN, &m->u.receipt.sig);
  case STORE_T_FETCH:
    return r_fixed(r, STORE_MBOX_LEN, &m->u.fetch.mbox) ||
           r_fixed(r, DHT_PK_LEN, &m->u.fetch.mbox_pk) ||
           dht_wire_r_uint(r, STORE_WIRE_TIME_MAX, &m->u.fetch.time_s) ||
           r_fixed(r, DHT_SIG_LEN, &m->u.fetch.sig) ||
           r_optional(r, STORE_HASH_LEN, &m->u.fetch.after);
  case STORE_T_LIST:
    return r_u8(r, &m->u.list.status) ||
           r_units(r, STORE_ENTRY_LEN, 0, STORE_LIST_MAX, &m->u.list.entries,
                   &m->u.list.nentries) ||
           dht_wire_r_bool(r, &m->u.list.more);
  case STORE_T_GETITEM:
    return r_fixed(r, STORE_MBOX_LEN, &m->u.getitem.mbox) ||
           r_fixed(r, STORE_HASH_LEN, &m->u.getitem.hash);
  case STORE_T_ITEM:
    return r_u8(r, &m->u.item.status) ||
           dht_wire_r_uint(r, STORE_WIRE_TIME_MAX, &m->u.item.deposited_s) ||
           dht_wire_r_bin(r, 0, STORE_ITEM_MAX, &m->u.item.item, &m->u.item.item_len) ||
           r_optional(r, DHT_SIG_LEN, &m->u.item.sig);
  case STORE_T_DELETE:
    return r_fixed(r, STORE_MBOX_LEN, &m->u.del.mbox) ||
           r_fixed(r, DHT_PK_LEN, &m->u.del.mbox_pk) ||
           dht_wire_r_uint(r, STORE_WIRE_TIME_MAX, &m->u.del.time_s) ||
           r_units(r, STORE_HASH_LEN, 1, STORE_DEL_MAX, &m->u.del.hashes, &m->u.del.nhashes) ||
           r_fixed(r, DHT_SIG_LEN, &m->u.del.sig);
  case STORE_T_ACK:
    if (r_u8(r, &m->u.ack.status) || dht_wire_r_uint(r, UINT32_MAX, &v))
      return DHT_ERR_PROTO;
    m->u.ack.n = (uint32_t)v;
    return 0;
  case STORE_T_RECON:
    if (r_fixed(r, STORE_MBOX_LEN, &m->u.recon.mbox) || r_fixed(r, STORE_FP_LEN, &m->u.recon.fp) ||
        dht_wire_r_uint(r, STORE_RECON_COUNT_MAX, &v))
      return DHT_ERR_PROTO;
    m->u.recon.count = (uint32_t)v;
    return 0;
  case STORE_T_RECON_R:
    if (r_u8(r, &m->u.recon_r.status) ||
        r_optional(r, STORE_NBUCKETS * STORE_BUCKET_LEN, &m->u.recon_r.buckets))
      return DHT_ERR_PROTO;
    m->u.recon_r.buckets_len = m->u.recon_r.buckets ? STORE_NBUCKETS * STORE_BUCKET_LEN : 0;
    return 0;
  case STORE_T_RECON_L:
    if (r_fixed(r, STORE_MBOX_LEN, &m->u.recon_l.mbox) || dht_wire_r_uint(r, 0xffff, &v) ||
        r_units(r, STORE_ENTRY_LEN, 0, STORE_LIST_MAX, &m->u.recon_l.entries,
                &m->u.recon_l.nentries))
      return DHT_ERR_PROTO;
    m->u.recon_l.mask = (uint16_t)v;
    return 0;
  case STORE_T_RECON_LR:
    return r_u8(r, &m->u.recon_lr.status) || r_units(r, STORE_ENTRY_LEN, 0, STORE_LIST_MAX,
                                                     &m->u.recon_lr.want, &m->u.recon_lr.nwant);
  case STORE_T_TOMB:
    return r_fixed(r, STORE_MBOX_LEN, &m->u.tomb.mbox) ||
           r_fixed(r, DHT_PK_LEN, &m->u.tomb.mbox_pk) ||
           dht_wire_r_bin(r, 1, STORE_PROOF_MAX, &m->u.tomb.proof, &m->u.tomb.proof_len);
  case STORE_T_DIRECT:
    return r_fixed(r, STORE_MBOX_LEN, &m->u.direct.mbox) ||
           dht_wire_r_uint(r, STORE_WIRE_TIME_MAX, &m->u.direct.deposited_s) ||
           dht_wire_r_bin(r, 1, STORE_ITEM_MAX, &m->u.direct.item, &m->u.direct.item_len) ||
           r_fixed(r, DHT_SIG_LEN, &m->u.direct.sig);
  case STORE_T_DIRECT_ACK:
    return r_u8(r, &m->u.direct_ack.status);
  case STORE_T_REGISTER:
    return r_units(r, STORE_MBOX_LEN, 1, STORE_REG_MAX, &m->u.reg.ids, &m->u.reg.nids) ||
           r_fixed(r, DHT_SIG_LEN, &m->u.reg.sig);
  default:
    return DHT_ERR_PROTO;
  }
}

int store_wire_decode(store_wire_msg *m, const uint8_t *body, size_t len) {
  dht_wire_r r;
  memset(m, 0, sizeof *m);
  dht_wire_r_init(&r, body, len);
  if (head(&r, &m->type, &m->txid) || fields(&r, m) || dht_wire_r_end(&r))
    return DHT_ERR_PROTO;
  return 0;
}

/* ---- encoding ----------------------------------------------------------- */

/* A byte field written from a pointer that may be NULL when len is 0. */
static void w_bytes(dht_wire_w *w, const uint8_t *p, size_t len) {
  dht_wire_w_bin(w, p, p ? len : 0);
}

dht_ssize store_wire_encode(uint8_t *buf, size_t cap, const store_wire_msg *m) {
  if (m->type < STORE_MSG_LO || m->type > STORE_MSG_HI)
    return DHT_ERR_INVAL;
  dht_wire_w w;
  dht_wire_w_init(&w, buf, cap);
  dht_wire_w_array(&w, arity[m->type - STORE_MSG_LO]);
  dht_wire_w_uint(&w, m->type);
  dht_wire_w_uint(&w, m->txid);
  switch (m->type) {
  case STORE_T_DEPOSIT:
    dht_wire_w_uint(&w, m->u.deposit.flags);
    w_bytes(&w, m->u.deposit.mbox, STORE_MBOX_LEN);
    w_bytes(&w, m->u.deposit.mbox_pk, DHT_PK_LEN);
    dht_wire_w_uint(&w, m->u.deposit.deposited_s);
    w_bytes(&w, m->u.deposit.item, m->u.deposit.item_len);
    w_bytes(&w, m->u.deposit.sig, DHT_SIG_LEN);
    break;
  case STORE_T_RECEIPT:
    dht_wire_w_uint(&w, m->u.receipt.status);
    w_bytes(&w, m->u.receipt.hash, STORE_HASH_LEN);
    w_bytes(&w, m->u.receipt.sig, DHT_SIG_LEN);
    break;
  case STORE_T_FETCH:
    w_bytes(&w, m->u.fetch.mbox, STORE_MBOX_LEN);
    w_bytes(&w, m->u.fetch.mbox_pk, DHT_PK_LEN);
    dht_wire_w_uint(&w, m->u.fetch.time_s);
    w_bytes(&w, m->u.fetch.sig, DHT_SIG_LEN);
    w_bytes(&w, m->u.fetch.after, STORE_HASH_LEN);
    break;
  case STORE_T_LIST:
    dht_wire_w_uint(&w, m->u.list.status);
    w_bytes(&w, m->u.list.entries, m->u.list.nentries * STORE_ENTRY_LEN);
    dht_wire_w_bool(&w, m->u.list.more);
    break;
  case STORE_T_GETITEM:
    w_bytes(&w, m->u.getitem.mbox, STORE_MBOX_LEN);
    w_bytes(&w, m->u.getitem.hash, STORE_HASH_LEN);
    break;
  case STORE_T_ITEM:
    dht_wire_w_uint(&w, m->u.item.status);
    dht_wire_w_uint(&w, m->u.item.deposited_s);
    w_bytes(&w, m->u.item.item, m->u.item.item_len);
    w_bytes(&w, m->u.item.sig, DHT_SIG_LEN);
    break;
  case STORE_T_DELETE:
    w_bytes(&w, m->u.del.mbox, STORE_MBOX_LEN);
    w_bytes(&w, m->u.del.mbox_pk, DHT_PK_LEN);
    dht_wire_w_uint(&w, m->u.del.time_s);
    w_bytes(&w, m->u.del.hashes, m->u.del.nhashes * STORE_HASH_LEN);
    w_bytes(&w, m->u.del.sig, DHT_SIG_LEN);
    break;
  case STORE_T_ACK:
    dht_wire_w_uint(&w, m->u.ack.status);
    dht_wire_w_uint(&w, m->u.ack.n);
    break;
  case STORE_T_RECON:
    w_bytes(&w, m->u.recon.mbox, STORE_MBOX_LEN);
    w_bytes(&w, m->u.recon.fp, STORE_FP_LEN);
    dht_wire_w_uint(&w, m->u.recon.count);
    break;
  case STORE_T_RECON_R:
    dht_wire_w_uint(&w, m->u.recon_r.status);
    w_bytes(&w, m->u.recon_r.buckets, m->u.recon_r.buckets_len);
    break;
  case STORE_T_RECON_L:
    w_bytes(&w, m->u.recon_l.mbox, STORE_MBOX_LEN);
    dht_wire_w_uint(&w, m->u.recon_l.mask);
    w_bytes(&w, m->u.recon_l.entries, m->u.recon_l.nentries * STORE_ENTRY_LEN);
    break;
  case STORE_T_RECON_LR:
    dht_wire_w_uint(&w, m->u.recon_lr.status);
    w_bytes(&w, m->u.recon_lr.want, m->u.recon_lr.nwant * STORE_ENTRY_LEN);
    break;
  case STORE_T_TOMB:
    w_bytes(&w, m->u.tomb.mbox, STORE_MBOX_LEN);
    w_bytes(&w, m->u.tomb.mbox_pk, DHT_PK_LEN);
    w_bytes(&w, m->u.tomb.proof, m->u.tomb.proof_len);
    break;
  case STORE_T_DIRECT:
    w_bytes(&w, m->u.direct.mbox, STORE_MBOX_LEN);
    dht_wire_w_uint(&w, m->u.direct.deposited_s);
    w_bytes(&w, m->u.direct.item, m->u.direct.item_len);
    w_bytes(&w, m->u.direct.sig, DHT_SIG_LEN);
    break;
  case STORE_T_DIRECT_ACK:
    dht_wire_w_uint(&w, m->u.direct_ack.status);
    break;
  default: /* STORE_T_REGISTER */
    w_bytes(&w, m->u.reg.ids, m->u.reg.nids * STORE_MBOX_LEN);
    w_bytes(&w, m->u.reg.sig, DHT_SIG_LEN);
    break;
  }
  return w.err ? w.err : (dht_ssize)w.len;
}

uint8_t store_wire_answer_type(uint8_t type) {
  switch (type) {
  case STORE_T_DEPOSIT:
    return STORE_T_RECEIPT;
  case STORE_T_FETCH:
    return STORE_T_LIST;
  case STORE_T_GETITEM:
    return STORE_T_ITEM;
  case STORE_T_DELETE:
  case STORE_T_TOMB:
  case STORE_T_REGISTER:
    return STORE_T_ACK;
  case STORE_T_RECON:
    return STORE_T_RECON_R;
  case STORE_T_RECON_L:
    return STORE_T_RECON_LR;
  case STORE_T_DIRECT:
    return STORE_T_DIRECT_ACK;
  default:
    return 0;
  }
}

int store_wire_status_err(uint64_t status) {
  switch (status) {
  case STORE_W_MBOX_FULL:
    return STORE_ERR_MBOX_FULL;
  case STORE_W_NODE_FULL:
    return STORE_ERR_NODE_FULL;
  case STORE_W_BADSIG:
    return STORE_ERR_BADSIG;
  case STORE_W_TIME:
    return STORE_ERR_TIME;
  case STORE_W_TOOBIG:
    return STORE_ERR_TOOBIG;
  case STORE_W_NOTFOUND:
    return DHT_ERR_NOTFOUND;
  default:
    return DHT_ERR_INVAL;
  }
}

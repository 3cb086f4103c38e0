/*
 * node_proto.h - the control protocol's numbers that roostd and roost must
 * agree on (docs/control.md), written once: the length of a line, the cap
 * on the long replies, the default wait of a fetch, and the hex form of
 * node and message IDs.  Both sides include it; nothing else lives here.
 */
#ifndef ROOST_NODE_PROTO_H
#define ROOST_NODE_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* One line, its '\n' included: a request, and every reply but the long
 * ones.  roostd never buffers more of a request; roost never more of a
 * normal reply. */
#define NODE_PROTO_LINE_MAX (64 * 1024)

/* The replies that list what can be long (peers: the whole routing table;
 * inbox, outbox, friend_list, friend_requests, host_list) may be this long,
 * '\n' included. */
#define NODE_PROTO_BIG_MAX (8 << 20)

/* fetch's timeout_ms when the request gives none: roostd asks every replica
 * of every friend's mailboxes. */
#define NODE_PROTO_FETCH_TIMEOUT_MS 60000

/* Writes the 2n lower-case hex digits of p[0, n) and a NUL into out (2n + 1
 * bytes): node IDs, message IDs and mailbox IDs in replies. */
static inline void node_proto_hex(const uint8_t *p, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  out[2 * n] = '\0';
}

#endif

/*
 * fuzz_common.h - what the fuzz targets (fuzz_packet.c, fuzz_store.c) share:
 * the op stream reader, fixed identities and the peers' precomputed box
 * entries, peer addresses, sealing a body as a peer, the datagram checks and
 * the driver-like clock.  Every target passes its own constants (seed fill,
 * addresses, nonce tag, ...), so each keeps its inputs' meaning.
 */
#ifndef ROOST_FUZZ_COMMON_H
#define ROOST_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dht_int.h"

#define FC_T0 1000                 /* the engine's clock at dht_new */
#define FC_UNIX_MS 1700000000000LL /* wall clock at FC_T0 */

/* Peer i's address (i, v6) -> *a; what fc_peer_at searches. */
typedef void (*fc_addr_fn)(int i, bool v6, dht_addr *a);

/* Reads the op [u8 op][u16 len, big-endian][len bytes] at *pos and moves
 * *pos past it; false (nothing read) at the end or at a truncated tail. */
bool fc_op_next(const uint8_t *data, size_t size, size_t *pos, uint8_t *op, const uint8_t **p,
                size_t *len);

/* Where the ops start: past a first op whose code % count is config (its
 * payload in *p, *len), else 0 (*p, *len untouched). */
size_t fc_op_config(const uint8_t *data, size_t size, uint8_t count, uint8_t config,
                    const uint8_t **p, size_t *len);

/* Fixed identity n: from the seed of 32 bytes fill with the first one n. */
void fc_identity(dht_identity *id, uint8_t fill, int n);

/* The box entry (shared key, engine ID) peer caches for engine_pk. */
void fc_box_entry(uint8_t entry[static DHT_BOX_ENTRY_LEN], const dht_identity *peer,
                  const uint8_t hkey[static 16], const uint8_t engine_pk[static DHT_PK_LEN]);

/* Sets up peer's box with its precomputed entry for engine_pk (no X25519). */
void fc_box_ready(dht_box *box, const dht_identity *peer, const uint8_t hkey[static 16],
                  const uint8_t engine_pk[static DHT_PK_LEN],
                  const uint8_t entry[static DHT_BOX_ENTRY_LEN]);

/* Peer i's address: v4 (IPv4), or 2001:db8:0:(i+1)::v6_last; port port_base + i. */
void fc_peer_addr(dht_addr *a, int i, bool v6, const uint8_t v4[static 4], uint8_t v6_last,
                  uint16_t port_base);

/* The peer (of npeers) whose v4 or v6 address is a, or -1. */
int fc_peer_at(const dht_addr *a, int npeers, fc_addr_fn addr);

/* npeers dht_peers from ids[] at their addresses (IPv6 where bit i of v6_bits). */
void fc_peer_list(dht_peer *out, int npeers, const dht_identity *ids, fc_addr_fn addr,
                  unsigned v6_bits);

/* Seals body as box's owner with nonce [tag][ctr, 8 bytes LE][0...] for
 * engine_pk into pkt; aborts if it cannot; returns the datagram length. */
size_t fc_seal(dht_box *box, uint8_t tag, uint64_t ctr, const uint8_t engine_pk[static DHT_PK_LEN],
               const uint8_t *body, size_t len, uint8_t *pkt, size_t cap);

/* The oracle on every dht_write_pkt: length in [DHT_OVERHEAD, DHT_MAX_PKT],
 * to a v4/v6 address with a port. */
void fc_check_dgram(dht_ssize n, const dht_addr *to);

/* dht_settings_default with the caps both targets share (key and cookie
 * caches 16, max_records 16) and the rate limiter off. */
void fc_settings(dht_settings *s);

/* dht_new (aborts on failure) with the wall clock at FC_UNIX_MS for FC_T0. */
void fc_engine_new(dht **e, const dht_identity *self, const dht_settings *s,
                   const dht_callbacks *cb, dht_ts now);

/* A TIME op's advance: [ms u16 | ms u8][shift] -> ms << shift_mul * (shift & 7),
 * clamped so *advanced (added to) stays within max_advance. */
dht_ts fc_time_ms(const uint8_t *p, size_t n, int shift_mul, dht_ts max_advance, dht_ts *advanced);

/* Moves *now to target as a driver would: expire(ctx) at each expiry on the
 * way (at most steps), then at target if due; true (and *now stays at that
 * expiry) if stop(ctx), when not NULL, said so after a run. */
bool fc_run_clock(dht *e, dht_ts *now, dht_ts target, int steps, void (*expire)(void *ctx),
                  bool (*stop)(void *ctx), void *ctx);

/* Offset of the first element of the msgpack array at b (fixarray, array
 * 16/32), or 0 when there is none. */
size_t fc_array_head(const uint8_t *b, size_t len);

/* Length of the msgpack uint at p (positive fixint, or 0xcc up to last), or 0. */
size_t fc_skip_uint(const uint8_t *p, size_t n, uint8_t last);

/* Replaces the x-byte value at b + at (room for 4 more bytes) by uint 32 v;
 * returns the new length. */
size_t fc_patch_u32(uint8_t *b, size_t len, size_t at, size_t x, uint32_t v);

/* Shifts ring[0..cap-2] (of elsize bytes each) up one, counting *n up to cap:
 * the caller fills ring[0], the newest. */
void fc_ring_push(void *ring, size_t elsize, int cap, int *n);

#endif

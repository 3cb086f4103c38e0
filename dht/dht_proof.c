/*
 * dht_proof.c - proof of address and the amplification credit.
 *
 * A roost node must never be a reflector: whoever spoofs a victim's address
 * in a request must not make us send the victim more than a small multiple of
 * what the spoofer sent (QUIC's rule for unvalidated addresses, RFC 9000
 * section 8).  The engine enforces it where datagrams leave it
 * (dht_eng_queue), for its own replies and every service's alike:
 *
 *  - an address is *proven* for a key when it showed it receives what we
 *    send there: it echoed a cookie we gave that address, or it answered one
 *    of our requests sent there (the txid travels inside the box, so only the
 *    real peer could know it), or it is a table contact that answered there.
 *    Proofs are remembered per key for PROOF_MS, in a bounded cache;
 *  - an unproven address earns *credit*: factor x the bytes of every
 *    authenticated datagram it sent us, spent by whatever we send it that is
 *    not our own request.  Credit is capped and lapses after CREDIT_MS, so it
 *    cannot be banked;
 *  - datagrams we start on our own toward an unproven address (the verify
 *    PING, services' unsolicited requests) pass a token bucket per
 *    destination prefix.
 *
 * Both caches are fixed-size (dht_cache): under a flood of fresh addresses
 * entries are evicted, which can only cost an honest unproven peer an answer
 * (it retries), never let anyone past the rule.
 */
#include <string.h>

#include <sodium.h>

#include "dht_int.h"

/* How long a proof lasts: as long as the longest-lived cookie (two token
 * rotations), after which the peer proves itself again as a matter of
 * course. */
#define PROOF_MS (2 * DHT_TOKEN_ROTATE_MS)
/* Credit lapses: it pays for answers to requests just received, and an
 * answer that waits for a disk commit still leaves well within this. */
#define CREDIT_MS (30 * 1000)
/* Most an address may have in hand: four full datagrams' worth of answers. */
#define CREDIT_MAX_PKTS 4

typedef struct proof_ent {
  dht_addr addr;
  dht_ts at;
} proof_ent;

typedef struct credit_ent {
  uint32_t bytes;
  dht_ts at;
} credit_ent;

static void addr_key(uint8_t key[static 32], const dht_addr *a) {
  memset(key, 0, 32);
  key[0] = a->family;
  key[1] = (uint8_t)(a->port >> 8);
  key[2] = (uint8_t)a->port;
  memcpy(key + 3, a->ip, a->family == DHT_AF_INET ? 4 : 16);
}

int dht_proof_init(dht_proof *p, const dht_proof_settings *s, const uint8_t rnd[static 40],
                   const dht_mem *mem) {
  memset(p, 0, sizeof *p);
  p->factor = s->factor;
  int rv = dht_cache_init(&p->proven, s->entries, sizeof(proof_ent), rnd, mem);
  if (rv)
    return rv;
  if ((rv = dht_cache_init(&p->credit, s->entries, sizeof(credit_ent), rnd + 16, mem)) != 0)
    return rv;
  uint64_t mul;
  memcpy(&mul, rnd + 32, 8);
  return dht_rate_init(&p->unsolicited, s->entries, s->pps, s->burst, s->v4bits, s->v6bits, mul,
                       mem);
}

void dht_proof_free(dht_proof *p, const dht_mem *mem) {
  if (p->proven.ents)
    dht_cache_free(&p->proven, mem);
  if (p->credit.ents)
    dht_cache_free(&p->credit, mem);
  dht_rate_free(&p->unsolicited, mem);
}

void dht_proof_mark(dht_proof *p, const dht_peer *peer, dht_ts now) {
  proof_ent *pe = (proof_ent *)dht_cache_put(&p->proven, peer->pk);
  pe->addr = peer->addr;
  pe->at = now;
}

bool dht_proof_has(dht_proof *p, const dht_peer *peer, dht_ts now) {
  const proof_ent *pe = (const proof_ent *)dht_cache_get(&p->proven, peer->pk);
  return pe && now - pe->at < PROOF_MS && dht_addr_eq(&pe->addr, &peer->addr);
}

void dht_proof_credit(dht_proof *p, const dht_addr *from, uint32_t bytes, dht_ts now) {
  uint8_t key[32];
  addr_key(key, from);
  credit_ent *c = (credit_ent *)dht_cache_get(&p->credit, key);
  if (!c) {
    c = (credit_ent *)dht_cache_put(&p->credit, key);
    c->bytes = 0;
  } else if (now - c->at >= CREDIT_MS) {
    c->bytes = 0;
  }
  uint64_t cap = (uint64_t)p->factor * DHT_MAX_PKT * CREDIT_MAX_PKTS;
  uint64_t b = (uint64_t)c->bytes + bytes;
  c->bytes = (uint32_t)(b < cap ? b : cap);
  c->at = now;
}

bool dht_proof_spend(dht_proof *p, const dht_addr *to, size_t wire_len, dht_ts now) {
  uint8_t key[32];
  addr_key(key, to);
  credit_ent *c = (credit_ent *)dht_cache_get(&p->credit, key);
  if (!c || now - c->at >= CREDIT_MS || c->bytes < wire_len)
    return false;
  c->bytes -= (uint32_t)wire_len;
  return true;
}

bool dht_proof_unsolicited(dht_proof *p, const dht_addr *to, dht_ts now) {
  return dht_rate_allow(&p->unsolicited, to, now);
}

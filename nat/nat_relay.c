/*
 * nat_relay.c - the relay fallback (docs/protocol.md, "Relaying"): when a
 * punch's first attempt ends without a path (both NATs symmetric, or a
 * filter that nothing opens), both ends ask the introducer between them
 * for a circuit (RELAY_REQ, with the other's key and the punch's nonce).
 * The introducer opens one in the engine (dht_relay_open) only when both
 * asked with the same nonce: a relay is never an open proxy, a circuit
 * joins two keys that both want it.  The first to ask hears PENDING and
 * asks again every second.  The engine forwards the ends' sealed
 * datagrams as they are (dht_relay.c): no framing, nothing the relay can
 * read.  Limits: relay_ms and relay_bytes a circuit, the engine's
 * max_circuits at once, NAT_HALFOPEN requests waiting.
 */
#include <string.h>

#include "nat_int.h"

#define RELAY_RETRY_MS 1000 /* a PENDING end asks again */

static void send_relay_ack(nat_svc *n, const dht_msg_in *in, uint8_t status) {
  uint8_t buf[16];
  nat_wire_msg a = {.type = NAT_T_RELAY_ACK, .txid = in->txid};
  a.u.dial_resp.status = status;
  dht_ssize len = nat_wire_encode(buf, sizeof buf, &a);
  if (len > 0) {
    dht_tx tx = {.local = in->local};
    dht_svc_send(n->e, &in->from, &tx, buf, (size_t)len);
  }
}

void nat_relay_on_req(nat_svc *n, const dht_msg_in *in, const nat_wire_msg *m, dht_ts now) {
  NAT_PCOUNT(n, relay_asked);
  nat_punch_state *ps = NULL;
  if (!n->set.relay || !dht_is_server(n->e) ||
      memcmp(m->u.relay_req.pk, in->from.pk, DHT_PK_LEN) == 0 || !(ps = nat_punch_state_of(n))) {
    NAT_PCOUNT(n, relay_refused);
    send_relay_ack(n, in, NAT_W_REFUSED);
    return;
  }
  if (dht_relay_find(n->e, in->from.pk, m->u.relay_req.pk) > 0) {
    send_relay_ack(n, in, NAT_W_OK); /* it asks again: the circuit is there */
    return;
  }
  nat_halfopen *mine = NULL, *free_h = NULL, *oldest = &ps->half[0];
  for (int i = 0; i < NAT_HALFOPEN; i++) {
    nat_halfopen *h = &ps->half[i];
    if (h->used && now >= h->until)
      h->used = false;
    if (!h->used) {
      if (!free_h)
        free_h = h;
      continue;
    }
    if (h->until < oldest->until)
      oldest = h;
    if (memcmp(h->from.pk, m->u.relay_req.pk, DHT_PK_LEN) == 0 &&
        memcmp(h->to, in->from.pk, DHT_PK_LEN) == 0 &&
        memcmp(h->nonce, m->u.relay_req.nonce, NAT_NONCE_LEN) == 0) {
      /* the other end asked first, for us, with the same nonce: join them */
      int id = dht_relay_open(n->e, &h->from, &in->from, (uint64_t)n->set.relay_bytes,
                              now + n->set.relay_ms, now);
      h->used = false;
      if (id < 0)
        NAT_PCOUNT(n, relay_refused);
      send_relay_ack(n, in, id > 0 ? NAT_W_OK : NAT_W_FULL);
      return;
    }
    if (memcmp(h->from.pk, in->from.pk, DHT_PK_LEN) == 0 &&
        memcmp(h->to, m->u.relay_req.pk, DHT_PK_LEN) == 0)
      mine = h; /* it asks again (or with the next attempt's nonce) */
  }
  nat_halfopen *h = mine ? mine : free_h ? free_h : oldest;
  h->used = true;
  h->from = in->from;
  memcpy(h->to, m->u.relay_req.pk, DHT_PK_LEN);
  memcpy(h->nonce, m->u.relay_req.nonce, NAT_NONCE_LEN);
  h->until = now + 15 * 1000;
  send_relay_ack(n, in, NAT_W_PENDING);
}

void nat_relay_ask(nat_svc *n, nat_punch_state *ps, nat_punch *p, uint64_t tag, dht_ts now) {
  (void)ps;
  if (p->relay_state == NAT_RELAY_NONE) {
    p->relay_state = NAT_RELAY_ASKING;
    p->relay_until = now + 15 * 1000;
  }
  p->relay_next = now + RELAY_RETRY_MS;
  uint8_t buf[80];
  nat_wire_msg q = {.type = NAT_T_RELAY_REQ, .txid = dht_svc_txid(n->e)};
  q.u.relay_req.pk = p->pk;
  q.u.relay_req.nonce = p->relay_nonce;
  dht_ssize len = nat_wire_encode(buf, sizeof buf, &q);
  dht_req_opts o = {.answer = NAT_T_RELAY_ACK, .tries = 1, .tag = tag};
  if (len > 0)
    dht_svc_request(n->e, n->svc_id, &p->relay, buf, (size_t)len, &o, now);
}

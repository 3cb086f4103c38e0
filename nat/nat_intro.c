/*
 * nat_intro.c - introducers: an unreachable node keeps a path open to a few
 * reachable ones and names them in its record, so that others can reach it
 * through them (docs/protocol.md, "Peer records"; the hole punching and
 * relays of the next part use them).
 *
 * While the node is not a server it holds up to `introducers` (3) of its
 * routing-table contacts (all of them servers), in distinct networks,
 * those it sent to lately first (a keepalive keeps an introducer in our
 * NAT's filter, so a stranger would make a prober fewer for dial-backs),
 * then closest to its own ID (those also keep its record).  Each gets a
 * PING every keepalive_ms (25 s: under the 30 s UDP timeout of the
 * stingiest home routers, so the NAT keeps the path open; RFC 4787 asks for
 * at least 2 minutes, and many routers do not follow it).  A contact enters
 * the record once it answered one; intro_misses unanswered PINGs in a row
 * drop it and another is picked.  A server needs none: it drops them all.
 * Each change of the answered set goes into the record (dht_set_introducers
 * re-publishes it).
 */
#include <string.h>

#include "nat_int.h"

static bool wanted(const nat_svc *n) {
  return n->set.introducers > 0 && !dht_is_server(n->e);
}

/* The record's introducers: those that answered, in slot order. */
static void publish(nat_svc *n, dht_ts now) {
  dht_introducer l[NAT_INTROS];
  int k = 0;
  for (int i = 0; i < NAT_INTROS; i++) {
    const nat_intro *in = &n->intro[i];
    if (!in->used || !in->ok)
      continue;
    memcpy(l[k].pk, in->pk, DHT_PK_LEN);
    l[k].addr = in->addr;
    k++;
  }
  dht_set_introducers(n->e, l, (size_t)k, now);
}

/* A contact that went silent stays in the table until the engine's own
 * pings give up on it, and would be picked again at once: the last few are
 * skipped (a hash of the key; a collision only skips one more contact). */
static uint64_t pk_hash(const uint8_t pk[static DHT_PK_LEN]) {
  uint64_t h = 0;
  memcpy(&h, pk, sizeof h);
  return h | 1;
}

static bool shunned(const nat_svc *n, const uint8_t pk[static DHT_PK_LEN]) {
  for (int i = 0; i < NAT_INTROS; i++)
    if (n->shunned[i] == pk_hash(pk))
      return true;
  return false;
}

static void drop(nat_svc *n, nat_intro *in) {
  if (in->cmd > 0)
    dht_cancel(n->e, in->cmd); /* its event reaches us as cancelled: no slot matches it */
  bool was = in->ok;
  memset(in, 0, sizeof *in);
  if (was)
    n->n_intro_changes++;
}

static void ping(nat_svc *n, nat_intro *in, dht_ts now) {
  dht_peer p;
  memcpy(p.pk, in->pk, DHT_PK_LEN);
  p.addr = in->addr;
  int64_t cmd = dht_ping(n->e, &p, now);
  if (cmd <= 0) { /* the engine is full: the next tick tries again */
    in->next = now + 1000;
    return;
  }
  dht_svc_own(n->e, n->svc_id, cmd);
  in->cmd = cmd;
  n->n_keepalives++;
}

/* Fills empty slots from the table, closest to our ID first, one network
 * per introducer.  Returns whether a slot stayed empty. */
static bool fill(nat_svc *n, dht_ts now) {
  int empty = 0;
  for (int i = 0; i < n->set.introducers; i++)
    empty += !n->intro[i].used;
  if (!empty)
    return false;
  dht_contact cl[DHT_K_MAX];
  int nc = dht_closest(n->e, dht_self_id(n->e), cl, DHT_K_MAX);
  uint8_t recent[NAT_BLOOM_LEN];
  dht_recent_dests(n->e, recent, now);
  /* those we sent to lately first: a keepalive to another puts it in our
   * filter for good, and makes it useless as a dial-back prober */
  for (int k = 0; k < 2 * nc && empty; k++) {
    int c = k % nc;
    if (nat_in_bloom(recent, &cl[c].addr) != (k < nc))
      continue;
    uint64_t key = nat_prefix_key(&cl[c].addr);
    bool taken = shunned(n, cl[c].pk);
    for (int i = 0; i < NAT_INTROS && !taken; i++)
      taken = n->intro[i].used && (memcmp(n->intro[i].pk, cl[c].pk, DHT_PK_LEN) == 0 ||
                                   nat_prefix_key(&n->intro[i].addr) == key);
    if (taken)
      continue;
    for (int i = 0; i < n->set.introducers; i++) {
      nat_intro *in = &n->intro[i];
      if (in->used)
        continue;
      in->used = true;
      memcpy(in->pk, cl[c].pk, DHT_PK_LEN);
      in->addr = cl[c].addr;
      ping(n, in, now); /* it counts once it answers */
      empty--;
      break;
    }
  }
  return empty > 0;
}

void nat_intro_tick(nat_svc *n, dht_ts now) {
  if (!wanted(n)) {
    bool any = false;
    for (int i = 0; i < NAT_INTROS; i++)
      if (n->intro[i].used) {
        drop(n, &n->intro[i]);
        any = true;
      }
    if (any)
      publish(n, now);
    n->next_intro = DHT_TS_NEVER;
    return;
  }
  for (int i = 0; i < n->set.introducers; i++) {
    nat_intro *in = &n->intro[i];
    if (in->used && in->cmd == 0 && now >= in->next)
      ping(n, in, now);
  }
  if (now >= n->next_intro)
    /* a table still filling: look again soon */
    n->next_intro = fill(n, now) ? now + 2000 : DHT_TS_NEVER;
}

dht_ts nat_intro_expiry(const nat_svc *n) {
  dht_ts t = n->next_intro;
  for (int i = 0; i < NAT_INTROS; i++)
    if (n->intro[i].used && n->intro[i].cmd == 0 && n->intro[i].next < t)
      t = n->intro[i].next;
  return t;
}

void nat_intro_mode_changed(nat_svc *n, dht_ts now) {
  /* drop them (a server) or find some (a client) at the next timer run:
   * from a hook, a deadline of now would already be past when it returns */
  n->next_intro = now + 1;
}

bool nat_intro_on_event(nat_svc *n, const dht_event *ev, dht_ts now) {
  if (ev->type != DHT_EV_PING || ev->cmd <= 0)
    return false;
  for (int i = 0; i < NAT_INTROS; i++) {
    nat_intro *in = &n->intro[i];
    if (!in->used || in->cmd != ev->cmd)
      continue;
    in->cmd = 0;
    in->next = now + n->set.keepalive_ms;
    if (ev->status == 0) {
      in->misses = 0;
      in->rtt_ms = ev->u.ping.rtt_ms;
      bool first = !in->ok;
      if (first) {
        in->ok = true;
        in->since = now;
        n->n_intro_changes++;
        publish(n, now);
      }
      /* registered at its first answer and every few keepalives after, so
       * that it can introduce others to us (nat_punch.c); the PONG just
       * brought the cookie the registration carries */
      if (first || ++in->since_reg >= NAT_REG_EVERY) {
        in->since_reg = 0;
        dht_peer who;
        memcpy(who.pk, in->pk, DHT_PK_LEN);
        who.addr = in->addr;
        nat_punch_register(n, &who, in->rtt_ms, now);
      }
      return true;
    }
    char ta[DHT_ADDR_STRLEN];
    nat_log(n, DHT_LOG_DEBUG, "introducer %s: keepalive unanswered (%s), %d in a row",
            dht_addr_fmt(&in->addr, ta, sizeof ta), dht_strerror(ev->status), in->misses + 1);
    if (++in->misses >= n->set.intro_misses) {
      bool was = in->ok;
      /* Shunned only while another introducer still answers: when all go
       * silent together, the fault is more likely ours (our NAT lost its
       * state, our link went down) than theirs, and shunning them all would
       * hand the slots to strangers, each one a dial-back prober fewer. */
      bool others_ok = false;
      for (int j = 0; j < NAT_INTROS; j++)
        others_ok |=
            &n->intro[j] != in && n->intro[j].used && n->intro[j].ok && n->intro[j].misses == 0;
      if (others_ok) {
        n->shunned[n->shun_next] = pk_hash(in->pk);
        n->shun_next = (n->shun_next + 1) % NAT_INTROS;
      }
      drop(n, in);
      if (was)
        publish(n, now);
      n->next_intro = now + 1; /* another one at the next timer run */
    } else {
      /* a lost PING or PONG, or a late one (a PING's timeout follows the
       * RTT, and a busy introducer answers late): ask again soon, not in
       * 25 s, and not at once */
      in->next = now + 5000;
    }
    return true;
  }
  return false;
}

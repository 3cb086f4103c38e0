/*
 * nat_dial.c - dial-backs: can a node that never heard from us reach our
 * address?  (After AutoNAT v2's idea; docs/protocol.md, "Dial-backs".)
 *
 * Three roles, every node plays each:
 *  - tested (A): asks a helper B (a table contact whose cookie A holds) to
 *    have a probe sent to A's public address, with a fresh nonce and a Bloom
 *    filter of the addresses A's main socket sent to lately (a NAT lets in
 *    what comes from those, so they prove nothing);
 *  - helper (B): checks A's cookie (so A receives at the address the request
 *    came from: nobody can aim a dial-back at a third party), picks a prober
 *    C from its own table (another network than A's, not in A's filter) and
 *    forwards A's key, the nonce and A's address as B saw it, with the port
 *    A claimed; answers A at once;
 *  - prober (C): sends one PROBE, sealed to A's key and smaller than the
 *    DIAL_FWD it got, as an unsolicited request (the engine rate-limits
 *    those per destination prefix).
 * A PROBE that carries the nonce of a dial-back proves the address; a
 * dial-back whose helper found a prober and whose probe did not come within
 * probe_wait_ms failed.  "No prober", a refusal or a helper that does not
 * answer decide nothing.
 *
 * Bounds: a helper serves a requester prefix at most every helper_gap_ms, a
 * prober honours an asker prefix at most every prober_gap_ms; what a
 * third party can make any node send toward an address that did not ask is
 * one PROBE of 98 bytes, rate-limited per destination prefix by the engine.
 */
#include <string.h>

#include "nat_int.h"

/* Helpers asked again, NAT_QUICK_MS apart, after one that found no prober. */
#define NAT_QUICK_HELPERS 3
#define NAT_QUICK_MS 1000

/* ---- small helpers -------------------------------------------------------- */

uint64_t nat_prefix_key(const dht_addr *a) {
  uint64_t h = 1469598103934665603ull;
  int keep = a->family == DHT_AF_INET ? 3 : 6; /* /24, /48 */
  int scope = dht_addr_scope(a);
  int n = scope == DHT_SCOPE_LOOPBACK || scope == DHT_SCOPE_LAN
              ? (a->family == DHT_AF_INET ? 4 : 16)
              : keep;
  h = (h ^ a->family) * 1099511628211ull;
  for (int i = 0; i < n; i++)
    h = (h ^ a->ip[i]) * 1099511628211ull;
  if (n != keep) /* loopback and LANs: every address a network of its own */
    h = ((h ^ (a->port >> 8)) * 1099511628211ull ^ (a->port & 0xff)) * 1099511628211ull;
  return h | 1;
}

static uint32_t gap_key(uint64_t key64) {
  return (uint32_t)(key64 ^ key64 >> 32) | 1;
}

bool nat_others_ok(nat_svc *n, dht_ts now) {
  /* a rate per asker network alone lets a thousand networks have us send a
   * thousand datagrams a second; this bounds the sum */
  uint32_t now32 = (uint32_t)now, cap = (uint32_t)n->set.others_burst * 1000;
  uint64_t add = (uint64_t)(uint32_t)(now32 - n->others_at) * (uint64_t)n->set.others_pps;
  n->others_at = now32;
  n->others_milli = add >= cap - n->others_milli ? cap : n->others_milli + (uint32_t)add;
  if (n->others_milli < 1000)
    return false;
  n->others_milli -= 1000;
  return true;
}

bool nat_gap_busy(const nat_gap *g, uint64_t key64, dht_ts gap, dht_ts now) {
  uint32_t key = gap_key(key64);
  for (int i = 0; i < NAT_GAPS; i++)
    if (g[i].key == key)
      return (dht_ts)(uint32_t)((uint32_t)now - g[i].at) < gap;
  return false;
}

bool nat_gap_ok(nat_gap *g, uint64_t key64, dht_ts gap, dht_ts now) {
  uint32_t key = gap_key(key64), now32 = (uint32_t)now;
  int slot = 0;
  for (int i = 0; i < NAT_GAPS; i++) {
    if (g[i].key == key) {
      if ((dht_ts)(uint32_t)(now32 - g[i].at) < gap)
        return false;
      slot = i;
      break;
    }
    if ((uint32_t)(now32 - g[i].at) > (uint32_t)(now32 - g[slot].at))
      slot = i; /* the oldest goes */
  }
  g[slot].key = key;
  g[slot].at = now32;
  return true;
}

static void bloom_add(uint8_t bloom[static NAT_BLOOM_LEN], const dht_addr *a) {
  uint32_t h = dht_dest_hash(a);
  for (int k = 0; k < 3; k++) {
    uint8_t bit = (uint8_t)(h >> (8 * k));
    bloom[bit >> 3] |= (uint8_t)(1u << (bit & 7));
  }
}

bool nat_in_bloom(const uint8_t bloom[static NAT_BLOOM_LEN], const dht_addr *a) {
  uint32_t h = dht_dest_hash(a);
  for (int k = 0; k < 3; k++) {
    uint8_t bit = (uint8_t)(h >> (8 * k));
    if (!(bloom[bit >> 3] & (1u << (bit & 7))))
      return false;
  }
  return true;
}

static void send_status(nat_svc *n, const dht_msg_in *in, uint8_t type, uint8_t status) {
  uint8_t buf[32];
  nat_wire_msg m = {.type = type, .txid = in->txid};
  m.u.dial_resp.status = status;
  dht_ssize len = nat_wire_encode(buf, sizeof buf, &m);
  if (len > 0) {
    dht_tx tx = {.local = in->local};
    dht_svc_send(n->e, &in->from, &tx, buf, (size_t)len);
  }
}

/* ---- the helper (B) ----------------------------------------------------------- */

static void on_dial_req(nat_svc *n, const dht_msg_in *in, const nat_wire_msg *m, dht_ts now) {
  /* the cookie proves the requester receives at the address its request
   * came from: the only address a dial-back may go to */
  char fa[DHT_ADDR_STRLEN];
  dht_addr_fmt(&in->from.addr, fa, sizeof fa);
  bool cookie = dht_svc_cookie_ok(n->e, &in->from, m->u.dial_req.cookie, now);
  if (!cookie ||
      !nat_gap_ok(n->helper_gaps, nat_prefix_key(&in->from.addr), n->set.helper_gap_ms, now)) {
    nat_log(n, DHT_LOG_DEBUG, "dial-back asked by %s: refused (%s)", fa,
            cookie ? "its network asked lately" : "no valid cookie");
    n->n_refused++;
    send_status(n, in, NAT_T_DIAL_RESP, NAT_W_REFUSED);
    return;
  }
  uint8_t target_rnd[DHT_ID_LEN];
  n->cb.rand(n->cb.ctx, target_rnd, sizeof target_rnd);
  dht_contact cl[DHT_K_MAX];
  int nc = dht_closest(n->e, target_rnd, cl, DHT_K_MAX);
  uint64_t req_prefix = nat_prefix_key(&in->from.addr);
  const dht_contact *c = NULL;
  for (int i = 0; i < nc && !c; i++) {
    uint32_t ck = gap_key(nat_prefix_key(&cl[i].addr));
    bool recent = false; /* it would refuse a second forward of ours this soon */
    for (int k = 0; k < 2; k++)
      recent |= n->fwd_recent[k].key == ck &&
                (dht_ts)(uint32_t)((uint32_t)now - n->fwd_recent[k].at) < n->set.prober_gap_ms;
    if (cl[i].addr.family != in->from.addr.family ||
        memcmp(cl[i].pk, in->from.pk, DHT_PK_LEN) == 0 ||
        nat_prefix_key(&cl[i].addr) == req_prefix || recent ||
        (m->u.dial_req.exclude && nat_in_bloom(m->u.dial_req.exclude, &cl[i].addr)))
      continue;
    c = &cl[i];
  }
  if (!c) {
    nat_log(n, DHT_LOG_DEBUG, "dial-back asked by %s: no prober among %d contacts", fa, nc);
    send_status(n, in, NAT_T_DIAL_RESP, NAT_W_NO_PROBER);
    return;
  }
  uint8_t buf[128];
  nat_wire_msg f = {.type = NAT_T_DIAL_FWD, .txid = dht_svc_txid(n->e)};
  f.u.dial_fwd.target = in->from.addr;
  f.u.dial_fwd.target.port = m->u.dial_req.port;
  f.u.dial_fwd.pk = in->from.pk;
  f.u.dial_fwd.nonce = m->u.dial_req.nonce;
  dht_ssize len = nat_wire_encode(buf, sizeof buf, &f);
  dht_peer pc;
  memcpy(pc.pk, c->pk, DHT_PK_LEN);
  pc.addr = c->addr;
  dht_req_opts o = {.answer = NAT_T_DIAL_FWD_ACK, .tries = 1, .tag = 0};
  if (len <= 0 || dht_svc_request(n->e, n->svc_id, &pc, buf, (size_t)len, &o, now) != 0) {
    send_status(n, in, NAT_T_DIAL_RESP, NAT_W_NO_PROBER);
    return;
  }
  n->n_helped++;
  /* the older of the two goes */
  nat_gap *fr = (uint32_t)((uint32_t)now - n->fwd_recent[0].at) >
                        (uint32_t)((uint32_t)now - n->fwd_recent[1].at)
                    ? &n->fwd_recent[0]
                    : &n->fwd_recent[1];
  fr->key = gap_key(nat_prefix_key(&c->addr));
  fr->at = (uint32_t)now;
  char pa[DHT_ADDR_STRLEN];
  nat_log(n, DHT_LOG_DEBUG, "dial-back asked by %s: prober %s asked", fa,
          dht_addr_fmt(&c->addr, pa, sizeof pa));
  send_status(n, in, NAT_T_DIAL_RESP, NAT_W_OK);
}

/* ---- the prober (C) ------------------------------------------------------------ */

/* Whether a DIAL_FWD from `from` may have us probe `t`: a unicast address
 * in the public space, or in the scope the helper itself is in (a test
 * network on loopback, a LAN).  Anything else would let a stranger on the
 * Internet reach hosts behind our own router through us. */
bool nat_target_ok(const dht_addr *t, const dht_addr *from) {
  const uint8_t *ip = t->ip;
  if (t->family == DHT_AF_INET6 && ip[0] == 0xff)
    return false; /* multicast */
  if (t->family == DHT_AF_INET &&
      (ip[0] == 0 || ip[0] >= 224)) /* "this network", multicast, reserved, broadcast */
    return false;
  if (t->family == DHT_AF_INET6) {
    static const uint8_t zero[16];
    if (memcmp(ip, zero, 16) == 0)
      return false;
  }
  int scope = dht_addr_scope(t);
  return scope == DHT_SCOPE_PUBLIC || scope == dht_addr_scope(from);
}

static void on_dial_fwd(nat_svc *n, const dht_msg_in *in, const nat_wire_msg *m, dht_ts now) {
  uint8_t buf[64];
  nat_wire_msg p = {.type = NAT_T_PROBE, .txid = dht_svc_txid(n->e)};
  p.u.probe.nonce = m->u.dial_fwd.nonce;
  dht_ssize len = nat_wire_encode(buf, sizeof buf, &p);
  dht_peer a;
  memcpy(a.pk, m->u.dial_fwd.pk, DHT_PK_LEN);
  a.addr = m->u.dial_fwd.target;
  /* one probe, never larger than what asked for it; unsolicited, so the
   * engine holds it to the destination prefix's rate */
  dht_req_opts o = {.answer = NAT_T_PROBE_ACK, .tries = 1, .unsolicited = true, .tag = 0};
  bool ok = len > 0 && (size_t)len + (in->wire_len - in->len) <= in->wire_len &&
            nat_target_ok(&a.addr, &in->from.addr) &&
            nat_gap_ok(n->prober_gaps, nat_prefix_key(&in->from.addr), n->set.prober_gap_ms, now) &&
            nat_others_ok(n, now) &&
            dht_svc_request(n->e, n->svc_id, &a, buf, (size_t)len, &o, now) == 0;
  if (ok)
    n->n_probes++;
  else
    n->n_refused++;
  send_status(n, in, NAT_T_DIAL_FWD_ACK, ok ? NAT_W_OK : NAT_W_REFUSED);
}

/* ---- the tested (A) -------------------------------------------------------------- */

void nat_push_event(nat_svc *n, const nat_event *ev) {
  if (ev->type == NAT_EV_PATH) { /* the punch state's ring: only punching hosts have one */
    nat_punch_state *ps = nat_punch_state_of(n);
    if (!ps) {
      n->ev_dropped++;
      return;
    }
    if (ps->pev_n == 2 * NAT_PUNCHES) {
      ps->pev_head = (ps->pev_head + 1) % (2 * NAT_PUNCHES);
      ps->pev_n--;
      n->ev_dropped++;
    }
    ps->pev[(ps->pev_head + ps->pev_n) % (2 * NAT_PUNCHES)] = *ev;
    ps->pev_n++;
    return;
  }
  if (n->ev_n == NAT_EVENTS) { /* the oldest goes: a newer verdict supersedes it */
    n->ev_head = (n->ev_head + 1) % NAT_EVENTS;
    n->ev_n--;
    n->ev_dropped++;
  }
  nat_mev *m = &n->ev[(n->ev_head + n->ev_n) % NAT_EVENTS];
  m->tag = ev->tag;
  m->ok = ev->ok;
  m->addr = ev->addr;
  n->ev_n++;
}

int nat_poll_event(nat_svc *n, nat_event *ev) {
  if (n->ev_n > 0) {
    const nat_mev *m = &n->ev[n->ev_head];
    memset(ev, 0, sizeof *ev);
    ev->type = NAT_EV_MAPPING;
    ev->tag = m->tag;
    ev->ok = m->ok;
    ev->addr = m->addr;
    n->ev_head = (n->ev_head + 1) % NAT_EVENTS;
    n->ev_n--;
    return 0;
  }
  nat_punch_state *ps = n->ps;
  if (!ps || ps->pev_n == 0)
    return DHT_ERR_NOTFOUND;
  *ev = ps->pev[ps->pev_head];
  ps->pev_head = (ps->pev_head + 1) % (2 * NAT_PUNCHES);
  ps->pev_n--;
  return 0;
}

int nat_verify_mapping(nat_svc *n, int tag, uint16_t port, dht_ts now) {
  (void)now;
  nat_pending_map *m = NULL;
  for (int i = 0; i < NAT_MAPPINGS && !m; i++)
    if (n->mappings[i].used && n->mappings[i].tag == tag)
      m = &n->mappings[i];
  for (int i = 0; i < NAT_MAPPINGS && !m; i++)
    if (!n->mappings[i].used)
      m = &n->mappings[i];
  if (!m)
    return DHT_ERR_FULL;
  if (m->used && m->dialing) /* the dial-back under way tests the old port: it decides nothing */
    for (int i = 0; i < NAT_DIALS; i++)
      if (n->dials[i].used && n->dials[i].mapping == (int)(m - n->mappings)) {
        n->dials[i].used = false;
        dht_svc_cancel(n->e, n->svc_id, (uint64_t)i + 1);
      }
  m->used = true;
  m->dialing = false;
  m->tag = tag;
  m->port = port;
  n->next_dial = now + 1; /* at the next timer run (from a hook, a deadline of now is past) */
  return 0;
}

static void dial_end(nat_svc *n, nat_dial *d, int result, dht_ts now) {
  d->used = false;
  if (result != NAT_REACH_UNKNOWN) {
    char ta[DHT_ADDR_STRLEN];
    nat_log(n, DHT_LOG_DEBUG, "dial-back of %s: %s", dht_addr_fmt(&d->addr, ta, sizeof ta),
            result == NAT_REACH_YES ? "a probe got in" : "the probe did not get in");
  }
  /* the slot's tag is reused by the next dial-back: a late answer to this
   * one's DIAL_REQ must not decide that one */
  dht_svc_cancel(n->e, n->svc_id, (uint64_t)(d - n->dials) + 1);
  if (d->mapping >= 0) {
    nat_pending_map *m = &n->mappings[d->mapping];
    m->dialing = false;
    if (result != NAT_REACH_UNKNOWN) { /* decided: tell the driver */
      nat_event ev = {.type = NAT_EV_MAPPING, .tag = m->tag, .ok = result == NAT_REACH_YES};
      ev.addr = d->addr;
      nat_push_event(n, &ev);
      m->used = false;
    } else if (n->next_dial > now + n->set.dial_ms) {
      n->next_dial = now + n->set.dial_ms; /* still owed a verdict: try another helper soon */
    }
  }
  nat_fam_reach *fr = &n->fr[nat_fam(d->addr.family)];
  if (result == NAT_REACH_YES) {
    n->n_ok++;
    fr->reach = NAT_REACH_YES;
    fr->addr = d->addr;
    fr->mapped = d->mapping >= 0;
    fr->fails = 0;
    fr->last_fail_net = 0;
  } else if (result == NAT_REACH_NO) {
    n->n_failed++;
    /* A refuted mapping says nothing of the observed address.  Failures in
     * a row count only across helpers in different networks: a helper that
     * lies ("I asked a prober") cannot alone make a reachable node a
     * client, it can only keep it from counting the same failure twice. */
    if (d->mapping < 0 && d->helper_net != fr->last_fail_net) {
      fr->last_fail_net = d->helper_net;
      if (fr->fails < 255 && ++fr->fails >= n->set.fails_to_client)
        fr->reach = NAT_REACH_NO;
    }
  } else {
    n->n_inconclusive++;
  }
  nat_svc_apply_mode(n, now);
}

static void on_probe(nat_svc *n, const dht_msg_in *in, const nat_wire_msg *m, dht_ts now) {
  for (int i = 0; i < NAT_DIALS; i++) {
    nat_dial *d = &n->dials[i];
    if (!d->used || memcmp(d->nonce, m->u.probe.nonce, NAT_NONCE_LEN) != 0)
      continue;
    /* Only a node we had not sent to lately when we asked proves anything
     * (the helper promised such a prober): a filtering NAT lets in those we
     * sent to, the helper (who knows the nonce) among them.  A test of our
     * observed address also discards a prober we sent to since asking (a
     * lookup that happened to ask it while the probe flew opens the same
     * hole).  A mapping's test does not: it tests a forward the gateway says
     * it made, and in a small network a node sends to every possible prober
     * within seconds, which would leave its mapping unverified for good (the
     * natlab portmap test, 5 nodes).  And only on the main socket, whose
     * public address is under test. */
    uint8_t since[NAT_BLOOM_LEN];
    bool sent_since = false;
    if (d->mapping < 0) {
      dht_recent_dests(n->e, since, now);
      sent_since = nat_in_bloom(since, &in->from.addr);
    }
    if (in->local != 0 || nat_in_bloom(d->sent_to, &in->from.addr) || sent_since) {
      /* nothing learnt (a helper that probed us itself, or the filter's
       * false positive): not a failure either, so the next round asks
       * another helper */
      n->dropped++;
      dial_end(n, d, NAT_REACH_UNKNOWN, now);
      return;
    }
    uint8_t buf[16];
    nat_wire_msg ack = {.type = NAT_T_PROBE_ACK, .txid = in->txid};
    dht_ssize len = nat_wire_encode(buf, sizeof buf, &ack);
    if (len > 0) {
      dht_tx tx = {.local = in->local};
      dht_svc_send(n->e, &in->from, &tx, buf, (size_t)len);
    }
    dial_end(n, d, NAT_REACH_YES, now);
    return;
  }
  n->dropped++; /* a probe we did not ask for */
}

/* A helper's network, as dial_end compares them. */
static uint32_t helper_net(const dht_addr *a) {
  uint64_t hk = nat_prefix_key(a);
  return (uint32_t)(hk ^ hk >> 32) | 1;
}

/* A helper for a dial-back: a table contact of family whose cookie we
 * hold, one we sent to lately (in `recent`) first: asking one puts it in
 * our filter for minutes, and each one there is a prober fewer for the
 * next dial-backs (in a small network all of them would soon be; our
 * introducers always are).  Fills *b and cookie; false when there is none. */
static bool pick_helper(nat_svc *n, uint8_t family, const uint8_t recent[static NAT_BLOOM_LEN],
                        dht_peer *b, uint8_t cookie[static DHT_TOKEN_LEN], dht_ts now) {
  uint8_t rnd[DHT_ID_LEN];
  n->cb.rand(n->cb.ctx, rnd, sizeof rnd);
  dht_contact cl[DHT_K_MAX];
  int nc = dht_closest(n->e, rnd, cl, DHT_K_MAX);
  /* and not the network of the last failure's helper while another will
   * do: a failure counts only from a new network (dial_end) */
  uint32_t last = n->fr[nat_fam(family)].last_fail_net;
  for (int pass = 0; pass < 3; pass++)
    for (int i = 0; i < nc; i++) {
      bool same = helper_net(&cl[i].addr) == last;
      if (cl[i].addr.family != family || (pass < 2 && same) ||
          (pass < 2 && nat_in_bloom(recent, &cl[i].addr) != (pass == 0)) || (pass == 2 && !same))
        continue;
      memcpy(b->pk, cl[i].pk, DHT_PK_LEN);
      b->addr = cl[i].addr;
      if (dht_svc_cookie(n->e, b, cookie, now) == 0)
        return true;
    }
  return false;
}

/* Asks a helper for a dial-back of our main socket's public address of
 * family, at its observed port (mapping < 0) or at a mapped one (IPv4 only:
 * NAT-PMP and IGDv1 map nothing else). */
static void dial_start(nat_svc *n, int mapping, uint8_t family, dht_ts now) {
  nat_vote_result r;
  nat_svc_vote(n, family, now, &r);
  if (!r.known)
    return; /* no address to test yet */
  nat_fam_reach *fr = &n->fr[nat_fam(family)];
  if (mapping >= 0) {
    r.addr.port = n->mappings[mapping].port; /* the gateway's forward, whatever the NAT does */
  } else if (r.mapping == NAT_MAP_EDM) {
    /* a new port per peer: nobody can reach a port we did not use for it */
    if (fr->reach != NAT_REACH_YES || !fr->mapped) { /* unless a mapping proved a way in */
      fr->reach = NAT_REACH_NO;
      nat_svc_apply_mode(n, now);
    }
    return;
  }
  nat_dial *d = NULL;
  for (int i = 0; i < NAT_DIALS && !d; i++) {
    if (n->dials[i].used && n->dials[i].mapping < 0 && mapping < 0 &&
        n->dials[i].addr.family == family)
      return; /* one of this family's observed address at a time */
    if (!n->dials[i].used)
      d = &n->dials[i];
  }
  if (!d)
    return;
  uint8_t bloom[NAT_BLOOM_LEN];
  dht_recent_dests(n->e, bloom, now);
  dht_peer b;
  uint8_t cookie[DHT_TOKEN_LEN];
  if (pick_helper(n, r.addr.family, bloom, &b, cookie, now)) {
    uint8_t buf[128];
    n->cb.rand(n->cb.ctx, d->nonce, NAT_NONCE_LEN);
    nat_wire_msg q = {.type = NAT_T_DIAL_REQ, .txid = dht_svc_txid(n->e)};
    q.u.dial_req.port = r.addr.port;
    q.u.dial_req.nonce = d->nonce;
    q.u.dial_req.cookie = cookie;
    q.u.dial_req.exclude = bloom;
    dht_ssize len = nat_wire_encode(buf, sizeof buf, &q);
    uint64_t tag = (uint64_t)(d - n->dials) + 1;
    dht_req_opts o = {.answer = NAT_T_DIAL_RESP, .tries = 2, .tag = tag};
    if (len <= 0 || dht_svc_request(n->e, n->svc_id, &b, buf, (size_t)len, &o, now) != 0)
      return;
    d->used = true;
    d->prober = false;
    d->mapping = mapping;
    d->helper_net = helper_net(&b.addr);
    memcpy(d->sent_to, bloom, NAT_BLOOM_LEN);
    bloom_add(d->sent_to, &b.addr);
    if (mapping >= 0)
      n->mappings[mapping].dialing = true;
    d->addr = r.addr;
    d->deadline = now + n->set.probe_wait_ms + 5000; /* the helper's answer first */
    n->n_dials++;
    char ta[DHT_ADDR_STRLEN], ha[DHT_ADDR_STRLEN];
    nat_log(n, DHT_LOG_DEBUG, "dial-back of %s%s: asking %s", dht_addr_fmt(&d->addr, ta, sizeof ta),
            mapping >= 0 ? " (a mapping)" : "", dht_addr_fmt(&b.addr, ha, sizeof ha));
  }
  /* else nobody we hold a cookie from: our lookups will give us some */
}

void nat_dial_on_answer(nat_svc *n, const dht_req *req, const nat_wire_msg *m, dht_ts now) {
  if (req->type != NAT_T_DIAL_REQ || req->tag < 1 || req->tag > NAT_DIALS)
    return; /* DIAL_FWD's and PROBE's answers only tell the sender it arrived */
  nat_dial *d = &n->dials[req->tag - 1];
  if (!d->used)
    return;
  if (!m || m->u.dial_resp.status != NAT_W_OK) {
    char ha[DHT_ADDR_STRLEN];
    nat_log(n, DHT_LOG_DEBUG, "dial-back: %s %s", dht_addr_fmt(&req->to.addr, ha, sizeof ha),
            !m                                         ? "did not answer"
            : m->u.dial_resp.status == NAT_W_NO_PROBER ? "found no prober we have not sent to"
                                                       : "refused (cookie or rate)");
    dial_end(n, d, NAT_REACH_UNKNOWN, now); /* no helper, no prober: nothing learnt */
    /* A helper with no prober outside our filter says little of the
     * others: in a small network most servers are in our filter (we joined
     * through them, we keep introducers), and the one that is not may be
     * this helper itself.  Ask another one soon, a few times a round,
     * rather than in dial_ms. */
    if (m && m->u.dial_resp.status == NAT_W_NO_PROBER && n->set.mode == NAT_MODE_AUTO &&
        n->quick < NAT_QUICK_HELPERS) {
      n->quick++;
      n->quick_round = true;
      if (n->next_dial > now + NAT_QUICK_MS)
        n->next_dial = now + NAT_QUICK_MS;
    }
    return;
  }
  d->prober = true;
  if (d->deadline > now + n->set.probe_wait_ms)
    d->deadline = now + n->set.probe_wait_ms;
}

void nat_dial_on_msg(nat_svc *n, const dht_msg_in *in, const nat_wire_msg *m, dht_ts now) {
  switch (m->type) {
  case NAT_T_DIAL_REQ:
    on_dial_req(n, in, m, now);
    break;
  case NAT_T_DIAL_FWD:
    on_dial_fwd(n, in, m, now);
    break;
  case NAT_T_PROBE:
    on_probe(n, in, m, now);
    break;
  default: /* an answer that matched none of our requests */
    n->dropped++;
    break;
  }
}

dht_ts nat_dial_expiry(const nat_svc *n) {
  dht_ts t = n->next_dial;
  for (int i = 0; i < NAT_DIALS; i++)
    if (n->dials[i].used && n->dials[i].deadline < t)
      t = n->dials[i].deadline;
  return t;
}

void nat_dial_tick(nat_svc *n, dht_ts now) {
  for (int i = 0; i < NAT_DIALS; i++) {
    nat_dial *d = &n->dials[i];
    if (d->used && d->deadline <= now)
      dial_end(n, d, d->prober ? NAT_REACH_NO : NAT_REACH_UNKNOWN, now);
  }
  if (now < n->next_dial)
    return;
  if (!n->quick_round)
    n->quick = 0; /* a regular round: its own quick retries */
  n->quick_round = false;
  /* mappings first: each one waits for its verdict */
  bool waiting = false;
  for (int i = 0; i < NAT_MAPPINGS; i++) {
    if (!n->mappings[i].used || n->mappings[i].dialing)
      continue;
    dial_start(n, i, DHT_AF_INET, now);
  }
  for (int i = 0; i < NAT_MAPPINGS; i++)
    waiting |= n->mappings[i].used; /* a verdict still owed keeps the quick pace */
  /* each family's observed address: the verdict is per address.  Not in a
   * round whose IPv4 mapping awaits its verdict: the two would compete for
   * the same few strangers, and the probe the observed address's test
   * answers puts its prober in our filter, where the mapping's test cannot
   * use it (natlab_roostd_portmap: q, the only stranger, was spent so) */
  bool unknown = false;
  for (int f = 0; f < 2; f++) {
    uint8_t family = f ? DHT_AF_INET6 : DHT_AF_INET;
    nat_vote_result r;
    nat_svc_vote(n, family, now, &r);
    if (!r.known)
      continue;
    unknown |= n->fr[f].reach == NAT_REACH_UNKNOWN;
    if (family == DHT_AF_INET && waiting)
      continue;
    dial_start(n, -1, family, now);
  }
  /* Only an auto node's mode hangs on the verdict: a server or client by
   * declaration asks at the slow pace (its verdict is for roost nat), and
   * leaves helpers and probers, whose rates are per network, to those. */
  bool urgent = unknown && n->set.mode == NAT_MODE_AUTO;
  n->next_dial = now + (urgent || waiting ? n->set.dial_ms : n->set.redial_ms);
}

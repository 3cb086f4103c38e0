/*
 * dht_engine.c - the engine: drive API (read_pkt, write_pkt, expiry, events),
 * RPC handlers, the outgoing queue, timers, statistics, table snapshots and
 * the service hook.  Lookups and commands live in dht_lookup.c.
 *
 * The receive path, in the order the checks run (each failure is counted
 * once, in dht_stats, and the datagram dropped):
 *   rate limit per source prefix -> size -> version -> not our own key ->
 *   shared key (cache) -> decrypt+authenticate -> replay filter ->
 *   [type, txid] -> service or strict core decode -> handler.
 * Nothing is parsed before authentication but the fixed header.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "dht_eng.h"

/* How long a cookie from a peer is used before we expect a fresh one: half
 * of the shortest life of a token. */
#define COOKIE_USE_MS (DHT_TOKEN_ROTATE_MS / 2)
/* A peer that asked to be stored is verified with a PING at most this often. */
#define VERIFY_EVERY_MS (10 * 60 * 1000)
#define REPUBLISH_SOON_MS 1000
#define EXPIRE_EVERY_MS (60 * 1000)
#define REFRESH_CHECK_MS (60 * 1000)
#define LIVENESS_EVERY_MS (5 * 1000)
/* A record may claim to expire at most this far beyond now + max TTL. */
#define RECORD_SKEW_S 600

static const char *const errnames[] = {
    "ok",        "invalid argument", "buffer too small",      "full",
    "not found", "malformed",        "authentication failed", "stale",
    "cancelled", "timed out",
};

const char *dht_strerror(int err) {
  if (err <= 0 && -err < (int)(sizeof errnames / sizeof errnames[0]))
    return errnames[-err];
  if (err == DHT_ERR_NOMEM)
    return "out of memory";
  if (err == DHT_ERR_INTERNAL)
    return "internal error";
  return "unknown error";
}

void dht_settings_default(dht_settings *s) {
  memset(s, 0, sizeof *s);
  s->k = 20;
  s->alpha = 3;
  s->replacement_cache = 8;
  s->server_mode = true;
  s->log_level = DHT_LOG_WARN;
  s->max_per_prefix_bucket = 2;
  s->max_per_prefix_table = 10;
  s->diversity_exempt_private = true;
  s->questionable_after_ms = 15 * 60 * 1000;
  s->max_failures = 3;
  s->refresh_interval_ms = 15 * 60 * 1000;
  s->rpc_timeout_min_ms = 200;
  s->rpc_timeout_max_ms = 2000;
  s->lookup_timeout_ms = 30000;
  s->max_lookups = 64;
  s->lookup_candidates = 60;
  s->max_out_queue = 512;
  s->max_events = 256;
  s->key_cache = 4096;
  s->cookie_cache = 512;
  s->replay_window = 4096;
  s->max_records = 2048;
  s->max_services = 8;
  s->max_requests = 1024;
  s->max_sockets = 512;
  s->max_keys = 8;
  s->max_paths = 256;
  s->max_circuits = 64;
  s->rate_pps = 400;
  s->rate_burst = 800;
  s->rate_prefixes = 1024;
  s->rate_v4_prefix = 24;
  s->rate_v6_prefix = 48;
  s->amplification_factor = 3;
  s->proof_cache = 256;
  s->unsolicited_pps = 2;
  s->unsolicited_burst = 10;
  s->record_ttl_ms = (dht_ts)DHT_RECORD_MAX_TTL_S * 1000;
  s->republish_ms = 30 * 60 * 1000;
}

static bool settings_ok(const dht_settings *s) {
  return s->k >= 1 && s->k <= DHT_K_MAX && s->alpha >= 1 && s->alpha <= DHT_K_MAX &&
         s->replacement_cache >= 0 && s->replacement_cache <= 256 && s->max_failures >= 1 &&
         s->max_per_prefix_bucket >= 0 && s->max_per_prefix_table >= 0 &&
         s->questionable_after_ms > 0 && s->refresh_interval_ms > 0 && s->rpc_timeout_min_ms > 0 &&
         s->rpc_timeout_max_ms >= s->rpc_timeout_min_ms && s->lookup_timeout_ms > 0 &&
         s->max_lookups >= 1 && s->lookup_candidates >= s->k && s->lookup_candidates <= 4096 &&
         s->max_out_queue >= 1 && s->max_events >= 1 && s->key_cache >= 1 && s->cookie_cache >= 1 &&
         s->replay_window >= 0 && s->max_records >= 0 && s->max_services >= 0 && s->rate_pps >= 0 &&
         s->rate_burst >= 0 && s->rate_prefixes >= 0 && s->rate_v4_prefix >= 0 &&
         s->rate_v4_prefix <= 32 && s->rate_v6_prefix >= 0 && s->rate_v6_prefix <= 128 &&
         s->amplification_factor >= 1 && s->proof_cache >= 1 && s->unsolicited_pps >= 0 &&
         s->unsolicited_burst >= 0 && s->max_requests >= 1 && s->max_sockets >= 0 &&
         s->max_keys >= 0 && s->max_keys <= 64 && s->max_paths >= 1 && s->max_circuits >= 0 &&
         s->max_circuits <= 4096 && s->record_ttl_ms >= 1000 &&
         s->record_ttl_ms <= (dht_ts)DHT_RECORD_MAX_TTL_S * 1000 && s->republish_ms >= 1000;
}

int dht_identity_from_seed(dht_identity *id, const uint8_t seed[static 32]) {
  crypto_sign_seed_keypair(id->pk, id->sk, seed);
  return 0;
}

void dht_eng_log(dht *e, int level, const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  e->cb.log(e->cb.ctx, level, buf);
}

uint64_t dht_eng_unix_s(const dht *e, dht_ts now) {
  int64_t ms = now + e->clock_offset;
  return ms > 0 ? (uint64_t)ms / 1000 : 0;
}

int64_t dht_unix_ms(const dht *e, dht_ts now) {
  int64_t ms = now + e->clock_offset;
  return ms > 0 ? ms : 0;
}

void dht_set_clock_offset(dht *e, int64_t unix_ms_minus_now) {
  e->clock_offset = unix_ms_minus_now;
}

const uint8_t *dht_self_id(const dht *e) {
  return e->id;
}

const uint8_t *dht_self_pk(const dht *e) {
  return e->ident.pk;
}

/* ---- life cycle --------------------------------------------------------- */

int dht_new(dht **out, const dht_identity *identity, const dht_settings *settings,
            const dht_callbacks *callbacks, const dht_mem *mem, dht_ts now) {
  *out = NULL;
  if (!identity || !callbacks || !callbacks->rand)
    return DHT_ERR_INVAL;
  dht_settings defaults;
  if (!settings) {
    dht_settings_default(&defaults);
    settings = &defaults;
  }
  if (!settings_ok(settings))
    return DHT_ERR_INVAL;
  if (!mem)
    mem = &dht_mem_libc;
  dht *e = dht_mem_calloc(mem, 1, sizeof *e);
  if (!e)
    return DHT_ERR_NOMEM;
  e->mem = *mem;
  e->cb = *callbacks;
  e->set = *settings;
  e->ident = *identity;
  dht_id_from_pk(e->id, identity->pk);
  e->next_cmd = 1;

  uint8_t rnd[32 + 16 + 16 + 16 + 8 + 16 + 16 + 16];
  e->cb.rand(e->cb.ctx, rnd, sizeof rnd);
  dht_token_init(&e->tok, rnd, now);
  memcpy(e->nonce_prefix, rnd + 32, 16);
  uint64_t rmul;
  memcpy(&rmul, rnd + 80, 8);

  dht_rt_settings rs = {
      .k = e->set.k,
      .replacement_cache = e->set.replacement_cache,
      .max_per_prefix_bucket = e->set.max_per_prefix_bucket,
      .max_per_prefix_table = e->set.max_per_prefix_table,
      .diversity_exempt_private = e->set.diversity_exempt_private,
      .questionable_after_ms = e->set.questionable_after_ms,
      .max_failures = e->set.max_failures,
  };
  int rv = dht_rt_new(&e->rt, e->id, &rs, &e->mem);
  if (rv)
    goto fail;
  if ((rv = dht_box_init(&e->box, identity, e->set.key_cache, rnd + 48, &e->mem)) != 0)
    goto fail;
  dht_box_set_plaintext(&e->box, e->set.insecure_plaintext);
  if ((rv = dht_cache_init(&e->cookies, e->set.cookie_cache, sizeof(cookie), rnd + 64, &e->mem)) !=
      0)
    goto fail;
  if ((rv = dht_cache_init(&e->verified, e->set.cookie_cache, sizeof(dht_ts), rnd + 88, &e->mem)) !=
      0)
    goto fail;
  if ((rv = dht_cache_init(&e->paths, e->set.max_paths, dht_paths_vlen(), rnd + 120, &e->mem)) != 0)
    goto fail;
  if ((rv = dht_rate_init(&e->rate, e->set.rate_prefixes, e->set.rate_pps, e->set.rate_burst,
                          e->set.rate_v4_prefix, e->set.rate_v6_prefix, rmul, &e->mem)) != 0)
    goto fail;
  if ((rv = dht_replay_init(&e->replay, e->set.replay_window, rnd + 104, &e->mem)) != 0)
    goto fail;
  dht_recstore_init(&e->recs, e->id, e->set.max_records, &e->mem);
  {
    /* Keys for the proof caches come from the same draw, hashed under a
     * label, so that adding them changed no engine's random stream (the
     * simulator's runs stay what they were). */
    uint8_t prnd[40];
    crypto_generichash(prnd, sizeof prnd, rnd, sizeof rnd, (const uint8_t *)"roost-proof-keys", 16);
    dht_proof_settings ps = {
        .entries = e->set.proof_cache,
        .factor = e->set.amplification_factor,
        .pps = e->set.unsolicited_pps,
        .burst = e->set.unsolicited_burst,
        .v4bits = e->set.rate_v4_prefix,
        .v6bits = e->set.rate_v6_prefix,
    };
    rv = dht_proof_init(&e->proof, &ps, prnd, &e->mem);
    sodium_memzero(prnd, sizeof prnd);
    if (rv)
      goto fail;
  }
  sodium_memzero(rnd, sizeof rnd);

  e->next_rotate = now + DHT_TOKEN_ROTATE_MS;
  e->next_expire = now + EXPIRE_EVERY_MS;
  e->next_republish = DHT_TS_NEVER;
  e->next_refresh = now + REFRESH_CHECK_MS;
  e->next_liveness = now + LIVENESS_EVERY_MS;
  *out = e;
  return 0;
fail:
  sodium_memzero(rnd, sizeof rnd);
  dht_del(e);
  return rv;
}

void dht_del(dht *e) {
  if (!e)
    return;
  dht_mem mem = e->mem;
  dht_lookup_free_all(e);
  for (int i = 0; i < e->out_n; i++)
    dht_mem_free(&mem, e->out[(e->out_head + i) % e->out_alloc]);
  dht_mem_free(&mem, e->out);
  for (int i = 0; i < e->ev_n; i++)
    dht_mem_free(&mem, e->ev_res[(e->ev_head + i) % e->ev_alloc]);
  dht_mem_free(&mem, e->ev);
  dht_mem_free(&mem, e->ev_res);
  dht_mem_free(&mem, e->ev_hold);
  dht_mem_free(&mem, e->rpcs);
  dht_svc_free_all(e);
  dht_proof_free(&e->proof, &mem);
  dht_recstore_free(&e->recs);
  dht_replay_free(&e->replay, &mem);
  dht_rate_free(&e->rate, &mem);
  if (e->verified.ents)
    dht_cache_free(&e->verified, &mem);
  if (e->paths.ents)
    dht_cache_free(&e->paths, &mem);
  dht_mem_free(&mem, e->circuits);
  if (e->cookies.ents)
    dht_cache_free(&e->cookies, &mem);
  if (e->box.keys.ents)
    dht_box_free(&e->box, &mem);
  dht_token_free(&e->tok);
  dht_rt_del(e->rt);
  sodium_memzero(e, sizeof *e);
  dht_mem_free(&mem, e);
}

/* ---- the outgoing queue ----------------------------------------------- */

int dht_svc_cookie(dht *e, const dht_peer *peer, uint8_t tok[static DHT_TOKEN_LEN], dht_ts now) {
  const cookie *ck = (const cookie *)dht_cache_get(&e->cookies, peer->pk);
  if (!ck || now - ck->at >= COOKIE_USE_MS || !dht_addr_eq(&ck->addr, &peer->addr))
    return DHT_ERR_NOTFOUND;
  memcpy(tok, ck->token, DHT_TOKEN_LEN);
  return 0;
}

bool dht_svc_cookie_ok(dht *e, const dht_peer *from, const uint8_t tok[static DHT_TOKEN_LEN],
                       dht_ts now) {
  if (!dht_token_check(&e->tok, &from->addr, from->pk, tok))
    return false;
  dht_proof_mark(&e->proof, from, now);
  if (e->cur.on && dht_addr_eq(&e->cur.from.addr, &from->addr) &&
      memcmp(e->cur.from.pk, from->pk, DHT_PK_LEN) == 0)
    e->cur.proven = true;
  return true;
}

bool dht_eng_proven(dht *e, const dht_peer *peer, dht_ts now) {
  uint8_t id[DHT_ID_LEN];
  dht_eng_peer_id(e, peer->pk, id);
  const dht_rt_contact *c = dht_rt_find(e->rt, peer->pk, id);
  if (c && c->last_reply && dht_addr_eq(&c->addr, &peer->addr))
    return true;
  return dht_proof_has(&e->proof, peer, now);
}

void dht_eng_rtt_sample(dht *e, dht_ts rtt_ms) {
  int32_t r = rtt_ms < 0 ? 0 : rtt_ms > 60000 ? 60000 : (int32_t)rtt_ms;
  if (!e->all_rtt_known) {
    e->all_srtt = r;
    e->all_rttvar = r / 2;
    e->all_rtt_known = true;
    return;
  }
  /* RFC 6298's gains (1/8, 1/4), in integer milliseconds */
  int32_t err = r - e->all_srtt;
  e->all_rttvar += ((err < 0 ? -err : err) - e->all_rttvar) / 4;
  e->all_srtt += err / 8;
}

/* A slot at the out queue's tail for a datagram of len bytes, the ring
 * grown to max_out_queue if need be (the caller checked the cap), or NULL. */
static outmsg *out_new(dht *e, size_t len) {
  if (e->out_n == e->out_alloc) {
    int na = e->out_alloc ? e->out_alloc * 2 : 8;
    if (na > e->set.max_out_queue)
      na = e->set.max_out_queue;
    outmsg **nq = dht_mem_malloc(&e->mem, (size_t)na * sizeof *nq);
    if (!nq)
      return NULL;
    for (int i = 0; i < e->out_n; i++)
      nq[i] = e->out[(e->out_head + i) % e->out_alloc];
    dht_mem_free(&e->mem, e->out);
    e->out = nq;
    e->out_head = 0;
    e->out_alloc = na;
  }
  return dht_mem_malloc(&e->mem, sizeof(outmsg) + len);
}

int dht_eng_queue(dht *e, const dht_peer *to, const dht_tx *tx, int key, const uint8_t *body,
                  size_t len, bool request, dht_ts now) {
  if (len > DHT_MAX_BODY)
    return DHT_ERR_INVAL;
  /* Where every datagram leaves the engine: anything that is not our own
   * request, to an address that has not proven it receives, is paid from
   * that address's credit (dht_proof.c), whoever wrote it. */
  if (e->out_n >= e->set.max_out_queue) {
    e->st.drop_out_full++;
    return DHT_ERR_FULL;
  }
  if (!request) {
    uint32_t wire = (uint32_t)(len + DHT_OVERHEAD);
    bool ok = false;
    if (e->cur.on && dht_addr_eq(&to->addr, &e->cur.from.addr) &&
        memcmp(to->pk, e->cur.from.pk, DHT_PK_LEN) == 0) {
      /* an answer to the datagram being handled: its own proof or credit */
      if (e->cur.proven) {
        ok = true;
      } else if (e->cur.credit >= wire) {
        e->cur.credit -= wire;
        ok = true;
      }
    }
    if (!ok && !dht_proof_spend(&e->proof, &to->addr, wire, now) && !dht_eng_proven(e, to, now)) {
      e->st.drop_amplification++;
      return 0;
    }
  }
  outmsg *m = out_new(e, len);
  if (!m)
    return DHT_ERR_NOMEM;
  m->to = *to;
  m->local = tx ? tx->local : 0;
  /* to a key at its relay's address (a relayed path, and the answers to
   * what came through it): sealed to the key, for the relay to send on */
  m->relay = e->relayed_paths && dht_paths_via_relay(e, to); /* no lookup on most nodes */
  m->ttl = tx ? tx->ttl : 0;
  m->key = (uint8_t)key;
  m->len = (uint16_t)len;
  memcpy(m->body, body, len);
  e->out[(e->out_head + e->out_n) % e->out_alloc] = m;
  e->out_n++;
  return 0;
}

int dht_eng_queue_raw(dht *e, const dht_addr *to, const uint8_t *data, size_t len) {
  if (len > DHT_MAX_PKT)
    return DHT_ERR_INVAL;
  if (e->out_n >= e->set.max_out_queue) {
    e->st.drop_out_full++;
    return DHT_ERR_FULL;
  }
  outmsg *m = out_new(e, len);
  if (!m)
    return DHT_ERR_NOMEM;
  memset(m, 0, sizeof *m);
  m->to.addr = *to;
  m->key = OUT_RAW;
  m->len = (uint16_t)len;
  memcpy(m->body, data, len);
  e->out[(e->out_head + e->out_n) % e->out_alloc] = m;
  e->out_n++;
  return 0;
}

/* How long one generation of the recent-destination filter lasts: a NAT
 * forgets an idle UDP mapping after 30 s to a few minutes (Linux: 30 s
 * unreplied, 120 s once answered; RFC 4787 asks >= 2 min), so two
 * generations of 2 minutes cover it. */
#define DEST_GEN_MS (2 * 60 * 1000)

uint32_t dht_dest_hash(const dht_addr *a) {
  int scope = dht_addr_scope(a);
  bool port = scope == DHT_SCOPE_LOOPBACK || scope == DHT_SCOPE_LAN;
  uint32_t h = 2166136261u;
  int n = a->family == DHT_AF_INET ? 4 : 16;
  for (int i = 0; i < n; i++)
    h = (h ^ a->ip[i]) * 16777619u;
  if (port)
    h = ((h ^ (a->port >> 8)) * 16777619u ^ (a->port & 0xff)) * 16777619u;
  return h ^ (h >> 15);
}

static void dests_roll(dht *e, dht_ts now) {
  if (now - e->dests_at < DEST_GEN_MS)
    return;
  if (now - e->dests_at < 2 * DEST_GEN_MS)
    memcpy(e->dests[1], e->dests[0], 32);
  else
    memset(e->dests[1], 0, 32);
  memset(e->dests[0], 0, 32);
  e->dests_at = now;
}

static void dests_add(dht *e, const dht_addr *a, dht_ts now) {
  dests_roll(e, now);
  uint32_t h = dht_dest_hash(a);
  for (int k = 0; k < 3; k++) {
    uint8_t bit = (uint8_t)(h >> (8 * k));
    e->dests[0][bit >> 3] |= (uint8_t)(1u << (bit & 7));
  }
}

void dht_recent_dests(const dht *e, uint8_t bloom[static 32], dht_ts now) {
  memset(bloom, 0, 32);
  if (now - e->dests_at >= 2 * DEST_GEN_MS)
    return;
  for (int i = 0; i < 32; i++)
    bloom[i] = (uint8_t)(e->dests[0][i] | (now - e->dests_at < DEST_GEN_MS ? e->dests[1][i] : 0));
}

dht_ssize dht_write_pkt(dht *e, dht_path *path, dht_pkt_info *pi, uint8_t *buf, size_t buflen,
                        dht_ts now) {
  if (buflen < DHT_MAX_PKT)
    return DHT_ERR_NOBUF;
  while (e->out_n > 0) {
    outmsg *m = e->out[e->out_head];
    e->out_head = (e->out_head + 1) % e->out_alloc;
    e->out_n--;
    if (m->key == OUT_RAW) { /* relayed: as it came, its version put back */
      dht_ssize n = (dht_ssize)m->len;
      memcpy(buf, m->body, m->len);
      buf[0] = DHT_VERSION;
      path->local = 0;
      path->remote = m->to.addr;
      if (pi)
        pi->ttl = 0;
      dht_mem_free(&e->mem, m);
      e->st.tx_packets++;
      e->st.tx_bytes += (uint64_t)n;
      dests_add(e, &path->remote, now);
      return n;
    }
    /* Nonce: a random per-engine prefix and a counter, so it never repeats
     * under our key and costs no call to the random source. */
    uint8_t nonce[DHT_NONCE_LEN];
    memcpy(nonce, e->nonce_prefix, 16);
    uint64_t ctr = ++e->nonce_ctr;
    memcpy(nonce + 16, &ctr, 8);
    /* one counter for every key: a nonce is unique under each of them */
    dht_box *box = &e->box;
    if (m->key) {
      box = m->key <= e->set.max_keys && e->xkeys && e->xkeys[m->key - 1].used
                ? &e->xkeys[m->key - 1].box
                : NULL;
      if (!box) { /* the key was removed while this waited */
        dht_mem_free(&e->mem, m);
        e->st.drop_badkey++;
        continue;
      }
    }
    dht_ssize n = dht_box_seal(box, m->to.pk, nonce, m->body, m->len, buf, buflen);
    if (n > 0 && m->relay)
      buf[0] = DHT_VERSION_RELAY; /* for the relay at m->to.addr to send on */
    path->local = m->local;
    path->remote = m->to.addr;
    if (pi)
      pi->ttl = m->ttl;
    dht_mem_free(&e->mem, m);
    if (n < 0) {
      /* the peer's key is not a usable point: nothing can be sent to it */
      e->st.drop_badkey++;
      continue;
    }
    e->st.tx_packets++;
    e->st.tx_bytes += (uint64_t)n;
    if (path->local == 0)
      dests_add(e, &path->remote, now);
    return n;
  }
  return 0;
}

/* ---- events --------------------------------------------------------------- */

void dht_eng_emit(dht *e, const dht_event *ev, dht_lookup_result *res) {
  if (!dht_svc_route_event(e, ev, res))
    dht_eng_emit_driver(e, ev, res);
}

void dht_eng_emit_driver(dht *e, const dht_event *ev, dht_lookup_result *res) {
  if (e->ev_n >= e->set.max_events)
    goto drop;
  if (e->ev_n == e->ev_alloc) {
    int na = e->ev_alloc ? e->ev_alloc * 2 : 8;
    if (na > e->set.max_events)
      na = e->set.max_events;
    dht_event *nev = dht_mem_malloc(&e->mem, (size_t)na * sizeof *nev);
    dht_lookup_result **nres = dht_mem_malloc(&e->mem, (size_t)na * sizeof *nres);
    if (!nev || !nres) {
      dht_mem_free(&e->mem, nev);
      dht_mem_free(&e->mem, nres);
      goto drop;
    }
    for (int i = 0; i < e->ev_n; i++) {
      nev[i] = e->ev[(e->ev_head + i) % e->ev_alloc];
      nres[i] = e->ev_res[(e->ev_head + i) % e->ev_alloc];
    }
    dht_mem_free(&e->mem, e->ev);
    dht_mem_free(&e->mem, e->ev_res);
    e->ev = nev;
    e->ev_res = nres;
    e->ev_head = 0;
    e->ev_alloc = na;
  }
  int i = (e->ev_head + e->ev_n) % e->ev_alloc;
  e->ev[i] = *ev;
  e->ev_res[i] = res;
  e->ev_n++;
  return;
drop:
  e->st.drop_event_full++;
  dht_mem_free(&e->mem, res);
}

int dht_poll_event(dht *e, dht_event *ev) {
  dht_mem_free(&e->mem, e->ev_hold);
  e->ev_hold = NULL;
  dht_svc_sock_flush(e);
  if (e->sev_n > 0)
    dht_svc_dispatch(e, e->last_now);
  if (e->ev_n == 0)
    return DHT_ERR_NOTFOUND;
  *ev = e->ev[e->ev_head];
  e->ev_hold = e->ev_res[e->ev_head];
  if (ev->type == DHT_EV_LOOKUP)
    ev->u.lookup = e->ev_hold;
  e->ev_head = (e->ev_head + 1) % e->ev_alloc;
  e->ev_n--;
  return 0;
}

/* ---- requests out ----------------------------------------------------------- */

static rpc *rpc_find(dht *e, uint32_t txid) {
  for (int i = 0; i < e->nrpcs; i++)
    if (e->rpcs[i].txid == txid)
      return &e->rpcs[i];
  return NULL;
}

static void rpc_remove(dht *e, rpc *r) {
  *r = e->rpcs[--e->nrpcs];
}

void dht_eng_peer_id(dht *e, const uint8_t pk[static DHT_PK_LEN], uint8_t id[static DHT_ID_LEN]) {
  const uint8_t *ent = dht_cache_get(&e->box.keys, pk);
  if (ent)
    memcpy(id, ent + 32, DHT_ID_LEN);
  else
    dht_id_from_pk(id, pk);
}

static dht_ts rpc_timeout(dht *e, const uint8_t pk[static DHT_PK_LEN],
                          const uint8_t id[static DHT_ID_LEN]) {
  const dht_rt_contact *c = dht_rt_find(e->rt, pk, id);
  if (!c)
    return e->set.rpc_timeout_max_ms;
  return dht_rt_timeout(c, e->set.rpc_timeout_min_ms, e->set.rpc_timeout_max_ms);
}

int dht_eng_request(dht *e, const dht_peer *to, dht_msg *m, int kind, int64_t cmd_id, dht_ts now) {
  /* Requests that may draw a large reply carry our cookie for that peer, or
   * else padding so that amplification_factor x our size covers the reply. */
  if (m->type == DHT_MSG_FIND_NODE || m->type == DHT_MSG_GET) {
    const cookie *ck = (const cookie *)dht_cache_get(&e->cookies, to->pk);
    m->token_len = 0;
    m->pad_len = 0;
    if (ck && now - ck->at < COOKIE_USE_MS && dht_addr_eq(&ck->addr, &to->addr)) {
      memcpy(m->token, ck->token, DHT_TOKEN_LEN);
      m->token_len = DHT_TOKEN_LEN;
    }
  }
  m->flags = e->set.server_mode ? DHT_MSGF_SERVER : 0;

  if (e->nrpcs == e->rpc_cap) {
    int cap = e->set.max_lookups * (e->set.k > e->set.alpha ? e->set.k : e->set.alpha) + 64;
    if (e->nrpcs >= cap) {
      e->st.drop_out_full++;
      return DHT_ERR_FULL;
    }
    int na = e->rpc_cap ? e->rpc_cap * 2 : 16;
    if (na > cap)
      na = cap;
    rpc *nr = dht_mem_realloc(&e->mem, e->rpcs, (size_t)na * sizeof *nr);
    if (!nr)
      return DHT_ERR_NOMEM;
    e->rpcs = nr;
    e->rpc_cap = na;
  }
  uint32_t txid;
  do {
    e->cb.rand(e->cb.ctx, (uint8_t *)&txid, sizeof txid);
  } while (rpc_find(e, txid));
  m->txid = txid;

  uint8_t body[DHT_MAX_BODY];
  dht_ssize n = dht_msg_encode(m, body, sizeof body);
  if (n >= 0 && m->token_len == 0 && (m->type == DHT_MSG_FIND_NODE || m->type == DHT_MSG_GET)) {
    size_t want = (DHT_MAX_PKT + (size_t)e->set.amplification_factor - 1) /
                  (size_t)e->set.amplification_factor;
    if ((size_t)n + DHT_OVERHEAD < want) {
      /* an empty pad is a 2-byte bin8; past 255 bytes the header grows to
       * bin16, one byte more */
      size_t pad = want - (size_t)n - DHT_OVERHEAD;
      m->pad_len = pad > 256 ? pad - 1 : pad;
      n = dht_msg_encode(m, body, sizeof body);
    }
  }
  if (n < 0)
    return (int)n;
  int rv = dht_eng_queue(e, to, NULL, 0, body, (size_t)n, true, now);
  if (rv)
    return rv;
  rpc *r = &e->rpcs[e->nrpcs++];
  r->txid = txid;
  r->kind = (uint8_t)kind;
  r->type = m->type;
  r->cmd = cmd_id;
  r->to = *to;
  uint8_t id[DHT_ID_LEN];
  dht_eng_peer_id(e, to->pk, id);
  r->sent = now;
  r->deadline = now + rpc_timeout(e, to->pk, id);
  e->st.requests_out++;
  return 0;
}

static void send_ping(dht *e, const dht_peer *to, int kind, int64_t cmd_id, dht_ts now) {
  dht_msg m;
  memset(&m, 0, sizeof m);
  m.type = DHT_MSG_PING;
  dht_eng_request(e, to, &m, kind, cmd_id, now);
}

/* Liveness ping of table contact c (ping-before-evict, or the liveness
 * timer).  Its ID is hashed from its key, not taken from the key cache, so
 * that the cache's LRU order is what it would be if the table held IDs
 * (these pings are rare: one per LIVENESS_EVERY_MS, one per questionable
 * contact a newcomer finds). */
static void ping_contact(dht *e, const dht_rt_contact *c, dht_ts now) {
  dht_peer p;
  uint8_t id[DHT_ID_LEN];
  memcpy(p.pk, c->pk, DHT_PK_LEN);
  p.addr = c->addr;
  dht_id_from_pk(id, p.pk);
  dht_rt_pinged(e->rt, p.pk, id, now);
  send_ping(e, &p, RPC_LIVENESS, 0, now);
}

/* ---- replies in --------------------------------------------------------- */

/* An answer leaves by the socket its request came in on. */
static void reply(dht *e, const dht_peer *to, uint32_t local, dht_msg *m, dht_ts now) {
  uint8_t body[DHT_MAX_BODY];
  dht_ssize n = dht_msg_encode(m, body, sizeof body);
  dht_tx tx = {.local = local};
  if (n >= 0)
    dht_eng_queue(e, to, &tx, 0, body, (size_t)n, false, now);
}

/* Has this address shown it can receive what we send it?  Either it echoed a
 * token we gave that address, or it is a table contact that answered us there. */
static bool proven(dht *e, const dht_peer *from, const uint8_t id[static DHT_ID_LEN],
                   const dht_msg *m, dht_ts now) {
  (void)now;
  if (m->token_len == DHT_TOKEN_LEN && dht_token_check(&e->tok, &from->addr, from->pk, m->token))
    return e->cur.proven = true;
  const dht_rt_contact *c = dht_rt_find(e->rt, from->pk, id);
  return e->cur.proven = c && c->last_reply && dht_addr_eq(&c->addr, &from->addr);
}

/* Fills m->contacts with the closest good contacts to target (excluding the
 * requester, by its key) that fit in budget bytes of body. */
static void fill_contacts(dht *e, dht_msg *m, const uint8_t target[static DHT_ID_LEN],
                          const uint8_t requester[static DHT_PK_LEN], size_t budget) {
  const dht_rt_contact *cl[DHT_K_MAX + 1];
  int n = dht_rt_closest(e->rt, target, true, cl, e->set.k + 1);
  m->ncontacts = 0;
  for (int i = 0; i < n && m->ncontacts < e->set.k; i++) {
    if (memcmp(cl[i]->pk, requester, DHT_PK_LEN) == 0)
      continue;
    dht_peer *p = &m->contacts[m->ncontacts];
    memcpy(p->pk, cl[i]->pk, DHT_PK_LEN);
    p->addr = cl[i]->addr;
    size_t sz = dht_msg_contact_size(p);
    if (sz == 0)
      continue;
    if (sz > budget)
      break;
    budget -= sz;
    m->ncontacts++;
  }
}

/* A server-mode peer we do not know asked us something: check that it can
 * be reached, and insert it when it is, so only reachable nodes enter the
 * table.  Not when its bucket is full of good contacts: it could only be
 * cached.  A listening service may take the check over (DHT_EV_CANDIDATE:
 * our own PING comes from the address the peer just sent to, so any NAT
 * lets it in and it proves nothing); otherwise the verify PING goes out
 * from dht_eng_verify, at once or when no service took the event. */
static void maybe_verify(dht *e, const dht_peer *from, uint32_t local,
                         const uint8_t id[static DHT_ID_LEN], uint8_t flags, dht_ts now) {
  if (!(flags & DHT_MSGF_SERVER) || dht_rt_find(e->rt, from->pk, id) ||
      dht_rt_is_settled(e->rt, id, now))
    return;
  dht_ts *last = (dht_ts *)dht_cache_get(&e->verified, from->pk);
  if (last && now - *last < VERIFY_EVERY_MS)
    return;
  /* The verify PING is the one datagram the engine starts on its own toward
   * an address that has not proven itself: rate-limited per destination
   * prefix, so a flood of requests from fresh keys with one spoofed source
   * cannot aim pings at a victim.  A service's check passes the same bucket,
   * since it too ends in datagrams toward that address. */
  if (!dht_proof_unsolicited(&e->proof, &from->addr, now)) {
    e->st.unsolicited_limited++;
    return;
  }
  last = (dht_ts *)dht_cache_put(&e->verified, from->pk);
  *last = now;
  dht_event ev;
  memset(&ev, 0, sizeof ev);
  ev.type = DHT_EV_CANDIDATE;
  ev.u.candidate.peer = *from;
  memcpy(ev.u.candidate.id, id, DHT_ID_LEN);
  ev.u.candidate.local = local;
  if (!dht_svc_route_event(e, &ev, NULL))
    dht_eng_verify(e, from, now);
}

int dht_eng_verify(dht *e, const dht_peer *peer, dht_ts now) {
  dht_msg m;
  memset(&m, 0, sizeof m);
  m.type = DHT_MSG_PING;
  int rv = dht_eng_request(e, peer, &m, RPC_VERIFY, 0, now);
  if (rv == 0)
    e->st.unsolicited_out++;
  return rv;
}

int dht_svc_verify(dht *e, const dht_peer *peer, dht_ts now) {
  if (!peer || (peer->addr.family != DHT_AF_INET && peer->addr.family != DHT_AF_INET6))
    return DHT_ERR_INVAL;
  int rv = dht_eng_verify(e, peer, now);
  return rv == 0 ? 0 : rv <= DHT_ERR_FATAL ? rv : DHT_ERR_FULL;
}

int dht_svc_add_contact(dht *e, const dht_peer *peer, dht_ts now) {
  if (!peer || (peer->addr.family != DHT_AF_INET && peer->addr.family != DHT_AF_INET6))
    return DHT_ERR_INVAL;
  uint8_t id[DHT_ID_LEN];
  dht_eng_peer_id(e, peer->pk, id);
  if (dht_rt_find(e->rt, peer->pk, id))
    return DHT_ERR_INVAL;
  const dht_rt_contact *ping = NULL;
  int rv = dht_rt_update_id(e->rt, peer->pk, id, &peer->addr, true, -1, now, &ping);
  if (rv == DHT_ERR_NOMEM)
    return rv;
  if (ping)
    ping_contact(e, ping, now);
  if (rv != DHT_RT_ADDED) {
    dht_proof_mark(&e->proof, peer, now); /* the service's proof stands; the table does not */
    return DHT_ERR_FULL;
  }
  return 0;
}

static void on_put(dht *e, const dht_peer *from, const dht_msg *m, dht_msg *r, dht_ts now) {
  dht_record rec;
  uint64_t unix_now = dht_eng_unix_s(e, now);
  r->status = DHT_ACK_OK;
  if (m->token_len != DHT_TOKEN_LEN || !dht_token_check(&e->tok, &from->addr, from->pk, m->token)) {
    e->st.drop_bad_token++;
    r->status = DHT_ACK_BAD_TOKEN;
    return;
  }
  if (dht_record_parse(&rec, m->record, m->record_len) != 0 ||
      rec.expires_unix_s > unix_now + DHT_RECORD_MAX_TTL_S + RECORD_SKEW_S ||
      (!e->set.insecure_plaintext && dht_record_verify(m->record, m->record_len) != 0)) {
    e->st.drop_bad_record++;
    r->status = DHT_ACK_BAD_RECORD;
    return;
  }
  int rv = dht_recstore_put(&e->recs, &rec, m->record, m->record_len, unix_now);
  r->status = rv < 0 ? DHT_ACK_FULL : (uint8_t)rv;
  if (rv == DHT_ACK_OK)
    e->st.records_accepted++;
  else
    e->st.records_rejected++;
}

static void on_request(dht *e, const dht_peer *from, uint32_t local,
                       const uint8_t id[static DHT_ID_LEN], const dht_msg *m, size_t pktlen,
                       dht_ts now) {
  e->st.requests_in++;
  dht_rt_heard(e->rt, from->pk, id, &from->addr, now);
  dht_msg r;
  memset(&r, 0, sizeof r);
  r.txid = m->txid;
  switch (m->type) {
  case DHT_MSG_PING:
    r.type = DHT_MSG_PONG;
    r.seen = from->addr;
    /* a cookie, as NODES carry: a node that only pings (a client keeping
     * its introducers) can then ask them for what needs one (a dial-back)
     * without a lookup that would put a dozen more nodes in its NAT */
    r.token_len = DHT_TOKEN_LEN;
    dht_token_make(&e->tok, &from->addr, from->pk, r.token);
    break;
  case DHT_MSG_PUT:
    r.type = DHT_MSG_ACK;
    on_put(e, from, m, &r, now);
    break;
  case DHT_MSG_FIND_NODE:
  case DHT_MSG_GET: {
    size_t budget = DHT_MAX_PKT;
    if (!proven(e, from, id, m, now)) {
      size_t lim = pktlen * (size_t)e->set.amplification_factor;
      if (lim < budget) {
        budget = lim;
        e->st.amplification_limited++;
      }
    }
    /* fixed part: array, type, txid (<= 5), token (2 + 16), contacts array
     * header (<= 3), envelope */
    size_t fixed = 1 + 1 + 5 + 2 + DHT_TOKEN_LEN + 3 + DHT_OVERHEAD;
    budget = budget > fixed ? budget - fixed : 0;
    r.type = DHT_MSG_NODES;
    r.token_len = DHT_TOKEN_LEN;
    dht_token_make(&e->tok, &from->addr, from->pk, r.token);
    if (m->type == DHT_MSG_GET) {
      const uint8_t *rb = NULL;
      size_t rl = 0;
      if (memcmp(m->target, e->id, DHT_ID_LEN) == 0 && e->rec_len) {
        rb = e->rec_bytes;
        rl = e->rec_len;
      } else {
        const dht_recstore_ent *ent = dht_recstore_get(&e->recs, m->target, dht_eng_unix_s(e, now));
        if (ent) {
          rb = ent->bytes;
          rl = ent->len;
        }
      }
      if (rb && rl + 3 <= budget) {
        r.type = DHT_MSG_VALUE;
        r.record = rb;
        r.record_len = rl;
        budget -= rl + 3;
      }
    }
    fill_contacts(e, &r, m->target, from->pk, budget);
    break;
  }
  default:
    return;
  }
  reply(e, from, local, &r, now);
  /* after the reply, so that a peer that pinged us has our PONG (and knows
   * us) before our verification ping arrives */
  maybe_verify(e, from, local, id, m->flags, now);
}

static bool reply_matches(uint8_t req, uint8_t rep) {
  switch (req) {
  case DHT_MSG_PING:
    return rep == DHT_MSG_PONG;
  case DHT_MSG_FIND_NODE:
    return rep == DHT_MSG_NODES;
  case DHT_MSG_GET:
    return rep == DHT_MSG_NODES || rep == DHT_MSG_VALUE;
  case DHT_MSG_PUT:
    return rep == DHT_MSG_ACK;
  }
  return false;
}

/* id is BLAKE2b(from->pk), from the key cache entry the datagram opened
 * with; a matching rpc was sent to that key, so it is the rpc's ID too. */
static void on_reply(dht *e, const dht_peer *from, uint32_t local,
                     const uint8_t id[static DHT_ID_LEN], const dht_msg *m, dht_ts now) {
  rpc *rp = rpc_find(e, m->txid);
  if (!rp || memcmp(rp->to.pk, from->pk, DHT_PK_LEN) != 0 || !reply_matches(rp->type, m->type)) {
    e->st.drop_unknown_txid++;
    return;
  }
  rpc r = *rp;
  rpc_remove(e, rp);
  e->st.replies_in++;
  dht_eng_rtt_sample(e, now - r.sent);
  /* The address we sent to delivered our request and the key answered: that
   * is what makes a contact reachable (server mode). */
  const dht_rt_contact *ping = NULL;
  int rv = dht_rt_update_id(e->rt, r.to.pk, id, &r.to.addr, true, now - r.sent, now, &ping);
  if (rv != DHT_RT_ADDED && rv != DHT_RT_UPDATED)
    dht_proof_mark(&e->proof, &r.to, now); /* the table does not vouch for it */
  if (rv == DHT_ERR_NOMEM)
    DHT_LOG(e, DHT_LOG_WARN, "routing table: out of memory");
  if (ping)
    ping_contact(e, ping, now);
  if (m->token_len == DHT_TOKEN_LEN) {
    cookie *ck = (cookie *)dht_cache_put(&e->cookies, r.to.pk);
    memcpy(ck->token, m->token, DHT_TOKEN_LEN);
    ck->addr = r.to.addr;
    ck->at = now;
  }
  if (m->type == DHT_MSG_PONG) {
    dht_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = DHT_EV_ADDR_SEEN;
    ev.u.seen.seen_as = m->seen;
    ev.u.seen.reporter = r.to.addr;
    memcpy(ev.u.seen.reporter_id, id, DHT_ID_LEN);
    ev.u.seen.local = local;
    ev.u.seen.stranger = r.kind == RPC_VERIFY;
    dht_eng_emit(e, &ev, NULL);
    if (r.kind == RPC_PING) {
      memset(&ev, 0, sizeof ev);
      ev.type = DHT_EV_PING;
      ev.cmd = r.cmd;
      ev.u.ping.rtt_ms = now - r.sent;
      ev.u.ping.seen_as = m->seen;
      memcpy(ev.u.ping.id, id, DHT_ID_LEN);
      dht_eng_emit(e, &ev, NULL);
    }
  }
  if (r.kind == RPC_LOOKUP || r.kind == RPC_PUT) {
    cmd *c = dht_lookup_find(e, r.cmd);
    if (c) {
      if (r.kind == RPC_LOOKUP)
        dht_lookup_on_reply(e, c, &r, m, now);
      else
        dht_lookup_on_ack(e, c, &r, m, now);
    }
  }
}

static void read_pkt(dht *e, const dht_path *path, const uint8_t *data, size_t len, dht_ts now);

int dht_read_pkt(dht *e, const dht_path *path, const uint8_t *data, size_t len, dht_ts now) {
  e->last_now = now;
  read_pkt(e, path, data, len, now);
  if (e->cur.on && e->cur.to_service && !e->cur.proven && e->cur.credit > 0)
    dht_proof_credit(&e->proof, &e->cur.from.addr, e->cur.credit, now);
  e->cur.on = false;
  dht_svc_dispatch(e, now);
  return 0;
}

static void read_pkt(dht *e, const dht_path *path, const uint8_t *data, size_t len, dht_ts now) {
  const dht_addr *from = &path->remote;
  e->st.rx_packets++;
  e->st.rx_bytes += len;
  if (!dht_rate_allow(&e->rate, from, now)) {
    e->st.drop_ratelimit++;
    return;
  }
  if (len < DHT_OVERHEAD + 3 || len > DHT_MAX_PKT) {
    e->st.drop_size++;
    return;
  }
  if (data[0] == DHT_VERSION_RELAY) {
    dht_relay_forward(e, path, data, len, now);
    return;
  }
  if (data[0] != DHT_VERSION) {
    e->st.drop_version++;
    return;
  }
  dht_peer peer;
  memcpy(peer.pk, data + 1, DHT_PK_LEN);
  peer.addr = *from;
  if (memcmp(peer.pk, e->ident.pk, DHT_PK_LEN) == 0) { /* public data */
    e->st.drop_self++;
    return;
  }
  uint8_t body[DHT_MAX_BODY];
  dht_ssize n = -1;
  int key = 0;
  const uint8_t *ent = NULL;
  if (e->nsreq_keyed > 0) {
    /* requests to this peer went under other keys of ours: their answers
     * are sealed to those keys.  Try each (a few at most); only the answer
     * to a request outstanding under the key that opens it is taken. */
    bool opened = false;
    for (int k = dht_svc_keyed_next(e, peer.pk, 0); k > 0 && key == 0;
         k = dht_svc_keyed_next(e, peer.pk, k)) {
      ent = dht_box_key(&e->xkeys[k - 1].box, peer.pk);
      n = ent ? dht_box_open(ent, data, len, body, sizeof body) : -1;
      uint8_t t;
      uint32_t x;
      if (n < 0)
        continue;
      opened = true;
      if (dht_msg_peek(body, (size_t)n, &t, &x) == 0 &&
          dht_svc_is_keyed_answer(e, k, peer.pk, x, t))
        key = k;
    }
    if (key == 0 && opened && !e->set.insecure_plaintext) {
      e->st.drop_unknown_txid++; /* authentic, but nothing we asked under that key */
      return;
    }
    if (key == 0)
      n = -1; /* plaintext opens under any key: try our identity */
  }
  if (n < 0) {
    ent = dht_box_key(&e->box, peer.pk);
    if (!ent) {
      e->st.drop_badkey++;
      return;
    }
    n = dht_box_open(ent, data, len, body, sizeof body);
    if (n < 0) {
      e->st.drop_decrypt++;
      return;
    }
  }
  uint8_t id[DHT_ID_LEN];
  memcpy(id, ent + 32, DHT_ID_LEN);
  if (dht_replay_seen(&e->replay, peer.pk, data + 1 + DHT_PK_LEN)) {
    e->st.drop_replay++;
    return;
  }
  dht_paths_heard(e, peer.pk, path, now);
  /* authenticated: what it sent pays for what we may send back unproven */
  e->cur.on = true;
  e->cur.proven = false;
  e->cur.to_service = false;
  e->cur.from = peer;
  e->cur.credit = (uint32_t)(len * (size_t)e->set.amplification_factor);
  uint8_t type;
  uint32_t txid;
  if (dht_msg_peek(body, (size_t)n, &type, &txid) != 0) {
    e->st.drop_malformed++;
    return;
  }
  if (type > DHT_MSG_CORE_MAX) {
    dht_msg_in in = {.from = peer,
                     .local = path->local,
                     .key = key,
                     .type = type,
                     .txid = txid,
                     .body = body,
                     .len = (size_t)n,
                     .wire_len = len};
    e->cur.to_service = true;
    dht_svc_on_datagram(e, &in, now);
    return;
  }
  dht_msg m;
  int rv = dht_msg_decode(&m, body, (size_t)n);
  if (rv == DHT_ERR_NOTFOUND) {
    e->st.drop_unknown_type++;
    return;
  }
  if (rv) {
    e->st.drop_malformed++;
    return;
  }
  switch (m.type) {
  case DHT_MSG_PING:
  case DHT_MSG_FIND_NODE:
  case DHT_MSG_GET:
  case DHT_MSG_PUT:
    on_request(e, &peer, path->local, id, &m, len, now);
    break;
  default:
    on_reply(e, &peer, path->local, id, &m, now);
    dht_lookup_step(e, now);
    break;
  }
  return;
}

/* ---- timers ------------------------------------------------------------- */

static dht_ts min_ts(dht_ts a, dht_ts b) {
  return a < b ? a : b;
}

/* The next liveness check: at most one every LIVENESS_EVERY_MS, and none
 * before a contact can be due: a contact is not due until 15 minutes after
 * its last answer, so polling regardless mostly finds nothing to do
 * (docs/architecture.md, decision 21). */
static dht_ts liveness_at(const dht *e) {
  dht_ts due = dht_rt_ping_due(e->rt);
  return due > e->next_liveness ? due : e->next_liveness;
}

dht_ts dht_get_expiry(const dht *e) {
  dht_ts t = min_ts(e->next_rotate, e->next_expire);
  t = min_ts(t, min_ts(e->next_republish, dht_lookup_expiry(e)));
  if (dht_rt_size(e->rt) > 0)
    t = min_ts(t, min_ts(e->next_refresh, liveness_at(e)));
  for (int i = 0; i < e->nrpcs; i++)
    t = min_ts(t, e->rpcs[i].deadline);
  return min_ts(t, dht_svc_expiry(e));
}

static void expire_rpcs(dht *e, dht_ts now) {
  for (int i = 0; i < e->nrpcs;) {
    if (e->rpcs[i].deadline > now) {
      i++;
      continue;
    }
    rpc r = e->rpcs[i];
    rpc_remove(e, &e->rpcs[i]);
    e->st.timeouts++;
    /* hashed, not read from the key cache: a timeout must not refresh a
     * cache entry (rpcs do not keep the ID, so that they stay small) */
    uint8_t id[DHT_ID_LEN];
    dht_id_from_pk(id, r.to.pk);
    dht_rt_failed(e->rt, r.to.pk, id, now);
    if (r.kind == RPC_PING) {
      dht_event ev;
      memset(&ev, 0, sizeof ev);
      ev.type = DHT_EV_PING;
      ev.cmd = r.cmd;
      ev.status = DHT_ERR_TIMEOUT;
      memcpy(ev.u.ping.id, id, DHT_ID_LEN);
      dht_eng_emit(e, &ev, NULL);
    } else if (r.kind == RPC_LOOKUP || r.kind == RPC_PUT) {
      cmd *c = dht_lookup_find(e, r.cmd);
      if (c)
        dht_lookup_on_timeout(e, c, &r, now);
    }
  }
}

int dht_handle_expiry(dht *e, dht_ts now) {
  e->last_now = now;
  expire_rpcs(e, now);
  if (now >= e->next_rotate) {
    uint8_t rnd[32];
    e->cb.rand(e->cb.ctx, rnd, sizeof rnd);
    dht_token_rotate(&e->tok, rnd, now);
    sodium_memzero(rnd, sizeof rnd);
    e->next_rotate = now + DHT_TOKEN_ROTATE_MS;
  }
  if (now >= e->next_expire) {
    dht_recstore_expire(&e->recs, dht_eng_unix_s(e, now));
    e->next_expire = now + EXPIRE_EVERY_MS;
  }
  if (now >= e->next_republish) {
    e->next_republish = now + e->set.republish_ms;
    if (dht_eng_make_record(e, now) == 0)
      dht_lookup_start(e, CMD_PUT, e->id, NULL, 0, true, now);
  }
  if (now >= e->next_refresh) {
    e->next_refresh = now + REFRESH_CHECK_MS;
    int b = e->refreshing ? -1 : dht_rt_stale_bucket(e->rt, now, e->set.refresh_interval_ms);
    if (b >= 0) {
      uint8_t rnd[DHT_ID_LEN], target[DHT_ID_LEN];
      e->cb.rand(e->cb.ctx, rnd, sizeof rnd);
      dht_id_in_bucket(target, e->id, b, rnd);
      dht_rt_touch_bucket(e->rt, b, now);
      if (dht_lookup_start(e, CMD_REFRESH, target, NULL, 0, true, now) > 0)
        e->refreshing = true;
    }
  }
  if (now >= liveness_at(e)) {
    e->next_liveness = now + LIVENESS_EVERY_MS;
    const dht_rt_contact *c = dht_rt_next_to_ping(e->rt, now);
    if (c)
      ping_contact(e, c, now);
  }
  dht_lookup_step(e, now);
  dht_svc_expire(e, now);
  dht_svc_dispatch(e, now);
  return 0;
}

/* ---- our record ------------------------------------------------------- */

/* A change to our record: GETs for our ID get the new one at once; the PUT
 * to the nodes that keep it goes out within REPUBLISH_SOON_MS, so that the
 * changes of one moment (the NAT class, then each introducer that answers)
 * cost one lookup, not one each. */
static void republish(dht *e, dht_ts now) {
  if (e->published && dht_eng_make_record(e, now) == 0 &&
      e->next_republish > now + REPUBLISH_SOON_MS)
    e->next_republish = now + REPUBLISH_SOON_MS;
}

int dht_set_nat_class(dht *e, int cls, dht_ts now) {
  if (cls < DHT_NAT_UNKNOWN || cls > DHT_NAT_SYMMETRIC)
    return DHT_ERR_INVAL;
  if (e->nat_class == cls)
    return 0;
  e->nat_class = (uint8_t)cls;
  republish(e, now);
  return 0;
}

int dht_set_introducers(dht *e, const dht_introducer *intro, size_t n, dht_ts now) {
  if (n > DHT_RECORD_MAX_INTRO || (n && !intro))
    return DHT_ERR_INVAL;
  for (size_t i = 0; i < n; i++) {
    uint8_t w[DHT_WADDR6_LEN];
    if (dht_addr_to_wire(&intro[i].addr, w) < 0 || intro[i].addr.port == 0)
      return DHT_ERR_INVAL;
  }
  bool same = (int)n == e->nintro;
  for (size_t i = 0; i < n && same; i++)
    same = memcmp(e->intro[i].pk, intro[i].pk, DHT_PK_LEN) == 0 &&
           dht_addr_eq(&e->intro[i].addr, &intro[i].addr);
  if (same)
    return 0;
  for (size_t i = 0; i < n; i++)
    e->intro[i] = intro[i];
  e->nintro = (int)n;
  /* whoever wants to reach us through them needs them now */
  republish(e, now);
  return 0;
}

int dht_set_mode(dht *e, bool server, dht_ts now) {
  if (e->set.server_mode == server)
    return 0;
  e->set.server_mode = server;
  /* the record carries the reachable flag: others must learn the change now,
   * not at the next republish */
  republish(e, now);
  return 0;
}

bool dht_is_server(const dht *e) {
  return e->set.server_mode;
}

int dht_set_addrs(dht *e, const dht_typed_addr *addrs, size_t n) {
  if (n > DHT_RECORD_MAX_ADDRS || (n && !addrs))
    return DHT_ERR_INVAL;
  for (size_t i = 0; i < n; i++) {
    uint8_t w[DHT_WADDR6_LEN];
    if (addrs[i].type < DHT_ADDR_LAN || addrs[i].type > DHT_ADDR_RELAY ||
        dht_addr_to_wire(&addrs[i].addr, w) < 0 || addrs[i].addr.port == 0)
      return DHT_ERR_INVAL;
  }
  for (size_t i = 0; i < n; i++)
    e->addrs[i] = addrs[i];
  e->naddrs = (int)n;
  return 0;
}

int dht_eng_make_record(dht *e, dht_ts now) {
  dht_record r;
  memset(&r, 0, sizeof r);
  memcpy(r.pk, e->ident.pk, DHT_PK_LEN);
  /* The sequence number is the wall clock in milliseconds (or one more than
   * the last), so it keeps growing across restarts without being stored. */
  uint64_t ms = (uint64_t)(now + e->clock_offset > 0 ? now + e->clock_offset : 0);
  r.seq = ms > e->rec_seq ? ms : e->rec_seq + 1;
  r.expires_unix_s = dht_eng_unix_s(e, now) + (uint64_t)(e->set.record_ttl_ms / 1000);
  r.flags =
      (uint8_t)((e->set.server_mode ? DHT_REC_REACHABLE : 0) | (e->nat_class << DHT_REC_NAT_SHIFT));
  r.naddrs = (uint8_t)e->naddrs;
  for (int i = 0; i < e->naddrs; i++)
    r.addrs[i] = e->addrs[i];
  r.nintro = (uint8_t)e->nintro;
  for (int i = 0; i < e->nintro; i++)
    r.intro[i] = e->intro[i];
  dht_ssize n = dht_record_sign(&r, e->ident.sk, e->rec_bytes, sizeof e->rec_bytes);
  if (n < 0)
    return (int)n;
  e->rec_len = (uint16_t)n;
  e->rec_seq = r.seq;
  return 0;
}

/* ---- statistics, snapshots, services -------------------------------------- */

void dht_get_stats(const dht *e, dht_stats *st) {
  *st = e->st;
  st->keycache_hits = e->box.hits;
  st->keycache_misses = e->box.misses;
  st->rt_size = dht_rt_size(e->rt);
  st->rt_buckets = dht_rt_buckets(e->rt);
  st->records_stored = e->recs.n;
  st->out_queue = e->out_n;
  st->events_queued = e->ev_n;
}

int dht_table(const dht *e, dht_peer_info *out, int n) {
  int size = dht_rt_size(e->rt), got = 0;
  for (int i = 0; i < size && got < n; i++, got++) {
    const dht_rt_contact *c = dht_rt_at(e->rt, i);
    dht_peer_info *o = &out[got];
    dht_id_from_pk(o->c.id, c->pk);
    memcpy(o->c.pk, c->pk, DHT_PK_LEN);
    o->c.addr = c->addr;
    o->rtt_ms = c->srtt_ms || c->rttvar_ms ? c->srtt_ms : -1;
    o->last_reply_ms = c->last_reply;
    o->first_seen_ms = c->first_seen;
    o->fails = c->fails;
  }
  return got;
}

int dht_closest(const dht *e, const uint8_t target[static DHT_ID_LEN], dht_contact *out, int n) {
  const dht_rt_contact *cl[DHT_K_MAX];
  if (n > DHT_K_MAX)
    n = DHT_K_MAX;
  int got = dht_rt_closest(e->rt, target, false, cl, n);
  for (int i = 0; i < got; i++) {
    dht_id_from_pk(out[i].id, cl[i]->pk);
    memcpy(out[i].pk, cl[i]->pk, DHT_PK_LEN);
    out[i].addr = cl[i]->addr;
  }
  return got;
}

/* Snapshot: "roostrt1" | u32 count | count x (u8 len 6|18, pk, address) |
 * 16-byte BLAKE2b of everything before it.  The checksum catches truncation
 * and disk corruption; the snapshot is not a secret and not signed. */
static const uint8_t snap_magic[8] = {'r', 'o', 'o', 's', 't', 'r', 't', '1'};
#define SNAP_SUM 16

dht_ssize dht_save_table(const dht *e, uint8_t *buf, size_t buflen, size_t *need) {
  int n = dht_rt_size(e->rt);
  size_t len = sizeof snap_magic + 4 + SNAP_SUM;
  for (int i = 0; i < n; i++)
    len += 1 + DHT_PK_LEN + (dht_rt_at(e->rt, i)->addr.family == DHT_AF_INET ? 6 : 18);
  if (need)
    *need = len;
  if (buflen < len)
    return DHT_ERR_NOBUF;
  size_t p = 0;
  memcpy(buf, snap_magic, sizeof snap_magic);
  p += sizeof snap_magic;
  buf[p++] = (uint8_t)(n >> 24);
  buf[p++] = (uint8_t)(n >> 16);
  buf[p++] = (uint8_t)(n >> 8);
  buf[p++] = (uint8_t)n;
  for (int i = 0; i < n; i++) {
    const dht_rt_contact *c = dht_rt_at(e->rt, i);
    int w = dht_addr_to_wire(&c->addr, buf + p + 1 + DHT_PK_LEN);
    buf[p] = (uint8_t)w;
    memcpy(buf + p + 1, c->pk, DHT_PK_LEN);
    p += 1 + DHT_PK_LEN + (size_t)w;
  }
  crypto_generichash(buf + p, SNAP_SUM, buf, p, NULL, 0);
  return (dht_ssize)(p + SNAP_SUM);
}

int dht_load_table(dht *e, const uint8_t *buf, size_t len, dht_ts now) {
  size_t hdr = sizeof snap_magic + 4;
  if (len < hdr + SNAP_SUM || memcmp(buf, snap_magic, sizeof snap_magic) != 0)
    return DHT_ERR_PROTO;
  uint8_t sum[SNAP_SUM];
  crypto_generichash(sum, SNAP_SUM, buf, len - SNAP_SUM, NULL, 0);
  if (memcmp(sum, buf + len - SNAP_SUM, SNAP_SUM) != 0)
    return DHT_ERR_PROTO;
  uint32_t n = (uint32_t)buf[8] << 24 | (uint32_t)buf[9] << 16 | (uint32_t)buf[10] << 8 | buf[11];
  /* validate the whole snapshot before taking anything from it */
  size_t p = hdr, end = len - SNAP_SUM;
  for (uint32_t i = 0; i < n; i++) {
    dht_addr a;
    if (end - p < 1 || end - p - 1 < DHT_PK_LEN + (size_t)buf[p] ||
        dht_addr_from_wire(&a, buf + p + 1 + DHT_PK_LEN, buf[p]) != 0)
      return DHT_ERR_PROTO;
    p += 1 + DHT_PK_LEN + buf[p];
  }
  if (p != end)
    return DHT_ERR_PROTO;
  int taken = 0;
  for (p = hdr; p < end; p += 1 + DHT_PK_LEN + buf[p]) {
    dht_addr a;
    dht_addr_from_wire(&a, buf + p + 1 + DHT_PK_LEN, buf[p]);
    int rv = dht_rt_update(e->rt, buf + p + 1, &a, false, -1, now, NULL);
    if (rv == DHT_ERR_NOMEM)
      return rv;
    /* Our previous run talked to these, and the NAT may still hold those
     * flows for minutes: count them as sent to, or a dial-back through one
     * would prove a way in that only they have (seen in the simulator:
     * port-restricted hosts that rejoined within their box's timeout
     * became servers). */
    dests_add(e, &a, now);
    if (rv == DHT_RT_ADDED || rv == DHT_RT_UPDATED)
      taken++;
  }
  return taken;
}

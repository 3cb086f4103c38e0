/*
 * sim_msg.c - the messaging workload of roost-sim: every host runs the real
 * mailbox service (store/, memory backend) next to its engine, and friend
 * pairs send each other messages while the recipient is away.
 *
 * The workload (all choices from the seed, stream 0x3005):
 *   - msg_pairs pairs of distinct hosts (sender, recipient), and when
 *     msg_hosts > 0 a pool of that many further hosts that stay online and
 *     act as friend hosts, one per recipient (round-robin over the pool);
 *   - each recipient goes away at a time uniform in the msg_start_window
 *     after the warm-up, for a time uniform in [msg_offline_min,
 *     msg_offline_max] (a warm stop: it keeps its state), then comes back;
 *   - its sender sends msg_count messages at times uniform in that absence.
 *
 * What the driver of a real node keeps durable is kept here across a host's
 * restarts: its friends (and the fetched epoch), its friend hosts, the hosts
 * it hosts, and the messages it has not seen stored yet (re-sent with the
 * same message ID 10 s after it comes back, as roostd's durable queue would).
 * A host that vanishes (cold restart) loses what it stored for others; a
 * warm restart keeps it: the memory backend outlives the service, wrapped in
 * a backend whose close() does nothing.
 *
 * Churn: a scripted absence ends the host's churn chain (its pending churn
 * events carry an older generation and are ignored) and the return starts a
 * new one; friend hosts never leave.
 *
 * Delivery is the first STORE_EV_MESSAGE for the message ID at the
 * recipient; later ones are counted as duplicates.
 *
 * It plugs into the run as a sim_workload_ops table (sim_msg_workload) and
 * reaches the run's hosts and event queue only through the sim_run_ops it is
 * given (sim.h).  The run calls nothing of it after start has left the state
 * NULL (messaging off), so the NULL checks in the operations are defensive.
 * Its events carry (kind << 28 | index) as their arg.
 */
#include <stdlib.h>
#include <string.h>

#include "sim.h"
#include "store.h"

#define UNIX0 1780000000000LL /* the virtual clock's 0 in unix ms: mid-2026 */
#define RESEND_DELAY_MS 10000 /* after a sender comes back (its bootstrap first) */
#define HOST_QUOTA (1 << 20)  /* bytes a friend host grants */

enum role { R_NONE = 0, R_SENDER, R_RECIP, R_FHOST };
enum act { K_OFF = 1, K_BACK, K_SEND, K_RESEND };
#define ACT(k, i) ((uint32_t)(k) << 28 | (uint32_t)(i))

typedef struct mhost {
  store_svc *svc;
  dht *e;               /* its engine, while up */
  store_backend *inner; /* the memory backend, kept over warm restarts */
  uint8_t role;
  bool away;
  int pair;
  uint32_t gen; /* churn generation */
  uint32_t fetched_epoch;
  dht_ts resend_at; /* the K_RESEND of this incarnation */
} mhost;

typedef struct mpair {
  int snd, rcv, fh;
  int first; /* index of its first message */
} mpair;

typedef struct sim_msg {
  const sim_config *c;
  sim_run_ops run; /* the run's hosts and event queue */
  sim_result *res;
  mhost *h;
  int nh;
  mpair *p;
  int np;
  store_msg *body; /* per message */
  store_settings set;
} sim_msg;

/* The run's services, named for what they do here. */
static void schedule(const sim_msg *m, dht_ts at, int host, uint32_t arg) {
  m->run.schedule(m->run.ctx, at, host, arg);
}

static const dht_identity *identity(const sim_msg *m, int host) {
  return m->run.identity(m->run.ctx, host);
}

/* ---- a backend that survives the service ------------------------------- */

static int64_t w_put(void *ctx, const store_rec *r) {
  store_backend *b = ctx;
  return b->put(b->ctx, r);
}
static int w_get(void *ctx, const uint8_t mbox[STORE_MBOX_LEN], const uint8_t hash[STORE_HASH_LEN],
                 store_rec *out) {
  store_backend *b = ctx;
  return b->get(b->ctx, mbox, hash, out);
}
static int64_t w_del(void *ctx, const uint8_t mbox[STORE_MBOX_LEN],
                     const uint8_t hash[STORE_HASH_LEN]) {
  store_backend *b = ctx;
  return b->del(b->ctx, mbox, hash);
}
static int w_scan_mbox(void *ctx, const uint8_t mbox[STORE_MBOX_LEN],
                       const uint8_t after[STORE_HASH_LEN], store_rec *out, int max) {
  store_backend *b = ctx;
  return b->scan_mbox(b->ctx, mbox, after, out, max);
}
static int w_scan_mboxes(void *ctx, const uint8_t after[STORE_MBOX_LEN],
                         uint8_t (*ids)[STORE_MBOX_LEN], uint8_t *hosted, int max) {
  store_backend *b = ctx;
  return b->scan_mboxes(b->ctx, after, ids, hosted, max);
}
static int w_usage(void *ctx, const uint8_t mbox[STORE_MBOX_LEN], store_usage *out) {
  store_backend *b = ctx;
  return b->usage(b->ctx, mbox, out);
}
static int w_scan_expired(void *ctx, int64_t now_s, store_rec *out, int max) {
  store_backend *b = ctx;
  return b->scan_expired(b->ctx, now_s, out, max);
}
static int64_t w_durable(void *ctx) {
  store_backend *b = ctx;
  return b->durable(b->ctx);
}
static void w_close(void *ctx) {
  (void)ctx; /* the inner backend lives on until the host vanishes */
}

static void inner_free(mhost *h) {
  if (h->inner) {
    h->inner->close(h->inner->ctx);
    free(h->inner);
    h->inner = NULL;
  }
}

/* ---- setup --------------------------------------------------------------- */

static void msg_stop(void *st);

static int msg_start(void **out, const sim_config *c, const sim_run_ops *run, sim_result *res,
                     dht_ts work_start) {
  *out = NULL;
  if (c->msg_pairs <= 0)
    return 0;
  sim_msg *m = calloc(1, sizeof *m);
  if (!m)
    return -1;
  m->c = c;
  m->run = *run;
  m->res = res;
  m->nh = c->nodes;
  m->np = c->msg_pairs;
  size_t nmsg = (size_t)c->msg_pairs * (size_t)c->msg_count;
  m->h = calloc((size_t)m->nh, sizeof *m->h);
  m->p = calloc((size_t)m->np, sizeof *m->p);
  m->body = calloc(nmsg, sizeof *m->body);
  res->msgs = calloc(nmsg, sizeof *res->msgs);
  int *perm = malloc((size_t)m->nh * sizeof *perm);
  if (!m->h || !m->p || !m->body || !res->msgs || !perm) {
    free(perm);
    msg_stop(m);
    return -1;
  }
  res->nmsgs = nmsg;
  store_settings_default(&m->set);
  m->set.poll_interval_ms = c->msg_poll_ms;

  sim_rng r;
  sim_rng_init(&r, c->seed, 0x3005);
  for (int i = 0; i < m->nh; i++)
    perm[i] = i;
  for (int i = m->nh - 1; i > 0; i--) {
    int j = (int)sim_rng_below(&r, (uint64_t)i + 1), t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  int np = m->np;
  for (int k = 0; k < c->msg_hosts; k++)
    m->h[perm[2 * np + k]].role = R_FHOST;
  for (int k = 0; k < np; k++) {
    mpair *p = &m->p[k];
    p->snd = perm[k];
    p->rcv = perm[np + k];
    p->fh = c->msg_hosts > 0 ? perm[2 * np + k % c->msg_hosts] : -1;
    p->first = k * c->msg_count;
    m->h[p->snd].role = R_SENDER;
    m->h[p->snd].pair = k;
    m->h[p->rcv].role = R_RECIP;
    m->h[p->rcv].pair = k;
    dht_ts off = work_start + (dht_ts)sim_rng_below(&r, (uint64_t)c->msg_start_window + 1);
    dht_ts dur = c->msg_offline_min +
                 (dht_ts)sim_rng_below(&r, (uint64_t)(c->msg_offline_max - c->msg_offline_min) + 1);
    schedule(m, off, p->rcv, ACT(K_OFF, k));
    schedule(m, off + dur, p->rcv, ACT(K_BACK, k));
    for (int j = 0; j < c->msg_count; j++) {
      int i = p->first + j;
      sim_msg_rec *mr = &res->msgs[i];
      mr->sender = p->snd;
      mr->recipient = p->rcv;
      mr->host = p->fh;
      mr->offline_ms = off;
      mr->back_ms = off + dur;
      mr->due_ms = off + 1 + (dht_ts)sim_rng_below(&r, (uint64_t)dur - 1);
      mr->sent_ms = mr->stored_ms = mr->delivered_ms = -1;
      store_msg *b = &m->body[i];
      sim_rng_bytes(&r, b->id, sizeof b->id);
      b->kind = STORE_KIND_TEXT;
      b->len =
          (uint16_t)snprintf((char *)b->body, sizeof b->body, "sim message %d of pair %d", j, k);
      schedule(m, mr->due_ms, p->snd, ACT(K_SEND, i));
    }
  }
  free(perm);
  *out = m;
  return 0;
}

static void add_stats(sim_msg *m, const store_svc *svc) {
  store_stats st;
  store_get_stats(svc, &st);
  m->res->msg_deposits_in += st.deposits_in;
  m->res->msg_recon_pushed += st.recon_items_pushed;
  m->res->msg_recon_pulled += st.recon_items_pulled;
}

static void msg_stop(void *st) {
  sim_msg *m = st;
  if (!m)
    return;
  for (int i = 0; m->h && i < m->nh; i++) {
    if (m->h[i].svc) {
      add_stats(m, m->h[i].svc);
      store_svc_del(m->h[i].svc);
    }
    inner_free(&m->h[i]);
  }
  free(m->h);
  free(m->p);
  free(m->body);
  free(m);
}

/* ---- hosts coming and going ------------------------------------------------ */

static store_host_ref host_ref(const sim_msg *m, int i) {
  store_host_ref hr;
  memset(&hr, 0, sizeof hr);
  memcpy(hr.pk, identity(m, i)->pk, DHT_PK_LEN);
  hr.addr = m->run.address(m->run.ctx, i);
  return hr;
}

static void do_send(sim_msg *m, int i, dht_ts now) {
  sim_msg_rec *mr = &m->res->msgs[i];
  mhost *h = &m->h[mr->sender];
  if (!h->svc)
    return; /* sent when the sender comes back */
  store_msg *b = &m->body[i];
  if (mr->sent_ms < 0) {
    mr->sent_ms = now;
    b->sent_unix_ms = UNIX0 + now;
  }
  mr->sends++;
  store_send(h->svc, identity(m, mr->recipient)->pk, b, now);
}

static int msg_host_up(void *st, int i, dht *e, const dht_identity *id, const dht_callbacks *cb,
                       dht_ts now) {
  sim_msg *m = st;
  if (!m)
    return 0;
  if (i >= m->nh) { /* a host the script added: no role */
    mhost *nh = realloc(m->h, (size_t)(i + 1) * sizeof *nh);
    if (!nh)
      return -1;
    memset(nh + m->nh, 0, (size_t)(i + 1 - m->nh) * sizeof *nh);
    m->h = nh;
    m->nh = i + 1;
  }
  mhost *h = &m->h[i];
  dht_set_clock_offset(e, UNIX0);
  if (!h->inner) {
    h->inner = malloc(sizeof *h->inner);
    if (!h->inner || store_mem_new(h->inner, NULL) != 0) {
      free(h->inner);
      h->inner = NULL;
      return -1;
    }
  }
  store_backend w = {h->inner,      w_put,   w_get,          w_del,     w_scan_mbox,
                     w_scan_mboxes, w_usage, w_scan_expired, w_durable, w_close};
  if (store_svc_new(&h->svc, e, id, &w, &m->set, cb, NULL, now) != 0)
    return -1;
  h->e = e;
  store_friend f;
  memset(&f, 0, sizeof f);
  if (h->role == R_SENDER) {
    const mpair *p = &m->p[h->pair];
    memcpy(f.pk, identity(m, p->rcv)->pk, DHT_PK_LEN);
    if (p->fh >= 0) {
      f.nhosts = 1;
      f.hosts[0] = host_ref(m, p->fh);
    }
    store_friend_set(h->svc, &f, now);
    /* messages due and not yet stored: re-sent once the engine has joined */
    for (int j = 0; j < m->c->msg_count; j++) {
      const sim_msg_rec *mr = &m->res->msgs[p->first + j];
      if (mr->due_ms <= now && mr->stored_ms < 0 && mr->delivered_ms < 0) {
        h->resend_at = now + RESEND_DELAY_MS;
        schedule(m, h->resend_at, i, ACT(K_RESEND, h->pair));
        break;
      }
    }
  } else if (h->role == R_RECIP) {
    const mpair *p = &m->p[h->pair];
    memcpy(f.pk, identity(m, p->snd)->pk, DHT_PK_LEN);
    f.fetched_epoch = h->fetched_epoch;
    store_friend_set(h->svc, &f, now);
    if (p->fh >= 0) {
      store_host_ref hr = host_ref(m, p->fh);
      store_my_hosts_set(h->svc, &hr, 1, now);
    }
  } else if (h->role == R_FHOST) {
    for (int k = 0; k < m->np; k++)
      if (m->p[k].fh == i)
        store_host_set(h->svc, identity(m, m->p[k].rcv)->pk, HOST_QUOTA);
  }
  return 0;
}

static void msg_host_down(void *st, int i, bool keep) {
  sim_msg *m = st;
  if (!m || i >= m->nh)
    return;
  mhost *h = &m->h[i];
  if (h->svc) {
    add_stats(m, h->svc);
    store_svc_del(h->svc);
    h->svc = NULL;
    h->e = NULL;
  }
  if (!keep)
    inner_free(h);
}

/* ---- events -------------------------------------------------------------- */

/* The message of pair k with this ID, or -1. */
static int msg_of(const sim_msg *m, int k, const uint8_t id[STORE_MSGID_LEN]) {
  for (int j = 0; j < m->c->msg_count; j++)
    if (!memcmp(m->body[m->p[k].first + j].id, id, STORE_MSGID_LEN))
      return m->p[k].first + j;
  return -1;
}

/* Whether the recipient's friend host holds message i as an item now. */
static bool host_holds(const sim_msg *m, int i, dht_ts now) {
  const sim_msg_rec *mr = &m->res->msgs[i];
  const mhost *fh = &m->h[mr->host];
  if (!fh->inner)
    return false;
  uint8_t pair[STORE_KEY_LEN];
  const dht_identity *snd = identity(m, mr->sender);
  const uint8_t *rpk = identity(m, mr->recipient)->pk;
  if (store_pair_secret(pair, snd, rpk) != 0)
    return false;
  uint32_t e0 = store_epoch_of(UNIX0 + mr->sent_ms, m->set.epoch_ms);
  uint32_t e1 = store_epoch_of(UNIX0 + now, m->set.epoch_ms);
  static store_rec recs[16];
  bool held = false;
  for (uint32_t ep = e0; ep <= e1 && !held; ep++) {
    store_mbox_keys k;
    store_mbox_derive(&k, pair, snd->pk, rpk, ep);
    int n = fh->inner->scan_mbox(fh->inner->ctx, k.id, NULL, recs, 16);
    for (int r = 0; r < n && !held; r++) {
      store_msg opened;
      if (recs[r].kind == STORE_REC_ITEM && store_open(&opened, &k, recs[r].data, recs[r].len) == 0)
        held = !memcmp(opened.id, m->body[i].id, STORE_MSGID_LEN);
    }
  }
  return held;
}

static void msg_drain(void *st, int i, dht_ts now) {
  sim_msg *m = st;
  if (!m || i >= m->nh || !m->h[i].svc)
    return;
  mhost *h = &m->h[i];
  store_event ev;
  while (h->svc && store_poll_event(h->svc, &ev) == 0) {
    switch (ev.type) {
    case STORE_EV_MESSAGE: {
      if (h->role != R_RECIP)
        break;
      int k = msg_of(m, h->pair, ev.u.message.msg.id);
      if (k < 0)
        break;
      sim_msg_rec *mr = &m->res->msgs[k];
      if (mr->delivered_ms >= 0) {
        mr->dups++;
        break;
      }
      mr->delivered_ms = now;
      dht_path_info pi;
      if (ev.u.message.direct && h->e && dht_path_get(h->e, ev.u.message.friend_pk, &pi) == 0)
        mr->path = pi.method == DHT_PATH_RELAYED ? SIM_PATH_RELAYED : SIM_PATH_PUNCHED;
      else if (ev.u.message.direct)
        mr->path = SIM_PATH_DIRECT;
      else if (mr->host >= 0 && host_holds(m, k, now))
        mr->path = SIM_PATH_HOST;
      else
        mr->path = SIM_PATH_MAILBOX;
      break;
    }
    case STORE_EV_STATE: {
      if (h->role != R_SENDER || ev.u.state.state < STORE_ST_STORED)
        break;
      int k = msg_of(m, h->pair, ev.u.state.msg_id);
      if (k >= 0 && m->res->msgs[k].stored_ms < 0)
        m->res->msgs[k].stored_ms = now;
      break;
    }
    case STORE_EV_LOSS:
      if (h->role == R_RECIP) {
        m->res->msg_loss_notices++;
        m->res->msg_loss_items += (uint64_t)ev.u.loss.items;
      }
      break;
    case STORE_EV_PATH: /* a friend behind a NAT: nat/ punches, path_ready answers */
      if (!m->run.connect || m->run.connect(m->run.ctx, i, ev.u.path.friend_pk, ev.u.path.intro,
                                            ev.u.path.nintro) != 0)
        store_path_ready(h->svc, ev.u.path.friend_pk, false, now);
      break;
    case STORE_EV_FETCHED:
      if (h->role == R_RECIP) {
        m->res->msg_fetch_rounds++;
        if (ev.status == 0 && ev.u.fetched.epoch > h->fetched_epoch)
          h->fetched_epoch = ev.u.fetched.epoch;
      }
      break;
    }
  }
}

static void msg_event(void *st, int host, uint32_t arg, dht_ts now) {
  sim_msg *m = st;
  if (!m)
    return;
  int kind = (int)(arg >> 28), idx = (int)(arg & 0x0fffffffu);
  switch (kind) {
  case K_OFF: {
    mhost *h = &m->h[m->p[idx].rcv];
    h->away = true;
    h->gen++; /* its churn chain ends here */
    if (m->run.is_up(m->run.ctx, m->p[idx].rcv))
      m->run.leave(m->run.ctx, m->p[idx].rcv, true);
    break;
  }
  case K_BACK: {
    mhost *h = &m->h[m->p[idx].rcv];
    h->away = false;
    m->run.schedule_join(m->run.ctx, now, m->p[idx].rcv, h->gen); /* and a new chain starts */
    break;
  }
  case K_SEND:
    do_send(m, idx, now);
    m->run.drive(m->run.ctx, host);
    break;
  case K_RESEND: {
    const mpair *p = &m->p[idx];
    if (!m->h[p->snd].svc || m->h[p->snd].resend_at != now)
      break; /* down again, or a later incarnation has its own */
    for (int j = 0; j < m->c->msg_count; j++) {
      const sim_msg_rec *mr = &m->res->msgs[p->first + j];
      if (mr->due_ms <= now && mr->stored_ms < 0 && mr->delivered_ms < 0)
        do_send(m, p->first + j, now);
    }
    m->run.drive(m->run.ctx, host);
    break;
  }
  }
}

/* ---- churn ----------------------------------------------------------------- */

static uint32_t msg_churn_gen(const void *st, int host) {
  const sim_msg *m = st;
  return m && host < m->nh ? m->h[host].gen : 0;
}

static bool msg_join_ok(const void *st, int host, uint32_t gen) {
  const sim_msg *m = st;
  if (!m || host >= m->nh)
    return true;
  return !m->h[host].away && gen == m->h[host].gen;
}

static bool msg_leave_ok(const void *st, int host, uint32_t gen) {
  const sim_msg *m = st;
  if (!m || host >= m->nh)
    return true;
  return m->h[host].role != R_FHOST && gen == m->h[host].gen;
}

/* ---- the table ------------------------------------------------------------- */

static void msg_path_ready(void *st, int i, const uint8_t *pk, bool ok, dht_ts now) {
  sim_msg *m = st;
  if (m && i < m->nh && m->h[i].svc)
    store_path_ready(m->h[i].svc, pk, ok, now);
}

static const sim_workload_ops msg_ops = {
    .start = msg_start,
    .stop = msg_stop,
    .host_up = msg_host_up,
    .host_down = msg_host_down,
    .drain = msg_drain,
    .event = msg_event,
    .path_ready = msg_path_ready,
    .churn_gen = msg_churn_gen,
    .join_ok = msg_join_ok,
    .leave_ok = msg_leave_ok,
};

const sim_workload_ops *sim_msg_workload(void) {
  return &msg_ops;
}

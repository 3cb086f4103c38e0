/*
 * gen_corpus_store.c - writes the seed-* files of tests/fuzz/corpus_store/
 * and runs each one, printing what it reached (store_get_stats).
 *
 * It includes fuzz_store.c, so identities, clock, op codes and layouts
 * cannot drift.  Built by hand (see tests/fuzz/README.md):
 *
 *   cc -std=c11 -D_POSIX_C_SOURCE=200809L -Idht -Istore -Itests/support \
 *      tests/fuzz/gen_corpus_store.c tests/fuzz/fuzz_common.c dht/*.c \
 *      $(ls store/store_*.c | grep -v sqlite) tests/support/testutil.c \
 *      $(pkg-config --cflags --libs msgpack libsodium) -o /tmp/gen_corpus_store
 *   rm -f tests/fuzz/corpus_store/seed-* && /tmp/gen_corpus_store tests/fuzz/corpus_store
 */
#include <stdio.h>

#include "fuzz_store.c"

static uint8_t g_buf[1 << 16];
static size_t g_len;
static const char *g_dir;

static void op(int code, const void *p, size_t n) {
  if (g_len + 3 + n > sizeof g_buf)
    abort();
  g_buf[g_len++] = (uint8_t)code;
  g_buf[g_len++] = (uint8_t)(n >> 8);
  g_buf[g_len++] = (uint8_t)n;
  memcpy(g_buf + g_len, p, n);
  g_len += n;
}

#define OP(code, ...)                                                                              \
  do {                                                                                             \
    const uint8_t b_[] = {__VA_ARGS__};                                                            \
    op(code, b_, sizeof b_);                                                                       \
  } while (0)

static void config(uint8_t flags) {
  OP(FS_OP_CONFIG, flags);
}

/* A sealed deposit from peer `peer` into mailbox from -> to (identities),
 * epoch delta ep, with text t; extra sel bits in x. */
static void deposit(int peer, int from, int to, int8_t ep, int8_t dt, uint8_t x, const char *t) {
  uint8_t b[4 + 256];
  size_t tl = strlen(t);
  b[0] = (uint8_t)(peer | 0x04 | x);
  b[1] = (uint8_t)(from | to << 3);
  b[2] = (uint8_t)ep;
  b[3] = (uint8_t)dt;
  memcpy(b + 4, t, tl);
  op(FS_OP_DEPOSIT, b, 4 + tl);
}

static void time_ms2(uint32_t ms, uint8_t flags) {
  int shift = 0;
  while (ms > 0xffff) {
    ms >>= 2;
    shift++;
  }
  OP(FS_OP_TIME, (uint8_t)(ms >> 8), (uint8_t)ms, (uint8_t)(shift | flags));
}

static void time_ms(uint32_t ms) {
  time_ms2(ms, 0);
}

/* REPLY from peer to its newest unanswered request of type, variant v. */
static void reply(int peer, uint8_t type, uint8_t status, uint8_t v) {
  OP(FS_OP_REPLY, (uint8_t)peer, (uint8_t)(0x80 | (type & 0x0f)), status, v);
}

static void reply_all(uint8_t type, uint8_t v) {
  for (int p = 0; p < FS_PEERS; p++)
    reply(p, type, 0, v);
}

/* A raw msgpack body from peer sel. */
static void body(uint8_t sel, const uint8_t *b, size_t n) {
  uint8_t t[DHT_MAX_BODY + 1];
  t[0] = sel;
  memcpy(t + 1, b, n);
  op(FS_OP_BODY, t, n + 1);
}

static void seed(const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", g_dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(g_buf, 1, g_len, f) != g_len || fclose(f) != 0) {
    fprintf(stderr, "cannot write %s\n", path);
    exit(1);
  }
  store_stats st;
  int ev[8];
  fs_run(g_buf, g_len, &st, ev);
  printf("%-28s %4zu B  dep in/stored/refused %llu/%llu/%llu rcpt out/in %llu/%llu "
         "fetch in/ref %llu/%llu del in/ref %llu/%llu served %llu recon %llu/%llu/%llu "
         "direct %llu fetched %llu msgs %llu malformed %llu unknown-txid %llu expired %llu "
         "items %lld ev state/msg/loss/fetched %d/%d/%d/%d\n",
         name, g_len, (unsigned long long)st.deposits_in, (unsigned long long)st.deposits_stored,
         (unsigned long long)st.deposits_refused, (unsigned long long)st.receipts_out,
         (unsigned long long)st.receipts_in, (unsigned long long)st.fetches_in,
         (unsigned long long)st.fetches_refused, (unsigned long long)st.deletes_in,
         (unsigned long long)st.deletes_refused, (unsigned long long)st.items_served,
         (unsigned long long)st.recon_rounds, (unsigned long long)st.recon_equal,
         (unsigned long long)st.recon_items_pushed, (unsigned long long)st.sent_direct,
         (unsigned long long)st.fetched_items, (unsigned long long)st.delivered_msgs,
         (unsigned long long)st.drop_malformed, (unsigned long long)st.drop_unknown_txid,
         (unsigned long long)st.expired, (long long)st.stored_items, ev[1], ev[2], ev[3], ev[4]);
  g_len = 0;
}

/* A RECON (fingerprint 01 00 .., count 3) or a RECON_L (every sub-range, no
 * entries) about mbox, txid 4242, through the codec. */
static size_t w_recon(uint8_t *b, const uint8_t mbox[32], bool list) {
  uint8_t fp[16] = {1};
  store_wire_msg m = {.type = list ? STORE_T_RECON_L : STORE_T_RECON, .txid = 4242};
  if (list) {
    m.u.recon_l.mbox = mbox;
    m.u.recon_l.mask = 0xffff;
  } else {
    m.u.recon.mbox = mbox;
    m.u.recon.fp = fp;
    m.u.recon.count = 3;
  }
  dht_ssize n = store_wire_encode(b, DHT_MAX_BODY, &m);
  if (n < 0)
    abort();
  return (size_t)n;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: gen_corpus_store DIR\n");
    return 2;
  }
  g_dir = argv[1];
  const fs_keys *k = fs_setup();
  (void)k;

  /* 0x30 DEPOSIT, valid and sealed: stored, receipt */
  deposit(0, 1, 2, 0, 0, 0, "a deposit for peer 1");
  seed("seed-deposit");

  /* 0x30 with the hosted and push flags, a raw item, a bad signature, a
   * time outside the window */
  deposit(1, 3, 4, 1, 0, 0x20, "pushed by a replica");
  deposit(1, 3, 4, 0, 0, 0x40, "hosted flag, nobody hosted");
  deposit(2, 3, 4, 0, 0, 0x10, "forged signature");
  deposit(2, 3, 4, 0, 100, 0, "from the future");
  {
    uint8_t b[4 + 200];
    memset(b, 0x33, sizeof b);
    b[0] = 3;
    b[1] = 1 | 2 << 3;
    b[2] = 0;
    b[3] = 0;
    op(FS_OP_DEPOSIT, b, 4 + 168); /* a raw 168-byte item: stored unopened */
  }
  seed("seed-deposit-variants");

  /* 0x3d DIRECT to us from a friend: a MESSAGE event, then not a friend */
  OP(FS_OP_CMD, FS_CMD_FRIEND, 0, 0, 0);
  deposit(0, 1, 0, 0, 0, 0x08, "hello directly");
  OP(FS_OP_CMD, FS_CMD_UNFRIEND, 0);
  deposit(0, 1, 0, 0, 0, 0x08, "refused: not a friend");
  seed("seed-direct");

  /* 0x32 FETCH and 0x34 GETITEM of a known item (the FETCH grants GETITEM) */
  deposit(0, 1, 2, 0, 0, 0, "fetch me");
  OP(FS_OP_AUTH, 1, FS_AUTH_GETITEM, 0, 0, 0, 0); /* no grant yet: refused */
  OP(FS_OP_AUTH, 0x21, FS_AUTH_FETCH, 0, 0, 0, 0);
  OP(FS_OP_AUTH, 0x21, FS_AUTH_GETITEM, 0, 0, 0, 0);
  seed("seed-fetch-getitem");

  /* FETCH refusals: another requester, another storage node, stale, forged */
  deposit(0, 1, 2, 0, 0, 0, "fetch me not");
  OP(FS_OP_AUTH, 0x25, FS_AUTH_FETCH, 0, 0, 0, 0);
  OP(FS_OP_AUTH, 0x29, FS_AUTH_FETCH, 0, 0, 0, 0);
  OP(FS_OP_AUTH, 0x21, FS_AUTH_FETCH, 0, 0, 0x80, 0);
  OP(FS_OP_AUTH, 0x31, FS_AUTH_FETCH, 0, 0, 0, 0);
  seed("seed-fetch-refused");

  /* 0x36 DELETE: a tombstone, then the same item deposited again stays out */
  deposit(0, 1, 2, 0, 0, 0, "delete me");
  OP(FS_OP_AUTH, 0x22, FS_AUTH_DELETE, 0, 0, 0, 0, 1, 0);
  OP(FS_OP_AUTH, 0x22, FS_AUTH_FETCH, 0, 0, 0, 0);
  seed("seed-delete");

  /* 0x3c TOMB with a valid proof */
  deposit(0, 1, 2, 0, 0, 0, "tombed");
  OP(FS_OP_AUTH, 0x2b, FS_AUTH_TOMB, 0, 0, 0, 0, 1, 0);
  OP(FS_OP_AUTH, 0x33, FS_AUTH_TOMB, 0, 0, 0, 0, 1, 0);
  seed("seed-tomb");

  /* 0x3f REGISTER by a hosted friend, then a hosted deposit in one of its
   * registered mailboxes (2 -> 1, next epoch) */
  OP(FS_OP_CMD, FS_CMD_HOST, 0, 0x10, 0);
  OP(FS_OP_AUTH, 0x00, FS_AUTH_REGISTER, 0, 0, 0, 0, 3, 1, 2, 3);
  deposit(2, 2, 1, 1, 0, 0x40, "kept for a hosted friend");
  OP(FS_OP_AUTH, 0x01, FS_AUTH_REGISTER, 0, 0, 0, 0, 2, 1, 2); /* not hosted */
  seed("seed-register-hosted");

  /* 0x38 RECON and 0x3a RECON_L from a peer about a mailbox we hold: a
   * RECON_R, then pushes and a RECON_LR */
  {
    store_mbox_keys mk;
    fs h0;
    memset(&h0, 0, sizeof h0);
    h0.k = k;
    h0.ss.epoch_ms = STORE_EPOCH_MS_DEFAULT;
    /* the mailbox 1 -> 2 of the epoch at the start (no clock advance) */
    fs_mbox(&h0, &mk, 1, 2, store_epoch_of(FS_UNIX_MS, STORE_EPOCH_MS_DEFAULT));
    uint8_t b[DHT_MAX_BODY];
    deposit(0, 1, 2, 0, 0, 0, "reconciled");
    size_t n = w_recon(b, mk.id, false);
    body(1, b, n);
    n = w_recon(b, mk.id, true);
    body(1, b, n);
    seed("seed-recon-responder");
  }

  /* 0x31 RECEIPT: we send to friend peer 1 (no record: deposits at the
   * replicas), every peer answers with a signed receipt */
  OP(FS_OP_CMD, FS_CMD_FRIEND, 1, 0, 0);
  OP(FS_OP_CMD, FS_CMD_SEND, 1, 'h', 'i');
  reply_all(STORE_T_DEPOSIT, 0);
  seed("seed-send-receipts");

  /* receipts refused (mailbox full), unsigned, for another hash */
  OP(FS_OP_CMD, FS_CMD_FRIEND, 1, 0, 0);
  OP(FS_OP_CMD, FS_CMD_SEND, 1, 'x');
  reply(0, STORE_T_DEPOSIT, 1, 1);
  reply(1, STORE_T_DEPOSIT, 0, 4);
  reply(2, STORE_T_DEPOSIT, 0, 8);
  time_ms(30000);
  seed("seed-send-refused");

  /* 0x3d out, 0x3e DIRECT_ACK in: the friend's record has an address */
  config(FS_CFG_RECORDS);
  OP(FS_OP_CMD, FS_CMD_FRIEND, 1, 0, 0);
  OP(FS_OP_CMD, FS_CMD_SEND, 1, 'y', 'o');
  reply(1, STORE_T_DIRECT, 0, 0);
  OP(FS_OP_CMD, FS_CMD_READ, 1, 1);
  seed("seed-direct-ack");

  /* 0x32 out, 0x33 LIST, 0x34 out, 0x35 ITEM, 0x36 out, 0x37 ACK in: peer 1
   * left a message for us; we fetch it from the replicas */
  config(FS_CFG_NOPOLL);
  OP(FS_OP_CMD, FS_CMD_FRIEND, 1, 0, 0, 0);
  deposit(1, 2, 0, 0, 0, 0, "waiting for you");
  OP(FS_OP_CMD, FS_CMD_FETCH);
  for (int r = 0; r < 3; r++)
    reply_all(STORE_T_FETCH, 0);
  reply_all(STORE_T_GETITEM, 0);
  reply_all(STORE_T_GETITEM, 0);
  reply_all(STORE_T_DELETE, 0);
  reply_all(STORE_T_DEPOSIT, 0); /* the delivered-receipt's deposits */
  seed("seed-fetch-round");

  /* a fetch round with evicted entries (loss), bad items, more = true */
  config(FS_CFG_NOPOLL);
  OP(FS_OP_CMD, FS_CMD_FRIEND, 1, 0, 0, 0);
  deposit(1, 2, 0, 0, 0, 0, "lost");
  OP(FS_OP_CMD, FS_CMD_FETCH);
  OP(FS_OP_REPLY, 0, 0x82, 0, 0, STORE_REC_EVICTED);
  OP(FS_OP_REPLY, 1, 0x82, 0, 4);
  OP(FS_OP_REPLY, 2, 0x82, 7, 1);
  OP(FS_OP_REPLY, 3, 0x82, 0, 2, 1, 2, 3);
  reply_all(STORE_T_GETITEM, 2);
  time_ms(20000);
  seed("seed-fetch-loss");

  /* 0x38 out, 0x39 RECON_R in, 0x3a out, 0x3b RECON_LR in: we hold an item
   * and reconcile it with the peers (the timer fires within 10 min) */
  config(FS_CFG_NOPOLL);
  deposit(0, 1, 2, 0, 0, 0, "replicated");
  time_ms2(11 * 60000, 0x80);
  reply_all(STORE_T_RECON, 0);
  reply_all(STORE_T_RECON_L, 0);
  OP(FS_OP_REPLY, 0, 0x88, 10, 1); /* EMPTY: push everything */
  seed("seed-recon-initiator");

  /* quotas: a mailbox of 2 items refuses the third; the node refuses past
   * its capacity */
  config(FS_CFG_QUOTA);
  deposit(0, 1, 2, 0, 0, 0, "one");
  deposit(0, 1, 2, 0, 0, 0, "two");
  deposit(0, 1, 2, 0, 0, 0, "three: mailbox full");
  deposit(0, 3, 2, 0, 0, 0, "four: another mailbox");
  deposit(0, 4, 2, 0, 0, 0, "five: node full");
  seed("seed-quota");

  /* expiry: an item past its TTL leaves a notice that a FETCH lists */
  config(FS_CFG_SHORTTTL | FS_CFG_NOPOLL);
  deposit(0, 1, 2, 0, 0, 0, "expires unread");
  time_ms(15 * 60000);
  OP(FS_OP_AUTH, 0x21, FS_AUTH_FETCH, 0, 0, 0, 0);
  time_ms(3 * 86400000u);
  seed("seed-expiry");

  /* commands: hosts, my hosts (registers), cancel, tiny caps, one replica */
  config(FS_CFG_TINY | FS_CFG_ONEREP);
  OP(FS_OP_CMD, FS_CMD_FRIEND, 0x09, 0x02, 1);
  OP(FS_OP_CMD, FS_CMD_FRIEND, 0x02, 0, 0);
  OP(FS_OP_CMD, FS_CMD_FRIEND, 0x03, 0, 0); /* past max_friends */
  OP(FS_OP_CMD, FS_CMD_MYHOSTS, 2, 0x10);
  OP(FS_OP_CMD, FS_CMD_MYHOSTS, 5, 0); /* too many */
  OP(FS_OP_CMD, FS_CMD_SEND, 1, 'a');
  OP(FS_OP_CMD, FS_CMD_SEND, 2, 'b');
  OP(FS_OP_CMD, FS_CMD_SEND, 1, 'c'); /* past max_outgoing */
  OP(FS_OP_CMD, FS_CMD_CANCEL);
  OP(FS_OP_CMD, FS_CMD_HOST, 0x80, 0, 0);
  OP(FS_OP_CMD, FS_CMD_HOST, 2, 0, 0);
  OP(FS_OP_CMD, FS_CMD_DURABLE);
  time_ms(6000);
  reply_all(STORE_T_REGISTER, 0);
  time_ms(120000);
  seed("seed-commands");

  /* the clock runs for days with no input: polls, epochs, timers */
  OP(FS_OP_CMD, FS_CMD_FRIEND, 1, 0, 0, 3);
  time_ms(2 * 86400000u);
  seed("seed-days");

  /* malformed bodies of each kind */
  {
    static const uint8_t bad[][12] = {
        {0x93, 0x30, 0x01, 0x00},             /* DEPOSIT, wrong arity */
        {0x95, 0x31, 0x01, 0x00, 0xc0, 0xc0}, /* RECEIPT nobody asked for */
        {0x94, 0x34, 0x01, 0xc4, 0x00, 0xc4, 0x00},
        {0x93, 0x3e, 0x05, 0xc0},
        {0x94, 0x3f, 0x01, 0xc4, 0x01, 0x00, 0xc4, 0x00},
        {0x92, 0x50, 0x01}, /* not ours */
        {0xc1},
    };
    static const uint8_t lens[] = {4, 6, 7, 4, 8, 3, 1};
    for (size_t i = 0; i < sizeof lens; i++)
      body((uint8_t)(i & 3), bad[i], lens[i]);
    body(0x18, bad[1], lens[1]); /* a RECEIPT with no request outstanding */
    seed("seed-malformed");
  }
  return 0;
}

/*
 * store_svc.c - the mailbox service (placeholder while it is being written:
 * every command answers DHT_ERR_INVAL).
 */
#include <string.h>

#include "store.h"

void store_settings_default(store_settings *s) {
  memset(s, 0, sizeof *s);
  s->replicas = 5;
  s->stored_receipts = 3;
  s->epoch_ms = STORE_EPOCH_MS_DEFAULT;
  s->ttl_dht_s = 7 * 86400;
  s->ttl_hosted_s = 30 * 86400;
  s->mbox_quota_bytes = 64 * 1024;
  s->mbox_quota_items = 64;
  s->capacity_bytes = 64 * 1024 * 1024;
  s->time_window_s = 300;
  s->rpc_timeout_ms = 2000;
  s->rpc_tries = 3;
  s->direct_timeout_ms = 2000;
  s->retry_min_ms = 30000;
  s->retry_max_ms = 600000;
  s->poll_interval_ms = 300000;
  s->reconcile_interval_ms = 600000;
  s->max_friends = 1024;
  s->max_hosted = 64;
  s->max_outgoing = 1024;
  s->max_pending_rpcs = 1024;
  s->max_grants = 1024;
  s->max_events = 1024;
  s->max_fetch_epochs = 30;
}

int store_svc_new(store_svc **out, dht *e, const dht_identity *id, const store_backend *backend,
                  const store_settings *s, const dht_callbacks *cb, const dht_mem *mem,
                  dht_ts now) {
  (void)out, (void)e, (void)id, (void)backend, (void)s, (void)cb, (void)mem, (void)now;
  return DHT_ERR_INVAL;
}
void store_svc_del(store_svc *s) { (void)s; }
bool store_svc_on_dht_event(store_svc *s, const dht_event *ev, dht_ts now) {
  (void)s, (void)ev, (void)now;
  return false;
}
void store_svc_durable(store_svc *s, int64_t seq, dht_ts now) { (void)s, (void)seq, (void)now; }
int store_friend_set(store_svc *s, const store_friend *f, dht_ts now) {
  (void)s, (void)f, (void)now;
  return DHT_ERR_INVAL;
}
int store_friend_remove(store_svc *s, const uint8_t pk[static DHT_PK_LEN]) {
  (void)s, (void)pk;
  return DHT_ERR_INVAL;
}
int store_host_set(store_svc *s, const uint8_t pk[static DHT_PK_LEN], int64_t quota_bytes) {
  (void)s, (void)pk, (void)quota_bytes;
  return DHT_ERR_INVAL;
}
int store_my_hosts_set(store_svc *s, const store_host_ref *hosts, int n, dht_ts now) {
  (void)s, (void)hosts, (void)n, (void)now;
  return DHT_ERR_INVAL;
}
int64_t store_send(store_svc *s, const uint8_t friend_pk[static DHT_PK_LEN], const store_msg *msg,
                   dht_ts now) {
  (void)s, (void)friend_pk, (void)msg, (void)now;
  return DHT_ERR_INVAL;
}
int store_send_cancel(store_svc *s, const uint8_t msg_id[static STORE_MSGID_LEN]) {
  (void)s, (void)msg_id;
  return DHT_ERR_INVAL;
}
int64_t store_fetch(store_svc *s, dht_ts now) {
  (void)s, (void)now;
  return DHT_ERR_INVAL;
}
int store_mark_read(store_svc *s, const uint8_t friend_pk[static DHT_PK_LEN],
                    const uint8_t (*ids)[STORE_MSGID_LEN], int n, dht_ts now) {
  (void)s, (void)friend_pk, (void)ids, (void)n, (void)now;
  return DHT_ERR_INVAL;
}
int64_t store_request_send(store_svc *s, const uint8_t to_pk[static DHT_PK_LEN],
                           const uint8_t *note, size_t len, dht_ts now) {
  (void)s, (void)to_pk, (void)note, (void)len, (void)now;
  return DHT_ERR_INVAL;
}
int store_poll_event(store_svc *s, store_event *ev) {
  (void)s, (void)ev;
  return DHT_ERR_NOTFOUND;
}
void store_get_stats(const store_svc *s, store_stats *st) {
  (void)s;
  memset(st, 0, sizeof *st);
}

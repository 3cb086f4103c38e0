/*
 * node_cmd_net.c - roostd's network commands of the control protocol
 * (docs/control.md): id, status (with wait: progress lines until the node
 * has joined), peers, lookup, ping, bootstrap_add, metrics and stop, and the
 * engine events (lookup and ping results) that end the ones that wait.
 *
 * A command that waits for the engine leaves a waiter in the control
 * socket's table (node_ctl.c) holding the client's serial, never a pointer,
 * with the hooks that finish or expire it; the engine command it waits for
 * is cancelled when the client goes or the deadline passes.  This file
 * keeps no state of its own: it reads the daemon's and changes it through
 * node_daemon_* (node_daemon.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_daemon.h"

/* What a waiter of this file waits for (waiter.kind). */
enum wait_kind { W_STATUS = 1, W_LOOKUP, W_PING_LOOKUP, W_PING };

static void jw_addr(node_jw *w, const char *k, const dht_addr *a) {
  char txt[DHT_ADDR_STRLEN];
  node_jw_kstr(w, k, dht_addr_fmt(a, txt, sizeof txt));
}

static const char *addr_type_name(int t) {
  switch (t) {
  case DHT_ADDR_LAN:
    return "lan";
  case DHT_ADDR_OBSERVED:
    return "observed";
  case DHT_ADDR_MAPPED:
    return "mapped";
  case DHT_ADDR_RELAY:
    return "relay";
  }
  return "unknown";
}

static void jw_typed_addrs(node_jw *w, const char *k, const dht_typed_addr *a, int n) {
  node_jw_key(w, k);
  node_jw_arr(w);
  for (int i = 0; i < n; i++) {
    node_jw_obj(w);
    node_jw_kstr(w, "type", addr_type_name(a[i].type));
    jw_addr(w, "addr", &a[i].addr);
    node_jw_obj_end(w);
  }
  node_jw_arr_end(w);
}

/* One line for people: what the NAT service's vote says of one family. */
static void nat_line(const nat_vote_result *r, int min_votes, char *buf, size_t len) {
  char a[DHT_ADDR_STRLEN];
  if (!r->known) {
    snprintf(buf, len, "unknown (peers in %d of %d networks needed agree so far)", r->prefixes,
             min_votes);
  } else if (r->mapping == NAT_MAP_EIM) {
    snprintf(buf, len, "%s, seen there by peers in %d networks",
             dht_addr_fmt(&r->addr, a, sizeof a), r->prefixes);
  } else {
    dht_addr_fmt(&r->addr, a, sizeof a);
    char *port = strrchr(a, ':'); /* the IP alone: "1.2.3.4", "[2001:db8::1]" */
    if (port)
      *port = 0;
    snprintf(buf, len,
             "%s, a new port for every peer (symmetric NAT), seen by peers in %d networks", a,
             r->prefixes);
  }
}

/* One line for people: whether others can reach us, and how we know. */
static void reach_line(rd_daemon *d, const nat_status *ns, char *buf, size_t len) {
  char a[DHT_ADDR_STRLEN];
  const char *via = NULL;
  bool behind = false;
  for (int p = 0; p < NAT_PM_NPROTO; p++) {
    nat_pm_info mi;
    if (node_portmap_info(&d->portmap, p, &mi) != 0 || mi.state == NAT_PM_OFF)
      continue;
    behind |= mi.behind_nat;
    if (ns->reach == NAT_REACH_YES && mi.verify == NAT_PM_VERIFIED &&
        dht_addr_eq(&mi.ext, &ns->reach_addr))
      via = nat_portmap_proto_name(p);
  }
  size_t n;
  if (ns->reach == NAT_REACH_YES && via)
    n = (size_t)snprintf(buf, len, "reachable at %s (%s mapping, verified by a dial-back)",
                         dht_addr_fmt(&ns->reach_addr, a, sizeof a), via);
  else if (ns->reach == NAT_REACH_YES)
    n = (size_t)snprintf(buf, len, "reachable at %s (a node we never sent to got a probe in)",
                         dht_addr_fmt(&ns->reach_addr, a, sizeof a));
  else if (ns->reach == NAT_REACH_NO)
    n = (size_t)snprintf(buf, len,
                         "not reachable: %d dial-backs in a row sent a probe and none got in%s",
                         ns->fails, ns->server ? "" : "; client mode");
  else
    n = (size_t)snprintf(buf, len, "not known yet: %llu dial-backs asked, none decided%s%s",
                         (unsigned long long)ns->dials,
                         ns->dials_inconclusive ? " (no prober found: too few servers about)" : "",
                         ns->server ? "" : "; client mode until one does");
  if (!ns->server && n < len)
    n += (size_t)snprintf(buf + n, len - n, ", reachable through %d introducer%s", ns->nintro,
                          ns->nintro == 1 ? "" : "s");
  if (behind && ns->reach != NAT_REACH_YES && n < len)
    snprintf(buf + n, len - n, "; behind a carrier NAT or a double NAT: port mapping cannot help");
}

static void write_status(rd_daemon *d, client *c, const char *reqid) {
  dht_stats st;
  dht_get_stats(d->e, &st);
  char nid[2 * DHT_ID_LEN + 1];
  node_proto_hex(dht_self_id(d->e), DHT_ID_LEN, nid);
  node_jw w;
  node_ctl_result_begin(&w, reqid);
  node_jw_kstr(&w, "id", d->idtext);
  node_jw_kstr(&w, "node_id", nid);
  node_jw_kstr(&w, "version", ROOST_VERSION);
  node_jw_kuint(&w, "uptime_s", (uv_now(&d->loop) - d->start_ms) / 1000);
  node_jw_kstr(&w, "state", node_daemon_state_name(d->state));
  node_jw_kstr(&w, "mode", dht_is_server(d->e) ? "server" : "client");
  if (d->nat) {
    nat_status ns;
    nat_get_status(d->nat, (dht_ts)uv_now(&d->loop), &ns);
    char line[256];
    const nat_vote_result *r = ns.vote[1].known && !ns.vote[0].known ? &ns.vote[1] : &ns.vote[0];
    nat_line(r, 3, line, sizeof line);
    node_jw_kstr(&w, "public_address", line);
    reach_line(d, &ns, line, sizeof line);
    node_jw_kstr(&w, "reachability", line);
  }
  node_jw_kint(&w, "table_size", st.rt_size);
  node_jw_kint(&w, "buckets", st.rt_buckets);
  node_jw_kint(&w, "records_stored", st.records_stored);
  node_jw_key(&w, "listen");
  node_jw_arr(&w);
  for (int i = 0; i < d->nsocks; i++) {
    char txt[DHT_ADDR_STRLEN];
    node_jw_str(&w, dht_addr_fmt(&d->socks[i].bound, txt, sizeof txt));
  }
  node_jw_arr_end(&w);
  jw_typed_addrs(&w, "addresses", d->addrs, d->naddrs);
  node_jw_kuint(&w, "rx_packets", st.rx_packets);
  node_jw_kuint(&w, "tx_packets", st.tx_packets);
  /* the same reasons as roost_dropped_total in metrics */
  uint64_t dropped = st.drop_ratelimit + st.drop_size + st.drop_version + st.drop_self +
                     st.drop_badkey + st.drop_decrypt + st.drop_replay + st.drop_malformed +
                     st.drop_unknown_type + st.drop_unknown_txid + st.drop_bad_token +
                     st.drop_bad_record + st.drop_out_full + st.drop_event_full + d->send_dropped +
                     d->recv_truncated;
  node_jw_kuint(&w, "dropped", dropped);
  node_ctl_result_end(c, &w);
}

static void cmd_peers(rd_daemon *d, client *c, const char *reqid) {
  dht_peer_info *info = calloc(256 * DHT_K_MAX, sizeof *info);
  if (!info) {
    node_ctl_error(c, reqid, "failed", "out of memory");
    return;
  }
  int n = dht_table(d->e, info, 256 * DHT_K_MAX);
  dht_ts now = (dht_ts)uv_now(&d->loop);
  node_jw w;
  node_jw_init(&w, NODE_PROTO_BIG_MAX); /* a full table is larger than a normal line */
  node_jw_obj(&w);
  node_jw_key(&w, "id");
  node_jw_raw(&w, reqid, strlen(reqid));
  node_jw_kbool(&w, "ok", true);
  node_jw_key(&w, "result");
  node_jw_obj(&w);
  node_jw_key(&w, "peers");
  node_jw_arr(&w);
  for (int i = 0; i < n; i++) {
    char idt[NODE_IDTEXT_LEN + 1], nid[2 * DHT_ID_LEN + 1];
    node_idtext_encode(info[i].c.pk, idt);
    node_proto_hex(info[i].c.id, DHT_ID_LEN, nid);
    node_jw_obj(&w);
    node_jw_kstr(&w, "id", idt);
    node_jw_kstr(&w, "node_id", nid);
    jw_addr(&w, "addr", &info[i].c.addr);
    node_jw_key(&w, "rtt_ms");
    if (info[i].rtt_ms >= 0)
      node_jw_int(&w, info[i].rtt_ms);
    else
      node_jw_null(&w);
    node_jw_key(&w, "last_reply_s");
    if (info[i].last_reply_ms > 0)
      node_jw_int(&w, (now - info[i].last_reply_ms) / 1000);
    else
      node_jw_null(&w);
    node_jw_kint(&w, "fails", info[i].fails);
    node_jw_obj_end(&w);
  }
  node_jw_arr_end(&w);
  node_jw_obj_end(&w);
  node_ctl_reply_end(c, &w);
  free(info);
}

static void write_metrics(rd_daemon *d, client *c, const char *reqid) {
  dht_stats st;
  dht_get_stats(d->e, &st);
  char *t = malloc(32768);
  if (!t) {
    node_ctl_error(c, reqid, "failed", "out of memory");
    return;
  }
  size_t n = 0, cap = 32768;
#define M(...) n += (size_t)snprintf(t + n, n < cap ? cap - n : 0, __VA_ARGS__)
#define COUNTER(name, help, v)                                                                     \
  M("# HELP roost_" name " " help "\n# TYPE roost_" name " counter\nroost_" name " %llu\n",        \
    (unsigned long long)(v))
#define GAUGE(name, help, v)                                                                       \
  M("# HELP roost_" name " " help "\n# TYPE roost_" name " gauge\nroost_" name " %lld\n",          \
    (long long)(v))
  COUNTER("rx_packets_total", "Datagrams received.", st.rx_packets);
  COUNTER("rx_bytes_total", "Bytes received.", st.rx_bytes);
  COUNTER("tx_packets_total", "Datagrams sent.", st.tx_packets);
  COUNTER("tx_bytes_total", "Bytes sent.", st.tx_bytes);
  M("# HELP roost_dropped_total Datagrams dropped, by the first check that failed.\n"
    "# TYPE roost_dropped_total counter\n");
  const struct {
    const char *r;
    uint64_t v;
  } drops[] = {
      {"ratelimit", st.drop_ratelimit},
      {"size", st.drop_size},
      {"version", st.drop_version},
      {"no_circuit", st.drop_relay},
      {"self", st.drop_self},
      {"bad_key", st.drop_badkey},
      {"decrypt", st.drop_decrypt},
      {"replay", st.drop_replay},
      {"malformed", st.drop_malformed},
      {"unknown_type", st.drop_unknown_type},
      {"unknown_txid", st.drop_unknown_txid},
      {"bad_token", st.drop_bad_token},
      {"bad_record", st.drop_bad_record},
      {"engine_queue_full", st.drop_out_full},
      {"event_queue_full", st.drop_event_full},
      {"send_queue_full", d->send_dropped},
      {"truncated", d->recv_truncated},
  };
  for (size_t i = 0; i < sizeof drops / sizeof drops[0]; i++)
    M("roost_dropped_total{reason=\"%s\"} %llu\n", drops[i].r, (unsigned long long)drops[i].v);
  COUNTER("requests_in_total", "Requests answered.", st.requests_in);
  COUNTER("requests_out_total", "Requests sent.", st.requests_out);
  COUNTER("replies_in_total", "Replies received.", st.replies_in);
  COUNTER("timeouts_total", "Requests that timed out.", st.timeouts);
  COUNTER("amplification_limited_total", "Replies shrunk for an unproven address.",
          st.amplification_limited);
  COUNTER("amplification_dropped_total",
          "Datagrams not sent: past the credit of an address that has not proven itself.",
          st.drop_amplification);
  COUNTER("unsolicited_sent_total",
          "Datagrams started on our own toward an unproven address (verify pings, probes).",
          st.unsolicited_out);
  COUNTER("unsolicited_limited_total",
          "Such datagrams not sent: their destination prefix's rate was spent.",
          st.unsolicited_limited);
  COUNTER("service_requests_total", "Requests services sent through the engine.",
          st.svc_requests_out);
  COUNTER("service_retries_total", "Services' requests sent again after a timeout.",
          st.svc_retries);
  COUNTER("service_timeouts_total", "Services' requests that ran out of tries.", st.svc_timeouts);
  GAUGE("service_sockets", "Extra sockets open for services.", d->nxsocks);
  COUNTER("relay_opened_total", "Circuits opened as a relay (both ends asked).", st.relay_opened);
  COUNTER("relay_refused_total", "Circuits refused: all in use.", st.relay_refused);
  COUNTER("relay_closed_total", "Circuits closed at their time or byte limit.", st.relay_closed);
  COUNTER("relay_datagrams_total", "Datagrams relayed between the ends of a circuit.",
          st.relay_datagrams);
  COUNTER("relay_bytes_total", "Bytes relayed.", st.relay_bytes);
  GAUGE("relay_circuits", "Circuits open.", dht_relay_count(d->e));
  if (d->nat) {
    nat_status ns;
    nat_get_status(d->nat, (dht_ts)uv_now(&d->loop), &ns);
    COUNTER("nat_witnesses_asked_total", "PINGs sent to learn how peers see us.",
            ns.witnesses_asked);
    COUNTER("nat_reports_total", "Address reports from peers taken into the vote.", ns.reports);
    GAUGE("nat_public_known", "1 when peers in enough networks agree on our IPv4 address.",
          ns.vote[0].known);
    COUNTER("nat_dialbacks_total", "Dial-backs of our address we asked for.", ns.dials);
    COUNTER("nat_dialbacks_ok_total", "... in which a probe got in.", ns.dials_ok);
    COUNTER("nat_dialbacks_failed_total", "... in which a probe was sent and none got in.",
            ns.dials_failed);
    COUNTER("nat_dialbacks_helped_total", "Dial-backs we arranged for others.", ns.helped);
    COUNTER("nat_probes_sent_total", "Probes we sent for others' dial-backs.", ns.probes_sent);
    COUNTER("nat_refused_total", "Dial-back requests and forwards refused (cookie, rate).",
            ns.refused);
    COUNTER("nat_mode_changes_total", "Switches between server and client mode.", ns.mode_changes);
    COUNTER("nat_vouch_asked_total", "Strangers that asked to be stored, handed to a voucher.",
            ns.vouch_asked);
    COUNTER("nat_vouch_ok_total", "... stored: the voucher's CHECK reached them.", ns.vouch_ok);
    COUNTER("nat_vouch_failed_total", "... not stored: no VOUCHED in time, or refused.",
            ns.vouch_failed);
    COUNTER("nat_vouch_fallback_total", "... left to our own verify PING (no voucher).",
            ns.vouch_fallback);
    COUNTER("nat_checks_sent_total", "CHECKs we sent as a voucher.", ns.checks_sent);
    GAUGE("nat_introducers", "Introducers that answer our keepalives (while a client).", ns.nintro);
    COUNTER("nat_introducer_changes_total", "Introducers gained or lost.", ns.intro_changes);
    COUNTER("nat_keepalives_total", "Keepalive PINGs sent to introducers.", ns.keepalives);
    COUNTER("nat_punches_total", "Hole punches we started.", ns.punches);
    COUNTER("nat_relayed_paths_total", "Paths to peers through a relay we got.", ns.relayed_paths);
    COUNTER("nat_relay_asked_total", "Circuits asked of us as a relay.", ns.relay_asked);
    COUNTER("nat_relay_refused_total", "... refused (relaying off, not a server, full).",
            ns.relay_refused);
    COUNTER("nat_punches_ok_total", "... that opened a path (either side's counts).",
            ns.punches_ok);
    COUNTER("nat_punches_failed_total", "... that ended without one.", ns.punches_failed);
    COUNTER("nat_holes_sent_total", "HOLE probes sent.", ns.holes_sent);
    COUNTER("nat_holes_limited_total", "HOLE probes not sent: the node-wide bucket was empty.",
            ns.holes_limited);
    COUNTER("nat_punch_fwds_refused_total", "PUNCH_FWDs refused: not from one of our introducers.",
            ns.fwds_refused);
    GAUGE("nat_clients", "Clients registered with us as their introducer.", ns.clients);
    COUNTER("nat_introduced_total", "Punches we introduced.", ns.introduced);
    COUNTER("nat_intro_refused_total", "Registrations and punch requests we refused.",
            ns.intro_refused);
  }
  /* port mapping, per protocol (a label each, in the exposition format) */
  static const char *const pm_label[NAT_PM_NPROTO] = {"natpmp", "upnp"};
  nat_pm_info pmi[NAT_PM_NPROTO];
  bool pm_on = false;
  for (int p = 0; p < NAT_PM_NPROTO; p++) {
    if (node_portmap_info(&d->portmap, p, &pmi[p]) != 0)
      memset(&pmi[p], 0, sizeof pmi[p]);
    pm_on |= pmi[p].state != NAT_PM_OFF;
  }
  if (pm_on) {
    M("# HELP roost_nat_portmap_requests_total Requests to the gateway (discover, map, renew, "
      "delete).\n# TYPE roost_nat_portmap_requests_total counter\n");
    for (int p = 0; p < NAT_PM_NPROTO; p++)
      M("roost_nat_portmap_requests_total{protocol=\"%s\"} %u\n", pm_label[p], pmi[p].attempts);
    M("# HELP roost_nat_portmap_failures_total ... of them failed.\n# TYPE "
      "roost_nat_portmap_failures_total counter\n");
    for (int p = 0; p < NAT_PM_NPROTO; p++)
      M("roost_nat_portmap_failures_total{protocol=\"%s\"} %u\n", pm_label[p], pmi[p].failures);
    M("# HELP roost_nat_portmap_mapped 1 when the gateway holds our mapping and a dial-back "
      "verified it, 0 otherwise.\n# TYPE roost_nat_portmap_mapped gauge\n");
    for (int p = 0; p < NAT_PM_NPROTO; p++)
      M("roost_nat_portmap_mapped{protocol=\"%s\"} %d\n", pm_label[p],
        (pmi[p].state == NAT_PM_MAPPED || pmi[p].state == NAT_PM_RENEWING) &&
            pmi[p].verify == NAT_PM_VERIFIED);
  }
  COUNTER("ttl_sends_total", "Datagrams sent with their own TTL.", d->ttl_sends);
  COUNTER("lookups_total", "Lookups started.", st.lookups_started);
  COUNTER("records_accepted_total", "Peer records accepted for storage.", st.records_accepted);
  COUNTER("records_rejected_total", "Peer records refused.", st.records_rejected);
  COUNTER("send_errors_total", "Datagrams the kernel refused to send.", d->send_errors);
  COUNTER("recv_errors_total", "Socket receive errors.", d->recv_errors);
  node_ctl_stats cs;
  node_ctl_get_stats(&d->ctl, &cs);
  COUNTER("control_refused_total", "Control connections refused (wrong uid or too many).",
          cs.refused);
  COUNTER("lan_announcements_heard_total", "LAN discovery announcements heard.", d->lan_heard);
  GAUGE("routing_table_contacts", "Contacts in the routing table.", st.rt_size);
  GAUGE("routing_table_buckets", "Buckets in the routing table.", st.rt_buckets);
  GAUGE("records_stored", "Peer records held for other nodes.", st.records_stored);
  GAUGE("uptime_seconds", "Seconds since roostd started.",
        (long long)((uv_now(&d->loop) - d->start_ms) / 1000));
  GAUGE("ready", "1 when the node has joined the network.", d->state == ST_READY);
  store_svc *svc = node_msg_svc(&d->msg);
  if (svc) {
    store_stats ss;
    store_get_stats(svc, &ss);
    COUNTER("mailbox_deposits_total", "Deposits received as a storage node.", ss.deposits_in);
    COUNTER("mailbox_deposits_stored_total", "Deposits stored.", ss.deposits_stored);
    COUNTER("mailbox_deposits_refused_total",
            "Deposits refused (quota, capacity, signature, time).", ss.deposits_refused);
    COUNTER("mailbox_receipts_sent_total", "Storage receipts sent.", ss.receipts_out);
    COUNTER("mailbox_fetches_total", "FETCH requests received.", ss.fetches_in);
    COUNTER("mailbox_fetches_refused_total", "FETCH requests refused (authentication, time).",
            ss.fetches_refused);
    COUNTER("mailbox_deletes_total", "DELETE requests received.", ss.deletes_in);
    COUNTER("mailbox_deletes_refused_total", "DELETE requests refused.", ss.deletes_refused);
    COUNTER("mailbox_items_served_total", "Items given to their owners.", ss.items_served);
    COUNTER("mailbox_expired_total", "Records expired.", ss.expired);
    COUNTER("mailbox_evicted_total", "Items that expired unread (a notice was left).", ss.evicted);
    COUNTER("mailbox_recon_rounds_total", "Replica reconciliations started.", ss.recon_rounds);
    COUNTER("mailbox_recon_equal_total", "Reconciliations that found equal sets.", ss.recon_equal);
    COUNTER("mailbox_recon_pushed_total", "Items and tombstones pushed to other replicas.",
            ss.recon_items_pushed);
    COUNTER("mailbox_recon_bytes_total", "Reconciliation bytes sent.", ss.recon_bytes);
    COUNTER("mailbox_recon_refused_total",
            "Reconciliations refused: the asker is not a replica of the mailbox.",
            ss.recon_refused);
    COUNTER("mailbox_recon_stranger_total",
            "Entry lists from nodes that are not replicas (answered without pushes).",
            ss.recon_stranger);
    COUNTER("mailbox_dropped_total", "Mailbox messages dropped (malformed or unknown txid).",
            ss.drop_malformed + ss.drop_unknown_txid);
    COUNTER("messages_sent_direct_total", "Messages delivered straight to a friend.",
            ss.sent_direct);
    COUNTER("messages_deposited_total", "Deposit rounds for messages to friends.",
            ss.sent_deposited);
    COUNTER("messages_received_total", "Messages from friends opened.", ss.delivered_msgs);
    GAUGE("mailbox_items", "Items stored for others.", ss.stored_items);
    GAUGE("mailbox_bytes", "Bytes stored for others.", ss.stored_bytes);
    GAUGE("messages_in_flight", "Messages being sent or retried.", ss.outgoing);
    GAUGE("friends", "Friends.", ss.friends);
    GAUGE("hosted_friends", "Friends whose mailboxes this node hosts.", ss.hosted);
  }
#undef GAUGE
#undef COUNTER
#undef M
  node_jw w;
  node_ctl_result_begin(&w, reqid);
  node_jw_key(&w, "text");
  node_jw_strn(&w, t, n < cap ? n : cap - 1);
  node_ctl_result_end(c, &w);
  free(t);
}

static void write_record(node_jw *w, const dht_lookup_result *r, uint64_t unix_now) {
  char idt[NODE_IDTEXT_LEN + 1];
  node_idtext_encode(r->record.pk, idt);
  node_jw_kstr(w, "id", idt);
  node_jw_kbool(w, "found", true);
  node_jw_kuint(w, "seq", r->record.seq);
  node_jw_kint(w, "expires_in_s", (int64_t)r->record.expires_unix_s - (int64_t)unix_now);
  node_jw_kbool(w, "reachable", r->record.flags & DHT_REC_REACHABLE);
  static const char *const nat_class[8] = {"unknown", "none", "endpoint-independent", "symmetric"};
  const char *nc = nat_class[(r->record.flags & DHT_REC_NAT_MASK) >> DHT_REC_NAT_SHIFT];
  node_jw_kstr(w, "nat", nc ? nc : "unknown");
  jw_typed_addrs(w, "addresses", r->record.addrs, r->record.naddrs);
  node_jw_key(w, "introducers");
  node_jw_arr(w);
  for (int i = 0; i < r->record.nintro; i++) {
    char id[NODE_IDTEXT_LEN + 1], ia[DHT_ADDR_STRLEN];
    node_idtext_encode(r->record.intro[i].pk, id);
    node_jw_obj(w);
    node_jw_kstr(w, "id", id);
    node_jw_kstr(w, "address", dht_addr_fmt(&r->record.intro[i].addr, ia, sizeof ia));
    node_jw_obj_end(w);
  }
  node_jw_arr_end(w);
  node_jw_kint(w, "rounds", r->rounds);
  node_jw_kint(w, "messages", r->messages);
  node_jw_kint(w, "time_ms", r->elapsed_ms);
}

static bool parse_id_arg(client *c, const char *reqid, const json_t *args, const char *key,
                         uint8_t pk[DHT_PK_LEN]) {
  char text[128];
  if (node_json_str(json_object_get(args, key), text, sizeof text) < 0) {
    node_ctl_error(c, reqid, "bad_request", "missing string argument '%s'", key);
    return false;
  }
  int rv = node_idtext_decode(text, pk);
  if (rv == -1) {
    node_ctl_error(c, reqid, "bad_argument", "'%s' is not a roost ID (%d characters a-z, 2-7)",
                   text, NODE_IDTEXT_LEN);
    return false;
  }
  if (rv == -2) {
    node_ctl_error(c, reqid, "bad_argument", "the ID '%s' has a typo (its checksum does not match)",
                   text);
    return false;
  }
  return true;
}

static uint64_t unix_now_s(void) {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  return (uint64_t)tv.tv_sec;
}

static void cmd_id(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  (void)args;
  char nid[2 * DHT_ID_LEN + 1];
  node_proto_hex(dht_self_id(d->e), DHT_ID_LEN, nid);
  node_jw w;
  node_ctl_result_begin(&w, reqid);
  node_jw_kstr(&w, "id", d->idtext);
  node_jw_kstr(&w, "node_id", nid);
  node_ctl_result_end(c, &w);
}

/* status --wait, once a second: the result once the node is ready, a
 * progress line before (while the deadline holds). */
static bool status_poll(void *ctx, waiter *w, client *c, bool late) {
  rd_daemon *d = ctx;
  if (d->state == ST_READY) {
    write_status(d, c, w->reqid);
    return true;
  }
  if (!late) {
    dht_stats st;
    dht_get_stats(d->e, &st);
    node_jw jw;
    node_ctl_reply_begin(&jw, w->reqid);
    node_jw_key(&jw, "progress");
    node_jw_obj(&jw);
    node_jw_kstr(&jw, "state", node_daemon_state_name(d->state));
    node_jw_kint(&jw, "table_size", st.rt_size);
    node_jw_obj_end(&jw);
    node_ctl_reply_end(c, &jw);
  }
  return false;
}

static void status_expire(void *ctx, waiter *w, client *c) {
  (void)ctx;
  if (c)
    node_ctl_error(c, w->reqid, "timeout", "not bootstrapped yet");
}

/* A lookup or ping that ran out of time: the engine stops working on it. */
static void engine_expire(void *ctx, waiter *w, client *c) {
  rd_daemon *d = ctx;
  if (c)
    node_ctl_error(c, w->reqid, "timeout", "no result in time");
  dht_cancel(d->e, w->cmd);
}

static void cmd_status(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  bool wait = false;
  int64_t timeout = 30000;
  const json_t *v = json_object_get(args, "wait");
  if (v && node_json_bool(v, &wait) != 0) {
    node_ctl_error(c, reqid, "bad_request", "'wait' must be true or false");
    return;
  }
  v = json_object_get(args, "timeout_ms");
  if (v && (node_json_int(v, &timeout) != 0 || timeout < 0 || timeout > 24 * 3600 * 1000)) {
    node_ctl_error(c, reqid, "bad_request", "'timeout_ms' must be a number of milliseconds");
    return;
  }
  if (!wait || d->state == ST_READY) {
    write_status(d, c, reqid);
    return;
  }
  waiter *w = node_ctl_add_waiter(&d->ctl, c, reqid, W_STATUS, 0, (uint64_t)timeout);
  if (w) {
    w->poll = status_poll;
    w->expire = status_expire;
  }
}

static void cmd_peers_any(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  (void)args;
  cmd_peers(d, c, reqid);
}

/* roost nat: what the NAT service knows, per address family. */
static void cmd_nat(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  (void)args;
  if (!d->nat) {
    node_ctl_error(c, reqid, "failed", "the NAT service did not start (see roostd's log)");
    return;
  }
  dht_ts now = (dht_ts)uv_now(&d->loop);
  nat_status ns;
  nat_get_status(d->nat, now, &ns);
  nat_settings set;
  nat_settings_default(&set);
  node_jw w;
  node_ctl_result_begin(&w, reqid);
  node_jw_key(&w, "families");
  node_jw_arr(&w);
  static const char *const fam[2] = {"IPv4", "IPv6"};
  for (int f = 0; f < 2; f++) {
    const nat_vote_result *r = &ns.vote[f];
    char a[DHT_ADDR_STRLEN], line[256];
    node_jw_obj(&w);
    node_jw_kstr(&w, "family", fam[f]);
    node_jw_kbool(&w, "known", r->known);
    node_jw_key(&w, "public_address");
    if (r->known && r->mapping == NAT_MAP_EIM)
      node_jw_str(&w, dht_addr_fmt(&r->addr, a, sizeof a));
    else
      node_jw_null(&w);
    node_jw_kstr(&w, "mapping", nat_mapping_name(r->mapping));
    node_jw_kint(&w, "witness_networks", r->prefixes);
    node_jw_kint(&w, "witness_networks_same_port", r->port_prefixes);
    node_jw_kint(&w, "witness_networks_needed", set.vote.min_votes);
    node_jw_kint(&w, "reports", r->reports);
    nat_line(r, set.vote.min_votes, line, sizeof line);
    node_jw_kstr(&w, "summary", line);
    /* what the dial-backs showed of this family's address */
    node_jw_kstr(&w, "reachable", nat_reach_name(ns.fam[f].reach));
    node_jw_kint(&w, "dialbacks_failed_in_a_row", ns.fam[f].fails);
    node_jw_obj_end(&w);
  }
  node_jw_arr_end(&w);
  node_jw_kuint(&w, "witnesses_asked", ns.witnesses_asked);
  node_jw_kuint(&w, "reports", ns.reports);
  static const char *const modes[] = {"server", "client", "auto"};
  node_jw_kstr(&w, "mode_setting", modes[ns.mode]);
  node_jw_kstr(&w, "mode", ns.server ? "server" : "client");
  node_jw_kstr(&w, "reachable", nat_reach_name(ns.reach));
  char line[256];
  reach_line(d, &ns, line, sizeof line);
  node_jw_kstr(&w, "reachability", line);
  node_jw_kuint(&w, "dialbacks", ns.dials);
  node_jw_kuint(&w, "dialbacks_ok", ns.dials_ok);
  node_jw_kuint(&w, "dialbacks_failed", ns.dials_failed);
  node_jw_kuint(&w, "dialbacks_helped", ns.helped);
  node_jw_kuint(&w, "probes_sent", ns.probes_sent);
  node_jw_kuint(&w, "mode_changes", ns.mode_changes);
  node_jw_key(&w, "introducers");
  node_jw_arr(&w);
  for (int i = 0; i < ns.nintro; i++) {
    char id[NODE_IDTEXT_LEN + 1], ia[DHT_ADDR_STRLEN];
    node_idtext_encode(ns.intro[i].who.pk, id);
    node_jw_obj(&w);
    node_jw_kstr(&w, "id", id);
    node_jw_kstr(&w, "address", dht_addr_fmt(&ns.intro[i].who.addr, ia, sizeof ia));
    node_jw_kuint(&w, "since_s", (uint64_t)ns.intro[i].since_ms / 1000);
    node_jw_kuint(&w, "rtt_ms", (uint64_t)ns.intro[i].rtt_ms);
    node_jw_obj_end(&w);
  }
  node_jw_arr_end(&w);
  node_jw_kuint(&w, "keepalives", ns.keepalives);
  /* paths to peers another way than their records' addresses (punched
   * holes), and the last punches */
  static const char *const methods[] = {"?", "direct", "punched", "relayed"};
  dht_path_info paths[32];
  int np = dht_paths_list(d->e, paths, 32);
  node_jw_key(&w, "paths");
  node_jw_arr(&w);
  for (int i = 0; i < np; i++) {
    char id[NODE_IDTEXT_LEN + 1], pa[DHT_ADDR_STRLEN];
    node_idtext_encode(paths[i].pk, id);
    node_jw_obj(&w);
    node_jw_kstr(&w, "id", id);
    node_jw_kstr(&w, "method", methods[paths[i].method <= 3 ? paths[i].method : 0]);
    node_jw_kstr(&w, "address", dht_addr_fmt(&paths[i].path.remote, pa, sizeof pa));
    node_jw_kuint(&w, "since_s", (uint64_t)(now - paths[i].since) / 1000);
    node_jw_kuint(&w, "last_heard_s", (uint64_t)(now - paths[i].last_rx) / 1000);
    node_jw_kuint(&w, "moves", paths[i].roams);
    node_jw_obj_end(&w);
  }
  node_jw_arr_end(&w);
  node_jw_key(&w, "punches");
  node_jw_arr(&w);
  for (int i = 0; i < ns.npunch_log; i++) {
    const nat_punch_log *l = &ns.punch_log[i];
    char id[NODE_IDTEXT_LEN + 1], pa[DHT_ADDR_STRLEN];
    node_idtext_encode(l->pk, id);
    node_jw_obj(&w);
    node_jw_kstr(&w, "id", id);
    node_jw_kstr(&w, "side", l->initiator ? "ours" : "theirs");
    node_jw_kbool(&w, "ok", l->ok);
    node_jw_key(&w, "address");
    if (l->ok)
      node_jw_str(&w, dht_addr_fmt(&l->addr, pa, sizeof pa));
    else
      node_jw_null(&w);
    node_jw_kint(&w, "attempts", l->attempts);
    node_jw_kuint(&w, "ms", (uint64_t)l->ms);
    node_jw_kuint(&w, "ago_s", (uint64_t)(now - l->at) / 1000);
    node_jw_obj_end(&w);
  }
  node_jw_arr_end(&w);
  node_jw_kuint(&w, "punches_started", ns.punches);
  node_jw_kuint(&w, "punches_ok", ns.punches_ok);
  node_jw_kuint(&w, "punches_failed", ns.punches_failed);
  node_jw_kint(&w, "clients_introduced", ns.clients);
  /* the port mappings, per protocol (an empty list: --portmap off or a
   * loopback or public listen address) */
  node_jw_key(&w, "mappings");
  node_jw_arr(&w);
  for (int p = 0; p < NAT_PM_NPROTO; p++) {
    nat_pm_info mi;
    if (node_portmap_info(&d->portmap, p, &mi) != 0 || mi.state == NAT_PM_OFF)
      continue;
    static const char *const verify[] = {"unverified", "verified", "refuted"};
    char e[DHT_ADDR_STRLEN];
    node_jw_obj(&w);
    node_jw_kstr(&w, "protocol", nat_portmap_proto_name(p));
    node_jw_kstr(&w, "state", nat_portmap_state_name(mi.state));
    node_jw_key(&w, "external");
    if (mi.ext.family)
      node_jw_str(&w, dht_addr_fmt(&mi.ext, e, sizeof e));
    else
      node_jw_null(&w);
    node_jw_kint(&w, "lease_left_s", mi.lease_left_ms < 0 ? -1 : mi.lease_left_ms / 1000);
    node_jw_kstr(&w, "proof", mi.verify < 3 ? verify[mi.verify] : "unknown");
    node_jw_kbool(&w, "behind_another_nat", mi.behind_nat);
    node_jw_kstr(&w, "last_error", mi.last_error_text);
    node_jw_obj_end(&w);
  }
  node_jw_arr_end(&w);
  node_ctl_result_end(c, &w);
}

static void cmd_metrics(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  (void)args;
  write_metrics(d, c, reqid);
}

/* lookup and ping: one parser, since ping without an address is a lookup
 * first. */
static void lookup_or_ping(rd_daemon *d, client *c, const char *reqid, const json_t *args,
                           bool ping) {
  dht_ts now = (dht_ts)uv_now(&d->loop);
  uint8_t pk[DHT_PK_LEN], id[DHT_ID_LEN];
  if (!parse_id_arg(c, reqid, args, "id", pk))
    return;
  dht_id_from_pk(id, pk);
  char addr[80];
  int64_t timeout = 30000;
  const json_t *jt = json_object_get(args, "timeout_ms");
  if (jt && (node_json_int(jt, &timeout) != 0 || timeout < 1 || timeout > 600000)) {
    node_ctl_error(c, reqid, "bad_request", "'timeout_ms' must be 1 to 600000 milliseconds");
    return;
  }
  const json_t *ja = json_object_get(args, "addr");
  waiter *w;
  if (ping && ja) {
    dht_peer p;
    memcpy(p.pk, pk, DHT_PK_LEN);
    if (node_json_str(ja, addr, sizeof addr) < 0 || node_addr_parse(addr, &p.addr)) {
      node_ctl_error(c, reqid, "bad_argument", "'addr' must be a numeric HOST:PORT");
      return;
    }
    int64_t cid = dht_ping(d->e, &p, now);
    if (cid < 0) {
      node_ctl_error(c, reqid, "failed", "cannot ping: %s", dht_strerror((int)cid));
      return;
    }
    if ((w = node_ctl_add_waiter(&d->ctl, c, reqid, W_PING, cid, (uint64_t)timeout)) != NULL)
      w->peer = p;
  } else {
    int64_t cid = dht_get_record(d->e, id, now);
    if (cid < 0) {
      node_ctl_error(c, reqid, cid == DHT_ERR_FULL ? "busy" : "failed", "cannot look up: %s",
                     dht_strerror((int)cid));
      return;
    }
    w = node_ctl_add_waiter(&d->ctl, c, reqid, ping ? W_PING_LOOKUP : W_LOOKUP, cid,
                            (uint64_t)timeout);
    if (w)
      memcpy(w->peer.pk, pk, DHT_PK_LEN);
  }
  if (w)
    w->expire = engine_expire;
}

static void cmd_lookup(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  lookup_or_ping(d, c, reqid, args, false);
}

static void cmd_ping(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  lookup_or_ping(d, c, reqid, args, true);
}

static void cmd_bootstrap_add(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  char spec[256], why[256];
  dht_peer p;
  if (node_json_str(json_object_get(args, "peer"), spec, sizeof spec) < 0) {
    node_ctl_error(c, reqid, "bad_request", "missing string argument 'peer'");
    return;
  }
  if (node_peer_parse(spec, &p, why, sizeof why) != 0) {
    node_ctl_error(c, reqid, "bad_argument", "%s", why);
    return;
  }
  if (!memcmp(p.pk, d->ident.pk, DHT_PK_LEN)) {
    node_ctl_error(c, reqid, "bad_argument", "that is this node's own ID");
    return;
  }
  node_daemon_add_bootstrap(d, &p);
  node_daemon_bootstrap(d);
  node_jw w;
  node_ctl_result_begin(&w, reqid);
  node_jw_kbool(&w, "added", true);
  node_ctl_result_end(c, &w);
}

static void cmd_stop(rd_daemon *d, client *c, const char *reqid, const json_t *args) {
  (void)args;
  node_jw w;
  node_ctl_result_begin(&w, reqid);
  node_ctl_result_end(c, &w);
  NLOG(NODE_LOG_INFO, "ctl", "stop requested");
  node_daemon_shutdown(d, 0);
}

/* A lookup or ping the CLI is waiting for has finished. */
void node_cmd_net_on_event(rd_daemon *d, const dht_event *ev) {
  if (ev->type != DHT_EV_LOOKUP && ev->type != DHT_EV_PING)
    return;
  /* engine command IDs are positive; status waiters await none (0) */
  waiter *w = ev->cmd > 0 ? node_ctl_find_waiter(&d->ctl, ev->cmd) : NULL;
  if (!w || w->kind == W_STATUS)
    return;
  dht_ts now = (dht_ts)uv_now(&d->loop);
  client *c = node_ctl_client(&d->ctl, w->client);
  if (w->kind == W_LOOKUP || w->kind == W_PING_LOOKUP) {
    const dht_lookup_result *r = ev->u.lookup;
    if (!r || !r->has_record) {
      if (c)
        node_ctl_error(c, w->reqid, ev->status == DHT_ERR_TIMEOUT ? "timeout" : "not_found",
                       "no peer record found for that ID (%d requests sent)", r ? r->messages : 0);
      node_ctl_remove_waiter(&d->ctl, w);
      return;
    }
    if (w->kind == W_LOOKUP) {
      node_jw jw;
      node_ctl_result_begin(&jw, w->reqid);
      write_record(&jw, r, unix_now_s());
      if (c)
        node_ctl_result_end(c, &jw);
      else
        node_jw_free(&jw);
      node_ctl_remove_waiter(&d->ctl, w);
      return;
    }
    /* W_PING_LOOKUP: ping the first address of the record */
    if (r->record.naddrs == 0) {
      if (c)
        node_ctl_error(c, w->reqid, "not_found", "the peer's record has no address");
      node_ctl_remove_waiter(&d->ctl, w);
      return;
    }
    w->peer.addr = r->record.addrs[0].addr;
    int64_t cid = dht_ping(d->e, &w->peer, now);
    if (cid < 0) {
      if (c)
        node_ctl_error(c, w->reqid, "failed", "cannot ping: %s", dht_strerror((int)cid));
      node_ctl_remove_waiter(&d->ctl, w);
      return;
    }
    w->cmd = cid;
    w->kind = W_PING;
    return;
  }
  /* W_PING */
  if (c && ev->status) {
    node_ctl_error(c, w->reqid, "timeout", "no answer (%s)", dht_strerror(ev->status));
  } else if (c) {
    node_jw jw;
    node_ctl_result_begin(&jw, w->reqid);
    node_jw_kint(&jw, "rtt_ms", ev->u.ping.rtt_ms);
    jw_addr(&jw, "addr", &w->peer.addr);
    jw_addr(&jw, "seen_as", &ev->u.ping.seen_as);
    node_ctl_result_end(c, &jw);
  }
  node_ctl_remove_waiter(&d->ctl, w);
}

static const node_cmd cmds[] = {
    {"id", cmd_id},           {"status", cmd_status}, {"peers", cmd_peers_any},
    {"lookup", cmd_lookup},   {"ping", cmd_ping},     {"bootstrap_add", cmd_bootstrap_add},
    {"metrics", cmd_metrics}, {"stop", cmd_stop},     {"nat", cmd_nat},
};
const node_cmd_table node_cmd_net_table = {cmds, sizeof cmds / sizeof cmds[0]};

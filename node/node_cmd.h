/*
 * node_cmd.h - the commands of roostd's control socket, in files by area:
 * node_cmd_net.c (the node and the network) and node_cmd_msg.c (friends and
 * messages).  Each file exports its table of commands, which the daemon
 * hands to the control socket (node_ctl.c) to dispatch through, and the
 * entry points through which engine and service events reach the commands
 * that wait for them.
 */
#ifndef ROOST_NODE_CMD_H
#define ROOST_NODE_CMD_H

#include "node_daemon.h"

/* node_cmd_net.c: id, status, peers, lookup, ping, bootstrap_add, metrics,
 * stop. */
extern const node_cmd_table node_cmd_net_table;
/* A lookup or ping event: ends (or advances) the waiter for its command. */
void node_cmd_net_on_event(rd_daemon *d, const dht_event *ev);

/* node_cmd_msg.c: invite, friend_*, send, outbox, inbox, fetch, host_*,
 * mailbox. */
extern const node_cmd_table node_cmd_msg_table;
/* A new message (in) or loss notice (loss) for the inbox followers; a
 * message shown to a follower that marks is marked read. */
void node_cmd_msg_notify(rd_daemon *d, store_in_row *in, const store_event *loss);
/* A fetch round ended: the fetch commands waiting for it get its result. */
void node_cmd_msg_fetched(rd_daemon *d, const store_event *ev);

#endif

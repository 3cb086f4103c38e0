/*
 * store_replica.c - the one rule by which a node decides whether it, or a
 * peer, is a replica of a mailbox (docs/mailbox.md, "Who is a replica").
 *
 * A node is a replica of mailbox m, in our view, when fewer than
 * r + margin of the nodes we know (our routing table, and ourselves) are
 * closer to m than it is.  r = settings.replicas (5): the nodes a sender
 * deposits at.  The margin (settings.replica_margin, 3) is for churn: two
 * nodes' tables never agree exactly, and a node that joins closer to m
 * pushes an old replica down by one rank at a time; with the margin, the
 * old replica still counts while the newcomer is being filled (hand-off),
 * and a view that is off by a few ranks does not refuse an honest replica.
 *
 * What the rule decides: who may learn a mailbox's fingerprints and counts
 * (RECON), and who gets its items pushed in answer (RECON_L).  A node that
 * is not a replica by the rule learns nothing from us about a mailbox but
 * which of the entries it named itself we lack.  The adversity work applies
 * the same rule to deposits.
 *
 * Invariants: pure functions of the routing table at the call; no state.
 */
#include <string.h>

#include "store_int.h"

/* Nodes we know that are closer to mbox than id: table contacts, and
 * ourselves when id is not our own. */
static int rank_of(store_svc *s, const uint8_t mbox[static STORE_MBOX_LEN],
                   const uint8_t id[static DHT_ID_LEN], int limit) {
  dht_contact cl[DHT_K_MAX];
  int n = dht_closest(s->e, mbox, cl, limit);
  int closer = 0;
  for (int i = 0; i < n; i++)
    if (memcmp(cl[i].id, id, DHT_ID_LEN) != 0 && dht_id_cmp_dist(cl[i].id, id, mbox) < 0)
      closer++;
  if (memcmp(id, s->self_id, DHT_ID_LEN) != 0 && dht_id_cmp_dist(s->self_id, id, mbox) < 0)
    closer++;
  return closer;
}

int store_replica_limit(const store_svc *s) {
  int lim = s->set.replicas + s->set.replica_margin;
  return lim < DHT_K_MAX ? lim : DHT_K_MAX;
}

bool store_replica_is(store_svc *s, const uint8_t mbox[static STORE_MBOX_LEN],
                      const uint8_t id[static DHT_ID_LEN]) {
  int lim = store_replica_limit(s);
  return rank_of(s, mbox, id, lim) < lim;
}

bool store_replica_is_peer(store_svc *s, const uint8_t mbox[static STORE_MBOX_LEN],
                           const dht_peer *p) {
  uint8_t id[DHT_ID_LEN];
  dht_id_from_pk(id, p->pk);
  return store_replica_is(s, mbox, id);
}

bool store_replica_is_self(store_svc *s, const uint8_t mbox[static STORE_MBOX_LEN]) {
  return store_replica_is(s, mbox, s->self_id);
}

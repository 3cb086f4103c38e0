#!/usr/bin/env python3
"""test_flood - a stranger flooding a mailbox gets refusals and fills nothing
beyond the quota, with 10 roostd processes on 127.0.0.1.

Anyone who has B's public key (from an invite) can compute a pair mailbox
with B: that is how friends send before B has added them back.  So a
stranger S adds B on its side and sends 100 messages while B is offline.
Every storage node keeps at most --mailbox-quota-items of them per mailbox
(here 10); the rest are refused with the reason "mailbox full", which S's
outbox shows.  B, who never added S, fetches only its friends' mailboxes:
its inbox stays empty, and S's friend request waits in `roost friend
requests` until B accepts it with one command.  Figures: how many were stored, how many refused, and
the most items any node keeps.

Usage: test_flood.py --roostd build/roostd --roost build/roost [--seed N]
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import check, log  # noqa: E402

NODES = 10
QUOTA = 10
FLOOD = 100
EXTRA = ["--mailbox-quota-items", str(QUOTA), "--retry-max", "600", "--log-level", "info"]


def ok(r, what):
    check(r.rc == 0 and r.data is not None, "%s failed: %r" % (what, r))
    return r.data


def metric(node, name):
    text = ok(node.cli("metrics"), "%s: roost metrics" % node.name)["text"]
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    raise rlib.TestFailure("%s: no metric %s" % (node.name, name))


def run(args):
    log("seed %d (rerun with --seed %d)" % (args.seed, args.seed))
    with rlib.Env(args, "flood") as env:
        nodes = env.nodes_with_ports("n", NODES)
        seed, s, b = nodes[0], nodes[1], nodes[2]
        rlib.init_all(nodes)
        seed.start(extra=EXTRA)
        seed.wait_up()
        for n in nodes[1:]:
            n.start(bootstrap=[seed.peer], extra=EXTRA)
        for n in nodes[1:]:
            n.wait_up()
        rlib.wait_ready(nodes, 30.0)

        inv_b = ok(b.cli("invite", "--no-qr"), "B: roost invite")["invite"]
        ok(s.cli("friend", "add", inv_b, "--name", "target"), "S: friend add B")
        rc, _ = b.term(5.0)
        check(rc == 0, "B exited with %d after SIGTERM" % rc)

        for i in range(FLOOD):
            ok(s.cli("send", "target", "flood %03d" % i), "S: send")

        def settled():
            ob = ok(s.cli("outbox"), "S: roost outbox")["messages"]
            stored = [m for m in ob if m["state"] == "stored"]
            refused = [m for m in ob if m["state"] == "queued" and m["reason"]]
            return len(stored) + len(refused) == FLOOD, (stored, refused, ob)

        t0 = time.monotonic()
        while True:
            done, (stored, refused, ob) = settled()
            if done or time.monotonic() - t0 > 60:
                break
            time.sleep(0.5)
        reasons = sorted(set(m["reason"] for m in refused))
        log("FIGURE flood: %d of %d stored, %d refused (%s) after %.1f s"
            % (len(stored), FLOOD, len(refused), ", ".join(reasons), time.monotonic() - t0))
        check(done, "S's outbox did not settle: %d stored, %d refused of %d"
              % (len(stored), len(refused), FLOOD))
        check(len(stored) <= QUOTA, "%d messages stored past a quota of %d"
              % (len(stored), QUOTA))
        check(len(stored) >= 1, "nothing was stored at all")
        check(reasons and all("quota" in r or "full" in r for r in reasons),
              "refusal reasons: %r" % reasons)

        most = 0
        for n in nodes:
            if n is b or not n.alive():
                continue
            items = metric(n, "roost_mailbox_items")
            refusals = metric(n, "roost_mailbox_deposits_refused_total")
            most = max(most, items)
            # at most QUOTA of the flooded mailbox, plus S's friend request
            # (one item in B's request box)
            check(items <= QUOTA + 1, "%s keeps %d items (quota %d)" % (n.name, items, QUOTA))
            if items:
                log("%s: %d items kept, %d deposits refused" % (n.name, items, refusals))
        log("FIGURE flood: the most items any node keeps: %d (quota %d, plus one friend request)"
            % (most, QUOTA))

        # B, back, fetches its friends' mailboxes only: S is nobody to B
        b.start(bootstrap=[seed.peer], extra=EXTRA)
        b.wait_up()
        rlib.wait_ready([b], 30.0)
        r = ok(b.cli("fetch", timeout=70), "B: roost fetch")
        inbox = ok(b.cli("inbox"), "B: roost inbox")["messages"]
        check(inbox == [], "B's inbox has a stranger's messages: %r" % inbox[:2])
        log("B fetched (%d friends) and has nothing from the stranger" % r["friends"])

        # ... but S's friend request (sent by `friend add`, through B's public
        # request box with proof of work) is there, and one command accepts it
        reqs = ok(b.cli("friend", "requests"), "B: friend requests")["requests"]
        check(len(reqs) == 1 and reqs[0]["id"] == s.id and reqs[0]["valid"],
              "B's friend requests: %r" % reqs)
        r = ok(b.cli("friend", "accept", str(reqs[0]["n"]), "--name", "stranger"),
               "B: friend accept")
        check(r.get("added") is True, "friend accept: %r" % r)
        fl = ok(b.cli("friend", "list"), "B: friend list")["friends"]
        check([f["id"] for f in fl] == [s.id], "B's friends after accept: %r" % fl)
        log("B accepted S's friend request with one command")

        res = env.cli_many([(n.dir, ["stop"]) for n in nodes if n.alive()], timeout=15)
        check(all(r.rc == 0 for r in res), "roost stop: %r" % [r for r in res if r.rc][:2])


if __name__ == "__main__":
    a = rlib.parse_args(__doc__)
    sys.exit(rlib.main_wrapper(lambda: run(a)))

#!/usr/bin/env python3
"""test_messaging - a message reaches a friend who was offline, through
roostd's mailboxes, with 12 roostd processes on 127.0.0.1.

  1. 12 nodes join through one seed.  A and B exchange invites (roost
     invite / roost friend add) and are friends on both sides.
  2. B stops (SIGTERM).  A sends 20 messages; A's outbox shows every one
     "stored" with at least 3 of 5 receipts.
  3. From A's `roost mailbox B` (the A->B mailbox ID) and every node's ID,
     two of the five nodes closest to the mailbox (not the seed) are killed
     with SIGKILL.
  4. B starts again, `roost fetch`: `roost inbox --json` has all 20 exactly
     once, in order.  A's outbox then shows all 20 "delivered" (or "read").
  5. Every node but A stops; A sends a 21st message (it stays queued: nobody
     to store it), A stops, the others and then A start again: the queued
     message is stored after the restart and B receives it (nothing lost).

Every roostd runs with --retry-max 3 so that retries after a restart come
within seconds.  Usage:
  test_messaging.py --roostd build/roostd --roost build/roost [--seed N]
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import check, log  # noqa: E402

NODES = 12
MESSAGES = 20
READY_TIMEOUT = 30.0
STORED_TIMEOUT = 60.0
FETCH_TIMEOUT = 60.0
DELIVERED_TIMEOUT = 90.0
EXTRA = ["--retry-max", "3", "--log-level", "info"]


def ok(r, what):
    check(r.rc == 0 and r.data is not None, "%s failed: %r" % (what, r))
    return r.data


def outbox(node):
    return ok(node.cli("outbox"), "%s: roost outbox" % node.name)["messages"]


def wait_for(what, timeout, fn, poll=0.5):
    """Calls fn() until it returns a true value (returned) or timeout."""
    t0 = time.monotonic()
    last = None
    for _ in range(int(timeout / poll) + 2):
        last = fn()
        if last and last[0]:
            return last[1], time.monotonic() - t0
        if time.monotonic() - t0 >= timeout:
            break
        time.sleep(poll)
    raise rlib.TestFailure("%s: not within %.0f s (last: %s)" % (what, timeout,
                                                               last[1] if last else None))


def distance(a_hex, b_hex):
    return int(a_hex, 16) ^ int(b_hex, 16)


def befriend(a, b, a_name, b_name):
    inv_a = ok(a.cli("invite", "--no-qr"), "A: roost invite")["invite"]
    inv_b = ok(b.cli("invite", "--no-qr"), "B: roost invite")["invite"]
    r = ok(b.cli("friend", "add", inv_a, "--name", a_name), "B: friend add A")
    check(r.get("added") is True, "B: friend add A did not add: %r" % r)
    r = ok(a.cli("friend", "add", inv_b, "--name", b_name), "A: friend add B")
    check(r.get("added") is True, "A: friend add B did not add: %r" % r)
    for n, other, name in ((a, b, b_name), (b, a, a_name)):
        fl = ok(n.cli("friend", "list"), "%s: friend list" % n.name)["friends"]
        check([f["name"] for f in fl] == [name] and fl[0]["id"] == other.id,
              "%s: friend list is %r (want %s = %s)" % (n.name, fl, name, other.id))
    # our own invite is refused
    r = a.cli("friend", "add", inv_a)
    check(r.rc == 1 and "own invite" in r.err, "A: adding its own invite: %r" % r)


def inbox_texts(node):
    msgs = ok(node.cli("inbox"), "%s: roost inbox" % node.name)["messages"]
    return [m["text"] for m in msgs], msgs


def run(args):
    log("seed %d (rerun with --seed %d)" % (args.seed, args.seed))
    with rlib.Env(args, "msg") as env:
        nodes = env.nodes_with_ports("n", NODES)
        seed, a, b = nodes[0], nodes[1], nodes[2]
        rlib.init_all(nodes)

        # ---- 1. the network, and two friends ----
        seed.start(extra=EXTRA)
        seed.wait_up()
        for n in nodes[1:]:
            n.start(bootstrap=[seed.peer], extra=EXTRA)
        for n in nodes[1:]:
            n.wait_up()
        rlib.wait_ready(nodes, READY_TIMEOUT)
        befriend(a, b, "ann", "bea")
        # B is "bea" for A, A is "ann" for B
        log("A (%s) and B (%s) are friends" % (a.name, b.name))

        # ---- 2. B goes offline; A sends 20 messages ----
        rc, dt = b.term(5.0)
        check(rc == 0, "B exited with %d after SIGTERM" % rc)
        texts = ["message %02d from A" % i for i in range(MESSAGES)]
        t0 = time.monotonic()
        for t in texts:
            r = ok(a.cli("send", "bea", t), "A: send")
            check(r.get("state") == "queued", "A: send answered %r" % r)
        log("FIGURE send: %d messages queued in %.2f s" % (MESSAGES, time.monotonic() - t0))

        def all_stored():
            ob = outbox(a)
            good = [m for m in ob if m["state"] in ("stored", "delivered", "read")
                    and (m["state"] != "stored" or m["receipts"] >= 3)]
            return len(good) == MESSAGES and len(ob) == MESSAGES, \
                ["%s(%d)" % (m["state"], m["receipts"]) for m in ob]
        states, dt = wait_for("A's 20 messages stored (>= 3 of 5)", STORED_TIMEOUT, all_stored)
        log("FIGURE stored: all %d stored in %.2f s: %s" % (MESSAGES, dt, " ".join(states[:5])))
        ob = outbox(a)
        check(all(m["replicas"] == 5 for m in ob), "outbox replicas: %r" % ob[:2])
        table = a.cli("outbox", json_out=False)
        check(table.rc == 0 and ("stored (" in table.out or "delivered" in table.out),
              "A: roost outbox (table): %r" % table)

        # ---- 3. kill -9 two of the five nodes closest to the A->B mailbox ----
        mb = ok(a.cli("mailbox", "bea"), "A: roost mailbox")
        target = mb["to_friend"]
        b_view = ok(a.cli("mailbox", b.id), "A: roost mailbox by ID")
        check(b_view["to_friend"] == target, "mailbox by name and by ID differ")
        live = [n for n in nodes if n.alive() and n is not a]
        closest = sorted(live, key=lambda n: distance(n.node_id, target))[:5]
        victims = [n for n in closest if n is not seed][:2]
        log("five closest to mailbox %s...: %s; killing %s"
            % (target[:8], ", ".join(n.name for n in closest),
               ", ".join(n.name for n in victims)))
        for n in victims:
            os.kill(n.pid, signal.SIGKILL)
            n.wait_exit(5.0)

        # ---- 4. B comes back and fetches ----
        b.start(bootstrap=[seed.peer], extra=EXTRA)
        b.wait_up()
        rlib.wait_ready([b], READY_TIMEOUT)

        def fetched():
            r = b.cli("fetch", timeout=70)
            got, _ = inbox_texts(b)
            return len(got) >= MESSAGES, "fetch %r; inbox has %d" % (
                (r.data or r.err), len(got))
        _, dt = wait_for("B fetches all 20", FETCH_TIMEOUT, fetched, poll=1.0)
        got, msgs = inbox_texts(b)
        check(got == texts, "B's inbox is not the 20 messages once each in order: %r" % got)
        check(all(m["name"] == "ann" and m["from"] == a.id for m in msgs),
              "B's inbox: wrong sender in %r" % msgs[:2])
        log("FIGURE fetch: B has all %d messages exactly once, in order, %.2f s after it "
            "was ready" % (MESSAGES, dt))
        text = b.cli("inbox", json_out=False)
        check(text.rc == 0 and "ann: message 00 from A" in text.out, "B: roost inbox: %r" % text)

        def delivered():
            a.cli("fetch", timeout=70)  # the delivery receipts come through A's mailbox
            ob = outbox(a)
            n = sum(1 for m in ob if m["state"] in ("delivered", "read"))
            return n == MESSAGES, "%d of %d delivered" % (n, MESSAGES)
        _, dt = wait_for("A's outbox shows all delivered", DELIVERED_TIMEOUT, delivered,
                         poll=1.0)
        log("FIGURE delivered: all %d shown delivered at A %.2f s later" % (MESSAGES, dt))

        # ---- 5. a message queued while A is alone survives A's restart ----
        others = [n for n in nodes if n.alive() and n is not a]
        for n in others:
            rc, _ = n.term(5.0)
            check(rc == 0, "%s exited with %d after SIGTERM" % (n.name, rc))
        late = "message 20, queued while A was alone"
        ok(a.cli("send", "bea", late), "A: send while alone")
        time.sleep(2.0)
        m = [x for x in outbox(a) if x["text"] == late]
        check(len(m) == 1 and m[0]["state"] == "queued",
              "the message sent while alone is %r (want queued)" % m)
        rc, _ = a.term(5.0)
        check(rc == 0, "A exited with %d after SIGTERM" % rc)
        for n in nodes:
            if n is not a:
                n.start(bootstrap=[] if n is seed else [seed.peer], extra=EXTRA)
        for n in nodes:
            if n is not a:
                n.wait_up()
        a.start(bootstrap=[seed.peer], extra=EXTRA)
        a.wait_up()
        rlib.wait_ready(nodes, READY_TIMEOUT)

        def late_stored():
            m = [x for x in outbox(a) if x["text"] == late]
            return (len(m) == 1 and m[0]["state"] in ("stored", "delivered", "read")
                    and (m[0]["state"] != "stored" or m[0]["receipts"] >= 3)), m
        _, dt = wait_for("the queued message stored after A's restart", STORED_TIMEOUT,
                         late_stored)
        log("FIGURE restart: the queued message was stored %.2f s after A was ready" % dt)

        def late_received():
            b.cli("fetch", timeout=70)
            got, _ = inbox_texts(b)
            return got.count(late) == 1, "%d messages" % len(got)
        wait_for("B receives the message queued before A's restart", FETCH_TIMEOUT,
                 late_received, poll=1.0)
        got, _ = inbox_texts(b)
        check(got == texts + [late], "B's inbox after the restart: %r" % got[-3:])
        log("B has all %d messages exactly once" % len(got))

        res = env.cli_many([(n.dir, ["stop"]) for n in nodes if n.alive()], timeout=15)
        check(all(r.rc == 0 for r in res), "roost stop: %r" % [r for r in res if r.rc][:2])


if __name__ == "__main__":
    a = rlib.parse_args(__doc__)
    sys.exit(rlib.main_wrapper(lambda: run(a)))

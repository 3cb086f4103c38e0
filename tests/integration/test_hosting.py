#!/usr/bin/env python3
"""test_hosting - a friend host keeps a message when every DHT replica is
gone, with 9 roostd processes on 127.0.0.1.

  1. H hosts B: they are friends, H runs `roost host add bea --quota 1M`, and
     B runs with `--mailbox-host H` (so B's invite names H, and B registers
     its upcoming mailbox IDs with H).
  2. A and B become friends from each other's invites (A learns of H from
     B's invite).  B stops.
  3. A sends 5 messages: each is stored at the 5 DHT nodes closest to the
     mailbox and at H (H may be one of the 5).
  4. Every node that keeps a copy, except H, is killed with SIGKILL.
  5. B starts again (bootstrapping through H), fetches, and has all 5, in
     order, exactly once: from its host alone.

Usage: test_hosting.py --roostd build/roostd --roost build/roost [--seed N]
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import check, log  # noqa: E402

NODES = 9
EXTRA = ["--log-level", "info"]


def ok(r, what):
    check(r.rc == 0 and r.data is not None, "%s failed: %r" % (what, r))
    return r.data


def metric(node, name):
    text = ok(node.cli("metrics"), "%s: roost metrics" % node.name)["text"]
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    raise rlib.TestFailure("%s: no metric %s" % (node.name, name))


def befriend(x, y, x_name, y_name):
    inv_x = ok(x.cli("invite", "--no-qr"), "%s: invite" % x.name)["invite"]
    inv_y = ok(y.cli("invite", "--no-qr"), "%s: invite" % y.name)["invite"]
    ok(x.cli("friend", "add", inv_y, "--name", y_name), "%s: friend add" % x.name)
    ok(y.cli("friend", "add", inv_x, "--name", x_name), "%s: friend add" % y.name)


def run(args):
    log("seed %d (rerun with --seed %d)" % (args.seed, args.seed))
    with rlib.Env(args, "host") as env:
        nodes = env.nodes_with_ports("n", NODES)
        seed, a, b, h = nodes[0], nodes[1], nodes[2], nodes[3]
        rlib.init_all(nodes)
        seed.start(extra=EXTRA)
        seed.wait_up()
        for n in nodes[1:]:
            extra = EXTRA + (["--mailbox-host", h.peer] if n is b else [])
            n.start(bootstrap=[seed.peer], extra=extra)
        for n in nodes[1:]:
            n.wait_up()
        rlib.wait_ready(nodes, 30.0)

        befriend(h, b, "hal", "bea")
        ok(h.cli("host", "add", "bea", "--quota", "1M"), "H: host add bea")
        befriend(a, b, "ann", "bea")
        fl = ok(a.cli("friend", "list"), "A: friend list")["friends"]
        check(fl and fl[0]["hosts"] == 1, "A does not know of B's host: %r" % fl)
        time.sleep(2.0)  # B registers its mailboxes with H (at once on friend add)
        rc, _ = b.term(5.0)
        check(rc == 0, "B exited with %d after SIGTERM" % rc)

        texts = ["hosted message %d" % i for i in range(5)]
        for t in texts:
            ok(a.cli("send", "bea", t), "A: send")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            ob = ok(a.cli("outbox"), "A: outbox")["messages"]
            if all(m["state"] == "stored" and m["receipts"] >= 5 for m in ob) and \
                    metric(h, "roost_mailbox_items") >= len(texts):
                break
            time.sleep(0.5)
        log("FIGURE hosting: outbox %s" % [(m["state"], m["receipts"], m["replicas"]) for m in ob])
        # H may also be one of the 5 closest: receipts count nodes, not copies
        check(all(m["state"] == "stored" and m["receipts"] >= 5 for m in ob),
              "not stored at the replicas and the host: %r" % ob)
        check(metric(h, "roost_mailbox_items") >= len(texts), "H keeps fewer than 5 items")

        killed = []
        for n in nodes:
            if n in (a, b, h) or not n.alive():
                continue
            if metric(n, "roost_mailbox_items") > 0:
                n.signal(signal.SIGKILL)
                killed.append(n.name)
        time.sleep(0.5)
        log("killed every other node keeping a copy: %s" % ", ".join(killed))
        check(len(killed) >= 3, "only %d DHT replicas found to kill" % len(killed))

        b.start(bootstrap=[h.peer], extra=EXTRA + ["--mailbox-host", h.peer])
        b.wait_up()
        rlib.wait_ready([b], 30.0)
        got = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            ok(b.cli("fetch", timeout=70), "B: fetch")
            got = [m["text"] for m in ok(b.cli("inbox"), "B: inbox")["messages"]]
            if len(got) >= len(texts):
                break
            time.sleep(1.0)
        log("FIGURE hosting: B has %d of %d after every DHT replica died" % (len(got), len(texts)))
        check(got == texts, "B's inbox: %r" % got)

        res = env.cli_many([(n.dir, ["stop"]) for n in nodes if n.alive()], timeout=15)
        check(all(r.rc == 0 for r in res), "roost stop: %r" % [r for r in res if r.rc][:2])


if __name__ == "__main__":
    a = rlib.parse_args(__doc__)
    sys.exit(rlib.main_wrapper(lambda: run(a)))

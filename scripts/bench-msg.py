#!/usr/bin/env python3
"""bench-msg.py - end-to-end time from `roost send` to "stored" on loopback.

Starts N roostd nodes on 127.0.0.1 (temporary data directories), makes node 2
and node 3 friends, stops node 3 (so every message goes to the mailbox
replicas), then sends M messages from node 2 one after another and measures,
for each, the time from the send command to the outbox state "stored"
(>= 3 signed storage receipts, each given only after the storage node's
SQLite commit).  Also measures the same for a recipient that is online
(direct delivery: send -> "delivered").  Prints figures; no pass/fail.

Usage: bench-msg.py --roostd PATH --roost PATH [--nodes 12] [--messages 50]
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo  # noqa: E402  (Node and Demo: start/stop roostd on 127.0.0.1)


def wait_state(node, msg_id, states, limit=60):
    t0 = time.time()
    while time.time() - t0 < limit:
        for m in node.cli("outbox")["messages"]:
            if m["msg_id"] == msg_id and m["state"] in states:
                return m
        time.sleep(0.01)
    return None


def measure(alice, states, count, text):
    times = []
    for i in range(count):
        t = time.time()
        r = alice.cli("send", "bob", "%s %d" % (text, i))
        if wait_state(alice, r["msg_id"], states) is None:
            raise RuntimeError("message %d never reached %s" % (i, states))
        times.append((time.time() - t) * 1000)
    return times


def report(name, times):
    times.sort()
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    print("%-34s n=%d  median %.0f ms  p90 %.0f ms  min %.0f  max %.0f"
          % (name, len(times), statistics.median(times), p(0.9), times[0], times[-1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--roostd", required=True)
    ap.add_argument("--roost", required=True)
    ap.add_argument("--nodes", type=int, default=12)
    ap.add_argument("--messages", type=int, default=50)
    a = ap.parse_args()
    d = demo.Demo(a)
    try:
        nodes = d.nodes = [demo.Node(d, i + 1) for i in range(a.nodes)]
        nodes[0].start()
        boot = "%s@127.0.0.1:%d" % (nodes[0].id, nodes[0].port)
        for x in nodes[1:]:
            x.start(bootstrap=boot)
        if d.wait_ready(nodes):
            raise RuntimeError("nodes did not join")
        alice, bob = nodes[1], nodes[2]
        alice.cli("friend", "add", bob.cli("invite", "--no-qr")["invite"], "--name", "bob")
        bob.cli("friend", "add", alice.cli("invite", "--no-qr")["invite"], "--name", "alice")
        report("online: send -> delivered (direct)", measure(alice, ("delivered", "read"),
                                                             a.messages, "direct"))
        bob.stop()
        report("offline: send -> stored (mailbox)", measure(alice, ("stored",), a.messages,
                                                            "mailbox"))
        return 0
    finally:
        for x in d.nodes:
            x.stop()
        d.cleanup(False)


if __name__ == "__main__":
    sys.exit(main())

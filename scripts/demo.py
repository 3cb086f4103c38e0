#!/usr/bin/env python3
"""demo.py - a message reaches a friend who was offline, explained as it happens.

Starts 20 roostd nodes on 127.0.0.1 (each with its own data directory in a
temporary folder) that find each other through one seed node.  Two of them,
Alice and Bob, become friends by exchanging invites.  Bob goes offline;
Alice sends him messages, which wait, encrypted, in a mailbox kept by the
nodes closest to its ID; two of those storage nodes crash; Bob comes back,
fetches, reads, and Alice sees each message move from queued to stored,
delivered and read.  Then everything stops and the folder is removed.
Nothing is sent anywhere but 127.0.0.1 (LAN discovery is off for the demo).

Usage: demo.py --roostd PATH --roost PATH [--nodes N] [--keep]
"""
import argparse
import base64
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Node:
    def __init__(self, demo, n):
        self.demo, self.n = demo, n
        self.dir = os.path.join(demo.tmp, "node%02d" % n)
        self.port = free_port()
        self.proc = None
        self.id = None

    def cli(self, *args, check=True, timeout=15):
        cmd = [self.demo.roost, "--data-dir", self.dir, "--json"] + list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError("%s failed (%d): %s %s" % (" ".join(args), r.returncode,
                                                           r.stdout, r.stderr))
        return json.loads(r.stdout) if r.stdout.strip() else {}

    def start(self, bootstrap=None):
        cmd = [self.demo.roostd, "--data-dir", self.dir, "--listen", "127.0.0.1:%d" % self.port,
               "--lan-discovery", "off", "--portmap", "off", "--mode", "server"]
        if bootstrap:
            cmd += ["--bootstrap", bootstrap]
        self.log = open(os.path.join(self.demo.tmp, "node%02d.log" % self.n), "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log)
        deadline = time.time() + 5
        while not os.path.exists(os.path.join(self.dir, "roostd.sock")):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("node %d did not start (see %s)" % (self.n, self.log.name))
            time.sleep(0.02)
        if not self.id:
            self.id = self.cli("id")["id"]

    def crash(self):
        """kill -9: no goodbye, no saved state."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.log.close()
        self.proc = None

    def node_id(self):
        """The 32-byte DHT ID: BLAKE2b-256 of the public key in the ID text."""
        raw = base64.b32decode(self.id.upper())
        return hashlib.blake2b(raw[:32], digest_size=32).digest()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.cli("stop", check=False)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None


class Demo:
    def __init__(self, a):
        self.roostd, self.roost = a.roostd, a.roost
        self.tmp = tempfile.mkdtemp(prefix="roost-demo-")
        self.nodes = []
        self.t0 = time.time()

    def say(self, text=""):
        print(text, flush=True)

    def wait_ready(self, nodes, limit=30):
        deadline = time.time() + limit
        pending = list(nodes)
        while pending and time.time() < deadline:
            pending = [x for x in pending if x.cli("status").get("state") != "ready"]
            if pending:
                time.sleep(0.2)
        return pending

    def outbox_line(self, node):
        states = {}
        for m in node.cli("outbox")["messages"]:
            st = m["state"]
            if st == "stored":
                st = "stored (%d of %d receipts)" % (m["receipts"], m["replicas"])
            states[st] = states.get(st, 0) + 1
        return ", ".join("%d %s" % (v, k) for k, v in sorted(states.items()))

    def wait_outbox(self, node, want, limit):
        deadline = time.time() + limit
        while time.time() < deadline:
            msgs = node.cli("outbox")["messages"]
            if msgs and all(m["state"] in want for m in msgs):
                return True
            time.sleep(0.3)
        return False

    def run(self, n):
        say = self.say
        say("roost demo: %d nodes on this machine (127.0.0.1 only), in %s" % (n, self.tmp))
        say()
        self.nodes = [Node(self, i + 1) for i in range(n)]
        seed = self.nodes[0]
        seed.start()
        boot = "%s@127.0.0.1:%d" % (seed.id, seed.port)
        t = time.time()
        for x in self.nodes[1:]:
            x.start(bootstrap=boot)
        late = self.wait_ready(self.nodes)
        if late:
            raise RuntimeError("nodes %s did not join within 30 s" % [x.n for x in late])
        sizes = [x.cli("status")["table_size"] for x in self.nodes]
        say("%s  1. %d nodes start, each with a new key pair; nodes 2-%d are told only about"
            % (self.clock(), n, n))
        say("        node 1. They find each other (a Kademlia DHT: no central server) in %.1f s;"
            % (time.time() - t))
        say("        each now knows %d to %d others directly." % (min(sizes), max(sizes)))
        alice, bob = self.nodes[1], self.nodes[2]
        say()
        inv_b = bob.cli("invite", "--no-qr")["invite"]
        inv_a = alice.cli("invite", "--no-qr")["invite"]
        alice.cli("friend", "add", inv_b, "--name", "bob")
        bob.cli("friend", "add", inv_a, "--name", "alice")
        say("%s  2. Node 2 (Alice) and node 3 (Bob) become friends: each runs 'roost invite'"
            % self.clock())
        say("        and gives the other the text it prints (a signed card with its key and")
        say("        address; also shown as a QR code on a terminal):")
        say("          %s..." % inv_b[:60])
        say("        and each adds the other with 'roost friend add INVITE --name NAME'.")
        say()
        bob.stop()
        say("%s  3. Bob's node goes offline (roost stop)." % self.clock())
        say()
        texts = ["Hi Bob! Dinner on Friday?", "I'll bring the lasagne.",
                 "Call me when you're back online."]
        for txt in texts:
            alice.cli("send", "bob", txt)
        say("%s  4. Alice sends Bob %d messages ('roost send bob TEXT'). Bob is not there, so"
            % (self.clock(), len(texts)))
        say("        each one is sealed (XChaCha20-Poly1305, a key only Alice and Bob can")
        say("        derive), padded to a fixed size and deposited in today's Alice->Bob")
        say("        mailbox: the 5 nodes closest to the mailbox's ID keep a copy, and each")
        say("        signs a storage receipt.")
        say("          outbox: %s" % self.outbox_line(alice))
        if not self.wait_outbox(alice, ("stored",), 30):
            raise RuntimeError("messages not stored within 30 s: %s" % self.outbox_line(alice))
        say("%s       outbox: %s" % (self.clock(), self.outbox_line(alice)))
        mbox = bytes.fromhex(alice.cli("mailbox", "bob")["to_friend"])
        others = [x for x in self.nodes if x is not alice and x is not bob]
        others.sort(key=lambda x: bytes(a ^ b for a, b in zip(x.node_id(), mbox)))
        keepers = others[:5]
        say("        The mailbox ID is %s...: random-looking, new every day, and" % mbox.hex()[:16])
        say("        meaningless to anyone but Alice and Bob. It is kept by nodes %s."
            % ", ".join(str(x.n) for x in keepers))
        say()
        crashed = keepers[:2]
        for x in crashed:
            x.crash()
        say("%s  5. Nodes %d and %d, two of the five keeping the mailbox, crash (kill -9)."
            % (self.clock(), crashed[0].n, crashed[1].n))
        say()
        bob.start()
        if self.wait_ready([bob]):
            raise RuntimeError("Bob's node did not rejoin")
        r = bob.cli("fetch", timeout=60)
        say("%s  6. Bob's node comes back, rejoins from its saved routing table, and fetches"
            % self.clock())
        say("        its mailboxes ('roost fetch'; roostd also does it every few minutes):")
        say("        %d new message(s) from %d friend. (It asked %d storage nodes, counting"
            % (r["messages"], r["friends"], r["replicas_asked"]))
        say("        today's and yesterday's mailboxes and its friend-request box; %d answered.)"
            % r["replicas_answered"])
        inbox = bob.cli("inbox")
        got = [m["text"] for m in inbox["messages"]]
        say("        'roost inbox' shows them, in order, each exactly once:")
        for m in inbox["messages"]:
            say("          from %s: %s" % (m["name"], m["text"]))
        say("        Bob's node deleted them from the storage nodes (signed requests only")
        say("        Bob can make) and sent Alice receipts: delivered, then read.")
        say()
        ok = self.wait_outbox(alice, ("read",), 30)
        say("%s  7. Alice's outbox: %s." % (self.clock(), self.outbox_line(alice)))
        say("        (queued -> stored -> delivered -> read: 'roost outbox' on her side.)")
        say()
        alice.cli("send", "bob", "Great, see you Friday!")
        direct = self.wait_outbox(alice, ("read", "delivered"), 15)
        m = [x for x in alice.cli("outbox")["messages"] if x["text"].startswith("Great")]
        say("%s  8. Now both are online: Alice's next message goes straight to Bob's node"
            % self.clock())
        say("        (%s, no mailbox needed)." % (m[0]["state"] if m else "?"))
        say()
        for x in self.nodes:
            x.stop()
        say("%s  9. All nodes stopped. Done in %.1f s." % (self.clock(), time.time() - self.t0))
        return 0 if got == texts and ok and direct else 1

    def clock(self):
        return "[%5.1f s]" % (time.time() - self.t0)

    def cleanup(self, keep):
        for x in self.nodes:
            if x.proc and x.proc.poll() is None:
                x.proc.send_signal(signal.SIGTERM)
                try:
                    x.proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    x.proc.kill()
        if keep:
            print("kept %s (logs and data directories)" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--roostd", required=True)
    p.add_argument("--roost", required=True)
    p.add_argument("--nodes", type=int, default=20)
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    a = p.parse_args()
    if a.nodes < 6 or a.nodes > 200:
        p.error("--nodes must be from 6 to 200")
    d = Demo(a)
    try:
        return d.run(a.nodes)
    except (RuntimeError, subprocess.TimeoutExpired, KeyError, json.JSONDecodeError) as e:
        print("demo failed: %s" % e, file=sys.stderr)
        d.cleanup(True)
        return 1
    finally:
        d.cleanup(a.keep)


if __name__ == "__main__":
    sys.exit(main())

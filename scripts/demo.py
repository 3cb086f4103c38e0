#!/usr/bin/env python3
"""demo.py - a local roost network, explained as it happens.

Starts 20 roostd nodes on 127.0.0.1 (each with its own data directory in a
temporary folder), lets them find each other through one seed node, shows
lookups made with the roost CLI, restarts some nodes to show that they rejoin
on their own, then stops everything and removes the folder.  Nothing is sent
anywhere but 127.0.0.1 (LAN discovery is switched off for the demo).

Usage: demo.py --roostd PATH --roost PATH [--nodes N] [--keep]
"""
import argparse
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
               "--lan-discovery", "off"]
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

    def run(self, n):
        say = self.say
        say("roost demo: %d nodes on this machine (127.0.0.1 only), in %s" % (n, self.tmp))
        say()
        self.nodes = [Node(self, i + 1) for i in range(n)]
        seed = self.nodes[0]
        seed.start()
        say("1. Node 1 starts alone. Its identity is a new key pair; its ID (the public key")
        say("   with a checksum, what you would give a friend) is")
        say("     %s" % seed.id)
        say("   It listens on 127.0.0.1:%d." % seed.port)
        say()
        boot = "%s@127.0.0.1:%d" % (seed.id, seed.port)
        t = time.time()
        for x in self.nodes[1:]:
            x.start(bootstrap=boot)
        late = self.wait_ready(self.nodes)
        if late:
            raise RuntimeError("nodes %s did not join within 30 s" % [x.n for x in late])
        sizes = [x.cli("status")["table_size"] for x in self.nodes]
        say("2. Nodes 2 to %d start, each told only about node 1 (--bootstrap ID@HOST:PORT)." % n)
        say("   Each asks node 1 for the nodes closest to its own ID, then asks those, and so")
        say("   on (a Kademlia lookup), and every node that answers goes into its routing")
        say("   table. All %d joined in %.1f s; each now knows %d to %d others directly."
            % (n, time.time() - t, min(sizes), max(sizes)))
        say("   Every node also published a signed record of its address to the nodes")
        say("   closest to its ID.")
        say()
        a, b = self.nodes[2], self.nodes[n - 3]
        r = a.cli("lookup", b.id)
        addr = r["addresses"][0]["addr"] if r.get("addresses") else "?"
        say("3. Node %d looks up node %d by its ID alone:" % (a.n, b.n))
        say("     $ roost --data-dir %s lookup %s..." % (a.dir, b.id[:16]))
        say("   It found node %d's signed record, at %s, in %d round(s) and %d messages"
            % (b.n, addr, r["rounds"], r["messages"]))
        say("   (%d ms). Node %d really is at 127.0.0.1:%d." % (r["time_ms"], b.n, b.port))
        say()
        rng = random.Random(int(time.time()))
        ok = total = 0
        for x in self.nodes:
            for y in rng.sample([z for z in self.nodes if z is not x], 5):
                total += 1
                res = x.cli("lookup", y.id, check=False)
                ok += any(ad["addr"].endswith(":%d" % y.port) for ad in res.get("addresses", []))
        say("4. Every node looks up 5 others at random: %d of %d lookups found the right" % (ok, total))
        say("   address.")
        say()
        seed.stop()
        again = rng.sample(self.nodes[1:], 3)
        for x in again:
            x.stop()
        for x in again:
            x.start()  # no --bootstrap: the saved routing table is enough
        late = self.wait_ready(again)
        found = 0
        for x in again:
            y = rng.choice([z for z in self.nodes[1:] if z is not x])
            res = x.cli("lookup", y.id, check=False)
            found += any(ad["addr"].endswith(":%d" % y.port) for ad in res.get("addresses", []))
        say("5. Node 1 (the only node the others were told about) stops for good, and nodes")
        say("   %s restart with no bootstrap node at all. They rejoin from the routing"
            % ", ".join(str(x.n) for x in again))
        say("   table they saved when they stopped (%d of 3 ready), and %d of 3 lookups"
            % (3 - len(late), found))
        say("   from them succeed: the network no longer needs its first node.")
        say()
        m = self.nodes[1].cli("metrics")["text"]
        rx = [l for l in m.splitlines() if l.startswith("roost_rx_packets_total")]
        say("6. Everything each node said was encrypted and signed: node 2 alone received")
        say("   %s datagrams. See it yourself with 'roost metrics', 'roost peers'," % (rx[0].split()[1] if rx else "?"))
        say("   'roost status' (docs/cli.md).")
        say()
        for x in self.nodes:
            x.stop()
        say("7. All nodes stopped (roost stop). Done in %.1f s." % (time.time() - self.t0))
        return 0 if ok == total and found == 3 and not late else 1

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

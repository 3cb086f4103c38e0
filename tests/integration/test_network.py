#!/usr/bin/env python3
"""test_network - 30 roostd processes on 127.0.0.1 form one network.

  1. 30 nodes, each with its own data dir and port, all bootstrapped from
     one seed; every node reaches "ready" within 30 s.
  2. From every node, lookups of 20 random other nodes return an address
     with that node's port.
  2c. One more node, in roostd's default mode (auto), says so, and (checked
     after step 3) becomes a server once a dial-back proves it reachable.
  3. The seed stops (SIGTERM -> exit 0 within 2 s); 5 random other nodes
     are restarted with NO --bootstrap: they rejoin from peers.dat alone,
     reach "ready", and lookups from them and of them still succeed.
  4. roost stop on every node: each roostd exits 0 within 2 s; none is left.

Prints timing figures (time to all-ready, lookup latency, rounds and
messages per lookup).  Usage:
  test_network.py --roostd build/roostd --roost build/roost [--seed N]
"""
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import check, log  # noqa: E402

NODES = 30
LOOKUPS_PER_NODE = 20
RESTARTS = 5
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 2.0
# s from its start: dial-backs come every 30 s until one decides, and one
# decides once a server it has not sent to for 2-4 minutes can probe it;
# joining and publishing its record reach most of these 30 nodes (CI: ~5 min)
AUTO_TIMEOUT = 450


def lookup_jobs(pairs):
    return [(src.dir, ["lookup", dst.id]) for src, dst in pairs]


def check_lookups(env, pairs, what, stats):
    """Runs the lookups of pairs [(src, dst)]; every one must find dst's
    record with an address on dst's port.  Adds figures to stats."""
    t0 = time.monotonic()
    res = env.cli_many(lookup_jobs(pairs), parallel=6)
    wall = time.monotonic() - t0
    bad = []
    for (src, dst), r in zip(pairs, res):
        d = r.data or {}
        ports = [rlib.addr_port(a.get("addr")) for a in d.get("addresses", [])
                 if isinstance(a, dict)]
        if r.rc != 0 or not d.get("found") or dst.port not in ports:
            bad.append("%s -> %s (port %d): %r" % (src.name, dst.name, dst.port, r))
            continue
        if d.get("id") != dst.id:
            bad.append("%s -> %s: answer is for %s" % (src.name, dst.name, d.get("id")))
            continue
        stats["time_ms"].append(d.get("time_ms", 0))
        stats["rounds"].append(d.get("rounds", 0))
        stats["messages"].append(d.get("messages", 0))
        stats["wall_ms"].append(r.elapsed * 1000.0)
    log("%s: %d lookups, %d failed, %.2f s wall (6 in parallel)"
        % (what, len(pairs), len(bad), wall))
    check(not bad, "%s: %d of %d lookups failed, e.g.:\n  %s"
          % (what, len(bad), len(pairs), "\n  ".join(bad[:10])))


def report(what, stats):
    def fig(k):
        v = stats[k]
        return "p50 %s p90 %s max %s" % (rlib.percentile(v, 50), rlib.percentile(v, 90),
                                          max(v) if v else "-")
    slow = sum(1 for t in stats["time_ms"] if t >= 1000)
    log("FIGURE %s: n=%d time_ms %s (>= 1 s: %d) | roost wall_ms p50 %.1f max %.1f | "
        "rounds %s | messages %s"
        % (what, len(stats["time_ms"]), fig("time_ms"), slow,
           rlib.percentile(stats["wall_ms"], 50), max(stats["wall_ms"] or [0]),
           fig("rounds"), fig("messages")))


def new_stats():
    return {"time_ms": [], "rounds": [], "messages": [], "wall_ms": []}


def run(args):
    rng = random.Random(args.seed)
    log("seed %d (rerun with --seed %d)" % (args.seed, args.seed))
    with rlib.Env(args, "net") as env:
        nodes = env.nodes_with_ports("n", NODES)
        seed, others = nodes[0], nodes[1:]
        rlib.init_all(nodes)
        log("%d nodes initialised in %s" % (NODES, env.tmp))

        # ---- 1. start: seed first, then everyone through it ----
        t_start = time.monotonic()
        seed.start()
        seed.wait_up()
        for n in others:
            n.start(bootstrap=[seed.peer])
        for n in others:
            n.wait_up()
        t_launched = time.monotonic() - t_start
        ready = rlib.wait_ready(nodes, READY_TIMEOUT)
        t_ready = time.monotonic() - t_start
        log("FIGURE startup: %d processes launched in %.2f s; all ready %.2f s after the "
            "first start (last node ready at %.2f s of polling, median %.2f s)"
            % (NODES, t_launched, t_ready, max(ready.values()),
               rlib.percentile(list(ready.values()), 50)))
        sizes = [r.data.get("table_size", 0) for r in env.cli_many([(n.dir, ["status"])
                                                                     for n in nodes])]
        log("FIGURE table_size after ready: min %d p50 %d max %d"
            % (min(sizes), rlib.percentile(sizes, 50), max(sizes)))

        # ---- 2. lookups: 20 random others from every node ----
        pairs = []
        for src in nodes:
            for dst in rng.sample([n for n in nodes if n is not src], LOOKUPS_PER_NODE):
                pairs.append((src, dst))
        st = new_stats()
        check_lookups(env, pairs, "lookups (all nodes)", st)
        report("lookups (30 nodes, %d)" % len(pairs), st)

        # ---- 2b. the NAT service's vote: peers see each node at its own
        # address (on loopback every peer counts as a network of its own) ----
        probe = rng.sample(others, 3)
        deadline = time.monotonic() + 30
        pending = list(probe)
        while pending and time.monotonic() < deadline:
            res = env.cli_many([(n.dir, ["nat", "--json"]) for n in pending])
            still = []
            for n, r in zip(pending, res):
                fams = (r.data or {}).get("families") or [{}]
                v4 = fams[0] if isinstance(fams[0], dict) else {}
                if r.rc == 0 and v4.get("known"):
                    want = "127.0.0.1:%d" % n.port
                    check(v4.get("public_address") == want,
                          "%s: roost nat says %r, want %s" % (n.name, v4, want))
                    check(v4.get("mapping") == "endpoint-independent",
                          "%s: mapping %r" % (n.name, v4.get("mapping")))
                else:
                    still.append(n)
            pending = still
            if pending:
                time.sleep(1)
        check(not pending, "roost nat: no public address after 30 s on %s"
              % ", ".join(n.name for n in pending))
        # roost status carries the same vote, and a reachability line, in words
        for n, r in zip(probe, env.cli_many([(n.dir, ["status", "--json"]) for n in probe])):
            pa = (r.data or {}).get("public_address") or ""
            check(pa.startswith("127.0.0.1:%d, seen there by peers in " % n.port),
                  "%s: roost status public_address %r" % (n.name, pa))
            ra = (r.data or {}).get("reachability") or ""
            check(ra.startswith(("reachable at 127.0.0.1:%d " % n.port, "not known yet",
                                 "not reachable")),
                  "%s: roost status reachability %r" % (n.name, ra))
        log("roost nat: %d nodes know their address from their peers' reports" % len(probe))

        # ---- 2c. a node in roostd's default mode (auto) starts as a client
        # and becomes a server once a dial-back proves it reachable: on
        # loopback a prober it never sent to gets in ----
        auto = env.nodes_with_ports("auto", 1)[0]
        auto.mode = None
        rlib.init_all([auto])
        t0 = time.monotonic()
        auto.start(bootstrap=[seed.peer], extra=["--log-level", "info"])
        auto.wait_up()
        check("mode auto: a client until a dial-back proves us reachable" in auto.log_text(),
              "auto: roostd did not say it starts in mode auto (the default)")
        r = auto.cli("status", "--json")
        check(r.rc == 0, "auto: roost status: %r" % r)
        first = (r.data or {}).get("mode")
        # the rest is checked after step 3: its first dial-backs may find no
        # prober (it sent to most of these 30 nodes while joining, and a
        # NAT would let those in), and it takes 2-4 minutes of quiet before
        # they count as strangers again

        # ---- 3. seed stops; 5 others restart without --bootstrap ----
        rc, dt = seed.term(STOP_TIMEOUT)
        log("FIGURE seed SIGTERM -> exit %d in %.3f s" % (rc, dt))
        check(rc == 0, "seed exited with %d after SIGTERM (want 0)" % rc)
        check(os.path.exists(os.path.join(seed.dir, "peers.dat")),
              "seed left no peers.dat after SIGTERM")

        restarted = rng.sample(others, RESTARTS)
        log("restarting without --bootstrap: %s" % ", ".join(n.name for n in restarted))
        for n in restarted:
            rc, dt = n.term(STOP_TIMEOUT)
            check(rc == 0, "%s exited with %d after SIGTERM (want 0)" % (n.name, rc))
            pd = os.path.join(n.dir, "peers.dat")
            check(os.path.exists(pd), "%s left no peers.dat after SIGTERM" % n.name)
            check(rlib.file_mode(pd) == 0o600, "%s: peers.dat has mode %o (want 600)"
                  % (n.name, rlib.file_mode(pd)))
        t_restart = time.monotonic()
        for n in restarted:
            n.start()  # no --bootstrap: peers.dat alone
            check("--bootstrap" not in n.proc.args, "internal: restart passed --bootstrap")
        for n in restarted:
            n.wait_up()
        rready = rlib.wait_ready(restarted, READY_TIMEOUT)
        log("FIGURE rejoin from peers.dat: all %d ready %.2f s after restart (max poll %.2f s)"
            % (RESTARTS, time.monotonic() - t_restart, max(rready.values())))

        live = [n for n in others if n.alive()]
        check(len(live) == NODES - 1, "only %d of %d non-seed nodes are running"
              % (len(live), NODES - 1))
        pairs = []
        for r in restarted:
            for dst in rng.sample([n for n in live if n is not r], 10):
                pairs.append((r, dst))
            for src in rng.sample([n for n in live if n is not r and n not in restarted], 10):
                pairs.append((src, r))
        st2 = new_stats()
        check_lookups(env, pairs, "lookups after restart (from and to the restarted)", st2)
        report("lookups after restart (%d)" % len(pairs), st2)

        # ---- 3b. the auto node of step 2c: a server once a dial-back got in ----
        deadline = t0 + AUTO_TIMEOUT
        r = None
        while time.monotonic() < deadline:
            r = auto.cli("nat", "--json")
            if r.rc == 0 and (r.data or {}).get("mode") == "server":
                break
            time.sleep(2)
        want = "reachable at 127.0.0.1:%d " % auto.port
        ra = (auto.cli("status", "--json").data or {}).get("reachability") or ""
        check(r is not None and (r.data or {}).get("mode") == "server" and ra.startswith(want),
              "auto: not a server %d s after its start (roost nat %r, reachability %r)"
              % (AUTO_TIMEOUT, r.data if r else None, ra))
        check((r.data or {}).get("introducers") == [],
              "auto: a server keeps introducers: %r" % r.data)
        log("FIGURE default mode auto: first status said %s; server after a dial-back %.1f s "
            "after start (%d dial-backs asked)" % (first, time.monotonic() - t0,
                                                   (r.data or {}).get("dialbacks", -1)))
        rc, _ = auto.term(STOP_TIMEOUT)
        check(rc == 0, "auto exited with %d after SIGTERM" % rc)

        # ---- 4. roost stop everywhere ----
        t0 = time.monotonic()
        res = env.cli_many([(n.dir, ["stop"]) for n in live], parallel=6, timeout=10)
        bad = []
        stop_times = []
        for n, r in zip(live, res):
            if r.rc != 0:
                bad.append("%s: %r" % (n.name, r))
                continue
            stop_times.append(r.elapsed)
            try:
                rc = n.wait_exit(STOP_TIMEOUT)
            except rlib.TestFailure as e:
                bad.append(str(e))
                continue
            if rc != 0:
                bad.append("%s exited with %d after roost stop" % (n.name, rc))
            elif r.elapsed > STOP_TIMEOUT:
                bad.append("%s: roost stop took %.2f s (want <= %.1f)"
                           % (n.name, r.elapsed, STOP_TIMEOUT))
        log("FIGURE roost stop: %d nodes in %.2f s; per stop p50 %.3f s max %.3f s"
            % (len(live), time.monotonic() - t0, rlib.percentile(stop_times, 50),
               max(stop_times or [0])))
        check(not bad, "roost stop:\n  " + "\n  ".join(bad))
        left = [p.pid for p in env.procs if p.poll() is None]
        check(not left, "roostd processes still running: %s" % left)
        for p in env.procs:
            try:
                with open("/proc/%d/cmdline" % p.pid, "rb") as f:
                    cmd = f.read()
                check(env.tmp.encode() not in cmd, "pid %d still runs %r" % (p.pid, cmd))
            except FileNotFoundError:
                pass
        log("all %d roostd processes (%d starts) have exited" % (NODES, len(env.procs)))


if __name__ == "__main__":
    a = rlib.parse_args(__doc__)
    sys.exit(rlib.main_wrapper(lambda: run(a)))

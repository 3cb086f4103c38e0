"""roostlab - real roostd processes in the NAT lab (python3, stdlib only).

Owns what the natlab tests with roostd share: a Roost node (a data
directory in the lab's run directory, a roostd started with Node.spawn in a
lab namespace, the roost CLI run in the same namespace with --json), bounded
polling, and the test scaffolding (arguments, skip, deadline, teardown
report) of tests/natlab/test_roostd_*.py.

    import natlab, roostlab
    with natlab.Lab() as lab:
        pub = lab.add_public("p1")
        s1 = roostlab.Roost(lab, pub, "s1", args).start(mode="server")
        ...
        roostlab.wait_until("s1 ready", 10, lambda: s1.status().get("state") == "ready")

Invariants: every roostd is a lab process (the lab stops it, by its PID,
on teardown); --lan-discovery is off (no multicast on the lab's LANs);
every CLI call and every wait is bounded.
"""
import argparse
import json
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
import natlab  # noqa: E402
from natlab import log  # noqa: E402

PORT = 7464  # every roostd listens on its namespace's port 7464


class TestFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def wait_until(what, timeout, fn, poll=0.5, detail=None):
    """Calls fn() every poll s until it returns a true value (returned) or
    timeout s passed: TestFailure naming what, with fn's last value, and
    what detail() returns then when given."""
    t_end = time.monotonic() + timeout
    last = None
    for _ in range(int(timeout / poll) + 2):
        last = fn()
        if last:
            return last
        if time.monotonic() >= t_end:
            break
        time.sleep(poll)
    raise TestFailure("%s: not within %.0f s (last: %r%s)"
                      % (what, timeout, last, "; %r" % (detail(),) if detail else ""))


class Roost:
    """One roost node: roostd in lab node `where` (a Public or Host), data
    in <run_dir>/<name>.  listen: the address roostd binds (a public host's
    own address, or 0.0.0.0 behind a NAT)."""

    def __init__(self, lab, where, name, args, listen=None):
        self.lab, self.where, self.name = lab, where, name
        self.roostd, self.roost = args.roostd, args.roost
        self.dir = os.path.join(lab.run_dir, name)
        bind = listen or (where.addr if isinstance(where, natlab.Public) else "0.0.0.0")
        self.listen = "%s:%d" % (bind, PORT)
        self.proc = None
        self.id = None
        r = self.cli("init")
        check(r.get("id") and len(r["id"]) == 56, "%s: roost init answered %r" % (name, r))
        self.id = r["id"]

    @property
    def peer(self):
        """ID@HOST:PORT, for --bootstrap (public nodes only)."""
        return "%s@%s" % (self.id, self.listen)

    def start(self, mode="server", portmap="off", bootstrap=(), log_level=None):
        """Starts roostd (--mode, --portmap, a --bootstrap per Roost or
        ID@HOST:PORT; --log-level log_level, else $ROOSTLAB_LOG_LEVEL, else
        info) and waits until its control socket answers: self."""
        log_level = log_level or os.environ.get("ROOSTLAB_LOG_LEVEL", "info")
        argv = [self.roostd, "--data-dir", self.dir, "--listen", self.listen,
                "--lan-discovery", "off", "--mode", mode, "--portmap", portmap,
                "--log-level", log_level]
        for b in bootstrap:
            argv += ["--bootstrap", b.peer if isinstance(b, Roost) else b]
        self.proc = self.where.spawn(argv, name=self.name)
        wait_until("%s answers status" % self.name, 10,
                   lambda: self.alive_or_fail() and self.cli("status", check=False), poll=0.1)
        return self

    def alive_or_fail(self):
        check(self.proc.alive(), "%s (pid %d) exited with %s; log:\n%s"
              % (self.name, self.proc.pid, self.proc.rc, natlab._tail(self.proc.output())))
        return True

    def cli(self, *args, check=True, timeout=20.0):
        """roost --data-dir DIR ARGS --json in this node's namespace: the
        parsed JSON ({} when none), or None when it failed and not check."""
        argv = [self.roost, "--data-dir", self.dir] + list(args) + ["--json"]
        r = self.where.run(argv, timeout=timeout, check=False)
        data = None
        if r.out.strip():
            try:
                data = json.loads(r.out)
            except ValueError:
                data = None
        if r.rc != 0 or data is None:
            if check:
                raise TestFailure("%s: roost %s failed: %r" % (self.name, " ".join(args), r))
            return None
        return data

    def text(self, *args, timeout=20.0):
        """roost ARGS without --json: the Result (for what a user reads)."""
        return self.where.run([self.roost, "--data-dir", self.dir] + list(args),
                              timeout=timeout, check=False)

    def status(self):
        return self.cli("status", check=False) or {}

    def nat(self):
        return self.cli("nat", check=False) or {}

    def nat_when(self, reachable):
        """roost nat --json when its "reachable" is reachable ("reachable",
        "not reachable", "unknown"), else None (for wait_until)."""
        d = self.nat()
        return d if d.get("reachable") == reachable else None

    def peers(self):
        """The node IDs in its routing table (roost peers --json)."""
        return [p["id"] for p in (self.cli("peers", check=False) or {}).get("peers", [])]

    def metric(self, name):
        """The value of an unlabelled counter or gauge of roost metrics
        (roost_<name>), 0 when absent."""
        text = (self.cli("metrics", check=False) or {}).get("text", "")
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "roost_" + name:
                return float(parts[1])
        return 0

    def log(self):
        return self.proc.output() if self.proc else ""

    def stop(self):
        """roost stop (roostd deletes its mappings, at most 3 s), then the
        exit code."""
        self.cli("stop", timeout=15.0)
        return self.proc.wait(10.0)


def nat_v4(n):
    """The IPv4 entry of roost nat --json (or {})."""
    for f in n.get("families", []):
        if f.get("family") == "IPv4":
            return f
    return {}


def publics(lab, args, count, prefix="s"):
    """count public roostd servers (each its own host and /24), the first
    the seed of the others; returns them once all are ready."""
    nodes = []
    for i in range(count):
        host = lab.add_public("%s%d" % (prefix, i + 1))
        nodes.append(Roost(lab, host, "%s%d" % (prefix, i + 1), args))
    nodes[0].start(mode="server")
    for n in nodes[1:]:
        n.start(mode="server", bootstrap=[nodes[0]])
    wait_until("public nodes ready", 20,
               lambda: all(n.alive_or_fail() and n.status().get("state") == "ready"
                           for n in nodes))
    return nodes


def parse_args(desc):
    p = argparse.ArgumentParser(description=desc)
    p.add_argument("--roostd", help="path of the roostd binary")
    p.add_argument("--roost", help="path of the roost CLI binary")
    p.add_argument("--keep", action="store_true", help="keep the run directory")
    args, _ = p.parse_known_args()
    return args


def main(desc, run, deadline):
    """The natlab test frame: skip (exit 77) when the lab cannot run here
    or the binaries were not given; run(lab, args) within deadline s; on
    failure the tail of every lab process's output; teardown, and no lab
    namespace left.  Returns the exit code."""
    args = parse_args(desc)
    reason = natlab.unavailable_reason(igd=True)
    if not reason and not (args.roostd and args.roost and os.access(args.roostd, os.X_OK)
                           and os.access(args.roost, os.X_OK)):
        reason = "needs --roostd and --roost (the build's binaries)"
    if reason:
        log("SKIP: %s" % reason)
        return natlab.SKIP_CODE

    def on_sig(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    def on_alarm(signum, frame):
        raise TestFailure("deadline of %d s reached" % deadline)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_sig)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(deadline)
    t0 = time.monotonic()
    lab = None
    ok = False
    rc = 1
    try:
        lab = natlab.Lab(keep=args.keep)
        run(lab, args)
        ok = True
        rc = 0
    except natlab.LabUnavailable as e:
        log("SKIP: %s" % e)
        rc = natlab.SKIP_CODE
    except (TestFailure, natlab.LabError, KeyboardInterrupt) as e:
        log("FAIL: %s" % e)
    except Exception:
        import traceback
        traceback.print_exc(file=sys.stdout)
        log("FAIL: unexpected exception")
    finally:
        signal.alarm(0)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)  # let the teardown finish
        if lab is not None:
            if not ok:
                for p in lab.procs:
                    out = p.output().splitlines()[-40:]
                    log("---- %s (pid %d, %s) last %d lines ----"
                        % (p.name, p.pid, "running" if p.alive() else "exit %s" % p.rc,
                           len(out)))
                    for l in out:
                        log("  " + l)
            try:
                lab.close(raise_errors=ok)
            except natlab.LabError as e:
                log("FAIL: %s" % e)
                rc = 1
            left = lab.leftover_namespaces()
            if left:
                log("FAIL: namespaces left behind: %s" % left)
                rc = 1
    log("%s (%.1f s)" % ({0: "PASS", natlab.SKIP_CODE: "SKIP"}.get(rc, "FAIL"),
                         time.monotonic() - t0))
    return rc

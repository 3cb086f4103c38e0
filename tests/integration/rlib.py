"""rlib - shared helpers for roost's integration tests (python3, stdlib only).

Starts and stops roostd processes on 127.0.0.1 with free ports and their own
data directories under one temporary directory, runs the roost CLI with
--json and checks exit codes, and waits with bounded loops.

Rules every test follows through this module:
  - every roostd gets --lan-discovery off, --portmap off (no gateway is ever
    asked; roostd would not ask for a loopback socket anyway), --mode server
    (a network of a few nodes on loopback is its own seed: auto, the
    default, waits for dial-backs that need several servers first) and
    --listen 127.0.0.1:PORT;
  - only processes this module started are signalled, by their recorded PID;
  - Env.__exit__ (a try/finally) stops every roostd still running (TERM,
    then KILL) and removes the temporary directory, also on failure;
  - every wait is bounded in time and in iterations.

roostd is started with PR_SET_PDEATHSIG (SIGKILL) when the test is single
threaded, so that even a test killed by CTest's timeout leaves no daemon.
"""
import argparse
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

LOOPBACK = "127.0.0.1"
PR_SET_PDEATHSIG = 1


class TestFailure(Exception):
    """A check failed; the message says which and why."""


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def log(*a):
    print(*a, flush=True)


def parse_args(desc, extra=None):
    p = argparse.ArgumentParser(description=desc)
    p.add_argument("--roostd", required=True, help="path of the roostd binary")
    p.add_argument("--roost", required=True, help="path of the roost CLI binary")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the random choices (default: random, printed)")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary directory (for debugging)")
    if extra:
        extra(p)
    a = p.parse_args()
    for b in (a.roostd, a.roost):
        if not os.access(b, os.X_OK):
            p.error("%s is not an executable" % b)
    a.roostd = os.path.abspath(a.roostd)
    a.roost = os.path.abspath(a.roost)
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1 << 32)
    return a


def free_udp_ports(n):
    """n distinct free UDP ports on 127.0.0.1 (all sockets are held open
    until every port is chosen, so they are distinct)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def addr_port(addr):
    """'127.0.0.1:7464' or '[::1]:7464' -> 7464 (None if not parsable)."""
    try:
        return int(addr.rsplit(":", 1)[1])
    except (IndexError, ValueError, AttributeError):
        return None


def percentile(vals, p):
    if not vals:
        return float("nan")
    v = sorted(vals)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


def file_mode(path):
    return os.stat(path).st_mode & 0o777


def _pdeathsig():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # best effort: Env.__exit__ is the real cleanup
        pass


class CliResult:
    def __init__(self, argv, rc, out, err, elapsed):
        self.argv, self.rc, self.out, self.err, self.elapsed = argv, rc, out, err, elapsed
        self.data = None
        line = out.strip().splitlines()[-1] if out.strip() else ""
        if line.startswith("{"):
            try:
                self.data = json.loads(line)
            except ValueError:
                self.data = None

    def __repr__(self):
        return "roost %s -> rc=%s stdout=%r stderr=%r" % (
            " ".join(self.argv[1:]), self.rc, self.out[-400:], self.err[-400:])


class Env:
    """One test's world: binaries, the temporary directory, the nodes and
    every process started.  Use as a context manager."""

    def __init__(self, args, name):
        self.roostd = args.roostd
        self.roost = args.roost
        self.keep = args.keep
        self.tmp = tempfile.mkdtemp(prefix="rit-%s-" % name, dir="/tmp")
        os.chmod(self.tmp, 0o700)
        self.nodes = []
        self.procs = []  # every roostd Popen ever started (for cleanup)
        self.failed = False

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.failed = et is not None
        try:
            if self.failed:
                self.dump_logs()
        finally:
            self.cleanup()
        return False

    def node(self, name, port=None):
        n = Node(self, name, port)
        self.nodes.append(n)
        return n

    def nodes_with_ports(self, prefix, count):
        ports = free_udp_ports(count)
        return [self.node("%s%02d" % (prefix, i), ports[i]) for i in range(count)]

    # ---- running processes ----

    def popen_roostd(self, argv, logpath):
        argv = [self.roostd] + list(argv)
        logf = open(logpath, "ab")
        try:
            pre = _pdeathsig if threading.active_count() == 1 else None
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                 preexec_fn=pre, close_fds=True)
        finally:
            logf.close()
        self.procs.append(p)
        return p

    def run_roostd(self, argv, timeout=10.0):
        """Runs roostd to completion (usage errors, --paths...): rc, out, err."""
        argv = [self.roostd] + list(argv)
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=timeout, preexec_fn=_pdeathsig)
        except subprocess.TimeoutExpired:
            raise TestFailure("roostd %s did not exit within %.1f s" % (argv[1:], timeout))
        return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")

    def cli(self, args, data_dir=None, json_out=True, timeout=20.0):
        argv = [self.roost]
        if data_dir:
            argv += ["--data-dir", data_dir]
        argv += list(args)
        if json_out:
            argv.append("--json")
        t0 = time.monotonic()
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure("%s did not exit within %.1f s" % (" ".join(argv), timeout))
        return CliResult(argv, r.returncode, r.stdout.decode(errors="replace"),
                         r.stderr.decode(errors="replace"), time.monotonic() - t0)

    def cli_many(self, jobs, parallel=6, timeout=20.0):
        """jobs: list of (data_dir, args).  Runs them with at most parallel
        processes at a time (no threads: Popen, output to files, poll every
        2 ms, so CliResult.elapsed is each command's own wall time).
        Returns the CliResults in order."""
        results = [None] * len(jobs)
        running = {}  # index -> (Popen, t0, argv, outfile, errfile)
        nxt = 0
        scratch = tempfile.mkdtemp(prefix="cli-", dir=self.tmp)
        try:
            for _ in range(int((timeout + 1) * 500) * (len(jobs) + 1)):
                while nxt < len(jobs) and len(running) < parallel:
                    d, args = jobs[nxt]
                    argv = [self.roost, "--data-dir", d] + list(args) + ["--json"]
                    of = open(os.path.join(scratch, "%d.out" % nxt), "w+b")
                    ef = open(os.path.join(scratch, "%d.err" % nxt), "w+b")
                    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=of, stderr=ef)
                    running[nxt] = (p, time.monotonic(), argv, of, ef)
                    nxt += 1
                if not running:
                    break
                for idx in list(running):
                    p, t0, argv, of, ef = running[idx]
                    if p.poll() is None:
                        if time.monotonic() - t0 > timeout:
                            raise TestFailure("%s did not exit within %.1f s"
                                              % (" ".join(argv), timeout))
                        continue
                    el = time.monotonic() - t0
                    of.seek(0)
                    ef.seek(0)
                    results[idx] = CliResult(argv, p.returncode,
                                             of.read().decode(errors="replace"),
                                             ef.read().decode(errors="replace"), el)
                    of.close()
                    ef.close()
                    del running[idx]
                if running:
                    time.sleep(0.002)
        finally:
            for p, _, _, of, ef in running.values():
                if p.poll() is None:
                    p.kill()
                p.wait()
                of.close()
                ef.close()
            shutil.rmtree(scratch, ignore_errors=True)
        check(all(r is not None for r in results), "internal: cli_many loop bound reached")
        return results

    # ---- cleanup ----

    def dump_logs(self, lines=25):
        for n in self.nodes:
            if os.path.exists(n.logpath):
                with open(n.logpath, "rb") as f:
                    tail = f.read().decode(errors="replace").splitlines()[-lines:]
                if tail:
                    log("---- %s log (last %d lines) ----" % (n.name, len(tail)))
                    for l in tail:
                        log("  " + l)

    def cleanup(self):
        alive = [p for p in self.procs if p.poll() is None]
        for p in alive:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        t_end = time.monotonic() + 3.0
        for p in alive:
            try:
                p.wait(timeout=max(0.01, t_end - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=5)
        if alive:
            log("cleanup: stopped %d roostd process(es) still running" % len(alive))
        if self.keep:
            log("keeping %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


class Node:
    def __init__(self, env, name, port=None):
        self.env = env
        self.name = name
        self.dir = os.path.join(env.tmp, name)
        self.logpath = os.path.join(env.tmp, name + ".log")
        self.mode = "server"
        self.port = port if port is not None else free_udp_ports(1)[0]
        self.proc = None
        self.id = None
        self.node_id = None

    @property
    def addr(self):
        return "%s:%d" % (LOOPBACK, self.port)

    @property
    def peer(self):
        return "%s@%s" % (self.id, self.addr)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def sock(self):
        return os.path.join(self.dir, "roostd.sock")

    def init(self):
        r = self.env.cli(["init"], data_dir=self.dir)
        self.set_id(r)
        return self.id

    def set_id(self, r):
        """Takes the ID from a roost init --json result."""
        check(r.rc == 0 and r.data and len(r.data.get("id", "")) == 56,
              "roost init failed: %r" % r)
        self.id = r.data["id"]
        self.node_id = r.data.get("node_id")

    def argv(self, bootstrap=(), extra=()):
        a = ["--data-dir", self.dir, "--listen", self.addr, "--lan-discovery", "off",
             "--portmap", "off"]
        if self.mode:  # None: roostd's default
            a += ["--mode", self.mode]
        for b in bootstrap:
            a += ["--bootstrap", b]
        return a + list(extra)

    def start(self, bootstrap=(), extra=()):
        check(self.proc is None or self.proc.poll() is not None,
              "%s is already running (pid %d)" % (self.name, self.pid or 0))
        with open(self.logpath, "ab") as f:
            f.write(("==== start %s at %.3f\n" % (self.name, time.time())).encode())
        self.last_start = (tuple(bootstrap), tuple(extra))
        self.proc = self.env.popen_roostd(self.argv(bootstrap, extra), self.logpath)
        return self.proc

    def _lost_port(self):
        """True when roostd exited because its port was taken meanwhile (a
        free port is only free until someone else binds it)."""
        if self.proc is None or self.proc.poll() != 1:
            return False
        tail = self.log_text().rsplit("==== start", 1)[-1]
        return "cannot listen on" in tail and "address already in use" in tail.lower()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cli(self, *args, json_out=True, timeout=20.0):
        return self.env.cli(list(args), data_dir=self.dir, json_out=json_out, timeout=timeout)

    def status(self, timeout=10.0):
        return self.cli("status", timeout=timeout)

    def wait_up(self, timeout=10.0):
        """Until the control socket answers status (bounded)."""
        t_end = time.monotonic() + timeout
        last = None
        retries = 3
        for _ in range(int(timeout / 0.05) + 1):
            if retries > 0 and self._lost_port():
                retries -= 1
                old = self.port
                self.port = free_udp_ports(1)[0]
                log("%s: port %d was taken meanwhile, starting again on %d"
                    % (self.name, old, self.port))
                self.start(*self.last_start)
                continue
            check(self.alive(), "%s (pid %s) exited with %s while starting"
                  % (self.name, self.pid, self.proc.poll() if self.proc else None))
            if os.path.exists(self.sock):
                last = self.status()
                if last.rc == 0 and last.data:
                    return last.data
            if time.monotonic() >= t_end:
                break
            time.sleep(0.05)
        raise TestFailure("%s did not answer status within %.1f s (last: %r)"
                          % (self.name, timeout, last))

    def signal(self, sig):
        check(self.alive(), "%s is not running" % self.name)
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout):
        """The exit code, or a TestFailure if it does not exit in time."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure("%s (pid %d) did not exit within %.1f s"
                              % (self.name, self.proc.pid, timeout))

    def term(self, timeout=2.0):
        """SIGTERM, then wait: (exit code, seconds)."""
        t0 = time.monotonic()
        self.signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        return rc, time.monotonic() - t0

    def metrics(self):
        r = self.cli("metrics")
        check(r.rc == 0 and r.data and "text" in r.data, "roost metrics failed: %r" % r)
        return parse_prometheus(r.data["text"])

    def log_text(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")


def parse_prometheus(text):
    """{'name' or 'name{labels}': float}"""
    m = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            k, v = line.rsplit(" ", 1)
            m[k] = float(v)
        except ValueError:
            continue
    return m


def drops(m):
    """{reason: value} of roost_dropped_total."""
    out = {}
    for k, v in m.items():
        if k.startswith("roost_dropped_total{reason=\""):
            out[k[len("roost_dropped_total{reason=\""):-2]] = v
    return out


def init_all(nodes):
    """roost init --json on every node (in parallel); sets node.id."""
    env = nodes[0].env
    for n, r in zip(nodes, env.cli_many([(n.dir, ["init"]) for n in nodes])):
        n.set_id(r)


def wait_ready(nodes, timeout, poll=0.25):
    """Polls roost status --json on every node not yet ready until all are
    "ready" or timeout.  Returns {node.name: seconds since call}."""
    t0 = time.monotonic()
    ready = {}
    env = nodes[0].env
    last = {}
    for _ in range(int(timeout / poll) + 2):
        pending = [n for n in nodes if n.name not in ready]
        for n in pending:
            check(n.alive(), "%s (pid %d) exited with %s" % (n.name, n.pid, n.proc.poll()))
        res = env.cli_many([(n.dir, ["status"]) for n in pending])
        now = time.monotonic() - t0
        for n, r in zip(pending, res):
            last[n.name] = r
            if r.rc == 0 and r.data and r.data.get("state") == "ready":
                ready[n.name] = now
        if len(ready) == len(nodes) or time.monotonic() - t0 >= timeout:
            break
        time.sleep(poll)
    missing = [n.name for n in nodes if n.name not in ready]
    if missing:
        detail = "; ".join("%s: %s" % (m, (last[m].data or {}).get("state", repr(last[m])))
                           for m in missing[:8])
        raise TestFailure("%d node(s) not ready within %.0f s: %s"
                          % (len(missing), timeout, detail))
    return ready


def main_wrapper(fn):
    """Runs fn() and turns the outcome into the exit code (0 pass, 1 fail);
    SIGTERM/SIGINT/SIGHUP to the test become exceptions so cleanup runs."""
    def on_sig(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_sig)
    t0 = time.monotonic()
    try:
        fn()
    except TestFailure as e:
        log("FAIL: %s" % e)
        log("(%.1f s)" % (time.monotonic() - t0))
        return 1
    except KeyboardInterrupt as e:
        log("INTERRUPTED: %s" % e)
        return 1
    except Exception:
        import traceback
        traceback.print_exc(file=sys.stdout)
        log("FAIL: unexpected exception (%.1f s)" % (time.monotonic() - t0))
        return 1
    log("PASS (%.1f s)" % (time.monotonic() - t0))
    return 0

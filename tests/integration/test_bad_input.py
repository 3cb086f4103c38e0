#!/usr/bin/env python3
"""test_bad_input - roostd and roost meet bad input: each case gives a clear
error and the documented exit code, and a running roostd survives it.

  config   malformed line -> exit 2 naming file:line and key; unknown key ->
           exit 2 naming it; --rate-limit -3 -> exit 2; unknown flag -> 2
  files    identity.key mode 0644 -> exit 1, message: the mode, chmod 600;
           a second roostd on the same data dir -> exit 1 "already running",
           the first keeps running; roostd --paths prints the paths; the data
           dir is 0700 and the control socket 0600
  cli      unknown command -> 2; lookup of an ID with one character changed
           -> 2 (checksum); status with no daemon -> 3, telling how to start
  udp      10,000 random datagrams (lengths 0..1500) to one node of a 5-node
           network: each is counted in exactly one roost_dropped_total
           reason, rx_packets grows by >= 10,000, lookups still work
  control  garbage lines, deep nesting, a 100 KB line, 70 connections ->
           error replies, roostd keeps running
  signals  SIGHUP with a changed log-level (and with a broken file) keeps it
           running; SIGTERM exits 0 within 1 s leaving peers.dat mode 0600

Every case is checked even when an earlier one failed; the summary lists all
failures.  Usage:
  test_bad_input.py --roostd build/roostd --roost build/roost [--seed N]
"""
import json
import os
import random
import signal
import socket
import stat
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import check, log  # noqa: E402

FLOOD = 10000
FLOOD_PPS = 1000           # paced: all sent in ~10 s
FLOOD_WINDOW = 300         # at most this many datagrams ahead of roostd's rx counter
ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
NOISE_REASONS = ("ratelimit", "size", "version", "no_circuit", "self", "bad_key", "decrypt")

failures = []


def expect(cond, what, detail=""):
    if cond:
        log("  ok   %s" % what)
    else:
        log("  FAIL %s%s" % (what, (": " + detail) if detail else ""))
        failures.append(what + ((": " + detail) if detail else ""))
    return cond


def section(name, fn, *a):
    log("== %s" % name)
    t0 = time.monotonic()
    try:
        fn(*a)
    except rlib.TestFailure as e:
        log("  FAIL %s (section aborted): %s" % (name, e))
        failures.append("%s: %s" % (name, e))
    except Exception as e:  # a test bug or an unexpected OS error: report, go on
        traceback.print_exc(file=sys.stdout)
        log("  FAIL %s (section aborted): %s: %s" % (name, type(e).__name__, e))
        failures.append("%s: %s: %s" % (name, type(e).__name__, e))
    log("   (%.2f s)" % (time.monotonic() - t0))


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


# ---- config errors (roostd exits before starting) --------------------------

def config_errors(env):
    n = env.node("cfg")
    n.init()
    path = os.path.join(env.tmp, "bad-line.conf")
    write(path, "# roostd test configuration\n[roostd]\nlog-level = warn\n"
                "listen = not-an-address\nrate-limit = 10\n")
    rc, out, err = env.run_roostd(n.argv(extra=["--config", path]))
    expect(rc == 2, "malformed 'listen' line: exit 2", "rc=%d stderr=%r" % (rc, err))
    expect("%s:4" % path in err and "listen" in err and "not-an-address" in err,
           "malformed line: stderr names the file, line 4, the key and the value", repr(err))

    path = os.path.join(env.tmp, "unknown-key.conf")
    write(path, "log-level = warn\ncolour = blue\n")
    rc, out, err = env.run_roostd(n.argv(extra=["--config", path]))
    expect(rc == 2, "unknown key: exit 2", "rc=%d stderr=%r" % (rc, err))
    expect("colour" in err and "%s:2" % path in err, "unknown key: stderr names it and where",
           repr(err))

    rc, out, err = env.run_roostd(n.argv(extra=["--rate-limit", "-3"]))
    expect(rc == 2, "--rate-limit -3: exit 2", "rc=%d stderr=%r" % (rc, err))
    expect("rate-limit" in err and "-3" in err, "--rate-limit -3: stderr names flag and value",
           repr(err))

    rc, out, err = env.run_roostd(n.argv(extra=["--portmap", "maybe"]))
    expect(rc == 2 and "portmap" in err and "maybe" in err,
           "--portmap maybe: exit 2 naming flag and value", "rc=%d stderr=%r" % (rc, err))

    rc, out, err = env.run_roostd(n.argv(extra=["--frobnicate", "1"]))
    expect(rc == 2 and "frobnicate" in err, "unknown flag: exit 2 naming it",
           "rc=%d stderr=%r" % (rc, err))

    rc, out, err = env.run_roostd(n.argv(extra=["--config", os.path.join(env.tmp, "nope.conf")]))
    expect(rc == 2 and "nope.conf" in err, "missing config file: exit 2 naming it",
           "rc=%d stderr=%r" % (rc, err))
    expect(not os.path.exists(n.sock), "no control socket left by the failed starts")


def paths(env):
    n = env.node("paths")
    conf = os.path.join(env.tmp, "paths.conf")
    write(conf, "log-level = info\n")
    rc, out, err = env.run_roostd(n.argv(extra=["--config", conf, "--paths"]))
    expect(rc == 0, "roostd --paths: exit 0", "rc=%d stderr=%r" % (rc, err))
    for what in (n.dir, conf, os.path.join(n.dir, "identity.key"),
                 os.path.join(n.dir, "peers.dat"), os.path.join(n.dir, "roostd.sock")):
        expect(what in out, "roostd --paths prints %s" % os.path.basename(what), repr(out))
    expect(not os.path.exists(n.sock), "roostd --paths starts no daemon")


def key_mode(env):
    n = env.node("perm")
    n.init()
    key = os.path.join(n.dir, "identity.key")
    expect(rlib.file_mode(key) == 0o600, "roost init creates identity.key with mode 0600",
           "%o" % rlib.file_mode(key))
    os.chmod(key, 0o644)
    n.start()
    rc = n.wait_exit(5.0)
    err = n.log_text()
    expect(rc == 1, "identity.key mode 0644: roostd exits 1", "rc=%d log=%r" % (rc, err[-300:]))
    expect("644" in err and "chmod 600" in err,
           "identity.key mode 0644: message gives the mode and 'chmod 600'", repr(err[-300:]))
    os.chmod(key, 0o600)
    n.start()
    n.wait_up()
    rc, dt = n.term(2.0)
    expect(rc == 0, "after chmod 600 it starts, and stops with 0", "rc=%d" % rc)


# ---- the 5-node network and what runs against it ----------------------------

def start_network(env, nodes, hup_conf):
    rlib.init_all(nodes)
    seed = nodes[0]
    seed.start()
    seed.wait_up()
    for n in nodes[1:]:
        extra = ["--config", hup_conf] if n is nodes[4] else []
        n.start(bootstrap=[seed.peer], extra=extra)
    for n in nodes[1:]:
        n.wait_up()
    rlib.wait_ready(nodes, 30.0)
    log("  5 nodes ready")


def files_and_modes(env, nodes):
    n = nodes[0]
    expect(rlib.file_mode(n.dir) == 0o700, "data dir has mode 0700", "%o" % rlib.file_mode(n.dir))
    st = os.stat(n.sock)
    expect(stat.S_ISSOCK(st.st_mode), "control socket is a socket")
    expect(st.st_mode & 0o777 == 0o600, "control socket has mode 0600",
           "%o" % (st.st_mode & 0o777))
    expect(rlib.file_mode(os.path.join(n.dir, "identity.key")) == 0o600,
           "identity.key has mode 0600")


def second_daemon(env, nodes):
    n = nodes[1]
    other_port = rlib.free_udp_ports(1)[0]
    argv = ["--data-dir", n.dir, "--listen", "127.0.0.1:%d" % other_port,
            "--lan-discovery", "off", "--portmap", "off", "--mode", "server"]
    rc, out, err = env.run_roostd(argv, timeout=5.0)
    expect(rc == 1, "second roostd on the same data dir: exit 1", "rc=%d stderr=%r" % (rc, err))
    expect("already running" in err and str(n.pid) in err,
           "second roostd: 'already running' with the PID of the first", repr(err))
    expect(n.alive(), "the first roostd keeps running")
    r = n.status()
    expect(r.rc == 0 and r.data and r.data.get("state") == "ready",
           "the first roostd still answers status", repr(r))


def cli_errors(env, nodes):
    n = nodes[1]
    r = n.cli("frobnicate", json_out=False)
    expect(r.rc == 2, "roost unknown command: exit 2", repr(r))
    expect("frobnicate" in r.err, "roost unknown command: stderr names it", repr(r))
    r = n.cli("lookup", json_out=False)
    expect(r.rc == 2, "roost lookup without an ID: exit 2", repr(r))

    rng = random.Random(env.seed + 1)
    target = nodes[2].id
    bad = []
    for _ in range(5):
        pos = rng.randrange(len(target))
        ch = rng.choice([c for c in ID_ALPHABET if c != target[pos]])
        typo = target[:pos] + ch + target[pos + 1:]
        r = n.cli("lookup", typo, json_out=False)
        if r.rc != 2 or not ("checksum" in r.err or "typo" in r.err):
            bad.append("position %d: %r" % (pos, r))
    expect(not bad, "roost lookup <ID with one character changed>: exit 2, mentions the "
           "checksum (5 random typos)", "; ".join(bad))
    r = n.cli("lookup", target[:-1])
    expect(r.rc == 2, "roost lookup <ID one character short>: exit 2", repr(r))
    r = n.cli("lookup", typo)
    expect(r.rc == 2 and r.data and "error" in r.data,
           "roost --json lookup <typo>: exit 2 and a JSON error on stdout", repr(r))

    d = env.node("nodaemon")
    d.init()
    r = d.cli("status", json_out=False)
    expect(r.rc == 3, "roost status without a daemon: exit 3", repr(r))
    expect("roostd --data-dir" in r.err and d.dir in r.err,
           "roost status without a daemon: says how to start it", repr(r.err))


def snmp_udp():
    """System-wide UDP counters (for telling kernel drops apart)."""
    try:
        with open("/proc/net/snmp") as f:
            rows = [l.split() for l in f if l.startswith("Udp:")]
        return dict(zip(rows[0][1:], (int(x) for x in rows[1][1:])))
    except (OSError, IndexError, ValueError):
        return {}


def rx_of(node):
    r = node.status()
    check(r.rc == 0 and r.data, "status failed during the flood: %r" % r)
    return r.data.get("rx_packets", 0)


def udp_flood(env, nodes):
    target = nodes[2]
    rng = random.Random(env.seed)
    log("  flood seed %d" % env.seed)
    m0 = target.metrics()
    d0 = rlib.drops(m0)
    rx0 = m0.get("roost_rx_packets_total", 0)
    snmp0 = snmp_udp()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((rlib.LOOPBACK, 0))
    dest = (rlib.LOOPBACK, target.port)
    lengths = {"zero": 0, "versioned": 0, "over_max_pkt": 0}
    send_errors = 0
    stalls = 0
    t0 = time.monotonic()
    try:
        for i in range(FLOOD):
            n = rng.randint(0, 1500)
            if n > 0 and rng.random() < 0.25:
                data = b"\x01" + rng.randbytes(n - 1)  # right version: reaches the key/box
                lengths["versioned"] += 1
            else:
                data = rng.randbytes(n)
            lengths["zero"] += n == 0
            lengths["over_max_pkt"] += n > 1232
            try:
                s.sendto(data, dest)
            except OSError:
                send_errors += 1
            sent = i + 1
            if sent % 10 == 0:
                ahead = t0 + sent / FLOOD_PPS - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            if sent % 1000 == 0:
                # flow control: do not get more than FLOOD_WINDOW ahead of roostd
                for _ in range(100):
                    if rx_of(target) - rx0 >= sent - FLOOD_WINDOW:
                        break
                    stalls += 1
                    time.sleep(0.05)
    finally:
        s.close()
    t_send = time.monotonic() - t0
    # wait (bounded) until roostd has read them all
    rx = rx0
    for _ in range(100):
        rx = rx_of(target)
        if rx - rx0 >= FLOOD:
            break
        time.sleep(0.05)
    time.sleep(0.2)
    m1 = target.metrics()
    d1 = rlib.drops(m1)
    snmp1 = snmp_udp()
    delta = {k: int(d1.get(k, 0) - d0.get(k, 0)) for k in d1}
    total = sum(delta.values())
    noise = sum(delta.get(k, 0) for k in NOISE_REASONS)
    drx = int(m1.get("roost_rx_packets_total", 0) - rx0)
    kdrop = snmp1.get("RcvbufErrors", 0) - snmp0.get("RcvbufErrors", 0)
    log("  FIGURE flood: %d datagrams in %.2f s (%d send errors, %d flow-control waits); "
        "%d empty, %d with version byte 1, %d longer than 1232"
        % (FLOOD, t_send, send_errors, stalls, lengths["zero"], lengths["versioned"],
           lengths["over_max_pkt"]))
    log("  FIGURE flood: rx_packets +%d; dropped +%d: %s; kernel RcvbufErrors +%d (system-wide)"
        % (drx, total, ", ".join("%s +%d" % (k, v) for k, v in sorted(delta.items()) if v),
           kdrop))
    expect(send_errors == 0, "every datagram was sent", "%d send errors" % send_errors)
    expect(target.alive(), "the node survives the flood")
    expect(drx >= FLOOD, "rx_packets grew by >= %d" % FLOOD,
           "+%d (%d of them empty datagrams; kernel receive-buffer drops +%d)"
           % (drx, lengths["zero"], kdrop))
    expect(noise == FLOOD,
           "every random datagram is counted in exactly one drop reason (%s: +%d)"
           % ("+".join(NOISE_REASONS), FLOOD),
           "+%d; %d of the datagrams were empty (0 bytes)%s"
           % (noise, lengths["zero"],
              " - exactly the empty ones are missing" if FLOOD - noise == lengths["zero"]
              else ""))
    expect(total >= FLOOD, "roost_dropped_total (all reasons) grew by >= %d" % FLOOD,
           "+%d" % total)
    expect(total - noise <= max(0, drx - FLOOD),
           "drops for other reasons (+%d) come only from other traffic (+%d)"
           % (total - noise, max(0, drx - FLOOD)))
    # the node still works
    pairs = [(target, n) for n in nodes if n is not target] + \
            [(n, target) for n in nodes if n is not target]
    res = env.cli_many([(a.dir, ["lookup", b.id]) for a, b in pairs])
    bad = ["%s -> %s: %r" % (a.name, b.name, r) for (a, b), r in zip(pairs, res)
           if r.rc != 0 or b.port not in [rlib.addr_port(x.get("addr"))
                                          for x in (r.data or {}).get("addresses", [])]]
    expect(not bad, "after the flood: lookups from and of the flooded node succeed",
           "; ".join(bad[:4]))


# ---- the control socket ---------------------------------------------------

def ctl_connect(node, timeout=5.0):
    """A connection to node's control socket; retried (bounded) while the
    listen backlog is full (EAGAIN)."""
    for _ in range(250):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(timeout)
        try:
            c.connect(node.sock)
            return c
        except BlockingIOError:
            c.close()
            time.sleep(0.02)
        except BaseException:
            c.close()
            raise
    raise rlib.TestFailure("cannot connect to %s: backlog full for 5 s" % node.sock)


def read_lines(c, want, timeout=5.0):
    """Up to want lines (bounded by time and size), and whether EOF came."""
    buf = b""
    lines = []
    eof = False
    t_end = time.monotonic() + timeout
    while len(lines) < want and time.monotonic() < t_end and len(buf) < (1 << 20):
        c.settimeout(max(0.01, t_end - time.monotonic()))
        try:
            chunk = c.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            eof = True
            break
        if not chunk:
            eof = True
            break
        buf += chunk
        while b"\n" in buf and len(lines) < want:
            l, buf = buf.split(b"\n", 1)
            lines.append(l)
    return lines, eof


def control_garbage(env, nodes):
    n = nodes[3]
    cases = [
        (b"hello world", None, "bad_request"),
        (b"[1,2,3]", None, "bad_request"),
        (b"\"just a string\"", None, "bad_request"),
        (b"\xff\xfe\x00\x01 not utf-8 {", None, "bad_request"),
        (b"{\"id\":5}", 5, "bad_request"),
        (b"{\"id\":6,\"cmd\":\"frob\"}", 6, "unknown_command"),
        (b"{\"id\":7,\"cmd\":\"lookup\",\"args\":{\"id\":\"abc\"}}", 7, "bad_argument"),
        (b"{\"id\":8,\"cmd\":\"lookup\",\"args\":[1]}", 8, "bad_request"),
        (b"{\"id\":9,\"cmd\":42}", 9, "bad_request"),
        (b"{\"id\":10,\"cmd\":\"status\",\"args\":{\"timeout_ms\":\"soon\"}}", 10, "bad_request"),
        (b"[" * 5000 + b"]" * 5000, None, "bad_request"),
        (b"{\"id\":11,\"cmd\":\"status\"", None, "bad_request"),
        (b"{\"id\":12,\"cmd\":\"status\"}", 12, None),  # still usable afterwards
    ]
    c = ctl_connect(n)
    try:
        c.sendall(b"".join(line + b"\n" for line, _, _ in cases))  # pipelined
        lines, eof = read_lines(c, len(cases))
    finally:
        c.close()
    expect(len(lines) == len(cases), "one reply per garbage line (%d)" % len(cases),
           "got %d, eof=%s" % (len(lines), eof))
    for (req, rid, code), l in zip(cases, lines):
        try:
            rep = json.loads(l)
        except ValueError:
            expect(False, "reply to %r is JSON" % req[:40], repr(l[:200]))
            continue
        if code is None:
            expect(rep.get("ok") is True and rep.get("id") == rid,
                   "a good request after the garbage is answered", repr(l[:200]))
        else:
            got = (rep.get("error") or {}).get("code")
            expect(rep.get("ok") is False and got == code and
                   (rid is None or rep.get("id") == rid),
                   "%r -> %s" % (req[:40], code), repr(l[:200]))

    # a 100 KB line: an error reply, then the connection is closed
    c = ctl_connect(n)
    sent_all = True
    try:
        try:
            c.sendall(b"x" * (100 * 1024) + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            sent_all = False
        lines, eof = read_lines(c, 2, timeout=5.0)
    finally:
        c.close()
    rep = {}
    try:
        rep = json.loads(lines[0]) if lines else {}
    except ValueError:
        pass
    expect((rep.get("error") or {}).get("code") == "bad_request",
           "a 100 KB line gets a bad_request reply", repr(lines[:1]))
    expect(eof and len(lines) == 1, "... and the connection is closed after it",
           "eof=%s lines=%d sent_all=%s" % (eof, len(lines), sent_all))

    # more connections than roostd takes (64), then all closed
    conns = []
    try:
        for _ in range(70):
            conns.append(ctl_connect(n, timeout=2.0))
        time.sleep(0.3)
    finally:
        for c in conns:
            c.close()
    time.sleep(0.2)
    expect(n.alive(), "roostd keeps running after the garbage")
    r = n.status()
    expect(r.rc == 0 and r.data and r.data.get("state") == "ready",
           "roostd answers status after the garbage", repr(r))
    m = n.metrics()
    expect(m.get("roost_control_refused_total", 0) >= 6,
           "connections beyond 64 are refused and counted",
           "control_refused_total=%s" % m.get("roost_control_refused_total"))


# ---- signals -----------------------------------------------------------------

def sighup(env, nodes, conf):
    n = nodes[4]
    before = len(n.log_text())
    write(conf, "# changed\nlog-level = debug\n")
    n.signal(signal.SIGHUP)
    time.sleep(0.5)
    expect(n.alive(), "SIGHUP with log-level = debug: roostd keeps running")
    r = n.status()
    expect(r.rc == 0, "... and answers status", repr(r))
    time.sleep(0.2)
    new = n.log_text()[before:]
    expect("reloaded" in new, "... and logs the reload", repr(new[-300:]))
    expect(" debug " in new or "debug" in new.split("reloaded", 1)[-1],
           "... and the new log level (debug) is in effect", repr(new[-300:]))

    before = len(n.log_text())
    write(conf, "log-level = chatty\n")
    n.signal(signal.SIGHUP)
    time.sleep(0.5)
    expect(n.alive(), "SIGHUP with a broken config: roostd keeps running")
    r = n.status()
    expect(r.rc == 0, "... and answers status", repr(r))
    new = n.log_text()[before:]
    expect("reload failed" in new and "chatty" in new,
           "... and logs why the reload failed, keeping the running configuration",
           repr(new[-300:]))
    write(conf, "log-level = warn\n")


def sigterm(env, nodes):
    n = nodes[1]
    pd = os.path.join(n.dir, "peers.dat")
    if os.path.exists(pd):
        os.unlink(pd)
    rc, dt = n.term(1.0)
    log("  FIGURE SIGTERM -> exit in %.3f s" % dt)
    expect(rc == 0 and dt <= 1.0, "SIGTERM: exit 0 within 1 s", "rc=%d after %.3f s" % (rc, dt))
    expect(os.path.exists(pd), "SIGTERM: peers.dat written")
    if os.path.exists(pd):
        expect(rlib.file_mode(pd) == 0o600, "peers.dat has mode 0600",
               "%o" % rlib.file_mode(pd))
    expect(not os.path.exists(n.sock), "SIGTERM: the control socket is removed")


def stop_all(env, nodes):
    for n in nodes:
        if n.alive():
            r = n.cli("stop")
            rc = n.wait_exit(2.0)
            expect(r.rc == 0 and rc == 0, "roost stop %s: exit 0" % n.name,
                   "cli %r, roostd rc=%d" % (r, rc))
    left = [p.pid for p in env.procs if p.poll() is None]
    expect(not left, "no roostd left running", repr(left))


def run(args):
    log("seed %d (rerun with --seed %d)" % (args.seed, args.seed))
    with rlib.Env(args, "bad") as env:
        env.seed = args.seed
        section("config errors", config_errors, env)
        section("roostd --paths", paths, env)
        section("identity.key mode", key_mode, env)
        nodes = env.nodes_with_ports("t", 5)
        hup_conf = os.path.join(env.tmp, "hup.conf")
        write(hup_conf, "log-level = warn\n")
        start_network(env, nodes, hup_conf)  # the rest needs it: failures abort
        section("files and modes", files_and_modes, env, nodes)
        section("second roostd", second_daemon, env, nodes)
        section("CLI errors", cli_errors, env, nodes)
        section("UDP flood", udp_flood, env, nodes)
        section("control socket garbage", control_garbage, env, nodes)
        section("SIGHUP", sighup, env, nodes, hup_conf)
        section("SIGTERM", sigterm, env, nodes)
        section("stop", stop_all, env, nodes)
        if failures:
            env.dump_logs(lines=10)
    check(not failures, "%d check(s) failed:\n  - %s" % (len(failures), "\n  - ".join(failures)))


if __name__ == "__main__":
    a = rlib.parse_args(__doc__)
    sys.exit(rlib.main_wrapper(lambda: run(a)))

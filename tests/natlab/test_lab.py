#!/usr/bin/env python3
"""test_lab - the NAT lab checks itself (label natlab; root; ~10 s).

Topology (addresses in the order natlab allocates them):
  stun  198.18.1.2 + 198.18.2.2   STUN responder (ports 3478, 3479)
  pub   198.18.3.2                a public host nobody contacted
  r1    wan0 198.18.4.2, LAN 10.1.0.0/24, h1 10.1.0.2
  cgn   wan0 198.18.5.2, LAN 100.64.1.0/24 (carrier-grade NAT)
  r2    wan0 100.64.1.2 behind cgn, LAN 10.2.0.0/24, h2 10.2.0.2

  0. The STUN responder answers no malformed datagram and honours a
     CHANGE-REQUEST for both IP and port.
  1. The four NAT types on r1, RFC 5780 style: h1 binds a socket and asks
     the STUN server (primary IP, port) for its mapped address M; then
     three third parties send to M: the same IP from the other port (a
     CHANGE-REQUEST port), the other IP (CHANGE-REQUEST IP), and pub (never
     contacted): 12 filtering expectations (full cone: all three arrive;
     address-restricted: only the same IP; port-restricted and symmetric:
     none), and a dropped probe gets no ICMP back.  Then h1 contacts the
     three itself: the mapping they see is M for the three cone types and
     a new port for symmetric (12 mapping expectations).
  2. miniupnpd on r1 (port-restricted): its STUN test finds forwarding
     possible; upnpc -a maps a UDP port, pub reaches h1 through it (and h1's
     answer comes back from the mapped address), not after upnpc -d; the
     same with natpmpc (lifetime 0 deletes).  With UPnP off natpmpc still
     works and upnpc is refused; with NAT-PMP off the reverse.
  3. Double NAT: miniupnpd on r2 behind cgn.  With a port-restricted carrier
     its STUN test sees the filtering and it refuses to forward; with a
     full-cone carrier it believes it has a 1:1 NAT and accepts mappings.
     Either way pub cannot reach h2 through the carrier's address.
  4. No lab namespace is left (ip netns list before and after).

Exits 77 (CTest: skipped) when not root or a tool is missing, with the
reason.  Usage: test_lab.py [--keep] [extra arguments are ignored, so that
CTest can pass --roostd/--roost to every natlab test]
"""
import argparse
import os
import signal
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import natlab  # noqa: E402
import stunserver  # noqa: E402
from natlab import log  # noqa: E402

DEADLINE = 100  # s: the test raises and tears down before CTest's TIMEOUT
NEGATIVE_WINDOW = 0.6  # s a probe that must not arrive is waited for

# NAT type -> (same IP other port, other IP, never-contacted host arrive?,
#              endpoint-independent mapping?)
EXPECT = {
    "full-cone": (True, True, True, True),
    "address-restricted": (True, False, False, True),
    "port-restricted": (False, False, False, True),
    "symmetric": (False, False, False, False),
}
PARTIES = ("same IP, other port", "other IP", "never-contacted host")


class TestFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def yn(b):
    return "arrives" if b else "dropped"


# ---- 1. NAT types ----

def filtering_probes(h1, pub, stun, sock, mapped):
    """The three third parties send to mapped (the host's mapping towards
    the STUN server's primary address and port) before the host contacts
    them.  Returns ([arrived? x3], icmp_seen)."""
    txp, txi = os.urandom(12), os.urandom(12)
    token = os.urandom(8).hex().encode()
    psock = pub.udp_socket()
    psock.connect(mapped)  # connected: an ICMP error would surface on recv
    got = [None, None, None]
    want = [(stun.primary, stun.alt_port), (stun.alternate, stun.port), None]
    rounds = 3
    for _ in range(rounds):
        sock.sendto(stunserver.binding_request(txp, change_port=True), stun.addr)
        sock.sendto(stunserver.binding_request(txi, change_ip=True), stun.addr)
        psock.send(token)
        for data, addr in natlab.recv_all(sock, NEGATIVE_WINDOW / rounds):
            if data == token:
                got[2] = addr
                continue
            for i, tx in ((0, txp), (1, txi)):
                r = stunserver.parse_response(data, tx)
                if r:
                    got[i] = addr
    icmp = False
    try:
        psock.recv(100)
    except BlockingIOError:
        pass
    except ConnectionRefusedError:
        icmp = True
    for i in (0, 1):
        check(got[i] is None or got[i] == want[i],
              "probe %r arrived from %s, expected %s" % (PARTIES[i], got[i], want[i]))
    check(got[2] is None or got[2][0] == pub.addr,
          "pub's probe arrived from %s, expected %s" % (got[2], pub.addr))
    return [g is not None for g in got], icmp


def mapping_probes(h1, pub, stun, sock):
    """The host contacts the three parties itself: the mapped ports they
    see ((stun primary, alt port), (stun alternate, port), pub)."""
    out = []
    for dst in ((stun.primary, stun.alt_port), (stun.alternate, stun.port)):
        r = natlab.stun_query(sock, dst)
        check(r is not None, "no STUN answer from %s:%d" % dst)
        out.append(r[0])
    psock = pub.udp_socket()
    seen = natlab.reaches(sock, (pub.addr, psock.getsockname()[1]), psock)
    check(seen is not None, "h1 cannot reach pub")
    out.append(seen)
    return out


def test_stun_server(pub, stun):
    """Malformed datagrams get no answer and do not stop the responder."""
    s = pub.udp_socket()
    good = stunserver.binding_request(os.urandom(12), change_ip=True, change_port=True)
    for bad in (b"", b"\x00" * 19, good[:-1], good + b"\0\0\0\0", b"\x01\x01" + good[2:],
                good[:2] + b"\x00\x10" + good[4:]):
        s.sendto(bad, stun.addr)
    check(not natlab.recv_all(s, 0.2), "the STUN server answered a malformed datagram")
    r = natlab.stun_query(s, stun.addr, change_ip=True, change_port=True)
    check(r is not None and r[0] == (pub.addr, s.getsockname()[1])
          and r[1] == (stun.alternate, stun.alt_port),
          "STUN CHANGE-REQUEST ip+port: got %r" % (r,))
    log("STUN responder: 6 malformed datagrams ignored; change ip+port answered from %s:%d"
        % r[1])


def icmp_unreach(router):
    return router.snmp()["Icmp.OutDestUnreachs"]


def test_nat_types(lab, r1, h1, pub, stun):
    log("== 1. the four NAT types on r1: RFC 5780-style probes ==")
    icmp0 = icmp_unreach(r1)
    rows = []
    failures = []
    for nat in natlab.NAT_TYPES:
        t0 = time.monotonic()
        r1.set_nat(nat)
        sock = h1.udp_socket()
        r = natlab.stun_query(sock, stun.addr)
        check(r is not None, "%s: no STUN answer to h1" % nat)
        mapped, _ = r
        check(mapped[0] == r1.wan_addr, "%s: mapped address %s is not r1's WAN %s"
              % (nat, mapped, r1.wan_addr))
        arrived, icmp = filtering_probes(h1, pub, stun, sock, mapped)
        seen = mapping_probes(h1, pub, stun, sock)
        exp = EXPECT[nat]
        same = [s == mapped for s in seen]
        eim = all(same)
        edm = sum(same) <= 1  # fully-random may reuse a port by chance, once
        for i in range(3):
            ok = arrived[i] == exp[i]
            rows.append((nat, "filter: " + PARTIES[i], yn(exp[i]), yn(arrived[i]), ok))
            if not ok:
                failures.append("%s: probe from the %s %s, expected it %s"
                                % (nat, PARTIES[i], yn(arrived[i]), yn(exp[i])))
        for i in range(3):
            ok = same[i] == exp[3] or (not exp[3] and edm)
            rows.append((nat, "mapping towards " + PARTIES[i],
                         "same as M" if exp[3] else "new port",
                         "%s:%d" % seen[i], ok))
        if exp[3] and not eim:
            failures.append("%s: mapping is not endpoint-independent: M=%s, seen %s"
                            % (nat, mapped, seen))
        if not exp[3] and not edm:
            failures.append("%s: mapping is not endpoint-dependent: M=%s, seen %s"
                            % (nat, mapped, seen))
        if icmp:
            failures.append("%s: a dropped probe drew an ICMP error (the router must drop "
                            "silently)" % nat)
        log("  %-18s M=%s:%d  filtering %s  mapping %s  (%.2f s)"
            % (nat, mapped[0], mapped[1], "/".join("y" if a else "n" for a in arrived),
               "EIM" if eim else "EDM", time.monotonic() - t0))
    log("  %-18s %-38s %-10s %-22s" % ("type", "check", "expected", "seen"))
    for nat, what, exp, got, ok in rows:
        log("  %-18s %-38s %-10s %-22s %s" % (nat, what, exp, got, "ok" if ok else "WRONG"))
    icmp = icmp_unreach(r1) - icmp0
    log("  r1 sent %d ICMP destination unreachable (every dropped probe must be silent)" % icmp)
    if icmp:
        failures.append("r1 sent %d ICMP destination unreachable" % icmp)
    check(not failures, "NAT types:\n  " + "\n  ".join(failures))


# ---- 2. miniupnpd ----

def reach_mapped(pub, ext, hsock):
    """pub (from a fresh socket: a new flow) sends to ext; True if hsock
    got it.  When it arrives, hsock answers and the answer must reach pub
    from ext."""
    psock = pub.udp_socket()
    natlab.drain(hsock)
    src = natlab.reaches(psock, ext, hsock, timeout=NEGATIVE_WINDOW)
    if src is None:
        return False
    check(src[0] == pub.addr, "pub's datagram arrived from %s, not from pub" % (src,))
    token = os.urandom(6).hex().encode()
    hsock.sendto(token, src)
    for data, addr in natlab.recv_all(psock, 1.0):
        if data == token:
            check(addr == ext, "the host's answer came from %s, not from the mapping %s"
                  % (addr, ext))
            return True
    raise TestFailure("pub reached the host through %s but the answer never came back" % (ext,))


def upnpc(host, *args, url=None, timeout=10.0):
    argv = ["upnpc", "-i", "-e", "natlab"]
    argv += ["-u", url] if url else ["-m", "eth0"]
    return host.run(argv + list(args), check=False, timeout=timeout)


def natpmpc(host, *args, timeout=10.0):
    return host.run(["natpmpc", "-g", host.gateway] + list(args), check=False, timeout=timeout)


def test_igd(lab, r1, h1, pub, stun):
    log("== 2. miniupnpd on r1 (%s) ==" % r1.nat)
    icmp0 = icmp_unreach(r1)
    t0 = time.monotonic()
    igd = r1.start_igd(stun)
    log("  miniupnpd pid %d ready in %.2f s, STUN says forwarding %s"
        % (igd.proc.pid, time.monotonic() - t0, "works" if igd.forwarding else "is impossible"))
    check(igd.forwarding, "miniupnpd on r1 did not enable port forwarding:\n" + igd.log()[-2000:])

    # UPnP (SSDP discovery once, as a client would)
    port = 41001
    hsock = h1.udp_socket(("0.0.0.0", port))
    ext = (r1.wan_addr, port)
    check(not reach_mapped(pub, ext, hsock), "pub reached h1:%d before any mapping" % port)
    t0 = time.monotonic()
    r = upnpc(h1, "-a", h1.addr, str(port), str(port), "UDP", "120")
    check(r.rc == 0 and "is redirected to internal" in r.out, "upnpc -a failed: %r" % r)
    check("desc: %s" % igd.url in r.out, "upnpc did not discover %s: %r" % (igd.url, r))
    check("ExternalIPAddress = %s" % r1.wan_addr in r.out, "upnpc: wrong external IP: %r" % r)
    log("  UPnP: upnpc -a (with SSDP discovery) mapped %s:%d in %.2f s"
        % (r1.wan_addr, port, time.monotonic() - t0))
    check(reach_mapped(pub, ext, hsock), "pub cannot reach h1 through the UPnP mapping %s" % (ext,))
    log("  UPnP: pub reaches h1 through %s:%d, h1's answer comes back from it" % ext)
    t0 = time.monotonic()
    r = upnpc(h1, "-d", str(port), "UDP", url=igd.url)
    check(r.rc == 0, "upnpc -d failed: %r" % r)
    check(not reach_mapped(pub, ext, hsock), "pub still reaches h1 after upnpc -d")
    log("  UPnP: upnpc -d (%.2f s); a new flow from pub no longer reaches h1"
        % (time.monotonic() - t0))

    # NAT-PMP
    port = 41002
    hsock = h1.udp_socket(("0.0.0.0", port))
    ext = (r1.wan_addr, port)
    check(not reach_mapped(pub, ext, hsock), "pub reached h1:%d before any mapping" % port)
    t0 = time.monotonic()
    r = natpmpc(h1, "-a", str(port), str(port), "udp", "120")
    mapped = "Mapped public port %d protocol UDP to local port %d" % (port, port)
    check(r.rc == 0 and mapped in r.out, "natpmpc -a failed: %r" % r)
    check("Public IP address : %s" % r1.wan_addr in r.out, "natpmpc: wrong public IP: %r" % r)
    log("  NAT-PMP: natpmpc -a mapped %s:%d in %.3f s" % (r1.wan_addr, port, time.monotonic() - t0))
    check(reach_mapped(pub, ext, hsock), "pub cannot reach h1 through the NAT-PMP mapping %s"
          % (ext,))
    log("  NAT-PMP: pub reaches h1 through %s:%d" % ext)
    r = natpmpc(h1, "-a", str(port), str(port), "udp", "0")
    check(r.rc == 0, "natpmpc delete (lifetime 0) failed: %r" % r)
    check(not reach_mapped(pub, ext, hsock), "pub still reaches h1 after the NAT-PMP delete")
    log("  NAT-PMP: deleted (lifetime 0); a new flow from pub no longer reaches h1")
    igd.stop()
    icmp = icmp_unreach(r1) - icmp0
    check(icmp == 0, "r1 sent %d ICMP destination unreachable during the mapping tests" % icmp)

    # one protocol off at a time
    igd = r1.start_igd(stun, upnp=False)
    r = natpmpc(h1, "-a", "41003", "41003", "udp", "60")
    check(r.rc == 0, "UPnP off: natpmpc should still work: %r" % r)
    r = upnpc(h1, "-a", h1.addr, "41004", "41004", "UDP", "60", url=igd.url)
    check(r.rc != 0, "UPnP off: upnpc -a should fail: %r" % r)
    igd.stop()
    igd = r1.start_igd(stun, natpmp=False)
    r = upnpc(h1, "-a", h1.addr, "41004", "41004", "UDP", "60", url=igd.url)
    check(r.rc == 0 and "is redirected to internal" in r.out,
          "NAT-PMP off: upnpc should still work: %r" % r)
    r = natpmpc(h1, "-a", "41003", "41003", "udp", "60")
    check(r.rc != 0, "NAT-PMP off: natpmpc should fail: %r" % r)
    igd.stop()
    igd = r1.start_igd(stun, upnp=False, natpmp=False)
    check(igd.proc is None, "both protocols off: no miniupnpd should run")
    log("  UPnP off: NAT-PMP works, upnpc refused; NAT-PMP off: the reverse; both off: no daemon")


# ---- 3. double NAT ----

def try_mappings(h2, igd, port):
    """UPnP then NAT-PMP mapping attempts of port (UPnP) and port+1
    (NAT-PMP): {"upnp": bool accepted, "natpmp": bool accepted}."""
    r = upnpc(h2, "-a", h2.addr, str(port), str(port), "UDP", "120", url=igd.url)
    up = r.rc == 0 and "is redirected to internal" in r.out
    r2 = natpmpc(h2, "-a", str(port + 1), str(port + 1), "udp", "120")
    pmp = r2.rc == 0 and "Mapped public port %d" % (port + 1) in r2.out
    return {"upnp": up, "natpmp": pmp, "upnp_out": r, "natpmp_out": r2}


def test_double_nat(lab, cgn, r2, h2, pub, stun, igd):
    log("== 3. double NAT: miniupnpd on r2 behind the carrier NAT cgn ==")
    for i, nat in enumerate(("port-restricted", "full-cone")):
        t0 = time.monotonic()
        if i > 0:
            igd.stop()
            cgn.set_nat(nat)
            r2.flush_conntrack()
            igd = r2.start_igd(stun, wait=False)
        fwd = igd.wait_ready(20.0)
        ready = time.monotonic() - t0
        port = 42001 + 10 * i
        socks = [h2.udp_socket(("0.0.0.0", p)) for p in (port, port + 1)]
        res = try_mappings(h2, igd, port)
        reached = [reach_mapped(pub, (cgn.wan_addr, p), s) for p, s in zip((port, port + 1), socks)]
        log("  carrier %-16s miniupnpd: STUN says forwarding %s (%.1f s); UPnP mapping %s, "
            "NAT-PMP mapping %s; pub reaches h2 through %s: %s"
            % (nat, "works" if fwd else "is impossible", ready,
               "accepted" if res["upnp"] else "refused", "accepted" if res["natpmp"] else "refused",
               cgn.wan_addr, "yes" if any(reached) else "no"))
        check(not any(reached), "carrier %s: pub reached h2 through the carrier's address "
              "(%s) although two NATs are in the way" % (nat, cgn.wan_addr))
        if nat == "full-cone":
            check(fwd and res["upnp"] and res["natpmp"],
                  "carrier full-cone: miniupnpd should believe it is behind a 1:1 NAT and "
                  "accept mappings: fwd=%s upnp=%r natpmp=%r"
                  % (fwd, res["upnp_out"], res["natpmp_out"]))
        else:
            check(not fwd and not res["upnp"] and not res["natpmp"],
                  "carrier %s: miniupnpd's STUN test should see the filtering and refuse: "
                  "fwd=%s upnp=%r natpmp=%r" % (nat, fwd, res["upnp_out"], res["natpmp_out"]))
    igd.stop()


# ---- main ----

def run(args):
    lab = None
    prefix = "natlab-%d-" % os.getpid()
    before = natlab.list_netns()
    stale = natlab.stale_namespaces()
    if stale:
        log("note: %d namespaces of labs killed earlier exist (python3 natlab.py --clean-stale "
            "deletes them): %s" % (len(stale), " ".join(stale[:8])))
    t_start = time.monotonic()
    ok = False
    try:
        lab = natlab.Lab(keep=args.keep)
        stun = lab.add_stun_server()
        pub = lab.add_public("pub")
        r1 = lab.add_router("r1", nat="port-restricted")
        h1 = lab.add_host("h1", r1)
        cgn = lab.add_router("cgn", nat="port-restricted", carrier=True)
        r2 = lab.add_router("r2", nat="port-restricted", upstream=cgn)
        h2 = lab.add_host("h2", r2)
        # r2's miniupnpd sees a filtering carrier: its STUN test waits out
        # three 3 s rounds, so it starts now and is looked at last
        igd2 = r2.start_igd(stun, wait=False)
        log("lab built in %.2f s (run dir %s):" % (time.monotonic() - t_start, lab.run_dir))
        for line in lab.describe().splitlines():
            log("  " + line)
        check(len(lab.namespaces) == 8, "expected 8 namespaces, have %r" % lab.namespaces)
        check(all(n in natlab.list_netns() for n in lab.namespaces), "namespaces missing")

        test_stun_server(pub, stun)
        test_nat_types(lab, r1, h1, pub, stun)
        r1.set_nat("port-restricted")
        test_igd(lab, r1, h1, pub, stun)
        test_double_nat(lab, cgn, r2, h2, pub, stun, igd2)
        ok = True
    except BaseException:
        if lab is not None:
            for p in lab.procs:
                out = p.output().splitlines()[-25:]
                log("---- %s (pid %d, %s) last %d lines ----"
                    % (p.name, p.pid, "running" if p.alive() else "exit %s" % p.rc, len(out)))
                for l in out:
                    log("  " + l)
        raise
    finally:
        signal.alarm(0)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)  # let the teardown finish
        t0 = time.monotonic()
        if lab is not None:
            lab.close(raise_errors=ok)  # never hide the failure that got us here
        after = natlab.list_netns()
        left = [n for n in after if n.startswith(prefix)]
        log("== 4. teardown in %.2f s: %d namespaces before, %d after, %d of this test left =="
            % (time.monotonic() - t0, len(before), len(after), len(left)))
        if left:
            raise TestFailure("namespaces left behind: %s" % left)


def main():
    p = argparse.ArgumentParser(description="the NAT lab checks itself")
    p.add_argument("--keep", action="store_true", help="keep the run directory")
    args, _ = p.parse_known_args()

    reason = natlab.unavailable_reason(igd=True)
    if reason:
        log("SKIP: %s" % reason)
        return natlab.SKIP_CODE

    def on_sig(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    def on_alarm(signum, frame):
        raise TestFailure("deadline of %d s reached" % DEADLINE)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_sig)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(DEADLINE)
    t0 = time.monotonic()
    try:
        run(args)
    except natlab.LabUnavailable as e:
        log("SKIP: %s" % e)
        return natlab.SKIP_CODE
    except (TestFailure, natlab.LabError) as e:
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


if __name__ == "__main__":
    sys.exit(main())

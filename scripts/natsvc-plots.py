#!/usr/bin/env python3
"""natsvc-plots.py - the NAT experiment's own plots (docs/sim.md, "NAT
service"), drawn from roost-sim outputs that roost-sim's standard plots do
not combine: a NAT mix run and its all-public counterparts.

Writes into OUT, each as NAME.dat + NAME.gp (and NAME.png when gnuplot is
on PATH), the way roost-sim writes its own:
  nat_time_cdf     CDF of the time from a host's start until it knew its
                   NAT class, and until its mode last changed (all hosts,
                   and upnp hosts alone), from MIX/nat_hosts.csv
  table_unreachable  routing-table entries network-wide and the share a
                   stranger cannot reach, over time, from series.csv
  latency_mix_vs_public  CDF of lookup latency (finished lookups): the mix,
                   the mix from --steady-min on, all public with and without
                   the NAT service, from ops.csv
and prints the figures docs/sim.md quotes (exactness per 3-minute window of
start time, latencies, times by type).

Usage: natsvc-plots.py --mix DIR --pub-on DIR --pub-off DIR --out DIR
                       [--steady-min 18]
"""
import argparse
import csv
import os
import shutil
import subprocess


def pct(v, p):
    """Nearest-rank percentile, as roost-sim's summary.json computes it."""
    if not v:
        return None
    v = sorted(v)
    k = max(1, -(-len(v) * p // 100))
    return v[int(k) - 1]


def cdf_rows(v, most=2001):
    """(value, fraction) steps of the CDF of v, at most `most` points."""
    v = sorted(v)
    n = len(v)
    step = max(1, n // (most - 1))
    rows = [(v[i], (i + 1) / n) for i in range(0, n, step)]
    if rows and rows[-1][1] < 1:
        rows.append((v[-1], 1.0))
    return rows


def lookups(d):
    with open(os.path.join(d, "ops.csv")) as f:
        return [r for r in csv.DictReader(f)
                if r["kind"] == "lookup" and r["end_ms"] != ""]


def gp_head(name, title, xl, yl):
    return ("# written by scripts/natsvc-plots.py; run as: gnuplot %s.gp (in this directory)\n"
            "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
            "  set terminal pngcairo size 800,500 noenhanced\n"
            "} else {\n"
            "  set terminal png size 800,500 noenhanced\n"
            "}\n"
            "set output '%s.png'\nset grid\nset title '%s'\nset xlabel '%s'\nset ylabel '%s'\n"
            % (name, name, title, xl, yl))


def write(out, name, dat, gp):
    with open(os.path.join(out, name + ".dat"), "w") as f:
        f.write(dat)
    with open(os.path.join(out, name + ".gp"), "w") as f:
        f.write(gp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mix", required=True)
    ap.add_argument("--pub-on", required=True)
    ap.add_argument("--pub-off", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steady-min", type=float, default=18)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    # (a) time to class and to mode, from each host's start
    with open(os.path.join(a.mix, "nat_hosts.csv")) as f:
        hosts = [h for h in csv.DictReader(f) if h["up"] == "1"]
    cls = [(int(h["class_ms"]) - int(h["start_ms"])) / 1000 for h in hosts if h["class_ms"]]
    mode = [(int(h["mode_ms"]) - int(h["start_ms"])) / 1000 for h in hosts]
    mode_upnp = [(int(h["mode_ms"]) - int(h["start_ms"])) / 1000 for h in hosts
                 if h["type"] == "upnp"]
    blocks = []
    for label, v in (("class known", cls), ("mode settled, all hosts", mode),
                     ("mode settled, upnp hosts", mode_upnp)):
        blocks.append("# %s: seconds fraction (%d hosts)\n" % (label, len(v)) +
                      "".join("%.3f %.6f\n" % r for r in cdf_rows(v)))
    gp = gp_head("nat_time_cdf", "NAT mix, %d hosts: time from start to class known and "
                 "to mode settled" % len(hosts), "seconds since the host started (log)",
                 "fraction of hosts")
    gp += ("set logscale x\nset yrange [0:1]\nset key bottom right\n"
           "plot 'nat_time_cdf.dat' index 0 using 1:2 with steps lw 2 title 'class known', \\\n"
           "     '' index 1 using 1:2 with steps lw 2 title 'mode settled (all)', \\\n"
           "     '' index 2 using 1:2 with steps lw 2 title 'mode settled (upnp)'\n")
    write(a.out, "nat_time_cdf", "\n\n".join(blocks), gp)
    print("time to class p50 %.1f s p99 %.1f s (%d hosts); to mode p50 %.1f s p99 %.1f s; "
          "upnp to mode p50 %.1f s p99 %.1f s" %
          (pct(cls, 50), pct(cls, 99), len(cls), pct(mode, 50), pct(mode, 99),
           pct(mode_upnp, 50), pct(mode_upnp, 99)))
    by = {}
    for h in hosts:
        t = by.setdefault(h["type"], [0, 0, 0])
        t[0] += 1
        t[1] += h["server"] == "1"
        t[2] += h.get("mapped") == "1"
    print("by type (up, servers, mapped):", by)

    # (b) the unreachable share of table entries over time
    blocks = []
    for label, d in (("mix", a.mix), ("all public, nat on", a.pub_on)):
        rows = []
        with open(os.path.join(d, "series.csv")) as f:
            for r in csv.DictReader(f):
                if r.get("table_entries"):
                    e, u = int(r["table_entries"]), int(r["table_unreachable"])
                    rows.append("%s %d %d %.6f\n" % (r["t_s"], e, u, u / e if e else 0))
        blocks.append("# %s: t_s entries unreachable share\n" % label + "".join(rows))
        last = rows[-1].split() if rows else None
        print("%s: %d table samples; last %s" % (label, len(rows), last))
    gp = gp_head("table_unreachable", "routing-table entries network-wide, and the share a "
                 "stranger cannot reach", "simulated time (s)", "share unreachable")
    gp += ("set yrange [0:1]\nset y2label 'table entries'\nset y2tics\nset ytics nomirror\n"
           "set key top left\n"
           "plot 'table_unreachable.dat' index 0 using 1:4 with lines lw 3 title "
           "'unreachable share, mix', \\\n"
           "     '' index 1 using 1:4 with lines lw 1 dt 2 title 'unreachable share, all public', "
           "\\\n"
           "     '' index 0 using 1:2 axes x1y2 with lines lw 2 title 'entries, mix', \\\n"
           "     '' index 1 using 1:2 axes x1y2 with lines lw 2 title 'entries, all public'\n")
    write(a.out, "table_unreachable", "\n\n".join(blocks), gp)

    # (c) lookup latency, the mix against all public
    mix = lookups(a.mix)
    steady = [r for r in mix if int(r["start_ms"]) >= a.steady_min * 60000]
    runs = (("mix", mix), ("mix from minute %g" % a.steady_min, steady),
            ("all public, nat on", lookups(a.pub_on)), ("all public, nat off", lookups(a.pub_off)))
    blocks = []
    for label, ops in runs:
        lat = [int(r["latency_ms"]) for r in ops]
        ok = sum(r["ok"] == "1" for r in ops)
        blocks.append("# %s: latency_ms fraction (%d finished lookups)\n" % (label, len(lat)) +
                      "".join("%d %.6f\n" % r for r in cdf_rows(lat)))
        print("%s: %d lookups, %.2f%% exact, latency p50 %d p90 %d p99 %d ms" %
              (label, len(ops), 100 * ok / len(ops), pct(lat, 50), pct(lat, 90), pct(lat, 99)))
    gp = gp_head("latency_mix_vs_public", "lookup latency: the NAT mix against all public",
                 "latency (ms)", "fraction of lookups")
    gp += "set yrange [0:1]\nset key bottom right\nplot " + ", \\\n     ".join(
        "'latency_mix_vs_public.dat' index %d using 1:2 with steps lw 2 title '%s'" % (i, r[0])
        for i, r in enumerate(runs)) + "\n"
    write(a.out, "latency_mix_vs_public", "\n\n".join(blocks), gp)
    # exactness of the mix's lookups by 3-minute window of start time
    w = {}
    for r in mix:
        k = int(r["start_ms"]) // 180000
        t = w.setdefault(k, [0, 0])
        t[0] += 1
        t[1] += r["ok"] == "1"
    print("mix exact by start window:",
          ", ".join("%d-%d min %.1f%%" % (3 * k, 3 * k + 3, 100 * v[1] / v[0])
                    for k, v in sorted(w.items())))

    if shutil.which("gnuplot"):
        for name in ("nat_time_cdf", "table_unreachable", "latency_mix_vs_public"):
            subprocess.run(["gnuplot", name + ".gp"], cwd=a.out, check=True)


if __name__ == "__main__":
    main()

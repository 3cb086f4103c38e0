#!/usr/bin/env python3
"""punch-plots.py - the punch experiment's plots and table (docs/sim.md,
"Punching"), from a roost-sim run with --punches (its punch.csv).

Writes into OUT, as NAME.dat + NAME.gp (and NAME.png when gnuplot is on
PATH), the way roost-sim writes its own:
  punch_time_cdf  CDF of the time from nat_connect to a working path,
                  punched and relayed apart
and prints the matrix docs/sim.md quotes: per pair of box types (from,
to), attempts, the share punched, relayed, without a path, and the time
to a path (p50, p90, p99).  Attempts the run ended before are left out.

Usage: punch-plots.py --run DIR --out DIR
"""
import argparse
import csv
import os
import shutil
import subprocess

TYPES = ["full", "restricted", "port", "symmetric", "upnp"]


def pct(v, p):
    if not v:
        return -1
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="a roost-sim output directory with punch.csv")
    ap.add_argument("--out", required=True, help="where to write the plots")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.run, "punch.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["method"] != "open"]
    print("| from \\ to | attempts | punched | relayed | no path | time to a path p50 / p90 / "
          "p99 |")
    print("|---|---|---|---|---|---|")
    for ft in TYPES:
        for tt in TYPES:
            c = [r for r in rows if r["from_type"] == ft and r["to_type"] == tt]
            if not c:
                continue
            n = len(c)
            pu = sum(r["method"] == "punched" for r in c)
            re = sum(r["method"] == "relayed" for r in c)
            no = sum(r["method"] == "none" for r in c)
            ms = [int(r["ms"]) for r in c if r["method"] in ("punched", "relayed")]
            print("| %s → %s | %d | %.1f%% | %.1f%% | %.1f%% | %d / %d / %d ms |"
                  % (ft, tt, n, 100 * pu / n, 100 * re / n, 100 * no / n, pct(ms, 50),
                     pct(ms, 90), pct(ms, 99)))
    for m in ("punched", "relayed"):
        ms = [int(r["ms"]) for r in rows if r["method"] == m]
        print("%s: %d, time to a path p50 %d, p90 %d, p99 %d ms"
              % (m, len(ms), pct(ms, 50), pct(ms, 90), pct(ms, 99)))

    dat = []
    for m in ("punched", "relayed"):
        ms = sorted(int(r["ms"]) for r in rows if r["method"] == m)
        dat.append("# %s: ms, share of the %s paths made by then\n" % (m, m))
        for i, v in enumerate(ms):
            dat.append("%d %.5f\n" % (v, (i + 1) / len(ms)))
        dat.append("\n\n")
    gp = ("# written by scripts/punch-plots.py; run as: gnuplot punch_time_cdf.gp (in this "
          "directory)\n"
          "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
          "  set terminal pngcairo size 800,500 noenhanced\n"
          "} else {\n"
          "  set terminal png size 800,500 noenhanced\n"
          "}\n"
          "set output 'punch_time_cdf.png'\nset grid\n"
          "set title 'time from nat_connect to a working path'\n"
          "set xlabel 'ms'\nset ylabel 'share of the paths made'\nset logscale x\n"
          "set key bottom right\n"
          "plot 'punch_time_cdf.dat' index 0 with lines lw 2 title 'punched', \\\n"
          "     '' index 1 with lines lw 2 title 'relayed'\n")
    with open(os.path.join(a.out, "punch_time_cdf.dat"), "w") as f:
        f.write("".join(dat))
    with open(os.path.join(a.out, "punch_time_cdf.gp"), "w") as f:
        f.write(gp)
    if shutil.which("gnuplot"):
        subprocess.run(["gnuplot", "punch_time_cdf.gp"], cwd=a.out, check=True)


if __name__ == "__main__":
    main()

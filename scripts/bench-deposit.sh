#!/usr/bin/env bash
# bench-deposit.sh - durable mailbox deposits per second through one roostd
# over real UDP, and the time from sending a DEPOSIT to its verified storage
# receipt (which roostd sends only after the SQLite batch holding the
# deposit is committed).  It prints figures; it never fails on time.
#
# Starts a few roostd on 127.0.0.1 only (every node gets --lan-discovery off
# --listen 127.0.0.1:PORT), the target (node 1) with --rate-limit 0 and
# enough mailbox capacity, waits until the target is ready, runs
# bench/bench_deposit.c against it R times (target pinned to CPU 1, the
# generator and the other nodes to CPU 0 when there are two CPUs or more),
# prints each run, then the median and spread, the target's memory and
# mailbox counters; stops every node it started (SIGTERM by PID) and removes
# its temporary folder (under $TMPDIR or /tmp: use a real disk, not tmpfs,
# or fsync is free).
#
#   scripts/bench-deposit.sh                  3 nodes, 3 runs of 30,000 deposits / 10 s
#   scripts/bench-deposit.sh --runs 1 --deposits 20000 --window 512 --clients 16 --per-mailbox 1
#   scripts/bench-deposit.sh --msg 50         then scripts/bench-msg.py (send -> stored/delivered)
#   scripts/bench-deposit.sh --keep           keep logs and data dirs
# ROOST_BUILD=DIR uses that build tree (default build/; configured if missing).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUILD=${ROOST_BUILD:-build}

NODES=3
DEPOSITS=30000
SECS=10
CLIENTS=16
WINDOW=256
PER_MBOX=1
ITEM=1000
RUNS=3
MSG=0
KEEP=0
while [[ $# -gt 0 ]]; do
  case $1 in
  --nodes) NODES=$2; shift 2 ;;
  --deposits) DEPOSITS=$2; shift 2 ;;
  --seconds) SECS=$2; shift 2 ;;
  --clients) CLIENTS=$2; shift 2 ;;
  --window) WINDOW=$2; shift 2 ;;
  --per-mailbox) PER_MBOX=$2; shift 2 ;;
  --item-size) ITEM=$2; shift 2 ;;
  --runs) RUNS=$2; shift 2 ;;
  --msg) MSG=$2; shift 2 ;;
  --keep) KEEP=1; shift ;;
  -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
  *) echo "bench-deposit.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if ((NODES < 2 || RUNS < 1)); then
  echo "bench-deposit.sh: --nodes must be >= 2 and --runs >= 1" >&2
  exit 2
fi

# ---- build ----------------------------------------------------------------
if [[ ! -f $BUILD/CMakeCache.txt ]]; then
  gen=()
  command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
  cmake -S . -B "$BUILD" "${gen[@]}" >/dev/null
fi
echo "building roostd, roost and bench_deposit in $BUILD..."
cmake --build "$BUILD" --target roostd roost bench_deposit >/dev/null
ROOSTD=$ROOT/$BUILD/roostd
ROOST=$ROOT/$BUILD/roost
BENCH=$ROOT/$BUILD/bench_deposit
[[ $BUILD = /* ]] && ROOSTD=$BUILD/roostd ROOST=$BUILD/roost BENCH=$BUILD/bench_deposit

TMP=$(mktemp -d "${TMPDIR:-/tmp}/roost-bench-deposit.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "node $pid did not stop after SIGTERM: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
  if ((KEEP)); then
    echo "kept logs and data directories in $TMP"
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- machine and CPUs -----------------------------------------------------
NCPU=$(nproc 2>/dev/null || echo 1)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit+changes"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit, $NCPU CPUs:" \
  "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
  "libsodium $(pkg-config --modversion libsodium 2>/dev/null || echo '?')," \
  "SQLite $(pkg-config --modversion sqlite3 2>/dev/null || echo '?')"
echo "data directories in $TMP: $(df -PT "$TMP" | awk 'NR == 2 {print $2 " on " $1}')"
if [[ $(df -PT "$TMP" | awk 'NR == 2 {print $2}') = tmpfs ]]; then
  echo "  WARNING: tmpfs: fsync costs nothing here; set TMPDIR to a directory on a real disk"
fi
if ((NCPU >= 2)) && command -v taskset >/dev/null 2>&1; then
  PIN_TARGET=(taskset -c 1)
  PIN_OTHERS=(taskset -c 0)
  PIN_GEN=(taskset -c 0)
  PINNING="target roostd (event loop and SQLite thread pool) on CPU 1; bench_deposit and the other nodes on CPU 0"
else
  PIN_TARGET=() PIN_OTHERS=() PIN_GEN=()
  PINNING="no pinning ($NCPU CPU, or no taskset): the generator shares the target's CPU"
fi

# ---- ports ----------------------------------------------------------------
port_busy() { ss -Hlun 2>/dev/null | awk '{print $4}' | grep -q ":$1\$"; }
BASE=0
for _ in $(seq 20); do
  b=$((20000 + RANDOM % 30000))
  ok=1
  for ((i = 0; i < NODES; i++)); do
    if port_busy $((b + i)); then ok=0; break; fi
  done
  if ((ok)); then BASE=$b; break; fi
done
if ((BASE == 0)); then
  echo "bench-deposit.sh: no range of $NODES free UDP ports found" >&2
  exit 1
fi

# ---- the nodes ------------------------------------------------------------
# node 0: the bootstrap node; node 1: the target; nodes 2..: the rest.
status_json() { "$ROOST" --data-dir "$TMP/n$1" --json --timeout 5 status 2>/dev/null || true; }
json_field() { sed -n "s/.*\"$1\":\"\\{0,1\\}\\([^\",}]*\\).*/\\1/p"; }

# capacity for every deposit of every run (plus warm-ups), rounded up to MiB
CAP_M=$(((RUNS * (DEPOSITS + CLIENTS) * ITEM >> 20) + 64))
QUOTA_ITEMS=$((PER_MBOX > 64 ? PER_MBOX : 64))
QUOTA_K=$(((PER_MBOX * ITEM + 1023) / 1024))
((QUOTA_K < 64)) && QUOTA_K=64

IDS=()
for ((i = 0; i < NODES; i++)); do
  IDS[i]=$("$ROOST" --data-dir "$TMP/n$i" --json init | json_field id)
done
start_node() { # index, extra args...
  local i=$1
  shift
  local pin=("${PIN_OTHERS[@]}")
  ((i == 1)) && pin=("${PIN_TARGET[@]}")
  "${pin[@]}" "$ROOSTD" --data-dir "$TMP/n$i" --lan-discovery off --portmap off --mode server \
    --listen "127.0.0.1:$((BASE + i))" --snapshot-interval 3600 "$@" 2>"$TMP/n$i.log" &
  PIDS+=($!)
}
echo "starting $NODES roostd on 127.0.0.1:$BASE-$((BASE + NODES - 1)) ($PINNING)"
echo "target: node 1 with --rate-limit 0 (all bench clients share one source address)," \
  "--mailbox-capacity ${CAP_M}M, --mailbox-quota-items $QUOTA_ITEMS, --mailbox-quota ${QUOTA_K}K"
start_node 0
sleep 0.3
BOOT="${IDS[0]}@127.0.0.1:$BASE"
start_node 1 --bootstrap "$BOOT" --rate-limit 0 --mailbox-capacity "${CAP_M}M" \
  --mailbox-quota-items "$QUOTA_ITEMS" --mailbox-quota "${QUOTA_K}K"
TARGET_PID=${PIDS[1]}
for ((i = 2; i < NODES; i++)); do
  start_node "$i" --bootstrap "$BOOT"
done

t0=$SECONDS
while :; do
  js=$(status_json 1)
  state=$(json_field state <<<"$js")
  [[ $state = ready ]] && break
  if ((SECONDS - t0 > 60)); then
    echo "bench-deposit.sh: the target is not ready after 60 s (state '$state'); logs in $TMP" >&2
    KEEP=1
    exit 1
  fi
  sleep 0.5
done
sleep 1
echo "target ready after $((SECONDS - t0)) s: table $(json_field table_size <<<"$(status_json 1)") contacts"
grep -E '^(VmRSS|VmHWM)' "/proc/$TARGET_PID/status" | tr '\n' ' ' | sed 's/^/  target memory before: /;s/ *$/\n/'

# ---- the runs -------------------------------------------------------------
RESULTS=()
for ((run = 1; run <= RUNS; run++)); do
  read -r load1 _ </proc/loadavg
  echo
  echo "=== run $run of $RUNS (load average $load1 on $NCPU CPUs)"
  if awk -v l="$load1" 'BEGIN { exit !(l > 1.5) }'; then
    echo "  WARNING: other processes are using the CPUs: the figures are lower than this machine" \
      "can do (see 'waited for a CPU')"
  fi
  out=$("${PIN_GEN[@]}" "$BENCH" --target "${IDS[1]}@127.0.0.1:$((BASE + 1))" \
    --deposits "$DEPOSITS" --seconds "$SECS" --clients "$CLIENTS" --window "$WINDOW" \
    --per-mailbox "$PER_MBOX" --item-size "$ITEM" --target-pid "$TARGET_PID" 2>&1) ||
    echo "bench_deposit failed (exit $?)"
  echo "$out"
  res=$(grep '^RESULT ' <<<"$out" || true)
  [[ -n $res ]] && RESULTS+=("$res")
  grep -E '^(VmRSS|VmHWM)' "/proc/$TARGET_PID/status" | tr '\n' ' ' |
    sed 's/^/  target memory after this run: /;s/ *$/\n/'
done

# ---- summary --------------------------------------------------------------
field() { sed -n "s/.* $1=\\([^ ]*\\).*/\\1/p"; }
summary() { # key, unit: median and spread over the runs
  local vals
  vals=$(for r in "${RESULTS[@]}"; do field "$1" <<<" $r"; done | sort -g)
  awk -v key="$1" -v unit="$2" '{ v[NR] = $1 } END {
    if (NR == 0) exit
    med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "  %-16s median %10.2f %s   (min %.2f, max %.2f, %d runs)\n", key, med, unit, v[1], v[NR], NR
  }' <<<"$vals"
}
echo
echo "summary over ${#RESULTS[@]} runs (each: $DEPOSITS deposits or $SECS s, $CLIENTS clients," \
  "window $WINDOW, $PER_MBOX per mailbox, $ITEM-byte items):"
summary accepted_per_s "deposits/s"
summary p50_ms ms
summary p99_ms ms
summary max_ms ms
summary target_cpu_us "us CPU per deposit (target, all threads)"
summary refused ""
summary lost ""
summary batch "deposits per receipt burst (~per commit)"

echo
echo "target roostd after the runs:"
grep -E '^(VmRSS|VmHWM|Threads)' "/proc/$TARGET_PID/status" | sed 's/^/  /'
for f in "$TMP"/n1/mailboxes.db*; do
  [[ -f $f ]] && echo "  $(stat -c %s "$f") bytes  $(basename "$f")"
done
"$ROOST" --data-dir "$TMP/n1" --timeout 5 metrics 2>/dev/null |
  grep -E '^roost_(mailbox|store|deposit|receipt|commit|dropped|rx_packets|tx_packets)' |
  awk '$NF != 0 {print "  " $0}' || true
grep -iE 'warn|error' "$TMP/n1.log" | head -5 | sed 's/^/  target log: /' || true

# ---- send -> stored, end to end -------------------------------------------
if ((MSG > 0)); then
  echo
  echo "stopping the deposit nodes; scripts/bench-msg.py --messages $MSG (12 nodes, unpinned):"
  cleanup
  KEEP=0
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/roost-bench-deposit.XXXXXX")
  python3 scripts/bench-msg.py --roostd "$ROOSTD" --roost "$ROOST" --messages "$MSG" ||
    echo "bench-msg.py failed (exit $?)"
fi
echo
echo "stopping the nodes"

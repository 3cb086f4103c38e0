#!/usr/bin/env bash
# bench-udp.sh - FIND_NODE throughput of one roostd over real UDP, and the
# memory of an idle node.  It prints figures; it never fails on time.
#
# Starts a network of roostd on 127.0.0.1 only (every node gets
# --lan-discovery off --listen 127.0.0.1:PORT), waits until the target node
# is ready with >= 20 contacts, runs bench/bench_udp.c against it (target
# pinned to CPU 1, generator to CPU 0 when there are two CPUs or more), then
# prints the resident memory of an idle node with a full routing table, stops
# every node it started (SIGTERM by PID) and removes its temporary folder.
#
#   scripts/bench-udp.sh                      30 nodes, 2,000,000 requests / 10 s
#   scripts/bench-udp.sh --nodes 40 --seconds 5 --requests 500000 --clients 64 --window 256
#   scripts/bench-udp.sh --keep               keep logs and data dirs
# ROOST_BUILD=DIR uses that build tree (default build/; configured if missing).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUILD=${ROOST_BUILD:-build}

NODES=30
REQUESTS=2000000
SECS=10
CLIENTS=64
WINDOW=256
KEEP=0
while [[ $# -gt 0 ]]; do
  case $1 in
  --nodes) NODES=$2; shift 2 ;;
  --requests) REQUESTS=$2; shift 2 ;;
  --seconds) SECS=$2; shift 2 ;;
  --clients) CLIENTS=$2; shift 2 ;;
  --window) WINDOW=$2; shift 2 ;;
  --keep) KEEP=1; shift ;;
  -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
  *) echo "bench-udp.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if ((NODES < 22)); then
  echo "bench-udp.sh: --nodes must be >= 22 (20-contact replies need 21 other nodes)" >&2
  exit 2
fi

# ---- build ----------------------------------------------------------------
if [[ ! -f $BUILD/CMakeCache.txt ]]; then
  gen=()
  command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
  cmake -S . -B "$BUILD" "${gen[@]}" >/dev/null
fi
echo "building roostd, roost and the engine library in $BUILD..."
cmake --build "$BUILD" --target roostd roost roost_dht >/dev/null
ROOSTD=$ROOT/$BUILD/roostd
ROOST=$ROOT/$BUILD/roost
[[ $BUILD = /* ]] && ROOSTD=$BUILD/roostd ROOST=$BUILD/roost

TMP=$(mktemp -d "${TMPDIR:-/tmp}/roost-bench-udp.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "node $pid did not stop after SIGTERM: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  if ((KEEP)); then
    echo "kept logs and data directories in $TMP"
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if cmake --build "$BUILD" --target bench_udp >/dev/null 2>&1; then
  BENCH=$BUILD/bench_udp
else
  # no CMake target yet: build it directly against the engine library
  BENCH=$TMP/bench_udp
  # shellcheck disable=SC2046
  gcc -O2 -g -std=c11 -D_POSIX_C_SOURCE=200809L -I dht bench/bench_udp.c bench/bench_util.c \
    "$BUILD/libroost_dht.a" $(pkg-config --libs libsodium msgpack) -o "$BENCH"
fi

# ---- CPUs -----------------------------------------------------------------
NCPU=$(nproc 2>/dev/null || echo 1)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit+changes"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit, $NCPU CPUs:" \
  "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
  "libsodium $(pkg-config --modversion libsodium 2>/dev/null || echo '?')"
if ((NCPU >= 2)) && command -v taskset >/dev/null 2>&1; then
  PIN_TARGET=(taskset -c 1)
  PIN_OTHERS=(taskset -c 0)
  PIN_GEN=(taskset -c 0)
  PINNING="target roostd on CPU 1; bench_udp and the other nodes on CPU 0 ($NCPU CPUs)"
else
  PIN_TARGET=() PIN_OTHERS=() PIN_GEN=()
  PINNING="no pinning ($NCPU CPU, or no taskset): the generator shares the target's CPU"
fi

# ---- ports ----------------------------------------------------------------
# NODES consecutive UDP ports on 127.0.0.1 that nothing listens on
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
  echo "bench-udp.sh: no range of $NODES free UDP ports found" >&2
  exit 1
fi

# ---- the network ----------------------------------------------------------
# node 0: the bootstrap node; node 1: the target; node 2: the idle node whose
# memory is reported; nodes 3..: the rest.
status_json() { "$ROOST" --data-dir "$TMP/n$1" --json --timeout 5 status 2>/dev/null || true; }
json_field() { sed -n "s/.*\"$1\":\"\\{0,1\\}\\([^\",}]*\\).*/\\1/p"; }

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
echo "target: node 1 with --rate-limit 0 (the per-prefix limiter would otherwise cap one" \
  "source address at 400 datagrams/s by design; all bench clients share one address)"
start_node 0
sleep 0.3
BOOT="${IDS[0]}@127.0.0.1:$BASE"
start_node 1 --bootstrap "$BOOT" --rate-limit 0
TARGET_PID=${PIDS[1]}
for ((i = 2; i < NODES; i++)); do
  start_node "$i" --bootstrap "$BOOT"
done

# wait (at most 60 s) until the target is ready with >= 20 contacts and the
# idle node has joined
t0=$SECONDS
while :; do
  js=$(status_json 1)
  state=$(json_field state <<<"$js")
  tsize=$(json_field table_size <<<"$js")
  js2=$(status_json 2)
  state2=$(json_field state <<<"$js2")
  if [[ $state = ready && ${tsize:-0} -ge 20 && $state2 = ready ]]; then
    break
  fi
  if ((SECONDS - t0 > 60)); then
    echo "bench-udp.sh: the target is not ready after 60 s (state '$state', table" \
      "${tsize:-?}); logs in $TMP" >&2
    KEEP=1
    exit 1
  fi
  sleep 0.5
done
# a few more seconds so that every node's bucket refresh settles
sleep 3
js=$(status_json 1)
echo "target ready after $((SECONDS - t0)) s: state $(json_field state <<<"$js"), table" \
  "$(json_field table_size <<<"$js") contacts"

# ---- the benchmark --------------------------------------------------------
read -r load1 _ </proc/loadavg
echo "load average before the run: $load1 on $NCPU CPUs"
if awk -v l="$load1" 'BEGIN { exit !(l > 1.5) }'; then
  echo "  WARNING: other processes are using the CPUs: the rates below are lower than this" \
    "machine can do (see 'waited for a CPU' and the CPU time per answer)"
fi
echo
"${PIN_GEN[@]}" "$BENCH" --target "${IDS[1]}@127.0.0.1:$((BASE + 1))" --requests "$REQUESTS" \
  --seconds "$SECS" --clients "$CLIENTS" --window "$WINDOW" --target-pid "$TARGET_PID" ||
  echo "bench_udp failed (exit $?)"
echo
echo "target roostd after the run:"
grep -E '^(VmRSS|VmHWM)' "/proc/$TARGET_PID/status" | sed 's/^/  /'
"$ROOST" --data-dir "$TMP/n1" --timeout 5 metrics 2>/dev/null |
  grep -E '^roost_(rx_packets|tx_packets|requests_in|dropped)_total' |
  awk '$2 != 0 {print "  " $0}' || true

# ---- memory of an idle node -----------------------------------------------
js=$(status_json 2)
IDLE_PID=${PIDS[2]}
echo
echo "idle node (node 2, never benchmarked): state $(json_field state <<<"$js")," \
  "routing table $(json_field table_size <<<"$js") contacts in" \
  "$(json_field buckets <<<"$js") buckets, $(json_field records_stored <<<"$js") records stored"
grep -E '^(VmRSS|VmHWM)' "/proc/$IDLE_PID/status" | sed 's/^/  /'
echo
echo "stopping $NODES nodes"

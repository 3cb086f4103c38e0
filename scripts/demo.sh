#!/usr/bin/env bash
# demo.sh - the README's first command: set everything up, build, and run
# roost's main job.
#
# Until the daemon (node/) exists, the main job is the engine demonstration:
# 200 DHT engines on an in-memory network find each other, publish signed
# peer records and look each other up, then one engine is measured answering
# FIND_NODE requests.  Figures are printed; nothing leaves this process.
#
#   scripts/demo.sh           full run (about a minute)
#   scripts/demo.sh --quick   smaller and faster
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cmake >/dev/null 2>&1 || ! command -v pkg-config >/dev/null 2>&1 ||
  ! pkg-config --exists libsodium msgpack cmocka 2>/dev/null; then
  echo "demo.sh: installing build dependencies (scripts/install-deps.sh)"
  scripts/install-deps.sh
fi

if [[ ! -f build/CMakeCache.txt ]]; then
  gen=()
  command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
  cmake -S . -B build "${gen[@]}" >/dev/null
fi
cmake --build build --parallel "$(nproc 2>/dev/null || echo 2)" --target bench_engine >/dev/null

exec build/bench_engine "$@"

#!/usr/bin/env bash
# demo.sh - the README's first command: set everything up, build, and run
# roost's main job: a local network of 20 nodes on 127.0.0.1 in which a
# message reaches a friend who was offline, while two of the nodes keeping
# it crash; the timeline is explained in plain words as it happens
# (scripts/demo.py).  It starts and stops every node itself and removes its
# temporary folder.
#
#   scripts/demo.sh              the demo
#   scripts/demo.sh --nodes 40   more nodes;  --keep keeps logs and data dirs
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

have_deps() {
  command -v cmake >/dev/null 2>&1 && command -v pkg-config >/dev/null 2>&1 &&
    command -v cc >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1 &&
    pkg-config --exists libsodium msgpack cmocka libuv sqlite3 miniupnpc 2>/dev/null
}
if ! have_deps; then
  echo "demo.sh: installing build dependencies (scripts/install-deps.sh)"
  scripts/install-deps.sh
fi

if [[ ! -f build/CMakeCache.txt ]]; then
  gen=()
  command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
  cmake -S . -B build "${gen[@]}" >/dev/null
fi
echo "building roostd and roost..."
cmake --build build --parallel "$(nproc 2>/dev/null || echo 2)" --target roostd roost >/dev/null

exec python3 scripts/demo.py --roostd build/roostd --roost build/roost "$@"

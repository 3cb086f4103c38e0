#!/usr/bin/env bash
# test.sh - build roost in build/ and run the whole test suite.
#
#   scripts/test.sh            every test (unit, fuzz replay, and later layers)
#   scripts/test.sh -L unit    extra arguments go to ctest
#
# Works on a fresh Debian 12: if a build tool or library is missing it runs
# scripts/install-deps.sh first.  Configures build/ if needed (Ninja when
# available, else Make), builds, then runs
#   ctest --test-dir build --output-on-failure -j2 "$@"
# and exits with ctest's status.  Extra CMake options for a first configure
# can be given in ROOST_CMAKE_ARGS (e.g. ROOST_CMAKE_ARGS=-DROOST_WERROR=ON).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD=build

have_deps() {
  command -v cmake >/dev/null 2>&1 && command -v pkg-config >/dev/null 2>&1 &&
    command -v cc >/dev/null 2>&1 &&
    pkg-config --exists libsodium msgpack cmocka libuv sqlite3 miniupnpc jansson 2>/dev/null &&
    echo '#include <natpmp.h>' | cc -E -x c - >/dev/null 2>&1
}
if ! have_deps; then
  echo "test.sh: build dependencies missing; running scripts/install-deps.sh"
  scripts/install-deps.sh
fi

# Configure when there is no build tree yet (or it was never generated).
if [[ ! -f $BUILD/CMakeCache.txt ]]; then
  gen=()
  command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
  read -r -a extra <<<"${ROOST_CMAKE_ARGS:-}"
  cmake -S . -B "$BUILD" "${gen[@]}" "${extra[@]}"
fi

jobs=$(nproc 2>/dev/null || echo 2)
cmake --build "$BUILD" --parallel "$jobs"

set +e
ctest --test-dir "$BUILD" --output-on-failure -j2 "$@"
rc=$?
set -e
exit "$rc"

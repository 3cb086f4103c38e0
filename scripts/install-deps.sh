#!/usr/bin/env bash
# install-deps.sh - install roost's build and test dependencies on Debian 12.
#
# Idempotent: it asks dpkg which packages are missing and only then runs
# `apt-get update` and `apt-get install`, so a second run is fast and works
# offline.  Uses sudo when not root (and sudo exists); fails with a clear
# message otherwise.
#
# No service is started or left running by the install: while apt-get runs,
# a temporary /usr/sbin/policy-rc.d (exit 101) forbids every service start
# (unless one is there already, as in Docker images: then it is left alone),
# and it is removed again on exit, whatever happens.
#
# Usage: scripts/install-deps.sh
set -euo pipefail

# One package a line, grouped by what needs it.
PACKAGES=(
  # compilers and build tools
  build-essential cmake pkg-config ninja-build
  # clang 14 for libFuzzer targets and its sanitizer/fuzzer runtimes
  clang libclang-rt-14-dev
  # libraries
  libuv1-dev libsodium-dev libmsgpack-dev libminiupnpc-dev libnatpmp-dev
  libsqlite3-dev libqrencode-dev libjansson-dev
  # tests, formatting, benchmark plots
  libcmocka-dev zlib1g-dev clang-format gnuplot-nox python3
  # natlab (tests/natlab, label "natlab"): network namespaces, NAT rules,
  # conntrack flushes, a real UPnP/NAT-PMP router (miniupnpd's nftables
  # build: the binary only, no service) and the clients the lab's self-test
  # drives it with (upnpc; natpmpc, which natpmp-utils is a transitional
  # package for in Debian 12)
  iproute2 nftables conntrack miniupnpd-nftables miniupnpc natpmpc
)

die() {
  echo "install-deps: $*" >&2
  exit 1
}

is_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

command -v dpkg-query >/dev/null 2>&1 ||
  die "dpkg-query not found: this script supports Debian 12 (and derivatives) only;" \
    "install the equivalents of: ${PACKAGES[*]}"

missing=()
for p in "${PACKAGES[@]}"; do
  is_installed "$p" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=()
if ((EUID != 0)); then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    die "missing packages (${missing[*]}) and not root, and sudo is not installed;" \
      "run this script as root"
  fi
fi
command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install: ${missing[*]}"

echo "install-deps: installing ${#missing[@]} package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

# Packages with a daemon (miniupnpd's) may try to start it from their
# maintainer scripts; invoke-rc.d and deb-systemd-invoke ask policy-rc.d
# first, and 101 means "action forbidden", which is not an error.
POLICY_RC=/usr/sbin/policy-rc.d
policy_made=0
remove_policy() {
  if ((policy_made)); then
    "${SUDO[@]}" rm -f "$POLICY_RC" || echo "install-deps: could not remove $POLICY_RC" >&2
    policy_made=0
  fi
}
trap remove_policy EXIT
if [[ ! -e $POLICY_RC ]]; then
  policy_made=1
  printf '#!/bin/sh\n# scripts/install-deps.sh: no service starts during the install\nexit 101\n' |
    "${SUDO[@]}" tee "$POLICY_RC" >/dev/null || die "cannot write $POLICY_RC"
  "${SUDO[@]}" chmod 755 "$POLICY_RC" || die "cannot chmod $POLICY_RC"
fi
"${SUDO[@]}" apt-get update -q ||
  die "apt-get update failed (offline?); still missing: ${missing[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q "${missing[@]}" </dev/null ||
  die "apt-get install failed; still missing: ${missing[*]}"
remove_policy

still=()
for p in "${missing[@]}"; do
  is_installed "$p" || still+=("$p")
done
((${#still[@]} == 0)) || die "still missing after install: ${still[*]}"
echo "install-deps: done"

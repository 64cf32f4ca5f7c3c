#!/usr/bin/env bash
# Installs the Debian packages the benchmark suite needs. Idempotent: packages already installed
# are not touched, and apt-get runs only when something is missing. Non-interactive (works with
# CI=true and no terminal). Run as root, or as a user with sudo.
#
#   bench/install-deps.sh            everything (the full suite)
#   bench/install-deps.sh --minimal  only what building mprof and the smoke run need
set -euo pipefail

# Building libmprof.so and the bench programs.
build_pkgs=(cmake make gcc libc6-dev pkg-config libmimalloc-dev libunwind-dev zlib1g-dev python3)
# The allocators and profilers compared, the real programs, and the measuring tools.
full_pkgs=(libmimalloc2.0 libjemalloc2 libgoogle-perftools4 libtcmalloc-minimal4 sqlite3 valgrind
           gnuplot-nox binutils linux-perf)

pkgs=("${build_pkgs[@]}")
if [[ "${1:-}" != "--minimal" ]]; then
  pkgs+=("${full_pkgs[@]}")
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then sudo=(sudo -n); else
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null

#!/usr/bin/env bash
# Installs the Debian packages the benchmark suite needs. Idempotent: packages already installed
# are not touched, and apt-get runs only when something is missing. Non-interactive (works with
# CI=true and no terminal). Run as root, or as a user with sudo.
#
#   bench/install-deps.sh            everything (the full suite)
#   bench/install-deps.sh --minimal  only what building mprof and the smoke run need
set -euo pipefail

# Building libmprof.so, the baseline libmimalloc-plain.so (both from mimalloc's source package,
# fetched below) and the bench programs.
build_pkgs=(cmake make gcc libc6-dev pkg-config dpkg-dev libunwind-dev zlib1g-dev python3)
# The allocators and profilers compared (libmimalloc2.0: Debian's build of the same mimalloc, an
# extra comparison row), the real programs, and the measuring tools.
full_pkgs=(libmimalloc2.0 libjemalloc2 libgoogle-perftools4 libtcmalloc-minimal4 sqlite3 valgrind
           gnuplot-nox binutils linux-perf)

pkgs=("${build_pkgs[@]}")
if [[ "${1:-}" != "--minimal" ]]; then
  pkgs+=("${full_pkgs[@]}")
fi

"$(dirname "$0")/../scripts/apt-ensure.sh" "${pkgs[@]}"
"$(dirname "$0")/../scripts/fetch-sources.sh" >/dev/null

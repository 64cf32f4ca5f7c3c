#!/usr/bin/env bash
# Installs the Debian packages mprof needs to build and test, and fetches the allocator sources
# (Debian's source package mimalloc 2.0.9+ds-2, into ~/.cache/mprof/sources: see
# scripts/fetch-sources.sh). Idempotent; non-interactive.
#   build:      cmake gcc g++ (C++ test program) pkg-config zlib1g-dev libdw-dev (the mprof command
#               names frames from debug information with elfutils) dpkg-dev (dpkg-source
#               unpacks the source package) libunwind-dev (stacks on architectures other than
#               x86-64; bench_unwind on x86-64)
#   sources:    also jemalloc 5.3.0-1 (the jemalloc that libmprof-jemalloc.so is built from)
#   tests:      libcmocka-dev golang-go (go tool pprof) clang + libclang-rt-14-dev (sanitizers,
#               libFuzzer) libjemalloc-dev (jeprof, jemalloc comparisons)
#   and, unless --minimal, tests/reliability, tests/tools (chromium for the flame graph test)
#   and bench install-deps scripts
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pkgs=(cmake make gcc g++ pkg-config dpkg-dev libunwind-dev zlib1g-dev libcmocka-dev golang-go
      clang libclang-rt-14-dev libjemalloc-dev file libdw-dev)
"$root/scripts/apt-ensure.sh" "${pkgs[@]}"
"$root/scripts/fetch-sources.sh" mimalloc=2.0.9+ds-2 jemalloc=5.3.0-1 >/dev/null
for extra in "$root/tests/reliability/install-deps.sh" "$root/tests/tools/install-deps.sh" \
             "$root/bench/install-deps.sh"; do
  if [ -x "$extra" ] && [ "${1:-}" != "--minimal" ]; then "$extra"; fi
done

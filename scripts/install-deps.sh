#!/usr/bin/env bash
# Installs the Debian packages mprof needs to build and test. Idempotent; non-interactive.
#   build:      cmake gcc g++ (C++ test program) pkg-config libmimalloc-dev libunwind-dev zlib1g-dev
#   sources:    jemalloc 5.3.0-1 (Debian source package, into ~/.cache/mprof/sources: the
#               jemalloc that libmprof-jemalloc.so is built from; scripts/fetch-sources.sh)
#   tests:      libcmocka-dev golang-go (go tool pprof) clang + libclang-rt-14-dev (sanitizers,
#               libFuzzer) libjemalloc-dev (jeprof, jemalloc comparisons)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pkgs=(cmake make gcc g++ pkg-config libmimalloc-dev libunwind-dev zlib1g-dev libcmocka-dev golang-go
      clang libclang-rt-14-dev libjemalloc-dev file)
"$root/scripts/apt-ensure.sh" "${pkgs[@]}"
"$root/scripts/fetch-sources.sh" jemalloc=5.3.0-1 >/dev/null
for extra in "$root/tests/reliability/install-deps.sh" "$root/bench/install-deps.sh"; do
  if [ -x "$extra" ] && [ "${1:-}" != "--minimal" ]; then "$extra"; fi
done

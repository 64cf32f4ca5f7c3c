#!/usr/bin/env bash
# Installs the Debian packages mprof needs to build and test. Idempotent; non-interactive.
#   build:      cmake gcc g++ (C++ test program) pkg-config libmimalloc-dev libunwind-dev zlib1g-dev
#   tests:      libcmocka-dev golang-go (go tool pprof) clang + libclang-rt-14-dev (sanitizers,
#               libFuzzer) libjemalloc-dev (jeprof, jemalloc comparisons)
set -euo pipefail
pkgs=(cmake make gcc g++ pkg-config libmimalloc-dev libunwind-dev zlib1g-dev libcmocka-dev golang-go
      clang libclang-rt-14-dev libjemalloc-dev file)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for extra in tests/reliability/install-deps.sh bench/install-deps.sh; do
  if [ -x "$extra" ] && [ "${1:-}" != "--minimal" ]; then "$extra"; fi
done

#!/usr/bin/env bash
# Runs every test, in build directories of its own (build-test*, so a user's build/ keeps its
# settings): the normal build (warnings are errors) with unit, integration, reliability and
# benchmark smoke tests, then the core's tests under ASan+UBSan and under TSan.
# Usage: scripts/test.sh [--quick]   (--quick: normal build only)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
run() { # run BUILD_DIR CMAKE_ARGS...
  local dir=$1
  shift
  echo "=== $dir: cmake $* ==="
  cmake -S . -B "$dir" -DMPROF_WERROR=ON "$@" >/dev/null
  local log=$dir/build.log
  if ! cmake --build "$dir" -j"$jobs" >"$log" 2>&1; then
    grep -E -B2 -A8 '(error|warning):' "$log" || tail -40 "$log"
    echo "build of $dir failed"
    return 1
  fi
  if grep -E '(warning|error):' "$log"; then
    echo "build of $dir printed warnings"
    return 1
  fi
  (cd "$dir" && ctest --output-on-failure -j"$jobs" --timeout 900)
}
run build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [ "${1:-}" != "--quick" ]; then
  run build-test-asan -DCMAKE_BUILD_TYPE=Debug -DMPROF_ASAN=ON
  run build-test-tsan -DCMAKE_BUILD_TYPE=Debug -DMPROF_TSAN=ON
fi
echo "all test builds passed"

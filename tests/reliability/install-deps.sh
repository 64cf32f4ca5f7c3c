#!/usr/bin/env bash
# Installs what the reliability tests (tests/reliability) need beyond scripts/install-deps.sh:
# real programs run under the profiler and CPython's regression tests. Idempotent,
# non-interactive. Tests whose package is missing fail when CI=true and are skipped otherwise.
set -euo pipefail
pkgs=(libpython3.11-testsuite python3.11 sqlite3 git gcc gzip)
"$(dirname "$0")/../../scripts/apt-ensure.sh" "${pkgs[@]}"

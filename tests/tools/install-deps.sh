#!/usr/bin/env bash
# Installs what the mprof command's tests (tests/tools) need beyond scripts/install-deps.sh:
# headless Chromium to render the flame graph, and the real programs run under `mprof run`.
# Idempotent, non-interactive. The browser test fails when CI=true and chromium is missing, and
# is skipped otherwise.
set -euo pipefail
pkgs=(chromium sqlite3 python3)
"$(dirname "$0")/../../scripts/apt-ensure.sh" "${pkgs[@]}"

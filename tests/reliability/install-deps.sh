#!/usr/bin/env bash
# Installs what the reliability tests (tests/reliability) need beyond scripts/install-deps.sh:
# real programs run under the profiler and CPython's regression tests. Idempotent,
# non-interactive. Tests whose package is missing fail when CI=true and are skipped otherwise.
set -euo pipefail
pkgs=(libpython3.11-testsuite python3.11 sqlite3 git gcc gzip)
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

#!/usr/bin/env bash
# apt-ensure.sh PACKAGE...: installs the Debian packages of the list that are not installed yet.
# Idempotent (apt-get runs only when something is missing), non-interactive (CI=true, no
# terminal). Run as root, or as a user with password-less sudo. The project's install-deps
# scripts all go through it.
set -euo pipefail
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then sudo=(sudo -n); else
    echo "apt-ensure: need root to install: ${missing[*]}" >&2
    exit 1
  fi
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null

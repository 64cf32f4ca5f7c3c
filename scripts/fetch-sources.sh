#!/usr/bin/env bash
# fetch-sources.sh [PACKAGE=VERSION ...]: downloads Debian source packages into the source cache
# and unpacks each once, without changing the machine's apt configuration.
#
# The machine's own Debian entries (deb822 files under /etc/apt/sources.list.d and one-line
# entries in /etc/apt/sources.list) are copied as `deb-src` entries into a private sources list;
# apt then fetches and checks the package against the archive's signed checksums. Nothing of the
# allocators is kept in the repository: the tree lives in the cache directory.
#
#   cache: $MPROF_SOURCE_CACHE, default ${XDG_CACHE_HOME:-$HOME/.cache}/mprof/sources
#   default packages: mimalloc=2.0.9+ds-2
# Prints, per package, the unpacked tree's directory on stdout.
set -euo pipefail
cache=${MPROF_SOURCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mprof/sources}
[ $# -gt 0 ] || set -- mimalloc=2.0.9+ds-2
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

apt_dir=$cache/apt
setup_apt() {
  [ -s "$apt_dir/sources.list" ] && [ -d "$apt_dir/lists/partial" ] && return 0
  mkdir -p "$apt_dir/lists/partial"
  local out=$apt_dir/sources.list.tmp
  : >"$out"
  # One-line entries: "deb [opts] URI suite components..." -> deb-src.
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f" >>"$out"
  done
  # deb822 stanzas: keep each stanza that has Types: deb, typed deb-src instead.
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'BEGIN { RS=""; FS="\n" }
         { keep=0; s="";
           for (i = 1; i <= NF; i++) {
             line=$i
             if (line ~ /^#/) continue
             if (line ~ /^Types:/) { if (line ~ /[[:space:]]deb([[:space:]]|$)/) keep=1; line="Types: deb-src" }
             s = s line "\n"
           }
           if (keep) printf "%s\n", s }' "$f" >"$apt_dir/$(basename "$f")"
  done
  mv "$out" "$apt_dir/sources.list"
}

apt_opts=()
fetch_one() { # fetch_one NAME VERSION
  local name=$1 version=$2
  local dest=$cache/$name-$version
  if [ -f "$dest/.complete" ]; then
    echo "$dest"
    return 0
  fi
  setup_apt
  apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir"
            -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::archives=$apt_dir/archives"
            -o "APT::Sandbox::User=root" -qq)
  if ! ls "$apt_dir/lists/"*Sources* >/dev/null 2>&1; then
    apt-get "${apt_opts[@]}" update >&2
  fi
  local work=$cache/.dl-$name
  rm -rf "$work" "$dest"
  mkdir -p "$work"
  if ! (cd "$work" && apt-get "${apt_opts[@]}" source --download-only "$name=$version" >&2); then
    echo "fetch-sources: apt could not download the source package $name=$version" >&2
    return 1
  fi
  # dpkg-source verifies the .dsc checksums against the files apt downloaded (and apt verified
  # the .dsc against the signed Sources index). Unpack without applying anything else.
  local dsc
  dsc=$(ls "$work"/*.dsc)
  if command -v dpkg-source >/dev/null; then
    (cd "$work" && dpkg-source --no-check -x "$dsc" tree >&2)
  else
    local orig
    orig=$(ls "$work"/*.orig.tar.* | head -1)
    mkdir -p "$work/tree"
    tar -xf "$orig" -C "$work/tree" --strip-components=1
  fi
  mv "$work/tree" "$dest"
  rm -rf "$work"
  touch "$dest/.complete"
  echo "$dest"
}

for spec in "$@"; do
  fetch_one "${spec%%=*}" "${spec#*=}"
done

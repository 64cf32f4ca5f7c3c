#!/usr/bin/env bash
# `cmake --install` puts the mprof command, its man page and the library in the prefix, and the
# installed command finds the installed library (not the build tree's) from its own directory.
# Usage: mprof_install.sh BUILD_DIR HELLO_HEAP
set -euo pipefail
build=$1 hello=$2
work=$(mktemp -d /tmp/mprof-tools-install.XXXXXX)
trap 'rm -rf "$work"' EXIT
fails=0 checks=0
ok() { checks=$((checks + 1)); echo "ok   $1"; }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL $1"; }
cmake --install "$build" --prefix "$work/prefix" >/dev/null
m=$work/prefix/bin/mprof
[ -x "$m" ] && ok "bin/mprof installed" || bad "no bin/mprof"
man=$(find "$work/prefix" -path '*man1/mprof.1')
[ -s "$man" ] && ok "man page installed at ${man#"$work/prefix/"}" || bad "no man page"
grep -q '^\.TH MPROF 1' "$man" && ok "man page has a title line" || bad "man page title"
for cmd in run top diff flame; do
  grep -q "^\.B mprof $cmd\|^\\\\fBmprof $cmd" "$man" && ok "man page documents $cmd" || bad "man page lacks $cmd"
done
"$m" --version | grep -q '^mprof [0-9]' && ok "installed mprof --version" || bad "--version"
# Run from a copy of the prefix elsewhere: the library is found relative to the command.
mv "$work/prefix" "$work/moved"
m=$work/moved/bin/mprof
"$m" run -o "$work/hh" -- "$hello" >/dev/null 2>"$work/err" && rc=0 || rc=$?
[ "$rc" -eq 0 ] && grep -q ' make_cache ' "$work/err" && ok "installed mprof run profiles the example" ||
  bad "installed run: $rc $(cat "$work/err")"
lib=$(find "$work/moved" -name 'libmprof.so' | head -1)
"$m" run -q -o "$work/maps" -- cat /proc/self/maps >"$work/maps.txt"
grep -qF "$(readlink -f "$lib")" "$work/maps.txt" && ok "the installed library was preloaded" ||
  bad "the installed library was not the one preloaded: $(grep mprof "$work/maps.txt" | head -2)"
echo "$((checks - fails)) passed, $fails failed"
[ "$fails" -eq 0 ]

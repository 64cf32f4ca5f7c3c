#!/usr/bin/env bash
# `mprof top`, `diff` and `flame` on files: profiles written by Go's own runtime/pprof (built
# here, offline, from the standard library only) read with the names and file:line Go wrote and
# the same numbers as go tool pprof; a growing program's two dumps name the growing site; bad
# input gives one line and status 2, never a crash.
# Usage: mprof_read.sh MPROF TOOL_PROG
. "$(dirname "$0")/tools_lib.sh"
prog=$2

# A heap profile from Go's runtime/pprof.
mkdir -p "$work/go"
cat >"$work/go/main.go" <<'GO'
package main

import (
	"os"
	"runtime"
	"runtime/pprof"
)

var keep [][]byte
var sink []byte

//go:noinline
func growCache() {
	for i := 0; i < 512; i++ {
		keep = append(keep, make([]byte, 64<<10))
	}
}

//go:noinline
func churn() {
	for i := 0; i < 4096; i++ {
		sink = make([]byte, 8192)
	}
}

func main() {
	runtime.MemProfileRate = 4096
	growCache()
	churn()
	runtime.GC()
	f, err := os.Create(os.Args[1])
	if err != nil {
		panic(err)
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		panic(err)
	}
	f.Close()
}
GO
gp=$work/go/heap.pb.gz
# Offline and without modules: the program uses the standard library only.
gocache=$(go env GOCACHE 2>/dev/null || true)
[ -n "$gocache" ] && [ "$gocache" != off ] || export GOCACHE=$work/gocache
(cd "$work/go" && GOPROXY=off GOFLAGS= GO111MODULE=off go run main.go "$gp") &&
  ok "Go wrote a heap profile with runtime/pprof" || bad "go run failed"
for idx in inuse_space alloc_space; do
  flag=--inuse
  [ $idx = alloc_space ] && flag=--alloc
  want=$(pprof_top "$gp" $idx 3)
  got=$(mprof_top "$gp" $flag 3)
  [ -n "$want" ] && [ "$want" = "$got" ] && ok "Go profile: $idx top sites equal go tool pprof's" ||
    bad "Go profile $idx: pprof '$want' vs mprof '$got'"
done
"$mprof" top "$gp" --lines >"$work/lines"
grep -Eq ' main\.growCache +.*/main\.go:[0-9]+$' "$work/lines" && ok "Go profile: file:line from its Line entries" ||
  bad "no file:line: $(cat "$work/lines")"
"$mprof" top "$gp" --alloc | grep -q ' main\.churn ' && ok "Go profile: main.churn allocated" || bad "no main.churn"
grep -q '^reconciliation: not recorded in this profile' "$work/lines" && ok "no reconciliation for a Go profile" ||
  bad "reconciliation line"
"$mprof" flame "$gp" -o "$work/go.html" && grep -q '"main.growCache"' "$work/go.html" &&
  ok "Go profile: flame graph holds main.growCache" || bad "flame of Go profile"

# An mprof profile with every allocation sampled: objects and bytes exact.
"$mprof" run -q -r 1 -o "$work/ex" -- "$prog" leak
p=$(ls "$work"/ex.*.f.pb.gz)
"$mprof" top "$p" --objects --exact -n 1 >"$work/obj"
sed -n 3p "$work/obj" | grep -Eq '^ +4096 +[0-9.]+% +4194304 B +leak_site ' && ok "--objects: 4096 objects of leak_site" ||
  bad "--objects: $(cat "$work/obj")"

# diff: two dumps of a growing program.
"$mprof" run -q -o "$work/g" -- "$prog" grow "$work"
"$mprof" diff "$work/a.pb.gz" "$work/b.pb.gz" >"$work/diff" 2>&1 && rc=0 || rc=$?
[ "$rc" -eq 0 ] && ok "diff exits 0" || bad "diff status $rc: $(cat "$work/diff")"
sed -n 3p "$work/diff" | grep -q ' grow_site ' && ok "diff names the growing site first" || bad "diff: $(cat "$work/diff")"
sed -n 3p "$work/diff" | grep -q '^ *+' && ok "its change is positive" || bad "diff sign"
grep -q '^in use: .* -> .*(+' "$work/diff" && ok "diff prints totals" || bad "diff totals"
"$mprof" diff "$work/b.pb.gz" "$work/b.pb.gz" | grep -q '(no site changed)' &&
  ok "a profile against itself: no change" || bad "self diff"

# Bad input: one line, status 2.
one_line() { # one_line NAME EXPECTED_REGEX CMD...
  local name=$1 re=$2
  shift 2
  "$@" >"$work/o" 2>"$work/e" && rc=0 || rc=$?
  if [ "$rc" -eq 2 ] && [ "$(wc -l <"$work/e")" -eq 1 ] && grep -Eq "$re" "$work/e" && [ ! -s "$work/o" ]; then
    ok "$name: $(cat "$work/e")"
  else
    bad "$name: status $rc, stderr '$(cat "$work/e")'"
  fi
}
one_line "missing file" '^mprof: .*/nope\.pb\.gz: cannot open: No such file or directory$' \
  "$mprof" top "$work/nope.pb.gz"
printf 'hello, this is not a profile\n' >"$work/text"
one_line "not a profile" '^mprof: .*/text: not a pprof profile' "$mprof" top "$work/text"
head -c 200 "$gp" >"$work/trunc.pb.gz"
one_line "truncated gzip" '^mprof: .*/trunc\.pb\.gz: truncated gzip data$' "$mprof" top "$work/trunc.pb.gz"
printf '\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage-garbage' >"$work/corrupt.gz"
one_line "corrupt gzip" '^mprof: .*/corrupt\.gz: corrupt gzip data' "$mprof" top "$work/corrupt.gz"
: >"$work/empty"
one_line "empty file" '^mprof: .*/empty: empty file, not a pprof profile$' "$mprof" top "$work/empty"
one_line "a directory" '^mprof: .*: not a regular file$' "$mprof" top "$work"
"$mprof" run -q --conf prof_active:false -o "$work/z" -- "$prog" clean
zp=$(ls "$work"/z.*.f.pb.gz)
one_line "zero samples" '^mprof: .*: the profile has no samples$' "$mprof" top "$zp"
one_line "zero samples (flame)" '^mprof: .*: the profile has no samples$' "$mprof" flame "$zp" -o "$work/z.html"
one_line "unknown command" '^mprof: unknown command "frobnicate"' "$mprof" frobnicate
one_line "unknown option" '^mprof: unknown option "--bogus"' "$mprof" top "$gp" --bogus
one_line "run without a command" '^mprof: run needs a command' "$mprof" run
one_line "bad rate" '^mprof: --rate needs a positive number' "$mprof" run -r 0 -- true
one_line "bad allocator" '^mprof: --allocator must be mimalloc or jemalloc' "$mprof" run --allocator tcmalloc -- true
if [ ! -e "$(dirname "$(readlink -f "$mprof")")/../libmprof-jemalloc.so" ]; then
  one_line "jemalloc build missing" '^mprof: --allocator jemalloc: libmprof-jemalloc\.so is not installed next to this mprof' \
    "$mprof" run --allocator jemalloc -- true
fi
one_line "MPROF_LIB_DIR without the library" '^mprof: libmprof\.so is not in MPROF_LIB_DIR \(' \
  env MPROF_LIB_DIR="$work" "$mprof" run -- true
libdir=$(dirname "$(readlink -f "$mprof")")/..
MPROF_LIB_DIR=$libdir "$mprof" run -q -o "$work/env" -- "$prog" exit 0 >/dev/null &&
  ls "$work"/env.*.f.pb.gz >/dev/null 2>&1 && ok "MPROF_LIB_DIR chooses the library" || bad "MPROF_LIB_DIR"
one_line "flame without -o" '^mprof: flame needs -o OUT\.html' "$mprof" flame "$gp"
one_line "diff with one file" '^mprof: diff needs two profiles' "$mprof" diff "$gp"
"$mprof" run -q -o "$work/nx" -- "$work/no-such-program" 2>"$work/e" && rc=0 || rc=$?
[ "$rc" -eq 127 ] && [ "$(wc -l <"$work/e")" -eq 1 ] && ok "a missing program: status 127, one line" ||
  bad "missing program: $rc $(cat "$work/e")"
"$mprof" --help | grep -q '^usage: mprof run' && ok "--help" || bad "--help"
finish

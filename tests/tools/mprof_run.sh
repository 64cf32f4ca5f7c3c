#!/usr/bin/env bash
# `mprof run` on the bundled example and on the test program: the program's output and exit
# status are kept, the report names the example's sites, its tables agree with `go tool pprof
# -top` on the same file, and --leaks fails a leaking program and passes a clean one.
# Usage: mprof_run.sh MPROF HELLO_HEAP TOOL_PROG
. "$(dirname "$0")/tools_lib.sh"
hello=$2 prog=$3

# The example: output unchanged, report on stderr.
"$hello" >"$work/plain.out"
"$mprof" run -o "$work/hh" -- "$hello" >"$work/run.out" 2>"$work/run.err" && rc=0 || rc=$?
[ "$rc" -eq 0 ] && ok "exit status 0 kept" || bad "exit status $rc"
sed 's/ at 0x[0-9a-f]*$//' "$work/plain.out" >"$work/a"
sed 's/ at 0x[0-9a-f]*$//' "$work/run.out" >"$work/b"
cmp -s "$work/a" "$work/b" && ok "program output unchanged" || bad "program output differs"
profile=$(sed -n 's/^profile: //p' "$work/run.err")
[[ $profile == "$work"/hh.*.f.pb.gz ]] && [ -f "$profile" ] && ok "report gives the profile path" ||
  bad "profile path '$profile'"
inuse=$(sed -n '/^in use:/,/^$/p' "$work/run.err")
alloc=$(sed -n '/^allocated over the run:/,/^$/p' "$work/run.err")
for f in make_cache leak_nodes; do
  grep -q " $f " <<<"$inuse" && ok "$f in the in-use table" || bad "$f missing from in-use table"
done
grep -q " parse_lines " <<<"$inuse" && bad "parse_lines holds nothing at exit" || ok "parse_lines not in use"
[ "$(sed -n 3p <<<"$alloc" | awk '{print $5}')" = parse_lines ] && ok "parse_lines tops allocated" ||
  bad "allocated table: $alloc"
grep -q '^reconciliation (mimalloc' "$work/run.err" && ok "reconciliation block" || bad "no reconciliation"
grep -q 'committed (allocator, exact)' "$work/run.err" && grep -q '^  process RSS ' "$work/run.err" &&
  ok "allocator's committed bytes and the process RSS shown" || bad "reconciliation rows missing"
for idx in inuse_space alloc_space; do
  flag=--inuse
  [ $idx = alloc_space ] && flag=--alloc
  want=$(pprof_top "$profile" $idx 3)
  got=$(mprof_top "$profile" $flag 3)
  [ -n "$want" ] && [ "$want" = "$got" ] && ok "$idx top sites and bytes equal go tool pprof's" ||
    bad "$idx: pprof '$want' vs mprof '$got'"
done
want=$(go tool pprof -top -lines -unit=B -nodefraction=0 -sample_index=alloc_space "$profile" 2>/dev/null |
  sed -n '/flat%/,$p' | tail -n +2 | awk '$1 != "0" { sub(/B$/, "", $1); print $1, $6, $7 }' | head -3)
got=$("$mprof" top "$profile" --alloc --lines --exact -n 3 | sed -n '3,/^$/p' | awk 'NF >= 6 { print $1, $5, $6 }')
[ -n "$want" ] && [ "$want" = "$got" ] && ok "--lines: file:line from DWARF equal go tool pprof -lines" ||
  bad "--lines: pprof '$want' vs mprof '$got'"
grep -Eq ' make_cache +[^ ]*/examples/hello_heap\.c:[0-9]+$' "$work/run.err" && ok "the report names the source file" ||
  bad "no source file in the report"
rtotal=$(sed -n 's/^  estimated in use (samples) *\([0-9]*\) B.*/\1/p' < <("$mprof" top "$profile" --exact))
ptotal=$(go tool pprof -top -unit=B -sample_index=inuse_space "$profile" 2>/dev/null |
  sed -n 's/.* of \([0-9]*\)B total.*/\1/p')
[ -n "$rtotal" ] && [ "$rtotal" = "$ptotal" ] && ok "estimate in the comments = pprof's inuse total ($ptotal)" ||
  bad "estimate '$rtotal' vs pprof total '$ptotal'"

# Exit status and signals.
"$mprof" run -q -o "$work/ex" -- "$prog" exit 7 >"$work/out" 2>"$work/err" && rc=0 || rc=$?
[ "$rc" -eq 7 ] && ok "exit status 7 kept" || bad "exit status $rc, wanted 7"
grep -qx 'tool_prog: exit 7' "$work/out" && ok "stdout kept" || bad "stdout: $(cat "$work/out")"
[ -s "$work/err" ] && bad "-q printed: $(cat "$work/err")" || ok "-q prints nothing"
"$mprof" run -o "$work/kill" -- "$prog" kill >/dev/null 2>"$work/err" && rc=0 || rc=$?
[ "$rc" -eq 143 ] && ok "killed by SIGTERM: status 143" || bad "kill: status $rc"
[ "$(grep -c '^mprof: ' "$work/err")" -eq 1 ] && ok "one line says why there is no profile" ||
  bad "kill: $(cat "$work/err")"

# --rate: every allocation sampled.
"$mprof" run -r 1 -o "$work/r1" -- "$prog" leak 2>"$work/err" >/dev/null
p=$(sed -n 's/^profile: //p' "$work/err")
v=$(go tool pprof -top -unit=B -nodefraction=0 -sample_index=inuse_space "$p" 2>/dev/null |
  awk '$6 == "leak_site" { sub(/B$/, "", $1); print $1 }')
[ "$v" = 4194304 ] && ok "-r 1: leak_site exactly 4 MiB in use" || bad "-r 1: leak_site '$v'"

# --leaks.
"$mprof" run --leaks -r 4096 -o "$work/lk" -- "$prog" leak >/dev/null 2>"$work/err" && rc=0 || rc=$?
[ "$rc" -eq 23 ] && ok "--leaks: a leaking program exits 23" || bad "--leaks leak: status $rc"
grep -q '^mprof: leak check failed: ' "$work/err" && ok "leak check failed line" || bad "no failed line"
sed -n '/^still in use at exit:/,/^$/p' "$work/err" | grep -q ' leak_site ' &&
  ok "leak_site listed as still in use" || bad "leak_site not listed"
"$mprof" run --leaks -r 1 -o "$work/cl" -- "$prog" clean >/dev/null 2>"$work/err" && rc=0 || rc=$?
[ "$rc" -eq 0 ] && ok "--leaks: a clean program exits 0" || bad "--leaks clean: status $rc: $(cat "$work/err")"
grep -q '^mprof: leak check passed' "$work/err" && ok "leak check passed line" || bad "no passed line"
"$mprof" run --leak-threshold 8388608 -r 4096 -o "$work/th" -- "$prog" leak >/dev/null 2>&1 && rc=0 || rc=$?
[ "$rc" -eq 0 ] && ok "--leak-threshold 8 MiB: a 4 MiB leak passes" || bad "threshold: status $rc"
"$mprof" run --leaks -o "$work/lx" -- "$prog" exit 5 >/dev/null 2>&1 && rc=0 || rc=$?
[ "$rc" -eq 5 ] && ok "--leaks keeps a failing program's status" || bad "--leaks exit 5: status $rc"

# --conf passes options through; MPROF_CONF from the environment comes first.
"$mprof" run -q --conf prof_active:false -o "$work/off" -- "$prog" leak >/dev/null 2>&1
p=$(ls "$work"/off.*.f.pb.gz)
"$mprof" top "$p" >/dev/null 2>"$work/err" && rc=0 || rc=$?
[ "$rc" -eq 2 ] && grep -qx "mprof: $p: the profile has no samples" "$work/err" &&
  ok "--conf prof_active:false: no samples" || bad "--conf: status $rc $(cat "$work/err")"

# Reconciliation names through the real glue.
"$mprof" run -q -o "$work/st" -- "$prog" stats >"$work/stats"
get() { awk -v n="$1" '$1 == n { print $2 }' "$work/stats"; }
max=18446744073709551615
c=$(get stats.allocator.committed) r=$(get stats.process_rss) e=$(get stats.estimated_bytes_in_use)
[ -n "$c" ] && [ "$c" != $max ] && [ "$c" -gt 4194304 ] && ok "stats.allocator.committed = $c" ||
  bad "stats.allocator.committed '$c'"
[ -n "$r" ] && [ "$r" != $max ] && [ "$r" -gt 0 ] && ok "stats.process_rss = $r" || bad "rss '$r'"
[ -n "$e" ] && [ "$e" -gt 0 ] && ok "stats.estimated_bytes_in_use = $e" || bad "estimate '$e'"
[ "$(get stats.allocator.allocated)" = $max ] && ok "jemalloc-only names read UINT64_MAX" ||
  bad "stats.allocator.allocated $(get stats.allocator.allocated)"
[ "$(awk '$3 != 0' "$work/stats" | wc -l)" -eq 0 ] && ok "every stats name answers 0" || bad "ctl errors"
# An empty in-use view says why; the peak profile is named.
"$mprof" run -o "$work/cl" --conf prof_peak:true -- "$prog" clean 2>"$work/cl.err" >/dev/null
grep -q '(nothing: the program freed all it allocated, .* before this profile was written' "$work/cl.err" &&
  ok "empty in-use table: a hint that the program freed everything" || bad "empty view: $(cat "$work/cl.err")"
peak=$(sed -n 's/^peak profile: //p' "$work/cl.err")
[[ $peak == "$work"/cl.tool_prog.*.f.peak.pb.gz ]] && [ -f "$peak" ] && ok "the peak profile named in the report" ||
  bad "peak profile: '$peak'"
# Thread labels: one row per thread.
"$mprof" run -r 1 -q --conf prof_thread_labels:true -o "$work/thr" -- "$prog" threads
"$mprof" top "$work"/thr.tool_prog.*.f.pb.gz --by-thread --exact >"$work/th.out"
[ "$(sed -n 3p "$work/th.out" | awk '{print $1, $5}')" = "3145728 worker-b" ] &&
  [ "$(sed -n 4p "$work/th.out" | awk '{print $1, $5}')" = "1048576 worker-a" ] &&
  ok "top --by-thread: worker-b 3 MiB, worker-a 1 MiB" || bad "--by-thread: $(cat "$work/th.out")"
finish

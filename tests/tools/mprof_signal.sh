#!/usr/bin/env bash
# Signals and `mprof run`: SIGTERM and SIGHUP sent to mprof are forwarded to the program, after a
# snapshot of its heap, so the report shows the heap as it was at the signal (and the status is
# the program's, 128+signal); with --interval, a program killed by SIGKILL, or with mprof itself
# by SIGTERM to the whole process group, still gets a report from its latest snapshot.
# Usage: mprof_signal.sh MPROF TOOL_PROG
. "$(dirname "$0")/tools_lib.sh"
prog=$2

wait_ready() { # FILE: until the program printed "ready" (at most 10 s)
  for _ in $(seq 200); do grep -q ready "$1" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}
child_of() { cat "/proc/$1/task/$1/children" 2>/dev/null | awk '{print $1}'; }

for sig in TERM HUP; do
  "$mprof" run -o "$work/$sig" -- "$prog" hold >"$work/$sig.out" 2>"$work/$sig.err" &
  m=$!
  wait_ready "$work/$sig.out" || bad "$sig: the program never got ready"
  kill -$sig $m
  wait $m && rc=0 || rc=$?
  want=$((128 + $(kill -l $sig)))
  [ $rc -eq $want ] && ok "SIG$sig to mprof: forwarded, status $rc" || bad "SIG$sig: status $rc, want $want"
  grep -q 'the heap as it was at the signal' "$work/$sig.err" && ok "SIG$sig: report labelled as the heap at the signal" ||
    bad "SIG$sig: $(cat "$work/$sig.err")"
  grep -q ' leak_site ' "$work/$sig.err" && ok "SIG$sig: leak_site's 4 MiB in the report" || bad "SIG$sig: no leak_site"
  ps -eo pid,args | grep -v grep | grep -q "$prog hold" && bad "SIG$sig: the program is still running" ||
    ok "SIG$sig: no program left running"
done

# SIGKILL to the program: the latest --interval snapshot is reported.
"$mprof" run --interval 1 -o "$work/k" -- "$prog" hold >"$work/k.out" 2>"$work/k.err" &
m=$!
wait_ready "$work/k.out" || bad "KILL: the program never got ready"
for _ in $(seq 100); do ls "$work"/k.*.s*.pb.gz >/dev/null 2>&1 && break; sleep 0.05; done
kill -KILL "$(child_of $m)"
wait $m && rc=0 || rc=$?
[ $rc -eq 137 ] && ok "SIGKILL to the program: status 137" || bad "SIGKILL: status $rc"
grep -q 'latest snapshot (--interval)' "$work/k.err" && grep -q ' leak_site ' "$work/k.err" &&
  ok "SIGKILL: report of the latest --interval snapshot, leak_site in it" || bad "SIGKILL: $(cat "$work/k.err")"

# SIGTERM to the whole process group (mprof and the program at once): the snapshot again.
command -v setsid >/dev/null || skip_or_fail "setsid not installed"
setsid "$mprof" run --interval 1 -o "$work/g" -- "$prog" hold >"$work/g.out" 2>"$work/g.err" &
m=$!
wait_ready "$work/g.out" || bad "group: the program never got ready"
for _ in $(seq 100); do ls "$work"/g.*.s*.pb.gz >/dev/null 2>&1 && break; sleep 0.05; done
kill -TERM -- -$m
wait $m && rc=0 || rc=$?
[ $rc -eq 143 ] && ok "SIGTERM to the process group: status 143" || bad "group: status $rc"
grep -q ' leak_site ' "$work/g.err" && grep -q 'snapshot' "$work/g.err" &&
  ok "SIGTERM to the process group: a report from a snapshot" || bad "group: $(cat "$work/g.err")"
"$mprof" run --interval 0 -- true 2>/dev/null && bad "--interval 0 accepted" || ok "--interval 0 refused"
# A prof_dump_signal of the user's own: mprof never sends its dump signal (whose default action
# would end the program); SIGTERM is still forwarded.
"$mprof" run --conf prof_dump_signal:SIGUSR2 -o "$work/u" -- "$prog" hold >"$work/u.out" 2>"$work/u.err" &
m=$!
wait_ready "$work/u.out" || bad "own signal: the program never got ready"
kill -TERM $m
wait $m && rc=0 || rc=$?
[ $rc -eq 143 ] && ok "--conf prof_dump_signal:SIGUSR2: SIGTERM forwarded, status 143 (not killed by SIGRTMAX-3)" ||
  bad "own signal: status $rc $(cat "$work/u.err")"
"$mprof" run --interval 1 --conf prof_dump_signal:SIGUSR2 -- true 2>/dev/null && bad "--interval with own signal accepted" ||
  ok "--interval with the user's own dump signal refused"
finish

#!/usr/bin/env bash
# Age labels, the peak profile, thread labels, and dumps on a signal and over a threshold, at
# lg_prof_sample:0 (every allocation sampled, so every figure is exact), read by go tool pprof.
# Run once per library.
. "$(dirname "$0")/it_lib.sh"

run() { # run CONF ARGS...: the program under the library
  local conf=$1
  shift
  MPROF_CONF="lg_prof_sample:0${conf:+,$conf}" LD_PRELOAD="$lib" "$prog" "$@"
}
# value FILE SAMPLE_INDEX FUNCTION [PPROF ARGS...] -> flat value (0 if absent)
value() {
  local f=$1 si=$2 fn=$3
  shift 3
  go tool pprof -top -nodecount=1000 -nodefraction=0 -edgefraction=0 -unit=B -sample_index="$si" \
    "$@" "$f" 2>/dev/null |
    awk -v f="$fn" '$NF == f { v = $1; sub(/B$/, "", v); print v; found = 1 } END { if (!found) print 0 }'
}
expect() { # expect LABEL GOT WANT
  [ "$2" = "$3" ] && ok "$1 = $3" || bad "$1: got $2, want $3"
}

# --- Age: site_old survives 5 + 3 epoch writes, site_mid 3, site_new none; the second dump
# (two more boundaries) adds 2 to every age.
run "" age "$work/a1.pb.gz" "$work/a2.pb.gz"
a1=$work/a1.pb.gz a2=$work/a2.pb.gz
expect "dump 1 site_old in use" "$(value "$a1" inuse_space site_old)" 6000
expect "dump 1 site_mid in use" "$(value "$a1" inuse_space site_mid)" 10000
expect "dump 1 site_new in use" "$(value "$a1" inuse_space site_new)" 2100
expect "dump 1 site_old allocated" "$(value "$a1" alloc_space site_old)" 10000
expect "dump 1 age 8-15 site_old" "$(value "$a1" inuse_space site_old -tagfocus=age_epochs=8:15)" 6000
expect "dump 1 age 8-15 site_mid" "$(value "$a1" inuse_space site_mid -tagfocus=age_epochs=8:15)" 0
expect "dump 1 age 2-3 site_mid" "$(value "$a1" inuse_space site_mid -tagfocus=age_epochs=2:3)" 10000
expect "dump 1 age 0 site_new" "$(value "$a1" inuse_space site_new -tagfocus=age_epochs=0)" 2100
expect "dump 1 age 0 site_old" "$(value "$a1" inuse_space site_old -tagfocus=age_epochs=0)" 0
expect "dump 1 age >= 4 objects" "$(value "$a1" inuse_objects site_old -tagfocus=age_epochs=4:)" 6
expect "dump 2 age 8-15 site_old" "$(value "$a2" inuse_space site_old -tagfocus=age_epochs=8:15)" 6000
expect "dump 2 age 4-7 site_mid" "$(value "$a2" inuse_space site_mid -tagfocus=age_epochs=4:7)" 10000
expect "dump 2 age 2-3 site_new" "$(value "$a2" inuse_space site_new -tagfocus=age_epochs=2:3)" 2100
tags=$(go tool pprof -tags -sample_index=inuse_space "$a1" 2>/dev/null)
[[ $tags == *"age_epochs:"* && $tags == *"age_min_ms:"* ]] && ok "-tags lists age_epochs and age_min_ms" ||
  bad "-tags output lacks the age labels: $tags"
run "prof_age:false" age "$work/n1.pb.gz" "$work/n2.pb.gz"
expect "prof_age:false site_old in use" "$(value "$work/n1.pb.gz" inuse_space site_old)" 6000
tags=$(go tool pprof -tags -sample_index=inuse_space "$work/n1.pb.gz" 2>/dev/null)
[[ $tags != *"age_epochs"* ]] && ok "prof_age:false writes no age label" || bad "age label with prof_age:false"

# --- Peak and threshold: the peak (site_a + site_b) differs from the final heap (site_a +
# site_c); 5 MiB is crossed twice (by site_b and by site_d) but dumped once.
run "prof_peak:true,prof_final:true,prof_prefix:$work/pk,prof_dump_over:5242880" peak "$work/peak.pb.gz"
fpeak=$(ls "$work"/pk.*.f.peak.pb.gz 2>/dev/null || true)
final=$(ls "$work"/pk.*.f.pb.gz 2>/dev/null || true)
[ -n "$fpeak" ] && ok "final peak profile written as <prefix>.<pid>.<seq>.f.peak.pb.gz" || bad "no final peak profile"
for f in "$work/peak.pb.gz" "$fpeak"; do
  expect "peak $(basename "$f") site_a" "$(value "$f" inuse_space site_a)" 1048576
  expect "peak $(basename "$f") site_b" "$(value "$f" inuse_space site_b)" 10485760
  expect "peak $(basename "$f") site_c" "$(value "$f" inuse_space site_c)" 0
done
expect "final site_b" "$(value "$final" inuse_space site_b)" 0
expect "final site_c" "$(value "$final" inuse_space site_c)" 2097152
over=$(ls "$work"/pk.*.o*.pb.gz 2>/dev/null | wc -l)
expect "threshold dumps" "$over" 1
f=$(ls "$work"/pk.*.o0.pb.gz 2>/dev/null || echo missing)
expect "threshold dump site_b" "$(value "$f" inuse_space site_b)" 10485760
run "prof_final:true,prof_prefix:$work/np" peak "$work/none.pb.gz" 2>"$work/err" && bad "prof.peak.dump without prof_peak succeeded" ||
  ok "prof.peak.dump without prof_peak fails"
grep -q "prof.peak.dump: error 2" "$work/err" && ok "... with ENOENT" || bad "... not ENOENT: $(cat "$work/err")"
ls "$work"/np.*.peak.pb.gz >/dev/null 2>&1 && bad "peak file without prof_peak" || ok "no peak file without prof_peak"

# --- Thread labels.
out=$(run "prof_thread_labels:true" threads "$work/t.pb.gz")
tid=$(awk '/^unnamed/ { print $2 }' <<<"$out")
t=$work/t.pb.gz
expect "thread worker-a" "$(value "$t" inuse_space site_thread -tagfocus=thread=^worker-a\$)" 30000
expect "thread worker-b" "$(value "$t" inuse_space site_thread -tagfocus=thread=^worker-b\$)" 50000
expect "unnamed thread (tid $tid)" "$(value "$t" inuse_space site_thread -tagfocus=thread=^$tid\$)" 20000
expect "main thread (it_labels)" "$(value "$t" inuse_space site_thread -tagfocus=thread=^it_labels\$)" 10000
expect "all threads" "$(value "$t" inuse_space site_thread)" 110000
run "" threads "$work/t0.pb.gz" >/dev/null
tags=$(go tool pprof -tags -sample_index=inuse_space "$work/t0.pb.gz" 2>/dev/null)
[[ $tags != *"thread:"* ]] && ok "no thread label by default" || bad "thread label without prof_thread_labels"

# --- A dump on a signal sent from another process.
mkdir "$work/sig"
MPROF_CONF="lg_prof_sample:0,prof_dump_signal:SIGUSR2,prof_prefix:$work/sig/sg" LD_PRELOAD="$lib" \
  "$prog" signal "$work/sig" &
pid=$!
for _ in $(seq 1 200); do [ -e "$work/sig/ready" ] && break; sleep 0.05; done
kill -USR2 "$pid"
for _ in $(seq 1 200); do ls "$work"/sig/sg.*.s0.pb.gz >/dev/null 2>&1 && break; sleep 0.05; done
touch "$work/sig/stop"
status=0
wait "$pid" || status=$?
expect "signalled program's exit status" "$status" 0
f=$(ls "$work"/sig/sg.*.s0.pb.gz 2>/dev/null || echo missing)
[ -f "$f" ] && ok "signal dump written as <prefix>.<pid>.<seq>.s0.pb.gz" || bad "no signal dump"
expect "signal dump site_kept" "$(value "$f" inuse_space site_kept)" 100000
expect "signal dump site_kept objects" "$(value "$f" inuse_objects site_kept)" 100
gzip -t "$f" 2>/dev/null && ok "signal dump is a complete gzip stream" || bad "signal dump truncated"
ls "$work"/sig/*.tmp.* >/dev/null 2>&1 && bad "temporary file left" || ok "no temporary file left"
finish

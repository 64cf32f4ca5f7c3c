#!/usr/bin/env bash
# The contention profile with real programs (tests/integration/it_mutex.c):
#  - threads contending on a pthread mutex in known functions show those functions, with a
#    recorded delay close to the wait the threads measured (fraction 1; and fraction 4, looser);
#  - threads hammering the allocator show the profiler's own locks, and the sentinel frame
#    carries exactly what stats.contentions_lost counted;
#  - fork and exit while threads wait on mutexes work, and the final dump writes a mutex profile;
#  - prof.mutex_app written at run time takes effect;
#  - with the option off, nothing is recorded and the program runs as before.
. "$(dirname "$0")/it_lib.sh"

# cum value (ns or count) of the function named $2 in profile $1, sample index $3
cum() {
  go tool pprof -top -nodefraction=0 -nodecount=1000 -sample_index="$3" -unit=ns "$1" 2>/dev/null |
    awk -v f="$2" '$6 == f { v = $4; sub(/ns$/, "", v); print v; found = 1; exit }
                   END { if (!found) print 0 }'
}
total() { # sum of flat values
  go tool pprof -top -nodefraction=0 -nodecount=1000 -sample_index="$2" -unit=ns "$1" 2>/dev/null |
    awk '/^ *[0-9]/ { v = $1; sub(/ns$/, "", v); s += v } END { print s + 0 }'
}
ratio_in() { # ratio_in NUM DEN LO HI
  awk -v n="$1" -v d="$2" -v lo="$3" -v hi="$4" 'BEGIN { r = d > 0 ? n / d : 0; exit !(r >= lo && r <= hi) }'
}

# --- the program's mutexes, fraction 1 and 4 ------------------------------------------------
for frac in 1 4; do
  case $frac in 1) lo=0.80 hi=1.05 ;; *) lo=0.6 hi=1.5 ;; esac
  out=$(MPROF_CONF="prof_mutex_fraction:$frac,prof_mutex_app:true" LD_PRELOAD="$lib" "$prog" app "$work") ||
    { bad "app run (fraction $frac) failed"; continue; }
  read -r _ wa wb <<<"$out"
  da=$(cum "$work/app.pb.gz" contend_alpha delay)
  db=$(cum "$work/app.pb.gz" contend_beta delay)
  echo "fraction $frac: measured alpha $wa beta $wb ns; recorded alpha $da beta $db ns"
  [ "$da" -gt 0 ] && [ "$db" -gt 0 ] && ok "fraction $frac: both contending functions in the profile" ||
    bad "fraction $frac: contend_alpha/contend_beta missing"
  ratio_in $((da + db)) $((wa + wb)) $lo $hi && ok "fraction $frac: total delay within [$lo, $hi] of the measured wait" ||
    bad "fraction $frac: total delay $((da + db)) vs measured $((wa + wb))"
  [ "$frac" != 1 ] && { go tool pprof -raw "$work/app.pb.gz" 2>/dev/null | grep -q "Period: $frac" &&
    ok "period = fraction $frac" || bad "period is not $frac"; }
  if [ "$frac" = 1 ]; then
    ratio_in "$da" "$wa" 0.6 1.1 && ratio_in "$db" "$wb" 0.6 1.1 && ok "fraction 1: each function's delay matches its own wait" ||
      bad "fraction 1: per-function delays $da/$wa, $db/$wb"
    raw=$(go tool pprof -raw "$work/app.pb.gz" 2>/dev/null)
    [[ $raw == *"PeriodType: contentions count"* && $raw == *"Period: 1"* &&
       $raw == *"contentions/count delay/nanoseconds"* ]] &&
      ok "Go mutex profile layout (sample and period types, period)" || bad "profile layout: $raw"
  fi
done

# --- option off: nothing recorded ----------------------------------------------------------
out=$(LD_PRELOAD="$lib" "$prog" app "$work") && ok "app run with the profile off" || bad "app run off failed"
n=$(total "$work/app.pb.gz" contentions)
[ "$n" = 0 ] && ok "profile off: no contention recorded" || bad "profile off recorded $n"
out=$(MPROF_CONF="prof_mutex_fraction:1" LD_PRELOAD="$lib" "$prog" app "$work") || bad "app run, app off"
da=$(cum "$work/app.pb.gz" contend_alpha delay)
[ "$da" = 0 ] && ok "prof_mutex_app:false: the program's mutexes are not recorded" || bad "app mutex recorded with prof_mutex_app:false"

# --- prof.mutex_app switched on at run time -------------------------------------------------
out=$(MPROF_CONF="prof_mutex_fraction:1" LD_PRELOAD="$lib" "$prog" toggle "$work") || bad "toggle run failed"
da=$(cum "$work/toggle.pb.gz" contend_alpha delay)
db=$(cum "$work/toggle.pb.gz" contend_beta delay)
[ "$da" = 0 ] && [ "$db" -gt 0 ] && ok "prof.mutex_app written at run time: recorded from then on" ||
  bad "toggle: alpha $da (want 0), beta $db (want > 0)"

# --- the profiler's own locks -----------------------------------------------------------------
out=$(MPROF_CONF="prof_mutex_fraction:1,lg_prof_sample:0" LD_PRELOAD="$lib" "$prog" alloc "$work") ||
  bad "alloc run failed"
read -r _ n _ lost <<<"$out"
echo "alloc: contentions $n lost $lost"
locks=$(go tool pprof -top -nodefraction=0 -sample_index=contentions "$work/alloc.pb.gz" 2>/dev/null | grep -c 'mprof_lock:' || true)
[ "$locks" -gt 0 ] && ok "profiler locks appear as mprof_lock:<name> frames" || bad "no mprof_lock: frame"
s=$(cum "$work/alloc.pb.gz" mprof_lost_contended_lock contentions)
# How many are lost depends on the scheduling (usually dozens): what is lost must be in the
# sentinel, exactly.
[ "$s" = "$lost" ] && ok "sentinel frame carries the $lost lost contentions" ||
  bad "sentinel $s vs stats.contentions_lost $lost"
t=$(total "$work/alloc.pb.gz" contentions)
[ "$t" = "$n" ] && ok "profile total equals stats.contentions" || bad "profile total $t vs stats $n"

# --- fork and exit while threads wait on mutexes ------------------------------------------
conf="prof_mutex_fraction:1,prof_mutex_app:true,prof_final:true,prof_prefix:$work/fe,lg_prof_sample:10"
status=0
out=$(MPROF_CONF="$conf" timeout -s KILL 60 env LD_PRELOAD="$lib" "$prog" fork) || status=$?
[ "$status" = 0 ] && [ "$out" = "fork ok" ] && ok "fork while threads wait" || bad "fork: status $status, $out"
f=$(ls "$work"/fe.*.f.mutex.pb.gz 2>/dev/null | head -1)
[ -n "$f" ] && [ "$(cum "$f" waiter delay)" -gt 0 ] && ok "final mutex profile shows the waiters" ||
  bad "no final mutex profile with waiter"
rm -f "$work"/fe.*
status=0
out=$(MPROF_CONF="$conf" timeout -s KILL 60 env LD_PRELOAD="$lib" "$prog" exit) || status=$?
[ "$status" = 0 ] && ok "exit while threads wait" || bad "exit: status $status"
ls "$work"/fe.*.1.f.mutex.pb.gz >/dev/null 2>&1 && ok "final mutex profile written at exit (<prefix>.<pid>.<seq>.f.mutex.pb.gz)" ||
  bad "no final mutex profile at exit: $(ls "$work")"
for m in fork exit; do
  status=0
  timeout -s KILL 60 env LD_PRELOAD="$lib" "$prog" $m >/dev/null || status=$?
  [ "$status" = 0 ] && ok "$m with the profile off" || bad "$m off: status $status"
done
finish

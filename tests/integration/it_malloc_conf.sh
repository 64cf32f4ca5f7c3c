#!/usr/bin/env bash
# jemalloc's own contract kept (libmprof-jemalloc.so): every profiling option of jemalloc 5.3's
# MALLOC_CONF that plain jemalloc accepts (checked here with abort_conf:true, under which plain
# jemalloc aborts on any option it refuses) is accepted, the program runs as it does without the
# options, and one line on stderr names the options that have no effect.
# Arguments: LIBMPROF_JEMALLOC PROGRAM PLAIN_LIBJEMALLOC.
. "$(dirname "$0")/it_lib.sh"
plain=$(realpath "$3") prog=$(realpath "$prog") lib=$(realpath "$lib")

confs=(
  "prof:true" "prof:false" "prof_prefix:/nonexistent/jeprof" "prof_active:false"
  "prof_thread_active_init:false" "lg_prof_sample:0" "lg_prof_sample:30" "prof_accum:true"
  "lg_prof_interval:20" "lg_prof_interval:-1" "prof_gdump:true" "prof_final:true"
  "prof_leak:true" "prof_leak_error:true,prof_final:true" "prof_log:true"
  "prof_recent_alloc_max:100" "prof_recent_alloc_max:-1" "prof_stats:true"
  "prof_sys_thread_name:true" "prof_time_resolution:default" "prof_time_resolution:high"
  "prof_unbias:false"
  "prof:true,prof_leak_error:true,prof_final:true"
  "prof:true,prof_active:true,lg_prof_sample:16,prof_accum:true,prof_gdump:true,prof_final:true,prof_leak:true,prof_leak_error:true,lg_prof_interval:25,prof_prefix:je"
)
# The program prints an address: compare without it.
strip() { sed 's/0x[0-9a-f]*/ADDR/g' "$1"; }
LD_PRELOAD=$lib "$prog" >"$work/want" 2>/dev/null
mkdir "$work/plain" "$work/lib"
for c in "${confs[@]}"; do
  conf="abort_conf:true,$c"
  # Plain jemalloc refuses an option by aborting (abort_conf:true); prof_leak_error's exit
  # status 1 on a leak (the program leaks) is not a refusal.
  set +e
  (cd "$work/plain" && MALLOC_CONF=$conf LD_PRELOAD=$plain "$prog" >/dev/null 2>"$work/plain.err")
  rc=$?
  set -e
  if [ "$rc" -ge 128 ] || grep -qi 'invalid conf' "$work/plain.err"; then
    echo "skip $c: plain jemalloc refuses it"
    continue
  fi
  set +e
  (cd "$work/lib" && MALLOC_CONF=$conf LD_PRELOAD=$lib "$prog" >"$work/out" 2>"$work/err")
  rc=$?
  set -e
  [ "$rc" = 0 ] && ok "$c: exit 0" || bad "$c: exit $rc ($(head -c 300 "$work/err"))"
  [ "$(strip "$work/out")" = "$(strip "$work/want")" ] && ok "$c: same output" || bad "$c: output differs"
  lines=$(grep -c . "$work/err" || true)
  names=$(echo "$c" | tr ',' '\n' | sed 's/:.*//' | sort -u | tr '\n' ' ')
  if [ "$lines" = 1 ] && grep -q '^mprof: MALLOC_CONF profiling options have no effect' "$work/err"; then
    ok "$c: one line on stderr"
    for n in $names; do
      grep -q " $n\( \|$\)" "$work/err" && ok "$c: names $n" || bad "$c: $n not named: $(cat "$work/err")"
    done
  else
    bad "$c: stderr was: $(head -c 300 "$work/err")"
  fi
  [ -z "$(ls -A "$work/lib")" ] && ok "$c: no file written" || bad "$c: files: $(ls "$work/lib")"
done
# Options that are not about profiling say nothing.
MALLOC_CONF=abort_conf:true,narenas:2,tcache:false LD_PRELOAD=$lib "$prog" >/dev/null 2>"$work/err"
[ ! -s "$work/err" ] && ok "tuning options: nothing on stderr" || bad "tuning options: $(cat "$work/err")"
finish

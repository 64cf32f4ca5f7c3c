#!/usr/bin/env bash
# Signals, atexit, thread-local destructors and exit under libmprof.so (see rel_exit.c): no
# deadlock (the program arms alarm(60), the driver a timeout), no crash, exactly one final
# profile per process, and that profile equals the program's own counts per site.
#
# Usage: rel_exit.sh LIBMPROF REL_EXIT [MODE...]   (default: handler atexit atexit-exit tls exitdump)
#   MODE multiexit runs 5 times: eight threads call exit() at once.
set -u
. "$(dirname "$0")/rel_lib.sh"
lib=$1 prog=$2
shift 2
modes=${*:-handler atexit atexit-exit tls exitdump}
rel_init
need_cmd go golang-go

run_mode() { # run_mode MODE RUN -> checks, leaves the final profile's name in $final
  local mode=$1 run=$2 d="$work/$1.$2"
  mkdir -p "$d"
  # env, not timeout, gets LD_PRELOAD: timeout would write a final profile of its own.
  MPROF_CONF="lg_prof_sample:0,prof_final:true,prof_prefix:$d/final" \
    timed 120 env LD_PRELOAD="$lib" "$prog" "$mode" "$d" >"$d/truth" 2>"$d/stderr"
  local rc=$?
  cat "$d/stderr"
  check_eq "$mode #$run: exit status (124 = timeout, 142 = SIGALRM: deadlock)" "$rc" 0
  no_profiler_lines "$mode #$run: no message from the profiler" "$d/stderr"
  check "$mode #$run: no temporary dump files left" bash -c "! ls '$d' | grep -q '\\.tmp\\.'"
  final=$(ls "$d"/final.*.f.pb.gz 2>/dev/null)
  check_eq "$mode #$run: final profiles written" "$(echo "$final" | grep -c .)" 1
  [ -n "$final" ] || return
  pprof_values "$final" alloc_objects >"$d/alloc"
  pprof_values "$final" inuse_objects >"$d/inuse"
  while read -r site aobj iobj; do
    check_eq "$mode #$run: $site alloc_objects inuse_objects" \
      "$(value_of "$d/alloc" "$site") $(value_of "$d/inuse" "$site")" "$aobj $iobj"
  done <"$d/truth"
}

for mode in $modes; do
  if [ "$mode" = multiexit ]; then
    # Several threads calling exit at once: glibc 2.36 runs each atexit handler once, but the
    # first thread to finish exit() ends the process; the final profile must still be written
    # once, as docs/OPTIONS.md promises for prof_final.
    for run in 1 2 3 4 5; do
      run_mode multiexit "$run"
    done
  else
    run_mode "$mode" 1
  fi
done
rel_finish

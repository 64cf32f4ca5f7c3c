#!/usr/bin/env bash
# main() ends with pthread_exit(): the process still ends (within a bounded time), runs its exit
# handlers and writes the final profile.
. "$(dirname "$0")/it_lib.sh"
status=0
out=$(MPROF_CONF="lg_prof_sample:12,prof_final:true,prof_prefix:$work/pe" \
  timeout -s KILL 60 env LD_PRELOAD="$lib" "$prog") || status=$?
[ "$status" -eq 0 ] && ok "exit status 0" || bad "exit status $status (137 = hung)"
[[ $out == *"atexit handler ran"* ]] && ok "atexit handler ran" || bad "no atexit output: $out"
ls "$work"/pe.*.f.pb.gz >/dev/null 2>&1 && ok "final profile written" || bad "no final profile"
finish

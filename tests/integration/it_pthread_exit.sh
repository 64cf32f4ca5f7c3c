#!/usr/bin/env bash
# main() ends with pthread_exit(): the process still ends (within a bounded time), runs its exit
# handlers and writes the final profile.
set -euo pipefail
lib=$1 prog=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
out=$(MPROF_CONF="lg_prof_sample:12,prof_final:true,prof_prefix:$work/pe" \
  timeout -s KILL 60 env LD_PRELOAD="$lib" "$prog") || status=$?
fails=0
[ "$status" -eq 0 ] && echo "ok   exit status 0" || { echo "FAIL exit status $status (137 = hung)"; fails=$((fails + 1)); }
[[ $out == *"atexit handler ran"* ]] && echo "ok   atexit handler ran" || { echo "FAIL no atexit output: $out"; fails=$((fails + 1)); }
ls "$work"/pe.*.f.pb.gz >/dev/null 2>&1 && echo "ok   final profile written" || { echo "FAIL no final profile"; fails=$((fails + 1)); }
echo "$((3 - fails)) passed, $fails failed"
[ "$fails" -eq 0 ]

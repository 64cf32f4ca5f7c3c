#!/usr/bin/env bash
# A bad MPROF_CONF prints one clear line per bad pair, keeps the defaults and the program runs on.
set -euo pipefail
lib=$1 prog=$2
fails=0 checks=0
expect() { # expect CONF EXPECTED_STDERR
  checks=$((checks + 1))
  local out err
  err=$(MPROF_CONF="$1" LD_PRELOAD=$lib "$prog" 2>&1 >/dev/null) || { echo "FAIL $1: program failed"; fails=$((fails + 1)); return; }
  if [ "$err" == "$2" ]; then echo "ok   $1"; else
    echo "FAIL $1: stderr was:"; echo "$err"; echo "wanted:"; echo "$2"; fails=$((fails + 1)); fi
}
expect 'bogus:1' 'mprof: invalid conf pair "bogus:1": unknown option'
expect 'lg_prof_sample:99' 'mprof: invalid conf pair "lg_prof_sample:99": out of range (0..62)'
expect 'prof_active:yes' 'mprof: invalid conf pair "prof_active:yes": not a boolean (expected true or false)'
expect 'prof_stack_depth:12x' 'mprof: invalid conf pair "prof_stack_depth:12x": not an integer'
expect 'lg_prof_sample' 'mprof: malformed conf string at "lg_prof_sample": missing '"':'"' after key'
expect 'bogus:1,lg_prof_sample:99' 'mprof: invalid conf pair "bogus:1": unknown option
mprof: invalid conf pair "lg_prof_sample:99": out of range (0..62)'
expect 'lg_prof_sample:18,prof_active:true' ''
echo "$((checks - fails)) passed, $fails failed"
[ "$fails" -eq 0 ]

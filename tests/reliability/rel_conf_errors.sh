#!/usr/bin/env bash
# Bad MPROF_CONF strings through libmprof.so, table-driven: each bad pair prints exactly one line
# on stderr (of the documented form), leaves that option at its previous value, and the program
# runs to the end. An automatic dump that fails (missing directory) says so in one line, once,
# however many dumps fail.
#
# Usage: rel_conf_errors.sh LIBMPROF REL_CONF_PROBE
set -u
. "$(dirname "$0")/rel_lib.sh"
lib=$1 prog=$2
rel_init
default="prof=1 lg_prof_sample=19 prof_final=0 lg_prof_interval=-1 prof_prefix=mprof"

every_line_matches() { # every_line_matches REGEX FILE
  ! grep -vE "$1" "$2"
}

# conf @ expected stderr lines @ regex each line must match @ expected options line
while IFS='@' read -r conf nlines pattern want; do
  [ -n "$conf" ] || continue
  MPROF_CONF=$conf timed 60 env LD_PRELOAD="$lib" "$prog" >"$work/out" 2>"$work/err"
  rc=$?
  label="MPROF_CONF='$conf'"
  check_eq "$label: exit status" "$rc" 0
  check_eq "$label: stderr lines" "$(wc -l <"$work/err")" "$nlines"
  check "$label: message form" every_line_matches "$pattern" "$work/err"
  check_eq "$label: options" "$(head -1 "$work/out")" "$want"
  check_eq "$label: ran to the end" "$(tail -1 "$work/out")" alive
done <<TABLE
nope:1@1@^mprof: invalid conf pair "nope:1": unknown option\$@$default
lg_prof_sample:63@1@^mprof: invalid conf pair "lg_prof_sample:63": out of range@$default
lg_prof_sample:-1@1@^mprof: invalid conf pair "lg_prof_sample:-1": @$default
lg_prof_sample:12x@1@^mprof: invalid conf pair "lg_prof_sample:12x": not an integer\$@$default
lg_prof_sample:99999999999999999999999@1@^mprof: invalid conf pair .*: (out of range|not an integer)@$default
lg_prof_interval:63@1@^mprof: invalid conf pair "lg_prof_interval:63": out of range@$default
prof_final:yes@1@^mprof: invalid conf pair "prof_final:yes": not a boolean@$default
prof_final:TRUE@1@^mprof: invalid conf pair "prof_final:TRUE": not a boolean@$default
lg_prof_sample:12,nope:1,prof_final:true@1@^mprof: invalid conf pair "nope:1"@prof=1 lg_prof_sample=12 prof_final=1 lg_prof_interval=-1 prof_prefix=mprof
lg_prof_sample:12,nope:1,bad:2,prof_final:maybe@3@^mprof: invalid conf pair@prof=1 lg_prof_sample=12 prof_final=0 lg_prof_interval=-1 prof_prefix=mprof
lg_prof_sample:12,,prof_final:true@1@^mprof: malformed conf string at ",prof_final:true": empty key\$@prof=1 lg_prof_sample=12 prof_final=0 lg_prof_interval=-1 prof_prefix=mprof
lg_prof_sample@1@^mprof: malformed conf string at "lg_prof_sample": missing ':' after key\$@$default
lg_prof_sample:12,@1@^mprof: malformed conf string at .*trailing comma\$@prof=1 lg_prof_sample=12 prof_final=0 lg_prof_interval=-1 prof_prefix=mprof
lg-prof-sample:3@1@^mprof: malformed conf string at .*invalid character in key\$@$default
:3@1@^mprof: malformed conf string at .*empty key\$@$default
TABLE

# A bad byte and a very long value stay on one line, quoted and cut.
MPROF_CONF=$(printf 'nope:\001%0600d' 1) timed 60 env LD_PRELOAD="$lib" "$prog" >"$work/out" 2>"$work/err"
check_eq "control byte and 600-byte value: one line" "$(wc -l <"$work/err")" 1
check "control byte and 600-byte value: no control character, cut" \
  bash -c "! LC_ALL=C grep -q '[[:cntrl:]]' <(tr -d '\\n' <'$work/err') && [ \$(wc -c <'$work/err') -lt 512 ]"
check_eq "control byte and 600-byte value: ran to the end" "$(tail -1 "$work/out")" alive

# Automatic dumps into a missing directory: interval dumps fail many times, one line in all.
MPROF_CONF="lg_prof_sample:10,lg_prof_interval:12,prof_final:true,prof_prefix:$work/missing/p" \
  timed 60 env LD_PRELOAD="$lib" "$prog" >"$work/out" 2>"$work/err"
cat "$work/err"
check_eq "failing automatic dumps: ran to the end" "$(tail -1 "$work/out")" alive
check_eq "failing automatic dumps: one line in all" "$(wc -l <"$work/err")" 1
check "failing automatic dumps: the line names the path and the error" \
  grep -q "^mprof: automatic profile dump to \"$work/missing/p\..*\" failed: No such file or directory" "$work/err"
rel_finish

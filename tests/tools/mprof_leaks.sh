#!/usr/bin/env bash
# Leak checks people can live with: memory the C runtime keeps by design (stdio buffers) is
# suppressed by built-in rules, LeakSanitizer-style suppression files (leak:PATTERN, '*', '^',
# '$', '#' comments) match a function, file or library anywhere in the stack, a real leak still
# fails (exit 23), and -r 1 reports are titled exact.
# Usage: mprof_leaks.sh MPROF TOOL_PROG
. "$(dirname "$0")/tools_lib.sh"
prog=$2

# A C program that only printf()s: its stdout buffer is not a leak.
"$mprof" run --leaks -r 1 -o "$work/pf" -- "$prog" exit 0 >"$work/pf.out" 2>"$work/pf.err" && rc=0 || rc=$?
[ $rc -eq 0 ] && ok "printf only: --leaks -r 1 passes" || bad "printf only: exit $rc: $(cat "$work/pf.err")"
grep -q 'leak:_IO_file_doallocate  (built-in)' "$work/pf.err" && ok "the stdio buffer shown as suppressed (built-in)" ||
  bad "no built-in suppression shown: $(cat "$work/pf.err")"
grep -q '^still in use at exit: .*(exact: every allocation sampled)' "$work/pf.err" && ok "-r 1: titled exact" ||
  bad "-r 1 title: $(grep 'in use' "$work/pf.err")"
"$mprof" run -o "$work/est" -- "$prog" leak 2>"$work/est.err" >/dev/null
grep -q '^in use: .*(estimated from samples)' "$work/est.err" &&
  ok "default rate: titled estimated" || bad "default rate title"

# A real leak still fails, with or without an unrelated suppression file.
cat >"$work/supp" <<'S'
# python keeps its interpreter state until exit
leak:python3*

race:ignored_by_mprof   # other tools' types are skipped
S
"$mprof" run --leaks -r 1 -o "$work/lk" -- "$prog" leak 2>"$work/lk.err" && rc=0 || rc=$?
[ $rc -eq 23 ] && grep -q ' leak_site ' "$work/lk.err" && ok "a real leak fails: exit 23, leak_site" ||
  bad "leak: exit $rc: $(cat "$work/lk.err")"
"$mprof" run --suppressions "$work/supp" -r 1 -o "$work/lk2" -- "$prog" leak 2>/dev/null && rc=0 || rc=$?
[ $rc -eq 23 ] && ok "a real leak fails with an unrelated suppression file (exit 23)" || bad "leak + file: exit $rc"

# Function, anchors, wildcard, file, library.
for pat in 'leak_site' '^leak_site$' 'leak_s*e' 'tool_prog.c' "$(basename "$prog")"; do
  printf 'leak:%s\n' "$pat" >"$work/s1"
  "$mprof" run --suppressions "$work/s1" -r 1 -o "$work/s1p" -- "$prog" leak 2>"$work/s1.err" && rc=0 || rc=$?
  [ $rc -eq 0 ] && grep -qF "leak:$pat" "$work/s1.err" && ok "leak:$pat suppresses leak_site (and is listed)" ||
    bad "leak:$pat: exit $rc: $(cat "$work/s1.err")"
done
for pat in '^leak_sit$' 'no_such_function'; do
  printf 'leak:%s\n' "$pat" >"$work/s2"
  "$mprof" run --suppressions "$work/s2" -r 1 -o "$work/s2p" -- "$prog" leak 2>/dev/null && rc=0 || rc=$?
  [ $rc -eq 23 ] && ok "leak:$pat does not match: exit 23" || bad "leak:$pat: exit $rc"
done
printf 'leak\n' >"$work/bad"
"$mprof" run --suppressions "$work/bad" -- "$prog" exit 0 2>"$work/bad.err" && rc=0 || rc=$?
[ $rc -eq 2 ] && grep -q 'not TYPE:PATTERN' "$work/bad.err" && ok "a malformed line is refused (exit 2)" ||
  bad "malformed: exit $rc $(cat "$work/bad.err")"

# python3 -c pass: fails without suppressions, passes with the file.
if [ -x /usr/bin/python3 ]; then
  "$mprof" run --leaks -r 1 -o "$work/py" -- python3 -c pass 2>/dev/null && rc=0 || rc=$?
  [ $rc -eq 23 ] && ok "python3 -c pass: interpreter state reported without suppressions" || bad "python3: exit $rc"
  "$mprof" run --suppressions "$work/supp" -r 1 -o "$work/py2" -- python3 -c pass 2>"$work/py.err" && rc=0 || rc=$?
  [ $rc -eq 0 ] && ok "python3 -c pass passes with the suppression file" || bad "python3 + file: exit $rc: $(cat "$work/py.err")"
else
  skip_or_fail "python3 not installed"
fi
finish

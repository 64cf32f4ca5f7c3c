#!/usr/bin/env bash
# Process trees under `mprof run`: every process's profile is named after its own program
# (<prefix>.<program>.<pid>...), the report is the top process's and lists every other process
# largest first (--all reports each), `top`/`diff`/`flame` merge several files, and the exit status
# is always the program's: a process that writes no profile (dash's `sh -c true` leaves by
# _exit) is a warning, never another status.
# Usage: mprof_tree.sh MPROF HELLO_HEAP
. "$(dirname "$0")/tools_lib.sh"
hello=$2
command -v make >/dev/null && command -v gcc >/dev/null || skip_or_fail "make or gcc not installed"

# No profile at all: status kept, one warning.
"$mprof" run -o "$work/t" -- sh -c true 2>"$work/t.err" && rc=0 || rc=$?
[ $rc -eq 0 ] && ok "sh -c true: exit 0" || bad "sh -c true: exit $rc: $(cat "$work/t.err")"
grep -q '^mprof: warning: .*wrote no profile' "$work/t.err" && ok "sh -c true: a warning" ||
  bad "sh -c true: $(cat "$work/t.err")"
"$mprof" run -o "$work/t3" -- sh -c 'exit 3' 2>/dev/null && rc=0 || rc=$?
[ $rc -eq 3 ] && ok "sh -c 'exit 3': exit 3" || bad "sh -c 'exit 3': exit $rc"

# The shell leaves by _exit, its child wrote a profile: that one is reported, with a warning.
"$mprof" run -o "$work/c" -- sh -c "$hello >/dev/null; true" 2>"$work/c.err" && rc=0 || rc=$?
[ $rc -eq 0 ] && ok "sh -c 'hello_heap; true': exit 0" || bad "sh -c 'hello_heap; true': exit $rc"
grep -q ' make_cache ' "$work/c.err" && grep -q 'report is of the largest other process' "$work/c.err" &&
  ok "the child's report, said to be the child's" || bad "child report: $(cat "$work/c.err")"

# make with children: cc1, as, ld, ... each named after itself.
mkdir "$work/m"
printf 'int main(void) { return 0; }\n' >"$work/m/a.c"
printf 'all: a b\na:\n\tgcc -O1 -o a a.c\nb:\n\t%s >/dev/null\n' "$hello" >"$work/m/Makefile"
(cd "$work/m" && "$mprof" run --exact -o "$work/mk" -- make -s -j2 >/dev/null 2>"$work/mk.err") && rc=0 || rc=$?
[ $rc -eq 0 ] && ok "make -j2: exit 0" || bad "make -j2: exit $rc: $(cat "$work/mk.err")"
ls "$work"/mk.make.*.f.pb.gz >/dev/null 2>&1 && ok "make's own profile: mk.make.PID..." || bad "no mk.make.*: $(ls "$work")"
ls "$work"/mk.cc1.*.f.pb.gz >/dev/null 2>&1 && ok "cc1's profile: mk.cc1.PID..." || bad "no mk.cc1.*: $(ls "$work")"
ls "$work"/mk.hello_heap.*.f.pb.gz >/dev/null 2>&1 && ok "hello_heap's profile named after it" || bad "no mk.hello_heap.*"
grep -q '^process: make (pid ' "$work/mk.err" && ok "report of the top process, make" || bad "$(head -5 "$work/mk.err")"
list=$(sed -n '/^other processes of the run/,/^(--all/p' "$work/mk.err")
for p in cc1 hello_heap; do
  grep -q "^  $p " <<<"$list" && ok "$p listed among the other processes" || bad "$p not listed: $list"
done
# Largest first: (in use, allocated) never grows down the list.
awk 'NR > 2 && $4 == "B" { if (NR > 3 && ($3 > u || ($3 == u && $5 > a))) bad = 1; u = $3; a = $5 }
     END { exit bad }' <<<"$list" && ok "listed largest first" || bad "order: $list"
n_files=$(ls "$work"/mk.*.f.pb.gz | wc -l)
n_listed=$(grep -c '^  [^ ]' <<<"$list" || true)
[ "$n_listed" -eq "$n_files" ] && ok "every process listed ($((n_files - 1)) others + header)" ||
  bad "$n_files profiles, $n_listed rows: $list"
(cd "$work/m" && rm -f a && "$mprof" run --all -o "$work/mka" -- make -s a >/dev/null 2>"$work/mka.err")
grep -q '^process: cc1 (pid ' "$work/mka.err" && ok "--all: cc1 reported too" || bad "--all: $(cat "$work/mka.err" | head -20)"

# Several files merged: the total is the sum of the totals.
files=("$work"/mk.*.f.pb.gz)
sum=0
for f in "${files[@]}"; do
  t=$("$mprof" top "$f" --alloc --exact 2>/dev/null | sed -n '1s/^[^:]*: \([0-9]*\) B in .*/\1/p' || true)
  sum=$((sum + ${t:-0}))
done
merged=$("$mprof" top "${files[@]}" --alloc --exact | sed -n '1s/^[^:]*: \([0-9]*\) B in .*/\1/p')
[ "$merged" = "$sum" ] && ok "top of ${#files[@]} files: total $merged B = sum of each" ||
  bad "merged $merged vs sum $sum"
"$mprof" top "${files[@]}" | grep -q 'profiles merged' && ok "top says the files were merged" || bad "no merge note"
"$mprof" flame "${files[@]}" -o "$work/f.html" --alloc && grep -q "and $((${#files[@]} - 1)) more" "$work/f.html" &&
  ok "flame of several files" || bad "flame of several files"
"$mprof" diff --base "${files[0]}" "${files[@]:1}" --alloc --exact >"$work/d.out" &&
  grep -q '^allocated: ' "$work/d.out" && ok "diff --base OLD NEW... --alloc" || bad "diff: $(cat "$work/d.out")"
finish

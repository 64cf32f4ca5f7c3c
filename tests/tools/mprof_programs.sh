#!/usr/bin/env bash
# `mprof run` on real programs (Debian's sqlite3 and python3): the program's output and exit
# status are kept, the totals are the ones `go tool pprof -top` finds in the same file, and the
# top sites are where the program allocated: named functions, not allocation wrappers (sqlite's
# static malloc wrapper in a stripped library used to make `[libsqlite3.so.0]` 100 %).
# Usage: mprof_programs.sh MPROF sqlite3|python3 SOURCE_DIR
. "$(dirname "$0")/tools_lib.sh"
which=$2 src=$3
case $which in
sqlite3)
  exe=$(command -v sqlite3 || true)
  [ -n "$exe" ] || skip_or_fail "sqlite3 not installed"
  sed 's/@ROWS@/20000/g' "$src/bench/workloads/sqlite.sql" >"$work/w.sql"
  cmd=("$exe" :memory:)
  input=$work/w.sql
  ;;
python3)
  exe=/usr/bin/python3
  [ -x "$exe" ] || skip_or_fail "python3 not installed"
  cat >"$work/w.py" <<'PY'
import json, sys
rows = [{"k": i, "v": str(i) * 10} for i in range(100000)]
keep = [json.dumps(r) for r in rows[:20000]]
print(len(json.dumps(rows)), len(keep))
sys.exit(3)
PY
  cmd=("$exe" "$work/w.py")
  input=/dev/null
  ;;
esac

"${cmd[@]}" <"$input" >"$work/plain.out" 2>&1 && prc=0 || prc=$?
"$mprof" run -o "$work/p" -- "${cmd[@]}" <"$input" >"$work/run.out" 2>"$work/run.err" && rc=0 || rc=$?
[ "$rc" -eq "$prc" ] && ok "$which: exit status $rc kept" || bad "$which: status $rc, without mprof $prc"
cmp -s "$work/plain.out" "$work/run.out" && ok "$which: output unchanged" || bad "$which: output differs"
profile=$(sed -n 's/^profile: //p' "$work/run.err")
[ -f "$profile" ] && ok "$which: profile $(basename "$profile")" || { bad "$which: no profile"; finish; }
grep -q '^allocated over the run: ' "$work/run.err" && grep -q '^reconciliation (mimalloc' "$work/run.err" &&
  ok "$which: report with tables and reconciliation" || bad "$which: report: $(cat "$work/run.err")"
# The same totals as go tool pprof; the sites are where the program allocated: a named function
# (an unnamed frame folds into its named caller), never an allocation wrapper or a bare object.
for idx in alloc_space inuse_space; do
  flag=--alloc; [ $idx = inuse_space ] && flag=--inuse
  want=$(pprof_total "$profile" $idx)
  [ $idx = inuse_space ] && want=${want:-0} # pprof prints no total line for an empty view
  got=$("$mprof" top "$profile" $flag --exact | sed -n '1s/^[^:]*: \([0-9]*\) B in .*/\1/p')
  [ "$want" = "$got" ] && ok "$which: $idx total equals go tool pprof's ($got B)" ||
    bad "$which: $idx total: pprof '$want' vs mprof '$got'"
done
"$mprof" top "$profile" --alloc -n 5 >"$work/top.out"
sites=$(sed -n '3,/^$/p' "$work/top.out" | awk 'NF >= 5 { print $5 }')
[ -n "$sites" ] && ! echo "$sites" | grep -q '^\[' &&
  ok "$which: every top allocating site is a named function: $(echo $sites)" ||
  bad "$which: unnamed or missing sites: $(cat "$work/top.out")"
echo "$sites" | grep -Eqx 'malloc|realloc|calloc|sqlite3Malloc.*|sqlite3Realloc|PyMem_.*|PyObject_Malloc' &&
  bad "$which: an allocation wrapper is a site: $(echo $sites)" || ok "$which: no allocation wrapper is a site"
finish

#!/usr/bin/env bash
# `mprof run` on real programs (Debian's sqlite3 and python3): the program's output and exit
# status are kept, and the top sites by bytes allocated (and in use, where anything is left at
# exit) are the ones `go tool pprof -top` finds in the same file, with the same bytes.
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
want=$(pprof_top "$profile" alloc_space 5)
got=$(mprof_top "$profile" --alloc 5)
[ -n "$want" ] && [ "$want" = "$got" ] && ok "$which: top allocating sites equal go tool pprof's" ||
  bad "$which: alloc_space: pprof '$want' vs mprof '$got'"
want=$(pprof_top "$profile" inuse_space 5)
got=$(mprof_top "$profile" --inuse 5)
[ "$want" = "$got" ] && ok "$which: sites in use at exit equal go tool pprof's (${want:-none})" ||
  bad "$which: inuse_space: pprof '$want' vs mprof '$got'"
finish

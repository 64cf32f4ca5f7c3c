#!/usr/bin/env bash
# Hostile profiles (tests/tools/hostile_profiles.py): a 200 000-frame stack in a 300-byte file,
# 300 000 sibling functions, a 1 KB file that names 10^9 frames, and 3 000 000 tiny samples. `mprof top` and `mprof flame`
# finish (no SIGSEGV from recursion, no quadratic lookups: the timeout is a guard, generous by two
# orders of magnitude, not a measurement) or stop with one clear line (status 2).
# Usage: mprof_hostile.sh MPROF SOURCE_DIR
. "$(dirname "$0")/tools_lib.sh"
src=$2
python3 "$src/tests/tools/hostile_profiles.py" "$work" || { bad "generator failed"; finish; }
guard() { timeout 300 "$@"; }

guard "$mprof" flame "$work/deep.pb.gz" -o "$work/deep.html" 2>"$work/e" && rc=0 || rc=$?
[ $rc -eq 0 ] && ok "flame: 200 000-frame stack drawn" || bad "flame deep: status $rc $(cat "$work/e")"
grep -q 'deeper frames folded' "$work/deep.html" && ok "flame: frames past the depth limit folded into one box" ||
  bad "flame deep: no folded box"
guard "$mprof" top "$work/deep.pb.gz" >"$work/o" 2>&1 && sed -n 3p "$work/o" | grep -q ' f ' &&
  ok "top: 200 000-frame stack" || bad "top deep: $(cat "$work/o")"
guard "$mprof" symbolize "$work/deep.pb.gz" "$work/deep2.pb.gz" && ok "symbolize: 200 000-frame stack" ||
  bad "symbolize deep"

guard "$mprof" flame "$work/wide.pb.gz" -o "$work/wide.html" 2>"$work/e" && rc=0 || rc=$?
[ $rc -eq 0 ] && grep -q '"fn299999"' "$work/wide.html" && ok "flame: 300 000 siblings drawn" ||
  bad "flame wide: status $rc $(cat "$work/e")"
guard "$mprof" top "$work/wide.pb.gz" -n 1 >"$work/o" 2>&1 && grep -q 'in use: ' "$work/o" &&
  ok "top: 300 000 sites" || bad "top wide: $(cat "$work/o")"

for c in top flame; do
  guard "$mprof" $c "$work/frames.pb.gz" -o "$work/f.html" >/dev/null 2>"$work/e" && rc=0 || rc=$?
  [ $rc -eq 2 ] && grep -q 'frames over all samples (limit of this command)' "$work/e" &&
    [ "$(wc -l <"$work/e")" -eq 1 ] && ok "$c: 10^9 frames refused in one line" || bad "$c frames: status $rc $(cat "$work/e")"
done
guard "$mprof" top "$work/many.pb.gz" >/dev/null 2>"$work/e" && rc=0 || rc=$?
[ $rc -eq 2 ] && grep -q 'more than 2097152 entries in one list' "$work/e" && [ "$(wc -l <"$work/e")" -eq 1 ] &&
  ok "top: 3 000 000 samples in $(stat -c %s "$work/many.pb.gz") bytes refused in one line" ||
  bad "many: status $rc $(cat "$work/e")"
finish

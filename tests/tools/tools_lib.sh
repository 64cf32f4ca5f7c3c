# Sourced by the mprof command's test scripts: `mprof` (the command) from the first argument, a
# scratch directory `work` removed on exit, and ok/bad/finish to count checks and print the
# closing line. skip_or_fail MSG: a missing tool fails when CI=true, else skips (status 77).
set -euo pipefail
mprof=$1
work=$(mktemp -d /tmp/mprof-tools-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
fails=0 checks=0
ok() { checks=$((checks + 1)); echo "ok   $1"; }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL $1"; }
finish() {
  echo "$((checks - fails)) passed, $fails failed"
  [ "$fails" -eq 0 ]
}
skip_or_fail() {
  if [ "${CI:-}" = true ]; then
    echo "FAIL $1 (CI=true: required; run tests/tools/install-deps.sh)"
    exit 1
  fi
  echo "SKIP $1 (run tests/tools/install-deps.sh)"
  exit 77
}
# pprof_top FILE SAMPLE_INDEX [N]: "bytes function" rows of go tool pprof -top, flat > 0.
pprof_top() {
  go tool pprof -top -unit=B -nodefraction=0 -sample_index="$2" "$1" 2>/dev/null |
    sed -n '/flat%/,$p' | tail -n +2 | awk '$1 != "0" { sub(/B$/, "", $1); print $1, $6 }' |
    head -"${3:-5}"
}
# mprof_top FILE --inuse|--alloc [N]: the same rows from mprof top --exact.
mprof_top() {
  "$mprof" top "$1" "$2" --exact -n "${3:-5}" | sed -n '3,/^$/p' | awk 'NF >= 5 { print $1, $5 }'
}
# pprof_total FILE SAMPLE_INDEX: the total of go tool pprof -top, in bytes.
pprof_total() {
  go tool pprof -top -unit=B -sample_index="$2" "$1" 2>/dev/null |
    sed -n 's/.*of \([0-9]*\)B total.*/\1/p;s/.* 0 of 0 total.*/0/p' | head -1
}

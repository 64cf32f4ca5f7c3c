# Helpers shared by the reliability drivers (sourced, not run).
#
#   rel_init                 make $work (removed on exit), reset the counters
#   check LABEL COND...      run COND; count and print "ok"/"FAIL" with LABEL
#   check_eq LABEL GOT WANT  the same for an equality of two strings
#   pprof_values FILE INDEX  "FUNCTION VALUE" per function: the flat value of sample type INDEX
#   no_profiler_lines LABEL FILE  no line of FILE comes from the profiler ("mprof: ...")
#   need_cmd CMD PKG         a missing command: skip (exit 77) locally, fail in CI (CI=true)
#   rel_finish               print "N passed, M failed" and exit 0 only if nothing failed
#   timed SECONDS CMD...     run CMD with a deadlock timeout (exit 124 when it fires)
set -u

rel_init() {
  work=$(mktemp -d /tmp/mprof-rel.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  passed=0
  failed=0
}

check() {
  local label=$1
  shift
  if "$@"; then
    echo "ok   $label"
    passed=$((passed + 1))
  else
    echo "FAIL $label"
    failed=$((failed + 1))
  fi
}

check_eq() {
  if [ "$2" = "$3" ]; then
    echo "ok   $1: $2"
    passed=$((passed + 1))
  else
    echo "FAIL $1: got '$2', want '$3'"
    failed=$((failed + 1))
  fi
}

# Flat values per function, exact integers (bytes for *_space, counts for *_objects).
pprof_values() {
  go tool pprof -top -nodecount=1000000 -nodefraction=0 -edgefraction=0 -unit=B \
    -sample_index="$2" "$1" 2>/dev/null |
    awk 'found && NF >= 6 { v = $1; sub(/B$/, "", v); print $NF, v } /^ *flat +flat%/ { found = 1 }'
}

# value TABLE FUNCTION: the value of FUNCTION in a pprof_values table, 0 when absent.
value_of() {
  awk -v f="$2" '$1 == f { print $2; found = 1 } END { if (!found) print 0 }' "$1"
}

no_profiler_lines() {
  if grep -q 'mprof:' "$2"; then
    grep 'mprof:' "$2" | sort | uniq -c | head -5
    check "$1" false
  else
    check "$1" true
  fi
}

need_cmd() {
  if ! command -v "$1" >/dev/null 2>&1; then
    if [ "${CI:-}" = "true" ]; then
      echo "FAIL $1 is not installed (package $2; run tests/reliability/install-deps.sh)"
      exit 1
    fi
    echo "SKIP $1 is not installed (package $2; run tests/reliability/install-deps.sh)"
    exit 77
  fi
}

timed() {
  local secs=$1
  shift
  timeout -k 10 "$secs" "$@"
}

rel_finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit $?
}

#!/usr/bin/env bash
# Runs a libFuzzer harness for a bounded time: first over its checked-in seed corpus, then
# mutating. New inputs go to a scratch directory (the checked-in corpus is never modified). A
# crash prints the input that caused it, in base64, for `base64 -d > crash; ./fuzz_x crash`.
#
# Usage: rel_fuzz.sh FUZZER CORPUS_DIR SECONDS
set -u
bin=$1 corpus=$2 secs=$3
work=$(mktemp -d /tmp/mprof-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/new" "$work/tmp"
TMPDIR="$work/tmp" timeout -k 10 $((secs + 120)) "$bin" -max_total_time="$secs" -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/" "$work/new" "$corpus" \
  >"$work/log" 2>&1
rc=$?
grep -E '^(#[0-9]+.*(INITED|DONE)|Done|stat::(number_of_executed_units|new_units_added))' "$work/log"
for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
  [ -e "$f" ] || continue
  echo "FAIL $(basename "$f"); input (base64):"
  base64 "$f"
done
if [ "$rc" -ne 0 ]; then
  tail -60 "$work/log"
  echo "0 passed, 1 failed"
  exit 1
fi
echo "1 passed, 0 failed"

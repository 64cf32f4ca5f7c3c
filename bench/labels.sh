#!/usr/bin/env bash
# Cost of the profiles of issue 11, as ratios (docs/BENCHMARKS.md, "Ages, peak, thread labels"):
#   1. dump time with prof_age:true / prof_age:false, 100 000 stacks each with one live sampled
#      block (bench_stacks --stacks 100000, its kind=live_dump line; every allocation sampled);
#   2. CPU time of bench_alloc with prof_peak:true, and with prof_thread_labels:true, over the
#      default options, at the default rate (lg_prof_sample:19) and at lg_prof_sample:12.
# Each configuration runs ROUNDS times (default 5), interleaved; the median is kept.
# Usage: bench/labels.sh [BUILD_DIR] (default build-bench; built with the benchmarks if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-bench}
rounds=${ROUNDS:-5}
if [ ! -x "$build/bench/bench_stacks" ] || [ ! -e "$build/libmprof.so" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPROF_BUILD_BENCH=ON >/dev/null
  cmake --build "$build" -j2 --target mprof bench_stacks bench_alloc >/dev/null
fi
lib=$PWD/$build/libmprof.so
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

field() { # field NAME: value of NAME=... on stdin's first line
  sed -n "s/.* $1=\([^ ]*\).*/\1/p" | head -1
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "# dump with 100000 stacks, one live block each (ns, median of $rounds runs of 3 dumps)"
for age in true false; do : >"$work/dump.$age"; done
for _ in $(seq 1 "$rounds"); do
  for age in true false; do
    MPROF_CONF="lg_prof_sample:0,prof_age:$age" LD_PRELOAD=$lib \
      "$build/bench/bench_stacks" --out "$work/out" --stacks 100000 --dumps 3 |
      grep 'kind=live_dump' | field dump_ns_median >>"$work/dump.$age"
  done
done
on=$(median <"$work/dump.true") off=$(median <"$work/dump.false")
echo "prof_age:true  $on"
echo "prof_age:false $off"
awk -v a="$on" -v b="$off" 'BEGIN { printf "ratio age/no-age: %.2f\n", a / b }'

echo "# bench_alloc --workload small --threads 2 --ops 2000000 (CPU s, median of $rounds)"
for lg in 19 12; do
  confs=("lg_prof_sample:$lg" "lg_prof_sample:$lg,prof_peak:true"
    "lg_prof_sample:$lg,prof_thread_labels:true")
  for i in 0 1 2; do : >"$work/alloc.$lg.$i"; done
  for _ in $(seq 1 "$rounds"); do
    for i in 0 1 2; do
      MPROF_CONF="${confs[$i]}" LD_PRELOAD=$lib "$build/bench/bench_alloc" --workload small \
        --threads 2 --ops 2000000 | field cpu_seconds >>"$work/alloc.$lg.$i"
    done
  done
  base=$(median <"$work/alloc.$lg.0")
  for i in 0 1 2; do
    m=$(median <"$work/alloc.$lg.$i")
    awk -v c="${confs[$i]}" -v m="$m" -v b="$base" \
      'BEGIN { printf "%-45s %.3f s  ratio %.3f\n", c, m, m / b }'
  done
done

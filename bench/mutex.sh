#!/usr/bin/env bash
# The contention profile's costs and accuracy (docs/BENCHMARKS.md, "Contention profile").
# Usage: bench/mutex.sh BUILD_DIR   (needs valgrind and go; writes only to a temporary directory)
#
#  1. callgrind: instructions per uncontended pthread_mutex_lock/unlock pair in bench_mutex_loop,
#     glibc alone, libmprof.so with the profile off, and on (prof_mutex_app, fraction 1);
#  2. ns per pair, the same three, in one process under libmprof.so (glibc's function called
#     directly, then the interposed one with prof_mutex_app off and on), interleaved rounds;
#  3. 4 threads contending: the profile's total delay against the wait the threads measured,
#     at fraction 1 (2 runs) and 10 (5 runs).
set -euo pipefail
build=$(cd "$1" && pwd)
lib=$build/libmprof.so
prog=$build/bench/bench_mutex
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
on="prof_mutex_fraction:1,prof_mutex_app:true"

run_cfg() { # run_cfg CONFIG CMD...
  case $1 in
  glibc) shift; "$@" ;;
  off) shift; LD_PRELOAD=$lib "$@" ;;
  on) shift; MPROF_CONF=$on LD_PRELOAD=$lib "$@" ;;
  esac
}

echo "== instructions per lock/unlock pair (callgrind, 100000 + 10001 warm-up pairs)"
for c in glibc off on; do
  run_cfg $c valgrind --tool=callgrind --toggle-collect=bench_mutex_loop \
    --callgrind-out-file="$tmp/cg.$c" "$prog" pair 100000 >/dev/null 2>&1
  ir=$(callgrind_annotate "$tmp/cg.$c" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  awk -v c=$c -v ir="$ir" 'BEGIN { printf "%-6s %.1f Ir/pair\n", c, ir / 110001 }'
done

echo "== ns per pair: 41 interleaved rounds of 2M pairs in one process (min, median)"
LD_PRELOAD=$lib "$prog" cost 41 2000000 |
  awk '/test=cost/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
         c = v["config"]; mn[c] = v["min_ns"]; md[c] = v["median_ns"]; order[++n] = c }
       END { for (i = 1; i <= n; i++) { c = order[i]
               printf "%-6s min %6.2f ns/pair (%+.2f vs glibc)   median %6.2f ns/pair (%+.2f)\n",
                      c, mn[c], mn[c] - mn["glibc"], md[c], md[c] - md["glibc"] } }'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== 4 threads contending: recorded delay / measured wait"
for f in 1 1 10 10 10 10 10; do
  out=$(MPROF_CONF="prof_mutex_fraction:$f,prof_mutex_app:true" LD_PRELOAD=$lib "$prog" contend 5000 "$tmp/c.pb.gz")
  waited=$(sed -n 's/.*waited_ns=\([0-9]*\).*/\1/p' <<<"$out")
  go tool pprof -raw "$tmp/c.pb.gz" 2>/dev/null |
    awk -v f=$f -v w="$waited" '/^ +[0-9]+ +[0-9]+:/ { c += $1; d += $2 }
      END { printf "fraction %-3d contentions %7.0f  delay %6.3f s  measured %6.3f s  ratio %.3f\n", f, c, d / 1e9, w / 1e9, d / w }'
done

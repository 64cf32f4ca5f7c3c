#!/usr/bin/env bash
# From the first allocation: a thread's first allocation, and allocations after others made
# before the profiler's constructor (libstdc++'s emergency pool), are sampled with the
# probability of their size — every one at lg_prof_sample:0. Arguments: LIB it_first it_first_cxx.
. "$(dirname "$0")/it_lib.sh"
cxx=$3

# value FILE SAMPLE_INDEX FUNCTION -> flat value (0 if absent)
value() {
  go tool pprof -top -nodecount=1000 -nodefraction=0 -edgefraction=0 -unit=B -sample_index="$2" \
    "$1" 2>/dev/null |
    awk -v f="$3" '$NF == f { v = $1; sub(/B$/, "", v); print v; found = 1 } END { if (!found) print 0 }'
}
expect() { # expect LABEL GOT WANT
  [ "$2" = "$3" ] && ok "$1 = $3" || bad "$1: got $2, want $3"
}
near() { # near LABEL GOT WANT: within a millionth (a sample of size s stands for 1/(1-exp(-s/mean)))
  awk -v g="$2" -v w="$3" 'BEGIN { d = g - w; if (d < 0) d = -d; exit !(d <= w * 1e-6) }' &&
    ok "$1 = $2 (want $3)" || bad "$1: got $2, want $3"
}

# At the default rate (512 KiB mean) a 64 MiB and an 8 MiB block are sampled with p > 1 - 1e-6.
for run in 1 2 3; do
  LD_PRELOAD=$lib "$prog" threads "$work/t$run.pb.gz"
  near "run $run: main thread's first malloc" "$(value "$work/t$run.pb.gz" inuse_space first_main)" 67108864
  near "run $run: 8 threads' first mallocs" "$(value "$work/t$run.pb.gz" inuse_space first_thread)" 67108864
done

MPROF_CONF=lg_prof_sample:0 LD_PRELOAD=$lib "$cxx" "$work/c.pb.gz"
expect "C++: new char[1000] x 1000 at lg_prof_sample:0" "$(value "$work/c.pb.gz" alloc_objects site_new)" 1000

MPROF_CONF=lg_prof_sample:0 LD_PRELOAD=$lib "$prog" many "$work/m.pb.gz"
expect "C: malloc(1000) x 1000 at lg_prof_sample:0" "$(value "$work/m.pb.gz" alloc_objects site_many)" 1000

stdcxx=$(ldd "$cxx" | awk '$1 ~ /^libstdc\+\+/ { print $3 }')
if [ -n "$stdcxx" ]; then
  MPROF_CONF=lg_prof_sample:0 LD_PRELOAD="$stdcxx $lib" "$prog" many "$work/s.pb.gz"
  expect "C with libstdc++ preloaded: malloc(1000) x 1000" "$(value "$work/s.pb.gz" alloc_objects site_many)" 1000
else
  bad "libstdc++ not found in ldd $cxx"
fi
finish

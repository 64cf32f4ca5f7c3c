#!/usr/bin/env bash
# A C++ program under LD_PRELOAD is sampled (its first allocations precede mprof's start-up) and
# `go tool pprof` names its functions — with operator new dropped from the leaf end.
. "$(dirname "$0")/it_lib.sh"

MPROF_CONF="lg_prof_sample:16,prof_final:true,prof_prefix:$work/cx" LD_PRELOAD=$lib "$prog" >/dev/null
final=$(ls "$work"/cx.*.f.pb.gz)
top=$(go tool pprof -top -nodefraction=0 -sample_index=inuse_space "$final" 2>/dev/null)
echo "$top" | sed -n '/flat%/,$p' | head -8
for f in cxx_make_strings cxx_make_vectors main; do
  echo "$top" | grep -q " $f\$" && ok "$f named" || bad "$f not named"
done
echo "$top" | grep -q 'operator new' && bad "operator new shown (drop_frames ignored)" ||
  ok "operator new dropped from the leaf end"
total=$(echo "$top" | sed -n 's/.*of \([0-9.]*\)MB total.*/\1/p')
# ~100000 * 232 B + 20000 * (24 + 1024) B = about 43.4 MiB (45.5 MB); sampled at 64 KiB.
awk -v t="${total:-0}" 'BEGIN { exit !(t > 35 && t < 56) }' && ok "in-use total ${total}MB near 45 MB" ||
  bad "in-use total '${total}' MB, want about 45"
finish

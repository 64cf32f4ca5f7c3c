#!/usr/bin/env bash
# prof_format:both: one prof.dump to an explicit path writes the pprof file at that path and
# jemalloc's heap_v2 text beside it (PATH.heap). `jeprof --text` (Debian's libjemalloc-dev) on
# the .heap file must show the program's functions with the same in-use and allocated totals as
# `go tool pprof -top` on the .pb.gz file, within the rounding of jeprof's output (0.1 MB).
# Usage: it_jeprof.sh LIB PROG [JEPROF]   (exit 77 when jeprof is not installed)
. "$(dirname "$0")/it_lib.sh"
jeprof=${3:-$(command -v jeprof || true)}
if [ -z "$jeprof" ]; then
  echo "jeprof not installed (libjemalloc-dev): skipped"
  exit 77
fi

MPROF_CONF=lg_prof_sample:14,prof_format:both LD_PRELOAD=$lib "$prog" "$work/p.pb.gz" >"$work/truth"
[ -s "$work/p.pb.gz" ] && ok "pprof file at the path given" || bad "no pprof file at the path given"
[ -s "$work/p.pb.gz.heap" ] && ok "jeprof file at PATH.heap" || bad "no PATH.heap file"
head -1 "$work/p.pb.gz.heap" | grep -q '^heap_v2/16384$' && ok "heap_v2/16384 header" ||
  bad "header: $(head -1 "$work/p.pb.gz.heap")"
grep -q '^MAPPED_LIBRARIES:$' "$work/p.pb.gz.heap" && ok "MAPPED_LIBRARIES trailer" || bad "no MAPPED_LIBRARIES"

pp() { # pp SAMPLE_INDEX FUNCTION -> flat MB from go tool pprof
  go tool pprof -top -nodecount=1000 -nodefraction=0 -edgefraction=0 -unit=MB -sample_index="$1" \
    "$work/p.pb.gz" 2>/dev/null | awk -v f="$2" '$NF == f { v = $1; sub(/MB$/, "", v); print v; found = 1 }
      END { if (!found) print 0 }'
}
jp() { # jp MODE FUNCTION -> flat MB from jeprof --text
  "$jeprof" --text "--$1" --nodefraction=0 --edgefraction=0 "$prog" "$work/p.pb.gz.heap" 2>/dev/null |
    awk -v f="$2" '$NF == f { print $1; found = 1 } END { if (!found) print 0 }'
}
while read -r name _; do
  for mode in inuse_space alloc_space; do
    want=$(pp "$mode" "$name")
    got=$(jp "$mode" "$name")
    if awk -v g="$got" -v w="$want" 'BEGIN { d = g - w; if (d < 0) d = -d; exit !(w > 0 && d <= 0.051 + 0.002 * w) }'; then
      ok "$name $mode: jeprof $got MB, pprof $want MB"
    elif [ "$mode" = inuse_space ] && awk -v w="$want" -v g="$got" 'BEGIN { exit !(w == 0 && g == 0) }'; then
      ok "$name $mode: 0 in both"
    else
      bad "$name $mode: jeprof $got MB, pprof $want MB"
    fi
  done
done <"$work/truth"
finish

#!/usr/bin/env bash
# Accuracy: the profiled figures of a program with known allocation sites must come out within a
# stated tolerance of the truth, as read by `go tool pprof`.
#
# At lg_prof_sample:14 (16 KiB mean) a 32 MiB site gets ~2048 samples: a relative standard error
# of ~2.2 %. The tolerance is 12 % (over 5 standard errors) for live figures and for allocated
# bytes; the object count of a site with few huge objects is exact in practice (p ~ 1).
set -euo pipefail
lib=$1 prog=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tol=${MPROF_ACCURACY_TOLERANCE:-0.12}

MPROF_CONF=lg_prof_sample:14 LD_PRELOAD=$lib "$prog" "$work/p.pb.gz" >"$work/truth"

fails=0 checks=0
value() { # value SAMPLE_INDEX FUNCTION -> flat value in bytes or objects (0 if absent)
  go tool pprof -top -nodecount=1000 -nodefraction=0 -edgefraction=0 -unit=B -sample_index="$1" "$work/p.pb.gz" 2>/dev/null |
    awk -v f="$2" '$NF == f { v = $1; sub(/B$/, "", v); print v; found = 1 } END { if (!found) print 0 }'
}
check() { # check LABEL GOT WANT
  checks=$((checks + 1))
  if awk -v g="$2" -v w="$3" -v t="$tol" 'BEGIN { d = g - w; if (d < 0) d = -d;
      exit !((w == 0 && g == 0) || (w > 0 && d / w <= t)) }'; then
    echo "ok   $1: got $2, want $3"
  else
    echo "FAIL $1: got $2, want $3 (tolerance $tol)"
    fails=$((fails + 1))
  fi
}

while read -r name alloc inuse objs; do
  check "$name alloc_space" "$(value alloc_space "$name")" "$alloc"
  check "$name inuse_space" "$(value inuse_space "$name")" "$inuse"
  check "$name inuse_objects" "$(value inuse_objects "$name")" "$objs"
done <"$work/truth"

# file:line comes from the program's debug info.
if go tool pprof -top -lines -sample_index=inuse_space "$work/p.pb.gz" 2>/dev/null |
    grep -q 'site_small_live .*it_sites.c:[0-9]'; then
  echo "ok   file:line shown for site_small_live"
else
  echo "FAIL no file:line for site_small_live"
  fails=$((fails + 1))
fi
checks=$((checks + 1))
echo "$((checks - fails)) passed, $fails failed"
[ "$fails" -eq 0 ]

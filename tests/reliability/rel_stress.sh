#!/usr/bin/env bash
# Runs rel_workload under libmprof.so with every allocation sampled and checks that its profiles
# (the final one written at exit, and a prof.dump taken just before) equal the program's own
# exact counts per call site, as read by go tool pprof: nothing lost, nothing negative, nothing
# attributed to another site. With --fork / --spawn it also checks the children's profiles.
#
# Usage: rel_stress.sh LIBMPROF WORKLOAD [workload options]
# REL_EXTRA_CONF, if set, is appended to MPROF_CONF (e.g. lg_prof_epoch:12).
set -u
. "$(dirname "$0")/rel_lib.sh"
lib=$1 prog=$2
shift 2
rel_init
need_cmd go golang-go

# env, not timeout, gets LD_PRELOAD: timeout would write a final profile of its own.
MPROF_CONF="lg_prof_sample:0,prof_final:true,prof_prefix:$work/final${REL_EXTRA_CONF:+,$REL_EXTRA_CONF}" \
  timed 300 env LD_PRELOAD="$lib" "$prog" "$@" "$work" >"$work/truth" 2>"$work/stderr"
rc=$?
cat "$work/stderr"
check_eq "workload exit status (124 = deadlock timeout)" "$rc" 0
no_profiler_lines "no message from the profiler on stderr" "$work/stderr"

pid=$(awk '$1 == "pid" { print $2 }' "$work/truth")
read -r samples dropped < <(awk '$1 == "stats" { print $2, $3 }' "$work/truth")
check_eq "stats.dropped_samples" "${dropped:-missing}" 0
read -r in_place moved < <(awk '$1 == "realloc" { print $2, $3 }' "$work/truth")
check "reallocs resized in place (counted as free + allocation): ${in_place:-0}" test "${in_place:-0}" -gt 0
check "reallocs moved (counted as free + allocation): ${moved:-0}" test "${moved:-0}" -gt 0
check "stats.samples is positive" test "${samples:-0}" -gt 0

final=$(ls "$work"/final.*."$pid".*.f.pb.gz 2>/dev/null) # final.PROGRAM.PID.SEQ.f
check_eq "exactly one final profile of the workload" "$(echo "$final" | grep -c .)" 1
check "no temporary dump files left" bash -c "! ls '$work' | grep -q '\\.tmp\\.'"

for prof in "$work/last.pb.gz" $final; do
  name=$(basename "$prof")
  for index in alloc_objects alloc_space inuse_objects inuse_space; do
    pprof_values "$prof" "$index" >"$work/$index"
  done
  while read -r site aobj aspace iobj ispace; do
    case $site in site_*) ;; *) continue ;; esac
    got="$(value_of "$work/alloc_objects" "$site") $(value_of "$work/alloc_space" "$site")"
    got="$got $(value_of "$work/inuse_objects" "$site") $(value_of "$work/inuse_space" "$site")"
    check_eq "$name $site alloc_objects alloc_space inuse_objects inuse_space" "$got" \
      "$aobj $aspace $iobj $ispace"
  done <"$work/truth"
done

# Children of --fork: each kept 1000 blocks of site_child live when it dumped.
children=$(ls "$work"/child.*.pb.gz 2>/dev/null | wc -l)
if [ "$children" -gt 0 ]; then
  n=0
  for prof in $(ls "$work"/child.*.pb.gz | head -3); do
    pprof_values "$prof" inuse_objects >"$work/child_inuse"
    check_eq "$(basename "$prof") site_child inuse_objects" "$(value_of "$work/child_inuse" site_child)" 1000
    n=$((n + 1))
  done
  check "every child profile is a valid gzip file" bash -c "for f in '$work'/child.*.pb.gz; do gzip -t \"\$f\" || exit 1; done"
fi
for arg in "$@"; do
  if [ "$arg" = --fork ]; then
    check "a profile from every fork child" test "$children" -eq "$(echo "$@" | sed 's/.*--fork \([0-9]*\).*/\1/')"
  fi
  if [ "$arg" = --spawn ]; then
    # Each posix_spawn()ed /bin/false is profiled and writes its own final profile at exit; the
    # shells of system() end with _exit (dash), which runs no atexit handler: no profile.
    n=$(echo "$@" | sed 's/.*--spawn \([0-9]*\).*/\1/')
    others=$(ls "$work"/final.*.f.pb.gz | grep -vc "final\\..*\\.$pid\\.[0-9]*\\.f\\.pb\\.gz")
    check_eq "final profiles of the spawned programs" "$others" "$n"
    check "every spawned program's profile is a valid gzip file" bash -c "for f in '$work'/final.*.f.pb.gz; do gzip -t \"\$f\" || exit 1; done"
  fi
done
rel_finish

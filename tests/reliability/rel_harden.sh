#!/usr/bin/env bash
# Hardening cases (rel_harden.c) under libmprof.so, one finding per run. The cases where another
# user attacks the dump files run as root: the driver creates an unprivileged user (useradd;
# removed on exit) and runs them in a sticky and in a non-sticky world-writable directory.
#
# Usage: rel_harden.sh LIBMPROF REL_HARDEN CASE [MAPLIB]
set -u
. "$(dirname "$0")/rel_lib.sh"
lib=$1 prog=$2 case=$3 maplib=${4:-}
rel_init
chmod 755 "$work"
user=""
cleanup() {
  if [ -n "$user" ]; then
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      userdel "$user" >/dev/null 2>&1 && break
      id -u "$user" >/dev/null 2>&1 || break
      sleep 0.5
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

need_root_and_user() {
  if [ "$(id -u)" != 0 ]; then
    if [ "${CI:-}" = "true" ]; then
      echo "FAIL $case needs root (it creates a second user)"
      exit 1
    fi
    echo "SKIP $case needs root (it creates a second user)"
    exit 77
  fi
  need_cmd useradd passwd
  user=mprofrel$$
  # useradd fails while another one holds /etc/passwd's lock (tests run in parallel): retry.
  local i
  for i in 1 2 3 4 5 6 7 8 9 10; do
    useradd --system --no-create-home --shell /usr/sbin/nologin "$user" 2>"$work/useradd.err" && break
    sleep 0.5
  done
  id -u "$user" >/dev/null 2>&1 || { cat "$work/useradd.err"; exit 1; }
  export REL_UID REL_GID
  REL_UID=$(id -u "$user")
  REL_GID=$(id -g "$user")
}

# run NAME CONF ARGS... -> $rc, $d/out, $d/err
run() {
  local name=$1 conf=$2
  shift 2
  MPROF_CONF="$conf" timed 60 env LD_PRELOAD="$lib" "$prog" "$case" "$d" "$@" >"$d.out" 2>"$d.err"
  rc=$?
  cat "$d.out"
  sed 's/^/  stderr: /' "$d.err"
  grep -q '^FAIL' "$d.out" && check "$name: every check of the program" false
}

profiler_lines() { grep -c '^mprof:' "$1"; }

victim="$work/private/victim"
mkdir -p "$work/private"
printf 'precious\n' >"$victim"

case $case in
tmp_symlink | auto_name_link | fifo_final_name)
  need_root_and_user
  for mode in 1777 0777; do
    d="$work/shared-$mode"
    mkdir "$d" && chmod "$mode" "$d"
    conf="lg_prof_sample:0,prof_prefix:$d/auto"
    [ "$case" = tmp_symlink ] || conf="$conf,prof_final:true"
    run "$case in a $mode directory" "$conf" "$victim"
    case $case in
    tmp_symlink)
      check_eq "$case ($mode): exit status" "$rc" 0
      check_eq "$case ($mode): the victim file" "$(cat "$victim")" precious
      check_eq "$case ($mode): profiler lines" "$(profiler_lines "$d.err")" 0
      ;;
    auto_name_link)
      check_eq "$case ($mode): exit status" "$rc" 0
      check_eq "$case ($mode): the victim file" "$(cat "$victim")" precious
      final=$(ls "$d"/auto.*.1.f.pb.gz)
      check "$case ($mode): the link at the final name is left alone" test -L "$final"
      check_eq "$case ($mode): one line says the final dump failed" \
        "$(grep -c '^mprof: automatic profile dump to .*File exists' "$d.err")/$(profiler_lines "$d.err")" 1/1
      ;;
    fifo_final_name)
      check_eq "$case ($mode): exit status (124 = timeout: exit() hung on the FIFO)" "$rc" 0
      fifo=$(ls "$d"/auto.*.0.f.pb.gz)
      check "$case ($mode): the FIFO is left alone" test -p "$fifo"
      check_eq "$case ($mode): one line says the final dump failed" \
        "$(grep -c '^mprof: automatic profile dump to .*File exists' "$d.err")/$(profiler_lines "$d.err")" 1/1
      ;;
    esac
  done
  ;;
join_exit)
  d="$work/d" && mkdir "$d"
  run "$case" "lg_prof_sample:0,prof_final:true,prof_prefix:$d/final"
  check_eq "$case: exit status of the thread's exit(3) (124 = timeout: hang)" "$rc" 3
  check_eq "$case: final profiles" "$(ls "$d"/final.*.f.pb.gz 2>/dev/null | wc -l)" 1
  check "$case: no temporary file" bash -c "! ls -a '$d' | grep -q tmp"
  ;;
fork_in_exit)
  d="$work/d" && mkdir "$d"
  run "$case" "lg_prof_sample:0,prof_final:true,prof_prefix:$d/final"
  check_eq "$case: exit status (124 = timeout)" "$rc" 0
  check_eq "$case: final profiles (parent and child)" "$(ls "$d"/final.*.f.pb.gz 2>/dev/null | wc -l)" 2
  ;;
errno_first_sample)
  d="$work/d" && mkdir "$d"
  run "$case" "lg_prof_sample:0,prof_active:false"
  check_eq "$case: exit status" "$rc" 0
  ;;
bytes_label)
  need_cmd go golang-go
  d="$work/d" && mkdir "$d"
  run "$case" "prof_final:true,prof_prefix:$d/final"
  check_eq "$case: exit status" "$rc" 0
  go tool pprof -tags "$d"/final.*.f.pb.gz 2>/dev/null | sed -n '/bytes:/,/^ *$/p' >"$d.tags"
  cat "$d.tags"
  check "$case: some samples have the label" grep -q '256B' "$d.tags"
  check_eq "$case: labels other than 256B" "$(grep -E '^ +[0-9.]+[kMG]?B \(' "$d.tags" | grep -vc ': 256B$')" 0
  ;;
*)
  d="$work/d" && mkdir "$d"
  run "$case" "lg_prof_sample:0,prof_prefix:$d/auto" "$maplib"
  check_eq "$case: exit status (124 = timeout, 142 = SIGALRM: a hang; 141 = SIGPIPE)" "$rc" 0
  ;;
esac
rel_finish

#!/usr/bin/env bash
# Profiles are never wider than the umask allows, even where the umask cannot be read: the
# program runs under umask 077 in a mount namespace whose /proc is an empty tmpfs (a container
# without /proc); its final profile must be 0600. With /proc, under umask 022 and 077: 0644 and
# 0600. Needs unshare(1) and the right to mount (root); skipped otherwise, failed under CI=true.
. "$(dirname "$0")/it_lib.sh"

mode() { stat -c %a "$(ls "$1"/p.*.f.pb.gz)"; }
run() { # run DIR UMASK [no-proc]
  mkdir -p "$1"
  local cmd="umask $2; MPROF_CONF=prof_final:true,prof_prefix:$1/p LD_PRELOAD=$lib $prog >/dev/null"
  if [ "${3:-}" = no-proc ]; then
    unshare -m sh -c "mount -t tmpfs none /proc && [ ! -e /proc/self/status ] && $cmd"
  else
    sh -c "$cmd"
  fi
}

run "$work/a" 022 && [ "$(mode "$work/a")" = 644 ] && ok "umask 022: 0644" || bad "umask 022: $(mode "$work/a")"
run "$work/b" 077 && [ "$(mode "$work/b")" = 600 ] && ok "umask 077: 0600" || bad "umask 077: $(mode "$work/b")"
if ! unshare -m sh -c 'mount -t tmpfs none /proc' 2>/dev/null; then
  echo "skip: cannot hide /proc in a mount namespace here (unshare -m, mount)"
  [ "${CI:-}" = true ] && exit 1
  exit 77
fi
for m in 077 022; do
  run "$work/n$m" $m no-proc && [ "$(mode "$work/n$m")" = 600 ] &&
    ok "no /proc, umask $m: 0600" || bad "no /proc, umask $m: $(mode "$work/n$m" 2>&1)"
done
finish

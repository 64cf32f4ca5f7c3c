#!/usr/bin/env bash
# The bundled example under LD_PRELOAD: automatic file names (<prefix>.<program>.<pid>.<seq>.<kind>:
# final, interval, high-water), and
# its three sites by name in `go tool pprof -top`.
. "$(dirname "$0")/it_lib.sh"

MPROF_CONF="prof_final:true,prof_prefix:$work/hh,lg_prof_interval:26,prof_gdump:true" \
  LD_PRELOAD=$lib "$prog" >"$work/out"
grep -q '^hello_heap: 768 cache blocks' "$work/out" && ok "program output unchanged" || bad "program output"

final=$(ls "$work"/hh.*.f.pb.gz 2>/dev/null || true)
[[ $final =~ /hh\.hello_heap\.[0-9]+\.[0-9]+\.f\.pb\.gz$ ]] && ok "final dump named $(basename "$final")" ||
  bad "final dump file missing: $(ls "$work")"
ls "$work"/hh.*.*.*.i0.pb.gz >/dev/null 2>&1 && ok "interval dumps (i<n>) written" || bad "no interval dump"
ls "$work"/hh.*.*.*.u0.pb.gz >/dev/null 2>&1 && ok "high-water dumps (u<n>) written" || bad "no gdump"
ls "$work"/*.tmp.* >/dev/null 2>&1 && bad "temporary files left behind" || ok "no temporary files left"

top() { go tool pprof -top -nodefraction=0 -sample_index="$1" "$final" 2>/dev/null; }
for f in make_cache leak_nodes; do
  top inuse_space | grep -q " $f\$" && ok "$f in inuse_space" || bad "$f missing from inuse_space"
done
top alloc_space | grep -q ' parse_lines$' && ok "parse_lines in alloc_space" || bad "parse_lines missing"
top inuse_space | grep -q ' parse_lines$' && bad "parse_lines should have nothing in use" ||
  ok "parse_lines not in use"
err=$(MPROF_CONF=prof_leak:true LD_PRELOAD=$lib "$prog" 2>&1 >/dev/null)
[[ $err == "mprof: leak summary: about "*" bytes in use at exit in "*" sampled blocks"* ]] &&
  ok "prof_leak prints one summary line" || bad "prof_leak: got '$err'"
[ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] && ok "exactly one line" || bad "more than one line"
finish

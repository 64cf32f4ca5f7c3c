#!/usr/bin/env bash
# The thread snapshot (prof.threads.dump) with a real program (tests/integration/it_threads.c),
# read by go tool pprof:
#  - named threads spinning, blocked in read, nanosleep, poll, epoll_wait and on a condition
#    variable: each thread's sample names its function, its state and its id, and carries the heap
#    it allocated (k MiB for thread k, estimated); none of them saw EINTR or a spurious wake-up;
#  - snapshots while threads are created and exit, and while another thread forks (each child
#    taking a snapshot of its own), all succeed and read;
#  - a program that handles the signal itself: EBUSY, its handler kept; without a snapshot the
#    signal's disposition stays the default;
#  - prof_dump_threads: the prof_dump_signal dump and the final dump write *.threads.pb.gz;
#  - `mprof threads FILE` groups threads by state and stack; `mprof run --threads` prints the
#    final snapshot after its report.
# Arguments: LIB PROG MPROF (the mprof command).
. "$(dirname "$0")/it_lib.sh"
mprof=$3

# One line per sample of a snapshot: "THREAD|STATE|TID|INUSE|FUNC FUNC ..." (leaf first).
samples() {
  local raw traces
  raw=$(go tool pprof -raw "$1" 2>/dev/null)
  traces=$(go tool pprof -traces "$1" 2>/dev/null)
  # -raw: values and labels, in sample order; -traces: the functions, in the same order.
  paste -d'|' \
    <(awk '/^ +[0-9]+ +-?[0-9]+ +-?[0-9]+:/ { v = $2 }
           /thread:\[/ { match($0, /state:\[[^]]*\]/); st = substr($0, RSTART + 7, RLENGTH - 8)
                         match($0, /thread:\[[^]]*\]/); th = substr($0, RSTART + 8, RLENGTH - 9) }
           /tid:\[/ { match($0, /tid:\[[^]]*\]/); print th "|" st "|" substr($0, RSTART + 5, RLENGTH - 6) "|" v }' <<<"$raw") \
    <(awk '/^-+\+-+$/ { if (n) print fs; fs = ""; n = 0; next }
           /^ +[0-9]+ +[^ ]/ && !/:/ { fs = $2; n = 1; next }
           n && /^ +[^ ]/ && !/:/ { fs = fs " " $1 }
           END { if (n) print fs }' <<<"$traces")
}

out=$(MPROF_CONF=lg_prof_sample:14 LD_PRELOAD="$lib" "$prog" snap "$work/s.pb.gz") || { bad "snap run failed"; finish; exit 1; }
echo "$out"
s=$(samples "$work/s.pb.gz")
echo "$s"
grep -qx "eintr 0" <<<"$out" && ok "no EINTR, no spurious wake-up; the spinner's errno and signal mask kept" || bad "the threads saw EINTR or wake-ups: $(grep eintr <<<"$out")"
grep -qx "handler_before default" <<<"$out" && ok "no handler before the first snapshot" || bad "a handler was installed before the first snapshot"
[ "$(wc -l <<<"$s")" = 7 ] && ok "7 threads in the snapshot" || bad "$(wc -l <<<"$s") samples, want 7"
k=0
for spec in "spinner in_spin running" "reader in_read read" "sleeper in_nanosleep clock_nanosleep|nanosleep" \
  "poller in_poll poll|ppoll" "epoller in_epoll_wait epoll_wait|epoll_pwait" "condwaiter in_cond_wait futex"; do
  read -r name fn states <<<"$spec"
  k=$((k + 1))
  line=$(grep "^$name|" <<<"$s" || true)
  tid=$(awk -v n="$name" '$1 == "thread" && $2 == n { print $3 }' <<<"$out")
  IFS='|' read -r _ st t inuse fns <<<"$line"
  [ -n "$line" ] && grep -qw "$fn" <<<"$fns" && ok "$name: stack names $fn" || bad "$name: $fn not in its stack ($fns)"
  grep -Eqx "$states" <<<"$st" && ok "$name: state $st" || bad "$name: state '$st', want $states"
  [ "$t" = "$tid" ] && ok "$name: tid $tid" || bad "$name: tid '$t', want $tid"
  awk -v v="${inuse:-0}" -v k=$k 'BEGIN { r = v / (k * 1048576); exit !(r > 0.6 && r < 1.4) }' &&
    ok "$name: holds about $k MiB ($inuse bytes)" || bad "$name: holds $inuse bytes, want about $k MiB"
done
mt=$(awk '$1 == "thread" && $2 == "main" { print $3 }' <<<"$out")
grep -q "|running|$mt|.*threads_dump snap main" <<<"$s" && ok "the dumping thread: running, in threads_dump < snap < main" ||
  bad "the dumping thread's sample is wrong"

# process_vm_readv refused: the same stacks, every thread taken by the signal (the handler reads
# its own stack within the mapping that holds it). EINTR is possible here (docs/OPTIONS.md).
out=$(MPROF_CONF=lg_prof_sample:14 LD_PRELOAD="$lib" "$prog" novm "$work/n.pb.gz") || bad "novm run failed"
s=$(samples "$work/n.pb.gz")
for spec in "spinner in_spin" "reader in_read" "sleeper in_nanosleep" "poller in_poll" \
  "epoller in_epoll_wait" "condwaiter in_cond_wait"; do
  read -r name fn <<<"$spec"
  grep "^$name|" <<<"$s" | grep -qw "$fn" && ok "without process_vm_readv: $name in $fn" ||
    bad "without process_vm_readv: $name not in $fn ($(grep "^$name|" <<<"$s"))"
done
go tool pprof -raw "$work/n.pb.gz" 2>/dev/null | grep -qx "Comment: mprof.threads_walked_blocked=0" &&
  ok "without process_vm_readv: no thread walked from outside" || bad "without process_vm_readv: threads walked from outside"

# Threads that exit during snapshots; fork during snapshots.
out=$(LD_PRELOAD="$lib" "$prog" exit "$work") && grep -qx "snapshots 30" <<<"$out" &&
  ok "30 snapshots while threads come and go" || bad "snapshots with exiting threads: $out"
n=0
for f in "$work"/exit.*.pb.gz; do go tool pprof -raw "$f" >/dev/null 2>&1 && n=$((n + 1)); done
[ $n = 30 ] && ok "all 30 read" || bad "$n of 30 snapshots read"
out=$(LD_PRELOAD="$lib" "$prog" fork "$work") || true
read -r _ ns _ nc <<<"$out"
[ "${ns:-0}" = 20 ] && [ "${nc:-0}" -gt 0 ] && ok "20 snapshots while forking, $nc children took one each" ||
  bad "snapshots with fork: $out"
n=0 m=0
for f in "$work"/child.*.pb.gz; do m=$((m + 1)); go tool pprof -raw "$f" >/dev/null 2>&1 && n=$((n + 1)); done
[ $n = $m ] && [ $n = "${nc:-0}" ] && ok "the children's $n snapshots read" || bad "$n of $m child snapshots read (want ${nc:-0})"

# The program's own handler; no handler without a snapshot.
out=$(LD_PRELOAD="$lib" "$prog" busy "$work/b.pb.gz")
[ "$out" = "err EBUSY handler kept" ] && [ ! -e "$work/b.pb.gz" ] && ok "program's handler: EBUSY, kept, no file" ||
  bad "program's handler: $out"
out=$(LD_PRELOAD="$lib" "$prog" quiet)
[ "$out" = default ] && ok "no snapshot: the signal keeps its default action" || bad "no snapshot: $out"

# prof_dump_threads: a snapshot with the signal's dump and with the final one.
MPROF_CONF="lg_prof_sample:0,prof_prefix:$work/auto,prof_dump_signal:SIGUSR2,prof_dump_threads:true,prof_final:true" \
  LD_PRELOAD="$lib" "$prog" auto || bad "auto run failed"
ls "$work"/auto.*.s0.threads.pb.gz >/dev/null 2>&1 && ok "prof_dump_signal wrote a .s0.threads.pb.gz" ||
  bad "no .s0.threads.pb.gz: $(ls "$work")"
ls "$work"/auto.*.f.threads.pb.gz >/dev/null 2>&1 && ok "the final dump wrote a .f.threads.pb.gz" ||
  bad "no .f.threads.pb.gz: $(ls "$work")"
for f in "$work"/auto.*.threads.pb.gz; do
  [ "$(samples "$f" | grep -c '|running|')" -ge 1 ] && ok "$(basename "$f"): the exiting thread, running" ||
    bad "$(basename "$f"): no running thread"
done

# mprof threads: one group per (state, stack), most threads first.
t=$("$mprof" threads "$work/s.pb.gz") || bad "mprof threads failed"
grep -qx "threads profile: total 7" <<<"$t" && ok "mprof threads: total 7" || bad "mprof threads: $(head -1 <<<"$t")"
rt=$(awk '$1 == "thread" && $2 == "reader" { print $3 }' <<<"$(MPROF_CONF=lg_prof_sample:14 LD_PRELOAD="$lib" "$prog" snap "$work/s2.pb.gz")")
t=$("$mprof" threads "$work/s2.pb.gz")
awk -v tid="$rt" '/^1 read @/ { g = 1; next } g && /^# threads:/ { ok = index($0, "reader[" tid "]") > 0; next }
                  g && /in_read/ { found = ok } /^$/ { g = 0 } END { exit !found }' <<<"$t" &&
  ok "mprof threads: the reader's group (read, in_read, reader[$rt])" || bad "mprof threads: no reader group: $t"
LD_PRELOAD="$lib" "$prog" many 20 "$work/m.pb.gz" >/dev/null || bad "many 20 failed"
t=$("$mprof" threads "$work/m.pb.gz")
grep -q "^10 read @" <<<"$t" && ok "mprof threads: the 10 idle threads in one group" || bad "mprof threads: no group of 10: $t"
err=$(MPROF_LIB_DIR=$(dirname "$lib") "$mprof" run --threads -o "$work/run" --allocator \
  "$(case $lib in *jemalloc*) echo jemalloc ;; *) echo mimalloc ;; esac)" -- "$prog" quiet 2>&1 >/dev/null)
grep -q "^threads profile: total 1" <<<"$err" && grep -q "^threads: $work/run\..*\.f\.threads\.pb\.gz" <<<"$err" &&
  ok "mprof run --threads prints the final snapshot" || bad "mprof run --threads: $err"
finish

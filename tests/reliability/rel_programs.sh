#!/usr/bin/env bash
# Unmodified real programs under libmprof.so with every allocation sampled must behave exactly
# as without it: same exit status, same output (byte for byte), no message from the profiler,
# and valid final profiles from every profiled process.
#
#   sqlite3  a SQL script with 200k rows: recursive CTEs, indexes, joins, window functions, JSON
#   git      init, 300 files, commits, branches, a merge, gc --aggressive, fsck, log (git runs
#            subprocesses: pack-objects, repack, ...; all of them are profiled)
#   gcc      compiles the profiler's own sources at -O2 to assembly (cc1 is a heavy allocator)
#
# Usage: rel_programs.sh LIBMPROF PROGRAM SOURCE_DIR
set -u
. "$(dirname "$0")/rel_lib.sh"
lib=$1 program=$2 src=$3
rel_init

workload_sqlite3() {
  cat >script.sql <<'SQL'
PRAGMA journal_mode = WAL;
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, payload BLOB, doc TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
INSERT INTO t SELECT i, i % 97, 'name-' || (i * 7919 % 100003), zeroblob(i % 300),
                     json_object('i', i, 'sq', i * i, 'tags', json_array(i % 3, i % 5, i % 7))
FROM n;
CREATE INDEX t_grp ON t(grp, name);
CREATE TABLE g AS SELECT grp, count(*) AS n, sum(length(payload)) AS bytes FROM t GROUP BY grp;
SELECT grp, n, bytes FROM g ORDER BY bytes DESC LIMIT 5;
SELECT count(*), sum(json_extract(doc, '$.sq') % 1000003) FROM t WHERE grp IN (1, 2, 3);
SELECT name, row_number() OVER (PARTITION BY grp ORDER BY name) AS r FROM t
  WHERE grp = 42 ORDER BY r LIMIT 3;
SELECT t.grp, g.n FROM t JOIN g USING (grp) WHERE t.id % 20000 = 0 ORDER BY t.id;
SELECT group_concat(DISTINCT substr(name, 1, 6)) FROM (SELECT name FROM t ORDER BY name LIMIT 50);
DELETE FROM t WHERE id % 3 = 0;
VACUUM;
SELECT count(*), max(id), total(length(doc)) FROM t;
PRAGMA integrity_check;
SQL
  sqlite3 db.sqlite <script.sql
}

workload_git() {
  export GIT_AUTHOR_NAME=mprof GIT_AUTHOR_EMAIL=mprof@example.invalid
  export GIT_COMMITTER_NAME=mprof GIT_COMMITTER_EMAIL=mprof@example.invalid
  export GIT_AUTHOR_DATE="2020-01-01T00:00:00Z" GIT_COMMITTER_DATE="2020-01-01T00:00:00Z"
  export GIT_CONFIG_NOSYSTEM=1 HOME=$PWD
  git init -q -b main repo && cd repo || return 1
  for i in $(seq 1 300); do seq "$i" $((i * 37)) >"f$i.txt"; done
  git add . && git commit -qm "300 files"
  git checkout -qb side
  for i in $(seq 1 300 | awk 'NR % 3 == 0'); do echo "side $i" >>"f$i.txt"; done
  git commit -qam "side edits"
  git checkout -q main
  for i in $(seq 1 300 | awk 'NR % 5 == 0'); do sed -i '1s/^/main /' "f$i.txt"; done
  git commit -qam "main edits"
  git merge -q --no-edit side
  git gc -q --aggressive
  git fsck --strict 2>&1
  git log --stat --format='%H %s' | head -50
  git diff --stat HEAD~2 HEAD | tail -3
  git rev-list --all --objects | wc -l
}

workload_gcc() {
  for f in "$src"/plugin/*.c; do
    gcc -std=c11 -O2 -D_GNU_SOURCE -I"$src/include" -I"$src/plugin" -S -o - "$f" || return 1
  done | md5sum
}

case $program in
sqlite3) need_cmd sqlite3 sqlite3 ;;
git) need_cmd git git ;;
gcc) need_cmd gcc gcc ;;
*) echo "unknown program $program"; exit 2 ;;
esac
need_cmd go golang-go

mkdir -p "$work/plain" "$work/profiled" "$work/prof"
(cd "$work/plain" && timed 300 env -u LD_PRELOAD -u MPROF_CONF bash -c "$(declare -f workload_$program); src='$src'; workload_$program") \
  >"$work/plain.out" 2>"$work/plain.err"
plain_rc=$?
(cd "$work/profiled" && MPROF_CONF="lg_prof_sample:0,prof_final:true,prof_prefix:$work/prof/p" \
  timed 300 env LD_PRELOAD="$lib" bash -c "$(declare -f workload_$program); src='$src'; workload_$program") \
  >"$work/profiled.out" 2>"$work/profiled.err"
profiled_rc=$?
echo "--- output of the unprofiled run (first lines)"
head -12 "$work/plain.out"
check_eq "$program: unprofiled run succeeds" "$plain_rc" 0
check_eq "$program: exit status under the profiler" "$profiled_rc" "$plain_rc"
check "$program: same stdout under the profiler" cmp "$work/plain.out" "$work/profiled.out"
check "$program: same stderr under the profiler" cmp "$work/plain.err" "$work/profiled.err"
no_profiler_lines "$program: no message from the profiler" "$work/profiled.err"
nprof=$(ls "$work/prof" | grep -c '\.f\.pb\.gz$')
check "$program: final profiles from the profiled processes ($nprof)" test "$nprof" -gt 0
check "$program: every final profile is a valid gzip file" bash -c "cd '$work/prof' && for f in *.f.pb.gz; do gzip -t \"\$f\" || exit 1; done"
check "$program: no temporary dump files left" bash -c "! ls '$work/prof' | grep -q '\\.tmp\\.'"
biggest=$(ls -S "$work"/prof/*.f.pb.gz 2>/dev/null | head -1)
# Every allocation is sampled: the busiest process must show thousands of allocations.
objs=$(go tool pprof -top -nodecount=1 -sample_index=alloc_objects "$biggest" 2>/dev/null |
  sed -n 's/.* of \([0-9]*\) total.*/\1/p')
check "$program: the largest profile reads with go tool pprof and counts ${objs:-no} allocations" \
  test "${objs:-0}" -ge 2000
rel_finish

-- An in-memory database built, indexed, queried and rewritten by the sqlite3 shell.
-- Run as: sqlite3 :memory: < sqlite.sql    (the suite scales ROWS with --quick/--smoke)
-- Deterministic: no random(), every value is derived from the row number.
PRAGMA cache_size = -1000000;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, s TEXT, v REAL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < @ROWS@)
INSERT INTO t
  SELECT x, (x * 2654435761) % 10007,
         substr(printf('%032x%032x', x * 40503, x * 2246822519), 1, 16 + (x * 7) % 48),
         (x % 1000) / 7.0
  FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_s ON t(s);
SELECT k, count(*), avg(v), max(length(s)) FROM t GROUP BY k ORDER BY 2 DESC, 1 LIMIT 3;
SELECT count(*) FROM t a JOIN t b ON a.k = b.k AND a.id < b.id WHERE a.id <= @ROWS@ / 50;
UPDATE t SET s = s || printf('%08d', id) WHERE k % 5 = 0;
SELECT max(l) FROM (SELECT length(group_concat(s)) AS l FROM t GROUP BY k % 97);
DELETE FROM t WHERE k % 3 = 0;
CREATE TABLE u AS SELECT k, group_concat(s, ',') AS all_s FROM t GROUP BY k;
SELECT count(*), sum(length(all_s)) FROM u;

\timing on
DROP TABLE IF EXISTS t_desc, t_asc;
CREATE TABLE t_desc (id bigint, queue text, state text);
CREATE TABLE t_asc (id bigint, queue text, state text);
CREATE INDEX ON t_desc (queue, state, id DESC);
CREATE INDEX ON t_asc (queue, state, id);
-- 200 batches of 1000 increasing ids, spread over two groups, like available then completed versions
SELECT pg_current_wal_lsn() AS l0 \gset
DO $$ BEGIN FOR b IN 0..199 LOOP INSERT INTO t_desc SELECT g, 'default', CASE WHEN g % 2 = 0 THEN 'available' ELSE 'completed' END FROM generate_series(b*5000+1, b*5000+5000) g; END LOOP; END $$;
SELECT pg_current_wal_lsn() AS l1 \gset
DO $$ BEGIN FOR b IN 0..199 LOOP INSERT INTO t_asc SELECT g, 'default', CASE WHEN g % 2 = 0 THEN 'available' ELSE 'completed' END FROM generate_series(b*5000+1, b*5000+5000) g; END LOOP; END $$;
SELECT pg_current_wal_lsn() AS l2 \gset
SELECT pg_size_pretty(pg_wal_lsn_diff(:'l1', :'l0')) AS wal_desc, pg_size_pretty(pg_wal_lsn_diff(:'l2', :'l1')) AS wal_asc;
SELECT relname, pg_size_pretty(pg_relation_size(oid)) FROM pg_class WHERE relname IN ('t_desc_queue_state_id_idx', 't_asc_queue_state_id_idx');
EXPLAIN SELECT id FROM t_asc WHERE queue = 'default' AND state = 'completed' ORDER BY id DESC LIMIT 50;
DROP TABLE t_desc, t_asc;

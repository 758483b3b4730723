-- 007: a cancelled job whose handler may still run. `{schema}` is replaced by the schema name.
--
-- Cancelling an executing job marks it `cancelled` at once, but its handler stops only when
-- the message reaches its node (and the handler yields). Until that node confirms the
-- handler stopped (its stale ack lands) or is declared dead, `stopping_since` holds the
-- cancel's time, and retry, run-now and delete refuse the job: one of them would otherwise
-- start a second copy beside the first.
--
-- Locks: ADD COLUMN with no default is a catalog change (a moment's ACCESS EXCLUSIVE, no
-- rewrite). The partial index holds only the jobs being stopped, but building it reads the
-- whole table, so it is built CONCURRENTLY after the migration's transaction
-- (engine/db/migrate.py, AFTER_COMMIT): inserts, claims and acks go on meanwhile (a plain
-- build would hold a SHARE lock, about a second per million rows); it waits only for
-- transactions already open. Until it is valid the queries it serves (a node's stopping jobs,
-- read every heartbeat) scan instead. A build interrupted by a crash leaves an invalid index
-- under its name; the next `jobengine migrate` (or start) drops it and builds it again.
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS stopping_since timestamptz;

-- jobengine: after commit
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index
               WHERE indexrelid = to_regclass('{schema}.jobs_stopping_idx') AND NOT indisvalid) THEN
        DROP INDEX {schema}.jobs_stopping_idx;
    END IF;
END
$$;
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_stopping_idx ON {schema}.jobs (attempted_by)
    WHERE stopping_since IS NOT NULL;

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
-- table once under a SHARE lock: writes wait meanwhile (about a second per million rows).
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS stopping_since timestamptz;
CREATE INDEX IF NOT EXISTS jobs_stopping_idx ON {schema}.jobs (attempted_by) WHERE stopping_since IS NOT NULL;

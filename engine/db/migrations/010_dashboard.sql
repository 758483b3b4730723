-- 010: what the dashboard's search and nodes page need. `{schema}` is replaced by the schema name.
--
-- Nodes that left: a clean stop, or silence past the rescue window (the heartbeat row is
-- deleted then), with how many of their jobs were rescued and the first ids. The nodes page
-- and GET /api/nodes list the last day of them; the lifeline forgets older ones.
CREATE TABLE IF NOT EXISTS {schema}.departed_nodes (
    name          text PRIMARY KEY,
    queues        text[]      NOT NULL DEFAULT '{}',
    meta          jsonb       NOT NULL DEFAULT '{}',
    started_at    timestamptz,
    heartbeat_at  timestamptz,
    departed_at   timestamptz NOT NULL DEFAULT now(),
    reason        text        NOT NULL CHECK (reason IN ('stopped', 'lost')),
    rescued       int         NOT NULL DEFAULT 0,
    rescued_ids   bigint[]    NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS departed_nodes_departed_at_idx ON {schema}.departed_nodes (departed_at);

-- History for the charts: finished jobs per minute, queue and kind, with histograms of wait
-- time (scheduled -> started) and run time (started -> finished), kept after the jobs are
-- pruned. A maintenance pass (engine/maintenance/rollup.py) aggregates whole minutes in bulk
-- from jobs_finished_idx; the claim and the ack write nothing here. Histogram i counts the
-- times in milliseconds that width_bucket puts in bucket i of sql.ROLLUP_BUCKET_BOUNDS_MS (0: under
-- 1 ms; the last: an hour or more).
CREATE TABLE IF NOT EXISTS {schema}.job_rollup (
    minute     timestamptz NOT NULL,
    queue      text        NOT NULL,
    kind       text        NOT NULL,
    completed  int         NOT NULL DEFAULT 0,
    discarded  int         NOT NULL DEFAULT 0,
    cancelled  int         NOT NULL DEFAULT 0,
    wait_ms    float8      NOT NULL DEFAULT 0,  -- sums, for averages
    run_ms     float8      NOT NULL DEFAULT 0,
    ran        int         NOT NULL DEFAULT 0,  -- jobs with an attempt: the histograms' total
    wait_hist  int[]       NOT NULL,
    run_hist   int[]       NOT NULL,
    PRIMARY KEY (minute, queue, kind)
);
-- Where the rollup has got to: every minute before rolled_until is in job_rollup. It starts a
-- week back, so a table with history fills the 7-day chart, an hour per pass.
CREATE TABLE IF NOT EXISTS {schema}.job_rollup_state (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    rolled_until  timestamptz NOT NULL
);
INSERT INTO {schema}.job_rollup_state (rolled_until) VALUES (date_trunc('minute', now()) - interval '7 days')
ON CONFLICT (id) DO NOTHING;

-- Per minute, queue and kind, for users' own queries (README, "The SQL surface"):
--   SELECT minute, sum(completed), sum(discarded) FROM jobengine.job_history
--   WHERE minute > now() - interval '1 day' GROUP BY minute ORDER BY minute;
CREATE OR REPLACE VIEW {schema}.job_history AS
    SELECT minute, queue, kind, completed, discarded, cancelled,
           round(discarded::numeric / nullif(completed + discarded, 0), 4) AS failure_rate,
           round((wait_ms / nullif(ran, 0))::numeric, 1) AS avg_wait_ms,
           round((run_ms / nullif(ran, 0))::numeric, 1) AS avg_run_ms
    FROM {schema}.job_rollup;

-- Per attempt: the last lines a handler logged through ctx.logger (a JSON array of strings,
-- capped, secrets redacted) and the progress it reported with ctx.progress. Written in
-- batches by each node's writer (engine/maintenance/attempt_log_writer.py), only for attempts
-- that log; forgotten with the longest job retention (no foreign key: pruning jobs stays one
-- statement with no per-row trigger).
CREATE TABLE IF NOT EXISTS {schema}.attempt_logs (
    job_id         bigint      NOT NULL,
    attempt        int         NOT NULL,
    lines          jsonb       NOT NULL DEFAULT '[]',
    progress       float8,
    progress_text  text,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, attempt)
);
CREATE INDEX IF NOT EXISTS attempt_logs_updated_at_idx ON {schema}.attempt_logs (updated_at);

-- The search part.
--
-- `args.PATH:VALUE` (README, "Finding jobs"; engine/core/search.py) is a containment test,
-- `args @> '{"to": "a@example.com"}'`, which a GIN index with jsonb_path_ops answers: it
-- stores one hash per path-and-value, so it is about a third the size of the default jsonb
-- GIN opclass and serves exactly `@>` (no key-exists operators, which search never uses).
--
-- Built CONCURRENTLY, after the migration's transaction (engine/db/migrate.py, AFTER_COMMIT):
-- a plain CREATE INDEX holds a SHARE lock for the whole build, and on a big table every
-- insert, claim and ack of a running cluster would wait minutes for it. A concurrent build
-- lets them go on; it waits only for transactions already open on the table. Until the index
-- is valid, an args search still answers (the planner walks the newest rows instead).
-- A build interrupted by a crash leaves an invalid index under this name; the next
-- `jobengine migrate` (or start) drops it and builds it again.
--
-- Partial, `state <> 'executing'`, like 005's listing indexes: a state change is a non-HOT
-- update, so every full index takes an entry for the new row version; this way the claim
-- writes none here, and the insert and the final ack one each (through GIN's pending list,
-- merged in bulk). The job pages already read executing jobs in a branch of their own.

-- jobengine: after commit
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index
               WHERE indexrelid = to_regclass('{schema}.jobs_args_idx') AND NOT indisvalid) THEN
        DROP INDEX {schema}.jobs_args_idx;
    END IF;
END
$$;
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_args_idx ON {schema}.jobs USING gin (args jsonb_path_ops)
    WHERE state <> 'executing';

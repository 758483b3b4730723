-- 004: stats views for users who query Postgres directly, and what the dashboard needs to
-- stay fast with millions of rows. `{schema}` is replaced by the configured schema name.
--
-- The views cover the last 24 hours of finished jobs: their WHERE clause is written with
-- the very expression of jobs_finished_idx (001), so reading them is an index range scan
-- over one day, never a scan of the whole table. Older history is a query on `jobs`.

-- Chains: the dashboard shows a job's children (onSuccess/onFailure, failure
-- notifications). Partial, so only rows that have a parent are indexed.
CREATE INDEX IF NOT EXISTS jobs_parent_idx
    ON {schema}.jobs ((meta ->> 'parent_id')) WHERE meta ? 'parent_id';

-- Queue and state are strongly correlated (a busy queue holds most completed rows).
-- With this MCV statistic the planner's row estimate for `queue = $1 AND state = $2` is
-- close to the truth, and the dashboard shows it for counts too large to count exactly.
CREATE STATISTICS IF NOT EXISTS {schema}.jobs_queue_state_stats (mcv) ON queue, state FROM {schema}.jobs;

-- Finished jobs per minute and queue over the last 24 hours.
--   SELECT minute, sum(completed) FROM jobengine.throughput
--   WHERE minute > now() - interval '1 hour' GROUP BY minute ORDER BY minute;
CREATE OR REPLACE VIEW {schema}.throughput AS
    SELECT date_trunc('minute', finished_at) AS minute, queue,
           count(*) FILTER (WHERE state = 'completed')::bigint AS completed,
           count(*) FILTER (WHERE state = 'discarded')::bigint AS discarded,
           count(*) FILTER (WHERE state = 'cancelled')::bigint AS cancelled
    FROM (SELECT queue, state, coalesce(completed_at, cancelled_at, discarded_at) AS finished_at
          FROM {schema}.jobs
          WHERE state IN ('completed', 'discarded', 'cancelled')
            AND coalesce(completed_at, cancelled_at, discarded_at) >= now() - interval '24 hours') AS f
    GROUP BY 1, 2;

-- Per kind over the last 24 hours: how many jobs finished, how many were finally
-- discarded (failure_rate, of completed + discarded) and how many attempts errored
-- (error_rate, of all attempts spent, retries included).
CREATE OR REPLACE VIEW {schema}.failure_rates AS
    SELECT kind,
           count(*)::bigint AS finished,
           count(*) FILTER (WHERE state = 'completed')::bigint AS completed,
           count(*) FILTER (WHERE state = 'discarded')::bigint AS discarded,
           count(*) FILTER (WHERE state = 'cancelled')::bigint AS cancelled,
           round(count(*) FILTER (WHERE state = 'discarded')::numeric
                 / nullif(count(*) FILTER (WHERE state IN ('completed', 'discarded')), 0), 4) AS failure_rate,
           sum(attempt)::bigint AS attempts,
           round(sum((SELECT count(*) FROM jsonb_array_elements(errors) AS e WHERE e ->> 'kind' = 'error'))
                 / nullif(sum(attempt), 0), 4) AS error_rate
    FROM {schema}.jobs
    WHERE state IN ('completed', 'discarded', 'cancelled')
      AND coalesce(completed_at, cancelled_at, discarded_at) >= now() - interval '24 hours'
    GROUP BY kind;

-- Run time of the last (successful) attempt per kind, completed jobs of the last 24 hours,
-- slowest p95 first.
--   SELECT kind, p95_seconds FROM jobengine.slowest_kinds LIMIT 5;
CREATE OR REPLACE VIEW {schema}.slowest_kinds AS
    SELECT kind, count(*)::bigint AS completed,
           round(avg(seconds)::numeric, 3) AS avg_seconds,
           round((percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds))::numeric, 3) AS p50_seconds,
           round((percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds))::numeric, 3) AS p95_seconds,
           round(max(seconds)::numeric, 3) AS max_seconds
    FROM (SELECT kind, extract(epoch FROM completed_at - attempted_at)::float8 AS seconds
          FROM {schema}.jobs
          WHERE state = 'completed' AND attempted_at IS NOT NULL
            AND coalesce(completed_at, cancelled_at, discarded_at) >= now() - interval '24 hours') AS c
    GROUP BY kind
    ORDER BY p95_seconds DESC;

-- 001: the jobs table, its indexes, nodes (heartbeats), queue controls, queue_stats.
-- `{schema}` is replaced by the configured schema name before this runs.

CREATE TABLE IF NOT EXISTS {schema}.jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue         text        NOT NULL DEFAULT 'default',
    kind          text        NOT NULL,
    args          jsonb       NOT NULL DEFAULT '{}',
    meta          jsonb       NOT NULL DEFAULT '{}',
    state         text        NOT NULL DEFAULT 'available'
                  CHECK (state IN ('scheduled', 'available', 'executing', 'retryable',
                                   'completed', 'discarded', 'cancelled')),
    priority      int         NOT NULL DEFAULT 0,
    attempt       int         NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts  int         NOT NULL DEFAULT 20 CHECK (max_attempts > 0),
    timeout       double precision,
    scheduled_at  timestamptz NOT NULL DEFAULT now(),
    inserted_at   timestamptz NOT NULL DEFAULT now(),
    attempted_at  timestamptz,
    completed_at  timestamptz,
    cancelled_at  timestamptz,
    discarded_at  timestamptz,
    attempted_by  text,
    errors        jsonb       NOT NULL DEFAULT '[]',
    result        jsonb,
    tags          text[]      NOT NULL DEFAULT '{}',
    unique_key    text,
    unique_states text[],
    rescued       int         NOT NULL DEFAULT 0
) WITH (fillfactor = 80);

-- Churn-heavy table: vacuum early so dead tuples from state updates do not pile up.
ALTER TABLE {schema}.jobs SET (autovacuum_vacuum_scale_factor = 0.02,
                               autovacuum_analyze_scale_factor = 0.02,
                               autovacuum_vacuum_cost_delay = 1);

-- The claim query reads only this small index: rows leave it as soon as they are claimed.
CREATE INDEX IF NOT EXISTS jobs_fetch_idx
    ON {schema}.jobs (queue, priority DESC, scheduled_at, id) WHERE state = 'available';

-- The stager finds due scheduled/retryable rows here.
CREATE INDEX IF NOT EXISTS jobs_staging_idx
    ON {schema}.jobs (scheduled_at) WHERE state IN ('scheduled', 'retryable');

-- Rescue and shutdown look up executing rows by node.
CREATE INDEX IF NOT EXISTS jobs_executing_idx
    ON {schema}.jobs (attempted_by) WHERE state = 'executing';

-- Pruning and the dashboard's finished lists scan by finish time.
CREATE INDEX IF NOT EXISTS jobs_finished_idx
    ON {schema}.jobs (state, coalesce(completed_at, cancelled_at, discarded_at))
    WHERE state IN ('completed', 'discarded', 'cancelled');

-- Listing by kind / queue / tag for operators.
CREATE INDEX IF NOT EXISTS jobs_queue_state_idx ON {schema}.jobs (queue, state, id DESC);
CREATE INDEX IF NOT EXISTS jobs_kind_idx ON {schema}.jobs (kind, id DESC);
CREATE INDEX IF NOT EXISTS jobs_tags_idx ON {schema}.jobs USING gin (tags);

-- Unique jobs: a duplicate may not exist while the existing row is in one of the
-- states the job asked for; leaving those states frees the key.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique_idx
    ON {schema}.jobs (unique_key) WHERE unique_key IS NOT NULL AND state = ANY (unique_states);

CREATE TABLE IF NOT EXISTS {schema}.nodes (
    name          text PRIMARY KEY,
    queues        text[]      NOT NULL DEFAULT '{}',
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    meta          jsonb       NOT NULL DEFAULT '{}'
);

-- Operator controls shared by every node: pause and per-node concurrency.
CREATE TABLE IF NOT EXISTS {schema}.queues (
    name          text PRIMARY KEY,
    paused        boolean     NOT NULL DEFAULT false,
    concurrency   int CHECK (concurrency IS NULL OR concurrency > 0),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE VIEW {schema}.queue_stats AS
    SELECT queue, state, count(*)::bigint AS count
    FROM {schema}.jobs
    GROUP BY queue, state;

-- 003: flow control: job dependencies, shared rate limits and global concurrency, and the
-- lookup index unique inserts use. `{schema}` is replaced by the configured schema name.
-- Additive only: a nullable column without default is a catalog change, no table rewrite.

-- Ids of the jobs a waiting job still needs completed (dependsOn). NULL for every job that
-- waits for nothing, which is nearly all of them: both indexes below are partial, so jobs
-- without dependencies never touch them and the hot insert/claim paths pay nothing.
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS waiting_for bigint[];

-- "Which waiting jobs depend on these finished jobs?" (waiting_for && $1) at every ack.
CREATE INDEX IF NOT EXISTS jobs_waiting_for_idx
    ON {schema}.jobs USING gin (waiting_for) WHERE waiting_for IS NOT NULL;

-- The dependency sweeper walks every waiting job; this keeps that walk off the table.
CREATE INDEX IF NOT EXISTS jobs_waiting_idx
    ON {schema}.jobs (id) WHERE waiting_for IS NOT NULL;

-- A unique insert that was skipped looks its holder up by key. jobs_unique_idx only holds
-- rows in their unique states, so without this the lookup would scan the table.
CREATE INDEX IF NOT EXISTS jobs_unique_key_idx
    ON {schema}.jobs (unique_key) WHERE unique_key IS NOT NULL;

-- One row per queue that has a rate limit or a global concurrency limit. Every claim of
-- such a queue, from any process, locks its row first: claims of a limited queue are
-- serialised (claims of other queues are not). `stamps`/`counts` are the claims still
-- inside the rate window: at stamps[i] (the database clock), counts[i] jobs started.
CREATE TABLE IF NOT EXISTS {schema}.queue_limits (
    queue       text PRIMARY KEY,
    stamps      timestamptz[] NOT NULL DEFAULT '{}',
    counts      int[]         NOT NULL DEFAULT '{}',
    updated_at  timestamptz   NOT NULL DEFAULT now(),
    CHECK (cardinality(stamps) = cardinality(counts))
);

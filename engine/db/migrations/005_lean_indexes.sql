-- 005: fewer index writes per state change. `{schema}` is replaced by the schema name.
--
-- Every job goes available -> executing -> completed, and each change of `state` is a
-- non-HOT update: the new row version gets an entry in every index whose predicate it
-- matches. 001's operator indexes (queue/state, kind, tags) were full, so the claim wrote
-- into all three although nobody lists jobs by them while they run. Here they become
-- partial, `state <> 'executing'`: the claim writes only the primary key and the index of
-- executing jobs. bench/index_cost.py: 4.8 WAL records per claimed job instead of 7.8, and
-- about a fifth less Postgres CPU per claim (completions lose the GIN entry of empty tags).
-- Executing jobs are few (the nodes' concurrency) and sit in jobs_executing_queue_idx,
-- which replaces 001's jobs_executing_idx (attempted_by) at the same write cost: by queue,
-- it also serves what jobs_queue_state_idx did for them (counts per queue, the limited
-- claim's global concurrency, queue names, job pages). Nothing looked rows up by node.
--
-- Queries must let the planner prove a partial predicate: `state = 'completed'` implies
-- `state <> 'executing'`, a parameter or a joined value does not. engine/sql.py's
-- dashboard statements spell the states out, or add `state <> 'executing'` (and
-- `cardinality(tags) <> 0` to a tag filter) and read executing jobs from their own index.
--
-- On a big table. Migrations run in one transaction under an advisory lock, so CREATE
-- INDEX CONCURRENTLY (which cannot run in a transaction) is not available. A plain CREATE
-- INDEX holds a SHARE lock: reads go on, inserts, claims and acks wait until the commit
-- (the four builds took 3 s on a million rows on a 2-core machine). So the new indexes are
-- built first and the old ones dropped last: DROP INDEX takes an ACCESS EXCLUSIVE lock,
-- held only from there to the commit. To upgrade a big installation without pausing
-- writes, build the four new indexes beforehand with CREATE INDEX CONCURRENTLY, with
-- these very names and definitions; the IF NOT EXISTS below then keeps them and the
-- migration only drops the old ones. An index left invalid by a failed concurrent build
-- is dropped and built again here.

-- A failed CREATE INDEX CONCURRENTLY leaves an invalid index under its name, which
-- IF NOT EXISTS would keep (and the planner never uses).
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['jobs_queue_listing_idx', 'jobs_kind_listing_idx',
                                'jobs_tags_listing_idx', 'jobs_executing_queue_idx'] LOOP
        IF EXISTS (SELECT 1 FROM pg_index
                   WHERE indexrelid = to_regclass('{schema}.' || name) AND NOT indisvalid) THEN
            EXECUTE 'DROP INDEX {schema}.' || quote_ident(name);
        END IF;
    END LOOP;
END
$$;

-- Job pages and counts by queue and state, and the distinct queue names.
CREATE INDEX IF NOT EXISTS jobs_queue_listing_idx
    ON {schema}.jobs (queue, state, id DESC) WHERE state <> 'executing';

-- Job pages filtered by kind.
CREATE INDEX IF NOT EXISTS jobs_kind_listing_idx
    ON {schema}.jobs (kind, id DESC) WHERE state <> 'executing';

-- Job pages filtered by tag. Most jobs have no tags: they never enter this GIN index (GIN
-- keeps an entry even for an empty array). `cardinality(tags) <> 0` rather than
-- `tags <> '{}'`: a query must repeat the predicate, and Postgres has no statistics on this
-- expression, so it leaves the row estimate of `tags @> ...` alone; `tags <> '{}'` has
-- statistics (the share of tagged jobs), multiplied in as if independent of the tag, and
-- the planner then took a common tag for a rare one (a bitmap over all its jobs, 30x slower).
CREATE INDEX IF NOT EXISTS jobs_tags_listing_idx
    ON {schema}.jobs USING gin (tags) WHERE cardinality(tags) <> 0 AND state <> 'executing';

-- Executing jobs by queue: the rows the three above leave out. Replaces jobs_executing_idx;
-- rescue reads every executing row whatever the key, the ack joins on the primary key.
CREATE INDEX IF NOT EXISTS jobs_executing_queue_idx
    ON {schema}.jobs (queue, id DESC) WHERE state = 'executing';

DROP INDEX IF EXISTS {schema}.jobs_queue_state_idx;
DROP INDEX IF EXISTS {schema}.jobs_kind_idx;
DROP INDEX IF EXISTS {schema}.jobs_tags_idx;
DROP INDEX IF EXISTS {schema}.jobs_executing_idx;

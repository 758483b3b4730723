-- 012: job pages filtered by tag read the newest tagged jobs of each (queue, state).
-- `{schema}` is replaced by the schema name.
--
-- 005's GIN index on tags answered "which jobs carry tag X", but a page wants the newest 50
-- of them in a queue and state, and the planner, not knowing that a tag lives in some queues
-- only, walked the whole (queue, state) range of a queue that never has it: 1.5 s at a
-- million jobs for `tag:vip state:completed`. A tag is now checked on the walk of the tagged
-- jobs of each (queue, state), in id order, on this btree; untagged jobs are not in it, so
-- the walk reads tagged jobs only (bounded as the other row-by-row checks, and said so on
-- the page). The GIN index is then unused and dropped: one index per tagged row version
-- either way, none for untagged jobs.
--
-- The planner must know how few jobs are tagged to prefer this index to the primary key
-- (`cardinality(tags) <> 0` has no statistics of its own): extended statistics on the
-- expression, PostgreSQL 14 and newer. Older servers answer the same, slower.
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 140000 THEN
        EXECUTE 'CREATE STATISTICS IF NOT EXISTS {schema}.jobs_tagged_stats ON (cardinality(tags)) FROM {schema}.jobs';
    END IF;
END
$$;

-- Built CONCURRENTLY after the migration's transaction, as 010's args index (see there):
-- a busy cluster's inserts and acks go on meanwhile; an interrupted build is rebuilt.
-- jobengine: after commit
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index
               WHERE indexrelid = to_regclass('{schema}.jobs_tagged_listing_idx') AND NOT indisvalid) THEN
        DROP INDEX {schema}.jobs_tagged_listing_idx;
    END IF;
END
$$;
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_tagged_listing_idx ON {schema}.jobs (queue, state, id DESC)
    WHERE cardinality(tags) <> 0 AND state <> 'executing';
DROP INDEX CONCURRENTLY IF EXISTS {schema}.jobs_tags_listing_idx;

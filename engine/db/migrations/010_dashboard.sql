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

-- The search part.
--
-- `args.PATH:VALUE` (SPEC section 12, engine/core/search.py) is a containment test,
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

-- 008: job definitions. `{schema}` is replaced by the schema name.
--
-- A definition is a saved, named job document with a trigger: `manual` (run by hand only),
-- `cron` (a schedule) or `once` (one instant). A cron entry IS a definition with a cron
-- trigger, so definitions extend 002's cron_entries rather than sit beside it: `[[cron]]`,
-- `jobengine cron ...` and the ticker's slot claim keep working on the same rows, and a
-- `once` definition reuses that claim (last_slot) to fire exactly once across nodes.
-- The view `definitions` is the name users query.

ALTER TABLE {schema}.cron_entries
    ADD COLUMN IF NOT EXISTS trigger_type text NOT NULL DEFAULT 'cron'
        CHECK (trigger_type IN ('manual', 'cron', 'once')),
    ADD COLUMN IF NOT EXISTS once_at        timestamptz,
    ADD COLUMN IF NOT EXISTS description    text   NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS tags           text[] NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS created_by     text,
    ADD COLUMN IF NOT EXISTS updated_by     text,
    -- Counters live here, not in a count(*) over jobs, so they survive pruning and read in
    -- O(1) at any number of jobs. runs_total moves when a job is inserted (same
    -- transaction); completed/failed when the pruner's tally pass counts a finished job.
    ADD COLUMN IF NOT EXISTS runs_total     bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS runs_completed bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS runs_failed    bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS runs_cancelled bigint NOT NULL DEFAULT 0,
    -- The newest job made by any path (slot, once, run now); its state is read live from
    -- jobs, and kept here by the tally for when the job is pruned.
    ADD COLUMN IF NOT EXISTS last_run_job_id bigint,
    ADD COLUMN IF NOT EXISTS last_run_at     timestamptz,
    ADD COLUMN IF NOT EXISTS last_run_state  text;

-- Manual and once definitions have no schedule.
ALTER TABLE {schema}.cron_entries ALTER COLUMN schedule DROP NOT NULL;

DO $$
BEGIN
    ALTER TABLE {schema}.cron_entries ADD CONSTRAINT cron_entries_trigger_fields CHECK (
        (trigger_type = 'cron') = (schedule IS NOT NULL) AND (trigger_type = 'once') = (once_at IS NOT NULL));
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE OR REPLACE VIEW {schema}.definitions AS
SELECT name, description, tags, enabled, trigger_type, schedule, timezone, overlap, catch_up, once_at, job,
       CASE source WHEN 'runtime' THEN 'api' ELSE source END AS source,
       runs_total, runs_completed, runs_failed, runs_cancelled, last_run_job_id, last_run_at, last_run_state,
       inserted_at AS created_at, created_by, updated_at, updated_by
FROM {schema}.cron_entries;

-- A definition's runs, newest first, by an index at any number of jobs: the jobs a
-- definition makes carry meta.definition. Ordinary jobs are outside both partial indexes,
-- so they write no entry into either. Both read the whole jobs table to build, so they are
-- built CONCURRENTLY after the migration's transaction (engine/db/migrate.py, AFTER_COMMIT;
-- see 007): inserts, claims and acks go on meanwhile. An invalid leftover of a build a crash
-- interrupted is dropped and built again by the next `jobengine migrate` (or start).
-- jobengine: after commit
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['jobs_definition_idx', 'jobs_definition_untallied_idx'] LOOP
        IF EXISTS (SELECT 1 FROM pg_index
                   WHERE indexrelid = to_regclass('{schema}.' || name) AND NOT indisvalid) THEN
            EXECUTE 'DROP INDEX {schema}.' || quote_ident(name);
        END IF;
    END LOOP;
END
$$;
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_definition_idx
    ON {schema}.jobs ((meta ->> 'definition'), id DESC) WHERE meta ? 'definition';
-- Finished definition jobs the tally has not counted yet (meta.untallied, removed when counted).
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_definition_untallied_idx
    ON {schema}.jobs (id) WHERE meta ? 'untallied' AND state IN ('completed', 'discarded', 'cancelled');

-- 002: cron entries, from the config ([[cron]]) and added at runtime (API/CLI).
-- `{schema}` is replaced by the configured schema name before this runs.

CREATE TABLE IF NOT EXISTS {schema}.cron_entries (
    name          text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
    schedule      text        NOT NULL,
    timezone      text        NOT NULL DEFAULT 'UTC',
    job           jsonb       NOT NULL,
    enabled       boolean     NOT NULL DEFAULT true,
    overlap       text        NOT NULL DEFAULT 'allow' CHECK (overlap IN ('allow', 'skip')),
    catch_up      double precision NOT NULL DEFAULT 0 CHECK (catch_up >= 0),
    source        text        NOT NULL DEFAULT 'runtime' CHECK (source IN ('config', 'runtime')),
    -- Fingerprint of the config definition last written; a start with an unchanged
    -- config leaves the row (and an operator's enable/disable) alone.
    config_hash   text,
    -- No slot at or before this instant fires: set when the entry is added, enabled or
    -- rescheduled, so none of those ever backfills.
    active_since  timestamptz NOT NULL DEFAULT now(),
    -- The newest slot inserted (or skipped). Only ever moves forward: the guard that makes
    -- every slot fire at most once across processes, restarts and clock steps.
    last_slot     timestamptz,
    -- The job inserted for last_slot (no foreign key: pruning may delete it).
    last_job_id   bigint,
    inserted_at   timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

"""Every SQL statement jobengine runs, named by table and action.

Statements are templates: ``{schema}`` is replaced by the quoted schema name once,
when :func:`render` builds a :class:`Statements` for an engine. Parameters are
positional (``$1``...); each statement's comment lists them.
"""

from __future__ import annotations

from collections.abc import Sequence


# Columns every job-returning statement yields, in Job.from_record's terms.
# jsonb columns come back as text so rows decode the same on any connection, including a
# caller's own (``enqueue(conn=...)``) that lacks jobengine's JSON codecs.
def _job_columns(alias: str = "") -> str:
    plain = ["id", "queue", "kind", "state", "priority", "attempt", "max_attempts", "timeout", "scheduled_at",
             "inserted_at", "attempted_at", "completed_at", "attempted_by", "tags", "unique_key"]
    # Empty args/meta/errors come back as NULL, which Job.from_record reads as {} / [] without
    # a json.loads: most jobs have empty meta and errors, and decoding them cost ~1 us each.
    json_columns = {"args": "'{}'", "meta": "'{}'", "errors": "'[]'", "result": None}
    prefix = f"{alias}." if alias else ""
    return ", ".join([f"{prefix}{c}" for c in plain] + [
        f"nullif({prefix}{c}, {empty})::text AS {c}" if empty else f"{prefix}{c}::text AS {c}"
        for c, empty in json_columns.items()])


JOB_COLUMNS = _job_columns()

# --- migrations -------------------------------------------------------------

# Serialises migrations across processes starting together. $1: lock key (text).
MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(hashtext($1))"

MIGRATION_TABLE_CREATE = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.migrations (
    version    int PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""

# Versions already applied.
MIGRATION_LIST_APPLIED = "SELECT version FROM {schema}.migrations ORDER BY version"

# Record one applied migration. $1: version, $2: name.
MIGRATION_RECORD = "INSERT INTO {schema}.migrations (version, name) VALUES ($1, $2)"

# --- jobs: insert ---------------------------------------------------------------

# Insert a batch in one round trip and wake producers of the affected queues.
# $1..$12: one array per column, an element per row (queue, kind, args, meta, priority,
# max_attempts, timeout, scheduled_at, delay, tags, unique_key, unique_states; args, meta,
# tags and unique_states as JSON text, encoded once by the caller); $13: notify channel.
# Arrays travel in asyncpg's binary format: no JSON document of the whole batch to build
# in Python and parse again in Postgres.
# A row whose unique key is held by a job in one of its unique states is skipped
# (ON CONFLICT against the partial unique index); the caller looks the holder up.
# JOB_INSERT_MANY_PLAIN is the same statement without ON CONFLICT, for batches without a
# unique key (the common case): a speculative insertion costs each row a second heap
# write and WAL record even when no row can conflict (~11 % of the insert's time).
# The NOTIFY sits in a CTE referenced by the final SELECT so it runs once per queue,
# and Postgres folds identical notifications of one transaction, so a bulk insert
# wakes each listener once, at commit.
_JOB_INSERT_MANY = """
WITH input AS (
    SELECT r.*, coalesce(r.scheduled_at::timestamptz, now() + make_interval(secs => coalesce(r.delay, 0))) AS due_at
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::float8[],
                $8::text[], $9::float8[], $10::text[], $11::text[], $12::text[])
         WITH ORDINALITY AS r(queue, kind, args, meta, priority, max_attempts, timeout,
                              scheduled_at, delay, tags, unique_key, unique_states, ord)
), inserted AS (
    INSERT INTO {schema}.jobs AS j (queue, kind, args, meta, state, priority, max_attempts, timeout,
                                    scheduled_at, tags, unique_key, unique_states)
    SELECT queue, kind, args::jsonb, meta::jsonb,
           CASE WHEN due_at > now() THEN 'scheduled' ELSE 'available' END,
           priority, max_attempts, timeout, due_at,
           CASE WHEN tags IS NULL THEN '{{}}'::text[] ELSE ARRAY(SELECT jsonb_array_elements_text(tags::jsonb)) END,
           unique_key,
           CASE WHEN unique_states IS NOT NULL THEN ARRAY(SELECT jsonb_array_elements_text(unique_states::jsonb)) END
    FROM input ORDER BY ord
    <on conflict>
    RETURNING j.id, j.queue, j.state, j.scheduled_at, j.inserted_at, j.unique_key
), notified AS (
    SELECT count(pg_notify($13, queue)) AS n FROM (SELECT DISTINCT queue FROM inserted) AS q
)
-- Only what Postgres decided: the caller builds each Job from its own row (decoding the
-- args/meta it just sent back out of every row cost more than the insert itself).
SELECT id, state, scheduled_at, inserted_at, unique_key FROM inserted, notified ORDER BY id
"""
JOB_INSERT_MANY = _JOB_INSERT_MANY.replace(
    "<on conflict>", "ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state = ANY (unique_states) DO NOTHING")
JOB_INSERT_MANY_PLAIN = _JOB_INSERT_MANY.replace("    <on conflict>\n", "")

# The jobs holding unique keys that an insert skipped. $1: text[] of keys.
JOB_GET_BY_UNIQUE_KEYS = """
SELECT DISTINCT ON (unique_key) """ + JOB_COLUMNS + """
FROM {schema}.jobs WHERE unique_key = ANY ($1::text[])
ORDER BY unique_key, (state = ANY (unique_states)) DESC, id DESC
"""

# --- jobs: claim and finish -----------------------------------------------------

# Claim up to $2 available jobs of queue $1 for node $3, highest priority first.
# The CTE is the optimisation fence that keeps LIMIT + SKIP LOCKED on the small
# partial index jobs_fetch_idx; the outer UPDATE only touches the claimed rows.
_JOB_FETCH_AVAILABLE = """
WITH picked AS (
    SELECT id FROM {schema}.jobs
    WHERE state = 'available' AND queue = $1<not running here>
    ORDER BY priority DESC, scheduled_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.jobs AS j
SET state = 'executing', attempt = j.attempt + 1, attempted_at = now(), attempted_by = $3
FROM picked WHERE j.id = picked.id
RETURNING """ + _job_columns("j")
JOB_FETCH_AVAILABLE = _JOB_FETCH_AVAILABLE.replace("<not running here>", "")

# Every final transition of an attempt, batched. Fenced: a row changes only while it
# is still executing the very claim this ack belongs to (same attempt and claim time),
# so an ack arriving after a rescue, a cancel or a re-claim changes nothing.
# $1 id[], $2 attempt[], $3 attempted_at[], $4 new state[], $5 result jsonb[],
# $6 delay seconds[] (next scheduled_at), $7 refund[] (1: attempt not spent), $8 error jsonb[].
JOB_SET_STATE_IF_EXECUTING = """
UPDATE {schema}.jobs AS j
SET state        = x.state,
    result       = CASE WHEN x.state = 'completed' THEN x.result ELSE j.result END,
    completed_at = CASE WHEN x.state = 'completed' THEN now() END,
    cancelled_at = CASE WHEN x.state = 'cancelled' THEN now() END,
    discarded_at = CASE WHEN x.state = 'discarded' THEN now() END,
    scheduled_at = CASE WHEN x.delay IS NULL THEN j.scheduled_at
                        ELSE now() + make_interval(secs => x.delay) END,
    attempt      = j.attempt - x.refund,
    errors       = CASE WHEN x.error IS NULL THEN j.errors ELSE j.errors || jsonb_build_array(x.error) END
FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::text[], $5::jsonb[],
            $6::float8[], $7::int[], $8::jsonb[])
     AS x(id, attempt, attempted_at, state, result, delay, refund, error)
-- `(SELECT 'executing')`: a sub-select, so the planner cannot match jobs_executing_queue_idx's
-- predicate and always joins on the primary key (a batch of N acks costs N index probes).
-- Otherwise, whenever statistics show few executing rows, it hashes every entry of that
-- index: all executing jobs of every node, plus the dead entries piling up until vacuum.
WHERE j.id = x.id AND j.state = (SELECT 'executing') AND j.attempt = x.attempt
  AND j.attempted_at = x.attempted_at
RETURNING j.id, j.meta ? 'has_dependents' AS has_dependents  -- flow control: settle jobs waiting for it
"""

# The common case of JOB_SET_STATE_IF_EXECUTING: every ack of the batch a plain completion.
# Half the arrays to encode and decode, no CASE per column. Same fence, same RETURNING.
# $1 id[], $2 attempt[], $3 attempted_at[], $4 result (jsonb)[].
JOB_COMPLETE_IF_EXECUTING = """
UPDATE {schema}.jobs AS j
SET state = 'completed', result = x.result, completed_at = now(), cancelled_at = NULL, discarded_at = NULL
FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::jsonb[]) AS x(id, attempt, attempted_at, result)
WHERE j.id = x.id AND j.state = (SELECT 'executing') AND j.attempt = x.attempt
  AND j.attempted_at = x.attempted_at
RETURNING j.id, j.meta ? 'has_dependents' AS has_dependents
"""

# Put this node's unfinished jobs back after a shutdown cancelled them, without
# spending the attempt. $1 id[], $2 node name, $3 channel to wake producers.
JOB_RELEASE_EXECUTING = """
WITH released AS (
    UPDATE {schema}.jobs
    SET state = 'available', attempt = greatest(attempt - 1, 0), scheduled_at = now()
    WHERE id = ANY ($1::bigint[]) AND state = 'executing' AND attempted_by = $2
    RETURNING id, queue
)
SELECT id, (SELECT count(pg_notify($3, q.queue)) FROM (SELECT DISTINCT queue FROM released) q) AS n
FROM released
"""

# Return the jobs this node stopped because its lease was in doubt (Ack.lease_lost), fenced
# as every ack: available at once, the attempt refunded, and the stop counted in `rescued` as
# a rescue is. A job stopped so once more than $5 times (max_rescues) is discarded instead,
# its attempt spent: a handler that blocks the event loop makes its own node lose the lease
# on every run, and going back unspent it would run for ever. The verdict is computed once,
# in `lost`, so state and message agree. Rare (only after a stall or an outage), so it stays
# out of JOB_SET_STATE_IF_EXECUTING. $1 id[], $2 attempt[], $3 attempted_at[], $4 error jsonb[]
# (returned), $6 error jsonb[] (discarded), $7 channel to wake the queues that got jobs back.
JOB_RETURN_LEASE_LOST = """
WITH lost AS (
    SELECT j.id, j.rescued + 1 > $5::int AS poison, x.returned, x.discarded
    FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::jsonb[], $6::jsonb[])
         AS x(id, attempt, attempted_at, returned, discarded)
    -- (SELECT 'executing'): joined on the primary key, as in JOB_SET_STATE_IF_EXECUTING.
    JOIN {schema}.jobs AS j ON j.id = x.id AND j.state = (SELECT 'executing') AND j.attempt = x.attempt
                            AND j.attempted_at = x.attempted_at
    FOR UPDATE OF j
), returned AS (
    UPDATE {schema}.jobs AS j
    SET rescued = j.rescued + 1,
        state = CASE WHEN l.poison THEN 'discarded' ELSE 'available' END,
        discarded_at = CASE WHEN l.poison THEN now() END,
        attempt = CASE WHEN l.poison THEN j.attempt ELSE greatest(j.attempt - 1, 0) END,
        scheduled_at = now(),
        errors = j.errors || jsonb_build_array(CASE WHEN l.poison THEN l.discarded ELSE l.returned END)
    FROM lost AS l WHERE j.id = l.id
    RETURNING """ + _job_columns("j") + """, j.meta ? 'has_dependents' AS has_dependents
)
SELECT r.*, (SELECT count(pg_notify($7, q.queue))
             FROM (SELECT DISTINCT queue FROM returned WHERE state = 'available') AS q) AS notified
FROM returned AS r ORDER BY r.id
"""

# --- jobs: scheduling and housekeeping ------------------------------------------

# Make due scheduled/retryable jobs available and wake their queues.
# $1: batch size, $2: notify channel. Returns one row per queue touched.
JOB_STAGE_DUE = """
WITH due AS (
    SELECT id FROM {schema}.jobs
    WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= now()
    ORDER BY scheduled_at LIMIT $1
    FOR UPDATE SKIP LOCKED
), staged AS (
    UPDATE {schema}.jobs AS j SET state = 'available' FROM due WHERE j.id = due.id RETURNING j.queue
)
SELECT queue, count(*) AS staged, pg_notify($2, queue) FROM staged GROUP BY queue
"""

# Make every scheduled/retryable job of queue $1 due now (engine.testing.drain only).
JOB_MAKE_DUE = """
UPDATE {schema}.jobs SET scheduled_at = now()
WHERE state IN ('scheduled', 'retryable') AND queue = $1 AND scheduled_at > now()
"""

# Seconds until the next scheduled/retryable job is due (NULL when none).
JOB_NEXT_DUE_IN = """
SELECT extract(epoch FROM min(scheduled_at) - now())::float8 AS due_in
FROM {schema}.jobs WHERE state IN ('scheduled', 'retryable')
"""

# Return executing jobs of nodes whose heartbeat is older than $1 seconds to be retried at
# once, recording the rescue on the job (an error entry and the `rescued` counter). Also
# the jobs held under this node's own name $4 that it does not know about: not in $5 (the
# ids it runs or still has to ack) and claimed more than $6 seconds ago. Those belong to an
# earlier process with the same name (at start-up, $5 empty and $6 0), or to a claim whose
# answer was lost on the way (a connection dropped after the commit); $6 outlasts any claim
# still on its way. A job orphaned again after $2 rescues (a poison pill that kills its
# process) or out of attempts is discarded, with a reason that says so. $3: the channel to
# wake producers of the queues that got jobs back. The verdict is computed once, in
# `orphaned`, so state and message agree.
JOB_RESCUE_ORPHANED = """
WITH orphaned AS (
    SELECT j.id, coalesce(j.attempted_by = $4::text, false) AS own,
           j.rescued + 1 > $2::int AS poison, j.attempt >= j.max_attempts AS spent
    FROM {schema}.jobs AS j
    WHERE j.state = 'executing'
      AND (NOT EXISTS (SELECT 1 FROM {schema}.nodes AS n
                       WHERE n.name = j.attempted_by AND n.heartbeat_at > now() - make_interval(secs => $1))
           OR (j.attempted_by = $4::text AND j.id <> ALL ($5::bigint[])
               AND j.attempted_at < now() - make_interval(secs => $6)))
    FOR UPDATE OF j SKIP LOCKED
), rescued AS (
    UPDATE {schema}.jobs AS j
    SET rescued = j.rescued + 1,
        state = CASE WHEN o.poison OR o.spent THEN 'discarded' ELSE 'available' END,
        discarded_at = CASE WHEN o.poison OR o.spent THEN now() END,
        scheduled_at = now(),
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt, 'at', now(), 'kind', 'rescued',
            'error', CASE WHEN o.poison
                          THEN format('discarded: orphaned again after %s rescues (max_rescues); '
                                      'the job may be killing its process', j.rescued)
                          WHEN o.spent THEN format('discarded: out of attempts (%s of %s)', j.attempt, j.max_attempts)
                          ELSE 'rescued: returned to be retried' END
                     || format(CASE WHEN o.own THEN '; node %s did not know it held the job (it restarted, '
                                                    'or the answer to its claim was lost)'
                                    ELSE '; node %s stopped heartbeating while the job was executing' END,
                               j.attempted_by)))
    FROM orphaned AS o WHERE j.id = o.id
    RETURNING """ + _job_columns("j") + """, j.rescued
)
SELECT r.*, (SELECT count(pg_notify($3, q.queue))
             FROM (SELECT DISTINCT queue FROM rescued WHERE state = 'available') AS q) AS notified
FROM rescued AS r ORDER BY r.id
"""

# Delete up to $4 finished jobs older than their retention: $1 completed, $2 cancelled,
# $3 discarded (seconds). Bounded so one prune never holds long locks. One branch per
# state, each on jobs_finished_idx's expression and in its order, so every branch is an
# index range scan over the expired rows only (an OR of the three made Postgres scan the
# whole table to find none); a branch runs only as far as the LIMIT still needs rows.
# `= ANY (ARRAY(...))` deletes by primary key, whatever the planner guesses of the count.
JOB_PRUNE_FINISHED = """
WITH completed AS (
    SELECT id FROM {schema}.jobs
    WHERE state = 'completed'
      AND coalesce(completed_at, cancelled_at, discarded_at) < now() - make_interval(secs => $1)
    ORDER BY coalesce(completed_at, cancelled_at, discarded_at) LIMIT $4 FOR UPDATE SKIP LOCKED
), cancelled AS (
    SELECT id FROM {schema}.jobs
    WHERE state = 'cancelled'
      AND coalesce(completed_at, cancelled_at, discarded_at) < now() - make_interval(secs => $2)
    ORDER BY coalesce(completed_at, cancelled_at, discarded_at) LIMIT $4 FOR UPDATE SKIP LOCKED
), discarded AS (
    SELECT id FROM {schema}.jobs
    WHERE state = 'discarded'
      AND coalesce(completed_at, cancelled_at, discarded_at) < now() - make_interval(secs => $3)
    ORDER BY coalesce(completed_at, cancelled_at, discarded_at) LIMIT $4 FOR UPDATE SKIP LOCKED
), old AS (
    SELECT id FROM completed UNION ALL SELECT id FROM cancelled UNION ALL SELECT id FROM discarded LIMIT $4
)
DELETE FROM {schema}.jobs WHERE id = ANY (ARRAY(SELECT id FROM old))
"""

# --- jobs: operator actions -----------------------------------------------------

# One job by id, with every column the detail page shows. $1: id.
JOB_GET = "SELECT " + JOB_COLUMNS + ", cancelled_at, discarded_at, rescued FROM {schema}.jobs WHERE id = $1"

# Cancel a job that has not finished. $1 id, $2 reason. Returns the state it had.
JOB_CANCEL = """
WITH target AS (
    SELECT id, state AS previous FROM {schema}.jobs
    WHERE id = $1 AND state NOT IN ('completed', 'discarded', 'cancelled') FOR UPDATE
)
UPDATE {schema}.jobs AS j
SET state = 'cancelled', cancelled_at = now(),
    -- reliability: an executing job's handler runs on until its node stops it (see 007)
    stopping_since = CASE WHEN target.previous = 'executing' THEN now() END,
    errors = j.errors || jsonb_build_array(jsonb_build_object('attempt', j.attempt, 'at', now(),
                                                              'kind', 'cancelled', 'error', $2::text))
FROM target WHERE j.id = target.id
RETURNING j.id, target.previous, j.attempted_by
"""

# Run a job again now: any state but executing. Grants one more attempt when spent.
# $1 id, $2 notify channel.
JOB_RETRY = """
WITH retried AS (
    UPDATE {schema}.jobs
    SET state = 'available', scheduled_at = now(), completed_at = NULL, cancelled_at = NULL,
        discarded_at = NULL, max_attempts = greatest(max_attempts, attempt + 1)
    WHERE id = $1 AND state <> 'executing' AND stopping_since IS NULL
    RETURNING id, queue
)
SELECT id, pg_notify($2, queue) FROM retried
"""

# Delete a job that is not executing. $1 id.
JOB_DELETE = """
DELETE FROM {schema}.jobs WHERE id = $1 AND state <> 'executing' AND stopping_since IS NULL RETURNING id
"""

# Counts per queue and state (the queue_stats view).
QUEUE_STATS = "SELECT queue, state, count FROM {schema}.queue_stats ORDER BY queue, state"

# --- queues: operator controls --------------------------------------------------

# Pause or resume a queue for every node. $1 name, $2 paused.
QUEUE_SET_PAUSED = """
INSERT INTO {schema}.queues (name, paused) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = now()
"""

# Set a queue's per-node concurrency for every node. $1 name, $2 concurrency.
QUEUE_SET_CONCURRENCY = """
INSERT INTO {schema}.queues (name, concurrency) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency, updated_at = now()
"""

# Every queue's controls.
QUEUE_LIST_CONTROLS = "SELECT name, paused, concurrency FROM {schema}.queues"

# --- nodes ------------------------------------------------------------------------

# Register or heartbeat this node. $1 name, $2 queues, $3 meta (with this process's
# `instance` id), $4 seconds after which a silent holder of the name may be replaced.
# Returns no row when another live process (another instance, heartbeating within $4
# seconds) holds the name: the row is left to it.
NODE_HEARTBEAT = """
INSERT INTO {schema}.nodes AS n (name, queues, meta) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE SET heartbeat_at = now(), queues = excluded.queues, meta = excluded.meta
    WHERE n.meta ->> 'instance' IS NULL OR excluded.meta ->> 'instance' IS NULL
       OR n.meta ->> 'instance' = excluded.meta ->> 'instance'
       OR n.heartbeat_at < now() - make_interval(secs => $4)
RETURNING 1
"""

# Forget this node on clean shutdown, keeping it among the departed nodes (migration 010)
# as stopped. $1 name.
NODE_DELETE = """
WITH gone AS (DELETE FROM {schema}.nodes WHERE name = $1 RETURNING *)
INSERT INTO {schema}.departed_nodes AS d (name, queues, meta, started_at, heartbeat_at, reason)
SELECT name, queues, meta, started_at, heartbeat_at, 'stopped' FROM gone
ON CONFLICT (name) DO UPDATE SET queues = excluded.queues, meta = excluded.meta, started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at, departed_at = now(), reason = 'stopped', rescued = 0, rescued_ids = '{{}}'
"""

# Forget nodes silent for more than $1 seconds (their jobs were rescued already), keeping
# them among the departed nodes as lost (the rescue may have counted their jobs there).
NODE_DELETE_STALE = """
WITH gone AS (DELETE FROM {schema}.nodes WHERE heartbeat_at < now() - make_interval(secs => $1) RETURNING *)
INSERT INTO {schema}.departed_nodes AS d (name, queues, meta, started_at, heartbeat_at, reason)
SELECT name, queues, meta, started_at, heartbeat_at, 'lost' FROM gone
ON CONFLICT (name) DO UPDATE SET queues = excluded.queues, meta = excluded.meta, started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at, reason = 'lost'
"""

# Live nodes.
NODE_LIST = "SELECT name, queues, started_at, heartbeat_at, meta FROM {schema}.nodes ORDER BY name"

# --- cron -------------------------------------------------------------------------
# Times ($n "now") come from the caller's clock, so tests of cron never wait. jsonb goes in
# and out as text, like the job statements, so any connection's codecs do.

# Write the config's [[cron]] entries. $1 jsonb array of (name, schedule, timezone, job,
# enabled, overlap, catch_up, config_hash), $2 now. A row whose config_hash is unchanged
# is left alone, so an operator's enable/disable survives restarts until the file changes.
# active_since moves only when the entry's firing times change (schedule, zone, enabling).
CRON_UPSERT_CONFIG = """
INSERT INTO {schema}.cron_entries AS c (name, schedule, timezone, job, enabled, overlap, catch_up,
                                        source, config_hash, active_since, inserted_at, updated_at)
SELECT r.name, r.schedule, r.timezone, r.job, r.enabled, r.overlap, r.catch_up,
       'config', r.config_hash, $2, $2, $2
FROM jsonb_to_recordset($1::text::jsonb) AS r(name text, schedule text, timezone text, job jsonb, enabled boolean,
                                       overlap text, catch_up double precision, config_hash text)
ORDER BY r.name
ON CONFLICT (name) DO UPDATE
SET schedule = excluded.schedule, timezone = excluded.timezone, job = excluded.job,
    enabled = excluded.enabled, overlap = excluded.overlap, catch_up = excluded.catch_up,
    source = 'config', config_hash = excluded.config_hash, updated_at = excluded.updated_at,
    trigger_type = 'cron', once_at = NULL,  -- the config's [[cron]] takes over a definition of its name
    active_since = CASE WHEN (c.schedule, c.timezone, c.enabled)
                             IS DISTINCT FROM (excluded.schedule, excluded.timezone, excluded.enabled)
                        THEN excluded.active_since ELSE c.active_since END
WHERE c.config_hash IS DISTINCT FROM excluded.config_hash
RETURNING c.name
"""

# Add a runtime entry; nothing when the name is taken. $1 name, $2 schedule, $3 timezone,
# $4 job, $5 enabled, $6 overlap, $7 catch_up, $8 now.
CRON_INSERT = """
INSERT INTO {schema}.cron_entries (name, schedule, timezone, job, enabled, overlap, catch_up,
                                   source, active_since, inserted_at, updated_at)
VALUES ($1, $2, $3, $4::text::jsonb, $5, $6, $7, 'runtime', $8, $8, $8)
ON CONFLICT (name) DO NOTHING
RETURNING name
"""

# Replace an entry's definition. $1 name, $2 schedule, $3 timezone, $4 job, $5 overlap,
# $6 catch_up, $7 now. A new schedule or zone restarts active_since: no backfill under it.
CRON_UPDATE = """
UPDATE {schema}.cron_entries AS c
SET schedule = $2, timezone = $3, job = $4::text::jsonb, overlap = $5, catch_up = $6, updated_at = $7,
    active_since = CASE WHEN (c.schedule, c.timezone) IS DISTINCT FROM ($2::text, $3::text)
                        THEN $7 ELSE c.active_since END
WHERE c.name = $1
RETURNING c.name
"""

# Enable or disable. $1 name, $2 enabled, $3 now. Enabling restarts active_since, so the
# slots that passed while disabled are never caught up.
CRON_SET_ENABLED = """
UPDATE {schema}.cron_entries AS c
SET enabled = $2, updated_at = $3,
    active_since = CASE WHEN $2 AND NOT c.enabled THEN $3 ELSE c.active_since END
WHERE c.name = $1
RETURNING c.name
"""

# Remove an entry. $1 name.
CRON_DELETE = "DELETE FROM {schema}.cron_entries WHERE name = $1 RETURNING name"

# Every cron-triggered definition with its last job's state (NULL once pruned); $1 true:
# enabled ones only. Manual and once definitions share the table (migration 008).
CRON_LIST = """
SELECT c.name, c.schedule, c.timezone, c.job::text AS job, c.enabled, c.overlap, c.catch_up, c.source,
       c.active_since, c.last_slot, c.last_job_id, c.updated_at, j.state AS last_job_state
FROM {schema}.cron_entries AS c LEFT JOIN {schema}.jobs AS j ON j.id = c.last_job_id
WHERE (c.enabled OR NOT $1) AND c.trigger_type = 'cron'
ORDER BY c.name
"""

# Claim slot $2 of entry $1 as loaded with schedule $3 in zone $4. The row lock makes a
# second ticker's claim wait; it then re-checks `last_slot < $2` on the committed row and
# matches nothing, so a slot is claimed once ever, whatever the clocks do. Returns the
# job document, and whether overlap 'skip' applies (the last job still unfinished).
CRON_CLAIM_SLOT = """
UPDATE {schema}.cron_entries AS c
SET last_slot = $2
WHERE c.name = $1 AND c.enabled AND c.schedule = $3 AND c.timezone = $4
  AND c.active_since < $2 AND (c.last_slot IS NULL OR c.last_slot < $2)
RETURNING c.job::text AS job, c.overlap = 'skip' AND EXISTS (
    SELECT 1 FROM {schema}.jobs AS j
    WHERE j.id = c.last_job_id AND j.state IN ('scheduled', 'available', 'executing', 'retryable')
) AS still_running
"""

# Record the job inserted for the claimed slot, and count it as one of the definition's
# runs (DEFINITION_RECORD_RUN). $1 name, $2 job id.
CRON_SET_LAST_JOB = """
UPDATE {schema}.cron_entries
SET last_job_id = $2, runs_total = runs_total + 1, last_run_job_id = $2, last_run_at = now()
WHERE name = $1
"""

# --- dashboard ----------------------------------------------------------------------
# What the dashboard, the HTTP API and /metrics read. Each stays cheap with millions of
# rows: counts are capped, lists page by id on an index, time windows use jobs_finished_idx.

# The operator indexes leave executing jobs out (migration 005: a claim writes none of them),
# so a query reads them only when its WHERE clause implies `state <> 'executing'`: a literal
# state other than 'executing' does, a parameter or a joined value does not. Executing jobs
# are read from jobs_executing_queue_idx (queue, id DESC) instead.
DASHBOARD_STATES = ("scheduled", "available", "executing", "retryable", "completed", "discarded", "cancelled")


def _queue_loose_scan(name: str, state_term: str) -> str:
    """A recursive CTE ``name``: the distinct queues of the rows matching ``state_term``,
    one index probe per queue, where SELECT DISTINCT would read every row."""
    return f"""{name} AS (
    (SELECT j.queue FROM {{schema}}.jobs AS j WHERE {state_term} ORDER BY j.queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM {{schema}}.jobs AS j
            WHERE {state_term} AND j.queue > {name}.queue ORDER BY j.queue LIMIT 1)
    FROM {name} WHERE {name}.queue IS NOT NULL
)"""


# Distinct queue names with at least one job: loose index scans over jobs_queue_listing_idx
# and jobs_executing_queue_idx (so a queue whose only jobs are running still shows).
DASHBOARD_QUEUE_NAMES = f"""
WITH RECURSIVE {_queue_loose_scan("resting", "j.state <> 'executing'")},
{_queue_loose_scan("running", "j.state = 'executing'")}
SELECT queue FROM resting WHERE queue IS NOT NULL
UNION
SELECT queue FROM running WHERE queue IS NOT NULL
ORDER BY queue
"""

# Jobs per queue and state, each count stopping at $2: $1 text[] queues. One short index
# range per pair, on jobs_queue_listing_idx or (executing) jobs_executing_queue_idx: each
# state is a literal, so the planner can match the partial indexes. The ORDER BY is those
# indexes' order: free on them, a sort on anything else, so the planner never picks a
# sequential scan hoping to meet $2 matching rows early (a bet on where they lie in the
# table: a young queue's jobs are all at its end). A pair at the cap is then estimated.
DASHBOARD_QUEUE_COUNTS = """
SELECT q.queue, c.state, c.n AS count
FROM unnest($1::text[]) AS q(queue)
CROSS JOIN LATERAL (VALUES
    """ + ",\n    ".join(
    f"('{state}', (SELECT count(*) FROM (SELECT 1 FROM {{schema}}.jobs AS j WHERE j.queue = q.queue "
    f"AND j.state = '{state}' ORDER BY j.id DESC LIMIT $2) AS capped))"
    for state in DASHBOARD_STATES) + """
) AS c(state, n)
"""

# The planner's row estimate for one queue and state ($1, $2): accurate thanks to the
# jobs_queue_state_stats statistic (004), free of any scan.
DASHBOARD_ESTIMATE_COUNT = "EXPLAIN (FORMAT JSON) SELECT 1 FROM {schema}.jobs WHERE queue = $1 AND state = $2"

# Seconds the oldest available job of queue $1 has waited since it became due. A loose
# scan over the priorities in jobs_fetch_idx: the first row of each priority is its
# oldest, so this reads one index entry per distinct priority, not every waiting row.
DASHBOARD_OLDEST_AVAILABLE = """
WITH RECURSIVE firsts AS (
    (SELECT priority, scheduled_at FROM {schema}.jobs
     WHERE state = 'available' AND queue = $1 ORDER BY priority DESC, scheduled_at, id LIMIT 1)
    UNION ALL
    SELECT nxt.priority, nxt.scheduled_at FROM firsts CROSS JOIN LATERAL (
        SELECT j.priority, j.scheduled_at FROM {schema}.jobs AS j
        WHERE j.state = 'available' AND j.queue = $1 AND j.priority < firsts.priority
        ORDER BY j.priority DESC, j.scheduled_at, j.id LIMIT 1) AS nxt
)
SELECT extract(epoch FROM now() - min(scheduled_at))::float8 FROM firsts
"""

# Completed and failed (discarded) jobs per minute over the last $1 minutes, for queue $2
# (NULL: all): the minutes before $3 (ROLLUP_MARK, read just before) from
# job_rollup, the rest from the jobs themselves (jobs_finished_idx's expression: an index
# range over the last minute or two). Reading an hour of jobs instead cost 145 ms at 10M jobs
# (20 jobs/s); the planner sees $3 as a value (run with force_custom_plan), so it can estimate
# the range from migration 012's statistics on the expression.
DASHBOARD_THROUGHPUT = """
WITH since AS (
    SELECT date_trunc('minute', now()) - make_interval(mins => $1 - 1) AS since
), rolled AS (
    SELECT r.minute, sum(r.completed)::bigint AS completed, sum(r.discarded)::bigint AS failed
    FROM {schema}.job_rollup AS r, since
    WHERE r.minute >= since.since AND r.minute < $3::timestamptz AND ($2::text IS NULL OR r.queue = $2)
    GROUP BY r.minute
), fresh AS (
    SELECT date_trunc('minute', coalesce(completed_at, cancelled_at, discarded_at)) AS minute,
           count(*) FILTER (WHERE state = 'completed')::bigint AS completed,
           count(*) FILTER (WHERE state = 'discarded')::bigint AS failed
    FROM {schema}.jobs
    WHERE state IN ('completed', 'discarded')
      AND coalesce(completed_at, cancelled_at, discarded_at)
          >= greatest(date_trunc('minute', now()) - make_interval(mins => $1 - 1), $3::timestamptz)
      AND ($2::text IS NULL OR queue = $2)
    GROUP BY 1
)
SELECT minute, completed, failed FROM rolled UNION ALL SELECT minute, completed, failed FROM fresh ORDER BY minute
"""

# The jobs a job enqueued (onSuccess, onFailure, failure notifications). $1 parent id as
# text; the `meta ? 'parent_id'` term lets the planner use the partial jobs_parent_idx.
DASHBOARD_JOB_CHILDREN = """
SELECT id, kind, queue, state FROM {schema}.jobs
WHERE meta ? 'parent_id' AND meta ->> 'parent_id' = $1::text ORDER BY id LIMIT 100
"""

# Run selected jobs again now (any state but executing). $1 id[], $2 notify channel.
DASHBOARD_JOB_RETRY_MANY = """
WITH retried AS (
    UPDATE {schema}.jobs
    SET state = 'available', scheduled_at = now(), completed_at = NULL, cancelled_at = NULL,
        discarded_at = NULL, max_attempts = greatest(max_attempts, attempt + 1)
    WHERE id = ANY ($1::bigint[]) AND state <> 'executing' AND stopping_since IS NULL
    RETURNING id, queue
)
SELECT id, (SELECT count(pg_notify($2, q.queue)) FROM (SELECT DISTINCT queue FROM retried) q) AS n FROM retried
"""

# Make selected scheduled or retryable jobs due now (attempts untouched). $1 id[], $2 channel.
DASHBOARD_JOB_RUN_NOW_MANY = """
WITH due AS (
    UPDATE {schema}.jobs SET state = 'available', scheduled_at = now()
    WHERE id = ANY ($1::bigint[]) AND state IN ('scheduled', 'retryable')
    RETURNING id, queue
)
SELECT id, (SELECT count(pg_notify($2, q.queue)) FROM (SELECT DISTINCT queue FROM due) q) AS n FROM due
"""

# Cancel selected jobs that are waiting (executing ones go through Engine.cancel, which
# also stops the running task). $1 id[], $2 reason.
DASHBOARD_JOB_CANCEL_WAITING_MANY = """
UPDATE {schema}.jobs AS j
SET state = 'cancelled', cancelled_at = now(),
    errors = j.errors || jsonb_build_array(jsonb_build_object('attempt', j.attempt, 'at', now(),
                                                              'kind', 'cancelled', 'error', $2::text))
WHERE j.id = ANY ($1::bigint[]) AND j.state IN ('scheduled', 'available', 'retryable')
RETURNING j.id
"""

# Delete selected jobs that are not executing. $1 id[].
DASHBOARD_JOB_DELETE_MANY = """
DELETE FROM {schema}.jobs WHERE id = ANY ($1::bigint[]) AND state <> 'executing' AND stopping_since IS NULL
RETURNING id
"""

# Job pages: filters combine freely, so the statement is assembled here from fixed
# fragments (values are always parameters). With a queue or state filter the page is a
# merge of one branch per (queue, state) pair, each an index range on jobs_queue_listing_idx
# (or jobs_executing_queue_idx) already in id order: a rare state among a million rows
# costs what that state holds. Without one, it merges a branch of the jobs at rest
# (`state <> 'executing'`: jobs_kind_listing_idx or the primary key) and one of the
# executing jobs (their small index). A tag filter always takes the per-pair form: the tag
# is checked on each pair's tagged jobs (jobs_tagged_listing_idx, migration 012). Run it with plan_cache_mode =
# force_custom_plan: a generic plan cannot tell a rare state from a common one, would
# walk the primary key backwards through the table, and could not match the partial
# indexes against a parameter state. A tag filter repeats jobs_tagged_listing_idx's
# `cardinality(tags) <> 0` (migration 005 says why not `tags <> '{}'`).
DASHBOARD_JOB_FILTERS = {
    "id": "j.id = ${n}::bigint",
    "kind": "j.kind = ${n}::text",
    "before": "j.id < ${n}::bigint",
    "after": "j.id > ${n}::bigint",
    # args.PATH:VALUE (engine/core/search.py): containment, which jobs_args_idx (migration
    # 010, jsonb_path_ops) answers; "args_either" also matches the value written as a string.
    "args": "j.args @> ${n}::jsonb",
    "args_either": "(j.args @> ${n}::jsonb OR j.args @> ${m}::jsonb)",
}
# Terms no index answers, checked row by row on the newest DASHBOARD_SEARCH_SCAN_LIMIT rows
# that match the indexed terms. "words" and "error" take an ILIKE pattern (already escaped).
DASHBOARD_JOB_SCANNED = {
    "words": "j.args::text ILIKE ${n}::text",
    "error": "j.errors::text ILIKE ${n}::text",
    "node": "j.attempted_by = ${n}::text",
    "definition": "j.meta ? 'definition' AND j.meta ->> 'definition' = ${n}::text",  # jobs_definition_idx
    # A tag is checked on the newest tagged jobs of each (queue, state): the walk reads
    # jobs_tagged_listing_idx (migration 012), so untagged jobs cost nothing. An index on
    # the tag itself answered a rare tag well but left the planner walking a whole queue's
    # range for a tag that queue never has (1.5 s at 1M jobs); see _TAGGED_WALK.
    "tag": "j.tags @> ARRAY[${n}::text]",
}
# Added to the walk when a tag is checked; the partial index's predicate, repeated.
_TAGGED_WALK = "cardinality(j.tags) <> 0"
# A scanned search reads at most this many newest rows matching the other filters (split
# over the branches): a search for a rare string answers in bounded time. The dashboard
# shows this bound beside such a search.
DASHBOARD_SEARCH_SCAN_LIMIT = 50_000
DASHBOARD_PLAN_CUSTOM = "SET LOCAL plan_cache_mode = force_custom_plan"


def _numbered(templates: dict[str, str], names: Sequence[str], n: int) -> tuple[list[str], int]:
    """The fragments for ``names``, numbered from parameter ``n + 1``; and the last number."""
    terms = []
    for name in names:
        n += 1
        term = templates[name].replace("{n}", str(n))
        if "{m}" in term:
            n += 1
            term = term.replace("{m}", str(n))
        terms.append(term)
    return terms, n


def dashboard_job_page(schema: str, filters: Sequence[str], *, pairs: int, search: bool = False,
                       ascending: bool, scanned: Sequence[str] = ()) -> str:
    """The SQL of a job page. Parameters: a queue and a state for each of ``pairs``
    branches ($1, $2, $3, $4, ...; 0 pairs: no queue/state filter); then one per name in
    ``filters`` (two for ``args_either``), in order; then one per name in ``scanned``
    (``search=True`` is ``scanned=["words"]``); last the page size.

    Example::

        dashboard_job_page("jobengine", ["kind"], pairs=0, ascending=False, scanned=["error"])
    """
    order = "ASC" if ascending else "DESC"
    terms, n = _numbered(DASHBOARD_JOB_FILTERS, filters, 2 * pairs)
    checks, n = _numbered(DASHBOARD_JOB_SCANNED, [*scanned, *(["words"] if search else [])], n)
    limit = f"${n + 1}::int"
    scan = DASHBOARD_SEARCH_SCAN_LIMIT // (pairs or 2)  # no pairs: the at-rest and executing branches

    walk = [*terms, *([_TAGGED_WALK] if "tag" in scanned else [])]

    def branch(extra: list[str]) -> str:
        where = " AND ".join([*extra, *walk]) or "true"
        inner = f"SELECT j.* FROM {{schema}}.jobs AS j WHERE {where} ORDER BY j.id {order}"
        if checks:
            inner = (f"SELECT j.* FROM ({inner} LIMIT {scan}) AS j "
                     f"WHERE {' AND '.join(checks)} ORDER BY j.id {order}")
        return f"({inner} LIMIT {limit})"

    if pairs:
        source = " UNION ALL ".join(
            branch([f"j.queue = ${2 * i + 1}::text", f"j.state = ${2 * i + 2}::text"]) for i in range(pairs))
    else:
        source = " UNION ALL ".join(branch([term]) for term in ("j.state <> 'executing'", "j.state = 'executing'"))
    columns = _job_columns("j") + ", j.cancelled_at, j.discarded_at, j.rescued"
    text = f"SELECT {columns} FROM ({source}) AS j ORDER BY j.id {order} LIMIT {limit}"
    return text.replace("{schema}", quote_ident(schema))


# --- flow control ---------------------------------------------------------------------
# Shared rate limits and global concurrency (engine/queues/limits.py) and job dependencies
# (engine/insert/dependencies.py), from migration 003. Only queues with limits and jobs with
# dependsOn use these: the plain claim and insert statements above are untouched by them.

# Make sure queue $1 has its limits row (a limited claim locks it). Idempotent.
QUEUE_LIMIT_CREATE = "INSERT INTO {schema}.queue_limits (queue) VALUES ($1) ON CONFLICT (queue) DO NOTHING"

# First statement of a limited claim's transaction: lock queue $1's limits row, so the
# claims of this queue take turns across every process (other queues are not affected).
# Returns no row when the row does not exist yet (then QUEUE_LIMIT_CREATE and lock again).
QUEUE_LIMIT_LOCK = "SELECT 1 FROM {schema}.queue_limits WHERE queue = $1 FOR UPDATE"

# Second statement, under that lock: claim up to $2 available jobs of queue $1 for node $3,
# with at most $4 attempts started per $5 seconds ($4 NULL: no rate limit) and at most $6
# jobs of the queue executing on all nodes together ($6 NULL: no global limit).
# It must not be folded into the lock statement: a READ COMMITTED statement sees the
# snapshot taken when it started, so counting in the statement that waited for the lock
# would miss what the previous holder just claimed. attempted_at is the clock read under
# the lock, so stamps only move forward and "at most $4 in any $5 seconds" holds exactly
# for attempted_at. Always yields one row: the quota and what it was computed from (for
# the producer's wake-up hint), then the claimed job's columns (NULL when none).
JOB_FETCH_LIMITED = """
WITH clock AS (
    SELECT clock_timestamp() AS now
), recent AS (
    SELECT coalesce(sum(x.c), 0)::int AS n, min(x.s) AS oldest
    FROM {schema}.queue_limits AS l CROSS JOIN clock CROSS JOIN unnest(l.stamps, l.counts) AS x(s, c)
    WHERE l.queue = $1 AND $4::int IS NOT NULL AND x.s > clock.now - make_interval(secs => $5::float8)
), running AS (
    SELECT count(*)::int AS n FROM {schema}.jobs
    WHERE $6::int IS NOT NULL AND queue = $1 AND state = 'executing'
), quota AS (
    SELECT greatest(0, least($2::int, coalesce($4::int - recent.n, $2::int),
                             coalesce($6::int - running.n, $2::int))) AS n
    FROM recent CROSS JOIN running
), picked AS (
    SELECT id FROM {schema}.jobs
    WHERE state = 'available' AND queue = $1
    ORDER BY priority DESC, scheduled_at, id
    LIMIT (SELECT n FROM quota)
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE {schema}.jobs AS j
    SET state = 'executing', attempt = j.attempt + 1, attempted_at = clock.now, attempted_by = $3
    FROM picked CROSS JOIN clock WHERE j.id = picked.id
    RETURNING j.*
), logged AS (
    -- The rate window's log: claims older than the window drop out, this one is added.
    UPDATE {schema}.queue_limits AS l
    SET (stamps, counts) = (
            SELECT coalesce(array_agg(k.s ORDER BY k.s), '{{}}'), coalesce(array_agg(k.c ORDER BY k.s), '{{}}')
            FROM (SELECT x.s, x.c FROM unnest(l.stamps, l.counts) AS x(s, c)
                  WHERE x.s > clock.now - make_interval(secs => $5::float8)
                  UNION ALL
                  SELECT clock.now, (SELECT count(*)::int FROM claimed) WHERE EXISTS (SELECT 1 FROM claimed)
                 ) AS k),
        updated_at = clock.now
    FROM clock
    WHERE l.queue = $1 AND $4::int IS NOT NULL
    RETURNING 1
)
SELECT quota.n AS quota, recent.n AS recent, recent.oldest, running.n AS running, clock.now AS clock,
       """ + _job_columns("c") + """
FROM quota CROSS JOIN recent CROSS JOIN running CROSS JOIN clock LEFT JOIN claimed AS c ON true
"""

# Lock the jobs a new job depends on ($1 id[]), mark them has_dependents and read their
# states. The lock conflicts with the ack that finishes one of them, so none can finish
# unseen between this read and the insert's commit, and that ack then reads the mark from
# the row it updates (JOB_SET_STATE_IF_EXECUTING) and settles the new job. NOWAIT because
# waiting while holding some of these locks could deadlock with a batched ack: the caller
# retries instead.
DEPENDENCY_LOCK = """
WITH locked AS (
    SELECT id, state, meta ? 'has_dependents' AS marked FROM {schema}.jobs
    WHERE id = ANY ($1::bigint[]) ORDER BY id FOR NO KEY UPDATE NOWAIT
), marked AS (
    UPDATE {schema}.jobs AS j SET meta = j.meta || '{"has_dependents": true}'::jsonb
    FROM locked WHERE j.id = locked.id AND NOT locked.marked
)
SELECT id, state FROM locked
"""

# Make freshly inserted jobs wait. $1 jsonb array of {id, deps (sorted id[])}.
DEPENDENCY_ATTACH = """
UPDATE {schema}.jobs AS j SET waiting_for = d.deps
FROM jsonb_to_recordset($1::text::jsonb) AS d(id bigint, deps bigint[])
WHERE j.id = d.id
"""


def _resolve_dependents(selection: str) -> str:
    """A statement that settles the waiting jobs ``selection`` picks (a CTE named
    ``dependents`` with id, state, waiting_for, locked in id order): dependencies that
    completed are dropped; when none is left the job is released (due at the later of
    its own due time and now); when one was discarded, cancelled or deleted the job is
    cancelled naming it. A job an operator moved out of 'scheduled' meanwhile only loses
    its waiting_for. Locking each waiting row makes concurrent acks of two dependencies
    take turns on it, so the second always sees the list the first left: no lost release.
    Returns the changed rows (id, queue, state, scheduled_at) and wakes released queues."""
    return "WITH dependents AS (" + selection + """
), checked AS (
    SELECT d.id, d.state, d.waiting_for,
           array(SELECT w FROM unnest(d.waiting_for) AS w
                 -- `(SELECT 'completed')`: as in the ack, so the planner cannot match the
                 -- partial jobs_finished_idx and walk every completed row for one id.
                 WHERE NOT EXISTS (SELECT 1 FROM {schema}.jobs AS x WHERE x.id = w AND x.state = (SELECT 'completed'))
                 ORDER BY w) AS pending,
           (SELECT format('dependency %s was %s', w, coalesce(x.state, 'deleted'))
            FROM unnest(d.waiting_for) AS w LEFT JOIN {schema}.jobs AS x ON x.id = w
            WHERE x.id IS NULL OR x.state IN ('discarded', 'cancelled') ORDER BY w LIMIT 1) AS failure
    FROM dependents AS d
), settled AS (
    SELECT c.*, c.state = 'scheduled' AS waiting,
           c.failure IS NULL AND cardinality(c.pending) > 0 AS still
    FROM checked AS c
    WHERE c.failure IS NOT NULL OR cardinality(c.pending) < cardinality(c.waiting_for) OR c.state <> 'scheduled'
), resolved AS (
    UPDATE {schema}.jobs AS j
    SET waiting_for  = CASE WHEN s.waiting AND s.still THEN s.pending END,
        state        = CASE WHEN NOT s.waiting OR s.still THEN j.state
                            WHEN s.failure IS NOT NULL THEN 'cancelled'
                            WHEN coalesce((j.meta ->> 'due_at')::timestamptz, now()) > now() THEN 'scheduled'
                            ELSE 'available' END,
        scheduled_at = CASE WHEN NOT s.waiting OR s.still OR s.failure IS NOT NULL THEN j.scheduled_at
                            ELSE greatest(coalesce((j.meta ->> 'due_at')::timestamptz, now()), now()) END,
        cancelled_at = CASE WHEN s.waiting AND s.failure IS NOT NULL THEN now() ELSE j.cancelled_at END,
        errors       = CASE WHEN s.waiting AND s.failure IS NOT NULL
                            THEN j.errors || jsonb_build_array(jsonb_build_object(
                                     'attempt', j.attempt, 'at', now(), 'kind', 'cancelled', 'error', s.failure))
                            ELSE j.errors END
    FROM settled AS s WHERE j.id = s.id
    RETURNING j.id, j.queue, j.state, j.scheduled_at
)
SELECT id, queue, state, scheduled_at,
       (SELECT count(pg_notify($2, q.queue))
        FROM (SELECT DISTINCT queue FROM resolved WHERE state IN ('available', 'scheduled')) AS q) AS n
FROM resolved ORDER BY id
"""


# Settle the jobs waiting for any of $1 (id[] of jobs that just finished, in this
# transaction). $2 notify channel.
DEPENDENCY_RESOLVE_DEPENDENTS = _resolve_dependents("""
    SELECT id, state, waiting_for FROM {schema}.jobs
    WHERE waiting_for && $1::bigint[] ORDER BY id FOR UPDATE""")

# Settle the waiting jobs $1 (id[]): right after they are inserted, and for the sweeper.
# $2 notify channel.
DEPENDENCY_RESOLVE_JOBS = _resolve_dependents("""
    SELECT id, state, waiting_for FROM {schema}.jobs
    WHERE id = ANY ($1::bigint[]) AND waiting_for IS NOT NULL ORDER BY id FOR UPDATE""")

# Up to $1 waiting jobs with a dependency already finished or gone: the backstop for
# finishes that do not pass through an ack (rescue of a poison pill, bulk cancel, delete).
DEPENDENCY_LIST_SETTLED = """
SELECT j.id FROM {schema}.jobs AS j
WHERE j.waiting_for IS NOT NULL
  AND (j.state <> 'scheduled' OR EXISTS (
        SELECT 1 FROM unnest(j.waiting_for) AS w LEFT JOIN {schema}.jobs AS x ON x.id = w
        WHERE x.id IS NULL OR x.state IN ('completed', 'discarded', 'cancelled')))
ORDER BY j.id LIMIT $1
"""

# --- notifications ------------------------------------------------------------------

# Publish a control message (pause/resume/scale/cancel) to every node. $1 channel, $2 payload.
NOTIFY = "SELECT pg_notify($1, $2)"

# --- definitions ------------------------------------------------------------------
# Definitions are the rows of cron_entries (migration 008): a cron entry is a definition
# with a cron trigger. These statements read and write every trigger; CRON_* keep serving
# the ticker and `jobengine cron`. `source` 'runtime' is what the API calls 'api'.

# What the definition reads share: the columns, the last run's live state (the stored one
# once that job is pruned), and the counters including finished jobs the pruner's tally has
# not counted yet. Those are read once per statement from jobs_definition_untallied_idx: only
# jobs finished since the last tally (retention.interval), so the counts are live and exact
# (the tally moves a job from pending to counted in one statement) without touching an ack.
_DEFINITION_READ = """
WITH pending AS (
    SELECT meta ->> 'definition' AS name, count(*) FILTER (WHERE state = 'completed') AS completed,
           count(*) FILTER (WHERE state = 'discarded') AS failed,
           count(*) FILTER (WHERE state = 'cancelled') AS cancelled
    FROM {schema}.jobs WHERE meta ? 'untallied' AND state IN ('completed', 'discarded', 'cancelled')
    GROUP BY 1
)
SELECT c.name, c.description, c.tags, c.enabled, c.trigger_type, c.schedule, c.timezone, c.overlap,
       c.catch_up, c.once_at, c.job::text AS job, c.source, c.active_since, c.last_slot, c.runs_total,
       c.runs_completed + coalesce(p.completed, 0) AS runs_completed,
       c.runs_failed + coalesce(p.failed, 0) AS runs_failed,
       c.runs_cancelled + coalesce(p.cancelled, 0) AS runs_cancelled, c.last_run_job_id, c.last_run_at,
       coalesce(j.state, c.last_run_state) AS last_run_state,
       c.inserted_at AS created_at, c.created_by, c.updated_at, c.updated_by
FROM {schema}.cron_entries AS c LEFT JOIN {schema}.jobs AS j ON j.id = c.last_run_job_id
LEFT JOIN pending AS p ON p.name = c.name
"""

# Every definition (or the one named $1), by name. One primary-key probe of jobs per definition.
DEFINITION_LIST = _DEFINITION_READ + """WHERE $1::text IS NULL OR c.name = $1
ORDER BY c.name
"""

# A page of the definitions list, by name after $5 (NULL: from the first), $6 at most,
# filtered by kind $1, tag $2, enabled $3, text $4 in name or description (each NULL: any).
# Walks the primary key in name order and stops at the limit, so the join with jobs probes
# only the rows shown, however many definitions there are.
DEFINITION_PAGE = _DEFINITION_READ + """WHERE ($1::text IS NULL OR c.job ->> 'jobType' = $1)
  AND ($2::text IS NULL OR $2 = ANY (c.tags))
  AND ($3::boolean IS NULL OR c.enabled = $3)
  AND ($4::text IS NULL OR strpos(c.name, lower($4)) > 0 OR strpos(lower(c.description), lower($4)) > 0)
  AND ($5::text IS NULL OR c.name > $5)
ORDER BY c.name
LIMIT $6
"""

# What the list's filters offer: how many definitions, their kinds and their tags.
DEFINITION_FACETS = """
SELECT count(*) AS total,
       ARRAY(SELECT DISTINCT job ->> 'jobType' FROM {schema}.cron_entries ORDER BY 1) AS kinds,
       ARRAY(SELECT DISTINCT tag FROM {schema}.cron_entries, unnest(tags) AS tag ORDER BY 1) AS tags
FROM {schema}.cron_entries
"""

# Add a definition made through the API/CLI. $1 name, $2 description, $3 tags, $4 enabled,
# $5 trigger_type, $6 schedule, $7 timezone, $8 overlap, $9 catch_up, $10 once_at, $11 job,
# $12 actor, $13 now. Nothing when the name is taken.
DEFINITION_INSERT = """
INSERT INTO {schema}.cron_entries (name, description, tags, enabled, trigger_type, schedule, timezone, overlap,
                                   catch_up, once_at, job, source, created_by, updated_by, active_since,
                                   inserted_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::text::jsonb, 'runtime', $12, $12, $13, $13, $13)
ON CONFLICT (name) DO NOTHING
RETURNING name
"""

# Replace a runtime definition whole (one statement: a concurrent reader sees the old or the
# new one, never a mix). Same parameters as DEFINITION_INSERT, then $14: the updated_at the
# editor read (NULL: no precondition). A new trigger restarts active_since (no backfill under it).
DEFINITION_REPLACE = """
UPDATE {schema}.cron_entries AS c
SET description = $2, tags = $3, enabled = $4, trigger_type = $5, schedule = $6, timezone = $7, overlap = $8,
    catch_up = $9, once_at = $10, job = $11::text::jsonb, updated_by = $12, updated_at = $13,
    active_since = CASE WHEN (c.trigger_type, c.schedule, c.timezone, c.once_at, c.enabled)
                             IS DISTINCT FROM ($5::text, $6::text, $7::text, $10::timestamptz, $4::boolean)
                        THEN $13 ELSE c.active_since END
WHERE c.name = $1 AND c.source = 'runtime' AND ($14::timestamptz IS NULL OR c.updated_at = $14)
RETURNING c.name
"""

# Enable or disable any definition. $1 name, $2 enabled, $3 actor, $4 now. Enabling
# restarts active_since, so nothing that passed while disabled fires.
DEFINITION_SET_ENABLED = """
UPDATE {schema}.cron_entries AS c
SET enabled = $2, updated_by = $3, updated_at = $4,
    active_since = CASE WHEN $2 AND NOT c.enabled THEN $4 ELSE c.active_since END
WHERE c.name = $1
RETURNING c.name
"""

# Count a job a definition just made. $1 name, $2 job id. In the insert's transaction.
DEFINITION_RECORD_RUN = """
UPDATE {schema}.cron_entries
SET runs_total = runs_total + 1, last_run_job_id = $2, last_run_at = now()
WHERE name = $1
"""

# The document of definition $1, locked for the run's transaction (a concurrent PUT waits).
DEFINITION_LOCK_JOB = "SELECT job::text AS job FROM {schema}.cron_entries WHERE name = $1 FOR UPDATE"

# Once definitions that have not fired: enabled, their instant after they became active.
DEFINITION_PENDING_ONCE = """
SELECT name, once_at FROM {schema}.cron_entries
WHERE trigger_type = 'once' AND enabled AND active_since < once_at
  AND (last_slot IS NULL OR last_slot < once_at)
ORDER BY once_at
"""

# Claim the one firing of once definition $1 at instant $2, due by $3 (now). The slot claim
# of CRON_CLAIM_SLOT: the row lock serialises two nodes, and the second re-checks
# `last_slot < once_at` on the committed row and matches nothing, so it fires once ever.
DEFINITION_CLAIM_ONCE = """
UPDATE {schema}.cron_entries AS c
SET last_slot = c.once_at
WHERE c.name = $1 AND c.trigger_type = 'once' AND c.enabled AND c.once_at = $2 AND c.once_at <= $3
  AND c.active_since < c.once_at AND (c.last_slot IS NULL OR c.last_slot < c.once_at)
RETURNING c.job::text AS job
"""

# Definition $1's jobs, newest first, below id $2 (NULL: from the newest), $3 at most.
# Served by jobs_definition_idx; the `meta ? 'definition'` term lets the planner use it.
DEFINITION_RUNS = ("SELECT " + JOB_COLUMNS + " FROM {schema}.jobs WHERE meta ? 'definition' "
                   "AND meta ->> 'definition' = $1 AND ($2::bigint IS NULL OR id < $2) "
                   "ORDER BY meta ->> 'definition', id DESC LIMIT $3")

# Fold up to $1 finished, uncounted definition jobs into their definitions' counters and
# drop their `untallied` mark, in one statement: a job is counted exactly once whichever
# node tallies (SKIP LOCKED: two tallies take different jobs). The pruner runs this before
# it deletes, so counts survive pruning. Returns how many jobs were counted.
DEFINITION_TALLY = """
WITH picked AS (
    SELECT id FROM {schema}.jobs
    WHERE meta ? 'untallied' AND state IN ('completed', 'discarded', 'cancelled')
    ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
), counted AS (
    UPDATE {schema}.jobs AS j SET meta = j.meta - 'untallied'
    FROM picked WHERE j.id = picked.id
    RETURNING j.id, j.meta ->> 'definition' AS definition, j.state
), sums AS (
    SELECT definition, count(*) FILTER (WHERE state = 'completed') AS completed,
           count(*) FILTER (WHERE state = 'discarded') AS failed,
           count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
           array_agg(id) AS ids, array_agg(state) AS states
    FROM counted WHERE definition IS NOT NULL GROUP BY definition
), applied AS (
    UPDATE {schema}.cron_entries AS c
    SET runs_completed = c.runs_completed + s.completed, runs_failed = c.runs_failed + s.failed,
        runs_cancelled = c.runs_cancelled + s.cancelled,
        last_run_state = coalesce(s.states[array_position(s.ids, c.last_run_job_id)], c.last_run_state)
    FROM sums AS s WHERE c.name = s.definition
    RETURNING c.name
)
SELECT (SELECT count(*) FROM counted) AS counted, (SELECT count(*) FROM applied) AS definitions
"""

# Edit a job that has not started. $1 id, $2 args (jsonb text or NULL: keep), $3 priority,
# $4 scheduled_at, $5 tags, $6 queue, $7 max_attempts (each NULL: keep).
# The state guard is the race with the claim: the claim's FOR UPDATE and this UPDATE take
# the same row lock, and the loser re-checks `state` on the winner's row version, so the
# edit applies before the claim or matches nothing (409); a running job is never changed.
# A future scheduled_at makes an available job scheduled; a past one leaves it to the stager.
JOB_EDIT_WAITING = """
UPDATE {schema}.jobs AS j
SET args = coalesce($2::text::jsonb, j.args), priority = coalesce($3, j.priority),
    scheduled_at = coalesce($4, j.scheduled_at), tags = coalesce($5, j.tags), queue = coalesce($6, j.queue),
    max_attempts = coalesce($7, j.max_attempts),
    state = CASE WHEN j.state = 'available' AND $4 > now() THEN 'scheduled' ELSE j.state END
WHERE j.id = $1 AND j.state IN ('scheduled', 'available', 'retryable')
RETURNING j.id, j.state, j.queue
"""


# --- accounts and the audit log ----------------------------------------------------------
# Users, their API tokens and login sessions, and the audit log (migration 009;
# engine/db/account_rows.py is the only caller).

# Add user $1 with role $2, can_view_args $3, password hash $4; no row when the name is taken.
USER_INSERT = """
INSERT INTO {schema}.users (name, role, can_view_args, password_hash) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO NOTHING RETURNING name
"""

# Every user with how many live tokens and sessions they hold, by name.
USER_LIST = """
SELECT u.name, u.role, u.can_view_args, u.disabled, u.created_at, u.password_hash IS NOT NULL AS has_password,
       (SELECT count(*) FROM {schema}.api_tokens t WHERE t.user_name = u.name AND t.revoked_at IS NULL) AS tokens,
       (SELECT max(t.last_used_at) FROM {schema}.api_tokens t WHERE t.user_name = u.name) AS token_last_used
FROM {schema}.users u ORDER BY u.name
"""

# User $1 with its password hash (for a login).
USER_GET = "SELECT name, role, can_view_args, password_hash, disabled FROM {schema}.users WHERE name = $1"

# First statement of a change that could leave no admin: lock every admin row, so two
# concurrent removals of the last two admins cannot both pass the count that follows.
USER_LOCK_ADMINS = "SELECT name FROM {schema}.users WHERE role = 'admin' ORDER BY name FOR UPDATE"

# Enabled admins other than $1.
USER_COUNT_OTHER_ADMINS = """
SELECT count(*) FROM {schema}.users WHERE role = 'admin' AND NOT disabled AND name <> $1
"""

# Remove user $1 (its tokens and sessions go with it, by the foreign keys).
USER_DELETE = "DELETE FROM {schema}.users WHERE name = $1 RETURNING role"

# Set user $1's password hash to $2.
USER_SET_PASSWORD = "UPDATE {schema}.users SET password_hash = $2, updated_at = now() WHERE name = $1 RETURNING name"

# Change user $1: role $2, can_view_args $3, disabled $4 (each NULL: unchanged); returns the old row.
USER_UPDATE = """
UPDATE {schema}.users AS u SET role = coalesce($2, u.role), can_view_args = coalesce($3, u.can_view_args),
       disabled = coalesce($4, u.disabled), updated_at = now()
FROM {schema}.users AS old WHERE u.name = $1 AND old.name = u.name
RETURNING old.role, old.can_view_args, old.disabled
"""

# Add an API token for user $1 named $2 with SHA-256 $3.
TOKEN_INSERT = "INSERT INTO {schema}.api_tokens (user_name, name, token_hash) VALUES ($1, $2, $3) RETURNING id"

# Revoke user $1's live tokens named $2 ($2 NULL: all of them); returns their ids.
TOKEN_REVOKE = """
UPDATE {schema}.api_tokens SET revoked_at = now()
WHERE user_name = $1 AND ($2::text IS NULL OR name = $2) AND revoked_at IS NULL RETURNING id
"""

# User $1's tokens, newest first (never the hash).
TOKEN_LIST = """
SELECT id, name, created_at, last_used_at, revoked_at FROM {schema}.api_tokens WHERE user_name = $1 ORDER BY id DESC
"""

# The live token with SHA-256 $1 and its enabled user; ``stale`` when its last use is
# older than a minute (only then is it worth writing the new one).
TOKEN_LOOKUP = """
SELECT t.id, u.name, u.role, u.can_view_args,
       t.last_used_at IS NULL OR t.last_used_at < now() - interval '60 seconds' AS stale
FROM {schema}.api_tokens t JOIN {schema}.users u ON u.name = t.user_name
WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND NOT u.disabled
"""

# Note that token $1 was used, at most once a minute (an API client polling every second
# must not turn every read into a write).
TOKEN_TOUCH = """
UPDATE {schema}.api_tokens SET last_used_at = now()
WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '60 seconds')
"""

# A session with id hash $1 for user $2 (NULL: a shared token) with role $3, credential
# fingerprint $4, lasting $5 seconds.
SESSION_INSERT = """
INSERT INTO {schema}.sessions (id_hash, user_name, role, credential, expires_at)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
"""

# The unexpired session with id hash $1; a user's session only while the user is enabled,
# and with the user's current role and flag (a role change applies at once).
SESSION_GET = """
SELECT s.user_name, coalesce(u.role, s.role) AS role, coalesce(u.can_view_args, false) AS can_view_args,
       s.credential
FROM {schema}.sessions s LEFT JOIN {schema}.users u ON u.name = s.user_name
WHERE s.id_hash = $1 AND s.expires_at > now() AND (s.user_name IS NULL OR NOT u.disabled)
"""

# End the session with id hash $1 (logout).
SESSION_DELETE = "DELETE FROM {schema}.sessions WHERE id_hash = $1"

# End every session of user $1 (password changed, disabled, role changed).
SESSION_DELETE_FOR_USER = "DELETE FROM {schema}.sessions WHERE user_name = $1"

# Forget sessions that expired (the pruner); at most $1 rows.
SESSION_PRUNE_EXPIRED = """
DELETE FROM {schema}.sessions WHERE id_hash = ANY (ARRAY(
    SELECT id_hash FROM {schema}.sessions WHERE expires_at < now() ORDER BY expires_at LIMIT $1))
"""

# Append one audit row: actor $1, role $2, action $3, target $4, details $5 (a JSON object).
AUDIT_INSERT = """
INSERT INTO {schema}.audit_log (actor, role, action, target, details) VALUES ($1, $2, $3, $4, $5::jsonb)
"""

# Audit rows newest first: actor $1, action $2, target $3 (each NULL: any), at or after $4,
# id below $5 (the page cursor), at most $6 rows.
AUDIT_LIST = """
SELECT id, at, actor, role, action, target, details FROM {schema}.audit_log
WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR action = $2)
  AND ($3::text IS NULL OR target = $3) AND ($4::timestamptz IS NULL OR at >= $4)
  AND ($5::bigint IS NULL OR id < $5)
ORDER BY id DESC LIMIT $6
"""

# Delete audit rows older than $1 seconds, at most $2 per statement (oldest first, by the at index).
AUDIT_PRUNE = """
DELETE FROM {schema}.audit_log WHERE id = ANY (ARRAY(
    SELECT id FROM {schema}.audit_log WHERE at < now() - make_interval(secs => $1) ORDER BY at LIMIT $2))
"""


# --- dashboard: search and nodes (migration 010) -------------------------------------------


# Count jobs rescued from node $1 (their ids $2, of which the first 20 are kept) among the
# departed nodes, with what its heartbeat row still says. Runs in the rescue's transaction,
# once per node that lost jobs: never on the path of a job that runs normally.
NODE_RECORD_RESCUED = """
INSERT INTO {schema}.departed_nodes AS d (name, queues, meta, started_at, heartbeat_at, reason, rescued, rescued_ids)
SELECT $1::text, coalesce(n.queues, '{{}}'), coalesce(n.meta, '{{}}'), n.started_at, n.heartbeat_at, 'lost',
       cardinality($2::bigint[]), ($2::bigint[])[1:20]
FROM (SELECT 1) AS one LEFT JOIN {schema}.nodes AS n ON n.name = $1::text
ON CONFLICT (name) DO UPDATE SET rescued = d.rescued + excluded.rescued,
    rescued_ids = (d.rescued_ids || excluded.rescued_ids)[1:20], reason = 'lost'
"""

# Forget departed nodes after a day. No parameters.
NODE_DEPARTED_PRUNE = "DELETE FROM {schema}.departed_nodes WHERE departed_at < now() - interval '1 day'"

# The nodes page: every heartbeat row with its age by the database's clock (the web host's
# may differ), and the departed nodes, newest first. No parameters.
DASHBOARD_NODES = """
SELECT name, queues, started_at, heartbeat_at, meta,
       extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age
FROM {schema}.nodes ORDER BY name
"""
DASHBOARD_DEPARTED_NODES = """
SELECT name, queues, started_at, heartbeat_at, meta, departed_at, reason, rescued, rescued_ids,
       extract(epoch FROM now() - departed_at)::float8 AS departed_age
FROM {schema}.departed_nodes ORDER BY departed_at DESC LIMIT 50
"""

# --- dashboard: the rollup behind the charts (migration 010) -------------------------

# Histogram bucket bounds (milliseconds) of job_rollup.wait_hist / run_hist: width_bucket
# gives 0 below the first bound, i from bound i to bound i+1, len at or above the last.
ROLLUP_BUCKET_BOUNDS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 60_000,
                           120_000, 300_000, 600_000, 1_800_000, 3_600_000)
_BUCKETS = "ARRAY[" + ", ".join(str(bound) for bound in ROLLUP_BUCKET_BOUNDS_MS) + "]::float8[]"
_BUCKET_INDEXES = f"generate_series(0, {len(ROLLUP_BUCKET_BOUNDS_MS)})"

# Roll the finished jobs of whole minutes into job_rollup, at most an hour of them per call,
# from job_rollup_state.rolled_until up to $1 (NULL: the minute that began 30 s or more ago,
# so an ack still committing is not missed), and move the mark. One node at a time: the
# state row is locked with SKIP LOCKED, so a second caller gets no row and does nothing.
# The ranges read jobs_finished_idx (001) on its own expression. Returns the new mark and
# the groups written (no row: another node is rolling).
ROLLUP_FINISHED = """
WITH state AS (
    SELECT rolled_until FROM {schema}.job_rollup_state WHERE id FOR UPDATE SKIP LOCKED
), bounds AS (
    SELECT s.rolled_until AS since,
           least(coalesce($1::timestamptz, date_trunc('minute', now() - interval '30 seconds')),
                 s.rolled_until + interval '1 hour') AS upto
    FROM state AS s
), finished AS (
    SELECT date_trunc('minute', coalesce(j.completed_at, j.cancelled_at, j.discarded_at)) AS minute,
           j.queue, j.kind, j.state,
           -- greatest() skips NULLs: a job cancelled before it ran has no times at all
           CASE WHEN j.attempted_at IS NOT NULL
                THEN greatest(0, extract(epoch FROM j.attempted_at - j.scheduled_at) * 1000) END AS wait_ms,
           CASE WHEN j.attempted_at IS NOT NULL
                THEN greatest(0, extract(epoch FROM coalesce(j.completed_at, j.cancelled_at, j.discarded_at)
                                                    - j.attempted_at) * 1000) END AS run_ms
    FROM {schema}.jobs AS j, bounds AS b
    WHERE j.state IN ('completed', 'discarded', 'cancelled')
      AND coalesce(j.completed_at, j.cancelled_at, j.discarded_at) >= b.since
      AND coalesce(j.completed_at, j.cancelled_at, j.discarded_at) < b.upto
), grouped AS (
    SELECT minute, queue, kind,
           count(*) FILTER (WHERE state = 'completed') AS completed,
           count(*) FILTER (WHERE state = 'discarded') AS discarded,
           count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
           coalesce(sum(wait_ms), 0) AS wait_ms, coalesce(sum(run_ms), 0) AS run_ms, count(wait_ms) AS ran,
           array_agg(width_bucket(wait_ms, """ + _BUCKETS + """)) AS waits,
           array_agg(width_bucket(run_ms, """ + _BUCKETS + """)) AS runs
    FROM finished GROUP BY minute, queue, kind
), written AS (
    INSERT INTO {schema}.job_rollup AS r (minute, queue, kind, completed, discarded, cancelled, wait_ms, run_ms,
                                          ran, wait_hist, run_hist)
    SELECT g.minute, g.queue, g.kind, g.completed, g.discarded, g.cancelled, g.wait_ms, g.run_ms, g.ran,
           ARRAY(SELECT count(w)::int FROM """ + _BUCKET_INDEXES + """ AS i
                 LEFT JOIN unnest(g.waits) AS w ON w = i GROUP BY i ORDER BY i),
           ARRAY(SELECT count(w)::int FROM """ + _BUCKET_INDEXES + """ AS i
                 LEFT JOIN unnest(g.runs) AS w ON w = i GROUP BY i ORDER BY i)
    FROM grouped AS g
    ON CONFLICT (minute, queue, kind) DO UPDATE SET
        completed = r.completed + excluded.completed, discarded = r.discarded + excluded.discarded,
        cancelled = r.cancelled + excluded.cancelled, wait_ms = r.wait_ms + excluded.wait_ms,
        run_ms = r.run_ms + excluded.run_ms, ran = r.ran + excluded.ran,
        wait_hist = ARRAY(SELECT a + b FROM unnest(r.wait_hist, excluded.wait_hist) AS t(a, b)),
        run_hist = ARRAY(SELECT a + b FROM unnest(r.run_hist, excluded.run_hist) AS t(a, b))
    RETURNING 1
), moved AS (
    UPDATE {schema}.job_rollup_state AS s SET rolled_until = b.upto
    FROM bounds AS b WHERE s.id AND b.upto > b.since
    RETURNING s.rolled_until
)
SELECT (SELECT rolled_until FROM moved) AS rolled_until, (SELECT count(*) FROM written) AS groups,
       (SELECT upto < coalesce($1::timestamptz, date_trunc('minute', now() - interval '30 seconds'))
        FROM bounds) AS behind
FROM bounds
"""

# Forget rollup minutes older than $1 seconds. Range on the primary key's first column.
ROLLUP_PRUNE = "DELETE FROM {schema}.job_rollup WHERE minute < now() - make_interval(secs => $1)"

# The charts' counts: per step of $1 seconds since $2 (aligned to $2), for queue $3 and kind
# $4 (NULL: all).
ROLLUP_CHART_COUNTS = """
SELECT date_bin(make_interval(secs => $1), minute, $2::timestamptz) AS t,
       sum(completed)::bigint AS completed, sum(discarded)::bigint AS discarded,
       sum(cancelled)::bigint AS cancelled, sum(ran)::bigint AS ran
FROM {schema}.job_rollup
WHERE minute >= $2::timestamptz AND ($3::text IS NULL OR queue = $3) AND ($4::text IS NULL OR kind = $4)
GROUP BY 1 ORDER BY 1
"""

# The charts' histograms per step, each a sum of the minutes' arrays element by element
# (bucket i is element i): parameters as ROLLUP_CHART_COUNTS. One aggregate pass; unnesting
# every minute's arrays and grouping by bucket read 21 rows per minute (264 ms for a day at 20
# queue/kind pairs, against 35 ms for the counts).
ROLLUP_CHART_HISTOGRAMS = (
    "SELECT date_bin(make_interval(secs => $1), minute, $2::timestamptz) AS t, "
    + "ARRAY[" + ", ".join(f"sum(wait_hist[{i}])" for i in range(1, len(ROLLUP_BUCKET_BOUNDS_MS) + 2))
    + "]::bigint[] AS waits, "
    + "ARRAY[" + ", ".join(f"sum(run_hist[{i}])" for i in range(1, len(ROLLUP_BUCKET_BOUNDS_MS) + 2))
    + """]::bigint[] AS runs
FROM {schema}.job_rollup
WHERE minute >= $2::timestamptz AND ($3::text IS NULL OR queue = $3) AND ($4::text IS NULL OR kind = $4)
GROUP BY 1 ORDER BY 1
""")

# Where the rollup has got to: minutes from here on are not in job_rollup yet. No parameters.
ROLLUP_MARK = "SELECT rolled_until FROM {schema}.job_rollup_state"

# The queues and kinds the rollup knows (the chart's filters). No parameters.
ROLLUP_CHART_NAMES = """
SELECT DISTINCT queue, kind FROM {schema}.job_rollup WHERE minute >= now() - interval '7 days' ORDER BY 1, 2
"""

# --- dashboard: attempt logs and progress (migration 010) ------------------------------

# Append new lines to attempts' logs, keeping the last $5 of each, and set their progress.
# One statement per flush for every attempt that logged: $1 job ids, $2 attempts, $3 the new
# lines of each (JSON arrays as text: a list of lists would bind as one 2-D array), $4
# progress (NULL: unchanged), $5 lines kept, $6 progress texts.
ATTEMPT_LOG_WRITE = """
INSERT INTO {schema}.attempt_logs AS a (job_id, attempt, lines, progress, progress_text)
SELECT w.job_id, w.attempt, w.lines::jsonb, w.progress, w.progress_text
FROM unnest($1::bigint[], $2::int[], $3::text[], $4::float8[], $6::text[])
     AS w(job_id, attempt, lines, progress, progress_text)
ON CONFLICT (job_id, attempt) DO UPDATE SET
    lines = jsonb_path_query_array(a.lines || excluded.lines, '$[last - $keep + 1 to last]',
                                   jsonb_build_object('keep', $5::int)),
    progress = coalesce(excluded.progress, a.progress),
    progress_text = coalesce(excluded.progress_text, a.progress_text), updated_at = now()
"""

# One job's attempt logs, oldest attempt first. $1 job id.
ATTEMPT_LOG_LIST = """
SELECT attempt, lines, progress, progress_text, updated_at FROM {schema}.attempt_logs
WHERE job_id = $1 ORDER BY attempt
"""

# The latest progress of each of jobs $1 (bigint[]) that reported any.
ATTEMPT_LOG_PROGRESS = """
SELECT DISTINCT ON (job_id) job_id, attempt, progress, progress_text FROM {schema}.attempt_logs
WHERE job_id = ANY ($1::bigint[]) AND progress IS NOT NULL ORDER BY job_id, attempt DESC
"""

# Forget attempt logs not written for $1 seconds (the longest job retention).
ATTEMPT_LOG_PRUNE = "DELETE FROM {schema}.attempt_logs WHERE updated_at < now() - make_interval(secs => $1)"

# A migration's after-commit part (engine/db/migrate.py) runs under a session lock, taken
# only if free: a second process starting meanwhile skips the part instead of waiting for
# another's index build. $1 the lock's name.
MIGRATION_TRY_SESSION_LOCK = "SELECT pg_try_advisory_lock(hashtext($1))"
# Release it. $1 the lock's name.
MIGRATION_SESSION_UNLOCK = "SELECT pg_advisory_unlock(hashtext($1))"


# --- reliability: claims that skip what this process still runs -----------------

# JOB_FETCH_AVAILABLE, but never a job this process still runs: a job rescued from under a
# node that was frozen or cut off (its old attempt still running here) must not start a
# second attempt beside the first in the same process. $1 queue, $2 limit, $3 node,
# $4 bigint[] ids running here. `<> ALL` is a filter on the same index scan.
JOB_FETCH_AVAILABLE_EXCEPT = _JOB_FETCH_AVAILABLE.replace("<not running here>", " AND id <> ALL ($4::bigint[])")

# A cancelled job's attempt has stopped: its node's ack for it came back stale. Only the
# very attempt the cancel caught. $1 id[], $2 attempt[], $3 attempted_at[].
JOB_CONFIRM_STOPPED = """
UPDATE {schema}.jobs AS j SET stopping_since = NULL
FROM unnest($1::bigint[], $2::int[], $3::timestamptz[]) AS x(id, attempt, attempted_at)
WHERE j.id = x.id AND j.attempt = x.attempt AND j.attempted_at = x.attempted_at
  AND j.stopping_since IS NOT NULL
RETURNING j.id
"""

# Cancelled jobs whose node is declared dead (silent for $1 seconds, or gone), or is $2
# (a node starting under that name: its earlier process is gone), or that node $3 runs no
# more (it does not know them, $4 bigint[], and any answer to their claim is older than
# $5 seconds): nothing can run their handler any longer. $2, $3 may be NULL. Uses
# jobs_stopping_idx.
JOB_CONFIRM_STOPPED_OF_SILENT = """
UPDATE {schema}.jobs AS j SET stopping_since = NULL
WHERE j.stopping_since IS NOT NULL
  AND (j.attempted_by = $2::text
       OR (j.attempted_by = $3::text AND j.id <> ALL ($4::bigint[])
           AND j.attempted_at < now() - make_interval(secs => $5))
       OR NOT EXISTS (SELECT 1 FROM {schema}.nodes AS n
                      WHERE n.name = j.attempted_by AND n.heartbeat_at > now() - make_interval(secs => $1)))
RETURNING j.id
"""

# Cancelled jobs still stopping on node $1 (its missed cancel messages). Uses jobs_stopping_idx.
JOB_LIST_STOPPING_OF_NODE = """
SELECT id FROM {schema}.jobs WHERE stopping_since IS NOT NULL AND attempted_by = $1
"""

# The node still stopping cancelled job $1 (no row: not stopping).
JOB_STOPPING_ON = """
SELECT attempted_by FROM {schema}.jobs WHERE id = $1 AND stopping_since IS NOT NULL
"""

# For each job of $1 bigint[] with a unique key: another job holding that key (in one of
# its own unique states: what jobs_unique_idx enforces), the oldest first. Uses
# jobs_unique_key_idx.
JOB_UNIQUE_HOLDERS = """
SELECT DISTINCT ON (t.id) t.id, h.id AS holder_id, h.state AS holder_state
FROM {schema}.jobs AS t
JOIN {schema}.jobs AS h ON h.unique_key = t.unique_key AND h.id <> t.id AND h.state = ANY (h.unique_states)
WHERE t.id = ANY ($1::bigint[]) AND t.unique_key IS NOT NULL
ORDER BY t.id, h.id
"""

# --- perf: bulk insert returning ids only ----------------------------------------------

# JOB_INSERT_MANY_PLAIN for a batch of plain jobs (no unique key, no dependsOn), returning
# only the new ids in input order: what Engine.enqueue_many(..., return_ids=True) sends.
# Each column comes twice: $1-$10 arrays and $11-$20 scalars. A column whose value is the
# same in every row (a mass mail: one queue, kind, priority...) is sent as an empty array
# plus its value; unnest pads the short array with NULLs and coalesce puts the value back.
# Encoding twelve 1,000-element arrays and decoding five returned columns cost the client
# more than Postgres spent inserting the rows (docs/performance.md, round 2).
# $3 (args) is always the full array: it sets the row count ($13 stays NULL). $21 notify channel.
JOB_INSERT_MANY_IDS = """
WITH input AS (
    SELECT coalesce(r.queue, $11::text) AS queue, coalesce(r.kind, $12::text) AS kind,
           coalesce(r.args, $13::text) AS args, coalesce(r.meta, $14::text) AS meta,
           coalesce(r.priority, $15::int) AS priority, coalesce(r.max_attempts, $16::int) AS max_attempts,
           coalesce(r.timeout, $17::float8) AS timeout, coalesce(r.tags, $20::text) AS tags, r.ord,
           coalesce(coalesce(r.scheduled_at, $18::text)::timestamptz,
                    now() + make_interval(secs => coalesce(r.delay, $19::float8, 0))) AS due_at
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::float8[],
                $8::text[], $9::float8[], $10::text[])
         WITH ORDINALITY AS r(queue, kind, args, meta, priority, max_attempts, timeout,
                              scheduled_at, delay, tags, ord)
), inserted AS (
    INSERT INTO {schema}.jobs AS j (queue, kind, args, meta, state, priority, max_attempts, timeout,
                                    scheduled_at, tags)
    SELECT queue, kind, args::jsonb, meta::jsonb,
           CASE WHEN due_at > now() THEN 'scheduled' ELSE 'available' END,
           priority, max_attempts, timeout, due_at,
           CASE WHEN tags IS NULL THEN '{{}}'::text[] ELSE ARRAY(SELECT jsonb_array_elements_text(tags::jsonb)) END
    FROM input ORDER BY ord
    RETURNING j.id, j.queue
), notified AS (
    SELECT count(pg_notify($21, queue)) AS n FROM (SELECT DISTINCT queue FROM inserted) AS q
)
SELECT id FROM inserted, notified ORDER BY id
"""


# --- alerts (migration 011) ------------------------------------------------------------------

# Take the evaluation round: the lease row, unless another node holds it (SKIP LOCKED: no
# wait) or evaluated less than $1 seconds ago. $2 this node, $3 the round's time (NULL: now).
# The row stays locked until the round's transaction ends, so rounds never overlap. Returns
# the round's time, or no row.
ALERT_ROUND_TAKE = """
UPDATE {schema}.alert_rounds AS r SET evaluated_at = coalesce($3::timestamptz, now()), evaluated_by = $2
FROM (SELECT id FROM {schema}.alert_rounds
      WHERE id AND evaluated_at <= coalesce($3::timestamptz, now()) - make_interval(secs => $1)
      FOR UPDATE SKIP LOCKED) AS free
WHERE r.id = free.id
RETURNING r.evaluated_at
"""

# Every alert's state. No parameters.
ALERT_STATE_LIST = "SELECT name, state, since, value, detail::text AS detail, evaluated_at FROM {schema}.alert_states"

# Write one alert's state after a round. $1 name, $2 state, $3 since, $4 value, $5 detail
# (jsonb text), $6 the round's time.
ALERT_STATE_SAVE = """
INSERT INTO {schema}.alert_states AS a (name, state, since, value, detail, evaluated_at)
VALUES ($1, $2, $3, $4, $5::text::jsonb, $6)
ON CONFLICT (name) DO UPDATE SET state = excluded.state, since = excluded.since, value = excluded.value,
    detail = excluded.detail, evaluated_at = excluded.evaluated_at
"""

# Record a transition. $1 name, $2 event ('fired' / 'recovered'), $3 value, $4 threshold,
# $5 detail (jsonb text), $6 when.
ALERT_HISTORY_RECORD = """
INSERT INTO {schema}.alert_history (name, event, value, threshold, detail, at)
VALUES ($1, $2, $3, $4, $5::text::jsonb, $6)
"""

# The last $2 transitions of each alert named in $1, newest first: one short range of
# alert_history_name_idx per alert.
ALERT_HISTORY_RECENT = """
SELECT h.name, h.event, h.value, h.threshold, h.detail::text AS detail, h.at
FROM unnest($1::text[]) AS a(name)
CROSS JOIN LATERAL (SELECT * FROM {schema}.alert_history AS x WHERE x.name = a.name
                    ORDER BY x.id DESC LIMIT $2) AS h
ORDER BY h.name, h.id DESC
"""

# Forget transitions older than $1 seconds before the round's time $2 (its last step).
ALERT_HISTORY_PRUNE = "DELETE FROM {schema}.alert_history WHERE at < $2::timestamptz - make_interval(secs => $1)"

# backlog: jobs waiting in queue $1, available or scheduled and due (the stager has not
# moved them yet), each part counted up to $2, on jobs_fetch_idx (queue first) and
# jobs_staging_idx: a huge backlog costs at most $2 index entries. A statement of its own,
# not `$1 IS NULL OR queue = $1`: under a generic plan that term is only a filter, and the
# count read every queue's available jobs (0.7 s at 50,000 of them).
ALERT_METRIC_QUEUE_BACKLOG = """
SELECT (SELECT count(*) FROM (SELECT 1 FROM {schema}.jobs WHERE state = 'available' AND queue = $1 LIMIT $2) AS a)
     + (SELECT count(*) FROM (SELECT 1 FROM {schema}.jobs
                              WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= now() AND queue = $1
                              LIMIT $2) AS d) AS value
"""

# backlog of every queue together: as ALERT_METRIC_QUEUE_BACKLOG without the queue. $1 the cap.
ALERT_METRIC_BACKLOG = """
SELECT (SELECT count(*) FROM (SELECT 1 FROM {schema}.jobs WHERE state = 'available' LIMIT $1) AS a)
     + (SELECT count(*) FROM (SELECT 1 FROM {schema}.jobs
                              WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= now() LIMIT $1) AS d)
       AS value
"""

# Queues with available jobs: a loose index scan over jobs_fetch_idx (one probe per queue).
# no_consumer keeps those no live node runs: no heartbeat within $1 seconds lists them (the
# overview's "no consumer" flag, engine/web/snapshot.py, says the same). $2 one queue (NULL: any).
ALERT_METRIC_NO_CONSUMER = f"""
WITH RECURSIVE {_queue_loose_scan("waiting", "j.state = 'available'")}
SELECT w.queue FROM waiting AS w
WHERE w.queue IS NOT NULL AND ($2::text IS NULL OR w.queue = $2)
  AND NOT EXISTS (SELECT 1 FROM {{schema}}.nodes AS n
                  WHERE w.queue = ANY (n.queues) AND n.heartbeat_at >= now() - make_interval(secs => $1))
ORDER BY w.queue
"""

# The queues that have available jobs (oldest_waiting reads each one's oldest job with
# DASHBOARD_OLDEST_AVAILABLE). Loose index scan, as above. No parameters.
ALERT_WAITING_QUEUES = f"""
WITH RECURSIVE {_queue_loose_scan("waiting", "j.state = 'available'")}
SELECT queue FROM waiting WHERE queue IS NOT NULL ORDER BY queue
"""

# failure_rate from the rollup (migration 010): discarded and finished (completed +
# discarded) jobs of queue $1 (NULL: all) in the minutes of the last $2 seconds. The rollup
# is a minute or two behind, and cheap at any number of jobs; it outlives pruning.
ALERT_METRIC_FAILURE_RATE = """
SELECT coalesce(sum(discarded), 0)::bigint AS failed, coalesce(sum(completed + discarded), 0)::bigint AS finished
FROM {schema}.job_rollup
WHERE minute >= now() - make_interval(secs => $2) AND ($1::text IS NULL OR queue = $1)
"""

# failure_rate of definition $1 (the rollup has no definitions): among its newest $3 jobs,
# those that finished in the last $2 seconds. Bounded: jobs_definition_idx, $3 rows at most.
ALERT_METRIC_DEFINITION_FAILURE_RATE = """
SELECT count(*) FILTER (WHERE state = 'discarded')::bigint AS failed, count(*)::bigint AS finished
FROM (SELECT state, coalesce(completed_at, discarded_at) AS finished_at FROM {schema}.jobs
      WHERE meta ? 'definition' AND meta ->> 'definition' = $1
      ORDER BY meta ->> 'definition', id DESC LIMIT $3) AS recent
WHERE state IN ('completed', 'discarded') AND finished_at >= now() - make_interval(secs => $2)
"""

# node_lost: nodes that stopped heartbeating: still listed but silent over $1 seconds (the
# rescue window), or departed as lost in the last $2 seconds and not back since. $3 one
# queue the node ran (NULL: any).
ALERT_METRIC_NODE_LOST = """
SELECT DISTINCT name FROM (
    SELECT n.name FROM {schema}.nodes AS n
    WHERE n.heartbeat_at < now() - make_interval(secs => $1) AND ($3::text IS NULL OR $3 = ANY (n.queues))
    UNION ALL
    SELECT d.name FROM {schema}.departed_nodes AS d
    WHERE d.reason = 'lost' AND d.departed_at >= now() - make_interval(secs => $2)
      AND ($3::text IS NULL OR $3 = ANY (d.queues))
      AND NOT EXISTS (SELECT 1 FROM {schema}.nodes AS n
                      WHERE n.name = d.name AND n.heartbeat_at >= now() - make_interval(secs => $1))
) AS lost ORDER BY name
"""

# cron_missed: the enabled cron definitions (or only $1) with what says whether a slot went
# by unclaimed: the schedule, the last slot claimed and when the entry became active. The
# schedule math is Python's (engine/cron/schedule.py, missed_slot).
ALERT_CRON_ENTRIES = """
SELECT name, schedule, timezone, last_slot, active_since FROM {schema}.cron_entries
WHERE enabled AND trigger_type = 'cron' AND ($1::text IS NULL OR name = $1)
ORDER BY name
"""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Statements:
    """The statements above, rendered for one schema, plus its channel names. Each one is
    declared here so that a misspelled statement name fails type checking;
    tests/engine/test_sql.py keeps this list and the module's statements in step."""

    schema: str
    insert_channel: str
    control_channel: str
    MIGRATION_LOCK: str
    MIGRATION_TABLE_CREATE: str
    MIGRATION_LIST_APPLIED: str
    MIGRATION_RECORD: str
    JOB_INSERT_MANY: str
    JOB_INSERT_MANY_PLAIN: str
    JOB_GET_BY_UNIQUE_KEYS: str
    JOB_FETCH_AVAILABLE: str
    JOB_SET_STATE_IF_EXECUTING: str
    JOB_COMPLETE_IF_EXECUTING: str
    JOB_RELEASE_EXECUTING: str
    JOB_STAGE_DUE: str
    JOB_MAKE_DUE: str
    JOB_NEXT_DUE_IN: str
    JOB_RESCUE_ORPHANED: str
    JOB_RETURN_LEASE_LOST: str
    JOB_PRUNE_FINISHED: str
    JOB_GET: str
    JOB_CANCEL: str
    JOB_RETRY: str
    JOB_DELETE: str
    QUEUE_STATS: str
    QUEUE_SET_PAUSED: str
    QUEUE_SET_CONCURRENCY: str
    QUEUE_LIST_CONTROLS: str
    NODE_HEARTBEAT: str
    NODE_DELETE: str
    NODE_DELETE_STALE: str
    NODE_LIST: str
    CRON_UPSERT_CONFIG: str
    CRON_INSERT: str
    CRON_UPDATE: str
    CRON_SET_ENABLED: str
    CRON_DELETE: str
    CRON_LIST: str
    CRON_CLAIM_SLOT: str
    CRON_SET_LAST_JOB: str
    DASHBOARD_QUEUE_NAMES: str
    DASHBOARD_QUEUE_COUNTS: str
    DASHBOARD_ESTIMATE_COUNT: str
    DASHBOARD_OLDEST_AVAILABLE: str
    DASHBOARD_THROUGHPUT: str
    DASHBOARD_JOB_CHILDREN: str
    DASHBOARD_JOB_RETRY_MANY: str
    DASHBOARD_JOB_RUN_NOW_MANY: str
    DASHBOARD_JOB_CANCEL_WAITING_MANY: str
    DASHBOARD_JOB_DELETE_MANY: str
    DASHBOARD_PLAN_CUSTOM: str
    QUEUE_LIMIT_CREATE: str
    QUEUE_LIMIT_LOCK: str
    JOB_FETCH_LIMITED: str
    DEPENDENCY_LOCK: str
    DEPENDENCY_ATTACH: str
    DEPENDENCY_RESOLVE_DEPENDENTS: str
    DEPENDENCY_RESOLVE_JOBS: str
    DEPENDENCY_LIST_SETTLED: str
    NOTIFY: str
    USER_INSERT: str
    USER_LIST: str
    USER_GET: str
    USER_LOCK_ADMINS: str
    USER_COUNT_OTHER_ADMINS: str
    USER_DELETE: str
    USER_SET_PASSWORD: str
    USER_UPDATE: str
    TOKEN_INSERT: str
    TOKEN_REVOKE: str
    TOKEN_LIST: str
    TOKEN_LOOKUP: str
    TOKEN_TOUCH: str
    SESSION_INSERT: str
    SESSION_GET: str
    SESSION_DELETE: str
    SESSION_DELETE_FOR_USER: str
    SESSION_PRUNE_EXPIRED: str
    AUDIT_INSERT: str
    AUDIT_LIST: str
    AUDIT_PRUNE: str
    DEFINITION_LIST: str
    DEFINITION_PAGE: str
    DEFINITION_FACETS: str
    DEFINITION_INSERT: str
    DEFINITION_REPLACE: str
    DEFINITION_SET_ENABLED: str
    DEFINITION_RECORD_RUN: str
    DEFINITION_LOCK_JOB: str
    DEFINITION_PENDING_ONCE: str
    DEFINITION_CLAIM_ONCE: str
    DEFINITION_RUNS: str
    DEFINITION_TALLY: str
    JOB_EDIT_WAITING: str
    MIGRATION_TRY_SESSION_LOCK: str
    MIGRATION_SESSION_UNLOCK: str
    NODE_RECORD_RESCUED: str
    NODE_DEPARTED_PRUNE: str
    DASHBOARD_NODES: str
    DASHBOARD_DEPARTED_NODES: str
    ROLLUP_FINISHED: str
    ROLLUP_PRUNE: str
    ROLLUP_CHART_COUNTS: str
    ROLLUP_CHART_HISTOGRAMS: str
    ROLLUP_CHART_NAMES: str
    ROLLUP_MARK: str
    ATTEMPT_LOG_WRITE: str
    ATTEMPT_LOG_LIST: str
    ATTEMPT_LOG_PROGRESS: str
    ATTEMPT_LOG_PRUNE: str
    JOB_FETCH_AVAILABLE_EXCEPT: str
    JOB_CONFIRM_STOPPED: str
    JOB_CONFIRM_STOPPED_OF_SILENT: str
    JOB_LIST_STOPPING_OF_NODE: str
    JOB_STOPPING_ON: str
    JOB_UNIQUE_HOLDERS: str

    JOB_INSERT_MANY_IDS: str
    ALERT_ROUND_TAKE: str
    ALERT_STATE_LIST: str
    ALERT_STATE_SAVE: str
    ALERT_HISTORY_RECORD: str
    ALERT_HISTORY_RECENT: str
    ALERT_HISTORY_PRUNE: str
    ALERT_METRIC_BACKLOG: str
    ALERT_METRIC_QUEUE_BACKLOG: str
    ALERT_METRIC_NO_CONSUMER: str
    ALERT_WAITING_QUEUES: str
    ALERT_METRIC_FAILURE_RATE: str
    ALERT_METRIC_DEFINITION_FAILURE_RATE: str
    ALERT_METRIC_NODE_LOST: str
    ALERT_CRON_ENTRIES: str

    def __init__(self, schema: str, rendered: dict[str, str]) -> None:
        self.schema = schema
        self.insert_channel = f"{schema}.jobs_inserted"
        self.control_channel = f"{schema}.control"
        for name, text in rendered.items():
            setattr(self, name, text)


def statement_names() -> list[str]:
    """Every statement of this module: its public upper-case ``str`` constants."""
    return [name for name, value in globals().items()
            if name.isupper() and not name.startswith("_") and isinstance(value, str) and name != "JOB_COLUMNS"]


def render(schema: str) -> Statements:
    """Statements for ``schema``."""
    quoted = quote_ident(schema)
    source = globals()
    return Statements(schema, {
        name: source[name].replace("{{}}", "\0").replace("{schema}", quoted).replace("\0", "{}")
        for name in statement_names()
    })


def render_migration(text: str, schema: str) -> str:
    return text.replace("{schema}", quote_ident(schema))

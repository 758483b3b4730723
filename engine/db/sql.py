"""Every SQL statement jobengine runs, named by table and action.

Statements are templates: ``{schema}`` is replaced by the quoted schema name once,
when :func:`render` builds a :class:`Statements` for an engine. Parameters are
positional (``$1``...); each statement's comment lists them.
"""

from __future__ import annotations


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
JOB_FETCH_AVAILABLE = """
WITH picked AS (
    SELECT id FROM {schema}.jobs
    WHERE state = 'available' AND queue = $1
    ORDER BY priority DESC, scheduled_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.jobs AS j
SET state = 'executing', attempt = j.attempt + 1, attempted_at = now(), attempted_by = $3
FROM picked WHERE j.id = picked.id
RETURNING """ + _job_columns("j")

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
    WHERE id = $1 AND state <> 'executing'
    RETURNING id, queue
)
SELECT id, pg_notify($2, queue) FROM retried
"""

# Delete a job that is not executing. $1 id.
JOB_DELETE = "DELETE FROM {schema}.jobs WHERE id = $1 AND state <> 'executing' RETURNING id"

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

# Register or heartbeat this node. $1 name, $2 queues, $3 meta.
NODE_HEARTBEAT = """
INSERT INTO {schema}.nodes (name, queues, meta) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE SET heartbeat_at = now(), queues = excluded.queues
"""

# Forget this node on clean shutdown. $1 name.
NODE_DELETE = "DELETE FROM {schema}.nodes WHERE name = $1"

# Forget nodes silent for more than $1 seconds (their jobs were rescued already).
NODE_DELETE_STALE = "DELETE FROM {schema}.nodes WHERE heartbeat_at < now() - make_interval(secs => $1)"

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

# Every entry with its last job's state (NULL once pruned); $1 true: enabled ones only.
CRON_LIST = """
SELECT c.name, c.schedule, c.timezone, c.job::text AS job, c.enabled, c.overlap, c.catch_up, c.source,
       c.active_since, c.last_slot, c.last_job_id, c.updated_at, j.state AS last_job_state
FROM {schema}.cron_entries AS c LEFT JOIN {schema}.jobs AS j ON j.id = c.last_job_id
WHERE c.enabled OR NOT $1
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

# Record the job inserted for the claimed slot. $1 name, $2 job id.
CRON_SET_LAST_JOB = "UPDATE {schema}.cron_entries SET last_job_id = $2 WHERE name = $1"

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
# (NULL: all). The predicate is jobs_finished_idx's expression: an index range scan.
DASHBOARD_THROUGHPUT = """
SELECT date_trunc('minute', coalesce(completed_at, cancelled_at, discarded_at)) AS minute,
       count(*) FILTER (WHERE state = 'completed')::bigint AS completed,
       count(*) FILTER (WHERE state = 'discarded')::bigint AS failed
FROM {schema}.jobs
WHERE state IN ('completed', 'discarded')
  AND coalesce(completed_at, cancelled_at, discarded_at) >= date_trunc('minute', now()) - make_interval(mins => $1 - 1)
  AND ($2::text IS NULL OR queue = $2)
GROUP BY 1 ORDER BY 1
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
    WHERE id = ANY ($1::bigint[]) AND state <> 'executing'
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
DELETE FROM {schema}.jobs WHERE id = ANY ($1::bigint[]) AND state <> 'executing' RETURNING id
"""

# Job pages: filters combine freely, so the statement is assembled here from fixed
# fragments (values are always parameters). With a queue or state filter the page is a
# merge of one branch per (queue, state) pair, each an index range on jobs_queue_listing_idx
# (or jobs_executing_queue_idx) already in id order: a rare state among a million rows
# costs what that state holds. Without one, it merges a branch of the jobs at rest
# (`state <> 'executing'`: jobs_kind_listing_idx, jobs_tags_listing_idx or the primary
# key) and one of the executing jobs (their small index). Run it with plan_cache_mode =
# force_custom_plan: a generic plan cannot tell a rare state from a common one, would
# walk the primary key backwards through the table, and could not match the partial
# indexes against a parameter state. A tag filter repeats jobs_tags_listing_idx's
# `cardinality(tags) <> 0` (migration 005 says why not `tags <> '{}'`).
DASHBOARD_JOB_FILTERS = {
    "kind": "j.kind = ${n}::text",
    "tag": "j.tags @> ARRAY[${n}::text] AND cardinality(j.tags) <> 0",
    "before": "j.id < ${n}::bigint",
    "after": "j.id > ${n}::bigint",
}
# Text search reads at most this many newest rows matching the other filters (split over
# the branches): a search for a rare string answers in bounded time.
DASHBOARD_SEARCH_SCAN_LIMIT = 50_000
DASHBOARD_PLAN_CUSTOM = "SET LOCAL plan_cache_mode = force_custom_plan"


def dashboard_job_page(schema: str, filters: list[str], *, pairs: int, search: bool, ascending: bool) -> str:
    """The SQL of a job page. Parameters: a queue and a state for each of ``pairs``
    branches ($1, $2, $3, $4, ...; 0 pairs: no queue/state filter); then one per name in
    ``filters``, in order; then the ILIKE pattern (already escaped) when ``search``; last
    the page size.

    Example::

        dashboard_job_page("jobengine", ["kind"], pairs=0, search=False, ascending=False)
    """
    order = "ASC" if ascending else "DESC"
    n = 2 * pairs
    terms = []
    for name in filters:
        n += 1
        terms.append(DASHBOARD_JOB_FILTERS[name].replace("{n}", str(n)))
    pattern, limit = (f"${n + 1}::text", f"${n + 2}::int") if search else ("", f"${n + 1}::int")
    scan = DASHBOARD_SEARCH_SCAN_LIMIT // (pairs or 2)  # no pairs: the at-rest and executing branches

    def branch(extra: list[str]) -> str:
        where = " AND ".join([*extra, *terms]) or "true"
        inner = f"SELECT j.* FROM {{schema}}.jobs AS j WHERE {where} ORDER BY j.id {order}"
        if search:
            inner = (f"SELECT j.* FROM ({inner} LIMIT {scan}) AS j "
                     f"WHERE j.args::text ILIKE {pattern} ORDER BY j.id {order}")
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
    JOB_INSERT_MANY_IDS: str

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

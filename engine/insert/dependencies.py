"""Job dependencies (``dependsOn``): a job that runs only once other jobs completed.

A job with dependencies is inserted ``scheduled`` at a far-future time (so neither the
stager nor a claim ever sees it) with ``waiting_for`` listing the ids still to complete.
Settling is done by the database, one waiting row locked at a time (see
``engine.db.sql._resolve_dependents``, run by engine/db/dependency_rows.py):

- when a dependency completes (in the ack, :meth:`JobStore.finish`), it is removed from
  the list; an empty list releases the job, due at the later of its own ``delay`` /
  ``scheduledAt`` and now;
- when a dependency is discarded, cancelled or deleted, the job is cancelled with the
  reason ``dependency 42 was discarded``, and so are the jobs waiting for it, in turn.

At insert the dependencies are locked (``FOR NO KEY UPDATE NOWAIT``) and marked
``has_dependents``: a dependency cannot finish unseen between the insert's check and its
commit, and the ack of a job nobody waits for does no dependency work at all.
:class:`engine.maintenance.sweeper.DependencySweeper` is the backstop for finishes that bypass the ack (a poison pill
discarded by the rescue, bulk cancel or delete from the dashboard, plain SQL).

Example::

    extract = await engine.enqueue("extract", {"day": "2024-01-15"})
    load = await engine.enqueue("load", {}, depends_on=[extract.id])   # waits, then runs
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.core.errors import EnqueueError
from engine.core.job import JobSpec
from engine.db.rows import InsertRow

__all__ = ["FAR_FUTURE", "MAX_DEPENDENCIES", "make_waiting"]

# Where a waiting job's scheduled_at sits: finite, so every duration computed from it
# stays in range on any supported Postgres (infinity arithmetic errors before 17).
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)
MAX_DEPENDENCIES = 1_000


def make_waiting(spec: JobSpec, row: InsertRow, *, now: datetime | None = None) -> None:
    """Turn ``row`` (built from ``spec``) into the insert row of a waiting job: the sorted,
    de-duplicated ids in ``meta.depends_on``, its own due time kept in ``meta.due_at``,
    and ``scheduled_at`` far in the future until it is released.

    Example::

        row = inserter.row(JobSpec(kind="load", args={}, depends_on=(7, 3)))
        row.meta["depends_on"]   # [3, 7]
    """
    ids = []
    for value in spec.depends_on:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise EnqueueError(f"dependsOn: {value!r} is not a job id (a positive integer)")
        ids.append(value)
    ids = sorted(set(ids))
    if len(ids) > MAX_DEPENDENCIES:
        raise EnqueueError(f"dependsOn: at most {MAX_DEPENDENCIES} jobs, got {len(ids)}")
    current = now or datetime.now(UTC)
    due = spec.scheduled_at or current + timedelta(seconds=spec.delay or 0.0)
    row.meta = {**row.meta, "depends_on": ids, "due_at": due.isoformat()}
    row.scheduled_at = FAR_FUTURE.isoformat()
    row.delay = None

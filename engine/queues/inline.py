"""Inline mode, for tests (like Oban's ``testing: :inline``): ``enqueue`` runs each job at once,
in the caller's task, through the real executor, and returns it finished; no database.

Args are validated and defaults applied as for a real insert; the attempt renders placeholders,
checks the condition and runs the handler under its timeout. Chains (``onSuccess``,
``onFailure``) run at once after their parent. There is no retry, no scheduling (``delay`` and
``scheduledAt`` are ignored) and no uniqueness; ``dependsOn`` is refused (nothing can wait).

Example::

    engine = Engine(config=config, inline=True)
    job = await engine.enqueue("greet", {"name": "ada"})
    assert job.state == "completed" and job.result == "hello ada"
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from engine.core.errors import EnqueueError
from engine.core.job import Job, JobState
from engine.db.rows import InsertRow
from engine.queues.executor import Executor

INLINE_NODE = "inline"
MAX_CHAIN_DEPTH = 100  # a chain that enqueues itself forever stops here


class InlineRunner:
    """Runs insert rows as finished jobs; ``performed`` lists every job run, chains included."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.performed: list[Job] = []
        self._ids = itertools.count(1)

    async def run(self, rows: Sequence[InsertRow]) -> list[Job]:
        waiting = [row.kind for row in rows if row.depends_on]
        if waiting:
            raise EnqueueError(f"dependsOn ({waiting[0]!r}): inline mode runs each job at once, so none can "
                               "wait for another; test dependencies on a database with engine.testing.drain")
        return [await self._run(row, depth=0) for row in rows]

    async def _run(self, row: InsertRow, depth: int) -> Job:
        now = datetime.now(UTC)
        job = Job(id=next(self._ids), queue=row.queue, kind=row.kind, args=row.args, state=JobState.EXECUTING,
                  priority=row.priority, attempt=1, max_attempts=row.max_attempts, scheduled_at=now,
                  inserted_at=now, attempted_at=now, attempted_by=INLINE_NODE, tags=list(row.tags),
                  meta=row.meta, timeout=row.timeout, unique_key=row.unique_key)
        ack = await self.executor.execute(job)
        done = replace(job, state=ack.state, result=ack.result, errors=[ack.error] if ack.error else [],
                       attempt=0 if ack.refund else 1,
                       completed_at=datetime.now(UTC) if ack.state == JobState.COMPLETED else None)
        self.performed.append(done)
        if depth < MAX_CHAIN_DEPTH:
            for followup in ack.followups:
                await self._run(followup, depth + 1)
        return done

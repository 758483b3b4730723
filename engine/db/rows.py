"""The typed values the store takes and gives besides jobs: insert rows and what a
limited claim saw."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from engine.core.errors import EnqueueError
from engine.core.job import Job, JobState
from engine.db.connection import json_text


@dataclass(slots=True)
class InsertRow:
    """One job to insert, validated and with its defaults applied (built by
    :class:`engine.insert.inserter.Inserter`; written by :meth:`engine.db.store.JobStore.insert`).

    ``args_json`` is the inserter's encoding of ``args`` (reused: it had to be measured);
    ``scheduled_at`` is an ISO time or None (then ``delay`` seconds from the database's now).
    """

    queue: str
    kind: str
    args: dict[str, Any]
    priority: int
    max_attempts: int
    timeout: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    args_json: str | None = None
    scheduled_at: str | None = None
    delay: float | None = None
    tags: list[str] = field(default_factory=list)
    unique_key: str | None = None
    unique_states: list[str] | None = None

    @property
    def depends_on(self) -> list[int]:
        """The ids this row waits for (empty for an ordinary job); see engine/insert/dependencies.py."""
        return list(self.meta.get("depends_on") or ()) if "due_at" in self.meta else []

    def held_by(self, job: Job | None) -> bool:
        """True when ``job`` still holds the unique key this row asked for."""
        return job is not None and job.state in (self.unique_states or ())


def insert_columns(rows: Sequence[InsertRow]) -> list[list[Any]]:
    """JOB_INSERT_MANY's twelve column arrays; empty meta and tags skip the encoder."""
    columns: list[list[Any]] = [[] for _ in range(12)]
    (queue, kind, args, meta, priority, max_attempts, timeout, scheduled_at, delay, tags,
     unique_key, unique_states) = columns
    for row in rows:
        queue.append(row.queue)
        kind.append(row.kind)
        args.append(row.args_json or json_text(row.args))
        meta.append(json_text(row.meta) if row.meta else "{}")
        priority.append(row.priority)
        max_attempts.append(row.max_attempts)
        timeout.append(row.timeout)
        scheduled_at.append(row.scheduled_at)
        delay.append(row.delay)
        tags.append(json_text(row.tags) if row.tags else None)
        unique_key.append(row.unique_key)
        unique_states.append(json_text(row.unique_states) if row.unique_states else None)
    return columns


def compact_insert_columns(rows: Sequence[InsertRow]) -> list[Any]:
    """JOB_INSERT_MANY_IDS's parameters for plain rows: ten column arrays, then ten scalars.
    A column with one value in every row goes as ``[]`` plus that value (args always in full)."""
    queue, kind, args, meta, priority, max_attempts, timeout, scheduled_at, delay, tags, _, _ = insert_columns(rows)
    arrays: list[Any] = []
    scalars: list[Any] = []
    for index, column in enumerate((queue, kind, args, meta, priority, max_attempts, timeout, scheduled_at, delay,
                                    tags)):
        first = column[0]
        # All None compacts too: coalesce(NULL, NULL) is the NULL the column holds.
        if index != 2 and column.count(first) == len(column):
            arrays.append([])
            scalars.append(first)
        else:
            arrays.append(column)
            scalars.append(None)
    return arrays + scalars


def inserted_jobs(rows: Sequence[InsertRow], records: Sequence[asyncpg.Record]) -> list[Job]:
    """Jobs for the rows JOB_INSERT_MANY inserted, from the rows themselves plus what Postgres
    set (id, state, times). Records come in id order: plain rows in input order, unique
    rows matched by key (a key repeated in one batch is inserted once, for its first row)."""
    plain = iter([row for row in rows if not row.unique_key])
    keyed: dict[str, InsertRow] = {}
    for row in rows:
        if row.unique_key:
            keyed.setdefault(row.unique_key, row)
    jobs = []
    for r in records:
        key = r["unique_key"]
        row = keyed[key] if key is not None else next(plain)
        jobs.append(Job(id=r["id"], queue=row.queue, kind=row.kind, args=row.args, state=JobState(r["state"]),
                        priority=row.priority, max_attempts=row.max_attempts, scheduled_at=r["scheduled_at"],
                        inserted_at=r["inserted_at"], tags=list(row.tags or ()), meta=row.meta,
                        timeout=row.timeout, unique_key=key))
    return jobs


def missing_dependencies(wanted: Sequence[int], found: Mapping[int, str]) -> EnqueueError | None:
    """The error for dependency ids that name no job (never inserted, or pruned)."""
    missing = [job_id for job_id in wanted if job_id not in found]
    if not missing:
        return None
    listed = ", ".join(str(job_id) for job_id in missing[:10])
    return EnqueueError(f"dependsOn: no job with id {listed} (never inserted, or already pruned)")


@dataclass(frozen=True, slots=True)
class ClaimWindow:
    """What a limited claim saw under the lock: the quota it computed, the attempts
    already started in the rate window (and when the oldest of them started), the jobs
    executing on all nodes, and the database clock."""

    quota: int
    recent: int
    oldest: datetime | None
    running: int
    clock: datetime

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> ClaimWindow:
        return cls(quota=record["quota"], recent=record["recent"], oldest=record["oldest"],
                   running=record["running"], clock=record["clock"])

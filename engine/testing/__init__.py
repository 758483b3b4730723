"""Helpers for testing your handlers and the code that enqueues jobs (like Oban.Testing).

Example::

    from engine.testing import perform_job, assert_enqueued, drain

    async def test_resize():
        assert await perform_job("resize-image", {"width": 640}) == {"width": 640}

    async def test_signup_enqueues_mail(engine):
        await signup(engine, "a@example.com")
        await assert_enqueued(engine, kind="mail", args={"to": "a@example.com"})
        assert (await drain(engine, "default"))["completed"] == 1
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import anyio

from engine.core.config import Config, build_config
from engine.core.context import Resources
from engine.core.events import Events
from engine.core.job import FINISHED_STATES, Job, JobSpec
from engine.core.registry import Registry, default_registry
from engine.core.secrets import Secrets
from engine.engine import Engine
from engine.insert.followups import Followups
from engine.insert.inserter import Inserter
from engine.queues.executor import Completed, Executor, Failed, Outcome

DRAIN_NODE = "engine.testing.drain"


async def perform_job(kind: str, args: dict[str, Any] | None = None, *, registry: Registry | None = None,
                      config: Config | None = None, secrets: Mapping[str, str] | None = None,
                      vars: dict[str, Any] | None = None, attempt: int = 1, max_attempts: int = 20,
                      meta: dict[str, Any] | None = None) -> Any:
    """Run one attempt of a job through the real executor, without a database.

    Args are validated as at enqueue, placeholders rendered, the condition checked, the
    handler run under its timeout. Returns the handler's value (or the Snooze / Cancel /
    Discard it returned); re-raises what the handler raised.
    """
    registry = registry or default_registry
    config = config or build_config({})
    secret_store = Secrets(dict(secrets or {}))
    inserter = Inserter(registry, secret_store)
    row = inserter.row(JobSpec(kind=kind, args=args or {}, vars=vars or {}))
    now = datetime.now(UTC)
    job = Job(id=0, queue=row.queue, kind=kind, args=row.args, attempt=attempt, max_attempts=max_attempts,
              meta={**row.meta, **(meta or {})}, timeout=row.timeout, scheduled_at=now, attempted_at=now)
    resources = Resources(config)
    executor = Executor(registry=registry, resources=resources, secrets=secret_store,
                        followups=Followups(inserter, config), events=Events())
    try:
        outcome: Outcome = await executor.perform(job)
    finally:
        await resources.aclose()
    match outcome:
        case Completed(value):
            return value
        case Failed(error, _trace):
            raise error
    return outcome


def _matches(job: Job, kind: str | None, queue: str | None, args: Mapping[str, Any] | None,
             state: str | None) -> bool:
    if kind is not None and job.kind != kind:
        return False
    if queue is not None and job.queue != queue:
        return False
    if state is not None and job.state != state:
        return False
    return args is None or all(job.args.get(key) == value for key, value in args.items())


async def _find(engine: Engine, kind: str | None, queue: str | None, args: Mapping[str, Any] | None,
                state: str | None) -> list[Job]:
    jobs = await engine.list_jobs(kind=kind, queue=queue, state=state, limit=1_000)
    return [job for job in jobs if _matches(job, kind, queue, args, state)]


async def assert_enqueued(engine: Engine, *, kind: str | None = None, queue: str | None = None,
                          args: Mapping[str, Any] | None = None, state: str | None = None,
                          timeout: float = 0.0) -> Job:
    """Assert a job matching the filters exists (``args`` matches as a subset); wait up to
    ``timeout`` seconds for it. Returns the newest match."""
    with anyio.move_on_after(timeout):
        # Another process may insert the job: only polling the table can see it.
        while not (found := await _find(engine, kind, queue, args, state)):  # noqa: ASYNC110
            await anyio.sleep(0.02)
    found = await _find(engine, kind, queue, args, state)
    if not found:
        raise AssertionError(f"no job enqueued matching kind={kind!r} queue={queue!r} args={args!r} state={state!r}")
    return found[0]


async def refute_enqueued(engine: Engine, *, kind: str | None = None, queue: str | None = None,
                          args: Mapping[str, Any] | None = None, state: str | None = None) -> None:
    """Assert no job matching the filters exists."""
    found = await _find(engine, kind, queue, args, state)
    if found:
        raise AssertionError(f"expected no job matching kind={kind!r} args={args!r}, found job {found[0].id}")


async def drain(engine: Engine, queue: str = "default", *, with_scheduled: bool = False,
                max_rounds: int = 100) -> dict[str, int]:
    """Run every available job of ``queue`` now, one at a time, through the real executor,
    including jobs they enqueue (chains). Returns counts of the resulting states."""
    store = engine.store
    if store is None:
        raise RuntimeError("engine not started")
    counts: Counter[str] = Counter()
    for _ in range(max_rounds):
        # Heartbeat as a node, so a processing engine on the same schema never rescues
        # the jobs drain is running.
        await store.heartbeat(DRAIN_NODE, [queue], {"drain": True})
        if with_scheduled:
            await store.make_due(queue)
        await store.stage_due()
        jobs = await store.fetch(queue, 100, DRAIN_NODE)
        if not jobs:
            break
        for job in jobs:
            ack = await engine.executor.execute(job)
            await store.finish([ack])
            counts[ack.state] += 1
    await store.delete_node(DRAIN_NODE)
    return dict(counts)


async def wait_for_job(engine: Engine, job_id: int, *, states: frozenset[str] | set[str] = FINISHED_STATES,
                       timeout: float = 10.0) -> Job:
    """Poll until job ``job_id`` is in one of ``states`` (default: finished); return it."""
    with anyio.fail_after(timeout):
        while True:
            job = await engine.get(job_id)
            if job is not None and job.state in states:
                return job
            await anyio.sleep(0.02)

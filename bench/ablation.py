"""Undo one optimisation at a time, to measure what each bought (docs/performance.md).

Each switch puts back, in this process only, the code as it was before that change:

- ``pool_reset``: asyncpg's default pool reset query after every fetch and ack
  (``RESET ALL; UNLISTEN *; CLOSE ALL; pg_advisory_unlock_all()``).
- ``ack_transaction``: every ack batch in BEGIN ... COMMIT, even a single statement.
- ``executor_slow_path``: the placeholder scope, context, timeout scope, JSON check of the
  result and two Ack objects built for every job, whatever the handler needs.
- ``anyio_job_tasks``: one anyio task per job instead of plain asyncio tasks.
- ``json_decode_empty``: empty args/meta/errors decoded with json.loads on every claim.
- ``insert_returning_all``: the bulk insert returns whole rows, decoded into Jobs.
- ``insert_on_conflict``: every bulk insert carries ON CONFLICT, with or without unique keys.
- ``claim_by_name``: claimed rows decoded column by column by name (``Job.from_record``).

And one proposal (a change to a file the bench does not own), measurable the same way:
``stager_quiet``: inserts wake their producer only, not the stager.

Used through an engine option: ``--option 'jobengine.ablate=["pool_reset"]'``, or all at
once, in interleaved rounds, keeping each configuration's best run (interference from
other processes only ever slows a run down)::

    .venv/bin/python -m bench.ablation --rounds 5

Example::

    apply(["pool_reset", "ack_transaction"])   # before the Engine is built
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import anyio

from engine.core.job import Job
from engine.db import sql
from engine.db import store as queue_module
from engine.queues import executor as executor_module


def _pool_reset() -> None:
    queue_module._keep_session = None  # type: ignore[assignment]  # create_pool(reset=None): the default


def _ack_transaction() -> None:
    async def finish(self: Any, acks: Sequence[Any]) -> set[int]:
        async with self.pool.acquire() as conn, conn.transaction():
            applied = await self._set_states(conn, acks)
            followups = [row for a in acks if a.job_id in applied for row in a.followups]
            if followups:
                await self.insert(followups, conn=conn)
            await self._settle_dependents_of(conn, acks, applied)
        return set(applied)

    queue_module.JobStore.finish = finish  # type: ignore[method-assign]


def _executor_slow_path() -> None:
    Executor = executor_module.Executor

    async def perform(self: Any, job: Job) -> Any:
        try:
            spec = self.registry.get(job.kind)
            context = self._context(job)
            verdict = self._check_condition(job, context.scope)
            if verdict is not None:
                return verdict
            args = executor_module._render(job.args, context.scope) if spec.render_args else job.args
            view = replace(job, args=executor_module._validate(spec, args) if spec.render_args else args)
            value = await _run(self, spec, view, context)
            return _check_value(value)
        except Exception as exc:
            return executor_module.Failed(exc, traceback.format_exc())

    async def _run(self: Any, spec: Any, job: Job, context: Any) -> Any:
        timeout = job.timeout if job.timeout is not None else spec.timeout
        with anyio.fail_after(timeout if timeout else math.inf):
            if spec.takes_context:
                return await spec.func(job, context)
            return await spec.func(job)

    def _check_value(value: Any) -> Any:
        if isinstance(value, executor_module.Snooze | executor_module.Cancel | executor_module.Discard):
            return value
        json.dumps(value, allow_nan=False)
        return executor_module.Completed(value)

    fast_to_ack = Executor.to_ack

    def to_ack(self: Any, job: Job, outcome: Any) -> Any:
        if type(outcome) is not executor_module.Completed:
            return fast_to_ack(self, job, outcome)
        base = queue_module.Ack(job_id=job.id, attempt=job.attempt,
                                attempted_at=job.attempted_at or datetime.now(UTC), state="completed")
        text = json.dumps(self.secrets.redact(outcome.value), ensure_ascii=False)
        result = json.loads(text) if len(text) > executor_module.MAX_RESULT_BYTES else outcome.value
        return replace(base, result=result, followups=self.followups.on_completed(job, result))

    Executor.perform = perform  # type: ignore[method-assign]
    Executor.to_ack = to_ack  # type: ignore[method-assign]


def _anyio_job_tasks() -> None:
    from engine.queues.producer import Producer

    async def _run_batch(self: Any, batch: list[Any]) -> None:
        async with anyio.create_task_group() as tasks:
            for running in batch:
                tasks.start_soon(self._run_job, running)

    Producer._run_batch = _run_batch  # type: ignore[method-assign]


def _json_decode_empty() -> None:
    for name in dir(sql):
        value = getattr(sql, name)
        if name.isupper() and isinstance(value, str) and "nullif(" in value:
            for column, empty in (("args", "'{}'"), ("meta", "'{}'"), ("errors", "'[]'")):
                for prefix in ("j.", ""):
                    value = value.replace(f"nullif({prefix}{column}, {empty})::text", f"{prefix}{column}::text")
            setattr(sql, name, value)


def _insert_returning_all() -> None:
    for name in ("JOB_INSERT_MANY", "JOB_INSERT_MANY_PLAIN"):
        setattr(sql, name, getattr(sql, name).replace(
            "RETURNING j.id, j.queue, j.state, j.scheduled_at, j.inserted_at, j.unique_key", "RETURNING j.*"
        ).replace("SELECT id, state, scheduled_at, inserted_at, unique_key FROM inserted",
                  "SELECT " + sql.JOB_COLUMNS + " FROM inserted"))

    def inserted_jobs(rows: Any, records: Any) -> list[Job]:
        return [Job.from_record(r) for r in records]

    queue_module._inserted_jobs = inserted_jobs  # type: ignore[assignment]


def _insert_on_conflict() -> None:
    sql.JOB_INSERT_MANY_PLAIN = sql.JOB_INSERT_MANY


def _claim_by_name() -> None:
    Job.from_claim = Job.from_record  # type: ignore[method-assign]


def _proposal_stager_not_woken_by_inserts() -> None:
    """Inserts wake only their queue's producer, not the stager (which then runs two queries
    per insert notification, concurrently with the claim)."""
    from engine.engine import Engine

    def _on_insert(self: Any, queue_name: str) -> None:
        producer = self.producers.get(queue_name)
        if producer is not None:
            producer.notify()

    Engine._on_insert = _on_insert  # type: ignore[method-assign]


SWITCHES = {
    "pool_reset": _pool_reset,
    "ack_transaction": _ack_transaction,
    "executor_slow_path": _executor_slow_path,
    "anyio_job_tasks": _anyio_job_tasks,
    "json_decode_empty": _json_decode_empty,
    "insert_returning_all": _insert_returning_all,
    "insert_on_conflict": _insert_on_conflict,
    "claim_by_name": _claim_by_name,
}
# Not undos but proposed changes to files this bench does not own, measurable the same way.
PROPOSALS = {"stager_quiet": _proposal_stager_not_woken_by_inserts}
_applied: set[str] = set()


def apply(names: Iterable[str]) -> None:
    """Undo the named optimisations in this process (idempotent)."""
    known = {**SWITCHES, **PROPOSALS}
    for name in names:
        if name not in known:
            raise ValueError(f"unknown ablation {name!r}; known: {', '.join(known)}")
        if name not in _applied:
            known[name]()
            _applied.add(name)


def _measure(names: list[str], jobs: int, latency_jobs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/result.json"
        subprocess.run([sys.executable, "-m", "bench.run", "--engines", "jobengine", "--workloads", "drain,latency",
                        "--jobs", str(jobs), "--latency-jobs", str(latency_jobs), "--quiet", "--out", out,
                        "--option", f"jobengine.ablate={json.dumps(names)}"],
                       check=True, capture_output=True)
        with open(out) as f:
            engine: dict[str, Any] = json.load(f)["engines"]["jobengine"]
    return engine


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ablation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--latency-jobs", type=int, default=100)
    args = p.parse_args()
    configs = [[], *([name] for name in SWITCHES), list(SWITCHES)]
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):
        for names in configs:
            label = "+".join(names) or "(all optimisations)"
            r = _measure(names, args.jobs, args.latency_jobs)
            b = best.setdefault(label, {"rate": 0.0, "enqueue": 0.0, "cpu": math.inf, "pg": math.inf, "p50": math.inf})
            b["rate"] = max(b["rate"], r["drain"]["rate"])
            b["enqueue"] = max(b["enqueue"], r["drain"]["enqueue_rate"])
            b["cpu"] = min(b["cpu"], r["drain"]["cpu_per_1k"] * 1000)
            b["pg"] = min(b["pg"], r["drain"]["pg_cpu_per_1k"] * 1000)
            b["p50"] = min(b["p50"], r["latency"]["p50"])
    print("| undone | drain jobs/s | worker CPU us/job | Postgres CPU us/job | bulk enqueue jobs/s | p50 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, b in best.items():
        print(f"| {label} | {b['rate']:,.0f} | {b['cpu']:.1f} | {b['pg']:.1f} | {b['enqueue']:,.0f} | {b['p50']:.2f} |")


if __name__ == "__main__":
    main()

"""Inline mode: enqueue runs the job at once in the caller's task, through the real executor,
with no database; chains run after their parent; dependsOn is refused."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from engine import Engine, EnqueueError
from engine.core.config import build_config
from engine.core.job import Job
from engine.core.registry import Registry

# Nothing listens here: an inline engine that touched the database would fail.
NOWHERE = "postgresql://nobody@127.0.0.1:1/none"


class Greeting(BaseModel):
    name: str


def inline_registry(seen: list[asyncio.Task[object] | None]) -> Registry:
    registry = Registry()

    @registry.handler("greet", args_model=Greeting)
    async def greet(job: Job) -> str:
        seen.append(asyncio.current_task())
        return f"hello {job.args.name}"

    @registry.handler("fail", max_attempts=3)
    def fail(job: Job) -> None:  # a sync handler runs inline too (in its thread)
        raise RuntimeError("broken")

    return registry


async def test_inline_enqueue_runs_the_job_in_the_callers_task_without_a_database() -> None:
    seen: list[asyncio.Task[object] | None] = []
    config = build_config({"database_url": NOWHERE, "dashboard": {"enabled": False}})
    async with Engine(config=config, registry=inline_registry(seen), inline=True) as engine:
        job = await engine.enqueue("greet", {"name": "ada"}, delay=3600)
        assert (job.state, job.result, job.attempt) == ("completed", "hello ada", 1)
        assert seen == [asyncio.current_task()]
        failed = await engine.enqueue("fail", {})
        assert failed.state == "retryable" and failed.errors[0]["error"] == "RuntimeError: broken"
        with pytest.raises(EnqueueError, match="name"):
            await engine.enqueue("greet", {"name": 5})
        assert [j.kind for j in engine.inline.performed] == ["greet", "fail"]
        with pytest.raises(RuntimeError, match="inline mode has no database"):
            await engine.get(job.id)


async def test_inline_chains_run_after_their_parent_and_depends_on_is_refused() -> None:
    config = build_config({"dashboard": {"enabled": False}})
    engine = Engine(config=config, registry=inline_registry([]), inline=True)
    parent = await engine.enqueue("greet", {"name": "a"},
                                  on_success={"jobType": "greet", "data": {"name": "b"}})
    assert parent.state == "completed"
    assert [(j.kind, j.result) for j in engine.inline.performed] == [("greet", "hello a"), ("greet", "hello b")]
    with pytest.raises(EnqueueError, match="inline mode runs each job at once"):
        await engine.enqueue("greet", {"name": "c"}, depends_on=[parent.id])

"""The acker keeps every outcome it can: a login refused while it opens a connection is a
fault to wait out, never a refusal; NUL bytes and lone surrogates are stored escaped; and
an ack Postgres does refuse becomes a discard that still runs its follow-ups."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import asyncpg
import structlog

from engine.core.acks import Ack
from engine.core.job import Job
from engine.engine import Engine
from engine.queues.acker import Acker
from engine.testing import wait_for_job
from tests.support.scripted import Recorder, scripted_registry
from tests.support.urls import as_user
from tests.support.waiting import wait_until


async def test_an_ack_held_up_by_a_refused_login_lands_once_logins_work_again(make_config, pg_url) -> None:
    # A password rotation, an expired IAM token, a role made NOLOGIN: the pool's next
    # connection fails with SQLSTATE class 28. The completed job must neither be discarded
    # ("result could not be stored") nor run again.
    role = f"je_ack_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f'CREATE ROLE "{role}" LOGIN SUPERUSER')
    recorder, gate = Recorder(), anyio.Event()
    registry = scripted_registry(recorder)

    @registry.handler("held")
    async def held(job: Job) -> Any:
        recorder.start(job)
        await gate.wait()
        recorder.stop(job)
        return {"done": job.attempt}

    url = as_user(pg_url, role)
    try:
        config = make_config(database_url=url, queues={"default": {"concurrency": 2}}, query_timeout=2)
        async with Engine(config=config, registry=registry) as engine:
            job = await engine.enqueue("held", {})
            await wait_until(lambda: recorder.runs[job.id] == 1)
            with structlog.testing.capture_logs() as logs:
                await admin.execute(f'ALTER ROLE "{role}" NOLOGIN')
                await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
                gate.set()
                await wait_until(lambda: any(e["event"] == "ack write failed; retrying"
                                             and "not permitted to log in" in e["error"] for e in logs), timeout=10)
                await admin.execute(f'ALTER ROLE "{role}" LOGIN')
                done = await wait_for_job(engine, job.id, timeout=20)
        assert (done.state, done.attempt, done.result, recorder.runs[job.id]) == ("completed", 1, {"done": 1}, 1)
        assert not [e for e in logs if e["event"].startswith("ack refused")]
    finally:
        await admin.execute(f'ALTER ROLE "{role}" NOLOGIN')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
        await admin.execute(f'REASSIGN OWNED BY "{role}" TO postgres')
        await admin.execute(f'DROP ROLE "{role}"')
        await admin.close()


async def test_nul_bytes_and_lone_surrogates_are_stored_escaped_and_the_attempt_retries(start_engine) -> None:
    recorder = Recorder()
    registry = scripted_registry(recorder)

    @registry.handler("binary", max_attempts=3)
    async def binary(job: Job) -> Any:
        body = b"\x89PNG\x00\xff".decode("utf-8", "surrogateescape")
        if job.args.get("fail"):
            raise RuntimeError(f"503 with a body: {body}")
        return {"body": body}

    engine = await start_engine(registry, queues={"default": {"concurrency": 2}})
    failing = await engine.enqueue("binary", {"fail": True})
    failed = await wait_for_job(engine, failing.id, states={"retryable"}, timeout=10)
    assert failed.attempt == 1 and failed.errors[-1]["error"] == (
        "RuntimeError: 503 with a body: \\udc89PNG\\u0000\\udcff")
    assert "\\u0000" in failed.errors[-1]["traceback"]
    done = await wait_for_job(engine, (await engine.enqueue("binary", {})).id, timeout=10)
    assert (done.state, done.result) == ("completed", {"body": "\\udc89PNG\\u0000\\udcff"})


async def test_a_refused_ack_becomes_a_discard_that_still_runs_its_followups(start_engine, recorder) -> None:
    engine = await start_engine(scripted_registry(recorder))
    job = await engine.enqueue("scripted", {}, queue="elsewhere",
                               on_failure={"jobType": "scripted", "data": {"result": "cleaned up"}})
    (claimed,) = await engine.store.fetch("elsewhere", 1, "node-a")
    acker = Acker(engine.store, on_discarded=engine.executor.followups.on_discarded)
    # Any ack Postgres refuses for itself (here a NUL that jsonb cannot hold, put past the
    # executor's escaping) is isolated, and the job discarded saying why.
    acker.put(Ack.completed(claimed, {"body": "\x00"}))
    await acker.flush()
    discarded = await engine.get(job.id)
    assert discarded.state == "discarded"
    assert discarded.errors[-1]["error"].startswith("result could not be stored: ")
    (child,) = [j for j in await engine.list_jobs(kind="scripted") if j.meta.get("parent_id") == job.id]
    assert child.state == "available" and child.args == {"result": "cleaned up"}

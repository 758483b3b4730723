"""The ``condition`` of a job against real Postgres: the seed's example, evaluation errors,
and an injection corpus refused at enqueue (documents and the Python API) and at run."""

from __future__ import annotations

import json
import time

import asyncpg
import pytest

from engine import EnqueueError
from engine.core.documents import DocumentError
from engine.testing import wait_for_job
from tests.flow.conftest import flow_registry
from tests.support.scripted import Recorder

QUEUES = {"default": {"concurrency": 5}}
SEED = {"condition": "{{serverLoad}} < 50", "jobType": "maintenance-task"}  # verbatim from the seed

INJECTIONS = [
    "__import__('os').system('touch /tmp/pwned')",
    "__import__('os')",
    "().__class__.__bases__[0].__subclasses__()",
    "{{serverLoad}}.__class__.__mro__",
    "open('/etc/passwd').read()",
    "eval('1')",
    "exec('import os')",
    "lambda: 1",
    "[x for x in ()]",
    "1 if True else 0",
    "{{serverLoad}} < 50; import os",
    "9**9**9**9",
    "2 ** 1000000000",
    "10 * 10",
    "{{serverLoad}}[0]",
    "{{a}} = 1",
    "1" + "0" * 40,
    "(" * 5000 + "1" + ")" * 5000,
    "not " * 5000 + "true",
    "{{serverLoad}} < 50 and " * 6000 + "true",  # ~150 kB
    "x" * 100_000,
]


async def test_seed_condition_runs_when_true_and_cancels_when_false(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(flow_registry(recorder), queues=QUEUES)
    low = await engine.enqueue_document({**SEED, "vars": {"serverLoad": 30}})
    high = await engine.enqueue_document({**SEED, "vars": {"serverLoad": 70}})
    ran, skipped = await wait_for_job(engine, low.id), await wait_for_job(engine, high.id)
    assert ran.state == "completed" and ran.result == "maintained"
    assert skipped.state == "cancelled"
    assert skipped.errors[-1]["kind"] == "cancelled"
    assert skipped.errors[-1]["error"] == "condition not met: {{serverLoad}} < 50 (serverLoad=70)"
    assert recorder.started == [low.id]


async def test_condition_reads_the_parent_result_in_a_chain(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(flow_registry(recorder), queues=QUEUES)
    parent = await engine.enqueue_document({
        "jobType": "backup-database",
        "onSuccess": {"jobType": "maintenance-task", "condition": "{{result.sizeMb}} > 100"},
    })
    await wait_for_job(engine, parent.id)
    (child,) = [job for job in await engine.list_jobs() if job.parent_id == parent.id]
    child = await wait_for_job(engine, child.id)
    assert child.state == "cancelled"
    assert child.errors[-1]["error"] == "condition not met: {{result.sizeMb}} > 100 (result.sizeMb=12)"


@pytest.mark.parametrize(("variables", "message"), [
    ({}, "unknown variable(s) {{serverLoad}}"),
    ({"serverLoad": "high"}, "cannot order string and number using <"),
    ({"serverLoad": "0 or 1"}, "cannot order string and number using <"),  # a value never becomes logic
    ({"serverLoad": [1]}, "cannot order list and number using <"),
])
async def test_condition_that_cannot_be_decided_discards_with_a_clear_message(
        start_engine, recorder: Recorder, variables: dict, message: str) -> None:
    engine = await start_engine(flow_registry(recorder), queues=QUEUES)
    job = await engine.enqueue_document({**SEED, "vars": variables})
    done = await wait_for_job(engine, job.id)
    assert done.state == "discarded"
    assert message in done.errors[-1]["error"] and "{{serverLoad}} < 50" in done.errors[-1]["error"]
    assert recorder.started == []


async def test_injection_corpus_is_refused_quickly_at_enqueue(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(flow_registry(recorder))
    slowest = 0.0
    for text in INJECTIONS:
        for via in ("document", "python"):
            started = time.perf_counter()
            with pytest.raises((DocumentError, EnqueueError), match="condition"):
                if via == "document":
                    await engine.enqueue_document({"jobType": "maintenance-task", "condition": text})
                else:
                    await engine.enqueue("maintenance-task", {}, condition=text)
            slowest = max(slowest, time.perf_counter() - started)
    assert slowest < 0.25, f"slowest refusal took {slowest * 1000:.1f} ms"
    assert await engine.stats() == {}
    assert not any(path.name == "pwned" for path in __import__("pathlib").Path("/tmp").iterdir())


async def test_injected_condition_that_reached_the_table_is_discarded_at_run(
        start_engine, recorder: Recorder, pg_url: str, schema: str) -> None:
    """A row written behind the API's back (plain SQL) is checked again when it runs."""
    engine = await start_engine(flow_registry(recorder))
    job = await engine.enqueue_document({**SEED, "vars": {"serverLoad": 30}})
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'UPDATE "{schema}".jobs SET meta = jsonb_set(meta, \'{{condition}}\', $2::jsonb) '
                           "WHERE id = $1", job.id, json.dumps("__import__('os').system('id')"))
    finally:
        await conn.close()
    worker = await start_engine(flow_registry(recorder), queues=QUEUES)
    done = await wait_for_job(worker, job.id)
    assert done.state == "discarded"
    assert done.errors[-1]["error"] == ("ConditionSyntaxError: invalid condition: unexpected character '.' "
                                        "at position 16")
    assert recorder.started == []

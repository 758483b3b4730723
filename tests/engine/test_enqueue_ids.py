"""``Engine.enqueue_many(..., return_ids=True)``: the bulk path that returns ids. It validates
every job as the Job-returning path does, and its jobs run like any other."""

from __future__ import annotations

import json

import asyncpg
import pytest

from engine import EnqueueError, JobSpec
from engine.insert import bulk
from engine.insert.inserter import encode_json
from engine.testing import wait_for_job
from tests.support.scripted import Recorder, scripted_registry
from tests.support.waiting import wait_until

QUEUES = {"default": {"concurrency": 5}, "other": {"concurrency": 5}}


async def test_ids_come_back_in_input_order_and_the_jobs_run(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES)
    specs: list[JobSpec | dict[str, object]] = [JobSpec(kind="scripted", args={"n": n}) for n in range(300)]
    specs.append({"jobType": "scripted", "data": {"n": 300}, "queue": "other", "priority": 5})
    ids = await engine.enqueue_many(specs, return_ids=True)
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 301
    for job_id, n in [(ids[0], 0), (ids[150], 150), (ids[-1], 300)]:
        job = await wait_for_job(engine, job_id)
        assert job.state == "completed" and job.args == {"n": n}
    last = await engine.get(ids[-1])
    assert last is not None and last.queue == "other" and last.priority == 5


async def test_an_invalid_job_refuses_the_whole_batch(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder))
    batch = [JobSpec(kind="scripted", args={"n": 1}), JobSpec(kind="scripted", args={"n": 2}, priority=True),
             JobSpec(kind="no-such-kind", args={})]
    with pytest.raises(EnqueueError, match=r"job #1 \(scripted\): priority must be an integer"):
        await engine.enqueue_many(batch, return_ids=True)
    with pytest.raises(EnqueueError, match=r"job #1 \(scripted\): args contains a NUL byte"):
        await engine.enqueue_many([JobSpec(kind="scripted", args={}), JobSpec(kind="scripted", args={"s": "a\x00b"})],
                                  return_ids=True)
    assert await engine.stats() == {}


async def test_a_unique_duplicate_returns_the_holders_id(start_engine, recorder: Recorder) -> None:
    engine = await start_engine(scripted_registry(recorder))
    first = await engine.enqueue("scripted", {"url": "u"}, unique={"keys": ["url"]})
    ids = await engine.enqueue_many([JobSpec(kind="scripted", args={"url": "u"}, unique={"keys": ["url"]}),
                                     JobSpec(kind="scripted", args={"url": "v"})], return_ids=True)
    assert ids[0] == first.id and ids[1] > first.id


async def test_ids_insert_joins_the_callers_transaction(start_engine, recorder: Recorder, pg_url: str) -> None:
    engine = await start_engine(scripted_registry(recorder))
    conn = await asyncpg.connect(pg_url)
    try:
        transaction = conn.transaction()
        await transaction.start()
        ghosts = await engine.enqueue_many([JobSpec(kind="scripted", args={})] * 3, conn=conn, return_ids=True)
        await transaction.rollback()
    finally:
        await conn.close()
    assert [await engine.get(i) for i in ghosts] == [None, None, None]


def test_args_encode_as_the_standard_encoder_does_and_bad_values_are_refused() -> None:
    value = {"s": "홍길동 \"q\" \\ \n", "n": [1, 2.5, -0.0, 10**30, None, True], "d": {"": {}}, "e": []}
    assert encode_json(value, "args") == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    circular: dict[str, object] = {}
    circular["self"] = circular
    for bad, problem in [({"x": float("nan")}, "Out of range float"), ({"x": {1, 2}}, "not JSON serializable"),
                         (circular, "contains itself")]:
        with pytest.raises(EnqueueError, match=f"args is not JSON: .*{problem}"):
            encode_json(bad, "args")
    assert encode_json({"after": "a refusal"}, "args") == '{"after":"a refusal"}'


async def test_a_batch_split_in_chunks_is_one_transaction(start_engine, recorder: Recorder, pg_url: str,
                                                          schema: str) -> None:
    engine = await start_engine(scripted_registry(recorder))
    size = 2 * bulk.CHUNK + 500  # three chunks
    bad = [JobSpec(kind="scripted", args={"n": n}) for n in range(size)]
    bad[size - 10] = JobSpec(kind="scripted", args={"n": 0}, max_attempts=0)
    with pytest.raises(EnqueueError, match=f"job #{size - 10} \\(scripted\\): max_attempts must be >= 1"):
        await engine.enqueue_many(bad, return_ids=True)
    assert await engine.stats() == {}  # the chunks inserted before the bad one were rolled back

    listener = await asyncpg.connect(pg_url)
    heard: list[str] = []
    await listener.add_listener(f"{schema}.jobs_inserted", lambda *args: heard.append(args[3]))
    try:
        ids = await engine.enqueue_many([JobSpec(kind="scripted", args={"n": n}) for n in range(size)],
                                        return_ids=True)
        await wait_until(lambda: heard, what="the insert notification")
    finally:
        await listener.close()
    assert heard == ["default"]  # one notification for the whole batch, at commit
    assert engine.store is not None
    async with engine.store.pool.acquire() as conn:
        stored = await conn.fetch(f'SELECT id, args FROM "{schema}".jobs ORDER BY id')
    assert [r["id"] for r in stored] == ids
    assert [r["args"]["n"] for r in stored] == list(range(size))

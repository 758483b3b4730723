"""Retrying a unique job whose key another job holds is refused naming the holder, whether
the holder waits or runs; a bulk retry applies the rest and says why it refused that one."""

from __future__ import annotations

import asyncpg
import pytest

from engine import UniqueKeyHeld
from engine.web.actions import bulk_action
from engine.web.auth import Principal, Role
from tests.support.scripted import scripted_registry


async def _discard(pg_url: str, schema: str, job_id: int) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'UPDATE "{schema}".jobs SET state = \'discarded\', discarded_at = now() WHERE id = $1',
                           job_id)
    finally:
        await conn.close()


async def test_retrying_a_job_whose_unique_key_another_job_holds_names_the_holder(
        start_engine, recorder, pg_url: str, schema: str) -> None:
    engine = await start_engine(scripted_registry(recorder))  # insert-only: nothing runs
    first = await engine.enqueue("scripted", {"n": 1}, queue="elsewhere", unique={"key": "nightly-report"})
    await _discard(pg_url, schema, first.id)  # out of its unique states: the key is free
    holder = await engine.enqueue("scripted", {"n": 2}, queue="elsewhere", unique={"key": "nightly-report"})
    assert holder.id != first.id

    with pytest.raises(UniqueKeyHeld, match=f"held by job {holder.id} \\(available\\)"):
        await engine.retry(first.id)
    await engine.store.fetch("elsewhere", 1, "some-node")  # the holder runs now
    with pytest.raises(UniqueKeyHeld, match=f"held by job {holder.id} \\(executing\\)"):
        await engine.retry(first.id)
    assert (await engine.get(first.id)).state == "discarded"

    plain = await engine.enqueue("scripted", {"n": 3}, queue="elsewhere")
    await _discard(pg_url, schema, plain.id)
    result = await bulk_action(engine, Principal("token", Role.OPERATOR, "bearer"), "retry", ids=[first.id, plain.id])
    assert result["changed"] == [plain.id]
    assert result["refused"] == {str(first.id): f"job {first.id} cannot be retried: its unique key is held by "
                                                f"job {holder.id} (executing)"}
    assert (await engine.get(plain.id)).state == "available"

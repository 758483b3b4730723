"""One node name, one live process: a second process started under a name another live
process heartbeats with refuses to run (it would rescue and re-run that process's jobs);
once the holder is silent past rescue_after, a restart under the same name takes over."""

from __future__ import annotations

from typing import Any

import pytest

from engine.core.errors import NodeNameInUse
from engine.testing import wait_for_job
from tests.support.scripted import Recorder, scripted_registry

QUEUES = {"default": {"concurrency": 2}}
LIFELINE = {"heartbeat_interval": 0.5, "rescue_after": 3}


async def test_a_second_live_process_with_the_same_node_name_refuses_to_start(
        start_engine: Any, recorder: Recorder) -> None:
    first = await start_engine(scripted_registry(recorder), queues=QUEUES, node_name="twin", lifeline=LIFELINE)
    held = await first.enqueue("scripted", {"sleep": 1.5})
    with pytest.raises(NodeNameInUse, match="node name 'twin' is in use by another live process"):
        await start_engine(scripted_registry(recorder), queues=QUEUES, node_name="twin", lifeline=LIFELINE)
    done = await wait_for_job(first, held.id, timeout=20)
    assert (done.state, done.attempt, recorder.runs[held.id]) == ("completed", 1, 1)  # never rescued, run once


async def test_a_restart_under_the_same_name_takes_over_from_a_silent_holder(
        start_engine: Any, recorder: Recorder) -> None:
    client = await start_engine(scripted_registry(recorder))
    assert client.store is not None
    assert await client.store.heartbeat("phoenix", ["default"], {"instance": "an-earlier-life"})
    async with client.store.pool.acquire() as conn:  # that life went silent long ago
        await conn.execute(f'UPDATE "{client.store.schema}".nodes SET heartbeat_at = now() - interval \'1 hour\' '
                           "WHERE name = 'phoenix'")
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES, node_name="phoenix", lifeline=LIFELINE)
    job = await engine.enqueue("scripted", {"result": "ok"})
    assert (await wait_for_job(engine, job.id, timeout=20)).state == "completed"

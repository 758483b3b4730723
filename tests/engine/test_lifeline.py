"""Heartbeats and rescue against real Postgres: live jobs are never rescued, orphans come back
with the rescue recorded, poison pills are discarded, stale acks change nothing, lost claims
and jobs of an earlier process under the same node name are found, and a node that cannot
heartbeat stops its own jobs before others may rescue them."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import asyncpg
import structlog

from engine.core.acks import Ack
from engine.core.claims import ClaimGate
from engine.engine import Engine
from engine.maintenance.lifeline import Lifeline
from engine.queues.acker import Acker
from engine.testing import wait_for_job
from tests.support.scripted import Recorder, scripted_registry
from tests.support.tcpproxy import TcpProxy
from tests.support.waiting import wait_until

FAST = {"heartbeat_interval": 0.1, "rescue_after": 0.6}
QUEUES = {"default": {"concurrency": 5}}


async def rescued_count(pg_url: str, schema: str, job_id: int) -> int:
    conn = await asyncpg.connect(pg_url)
    try:
        return await conn.fetchval(f'SELECT rescued FROM "{schema}".jobs WHERE id = $1', job_id)
    finally:
        await conn.close()


async def test_long_job_on_a_live_node_is_never_rescued(start_engine, recorder, pg_url, schema) -> None:
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES, lifeline=FAST)
    job = await engine.enqueue("scripted", {"sleep": 2.0})  # over three times rescue_after
    done = await wait_for_job(engine, job.id, timeout=10)
    assert (done.state, done.attempt, done.errors) == ("completed", 1, [])
    assert recorder.runs[job.id] == 1
    assert await rescued_count(pg_url, schema, job.id) == 0


async def test_job_of_a_silent_node_is_rescued_with_the_rescue_recorded(start_engine, recorder, pg_url,
                                                                        schema) -> None:
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES, lifeline=FAST)
    job = await engine.enqueue("scripted", {}, queue="elsewhere")  # no producer here: only the dead node
    await engine.store.heartbeat("dead-node", ["elsewhere"], {})
    (claimed,) = await engine.store.fetch("elsewhere", 1, "dead-node")
    back = await wait_for_job(engine, job.id, states={"available"}, timeout=5)
    age = (datetime.now(UTC) - claimed.attempted_at).total_seconds()
    assert back.attempt == 1  # the crashed attempt counts
    (entry,) = back.errors
    assert entry["kind"] == "rescued" and entry["attempt"] == 1
    assert entry["error"] == ("rescued: returned to be retried; node dead-node stopped heartbeating "
                              "while the job was executing")
    assert await rescued_count(pg_url, schema, job.id) == 1
    assert age < FAST["rescue_after"] + FAST["heartbeat_interval"] + 1.0


async def test_poison_pill_is_discarded_after_max_rescues_and_its_failure_flow_runs(start_engine, recorder,
                                                                                    pg_url, schema) -> None:
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES,
                                lifeline={**FAST, "max_rescues": 2})
    job = await engine.enqueue("scripted", {}, queue="elsewhere", max_attempts=10,
                               on_failure={"jobType": "scripted", "data": {"result": "cleaned up"}})
    for _ in range(3):  # each claim's node dies: rescued twice, then discarded
        await wait_for_job(engine, job.id, states={"available"}, timeout=5)
        await engine.store.fetch("elsewhere", 1, "crashing-node")
    discarded = await wait_for_job(engine, job.id, states={"discarded"}, timeout=5)
    assert [e["kind"] for e in discarded.errors] == ["rescued"] * 3
    assert discarded.errors[-1]["error"].startswith(
        "discarded: orphaned again after 2 rescues (max_rescues); the job may be killing its process")
    assert await rescued_count(pg_url, schema, job.id) == 3
    (child,) = [j for j in await engine.list_jobs(kind="scripted") if j.meta.get("parent_id") == job.id]
    assert (await wait_for_job(engine, child.id)).result == "cleaned up"


async def test_stale_ack_after_rescue_and_reclaim_changes_nothing_and_is_logged(start_engine, recorder) -> None:
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES, lifeline=FAST)
    job = await engine.enqueue("scripted", {}, queue="elsewhere")
    (first,) = await engine.store.fetch("elsewhere", 1, "node-a")  # node-a never heartbeats: rescued
    await wait_for_job(engine, job.id, states={"available"}, timeout=5)
    await engine.store.heartbeat("node-b", ["elsewhere"], {})
    (second,) = await engine.store.fetch("elsewhere", 1, "node-b")

    acker = Acker(engine.store)
    with structlog.testing.capture_logs() as logs:
        acker.put(Ack(job_id=job.id, attempt=first.attempt, attempted_at=first.attempted_at, state="completed",
                      result="from the stale attempt"))
        await acker.flush()
    assert [e for e in logs if e["event"].startswith("stale acks ignored") and e["job_ids"] == [job.id]]
    now = await engine.get(job.id)
    assert (now.state, now.attempt, now.attempted_by, now.result) == ("executing", 2, "node-b", None)

    acker.put(Ack(job_id=job.id, attempt=second.attempt, attempted_at=second.attempted_at, state="completed",
                  result="from the live attempt"))
    await acker.flush()
    assert (await engine.get(job.id)).result == "from the live attempt"


async def test_restart_under_the_same_node_name_rescues_the_earlier_process_jobs(start_engine, make_config,
                                                                                  recorder, pg_url,
                                                                                  schema) -> None:
    earlier = await start_engine(scripted_registry(recorder))  # insert-only: for the table and the claim
    job = await earlier.enqueue("scripted", {})
    await earlier.store.heartbeat("worker-1", ["default"], {})  # it heartbeated a moment ago, then died
    await earlier.store.fetch("default", 1, "worker-1")

    engine = await start_engine(scripted_registry(recorder), queues=QUEUES, node_name="worker-1",
                                lifeline={"heartbeat_interval": 5, "rescue_after": 60})
    done = await wait_for_job(engine, job.id, timeout=5)
    assert (done.state, done.attempt) == ("completed", 2)
    assert done.errors[0]["error"].endswith("node worker-1 did not know it held the job (it restarted, "
                                            "or the answer to its claim was lost)")
    assert await rescued_count(pg_url, schema, job.id) == 1


async def test_lost_claim_is_rescued_once_no_answer_can_still_be_on_its_way(start_engine, recorder) -> None:
    client = await start_engine(scripted_registry(recorder))
    lost, held = await client.enqueue_many([{"jobType": "scripted", "data": {}}] * 2)
    lifeline = Lifeline(client.store, node="node-1", queues=["default"], config=client.config.lifeline,
                        known_jobs=lambda: [held.id], claim_grace=0.3)
    await lifeline.beat()
    await client.store.fetch("default", 2, "node-1")  # node-1 only ever saw `held`
    assert await lifeline.rescue() == []  # within the grace the answer may still arrive
    await wait_until(lifeline.rescue, timeout=5)
    assert (await client.get(lost.id)).state == "available"
    assert (await client.get(held.id)).state == "executing"


async def test_lost_claim_goes_back_at_the_next_rescue_when_no_claim_is_on_its_way(start_engine, recorder) -> None:
    # The node knows its claims in flight (the gate): with none, an unknown job under its
    # name can only be a lost claim, whatever its age; one still on its way defers to the grace.
    client = await start_engine(scripted_registry(recorder))
    lost, held = await client.enqueue_many([{"jobType": "scripted", "data": {}}] * 2)
    gate = ClaimGate()
    lifeline = Lifeline(client.store, node="node-1", queues=["default"], config=client.config.lifeline,
                        known_jobs=lambda: [held.id], claim_grace=60, claims=gate)
    await lifeline.beat()
    await client.store.fetch("default", 2, "node-1")  # node-1 only ever saw `held`
    on_its_way = anyio.Event()
    answered = anyio.Event()

    async def claim_in_flight() -> None:
        async with gate.claiming():
            on_its_way.set()
            await answered.wait()

    async with anyio.create_task_group() as group:
        group.start_soon(claim_in_flight)
        await on_its_way.wait()
        with anyio.fail_after(5):
            assert await lifeline.rescue() == []  # the claim in flight might be the one that got `lost`
        answered.set()
    assert [job.id for job in await lifeline.rescue()] == [lost.id]
    assert (await client.get(lost.id)).state == "available"
    assert (await client.get(held.id)).state == "executing"


async def test_claims_wait_while_the_rescue_runs() -> None:
    gate = ClaimGate()
    order: list[str] = []
    arrived = anyio.Event()

    async def claim() -> None:
        arrived.set()
        async with gate.claiming():
            order.append("claim")

    async with anyio.create_task_group() as group, gate.quiet(wait=1) as quiet:
        assert quiet
        group.start_soon(claim)
        with anyio.fail_after(5):
            await arrived.wait()
        assert gate.in_flight == 0 and order == []  # held at the gate
        order.append("rescue")
    assert order == ["rescue", "claim"]


async def test_a_node_whose_lease_is_in_doubt_claims_nothing_even_before_its_watch_runs(start_engine,
                                                                                      recorder) -> None:
    # A process that wakes from a freeze runs whatever is due first: its producers could claim
    # before the lease watch fences them, and other nodes rescue what it claims (a chaos soak
    # ran five jobs twice at once that way). The claim itself checks the lease.
    engine = await start_engine(scripted_registry(recorder), queues=QUEUES,
                                lifeline={"heartbeat_interval": 30, "rescue_after": 60})
    producer, lifeline = engine.producers["default"], engine.lifeline
    assert producer.may_claim()
    lifeline._last_ok -= lifeline.fence_after + 1  # as a freeze leaves it: no heartbeat landed for longer
    assert not producer.may_claim() and not producer.lease_lost  # the watch has not fenced yet
    await lifeline.beat()
    assert producer.may_claim()


async def test_node_that_cannot_heartbeat_stops_its_jobs_before_they_may_be_rescued(make_config, pg_url) -> None:
    recorder = Recorder()
    lifeline = {"heartbeat_interval": 0.2, "rescue_after": 1.5}
    async with TcpProxy.for_url(pg_url) as proxy:
        config = make_config(database_url=proxy.url, query_timeout=0.3, queues=QUEUES, lifeline=lifeline)
        async with Engine(config=config, registry=scripted_registry(recorder)) as engine:
            job = await engine.enqueue("scripted", {"sleep": 4.0})
            await wait_until(lambda: recorder.runs[job.id] == 1)
            proxy.blackhole()
            await wait_until(lambda: job.id in recorder.cancelled, timeout=5)
            age = engine.lifeline.heartbeat_age
            assert age < lifeline["rescue_after"]  # stopped before any node could rescue it
            proxy.restore()
            done = await wait_for_job(engine, job.id, timeout=10)
    assert (done.state, done.attempt, recorder.runs[job.id]) == ("completed", 1, 2)  # back unspent, ran again
    assert "could not heartbeat" in done.errors[0]["error"]


async def test_the_lease_fence_arms_again_after_heartbeats_that_merely_landed_late(make_config, pg_url,
                                                                                  schema) -> None:
    # A stall that fails nothing (a frozen process, a pause, a blocked loop): here the
    # heartbeat waits on a lock on its own node row, then lands. The next stall must stop
    # this node's jobs again, and no job is claimed while the lease is in doubt.
    recorder = Recorder()
    lifeline = {"heartbeat_interval": 0.2, "rescue_after": 1.5}
    config = make_config(query_timeout=20, queues=QUEUES, lifeline=lifeline, shutdown_grace=0.5)
    async with Engine(config=config, registry=scripted_registry(recorder)) as engine:
        job = await engine.enqueue("scripted", {"sleep": 60})
        await wait_until(lambda: recorder.runs[job.id] == 1)
        for stall in (1, 2):
            blocker = await asyncpg.connect(pg_url)
            try:
                async with blocker.transaction():
                    await blocker.execute(f'SELECT 1 FROM "{schema}".nodes WHERE name = $1 FOR UPDATE',
                                          engine.node)
                    await wait_until(lambda stall=stall: recorder.cancelled.count(job.id) == stall, timeout=10,
                                     what=f"stall {stall} stops the job")
                    assert engine.producers["default"].lease_lost  # nothing is claimed meanwhile
                    assert recorder.runs[job.id] == stall
            finally:
                await blocker.close()
            # The late heartbeat lands, a fresh one re-arms the fence; the job comes back unspent.
            await wait_until(lambda stall=stall: recorder.runs[job.id] == stall + 1, timeout=10)
        assert (await engine.get(job.id)).attempt == 1

"""Every JSON example of the seed document, submitted as written to a real engine: each is
accepted, stored with its data unchanged, and the user-defined kinds run as documented."""

from __future__ import annotations

import json

from engine import Registry
from engine.core.documents import classify_payload, loads_document_text
from engine.core.job import Job
from engine.testing import wait_for_job
from tests.engine.test_documents import CHAINING, CONDITIONAL, CRITICAL_BACKUP, PRIORITY, SEED_PAYLOADS
from tests.support.waiting import wait_until


def seed_registry(ran: list[tuple[str, object]]) -> Registry:
    """The user-defined kinds the seed's whole documents name."""
    registry = Registry()

    @registry.handler("critical-backup")
    async def critical_backup(job: Job) -> dict[str, str]:
        ran.append(("critical-backup", job.args))
        return {"ok": "yes"}

    @registry.handler("backup-database")
    async def backup_database(job: Job) -> dict[str, str]:
        ran.append(("backup-database", job.args))
        return {"backupFile": "/backup/game_20240115.sql"}

    @registry.handler("notify-backup-complete")
    async def notify_backup_complete(job: Job) -> dict[str, str]:
        ran.append(("notify-backup-complete", job.args))
        return {"notified": job.args["backupFile"]}

    @registry.handler("maintenance-task")
    async def maintenance_task(job: Job) -> str:
        ran.append(("maintenance-task", job.vars))
        return "done"

    return registry


async def test_every_seed_payload_is_accepted_and_stored_as_written(start_engine) -> None:
    engine = await start_engine(seed_registry([]))
    specs = [classify_payload(loads_document_text(text), kind) for kind, text in SEED_PAYLOADS]
    jobs = await engine.enqueue_many(specs)
    assert len(jobs) == len(SEED_PAYLOADS) == 13
    for job, (kind, text) in zip(jobs, SEED_PAYLOADS, strict=True):
        stored = await engine.get(job.id)
        assert (stored.kind, stored.args) == (kind, json.loads(text))
    ssh_jobs = [job for job in jobs if job.kind == "ssh"]
    assert [job.args.get("timeout") for job in ssh_jobs] == [30000, 60000, 30000, 300000]


async def test_seed_whole_documents_are_accepted(start_engine) -> None:
    engine = await start_engine(seed_registry([]))
    backup = await engine.enqueue_document(loads_document_text(CRITICAL_BACKUP))
    assert backup.meta["failure_notification"]["email"] == "admin@example.com"
    tip = await engine.enqueue_document(loads_document_text(PRIORITY), kind="backup-database")
    assert (tip.priority, tip.max_attempts, tip.state) == (10, 3, "scheduled")
    assert 4.5 < (tip.scheduled_at - tip.inserted_at).total_seconds() < 5.5
    chain = await engine.enqueue_document(loads_document_text(CHAINING))
    assert chain.meta["on_success"]["jobType"] == "notify-backup-complete"
    conditional = await engine.enqueue_document(loads_document_text(CONDITIONAL))
    assert conditional.meta["condition"] == "{{serverLoad}} < 50"


async def test_seed_chain_passes_the_result_to_the_follow_up(start_engine) -> None:
    ran: list[tuple[str, object]] = []
    engine = await start_engine(seed_registry(ran), queues={"default": {"concurrency": 2}})
    parent = await engine.enqueue_document(loads_document_text(CHAINING))
    await wait_for_job(engine, parent.id)
    child = await wait_until(lambda: _child_of(engine, parent.id))
    assert (await wait_for_job(engine, child.id)).result == {"notified": "/backup/game_20240115.sql"}
    assert ("notify-backup-complete", {"backupFile": "/backup/game_20240115.sql"}) in ran
    assert child.parent_id == parent.id


async def test_seed_condition_runs_below_50_and_cancels_at_70(start_engine) -> None:
    ran: list[tuple[str, object]] = []
    engine = await start_engine(seed_registry(ran), queues={"default": {"concurrency": 2}})
    document = loads_document_text(CONDITIONAL)
    low = await engine.enqueue_document({**document, "vars": {"serverLoad": 30}})
    high = await engine.enqueue_document({**document, "vars": {"serverLoad": 70}})
    assert (await wait_for_job(engine, low.id)).state == "completed"
    cancelled = await wait_for_job(engine, high.id)
    assert cancelled.state == "cancelled"
    assert cancelled.errors[-1]["error"].startswith("condition not met: ")
    assert ran == [("maintenance-task", {"serverLoad": 30})]


async def _child_of(engine, parent_id: int) -> Job | None:
    jobs = await engine.list_jobs(kind="notify-backup-complete")
    return next((job for job in jobs if job.parent_id == parent_id), None)

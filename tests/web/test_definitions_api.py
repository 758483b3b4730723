"""Definitions over HTTP against a real engine and Postgres: saved, validated field by
field, run by hand, listed with their runs and counters; kinds with their schemas; edits
of jobs that have not started."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from engine.cli.cron import cron_store
from engine.cron.schedule import CronEntry
from engine.maintenance.pruner import Pruner
from engine.web.actions import Conflict
from engine.web.job_edit import edit_job
from tests.support.waiting import wait_until
from tests.web.conftest import Dashboard
from tests.web.test_api import _call

LOG_JOB = {"jobType": "log", "data": {"message": "hello {{who}}"}}


def definition(name: str = "nightly-report", **fields: Any) -> dict[str, Any]:
    return {"name": name, "description": "a report", "tags": ["reports"],
            "trigger": {"type": "cron", "schedule": "0 2 * * *", "timezone": "Asia/Seoul"},
            "job": {"jobType": "scripted", "data": {"action": "ok"}}, **fields}


def fields_of(body: dict[str, Any]) -> list[str]:
    return [error["field"] for error in body["errors"]]


async def test_a_definition_is_saved_read_listed_and_replaced(dashboard: Dashboard, http: Any) -> None:
    status, created = await _call(http, dashboard, "post", "/api/definitions", json=definition())
    assert status == 201, created
    saved = created["definition"]
    assert saved["source"] == "api" and saved["createdBy"] == "token"
    assert saved["trigger"] == {"type": "cron", "schedule": "0 2 * * *", "timezone": "Asia/Seoul",
                                "overlap": "allow", "catchUp": 0.0}
    next_run = datetime.fromisoformat(saved["nextRunAt"])
    assert next_run.astimezone(UTC).hour == 17  # 02:00 in Seoul
    assert saved["runs"] == {"total": 0, "completed": 0, "failed": 0, "cancelled": 0}

    status, listed = await _call(http, dashboard, "get", "/api/definitions")
    assert [d["name"] for d in listed["definitions"]] == ["nightly-report"]

    changed = {**saved, "description": "new text", "trigger": {"type": "manual"}}
    status, replaced = await _call(http, dashboard, "put", "/api/definitions/nightly-report", json=changed)
    assert status == 200, replaced
    assert replaced["definition"]["description"] == "new text"
    assert replaced["definition"]["trigger"] == {"type": "manual"} and replaced["definition"]["nextRunAt"] is None
    # a cron entry IS a definition: a manual one is not among the cron entries
    assert [e["name"] for e in await cron_store(dashboard.engine).list()] == []


async def test_a_stale_put_is_a_409_and_a_put_without_updated_at_wins_whole(dashboard: Dashboard, http: Any) -> None:
    _, created = await _call(http, dashboard, "post", "/api/definitions", json=definition("shared"))
    read = created["definition"]
    status, first = await _call(http, dashboard, "put", "/api/definitions/shared",
                                json={**read, "description": "first editor"})
    assert status == 200
    status, stale = await _call(http, dashboard, "put", "/api/definitions/shared",
                                json={**read, "description": "second editor"})
    assert status == 409 and "changed since" in stale["error"]
    status, _ = await _call(http, dashboard, "put", "/api/definitions/shared",
                            json={**read, "updatedAt": None, "description": "last word", "tags": []})
    assert status == 200
    _, now = await _call(http, dashboard, "get", "/api/definitions/shared")
    assert now["definition"]["description"] == "last word" and now["definition"]["tags"] == []
    assert first["definition"]["updatedAt"] != now["definition"]["updatedAt"]


async def test_bad_definitions_are_refused_naming_the_field_and_nothing_is_saved(
        dashboard: Dashboard, http: Any) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    cases = [
        (definition("Bad Name"), ["name"]),
        (definition("new"), ["name"]),
        (definition(trigger={"type": "once", "at": past}), ["trigger.at"]),
        (definition(trigger={"type": "once", "at": "tomorrow"}), ["trigger.at"]),
        (definition(trigger={"type": "cron", "schedule": "0 25 * * *"}), ["trigger.schedule"]),
        (definition(trigger={"type": "cron", "schedule": "0 2 * * *", "timezone": "Mars/Olympus"}),
         ["trigger.timezone"]),
        (definition(trigger={"type": "weekly"}), ["trigger"]),
        (definition(job={"jobType": "nope"}), ["job.jobType"]),
        (definition(job={"jobType": "scripted", "atempts": 3}), ["job.atempts"]),
        (definition(job={"jobType": "log", "data": {"mesage": "x"}}), ["job.data.message", "job.data.mesage"]),
        (definition(job={"jobType": "log", "data": {"message": "{{secrets.NOT_DECLARED}}"}}), ["job"]),
        (definition(job={"jobType": "log", "data": {"message": "x" * 300_000}}), ["job"]),
        (definition(colour="blue"), ["colour"]),
    ]
    for body, expected in cases:
        status, answer = await _call(http, dashboard, "post", "/api/definitions", json=body)
        assert status == 422, (body, answer)
        assert fields_of(answer) == expected, answer
    _, answer = await _call(http, dashboard, "post", "/api/definitions",
                            json=definition(job={"jobType": "scripted", "atempts": 3}))
    assert "did you mean 'attempts'" in answer["errors"][0]["message"]
    _, listed = await _call(http, dashboard, "get", "/api/definitions")
    assert listed["definitions"] == []
    assert (await _call(http, dashboard, "post", "/api/definitions", json=definition("dup")))[0] == 201
    status, answer = await _call(http, dashboard, "post", "/api/definitions", json=definition("dup"))
    assert status == 409 and "already exists" in answer["error"]


async def test_run_now_with_vars_lists_the_run_and_counts_it_after_pruning(dashboard: Dashboard, http: Any) -> None:
    body = definition("greeter", enabled=False, trigger={"type": "manual"}, job=LOG_JOB)
    assert (await _call(http, dashboard, "post", "/api/definitions", json=body))[0] == 201
    status, ran = await _call(http, dashboard, "post", "/api/definitions/greeter/run", json={"vars": {"who": "ops"}})
    assert status == 201, ran  # a disabled definition runs by hand
    engine = dashboard.engine
    job_id = ran["jobId"]

    async def completed() -> bool:
        job = await engine.get(job_id)
        return job is not None and job.state == "completed"

    await wait_until(completed)
    job = await engine.get(job_id)
    assert job is not None and job.meta["definition"] == "greeter" and job.vars == {"who": "ops"}
    status, runs = await _call(http, dashboard, "get", "/api/definitions/greeter/runs")
    assert status == 200 and [run["id"] for run in runs["jobs"]] == [job_id]
    assert runs["jobs"][0]["duration"] is not None and runs["next"] is None

    _, live = await _call(http, dashboard, "get", "/api/definitions/greeter")  # counted before any tally
    assert live["definition"]["runs"] == {"total": 1, "completed": 1, "failed": 0, "cancelled": 0}
    retention = engine.config.retention.model_copy(update={"completed": 0.0})
    assert await Pruner(engine.store, retention).prune_once() == 1  # type: ignore[arg-type]
    _, after = await _call(http, dashboard, "get", "/api/definitions/greeter")
    assert after["definition"]["runs"] == {"total": 1, "completed": 1, "failed": 0, "cancelled": 0}
    assert after["definition"]["lastRun"]["jobId"] == job_id and after["definition"]["lastRun"]["state"] == "completed"
    _, runs = await _call(http, dashboard, "get", "/api/definitions/greeter/runs")
    assert runs["jobs"] == []


async def test_runs_page_by_id_newest_first(dashboard: Dashboard, http: Any) -> None:
    await dashboard.engine.pause("default")
    body = definition("pager", trigger={"type": "manual"})
    assert (await _call(http, dashboard, "post", "/api/definitions", json=body))[0] == 201
    made = [(await _call(http, dashboard, "post", "/api/definitions/pager/run"))[1]["jobId"] for _ in range(5)]
    seen, cursor = [], "/api/definitions/pager/runs?limit=2"
    while cursor:
        status, page = await _call(http, dashboard, "get", cursor)
        assert status == 200
        seen += [run["id"] for run in page["jobs"]]
        cursor = f"/api/definitions/pager/runs?limit=2&before={page['next']['before']}" if page["next"] else None
    assert seen == sorted(made, reverse=True)
    _, got = await _call(http, dashboard, "get", "/api/definitions/pager")
    assert got["definition"]["runs"]["total"] == 5


async def test_config_definitions_are_read_only_but_can_be_disabled(dashboard: Dashboard, http: Any) -> None:
    store = cron_store(dashboard.engine)
    store.entries["from-config"] = CronEntry("from-config", "0 3 * * *", job={"jobType": "scripted"})
    await store.sync_config()
    _, got = await _call(http, dashboard, "get", "/api/definitions/from-config")
    assert got["definition"]["source"] == "config"
    status, answer = await _call(http, dashboard, "put", "/api/definitions/from-config", json=got["definition"])
    assert status == 409 and "config file" in answer["error"]
    assert (await _call(http, dashboard, "delete", "/api/definitions/from-config"))[0] == 409
    status, disabled = await _call(http, dashboard, "post", "/api/definitions/from-config/disable")
    assert status == 200 and disabled["definition"]["enabled"] is False
    assert disabled["definition"]["nextRunAt"] is None
    assert (await _call(http, dashboard, "get", "/api/definitions/missing"))[0] == 404
    assert (await _call(http, dashboard, "delete", "/api/definitions/missing"))[0] == 404


async def test_kinds_carry_their_payload_schema(dashboard: Dashboard, http: Any) -> None:
    status, body = await _call(http, dashboard, "get", "/api/kinds")
    assert status == 200
    kinds = {kind["kind"]: kind for kind in body["kinds"]}
    ssh = kinds["ssh"]
    assert ssh["maxAttempts"] == 3 and ssh["queue"] == "default"
    assert {"host", "username", "command"} <= set(ssh["schema"]["properties"])
    assert "command" in ssh["schema"]["required"]
    assert kinds["scripted"]["schema"] == {"type": "object", "additionalProperties": True}
    assert kinds["mail"]["description"]


async def test_a_waiting_job_is_edited_and_a_finished_one_is_not(dashboard: Dashboard, http: Any) -> None:
    engine = dashboard.engine
    later = await engine.enqueue("log", {"message": "old"}, delay=3600)
    status, edited = await _call(http, dashboard, "patch", f"/api/jobs/{later.id}",
                                 json={"data": {"message": "new"}, "priority": 7, "tags": ["edited"],
                                       "attempts": 9})
    assert status == 200, edited
    job = await engine.get(later.id)
    assert job is not None and job.args == {"message": "new"} and job.priority == 7
    assert job.tags == ["edited"] and job.max_attempts == 9 and job.state == "scheduled"
    status, bad = await _call(http, dashboard, "patch", f"/api/jobs/{later.id}", json={"data": {"mesage": "x"}})
    assert status == 422 and "data.message" in fields_of(bad)
    status, bad = await _call(http, dashboard, "patch", f"/api/jobs/{later.id}", json={"priorty": 1})
    assert status == 422 and fields_of(bad) == ["priorty"]
    status, _ = await _call(http, dashboard, "patch", f"/api/jobs/{later.id}",
                            json={"scheduledAt": datetime.now(UTC).isoformat()})
    assert status == 200

    async def done() -> bool:
        current = await engine.get(later.id)
        return current is not None and current.state == "completed"

    await wait_until(done)
    status, refused = await _call(http, dashboard, "patch", f"/api/jobs/{later.id}", json={"priority": 1})
    assert status == 409 and "nothing was changed" in refused["error"]
    assert (await engine.get(later.id)).priority == 7  # type: ignore[union-attr]


async def test_the_definitions_page_pages_by_name_and_filters_in_sql(dashboard: Dashboard, http: Any) -> None:
    for n in range(55):
        body = definition(f"def-{n:02d}", tags=["even" if n % 2 == 0 else "odd"], trigger={"type": "manual"})
        assert (await _call(http, dashboard, "post", "/api/definitions", json=body))[0] == 201
    status, first = await _call(http, dashboard, "get", "/definitions")
    assert status == 200 and first.count('data-definition="') == 50 and "55 in all" in first
    assert 'data-definition="def-49"' in first and "after=def-49" in first
    _, second = await _call(http, dashboard, "get", "/definitions?after=def-49")
    assert second.count('data-definition="') == 5 and 'data-definition="def-54"' in second
    _, odd = await _call(http, dashboard, "get", "/definitions?tag=odd&q=DEF-1")
    assert odd.count('data-definition="') == 5  # def-11, 13, 15, 17, 19


async def test_an_edit_racing_the_claim_lands_before_it_or_is_refused(dashboard: Dashboard) -> None:
    engine = dashboard.engine
    store = engine.store
    assert store is not None
    jobs = [await engine.enqueue("scripted", {"version": "old"}, queue="edits") for _ in range(40)]
    outcomes: dict[int, str] = {}
    claimed: list[Any] = []

    async def edit(job_id: int) -> None:
        try:
            await edit_job(engine, job_id, {"data": {"version": "new"}})
            outcomes[job_id] = "edited"
        except Conflict:
            outcomes[job_id] = "refused"

    async def claim() -> None:
        for _ in range(8):
            claimed.extend(await store.fetch("edits", 5, "racer"))

    async with anyio.create_task_group() as group:
        group.start_soon(claim)
        for job in jobs:
            group.start_soon(edit, job.id)
    assert len(claimed) == 40 and set(outcomes.values()) <= {"edited", "refused"}
    for job in claimed:  # what the worker got is what the table held at the claim
        assert job.args["version"] == ("new" if outcomes[job.id] == "edited" else "old"), job.id
        stored = await engine.get(job.id)
        assert stored is not None and stored.args == job.args  # nothing changed it after the claim

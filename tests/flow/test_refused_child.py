"""A parent never completes without its onSuccess child: when the child, valid at enqueue,
is refused as the parent completes (the registry changed meanwhile: a deploy dropped or
changed the child's handler), the parent's attempt fails naming the child, and is retried
or discarded as any failure."""

from __future__ import annotations

from typing import Any

from engine.core.job import Job
from engine.core.registry import Registry
from tests.support.waiting import wait_until

QUEUES = {"default": {"concurrency": 2}}


def _registry(*, with_child: bool) -> Registry:
    registry = Registry()

    @registry.handler("parent", max_attempts=2, backoff=lambda attempt: 0.0)
    async def parent(job: Job) -> dict[str, Any]:
        return {"done": job.attempt}

    if with_child:
        @registry.handler("child")
        async def child(job: Job) -> dict[str, Any]:
            return {}

    return registry


async def test_a_parent_whose_child_is_refused_at_completion_fails_naming_the_child(start_engine) -> None:
    # The document is checked against the registry of the process that enqueues it...
    client = await start_engine(_registry(with_child=True), queues={})
    parent = await client.enqueue_document({"jobType": "parent", "onSuccess": {"jobType": "child"}})
    # ...and its child built by the one that runs the parent, which no longer knows "child".
    worker = await start_engine(_registry(with_child=False), queues=QUEUES)

    async def finished() -> Any:
        job = await worker.get(parent.id)
        return job if job is not None and job.state in ("completed", "discarded") else None

    done = await wait_until(finished, timeout=15)
    assert (done.state, done.attempt) == ("discarded", 2)  # retried once, as any failure, never completed
    assert [entry["kind"] for entry in done.errors] == ["error", "error"]
    for entry in done.errors:
        assert entry["error"].startswith("FollowupRefused: the onSuccess job 'child' was refused"), entry
        assert "child" in entry["error"].split("without it: ", 1)[1]  # the inserter's own reason
    assert done.result is None
    jobs = await worker.list_jobs(limit=100)
    assert [job.id for job in jobs if job.parent_id == parent.id] == []  # and no orphan child either

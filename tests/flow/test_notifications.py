"""Failure notifications against a real aiosmtpd server and a real aiohttp webhook
receiver: exactly one email and one POST per discarded job, sent as jobs of their own in
the notifications queue; never about a notification; an outage never blocks main queues."""

from __future__ import annotations

import asyncio
import email
import email.policy
from typing import Any

import pytest

from engine import Engine
from engine.core.config import ConfigError
from engine.insert.followups import NOTIFICATION_META, NOTIFICATION_QUEUE
from engine.testing import wait_for_job
from tests.flow.conftest import SmtpPeer, Webhook, flow_registry
from tests.support.scripted import Recorder
from tests.support.waiting import wait_until

QUEUES = {"default": {"concurrency": 5}}


def settings(smtp_peer: SmtpPeer, webhook: Webhook, **extra: Any) -> dict[str, Any]:
    return {
        "queues": QUEUES,
        "smtp": {"host": "127.0.0.1", "port": smtp_peer.port, "start_tls": False, "from": "jobs@example.test"},
        "http": {"allow": ["127.0.0.1"]},
        "failure_notification": {"email": "ops@example.test", "webhook": webhook.url},
        **extra,
    }


async def queue_counts(engine: Engine, queue: str) -> dict[str, int]:
    return (await engine.stats()).get(queue, {})


async def test_each_discarded_job_sends_exactly_one_email_and_one_webhook(
        start_engine, recorder: Recorder, smtp_peer: SmtpPeer, webhook: Webhook) -> None:
    engine = await start_engine(flow_registry(recorder), **settings(smtp_peer, webhook))
    failing = [await engine.enqueue("scripted", {"action": "permanent", "message": f"boom {n}"}) for n in range(3)]
    failing.append(await engine.enqueue("scripted", {"action": "raise", "message": "out of attempts"}))
    failing.append(await engine.enqueue("scripted", {"action": "discard", "message": "not wanted"}))
    others = [await engine.enqueue("scripted", {}), await engine.enqueue("scripted", {"action": "cancel"})]
    for job in failing + others:
        await wait_for_job(engine, job.id)

    # Every notification job has finished: nothing further can arrive.
    await wait_until(async_equals(lambda: queue_counts(engine, NOTIFICATION_QUEUE), {"completed": 10}), timeout=15)
    ids = {job.id for job in failing}
    subjects = sorted(message_of(envelope)["Subject"] for envelope in smtp_peer.messages)
    assert subjects == sorted(f"[jobengine] job {job.id} (scripted) failed" for job in failing)
    assert sorted(post["body"]["job"]["id"] for post in webhook.posts) == sorted(ids)

    first = next(post["body"] for post in webhook.posts if post["body"]["job"]["id"] == failing[0].id)
    assert first["event"] == "job.discarded"
    assert first["job"] | {"kind": "scripted", "queue": "default", "attempt": 1} == first["job"]
    assert first["error"]["message"] == "PermanentError: boom 0"
    text = next(message_of(e).get_content() for e in smtp_peer.messages if f"job {failing[3].id} " in
                message_of(e)["Subject"])
    assert "RuntimeError: out of attempts" in text and f"id: {failing[3].id}" in text
    assert all(envelope.rcpt_tos == ["ops@example.test"] for envelope in smtp_peer.messages)
    for notification in await engine.list_jobs(queue=NOTIFICATION_QUEUE):
        assert notification.meta[NOTIFICATION_META] in ids and notification.parent_id in ids


async def test_job_level_target_overrides_the_config_default(
        start_engine, recorder: Recorder, smtp_peer: SmtpPeer, webhook: Webhook) -> None:
    engine = await start_engine(flow_registry(recorder), **settings(smtp_peer, webhook))
    job = await engine.enqueue_document({"jobType": "scripted", "data": {"action": "permanent"},
                                         "failureNotification": {"webhook": webhook.url}})
    await wait_for_job(engine, job.id)
    await wait_until(async_equals(lambda: queue_counts(engine, NOTIFICATION_QUEUE), {"completed": 1}))
    assert [post["body"]["job"]["id"] for post in webhook.posts] == [job.id]
    assert smtp_peer.messages == []


async def test_a_failed_notification_never_notifies_about_itself(
        start_engine, recorder: Recorder, smtp_peer: SmtpPeer, webhook: Webhook) -> None:
    webhook.status = 400  # the receiver refuses: the http notification job fails permanently
    engine = await start_engine(flow_registry(recorder), **settings(smtp_peer, webhook))
    job = await engine.enqueue("scripted", {"action": "permanent"})
    await wait_for_job(engine, job.id)
    await wait_until(async_equals(lambda: queue_counts(engine, NOTIFICATION_QUEUE),
                                  {"completed": 1, "discarded": 1}), timeout=15)
    notifications = await engine.list_jobs(queue=NOTIFICATION_QUEUE)
    failed = next(n for n in notifications if n.state == "discarded")
    assert failed.kind == "http" and "400" in failed.errors[-1]["error"]
    assert len(notifications) == 2 and len(smtp_peer.messages) == 1
    assert not [n for n in await engine.list_jobs() if n.meta.get(NOTIFICATION_META) == failed.id]


async def test_a_stuck_receiver_never_blocks_the_main_queues(
        start_engine, recorder: Recorder, smtp_peer: SmtpPeer, webhook: Webhook) -> None:
    webhook.hold = asyncio.Event()  # every POST hangs
    engine = await start_engine(flow_registry(recorder), **settings(smtp_peer, webhook))
    for _ in range(8):
        await engine.enqueue("scripted", {"action": "permanent"})
    await wait_until(lambda: webhook.held >= 5)  # the notifications queue is full of stuck POSTs
    work = await engine.enqueue_many([{"jobType": "scripted", "data": {"n": n}} for n in range(30)])
    for job in work:
        assert (await wait_for_job(engine, job.id, timeout=5)).state == "completed"
    assert (await queue_counts(engine, NOTIFICATION_QUEUE)).get("executing") == 5
    webhook.hold.set()
    await wait_until(async_equals(lambda: queue_counts(engine, NOTIFICATION_QUEUE), {"completed": 16}), timeout=15)
    assert len(webhook.posts) == 8


async def test_insert_only_engine_adds_no_queue_and_bad_settings_fail_at_start(make_config) -> None:
    assert Engine(config=make_config(failure_notification={"email": "a@b.test"})).config.queues == {}
    engine = Engine(config=make_config(queues=QUEUES))
    assert engine.config.queues[NOTIFICATION_QUEUE].concurrency == 5
    with pytest.raises(ConfigError, match=r"failure_notification\.emial"):
        Engine(config=make_config(queues=QUEUES, failure_notification={"emial": "a@b.test"}))
    with pytest.raises(ConfigError, match=r"failure_notification\.webhook"):
        Engine(config=make_config(queues=QUEUES, failure_notification={"webhook": "ftp://x"}))


def message_of(envelope: Any) -> Any:
    return email.message_from_bytes(envelope.content, policy=email.policy.default)


def async_equals(read: Any, expected: Any) -> Any:
    async def check() -> bool:
        return await read() == expected

    return check

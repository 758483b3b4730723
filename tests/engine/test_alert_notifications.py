"""A backlog alert with two engines on one database: exactly one email (to a real aiosmtpd
server) and one webhook POST (to a real aiohttp receiver) when it fires, and one of each
when the backlog drains, however the two engines' rounds interleave."""

from __future__ import annotations

import email
import email.policy
from typing import Any

from engine.core.config import Config
from engine.engine import Engine
from engine.insert.followups import NOTIFICATION_QUEUE
from tests.flow.conftest import SmtpPeer, Webhook, smtp_peer, webhook
from tests.support.scripted import Recorder, scripted_registry
from tests.support.waiting import wait_until

__all__ = ["smtp_peer", "webhook"]  # the real peers, as fixtures
INTERVAL = 0.2


def _settings(smtp: SmtpPeer, hook: Webhook, node: str) -> dict[str, Any]:
    return {
        "node_name": node, "poll_interval": 0.2, "alerts_interval": INTERVAL,
        "queues": {"work": {"concurrency": 5, "paused": True}},
        "smtp": {"host": "127.0.0.1", "port": smtp.port, "start_tls": False, "from": "jobs@example.test"},
        "http": {"allow": ["127.0.0.1"]},
        "failure_notification": {"email": "ops@example.test", "webhook": hook.url},
        "alerts": [{"name": "work-backlog", "metric": "backlog", "queue": "work", "threshold": 2}],
    }


async def _rounds(engine: Engine) -> Any:
    assert engine.store is not None
    async with engine.store.pool.acquire() as conn:
        return await conn.fetchval(f'SELECT evaluated_at FROM "{engine.store.schema}".alert_rounds')


async def _sent(engine: Engine) -> int:
    return (await engine.stats()).get(NOTIFICATION_QUEUE, {}).get("completed", 0)


async def test_a_backlog_alert_notifies_once_when_it_fires_and_once_when_it_recovers_with_two_engines(
        make_config: Any, smtp_peer: SmtpPeer, webhook: Webhook) -> None:
    recorder = Recorder()
    engines = []
    for node in ("alerts-a", "alerts-b"):
        config: Config = make_config(**_settings(smtp_peer, webhook, node))
        engines.append(Engine(config=config, registry=scripted_registry(recorder)))
        await engines[-1].start()
    first, second = engines
    try:
        for n in range(3):  # the queue is paused: they wait
            await first.enqueue("scripted", {"n": n}, queue="work")
        await wait_until(lambda: len(smtp_peer.messages) == 1 and len(webhook.posts) == 1, timeout=15,
                         what="the fired alert's email and webhook")
        fired = email.message_from_bytes(smtp_peer.messages[0].content, policy=email.policy.default)
        assert fired["Subject"] == "[jobengine] alert work-backlog fired: backlog 3 jobs (above 2 jobs)"
        assert smtp_peer.messages[0].rcpt_tos == ["ops@example.test"]
        assert webhook.posts[0]["body"]["event"] == "alert.fired"
        assert webhook.posts[0]["body"]["alert"]["name"] == "work-backlog"
        assert webhook.posts[0]["body"]["value"] == 3

        await second.resume("work")  # the backlog drains
        await wait_until(lambda: len(smtp_peer.messages) == 2 and len(webhook.posts) == 2, timeout=15,
                         what="the recovered alert's email and webhook")
        recovered = email.message_from_bytes(smtp_peer.messages[1].content, policy=email.policy.default)
        assert recovered["Subject"] == "[jobengine] alert work-backlog recovered: backlog 0 jobs"
        assert "value: 0 jobs" in recovered.get_content()
        assert webhook.posts[1]["body"]["event"] == "alert.recovered"
        assert webhook.posts[1]["body"]["firingSince"]

        # Several more rounds, by either engine, with every notification job finished: still
        # exactly one of each per transition.
        seen = await _rounds(first)
        for _ in range(3):
            seen = await wait_until(lambda last=seen: _later_round(first, last), what="another round")
        await wait_until(lambda: _all_sent(first, 4), what="the four notification jobs finished")
        assert len(smtp_peer.messages) == 2 and len(webhook.posts) == 2
    finally:
        for engine in engines:
            await engine.stop(grace=1)


async def _all_sent(engine: Engine, count: int) -> bool:
    return await _sent(engine) == count


async def _later_round(engine: Engine, last: Any) -> Any:
    now = await _rounds(engine)
    return now if now > last else None

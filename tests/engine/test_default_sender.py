"""Mail with no sender uses jobengine@<hostname>, and a processing engine says so at start-up."""

from __future__ import annotations

from structlog.testing import capture_logs

from handlers.mail import default_sender


async def test_start_up_names_the_default_sender(start_engine) -> None:
    with capture_logs() as logs:
        await start_engine(queues={"default": {"concurrency": 1}})
    notices = [entry for entry in logs if entry.get("sender") == default_sender()]
    assert len(notices) == 1 and "[smtp].from" in notices[0]["event"]


async def test_no_notice_when_smtp_from_is_set(start_engine) -> None:
    with capture_logs() as logs:
        await start_engine(queues={"default": {"concurrency": 1}}, smtp={"from": "jobs@example.com"})
    assert not [entry for entry in logs if "sender" in entry]

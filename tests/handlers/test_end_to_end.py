"""The built-in kinds through the whole engine: job documents in, rows with results out."""

from __future__ import annotations

from typing import Any

import pytest

from engine import EnqueueError
from engine.core.registry import Registry
from engine.testing import wait_for_job
from tests.handlers.conftest import REPO, SshPeer
from tests.handlers.test_mail import WELCOME
from tests.handlers.test_ssh import process_alive
from tests.support.waiting import wait_until

QUEUES = {"default": {"concurrency": 5}}


async def start(start_engine, **settings: Any):
    return await start_engine(Registry(), queues=QUEUES, base_dir=REPO / "config", **settings)


async def test_mail_document_with_vars_is_delivered(start_engine, smtp_peer) -> None:
    engine = await start(start_engine, smtp={"host": "127.0.0.1", "port": smtp_peer.port, "start_tls": False,
                                             "from": "ops@gatrix.test"})
    job = await engine.enqueue_document({"jobType": "mail", "data": WELCOME,
                                         "vars": {"email": "new@player.test", "username": "kim"}})
    done = await wait_for_job(engine, job.id)
    assert done.state == "completed", done.errors
    assert done.result["messageId"] == f"<jobengine.{engine.config.schema_name}.{job.id}@gatrix.test>"
    assert smtp_peer.parsed()["To"] == "new@player.test"
    assert done.args["to"] == "{{email}}"  # the row keeps the placeholders


async def test_header_injection_through_vars_is_discarded_and_sends_nothing(start_engine, smtp_peer) -> None:
    engine = await start(start_engine, smtp={"host": "127.0.0.1", "port": smtp_peer.port, "start_tls": False,
                                             "from": "ops@gatrix.test"})
    job = await engine.enqueue("mail", {"to": "a@x.test", "subject": "{{s}}", "text": "t"},
                               vars={"s": "hi\r\nBcc: evil@x"})
    done = await wait_for_job(engine, job.id)
    assert done.state == "discarded" and "subject" in done.errors[-1]["error"]
    assert smtp_peer.messages == []


async def test_literal_header_injection_is_refused_at_enqueue(start_engine) -> None:
    engine = await start(start_engine)
    with pytest.raises(EnqueueError, match="subject"):
        await engine.enqueue("mail", {"to": "a@x.test", "subject": "hi\r\nBcc: evil@x", "text": "t"})


async def test_http_result_is_stored_with_secrets_redacted(start_engine, http_peer, monkeypatch) -> None:
    monkeypatch.setenv("API_TOKEN", "tok-s3cret-value")
    engine = await start(start_engine, http={"allow": ["127.0.0.1"]}, secrets=["API_TOKEN"])
    job = await engine.enqueue_document({"jobType": "http", "data": {
        "method": "POST", "url": http_peer.url("/echo"),
        "headers": {"Authorization": "Bearer {{API_TOKEN}}"}, "body": {"n": 1}}})
    done = await wait_for_job(engine, job.id)
    assert done.state == "completed", done.errors
    assert http_peer.requests[0]["headers"]["Authorization"] == "Bearer tok-s3cret-value"
    assert done.result["body"]["headers"]["Authorization"] == "Bearer ***"
    assert done.result["body"]["headers"]["Idempotency-Key"] == str(job.id)


async def test_http_404_is_discarded_at_once_and_ssrf_refusal_too(start_engine, http_peer) -> None:
    engine = await start(start_engine, http={"allow": ["127.0.0.1"]})
    missing = await engine.enqueue("http", {"url": http_peer.url("/status/404")}, max_attempts=5)
    internal = await engine.enqueue("http", {"url": "http://169.254.169.254/latest/meta-data/"})
    done = await wait_for_job(engine, missing.id)
    assert (done.state, done.attempt) == ("discarded", 1) and "404" in done.errors[0]["error"]
    refused = await wait_for_job(engine, internal.id)
    assert refused.state == "discarded" and "cloud metadata" in refused.errors[0]["error"]


async def test_http_503_is_retried(start_engine, http_peer) -> None:
    engine = await start(start_engine, http={"allow": ["127.0.0.1"]})
    job = await engine.enqueue("http", {"url": http_peer.url("/status/503?retry_after=60")})
    done = await wait_for_job(engine, job.id, states={"retryable"})
    assert "503" in done.errors[0]["error"]
    assert done.scheduled_at is not None and done.attempted_at is not None
    assert (done.scheduled_at - done.attempted_at).total_seconds() >= 59


async def test_ssh_document_runs_injection_safe_and_pool_closes_at_stop(start_engine, ssh_peer: SshPeer,
                                                                        marker) -> None:
    engine = await start(start_engine, ssh=ssh_peer.settings())
    data = {"host": "127.0.0.1", "port": ssh_peer.port, "username": "jobs",
            "command": "printf '[%s]\\n' {{v}}", "timeout": 10000}
    value = f"$(touch {marker}); touch {marker}"
    job = await engine.enqueue_document({"jobType": "ssh", "data": data, "vars": {"v": value}})
    dash = await engine.enqueue_document({"jobType": "ssh", "data": data, "vars": {"v": "-rf"}})
    done, refused = await wait_for_job(engine, job.id), await wait_for_job(engine, dash.id)
    assert done.state == "completed" and done.result["stdout"] == f"[{value}]\n"
    assert refused.state == "discarded" and "{{v}}" in refused.errors[0]["error"]
    assert not marker.exists()
    await engine.stop(grace=1)
    (server_side,) = ssh_peer.connections
    await wait_until(server_side.is_closed)  # the client closed its connection


async def test_job_timeout_kills_the_remote_command(start_engine, ssh_peer: SshPeer, tmp_path) -> None:
    engine = await start(start_engine, ssh=ssh_peer.settings())
    pidfile = tmp_path / "pid"
    job = await engine.enqueue_document({
        "jobType": "ssh", "timeout": 500, "attempts": 1, "vars": {"pidfile": str(pidfile)},
        "data": {"host": "127.0.0.1", "port": ssh_peer.port, "username": "jobs",
                 "command": "echo $$ > {{pidfile}}; exec sleep 30"}})
    done = await wait_for_job(engine, job.id)
    assert done.state == "discarded" and "Timeout" in done.errors[0]["error"]
    pid = int(pidfile.read_text())
    await wait_until(lambda: not process_alive(pid))


async def test_log_document(start_engine) -> None:
    engine = await start(start_engine)
    job = await engine.enqueue_document({"jobType": "log", "data": {
        "level": "warn", "message": "비정상적인 로그인 시도 감지", "context": {"attemptCount": "{{n}}"},
        "tags": ["security"]}, "vars": {"n": 5}})
    done = await wait_for_job(engine, job.id)
    assert done.state == "completed" and done.result == {"level": "warning", "message": "비정상적인 로그인 시도 감지"}

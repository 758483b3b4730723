"""The log handler: one structured event per job, and no forged lines."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import ValidationError

from engine.core.context import HandlerContext
from engine.core.job import Job
from handlers.log import LogArgs, write_log

SEED_LOGIN = {
    "level": "info",
    "message": "사용자 로그인 성공",
    "context": {"userId": "{{userId}}", "ipAddress": "{{ipAddress}}", "userAgent": "{{userAgent}}"},
    "tags": ["authentication", "user-activity"],
}


async def test_seed_example_writes_one_structured_event(make_harness) -> None:
    harness = make_harness()
    vars = {"userId": 7, "ipAddress": "203.0.113.9", "userAgent": "Mozilla/5.0"}
    result = await harness.run("log", SEED_LOGIN, vars=vars, job_id=77)

    (event,) = harness.log_lines()
    assert event["event"] == "사용자 로그인 성공" and event["level"] == "info"
    assert event["context"] == {"userId": 7, "ipAddress": "203.0.113.9", "userAgent": "Mozilla/5.0"}
    assert event["tags"] == ["authentication", "user-activity"]
    assert (event["job_id"], event["kind"]) == (77, "log")
    assert result == {"level": "info", "message": "사용자 로그인 성공"}


async def test_warn_maps_to_warning(make_harness) -> None:
    harness = make_harness()
    await harness.run("log", {"level": "warn", "message": "비정상적인 로그인 시도 감지"})
    assert harness.log_lines()[0]["level"] == "warning"


async def test_forged_newlines_stay_on_one_line(make_harness) -> None:
    harness = make_harness()
    forged = 'ok\n{"event": "forged", "level": "critical"}\r\x1b[31mred\u2028'
    await harness.run("log", {"message": "{{m}}", "context": {"key": "{{m}}", "nested": ["{{m}}"]}},
                      vars={"m": forged})
    output = harness.log_buffer.getvalue()
    assert output.count("\n") == 1  # exactly one line
    (event,) = harness.log_lines()
    assert event["event"] == 'ok\\n{"event": "forged", "level": "critical"}\\r\\x1b[31mred\\u2028'
    assert event["context"]["nested"] == [event["event"]]


async def test_console_format_without_a_structlog_logger(make_harness, capsys) -> None:
    harness = make_harness(logging={"format": "console"})
    ctx = HandlerContext(harness.config, harness.resources, harness.secrets, logging.getLogger("plain"))
    args = LogArgs(level="error", message="line one\nERROR forged line", context={"a": "b\nc"})
    await write_log(Job(id=5, queue="default", kind="log", args=args), ctx)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "line one\\nERROR forged line" in lines[0] and "job_id=5" in lines[0]


async def test_json_format_without_a_structlog_logger(make_harness, capsys) -> None:
    harness = make_harness(logging={"format": "json"})
    ctx = HandlerContext(harness.config, harness.resources, harness.secrets, None)
    await write_log(Job(id=6, queue="default", kind="log", args=LogArgs(message="hi", tags=["t"])), ctx)
    event = json.loads(capsys.readouterr().err)
    assert (event["event"], event["job_id"], event["tags"], event["level"]) == ("hi", 6, ["t"], "info")


def test_enqueue_checks() -> None:
    LogArgs.model_validate({"level": "{{level}}", "message": "m", "context": "{{ctx}}"})
    with pytest.raises(ValidationError, match="level"):
        LogArgs.model_validate({"level": "loud", "message": "m"})
    with pytest.raises(ValidationError, match="mesage"):
        LogArgs.model_validate({"mesage": "m"})


async def test_secrets_are_redacted_from_the_event(make_harness) -> None:
    harness = make_harness(secrets={"API_TOKEN": "tok-s3cret-value"})
    await harness.run("log", {"message": "calling with {{API_TOKEN}}", "context": {"auth": "{{API_TOKEN}}"},
                              "tags": ["{{API_TOKEN}}"]})
    output = harness.log_buffer.getvalue()
    assert "tok-s3cret-value" not in output
    (event,) = harness.log_lines()
    assert (event["event"], event["context"], event["tags"]) == ("calling with ***", {"auth": "***"}, ["***"])

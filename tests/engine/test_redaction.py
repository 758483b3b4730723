"""Redaction matches every variant a secret takes (JSON-escaped, repr()'d, URL-encoded,
case-folded) before anything is shortened, and every log line is redacted: structlog events,
library (stdlib) records and tracebacks, with the SMTP password and the dashboard tokens."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import structlog

from engine.core.config import LoggingConfig
from engine.core.logs import LOG_REDACTION, configure_logging
from engine.core.secrets import Secrets
from handlers.args import InvalidArgsError, validate_rendered
from handlers.ssh import SshArgs

SECRET = 'Tok"en\\with-Quotes/and?Amp&=' + "Z9" * 20


def fragments(secret: str, size: int = 10) -> list[str]:
    return [secret[i:i + size] for i in range(len(secret) - size)]


@pytest.mark.parametrize("shown", [
    json.dumps({"a": SECRET}),
    json.dumps(json.dumps({"a": SECRET})),
    repr([SECRET]),
    repr(SECRET.encode()),
    f"host {SECRET.lower()} not found",
    f"GET https://x.test/?t={quote(SECRET, safe='')}",
    SECRET.upper(),
])
def test_each_variant_is_redacted(shown: str) -> None:
    redacted = Secrets({"T": SECRET}).redact_text(shown)
    assert "***" in redacted
    escaped_fragments = {frag for form in (SECRET, json.dumps(SECRET), repr(SECRET)) for frag in fragments(form)}
    assert not any(frag.lower() in redacted.lower() for frag in escaped_fragments if "Z9Z9" in frag)


def test_a_long_invalid_value_is_described_by_its_length_not_cut() -> None:
    with pytest.raises(InvalidArgsError) as caught:
        validate_rendered(SshArgs, {"host": f"bad host {SECRET}{SECRET}", "command": "ls"}, kind="ssh")
    assert str(caught.value) == "invalid args for 'ssh': host: a 145-character value is not a host name or address"
    short = Secrets({"T": "s3cr'et"})
    with pytest.raises(InvalidArgsError) as caught:
        validate_rendered(SshArgs, {"host": "bad s3cr'et", "command": "ls"}, kind="ssh")
    assert short.redact_text(str(caught.value)) == (
        "invalid args for 'ssh': host: \"bad ***\" is not a host name or address")


@pytest.fixture
def json_logging(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """configure_logging (as the CLI calls it) writing to the captured stderr; undone after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield capsys
    logging.captureWarnings(False)
    structlog.reset_defaults()
    root.handlers[:], root.level = saved[0], saved[1]


async def test_every_log_line_is_redacted(start_engine, json_logging, monkeypatch: pytest.MonkeyPatch) -> None:
    smtp_password, dashboard_token = "smtp-pass-" + "q" * 12, "dash-token-" + "w" * 12
    monkeypatch.setenv("API_TOKEN", SECRET)
    monkeypatch.setenv("SMTP_PW", smtp_password)
    await start_engine(secrets=["API_TOKEN"], smtp={"username": "ops", "password_env": "SMTP_PW"},
                       dashboard={"enabled": False, "token": dashboard_token})
    configure_logging(LoggingConfig(format="json", level="info"))  # here: stderr is the captured one
    log = structlog.get_logger("jobengine.test")
    log.warning("event", token=SECRET, nested={"a": [f"x{SECRET}y"]}, escaped=json.dumps(SECRET))
    try:
        raise RuntimeError(f"boom {smtp_password}")
    except RuntimeError:
        log.exception("structlog traceback")
        logging.getLogger("asyncssh").warning("library traceback with %s", dashboard_token, exc_info=True)
    logging.getLogger("aiohttp.access").error("%s %s", SECRET.lower(), repr(SECRET))
    err = json_logging.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert "event" in events and "structlog traceback" in events
    (library,) = [event for event in events if event.startswith("library traceback with ***\n")]
    assert "RuntimeError: boom ***" in library  # the library's traceback kept, redacted
    for value in (SECRET, smtp_password, dashboard_token, SECRET.lower(), json.dumps(SECRET)[1:-1]):
        assert value not in err
    assert err.count("***") >= 7


def test_a_library_warning_is_a_redacted_json_log_line(json_logging) -> None:
    """A warning printed as Python prints it (two lines of loose text) broke the container's
    JSON log: after configure_logging it is one JSON object, redacted like every other line."""
    secrets = Secrets({"API_TOKEN": SECRET})
    LOG_REDACTION.add(secrets)
    configure_logging(LoggingConfig(format="json", level="info"))
    warnings.warn(f"a library complains about {SECRET}", UserWarning, stacklevel=1)
    err = json_logging.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(line.startswith("{") for line in lines), err
    (warning,) = [json.loads(line) for line in lines]
    assert warning["logger"] == "py.warnings" and warning["level"] == "warning"
    assert "UserWarning: a library complains about ***" in warning["event"]
    assert SECRET not in err

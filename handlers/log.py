"""The ``log`` handler: write one structured log event.

Example payload (docs/job-documents.md has them all)::

    {"level": "info", "message": "사용자 로그인 성공",
     "context": {"userId": "{{userId}}", "ipAddress": "{{ipAddress}}"},
     "tags": ["authentication", "user-activity"]}

The event carries the message, the context (under ``context``), the tags and the job's id
and kind. Line breaks and other control characters in any string are escaped (``\\n``), so
a value can never forge a second log line, whatever the renderer (JSON or console).
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import structlog
from pydantic import Field

from engine.core.config import Config
from engine.core.context import HandlerContext
from engine.core.job import Job
from engine.core.logs import redact_processor
from handlers.args import ArgsModel, Templated, args_of

Level = Literal["debug", "info", "warn", "warning", "error", "critical", "fatal"]
METHODS = {"warn": "warning", "fatal": "critical"}
# Line and paragraph separators break lines in many viewers, like CR and LF.
BREAKING = frozenset({"Cc", "Zl", "Zp"})


class LogArgs(ArgsModel):
    """Payload of a ``log`` job.

    Example::

        LogArgs.model_validate({"level": "warn", "message": "login failed", "tags": ["security"]})
    """

    level: Templated[Level] = "info"
    message: str = Field(max_length=10_000)
    context: Templated[dict[str, Any]] = {}
    tags: Templated[list[str]] = []


def escape(value: Any) -> Any:
    """``value`` with control characters in every string (and dict key) escaped.

    Example::

        escape("ok\\nlevel=error forged")   # 'ok\\\\nlevel=error forged'
    """
    if isinstance(value, str):
        if not any(unicodedata.category(ch) in BREAKING for ch in value):
            return value
        return "".join(_escape_char(ch) for ch in value)
    if isinstance(value, dict):
        return {escape(str(key)): escape(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [escape(item) for item in value]
    return value


def _escape_char(ch: str) -> str:
    if unicodedata.category(ch) not in BREAKING:
        return ch
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if ch in named:
        return named[ch]
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


@asynccontextmanager
async def job_logger(config: Config) -> AsyncIterator[Any]:
    """A structlog logger for handlers whose context logger is not a structlog one."""
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if config.logging.format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    yield structlog.wrap_logger(
        structlog.PrintLogger(file=sys.stderr),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_processor,  # like every other log line
            renderer,
        ],
    )


def _is_structlog(logger: Any) -> bool:
    # Bound loggers, lazy proxies and filtering loggers all live in structlog's modules.
    return type(logger).__module__.startswith("structlog") and callable(getattr(logger, "bind", None))


async def write_log(job: Job, ctx: HandlerContext) -> dict[str, Any]:
    """Handler for kind ``log``: returns ``{"level", "message"}`` as written.

    Example result::

        {"level": "warning", "message": "login failed"}
    """
    args = args_of(job, LogArgs)  # validated by the executor, once rendered
    logger = ctx.logger if _is_structlog(ctx.logger) else await ctx.resources.get(job_logger)
    method = METHODS.get(args.level, args.level)
    # A secret that reached the payload through a placeholder is shown as *** (and the
    # escaping cannot hide one from redaction: it runs first).
    redact = ctx.secrets.redact
    message = escape(redact(args.message))
    bound = logger.bind(
        job_id=job.id, kind=job.kind, tags=escape(redact(list(args.tags))), context=escape(redact(args.context))
    )
    getattr(bound, method)(message)
    return {"level": method, "message": message}

"""structlog set-up for the CLI: JSON lines in containers, readable text on a terminal.

Records from the standard library's logging (asyncpg, aiohttp, asyncssh) go through the same
renderer, so a JSON log stays one JSON object per line, tracebacks included.

Every line is redacted on its way out, structlog's and the libraries' alike: each engine
registers its secrets, the SMTP password and the dashboard tokens with :data:`LOG_REDACTION`,
and :func:`redact_processor` (structlog) and :class:`RedactingFilter` (stdlib logging) scrub
them (every variant, see ``Secrets.redact_text``) from events, messages and tracebacks.
An application that configures logging itself adds the two the same way.
"""

from __future__ import annotations

import logging
import sys
import weakref
from collections.abc import MutableMapping
from typing import Any

import structlog

from engine.core.config import LoggingConfig
from engine.core.secrets import Secrets
from engine.core.tracebacks import format_exc_info, format_traceback


class LogRedaction:
    """The secrets of every live engine in this process (held weakly: a stopped, dropped
    engine's secrets leave with it)."""

    def __init__(self) -> None:
        self._sources: weakref.WeakSet[Secrets] = weakref.WeakSet()

    def add(self, secrets: Secrets) -> None:
        self._sources.add(secrets)

    def text(self, text: str) -> str:
        for source in list(self._sources):
            text = source.redact_text(text)
        return text

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        if isinstance(value, BaseException):
            return self.text(f"{type(value).__name__}: {value}")
        return value


LOG_REDACTION = LogRedaction()


def redact_processor(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: every value of the event redacted. Put it after
    ``format_exc_info`` or ``ExceptionRenderer`` (so tracebacks are text by then) and before
    the renderer."""
    for key, value in list(event.items()):
        if not key.startswith("_"):  # _record and _from_structlog belong to ProcessorFormatter
            event[key] = LOG_REDACTION.value(value)
    return event


class RedactingFilter(logging.Filter):
    """stdlib logging filter for a handler: the record's message and traceback redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:  # bounded: a deep one would block the loop
            message += "\n" + format_traceback(record.exc_info[1]).rstrip("\n")
            record.exc_info, record.exc_text = None, None
        record.msg, record.args = LOG_REDACTION.text(message), None
        return True


def configure_logging(config: LoggingConfig) -> None:
    """Configure structlog and stdlib logging once, for ``jobengine start`` and friends."""
    level = getattr(logging, config.level.upper())
    renderer: structlog.typing.Processor
    if config.format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Tracebacks cut to size before they are formatted (engine.core.tracebacks): a
    # recursion-deep one took seconds to format on the event loop.
    exceptions = structlog.processors.ExceptionRenderer(format_exc_info)
    structlog.configure(
        processors=[*shared, exceptions, redact_processor, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    exceptions, redact_processor, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    logging.captureWarnings(True)  # a library's warning is a log line too, not loose text on stderr
    # Libraries' chatter below WARNING is noise next to jobengine's own events.
    root.setLevel(max(level, logging.WARNING))

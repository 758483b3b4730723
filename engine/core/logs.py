"""structlog set-up for the CLI: JSON lines in containers, readable text on a terminal.

Records from the standard library's logging (asyncpg, aiohttp, asyncssh) go through the same
renderer, so a JSON log stays one JSON object per line, tracebacks included.
"""

from __future__ import annotations

import logging
import sys

import structlog

from engine.core.config import LoggingConfig


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
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries' chatter below WARNING is noise next to jobengine's own events.
    root.setLevel(max(level, logging.WARNING))

"""What a running attempt tells the operator: the lines its handler logs through
``ctx.logger`` and the progress it reports with ``await ctx.progress(0.4, "copied 4/10")``.
Pure, no I/O: a node's writer (engine/maintenance/attempt_log_writer.py) stores them in
batches. Capped (the last MAX_LINES lines of MAX_LINE_CHARS characters each), with secrets
redacted before anything is kept. ``OutputLines`` cuts a command's streamed output (the ssh
handler's stdout and stderr) into such lines as it arrives.

Example::

    logs = AttemptLogs(secrets)
    log = logs.start(job_id=7, attempt=1)
    AttemptLogger(structlog.get_logger(), log).info("copied", files=4)
    log.set_progress(0.4, "copied 4/10")
    logs.finish(7, 1)
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from engine.core.secrets import Secrets

MAX_LINES = 200        # kept per attempt: the last ones
MAX_LINE_CHARS = 500
MAX_PROGRESS_TEXT = 200
# Of a command's output line not ended yet: more is dropped up to its newline. Far more than
# MAX_LINE_CHARS, so a secret that starts within the kept characters is whole when redacted.
MAX_PARTIAL_BYTES = 65_536
MAX_UNWRITTEN = 10_000  # finished attempts waiting for the writer (the database is away): oldest dropped


@dataclass(slots=True)
class AttemptLog:
    """One attempt's lines not yet written, and its progress."""

    job_id: int
    attempt: int
    secrets: Secrets
    pending: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_LINES))
    progress: float | None = None
    progress_text: str | None = None
    dirty: bool = False
    finished: bool = False

    def add(self, level: str, message: str, fields: dict[str, Any]) -> None:
        extra = " ".join(f"{key}={value}" for key, value in fields.items())
        stamp = time.strftime("%H:%M:%S", time.gmtime())
        line = f"{stamp} {level} {message}" + (f" {extra}" if extra else "")
        self.pending.append(self.secrets.redact_text(line)[:MAX_LINE_CHARS])
        self.dirty = True

    def add_lines(self, level: str, messages: list[str]) -> None:
        """Several lines at once (a command's output): each as :meth:`add` keeps it. Only
        the last MAX_LINES can survive, so only they are redacted and kept."""
        if not messages:
            return
        stamp = time.strftime("%H:%M:%S", time.gmtime())
        redact = self.secrets.redact_text
        self.pending.extend(redact(f"{stamp} {level} {message}")[:MAX_LINE_CHARS] for message in messages[-MAX_LINES:])
        self.dirty = True

    def set_progress(self, fraction: float, text: str | None = None) -> None:
        """``fraction`` from 0 to 1; ``text`` a short note (``"copied 4/10"``)."""
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or math.isnan(fraction) \
                or not 0 <= fraction <= 1:
            raise ValueError(f"progress: a number from 0 to 1, not {fraction!r}")
        self.progress = float(fraction)
        self.progress_text = self.secrets.redact_text(str(text))[:MAX_PROGRESS_TEXT] if text is not None else None
        self.dirty = True

    def take(self) -> list[str]:
        """The lines logged since the last take."""
        lines = list(self.pending)
        self.pending.clear()
        self.dirty = False
        return lines


class OutputLines:
    """A command's output stream, fed as it arrives, added to an attempt log line by line
    (level ``stdout`` or ``stderr``). A line is held until its newline; one longer than
    MAX_PARTIAL_BYTES is kept from its start (redacted, then cut as every line is) and the
    rest of it dropped, so memory stays bounded whatever the command prints.

    Example::

        lines = OutputLines(log, "stdout")
        lines.feed(b"copying\nhalf")   # adds "... stdout copying"
        lines.feed(b"way\n")            # adds "... stdout halfway"
        lines.close()                   # adds an unfinished last line, if any
    """

    def __init__(self, log: AttemptLog, stream: str) -> None:
        self._log = log
        self._stream = stream
        self._partial = b""
        self._skipping = False  # inside a line already cut at MAX_PARTIAL_BYTES

    def feed(self, data: bytes) -> None:
        if self._skipping:
            end = data.find(b"\n")
            if end < 0:
                return
            data, self._skipping = data[end + 1:], False
        parts = (self._partial + data if self._partial else data).split(b"\n")
        self._partial = parts.pop()
        if len(self._partial) > MAX_PARTIAL_BYTES:
            parts.append(self._partial)
            self._partial, self._skipping = b"", True
        self._add(parts)

    def close(self) -> None:
        if self._partial:
            self._add([self._partial])
            self._partial = b""

    def _add(self, parts: list[bytes]) -> None:
        self._log.add_lines(self._stream, [part.decode("utf-8", "replace").removesuffix("\r")
                                           for part in parts[-MAX_LINES:]])


class AttemptLogs:
    """The attempts of one process that logged or reported progress, until written."""

    def __init__(self, secrets: Secrets) -> None:
        self.secrets = secrets
        self.live: dict[tuple[int, int], AttemptLog] = {}

    def start(self, job_id: int, attempt: int) -> AttemptLog:
        log = AttemptLog(job_id, attempt, self.secrets)
        self.live[(job_id, attempt)] = log
        return log

    def finish(self, job_id: int, attempt: int) -> None:
        """The attempt ended: written once more if it has news, then forgotten."""
        log = self.live.get((job_id, attempt))
        if log is None:
            return
        log.finished = True
        if not log.dirty:
            del self.live[(job_id, attempt)]
        elif len(self.live) > MAX_UNWRITTEN:
            oldest = next(key for key, entry in self.live.items() if entry.finished)
            del self.live[oldest]

    def dirty(self) -> list[AttemptLog]:
        return [log for log in self.live.values() if log.dirty]

    def written(self, logs: list[AttemptLog]) -> None:
        for log in logs:
            if log.finished and not log.dirty:
                self.live.pop((log.job_id, log.attempt), None)


class AttemptLogger:
    """``ctx.logger``: the engine's structured logger, whose lines are also kept with the
    attempt (``debug`` lines only go to the process log)."""

    def __init__(self, logger: Any, log: AttemptLog) -> None:
        self._logger = logger
        self._log = log

    def bind(self, **fields: Any) -> AttemptLogger:
        return AttemptLogger(self._logger.bind(**fields), self._log)

    def debug(self, message: str, **fields: Any) -> None:
        self._logger.debug(message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self._emit("info", message, fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._emit("warning", message, fields)

    warn = warning

    def error(self, message: str, **fields: Any) -> None:
        self._emit("error", message, fields)

    def exception(self, message: str, **fields: Any) -> None:
        self._log.add("error", message, fields)
        self._logger.exception(message, **fields)

    def _emit(self, level: str, message: str, fields: dict[str, Any]) -> None:
        self._log.add(level, message, fields)
        getattr(self._logger, level)(message, **fields)

"""Tracebacks cut to size *before* they are formatted.

Formatting a frame costs the standard library tens of microseconds (its source line, its
position), so a recursion-deep traceback of 5,000 frames took a second to format and
another to log, on the event loop: heartbeats, requests and other jobs waited. Here only
the outermost :data:`HEAD_FRAMES` and the innermost :data:`TAIL_FRAMES` frames of each
exception are formatted (walking the rest is a pointer chase), at most
:data:`MAX_EXCEPTIONS` exceptions of a chain or group are followed, each exception's
message is cut at :data:`MAX_MESSAGE` characters, and the whole at :data:`MAX_CHARS`.
Pure: redacting secrets stays the caller's (the executor, the log processors).

Example::

    try:
        handler()
    except Exception as exc:
        text = format_traceback(exc)   # like traceback.format_exc(), bounded
"""

from __future__ import annotations

import traceback
from types import TracebackType
from typing import Any

HEAD_FRAMES = 10  # where the call came from
TAIL_FRAMES = 40  # where it failed
MAX_EXCEPTIONS = 8  # of a __cause__ / __context__ chain and exception groups, together
MAX_GROUP_MEMBERS = 3  # an exception group's members shown
MAX_MESSAGE = 2_000
MAX_CHARS = 32_000

_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def format_traceback(exc: BaseException, *, head: int = HEAD_FRAMES, tail: int = TAIL_FRAMES,
                     max_chars: int = MAX_CHARS) -> str:
    """``exc`` with its traceback, chained causes and group members, as
    ``traceback.format_exception`` writes them, but bounded (see the module docstring)."""
    parts: list[str] = []
    _format(exc, parts, budget=[MAX_EXCEPTIONS], head=head, tail=tail, seen=set())
    text = "".join(parts)
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n... ({len(text) - max_chars:,} more characters cut)\n"
    return text


def format_exc_info(exc_info: Any) -> str:
    """:func:`format_traceback` for a ``sys.exc_info()`` tuple (structlog's and logging's
    exception formatters take one)."""
    exc = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    if not isinstance(exc, BaseException):
        return "NoneType: None\n"
    return format_traceback(exc)


def _chain(exc: BaseException, budget: list[int], seen: set[int]) -> list[tuple[BaseException, str]]:
    """``exc`` and the exceptions it was raised from, outermost first, each with the line
    that joins it to the next."""
    chain: list[tuple[BaseException, str]] = []
    current: BaseException | None = exc
    joint = ""
    while current is not None and id(current) not in seen and budget[0] > 0:
        seen.add(id(current))
        budget[0] -= 1
        chain.append((current, joint))
        if current.__cause__ is not None:
            current, joint = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, joint = current.__context__, _CONTEXT
        else:
            current = None
    chain.reverse()
    return chain


def _format(exc: BaseException, parts: list[str], *, budget: list[int], head: int, tail: int,
            seen: set[int]) -> None:
    chain = _chain(exc, budget, seen)
    for index, (item, _joint) in enumerate(chain):
        if index:
            parts.append(chain[index - 1][1])  # the joint recorded with the exception below it
        parts.extend(_frames(item.__traceback__, head, tail))
        parts.extend(_only(item))
        if isinstance(item, BaseExceptionGroup):
            members = item.exceptions[:MAX_GROUP_MEMBERS]
            for number, member in enumerate(members, 1):
                if budget[0] <= 0:
                    break
                parts.append(f"\n-- member {number} of {len(item.exceptions)} of the group --\n")
                _format(member, parts, budget=budget, head=head, tail=tail, seen=seen)
            if len(item.exceptions) > len(members):
                parts.append(f"\n-- {len(item.exceptions) - len(members)} more members not shown --\n")


def _frames(tb: TracebackType | None, head: int, tail: int) -> list[str]:
    if tb is None:
        return []
    tbs: list[TracebackType] = []
    while tb is not None:  # a pointer chase: cheap, however deep
        tbs.append(tb)
        tb = tb.tb_next
    lines = ["Traceback (most recent call last):\n"]
    if len(tbs) <= head + tail:
        return lines + _summary(tbs)
    omitted = len(tbs) - head - tail
    return [*lines, *_summary(tbs[:head]), f"  ... {omitted:,} frames omitted ...\n", *_summary(tbs[-tail:])]


def _summary(tbs: list[TracebackType]) -> list[str]:
    stack = traceback.StackSummary.extract(((t.tb_frame, t.tb_lineno) for t in tbs), lookup_lines=True)
    return stack.format()


def _only(exc: BaseException) -> list[str]:
    try:
        lines = traceback.format_exception_only(type(exc), exc)
    except Exception:  # a __str__ that raises
        lines = [f"{type(exc).__name__}: <the message could not be formatted>\n"]
    text = "".join(lines)
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + f"... ({len(text) - MAX_MESSAGE:,} more characters cut)\n"
    return [text]

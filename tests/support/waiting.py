"""Waiting on conditions with a deadline (never sleeping to let things settle)."""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

import anyio

_UNSET: Any = object()
MAX_VALUE_CHARS = 500


class WaitTimeoutError(AssertionError, TimeoutError):
    """``wait_until`` ran out of time; the message says what it waited for and what it saw.
    A TimeoutError too, for callers that caught the old error."""


async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, *,
                     what: str | None = None) -> Any:
    """Wait until ``predicate()`` (sync or async) returns something truthy and return it.

    After ``timeout`` seconds, fail with :class:`WaitTimeoutError` (an AssertionError) naming
    ``what`` (else the predicate's source) and the last value it returned.

    Example::

        await wait_until(lambda: recorder.runs[job.id] == 1, timeout=5)
        # AssertionError: waited 5s for recorder.runs[job.id] == 1; last value: False
    """
    last = _UNSET
    with anyio.move_on_after(timeout) as scope:
        while True:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            last = value
            await anyio.sleep(interval)
    # Only our own deadline lands here: a TimeoutError raised by the predicate propagates as is.
    assert scope.cancelled_caught
    seen = "none (the predicate never returned)" if last is _UNSET else _short(repr(last))
    raise WaitTimeoutError(f"waited {timeout:g}s for {what or describe(predicate)}; last value: {seen}")


def describe(predicate: Callable[[], Any]) -> str:
    """A lambda's body as written (``recorder.runs[job.id] == 1``), else the callable's name.

    Example::

        describe(lambda: job.state == "completed")   # 'job.state == "completed"'
    """
    if getattr(predicate, "__name__", None) == "<lambda>":
        body = _lambda_body(predicate)
        if body:
            return body
    name = getattr(predicate, "__qualname__", None)
    return f"{name}()" if name else repr(predicate)


def _lambda_body(predicate: Callable[[], Any]) -> str | None:
    try:
        source = textwrap.dedent(inspect.getsource(predicate))
    except (OSError, TypeError):
        return None
    try:
        tree = ast.parse(source)
    except SyntaxError:  # the lambda's lines are part of a larger statement
        text = " ".join(source.split())
        return text[text.index("lambda"):] if "lambda" in text else text
    lambdas = [node for node in ast.walk(tree) if isinstance(node, ast.Lambda)]
    if len(lambdas) != 1:  # several on one line: which one is ambiguous, show the line
        return " ".join(source.split())
    segment = ast.get_source_segment(source, lambdas[0].body)
    return " ".join(segment.split()) if segment else None


def _short(text: str) -> str:
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + f"... ({len(text)} chars)"

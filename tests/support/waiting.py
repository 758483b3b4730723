"""Waiting on conditions with a deadline (never sleeping to let things settle)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import anyio


async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Wait until ``predicate()`` (sync or async) returns something truthy and return it;
    fail with TimeoutError after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while True:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            await anyio.sleep(interval)

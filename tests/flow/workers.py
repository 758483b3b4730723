"""Handlers for the flow-control tests, importable by engine subprocesses
(``modules = ["tests.flow.workers"]``) as well as by the tests themselves."""

from __future__ import annotations

import os
import time
from typing import Any

import anyio

from engine.core.job import Job
from engine.core.registry import Registry, default_registry

SLEEP_KIND = "flow-sleep"


async def sleep_and_report(job: Job) -> dict[str, Any]:
    """Sleep ``args.sleep`` seconds; report when it ran and in which process."""
    started = time.time()
    await anyio.sleep(float(job.args.get("sleep", 0)))
    return {"started": started, "ended": time.time(), "pid": os.getpid()}


def register(registry: Registry) -> Registry:
    """Register the kinds of this module on ``registry`` (idempotent)."""
    if SLEEP_KIND not in registry:
        registry.handler(SLEEP_KIND, max_attempts=1)(sleep_and_report)
    return registry


register(default_registry)

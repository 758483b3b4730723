"""A test-handler module for engine subprocesses, and the ledger it writes.

Imported by ``jobengine start`` through ``modules = ["tests.support.ledger"]``, it registers
the kind ``ledger.work``. Every start, finish and cancellation of an attempt is appended as
one JSON line to the file named by ``$JOBENGINE_TEST_LEDGER``, so a fault test can tell
what really ran, in which process and when, even after that process was SIGKILLed.

One ``os.write`` per line on an ``O_APPEND`` descriptor: Linux appends each write whole,
so lines from several processes never interleave, and what was written survives the
death of the writer (it sits in the page cache). No fsync: these tests kill processes,
not the machine.

args of ``ledger.work``: ``sleep`` (seconds, every attempt), ``first_sleep`` (seconds on
attempt 1 instead of ``sleep``: a job that hangs until rescued, then finishes at once).

Example::

    entries = read_ledger(path)
    starts = started_ids(entries)          # Counter: job id -> number of starts
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from engine.core.job import Job
from engine.core.registry import Registry, default_registry

LEDGER_ENV = "JOBENGINE_TEST_LEDGER"
KIND = "ledger.work"

_fd: int | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger line: ``event`` is start, finish or cancelled; ``at`` is wall-clock time."""

    event: str
    job_id: int
    attempt: int
    pid: int
    at: float


def record(event: str, job: Job) -> None:
    """Append one line for ``job`` to the ledger file."""
    global _fd
    if _fd is None:
        _fd = os.open(os.environ[LEDGER_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    line = {"event": event, "job_id": job.id, "attempt": job.attempt, "pid": os.getpid(), "at": time.time()}
    os.write(_fd, (json.dumps(line) + "\n").encode())


async def work(job: Job) -> dict[str, Any]:
    """Record the start, sleep as the args say, record the finish (or the cancellation)."""
    record("start", job)
    seconds = job.args.get("first_sleep", job.args.get("sleep", 0)) if job.attempt == 1 else job.args.get("sleep", 0)
    try:
        if seconds:
            await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        record("cancelled", job)
        raise
    record("finish", job)
    return {"pid": os.getpid()}


def register(registry: Registry) -> None:
    """Register ``ledger.work`` in ``registry`` (a client that only enqueues needs it too)."""
    if KIND not in registry:
        registry.handler(KIND, max_attempts=5)(work)


register(default_registry)


def read_ledger(path: Path) -> list[Entry]:
    """Every complete line of the ledger, in the order written."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        if line.endswith("}"):  # a line cut by a kill mid-write is not an event
            data = json.loads(line)
            entries.append(Entry(data["event"], data["job_id"], data["attempt"], data["pid"], data["at"]))
    return entries


def started_ids(entries: list[Entry], *, pid: int | None = None, after: float = 0.0) -> Counter[int]:
    """How many times each job started (in process ``pid``, after time ``after``)."""
    return Counter(e.job_id for e in entries
                   if e.event == "start" and e.at > after and (pid is None or e.pid == pid))


def finished_ids(entries: list[Entry]) -> Counter[int]:
    """How many times each job's handler finished."""
    return Counter(e.job_id for e in entries if e.event == "finish")

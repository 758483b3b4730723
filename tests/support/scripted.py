"""A scripted handler whose behaviour comes from its args, and a recorder that measures
what the handlers saw (concurrency, order, attempts). Keeps engine tests short.

args: {"action": "ok"|"raise"|"snooze"|"cancel"|"discard"|"permanent"|"bad_return",
       "sleep": seconds, "result": value, "snooze": seconds, "snooze_times": n}
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio

from engine.core.job import Job
from engine.core.outcomes import Cancel, Discard, PermanentError, Snooze
from engine.core.registry import Registry


@dataclass
class Recorder:
    current: int = 0
    peak: int = 0
    started: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    attempts: dict[int, list[int]] = field(default_factory=dict)
    runs: Counter[int] = field(default_factory=Counter)
    cancelled: list[int] = field(default_factory=list)

    def start(self, job: Job) -> None:
        self.current += 1
        self.peak = max(self.peak, self.current)
        self.started.append(job.id)
        self.runs[job.id] += 1
        self.attempts.setdefault(job.id, []).append(job.attempt)

    def stop(self, job: Job) -> None:
        self.current -= 1
        self.finished.append(job.id)


def scripted_registry(recorder: Recorder, *, max_attempts: int = 3) -> Registry:
    """A registry with the kind ``scripted`` driven by its args."""
    registry = Registry()

    @registry.handler("scripted", max_attempts=max_attempts)
    async def scripted(job: Job) -> Any:
        recorder.start(job)
        try:
            return await _act(job, recorder)
        except anyio.get_cancelled_exc_class():
            recorder.cancelled.append(job.id)
            raise
        finally:
            recorder.stop(job)

    return registry


async def _act(job: Job, recorder: Recorder) -> Any:
    args = job.args
    if args.get("sleep"):
        await anyio.sleep(args["sleep"])
    match args.get("action", "ok"):
        case "ok":
            return args.get("result", {"ok": True, "id": job.id})
        case "raise":
            raise RuntimeError(args.get("message", "scripted failure"))
        case "snooze":
            if recorder.runs[job.id] <= args.get("snooze_times", 1):
                return Snooze(args.get("snooze", 0))
            return {"ok": True}
        case "cancel":
            return Cancel(args.get("message", "scripted cancel"))
        case "discard":
            return Discard(args.get("message", "scripted discard"))
        case "permanent":
            raise PermanentError(args.get("message", "scripted permanent failure"))
        case "bad_return":
            return object()
    raise ValueError(f"unknown action {args.get('action')!r}")

"""Limits a queue keeps across every process sharing the database: a rate limit
(``rate_limit = "100/min"``: at most 100 attempts start in any 60-second window) and a
global concurrency limit (``global_limit = 5``: at most 5 jobs of the queue executing on
all nodes together, on top of each node's own ``concurrency``).

How: every claim of a limited queue runs in a short transaction that first locks the
queue's row in ``queue_limits``, then, in a second statement that sees everything the
previous holder committed, counts the queue's executing jobs and the claims logged in the
rate window, and claims at most what is left (``JOB_FETCH_LIMITED``). Claims of one
limited queue therefore take turns; claims of other queues, and every queue without
limits, use the plain claim statement and never touch that table.

When a claim comes back short because of a limit, the producer does not ask again before
the earliest moment it could get more (:func:`next_claim_in`): when the oldest logged
claim leaves the rate window, and, for the global limit, after :data:`GLOBAL_RECHECK`
seconds (a slot is freed by an ack on any node, which does not notify).

Every process serving the queue must have the same limits in its config: a process
without them claims through the plain path and is not held back.

Example::

    limits = QueueLimits.from_config(QueueConfig(rate_limit="100/min", global_limit=5))
    jobs, retry_in = await claim(queue, "mailers", 10, "node-1", limits)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from engine.core.config import QueueConfig, parse_rate
from engine.core.job import Job
from engine.db.rows import ClaimWindow
from engine.db.store import JobStore

__all__ = ["GLOBAL_RECHECK", "JITTER", "QueueLimits", "claim", "next_claim_in"]

# Seconds between claims of a queue held back by its global limit (on average).
GLOBAL_RECHECK = 0.1
# A claim is retried this long after the rate window frees a slot, so the database clock
# has moved past the boundary even with a little skew between client and server.
WINDOW_SLACK = 0.005
# Each wait is stretched by up to this fraction at random. Without it, processes held back
# together re-ask in lockstep and the one that asked first last time wins every slot.
JITTER = 0.5


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """A queue's shared limits; ``None`` fields are not limited.

    Example::

        QueueLimits.from_config(QueueConfig(rate_limit="10/s"))   # QueueLimits(rate=10, window=1.0, ...)
    """

    rate: int | None = None
    window: float | None = None
    global_limit: int | None = None

    @classmethod
    def from_config(cls, settings: QueueConfig) -> QueueLimits | None:
        """The limits ``settings`` asks for, or None for a queue without any (the fast path)."""
        rate, window = parse_rate(settings.rate_limit) if settings.rate_limit else (None, None)
        if rate is None and settings.global_limit is None:
            return None
        return cls(rate=rate, window=window, global_limit=settings.global_limit)


def next_claim_in(limits: QueueLimits, window: ClaimWindow, wanted: int, claimed: int) -> float | None:
    """Seconds before another claim could get more, when ``limits`` held this one back;
    None when the claim was not held back (it got all it asked for, or the queue ran dry).

    Example::

        next_claim_in(QueueLimits(rate=10, window=60.0), window, wanted=5, claimed=0)   # e.g. 41.7
    """
    if claimed >= wanted or claimed < window.quota:
        return None
    waits: list[float] = []
    if limits.rate is not None and limits.window is not None and window.recent + claimed >= limits.rate:
        if window.oldest is None:  # all of the window's claims are this one's
            waits.append(limits.window + WINDOW_SLACK)
        else:
            frees_at = (window.oldest - window.clock).total_seconds() + limits.window
            waits.append(max(frees_at, 0.0) + WINDOW_SLACK)
    if limits.global_limit is not None and window.running + claimed >= limits.global_limit:
        waits.append(GLOBAL_RECHECK)
    if not waits:
        return None
    # Each exhausted limit must free a slot before a claim can get more: wait for the last.
    return max(waits) + random.uniform(0.0, JITTER) * min(GLOBAL_RECHECK, max(waits))


async def claim(store: JobStore, name: str, wanted: int, node: str,
                limits: QueueLimits) -> tuple[list[Job], float | None]:
    """Claim up to ``wanted`` jobs of queue ``name`` within ``limits``; returns the jobs
    and :func:`next_claim_in`'s hint."""
    jobs, window = await store.fetch_limited(name, wanted, node, rate=limits.rate, window=limits.window,
                                             global_limit=limits.global_limit)
    return jobs, next_claim_in(limits, window, wanted, len(jobs))

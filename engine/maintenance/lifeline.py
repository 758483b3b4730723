"""Heartbeats for this node, rescue of jobs left executing by nodes that died, and the
fence that stops this node's own jobs before other nodes may rescue them.

The lease rule: a node whose heartbeat is older than ``rescue_after`` is presumed dead and
its ``executing`` jobs are returned to the queue by whichever node looks first. A node that
is alive but cannot reach the database (a partition, a long outage) cannot tell the others,
so it stops its running jobs itself, ``heartbeat_interval`` before its lease can expire:
a job never runs on two nodes at once. The stopped jobs go back without spending an
attempt, through the same fenced ack as any outcome, once the database answers again
(or are rescued by another node first; the late ack then changes nothing). The fence is
armed again as soon as a heartbeat sent within ``fence_after`` lands, whether heartbeats
failed meanwhile or merely landed late (a frozen process, a pause, a blocked loop), so
every later stall is fenced too.
"""

from __future__ import annotations

import importlib.metadata
import os
import socket
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from typing import Any

import anyio
import structlog

from engine.core.claims import ClaimGate
from engine.core.config import LifelineConfig
from engine.core.errors import NodeNameInUse
from engine.core.job import Job, JobState
from engine.db.faults import log_fault
from engine.db.rows import InsertRow
from engine.db.store import JobStore

log = structlog.get_logger("jobengine.lifeline")


def node_identity() -> dict[str, Any]:
    """Who runs this node: host, process id and jobengine version (sent with every heartbeat)."""
    try:
        version = importlib.metadata.version("jobengine")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"host": socket.gethostname(), "pid": os.getpid(), "version": version}


class Lifeline:
    """Every ``heartbeat_interval``: heartbeat this node, then rescue the jobs of nodes
    silent for ``rescue_after`` seconds.

    Callbacks: ``on_recovered()`` when heartbeats land again after failing (retry now,
    not after a backoff); ``on_lease_lost(silent_for)`` when they have failed for so long
    that other nodes may soon rescue this node's jobs; ``on_discarded(job)`` gives the
    follow-up rows (onFailure, failure notification) of a job the rescue discards;
    ``describe()`` what each heartbeat's meta adds (the node's queues with their concurrency
    and running jobs); ``known_jobs()`` the ids this node runs or has yet to ack: any other job executing
    under its name for over ``claim_grace`` seconds is an orphan too (a lost claim).

    Example::

        lifeline = Lifeline(store, node="web-1.42", queues=["default"], config=config.lifeline)
        await lifeline.beat()        # register (and rescue this name's earlier life)
        await lifeline.run()         # until cancelled
        lifeline.healthy             # False while heartbeats fail
    """

    def __init__(self, store: JobStore, *, node: str, queues: Sequence[str], config: LifelineConfig,
                 meta: dict[str, Any] | None = None, on_recovered: Callable[[], None] | None = None,
                 on_lease_lost: Callable[[float], None] | None = None,
                 on_discarded: Callable[[Job], Sequence[InsertRow]] | None = None,
                 known_jobs: Callable[[], Collection[int]] | None = None, claim_grace: float = 30.0,
                 claims: ClaimGate | None = None, describe: Callable[[], dict[str, Any]] | None = None) -> None:
        self.store = store
        self.node = node
        self.queues = list(queues)
        self.config = config
        self.meta = meta or {}
        self.on_recovered = on_recovered
        self.on_lease_lost = on_lease_lost
        self.on_discarded = on_discarded
        self.known_jobs = known_jobs
        self.claim_grace = claim_grace
        self.claims = claims  # the node's claims in flight: with none, a lost claim goes back at once
        self.describe = describe  # what changes between beats (running jobs per queue), for the nodes page
        self.failures = 0
        self.instance = uuid.uuid4().hex  # tells this process from another using the same node name
        self._last_ok: float | None = None  # monotonic time the last landed heartbeat was sent
        self._registered = False
        self._retired = False
        self._beat_lock = anyio.Lock()
        self._fenced = False  # jobs stopped; cleared only once a fresh heartbeat lands
        self._rearmed = anyio.Event()  # wakes the lease watch when the fence is armed again

    # --- state -----------------------------------------------------------------------------

    @property
    def heartbeat_age(self) -> float | None:
        """Seconds since the last heartbeat that landed was sent (None: none yet)."""
        return None if self._last_ok is None else time.monotonic() - self._last_ok

    @property
    def healthy(self) -> bool:
        """True while heartbeats land: the last one succeeded, within two intervals."""
        age = self.heartbeat_age
        limit = max(2 * self.config.heartbeat_interval, self.config.heartbeat_interval + 1.0)
        return self.failures == 0 and age is not None and age <= limit

    @property
    def lease_fresh(self) -> bool:
        """True while the last landed heartbeat is younger than ``fence_after``: jobs this
        node claims now cannot be rescued from under it before it fences them. Checked at
        each claim, since the lease watch may run only after a claim once a frozen process
        wakes (a chaos soak caught five jobs claimed in that moment and rescued by others)."""
        age = self.heartbeat_age
        return age is not None and age < self.fence_after

    @property
    def fence_after(self) -> float:
        """Seconds without a landed heartbeat after which this node stops its jobs."""
        return self.config.rescue_after - min(self.config.heartbeat_interval, self.config.rescue_after / 2)

    # --- work --------------------------------------------------------------------------------

    async def beat(self) -> None:
        """Heartbeat once. The first time, also rescue jobs still claimed under this node's
        name: with a fixed ``node_name`` they belong to the process this one replaces."""
        sent = time.monotonic()
        async with self._beat_lock:
            if self._retired:
                return
            meta = {**self.meta, **self.describe()} if self.describe is not None else self.meta
            if not await self.store.heartbeat(self.node, self.queues, {**meta, "instance": self.instance},
                                              takeover_after=self.config.rescue_after):
                raise NodeNameInUse(f"node name {self.node!r} is in use by another live process (it heartbeats "
                                    f"within rescue_after = {self.config.rescue_after:g}s); give each process its "
                                    "own node_name, or leave it unset")
        self._last_ok = sent
        if self._fenced and time.monotonic() - sent < self.fence_after:
            self._rearm()
        if not self._registered:
            self._registered = True
            await self.rescue(starting=True)

    async def retire(self) -> None:
        """Send no more heartbeats (waiting out one in flight), so the node row that a clean
        shutdown deletes next cannot be re-created by a late upsert."""
        async with self._beat_lock:
            self._retired = True

    async def rescue(self, *, starting: bool = False) -> list[Job]:
        """Rescue orphaned jobs once; returns them in their new state. ``starting``: this
        node runs nothing yet, so every job held under its name is an orphan."""
        if starting or self.known_jobs is None or self.claims is None:
            return await self._rescue(starting=starting, grace=0.0 if starting else self.claim_grace)
        # Claims wait for the moment the rescue runs; a claim still on its way (a slow answer)
        # makes the rescue leave this node's unknown jobs to the claim grace instead.
        async with self.claims.quiet(wait=min(1.0, self.config.heartbeat_interval)) as quiet:
            return await self._rescue(starting=False, grace=0.0 if quiet else self.claim_grace)

    async def _rescue(self, *, starting: bool, grace: float) -> list[Job]:
        known = () if starting or self.known_jobs is None else list(self.known_jobs())
        jobs = await self.store.rescue_orphaned(
            self.config.rescue_after, self.config.max_rescues, node=self.node, known=known,
            claim_grace=grace, on_discarded=self._followups if self.on_discarded is not None else None)
        stopped = await self.store.confirm_stopped_of_silent(
            self.config.rescue_after, restarting=self.node if starting else None, node=self.node, known=known,
            claim_grace=grace)
        if stopped:
            log.info("cancelled jobs whose node is gone are stopped", job_ids=stopped[:20], count=len(stopped))
        if jobs:
            discarded = [job.id for job in jobs if job.state == JobState.DISCARDED]
            log.warning("rescued orphaned jobs", count=len(jobs), discarded=discarded[:20],
                        jobs=[job.id for job in jobs][:20], nodes=sorted({str(job.attempted_by) for job in jobs}))
        return jobs

    def _followups(self, job: Job) -> Sequence[InsertRow]:
        """The discarded job's follow-up rows; a failure here must not block every rescue."""
        assert self.on_discarded is not None
        try:
            return self.on_discarded(job)
        except Exception:
            log.exception("follow-ups of a discarded job failed; discarding without them", job_id=job.id)
            return ()

    async def run(self) -> None:
        """Heartbeat and rescue until cancelled; never ends on a database fault."""
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch_lease)
            while True:
                await self._tick()
                await anyio.sleep(self.config.heartbeat_interval)

    async def _tick(self) -> None:
        try:
            await self.beat()
        except NodeNameInUse as exc:  # a beat that is not ours to write: the lease watch stops our jobs
            self.failures += 1
            log.error("another live process uses this node name; not heartbeating", node=self.node,
                      error=str(exc), failures=self.failures)
            return
        except Exception as exc:  # the next beat retries; the lease watch acts if they keep failing
            self.failures += 1
            log_fault(log, "heartbeat failed", exc, failures=self.failures,
                      silent_for=round(self.heartbeat_age or 0.0, 1))
            return
        if self.failures:
            log.info("heartbeats landing again; resuming", failed_beats=self.failures)
            self.failures = 0
            if self.on_recovered is not None:
                self.on_recovered()
        try:
            await self.rescue()
        except Exception as exc:  # the next beat retries
            log_fault(log, "rescue failed", exc)

    def _rearm(self) -> None:
        """A heartbeat sent within ``fence_after`` landed: the lease holds again, so the
        next stall must stop this node's jobs again; the producers may claim again."""
        self._fenced = False
        self._rearmed.set()
        log.info("heartbeats landing again; lease fence armed")
        if self.on_recovered is not None:
            self.on_recovered()

    async def _watch_lease(self) -> None:
        """Apart from the beat loop, which a hanging query may hold up: stop this node's
        jobs once no heartbeat has landed for ``fence_after`` seconds."""
        while True:
            self._rearmed = anyio.Event()
            age = self.heartbeat_age
            if age is not None and age >= self.fence_after and not self._fenced:
                self._fenced = True
                log.error("heartbeats failing: stopping this node's running jobs before other nodes may "
                          "rescue them", silent_for=round(age, 1), rescue_after=self.config.rescue_after)
                if self.on_lease_lost is not None:
                    self.on_lease_lost(age)
            if self._fenced:
                await self._rearmed.wait()
            else:
                await anyio.sleep(self.fence_after - (age or 0.0))

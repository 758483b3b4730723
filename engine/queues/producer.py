"""One producer per queue per process: claims jobs in batches sized to its free slots
and runs each in its own task under the queue's concurrency limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import structlog

from engine.core import backoff
from engine.core.acks import Ack, ErrorEntry
from engine.core.claims import ClaimGate
from engine.core.job import Job
from engine.db.store import JobStore
from engine.queues.acker import Acker
from engine.queues.executor import Executor
from engine.queues.limits import QueueLimits, claim

log = structlog.get_logger("jobengine.producer")


@dataclass(slots=True)
class RunningJob:
    job: Job
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    stop_reason: str | None = None

    @property
    def key(self) -> RunKey:
        return self.job.id, self.job.attempt


# Running work is keyed by attempt, not by job: a job rescued from under this process (a
# freeze, a partition) may be claimed again while its earlier attempt still runs here.
RunKey = tuple[int, int]


class Producer:
    """Fetches and runs the jobs of one queue.

    Woken by :meth:`notify` (an insert notification, a freed slot while more work may be
    waiting) and by polling as a backstop. Never holds a transaction while a job runs.
    """

    def __init__(self, name: str, *, concurrency: int, paused: bool, store: JobStore, executor: Executor,
                 acker: Acker, node: str, poll_interval: float, limits: QueueLimits | None = None,
                 claims: ClaimGate | None = None, lease_fresh: Callable[[], bool] | None = None) -> None:
        self.name = name
        self.limit = concurrency
        self.paused = paused
        self.store = store
        self.executor = executor
        self.acker = acker
        self.node = node
        self.poll_interval = poll_interval
        self.running: dict[RunKey, RunningJob] = {}
        self.claims = claims or ClaimGate()  # shared by the node's producers and its lifeline
        self._lease_fresh = lease_fresh or (lambda: True)  # the node's lease, read at each claim
        self.released: list[int] = []
        self._more = True
        self._signalled = False
        self._event = anyio.Event()
        self._stopping = False
        self._grace = 0.0
        self._stopped = anyio.Event()
        self._nudge = anyio.Event()  # cuts a fetch backoff short (notify, stop)
        self._drain_scope: anyio.CancelScope | None = None
        self._hurried = False
        self._lease_silence = 0.0
        self._lease_cause: str | None = None
        self._lease_lost = False  # no claims from lose_lease until regain_lease: they could be rescued
        self.limits = limits  # flow control: shared rate / global limits (None: the plain claim)
        self._held_until = 0.0  # monotonic time before which a limit holds claims back
        self._slot_freed = False  # a job of a globally limited queue finished here
        executor.threads.resize(name, concurrency)  # sync handlers: never more threads than slots

    # --- control, from the engine and notifier ---------------------------------

    def notify(self) -> None:
        """Work may be waiting: fetch soon."""
        self._more = True
        self._signalled = True
        self._event.set()
        self._nudge.set()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self.notify()

    def scale(self, concurrency: int) -> None:
        self.limit = max(1, concurrency)
        self.executor.threads.resize(self.name, self.limit)
        self.notify()

    def may_claim(self) -> bool:
        """Not paused, not held back by a limit, and the node's lease is sure: its last
        heartbeat landed within the fence (engine/maintenance/lifeline.py)."""
        return (not self.paused and not self._lease_lost and time.monotonic() >= self._held_until
                and self._lease_fresh())

    def running_ids(self) -> set[int]:
        """The jobs this producer runs an attempt of."""
        return {job_id for job_id, _attempt in self.running}

    def cancel_job(self, job_id: int) -> bool:
        """Cancel a running job's tasks (its row was already cancelled by the caller)."""
        attempts = [running for (running_id, _), running in self.running.items() if running_id == job_id]
        for running in attempts:
            running.stop_reason = "cancelled"
            running.scope.cancel()
        return bool(attempts)

    async def stop(self, grace: float) -> None:
        """Stop claiming now; let running jobs finish for ``grace`` seconds, then cancel them."""
        self._stopping = True
        self._grace = 0.0 if self._hurried else grace
        self._signalled = True
        self._event.set()
        self._nudge.set()
        await self._stopped.wait()

    def lose_lease(self, silent_for: float, cause: str | None = None) -> int:
        """This node could not heartbeat for ``silent_for`` seconds and other nodes may soon
        rescue its jobs: stop them all (each goes back, unspent, once the database answers).
        ``cause``: why, when known (a blocked event loop), for the jobs' reasons."""
        self._lease_silence = silent_for
        self._lease_cause = cause
        self._lease_lost = True
        for running in self.running.values():
            running.stop_reason = "lease lost"
            running.scope.cancel()
        return len(self.running)

    @property
    def lease_lost(self) -> bool:
        """True from :meth:`lose_lease` until :meth:`regain_lease`: nothing is claimed."""
        return self._lease_lost

    def regain_lease(self) -> None:
        """Heartbeats land again: claim again."""
        if self._lease_lost:
            self._lease_lost = False
            self.notify()

    def hurry(self) -> None:
        """End the grace period now: running jobs are cancelled and released."""
        self._hurried = True
        self._grace = 0.0
        if self._drain_scope is not None:
            self._drain_scope.cancel()

    # --- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and run jobs until stopped. The node supervisor runs this again should it
        ever end early (a bug): the attempts it was running are then released."""
        self._stopped = anyio.Event()
        try:
            async with anyio.create_task_group() as jobs:
                await self._loop(jobs)
                await self._drain()
        finally:
            self._stopped.set()

    async def _loop(self, jobs: anyio.abc.TaskGroup) -> None:
        failures = 0
        while not self._stopping:
            if self._slot_freed:
                await self._take_freed_slot()
            free = self.limit - len(self.running)
            if free > 0 and self._more and self.may_claim():
                # A notify from here on arrives while the claim is in flight and may concern a
                # job the claim's snapshot missed: it must lead to one more look.
                self._signalled = False
                try:
                    # The gate is left only once the claimed jobs are known to the node (running,
                    # released or handed back): the lifeline may rescue any other at once.
                    async with self.claims.claiming():
                        claimed = await self._claim(free)
                        batch = await self._place(claimed)
                    failures = 0
                except Exception as exc:  # a database fault must not end the producer
                    failures += 1
                    delay = backoff.jittered(failures, base=0.1, cap=5.0)
                    log.warning("fetch failed; backing off", queue=self.name, error=str(exc) or type(exc).__name__,
                                retry_in=round(delay, 2))
                    with anyio.move_on_after(delay):
                        await self._nudge.wait()
                    self._nudge = anyio.Event()
                    continue
                if self._stopping:
                    break
                if batch is None:
                    continue
                self._more = len(claimed) == free or self._signalled
                if batch:
                    jobs.start_soon(self._run_batch, batch, name=f"jobengine {self.name} batch")
                if self._more and self.limit - len(self.running) > 0:
                    continue
            await self._wait()

    async def _place(self, claimed: list[Job]) -> list[RunningJob] | None:
        """Register what a claim got: to run (returned), to release at shutdown (claimed
        while the stop came), or handed back (paused while the claim was in flight: None)."""
        if self._stopping:
            self.released.extend(job.id for job in claimed)
            return []
        if self.paused and claimed:
            await self._hand_back(claimed)
            return None
        batch = [RunningJob(job) for job in claimed]
        self.running.update((r.key, r) for r in batch)
        return batch

    async def _hand_back(self, claimed: list[Job]) -> None:
        try:
            await self.store.release([job.id for job in claimed], self.node)
        except Exception as exc:  # the lifeline's lost-claim rescue returns them later
            log.warning("could not hand back claimed jobs", queue=self.name,
                        error=str(exc) or type(exc).__name__)

    async def _claim(self, free: int) -> list[Job]:
        running = self.running_ids()
        if self.limits is None:
            return await self.store.fetch(self.name, free, self.node, running=running)
        # Flow control: a claim held back by a limit says when asking again can pay off.
        claimed, retry_in = await claim(self.store, self.name, free, self.node, self.limits)
        self._held_until = 0.0 if retry_in is None else time.monotonic() + retry_in
        again = [job for job in claimed if job.id in running]
        if again:  # still running here: never a second attempt beside it; look again after a poll
            await self._hand_back(again)
            self._held_until = max(self._held_until, time.monotonic() + self.poll_interval)
            claimed = [job for job in claimed if job.id not in running]
        return claimed

    async def _take_freed_slot(self) -> None:
        # Flow control: the finished job holds its global slot until its ack lands; then this
        # node may take the slot at once instead of at the next recheck (other nodes poll).
        self._slot_freed = False
        with anyio.move_on_after(1.0):
            await self.acker.wait_idle()
        self._held_until = 0.0
        self._more = True

    async def _wait(self) -> None:
        if not self._signalled:
            timeout = self.poll_interval
            if self._held_until:
                timeout = min(timeout, max(0.0, self._held_until - time.monotonic()))
            with anyio.move_on_after(timeout) as scope:
                await self._event.wait()
            if scope.cancelled_caught:
                self._more = True  # polling backstop: look even without a notification
        self._signalled = False
        self._event = anyio.Event()

    async def _run_batch(self, batch: list[RunningJob]) -> None:
        """Run a claimed batch's jobs concurrently. One anyio task per batch keeps errors and
        cancellation inside the producer's task group; each job is a plain asyncio task (a
        fifth of an anyio task's cost, which was a quarter of a no-op job's CPU). Slots
        free per job, as before: the batch task only waits for its last job."""
        if len(batch) == 1:
            await self._run_job(batch[0])
        else:
            await asyncio.gather(*[self._run_job(running) for running in batch])

    async def _run_job(self, running: RunningJob) -> None:
        acked = False
        try:
            with running.scope:
                ack = await self.executor.execute(running.job)
                self.acker.put(ack)
                acked = True
            if running.scope.cancelled_caught and running.stop_reason == "shutdown":
                self.released.append(running.job.id)
            elif running.scope.cancelled_caught and running.stop_reason == "lease lost":
                self.acker.put(Ack.lease_lost(running.job, self._lease_silence, self._lease_cause))
            elif running.scope.cancelled_caught and running.stop_reason == "cancelled":
                # The row is cancelled already, so this ack is stale: it tells the job's
                # readers that the handler has stopped (retry and delete wait for that).
                error = ErrorEntry.now(running.job.attempt, "cancelled", "handler stopped after a cancel")
                self.acker.put(Ack.cancelled(running.job, error))
        except BaseException:
            if not acked:  # the producer itself ends (a bug, restarted): give the job back
                self.released.append(running.job.id)
            raise
        finally:
            self.running.pop(running.key, None)
            if self.limits is not None and self.limits.global_limit is not None and not self._stopping:
                self._slot_freed = True  # flow control: claim again once this job's ack has landed
                self._signalled = True
                self._event.set()
            elif self._more or self._stopping:
                self._signalled = True
                self._event.set()

    async def _drain(self) -> None:
        with anyio.move_on_after(self._grace) as self._drain_scope:
            while self.running:
                await self._wait()
        for running in list(self.running.values()):
            running.stop_reason = "shutdown"
            running.scope.cancel()

"""Cancelled jobs whose handler may still run (``stopping_since``, migration 007): one part
of :class:`engine.db.store.JobStore`.

Cancelling an executing job marks it cancelled at once; its handler stops only when the
message reaches its node. Until that node confirms the stop (its ack for the attempt comes
back stale) or is declared dead, the job is *stopping*, and retry, run-now and delete
refuse it: each would start a second copy beside the first.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from engine.core.acks import Ack
from engine.db.base import StoreBase


class StoppingRows(StoreBase):
    """Confirmations that a cancelled job's handler has stopped."""

    async def confirm_stopped(self, acks: Sequence[Ack]) -> list[int]:
        """These attempts ended (their acks came back stale): the cancelled ones among them
        stop stopping. Returns those ids."""
        if not acks:
            return []
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.JOB_CONFIRM_STOPPED, [a.job_id for a in acks],
                                       [a.attempt for a in acks], [a.attempted_at for a in acks])
        return [r["id"] for r in records]

    async def confirm_stopped_of_silent(self, silent_for: float, *, restarting: str | None = None,
                                        node: str | None = None, known: Collection[int] = (),
                                        claim_grace: float = 30.0) -> list[int]:
        """Stopping jobs no handler can run any more: their node is silent for ``silent_for``
        seconds or gone, or is ``restarting`` (its earlier process), or is ``node`` and that
        node does not run them (``known``: the ids it does; claimed over ``claim_grace``
        seconds ago, so no answer to the claim can still be on its way)."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.JOB_CONFIRM_STOPPED_OF_SILENT, silent_for, restarting,
                                       node, list(known), claim_grace)
        return [r["id"] for r in records]

    async def stopping_of_node(self, node: str) -> list[int]:
        """Cancelled jobs still stopping on ``node`` (a cancel message it may have missed)."""
        async with self.pool.acquire() as conn:
            return [r["id"] for r in await conn.fetch(self.statements.JOB_LIST_STOPPING_OF_NODE, node)]

    async def stopping_on(self, job_id: int) -> str | None:
        """The node still stopping cancelled job ``job_id``; None when it is not stopping."""
        async with self.pool.acquire() as conn:
            record = await conn.fetchrow(self.statements.JOB_STOPPING_ON, job_id)
        return None if record is None else str(record["attempted_by"])

"""Which job holds a unique key another job would take again (a retry): one part of
:class:`engine.db.store.JobStore`. Retrying a job whose key another job holds would leave
two live jobs with one key (or break on the unique index), so the retry is refused naming
the holder."""

from __future__ import annotations

from collections.abc import Sequence

from engine.db.base import StoreBase


class UniqueHolders(StoreBase):
    """The holders of the unique keys of jobs about to be retried."""

    async def unique_holders(self, job_ids: Sequence[int]) -> dict[int, tuple[int, str]]:
        """``{job id: (holder id, holder state)}`` for each of ``job_ids`` whose unique key
        another job holds (that job is in one of its unique states)."""
        if not job_ids:
            return {}
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.JOB_UNIQUE_HOLDERS, list(job_ids))
        return {r["id"]: (r["holder_id"], r["holder_state"]) for r in records}

"""Large validated batches that return ids (``Engine.enqueue_many(..., return_ids=True)``):
validating a batch and Postgres inserting it overlap, chunk by chunk, in one transaction.

Validation is Python (the handler's args model, JSON, secrets) and the insert is Postgres,
so on two cores they can run side by side: while Postgres inserts chunk k, the next chunk
is validated. The chunks share one transaction, so the batch stays all or nothing and
listeners hear of it once, at commit (Postgres folds a transaction's identical NOTIFYs).

Example::

    ids = await insert_ids(inserter, store, specs)           # 100,000 mails, one call
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import asyncpg

from engine.core.job import JobSpec
from engine.db.store import JobStore
from engine.insert.inserter import Inserter

# Rows per statement when a batch is split. Smaller chunks overlap more of the validation
# but pay a round trip each; a batch up to twice this goes in one statement.
CHUNK = 1_000


async def insert_ids(inserter: Inserter, store: JobStore, specs: Sequence[JobSpec],
                     conn: asyncpg.Connection | None = None) -> list[int]:
    """Validate and insert ``specs``; return their ids in order. Nothing is inserted if one is invalid."""
    if len(specs) <= 2 * CHUNK:
        return await store.insert_ids(inserter.rows(specs), conn=conn)
    ids: list[int] = []
    async with store.connection(conn) as c, c.transaction():
        pending: asyncio.Task[list[int]] | None = None
        try:
            for start in range(0, len(specs), CHUNK):
                rows = inserter.rows(specs, start, start + CHUNK)  # Postgres meanwhile inserts the previous chunk
                if pending is not None:
                    ids += await pending
                pending = asyncio.ensure_future(store.insert_ids(rows, conn=c))
                await asyncio.sleep(0)  # the task sends its statement before the next chunk's validation
            assert pending is not None
            ids += await pending
        except BaseException:
            if pending is not None and not pending.done():
                # The connection is busy until the statement ends: wait for it, then roll back.
                with contextlib.suppress(Exception):
                    await pending
            raise
    return ids

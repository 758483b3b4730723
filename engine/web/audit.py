"""Audit rows for what the dashboard and the API change, written through the engine's store.

Job, queue and cron actions go through the engine's own methods, each its own statement,
so their row is appended right after the change succeeded; account changes write theirs in
the change's transaction (engine/db/account_rows.py).

Example::

    await record(engine, principal, "job.retry", "job:42")
    await record(engine, principal, "job.bulk", None, action="delete", filter={"state": "discarded"}, count=12)
"""

from __future__ import annotations

from typing import Any

from engine.core.accounts import AuditEntry
from engine.engine import Engine
from engine.web.auth import Principal
from engine.web.stores import job_store


def entry(principal: Principal, action: str, target: str | None = None, /, **details: Any) -> AuditEntry:
    """The row for ``principal`` doing ``action``; ``details`` says how (never a secret)."""
    return AuditEntry(principal.name, principal.role.value, action, target, {"via": principal.via, **details})


async def record(engine: Engine, principal: Principal, action: str, target: str | None = None, /,
                 **details: Any) -> None:
    await job_store(engine).audit(entry(principal, action, target, **details))

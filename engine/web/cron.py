"""Cron entries for the dashboard and the API, through the cron store (engine.cron_store).

"Run now" inserts the entry's job document at once, built exactly like a scheduled slot
(same meta and ``cron:NAME`` tag), without touching the entry's schedule bookkeeping.
"""

from __future__ import annotations

from typing import Any

import structlog

from engine.web.actions import CRON_ACTIONS, BadRequest, NotFound
from engine.web.auth import Principal

log = structlog.get_logger("jobengine.web")


def _store(engine: Any) -> Any:
    from engine.cli.cron import cron_store

    return cron_store(engine)


async def list_entries(engine: Any) -> list[dict[str, Any]]:
    """Every entry with its next run (UTC and local) and its last job, JSON-able."""
    return [status.as_dict() for status in await _store(engine).list()]


async def cron_action(engine: Any, principal: Principal, name: str, action: str) -> dict[str, Any]:
    """Enable, disable or run an entry now; returns ``{"name", "action", "job_id"?}``."""
    store = _store(engine)
    result: dict[str, Any] = {"name": name, "action": action}
    if action in ("enable", "disable"):
        done = await (store.enable(name) if action == "enable" else store.disable(name))
        if not done:
            raise NotFound(f"no cron entry {name!r}")
    elif action == "run":
        try:
            result["job_id"] = await store.run_now(name)
        except LookupError:
            raise NotFound(f"no cron entry {name!r}") from None
        except ValueError as exc:
            raise BadRequest(f"cron entry {name!r}: {exc}") from None
    else:
        raise NotFound(f"unknown cron action {action!r}; use one of {', '.join(CRON_ACTIONS)}")
    log.info("cron action", action=action, entry=name, role=principal.role.value, via=principal.via)
    return result

"""Cron entries for the dashboard and the API, through the started engine's cron store
(``engine.cron``).

"Run now" inserts the entry's job document at once, built exactly like a scheduled slot
(same meta and ``cron:NAME`` tag), without touching the entry's schedule bookkeeping.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

import structlog

from engine.engine import Engine
from engine.web.actions import CRON_ACTIONS, BadRequest, NotFound
from engine.web.audit import record
from engine.web.auth import Principal
from engine.web.stores import cron_store

log = structlog.get_logger("jobengine.web")


class CronActionResult(TypedDict):
    """What a cron action did; ``job_id`` is the job ``run`` inserted."""

    name: str
    action: str
    job_id: NotRequired[int]


async def list_entries(engine: Engine) -> list[dict[str, Any]]:
    """Every entry with its next run (UTC and local) and its last job, JSON-able."""
    return [status.as_dict() for status in await cron_store(engine).list()]


async def cron_action(engine: Engine, principal: Principal, name: str, action: str) -> CronActionResult:
    """Enable, disable or run an entry now; returns ``{"name", "action", "job_id"?}``."""
    store = cron_store(engine)
    result: CronActionResult = {"name": name, "action": action}
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
    log.info("cron action", action=action, entry=name, actor=principal.name, role=principal.role.value,
             via=principal.via)
    await record(engine, principal, f"cron.{action}", f"cron:{name}",
                 **({"job_id": result["job_id"]} if "job_id" in result else {}))
    return result

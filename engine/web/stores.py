"""The stores of the started :class:`~engine.engine.Engine` the web layer serves: its
Postgres gateway (``engine.store``) and its cron store (``engine.cron``), both set by
``Engine.start``.

Example::

    jobs = await job_store(engine).dashboard_job_page(state="discarded", limit=20)
    entries = await cron_store(engine).list()
"""

from __future__ import annotations

from engine.cron.store import CronStore
from engine.db.store import JobStore
from engine.engine import Engine

NOT_STARTED = "engine not started: use `async with Engine(...) as engine`"


def job_store(engine: Engine) -> JobStore:
    """The engine's Postgres gateway; RuntimeError before ``Engine.start``."""
    if engine.store is None:
        raise RuntimeError(NOT_STARTED)
    return engine.store


def cron_store(engine: Engine) -> CronStore:
    """The engine's cron store (its config's entries and the runtime ones); RuntimeError
    before ``Engine.start``."""
    if engine.cron is None:
        raise RuntimeError(NOT_STARTED)
    return engine.cron

"""Cron entries in Postgres: the config's ``[[cron]]`` written at start, and the runtime
management API (add, update, enable, disable, remove, list) behind Engine and the CLI.

Example::

    store = CronStore(store, inserter, config_entries(config))
    await store.sync_config()
    await store.add(CronEntry("nightly", "0 2 * * *", "Europe/Berlin", {"jobType": "log"}))
    for status in await store.list():
        print(status.name, status.next_run_local, status.last_job_state)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from engine.core.config import Config
from engine.core.documents import parse_document
from engine.cron.schedule import CronConfigError, CronEntry
from engine.db.rows import InsertRow
from engine.db.store import JobStore
from engine.insert.inserter import Inserter

__all__ = ["CronStatus", "CronStore", "config_entries", "definition_meta"]

# Sent on the control channel after a change, so running tickers reload at once.
CHANGED_MESSAGE = json.dumps({"action": "cron"})
DEFINITION_FIELDS = ("name", "schedule", "timezone", "job", "enabled", "overlap", "catch_up")


def config_entries(config: Config) -> list[CronEntry]:
    """The config's ``[[cron]]`` entries, validated; raises :class:`CronConfigError` naming
    the entry (bad expression, unknown timezone, missing jobType)."""
    return [CronEntry.from_config(item) for item in config.cron]


def definition_meta(name: str) -> dict[str, Any]:
    """The meta of every job a definition makes: its name (listed by jobs_definition_idx)
    and the mark the pruner's tally removes once it has counted the finished job."""
    return {"definition": name, "untallied": True}


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def _params(entry: CronEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in DEFINITION_FIELDS}


def _config_hash(entry: CronEntry) -> str:
    text = json.dumps(_params(entry), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class CronStatus:
    """One entry as ``cron_list`` reports it: definition, next run, last run's outcome.

    ``last_job_state`` is None before the first run and after the job was pruned;
    ``stored`` is False for a config entry no engine has written yet; ``error`` says
    why an entry cannot be scheduled on this host (e.g. a timezone it does not know).
    """

    name: str
    schedule: str
    timezone: str
    enabled: bool
    overlap: str
    catch_up: float
    source: str
    in_config: bool
    stored: bool
    next_run: datetime | None
    next_run_local: datetime | None
    last_slot: datetime | None
    last_job_id: int | None
    last_job_state: str | None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, times as ISO-8601 strings (local ones carry their offset)."""
        return {key: value.isoformat() if isinstance(value, datetime) else value
                for key, value in asdict(self).items()}


class CronStore:
    """Reads and writes ``cron_entries`` for one engine; ``entries`` are its config's.

    Config entries are rewritten from the file when their definition in the file changes;
    otherwise an operator's changes (enable, disable, update) persist across restarts.
    Every write wakes the tickers of running engines.
    """

    def __init__(self, store: JobStore, inserter: Inserter, entries: Sequence[CronEntry] = ()) -> None:
        self.store = store
        self.inserter = inserter
        self.entries = {entry.name: entry for entry in entries}
        for entry in entries:
            self.validate(entry)

    @property
    def config_names(self) -> frozenset[str]:
        return frozenset(self.entries)

    # --- jobs ---------------------------------------------------------------------------

    def job_row(self, name: str, document: dict[str, Any], slot: datetime) -> InsertRow:
        """The insert row for ``slot``: an ordinary job whose meta names the entry and slot,
        tagged ``cron:NAME`` so its runs can be listed."""
        spec = parse_document(document)
        meta = {**spec.extra_meta, **definition_meta(name), "cron": name, "cron_slot": slot.isoformat()}
        tags = (*spec.tags, f"cron:{name}")
        return self.inserter.row(replace(spec, extra_meta=meta, tags=tags))

    def definition_row(self, name: str, document: dict[str, Any],
                       vars: dict[str, Any] | None = None) -> InsertRow:
        """The insert row of a run of definition ``name`` outside cron slots (run now, a
        once trigger): its document's job with ``vars`` added, meta naming the definition."""
        spec = parse_document(document)
        return self.inserter.row(replace(spec, extra_meta={**spec.extra_meta, **definition_meta(name)},
                                         vars={**spec.vars, **(vars or {})}))

    async def run_now(self, name: str, now: datetime | None = None) -> int:
        """Insert one run of entry ``name`` now, outside its schedule (its slots are
        untouched); returns the job id. LookupError: no such entry; ValueError: its job
        document is invalid (the message names the problem)."""
        if await self.get(name) is None:
            raise LookupError(f"no cron entry {name!r}")
        slot = _now(now)
        job = await self.store.definition_run(name, lambda document: self.job_row(name, document, slot))
        if job is None:
            raise LookupError(f"no cron entry {name!r}")
        return job.id

    def validate(self, entry: CronEntry) -> None:
        """Check the job document as an insert would; raise CronConfigError naming the entry."""
        try:
            self.job_row(entry.name, entry.job, datetime.now(UTC))
        except ValueError as exc:
            raise CronConfigError(f"cron entry {entry.name!r}: job: {exc}") from None

    # --- writes ---------------------------------------------------------------------------

    async def sync_config(self, now: datetime | None = None) -> list[str]:
        """Write this engine's config entries; returns the names whose row changed."""
        rows = [{**_params(entry), "config_hash": _config_hash(entry)} for entry in self.entries.values()]
        changed = await self.store.cron_upsert_config(rows, _now(now)) if rows else []
        if changed:
            await self._changed()
        return changed

    async def add(self, entry: CronEntry, now: datetime | None = None) -> CronEntry:
        """Add a runtime entry (persisted; every engine's ticker picks it up).

        Example::

            await store.add(CronEntry("ping", "*/5 * * * *", job={"jobType": "http", "data": {...}}))
        """
        self.validate(entry)
        if entry.name in self.entries or not await self.store.cron_insert(_params(entry), _now(now)):
            raise CronConfigError(f"cron entry {entry.name!r} already exists; update it instead")
        await self._changed()
        return entry

    async def update(self, name: str, *, now: datetime | None = None, **changes: Any) -> CronEntry:
        """Change some of schedule, timezone, job, overlap, catch_up; returns the new entry.
        A new schedule or timezone takes effect from now on (no backfill under it)."""
        unknown = set(changes) - {"schedule", "timezone", "job", "overlap", "catch_up"}
        if unknown:
            raise TypeError(f"cannot update {', '.join(sorted(unknown))} of a cron entry")
        current = await self.get(name)
        if current is None:
            raise LookupError(f"no cron entry {name!r}")
        entry = replace(current, **{key: value for key, value in changes.items() if value is not None})
        self.validate(entry)
        if not await self.store.cron_update(_params(entry), _now(now)):
            raise LookupError(f"no cron entry {name!r}")
        await self._changed()
        return entry

    async def enable(self, name: str, now: datetime | None = None) -> bool:
        """Enable; slots that passed while disabled are never caught up. False if absent."""
        return await self._set_enabled(name, True, now)

    async def disable(self, name: str, now: datetime | None = None) -> bool:
        """Stop inserting jobs for ``name`` (its running job is left alone). False if absent."""
        return await self._set_enabled(name, False, now)

    async def remove(self, name: str) -> bool:
        """Delete a runtime entry (or a config entry no longer in this config). False if absent."""
        if name in self.entries:
            raise CronConfigError(f"cron entry {name!r} is declared in the config file: remove it "
                                  "there, or disable it")
        removed = await self.store.cron_delete(name)
        if removed:
            await self._changed()
        return removed

    async def _set_enabled(self, name: str, enabled: bool, now: datetime | None) -> bool:
        done = await self.store.cron_set_enabled(name, enabled, _now(now))
        if done:
            await self._changed()
        return done

    async def _changed(self) -> None:
        await self.store.notify(self.store.statements.control_channel, CHANGED_MESSAGE)

    # --- reads ----------------------------------------------------------------------------

    async def get(self, name: str) -> CronEntry | None:
        """The stored entry ``name``, or None."""
        for row in await self.store.cron_list():
            if row["name"] == name:
                return entry_from_row(row)
        return None

    async def list(self, now: datetime | None = None) -> list[CronStatus]:
        """Every entry with its next run (UTC and its own timezone) and last job's state,
        including config entries not written yet."""
        now = _now(now)
        rows = {row["name"]: row for row in await self.store.cron_list()}
        for name, entry in self.entries.items():
            rows.setdefault(name, {**_params(entry), "source": "config", "stored": False})
        return [self._status(row, now) for _, row in sorted(rows.items())]

    def _status(self, row: dict[str, Any], now: datetime) -> CronStatus:
        next_run = next_local = error = None
        try:
            entry = entry_from_row(row)
            if row["enabled"]:
                after = max(now, row.get("last_slot") or now)
                next_run = entry.cron.next_slot(after)
                next_local = next_run.astimezone(entry.cron.zone)
        except CronConfigError as exc:
            error = str(exc)
        return CronStatus(
            name=row["name"], schedule=row["schedule"], timezone=row["timezone"], enabled=row["enabled"],
            overlap=row["overlap"], catch_up=row["catch_up"], source=row["source"],
            in_config=row["name"] in self.entries, stored=row.get("stored", True), next_run=next_run,
            next_run_local=next_local, last_slot=row.get("last_slot"), last_job_id=row.get("last_job_id"),
            last_job_state=row.get("last_job_state"), error=error)


def entry_from_row(row: dict[str, Any]) -> CronEntry:
    """A CronEntry from a ``cron_entries`` row (validated again: the zone database may differ)."""
    return CronEntry(**{name: row[name] for name in DEFINITION_FIELDS})

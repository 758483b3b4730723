"""Definitions: saved, named job documents with a trigger (manual, cron, once), their
runs and counters, behind the API, the dashboard and ``jobengine definitions``.

A definition is a row of ``cron_entries`` (migration 008): a cron entry is a definition
with a cron trigger, so ``[[cron]]`` and ``jobengine cron`` manage the same rows and the
ticker fires cron and once triggers alike. Config definitions are read-only here.

Concurrent edits: a PUT replaces the definition whole in one statement (the later one
wins whole, never a mix); a PUT that carries the ``updatedAt`` it read is refused with
:class:`DefinitionStale` (409) when the definition changed since.

Example::

    definitions = DefinitionStore(cron_store)
    await definitions.create({"name": "ping", "job": {"jobType": "log"}}, actor="api")
    job = await definitions.run("ping", vars={"who": "ops"})
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from engine.core.documents import DocumentError, parse_document
from engine.core.job import Job
from engine.core.templating import placeholders_in
from engine.cron.definition_model import DefinitionInvalid, FieldError, definition_json, parse_body
from engine.cron.store import CHANGED_MESSAGE, CronStore
from engine.db.rows import InsertRow

__all__ = ["DefinitionConflict", "DefinitionStore"]

MAX_DOCUMENT_BYTES = 256 * 1024


class DefinitionConflict(Exception):
    """A write that cannot apply (409): the name exists, the definition comes from the
    config file, or it changed since the editor read it."""


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


class DefinitionStore:
    """Reads and writes definitions through the cron store's Postgres gateway and inserter."""

    def __init__(self, cron: CronStore) -> None:
        self.cron = cron
        self.store = cron.store
        self.inserter = cron.inserter

    # --- validation -----------------------------------------------------------------------

    def job_row(self, name: str, document: dict[str, Any], vars: dict[str, Any] | None = None) -> InsertRow:
        """The insert row of one run: the document's job, its meta naming the definition."""
        return self.cron.definition_row(name, document, vars)

    def job_errors(self, name: str, document: Any) -> list[FieldError]:
        """What is wrong with a definition's job document, each problem named by its path
        (``job.data.host``): the document parser, the kind's args model, then the inserter."""
        if not isinstance(document, dict):
            return [FieldError("job", "must be a job document (a JSON object with jobType)")]
        if len(json.dumps(document, default=str)) > MAX_DOCUMENT_BYTES:
            return [FieldError("job", f"is larger than {MAX_DOCUMENT_BYTES} bytes")]
        try:
            spec = parse_document(document)
        except DocumentError as exc:
            return [_split(f"job.{problem}") for problem in str(exc).split("; ")]
        try:
            handler = self.inserter.registry.get(spec.kind)
        except LookupError as exc:
            return [FieldError("job.jobType", str(exc))]
        if handler.args_model is not None and isinstance(spec.args, dict):
            try:
                handler.args_model.model_validate(spec.args)
            except ValidationError as exc:
                return [FieldError(".".join(["job.data", *(str(p) for p in e["loc"])]), e["msg"])
                        for e in exc.errors()]
        declared = set(self.inserter.secrets.names)
        unknown = sorted(n.removeprefix("secrets.") for n in placeholders_in(document)
                         if n.startswith("secrets.") and n.removeprefix("secrets.") not in declared)
        if unknown:
            return [FieldError("job", f"{{{{secrets.{unknown[0]}}}}} is not a declared secret (declared: "
                               f"{', '.join(sorted(declared)) or 'none'})")]
        try:
            self.job_row(name, document)
        except ValueError as exc:
            return [FieldError("job", str(exc))]
        return []

    def parse(self, body: Any, now: datetime, name: str | None = None,
              saved_at: datetime | None = None) -> dict[str, Any]:
        """A checked definition row from a request body; DefinitionInvalid names the fields."""
        parsed = parse_body(body, now=now, name=name, saved_at=saved_at)
        problems = self.job_errors(parsed.name, parsed.job)
        if problems:
            raise DefinitionInvalid(problems)
        return {**parsed.row(), "updated_at_seen": parsed.updatedAt}

    # --- reads ----------------------------------------------------------------------------

    async def all(self) -> list[dict[str, Any]]:
        """Every stored definition's row (by name), with its last run's state."""
        return await self.store.definition_list()

    async def page(self, *, kind: str | None = None, tag: str | None = None, enabled: bool | None = None,
                   text: str | None = None, after: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """A page of the list by name (``after`` the last name shown), filtered."""
        return await self.store.definition_page(kind=kind, tag=tag, enabled=enabled, text=text, after=after,
                                                limit=limit)

    async def facets(self) -> dict[str, Any]:
        """How many definitions there are, and the kinds and tags the list can filter by."""
        return await self.store.definition_facets()

    async def get(self, name: str) -> dict[str, Any] | None:
        rows = await self.store.definition_list(name)
        return rows[0] if rows else None

    async def get_json(self, name: str, now: datetime | None = None) -> dict[str, Any]:
        """The definition as the API shows it; LookupError when there is none."""
        row = await self.get(name)
        if row is None:
            raise LookupError(f"no definition {name!r}")
        return definition_json(row, _now(now))

    async def runs(self, name: str, *, before: int | None = None, limit: int = 50) -> list[Job]:
        """Its jobs, newest first (ids below ``before``)."""
        return await self.store.definition_runs(name, before=before, limit=limit)

    # --- writes ---------------------------------------------------------------------------

    async def create(self, body: Any, actor: str, now: datetime | None = None) -> dict[str, Any]:
        """Save a new definition; DefinitionInvalid (422) or DefinitionConflict (409)."""
        now = _now(now)
        row = self.parse(body, now)
        if row["name"] in self.cron.config_names or not await self.store.definition_insert(row, actor, now):
            raise DefinitionConflict(f"definition {row['name']!r} already exists; PUT it to change it")
        await self._changed()
        return await self.get_json(row["name"], now)

    async def replace(self, name: str, body: Any, actor: str, now: datetime | None = None) -> dict[str, Any]:
        """Replace definition ``name`` whole; LookupError, DefinitionInvalid, DefinitionConflict."""
        now = _now(now)
        current = await self._writable(name)
        row = self.parse(body, now, name=name, saved_at=current["once_at"])
        if not await self.store.definition_replace(row, actor, now, row["updated_at_seen"]):
            if await self.get(name) is None:
                raise LookupError(f"no definition {name!r}")
            raise DefinitionConflict(f"definition {name!r} was changed since {row['updated_at_seen'] or ''} "
                                     f"(by {current['updated_by'] or 'someone'}): reload it and edit again")
        await self._changed()
        return await self.get_json(name, now)

    async def delete(self, name: str) -> None:
        await self._writable(name)
        if not await self.store.cron_delete(name):
            raise LookupError(f"no definition {name!r}")
        await self._changed()

    async def set_enabled(self, name: str, enabled: bool, actor: str, now: datetime | None = None) -> dict[str, Any]:
        """Enable or disable (config definitions too, as ``jobengine cron`` does)."""
        now = _now(now)
        if not await self.store.definition_set_enabled(name, enabled, actor, now):
            raise LookupError(f"no definition {name!r}")
        await self._changed()
        return await self.get_json(name, now)

    async def run(self, name: str, vars: dict[str, Any] | None = None) -> Job:
        """Insert one run now, enabled or not; ``vars`` fill its placeholders.
        LookupError: no such definition; ValueError: the document no longer inserts."""
        job = await self.store.definition_run(name, lambda document: self.job_row(name, document, vars))
        if job is None:
            raise LookupError(f"no definition {name!r}")
        return job

    async def _writable(self, name: str) -> dict[str, Any]:
        current = await self.get(name)
        if current is None:
            raise LookupError(f"no definition {name!r}")
        if current["source"] == "config":
            raise DefinitionConflict(f"definition {name!r} comes from the config file ([[cron]]): change it "
                                     "there (it can be enabled, disabled and run here)")
        return current

    async def _changed(self) -> None:
        await self.store.notify(self.store.statements.control_channel, CHANGED_MESSAGE)


def _split(problem: str) -> FieldError:
    field, _, message = problem.partition(": ")
    return FieldError(field, message) if message else FieldError("job", problem)

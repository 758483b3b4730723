"""``jobengine definitions``: saved jobs (README, "Managing jobs from the dashboard") from the command line.

    jobengine definitions                                  every definition: trigger, next run, last run, counts
    jobengine definitions show nightly-backup              one definition (its whole document)
    jobengine definitions add --file definition.json       save a new one (the API's JSON)
    jobengine definitions update nightly-backup --file definition.json
    jobengine definitions run nightly-backup --vars '{"dbServer": "db-2"}'
    jobengine definitions runs nightly-backup --limit 20   its jobs, newest first
    jobengine definitions enable|disable|remove nightly-backup

Every command takes ``--json``. Problems exit with status 1 and a message naming the field
(``trigger.at: ... is in the past``).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.core.config import Config
from engine.core.documents import loads_document_text
from engine.cron.definition_model import definition_json
from engine.cron.definitions import DefinitionConflict, DefinitionStore
from engine.engine import Engine

__all__ = ["add_definitions_arguments", "run_definitions"]

ACTIONS = ("list", "show", "add", "update", "remove", "enable", "disable", "run", "runs")


def add_definitions_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``[ACTION] [NAME]`` and the options to the ``definitions`` sub-parser."""
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("action", nargs="?", default="list", choices=ACTIONS, help="default: list")
    parser.add_argument("name", nargs="?", help="definition name (all actions but list and add)")
    parser.add_argument("--file", help="add/update: the definition as JSON (- for stdin)")
    parser.add_argument("--vars", help="run: placeholder values as a JSON object")
    parser.add_argument("--limit", type=int, default=20, help="runs: how many (default 20)")
    parser.add_argument("--before", type=int, help="runs: jobs with an id below this (paging)")


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _read(args: argparse.Namespace) -> Any:
    if not args.file:
        raise ValueError(f"jobengine definitions {args.action}: --file definition.json is required")
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    return loads_document_text(text)


def _name(args: argparse.Namespace) -> str:
    if not args.name:
        raise ValueError(f"jobengine definitions {args.action}: give the definition NAME")
    return str(args.name)


def summary(item: dict[str, Any]) -> dict[str, Any]:
    """One table row of ``jobengine definitions``."""
    trigger = item["trigger"]
    when = {"cron": lambda: f"{trigger['schedule']} ({trigger['timezone']})",
            "once": lambda: f"once at {trigger['at']}"}.get(trigger["type"], lambda: "manual")()
    last = item["lastRun"]
    runs = item["runs"]
    return {"name": item["name"], "kind": item["job"].get("jobType", "?"), "trigger": when,
            "enabled": "yes" if item["enabled"] else "no", "next_run": item["nextRunAt"] or "-",
            "last_run": f"{last['jobId']} {last['state']}" if last else "-",
            "runs": f"{runs['total']} ({runs['completed']} ok, {runs['failed']} failed)", "source": item["source"]}


async def _act(store: DefinitionStore, args: argparse.Namespace) -> tuple[Any, str]:
    action = args.action
    if action == "list":
        items = [definition_json(row, datetime.now(UTC)) for row in await store.all()]
        return items, _table([summary(item) for item in items]) if items else "no definitions"
    if action == "add":
        created = await store.create(_read(args), _actor())
        return created, f"definition {created['name']} saved"
    name = _name(args)
    if action == "show":
        found = await store.get_json(name)
        return found, json.dumps(found, indent=2)
    if action == "update":
        replaced = await store.replace(name, _read(args), _actor())
        return replaced, f"definition {name} updated"
    if action in ("enable", "disable"):
        changed = await store.set_enabled(name, action == "enable", _actor())
        return changed, f"definition {name} {action}d"
    if action == "remove":
        await store.delete(name)
        return {"name": name, "removed": True}, f"definition {name} removed"
    if action == "run":
        variables = json.loads(args.vars) if args.vars else {}
        if not isinstance(variables, dict):
            raise ValueError("--vars: must be a JSON object")
        job = await store.run(name, variables)
        return {"name": name, "jobId": job.id}, f"definition {name} enqueued as job {job.id}"
    if await store.get(name) is None:
        raise LookupError(f"no definition {name!r}")
    jobs = await store.runs(name, before=args.before, limit=max(1, min(args.limit, 200)))
    rows = [{"id": j.id, "state": j.state, "attempt": j.attempt,
             "inserted_at": j.inserted_at.isoformat(timespec="seconds") if j.inserted_at else "-",
             "error": (str(j.errors[-1].get("error", "")).splitlines() or [""])[0][:80] if j.errors else ""}
            for j in jobs]
    return rows, _table(rows) if rows else f"definition {name} has no runs"


def _table(rows: list[dict[str, Any]]) -> str:
    columns = list(rows[0])
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


async def run_definitions(config: Config, args: argparse.Namespace) -> int:
    """Run one ``jobengine definitions`` command; ValueError (exit 1) names the problem."""
    async with Engine(config=config.model_copy(update={"queues": {}})) as engine:
        assert engine.definitions is not None
        try:
            data, text = await _act(engine.definitions, args)
        except (LookupError, DefinitionConflict) as exc:
            raise ValueError(str(exc)) from None
    print(json.dumps(data, indent=2, default=str) if args.json else text)
    return 0

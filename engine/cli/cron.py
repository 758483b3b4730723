"""``jobengine cron``: list entries with their next runs, and manage runtime entries.

    jobengine cron                                   entries, next runs (local and UTC), last outcome
    jobengine cron add ping --schedule '*/5 * * * *' --job '{"jobType": "http", "data": {...}}'
    jobengine cron add backup --schedule '0 2 1 * *' --timezone Asia/Seoul --kind ssh --file payload.json
    jobengine cron update ping --schedule '*/10 * * * *'
    jobengine cron disable ping | enable ping | remove ping | run ping

The CLI's ``cron`` command calls :func:`add_cron_arguments`, then :func:`list_cron_entries` for
``list`` (the default) and :func:`run_cron_command` for the other actions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.core.config import parse_duration
from engine.core.documents import classify_payload, loads_document_text, spec_to_document
from engine.cron.schedule import CronEntry
from engine.cron.store import CronStatus, CronStore, config_entries

__all__ = ["add_cron_arguments", "cron_store", "list_cron_entries", "run_cron_command"]

ACTIONS = ("list", "add", "update", "enable", "disable", "remove", "run")


def cron_store(engine: Any) -> CronStore:
    """The engine's cron store (a started Engine: its queue, inserter and config)."""
    store = getattr(engine, "cron", None)
    if isinstance(store, CronStore):
        return store
    return CronStore(engine.store, engine.inserter, config_entries(engine.config))


def summary(status: CronStatus) -> dict[str, Any]:
    """One table row: what an operator checks first."""
    def iso(value: Any) -> str:
        return value.isoformat(timespec="seconds") if value is not None else "-"

    return {
        "name": status.name, "schedule": status.schedule, "timezone": status.timezone,
        "enabled": "yes" if status.enabled else "no",
        "next_run": iso(status.next_run_local), "next_run_utc": iso(status.next_run),
        "last_slot": iso(status.last_slot), "last_job": status.last_job_id or "-",
        "last_state": status.last_job_state or ("pruned" if status.last_job_id else "-"),
        "source": status.source + ("" if status.in_config or status.source == "runtime" else " (not in config)"),
    } | ({"error": status.error} if status.error else {})


async def list_cron_entries(engine: Any) -> list[dict[str, Any]]:
    """Every entry as a table row (``jobengine cron``)."""
    return [summary(status) for status in await cron_store(engine).list()]


def add_cron_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``[ACTION] [NAME]`` and the entry options to the ``cron`` sub-parser."""
    parser.add_argument("action", nargs="?", default="list", choices=ACTIONS, help="default: list")
    parser.add_argument("name", nargs="?", help="entry name (all actions but list)")
    parser.add_argument("--schedule", help="cron expression, e.g. '0 9-18 * * 1-5' or '@daily'")
    parser.add_argument("--timezone", help="IANA zone the schedule is read in (default UTC)")
    parser.add_argument("--job", help="the job document as JSON (with jobType)")
    parser.add_argument("--file", help="file with the job document (or KIND's payload with --kind); - for stdin")
    parser.add_argument("--kind", help="job kind, when --job/--file holds a bare payload")
    parser.add_argument("--overlap", choices=("allow", "skip"), help="skip: no new run while one is active")
    parser.add_argument("--catch-up", help="insert slots missed while no engine ran, if younger than this "
                        "(e.g. 1h); default: none")
    parser.add_argument("--disabled", action="store_true", help="add: create the entry disabled")


def _document(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.job is None and args.file is None:
        return None
    text = args.job if args.job is not None else (
        sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8"))
    return spec_to_document(classify_payload(loads_document_text(text), args.kind))


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options = {"schedule": args.schedule, "timezone": args.timezone, "job": _document(args),
               "overlap": args.overlap,
               "catch_up": parse_duration(args.catch_up) if args.catch_up is not None else None}
    return {key: value for key, value in options.items() if value is not None}


async def run_cron_command(engine: Any, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """Run ``jobengine cron add|update|enable|disable|remove|run``; returns (JSON-able data, human
    text). ``list`` is :func:`list_cron_entries`. Raises ValueError with a message for the user."""
    try:
        return await _run(cron_store(engine), args)
    except LookupError as exc:
        raise ValueError(str(exc)) from None


async def _run(store: CronStore, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    if args.action == "list":
        raise ValueError("use list_cron_entries() for `jobengine cron list`")
    if not args.name:
        raise ValueError(f"jobengine cron {args.action}: give the entry NAME")
    if args.action == "add":
        options = _options(args)
        if "schedule" not in options or "job" not in options:
            raise ValueError("jobengine cron add: --schedule and --job (or --file) are required")
        entry = await store.add(CronEntry(args.name, enabled=not args.disabled, **options))
        return {"name": entry.name, "added": True}, f"cron entry {entry.name} added"
    if args.action == "update":
        entry = await store.update(args.name, **_options(args))
        return {"name": entry.name, "updated": True}, f"cron entry {entry.name} updated"
    if args.action == "run":
        try:
            job_id = await store.run_now(args.name)
        except ValueError as exc:
            raise ValueError(f"cron entry {args.name!r}: {exc}") from None
        return {"name": args.name, "job_id": job_id}, f"cron entry {args.name} enqueued as job {job_id}"
    action = {"enable": store.enable, "disable": store.disable, "remove": store.remove}[args.action]
    if not await action(args.name):
        raise LookupError(f"no cron entry {args.name!r}")
    past = {"enable": "enabled", "disable": "disabled", "remove": "removed"}[args.action]
    return {"name": args.name, past: True}, f"cron entry {args.name} {past}"

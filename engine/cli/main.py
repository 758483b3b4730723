"""The ``jobengine`` command line.

    jobengine start                      run the queues (and dashboard) from config/jobengine.toml
    jobengine migrate                    create or upgrade the schema
    jobengine enqueue --file job.json    insert a job document
    jobengine enqueue http --args '{"method": "GET", "url": "https://example.com"}'
    jobengine jobs --state discarded,retryable   list jobs (one or more states)
    jobengine retry 42 | cancel 42       operate on one job
    jobengine stats                      counts per queue and state
    jobengine cron                       cron entries and their next runs
    jobengine users add alice --role operator   accounts for the dashboard and API
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import structlog

from engine.cli.cron import add_cron_arguments, list_cron_entries, run_cron_command
from engine.cli.definitions import add_definitions_arguments, run_definitions
from engine.cli.users import add_users_arguments, cli_entry, run_users_command
from engine.core.config import Config, ConfigError, load_config
from engine.core.documents import classify_payload, loads_document_text
from engine.core.errors import DatabaseUnavailable, EnqueueError, JobStillStopping, NodeNameInUse, UniqueKeyHeld
from engine.core.job import Job, JobState
from engine.core.logs import configure_logging
from engine.core.search import SearchError, parse_query
from engine.db.embedded import EmbeddedPostgresError
from engine.db.store import JobStore
from engine.engine import Engine
from engine.web.server import serve_unless_busy

log = structlog.get_logger("jobengine.cli")
EXAMPLES = """examples:
  jobengine start --config config/jobengine.toml
  jobengine enqueue --file job.json                  # a whole job document with jobType
  jobengine enqueue mail --file payload.json         # a bare payload: the document's data
  jobengine enqueue log --args '{"level": "info", "message": "hi"}' --delay 5000
  jobengine jobs --state discarded,retryable --queue default --json
  jobengine retry 42

Every setting can also come from the environment: JOBENGINE_DATABASE_URL,
JOBENGINE_QUEUES__DEFAULT__CONCURRENCY=20, JOBENGINE_DASHBOARD__TOKEN=... (see README)."""
QUERY_EXAMPLES = """search terms (combined with AND; README, "Finding jobs"):
  id:123  kind:mail  queue:default  state:discarded,retryable  tag:billing  node:NAME
  definition:NAME  args.to:a@example.com  args.data.userId:7  error:"timed out"  bare words

examples:
  jobengine jobs --query 'args.to:a@example.com'
  jobengine jobs --query 'state:discarded error:"timed out"' --json"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobengine", description="An asyncio job engine on Postgres.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="config file (default: $JOBENGINE_CONFIG or "
                        "config/jobengine.toml when present)")
    common.add_argument("--json", action="store_true", help="machine-readable JSON output")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("start", parents=[common], help="run the engine (queues, cron, dashboard) until SIGTERM",
                        description="Run the configured queues, cron and dashboard. SIGTERM/SIGINT drains "
                        "gracefully (running jobs get shutdown_grace seconds); a second signal exits at once.")
    commands.add_parser("migrate", parents=[common], help="create or upgrade the database schema")
    enqueue = commands.add_parser("enqueue", parents=[common], help="insert a job",
                                  description="Insert a job document (--file) or KIND with --args.",
                                  epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    enqueue.add_argument("kind", nargs="?", help="job kind (mail, http, ssh, log, or your own)")
    enqueue.add_argument("--file", help="JSON file: a whole document (with jobType) or KIND's payload; - for stdin")
    enqueue.add_argument("--args", help="the payload as a JSON object")
    for name, help_text in (("--queue", "queue name"), ("--priority", "higher runs first"),
                            ("--delay", "milliseconds"), ("--attempts", "max attempts")):
        enqueue.add_argument(name, help=help_text, type=str if name == "--queue" else int)
    jobs = commands.add_parser("jobs", parents=[common], help="list jobs, newest first",
                               description="List jobs, newest first. --query takes the dashboard's search "
                               "language; a malformed query exits 2 naming the term.",
                               epilog=QUERY_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    jobs.add_argument("--state", type=_states, metavar="STATE[,STATE...]",
                      help=f"one or more of {', '.join(s.value for s in JobState)}, comma-separated")
    for name in ("--queue", "--kind", "--tag", "--search"):
        jobs.add_argument(name)
    jobs.add_argument("--query", "-q", help='search terms, e.g. \'kind:mail args.to:a@example.com error:"timed out"\'')
    jobs.add_argument("--limit", type=int, default=50)
    jobs.add_argument("--before", type=int, help="show jobs with id below this (paging)")
    for action in ("retry", "cancel", "delete", "show"):
        sub = commands.add_parser(action, parents=[common], help=f"{action} one job")
        sub.add_argument("job_id", type=int, metavar="ID")
    commands.add_parser("stats", parents=[common], help="job counts per queue and state")
    add_cron_arguments(commands.add_parser("cron", parents=[common],
                                           help="cron entries with their next run times; add/enable/disable"))
    add_users_arguments(commands.add_parser("users", parents=[common],
                                            help="dashboard and API accounts: add/list/remove/passwd/token/revoke"))
    add_definitions_arguments(commands.add_parser("definitions", parents=[common], help="saved jobs: list, show, add, "
                                                  "update, remove, enable, disable, run, runs"))
    return parser


def _states(text: str) -> list[str]:
    """``--state discarded,retryable``: the named states, each checked (argparse exits 2)."""
    valid = [state.value for state in JobState]
    states = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [state for state in states if state not in valid]
    if unknown or not states:
        raise argparse.ArgumentTypeError(
            f"unknown state {', '.join(map(repr, unknown)) or repr(text)}: use one or more of {', '.join(valid)}, "
            "comma-separated")
    return list(dict.fromkeys(states))


def _json_option(text: str, option: str) -> Any:
    """``--args`` as JSON, or an error that says the option is not JSON and where."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        line = text.splitlines()[exc.lineno - 1] if text.splitlines() else text
        raise ValueError(f"{option} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}:\n"
                         f"  {line}\n  {' ' * (exc.colno - 1)}^") from None


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``jobengine`` console script."""
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        sys.exit(f"jobengine: {exc}")
    configure_logging(config.logging)
    command = COMMANDS[args.command]
    try:
        code = anyio.run(command, config, args)
    except (ConfigError, EnqueueError, EmbeddedPostgresError, ValueError, ImportError, JobStillStopping,
            DatabaseUnavailable, UniqueKeyHeld, NodeNameInUse) as exc:
        sys.exit(f"jobengine: {exc}")
    except KeyboardInterrupt:
        code = 130
    sys.exit(code or 0)


async def run_start(config: Config, args: argparse.Namespace) -> int:
    engine = Engine(config=config)
    if not engine.processing:
        log.warning("no [queues] configured: this engine only inserts; add [queues.default] to run jobs")
    dashboard = AsyncExitStack()  # the web server stays up while the engine drains
    # The signals are ours before the engine claims its first job: under the default handler
    # a SIGTERM while the dashboard came up killed the process with jobs in hand.
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        try:
            if not await _start_unless_signalled(engine, signals):
                return 0
            if config.dashboard.enabled:
                await dashboard.enter_async_context(serve_unless_busy(engine))
            async for received in signals:
                log.info("signal received; draining", signal=signal.Signals(received).name,
                         grace=config.shutdown_grace)
                break
            async with anyio.create_task_group() as group:
                group.start_soon(_hurry_on_second_signal, signals, engine)
                await engine.stop()
                group.cancel_scope.cancel()
        finally:
            await dashboard.aclose()
            await engine.stop()
    return 1 if engine.hurried else 0


async def _start_unless_signalled(engine: Engine, signals: Any) -> bool:
    """Start the engine; a signal meanwhile (a worker waits for its database for as long as
    it takes) cancels the start instead. False when a signal stopped it."""
    signalled = False
    async with anyio.create_task_group() as group:

        async def stop_starting() -> None:
            nonlocal signalled
            async for received in signals:
                log.info("signal received while starting; stopping", signal=signal.Signals(received).name)
                signalled = True
                group.cancel_scope.cancel()
                return

        group.start_soon(stop_starting)
        await engine.start()
        group.cancel_scope.cancel()
    return not signalled


# After a second signal, how long returning the running jobs may take before the process exits anyway.
HURRY_DEADLINE = 1.0


async def _hurry_on_second_signal(signals: Any, engine: Engine) -> None:
    """Second signal: cancel running jobs now and return them to the queue (unspent), then
    exit 1; if the database cannot take them back within HURRY_DEADLINE, exit anyway and
    let rescue return them."""
    async for received in signals:
        log.warning("second signal: cancelling running jobs and returning them to the queue now",
                    signal=signal.Signals(received).name)
        engine.hurry()
        await anyio.sleep(HURRY_DEADLINE)
        log.error("could not return running jobs in time; exiting; rescue will return them")
        os._exit(1)


async def run_migrate(config: Config, args: argparse.Namespace) -> int:
    async with Engine(config=config.model_copy(update={"queues": {}})) as engine:
        assert engine.store is not None
        applied = await engine.store.migrate()
    _print(args, {"schema": config.schema_name, "applied": []} if not applied else
           {"schema": config.schema_name, "applied": [f"{m.version:03d}_{m.name}" for m in applied]},
           lambda data: f"schema {data['schema']} is up to date")
    return 0


def _read_json(source: str) -> Any:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    return loads_document_text(text)


async def run_enqueue(config: Config, args: argparse.Namespace) -> int:
    if (args.file is None) == (args.args is None):
        raise ValueError("give exactly one of --file and --args")
    payload = _read_json(args.file) if args.file else _json_option(args.args, "--args")
    spec = classify_payload(payload, args.kind)
    overrides = {"queue": args.queue, "priority": args.priority, "max_attempts": args.attempts,
                 "delay": args.delay / 1000 if args.delay is not None else None}
    spec = replace(spec, **{k: v for k, v in overrides.items() if v is not None})
    async with Engine(config=config.model_copy(update={"queues": {}})) as engine:
        (job,) = await engine.enqueue_many([spec])
        await _store(engine).audit(cli_entry("job.enqueue", f"job:{job.id}", kind=job.kind, queue=job.queue))
    _print(args, job_json(job), lambda d: f"enqueued job {d['id']} ({d['kind']}) on {d['queue']}: {d['state']}")
    return 0


async def run_jobs(config: Config, args: argparse.Namespace) -> int:
    if args.query is not None:
        try:  # before connecting: a typo answers at once
            parse_query(args.query)
        except SearchError as exc:
            print(f"jobengine jobs: --query: {exc}", file=sys.stderr)
            return 2
    async with Engine(config=config.model_copy(update={"queues": {}})) as engine:
        jobs: list[Job] = []
        try:
            for state in args.state or [None]:  # one indexed query per state, merged newest first
                jobs += await engine.list_jobs(state=state, queue=args.queue, kind=args.kind, tag=args.tag,
                                               search=args.search, before_id=args.before, limit=args.limit,
                                               query=args.query)
        except SearchError as exc:  # the filters contradict the query, or definition: is unavailable
            print(f"jobengine jobs: --query: {exc}", file=sys.stderr)
            return 2
    jobs = sorted({job.id: job for job in jobs}.values(), key=lambda job: job.id, reverse=True)[: args.limit]
    rows = [job_json(job) for job in jobs]
    _print(args, rows, lambda data: _table(data, ["id", "state", "queue", "kind", "attempt", "scheduled_at"]))
    return 0


async def run_job_action(config: Config, args: argparse.Namespace) -> int:
    async with Engine(config=config.model_copy(update={"queues": {}})) as engine:
        if args.command == "show":
            job = await engine.get(args.job_id)
            if job is None:
                raise ValueError(f"no job {args.job_id}")
            _print(args, job_json(job, full=True), lambda d: json.dumps(d, indent=2, default=str))
            return 0
        action: Callable[[int], Coroutine[Any, Any, bool]] = getattr(engine, args.command)
        done = await action(args.job_id)
        if done:
            await _store(engine).audit(cli_entry(f"job.{args.command}", f"job:{args.job_id}"))
    verb = {"retry": "retried", "cancel": "cancelled", "delete": "deleted"}[args.command]
    failed = f"was not {verb} (finished, executing or absent)"
    _print(args, {"id": args.job_id, verb: done}, lambda d: f"job {d['id']} {verb if done else failed}")
    return 0 if done else 1


async def run_stats(config: Config, args: argparse.Namespace) -> int:
    async with Engine(config=config.model_copy(update={"queues": {}})) as engine:
        stats = await engine.stats()
    states = [state.value for state in JobState]
    rows = [{"queue": queue, **{s: counts.get(s, 0) for s in states}} for queue, counts in sorted(stats.items())]
    _print(args, stats, lambda _d: _table(rows, ["queue", *states]) if rows else "no jobs")
    return 0


async def run_cron(config: Config, args: argparse.Namespace) -> int:
    async with Engine(config=config.model_copy(update={"queues": {}})) as engine:
        if args.action != "list":
            data, text = await run_cron_command(engine, args)
            await _store(engine).audit(cli_entry(f"cron.{args.action}", f"cron:{args.name}"))
            _print(args, data, lambda _d: text)
            return 0
        entries = await list_cron_entries(engine)
    _print(args, entries, lambda data: _table(data, list(data[0]) if data else []) if data else "no cron entries")
    return 0


async def run_users(config: Config, args: argparse.Namespace) -> int:
    async with Engine(config=config.model_copy(update={"queues": {}})) as engine:
        data, text = await run_users_command(_store(engine), args)
    _print(args, data, lambda _d: text)
    return 0


def _store(engine: Engine) -> JobStore:
    assert engine.store is not None, "a started engine has its store"
    return engine.store


def job_json(job: Job, *, full: bool = False) -> dict[str, Any]:
    """A job as JSON-able data for output (args as stored: secrets never rendered)."""
    data: dict[str, Any] = {
        "id": job.id, "state": job.state, "queue": job.queue, "kind": job.kind, "attempt": job.attempt,
        "max_attempts": job.max_attempts, "priority": job.priority, "tags": job.tags,
        "scheduled_at": job.scheduled_at.isoformat() if job.scheduled_at else None,
    }
    if full:
        data.update(args=job.args, meta=job.meta, errors=job.errors, result=job.result,
                    inserted_at=job.inserted_at, attempted_at=job.attempted_at, completed_at=job.completed_at)
    return data


def _print(args: argparse.Namespace, data: Any, human: Callable[[Any], str]) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else human(data))


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


COMMANDS: dict[str, Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "start": run_start, "migrate": run_migrate, "enqueue": run_enqueue, "jobs": run_jobs,
    "retry": run_job_action, "cancel": run_job_action, "delete": run_job_action, "show": run_job_action,
    "stats": run_stats, "cron": run_cron, "users": run_users, "definitions": run_definitions,
}


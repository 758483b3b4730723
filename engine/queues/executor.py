"""Runs one attempt of one job as a pipeline of small steps: resolve the handler,
render placeholders, check the condition, validate args, run under the timeout,
map the outcome to an ack."""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, replace
from typing import Any

import anyio
import structlog
from pydantic import ValidationError

from engine.core import backoff, tracing
from engine.core.acks import Ack, ErrorEntry, ErrorKind, storable
from engine.core.attempt_log import AttemptLogger, AttemptLogs
from engine.core.conditions import parse_condition
from engine.core.context import HandlerContext, Resources
from engine.core.events import Events, JobEvent
from engine.core.job import Job
from engine.core.outcomes import Cancel, Discard, PermanentError, RetryAfter, Snooze
from engine.core.registry import RENDERED_CONTEXT, HandlerSpec, Registry
from engine.core.secrets import Secrets
from engine.core.templating import Scope, build_scope, render
from engine.core.tracebacks import format_traceback
from engine.insert.followups import FollowupRefused, Followups
from engine.queues.threads import ThreadPools

MAX_ERROR_CHARS = 2_000
MAX_TRACEBACK_CHARS = 8_000
MAX_RESULT_BYTES = 65_536


@dataclass(frozen=True, slots=True)
class Completed:
    value: Any


@dataclass(frozen=True, slots=True)
class Failed:
    error: BaseException
    traceback: str


Outcome = Completed | Failed | Snooze | Cancel | Discard


class Executor:
    """Performs attempts and turns their outcomes into acks.

    Example::

        ack = await executor.execute(job)      # never raises for handler errors
    """

    def __init__(self, *, registry: Registry, resources: Resources, secrets: Secrets,
                 followups: Followups, events: Events, logger: Any | None = None,
                 attempt_logs: AttemptLogs | None = None) -> None:
        self.registry = registry
        self.resources = resources
        self.secrets = secrets
        self.followups = followups
        self.events = events
        self.log = logger or structlog.get_logger("jobengine.executor")
        self.threads = ThreadPools()  # sync handlers' pools, sized by the producers
        # What handlers log through ctx.logger and report with ctx.progress, until a node's
        # writer stores it (only handlers that take a context can add any).
        self.attempt_logs = attempt_logs or AttemptLogs(secrets)

    async def execute(self, job: Job) -> Ack:
        """Run one attempt of ``job`` and return the ack describing its outcome."""
        if not tracing.active():
            return await self._execute(job)
        with tracing.attempt_span(job) as span:
            ack = await self._execute(job)
            tracing.finish(span, ack.state, ack.error.get("error") if ack.error else None)
            return ack

    async def _execute(self, job: Job) -> Ack:
        start = time.perf_counter()
        # A no-op job costs less than building its two events: only those read are built.
        starts, stops = self.events.wants("job.start"), self.events.wants("job.stop")
        queue_time = _queue_time(job) if starts or stops else None
        if starts:
            self.events.emit(JobEvent("job.start", job.id, job.kind, job.queue, job.attempt,
                                      queue_time=queue_time))
        outcome = await self.perform(job)
        self.attempt_logs.finish(job.id, job.attempt)
        ack = self.to_ack(job, outcome)
        error = ack.error.get("error") if ack.error else None
        if stops:
            self.events.emit(JobEvent("job.stop", job.id, job.kind, job.queue, job.attempt, state=ack.state,
                                      duration=time.perf_counter() - start, queue_time=queue_time, error=error))
        if isinstance(outcome, Failed):
            self.log.warning("job failed", job_id=job.id, kind=job.kind, attempt=job.attempt,
                             next_state=ack.state, error=error)
        return ack

    async def perform(self, job: Job) -> Outcome:
        """The outcome of one attempt; handler exceptions become :class:`Failed`."""
        try:
            spec = self.registry.get(job.kind)
            # The scope (and the context holding it) costs more than a no-op job: build it
            # only when a condition, the handler or a placeholder will read it.
            context = None
            args = job.args
            if spec.takes_context or job.meta.get("condition") or (spec.render_args and _has_placeholder(args)):
                context = self._context(job)
                verdict = self._check_condition(job, context.scope)
                if verdict is not None:
                    return verdict
                if spec.render_args:
                    args = _render(args, context.scope)
                    if isinstance(context.scope, Scope):  # a secret's scope may exclude this kind
                        self.secrets.check_use(context.scope.secret_names, job.kind)
            if spec.render_args and spec.args_model is not None:
                args = _validate(spec, args)
            view = job if args is job.args else replace(job, args=args)
            value = await self._run(spec, view, context)
            return self._check_value(value)
        except Exception as exc:
            return Failed(exc, format_traceback(exc))
        except (asyncio.CancelledError, SystemExit, KeyboardInterrupt) as exc:
            # Only a cancellation of this task (a cancel, the timeout, a shutdown) passes: a
            # handler's own CancelledError (`t.cancel(); await t`), sys.exit() or
            # KeyboardInterrupt is its failed attempt, never the end of its queue.
            if isinstance(exc, asyncio.CancelledError) and _task_is_cancelled():
                raise
            return Failed(exc, format_traceback(exc))

    def _context(self, job: Job) -> HandlerContext:
        scope = build_scope(job, self.secrets)
        logger = self.log.bind(job_id=job.id, kind=job.kind)
        attempt_log = self.attempt_logs.start(job.id, job.attempt) if job.id else None
        return HandlerContext(config=self.resources.config, resources=self.resources, secrets=self.secrets,
                              logger=AttemptLogger(logger, attempt_log) if attempt_log else logger, scope=scope,
                              attempt_log=attempt_log)

    def _check_condition(self, job: Job, scope: Any) -> Outcome | None:
        text = job.meta.get("condition")
        if not text:
            return None
        condition = parse_condition(text)
        for name in sorted(condition.variables):
            # Refused at enqueue; a row written around the inserter is refused here.
            secret = self.secrets.referenced_by(name)
            if secret is not None:
                raise PermanentError(f"condition uses secret {secret}; secrets cannot be used in conditions")
        if condition.evaluate(scope):
            return None
        return Cancel(self.secrets.redact_text(condition.describe(scope, redact=self.secrets.redact)))

    async def _run(self, spec: HandlerSpec, job: Job, context: HandlerContext | None) -> Any:
        timeout = job.timeout if job.timeout is not None else spec.timeout
        if spec.sync:
            with anyio.fail_after(timeout if timeout else math.inf):
                call = (job, context) if spec.takes_context else (job,)
                return await self.threads.run(job.queue, spec.func, *call)
        if not timeout:  # no limit: no cancel scope to build
            return await (spec.func(job, context) if spec.takes_context else spec.func(job))
        with anyio.fail_after(timeout):
            if spec.takes_context:
                return await spec.func(job, context)
            return await spec.func(job)

    @staticmethod
    def _check_value(value: Any) -> Outcome:
        if value is None or type(value) in _SCALARS:
            return Completed(value)
        if isinstance(value, Snooze | Cancel | Discard):
            return value
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"handler returned a value that is not JSON ({type(value).__name__}): {exc}") from None
        return Completed(value)

    def to_ack(self, job: Job, outcome: Outcome) -> Ack:
        """Map an outcome to the state transition that records it."""
        match outcome:
            case Completed(value):
                result = self._cap_result(self.secrets.redact(value))
                try:
                    return Ack.completed(job, result, self.followups.on_completed(job, result))
                except FollowupRefused as exc:  # never complete without the child: a failed attempt
                    return self._failure(job, exc, "")
            case Snooze(seconds):
                return Ack.snoozed(job, seconds)
            case Cancel(reason):
                return Ack.cancelled(job, self._entry(job, "cancelled", reason))
            case Discard(reason):
                error = self._entry(job, "discarded", reason)
                return Ack.discarded(job, error, self.followups.on_discarded(job, error.as_dict()))
            case Failed(exc, trace):
                return self._failure(job, exc, trace)
        raise AssertionError(f"unhandled outcome {outcome!r}")

    def _failure(self, job: Job, exc: BaseException, trace: str) -> Ack:
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if not isinstance(exc, Exception):
            message += " raised by the handler (the job was not cancelled)"
        if isinstance(exc, TimeoutError) and not str(exc):
            message = f"TimeoutError: job exceeded its timeout of {job.timeout}s"
        error = self._entry(job, "error", message, trace)
        if isinstance(exc, PermanentError) or job.attempt >= job.max_attempts:
            return Ack.discarded(job, error, self.followups.on_discarded(job, error.as_dict()))
        delay = self._backoff(job)
        if isinstance(exc, RetryAfter):
            delay = max(delay, exc.seconds)
        return Ack.retryable(job, error, delay)

    def _backoff(self, job: Job) -> float:
        if job.meta.get("backoff"):
            return backoff.from_document(job.meta["backoff"])(job.attempt)
        spec = self.registry.get(job.kind) if job.kind in self.registry else None
        if spec is not None and spec.backoff is not None:
            return float(spec.backoff(job.attempt))
        return backoff.exponential(job.attempt)

    def _entry(self, job: Job, kind: ErrorKind, message: str, trace: str | None = None) -> ErrorEntry:
        return ErrorEntry.now(job.attempt, kind, self.secrets.redact_text(message)[:MAX_ERROR_CHARS],
                              self.secrets.redact_text(trace)[-MAX_TRACEBACK_CHARS:] if trace else None)

    @staticmethod
    def _cap_result(result: Any) -> Any:
        if result is None or type(result) in (int, float, bool):
            return result
        text = json.dumps(result, ensure_ascii=False)
        if _unstorable(text):  # a NUL or a lone surrogate (a binary body): kept escaped
            result = storable(result)
            text = json.dumps(result, ensure_ascii=False)
        if len(text) <= MAX_RESULT_BYTES:
            return result
        return {"truncated": True, "bytes": len(text), "preview": text[:2_000]}


_SCALARS = frozenset({str, int, bool})  # exact types: always JSON, no NaN to refuse


def _unstorable(text: str) -> bool:
    """True when JSON ``text`` holds what jsonb refuses: ``\\u0000`` or a lone surrogate."""
    if "\\u0000" in text:
        return True
    if text.isascii():
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _has_placeholder(value: Any) -> bool:
    """True when a string in ``value`` may hold a ``{{placeholder}}`` (rendering is a no-op otherwise)."""
    if isinstance(value, str):
        return "{{" in value
    if isinstance(value, dict):
        return any(_has_placeholder(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_has_placeholder(item) for item in value)
    return False


def _render(args: Any, scope: Any) -> Any:
    return render(args, scope)


def _validate(spec: HandlerSpec, args: Any) -> Any:
    """The attempt's one validation of rendered args: placeholders are refused (the
    context), and the handler receives the model instance as ``job.args``."""
    if spec.args_model is None:
        return args
    try:
        return spec.args_model.model_validate(args, context=RENDERED_CONTEXT)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'args'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_input=False, include_url=False)
        )
        raise PermanentError(f"invalid args for {spec.kind!r}: {problems}") from None


def _task_is_cancelled() -> bool:
    """True when the running task itself is being cancelled (anyio's cancel scopes and
    asyncio's ``Task.cancel`` both count), not merely handed a stray CancelledError."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _queue_time(job: Job) -> float | None:
    if job.attempted_at and job.scheduled_at:
        return max(0.0, (job.attempted_at - job.scheduled_at).total_seconds())
    return None

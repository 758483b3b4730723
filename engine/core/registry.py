"""Handler registration: ``@handler(kind, ...)`` and the registry the executor reads."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

# An ``async def`` handler, or a plain ``def`` one that runs in a worker thread
# (see engine/queues/threads.py).
HandlerFunc = Callable[..., Awaitable[Any]] | Callable[..., Any]
BackoffFunc = Callable[[int], float]
KIND_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
# The pydantic validation context meaning "placeholders are rendered: check the real values".
# The executor validates ``args_model`` with it once per attempt; at enqueue there is none,
# so a model may let a ``{{placeholder}}`` through until then (handlers.args.Templated).
RENDERED_KEY = "jobengine_rendered"
RENDERED_CONTEXT: Mapping[str, Any] = MappingProxyType({RENDERED_KEY: True})


class UnknownKindError(LookupError):
    """No handler is registered for a job's kind."""

    def __init__(self, kind: str, known: list[str]) -> None:
        super().__init__(f"no handler registered for kind {kind!r} (known kinds: {', '.join(known) or 'none'})")
        self.kind = kind


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A registered handler and its per-kind defaults.

    ``args_model``: a pydantic model; args are validated against it at enqueue and,
    after placeholders are rendered, once per attempt before the handler runs (with
    :data:`RENDERED_CONTEXT`), which then sees the model instance as ``job.args``.
    ``render_args=False`` hands the handler the raw args plus ``ctx.scope`` so it
    can render placeholders itself (the ssh handler does, to shell-quote them), and
    validate them itself once rendered.
    ``takes_context``: the function accepts ``(job, ctx)`` rather than ``(job)``.
    ``sync``: a plain ``def``; the executor runs it in its queue's thread pool.
    """

    kind: str
    func: HandlerFunc
    queue: str = "default"
    priority: int = 0
    max_attempts: int = 20
    timeout: float | None = None
    args_model: type[BaseModel] | None = None
    backoff: BackoffFunc | None = None
    render_args: bool = True
    takes_context: bool = False
    tags: tuple[str, ...] = ()
    sync: bool = False


class Registry:
    """Maps kinds to handlers. Engines read the default registry unless given one.

    Example::

        registry = Registry()

        @registry.handler("resize-image", queue="media", max_attempts=5, timeout=30)
        async def resize(job): ...
    """

    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec] = {}

    def register(self, spec: HandlerSpec) -> HandlerSpec:
        """Add a handler; re-registering the same function (a module re-import) is allowed."""
        if not KIND_PATTERN.match(spec.kind):
            raise ValueError(f"invalid handler kind {spec.kind!r}: use letters, digits and _ . : -")
        existing = self._specs.get(spec.kind)
        if existing is not None and _qualname(existing.func) != _qualname(spec.func):
            raise ValueError(f"kind {spec.kind!r} is already registered by {_qualname(existing.func)}")
        self._specs[spec.kind] = spec
        return spec

    def handler(
        self,
        kind: str,
        *,
        queue: str = "default",
        priority: int = 0,
        max_attempts: int = 20,
        timeout: float | None = None,
        args_model: type[BaseModel] | None = None,
        backoff: BackoffFunc | None = None,
        render_args: bool = True,
        tags: tuple[str, ...] | list[str] = (),
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        """Decorator form of :meth:`register`."""
        if max_attempts < 1:
            raise ValueError(f"max_attempts for {kind!r} must be >= 1, got {max_attempts}")

        def decorate(func: HandlerFunc) -> HandlerFunc:
            if not callable(func) or inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
                raise TypeError(f"handler for {kind!r} must be a function (async def, or def to run in a thread)")
            self.register(
                HandlerSpec(
                    kind=kind,
                    func=func,
                    queue=queue,
                    priority=priority,
                    max_attempts=max_attempts,
                    timeout=timeout,
                    args_model=args_model,
                    backoff=backoff,
                    render_args=render_args,
                    takes_context=len(inspect.signature(func).parameters) >= 2,
                    tags=tuple(tags),
                    sync=not inspect.iscoroutinefunction(func),
                )
            )
            return func

        return decorate

    def get(self, kind: str) -> HandlerSpec:
        """The spec for ``kind``; raises :class:`UnknownKindError` naming the known kinds."""
        try:
            return self._specs[kind]
        except KeyError:
            raise UnknownKindError(kind, sorted(self._specs)) from None

    def __contains__(self, kind: object) -> bool:
        return kind in self._specs

    def __iter__(self) -> Iterator[HandlerSpec]:
        return iter(list(self._specs.values()))

    def copy(self) -> Registry:
        """A registry with the same handlers, to extend without touching this one."""
        clone = Registry()
        clone._specs = dict(self._specs)
        return clone


def _qualname(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


# The process-wide registry that ``@handler`` fills at import time, as modules
# listed in config ``modules`` are imported.
default_registry = Registry()


def handler(
    kind: str,
    *,
    queue: str = "default",
    priority: int = 0,
    max_attempts: int = 20,
    timeout: float | None = None,
    args_model: type[BaseModel] | None = None,
    backoff: BackoffFunc | None = None,
    render_args: bool = True,
    tags: tuple[str, ...] | list[str] = (),
) -> Callable[[HandlerFunc], HandlerFunc]:
    """Register a function as the handler for ``kind`` in the default registry.

    An ``async def`` runs on the event loop; a plain ``def`` (code calling ``requests``,
    ``boto3`` or an ORM) runs in a thread of its queue's pool, at most the queue's
    concurrency at once.

    Example::

        @handler("resize-image", queue="media", max_attempts=5, timeout=30)
        async def resize(job):
            return {"width": job.args["width"]}

        @handler("sync-report")
        def report(job):
            return requests.get(job.args["url"]).status_code
    """
    return default_registry.handler(
        kind,
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        timeout=timeout,
        args_model=args_model,
        backoff=backoff,
        render_args=render_args,
        tags=tags,
    )

"""The typed context handed to handlers: config, logger, shared clients, placeholder scope."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from engine.core.attempt_log import AttemptLog

if TYPE_CHECKING:
    from engine.core.config import Config
    from engine.core.secrets import Secrets

T = TypeVar("T")
ResourceFactory = Callable[["Config"], AbstractAsyncContextManager[T]]


class Resources:
    """Long-lived clients (aiohttp session, SSH connections, ...) built once per engine,
    lazily on first use, and closed when the engine stops.

    A factory is an async context manager function taking the config::

        @asynccontextmanager
        async def http_session(config: Config) -> AsyncIterator[aiohttp.ClientSession]:
            async with aiohttp.ClientSession() as session:
                yield session

        session = await ctx.resources.get(http_session)
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._stack = AsyncExitStack()
        self._values: dict[Any, Any] = {}
        self._lock = anyio.Lock()

    async def get(self, factory: ResourceFactory[T]) -> T:
        """The resource made by ``factory``, creating it on first use."""
        if factory in self._values:
            return self._values[factory]  # type: ignore[no-any-return]
        async with self._lock:
            if factory not in self._values:
                self._values[factory] = await self._stack.enter_async_context(factory(self.config))
        return self._values[factory]  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close every resource, newest first."""
        with anyio.CancelScope(shield=True):
            await self._stack.aclose()
        self._values.clear()


@dataclass(slots=True)
class HandlerContext:
    """What a handler declared as ``async def f(job, ctx)`` receives.

    ``scope`` maps placeholder names to values for handlers that render their
    own args (``render_args=False``); it includes secrets, so never store it.
    """

    config: Config
    resources: Resources
    secrets: Secrets
    logger: Any
    scope: Mapping[str, Any] = field(default_factory=dict)
    attempt_log: AttemptLog | None = None  # where ctx.logger's lines and ctx.progress go

    async def progress(self, fraction: float, text: str | None = None) -> None:
        """Report how far the attempt has got (0 to 1) and a short note; the job page and
        list show it while the job runs. ValueError for a fraction outside 0..1.

        Example::

            await ctx.progress(0.4, "copied 4/10")
        """
        if self.attempt_log is None:  # no node records it (perform_job in a test)
            if not 0 <= fraction <= 1:
                raise ValueError(f"progress: a number from 0 to 1, not {fraction!r}")
            return
        self.attempt_log.set_progress(fraction, text)


"""A sync client for sync web apps (Django, Flask, plain WSGI): enqueue without async code.

The client runs an insert-only :class:`engine.engine.Engine` on an event loop in a thread of its
own, so every call has the async API's validation, defaults and errors (:class:`EnqueueError`,
``TypeError`` for an unknown option). It is thread-safe: one client per process serves every
request thread. Create it after the server forks its workers (an event loop thread does not
survive a fork).

Example::

    from engine import Client

    with Client("postgresql://app@db/app") as client:
        job = client.enqueue("mail", {"to": "a@example.com", "subject": "hi", "text": "..."}, delay=5)

    with transaction.atomic():                      # Django: the job commits with the order
        order.save()
        client.enqueue("mail", {...}, conn=django.db.connection)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from engine.core.config import Config, load_config
from engine.core.job import Job, JobSpec
from engine.core.registry import Registry
from engine.db import foreign
from engine.engine import Engine

T = TypeVar("T")


class Client:
    """Enqueue from sync code; the same arguments as :meth:`Engine.enqueue`.

    ``conn`` takes the application's sync connection, so the insert joins its transaction:
    a psycopg 3 ``Connection``, a SQLAlchemy ``Connection`` / ``Session`` (or ``scoped_session``),
    or Django's ``django.db.connection`` (postgresql on psycopg 3).

    Example::

        client = Client(config="config/jobengine.toml").open()
        client.enqueue("log", {"level": "info", "message": "hello"})
        client.close()
    """

    def __init__(self, database_url: str | None = None, config: str | Path | Config | None = None, *,
                 registry: Registry | None = None, env: Mapping[str, str] | None = None) -> None:
        loaded = config if isinstance(config, Config) else load_config(config, env=env)
        # Insert-only whatever the config says: a web process's client never runs jobs.
        self.engine = Engine(database_url, loaded.model_copy(update={"queues": {}}), registry=registry, env=env)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Client:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> Client:
        """Start the client's loop thread, connect and migrate; returns the client."""
        if self._loop is not None:
            raise RuntimeError("client already open")
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="jobengine client", daemon=True)
        self._thread.start()
        self._loop = loop
        try:
            self._call(self.engine.start())
        except BaseException:
            self._stop_loop()
            raise
        return self

    def close(self) -> None:
        """Close the pool and stop the loop thread."""
        if self._loop is None:
            return
        try:
            self._call(self.engine.stop())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("client not open: use `with Client(...) as client` or client.open()")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("Client called from its own loop thread (inside a handler?): use the async Engine")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @staticmethod
    def _sync_connection(conn: Any) -> Any:
        """The app's sync connection, adapted here in the calling thread (Django's connection
        belongs to it); the insert then runs on it from the loop thread while the caller waits."""
        if conn is None:
            return None
        adapted = foreign.adapt(conn, allow_blocking=True)
        if not getattr(adapted, "blocking", False):
            raise TypeError("conn: an async connection belongs to its own event loop; "
                            "use `await engine.enqueue(..., conn=...)` there")
        return adapted

    def enqueue(self, kind: str, args: dict[str, Any] | None = None, *, conn: Any = None, **options: Any) -> Job:
        """Insert one job: ``options`` are :meth:`Engine.enqueue`'s (``queue``, ``priority``,
        ``delay``, ``max_attempts``, ``unique``, ``depends_on``, ...)."""
        return self._call(self.engine.enqueue(kind, args, conn=self._sync_connection(conn), **options))

    def enqueue_many(self, specs: Sequence[JobSpec | Mapping[str, Any]], *, conn: Any = None) -> list[Job]:
        """Insert a batch (JobSpecs or job documents) in one round trip; nothing if any is invalid."""
        return self._call(self.engine.enqueue_many(specs, conn=self._sync_connection(conn)))

    def enqueue_document(self, document: Mapping[str, Any], *, conn: Any = None) -> Job:
        """Insert a job document, e.g. ``{"jobType": "log", "data": {...}, "delay": 5000}``."""
        return self._call(self.engine.enqueue_document(document, conn=self._sync_connection(conn)))

    def get(self, job_id: int) -> Job | None:
        """The job with this id, or None."""
        return self._call(self.engine.get(job_id))

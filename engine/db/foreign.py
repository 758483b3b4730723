"""The application's own connection, whatever its driver, for a transactional enqueue.

``enqueue(..., conn=...)`` inserts on the connection the application already uses, inside its
transaction: the job exists if and only if that transaction commits. asyncpg stays the engine's
own driver; this module makes the other common ones look like the part of an
``asyncpg.Connection`` the insert path uses (``fetch``, ``fetchrow``, ``fetchval``, ``execute``,
``transaction``), running the very same statements of :mod:`engine.db.sql`:

- asyncpg ``Connection`` (and pool connections): used as they are;
- psycopg 3 ``AsyncConnection`` (and, from :class:`engine.client.Client`, ``Connection``);
- SQLAlchemy ``AsyncConnection`` / ``AsyncSession`` (and, from the Client, ``Connection`` /
  ``Session``, or a ``scoped_session``), on any Postgres driver;
- Django's ``django.db.connection`` (postgresql backend on psycopg 3), from the Client.

No driver is imported here (they are optional extras): connections are recognised by their
class's module, so the core install does not grow.

Example::

    async with session.begin():                   # SQLAlchemy AsyncSession
        session.add(order)
        await engine.enqueue("mail", {...}, conn=session)
"""

from __future__ import annotations

import inspect
import itertools
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

Row = Mapping[str, Any]
_PLACEHOLDER = re.compile(r"\$(\d+)")
_savepoints = itertools.count(1)


class ForeignConnection:
    """An application connection of another driver, as the insert path sees a connection.

    ``run(query, params)`` executes one statement (``%s`` placeholders or ``$n`` ones, as
    ``dollar`` says) and returns its rows as mappings; it is a coroutine function for async
    drivers and a plain function for sync ones (``blocking``: only the sync Client may use those).
    """

    def __init__(self, run: Callable[[str, Sequence[Any]], Any], *, dollar: bool, blocking: bool,
                 in_transaction: Callable[[], bool], name: str) -> None:
        self._run = run
        self._dollar = dollar
        self.blocking = blocking
        self._in_transaction = in_transaction
        self.name = name

    async def _query(self, query: str, args: Sequence[Any]) -> list[Row]:
        text, params = (query, list(args)) if self._dollar else to_format_style(query, args)
        try:
            result = self._run(text, params)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            translated = _translated(exc)
            if translated is exc:
                raise
            raise translated from exc
        return list(result)

    async def fetch(self, query: str, *args: Any) -> list[Row]:
        return await self._query(query, args)

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        rows = await self._query(query, args)
        return rows[0] if rows else None

    async def fetchval(self, query: str, *args: Any) -> Any:
        row = await self.fetchrow(query, *args)
        return next(iter(row.values())) if row else None

    async def execute(self, query: str, *args: Any) -> str:
        await self._query(query, args)
        return ""

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """A savepoint inside the application's transaction (a transaction of its own on a
        connection in autocommit mode), as ``asyncpg.Connection.transaction`` nests."""
        if self._in_transaction():
            name = f"jobengine_{next(_savepoints)}"
            begin, commit, rollback = f"SAVEPOINT {name}", f"RELEASE SAVEPOINT {name}", f"ROLLBACK TO SAVEPOINT {name}"
        else:
            begin, commit, rollback = "BEGIN", "COMMIT", "ROLLBACK"
        await self.execute(begin)
        try:
            yield
        except BaseException:
            await self.execute(rollback)
            raise
        await self.execute(commit)


def to_format_style(query: str, args: Sequence[Any]) -> tuple[str, list[Any]]:
    """``$n`` placeholders as ``%s`` ones (psycopg, SQLAlchemy's format/pyformat drivers):
    parameters in order of appearance (a ``$n`` used twice is passed twice), ``%`` escaped.

    >>> to_format_style("SELECT $2, '5%', $1, $2", ["a", "b"])
    ("SELECT %s, '5%%', %s, %s", ['b', 'a', 'b'])
    """
    params: list[Any] = []

    def take(match: re.Match[str]) -> str:
        params.append(args[int(match.group(1)) - 1])
        return "%s"

    return _PLACEHOLDER.sub(take, query.replace("%", "%%")), params


def adapt(conn: Any, *, allow_blocking: bool = False) -> Any:
    """``conn`` as the insert path's connection: asyncpg's as it is, another driver's wrapped.
    A sync connection is refused unless ``allow_blocking`` (it would block the event loop)."""
    if conn is None or isinstance(conn, asyncpg.Connection | asyncpg.pool.PoolConnectionProxy | ForeignConnection):
        return conn  # a ForeignConnection was adapted already, by a caller that knew its kind
    adapted = _wrap(conn)
    if adapted.blocking and not allow_blocking:
        raise TypeError(f"conn: {adapted.name} is a sync connection and would block the event loop; "
                        "pass it to a sync engine.Client (client.enqueue(..., conn=...)), or use an async one")
    return adapted


def _classes(conn: Any) -> set[str]:
    return {f"{cls.__module__.split('.')[0]}.{cls.__name__}" for cls in type(conn).__mro__}


def _wrap(conn: Any) -> ForeignConnection:
    classes = _classes(conn)
    if "sqlalchemy.scoped_session" in classes or "sqlalchemy.async_scoped_session" in classes:
        return _wrap(conn())  # Flask-SQLAlchemy's db.session: the current session
    if "psycopg.AsyncConnection" in classes:
        return ForeignConnection(_psycopg_async(conn), dollar=False, blocking=False,
                                 in_transaction=lambda: not conn.autocommit, name="psycopg AsyncConnection")
    if "psycopg.Connection" in classes:
        return ForeignConnection(_psycopg_sync(conn), dollar=False, blocking=True,
                                 in_transaction=lambda: not conn.autocommit, name="psycopg Connection")
    if "sqlalchemy.AsyncConnection" in classes or "sqlalchemy.AsyncSession" in classes:
        return _sqlalchemy(conn, blocking=False)
    if "sqlalchemy.Connection" in classes or "sqlalchemy.Session" in classes:
        return _sqlalchemy(conn, blocking=True)
    if "django.DatabaseWrapper" in classes or "django.ConnectionProxy" in classes:
        return _django(conn)  # django.db.connection is a proxy of connections["default"]
    raise TypeError(f"conn: expected an asyncpg, psycopg 3 or SQLAlchemy connection or session "
                    f"(or Django's connection), got {type(conn).__module__}.{type(conn).__qualname__}")


def _described(description: Any, rows: Sequence[Sequence[Any]]) -> list[Row]:
    names = [column.name for column in description]
    return [dict(zip(names, row, strict=True)) for row in rows]


def _psycopg_async(conn: Any) -> Callable[[str, Sequence[Any]], Any]:
    async def run(query: str, params: Sequence[Any]) -> list[Row]:
        async with conn.cursor() as cursor:
            await cursor.execute(query, params, prepare=False)
            return _described(cursor.description, await cursor.fetchall()) if cursor.description else []
    return run


def _psycopg_sync(conn: Any) -> Callable[[str, Sequence[Any]], Any]:
    def run(query: str, params: Sequence[Any]) -> list[Row]:
        with conn.cursor() as cursor:
            cursor.execute(query, params, prepare=False)
            return _described(cursor.description, cursor.fetchall()) if cursor.description else []
    return run


def _sqlalchemy(conn: Any, *, blocking: bool) -> ForeignConnection:
    """Through ``exec_driver_sql``, so the statement runs in the connection's (or session's)
    transaction whatever its driver, in that driver's parameter style."""
    bind = conn.get_bind() if hasattr(conn, "get_bind") else conn
    style = bind.dialect.paramstyle
    if style not in ("numeric_dollar", "format", "pyformat"):
        raise TypeError(f"conn: SQLAlchemy dialect {bind.dialect.name}+{bind.dialect.driver} "
                        f"(paramstyle {style}) is not supported; use a Postgres driver (asyncpg or psycopg)")
    is_session = hasattr(conn, "get_bind")

    async def run_async(query: str, params: Sequence[Any]) -> list[Row]:
        target = await conn.connection() if is_session else conn
        result = await target.exec_driver_sql(query, tuple(params))
        return [dict(row) for row in result.mappings().all()] if result.returns_rows else []

    def run_sync(query: str, params: Sequence[Any]) -> list[Row]:
        target = conn.connection() if is_session else conn
        result = target.exec_driver_sql(query, tuple(params))
        return [dict(row) for row in result.mappings().all()] if result.returns_rows else []

    # SQLAlchemy 2 always runs in a transaction (autobegin): a nested one is a savepoint.
    return ForeignConnection(run_sync if blocking else run_async, dollar=style == "numeric_dollar",
                             blocking=blocking, in_transaction=lambda: True,
                             name=f"SQLAlchemy {type(conn).__name__}")


def _django(conn: Any) -> ForeignConnection:
    """Django's connection: its psycopg 3 connection, inside the current ``atomic()`` block."""
    if conn.vendor != "postgresql":
        raise TypeError(f"conn: Django database {conn.alias!r} is {conn.vendor}, not postgresql")
    conn.ensure_connection()
    raw = conn.connection
    if "psycopg.Connection" not in _classes(raw):
        raise TypeError("conn: Django's postgresql backend must run on psycopg 3 (psycopg2 is not supported)")
    return ForeignConnection(_psycopg_sync(raw), dollar=False, blocking=True,
                             in_transaction=lambda: not conn.get_autocommit(), name="Django connection")


def _translated(exc: Exception) -> Exception:
    """The driver's "lock not available" as asyncpg's, which the dependency insert retries on."""
    orig = getattr(exc, "orig", None) or exc
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code == "55P03":
        locked: Exception = asyncpg.LockNotAvailableError(str(orig))
        return locked
    return exc

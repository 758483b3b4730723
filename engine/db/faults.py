"""Which database errors are faults worth retrying, and which are answers.

A transient fault (the network, a restart, a failover, too many connections, a timeout)
may be cured by trying again later: services log it as a warning and retry. Anything
else (bad SQL or data, a dropped table) would repeat, and is a bug or a refusal.
"""

from __future__ import annotations

from typing import Any

import asyncpg

# SQLSTATE classes worth retrying: connection exceptions, invalid authorization (raised only
# while a new connection logs in: a rotated password, an expired IAM token, a role briefly
# NOLOGIN; never an answer about the statement), transaction rollbacks (serialization,
# deadlock), insufficient resources (too many connections), operator intervention (shutdown,
# restart, query cancelled); plus lock_not_available and a read-only transaction (a failover
# promoting another server).
TRANSIENT_SQLSTATE_CLASSES = ("08", "28", "40", "53", "57")
TRANSIENT_SQLSTATES = ("55P03", "25006")

# What a lost or refused connection raises before any SQLSTATE exists.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError,
)


def is_transient(exc: BaseException) -> bool:
    """True for database faults that retrying later may cure (the network, a restart, a
    timeout); False for errors that would repeat (bad SQL or data, a dropped table)."""
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        return state[:2] in TRANSIENT_SQLSTATE_CLASSES or state in TRANSIENT_SQLSTATES
    if isinstance(exc, ValueError):  # asyncpg's client-side DataError: the input itself is bad
        return False
    # InternalClientError: a connection left in a broken state by a fault ("another operation
    # is in progress"); the pool replaces it.
    return isinstance(exc, CONNECTION_ERRORS)


def log_fault(log: Any, message: str, exc: BaseException, **fields: Any) -> None:
    """How every service loop reports a failed round before it tries again: a transient
    database fault is a warning (it will pass); anything else is a bug, logged as an
    error with its traceback, never swallowed silently."""
    if is_transient(exc):
        log.warning(message, error=str(exc) or type(exc).__name__, **fields)
    else:
        log.error(message + " (unexpected error)", error=str(exc) or type(exc).__name__, exc_info=exc, **fields)


def connect_failure_reason(exc: BaseException, timeout: float) -> str:
    """Why a connection could not be opened, as an operator needs to read it: the server
    answered and refused ("refused: too many connections", "password authentication
    failed"), or never answered ("unreachable: ...")."""
    if isinstance(exc, asyncpg.TooManyConnectionsError):
        return f"refused: too many connections ({exc})"
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return f"password authentication failed ({exc})"
    if isinstance(exc, asyncpg.PostgresError):
        return f"refused: {exc} (SQLSTATE {exc.sqlstate})"
    if isinstance(exc, TimeoutError):
        return f"unreachable: no answer within {timeout:g}s"
    if isinstance(exc, OSError):
        return f"unreachable: {exc.strerror or exc}"
    return f"unreachable: {exc or type(exc).__name__}"

"""Users, API tokens, login sessions and the audit log: one part of
:class:`engine.db.store.JobStore`.

Every change to an account writes its audit row in the same transaction, so the log never
misses a change that happened nor records one that did not. A change that could leave no
enabled admin locks the admin rows first, so two concurrent ones cannot both pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from engine.core.accounts import AuditEntry
from engine.db.base import StoreBase

Outcome = Literal["done", "absent", "last-admin"]


@dataclass(frozen=True, slots=True)
class UserChange:
    """Fields to change on a user; None leaves one as it is."""

    role: str | None = None
    can_view_args: bool | None = None
    disabled: bool | None = None


class AccountRows(StoreBase):
    """Accounts and the audit log (engine/web and engine/cli are the callers)."""

    # --- users ------------------------------------------------------------------------------

    async def user_add(self, name: str, role: str, can_view_args: bool, password_hash: str | None,
                       audit: AuditEntry) -> bool:
        """Add a user; False when the name is taken."""
        async with self.pool.acquire() as conn, conn.transaction():
            added = await conn.fetchval(self.statements.USER_INSERT, name, role, can_view_args, password_hash)
            if added is not None:
                await self._audit(conn, audit)
        return added is not None

    async def user_list(self) -> list[dict[str, Any]]:
        """Every user (never a hash), with their live token count."""
        async with self.pool.acquire() as conn:
            return [dict(r) for r in await conn.fetch(self.statements.USER_LIST)]

    async def user_get(self, name: str) -> dict[str, Any] | None:
        """The user with its password hash (for checking a login), or None."""
        async with self.pool.acquire() as conn:
            record = await conn.fetchrow(self.statements.USER_GET, name)
        return dict(record) if record is not None else None

    async def user_remove(self, name: str, audit: AuditEntry) -> Outcome:
        """Remove a user and everything it holds, unless it is the last enabled admin."""
        s = self.statements
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.fetch(s.USER_LOCK_ADMINS)
            user = await conn.fetchrow(s.USER_GET, name)
            if user is None:
                return "absent"
            if user["role"] == "admin" and not await conn.fetchval(s.USER_COUNT_OTHER_ADMINS, name):
                return "last-admin"
            await conn.execute(s.USER_DELETE, name)
            await self._audit(conn, audit)
        return "done"

    async def user_update(self, name: str, change: UserChange, audit: AuditEntry) -> Outcome:
        """Change a user's role, flag or disabled state and end its sessions, unless that
        would leave no enabled admin."""
        s = self.statements
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.fetch(s.USER_LOCK_ADMINS)
            user = await conn.fetchrow(s.USER_GET, name)
            if user is None:
                return "absent"
            demoted = (change.role not in (None, "admin")) or change.disabled is True
            if user["role"] == "admin" and demoted and not await conn.fetchval(s.USER_COUNT_OTHER_ADMINS, name):
                return "last-admin"
            await conn.fetchrow(s.USER_UPDATE, name, change.role, change.can_view_args, change.disabled)
            await conn.execute(s.SESSION_DELETE_FOR_USER, name)
            await self._audit(conn, audit)
        return "done"

    async def user_set_password(self, name: str, password_hash: str, audit: AuditEntry) -> bool:
        """Replace a user's password and end its sessions everywhere; False when absent."""
        s = self.statements
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(s.USER_SET_PASSWORD, name, password_hash) is None:
                return False
            await conn.execute(s.SESSION_DELETE_FOR_USER, name)
            await self._audit(conn, audit)
        return True

    # --- API tokens -------------------------------------------------------------------------

    async def token_add(self, user: str, name: str, digest: bytes, audit: AuditEntry) -> int | None:
        """Store a new token's digest; its id, or None when the user does not exist."""
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchrow(self.statements.USER_GET, user) is None:
                return None
            token_id: int = await conn.fetchval(self.statements.TOKEN_INSERT, user, name, digest)
            await self._audit(conn, AuditEntry(audit.actor, audit.role, audit.action, audit.target,
                                               {**audit.details, "token_id": token_id}))
        return token_id

    async def token_revoke(self, user: str, name: str | None, audit: AuditEntry) -> list[int]:
        """Revoke the user's live tokens named ``name`` (None: all); their ids."""
        async with self.pool.acquire() as conn, conn.transaction():
            ids = [r["id"] for r in await conn.fetch(self.statements.TOKEN_REVOKE, user, name)]
            if ids:
                await self._audit(conn, AuditEntry(audit.actor, audit.role, audit.action, audit.target,
                                                   {**audit.details, "token_ids": ids}))
        return ids

    async def token_list(self, user: str) -> list[dict[str, Any]]:
        async with self.pool.acquire() as conn:
            return [dict(r) for r in await conn.fetch(self.statements.TOKEN_LIST, user)]

    async def token_lookup(self, digest: bytes) -> dict[str, Any] | None:
        """The live token with this digest and its enabled user (name, role, can_view_args)."""
        async with self.pool.acquire() as conn:
            record = await conn.fetchrow(self.statements.TOKEN_LOOKUP, digest)
            if record is None:
                return None
            if record["stale"]:
                await conn.execute(self.statements.TOKEN_TOUCH, record["id"])
        return dict(record)

    # --- sessions ---------------------------------------------------------------------------

    async def session_add(self, id_hash: bytes, user: str | None, role: str, credential: str | None,
                          ttl: float) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(self.statements.SESSION_INSERT, id_hash, user, role, credential, ttl)

    async def session_get(self, id_hash: bytes) -> dict[str, Any] | None:
        """The live session (user_name, role, can_view_args, credential), or None."""
        async with self.pool.acquire() as conn:
            record = await conn.fetchrow(self.statements.SESSION_GET, id_hash)
        return dict(record) if record is not None else None

    async def session_end(self, id_hash: bytes) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(self.statements.SESSION_DELETE, id_hash)

    async def session_prune(self, batch_size: int) -> int:
        async with self.pool.acquire() as conn:
            return _count(await conn.execute(self.statements.SESSION_PRUNE_EXPIRED, batch_size))

    # --- the audit log ----------------------------------------------------------------------

    async def audit(self, entry: AuditEntry, *, conn: asyncpg.Connection | None = None) -> None:
        """Append one row (on ``conn`` to join its transaction)."""
        if conn is not None:
            await self._audit(conn, entry)
            return
        async with self.pool.acquire() as own:
            await self._audit(own, entry)

    async def audit_list(self, *, actor: str | None = None, action: str | None = None, target: str | None = None,
                         since: datetime | None = None, before: int | None = None,
                         limit: int = 100) -> list[dict[str, Any]]:
        """Rows newest first, filtered; ``before`` is the id cursor of the next page."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(self.statements.AUDIT_LIST, actor, action, target, since, before, limit)
        return [dict(r) for r in records]

    async def audit_prune(self, older_than: float, batch_size: int) -> int:
        """Delete up to ``batch_size`` rows older than ``older_than`` seconds; how many went."""
        async with self.pool.acquire() as conn:
            return _count(await conn.execute(self.statements.AUDIT_PRUNE, older_than, batch_size))

    async def _audit(self, conn: asyncpg.Connection, entry: AuditEntry) -> None:
        await conn.execute(self.statements.AUDIT_INSERT, entry.actor, entry.role, entry.action, entry.target,
                           entry.details)


def _count(status: str) -> int:
    """The row count of a command tag such as ``DELETE 12``."""
    return int(status.rsplit(" ", 1)[-1])

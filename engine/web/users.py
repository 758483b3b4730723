"""Managing users, shared by the Users page, the API and the CLI: each operation checks
its input, names the problem when it refuses, and leaves its audit row in the change's
transaction. Raises ``ValueError`` for bad input, ``LookupError`` for a missing user and
``PermissionError`` for a change that would leave no enabled admin.

Example::

    await add_user(store, audit_as, "alice", "operator", password="correct horse")
    token = await new_token_for(store, audit_as, "alice", "deploy bot")   # shown once
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.to_thread

from engine.core.accounts import AuditEntry, Role, check_name, hash_password, new_token, token_digest
from engine.db.account_rows import Outcome, UserChange
from engine.db.store import JobStore

# Builds the audit row of an action (``action``, ``target``, details) for whoever acts.
AuditAs = Callable[..., AuditEntry]


def _outcome(outcome: Outcome, name: str) -> None:
    if outcome == "absent":
        raise LookupError(f"no user {name!r}")
    if outcome == "last-admin":
        raise PermissionError(f"{name!r} is the last enabled admin: add or enable another admin first")


async def add_user(store: JobStore, audit_as: AuditAs, name: str, role: str, *, can_view_args: bool = False,
                   password: str | None = None) -> None:
    check_name(name)
    parsed = Role.parse(role)
    hashed = await anyio.to_thread.run_sync(hash_password, password) if password is not None else None
    entry = audit_as("user.add", f"user:{name}", role=parsed.value, can_view_args=can_view_args,
                     password=hashed is not None)
    if not await store.user_add(name, parsed.value, can_view_args, hashed, entry):
        raise ValueError(f"user name: {name!r} is taken")


async def remove_user(store: JobStore, audit_as: AuditAs, name: str) -> None:
    check_name(name)
    _outcome(await store.user_remove(name, audit_as("user.remove", f"user:{name}")), name)


async def change_user(store: JobStore, audit_as: AuditAs, name: str, change: UserChange) -> None:
    check_name(name)
    if change.role is not None:
        Role.parse(change.role)
    fields = {k: v for k, v in (("role", change.role), ("can_view_args", change.can_view_args),
                                ("disabled", change.disabled)) if v is not None}
    if not fields:
        raise ValueError("nothing to change: give role, can_view_args or disabled")
    _outcome(await store.user_update(name, change, audit_as("user.update", f"user:{name}", **fields)), name)


async def set_password(store: JobStore, audit_as: AuditAs, name: str, password: str) -> None:
    check_name(name)
    hashed = await anyio.to_thread.run_sync(hash_password, password)
    if not await store.user_set_password(name, hashed, audit_as("user.passwd", f"user:{name}")):
        raise LookupError(f"no user {name!r}")


async def new_token_for(store: JobStore, audit_as: AuditAs, user: str, name: str = "api") -> str:
    """A new API token for ``user``: returned once, only its digest is stored."""
    check_name(user)
    check_name(name, "token name")
    token = new_token()
    if await store.token_add(user, name, token_digest(token), audit_as("token.add", f"user:{user}", name=name)) is None:
        raise LookupError(f"no user {user!r}")
    return token


async def revoke_tokens(store: JobStore, audit_as: AuditAs, user: str, name: str | None = None) -> list[int]:
    check_name(user)
    if name is not None:
        check_name(name, "token name")
    ids = await store.token_revoke(user, name, audit_as("token.revoke", f"user:{user}", name=name))
    if not ids:
        which = f"named {name!r} " if name else ""
        raise LookupError(f"user {user!r} has no live token {which}to revoke")
    return ids


async def users_with_tokens(store: JobStore) -> list[dict[str, Any]]:
    users = await store.user_list()
    for user in users:
        user["token_list"] = await store.token_list(user["name"])
    return users

"""``jobengine users``: named accounts for the dashboard and the API, and what the CLI
writes to the audit log.

    jobengine users add alice --role operator [--can-view-args]   password from stdin or a prompt
    jobengine users list
    jobengine users passwd alice | remove alice | disable alice | enable alice
    jobengine users set alice --role viewer --can-view-args no
    jobengine users token alice --name deploy-bot                  prints the token once
    jobengine users revoke alice [--name deploy-bot]               every live token by default

A password is never an argument (it would sit in the shell history and in ``ps``): it is
read from standard input when that is not a terminal, else prompted for twice. Every change
appends an audit row with the actor ``cli:<os user>``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from engine.core.accounts import AuditEntry, check_password
from engine.db.account_rows import UserChange
from engine.db.store import JobStore
from engine.web import users

ACTIONS = ("list", "add", "remove", "passwd", "token", "revoke", "disable", "enable", "set")


def cli_actor() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME (a bare container)
        name = "unknown"
    return f"cli:{name}"


def cli_entry(action: str, target: str | None = None, /, **details: Any) -> AuditEntry:
    """The audit row of a CLI action: the CLI holds the database's credentials, not a role."""
    return AuditEntry(cli_actor(), "cli", action, target, details)


def add_users_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", default="list", choices=ACTIONS, help="default: list")
    parser.add_argument("name", nargs="?", help="user name (all actions but list)")
    parser.add_argument("--role", choices=("viewer", "operator", "admin"), help="add (required) and set")
    parser.add_argument("--can-view-args", nargs="?", const="yes", choices=("yes", "no"),
                        help="a viewer may see job args and results (add: flag; set: yes or no)")
    parser.add_argument("--no-password", action="store_true",
                        help="add: no password login (API tokens or single sign-on only)")
    parser.add_argument("--token-name", "--name", dest="token_name", metavar="NAME",
                        help="token and revoke: the token's name (default: api; revoke: all tokens)")


def read_password(prompt: str = "Password: ") -> str:
    """From stdin when piped (one line), else a prompt twice; empty passwords are refused."""
    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(prompt)
        if getpass.getpass("Again: ") != password:
            raise ValueError("password: the two entries differ")
    return check_password(password)


async def run_users_command(store: JobStore, args: argparse.Namespace) -> tuple[Any, str]:
    """Run one ``jobengine users`` action; returns (JSON-able data, human text). Raises
    ValueError with a message for the user."""
    try:
        return await _run(store, args)
    except (LookupError, PermissionError) as exc:
        raise ValueError(str(exc)) from None


async def _run(store: JobStore, args: argparse.Namespace) -> tuple[Any, str]:
    if args.action == "list":
        found = await store.user_list()
        rows = [{"name": u["name"], "role": u["role"], "can_view_args": u["can_view_args"],
                 "disabled": u["disabled"], "password": u["has_password"], "tokens": u["tokens"],
                 "created_at": u["created_at"].isoformat(timespec="seconds")} for u in found]
        return rows, _table(rows)
    name = args.name
    if not name:
        raise ValueError(f"jobengine users {args.action}: give the user NAME")
    if args.action == "add":
        if args.role is None:
            raise ValueError("jobengine users add: --role viewer|operator|admin is required")
        password = None if args.no_password else read_password()
        await users.add_user(store, cli_entry, name, args.role, can_view_args=args.can_view_args == "yes",
                             password=password)
        return {"name": name, "added": True}, f"user {name} added ({args.role})"
    if args.action == "passwd":
        await users.set_password(store, cli_entry, name, read_password("New password: "))
        return {"name": name, "password_changed": True}, f"password of {name} changed; its sessions ended"
    if args.action == "token":
        token = await users.new_token_for(store, cli_entry, name, args.token_name or "api")
        return ({"name": name, "token": token},
                f"{token}\n(the API token for {name}: shown this once, only its hash is kept)")
    if args.action == "revoke":
        ids = await users.revoke_tokens(store, cli_entry, name, args.token_name)
        return {"name": name, "revoked": ids}, f"revoked {len(ids)} token(s) of {name}"
    if args.action == "remove":
        await users.remove_user(store, cli_entry, name)
        return {"name": name, "removed": True}, f"user {name} removed"
    change = {"disable": UserChange(disabled=True), "enable": UserChange(disabled=False)}.get(args.action) or \
        UserChange(role=args.role, can_view_args=None if args.can_view_args is None else args.can_view_args == "yes")
    await users.change_user(store, cli_entry, name, change)
    return {"name": name, args.action: True}, f"user {name} changed ({args.action}); its sessions ended"


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no users (add one: jobengine users add NAME --role admin)"
    columns = list(rows[0])
    cells = [[str(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)

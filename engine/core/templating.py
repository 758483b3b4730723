"""``{{placeholder}}`` substitution in job args, resolved when the job runs.

A name is looked up, in order, in the job's ``vars``, the parent job's result
(chains), the built-ins (``date``, ``timestamp``, ``job.id``, ``job.attempt``,
``job.queue``, ``job.kind``) and the declared secrets (``secrets.NAME`` or plain
``NAME``). Substitution is a single pass: a value that itself contains ``{{x}}`` is
inserted as text and never expanded again.

Example::

    scope = build_scope(job, secrets)
    render({"userId": "{{userId}}", "text": "hi {{user.name}}"}, scope)
    # {'userId': 7, 'text': 'hi Ann'}   (a lone placeholder keeps the value's type)
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from engine.core.job import Job
from engine.core.outcomes import PermanentError
from engine.core.secrets import Secrets

__all__ = [
    "NAME_PATTERN", "PLACEHOLDER", "Scope", "UnresolvedPlaceholderError",
    "build_scope", "placeholders_in", "render", "to_text",
]

NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*"
PLACEHOLDER = re.compile(r"\{\{\s*(" + NAME_PATTERN + r")\s*\}\}")
_MISSING: Any = object()


class UnresolvedPlaceholderError(PermanentError):
    """One or more placeholders have no value; the job is discarded before any side effect."""

    def __init__(self, names: set[str] | list[str]) -> None:
        self.names = sorted(set(names))
        listed = ", ".join("{{" + name + "}}" for name in self.names)
        super().__init__(
            f"unresolved placeholder{'s' if len(self.names) > 1 else ''}: {listed} "
            "(not in vars, the parent result, the built-ins or the declared secrets)"
        )


class Scope(Mapping[str, Any]):
    """The values placeholders resolve to, in resolution order. ``scope[name]``
    raises ``KeyError`` for an unknown name; dotted names walk into dicts and lists.

    Secrets resolved through the scope are recorded (``secret_names``,
    ``secret_values``) so the caller can redact them; ``Secrets.redact`` does that.

    Example::

        scope = Scope(vars={"user": {"name": "Ann"}})
        scope["user.name"]   # 'Ann'
    """

    def __init__(self, vars: Mapping[str, Any] | None = None, *, result: Any = _MISSING,
                 builtins: Mapping[str, Any] | None = None, secrets: Secrets | None = None) -> None:
        self._vars = dict(vars or {})
        self._result = result
        self._builtins = dict(builtins or {})
        self._secrets = secrets
        self._used_secrets: dict[str, str] = {}

    def __getitem__(self, name: str) -> Any:
        value = self._resolve(name)
        if value is _MISSING:
            raise KeyError(name)
        return value

    def _resolve(self, name: str) -> Any:
        parts = name.split(".")
        if parts[0] == "secrets" and len(parts) == 2:
            # An explicit secrets.NAME is never shadowed by a var of the job's author.
            return self._secret(parts[1])
        value = _walk(self._vars, parts)
        if value is _MISSING and self._result is not _MISSING:
            if parts[0] == "result":
                value = _walk(self._result, parts[1:])
            if value is _MISSING:
                value = _walk(self._result, parts)
        if value is _MISSING:
            value = self._builtins.get(name, _MISSING)
        if value is _MISSING and len(parts) == 1:
            value = self._secret(name)
        return value

    def _secret(self, name: str) -> Any:
        value = self._secrets.get(name) if self._secrets is not None else None
        if value is None:
            return _MISSING
        self._used_secrets[name] = value
        return value

    def __iter__(self) -> Iterator[str]:
        names = dict.fromkeys(self._vars)
        if isinstance(self._result, Mapping):
            names.update(dict.fromkeys(str(key) for key in self._result))
        names.update(dict.fromkeys(self._builtins))
        if self._secrets is not None:
            names.update(dict.fromkeys(self._secrets.names))
        return iter(names)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        # Never show values: the scope holds secrets.
        return f"Scope(names={sorted(self)!r})"

    @property
    def secret_names(self) -> frozenset[str]:
        """Names resolved from secrets so far."""
        return frozenset(self._used_secrets)

    @property
    def secret_values(self) -> frozenset[str]:
        """Values of the secrets resolved so far (to scrub from anything shown)."""
        return frozenset(self._used_secrets.values())


def _walk(root: Any, parts: list[str]) -> Any:
    node = root
    for part in parts:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def build_scope(
    job: Job, secrets: Secrets, *, parent_result: Any = None, now: datetime | None = None
) -> Scope:
    """The scope for ``job``: its vars, its parent's result (``job.meta["parent_result"]``
    unless given), built-ins and secrets.

    Example::

        scope = build_scope(job, Secrets({}), now=datetime(2024, 1, 15, tzinfo=UTC))
        scope["date"]   # '2024-01-15'
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if parent_result is None:
        parent_result = job.meta.get("parent_result", _MISSING)
        parent_result = _MISSING if parent_result is None else parent_result
    builtins = {
        "date": now.strftime("%Y-%m-%d"),
        "timestamp": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "job.id": job.id,
        "job.attempt": job.attempt,
        "job.queue": job.queue,
        "job.kind": job.kind,
    }
    return Scope(job.vars, result=parent_result, builtins=builtins, secrets=secrets)


def to_text(value: Any) -> str:
    """How a value reads embedded in text: strings as they are, the rest as compact JSON
    (``None`` -> ``null``, ``True`` -> ``true``), numbers and other objects via ``str``.

    Example::

        to_text({"a": [1, True]})   # '{"a":[1,true]}'
    """
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | dict | list | tuple):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return str(value)


def render(value: Any, scope: Mapping[str, Any]) -> Any:
    """A copy of ``value`` with every placeholder in its strings replaced (dict keys
    are left alone). Raises :class:`UnresolvedPlaceholderError` naming every missing name.

    Example::

        render("{{n}}", Scope({"n": 7}))          # 7
        render("n={{ n }}", Scope({"n": 7}))      # 'n=7'
    """
    missing: set[str] = set()
    rendered = _render(value, scope, missing)
    if missing:
        raise UnresolvedPlaceholderError(missing)
    return rendered


def _render(value: Any, scope: Mapping[str, Any], missing: set[str]) -> Any:
    if isinstance(value, str):
        return _render_text(value, scope, missing)
    if isinstance(value, Mapping):
        return {key: _render(item, scope, missing) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_render(item, scope, missing) for item in value]
    return value


def _render_text(text: str, scope: Mapping[str, Any], missing: set[str]) -> Any:
    if "{{" not in text:
        return text
    whole = PLACEHOLDER.fullmatch(text)
    if whole:
        value = _get(scope, whole.group(1), missing)
        # Deep copy: the handler may mutate its args; the job's vars must not change.
        return copy.deepcopy(value)

    def substitute(match: re.Match[str]) -> str:
        return to_text(_get(scope, match.group(1), missing))

    # re.sub makes one pass over the template, so substituted text is never re-scanned.
    return PLACEHOLDER.sub(substitute, text)


def _get(scope: Mapping[str, Any], name: str, missing: set[str]) -> Any:
    try:
        return scope[name]
    except KeyError:
        missing.add(name)
        return ""


def placeholders_in(value: Any) -> set[str]:
    """Every placeholder name used in ``value``'s strings.

    Example::

        placeholders_in({"to": "{{email}}", "cc": ["{{ boss.email }}"]})   # {'email', 'boss.email'}
    """
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, Mapping):
        items: Any = value.values()
    elif isinstance(value, list | tuple):
        items = value
    else:
        return set()
    names: set[str] = set()
    for item in items:
        names |= placeholders_in(item)
    return names

"""Secrets: values read from the environment by name, usable as ``{{NAME}}`` or
``{{secrets.NAME}}``, and scrubbed (as ``***``) from anything that is stored or shown."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import quote, quote_plus

from engine.core.outcomes import PermanentError

REDACTED = "***"
# Values shorter than this would redact ordinary words; they are still usable but
# a config with them is refused (see Secrets.from_env).
MIN_SECRET_LENGTH = 4


class SecretValueInArgsError(ValueError):
    """A job's data contains a secret's literal value instead of its placeholder."""


def variants(secret: str) -> set[str]:
    """The forms a secret takes on its way into text: as is, JSON-escaped (once and twice),
    repr()'d, backslash-escaped and URL-encoded. Redaction matches each, ignoring case (yarl
    lower-cases host names), so no variant survives to be shortened or shown.

    Example::

        variants('a"b')   # {'a"b', 'a\\"b', 'a\\\\\\"b', 'a%22b', ...}
    """
    escaped = json.dumps(secret)[1:-1]
    forms = {
        secret, escaped, json.dumps(secret, ensure_ascii=False)[1:-1], json.dumps(escaped)[1:-1],
        repr(secret)[1:-1], secret.encode("unicode_escape").decode("ascii"),
        quote(secret, safe=""), quote_plus(secret), quote(secret, safe="/:@!$&'()*+,;="),
    }
    return {form for form in forms if form}


def _pattern(forms: Iterable[str]) -> re.Pattern[str] | None:
    ordered = sorted(set(forms), key=len, reverse=True)  # longest first: a secret holding another goes whole
    return re.compile("|".join(map(re.escape, ordered)), re.IGNORECASE) if ordered else None


class SecretScopeError(PermanentError):
    """A job uses a secret where its scope (``[secrets.NAME]`` kinds and hosts) does not allow it."""


class Scope(Protocol):
    """Where a secret may be used (``engine.core.config.SecretScope``)."""

    @property
    def kinds(self) -> list[str] | None: ...

    @property
    def hosts(self) -> list[str] | None: ...


def host_matches(host: str, pattern: str) -> bool:
    """``api.example.com`` matches itself; ``*.example.com`` its subdomains. Case and a
    trailing dot do not matter."""
    host, pattern = host.strip("[]").rstrip(".").lower(), pattern.strip("[]").rstrip(".").lower()
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


class Secrets:
    """The declared secrets and their values.

    Example::

        secrets = Secrets.from_env(["API_TOKEN"], {"API_TOKEN": "s3cr3t-value"})
        secrets.redact({"auth": "Bearer s3cr3t-value"})   # {'auth': 'Bearer ***'}
    """

    def __init__(self, values: Mapping[str, str], *, declared: Iterable[str] = (),
                 scopes: Mapping[str, Scope] | None = None) -> None:
        self._values = dict(values)
        self._scopes = {name: scope for name, scope in (scopes or {}).items()
                        if scope.kinds is not None or scope.hosts is not None}
        # Declared names, set in the environment or not: a reference to one is a secret use.
        self.declared = frozenset(declared) | frozenset(self._values)
        self._needles = sorted({v for v in self._values.values() if v}, key=len, reverse=True)
        self._each = {name: _pattern(variants(value)) for name, value in self._values.items() if value}
        self._all = _pattern(form for value in self._needles for form in variants(value))
        # Lower-cased forms for a quick "is any here at all?" test: most text holds none, and
        # substring tests cost far less than the case-insensitive pattern.
        self._lowered = tuple({form.lower() for value in self._needles for form in variants(value)})

    @classmethod
    def from_env(cls, names: Iterable[str] | Mapping[str, Scope], env: Mapping[str, str] | None = None) -> Secrets:
        """Read each named secret from ``env`` (default ``os.environ``); missing ones are
        simply unavailable (a job using one fails naming it). ``names`` may map each name to
        its scope (``Config.secrets``)."""
        scopes = names if isinstance(names, Mapping) else None
        env = os.environ if env is None else env
        names = list(names)
        values = {}
        for name in names:
            value = env.get(name)
            if value is None:
                continue
            if len(value) < MIN_SECRET_LENGTH:
                raise ValueError(f"secret {name} is shorter than {MIN_SECRET_LENGTH} characters")
            values[name] = value
        return cls(values, declared=names, scopes=scopes)

    def with_values(self, extra: Mapping[str, str | None]) -> Secrets:
        """These secrets plus ``extra`` (name -> value; None skipped), for redaction only."""
        return Secrets({**self._values, **{name: value for name, value in extra.items() if value}})

    @property
    def names(self) -> list[str]:
        return sorted(self._values)

    def referenced_by(self, name: str) -> str | None:
        """The secret a placeholder or condition variable ``name`` reads, if any:
        ``secrets.X`` always, a plain ``X`` when ``X`` is a declared secret."""
        if name.startswith("secrets."):
            return name.removeprefix("secrets.")
        return name if name in self.declared else None

    def check_use(self, names: Iterable[str], kind: str, host: str | None = None) -> None:
        """Refuse using the secrets ``names`` in a job of ``kind`` (sending them to ``host``)
        outside their declared scope; raises :class:`SecretScopeError` naming secret and target."""
        for name in sorted(names):
            scope = self._scopes.get(name)
            if scope is None:
                continue
            if scope.kinds is not None and kind not in scope.kinds:
                raise SecretScopeError(
                    f"secret {name} may not be used by a {kind} job (its kinds: {', '.join(scope.kinds) or 'none'})"
                )
            if host is not None and scope.hosts is not None and not any(host_matches(host, p) for p in scope.hosts):
                raise SecretScopeError(
                    f"secret {name} may not be sent to {host} (its hosts: {', '.join(scope.hosts) or 'none'})"
                )

    def get(self, name: str) -> str | None:
        return self._values.get(name)

    def redact_text(self, text: str) -> str:
        """``text`` with every variant of every secret replaced by ``***``; shorten only after this."""
        if self._all is None:
            return text
        if text.isascii():
            lowered = text.lower()
            if not any(form in lowered for form in self._lowered):
                return text
        return self._all.sub(REDACTED, text)

    def redact(self, value: Any) -> Any:
        """A copy of ``value`` (JSON-like) with every secret value replaced by ``***``."""
        if not self._needles:
            return value
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, dict):
            return {self.redact(k): self.redact(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact(item) for item in value]
        return value

    def contains_secret(self, value: Any) -> str | None:
        """The name of a secret whose value appears in ``value``, if any."""
        if not self._needles:
            return None
        redacted = self.redact(value)
        if redacted == value:
            return None
        text = repr(value)
        for name, pattern in self._each.items():
            if pattern is not None and pattern.search(text):
                return name
        return "?"

    def check_not_present(self, value: Any, where: str) -> None:
        """Refuse data that carries a secret's literal value (it would reach Postgres)."""
        name = self.contains_secret(value)
        if name is not None:
            raise SecretValueInArgsError(
                f"{where} contains the value of secret {name}; write {{{{{name}}}}} instead"
            )

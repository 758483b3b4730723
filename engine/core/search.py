"""The job search language (README, "Finding jobs"), parsed into a :class:`JobQuery`; pure, no I/O.

Terms are separated by spaces and combine with AND::

    id:123  kind:mail  queue:default  state:discarded,retryable  tag:billing  node:web-1
    definition:nightly-report  args.to:a@example.com  args.data.userId:7  error:"timed out"
    invoice 2026          (bare words: text anywhere in the args)

A value with spaces or a colon goes in double quotes (``error:"timed out"``,
``"https://example.com"``); inside quotes ``\\"`` and ``\\\\`` escape. A malformed query
raises :class:`SearchError` naming the term: never a silently empty result.

Example::

    query = parse_query('kind:mail args.to:a@example.com error:"timed out"')
    query.kind, query.args[0].documents()   # 'mail', [{'to': 'a@example.com'}]
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from engine.core.job import JobState

MAX_QUERY = 500
MAX_TERMS = 20
MAX_VALUE = 200
QUALIFIERS = ("id", "kind", "queue", "state", "tag", "node", "definition", "error", "args.PATH")
_SINGLE = ("kind", "queue", "node", "definition")
_PATH_SEGMENT = re.compile(r"^[^.\s\"]+$")
_NUMBER = re.compile(r"^-?(0|[1-9]\d{0,17})(\.\d+)?$")


class SearchError(ValueError):
    """A query the search language cannot read; the message names the term and the fix."""


@dataclass(frozen=True, slots=True)
class ArgsMatch:
    """``args.PATH:VALUE``: the args hold VALUE at PATH. An unquoted number, true, false or
    null also matches the same text stored as a string (``7`` or ``"7"``)."""

    path: tuple[str, ...]
    value: Any
    text: str | None = None  # the same value as a string, also matched (unquoted scalars)

    def documents(self) -> list[dict[str, Any]]:
        """The JSON documents the args may contain (``@>``), e.g. ``[{"data": {"userId": 7}},
        {"data": {"userId": "7"}}]``: one matching is enough."""
        values = [self.value] if self.text is None else [self.value, self.text]
        found = []
        for nested in values:
            for key in reversed(self.path):
                nested = {key: nested}
            found.append(nested)
        return found


@dataclass(frozen=True, slots=True)
class JobQuery:
    """A parsed search: every field that is set (or non-empty) must match."""

    id: int | None = None
    kind: str | None = None
    queue: str | None = None
    states: tuple[JobState, ...] = ()
    tags: tuple[str, ...] = ()
    node: str | None = None
    definition: str | None = None
    args: tuple[ArgsMatch, ...] = ()
    errors: tuple[str, ...] = ()
    words: tuple[str, ...] = ()
    source: str = field(default="", compare=False)

    @property
    def empty(self) -> bool:
        return self == JobQuery()

    @property
    def scanned(self) -> bool:
        """True when a term can only be checked row by row (error text, bare words, node,
        definition, tag): such a search reads a bounded number of the newest matching rows
        (for a tag, of the newest tagged ones)."""
        return bool(self.errors or self.words or self.tags or self.node is not None or self.definition is not None)

    @property
    def job_id(self) -> int | None:
        """The id when the query names one job and nothing else (the search box jumps to it)."""
        return self.id if self == JobQuery(id=self.id) else None

    def merged(self, **fields: Any) -> JobQuery:
        """This query AND the form filters (``states=``, ``queue=``, ``tags=``, ...); a single
        value the query already sets must agree, states must overlap, or SearchError."""
        changes: dict[str, Any] = {}
        for name, value in fields.items():
            current = getattr(self, name)
            if value is None:
                continue
            if name == "states":
                changes[name] = _both_states(current, value, f"state filter {','.join(value)}")
            elif isinstance(current, tuple):
                changes[name] = (*current, *value)
            elif current is not None and current != value:
                raise SearchError(f"{name}: the filter says {value!r} but the query says {current!r}")
            else:
                changes[name] = value
        return replace(self, **changes)


def _both_states(current: tuple[JobState, ...], more: tuple[JobState, ...], term: str) -> tuple[JobState, ...]:
    """The states both allow (AND of two state terms); SearchError when none."""
    if not current:
        return tuple(dict.fromkeys(more))
    both = tuple(state for state in current if state in more)
    if not both:
        raise SearchError(f"term {term!r}: no job is in one of {', '.join(current)} and in one of "
                          f"{', '.join(more)} at once")
    return both


def parse_query(text: str) -> JobQuery:
    """Parse a search; raises SearchError naming the bad term.

    Example::

        parse_query("state:discarded,retryable kind:mail").states
        # (JobState.DISCARDED, JobState.RETRYABLE)
    """
    if len(text) > MAX_QUERY:
        raise SearchError(f"query: at most {MAX_QUERY} characters (this one has {len(text)})")
    if "\x00" in text:
        raise SearchError("query: must not contain NUL characters")
    terms = _split(text)
    if len(terms) > MAX_TERMS:
        raise SearchError(f"query: at most {MAX_TERMS} terms (this one has {len(terms)})")
    fields: dict[str, Any] = {"states": (), "tags": (), "args": (), "errors": (), "words": ()}
    for raw, qualifier, value, quoted in terms:
        if qualifier is None:
            fields["words"] += (_bounded(raw, "word", value),)
        else:
            _apply(fields, raw, qualifier, value, quoted)
    return JobQuery(**fields, source=text.strip())


def _split(text: str) -> list[tuple[str, str | None, str, bool]]:
    """``[(raw term, qualifier or None, value, value was quoted)]``."""
    terms = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
        else:
            term, i = _read_term(text, i)
            terms.append(term)
    return terms


def _read_term(text: str, start: int) -> tuple[tuple[str, str | None, str, bool], int]:
    """The term that begins at ``start``, and where the next one may begin."""
    i, n = start, len(text)
    while i < n and not text[i].isspace() and text[i] not in ':"':
        i += 1
    qualifier = None
    if i < n and text[i] == ":":
        qualifier = text[start:i]
        i += 1
        if not qualifier:
            raise SearchError(f"term {_term(text, start)!r}: a qualifier goes before the colon (kind:mail)")
    else:
        i = start
    if i < n and text[i] == '"':
        value, i = _quoted(text, i, start)
        return (text[start:i], qualifier, value, True), i
    begin = i
    while i < n and not text[i].isspace():
        if text[i] == '"':
            raise SearchError(f"term {_term(text, start)!r}: a quote may only open a value "
                              '(write kind:"a b" or "two words")')
        i += 1
    value = text[begin:i]
    if qualifier is not None and value == "":
        raise SearchError(f"term {text[start:i]!r}: {qualifier} needs a value after the colon")
    return (text[start:i], qualifier, value, False), i


def _quoted(text: str, i: int, start: int) -> tuple[str, int]:
    chars: list[str] = []
    i += 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            chars.append(text[i + 1])
            i += 2
        elif char == '"':
            i += 1
            if i < len(text) and not text[i].isspace():
                raise SearchError(f"term {_term(text, start)!r}: put a space after the closing quote")
            return "".join(chars), i
        else:
            chars.append(char)
            i += 1
    raise SearchError(f"term {text[start:]!r}: the quote is never closed")


def _term(text: str, start: int) -> str:
    end = start
    while end < len(text) and not text[end].isspace():
        end += 1
    return text[start:end]


def _apply(fields: dict[str, Any], raw: str, qualifier: str, value: str, quoted: bool) -> None:
    if qualifier.startswith("args."):
        fields["args"] += (_args_match(raw, qualifier, value, quoted),)
    elif qualifier == "id":
        if not value.isdigit() or len(value) > 18 or int(value) == 0:
            raise SearchError(f"term {raw!r}: id must be a positive integer")
        _once(fields, raw, "id", int(value))
    elif qualifier == "state":
        fields["states"] = _both_states(fields["states"], tuple(_state(raw, name) for name in value.split(",")), raw)
    elif qualifier == "tag":
        fields["tags"] += (_bounded(raw, "tag", value),)
    elif qualifier == "error":
        fields["errors"] += (_bounded(raw, "error", value),)
    elif qualifier in _SINGLE:
        _once(fields, raw, qualifier, _bounded(raw, qualifier, value))
    else:
        guess = difflib.get_close_matches(qualifier, [*QUALIFIERS[:-1], "args"], n=1)
        hint = f"did you mean {guess[0]}:? " if guess else ""
        raise SearchError(f"term {raw!r}: unknown qualifier {qualifier!r}; {hint}use one of "
                          f"{', '.join(QUALIFIERS)}, or quote it to search the text")


def _once(fields: dict[str, Any], raw: str, name: str, value: Any) -> None:
    if fields.get(name) is not None and fields[name] != value:
        raise SearchError(f"term {raw!r}: {name} is given twice with different values (no job has both)")
    fields[name] = value


def _bounded(raw: str, name: str, value: str) -> str:
    if not value.strip():
        raise SearchError(f"term {raw!r}: {name} must not be empty")
    if len(value) > MAX_VALUE:
        raise SearchError(f"term {raw[:40]!r}...: {name} is at most {MAX_VALUE} characters")
    return value


def _state(raw: str, name: str) -> JobState:
    try:
        return JobState(name)
    except ValueError:
        raise SearchError(f"term {raw!r}: unknown state {name!r}; use one or more of "
                          f"{', '.join(s.value for s in JobState)}, separated by commas") from None


def _args_match(raw: str, qualifier: str, value: str, quoted: bool) -> ArgsMatch:
    path = tuple(qualifier.split(".")[1:])
    if not path or not all(_PATH_SEGMENT.match(key) for key in path):
        raise SearchError(f"term {raw!r}: args needs a path of keys joined by dots (args.to:, args.data.userId:)")
    if len(value) > MAX_VALUE:
        raise SearchError(f"term {raw[:40]!r}...: the args value is at most {MAX_VALUE} characters")
    if quoted or not (value in ("true", "false", "null") or _NUMBER.match(value)):
        return ArgsMatch(path, value)
    return ArgsMatch(path, json.loads(value), text=value)

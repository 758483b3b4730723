"""A small, safe evaluator for job conditions such as ``"{{serverLoad}} < 50"``.

Our own tokenizer and recursive-descent parser, never Python's ``eval`` or ``ast``:
comparisons (``< <= > >= == !=``), ``in`` / ``not in`` (lists, or substrings),
``and or not`` (also ``&& || !``), parentheses, numbers, quoted strings,
``true false null``, list literals ``[1, 2]``, and variables written ``{{name}}`` or
as bare dotted names. Nothing else: no calls, attributes, subscripts or arithmetic.

Variables are bound to typed values after parsing, so a value ``"0 or 1"`` is just a
string. Comparing a number with a string that is exactly a number (``"70"``, as
placeholders often carry) compares the numbers; ``<``-style comparisons of two such
strings compare them as numbers too. Any other mix of types (``"abc" < 50``) is an
error, never silently true or false.

Example::

    cond = parse_condition("{{serverLoad}} < 50")
    cond.evaluate({"serverLoad": 30})     # True
    cond.describe({"serverLoad": 70})     # 'condition not met: {{serverLoad}} < 50 (serverLoad=70)'
"""

from __future__ import annotations

import functools
import json
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.core.condition_syntax import MAX_LENGTH, MAX_NUMBER_LENGTH, ConditionSyntaxError, Parser, tokenize
from engine.core.outcomes import PermanentError

__all__ = ["Condition", "ConditionEvalError", "ConditionSyntaxError", "parse_condition"]

_ORDERINGS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_NUMERIC = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")

Lookup = Callable[[str], Any] | Mapping[str, Any]


class ConditionEvalError(PermanentError):
    """The condition cannot be decided: an unknown variable or mismatched types."""


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed condition. ``evaluate`` binds its variables, then decides.

    Example::

        cond = parse_condition("{{env}} == 'prod' and not {{paused}}")
        cond.variables                                  # {'env', 'paused'}
        cond.evaluate({"env": "prod", "paused": False})  # True
    """

    source: str
    tree: tuple[Any, ...]
    names: frozenset[str]

    @property
    def variables(self) -> set[str]:
        """The variable names the condition reads."""
        return set(self.names)

    def evaluate(self, lookup: Lookup) -> bool:
        """True or False; raises :class:`ConditionEvalError` for an unknown variable
        (all are bound first, so this does not depend on short-circuiting) or mismatched types."""
        values, unknown = _bind(self.names, lookup)
        if unknown:
            listed = ", ".join("{{" + name + "}}" for name in sorted(unknown))
            raise ConditionEvalError(f"condition {self.source!r}: unknown variable(s) {listed}")
        try:
            return _truth(self.tree, values)
        except ConditionEvalError as exc:
            raise ConditionEvalError(f"condition {self.source!r}: {exc}") from None

    def describe(self, lookup: Lookup | None = None, redact: Callable[[Any], Any] | None = None) -> str:
        """The cancel reason: ``condition not met: <source> (name=value, ...)``. Values
        are shown as JSON, shortened; ``redact`` scrubs each value before it is escaped or
        shortened (a cut or escaped secret would no longer match the redaction)."""
        if lookup is None or not self.names:
            return f"condition not met: {self.source}"
        values, unknown = _bind(self.names, lookup)
        scrub = redact or (lambda value: value)
        shown = [f"{name}={_brief(scrub(values[name])) if name not in unknown else '<unknown>'}"
                 for name in sorted(self.names)]
        return f"condition not met: {self.source} ({', '.join(shown)})"


def parse_condition(text: str) -> Condition:
    """Parse ``text``; raises :class:`ConditionSyntaxError` naming the position.

    Example::

        parse_condition("{{load}} < 50 && {{region}} in ['eu', 'us']")
    """
    if not isinstance(text, str):
        raise ConditionSyntaxError(f"a condition must be a string, not {type(text).__name__}", 0)
    if len(text) > MAX_LENGTH:
        # Refused before any scanning, so a huge expression costs nothing.
        raise ConditionSyntaxError(f"condition longer than {MAX_LENGTH} characters", MAX_LENGTH)
    return _parse_cached(text)


@functools.lru_cache(maxsize=512)
def _parse_cached(text: str) -> Condition:
    tokens = tokenize(text)
    if tokens[0].kind == "end":
        raise ConditionSyntaxError("empty condition", 0)
    tree = Parser(tokens).parse()
    names = frozenset(token.value for token in tokens if token.kind == "var")
    return Condition(text, tree, names)


def _bind(names: frozenset[str], lookup: Lookup) -> tuple[dict[str, Any], set[str]]:
    values: dict[str, Any] = {}
    unknown: set[str] = set()
    for name in names:
        try:
            values[name] = _lookup(lookup, name)
        except LookupError:
            unknown.add(name)
    return values, unknown


def _lookup(lookup: Lookup, name: str) -> Any:
    if not isinstance(lookup, Mapping):
        return lookup(name)
    if name in lookup:
        return lookup[name]
    node: Any = lookup
    for part in name.split("."):  # a plain dict: walk dotted names
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(name)
        node = node[part]
    return node


def _brief(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list | tuple) else "object"


def _as_number(value: Any) -> Any:
    """``value`` as a number when it is a string that is exactly one, else unchanged."""
    if isinstance(value, str) and len(value) <= MAX_NUMBER_LENGTH:
        text = value.strip()
        if _NUMERIC.fullmatch(text):
            return float(text) if "." in text else int(text)
    return value


def _as_bool(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


def _truth(node: tuple[Any, ...], values: dict[str, Any]) -> bool:
    value = _as_bool(_value(node, values))
    if not isinstance(value, bool):
        # Kinds only, never values: a value may be a secret.
        raise ConditionEvalError(f"a {_kind(value)} is used where true/false is needed")
    return value


def _value(node: tuple[Any, ...], values: dict[str, Any]) -> Any:
    tag = node[0]
    if tag == "lit":
        return node[1]
    if tag == "var":
        return values[node[1]]
    if tag == "list":
        return [_value(item, values) for item in node[1]]
    if tag == "not":
        return not _truth(node[1], values)
    if tag == "and":
        return all(_truth(item, values) for item in node[1])
    if tag == "or":
        return any(_truth(item, values) for item in node[1])
    return _compare(node[1], _value(node[2], values), _value(node[3], values))


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("in", "not in"):
        return _contains(left, right) == (op == "in")
    left, right = _coerce(left, right, ordering=op not in ("==", "!="))
    kinds = (_kind(left), _kind(right))
    if op in ("==", "!="):
        if "null" not in kinds and kinds[0] != kinds[1]:
            raise ConditionEvalError(f"cannot compare {kinds[0]} with {kinds[1]} using {op}")
        return bool(left == right) == (op == "==")
    if kinds not in (("number", "number"), ("string", "string")):
        raise ConditionEvalError(f"cannot order {kinds[0]} and {kinds[1]} using {op}")
    return bool(_ORDERINGS[op](left, right))


def _coerce(left: Any, right: Any, *, ordering: bool) -> tuple[Any, Any]:
    kinds = (_kind(left), _kind(right))
    if kinds == ("number", "string"):
        right = _as_number(right)
    elif kinds == ("string", "number"):
        left = _as_number(left)
    elif ordering and kinds == ("string", "string"):
        numbers = (_as_number(left), _as_number(right))
        if _kind(numbers[0]) == _kind(numbers[1]) == "number":
            left, right = numbers
    elif "boolean" in kinds:
        left, right = _as_bool(left), _as_bool(right)
    return left, right


def _contains(item: Any, container: Any) -> bool:
    if isinstance(container, str):
        if not isinstance(item, str):
            raise ConditionEvalError(f"cannot look for a {_kind(item)} in a string")
        return item in container
    if not isinstance(container, list | tuple):
        raise ConditionEvalError(f"'in' needs a list or a string on its right, not {_kind(container)}")
    for element in container:
        try:
            if _compare("==", item, element):
                return True
        except ConditionEvalError:
            continue  # an element of another type is simply not equal
    return False

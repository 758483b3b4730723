"""The syntax of job conditions: our own tokenizer and recursive-descent parser (never
Python's ``eval`` or ``ast``), producing the tree that :mod:`engine.core.conditions`
evaluates. The grammar is described there."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.core.outcomes import PermanentError

MAX_LENGTH = 2_000
MAX_DEPTH = 32
MAX_NUMBER_LENGTH = 32

_NAME = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*"
_TOKEN = re.compile(
    r"""(?P<space>\s+)
    |(?P<var>\{\{\s*(?P<varname>""" + _NAME + r""")\s*\}\})
    |(?P<num>-?(?:\d+(?:\.\d*)?|\.\d+)(?![A-Za-z0-9_.]))
    |(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    |(?P<name>""" + _NAME + r""")
    |(?P<op><=|>=|==|!=|<|>|&&|\|\||!|\(|\)|\[|\]|,)""",
    re.VERBOSE,
)
_WORDS = frozenset({"and", "or", "not", "in"})
_LITERALS = {"true": True, "false": False, "null": None}
_SYMBOLS = {"&&": "and", "||": "or", "!": "not"}
_COMPARISONS = frozenset({"<", "<=", ">", ">=", "==", "!="})
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}


class ConditionSyntaxError(PermanentError):
    """The condition text is not a valid expression; ``position`` is the 0-based offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"invalid condition: {message} at position {position}")
        self.position = position


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # lit | var | op | end
    value: Any
    pos: int


def tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            hint = " (use == to compare)" if text[pos] == "=" else ""
            raise ConditionSyntaxError(f"unexpected character {text[pos]!r}{hint}", pos)
        if match.lastgroup != "space":
            tokens.append(_token(match, pos))
        pos = match.end()
    tokens.append(_Token("end", None, len(text)))
    return tokens


def _token(match: re.Match[str], pos: int) -> _Token:
    kind, raw = match.lastgroup, match.group()
    if kind == "num":
        return _Token("lit", _number(raw, pos), pos)
    if kind == "str":
        return _Token("lit", _string(raw), pos)
    if kind == "var":
        return _Token("var", match.group("varname"), pos)
    if kind == "name":
        if raw in _LITERALS:
            return _Token("lit", _LITERALS[raw], pos)
        return _Token("op" if raw in _WORDS else "var", raw, pos)
    return _Token("op", _SYMBOLS.get(raw, raw), pos)


def _number(raw: str, pos: int) -> int | float:
    if len(raw) > MAX_NUMBER_LENGTH:
        raise ConditionSyntaxError(f"number longer than {MAX_NUMBER_LENGTH} characters", pos)
    return float(raw) if "." in raw else int(raw)


def _string(raw: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), raw[1:-1], flags=re.DOTALL)


class Parser:
    """expr := and (OR and)* ; and := not (AND not)* ; not := NOT not | cmp ;
    cmp := operand [(CMP | IN | NOT IN) operand] ; operand := lit | var | '(' expr ')' | list"""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, value: str) -> None:
        token = self.take()
        if token.kind != "op" or token.value != value:
            raise ConditionSyntaxError(f"expected {value!r}, found {_show(token)}", token.pos)

    def parse(self) -> tuple[Any, ...]:
        tree = self.expression()
        token = self.peek()
        if token.kind != "end":
            chained = token.kind == "op" and token.value in _COMPARISONS
            hint = " (join comparisons with and)" if chained else ""
            raise ConditionSyntaxError(f"unexpected {_show(token)}{hint}", token.pos)
        return tree

    def nested(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ConditionSyntaxError(f"nested deeper than {MAX_DEPTH} levels", pos)

    def expression(self) -> tuple[Any, ...]:
        return self.chain("or", self.conjunction)

    def conjunction(self) -> tuple[Any, ...]:
        return self.chain("and", self.negation)

    def chain(self, word: str, operand: Callable[[], tuple[Any, ...]]) -> tuple[Any, ...]:
        items = [operand()]
        while self.peek().kind == "op" and self.peek().value == word:
            self.take()
            items.append(operand())
        return items[0] if len(items) == 1 else (word, tuple(items))

    def negation(self) -> tuple[Any, ...]:
        token = self.peek()
        if token.kind == "op" and token.value == "not":
            self.take()
            self.nested(token.pos)
            inner = self.negation()
            self.depth -= 1
            return ("not", inner)
        return self.comparison()

    def comparison(self) -> tuple[Any, ...]:
        left = self.operand()
        token = self.peek()
        if token.kind != "op":
            return left
        if token.value in _COMPARISONS or token.value == "in":
            self.take()
            return ("cmp", token.value, left, self.operand())
        after = self.tokens[self.index + 1]
        if token.value == "not" and after.kind == "op" and after.value == "in":
            self.index += 2
            return ("cmp", "not in", left, self.operand())
        return left

    def operand(self) -> tuple[Any, ...]:
        token = self.take()
        if token.kind == "lit":
            return ("lit", token.value)
        if token.kind == "var":
            return ("var", token.value)
        if token.kind == "op" and token.value in ("(", "["):
            self.nested(token.pos)
            node = self.expression() if token.value == "(" else self.items()
            self.expect(")" if token.value == "(" else "]")
            self.depth -= 1
            return node
        raise ConditionSyntaxError(f"expected a value, found {_show(token)}", token.pos)

    def items(self) -> tuple[Any, ...]:
        elements: list[tuple[Any, ...]] = []
        while not (self.peek().kind == "op" and self.peek().value == "]"):
            if elements:
                self.expect(",")
            elements.append(self.operand())
        return ("list", tuple(elements))


def _show(token: _Token) -> str:
    if token.kind == "end":
        return "end of condition"
    if token.kind == "var":
        return f"name {token.value!r}"
    return repr(token.value) if token.kind == "op" else "a value"

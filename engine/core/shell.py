"""Placeholders in ssh commands: every substituted value becomes exactly one quoted shell
word (``render_shell``), refused where quoting cannot protect it. See docs/job-documents.md
("ssh") for the rule and the shells it assumes."""

from __future__ import annotations

import re
import shlex
import unicodedata
from collections.abc import Mapping
from typing import Any

from engine.core.outcomes import PermanentError
from engine.core.shell_words import placeholder_roles
from engine.core.templating import PLACEHOLDER, UnresolvedPlaceholderError, placeholders_in


class UnsafeShellValueError(PermanentError):
    """A placeholder in a shell command cannot be substituted safely: its value is not a
    single plain word, or it sits where quoting cannot protect it. The message names the
    placeholder, never the value (it may be a secret)."""


_WORD_BREAK = frozenset(" \t\n;&|()<>")
# A placeholder right after one of these continues the word before it (``-p{{pass}}``),
# so a leading dash in its value cannot turn it into an option.
_WORD_GLUE = frozenset("_/.:=@%+,-")
_UNSUPPORTED_DOLLAR = {"{": "${...}", "[": "$[...]", "'": "$'...'"}
_CASE = re.compile(r"case(?![A-Za-z0-9_])")
# What bash may evaluate safely as an arithmetic operand or a variable name.
_PLAIN = re.compile(r"-?[0-9]+|[A-Za-z_][A-Za-z0-9_]*")
# Words that find, test and [ read as operators: a value that is one of them, standing as a
# whole word, would change the expression (find {{dir}} -delete with dir = "!").
_OPERATOR_WORDS = frozenset({"!", "(", ")", ",", ";", "+", "{}", "{", "}", "[", "]", "[[", "]]",
                             "=", "==", "!=", "=~", "<", ">", "&&", "||"})


class _ShellContext:
    """Follows a POSIX shell command far enough to know whether a placeholder sits
    unquoted, inside '...' or inside "..." (also within ``$(...)``). Constructs it does
    not model (backquotes, ``${...}``, ``$((...))``, ``$'...'``, here-documents, ``case``)
    make every later placeholder refused rather than guessed at."""

    def __init__(self) -> None:
        self.stack = ["plain"]  # plain | sub | single | double | comment
        self.unsupported: str | None = None
        self.escaped = False
        self.prev = " "

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text) and self.unsupported is None:
            i = self._step(text, i)

    def _step(self, text: str, i: int) -> int:
        char, state = text[i], self.stack[-1]
        if self.escaped:
            self.escaped = False
        elif state in ("single", "comment"):
            if char == ("'" if state == "single" else "\n"):
                self.stack.pop()
        elif char == "\\":
            self.escaped = True
        elif char == "$":
            return self._dollar(text, i)
        elif char == "`":
            self.unsupported = "a backquote"
        elif state != "double":
            return self._plain(text, i)
        elif char == '"':
            self.stack.pop()
        self.prev = char
        return i + 1

    def _dollar(self, text: str, i: int) -> int:
        ahead = text[i + 1 : i + 3]
        if ahead.startswith("(("):
            self.unsupported = "$((...))"
        elif ahead.startswith("("):
            self.stack.append("sub")
        elif ahead[:1] in _UNSUPPORTED_DOLLAR:
            self.unsupported = _UNSUPPORTED_DOLLAR[ahead[:1]]
        elif ahead.startswith('"') and self.stack[-1] != "double":
            self.stack.append("double")
        else:
            self.prev = "$"
            return i + 1
        self.prev = ahead[:1]
        return i + 2

    def _plain(self, text: str, i: int) -> int:
        char, at_word_start = text[i], self.prev in _WORD_BREAK
        if char == "'":
            self.stack.append("single")
        elif char == '"':
            self.stack.append("double")
        elif char == "(":
            self.stack.append("sub")
        elif char == ")" and self.stack[-1] == "sub":
            self.stack.pop()
        elif char == "#" and at_word_start:
            self.stack.append("comment")
        elif text.startswith("<<<", i):
            self.prev = "<"
            return i + 3
        elif text.startswith("<<", i):
            self.unsupported = "a here-document"
        elif at_word_start and _CASE.match(text, i):
            # A case pattern's unmatched ")" would throw the $(...) tracking off.
            self.unsupported = "a case statement"
        self.prev = char
        return i + 1

    def wrap(self, name: str, quoted: str) -> str:
        """``quoted`` (a shlex-quoted word) made to read as that word in the current context."""
        where = "{{" + name + "}}"
        if self.unsupported:
            raise UnsafeShellValueError(
                f"placeholder {where} comes after {self.unsupported} in the command, "
                "where its value cannot be quoted safely; move it before, or into a plain argument"
            )
        state = self.stack[-1]
        if self.escaped or (state != "single" and self.prev == "$"):
            raise UnsafeShellValueError(f"placeholder {where} directly follows a backslash or $")
        self.prev = "a"  # the substituted word continues: a following '#' is not a comment
        if state == "single":
            return "'" + quoted + "'"  # close the operator's quote, add the word, reopen
        if state == "double":
            return '"' + quoted + '"'
        return quoted


def _shell_word(name: str, value: Any, *, dash_ok: bool) -> str:
    where = "{{" + name + "}}"
    if isinstance(value, bool):
        word = "true" if value else "false"
    elif isinstance(value, int | float):
        word = str(value)
    elif isinstance(value, str):
        word = value
    else:
        kind = "null" if value is None else type(value).__name__
        raise UnsafeShellValueError(f"placeholder {where} in the command is {kind}, not a string or number")
    if any(unicodedata.category(char) == "Cc" for char in word):
        raise UnsafeShellValueError(f"placeholder {where} has a control character (NUL, newline, ...)")
    if word.startswith("-") and not dash_ok:
        raise UnsafeShellValueError(f"placeholder {where} starts with '-' (it would read as an option)")
    return word


def _check_role(name: str, word: str, arithmetic: str | None, whole_word: bool) -> None:
    where = "{{" + name + "}}"
    if arithmetic and not _PLAIN.fullmatch(word):
        raise UnsafeShellValueError(
            f"placeholder {where} is in {arithmetic}, which bash evaluates whatever the quoting: "
            "its value must be a plain number or name"
        )
    if whole_word and word in _OPERATOR_WORDS:
        raise UnsafeShellValueError(
            f"placeholder {where} stands where an operand is expected, and its value would read "
            "as an operator (such as ! or ( to find and test)"
        )


def render_shell(template: str, scope: Mapping[str, Any], *, allow_leading_dash: bool = False) -> str:
    """``template`` (an operator-written shell command) with each placeholder replaced by
    its value as exactly one shell-quoted word, whatever the value contains.

    Values must be strings, numbers or booleans without control characters; a value
    starting with ``-`` is refused where it would start a word (an option), unless
    ``allow_leading_dash``. Raises :class:`UnsafeShellValueError` or
    :class:`UnresolvedPlaceholderError`.

    Example::

        render_shell("./restart.sh {{id}}", Scope({"id": "1; touch /tmp/x"}))
        # "./restart.sh '1; touch /tmp/x'"
    """
    missing = {name for name in placeholders_in(template) if name not in scope}
    if missing:
        raise UnresolvedPlaceholderError(missing)
    context = _ShellContext()
    roles = placeholder_roles(template)
    out: list[str] = []
    pos = 0
    for index, match in enumerate(PLACEHOLDER.finditer(template)):
        text = template[pos : match.start()]
        context.feed(text)
        out.append(text)
        name, before = match.group(1), template[match.start() - 1 : match.start()]
        glued = before.isalnum() or (before != "" and before in _WORD_GLUE)
        word = _shell_word(name, scope[name], dash_ok=allow_leading_dash or glued)
        _check_role(name, word, roles[index].arithmetic, roles[index].whole_word)
        out.append(context.wrap(name, shlex.quote(word)))
        pos = match.end()
    out.append(template[pos:])
    return "".join(out)

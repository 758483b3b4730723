"""Where each placeholder of an ssh command template sits, word by word: in a bash arithmetic
or variable-name context (``[[ x -gt {{n}} ]]``, ``(( ))``, ``let``, ``declare -i``,
``[[ -v ]]``, ``printf -v``, ``read``, an array subscript), or alone as a whole word.

Quoting cannot protect a value there: bash evaluates an arithmetic operand or a variable
name such as ``a[$(id)]`` itself, subscript and command substitution included, however the
word was quoted. So ``render_shell`` lets only a plain number or name into those places.

Example::

    roles = placeholder_roles("[[ $x -gt {{n}} ]] && rm {{file}}")
    roles[0].arithmetic    # 'a [[ ... ]] arithmetic comparison'
    roles[1].whole_word    # True
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.core.templating import PLACEHOLDER

_SENTINEL = "\ue000"  # stands for one placeholder while the template is split into words
_ARITH_TESTS = frozenset({"-eq", "-ne", "-lt", "-le", "-gt", "-ge"})
_NAME_TESTS = frozenset({"-v", "-R"})
_TESTS = frozenset({"[[", "[", "test"})
_DECLARES = frozenset({"declare", "typeset", "local", "readonly", "export"})
# Builtins whose every operand is a variable name (or, for let, an arithmetic expression).
_NAME_OPERANDS = frozenset({"let", "read", "unset", "mapfile", "readarray"})
_RESERVED = frozenset({"if", "then", "else", "elif", "do", "while", "until", "!", "{", "}", "time",
                       "fi", "done", "exec", "command", "builtin"})
# Commands that run an argument as shell code: a value there is code, whatever the quoting.
_SHELLS = frozenset({"sh", "bash", "dash", "ash", "ksh", "zsh", "su"})
_WRAPPERS = frozenset({"sudo", "nohup", "nice", "env", "xargs", "timeout", "stdbuf", "setsid"})
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(\[[^=]*\])?\+?=")
_COMMAND_BREAK = frozenset(";&|\n")


@dataclass(slots=True)
class Role:
    """What a placeholder is to bash: ``arithmetic`` names the context that evaluates it
    (None: an ordinary word); ``whole_word``: the placeholder is a word on its own."""

    arithmetic: str | None = None
    whole_word: bool = False


@dataclass(slots=True)
class _Word:
    text: str = ""                                        # quotes removed, sentinels kept
    marks: list[int] = field(default_factory=list)        # placeholder numbers, in order
    quoted: bool = False


def placeholder_roles(template: str) -> list[Role]:
    """The role of each placeholder of ``template``, in order of appearance."""
    parts: list[str] = []
    pos = 0
    for match in PLACEHOLDER.finditer(template):
        parts.append(template[pos : match.start()].replace(_SENTINEL, " "))
        parts.append(_SENTINEL)
        pos = match.end()
    parts.append(template[pos:].replace(_SENTINEL, " "))
    splitter = _Splitter("".join(parts), sum(part == _SENTINEL for part in parts))
    splitter.run()
    return splitter.roles


class _Splitter:
    """Splits the text into simple commands and their words (quotes removed), following
    ``'...'``, ``"..."``, backslashes and ``$(...)`` nesting, and judges each command."""

    def __init__(self, text: str, count: int) -> None:
        self.text = text
        self.roles = [Role() for _ in range(count)]
        self.seen = 0
        self.integers: set[str] = set()                   # names declared -i so far
        self.stack: list[tuple[list[_Word], _Word, str]] = []  # outer commands of $( ... )
        self.words: list[_Word] = []
        self.word = _Word()
        self.in_test = False                              # inside [[ ... ]]: && and ( are its own
        self.quote = ""

    def run(self) -> None:
        i, self.quote = 0, ""  # the open quote: "'", '"' or none
        while i < len(self.text):
            i = self._step(i)
        self._end_command()
        while self.stack:
            self.words, self.word, _ = self.stack.pop()
            self._end_command()

    def _step(self, i: int) -> int:
        """Consume the text at ``i``; returns where to continue."""
        text, char, quote = self.text, self.text[i], self.quote
        if char == _SENTINEL:
            self.word.marks.append(self.seen)
            self.seen += 1
        elif quote == "'":
            self.quote = "" if char == "'" else quote
            char = "" if char == "'" else char
        elif char == "\\" and text[i + 1 : i + 2] not in ("", _SENTINEL):
            self.word.text += text[i + 1]
            self.word.quoted = True
            return i + 2
        elif char == "$" and text.startswith("(", i + 1):
            return self._substitution(i)
        elif char == ")" and self.stack and not quote:
            self._end_command()
            self.words, self.word, self.quote = self.stack.pop()
            char = "x"  # the substitution's output: an ordinary word part
        elif quote == '"':
            self.quote = "" if char == '"' else quote
            char = "" if char == '"' else char
        else:
            return self._plain(i)
        self.word.text += char
        return i + 1

    def _substitution(self, i: int) -> int:
        if self.text.startswith("((", i + 1):
            return self._arithmetic(i + 3, "$((...))")
        self.stack.append((self.words, self.word, self.quote))
        self.words, self.word, self.quote = [], _Word(), ""
        return i + 2

    def _plain(self, i: int) -> int:
        char = self.text[i]
        if char in "'\"":
            self.quote = char
            self.word.quoted = True
        elif char in " \t":
            self._end_word()
        elif char == "(" and self.text.startswith("((", i) and not self.word.text and self._at_command_start():
            return self._arithmetic(i + 2, "(( ... ))")
        elif (char in _COMMAND_BREAK or char in "()") and not self.in_test:
            self._end_command()
        else:
            self.word.text += char
        return i + 1

    def _at_command_start(self) -> bool:
        """True when the words so far are only reserved words (``if``, ``!``, ``for`` ...)."""
        return all(word.text in _RESERVED or word.text == "for" for word in self.words)

    def _arithmetic(self, i: int, where: str) -> int:
        """Every placeholder up to the matching ``))`` is arithmetic; returns the offset after it."""
        depth = 0
        while i < len(self.text):
            char = self.text[i]
            if char == _SENTINEL:
                self.roles[self.seen].arithmetic = where
                self.seen += 1
            elif char == "(":
                depth += 1
            elif char == ")":
                if depth == 0 and self.text.startswith("))", i):
                    return i + 2
                depth -= 1
            i += 1
        return i

    def _end_word(self) -> None:
        if self.word.text or self.word.quoted:
            if self.word.text == "[[" and not self.word.quoted and self._at_command_start():
                self.in_test = True
            elif self.word.text == "]]" and not self.word.quoted:
                self.in_test = False
            self.words.append(self.word)
        self.word = _Word()

    def _end_command(self) -> None:
        self._end_word()
        words, self.words, self.in_test = self.words, [], False
        for word in words:
            if word.text == _SENTINEL:
                self.roles[word.marks[0]].whole_word = True
        start = 0
        while start < len(words) and (words[start].text in _RESERVED or _ASSIGNMENT.match(words[start].text)):
            self._assignment(words[start])
            start += 1
        if start < len(words) and _SENTINEL not in words[start].text:
            self._judge(words[start].text, words[start + 1 :])

    def _assignment(self, word: _Word) -> None:
        """``a[{{i}}]=x`` evaluates the subscript; ``n={{v}}`` after ``declare -i n`` the value."""
        match = _ASSIGNMENT.match(word.text)
        if not match:
            return
        name, subscript = match.group(1), match.group(2)
        if name in self.integers:
            self._mark(word, f"an assignment to integer variable {name}")
        elif subscript:
            self._mark(word, "an array subscript", upto=match.end())

    @staticmethod
    def _unwrap(command: str, args: list[_Word]) -> tuple[str, list[_Word]]:
        """``sudo sh -c '...'``, ``timeout 5 bash -c '...'``: the wrapped command and its args."""
        while command.rsplit("/", 1)[-1] in _WRAPPERS and args:
            skip = next((i for i, w in enumerate(args) if not w.text.startswith("-")
                         and not w.text.replace(".", "").isdigit() and "=" not in w.text), len(args))
            if skip >= len(args) or _SENTINEL in args[skip].text:
                return "", []
            command, args = args[skip].text, args[skip + 1 :]
        return command, args

    def _judge(self, command: str, args: list[_Word]) -> None:
        command, args = self._unwrap(command, args)
        base = command.rsplit("/", 1)[-1]
        if base in ("eval", "ssh") or (base in _SHELLS and any(w.text.startswith("-") and "c" in w.text
                                                               for w in args)):
            for word in args:
                self._mark(word, f"code that {base} runs as a shell command")
        elif command in _TESTS:
            self._judge_test(command, args)
        elif command in _NAME_OPERANDS:
            for word in args:
                self._mark(word, f"a {command} operand (a variable name or arithmetic)")
        elif command in _DECLARES:
            self._judge_declare(command, args)
        elif command == "printf":
            for index, word in enumerate(args[:-1]):
                if word.text == "-v":
                    self._mark(args[index + 1], "a printf -v variable name")

    def _judge_test(self, command: str, args: list[_Word]) -> None:
        for index, word in enumerate(args):
            if word.text in _ARITH_TESTS:
                for near in args[max(index - 1, 0) : index + 2 : 2]:
                    self._mark(near, f"a {command} ... arithmetic comparison ({word.text})")
            elif word.text in _NAME_TESTS and index + 1 < len(args):
                self._mark(args[index + 1], f"a {command} {word.text} variable name")

    def _judge_declare(self, command: str, args: list[_Word]) -> None:
        options = "".join(w.text for w in args if w.text.startswith(("-", "+")))
        for word in args:
            if word.text.startswith(("-", "+")):
                continue
            name = _ASSIGNMENT.match(word.text)
            if "i" in options:
                self.integers.add(name.group(1) if name else word.text)
                self._mark(word, f"{command} {options} (integer)")
            else:
                self._mark(word, f"a {command} variable name", upto=name.end() if name else None)

    def _mark(self, word: _Word, where: str, upto: int | None = None) -> None:
        text = word.text if upto is None else word.text[:upto]
        for mark in word.marks[: text.count(_SENTINEL)]:
            self.roles[mark].arithmetic = where

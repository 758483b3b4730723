"""Read a Dockerfile and .dockerignore the way ``docker build`` does, and replay a build
stage's steps on this machine (no Docker engine here).

Replay rules: ENV values that are absolute paths, WORKDIR and COPY destinations move under
a scratch root; COPY takes files from the repository after .dockerignore; RUN runs under
``sh -c`` with the stage's environment. So ``RUN python -m venv "$VIRTUAL_ENV"`` builds
``<root>/opt/jobengine``, and ``pip install .`` installs what the image would install.

Example::

    stages = parse_dockerfile(Path("Dockerfile").read_text())
    env = replay_stage(stages[0], context=REPO, root=tmp_path / "root")
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

FLAG = re.compile(r"^--([a-z-]+)(?:=(\S*))?\s*")
VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True, slots=True)
class Instruction:
    """One instruction: ``COPY --from=build /a /b`` -> command COPY, flags {"from": "build"}, rest."""

    command: str
    rest: str
    flags: dict[str, str] = field(default_factory=dict)

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, None for shell form."""
        text = self.rest.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        return value if isinstance(value, list) else None


@dataclass(slots=True)
class Stage:
    """``FROM base AS name`` and the instructions up to the next FROM."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, command: str) -> list[Instruction]:
        return [i for i in self.instructions if i.command == command]

    def last(self, command: str) -> Instruction | None:
        found = self.all(command)
        return found[-1] if found else None


def logical_lines(text: str) -> list[str]:
    """Instructions with continuation lines joined and comment lines dropped."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append((current + stripped).strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults (before the first FROM) and the stages, with ARGs in FROM expanded."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        command, _, rest = line.partition(" ")
        command = command.upper()
        flags: dict[str, str] = {}
        while match := FLAG.match(rest):
            flags[match.group(1)] = match.group(2) or ""
            rest = rest[match.end():]
        if command == "FROM":
            words = expand(rest, args).split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif not stages and command == "ARG":
            key, _, default = rest.partition("=")
            args[key.strip()] = default.strip()
        elif stages:
            stages[-1].instructions.append(Instruction(command, rest.strip(), flags))
    return args, stages


def expand(text: str, env: dict[str, str]) -> str:
    """Substitute ``$VAR``, ``${VAR}`` and ``${VAR:-default}`` as Dockerfile ENV/ARG do."""
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        value = env.get(name, "")
        return value if value or match.group(2) is None else match.group(2)

    return VARIABLE.sub(substitute, text)


def env_pairs(instruction: Instruction, env: dict[str, str]) -> dict[str, str]:
    """The variables one ``ENV a=1 b="two words"`` sets, expanded against ``env``."""
    pairs: dict[str, str] = {}
    for word in shlex.split(instruction.rest):
        key, _, value = word.partition("=")
        pairs[key] = expand(value, {**env, **pairs})
    return pairs


class DockerIgnore:
    """``.dockerignore`` semantics: last matching pattern wins, ``!`` re-includes, a pattern
    matching a directory excludes everything below it, ``**`` spans directories."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip().lstrip("/"))
            self.rules.append((include, re.compile(_glob_regex(pattern))))

    def excluded(self, path: str) -> bool:
        """Whether the context path (relative, ``/``-separated) is left out of the build."""
        parts = path.strip("/").split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        excluded = False
        for include, regex in self.rules:
            if any(regex.fullmatch(candidate) for candidate in candidates):
                excluded = not include
        return excluded


def _glob_regex(pattern: str) -> str:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out.append(pattern[i:end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def context_files(context: Path, source: str, ignore: DockerIgnore) -> list[Path]:
    """Files under ``source`` (relative to the context) that survive .dockerignore."""
    base = context / source
    candidates = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
    return [p for p in candidates if not ignore.excluded(p.relative_to(context).as_posix())]


class Replay:
    """Replays one stage: ``Replay(context, root).run(stage)`` returns the final environment."""

    def __init__(self, context: Path, root: Path, *, env: dict[str, str], keep_env: dict[str, str]) -> None:
        self.context = context
        self.root = root
        self.env = dict(env)
        self.keep_env = keep_env  # applied after every ENV: the test's deliberate deviations
        self.workdir = root
        ignore_file = context / ".dockerignore"
        self.ignore = DockerIgnore(ignore_file.read_text() if ignore_file.exists() else "")

    def inside(self, path: str) -> Path:
        return self.root / path.lstrip("/") if path.startswith("/") else self.workdir / path

    def run(self, stage: Stage) -> dict[str, str]:
        for instruction in stage.instructions:
            handler = getattr(self, f"do_{instruction.command.lower()}", None)
            if handler is not None:
                handler(instruction)
        return self.env

    def do_env(self, instruction: Instruction) -> None:
        for key, value in env_pairs(instruction, self.env).items():
            is_path = value.startswith("/") and ":" not in value
            self.env[key] = str(self.inside(value)) if is_path and key not in self.keep_env else value
        self.env.update(self.keep_env)

    def do_workdir(self, instruction: Instruction) -> None:
        self.workdir = self.inside(expand(instruction.rest, self.env))
        self.workdir.mkdir(parents=True, exist_ok=True)

    def do_copy(self, instruction: Instruction) -> None:
        if "from" in instruction.flags:
            raise ValueError("COPY --from is not replayed; replay the stage it copies from instead")
        *sources, dest = instruction.exec_form() or shlex.split(instruction.rest)
        target = self.inside(expand(dest, self.env))
        for source in sources:
            for file in context_files(self.context, source, self.ignore):
                base = self.context / source
                relative = file.relative_to(base) if base.is_dir() else Path(file.name)
                destination = target / relative if dest.endswith("/") or base.is_dir() else target
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, destination)

    def do_run(self, instruction: Instruction) -> None:
        command = instruction.exec_form() or ["sh", "-c", instruction.rest]
        done = subprocess.run(command, cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise AssertionError(f"RUN {instruction.rest!r} failed ({done.returncode}):\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")

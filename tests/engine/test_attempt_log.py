"""A command's output cut into attempt log lines as it arrives (engine/core/attempt_log.py)."""

from __future__ import annotations

from engine.core.attempt_log import MAX_LINE_CHARS, MAX_LINES, MAX_PARTIAL_BYTES, AttemptLog, OutputLines
from engine.core.secrets import Secrets

SECRET = "sekrit-value-1234"


def fed(*chunks: bytes) -> list[str]:
    log = AttemptLog(1, 1, Secrets.from_env(["S"], {"S": SECRET}))
    lines = OutputLines(log, "stdout")
    for chunk in chunks:
        lines.feed(chunk)
    lines.close()
    return [line.split(" ", 1)[1] for line in log.take()]


def test_lines_are_joined_across_chunks_and_an_unfinished_last_line_is_kept() -> None:
    assert fed(b"one\ntw", b"o\r\n", b"", b"\nthr", "ee \u2603".encode()[:-1], "\u2603".encode()[-1:]) == [
        "stdout one", "stdout two", "stdout ", "stdout three \u2603"]


def test_a_line_longer_than_the_hold_is_cut_and_its_rest_dropped_up_to_its_newline() -> None:
    head = f"token {SECRET} ".encode()
    lines = fed(head + b"x" * MAX_PARTIAL_BYTES, b"x" * MAX_PARTIAL_BYTES, b"still the long line\nnext\n")
    assert len(lines) == 2 and lines[1] == "stdout next"
    assert lines[0].startswith("stdout token *** xxx") and SECRET not in lines[0]
    assert len(lines[0]) == MAX_LINE_CHARS - len("00:00:00 ")


def test_a_flood_of_lines_in_one_chunk_keeps_the_last_ones() -> None:
    lines = fed(b"".join(b"%d\n" % n for n in range(10 * MAX_LINES)))
    assert lines == [f"stdout {n}" for n in range(9 * MAX_LINES, 10 * MAX_LINES)]

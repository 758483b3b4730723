"""Under CI a missing tool fails its test instead of skipping it: a broken install must not
pass as a shorter run."""

from __future__ import annotations

import pytest

from tests.support.tools import require_tool


def test_a_missing_tool_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"no-such-tool-here not installed .*CI=true"):
        require_tool("no-such-tool-here", "nothing installs it")


def test_a_missing_tool_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-here not installed"):
        require_tool("no-such-tool-here", "nothing installs it")


def test_a_present_tool_is_found() -> None:
    assert require_tool("sh", "apt-get install dash").endswith("/sh")

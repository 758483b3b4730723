"""examples/aiohttp_app.py under a real aiohttp server: the engine in cleanup_ctx, an order and
its job committed together, or neither."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from engine.testing import wait_for_job
from examples.aiohttp_app import ENGINE, ORDERS, POOL, create_app


async def test_the_aiohttp_example_commits_an_order_with_its_job_or_neither(make_config) -> None:
    app = create_app(config=make_config(queues={"default": {"concurrency": 2}}))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/orders", json={"email": "a@example.com"}) as response:
                assert response.status == 200
                placed = await response.json()
            async with http.post(f"{base}/orders", json={"email": "b@example.com", "fail": True}) as response:
                assert response.status == 402
                failed = await response.json()
        engine = app[ENGINE]
        done = await wait_for_job(engine, placed["job_id"])
        assert done.state == "completed" and done.result == {"receipt_for": placed["order_id"]}
        assert await engine.get(failed["job_id"]) is None
        orders = [r["email"] for r in await app[POOL].fetch(f"SELECT email FROM {app[ORDERS]}")]
        assert orders == ["a@example.com"]
    finally:
        await runner.cleanup()

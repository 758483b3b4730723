"""examples/fastapi_app.py under a real uvicorn: the lifespan starts a processing engine, a route
enqueues, and the dashboard answers under /ops/jobs behind the app's own auth."""

from __future__ import annotations

import base64

import aiohttp

from engine.testing import wait_for_job
from examples.fastapi_app import create_app


async def test_the_fastapi_example_enqueues_runs_and_mounts_the_dashboard(make_config, run_asgi) -> None:
    app = create_app(make_config(queues={"default": {"concurrency": 2}}), password="pw")
    auth = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}
    async with run_asgi(app) as base, aiohttp.ClientSession() as http:
        async with http.post(f"{base}/signup", json={"email": "a@example.com"}) as response:
            assert response.status == 200
            job_id = (await response.json())["job_id"]
        done = await wait_for_job(app.state.engine, job_id)
        assert done.state == "completed" and done.result == {"welcomed": "a@example.com"}

        async with http.get(f"{base}/ops/jobs/") as response:
            assert response.status == 401  # the app's auth comes first
        async with http.get(f"{base}/ops/jobs/", headers=auth) as response:
            page = await response.text()
            assert response.status == 200 and "Content-Security-Policy" in response.headers
        assert 'href="/ops/jobs/jobs' in page and 'href="/jobs' not in page
        assert 'src="/ops/jobs/static/' in page or 'href="/ops/jobs/static/' in page
        async with http.get(f"{base}/ops/jobs/jobs/{job_id}", headers=auth) as response:
            assert response.status == 200 and "a@example.com" in await response.text()

        async with http.post(f"{base}/ops/jobs/jobs/{job_id}/retry", headers=auth, allow_redirects=False,
                             data={"next": f"/jobs/{job_id}"}) as response:
            assert response.status == 303
            assert response.headers["Location"].startswith(f"/ops/jobs/jobs/{job_id}?")
        async with http.post(f"{base}/ops/jobs/jobs/{job_id}/cancel", allow_redirects=False,
                             headers={**auth, "Sec-Fetch-Site": "cross-site"}) as response:
            assert response.status == 403
        await wait_for_job(app.state.engine, job_id)  # the retried job ran again

"""Dashboard pages over plain HTTP: cron entries and their actions, bulk actions from the
job list, paging, logout."""

from __future__ import annotations

import re

from engine.cli.cron import cron_store
from engine.cron.schedule import CronEntry
from tests.web.conftest import Dashboard, login


async def test_cron_page_lists_next_runs_and_acts_on_entries(dashboard: Dashboard, http) -> None:
    await cron_store(dashboard.engine).add(CronEntry("daily-stats", "0 1 * * *", "Asia/Seoul",
                                                     {"jobType": "scripted", "data": {"action": "ok"}}))
    csrf = await login(http, dashboard.url)
    async with http.get(dashboard.url + "/cron") as response:
        page = await response.text()
    assert "daily-stats" in page and "0 1 * * *" in page and "Asia/Seoul" in page
    assert re.search(r"\d{4}-\d\d-\d\d 01:00:00", page), "next run in the entry's own timezone"
    async with http.post(dashboard.url + "/cron/daily-stats/disable", data={"csrf_token": csrf, "next": "/cron"}) as r:
        assert r.status == 200 and "Disabled the cron entry." in await r.text()
    assert not [e for e in await cron_store(dashboard.engine).list() if e.enabled]
    async with http.post(dashboard.url + "/cron/daily-stats/run", data={"csrf_token": csrf}) as response:
        assert "Inserted a job for the cron entry." in await response.text()
    jobs = await dashboard.engine.list_jobs(tag="cron:daily-stats")
    assert len(jobs) == 1 and jobs[0].kind == "scripted"


async def test_bulk_actions_from_the_job_list(dashboard: Dashboard, http) -> None:
    jobs = [await dashboard.engine.enqueue("scripted", {"n": n}, delay=3600, tags=["b"]) for n in range(4)]
    csrf = await login(http, dashboard.url)
    form = [("csrf_token", csrf), ("action", "delete"), ("next", "/jobs?tag=b"),
            ("id", str(jobs[0].id)), ("id", str(jobs[1].id))]
    async with http.post(dashboard.url + "/jobs/bulk", data=form) as response:
        assert "Deleted 2 job(s)." in await response.text()
    form = [("csrf_token", csrf), ("action", "run"), ("scope", "filter"), ("tag", "b"), ("state", "scheduled")]
    async with http.post(dashboard.url + "/jobs/bulk", data=form) as response:
        assert "Made 2 job(s) due now." in await response.text()
    assert [await dashboard.engine.get(job.id) for job in jobs[:2]] == [None, None]


async def test_job_list_pages_forward_and_back(dashboard: Dashboard, http) -> None:
    await dashboard.engine.pause("default")
    ids = [(await dashboard.engine.enqueue("scripted", {"n": n}, tags=["p"])).id for n in range(5)]
    await login(http, dashboard.url)
    seen, target = [], "/jobs?tag=p&limit=2"
    while target:
        async with http.get(dashboard.url + target) as response:
            page = await response.text()
        seen += [int(i) for i in re.findall(r'data-job-id="(\d+)"', page)]
        found = re.search(r'href="([^"]+)" rel="next"', page)
        target = found.group(1).replace("&amp;", "&") if found else ""
    assert seen == sorted(ids, reverse=True)
    prev = re.search(r'href="([^"]+)" rel="prev"', page)
    assert prev, "the last page links back"
    async with http.get(dashboard.url + prev.group(1).replace("&amp;", "&")) as response:
        back = [int(i) for i in re.findall(r'data-job-id="(\d+)"', await response.text())]
    assert back == sorted(ids, reverse=True)[2:4]


async def test_logout_ends_the_session(dashboard: Dashboard, http) -> None:
    csrf = await login(http, dashboard.url)
    async with http.post(dashboard.url + "/logout", data={"csrf_token": csrf}) as response:
        assert response.status == 401 and 'action="/login"' in await response.text()
    async with http.get(dashboard.url + "/api/queues") as response:
        assert response.status == 401

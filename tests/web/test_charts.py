"""History charts: the rollup read back through GET /api/charts (counts, failure rate,
percentiles from the histograms) and drawn by uPlot on the overview in real Chromium."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.async_api import expect

from engine.db import sql
from engine.web.charts import percentile
from tests.support.waiting import wait_until
from tests.web.conftest import Dashboard
from tests.web.test_dashboard_e2e import _log_in


async def _history(dashboard: Dashboard) -> None:
    """Ten minutes of finished mail jobs (a failure in each), rolled up."""
    store = dashboard.engine.store
    assert store is not None
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    async with store.pool.acquire() as conn:
        await conn.execute(
            f"INSERT INTO {sql.quote_ident(store.schema)}.jobs (queue, kind, state, attempt, scheduled_at, "
            "attempted_at, completed_at, discarded_at) "
            "SELECT 'mail', 'mail', CASE WHEN i % 4 = 0 THEN 'discarded' ELSE 'completed' END, 1, "
            "f - make_interval(secs => 0.3 + i * 0.01), f - interval '0.15 seconds', "
            "CASE WHEN i % 4 <> 0 THEN f END, CASE WHEN i % 4 = 0 THEN f END "
            "FROM generate_series(1, 40) AS i, LATERAL (SELECT $1::timestamptz - make_interval(mins => i % 10 + 2) "
            "+ interval '5 seconds' AS f) AS x", now)
        # The engine's rollup may already be past these back-dated minutes: let it see them.
        await conn.execute(f"UPDATE {sql.quote_ident(store.schema)}.job_rollup_state "
                           "SET rolled_until = $1::timestamptz - interval '1 hour'", now)

    async def rolled() -> bool:  # by this call, or by the engine's own rollup meanwhile
        done = await store.rollup_finished(now)
        return done is not None and not done.behind and ("mail", "mail") in await store.rollup_names()

    await wait_until(rolled, what="the history rolled up")


def test_a_percentile_is_the_upper_bound_of_its_bucket() -> None:
    bounds = sql.ROLLUP_BUCKET_BOUNDS_MS
    histogram = [0] * (len(bounds) + 1)
    histogram[bounds.index(100)] = 90   # 50-100 ms
    histogram[bounds.index(1000)] = 9   # 500-1000 ms
    histogram[len(bounds)] = 1          # an hour or more
    assert percentile(histogram, 0.5) == 100 and percentile(histogram, 0.95) == 1000
    assert percentile(histogram, 0.999) == bounds[-1] and percentile([0] * len(histogram), 0.5) is None


async def test_the_api_serves_counts_rates_and_percentiles(dashboard: Dashboard, http: Any) -> None:
    await _history(dashboard)
    async with http.get(f"{dashboard.url}/api/charts", params={"range": "1h", "queue": "mail"},
                        headers=dashboard.auth) as response:
        assert response.status == 200
        data = await response.json()
    series = data["series"]
    assert len(series["t"]) == 60 and data["step_seconds"] == 60 and data["queues"] == ["mail"]
    assert sum(n or 0 for n in series["completed"]) == 30 and sum(n or 0 for n in series["failed"]) == 10
    assert series["completed"][-1] is None  # the current minute is not rolled up yet: no data, not zero
    rates = [rate for rate in series["failure_rate"] if rate is not None]
    assert sorted(rates) == [0.0] * 5 + [50.0] * 5  # odd minutes hold no i % 4 == 0, even ones two of four
    assert {p for p in series["run_p50"] if p is not None} == {200.0}  # 150 ms runs: the 100-200 ms bucket
    assert {p for p in series["wait_p99"] if p is not None} <= {500.0, 1000.0}  # waits of 160-550 ms
    async with http.get(f"{dashboard.url}/api/charts", params={"range": "7d"}, headers=dashboard.auth) as response:
        assert len((await response.json())["series"]["t"]) == 84
    async with http.get(f"{dashboard.url}/api/charts", params={"range": "2w"}, headers=dashboard.auth) as response:
        assert response.status == 400 and "range: must be one of 1h, 24h, 7d" in (await response.json())["error"]


async def test_the_overview_draws_the_charts_with_data_points(dashboard: Dashboard, page: Any) -> None:
    await _history(dashboard)
    await _log_in(page, dashboard)
    throughput = page.locator('[data-chart="throughput"]')
    await expect(throughput).to_have_attribute("data-points", "60")
    await expect(page.locator(".chart-box canvas")).to_have_count(4)
    await expect(page.locator('#chart-controls select[name=queue] option[value="mail"]')).to_have_count(1)
    legend = throughput.locator(".u-legend")
    await expect(legend).to_contain_text("completed")
    drawn = await page.evaluate("window.__jobengineCharts.drawn")
    await page.click('[data-range="24h"]')
    await expect(throughput).to_have_attribute("data-points", "96")
    await wait_until(lambda: page.evaluate(f"window.__jobengineCharts.drawn > {drawn}"))
    # The data reached the plot: uPlot's own copy of the throughput series sums to the rollup.
    total = await page.evaluate("window.__jobengineCharts.plots.throughput.data[1].reduce((a, b) => a + b, 0)")
    assert total == 30


async def test_a_chart_is_read_again_once_the_rollup_moves_on(dashboard: Dashboard, http: Any) -> None:
    """Charts are kept while the rollup's mark stands (rows before it are final); a mark that
    moves on brings the minutes it rolled up into the next read."""
    await _history(dashboard)
    store = dashboard.engine.store
    assert store is not None

    async def completed() -> int:
        async with http.get(f"{dashboard.url}/api/charts", params={"range": "1h", "queue": "mail"},
                            headers=dashboard.auth) as response:
            return sum(n or 0 for n in (await response.json())["series"]["completed"])

    assert await completed() == 30
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    async with store.pool.acquire() as conn:
        await conn.execute(
            f"INSERT INTO {sql.quote_ident(store.schema)}.jobs (queue, kind, state, attempt, scheduled_at, "
            "attempted_at, completed_at) SELECT 'mail', 'mail', 'completed', 1, $1::timestamptz, $1::timestamptz, "
            "$1::timestamptz + interval '1 second' FROM generate_series(1, 5)", now)
    await store.rollup_finished(now + timedelta(minutes=1))
    assert await completed() == 35

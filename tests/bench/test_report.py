"""bench/report.py renders whatever a run measured: a workload left out (``--workloads limit``
runs no engine at all) shows as ``-``, never as a crash."""

from __future__ import annotations

from typing import Any

from bench.report import render, table
from bench.run import median

LIMIT = {"rate": 51_443.0, "batch": 32, "clients": 4, "pg_cpu_per_1k": 0.027,
         "runs": [{"clients": 4, "rate": 51_443.0, "pg_cpu_per_1k": 0.027}],
         "sql_floor": {"rate": 21_766.0, "pg_cpu_per_1k": 0.047, "batch": 32},
         "latency_floor": {"p50": 1.25, "p95": 1.9, "p99": 2.4}}


def _results(engines: dict[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"server": "test", "machine": "test", "args": {"jobs": 20_000, "concurrency": 32,
                                                          "finished_rows": 1_000_000},
            "engines": engines, **extra}


def test_limit_only_run_renders_with_every_engine_figure_missing() -> None:
    # What `bench.run --engines jobengine --workloads limit` leaves: no worker ever ran.
    results = _results({"jobengine": {"peak_rss": None, "worker": "jobengine, concurrency 32"}}, limit=LIMIT)
    text = render(results)
    assert "51,443 jobs/s" in text
    assert "| worker peak RSS, MB" in text
    rss_row = next(line for line in text.splitlines() if line.startswith("| worker peak RSS"))
    assert rss_row.rstrip(" |").endswith("-")
    assert "jobengine:  of the limit" not in text


def test_ratio_column_is_a_dash_where_one_engine_lacks_the_figure() -> None:
    results = _results({
        "jobengine": {"drain": {"rate": 18_000.0, "enqueue_rate": 30_000.0}, "peak_rss": 75.0},
        "pgqueuer": {"drain": {"rate": 6_000.0, "enqueue_rate": 60_000.0},
                     "latency": {"p50": 3.0, "p95": 4.0, "p99": 5.0}, "peak_rss": None},
    })
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in table(results).splitlines()[2:]}
    assert rows["drain 20,000 @ concurrency 32, jobs/s"] == ["18,000", "6,000", "3.00x"]
    assert rows["bulk enqueue, jobs/s"] == ["30,000", "60,000", "0.50x"]
    assert rows["enqueue->start p50, ms"] == ["-", "3.00", "-"]
    assert rows["worker peak RSS, MB"] == ["75", "-", "-"]


def test_the_drains_bulk_enqueue_is_its_own_median_not_the_median_drains() -> None:
    runs = [{"rate": 2_800.0, "enqueue_rate": 18_900.0}, {"rate": 2_900.0, "enqueue_rate": 15_400.0},
            {"rate": 2_500.0, "enqueue_rate": 9_700.0}]
    chosen = median(runs, "rate", also=("enqueue_rate",))
    assert chosen["rate"] == 2_800.0 and chosen["runs"] == [2_800.0, 2_900.0, 2_500.0]
    assert chosen["enqueue_rate"] == 15_400.0 and chosen["enqueue_rate_runs"] == [18_900.0, 15_400.0, 9_700.0]

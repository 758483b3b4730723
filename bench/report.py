"""Formats one run's results: the main table, ratios against pgqueuer, the targets of
issues 2 and 9 (pass/fail), and the offered-vs-completed curve.

Example::

    print(render(results))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Getter = Callable[[dict[str, Any]], float | None]


def _get(*path: str) -> Getter:
    def get(engine: dict[str, Any]) -> float | None:
        value: Any = engine
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        # a workload that did not run leaves its figure out or None (peak_rss with no worker)
        return None if value is None else float(value)

    return get


# (label, getter, format, higher is better)
ROWS: list[tuple[str, Getter, str, bool]] = [
    ("bulk enqueue, jobs/s", _get("drain", "enqueue_rate"), "{:,.0f}", True),
    ("drain {jobs:,} @ concurrency {concurrency}, jobs/s", _get("drain", "rate"), "{:,.0f}", True),
    ("same drain, {finished_rows:,} finished rows in the table", _get("aged", "rate"), "{:,.0f}", True),
    ("  (paired drain of the empty table, jobs/s)", _get("aged", "empty_rate"), "{:,.0f}", True),
    ("  CPU per job with them vs the paired empty drain", _get("aged", "cost_change"), "{:+.1%}", False),
    ("enqueue->start p50, ms", _get("latency", "p50"), "{:.2f}", False),
    ("enqueue->start p95, ms", _get("latency", "p95"), "{:.2f}", False),
    ("enqueue->start p99, ms", _get("latency", "p99"), "{:.2f}", False),
    ("steady produce+consume, jobs/s", _get("steady", "rate"), "{:,.0f}", True),
    ("  (offered by the producer, jobs/s)", _get("steady", "offered"), "{:,.0f}", True),
    ("worker CPU s / 1k jobs (drain)", _get("drain", "cpu_per_1k"), "{:.3f}", False),
    ("Postgres CPU s / 1k jobs (drain)", _get("drain", "pg_cpu_per_1k"), "{:.3f}", False),
    ("worker CPU s / 1k jobs (steady)", _get("steady", "cpu_per_1k"), "{:.3f}", False),
    ("worker peak RSS, MB", _get("peak_rss"), "{:.0f}", False),
]


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def table(results: dict[str, Any]) -> str:
    engines = list(results["engines"])
    ref = results["engines"].get("pgqueuer")
    head = ["metric", *engines] + (["jobengine/pgqueuer"] if ref and "jobengine" in engines else [])
    lines = [head]
    for template, get, fmt, higher in ROWS:
        label = template.format(**results.get("args", {})) if "{" in template else template
        values = [get(results["engines"][e]) for e in engines]
        row = [label, *(_cell(v, fmt) for v in values)]
        if len(head) > len(row):
            mine, theirs = get(results["engines"]["jobengine"]), get(ref)  # type: ignore[arg-type]
            relative = "%" in fmt  # a change in percent: no ratio between engines
            ratio = (mine / theirs if higher else theirs / mine) if mine and theirs and not relative else None
            row.append("-" if ratio is None else f"{ratio:.2f}x")
        lines.append(row)
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]

    def render_row(row: list[str]) -> str:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "| " + " | ".join(cells) + " |"

    out = [render_row(r) for r in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each target of issue 9 that this run measured."""
    engines = results["engines"]
    je, pq = engines.get("jobengine", {}), engines.get("pgqueuer", {})
    checks: list[tuple[str, str, bool | None]] = []

    def ratio(key: str, sub: str, need: float, label: str) -> None:
        mine, theirs = _get(key, sub)(je), _get(key, sub)(pq)
        if mine and theirs:
            checks.append((label, f"{mine / theirs:.2f}x", mine / theirs >= need))

    ratio("drain", "rate", 5, "drain >= 5x pgqueuer")
    ratio("drain", "enqueue_rate", 1, "bulk enqueue >= pgqueuer")
    ratio("steady", "rate", 3, "steady state >= 3x pgqueuer")
    if "latency" in je:
        checks.append(("p50 <= 2 ms", f"{je['latency']['p50']:.2f} ms", je["latency"]["p50"] <= 2))
        checks.append(("p99 <= 10 ms", f"{je['latency']['p99']:.2f} ms", je["latency"]["p99"] <= 10))
    if "aged" in je:
        change = je["aged"]["change"]
        rows = results.get("args", {}).get("finished_rows", 0)
        checks.append((f"{rows:,} finished rows within 10% of empty", f"{change:+.1%}", change >= -0.10))
        if "cost_change" in je["aged"]:
            cost = je["aged"]["cost_change"]
            checks.append((f"CPU per job with {rows:,} finished rows within 10% of empty", f"{cost:+.1%}",
                           cost <= 0.10))
    limit = results.get("limit")
    if limit and "drain" in je:
        share = je["drain"]["rate"] / limit["rate"]
        checks.append(("drain >= 60% of the pgbench claim+complete limit", f"{share:.0%}", share >= 0.6))
    return checks


def curve_table(results: dict[str, Any]) -> str:
    lines = []
    for name, engine in results["engines"].items():
        points = list(engine.get("curve") or [])
        if not points:
            continue
        if "steady" in engine:
            points.append({"target": None, **engine["steady"]})
        lines.append(f"{name}:  offered -> completed jobs/s (backlog at end)")
        for p in points:
            target = "unbounded" if p["target"] is None else f"{p['target']:,}"
            lines.append(f"  target {target:>9}: offered {p['offered']:>9,.0f} -> completed {p['rate']:>9,.0f}"
                         f"  (backlog {p['backlog']:,})")
    return "\n".join(lines)


def cpu_budget(results: dict[str, Any]) -> list[str]:
    """Per engine: worker + Postgres CPU per drained job, the cores the drain kept busy, and the
    rate that CPU cost would allow if every core were busy: a drain below that waits (round
    trips, commits, wake-ups), one near it is bound by the CPU it spends per job."""
    cores = results.get("cores") or 2
    lines = []
    for name, engine in results["engines"].items():
        drain = engine.get("drain") or {}
        if not {"rate", "cpu_per_1k", "pg_cpu_per_1k"} <= drain.keys():
            continue
        per_job = (drain["cpu_per_1k"] + drain["pg_cpu_per_1k"]) / 1000
        lines.append(f"  {name}: {per_job * 1e6:.0f} us ({drain['cpu_per_1k'] * 1e3:.0f} worker + "
                     f"{drain['pg_cpu_per_1k'] * 1e3:.0f} Postgres), {drain['rate'] * per_job:.2f} of {cores} "
                     f"cores busy; at {cores} busy cores that cost allows {cores / per_job:,.0f} jobs/s")
    return lines


def render(results: dict[str, Any]) -> str:
    parts = [f"Postgres: {results['server']}", f"Machine: {results['machine']}", "", table(results)]
    limit = results.get("limit")
    if limit:
        limit_cpu = f", Postgres CPU {limit['pg_cpu_per_1k']:.3f} s / 1k jobs" if "pg_cpu_per_1k" in limit else ""
        parts += ["", f"pgbench claim+complete limit (batch {limit['batch']}, best of clients "
                      f"{[r['clients'] for r in limit['runs']]}): {limit['rate']:,.0f} jobs/s{limit_cpu}"]
        own = limit.get("sql_floor")
        if own:
            parts.append(f"jobengine's own claim+complete SQL, bare asyncpg loop (batch {own['batch']}): "
                         f"{own['rate']:,.0f} jobs/s ({own['rate'] / limit['rate']:.0%} of the limit), "
                         f"Postgres CPU {own['pg_cpu_per_1k']:.3f} s / 1k jobs")
        floor = limit.get("latency_floor")
        if floor:
            parts.append(f"latency floor (bare asyncpg listener, same sending): p50 {floor['p50']:.2f} ms, "
                         f"p95 {floor['p95']:.2f} ms, p99 {floor['p99']:.2f} ms")
        for name, engine in results["engines"].items():
            shares = [f"{key} {engine[key]['rate'] / limit['rate']:.0%}" for key in ("drain", "aged", "steady")
                      if key in engine]
            if own and name == "jobengine" and "drain" in engine:
                shares.append(f"drain {engine['drain']['rate'] / own['rate']:.0%} of its own SQL alone")
            if shares:
                parts.append(f"  {name}: " + ", ".join(shares) + " of the limit")
    budget = cpu_budget(results)
    if budget:
        parts += ["", "CPU per job in the drain (worker + Postgres) and the cores it kept busy:", *budget]
    checks = targets(results)
    if checks:
        parts += ["", "targets:"] + [f"  [{'PASS' if ok else 'FAIL'}] {label}: {got}" for label, got, ok in checks]
    curve = curve_table(results)
    if curve:
        parts += ["", curve]
    parts += ["", "workers: " + "; ".join(f"{n}: {e.get('worker', '?')}" for n, e in results["engines"].items())]
    return "\n".join(parts)

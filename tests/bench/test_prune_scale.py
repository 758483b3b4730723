"""bench/prune_scale.py's report: a claim over 100 ms during a prune is named with its time
from the prune's start, a lock mode that conflicts with the claim is called out, and the
sizes end with final / initial."""

from __future__ import annotations

from typing import Any

from bench.prune_scale import Phase, ratios, render


def _sizes(heap: int, pkey: int) -> dict[str, Any]:
    return {"rows": 1000, "heap": heap, "toast": 0, "indexes": {"jobs_pkey": pkey}, "indexes_total": pkey,
            "total": heap + pkey, "n_live_tup": 1000, "n_dead_tup": 0, "last_autovacuum": None,
            "autovacuum_count": 1, "last_autoanalyze": None}


def _phase(name: str, claims: list[tuple[float, float]], modes: dict[str, set[str]] | None = None) -> dict[str, Any]:
    phase = Phase(name, 1, start=100.0, end=110.0, claims=[(100.0 + at, d) for at, d in claims],
                  lock_modes=modes or {})
    return phase.summary()


def test_report_names_the_slow_claim_the_conflicting_lock_and_the_growth() -> None:
    initial, final = _sizes(8 << 20, 1 << 20), _sizes(9 << 20, 2 << 20)
    prune = _phase("prune", [(0.5, 0.004), (2.25, 0.180), (3.0, 0.006)],
                   {"pruner": {"jobs:RowExclusiveLock", "jobs:RowShareLock", "jobs_pkey:RowExclusiveLock"}})
    vacuum = _phase("vacuum", [(1.0, 0.003)], {"autovacuum": {"jobs:AccessExclusiveLock"}})
    results = {"rows": 1000, "initial_days": 10, "args": {"day_rows": 100, "rate": 200},
               "server": "test", "settings": {"autovacuum_naptime": "1s", "autovacuum_vacuum_cost_limit": "-1",
                                              "maintenance_work_mem": "64MB"},
               "machine": "test", "seconds": 60.0,
               "fill": {"seconds": 1.0, "rows_per_s": 1000, "vacuum_analyze_seconds": 0.1},
               "initial": initial, "final": final, "ratios": ratios(initial, final), "probe_jobs": 12,
               "days": [{"day": 1, "deleted": 100, "prune_seconds": 10.0, "prune_statements": 1,
                         "prune_statement_max_ms": 50.0, "sizes": final,
                         "autovacuum": {"done": True, "index_passes_seen": 1},
                         "phases": {"insert": _phase("insert", []), "prune": prune,
                                    "probe cleanup": _phase("probe cleanup", []), "vacuum": vacuum}}]}
    text = render(results)
    prune_row = next(line for line in text.splitlines() if line.startswith("| 1 ") and "RowShareLock" in line)
    assert "1 (worst 180.0 ms at +2.25 s)" in prune_row
    assert "locks conflicting with a claim held by the pruner or autovacuum: AccessExclusiveLock" in text
    assert prune["lock_modes_on_jobs"]["pruner"] == ["RowExclusiveLock", "RowShareLock"]
    pkey_row = next(line for line in text.splitlines() if line.startswith("| jobs_pkey"))
    assert [c.strip() for c in pkey_row.strip("|").split("|")] == ["jobs_pkey", "1.0", "2.0", "2.000", "-"]
    assert results["ratios"]["heap"] == 1.125

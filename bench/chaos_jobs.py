"""The job kind of the chaos soak (``bench/chaos.py``), imported by its engine processes
through ``modules = ["bench.chaos_jobs"]``.

``chaos.work`` is the ledger's handler (every start, finish and cancellation appended to
``$JOBENGINE_TEST_LEDGER``) with attempts enough to outlive the soak's faults: a job that is
rescued again and again must still complete, never be discarded for running out of tries.
"""

from __future__ import annotations

from engine.core.registry import Registry, default_registry
from tests.support import ledger

KIND = "chaos.work"
MAX_ATTEMPTS = 100


def register(registry: Registry) -> None:
    if KIND not in registry:
        registry.handler(KIND, max_attempts=MAX_ATTEMPTS)(ledger.work)


register(default_registry)

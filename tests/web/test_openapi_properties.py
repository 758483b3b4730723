"""Property-based calls (schemathesis) to every read-only operation of the live API: query
and path values generated from the document itself; each answer must be documented, never a
500, and match its schema. Writes are covered by tests/web/test_api.py, which calls every
operation once with meaningful values."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import pytest

from tests.web.conftest import Dashboard

# Optional: the proof is tests/web/test_api.py; without these libraries this test skips.
hypothesis = pytest.importorskip("hypothesis")
schemathesis = pytest.importorskip("schemathesis")

EXAMPLES = 5  # per operation: 16 GET operations in about 6 s on a shared machine
# Not positive_data_acceptance: the search language (q) and the audit log's since take text
# whose grammar JSON Schema cannot express, so a generated "valid" value may rightly be a
# documented 400 naming it.
CHECKS = [schemathesis.checks.not_a_server_error, schemathesis.checks.status_code_conformance,
          schemathesis.checks.content_type_conformance, schemathesis.checks.response_schema_conformance]


def _fuzz(document: dict[str, Any], url: str, headers: dict[str, str]) -> list[str]:
    """Run the examples in this (worker) thread; returns what failed, one line each."""
    # Only the reads (loading the writes' bodies would cost more than all the calls).
    reads = {**document, "paths": {path: {"get": ops["get"]} for path, ops in document["paths"].items()
                                   if "get" in ops}}
    schema = schemathesis.openapi.from_dict(reads)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                             suppress_health_check=list(hypothesis.HealthCheck),
                             phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
        @hypothesis.given(case=operation.as_strategy())
        def call(case: Any) -> None:
            case.call_and_validate(base_url=url, headers=headers, checks=CHECKS)

        try:
            call()
        except (Exception, BaseExceptionGroup) as exc:  # a failed check: collect them all, then fail once
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:600]}")
    return failures


@pytest.mark.timeout(60)
async def test_generated_reads_answer_as_documented(dashboard: Dashboard, http: Any) -> None:
    await dashboard.engine.enqueue("scripted", {"action": "ok", "to": "a@example.com"}, delay=3600)
    async with http.get(dashboard.url + "/api/openapi.json", headers=dashboard.auth) as response:
        document = await response.json()
    failures = await anyio.to_thread.run_sync(_fuzz, document, dashboard.url, dashboard.auth)
    assert not failures, "\n".join(failures)

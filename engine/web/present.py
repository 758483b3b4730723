"""Jobs as the dashboard and the API show them: JSON-able dicts, secrets redacted.

Everything that leaves the server passes :func:`job_summary` or :func:`job_detail`, both
of which run the result through ``Secrets.redact``: stored args only hold placeholders, but
results and errors could quote a secret a handler leaked, and redacting here is cheap.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.to_thread

from engine.core.job import JOB_OPTIONS, Job, JobState
from engine.core.secrets import Secrets

# Bull Board's grouping of the seven states, in display order.
GROUPS: dict[str, tuple[str, ...]] = {
    "waiting": ("scheduled", "available", "retryable"),
    "active": ("executing",),
    "completed": ("completed",),
    "failed": ("discarded", "cancelled"),
}
STATES: tuple[str, ...] = tuple(state for states in GROUPS.values() for state in states)
GROUP_OF = {state: group for group, states in GROUPS.items() for state in states}
assert set(STATES) == {s.value for s in JobState}

# Job document fields kept in meta by the inserter (engine.insert.inserter.Inserter._meta): meta key -> name.
_META_TO_DOCUMENT = JOB_OPTIONS.meta_to_document


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _last_error(job: Job) -> str | None:
    for entry in reversed(job.errors):
        if isinstance(entry, dict) and entry.get("error"):
            return str(entry["error"])
    return None


def job_summary(job: Job, secrets: Secrets) -> dict[str, Any]:
    """The fields a job list shows.

    Example::

        job_summary(job, secrets)["group"]    # 'failed' for a discarded job
    """
    data = {
        "id": job.id, "state": job.state, "group": GROUP_OF.get(job.state, job.state), "queue": job.queue,
        "kind": job.kind, "attempt": job.attempt, "max_attempts": job.max_attempts, "priority": job.priority,
        "tags": job.tags, "args": job.args, "error": _last_error(job),
        "scheduled_at": iso(job.scheduled_at), "inserted_at": iso(job.inserted_at),
        "attempted_at": iso(job.attempted_at), "completed_at": iso(job.completed_at),
    }
    return secrets.redact(data)  # type: ignore[no-any-return]


def job_document(job: Job) -> dict[str, Any]:
    """The job as a camelCase job document (docs/job-documents.md), as it would be enqueued again."""
    doc: dict[str, Any] = {"jobType": job.kind, "data": job.args, "queue": job.queue, "priority": job.priority,
                           "attempts": job.max_attempts}
    if job.timeout is not None:
        doc["timeout"] = round(job.timeout * 1000)
    if job.tags:
        doc["tags"] = job.tags
    for key, name in _META_TO_DOCUMENT.items():
        if job.meta.get(key) is not None:
            doc[name] = job.meta[key]
    return doc


def job_detail(job: Job, extra: dict[str, Any], children: list[dict[str, Any]], secrets: Secrets) -> dict[str, Any]:
    """Everything the detail page shows: document, result, attempts, chain, timeline."""
    data = job_summary(job, secrets)
    data.update(
        document=job_document(job), meta=job.meta, result=job.result, errors=job.errors,
        attempted_by=job.attempted_by, timeout=job.timeout, rescued=extra.get("rescued", 0),
        cancelled_at=iso(extra.get("cancelled_at")), discarded_at=iso(extra.get("discarded_at")),
        parent_id=job.parent_id, children=children, timeline=timeline(job, extra),
    )
    return secrets.redact(data)  # type: ignore[no-any-return]


def timeline(job: Job, extra: dict[str, Any]) -> list[dict[str, Any]]:
    """What happened to the job, oldest first: ``[{at, event, detail}]``."""
    events: list[tuple[str, str, str]] = []
    if job.inserted_at:
        events.append((job.inserted_at.isoformat(), "inserted", f"into {job.queue}"))
    if job.scheduled_at and job.inserted_at and job.scheduled_at > job.inserted_at:
        events.append((job.scheduled_at.isoformat(), "due", "scheduled time"))
    for entry in job.errors:
        if isinstance(entry, dict):
            detail = f"attempt {entry.get('attempt', '?')}: {entry.get('error', '')}"
            events.append((str(entry.get("at", "")), str(entry.get("kind", "error")), detail))
    if job.attempted_at:
        events.append((job.attempted_at.isoformat(), "attempt started", f"attempt {job.attempt}"
                       + (f" on {job.attempted_by}" if job.attempted_by else "")))
    for name, at in (("completed", job.completed_at), ("cancelled", extra.get("cancelled_at")),
                     ("discarded", extra.get("discarded_at"))):
        if at is not None:
            events.append((at.isoformat(), name, ""))
    return [{"at": at, "event": event, "detail": detail} for at, event, detail in sorted(events, key=_sort_key)]


def _sort_key(event: tuple[str, str, str]) -> datetime:
    try:
        parsed = datetime.fromisoformat(event[0])
    except ValueError:
        return datetime.max.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# A job page shows at most this much of each JSON block: indented JSON grows with the square of
# its depth (a 908 KB job once rendered as an 819 MB page), so the page never shows it all.
PRETTY_CAP = 64 * 1024
# Above this much compact JSON a job page indents its blocks in a worker thread, not on the
# event loop that also carries the engine's heartbeats.
OFF_LOOP_BYTES = 32 * 1024
_INDENTED = json.JSONEncoder(indent=2, ensure_ascii=False, default=str)


def pretty(value: Any, cap: int = PRETTY_CAP, whole_at: str = "") -> str:
    """JSON for a <pre> block (plain text: the template escapes it), at most ``cap`` characters.

    The indenting encoder yields the text piece by piece, so a huge value costs only the
    first ``cap`` characters of work, however deep it nests.
    """
    parts: list[str] = []
    size = 0
    try:
        for chunk in _INDENTED.iterencode(value):
            parts.append(chunk)
            size += len(chunk)
            if size > cap:
                break
        else:
            return "".join(parts)
    except RecursionError:
        return f"(nested too deeply to show here{'; download the whole job from ' + whole_at if whole_at else ''})"
    total = len(json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":")).encode())
    where = f", download the whole job from {whole_at}" if whole_at else ""
    return "".join(parts)[:cap] + f"\n… shown: the first {cap // 1024} KB of {total:,} bytes of JSON{where}"


def _compact_size(value: Any) -> int:
    try:
        return len(json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":")))
    except RecursionError:
        return OFF_LOOP_BYTES + 1


def _blocks(detail: dict[str, Any]) -> dict[str, str | None]:
    whole_at = f"/api/jobs/{detail['id']}"
    result = detail.get("result")
    return {"args": pretty(detail.get("args"), whole_at=whole_at),
            "result": None if result is None else pretty(result, whole_at=whole_at),
            "document": pretty(detail.get("document"), whole_at=whole_at)}


async def json_blocks(detail: dict[str, Any]) -> dict[str, str | None]:
    """A job's args, result and document as capped pretty JSON for its page, computed once
    per page (never recursively in the template); large jobs are indented off the loop.

    Example::

        (await json_blocks(job_detail(job, extra, children, secrets)))["args"]   # '{\n  "to": ...'
    """
    size = sum(_compact_size(detail.get(key)) for key in ("args", "result"))
    if size <= OFF_LOOP_BYTES:
        return _blocks(detail)
    return await anyio.to_thread.run_sync(_blocks, detail)


def clip(value: Any, cap: int = 16 * 1024) -> str:
    """Error text for a job page: at most ``cap`` characters of it."""
    text = "" if value is None else str(value)
    if len(text) <= cap:
        return text
    return text[:cap] + f"\n… shown: the first {cap // 1024} KB of {len(text):,} characters"


def age(seconds: float | None) -> str:
    """``95`` -> ``'1m 35s'``; None -> ``'-'``."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def since(value: str | datetime | None, now: datetime | None = None) -> str:
    """A timestamp as '3m 5s ago' / 'in 10s'."""
    if value is None:
        return "-"
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    delta = ((now or datetime.now(UTC)) - when).total_seconds()
    return f"{age(delta)} ago" if delta >= 0 else f"in {age(-delta)}"


def count_text(count: int, exact: bool) -> str:
    """``(1234, True)`` -> ``'1,234'``; an estimate -> ``'~1.2M'``."""
    if exact:
        return f"{count:,}"
    for suffix, size in (("M", 1_000_000), ("k", 1_000)):
        if count >= size:
            return f"~{count / size:.1f}{suffix}"
    return f"~{count}"

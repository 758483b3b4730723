"""What a caller may see: a viewer without ``can_view_args`` sees job args, results,
errors (which quote args), meta (follow-up documents carry args) and job documents'
payloads as ``hidden``, on every route that shows a job, and may not search the args.

Example::

    data = visible_job(principal, job_detail(job, extra, children, secrets))
"""

from __future__ import annotations

from typing import Any

from engine.web.actions import JobFilter
from engine.web.auth import AuthError, Principal

HIDDEN = "hidden"
# Job fields that can hold args or text derived from them.
_PAYLOAD_FIELDS = ("args", "result", "error", "errors", "meta", "attempt_logs")
# Document fields that describe where and how a job runs, never what it carries.
# Timeline events whose detail never quotes a job's data (error events quote the error text).
_PLAIN_EVENTS = frozenset({"inserted", "due", "attempt started"})
_DOCUMENT_SHAPE = frozenset({"jobType", "queue", "priority", "attempts", "timeout", "tags", "delay"})


def hide_document(document: dict[str, Any]) -> dict[str, Any]:
    """A job document (or a definition's) with everything but its shape hidden."""
    return {key: value if key in _DOCUMENT_SHAPE else HIDDEN for key, value in document.items()}


def visible_job(principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a job_summary or job_detail) as ``principal`` may see it."""
    if principal.sees_args:
        return data
    shown = {key: HIDDEN if key in _PAYLOAD_FIELDS and value not in (None, [], {}) else value
             for key, value in data.items()}
    if isinstance(data.get("document"), dict):
        shown["document"] = hide_document(data["document"])
    if isinstance(data.get("timeline"), list):
        shown["timeline"] = [{**event, "detail": HIDDEN} if event.get("event") not in _PLAIN_EVENTS
                             and event.get("detail") else event for event in data["timeline"]]
    return shown


def visible_jobs(principal: Principal, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [visible_job(principal, row) for row in rows]


def check_filter(principal: Principal, flt: JobFilter) -> None:
    """Searching the args would tell a viewer what they hold, one guess at a time."""
    if flt.q is not None and not principal.sees_args:
        raise AuthError(403, "search looks into job args, which this account may not view "
                             "(ask an admin for --can-view-args)")

"""Follow-up jobs written in the same transaction that finishes their parent: ``onSuccess``
on completion; ``onFailure`` and failure notifications on discard.

The rows travel on the parent's :class:`~engine.core.acks.Ack` and :meth:`JobStore.finish`
inserts them only when that ack applies, in its transaction: a parent is never completed
without its child (a child refused as it is built fails the parent's attempt instead), a
child never exists without its finished parent, and an ack applied twice (it cannot be:
acks are fenced by attempt and claim time) could not create two.

- A child records ``meta.parent_id``; ``meta.parent_result`` carries the parent's result,
  so ``{{result.X}}`` (or plain ``{{X}}``) in the child resolves to it when the child runs.
  The parent's ``vars`` pass down (the child's own win). Chains are as long as the nested
  documents (each child carries the rest of the chain in its own ``onSuccess``).
- Failure notifications (``failureNotification`` on the job, else ``failure_notification``
  in config) are ``mail`` and/or ``http`` jobs of their own, with their own retries, in the
  ``notifications`` queue (an outage of the mail server or webhook only backs that queue
  up; every processing engine runs it, see :func:`with_notification_queue`). The failure
  details go in as ``vars`` and are referenced by placeholders, so an error message that
  itself contains ``{{...}}`` is sent as text, never expanded. A notification never
  notifies about itself.

Example::

    await engine.enqueue_document({
        "jobType": "backup-database",
        "onSuccess": {"jobType": "notify-backup-complete", "data": {"backupFile": "{{result.backupFile}}"}},
        "failureNotification": {"email": "admin@example.com", "webhook": "https://hooks.example.com/x"},
    })
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import structlog

from engine.core.config import Config, ConfigError, QueueConfig
from engine.core.errors import EnqueueError
from engine.core.job import Job, JobSpec
from engine.db.rows import InsertRow
from engine.insert.flow import parse_child_document
from engine.insert.inserter import Inserter

__all__ = [
    "NOTIFICATION_META", "NOTIFICATION_QUEUE", "FollowupRefused", "Followups", "notification_settings",
    "with_notification_queue",
]

log = structlog.get_logger("jobengine.flow")
NOTIFICATION_META = "notification_for"
NOTIFICATION_QUEUE = "notifications"
# The notifications queue's per-node concurrency when config does not set one.
NOTIFICATION_CONCURRENCY = 5
NOTIFICATION_TAG = "failure-notification"
_NOTIFICATION_KEYS = frozenset({"email", "webhook", "queue"})


class FollowupRefused(Exception):
    """A completed job's ``onSuccess`` child can no longer be inserted (its document or its
    kind was valid at enqueue, then the registry changed): the parent must not complete
    without it, so its attempt fails instead, naming the child."""


def notification_settings(config: Config) -> dict[str, Any]:
    """``config.failure_notification`` checked: ``email`` and/or ``webhook`` (the default
    targets, both optional) and ``queue`` (default ``notifications``). Raises ConfigError
    naming the bad key."""
    raw = config.failure_notification or {}
    if not isinstance(raw, Mapping):
        raise ConfigError("'failure_notification': must be a table with email, webhook and/or queue")
    unknown = sorted(set(raw) - _NOTIFICATION_KEYS)
    if unknown:
        raise ConfigError(f"unknown key 'failure_notification.{unknown[0]}' (use email, webhook, queue)")
    for key in _NOTIFICATION_KEYS & set(raw):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise ConfigError(f"'failure_notification.{key}': must be a non-empty string")
    webhook = raw.get("webhook")
    if webhook is not None and not webhook.startswith(("http://", "https://")):
        raise ConfigError("'failure_notification.webhook': must be an http:// or https:// URL")
    return {"queue": NOTIFICATION_QUEUE, **raw}


def with_notification_queue(config: Config) -> Config:
    """``config`` with the notifications queue added when the engine processes jobs and
    config does not define that queue itself (``[queues.notifications]`` tunes it).

    Example::

        with_notification_queue(config).queues["notifications"].concurrency   # 5
    """
    name = notification_settings(config)["queue"]
    if not config.queues or name in config.queues:
        return config
    queues = {**config.queues, name: QueueConfig(concurrency=NOTIFICATION_CONCURRENCY)}
    return config.model_copy(update={"queues": queues})


class Followups:
    """Builds the insert rows that an ack carries.

    Example::

        rows = followups.on_completed(job, {"backupFile": "/backup/x.sql"})
    """

    def __init__(self, inserter: Inserter, config: Config) -> None:
        self.inserter = inserter
        self.config = config
        self.notifications = notification_settings(config)

    def on_completed(self, job: Job, result: Any) -> tuple[InsertRow, ...]:
        """The ``onSuccess`` child's row; raises :class:`FollowupRefused` when it cannot be built."""
        document = job.meta.get("on_success")
        if not document:
            return ()
        kind = document.get("jobType") if isinstance(document, dict) else None
        try:
            spec = self._child(job, parse_child_document(document), result)
            return (self.inserter.row(spec),)
        except ValueError as exc:  # EnqueueError too: validated at enqueue, so the registry changed since
            raise FollowupRefused(f"the onSuccess job {kind!r} was refused, so this job cannot complete "
                                  f"without it: {exc}") from exc

    def on_discarded(self, job: Job, error: dict[str, Any]) -> tuple[InsertRow, ...]:
        specs: list[JobSpec | None] = []
        document = job.meta.get("on_failure")
        if document:
            specs.append(self._from_document(job, document, {"error": error.get("error")}, "onFailure"))
        specs.extend(self._notifications(job, error))
        return self._rows(job, specs)

    def _from_document(self, job: Job, document: dict[str, Any], result: Any, field: str) -> JobSpec | None:
        try:
            spec = parse_child_document(document)
        except ValueError as exc:  # validated at enqueue: only a changed registry gets here
            log.error("follow-up document invalid", job_id=job.id, field=field, error=str(exc))
            return None
        return self._child(job, spec, result)

    @staticmethod
    def _child(job: Job, spec: JobSpec, result: Any) -> JobSpec:
        meta = {**spec.extra_meta, "parent_id": job.id, "parent_result": result}
        return replace(spec, extra_meta=meta, vars={**job.vars, **spec.vars})

    def _notifications(self, job: Job, error: dict[str, Any]) -> list[JobSpec]:
        if job.meta.get(NOTIFICATION_META) is not None:
            return []  # a notification never notifies about itself
        target = job.meta.get("failure_notification") or self.notifications
        if not target.get("email") and not target.get("webhook"):
            return []
        details = _failure_details(job, error)
        lines = [f"{key}: {value}" for key, value in details["job"].items()]
        lines += [f"error: {details['error']['message']}", f"at: {details['error']['at']}"]
        common = {"queue": self.notifications["queue"], "tags": (NOTIFICATION_TAG,),
                  "vars": {"failure": details, "failureText": "\n".join(lines)},
                  "extra_meta": {NOTIFICATION_META: job.id, "parent_id": job.id}}
        specs = []
        if target.get("email"):
            subject = f"[jobengine] job {job.id} ({job.kind}) failed"
            specs.append(JobSpec(kind="mail", args={"to": target["email"], "subject": subject,
                                                    "text": "{{failureText}}"}, **common))
        if target.get("webhook"):
            specs.append(JobSpec(kind="http", args={"method": "POST", "url": target["webhook"],
                                                    "body": "{{failure}}"}, **common))
        return specs

    def _rows(self, job: Job, specs: list[JobSpec | None]) -> tuple[InsertRow, ...]:
        rows = []
        for spec in specs:
            if spec is None:
                continue
            try:
                rows.append(self.inserter.row(spec))
            except EnqueueError as exc:
                log.error("follow-up job refused", job_id=job.id, kind=spec.kind, error=str(exc))
        return tuple(rows)


def _failure_details(job: Job, error: dict[str, Any]) -> dict[str, Any]:
    """The webhook's JSON body (and the email's text): the job and its last error.
    Arguments are left out: they can be large, and they are one click away in the dashboard."""
    return {
        "event": "job.discarded",
        "job": {"id": job.id, "kind": job.kind, "queue": job.queue, "attempt": job.attempt,
                "maxAttempts": job.max_attempts, "tags": list(job.tags), "parentId": job.parent_id},
        "error": {"message": error.get("error"), "kind": error.get("kind"), "at": error.get("at")},
    }

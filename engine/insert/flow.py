"""The flow-control part of building an insert row: a condition must parse, the
``onSuccess``/``onFailure`` documents must make valid jobs (so a chain fails at enqueue,
not when its parent finishes), and a job with ``dependsOn`` is made to wait.

The inserter passes its own row builder in (:data:`RowBuilder`), so this module needs
nothing of the inserter's and the inserter can call it without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.core.conditions import ConditionSyntaxError, parse_condition
from engine.core.documents import parse_document
from engine.core.errors import EnqueueError
from engine.core.job import JobSpec
from engine.core.secrets import Secrets
from engine.db.rows import InsertRow
from engine.insert.dependencies import make_waiting

RowBuilder = Callable[[JobSpec], InsertRow]


def parse_child_document(document: Any) -> JobSpec:
    """A follow-up's job document (``onSuccess``, ``onFailure``) as a JobSpec."""
    if not isinstance(document, Mapping):
        raise EnqueueError(f"must be a job document (an object), not {type(document).__name__}")
    return parse_document(document)


def check_flow(build_row: RowBuilder, spec: JobSpec, row: InsertRow, secrets: Secrets) -> None:
    """Check ``spec``'s condition and follow-up documents, and make ``row`` wait for its
    dependencies. Raises :class:`EnqueueError` naming the field."""
    if spec.condition is not None:
        try:
            condition = parse_condition(spec.condition)
        except ConditionSyntaxError as exc:
            raise EnqueueError(f"condition: {exc}") from None
        check_no_secret(condition.variables, secrets)
    for field, document in (("onSuccess", spec.on_success), ("onFailure", spec.on_failure)):
        if document is not None:
            try:
                build_row(parse_child_document(document))
            except (EnqueueError, ValueError) as exc:
                raise EnqueueError(f"{field}: {exc}") from None
    if spec.depends_on:
        make_waiting(spec, row)


def check_no_secret(variables: set[str], secrets: Secrets) -> None:
    """Refuse a condition that reads a secret: its outcome (ran or cancelled) and its
    cancel reason would tell the secret to anyone who can read the job."""
    for name in sorted(variables):
        secret = secrets.referenced_by(name)
        if secret is not None:
            raise EnqueueError(
                f"condition: uses secret {secret} ({{{{{name}}}}}); secrets cannot be used in conditions"
            )

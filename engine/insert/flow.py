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
from engine.db.rows import InsertRow
from engine.insert.dependencies import make_waiting

RowBuilder = Callable[[JobSpec], InsertRow]


def parse_child_document(document: Any) -> JobSpec:
    """A follow-up's job document (``onSuccess``, ``onFailure``) as a JobSpec."""
    if not isinstance(document, Mapping):
        raise EnqueueError(f"must be a job document (an object), not {type(document).__name__}")
    return parse_document(document)


def check_flow(build_row: RowBuilder, spec: JobSpec, row: InsertRow) -> None:
    """Check ``spec``'s condition and follow-up documents, and make ``row`` wait for its
    dependencies. Raises :class:`EnqueueError` naming the field."""
    if spec.condition is not None:
        try:
            parse_condition(spec.condition)
        except ConditionSyntaxError as exc:
            raise EnqueueError(f"condition: {exc}") from None
    for field, document in (("onSuccess", spec.on_success), ("onFailure", spec.on_failure)):
        if document is not None:
            try:
                build_row(parse_child_document(document))
            except (EnqueueError, ValueError) as exc:
                raise EnqueueError(f"{field}: {exc}") from None
    if spec.depends_on:
        make_waiting(spec, row)

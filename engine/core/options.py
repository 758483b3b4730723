"""The job options, declared once, on the fields of :class:`engine.core.job.JobSpec`.

An option is a JobSpec field whose ``dataclasses.field`` carries ``metadata=option(...)``:
its python name (the field's: also ``Engine.enqueue``'s keyword), its job-document name,
the ``jobs.meta`` key it is stored under (if it is), and its unit::

    delay: float | None = field(default=None, metadata=option("delay", ms=True))
    on_success: dict[str, Any] | None = field(default=None, metadata=option("onSuccess", meta="on_success"))

:class:`OptionTable` reads them back (``engine.core.job.JOB_OPTIONS``); derived from it:
the job-document parse and serialise (``engine.core.documents``), the inserter's meta
options, the dashboard's meta-to-document view and :meth:`JobSpec.from_options`.

Adding an option: the JobSpec field with its ``option(...)``; its validation in
``documents._Document`` (checked against the table at import); its keyword on
``Engine.enqueue`` (the public signature, kept explicit as documentation); and what
the engine does with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["JobOption", "OptionTable", "option"]

_KEY = "jobengine.option"


@dataclass(frozen=True, slots=True)
class _Declared:
    document: str
    meta: str | None
    ms: bool


def option(document: str, *, meta: str | None = None, ms: bool = False) -> Mapping[str, Any]:
    """The ``metadata`` of a JobSpec field that is a job option.

    ``document``: its camelCase name in job documents; ``meta``: the ``jobs.meta`` key it is
    stored under (None: not in meta: a column, or used at insert only); ``ms``: documents give
    milliseconds where python (JobSpec, ``Engine.enqueue``) gives seconds.
    """
    return {_KEY: _Declared(document, meta, ms)}


@dataclass(frozen=True, slots=True)
class JobOption:
    """One job option, as declared on its JobSpec field."""

    name: str  # the JobSpec field, and Engine.enqueue's keyword
    document: str  # the key in job documents (camelCase)
    meta: str | None  # the jobs.meta key it is stored under; None: not kept in meta
    ms: bool  # documents give milliseconds, JobSpec holds seconds
    collection: type[tuple[Any, ...]] | type[dict[str, Any]] | None  # tags, vars...: the field's type; else None

    def is_set(self, value: Any) -> bool:
        """Not None and, for a collection option (its default is empty), not empty."""
        return value is not None and (self.collection is None or bool(value))

    def coerce(self, value: Any) -> Any:
        """An enqueue keyword's value as the field holds it: a collection option takes any
        iterable (``tags=["a"]``) and None for empty; other values are kept as given."""
        if self.collection is None:
            return value
        return self.collection() if value is None else self.collection(value)


class OptionTable:
    """The options of a dataclass (JobSpec), in field order, and the views derived from them.

    Example::

        JOB_OPTIONS["delay"].ms                  # True
        JOB_OPTIONS.meta_to_document["on_success"]  # 'onSuccess'
    """

    def __init__(self, cls: type[Any]) -> None:
        rows = []
        for spec_field in dataclasses.fields(cls):
            declared = spec_field.metadata.get(_KEY)
            if declared is None:
                continue
            default: Any = (spec_field.default if spec_field.default_factory is dataclasses.MISSING
                            else spec_field.default_factory())
            collection = type(default) if isinstance(default, tuple | dict) else None
            if default is not None and collection is None:
                raise TypeError(f"job option {spec_field.name}: the default must be None, () or {{}}")
            rows.append(JobOption(spec_field.name, declared.document, declared.meta, declared.ms, collection))
        self.rows: tuple[JobOption, ...] = tuple(rows)
        self.by_name: Mapping[str, JobOption] = {o.name: o for o in rows}
        self.by_document: Mapping[str, JobOption] = {o.document: o for o in rows}
        # jobs.meta key -> document name, for every option kept in meta.
        self.meta_to_document: Mapping[str, str] = {o.meta: o.document for o in rows if o.meta is not None}
        # (name, meta key) of the options kept in meta whenever they are not None (the
        # collection ones, vars and depends_on, are kept only when not empty).
        self.optional_meta: tuple[tuple[str, str], ...] = tuple(
            (o.name, o.meta) for o in rows if o.meta is not None and o.collection is None
        )

    def __iter__(self) -> Iterator[JobOption]:
        return iter(self.rows)

    def __getitem__(self, name: str) -> JobOption:
        return self.by_name[name]

    def __len__(self) -> int:
        return len(self.rows)

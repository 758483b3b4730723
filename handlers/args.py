"""The args-model helpers the built-in handlers share: :class:`ArgsModel`, ``Templated[...]``
and the one run-time validation of a ``render_args=False`` kind.

Placeholders and validation: a job's args are validated when it is enqueued, while they
still hold ``{{placeholders}}``, and once more per attempt, after rendering, with the
validation context :data:`engine.core.registry.RENDERED_CONTEXT`. A field written
``Templated[int]`` therefore accepts, at enqueue, a string that contains a placeholder
(``"port": "{{sshPort}}"``), and with the rendered context checks the real type, refusing
a value that merely *looks* like a placeholder after rendering.

Who validates at run time: for a kind with ``render_args=True`` (mail, http, log) the
executor renders and validates, and the handler receives the model instance as
``job.args`` (:func:`args_of` narrows its type). The ssh kind renders its own command
(shell quoting), so it validates once itself, after rendering, with
:func:`validate_rendered`.

Example::

    class PingArgs(ArgsModel):
        port: Templated[int] = 80

    PingArgs.model_validate({"port": "{{port}}"})                            # enqueue: passes
    PingArgs.model_validate({"port": "{{x}}"}, context=RENDERED_CONTEXT)    # ValidationError
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from engine.core.context import HandlerContext
from engine.core.job import Job
from engine.core.outcomes import PermanentError
from engine.core.registry import RENDERED_CONTEXT, RENDERED_KEY
from engine.core.templating import Scope

__all__ = [
    "ArgsModel",
    "InvalidArgsError",
    "Templated",
    "args_of",
    "describe_validation_error",
    "has_placeholder",
    "validate_rendered",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}")


def check_secret_target(ctx: HandlerContext, kind: str, host: str) -> None:
    """Refuse sending the secrets this job's placeholders resolved to ``host`` when their
    ``[secrets.NAME]`` scope does not list it (call it before connecting)."""
    if isinstance(ctx.scope, Scope):
        ctx.secrets.check_use(ctx.scope.secret_names, kind, host)


def shown(value: str, limit: int = 80) -> str:
    """``value`` for an error message: whole (repr'd) or, when longer than ``limit``, only its
    length. Never a cut value: redaction matches whole secrets, and a cut one would slip through.

    Example::

        shown("db-01")      # "'db-01'"
        shown("x" * 500)    # 'a 500-character value'
    """
    return repr(value) if len(value) <= limit else f"a {len(value)}-character value"


class InvalidArgsError(PermanentError):
    """A job's args are invalid once rendered; the message names each bad field."""


def has_placeholder(value: Any) -> bool:
    """True for a string holding a ``{{...}}`` placeholder.

    Example::

        has_placeholder("{{email}}")   # True
        has_placeholder("a@b.test")    # False
    """
    # The substring test first: most values hold none, and it is cheaper than the search.
    return isinstance(value, str) and "{{" in value and PLACEHOLDER.search(value) is not None


def _allow_placeholder(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    context = info.context or {}
    if has_placeholder(value) and not context.get(RENDERED_KEY):
        return value  # at enqueue: checked once rendered, with RENDERED_CONTEXT
    return handler(value)


Templated = Annotated[T, WrapValidator(_allow_placeholder)]
"""``Templated[int]``: an int, or (before rendering) a string holding a placeholder."""


class ArgsModel(BaseModel):
    """Base of the built-in args models: unknown fields are errors that name themselves."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def args_of(job: Job, model: type[M]) -> M:
    """``job.args`` as the executor hands it to a ``render_args=True`` kind: the instance of
    ``model`` it validated after rendering. Nothing is validated again here; a caller that
    bypassed the executor (a plain dict) gets a TypeError saying so.

    Example::

        args = args_of(job, LogArgs)   # typed LogArgs
    """
    args = job.args
    if not isinstance(args, model):
        raise TypeError(
            f"{job.kind} handler expects job.args as a {model.__name__} validated by the executor, "
            f"got {type(args).__name__}"
        )
    return args


def validate_rendered(model: type[M], args: Any, *, kind: str | None = None) -> M:
    """Validate rendered ``args`` with placeholders refused, or raise
    :class:`InvalidArgsError` naming the fields (the ssh kind's one run-time check).

    Example::

        args = validate_rendered(SshArgs, {"host": "h", "command": "ls"}, kind="ssh")
    """
    try:
        return model.model_validate(args, context=RENDERED_CONTEXT)
    except ValidationError as exc:
        raise InvalidArgsError(describe_validation_error(exc, kind=kind)) from None


def describe_validation_error(exc: ValidationError, *, kind: str | None = None) -> str:
    """One line per bad field, without echoing the whole input (it may hold rendered secrets).

    Example::

        describe_validation_error(exc, kind="log")   # "invalid args for 'log': message: Field required"
    """
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "args"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    subject = "invalid args" if kind is None else f"invalid args for {kind!r}"
    return f"{subject}: " + "; ".join(parts)

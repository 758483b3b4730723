"""The built-in handlers ``mail``, ``http``, ``ssh`` and ``log``, and the args-model helpers
they share.

The composition root registers them::

    from engine.core.registry import Registry
    from handlers import register_builtin

    registry = Registry()
    register_builtin(registry)
    registry.get("mail").max_attempts   # 5

Placeholders and validation: a job's args are validated when it is enqueued, while they
still hold ``{{placeholders}}``, and again after the executor rendered them. A typed field
written ``Templated[int]`` therefore accepts, at enqueue, a string that contains a
placeholder (``"port": "{{sshPort}}"``) and checks the real type once rendered. Each
handler then calls :func:`validate_rendered`, which validates with placeholders refused,
so a value that merely *looks* like a placeholder after rendering cannot slip through.
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

from engine.core.outcomes import PermanentError
from engine.core.registry import Registry

__all__ = [
    "ArgsModel",
    "InvalidArgsError",
    "Templated",
    "describe_validation_error",
    "has_placeholder",
    "register_builtin",
    "validate_rendered",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
BUILTIN_QUEUE = "default"
PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}")
# Validation context meaning "placeholders have been rendered: check real values".
RENDERED: dict[str, Any] = {"jobengine_rendered": True}


class InvalidArgsError(PermanentError):
    """A job's args are invalid once rendered; the message names each bad field."""


def has_placeholder(value: Any) -> bool:
    """True for a string holding a ``{{...}}`` placeholder.

    Example::

        has_placeholder("{{email}}")   # True
        has_placeholder("a@b.test")    # False
    """
    return isinstance(value, str) and PLACEHOLDER.search(value) is not None


def _allow_placeholder(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    context = info.context or {}
    if has_placeholder(value) and not context.get("jobengine_rendered"):
        return value  # checked after rendering, by validate_rendered
    return handler(value)


Templated = Annotated[T, WrapValidator(_allow_placeholder)]
"""``Templated[int]``: an int, or (before rendering) a string holding a placeholder."""


class ArgsModel(BaseModel):
    """Base of the built-in args models: unknown fields are errors that name themselves."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def validate_rendered(model: type[M], args: Any, *, rendered: bool = True) -> M:
    """Validate rendered ``args`` (a dict or a model instance) strictly, or raise
    :class:`InvalidArgsError` naming the fields. ``rendered=False`` lets placeholders
    pass, as at enqueue.

    Example::

        args = validate_rendered(LogArgs, {"message": "hi"})
    """
    data = args.model_dump(by_alias=True, exclude_unset=True) if isinstance(args, BaseModel) else args
    try:
        return model.model_validate(data, context=RENDERED if rendered else None)
    except ValidationError as exc:
        raise InvalidArgsError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line per bad field, without echoing the whole input (it may hold rendered secrets)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "args"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "invalid args: " + "; ".join(parts)


def register_builtin(registry: Registry) -> None:
    """Register ``mail``, ``http``, ``ssh`` and ``log`` on ``registry`` (idempotent).

    Example::

        register_builtin(registry)
        registry.get("ssh").render_args   # False: the handler shell-quotes its command
    """
    # Imported here so that importing ``handlers`` for the shared helpers stays cheap
    # and the handler modules can import those helpers from this package.
    from handlers import http, log, mail, ssh

    # mail: a whole SMTP conversation, bounded by [smtp].timeout per step.
    registry.handler("mail", queue=BUILTIN_QUEUE, max_attempts=5, timeout=120.0, args_model=mail.MailArgs)(
        mail.send_mail
    )
    # http and ssh enforce their own deadline (the payload's timeout, else the
    # [http].timeout / [ssh].command_timeout default), so no engine-level default here.
    registry.handler("http", queue=BUILTIN_QUEUE, max_attempts=5, timeout=None, args_model=http.HttpArgs)(
        http.http_request
    )
    registry.handler(
        "ssh", queue=BUILTIN_QUEUE, max_attempts=3, timeout=None, args_model=ssh.SshArgs, render_args=False
    )(ssh.run_command)
    registry.handler("log", queue=BUILTIN_QUEUE, max_attempts=3, timeout=10.0, args_model=log.LogArgs)(
        log.write_log
    )

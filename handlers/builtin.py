"""Registers the built-in kinds ``mail``, ``http``, ``ssh`` and ``log`` on a registry.

The composition root calls it::

    from engine.core.registry import Registry
    from handlers.builtin import register_builtin

    registry = Registry()
    register_builtin(registry)
    registry.get("mail").max_attempts   # 5
"""

from __future__ import annotations

from engine.core.registry import Registry
from handlers import http, log, mail, ssh

__all__ = ["BUILTIN_QUEUE", "register_builtin"]

BUILTIN_QUEUE = "default"


def register_builtin(registry: Registry) -> None:
    """Register ``mail``, ``http``, ``ssh`` and ``log`` on ``registry`` (idempotent).

    Example::

        register_builtin(registry)
        registry.get("ssh").render_args   # False: the handler shell-quotes its command
    """
    # mail: a whole SMTP conversation, bounded by [smtp].timeout per step.
    registry.handler("mail", queue=BUILTIN_QUEUE, max_attempts=5, timeout=120.0, args_model=mail.MailArgs)(
        mail.send_mail
    )
    # http and ssh enforce their own deadline (the payload's timeout, else the
    # [http].timeout / [ssh].command_timeout default), so no engine-level default here.
    registry.handler("http", queue=BUILTIN_QUEUE, max_attempts=5, timeout=None, args_model=http.HttpArgs)(
        http.http_request
    )
    # render_args=False: the executor neither renders nor validates ssh args; the handler
    # renders the command with shell quoting, then validates once (handlers.args).
    registry.handler(
        "ssh", queue=BUILTIN_QUEUE, max_attempts=3, timeout=None, args_model=ssh.SshArgs, render_args=False
    )(ssh.run_command)
    registry.handler("log", queue=BUILTIN_QUEUE, max_attempts=3, timeout=10.0, args_model=log.LogArgs)(
        log.write_log
    )

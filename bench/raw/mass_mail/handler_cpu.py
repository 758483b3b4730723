"""Where a mail's CPU goes, without Postgres: the mail handler called one mail at a time
against an aiosmtpd on the same loop (client and server CPU together), then each step of a
message alone (render, build the MIME message, flatten it). From the repository root:

    PYTHONPATH=<tree> /work/main/.venv/bin/python bench/raw/mass_mail/handler_cpu.py
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP
from aiosmtplib.email import flatten_message

from bench.bulk_enqueue import mail_args
from engine.core.config import build_config
from engine.core.context import HandlerContext, Resources
from engine.core.job import Job
from engine.core.registry import RENDERED_CONTEXT, Registry
from engine.core.secrets import Secrets
from engine.core.templating import build_scope, render
from handlers.builtin import register_builtin
from handlers.mail import MailArgs, build_message, mail_templates, render_bodies

SENDER = "noreply@game.example.com"


class Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


async def handler(mails: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Sink(), hostname="sink"), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = build_config({"smtp": {"host": "127.0.0.1", "port": port, "start_tls": False, "from": SENDER},
                           "base_dir": "config"})
    registry = Registry()
    register_builtin(registry)
    spec, resources, secrets = registry.get("mail"), Resources(config), Secrets({})
    assert spec.args_model is not None

    async def one(i: int) -> None:
        job = Job(id=i + 1, queue="default", kind="mail", args=mail_args(i), attempt=1, max_attempts=3)
        scope = build_scope(job, secrets)
        args = spec.args_model.model_validate(render(job.args, scope), context=RENDERED_CONTEXT)  # type: ignore[union-attr]
        context = HandlerContext(config, resources, secrets, structlog.get_logger(), scope)
        await spec.func(replace(job, args=args), context)

    await one(0)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(mails):
        await one(i)
    print(f"handler: {mails / (time.perf_counter() - wall):.0f} mails/s one at a time; "
          f"CPU {(time.process_time() - cpu) / mails * 1000:.2f} ms per mail (client + server)")
    await resources.aclose()
    server.close()


async def parts(mails: int) -> None:
    config = build_config({"smtp": {"from": SENDER}, "base_dir": "config"})
    async with mail_templates(config) as env:
        args = [MailArgs.model_validate(mail_args(i), context=RENDERED_CONTEXT) for i in range(mails)]
        jobs = [Job(id=i + 1, queue="default", kind="mail", args=args[i], attempt=1, max_attempts=3)
                for i in range(mails)]
        render_bodies(env, args[0])

        def timed(label: str, step: Any) -> list[Any]:
            cpu = time.process_time()
            out = [step(i) for i in range(mails)]
            print(f"{label}: {(time.process_time() - cpu) / mails * 1000:.3f} ms")
            return out

        bodies = timed("render_bodies", lambda i: render_bodies(env, args[i]))
        messages = timed("build_message", lambda i: build_message(jobs[i], config, args[i], SENDER, *bodies[i]))
        timed("flatten", lambda i: flatten_message(messages[i], cte_type="8bit"))


if __name__ == "__main__":
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    asyncio.run(handler(500))
    asyncio.run(parts(300))

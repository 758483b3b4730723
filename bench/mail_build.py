"""CPU per mail of the mail handler's message path, old (EmailMessage under
email.policy.SMTP, flattened by aiosmtplib's send_message) against new (compat32 MIMEText /
MIMEMultipart, flattened once by BytesGenerator, handed to aiosmtplib's sendmail as bytes).

The messages are the mass mail's (bench/bulk_enqueue.py ``mail_args``: the game-update
template, Korean subject and text), rendered once beforehand. Steps, each timed with
``time.process_time()`` over all the messages, the best of ``--rounds``:

- ``build+flatten``: both, one message at a time, as the handler does (the headline number);
- ``build``: the MIME message from the rendered bodies (handlers/mail.py ``build_message``);
- ``flatten``: to the bytes sent (old: aiosmtplib's ``flatten_message``, which
  ``send_message`` calls; new: handlers/mail.py ``flatten``); these two keep every message
  alive, so they run with the garbage collector off;
- ``build+send``: build, then send over one open SMTP session to an aiosmtpd sink in
  another process, so only this process's CPU is counted (old: ``send_message(message)``,
  which flattens; new: ``flatten`` and ``sendmail(bytes)``), the first ``--send-mails``
  messages; the pool's RSET probe is left out on both sides.

    python -m bench.mail_build                       # 2,000 messages (500 sent), 2 rounds, about 25 s
    python -m bench.mail_build --mails 500 --rounds 3 --no-send

Instruction counts (deterministic on a loaded machine): ``--side old|new`` runs only that
side's build+flatten, untimed, ``--repeat`` times over the same messages; the difference
between two callgrind runs with different ``--repeat``, divided by the difference in
messages built, is the instructions per mail (start-up, rendering and validation cancel)::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m bench.mail_build \\
        --side new --mails 200 --repeat 1       # and --repeat 3; (Ir(3) - Ir(1)) / 400
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiosmtplib

from bench.bulk_enqueue import mail_args
from engine.core.config import build_config
from engine.core.job import Job
from engine.core.registry import RENDERED_CONTEXT
from handlers.mail import MailArgs, build_message, flatten, mail_templates, render_bodies
from tests.handlers.mail_reference import old_build_message, old_flatten

SENDER = "noreply@game.example.com"
Prepared = list[tuple[Job, MailArgs, str | None, str | None]]
Build = Callable[[Job, MailArgs, str, str | None, str | None], Any]


async def prepare(mails: int) -> tuple[Any, Prepared]:
    config = build_config({"smtp": {"from": SENDER}, "base_dir": "config"})
    async with mail_templates(config) as env:
        prepared: Prepared = []
        for i in range(mails):
            args = MailArgs.model_validate(mail_args(i), context=RENDERED_CONTEXT)
            job = Job(id=i + 1, queue="default", kind="mail", args=args, attempt=1, max_attempts=3)
            prepared.append((job, args, *render_bodies(env, args)))
    return config, prepared


def sides(config: Any) -> dict[str, tuple[Build, Callable[[Any], bytes]]]:
    def old(job: Job, args: MailArgs, sender: str, text: str | None, html: str | None) -> Any:
        return old_build_message(job, config, args, sender, text, html)

    def new(job: Job, args: MailArgs, sender: str, text: str | None, html: str | None) -> Any:
        return build_message(job, config, args, sender, text, html)

    return {"old": (old, old_flatten), "new": (new, flatten)}


def per_mail_us(step: Callable[[], object], mails: int, *, collect: bool = True) -> float:
    """CPU µs per mail of ``step``; ``collect=False`` with the garbage collector off (for the
    steps that keep every message alive, where its passes over them would be most of it)."""
    gc.collect()
    if not collect:
        gc.disable()
    try:
        cpu = time.process_time()
        step()
        return (time.process_time() - cpu) / mails * 1e6
    finally:
        gc.enable()


def offline(config: Any, prepared: Prepared, rounds: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, list[float]]] = {}
    for _ in range(rounds):
        for side, (build, flat) in sides(config).items():
            runs = results.setdefault(side, {"build+flatten": [], "build": [], "flatten": []})
            for step, value in one_round(prepared, build, flat).items():
                runs[step].append(value)
    return {side: {step: min(v) for step, v in steps.items()} for side, steps in results.items()}


def one_round(prepared: Prepared, build: Build, flat: Callable[[Any], bytes]) -> dict[str, float]:
    def both() -> None:
        for job, args, text, html in prepared:
            flat(build(job, args, SENDER, text, html))

    built: list[Any] = []

    def build_all() -> None:
        built.extend(build(job, args, SENDER, text, html) for job, args, text, html in prepared)

    def flatten_all() -> None:
        for message in built:
            flat(message)

    mails = len(prepared)
    return {"build+flatten": per_mail_us(both, mails), "build": per_mail_us(build_all, mails, collect=False),
            "flatten": per_mail_us(flatten_all, mails, collect=False)}


@contextlib.contextmanager
def smtp_sink() -> Iterator[int]:
    """An aiosmtpd that accepts and drops every message, in another process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink",
                             "-l", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


async def send(config: Any, prepared: Prepared, rounds: int, port: int) -> dict[str, float]:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, local_hostname="bench")
    await client.connect()
    build_old, _ = sides(config)["old"]
    build_new, _ = sides(config)["new"]

    async def old() -> None:
        for job, args, text, html in prepared:
            recipients = [args.to[0]]
            await client.send_message(build_old(job, args, SENDER, text, html), sender=SENDER, recipients=recipients)

    async def new() -> None:
        for job, args, text, html in prepared:
            recipients = [args.to[0]]
            await client.sendmail(SENDER, recipients, flatten(build_new(job, args, SENDER, text, html)),
                                  mail_options=[])

    runs: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(rounds):
        for side, run in (("old", old), ("new", new)):
            cpu = time.process_time()
            await run()
            runs[side].append((time.process_time() - cpu) / len(prepared) * 1e6)
    await client.quit()
    return {side: min(v) for side, v in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--send-mails", type=int, default=500, help="how many of the messages the send step sends")
    parser.add_argument("--no-send", action="store_true", help="skip the SMTP step")
    parser.add_argument("--side", choices=["old", "new"], help="only run one side's build+flatten, untimed, "
                        "--repeat times over the messages (for callgrind)")
    parser.add_argument("--repeat", type=int, default=1)
    opts = parser.parse_args()
    config, prepared = asyncio.run(prepare(opts.mails))
    if opts.side:
        build, flat = sides(config)[opts.side]
        for _ in range(opts.repeat):
            for job, args, text, html in prepared:
                flat(build(job, args, SENDER, text, html))
        return
    load = os.getloadavg()[0]
    print(f"{len(prepared):,} game-update mails (bench.bulk_enqueue.mail_args), best of {opts.rounds} rounds; "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, load {load:.2f}")
    print("CPU per mail (time.process_time), µs:")
    results = offline(config, prepared, opts.rounds)
    for step in ("build+flatten", "build", "flatten"):
        old, new = results["old"][step], results["new"][step]
        print(f"  {step:<15} old {old:8.1f}   new {new:8.1f}   {old / new:5.2f}x")
    if not opts.no_send:
        with smtp_sink() as port:
            sent = asyncio.run(send(config, prepared[:opts.send_mails], opts.rounds, port))
        print(f"  {'build+send':<15} old {sent['old']:8.1f}   new {sent['new']:8.1f}   "
              f"{sent['old'] / sent['new']:5.2f}x   (client CPU only, {min(opts.send_mails, len(prepared)):,} mails; "
              "one session, no RSET)")
    sizes = {side: statistics.median(len(flat(build(job, args, SENDER, text, html)))
                                     for job, args, text, html in prepared[:100])
             for side, (build, flat) in sides(config).items()}
    print(f"message size (median): old {sizes['old']:,.0f} B, new {sizes['new']:,.0f} B; "
          f"load at end {os.getloadavg()[0]:.2f}")

if __name__ == "__main__":
    main()

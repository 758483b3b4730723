"""``django-admin enqueue_welcome EMAIL [--delay SECONDS]``: enqueue from a management command."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from examples.django_app import jobs


class Command(BaseCommand):
    help = "Enqueue a welcome job (the built-in log kind) for EMAIL."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--delay", type=float, default=0.0, help="seconds before the job is due")

    def handle(self, *args: Any, **options: Any) -> None:
        job = jobs.client().enqueue("log", {"level": "info", "message": f"welcome {options['email']}"},
                                    delay=options["delay"] or None)
        self.stdout.write(f"enqueued job {job.id} ({job.state})")

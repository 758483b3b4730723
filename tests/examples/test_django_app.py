"""examples/django_app through Django's own request handling and management commands, on real
Postgres: the order and its job commit together in transaction.atomic(), or neither exists."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import django
import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.test import Client as DjangoClient
from django.test import override_settings

from examples.django_app import jobs
from examples.django_app.views import orders_table


@pytest.fixture
def django_project(pg_url: str, schema: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Both are read once, when Django first loads its settings.
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
    monkeypatch.setenv("DATABASE_URL", pg_url)
    django.setup()
    with override_settings(JOBENGINE={"database_url": pg_url, "schema": schema}):
        try:
            yield
        finally:
            jobs.close_all()
            connections.close_all()


def test_an_order_and_its_job_commit_together_or_not_at_all(django_project: None) -> None:
    browser = DjangoClient()
    placed = browser.post("/orders", {"email": "a@example.com"})
    assert placed.status_code == 200, placed.content
    failed = browser.post("/orders", {"email": "b@example.com", "fail": "1"})
    assert failed.status_code == 402

    client = jobs.client()
    job = client.get(placed.json()["job_id"])
    assert job is not None and job.kind == "log" and job.tags == ["orders"]
    assert placed.json()["order_id"] in job.args["message"]
    assert client.get(failed.json()["job_id"]) is None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT email FROM {orders_table()}")
        assert cursor.fetchall() == [("a@example.com",)]
    assert connection.vendor == "postgresql" and type(connection.connection).__module__.startswith("psycopg")


def test_the_management_command_enqueues(django_project: None) -> None:
    out = io.StringIO()
    call_command("enqueue_welcome", "c@example.com", "--delay", "60", stdout=out)
    job_id = int(re.search(r"enqueued job (\d+) \(scheduled\)", out.getvalue()).group(1))
    assert jobs.client().get(job_id).args["message"] == "welcome c@example.com"

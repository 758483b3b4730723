"""The deployment docs stay true: the README's environment table matches the Config model,
every ``JOBENGINE_...`` name the docs mention is a real setting, and every health query runs
against a freshly migrated schema."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg

from engine.core.config import ConfigError, load_config
from engine.db.migrate import migrate
from tests.deploy import env_table

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
GUIDE = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
DEPLOYMENT = README[README.index("## Deployment"):]
DEPLOYMENT = DEPLOYMENT[: DEPLOYMENT.find("\n## ", 1)] if "\n## " in DEPLOYMENT[1:] else DEPLOYMENT
NOT_SETTINGS = {"JOBENGINE_CONFIG", "JOBENGINE_TEST"}  # the config path; the test suite's own


def test_readme_environment_table_matches_the_config_model() -> None:
    assert env_table.current(README) == env_table.render(), (
        "README's JOBENGINE_... table is stale: run `.venv/bin/python -m tests.deploy.env_table --write`")


def test_every_variable_in_the_table_reaches_a_setting() -> None:
    for row in env_table.rows():
        name = row.variable.replace("<NAME>", "DEFAULT")
        try:
            load_config(REPO / "config" / "jobengine.toml", env={name: "1"})
        except ConfigError as exc:  # a bad *value* is fine here; an unknown *name* is not
            assert "unknown key" not in str(exc), f"{name}: {exc}"


def _pattern(variable: str) -> re.Pattern[str]:
    return re.compile(re.escape(variable).replace(re.escape("<NAME>"), "[A-Z0-9_]+"))


def test_every_variable_the_docs_mention_exists() -> None:
    patterns = [_pattern(row.variable) for row in env_table.rows()]
    mentioned = set(re.findall(r"JOBENGINE_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_])", GUIDE + DEPLOYMENT))
    unknown = {name for name in mentioned - NOT_SETTINGS if not any(p.fullmatch(name) for p in patterns)}
    assert not unknown, f"docs mention variables that are not settings: {sorted(unknown)}"


def _queries(text: str, schema: str) -> list[str]:
    queries = []
    for block in re.findall(r"```sql\n(.*?)```", text, flags=re.S):
        lines = "\n".join(line for line in block.splitlines() if not line.lstrip().startswith("--"))
        for statement in lines.split(";"):
            if statement.strip():
                queries.append(statement.replace("jobengine.", f'"{schema}".').replace("'jobengine'", f"'{schema}'"))
    return queries


async def test_health_queries_run_on_a_migrated_schema(pg_url: str, schema: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await migrate(conn, schema)
        queries = _queries(GUIDE, schema) + _queries(DEPLOYMENT, schema)
        assert len(queries) >= 10
        for query in queries:
            await conn.fetch(query)  # a renamed column or view fails here
    finally:
        await conn.close()

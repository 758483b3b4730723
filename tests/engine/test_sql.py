"""The SQL module's statements and the typed Statements that the store reads them from."""

from __future__ import annotations

from engine.db import sql


def test_every_statement_is_declared_on_statements_and_nothing_else_is() -> None:
    declared = set(sql.Statements.__annotations__) - {"schema", "insert_channel", "control_channel"}
    assert declared == set(sql.statement_names())


def test_rendering_puts_the_quoted_schema_in_every_statement() -> None:
    statements = sql.render('my"app')
    for name in sql.statement_names():
        text = getattr(statements, name)
        assert "{schema}" not in text, name
    assert '"my""app".jobs' in statements.JOB_GET
    assert statements.insert_channel == 'my"app.jobs_inserted'

"""Placeholders: resolution order, types, no re-expansion, secrets, and shell quoting for ssh."""

from __future__ import annotations

import shlex
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.core.job import Job
from engine.core.outcomes import PermanentError
from engine.core.secrets import Secrets
from engine.core.shell import UnsafeShellValueError, render_shell
from engine.core.templating import (
    Scope,
    UnresolvedPlaceholderError,
    build_scope,
    placeholders_in,
    render,
)
from tests.support.tools import require_tool

NOW = datetime(2024, 1, 15, 2, 30, 5, 123000, tzinfo=UTC)


def make_job(vars: dict[str, Any] | None = None, **meta: Any) -> Job:
    return Job(id=42, queue="ops", kind="http", args={}, attempt=2, meta={"vars": vars or {}, **meta})


def scope_of(
    vars: dict[str, Any] | None = None, *, secrets: dict[str, str] | None = None, **meta: Any
) -> Scope:
    return build_scope(make_job(vars, **meta), Secrets(secrets or {}), now=NOW)


# --- resolution ---


def test_vars_win_over_parent_result_builtins_and_secrets() -> None:
    scope = scope_of(
        {"date": "from-vars", "token": "var-token"},
        parent_result={"date": "from-result", "backupFile": "/b/x.sql"},
        secrets={"token": "secret-token"},
    )
    assert render("{{date}} {{backupFile}} {{token}}", scope) == "from-vars /b/x.sql var-token"


def test_parent_result_wins_over_builtins() -> None:
    scope = scope_of(parent_result={"date": "from-result"})
    assert render("{{date}}", scope) == "from-result"


def test_dotted_names_reach_into_vars_and_the_parent_result() -> None:
    scope = scope_of(
        {"user": {"name": "Ann", "emails": ["a@x.io", "b@x.io"]}},
        parent_result={"file": {"path": "/b/1.sql", "size": 10}},
    )
    assert render("{{user.name}} {{user.emails.1}}", scope) == "Ann b@x.io"
    assert render("{{result.file.path}}", scope) == "/b/1.sql"
    assert render("{{file.size}}", scope) == 10
    assert render("{{result.file}}", scope) == {"path": "/b/1.sql", "size": 10}
    assert render("{{result}}", scope) == {"file": {"path": "/b/1.sql", "size": 10}}


def test_explicit_parent_result_overrides_the_one_in_meta() -> None:
    job = make_job(parent_result={"n": 1})
    scope = build_scope(job, Secrets({}), parent_result={"n": 2}, now=NOW)
    assert render("{{n}}", scope) == 2


def test_builtins_come_from_the_job_and_the_clock() -> None:
    scope = scope_of()
    rendered = render(
        {"date": "{{date}}", "ts": "{{timestamp}}", "id": "{{job.id}}", "attempt": "{{job.attempt}}",
         "queue": "{{job.queue}}", "kind": "{{job.kind}}"},
        scope,
    )
    assert rendered == {"date": "2024-01-15", "ts": "2024-01-15T02:30:05.123Z", "id": 42, "attempt": 2,
                        "queue": "ops", "kind": "http"}


def test_secrets_resolve_by_plain_name_and_by_secrets_prefix_and_are_recorded() -> None:
    scope = scope_of(secrets={"API_TOKEN": "tok-123456"})
    assert render("Bearer {{API_TOKEN}}", scope) == "Bearer tok-123456"
    assert render("{{secrets.API_TOKEN}}", scope) == "tok-123456"
    assert scope.secret_names == {"API_TOKEN"}
    assert scope.secret_values == {"tok-123456"}
    assert "tok-123456" not in repr(scope)


def test_secrets_prefix_cannot_be_shadowed_by_a_var() -> None:
    scope = scope_of({"secrets": {"API_TOKEN": "forged"}}, secrets={"API_TOKEN": "tok-123456"})
    assert render("{{secrets.API_TOKEN}}", scope) == "tok-123456"


def test_undeclared_secret_is_unresolved() -> None:
    with pytest.raises(UnresolvedPlaceholderError, match=r"\{\{secrets\.DB_PASS\}\}"):
        render("{{secrets.DB_PASS}}", scope_of())


# --- rendering ---


def test_a_lone_placeholder_keeps_the_value_type() -> None:
    scope = scope_of({"userId": 7, "ratio": 0.5, "on": True, "none": None, "tags": ["a"], "obj": {"k": 1}})
    assert render("{{userId}}", scope) == 7
    assert render("{{ ratio }}", scope) == 0.5
    assert render("{{on}}", scope) is True
    assert render("{{none}}", scope) is None
    assert render("{{tags}}", scope) == ["a"]
    assert render({"body": {"obj": "{{obj}}"}}, scope) == {"body": {"obj": {"k": 1}}}


def test_a_substituted_dict_is_a_copy() -> None:
    job = make_job({"obj": {"k": 1}})
    rendered = render("{{obj}}", build_scope(job, Secrets({}), now=NOW))
    rendered["k"] = 2
    assert job.vars["obj"] == {"k": 1}


def test_embedded_placeholders_become_text_and_structures_compact_json() -> None:
    scope = scope_of({"userId": 7, "on": True, "none": None, "obj": {"k": [1, 2]}, "name": "홍길동"})
    assert render("user {{userId}} on={{on}} none={{none}}", scope) == "user 7 on=true none=null"
    assert render("obj={{obj}}", scope) == 'obj={"k":[1,2]}'
    assert render("안녕 {{ name }}!", scope) == "안녕 홍길동!"


def test_values_are_never_expanded_again() -> None:
    scope = scope_of({"a": "{{b}}", "b": "boom"}, secrets={"API_TOKEN": "tok-123456"})
    assert render("{{a}}", scope) == "{{b}}"
    assert render("x {{a}} y", scope) == "x {{b}} y"
    leak = scope_of({"a": "{{API_TOKEN}}"}, secrets={"API_TOKEN": "tok-123456"})
    assert render("{{a}}", leak) == "{{API_TOKEN}}"


def test_only_strings_are_rendered_and_keys_are_left_alone() -> None:
    scope = scope_of({"x": "X"})
    value = {"{{x}}": ["{{x}}", 1, None, True, {"n": "{{x}}"}]}
    assert render(value, scope) == {"{{x}}": ["X", 1, None, True, {"n": "X"}]}


def test_text_that_is_not_a_placeholder_is_left_alone() -> None:
    scope = scope_of()
    for text in ["{{ }}", "{{a b}}", "{{1abc}}", "{ {x} }", "{{x|upper}}", "$(date +%Y%m%d)"]:
        assert render(text, scope) == text


def test_unresolved_placeholders_are_a_permanent_error_naming_all_of_them() -> None:
    with pytest.raises(UnresolvedPlaceholderError) as caught:
        args = {"to": "{{email}}", "data": {"u": "{{user.name}}", "v": "{{ zeta }}", "w": "{{email}}"}}
        render(args, scope_of())
    assert isinstance(caught.value, PermanentError)
    assert caught.value.names == ["email", "user.name", "zeta"]
    assert "{{email}}, {{user.name}}, {{zeta}}" in str(caught.value)


def test_placeholders_in_finds_every_name() -> None:
    value = {"to": "{{email}}", "cc": ["{{ boss.email }}", 3], "subject": "hi {{name}} / {{email}}"}
    assert placeholders_in(value) == {"email", "boss.email", "name"}


def test_seed_http_example_renders() -> None:
    args = {
        "method": "POST",
        "url": "https://api.example.com/webhook",
        "headers": {"Authorization": "Bearer {{apiToken}}", "Content-Type": "application/json"},
        "body": {"event": "user_registration", "userId": "{{userId}}", "timestamp": "{{timestamp}}"},
    }
    scope = scope_of({"userId": 7}, secrets={"apiToken": "tok-123456"})
    rendered = render(args, scope)
    assert rendered["headers"]["Authorization"] == "Bearer tok-123456"
    assert rendered["body"] == {
        "event": "user_registration", "userId": 7, "timestamp": "2024-01-15T02:30:05.123Z"
    }
    assert Secrets({"apiToken": "tok-123456"}).redact(rendered)["headers"]["Authorization"] == "Bearer ***"


# --- shell commands ---

HOSTILE = [
    "1; touch {marker}",
    "$(touch {marker})",
    "`touch {marker}`",
    "' ; touch {marker} ; '",
    '" ; touch {marker} ; "',
    "*",
    "a b  c",
    "x && touch {marker} || touch {marker}",
    "${{IFS}}touch${{IFS}}{marker}",
    "a'\"'\"'b",
    "\\",
    "~root",
    "{{{{nested}}}}",
    "",
    "# comment",
    "홍길동 \u202e",
]


@pytest.mark.parametrize("template, expected_argv", [
    ("./restart-server.sh {{v}}", ["./restart-server.sh", "{v}"]),
    ("echo id={{v}} end", ["echo", "id={v}", "end"]),
    ("echo '{{v}}'", ["echo", "{v}"]),
    ("echo 'pre {{v}} post'", ["echo", "pre {v} post"]),
    ('echo "{{v}}"', ["echo", "{v}"]),
    ('echo "pre $HOME {{v}}"x', ["echo", "pre $HOME {v}x"]),
    ("echo {{v}}{{v}}", ["echo", "{v}{v}"]),
])
@pytest.mark.parametrize("raw", HOSTILE)
def test_a_hostile_value_arrives_as_one_literal_argument(
    raw: str, template: str, expected_argv: list[str], tmp_path: Path
) -> None:
    value = raw.format(marker=tmp_path / "pwned")
    command = render_shell(template, Scope({"v": value}))
    assert shlex.split(command) == [part.replace("{v}", value) for part in expected_argv]


@pytest.mark.parametrize("shell", ["sh", "bash"])
@pytest.mark.parametrize("raw", HOSTILE)
def test_a_real_shell_runs_no_injected_command(shell: str, raw: str, tmp_path: Path) -> None:
    require_tool(shell, "apt-get install " + shell)
    marker = tmp_path / "pwned"
    value = raw.format(marker=marker)
    template = "printf '<%s>' {{v}} \"{{v}}\" 'q{{v}}q' $(printf x){{v}} # {{v}}"
    command = render_shell(template, Scope({"v": value}))
    done = subprocess.run([shell, "-c", command], capture_output=True, text=True, timeout=10, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"<{value}><{value}><q{value}q><x{value}>"
    assert not marker.exists()


def test_seed_backup_command_quotes_every_value() -> None:
    template = "mysqldump -u {{dbUser}} -p{{dbPass}} {{dbName}} > /backup/{{dbName}}_$(date +%Y%m%d).sql"
    scope = scope_of({"dbUser": "admin", "dbName": "game db"}, secrets={"dbPass": "-p@ss w0rd;rm -rf /"})
    command = render_shell(template, scope)
    assert shlex.split(command)[:5] == ["mysqldump", "-u", "admin", "-p-p@ss w0rd;rm -rf /", "game db"]
    assert command.endswith("_$(date +%Y%m%d).sql")  # the operator's own substitution is left alone
    assert scope.secret_values == {"-p@ss w0rd;rm -rf /"}


@pytest.mark.parametrize("value, reason", [
    ("a\nb", "control character"),
    ("a\rb", "control character"),
    ("a\x00b", "control character"),
    ("a\tb", "control character"),
    ("a\x1b[2Jb", "control character"),
    ({"k": 1}, "dict"),
    ([1, 2], "list"),
    (None, "null"),
    ("-rf", "option"),
    ("--help", "option"),
    (-1, "option"),
])
def test_values_that_are_not_one_safe_word_are_refused_without_showing_them(value: Any, reason: str) -> None:
    with pytest.raises(UnsafeShellValueError, match=reason) as caught:
        render_shell("kill {{v}}", Scope({"v": value}))
    assert isinstance(caught.value, PermanentError)
    assert "{{v}}" in str(caught.value)
    if isinstance(value, str) and value:
        assert value not in str(caught.value)


def test_a_secret_value_is_not_shown_in_a_refusal() -> None:
    scope = scope_of(secrets={"DB_PASS": "hunter2\nsecret"})
    with pytest.raises(UnsafeShellValueError) as caught:
        render_shell("mysql -p{{DB_PASS}}", scope)
    assert "hunter2" not in str(caught.value)


def test_a_leading_dash_is_allowed_inside_a_word_or_when_asked() -> None:
    scope = Scope({"v": "-x"})
    assert shlex.split(render_shell("cmd -p{{v}} --opt={{v}}", scope)) == ["cmd", "-p-x", "--opt=-x"]
    assert shlex.split(render_shell("cmd {{v}}", scope, allow_leading_dash=True)) == ["cmd", "-x"]


def test_numbers_and_booleans_are_words() -> None:
    scope = Scope({"n": 7, "f": 1.5, "b": True})
    assert shlex.split(render_shell("cmd {{n}} {{f}} {{b}}", scope)) == ["cmd", "7", "1.5", "true"]


@pytest.mark.parametrize("template", [
    "echo `echo {{v}}`",
    "echo ${{{v}}}",
    "echo ${HOME:-{{v}}}",
    "echo ${{v}}",
    "echo \\{{v}}",
    'echo "\\{{v}}"',
    "echo $'{{v}}'",
    "echo $(( {{v}} + 1 ))",
    "cat <<EOF\n{{v}}\nEOF",
    "echo $(case x in x) echo {{v}};; esac)",
])
def test_placeholders_where_quoting_cannot_be_trusted_are_refused(template: str) -> None:
    with pytest.raises(UnsafeShellValueError, match=r"\{\{v\}\}"):
        render_shell(template, Scope({"v": "1; touch /tmp/x"}))


def test_placeholders_before_an_unsupported_construct_are_fine() -> None:
    command = render_shell("echo {{v}} `date`", Scope({"v": "a b"}))
    assert command == "echo 'a b' `date`"


def test_here_string_and_comments_are_followed() -> None:
    scope = Scope({"v": "a'b"})
    assert render_shell("cat <<< {{v}}", scope) == "cat <<< 'a'\"'\"'b'"
    # The quote inside the comment must not be taken as opening a string.
    command = render_shell("true # it's\necho {{v}}", scope)
    assert command.endswith("echo 'a'\"'\"'b'")


def test_unresolved_placeholder_in_a_command_names_it() -> None:
    with pytest.raises(UnresolvedPlaceholderError, match=r"\{\{serverId\}\}"):
        render_shell("cd /opt/game && ./restart-server.sh {{serverId}}", Scope({}))

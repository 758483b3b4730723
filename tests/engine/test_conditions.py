"""Job conditions: the seed's example, the grammar, typed binding, and hostile input refused fast."""

from __future__ import annotations

import time
from typing import Any

import pytest

from engine.core.conditions import ConditionEvalError, ConditionSyntaxError, parse_condition
from engine.core.job import Job
from engine.core.outcomes import PermanentError
from engine.core.secrets import Secrets
from engine.core.templating import Scope, build_scope


def holds(text: str, **values: Any) -> bool:
    return parse_condition(text).evaluate(values)


def test_seed_condition_runs_under_low_load_only() -> None:
    condition = parse_condition("{{serverLoad}} < 50")
    assert condition.evaluate({"serverLoad": 30}) is True
    assert condition.evaluate({"serverLoad": 70}) is False
    assert condition.variables == {"serverLoad"}


def test_describe_gives_the_cancel_reason_with_values() -> None:
    condition = parse_condition("{{serverLoad}} < 50")
    assert condition.describe({"serverLoad": 70}) == "condition not met: {{serverLoad}} < 50 (serverLoad=70)"
    assert condition.describe() == "condition not met: {{serverLoad}} < 50"
    assert parse_condition("{{a}} == 'x'").describe({}) == "condition not met: {{a}} == 'x' (a=<unknown>)"


def test_evaluates_against_a_job_scope() -> None:
    job = Job(id=1, queue="default", kind="maintenance-task", args={}, attempt=3,
              meta={"vars": {"server": {"load": "42"}}, "parent_result": {"ok": True}})
    scope = build_scope(job, Secrets({}))
    assert parse_condition("{{server.load}} < 50 and ok and {{job.attempt}} <= 3").evaluate(scope)
    assert parse_condition("server.load >= 50").evaluate(scope) is False


@pytest.mark.parametrize("text, values, expected", [
    ("{{a}} <= 5", {"a": 5}, True),
    ("{{a}} > 5", {"a": 5.5}, True),
    ("{{a}} >= 5.0", {"a": 4}, False),
    ("{{a}} == 'prod'", {"a": "prod"}, True),
    ('{{a}} != "prod"', {"a": "dev"}, True),
    ("{{a}} < {{b}}", {"a": "apple", "b": "banana"}, True),
    ("{{a}} == null", {"a": None}, True),
    ("{{a}} != null", {"a": 0}, True),
    ("{{a}} == true", {"a": True}, True),
    ("{{a}} == true", {"a": "true"}, True),
    ("{{a}} > -1", {"a": 0}, True),
    ("{{a}} == [1, 2]", {"a": [1, 2]}, True),
    ("{{a}}", {"a": True}, True),
    ("{{a}}", {"a": "false"}, False),
    ("true", {}, True),
    ("not false", {}, True),
    ("!{{a}}", {"a": False}, True),
    ("{{a}} and {{b}}", {"a": True, "b": False}, False),
    ("{{a}} && {{b}} || {{c}}", {"a": False, "b": True, "c": True}, True),
    ("{{a}} or {{b}} and {{c}}", {"a": True, "b": False, "c": False}, True),  # and binds tighter
    ("({{a}} or {{b}}) and {{c}}", {"a": True, "b": False, "c": False}, False),
    ("not {{a}} and {{b}}", {"a": False, "b": True}, True),  # not binds tighter than and
    ("not ({{a}} and {{b}})", {"a": True, "b": True}, False),
    ("{{a}} < 50 and {{region}} in ['eu', 'us']", {"a": 1, "region": "eu"}, True),
    ("{{region}} not in ['eu', 'us']", {"region": "kr"}, True),
    ("'x' in {{tags}}", {"tags": ["x", 1]}, True),
    ("3 in {{tags}}", {"tags": ["x", "3"]}, True),
    ("'ok' in {{text}}", {"text": "all ok"}, True),
    ("'it\\'s' == {{s}}", {"s": "it's"}, True),
    ("user.role == 'admin'", {"user": {"role": "admin"}}, True),
])
def test_grammar(text: str, values: dict[str, Any], expected: bool) -> None:
    assert parse_condition(text).evaluate(values) is expected


def test_numeric_strings_compare_as_numbers() -> None:
    # Placeholders often carry numbers as strings (HTTP bodies, ssh output).
    assert holds("{{load}} < 50", load="7")
    assert holds("{{load}} < 50", load=" 70 ") is False
    assert holds("{{a}} < {{b}}", a="9", b="10")
    assert holds("{{a}} == 200", a="200")
    assert holds("{{a}} == 200", a="200.0")


def test_a_bound_value_is_data_not_code() -> None:
    assert holds("{{x}} == '0 or 1'", x="0 or 1")
    with pytest.raises(ConditionEvalError):
        holds("{{x}}", x="0 or 1")
    with pytest.raises(ConditionEvalError):
        holds("{{x}}", x="1 == 1")
    assert holds("{{x}} == '{{y}}'", x="{{y}}")


def test_unknown_variable_is_an_error_even_when_short_circuit_would_skip_it() -> None:
    with pytest.raises(ConditionEvalError, match=r"\{\{missing\}\}") as caught:
        holds("true or {{missing}} > 1")
    assert isinstance(caught.value, PermanentError)


def test_callable_lookup_and_scope() -> None:
    values = {"n": 3}
    assert parse_condition("{{n}} > 2").evaluate(lambda name: values[name])
    with pytest.raises(ConditionEvalError):
        parse_condition("{{m}} > 2").evaluate(lambda name: values[name])
    assert parse_condition("{{n}} > 2").evaluate(Scope({"n": 3}))


@pytest.mark.parametrize("text, values", [
    ("{{a}} < 50", {"a": "abc"}),
    ("{{a}} == 50", {"a": "abc"}),
    ("{{a}} != 50", {"a": "abc"}),
    ("{{a}} < 1", {"a": True}),
    ("{{a}} < 1", {"a": None}),
    ("{{a}} < 'x'", {"a": 1}),
    ("{{a}} < [1]", {"a": [0]}),
    ("{{a}} and true", {"a": 1}),
    ("not {{a}}", {"a": "yes"}),
    ("{{a}}", {"a": {"k": 1}}),
    ("1 in {{a}}", {"a": 5}),
    ("1 in {{a}}", {"a": "123"}),
])
def test_type_mismatches_are_errors_never_silently_true(text: str, values: dict[str, Any]) -> None:
    with pytest.raises(ConditionEvalError):
        parse_condition(text).evaluate(values)


def test_eval_error_does_not_show_values() -> None:
    with pytest.raises(ConditionEvalError) as caught:
        holds("{{token}} and true", token="s3cr3t-value")
    assert "s3cr3t-value" not in str(caught.value)


HOSTILE = [
    "__import__('os')",
    "__import__('os').system('touch /tmp/x')",
    "a.b.c()",
    "x[0]",
    "{{x}}[0]",
    "2**999999999",
    "9" * 33,
    "1 + 1 == 2",
    "lambda: 1",
    "'a' if x else 'b'",
    "x = 1",
    "1 < 2 < 3",
    "{{x}}.__class__",
    "{{ x y }}",
    "'unterminated",
    "(1 < 2",
    "",
    "   ",
    "and",
    "x not y",
    "[1, 2",
    "1 in",
    "(" * 10_000 + "1" + ")" * 10_000,
    "not " * 500 + "true",
    "[" * 1_000 + "]" * 1_000,
    "x or " * 20_000 + "x",
    "1 < 2 and " * 10_000 + "true",
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda text: text[:30])
def test_hostile_conditions_are_refused_quickly(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ConditionSyntaxError) as caught:
        parse_condition(text)
    assert time.perf_counter() - started < 0.5, "refusal must not depend on the input's size"
    assert "position" in str(caught.value)
    assert isinstance(caught.value, PermanentError)


def test_a_100kb_expression_is_refused_in_well_under_100ms() -> None:
    text = "{{a}} < 1 or " * 8_000 + "true"
    assert len(text) > 100_000
    started = time.perf_counter()
    with pytest.raises(ConditionSyntaxError, match="longer than 2000"):
        parse_condition(text)
    assert time.perf_counter() - started < 0.1


def test_nesting_limit_is_32() -> None:
    assert parse_condition("(" * 32 + "true" + ")" * 32).evaluate({}) is True
    with pytest.raises(ConditionSyntaxError, match="nested deeper"):
        parse_condition("(" * 33 + "true" + ")" * 33)


def test_syntax_error_reports_the_position() -> None:
    with pytest.raises(ConditionSyntaxError) as caught:
        parse_condition("{{load}} < 50 && ^")
    assert caught.value.position == 17
    assert "position 17" in str(caught.value)


def test_long_but_legal_condition_parses() -> None:
    text = " and ".join(f"{{{{v{i}}}}} < {i}" for i in range(100))
    assert len(text) < 2_000
    condition = parse_condition(text)
    assert len(condition.variables) == 100
    assert condition.evaluate({f"v{i}": i - 1 for i in range(100)}) is True


LONG_TOKEN = "tok_" + "a1b2c3d4" * 7 + "zzzz"  # 64 characters


@pytest.mark.parametrize("value", [
    "prefix-" + LONG_TOKEN,            # long: shortened to 57 characters before any redaction
    'q"uo\\te-' + LONG_TOKEN[:20],     # JSON escaping would change the secret's text
])
def test_describe_redacts_each_value_before_escaping_or_shortening(value: str) -> None:
    secret = value.removeprefix("prefix-")
    secrets = Secrets({"LONG_TOKEN": secret})
    reason = parse_condition("{{blob}} == ''").describe({"blob": value}, redact=secrets.redact)
    assert secret not in reason
    # Not even a long piece of it survives (the old reason kept 50 of its 64 characters).
    assert not any(secret[i:i + 8] in reason for i in range(len(secret) - 8))
    assert "***" in reason

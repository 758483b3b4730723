"""Configuration: the example file loads, bad keys are named, env overrides apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.core.config import ConfigError, env_overrides, load_config, parse_duration, parse_rate

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "jobengine.toml"


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE, env={})
    assert config.queues["mailers"].rate_limit == "100/min"
    assert config.shutdown_grace == 15.0
    assert config.retention.completed == 7 * 86400
    assert config.templates_dir == EXAMPLE.parent / "templates"
    assert {entry.name for entry in config.cron} >= {"daily-stats"}


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[smtp]\nhosst = 'x'\n", "unknown key 'smtp.hosst'"),
        ("[queues.default]\nconcurrency = 0\n", "'queues.default.concurrency'"),
        ("[queues.default]\nrate_limit = 'lots'\n", "invalid rate limit 'lots'"),
        ("shutdown_grace = 'soon'\n", "invalid duration 'soon'"),
        ("schema = 'Bad-Name'\n", "'schema'"),
        ("[logging]\nformat = 'xml'\n", "'logging.format'"),
        ("modules = [\n", "invalid TOML"),
    ],
)
def test_bad_config_fails_with_a_message_naming_the_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "jobengine.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_config(path, env={})


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})


def test_environment_overrides_every_level(tmp_path: Path) -> None:
    env = {
        "JOBENGINE_QUEUES__DEFAULT__CONCURRENCY": "25",
        "JOBENGINE_DASHBOARD__TOKEN": "tok-abc",
        "JOBENGINE_HTTP__ALLOW": '["10.0.0.0/8"]',
        "JOBENGINE_DATABASE_URL": "postgresql://db/x",
        "JOBENGINE_TEST_DATABASE_URL": "ignored: not a setting",
    }
    config = load_config(EXAMPLE, env=env)
    assert config.queues["default"].concurrency == 25
    assert config.queues["mailers"].concurrency == 20, "other keys of the file stay"
    assert config.dashboard.token == "tok-abc"
    assert config.http.allow == ["10.0.0.0/8"]
    assert config.database_url == "postgresql://db/x"


def test_unknown_environment_setting_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'smtp\.prot'"):
        load_config(EXAMPLE, env={"JOBENGINE_SMTP__PROT": "25"})


def test_database_url_falls_back_to_DATABASE_URL() -> None:
    assert load_config(EXAMPLE, env={"DATABASE_URL": "postgresql://a/b"}).database_url == "postgresql://a/b"


def test_env_overrides_parse_json_values_else_strings() -> None:
    assert env_overrides({"JOBENGINE_POLL_INTERVAL": "0.5", "JOBENGINE_NODE_NAME": "n-1"}) == {
        "poll_interval": 0.5, "node_name": "n-1"}


def test_durations_and_rates() -> None:
    assert [parse_duration(v) for v in (30, "30s", "5m", "2h", "7d", "250ms")] == [30, 30, 300, 7200, 604800, 0.25]
    assert parse_rate("100/min") == (100, 60.0)
    assert parse_rate("10/s") == (10, 1.0)


def test_text_settings_from_the_environment_stay_text() -> None:
    config = load_config(EXAMPLE, env={"JOBENGINE_DASHBOARD__TOKEN": "123456", "JOBENGINE_NODE_NAME": "null",
                                       "JOBENGINE_QUEUES__DEFAULT__CONCURRENCY": "7"})
    assert config.dashboard.token == "123456"
    assert config.node_name == "null"
    assert config.queues["default"].concurrency == 7

"""Configuration: ``config/jobengine.toml`` plus ``JOBENGINE_...`` environment overrides,
validated once into a frozen object. Unknown keys are errors that name the key."""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "JOBENGINE_"
# Environment variables with the prefix that are not settings.
ENV_NOT_SETTINGS = ("JOBENGINE_CONFIG", "JOBENGINE_TEST_")
DURATION_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
DURATION_UNITS = {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
RATE_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


def parse_duration(value: float | int | str) -> float:
    """Seconds from ``30``, ``"30s"``, ``"5m"``, ``"7d"``, ``"250ms"``."""
    if isinstance(value, int | float):
        return float(value)
    match = DURATION_PATTERN.match(value)
    if not match:
        raise ValueError(f"invalid duration {value!r}: use e.g. 30, '30s', '5m', '2h', '7d'")
    return float(match.group(1)) * DURATION_UNITS[match.group(2)]


def parse_rate(value: str) -> tuple[int, float]:
    """``"100/min"`` -> (100, 60.0): at most 100 jobs started per 60 s window."""
    match = RATE_PATTERN.match(value)
    if not match:
        raise ValueError(f"invalid rate limit {value!r}: use e.g. '100/min', '10/s', '500/hour'")
    return int(match.group(1)), float(RATE_UNITS[match.group(2)])


@functools.lru_cache(maxsize=1024)  # the inserter asks for every row's queue
def path_segment_problem(name: str) -> str | None:
    """Why ``name`` cannot be a queue or cron entry name, or None. Names become URL path
    segments of dashboard actions (``/queues/<name>/pause``): a ``/`` or a dot-segment would
    make a button act on another object."""
    if not name or len(name) > 128:
        return "must be 1-128 characters"
    if "/" in name or "\\" in name:
        return "must not contain / or \\"
    if name.strip(".") == "" or ".." in name:
        return "must not contain '..' or be only dots"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in name):
        return "must not contain control characters"
    return None


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Duration = float


class SecretScope(Section):
    """Where a secret may be used (``[secrets.NAME]``): ``kinds`` (None: any) and ``hosts``,
    the URL hosts of http jobs and the hosts of ssh jobs (``*.example.com`` for subdomains).
    ``hosts`` without ``kinds`` means ``kinds = ["http", "ssh"]``: a secret bound to hosts
    must not leave through a kind that has none (a mail body, a log line)."""

    kinds: list[str] | None = None
    hosts: list[str] | None = None

    @model_validator(mode="after")
    def _host_kinds(self) -> SecretScope:
        if self.hosts is not None and self.kinds is None:
            return self.model_copy(update={"kinds": ["http", "ssh"]})
        return self


class QueueConfig(Section):
    concurrency: int = Field(10, ge=1, le=10_000)
    rate_limit: str | None = None
    global_limit: int | None = Field(None, ge=1)
    paused: bool = False

    @field_validator("rate_limit")
    @classmethod
    def _check_rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)
        return value


class SmtpConfig(Section):
    host: str = "localhost"
    port: int = 25
    start_tls: bool | None = None
    use_tls: bool = False
    username: str | None = None
    password_env: str | None = None
    from_: str | None = Field(None, alias="from")
    timeout: Duration = 30.0
    validate_certs: bool = True
    ca_file: str | None = None
    # With a username, the password is sent only over TLS (use_tls, or STARTTLS, then
    # required) unless this says a plain connection is acceptable (a trusted local relay).
    allow_plaintext_auth: bool = False
    # Sessions are reused across mails (handlers/smtp.py); one idle this long is closed.
    idle_close: Duration = Field(default=30.0, gt=0)


class SshConfig(Section):
    known_hosts: str | None = None
    client_keys: list[str] = []
    username: str | None = None
    connect_timeout: Duration = 10.0
    keepalive: Duration = 60.0
    idle_close: Duration = 300.0
    # Default for an ssh job without its own ``timeout``; the remote command is killed then.
    command_timeout: Duration = 600.0
    # stdout and stderr kept in the result (each); the rest is read and dropped.
    max_output_bytes: int = Field(default=65_536, ge=1)
    # The address policy, as [http]'s: private, loopback and metadata hosts need an allow entry.
    allow: list[str] = []
    deny: list[str] = []


class HttpConfig(Section):
    allow: list[str] = []
    deny: list[str] = []
    timeout: Duration = 30.0
    max_body_bytes: int = 65_536
    max_redirects: int = 5
    user_agent: str = "jobengine"


class DashboardConfig(Section):
    enabled: bool = True
    bind: str = "127.0.0.1:8080"
    token: str | None = None
    readonly_token: str | None = None
    # How often open dashboard pages refresh their live parts (seconds).
    refresh_interval: Duration = Field(2.0, gt=0)
    # A login session lasts this long (seconds); changing a token ends its sessions.
    session_ttl: Duration = Field(12 * 3600.0, gt=0)
    # Counts per queue and state are exact up to this, then estimated (shown with ~).
    count_cap: int = Field(10_000, ge=100)
    # Single sign-on: a proxy in trusted_proxies names the user in this header (e.g.
    # "X-Forwarded-User"); only existing users are believed, and only from those addresses,
    # which are also the only peers whose X-Forwarded-For is taken as the client address.
    trusted_header: str | None = Field(None, pattern=r"^[A-Za-z0-9-]{1,100}$")
    trusted_proxies: list[str] = []

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (e.g. 10.0.0.0/8)") from None
        return value


class LoggingConfig(Section):
    format: Literal["json", "console"] = "console"
    level: Literal["debug", "info", "warning", "error"] = "info"


class RetentionConfig(Section):
    completed: Duration = 7 * 86400.0
    cancelled: Duration = 7 * 86400.0
    discarded: Duration = 30 * 86400.0
    # Audit log rows (and expired login sessions) are deleted after this.
    audit: Duration = 365 * 86400.0
    interval: Duration = 60.0
    batch_size: int = Field(5_000, ge=1)


class LifelineConfig(Section):
    heartbeat_interval: Duration = 5.0
    rescue_after: Duration = 30.0
    max_rescues: int = Field(3, ge=1)
    # An event loop that runs no callback for this long is a stall: logged, counted in /metrics.
    stall_warning: Duration = Field(1.0, gt=0)


class CronEntryConfig(Section):
    name: str
    schedule: str
    timezone: str = "UTC"
    job: dict[str, Any]
    enabled: bool = True
    overlap: Literal["allow", "skip"] = "allow"
    catch_up: Duration = 0.0


AlertMetric = Literal["backlog", "oldest_waiting", "failure_rate", "no_consumer", "cron_missed", "node_lost"]
# Metrics whose value is a count of things that are wrong: without a threshold, one is enough.
ALERT_COUNT_METRICS = frozenset({"no_consumer", "cron_missed", "node_lost"})
# Which filter each metric takes (README, "Alerts").
ALERT_FILTERS: dict[str, frozenset[str]] = {
    "backlog": frozenset({"queue"}), "oldest_waiting": frozenset({"queue"}),
    "failure_rate": frozenset({"queue", "definition"}), "no_consumer": frozenset({"queue"}),
    "cron_missed": frozenset({"definition"}), "node_lost": frozenset({"queue"}),
}
# failure_rate and node_lost look back over ``window``; unset: ``for``, at least this.
ALERT_MIN_WINDOW = 300.0


class AlertNotify(Section):
    """Where an alert's transitions go (``notify = { email = "...", webhook = "https://..." }``);
    unset: the ``failure_notification`` targets."""

    email: str | None = None
    webhook: str | None = None

    @field_validator("email", "webhook")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must be a non-empty string")
        return value

    @field_validator("webhook")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class AlertConfig(Section):
    """One ``[[alerts]]`` table: fires when ``metric`` (filtered by ``queue`` or
    ``definition``) stays above ``threshold`` for ``for`` seconds; recovers when it is not
    above it any more. See the README's "Alerts" section."""

    name: str
    metric: AlertMetric
    queue: str | None = None
    definition: str | None = None
    threshold: float | None = None
    for_: Duration = Field(0.0, alias="for", ge=0)
    window: Duration | None = Field(None, gt=0)
    notify: AlertNotify | None = None

    @model_validator(mode="before")
    @classmethod
    def _duration_threshold(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("threshold"), str) and data.get("metric") != "oldest_waiting":
            raise ValueError(f"alert {data.get('name')!r}: 'threshold' must be a number "
                             "(a duration such as '10m' only for oldest_waiting)")
        return data

    @field_validator("for_", "window", "threshold", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _fits_metric(self) -> AlertConfig:
        problem = path_segment_problem(self.name)
        if problem:
            raise ValueError(f"alert name {self.name!r} {problem}")
        for key in ("queue", "definition"):
            if getattr(self, key) is not None and key not in ALERT_FILTERS[self.metric]:
                allowed = " or ".join(sorted(ALERT_FILTERS[self.metric]))
                raise ValueError(f"alert {self.name!r}: '{key}' does not apply to metric {self.metric} "
                                 f"(it takes {allowed})")
        if self.queue is not None and self.definition is not None:
            raise ValueError(f"alert {self.name!r}: give 'queue' or 'definition', not both")
        if self.threshold is None and self.metric not in ALERT_COUNT_METRICS:
            raise ValueError(f"alert {self.name!r}: metric {self.metric} needs a 'threshold'")
        if self.metric == "failure_rate" and self.threshold is not None and not 0 <= self.threshold < 1:
            raise ValueError(f"alert {self.name!r}: 'threshold' of failure_rate is a share from 0 to 1 "
                             f"(0.05 is 5 %), not {self.threshold}")
        if self.threshold is not None and self.threshold < 0:
            raise ValueError(f"alert {self.name!r}: 'threshold' must not be negative")
        return self

    @property
    def limit(self) -> float:
        """The value the metric must exceed."""
        return self.threshold if self.threshold is not None else 0.0

    @property
    def look_back(self) -> float:
        """Seconds failure_rate and node_lost look back over."""
        return self.window if self.window is not None else max(self.for_, ALERT_MIN_WINDOW)


class Config(Section):
    """The whole configuration. Build it with :func:`load_config`.

    Example::

        config = load_config("config/jobengine.toml", env={"JOBENGINE_QUEUES__DEFAULT__CONCURRENCY": "20"})
        config.queues["default"].concurrency  # 20
    """

    database_url: str | None = None
    # LISTEN needs a session: behind a transaction pooler, point this at Postgres itself.
    listen_url: str | None = None
    # asyncpg's per-connection prepared-statement cache; 0 for PgBouncer < 1.21 in transaction mode.
    statement_cache_size: int = Field(100, ge=0)
    schema_name: str = Field("jobengine", alias="schema", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    node_name: str | None = None
    modules: list[str] = []
    # ``secrets = ["A", "B"]`` (usable anywhere) or ``[secrets.A] hosts = [...], kinds = [...]``.
    secrets: dict[str, SecretScope] = {}
    queues: dict[str, QueueConfig] = {}
    poll_interval: Duration = 1.0
    shutdown_grace: Duration = 15.0
    query_timeout: Duration = 10.0
    pool_size: int = Field(10, ge=2)
    embedded_data_dir: str = ".jobengine/pgdata"
    failure_notification: dict[str, Any] | None = None
    smtp: SmtpConfig = Field(default_factory=SmtpConfig)
    ssh: SshConfig = Field(default_factory=SshConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    lifeline: LifelineConfig = Field(default_factory=LifelineConfig)
    cron: list[CronEntryConfig] = []
    alerts: list[AlertConfig] = []
    # How often the alerts are evaluated (by one node at a time, whichever the database picks).
    alerts_interval: Duration = Field(15.0, gt=0)
    # Where the config file lives; templates are read from ``base_dir / "templates"``.
    base_dir: Path = Path(".")

    @field_validator(
        "poll_interval", "shutdown_grace", "query_timeout", "alerts_interval", mode="before"
    )
    @classmethod
    def _durations(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("secrets", mode="before")
    @classmethod
    def _secret_names(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return {name: {} for name in value}
        return value

    @model_validator(mode="after")
    def _unique_cron_names(self) -> Config:
        for what, name in [*(("queue", q) for q in self.queues), *(("cron entry", e.name) for e in self.cron)]:
            problem = path_segment_problem(name)
            if problem:
                raise ValueError(f"{what} name {name!r} {problem}")
        names = [entry.name for entry in self.cron]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"cron entry names must be unique; repeated: {', '.join(duplicates)}")
        alerts = [alert.name for alert in self.alerts]
        repeated = sorted({name for name in alerts if alerts.count(name) > 1})
        if repeated:
            raise ValueError(f"alert names must be unique; repeated: {', '.join(repeated)}")
        return self

    @property
    def templates_dir(self) -> Path:
        return self.base_dir / "templates"


def _duration_fields_before(data: Any, section: type[BaseModel]) -> Any:
    if not isinstance(data, dict):
        return data
    converted = dict(data)
    for name, info in section.model_fields.items():
        key = info.alias or name
        if info.annotation is Duration and isinstance(converted.get(key), str):
            converted[key] = parse_duration(converted[key])
    return converted


def _coerce_durations(raw: dict[str, Any]) -> dict[str, Any]:
    sections: dict[str, type[BaseModel]] = {
        "smtp": SmtpConfig, "ssh": SshConfig, "http": HttpConfig,
        "retention": RetentionConfig, "lifeline": LifelineConfig, "dashboard": DashboardConfig,
    }
    result = dict(raw)
    for key, section in sections.items():
        if key in result:
            result[key] = _duration_fields_before(result[key], section)
    if isinstance(result.get("cron"), list):
        result["cron"] = [_duration_fields_before(entry, CronEntryConfig) for entry in result["cron"]]
    return result


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """Nested settings from ``JOBENGINE_A__B=value`` variables (``__`` separates levels).

    Values are read as JSON when they parse (numbers, booleans, lists), else as strings.
    """
    overrides: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name.startswith(ENV_NOT_SETTINGS):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX):].split("__")]
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} conflicts with another override")
        node[path[-1]] = _env_value(value, _is_text_setting(path))
    return overrides


def _is_text_setting(path: list[str]) -> bool:
    """True when the setting at ``path`` takes text, so ``123456`` or ``null`` stay text."""
    model: Any = Config
    for part in path:
        fields = {info.alias or name: info for name, info in model.model_fields.items()}
        info = fields.get(part)
        if info is None:
            return False  # a queue name, or an unknown key that validation will name
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            continue
        return annotation in (str, str | None)
    return False


def _env_value(value: str, text: bool) -> Any:
    if text:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read, merge and validate the configuration.

    ``path`` None means ``$JOBENGINE_CONFIG``, else ``config/jobengine.toml`` if it
    exists, else defaults only. ``env`` defaults to ``os.environ``.
    Raises :class:`ConfigError` naming the bad key.
    """
    env = os.environ if env is None else env
    explicit = path is not None or "JOBENGINE_CONFIG" in env
    file = Path(path if path is not None else env.get("JOBENGINE_CONFIG", "config/jobengine.toml"))
    raw: dict[str, Any] = {}
    if file.exists():
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: invalid TOML: {exc}") from exc
        raw["base_dir"] = file.resolve().parent
    elif explicit:
        raise ConfigError(f"config file {file} does not exist")
    if "base_dir" in raw and not isinstance(raw["base_dir"], Path):
        raise ConfigError(f"{file}: unknown key 'base_dir'")
    raw = _merge(raw, env_overrides(env))
    if "DATABASE_URL" in env and "database_url" not in raw:
        raw["database_url"] = env["DATABASE_URL"]
    if overrides:
        raw = _merge(raw, overrides)
    return build_config(raw, source=str(file))


def build_config(settings: Mapping[str, Any], *, source: str = "settings") -> Config:
    """Validate a settings mapping (as the TOML file would hold it) into a Config."""
    try:
        return Config.model_validate(_coerce_durations(dict(settings)))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def _describe(exc: ValidationError, source: str) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'")
        else:
            lines.append(f"'{key}': {error['msg']}")
    return f"invalid configuration ({source}): " + "; ".join(lines)

"""Job documents: every seed example as written, field mapping, and errors that name the field."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.core.documents import (
    DocumentError,
    classify_payload,
    is_document,
    loads_document_text,
    parse_document,
    spec_to_document,
)
from engine.core.job import JobSpec, UniqueSpec
from tests.support.tools import missing

# The seed sits in the project's shared folder beside the repo (../shared/seeds; a worktree
# is one level further down), never at an absolute machine path.
SEED_NAME = "000_30c3509de9884d17.txt"
SEED = next((folder / "shared" / "seeds" / SEED_NAME for folder in Path(__file__).resolve().parents
             if (folder / "shared" / "seeds" / SEED_NAME).exists()), Path("../shared/seeds") / SEED_NAME)

# The seed's payload examples, verbatim, with the kind the seed shows them for.
SEED_PAYLOADS = [
    ("mail", """{
  "to": "user@example.com",
  "subject": "게임 업데이트 알림",
  "template": "game-update",
  "data": {
    "playerName": "홍길동",
    "updateVersion": "1.2.0",
    "newFeatures": ["새로운 던전", "아이템 강화 시스템"]
  }
}"""),
    ("mail", """{
  "to": "{{email}}",
  "subject": "Gatrix에 오신 것을 환영합니다!",
  "template": "welcome",
  "data": {
    "username": "{{username}}",
    "loginUrl": "https://gatrix.example.com/login",
    "supportEmail": "support@gatrix.com"
  }
}"""),
    ("mail", """{
  "to": "{{email}}",
  "subject": "게임 서버 점검 안내",
  "template": "maintenance-notice",
  "data": {
    "maintenanceTime": "2024-01-15 02:00-06:00",
    "affectedServices": ["게임 서버", "채팅 서버"],
    "estimatedDuration": "4시간"
  }
}"""),
    ("http", """{
  "method": "POST",
  "url": "https://api.example.com/webhook",
  "headers": {
    "Authorization": "Bearer {{apiToken}}",
    "Content-Type": "application/json"
  },
  "body": {
    "event": "user_registration",
    "userId": "{{userId}}",
    "timestamp": "{{timestamp}}"
  }
}"""),
    ("http", """{
  "method": "PUT",
  "url": "https://analytics.example.com/api/stats",
  "headers": {
    "X-API-Key": "{{analyticsKey}}"
  },
  "body": {
    "gameId": "uwo",
    "date": "{{date}}",
    "activeUsers": "{{activeUsers}}",
    "newRegistrations": "{{newRegistrations}}"
  }
}"""),
    ("http", """{
  "method": "POST",
  "url": "https://payment.example.com/api/transactions",
  "headers": {
    "Authorization": "Bearer {{paymentToken}}"
  },
  "body": {
    "transactionId": "{{transactionId}}",
    "amount": "{{amount}}",
    "currency": "KRW",
    "userId": "{{userId}}"
  }
}"""),
    ("ssh", """{
  "host": "game-server-01.example.com",
  "port": 22,
  "username": "admin",
  "command": "sudo systemctl restart game-server",
  "timeout": 30000
}"""),
    ("ssh", """{
  "host": "{{serverHost}}",
  "username": "{{sshUser}}",
  "command": "cd /opt/game && ./restart-server.sh {{serverId}}",
  "timeout": 60000
}"""),
    ("ssh", """{
  "host": "{{logServer}}",
  "username": "{{sshUser}}",
  "command": "find /var/log/game -name '*.log' -mtime +7 -delete",
  "timeout": 30000
}"""),
    ("ssh", """{
  "host": "{{dbServer}}",
  "username": "{{sshUser}}",
  "command": "mysqldump -u {{dbUser}} -p{{dbPass}} {{dbName}} > /backup/{{dbName}}_$(date +%Y%m%d).sql",
  "timeout": 300000
}"""),
    ("log", """{
  "level": "info",
  "message": "사용자 로그인 성공",
  "context": {
    "userId": "{{userId}}",
    "ipAddress": "{{ipAddress}}",
    "userAgent": "{{userAgent}}"
  },
  "tags": ["authentication", "user-activity"]
}"""),
    ("log", """{
  "level": "warn",
  "message": "비정상적인 로그인 시도 감지",
  "context": {
    "ipAddress": "{{ipAddress}}",
    "attemptCount": "{{attemptCount}}",
    "lastAttempt": "{{lastAttempt}}"
  },
  "tags": ["security", "authentication", "suspicious-activity"]
}"""),
    ("log", """{
  "level": "info",
  "message": "서버 성능 메트릭",
  "context": {
    "serverId": "{{serverId}}",
    "cpuUsage": "{{cpuUsage}}",
    "memoryUsage": "{{memoryUsage}}",
    "responseTime": "{{responseTime}}"
  },
  "tags": ["performance", "monitoring", "metrics"]
}"""),
]

CRITICAL_BACKUP = """{
  "jobType": "critical-backup",
  "failureNotification": {
    "email": "admin@example.com",
    "webhook": "https://hooks.slack.com/services/..."
  }
}"""

PRIORITY = """{
  "priority": 10,  // 높은 우선순위
  "delay": 5000,   // 5초 지연
  "attempts": 3    // 최대 3회 재시도
}"""

CHAINING = """{
  "jobType": "backup-database",
  "onSuccess": {
    "jobType": "notify-backup-complete",
    "data": {
      "backupFile": "{{backupFile}}"
    }
  }
}"""

CONDITIONAL = """{
  "condition": "{{serverLoad}} < 50",
  "jobType": "maintenance-task"
}"""


# --- the seed, as written ---


@pytest.mark.parametrize("kind, text", SEED_PAYLOADS, ids=[kind for kind, _ in SEED_PAYLOADS])
def test_seed_payloads_are_the_data_of_a_job_of_their_kind(kind: str, text: str) -> None:
    payload = loads_document_text(text)
    assert not is_document(payload)
    spec = classify_payload(payload, kind)
    assert spec.kind == kind
    assert spec.args == payload


def test_seed_failure_notification_document() -> None:
    spec = classify_payload(loads_document_text(CRITICAL_BACKUP))
    assert spec.kind == "critical-backup"
    assert spec.args == {}
    assert spec.failure_notification == {
        "email": "admin@example.com", "webhook": "https://hooks.slack.com/services/..."
    }


def test_seed_priority_example_with_comments_is_accepted_as_written() -> None:
    doc = loads_document_text(PRIORITY)
    assert doc == {"priority": 10, "delay": 5000, "attempts": 3}
    assert is_document(doc)
    spec = classify_payload(doc, "log")
    assert (spec.kind, spec.args, spec.priority, spec.delay, spec.max_attempts) == ("log", {}, 10, 5.0, 3)


def test_seed_chaining_document_keeps_the_follow_up_as_a_document() -> None:
    spec = classify_payload(loads_document_text(CHAINING))
    assert spec.kind == "backup-database"
    assert spec.on_success == {"jobType": "notify-backup-complete", "data": {"backupFile": "{{backupFile}}"}}
    follow_up = parse_document(spec.on_success)
    assert follow_up.args == {"backupFile": "{{backupFile}}"}


def test_seed_conditional_document() -> None:
    spec = classify_payload(loads_document_text(CONDITIONAL))
    assert (spec.kind, spec.condition) == ("maintenance-task", "{{serverLoad}} < 50")


def test_every_json_block_of_the_seed_is_covered() -> None:
    if not SEED.exists():
        missing(f"seed document {SEED_NAME} not found in ../shared/seeds")
    blocks = re.findall(r"```json\n(.*?)```", SEED.read_text(encoding="utf-8"), re.DOTALL)
    ours = [text for _, text in SEED_PAYLOADS] + [CRITICAL_BACKUP, PRIORITY, CHAINING, CONDITIONAL]
    assert len(blocks) == len(ours) == 17
    assert sorted(block.strip() for block in blocks) == sorted(ours)
    for block in blocks:
        loads_document_text(block)


# --- classification ---


def test_a_payload_needs_a_kind_and_a_document_may_not_contradict_it() -> None:
    with pytest.raises(DocumentError, match="jobType: required"):
        classify_payload({"level": "info", "message": "hi"})
    with pytest.raises(DocumentError, match="jobType"):
        classify_payload({"jobType": "mail", "data": {}}, "log")
    assert classify_payload({"jobType": "log", "data": {"message": "hi"}}, "log").args == {"message": "hi"}
    assert classify_payload({}, "log").args == {}
    with pytest.raises(DocumentError, match="JSON object"):
        classify_payload([1, 2], "log")


def test_a_document_of_document_keys_only_is_a_document() -> None:
    spec = classify_payload({"data": {"message": "hi"}, "queue": "logs"}, "log")
    assert (spec.args, spec.queue) == ({"message": "hi"}, "logs")


# --- fields ---


def test_every_field_maps_to_the_job_spec() -> None:
    doc = {
        "jobType": "http",
        "data": {"url": "https://example.com"},
        "queue": "webhooks",
        "priority": -5,
        "scheduledAt": "2024-01-15T02:00:00+09:00",
        "attempts": 7,
        "timeout": 1500,
        "tags": ["a", "b"],
        "vars": {"userId": 7},
        "unique": {"keys": ["url"], "period": 60, "states": ["available", "scheduled"]},
        "onFailure": {"jobType": "log", "data": {"message": "failed"}},
        "condition": "{{userId}} > 0",
        "failureNotification": {"email": "ops@example.com"},
        "backoff": {"type": "fixed", "delay": 2000},
        "dependsOn": [11, 12],
    }
    spec = parse_document(doc)
    assert spec == JobSpec(
        kind="http",
        args={"url": "https://example.com"},
        queue="webhooks",
        priority=-5,
        scheduled_at=datetime(2024, 1, 14, 17, 0, tzinfo=UTC),
        max_attempts=7,
        timeout=1.5,
        tags=("a", "b"),
        vars={"userId": 7},
        unique=UniqueSpec(keys=("url",), period=60, states=("available", "scheduled")),
        on_failure={"jobType": "log", "data": {"message": "failed"}},
        condition="{{userId}} > 0",
        failure_notification={"email": "ops@example.com"},
        backoff={"type": "fixed", "delay": 2000},
        depends_on=(11, 12),
    )
    assert parse_document(spec_to_document(spec)) == spec


def test_round_trip_of_the_seed_documents() -> None:
    for text in (CRITICAL_BACKUP, CHAINING, CONDITIONAL):
        spec = parse_document(loads_document_text(text))
        assert parse_document(spec_to_document(spec)) == spec
    spec = classify_payload(loads_document_text(PRIORITY), "log")
    assert spec_to_document(spec) == {"jobType": "log", "priority": 10, "delay": 5000, "attempts": 3}


def test_unique_true_and_naive_times() -> None:
    spec = parse_document({"jobType": "x", "unique": True, "scheduledAt": "2024-01-15T02:00:00"})
    assert spec.unique == UniqueSpec()
    assert spec.scheduled_at == datetime(2024, 1, 15, 2, 0, tzinfo=UTC)


def test_kind_is_used_when_the_document_has_none() -> None:
    assert parse_document({"data": {"a": 1}}, kind="log").kind == "log"
    with pytest.raises(DocumentError, match="jobType: required"):
        parse_document({"data": {"a": 1}})


# --- errors name the field ---


@pytest.mark.parametrize("doc, path", [
    ({"jobType": "x", "dleay": 5000}, "dleay: unknown field (did you mean 'delay'?)"),
    ({"jobType": "x", "job_type": "y"}, "job_type: unknown field"),
    ({"jobType": "x", "delay": -1}, "delay:"),
    ({"jobType": "x", "delay": "5000"}, "delay:"),
    ({"jobType": "x", "priority": True}, "priority:"),
    ({"jobType": "x", "priority": 1.5}, "priority:"),
    ({"jobType": "x", "attempts": 0}, "attempts:"),
    ({"jobType": "x", "timeout": 0}, "timeout:"),
    ({"jobType": "x", "data": [1]}, "data:"),
    ({"jobType": "x", "tags": ["ok", 3]}, "tags[1]:"),
    ({"jobType": "x", "scheduledAt": 1705284000}, "scheduledAt:"),
    ({"jobType": "x", "scheduledAt": "tomorrow"}, "scheduledAt:"),
    ({"jobType": "x", "delay": 1, "scheduledAt": "2024-01-15T02:00:00Z"}, "not both"),
    ({"jobType": "x", "unique": {"kyes": ["a"]}}, "unique.kyes: unknown field"),
    ({"jobType": "x", "unique": {"states": ["running"]}}, "unique.states[0]:"),
    ({"jobType": "x", "backoff": {"type": "linear"}}, "backoff.type:"),
    ({"jobType": "x", "failureNotification": {}}, "failureNotification: give an email"),
    ({"jobType": "x", "failureNotification": {"webhook": "ftp://x"}}, "failureNotification.webhook:"),
    ({"jobType": "x", "failureNotification": {"email": "nobody"}}, "failureNotification.email:"),
    ({"jobType": "x", "dependsOn": [0]}, "dependsOn[0]:"),
    ({"jobType": "bad kind!"}, "jobType: use"),
    ({"jobType": "x", "queue": ""}, "queue: use"),
    ({"jobType": "x", "condition": "{{load}} <"}, "condition: invalid condition"),
    ({"jobType": "x", "condition": "__import__('os')"}, "condition: invalid condition"),
    ({"jobType": "x", "onSuccess": {"data": {}}}, "onSuccess.jobType: required"),
    ({"jobType": "x", "onSuccess": {"jobType": "y", "delay": -1}}, "onSuccess.delay:"),
    ({"jobType": "x", "onFailure": {"jobType": "y", "onSuccess": {"jobType": "z", "dleay": 1}}},
     "onFailure.onSuccess.dleay: unknown field"),
    ({"jobType": "x", "onSuccess": "notify"}, "onSuccess:"),
])
def test_errors_name_the_field(doc: dict[str, Any], path: str) -> None:
    with pytest.raises(DocumentError) as caught:
        parse_document(doc)
    assert isinstance(caught.value, ValueError)
    assert path in str(caught.value)


def test_nul_characters_are_refused_with_their_path() -> None:
    with pytest.raises(DocumentError, match=r"data\.to\[0\]: contains a NUL"):
        parse_document({"jobType": "mail", "data": {"to": ["a\x00@x.io"]}})
    with pytest.raises(DocumentError, match=r"vars: a key contains a NUL"):
        parse_document({"jobType": "mail", "vars": {"a\x00": 1}})
    with pytest.raises(DocumentError, match=r"onSuccess\.data\.x: contains a NUL"):
        parse_document({"jobType": "mail", "onSuccess": {"jobType": "log", "data": {"x": "\x00"}}})
    with pytest.raises(DocumentError, match=r"data\.to: contains a NUL"):
        classify_payload(loads_document_text('{"to": "a\\u0000b"}'), "mail")


def test_chains_deeper_than_the_limit_are_refused() -> None:
    doc: dict[str, Any] = {"jobType": "leaf"}
    for _ in range(20):
        doc = {"jobType": "step", "onSuccess": doc}
    with pytest.raises(DocumentError, match="deep"):
        parse_document(doc)


# --- text ---


def test_comments_outside_strings_are_ignored_and_inside_strings_kept() -> None:
    text = """/* a job */ {
      "jobType": "http", // the kind
      "data": {"url": "https://example.com/a//b", "note": "/* not a comment */"}
    }"""
    doc = loads_document_text(text)
    assert doc["data"] == {"url": "https://example.com/a//b", "note": "/* not a comment */"}


def test_invalid_text_names_line_and_column() -> None:
    with pytest.raises(DocumentError, match="line 3 column"):
        loads_document_text('{\n  "jobType": "x", // c\n  "delay": ,\n}')
    with pytest.raises(DocumentError, match="delay: given twice"):
        loads_document_text('{"delay": 1, "delay": 2}')
    with pytest.raises(DocumentError, match="NaN"):
        loads_document_text('{"delay": NaN}')
    with pytest.raises(DocumentError):
        loads_document_text('{"jobType": "x" /* unterminated }')

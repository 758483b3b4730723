"""The mail handler against a real aiosmtpd server (plain and STARTTLS)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from collections import Counter
from email.policy import compat32
from email.utils import formataddr, parseaddr
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from engine.core.job import Job
from engine.core.outcomes import PermanentError
from handlers import mail
from handlers.mail import (
    ADDRESS,
    PLAIN_ADDRESS,
    WIRE_POLICY,
    MailArgs,
    MailDeliveryError,
    build_message,
    default_sender,
    flatten,
)
from tests.handlers import mail_reference
from tests.handlers.conftest import SmtpPeer
from tests.support.waiting import wait_until

GAME_UPDATE = {
    "to": "user@example.com",
    "subject": "게임 업데이트 알림",
    "template": "game-update",
    "data": {"playerName": "홍길동", "updateVersion": "1.2.0", "newFeatures": ["새로운 던전", "아이템 강화 시스템"]},
}
WELCOME = {
    "to": "{{email}}",
    "subject": "Gatrix에 오신 것을 환영합니다!",
    "template": "welcome",
    "data": {"username": "{{username}}", "loginUrl": "https://gatrix.example.com/login",
             "supportEmail": "support@gatrix.com"},
}
MAINTENANCE = {
    "to": "{{email}}",
    "subject": "게임 서버 점검 안내",
    "template": "maintenance-notice",
    "data": {"maintenanceTime": "2024-01-15 02:00-06:00", "affectedServices": ["게임 서버", "채팅 서버"],
             "estimatedDuration": "4시간"},
}


def smtp_settings(peer: SmtpPeer, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": peer.port, "start_tls": False, "from": "ops@gatrix.test", **extra}


async def test_game_update_template_arrives_rendered_as_text_and_html(make_harness, smtp_peer) -> None:
    harness = make_harness(smtp=smtp_settings(smtp_peer))
    result = await harness.run("mail", GAME_UPDATE, job_id=42)

    assert result["accepted"] == ["user@example.com"]
    assert result["messageId"] == "<jobengine.jobengine.42@gatrix.test>"
    (envelope,) = smtp_peer.messages
    assert envelope.mail_from == "ops@gatrix.test" and envelope.rcpt_tos == ["user@example.com"]
    message = smtp_peer.parsed()
    assert message["Subject"] == "게임 업데이트 알림"
    assert message["Message-ID"] == result["messageId"]
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "홍길동님" in text and "1.2.0" in text and "- 새로운 던전\n- 아이템 강화 시스템" in text
    assert "<li>아이템 강화 시스템</li>" in html


async def test_seed_templates_render_with_placeholders_from_vars(make_harness, smtp_peer) -> None:
    harness = make_harness(smtp=smtp_settings(smtp_peer))
    await harness.run("mail", WELCOME, vars={"email": "new@player.test", "username": "<b>kim</b>"})
    await harness.run("mail", MAINTENANCE, vars={"email": "all@player.test"})

    welcome, maintenance = smtp_peer.parsed(0), smtp_peer.parsed(1)
    assert welcome["To"] == "new@player.test"
    assert "<b>kim</b>님" in welcome.get_body(("plain",)).get_content()
    # autoescape: a user-supplied value cannot inject markup into the HTML part
    assert "&lt;b&gt;kim&lt;/b&gt;" in welcome.get_body(("html",)).get_content()
    assert "<li>채팅 서버</li>" in maintenance.get_body(("html",)).get_content()


async def test_starttls_with_auth_password_from_environment(make_harness, smtp_tls_peer, monkeypatch) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "smtp-pass-123")
    settings = smtp_settings(smtp_tls_peer, start_tls=True, ca_file=smtp_tls_peer.ca_file,
                             username="ops", password_env="TEST_SMTP_PASSWORD")
    harness = make_harness(smtp=settings)
    result = await harness.run("mail", GAME_UPDATE)

    assert result["accepted"] == ["user@example.com"]
    assert smtp_tls_peer.logins == [("ops", "smtp-pass-123")]
    assert "smtp-pass-123" not in harness.log_buffer.getvalue()
    assert smtp_tls_peer.parsed()["Subject"] == "게임 업데이트 알림"

    await harness.run("mail", {**GAME_UPDATE, "to": "second@example.com"})  # the same TLS session
    assert len(smtp_tls_peer.messages) == 2 and smtp_tls_peer.sessions == 1
    assert smtp_tls_peer.logins == [("ops", "smtp-pass-123")]


async def test_plain_send_to_a_starttls_only_server_is_refused_for_good(make_harness, smtp_tls_peer) -> None:
    harness = make_harness(smtp=smtp_settings(smtp_tls_peer))
    with pytest.raises(PermanentError, match="530"):
        await harness.run("mail", GAME_UPDATE)
    assert smtp_tls_peer.messages == []


def test_header_injection_in_a_literal_subject_is_refused_at_enqueue() -> None:
    with pytest.raises(ValidationError, match="subject"):
        MailArgs.model_validate({"to": "a@x.test", "subject": "hi\r\nBcc: evil@x", "text": "t"})


@pytest.mark.parametrize("field,value", [
    ("subject", "hi\r\nBcc: evil@x"),
    ("to", "victim@x.test\r\nBcc: evil@x"),
    ("from", "ops@x.test\nBcc: evil@x"),
    ("cc", "a@x.test\rBcc: evil@x"),
])
async def test_header_injection_through_a_placeholder_delivers_nothing(
    make_harness, smtp_peer, field: str, value: str
) -> None:
    args: dict[str, Any] = {"to": "victim@x.test", "subject": "hello", "text": "body", field: "{{v}}"}
    harness = make_harness(smtp=smtp_settings(smtp_peer))
    with pytest.raises(PermanentError, match=f"{field}.*line break"):
        await harness.run("mail", args, vars={"v": value})
    assert smtp_peer.messages == []


async def test_the_handler_itself_refuses_a_line_break_in_a_header(make_harness, smtp_peer) -> None:
    # Even args that skipped validation (model_construct) never reach the server.
    harness = make_harness(smtp=smtp_settings(smtp_peer))
    args = MailArgs.model_construct(to=["a@x.test"], subject="hi\r\nBcc: evil@x", cc=[], bcc=[], reply_to=[])
    with pytest.raises(PermanentError, match="Subject"):
        build_message(Job(id=1, queue="default", kind="mail", args=args), harness.config, args,
                      "ops@x.test", "text", None)


async def test_missing_template_variable_is_a_clear_permanent_error(make_harness, smtp_peer) -> None:
    harness = make_harness(smtp=smtp_settings(smtp_peer))
    args = {**GAME_UPDATE, "data": {"playerName": "홍길동"}}
    with pytest.raises(PermanentError, match="updateVersion"):
        await harness.run("mail", args)
    assert smtp_peer.messages == []


@pytest.mark.parametrize("name", ["../secrets", "/etc/passwd", "a/b", ".hidden"])
def test_template_name_must_be_a_plain_name(name: str) -> None:
    with pytest.raises(ValidationError, match="template"):
        MailArgs.model_validate({"to": "a@x.test", "subject": "s", "template": name})


async def test_unknown_template_fails_naming_it(make_harness, smtp_peer) -> None:
    harness = make_harness(smtp=smtp_settings(smtp_peer))
    with pytest.raises(PermanentError, match="no-such-template"):
        await harness.run("mail", {**GAME_UPDATE, "template": "no-such-template"})


async def test_plain_bodies_cc_bcc_and_reply_to(make_harness, smtp_peer) -> None:
    harness = make_harness(smtp=smtp_settings(smtp_peer))
    args = {"to": ["a@x.test", "Bee <b@x.test>"], "cc": "c@x.test", "bcc": ["hidden@x.test"],
            "from": "Robot <robot@jobs.test>", "replyTo": "help@x.test", "subject": "plain", "text": "hello"}
    result = await harness.run("mail", args)

    assert result["accepted"] == ["a@x.test", "b@x.test", "c@x.test", "hidden@x.test"]
    message = smtp_peer.parsed()
    assert message["Bcc"] is None and "hidden" not in smtp_peer.messages[0].content.decode()
    assert message["Cc"] == "c@x.test" and message["Reply-To"] == "help@x.test"
    assert message["From"] == "Robot <robot@jobs.test>"
    assert message.get_content() == "hello\n"
    assert smtp_peer.messages[0].mail_from == "robot@jobs.test"


async def test_refused_recipients(make_harness, smtp_peer) -> None:
    harness = make_harness(smtp=smtp_settings(smtp_peer))
    partial = await harness.run("mail", {"to": ["ok@x.test", "nobody@refused.test"], "subject": "s", "text": "t"})
    assert partial["accepted"] == ["ok@x.test"] and partial["refused"]["nobody@refused.test"].startswith("550")

    with pytest.raises(PermanentError, match="550"):
        await harness.run("mail", {"to": "nobody@refused.test", "subject": "s", "text": "t"})
    with pytest.raises(MailDeliveryError, match="450"):
        await harness.run("mail", {"to": "later@busy.test", "subject": "s", "text": "t"})
    # A refusal is the message's, not the session's: one session served all three.
    await harness.run("mail", {"to": "ok@x.test", "subject": "s", "text": "t"})
    assert smtp_peer.sessions == 1


async def test_unreachable_server_is_retryable(make_harness, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        harness = make_harness(smtp={"host": "127.0.0.1", "port": port, "from": "ops@x.test", "timeout": 5})
        with pytest.raises(MailDeliveryError, match="failed"):
            await harness.run("mail", {"to": "a@x.test", "subject": "s", "text": "t"})


# --- sessions reused across mails ---


def recipients_seen(peer: SmtpPeer) -> Counter[str]:
    return Counter(rcpt for envelope in peer.messages for rcpt in envelope.rcpt_tos)


async def test_mails_one_after_another_share_one_session(make_harness, smtp_peer) -> None:
    harness = make_harness(smtp=smtp_settings(smtp_peer))
    for i in range(20):
        await harness.run("mail", {"to": f"player{i}@x.test", "subject": "s", "text": "t"})

    assert len(smtp_peer.messages) == 20 and smtp_peer.sessions == 1
    assert smtp_peer.quits == 0  # still open for the next mail


async def test_mails_at_once_open_at_most_one_session_each_and_then_reuse_them(make_harness, smtp_peer) -> None:
    harness = make_harness(smtp=smtp_settings(smtp_peer))
    await asyncio.gather(*(harness.run("mail", {"to": f"a{i}@x.test", "subject": "s", "text": "t"})
                           for i in range(6)))
    opened = smtp_peer.sessions
    assert 1 <= opened <= 6
    await asyncio.gather(*(harness.run("mail", {"to": f"b{i}@x.test", "subject": "s", "text": "t"})
                           for i in range(opened)))

    assert smtp_peer.sessions == opened and len(smtp_peer.messages) == 6 + opened


async def test_a_connection_dropped_under_a_message_is_replaced_and_the_mail_arrives_once(
    make_harness, smtp_peer
) -> None:
    smtp_peer.drop_at_data = {3}  # the third message: read, then the connection is cut unanswered
    harness = make_harness(smtp=smtp_settings(smtp_peer))
    for i in range(5):
        await harness.run("mail", {"to": f"player{i}@x.test", "subject": "s", "text": "t"})

    assert recipients_seen(smtp_peer) == Counter(f"player{i}@x.test" for i in range(5))
    assert smtp_peer.sessions == 2


async def test_a_second_lost_session_leaves_the_mail_to_the_job_retry(make_harness, smtp_peer) -> None:
    smtp_peer.drop_at_data = {1, 2}
    harness = make_harness(smtp=smtp_settings(smtp_peer))
    with pytest.raises(MailDeliveryError, match="failed"):
        await harness.run("mail", {"to": "a@x.test", "subject": "s", "text": "t"})
    assert smtp_peer.messages == [] and smtp_peer.sessions == 2


async def test_a_session_the_server_closed_while_idle_is_replaced_before_sending(make_harness, smtp_peer) -> None:
    harness = make_harness(smtp=smtp_settings(smtp_peer))
    await harness.run("mail", {"to": "first@x.test", "subject": "s", "text": "t"})
    smtp_peer.connections[0].transport.close()  # e.g. the server's idle timeout
    await wait_until(lambda: smtp_peer.closed == 1)

    await harness.run("mail", {"to": "second@x.test", "subject": "s", "text": "t"})
    assert recipients_seen(smtp_peer) == Counter(["first@x.test", "second@x.test"])
    assert smtp_peer.sessions == 2 and smtp_peer.data_seen == 2


async def test_an_idle_session_is_closed_with_quit_after_idle_close(make_harness, smtp_peer) -> None:
    harness = make_harness(smtp=smtp_settings(smtp_peer, idle_close=0.2))
    await harness.run("mail", {"to": "a@x.test", "subject": "s", "text": "t"})
    await wait_until(lambda: smtp_peer.quits == 1 and smtp_peer.closed == 1, timeout=5)

    await harness.run("mail", {"to": "b@x.test", "subject": "s", "text": "t"})
    assert smtp_peer.sessions == 2


def test_enqueue_accepts_the_seed_payloads_and_names_a_misspelled_field() -> None:
    for payload in (GAME_UPDATE, WELCOME, MAINTENANCE):
        MailArgs.model_validate(payload)
    with pytest.raises(ValidationError, match="subjet"):
        MailArgs.model_validate({"to": "a@x.test", "subjet": "s", "text": "t"})
    with pytest.raises(ValidationError, match="at least one address"):
        MailArgs.model_validate({"to": [], "subject": "s", "text": "t"})
    with pytest.raises(ValidationError, match="not an email address"):
        MailArgs.model_validate({"to": "not-an-address", "subject": "s", "text": "t"})


# --- TLS for logins, certificates, Unicode line breaks ---


async def test_a_login_over_a_plain_connection_is_refused(make_harness, smtp_peer, monkeypatch) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "smtp-pass-123")
    harness = make_harness(smtp=smtp_settings(smtp_peer, username="ops", password_env="TEST_SMTP_PASSWORD"))
    with pytest.raises(PermanentError, match=r"not TLS.*allow_plaintext_auth"):
        await harness.run("mail", GAME_UPDATE)
    auto = make_harness(smtp={**smtp_settings(smtp_peer, username="ops", password_env="TEST_SMTP_PASSWORD"),
                              "start_tls": None})
    with pytest.raises(PermanentError, match="does not offer STARTTLS"):
        await auto.run("mail", GAME_UPDATE)
    assert smtp_peer.logins == [] and smtp_peer.messages == []


async def test_a_plain_login_when_the_config_says_so(make_harness, smtp_peer, monkeypatch) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "smtp-pass-123")
    harness = make_harness(smtp=smtp_settings(smtp_peer, username="ops", password_env="TEST_SMTP_PASSWORD",
                                              allow_plaintext_auth=True))
    assert (await harness.run("mail", GAME_UPDATE))["accepted"] == ["user@example.com"]
    assert smtp_peer.logins == [("ops", "smtp-pass-123")]


async def test_a_certificate_that_does_not_verify_is_permanent(make_harness, smtp_tls_peer) -> None:
    harness = make_harness(smtp=smtp_settings(smtp_tls_peer, start_tls=True))  # the test CA is not trusted
    with pytest.raises(PermanentError, match="certificate verification failed"):
        await harness.run("mail", GAME_UPDATE)
    assert smtp_tls_peer.messages == []


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c"])
async def test_unicode_line_separators_in_headers_are_refused(make_harness, smtp_peer, separator: str) -> None:
    with pytest.raises(ValidationError, match="line breaks"):
        MailArgs.model_validate({"to": "a@x.test", "subject": f"hi{separator}Bcc: evil@x", "text": "t"})
    harness = make_harness(smtp=smtp_settings(smtp_peer))
    with pytest.raises(PermanentError, match=r"subject.*line break"):
        await harness.run("mail", {"to": "a@x.test", "subject": "{{v}}", "text": "t"},
                          vars={"v": f"hi{separator}Bcc: evil@x"})
    assert smtp_peer.messages == []


async def test_mail_without_a_sender_uses_the_default_one(make_harness, smtp_peer) -> None:
    settings = smtp_settings(smtp_peer)
    del settings["from"]
    harness = make_harness(smtp=settings)
    result = await harness.run("mail", {"to": "ops@example.com", "subject": "job failed", "text": "t"})
    assert result["accepted"] == ["ops@example.com"]
    assert smtp_peer.messages[0].mail_from == default_sender()
    assert default_sender().startswith("jobengine@") and " " not in default_sender()


@pytest.mark.parametrize("address", [
    "player1@example.com", "a.b-c+tag@mail.example.co.kr", "o'hara{x}|y~@ex-ample.org", "x@localhost",
    "Hong Gildong <hong@example.com>", "hong@example.com (Hong)", '"a b"@example.com', "a..b@example.com",
    "홍길동@example.com", " spaced@example.com ", "a@b@c.com", "not-an-address",
])
def test_a_bare_address_and_the_parsed_one_give_the_same_mailbox(address: str) -> None:
    # _mailbox hands a bare dot-atom address back without parsing it: the same result
    # parseaddr + formataddr give, and the same refusals for the rest.
    name, addr = parseaddr(address)
    try:
        parsed = formataddr((name, addr)) if ADDRESS.match(addr) else None
    except ValueError:  # formataddr refuses a non-ASCII address, and so does validation
        parsed = None
    if PLAIN_ADDRESS.fullmatch(address):
        assert parsed == address
    try:
        got = MailArgs.model_validate({"to": address, "subject": "s", "text": "t"}).to
    except ValidationError:
        got = None
    assert got == (None if parsed is None else [parsed])


# --- the compat32 builder: what arrives, and the same message as the EmailMessage one ---


KOREAN_SUBJECT = "[Gatrix] 게임 업데이트 알림: 새로운 던전과 아이템 강화 시스템이 추가되었습니다 (1.2.0)"
KOREAN_TEXT = "안녕하세요, 홍길동님!\n\n게임이 1.2.0 버전으로 업데이트되었습니다.\n" + "긴 줄 " * 400 + "\n끝"
KOREAN_HTML = "<p>안녕하세요, <strong>홍길동</strong>님!</p>\r\n<p>" + "가" * 1500 + "</p>"


def wire_bytes(peer: SmtpPeer, index: int = 0) -> bytes:
    content = peer.messages[index].content
    assert isinstance(content, bytes)
    return content


@pytest.mark.parametrize("bodies", [
    {"text": KOREAN_TEXT}, {"html": KOREAN_HTML}, {"text": KOREAN_TEXT, "html": KOREAN_HTML},
], ids=["text", "html", "text+html"])
async def test_korean_subject_names_and_bodies_arrive_intact(make_harness, smtp_peer, bodies: dict[str, str]) -> None:
    harness = make_harness(smtp=smtp_settings(smtp_peer))
    args = {"to": ["홍길동 <a@b.c>", "plain@x.test"], "cc": "김철수 <kim@x.test>", "replyTo": "고객센터 <help@x.test>",
            "from": "Gatrix 운영팀 <ops@gatrix.test>", "subject": KOREAN_SUBJECT, **bodies}
    result = await harness.run("mail", args, job_id=7)

    assert result["accepted"] == ["a@b.c", "plain@x.test", "kim@x.test"]
    raw = wire_bytes(smtp_peer)
    assert raw.isascii() and max(len(line) for line in raw.split(b"\r\n")) <= 998
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == KOREAN_SUBJECT
    assert message["To"] == "홍길동 <a@b.c>, plain@x.test" and message["Cc"] == "김철수 <kim@x.test>"
    assert message["From"] == "Gatrix 운영팀 <ops@gatrix.test>" and message["Reply-To"] == "고객센터 <help@x.test>"
    assert message["To"].addresses[0].display_name == "홍길동"
    assert message["Message-ID"] == result["messageId"] == "<jobengine.jobengine.7@gatrix.test>"
    assert message["Date"].datetime.tzinfo is not None
    assert smtp_peer.messages[0].mail_from == "ops@gatrix.test"
    expected = {"plain": bodies.get("text"), "html": bodies.get("html")}
    kinds = [subtype for subtype, body in expected.items() if body is not None]
    assert message.get_content_type() == ("multipart/alternative" if len(kinds) == 2 else f"text/{kinds[0]}")
    for subtype in kinds:
        part = message.get_body((subtype,))
        assert part is not None and part.get_content_charset() == "utf-8"
        # Line ends as LF and a final one, as EmailMessage.set_content made them.
        assert part.get_content() == expected[subtype].replace("\r\n", "\n") + "\n"  # type: ignore[union-attr]


async def test_a_retried_mail_carries_the_same_message_id(make_harness, smtp_peer) -> None:
    harness = make_harness(smtp=smtp_settings(smtp_peer))
    first = await harness.run("mail", GAME_UPDATE, job_id=99)
    second = await harness.run("mail", GAME_UPDATE, job_id=99)
    assert first["messageId"] == second["messageId"] == "<jobengine.jobengine.99@gatrix.test>"
    assert smtp_peer.parsed(0)["Message-ID"] == smtp_peer.parsed(1)["Message-ID"] == first["messageId"]


EQUIVALENCE_CASES: dict[str, dict[str, Any]] = {
    "ascii text": {"to": "a@x.test", "subject": "Your weekly report", "text": "hello\nworld"},
    "ascii long subject": {"to": "a@x.test", "subject": "word " * 40 + "end", "text": "t\r\nu\rv"},
    "korean text": {"to": "홍길동 <hong@x.test>", "subject": "게임 업데이트 알림", "text": KOREAN_TEXT},
    "korean long subject": {"to": "a@x.test", "subject": KOREAN_SUBJECT * 3, "text": "본문"},
    "html only": {"to": "a@x.test", "subject": "html", "html": KOREAN_HTML},
    "empty html": {"to": "a@x.test", "subject": "empty", "html": ""},
    "text and html": {"to": "a@x.test", "subject": "둘 다", "text": KOREAN_TEXT, "html": KOREAN_HTML},
    "template": GAME_UPDATE,
    "cc, reply-to, bcc": {"to": ["a@x.test", "Bee <b@x.test>"], "cc": "c@x.test, 김 <d@x.test>",
                          "bcc": ["hidden@x.test"], "replyTo": "help@x.test", "subject": "s", "text": "t"},
    "names with commas and quotes": {
        "to": ['"Kim, Jae" <kim@x.test>', 'O\'Hara "the boss" <oh@x.test>', "Dr. Who <who@x.test>"],
        "from": '"Ops, Team" <ops@x.test>', "replyTo": '"홍, 길동" <hong@x.test>', "subject": 'a "quoted", b',
        "text": "t"},
    "many recipients": {"to": [f"Player {i} <player{i}@players.example.com>" for i in range(12)],
                        "subject": "s", "text": "t"},
}


def received(raw: bytes) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Decoded header values and (content type, content) of each body part, as a receiver
    reads them. Content line ends as LF: the old builder's base64 parts carried CRLF inside
    the base64 (its 8bit ones LF), the new one's carry LF; a reader sees the same text."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    headers: dict[str, Any] = {name: message[name] for name in ("From", "To", "Cc", "Reply-To", "Subject",
                                                                "Message-ID", "Bcc")}
    headers["Date"] = message["Date"].datetime
    headers["Content-Type"] = message.get_content_type()
    parts = [(part.get_content_type(), part.get_content().replace("\r\n", "\n"))
             for part in message.walk() if not part.is_multipart()]
    return headers, parts


@pytest.mark.parametrize("case", list(EQUIVALENCE_CASES))
async def test_the_compat32_message_reads_as_the_email_message_one(make_harness, monkeypatch, case: str) -> None:
    date = "Thu, 03 Dec 2026 18:00:00 GMT"
    monkeypatch.setattr(mail, "formatdate", lambda **_: date)
    monkeypatch.setattr(mail_reference, "formatdate", lambda **_: date)
    harness = make_harness(smtp={"from": "ops@gatrix.test"})
    env = await harness.resources.get(mail.mail_templates)
    args = MailArgs.model_validate(EQUIVALENCE_CASES[case])
    job = Job(id=5, queue="default", kind="mail", args=args)
    text, html = mail.render_bodies(env, args)
    sender = mail._mailbox(args.from_ or "ops@gatrix.test")

    new = mail.flatten(build_message(job, harness.config, args, sender, text, html))
    old = mail_reference.old_flatten(mail_reference.old_build_message(job, harness.config, args, sender, text, html))
    assert received(new) == received(old)
    headers, parts = received(new)
    assert headers["Bcc"] is None and b"hidden" not in new
    assert parts and all(content.endswith("\n") for _, content in parts)
    assert new.isascii() and max(len(line) for line in new.split(b"\r\n")) <= 998


@pytest.mark.parametrize("value", [
    "a@x.test", "a  b   c", "tab\there", '"Kim, J" <k@x.y>, Bee <b@x.test>', "x" * 69, "x" * 70,
    "ends with space ", " leading space", "a ; b , c", "=?utf-8?b?7ZmN6ri464+Z?= <a@b.c>", "", "word " * 30,
])
def test_the_wire_policy_folds_headers_as_compat32_does(value: str) -> None:
    # Its shortcut for a line that needs no folding gives the bytes compat32 gives.
    assert WIRE_POLICY.fold_binary("Subject", value) == compat32.clone(linesep="\r\n").fold_binary("Subject", value)


def test_a_multipart_boundary_is_new_for_every_message(make_harness) -> None:
    harness = make_harness(smtp={"from": "ops@gatrix.test"})
    args = MailArgs.model_validate({"to": "a@x.test", "subject": "s", "text": "t", "html": "<p>t</p>"})
    job = Job(id=1, queue="default", kind="mail", args=args)
    boundaries = {build_message(job, harness.config, args, "ops@gatrix.test", "t", "<p>t</p>").get_boundary()
                  for _ in range(20)}
    assert len(boundaries) == 20
    raw = flatten(build_message(job, harness.config, args, "ops@gatrix.test", "t", "<p>t</p>"))
    assert raw.count(b"--==jobengine.") == 3

"""The http handler against a real aiohttp server on 127.0.0.1 (allow-listed)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from pydantic import ValidationError

from engine.core.outcomes import PermanentError, RetryAfter
from handlers.http import HttpArgs, HttpRequestError, parse_retry_after
from tests.handlers.conftest import HttpPeer

ALLOW_LOCAL = {"allow": ["127.0.0.1"]}


def local(make_harness, **http: Any):
    return make_harness(http={**ALLOW_LOCAL, **http}, secrets={"API_TOKEN": "tok-s3cret-value"})


async def test_seed_webhook_post_sends_json_body_headers_and_idempotency_key(make_harness, http_peer) -> None:
    harness = local(make_harness)
    args = {
        "method": "POST",
        "url": http_peer.url("/echo"),
        "headers": {"Authorization": "Bearer {{apiToken}}", "Content-Type": "application/json"},
        "body": {"event": "user_registration", "userId": "{{userId}}", "timestamp": "{{timestamp}}"},
    }
    result = await harness.run("http", args, vars={"apiToken": "abc", "userId": 7}, job_id=555)

    assert result["status"] == 200
    seen = result["body"]  # the echo came back as JSON and was parsed
    assert seen["method"] == "POST"
    assert seen["headers"]["Authorization"] == "Bearer abc"
    assert seen["headers"]["Idempotency-Key"] == "555"
    assert seen["headers"]["User-Agent"] == "jobengine"
    body = json.loads(seen["body"])
    assert body["userId"] == 7 and body["event"] == "user_registration" and body["timestamp"].endswith("Z")
    assert result["headers"]["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_methods(make_harness, http_peer, method: str) -> None:
    result = await local(make_harness).run("http", {"method": method.lower(), "url": http_peer.url("/echo")})
    assert result["status"] == 200 and http_peer.requests[-1]["method"] == method


async def test_head_has_no_body(make_harness, http_peer) -> None:
    result = await local(make_harness).run("http", {"method": "HEAD", "url": http_peer.url("/echo")})
    assert result["status"] == 200 and result["body"] == ""


async def test_text_body_and_user_headers_win(make_harness, http_peer) -> None:
    args = {"method": "PUT", "url": http_peer.url("/echo"), "body": "hello {{name}}",
            "headers": {"Idempotency-Key": "mine", "User-Agent": "custom/1"}}
    result = await local(make_harness).run("http", args, vars={"name": "kim"})
    seen = result["body"]
    assert seen["body"] == "hello kim"
    assert seen["headers"]["Content-Type"] == "text/plain; charset=utf-8"
    assert seen["headers"]["Idempotency-Key"] == "mine" and seen["headers"]["User-Agent"] == "custom/1"


async def test_text_response_keeps_selected_headers_only(make_harness, http_peer) -> None:
    result = await local(make_harness).run("http", {"url": http_peer.url("/text")})
    assert result["body"] == "plain ☃ text"
    assert result["headers"]["X-Request-Id"] == "req-1"
    assert "Set-Cookie" not in result["headers"]


async def test_body_is_capped(make_harness, http_peer) -> None:
    result = await local(make_harness, max_body_bytes=1000).run("http", {"url": http_peer.url("/big")})
    assert result["truncated"] is True and len(result["body"]) == 1000


async def test_5xx_is_retryable(make_harness, http_peer) -> None:
    with pytest.raises(HttpRequestError, match="503") as caught:
        await local(make_harness).run("http", {"url": http_peer.url("/status/503")})
    assert not isinstance(caught.value, PermanentError) and caught.value.status == 503


async def test_429_with_retry_after_seconds(make_harness, http_peer) -> None:
    with pytest.raises(RetryAfter) as caught:
        await local(make_harness).run("http", {"url": http_peer.url("/status/429?retry_after=120")})
    assert caught.value.seconds == 120


async def test_503_with_retry_after_http_date(make_harness, http_peer) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    url = http_peer.url("/status/503") + "?retry_after=" + when.replace(" ", "%20").replace(",", "%2C")
    with pytest.raises(RetryAfter) as caught:
        await local(make_harness).run("http", {"url": url})
    assert 80 <= caught.value.seconds <= 91


async def test_408_is_retryable_and_404_is_permanent(make_harness, http_peer) -> None:
    harness = local(make_harness)
    with pytest.raises(HttpRequestError, match="408"):
        await harness.run("http", {"url": http_peer.url("/status/408")})
    with pytest.raises(PermanentError, match="404"):
        await harness.run("http", {"url": http_peer.url("/status/404")})


async def test_expected_status(make_harness, http_peer) -> None:
    harness = local(make_harness)
    result = await harness.run("http", {"url": http_peer.url("/status/404"), "expectedStatus": [200, 404]})
    assert result["status"] == 404
    with pytest.raises(PermanentError, match="200"):
        await harness.run("http", {"url": http_peer.url("/echo"), "expectedStatus": 201})


async def test_timeout_is_retryable_and_the_request_is_abandoned(make_harness, http_peer) -> None:
    with pytest.raises(HttpRequestError, match=r"timed out after 0.3s"):
        await local(make_harness).run("http", {"url": http_peer.url("/hang"), "timeout": 300})
    await asyncio.wait_for(http_peer.hung.wait(), 10)  # the server saw the client go


async def test_redirects_are_followed_and_credentials_dropped_across_origins(make_harness, http_peer) -> None:
    harness = make_harness(http={"allow": ["127.0.0.1", "localhost"]}, secrets={"API_TOKEN": "tok-s3cret-value"})
    other_origin = http_peer.url("/echo", host="localhost")
    args = {"method": "POST", "url": http_peer.url(f"/redirect?code=303&to={other_origin}"),
            "headers": {"Authorization": "Bearer x", "X-Api-Key": "k", "X-Trace": "{{API_TOKEN}}", "X-Plain": "p"},
            "body": {"a": 1}}
    result = await harness.run("http", args)
    seen = result["body"]
    assert seen["method"] == "GET" and seen["body"] == ""
    assert result["url"] == other_origin
    assert {"Authorization", "X-Api-Key", "X-Trace"}.isdisjoint(seen["headers"])
    assert seen["headers"]["X-Plain"] == "p"


@pytest.mark.parametrize("code", [307, 308])
async def test_a_body_is_never_resent_to_another_origin(make_harness, http_peer, code: int) -> None:
    harness = make_harness(http={"allow": ["127.0.0.1", "localhost"]}, secrets={"API_TOKEN": "tok-s3cret-value"})
    other_origin = http_peer.url("/echo", host="localhost")
    args = {"method": "POST", "url": http_peer.url(f"/redirect?code={code}&to={other_origin}"),
            "body": {"token": "{{API_TOKEN}}"}}
    with pytest.raises(PermanentError, match=rf"{code} redirect to another origin .*re-send the request body"):
        await harness.run("http", args)
    assert [seen["path"] for seen in http_peer.requests] == [f"/redirect?code={code}&to={other_origin}"]


async def test_307_keeps_method_and_body_on_the_same_origin(make_harness, http_peer) -> None:
    args = {"method": "PUT", "url": http_peer.url("/redirect?code=307&to=/echo"), "body": "same",
            "headers": {"Authorization": "Bearer x"}}
    seen = (await local(make_harness).run("http", args))["body"]
    assert (seen["method"], seen["body"], seen["headers"]["Authorization"]) == ("PUT", "same", "Bearer x")


async def test_too_many_redirects(make_harness, http_peer: HttpPeer) -> None:
    loop = http_peer.url("/redirect?to=/redirect%3Fto%3D/echo")
    with pytest.raises(PermanentError, match="more than 1 redirects"):
        await local(make_harness, max_redirects=1).run("http", {"url": loop})


def test_enqueue_accepts_seed_payloads_with_placeholders() -> None:
    HttpArgs.model_validate({"method": "PUT", "url": "https://analytics.example.com/api/stats",
                             "headers": {"X-API-Key": "{{analyticsKey}}"},
                             "body": {"gameId": "uwo", "date": "{{date}}", "activeUsers": "{{activeUsers}}"}})
    HttpArgs.model_validate({"url": "{{baseUrl}}/hook", "timeout": "{{t}}", "expectedStatus": "{{codes}}"})
    for bad in ({"url": "ftp://x"}, {"url": "https://x", "method": "BREW"}, {"url": "https://x", "timeot": 1},
                {"url": "https://x", "headers": {"X": "a\r\nInjected: 1"}}):
        with pytest.raises(ValidationError):
            HttpArgs.model_validate(bad)


def test_retry_after_parsing() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_retry_after("30", now) == 30
    assert parse_retry_after("Mon, 01 Jan 2024 00:01:00 GMT", now) == 60
    assert parse_retry_after("Sun, 31 Dec 2023 00:00:00 GMT", now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("99999999", now) == 86_400


async def test_a_rendered_value_that_looks_like_a_placeholder_is_not_a_url(make_harness) -> None:
    # Rendering is one pass: {{other}} arrives as text, and the run-time check refuses it.
    with pytest.raises(PermanentError, match="url"):
        await local(make_harness).run("http", {"url": "{{u}}"}, vars={"u": "{{other}}"})


LONG_SECRET = 'Tok"en\\with-Quotes/and?Amp&=' + "Z9" * 20


def _fragments(secret: str, size: int = 10) -> list[str]:
    return [secret[i:i + size] for i in range(len(secret) - size)]


async def test_a_rejected_response_snippet_is_redacted_before_it_is_cut(make_harness, http_peer) -> None:
    harness = make_harness(http={"allow": ["127.0.0.1"]}, secrets={"T": LONG_SECRET})
    args = {"method": "POST", "url": http_peer.url("/echo"), "body": "{{T}}", "expectedStatus": 201,
            "headers": {"X-Pad": "p" * 180}}
    with pytest.raises(Exception, match="returned 200") as caught:
        await harness.run("http", args)
    message = harness.secrets.redact_text(str(caught.value))  # what the executor stores
    assert not any(frag in message for frag in _fragments(LONG_SECRET) + _fragments(json.dumps(LONG_SECRET)[1:-1]))

"""The ``http`` handler: one HTTP request (redirects followed by hand, each hop re-checked by
the SSRF guard), with the response's status, selected headers and capped body as result.

Example payload (docs/job-documents.md has them all)::

    {"method": "POST", "url": "https://api.example.com/webhook",
     "headers": {"Authorization": "Bearer {{apiToken}}", "Content-Type": "application/json"},
     "body": {"event": "user_registration", "userId": "{{userId}}"}}

Outcomes: a 2xx (or a status in ``expectedStatus``) completes; 5xx, 408, 429, network errors
and timeouts are retried (``Retry-After`` honoured); any other status fails permanently.
Every request carries ``Idempotency-Key: <job id>`` so a retried POST can be de-duplicated.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Annotated, Any

import aiohttp
from multidict import CIMultiDict
from pydantic import AfterValidator, BeforeValidator, Field
from yarl import URL

from engine.core.config import Config
from engine.core.context import HandlerContext
from engine.core.job import Job
from engine.core.outcomes import PermanentError, RetryAfter
from handlers.args import ArgsModel, Templated, args_of, check_secret_target, shown
from handlers.ssrf import SCHEMES, AddressPolicy, GuardedResolver

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
RETRYABLE_STATUS = frozenset({408, 429})
RESULT_HEADERS = (
    "Content-Type", "Content-Length", "ETag", "Last-Modified", "Location", "Retry-After",
    "X-Request-Id", "Request-Id", "X-Correlation-Id",
)
# Headers that must not follow a redirect to another origin (besides any holding a secret).
CREDENTIAL_HEADER = re.compile(r"auth|cookie|token|key|secret|password|signature", re.IGNORECASE)
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
MAX_RETRY_AFTER = 86_400.0
ERROR_SNIPPET = 300


class HttpRequestError(Exception):
    """A retryable failure: a 5xx/408/429 reply, a network error or a timeout."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _method(value: str) -> str:
    if value.upper() not in METHODS:
        raise ValueError(f"method must be one of {', '.join(sorted(METHODS))}")
    return value.upper()


def _url(value: str) -> str:
    url = URL(value)
    if url.scheme not in SCHEMES or not url.host:
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


def _header_name(value: str) -> str:
    if not HEADER_NAME.match(value):
        raise ValueError(f"{shown(value, 60)} is not a valid header name")
    return value


def _header_value(value: str) -> str:
    if any(ch in value for ch in "\r\n\0"):
        raise ValueError("header values must not contain CR, LF or NUL")
    return value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, int) else value


def _statuses(codes: list[int]) -> list[int]:
    if not codes or any(not 100 <= code <= 599 for code in codes):
        raise ValueError("expected status codes must be between 100 and 599")
    return codes


HeaderName = Annotated[str, AfterValidator(_header_name)]
HeaderValue = Annotated[str, AfterValidator(_header_value)]
StatusCodes = Annotated[list[int], BeforeValidator(_as_list), AfterValidator(_statuses)]


class HttpArgs(ArgsModel):
    """Payload of an ``http`` job. ``timeout`` is in milliseconds (as in job documents);
    ``body``: an object or list is sent as JSON, a string as text.

    Example::

        HttpArgs.model_validate({"url": "https://x.test/hook", "body": {"a": 1}, "expectedStatus": 202})
    """

    method: Templated[Annotated[str, AfterValidator(_method)]] = "GET"
    url: Templated[Annotated[str, AfterValidator(_url)]]
    headers: Templated[dict[HeaderName, HeaderValue]] = {}
    body: dict[str, Any] | list[Any] | str | None = None
    timeout: Templated[Annotated[float, Field(gt=0, le=86_400_000)]] | None = None
    expected_status: Templated[StatusCodes] | None = Field(None, alias="expectedStatus")


@dataclass(frozen=True, slots=True)
class HttpClient:
    """The shared session (no cookie jar, no proxies from the environment) and its policy."""

    session: aiohttp.ClientSession
    policy: AddressPolicy


@asynccontextmanager
async def http_client(config: Config) -> AsyncIterator[HttpClient]:
    """One guarded aiohttp session per engine, closed at stop."""
    policy = AddressPolicy.from_lists(config.http.allow, config.http.deny)
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(policy), limit=100)
    # DummyCookieJar: jobs must not see each other's cookies; trust_env=False: a proxy
    # from the environment would connect on our behalf, bypassing the address check.
    async with aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        headers={"User-Agent": config.http.user_agent},
        timeout=aiohttp.ClientTimeout(total=None),  # each job's own deadline governs
    ) as session:
        yield HttpClient(session, policy)


async def http_request(job: Job, ctx: HandlerContext) -> dict[str, Any]:
    """Handler for kind ``http``: returns ``{"status", "url", "headers", "body", "truncated"}``.

    Example result::

        {"status": 200, "url": "https://x.test/hook", "headers": {"Content-Type": "application/json"},
         "body": {"ok": true}, "truncated": false}
    """
    args = args_of(job, HttpArgs)  # validated by the executor, once rendered
    client = await ctx.resources.get(http_client)
    seconds = args.timeout / 1000 if args.timeout is not None else ctx.config.http.timeout
    exchange = _Exchange(client, ctx, args, _request_headers(job, args))
    check_secret_target(ctx, job.kind, exchange.url.raw_host or "")  # before any connection
    try:
        async with asyncio.timeout(seconds):
            return await exchange.run()
    except TimeoutError:
        raise HttpRequestError(f"{args.method} {_safe(exchange.url)} timed out after {seconds:g}s") from None
    except aiohttp.InvalidURL as exc:
        raise PermanentError(f"{args.method} {_safe(exchange.url)}: invalid URL: {exc}") from None
    except aiohttp.ClientError as exc:
        raise HttpRequestError(f"{args.method} {_safe(exchange.url)} failed: {exc}") from None


def _request_headers(job: Job, args: HttpArgs) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict(args.headers)
    headers.setdefault("Idempotency-Key", str(job.id))
    if isinstance(args.body, dict | list):
        headers.setdefault("Content-Type", "application/json")
    elif isinstance(args.body, str):
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
    return headers


class _Exchange:
    """One request and the redirects it leads to."""

    def __init__(self, client: HttpClient, ctx: HandlerContext, args: HttpArgs, headers: CIMultiDict[str]):
        self.client, self.ctx, self.args = client, ctx, args
        self.method, self.url, self.headers = args.method, URL(args.url), headers
        self.body = _encode(args.body)
        self.expected = args.expected_status

    async def run(self) -> dict[str, Any]:
        limit = self.ctx.config.http.max_redirects
        for _hop in range(limit + 1):
            self.client.policy.check_url(self.url)
            async with self.client.session.request(
                self.method, self.url, headers=self.headers, data=self.body, allow_redirects=False
            ) as response:
                location = response.headers.get("Location")
                if response.status in REDIRECTS and location and not self._expected(response.status):
                    self._follow(response.status, location)
                    continue
                return await self._finish(response)
        raise PermanentError(f"{self.args.method} {_safe(URL(self.args.url))}: more than {limit} redirects")

    def _expected(self, status: int) -> bool:
        return status in self.expected if self.expected is not None else 200 <= status < 300

    def _follow(self, status: int, location: str) -> None:
        try:
            target = self.url.join(URL(location))
        except ValueError:
            raise PermanentError(f"redirect to an invalid Location {shown(location, 200)}") from None
        self.client.policy.check_url(target)
        if status == 303 or (status in (301, 302) and self.method == "POST"):
            # What browsers (and aiohttp) do: the follow-up is a GET without a body.
            self.method = "GET" if self.method != "HEAD" else "HEAD"
            self.body = None
            self.headers.popall("Content-Type", None)
        if (target.scheme, target.host, target.port) != (self.url.scheme, self.url.host, self.url.port):
            if self.body is not None:
                # A 307/308 (or a 301/302 of a PUT) keeps the body, and the body may hold
                # rendered secrets: it never goes to an origin the job did not name.
                raise PermanentError(
                    f"{self.method} {_safe(self.url)}: the {status} redirect to another origin "
                    f"({target.scheme}://{target.host}:{target.port}) would re-send the request body; refused"
                )
            for name in list(self.headers):
                if CREDENTIAL_HEADER.search(name) or self.ctx.secrets.contains_secret(self.headers[name]):
                    self.headers.popall(name, None)
        self.url = target

    async def _finish(self, response: aiohttp.ClientResponse) -> dict[str, Any]:
        status = response.status
        raw, truncated = await _read_capped(response, self.ctx.config.http.max_body_bytes)
        if self._expected(status):
            headers = response.headers
            return {
                "status": status,
                "url": str(self.url),
                "headers": {name: headers[name] for name in RESULT_HEADERS if name in headers},
                "body": _decode(response, raw, truncated),
                "truncated": truncated,
            }
        # Redacted whole, then cut: a secret cut in two would no longer match the redaction.
        snippet = self.ctx.secrets.redact_text(raw.decode("utf-8", "replace"))[:ERROR_SNIPPET]
        message = f"{self.method} {_safe(self.url)} returned {status} {response.reason or ''}: {snippet}"
        message = message.strip()
        if status in RETRYABLE_STATUS or status >= 500:
            delay = parse_retry_after(response.headers.get("Retry-After"))
            if delay is not None:
                raise RetryAfter(delay, message)
            raise HttpRequestError(message, status)
        raise PermanentError(message)


def _encode(body: dict[str, Any] | list[Any] | str | None) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body; a larger body is cut, never held whole."""
    data = bytearray()
    while len(data) <= limit:
        chunk = await response.content.read(limit + 1 - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data[:limit]), len(data) > limit


def _decode(response: aiohttp.ClientResponse, raw: bytes, truncated: bool) -> Any:
    try:
        text = raw.decode(response.charset or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        text = raw.decode("utf-8", "replace")
    if not truncated and (response.content_type.endswith("/json") or response.content_type.endswith("+json")):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP-date), capped at a day.

    Example::

        parse_retry_after("120")                             # 120.0
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT")   # 0.0 (in the past)
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delta, 0.0), MAX_RETRY_AFTER)


def _safe(url: URL) -> str:
    """The URL without query, fragment or credentials, for error messages."""
    try:
        return str(url.with_query(None).with_fragment(None).with_user(None))
    except ValueError:
        return "(invalid URL)"

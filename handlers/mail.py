"""The ``mail`` handler: render a template (or plain bodies) and send it over SMTP.

Example payload (docs/job-documents.md has them all)::

    {"to": "user@example.com", "subject": "게임 업데이트 알림", "template": "game-update",
     "data": {"playerName": "홍길동", "updateVersion": "1.2.0", "newFeatures": ["새로운 던전"]}}

``template`` names ``NAME.txt`` and/or ``NAME.html`` in the templates directory beside the
config file; both are rendered with jinja2 (HTML autoescaped, a missing variable is an error).
Settings come from ``[smtp]``; mails share SMTP sessions (handlers/smtp.py: one message at a
time each, reused, idle ones closed); the password is read from the environment variable
named by ``password_env`` when a session opens and never logged. The Message-ID derives from the job id, so
a retried send carries the same id and receivers can drop the duplicate.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import ssl
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from email.generator import BytesGenerator
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import Compat32
from email.utils import formataddr, formatdate, getaddresses, parseaddr
from io import BytesIO
from typing import Annotated, Any

import aiosmtplib
import jinja2
from jinja2.sandbox import SandboxedEnvironment
from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from engine.core.config import Config
from engine.core.context import HandlerContext
from engine.core.job import Job
from engine.core.outcomes import PermanentError
from handlers.args import ArgsModel, Templated, args_of, shown
from handlers.smtp import SmtpPool, SmtpSessionLost, smtp_pool, start_tls_setting

ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$")
# A bare dot-atom address (RFC 5322 atext, no name, no comment, no quoting): what parseaddr
# and formataddr hand back unchanged. Most mailboxes are like this, and parseaddr is most of
# a mail job's validation at enqueue (a mass mail validates one per player).
PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                           r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

# Messages are built with the email package's compat32 API (MIMEText, MIMEMultipart) and
# flattened once, to bytes, by its BytesGenerator: several times less CPU than EmailMessage
# under email.policy.SMTP, which parses every header into objects and refolds it, and which
# aiosmtplib's send_message flattened once more (a mass mail is bound by the worker's CPU per
# mail; python -m bench.mail_build measures both). For utf-8 the library chooses base64
# bodies, whose lines of 76 characters stay far inside SMTP's 998, and RFC 2047 encoded words
# for non-ASCII header text: a message is 7-bit ASCII, whether or not the server offers
# 8BITMIME.
BASE64 = "base64"


class _WirePolicy(Compat32):
    """compat32 with CRLF line ends (the bytes go to aiosmtplib's sendmail as they are on the
    wire), and without folding machinery for a header line that needs none: compat32 runs
    every header through email.header.Header (most of the flattening's CPU), and an ASCII
    value with no line break whose line fits in ``max_line_length`` comes out of it as it
    went in."""

    def fold_binary(self, name: str, value: Any) -> bytes:
        limit = self.max_line_length or 0
        if (isinstance(value, str) and value.isascii() and len(name) + len(value) + 2 <= limit
                and not has_line_break(value) and value[:1] not in (" ", "\t")):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


WIRE_POLICY = _WirePolicy(linesep="\r\n", mangle_from_=False)


class MailDeliveryError(Exception):
    """A temporary SMTP failure (4xx reply, connection or timeout): the job is retried."""


def has_line_break(value: str) -> bool:
    """True for CR, LF and every other character Python splits lines at (U+2028, U+2029,
    U+0085, VT, FF, ...): a header folded or re-encoded downstream could break at any."""
    return "\r" in value or "\n" in value or len(f"a{value}a".splitlines()) > 1


def _no_line_breaks(value: str) -> str:
    # A line break in a header value would start a new header (e.g. a hidden Bcc).
    if has_line_break(value):
        raise ValueError("must not contain line breaks (CR/LF, U+2028, U+2029, U+0085, ...)")
    return value


def _mailbox(value: str) -> str:
    if PLAIN_ADDRESS.fullmatch(value):
        return value
    _no_line_breaks(value)
    name, addr = parseaddr(value)
    if not ADDRESS.match(addr):
        raise ValueError(f"{shown(value)} is not an email address")
    return formataddr((name, addr))


def _mailbox_list(value: Any) -> Any:
    """``"a@x, b@y"`` or ``["a@x", ...]`` -> one entry per address."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        return items
    result: list[Any] = []
    for item in items:
        if isinstance(item, str) and "," in item and "{{" not in item:
            _no_line_breaks(item)
            result.extend(formataddr(pair) for pair in getaddresses([item]))
        else:
            result.append(item)
    return result


def _template_name(value: str) -> str:
    if not TEMPLATE_NAME.match(value):
        raise ValueError(f"{shown(value)} is not a template name (letters, digits, _ . -; no paths)")
    return value


HeaderText = Annotated[str, AfterValidator(_no_line_breaks)]
Mailbox = Annotated[str, AfterValidator(_mailbox)]
Mailboxes = Annotated[list[Templated[Mailbox]], BeforeValidator(_mailbox_list)]
TemplateName = Annotated[str, AfterValidator(_template_name)]


class MailArgs(ArgsModel):
    """Payload of a ``mail`` job. ``to``/``cc``/``bcc``/``replyTo``: an address or a list;
    either ``template`` (+ ``data``) or ``text`` and/or ``html``.

    Example::

        MailArgs.model_validate({"to": "{{email}}", "subject": "hi", "template": "welcome",
                                 "data": {"username": "{{username}}"}})
    """

    to: Templated[Mailboxes]
    subject: HeaderText
    template: Templated[TemplateName] | None = None
    # default_factory: pydantic deep-copies a mutable default for every instance (slower).
    data: Templated[dict[str, Any]] = Field(default_factory=dict)
    text: str | None = None
    html: str | None = None
    cc: Templated[Mailboxes] = Field(default_factory=list)
    bcc: Templated[Mailboxes] = Field(default_factory=list)
    from_: Templated[Mailbox] | None = Field(None, alias="from")
    reply_to: Templated[Mailboxes] = Field(default_factory=list, alias="replyTo")

    @model_validator(mode="after")
    def _recipient_and_body(self) -> MailArgs:
        if isinstance(self.to, list) and not self.to:
            raise ValueError("'to' needs at least one address")
        if self.template is None and self.text is None and self.html is None:
            raise ValueError("give a template, or a text and/or html body")
        if self.template is not None and (self.text is not None or self.html is not None):
            raise ValueError("give either a template or text/html bodies, not both")
        return self


@asynccontextmanager
async def mail_templates(config: Config) -> AsyncIterator[jinja2.Environment]:
    """One jinja2 environment per engine (it caches compiled templates)."""
    yield SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(config.templates_dir),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "htm"), default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


async def send_mail(job: Job, ctx: HandlerContext) -> dict[str, Any]:
    """Handler for kind ``mail``: returns ``{"messageId", "accepted", "refused"}``.

    Example result::

        {"messageId": "<jobengine.jobengine.42@example.com>", "accepted": ["user@example.com"], "refused": {}}
    """
    args = args_of(job, MailArgs)  # validated by the executor, once rendered
    text, html = render_bodies(await ctx.resources.get(mail_templates), args)
    sender = args.from_ or ctx.config.smtp.from_ or default_sender()
    message = build_message(job, ctx.config, args, _mailbox(sender), text, html)
    recipients = _unique(_address(a) for a in [*args.to, *args.cc, *args.bcc])
    refused = await deliver(await ctx.resources.get(smtp_pool), flatten(message), _address(sender), recipients)
    accepted = [r for r in recipients if r not in refused]
    # debug: at info a mass mail would write a process log line and an attempt log row per
    # mail, saying what the result already says.
    ctx.logger.debug("mail sent", job_id=job.id, accepted=len(accepted), refused=len(refused))
    return {"messageId": message["Message-ID"], "accepted": accepted, "refused": refused}


@functools.cache
def default_sender() -> str:
    """``jobengine@<hostname>``: the sender of mail with neither a ``from`` nor ``[smtp].from``
    (what cron and Django do), so a failure notification is never dropped for want of one.
    Looked up once: getfqdn may ask DNS, and would block the event loop for every mail."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.getfqdn() or socket.gethostname()).strip(".-")
    return f"jobengine@{host or 'localhost'}"


def render_bodies(env: jinja2.Environment, args: MailArgs) -> tuple[str | None, str | None]:
    """The text and html bodies: the template's parts, or the payload's own."""
    if args.template is None:
        return args.text, args.html
    text = _render_part(env, f"{args.template}.txt", args.data)
    html = _render_part(env, f"{args.template}.html", args.data)
    if text is None and html is None:
        raise PermanentError(
            f"mail template {args.template!r} not found: expected {args.template}.txt or "
            f"{args.template}.html in the templates directory"
        )
    return text, html


def _render_part(env: jinja2.Environment, name: str, data: dict[str, Any]) -> str | None:
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound:
        return None
    except jinja2.TemplateSyntaxError as exc:
        raise PermanentError(f"mail template {name}: syntax error line {exc.lineno}: {exc.message}") from None
    try:
        return template.render(data)
    except jinja2.UndefinedError as exc:
        raise PermanentError(f"mail template {name}: {exc.message} (add it to the job's data)") from None
    except jinja2.TemplateError as exc:
        raise PermanentError(f"mail template {name}: {exc}") from None


def build_message(
    job: Job, config: Config, args: MailArgs, sender: str, text: str | None, html: str | None
) -> Message:
    """The MIME message (text/plain, text/html, or multipart/alternative of both); Bcc
    recipients go in the envelope only. ``flatten`` makes the bytes to send."""
    headers = {"From": sender, "To": ", ".join(args.to), "Subject": args.subject}
    if args.cc:
        headers["Cc"] = ", ".join(args.cc)
    if args.reply_to:
        headers["Reply-To"] = ", ".join(args.reply_to)
    domain = _address(sender).rpartition("@")[2] or "jobengine.invalid"
    headers["Message-ID"] = f"<jobengine.{config.schema_name}.{job.id}@{domain}>"
    headers["Date"] = formatdate(usegmt=True)
    for name, value in headers.items():
        # Validation already refused these; checked again right where headers are made.
        if has_line_break(value):
            raise PermanentError(f"mail header {name} contains a line break; nothing was sent")
    message: Message
    if text is not None and html is not None:
        parts = [_text_part(text, "plain", top=False), _text_part(html, "html", top=False)]
        # No line of a base64 part can start with "--": a boundary of our own cannot clash,
        # and the generator's search of the parts for one (a regex compiled per message) is
        # not needed.
        base64 = all(part["Content-Transfer-Encoding"] == BASE64 for part in parts)
        message = MIMEMultipart("alternative", boundary=f"==jobengine.{os.urandom(8).hex()}==" if base64 else None,
                                _subparts=parts)
    elif text is not None:
        message = _text_part(text, "plain")
    else:
        message = _text_part(html or "", "html")
    for name, value in headers.items():
        # Addresses are ASCII here (validation formats them, RFC 2047-encoding non-ASCII
        # names); compat32 writes a non-ASCII subject as utf-8 encoded words (email.header),
        # and folds long lines.
        message[name] = value
    return message


def _text_part(body: str, subtype: str, *, top: bool = True) -> MIMEText:
    # Line ends as LF and a final one, as EmailMessage.set_content made them.
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    if not body.endswith("\n"):
        body += "\n"
    part = MIMEText(body, subtype, "utf-8")
    if not top:
        del part["MIME-Version"]  # the multipart's own is the message's
    return part


def flatten(message: Message) -> bytes:
    """The message as sent: 7-bit ASCII with CRLF line ends (no Bcc: never a header)."""
    with BytesIO() as out:
        BytesGenerator(out, policy=WIRE_POLICY).flatten(message)
        return out.getvalue()


async def deliver(
    pool: SmtpPool, message: bytes, sender: str, recipients: list[str]
) -> dict[str, str]:
    """Send a flattened message over a pooled SMTP session; returns the refused recipients
    (code and reply) when some were accepted."""
    smtp = pool.settings
    try:
        refused = await pool.send(message, sender, recipients)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        replies = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        if all(500 <= r.code < 600 for r in exc.recipients):
            raise PermanentError(f"every recipient was refused: {replies}") from None
        raise MailDeliveryError(f"recipients temporarily refused: {replies}") from None
    except aiosmtplib.SMTPResponseException as exc:
        if 500 <= exc.code < 600:
            raise PermanentError(f"SMTP server {smtp.host} refused: {exc.code} {exc.message}") from None
        raise MailDeliveryError(f"SMTP server {smtp.host} replied {exc.code} {exc.message}") from None
    except (aiosmtplib.SMTPException, OSError, SmtpSessionLost) as exc:
        if _certificate_refused(exc):
            # A certificate that does not verify will not verify on the next attempt either.
            raise PermanentError(f"SMTP server {smtp.host}:{smtp.port}: TLS certificate verification failed: "
                                 f"{exc}; fix [smtp].ca_file or the server's certificate") from None
        if start_tls_setting(smtp) and "STARTTLS" in str(exc) and "not supported" in str(exc):
            raise PermanentError(f"SMTP server {smtp.host}:{smtp.port} does not offer STARTTLS, which sending "
                                 "the password needs ([smtp].allow_plaintext_auth permits a plain login)") from None
        raise MailDeliveryError(f"SMTP delivery via {smtp.host}:{smtp.port} failed: {exc}") from None
    return {addr: f"{code} {text}" for addr, (code, text) in refused.items()}


def _certificate_refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):  # aiosmtplib wraps the ssl error
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _address(mailbox: str) -> str:
    """The address of a mailbox (``"Name <a@x>"`` -> ``a@x``), without parsing a bare one."""
    if PLAIN_ADDRESS.fullmatch(mailbox):
        return mailbox
    return parseaddr(mailbox)[1]


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))

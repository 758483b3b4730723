"""The mail handler's MIME builder as it was before the compat32 builder (the modern
``email`` API: ``EmailMessage`` under ``email.policy.SMTP``, ``set_content`` /
``add_alternative``, flattened by aiosmtplib): the reference the equivalence tests compare
the handler's messages with, and the "old" side of ``python -m bench.mail_build``."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from aiosmtplib.email import flatten_message

from engine.core.config import Config
from engine.core.job import Job
from engine.core.outcomes import PermanentError
from handlers.mail import MailArgs, has_line_break


def old_build_message(
    job: Job, config: Config, args: MailArgs, sender: str, text: str | None, html: str | None
) -> EmailMessage:
    """The MIME message; Bcc recipients go in the envelope only."""
    headers = {"From": sender, "To": ", ".join(args.to), "Subject": args.subject}
    if args.cc:
        headers["Cc"] = ", ".join(args.cc)
    if args.reply_to:
        headers["Reply-To"] = ", ".join(args.reply_to)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "jobengine.invalid"
    headers["Message-ID"] = f"<jobengine.{config.schema_name}.{job.id}@{domain}>"
    headers["Date"] = formatdate(usegmt=True)
    message = EmailMessage(policy=email.policy.SMTP)
    for name, value in headers.items():
        if has_line_break(value):
            raise PermanentError(f"mail header {name} contains a line break; nothing was sent")
        message[name] = value
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    else:
        message.set_content(html or "", subtype="html")
    return message


def old_flatten(message: EmailMessage) -> bytes:
    """What aiosmtplib's ``send_message`` sent to a server offering 8BITMIME."""
    return flatten_message(message, cte_type="8bit")

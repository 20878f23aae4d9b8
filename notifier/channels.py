"""How a notice goes out: e-mail (SMTP with STARTTLS), a signed webhook, or chat services through Apprise.

Each sender's ``send`` either returns (delivered) or raises: :class:`Permanent` when trying again cannot help
(a 4xx answer, a refused login, a server without STARTTLS), anything else when it may (a 5xx, a timeout, a
refused connection). Retries, their waits and their records are the service's (notifier.service).
"""

from __future__ import annotations

import asyncio
import email.policy
import hashlib
import hmac
import json
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Protocol

import aiohttp
import apprise

from common.service import one_line
from common.wire.schemas import Alert, iso_utc
from notifier.config import AppriseChannel, Channel, EmailChannel, WebhookChannel

SIGNATURE_HEADER = "X-Axiswatch-Signature"
DELIVERY_HEADER = "X-Axiswatch-Delivery"
# Python's folding of a long subject starts with a line break that readers show as a leading blank; a
# subject (under 600 characters: its fields are cut) fits SMTP's line limit whole.
MAIL_POLICY = email.policy.SMTP.clone(max_line_length=998)
FIELD_CHARS = 200  # of a text from the data (robot id, detector, who acknowledged) put in a notice
WHAT = {
    "open": "alert opened",
    "escalate": "alert escalated to ERROR",
    "maintenance_due": "maintenance due",
    "close": "alert closed",
    "reminder": "still open, not acknowledged",
}


class Permanent(Exception):
    """A delivery that another attempt cannot bring through."""


def shown(value: object) -> str:
    """A value from the data as it may appear in a notice: one line, not endless."""
    text = one_line(str(value))
    return text if len(text) <= FIELD_CHARS else text[:FIELD_CHARS] + "..."


@dataclass(frozen=True)
class Notice:
    delivery_id: int
    change: str  # open, escalate, maintenance_due, close, reminder-N
    channel: str
    alert: Alert
    raised_at: datetime

    @property
    def kind(self) -> str:
        return self.change.split("-", 1)[0]

    @property
    def title(self) -> str:
        a = self.alert
        return (
            f"axiswatch {WHAT[self.kind]}: robot {shown(a.robot_id)} axis {a.axis} "
            f"({a.severity.value}, {shown(a.detector)})"
        )

    @property
    def text(self) -> str:
        a = self.alert
        lines = [
            self.title,
            "",
            f"event:     {shown(a.event_id)}",
            f"state:     {a.state.value}",
            f"severity:  {a.severity.value}",
            f"opened at: {iso_utc(a.opened_at)}",
        ]
        if a.closed_at is not None:
            lines.append(f"closed at: {iso_utc(a.closed_at)}")
        if a.peak_amps is not None:
            lines.append(f"peak:      {a.peak_amps:.2f} A" + (f" (threshold {a.threshold:.2f})" if a.threshold else ""))
        if a.acknowledged_at is not None:
            lines.append(f"acknowledged by {shown(a.acknowledged_by or '?')} at {iso_utc(a.acknowledged_at)}")
        if self.kind == "reminder":
            lines.append(f"reminder {self.change.split('-', 1)[1]}: nobody has acknowledged it yet")
        return "\n".join(lines) + "\n"

    def body(self) -> bytes:
        """The webhook's JSON: the same bytes at every attempt (the signature and the delivery id with them)."""
        payload = {
            "delivery_id": self.delivery_id,
            "change": self.change,
            "channel": self.channel,
            "raised_at": iso_utc(self.raised_at),
            "title": self.title,
            "alert": json.loads(self.alert.model_dump_json()),
        }
        return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def signature(secret: bytes, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Sender(Protocol):
    async def send(self, notice: Notice) -> None: ...


class EmailSender:
    """smtplib in a thread: the standard library's client does STARTTLS and login well; at a handful of mails
    an hour an async SMTP library buys nothing."""

    def __init__(self, channel: EmailChannel, timeout_s: float) -> None:
        self.channel, self.timeout_s = channel, timeout_s
        self.tls = ssl.create_default_context(cafile=str(channel.ca_file) if channel.ca_file else None)

    async def send(self, notice: Notice) -> None:
        await asyncio.to_thread(self._send, self._message(notice))

    def _message(self, notice: Notice) -> EmailMessage:
        c = self.channel
        message = EmailMessage(policy=MAIL_POLICY)
        message["Subject"] = notice.title
        message["From"] = c.sender
        message["To"] = ", ".join(c.to)
        # The same id at every attempt, so a mail store can tell a repeat after a crash for what it is.
        message["Message-ID"] = (
            f"<axiswatch-delivery-{notice.delivery_id}@{c.sender.rpartition('@')[2] or 'axiswatch'}>"
        )
        message.set_content(notice.text)
        return message

    def _send(self, message: EmailMessage) -> None:
        c = self.channel
        try:
            with smtplib.SMTP(c.host, c.port, timeout=self.timeout_s) as smtp:
                smtp.ehlo()
                if c.starttls:
                    if not smtp.has_extn("starttls"):
                        raise Permanent(f"SMTP server {c.host}:{c.port} does not offer STARTTLS")
                    smtp.starttls(context=self.tls)
                    smtp.ehlo()
                if c.username:
                    smtp.login(c.username, c.password.get_secret_value() if c.password else "")
                smtp.send_message(message)
        except smtplib.SMTPResponseException as exc:
            reason = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
            raise (Permanent(reason) if exc.smtp_code >= 500 else ConnectionError(reason)) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise Permanent(f"SMTP refused every recipient: {sorted(exc.recipients)}") from None


class WebhookSender:
    """POST the notice's JSON, signed (HMAC-SHA256 of the body with the channel's secret) and carrying its
    delivery id, which stays the same across attempts: a receiver can drop a repeat."""

    RETRY_STATUSES = frozenset({408, 425, 429})

    def __init__(self, channel: WebhookChannel, timeout_s: float) -> None:
        self.channel = channel
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.tls = ssl.create_default_context(cafile=str(channel.ca_file) if channel.ca_file else None)
        self.secret = channel.secret.get_secret_value().encode() if channel.secret else b""

    async def send(self, notice: Notice) -> None:
        body = notice.body()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(self.secret, body),
            DELIVERY_HEADER: str(notice.delivery_id),
        }
        ssl_option = self.tls if self.channel.url.startswith("https") else None
        async with aiohttp.ClientSession(timeout=self.timeout) as session:
            async with session.post(self.channel.url, data=body, headers=headers, ssl=ssl_option) as response:
                if 200 <= response.status < 300:
                    return
                answer = (await response.text(errors="replace"))[:200]
        reason = f"HTTP {response.status}: {answer!r}"
        if response.status >= 500 or response.status in self.RETRY_STATUSES:
            raise ConnectionError(reason)
        raise Permanent(reason)


class AppriseSender:
    """Chat services (Slack, Teams, Matrix, Telegram, ntfy, ... about 100 of them) through Apprise: one URL
    per service, which carries its token, so the URLs come from the environment only."""

    def __init__(self, channel: AppriseChannel) -> None:
        self.apprise = apprise.Apprise()
        urls = channel.urls.get_secret_value().replace(",", " ").split() if channel.urls else []
        if not urls:
            raise ValueError(f"channel {channel.name}: {channel.urls_env} holds no Apprise URL")
        for number, url in enumerate(urls, 1):
            if not self.apprise.add(url):  # the URL itself is not shown: it holds a token
                raise ValueError(
                    f"channel {channel.name}: Apprise URL {number} of {channel.urls_env} is not understood"
                )

    async def send(self, notice: Notice) -> None:
        result = await self.apprise.async_notify(
            title=notice.title, body=notice.text, body_format=apprise.NotifyFormat.TEXT
        )
        if not result:
            raise ConnectionError(f"Apprise: {result.failed_count} of {len(result.results)} services failed")


def sender_for(channel: Channel, timeout_s: float) -> Sender:
    if isinstance(channel, EmailChannel):
        return EmailSender(channel, timeout_s)
    if isinstance(channel, WebhookChannel):
        return WebhookSender(channel, timeout_s)
    if isinstance(channel, AppriseChannel):
        return AppriseSender(channel)
    raise TypeError(f"no sender for {type(channel).__name__}")

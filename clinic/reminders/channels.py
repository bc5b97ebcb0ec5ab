"""How a reminder leaves us: SMTP, an SMS provider over HTTP, or the console/file outbox.

Each transport splits a delivery at its point of no return. ``prepare`` does everything that can
still be undone (for SMTP: connect, MAIL, RCPT, DATA and the whole message, all but the final
``.``); the sender then commits ``handed_off_at`` and calls ``cross``, which crosses the point
(writes the end-of-data line), and later ``outcome``, which reads the answer. A worker killed
before the commit leaves an SMTP server with an unfinished message, which it discards (RFC 5321
4.1.1.4: only the end-of-data line makes a message the server's), so sending again cannot double
it. Right after the commit the end-of-data lines of the whole group are written, and only then are
the replies read. After the commit the reminder counts as sent, even if the worker dies before it
hears the server's reply: RFC 1047's duplicate window is thereby on our side of the commit, where
a crash costs at most the server's "250" (and, killed in the microseconds between the commit and
the write, that one message).

Every message carries the reminder's key: the e-mail's ``Message-ID``, the SMS provider's
``Idempotency-Key``. An SMS provider that honours the key makes a second call harmless, so an SMS
whose outcome is unknown is simply sent again (``resend_safe``).
"""

from __future__ import annotations

import contextlib
import email.charset
import email.policy
import json
import logging
import smtplib
import socket
import ssl
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.header import Header
from email.mime.text import MIMEText
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol

from clinic.reminders.messages import Message

logger = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    """The far side refused or could not be reached. ``permanent``: trying again will not help."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason[:300]
        self.permanent = permanent


class Pending(Protocol):
    def cross(self) -> None:
        """Cross the point of no return, at once (no waiting for an answer): a group's messages are
        all crossed right after their hand-off commits, so a worker killed in between loses at most
        the few microseconds it takes. Raises DeliveryFailed if nothing left."""

    def outcome(self) -> str:
        """The far side's answer: its reference, or DeliveryFailed / AmbiguousOutcome."""

    def abort(self) -> None:
        """Give up before the point of no return: nothing is delivered."""


class Transport(Protocol):
    name: str
    resend_safe: bool

    def prepare(self, message: Message, slot: int = 0) -> Pending: ...


# --- SMTP ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str | None
    password: str | None
    starttls: bool
    ssl: bool
    sender: str
    timeout: float


_local = threading.local()
_CRLF = email.policy.compat32.clone(linesep="\r\n")
_UTF8_QP = email.charset.Charset("utf-8")
_UTF8_QP.body_encoding = email.charset.QP  # readable in any mail client's source view


def _pool() -> dict[int, tuple[smtplib.SMTP, SmtpSettings]]:
    pool: dict[int, tuple[smtplib.SMTP, SmtpSettings]] | None = getattr(_local, "smtp", None)
    if pool is None:
        pool = _local.smtp = {}
    return pool


def _connection(cfg: SmtpSettings, slot: int) -> smtplib.SMTP:
    """SMTP connections kept per thread between messages, one per slot: a group of messages is
    taken up to the point of no return on several connections at once, then finished together."""
    kept = _pool().get(slot)
    if kept is not None and kept[1] == cfg:
        return kept[0]
    drop_connection(slot)
    conn: smtplib.SMTP
    if cfg.ssl:
        conn = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=ssl.create_default_context())
    else:
        conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        if cfg.starttls:
            conn.starttls(context=ssl.create_default_context())
    if conn.sock is not None:
        # Commands are small writes each followed by a wait for the reply; without this, Nagle's
        # algorithm holds the end-of-data line behind the server's delayed ACK of the message.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.ehlo_or_helo_if_needed()
    if cfg.username:
        conn.login(cfg.username, cfg.password or "")
    _pool()[slot] = (conn, cfg)
    return conn


def drop_connection(slot: int | None = None) -> None:
    """Close one kept connection (or all of them)."""
    pool = _pool()
    for key in [slot] if slot is not None else list(pool):
        kept = pool.pop(key, None) if key is not None else None
        if kept is not None:
            with contextlib.suppress(OSError):
                kept[0].close()


def _smtp_error(exc: BaseException) -> DeliveryFailed:
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        return DeliveryFailed(f"SMTP {code}", permanent=500 <= code < 600)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({c for c, _ in exc.recipients.values()})
        return DeliveryFailed(f"SMTP recipient refused {codes}", permanent=all(500 <= c < 600 for c in codes))
    return DeliveryFailed(f"SMTP unreachable: {type(exc).__name__}")


class AmbiguousOutcome(Exception):
    """Past the point of no return with no answer: treated as sent."""


class _SmtpPending:
    def __init__(self, conn: smtplib.SMTP, key: str, slot: int) -> None:
        self.conn, self.key, self.slot = conn, key, slot

    def cross(self) -> None:
        try:
            self.conn.send(b"." + smtplib.bCRLF)
        except (OSError, smtplib.SMTPException) as exc:
            # The line is down: the server never saw the end of the data and holds nothing.
            drop_connection(self.slot)
            raise DeliveryFailed(f"SMTP connection lost before end of data: {type(exc).__name__}") from None

    def outcome(self) -> str:
        try:
            code, _ = self.conn.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            drop_connection(self.slot)
            # The end-of-data line left us; the server may hold the message. It counts as sent:
            # sending it again could double it (RFC 1047).
            raise AmbiguousOutcome(f"no reply to end of data: {type(exc).__name__}") from None
        if code != 250:
            if code == 421:
                drop_connection(self.slot)
            raise DeliveryFailed(f"SMTP {code}", permanent=500 <= code < 600)
        return self.key

    def abort(self) -> None:
        drop_connection(self.slot)  # the unfinished DATA is discarded by the server when the line drops


class SmtpTransport:
    name = "smtp"
    resend_safe = False

    def __init__(self, cfg: SmtpSettings) -> None:
        self.cfg = cfg

    def _email(self, message: Message) -> bytes:
        # The compat32 classes, a quarter of EmailMessage's cost per message; headers that are not
        # ASCII (a clinic's or a patient's name) are RFC 2047-encoded by Header.
        msg = MIMEText(message.text, "plain", _UTF8_QP)  # type: ignore[arg-type]
        msg["From"] = self.cfg.sender
        msg["To"] = message.to
        subject = message.subject
        msg["Subject"] = subject if subject.isascii() else Header(subject, "utf-8").encode()
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = message.key
        msg["Auto-Submitted"] = "auto-generated"
        return msg.as_bytes(policy=_CRLF)

    def prepare(self, message: Message, slot: int = 0) -> Pending:
        if not message.to:
            raise DeliveryFailed("no e-mail address", permanent=True)
        data = self._email(message)
        for attempt in (1, 2):
            try:
                conn = _connection(self.cfg, slot)
                code, _ = conn.mail(self.cfg.sender)
                if code != 250:
                    raise smtplib.SMTPSenderRefused(code, b"", self.cfg.sender)
                code, _ = conn.rcpt(message.to)
                if code not in (250, 251):
                    raise smtplib.SMTPRecipientsRefused({message.to: (code, b"")})
                conn.putcmd("data")
                code, _ = conn.getreply()
                if code != 354:
                    raise smtplib.SMTPDataError(code, b"")
                body = smtplib._quote_periods(data)  # type: ignore[attr-defined]
                if not body.endswith(smtplib.bCRLF):
                    body += smtplib.bCRLF
                conn.send(body)  # everything but the end-of-data line
                return _SmtpPending(conn, message.key, slot)
            except smtplib.SMTPServerDisconnected:
                drop_connection(slot)  # a kept connection the server closed meanwhile: once more, fresh
                if attempt == 2:
                    raise DeliveryFailed("SMTP server disconnected") from None
            except (OSError, smtplib.SMTPException) as exc:
                drop_connection(slot)
                raise _smtp_error(exc) from None
        raise DeliveryFailed("SMTP unreachable")


# --- SMS over HTTP --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmsSettings:
    url: str
    token: str | None
    sender: str | None
    timeout: float


class _Ready:
    """A delivery that is one call: made when crossing (console) or when asked the outcome (an
    HTTP provider, whose key makes a call after a crash harmless)."""

    def __init__(self, fn: Any, *, at_cross: bool) -> None:
        self.fn, self.at_cross, self.ref = fn, at_cross, ""

    def cross(self) -> None:
        if self.at_cross:
            self.ref = str(self.fn())

    def outcome(self) -> str:
        return self.ref if self.at_cross else str(self.fn())

    def abort(self) -> None:
        pass


class SmsHttpTransport:
    """A provider reached by ``POST {to, from, body}`` as JSON with an ``Idempotency-Key`` header.

    Any SMS vendor fits behind a small relay that speaks this; no vendor SDK is needed. A 2xx
    answer is delivery (its JSON ``id`` is kept); 4xx other than 408/429 is permanent; the rest is
    retried. The provider is expected to honour the key, so a resend is harmless.
    """

    name = "sms-http"
    resend_safe = True

    def __init__(self, cfg: SmsSettings) -> None:
        self.cfg = cfg

    def prepare(self, message: Message, slot: int = 0) -> Pending:
        if not message.to:
            raise DeliveryFailed("no phone number", permanent=True)
        payload = json.dumps({"to": message.to, "from": self.cfg.sender, "body": message.sms}).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": message.key}
        if self.cfg.token:
            headers["Authorization"] = f"Bearer {self.cfg.token}"
        if not self.cfg.url.startswith(("http://", "https://")):
            raise DeliveryFailed("SMS provider URL must be http(s)", permanent=True)
        request = urllib.request.Request(self.cfg.url, data=payload, headers=headers, method="POST")  # noqa: S310

        def call() -> str:
            try:
                with urllib.request.urlopen(request, timeout=self.cfg.timeout) as resp:  # noqa: S310
                    body = resp.read(4096)
            except urllib.error.HTTPError as exc:
                exc.close()
                permanent = 400 <= exc.code < 500 and exc.code not in (408, 409, 425, 429)
                raise DeliveryFailed(f"SMS provider {exc.code}", permanent=permanent) from None
            except (OSError, urllib.error.URLError) as exc:
                raise AmbiguousResend(f"SMS provider unreachable: {type(exc).__name__}") from None
            try:
                ref = json.loads(body or b"{}").get("id")
            except ValueError:
                ref = None
            return str(ref or message.key)[:200]

        return _Ready(call, at_cross=False)


class AmbiguousResend(DeliveryFailed):
    """No answer from a provider that honours the key: try again with the same key."""


# --- console / file -------------------------------------------------------------------------------


class ConsoleTransport:
    """The embedded default: each reminder is a line in the worker's log and in a file under
    ``instance/`` (``reminders-outbox.log``), so a newcomer sees reminders flow in ``make run``.
    The line names the reminder's key and kind, never the recipient's address or the text."""

    name = "console"
    resend_safe = False

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def prepare(self, message: Message, slot: int = 0) -> Pending:
        line = json.dumps({"key": message.key, "kind": message.kind, "channel": message.channel}, sort_keys=True)

        def write() -> str:
            # The process's real stdout: Celery redirects sys.stdout inside tasks into its logger.
            out = sys.__stdout__
            if out is not None:
                out.write(f"[reminder] {message.kind.replace('_', ' ')} by {message.channel}, {message.key}\n")
                out.flush()
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
            return "console"

        return _Ready(write, at_cross=True)


def smtp_settings(config: dict[str, Any]) -> SmtpSettings | None:
    host = config.get("MAIL_HOST")
    if not host:
        return None
    return SmtpSettings(
        host=str(host),
        port=int(config.get("MAIL_PORT") or 25),
        username=config.get("MAIL_USERNAME") or None,
        password=config.get("MAIL_PASSWORD") or None,
        starttls=bool(config.get("MAIL_USE_TLS")),
        ssl=bool(config.get("MAIL_USE_SSL")),
        sender=str(config.get("MAIL_FROM") or "reminders@localhost"),
        timeout=float(config.get("MAIL_TIMEOUT") or 10),
    )


def transport_for(channel: str, config: dict[str, Any], instance_path: str) -> Transport:
    """E-mail by SMTP when CLINIC_MAIL_HOST is set, SMS by the provider when CLINIC_SMS_URL is;
    otherwise (the embedded default) the console outbox."""
    if channel == "email":
        cfg = smtp_settings(config)
        if cfg is not None:
            return SmtpTransport(cfg)
    if channel == "sms" and config.get("SMS_URL"):
        return SmsHttpTransport(
            SmsSettings(
                url=str(config["SMS_URL"]),
                token=config.get("SMS_TOKEN") or None,
                sender=config.get("SMS_FROM") or None,
                timeout=float(config.get("SMS_TIMEOUT") or 10),
            )
        )
    out = config.get("REMINDER_OUTBOX_FILE")
    path = Path(out) if out else Path(instance_path) / "reminders-outbox.log"
    return ConsoleTransport(path if out != "" else None)


def hostname() -> str:
    return socket.getfqdn() or "localhost"

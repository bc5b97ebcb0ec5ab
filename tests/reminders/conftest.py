"""Real far ends for the reminder tests: an SMTP server (aiosmtpd) and an SMS provider on loopback."""

from __future__ import annotations

import email.policy
import json
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.scheduling.conftest import PATIENT_TZ, Desk, make_desk


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    """What the SMTP server accepted; ``refuse`` makes it answer the next N messages with a code."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.lock = threading.Lock()
        self.refuse: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.refuse:
                return self.refuse.pop(0)
            self.messages.append(message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def ids(self) -> Counter[str]:
        with self.lock:
            return Counter(str(m["Message-ID"]) for m in self.messages)

    def by_id(self, message_id: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m["Message-ID"] == message_id]


class SmtpServer:
    def __init__(self) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    def config(self) -> dict[str, Any]:
        return {"MAIL_HOST": "127.0.0.1", "MAIL_PORT": self.port, "MAIL_MESSAGE_ID_DOMAIN": "reminders.test"}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.controller.start()
    try:
        yield server
    finally:
        from clinic.reminders import channels

        channels.drop_connection()  # the sender keeps its connections between messages
        server.controller.stop()


class SmsSink:
    """A provider that honours ``Idempotency-Key``: the same key twice is one message."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.by_key: dict[str, str] = {}
        self.fail: list[int] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers.get("Idempotency-Key", "")
                if sink.fail:
                    self.send_response(sink.fail.pop(0))
                    self.end_headers()
                    return
                if key not in sink.by_key:
                    sink.by_key[key] = uuid.uuid4().hex
                    sink.received.append({**body, "key": key, "auth": self.headers.get("Authorization")})
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"id": sink.by_key[key]}).encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/messages"


@pytest.fixture
def sms() -> Iterator[SmsSink]:
    sink = SmsSink()
    thread = threading.Thread(target=sink.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        sink.server.shutdown()
        sink.server.server_close()


@pytest.fixture
def desk(app, client, make_user) -> Desk:
    return make_desk(app, client, make_user)


def patient(desk: Desk, *, channel: str = "email", rems: bool = True, tz: str = PATIENT_TZ) -> int:
    """A screened (and REMS-enrolled) patient with an address for ``channel``."""
    pid = desk.patient(rems=rems)
    resp = desk.client.patch(
        f"/api/v1/patients/{pid}",
        headers=desk.desk,
        json={
            "email": f"p{pid}@patients.test",
            "phone": "+15555550100",
            "preferred_channel": channel,
            "timezone": tz,
        },
    )
    assert resp.status_code == 200, resp.json
    return pid


def reminders(desk: Desk, **query: Any) -> list[dict[str, Any]]:
    resp = desk.client.get("/api/v1/reminders", query_string=query, headers=desk.desk)
    assert resp.status_code == 200, resp.json
    return resp.json["items"]


# --- an app on a database of its own: sweeping takes every due reminder in the database, and
# --- other tests' reminders must not be swept (or fall due when a test moves the clock).


@pytest.fixture(scope="module")
def own_app(backend):  # type: ignore[no-untyped-def]
    from tests.conftest import temp_app

    with temp_app(backend, "reminders", REMINDER_BACKOFF_SECONDS=60) as application:
        yield application


def users_of(application):  # type: ignore[no-untyped-def]
    """make_user for an app of the test's own (the fixture is bound to the shared one)."""
    from tests.conftest import Account, create_account

    def make(role: str = "nurse") -> Account:
        licensed = role in ("nurse", "prescriber")
        return create_account(application, role, label="rem", licensed=licensed, enrol_totp=False)

    return make


@pytest.fixture
def own_desk(own_app) -> Desk:  # type: ignore[no-untyped-def]
    """A location with no quiet hours: these tests send at whatever hour the suite runs (the quiet
    hours have their own test, at chosen times)."""
    desk = make_desk(own_app, own_app.test_client(), users_of(own_app))
    resp = desk.client.put(
        f"/api/v1/locations/{desk.location_id}/reminder-settings",
        headers=desk.admin,
        json={"quiet_hours": {"start": None, "end": None}},
    )
    assert resp.status_code == 200, resp.json
    return desk


def run_sweep(application, clock=None) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """One sweep and its deliveries, in this process (what beat and the worker do)."""
    from clinic.core import tx
    from clinic.core.time import database_now
    from clinic.reminders import dispatch

    clock = clock or database_now
    with application.app_context():
        token, ids = dispatch.claim(clock)
        tx.commit()
        outcome: dict[str, int] = {"claimed": len(ids)}
        for chunk in dispatch.chunks(ids, 25):
            for k, v in dispatch.deliver(token, chunk, clock).items():
                outcome[k] = outcome.get(k, 0) + v
        return outcome


def make_due(application, where, at=None) -> list[int]:  # type: ignore[no-untyped-def]
    """Bring the pending reminders matching ``where`` to due now (or ``at``); returns their ids."""
    from sqlalchemy import select, update

    from clinic.core.time import database_now
    from clinic.extensions import db
    from clinic.reminders.models import Reminder

    with application.app_context():
        when = at or database_now() - timedelta(seconds=1)
        ids = list(db.session.scalars(select(Reminder.id).where(where, Reminder.status == "pending")))
        db.session.execute(update(Reminder).where(Reminder.id.in_(ids)).values(due_at=when, next_attempt_at=when))
        db.session.commit()
        return ids

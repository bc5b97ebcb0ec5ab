"""SQL statements per request, counted exactly, so a regression on the hot paths fails here.

Counted with a ``before_cursor_execute`` listener on the app's engine; SQLite's ``BEGIN IMMEDIATE``
and its work savepoint (clinic.core.db, emitted as statements) are left out so both backends count
the same work, and commits are counted with the engine's ``commit`` event. On PostgreSQL psycopg also sends a BEGIN
before each transaction's first statement, so the round trips are statements + 2 per commit
(bench/ prints those, measured on the wire).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import event, update

from clinic.auth.models import UserSession
from clinic.core import tx
from clinic.core.time import utcnow
from clinic.extensions import db
from tests.conftest import bearer, sign_in
from tests.inventory.conftest import clinic  # noqa: F401  (the fixture)

#: (statements, commits) of GET /api/v1/users/me with a bearer token: one SELECT of the live token
#: joined to its active user; the access-log INSERT (no RETURNING); one commit. No pool ping.
USERS_ME_BEARER = (2, 1)

#: GET / (the Today page) with a session cookie (the API takes bearer tokens only): one SELECT of the
#: live session joined to its active user; the page's heartbeat SELECT; the access-log INSERT. Counted
#: for an auditor, whose Today page reads no visits: what the staff's pages read depends on the day.
DASHBOARD_SESSION = (3, 1)

#: the same, when the session was last seen over 30 s ago: plus the UPDATE of its last_seen_at.
DASHBOARD_SESSION_TOUCHED = (4, 1)

#: POST /api/v1/inventory/administrations with an Idempotency-Key. The token-and-user SELECT; one SELECT
#: proving the container and the patient lie at the nurse's locations (SYS-11, clinic.auth.scope); the key's
#: claim, one INSERT ... ON CONFLICT DO NOTHING (on PostgreSQL in autocommit on a connection of its own,
#: so a twin sees it at once, and not locked: its lease marks it as the request's; on SQLite, whose
#: transactions are serial, simply part of the one transaction); one SELECT locking the chain
#: head and the container (with its drug, the location's time zone and the patient's name and address;
#: on PostgreSQL also reserving the entry's id). On PostgreSQL the rest is one message sent with the COMMIT: the append
#: as one statement (the entry, guarded by DEA-06's "not before the container's previous movement",
#: the chain head, the balance and the audit row), the key's answer (where the claim still bears the
#: request's lease) and the access-log row. On SQLite
#: the previous movement's SELECT, UPDATE the chain head, UPDATE the container, INSERT the entry and
#: INSERT the audit row, then UPDATE the key with its answer and INSERT the access-log row; one commit.
ADMINISTRATION = {"postgresql": (5, 1), "sqlite": (11, 1)}


@dataclass
class Counter:
    statements: list[str] = field(default_factory=list)
    commits: int = 0

    @property
    def counts(self) -> tuple[int, int]:
        return len(self.statements), self.commits


@contextlib.contextmanager
def counting(app: Flask) -> Iterator[Counter]:
    with app.app_context():
        engine = db.engine
    counter = Counter()

    def on_execute(_conn, _cursor, statement, _params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        if not statement.lstrip().upper().startswith(("BEGIN", "SAVEPOINT CLINIC_WORK")):
            counter.statements.append(statement)

    def on_commit(_conn) -> None:  # type: ignore[no-untyped-def]
        counter.commits += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    try:
        yield counter
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)


def _explain(counter: Counter) -> str:
    return "\n".join(" ".join(s.split())[:160] for s in counter.statements)


def test_users_me_with_a_bearer_token(app, client, make_user):
    headers = bearer(app, make_user("nurse"))
    assert client.get("/api/v1/users/me", headers=headers).status_code == 200  # warm: nothing first-time counted
    with counting(app) as counter:
        resp = client.get("/api/v1/users/me", headers=headers)
    assert resp.status_code == 200
    assert counter.counts == USERS_ME_BEARER, _explain(counter)
    with app.app_context():  # a ping per checkout would be a round trip more, unseen by the listener
        assert not db.engine.pool._pre_ping


def test_a_page_with_a_session_cookie(app, client, make_user):
    account = make_user("auditor")
    sign_in(client, account)
    assert client.get("/").status_code == 200
    with counting(app) as counter:
        resp = client.get("/")
    assert resp.status_code == 200
    assert counter.counts == DASHBOARD_SESSION, _explain(counter)

    with app.app_context():  # last seen a minute ago: this request moves it on
        db.session.execute(
            update(UserSession)
            .where(UserSession.user_id == account.id)
            .values(last_seen_at=utcnow() - timedelta(minutes=1))
        )
        tx.commit()
    with counting(app) as counter:
        resp = client.get("/")
    assert resp.status_code == 200
    assert counter.counts == DASHBOARD_SESSION_TOUCHED, _explain(counter)


def test_an_administration(clinic, backend):  # noqa: F811
    app = clinic.client.application
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    body = {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "1"}

    def administer():  # type: ignore[no-untyped-def]
        headers = clinic.nurse_h | {"Idempotency-Key": uuid.uuid4().hex}
        return clinic.client.post("/api/v1/inventory/administrations", json=body, headers=headers)

    assert administer().status_code == 201
    with counting(app) as counter:
        resp = administer()
    assert resp.status_code == 201, resp.json
    assert counter.counts == ADMINISTRATION[backend], _explain(counter)


def test_an_unknown_token_costs_the_same_single_lookup(app, client):
    with counting(app) as counter:
        resp = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer cot_{uuid.uuid4().hex}"})
    assert resp.status_code == 401
    # the lookup, and the access-log row of the refusal (in the short transaction after the rollback)
    assert counter.counts == (2, 1), _explain(counter)


def test_an_append_lets_go_of_the_chain_lock_before_its_flush_and_answers_after_it(clinic, backend):  # noqa: F811
    """PostgreSQL: the unit of work that appended commits without waiting for its WAL flush (the
    chain lock goes with the COMMIT), and the same message then runs a transaction of its own that
    commits synchronously, whose flush covers the append: the answer comes after it. A request that
    took no chain lock commits as ever (clinic.core.tx.release_locks_before_flush)."""
    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time and no asynchronous commit")
    app = clinic.client.application
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    body = {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "1"}
    headers = clinic.nurse_h | {"Idempotency-Key": uuid.uuid4().hex}
    with counting(app) as counter:
        resp = clinic.client.post("/api/v1/inventory/administrations", json=body, headers=headers)
    assert resp.status_code == 201, resp.json
    last = counter.statements[-1]
    assert last.endswith("; SET LOCAL synchronous_commit TO off; COMMIT; " + tx.FLUSH), last[-200:]
    assert last.count("COMMIT") == 1
    # the entry is there and its answer replays: the first transaction did commit
    again = clinic.client.post("/api/v1/inventory/administrations", json=body, headers=headers)
    assert again.status_code == 201 and again.json["hash"] == resp.json["hash"]

    with counting(app) as counter:
        assert clinic.client.get("/api/v1/users/me", headers=clinic.nurse_h).status_code == 200
    assert not any("synchronous_commit" in s for s in counter.statements), _explain(counter)

"""One unit of work per request (clinic.core.tx): the work and its access-log row commit together,
once; a failure writes none of the work but keeps the record of the failure itself."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from flask import Flask, abort
from sqlalchemy import event, func, select

from clinic.audit.models import AccessEvent, AuditEvent
from clinic.audit.tags import Tag
from clinic.auth.models import AuthAttempt
from clinic.core import tx
from clinic.extensions import db
from tests.conftest import Client, bearer, temp_app

TAG = Tag.locations_location_update  # any registered tag; the marker in its data tells the rows apart


def _probe_app(backend: str) -> Iterator[Flask]:
    """An app with probe routes that write something, then do what the test needs."""
    with temp_app(backend, "uow") as app:
        from clinic.audit import service as audit
        from clinic.auth import service as auth
        from clinic.auth.policy import client_addr, current_actor, require

        def write(marker: str) -> None:
            audit.record(actor=current_actor(), tag=TAG, subject=("probe", None), data={"marker": marker})
            db.session.flush()

        @require("self.view")
        def write_then_fail_witness(marker: str, email: str) -> str:
            write(marker)
            # What every witnessed movement does: the witness signs with their own password.
            auth.verify_password(email=email, password="not-the-password", client_addr=client_addr())
            return "unreachable"

        @require("self.view")
        def write_then_hook(marker: str, outcome: str) -> tuple[str, int]:
            write(marker)
            tx.after_commit(lambda: app.config["HOOKS_RAN"].append(marker))
            if outcome == "raise":
                abort(409)
            return "", 204 if outcome == "ok" else 422

        app.add_url_rule("/api/v1/probe/witness/<marker>/<email>", view_func=write_then_fail_witness, methods=["POST"])
        app.add_url_rule("/api/v1/probe/hook/<marker>/<outcome>", view_func=write_then_hook, methods=["POST"])
        app.config["HOOKS_RAN"] = []
        app.test_client_class = Client
        yield app


@pytest.fixture
def probe_app(backend: str) -> Iterator[Flask]:
    yield from _probe_app(backend)


def _user(app: Flask, role: str = "nurse", password: str = "tundra-lilac-signal-3"):  # type: ignore[no-untyped-def]  # noqa: S107
    from clinic.auth import service
    from tests.conftest import Account

    email = f"{role}.{uuid.uuid4().hex[:8]}@test.clinic"
    with app.app_context():
        user = service.create_user(
            actor=None, email=email, name="Probe", role=role, password=password, license_number="L-1"
        )
        tx.commit()
        return Account(user.id, email, password, role, None)


def _count(app: Flask, stmt) -> int:  # type: ignore[no-untyped-def]
    with app.app_context():
        return int(db.session.scalar(stmt) or 0)


def _probe_rows(app: Flask, marker: str) -> int:
    return _count(
        app, select(func.count()).select_from(AuditEvent).where(AuditEvent.data["marker"].as_string() == marker)
    )


def _failures(app: Flask, email: str) -> int:
    return _count(
        app, select(func.count()).select_from(AuthAttempt).where(AuthAttempt.email == email, ~AuthAttempt.succeeded)
    )


def test_wrong_witness_password_writes_nothing_but_counts_the_attempt(probe_app):
    nurse, witness = _user(probe_app), _user(probe_app)
    headers = bearer(probe_app, nurse)
    client = probe_app.test_client()
    for n in (1, 2):
        marker = uuid.uuid4().hex
        resp = client.post(f"/api/v1/probe/witness/{marker}/{witness.email}", headers=headers)
        assert resp.status_code == 401
        assert _probe_rows(probe_app, marker) == 0  # what the request wrote before the witness failed
        assert _failures(probe_app, witness.email) == n  # throttling still sees the attempt
        with probe_app.app_context():
            failed = db.session.scalars(select(AuditEvent).where(AuditEvent.tag == "auth:session:failed")).all()
            assert [e.subject_id for e in failed][-1] == witness.id
            (row,) = db.session.scalars(select(AccessEvent).where(AccessEvent.object.like(f"%{marker}%"))).all()
            assert (row.user_id, row.status_code, row.outcome) == (nurse.id, 401, "failed")


def test_wrong_witness_passwords_are_throttled(probe_app):
    nurse, witness = _user(probe_app), _user(probe_app)
    headers = bearer(probe_app, nurse)
    client = probe_app.test_client()
    limit = probe_app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]
    codes = [
        client.post(f"/api/v1/probe/witness/m{n}/{witness.email}", headers=headers).status_code
        for n in range(limit + 1)
    ]
    assert codes == [401] * limit + [429]


def test_concurrent_wrong_witness_passwords_are_throttled_after_the_limit(probe_app):
    """Review: N witness signatures with a wrong password at once were each judged against the same
    stale count. Each request's own work still rolls back; at most the limit are checked and counted."""
    nurse, witness = _user(probe_app), _user(probe_app)
    headers = bearer(probe_app, nurse)
    limit = probe_app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]
    n = 3 * limit
    barrier = threading.Barrier(n)
    codes: list[int] = []
    markers = [uuid.uuid4().hex for _ in range(n)]

    def sign(marker: str) -> None:
        c = probe_app.test_client()
        barrier.wait()
        codes.append(c.post(f"/api/v1/probe/witness/{marker}/{witness.email}", headers=headers).status_code)

    threads = [threading.Thread(target=sign, args=(m,)) for m in markers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(codes) == n and set(codes) <= {401, 429}, codes
    assert codes.count(401) <= limit, codes
    assert _failures(probe_app, witness.email) <= limit
    assert all(_probe_rows(probe_app, m) == 0 for m in markers)  # no request's own work was written
    throttled = probe_app.test_client().post("/api/v1/probe/witness/last/" + witness.email, headers=headers)
    assert throttled.status_code == 429


@pytest.mark.parametrize(
    ("outcome", "status", "written", "hook_ran"),
    [
        ("ok", 204, 1, True),
        ("form-error", 422, 0, False),
        ("raise", 409, 0, False),
    ],
)
def test_work_and_hooks_follow_the_response(probe_app, outcome, status, written, hook_ran):
    nurse = _user(probe_app)
    marker = uuid.uuid4().hex
    resp = probe_app.test_client().post(f"/api/v1/probe/hook/{marker}/{outcome}", headers=bearer(probe_app, nurse))
    assert resp.status_code == status
    assert _probe_rows(probe_app, marker) == written
    assert (marker in probe_app.config["HOOKS_RAN"]) is hook_ran
    with probe_app.app_context():
        (row,) = db.session.scalars(select(AccessEvent).where(AccessEvent.object.like(f"%{marker}%"))).all()
        assert row.status_code == status


def test_work_and_access_row_share_one_commit(probe_app):
    nurse = _user(probe_app)
    headers = bearer(probe_app, nurse)
    commits: list[int] = []
    listener = lambda session: commits.append(1)  # noqa: E731
    event.listen(db.session, "after_commit", listener)
    try:
        resp = probe_app.test_client().post(f"/api/v1/probe/hook/{uuid.uuid4().hex}/ok", headers=headers)
    finally:
        event.remove(db.session, "after_commit", listener)
    assert resp.status_code == 204
    assert commits == [1]


def test_a_failed_access_row_undoes_the_work_and_answers_5xx(probe_app, monkeypatch):
    from clinic.audit import service as audit

    nurse = _user(probe_app)
    headers = bearer(probe_app, nurse)
    real = audit.access_event

    def broken(**kwargs):  # type: ignore[no-untyped-def]
        row = real(**kwargs)
        row["action"] = None  # NOT NULL: the insert fails
        return row

    monkeypatch.setattr(audit, "access_event", broken)
    marker = uuid.uuid4().hex
    resp = probe_app.test_client().post(f"/api/v1/probe/hook/{marker}/ok", headers=headers)
    assert resp.status_code == 500
    assert resp.mimetype == "application/problem+json"
    assert "Traceback" not in resp.get_data(as_text=True)
    assert _probe_rows(probe_app, marker) == 0
    assert marker not in probe_app.config["HOOKS_RAN"]


def test_a_failed_commit_still_leaves_the_failure_in_the_access_log(probe_app, monkeypatch):
    """The work's commit fails once: the work is undone, the client gets a 500, and the access log
    says so (a row with status 500 for this request)."""
    from clinic.audit import service as audit

    nurse = _user(probe_app)
    headers = bearer(probe_app, nurse)
    real = audit.access_event
    calls: list[int] = []

    def first_broken(**kwargs):  # type: ignore[no-untyped-def]
        row = real(**kwargs)
        calls.append(1)
        if len(calls) == 1:
            row["action"] = None
        return row

    monkeypatch.setattr(audit, "access_event", first_broken)
    marker = uuid.uuid4().hex
    resp = probe_app.test_client().post(f"/api/v1/probe/hook/{marker}/ok", headers=headers)
    assert resp.status_code == 500
    assert _probe_rows(probe_app, marker) == 0
    with probe_app.app_context():
        (row,) = db.session.scalars(select(AccessEvent).where(AccessEvent.object.like(f"%{marker}%"))).all()
        assert (row.status_code, row.outcome, row.user_id) == (500, "error", nurse.id)


def test_a_commit_outside_the_owner_is_refused(probe_app):
    with probe_app.test_request_context("/"):
        db.session.add(AuditEvent(tag=TAG.value, subject_type="probe", data={}))
        with pytest.raises(tx.CommitOutsideOwner):
            db.session.commit()
        db.session.rollback()


def test_after_commit_hooks_outside_requests(app_ctx):
    ran: list[str] = []
    tx.after_commit(lambda: ran.append("committed"))
    tx.commit()
    tx.after_commit(lambda: ran.append("rolled back"))
    tx.rollback()
    tx.commit()
    assert ran == ["committed"]


def test_a_failed_commit_drops_hooks_and_keeps_the_failure_records(app_ctx):
    ran: list[str] = []
    email = f"kept.{uuid.uuid4().hex[:8]}@test.clinic"
    tx.keep(AuthAttempt(email=email, client_addr="192.0.2.1", succeeded=False))
    tx.after_commit(lambda: ran.append("x"))
    db.session.add(AccessEvent(action=None, outcome="allowed", status_code=200, client_addr="x", request_id="r"))
    with pytest.raises(Exception, match=r"(?i)null"):
        tx.commit()
    assert ran == []
    assert db.session.scalar(select(func.count()).select_from(AuthAttempt).where(AuthAttempt.email == email)) == 1


def _route_calls(app: Flask) -> list[tuple[str, str, str]]:
    """Every write route with ids that name nothing; the ones that end the caller's own sign-in last."""
    from clinic.auth.policy import permission_for
    from clinic.core.fields import MAX_ID

    calls = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"GET", "HEAD", "OPTIONS"}):
            permission = permission_for(app, rule.endpoint, method)
            path = rule.rule
            for arg in rule.arguments:
                path = path.replace(f"<int:{arg}>", str(MAX_ID)).replace(f"<{arg}>", "x")
            calls.append((method, path, permission or ""))
    return sorted(calls, key=lambda call: call[1] in ("/logout", "/api/v1/auth/tokens/current"))


def test_no_route_commits_on_its_own(app, login_as, token_for):
    """Every write route, as a role it allows, with an empty body: none commits by itself (the
    commit guard would answer 500) and none commits more than once."""
    from clinic.auth.policy import POLICY, PUBLIC

    clients: dict[str, tuple[Client, dict[str, str]]] = {}
    commits: list[int] = []
    listener = lambda session: commits.append(1)  # noqa: E731
    seen = 0
    for method, path, permission in _route_calls(app):
        roles = sorted(POLICY.get(permission, ())) if permission != PUBLIC else ["nurse"]
        role = str(roles[0]) if roles else "admin"
        if role not in clients:
            web, _ = login_as(role)
            clients[role] = (web, token_for(role))
        web, api_headers = clients[role]
        if path.startswith("/api/"):
            kwargs = {"headers": api_headers, "json": {}}
        else:
            kwargs = {"data": {"csrf_token": web.csrf("/")}}
        commits.clear()
        event.listen(db.session, "after_commit", listener)
        try:
            resp = web.open(path, method=method, **kwargs)
        finally:
            event.remove(db.session, "after_commit", listener)
        assert resp.status_code < 500, (method, path, resp.status_code, resp.get_data(as_text=True)[:300])
        assert len(commits) <= 1, (method, path, len(commits))
        seen += 1
    assert seen >= 40


def test_the_last_row_sent_with_the_commit_keeps_its_values_exactly(app_ctx):
    """tx.commit(last=...) writes its row as literals on PostgreSQL (one message with the COMMIT):
    quotes, backslashes, non-ASCII and an aware time come back as given, and the work commits with it."""
    from datetime import UTC, datetime, timedelta, timezone

    from clinic.audit import service as audit

    marker = uuid.uuid4().hex
    at = datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=timezone(timedelta(hours=-5)))
    row = audit.access_event(
        user_id=None,
        action="GET o'brien\\'; DROP TABLE x; --",
        obj=f"probe:{marker},ünïcode",
        outcome="allowed",
        status_code=200,
        client_addr="::1",
        request_id=marker,
    ) | {"occurred_at": at}
    db.session.add(AuditEvent(tag=TAG.value, subject_type="probe", data={"marker": marker}))
    tx.commit(last=audit.access_insert(row))
    got = db.session.scalars(select(AccessEvent).where(AccessEvent.request_id == marker)).one()
    assert (got.action, got.object, got.user_id, got.occurred_at) == (row["action"], row["object"], None, at)
    assert got.occurred_at.tzinfo == UTC
    assert (
        db.session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.data["marker"].as_string() == marker)
        )
        == 1
    )

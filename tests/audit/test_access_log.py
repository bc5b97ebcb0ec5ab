"""The access log (HIP-01..03): who, what, which object, outcome, address, request id, UTC time."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DatabaseError

from clinic.audit.models import AccessEvent, AuditEvent
from clinic.core.time import utcnow
from clinic.extensions import db
from tests.inventory.conftest import clinic  # noqa: F401  (the fixture)


def _events(app, **where):
    with app.app_context():
        q = select(AccessEvent).order_by(AccessEvent.id)
        for key, value in where.items():
            q = q.where(getattr(AccessEvent, key) == value)
        return db.session.scalars(q).all()


def test_authenticated_api_request_is_logged(app, client, make_user):
    nurse = make_user("nurse")
    from tests.conftest import bearer

    before = utcnow()
    resp = client.get(
        "/api/v1/users/me",
        headers={**bearer(app, nurse), "X-Request-ID": "req-abcdef-123"},
        environ_base={"REMOTE_ADDR": "192.0.2.44"},
    )
    assert resp.headers["X-Request-ID"] == "req-abcdef-123"
    (event,) = _events(app, user_id=nurse.id)
    assert event.action == "GET auth_api.Me"
    assert event.outcome == "allowed" and event.status_code == 200
    assert event.client_addr == "192.0.2.44"
    assert event.request_id == "req-abcdef-123"
    assert before <= event.occurred_at <= utcnow()
    assert event.occurred_at.utcoffset().total_seconds() == 0


def test_denial_is_logged_with_user_and_object(app, make_user, login_as):
    c, account = login_as("nurse")
    target = make_user("front_desk")
    assert c.post(f"/admin/users/{target.id}/active", data={"is_active": "0"}).status_code == 403
    denied = _events(app, user_id=account.id, outcome="denied")
    assert [(e.action, e.object, e.status_code) for e in denied] == [
        ("POST auth_ui.set_active", f"user:{target.id}", 403)
    ]


def test_unauthenticated_attempt_is_logged(app, client):
    rid = "anon-probe-0001"
    assert client.get("/api/v1/users", headers={"X-Request-ID": rid}).status_code == 401
    (event,) = _events(app, request_id=rid)
    assert event.user_id is None and event.outcome == "unauthenticated" and event.status_code == 401


def test_forged_request_id_is_replaced(app, client, make_user):
    from tests.conftest import bearer

    nurse = make_user("nurse")
    resp = client.get("/api/v1/users/me", headers={**bearer(app, nurse), "X-Request-ID": "x forged; <b>"})
    rid = resp.headers["X-Request-ID"]
    assert rid != "x forged; <b>" and len(rid) == 32
    assert _events(app, user_id=nurse.id)[0].request_id == rid


def test_page_views_are_logged(app, login_as):
    c, account = login_as("nurse")
    c.get("/")
    actions = [e.action for e in _events(app, user_id=account.id)]
    assert "GET web_ui.dashboard" in actions


def _mutate(app, sql: str) -> None:
    with app.app_context(), db.engine.connect() as conn:
        try:
            conn.execute(text(sql))
            conn.commit()
        finally:
            conn.rollback()


@pytest.mark.parametrize("table", ["access_events", "audit_events"])
@pytest.mark.parametrize("verb", ["UPDATE {t} SET request_id = 'tampered'", "DELETE FROM {t}"])
def test_append_only_tables_reject_update_and_delete(app, make_user, login_as, table, verb):
    login_as("nurse")[0].get("/")  # at least one row in each table
    with app.app_context():
        before = db.session.execute(text(f"SELECT count(*) FROM {table}")).scalar()
        db.session.rollback()
    with pytest.raises(DatabaseError, match="append-only"):
        _mutate(app, verb.format(t=table))
    with app.app_context():
        assert db.session.execute(text(f"SELECT count(*) FROM {table}")).scalar() == before
        assert db.session.execute(text(f"SELECT count(*) FROM {table} WHERE request_id = 'tampered'")).scalar() == 0


@pytest.mark.parametrize("table", ["access_events", "audit_events"])
def test_truncate_is_rejected(app, backend, table):
    # SQLite has no TRUNCATE; its equivalent is an unqualified DELETE (the truncate optimisation).
    sql = f"TRUNCATE {table}" if backend == "postgresql" else f"DELETE FROM {table}"
    with pytest.raises(DatabaseError, match="append-only"):
        _mutate(app, sql)


def test_state_changes_write_audit_events_in_the_same_transaction(app, login_as, make_user):
    c, admin = login_as("admin")
    target = make_user("nurse")
    c.post(f"/admin/users/{target.id}/active", data={"is_active": "0", "csrf_token": c.csrf("/admin/users")})
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent).where(
                AuditEvent.subject_type == "user",
                AuditEvent.subject_id == target.id,
                AuditEvent.tag == "auth:user:disable",
            )
        ).all()
    assert [(r.actor_id, r.data) for r in rows] == [(admin.id, {"is_active": [True, False]})]


def test_every_object_a_request_touched_is_logged_however_many(app, clinic):  # noqa: F811
    """Review: access_events.object was 200 characters, so a receipt of many containers logged only
    the first dozen of its ledger entries and silently dropped the rest. An auditor needs them all."""
    resp = clinic.receive(count=60)
    assert resp.status_code == 201, resp.json
    entry_ids = {e["id"] for e in resp.json["entries"]}
    assert len(entry_ids) >= 60
    with app.app_context():
        (row,) = db.session.scalars(
            select(AccessEvent).where(
                AccessEvent.action == "POST inventory_api.Receipts", AccessEvent.user_id == clinic.nurse.id
            )
        ).all()
    logged = row.object.split(",")
    assert {int(name.split(":")[1]) for name in logged if name.startswith("ledger_entry:")} == entry_ids
    assert len(row.object) > 200

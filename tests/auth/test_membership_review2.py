"""Second adversarial review of SYS-11..13 (staff belong to locations): each test is a path by which a
member of location A only (or an auditor granted A only) reads or changes something of location B.
They failed until fixed; tests/auth/test_membership_review.py holds the first review's."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.auth.test_memberships import World, _member, _site
from tests.clock import today_in


@pytest.fixture
def world(app: Any, client: Any, make_user: Any) -> World:
    """Two locations, each with a patient, a course and a vial (as tests/auth/test_memberships.py)."""
    own, desk = _site(app, client, make_user)
    other, _ = _site(app, client, make_user)
    return World(client, desk.admin, own, other, desk)


def _page_client(app: Any, account: Any) -> Any:
    from tests.conftest import Client, sign_in

    app.test_client_class = Client
    c = app.test_client()
    sign_in(c, account)
    return c


def test_an_auditor_of_a_exports_the_whole_clinics_audit_trail_by_naming_a(app, world: World, make_user) -> None:
    """POST /api/v1/exports {"kind": "audit-trail" | "access-log", "location_id": A}: the service wants a
    location named, and A is granted, but the log kinds are read whole (exports.writer._table_rows has
    no location): the auditor of A gets every location's audit trail and access log, B's ledger
    writes, patient edits and the requests of B's staff among them (SYS-13)."""
    c, own = world.client, world.own
    _, auditor = _member(app, make_user, "auditor", own.location_id)
    since = (today_in("UTC") - timedelta(days=1)).isoformat()
    until = today_in("UTC").isoformat()
    for kind in ("audit-trail", "access-log"):
        body = {"kind": kind, "format": "jsonl", "since": since, "until": until, "location_id": own.location_id}
        resp = c.post("/api/v1/exports", headers=auditor, json=body)
        assert resp.status_code == 403 and resp.json["code"] == "not_a_member", (kind, resp.status_code, resp.json)
    # an auditor granted every location still exports them, as an admin does
    roaming = make_user("auditor")
    from tests.conftest import bearer

    body = {"kind": "audit-trail", "format": "jsonl", "since": since, "until": until, "location_id": own.location_id}
    assert c.post("/api/v1/exports", headers=bearer(app, roaming), json=body).status_code == 202
    assert c.post("/api/v1/exports", headers=world.admin, json=body).status_code == 202


def test_the_export_page_offers_the_log_kinds_to_an_auditor_of_one_location(app, world: World, make_user) -> None:
    """The same through the page: POST /exports with kind=audit-trail and A is refused, nothing queued."""
    from clinic.exports.models import Export
    from clinic.extensions import db
    from tests.inventory.test_pages import submit

    own = world.own
    account = make_user("auditor", locations=[own.location_id])
    c = _page_client(app, account)
    form = {
        "kind": "access-log",
        "format": "csv",
        "since": (today_in("UTC") - timedelta(days=1)).isoformat(),
        "until": today_in("UTC").isoformat(),
        "location_id": str(own.location_id),
    }
    resp = submit(c, "/exports", form, page="/exports")
    assert resp.status_code != 302
    with app.app_context():
        made = db.session.scalars(db.select(Export.id).where(Export.requested_by_id == account.id)).all()
    assert made == []


def test_a_prescriber_withdrawn_from_b_keeps_reading_bs_notices_addressed_to_them(app, world: World, make_user) -> None:
    """GET /api/v1/notices and /notices: a notice addressed to a user (a course review reminder of a
    course at B under them) is theirs wherever it was raised (reminders.service._addressed_to), so
    after an admin withdraws B they still read B's notices, count them in the bell, and mark them read."""
    from clinic.core.tx import commit
    from clinic.extensions import db
    from clinic.reminders.models import Notice

    c, own, other = world.client, world.own, world.other
    account, prescriber = _member(app, make_user, "prescriber", own.location_id, other.location_id)
    with app.app_context():
        here = Notice(location_id=own.location_id, user_id=account.id, kind="evaluate_benefit", title="A", body="a")
        there = Notice(location_id=other.location_id, user_id=account.id, kind="evaluate_benefit", title="B", body="b")
        db.session.add_all([here, there])
        db.session.flush()
        here_id, there_id = here.id, there.id
        commit()
    listed = {n["id"] for n in c.get("/api/v1/notices", headers=prescriber).json["items"]}
    assert {here_id, there_id} <= listed  # while they work at both
    withdrawn = c.delete(f"/api/v1/locations/{other.location_id}/members/{account.id}", headers=world.admin)
    assert withdrawn.status_code == 204
    listed = {n["id"] for n in c.get("/api/v1/notices", headers=prescriber).json["items"]}
    assert here_id in listed and there_id not in listed
    assert c.post(f"/api/v1/notices/{there_id}/read", headers=prescriber).status_code in (403, 404)
    page = _page_client(app, account).get("/notices").get_data(as_text=True)
    assert f'data-notice="{here_id}"' in page and f'data-notice="{there_id}"' not in page


def test_the_ledger_page_shows_another_locations_ledger_break(app, world: World, make_user) -> None:
    """/inventory/ledger includes the last integrity check (audit/_integrity.html), every problem it
    found: a nurse or an auditor of A reads that B's ledger is broken, at which seq and how (SYS-13)."""
    from clinic.audit.models import IntegrityCheck
    from clinic.core.time import utcnow
    from clinic.core.tx import commit
    from clinic.extensions import db

    own, other = world.own, world.other
    with app.app_context():
        db.session.add(
            IntegrityCheck(
                checked_at=utcnow() + timedelta(days=3650),  # the newest whatever other tests stored
                ok=False,
                problems=[
                    f"location {other.location_id}: ledger broken at seq 7: hash mismatch (secret-b)",
                    f"location {own.location_id}: ledger broken at seq 3: hash mismatch (visible-a)",
                ],
                summary={},
            )
        )
        commit()
    try:
        for role in ("nurse", "auditor"):
            page = _page_client(app, make_user(role, locations=[own.location_id])).get(
                "/inventory/ledger", query_string={"location_id": own.location_id}
            )
            assert page.status_code == 200
            body = page.get_data(as_text=True)
            assert "visible-a" in body, role
            assert "secret-b" not in body, role
    finally:
        with app.app_context():
            db.session.execute(
                db.delete(IntegrityCheck).where(IntegrityCheck.checked_at > utcnow() + timedelta(days=10))
            )
            commit()


def test_a_user_of_no_location_reads_every_locations_reminder_outbox(app, world: World, make_user) -> None:
    """/reminders/outbox for a front desk of no location: no location to pick, so list_reminders and
    count_reminders run with no location at all: every location's reminders, their patients and
    counts (SYS-11). The API's list for the same user is empty."""
    from tests.conftest import bearer

    roaming = bearer(app, make_user("front_desk"))
    assert world.client.get(
        "/api/v1/reminders", query_string={"status": "pending", "location_id": world.other.location_id}, headers=roaming
    ).json["items"], "the world has pending reminders at B"
    account = make_user("front_desk", locations=[])
    page = _page_client(app, account).get("/reminders/outbox", query_string={"status": "pending"})
    assert page.status_code in (200, 403, 404)
    body = page.get_data(as_text=True)
    assert "data-reminder=" not in body
    assert world.client.get("/api/v1/reminders", headers=bearer(app, account)).json["items"] == []


def test_the_ledger_page_of_a_user_of_no_location_reads_no_entries(app, world: World, make_user) -> None:
    """/inventory/ledger for a nurse of no location: nothing to show, and nothing read either (the
    query used to run for every location and the template hid the rows, SYS-11)."""
    from sqlalchemy import event

    from clinic.extensions import db

    client = _page_client(app, make_user("nurse", locations=[]))
    read: list[str] = []

    def listen(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if "FROM ledger_entries" in statement:
            read.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", listen)
    try:
        page = client.get("/inventory/ledger")
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    assert page.status_code in (200, 403)
    assert "data-seq=" not in page.get_data(as_text=True)
    assert read == []

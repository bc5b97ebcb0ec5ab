"""Visit states follow one transition table; anything else is a 409 naming the state and what it allows."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from clinic.scheduling.models import IN_CHAIR, LIVE, TRANSITIONS, AppointmentStatus
from tests.scheduling.conftest import make_desk


def _monday_ahead(tz: str = "America/New_York") -> str:
    day = datetime.now(ZoneInfo(tz)).date() + timedelta(days=21)
    return (day + timedelta(days=(7 - day.weekday()) % 7)).isoformat()


def test_the_table_names_every_state_and_closed_states_allow_nothing():
    assert set(TRANSITIONS) == set(AppointmentStatus)
    for state in (AppointmentStatus.discharged, AppointmentStatus.cancelled, AppointmentStatus.no_show):
        assert TRANSITIONS[state] == frozenset()
    assert LIVE <= IN_CHAIR
    # The visit's path: only forward, one step at a time.
    path = ["scheduled", "checked_in", "dosed", "observing", "ready_for_discharge", "discharged"]
    for here, there in itertools.pairwise(path):
        assert there in TRANSITIONS[AppointmentStatus(here)]
        assert here not in TRANSITIONS[AppointmentStatus(there)] or here == "observing"


def test_an_action_out_of_order_is_a_409_naming_the_state_and_the_allowed_actions(app, client, make_user):
    desk = make_desk(app, client, make_user, chairs=1)
    series = desk.book(desk.patient(), protocol="ketamine-iv-booster", start_on=_monday_ahead()).json
    appt = series["appointments"][0]["id"]
    ok = client.post(f"/api/v1/appointments/{appt}/cancel", headers=desk.desk, json={"reason": "ill"})
    assert ok.status_code == 200
    for path, body in (("cancel", {"reason": "again"}), ("reschedule", {"starts_at": "2030-01-07T15:00:00Z"})):
        resp = client.post(f"/api/v1/appointments/{appt}/{path}", headers=desk.desk, json=body)
        assert resp.status_code == 409, resp.json
        assert resp.json["code"] == "invalid_transition"
        assert "cancelled" in resp.json["detail"] and resp.json["errors"]["status"] == ["cancelled"]
        assert resp.json["errors"]["allowed"] == []


def test_the_database_refuses_a_value_outside_the_vocabulary(app, client, make_user):
    from clinic.extensions import db

    desk = make_desk(app, client, make_user, chairs=1)
    series = desk.book(desk.patient(), protocol="ketamine-iv-booster", start_on=_monday_ahead()).json
    rows = {
        ("appointments", "status", "completed"): series["appointments"][0]["id"],
        ("appointment_series", "status", "paused"): series["id"],
        ("patients", "preferred_channel", "fax"): series["patient_id"],
    }
    with app.app_context(), db.engine.connect() as conn:
        for (table, column, value), row_id in rows.items():
            with pytest.raises(IntegrityError, match=r"(?i)check"):
                conn.execute(text(f"UPDATE {table} SET {column} = :v WHERE id = :id"), {"v": value, "id": row_id})
            conn.rollback()
        with pytest.raises(IntegrityError, match=r"(?i)check"):  # the CHECK fires before the foreign keys
            conn.execute(
                text(
                    "INSERT INTO loss_reports (location_id, entry_id, kind, discovered_at, notice_due_at,"
                    " filing_due_on, form) VALUES (2147483647, 2147483647, 'misplaced', :t, :t, :d, '{}')"
                ),
                {"t": "2026-01-01 00:00:00", "d": "2026-02-15"},
            )
        conn.rollback()


def test_racing_state_changes_on_one_visit_exactly_one_wins(app, client, make_user):
    """Cancel, no-show and missed at the same instant: one answers 200, the rest 409, one audit row."""
    import threading

    from sqlalchemy import func, select

    from clinic.audit.models import AuditEvent
    from clinic.extensions import db

    desk = make_desk(app, client, make_user, chairs=1)
    series = desk.book(desk.patient(), protocol="ketamine-iv-booster", start_on=_monday_ahead()).json
    appt = series["appointments"][0]["id"]
    barrier = threading.Barrier(4)
    answers: list[int] = []

    def act(path: str, body: dict) -> None:
        c = app.test_client()
        barrier.wait()
        answers.append(c.post(f"/api/v1/appointments/{appt}/{path}", headers=desk.desk, json=body).status_code)

    calls = [("cancel", {"reason": "a"}), ("cancel", {"reason": "b"}), ("cancel", {"reason": "c"})]
    threads = [threading.Thread(target=act, args=call) for call in calls]
    for t in threads:
        t.start()
    barrier.wait()
    for t in threads:
        t.join(timeout=30)
    assert sorted(answers) == [200, 409, 409]
    with app.app_context():
        rows = db.session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(
                AuditEvent.subject_type == "appointment", AuditEvent.subject_id == appt, AuditEvent.tag.like("%cancel")
            )
        )
        assert rows == 1

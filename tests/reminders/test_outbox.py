"""The outbox: reminders are written with the change that causes them (issue 12), and follow it."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from clinic.extensions import db
from clinic.locations.calendar import add_business_days
from clinic.reminders.models import Reminder
from tests.reminders.conftest import patient, reminders
from tests.scheduling.conftest import PATIENT_TZ, local

NY = ZoneInfo(PATIENT_TZ)


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def _by_appt(items: list[dict]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for r in items:
        if r["kind"] == "appointment":
            out.setdefault(r["appointment_id"], []).append(r)
    return out


def test_booking_writes_the_reminders_before_each_visit_in_its_transaction(desk):
    pid = patient(desk)
    resp = desk.book(pid)
    assert resp.status_code == 201, resp.json
    appts = resp.json["appointments"]
    items = reminders(desk, patient_id=pid)
    per = _by_appt(items)
    assert sorted(per) == sorted(a["id"] for a in appts)
    for a in appts:
        starts = local(a["starts_at"])
        dues = sorted(local(r["due_at"]) for r in per[a["id"]])
        # 24 h: the day before at the same local time; 2 h before 09:00 is 07:00, inside the default
        # quiet hours (21:00-08:00), so it waits for 08:00.
        assert dues == [starts - timedelta(days=1), starts.replace(hour=8)]
        assert all(r["status"] == "pending" and r["channel"] == "email" and r["sent_at"] is None for r in per[a["id"]])
    staff = {r["kind"] for r in items if r["kind"] != "appointment"}
    assert staff == {"course_completion"}  # the patient's; the prescriber's reviews are not the patient's
    reviews = reminders(desk, kind="evaluate_benefit")
    assert any(r["location_id"] == desk.location_id for r in reviews)


def test_a_refused_booking_writes_no_reminders(app, desk):
    pid = patient(desk)
    assert desk.book(pid).status_code == 201
    before = len(reminders(desk, patient_id=pid))
    assert desk.book(pid).status_code == 409  # the same patient, the same times
    assert len(reminders(desk, patient_id=pid)) == before


def test_rescheduling_moves_the_reminders_and_cancelling_removes_them(desk):
    pid = patient(desk)
    appts = desk.book(pid, protocol="ketamine-iv-induction", preferred_time="10:00").json["appointments"]
    first = appts[0]
    before = {r["id"]: r for r in reminders(desk, appointment_id=first["id"])}
    new_start = local(first["starts_at"]).replace(hour=13)
    resp = desk.client.post(
        f"/api/v1/appointments/{first['id']}/reschedule",
        headers=desk.desk,
        json={"starts_at": new_start.isoformat()},
    )
    assert resp.status_code == 200, resp.json
    after = {r["id"]: r for r in reminders(desk, appointment_id=first["id"])}
    assert set(after) == set(before)  # the same rows, moved
    assert sorted(local(r["due_at"]) for r in after.values()) == [
        new_start - timedelta(days=1),
        new_start - timedelta(hours=2),
    ]
    assert all(r["status"] == "pending" for r in after.values())

    second = appts[1]
    resp = desk.client.post(f"/api/v1/appointments/{second['id']}/cancel", headers=desk.desk, json={"reason": "ill"})
    assert resp.status_code == 200
    cancelled = reminders(desk, appointment_id=second["id"])
    assert len(cancelled) == 2 and {r["status"] for r in cancelled} == {"cancelled"}
    assert reminders(desk, appointment_id=second["id"], status="pending") == []
    # The course's last visit is unchanged, so its completion reminder stays as it was.
    assert len(reminders(desk, patient_id=pid, kind="course_completion", status="pending")) == 1


def test_cancelling_the_last_visit_moves_the_course_reminders(desk):
    pid = patient(desk)
    appts = desk.book(pid, protocol="ketamine-iv-induction").json["appointments"]
    (done,) = reminders(desk, patient_id=pid, kind="course_completion")
    (booster,) = reminders(desk, patient_id=pid, kind="booster_due")
    resp = desk.client.post(f"/api/v1/appointments/{appts[-1]['id']}/cancel", headers=desk.desk, json={"reason": "x"})
    assert resp.status_code == 200
    (moved,) = reminders(desk, patient_id=pid, kind="course_completion", status="pending")
    assert moved["id"] == done["id"] and _at(moved["due_at"]) < _at(done["due_at"])
    (booster_after,) = reminders(desk, patient_id=pid, kind="booster_due", status="pending")
    assert _at(booster_after["due_at"]) < _at(booster["due_at"])


def test_a_missed_visit_stops_its_reminders_and_asks_the_front_desk_to_follow_up(app, desk, make_user):
    import time_machine

    from tests.conftest import bearer

    pid = patient(desk)
    appts = desk.book(pid, protocol="ketamine-iv-induction").json["appointments"]
    first = appts[0]
    with time_machine.travel(_at(first["starts_at"]) + timedelta(hours=3), tick=False):
        headers = bearer(app, make_user("front_desk"))
        resp = desk.client.post(f"/api/v1/appointments/{first['id']}/no-show", headers=headers, json={})
    assert resp.status_code == 200, resp.json
    rows = reminders(desk, appointment_id=first["id"])
    assert {r["kind"]: r["status"] for r in rows if r["kind"] == "appointment"} == {"appointment": "cancelled"}
    (follow,) = [r for r in rows if r["kind"] == "missed_follow_up"]
    assert follow["status"] == "pending" and follow["channel"] == "in_app"
    due = local(follow["due_at"], desk.tz)
    # The next business day of the clinic's calendar: weekends and public holidays skipped (SPR-23).
    assert due.date() == add_business_days(local(first["starts_at"], desk.tz).date(), 1)
    assert due.strftime("%H:%M") == "09:00"


def test_a_patient_who_opted_out_gets_none_and_pending_ones_stop(desk):
    silent = desk.patient()  # no address: nothing to send to
    assert desk.book(silent).status_code == 201
    assert [r for r in reminders(desk, patient_id=silent) if r["kind"] == "appointment"] == []

    pid = patient(desk, channel="sms")
    assert desk.book(pid).status_code == 201
    assert {r["channel"] for r in reminders(desk, patient_id=pid)} == {"sms"}
    resp = desk.client.put(
        f"/api/v1/patients/{pid}/reminder-opt-outs", headers=desk.desk, json={"opted_out_channels": ["sms"]}
    )
    assert resp.status_code == 200 and resp.json == {"opted_out_channels": ["sms"]}
    assert reminders(desk, patient_id=pid, status="pending") == []
    bad = desk.client.put(
        f"/api/v1/patients/{pid}/reminder-opt-outs", headers=desk.desk, json={"opted_out_channels": ["pigeon"]}
    )
    assert bad.status_code == 422 and bad.mimetype == "application/problem+json"


def test_settings_per_location_change_what_is_planned(desk):
    url = f"/api/v1/locations/{desk.location_id}/reminder-settings"
    assert desk.client.get(url, headers=desk.desk).json["appointment"]["lead_hours"] == [24, 2]
    denied = desk.client.put(url, headers=desk.desk, json={"appointment": {"lead_hours": [48]}})
    assert denied.status_code == 403
    resp = desk.client.put(
        url, headers=desk.admin, json={"appointment": {"lead_hours": [48]}, "quiet_hours": {"start": None, "end": None}}
    )
    assert resp.status_code == 200, resp.json
    assert resp.json["appointment"] == {"enabled": True, "lead_hours": [48]}
    pid = patient(desk)
    appts = desk.book(pid).json["appointments"]
    rows = reminders(desk, appointment_id=appts[0]["id"])
    assert [local(r["due_at"]) for r in rows] == [local(appts[0]["starts_at"]) - timedelta(days=2)]
    for body in ({"quiet_hours": {"start": "25:00", "end": "08:00"}}, {"appointment": {"lead_hours": [0]}}, {"x": 1}):
        bad = desk.client.put(url, headers=desk.admin, json=body)
        assert bad.status_code == 422, body


def test_staff_cancel_and_retry(app, desk):
    pid = patient(desk)
    appts = desk.book(pid).json["appointments"]
    row = reminders(desk, appointment_id=appts[0]["id"])[0]
    resp = desk.client.post(f"/api/v1/reminders/{row['id']}/retry", headers=desk.desk)
    assert resp.status_code == 409 and resp.mimetype == "application/problem+json"
    resp = desk.client.post(
        f"/api/v1/reminders/{row['id']}/cancel", headers=desk.desk, json={"reason": "asked by phone"}
    )
    assert resp.status_code == 200 and resp.json["status"] == "cancelled"
    assert (
        desk.client.post(
            f"/api/v1/reminders/{row['id']}/cancel", headers=desk.desk, json={"reason": "again"}
        ).status_code
        == 409
    )
    with app.app_context():
        r = db.session.get(Reminder, reminders(desk, appointment_id=appts[1]["id"])[0]["id"])
        r.status, r.attempts, r.last_error = "failed", 5, "SMTP 550"
        db.session.commit()
        rid = r.id
    resp = desk.client.post(f"/api/v1/reminders/{rid}/retry", headers=desk.desk)
    assert resp.status_code == 200 and resp.json["status"] == "pending" and resp.json["attempts"] == 0
    assert desk.client.post("/api/v1/reminders/999999999/retry", headers=desk.desk).status_code == 404
    assert desk.client.get("/api/v1/reminders", query_string={"status": "lost"}, headers=desk.desk).status_code == 422


def test_a_bookings_reminders_cost_the_same_statements_however_many_visits(app, desk):
    """Planning a course's reminders reads the settings, the pending rows and the taken keys once,
    not once per visit: a 12-visit course and a 6-visit one send the same reminder statements."""
    from sqlalchemy import event

    counts: list[int] = []

    def book(protocol: str) -> int:
        pid = patient(desk)
        sent: list[str] = []

        def listen(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
            if "reminder" in statement.split("WHERE")[0]:
                sent.append(statement)

        with app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", listen)
        try:
            resp = desk.book(pid, protocol=protocol)
        finally:
            event.remove(engine, "before_cursor_execute", listen)
        assert resp.status_code == 201, resp.json
        counts.append(len(resp.json["appointments"]))
        return len(sent)

    many, few = book("esketamine-rems"), book("ketamine-iv-induction")
    assert counts[0] > counts[1]
    assert many == few
    assert many <= 12  # settings, opt-outs, pending rows, taken keys and inserts: visits and course

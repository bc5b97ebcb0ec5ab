"""``clinic demo`` at the hours of the UTC day when UTC's date is not the clinic's.

The demo clinic is in Chicago. From 00:00 to 05:00 or 06:00 UTC it is still the previous day
there, and from 18:00 or 19:00 UTC on it is the same day as UTC's but UTC's evening; the demo must
enrol, receive and book on Chicago's calendar at both. The instants are taken relative to the
tests' clock (the next Monday and Thursday after it), never fixed dates.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import func, select

from clinic.core.time import utcnow
from tests.clock import MONDAY, THURSDAY, on_or_after
from tests.conftest import temp_app

CHICAGO = ZoneInfo("America/Chicago")


def _instant(weekday: int, at: time) -> datetime:
    """``at`` UTC on the first ``weekday`` (by UTC's calendar) at least a day after the tests' now."""
    day = on_or_after(utcnow().date() + timedelta(days=1), weekday)
    return datetime.combine(day, at, tzinfo=UTC)


@pytest.mark.parametrize(
    ("weekday", "at"),
    [
        (MONDAY, time(2, 30)),  # Sunday evening in Chicago: the coming Monday is tomorrow there
        (MONDAY, time(23, 30)),  # Monday afternoon there: the course starts a week later
        (THURSDAY, time(2, 30)),  # Wednesday evening there
        (THURSDAY, time(23, 30)),
    ],
    ids=["mon-0230Z", "mon-2330Z", "thu-0230Z", "thu-2330Z"],
)
def test_demo_seeds_on_the_clinics_own_day_at_any_utc_hour(tmp_path, weekday, at):
    from clinic import demo
    from clinic.extensions import db
    from clinic.inventory.models import Container
    from clinic.locations.models import Location
    from clinic.patients.models import Patient, RemsEnrollment
    from clinic.scheduling.models import AppointmentSeries
    from clinic.visits.models import Visit

    now = _instant(weekday, at)
    with temp_app("sqlite", "demo") as app, time_machine.travel(now, tick=True), app.app_context():
        local_today = now.astimezone(CHICAGO).date()
        logins = demo.seed(tmp_path)
        assert {role for role, _, _ in logins} == {"admin", "prescriber", "nurse", "front_desk", "auditor"}

        location = db.session.scalar(select(Location).where(Location.dea_registration == demo.DEMO_DEA))
        assert location is not None and location.timezone == "America/Chicago"
        assert all(c.expires_on > local_today for c in db.session.scalars(select(Container)))

        morgan = db.session.scalar(select(Patient).where(Patient.first_name == "Morgan"))
        enrolled = db.session.scalar(select(RemsEnrollment.enrolled_on).where(RemsEnrollment.patient_id == morgan.id))
        assert enrolled == local_today  # Chicago's today, not UTC's

        booked = {p.id for p in db.session.scalars(select(Patient).where(Patient.first_name.in_(("Morgan", "Riley"))))}
        courses = list(
            db.session.scalars(
                select(AppointmentSeries).where(AppointmentSeries.patient_id.in_(booked)).order_by(AppointmentSeries.id)
            )
        )
        assert [(s.preferred_time.hour, len(s.appointments)) for s in courses] == [(9, 12), (13, 6)]
        monday = local_today + timedelta(days=7 - local_today.weekday())
        for series in courses:
            assert series.start_on == monday  # the clinic's next Monday, one to seven days ahead
            first = min(series.appointments, key=lambda a: a.starts_at).starts_at.astimezone(CHICAGO)
            assert first.date() == monday and first.time() == series.preferred_time
            for appt in series.appointments:
                local = appt.starts_at.astimezone(CHICAGO)
                assert appt.starts_at > now and local.weekday() < 5
                assert local.time() == series.preferred_time  # kept across a DST change too

        _assert_visits_at_every_stage(location.id)
        _assert_reminders_in_every_state(location.id)
        visits = db.session.scalar(select(func.count()).select_from(Visit))
        from clinic.reminders.models import Reminder

        reminders = db.session.scalar(select(func.count()).select_from(Reminder))
        assert demo.seed(tmp_path) == logins  # idempotent at that hour as well
        assert db.session.scalar(select(func.count()).select_from(Visit)) == visits
        assert db.session.scalar(select(func.count()).select_from(Reminder)) == reminders


def _assert_reminders_in_every_state(location_id: int) -> None:
    """Issue 12: the demo shows reminders pending, sent, failed and cancelled, and two fall due
    within minutes, so the worker of ``make run`` is seen sending them."""
    from clinic.core.time import utcnow
    from clinic.extensions import db
    from clinic.reminders.models import Reminder

    rows = list(db.session.scalars(select(Reminder).where(Reminder.location_id == location_id)))
    assert {r.status for r in rows} == {"pending", "sent", "failed", "cancelled"}
    soon = [r for r in rows if r.status == "pending" and r.due_at <= utcnow() + timedelta(hours=14)]
    assert {r.channel for r in soon} >= {"in_app"}
    assert any(r.audience == "patient" for r in rows if r.dedupe_key.startswith("demo:"))
    kinds = {r.kind for r in rows}
    assert {"appointment", "next_day_checkin", "pmf_due", "evaluate_benefit", "inventory_due"} <= kinds


def _assert_visits_at_every_stage(location_id: int) -> None:
    """Today's demo visits stand at every stage, with the board counting down, at any hour."""
    from clinic import demo
    from clinic.extensions import db
    from clinic.patients.models import Patient
    from clinic.scheduling.models import Appointment
    from clinic.visits import queries
    from clinic.visits.models import Visit

    status = {}
    for first, _, _, stage, _, _ in demo.VISIT_STAGES:
        patient = db.session.scalar(select(Patient).where(Patient.first_name == first))
        appt = db.session.scalar(
            select(Appointment).where(Appointment.patient_id == patient.id).order_by(Appointment.starts_at).limit(1)
        )
        status[stage] = appt.status
    assert status == {
        "arriving": "scheduled",
        "checked_in": "checked_in",
        "held": "checked_in",
        "infusing": "dosed",
        "observing": "observing",
        "observing_iv": "observing",
        "ready": "observing",
        "discharged": "discharged",
        "discharged_iv": "discharged",
    }
    board = {i["patient_name"].split()[0]: i for i in queries.observation_board(location_id)["items"]}
    assert set(board) == {"Emerson", "Sasha", "Drew", "Logan"}
    assert 3500 < board["Sasha"]["seconds_left"] <= 3600  # devices an hour ago: an hour left
    assert 0 < board["Drew"]["seconds_left"] <= 15 * 60
    assert board["Logan"]["seconds_left"] == 0 and board["Logan"]["observation_complete"]
    held = db.session.scalar(
        select(Visit).join(Patient, Patient.id == Visit.patient_id).where(Patient.first_name == "Harper")
    )
    assert queries.visit_detail(held.appointment_id)["held"]

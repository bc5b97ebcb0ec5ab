"""Time (issue 12): wall-clock times in the recipient's zone across DST, and quiet hours.

The DST dates are New York's changes just before and just after the run, found from the zone's
rules (tests/clock.py), never written down: the suite passes whenever it runs.
"""

from __future__ import annotations

from datetime import date, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import time_machine

from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.reminders import planning
from clinic.reminders.models import Reminder
from tests.clock import at_local, next_offset_change, today_in
from tests.reminders.conftest import patient, run_sweep
from tests.scheduling.conftest import PATIENT_TZ

NY = PATIENT_TZ


@pytest.fixture
def mail(own_app, smtp, monkeypatch):  # type: ignore[no-untyped-def]
    for key, value in smtp.config().items():
        monkeypatch.setitem(own_app.config, key, value)
    return smtp


def _change(which: str) -> date:
    today = today_in(NY)
    if which == "future":
        return next_offset_change(NY, after=today + timedelta(days=2))
    # the last change at least a few days before today
    day = next_offset_change(NY, after=today - timedelta(days=400))
    while (later := next_offset_change(NY, after=day)) < today - timedelta(days=3):
        day = later
    return day


@pytest.mark.parametrize("which", ["past", "future"])
@pytest.mark.parametrize(
    ("at", "goes_on", "goes_at"),
    [
        ("08:00", 0, "08:00"),  # due 08:00 the morning after the clocks changed: 08:00 local
        ("06:30", 0, "08:00"),  # due inside the quiet hours (21:00-08:00): waits for their end
        ("22:30", 1, "08:00"),  # due in the evening's quiet hours: the next morning at 08:00
    ],
)
def test_a_reminder_keeps_its_local_time_across_dst_and_waits_out_quiet_hours(
    own_app, own_desk, mail, which, at, goes_on, goes_at
):
    change = _change(which)  # the first local day on the new offset (the change was overnight)
    url = f"/api/v1/locations/{own_desk.location_id}/reminder-settings"
    rules = {"next_day_checkin": {"at": at}, "quiet_hours": {"start": "21:00", "end": "08:00"}}
    assert own_desk.client.put(url, headers=own_desk.admin, json=rules).status_code == 200
    pid = patient(own_desk)
    appt = own_desk.book(pid).json["appointments"][0]
    dosed_at = at_local(change - timedelta(days=1), "14:00", NY)  # the afternoon before the change
    visit = SimpleNamespace(
        id=10**8 + appt["id"],
        appointment_id=appt["id"],
        patient_id=pid,
        location_id=own_desk.location_id,
        dose_started_at=dosed_at,
    )
    with time_machine.travel(dosed_at, tick=False), own_app.app_context():
        planning.plan_after_dose(visit, requires_pmf=False)
        db.session.commit()
        r = db.session.scalar(db.select(Reminder).where(Reminder.dedupe_key == f"visit:{visit.id}:checkin"))
        rid, due = r.id, r.due_at
    expected = at_local(change + timedelta(days=goes_on), goes_at, NY)
    assert due == expected
    # The afternoon before and the morning after are on different UTC offsets: it did cross the change.
    assert dosed_at.astimezone(ZoneInfo(NY)).utcoffset() != due.astimezone(ZoneInfo(NY)).utcoffset()
    key = f"<reminder-{rid}@reminders.test>"
    with time_machine.travel(expected - timedelta(seconds=30), tick=False):
        run_sweep(own_app, clock=utcnow)
    assert key not in mail.inbox.ids()
    with time_machine.travel(expected, tick=False):
        run_sweep(own_app, clock=utcnow)
    assert mail.inbox.ids()[key] == 1
    with own_app.app_context():
        sent = db.session.get(Reminder, rid)
        assert sent.status == "sent" and sent.sent_at == expected
    local = sent.sent_at.astimezone(ZoneInfo(NY))
    assert (local.date(), local.strftime("%H:%M")) == (change + timedelta(days=goes_on), goes_at)


def test_the_24_hour_reminder_is_the_day_before_at_the_visits_local_time_across_dst(own_app, own_desk):
    """A visit at 09:00 on the day after the clocks change is reminded at 09:00 the day before
    (23 or 25 hours earlier), not 24 elapsed hours before (08:00 or 10:00)."""
    from clinic.reminders import rules

    change = _change("future")
    visit_at = at_local(change, "09:00", NY)
    assert rules.before(visit_at, 24, NY) == at_local(change - timedelta(days=1), "09:00", NY)
    assert abs((visit_at - rules.before(visit_at, 24, NY)) - timedelta(hours=24)) == timedelta(hours=1)
    assert rules.before(visit_at, 2, NY) == visit_at - timedelta(hours=2)

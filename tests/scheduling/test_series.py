"""Booking whole courses (issue 4): protocol expansion, time zones and DST, conflicts, changes."""

from __future__ import annotations

import itertools
import re
import threading
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from tests.clock import MONDAY, at_local, next_offset_change, on_or_after, today_in, years_before
from tests.conftest import Client
from tests.scheduling.conftest import local, make_desk

NY = ZoneInfo("America/New_York")


def test_esketamine_trd_course_keeps_its_local_time_through_dst(desk):
    # Start on the Monday at least a week before New York's next change of offset (spring or
    # autumn, whichever comes first), so the twice-weekly induction straddles it.
    change = next_offset_change("America/New_York", after=today_in(desk.tz) + timedelta(days=14))
    start = on_or_after(change - timedelta(days=13), MONDAY)
    resp = desk.book(desk.patient(), start_on=start.isoformat())
    assert resp.status_code == 201, resp.json
    appts = resp.json["appointments"]
    weeks = [(local(a["starts_at"]).date() - start).days // 7 for a in appts]
    assert sum(1 for w in weeks if w < 4) == 8
    assert sum(1 for w in weeks if 4 <= w < 8) == 4
    assert len(appts) == 12
    assert {local(a["starts_at"]).strftime("%H:%M") for a in appts} == {"09:00"}
    offsets = {local(a["starts_at"]).utcoffset() for a in appts}
    assert offsets == {timedelta(hours=-5), timedelta(hours=-4)}  # both sides of the change
    assert [a["phase"] for a in appts] == ["induction"] * 8 + ["maintenance"] * 4
    assert appts[0]["planned_dose_mg"] == "56"
    assert resp.json["protocol"] == "esketamine-rems" and resp.json["protocol_version"] == 1
    kinds = [r["kind"] for r in resp.json["reviews"]]
    assert kinds == ["end_of_induction", "end_of_course"]


def test_iv_induction_is_six_infusions_spaced_and_at_most_three_a_week(desk):
    resp = desk.book(desk.patient(rems=False), protocol="ketamine-iv-induction")
    assert resp.status_code == 201, resp.json
    starts = [datetime.fromisoformat(a["starts_at"]) for a in resp.json["appointments"]]
    assert len(starts) == 6
    assert all(b - a >= timedelta(hours=40) for a, b in itertools.pairwise(starts))
    for s in starts:
        assert sum(1 for t in starts if s <= t < s + timedelta(days=7)) <= 3
    assert (starts[-1] - starts[0]) <= timedelta(days=21)


def test_weekend_and_closure_days_are_skipped(desk):
    desk.client.post(
        f"/api/v1/locations/{desk.location_id}/closures",
        headers=desk.admin,
        json={"starts_on": desk.day(2), "ends_on": desk.day(2), "reason": "staff training"},  # the Wednesday
    )
    resp = desk.book(desk.patient(rems=False), protocol="ketamine-iv-induction")
    days = [local(a["starts_at"]).date() for a in resp.json["appointments"]]
    assert days[0] == desk.start and date.fromisoformat(desk.day(2)) not in days
    assert all(d.weekday() < 5 for d in days)


def test_a_clash_is_409_naming_each_visit_and_offering_free_slots(app, client, make_user):
    desk = make_desk(app, client, make_user, chairs=1)
    assert desk.book(desk.patient()).status_code == 201
    before = desk.appointments(-2, 57)
    clash = desk.book(desk.patient())
    assert clash.status_code == 409
    assert clash.mimetype == "application/problem+json"
    conflicts = clash.json["errors"]["conflicts"]
    assert len(conflicts) == 12
    assert all(c["reason"] == "no chair is free then" and c["next_free"] for c in conflicts)
    first_free = datetime.fromisoformat(conflicts[0]["next_free"][0]["starts_at"])
    assert first_free >= datetime.fromisoformat(conflicts[0]["starts_at"]) + timedelta(minutes=150)
    after = desk.appointments(-2, 57)
    assert before and after == before  # nothing written


def test_a_patient_is_never_double_booked(desk):
    pid = desk.patient()
    assert desk.book(pid).status_code == 201
    again = desk.book(pid, preferred_time="10:00")
    assert again.status_code == 409
    assert {c["reason"] for c in again.json["errors"]["conflicts"]} == {"the patient already has a visit then"}


def test_two_clients_booking_the_same_chair_at_once(app, client, make_user):
    desk = make_desk(app, client, make_user, chairs=1)
    patients = [desk.patient(), desk.patient()]
    barrier = threading.Barrier(2)
    results: list[int] = []

    def book(pid):
        app.test_client_class = Client
        c = app.test_client()
        barrier.wait()
        results.append(
            c.post(
                "/api/v1/series",
                headers=desk.desk,
                json={
                    "patient_id": pid,
                    "protocol": "esketamine-rems",
                    "location_id": desk.location_id,
                    "prescriber_id": desk.prescriber.id,
                    "start_on": desk.start.isoformat(),
                    "preferred_time": "09:00",
                },
            ).status_code
        )

    threads = [threading.Thread(target=book, args=(p,)) for p in patients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201, 409]


def test_cancel_frees_the_chair(app, client, make_user):
    desk = make_desk(app, client, make_user, chairs=1)
    first = desk.book(desk.patient(), protocol="ketamine-iv-booster", start_on=desk.day(1)).json
    other = desk.patient()
    assert desk.book(other, protocol="ketamine-iv-booster", start_on=desk.day(1)).status_code == 409
    appt = first["appointments"][0]["id"]
    cancelled = client.post(f"/api/v1/appointments/{appt}/cancel", headers=desk.desk, json={"reason": "patient ill"})
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert desk.book(other, protocol="ketamine-iv-booster", start_on=desk.day(1)).status_code == 201
    again = client.post(f"/api/v1/appointments/{appt}/cancel", headers=desk.desk, json={"reason": "x"})
    assert again.status_code == 409


def test_reschedule_moves_later_visits_to_keep_the_spacing(desk):
    series = desk.book(desk.patient(rems=False), protocol="ketamine-iv-induction").json
    appts = series["appointments"]
    second = appts[1]
    new_start = (local(second["starts_at"]) + timedelta(days=1)).astimezone(UTC)  # Wed -> Thu
    resp = desk.client.post(
        f"/api/v1/appointments/{second['id']}/reschedule", headers=desk.desk, json={"starts_at": new_start.isoformat()}
    )
    assert resp.status_code == 200, resp.json
    after = desk.client.get(f"/api/v1/series/{series['id']}", headers=desk.desk).json["appointments"]
    starts = [datetime.fromisoformat(a["starts_at"]) for a in after]
    assert starts[1] == new_start
    assert all(b - a >= timedelta(hours=40) for a, b in itertools.pairwise(starts))
    assert {local(a["starts_at"]).strftime("%H:%M") for a in after} == {"09:00"}
    assert starts[0] == datetime.fromisoformat(appts[0]["starts_at"])  # earlier visits stay


def test_reschedule_outside_hours_is_refused(desk):
    series = desk.book(desk.patient()).json
    appt = series["appointments"][0]
    late = at_local(desk.start, "17:00", desk.tz)  # 150 min would end after 18:00
    resp = desk.client.post(
        f"/api/v1/appointments/{appt['id']}/reschedule", headers=desk.desk, json={"starts_at": late.isoformat()}
    )
    assert resp.status_code == 422


def test_booking_refuses_bad_input(desk):
    pid = desk.patient()
    assert desk.book(pid, protocol="no-such-protocol").status_code == 404
    yesterday = today_in(desk.tz) - timedelta(days=1)
    assert desk.book(pid, start_on=yesterday.isoformat()).status_code == 422
    wrong_prescriber = desk.client.post(
        "/api/v1/series",
        headers=desk.desk,
        json={
            "patient_id": pid,
            "protocol": "esketamine-rems",
            "location_id": desk.location_id,
            "prescriber_id": 999999,
            "start_on": desk.start.isoformat(),
            "preferred_time": "09:00",
        },
    )
    assert wrong_prescriber.status_code == 422


def test_local_time_policy_across_dst():
    """F13: 52 weekly 09:00 visits keep 09:00; a nonexistent 02:30 moves forward; 01:30 takes its first.

    Fixed dates on purpose: they are New York's 2026 changes, and local_to_utc reads no clock."""
    from clinic.scheduling.service import local_to_utc

    start = date(2026, 1, 5)
    weekly = [local_to_utc(start + timedelta(weeks=i), time(9, 0), NY) for i in range(52)]
    assert {w.astimezone(NY).strftime("%H:%M") for w in weekly} == {"09:00"}
    gap = local_to_utc(date(2026, 3, 8), time(2, 30), NY)
    assert gap.astimezone(NY).strftime("%H:%M") == "03:30"
    fold = local_to_utc(date(2026, 11, 1), time(1, 30), NY)
    assert fold.astimezone(NY).utcoffset() == timedelta(hours=-4)  # the first 01:30 (EDT)
    assert fold == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)


def test_a_17_year_old_or_a_pregnant_patient_cannot_be_booked(desk):
    seventeen = desk.patient(born=years_before(today_in("America/New_York"), 17).isoformat())
    pregnant = desk.patient(screen={"pregnant": True})
    for pid in (seventeen, pregnant):
        resp = desk.book(pid)
        assert resp.status_code == 409, resp.json
        assert resp.json["code"] == "patient_ineligible"
    series = desk.appointments(-7, 55)
    assert [a for a in series if a["patient_id"] in (seventeen, pregnant)] == []


def test_esketamine_needs_rems_enrolment(desk):
    resp = desk.book(desk.patient(rems=False))
    assert resp.status_code == 409
    assert resp.json["code"] == "rems_enrollment_required"


def test_calendar_feed_is_unguessable_minimal_and_revocable(desk):
    pid = desk.patient()
    desk.book(pid)
    feed = desk.client.post(f"/api/v1/patients/{pid}/calendar-feed", headers=desk.desk)
    assert feed.status_code == 201
    path = feed.json["url"].split("localhost", 1)[1]
    assert len(path.rsplit("/", 1)[1]) > 40
    ics = desk.client.get(path)
    assert ics.status_code == 200 and ics.mimetype == "text/calendar"
    body = ics.get_data(as_text=True)
    assert body.startswith("BEGIN:VCALENDAR\r\n") and body.count("BEGIN:VEVENT") == 12
    assert f"DTSTART:{at_local(desk.start, '09:00', desk.tz):%Y%m%dT%H%M%SZ}" in body  # 09:00 in New York
    assert "Casey" not in body and "Course" not in body  # no names in a URL-only feed
    assert all(len(line.encode()) <= 75 for line in body.split("\r\n"))
    assert desk.client.get(path.replace(".ics", "x.ics")).status_code == 404
    assert desk.client.delete(f"/api/v1/calendar-feeds/{feed.json['id']}", headers=desk.desk).status_code == 204
    assert desk.client.get(path).status_code == 404


def test_prescriber_feed_lists_their_patients_visits(desk):
    desk.book(desk.patient())
    feed = desk.client.post("/api/v1/users/me/calendar-feed", headers=desk.prescriber_h)
    assert feed.status_code == 201
    body = desk.client.get(feed.json["url"].split("localhost", 1)[1]).get_data(as_text=True)
    assert body.count("BEGIN:VEVENT") == 12


def test_a_deactivated_users_calendar_feed_stops(app, desk):
    """The feed's URL is a credential: deactivating its owner ends their sessions and API tokens, and
    ended nothing of the feed, which kept publishing the clinic's visits (when, where, which chair)."""
    from sqlalchemy import select

    from clinic.auth import service as auth
    from clinic.auth.models import User
    from clinic.core.tx import commit
    from clinic.extensions import db

    def set_active(is_active: bool) -> None:
        with app.app_context():
            admin = db.session.scalar(select(User).where(User.role == "admin").order_by(User.id.desc()))
            auth.set_active(actor=admin, user_id=desk.prescriber.id, is_active=is_active)
            commit()

    desk.book(desk.patient())
    feed = desk.client.post("/api/v1/users/me/calendar-feed", headers=desk.prescriber_h)
    path = feed.json["url"].split("localhost", 1)[1]
    assert desk.client.get(path).status_code == 200
    set_active(False)
    assert desk.client.get(path).status_code == 404
    set_active(True)  # back at work: the old link stays dead, as their sessions and tokens do
    assert desk.client.get(path).status_code == 404


def test_a_lost_race_is_the_same_friendly_409(app, client, make_user, monkeypatch):
    """Both bookings passed their checks; the database's unique slots decide, and the loser gets a
    booking_conflict problem, not a bare integrity error."""
    from clinic.scheduling import service

    desk = make_desk(app, client, make_user, chairs=1)
    assert desk.book(desk.patient(), protocol="ketamine-iv-booster", start_on=desk.day(1)).status_code == 201
    monkeypatch.setattr(service, "_busy", lambda cal, patient_id, slots: (set(), set()))  # the check saw nothing
    resp = desk.book(desk.patient(), protocol="ketamine-iv-booster", start_on=desk.day(1))
    assert resp.status_code == 409
    assert resp.json["code"] == "booking_conflict"
    assert resp.json["errors"]["conflicts"]


def test_courses_follow_the_prescribers_hours_on_site(desk):
    """With a roster, visits fall only when the prescriber is there; without one, clinic hours rule."""
    roster = {
        "mon": None,
        "tue": ["08:00", "12:00"],
        "wed": None,
        "thu": None,
        "fri": ["08:00", "12:00"],
        "sat": None,
        "sun": None,
    }
    path = f"/api/v1/locations/{desk.location_id}/prescribers/{desk.prescriber.id}/hours"
    assert desk.client.put(path, headers=desk.admin, json=roster).status_code == 200
    resp = desk.book(desk.patient())  # a Monday; twice weekly becomes Tue + Fri
    assert resp.status_code == 201, resp.json
    days = {local(a["starts_at"]).strftime("%a") for a in resp.json["appointments"]}
    assert days == {"Tue", "Fri"}
    assert len(resp.json["appointments"]) == 12
    # Three visits a week cannot fit a Tuesday/Friday roster: refused, not squeezed in.
    iv = desk.book(desk.patient(rems=False), protocol="ketamine-iv-induction")
    assert iv.status_code == 409
    afternoon = desk.book(
        desk.patient(rems=False), protocol="ketamine-iv-booster", start_on=desk.day(1), preferred_time="14:00"
    )
    assert afternoon.status_code == 409
    nurse = desk.client.put(
        f"/api/v1/locations/{desk.location_id}/prescribers/{desk.prescriber.id}/hours", headers=desk.desk, json=roster
    )
    assert nurse.status_code == 403


def test_a_course_stays_in_one_chair_when_one_is_free_for_all_its_visits(desk):
    """Chair 1 is taken at the course's second visit only: the whole course goes to Chair 2, not
    Chair 1, 2, 1, 1, ... (issue 10: visits hopped between chairs)."""
    probe = desk.book(desk.patient(rems=False), protocol="ketamine-iv-induction", preferred_time="14:00").json
    second_day = local(probe["appointments"][1]["starts_at"]).date().isoformat()
    blocker = desk.book(desk.patient(rems=False), protocol="ketamine-iv-booster", start_on=second_day,
                        preferred_time="10:00")  # fmt: skip
    assert blocker.status_code == 201, blocker.json
    taken = blocker.json["appointments"][0]["chair_id"]
    assert taken == desk.chairs[0]
    course = desk.book(desk.patient(rems=False), protocol="ketamine-iv-induction", preferred_time="10:00")
    assert course.status_code == 201, course.json
    assert {a["chair_id"] for a in course.json["appointments"]} == {desk.chairs[1]}


def test_feed_parses_in_icalendar_with_installation_uids_sequence_and_cancellations(desk):
    import icalendar

    from clinic.extensions import db
    from clinic.system.models import Installation

    pid = desk.patient(rems=False)
    appts = desk.book(pid, protocol="ketamine-iv-induction").json["appointments"]
    feed = desk.client.post(f"/api/v1/patients/{pid}/calendar-feed", headers=desk.desk).json
    path = feed["url"].split("localhost", 1)[1]

    def events() -> dict[int, icalendar.Event]:
        cal = icalendar.Calendar.from_ical(desk.client.get(path).get_data())
        found = {}
        for event in cal.walk("VEVENT"):
            match = re.fullmatch(r"appointment-(\d+)\.([0-9a-f-]{36})@clinic-ops", str(event["UID"]))
            assert match, event["UID"]
            found[int(match.group(1))] = event
        return found

    with desk.client.application.app_context():
        installation = db.session.get(Installation, 1).uid
    before = events()
    assert set(before) == {a["id"] for a in appts}
    assert all(str(e["UID"]).endswith(f".{installation}@clinic-ops") for e in before.values())
    assert {int(e["SEQUENCE"]) for e in before.values()} == {0}
    assert {str(e["STATUS"]) for e in before.values()} == {"CONFIRMED"}

    second, last = appts[1], appts[-1]
    moved_to = (local(second["starts_at"]) + timedelta(days=1)).astimezone(UTC)
    moved = desk.client.post(f"/api/v1/appointments/{second['id']}/reschedule", headers=desk.desk,
                             json={"starts_at": moved_to.isoformat()})  # fmt: skip
    assert moved.status_code == 200, moved.json
    cancelled = desk.client.post(f"/api/v1/appointments/{last['id']}/cancel", headers=desk.desk,
                                 json={"reason": "patient moved away"})  # fmt: skip
    assert cancelled.status_code == 200
    after = events()
    assert int(after[second["id"]]["SEQUENCE"]) > int(before[second["id"]]["SEQUENCE"])
    assert after[second["id"]].decoded("DTSTART") == moved_to
    assert str(after[last["id"]]["STATUS"]) == "CANCELLED"  # still in the feed, so calendars drop it
    assert int(after[last["id"]]["SEQUENCE"]) > int(before[last["id"]]["SEQUENCE"])
    assert int(after[appts[0]["id"]]["SEQUENCE"]) == 0  # untouched visits keep theirs

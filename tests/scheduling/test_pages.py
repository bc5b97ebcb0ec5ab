"""The scheduling pages: the booking wizard (preview, then book), a course's page and its
actions, and the day and week calendars by chair in the location's time zone."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from tests.clock import at_local
from tests.inventory.test_pages import assert_accessible, text
from tests.scheduling.conftest import Desk, make_desk

# Courses start on desk.start, a Monday a few weeks ahead; visits on Mondays and Thursdays in induction.


def shown(day: date, hh_mm: str) -> str:
    """A visit as the pages show it: weekday, date and local time."""
    return f"{day:%a} {day.isoformat()} {hh_mm}"


def plus(day: date, days: int) -> date:
    return day + timedelta(days=days)


def post(c, path: str, data: dict, page: str):
    return c.post(path, data={**data, "csrf_token": c.csrf(page)})


def wizard(desk: Desk, patient_id: int, **extra: str) -> dict[str, str]:
    return {
        "patient_id": str(patient_id),
        "protocol": "esketamine-rems",
        "location_id": str(desk.location_id),
        "prescriber_id": str(desk.prescriber.id),
        "start_on": desk.start.isoformat(),
        "preferred_time": "09:00",
        **extra,
    }


def series_count(app) -> int:
    from clinic.extensions import db
    from clinic.scheduling.models import AppointmentSeries

    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AppointmentSeries)) or 0


@pytest.fixture
def one_chair(app, client, make_user) -> Desk:
    return make_desk(app, client, make_user, chairs=1)


def test_wizard_preview_shows_twelve_visits_in_local_time_and_saves_nothing(app, desk, login_as):
    pid = desk.patient()
    c, _ = login_as("front_desk")
    form = c.get("/schedule/book", query_string={"patient_id": pid})
    assert form.status_code == 200
    assert_accessible(form)
    assert f'<option value="{pid}" selected>' in text(form)

    before = series_count(app)
    preview = post(c, "/schedule/book/preview", wizard(desk, pid), "/schedule/book")
    assert preview.status_code == 200
    assert_accessible(preview)
    html = text(preview)
    rows = re.findall(r'<tr data-visit="(\d+)"', html)
    assert rows == [str(i) for i in range(1, 13)]
    # 09:00 in New York, not the 14:00 (or in summer 13:00) UTC it is stored as; induction twice a week, then weekly
    stored = f"{at_local(desk.start, '09:00', desk.tz):%H:%M}"
    assert shown(desk.start, "09:00") in html and shown(plus(desk.start, 3), "09:00") in html and stored not in html
    assert html.count(">induction<") == 8 and html.count(">maintenance<") == 4
    assert "Chair 1" in html and "56 mg" in html
    assert 'id="conflicts"' not in html and "Book these 12 visits" in html
    assert series_count(app) == before


def test_wizard_preview_shows_conflicts_with_next_free_slots(one_chair, login_as):
    desk = one_chair
    first = desk.patient()
    assert desk.book(first).status_code == 201
    second = desk.patient()
    c, _ = login_as("front_desk")
    preview = post(c, "/schedule/book/preview", wizard(desk, second), "/schedule/book")
    assert preview.status_code == 200
    html = text(preview)
    assert 'id="conflicts"' in html and "12 visits cannot be booked as asked" in html
    visit_1 = re.search(r'<li data-conflict="1">(.*?)</li>', html, re.S)
    assert visit_1 and "no chair is free then" in visit_1.group(1)
    # the chair is busy 09:00-11:30, so the first free start that day is 11:30
    assert f"{shown(desk.start, '11:30')} (Chair 1)" in visit_1.group(1)
    assert "Book these" not in html


def test_wizard_refuses_bad_input_and_an_unbookable_patient_on_the_form(desk, login_as):
    c, _ = login_as("front_desk")
    missing = post(c, "/schedule/book/preview", {"protocol": "esketamine-rems"}, "/schedule/book")
    assert missing.status_code == 422
    assert_accessible(missing)
    assert 'href="#patient_id"' in text(missing)
    no_rems = desk.patient(rems=False)
    refused = post(c, "/schedule/book/preview", wizard(desk, no_rems), "/schedule/book")
    assert refused.status_code == 409
    assert "SPRAVATO REMS" in text(refused) and f'<option value="{no_rems}" selected>' in text(refused)


def test_booking_saves_redirects_to_the_course_and_cancel_works_there(app, desk, login_as):
    pid = desk.patient()
    c, _ = login_as("front_desk")
    before = series_count(app)
    booked = post(c, "/schedule/book", wizard(desk, pid), "/schedule/book")
    assert booked.status_code == 302
    assert series_count(app) == before + 1
    match = re.match(r"^/schedule/series/(\d+)$", booked.location)
    assert match
    page = c.get(booked.location)
    assert page.status_code == 200
    assert_accessible(page)
    html = text(page)
    assert len(re.findall(r'<tr data-appointment="\d+"', html)) == 12
    assert "Course booked: 12 visits." in html and shown(desk.start, "09:00") in html
    assert "End of induction" in html and "End of course" in html

    first = re.search(r'<tr data-appointment="(\d+)"', html).group(1)
    path = f"/schedule/series/{match.group(1)}/appointments/{first}/cancel"
    refused = post(c, path, {"reason": ""}, booked.location)
    assert refused.status_code == 422
    assert_accessible(refused)
    done = post(c, path, {"reason": "Patient asked to move it"}, booked.location)
    assert done.status_code == 302 and done.location == booked.location
    row = re.search(rf'<tr data-appointment="{first}"(.*?)</tr>', text(c.get(booked.location)), re.S)
    assert row and "cancelled" in row.group(1) and "Patient asked to move it" in row.group(1)
    # The course counts its active visits, not the protocol's planned number.
    assert '<dd data-testid="active-visits">11 active, 1 cancelled</dd>' in text(c.get(booked.location))

    # the patient's chart lists the course with its visits
    chart = text(c.get(f"/patients/{pid}"))
    assert f'data-series="{match.group(1)}"' in chart and shown(desk.start, "09:00") in chart
    assert "11 active visits" in chart


def test_reschedule_from_the_course_page_reads_the_location_time_zone(desk, login_as):
    pid = desk.patient()
    series = desk.book(pid).json
    c, _ = login_as("nurse")
    page = f"/schedule/series/{series['id']}"
    appt = series["appointments"][-1]["id"]
    friday = plus(desk.start, 53)  # after the last visit (week 7), typed as New York's wall time
    moved = post(c, f"{page}/appointments/{appt}/reschedule", {"starts_at": f"{friday}T13:00"}, page)
    assert moved.status_code == 302
    row = re.search(rf'<tr data-appointment="{appt}"(.*?)</tr>', text(c.get(page)), re.S)
    assert row and shown(friday, "13:00") in row.group(1)


def test_day_and_week_calendars_show_booked_visits_by_chair_in_local_time(desk, login_as):
    pid = desk.patient()
    series = desk.book(pid).json
    first, second = series["appointments"][0], series["appointments"][1]
    c, _ = login_as("front_desk")

    day = c.get("/schedule/day", query_string={"location_id": desk.location_id, "date": desk.start.isoformat()})
    assert day.status_code == 200
    assert_accessible(day)
    html = text(day)
    cell = re.search(
        rf'<td rowspan="(\d+)" class="booked[^"]*" data-appointment="{first["id"]}">(.*?)</td>', html, re.S
    )
    assert cell and cell.group(1) == "10"  # 150 minutes = ten 15-minute rows
    assert "09:00\u201311:30 Casey Course" in cell.group(2)
    assert f'data-appointment="{second["id"]}"' not in html  # Thursday's visit is not on Monday
    assert f'data-chair="{desk.chairs[0]}">Chair 1<' in html
    assert f"date={plus(desk.start, -1)}" in html and f"date={plus(desk.start, 1)}" in html  # previous / next day

    week = c.get("/schedule/week", query_string={"location_id": desk.location_id, "date": desk.day(2)})
    assert week.status_code == 200
    assert_accessible(week)
    html = text(week)
    monday = re.search(rf'<tr data-day="{desk.start}">(.*?)</tr>', html, re.S)
    thursday = re.search(rf'<tr data-day="{plus(desk.start, 3)}">(.*?)</tr>', html, re.S)
    assert monday and f'data-appointment="{first["id"]}"' in monday.group(1) and "09:00\u201311:30" in monday.group(1)
    assert thursday and f'data-appointment="{second["id"]}"' in thursday.group(1)
    assert f"date={plus(desk.start, -7)}" in html and f"date={plus(desk.start, 7)}" in html  # previous / next week


def test_calendar_without_a_location_choice_defaults_and_nav_opens_it(login_as):
    c, _ = login_as("nurse")
    resp = c.get("/schedule/day")
    assert resp.status_code == 200
    assert_accessible(resp)
    assert c.get("/schedule/week").status_code == 200


def test_a_visit_can_only_be_changed_from_its_own_course_page(desk, login_as):
    mine, other = desk.book(desk.patient()).json, desk.book(desk.patient(), preferred_time="13:00").json
    c, _ = login_as("front_desk")
    foreign = other["appointments"][0]["id"]
    path = f"/schedule/series/{mine['id']}/appointments/{foreign}/cancel"
    resp = post(c, path, {"reason": "wrong page"}, f"/schedule/series/{mine['id']}")
    assert resp.status_code == 404
    after = desk.client.get(f"/api/v1/series/{other['id']}", headers=desk.desk).json["appointments"][0]
    assert after["status"] == "scheduled"


def test_the_wizard_offers_the_named_patient_past_the_first_two_hundred(backend):
    """The chart's "Book a course" names its patient; a clinic with more patients than the list
    shows must still find them selected (it failed for patient #201 on)."""
    from datetime import date

    from clinic.core.tx import commit
    from clinic.extensions import db
    from clinic.patients.models import Patient
    from tests.conftest import sign_in, temp_app
    from tests.reminders.conftest import users_of

    with temp_app(backend, "wizard201") as own:
        with own.app_context():
            db.session.add_all(
                Patient(
                    first_name="Many",
                    last_name=f"P{i}",
                    date_of_birth=date(1980, 1, 1),
                    address="x",
                    timezone="America/New_York",
                )
                for i in range(205)
            )
            commit()
            last = db.session.scalar(select(func.max(Patient.id)))
        c = own.test_client()
        sign_in(c, users_of(own)("front_desk"))
        page = c.get("/schedule/book", query_string={"patient_id": last}).get_data(as_text=True)
        assert f'<option value="{last}" selected>' in page
        assert 'value="999999"' not in c.get("/schedule/book", query_string={"patient_id": 999999}).get_data(
            as_text=True
        )


def test_calendar_links_are_created_copied_and_revoked_on_the_pages(desk, login_as):
    import icalendar

    pid = desk.patient()
    assert desk.book(pid).status_code == 201
    c, _ = login_as("front_desk")
    page = f"/patients/{pid}/calendar-feeds"
    listing = c.get(page)
    assert listing.status_code == 200
    assert_accessible(listing)
    created = post(c, page, {}, page)
    assert created.status_code == 201
    assert_accessible(created)
    url = re.search(r'id="new-feed-url" type="url" readonly value="([^"]+)"', text(created)).group(1)
    feed_id = int(re.search(r'<tr data-feed="(\d+)">', text(created)).group(1))
    ics = c.get(url.split("localhost", 1)[1])
    assert ics.status_code == 200
    assert len(icalendar.Calendar.from_ical(ics.get_data()).walk("VEVENT")) == 12
    assert url not in text(c.get(page))  # shown once: only its hash is kept

    revoked = post(c, f"{page}/{feed_id}/revoke", {}, page)
    assert revoked.status_code == 302
    assert c.get(url.split("localhost", 1)[1]).status_code == 404
    assert f'data-feed="{feed_id}"' not in text(c.get(page))

    # One's own links: a prescriber's, revocable only by its owner.
    p, _ = login_as("prescriber")
    mine = post(p, "/me/calendar-feeds", {}, "/me/calendar-feeds")
    assert mine.status_code == 201
    own_id = int(re.search(r'<tr data-feed="(\d+)">', text(mine)).group(1))
    other, _ = login_as("nurse")
    stolen = post(other, f"/me/calendar-feeds/{own_id}/revoke", {}, "/me/calendar-feeds")
    assert stolen.status_code == 404
    assert f'data-feed="{own_id}"' in text(p.get("/me/calendar-feeds"))

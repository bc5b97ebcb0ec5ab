"""Adversarial review of SYS-11..13 (staff belong to locations): each test is a path by which a
member of location A only reads or changes something of location B. They fail until fixed."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from tests.auth.test_memberships import World, _member, _site


@pytest.fixture
def world(app: Any, client: Any, make_user: Any) -> World:
    """Two locations, each with a patient, a course and a vial (as tests/auth/test_memberships.py)."""
    own, desk = _site(app, client, make_user)
    other, _ = _site(app, client, make_user)
    return World(client, desk.admin, own, other, desk)


def test_a_padded_query_string_location_id_slips_past_the_check(app, world: World, make_user) -> None:
    """`?location_id=+<B>` (or ` <B>`, `0…0<B>`) is not an id to check_request (not all digits) but
    the query schemas (Id(strict=False)) read it as <B>: another location's balances, observation
    board, safety alerts and appointments come back."""
    c, other = world.client, world.other
    _, nurse = _member(app, make_user, "nurse", world.own.location_id)
    _, prescriber = _member(app, make_user, "prescriber", world.own.location_id)
    since = world.desk.start.isoformat() + "T00:00:00+00:00"
    until = (world.desk.start + timedelta(days=30)).isoformat() + "T00:00:00+00:00"
    paths = [
        ("/api/v1/inventory/balances", {}),
        ("/api/v1/observations/active", {}),
        ("/api/v1/outcomes/safety-alerts", {}),
        ("/api/v1/appointments", {"since": since, "until": until}),
    ]
    for spelled in (f"+{other.location_id}", f" {other.location_id}", f"{other.location_id:011d}"):
        for path, extra in paths:
            resp = c.get(path, query_string={"location_id": spelled, **extra}, headers=prescriber)
            assert resp.status_code in (403, 422), (path, spelled, resp.status_code)
        resp = c.get("/api/v1/inventory/balances", query_string={"location_id": spelled}, headers=nurse)
        assert resp.status_code in (403, 422), (spelled, resp.status_code)


def test_a_non_ascii_digit_location_id_slips_past_the_check_on_pages(app, world: World, make_user) -> None:
    """id_arg (str.isdigit) reads Arabic-Indic digits as an id; check_request (isascii) skips them:
    pages that take the location from inventory.queries.where / visits.pages.pick_location (the safe,
    the ledger, the observation board, the Today page with B's patients by name) show B."""
    from clinic.extensions import db
    from clinic.locations.models import Location
    from tests.conftest import Client, sign_in

    own, other = world.own, world.other
    account = make_user("prescriber", locations=[own.location_id])
    app.test_client_class = Client
    c = app.test_client()
    sign_in(c, account)  # type: ignore[arg-type]
    arabic = str(other.location_id).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    with app.app_context():
        name = db.session.get(Location, other.location_id).name
    for path in ("/inventory/", "/inventory/ledger", "/visits/board", "/"):
        page = c.get(path, query_string={"location_id": arabic})
        assert page.status_code in (403, 404) or name not in page.get_data(as_text=True), path


def test_a_patients_calendar_feed_at_another_location_is_revoked_by_feed_id(app, world: World, make_user) -> None:
    """DELETE /api/v1/calendar-feeds/{feed_id}: `feed_id` is no key check_request knows, and
    calendar.revoke_feed asks only the role: the front desk of A stops patient B's calendar."""
    c, other = world.client, world.other
    made = c.post(f"/api/v1/patients/{other.patient_id}/calendar-feed", headers=world.admin)
    assert made.status_code == 201, made.json
    _, desk = _member(app, make_user, "front_desk", world.own.location_id)
    resp = c.delete(f"/api/v1/calendar-feeds/{made.json['id']}", headers=desk)
    assert resp.status_code in (403, 404), resp.status_code
    from clinic.extensions import db
    from clinic.scheduling.models import CalendarFeed

    with app.app_context():
        assert db.session.get(CalendarFeed, made.json["id"]).revoked_at is None


def test_a_course_here_is_booked_under_a_prescriber_of_another_location(app, world: World, make_user) -> None:
    """POST /api/v1/series: `prescriber_id` is not checked, so a course at A is put under a prescriber
    who works only at B (who then orders, acknowledges and reviews for it from their B-only seat); the
    booking wizard offers every prescriber of every location."""
    from clinic.fixtures import CLEAR_SCREENING
    from tests.conftest import Client, sign_in

    c, own = world.client, world.own
    _, desk = _member(app, make_user, "front_desk", own.location_id)
    elsewhere = make_user("prescriber", locations=[world.other.location_id])
    body = {"first_name": "Ana", "last_name": "Here", "date_of_birth": "1985-05-05", "address": "x", "timezone": "UTC"}
    pid = c.post("/api/v1/patients", headers=desk, json=body).json["id"]
    screened = c.post(
        f"/api/v1/patients/{pid}/screenings",
        headers=world.desk.nurse,
        json={"answers": CLEAR_SCREENING, "location_id": own.location_id},
    )
    assert screened.status_code == 201, screened.json
    booked = c.post(
        "/api/v1/series",
        headers=desk,
        json={
            "patient_id": pid,
            "protocol": "ketamine-iv-induction",
            "location_id": own.location_id,
            "prescriber_id": elsewhere.id,
            "start_on": world.desk.start.isoformat(),
            "preferred_time": "09:00",
        },
    )
    assert booked.status_code in (403, 422), booked.status_code
    account = make_user("front_desk", locations=[own.location_id])
    app.test_client_class = Client
    page = app.test_client()
    sign_in(page, account)  # type: ignore[arg-type]
    offered = set(
        re.findall(r'name="prescriber_id".*?</select>', page.get("/schedule/book").get_data(as_text=True), re.S)
    )
    assert offered and all(f'value="{elsewhere.id}"' not in s for s in offered)


def test_the_chart_shows_a_patients_courses_at_other_locations(app, world: World, make_user) -> None:
    """/patients/{id}: a patient of B who is also booked at A is A's to see (SYS-12), but the chart
    (scheduling.queries.patient_courses) lists every course, B's too: its visits, chairs and links."""
    from datetime import timedelta

    from tests.conftest import Client, sign_in

    own, other = world.own, world.other
    later = (world.desk.start + timedelta(weeks=10)).isoformat()
    booked = world.desk.book(other.patient_id, protocol="ketamine-iv-induction", start_on=later, headers=world.admin)
    assert booked.status_code == 201, booked.json
    account = make_user("nurse", locations=[own.location_id])
    app.test_client_class = Client
    c = app.test_client()
    sign_in(c, account)  # type: ignore[arg-type]
    chart = c.get(f"/patients/{other.patient_id}")
    assert chart.status_code == 200
    body = chart.get_data(as_text=True)
    assert f'data-series="{booked.json["id"]}"' in body  # the course here is shown
    assert f'data-series="{other.series_id}"' not in body  # the course at B is not


def test_a_non_ascii_location_id_corrects_another_locations_ledger(app, world: World, make_user) -> None:
    """The same gap, writing: /inventory/ledger/{seq}/correct?location_id=<B in Arabic-Indic digits>
    (seq is per location, the location comes from id_arg) records a correction on B's ledger for a
    nurse of A only, with a witness who works at both."""
    from clinic.extensions import db
    from clinic.inventory.models import LedgerEntry
    from tests.conftest import Client, bearer, sign_in
    from tests.inventory.test_pages import submit

    other = world.other
    roaming, witness = make_user("nurse"), make_user("nurse")  # members of every location
    waste = world.client.post(
        "/api/v1/inventory/wastes",
        headers=bearer(app, roaming),
        json={
            "container_id": other.container_id,
            "quantity_mg": "1",
            "reason": "drawn up, not given",
            "no_administration_reason": "spoiled before the visit",
            "witness_email": witness.email,
            "witness_password": witness.password,
        },
    )
    assert waste.status_code == 201, waste.json
    account = make_user("nurse", locations=[world.own.location_id])
    app.test_client_class = Client
    c = app.test_client()
    sign_in(c, account)  # type: ignore[arg-type]
    arabic = str(other.location_id).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    page = f"/inventory/ledger/{waste.json['seq']}/correct?location_id={arabic}"
    fields = {"reason": "1 mg was charted twice", "witness_email": witness.email, "witness_password": witness.password}
    resp = submit(c, page, fields, page=page)
    assert resp.status_code != 302
    with app.app_context():
        corrections = db.session.scalars(
            db.select(LedgerEntry).where(LedgerEntry.location_id == other.location_id, LedgerEntry.kind == "correction")
        ).all()
    assert corrections == []


def test_staff_of_a_move_a_patient_registered_at_b_away_from_b(app, world: World, make_user) -> None:
    """PATCH /api/v1/patients/{id} {"location_id": A}: a patient registered at B with a course at A is
    A's to see, and update_patient checks only the new home (SYS-12), not the old one: A's front desk
    re-registers B's patient at A, and B's own staff no longer find them."""
    from clinic.fixtures import CLEAR_SCREENING

    c, own, other = world.client, world.own, world.other
    body = {
        "first_name": "Bo",
        "last_name": "Elsewhere",
        "date_of_birth": "1979-09-09",
        "address": "x",
        "timezone": "UTC",
    }
    made = c.post("/api/v1/patients", headers=world.admin, json={**body, "location_id": other.location_id})
    assert made.status_code == 201, made.json
    pid = made.json["id"]
    assert (
        c.post(
            f"/api/v1/patients/{pid}/screenings",
            headers=world.desk.nurse,
            json={"answers": CLEAR_SCREENING, "location_id": own.location_id},
        ).status_code
        == 201
    )
    booked = world.desk.book(pid, protocol="ketamine-iv-induction", headers=world.admin)  # a course at A
    assert booked.status_code == 201, booked.json
    _, desk_a = _member(app, make_user, "front_desk", own.location_id)
    _, desk_b = _member(app, make_user, "front_desk", other.location_id)
    assert c.get(f"/api/v1/patients/{pid}", headers=desk_b).status_code == 200
    moved = c.patch(f"/api/v1/patients/{pid}", headers=desk_a, json={"location_id": own.location_id})
    assert moved.status_code in (403, 422), moved.status_code
    assert c.get(f"/api/v1/patients/{pid}", headers=desk_b).status_code == 200


def test_a_prescribers_own_calendar_feed_keeps_showing_a_location_they_left(app, world: World, make_user) -> None:
    """/calendar/<token>.ics of a user: every visit of the courses under them (scheduling.calendar.render
    filters by prescriber only), so after an admin withdraws B the feed still carries B's visits."""
    from datetime import timedelta
    from urllib.parse import urlparse

    c, own, other = world.client, world.own, world.other
    account, prescriber = _member(app, make_user, "prescriber", own.location_id, other.location_id)
    booked = c.post(
        "/api/v1/series",
        headers=world.admin,
        json={
            "patient_id": other.patient_id,
            "protocol": "ketamine-iv-induction",
            "location_id": other.location_id,
            "prescriber_id": account.id,
            "start_on": (world.desk.start + timedelta(weeks=10)).isoformat(),
            "preferred_time": "09:00",
        },
    )
    assert booked.status_code == 201, booked.json
    first = booked.json["appointments"][0]["id"]
    assert (
        c.delete(f"/api/v1/locations/{other.location_id}/members/{account.id}", headers=world.admin).status_code == 204
    )
    feed = c.post("/api/v1/users/me/calendar-feed", headers=prescriber)
    assert feed.status_code == 201, feed.json
    ics = c.get(urlparse(feed.json["url"]).path).get_data(as_text=True)
    assert "BEGIN:VCALENDAR" in ics
    assert f"appointment-{first}." not in ics


def test_a_form_id_spelled_plus_n_books_another_locations_patient(app, world: World, make_user) -> None:
    """Forms: clinic.web.forms.WHOLE (``^[+-]?\\d{1,18}$``) turns "+<id>", "0…0<id>" or non-ASCII
    digits into the int id, which check_request never saw. POST /schedule/book with
    patient_id="+<B's patient>" books B's patient at A, and that course makes the patient (screening,
    weights, chart) A's to see from then on (visible_patients)."""
    from datetime import timedelta

    from clinic.extensions import db
    from clinic.scheduling.models import AppointmentSeries
    from tests.conftest import Client, sign_in
    from tests.inventory.test_pages import submit

    own, other = world.own, world.other
    account = make_user("front_desk", locations=[own.location_id])
    app.test_client_class = Client
    c = app.test_client()
    sign_in(c, account)  # type: ignore[arg-type]
    form = {
        "patient_id": f"+{other.patient_id}",
        "protocol": "ketamine-iv-induction",
        "location_id": str(own.location_id),
        "prescriber_id": str(world.desk.prescriber.id),
        "start_on": (world.desk.start + timedelta(weeks=10)).isoformat(),
        "preferred_time": "09:00",
    }
    resp = submit(c, "/schedule/book", form, page="/schedule/book")
    assert resp.status_code != 302, resp.headers.get("Location")
    with app.app_context():
        here = db.session.scalars(
            db.select(AppointmentSeries.id).where(
                AppointmentSeries.patient_id == other.patient_id, AppointmentSeries.location_id == own.location_id
            )
        ).all()
    assert here == []


def test_a_form_container_id_spelled_plus_n_wastes_from_another_locations_vial(app, world: World, make_user) -> None:
    """The same gap, on the ledger: POST /inventory/waste with container_id="+<B's vial>" records a
    waste on B's ledger for a nurse of A only (the service takes the location from the container and
    trusts check_request); the witness works at both."""
    from clinic.extensions import db
    from clinic.inventory.models import LedgerEntry
    from tests.conftest import Client, sign_in
    from tests.inventory.test_pages import submit

    own, other = world.own, world.other
    witness = make_user("nurse")  # a member of every location
    account = make_user("nurse", locations=[own.location_id])
    app.test_client_class = Client
    c = app.test_client()
    sign_in(c, account)  # type: ignore[arg-type]
    page = f"/inventory/waste?location_id={own.location_id}"
    form = {
        "container_id": f"+{other.container_id}",
        "quantity_mg": "1",
        "reason": "drawn up, not given",
        "no_administration_reason": "spoiled before the visit",
        "witness_email": witness.email,
        "witness_password": witness.password,
    }
    resp = submit(c, page, form, page=page)
    assert resp.status_code != 302, resp.headers.get("Location")
    with app.app_context():
        wastes = db.session.scalars(
            db.select(LedgerEntry.id).where(LedgerEntry.location_id == other.location_id, LedgerEntry.kind == "waste")
        ).all()
    assert wastes == []


def test_a_patient_an_admin_registers_without_a_location_is_seen_everywhere(app, world: World, make_user) -> None:
    """POST /api/v1/patients by an admin of a clinic of several locations, no location_id: the patient
    gets no home (_home_location: an admin works nowhere in particular), and a patient of no home is
    everyone's (visible_patients, _patient_elsewhere), even once booked only at B."""
    from clinic.fixtures import CLEAR_SCREENING

    c, own, other = world.client, world.own, world.other
    body = {"first_name": "No", "last_name": "Home", "date_of_birth": "1970-07-07", "address": "x", "timezone": "UTC"}
    made = c.post("/api/v1/patients", headers=world.admin, json=body)
    assert made.status_code == 201, made.json
    pid = made.json["id"]
    screened = c.post(
        f"/api/v1/patients/{pid}/screenings",
        headers=world.desk.nurse,
        json={"answers": CLEAR_SCREENING, "location_id": other.location_id},
    )
    assert screened.status_code == 201, screened.json
    booked = c.post(
        "/api/v1/series",
        headers=world.admin,
        json={
            "patient_id": pid,
            "protocol": "ketamine-iv-induction",
            "location_id": other.location_id,
            "prescriber_id": world.desk.prescriber.id,
            "start_on": world.desk.start.isoformat(),
            "preferred_time": "09:00",
        },
    )
    assert booked.status_code == 201, booked.json
    _, nurse = _member(app, make_user, "nurse", own.location_id)
    assert c.get(f"/api/v1/patients/{pid}", headers=nurse).status_code == 403
    assert c.get(f"/api/v1/patients/{pid}/screenings", headers=nurse).status_code == 403


def test_the_booking_form_names_another_locations_patient_given_non_ascii_digits(app, world: World, make_user) -> None:
    """GET /schedule/book?patient_id=<B's patient in Arabic-Indic digits>: check_request skips the
    value, and the picker's patient_choice (id_arg, then db.session.get with no visibility filter)
    prints the patient's name and date of birth."""
    from clinic.extensions import db
    from clinic.patients.models import Patient
    from tests.conftest import Client, sign_in

    own, other = world.own, world.other
    account = make_user("front_desk", locations=[own.location_id])
    app.test_client_class = Client
    c = app.test_client()
    sign_in(c, account)  # type: ignore[arg-type]
    with app.app_context():
        last_name = db.session.get(Patient, other.patient_id).last_name
    arabic = str(other.patient_id).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    page = c.get("/schedule/book", query_string={"patient_id": arabic})
    assert page.status_code in (403, 404) or last_name not in page.get_data(as_text=True)

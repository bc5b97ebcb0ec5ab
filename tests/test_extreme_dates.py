"""Dates at the ends of the calendar (review): Python's dates run from year 1 to 9999, and one day
added or one time zone applied next to either end raised OverflowError, a 500. Given by a user, that
is their input's fault: every such request is a 422 naming the field (problem+json for the API, a
form error on a page), and writes nothing. An instant within a day of either end is refused as
input too (stored, it could not be shown in every zone).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from clinic.extensions import db
from tests.conftest import sign_in
from tests.inventory.conftest import (
    Clinic,
    clinic,  # noqa: F401  (the fixture)
)
from tests.scheduling.conftest import Desk, make_desk

PROBLEM = "application/problem+json"
MAX_DAY, MIN_DAY = "9999-12-31", "0001-01-01"


@dataclass
class World:
    desk: Desk
    clinic: Clinic
    patient_id: int
    unenrolled_id: int
    series_id: int
    appointment_id: int
    web: Any  # a front-desk browser, signed in
    clinician_web: Any  # a nurse's browser, signed in

    def series(self, **overrides: Any) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id,
            "protocol": "esketamine-rems",
            "location_id": self.desk.location_id,
            "prescriber_id": self.desk.prescriber.id,
            "start_on": self.desk.start.isoformat(),
            "preferred_time": "09:00",
            **overrides,
        }


@pytest.fixture
def world(app, client, make_user, clinic) -> World:  # noqa: F811
    desk = make_desk(app, client, make_user)
    patient_id = desk.patient()
    booked = desk.book(patient_id)
    assert booked.status_code == 201, booked.json
    app.test_client_class = type(client)
    web, clinician_web = app.test_client(), app.test_client()
    sign_in(web, make_user("front_desk"))
    sign_in(clinician_web, clinic.nurse)
    unenrolled = desk.patient(rems=False)
    return World(
        desk,
        clinic,
        patient_id,
        unenrolled,
        booked.json["id"],
        booked.json["appointments"][0]["id"],
        web,
        clinician_web,
    )


def _rows(app) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Rows per table, but for the access log (every request writes its row) and sign-in records."""
    with app.app_context():
        return {
            t.name: db.session.scalar(select(func.count()).select_from(t)) or 0
            for t in db.metadata.sorted_tables
            if t.name not in ("access_events", "auth_attempts", "api_tokens", "user_sessions")
        }


#: (id, request builder, the field the error names)
Api = Callable[[World], tuple[str, str, dict[str, Any] | None, dict[str, str]]]
API_CASES: list[tuple[str, Api, str]] = [
    (
        "series-start-9999-12-30",
        lambda w: ("POST", "/series", w.series(start_on="9999-12-30"), w.desk.desk),
        "start_on",
    ),
    ("series-start-9999-12-31", lambda w: ("POST", "/series", w.series(start_on=MAX_DAY), w.desk.desk), "start_on"),
    (
        "series-start-9999-12-31-late",
        lambda w: ("POST", "/series", w.series(start_on=MAX_DAY, preferred_time="23:45"), w.desk.desk),
        "start_on",
    ),
    (
        "reschedule-to-9999-12-31",
        lambda w: (
            "POST",
            f"/appointments/{w.appointment_id}/reschedule",
            {"starts_at": f"{MAX_DAY}T23:45:00+00:00"},
            w.desk.desk,
        ),
        "starts_at",
    ),
    (
        "reschedule-to-9999-12-31-morning",
        lambda w: (
            "POST",
            f"/appointments/{w.appointment_id}/reschedule",
            {"starts_at": f"{MAX_DAY}T14:00:00+00:00"},
            w.desk.desk,
        ),
        "starts_at",
    ),
    (
        "reschedule-to-year-1",
        lambda w: (
            "POST",
            f"/appointments/{w.appointment_id}/reschedule",
            {"starts_at": f"{MIN_DAY}T00:00:00+00:00"},
            w.desk.desk,
        ),
        "starts_at",
    ),
    (
        "patient-born-year-1",
        lambda w: (
            "POST",
            "/patients",
            {
                "first_name": "A",
                "last_name": "B",
                "date_of_birth": MIN_DAY,
                "address": "1 St",
                "timezone": "America/New_York",
            },
            w.desk.desk,
        ),
        "date_of_birth",
    ),
    (
        "patient-born-9999",
        lambda w: (
            "POST",
            "/patients",
            {
                "first_name": "A",
                "last_name": "B",
                "date_of_birth": MAX_DAY,
                "address": "1 St",
                "timezone": "Pacific/Kiritimati",
            },
            w.desk.desk,
        ),
        "date_of_birth",
    ),
    (
        "weight-measured-year-1",
        lambda w: (
            "POST",
            f"/patients/{w.patient_id}/weights",
            {"weight_kg": "70", "measured_at": f"{MIN_DAY}T00:00:00+00:00"},
            w.desk.nurse,
        ),
        "measured_at",
    ),
    (
        "receipt-occurred-year-1",
        lambda w: _receipt(w, occurred_at=f"{MIN_DAY}T00:00:00+00:00"),
        "occurred_at",
    ),
    (
        "loss-discovered-year-1",
        lambda w: (
            "POST",
            "/inventory/losses",
            {
                "container_id": w.clinic.receive(count=1).json["containers"][0]["id"],
                "quantity_mg": "1",
                "kind": "spill",
                "description": "dropped",
                "discovered_at": f"{MIN_DAY}T00:00:00+00:00",
            },
            w.clinic.nurse_h,
        ),
        "discovered_at",
    ),
]


#: far-off dates that run into no arithmetic: accepted or refused, never a 500
FAR_CASES: list[tuple[str, Api, str]] = [
    (
        "loss-discovered-9999-12-30",
        lambda w: (
            "POST",
            "/inventory/losses",
            {
                "container_id": w.clinic.receive(count=1).json["containers"][0]["id"],
                "quantity_mg": "1",
                "kind": "theft",
                "description": "gone",
                "discovered_at": "9999-12-30T12:00:00+00:00",
            },
            w.clinic.nurse_h,
        ),
        "discovered_at",
    ),
    (
        "weight-measured-9999-12-30",
        lambda w: (
            "POST",
            f"/patients/{w.patient_id}/weights",
            {"weight_kg": "70", "measured_at": "9999-12-30T12:00:00+00:00"},
            w.desk.nurse,
        ),
        "measured_at",
    ),
    (
        "rems-enrolled-9999",
        lambda w: ("POST", f"/patients/{w.unenrolled_id}/rems-enrollment", {"enrolled_on": MAX_DAY}, w.desk.nurse),
        "enrolled_on",
    ),
    (
        "rems-enrolled-year-1",
        lambda w: ("POST", f"/patients/{w.unenrolled_id}/rems-enrollment", {"enrolled_on": MIN_DAY}, w.desk.nurse),
        "enrolled_on",
    ),
    (
        "receipt-expires-9999",
        lambda w: _receipt(w, expires_on=MAX_DAY),
        "expires_on",
    ),
    (
        "closure-9999",
        lambda w: (
            "POST",
            f"/locations/{w.desk.location_id}/closures",
            {"starts_on": MAX_DAY, "ends_on": MAX_DAY, "reason": "end of time"},
            w.desk.admin,
        ),
        "starts_on",
    ),
    (
        "location-rems-certified-9999",
        lambda w: ("PATCH", f"/locations/{w.desk.location_id}", {"rems_certified_until": MAX_DAY}, w.desk.admin),
        "rems_certified_until",
    ),
]


def _receipt(w: World, **overrides: Any) -> tuple[str, str, dict[str, Any], dict[str, str]]:
    from tests.clock import in_years
    from tests.inventory.conftest import dea_number

    body = {
        "storage_site_id": w.clinic.safe_id,
        "drug_id": w.clinic.drug_id,
        "lot_number": "L-END",
        "expires_on": in_years(3).isoformat(),
        "container_count": 1,
        "supplier_name": "Acme",
        "supplier_address": "1 Supply Rd",
        "supplier_dea_registration": dea_number(),
        "invoice_number": "INV-END",
        **overrides,
    }
    return "POST", "/inventory/receipts", body, w.clinic.nurse_h


GET_CASES: list[tuple[str, Callable[[World], tuple[str, dict[str, Any], dict[str, str]]]]] = [
    (
        "appointments-at-the-end",
        lambda w: (
            "/appointments",
            {
                "location_id": w.desk.location_id,
                "since": f"{MAX_DAY}T00:00:00+00:00",
                "until": f"{MAX_DAY}T23:59:59+00:00",
            },
            w.desk.desk,
        ),
    ),
    (
        "appointments-at-the-start",
        lambda w: (
            "/appointments",
            {
                "location_id": w.desk.location_id,
                "since": f"{MIN_DAY}T00:00:00+00:00",
                "until": f"{MIN_DAY}T23:00:00+00:00",
            },
            w.desk.desk,
        ),
    ),
    (
        "ledger-since-year-1-until-9999",
        lambda w: (
            "/inventory/ledger",
            {
                "location_id": w.clinic.location_id,
                "since": f"{MIN_DAY}T00:00:00+00:00",
                "until": f"{MAX_DAY}T23:59:59+00:00",
            },
            w.clinic.nurse_h,
        ),
    ),
]


@pytest.mark.parametrize(("build", "field"), [pytest.param(b, f, id=i) for i, b, f in API_CASES])
def test_api_answers_an_end_of_calendar_date_with_a_field_error(app, world, build, field):
    method, path, body, headers = build(world)
    before = _rows(app)
    resp = world.desk.client.open(f"/api/v1{path}", method=method, json=body, headers=headers)
    assert resp.status_code == 422, (resp.status_code, resp.get_data(as_text=True)[:400])
    assert resp.mimetype == PROBLEM
    assert field in resp.json.get("errors", {}), resp.json
    assert _rows(app) == before


@pytest.mark.parametrize("build", [pytest.param(b, id=i) for i, b, _ in FAR_CASES])
def test_api_takes_or_refuses_a_far_off_date_without_a_server_error(world, build):
    method, path, body, headers = build(world)
    resp = world.desk.client.open(f"/api/v1{path}", method=method, json=body, headers=headers)
    assert resp.status_code < 500, (resp.status_code, resp.get_data(as_text=True)[:400])


@pytest.mark.parametrize("build", [pytest.param(b, id=i) for i, b in GET_CASES])
def test_api_reads_at_the_ends_of_the_calendar_are_no_server_error(world, build):
    """A query window at either end of the calendar: an answer or a 422, never a 500."""
    path, query, headers = build(world)
    resp = world.desk.client.get(f"/api/v1{path}", query_string=query, headers=headers)
    assert resp.status_code in (200, 422), (resp.status_code, resp.get_data(as_text=True)[:400])
    if resp.status_code == 422:
        assert resp.mimetype == PROBLEM and resp.json["errors"]


PAGE_GETS = [
    ("schedule-day-9999-12-31", "web", lambda w: f"/schedule/day?location_id={w.desk.location_id}&date={MAX_DAY}"),
    ("schedule-day-year-1", "web", lambda w: f"/schedule/day?location_id={w.desk.location_id}&date={MIN_DAY}"),
    ("schedule-week-9999-12-31", "web", lambda w: f"/schedule/week?location_id={w.desk.location_id}&date={MAX_DAY}"),
    ("schedule-week-year-1", "web", lambda w: f"/schedule/week?location_id={w.desk.location_id}&date={MIN_DAY}"),
    (
        "ledger-until-9999-12-31",
        "clinician_web",
        lambda w: f"/inventory/ledger?location_id={w.clinic.location_id}&until={MAX_DAY}",
    ),
    (
        "ledger-since-year-1",
        "clinician_web",
        lambda w: f"/inventory/ledger?location_id={w.clinic.location_id}&since={MIN_DAY}",
    ),
    ("patients-born-year-1", "web", lambda w: f"/patients/?date_of_birth={MIN_DAY}"),
]


@pytest.mark.parametrize(("who", "url"), [pytest.param(who, u, id=i) for i, who, u in PAGE_GETS])
def test_pages_take_an_end_of_calendar_date_without_a_server_error(world, who, url):
    resp = getattr(world, who).get(url(world))
    assert resp.status_code in (200, 422), (resp.status_code, resp.get_data(as_text=True)[-600:])


PAGE_POSTS: list[tuple[str, Callable[[World], tuple[str, dict[str, str]]], str]] = [
    (
        "book-9999-12-30",
        lambda w: ("/schedule/book", {k: str(v) for k, v in w.series(start_on="9999-12-30").items()}),
        "start_on",
    ),
    (
        "book-preview-9999-12-31",
        lambda w: ("/schedule/book/preview", {k: str(v) for k, v in w.series(start_on=MAX_DAY).items()}),
        "start_on",
    ),
    (
        "reschedule-9999-12-31",
        lambda w: (
            f"/schedule/series/{w.series_id}/appointments/{w.appointment_id}/reschedule",
            {"starts_at": f"{MAX_DAY}T14:00"},
        ),
        "starts_at",
    ),
]


@pytest.mark.parametrize(("build", "field"), [pytest.param(b, f, id=i) for i, b, f in PAGE_POSTS])
def test_pages_answer_an_end_of_calendar_date_with_a_form_error(app, world, build, field):
    path, form = build(world)
    before = _rows(app)
    resp = world.web.post(path, data={**form, "csrf_token": world.web.csrf("/schedule/book")})
    assert resp.status_code == 422, (resp.status_code, resp.get_data(as_text=True)[-600:])
    assert "Too far in the past or the future" in resp.get_data(as_text=True) or field in resp.get_data(as_text=True)
    assert _rows(app) == before

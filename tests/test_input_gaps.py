"""Smaller gaps found from outside (issue 9): each a 4xx naming the field, writing nothing, where it
was a silent wrong state or a 500."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import bearer
from tests.inventory.conftest import (
    clinic,  # noqa: F401  (the fixture)
    dea_number,
    make_location,
)
from tests.inventory.conftest import ndc as make_ndc
from tests.scheduling.conftest import make_desk

PROBLEM = "application/problem+json"


def test_hours_refuse_an_empty_week_and_name_the_visits_new_hours_would_strand(app, client, make_user):
    desk = make_desk(app, client, make_user, chairs=1)
    path = f"/api/v1/locations/{desk.location_id}/hours"
    empty = client.put(path, headers=desk.admin, json={})
    assert (empty.status_code, empty.mimetype) == (422, PROBLEM) and "hours" in empty.json["errors"]
    appts = desk.book(desk.patient(rems=False), "ketamine-iv-induction").json["appointments"]  # 09:00-11:00 local
    mornings_off = {d: ["12:00", "18:00"] for d in ("mon", "tue", "wed", "thu", "fri")}
    refused = client.put(path, headers=desk.admin, json=mornings_off)
    assert refused.status_code == 409, refused.json
    assert [v["appointment_id"] for v in refused.json["errors"]["visits"]] == [a["id"] for a in appts]
    location = client.get(f"/api/v1/locations/{desk.location_id}", headers=desk.admin).json
    assert location["hours"]["mon"] == ["08:00", "18:00"]  # nothing written
    assert (
        client.put(
            path,
            headers=desk.admin,
            json={**mornings_off, "mon": ["07:00", "19:00"], "wed": ["08:00", "12:00"], "fri": ["09:00", "11:00"]},
        ).status_code
        == 200
    )


@pytest.mark.parametrize("zone", ["localtime", "Factory", "posixrules", "right/UTC"])
def test_time_zones_are_iana_names(client, make_user, app, zone):
    admin = bearer(app, make_user("admin"))
    resp = client.post(
        "/api/v1/locations",
        headers=admin,
        json={"name": "Tz", "address": "1 St", "dea_registration": dea_number(), "timezone": zone},
    )
    assert resp.status_code == 422 and "timezone" in resp.json["errors"], resp.json
    patient = client.post(
        "/api/v1/patients",
        headers=admin,
        json={"first_name": "T", "last_name": "Z", "date_of_birth": "1980-01-01", "address": "x", "timezone": zone},
    )
    assert patient.status_code == 422 and "timezone" in patient.json["errors"]


def test_dates_beyond_2100_are_a_field_error(app, client, make_user):
    desk = make_desk(app, client, make_user, chairs=1)
    pid = desk.patient()
    far = desk.book(pid, "ketamine-iv-induction", start_on="2101-01-03")
    assert (far.status_code, far.mimetype) == (422, PROBLEM) and "start_on" in far.json["errors"], far.json
    cert = client.patch(
        f"/api/v1/locations/{desk.location_id}", headers=desk.admin, json={"rems_certified_until": "5000-01-01"}
    )
    assert cert.status_code == 422 and "rems_certified_until" in cert.json["errors"]
    appt = desk.book(pid, "ketamine-iv-induction").json["appointments"][0]
    moved = client.post(
        f"/api/v1/appointments/{appt['id']}/reschedule",
        headers=desk.desk,
        json={"starts_at": "2150-03-01T14:00:00+00:00"},
    )
    assert moved.status_code == 422 and "starts_at" in moved.json["errors"]


def test_drug_definitions_have_sane_bounds(app, client, make_user):
    admin = bearer(app, make_user("admin"))
    base = {"name": "Absurd", "schedule": "CIII", "form": "vial", "unit": "mL"}
    for mg, units, field in [
        ("1000000000", "1000000000", "mg_per_unit"),
        ("50", "1000000", "units_per_container"),
        ("1000", "1000", "units_per_container"),
    ]:
        ndc = make_ndc()
        resp = client.post(
            "/api/v1/drugs", headers=admin, json={**base, "ndc": ndc, "mg_per_unit": mg, "units_per_container": units}
        )
        assert resp.status_code == 422 and field in resp.json["errors"], resp.json


def test_only_the_owner_or_an_admin_revokes_a_calendar_feed_and_an_auditor_has_none(app, client, make_user):
    desk = make_desk(app, client, make_user, chairs=1)
    mine = client.post("/api/v1/users/me/calendar-feed", headers=desk.prescriber_h)
    assert mine.status_code == 201
    other_nurse = bearer(app, make_user("nurse"))
    assert client.delete(f"/api/v1/calendar-feeds/{mine.json['id']}", headers=other_nurse).status_code == 403
    assert client.delete(f"/api/v1/calendar-feeds/{mine.json['id']}", headers=desk.admin).status_code == 204
    own = client.post("/api/v1/users/me/calendar-feed", headers=desk.nurse).json
    assert client.delete(f"/api/v1/calendar-feeds/{own['id']}", headers=desk.nurse).status_code == 204
    auditor = bearer(app, make_user("auditor"))
    assert client.post("/api/v1/users/me/calendar-feed", headers=auditor).status_code == 403


def test_a_waste_naming_a_patient_that_does_not_exist_is_a_field_error(clinic):  # noqa: F811
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    before = len(clinic.ledger())
    resp = clinic.post(
        "/inventory/wastes",
        {
            "container_id": cid,
            "quantity_mg": "5",
            "reason": "drawn but not given",
            "patient_id": 2_000_000_000,
            **clinic.witness_fields(),
        },
    )
    assert (resp.status_code, resp.mimetype) == (404, PROBLEM), resp.json
    assert "patient_id" in resp.json["errors"]
    assert len(clinic.ledger()) == before


def test_an_esketamine_course_cannot_start_at_a_location_made_without_certification(app, client, make_user):
    desk = make_desk(app, client, make_user, chairs=1)
    uncertified = make_location(client, desk.admin, timezone=desk.tz)
    assert (
        client.post(f"/api/v1/locations/{uncertified}/chairs", headers=desk.admin, json={"name": "C"}).status_code
        == 201
    )
    resp = client.post(
        "/api/v1/series",
        headers=desk.desk,
        json={
            "patient_id": desk.patient(),
            "protocol": "esketamine-mdsi",
            "location_id": uncertified,
            "prescriber_id": desk.prescriber.id,
            "start_on": (desk.start + timedelta(days=7)).isoformat(),
            "preferred_time": "09:00",
        },
    )
    assert resp.status_code == 422 and "location_id" in resp.json["errors"], resp.json

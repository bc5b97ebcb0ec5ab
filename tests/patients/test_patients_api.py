"""Patients through the API: create, read, update, list, validation, and who sees what."""

from __future__ import annotations

import pytest

from clinic.patients.models import Patient
from tests.patients.conftest import PROBLEM, TZ, local_today, row_counts

FULL = {
    "first_name": "Robin",
    "last_name": "Quill",
    "date_of_birth": "1975-06-30",
    "address": "12 Oak Ave\nSpringfield IL 62704",
    "timezone": TZ,
    "email": "Robin.Quill@Example.org",
    "phone": "+1 (217) 555-0100",
    "sex": "X",
    "preferred_channel": "sms",
    "reminders_opt_out": True,
    "emergency_contact": "Sam Quill (spouse) +1 217 555 0101",
    "ride_contact": "Lee Quill +1 217 555 0102",
}


def test_create_with_every_field_and_read_it_back(api):
    created = api.new_patient(**FULL)
    assert {k: created[k] for k in FULL} == {**FULL, "email": "robin.quill@example.org"}
    assert created["screening"] is None and created["rems_enrolled_on"] is None
    fetched = api.get(f"/patients/{created['id']}", role="nurse")
    assert fetched.status_code == 200
    assert fetched.json == {**created, "latest_weight_kg": None}  # the creator was front desk


def test_create_with_the_contract_fields_only(api):
    created = api.new_patient(role="nurse")
    assert created["sex"] is None and created["email"] is None and created["phone"] is None
    assert created["preferred_channel"] == "none"  # nothing to reach the patient on yet
    assert created["reminders_opt_out"] is False
    assert api.new_patient(email="a@example.org")["preferred_channel"] == "email"
    assert api.new_patient(phone="+1 312 555 0199")["preferred_channel"] == "sms"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"first_name": ""}, "first_name"),
        ({"first_name": "   "}, "first_name"),
        ({"last_name": "x" * 101}, "last_name"),
        ({"date_of_birth": "not a date"}, "date_of_birth"),
        ({"date_of_birth": "2999-01-01"}, "date_of_birth"),
        ({"date_of_birth": "1850-01-01"}, "date_of_birth"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"email": "not-an-email"}, "email"),
        ({"phone": "call me"}, "phone"),
        ({"sex": "Q"}, "sex"),
        ({"preferred_channel": "pigeon"}, "preferred_channel"),
        ({"preferred_channel": "email"}, "preferred_channel"),  # no email given
        ({"preferred_channel": "sms"}, "preferred_channel"),  # no phone given
        ({"reminders_opt_out": "sometimes"}, "reminders_opt_out"),
        ({"nickname": "Pat"}, "nickname"),
        ({"first_name": "a\x00b"}, "first_name"),
    ],
)
def test_invalid_create_is_a_422_problem_and_writes_nothing(app, api, change, field):
    body = {
        "first_name": "Pat",
        "last_name": "Example",
        "date_of_birth": "1980-02-03",
        "address": "5 Elm St",
        "timezone": TZ,
        **change,
    }
    api.staff.ready("front_desk")
    before = row_counts(app, Patient)
    resp = api.post("/patients", body, role="front_desk")
    assert resp.status_code == 422, resp.json
    assert resp.mimetype == PROBLEM
    assert resp.json["status"] == 422 and resp.json["code"] == "validation_failed"
    assert field in resp.json["errors"]
    assert row_counts(app, Patient) == before


def test_missing_required_fields_are_named(api):
    resp = api.post("/patients", {}, role="front_desk")
    assert resp.status_code == 422
    assert set(resp.json["errors"]) == {"first_name", "last_name", "date_of_birth", "address", "timezone"}


def test_update_changes_only_what_is_given_and_is_audited(app, api):
    from sqlalchemy import select

    from clinic.audit.models import AuditEvent
    from clinic.extensions import db

    p = api.new_patient()
    resp = api.patch(
        f"/patients/{p['id']}",
        {"phone": "+1 312 555 0123", "preferred_channel": "sms", "ride_contact": "Jo +1 312 555 0000"},
        role="front_desk",
    )
    assert resp.status_code == 200, resp.json
    assert resp.json["phone"] == "+1 312 555 0123" and resp.json["preferred_channel"] == "sms"
    assert resp.json["first_name"] == p["first_name"] and resp.json["date_of_birth"] == p["date_of_birth"]
    resp = api.patch(f"/patients/{p['id']}", {"ride_contact": None, "sex": "F"}, role="nurse")
    assert resp.json["ride_contact"] is None and resp.json["sex"] == "F"
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.subject_type == "patient", AuditEvent.subject_id == p["id"])
            .order_by(AuditEvent.id)
        ).all()
        assert [r.tag for r in rows] == [
            "patients:patient:create",
            "patients:patient:update",
            "patients:patient:update",
        ]
        assert rows[1].data == {"fields": ["phone", "preferred_channel", "ride_contact"]}
        assert "+1 312" not in str([r.data for r in rows])  # field names, never the values


def test_update_refusals_write_nothing(app, api):
    p = api.new_patient(email="x@example.org")
    api.staff.ready("nurse")
    before = row_counts(app, Patient)
    assert api.patch(f"/patients/{p['id']}", {}, role="front_desk").status_code == 422
    assert api.patch(f"/patients/{p['id']}", {"email": None}, role="front_desk").status_code == 422  # channel email
    assert api.patch(f"/patients/{p['id']}", {"date_of_birth": "2999-01-01"}).status_code == 422
    assert api.patch(f"/patients/{p['id']}", {"id": 5}).status_code == 422
    assert api.patch("/patients/999999", {"sex": "M"}).status_code == 404
    assert row_counts(app, Patient) == before
    assert api.get(f"/patients/{p['id']}").json["email"] == "x@example.org"
    # clearing the email works once reminders go elsewhere
    resp = api.patch(f"/patients/{p['id']}", {"email": None, "preferred_channel": "none"})
    assert resp.status_code == 200 and resp.json["email"] is None


def test_unknown_patient_is_a_404_problem(api):
    resp = api.get("/patients/999999")
    assert resp.status_code == 404 and resp.mimetype == PROBLEM


def test_list_searches_names_and_pages(api):
    tag = "Zyx" + local_today().strftime("%j")
    a = api.new_patient(first_name="Ann", last_name=f"{tag}-Moss")
    b = api.new_patient(first_name=f"{tag}ander", last_name="Moss", date_of_birth="1990-01-01")
    api.new_patient(first_name="Other", last_name="Person")
    found = api.get("/patients", role="front_desk", q=tag.lower())
    assert found.status_code == 200
    assert [i["id"] for i in found.json["items"]] == [a["id"], b["id"]]
    assert found.json["items"][0] == {
        "id": a["id"],
        "first_name": "Ann",
        "last_name": f"{tag}-Moss",
        "date_of_birth": "1980-02-03",
        "phone": None,
        "email": None,
        "eligibility": None,
    }
    assert [i["id"] for i in api.get("/patients", q=f"ann {tag}").json["items"]] == [a["id"]]
    assert [i["id"] for i in api.get("/patients", q=tag, date_of_birth="1990-01-01").json["items"]] == [b["id"]]
    page = api.get("/patients", q=tag, limit=1).json
    assert [i["id"] for i in page["items"]] == [a["id"]] and page["next_cursor"] == str(a["id"])
    page = api.get("/patients", q=tag, limit=1, cursor=page["next_cursor"]).json
    assert [i["id"] for i in page["items"]] == [b["id"]]
    assert api.get("/patients", q="%").status_code == 200  # LIKE wildcards are escaped
    assert api.get("/patients", q="a\x00").status_code == 422
    assert api.get("/patients", limit=0).status_code == 422


def test_auditors_do_not_see_patients(api):
    p = api.new_patient()
    for path in (
        "/patients",
        f"/patients/{p['id']}",
        f"/patients/{p['id']}/weights",
        f"/patients/{p['id']}/screenings",
    ):
        assert api.get(path, role="auditor").status_code == 403
    assert api.post("/patients", {}, role="auditor").status_code == 403


def test_front_desk_sees_the_decision_but_not_the_reasons(api):
    p = api.new_patient()
    assert api.screen(p["id"], psychosis_or_mania=True, medications=["alprazolam"]).status_code == 201
    assert api.post(f"/patients/{p['id']}/weights", {"weight_kg": "70"}).status_code == 201
    desk = api.get(f"/patients/{p['id']}", role="front_desk").json
    assert desk["screening"]["eligibility"] == "review"
    assert set(desk["screening"]) == {"id", "eligibility", "screened_at", "overridden_at", "review_status"}
    assert "latest_weight_kg" not in desk
    assert "alprazolam" not in str(desk) and "CI-" not in str(desk)
    for role in ("nurse", "prescriber", "admin"):
        full = api.get(f"/patients/{p['id']}", role=role).json
        assert full["latest_weight_kg"] == "70"
        assert [f["code"] for f in full["screening"]["flags"]] == ["CI-06", "CI-10"]
        assert full["screening"]["answers"]["medications"] == ["alprazolam"]
    # the clinical lists are closed to the front desk altogether
    assert api.get(f"/patients/{p['id']}/screenings", role="front_desk").status_code == 403
    assert api.get(f"/patients/{p['id']}/weights", role="front_desk").status_code == 403
    assert api.screen(p["id"], role="front_desk").status_code == 403
    # and the list shows eligibility only
    listed = api.get("/patients", role="front_desk", q=p["last_name"]).json["items"]
    (mine,) = [item for item in listed if item["id"] == p["id"]]  # others may share the name
    assert mine["eligibility"] == "review" and "screening" not in mine


def test_patient_views_are_in_the_access_log(app, api):
    from sqlalchemy import select

    from clinic.audit.models import AccessEvent
    from clinic.extensions import db

    p = api.new_patient()
    api.get(f"/patients/{p['id']}", role="front_desk")
    with app.app_context():
        row = db.session.scalars(
            select(AccessEvent).where(AccessEvent.object == f"patient:{p['id']}").order_by(AccessEvent.id.desc())
        ).first()
        assert row is not None
        assert row.action == "GET patients_api.PatientById" and row.outcome == "allowed"
        assert row.user_id == api.staff.account("front_desk").id

"""Screening through the API: the acceptance cases, per-location levels and the prescriber override."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from clinic.patients.models import ScreeningResult
from tests.inventory.conftest import dea_number, make_location
from tests.patients.conftest import PROBLEM, answers, born_aged, row_counts

REASON = "Psychosis in remission for 6 years; benefit outweighs risk, monitor closely."


def levels(flags):
    return [(f["code"], f["level"]) for f in flags]


def test_seventeen_year_old_is_ineligible(api):
    p = api.new_patient(date_of_birth=born_aged(17))
    resp = api.screen(p["id"])
    assert resp.status_code == 201, resp.json
    assert resp.json["eligibility"] == "ineligible"
    assert levels(resp.json["flags"]) == [("CI-01", "HARD")]
    assert "age 17" in resp.json["flags"][0]["text"]


def test_eighteen_year_old_is_eligible(api):
    p = api.new_patient(date_of_birth=born_aged(18, days_past_birthday=0))
    assert api.screen(p["id"]).json["eligibility"] == "eligible"


def test_pregnant_patient_is_ineligible(api):
    p = api.new_patient()
    resp = api.screen(p["id"], pregnant=True)
    assert resp.json["eligibility"] == "ineligible"
    assert levels(resp.json["flags"]) == [("CI-07", "HARD")]
    assert "pregnan" in resp.json["flags"][0]["text"].lower()


def test_benzodiazepine_and_lamotrigine_give_two_warnings_with_reasons(api):
    p = api.new_patient()
    resp = api.screen(p["id"], medications=["Lorazepam 1 mg", "LAMOTRIGINE"])
    assert resp.status_code == 201
    assert resp.json["eligibility"] == "eligible"
    benzo, lamo = resp.json["flags"]
    assert (benzo["code"], benzo["level"]) == ("CI-10", "WARN")
    assert "Lorazepam 1 mg" in benzo["text"] and "sedation" in benzo["text"]
    assert (lamo["code"], lamo["level"]) == ("CI-13", "WARN")
    assert "LAMOTRIGINE" in lamo["text"] and "antidepressant" in lamo["text"]


def test_psychosis_needs_review(api):
    p = api.new_patient()
    resp = api.screen(p["id"], psychosis_or_mania=True)
    assert resp.json["eligibility"] == "review"
    assert levels(resp.json["flags"]) == [("CI-06", "OVERRIDE")]


def test_screening_is_stamped_with_user_and_time_and_audited(app, api):
    from clinic.audit.models import AuditEvent
    from clinic.extensions import db

    p = api.new_patient()
    resp = api.screen(p["id"], role="prescriber", substance_use_disorder=True, medications=["oxycodone", "oxycodone "])
    body = resp.json
    assert body["screened_by_id"] == api.staff.account("prescriber").id and body["screened_at"].endswith("+00:00")
    assert body["answers"]["medications"] == ["oxycodone"]  # duplicates dropped
    assert body["overridden_at"] is None and body["override_reason"] is None
    with app.app_context():
        event = db.session.scalars(
            select(AuditEvent).where(AuditEvent.tag == "patients:screening:record", AuditEvent.subject_id == p["id"])
        ).one()
        assert event.actor_id == body["screened_by_id"]
        assert event.data == {
            "screening_id": body["id"],
            "eligibility": "review",
            "flags": ["CI-09:OVERRIDE", "CI-11:WARN"],
            "location_id": None,
        }
        assert "oxycodone" not in str(event.data)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"answers": {}},
        {"answers": {**answers(), "pregnant": None}},
        {"answers": {k: v for k, v in answers().items() if k != "medications"}},
        {"answers": {k: v for k, v in answers().items() if k != "pregnant"}},
        {"answers": {**answers(), "medications": "alprazolam"}},
        {"answers": {**answers(), "medications": [""]}},
        {"answers": {**answers(), "medications": ["a\x00b"]}},
        {"answers": {**answers(), "medications": ["x"] * 101}},
        {"answers": {**answers(), "smoker": True}},
        {"answers": answers(), "location_id": 999999},
        {"answers": answers(), "location_id": "one"},
    ],
)
def test_incomplete_or_bad_screenings_are_refused_and_write_nothing(app, api, body):
    p = api.new_patient()
    api.staff.ready("nurse")
    before = row_counts(app, ScreeningResult)
    resp = api.post(f"/patients/{p['id']}/screenings", body)
    missing_location = body.get("location_id") == 999999  # a row that does not exist: 404
    assert resp.status_code == (404 if missing_location else 422), resp.json
    assert resp.mimetype == PROBLEM and resp.json["errors"]
    assert row_counts(app, ScreeningResult) == before


def test_screening_an_unknown_patient_is_a_404(api):
    assert api.screen(999999).status_code == 404


def test_screenings_list_newest_first_and_the_patient_shows_the_latest(api):
    p = api.new_patient()
    first = api.screen(p["id"], pregnant=True).json
    second = api.screen(p["id"]).json
    listed = api.get(f"/patients/{p['id']}/screenings").json["items"]
    assert [s["id"] for s in listed] == [second["id"], first["id"]]
    assert api.get(f"/patients/{p['id']}/screenings/{first['id']}").json["eligibility"] == "ineligible"
    assert api.get(f"/patients/{p['id']}", role="nurse").json["screening"]["id"] == second["id"]
    other = api.new_patient()
    assert api.get(f"/patients/{other['id']}/screenings/{first['id']}").status_code == 404


def test_location_can_change_a_flag_level(app, api, staff):
    strict = make_location(api.client, staff["admin"], jurisdiction={"screening_levels": {"CI-06": "HARD"}})
    relaxed = make_location(api.client, staff["admin"])
    patched = api.patch(f"/locations/{relaxed}", {"jurisdiction": {"screening_levels": {"CI-10": "OVERRIDE"}}}, "admin")
    assert patched.status_code == 200, patched.json
    p = api.new_patient()
    resp = api.screen(p["id"], location_id=strict, psychosis_or_mania=True)
    assert (resp.json["eligibility"], levels(resp.json["flags"])) == ("ineligible", [("CI-06", "HARD")])
    assert resp.json["location_id"] == strict
    resp = api.screen(p["id"], location_id=relaxed, medications=["clonazepam"])
    assert (resp.json["eligibility"], levels(resp.json["flags"])) == ("review", [("CI-10", "OVERRIDE")])
    resp = api.screen(p["id"], psychosis_or_mania=True)  # no location: the defaults
    assert levels(resp.json["flags"]) == [("CI-06", "OVERRIDE")]


def test_location_levels_are_validated(api, staff):
    for levels_map in ({"CI-06": "BLOCK"}, {"psychosis": "HARD"}):
        resp = api.client.post(
            "/api/v1/locations",
            headers=staff["admin"],
            json={
                "name": "X",
                "address": "1 Main St",
                "dea_registration": dea_number(),
                "timezone": "America/Chicago",
                "jurisdiction": {"screening_levels": levels_map},
            },
        )
        assert resp.status_code == 422
        assert set(resp.json["errors"]) == {"jurisdiction"}


# --- the override --------------------------------------------------------------------------------


def review_screening(api):
    p = api.new_patient()
    s = api.screen(p["id"], psychosis_or_mania=True).json
    assert s["eligibility"] == "review"
    return p, s


def test_prescriber_override_with_reason_is_stamped_and_audited(app, api):
    from clinic.audit.models import AuditEvent
    from clinic.extensions import db

    p, s = review_screening(api)
    resp = api.post(f"/patients/{p['id']}/screenings/{s['id']}/override", {"reason": REASON}, role="prescriber")
    assert resp.status_code == 200, resp.json
    assert resp.json["override_reason"] == REASON
    assert resp.json["overridden_by_id"] == api.staff.account("prescriber").id
    assert resp.json["overridden_at"].endswith("+00:00")
    assert resp.json["eligibility"] == "review"  # the decision stands; the override is beside it
    with app.app_context():
        event = db.session.scalars(
            select(AuditEvent).where(AuditEvent.tag == "patients:screening:override", AuditEvent.subject_id == p["id"])
        ).one()
        assert event.actor_id == resp.json["overridden_by_id"]
        assert event.data["overridden"] == ["CI-06"]
    again = api.post(f"/patients/{p['id']}/screenings/{s['id']}/override", {"reason": REASON}, role="prescriber")
    assert again.status_code == 409 and again.json["code"] == "override_not_allowed"


@pytest.mark.parametrize("role", ["nurse", "front_desk", "admin", "auditor"])
def test_only_a_prescriber_can_override(app, api, role):
    p, s = review_screening(api)
    resp = api.post(f"/patients/{p['id']}/screenings/{s['id']}/override", {"reason": REASON}, role=role)
    assert resp.status_code == 403 and resp.mimetype == PROBLEM
    assert api.get(f"/patients/{p['id']}/screenings/{s['id']}").json["overridden_at"] is None


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "ok"}, {"reason": " " * 20}, {"reason": None}])
def test_override_needs_a_reason(app, api, body):
    p, s = review_screening(api)
    resp = api.post(f"/patients/{p['id']}/screenings/{s['id']}/override", body, role="prescriber")
    assert resp.status_code == 422 and "reason" in resp.json["errors"]
    assert api.get(f"/patients/{p['id']}/screenings/{s['id']}").json["overridden_at"] is None


def test_hard_flags_cannot_be_overridden(api):
    p = api.new_patient()
    s = api.screen(p["id"], pregnant=True, psychosis_or_mania=True).json
    resp = api.post(f"/patients/{p['id']}/screenings/{s['id']}/override", {"reason": REASON}, role="prescriber")
    assert resp.status_code == 409 and resp.json["code"] == "override_not_allowed"
    assert [f["code"] for f in resp.json["errors"]["flags"]] == ["CI-07"]
    assert api.get(f"/patients/{p['id']}/screenings/{s['id']}").json["overridden_at"] is None


def test_nothing_to_override_on_an_eligible_or_superseded_screening(api):
    p = api.new_patient()
    eligible = api.screen(p["id"], medications=["diazepam"]).json
    path = f"/patients/{p['id']}/screenings/{eligible['id']}/override"
    assert api.post(path, {"reason": REASON}, role="prescriber").status_code == 409
    old = api.screen(p["id"], psychosis_or_mania=True).json
    api.screen(p["id"], psychosis_or_mania=True)
    resp = api.post(f"/patients/{p['id']}/screenings/{old['id']}/override", {"reason": REASON}, role="prescriber")
    assert resp.status_code == 409 and "newer screening" in resp.json["detail"]
    assert (
        api.post(f"/patients/{p['id']}/screenings/999999/override", {"reason": REASON}, "prescriber").status_code == 404
    )

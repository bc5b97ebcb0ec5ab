"""The gates the visit flow calls: assert_bookable (scheduling) and reconfirm_at_visit (check-in)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from clinic.auth.models import User
from clinic.core.errors import Conflict
from clinic.extensions import db
from clinic.patients import service
from clinic.patients.errors import (
    PatientIneligible,
    RemsEnrollmentRequired,
    ScreeningIncomplete,
    ScreeningNeedsReview,
)
from tests.patients.conftest import born_aged, local_today, years_before

REASON = "Mania was 10 years ago, stable on lithium; benefit outweighs risk."


_LOCATIONS: dict[int, int] = {}


def location_id(app) -> int:
    """One location per app for the gates to judge flag levels at (its profile keeps the defaults)."""
    if id(app) not in _LOCATIONS:
        from clinic.core.tx import commit
        from clinic.locations.models import Location

        with app.app_context():
            loc = Location(
                name="Gate", address="1 Gate St", dea_registration=f"AG{id(app) % 10**7:07d}", timezone="UTC"
            )
            db.session.add(loc)
            db.session.flush()
            _LOCATIONS[id(app)] = loc.id
            commit()
    return _LOCATIONS[id(app)]


def bookable(app, patient_id, drug="ketamine", on=None):
    where = location_id(app)
    with app.app_context():
        service.assert_bookable(patient_id=patient_id, on=on or local_today(), drug=drug, location_id=where)


def refused(app, patient_id, drug="ketamine", on=None):
    with pytest.raises(Conflict) as info:
        bookable(app, patient_id, drug, on)
    assert info.value.http_status == 409
    return info.value


def test_errors_carry_their_codes():
    assert (ScreeningIncomplete.code, ScreeningIncomplete.http_status) == ("screening_incomplete", 409)
    assert (PatientIneligible.code, PatientIneligible.http_status) == ("patient_ineligible", 409)
    assert (ScreeningNeedsReview.code, ScreeningNeedsReview.http_status) == ("screening_needs_review", 409)
    assert (RemsEnrollmentRequired.code, RemsEnrollmentRequired.http_status) == ("rems_enrollment_required", 409)


def test_an_eligible_adult_is_bookable(app, api):
    p = api.new_patient()
    api.screen(p["id"], medications=["alprazolam", "lamotrigine"])  # WARN flags do not block
    bookable(app, p["id"])


def test_no_screening_is_incomplete(app, api):
    p = api.new_patient()
    assert isinstance(refused(app, p["id"]), ScreeningIncomplete)


def test_seventeen_year_old_cannot_be_booked(app, api):
    p = api.new_patient(date_of_birth=born_aged(17))
    api.screen(p["id"])
    err = refused(app, p["id"])
    assert isinstance(err, PatientIneligible)
    assert [f["code"] for f in err.errors["flags"]] == ["CI-01"]


def test_under_eighteen_is_refused_even_without_or_despite_a_screening(app, api):
    minor = api.new_patient(date_of_birth=born_aged(16))
    assert isinstance(refused(app, minor["id"]), PatientIneligible)  # age first: no screening needed to say no
    # screened eligible as an adult, then the date of birth was corrected: the old screening does not help
    p = api.new_patient()
    assert api.screen(p["id"]).json["eligibility"] == "eligible"
    api.patch(f"/patients/{p['id']}", {"date_of_birth": born_aged(17)})
    err = refused(app, p["id"])
    assert isinstance(err, PatientIneligible) and err.errors["flags"][0]["code"] == "CI-01"


def test_age_is_judged_on_the_booking_date(app, api):
    p = api.new_patient()
    assert api.screen(p["id"]).json["eligibility"] == "eligible"
    eighteen_next_week = years_before(local_today() + timedelta(days=7), 18)
    api.patch(f"/patients/{p['id']}", {"date_of_birth": eighteen_next_week.isoformat()})  # a corrected record
    assert isinstance(refused(app, p["id"]), PatientIneligible)
    assert isinstance(refused(app, p["id"], on=local_today() + timedelta(days=6)), PatientIneligible)
    bookable(app, p["id"], on=local_today() + timedelta(days=7))


def test_pregnant_patient_cannot_be_booked(app, api):
    p = api.new_patient()
    api.screen(p["id"], pregnant=True)
    err = refused(app, p["id"])
    assert isinstance(err, PatientIneligible)
    assert [(f["code"], f["level"]) for f in err.errors["flags"]] == [("CI-07", "HARD")]


def test_review_needs_an_override_before_booking(app, api):
    p = api.new_patient()
    s = api.screen(p["id"], psychosis_or_mania=True).json
    err = refused(app, p["id"])
    assert isinstance(err, ScreeningNeedsReview)
    assert [f["code"] for f in err.errors["flags"]] == ["CI-06"]
    api.post(f"/patients/{p['id']}/screenings/{s['id']}/override", {"reason": REASON}, role="prescriber")
    bookable(app, p["id"])


def test_the_latest_screening_decides(app, api):
    p = api.new_patient()
    api.screen(p["id"], medications=["alprazolam"])
    api.screen(p["id"])  # a WARN flag cleared needs no review (CI-22 is about HARD and OVERRIDE)
    bookable(app, p["id"])
    api.screen(p["id"], prior_ketamine_reaction=True)
    assert isinstance(refused(app, p["id"]), PatientIneligible)


def test_esketamine_needs_rems_enrolment_by_the_booking_date(app, api):
    p = api.new_patient()
    api.screen(p["id"])
    bookable(app, p["id"], drug="ketamine")
    assert isinstance(refused(app, p["id"], drug="esketamine"), RemsEnrollmentRequired)
    api.post(f"/patients/{p['id']}/rems-enrollment", {"enrolled_on": local_today().isoformat()})
    bookable(app, p["id"], drug="esketamine")
    yesterday = local_today() - timedelta(days=1)
    assert isinstance(refused(app, p["id"], drug="esketamine", on=yesterday), RemsEnrollmentRequired)


def test_unknown_patient_is_not_found(app):
    from clinic.core.errors import NotFound

    with app.app_context(), pytest.raises(NotFound):
        service.assert_bookable(patient_id=999999, on=local_today(), drug="ketamine", location_id=location_id(app))


# --- reconfirm_at_visit (CI-21) ------------------------------------------------------------------


def reconfirm(app, api, patient_id, *, meds=None, pregnant=None, ride=True, commit=True):
    from clinic.core.tx import commit as do_commit

    api.staff.ready("nurse")
    with app.app_context():
        actor = db.session.get(User, api.staff.account("nurse").id)
        result = service.reconfirm_at_visit(
            actor=actor, patient_id=patient_id, medication_changes=meds, pregnant=pregnant, ride_home_arranged=ride
        )
        summary = None
        if result is not None:
            summary = {
                "id": result.id,
                "eligibility": result.eligibility,
                "flags": [(f["code"], f["level"]) for f in result.flags],
                "answers": result.answers,
                "override_reason": result.override_reason,
                "overridden_by_id": result.overridden_by_id,
            }
        if commit:
            do_commit()
        return summary


def reconfirmations(app, patient_id):
    from clinic.audit.models import AuditEvent

    with app.app_context():
        return db.session.scalars(
            select(AuditEvent.data)
            .where(AuditEvent.tag == "patients:screening:reconfirm", AuditEvent.subject_id == patient_id)
            .order_by(AuditEvent.id)
        ).all()


def test_nothing_changed_records_no_screening_but_the_reconfirmation_is_audited(app, api):
    p = api.new_patient()
    s = api.screen(p["id"], medications=["Sertraline"]).json
    assert reconfirm(app, api, p["id"]) is None
    assert reconfirm(app, api, p["id"], meds=["sertraline"], pregnant=False, ride=False) is None  # same medicine
    assert len(api.get(f"/patients/{p['id']}/screenings").json["items"]) == 1
    assert reconfirmations(app, p["id"]) == [
        {"previous_screening_id": s["id"], "changed": [], "ride_home_arranged": True},
        {"previous_screening_id": s["id"], "changed": [], "ride_home_arranged": False},
    ]


def test_new_medicine_recomputes_the_flags(app, api):
    p = api.new_patient()
    first = api.screen(p["id"], medications=["lamotrigine"]).json
    new = reconfirm(app, api, p["id"], meds=["Klonopin 0.5 mg"])
    assert new["id"] != first["id"] and new["eligibility"] == "eligible"
    assert new["flags"] == [("CI-10", "WARN"), ("CI-13", "WARN")]
    answers = new["answers"]
    assert answers["medications"] == ["lamotrigine", "Klonopin 0.5 mg"]
    assert {k: v for k, v in answers.items() if k != "medications"} == {
        k: v for k, v in first["answers"].items() if k != "medications"
    }
    assert api.get(f"/patients/{p['id']}", role="nurse").json["screening"]["id"] == new["id"]
    assert reconfirmations(app, p["id"])[-1]["changed"] == ["medications"]


def test_pregnancy_at_a_visit_makes_the_patient_ineligible(app, api):
    p = api.new_patient()
    api.screen(p["id"])
    new = reconfirm(app, api, p["id"], pregnant=True)
    assert new["eligibility"] == "ineligible" and new["answers"]["pregnant"] is True
    assert new["flags"] == [("CI-07", "HARD")]
    assert isinstance(refused(app, p["id"]), PatientIneligible)
    assert reconfirm(app, api, p["id"], pregnant=True) is None  # already recorded


def test_override_carries_over_only_when_it_still_covers_the_flags(app, api, staff):
    p = api.new_patient()
    s = api.screen(p["id"], psychosis_or_mania=True).json
    api.post(f"/patients/{p['id']}/screenings/{s['id']}/override", {"reason": REASON}, role="prescriber")
    # a WARN-level medicine: the prescriber's decision on CI-06 still stands
    new = reconfirm(app, api, p["id"], meds=["memantine"])
    assert new["flags"] == [("CI-06", "OVERRIDE"), ("CI-14", "WARN")]
    assert (new["eligibility"], new["override_reason"]) == ("review", REASON)
    assert new["overridden_by_id"] == staff.account("prescriber").id
    bookable(app, p["id"])
    # a location that makes benzodiazepines an OVERRIDE flag: a new reason is needed
    from tests.inventory.conftest import make_location

    loc = make_location(api.client, staff["admin"], jurisdiction={"screening_levels": {"CI-10": "OVERRIDE"}})
    s2 = api.screen(p["id"], location_id=loc, psychosis_or_mania=True).json
    api.post(f"/patients/{p['id']}/screenings/{s2['id']}/override", {"reason": REASON}, role="prescriber")
    new = reconfirm(app, api, p["id"], meds=["diazepam"])
    assert new["flags"] == [("CI-06", "OVERRIDE"), ("CI-10", "OVERRIDE")]
    assert (new["eligibility"], new["override_reason"]) == ("review", None)
    assert isinstance(refused(app, p["id"]), ScreeningNeedsReview)


def test_reconfirm_without_a_screening_is_incomplete(app, api):
    p = api.new_patient()
    with pytest.raises(ScreeningIncomplete):
        reconfirm(app, api, p["id"], meds=["alprazolam"], commit=False)

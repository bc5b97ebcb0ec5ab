"""Weight history in grams and REMS enrolment (SPR-05)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from clinic.core.time import utcnow
from clinic.patients.models import PatientWeight, RemsEnrollment
from tests.patients.conftest import PROBLEM, local_today, row_counts

LAST_MONTH = (local_today() - timedelta(days=30)).isoformat()
LAST_WEEK = (local_today() - timedelta(days=7)).isoformat()


def stored_grams(app, patient_id):
    from sqlalchemy import select

    from clinic.extensions import db

    with app.app_context():
        return db.session.scalars(
            select(PatientWeight.weight_g).where(PatientWeight.patient_id == patient_id).order_by(PatientWeight.id)
        ).all()


def test_weights_are_stored_as_whole_grams(app, api):
    p = api.new_patient()
    for given, shown in (("72.4", "72.4"), (80, "80"), ("80", "80"), ("65.125", "65.125"), ("90.50", "90.5")):
        resp = api.post(f"/patients/{p['id']}/weights", {"weight_kg": given})
        assert resp.status_code == 201, resp.json
        assert resp.json["weight_kg"] == shown
        assert resp.json["recorded_by_id"] == api.staff.account("nurse").id
    assert stored_grams(app, p["id"]) == [72_400, 80_000, 80_000, 65_125, 90_500]


@pytest.mark.parametrize(
    "bad",
    [
        {"weight_kg": 72.4},  # a float cannot say 0.1 exactly: refused
        {"weight_kg": 401},  # a whole number, but over 400 kg
        {"weight_kg": 1},
        {"weight_kg": " 90.50 "},  # plain digits only: the document's pattern is the rule
        {"weight_kg": "72.4001"},  # finer than a gram
        {"weight_kg": "0"},
        {"weight_kg": "-70"},
        {"weight_kg": "1.999"},  # implausible for a patient
        {"weight_kg": "400.001"},
        {"weight_kg": "seventy"},
        {"weight_kg": True},
        {},
        {"weight_kg": "70", "measured_at": "2026-01-01T10:00:00"},  # no offset
        {"weight_kg": "70", "measured_at": (utcnow() + timedelta(hours=1)).isoformat()},
        {"weight_kg": "70", "unit": "lb"},
    ],
)
def test_bad_weights_are_refused_and_write_nothing(app, api, bad):
    p = api.new_patient()
    api.staff.ready("nurse")
    before = row_counts(app, PatientWeight)
    resp = api.post(f"/patients/{p['id']}/weights", bad)
    assert resp.status_code == 422, resp.json
    assert resp.mimetype == PROBLEM
    assert row_counts(app, PatientWeight) == before


def test_latest_weight_is_the_last_measured_not_the_last_keyed(app, api):
    from clinic.patients import service

    p = api.new_patient()
    now = utcnow()
    with app.app_context():
        assert service.latest_weight_g(p["id"]) is None
    api.post(
        f"/patients/{p['id']}/weights", {"weight_kg": "81.2", "measured_at": (now - timedelta(days=1)).isoformat()}
    )
    api.post(f"/patients/{p['id']}/weights", {"weight_kg": "79", "measured_at": (now - timedelta(days=30)).isoformat()})
    with app.app_context():
        assert service.latest_weight_g(p["id"]) == 81_200
    listed = api.get(f"/patients/{p['id']}/weights").json["items"]
    assert [w["weight_kg"] for w in listed] == ["81.2", "79"]
    assert api.get(f"/patients/{p['id']}", role="prescriber").json["latest_weight_kg"] == "81.2"


def test_weights_are_charted_by_clinicians_only(api):
    p = api.new_patient()
    for role in ("front_desk", "admin", "auditor"):
        assert api.post(f"/patients/{p['id']}/weights", {"weight_kg": "70"}, role=role).status_code == 403
    assert api.post(f"/patients/{p['id']}/weights", {"weight_kg": "70"}, role="prescriber").status_code == 201
    assert api.post("/patients/999999/weights", {"weight_kg": "70"}).status_code == 404


def test_rems_enrolment_dates_the_esketamine_gate(app, api):
    from clinic.patients import service

    p = api.new_patient()
    today = local_today()
    enrolled_on = today - timedelta(days=3)
    with app.app_context():
        assert not service.is_rems_enrolled(p["id"], today)
    resp = api.post(f"/patients/{p['id']}/rems-enrollment", {"enrolled_on": enrolled_on.isoformat()}, role="front_desk")
    assert resp.status_code == 201, resp.json
    assert resp.json["enrolled_on"] == enrolled_on.isoformat()
    assert resp.json["recorded_by_id"] == api.staff.account("front_desk").id
    with app.app_context():
        assert service.is_rems_enrolled(p["id"], today)
        assert service.is_rems_enrolled(p["id"], enrolled_on)
        assert not service.is_rems_enrolled(p["id"], enrolled_on - timedelta(days=1))
    assert api.get(f"/patients/{p['id']}", role="front_desk").json["rems_enrolled_on"] == enrolled_on.isoformat()


def test_rems_refusals_write_nothing(app, api):
    p = api.new_patient()
    api.staff.ready("nurse", "auditor")
    before = row_counts(app, RemsEnrollment)
    tomorrow = (local_today() + timedelta(days=2)).isoformat()
    assert api.post(f"/patients/{p['id']}/rems-enrollment", {"enrolled_on": tomorrow}).status_code == 422
    assert api.post(f"/patients/{p['id']}/rems-enrollment", {}).status_code == 422
    assert api.post("/patients/999999/rems-enrollment", {"enrolled_on": LAST_MONTH}).status_code == 404
    assert api.post(f"/patients/{p['id']}/rems-enrollment", {"enrolled_on": LAST_MONTH}, "auditor").status_code == 403
    assert row_counts(app, RemsEnrollment) == before
    assert api.post(f"/patients/{p['id']}/rems-enrollment", {"enrolled_on": LAST_MONTH}).status_code == 201
    again = api.post(f"/patients/{p['id']}/rems-enrollment", {"enrolled_on": LAST_WEEK})
    assert again.status_code == 409 and again.json["code"] == "rems_already_enrolled"

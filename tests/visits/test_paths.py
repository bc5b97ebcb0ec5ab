"""Other ways to the same state: a re-screening, a change at check-in, another location's stock,
a replayed request, a missed maintenance visit (CI-21, SPR-03, SPR-23)."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.conftest import bearer
from tests.visits.conftest import ANSWERS, Ward


def test_a_pregnancy_told_at_check_in_holds_the_dose(ward: Ward) -> None:
    """CI-21: re-confirmed at check-in; the new answers are screened again before the dose."""
    appt = ward.book(ward.patient())[0]
    ward.at("09:00")
    checked = ward.check_in(appt, medication_changes=["phenelzine"], pregnant=True)
    assert checked.status_code == 200, checked.json
    patient_id = checked.json["visit"]["patient_id"]
    screening = ward.get(f"/patients/{patient_id}/screenings").json["items"][0]
    assert screening["id"] == checked.json["visit"]["screening_id"]
    assert {"CI-12"} <= {f["code"] for f in screening["flags"]}
    assert ward.vitals(appt).status_code == 201
    devices = ward.receive(ward.devices_drug, 3)
    ward.at("09:15")
    resp = ward.dose(appt, {"container_ids": devices})
    assert resp.status_code == 409
    assert [g["code"] for g in resp.json["errors"]["gates"]] == ["screening"]


def test_a_re_screening_after_check_in_is_seen_at_the_dose(ward: Ward) -> None:
    appt = ward.ready_patient()
    patient_id = ward.visit(appt)["visit"]["patient_id"]
    again = ward.post(f"/patients/{patient_id}/screenings", {"answers": {**ANSWERS, "pregnant": True}})
    assert again.status_code == 201
    devices = ward.receive(ward.devices_drug, 3)
    ward.at("09:15")
    resp = ward.dose(appt, {"container_ids": devices})
    assert resp.status_code == 409
    assert [g["code"] for g in resp.json["errors"]["gates"]] == ["screening"]


def test_rems_certification_lapsed_blocks_esketamine(ward: Ward) -> None:
    appt = ward.ready_patient()
    lapsed = ward.client.patch(
        f"/api/v1/locations/{ward.location_id}",
        headers=ward.admin,
        json={"rems_certified_until": (ward.day - timedelta(days=1)).isoformat()},
    )
    assert lapsed.status_code == 200
    devices = ward.receive(ward.devices_drug, 3)
    ward.at("09:15")
    resp = ward.dose(appt, {"container_ids": devices})
    assert resp.status_code == 409
    assert [g["code"] for g in resp.json["errors"]["gates"]] == ["rems_location"]


def test_an_old_weight_blocks_a_weight_based_dose(ward: Ward) -> None:
    appt = ward.book(ward.patient(weight_kg=None), "ketamine-iv-induction")[0]
    old = (ward.at("09:00") - timedelta(days=31)).isoformat()
    assert ward.check_in(appt).status_code == 200
    patient_id = ward.visit(appt)["visit"]["patient_id"]
    assert ward.post(f"/patients/{patient_id}/weights", {"weight_kg": "70", "measured_at": old}).status_code == 201
    assert ward.vitals(appt).status_code == 201
    vial = ward.receive(ward.vial_drug, 1)[0]
    resp = ward.dose(appt, {"container_id": vial})
    assert resp.status_code == 409
    assert [g["code"] for g in resp.json["errors"]["gates"]] == ["weight"]


def test_stock_of_another_location_or_a_used_device_is_refused(app, client, make_user, ward: Ward) -> None:
    from tests.visits.conftest import open_ward

    elsewhere = open_ward(app, client, make_user, ward.traveller, ward.day)
    theirs = elsewhere.receive(elsewhere.devices_drug, 3)
    appt = ward.ready_patient()
    ward.at("09:20")
    resp = ward.dose(appt, {"container_ids": theirs})
    assert resp.status_code == 422
    assert "container_ids" in resp.json["errors"]
    vial = ward.receive(ward.vial_drug, 1)
    wrong_form = ward.dose(appt, {"container_ids": vial})
    assert wrong_form.status_code == 422
    assert all(elsewhere.container(c)["balance_mg"] == "28" for c in theirs)


def test_a_replayed_dose_writes_once(ward: Ward) -> None:
    appt = ward.ready_patient()
    devices = ward.receive(ward.devices_drug, 3)
    ward.at("09:20")
    key = {**ward.nurse_h, "Idempotency-Key": "dose-once-1"}
    first = ward.dose(appt, {"container_ids": devices}, key)
    again = ward.dose(appt, {"container_ids": devices}, key)
    assert first.status_code == again.status_code == 201
    assert first.get_data() == again.get_data()
    assert len([e for e in ward.ledger() if e["appointment_id"] == appt]) == 3


def test_after_a_missed_maintenance_visit_the_next_one_asks_about_symptoms(app, make_user, ward: Ward) -> None:
    """SPR-23: the check-in after a missed maintenance visit asks whether symptoms worsened."""
    series = ward.post(
        "/series",
        {
            "patient_id": ward.patient(),
            "protocol": "esketamine-rems",
            "location_id": ward.location_id,
            "prescriber_id": ward.prescriber.id,
            "start_on": ward.day.isoformat(),
            "preferred_time": "09:00",
        },
        ward.desk,
    ).json
    visits = series["appointments"]
    first_maintenance = next(i for i, a in enumerate(visits) if a["phase"] == "maintenance")
    missed, following = visits[first_maintenance], visits[first_maintenance + 1]
    ward.traveller.move_to(datetime.fromisoformat(missed["starts_at"]) + timedelta(hours=3))
    desk = bearer(app, make_user("front_desk"))
    assert ward.post(f"/appointments/{missed['id']}/missed", {}, desk).status_code == 200
    ward.traveller.move_to(datetime.fromisoformat(following["starts_at"]))
    desk = bearer(app, make_user("front_desk"))
    resp = ward.post(
        f"/appointments/{following['id']}/check-in", {"ride_home_arranged": True, "symptoms_worsened": True}, desk
    )
    assert resp.status_code == 200, resp.json
    assert "SPR-23" in resp.json["follow_up"]
    assert resp.json["visit"]["symptoms_worsened"] is True


def test_a_re_screening_that_clears_a_flag_after_check_in_holds_the_dose_until_reviewed(ward: Ward) -> None:
    """CI-22 at the dose: an all-"no" screening at the visit does not lift an OVERRIDE flag by itself."""
    pid = ward.patient(psychosis_or_mania=True)
    first = ward.get(f"/patients/{pid}/screenings").json["items"][0]
    reason = {"reason": "Mania was 10 years ago, stable on lithium; benefit outweighs risk."}
    assert ward.post(f"/patients/{pid}/screenings/{first['id']}/override", reason, ward.prescriber_h).status_code == 200
    appt = ward.book(pid)[0]
    ward.at("09:00")
    assert ward.check_in(appt).status_code == 200
    assert ward.vitals(appt).status_code == 201
    cleared = ward.post(f"/patients/{pid}/screenings", {"answers": ANSWERS})
    assert cleared.json["review_status"] == "pending"
    devices = ward.receive(ward.devices_drug, 3)
    ward.at("09:15")
    resp = ward.dose(appt, {"container_ids": devices})
    assert resp.status_code == 409
    assert [g["code"] for g in resp.json["errors"]["gates"]] == ["screening"]
    review = {"decision": "approved", "reason": "Re-assessed today: no current psychotic symptoms."}
    assert (
        ward.post(f"/patients/{pid}/screenings/{cleared.json['id']}/review", review, ward.prescriber_h).status_code
        == 200
    )
    assert ward.dose(appt, {"container_ids": devices}).status_code == 201


def test_an_uncertified_location_blocks_esketamine(ward: Ward) -> None:
    appt = ward.ready_patient()
    never = ward.client.patch(
        f"/api/v1/locations/{ward.location_id}", headers=ward.admin, json={"rems_certified_until": None}
    )
    assert never.status_code == 200
    devices = ward.receive(ward.devices_drug, 3)
    ward.at("09:15")
    resp = ward.dose(appt, {"container_ids": devices})
    assert resp.status_code == 409
    assert [g["code"] for g in resp.json["errors"]["gates"]] == ["rems_location"]

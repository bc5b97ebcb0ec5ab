"""An IV ketamine visit: weight-based dose, the ledger in the visit's transaction, the vial's
remainder, and a failure anywhere leaving everything as it was (IVK-03, IVK-14, DEA-38..42)."""

from __future__ import annotations

from tests.clock import at_local
from tests.visits.conftest import TZ, Ward


def _counts(app) -> dict[str, int]:
    from sqlalchemy import func, select

    from clinic.audit.models import AccessEvent
    from clinic.extensions import db
    from clinic.inventory.models import LedgerEntry
    from clinic.visits.models import DoseItem, ObservationAlert, VisitEvent

    with app.app_context():
        return {
            m.__tablename__: db.session.scalar(select(func.count()).select_from(m))
            for m in (LedgerEntry, DoseItem, ObservationAlert, VisitEvent, AccessEvent)
        }


def _failed_sign_ins(app, email: str) -> int:
    from sqlalchemy import func, select

    from clinic.audit.models import AuditEvent
    from clinic.extensions import db

    with app.app_context():
        return db.session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.tag == "auth:session:failed")
        )


def test_weight_based_dose_and_its_waste_post_to_the_ledger_with_the_visit(ward: Ward) -> None:
    appt = ward.ready_patient("ketamine-iv-induction", weight_kg="72.4")
    vial = ward.receive(ward.vial_drug, 1)[0]
    ward.at("09:05")
    resp = ward.dose(
        appt,
        {
            "container_id": vial,
            "drawn_mg": "40",
            "administered_at": at_local(ward.day, "09:02", TZ).isoformat(),
            **ward.witness_fields(),
        },
    )
    assert resp.status_code == 201, resp.json
    # 72.4 kg x 0.5 mg/kg = 36.2 mg given; 40 drawn, so 3.8 mg wasted before the witness.
    assert resp.json["visit"]["dose_mg"] == "36.2"
    assert resp.json["administration"]["quantity_mg"] == "36.2"
    assert resp.json["waste"]["quantity_mg"] == "3.8"
    assert resp.json["waste"]["witness_id"] == ward.witness.id
    assert resp.json["status"] == "dosed"  # the infusion is running
    entries = ward.ledger(container_id=vial)
    assert [(e["kind"], e["delta_mg"], e["appointment_id"]) for e in entries[-2:]] == [
        ("administration", "-36.2", appt),
        ("waste", "-3.8", None),
    ]
    assert ward.container(vial)["balance_mg"] == "460"

    ward.at("09:44")
    ended = ward.post(f"/appointments/{appt}/infusion-end", {})
    assert ended.status_code == 200, ended.json
    assert ended.json["status"] == "observing"
    # IV: the observation minimum (60 min) runs from the end of the infusion.
    assert ended.json["visit"]["earliest_discharge_at"] == at_local(ward.day, "10:44", TZ).isoformat()

    for hh_mm in ("09:17", "09:32", "09:42", "10:02", "10:40"):
        ward.at(hh_mm)
        assert ward.vitals(appt).status_code == 201
    ward.at("10:44")
    blocked = ward.discharge(appt)
    assert blocked.status_code == 409
    assert [u["code"] for u in blocked.json["errors"]["unmet"]] == ["vial_remainder"]
    wrong = ward.post(
        f"/appointments/{appt}/vial-remainder", {"container_id": vial, "action": "returned", "measured_mg": "455"}
    )
    assert wrong.status_code == 409
    assert "460" in wrong.json["detail"]
    back = ward.post(
        f"/appointments/{appt}/vial-remainder", {"container_id": vial, "action": "returned", "measured_mg": "460"}
    )
    assert back.status_code == 200, back.json
    done = ward.discharge(appt)
    assert done.status_code == 200, done.json
    assert ward.container(vial)["balance_mg"] == "460"


def test_a_wrong_witness_password_writes_nothing_but_is_counted(app, ward: Ward) -> None:
    appt = ward.ready_patient("ketamine-iv-induction")
    vial = ward.receive(ward.vial_drug, 1)[0]
    before, failed = _counts(app), _failed_sign_ins(app, ward.witness.email)
    resp = ward.dose(
        appt,
        {"container_id": vial, "drawn_mg": "45", "witness_email": ward.witness.email, "witness_password": "nope"},
    )
    assert resp.status_code == 422, resp.json
    assert "witness_password" in resp.json["errors"]
    after = _counts(app)
    assert {k: after[k] - before[k] for k in after} == {
        "ledger_entries": 0,
        "visit_doses": 0,
        "observation_alerts": 0,
        "visit_events": 0,
        "access_events": 1,  # the refused request's own row
    }
    assert _failed_sign_ins(app, ward.witness.email) == failed + 1
    assert ward.visit(appt)["status"] == "checked_in"
    assert ward.container(vial)["balance_mg"] == "500"


def test_a_gate_failure_writes_nothing(app, ward: Ward) -> None:
    appt = ward.book(ward.patient(weight_kg=None), "ketamine-iv-induction")[0]
    ward.at("09:00")
    assert ward.check_in(appt, ride_home_arranged=False).status_code == 200
    vial = ward.receive(ward.vial_drug, 1)[0]
    before = _counts(app)
    resp = ward.dose(appt, {"container_id": vial, "dose_mg": "40"})
    assert resp.status_code == 409
    codes = [g["code"] for g in resp.json["errors"]["gates"]]
    assert codes == ["weight", "ride_home", "pre_dose_vitals"], resp.json
    after = _counts(app)
    assert after["ledger_entries"] == before["ledger_entries"]
    assert after["visit_events"] == before["visit_events"]


def test_a_nurse_gives_what_is_ordered(ward: Ward) -> None:
    appt = ward.ready_patient("ketamine-iv-induction", weight_kg="80")
    vial = ward.receive(ward.vial_drug, 1)[0]
    other = ward.dose(appt, {"container_id": vial, "dose_mg": "50"})
    assert other.status_code == 422
    assert "40" in other.json["errors"]["dose_mg"][0]
    # Outside 0.1-1.0 mg/kg (8-80 mg for 80 kg) the prescriber must give a reason.
    no_reason = ward.post(f"/appointments/{appt}/order", {"dose_mg": "90"}, ward.prescriber_h)
    assert no_reason.status_code == 422
    nurse_order = ward.post(f"/appointments/{appt}/order", {"dose_mg": "50"})
    assert nurse_order.status_code == 403
    ordered = ward.post(f"/appointments/{appt}/order", {"dose_mg": "50"}, ward.prescriber_h)
    assert ordered.status_code == 200, ordered.json
    given = ward.dose(appt, {"container_id": vial, "dose_mg": "50", "infusion_ended_at": None})
    assert given.status_code == 201, given.json
    assert given.json["visit"]["dose_mg"] == "50"


def test_an_infusion_far_from_the_protocol_needs_a_reason(ward: Ward) -> None:
    appt = ward.ready_patient("ketamine-iv-induction")
    vial = ward.receive(ward.vial_drug, 1)[0]
    ward.at("09:05")
    assert ward.dose(appt, {"container_id": vial}).status_code == 201
    ward.at("09:20")  # 15 minutes instead of 40 +- 10
    short = ward.post(f"/appointments/{appt}/infusion-end", {})
    assert short.status_code == 422
    assert "duration_reason" in short.json["errors"]
    ok = ward.post(f"/appointments/{appt}/infusion-end", {"duration_reason": "patient asked to stop"})
    assert ok.status_code == 200

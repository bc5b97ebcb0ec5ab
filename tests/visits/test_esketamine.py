"""An esketamine session from check-in to discharge (SPR-10, SPR-11, SPR-13..16, SPR-20, SYS-06)."""

from __future__ import annotations

from datetime import timedelta

from clinic.visits import alerts
from tests.visits.conftest import Ward


def _three_devices(ward: Ward, appt: int, first: str) -> dict:
    """84 mg: three devices, the first at ``first`` local, then 5 minutes apart."""
    devices = ward.receive(ward.devices_drug, 3)
    from tests.clock import at_local
    from tests.visits.conftest import TZ

    t0 = at_local(ward.day, first, TZ)
    times = [(t0 + timedelta(minutes=5 * i)).isoformat() for i in range(3)]
    resp = ward.dose(appt, {"container_ids": devices, "dose_mg": "84", "device_times": times})
    assert resp.status_code == 201, resp.json
    return resp.json


def _raised(app, now_iso: str | None = None) -> list[tuple[str, int]]:
    from clinic.core.time import utcnow
    from clinic.core.tx import commit

    with app.app_context():
        raised = [(a.kind, a.checkpoint) for a in alerts.raise_due(utcnow())]
        commit()
    return raised


def test_discharge_waits_for_two_hours_from_the_first_device(app, ward: Ward) -> None:
    """SPR-14/15: first device at T, third at T+10: discharge refused at T+115 naming the time
    left, allowed at T+120 once the other criteria hold."""
    appt = ward.ready_patient()
    ward.at("09:20")
    out = _three_devices(ward, appt, "09:05")  # devices at 09:05, 09:10 and 09:15, charted at 09:20
    assert out["status"] == "observing"
    assert out["observation"]["earliest_discharge_at"].startswith(
        (ward.day.isoformat()),
    )
    # The clock starts at the first device: 09:05 + 120 min = 11:05 local.
    visit = ward.visit(appt)["visit"]
    from tests.clock import at_local
    from tests.visits.conftest import TZ

    assert visit["earliest_discharge_at"] == at_local(ward.day, "11:05", TZ).isoformat()
    assert len(out["administrations"]) == 3
    assert {e["quantity_mg"] for e in out["administrations"]} == {"28"}

    ward.at("09:45")
    assert ward.vitals(appt, 132, 84).status_code == 201  # 40 min after the first device
    ward.at("10:55")
    assert ward.vitals(appt).status_code == 201
    ward.at("11:00")  # T+115
    refused = ward.discharge(appt)
    assert refused.status_code == 409, refused.json
    codes = [u["code"] for u in refused.json["errors"]["unmet"]]
    assert codes == ["observation_time", "vitals_due"], refused.json
    assert "5 min left" in refused.json["detail"]
    assert ward.visit(appt)["status"] == "observing"

    ward.at("11:05")  # T+120
    assert ward.vitals(appt).status_code == 201
    done = ward.discharge(appt)
    assert done.status_code == 200, done.json
    assert done.json["status"] == "discharged"
    assert "Do not drive" in done.json["instructions"]
    detail = ward.visit(appt)
    assert [e["to_status"] for e in detail["events"]] == [
        "checked_in",
        "dosed",
        "observing",
        "ready_for_discharge",
        "discharged",
    ]


def test_the_forty_minute_bp_alert_is_raised_once_at_forty_minutes(app, ward: Ward) -> None:
    appt = ward.ready_patient()
    ward.at("09:20")
    _three_devices(ward, appt, "09:05")
    ward.at("09:44")  # T+39
    assert ("vitals_due", 40) not in _raised(app)
    ward.at("09:45")  # T+40
    assert ("vitals_due", 40) in _raised(app)
    ward.later(minutes=1)
    assert ("vitals_due", 40) not in _raised(app)
    ward.at("09:55")  # T+50: the 10-minute overdue window has passed
    assert ("vitals_overdue", 40) in _raised(app)
    board = ward.get("/observations/active", location_id=ward.location_id).json
    mine = next(i for i in board["items"] if i["appointment_id"] == appt)
    assert mine["overdue_checkpoints"] == [40]
    late = ward.vitals(appt)
    assert late.status_code == 201
    assert late.json["late_for"] == [40]
    board = ward.get("/observations/active", location_id=ward.location_id).json
    mine = next(i for i in board["items"] if i["appointment_id"] == appt)
    assert mine["overdue_checkpoints"] == []
    assert mine["seconds_left"] == 70 * 60


def test_a_reading_on_time_means_no_due_alert(app, ward: Ward) -> None:
    appt = ward.ready_patient()
    ward.at("09:20")
    _three_devices(ward, appt, "09:05")
    ward.at("09:42")  # within 5 minutes before the checkpoint: it counts
    assert ward.vitals(appt).json["checkpoints"] == [40]
    ward.at("10:00")
    assert [k for k in _raised(app) if k[1] == 40] == []


def test_devices_need_five_minutes_between_them(ward: Ward) -> None:
    appt = ward.ready_patient()
    devices = ward.receive(ward.devices_drug, 3)
    ward.at("09:30")
    from tests.clock import at_local
    from tests.visits.conftest import TZ

    t0 = at_local(ward.day, "09:05", TZ)
    times = [(t0 + timedelta(minutes=m)).isoformat() for m in (0, 4, 10)]
    resp = ward.dose(appt, {"container_ids": devices, "dose_mg": "84", "device_times": times})
    assert resp.status_code == 422
    assert "device_times" in resp.json["errors"]
    assert ward.visit(appt)["status"] == "checked_in"
    assert all(ward.container(c)["balance_mg"] == "28" for c in devices)


def test_84_mg_only_after_56_in_a_treatment_resistant_course(ward: Ward) -> None:
    """SPR-21: the TRD course starts at 56 mg; 84 mg only after a 56 mg dose in the course."""
    appt = ward.ready_patient("esketamine-rems")
    devices = ward.receive(ward.devices_drug, 3)
    ward.at("09:20")
    first = ward.dose(appt, {"container_ids": devices, "dose_mg": "84"})
    assert first.status_code == 422
    assert "56" in first.json["errors"]["dose_mg"][0]
    ok = ward.dose(appt, {"container_ids": devices[:2]})
    assert ok.status_code == 201, ok.json
    assert ok.json["visit"]["dose_mg"] == "56"

"""A clinic day with real records in every kind of table the ledger, the visit and the access log
keep: set up through the API as staff would (tests/visits/conftest.py's ward), on a frozen clock.

Used by the restore drill and by the builder of the upgrade-with-data fixture.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import time_machine

from tests.clock import at_local
from tests.visits.conftest import TZ, Ward, open_ward


def seed_clinic(app: Any, client: Any, make_user: Callable[..., Any], day: date) -> Ward:
    """One location's day: stock received, an esketamine visit to discharge and its REMS monitoring
    form sent, an IV dose with its witnessed waste, a PHQ-9, a shift count, a signed checkpoint and
    one receipt after it."""
    from clinic.core.tx import commit
    from clinic.inventory import integrity

    with time_machine.travel(at_local(day, "07:30", TZ), tick=False) as traveller:
        ward = open_ward(app, client, make_user, traveller, day)

        # Esketamine, 84 mg: three devices 5 minutes apart, observed two hours, discharged.
        appt = ward.ready_patient("esketamine-mdsi")
        devices = ward.receive(ward.devices_drug, 4)
        ward.at("09:20")
        t0 = at_local(day, "09:05", TZ)
        dosed = ward.dose(
            appt,
            {
                "container_ids": devices[:3],
                "dose_mg": "84",
                "device_times": [(t0 + timedelta(minutes=5 * i)).isoformat() for i in range(3)],
            },
        )
        assert dosed.status_code == 201, dosed.json
        ward.at("09:45")
        assert ward.vitals(appt, 132, 84).status_code == 201
        ward.at("10:55")
        assert ward.vitals(appt).status_code == 201
        ward.at("11:05")
        assert ward.vitals(appt).status_code == 201
        done = ward.discharge(appt)
        assert done.status_code == 200, done.json

        # IV ketamine by weight from one vial: 36.2 mg given, 3.8 mg of the 40 drawn wasted (witnessed).
        iv = ward.book(ward.patient(weight_kg="72.4"), "ketamine-iv-induction", at="11:00")[0]
        ward.at("11:00")
        assert ward.check_in(iv).status_code == 200
        assert ward.vitals(iv).status_code == 201
        vial = ward.receive(ward.vial_drug, 2)[0]
        ward.at("11:10")
        iv_dose = ward.dose(
            iv,
            {
                "container_id": vial,
                "drawn_mg": "40",
                "administered_at": at_local(day, "11:08", TZ).isoformat(),
                **ward.witness_fields(),
            },
        )
        assert iv_dose.status_code == 201, iv_dose.json
        series = ward.get(f"/appointments/{iv}/visit").json["visit"]["series_id"]
        pid = ward.get(f"/appointments/{iv}/visit").json["visit"]["patient_id"]
        score = ward.post(
            f"/patients/{pid}/outcomes",
            {"instrument": "phq9", "series_id": series, "items": [2, 2, 1, 3, 0, 1, 2, 1, 0], "appointment_id": iv},
        )
        assert score.status_code == 201, score.json

        ward.at("16:00")  # the esketamine visit's REMS monitoring form, sent the same day
        sent = ward.post(f"/appointments/{appt}/monitoring-form/submission", {"reference": "REMS-0042-77"})
        assert sent.status_code in (200, 201), sent.json

        # An end-of-shift count of everything in the safe, witnessed.
        ward.at("17:30")
        lines = [
            {"container_id": c["id"], "counted_mg": c["balance_mg"], "exact": True}
            for c in ward.get("/inventory/balances", location_id=ward.location_id).json["containers"]
        ]
        counted = ward.post(
            "/inventory/counts",
            {"location_id": ward.location_id, "kind": "shift", "lines": lines, **ward.witness_fields()},
        )
        assert counted.status_code == 201, counted.json

        # The hourly checkpoint, then one more receipt it does not cover yet.
        ward.at("17:45")
        with app.app_context():
            assert integrity.sign_checkpoints(), "nothing to sign"
            commit()
        ward.at("17:50")
        ward.receive(ward.vial_drug, 1)
        ward.extra.update(devices=devices, vial=vial, esketamine=appt, iv=iv, patient_id=pid, series_id=series)
    return ward


def user_maker(app: Any) -> Callable[..., Any]:
    """tests/conftest.py's ``make_user`` for a module-scoped fixture (that one is per test)."""
    from tests.conftest import create_account

    def _make(role: str = "nurse", *, licensed: bool = True, password: str | None = None) -> Any:
        return create_account(app, role, label="ops", licensed=licensed, password=password)

    return _make

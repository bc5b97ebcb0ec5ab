"""A clinic day for the dosing visit, on a frozen clock the tests move by hand.

The clock stands still (time-machine, tick=False) at 07:30 on a Monday a week or more ahead, in
New York; tests move it with ``ward.at("09:00")`` or ``ward.later(minutes=40)``. Everything is
set up through the API, as staff would, after the clock is placed, so tokens and dates are valid.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import time_machine

from clinic.fixtures import CLEAR_SCREENING
from tests.clock import MONDAY, at_local, next_weekday
from tests.conftest import Account, bearer
from tests.inventory.conftest import dea_number, make_location, ndc

TZ = "America/New_York"
ANSWERS = CLEAR_SCREENING


@dataclass
class Ward:
    client: Any
    traveller: Any
    day: date
    admin: dict[str, str]
    desk: dict[str, str]
    nurse: Account
    nurse_h: dict[str, str]
    witness: Account
    prescriber: Account
    prescriber_h: dict[str, str]
    location_id: int
    safe_id: int
    devices_drug: int
    vial_drug: int
    extra: dict[str, Any] = field(default_factory=dict)

    # --- the clock ---
    def at(self, hh_mm: str) -> datetime:
        moment = at_local(self.day, hh_mm, TZ)
        self.traveller.move_to(moment)
        return moment

    def later(self, minutes: float = 0, seconds: float = 0) -> None:
        self.traveller.shift(timedelta(minutes=minutes, seconds=seconds))

    # --- requests ---
    def post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None, **kw: Any):
        return self.client.post(f"/api/v1{path}", json=body, headers=headers or self.nurse_h, **kw)

    def get(self, path: str, headers: dict[str, str] | None = None, **query: Any):
        return self.client.get(f"/api/v1{path}", query_string=query, headers=headers or self.nurse_h)

    def witness_fields(self) -> dict[str, str]:
        return {"witness_email": self.witness.email, "witness_password": self.witness.password}

    # --- the clinic's stock ---
    def receive(self, drug_id: int, count: int) -> list[int]:
        resp = self.post(
            "/inventory/receipts",
            {
                "storage_site_id": self.safe_id,
                "drug_id": drug_id,
                "lot_number": f"L{uuid.uuid4().hex[:6]}",
                "expires_on": (self.day + timedelta(days=700)).isoformat(),
                "container_count": count,
                "supplier_name": "Acme Wholesale",
                "supplier_address": "1 Supply Rd, Newark NJ",
                "supplier_dea_registration": dea_number(),
                "invoice_number": f"INV-{uuid.uuid4().hex[:6]}",
                # stock is in the safe from the start of the day, before any dose charted later that
                # day (an entry is never dated before its container's previous movement)
                "occurred_at": at_local(self.day, "07:31", TZ).isoformat(),
            },
        )
        assert resp.status_code == 201, resp.json
        return [c["id"] for c in resp.json["containers"]]

    def container(self, container_id: int) -> dict[str, Any]:
        resp = self.get(f"/inventory/containers/{container_id}")
        assert resp.status_code == 200, resp.json
        return resp.json

    def ledger(self, **query: Any) -> list[dict[str, Any]]:
        resp = self.get("/inventory/ledger", location_id=self.location_id, **query)
        assert resp.status_code == 200, resp.json
        return resp.json["items"]

    # --- patients and their courses ---
    def patient(self, *, weight_kg: str | None = "80", rems: bool = True, **answers: Any) -> int:
        resp = self.post(
            "/patients",
            {
                "first_name": "Robin",
                "last_name": f"Visit{uuid.uuid4().hex[:4]}",
                "date_of_birth": "1984-04-04",
                "address": "1 Test St, Albany NY",
                "timezone": TZ,
            },
            self.desk,
        )
        assert resp.status_code == 201, resp.json
        pid = resp.json["id"]
        screening = self.post(f"/patients/{pid}/screenings", {"answers": {**ANSWERS, **answers}})
        assert screening.status_code == 201, screening.json
        if weight_kg is not None:
            assert self.post(f"/patients/{pid}/weights", {"weight_kg": weight_kg}).status_code == 201
        if rems:
            enrolled = self.post(
                f"/patients/{pid}/rems-enrollment", {"enrolled_on": (self.day - timedelta(days=3)).isoformat()}
            )
            assert enrolled.status_code == 201, enrolled.json
        return pid

    def book(self, patient_id: int, protocol: str = "esketamine-mdsi", at: str = "09:00") -> list[int]:
        resp = self.post(
            "/series",
            {
                "patient_id": patient_id,
                "protocol": protocol,
                "location_id": self.location_id,
                "prescriber_id": self.prescriber.id,
                "start_on": self.day.isoformat(),
                "preferred_time": at,
            },
            self.desk,
        )
        assert resp.status_code == 201, resp.json
        return [a["id"] for a in resp.json["appointments"]]

    # --- the visit ---
    def check_in(self, appt: int, **body: Any):
        return self.post(f"/appointments/{appt}/check-in", {"ride_home_arranged": True, **body}, self.desk)

    def vitals(self, appt: int, systolic: int = 122, diastolic: int = 78, **body: Any):
        return self.post(
            f"/appointments/{appt}/vitals",
            {
                "systolic": systolic,
                "diastolic": diastolic,
                "heart_rate": 72,
                "spo2": 98,
                "sedation": 5,
                "dissociation": 0,
                **body,
            },
        )

    def dose(self, appt: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        return self.post(f"/appointments/{appt}/dose", body, headers)

    def discharge(self, appt: int, headers: dict[str, str] | None = None, **body: Any):
        return self.post(
            f"/appointments/{appt}/discharge",
            {
                "ride_confirmed": True,
                "clinically_stable": True,
                "sedation_resolved": True,
                "dissociation_resolved": True,
                **body,
            },
            headers,
        )

    def visit(self, appt: int) -> dict[str, Any]:
        resp = self.get(f"/appointments/{appt}/visit")
        assert resp.status_code == 200, resp.json
        return resp.json

    def ready_patient(self, protocol: str = "esketamine-mdsi", **patient: Any) -> int:
        """A patient checked in for today's 09:00 visit with normal pre-dose vitals, at 09:00."""
        appt = self.book(self.patient(**patient), protocol)[0]
        self.at("09:00")
        assert self.check_in(appt).status_code == 200
        assert self.vitals(appt).status_code == 201
        return appt


def open_ward(app, client, make_user, traveller, day: date) -> Ward:
    """A location with chairs, a safe, REMS certification, both drugs and its staff, on ``day``."""
    admin = bearer(app, make_user("admin"))
    location_id = make_location(client, admin, timezone=TZ)
    chairs = [
        client.post(f"/api/v1/locations/{location_id}/chairs", headers=admin, json={"name": f"Chair {i}"})
        for i in (1, 2, 3)
    ]
    assert all(c.status_code == 201 for c in chairs)
    certified = client.patch(
        f"/api/v1/locations/{location_id}",
        headers=admin,
        json={"rems_certified_until": (day + timedelta(days=365)).isoformat()},
    )
    assert certified.status_code == 200, certified.json
    safe = client.post(f"/api/v1/locations/{location_id}/storage-sites", headers=admin, json={"name": "Safe"})
    assert safe.status_code == 201
    drugs = []
    for body in (
        {
            "name": "Spravato (esketamine) 28 mg device",
            "form": "nasal_device",
            "unit": "device",
            "mg_per_unit": "28",
            "units_per_container": "1",
        },
        {
            "name": "Ketamine HCl 50 mg/mL",
            "form": "vial",
            "unit": "mL",
            "mg_per_unit": "50",
            "units_per_container": "10",
        },
    ):
        resp = client.post("/api/v1/drugs", headers=admin, json={"ndc": ndc(), "schedule": "CIII", **body})
        assert resp.status_code == 201, resp.json
        drugs.append(resp.json["id"])
    nurse, witness, prescriber = make_user("nurse"), make_user("nurse"), make_user("prescriber")
    ward = Ward(
        client,
        traveller,
        day,
        admin,
        bearer(app, make_user("front_desk")),
        nurse,
        bearer(app, nurse),
        witness,
        prescriber,
        bearer(app, prescriber),
        location_id,
        safe.json["id"],
        drugs[0],
        drugs[1],
    )
    initial = ward.post(
        "/inventory/counts",
        {
            "location_id": location_id,
            "kind": "initial",
            "business_hours": "opening",
            "lines": [],
            **ward.witness_fields(),
        },
    )
    assert initial.status_code == 201, initial.json
    return ward


def ward_day() -> date:
    return next_weekday(MONDAY, TZ, at_least_days=7)


@pytest.fixture
def ward(app, client, make_user) -> Iterator[Ward]:
    day = ward_day()
    with time_machine.travel(at_local(day, "07:30", TZ), tick=False) as traveller:
        yield open_ward(app, client, make_user, traveller, day)

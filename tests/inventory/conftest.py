"""A clinic with a safe, a drug catalog and staff, set up through the API as staff would."""

from __future__ import annotations

import itertools
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.clock import in_years
from tests.conftest import Account, bearer

_n = itertools.count(1)


#: one run makes thousands of locations: random numbers would collide (the birthday bound), a counter does not
_dea = itertools.count(random.randrange(10**6))


def dea_number(rng: random.Random | None = None) -> str:
    serial = rng.randrange(10**6) if rng else next(_dea) % 10**6
    d = [int(c) for c in f"{serial:06d}"]
    check = (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10
    return "A" + (rng or random).choice("BFGM") + "".join(map(str, d)) + str(check)


def ndc() -> str:
    n = next(_n) + random.randrange(10**4)
    return f"{n % 100000:05d}-{random.randrange(1000):03d}-{random.randrange(100):02d}"


@dataclass
class Clinic:
    client: Any
    admin: dict[str, str]
    nurse: Account
    nurse_h: dict[str, str]
    witness: Account
    location_id: int
    safe_id: int
    cabinet_id: int
    drug_id: int
    patient_id: int
    extra: dict[str, Any] = field(default_factory=dict)

    def post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None):
        return self.client.post(f"/api/v1{path}", json=body, headers=headers or self.nurse_h)

    def witness_fields(self, account: Account | None = None) -> dict[str, str]:
        w = account or self.witness
        return {"witness_email": w.email, "witness_password": w.password}

    def receive(self, count: int = 2, **overrides: Any):
        body = {
            "storage_site_id": self.safe_id,
            "drug_id": self.drug_id,
            "lot_number": f"L{uuid.uuid4().hex[:6]}",
            "expires_on": in_years(3).isoformat(),
            "container_count": count,
            "supplier_name": "Acme Wholesale",
            "supplier_address": "1 Supply Rd, Newark NJ",
            "supplier_dea_registration": dea_number(),
            "invoice_number": f"INV-{uuid.uuid4().hex[:6]}",
            **overrides,
        }
        return self.post("/inventory/receipts", body)

    def container(self, container_id: int) -> dict[str, Any]:
        resp = self.client.get(f"/api/v1/inventory/containers/{container_id}", headers=self.nurse_h)
        assert resp.status_code == 200
        return resp.json

    def ledger(self, **query: Any) -> list[dict[str, Any]]:
        items, cursor = [], None
        while True:
            q = {"location_id": self.location_id, **query, **({"cursor": cursor} if cursor else {})}
            page = self.client.get("/api/v1/inventory/ledger", query_string=q, headers=self.nurse_h).json
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items


def make_location(client, admin_h, **extra) -> int:
    resp = client.post(
        "/api/v1/locations",
        headers=admin_h,
        json={
            "name": f"Clinic {uuid.uuid4().hex[:4]}",
            "address": "10 Main St, Springfield IL",
            "dea_registration": dea_number(),
            "timezone": "America/Chicago",
            **extra,
        },
    )
    assert resp.status_code == 201, resp.json
    return resp.json["id"]


@pytest.fixture
def clinic(app, client, make_user) -> Clinic:
    admin_h = bearer(app, make_user("admin"))
    nurse = make_user("nurse")
    witness = make_user("nurse")
    location_id = make_location(client, admin_h)
    sites = [
        client.post(f"/api/v1/locations/{location_id}/storage-sites", headers=admin_h, json={"name": name})
        for name in ("Safe A", "Cabinet B")
    ]
    assert all(s.status_code == 201 for s in sites), [s.json for s in sites]
    drug = client.post(
        "/api/v1/drugs",
        headers=admin_h,
        json={
            "name": "Ketamine HCl 50 mg/mL",
            "ndc": ndc(),
            "schedule": "CIII",
            "form": "vial",
            "unit": "mL",
            "mg_per_unit": "50",
            "units_per_container": "10",
        },
    )
    assert drug.status_code == 201, drug.json
    nurse_h = bearer(app, nurse)
    patient = client.post(
        "/api/v1/patients",
        headers=nurse_h,
        json={
            "first_name": "Pat",
            "last_name": "Example",
            "date_of_birth": "1980-02-03",
            "address": "5 Elm St, Springfield IL",
            "timezone": "America/Chicago",
        },
    )
    assert patient.status_code == 201, patient.json
    c = Clinic(
        client,
        admin_h,
        nurse,
        nurse_h,
        witness,
        location_id,
        sites[0].json["id"],
        sites[1].json["id"],
        drug.json["id"],
        patient.json["id"],
    )
    initial = c.post(
        "/inventory/counts",
        {"location_id": location_id, "kind": "initial", "business_hours": "opening", "lines": [], **c.witness_fields()},
    )
    assert initial.status_code == 201, initial.json
    return c

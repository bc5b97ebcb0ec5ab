"""One small clinic per backend for the export tests, built once per module through the API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import Account, Client, bearer
from tests.inventory.conftest import dea_number, make_location, ndc


def new_user(app, role: str, *, licensed: bool = True) -> Account:
    from clinic.auth import service
    from clinic.core.tx import commit

    email = f"{role}.{uuid.uuid4().hex[:8]}@test.clinic"
    password = f"pw-{uuid.uuid4().int}"
    with app.app_context():
        user = service.create_user(
            actor=None,
            email=email,
            name=f"Exp {role} {uuid.uuid4().hex[:4]}",
            role=role,
            password=password,
            license_type="RN" if licensed and role in ("nurse", "prescriber") else None,
            license_number=f"L-{uuid.uuid4().hex[:6]}" if licensed and role in ("nurse", "prescriber") else None,
        )
        commit()
        return Account(user.id, email, password, role, None)


@dataclass
class Shop:
    app: Any
    client: Any
    admin_h: dict[str, str]
    nurse_h: dict[str, str]
    auditor: Account
    auditor_h: dict[str, str]
    nurse: Account
    witness: Account
    location_id: int
    other_location_id: int
    drug_id: int
    patients: list[int]
    seqs: dict[str, list[int]]

    def post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None):
        resp = self.client.post(f"/api/v1{path}", json=body, headers=headers or self.nurse_h)
        assert resp.status_code in (200, 201), (path, resp.json)
        return resp.json


def _site_and_opening(shop_client, admin_h, nurse_h, witness: Account, location_id: int) -> int:
    site = shop_client.post(f"/api/v1/locations/{location_id}/storage-sites", headers=admin_h, json={"name": "Safe"})
    assert site.status_code == 201, site.json
    opening = shop_client.post(
        "/api/v1/inventory/counts",
        headers=nurse_h,
        json={
            "location_id": location_id,
            "kind": "initial",
            "business_hours": "opening",
            "lines": [],
            "witness_email": witness.email,
            "witness_password": witness.password,
        },
    )
    assert opening.status_code == 201, opening.json
    return site.json["id"]


@pytest.fixture(scope="module")
def shop(app) -> Shop:
    from tests.clock import in_years

    app.test_client_class = Client
    client = app.test_client()
    admin_h = bearer(app, new_user(app, "admin"))
    nurse, witness, auditor = new_user(app, "nurse"), new_user(app, "nurse"), new_user(app, "auditor")
    nurse_h, auditor_h = bearer(app, nurse), bearer(app, auditor)
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
    patients = []
    for first, last in (("Ada", "Lovelace"), ("Émile", "Zola")):
        p = client.post(
            "/api/v1/patients",
            headers=nurse_h,
            json={
                "first_name": first,
                "last_name": last,
                "date_of_birth": "1980-02-03",
                "address": f"{len(patients) + 5} Elm St, Springfield IL",
                "timezone": "America/Chicago",
            },
        )
        assert p.status_code == 201, p.json
        patients.append(p.json["id"])
    shop = Shop(app, client, admin_h, nurse_h, auditor, auditor_h, nurse, witness, 0, 0, drug.json["id"], patients, {})
    seqs: dict[str, list[int]] = {}
    for name in ("main", "other"):
        loc = make_location(client, admin_h)
        site = _site_and_opening(client, admin_h, nurse_h, witness, loc)
        receipt = shop.post(
            "/inventory/receipts",
            {
                "storage_site_id": site,
                "drug_id": drug.json["id"],
                "lot_number": f"L{uuid.uuid4().hex[:5]}",
                "expires_on": in_years(3).isoformat(),
                "container_count": 2,
                "supplier_name": "Acme Wholesale",
                "supplier_address": "1 Supply Rd, Newark NJ",
                "supplier_dea_registration": dea_number(),
                "invoice_number": f"INV-{uuid.uuid4().hex[:6]}",
            },
        )
        vial, spare = (c["id"] for c in receipt["containers"])
        given = [
            shop.post("/inventory/administrations", {"container_id": vial, "patient_id": pid, "quantity_mg": q})["seq"]
            for pid, q in zip(patients, ("37.5", "25"), strict=True)
        ]
        waste = shop.post(
            "/inventory/wastes",
            {
                "container_id": vial,
                "quantity_mg": "2.5",
                "reason": "Remainder of the dose",
                "no_administration_reason": "Drawn up in excess",
                "witness_email": witness.email,
                "witness_password": witness.password,
            },
        )["seq"]
        loss = shop.post(
            "/inventory/losses",
            {
                "container_id": spare,
                "quantity_mg": "5",
                "kind": "breakage",
                "description": "Vial dropped",
                "witness_email": witness.email,
                "witness_password": witness.password,
            },
        )["seq"]
        seqs[name] = [*given, waste, loss]
        if name == "main":
            shop.location_id = loc
        else:
            shop.other_location_id = loc
    shop.seqs = seqs
    return shop


def period(days: int = 2) -> tuple[str, str]:
    from clinic.core.time import utcnow

    now = utcnow()
    return (now - timedelta(days=days)).isoformat(), (now + timedelta(hours=1)).isoformat()

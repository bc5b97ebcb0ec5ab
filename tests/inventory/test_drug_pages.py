"""The drug catalog's page: everyone who sees the safe reads it; an administrator adds a drug with
the API's own schema and rules (catalog.manage), and a refused one writes nothing."""

from __future__ import annotations

import re

from tests.inventory.conftest import ndc
from tests.inventory.test_pages import assert_accessible, submit, text

PAGE = "/inventory/drugs"


def _drugs(clinic) -> list[dict]:
    resp = clinic.client.get("/api/v1/drugs", headers=clinic.nurse_h)
    assert resp.status_code == 200
    return resp.json["items"]


def test_an_administrator_adds_a_device_drug_from_the_catalog_page(clinic, login_as):
    admin, _ = login_as("admin")
    page = admin.get(PAGE)
    assert page.status_code == 200
    assert_accessible(page)
    html = text(page)
    assert f'data-drug="{clinic.drug_id}"' in html and "Ketamine HCl 50 mg/mL" in html
    assert "50 mg per mL" in html and "10 mL · 500 mg" in html

    code = ndc()
    resp = submit(
        admin,
        PAGE,
        {
            "name": "Spravato (esketamine) 28 mg nasal device",
            "ndc": code,
            "schedule": "CIII",
            "form": "nasal_device",
            "unit": "device",
            "mg_per_unit": "28",
            "units_per_container": "1",
        },
    )
    assert resp.status_code == 302, text(resp)[-2000:]
    html = text(admin.get(resp.location))
    assert f"Spravato (esketamine) 28 mg nasal device (NDC {code}) added to the catalog." in html
    (made,) = [d for d in _drugs(clinic) if d["ndc"] == code]
    assert made["unit"] == "device" and made["mg_per_unit"] == "28" and made["units_per_container"] == "1"
    assert made["mg_per_container"] == "28"
    row = re.search(rf'<tr data-drug="{made["id"]}">(.*?)</tr>', html, re.S)
    assert row and "28 mg per device" in row.group(1) and "1 device · 28 mg" in row.group(1)


def test_a_refused_drug_is_shown_on_its_fields_and_writes_nothing(clinic, login_as):
    admin, _ = login_as("admin")
    before = _drugs(clinic)
    taken = next(d["ndc"] for d in before if d["id"] == clinic.drug_id)
    good = {
        "name": "Midazolam 5 mg/mL",
        "ndc": ndc(),
        "schedule": "CIV",
        "form": "vial",
        "unit": "mL",
        "mg_per_unit": "5",
        "units_per_container": "2",
    }
    for change, field, message, status in (
        ({"ndc": "12-34"}, "ndc", "An NDC such as 42023-113-10.", 422),
        ({"mg_per_unit": "0"}, "mg_per_unit", "Must be a positive number", 422),
        ({"mg_per_unit": "5000"}, "mg_per_unit", "At most 1000 mg per unit.", 422),
        ({"schedule": "CI"}, "schedule", "Must be one of", 422),
        ({"ndc": taken}, "ndc", "A drug with this NDC exists.", 409),  # the records refuse it
    ):
        resp = submit(admin, PAGE, {**good, **change})
        assert resp.status_code == status, change
        html = text(resp)
        assert re.search(rf'id="{field}-error" role="alert">{re.escape(message)}', html), (change, html[-3000:])
        assert 'value="Midazolam 5 mg/mL"' in html  # what was typed is kept
    assert _drugs(clinic) == before


def test_staff_read_the_catalog_but_only_an_administrator_adds_to_it(clinic, login_as):
    for role in ("nurse", "prescriber", "auditor"):
        person, _ = login_as(role)
        page = person.get(PAGE)
        assert page.status_code == 200, role
        html = text(page)
        assert "Ketamine HCl 50 mg/mL" in html and "Add the drug" not in html, role
        token = person.csrf(PAGE)
        resp = person.post(PAGE, data={"name": "X", "ndc": ndc(), "csrf_token": token})
        assert resp.status_code == 403, role
    desk, _ = login_as("front_desk")
    assert desk.get(PAGE).status_code == 403

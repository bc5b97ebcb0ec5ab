"""The count sheet lists what can be counted: stock in containers, never an empty or disposed
container; expired stock awaiting disposal stays, marked (an inventory lists it, DEA-17); a
device drug is counted and shown in devices, not mg; expiring-soon containers are marked."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import update

from clinic.extensions import db
from clinic.inventory.models import Container
from tests.clock import today_in
from tests.inventory import test_pages as base
from tests.inventory.conftest import dea_number, ndc
from tests.inventory.test_pages import assert_accessible, receive, submit, text

nurse = base.nurse  # the clinic's own nurse, signed in through the pages

CHICAGO = "America/Chicago"  # the clinic fixture's location


def _device_drug(clinic) -> int:
    resp = clinic.client.post(
        "/api/v1/drugs",
        headers=clinic.admin,
        json={
            "name": "Spravato (esketamine) 28 mg nasal device",
            "ndc": ndc(),
            "schedule": "CIII",
            "form": "nasal_device",
            "unit": "device",
            "mg_per_unit": "28",
            "units_per_container": "1",
        },
    )
    assert resp.status_code == 201, resp.json
    return int(resp.json["id"])


def _row(html: str, cid: int) -> str:
    match = re.search(rf'<tr data-container="{cid}"[^>]*>(.*?)</tr>', html, re.S)
    assert match, f"container {cid} is not on the sheet"
    return match.group(1)


def _stocked(app, clinic) -> dict[str, int]:
    """A vial in stock, one emptied, one disposed, one expiring in 10 days, one expired (still
    held), and two esketamine devices."""
    full, emptied, gone = receive(clinic, 3)
    soon = (today_in(CHICAGO) + timedelta(days=10)).isoformat()
    (expiring,) = receive(clinic, 1, expires_on=soon, lot_number="SOON1")
    (expired,) = receive(clinic, 1, expires_on=today_in(CHICAGO).isoformat(), lot_number="OLD1")
    with app.app_context():  # it expired since it came in (receiving refuses expired stock)
        db.session.execute(
            update(Container).where(Container.id == expired).values(expires_on=today_in(CHICAGO) - timedelta(days=1))
        )
        db.session.commit()
    given = clinic.post(
        "/inventory/administrations", {"container_id": emptied, "patient_id": clinic.patient_id, "quantity_mg": "500"}
    )
    assert given.status_code == 201, given.json
    returned = clinic.post("/inventory/disposals", {
        "container_id": gone, "method": "returned for destruction", **clinic.witness_fields(),
        "reverse_distributor": {"name": "Returns Inc", "address": "9 Dock St", "dea_registration": dea_number()},
    })  # fmt: skip
    assert returned.status_code == 201, returned.json
    device_a, device_b = receive(clinic, 2, drug_id=_device_drug(clinic))
    return {
        "full": full,
        "emptied": emptied,
        "gone": gone,
        "expiring": expiring,
        "expired": expired,
        "device_a": device_a,
        "device_b": device_b,
    }


def test_the_count_sheet_lists_stock_only_and_counts_devices_in_devices(app, clinic, nurse):
    c = _stocked(app, clinic)
    sheet = f"/inventory/count?location_id={clinic.location_id}"
    page = nurse.get(sheet)
    assert page.status_code == 200
    assert_accessible(page)
    html = text(page)

    for name in ("full", "expiring", "expired"):
        assert f'name="counted_mg-{c[name]}"' in html, name
    for name in ("emptied", "gone"):
        assert f'data-container="{c[name]}"' not in html and f"counted_mg-{c[name]}" not in html, name
    # a device is counted in devices: its field, its expected amount and its unit say so
    for name in ("device_a", "device_b"):
        row = _row(html, c[name])
        assert f'name="counted_devices-{c[name]}"' in row and f"counted_mg-{c[name]}" not in row
        assert '<td style="white-space:nowrap">1 device</td>' in row and "Counted devices, container" in row
        assert " mg</td>" not in row
    assert "500 mg" in _row(html, c["full"])
    # expiring soon is marked; expired stock is marked as awaiting disposal, after the usable stock
    assert "<mark>" in _row(html, c["expiring"]) and "in 10 days" in _row(html, c["expiring"])
    assert "<mark>" not in _row(html, c["full"])
    held = _row(html, c["expired"])
    assert "<small>expired, awaiting return or destruction</small>" in held
    assert html.index(f'data-container="{c["expired"]}"') > html.index(f'data-container="{c["device_b"]}"')

    # A biennial inventory from the sheet as shown: every listed line, the emptied vial left out.
    before = len(clinic.ledger(kind="count"))
    resp = submit(
        nurse,
        sheet,
        {
            "kind": "biennial",
            "business_hours": "close",
            f"counted_mg-{c['full']}": "500",
            f"counted_mg-{c['expiring']}": "500",
            f"counted_mg-{c['expired']}": "500",
            f"counted_devices-{c['device_a']}": "1",
            f"counted_devices-{c['device_b']}": "0",
            **clinic.witness_fields(),
        },
    )
    assert resp.status_code == 302, text(resp)[-3000:]
    entries = clinic.ledger(kind="count")
    assert len(entries) == before + 1
    counted = {ln["container_id"]: ln["counted_ug"] for ln in entries[-1]["details"]["lines"]}
    assert counted == {
        c["full"]: 500_000,
        c["expiring"]: 500_000,
        c["expired"]: 500_000,
        c["device_a"]: 28_000,
        c["device_b"]: 0,
    }
    html = text(nurse.get(resp.location))
    assert "Biennial count recorded; 1 container(s) differ from the books." in html
    assert f"container #{c['device_b']}" in html


def test_a_device_count_refused_is_shown_on_its_line_in_devices(app, clinic, nurse):
    drug_id = _device_drug(clinic)
    (device,) = receive(clinic, 1, drug_id=drug_id)
    (vial,) = receive(clinic, 1)
    sheet = f"/inventory/count?location_id={clinic.location_id}"
    before = clinic.ledger()
    for typed, message in (
        ("2", "More devices than the container holds."),
        ("0.00001", "Count whole devices, or a fraction of one (0.5)."),
        ("lots", "Not a number."),
    ):
        resp = submit(
            nurse,
            sheet,
            {"kind": "shift", f"counted_devices-{device}": typed, **clinic.witness_fields()},
        )
        assert resp.status_code == 422, typed
        html = text(resp)
        assert re.search(rf'id="counted_devices-{device}-error" role="alert">{re.escape(message)}', html), typed
        assert f'value="{typed}"' in html
    # a vial is not counted in devices
    resp = submit(nurse, sheet, {"kind": "shift", f"counted_devices-{vial}": "1", **clinic.witness_fields()})
    assert resp.status_code == 422
    assert "Not a device drug on hand here." in text(resp)
    assert clinic.ledger() == before


def test_the_api_still_counts_an_empty_container_at_zero(clinic):
    full, emptied = receive(clinic, 2)
    given = clinic.post(
        "/inventory/administrations", {"container_id": emptied, "patient_id": clinic.patient_id, "quantity_mg": "500"}
    )
    assert given.status_code == 201, given.json
    for kind, extra in (("shift", {}), ("biennial", {"business_hours": "opening"})):
        resp = clinic.post(
            "/inventory/counts",
            {
                "location_id": clinic.location_id,
                "kind": kind,
                **extra,
                "lines": [{"container_id": full, "counted_mg": "500"}, {"container_id": emptied, "counted_mg": "0"}],
                **clinic.witness_fields(),
            },
        )
        assert resp.status_code == 201, resp.json
        assert resp.json["discrepancies"] == []
    # an inventory still lists every container with stock in it
    resp = clinic.post(
        "/inventory/counts",
        {
            "location_id": clinic.location_id,
            "kind": "biennial",
            "business_hours": "close",
            "lines": [{"container_id": emptied, "counted_mg": "0"}],
            **clinic.witness_fields(),
        },
    )
    assert resp.status_code == 422 and f"missing [{full}]" in str(resp.json), resp.json

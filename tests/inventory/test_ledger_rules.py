"""Issue 8: the DEA record rules as an inspector and an attacker test them, through the API.

Each test here failed before its fix; both backends run every one.
"""

from __future__ import annotations

import pytest

from tests.conftest import bearer

PROBLEM = "application/problem+json"


def count_line(clinic, cid: int, counted: str) -> dict:
    resp = clinic.post(
        "/inventory/counts",
        {
            "location_id": clinic.location_id,
            "kind": "shift",
            **clinic.witness_fields(),
            "lines": [{"container_id": cid, "counted_mg": counted}],
        },
    )
    assert resp.status_code == 201, resp.json
    return resp.json["discrepancies"][0]


def draw(clinic, cid: int, mg: str):
    return clinic.post(
        "/inventory/administrations", {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": mg}
    )


# --- an adjustment applies the counted difference ----------------------------------------------


def test_adjustment_after_a_draw_applies_the_difference_not_the_count(app, clinic, make_user):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    disc = count_line(clinic, cid, "490")
    assert draw(clinic, cid, "50").status_code == 201
    resp = clinic.post(
        f"/inventory/discrepancies/{disc['id']}/resolve",
        {"action": "adjust", "explanation": "evaporation", **clinic.witness_fields()},
        headers=bearer(app, make_user("prescriber")),
    )
    assert resp.status_code == 200, resp.json
    assert clinic.container(cid)["balance_mg"] == "440"  # 500 - 10 short - 50 drawn; not back to 490
    (adj,) = clinic.ledger(kind="adjustment", container_id=cid)
    assert adj["delta_mg"] == "-10"


def test_escalation_after_a_draw_loses_the_shortage_only(app, clinic, make_user):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    disc = count_line(clinic, cid, "480")
    assert draw(clinic, cid, "100").status_code == 201
    resp = clinic.post(
        f"/inventory/discrepancies/{disc['id']}/resolve",
        {"action": "escalate", "explanation": "missing"},
        headers=bearer(app, make_user("prescriber")),
    )
    assert resp.status_code == 200, resp.json
    assert clinic.container(cid)["balance_mg"] == "380"


# --- corrections restore the state, or are refused with a reason ---------------------------------


def correct(clinic, seq: int, **extra):
    return clinic.post(
        "/inventory/corrections",
        {
            "location_id": clinic.location_id,
            "corrects_seq": seq,
            "reason": "charted in error",
            **clinic.witness_fields(),
            **extra,
        },
    )


def test_correcting_a_destruction_restores_the_container(clinic, make_user):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    assert draw(clinic, cid, "40").status_code == 201
    second = make_user("prescriber")
    destroyed = clinic.post(
        "/inventory/disposals",
        {
            "container_id": cid,
            "method": "incineration",
            **clinic.witness_fields(),
            "second_witness_email": second.email,
            "second_witness_password": second.password,
        },
    )
    assert destroyed.status_code == 201, destroyed.json
    resp = correct(clinic, destroyed.json["seq"])
    assert resp.status_code == 201, resp.json
    container = clinic.container(cid)
    assert container["balance_mg"] == "460" and container["status"] == "open"  # back in stock, countable
    balances = clinic.client.get(
        "/api/v1/inventory/balances", query_string={"location_id": clinic.location_id}, headers=clinic.nurse_h
    ).json
    assert cid in [c["id"] for c in balances["containers"]]
    assert draw(clinic, cid, "10").status_code == 201


def test_correcting_a_draw_that_emptied_a_vial_opens_it_again(app, clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    entry = draw(clinic, cid, "500").json
    assert clinic.container(cid)["status"] == "empty"
    assert correct(clinic, entry["seq"]).status_code == 201
    assert clinic.container(cid)["status"] == "open"
    result = app.test_cli_runner().invoke(args=["ledger", "verify", "--location", str(clinic.location_id)])
    assert result.exit_code == 0, result.output


def test_a_correction_may_carry_the_true_quantity(clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    given = draw(clinic, cid, "40").json
    resp = correct(clinic, given["seq"], corrected_quantity_mg="45")
    assert resp.status_code == 201, resp.json
    assert resp.json["delta_mg"] == "-5" and resp.json["corrects_seq"] == given["seq"]
    assert resp.json["details"]["corrected_quantity_mg"] == "45"
    assert clinic.container(cid)["balance_mg"] == "455"
    less = draw(clinic, cid, "30").json
    assert correct(clinic, less["seq"], corrected_quantity_mg="25").json["delta_mg"] == "5"
    assert clinic.container(cid)["balance_mg"] == "430"


@pytest.mark.parametrize("kind", ["receipt", "initial_inventory", "correction"])
def test_corrections_that_cannot_restore_the_state_are_refused_with_a_reason(clinic, kind):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    entries = clinic.ledger()
    if kind == "correction":
        first = correct(clinic, draw(clinic, cid, "5").json["seq"]).json
        seq = first["seq"]
    else:
        seq = next(e["seq"] for e in entries if e["kind"] == kind)
    before = len(clinic.ledger())
    resp = correct(clinic, seq)
    assert resp.status_code == 409 and resp.json["code"] == "correction_refused", resp.json
    assert resp.json["detail"] and "corrects_seq" in resp.json["errors"]
    assert len(clinic.ledger()) == before


def test_a_correction_on_a_disposed_container_is_refused(clinic, make_user):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    given = draw(clinic, cid, "40").json
    clinic.post(
        "/inventory/disposals",
        {
            "container_id": cid,
            "method": "returned",
            **clinic.witness_fields(),
            "reverse_distributor": {"name": "R", "address": "A", "dea_registration": "RB1234563"},
        },
    )
    resp = correct(clinic, given["seq"])
    assert resp.status_code == 409 and resp.json["code"] == "correction_refused"


# --- times are held in order (DEA-06) -------------------------------------------------------------


def ago(**delta) -> str:
    from datetime import timedelta

    from clinic.core.time import utcnow

    return (utcnow() - timedelta(**delta)).isoformat()


def test_an_administration_before_its_vial_was_received_is_refused(clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    resp = clinic.post(
        "/inventory/administrations",
        {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "10", "administered_at": ago(hours=1)},
    )
    assert resp.status_code == 422 and "administered_at" in resp.json["errors"], resp.json
    assert clinic.container(cid)["balance_mg"] == "500"


def test_a_receipt_before_the_initial_inventory_is_refused(clinic):
    resp = clinic.receive(occurred_at=ago(hours=2))
    assert resp.status_code == 422 and "occurred_at" in resp.json["errors"], resp.json


def test_a_loss_discovered_before_it_occurred_is_refused(clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    resp = clinic.post(
        "/inventory/losses",
        {
            "container_id": cid,
            "quantity_mg": "5",
            "kind": "theft",
            "description": "x",
            "occurred_at": ago(seconds=1),
            "discovered_at": ago(seconds=30),
        },
    )
    assert resp.status_code == 422 and "discovered_at" in resp.json["errors"], resp.json


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00Z", "0001-01-02T12:00:00+05:00", "9999-12-31T23:59:59Z"])
@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/inventory/wastes", "occurred_at"),
        ("/inventory/administrations", "administered_at"),
        ("/inventory/losses", "occurred_at"),
        ("/inventory/losses", "discovered_at"),
        ("/inventory/transfers", "occurred_at"),
        ("/inventory/receipts", "occurred_at"),
        ("/inventory/counts", "occurred_at"),
    ],
)
def test_year_1_and_9999_are_a_422_naming_the_field(clinic, path, field, when):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    bodies = {
        "/inventory/wastes": {"container_id": cid, "quantity_mg": "1", "reason": "r", **clinic.witness_fields()},
        "/inventory/administrations": {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "1"},
        "/inventory/losses": {"container_id": cid, "quantity_mg": "1", "kind": "theft", "description": "d"},
        "/inventory/transfers": {"container_id": cid, "to_storage_site_id": clinic.cabinet_id},
        "/inventory/counts": {
            "location_id": clinic.location_id,
            "kind": "shift",
            "lines": [],
            **clinic.witness_fields(),
        },
    }
    before = len(clinic.ledger())
    if path == "/inventory/receipts":
        resp = clinic.receive(**{field: when, "late_entry_reason": "paper records"})
    else:
        resp = clinic.post(path, {**bodies[path], field: when, "late_entry_reason": "paper records"})
    assert resp.status_code == 422, resp.json
    assert field in resp.json["errors"], resp.json
    assert len(clinic.ledger()) == before


def test_back_charting_past_the_window_needs_a_reason(app, clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    body = {"container_id": cid, "to_storage_site_id": clinic.cabinet_id}
    assert clinic.post("/inventory/transfers", body).status_code == 201
    # a location whose records start on paper a fortnight ago
    from tests.inventory.conftest import make_location

    loc = make_location(clinic.client, clinic.admin)
    site = clinic.client.post(f"/api/v1/locations/{loc}/storage-sites", headers=clinic.admin, json={"name": "S"}).json
    initial = {
        "location_id": loc,
        "kind": "initial",
        "business_hours": "opening",
        "lines": [],
        **clinic.witness_fields(),
    }
    late = clinic.post("/inventory/counts", {**initial, "occurred_at": ago(days=14)})
    assert late.status_code == 422 and "late_entry_reason" in late.json["errors"], late.json
    ok = clinic.post("/inventory/counts", {**initial, "occurred_at": ago(days=14), "late_entry_reason": "go-live"})
    assert ok.status_code == 201, ok.json
    got = clinic.receive(storage_site_id=site["id"], occurred_at=ago(days=13), late_entry_reason="from the paper log")
    assert got.status_code == 201, got.json
    assert got.json["entries"][0]["details"]["late_entry_reason"] == "from the paper log"
    vial = got.json["containers"][0]["id"]
    too_early = clinic.post(
        "/inventory/administrations",
        {
            "container_id": vial,
            "patient_id": clinic.patient_id,
            "quantity_mg": "5",
            "administered_at": ago(days=13, hours=1),
            "late_entry_reason": "paper",
        },
    )
    assert too_early.status_code == 422 and "administered_at" in too_early.json["errors"]

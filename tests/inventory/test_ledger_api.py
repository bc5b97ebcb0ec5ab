"""The ledger through the API: each kind of entry, its invariants and its refusals."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

import pytest

from tests.conftest import bearer
from tests.inventory.conftest import make_location

PROBLEM = "application/problem+json"


def test_receipt_creates_sealed_containers_with_full_balance(clinic):
    resp = clinic.receive(count=3)
    assert resp.status_code == 201
    assert len(resp.json["containers"]) == 3 and len(resp.json["entries"]) == 3
    for container, entry in zip(resp.json["containers"], resp.json["entries"], strict=True):
        assert container["status"] == "sealed"
        assert container["balance_mg"] == container["initial_mg"] == "500"
        assert container["balance_units"] == "10" and container["unit"] == "mL"
        assert entry["kind"] == "receipt" and entry["delta_mg"] == "500" and entry["balance_after_mg"] == "500"
        assert entry["details"]["supplier_name"] == "Acme Wholesale"
        assert entry["container_id"] == container["id"]


def test_receipt_needs_initial_inventory_first(app, client, make_user, clinic):
    location_id = make_location(client, clinic.admin)
    site = client.post(f"/api/v1/locations/{location_id}/storage-sites", headers=clinic.admin, json={"name": "S"})
    resp = clinic.receive(storage_site_id=site.json["id"])
    assert resp.status_code == 409
    assert resp.json["code"] == "initial_inventory_required"


def test_administration_debits_exactly(clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    resp = clinic.post(
        "/inventory/administrations", {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "37.5"}
    )
    assert resp.status_code == 201, resp.json
    assert resp.json["kind"] == "administration"
    assert resp.json["delta_mg"] == "-37.5" and resp.json["balance_after_mg"] == "462.5"
    assert resp.json["details"]["patient_name"] == "Pat Example"
    assert resp.json["details"]["patient_address"].startswith("5 Elm St")
    container = clinic.container(cid)
    assert container["balance_mg"] == "462.5" and container["status"] == "open"


def test_waste_with_witness_brings_the_vial_to_zero(clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    clinic.post(
        "/inventory/administrations", {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "499.999"}
    )
    resp = clinic.post(
        "/inventory/wastes",
        {"container_id": cid, "quantity_mg": "0.001", "reason": "remainder", **clinic.witness_fields()},
    )
    assert resp.status_code == 201, resp.json
    assert resp.json["witness_id"] == clinic.witness.id and resp.json["actor_id"] == clinic.nurse.id
    container = clinic.container(cid)
    assert container["balance_mg"] == "0" and container["status"] == "empty"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"quantity_mg": "-1"}, 422, "quantity_mg"),
        ({"quantity_mg": "0"}, 422, "quantity_mg"),
        ({"quantity_mg": "abc"}, 422, "quantity_mg"),
        ({"quantity_mg": 12.5}, 422, "quantity_mg"),
        ({"quantity_mg": "0.0001"}, 422, "quantity_mg"),
        ({"quantity_mg": "NaN"}, 422, "quantity_mg"),
        ({"quantity_mg": "500.001"}, 409, None),
        ({"patient_id": 999999999}, 404, "patient_id"),  # a row that does not exist
        ({"administered_at": "2999-01-01T00:00:00Z"}, 422, "administered_at"),
        ({"administered_at": "2026-01-01T00:00:00"}, 422, "administered_at"),
    ],
)
def test_bad_administrations_are_refused_and_write_nothing(clinic, body, status, field):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    before = len(clinic.ledger())
    resp = clinic.post(
        "/inventory/administrations",
        {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "10", **body},
    )
    assert resp.status_code == status, resp.json
    assert resp.mimetype == PROBLEM
    if field:
        assert field in resp.json["errors"]
    assert len(clinic.ledger()) == before
    assert clinic.container(cid)["balance_mg"] == "500"


def test_expired_container_cannot_be_drawn(clinic, app):
    from clinic.extensions import db
    from clinic.inventory.models import Container

    cid = clinic.receive(count=1).json["containers"][0]["id"]
    with app.app_context():
        # containers is an operational table; the ledger keeps the movements.
        db.session.get(Container, cid).expires_on = db.session.get(Container, cid).expires_on.replace(year=2020)
        db.session.commit()
    resp = clinic.post(
        "/inventory/administrations", {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "10"}
    )
    assert resp.status_code == 409 and resp.json["code"] == "container_unusable"


def test_receiving_an_expired_lot_is_refused(clinic):
    resp = clinic.receive(expires_on="2020-01-01")
    assert resp.status_code == 409


@pytest.mark.parametrize("case", ["self", "wrong_password", "unlicensed", "front_desk", "missing", "unknown"])
def test_waste_witness_rules(app, clinic, make_user, case):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    before = len(clinic.ledger())
    if case == "self":
        fields = clinic.witness_fields(clinic.nurse)
    elif case == "wrong_password":
        fields = {"witness_email": clinic.witness.email, "witness_password": "not-it"}
    elif case == "unlicensed":
        fields = clinic.witness_fields(make_user("nurse", licensed=False))
    elif case == "front_desk":
        fields = clinic.witness_fields(make_user("front_desk"))
    elif case == "missing":
        fields = {}
    else:
        fields = {"witness_email": "ghost@test.clinic", "witness_password": "whatever"}
    resp = clinic.post("/inventory/wastes", {"container_id": cid, "quantity_mg": "5", "reason": "x", **fields})
    assert resp.status_code == 422, resp.json
    assert resp.mimetype == PROBLEM
    assert resp.json["code"] in ("witness_invalid", "witness_required")
    assert len(clinic.ledger()) == before
    assert clinic.container(cid)["balance_mg"] == "500"


def test_transfer_moves_custody_not_quantity(clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    resp = clinic.post("/inventory/transfers", {"container_id": cid, "to_storage_site_id": clinic.cabinet_id})
    assert resp.status_code == 201
    assert resp.json["delta_mg"] == "0"
    assert resp.json["details"] == {"from_storage_site_id": clinic.safe_id, "to_storage_site_id": clinic.cabinet_id}
    assert clinic.container(cid)["storage_site_id"] == clinic.cabinet_id
    again = clinic.post("/inventory/transfers", {"container_id": cid, "to_storage_site_id": clinic.cabinet_id})
    assert again.status_code == 409  # the records, not the input, refuse it


def test_theft_opens_a_form_106_draft_with_deadlines(app, clinic):
    from sqlalchemy import select

    from clinic.extensions import db
    from clinic.inventory.models import LossReport
    from clinic.locations.calendar import add_business_days
    from tests.clock import today_in

    cid = clinic.receive(count=1).json["containers"][0]["id"]
    resp = clinic.post(
        "/inventory/losses",
        {"container_id": cid, "quantity_mg": "100", "kind": "theft", "description": "vial found short"},
    )
    assert resp.status_code == 201
    today = today_in("America/Chicago")  # discovered now, on the location's own day
    with app.app_context():
        report = db.session.scalar(select(LossReport).where(LossReport.entry_id == resp.json["id"]))
        # Notice by the end of the next business day there (DEA-31); the form within 45 days (DEA-32).
        from zoneinfo import ZoneInfo

        due = report.notice_due_at.astimezone(ZoneInfo("America/Chicago"))
        assert due.date() == add_business_days(today, 1) and (due.hour, due.minute) == (23, 59)
        assert report.filing_due_on == today + timedelta(days=45)
        assert report.form["products"][0]["quantity_lost_mg"] == "100"
        assert report.board_notice_due_on is None  # the federal profile has no board deadline


def test_breakage_is_recorded_without_form_106(app, clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    resp = clinic.post(
        "/inventory/losses",
        {
            "container_id": cid,
            "quantity_mg": "500",
            "kind": "breakage",
            "description": "dropped",
            **clinic.witness_fields(),
        },
    )
    assert resp.status_code == 201
    assert clinic.container(cid)["balance_mg"] == "0"


def test_disposal_needs_a_witness_and_empties_the_container(clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    no_witness = clinic.post("/inventory/disposals", {"container_id": cid, "method": "reverse distributor"})
    assert no_witness.status_code == 422
    resp = clinic.post(
        "/inventory/disposals",
        {
            "container_id": cid,
            "method": "returned for destruction",
            **clinic.witness_fields(),
            "reverse_distributor": {"name": "Return Co", "address": "2 Way", "dea_registration": "RB1234563"},
        },
    )
    assert resp.status_code == 201, resp.json
    assert resp.json["kind"] == "return_to_distributor" and resp.json["delta_mg"] == "-500"
    assert clinic.container(cid)["status"] == "disposed"
    again = clinic.post(
        "/inventory/administrations", {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "1"}
    )
    assert again.status_code == 409


def test_correction_reverses_an_entry_with_a_link(clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    wrong = clinic.post(
        "/inventory/administrations", {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "50"}
    ).json
    resp = clinic.post(
        "/inventory/corrections",
        {
            "location_id": clinic.location_id,
            "corrects_seq": wrong["seq"],
            "reason": "charted on the wrong vial",
            **clinic.witness_fields(),
        },
    )
    assert resp.status_code == 201, resp.json
    assert resp.json["delta_mg"] == "50" and resp.json["corrects_seq"] == wrong["seq"]
    assert clinic.container(cid)["balance_mg"] == "500"
    twice = clinic.post(
        "/inventory/corrections",
        {"location_id": clinic.location_id, "corrects_seq": wrong["seq"], "reason": "again", **clinic.witness_fields()},
    )
    assert twice.status_code == 409 and twice.json["code"] == "already_recorded"


def test_shift_count_opens_discrepancies_and_adjustment_needs_two_signatures(app, clinic, make_user):
    containers = clinic.receive(count=2).json["containers"]
    a, b = containers[0]["id"], containers[1]["id"]
    resp = clinic.post(
        "/inventory/counts",
        {
            "location_id": clinic.location_id,
            "kind": "shift",
            **clinic.witness_fields(),
            "lines": [
                {"container_id": a, "counted_mg": "500", "exact": True},
                {"container_id": b, "counted_mg": "497.5", "exact": False},
            ],
        },
    )
    assert resp.status_code == 201, resp.json
    (disc,) = resp.json["discrepancies"]
    assert disc["container_id"] == b and disc["difference_mg"] == "-2.5" and disc["status"] == "open"
    prescriber_h = bearer(app, make_user("prescriber"))
    unsigned = clinic.post(
        f"/inventory/discrepancies/{disc['id']}/resolve",
        {"action": "adjust", "explanation": "evaporation estimate"},
        headers=prescriber_h,
    )
    assert unsigned.status_code == 422
    signed = clinic.post(
        f"/inventory/discrepancies/{disc['id']}/resolve",
        {"action": "adjust", "explanation": "estimate", **clinic.witness_fields()},
        headers=prescriber_h,
    )
    assert signed.status_code == 200, signed.json
    assert signed.json["status"] == "adjusted"
    assert clinic.container(b)["balance_mg"] == "497.5"
    adjustments = clinic.ledger(kind="adjustment", container_id=b)
    assert [e["delta_mg"] for e in adjustments] == ["-2.5"]


def test_inventory_must_list_every_container(clinic):
    clinic.receive(count=2)
    resp = clinic.post(
        "/inventory/counts",
        {
            "location_id": clinic.location_id,
            "kind": "biennial",
            "business_hours": "close",
            "lines": [],
            **clinic.witness_fields(),
        },
    )
    assert resp.status_code == 422


def test_balances_sum_per_drug(clinic):
    containers = clinic.receive(count=2).json["containers"]
    clinic.post(
        "/inventory/administrations",
        {"container_id": containers[0]["id"], "patient_id": clinic.patient_id, "quantity_mg": "25"},
    )
    resp = clinic.client.get(
        "/api/v1/inventory/balances", query_string={"location_id": clinic.location_id}, headers=clinic.nurse_h
    )
    assert resp.status_code == 200
    (drug,) = resp.json["drugs"]
    assert Decimal(drug["balance_mg"]) == Decimal("975") and drug["containers"] == 2


def test_ledger_pages_with_a_cursor(clinic):
    clinic.receive(count=5)
    first = clinic.client.get(
        "/api/v1/inventory/ledger", headers=clinic.nurse_h, query_string={"location_id": clinic.location_id, "limit": 2}
    ).json
    assert len(first["items"]) == 2 and first["next_cursor"]
    everything = clinic.ledger()
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    assert everything[0]["kind"] == "initial_inventory"


def test_chain_links_every_entry(clinic):
    clinic.receive(count=2)
    entries = clinic.ledger()
    assert entries[0]["prev_hash"] == "0" * 64
    for prev, cur in itertools.pairwise(entries):
        assert cur["prev_hash"] == prev["hash"]


def test_front_desk_cannot_touch_the_ledger(app, clinic, make_user):
    h = bearer(app, make_user("front_desk"))
    assert clinic.client.get("/api/v1/inventory/ledger", headers=h).status_code == 403
    assert clinic.receive().status_code == 201
    assert clinic.post("/inventory/receipts", {}, headers=h).status_code == 403


def test_loss_report_deadlines_and_steps(app, clinic, make_user):
    from sqlalchemy import select

    from clinic.audit.models import AuditEvent
    from clinic.core.time import utcnow
    from clinic.extensions import db
    from clinic.inventory import service

    cid = clinic.receive(count=1).json["containers"][0]["id"]
    entry = clinic.post(
        "/inventory/losses", {"container_id": cid, "quantity_mg": "20", "kind": "loss", "description": "short"}
    ).json
    later = utcnow() + timedelta(days=60)  # the deadlines as the beat task sees them two months on
    reports = clinic.client.get(
        "/api/v1/inventory/loss-reports", query_string={"location_id": clinic.location_id}, headers=clinic.nurse_h
    ).json["items"]
    (report,) = [r for r in reports if r["entry_id"] == entry["id"]]
    assert report["notified_at"] is None
    with app.app_context():
        assert service.flag_overdue_loss_reports(later) >= 2
        db.session.commit()
        assert service.flag_overdue_loss_reports(later) == 0  # never repeated
        tags = set(
            db.session.scalars(
                select(AuditEvent.tag).where(
                    AuditEvent.subject_type == "loss_report", AuditEvent.subject_id == report["id"]
                )
            )
        )
    assert {"inventory:loss_report:notice_overdue", "inventory:loss_report:filing_overdue"} <= tags
    done = clinic.post(f"/inventory/loss-reports/{report['id']}/steps", {"step": "notified"})
    assert done.status_code == 200 and done.json["notified_at"]
    assert clinic.post(f"/inventory/loss-reports/{report['id']}/steps", {"step": "notified"}).status_code == 409


def test_next_inventory_due_follows_the_jurisdiction(app, clinic):
    from tests.clock import today_in

    today = today_in("America/Chicago")  # the location's day: its count was taken today there
    body = clinic.client.get(
        "/api/v1/inventory/balances", query_string={"location_id": clinic.location_id}, headers=clinic.nurse_h
    ).json
    from datetime import date

    due = date.fromisoformat(body["next_inventory_due_on"])
    assert 365 * 2 - 3 <= (due - today).days <= 365 * 2 + 3
    annual = clinic.client.patch(
        f"/api/v1/locations/{clinic.location_id}",
        headers=clinic.admin,
        json={"jurisdiction": {"state": "IA", "inventory_interval_months": 12}},
    )
    assert annual.status_code == 200
    body = clinic.client.get(
        "/api/v1/inventory/balances", query_string={"location_id": clinic.location_id}, headers=clinic.nurse_h
    ).json
    assert 362 <= (date.fromisoformat(body["next_inventory_due_on"]) - today).days <= 368


def test_on_site_destruction_needs_two_witnesses(clinic, make_user):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    one = clinic.post(
        "/inventory/disposals", {"container_id": cid, "method": "chemical digestion", **clinic.witness_fields()}
    )
    assert one.status_code == 422
    assert "second_witness_email" in one.json["errors"]
    same = clinic.post(
        "/inventory/disposals",
        {
            "container_id": cid,
            "method": "chemical digestion",
            **clinic.witness_fields(),
            "second_witness_email": clinic.witness.email,
            "second_witness_password": clinic.witness.password,
        },
    )
    assert same.status_code == 422
    second = make_user("prescriber")
    ok = clinic.post(
        "/inventory/disposals",
        {
            "container_id": cid,
            "method": "chemical digestion",
            **clinic.witness_fields(),
            "second_witness_email": second.email,
            "second_witness_password": second.password,
        },
    )
    assert ok.status_code == 201, ok.json
    assert ok.json["kind"] == "destruction"
    assert {ok.json["witness_id"], ok.json["second_witness_id"]} == {clinic.witness.id, second.id}


def test_a_pattern_of_small_shortages_is_flagged(clinic):
    containers = [c["id"] for c in clinic.receive(count=3).json["containers"]]

    def pattern() -> bool:
        return clinic.client.get(
            "/api/v1/inventory/balances", query_string={"location_id": clinic.location_id}, headers=clinic.nurse_h
        ).json["small_discrepancy_pattern"]

    assert pattern() is False
    for cid in containers:
        resp = clinic.post(
            "/inventory/counts",
            {
                "location_id": clinic.location_id,
                "kind": "shift",
                **clinic.witness_fields(),
                "lines": [{"container_id": cid, "counted_mg": "499.9"}],
            },
        )
        assert resp.status_code == 201
    assert pattern() is True

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


# --- links: every id in an entry exists and agrees ------------------------------------------------


def another_patient(clinic) -> int:
    resp = clinic.post(
        "/patients",
        {
            "first_name": "Other",
            "last_name": "Person",
            "date_of_birth": "1975-05-05",
            "address": "9 Oak St, Springfield IL",
            "timezone": "America/Chicago",
        },
    )
    assert resp.status_code == 201, resp.json
    return resp.json["id"]


def test_an_administration_naming_a_missing_appointment_is_refused(clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    before = len(clinic.ledger())
    resp = clinic.post(
        "/inventory/administrations",
        {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "10", "appointment_id": 987654321},
    )
    assert resp.status_code == 404 and "appointment_id" in resp.json["errors"], resp.json
    assert len(clinic.ledger()) == before


def test_a_waste_naming_a_missing_patient_or_anothers_dose_is_refused(clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    dose = draw(clinic, cid, "40").json
    body = {"container_id": cid, "quantity_mg": "5", "reason": "remainder", **clinic.witness_fields()}
    missing = clinic.post("/inventory/wastes", {**body, "patient_id": 987654321})
    assert missing.status_code == 404 and "patient_id" in missing.json["errors"], missing.json
    other = clinic.post(
        "/inventory/wastes", {**body, "patient_id": another_patient(clinic), "administration_seq": dose["seq"]}
    )
    assert other.status_code == 409 and "administration_seq" in other.json["errors"], other.json
    assert clinic.container(cid)["balance_mg"] == "460"


# --- waste records: mL beside mg, and the dose they belong to (DEA-28, DEA-41) --------------------


def test_a_waste_records_ml_beside_mg_and_its_dose(clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    dose = draw(clinic, cid, "40").json
    resp = clinic.post(
        "/inventory/wastes",
        {"container_id": cid, "quantity_mg": "12.5", "reason": "remainder", **clinic.witness_fields()},
    )
    assert resp.status_code == 201, resp.json
    details = resp.json["details"]
    assert details["quantity_mg"] == "12.5" and details["quantity_ml"] == "0.25" and details["unit"] == "mL"
    assert details["mg_per_unit"] == "50" and details["administration_seq"] == dose["seq"]


def test_a_waste_with_no_dose_that_day_needs_its_dose_or_a_reason(clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    body = {"container_id": cid, "quantity_mg": "5", "reason": "drawn up, not given", **clinic.witness_fields()}
    bare = clinic.post("/inventory/wastes", body)
    assert bare.status_code == 422 and "administration_seq" in bare.json["errors"], bare.json
    ok = clinic.post("/inventory/wastes", {**body, "no_administration_reason": "patient declined before the dose"})
    assert ok.status_code == 201, ok.json
    assert ok.json["details"]["no_administration_reason"] == "patient declined before the dose"


# --- receipts (DEA-23/24) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"supplier_name": "   "}, "supplier_name"),
        ({"supplier_address": " \t\n"}, "supplier_address"),
        ({"supplier_dea_registration": "AB1234564"}, "supplier_dea_registration"),  # check digit is 3
        ({"invoice_number": "  "}, "invoice_number"),
    ],
)
def test_a_receipt_needs_a_real_supplier_record(clinic, override, field):
    before = len(clinic.ledger())
    resp = clinic.receive(**override)
    assert resp.status_code == 422 and field in resp.json["errors"], resp.json
    assert len(clinic.ledger()) == before


def test_a_schedule_ii_receipt_needs_its_form_222_or_csos_number(clinic):
    from tests.inventory.conftest import ndc

    drug = clinic.client.post(
        "/api/v1/drugs",
        headers=clinic.admin,
        json={
            "name": "Fentanyl citrate 50 mcg/mL",
            "ndc": ndc(),
            "schedule": "CII",
            "form": "vial",
            "unit": "mL",
            "mg_per_unit": "0.05",
            "units_per_container": "2",
        },
    ).json
    missing = clinic.receive(drug_id=drug["id"])
    assert missing.status_code == 422 and "order_form_number" in missing.json["errors"], missing.json
    ok = clinic.receive(drug_id=drug["id"], order_form_number="123456789")
    assert ok.status_code == 201, ok.json
    assert ok.json["entries"][0]["details"]["order_form_number"] == "123456789"


def test_a_second_receipt_of_an_invoice_needs_confirmation(clinic):
    from tests.inventory.conftest import dea_number

    supplier = {"supplier_dea_registration": dea_number(), "invoice_number": "INV-77", "lot_number": "LOT-9"}
    assert clinic.receive(**supplier).status_code == 201
    before = len(clinic.ledger())
    again = clinic.receive(**supplier)
    assert again.status_code == 409 and "confirm_repeat_invoice" in again.json["errors"], again.json
    assert "same lot" in again.json["detail"]
    assert len(clinic.ledger()) == before
    confirmed = clinic.receive(**supplier, confirm_repeat_invoice=True)
    assert confirmed.status_code == 201, confirmed.json
    assert confirmed.json["entries"][0]["details"]["repeat_of_seq"] < confirmed.json["entries"][0]["seq"]


# --- a breakage or a spill is witnessed like a waste (DEA-40/42) ----------------------------------


@pytest.mark.parametrize("kind", ["breakage", "spill"])
def test_a_breakage_or_spill_needs_a_witness(clinic, kind):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    body = {"container_id": cid, "quantity_mg": "0.5", "kind": kind, "description": "dropped"}
    bare = clinic.post("/inventory/losses", body)
    assert bare.status_code == 422 and bare.json["code"] == "witness_required", bare.json
    selfsigned = clinic.post("/inventory/losses", {**body, **clinic.witness_fields(clinic.nurse)})
    assert selfsigned.status_code == 422
    assert clinic.container(cid)["balance_mg"] == "500"
    ok = clinic.post("/inventory/losses", {**body, **clinic.witness_fields()})
    assert ok.status_code == 201 and ok.json["witness_id"] == clinic.witness.id, ok.json


def test_a_theft_report_needs_no_witness(clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    resp = clinic.post(
        "/inventory/losses", {"container_id": cid, "quantity_mg": "5", "kind": "theft", "description": "gone"}
    )
    assert resp.status_code == 201 and resp.json["witness_id"] is None


# --- deadlines: business days with holidays; the state board's own deadline ----------------------


def paper_location(clinic, days_ago: int, **jurisdiction) -> tuple[int, int]:
    """A location whose records begin ``days_ago`` (charted late, with a reason)."""
    from tests.inventory.conftest import make_location

    loc = make_location(clinic.client, clinic.admin, **({"jurisdiction": jurisdiction} if jurisdiction else {}))
    site = clinic.client.post(f"/api/v1/locations/{loc}/storage-sites", headers=clinic.admin, json={"name": "S"})
    initial = clinic.post(
        "/inventory/counts",
        {
            "location_id": loc,
            "kind": "initial",
            "business_hours": "opening",
            "lines": [],
            "occurred_at": ago(days=days_ago),
            "late_entry_reason": "records kept on paper until now",
            **clinic.witness_fields(),
        },
    )
    assert initial.status_code == 201, initial.json
    return loc, site.json["id"]


def test_business_days_skip_federal_and_state_holidays():
    from datetime import date

    from clinic.locations.calendar import add_business_days

    # Facts of the calendar, not of the day the suite runs.
    assert add_business_days(date(2026, 12, 24), 1) == date(2026, 12, 28)  # Christmas (Fri), the weekend
    assert add_business_days(date(2026, 1, 16), 1) == date(2026, 1, 20)  # MLK Day on Monday the 19th
    assert add_business_days(date(2026, 2, 11), 1) == date(2026, 2, 12)
    assert add_business_days(date(2026, 2, 11), 1, "IA") == date(2026, 2, 13)  # Iowa keeps Lincoln's birthday


def test_a_theft_found_before_a_monday_holiday_is_noticed_on_tuesday(clinic):
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    import holidays

    from tests.clock import at_local, today_in

    tz = "America/Chicago"
    today = today_in(tz)
    mondays = sorted(
        day
        for year in (today.year - 1, today.year)
        for day in holidays.country_holidays("US", years=year)
        if day.weekday() == 0 and today - timedelta(days=300) <= day <= today - timedelta(days=4)
    )
    holiday = mondays[-1]  # every 300 days hold a Monday federal holiday (MLK, Memorial, Labor Day...)
    friday = holiday - timedelta(days=3)
    days_back = (today - friday).days + 2
    loc, site = paper_location(clinic, days_back)
    cid = clinic.receive(storage_site_id=site, occurred_at=ago(days=days_back - 1), late_entry_reason="paper").json[
        "containers"
    ][0]["id"]
    found = at_local(friday, "15:00", tz).isoformat()
    resp = clinic.post(
        "/inventory/losses",
        {
            "container_id": cid,
            "quantity_mg": "50",
            "kind": "theft",
            "description": "vial missing",
            "occurred_at": found,
            "discovered_at": found,
            "late_entry_reason": "found in the paper log",
        },
    )
    assert resp.status_code == 201, resp.json
    (report,) = [r for r in loss_reports(clinic, loc) if r["entry_id"] == resp.json["id"]]
    from datetime import datetime

    due = datetime.fromisoformat(report["notice_due_at"]).astimezone(ZoneInfo(tz))
    assert due.date() == holiday + timedelta(days=1), (friday, holiday, report)


def loss_reports(clinic, location_id: int) -> list[dict]:
    return clinic.client.get(
        "/api/v1/inventory/loss-reports", query_string={"location_id": location_id}, headers=clinic.nurse_h
    ).json["items"]


def test_a_state_boards_own_deadline_is_a_task_of_its_own(app, clinic):
    from datetime import date, timedelta

    from clinic.core.time import utcnow
    from clinic.extensions import db
    from clinic.inventory import service
    from tests.clock import today_in

    changed = clinic.client.patch(
        f"/api/v1/locations/{clinic.location_id}", headers=clinic.admin, json={"jurisdiction": {"state": "CA"}}
    )
    assert changed.status_code == 200, changed.json
    assert changed.json["jurisdiction"]["board_theft_notice_days"] == 14  # the preset, not set by hand
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    theft = clinic.post(
        "/inventory/losses", {"container_id": cid, "quantity_mg": "5", "kind": "theft", "description": "gone"}
    ).json
    loss = clinic.post(
        "/inventory/losses", {"container_id": cid, "quantity_mg": "5", "kind": "loss", "description": "short"}
    ).json
    reports = {r["entry_id"]: r for r in loss_reports(clinic, clinic.location_id)}
    today = today_in("America/Chicago")
    assert date.fromisoformat(reports[theft["id"]]["board_notice_due_on"]) == today + timedelta(days=14)
    assert date.fromisoformat(reports[loss["id"]]["board_notice_due_on"]) == today + timedelta(days=30)
    with app.app_context():
        service.flag_overdue_loss_reports(utcnow() + timedelta(days=20))
        db.session.commit()
    from sqlalchemy import select

    from clinic.audit.models import AuditEvent

    with app.app_context():
        tags = set(
            db.session.scalars(
                select(AuditEvent.tag).where(
                    AuditEvent.subject_type == "loss_report", AuditEvent.subject_id == reports[theft["id"]]["id"]
                )
            )
        )
    assert "inventory:loss_report:board_notice_overdue" in tags
    done = clinic.post(f"/inventory/loss-reports/{reports[loss['id']]['id']}/steps", {"step": "board_notified"})
    assert done.status_code == 200 and done.json["board_notified_at"], done.json


# --- jurisdiction profiles are presets validated by a schema --------------------------------------


def balances(clinic, location_id: int | None = None):
    return clinic.client.get(
        "/api/v1/inventory/balances",
        query_string={"location_id": location_id or clinic.location_id},
        headers=clinic.nurse_h,
    )


def test_choosing_iowa_sets_its_rules(clinic):
    from datetime import date

    from tests.clock import today_in

    resp = clinic.client.patch(
        f"/api/v1/locations/{clinic.location_id}", headers=clinic.admin, json={"jurisdiction": {"state": "IA"}}
    )
    assert resp.status_code == 200, resp.json
    profile = resp.json["jurisdiction"]
    assert profile["inventory_interval_days"] == 372 and profile["count_mode"] == "exact_liquid_quarters"
    due = date.fromisoformat(balances(clinic).json["next_inventory_due_on"])
    assert (due - today_in("America/Chicago")).days == 372


@pytest.mark.parametrize(
    "bad",
    [
        {"small_discrepancy_pattern": {"count": "x", "days": 30}},
        {"small_discrepancy_pattern": {}},
        {"small_discrepancy_pattern": {"count": 3, "days": 30, "extra": 1}},
        {"state": "ZZ"},
        {"inventory_interval_days": 0},
        {"inventory_interval_months": 25},
        {"count_mode": "guess"},
        {"board_loss_notice_days": "14"},
    ],
)
def test_a_bad_profile_value_is_a_422_and_never_a_later_500(clinic, bad):
    resp = clinic.client.patch(
        f"/api/v1/locations/{clinic.location_id}", headers=clinic.admin, json={"jurisdiction": bad}
    )
    assert resp.status_code == 422, resp.json
    assert resp.mimetype == PROBLEM
    assert balances(clinic).status_code == 200


def test_estimates_are_limited_to_quarter_liquids_in_iowa(clinic):
    clinic.client.patch(
        f"/api/v1/locations/{clinic.location_id}", headers=clinic.admin, json={"jurisdiction": {"state": "IA"}}
    )
    cid = clinic.receive(count=1).json["containers"][0]["id"]

    def estimate(mg: str):
        return clinic.post(
            "/inventory/counts",
            {
                "location_id": clinic.location_id,
                "kind": "shift",
                **clinic.witness_fields(),
                "lines": [{"container_id": cid, "counted_mg": mg, "exact": False}],
            },
        )

    off = estimate("380")
    assert off.status_code == 422 and "lines.0.exact" in off.json["errors"], off.json
    assert estimate("375").status_code == 201  # three quarters of a 500 mg vial


def test_a_schedule_ii_container_is_never_estimated(clinic):
    from tests.inventory.conftest import ndc

    drug = clinic.client.post(
        "/api/v1/drugs",
        headers=clinic.admin,
        json={
            "name": "Fentanyl 50 mcg/mL",
            "ndc": ndc(),
            "schedule": "CII",
            "form": "vial",
            "unit": "mL",
            "mg_per_unit": "0.05",
            "units_per_container": "2",
        },
    ).json
    cid = clinic.receive(drug_id=drug["id"], order_form_number="987654321").json["containers"][0]["id"]
    resp = clinic.post(
        "/inventory/counts",
        {
            "location_id": clinic.location_id,
            "kind": "shift",
            **clinic.witness_fields(),
            "lines": [{"container_id": cid, "counted_mg": "0.1", "exact": False}],
        },
    )
    assert resp.status_code == 422 and "lines.0.exact" in resp.json["errors"], resp.json


def test_an_overdue_inventory_is_flagged_in_the_api_and_on_the_safe_page(app, clinic, login_as):
    loc, _ = paper_location(clinic, 40, inventory_interval_days=30)
    body = balances(clinic, loc).json
    assert body["inventory_overdue"] is True
    assert balances(clinic).json["inventory_overdue"] is False
    browser, _ = login_as("nurse")
    page = browser.get(f"/inventory/?location_id={loc}").get_data(as_text=True)
    assert 'data-testid="inventory-overdue"' in page


# --- destruction and inventories carry the whole record (DEA-17/18/20, DEA-45/46) -----------------


def test_on_site_destruction_takes_a_listed_method_and_keeps_the_form_41_data(clinic, make_user):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    draw(clinic, cid, "100")
    second = make_user("prescriber")
    body = {
        "container_id": cid,
        **clinic.witness_fields(),
        "second_witness_email": second.email,
        "second_witness_password": second.password,
    }
    flushed = clinic.post("/inventory/disposals", {**body, "method": "flushed down the sink"})
    assert flushed.status_code == 422 and "method" in flushed.json["errors"], flushed.json
    assert clinic.container(cid)["status"] == "open"
    resp = clinic.post("/inventory/disposals", {**body, "method": "Chemical digestion", "method_note": "Rx kit lot 44"})
    assert resp.status_code == 201, resp.json
    form = resp.json["details"]["form_41"]
    assert form["method"] == "chemical_digestion" and form["method_note"] == "Rx kit lot 44"
    assert form["registrant"]["dea_registration"] and form["registrant"]["address"]
    (item,) = form["items"]
    assert item["strength"] == "50 mg/mL" and item["form"] == "vial" and item["package_quantity"] == "10 mL"
    assert item["full_packages"] == 0 and item["partial_package_quantity"] == "8 mL"
    assert item["total_destroyed_mg"] == "400" and item["batch_number"]
    assert {w["user_id"] for w in form["witnesses"]} == {clinic.witness.id, second.id}
    assert form["date"] and "Safe A" in form["location_of_destruction"]


def test_an_inventory_snapshots_the_registrant_and_each_drug(clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    resp = clinic.post(
        "/inventory/counts",
        {
            "location_id": clinic.location_id,
            "kind": "biennial",
            "business_hours": "close",
            **clinic.witness_fields(),
            "lines": [{"container_id": cid, "counted_mg": "500"}],
        },
    )
    assert resp.status_code == 201, resp.json
    (entry,) = [e for e in clinic.ledger(kind="count") if e["id"] == resp.json["entry_id"]]
    details = entry["details"]
    assert details["registrant"]["dea_registration"] and details["registrant"]["name"].startswith("Clinic")
    assert details["business_hours"] == "close" and details["taken_by"] and details["witnessed_by"]
    (line,) = details["lines"]
    assert line["drug_name"] == "Ketamine HCl 50 mg/mL" and line["strength"] == "50 mg/mL"
    assert line["form"] == "vial" and line["container_size"] == "10 mL" and line["lot_number"]


# --- the ledger filters by schedule and drug (DEA-09/10) ------------------------------------------


def test_the_ledger_filters_by_schedule_and_drug(clinic, login_as):
    from tests.inventory.conftest import ndc

    other = clinic.client.post(
        "/api/v1/drugs",
        headers=clinic.admin,
        json={
            "name": "Midazolam 5 mg/mL",
            "ndc": ndc(),
            "schedule": "CIV",
            "form": "vial",
            "unit": "mL",
            "mg_per_unit": "5",
            "units_per_container": "2",
        },
    ).json
    clinic.receive(count=2)
    clinic.receive(count=1, drug_id=other["id"])
    ciii = clinic.ledger(schedule="CIII")
    assert len(ciii) == 2 and {e["drug_id"] for e in ciii} == {clinic.drug_id}
    civ = clinic.ledger(schedule="CIV")
    assert [e["drug_id"] for e in civ] == [other["id"]]
    assert len(clinic.ledger(drug_id=other["id"])) == 1
    bad = clinic.client.get("/api/v1/inventory/ledger", query_string={"schedule": "C3"}, headers=clinic.nurse_h)
    assert bad.status_code == 422
    page = clinic.client.get(f"/inventory/ledger?location_id={clinic.location_id}&schedule=CIV", headers=clinic.nurse_h)
    assert page.status_code in (200, 302)


# --- the small-discrepancy pattern counts unexplained shortages and is resolved (DEA-35) ----------


def short_count(clinic, cid: int, mg: str) -> int:
    return count_line(clinic, cid, mg)["id"]


def pattern(clinic) -> dict:
    return balances(clinic).json


def test_explained_shortages_make_no_pattern(app, clinic, make_user):
    prescriber = bearer(app, make_user("prescriber"))
    for cid in [c["id"] for c in clinic.receive(count=3).json["containers"]]:
        disc = short_count(clinic, cid, "499.9")
        resolved = clinic.post(
            f"/inventory/discrepancies/{disc}/resolve",
            {"action": "explain", "explanation": "miscounted: recount matched"},
            headers=prescriber,
        )
        assert resolved.status_code == 200
    assert pattern(clinic)["small_discrepancy_pattern"] is False


def test_a_pattern_raises_an_alert_resolved_with_a_documented_decision(app, clinic, make_user, login_as):
    prescriber = bearer(app, make_user("prescriber"))
    containers = [c["id"] for c in clinic.receive(count=4).json["containers"]]
    for cid in containers[:3]:
        short_count(clinic, cid, "499.9")
    body = pattern(clinic)
    assert body["small_discrepancy_pattern"] is True
    alert = body["discrepancy_alert"]
    assert len(alert["discrepancy_ids"]) == 3 and alert["rule"] == {"count": 3, "days": 30}
    browser, _ = login_as("prescriber")
    assert 'data-testid="pattern-banner"' in browser.get(f"/inventory/?location_id={clinic.location_id}").get_data(
        as_text=True
    )
    path = f"/inventory/discrepancy-alerts/{alert['id']}/resolve"
    assert clinic.post(path, {"decision": "not_significant", "reason": "x"}).status_code == 403  # a nurse
    blank = clinic.post(path, {"decision": "not_significant", "reason": "  "}, headers=prescriber)
    assert blank.status_code == 422
    done = clinic.post(
        path, {"decision": "not_significant", "reason": "scale recalibrated; counts since match"}, headers=prescriber
    )
    assert done.status_code == 200, done.json
    assert done.json["decision"] == "not_significant" and done.json["resolved_by_id"]
    assert clinic.post(path, {"decision": "reported", "reason": "again"}, headers=prescriber).status_code == 409
    assert pattern(clinic)["small_discrepancy_pattern"] is False
    short_count(clinic, containers[3], "499.9")  # one more shortage is not yet a new pattern
    assert pattern(clinic)["small_discrepancy_pattern"] is False


def test_a_prescriber_resolves_the_pattern_alert_on_the_safe_page(clinic, login_as):
    for cid in [c["id"] for c in clinic.receive(count=3).json["containers"]]:
        short_count(clinic, cid, "499.9")
    alert = pattern(clinic)["discrepancy_alert"]
    browser, _ = login_as("prescriber")
    safe = f"/inventory/?location_id={clinic.location_id}"
    token = browser.csrf(safe)
    path = f"/inventory/discrepancy-alerts/{alert['id']}/resolve?location_id={clinic.location_id}"
    blank = browser.post(path, data={"decision": "reported", "reason": "", "csrf_token": token})
    assert blank.status_code == 422 and 'data-testid="pattern-banner"' in blank.get_data(as_text=True)
    done = browser.post(
        path, data={"decision": "reported", "reason": "Form 106 opened for the three", "csrf_token": token}
    )
    assert done.status_code == 302, done.get_data(as_text=True)[-1500:]
    assert pattern(clinic)["small_discrepancy_pattern"] is False


def test_an_administration_refused_at_its_commit_writes_nothing_and_frees_its_key(app, clinic):
    """On PostgreSQL the administration's entry travels with the COMMIT and DEA-06's check refuses it
    there (clinic_refuse): the answer is still the rule's 422, nothing of the work stands, the refusal
    has its access-log row, and the key is free for the corrected request."""
    import uuid

    from sqlalchemy import select

    from clinic.audit.models import AccessEvent
    from clinic.extensions import db

    cid = clinic.receive(count=1).json["containers"][0]["id"]
    before = len(clinic.ledger())
    headers = clinic.nurse_h | {"Idempotency-Key": uuid.uuid4().hex}
    body = {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "10"}
    refused = clinic.post("/inventory/administrations", {**body, "administered_at": ago(hours=1)}, headers)
    assert refused.status_code == 422 and "administered_at" in refused.json["errors"], refused.json
    assert len(clinic.ledger()) == before
    assert clinic.container(cid)["balance_mg"] == "500"
    with app.app_context():
        logged = db.session.scalars(
            select(AccessEvent.status_code).where(AccessEvent.request_id == refused.headers["X-Request-ID"])
        ).all()
    assert logged == [422]
    given = clinic.post("/inventory/administrations", body, headers)
    assert given.status_code == 201, given.json
    assert clinic.container(cid)["balance_mg"] == "490"
    assert len(clinic.ledger()) == before + 1

"""The ledger's staff pages, driven through the forms as a nurse (and a prescriber) would."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.clock import in_years, today_in
from tests.conftest import Client, sign_in

CHICAGO = ZoneInfo("America/Chicago")
LATER = in_years(5).isoformat()  # an expiry date that stays ahead whenever the suite runs


@pytest.fixture
def nurse(app, clinic) -> Client:
    """The clinic's own nurse, signed in through the pages."""
    app.test_client_class = Client
    c = app.test_client()
    sign_in(c, clinic.nurse)
    return c


def submit(client: Client, path: str, data: dict[str, Any], *, page: str | None = None):
    """Post a form the way a browser does: with the CSRF token of the page it came from."""
    return client.post(path, data={**data, "csrf_token": client.csrf(page or path)})


def text(resp) -> str:
    return resp.get_data(as_text=True)


def receive(clinic, count: int = 1, **overrides: Any) -> list[int]:
    resp = clinic.receive(count=count, **overrides)
    assert resp.status_code == 201, resp.json
    return [c["id"] for c in resp.json["containers"]]


class _Markup(HTMLParser):
    """Collects what the accessibility checks need: h1s, labels, fields and alerts."""

    def __init__(self) -> None:
        super().__init__()
        self.h1 = 0
        self.label_for: set[str] = set()
        self.fields: list[dict[str, str | None]] = []
        self.alerts = 0
        self._label_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "h1":
            self.h1 += 1
        if tag == "label":
            self._label_depth += 1
            if a.get("for"):
                self.label_for.add(str(a["for"]))
        if a.get("role") == "alert":
            self.alerts += 1
        if tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "submit"):
            self.fields.append({**a, "_wrapped": "1" if self._label_depth else None})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._label_depth -= 1


def markup(resp) -> _Markup:
    parser = _Markup()
    parser.feed(text(resp))
    return parser


def assert_accessible(resp) -> _Markup:
    page = markup(resp)
    assert page.h1 == 1
    unlabelled = [f for f in page.fields if f["_wrapped"] is None and f.get("id") not in page.label_for]
    assert unlabelled == []
    return page


def field_value(resp, name: str) -> str | None:
    match = re.search(rf'<input[^>]*name="{re.escape(name)}"[^>]*value="([^"]*)"', text(resp))
    return match.group(1) if match else None


# --- the safe ----------------------------------------------------------------------------------


def test_safe_lists_containers_per_site_with_balances_expiry_and_totals(clinic, nurse):
    full, opened = receive(clinic, 2)
    soon = (today_in(CHICAGO.key) + timedelta(days=10)).isoformat()
    (expiring,) = receive(clinic, 1, expires_on=soon, lot_number="SOON1")
    clinic.post(
        "/inventory/administrations", {"container_id": opened, "patient_id": clinic.patient_id, "quantity_mg": "37.5"}
    )
    clinic.post("/inventory/transfers", {"container_id": full, "to_storage_site_id": clinic.cabinet_id})

    resp = nurse.get(f"/inventory/?location_id={clinic.location_id}")
    assert resp.status_code == 200
    assert_accessible(resp)
    html = text(resp)
    cabinet_at = html.index("Cabinet B <small>")
    safe_at = html.index("Safe A <small>")
    row = re.search(rf'<tr data-container="{opened}">(.*?)</tr>', html, re.S)
    assert row and "462.5" in row.group(1) and "9.25 mL" in row.group(1) and ">open<" in row.group(1)
    # the moved container is listed under the cabinet, the others under the safe
    assert cabinet_at < html.index(f'data-container="{full}"') < safe_at
    assert safe_at < html.index(f'data-container="{opened}"')
    expiring_row = re.search(rf'<tr data-container="{expiring}">(.*?)</tr>', html, re.S)
    assert expiring_row and "<mark>" in expiring_row.group(1) and "in 10 days" in expiring_row.group(1)
    assert "<mark>" not in row.group(1)
    # totals per drug: 3 containers, 1462.5 mg, 29.25 mL
    assert "1462.5 mg" in html and "29.25 mL" in html
    assert "pattern-banner" not in html
    # nav entries for the pages
    assert 'href="/inventory/"' in html and 'href="/inventory/ledger"' in html


def test_safe_warns_of_a_pattern_of_small_shortages(clinic, nurse):
    (cid,) = receive(clinic)
    for counted in ("499.9", "499.8", "499.7"):
        resp = clinic.post(
            "/inventory/counts",
            {
                "location_id": clinic.location_id,
                "kind": "shift",
                "lines": [{"container_id": cid, "counted_mg": counted}],
                **clinic.witness_fields(),
            },
        )
        assert resp.status_code == 201, resp.json
    resp = nurse.get(f"/inventory/?location_id={clinic.location_id}")
    html = text(resp)
    assert 'data-testid="pattern-banner"' in html and "DEA-35" in html
    assert "3 open discrepancies" in html


def test_every_form_page_renders_with_labels_for_a_nurse(clinic, nurse):
    receive(clinic)
    for path in ("receive", "waste", "transfer", "loss", "count", "discrepancies", "ledger"):
        resp = nurse.get(f"/inventory/{path}?location_id={clinic.location_id}")
        assert resp.status_code == 200, path
        page = assert_accessible(resp)
        assert page.alerts == 0, path


def test_an_auditor_reads_but_is_offered_no_actions(clinic, login_as):
    receive(clinic)
    auditor, _ = login_as("auditor")
    html = text(auditor.get(f"/inventory/?location_id={clinic.location_id}"))
    assert "Safe A" in html and "/inventory/waste" not in html and "/inventory/receive" not in html
    assert auditor.get(f"/inventory/waste?location_id={clinic.location_id}").status_code == 403


# --- receiving and wasting through the forms ----------------------------------------------------------


def test_receive_through_the_form(clinic, nurse):
    path = f"/inventory/receive?location_id={clinic.location_id}"
    form = {
        "storage_site_id": str(clinic.safe_id),
        "drug_id": str(clinic.drug_id),
        "lot_number": "FORM-LOT-1",
        "expires_on": LATER,
        "container_count": "3",
        "supplier_name": "Acme Wholesale",
        "supplier_address": "1 Supply Rd, Newark NJ",
        "supplier_dea_registration": "AB1234563",
        "invoice_number": "INV-FORM-1",
        "occurred_at": "",
    }
    resp = submit(nurse, path, form)
    assert resp.status_code == 302, text(resp)[-2000:]
    assert resp.location == f"/inventory/?location_id={clinic.location_id}"
    safe = nurse.get(resp.location)
    assert "Received 3 container(s) of lot FORM-LOT-1" in text(safe)
    receipts = [e for e in clinic.ledger(kind="receipt") if e["details"]["lot_number"] == "FORM-LOT-1"]
    assert len(receipts) == 3
    assert {e["delta_mg"] for e in receipts} == {"500"} and receipts[0]["actor_id"] == clinic.nurse.id
    assert receipts[0]["details"]["invoice_number"] == "INV-FORM-1"


def test_receive_reads_a_back_charted_time_in_the_location_zone(clinic, nurse):
    from tests.inventory.conftest import make_location

    # a location whose records start on paper, long before the receipt charted below
    loc = make_location(clinic.client, clinic.admin)
    site = clinic.client.post(f"/api/v1/locations/{loc}/storage-sites", headers=clinic.admin, json={"name": "S"})
    initial = clinic.post(
        "/inventory/counts",
        {
            "location_id": loc,
            "kind": "initial",
            "business_hours": "opening",
            "lines": [],
            "occurred_at": "2024-01-01T00:00:00Z",
            "late_entry_reason": "paper records",
            **clinic.witness_fields(),
        },
    )
    assert initial.status_code == 201, initial.json
    path = f"/inventory/receive?location_id={loc}"
    resp = submit(
        nurse,
        path,
        {
            "late_entry_reason": "from the paper log",
            "storage_site_id": str(site.json["id"]),
            "drug_id": str(clinic.drug_id),
            "lot_number": "BACK-1",
            "expires_on": LATER,
            "container_count": "1",
            "supplier_name": "Acme",
            "supplier_address": "1 Supply Rd",
            "supplier_dea_registration": "AB1234563",
            "invoice_number": "INV-BACK",
            "occurred_at": "2024-01-15T09:30",
        },
    )
    assert resp.status_code == 302, text(resp)[-2000:]
    (entry,) = [e for e in clinic.ledger(kind="receipt", location_id=loc) if e["details"]["lot_number"] == "BACK-1"]
    assert datetime.fromisoformat(entry["occurred_at"]) == datetime(2024, 1, 15, 15, 30, tzinfo=UTC)


def test_receive_with_errors_keeps_the_typed_values(clinic, nurse):
    path = f"/inventory/receive?location_id={clinic.location_id}"
    before = len(clinic.ledger())
    resp = submit(
        nurse,
        path,
        {
            "storage_site_id": str(clinic.safe_id),
            "drug_id": str(clinic.drug_id),
            "lot_number": "KEEP-ME",
            "expires_on": LATER,
            "container_count": "0",
            "supplier_name": "Acme",
            "supplier_address": "1 Supply Rd",
            "supplier_dea_registration": "not-a-dea",
            "invoice_number": "",
        },
    )
    assert resp.status_code == 422
    page = markup(resp)
    assert page.alerts >= 1 and page.h1 == 1
    assert field_value(resp, "lot_number") == "KEEP-ME"
    assert field_value(resp, "supplier_dea_registration") == "not-a-dea"
    html = text(resp)
    assert 'id="supplier_dea_registration-error"' in html and 'id="container_count-error"' in html
    assert 'id="invoice_number-error"' in html
    assert len(clinic.ledger()) == before


def test_witnessed_waste_through_the_form(clinic, nurse):
    (cid,) = receive(clinic)
    path = f"/inventory/waste?location_id={clinic.location_id}"
    assert f'<option value="{cid}"' in text(nurse.get(f"{path}&container_id={cid}"))
    resp = submit(
        nurse,
        path,
        {
            "container_id": str(cid),
            "quantity_mg": "12.5",
            "reason": "remainder of a 37.5 mg dose",
            "no_administration_reason": "drawn up, dose not given",
            "patient_id": "",
            "occurred_at": "",
            **clinic.witness_fields(),
            "witness_totp_code": "",
        },
    )
    assert resp.status_code == 302, text(resp)[-2000:]
    assert "Waste of 12.5 mg from container" in text(nurse.get(resp.location))
    container = clinic.container(cid)
    assert container["balance_mg"] == "487.5" and container["status"] == "open"
    last = clinic.ledger(container_id=cid)[-1]
    assert last["kind"] == "waste" and last["delta_mg"] == "-12.5"
    assert last["witness_id"] == clinic.witness.id and last["actor_id"] == clinic.nurse.id


def test_waste_with_a_wrong_witness_password_writes_nothing(clinic, nurse):
    (cid,) = receive(clinic)
    before = clinic.ledger()
    path = f"/inventory/waste?location_id={clinic.location_id}"
    resp = submit(
        nurse,
        path,
        {
            "container_id": str(cid),
            "quantity_mg": "12.5",
            "reason": "remainder",
            "witness_email": clinic.witness.email,
            "witness_password": "not-the-password",
        },
    )
    assert resp.status_code == 422
    html = text(resp)
    assert "The witness&#39;s credentials are not correct." in html
    assert re.search(r'id="witness_password-error" role="alert"', html)
    assert "Nothing was recorded." in html
    # what was typed comes back, the password never does
    assert field_value(resp, "quantity_mg") == "12.5"
    assert field_value(resp, "witness_email") == clinic.witness.email
    assert "not-the-password" not in html
    assert re.search(rf'<option value="{cid}" selected>', html)
    assert clinic.ledger() == before
    assert clinic.container(cid)["balance_mg"] == "500"


def test_waste_shape_errors_are_shown_by_the_field(clinic, nurse):
    (cid,) = receive(clinic)
    resp = submit(
        nurse,
        f"/inventory/waste?location_id={clinic.location_id}",
        {"container_id": str(cid), "quantity_mg": "abc", "reason": "", **clinic.witness_fields()},
    )
    assert resp.status_code == 422
    html = text(resp)
    assert re.search(r'id="quantity_mg-error" role="alert">Not a number\.', html)
    assert 'id="reason-error"' in html
    assert clinic.container(cid)["balance_mg"] == "500"


def test_waste_beyond_the_balance_is_a_conflict(clinic, nurse):
    (cid,) = receive(clinic)
    resp = submit(
        nurse,
        f"/inventory/waste?location_id={clinic.location_id}",
        {
            "container_id": str(cid),
            "quantity_mg": "500.5",
            "reason": "too much",
            "no_administration_reason": "spare",
            **clinic.witness_fields(),
        },
    )
    assert resp.status_code == 409
    assert "The container holds 500 mg." in text(resp)
    assert clinic.container(cid)["balance_mg"] == "500"


# --- transfer and loss ---------------------------------------------------------------------------


def test_transfer_and_theft_through_the_forms(clinic, nurse):
    (cid,) = receive(clinic)
    resp = submit(
        nurse,
        f"/inventory/transfer?location_id={clinic.location_id}",
        {"container_id": str(cid), "to_storage_site_id": str(clinic.cabinet_id)},
    )
    assert resp.status_code == 302, text(resp)[-2000:]
    assert clinic.container(cid)["storage_site_id"] == clinic.cabinet_id

    resp = submit(
        nurse,
        f"/inventory/loss?location_id={clinic.location_id}",
        {"container_id": str(cid), "kind": "theft", "quantity_mg": "100", "description": "vial missing at count"},
    )
    assert resp.status_code == 302, text(resp)[-2000:]
    assert clinic.container(cid)["balance_mg"] == "400"
    html = text(nurse.get(resp.location))
    assert "Theft of 100 mg" in html and "DEA Form 106 drafts to file" in html


def test_transfer_to_the_same_site_is_refused_by_the_field(clinic, nurse):
    (cid,) = receive(clinic)
    resp = submit(
        nurse,
        f"/inventory/transfer?location_id={clinic.location_id}",
        {"container_id": str(cid), "to_storage_site_id": str(clinic.safe_id)},
    )
    assert resp.status_code == 409
    assert re.search(r'id="to_storage_site_id-error" role="alert">The container is already there', text(resp))


# --- counts and discrepancies -------------------------------------------------------------------------


def test_count_with_a_difference_opens_a_discrepancy_that_a_prescriber_explains(clinic, nurse, login_as):
    kept, short = receive(clinic, 2)
    sheet = f"/inventory/count?location_id={clinic.location_id}"
    page = nurse.get(sheet)
    assert f'id="counted_mg-{short}"' in text(page) and f'id="exact-{short}"' in text(page)
    resp = submit(
        nurse,
        sheet,
        {
            "kind": "shift",
            "business_hours": "",
            f"counted_mg-{kept}": "500",
            f"exact-{kept}": "on",
            f"counted_mg-{short}": "499.5",
            **clinic.witness_fields(),
        },
    )
    assert resp.status_code == 302, text(resp)[-2000:]
    assert resp.location.startswith(f"/inventory/discrepancies?location_id={clinic.location_id}&count_id=")
    result = nurse.get(resp.location)
    html = text(result)
    assert "Shift count recorded; 1 container(s) differ from the books." in html
    assert f"container #{short}" in html and "\u22120.5 mg" in html and f"container #{kept}" not in html
    assert "Resolve discrepancy" not in html  # a nurse may count but not resolve
    match = re.search(r"Discrepancy #(\d+)", html)
    assert match
    disc_id = int(match.group(1))
    entry = clinic.ledger(kind="count")[-1]
    assert entry["witness_id"] == clinic.witness.id
    assert [{k: ln[k] for k in ("container_id", "counted_ug", "exact")} for ln in entry["details"]["lines"]] == [
        {"container_id": kept, "counted_ug": 500000, "exact": True},
        {"container_id": short, "counted_ug": 499500, "exact": False},
    ]

    prescriber, _ = login_as("prescriber")
    queue = f"/inventory/discrepancies?location_id={clinic.location_id}"
    assert f"Resolve discrepancy #{disc_id}" in text(prescriber.get(queue))
    resp = submit(
        prescriber,
        f"/inventory/discrepancies/{disc_id}/resolve?location_id={clinic.location_id}",
        {"action": "explain", "explanation": "Overfill drawn into the syringe dead space", "loss_kind": "loss"},
        page=queue,
    )
    assert resp.status_code == 302, text(resp)[-2000:]
    html = text(prescriber.get(resp.location))
    assert f"Discrepancy #{disc_id} explained." in html and "No open discrepancies." in html
    count_page = text(nurse.get(f"{queue}&count_id={entry['details']['count_id']}"))
    assert "Explained by" in count_page and "Overfill drawn into the syringe dead space" in count_page
    assert clinic.container(short)["balance_mg"] == "500"  # explained: the books stand


def test_adjusting_a_discrepancy_needs_the_witness(clinic, login_as, make_user):
    (cid,) = receive(clinic)
    clinic.post(
        "/inventory/counts",
        {
            "location_id": clinic.location_id,
            "kind": "shift",
            "lines": [{"container_id": cid, "counted_mg": "498"}],
            **clinic.witness_fields(),
        },
    )
    prescriber, _ = login_as("prescriber")
    queue = f"/inventory/discrepancies?location_id={clinic.location_id}"
    disc_id = int(re.search(r"Discrepancy #(\d+)", text(prescriber.get(queue))).group(1))  # type: ignore[union-attr]
    resolve = f"/inventory/discrepancies/{disc_id}/resolve?location_id={clinic.location_id}"
    resp = submit(prescriber, resolve, {"action": "adjust", "explanation": "spilled while drawing"}, page=queue)
    assert resp.status_code == 422
    html = text(resp)
    assert f'id="witness_email-{disc_id}-error"' in html and "<details open>" in html
    assert re.search(rf'id="explanation-{disc_id}"[^>]*>spilled while drawing</textarea>', html)
    assert clinic.container(cid)["balance_mg"] == "500"

    resp = submit(
        prescriber, resolve, {"action": "adjust", "explanation": "spilled", **clinic.witness_fields()}, page=queue
    )
    assert resp.status_code == 302, text(resp)[-2000:]
    assert clinic.container(cid)["balance_mg"] == "498"
    assert clinic.ledger(kind="adjustment")[-1]["witness_id"] == clinic.witness.id


def test_count_errors_are_shown_on_their_lines(clinic, nurse):
    (cid,) = receive(clinic)
    sheet = f"/inventory/count?location_id={clinic.location_id}"
    before = clinic.ledger()
    resp = submit(nurse, sheet, {"kind": "shift", f"counted_mg-{cid}": "lots", **clinic.witness_fields()})
    assert resp.status_code == 422
    html = text(resp)
    assert re.search(rf'id="counted_mg-{cid}-error" role="alert">Not a number\.', html)
    assert 'value="lots"' in html

    resp = submit(nurse, sheet, {"kind": "biennial", f"counted_mg-{cid}": "500", **clinic.witness_fields()})
    assert resp.status_code == 422
    assert 'id="business_hours-error"' in text(resp)
    assert clinic.ledger() == before


def test_a_refused_inventory_keeps_none_of_its_partial_work(clinic, nurse):
    counted, missing = receive(clinic, 2)
    sheet = f"/inventory/count?location_id={clinic.location_id}"
    before = clinic.ledger()
    # the service adds the count, its line and a discrepancy before it finds a container missing
    resp = submit(
        nurse,
        sheet,
        {"kind": "biennial", "business_hours": "close", f"counted_mg-{counted}": "450", **clinic.witness_fields()},
    )
    assert resp.status_code == 422
    html = text(resp)
    assert f"missing [{missing}]" in html and field_value(resp, f"counted_mg-{counted}") == "450"
    assert re.search(r'<option value="biennial" selected>', html)
    assert clinic.ledger() == before
    queue = text(nurse.get(f"/inventory/discrepancies?location_id={clinic.location_id}"))
    assert "No open discrepancies." in queue


# --- the ledger browser -------------------------------------------------------------------------


def test_ledger_shows_entries_in_the_location_zone_with_names_and_hashes(clinic, nurse):
    (cid,) = receive(clinic)
    entries = clinic.ledger()
    resp = nurse.get(f"/inventory/ledger?location_id={clinic.location_id}")
    assert resp.status_code == 200
    assert_accessible(resp)
    html = text(resp)
    for e in entries:
        assert f'data-seq="{e["seq"]}"' in html and f">{e['hash'][:10]}</code>" in html
        local = datetime.fromisoformat(e["occurred_at"]).astimezone(CHICAGO).strftime("%Y-%m-%d %H:%M %Z")
        assert local in html
    receipt = re.search(r'<tr data-seq="2" data-kind="receipt">(.*?)</tr>', html, re.S)
    assert receipt and "+500" in receipt.group(1) and f"#{cid}" in receipt.group(1)
    initial = re.search(r'<tr data-seq="1" data-kind="initial_inventory">(.*?)</tr>', html, re.S)
    assert initial and "witness Test nurse" in initial.group(1)
    assert len(set(re.findall(r"Test nurse \d+", initial.group(1)))) == 2  # the actor and the witness by name


def test_ledger_filters_by_kind_and_pages_by_cursor(clinic, nurse):
    first = receive(clinic, 3)
    clinic.post(
        "/inventory/administrations", {"container_id": first[0], "patient_id": clinic.patient_id, "quantity_mg": "10"}
    )
    base = f"/inventory/ledger?location_id={clinic.location_id}&kind=receipt&limit=2"
    page1 = text(nurse.get(base))
    kinds = re.findall(r'data-kind="(\w+)"', page1)
    assert kinds == ["receipt", "receipt"]
    match = re.search(r'<a rel="next" href="([^"]+)"', page1)
    assert match
    next_url = match.group(1).replace("&amp;", "&")
    assert "cursor=" in next_url and "kind=receipt" in next_url
    page2 = nurse.get(next_url)
    assert page2.status_code == 200
    html2 = text(page2)
    assert re.findall(r'data-kind="(\w+)"', html2) == ["receipt"]
    assert 'rel="next"' not in html2 and "First page" in html2
    seqs = [int(s) for s in re.findall(r'data-seq="(\d+)"', page1 + html2)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3

    by_container = text(nurse.get(f"/inventory/ledger?location_id={clinic.location_id}&container_id={first[0]}"))
    assert re.findall(r'data-kind="(\w+)"', by_container) == ["receipt", "administration"]


def test_ledger_filters_by_local_days(clinic, nurse):
    receive(clinic)
    today = today_in(CHICAGO.key)
    path = f"/inventory/ledger?location_id={clinic.location_id}"
    assert len(re.findall(r"data-seq=", text(nurse.get(f"{path}&since={today}&until={today}")))) == 2
    yesterday = today - timedelta(days=1)
    assert "data-seq=" not in text(nurse.get(f"{path}&until={yesterday}"))
    resp = nurse.get(f"{path}&since=someday")
    assert resp.status_code == 422 and 'id="since-error"' in text(resp)

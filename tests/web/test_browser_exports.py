"""An auditor's export in a real browser (issue 13): choose kind, period, location, profile and
format, see it done with its verification, read the key fingerprint, download the file.

The live server of test_browser.py (``clinic run`` on SQLite); the ledger is written through the API.
"""

from __future__ import annotations

import uuid

import pyotp
import pytest
from playwright.sync_api import Page, expect

from tests.clock import in_years, today_in
from tests.inventory.conftest import dea_number, ndc
from tests.web import test_browser as base
from tests.web.test_browser import LiveServer, assert_accessibility_basics, h1, sign_in
from tests.web.test_browser_visit import _api, add_members

pytestmark = pytest.mark.browser

server = base.server
browser = base.browser
page = base.page
_chromium_present = base._chromium_present

TZ = "America/Denver"


def test_an_auditor_exports_a_dispensing_log(page: Page, server: LiveServer) -> None:
    env = base._server_env(server.instance)
    auditor = base._create_staff(env, "auditor", "Avery Audit")
    witness = base._create_staff(env, "nurse", "Wen Witness", "--license-number", "RN-5150", "--license-type", "RN")
    admin = base._clinic(env, "users", "token", "--email", server.admin.email).strip()
    nurse = base._clinic(env, "users", "token", "--email", server.nurse.email).strip()
    loc = _api(server, admin, "POST", "/locations", {
        "name": "Export Clinic", "address": "9 Ledger Ln", "dea_registration": dea_number(), "timezone": TZ,
    })["id"]  # fmt: skip
    add_members(server, admin, loc, server.nurse, witness, auditor)
    site = _api(server, admin, "POST", f"/locations/{loc}/storage-sites", {"name": "Safe"})["id"]
    drug = _api(server, admin, "POST", "/drugs", {
        "name": "Ketamine HCl 50 mg/mL", "ndc": ndc(), "schedule": "CIII", "form": "vial", "unit": "mL",
        "mg_per_unit": "50", "units_per_container": "10",
    })["id"]  # fmt: skip
    witness_fields = {"witness_email": witness.email, "witness_password": witness.password}
    _api(server, nurse, "POST", "/inventory/counts", {
        "location_id": loc, "kind": "initial", "business_hours": "opening", "lines": [], **witness_fields,
    })  # fmt: skip
    vial = _api(server, nurse, "POST", "/inventory/receipts", {
        "storage_site_id": site, "drug_id": drug, "lot_number": "LX1", "expires_on": in_years(2).isoformat(),
        "container_count": 1, "supplier_name": "Acme", "supplier_address": "1 Supply Rd",
        "supplier_dea_registration": dea_number(), "invoice_number": f"INV-{uuid.uuid4().hex[:6]}",
    })["containers"][0]["id"]  # fmt: skip
    patient = _api(server, nurse, "POST", "/patients", {
        "first_name": "Ola", "last_name": "Export", "date_of_birth": "1975-05-05", "address": "2 Home Rd",
        "timezone": TZ,
    })["id"]  # fmt: skip
    dose = {"container_id": vial, "patient_id": patient, "quantity_mg": "30"}
    _api(server, nurse, "POST", "/inventory/administrations", dose)

    sign_in(page, auditor)
    expect(page).to_have_url(server.url("/login/enrol"))
    secret = page.get_by_test_id("totp-secret").input_value()
    page.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Confirm and sign in").click()
    expect(h1(page)).to_have_text("Today")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Exports").click()
    expect(h1(page)).to_have_text("Exports")
    assert_accessibility_basics(page)
    fingerprint = page.get_by_test_id("key-fingerprint").inner_text()
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0

    day = today_in(TZ).isoformat()
    page.get_by_label("Kind").select_option("dispensing-log")
    page.get_by_label("Location (registrant)").select_option(str(loc))
    page.get_by_label("From (local day)").fill(day)
    page.get_by_label("To (local day, included)").fill(day)
    page.get_by_label("Profile").select_option("dea-inspection")
    page.get_by_label("Format").select_option("csv")
    page.get_by_test_id("export-submit").click()
    expect(page.get_by_role("status")).to_contain_text("is done")
    row = page.get_by_test_id("export-history").locator("tbody tr").first
    expect(row).to_contain_text("dispensing-log")
    expect(row).to_contain_text("1 exported")
    expect(row.locator("[data-testid^='verification-']")).to_contain_text("OK:")
    assert_accessibility_basics(page)
    with page.expect_download() as info:
        row.get_by_role("link", name="Download").click()
    text = info.value.path().read_text(encoding="utf-8")
    assert text.startswith("seq,occurred_at,") and "Ola Export" in text and "2 Home Rd" in text

    # a bad request is a form error, and writes nothing
    page.get_by_label("Purpose").select_option("health_oversight")
    page.get_by_label("From (local day)").fill(day)
    page.get_by_label("To (local day, included)").fill(day)
    page.get_by_test_id("export-submit").click()
    expect(page.get_by_label("Recipient", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("export-history").locator("tbody tr")).to_have_count(1)

"""Reminders in a real browser (issue 12): the front desk sees the bell, works the outbox (retry a
failed reminder, cancel one with a reason), reads a patient's reminders on the chart and opts them
out of a channel; an admin changes a location's rules and reads the previews.

The live server of test_browser.py (``clinic run`` on SQLite); the data is set up through the API
with CLI tokens, and one reminder is made to have failed in the database, as a worker would leave it.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from contextlib import closing
from dataclasses import dataclass
from datetime import timedelta

import pyotp
import pytest
from playwright.sync_api import Page, expect

from tests.clock import MONDAY, next_weekday
from tests.inventory.conftest import dea_number
from tests.web import test_browser as base
from tests.web.test_browser import LiveServer, Staff, assert_accessibility_basics, h1, sign_in
from tests.web.test_browser_visit import ANSWERS, _api, add_members

pytestmark = pytest.mark.browser

server = base.server
browser = base.browser
page = base.page
_chromium_present = base._chromium_present

TZ = "America/New_York"


@dataclass
class Setup:
    location_id: int
    patient_id: int
    failed_id: int
    desk: Staff
    admin: Staff


@pytest.fixture(scope="module")
def setup(server: LiveServer) -> Setup:
    env = base._server_env(server.instance)
    desk = base._create_staff(env, "front_desk", "Dana Desk")
    admin = base._create_staff(env, "admin", "Abe Rules")
    prescriber = base._create_staff(env, "prescriber", "Dr. Pia Rao", "--license-number", "MD-9001")
    token = {a.role: base._clinic(env, "users", "token", "--email", a.email).strip() for a in (admin, desk)}
    nurse = base._clinic(env, "users", "token", "--email", server.nurse.email).strip()
    loc = _api(server, token["admin"], "POST", "/locations", {
        "name": "Reminder Clinic", "address": "3 Bell St", "dea_registration": dea_number(), "timezone": TZ,
    })["id"]  # fmt: skip
    add_members(server, token["admin"], loc, server.nurse, desk, prescriber)
    _api(server, token["admin"], "POST", f"/locations/{loc}/chairs", {"name": "Chair 1"})
    pid = _api(server, token["front_desk"], "POST", "/patients", {
        "first_name": "Sky", "last_name": f"Bell{uuid.uuid4().hex[:4]}", "date_of_birth": "1980-01-01",
        "address": "4 Home St", "timezone": TZ, "email": "sky@patients.test", "phone": "+15555550123",
        "preferred_channel": "email",
    })["id"]  # fmt: skip
    _api(server, nurse, "POST", f"/patients/{pid}/screenings", {"answers": ANSWERS})
    start = next_weekday(MONDAY, TZ, at_least_days=14)
    _api(
        server,
        nurse,
        "POST",
        f"/patients/{pid}/rems-enrollment",
        {"enrolled_on": (start - timedelta(days=30)).isoformat()},
    )
    _api(server, token["front_desk"], "POST", "/series", {
        "patient_id": pid, "protocol": "ketamine-iv-induction", "location_id": loc, "prescriber_id": prescriber.id,
        "start_on": start.isoformat(), "preferred_time": "10:00",
    })  # fmt: skip
    items = _api(server, token["front_desk"], "GET", f"/reminders?patient_id={pid}&status=pending")["items"]
    failed = min(r["id"] for r in items if r["kind"] == "appointment")
    with closing(sqlite3.connect(server.database)) as conn, conn:
        conn.execute(
            "UPDATE reminders SET status = 'failed', attempts = 5, last_error = 'SMTP 550' WHERE id = ?", (failed,)
        )
        conn.execute(
            "INSERT INTO notices (location_id, role, kind, title, body, created_at) "
            "VALUES (?, 'front_desk', 'reminder_failed', ?, 'Retry or cancel it in the outbox.', datetime('now'))",
            (loc, f"Reminder #{failed} could not be delivered"),
        )
    return Setup(loc, pid, failed, desk, admin)


def test_front_desk_works_the_outbox_and_the_patients_reminders(page: Page, server: LiveServer, setup: Setup) -> None:
    sign_in(page, setup.desk)
    expect(h1(page)).to_have_text("Today")
    bell = page.get_by_test_id("bell")
    expect(bell).to_have_attribute("aria-label", re.compile(r"Notices: [1-9]\d* unread"))
    bell.click()
    expect(h1(page)).to_have_text("Notices")
    assert_accessibility_basics(page)
    notice = page.locator("[data-notice]").filter(has_text=f"Reminder #{setup.failed_id}")
    notice.get_by_role("button", name="Mark read").click()
    expect(
        page.locator("[data-notice][data-read='yes']").filter(has_text=f"Reminder #{setup.failed_id}")
    ).to_have_count(1)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Reminders").click()
    page.get_by_label("Location").select_option(str(setup.location_id))
    page.get_by_role("button", name="Show").click()
    expect(h1(page)).to_have_text("Reminders outbox")
    assert_accessibility_basics(page)
    row = page.locator(f"tr[data-reminder='{setup.failed_id}']")
    expect(row).to_contain_text("SMTP 550")
    row.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("status")).to_contain_text(f"Reminder #{setup.failed_id} is back in the outbox.")
    expect(page.locator(f"tr[data-reminder='{setup.failed_id}']")).to_have_count(0)

    page.get_by_label("Status").select_option("pending")
    page.get_by_role("button", name="Show").click()
    row = page.locator(f"tr[data-reminder='{setup.failed_id}']")
    row.get_by_label("Reason").fill("patient asked by phone")
    row.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("status")).to_contain_text(f"Reminder #{setup.failed_id} cancelled.")

    page.goto(f"/patients/{setup.patient_id}")
    section = page.get_by_test_id("chart-reminders")
    table = section.get_by_test_id("patient-reminders")  # loaded into the chart by htmx
    expect(table.locator(f"tr[data-reminder='{setup.failed_id}']")).to_contain_text("patient asked by phone")
    expect(table.locator("tr[data-status='pending']")).to_have_count(
        13
    )  # 6 visits x 24 h + 2 h, completion; 1 cancelled
    section.get_by_label("No e-mail reminders").check()
    section.get_by_role("button", name="Save reminder preferences").click()
    expect(page.get_by_role("status")).to_have_text("Reminder preferences saved.")
    expect(page.get_by_test_id("patient-reminders").locator("tr[data-status='pending']")).to_have_count(0)
    expect(page.get_by_role("main")).to_contain_text("opted out of email")


def test_admin_sets_a_locations_rules_and_reads_the_previews(page: Page, server: LiveServer, setup: Setup) -> None:
    sign_in(page, setup.admin)
    expect(page).to_have_url(server.url("/login/enrol"))
    secret = page.get_by_test_id("totp-secret").input_value()
    page.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Confirm and sign in").click()
    expect(h1(page)).to_have_text("Today")
    page.goto(f"/reminders/settings?location_id={setup.location_id}")
    expect(h1(page)).to_have_text("Reminder rules for Reminder Clinic")
    assert_accessibility_basics(page)
    form = page.get_by_test_id("settings-form")
    visit = form.locator("[data-rule='appointment']")
    expect(visit.get_by_label("Hours before")).to_have_value("24, 2")
    visit.get_by_label("Hours before").fill("48, 3")
    form.get_by_label("From").fill("22:00")
    form.get_by_role("button", name="Save rules").click()
    expect(page.get_by_role("status")).to_have_text("Reminder rules saved.")
    expect(
        page.get_by_test_id("settings-form").locator("[data-rule='appointment']").get_by_label("Hours before")
    ).to_have_value("48, 3")
    preview = page.locator("[data-preview='appointment']")
    preview.locator("summary").click()
    expect(preview).to_contain_text("Subject: Reminder: your visit at Reminder Clinic")
    expect(preview).to_contain_text("arrange a ride home")
    text = preview.inner_text().lower()
    assert "ketamine" not in text and "http" not in text
    # A bad value comes back as a form error, and nothing is saved.
    page.get_by_test_id("settings-form").locator("[data-rule='appointment']").get_by_label("Hours before").fill("soon")
    page.get_by_role("button", name="Save rules").click()
    expect(page.get_by_role("alert")).to_contain_text("appointment.lead_hours")
    page.goto(f"/reminders/settings?location_id={setup.location_id}")
    expect(page.locator("[data-rule='appointment']").get_by_label("Hours before")).to_have_value("48, 3")

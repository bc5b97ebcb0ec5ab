"""Whole dosing visits in a real browser: an esketamine visit and an IV visit from check-in to
discharge through the pages, the witness signing on the dose screen, and the board counting down.

The server runs in real time (``clinic run``, as in test_browser.py), so the visits are
back-charted: booked, checked in and dosed earlier today through the forms' time fields, far
enough back that the observation minimum has passed. A third visit dosed just now is refused
discharge, naming the time left, and counts down on the board.

The clinic's time zone is chosen so that it is around midday there whenever the test runs (an
``Etc/GMT`` zone), and its hours cover every day, so the back-charted visits fit inside them.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, expect

from clinic.fixtures import CLEAR_SCREENING
from tests.inventory.conftest import dea_number, ndc
from tests.web import test_browser as base
from tests.web.test_browser import LiveServer, Staff, assert_accessibility_basics, h1, sign_in

pytestmark = pytest.mark.browser

# The live server, the browser and the Chromium check of test_browser.py, for this module too.
server = base.server
browser = base.browser
_chromium_present = base._chromium_present

ANSWERS = CLEAR_SCREENING


def _midday_zone(now: datetime) -> str:
    """An IANA zone where it is between 12:00 and 13:00 now (Etc/GMT-N is N hours *ahead* of UTC)."""
    offset = 12 - now.hour
    if offset < -12:
        offset += 24
    if offset > 14:
        offset -= 24
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def _floor15(at: datetime) -> datetime:
    return at.replace(minute=at.minute // 15 * 15, second=0, microsecond=0)


@dataclass
class Clinic:
    server: LiveServer
    tz: str
    location_id: int
    tokens: dict[str, str]
    desk: Staff
    prescriber: Staff
    witness: Staff
    devices: list[int]
    vials: list[int]

    def local(self, at: datetime) -> str:
        """A ``datetime-local`` value in the clinic's zone."""
        return at.astimezone(ZoneInfo(self.tz)).strftime("%Y-%m-%dT%H:%M")


def _api(server: LiveServer, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 (the test's own loopback server)
        server.url(f"/api/v1{path}", host="127.0.0.1"),
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as resp:  # noqa: S310
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        exc.close()
        pytest.fail(f"{method} {path} -> {exc.code}: {detail}")


def add_members(server: LiveServer, admin_token: str, location_id: int, *staff: Any) -> None:
    """Staff made with ``clinic users create`` work at no location until an admin adds them (SYS-11)."""
    for person in staff:
        _api(server, admin_token, "PUT", f"/locations/{location_id}/members/{person.id}")


@pytest.fixture(scope="module")
def clinic(server: LiveServer) -> Clinic:
    """A location with chairs, a safe, stock and staff, set up through the API with CLI tokens."""
    env = base._server_env(server.instance)
    desk = base._create_staff(env, "front_desk", "Fern Desk")
    prescriber = base._create_staff(env, "prescriber", "Dr. Omar Reyes", "--license-number", "MD-5501")
    witness = base._create_staff(env, "nurse", "Wren Witness", "--license-number", "RN-7702", "--license-type", "RN")
    tokens = {
        name: base._clinic(env, "users", "token", "--email", account.email).strip()
        for name, account in {"admin": server.admin, "nurse": server.nurse, "desk": desk}.items()
    }
    admin, nurse = tokens["admin"], tokens["nurse"]
    now = datetime.now(UTC)
    tz = _midday_zone(now)
    today = now.astimezone(ZoneInfo(tz)).date()
    location = _api(
        server,
        admin,
        "POST",
        "/locations",
        {"name": "Browser Clinic", "address": "1 Test Way", "dea_registration": dea_number(), "timezone": tz},
    )
    lid = location["id"]
    add_members(server, admin, lid, server.nurse, desk, prescriber, witness)
    for name in ("Chair 1", "Chair 2", "Chair 3"):
        _api(server, admin, "POST", f"/locations/{lid}/chairs", {"name": name})
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    _api(server, admin, "PUT", f"/locations/{lid}/hours", {day: ["06:00", "22:00"] for day in days})
    _api(
        server, admin, "PATCH", f"/locations/{lid}", {"rems_certified_until": (today + timedelta(days=365)).isoformat()}
    )
    safe = _api(server, admin, "POST", f"/locations/{lid}/storage-sites", {"name": "Safe"})
    device = {"name": "Spravato 28 mg device", "form": "nasal_device", "unit": "device", "mg_per_unit": "28"}
    vial = {"name": "Ketamine HCl 10 mg/mL, 20 mL", "form": "vial", "unit": "mL", "mg_per_unit": "10"}
    drugs = [
        _api(server, admin, "POST", "/drugs", {"ndc": ndc(), "schedule": "CIII", **body, "units_per_container": size})[
            "id"
        ]
        for body, size in ((device, "1"), (vial, "20"))
    ]
    # The safe opens hours before the visits back-charted below: nothing is dated before its stock.
    opened = datetime.now(UTC) - timedelta(hours=6)
    initial = {
        "location_id": lid,
        "kind": "initial",
        "business_hours": "opening",
        "lines": [],
        "occurred_at": opened.isoformat(),
    }
    signature = {"witness_email": witness.email, "witness_password": witness.password}
    _api(server, nurse, "POST", "/inventory/counts", {**initial, **signature})
    stock = []
    for drug, count in zip(drugs, (6, 2), strict=True):
        receipt = _api(
            server,
            nurse,
            "POST",
            "/inventory/receipts",
            {
                "storage_site_id": safe["id"],
                "drug_id": drug,
                "lot_number": f"L{uuid.uuid4().hex[:5]}",
                "expires_on": (today + timedelta(days=500)).isoformat(),
                "container_count": count,
                "supplier_name": "Acme Wholesale",
                "supplier_address": "1 Supply Rd",
                "supplier_dea_registration": dea_number(),
                "invoice_number": f"INV-{uuid.uuid4().hex[:5]}",
                "occurred_at": (opened + timedelta(minutes=1)).isoformat(),
            },
        )
        stock.append([c["id"] for c in receipt["containers"]])
    return Clinic(server, tz, lid, tokens, desk, prescriber, witness, stock[0], stock[1])


def book(clinic: Clinic, protocol: str, starts: datetime, *, rems: bool) -> tuple[int, str]:
    """A new patient, screened, weighed yesterday, booked for today at ``starts``: (appointment, name)."""
    server, desk, nurse = clinic.server, clinic.tokens["desk"], clinic.tokens["nurse"]
    last = f"Visit{uuid.uuid4().hex[:4]}"
    patient = _api(server, desk, "POST", "/patients", {
        "first_name": "Robin", "last_name": last, "date_of_birth": "1985-05-05", "address": "2 Home St",
        "timezone": clinic.tz,
    })  # fmt: skip
    pid = patient["id"]
    _api(server, nurse, "POST", f"/patients/{pid}/screenings", {"answers": ANSWERS})
    yesterday = datetime.now(UTC) - timedelta(days=1)
    _api(server, nurse, "POST", f"/patients/{pid}/weights", {"weight_kg": "80", "measured_at": yesterday.isoformat()})
    local = starts.astimezone(ZoneInfo(clinic.tz))
    if rems:
        enrolled = (local.date() - timedelta(days=7)).isoformat()
        _api(server, nurse, "POST", f"/patients/{pid}/rems-enrollment", {"enrolled_on": enrolled})
    series = _api(server, desk, "POST", "/series", {
        "patient_id": pid, "protocol": protocol, "location_id": clinic.location_id,
        "prescriber_id": clinic.prescriber.id, "start_on": local.date().isoformat(),
        "preferred_time": local.strftime("%H:%M"),
    })  # fmt: skip
    return series["appointments"][0]["id"], f"Robin {last}"


@pytest.fixture
def open_as(browser: Browser, server: LiveServer) -> Iterator[Callable[[Staff], Page]]:
    """A signed-in page per person (the front desk, the nurse), each in its own browser context."""
    contexts = []

    def _open(account: Staff) -> Page:
        context = browser.new_context(base_url=server.url(""), viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        sign_in(page, account)
        expect(h1(page)).to_have_text("Today")
        return page

    yield _open
    for context in contexts:
        context.close()


def check_in(page: Page, clinic: Clinic, appt: int, name: str, arrived: datetime, *, devices: bool) -> None:
    """The front desk, from the Today page's arrivals."""
    page.goto(f"/?location_id={clinic.location_id}")
    page.get_by_role("link", name=f"Check in {name}").click()
    expect(page).to_have_url(re.compile(rf"/visits/{appt}#check-in$"))
    form = page.locator("form", has=page.get_by_role("button", name="Check in"))
    form.get_by_label("A responsible adult is taking the patient home").check()
    form.get_by_label("Ride home: who and phone").fill("Sam, 555-0100")
    form.get_by_role("group", name="Is the patient pregnant?").get_by_label("No", exact=True).check()
    if devices:  # SPR-09's preparation, asked for esketamine only
        for question in ("No food in the last 2 hours", "No liquids in the last 30 minutes", "Any nasal", "Counselled"):
            group = form.get_by_role("group", name=re.compile("^" + re.escape(question)))
            group.get_by_label("Yes", exact=True).check()
    form.get_by_label("Arrived at").fill(clinic.local(arrived))
    form.get_by_role("button", name="Check in").click()
    expect(page.get_by_role("status")).to_contain_text("Checked in.")
    expect(page.get_by_test_id("visit-status")).to_have_attribute("data-status", "checked_in")


def vitals(page: Page, appt: int, taken: datetime | None, clinic: Clinic, systolic: str = "124") -> None:
    page.goto(f"/visits/{appt}")
    form = page.locator("form", has=page.get_by_role("button", name="Record vital signs"))
    form.get_by_label("Systolic (mmHg)").fill(systolic)
    form.get_by_label("Diastolic (mmHg)").fill("78")
    form.get_by_label("Heart rate (/min)").fill("72")
    form.get_by_label("SpO2 (%)").fill("98")
    form.get_by_label("Sedation (MOAA/S)").select_option("5")
    form.get_by_label("Dissociation (optional)").select_option("0")
    if taken is not None:
        form.get_by_label("Taken at").fill(clinic.local(taken))
    form.get_by_role("button", name="Record vital signs").click()
    expect(page.get_by_role("status")).to_contain_text("Vital signs recorded")


def discharge(page: Page, appt: int) -> None:
    page.goto(f"/visits/{appt}#discharge")
    form = page.locator("form", has=page.get_by_role("button", name="Discharge"))
    for label in (
        "The ride home is here",
        "Assessed as clinically stable",
        "Sedation has resolved",
        "Dissociation has resolved",
    ):
        form.get_by_label(label).check()
    form.get_by_role("button", name="Discharge").click()


def test_an_esketamine_and_an_iv_visit_from_check_in_to_discharge(
    open_as: Callable[[Staff], Page], clinic: Clinic, server: LiveServer
) -> None:
    now = datetime.now(UTC)
    start_e = _floor15(now - timedelta(minutes=160))
    start_i = _floor15(now - timedelta(minutes=135))
    esketamine, e_name = book(clinic, "esketamine-rems", start_e, rems=True)
    iv, i_name = book(clinic, "ketamine-iv-booster", start_i, rems=False)
    desk, nurse = open_as(clinic.desk), open_as(server.nurse)

    # --- esketamine: check-in, pre-dose vitals, two devices with their times, vitals, discharge ---
    check_in(desk, clinic, esketamine, e_name, start_e, devices=True)
    nurse.goto(f"/visits/{esketamine}")
    expect(nurse.get_by_test_id("gates")).to_contain_text("Record the pre-dose vital signs.")
    vitals(nurse, esketamine, start_e + timedelta(minutes=5), clinic)
    expect(nurse.get_by_test_id("gates-clear")).to_be_visible()
    nurse.goto(f"/visits/{esketamine}")  # from the top of the page, for the keyboard check
    assert_accessibility_basics(nurse)
    dose_form = nurse.locator("form", has=nurse.get_by_role("button", name="Record the dose"))
    first, second = clinic.devices[:2]
    expect(dose_form.locator(f"#device-{first}")).to_be_checked()  # 56 mg: two devices preselected
    expect(dose_form.locator(f"#device-{second}")).to_be_checked()
    expect(dose_form.locator(f"#device-{clinic.devices[2]}")).not_to_be_checked()
    dose_form.get_by_label(f"Time device #{first} was given").fill(clinic.local(start_e + timedelta(minutes=10)))
    dose_form.get_by_label(f"Time device #{second} was given").fill(clinic.local(start_e + timedelta(minutes=15)))
    dose_form.get_by_role("button", name="Record the dose").click()
    expect(nurse.get_by_role("status")).to_contain_text("Dose of 56 mg recorded")
    expect(nurse.get_by_test_id("visit-status")).to_have_attribute("data-status", "observing")
    vitals(nurse, esketamine, start_e + timedelta(minutes=50), clinic, systolic="150")
    row = nurse.get_by_test_id("vitals").locator("tbody tr").nth(1)
    expect(row.locator('td[data-field="systolic"]')).to_have_text("150 HIGH: above 140")  # words, not only colour
    vitals(nurse, esketamine, start_e + timedelta(minutes=130), clinic)
    vitals(nurse, esketamine, None, clinic)
    expect(nurse.get_by_test_id("unmet-clear")).to_be_visible()
    discharge(nurse, esketamine)
    expect(nurse.get_by_test_id("visit-status")).to_have_attribute("data-status", "discharged")
    expect(nurse.get_by_test_id("no-driving")).to_contain_text("until the next day after a restful sleep")
    steps = nurse.get_by_test_id("steps").locator("tbody tr")
    expect(steps).to_have_count(5)

    # --- IV: a vial, 5 mg drawn too many wasted with the witness signing on the dose screen ---
    check_in(desk, clinic, iv, i_name, start_i, devices=False)
    vitals(nurse, iv, start_i + timedelta(minutes=5), clinic)
    dose_form = nurse.locator("form", has=nurse.get_by_role("button", name="Record the dose"))
    vial = clinic.vials[0]
    dose_form.get_by_label("Vial", exact=True).select_option(str(vial))
    expect(dose_form.get_by_label("Dose given (mg)")).to_have_value("40")  # 80 kg x 0.5 mg/kg
    dose_form.get_by_label("Drawn from the vial (mg)").fill("45")
    dose_form.get_by_label("Started at").fill(clinic.local(start_i + timedelta(minutes=10)))
    dose_form.get_by_label("Witness email").fill(clinic.witness.email)
    dose_form.get_by_label("Witness password").fill("not-the-password")
    dose_form.get_by_role("button", name="Record the dose").click()
    expect(nurse.get_by_test_id("form-errors")).to_contain_text("The witness's credentials are not correct.")
    dose_form = nurse.locator("form", has=nurse.get_by_role("button", name="Record the dose"))
    expect(dose_form.get_by_label("Witness password")).to_have_value("")  # never sent back
    expect(dose_form.get_by_label("Drawn from the vial (mg)")).to_have_value("45")  # the rest is kept
    dose_form.get_by_label("Witness password").fill(clinic.witness.password)
    dose_form.get_by_role("button", name="Record the dose").click()
    expect(nurse.get_by_role("status")).to_contain_text("5 mg drawn but not given was wasted, witnessed.")
    expect(nurse.get_by_test_id("visit-status")).to_have_attribute("data-status", "dosed")
    for minutes in (25, 40):
        vitals(nurse, iv, start_i + timedelta(minutes=minutes), clinic)
    end_form = nurse.locator("form", has=nurse.get_by_role("button", name="End the infusion"))
    end_form.get_by_label("Ended at").fill(clinic.local(start_i + timedelta(minutes=50)))
    end_form.get_by_role("button", name="End the infusion").click()
    expect(nurse.get_by_test_id("visit-status")).to_have_attribute("data-status", "observing")
    for minutes in (50, 70):
        vitals(nurse, iv, start_i + timedelta(minutes=minutes), clinic)
    vitals(nurse, iv, None, clinic)
    expect(nurse.get_by_test_id("unmet-now")).to_contain_text(f"Container {vial}: waste the remainder")
    remainder = nurse.locator(f"#remainder-{vial}")
    expect(remainder.get_by_label("Wasted now, witnessed")).to_be_checked()
    remainder.get_by_label("Witness email").fill(clinic.witness.email)
    remainder.get_by_label("Witness password").fill(clinic.witness.password)
    remainder.get_by_role("button", name="Record the remainder").click()
    expect(nurse.get_by_role("status")).to_contain_text(f"Container #{vial}: 155 mg wasted before a witness.")
    discharge(nurse, iv)
    expect(nurse.get_by_test_id("visit-status")).to_have_attribute("data-status", "discharged")
    expect(nurse.get_by_test_id("no-driving")).to_contain_text("for at least 24 hours")
    balance = _api(server, clinic.tokens["nurse"], "GET", f"/inventory/containers/{vial}")
    assert balance["balance_mg"] == "0"


def test_a_visit_dosed_just_now_counts_down_and_cannot_be_discharged(
    open_as: Callable[[Staff], Page], clinic: Clinic, server: LiveServer
) -> None:
    now = datetime.now(UTC)
    appt, name = book(clinic, "esketamine-rems", _floor15(now), rems=True)
    desk, nurse = open_as(clinic.desk), open_as(server.nurse)
    check_in(desk, clinic, appt, name, now - timedelta(minutes=15), devices=True)
    vitals(nurse, appt, now - timedelta(minutes=12), clinic)
    dose_form = nurse.locator("form", has=nurse.get_by_role("button", name="Record the dose"))
    dose_form.get_by_role("button", name="Record the dose").click()  # no times: 5 minutes apart, ending now
    expect(nurse.get_by_role("status")).to_contain_text("Dose of 56 mg recorded")

    discharge(nurse, appt)
    errors = nurse.get_by_test_id("form-errors")
    expect(errors).to_contain_text("Not yet: the patient cannot be discharged.")
    expect(errors.locator('[data-code="observation_time"]')).to_contain_text(re.compile(r"\(1\d\d min left\)"))
    expect(nurse.get_by_test_id("visit-status")).to_have_attribute("data-status", "observing")

    nurse.goto(f"/visits/board?location_id={clinic.location_id}")
    expect(h1(nurse)).to_have_text("Observation board: Browser Clinic")
    row = nurse.locator(f'tr[data-appointment="{appt}"]')
    expect(row).to_contain_text(name)
    expect(row).to_contain_text("40-minute vital signs due in")
    countdown = row.get_by_test_id("countdown")
    served = int(countdown.get_attribute("data-seconds-left") or 0)
    assert 110 * 60 < served <= 115 * 60, served
    shown = countdown.inner_text()
    expect(countdown).not_to_have_text(shown, timeout=5_000)  # the page script ticks it down
    assert _seconds(countdown.inner_text()) < _seconds(shown)
    # The board fetches itself again (every 15 s), with a fresh figure from the server.
    updated = nurse.get_by_test_id("board-updated").inner_text()
    expect(nurse.get_by_test_id("board-updated")).not_to_have_text(updated, timeout=20_000)
    again = int(
        nurse.locator(f'tr[data-appointment="{appt}"]').get_by_test_id("countdown").get_attribute("data-seconds-left")
        or 0
    )
    assert again < served
    assert_accessibility_basics(nurse)


def _seconds(text: str) -> int:
    match = re.match(r"(\d+):(\d\d):(\d\d) left", text)
    assert match, text
    h, m, s = (int(g) for g in match.groups())
    return h * 3600 + m * 60 + s


def test_axe_finds_nothing_serious_on_the_runner_and_the_board(
    open_as: Callable[[Staff], Page], clinic: Clinic, server: LiveServer
) -> None:
    """axe-core's serious and critical findings (axe-playwright-python is a pinned dev dependency: no skip)."""
    from axe_playwright_python import sync_playwright as axe

    appt, _ = book(clinic, "esketamine-rems", _floor15(datetime.now(UTC)), rems=True)
    nurse = open_as(server.nurse)
    for path in (f"/visits/{appt}", f"/visits/board?location_id={clinic.location_id}", "/"):
        nurse.goto(path)
        violations = axe.Axe().run(nurse).response["violations"]
        bad = [(v["id"], v["impact"]) for v in violations if v["impact"] in ("serious", "critical")]
        assert bad == [], (path, bad)

"""Issue 10's acceptance, in a real browser and only through the pages: a new location set up from
nothing (details, profile, safe, chairs, hours, public holidays, a prescriber's hours), stock
received, a course booked for a new patient found with the picker, a return to a reverse
distributor recorded and a ledger entry corrected. Then axe-core over every page, for every role,
on a 1024 px wide (tablet) screen.

One live server and one browser for the module (test_browser.py's fixtures); no API call: the
drug is added to the catalog on its page too. Then the same tasks' pages by keyboard alone.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pyotp
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Locator, Page, expect

from tests.inventory.conftest import dea_number, ndc
from tests.web import test_browser as base
from tests.web.test_browser import LiveServer, Staff, h1

pytestmark = pytest.mark.browser

server = base.server
browser = base.browser
_chromium_present = base._chromium_present

TZ = "America/Chicago"
TABLET = {"width": 1024, "height": 768}


@dataclass
class Team:
    admin: Staff
    nurse: Staff
    witness: Staff
    desk: Staff
    prescriber: Staff
    auditor: Staff
    #: what the journey made, for the accessibility sweep
    made: dict[str, int] = field(default_factory=dict)
    #: the new patient's last name, for the keyboard test's picker
    patient_last_name: str = ""


@pytest.fixture(scope="module")
def team(server: LiveServer) -> Team:
    env = base._server_env(server.instance)
    witness = base._create_staff(env, "nurse", "Wren Witness", "--license-number", "RN-7702", "--license-type", "RN")
    desk = base._create_staff(env, "front_desk", "Fern Desk")
    prescriber = base._create_staff(env, "prescriber", "Dr. Omar Reyes", "--license-number", "MD-5501")
    auditor = base._create_staff(env, "auditor", "Audra Tor")
    return Team(server.admin, server.nurse, witness, desk, prescriber, auditor)


@pytest.fixture(scope="module")
def pages(browser: Browser, server: LiveServer) -> Iterator[dict[str, Page]]:
    """One signed-in tablet-sized page per person, kept for the module."""
    contexts = []
    opened: dict[str, Page] = {}

    def _open(account: Staff) -> Page:
        if account.email in opened:
            return opened[account.email]
        context = browser.new_context(base_url=server.url(""), viewport=TABLET)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        base.sign_in(page, account)
        if page.url.endswith("/login/enrol"):  # admins enrol a second factor on first sign-in
            account.totp_secret = page.get_by_test_id("totp-secret").input_value()
            page.get_by_label("Code").fill(pyotp.TOTP(account.totp_secret).now())
            page.get_by_role("button", name="Confirm and sign in").click()
        elif page.url.endswith("/login/totp"):
            assert account.totp_secret
            page.get_by_label("Code").fill(pyotp.TOTP(account.totp_secret).now())
            page.get_by_role("button", name=re.compile("Sign in|Confirm|Verify")).click()
        expect(h1(page)).to_have_text("Today")
        opened[account.email] = page
        return page

    yield _open  # type: ignore[misc]
    for context in contexts:
        context.close()


def flash(page: Page) -> str:
    status = page.locator(".flash-success")
    expect(status).to_be_visible()
    return status.inner_text()


def sign(page: Page, witness: Staff, *, prefix: str = "Witness") -> None:
    page.get_by_label(f"{prefix} email").fill(witness.email)
    page.get_by_label(f"{prefix} password").fill(witness.password)


def test_a_new_location_from_nothing_to_a_corrected_return(pages, team: Team, server: LiveServer) -> None:
    admin = pages(team.admin)
    # --- the location, from nothing -----------------------------------------------------------
    admin.get_by_role("navigation", name="Main").get_by_role("link", name="Locations").click()
    expect(h1(admin)).to_have_text("Locations")
    dea = dea_number()
    form = admin.locator("form", has=admin.get_by_role("button", name="Create location"))
    form.get_by_label("Name").fill("Riverside Infusions")
    form.get_by_label("DEA registration").fill(dea)
    form.get_by_label("Address").fill("12 River Rd, Des Moines IA")
    form.get_by_label("Time zone").fill(TZ)
    form.get_by_role("button", name="Create location").click()
    expect(h1(admin)).to_have_text("Set up Riverside Infusions")
    location_id = int(re.search(r"/admin/locations/(\d+)", admin.url).group(1))  # type: ignore[union-attr]
    team.made["location"] = location_id

    # --- who works there, ticked on the users page (SYS-11: staff act only where they are members) ---
    admin.goto("/admin/users")
    for person in (team.nurse, team.witness, team.desk, team.prescriber, team.auditor):
        row = admin.get_by_role("row").filter(has_text=person.email)
        row.get_by_label("Riverside Infusions").check()
        row.get_by_role("button", name="Save locations").click()
        assert flash(admin) == "Locations saved."
        expect(
            admin.get_by_role("row").filter(has_text=person.email).get_by_label("Riverside Infusions")
        ).to_be_checked()
    admin.goto(f"/admin/locations/{location_id}")
    expect(h1(admin)).to_have_text("Set up Riverside Infusions")

    profile = admin.locator("form", has=admin.get_by_role("button", name="Save profile"))
    profile.get_by_label("State").select_option("IA")
    profile.get_by_role("button", name="Apply the state's preset").click()
    assert flash(admin) == "Jurisdiction profile saved."
    expect(profile.get_by_label("or every (days)")).to_have_value("372")  # Iowa's preset

    admin.get_by_label("New storage site").fill("Main safe")
    admin.get_by_role("button", name="Add storage site").click()
    assert flash(admin) == "Storage site Main safe added."
    for chair in ("Chair 1", "Chair 2"):
        admin.get_by_label("New chair").fill(chair)
        admin.get_by_role("button", name="Add chair").click()
        assert flash(admin) == f"Chair {chair} added."

    hours = admin.locator("form", has=admin.get_by_role("button", name="Save opening hours"))
    for day in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday"):
        hours.get_by_label(f"{day} opens").fill("08:00")
        hours.get_by_label(f"{day} closes").fill("17:00")
    hours.get_by_role("button", name="Save opening hours").click()
    assert flash(admin) == "Opening hours saved."

    year = datetime.now(UTC).astimezone(ZoneInfo(TZ)).year
    admin.get_by_role("button", name="Add the year's public holidays").click()
    assert flash(admin) == f"Public holidays of {year} added."
    closures = admin.locator("section", has=admin.get_by_role("heading", name="Closures and holidays"))
    expect(closures.get_by_role("row", name=re.compile(f"{year}-07-04"))).to_contain_text("Independence Day")

    roster = admin.locator("form", has=admin.get_by_role("button", name="Save prescriber's hours"))
    roster.get_by_label("Prescriber").select_option(label=team.prescriber.name)
    for day in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday"):
        roster.get_by_label(f"{day} opens").fill("09:00")
        roster.get_by_label(f"{day} closes").fill("16:00")
    roster.get_by_role("button", name="Save prescriber's hours").click()
    assert flash(admin) == "Prescriber's hours on site saved."
    prescribers = admin.locator("section", has=admin.get_by_role("heading", name="Prescribers' hours on site"))
    expect(prescribers.get_by_role("row", name=re.compile(team.prescriber.name))).to_contain_text("09:00\u201316:00")

    details = admin.locator("form", has=admin.get_by_role("button", name="Save details"))
    details.get_by_label("REMS certified until").fill(f"{year + 1}-06-30")
    details.get_by_role("button", name="Save details").click()
    assert flash(admin) == "Details saved."
    expect(details.get_by_label("REMS certified until")).to_have_value(f"{year + 1}-06-30")

    # --- the drug the location will stock, added to the catalog -----------------------------------
    admin.goto("/inventory/drugs")
    expect(h1(admin)).to_have_text("Drug catalog")
    drug_ndc = ndc()
    admin.get_by_label("Name").fill("Ketamine HCl 50 mg/mL, 10 mL")
    admin.get_by_label("NDC").fill(drug_ndc)
    admin.get_by_label("Schedule").select_option("CIII")
    admin.get_by_label("Form").select_option("vial")
    admin.get_by_label("Unit", exact=True).select_option("mL")
    admin.get_by_label("mg per unit").fill("50")
    admin.get_by_label("Units per container").fill("10")
    admin.get_by_role("button", name="Add the drug").click()
    assert flash(admin) == f"Ketamine HCl 50 mg/mL, 10 mL (NDC {drug_ndc}) added to the catalog."
    drug_row = admin.get_by_role("row", name=re.compile(re.escape(drug_ndc)))
    expect(drug_row).to_contain_text("10 mL · 500 mg")
    drug = {"id": int(drug_row.get_attribute("data-drug") or 0)}

    # --- stock: the opening inventory, then a receipt ---------------------------------------------
    nurse = pages(team.nurse)
    nurse.goto(f"/inventory/count?location_id={location_id}")
    nurse.get_by_label("Kind of count").select_option("initial")
    nurse.get_by_label("Taken at").select_option("opening")
    sign(nurse, team.witness)
    nurse.get_by_role("button", name="Record the count").click()
    expect(nurse.locator(".flash-success")).to_be_visible()

    nurse.goto(f"/inventory/receive?location_id={location_id}")
    nurse.get_by_label("Storage site").select_option(label="Main safe")
    nurse.get_by_label("Drug").select_option(str(drug["id"]))
    nurse.get_by_label("Lot number").fill("RIV-1")
    nurse.get_by_label("Expiry date").fill(f"{year + 2}-01-31")
    nurse.get_by_label("Number of containers").fill("2")
    nurse.get_by_label("Supplier name").fill("Acme Wholesale")
    nurse.get_by_label("Supplier DEA registration").fill(dea_number())
    nurse.get_by_label("Supplier address").fill("1 Supply Rd, Newark NJ")
    nurse.get_by_label("Invoice number").fill(f"INV-{uuid.uuid4().hex[:5]}")
    nurse.get_by_role("button", name="Record the receipt").click()
    assert flash(nurse).startswith("Received 2 container(s) of lot RIV-1")

    # --- a new patient, screened, found with the picker and booked ----------------------------------
    desk = pages(team.desk)
    last = f"Lindqvist{uuid.uuid4().hex[:4]}"
    desk.goto("/patients/new")
    desk.get_by_label("First name").fill("Maren")
    desk.get_by_label("Last name").fill(last)
    desk.get_by_label("Date of birth").fill("1979-03-14")
    desk.get_by_label("Time zone").select_option(TZ)
    desk.get_by_label("Address").fill("4 Elm St, Des Moines IA")
    desk.get_by_role("button", name="Add the patient").click()
    patient_id = int(re.search(r"/patients/(\d+)$", desk.url).group(1))  # type: ignore[union-attr]
    team.made["patient"] = patient_id
    team.patient_last_name = last

    # The patients page's search row: buttons level with the fields and no taller than them.
    desk.goto("/patients/")
    field = desk.get_by_role("searchbox", name="Name").bounding_box()
    button = desk.get_by_role("button", name="Search").bounding_box()
    assert field and button
    assert abs((field["y"] + field["height"]) - (button["y"] + button["height"])) <= 2, (field, button)
    assert button["height"] <= field["height"] + 2, (field, button)

    nurse.goto(f"/patients/{patient_id}/screenings/new")
    required = nurse.locator("fieldset", has_text="Required questions").locator("select")
    for i in range(required.count()):
        required.nth(i).select_option("no")
    nurse.get_by_role("button", name="Save the screening").click()
    expect(nurse.get_by_role("main")).to_contain_text("eligible")
    team.made["screening"] = int(re.search(r"/screenings/(\d+)$", nurse.url).group(1))  # type: ignore[union-attr]

    desk.goto("/schedule/book")
    picker = desk.locator("fieldset", has_text="Find the patient")
    picker.get_by_label("Name").press_sequentially(last[:8].lower(), delay=20)
    with desk.expect_response(lambda r: "picker_dob=1979-03-14" in r.url):
        picker.get_by_label("Date of birth").fill("1979-03-14")
    choice = desk.get_by_label("Patient", exact=True)
    expect(choice.locator(f'option[value="{patient_id}"]')).to_have_count(1)
    choice.select_option(str(patient_id))
    picker.get_by_label("Name").press("End")  # another search keeps the chosen patient chosen
    with desk.expect_response(lambda r: "/patients/picker" in r.url):
        picker.get_by_label("Name").press_sequentially(last[8:].lower(), delay=20)
    expect(choice.locator(f'option[value="{patient_id}"]')).to_have_count(1)
    expect(choice).to_have_value(str(patient_id))
    desk.get_by_label("Protocol").select_option("ketamine-iv-induction")
    desk.get_by_label("Location").select_option(str(location_id))
    desk.get_by_label("Prescriber").select_option(label=team.prescriber.name)
    start = datetime.now(UTC).astimezone(ZoneInfo(TZ)).date() + timedelta(days=21)
    desk.get_by_label("Start date").fill(start.isoformat())
    desk.get_by_label("Preferred time").fill("10:00")
    desk.get_by_role("button", name="Preview the course").click()
    desk.get_by_role("button", name=re.compile(r"Book these \d+ visits")).click()
    booked = flash(desk)
    assert re.fullmatch(r"Course booked: \d+ visits\.", booked), booked
    team.made["series"] = int(re.search(r"/schedule/series/(\d+)", desk.url).group(1))  # type: ignore[union-attr]
    with closing(sqlite3.connect(server.database)) as conn:
        (team.made["appointment"],) = conn.execute(
            "SELECT id FROM appointments WHERE series_id = ? ORDER BY seq LIMIT 1", (team.made["series"],)
        ).fetchone()

    # --- a return to the reverse distributor, then its correction from the ledger --------------------
    nurse.goto(f"/inventory/return?location_id={location_id}")
    container = nurse.get_by_label("Container")
    container.select_option(index=1)
    container_id = container.input_value()
    nurse.get_by_label("How it leaves").fill("returned for destruction")
    nurse.get_by_label("Reverse distributor").fill("Returns Inc")
    nurse.get_by_label("Its DEA registration").fill(dea_number())
    nurse.get_by_label("Its address").fill("9 Dock St, Memphis TN")
    sign(nurse, team.witness)
    nurse.get_by_role("button", name="Record the return").click()
    returned = flash(nurse)
    assert returned.startswith(f"Container #{container_id} returned to the reverse distributor")
    seq = int(re.search(r"ledger #(\d+)", returned).group(1))  # type: ignore[union-attr]

    nurse.goto(f"/inventory/ledger?location_id={location_id}")
    nurse.get_by_role("link", name=f"Correct entry {seq}").click()
    expect(h1(nurse)).to_have_text(f"Correct ledger entry #{seq}")
    team.made["correctable"] = seq - 1  # the receipt's other container: shown as refused, still a page
    nurse.get_by_label("Reason").fill("Returned the wrong vial: this one stays in the safe")
    sign(nurse, team.witness)
    nurse.get_by_role("button", name="Record the correction").click()
    assert flash(nurse).startswith(f"Ledger #{seq} corrected by #{seq + 1}")
    row = nurse.locator(f'tr[data-seq="{seq}"]')
    expect(row.get_by_test_id("corrected-by")).to_have_text(f"#{seq + 1}")
    expect(nurse.locator(f'tr[data-seq="{seq + 1}"]').get_by_test_id("corrects")).to_have_text(f"#{seq}")
    nurse.goto(f"/inventory/?location_id={location_id}")
    expect(nurse.get_by_role("main")).to_contain_text(f"#{container_id}")  # back in the safe


# --- the keyboard alone ------------------------------------------------------------------------------

#: the focused element's own ring: Pico's is a faint box-shadow (rgba, 2 px) that fails the 3:1
#: contrast of WCAG 1.4.11; app.css draws a solid outline on :focus-visible
FOCUS_RING = """e => { const s = getComputedStyle(e);
  return {style: s.outlineStyle, width: parseFloat(s.outlineWidth), color: s.outlineColor,
          visible: e.matches(':focus-visible')}; }"""


def _luminance(rgb: tuple[float, float, float]) -> float:
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def assert_focus_ring(target: Locator) -> None:
    """The focused element shows a solid outline of at least 2 px, 3:1 against white."""
    ring = target.evaluate(FOCUS_RING)
    assert ring["visible"] and ring["style"] not in ("none", "hidden") and ring["width"] >= 2, ring
    parts = [float(x) for x in re.findall(r"[\d.]+", ring["color"])]
    assert len(parts) == 3 or (len(parts) == 4 and parts[3] == 1), ring  # opaque
    contrast = 1.05 / (_luminance((parts[0], parts[1], parts[2])) + 0.05)
    assert contrast >= 3, ring


def tab_to(page: Page, target: Locator, *, back: bool = False, limit: int = 80) -> None:
    """Tab (or Shift+Tab) until ``target`` has the focus, as a keyboard user would."""
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if back else "Tab")
        if target.evaluate("e => e === document.activeElement"):
            return
    focused = page.evaluate("document.activeElement && document.activeElement.outerHTML.slice(0, 200)")
    pytest.fail(f"{limit} key presses never reached {target}; the focus is on {focused}")


def test_the_keyboard_alone_signs_in_and_records_a_waste_for_a_patient_found_with_the_picker(
    browser: Browser, server: LiveServer, team: Team
) -> None:
    """No mouse: Tab, Shift+Tab, Enter, arrow keys and typing. Every focus stop shows its ring."""
    if "patient" not in team.made:
        pytest.fail("the journey above must run first (it makes the location, stock and patient)")
    context = browser.new_context(base_url=server.url(""), viewport=TABLET)
    context.set_default_timeout(10_000)
    page = context.new_page()
    keys = page.keyboard
    try:
        page.goto("/login")
        email = page.get_by_label("Email")
        expect(email).to_be_focused()  # autofocus
        skip = page.get_by_role("link", name="Skip to content")
        tab_to(page, skip, back=True)  # the first stop of the page, and on screen once focused
        assert_focus_ring(skip)
        box = skip.bounding_box()
        assert box and box["x"] >= 0 and box["y"] >= 0 and box["width"] > 1, box
        tab_to(page, email)
        assert_focus_ring(email)
        keys.type(team.nurse.email)
        tab_to(page, page.get_by_label("Password"))
        keys.type(team.nurse.password)
        keys.press("Enter")
        expect(h1(page)).to_have_text("Today")

        # The skip link jumps past the menu; Shift+Tab from the content walks back into it.
        keys.press("Tab")
        expect(skip).to_be_focused()
        keys.press("Enter")
        expect(page.locator("main#main")).to_be_focused()
        safe = page.get_by_role("navigation", name="Main").get_by_role("link", name="Safe", exact=True)
        tab_to(page, safe, back=True)
        assert_focus_ring(safe)
        keys.press("Enter")
        expect(h1(page)).to_contain_text("Safe")
        waste = page.get_by_role("navigation", name="Inventory").get_by_role("link", name="Waste", exact=True)
        tab_to(page, waste)
        keys.press("Enter")
        expect(h1(page)).to_have_text("Waste a remainder")
        assert f"location_id={team.made['location']}" in page.url

        container = page.get_by_label("Container")
        tab_to(page, container)
        assert_focus_ring(container)
        keys.press("ArrowDown")  # the first container on hand (the blank choice is first)
        container_id = container.input_value()
        assert container_id, "the arrow key chose no container"
        tab_to(page, page.get_by_label("Amount wasted (mg)"))
        keys.type("1")
        name = page.locator("fieldset.picker").get_by_label("Name")
        tab_to(page, name)
        with page.expect_response(lambda r: "/patients/picker" in r.url and r.status == 200):
            keys.type(team.patient_last_name.lower())
        patient = page.get_by_label("Patient whose dose this is from")
        expect(patient.locator(f'option[value="{team.made["patient"]}"]')).to_have_count(1)
        tab_to(page, patient)
        assert_focus_ring(patient)
        keys.press("ArrowDown")
        expect(patient).to_have_value(str(team.made["patient"]))
        tab_to(page, page.get_by_label("Reason"))
        keys.type("Drawn up for the dose, then dropped on the floor")
        tab_to(page, page.get_by_label("Why no dose"))
        keys.type("Drawn up, the patient declined")
        tab_to(page, page.get_by_label("Witness email"))
        keys.type(team.witness.email)
        tab_to(page, page.get_by_label("Witness password"))
        keys.type(team.witness.password)
        submit = page.get_by_role("button", name="Record the witnessed waste")
        tab_to(page, submit)
        assert_focus_ring(submit)
        keys.press("Enter")
        recorded = flash(page)
        assert recorded.startswith(f"Waste of 1 mg from container #{container_id} recorded"), recorded
    finally:
        context.close()

    with closing(sqlite3.connect(server.database)) as conn:
        row = conn.execute(
            "SELECT container_id, patient_id, delta_ug, actor_id, witness_id FROM ledger_entries "
            "WHERE kind = 'waste' ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert row == (int(container_id), team.made["patient"], -1000, team.nurse.id, team.witness.id)


# --- accessibility: every page, every role ----------------------------------------------------------

PAGES = (
    "/",
    "/account",
    "/protocols",
    "/exports",
    "/admin/users",
    "/admin/locations/",
    "/admin/locations/{location}",
    "/patients/",
    "/patients/new",
    "/patients/{patient}",
    "/patients/{patient}/edit",
    "/patients/{patient}/screenings/new",
    "/patients/{patient}/screenings/{screening}",
    "/patients/{patient}/disclosures",
    "/patients/{patient}/calendar-feeds",
    "/me/calendar-feeds",
    "/schedule/day?location_id={location}",
    "/schedule/week?location_id={location}",
    "/schedule/book?patient_id={patient}",
    "/schedule/series/{series}",
    "/inventory/?location_id={location}",
    "/inventory/receive?location_id={location}",
    "/inventory/waste?location_id={location}",
    "/inventory/transfer?location_id={location}",
    "/inventory/loss?location_id={location}",
    "/inventory/return?location_id={location}",
    "/inventory/destroy?location_id={location}",
    "/inventory/count?location_id={location}",
    "/inventory/discrepancies?location_id={location}",
    "/inventory/ledger?location_id={location}",
    "/inventory/ledger/{correctable}/correct?location_id={location}",
    "/inventory/drugs",
    "/visits/board?location_id={location}",
    "/visits/{appointment}",
    "/reminders/outbox",
    "/reminders/settings?location_id={location}",
    "/reminders/patients/{patient}",
    "/notices",
    "/outcomes/safety-alerts",
    "/outcomes/series/{series}",
    "/outcomes/series/{series}/new",
)


#: a page wider than its 1024 px window, and what sticks out of it (a table scrolling inside its own
#: box is fine, as long as the page itself does not scroll sideways)
TOO_WIDE = """() => { const width = document.scrollingElement.scrollWidth;
  if (width <= window.innerWidth) return [];
  return [`page ${width}px wide`].concat(Array.from(document.querySelectorAll('body *'))
    .filter(e => e.getBoundingClientRect().right > window.innerWidth && !e.parentElement.closest('.overflow-auto'))
    .map(e => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}${e.className ? '.' + e.className : ''}`)
    .slice(0, 5)); }"""


@pytest.mark.parametrize("role", ["admin", "nurse", "front_desk", "prescriber", "auditor"])
def test_axe_finds_nothing_serious_on_any_page_for_any_role(pages, team: Team, role: str) -> None:
    if "series" not in team.made:
        pytest.fail("the journey above must run first (it makes the pages' records)")
    person = {"admin": team.admin, "nurse": team.nurse, "front_desk": team.desk, "prescriber": team.prescriber,
              "auditor": team.auditor}[role]  # fmt: skip
    page = pages(person)
    assert page.evaluate("window.innerWidth") == TABLET["width"]
    axe = Axe()
    seen, problems = 0, []
    for path in PAGES:
        url = path.format(**team.made)
        response = page.goto(url)
        assert response is not None
        if response.status in (403, 404):
            continue
        assert response.status == 200, (url, response.status)
        seen += 1
        bad = [
            (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in axe.run(page).response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        wide = page.evaluate(TOO_WIDE)
        if bad or wide:
            problems.append((url, bad, wide))
    assert problems == []
    assert seen >= 3, f"{role} saw only {seen} pages"


def test_axe_finds_nothing_serious_on_the_sign_in_pages(browser: Browser, server: LiveServer, team: Team) -> None:
    """The pages before a role: sign-in (and its refusal), the second factor, its first enrolment."""
    newcomer = base._create_staff(base._server_env(server.instance), "admin", "Nell Newcomer")
    context = browser.new_context(base_url=server.url(""), viewport=TABLET)
    context.set_default_timeout(10_000)
    page = context.new_page()
    axe = Axe()
    problems = []

    def check(expected_path: str) -> None:
        assert page.url.split("?")[0].endswith(expected_path), (page.url, expected_path)
        bad = [
            (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in axe.run(page).response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        wide = page.evaluate(TOO_WIDE)
        if bad or wide:
            problems.append((page.url, bad, wide))

    try:
        page.goto("/login")
        check("/login")
        base.sign_in(page, newcomer, password="not-the-password")
        expect(page.locator("#login-error")).to_be_visible()
        check("/login")
        base.sign_in(page, newcomer)  # an administrator's first sign-in enrols a second factor
        check("/login/enrol")
        page.context.clear_cookies()
        assert team.admin.totp_secret, "the admin's page (journey above) enrolled the second factor"
        base.sign_in(page, team.admin)
        check("/login/totp")
    finally:
        context.close()
    assert problems == []

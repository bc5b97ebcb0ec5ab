"""The visit's staff pages, driven through the forms on the frozen clinic-day clock (conftest.Ward).

The runner, the board and the Today dashboard show what the server decides (gates, timers,
discharge criteria) in words; every form posts with its CSRF token, as a browser does, and a
refusal re-renders the runner with the reasons and writes nothing.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import Account, Client, sign_in
from tests.inventory.test_pages import assert_accessible, text
from tests.visits.conftest import Ward

FULL_PREPARATION = {"fasted_2h": "yes", "no_liquids_30min": "yes", "nasal_medicines_1h": "yes", "counselled": "yes"}
NORMAL = {"systolic": "122", "diastolic": "78", "heart_rate": "72", "spo2": "98", "sedation": "5", "dissociation": "0"}
DISCHARGE = {
    "ride_confirmed": "yes",
    "clinically_stable": "yes",
    "sedation_resolved": "yes",
    "dissociation_resolved": "yes",
}


class Staff:
    """Signed-in page clients for the ward's people."""

    def __init__(self, app: Any, ward: Ward, make_user: Any) -> None:
        self.app, self.ward = app, ward
        self.nurse = self._client(ward.nurse)
        self.prescriber = self._client(ward.prescriber)
        self.desk_account = make_user("front_desk")
        self.desk = self._client(self.desk_account)

    def _client(self, account: Account) -> Client:
        self.app.test_client_class = Client
        c: Client = self.app.test_client()
        sign_in(c, account)
        return c


@pytest.fixture
def staff(app, ward: Ward, make_user, monkeypatch: pytest.MonkeyPatch) -> Staff:
    # The frozen clock jumps through the morning between page loads; the 15-minute idle sign-out
    # is tests/auth's subject, not this one's.
    monkeypatch.setitem(app.config, "IDLE_TIMEOUT_MINUTES", 24 * 60)
    return Staff(app, ward, make_user)


def runner(appt: int) -> str:
    return f"/visits/{appt}"


def post(client: Client, appt: int, step: str, data: dict[str, Any]):
    return client.post(f"/visits/{appt}/{step}", data={**data, "csrf_token": client.csrf(runner(appt))})


def local(ward: Ward, hh_mm: str) -> str:
    return f"{ward.day.isoformat()}T{hh_mm}"


def status_of(client: Client, appt: int) -> str:
    match = re.search(r'data-status="(\w+)"', text(client.get(runner(appt))))
    assert match
    return match.group(1)


def board_row(client: Client, ward: Ward, appt: int) -> str:
    html = text(client.get(f"/visits/board?location_id={ward.location_id}"))
    row = re.search(rf'<tr data-appointment="{appt}"[^>]*>.*?</tr>', html, re.S)
    assert row, html[-2000:]
    return row.group(0)


def seconds_left(row: str) -> int:
    match = re.search(r'data-seconds-left="(\d+)"', row)
    assert match
    return int(match.group(1))


def check_in_through_the_page(staff: Staff, ward: Ward, appt: int, **extra: str) -> None:
    page = staff.desk.get(runner(appt))
    assert page.status_code == 200
    assert_accessible(page)
    assert "Check in" in text(page)
    resp = post(staff.desk, appt, "check-in", {"ride_home_arranged": "yes", "ride_contact": "Sam, 555-0100", **extra})
    assert resp.status_code == 302, text(resp)[-1500:]
    assert resp.location.endswith(f"/visits/{appt}#check-in")


def test_an_esketamine_visit_from_check_in_to_discharge(staff: Staff, ward: Ward) -> None:
    pid = ward.patient()
    appt = ward.book(pid)[0]
    devices = ward.receive(ward.devices_drug, 4)
    ward.at("08:55")
    check_in_through_the_page(staff, ward, appt, **FULL_PREPARATION)

    page = staff.nurse.get(runner(appt))
    html = text(page)
    assert_accessible(page)
    assert 'data-status="checked_in"' in html
    assert "Record the pre-dose vital signs." in html  # the gate, in words
    assert post(staff.nurse, appt, "vitals", NORMAL).status_code == 302

    ward.at("09:20")
    page = staff.nurse.get(runner(appt))
    html = text(page)
    assert 'data-testid="gates-clear"' in html
    assert "To give: <strong>84 mg</strong>" in html and "3 devices of 28 mg" in html
    ticked = re.findall(r'name="container_ids" value="(\d+)" checked', html)
    assert ticked == [str(d) for d in devices[:3]]  # the order's number of devices, preselected
    times = {f"device_time-{d}": local(ward, t) for d, t in zip(devices[:3], ("09:05", "09:10", "09:15"), strict=True)}
    dosed = staff.nurse.post(
        f"/visits/{appt}/dose",
        data={
            "container_ids": [str(d) for d in devices[:3]],
            "dose_mg": "84",
            **times,
            "csrf_token": staff.nurse.csrf(runner(appt)),
        },
    )
    assert dosed.status_code == 302, text(dosed)[-2000:]
    html = text(staff.nurse.get(runner(appt)))
    assert "Dose of 84 mg recorded" in html
    assert 'data-status="observing"' in html
    assert 'data-seconds-left="6300"' in html and "1:45:00 left" in html  # 09:20 -> 11:05

    # The board counts down on the server's clock, and says what is due in words.
    row = board_row(staff.nurse, ward, appt)
    assert seconds_left(row) == 6300
    assert "40-minute vital signs due in 25 min (at 09:45)" in row and 'class="overdue"' not in row
    ward.later(seconds=30)
    assert seconds_left(board_row(staff.nurse, ward, appt)) == 6270
    ward.at("09:58")
    row = board_row(staff.nurse, ward, appt)
    assert 'class="overdue"' in row and "OVERDUE by 13 min: 40-minute vital signs (due at 09:45)" in row

    assert post(staff.nurse, appt, "vitals", {**NORMAL, "systolic": "150", "diastolic": "92"}).status_code == 302
    html = text(staff.nurse.get(runner(appt)))
    assert "LATE for the 40-minute check" in html
    assert re.search(
        r'class="out-of-range" data-field="systolic"><strong>150</strong> <span class="flag">HIGH: above 140', html
    )
    assert "120-minute vital signs due in" in html

    # 11:00 is T+115: refused, with every unmet criterion in words; nothing changes.
    ward.at("10:55")
    assert post(staff.nurse, appt, "vitals", NORMAL).status_code == 302
    ward.at("11:00")
    refused = post(staff.nurse, appt, "discharge", DISCHARGE)
    assert refused.status_code == 409
    html = text(refused)
    assert "Not yet: the patient cannot be discharged." in html
    unmet = re.search(r'<ul data-testid="unmet">(.*?)</ul>', html, re.S)
    assert unmet and "(5 min left): not before then." in unmet.group(1)
    assert "Vital signs still due at 120 min." in unmet.group(1)
    assert re.search(r'id="ride_confirmed-discharge"[^>]*checked', html)  # what was ticked is kept
    assert status_of(staff.nurse, appt) == "observing"

    ward.at("11:05")
    assert post(staff.nurse, appt, "vitals", NORMAL).status_code == 302
    done = post(staff.nurse, appt, "discharge", DISCHARGE)
    assert done.status_code == 302, text(done)[-2000:]
    html = text(staff.nurse.get(runner(appt)))
    assert 'data-status="discharged"' in html and "Do not drive" in html
    assert "SPRAVATO REMS Patient Monitoring Form" in html and "/monitoring-form" in html
    assert "Record a PHQ-9 or GAD-7 at this visit" in html
    steps = re.findall(r'<tr data-step="(\w+)">', html)
    assert steps == ["checked_in", "dosed", "observing", "ready_for_discharge", "discharged"]
    board = text(staff.nurse.get(f"/visits/board?location_id={ward.location_id}"))
    assert f'data-appointment="{appt}"' not in board  # off the board once discharged


def test_an_iv_visit_with_a_witnessed_waste_on_the_dose_screen(staff: Staff, ward: Ward) -> None:
    appt = ward.book(ward.patient(rems=False), "ketamine-iv-induction")[0]
    (vial,) = ward.receive(ward.vial_drug, 1)
    ward.at("08:55")
    check_in_through_the_page(staff, ward, appt)
    assert "Preparation" not in text(staff.nurse.get(runner(appt)))  # SPR-09 is esketamine's
    assert post(staff.nurse, appt, "vitals", NORMAL).status_code == 302

    ward.at("09:06")
    page = staff.nurse.get(runner(appt))
    html = text(page)
    assert_accessible(page)
    assert "To give: <strong>40 mg</strong>" in html  # 80 kg x 0.5 mg/kg
    assert 'name="witness_email"' in html and 'name="witness_password"' in html  # on the same screen
    body = {
        "container_id": str(vial),
        "dose_mg": "40",
        "drawn_mg": "45",
        "administered_at": local(ward, "09:05"),
        "witness_email": ward.witness.email,
    }
    wrong = post(staff.nurse, appt, "dose", {**body, "witness_password": "not-the-password"})
    assert wrong.status_code == 422
    html = text(wrong)
    assert "The witness&#39;s credentials are not correct." in html
    assert "not-the-password" not in html  # never sent back
    assert re.search(r'name="drawn_mg"[^>]*value="45"', html)  # the rest is kept
    assert status_of(staff.nurse, appt) == "checked_in"
    assert ward.container(vial)["balance_mg"] == "500"

    ok = post(staff.nurse, appt, "dose", {**body, "witness_password": ward.witness.password})
    assert ok.status_code == 302, text(ok)[-2000:]
    html = text(staff.nurse.get(runner(appt)))
    assert "5 mg drawn but not given was wasted, witnessed." in html
    assert 'data-status="dosed"' in html and "End the infusion" in html
    assert ward.container(vial)["balance_mg"] == "455"

    for at in ("09:20", "09:35"):
        ward.at(at)
        assert post(staff.nurse, appt, "vitals", NORMAL).status_code == 302
    ward.at("09:45")
    assert post(staff.nurse, appt, "infusion-end", {}).status_code == 302
    assert post(staff.nurse, appt, "vitals", NORMAL).status_code == 302
    html = text(staff.nurse.get(runner(appt)))
    assert 'data-status="observing"' in html and f"Container #{vial}: 455 mg left" in html
    assert "waste the remainder with a witness or return it" in html  # the discharge preview

    remainder = {"container_id": str(vial), "action": "wasted", "witness_email": ward.witness.email}
    assert (
        post(staff.nurse, appt, "vial-remainder", {**remainder, "witness_password": ward.witness.password}).status_code
        == 302
    )
    assert ward.container(vial)["balance_mg"] == "0"

    ward.at("10:05")
    assert post(staff.nurse, appt, "vitals", NORMAL).status_code == 302
    ward.at("10:45")
    assert post(staff.nurse, appt, "vitals", NORMAL).status_code == 302
    html = text(staff.nurse.get(runner(appt)))
    assert 'data-testid="unmet-clear"' in html
    assert post(staff.nurse, appt, "discharge", DISCHARGE).status_code == 302
    html = text(staff.nurse.get(runner(appt)))
    assert 'data-status="discharged"' in html and "for at least 24 hours" in html  # IVK-09's text
    kinds = [e["kind"] for e in ward.ledger(container_id=vial)]
    assert kinds.count("waste") == 2 and kinds.count("administration") == 1


def test_a_blood_pressure_hold_is_released_by_a_prescriber_on_the_runner(staff: Staff, ward: Ward) -> None:
    appt = ward.book(ward.patient())[0]
    ward.at("09:00")
    check_in_through_the_page(staff, ward, appt, **FULL_PREPARATION)
    assert post(staff.nurse, appt, "vitals", {**NORMAL, "systolic": "152", "diastolic": "96"}).status_code == 302
    html = text(staff.nurse.get(runner(appt)))
    assert "Blood pressure 152/96 is above 140/90: the dose is held" in html
    assert "Release the blood-pressure hold" not in html  # a nurse cannot
    assert (
        staff.nurse.post(
            f"/visits/{appt}/release-hold", data={"reason": "x", "csrf_token": staff.nurse.csrf(runner(appt))}
        ).status_code
        == 403
    )

    desk = text(staff.desk.get(runner(appt)))
    assert (
        "The dose is held for a prescriber&#39;s decision." in desk and "152/96" not in desk
    )  # no vitals for the desk
    assert 'data-testid="vitals"' not in desk

    today = text(staff.prescriber.get(f"/?location_id={ward.location_id}"))
    held = re.search(r'<ul data-testid="held">(.*?)</ul>', today, re.S)
    assert held and "152/96" in held.group(1)

    empty = post(staff.prescriber, appt, "release-hold", {"reason": ""})
    assert empty.status_code == 422 and 'id="reason-hold-error"' in text(empty)
    released = post(
        staff.prescriber, appt, "release-hold", {"reason": "Anxious at arrival; benefit outweighs the risk."}
    )
    assert released.status_code == 302
    html = text(staff.prescriber.get(runner(appt)))
    assert 'data-testid="gates-clear"' in html
    assert "Anxious at arrival" in html


def test_the_dose_is_refused_while_gates_are_open_and_nothing_is_written(staff: Staff, ward: Ward) -> None:
    appt = ward.book(ward.patient())[0]
    devices = ward.receive(ward.devices_drug, 3)
    ward.at("09:00")
    check_in_through_the_page(staff, ward, appt, **{**FULL_PREPARATION, "fasted_2h": "no"})
    html = text(staff.nurse.get(runner(appt)))
    assert "Preparation not met: fasted 2h." in html
    early = staff.nurse.post(
        f"/visits/{appt}/dose",
        data={"container_ids": [str(d) for d in devices], "csrf_token": staff.nurse.csrf(runner(appt))},
    )
    # Without times the devices are charted 5 minutes apart ending now: the first before check-in.
    assert early.status_code == 422
    assert '<a href="#device_times-dose">Device times</a>: Cannot be before check-in' in text(early)
    ward.at("09:20")
    resp = staff.nurse.post(
        f"/visits/{appt}/dose",
        data={"container_ids": [str(d) for d in devices], "csrf_token": staff.nurse.csrf(runner(appt))},
    )
    assert resp.status_code == 409
    html = text(resp)
    assert "Not yet: the dose cannot be given." in html and "Record the pre-dose vital signs." in html
    assert all(ward.container(d)["balance_mg"] == "28" for d in devices)
    no_device = staff.nurse.post(f"/visits/{appt}/dose", data={"csrf_token": staff.nurse.csrf(runner(appt))})
    assert no_device.status_code == 422 and "Tick the devices given." in text(no_device)


def test_today_per_role(app, staff: Staff, ward: Ward, make_user) -> None:
    waiting = ward.book(ward.patient(), at="10:00")[0]
    held = ward.ready_patient()  # 09:00, checked in with normal vitals, no order
    ward.vitals(held, 150, 95)
    ward.at("09:30")
    where = f"/?location_id={ward.location_id}"

    desk = text(staff.desk.get(where))
    assert "<h1>Today</h1>" in desk
    arrivals = re.search(r'<table data-testid="arrivals">(.*?)</table>', desk, re.S)
    assert arrivals and f"/visits/{waiting}#check-in" in arrivals.group(1)
    assert f'href="/visits/{held}"' in re.search(r'<ul data-testid="checked-in">(.*?)</ul>', desk, re.S).group(1)
    assert "150/95" not in desk

    nurse = text(staff.nurse.get(where))
    assert 'data-testid="chairs"' in nurse and 'data-testid="waiting"' in nurse

    prescriber = text(staff.prescriber.get(where))
    assert "Held for your decision (1)" in prescriber

    admin = make_user("admin")
    admin_client = staff._client(admin)
    html = text(admin_client.get(where))
    deadlines = re.search(r'<ul data-testid="deadlines">(.*?)</ul>', html, re.S)
    assert deadlines and "Next full inventory (biennial):" in deadlines.group(1)
    assert "No DEA Form 106 waiting" in deadlines.group(1)

    auditor = staff._client(make_user("auditor"))
    html = text(auditor.get("/"))
    assert "visits are not shown here" in html and 'href="/visits/board"' not in html


def test_the_board_without_a_location_and_with_an_unknown_one(staff: Staff, ward: Ward) -> None:
    assert staff.nurse.get("/visits/board").status_code == 200
    assert staff.nurse.get("/visits/board?location_id=2147483000").status_code == 404
    resp = staff.nurse.get(f"/visits/board?location_id={ward.location_id}")
    assert_accessible(resp)
    html = text(resp)
    assert '<meta http-equiv="refresh" content="15">' in html  # inside <noscript>
    assert 'hx-trigger="every 15s"' in html and "/static/visits.js" in html

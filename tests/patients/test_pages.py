"""The patients' staff pages, driven through the forms: list and search, a new patient, the chart
as a clinician and as the front desk, the screening form and the prescriber's override."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest

from tests.clock import today_in
from tests.inventory.test_pages import assert_accessible, text
from tests.scheduling.conftest import PATIENT_TZ, Desk, make_desk

NO = dict.fromkeys(
    (
        "pregnant",
        "breastfeeding",
        "psychosis_or_mania",
        "uncontrolled_hypertension",
        "cardiovascular_disease",
        "aneurysm_avm_or_ich",
        "substance_use_disorder",
        "prior_ketamine_reaction",
    ),
    "no",
)


@pytest.fixture
def desk(app, client, make_user) -> Desk:
    return make_desk(app, client, make_user, chairs=1)


def post(c, path: str, data: dict, page: str):
    return c.post(path, data={**data, "csrf_token": c.csrf(page)})


def test_list_searches_by_name_and_every_page_is_labelled(desk, login_as):
    one, two = desk.patient(), desk.patient()
    c, _ = login_as("front_desk")
    everyone = c.get("/patients/")
    assert everyone.status_code == 200
    assert_accessible(everyone)
    assert 'href="/patients/"' in text(everyone) and 'href="/schedule/day"' in text(everyone)  # nav
    # The shared test database holds many patients: find ours by name, not on the first page.
    last = desk.client.get(f"/api/v1/patients/{one}", headers=desk.desk).json["last_name"]
    found = c.get("/patients/", query_string={"q": last})
    assert f'data-patient="{one}"' in text(found) and f'data-patient="{two}"' not in text(found)
    assert 'value="' + last + '"' in text(found)  # the search is kept
    assert "eligible" in text(found)
    assert c.get("/patients/", query_string={"date_of_birth": "not-a-date"}).status_code == 422


def test_new_patient_is_created_and_a_refusal_keeps_what_was_typed(login_as):
    c, _ = login_as("front_desk")
    form = c.get("/patients/new")
    assert_accessible(form)
    refused = post(c, "/patients/new", {"first_name": "Robin", "date_of_birth": "1990-01-02"}, "/patients/new")
    assert refused.status_code == 422
    assert_accessible(refused)
    assert 'value="Robin"' in text(refused) and "Last name" in text(refused)

    last = f"Page{uuid.uuid4().hex[:6]}"
    made = post(
        c,
        "/patients/new",
        {
            "first_name": "Robin",
            "last_name": last,
            "date_of_birth": "1990-01-02",
            "address": "2 Oak St",
            "timezone": "America/Chicago",
            "phone": "+1 312 555 0100",
        },
        "/patients/new",
    )
    assert made.status_code == 302 and re.match(r"^/patients/\d+$", made.location)
    chart = c.get(made.location)
    assert_accessible(chart)
    assert last in text(chart) and "not screened" in text(chart)


def test_chart_shows_clinicians_flags_and_weights_but_the_front_desk_only_eligibility(desk, app, login_as):
    pid = desk.patient(screen={"medications": ["Xanax 0.5 mg", "lamotrigine"]})
    weight = desk.client.post(f"/api/v1/patients/{pid}/weights", headers=desk.nurse, json={"weight_kg": "72.4"})
    assert weight.status_code == 201

    nurse, _ = login_as("nurse")
    page = nurse.get(f"/patients/{pid}")
    assert page.status_code == 200
    assert_accessible(page)
    html = text(page)
    assert 'data-flag="CI-10"' in html and "Benzodiazepine (Xanax 0.5 mg)" in html
    assert 'data-flag="CI-13"' in html and "WARN" in html
    assert "72.4 kg" in html and "<svg" in html and "<circle" in html
    assert 'data-eligibility="eligible"' in html
    assert f"enrolled on {desk.enrolled_on}" in html

    front, _ = login_as("front_desk")
    page = front.get(f"/patients/{pid}")
    assert page.status_code == 200
    assert_accessible(page)
    html = text(page)
    assert 'data-eligibility="eligible"' in html and "1985-06-01" in html
    for clinical in ("CI-10", "Benzodiazepine", "Xanax", "lamotrigine", "72.4", "<svg", "Screening history", "Weights"):
        assert clinical not in html, clinical
    # and the screening answers are not theirs to open
    assert front.get(f"/patients/{pid}/screenings/new").status_code == 403


def test_screening_form_shows_the_result_and_warn_flags_explained(desk, login_as):
    pid = desk.patient()
    c, _ = login_as("nurse")
    path = f"/patients/{pid}/screenings/new"
    form = c.get(path)
    assert form.status_code == 200
    page = assert_accessible(form)
    assert len([f for f in page.fields if f.get("name") in NO]) == 8
    assert "Is the patient pregnant?" in text(form)

    # an unanswered required question is refused, and what was typed stays
    partial = {k: v for k, v in NO.items() if k != "pregnant"}
    refused = post(c, f"/patients/{pid}/screenings", {**partial, "medications": "alprazolam"}, path)
    assert refused.status_code == 422
    assert_accessible(refused)
    assert 'href="#pregnant"' in text(refused) and ">alprazolam</textarea>" in text(refused)

    saved = post(
        c,
        f"/patients/{pid}/screenings",
        {**NO, "suicidality": "no", "medications": "alprazolam 1 mg\nLamictal, sertraline"},
        path,
    )
    assert saved.status_code == 302
    result = c.get(saved.location)
    assert result.status_code == 200
    assert_accessible(result)
    html = text(result)
    assert 'data-eligibility="eligible"' in html
    ci10 = re.search(r'data-flag="CI-10">(.*?)</li>', html, re.S)
    ci13 = re.search(r'data-flag="CI-13">(.*?)</li>', html, re.S)
    assert ci10 and "WARN" in ci10.group(1) and "Benzodiazepine (alprazolam 1 mg)" in ci10.group(1)
    assert ci13 and "WARN" in ci13.group(1) and "Lamotrigine or a similar medicine (Lamictal)" in ci13.group(1)
    assert "does not block" in ci10.group(1)
    assert "sertraline" in html and "Not asked" in html


def test_prescriber_overrides_a_review_screening_from_the_chart(desk, login_as):
    pid = desk.patient(screen={"psychosis_or_mania": True})
    nurse, _ = login_as("nurse")
    assert "Override as prescriber" not in text(nurse.get(f"/patients/{pid}"))
    assert "Waiting for a prescriber" in text(nurse.get(f"/patients/{pid}"))

    c, _ = login_as("prescriber")
    chart = c.get(f"/patients/{pid}")
    assert_accessible(chart)
    html = text(chart)
    assert 'data-flag="CI-06"' in html and "OVERRIDE" in html and "Override as prescriber" in html
    action = re.search(r'action="(/patients/\d+/screenings/\d+/override)"', html).group(1)

    short = post(c, action, {"reason": "too short"}, f"/patients/{pid}")
    assert short.status_code == 422
    assert_accessible(short)
    assert ">too short</textarea>" in text(short)

    done = post(c, action, {"reason": "Stable for two years; benefit outweighs the risk."}, f"/patients/{pid}")
    assert done.status_code == 302
    after = text(c.get(f"/patients/{pid}"))
    assert "Overridden" in after and "benefit outweighs the risk" in after and "Override as prescriber" not in after


def test_weight_and_rems_forms_on_the_chart(desk, login_as):
    pid = desk.patient(rems=False)
    c, _ = login_as("nurse")
    chart = f"/patients/{pid}"
    bad = post(c, f"{chart}/weights", {"weight_kg": "900"}, chart)
    assert bad.status_code == 422 and 'value="900"' in text(bad)
    assert post(c, f"{chart}/weights", {"weight_kg": "80.5"}, chart).status_code == 302
    last_week = (today_in(PATIENT_TZ) - timedelta(days=7)).isoformat()
    assert post(c, f"{chart}/rems", {"enrolled_on": last_week}, chart).status_code == 302
    html = text(c.get(chart))
    assert "80.5 kg" in html and f"enrolled on {last_week}" in html

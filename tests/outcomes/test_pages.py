"""The outcome pages through the browser's forms: the trend chart and its table, the PHQ-9 / GAD-7
form with CSRF and its errors, the safety alerts page and the prescriber's acknowledgement."""

from __future__ import annotations

import re

from tests.inventory.test_pages import assert_accessible, text
from tests.outcomes.conftest import Course, ago, phq9, summing_to


def answers(items: list[int]) -> dict[str, str]:
    return {f"item_{n + 1}": str(v) for n, v in enumerate(items)}


def post(c, path: str, data: dict, page: str):
    return c.post(path, data={**data, "csrf_token": c.csrf(page)})


def test_the_course_page_draws_the_trend_with_its_lines_and_a_table(course: Course, login_as):
    base = course.recorded("phq9", summing_to(18), taken_at=ago(days=14))
    course.recorded("phq9", summing_to(11), taken_at=ago(days=7))
    responded = course.recorded("phq9", summing_to(8), taken_at=ago(days=3))
    remitted = course.recorded("phq9", summing_to(3), taken_at=ago(days=1))

    nurse, _ = login_as("nurse")
    page = nurse.get(f"/outcomes/series/{course.series_id}")
    assert page.status_code == 200
    assert_accessible(page)
    html = text(page)
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert 'role="img"' in svg and "<title" in svg and "<desc" in svg
    assert 'class="response-line" data-value="9.0"' in svg  # half the baseline of 18
    assert 'class="remission-line" data-value="5"' in svg
    assert "<polyline" in svg
    # every point is labelled with its total
    labels = re.findall(r'font-weight="600"[^>]*>(\d+)</text>', svg)
    assert labels == ["18", "11", "8", "3"]
    assert re.search(rf'data-score="{responded["id"]}" data-response="1">', svg)
    assert re.search(rf'data-score="{remitted["id"]}" data-response="1" data-remission="1">', svg)
    assert f'data-score="{base["id"]}">' in svg  # the baseline is neither
    # the same figures as text, for screen readers
    row = re.search(rf'<tr data-point="{responded["id"]}">(.*?)</tr>', html, re.S)
    assert row and "-55.6 %" in row.group(1) and "<td>yes</td>" in row.group(1)
    assert "(baseline)" in html
    assert "Record a PHQ-9" in html and "GAD-7" in html


def test_the_patient_chart_links_each_course_to_its_outcomes(course: Course, login_as):
    nurse, _ = login_as("nurse")
    html = text(nurse.get(f"/patients/{course.patient_id}"))
    assert f'href="/outcomes/series/{course.series_id}" data-outcomes="{course.series_id}"' in html
    front, _ = login_as("front_desk")
    assert "data-outcomes" not in text(front.get(f"/patients/{course.patient_id}"))
    assert front.get(f"/outcomes/series/{course.series_id}").status_code == 403


def test_the_phq9_form_has_nine_radio_groups_and_posts_with_csrf(course: Course, login_as):
    nurse, _ = login_as("nurse")
    path = f"/outcomes/series/{course.series_id}/new?instrument=phq9"
    form = nurse.get(path)
    assert form.status_code == 200
    page = assert_accessible(form)
    radios = [f for f in page.fields if f.get("type") == "radio"]
    assert len(radios) == 36 and {f["name"] for f in radios} == {f"item_{n}" for n in range(1, 10)}
    html = text(form)
    assert "Little interest or pleasure in doing things" in html
    assert "Thoughts that you would be better off dead or of hurting yourself in some way" in html
    assert "Not at all" in html and "Nearly every day" in html and "Pfizer" in html

    items = [1, 2, 1, 1, 0, 0, 1, 0, 0]
    data = {"instrument": "phq9", "appointment_id": str(course.appointment_ids[0]), **answers(items)}
    # without the token the form is refused and nothing is written
    assert nurse.post(f"/outcomes/series/{course.series_id}/scores", data=data).status_code == 403
    assert course.trend().json["points"] == []

    done = post(nurse, f"/outcomes/series/{course.series_id}/scores", data, path)
    assert done.status_code == 302 and done.location.endswith(f"/outcomes/series/{course.series_id}?instrument=phq9")
    shown = text(nurse.get(done.location))
    assert "PHQ-9 recorded: total 6 (mild)." in shown
    (point,) = course.trend().json["points"]
    assert point["total"] == 6


def test_a_form_with_an_unanswered_item_comes_back_with_the_error_and_writes_nothing(course: Course, login_as):
    nurse, _ = login_as("nurse")
    path = f"/outcomes/series/{course.series_id}/new?instrument=gad7"
    form = nurse.get(path)
    assert len([f for f in assert_accessible(form).fields if f.get("type") == "radio"]) == 28
    data = {"instrument": "gad7", **answers([2, 2, 2, 2, 2, 2, 2])}
    del data["item_4"]
    back = post(nurse, f"/outcomes/series/{course.series_id}/scores", data, path)
    assert back.status_code == 422
    assert_accessible(back)
    html = text(back)
    assert 'id="item_4-error" role="alert">Not answered.' in html
    assert 'href="#item_4">Item 4</a>' in html
    assert 'name="item_3" value="2" required checked' in html  # what was ticked is kept
    assert course.trend("gad7").json["points"] == []

    future = post(
        nurse,
        f"/outcomes/series/{course.series_id}/scores",
        {**data, "item_4": "1", "taken_at": ago(days=-400)[:16]},  # a year on: past 2100 is refused apart
        path,
    )
    assert future.status_code == 422 and "Cannot be in the future." in text(future)
    odd = post(nurse, f"/outcomes/series/{course.series_id}/scores", {**data, "item_4": "7"}, path)
    assert odd.status_code == 422 and 'id="item_4-error" role="alert">Must be from 0 to 3.' in text(odd)
    assert course.trend("gad7").json["points"] == []


def test_a_correction_from_the_page_replaces_the_score(course: Course, login_as):
    wrong = course.recorded("phq9", phq9(3, 3), taken_at=ago(days=2))
    nurse, _ = login_as("nurse")
    page = text(nurse.get(f"/outcomes/series/{course.series_id}"))
    link = f"/outcomes/series/{course.series_id}/new?instrument=phq9&amp;replaces_id={wrong['id']}"
    assert link in page
    path = link.replace("&amp;", "&")
    assert f'name="replaces_id" value="{wrong["id"]}"' in text(nurse.get(path))
    data = {"instrument": "phq9", "replaces_id": str(wrong["id"]), **answers(phq9(1, 1))}
    assert post(nurse, f"/outcomes/series/{course.series_id}/scores", data, path).status_code == 302
    (point,) = course.trend().json["points"]
    assert point["total"] == 2 and point["taken_at"] == wrong["taken_at"]
    assert f"replaced by #{point['score_id']}" in text(nurse.get(f"/outcomes/series/{course.series_id}"))


def test_item9_from_the_form_opens_an_alert_a_prescriber_acknowledges_on_the_alerts_page(course: Course, login_as):
    nurse, _ = login_as("nurse")
    path = f"/outcomes/series/{course.series_id}/new"
    data = {"instrument": "phq9", **answers(phq9(1, 1, 0, 0, 0, 0, 0, 0, 2))}
    done = post(nurse, f"/outcomes/series/{course.series_id}/scores", data, path)
    assert done.status_code == 302
    assert "a safety alert is open for a prescriber today" in text(nurse.get(done.location))
    (alert,) = [a for a in course.alerts().json["items"] if a["patient_id"] == course.patient_id]
    score_id = alert["score_id"]

    alerts_path = f"/outcomes/safety-alerts?location_id={course.desk.location_id}"
    seen_by_nurse = text(nurse.get(alerts_path))
    assert f'data-alert="{score_id}"' in seen_by_nurse and "Waiting for a prescriber" in seen_by_nurse
    assert "More than half the days (2)" in seen_by_nurse
    assert post(nurse, f"/outcomes/{score_id}/acknowledge", {"note": "seen"}, alerts_path).status_code == 403

    prescriber, _ = login_as("prescriber")
    page = prescriber.get(alerts_path)
    assert page.status_code == 200
    assert_accessible(page)
    form = {"note": "   ", "location_id": str(course.desk.location_id)}
    blank = post(prescriber, f"/outcomes/{score_id}/acknowledge", form, alerts_path)
    assert blank.status_code == 422 and f'id="note-{score_id}-error"' in text(blank)
    form["note"] = "Assessed by phone: passive thoughts, no plan. Safety plan and crisis line given."
    done = post(prescriber, f"/outcomes/{score_id}/acknowledge", form, alerts_path)
    assert done.status_code == 302 and done.location.endswith(alerts_path)
    after = text(prescriber.get(done.location))
    assert f"Safety alert on score #{score_id} acknowledged." in after
    assert f'data-alert="{score_id}"' not in after
    assert "Safety alerts" in after  # the nav item


def test_front_desk_and_auditors_get_no_outcome_pages(course: Course, login_as):
    for role in ("front_desk", "auditor"):
        c, _ = login_as(role)
        assert c.get("/outcomes/safety-alerts").status_code == 403
        assert c.get(f"/outcomes/series/{course.series_id}/new").status_code == 403

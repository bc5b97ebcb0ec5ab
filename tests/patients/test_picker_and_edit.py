"""The patient picker (search by name and date of birth) and the edit page with its history."""

from __future__ import annotations

import uuid

from tests.inventory.test_pages import assert_accessible, submit, text


def _patient(c, **extra) -> tuple[int, str]:
    last = f"Quill{uuid.uuid4().hex[:6]}"
    page = "/patients/new"
    body = {"first_name": "Ada", "last_name": last, "date_of_birth": "1971-04-05", "address": "1 Elm St",
            "timezone": "America/Chicago", **extra}  # fmt: skip
    resp = submit(c, page, body)
    assert resp.status_code == 302, text(resp)[-1500:]
    return int(resp.location.rstrip("/").split("/")[-1]), last


def test_picker_finds_by_name_and_date_of_birth(login_as):
    c, _ = login_as("front_desk")
    pid, last = _patient(c)
    hit = c.get("/patients/picker", query_string={"picker_q": last.lower(), "field": "patient_id"})
    assert hit.status_code == 200
    assert f'<option value="{pid}">{last}, Ada · born 1971-04-05 · #{pid}</option>' in text(hit)
    by_both = text(c.get("/patients/picker", query_string={"picker_q": last, "picker_dob": "1971-04-05"}))
    assert f'value="{pid}"' in by_both
    wrong_dob = text(c.get("/patients/picker", query_string={"picker_q": last, "picker_dob": "1971-04-06"}))
    assert f'value="{pid}"' not in wrong_dob and "No patient matches" in wrong_dob
    # The booking wizard offers the picker, with the named patient already chosen.
    book = c.get("/schedule/book", query_string={"patient_id": pid})
    assert_accessible(book)
    assert f'<option value="{pid}" selected>' in text(book) and 'hx-get="/patients/picker' in text(book)


def test_picker_is_closed_to_roles_that_may_not_see_patients(login_as):
    auditor, _ = login_as("auditor")
    assert auditor.get("/patients/picker", query_string={"picker_q": "a"}).status_code == 403


def test_edit_saves_through_the_api_rules_and_shows_the_history(app, login_as):
    c, _ = login_as("front_desk")
    pid, last = _patient(c)
    page = f"/patients/{pid}/edit"
    form = c.get(page)
    assert form.status_code == 200
    assert_accessible(form)
    assert f'value="{last}"' in text(form)
    body = {"first_name": "Ada", "last_name": last, "date_of_birth": "1971-04-05", "address": "2 Oak Ave",
            "timezone": "America/Chicago", "phone": "+1 312 555 0100", "preferred_channel": "sms"}  # fmt: skip
    bad = submit(c, page, {**body, "phone": "call me"})
    assert bad.status_code == 422 and 'id="phone-error"' in text(bad)
    resp = submit(c, page, body)
    assert resp.status_code == 302, text(resp)[-1500:]
    history = text(c.get(page))
    assert "changed: address, phone, preferred channel" in history and "created" in history
    # SMS needs a phone: clearing it is refused, nothing changes.
    cleared = submit(c, page, {**body, "phone": ""})
    assert cleared.status_code == 422
    assert "+1 312 555 0100" in text(c.get(page))


def test_edit_is_refused_to_auditors(login_as):
    desk, _ = login_as("front_desk")
    pid, _ = _patient(desk)
    auditor, _ = login_as("auditor")
    assert auditor.get(f"/patients/{pid}/edit").status_code == 403

"""Rules no path to a booked or moved visit may sidestep (issue 9): the screening review (CI-22),
flag levels judged at the booking location, the location's REMS certification (SPR-03), and the
course's rules on reschedule (IVK-07). Each failed before its fix."""

from __future__ import annotations

from datetime import UTC, timedelta

from sqlalchemy import select

from clinic.core.time import utcnow
from tests.conftest import sign_in
from tests.inventory.conftest import make_location
from tests.patients.conftest import answers as questionnaire
from tests.scheduling.conftest import local

NOTE = "Reviewed the records with the patient; the answer holds."


def screen(desk, pid, location_id=None, **yes):
    answers = questionnaire(**yes)
    body = {"answers": answers, **({"location_id": location_id} if location_id else {})}
    resp = desk.client.post(f"/api/v1/patients/{pid}/screenings", headers=desk.nurse, json=body)
    assert resp.status_code == 201, resp.json
    return resp.json


# --- CI-22: a screening that clears a hard stop waits for a prescriber ---------------------------


def test_a_rescreen_that_clears_a_hard_flag_waits_for_a_prescribers_review(app, desk, make_user):
    pid = desk.patient(screen={"aneurysm_avm_or_ich": True})
    assert desk.book(pid, "ketamine-iv-induction").json["code"] == "patient_ineligible"
    cleared = screen(desk, pid)  # every answer "no": before the fix, bookable at once
    assert (cleared["eligibility"], cleared["review_status"], cleared["review_cleared"]) == (
        "eligible",
        "pending",
        ["CI-03"],
    )
    refused = desk.book(pid, "ketamine-iv-induction")
    assert (refused.status_code, refused.json["code"]) == (409, "screening_review_pending")
    review = f"/api/v1/patients/{pid}/screenings/{cleared['id']}/review"
    assert (
        desk.client.post(review, headers=desk.nurse, json={"decision": "approved", "reason": NOTE}).status_code == 403
    )
    rejected = desk.client.post(review, headers=desk.prescriber_h, json={"decision": "rejected", "reason": NOTE})
    assert rejected.json["review_status"] == "rejected"
    assert desk.book(pid, "ketamine-iv-induction").json["code"] == "patient_ineligible"  # the earlier flag stands
    again = screen(desk, pid)  # compared with the screening in force, not the rejected one
    assert again["review_status"] == "pending"

    # the prescriber approves on the patient's chart
    from tests.conftest import Client

    app.test_client_class = Client
    page = app.test_client()
    sign_in(page, desk.prescriber)
    chart = page.get(f"/patients/{pid}").get_data(as_text=True)
    assert 'data-review="pending"' in chart and "CI-03" in chart
    resp = page.post(
        f"/patients/{pid}/screenings/{again['id']}/review",
        data={"decision": "approved", "reason": NOTE, "csrf_token": page.csrf(f"/patients/{pid}")},
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)[-400:]
    assert desk.book(pid, "ketamine-iv-induction").status_code == 201


def test_flag_levels_are_judged_at_the_booking_location(desk):
    lenient = make_location(desk.client, desk.admin, jurisdiction={"screening_levels": {"CI-03": "WARN"}})
    pid = desk.patient(screen=None)
    at_lenient = screen(desk, pid, location_id=lenient, aneurysm_avm_or_ich=True)
    assert at_lenient["eligibility"] == "eligible"  # WARN where it was screened
    refused = desk.book(pid, "ketamine-iv-induction")  # HARD (the default) where it is booked
    assert (refused.status_code, refused.json["code"]) == (409, "patient_ineligible")
    assert [f["code"] for f in refused.json["errors"]["flags"]] == ["CI-03"]


def test_a_reschedule_checks_the_screening_again(desk):
    pid = desk.patient()
    series = desk.book(pid, "ketamine-iv-induction").json
    screen(desk, pid, psychosis_or_mania=True)  # OVERRIDE: not bookable until a prescriber decides
    second = series["appointments"][1]
    moved = desk.client.post(
        f"/api/v1/appointments/{second['id']}/reschedule",
        headers=desk.desk,
        json={"starts_at": (local(second["starts_at"]) + timedelta(hours=2)).astimezone(UTC).isoformat()},
    )
    assert (moved.status_code, moved.json["code"]) == (409, "screening_needs_review")


# --- SPR-03: the location's REMS certification ---------------------------------------------------


def certify(desk, until):
    resp = desk.client.patch(
        f"/api/v1/locations/{desk.location_id}",
        headers=desk.admin,
        json={"rems_certified_until": until.isoformat() if until else None},
    )
    assert resp.status_code == 200, resp.json


def test_esketamine_needs_a_certified_location_for_the_whole_course(desk):
    pid = desk.patient()
    for until, words in (
        (None, "Never certified"),
        (desk.start - timedelta(days=1), "lapsed"),
        (desk.start + timedelta(days=10), "visits 5, 6, 7, 8, 9, 10, 11, 12 fall after it"),
    ):
        certify(desk, until)
        resp = desk.book(pid)
        assert resp.status_code == 422, resp.json
        assert words in resp.json["errors"]["location_id"][0], resp.json
    assert desk.book(pid, "ketamine-iv-induction").status_code == 201  # ketamine needs no REMS

    certify(desk, desk.start + timedelta(days=400))
    series = desk.book(desk.patient()).json
    assert series["warnings"] == []
    certify(desk, desk.start + timedelta(days=20))  # shortened after booking: the course warns
    warned = desk.client.get(f"/api/v1/series/{series['id']}", headers=desk.desk).json["warnings"]
    assert [a["seq"] for a in warned[0]["appointments"]] == [7, 8, 9, 10, 11, 12]  # day 21 on


# --- IVK-07: a reschedule keeps the course's rules ----------------------------------------------


def move(desk, appt_id, at, headers=None, **extra):
    return desk.client.post(
        f"/api/v1/appointments/{appt_id}/reschedule",
        headers=headers or desk.desk,
        json={"starts_at": at.astimezone(UTC).isoformat(), **extra},
    )


def test_a_reschedule_keeps_the_course_rules_or_takes_a_prescribers_override(app, desk):
    every_day = {day: ["08:00", "18:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    assert (
        desk.client.put(f"/api/v1/locations/{desk.location_id}/hours", headers=desk.admin, json=every_day).status_code
        == 200
    )
    appts = desk.book(desk.patient(), "ketamine-iv-induction").json["appointments"]  # Mon/Wed/Fri x 2, at most 3 a week
    fourth, last = appts[3], appts[5]

    sunday = local(appts[2]["starts_at"]) + timedelta(days=2)  # the first week's Sunday: its 4th visit
    refused = move(desk, fourth["id"], sunday)
    assert refused.status_code == 422 and "at most 3" in refused.json["errors"]["starts_at"][0], refused.json

    too_late = local(last["starts_at"]) + timedelta(days=14)  # past 2 weeks + 1 of slack
    refused = move(desk, last["id"], too_late)
    assert refused.status_code == 422 and "after the course's last day" in refused.json["errors"]["starts_at"][0]

    yesterday = (utcnow() - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    assert move(desk, last["id"], yesterday).status_code == 422

    reason = {"override_reason": "Patient travels next week; benefit of finishing outweighs the gap."}
    assert move(desk, last["id"], too_late, **reason).status_code == 403  # front desk cannot override
    allowed = move(desk, last["id"], too_late, headers=desk.prescriber_h, **reason)
    assert allowed.status_code == 200, allowed.json
    assert move(desk, last["id"], yesterday, headers=desk.prescriber_h, **reason).status_code == 422  # never the past

    from clinic.audit.models import AuditEvent
    from clinic.extensions import db

    with app.app_context():
        row = db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.tag == "scheduling:session:reschedule", AuditEvent.subject_id == last["id"])
            .order_by(AuditEvent.id.desc())
        ).first()
        assert row.data["override_reason"] == reason["override_reason"]


def test_a_prescriber_sets_the_booster_interval_and_the_next_booster_is_planned(desk, app, make_user):
    series = desk.book(desk.patient(), "ketamine-iv-booster").json
    path = f"/api/v1/series/{series['id']}/booster-interval"
    assert desk.client.put(path, headers=desk.nurse, json={"interval_days": 28}).status_code == 403
    assert desk.client.put(path, headers=desk.prescriber_h, json={"interval_days": 3}).status_code == 422
    resp = desk.client.put(path, headers=desk.prescriber_h, json={"interval_days": 28})
    assert resp.status_code == 200, resp.json
    last_day = local(series["appointments"][-1]["starts_at"], desk.tz).date()
    assert resp.json["next_booster_on"] == (last_day + timedelta(days=28)).isoformat()


def test_a_blank_override_reason_does_not_break_the_course_rules(app, desk):
    """IVK-07: the override takes a prescriber's reason. Ten spaces passed the schema's length and the
    service took any string as a reason: the course's rules broken, the audit row's reason blank."""
    every_day = {day: ["08:00", "18:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    assert (
        desk.client.put(f"/api/v1/locations/{desk.location_id}/hours", headers=desk.admin, json=every_day).status_code
        == 200
    )
    series = desk.book(desk.patient(), "ketamine-iv-induction").json
    last = series["appointments"][5]
    too_late = local(last["starts_at"]) + timedelta(days=14)  # past the course's span
    for blank in (" " * 12, "\t" * 10 + "ok", "\n \n \n \n \n \n"):
        refused = move(desk, last["id"], too_late, headers=desk.prescriber_h, override_reason=blank)
        assert refused.status_code == 422 and "override_reason" in refused.json["errors"], (blank, refused.json)

    # the series page's form: the same rule (a value of spaces reaches the schema)
    from tests.conftest import Client

    app.test_client_class = Client
    page = app.test_client()
    sign_in(page, desk.prescriber)
    resp = page.post(
        f"/schedule/series/{series['id']}/appointments/{last['id']}/reschedule",
        data={
            "csrf_token": page.csrf(f"/schedule/series/{series['id']}"),
            "starts_at": too_late.strftime("%Y-%m-%dT%H:%M"),
            "override_reason": " " * 12,
        },
    )
    assert resp.status_code == 422 and "rules give way" in resp.get_data(as_text=True), resp.status_code
    reason = "Patient travels next week; finishing the course outweighs the gap."
    assert (
        move(desk, last["id"], too_late, headers=desk.prescriber_h, override_reason=f"  {reason} ").status_code == 200
    )

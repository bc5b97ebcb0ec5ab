"""The outcome measures API on both backends: recording, refusals that write nothing, the trend,
corrections, the item-9 safety alert and who may do what."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DatabaseError

from clinic.audit.models import AuditEvent
from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.outcomes.models import OutcomeScore
from tests.conftest import bearer
from tests.outcomes.conftest import PROBLEM, Course, ago, at, book_course, gad7, phq9, summing_to


def counts(app) -> tuple[int, int]:
    with app.app_context():
        return (
            db.session.scalar(select(func.count()).select_from(OutcomeScore)) or 0,
            db.session.scalar(select(func.count()).select_from(AuditEvent)) or 0,
        )


def audit_rows(app, tag: str, score_id: int) -> list[AuditEvent]:
    with app.app_context():
        return list(
            db.session.scalars(
                select(AuditEvent).where(
                    AuditEvent.tag == tag, AuditEvent.subject_type == "outcome_score", AuditEvent.subject_id == score_id
                )
            )
        )


def refused(resp, status: int = 422) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)[:400]
    assert resp.mimetype == PROBLEM
    return resp.json


# --- recording -----------------------------------------------------------------------------------


def test_a_phq9_is_scored_banded_and_audited(app, course: Course):
    before = utcnow()
    score = course.recorded("phq9", [2, 2, 1, 3, 0, 1, 2, 1, 0], appointment_id=course.appointment_ids[0])
    assert (score["total"], score["band"], score["safety_alert"]) == (12, "moderate", False)
    assert score["items"] == [2, 2, 1, 3, 0, 1, 2, 1, 0]
    assert score["series_id"] == course.series_id and score["appointment_id"] == course.appointment_ids[0]
    assert score["safety_alert_at"] is None and score["replaces_id"] is None
    assert before - timedelta(seconds=1) <= at(score["taken_at"]) <= utcnow()  # now, by default
    (row,) = audit_rows(app, "outcomes:score:record", score["id"])
    assert row.data["instrument"] == "phq9" and row.data["safety_alert"] is False
    assert "items" not in row.data and "total" not in row.data  # the row is the record; no values copied
    assert audit_rows(app, "outcomes:safety_alert:raise", score["id"]) == []


def test_a_gad7_is_scored_on_its_own_bands(course: Course):
    score = course.recorded("gad7", [3, 3, 3, 2, 2, 1, 1])
    assert (score["total"], score["band"], score["safety_alert"]) == (15, "severe", False)


BAD_ITEMS = [
    ("phq9", phq9()[:8], None),
    ("phq9", [*phq9(), 0], None),
    ("gad7", phq9(), None),
    ("gad7", [], None),
    ("phq9", [True, *phq9()[1:]], "0"),
    ("phq9", [0, 1.0, *phq9()[2:]], "1"),
    ("phq9", [0, 0, 2.5, *phq9()[3:]], "2"),
    ("gad7", [0, 0, 0, "2", 0, 0, 0], "3"),
    ("gad7", [0, 0, 0, 0, None, 0, 0], "4"),
    ("phq9", [0, 0, 0, 0, 0, -1, 0, 0, 0], "5"),
    ("phq9", [0, 0, 0, 0, 0, 0, 0, 0, 4], "8"),
    ("phq9", "0,0,0,0,0,0,0,0,0", None),
    ("phq9", {"1": 0}, None),
]


def test_wrong_item_counts_types_and_ranges_are_422_and_write_nothing(app, course: Course):
    before = counts(app)
    for instrument, items, bad in BAD_ITEMS:
        body = refused(course.record(instrument, items))
        assert body["code"] == "validation_failed", body
        errors = body["errors"]["items"]
        if bad is None:
            assert isinstance(errors, list) and errors, (instrument, items, errors)
        else:
            assert list(errors) == [bad], (instrument, items, errors)
    assert counts(app) == before


def test_missing_or_unknown_fields_are_422(app, course: Course):
    before = counts(app)
    assert "instrument" in refused(course.record("phq10"))["errors"]
    no_items = course.client.post(
        f"/api/v1/patients/{course.patient_id}/outcomes",
        json={"instrument": "phq9", "series_id": course.series_id},
        headers=course.headers("nurse"),
    )
    assert "items" in refused(no_items)["errors"]
    assert "total" in refused(course.record("phq9", phq9(), total=0))["errors"]  # never taken from the client
    assert counts(app) == before


def test_another_patients_course_or_visit_is_refused(app, desk, course: Course):
    other = book_course(desk, preferred_time="13:00")
    before = counts(app)
    # not found under this patient (or course): 404, the field named
    body = refused(course.record("phq9", phq9(1), series_id=other.series_id), 404)
    assert body["errors"] == {"series_id": ["Not a course of this patient."]}
    body = refused(course.record("phq9", phq9(1), appointment_id=other.appointment_ids[0]), 404)
    assert body["errors"] == {"appointment_id": ["Not a visit of this course."]}
    missing = refused(course.record("phq9", phq9(1), series_id=2**31 - 1), 404)
    assert missing["errors"] == {"series_id": ["No such course."]}
    assert refused(course.record("phq9", phq9(1), patient_id=2**31 - 1), 404)["code"] == "not_found"
    assert counts(app) == before


@pytest.mark.parametrize(
    "taken_at",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:00:00-02:00",
        "2020-01-01T10:00:00",  # naive: which zone was meant?
        "yesterday",
    ],
)
def test_impossible_times_are_422_not_500(app, course: Course, taken_at):
    before = counts(app)
    assert "taken_at" in refused(course.record("phq9", phq9(2), taken_at=taken_at))["errors"]
    assert counts(app) == before


def test_back_charting_is_allowed_but_not_the_future_nor_years_back(app, course: Course):
    before = counts(app)
    future = refused(course.record("phq9", phq9(2), taken_at=ago(minutes=-5)))
    assert future["errors"] == {"taken_at": ["Cannot be in the future."]}
    too_early = refused(course.record("phq9", phq9(2), taken_at=ago(days=400)))
    assert "before the course starts" in too_early["errors"]["taken_at"][0]
    assert counts(app) == before
    # a clock a minute ahead is tolerated; a week back is charted where it was taken
    assert course.record("phq9", phq9(2), taken_at=ago(minutes=-1)).status_code == 201
    week = course.recorded("phq9", phq9(3), taken_at=ago(days=7))
    assert course.trend().json["baseline"]["score_id"] == week["id"]


def test_who_may_record_and_read(app, course: Course, make_user):
    assert course.record("phq9", phq9(1), role="prescriber").status_code == 201
    assert course.record("phq9", phq9(1), role="front_desk").status_code == 403
    assert course.record("phq9", phq9(1), role="admin").status_code == 403
    assert course.trend(role="admin").status_code == 200
    assert course.trend(role="front_desk").status_code == 403
    auditor = bearer(app, make_user("auditor"))
    resp = course.client.get(
        f"/api/v1/series/{course.series_id}/outcomes", query_string={"instrument": "phq9"}, headers=auditor
    )
    assert resp.status_code == 403
    assert course.alerts(role="front_desk").status_code == 403


# --- the trend (OUT-03) --------------------------------------------------------------------------


def test_trend_marks_response_and_remission_from_the_baseline(course: Course):
    course.recorded("phq9", summing_to(20), taken_at=ago(days=21))
    course.recorded("phq9", summing_to(13), taken_at=ago(days=14))
    course.recorded("phq9", summing_to(10), taken_at=ago(days=7))
    course.recorded("phq9", summing_to(4), taken_at=ago(days=1))
    course.recorded("gad7", summing_to(12, 7), taken_at=ago(days=21))  # another instrument, another trend
    trend = course.trend().json
    assert trend["instrument"] == "phq9" and trend["series_id"] == course.series_id
    assert trend["baseline"]["total"] == 20 and trend["baseline"]["is_baseline"] is True
    assert trend["response_at_or_below"] == "10.0"
    assert (trend["remission_below"], trend["remission_is_convention"]) == (5, False)
    got = [(p["total"], p["band"], p["change_pct"], p["response"], p["remission"]) for p in trend["points"]]
    assert got == [
        (20, "severe", "0.0", False, False),
        (13, "moderate", "-35.0", False, False),
        (10, "moderate", "-50.0", True, False),
        (4, "minimal", "-80.0", True, True),
    ]
    gad = course.trend("gad7").json
    assert [p["total"] for p in gad["points"]] == [12] and gad["remission_is_convention"] is True


def test_a_baseline_of_zero_never_responds(course: Course):
    course.recorded("gad7", gad7(), taken_at=ago(days=3))
    course.recorded("gad7", gad7(1, 1), taken_at=ago(days=1))
    trend = course.trend("gad7").json
    assert trend["response_at_or_below"] is None
    assert [(p["change_pct"], p["response"]) for p in trend["points"]] == [(None, False), (None, False)]


def test_the_trend_needs_an_instrument_and_a_course(course: Course):
    resp = course.client.get(f"/api/v1/series/{course.series_id}/outcomes", headers=course.headers("nurse"))
    assert "instrument" in refused(resp)["errors"]
    missing = course.client.get(
        "/api/v1/series/2147483647/outcomes", query_string={"instrument": "phq9"}, headers=course.headers("nurse")
    )
    refused(missing, 404)
    empty = course.trend().json
    assert (empty["baseline"], empty["points"]) == (None, [])


# --- corrections ---------------------------------------------------------------------------------


def test_a_replaced_score_drops_out_of_the_trend(app, course: Course):
    baseline = course.recorded("phq9", summing_to(16), taken_at=ago(days=10))
    typo = course.recorded("phq9", summing_to(6), taken_at=ago(days=3), appointment_id=course.appointment_ids[0])
    fixed = course.recorded("phq9", summing_to(9), replaces_id=typo["id"])
    # the correction keeps the replaced one's time and visit unless told otherwise
    assert fixed["replaces_id"] == typo["id"] and fixed["taken_at"] == typo["taken_at"]
    assert fixed["appointment_id"] == course.appointment_ids[0]
    points = course.trend().json["points"]
    assert [p["score_id"] for p in points] == [baseline["id"], fixed["id"]]
    assert [(p["total"], p["change_pct"], p["response"]) for p in points] == [(16, "0.0", False), (9, "-43.8", False)]
    (row,) = audit_rows(app, "outcomes:score:record", fixed["id"])
    assert row.data["replaces_id"] == typo["id"]

    # a score is corrected once: the next correction names the latest version
    before = counts(app)
    assert refused(course.record("phq9", summing_to(8), replaces_id=typo["id"]), 409)["code"] == (
        "outcome_score_already_replaced"
    )
    # and it must be a score of this course, of the same instrument
    assert "replaces_id" in refused(course.record("gad7", gad7(1), replaces_id=fixed["id"]), 409)["errors"]
    assert "replaces_id" in refused(course.record("phq9", phq9(1), replaces_id=2**31 - 1), 404)["errors"]
    assert counts(app) == before

    # correcting the baseline moves what every point is judged against
    new_base = course.recorded("phq9", summing_to(18), replaces_id=baseline["id"])
    points = course.trend().json["points"]
    assert [p["score_id"] for p in points] == [new_base["id"], fixed["id"]]
    assert points[1]["response"] is True and points[1]["change_pct"] == "-50.0"


def test_another_courses_score_cannot_be_replaced(desk, course: Course):
    other = book_course(desk, preferred_time="13:00")
    theirs = other.recorded("phq9", phq9(2))
    assert refused(course.record("phq9", phq9(1), replaces_id=theirs["id"]), 404)["errors"] == {
        "replaces_id": ["No such score in this course."]
    }


def test_the_database_refuses_to_edit_or_delete_a_score(app, course: Course):
    score = course.recorded("phq9", phq9(1, 1, 1, 0, 0, 0, 0, 0, 2))
    assert course.acknowledge(score["id"]).status_code == 200
    with app.app_context():
        for statement in (
            "UPDATE outcome_scores SET total = 0 WHERE id = :id",
            "UPDATE outcome_scores SET items = '[0,0,0,0,0,0,0,0,0]' WHERE id = :id",
            "UPDATE outcome_scores SET safety_acknowledgement_note = 'rewritten' WHERE id = :id",
            "DELETE FROM outcome_scores WHERE id = :id",
        ):
            with db.engine.connect() as conn, pytest.raises(DatabaseError, match=r"never|once"):
                conn.execute(text(statement), {"id": score["id"]})
    assert course.trend().json["points"][0]["total"] == 5


# --- the item-9 safety alert (OUT-04) ------------------------------------------------------------


def test_item9_raises_one_alert_a_prescriber_acknowledges_and_a_nurse_cannot(app, course: Course, caplog):
    caplog.set_level(logging.WARNING, logger="clinic.outcomes.service")
    score = course.recorded("phq9", phq9(2, 2, 1, 1, 0, 0, 0, 0, 1))
    assert score["safety_alert"] is True and score["safety_alert_at"] is not None
    assert score["safety_acknowledged_at"] is None
    assert len(audit_rows(app, "outcomes:safety_alert:raise", score["id"])) == 1
    warnings = [r for r in caplog.records if r.name == "clinic.outcomes.service"]
    assert [r.getMessage() for r in warnings] == [f"PHQ-9 item 9 safety alert raised score_id={score['id']}"]
    assert warnings[0].levelno == logging.WARNING

    listed = [a for a in course.alerts().json["items"] if a["score_id"] == score["id"]]
    assert len(listed) == 1
    (alert,) = listed
    assert (alert["item9"], alert["total"], alert["band"], alert["overdue"]) == (1, 7, "mild", False)
    assert alert["patient_id"] == course.patient_id and alert["location_id"] == course.desk.location_id
    assert course.alerts(role="nurse").status_code == 200  # nurses see the list too

    # a nurse cannot acknowledge it, and the refusal leaves it open
    assert refused(course.acknowledge(score["id"], role="nurse"), 403)["code"] == "permission_denied"
    assert refused(course.acknowledge(score["id"], role="admin"), 403)
    assert any(a["score_id"] == score["id"] for a in course.alerts().json["items"])

    done = course.acknowledge(score["id"], note="  Spoke with the patient; no plan or intent. Safety plan given.  ")
    assert done.status_code == 200, done.json
    body = done.json
    assert body["safety_acknowledged_by_id"] == course.desk.prescriber.id
    assert body["safety_acknowledgement_note"] == "Spoke with the patient; no plan or intent. Safety plan given."
    assert at(body["safety_acknowledged_at"]) >= at(body["safety_alert_at"])
    assert all(a["score_id"] != score["id"] for a in course.alerts().json["items"])
    assert len(audit_rows(app, "outcomes:safety_alert:acknowledge", score["id"])) == 1

    # once: a second acknowledgement is a conflict, and nothing raised it again
    assert refused(course.acknowledge(score["id"]), 409)["code"] == "safety_alert_already_acknowledged"
    assert len(audit_rows(app, "outcomes:safety_alert:raise", score["id"])) == 1


def test_no_alert_without_item9_and_an_acknowledgement_needs_an_alert_and_a_note(app, course: Course):
    quiet = course.recorded("phq9", [3, 3, 3, 3, 3, 3, 3, 3, 0])
    assert quiet["safety_alert"] is False
    assert refused(course.acknowledge(quiet["id"]), 409)["code"] == "no_safety_alert"
    alerted = course.recorded("phq9", phq9(0, 0, 0, 0, 0, 0, 0, 0, 3))
    before = counts(app)
    assert "note" in refused(course.acknowledge(alerted["id"], note="   "))["errors"]
    assert "note" in refused(course.acknowledge(alerted["id"], note=None))["errors"]
    assert "note" in refused(course.acknowledge(alerted["id"], note="x" * 1001))["errors"]
    refused(course.acknowledge(2**31 - 1), 404)
    assert counts(app) == before


def test_a_correction_never_clears_an_open_alert(course: Course):
    alerted = course.recorded("phq9", phq9(1, 1, 0, 0, 0, 0, 0, 0, 2))
    fixed = course.recorded("phq9", phq9(1, 1), replaces_id=alerted["id"])
    assert fixed["safety_alert"] is False
    (alert,) = [a for a in course.alerts().json["items"] if a["score_id"] == alerted["id"]]
    assert alert["replaced_by_id"] == fixed["id"]


def test_alerts_are_per_location(desk, course: Course, app, client, make_user):
    from tests.scheduling.conftest import make_desk

    elsewhere = book_course(make_desk(app, client, make_user, chairs=1))
    theirs = elsewhere.recorded("phq9", phq9(0, 0, 0, 0, 0, 0, 0, 0, 1))
    ours = course.recorded("phq9", phq9(0, 0, 0, 0, 0, 0, 0, 0, 1))
    listed = {a["score_id"] for a in course.alerts().json["items"]}
    assert ours["id"] in listed and theirs["id"] not in listed
    resp = course.client.get(
        "/api/v1/outcomes/safety-alerts", query_string={"location_id": 2**31 - 1}, headers=course.headers("nurse")
    )
    assert refused(resp, 404)["errors"] == {"location_id": ["No such location."]}


def test_an_alert_left_open_past_its_day_is_overdue(app, course: Course):
    score = course.recorded("phq9", phq9(0, 0, 0, 0, 0, 0, 0, 0, 1))
    with app.app_context():
        from clinic.outcomes import service

        row = db.session.get(OutcomeScore, score["id"])
        assert row is not None
        (alert,) = [a for a in service.open_safety_alerts(course.desk.location_id) if a.score.id == score["id"]]
        assert alert.overdue is False
        # as it would read two days on (the row itself cannot be edited)
        row.safety_alert_at = utcnow() - timedelta(days=2)
        assert service.OpenAlert(row, alert.patient, alert.series, alert.location, None).overdue is True
        db.session.rollback()

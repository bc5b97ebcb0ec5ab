"""Outcome measures: record a PHQ-9 or GAD-7 at a course, its trend, and the item-9 safety alert.

The scoring rules are pure functions in ``scoring.py`` (OUT-01..04); this module checks what they
cannot see (the course is the patient's, the visit is the course's, the time is plausible), stores
the score and writes its audit rows. Services flush and never commit. Audit rows and logs carry ids
and codes, never item answers, totals or notes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from clinic.audit import service as audit
from clinic.audit.tags import Tag
from clinic.auth.models import Role, User
from clinic.core import tx
from clinic.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from clinic.core.time import happened_at, local_day, today_at, utcnow
from clinic.extensions import db
from clinic.locations import service as locations_service
from clinic.locations.models import Location
from clinic.outcomes import scoring
from clinic.outcomes.errors import NoSafetyAlert, SafetyAlertAlreadyAcknowledged, ScoreAlreadyReplaced
from clinic.outcomes.models import OutcomeScore
from clinic.outcomes.scoring import SPECS, Instrument
from clinic.patients import service as patients_service
from clinic.patients.models import Patient
from clinic.scheduling import service as scheduling_service
from clinic.scheduling.models import AppointmentSeries

logger = logging.getLogger(__name__)

#: How long before a course starts its baseline may have been taken (an intake questionnaire);
#: anything earlier is a typing slip in the year, refused rather than charted.
MAX_BASELINE_LEAD = timedelta(days=180)
NOTE_MAX = 1000


def _instrument(value: str) -> Instrument:
    try:
        return Instrument(value)
    except ValueError:
        raise ValidationFailed(errors={"instrument": [f"One of: {', '.join(i.value for i in Instrument)}."]}) from None


def _series_of(patient: Patient, series_id: int) -> AppointmentSeries:
    try:
        series = scheduling_service.get_series(series_id)
    except NotFound:
        raise NotFound("No such course", errors={"series_id": ["No such course."]}) from None
    if series.patient_id != patient.id:
        raise NotFound("Not a course of this patient", errors={"series_id": ["Not a course of this patient."]})
    return series


def _check_taken_at(taken_at: datetime, *, now: datetime, series: AppointmentSeries, location: Location) -> datetime:
    happened_at(taken_at, "taken_at")
    # Compared as aware datetimes (no conversion), so even year 1 is a clean refusal.
    earliest = datetime.combine(series.start_on - MAX_BASELINE_LEAD, time.min, tzinfo=ZoneInfo(location.timezone))
    if taken_at < earliest:
        days = MAX_BASELINE_LEAD.days
        raise ValidationFailed(
            errors={"taken_at": [f"More than {days} days before the course starts; check the date."]}
        )
    return taken_at.astimezone(UTC)


def _replaced(series: AppointmentSeries, instrument: Instrument, replaces_id: int) -> OutcomeScore:
    """The score a correction replaces, locked: it must be this course's, of this instrument, and
    not corrected already (the unique ``replaces_id`` settles a race the lock cannot see)."""
    old = db.session.scalar(select(OutcomeScore).where(OutcomeScore.id == replaces_id).with_for_update())
    if old is None or old.series_id != series.id:
        raise NotFound("No such score in this course", errors={"replaces_id": ["No such score in this course."]})
    if old.instrument != instrument:
        # the score exists but is of another instrument: the records, not the input's shape, refuse it
        label = SPECS[instrument].label
        raise Conflict(f"Not a {label} score", errors={"replaces_id": [f"Not a {label} score."]})
    if replacement_of(old.id) is not None:
        raise ScoreAlreadyReplaced()
    return old


def replacement_of(score_id: int) -> int | None:
    return db.session.scalar(select(OutcomeScore.id).where(OutcomeScore.replaces_id == score_id))


def record_score(
    *,
    actor: User,
    patient_id: int,
    series_id: int,
    instrument: str,
    items: list[Any],
    taken_at: datetime | None = None,
    appointment_id: int | None = None,
    replaces_id: int | None = None,
) -> OutcomeScore:
    """Score and store one questionnaire; a PHQ-9 with item 9 above 0 raises the safety alert (OUT-04).

    A correction (``replaces_id``) takes the replaced score's time and visit unless given others.
    """
    patient = patients_service.get_patient(patient_id)
    kind = _instrument(instrument)
    try:
        scored = scoring.score(kind, items)
    except scoring.ItemsInvalid as exc:
        raise ValidationFailed(errors={"items": exc.errors}) from None
    series = _series_of(patient, series_id)
    old = _replaced(series, kind, replaces_id) if replaces_id is not None else None
    if old is not None:
        taken_at = old.taken_at if taken_at is None else taken_at
        appointment_id = old.appointment_id if appointment_id is None else appointment_id
    if appointment_id is not None:
        try:
            scheduling_service.get_appointment(appointment_id, series_id=series.id)
        except NotFound:
            raise NotFound(
                "Not a visit of this course", errors={"appointment_id": ["Not a visit of this course."]}
            ) from None
    now = utcnow()
    location = locations_service.get_location(series.location_id)
    taken = now if taken_at is None else _check_taken_at(taken_at, now=now, series=series, location=location)
    score = OutcomeScore(
        patient_id=patient.id,
        series_id=series.id,
        appointment_id=appointment_id,
        instrument=kind.value,
        items=scored.items,
        total=scored.total,
        band=scored.band.value,
        taken_at=taken,
        recorded_at=now,
        recorded_by_id=actor.id,
        replaces_id=old.id if old is not None else None,
        # OUT-04: raised when recorded (a back-charted answer is news to the prescriber now)
        safety_alert_at=now if scored.safety_alert else None,
    )
    db.session.add(score)
    db.session.flush()
    audit.touched("outcome_score", score.id)
    audit.record(
        actor=actor,
        tag=Tag.outcomes_score_record,
        subject=("outcome_score", score.id),
        data={
            "patient_id": patient.id,
            "series_id": series.id,
            "appointment_id": appointment_id,
            "instrument": kind.value,
            "replaces_id": score.replaces_id,
            "safety_alert": scored.safety_alert,
        },
    )
    if scored.safety_alert:
        _raise_safety_alert(actor, score, location_id=series.location_id)
    return score


def _raise_safety_alert(actor: User, score: OutcomeScore, *, location_id: int) -> None:
    """OUT-04: the alert is the open row itself (listed for the location's prescribers until one
    acknowledges it), its audit row, and a warning once the score is committed: the id, nothing else."""
    audit.record(
        actor=actor,
        tag=Tag.outcomes_safety_alert_raise,
        subject=("outcome_score", score.id),
        data={"patient_id": score.patient_id, "series_id": score.series_id, "location_id": location_id},
    )
    score_id = score.id
    tx.after_commit(lambda: logger.warning("PHQ-9 item 9 safety alert raised score_id=%s", score_id))


def get_score(score_id: int) -> OutcomeScore:
    score = db.session.get(OutcomeScore, score_id)
    if score is None:
        raise NotFound("No such score")
    return score


# --- reading a course ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CourseScore:
    """A score of the course with what replaced it, if anything (the page lists corrections too)."""

    score: OutcomeScore
    replaced_by_id: int | None

    @property
    def current(self) -> bool:
        return self.replaced_by_id is None


def course_scores(series_id: int, instrument: Instrument | str | None = None) -> list[CourseScore]:
    """Every score of the course, replaced ones included, oldest first."""
    scheduling_service.get_series(series_id)
    stmt = select(OutcomeScore).where(OutcomeScore.series_id == series_id)
    if instrument is not None:
        stmt = stmt.where(OutcomeScore.instrument == Instrument(instrument).value)
    scores = list(db.session.scalars(stmt.order_by(OutcomeScore.taken_at, OutcomeScore.id)))
    replaced = {s.replaces_id: s.id for s in scores if s.replaces_id is not None}
    return [CourseScore(s, replaced.get(s.id)) for s in scores]


def trend(series_id: int, instrument: Instrument | str) -> scoring.Trend:
    """OUT-03: the course's current scores of one instrument against its baseline (replaced ones left out)."""
    kind = Instrument(instrument)
    readings = [
        scoring.Reading(c.score.id, c.score.taken_at, c.score.total, c.score.band)
        for c in course_scores(series_id, kind)
        if c.current
    ]
    return scoring.trend(kind, readings)


# --- the safety alert (OUT-04) -------------------------------------------------------------------


@dataclass(frozen=True)
class OpenAlert:
    score: OutcomeScore
    patient: Patient
    series: AppointmentSeries
    location: Location
    replaced_by_id: int | None

    @property
    def raised_on(self) -> Any:
        """The location's calendar day the alert was raised on."""
        assert self.score.safety_alert_at is not None
        return local_day(self.score.safety_alert_at, self.location.timezone)

    @property
    def overdue(self) -> bool:
        """Not seen by a prescriber on the day it was raised (the location's day)."""
        return self.raised_on < today_at(self.location.timezone)

    @property
    def item9(self) -> int:
        return int(self.score.items[scoring.SUICIDALITY_ITEM])


def open_safety_alerts(location_id: int) -> list[OpenAlert]:
    """OUT-04: the location's unacknowledged item-9 alerts, oldest first, for its prescribers' dashboard.

    An alert on a score that was later corrected stays open: a correction never clears an alert
    (it could hide a true answer); a prescriber acknowledges it, saying so in the note.
    """
    try:
        location = locations_service.get_location(location_id)
    except NotFound:
        raise NotFound("No such location", errors={"location_id": ["No such location."]}) from None
    rows = db.session.execute(
        select(OutcomeScore, AppointmentSeries, Patient)
        .join(AppointmentSeries, AppointmentSeries.id == OutcomeScore.series_id)
        .join(Patient, Patient.id == OutcomeScore.patient_id)
        .where(
            AppointmentSeries.location_id == location.id,
            OutcomeScore.safety_alert_at.is_not(None),
            OutcomeScore.safety_acknowledged_at.is_(None),
        )
        .order_by(OutcomeScore.safety_alert_at, OutcomeScore.id)
    ).all()
    ids = [score.id for score, _, _ in rows]
    pairs = select(OutcomeScore.replaces_id, OutcomeScore.id).where(OutcomeScore.replaces_id.in_(ids))
    replaced: dict[int | None, int] = {row.replaces_id: row.id for row in db.session.execute(pairs)} if ids else {}
    return [OpenAlert(score, patient, series, location, replaced.get(score.id)) for score, series, patient in rows]


def acknowledge_safety_alert(*, actor: User, score_id: int, note: str) -> OutcomeScore:
    """A prescriber has seen the item-9 alert and says what was done (OUT-04); once per alert."""
    if actor.role_enum is not Role.prescriber:
        raise PermissionDenied("Only a prescriber can acknowledge a safety alert.")
    text = note.strip() if isinstance(note, str) else ""
    if not text:
        raise ValidationFailed(errors={"note": ["Say what was done (it must not be blank)."]})
    if len(text) > NOTE_MAX:
        raise ValidationFailed(errors={"note": [f"At most {NOTE_MAX} characters."]})
    score = db.session.scalar(select(OutcomeScore).where(OutcomeScore.id == score_id).with_for_update())
    if score is None:
        raise NotFound("No such score")
    if score.safety_alert_at is None:
        raise NoSafetyAlert()
    if score.safety_acknowledged_at is not None:
        raise SafetyAlertAlreadyAcknowledged()
    now = utcnow()
    score.safety_acknowledged_at = now
    score.safety_acknowledged_by_id = actor.id
    score.safety_acknowledgement_note = text
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.outcomes_safety_alert_acknowledge,
        subject=("outcome_score", score.id),
        data={
            "patient_id": score.patient_id,
            "series_id": score.series_id,
            "minutes_open": int((now - score.safety_alert_at).total_seconds() // 60),
        },
    )
    return score

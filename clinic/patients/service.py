"""Patients: demographics and contact, weights, REMS enrolment, screening and the booking gate.

Rules live here; the screening flag rules themselves are pure functions in ``screening.py``.
Services flush and never commit. Audit rows name fields and codes, never PHI values, and nothing
here logs a name, a date of birth or an answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select

from clinic.audit import service as audit
from clinic.audit.tags import Tag
from clinic.auth import scope
from clinic.auth.models import Role, User
from clinic.core.errors import NotFound, PermissionDenied, ValidationFailed
from clinic.core.time import today_at, utcnow
from clinic.extensions import db
from clinic.locations.models import Location
from clinic.patients import screening
from clinic.patients.errors import (
    AlreadyEnrolled,
    OverrideNotAllowed,
    PatientIneligible,
    RemsEnrollmentRequired,
    ReviewNotAllowed,
    ScreeningIncomplete,
    ScreeningNeedsReview,
    ScreeningReviewPending,
)
from clinic.patients.models import Channel, Patient, PatientWeight, RemsEnrollment, ScreeningResult
from clinic.patients.screening import Eligibility, Level

logger = logging.getLogger(__name__)

#: Clock skew tolerated for a back-charted time said to be "now" by another machine.
FUTURE_TOLERANCE = timedelta(minutes=2)
MAX_AGE_YEARS = 130
#: the contact detail each reminder channel needs
CHANNEL_NEEDS: dict[str, str] = {Channel.email: "email", Channel.sms: "phone"}
PATIENT_FIELDS = (
    "first_name",
    "last_name",
    "date_of_birth",
    "address",
    "timezone",
    "email",
    "phone",
    "sex",
    "preferred_channel",
    "reminders_opt_out",
    "emergency_contact",
    "ride_contact",
)
_REQUIRED_TEXT = ("first_name", "last_name", "address")
_OPTIONAL_TEXT = ("email", "phone", "emergency_contact", "ride_contact")


@dataclass(frozen=True)
class PatientRecord:
    """A patient with what the output views add: the latest screening, weight and REMS date."""

    patient: Patient
    screening: ScreeningResult | None = None
    latest_weight_g: int | None = None
    rems_enrolled_on: date | None = None

    def __getattr__(self, name: str) -> Any:  # demographics read straight from the patient
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.patient, name)


# --- patients ------------------------------------------------------------------------------------


def today_for(patient: Patient) -> date:
    """The patient's calendar date now (ages and back-dating are judged in their time zone)."""
    return today_at(patient.timezone)


def _clean(values: dict[str, Any], tz: str) -> dict[str, Any]:
    out = dict(values)
    errors: dict[str, list[str]] = {}
    for key in _REQUIRED_TEXT:
        if key in out:
            out[key] = out[key].strip()
            if not out[key]:
                errors[key] = ["Must not be blank."]
    for key in _OPTIONAL_TEXT:
        if key in out and out[key] is not None:
            out[key] = out[key].strip() or None
    if out.get("email"):
        out["email"] = out["email"].lower()
    born = out.get("date_of_birth")
    if born is not None:
        today = today_at(tz)
        if born > today:
            errors["date_of_birth"] = ["Cannot be in the future."]
        elif screening.age_on(born, today) > MAX_AGE_YEARS:
            errors["date_of_birth"] = [f"More than {MAX_AGE_YEARS} years ago; check the year."]
    if errors:
        raise ValidationFailed(errors=errors)
    return out


def _check_channel(channel: str, email: str | None, phone: str | None) -> None:
    needs = CHANNEL_NEEDS.get(channel)
    if needs == "email" and not email:
        raise ValidationFailed(errors={"preferred_channel": ["Reminders by email need an email address."]})
    if needs == "phone" and not phone:
        raise ValidationFailed(errors={"preferred_channel": ["Reminders by SMS need a phone number."]})


def create_patient(
    *,
    actor: User,
    first_name: str,
    last_name: str,
    date_of_birth: date,
    address: str,
    timezone: str,
    email: str | None = None,
    phone: str | None = None,
    sex: str | None = None,
    preferred_channel: str | None = None,
    reminders_opt_out: bool = False,
    emergency_contact: str | None = None,
    ride_contact: str | None = None,
    location_id: int | None = None,
) -> Patient:
    """A new patient, registered at ``location_id`` (SYS-12): by default the actor's only location or
    the one they chose last; a member of several who has chosen none must name it."""
    home = _home_location(actor, location_id)
    values = _clean(
        {
            "first_name": first_name,
            "last_name": last_name,
            "date_of_birth": date_of_birth,
            "address": address,
            "timezone": timezone,
            "email": email,
            "phone": phone,
            "sex": sex,
            "reminders_opt_out": reminders_opt_out,
            "emergency_contact": emergency_contact,
            "ride_contact": ride_contact,
        },
        timezone,
    )
    if preferred_channel is None:  # the first channel the patient can be reached on
        preferred_channel = "email" if values["email"] else "sms" if values["phone"] else "none"
    else:
        _check_channel(preferred_channel, values["email"], values["phone"])
    patient = Patient(**values, preferred_channel=preferred_channel, location_id=home)
    db.session.add(patient)
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.patients_patient_create,
        subject=("patient", patient.id),
        data={"fields": sorted(k for k, v in values.items() if v not in (None, False))},
    )
    return patient


def _home_location(actor: User | None, location_id: int | None) -> int | None:
    if location_id is not None:
        if db.session.get(Location, location_id) is None:
            raise NotFound("No such location", errors={"location_id": ["No such location."]})
        scope.require_location(actor, location_id)
        return location_id
    working = scope.working_location_id(actor)
    if working is not None:
        return working
    only = db.session.scalars(select(Location.id).limit(2)).all()
    if only and scope.member_location_ids(actor) is not None:  # staff of no location
        raise scope.NotAMember("You are not a member of any location; an admin can add you on the users page.")
    # An admin of a one-location clinic need not say; before any location exists there is none to name.
    return only[0] if len(only) == 1 else None


def get_patient(patient_id: int) -> Patient:
    patient = db.session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("No such patient")
    return patient


def update_patient(*, actor: User, patient_id: int, changes: dict[str, Any]) -> Patient:
    patient = get_patient(patient_id)
    changes = dict(changes)
    moved_to = changes.pop("location_id", None)  # SYS-12: only to a location the actor works at
    unknown = set(changes) - set(PATIENT_FIELDS)
    if unknown:
        raise ValidationFailed(errors={key: ["Unknown field."] for key in sorted(unknown)})
    values = _clean(changes, changes.get("timezone") or patient.timezone)
    channel = values.get("preferred_channel", patient.preferred_channel)
    email = values.get("email", patient.email)
    phone = values.get("phone", patient.phone)
    cleared = [k for k in ("email", "phone") if k in values and values[k] is None]
    if "preferred_channel" in values or any(CHANNEL_NEEDS.get(channel) == k for k in cleared):
        _check_channel(channel, email, phone)
    changed = []
    if moved_to is not None and moved_to != patient.location_id:
        if patient.location_id is not None:  # SYS-12: moved only by someone who works where they are
            scope.require_location(actor, patient.location_id)
        patient.location_id = _home_location(actor, moved_to)
        changed.append("location_id")
    for key, value in values.items():
        if getattr(patient, key) != value:
            setattr(patient, key, value)
            changed.append(key)
    db.session.flush()
    if changed:
        audit.record(
            actor=actor, tag=Tag.patients_patient_update, subject=("patient", patient.id), data={"fields": changed}
        )
    return patient


def get_patient_record(patient_id: int) -> PatientRecord:
    patient = get_patient(patient_id)
    return PatientRecord(
        patient=patient,
        screening=latest_screening(patient_id),
        latest_weight_g=latest_weight_g(patient_id),
        rems_enrolled_on=rems_enrolled_on(patient_id),
    )


def list_patients(
    *,
    actor: User | None,
    q: str | None = None,
    date_of_birth: date | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> list[PatientRecord]:
    """Patients ``actor`` may see (SYS-12) by id, optionally filtered: every word of ``q`` must be in
    the first or last name."""
    stmt = select(Patient).order_by(Patient.id).limit(limit)
    visible = scope.visible_patients(actor)
    if visible is not None:
        stmt = stmt.where(visible)
    for word in (q or "").split():
        stmt = stmt.where(
            Patient.first_name.icontains(word, autoescape=True) | Patient.last_name.icontains(word, autoescape=True)
        )
    if date_of_birth is not None:
        stmt = stmt.where(Patient.date_of_birth == date_of_birth)
    if after_id is not None:
        stmt = stmt.where(Patient.id > after_id)
    patients = list(db.session.scalars(stmt))
    latest = _latest_screenings([p.id for p in patients])
    return [PatientRecord(patient=p, screening=latest.get(p.id)) for p in patients]


# --- weights -------------------------------------------------------------------------------------

MIN_WEIGHT_G = 2_000
MAX_WEIGHT_G = 400_000


def record_weight(*, actor: User, patient_id: int, weight_g: int, measured_at: datetime | None = None) -> PatientWeight:
    patient = get_patient(patient_id)
    if not MIN_WEIGHT_G <= weight_g <= MAX_WEIGHT_G:
        raise ValidationFailed(
            errors={"weight_kg": [f"Must be between {MIN_WEIGHT_G // 1000} and {MAX_WEIGHT_G // 1000} kg."]}
        )
    now = utcnow()
    if measured_at is None:
        measured_at = now
    elif measured_at > now + FUTURE_TOLERANCE:
        raise ValidationFailed(errors={"measured_at": ["Cannot be in the future."]})
    weight = PatientWeight(
        patient_id=patient.id,
        weight_g=weight_g,
        measured_at=measured_at.astimezone(UTC),
        recorded_by_id=actor.id,
        recorded_at=now,
    )
    db.session.add(weight)
    db.session.flush()
    audit.record(
        actor=actor, tag=Tag.patients_weight_record, subject=("patient", patient.id), data={"weight_id": weight.id}
    )
    return weight


def list_weights(patient_id: int) -> list[PatientWeight]:
    get_patient(patient_id)
    stmt = (
        select(PatientWeight)
        .where(PatientWeight.patient_id == patient_id)
        .order_by(PatientWeight.measured_at.desc(), PatientWeight.id.desc())
    )
    return list(db.session.scalars(stmt))


def latest_weight_g(patient_id: int) -> int | None:
    """The most recently measured weight in grams (back-charted weights sort by when measured)."""
    stmt = (
        select(PatientWeight.weight_g)
        .where(PatientWeight.patient_id == patient_id)
        .order_by(PatientWeight.measured_at.desc(), PatientWeight.id.desc())
        .limit(1)
    )
    return db.session.scalar(stmt)


# --- REMS (SPR-05) -------------------------------------------------------------------------------


def enroll_in_rems(*, actor: User, patient_id: int, enrolled_on: date) -> RemsEnrollment:
    patient = db.session.scalar(select(Patient).where(Patient.id == patient_id).with_for_update())
    if patient is None:
        raise NotFound("No such patient")
    if enrolled_on > today_for(patient):
        raise ValidationFailed(errors={"enrolled_on": ["Cannot be in the future."]})
    if rems_enrolled_on(patient_id) is not None:
        raise AlreadyEnrolled()
    enrollment = RemsEnrollment(patient_id=patient.id, enrolled_on=enrolled_on, recorded_by_id=actor.id)
    db.session.add(enrollment)
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.patients_rems_enroll,
        subject=("patient", patient.id),
        data={"enrollment_id": enrollment.id, "enrolled_on": enrolled_on.isoformat()},
    )
    return enrollment


def rems_enrolled_on(patient_id: int) -> date | None:
    return db.session.scalar(
        select(func.min(RemsEnrollment.enrolled_on)).where(RemsEnrollment.patient_id == patient_id)
    )


def is_rems_enrolled(patient_id: int, on: date) -> bool:
    """Enrolled in the SPRAVATO REMS on or before ``on`` (SPR-05: before the first treatment)."""
    since = rems_enrolled_on(patient_id)
    return since is not None and since <= on


# --- screening (DOMAIN.md §4) --------------------------------------------------------------------


def _clean_medications(names: list[str]) -> list[str]:
    """Stripped, blanks dropped, duplicates (ignoring case) dropped, first spelling kept."""
    seen: set[str] = set()
    out = []
    for name in names:
        name = " ".join(name.split())
        if name and name.casefold() not in seen:
            seen.add(name.casefold())
            out.append(name)
    return out


def _levels(location_id: int | None) -> dict[str, Any]:
    if location_id is None:
        return {}
    location = db.session.get(Location, location_id)
    if location is None:
        raise NotFound("No such location", errors={"location_id": ["No such location."]})
    return dict(location.rule("screening_levels") or {})


class Review(StrEnum):
    """CI-22: the review a screening that clears earlier serious flags waits for."""

    pending = "pending"
    approved = "approved"
    rejected = "rejected"


#: a screening in one of these states does not count (the one before it stays in force)
NOT_COUNTING = (Review.pending.value, Review.rejected.value)
_SERIOUS = (Level.HARD.value, Level.OVERRIDE.value)


def _serious_codes(flags: list[dict[str, Any]]) -> set[str]:
    """Codes of ``flags`` that are HARD or OVERRIDE as stored or at any location (CI-22: a flag a
    location lowered is still serious where another location books the patient). Age (CI-01) is
    left out: it is worked out from the date of birth at every gate, not answered."""
    level_maps = [{}, *(dict(loc.rule("screening_levels") or {}) for loc in db.session.scalars(select(Location)))]
    out = set()
    for f in flags:
        rule = screening.ALL_RULES.get(f["code"])
        if rule is None or rule is screening.AGE_RULE:
            continue
        if f["level"] in _SERIOUS or any(screening.level_for(rule, m).value in _SERIOUS for m in level_maps):
            out.add(f["code"])
    return out


def _store_screening(
    *, actor: User, patient: Patient, answers: dict[str, Any], location_id: int | None
) -> ScreeningResult:
    eligibility, flags = screening.evaluate(
        answers=answers, date_of_birth=patient.date_of_birth, on=today_for(patient), levels=_levels(location_id)
    )
    # CI-22: clearing a serious flag of the screening in force needs a prescriber's review
    in_force = screening_in_force(patient.id)
    cleared = sorted(_serious_codes(in_force.flags) - {f["code"] for f in flags}) if in_force else []
    result = ScreeningResult(
        patient_id=patient.id,
        location_id=location_id,
        answers=answers,
        flags=flags,
        eligibility=eligibility,
        screened_by_id=actor.id,
        screened_at=utcnow(),
        review_status=Review.pending.value if cleared else None,
        review_cleared=cleared or None,
    )
    db.session.add(result)
    db.session.flush()
    return result


def _decision(result: ScreeningResult) -> dict[str, Any]:
    """What the audit row keeps of a screening: the decision and flag codes, never the answers."""
    return {
        "screening_id": result.id,
        "eligibility": result.eligibility,
        "flags": [f"{f['code']}:{f['level']}" for f in result.flags],
        "location_id": result.location_id,
        **({"review": result.review_status, "cleared": result.review_cleared} if result.review_status else {}),
    }


def record_screening(
    *, actor: User, patient_id: int, answers: dict[str, Any], location_id: int | None = None
) -> ScreeningResult:
    """A new questionnaire: flags from the answers, the age and the medicines; it supersedes the last."""
    patient = get_patient(patient_id)
    stored: dict[str, Any] = {key: bool(answers[key]) for key in screening.REQUIRED_ANSWERS}
    for key in screening.OPTIONAL_ANSWERS:
        if answers.get(key) is not None:
            stored[key] = bool(answers[key])
    stored["medications"] = _clean_medications(list(answers.get("medications") or []))
    result = _store_screening(actor=actor, patient=patient, answers=stored, location_id=location_id)
    audit.record(
        actor=actor, tag=Tag.patients_screening_record, subject=("patient", patient.id), data=_decision(result)
    )
    return result


def latest_screening(patient_id: int) -> ScreeningResult | None:
    """The screening in force: the last one recorded (rows are never back-dated, so the highest id)."""
    stmt = select(ScreeningResult).where(ScreeningResult.patient_id == patient_id).order_by(ScreeningResult.id.desc())
    return db.session.scalars(stmt.limit(1)).first()


def screening_in_force(patient_id: int) -> ScreeningResult | None:
    """CI-22: the last screening that counts: one waiting for review or rejected does not."""
    stmt = (
        select(ScreeningResult)
        .where(
            ScreeningResult.patient_id == patient_id,
            ScreeningResult.review_status.is_(None) | ScreeningResult.review_status.not_in(NOT_COUNTING),
        )
        .order_by(ScreeningResult.id.desc())
    )
    return db.session.scalars(stmt.limit(1)).first()


def _locked_screening(patient_id: int, screening_id: int) -> ScreeningResult:
    """The screening, locked for a prescriber's stamp (two stamps at once: the second sees the first)."""
    result = db.session.scalar(
        select(ScreeningResult)
        .where(ScreeningResult.id == screening_id, ScreeningResult.patient_id == patient_id)
        .with_for_update()
    )
    if result is None:
        raise NotFound("No such screening for this patient")
    return result


def review_screening(*, actor: User, patient_id: int, screening_id: int, decision: str, reason: str) -> ScreeningResult:
    """CI-22: a prescriber approves (the screening counts from now) or rejects (the earlier flags
    stand) a screening that cleared earlier HARD or OVERRIDE flags."""
    if actor.role_enum is not Role.prescriber:
        raise PermissionDenied("Only a prescriber can review a screening.")
    reason = " ".join(reason.split())
    if len(reason) < 10:
        raise ValidationFailed(errors={"reason": ["Say why (at least 10 characters)."]})
    if decision not in (Review.approved, Review.rejected):
        raise ValidationFailed(errors={"decision": ["One of: approved, rejected."]})
    result = _locked_screening(patient_id, screening_id)
    if result.review_status != Review.pending:
        raise ReviewNotAllowed("This screening is not waiting for a review.")
    current = latest_screening(patient_id)
    if current is not None and current.id != result.id:
        raise ReviewNotAllowed(f"A newer screening ({current.id}) supersedes this one; review that instead.")
    result.review_status = decision
    result.review_reason = reason
    result.reviewed_by_id = actor.id
    result.reviewed_at = utcnow()
    db.session.flush()
    audit.record(
        actor=actor, tag=Tag.patients_screening_review, subject=("patient", patient_id), data=_decision(result)
    )
    return result


def _latest_screenings(patient_ids: list[int]) -> dict[int, ScreeningResult]:
    if not patient_ids:
        return {}
    newest = (
        select(func.max(ScreeningResult.id))
        .where(ScreeningResult.patient_id.in_(patient_ids))
        .group_by(ScreeningResult.patient_id)
    )
    rows = db.session.scalars(select(ScreeningResult).where(ScreeningResult.id.in_(newest)))
    return {row.patient_id: row for row in rows}


def list_screenings(patient_id: int) -> list[ScreeningResult]:
    get_patient(patient_id)
    stmt = select(ScreeningResult).where(ScreeningResult.patient_id == patient_id).order_by(ScreeningResult.id.desc())
    return list(db.session.scalars(stmt))


def get_screening(patient_id: int, screening_id: int) -> ScreeningResult:
    result = db.session.get(ScreeningResult, screening_id)
    if result is None or result.patient_id != patient_id:
        raise NotFound("No such screening for this patient")
    return result


def override_screening(*, actor: User, patient_id: int, screening_id: int, reason: str) -> ScreeningResult:
    """A prescriber's documented risk/benefit decision on a "review" screening (stamped once)."""
    if actor.role_enum is not Role.prescriber:
        raise PermissionDenied("Only a prescriber can override a screening.")
    reason = " ".join(reason.split())
    if len(reason) < 10:
        raise ValidationFailed(errors={"reason": ["Give the risk/benefit reason (at least 10 characters)."]})
    result = _locked_screening(patient_id, screening_id)
    if result.eligibility == Eligibility.ineligible:
        hard = screening.flags_at(result.flags, Level.HARD)
        raise OverrideNotAllowed("A HARD flag cannot be overridden.", errors={"flags": hard})
    if result.eligibility != Eligibility.review:
        raise OverrideNotAllowed("The screening is eligible; there is nothing to override.")
    if result.overridden_at is not None:
        raise OverrideNotAllowed("The screening has already been overridden.")
    current = latest_screening(patient_id)
    if current is not None and current.id != result.id:
        raise OverrideNotAllowed(f"A newer screening ({current.id}) supersedes this one; review that instead.")
    result.override_reason = reason
    result.overridden_by_id = actor.id
    result.overridden_at = utcnow()
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.patients_screening_override,
        subject=("patient", patient_id),
        data={**_decision(result), "overridden": [f["code"] for f in screening.flags_at(result.flags, Level.OVERRIDE)]},
    )
    return result


# --- the gates the visit flow calls --------------------------------------------------------------


def assert_bookable(*, patient_id: int, on: date, drug: str, location_id: int) -> None:
    """Raise unless the patient may be booked (or dosed) for ``drug`` on ``on`` (the patient's local
    date) at ``location_id``.

    Order: a screening waiting for a prescriber's review (ScreeningReviewPending, CI-22); then the
    screening in force, its flags judged again at the booking location on ``on``: a HARD flag or
    under 18 (PatientIneligible), no screening (ScreeningIncomplete), an OVERRIDE flag no
    prescriber's override covers (ScreeningNeedsReview); for esketamine no REMS enrolment by
    ``on`` (RemsEnrollmentRequired).
    """
    patient = get_patient(patient_id)
    latest = latest_screening(patient_id)
    if latest is not None and latest.review_status == Review.pending:
        raise ScreeningReviewPending(
            "The latest screening clears earlier flags ("
            + ", ".join(latest.review_cleared or [])
            + "): a prescriber must review it before the patient can be booked or dosed.",
            errors={"cleared": list(latest.review_cleared or []), "screening_id": latest.id},
        )
    in_force = screening_in_force(patient_id)
    answers = in_force.answers if in_force is not None else {}
    _, flags = screening.evaluate(
        answers=answers, date_of_birth=patient.date_of_birth, on=on, levels=_levels(location_id)
    )
    hard = screening.flags_at(flags, Level.HARD)
    if hard:
        raise PatientIneligible(
            "The patient cannot be booked: " + "; ".join(f["code"] for f in hard) + ".", errors={"flags": hard}
        )
    if in_force is None:
        raise ScreeningIncomplete("Record a screening before booking.")
    covered = (
        {f["code"] for f in screening.flags_at(in_force.flags, Level.OVERRIDE)}
        if in_force.overridden_at is not None
        else set()
    )
    unreviewed = [f for f in screening.flags_at(flags, Level.OVERRIDE) if f["code"] not in covered]
    if unreviewed:
        raise ScreeningNeedsReview(
            "A prescriber must record a risk/benefit reason before booking.", errors={"flags": unreviewed}
        )
    if drug.casefold() == "esketamine" and not is_rems_enrolled(patient_id, on):
        raise RemsEnrollmentRequired(f"Enrol the patient in the SPRAVATO REMS (on or before {on.isoformat()}).")


def reconfirm_at_visit(
    *,
    actor: User,
    patient_id: int,
    medication_changes: list[str] | None,
    pregnant: bool | None,
    ride_home_arranged: bool,
    substance_use: bool | None = None,
) -> ScreeningResult | None:
    """CI-21: re-confirm medicines, pregnancy, substance use and the ride home at a visit.

    ``medication_changes`` are medicines started or changed since the last screening; they are
    added to the previous list (a stopped medicine needs a new full screening). ``pregnant`` None
    means not asked. When a medicine is new or the patient is now pregnant, a new screening is
    recorded with the previous answers and the changes (so the flags are recomputed) and
    returned; otherwise None. A prescriber's override carries over when the new screening raises
    no OVERRIDE flag the override did not already cover. The re-confirmation itself is always
    audited, with the ride home.
    """
    patient = get_patient(patient_id)
    previous = latest_screening(patient_id)
    if previous is None:
        raise ScreeningIncomplete("Record a screening before the visit.")
    answers = dict(previous.answers)
    changed: list[str] = []
    if medication_changes:
        before = list(answers.get("medications") or [])
        merged = _clean_medications([*before, *medication_changes])
        if len(merged) > len(before):
            answers["medications"] = merged
            changed.append("medications")
    if pregnant is True and answers.get("pregnant") is not True:
        answers["pregnant"] = True
        changed.append("pregnant")
    if substance_use is True and answers.get("substance_use_disorder") is not True:
        answers["substance_use_disorder"] = True
        changed.append("substance_use_disorder")
    result = None
    if changed:
        result = _store_screening(actor=actor, patient=patient, answers=answers, location_id=previous.location_id)
        _carry_override(previous, result)
    audit.record(
        actor=actor,
        tag=Tag.patients_screening_reconfirm,
        subject=("patient", patient.id),
        data={
            "previous_screening_id": previous.id,
            "changed": changed,
            "ride_home_arranged": ride_home_arranged,
            **({"new": _decision(result), "override_carried": result.overridden_at is not None} if result else {}),
        },
    )
    return result


def _carry_override(previous: ScreeningResult, result: ScreeningResult) -> None:
    if previous.overridden_at is None or result.eligibility != Eligibility.review:
        return
    covered = {f["code"] for f in screening.flags_at(previous.flags, Level.OVERRIDE)}
    if {f["code"] for f in screening.flags_at(result.flags, Level.OVERRIDE)} <= covered:
        result.override_reason = previous.override_reason
        result.overridden_by_id = previous.overridden_by_id
        result.overridden_at = previous.overridden_at
        db.session.flush()

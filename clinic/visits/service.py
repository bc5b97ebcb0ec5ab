"""The dosing visit up to the dose: check-in, pre-dose gates, vitals, the BP hold and the order.

Every change locks the appointment's course first (clinic.scheduling.service.appointment_for_change),
so two people acting on one visit at once are serialised and the second sees what the first did.
Services only flush: the request's unit of work commits the visit, its ledger entries and its
access-log row together (clinic.core.tx).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from clinic.audit import service as audit
from clinic.audit.tags import Tag
from clinic.auth.models import Role, User
from clinic.core.errors import Conflict, DomainError, PermissionDenied, ValidationFailed
from clinic.core.fields import format_mg
from clinic.core.time import happened_at, local_day, utcnow
from clinic.extensions import db
from clinic.locations.models import Location
from clinic.patients import service as patients
from clinic.patients.models import Patient, PatientWeight
from clinic.scheduling import service as scheduling
from clinic.scheduling.errors import refused_transition
from clinic.scheduling.models import TRANSITIONS, Appointment, AppointmentSeries, AppointmentStatus
from clinic.visits import rules
from clinic.visits.errors import NoHold
from clinic.visits.models import AlertKind, DoseItem, ObservationAlert, Visit, VisitEvent, VitalSign

S = AppointmentStatus
#: check-in is on the visit's day: from this long before the booked start ...
CHECK_IN_EARLY = timedelta(hours=4)
#: ... to this long after it (back-charting the same day); later, mark the visit missed
CHECK_IN_LATE = timedelta(hours=12)
#: a pre-dose reading may be charted from this long before check-in (taken in the waiting room)
VITALS_BEFORE_CHECK_IN = timedelta(minutes=30)
#: states in which a visit is under way and takes vitals
UNDER_WAY = frozenset({S.checked_in, S.dosed, S.observing, S.ready_for_discharge})


# --- reading a visit -----------------------------------------------------------------------------


def visit_for(appointment_id: int, *, lock: bool) -> tuple[Appointment, Visit | None]:
    appt = scheduling.appointment_for_change(appointment_id) if lock else scheduling.get_appointment(appointment_id)
    audit.touched("patient", appt.patient_id)  # the access log names whose visit it was (HIP-01)
    visit = db.session.scalar(select(Visit).where(Visit.appointment_id == appt.id))
    if visit is not None and lock:
        db.session.refresh(visit)
    return appt, visit


def open_visit(appointment_id: int, *, doing: str, states: frozenset[AppointmentStatus]) -> tuple[Appointment, Visit]:
    """The locked appointment and its visit, if it is in one of ``states``; else a 409 naming where it is."""
    appt, visit = visit_for(appointment_id, lock=True)
    current = S(appt.status)
    if current not in states or visit is None:
        raise refused_transition(current, TRANSITIONS[current], doing=doing)
    return appt, visit


def protocol_rules(visit: Visit) -> dict[str, Any]:
    series = db.session.get(AppointmentSeries, visit.series_id)
    assert series is not None
    return dict(series.protocol.rules)


def last_step_at(visit: Visit) -> datetime:
    last = db.session.scalar(select(func.max(VisitEvent.occurred_at)).where(VisitEvent.visit_id == visit.id))
    return last or visit.checked_in_at


def not_before(at: datetime, earliest: datetime, field: str, what: str) -> None:
    """The visit's order: a step cannot have happened before the one it follows."""
    if at < earliest:
        raise ValidationFailed(errors={field: [f"Cannot be before {what} ({earliest.isoformat()})."]})


def step(
    appt: Appointment, visit: Visit, to: AppointmentStatus, *, actor: User, at: datetime, note: str | None = None
) -> None:
    """Move the visit along TRANSITIONS and stamp the move: who, when it happened, when it was written."""
    before = appt.status
    scheduling.move(appt, to)
    db.session.add(
        VisitEvent(
            visit_id=visit.id, from_status=before, to_status=to.value, actor_id=actor.id, occurred_at=at, note=note
        )
    )


def _minutes(delta: timedelta) -> int:
    return int(delta / timedelta(minutes=1))


# --- check-in ------------------------------------------------------------------------------------


def after_missed_maintenance(appt: Appointment) -> bool:
    """SPR-23: the course's previous visit was missed during maintenance."""
    previous = db.session.scalar(
        select(Appointment)
        .where(
            Appointment.series_id == appt.series_id,
            Appointment.seq < appt.seq,
            Appointment.status != S.cancelled.value,
        )
        .order_by(Appointment.seq.desc())
        .limit(1)
    )
    return previous is not None and previous.status in (S.missed, S.no_show) and previous.phase != "induction"


def check_in(
    *,
    actor: User,
    appointment_id: int,
    ride_home_arranged: bool,
    medication_changes: list[str] | None = None,
    pregnant: bool | None = None,
    substance_use: bool | None = None,
    occurred_at: datetime | None = None,
    preparation: dict[str, bool | None] | None = None,
    ride_contact: str | None = None,
    symptoms_worsened: bool | None = None,
) -> Visit:
    """The patient has arrived: re-confirm the screening (CI-21), the ride home (SPR-16) and the
    preparation (SPR-09), and open the visit."""
    appt, visit = visit_for(appointment_id, lock=True)
    at = happened_at(occurred_at, "occurred_at")
    current = S(appt.status)
    if S.checked_in not in TRANSITIONS[current] or visit is not None:
        raise refused_transition(current, TRANSITIONS[current], doing="check in")
    if at < appt.starts_at and appt.starts_at - at > CHECK_IN_EARLY:
        raise ValidationFailed(errors={"occurred_at": ["Too early: check in at most 4 hours before the visit."]})
    if at > appt.starts_at and at - appt.starts_at > CHECK_IN_LATE:
        raise ValidationFailed(
            errors={"occurred_at": ["This visit was more than 12 hours ago: mark it missed or no-show instead."]}
        )
    series = db.session.get(AppointmentSeries, appt.series_id)
    assert series is not None
    screening = patients.reconfirm_at_visit(
        actor=actor,
        patient_id=appt.patient_id,
        medication_changes=medication_changes,
        pregnant=pregnant,
        substance_use=substance_use,
        ride_home_arranged=ride_home_arranged,
    )
    screening_id = screening.id if screening else patients.latest_screening(appt.patient_id).id  # type: ignore[union-attr]
    visit = Visit(
        appointment_id=appt.id,
        patient_id=appt.patient_id,
        location_id=appt.location_id,
        series_id=appt.series_id,
        protocol_id=series.protocol_id,
        checked_in_at=at,
        checked_in_by_id=actor.id,
        ride_home_arranged=ride_home_arranged,
        ride_contact=ride_contact,
        preparation=dict(preparation or {}),
        screening_id=screening_id,
        symptoms_worsened=symptoms_worsened if after_missed_maintenance(appt) else None,
    )
    db.session.add(visit)
    db.session.flush()
    step(appt, visit, S.checked_in, actor=actor, at=at)
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.visits_visit_check_in,
        subject=("appointment", appt.id),
        data={"visit_id": visit.id, "ride_home_arranged": ride_home_arranged, "preparation": visit.preparation},
    )
    return visit


def update_arrangements(
    *,
    actor: User,
    appointment_id: int,
    ride_home_arranged: bool | None = None,
    ride_contact: str | None = None,
    preparation: dict[str, bool | None] | None = None,
    symptoms_worsened: bool | None = None,
) -> Visit:
    """Before the dose, the ride home or the preparation can be settled after check-in."""
    appt, visit = open_visit(appointment_id, doing="change the arrangements", states=frozenset({S.checked_in}))
    if ride_home_arranged is not None:
        visit.ride_home_arranged = ride_home_arranged
    if ride_contact is not None:
        visit.ride_contact = ride_contact
    if preparation:
        visit.preparation = {**(visit.preparation or {}), **preparation}
    if symptoms_worsened is not None and after_missed_maintenance(appt):
        visit.symptoms_worsened = symptoms_worsened
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.visits_visit_arrangements,
        subject=("appointment", appt.id),
        data={"ride_home_arranged": visit.ride_home_arranged, "preparation": visit.preparation},
    )
    return visit


# --- gates ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    code: str
    message: str


def hold_reading(visit: Visit, rules_: dict[str, Any]) -> VitalSign | None:
    """SPR-11: the pre-dose reading above the threshold that holds the dose, unless a prescriber
    released the hold after it was written. A high reading written after a release holds again."""
    for reading in sorted(visit.vitals, key=lambda v: v.id, reverse=True):
        if reading.minutes_after_dose is not None:
            continue
        if visit.hold_released_through_id is not None and reading.id <= visit.hold_released_through_id:
            return None
        if rules.holds_dose(rules_, reading.systolic, reading.diastolic):
            return reading
    return None


def latest_weight(patient_id: int, *, at: datetime) -> PatientWeight | None:
    return db.session.scalar(
        select(PatientWeight)
        .where(PatientWeight.patient_id == patient_id, PatientWeight.measured_at <= at)
        .order_by(PatientWeight.measured_at.desc(), PatientWeight.id.desc())
        .limit(1)
    )


def gates(appt: Appointment, visit: Visit, *, at: datetime) -> list[Gate]:
    """Every pre-dose check that fails at ``at``, each in words for the page (SPR-08..11, SPR-16,
    IVK-03; the screening as re-confirmed at check-in). An empty list means the dose may be given."""
    rules_ = protocol_rules(visit)
    failed: list[Gate] = []
    patient = db.session.get(Patient, visit.patient_id)
    location = db.session.get(Location, visit.location_id)
    assert patient is not None
    assert location is not None
    drug = str(rules_.get("drug", ""))
    try:  # CI-22: a screening waiting for review holds the dose; flags judged at this location
        patients.assert_bookable(
            patient_id=patient.id, on=local_day(at, patient.timezone), drug=drug, location_id=location.id
        )
    except DomainError as exc:
        failed.append(Gate("screening", exc.detail))
    if rules_.get("requires_rems"):
        certified = location.rems_certified_until
        if certified is None or certified < local_day(at, location.timezone):
            failed.append(Gate("rems_location", "This location is not certified in the SPRAVATO REMS (SPR-03)."))
    if rules_["dose"]["kind"] == "mg_per_kg":
        weight = latest_weight(patient.id, at=at)
        days = int(rules.rule(rules_, "weight_valid_days"))
        if weight is None:
            failed.append(Gate("weight", "Record the patient's weight: the dose is weight-based."))
        elif at - weight.measured_at > timedelta(days=days):
            failed.append(Gate("weight", f"The latest weight is older than {days} days: weigh the patient."))
    if not visit.ride_home_arranged:
        failed.append(Gate("ride_home", "No ride home is arranged: the patient may not drive today (SPR-16)."))
    unmet = [name for name, ok in (visit.preparation or {}).items() if ok is False]
    if unmet:
        failed.append(
            Gate("preparation", "Preparation not met: " + ", ".join(p.replace("_", " ") for p in unmet) + ".")
        )
    if not any(v.minutes_after_dose is None and v.taken_at <= at for v in visit.vitals):
        failed.append(Gate("pre_dose_vitals", "Record the pre-dose vital signs."))
    held = hold_reading(visit, rules_)
    if held is not None:
        sys_max, dia_max = rules.hold_threshold(rules_)
        failed.append(
            Gate(
                "bp_hold",
                f"Blood pressure {held.systolic}/{held.diastolic} is above {sys_max}/{dia_max}: the dose is held "
                "until a prescriber records a risk/benefit decision.",
            )
        )
    return failed


def release_hold(*, actor: User, appointment_id: int, reason: str) -> Visit:
    """SPR-11: a prescriber weighs the BP rise against the benefit and lets the dose go ahead."""
    if actor.role_enum != Role.prescriber:
        raise PermissionDenied("Only a prescriber can release a blood-pressure hold.")
    if not reason.strip():
        raise ValidationFailed(errors={"reason": ["Say why the dose may go ahead."]})
    appt, visit = open_visit(appointment_id, doing="release a hold", states=frozenset({S.checked_in}))
    held = hold_reading(visit, protocol_rules(visit))
    if held is None:
        raise NoHold("No blood pressure above the threshold is holding this dose.")
    visit.hold_released_at, visit.hold_released_by_id, visit.hold_release_reason = utcnow(), actor.id, reason
    # The release covers the readings the prescriber saw, by id (not by clocks that may disagree).
    visit.hold_released_through_id = max(v.id for v in visit.vitals)
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.visits_hold_release,
        subject=("appointment", appt.id),
        data={"vital_sign_id": held.id, "bp": f"{held.systolic}/{held.diastolic}"},
    )
    return visit


# --- vitals --------------------------------------------------------------------------------------


def overdue_minutes() -> int:
    return int(current_app.config.get("VITALS_OVERDUE_MINUTES", 10))


def satisfy_checkpoints(visit: Visit, reading: VitalSign) -> None:
    """A post-dose reading meets every checkpoint it is not too early for that is still open; one
    taken after the overdue window is flagged late (and carried to the monitoring form)."""
    if reading.minutes_after_dose is None:
        return
    minutes = reading.minutes_after_dose
    window = overdue_minutes()
    # A reading counts for one checkpoint: the last whose window has opened. Its window closes when
    # the next one's opens, so a 2-hour reading is never the 40-minute BP (SPR-10, SPR-19).
    points = rules.checkpoints(protocol_rules(visit))
    opened = [c for c in points if c - rules.EARLY_MINUTES <= minutes]
    if not opened:
        return
    checkpoint = opened[-1]
    alerts = db.session.scalars(
        select(ObservationAlert).where(
            ObservationAlert.visit_id == visit.id,
            ObservationAlert.kind.in_((AlertKind.vitals_due.value, AlertKind.vitals_overdue.value)),
            ObservationAlert.satisfied_at.is_(None),
            ObservationAlert.checkpoint == checkpoint,
        )
    ).all()
    met: set[int] = set()
    late: set[int] = set()
    for alert in alerts:
        alert.satisfied_at = reading.taken_at
        alert.satisfied_late = minutes >= alert.checkpoint + window
        met.add(alert.checkpoint)
        if alert.satisfied_late:
            late.add(alert.checkpoint)
    reading.checkpoints = sorted(set(reading.checkpoints or []) | met)
    reading.late_for = sorted(set(reading.late_for or []) | late)


def record_vitals(
    *,
    actor: User,
    appointment_id: int,
    systolic: int,
    diastolic: int,
    heart_rate: int,
    spo2: int | None = None,
    respiratory_rate: int | None = None,
    sedation: int | None = None,
    dissociation: int | None = None,
    note: str | None = None,
    taken_at: datetime | None = None,
) -> VitalSign:
    appt, visit = open_visit(appointment_id, doing="record vital signs", states=UNDER_WAY)
    at = happened_at(taken_at, "taken_at")
    not_before(at, visit.checked_in_at - VITALS_BEFORE_CHECK_IN, "taken_at", "30 minutes before check-in")
    if visit.discharged_at is not None:
        raise refused_transition(S(appt.status), TRANSITIONS[S(appt.status)], doing="record vital signs")
    rules_ = protocol_rules(visit)
    values = {
        "systolic": systolic,
        "diastolic": diastolic,
        "heart_rate": heart_rate,
        "spo2": spo2,
        "respiratory_rate": respiratory_rate,
        "sedation": sedation,
        "dissociation": dissociation,
    }
    after = None
    if visit.dose_started_at is not None and at >= visit.dose_started_at:
        after = _minutes(at - visit.dose_started_at)
    reading = VitalSign(
        visit_id=visit.id,
        taken_at=at,
        recorded_at=utcnow(),
        recorded_by_id=actor.id,
        note=note,
        minutes_after_dose=after,
        checkpoints=[],
        late_for=[],
        out_of_range=rules.out_of_range(rules_, values),
        **values,
    )
    db.session.add(reading)
    db.session.flush()
    satisfy_checkpoints(visit, reading)
    # Discharge criteria can lapse again: a reading out of range sends a ready patient back.
    if appt.status == S.ready_for_discharge and reading.out_of_range:
        step(appt, visit, S.observing, actor=actor, at=max(at, last_step_at(visit)), note="vital signs out of range")
    db.session.flush()
    db.session.expire(visit, ["vitals"])
    audit.record(
        actor=actor,
        tag=Tag.visits_vitals_record,
        subject=("appointment", appt.id),
        data={"vital_sign_id": reading.id, "late_for": reading.late_for, "out_of_range": len(reading.out_of_range)},
    )
    return reading


# --- the prescriber's order ----------------------------------------------------------------------


def _course_history(visit: Visit) -> tuple[bool, bool]:
    """(first dose of the course, the course already had a dose of the lower strength)."""
    doses = db.session.scalars(
        select(Visit.dose_ug).where(
            Visit.series_id == visit.series_id, Visit.id != visit.id, Visit.dose_ug.is_not(None)
        )
    ).all()
    rules_ = protocol_rules(visit)
    floor = rules_["dose"].get("higher_only_after")
    lower = floor is not None and any(d is not None and d <= rules.ug(floor) for d in doses)
    return not doses, lower


def dose_bounds(visit: Visit, *, at: datetime) -> rules.DoseBounds:
    rules_ = protocol_rules(visit)
    if rules_["dose"]["kind"] == "mg_per_kg":
        weight = latest_weight(visit.patient_id, at=at)
        if weight is None:
            raise ValidationFailed(errors={"dose_mg": ["Record the patient's weight: the dose is weight-based."]})
        return rules.weight_based(rules_, weight.weight_g)
    first, had_lower = _course_history(visit)
    return rules.fixed(rules_, first_in_course=first, had_lower=had_lower)


def check_dose(bounds: rules.DoseBounds, dose_ug: int, *, reason: str | None, field: str = "dose_mg") -> None:
    """A fixed dose must be one the course allows now; a weight-based one outside the protocol's
    bounds needs the prescriber's reason (IVK-03, SPR-21)."""
    if bounds.options_ug:
        if dose_ug not in bounds.options_ug:
            allowed = " or ".join(format_mg(o) for o in bounds.options_ug)
            raise ValidationFailed(errors={field: [f"This course allows {allowed} mg at this visit (SPR-21)."]})
        return
    if not bounds.min_ug <= dose_ug <= bounds.max_ug and not (reason or "").strip():
        raise ValidationFailed(
            errors={
                field: [
                    f"{format_mg(dose_ug)} mg is outside {format_mg(bounds.min_ug)}-{format_mg(bounds.max_ug)} mg "
                    "for this weight: the prescriber must give a reason."
                ]
            }
        )


def order_dose(*, actor: User, appointment_id: int, dose_ug: int | None = None, reason: str | None = None) -> Visit:
    """The prescriber's order for this visit; the nurse gives what is ordered."""
    if actor.role_enum != Role.prescriber:
        raise PermissionDenied("Only a prescriber can order a dose.")
    appt, visit = open_visit(appointment_id, doing="order a dose", states=frozenset({S.checked_in}))
    now = utcnow()
    bounds = dose_bounds(visit, at=now)
    dose = dose_ug if dose_ug is not None else bounds.target_ug
    check_dose(bounds, dose, reason=reason)
    visit.ordered_ug, visit.ordered_by_id, visit.ordered_at, visit.order_reason = dose, actor.id, now, reason
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.visits_dose_order,
        subject=("appointment", appt.id),
        data={"dose_mg": format_mg(dose), "outside_bounds": bool(reason)},
    )
    return visit


def check_ledger_link(*, appointment_id: int, patient_id: int) -> None:
    """A visit's doses are recorded through the visit (POST /appointments/{id}/dose), where its gates,
    order and totals are kept: a ledger administration posted on its own cannot name a visit."""
    appt, _ = visit_for(appointment_id, lock=False)
    if appt.patient_id != patient_id:
        raise Conflict(
            "That appointment is another patient's",
            errors={"appointment_id": ["That appointment is another patient's."]},
        )
    raise refused_transition(
        S(appt.status), TRANSITIONS[S(appt.status)], doing="record a visit's dose outside the visit"
    )


def check_correction(*, location_id: int, corrects_seq: int) -> None:
    """An entry a visit posted (its dose or waste) is not reversed behind the visit's back: the
    visit's record of the dose would no longer match the ledger."""
    from clinic.inventory.models import LedgerEntry

    entry_id = db.session.scalar(
        select(LedgerEntry.id).where(LedgerEntry.location_id == location_id, LedgerEntry.seq == corrects_seq)
    )
    if entry_id is None:
        return
    linked = db.session.scalar(
        select(DoseItem.id).where(
            (DoseItem.administration_entry_id == entry_id)
            | (DoseItem.waste_entry_id == entry_id)
            | (DoseItem.remainder_entry_id == entry_id)
        )
    )
    if linked is not None:
        raise Conflict("This entry belongs to a visit's dose: it cannot be corrected on its own.")

"""The SPRAVATO REMS Patient Monitoring Form (SPR-18, SPR-19), filled from the visit's own records.

Nothing on the form is typed twice: the patient, the dose, the devices and their lots, the times,
the blood pressures, the pulse oximetry and the adverse events all come from what was charted
during the session. The form exists only for an esketamine session (a protocol with
``requires_rems``) once the patient has been discharged; it is due seven days after the session
(the ``pmf_overdue`` alert written at the dose comes on day six, clinic.visits.dosing).

Where the records say something the person submitting must know (an early discharge under the
120-minute minimum, a late 40-minute reading, a pre-dose reading over the hold threshold), the
form says so in words (``MonitoringForm.flags``) rather than leaving it to be noticed.

The submission's reference is stored once: a conditional UPDATE (``WHERE pmf_reference IS NULL``)
decides which of two racing submissions wins, and the loser is told the winner's reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from clinic.audit import service as audit
from clinic.audit.tags import Tag
from clinic.auth.models import User
from clinic.core.errors import Conflict, ValidationFailed
from clinic.core.fields import format_mg
from clinic.core.time import local_day, to_zone, today_at, utcnow
from clinic.extensions import db
from clinic.inventory.models import Container
from clinic.locations.models import Location
from clinic.patients import screening
from clinic.patients import service as patients
from clinic.patients.models import Patient, ScreeningResult
from clinic.reminders import service as reminders
from clinic.scheduling.models import Appointment, Protocol
from clinic.visits import rules
from clinic.visits.models import AlertKind, ObservationAlert, Visit, VitalSign
from clinic.visits.service import protocol_rules, visit_for

#: SPR-18: submitted within seven days of the session
DUE_DAYS = 7
#: SPR-19: the form's total duration must be at least this many minutes (SPR-14/15)
MINIMUM_MINUTES = 120
#: SPR-10: the blood pressure about 40 minutes after the first device
BP_CHECKPOINT = 40
#: the longest submission reference kept (Visit.pmf_reference)
REFERENCE_MAX = 100


class FormNotAvailable(Conflict):
    code = "monitoring_form_unavailable"
    title = "There is no REMS Patient Monitoring Form for this visit"


class AlreadySubmitted(Conflict):
    code = "monitoring_form_submitted"
    title = "The monitoring form was already submitted"


# --- the concomitant medicines the form asks about ---------------------------------------------


@dataclass(frozen=True)
class FormClass:
    """One box on the form, and the names (drawn from the screening's classes) that tick it."""

    key: str
    label: str
    names: tuple[str, ...]


def _names(code: str) -> tuple[str, ...]:
    return next(mc.names for mc in screening.MEDICATION_CLASSES if mc.code == code)


# SPR-19: benzodiazepines, non-benzodiazepine sedative-hypnotics, psychostimulants, MAOIs and (in
# newer versions of the form) opioids. The screening's classes (CI-10..12) group them more
# coarsely; every name here is also one of theirs (tests/visits/test_pmf.py checks it).
# fmt: off
FORM_CLASSES: tuple[FormClass, ...] = (
    FormClass("benzodiazepines", "Benzodiazepines", _names("CI-10")),
    FormClass("sedative_hypnotics", "Non-benzodiazepine sedative hypnotics", (
        "zolpidem", "zaleplon", "eszopiclone", "phenobarbital", "butalbital", "secobarbital",
        "ambien", "sonata", "lunesta", "fioricet",
    )),
    FormClass("psychostimulants", "Psychostimulants", (
        "amphetamine", "dextroamphetamine", "lisdexamfetamine", "methamphetamine", "methylphenidate",
        "dexmethylphenidate", "serdexmethylphenidate", "modafinil", "armodafinil",
        "adderall", "dexedrine", "zenzedi", "evekeo", "vyvanse", "desoxyn", "ritalin", "concerta",
        "daytrana", "focalin", "azstarys", "provigil", "nuvigil",
    )),
    FormClass("maois", "Monoamine oxidase inhibitors (MAOIs)", (
        "phenelzine", "tranylcypromine", "isocarboxazid", "selegiline", "rasagiline",
        "nardil", "parnate", "marplan", "emsam", "eldepryl", "zelapar", "azilect",
    )),
    FormClass("opioids", "Opioids", (
        "morphine", "oxycodone", "hydrocodone", "hydromorphone", "oxymorphone", "codeine", "fentanyl",
        "methadone", "buprenorphine", "tramadol", "tapentadol", "meperidine", "levorphanol",
        "butorphanol", "nalbuphine", "pentazocine",
        "oxycontin", "percocet", "vicodin", "norco", "dilaudid", "suboxone", "subutex", "sublocade",
        "ultram", "nucynta", "demerol", "duragesic",
    )),
)
# fmt: on
_FORM_WORDS = tuple((fc, tuple(screening._words(n) for n in fc.names)) for fc in FORM_CLASSES)
#: the screening's sedating classes: a medicine in them that ticks no box is still shown
_SEDATING = ("CI-10", "CI-11", "CI-12")


def form_medications(medications: Iterable[str]) -> tuple[dict[str, list[str]], list[str]]:
    """(box key -> the entered names that tick it, in the order entered; other sedating medicines)."""
    entered = [m for m in medications if m.strip()]
    boxes: dict[str, list[str]] = {fc.key: [] for fc in FORM_CLASSES}
    ticked: set[str] = set()
    for name in entered:
        words = screening._words(name)
        for fc, names in _FORM_WORDS:
            if any(n in words for n in names):
                boxes[fc.key].append(name.strip())
                ticked.add(name.strip())
    by_screening = screening.classify_medications(entered)
    other = []
    for code in _SEDATING:
        for name in by_screening.get(code, []):
            if name not in ticked and name not in other:
                other.append(name)
    return boxes, other


# --- the form ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One vital-sign reading as the form shows it."""

    vital_sign_id: int
    taken_at: datetime
    minutes_after_dose: int | None
    systolic: int
    diastolic: int
    heart_rate: int
    spo2: int | None
    sedation: int | None
    dissociation: int | None
    checkpoints: list[int]
    late_for: list[int]
    out_of_range: list[dict[str, Any]]

    @property
    def bp(self) -> str:
        return f"{self.systolic}/{self.diastolic}"

    @property
    def late(self) -> bool:
        return bool(self.late_for)


@dataclass(frozen=True)
class PatientPart:
    first_name: str
    middle_initial: str | None
    last_name: str
    date_of_birth: date
    sex: str | None
    first_treatment: bool
    enrolled: bool
    enrolled_on: date | None


@dataclass(frozen=True)
class Medications:
    #: box key -> the medicines that tick it (an empty list: the box stays empty)
    boxes: dict[str, list[str]]
    #: sedating medicines the screening knows that tick none of the form's boxes
    other_sedating: list[str]
    screened_at: datetime | None

    def ticked(self, key: str) -> bool:
        return bool(self.boxes.get(key))


@dataclass(frozen=True)
class Provider:
    user_id: int
    name: str
    phone: str | None
    email: str


@dataclass(frozen=True)
class Setting:
    location_id: int
    name: str
    address: str
    timezone: str


@dataclass(frozen=True)
class Device:
    container_id: int
    lot_number: str
    administered_at: datetime
    minutes_from_first: int
    dose_mg: str


@dataclass(frozen=True)
class Session:
    treatment_date: date
    dose_mg: str
    #: "56", "84" or "other": the box ticked on the form
    dose_choice: str
    lot_numbers: list[str]
    devices: list[Device]
    started_at: datetime
    discharged_at: datetime
    #: from the first device to the end of monitoring (discharge), whole minutes (SPR-15)
    duration_minutes: int
    duration_meets_minimum: bool
    early_discharge_reason: str | None
    #: the REMS evaluation question: minutes from the first device until the patient was ready
    ready_minutes: int | None


@dataclass(frozen=True)
class Vitals:
    acceptable_before_dose: bool | None
    acceptable_before_completion: bool | None
    bp_before_dose: Reading | None
    bp_at_40: Reading | None
    bp_before_completion: Reading | None
    spo2: list[Reading]
    late: list[Reading]


@dataclass(frozen=True)
class AdverseEvent:
    kind: str
    label: str
    occurred: bool
    #: minutes after the first device of the first reading that showed it
    first_minutes: int | None = None
    #: the worst value charted (lowest MOAA/S, highest dissociation, lowest SpO2)
    worst: int | None = None
    #: resolved by discharge (None: it did not occur)
    resolved: bool | None = None
    detail: str = ""


@dataclass(frozen=True)
class Flag:
    code: str
    message: str


@dataclass(frozen=True)
class Submission:
    reference: str | None
    submitted_at: datetime | None
    submitted_by_id: int | None
    submitted_by_name: str | None


@dataclass(frozen=True)
class MonitoringForm:
    appointment_id: int
    visit_id: int
    patient: PatientPart
    medications: Medications
    provider: Provider
    setting: Setting
    session: Session
    vitals: Vitals
    adverse_events: list[AdverseEvent]
    flags: list[Flag]
    due_on: date
    overdue: bool
    submission: Submission
    generated_at: datetime = field(default_factory=utcnow)

    @property
    def submitted(self) -> bool:
        return self.submission.reference is not None


# --- reading the records -------------------------------------------------------------------------


def _minutes(delta: timedelta) -> int:
    return int(delta / timedelta(minutes=1))


def _reading(v: VitalSign) -> Reading:
    return Reading(
        vital_sign_id=v.id,
        taken_at=v.taken_at,
        minutes_after_dose=v.minutes_after_dose,
        systolic=v.systolic,
        diastolic=v.diastolic,
        heart_rate=v.heart_rate,
        spo2=v.spo2,
        sedation=v.sedation,
        dissociation=v.dissociation,
        checkpoints=list(v.checkpoints or []),
        late_for=list(v.late_for or []),
        out_of_range=list(v.out_of_range or []),
    )


def form_visit(appointment_id: int) -> tuple[Appointment, Visit, dict[str, Any]]:
    """SPR-18: the visit, if it is an esketamine (REMS) session that has ended; else a 409 saying why."""
    appt, visit = visit_for(appointment_id, lock=False)
    if visit is None:
        raise FormNotAvailable(f"This appointment is {appt.status}: the patient was never checked in.")
    rules_ = protocol_rules(visit)
    if not rules_.get("requires_rems"):
        drug, route = rules_.get("drug", "?"), rules_.get("route", "?")
        raise FormNotAvailable(
            "The REMS Patient Monitoring Form is for SPRAVATO (esketamine) sessions only; "
            f"this visit is {drug} {route}."
        )
    if visit.discharged_at is None or visit.dose_started_at is None:
        raise FormNotAvailable(
            f"The form is completed after the session ends: this visit is {appt.status}, not yet discharged."
        )
    return appt, visit, rules_


def _first_treatment(visit: Visit) -> bool:
    """No earlier esketamine (REMS protocol) dose for this patient, in this course or another."""
    assert visit.dose_started_at is not None
    earlier = db.session.scalars(
        select(Visit.protocol_id).where(
            Visit.patient_id == visit.patient_id,
            Visit.id != visit.id,
            Visit.dose_started_at.is_not(None),
            Visit.dose_started_at < visit.dose_started_at,
        )
    ).all()
    if not earlier:
        return True
    protocols = db.session.scalars(select(Protocol).where(Protocol.id.in_(set(earlier)))).all()
    return not any(p.rules.get("requires_rems") for p in protocols)


def _medications(visit: Visit) -> Medications:
    """The medicines of the screening the visit re-confirmed at check-in (CI-21), else the latest."""
    result = db.session.get(ScreeningResult, visit.screening_id) if visit.screening_id else None
    if result is None:
        result = patients.latest_screening(visit.patient_id)
    names = [str(m) for m in ((result.answers or {}).get("medications") or [])] if result else []
    boxes, other = form_medications(names)
    return Medications(boxes=boxes, other_sedating=other, screened_at=result.screened_at if result else None)


def _devices(visit: Visit) -> list[Device]:
    assert visit.dose_started_at is not None
    containers = {
        c.id: c
        for c in db.session.scalars(select(Container).where(Container.id.in_([d.container_id for d in visit.doses])))
    }
    return [
        Device(
            container_id=item.container_id,
            lot_number=containers[item.container_id].lot_number,
            administered_at=item.administered_at,
            minutes_from_first=_minutes(item.administered_at - visit.dose_started_at),
            dose_mg=format_mg(item.administered_ug),
        )
        for item in visit.doses
    ]


def _event(
    kind: str,
    label: str,
    post: list[VitalSign],
    value: Callable[[VitalSign], int | None],
    bad: Callable[[int], bool],
    worst: Callable[[Iterable[int]], int],
    resolved_at_discharge: bool,
    unit: str,
) -> AdverseEvent:
    """An adverse event from the post-dose readings: whether any showed it, and whether the last
    reading that charted the value (and the discharging clinician) says it had resolved."""
    charted = [(v, x) for v in post if (x := value(v)) is not None]
    shown = [(v, x) for v, x in charted if bad(x)]
    if not shown:
        return AdverseEvent(kind, label, occurred=False, detail="Not observed." if charted else "Not charted.")
    first, _ = shown[0]
    last_value = charted[-1][1]
    resolved = not bad(last_value) and resolved_at_discharge
    worst_value = worst(x for _, x in shown)
    outcome = "resolved by discharge" if resolved else "not resolved at discharge"
    detail = f"First at {first.minutes_after_dose} min; worst {unit} {worst_value}; {outcome} ({unit} {last_value})."
    return AdverseEvent(kind, label, True, first.minutes_after_dose, worst_value, resolved, detail)


def _adverse_events(visit: Visit, rules_: dict[str, Any], post: list[VitalSign]) -> list[AdverseEvent]:
    """SPR-19, SPR-17: sedation (MOAA/S below 5), dissociation (above 0) and possible respiratory
    depression (SpO2 below the protocol's floor, 92 by default) during observation (SPR-13)."""
    checks = visit.discharge_checks or {}

    def low_spo2(x: int) -> bool:
        return bool(rules.out_of_range(rules_, {"spo2": x}))

    return [
        _event(
            "sedation",
            "Sedation",
            post,
            lambda v: v.sedation,
            lambda x: x < 5,
            min,
            bool(checks.get("sedation_resolved", True)),
            "MOAA/S",
        ),
        _event(
            "dissociation",
            "Dissociation",
            post,
            lambda v: v.dissociation,
            lambda x: x > 0,
            max,
            bool(checks.get("dissociation_resolved", True)),
            "dissociation",
        ),
        _event(
            "respiratory_depression",
            "Respiratory depression (SpO2 below the limit)",
            post,
            lambda v: v.spo2,
            low_spo2,
            min,
            True,
            "SpO2",
        ),
    ]


def _local(at: datetime, tz: str) -> str:
    return to_zone(at, tz).strftime("%H:%M")


def build_form(appointment_id: int) -> MonitoringForm:
    """Every SPR-19 field of one session, from its records."""
    appt, visit, rules_ = form_visit(appointment_id)
    assert visit.dose_started_at is not None
    assert visit.discharged_at is not None
    patient = db.session.get(Patient, visit.patient_id)
    location = db.session.get(Location, visit.location_id)
    nurse = db.session.get(User, visit.dosed_by_id) if visit.dosed_by_id else None
    assert patient is not None
    assert location is not None
    assert nurse is not None
    tz = location.timezone
    treated_on = local_day(visit.dose_started_at, tz)
    enrolled_on = patients.rems_enrolled_on(patient.id)
    flags: list[Flag] = []

    devices = _devices(visit)
    lots = list(dict.fromkeys(d.lot_number for d in devices))
    dose = format_mg(visit.dose_ug or 0)
    duration = _minutes(visit.discharged_at - visit.dose_started_at)
    if duration < MINIMUM_MINUTES:
        why = f" The prescriber's reason: {visit.early_discharge_reason}" if visit.early_discharge_reason else ""
        flags.append(
            Flag(
                "early_discharge",
                f"Early discharge: the total duration is {duration} minutes, under the REMS minimum of "
                f"{MINIMUM_MINUTES} from the first device.{why}",
            )
        )
    ready = _minutes(visit.ready_at - visit.dose_started_at) if visit.ready_at else None

    readings = [v for v in visit.vitals if v.taken_at <= visit.discharged_at]
    pre = [v for v in readings if v.minutes_after_dose is None and v.taken_at <= visit.dose_started_at]
    post = [v for v in readings if v.minutes_after_dose is not None]
    before_dose = pre[-1] if pre else None
    at_40 = next((v for v in post if BP_CHECKPOINT in (v.checkpoints or [])), None)
    before_end = post[-1] if post else None
    if before_dose is None:
        flags.append(Flag("no_pre_dose_bp", "No blood pressure was charted before the first device."))
    elif before_dose.out_of_range:
        values = ", ".join(
            f"{o['field'].replace('_', ' ')} {o['value']} ({o['limit']})" for o in before_dose.out_of_range
        )
        released = f" A prescriber released the hold: {visit.hold_release_reason}" if visit.hold_released_at else ""
        flags.append(Flag("pre_dose_out_of_range", f"The pre-dose vital signs were out of range: {values}.{released}"))
    if at_40 is None:
        flags.append(Flag("no_40_minute_bp", f"No reading met the {BP_CHECKPOINT}-minute blood-pressure checkpoint."))
    late = [v for v in post if v.late_for]
    for v in late:
        due = ", ".join(f"{m} min" for m in v.late_for)
        flags.append(
            Flag(
                "late_reading",
                f"Late reading: the checkpoint due at {due} was met only at {v.minutes_after_dose} min "
                f"({_local(v.taken_at, tz)}).",
            )
        )
    if not any(v.spo2 is not None for v in post):
        flags.append(Flag("no_spo2", "No pulse oximetry was charted after the dose (SPR-13)."))
    events = _adverse_events(visit, rules_, post)
    flags.extend(
        Flag(f"{e.kind}_unresolved", f"{e.label} had not resolved at discharge: report it to the REMS.")
        for e in events
        if e.occurred and not e.resolved
    )

    due_on = treated_on + timedelta(days=DUE_DAYS)
    submitter = db.session.get(User, visit.pmf_submitted_by_id) if visit.pmf_submitted_by_id else None
    if visit.pmf_reference is None and today_at(tz) > due_on:
        flags.append(Flag("overdue", f"Overdue: the form was due by {due_on.isoformat()} (SPR-18)."))
    if enrolled_on is None or enrolled_on > treated_on:
        flags.append(Flag("not_enrolled", "The patient was not enrolled in the REMS on the treatment date."))
    first = _first_treatment(visit)
    if first:
        flags.append(Flag("first_treatment", "First treatment: submit the Patient Enrollment Form with this form."))

    return MonitoringForm(
        appointment_id=appt.id,
        visit_id=visit.id,
        patient=PatientPart(
            first_name=patient.first_name,
            middle_initial=None,
            last_name=patient.last_name,
            date_of_birth=patient.date_of_birth,
            sex=patient.sex,
            first_treatment=first,
            enrolled=enrolled_on is not None and enrolled_on <= treated_on,
            enrolled_on=enrolled_on,
        ),
        medications=_medications(visit),
        provider=Provider(user_id=nurse.id, name=nurse.name, phone=location.phone, email=nurse.email),
        setting=Setting(location_id=location.id, name=location.name, address=location.address, timezone=tz),
        session=Session(
            treatment_date=treated_on,
            dose_mg=dose,
            dose_choice=dose if dose in ("56", "84") else "other",
            lot_numbers=lots,
            devices=devices,
            started_at=visit.dose_started_at,
            discharged_at=visit.discharged_at,
            duration_minutes=duration,
            duration_meets_minimum=duration >= MINIMUM_MINUTES,
            early_discharge_reason=visit.early_discharge_reason,
            ready_minutes=ready,
        ),
        vitals=Vitals(
            acceptable_before_dose=None if before_dose is None else not before_dose.out_of_range,
            acceptable_before_completion=None if before_end is None else not before_end.out_of_range,
            bp_before_dose=_reading(before_dose) if before_dose else None,
            bp_at_40=_reading(at_40) if at_40 else None,
            bp_before_completion=_reading(before_end) if before_end else None,
            spo2=[_reading(v) for v in readings if v.spo2 is not None],
            late=[_reading(v) for v in late],
        ),
        adverse_events=events,
        flags=flags,
        due_on=due_on,
        overdue=visit.pmf_reference is None and today_at(tz) > due_on,
        submission=Submission(
            reference=visit.pmf_reference,
            submitted_at=visit.pmf_submitted_at,
            submitted_by_id=visit.pmf_submitted_by_id,
            submitted_by_name=submitter.name if submitter else None,
        ),
    )


# --- the submission ------------------------------------------------------------------------------


def clean_reference(reference: str) -> str:
    ref = reference.strip()
    if not ref:
        raise ValidationFailed(
            errors={"reference": ["Give the submission's reference (the REMS confirmation or fax number)."]}
        )
    if len(ref) > REFERENCE_MAX:
        raise ValidationFailed(errors={"reference": [f"At most {REFERENCE_MAX} characters."]})
    return ref


def record_submission(*, actor: User, appointment_id: int, reference: str) -> Visit:
    """SPR-18: the form was submitted (online or by fax); keep its reference, once.

    Of two submissions racing, the conditional UPDATE lets exactly one write; the other is told the
    reference that won. The visit's ``pmf_overdue`` alert is satisfied in the same transaction, so
    the sweeper (clinic.visits.alerts.raise_due) never raises it afterwards.
    """
    ref = clean_reference(reference)
    appt, visit, _ = form_visit(appointment_id)
    location = db.session.get(Location, visit.location_id)
    assert location is not None
    assert visit.dose_started_at is not None
    now = utcnow()
    claimed = db.session.execute(
        update(Visit)
        .where(Visit.id == visit.id, Visit.pmf_reference.is_(None))
        .values(pmf_reference=ref, pmf_submitted_at=now, pmf_submitted_by_id=actor.id)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        first = db.session.scalar(select(Visit.pmf_reference).where(Visit.id == visit.id))
        raise AlreadySubmitted(
            f"This session's monitoring form was already submitted, reference {first}.",
            errors={"reference": [f"Already submitted as {first}."]},
        )
    late = local_day(now, location.timezone) > local_day(visit.dose_started_at, location.timezone) + timedelta(
        days=DUE_DAYS
    )
    db.session.execute(
        update(ObservationAlert)
        .where(
            ObservationAlert.visit_id == visit.id,
            ObservationAlert.kind == AlertKind.pmf_overdue.value,
            ObservationAlert.satisfied_at.is_(None),
        )
        .values(satisfied_at=now, satisfied_late=late)
        .execution_options(synchronize_session=False)
    )
    db.session.expire(visit)
    reminders.pmf_submitted(visit.id)
    audit.record(
        actor=actor,
        tag=Tag.visits_pmf_submit,
        subject=("appointment", appt.id),
        data={"visit_id": visit.id, "reference": ref, "late": late},
    )
    return visit

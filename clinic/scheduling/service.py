"""Booking whole treatment courses (DOMAIN.md §2.4, §3): expand a protocol into visits in the
location's time zone, on free chairs within clinic hours, keeping the protocol's spacing.

Time-zone policy (F13): a visit keeps its local wall-clock time across DST changes. A local time
that does not exist (spring forward) moves forward by the gap (02:30 -> 03:30); an ambiguous one
(fall back) takes its first occurrence (fold=0). Everything is stored in UTC.

Double booking is refused by the database: each live appointment holds one row per 15-minute slot,
unique per chair and per patient. The checks here only make the refusal friendly (409 naming each
clash and offering free slots); a lost race still ends in the same 409.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from clinic.audit import service as audit
from clinic.audit.tags import Tag
from clinic.auth import scope
from clinic.auth.models import Role, User
from clinic.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from clinic.core.time import on_the_calendar, today_at, utcnow
from clinic.extensions import db
from clinic.locations.models import Location
from clinic.patients.models import Patient
from clinic.reminders import service as reminders
from clinic.scheduling import course_rules
from clinic.scheduling.errors import ACTIONS, BookingConflict, InvalidTransition, VisitMoved, refused_transition
from clinic.scheduling.models import (
    IN_CHAIR,
    LIVE,
    SLOT_MINUTES,
    TRANSITIONS,
    Appointment,
    AppointmentSeries,
    AppointmentSlot,
    AppointmentStatus,
    Chair,
    Closure,
    PrescriberHours,
    Protocol,
)
from clinic.scheduling.protocols import WEEKLY_OFFSETS

logger = logging.getLogger(__name__)

SLOT = timedelta(minutes=SLOT_MINUTES)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SEARCH_DAYS = 14
SUGGESTIONS = 3


# --- resources ---------------------------------------------------------------------------------


def create_chair(*, actor: User, location_id: int, name: str) -> Chair:
    _location(location_id)
    if db.session.scalar(select(Chair.id).where(Chair.location_id == location_id, Chair.name == name)):
        raise Conflict(
            "This location already has a chair with that name",
            errors={"name": ["This location already has a chair with that name."]},
        )
    chair = Chair(location_id=location_id, name=name)
    db.session.add(chair)
    db.session.flush()
    audit.record(actor=actor, tag=Tag.scheduling_chair_create, subject=("chair", chair.id), data={"name": name})
    return chair


def create_closure(*, actor: User, location_id: int, starts_on: date, ends_on: date, reason: str) -> Closure:
    _location(location_id)
    if ends_on < starts_on:
        raise ValidationFailed(errors={"ends_on": ["Must not be before starts_on."]})
    closure = Closure(location_id=location_id, starts_on=starts_on, ends_on=ends_on, reason=reason)
    db.session.add(closure)
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.scheduling_closure_create,
        subject=("closure", closure.id),
        data={"starts_on": starts_on.isoformat(), "ends_on": ends_on.isoformat()},
    )
    return closure


def list_protocols() -> list[Protocol]:
    return list(db.session.scalars(select(Protocol).where(Protocol.is_current.is_(True)).order_by(Protocol.code)))


def current_protocol(code: str) -> Protocol:
    protocol = db.session.scalar(select(Protocol).where(Protocol.code == code, Protocol.is_current.is_(True)))
    if protocol is None:
        raise NotFound("No such protocol", errors={"protocol": ["Unknown protocol code; see GET /protocols."]})
    return protocol


def _location(location_id: int) -> Location:
    location = db.session.get(Location, location_id)
    if location is None:
        raise NotFound("No such location")
    return location


# --- time --------------------------------------------------------------------------------------


def local_to_utc(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The documented DST policy: gap -> forward by the gap, fold -> first occurrence."""
    return datetime.combine(day, at).replace(tzinfo=tz, fold=0).astimezone(UTC)


@dataclass
class Calendar:
    """What a booking needs to know about one location, loaded with a fixed number of queries."""

    location: Location
    tz: ZoneInfo
    chairs: list[int]
    closures: list[tuple[date, date]]
    #: the course's prescriber's hours on site, when the location keeps a roster for them
    prescriber_hours: dict[str, Any] | None = None

    def open_span(self, day: date) -> tuple[time, time] | None:
        if any(a <= day <= b for a, b in self.closures):
            return None
        return _span(self.location.hours, day)

    def fits(self, start: datetime, minutes: int) -> bool:
        local = start.astimezone(self.tz)
        end_local = (start + timedelta(minutes=minutes)).astimezone(self.tz)
        if end_local.date() != local.date():
            return False
        spans = [self.open_span(local.date())]
        if self.prescriber_hours is not None:
            spans.append(_span(self.prescriber_hours, local.date()))
        return all(span is not None and span[0] <= local.time() and end_local.time() <= span[1] for span in spans)


def _span(hours: dict[str, Any] | None, day: date) -> tuple[time, time] | None:
    span = (hours or {}).get(DAYS[day.weekday()])
    if not span:
        return None
    return time.fromisoformat(span[0]), time.fromisoformat(span[1])


def set_prescriber_hours(*, actor: User, location_id: int, user_id: int, hours: dict[str, Any]) -> PrescriberHours:
    """When a prescriber is on site here; their courses are then booked inside these hours only."""
    _location(location_id)
    user = db.session.get(User, user_id)
    if user is None or user.role_enum is not Role.prescriber:
        raise ValidationFailed(errors={"user_id": ["Must be a prescriber."]})
    if not scope.may_act_at(user, location_id):  # SYS-11: a roster only for a prescriber who works here
        raise ValidationFailed(errors={"user_id": ["This prescriber does not work at this location."]})
    row = db.session.scalar(
        select(PrescriberHours).where(PrescriberHours.location_id == location_id, PrescriberHours.user_id == user_id)
    )
    if row is None:
        row = PrescriberHours(location_id=location_id, user_id=user_id, hours=hours)
        db.session.add(row)
    else:
        row.hours = hours
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.scheduling_prescriber_hours_set,
        subject=("user", user_id),
        data={"location_id": location_id},
    )
    return row


def _calendar(location_id: int, prescriber_id: int | None = None) -> Calendar:
    location = _location(location_id)
    chairs = list(
        db.session.scalars(
            select(Chair.id).where(Chair.location_id == location_id, Chair.is_active.is_(True)).order_by(Chair.name)
        )
    )
    closures = [
        (c.starts_on, c.ends_on) for c in db.session.scalars(select(Closure).where(Closure.location_id == location_id))
    ]
    roster = None
    if prescriber_id is not None:
        roster = db.session.scalar(
            select(PrescriberHours.hours).where(
                PrescriberHours.location_id == location_id, PrescriberHours.user_id == prescriber_id
            )
        )
    return Calendar(location, ZoneInfo(location.timezone), chairs, closures, roster)


def _slots(start: datetime, minutes: int) -> list[datetime]:
    n = -(-minutes // SLOT_MINUTES)
    return [start + SLOT * i for i in range(n)]


# --- booking -----------------------------------------------------------------------------------


@dataclass
class Planned:
    seq: int
    phase: str
    starts_at: datetime
    dose_mg: str | None


def _plan(protocol: Protocol, cal: Calendar, start_on: date, preferred: time) -> tuple[list[Planned], list[dict]]:
    rules = protocol.rules
    minutes = int(rules["chair_minutes"])
    spacing = timedelta(hours=int(rules["min_spacing_hours"]))
    dose = rules["dose"]
    planned: list[Planned] = []
    problems: list[dict[str, Any]] = []
    week_start = start_on
    seq = 0
    for phase in rules["phases"]:
        for _ in range(int(phase["weeks"])):
            for offset in WEEKLY_OFFSETS[int(phase["per_week"])]:
                seq += 1
                day = week_start + timedelta(days=offset)
                chosen = None
                for shift in range(7):
                    candidate = local_to_utc(day + timedelta(days=shift), preferred, cal.tz)
                    if planned and candidate - planned[-1].starts_at < spacing:
                        continue
                    if cal.fits(candidate, minutes):
                        chosen = candidate
                        break
                if chosen is None:
                    problems.append(
                        {
                            "seq": seq,
                            "date": day.isoformat(),
                            "reason": "no open day within a week keeps the time and the spacing",
                        }
                    )
                    continue
                first = seq == 1 and dose["kind"] == "fixed"
                planned.append(
                    Planned(
                        seq,
                        phase["phase"],
                        chosen,
                        dose.get("first_mg") if first else dose.get("options_mg", [None])[0],
                    )
                )
            week_start += timedelta(days=7)
    return planned, problems


def _busy(cal: Calendar, patient_id: int, slots: list[datetime]) -> tuple[set[tuple[int, datetime]], set[datetime]]:
    if not slots:
        return set(), set()
    chair_rows = db.session.execute(
        select(AppointmentSlot.chair_id, AppointmentSlot.slot_at).where(
            AppointmentSlot.chair_id.in_(cal.chairs or [-1]), AppointmentSlot.slot_at.in_(slots)
        )
    ).all()
    patient_rows = db.session.scalars(
        select(AppointmentSlot.slot_at).where(
            AppointmentSlot.patient_id == patient_id, AppointmentSlot.slot_at.in_(slots)
        )
    ).all()
    return {(c, s) for c, s in chair_rows}, set(patient_rows)


def _free_chair(cal: Calendar, busy: set[tuple[int, datetime]], slots: list[datetime]) -> int | None:
    for chair in cal.chairs:
        if not any((chair, s) in busy for s in slots):
            return chair
    return None


def next_free(
    cal: Calendar, patient_id: int, after: datetime, minutes: int, n: int = SUGGESTIONS
) -> list[dict[str, Any]]:
    """The first free (chair, start) pairs from `after`, within hours, over the next two weeks."""
    until = after + timedelta(days=SEARCH_DAYS)
    rows = db.session.execute(
        select(AppointmentSlot.chair_id, AppointmentSlot.slot_at, AppointmentSlot.patient_id).where(
            AppointmentSlot.slot_at >= after,
            AppointmentSlot.slot_at < until,
            (AppointmentSlot.chair_id.in_(cal.chairs or [-1])) | (AppointmentSlot.patient_id == patient_id),
        )
    ).all()
    busy = {(c, s) for c, s, _ in rows}
    patient_busy = {s for _, s, p in rows if p == patient_id}
    found: list[dict[str, Any]] = []
    start = after
    while start < until and len(found) < n:
        if cal.fits(start, minutes):
            slots = _slots(start, minutes)
            if not patient_busy.intersection(slots):
                chair = _free_chair(cal, busy, slots)
                if chair is not None:
                    found.append({"starts_at": start.isoformat(), "chair_id": chair})
        start += SLOT
    return found


@dataclass
class SeriesPlan:
    """A course as it would be booked: each visit with its chair (None where it clashes), and every
    clash with the next free slots. Nothing is written; ``create_series`` books it if it is clean."""

    protocol: Protocol
    calendar: Calendar
    patient: Patient
    prescriber: User
    minutes: int
    visits: list[Planned]
    chairs: list[int | None]
    slot_sets: list[list[datetime]]
    problems: list[dict[str, Any]]


def plan_series(
    *, patient_id: int, protocol: str, location_id: int, prescriber_id: int, start_on: date, preferred_time: time
) -> SeriesPlan:
    from clinic.patients import service as patients

    proto = current_protocol(protocol)
    patient = db.session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("No such patient", errors={"patient_id": ["No such patient."]})
    prescriber = db.session.get(User, prescriber_id)
    if prescriber is None or prescriber.role_enum is not Role.prescriber or not prescriber.is_active:
        raise ValidationFailed(errors={"prescriber_id": ["Must be an active prescriber."]})
    if not scope.may_act_at(prescriber, location_id):  # SYS-11: the course's prescriber works here
        raise ValidationFailed(errors={"prescriber_id": ["This prescriber does not work at this location."]})
    cal = _calendar(location_id, prescriber_id)
    if not cal.chairs:
        raise ValidationFailed(errors={"location_id": ["This location has no chairs yet."]})
    today = today_at(cal.tz)
    if start_on < today:
        raise ValidationFailed(errors={"start_on": ["Cannot start in the past."]})
    with on_the_calendar("start_on"):
        patients.assert_bookable(patient_id=patient_id, on=start_on, drug=proto.rules["drug"], location_id=location_id)

        minutes = int(proto.rules["chair_minutes"])
        planned, problems = _plan(proto, cal, start_on, preferred_time)
        if start_on == today:  # booked for earlier today (back-charting) is allowed
            planned = [p for p in planned if p.starts_at >= utcnow() - timedelta(hours=12)]
        slot_sets = [_slots(p.starts_at, minutes) for p in planned]
        busy, patient_busy = _busy(cal, patient_id, [s for slots in slot_sets for s in slots])
        # A chair free for every visit keeps the whole course in it (the patient's familiar place);
        # only when none is free throughout does each visit take the first chair free then.
        steady = _free_chair(cal, busy, [s for slots in slot_sets for s in slots])
        chairs: list[int | None] = []
        for p, slots in zip(planned, slot_sets, strict=True):
            chair = steady if steady is not None else _free_chair(cal, busy, slots)
            clash = patient_busy.intersection(slots)
            if chair is None or clash:
                problems.append(
                    {
                        "seq": p.seq,
                        "starts_at": p.starts_at.isoformat(),
                        "reason": "the patient already has a visit then" if clash else "no chair is free then",
                        "next_free": next_free(cal, patient_id, p.starts_at + SLOT, minutes),
                    }
                )
                chairs.append(None)
                continue
            chairs.append(chair)
            busy.update((chair, s) for s in slots)
    problems.sort(key=lambda c: c["seq"])
    course_rules.check_rems_certification(
        cal.location, proto.rules, [(p.seq, p.starts_at.astimezone(cal.tz).date()) for p in planned]
    )
    return SeriesPlan(proto, cal, patient, prescriber, minutes, planned, chairs, slot_sets, problems)


def create_series(
    *,
    actor: User,
    patient_id: int,
    protocol: str,
    location_id: int,
    prescriber_id: int,
    start_on: date,
    preferred_time: time,
) -> AppointmentSeries:
    plan = plan_series(
        patient_id=patient_id,
        protocol=protocol,
        location_id=location_id,
        prescriber_id=prescriber_id,
        start_on=start_on,
        preferred_time=preferred_time,
    )
    if plan.problems:
        raise BookingConflict(errors={"conflicts": plan.problems})
    proto, minutes, planned, slot_sets = plan.protocol, plan.minutes, plan.visits, plan.slot_sets
    chairs = [c for c in plan.chairs if c is not None]
    # SYS-11/12: the booker works here and may see the patient, however the request named them
    scope.require_location(actor, location_id)
    if not scope.may_see_patient(actor, patient_id):
        raise scope.NotAMember("This patient is not registered at a location you work at.")
    if plan.patient.location_id is None:  # a patient registered nowhere yet belongs where first booked
        plan.patient.location_id = location_id

    series = AppointmentSeries(
        patient_id=patient_id,
        location_id=location_id,
        prescriber_id=prescriber_id,
        protocol_id=proto.id,
        start_on=start_on,
        preferred_time=preferred_time,
        created_by_id=actor.id,
    )
    db.session.add(series)
    db.session.flush()
    appointments = [
        Appointment(
            series_id=series.id,
            seq=p.seq,
            phase=p.phase,
            patient_id=patient_id,
            location_id=location_id,
            chair_id=chair,
            starts_at=p.starts_at,
            ends_at=p.starts_at + timedelta(minutes=minutes),
            planned_dose_mg=p.dose_mg,
        )
        for p, chair in zip(planned, chairs, strict=True)
    ]
    db.session.add_all(appointments)
    db.session.flush()  # one multi-row insert, ids returned
    _hold([slot for appt, slots in zip(appointments, slot_sets, strict=True) for slot in _slot_rows(appt, slots)])
    audit.record(
        actor=actor,
        tag=Tag.scheduling_series_create,
        subject=("series", series.id),
        data={"protocol": proto.code, "version": proto.version, "appointments": len(planned)},
    )
    reminders.booked(series)  # the outbox rows, in this transaction
    return series


def _slot_rows(appt: Appointment, slots: list[datetime]) -> list[AppointmentSlot]:
    return [
        AppointmentSlot(appointment_id=appt.id, chair_id=appt.chair_id, patient_id=appt.patient_id, slot_at=s)
        for s in slots
    ]


def _hold(rows: list[AppointmentSlot]) -> None:
    """Insert the slot rows in a savepoint with nothing else pending, so that a concurrent booking
    that won the race (a unique-slot violation) becomes the same friendly 409."""
    db.session.flush()
    try:
        with db.session.begin_nested():
            db.session.add_all(rows)
            db.session.flush()
    except IntegrityError:
        raise BookingConflict(errors={"conflicts": [{"reason": "another booking took these slots just now"}]}) from None


def get_series(series_id: int) -> AppointmentSeries:
    series = db.session.get(AppointmentSeries, series_id)
    if series is None:
        raise NotFound("No such series")
    return series


def reviews(series: AppointmentSeries) -> list[dict[str, Any]]:
    """End-of-induction and end-of-course reviews (SPR-21, IVK-08): when they fall due."""
    live = [a for a in series.appointments if a.status != AppointmentStatus.cancelled]
    out: list[dict[str, Any]] = []
    induction = [a for a in live if a.phase == "induction"]
    if induction and any(a.phase != "induction" for a in live):
        out.append({"kind": "end_of_induction", "due_at": induction[-1].ends_at.isoformat()})
    if live:
        out.append(
            {
                "kind": "end_of_course",
                "due_at": live[-1].ends_at.isoformat(),
                "endpoint": series.protocol.rules.get("endpoint"),
            }
        )
    return out


# --- changes to one visit ----------------------------------------------------------------------


def _appointment(appointment_id: int, *, lock: bool = True) -> Appointment:
    """The appointment; for a change, with its whole course locked first.

    A reschedule moves later visits of the course too, so one change per course at a time: of two
    racing changes (to this visit or to another of its course) the second sees what the first did.
    """
    appt = db.session.get(Appointment, appointment_id)
    if appt is None:
        raise NotFound("No such appointment")
    if lock:
        db.session.execute(select(AppointmentSeries.id).where(AppointmentSeries.id == appt.series_id).with_for_update())
        db.session.refresh(appt)
        series = db.session.get(AppointmentSeries, appt.series_id)
        if series is not None:
            db.session.expire(series, ["appointments"])  # re-read under the lock when the change needs them
    return appt


def appointment_for_change(appointment_id: int) -> Appointment:
    """The appointment with its course locked, for a change by another domain (the visit)."""
    return _appointment(appointment_id)


def get_appointment(appointment_id: int, *, series_id: int | None = None) -> Appointment:
    """An appointment, and (when a page names its course) only if it belongs to that course."""
    appt = _appointment(appointment_id, lock=False)
    if series_id is not None and appt.series_id != series_id:
        raise NotFound("No such appointment in this course")
    return appt


def _release(appt: Appointment) -> None:
    db.session.execute(delete(AppointmentSlot).where(AppointmentSlot.appointment_id == appt.id))


def move(appt: Appointment, to: AppointmentStatus, *, reason: str | None = None) -> None:
    """The one way a visit changes state: only along TRANSITIONS (the caller locked ``appt``)."""
    current = AppointmentStatus(appt.status)
    if to not in TRANSITIONS[current]:
        raise refused_transition(current, TRANSITIONS[current], doing=ACTIONS[to])
    appt.status, appt.status_reason = to.value, reason


def cancel_appointment(*, actor: User, appointment_id: int, reason: str) -> Appointment:
    appt = _appointment(appointment_id)
    move(appt, AppointmentStatus.cancelled, reason=reason)
    _release(appt)
    db.session.flush()
    audit.record(actor=actor, tag=Tag.scheduling_session_cancel, subject=("appointment", appt.id), data={})
    reminders.appointment_cancelled(appt, get_series(appt.series_id))
    return appt


def mark_absent(*, actor: User, appointment_id: int, status: str, reason: str | None = None) -> dict[str, Any]:
    """No-show or missed, with the SPR-23 follow-up: keep the schedule in induction; in maintenance a
    prescriber considers returning to the previous frequency."""
    appt = _appointment(appointment_id)
    if status not in (AppointmentStatus.no_show, AppointmentStatus.missed):
        raise ValidationFailed(errors={"status": ["One of: no_show, missed."]})
    to = AppointmentStatus(status)
    if appt.status in LIVE and appt.starts_at > utcnow():
        raise InvalidTransition("A visit cannot be missed before it starts.")
    move(appt, to, reason=reason)
    _release(appt)
    db.session.flush()
    tag = Tag.scheduling_session_no_show if to == AppointmentStatus.no_show else Tag.scheduling_session_missed
    audit.record(actor=actor, tag=tag, subject=("appointment", appt.id), data={})
    follow_up = (
        "continue the current schedule"
        if appt.phase == "induction"
        else "prescriber review: consider returning to the previous frequency"
    )
    reminders.appointment_missed(appt, get_series(appt.series_id), follow_up=follow_up)
    return {"appointment": appt, "follow_up": follow_up}


def reschedule_appointment(
    *,
    actor: User,
    appointment_id: int,
    starts_at: datetime,
    expected_starts_at: datetime | None = None,
    override_reason: str | None = None,
) -> Appointment:
    """Move one visit; later visits in the course move too where the protocol's spacing needs it.

    The course keeps its protocol's rules (visits per week, span; IVK-07) unless a
    prescriber overrides them with a reason; never into the past; the patient must still be
    bookable there and then, and an esketamine visit needs the location certified (SPR-03).
    ``expected_starts_at`` (where the client saw the visit) makes a move that raced another
    move of the same visit a 409 instead of a silent second move."""
    if override_reason is not None and actor.role_enum is not Role.prescriber:
        raise PermissionDenied("Only a prescriber can override the course's rules.")
    if override_reason is not None:
        # IVK-07: an override is a reason, not ten spaces: checked here for every path (the series
        # page's form as well as the API, whose schema states the same pattern)
        if not re.match(course_rules.OVERRIDE_REASON, override_reason):
            raise ValidationFailed(errors={"override_reason": [course_rules.OVERRIDE_REASON_ERROR]})
        override_reason = " ".join(override_reason.split())
    appt = _appointment(appointment_id)
    if appt.status != AppointmentStatus.scheduled:
        current = AppointmentStatus(appt.status)
        raise refused_transition(current, TRANSITIONS[current], doing="reschedule")
    if expected_starts_at is not None and expected_starts_at.astimezone(UTC) != appt.starts_at:
        raise VisitMoved(
            f"The visit was moved meanwhile (it now starts at {appt.starts_at.isoformat()}): reload and try again.",
            errors={"starts_at": [appt.starts_at.isoformat()]},
        )
    if starts_at.astimezone(UTC) < utcnow():
        raise ValidationFailed(errors={"starts_at": ["A visit cannot be moved into the past."]})
    series = get_series(appt.series_id)
    rules = series.protocol.rules
    minutes, spacing = int(rules["chair_minutes"]), timedelta(hours=int(rules["min_spacing_hours"]))
    cal = _calendar(appt.location_id, series.prescriber_id)
    with on_the_calendar("starts_at"):
        starts_at = starts_at.astimezone(UTC)
        if starts_at.minute % SLOT_MINUTES or starts_at.second or starts_at.microsecond:
            raise ValidationFailed(errors={"starts_at": [f"Use a {SLOT_MINUTES}-minute boundary."]})
        if not cal.fits(starts_at, minutes):
            raise ValidationFailed(
                errors={"starts_at": ["Outside clinic hours, on a closed day, or when the prescriber is not on site."]}
            )
        taken = [
            a for a in series.appointments if a.seq > appt.seq and a.status in IN_CHAIR and a.status != "scheduled"
        ]
        if taken:
            # A later visit is under way or took place: moving this one would move it too.
            raise InvalidTransition(
                f"Visit {taken[0].seq} of this course is already {taken[0].status.replace('_', ' ')}: "
                "cancel or mark this visit missed instead of moving it."
            )
        live = [a for a in series.appointments if a.status in LIVE]
        before = [a for a in live if a.seq < appt.seq]
        if before and starts_at - before[-1].starts_at < spacing:
            raise ValidationFailed(errors={"starts_at": ["Too soon after the previous visit of this course."]})
        later = [a for a in live if a.seq > appt.seq]
        moves = [(appt, starts_at)]
        prev = starts_at
        for nxt in later:
            target = nxt.starts_at
            local_time = nxt.starts_at.astimezone(cal.tz).time()
            day = nxt.starts_at.astimezone(cal.tz).date()
            while target - prev < spacing or not cal.fits(target, minutes):
                day += timedelta(days=1)
                target = local_to_utc(day, local_time, cal.tz)
                if target - nxt.starts_at > timedelta(days=SEARCH_DAYS):
                    raise BookingConflict(
                        errors={"conflicts": [{"seq": nxt.seq, "reason": "no day keeps the spacing"}]}
                    )
            moves.append((nxt, target))
            prev = target
    _keeps_the_course(actor, series, cal, appt, moves, override_reason)
    moving = [a for a, new in moves if new != a.starts_at or a is appt]
    for a in moving:
        _release(a)
    db.session.flush()
    targets = {a.id: new for a, new in moves}
    with on_the_calendar("starts_at"):
        all_slots = [s for a in moving for s in _slots(targets[a.id], minutes)]
        busy, patient_busy = _busy(cal, appt.patient_id, all_slots)
        problems = []
        held: list[AppointmentSlot] = []
        for a in moving:
            slots = _slots(targets[a.id], minutes)
            chair = a.chair_id if not any((a.chair_id, s) in busy for s in slots) else _free_chair(cal, busy, slots)
            if chair is None or patient_busy.intersection(slots):
                problems.append(
                    {
                        "seq": a.seq,
                        "starts_at": targets[a.id].isoformat(),
                        "reason": "no chair is free then",
                        "next_free": next_free(cal, a.patient_id, targets[a.id] + SLOT, minutes),
                    }
                )
                continue
            busy.update((chair, s) for s in slots)
            a.chair_id, a.starts_at, a.ends_at = chair, targets[a.id], targets[a.id] + timedelta(minutes=minutes)
            held.extend(_slot_rows(a, slots))
    if problems:
        raise BookingConflict(errors={"conflicts": problems})
    _hold(held)
    audit.record(
        actor=actor,
        tag=Tag.scheduling_session_reschedule,
        subject=("appointment", appt.id),
        data={"moved": [a.id for a in moving], **({"override_reason": override_reason} if override_reason else {})},
    )
    reminders.moved(moving, series)  # pending reminders move with their visits
    return appt


def set_booster_interval(*, actor: User, series_id: int, interval_days: int) -> AppointmentSeries:
    """IVK-07: the prescriber sets how long after the course the next booster is planned."""
    if actor.role_enum is not Role.prescriber:
        raise PermissionDenied("Only a prescriber can set the booster interval.")
    low, high = course_rules.BOOSTER_INTERVAL_DAYS
    if not low <= interval_days <= high:
        raise ValidationFailed(errors={"interval_days": [f"Between {low} and {high} days."]})
    db.session.execute(select(AppointmentSeries.id).where(AppointmentSeries.id == series_id).with_for_update())
    series = get_series(series_id)
    series.booster_interval_days = interval_days
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.scheduling_booster_interval_set,
        subject=("series", series.id),
        data={"interval_days": interval_days},
    )
    return series


def _keeps_the_course(
    actor: User,
    series: AppointmentSeries,
    cal: Calendar,
    appt: Appointment,
    moves: list[tuple[Appointment, datetime]],
    override_reason: str | None,
) -> None:
    """The gates a booking passes, for the visits as they would be after the move: the screening
    (CI-22), the REMS certification (SPR-03), the course's visits per week and span (IVK-07)."""
    from clinic.patients import service as patients

    rules = series.protocol.rules
    patient = db.session.get(Patient, appt.patient_id)
    assert patient is not None
    with on_the_calendar("starts_at"):
        patients.assert_bookable(
            patient_id=appt.patient_id,
            on=moves[0][1].astimezone(ZoneInfo(patient.timezone)).date(),
            drug=rules["drug"],
            location_id=appt.location_id,
        )
        course_rules.check_rems_certification(
            cal.location, rules, [(a.seq, new.astimezone(cal.tz).date()) for a, new in moves]
        )
        targets = {a.id: new for a, new in moves}
        placed = [(a.seq, targets.get(a.id, a.starts_at)) for a in series.appointments if a.status in IN_CHAIR]
        broken = course_rules.course_violations(rules=rules, start_on=series.start_on, tz=cal.tz, placed=placed)
    if broken and override_reason is None:
        raise ValidationFailed(
            "The move breaks the course's rules; a prescriber can override them with a reason.",
            errors={"starts_at": broken},
        )


def list_appointments(*, location_id: int, since: datetime, until: datetime) -> list[Appointment]:
    return list(
        db.session.scalars(
            select(Appointment)
            .where(
                Appointment.location_id == location_id, Appointment.starts_at >= since, Appointment.starts_at < until
            )
            .order_by(Appointment.starts_at, Appointment.chair_id)
        )
    )

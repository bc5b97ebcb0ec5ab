"""The outbox writes: each change that causes reminders calls one of these in its own transaction.

Scheduling, visits and inventory call them (through clinic.reminders.service); this module only
reads their tables. Every row has a ``dedupe_key`` naming its cause and moment, and rows are
inserted with ON CONFLICT DO NOTHING on it, so planning twice (a retried request, the hourly
planner meeting what a request already planned) writes nothing new and two planners racing do not
fail each other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.locations.calendar import add_business_days
from clinic.locations.models import Location
from clinic.patients.models import Patient
from clinic.reminders import rules
from clinic.reminders.models import Audience, Reminder, ReminderChannel, ReminderOptOut, ReminderSettings
from clinic.reminders.models import ReminderStatus as RS

logger = logging.getLogger(__name__)

#: reminders tied to one visit of a course, re-planned when it moves and cancelled with it
APPOINTMENT_KINDS = ("appointment",)
#: reminders about the course as a whole, re-planned whenever its visits change
COURSE_KINDS = ("evaluate_benefit", "course_reassessment", "course_completion", "booster_due")
#: a visit booked later than its nearest lead time is still reminded at once if it is this far off
LATE_REMINDER_MIN = timedelta(hours=1)


@dataclass
class Plan:
    kind: str
    location_id: int
    planned_for: datetime
    key: str
    tz: str
    audience: str = Audience.patient.value
    channel: str = ReminderChannel.in_app.value
    patient_id: int | None = None
    user_id: int | None = None
    role: str | None = None
    appointment_id: int | None = None
    series_id: int | None = None
    subject: tuple[str, int] | None = None
    expires_at: datetime | None = None
    params: dict[str, Any] = field(default_factory=dict)


def settings_for(location_id: int) -> dict[str, Any]:
    row = db.session.get(ReminderSettings, location_id)
    return rules.merged(row.rules if row else None)


def settings_in(cache: dict[int, dict[str, Any]], location_id: int) -> dict[str, Any]:
    """``settings_for`` read once per location per call (a location without a row of its own would
    be read again each time: the session keeps no record of a row that does not exist)."""
    if location_id not in cache:
        cache[location_id] = settings_for(location_id)
    return cache[location_id]


def _location(location_id: int) -> Location:
    location = db.session.get(Location, location_id)
    assert location is not None
    return location


def patient_channel(patient: Patient, opted_out: set[str] | None = None) -> str | None:
    """The channel a patient's reminders go by, or None: opted out, or no address for it.
    ``opted_out``: the patient's opted-out channels when the caller has them already."""
    if patient.reminders_opt_out or patient.preferred_channel not in ("email", "sms"):
        return None
    channel = patient.preferred_channel
    if (channel == "email" and not patient.email) or (channel == "sms" and not patient.phone):
        return None
    if opted_out is None:
        opted_out = set(
            db.session.scalars(select(ReminderOptOut.channel).where(ReminderOptOut.patient_id == patient.id))
        )
    return None if channel in opted_out else channel


def _due(plan: Plan, settings: dict[str, Any]) -> datetime:
    if plan.channel in (ReminderChannel.email, ReminderChannel.sms):
        return rules.out_of_quiet_hours(plan.planned_for, settings["quiet_hours"], plan.tz)
    return plan.planned_for


def write(
    plans: Iterable[Plan], *, settings: dict[str, Any] | None = None, cache: dict[int, dict[str, Any]] | None = None
) -> int:
    """Insert the plans that are new (by key); returns how many rows were written. ``cache`` holds the
    settings already read per location (a location with none has no row to keep in the session)."""
    now = utcnow()
    rows = []
    cache = {} if cache is None else cache
    for plan in plans:
        cfg = settings or settings_in(cache, plan.location_id)
        if not rules.enabled(cfg, plan.kind):
            continue
        due = _due(plan, cfg)
        if plan.expires_at is not None and due >= plan.expires_at:
            continue  # its moment has passed (booked too late for a 24 h reminder)
        rows.append(
            {
                "kind": plan.kind,
                "channel": plan.channel,
                "audience": plan.audience,
                "location_id": plan.location_id,
                "patient_id": plan.patient_id,
                "user_id": plan.user_id,
                "role": plan.role,
                "appointment_id": plan.appointment_id,
                "series_id": plan.series_id,
                "subject_type": plan.subject[0] if plan.subject else None,
                "subject_id": plan.subject[1] if plan.subject else None,
                "dedupe_key": plan.key,
                "planned_for": plan.planned_for,
                "due_at": due,
                "expires_at": plan.expires_at,
                "params": plan.params,
                "status": RS.pending.value,
                "attempts": 0,
                "next_attempt_at": due,
                "created_at": now,
            }
        )
    if not rows:
        return 0
    stmt: Any
    if db.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(Reminder).on_conflict_do_nothing(index_elements=["dedupe_key"])
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(Reminder).on_conflict_do_nothing(index_elements=["dedupe_key"])
    result: Any = db.session.execute(stmt, rows)
    written = getattr(result, "rowcount", None)
    return int(written) if written is not None and written >= 0 else len(rows)


def cancel(where: Any, reason: str) -> int:
    """Cancel the pending reminders matching ``where`` that are not past their point of no return.

    A reminder already handed to its channel is in flight: it counts as sent before the change.
    """
    result: Any = db.session.execute(
        update(Reminder)
        .where(where, Reminder.status == RS.pending.value, Reminder.handed_off_at.is_(None))
        .values(
            status=RS.cancelled.value,
            cancelled_at=utcnow(),
            cancel_reason=reason[:200],
            claim_token=None,
            lease_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


def pending_of(where: Any) -> list[Reminder]:
    """Pending reminders, locked (PostgreSQL), to be moved."""
    q = select(Reminder).where(where, Reminder.status == RS.pending.value, Reminder.handed_off_at.is_(None))
    if db.engine.dialect.name == "postgresql":
        q = q.with_for_update()
    return list(db.session.scalars(q.execution_options(populate_existing=True)))


def reconcile(
    existing: list[Reminder],
    wanted: list[Plan],
    *,
    reason: str,
    settings: dict[int, dict[str, Any]] | None = None,
) -> None:
    """Make the pending reminders of one cause match ``wanted``: move the ones whose moment changed
    (a moved reminder keeps its row; a claim on it is void), write the missing ones, cancel the rest.
    A reminder matches a plan of its own visit, kind and slot, so one call can settle many visits."""
    by_slot: dict[tuple[int | None, str, str], list[Reminder]] = {}
    for r in existing:
        by_slot.setdefault((r.appointment_id, r.kind, str(r.params.get("slot", ""))), []).append(r)
    fresh: list[Plan] = []
    settings = {} if settings is None else settings
    keys = [p.key for p in wanted]
    taken = set(db.session.scalars(select(Reminder.dedupe_key).where(Reminder.dedupe_key.in_(keys)))) if keys else set()
    for plan in wanted:
        olds = by_slot.get((plan.appointment_id, plan.kind, str(plan.params.get("slot", ""))), [])
        old = olds.pop(0) if olds else None
        if old is None:
            fresh.append(plan)
            continue
        if old.dedupe_key == plan.key:
            continue
        if plan.key in taken:  # already reminded for that very moment (moved back): drop this one
            olds.insert(0, old)
            continue
        cfg = settings_in(settings, plan.location_id)
        due = _due(plan, cfg)
        if not rules.enabled(cfg, plan.kind) or (plan.expires_at is not None and due >= plan.expires_at):
            olds.insert(0, old)
            continue
        old.dedupe_key, old.planned_for, old.due_at, old.next_attempt_at = plan.key, plan.planned_for, due, due
        old.expires_at, old.params = plan.expires_at, plan.params
        old.claim_token = old.lease_until = None  # a send task holding the old claim stands down
    leftover = [r.id for rs in by_slot.values() for r in rs]
    if leftover:
        cancel(Reminder.id.in_(leftover), reason)
    db.session.flush()
    write(fresh, cache=settings)


# --- patients' appointments -------------------------------------------------------------------


def _appointment_plans(appt: Any, patient: Patient, channel: str | None, settings: dict[str, Any]) -> list[Plan]:
    if channel is None:
        return []
    plans = []
    now = utcnow()
    leads = sorted(settings["appointment"].get("lead_hours", []))
    for lead in leads:
        at = rules.before(appt.starts_at, lead, patient.timezone)
        if at <= now:
            # Booked (or moved) too late for this lead: only the nearest reminder goes, at once,
            # and only when the visit is still far enough off to be of use.
            if lead != leads[0] or appt.starts_at - now < LATE_REMINDER_MIN:
                continue
            at = now
        plans.append(
            Plan(
                kind="appointment",
                location_id=appt.location_id,
                planned_for=at,
                key=f"appt:{appt.id}:{lead}h:{int(appt.starts_at.timestamp())}",
                tz=patient.timezone,
                channel=channel,
                patient_id=patient.id,
                appointment_id=appt.id,
                series_id=appt.series_id,
                expires_at=appt.starts_at,
                params={"slot": f"{lead}h", "lead_hours": lead, "starts_at": appt.starts_at.isoformat()},
            )
        )
    return plans


def plan_appointments(appointments: list[Any]) -> None:
    """Booking (or re-planning after a move): the reminders before each live visit."""
    from clinic.scheduling.models import LIVE

    if not appointments:
        return
    settings: dict[int, dict[str, Any]] = {}
    channels: dict[int, str | None] = {}
    wanted: list[Plan] = []
    for appt in appointments:
        patient = db.session.get(Patient, appt.patient_id)
        assert patient is not None
        cfg = settings_in(settings, appt.location_id)
        if patient.id not in channels:
            channels[patient.id] = patient_channel(patient)
        if appt.status in LIVE:
            wanted += _appointment_plans(appt, patient, channels[patient.id], cfg)
    # One read of the pending reminders and one of the taken keys for the whole course, not per visit
    ids = sorted({appt.id for appt in appointments})
    existing = pending_of(Reminder.appointment_id.in_(ids) & Reminder.kind.in_(APPOINTMENT_KINDS))
    reconcile(existing, wanted, reason="the visit moved", settings=settings)


def cancel_for_appointment(appointment_id: int, reason: str) -> int:
    return cancel(Reminder.appointment_id == appointment_id, reason)


def plan_course(series: Any) -> None:
    """The course's reviews for its prescriber (SPR-21/22 week 4, IVK-08 end of course), and the
    patient's course-completion and booster reminders (IVK-07: boosters every 3-4 weeks), from its
    live visits as they now stand."""
    from clinic.scheduling.models import AppointmentStatus

    patient = db.session.get(Patient, series.patient_id)
    assert patient is not None
    location = _location(series.location_id)
    settings = settings_for(series.location_id)
    live = [a for a in series.appointments if a.status not in (AppointmentStatus.cancelled,)]
    wanted: list[Plan] = []
    if series.status != "cancelled" and live:
        induction = [a for a in live if a.phase == "induction"]
        last = live[-1]
        review_at = rules.hhmm(settings["staff_send_time"])
        if induction and any(a.phase != "induction" for a in live):
            at = induction[-1].ends_at
            wanted.append(_course_plan(series, "evaluate_benefit", at, location, params={"slot": "week4"}))
        wanted.append(_course_plan(series, "course_reassessment", last.ends_at, location, params={"slot": "end"}))
        channel = patient_channel(patient)
        if channel is not None:
            done_at = rules.next_local_day_at(last.ends_at, review_at, patient.timezone)
            wanted.append(
                _course_plan(series, "course_completion", done_at, location, patient=patient, channel=channel)
            )
            booster = settings["booster_due"]
            if series.protocol.rules.get("drug") == "ketamine" and int(booster.get("interval_days") or 0) > 0:
                due_day = int(booster["interval_days"]) - int(booster.get("lead_days") or 0)
                at = rules.next_local_day_at(last.ends_at, review_at, patient.timezone, days=max(due_day, 1))
                wanted.append(
                    _course_plan(
                        series,
                        "booster_due",
                        at,
                        location,
                        patient=patient,
                        channel=channel,
                        params={"interval_days": int(booster["interval_days"])},
                    )
                )
    existing = pending_of((Reminder.series_id == series.id) & Reminder.kind.in_(COURSE_KINDS))
    reconcile(existing, wanted, reason="the course changed", settings={series.location_id: settings})


def _course_plan(
    series: Any,
    kind: str,
    at: datetime,
    location: Location,
    *,
    patient: Patient | None = None,
    channel: str | None = None,
    params: dict[str, Any] | None = None,
) -> Plan:
    common = {
        "kind": kind,
        "location_id": series.location_id,
        "planned_for": at,
        "key": f"series:{series.id}:{kind}:{int(at.timestamp())}",
        "series_id": series.id,
        "params": {"slot": kind, **(params or {})},
    }
    if patient is not None:
        return Plan(**common, tz=patient.timezone, channel=channel or "email", patient_id=patient.id)
    return Plan(**common, tz=location.timezone, audience=Audience.user.value, user_id=series.prescriber_id)


def plan_missed_follow_up(appt: Any, *, follow_up: str) -> None:
    """SPR-23: the front desk follows up a missed or no-show visit within N business days."""
    location = _location(appt.location_id)
    settings = settings_for(appt.location_id)
    days = int(settings["missed_follow_up"].get("business_days") or 2)
    today = appt.starts_at.astimezone(rules.zone(location.timezone)).date()
    state = location.rule("state")  # the clinic's own holidays as well as the federal ones
    send_at = rules.wall(add_business_days(today, 1, state), rules.hhmm(settings["staff_send_time"]), location.timezone)
    write(
        [
            Plan(
                kind="missed_follow_up",
                location_id=appt.location_id,
                planned_for=max(send_at, utcnow()),
                key=f"missed:{appt.id}",
                tz=location.timezone,
                audience=Audience.role.value,
                role="front_desk",
                appointment_id=appt.id,
                series_id=appt.series_id,
                params={
                    "deadline": add_business_days(today, days, state).isoformat(),
                    "status": appt.status,
                    "follow_up": follow_up,
                },
            )
        ]
    )


# --- after a dose -------------------------------------------------------------------------------


def plan_after_dose(visit: Any, *, requires_pmf: bool) -> None:
    """The next-day check-in (SPR-16: no driving until the next day after a restful sleep), and for
    a REMS session the monitoring form's reminders (SPR-18: within 7 days)."""
    assert visit.dose_started_at is not None
    patient = db.session.get(Patient, visit.patient_id)
    assert patient is not None
    location = _location(visit.location_id)
    settings = settings_for(visit.location_id)
    plans = []
    channel = patient_channel(patient)
    if channel is not None:
        at = rules.next_local_day_at(
            visit.dose_started_at, rules.hhmm(settings["next_day_checkin"]["at"]), patient.timezone
        )
        plans.append(
            Plan(
                kind="next_day_checkin",
                location_id=visit.location_id,
                planned_for=at,
                key=f"visit:{visit.id}:checkin",
                tz=patient.timezone,
                channel=channel,
                patient_id=patient.id,
                appointment_id=visit.appointment_id,
                subject=("visit", visit.id),
            )
        )
    if requires_pmf:
        send_time = rules.hhmm(settings["staff_send_time"])
        due_day = int(settings["pmf"].get("due_day") or 5)
        deadline = visit.dose_started_at + timedelta(days=7)
        for kind, at in (
            ("pmf_due", rules.next_local_day_at(visit.dose_started_at, send_time, location.timezone, days=due_day)),
            ("pmf_overdue", deadline),
        ):
            plans.append(
                Plan(
                    kind=kind,
                    location_id=visit.location_id,
                    planned_for=at,
                    key=f"visit:{visit.id}:{kind}",
                    tz=location.timezone,
                    audience=Audience.role.value,
                    role="nurse",
                    appointment_id=visit.appointment_id,
                    subject=("visit", visit.id),
                    params={"deadline": deadline.isoformat()},
                )
            )
    write(plans)


def cancel_for_subject(subject_type: str, subject_id: int, kinds: Iterable[str], reason: str) -> int:
    return cancel(
        (Reminder.subject_type == subject_type) & (Reminder.subject_id == subject_id) & Reminder.kind.in_(list(kinds)),
        reason,
    )


# --- the controlled-substance calendar (staff) ---------------------------------------------------


def _staff(kind: str, location: Location, at: datetime, key: str, **extra: Any) -> Plan:
    role = extra.pop("role", "nurse")
    return Plan(
        kind=kind,
        location_id=location.id,
        planned_for=at,
        key=key,
        tz=location.timezone,
        audience=Audience.role.value,
        role=role,
        **extra,
    )


def plan_loss_report(report: Any) -> None:
    """DEA-31: notify DEA in writing within one business day; DEA-32: file Form 106 within 45 days."""
    location = _location(report.location_id)
    settings = settings_for(report.location_id)
    send_time = rules.hhmm(settings["staff_send_time"])
    now = utcnow()
    subject = ("loss_report", report.id)
    params = {"notice_due_at": report.notice_due_at.isoformat(), "filing_due_on": report.filing_due_on.isoformat()}
    plans = []
    if report.notified_at is None:
        plans.append(
            _staff(
                "form106_notice_due",
                location,
                max(report.discovered_at, now),
                f"loss:{report.id}:notice",
                role="prescriber",
                subject=subject,
                params=params,
            )
        )
    if report.filed_at is None:
        for days in settings["form_106"].get("filing_days_before", []):
            at = rules.wall(report.filing_due_on - timedelta(days=int(days)), send_time, location.timezone)
            if at > now:
                plans.append(
                    _staff(
                        "form106_filing_due",
                        location,
                        at,
                        f"loss:{report.id}:filing:{days}",
                        role="prescriber",
                        subject=subject,
                        params={**params, "days_left": int(days)},
                    )
                )
        overdue = rules.wall(report.filing_due_on + timedelta(days=1), send_time, location.timezone)
        plans.append(
            _staff(
                "form106_overdue",
                location,
                max(overdue, now),
                f"loss:{report.id}:overdue",
                role="prescriber",
                subject=subject,
                params=params,
            )
        )
    write(plans)


def plan_inventory(location_id: int) -> None:
    """DEA-15 (DEA-22 where a state is stricter): the next full inventory, ahead of it and overdue."""
    from clinic.inventory.counts import next_inventory_due_on

    due = next_inventory_due_on(location_id)
    if due is None:
        return
    location = _location(location_id)
    settings = settings_for(location_id)
    send_time = rules.hhmm(settings["staff_send_time"])
    now = utcnow()
    plans = []
    for days in settings["inventory_due"].get("days_before", []):
        at = rules.wall(due - timedelta(days=int(days)), send_time, location.timezone)
        if at > now:
            plans.append(
                _staff(
                    "inventory_due",
                    location,
                    at,
                    f"inventory:{location_id}:{due.isoformat()}:{days}",
                    params={"due_on": due.isoformat(), "days_left": int(days)},
                )
            )
    overdue = rules.wall(due + timedelta(days=1), send_time, location.timezone)
    plans.append(
        _staff(
            "inventory_overdue",
            location,
            max(overdue, now),
            f"inventory:{location_id}:{due.isoformat()}:overdue",
            params={"due_on": due.isoformat()},
        )
    )
    # An inventory taken early supersedes what was planned for the old date.
    cancel(
        (Reminder.location_id == location_id)
        & Reminder.kind.in_(["inventory_due", "inventory_overdue"])
        & Reminder.dedupe_key.not_in([p.key for p in plans]),
        "the inventory was taken",
    )
    write(plans)


def plan_shift_count(location_id: int) -> None:
    """The end-of-shift count, before closing on the next open day."""
    from clinic.core.time import local_now

    location = _location(location_id)
    settings = settings_for(location_id)
    minutes = int(settings["shift_count"].get("minutes_before_close") or 0)
    now = local_now(location.timezone)
    for ahead in range(8):
        day = now.date() + timedelta(days=ahead)
        span = (location.hours or {}).get(("mon", "tue", "wed", "thu", "fri", "sat", "sun")[day.weekday()])
        if not span:
            continue
        at = rules.wall(day, rules.hhmm(span[1]), location.timezone) - timedelta(minutes=minutes)
        if at <= utcnow():
            continue
        write([_staff("shift_count_due", location, at, f"shiftcount:{location_id}:{day.isoformat()}")])
        return


def plan_lot_expiry(location_id: int, lots: Iterable[tuple[int, str, date]]) -> None:
    """Lots on hand that expire within the configured days: one reminder per lot."""
    location = _location(location_id)
    settings = settings_for(location_id)
    days = int(settings["lot_expiring"].get("days_before") or 30)
    send_time = rules.hhmm(settings["staff_send_time"])
    now = utcnow()
    plans = []
    for drug_id, lot, expires_on in set(lots):
        at = rules.wall(expires_on - timedelta(days=days), send_time, location.timezone)
        expires = rules.wall(expires_on + timedelta(days=1), rules.hhmm("00:00"), location.timezone)
        if expires <= now:
            continue
        plans.append(
            _staff(
                "lot_expiring",
                location,
                max(at, now),
                f"lot:{location_id}:{drug_id}:{lot}:{expires_on.isoformat()}",
                subject=("drug", drug_id),
                expires_at=expires,
                params={"lot": lot, "expires_on": expires_on.isoformat()},
            )
        )
    write(plans)


def plan_location_calendar(location_id: int) -> None:
    """Everything on a location's calendar that no single change plans: the hourly planner's work,
    and how a location that existed before reminders did gets its first ones."""
    from clinic.inventory.models import Container, ContainerStatus, LossReport

    plan_shift_count(location_id)
    plan_inventory(location_id)
    lots = db.session.execute(
        select(Container.drug_id, Container.lot_number, Container.expires_on)
        .where(
            Container.location_id == location_id,
            Container.status != ContainerStatus.disposed.value,
            Container.balance_ug > 0,
        )
        .group_by(Container.drug_id, Container.lot_number, Container.expires_on)
    ).all()
    plan_lot_expiry(location_id, [(d, lot, e) for d, lot, e in lots])
    open_reports = db.session.scalars(
        select(LossReport).where(
            LossReport.location_id == location_id, (LossReport.notified_at.is_(None)) | (LossReport.filed_at.is_(None))
        )
    )
    for report in open_reports:
        plan_loss_report(report)


def count_pending(location_id: int | None = None) -> int:
    q = select(func.count()).select_from(Reminder).where(Reminder.status == RS.pending.value)
    if location_id is not None:
        q = q.where(Reminder.location_id == location_id)
    return int(db.session.scalar(q) or 0)

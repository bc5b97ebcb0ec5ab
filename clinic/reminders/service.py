"""The reminders facade: what other domains call in their transactions, and what staff do.

Scheduling, visits and inventory call the ``booked``/``moved``/``cancelled``/... functions from
inside the transaction of their change (a transactional outbox); reminders never call them back.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, delete, func, or_, select

from clinic.audit import service as audit
from clinic.audit.tags import Tag
from clinic.auth import scope
from clinic.auth.models import Role, User
from clinic.core.errors import NotFound, ValidationFailed
from clinic.core.time import database_now, utcnow
from clinic.extensions import db
from clinic.locations.models import Location
from clinic.patients.models import Patient
from clinic.reminders import planning, rules
from clinic.reminders.errors import ReminderNotCancellable, ReminderNotRetryable
from clinic.reminders.models import Notice, NoticeRead, Reminder, ReminderOptOut, ReminderSettings
from clinic.reminders.models import ReminderStatus as RS
from clinic.reminders.planning import settings_for

logger = logging.getLogger(__name__)
_DAY = timedelta(days=1)

F = TypeVar("F", bound=Callable[..., None])


def _on_the_calendar(fn: F) -> F:
    """A change the calling domain accepted (a lot expiring on 9999-12-31, a course ending in the
    calendar's last weeks) may put a reminder's moment past the end of the calendar: that reminder
    is simply not planned, and the change goes through."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except OverflowError:
            logger.info("reminders for %s not planned: their moment is off the calendar", fn.__name__)

    return wrapper  # type: ignore[return-value]


# --- called by other domains, inside their transaction -------------------------------------------


@_on_the_calendar
def booked(series: Any) -> None:
    """A course was booked: the reminders before each visit and the course's reviews."""
    planning.plan_appointments(list(series.appointments))
    planning.plan_course(series)


@_on_the_calendar
def moved(appointments: list[Any], series: Any) -> None:
    """Visits were rescheduled: their reminders move with them (a claimed one's claim is void)."""
    planning.plan_appointments(appointments)
    planning.plan_course(series)


@_on_the_calendar
def appointment_cancelled(appt: Any, series: Any, *, reason: str = "the visit was cancelled") -> None:
    planning.cancel_for_appointment(appt.id, reason)
    planning.plan_course(series)


@_on_the_calendar
def appointment_missed(appt: Any, series: Any, *, follow_up: str) -> None:
    """No-show or missed (SPR-23): its reminders stop and the front desk follows up."""
    planning.cancel_for_appointment(appt.id, f"the visit was marked {appt.status.replace('_', ' ')}")
    planning.plan_missed_follow_up(appt, follow_up=follow_up)
    planning.plan_course(series)


@_on_the_calendar
def dosed(visit: Any, *, requires_pmf: bool) -> None:
    planning.plan_after_dose(visit, requires_pmf=requires_pmf)


def pmf_submitted(visit_id: int) -> None:
    planning.cancel_for_subject("visit", visit_id, ("pmf_due", "pmf_overdue"), "the monitoring form is submitted")


@_on_the_calendar
def loss_reported(report: Any) -> None:
    planning.plan_loss_report(report)


def loss_report_marked(report: Any, step: str) -> None:
    kinds = ("form106_notice_due",) if step == "notified" else ("form106_filing_due", "form106_overdue")
    what = "the DEA notice is recorded" if step == "notified" else "the Form 106 is recorded as filed"
    planning.cancel_for_subject("loss_report", report.id, kinds, what)


@_on_the_calendar
def count_recorded(location_id: int, kind: str) -> None:
    if kind == "shift":
        planning.cancel(
            (Reminder.location_id == location_id)
            & (Reminder.kind == "shift_count_due")
            & (Reminder.planned_for <= utcnow() + _DAY),
            "the shift count is done",
        )
        planning.plan_shift_count(location_id)
    else:
        planning.plan_inventory(location_id)


@_on_the_calendar
def stock_received(location_id: int, lots: list[tuple[int, str, Any]]) -> None:
    planning.plan_lot_expiry(location_id, lots)


def plan_calendars() -> int:
    """The hourly planner: every location's calendar reminders (idempotent)."""
    ids = list(db.session.scalars(select(Location.id)))
    for location_id in ids:
        planning.plan_location_calendar(location_id)
    return len(ids)


# --- what staff see and do ----------------------------------------------------------------------


def list_reminders(
    *,
    patient_id: int | None = None,
    appointment_id: int | None = None,
    status: str | None = None,
    location_id: int | None = None,
    kind: str | None = None,
    limit: int = 200,
    location_ids: Collection[int] | None = None,
) -> list[Reminder]:
    q = select(Reminder)
    if location_ids is not None:  # SYS-11: a member's own locations only
        q = q.where(Reminder.location_id.in_(sorted(location_ids)))
    if patient_id is not None:
        q = q.where(Reminder.patient_id == patient_id)
    if appointment_id is not None:
        q = q.where(Reminder.appointment_id == appointment_id)
    if status is not None:
        q = q.where(Reminder.status == status)
    if location_id is not None:
        q = q.where(Reminder.location_id == location_id)
    if kind is not None:
        q = q.where(Reminder.kind == kind)
    return list(db.session.scalars(q.order_by(Reminder.due_at.desc(), Reminder.id.desc()).limit(limit)))


def count_reminders(*, status: str, location_id: int | None = None, location_ids: Collection[int] | None = None) -> int:
    q = select(func.count()).select_from(Reminder).where(Reminder.status == status)
    if location_ids is not None:  # SYS-11: a member's own locations only (none: nothing)
        q = q.where(Reminder.location_id.in_(sorted(location_ids)))
    if location_id is not None:
        q = q.where(Reminder.location_id == location_id)
    return int(db.session.scalar(q) or 0)


def get_reminder(reminder_id: int, *, lock: bool = False) -> Reminder:
    q = select(Reminder).where(Reminder.id == reminder_id)
    if lock:
        q = q.with_for_update()
    r = db.session.scalar(q.execution_options(populate_existing=True))
    if r is None:
        raise NotFound("No such reminder")
    return r


def retry(*, actor: User, reminder_id: int) -> Reminder:
    """A failed reminder goes back to the outbox, due now, with a fresh count of attempts."""
    r = get_reminder(reminder_id, lock=True)
    if r.status != RS.failed:
        raise ReminderNotRetryable(f"This reminder is {r.status}.")
    now = utcnow()
    # Due by the sweeper's clock (the database's), not this process's: a web host whose clock runs
    # ahead would otherwise park the retry in the future.
    r.status, r.attempts, r.next_attempt_at = RS.pending.value, 0, database_now()
    r.claim_token = r.lease_until = r.handed_off_at = None
    if r.expires_at is not None and r.expires_at <= now:
        raise ValidationFailed(
            errors={"reminder": ["Its moment has passed: the visit has started or the lot expired."]}
        )
    db.session.flush()
    audit.record(actor=actor, tag=Tag.reminders_reminder_retry, subject=("reminder", r.id), data={"kind": r.kind})
    return r


def cancel(*, actor: User, reminder_id: int, reason: str) -> Reminder:
    r = get_reminder(reminder_id, lock=True)
    if r.status not in (RS.pending, RS.failed) or r.handed_off_at is not None:
        raise ReminderNotCancellable(f"This reminder is {'being sent' if r.handed_off_at else r.status}.")
    r.status, r.cancelled_at, r.cancel_reason = RS.cancelled.value, utcnow(), reason[:200]
    r.claim_token = r.lease_until = None
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.reminders_reminder_cancel,
        subject=("reminder", r.id),
        data={"kind": r.kind, "reason": reason[:200]},
    )
    return r


# --- settings -------------------------------------------------------------------------------------


def get_settings(location_id: int) -> dict[str, Any]:
    if db.session.get(Location, location_id) is None:
        raise NotFound("No such location")
    return settings_for(location_id)


def update_settings(*, actor: User, location_id: int, values: dict[str, Any]) -> dict[str, Any]:
    """Replace what the location overrides; shape checked by the schema, meaning here."""
    if db.session.get(Location, location_id) is None:
        raise NotFound("No such location")
    merged = rules.merged(values)
    errors: dict[str, list[str]] = {}
    quiet = merged["quiet_hours"]
    if bool(quiet.get("start")) != bool(quiet.get("end")):
        errors["quiet_hours"] = ["Give both a start and an end, or neither."]
    leads = merged["appointment"].get("lead_hours") or []
    if len(set(leads)) != len(leads):
        errors["appointment.lead_hours"] = ["Each lead time once."]
    if errors:
        raise ValidationFailed(errors=errors)
    row = db.session.get(ReminderSettings, location_id)
    if row is None:
        row = ReminderSettings(location_id=location_id)
        db.session.add(row)
    before = dict(row.rules or {})
    row.rules, row.updated_by_id, row.updated_at = values, actor.id, utcnow()
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.reminders_settings_update,
        subject=("location", location_id),
        data={"before": before, "after": values},
    )
    return merged


# --- a patient's opt-outs (per channel; the whole opt-out is on the patient's record) -------------


def opt_outs(patient_id: int) -> list[str]:
    if db.session.get(Patient, patient_id) is None:
        raise NotFound("No such patient")
    return sorted(
        db.session.scalars(select(ReminderOptOut.channel).where(ReminderOptOut.patient_id == patient_id)).all()
    )


def set_opt_outs(*, actor: User, patient_id: int, channels: list[str]) -> list[str]:
    """The channels a patient does not want reminders on; their pending reminders there stop."""
    before = opt_outs(patient_id)
    wanted = sorted(set(channels))
    db.session.execute(
        delete(ReminderOptOut).where(ReminderOptOut.patient_id == patient_id, ReminderOptOut.channel.not_in(wanted))
    )
    for channel in set(wanted) - set(before):
        db.session.add(ReminderOptOut(patient_id=patient_id, channel=channel, recorded_by_id=actor.id))
    if wanted:
        planning.cancel(
            (Reminder.patient_id == patient_id) & Reminder.channel.in_(wanted), "the patient opted out of this channel"
        )
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.reminders_opt_out_set,
        subject=("patient", patient_id),
        data={"before": before, "after": wanted},
    )
    return wanted


# --- the staff inbox (the bell) ------------------------------------------------------------------


def _addressed_to(user: User) -> Any:
    """A notice is for its user, or for everyone of its role at its location, and read only by whom
    works there (SYS-11: a notice addressed to a user stays at its location when the user leaves
    it); admins see every role's notices."""
    if user.role_enum is Role.admin:
        return or_(Notice.user_id == user.id, Notice.role.is_not(None))
    where = sorted(scope.member_location_ids(user) or ())
    return and_(or_(Notice.user_id == user.id, Notice.role == user.role), Notice.location_id.in_(where))


def inbox(user: User, *, limit: int = 100) -> list[tuple[Notice, datetime | None]]:
    rows = db.session.execute(
        select(Notice, NoticeRead.read_at)
        .outerjoin(NoticeRead, and_(NoticeRead.notice_id == Notice.id, NoticeRead.user_id == user.id))
        .where(_addressed_to(user))
        .order_by(Notice.created_at.desc(), Notice.id.desc())
        .limit(limit)
    ).all()
    return [(n, read_at) for n, read_at in rows]


def unread_count(user: User) -> int:
    return int(
        db.session.scalar(
            select(func.count())
            .select_from(Notice)
            .outerjoin(NoticeRead, and_(NoticeRead.notice_id == Notice.id, NoticeRead.user_id == user.id))
            .where(_addressed_to(user), NoticeRead.id.is_(None))
        )
        or 0
    )


def mark_read(*, actor: User, notice_id: int | None = None) -> int:
    """One notice read, or (``notice_id`` None) every unread one."""
    q = (
        select(Notice.id)
        .outerjoin(NoticeRead, and_(NoticeRead.notice_id == Notice.id, NoticeRead.user_id == actor.id))
        .where(_addressed_to(actor), NoticeRead.id.is_(None))
    )
    if notice_id is not None:
        if db.session.scalar(select(Notice.id).where(Notice.id == notice_id, _addressed_to(actor))) is None:
            raise NotFound("No such notice")
        q = q.where(Notice.id == notice_id)
    ids = list(db.session.scalars(q))
    now = utcnow()
    db.session.add_all([NoticeRead(notice_id=i, user_id=actor.id, read_at=now) for i in ids])
    db.session.flush()
    return len(ids)

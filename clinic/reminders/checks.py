"""Is a reminder still worth sending? Asked under the reminder's lock right before it goes.

A reminder is planned days ahead; by the time it is due its cause may be gone (the visit was
cancelled or moved, the Form 106 filed, the lot used up). Each kind names what must still hold;
when it does not, the reminder is cancelled with the reason instead of being sent. Only reads.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import func, select

from clinic.extensions import db
from clinic.patients.models import Patient
from clinic.reminders import rules
from clinic.reminders.models import Audience, Reminder


def still_due(r: Reminder, now: datetime, *, opted_out: set[str] | None = None) -> str | None:
    """None when the reminder should go; otherwise why it should not."""
    if r.expires_at is not None and now >= r.expires_at:
        return "its moment passed before it could be sent"
    if r.audience == Audience.patient:
        from clinic.reminders.planning import patient_channel

        patient = db.session.get(Patient, r.patient_id)
        channel = patient_channel(patient, opted_out) if patient is not None else None
        if channel is None:
            return "the patient opted out of reminders or has no address for them"
        # The patient changed their preferred channel since this was planned: it goes the new way.
        r.channel = channel
    check = _CHECKS.get(r.kind)
    return check(r, now) if check else None


def _appointment(r: Reminder) -> str | None:
    from clinic.scheduling.models import LIVE, Appointment

    appt = db.session.get(Appointment, r.appointment_id)
    if appt is None or appt.status not in LIVE:
        return "the visit was cancelled or did not take place"
    planned = (r.params or {}).get("starts_at")
    if planned and datetime.fromisoformat(planned) != appt.starts_at:
        return "the visit moved"
    return None


def _visit_happened(r: Reminder) -> str | None:
    from clinic.scheduling.models import Appointment, AppointmentStatus

    appt = db.session.get(Appointment, r.appointment_id)
    if appt is None or appt.status in (
        AppointmentStatus.cancelled,
        AppointmentStatus.no_show,
        AppointmentStatus.missed,
    ):
        return "the visit did not take place"
    return None


def _still_missed(r: Reminder) -> str | None:
    from clinic.scheduling.models import Appointment, AppointmentStatus

    appt = db.session.get(Appointment, r.appointment_id)
    if appt is None or appt.status not in (AppointmentStatus.missed, AppointmentStatus.no_show):
        return "the visit is no longer marked missed"
    return None


def _course(r: Reminder) -> str | None:
    from clinic.scheduling.models import AppointmentSeries

    series = db.session.get(AppointmentSeries, r.series_id)
    if series is None or series.status == "cancelled":
        return "the course was cancelled"
    return None


def _loss_notice(r: Reminder) -> str | None:
    from clinic.inventory.models import LossReport

    report = db.session.get(LossReport, r.subject_id)
    return "the DEA notice is recorded" if report is None or report.notified_at is not None else None


def _loss_filing(r: Reminder) -> str | None:
    from clinic.inventory.models import LossReport

    report = db.session.get(LossReport, r.subject_id)
    return "the Form 106 is recorded as filed" if report is None or report.filed_at is not None else None


def _inventory(r: Reminder) -> str | None:
    from clinic.inventory.counts import next_inventory_due_on

    due = next_inventory_due_on(r.location_id)
    if due is None or due.isoformat() != (r.params or {}).get("due_on"):
        return "the inventory was taken"
    return None


def _shift_count(r: Reminder) -> str | None:
    from clinic.inventory.models import Count
    from clinic.locations.models import Location

    location = db.session.get(Location, r.location_id)
    assert location is not None
    day = r.planned_for.astimezone(rules.zone(location.timezone)).date()
    start = rules.wall(day, rules.hhmm("00:00"), location.timezone)
    done = db.session.scalar(
        select(func.count())
        .select_from(Count)
        .where(Count.location_id == r.location_id, Count.kind == "shift", Count.occurred_at >= start)
        .where(Count.occurred_at < start + timedelta(days=1, hours=1))
    )
    return "the shift count is done" if done else None


def _lot(r: Reminder) -> str | None:
    from clinic.inventory.models import Container, ContainerStatus

    params = r.params or {}
    left = db.session.scalar(
        select(func.count())
        .select_from(Container)
        .where(
            Container.location_id == r.location_id,
            Container.drug_id == r.subject_id,
            Container.lot_number == params.get("lot"),
            Container.expires_on == date.fromisoformat(params.get("expires_on", "0001-01-01")),
            Container.status != ContainerStatus.disposed.value,
            Container.balance_ug > 0,
        )
    )
    return None if left else "nothing of the lot is left on hand"


def _pmf(r: Reminder) -> str | None:
    from clinic.visits.models import Visit

    visit = db.session.get(Visit, r.subject_id)
    return "the monitoring form is submitted" if visit is None or visit.pmf_submitted_at is not None else None


_CHECKS = {
    "appointment": lambda r, now: _appointment(r),
    "next_day_checkin": lambda r, now: _visit_happened(r),
    "missed_follow_up": lambda r, now: _still_missed(r),
    "evaluate_benefit": lambda r, now: _course(r),
    "course_reassessment": lambda r, now: _course(r),
    "course_completion": lambda r, now: _course(r),
    "booster_due": lambda r, now: _course(r),
    "form106_notice_due": lambda r, now: _loss_notice(r),
    "form106_filing_due": lambda r, now: _loss_filing(r),
    "form106_overdue": lambda r, now: _loss_filing(r),
    "inventory_due": lambda r, now: _inventory(r),
    "inventory_overdue": lambda r, now: _inventory(r),
    "shift_count_due": lambda r, now: _shift_count(r),
    "lot_expiring": lambda r, now: _lot(r),
    "pmf_due": lambda r, now: _pmf(r),
    "pmf_overdue": lambda r, now: _pmf(r),
}

"""The reminder rules, their defaults per location (DOMAIN.md), and the clock arithmetic they use.

Every rule can be changed per location (``ReminderSettings.rules``); what a location leaves unset
comes from ``DEFAULTS``. Times are wall-clock times in the recipient's zone (the patient's, or the
location's for staff), computed with zoneinfo, so "08:00 the next day" is 08:00 also across a DST
change: a time that does not exist that night moves forward by the gap, an ambiguous one takes
its first occurrence (the booking's policy, F13).
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

#: kinds, who they are for, and what a reminder of that kind says (templates/reminders/messages/)
PATIENT_KINDS = ("appointment", "next_day_checkin", "course_completion", "booster_due")
STAFF_KINDS = (
    "missed_follow_up",
    "evaluate_benefit",
    "course_reassessment",
    "shift_count_due",
    "inventory_due",
    "inventory_overdue",
    "lot_expiring",
    "form106_notice_due",
    "form106_filing_due",
    "form106_overdue",
    "pmf_due",
    "pmf_overdue",
)
KINDS = PATIENT_KINDS + STAFF_KINDS

DEFAULTS: dict[str, Any] = {
    # E-mail and SMS wait out these hours in the recipient's zone; staff in-app notices do not.
    "quiet_hours": {"start": "21:00", "end": "08:00"},
    # Day-level staff reminders (counts, inventories, deadlines) arrive at this local time.
    "staff_send_time": "09:00",
    # Before each visit, with the preparation (SPR-09: nothing to eat for 2 h, nothing to drink for
    # 30 min) and the ride home (SPR-16). A whole number of days is counted in local days (the day
    # before at the visit's time); anything else in elapsed hours.
    "appointment": {"enabled": True, "lead_hours": [24, 2]},
    # SPR-16 / IVK-09: no driving until the next day after a restful sleep; we check in that day.
    "next_day_checkin": {"enabled": True, "at": "10:00"},
    # SPR-23: a missed or no-show visit is followed up (front desk) within 2 business days.
    "missed_follow_up": {"enabled": True, "business_days": 2},
    # SPR-21/22 week-4 "evaluate benefit" and the post-series reassessment (IVK-08), for the prescriber.
    "reviews": {"enabled": True},
    "course_completion": {"enabled": True},
    # IVK-07: booster infusions about every 3-4 weeks; the prescriber's interval, reminded ahead.
    "booster_due": {"enabled": True, "interval_days": 28, "lead_days": 3},
    # The end-of-shift count, before closing on each open day.
    "shift_count": {"enabled": True, "minutes_before_close": 30},
    # DEA-15 (or the state's cadence, DEA-22): the full inventory, ahead and when overdue.
    "inventory_due": {"enabled": True, "days_before": [60, 30, 7]},
    "lot_expiring": {"enabled": True, "days_before": 30},
    # DEA-31 notice within one business day; DEA-32 Form 106 filed within 45 days.
    "form_106": {"enabled": True, "filing_days_before": [7, 1]},
    # SPR-18: the monitoring form within 7 days of each session.
    "pmf": {"enabled": True, "due_day": 5},
}

#: which setting governs a kind
SETTING_OF: dict[str, str] = {
    "appointment": "appointment",
    "next_day_checkin": "next_day_checkin",
    "missed_follow_up": "missed_follow_up",
    "evaluate_benefit": "reviews",
    "course_reassessment": "reviews",
    "course_completion": "course_completion",
    "booster_due": "booster_due",
    "shift_count_due": "shift_count",
    "inventory_due": "inventory_due",
    "inventory_overdue": "inventory_due",
    "lot_expiring": "lot_expiring",
    "form106_notice_due": "form_106",
    "form106_filing_due": "form_106",
    "form106_overdue": "form_106",
    "pmf_due": "pmf",
    "pmf_overdue": "pmf",
}


def merged(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The defaults with a location's overrides laid over them, one level deep."""
    out = copy.deepcopy(DEFAULTS)
    for key, value in (overrides or {}).items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key].update(value)
        elif key in out:
            out[key] = value
    return out


def enabled(settings: dict[str, Any], kind: str) -> bool:
    return bool(settings[SETTING_OF[kind]].get("enabled", True))


# --- clock arithmetic -----------------------------------------------------------------------


def zone(tz: str | ZoneInfo) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)


def hhmm(value: str) -> time:
    return time.fromisoformat(value)


def wall(day: date, at: time, tz: str | ZoneInfo) -> datetime:
    """``day`` at the wall time ``at`` in ``tz``, in UTC (gap: forward by the gap; fold: first)."""
    local = datetime.combine(day, at).replace(tzinfo=zone(tz), fold=0)
    # A time in the spring-forward gap normalises forward by the gap, as the booking does.
    return local.astimezone(UTC)


def before(at: datetime, lead_hours: int | float, tz: str | ZoneInfo) -> datetime:
    """``lead_hours`` before ``at``: whole days as local days at the same wall time, else elapsed."""
    if lead_hours and float(lead_hours) % 24 == 0:
        local = at.astimezone(zone(tz))
        day = local.date() - timedelta(days=int(float(lead_hours) // 24))
        return wall(day, local.time().replace(tzinfo=None), tz)
    return at - timedelta(hours=float(lead_hours))


def next_local_day_at(at: datetime, when: time, tz: str | ZoneInfo, *, days: int = 1) -> datetime:
    """``days`` local days after the day of ``at``, at ``when`` there."""
    return wall(at.astimezone(zone(tz)).date() + timedelta(days=days), when, tz)


def quiet_end(at: datetime, quiet: dict[str, str] | None, tz: str | ZoneInfo) -> datetime | None:
    """When the quiet hours that ``at`` falls in end (in UTC), or None if ``at`` is not in them."""
    if not quiet or not quiet.get("start") or not quiet.get("end"):
        return None
    start, end = hhmm(quiet["start"]), hhmm(quiet["end"])
    if start == end:
        return None
    local = at.astimezone(zone(tz))
    t, day = local.time().replace(tzinfo=None), local.date()
    if start < end:  # a daytime window, e.g. 12:00-13:00
        return wall(day, end, tz) if start <= t < end else None
    if t >= start:  # overnight window, evening side: ends tomorrow morning
        return wall(day + timedelta(days=1), end, tz)
    if t < end:  # overnight window, morning side
        return wall(day, end, tz)
    return None


def out_of_quiet_hours(at: datetime, quiet: dict[str, str] | None, tz: str | ZoneInfo) -> datetime:
    end = quiet_end(at, quiet, tz)
    return end if end is not None and end > at else at

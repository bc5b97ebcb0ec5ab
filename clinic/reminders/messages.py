"""What a reminder says: Jinja templates per kind, rendered with the minimum PHI.

A patient's e-mail subject and SMS carry no drug name, dose or diagnosis: only the clinic, a time
and what to do. The e-mail body adds the preparation (SPR-09) and the ride home (SPR-16) in plain
words, still without drug names. Links to pages go only to staff (in-app notices), never to
patients. ``tests/reminders/test_messages.py`` renders every kind and looks for what must not be there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import jinja2

from clinic.extensions import db
from clinic.locations.models import Location
from clinic.patients.models import Patient
from clinic.reminders import rules
from clinic.reminders.models import Reminder, ReminderChannel

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates" / "reminders" / "messages"),
    autoescape=False,  # plain text: e-mail text/plain, SMS, notice text (the page escapes it)  # noqa: S701
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)


@dataclass
class Message:
    kind: str
    channel: str
    #: e-mail address or phone number (patients), empty for in-app notices
    to: str
    subject: str
    text: str
    sms: str
    link: str | None
    #: the idempotency key every delivery of this reminder carries
    key: str


def _local(at: datetime, tz: str) -> str:
    local = at.astimezone(rules.zone(tz))
    return local.strftime("%A %d %B at %H:%M")


def _day(value: str | date) -> str:
    day = value if isinstance(value, date) else date.fromisoformat(value)
    return day.strftime("%A %d %B %Y")


def render(kind: str, context: dict[str, Any]) -> dict[str, str]:
    template = _ENV.get_template(f"{kind}.j2")
    ctx = template.new_context(context)
    out = {}
    for block in ("subject", "body", "sms"):
        fn = template.blocks.get(block)
        out[block] = "".join(fn(ctx)).strip() if fn else ""
    return out


def _link(r: Reminder) -> str | None:
    if r.kind in ("missed_follow_up", "evaluate_benefit", "course_reassessment") and r.series_id:
        return f"/schedule/series/{r.series_id}"
    if r.kind in ("pmf_due", "pmf_overdue") and r.appointment_id:
        return f"/visits/{r.appointment_id}/monitoring-form"
    if r.kind.startswith("form106"):
        return "/inventory/loss"
    if r.kind in ("shift_count_due", "inventory_due", "inventory_overdue"):
        return "/inventory/count"
    if r.kind == "lot_expiring":
        return "/inventory/"
    return None


def context_for(r: Reminder) -> dict[str, Any]:
    location = db.session.get(Location, r.location_id)
    assert location is not None
    ctx: dict[str, Any] = {
        "clinic": {"name": location.name, "phone": location.phone or ""},
        "params": r.params or {},
        "first_name": "",
        "when": "",
        "lead_hours": (r.params or {}).get("lead_hours"),
    }
    tz = location.timezone
    if r.patient_id is not None:
        patient = db.session.get(Patient, r.patient_id)
        assert patient is not None
        ctx["first_name"] = patient.first_name
        tz = patient.timezone
    starts = (r.params or {}).get("starts_at")
    if starts:
        ctx["when"] = _local(datetime.fromisoformat(starts), tz)
    for name in ("deadline", "due_on", "filing_due_on", "expires_on"):
        value = (r.params or {}).get(name)
        if value:
            ctx[name] = _day(value[:10])
    if (r.params or {}).get("notice_due_at"):
        ctx["notice_due"] = _local(datetime.fromisoformat(r.params["notice_due_at"]), location.timezone)
    return ctx


def message_key(reminder_id: int, domain: str) -> str:
    """The reminder's idempotency key: the e-mail's Message-ID, the SMS provider's key."""
    return f"<reminder-{reminder_id}@{domain}>"


def compose(r: Reminder, *, domain: str) -> Message:
    out = render(r.kind, context_for(r))
    to = ""
    if r.patient_id is not None:
        patient = db.session.get(Patient, r.patient_id)
        assert patient is not None
        to = (patient.email if r.channel == ReminderChannel.email else patient.phone) or ""
    return Message(
        kind=r.kind,
        channel=r.channel,
        to=to,
        subject=out["subject"],
        text=out["body"],
        sms=out["sms"] or out["subject"],
        link=_link(r) if r.patient_id is None else None,
        key=message_key(r.id, domain),
    )


#: a stand-in reminder's facts for the settings page's preview (no real patient)
SAMPLE_PARAMS: dict[str, Any] = {
    "lead_hours": 24,
    "deadline": "2030-01-07",
    "due_on": "2030-03-01",
    "filing_due_on": "2030-02-15",
    "expires_on": "2030-02-01",
    "notice_due_at": "2030-01-02T23:59:59+00:00",
    "lot": "LOT-123",
    "days_left": 7,
    "interval_days": 28,
    "status": "missed",
    "follow_up": "continue the current schedule",
}


def preview(kind: str, location: Location) -> dict[str, str]:
    when = rules.wall(date(2030, 1, 8), rules.hhmm("09:00"), location.timezone)
    ctx = {
        "clinic": {"name": location.name, "phone": location.phone or ""},
        "params": {**SAMPLE_PARAMS, "starts_at": when.isoformat()},
        "first_name": "Alex",
        "when": _local(when, location.timezone),
        "lead_hours": 24,
        "deadline": _day("2030-01-07"),
        "due_on": _day("2030-03-01"),
        "filing_due_on": _day("2030-02-15"),
        "expires_on": _day("2030-02-01"),
        "notice_due": _local(datetime.fromisoformat(SAMPLE_PARAMS["notice_due_at"]), location.timezone),
    }
    return render(kind, ctx)

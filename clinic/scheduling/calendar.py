"""iCalendar feeds (RFC 5545) for a patient or a prescriber, behind an unguessable, revocable URL.

The URL's token is the only credential, so feeds carry as little as a calendar needs: the time,
the clinic and a neutral title. No names, doses or diagnoses.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select, update

from clinic.audit import service as audit
from clinic.audit.tags import Tag
from clinic.auth.models import Role, User
from clinic.auth.service import token_hash
from clinic.core.errors import NotFound, PermissionDenied
from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.locations.models import Location
from clinic.patients.models import Patient
from clinic.scheduling.models import IN_CHAIR, Appointment, AppointmentSeries, CalendarFeed


def create_feed(*, actor: User, patient_id: int | None = None, user_id: int | None = None) -> tuple[CalendarFeed, str]:
    if patient_id is not None and db.session.get(Patient, patient_id) is None:
        raise NotFound("No such patient")
    raw = secrets.token_urlsafe(32)
    feed = CalendarFeed(token_hash=token_hash(raw), patient_id=patient_id, user_id=user_id)
    db.session.add(feed)
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.scheduling_calendar_feed_create,
        subject=("calendar_feed", feed.id),
        data={"patient_id": patient_id, "user_id": user_id},
    )
    return feed, raw


def revoke_feed(*, actor: User, feed_id: int) -> None:
    """A user's own feed is revoked by that user or an admin; a patient's feed by the staff who
    book for patients (they act for the patient, who has no account)."""
    feed = db.session.get(CalendarFeed, feed_id)
    if feed is not None and feed.user_id is not None and feed.user_id != actor.id and actor.role_enum is not Role.admin:
        raise PermissionDenied("Only its owner or an admin can revoke this calendar feed.")
    from clinic.auth.policy import allowed  # the policy imports the services; loaded when needed

    if feed is not None and feed.patient_id is not None and not allowed(actor, "scheduling.book"):
        raise PermissionDenied("Only staff who book visits can revoke a patient's calendar feed.")
    done = db.session.execute(
        update(CalendarFeed)
        .where(CalendarFeed.id == feed_id, CalendarFeed.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        raise NotFound("No such live feed")
    audit.record(actor=actor, tag=Tag.scheduling_calendar_feed_revoke, subject=("calendar_feed", feed_id), data={})


def _fmt(dt: datetime) -> str:
    return dt.strftime("%Y%m%dT%H%M%SZ")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def render(raw: str) -> str:
    feed = db.session.scalar(select(CalendarFeed).where(CalendarFeed.token_hash == token_hash(raw)))
    if feed is None or feed.revoked_at is not None:
        raise NotFound("No such calendar")
    q = (
        select(Appointment, Location.name)
        .join(Location, Location.id == Appointment.location_id)
        .where(Appointment.status.in_([s.value for s in IN_CHAIR]))
    )
    if feed.patient_id is not None:
        q = q.where(Appointment.patient_id == feed.patient_id)
    else:
        q = q.join(AppointmentSeries, AppointmentSeries.id == Appointment.series_id).where(
            AppointmentSeries.prescriber_id == feed.user_id
        )
    stamp = _fmt(utcnow())
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//clinic-ops//calendar feed//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
    ]
    for appt, clinic_name in db.session.execute(q.order_by(Appointment.starts_at)):
        lines += [
            "BEGIN:VEVENT",
            f"UID:appointment-{appt.id}@clinic-ops",
            f"DTSTAMP:{stamp}",
            f"DTSTART:{_fmt(appt.starts_at)}",
            f"DTEND:{_fmt(appt.ends_at)}",
            f"SUMMARY:{_escape('Treatment visit' if feed.patient_id else f'Visit, chair {appt.chair_id}')}",
            f"LOCATION:{_escape(clinic_name)}",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "\r\n".join(_fold(line) for line in lines) + "\r\n"


def _fold(line: str) -> str:
    """RFC 5545 §3.1: lines longer than 75 octets continue on the next line after a space."""
    raw = line.encode()
    if len(raw) <= 75:
        return line
    parts: list[str] = []
    start = 0
    while start < len(raw):
        end = min(start + (75 if not parts else 74), len(raw))
        while end < len(raw) and (raw[end] & 0xC0) == 0x80:  # never split a UTF-8 sequence
            end -= 1
        parts.append(raw[start:end].decode())
        start = end
    return "\r\n ".join(parts)

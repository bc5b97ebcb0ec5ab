"""iCalendar feeds (RFC 5545) for a patient or a prescriber, behind an unguessable, revocable URL.

The URL's token is the only credential, so feeds carry as little as a calendar needs: the time,
the clinic and a neutral title. No names, doses or diagnoses.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

import icalendar
from sqlalchemy import select, update

from clinic.audit import service as audit
from clinic.audit.tags import Tag
from clinic.auth import scope
from clinic.auth.models import Role, User
from clinic.auth.service import token_hash
from clinic.core.errors import NotFound, PermissionDenied
from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.locations.models import Location
from clinic.patients.models import Patient
from clinic.scheduling.models import IN_CHAIR, Appointment, AppointmentSeries, AppointmentStatus, CalendarFeed
from clinic.system.models import Installation


def create_feed(*, actor: User, patient_id: int | None = None, user_id: int | None = None) -> tuple[CalendarFeed, str]:
    if patient_id is not None and db.session.get(Patient, patient_id) is None:
        raise NotFound("No such patient")
    works_at = scope.member_location_ids(actor) if patient_id is not None else None
    if works_at is not None:
        # SYS-11: the feed shows all the patient's visits, so its URL is made only by someone who works
        # wherever the patient has a course (or an admin): not a way for one location's staff to read
        # another's schedule
        elsewhere = db.session.scalar(
            select(AppointmentSeries.id)
            .where(AppointmentSeries.patient_id == patient_id, AppointmentSeries.location_id.not_in(sorted(works_at)))
            .limit(1)
        )
        if elsewhere is not None:
            raise scope.NotAMember(
                "This patient has visits at a location you do not work at; staff of every one of their "
                "locations, or an admin, can make their calendar feed."
            )
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
    if feed is not None and feed.patient_id is not None and not scope.may_see_patient(actor, feed.patient_id):
        raise scope.NotAMember("This patient is not registered at a location you work at.")  # SYS-12
    done = db.session.execute(
        update(CalendarFeed)
        .where(CalendarFeed.id == feed_id, CalendarFeed.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        raise NotFound("No such live feed")
    audit.record(actor=actor, tag=Tag.scheduling_calendar_feed_revoke, subject=("calendar_feed", feed_id), data={})


#: a cancelled visit stays in the feed, as STATUS:CANCELLED, until its start is this far past, so
#: every subscribed calendar sees the cancellation before the event leaves the feed
CANCELLED_KEPT = timedelta(days=30)


def installation_uid() -> str:
    row = db.session.get(Installation, 1)
    if row is None:  # made by migration 0015; a database built from the models alone gets one here
        row = Installation(id=1, uid=str(uuid.uuid4()))
        db.session.add(row)
        db.session.flush()
    return row.uid


def render(raw: str) -> str:
    """The feed, written by the icalendar package: one VEVENT per live visit, and per visit cancelled
    less than ``CANCELLED_KEPT`` ago, with a UID unique to this installation and the visit's SEQUENCE."""
    feed = db.session.scalar(select(CalendarFeed).where(CalendarFeed.token_hash == token_hash(raw)))
    if feed is None or feed.revoked_at is not None:
        raise NotFound("No such calendar")
    now = utcnow()
    shown = Appointment.status.in_([s.value for s in IN_CHAIR]) | (
        (Appointment.status == AppointmentStatus.cancelled.value) & (Appointment.starts_at >= now - CANCELLED_KEPT)
    )
    q = select(Appointment, Location.name).join(Location, Location.id == Appointment.location_id).where(shown)
    if feed.patient_id is not None:
        q = q.where(Appointment.patient_id == feed.patient_id)
    else:
        q = q.join(AppointmentSeries, AppointmentSeries.id == Appointment.series_id).where(
            AppointmentSeries.prescriber_id == feed.user_id
        )
        owner = db.session.get(User, feed.user_id)
        if owner is None or not owner.is_active:  # deactivation revokes it; never shown meanwhile
            raise NotFound("No such calendar")
        works_at = scope.member_location_ids(owner)
        if works_at is not None:  # SYS-11: only the locations the owner still works at
            q = q.where(Appointment.location_id.in_(sorted(works_at)))
    installation = installation_uid()
    cal = icalendar.Calendar()
    cal.add("prodid", "-//clinic-ops//calendar feed//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    for appt, clinic_name in db.session.execute(q.order_by(Appointment.starts_at, Appointment.id)):
        event = icalendar.Event()
        event.add("uid", f"appointment-{appt.id}.{installation}@clinic-ops")
        event.add("dtstamp", now)
        event.add("dtstart", appt.starts_at)
        event.add("dtend", appt.ends_at)
        event.add("sequence", appt.ical_sequence)
        event.add("summary", "Treatment visit" if feed.patient_id else f"Visit, chair {appt.chair_id}")
        event.add("location", clinic_name)
        event.add("status", "CANCELLED" if appt.status == AppointmentStatus.cancelled.value else "CONFIRMED")
        cal.add_component(event)
    return cal.to_ical().decode()

"""Protocols, chairs, treatment courses (series) and their appointments.

No double booking is a database rule: every appointment owns one row per 15-minute slot it covers,
and (chair, slot) and (patient, slot) are unique. Two concurrent bookings of the same chair and
time cannot both commit, on PostgreSQL and on SQLite alike.
"""

from __future__ import annotations

from datetime import date, datetime, time
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Time,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic.core.db import UtcDateTime, enum_check
from clinic.core.time import utcnow
from clinic.extensions import db

SLOT_MINUTES = 15


class Protocol(db.Model):  # type: ignore[name-defined]
    """A treatment protocol as data, versioned: a course keeps the version it was booked with."""

    __tablename__ = "protocols"
    __table_args__ = (UniqueConstraint("code", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    #: route, drug, dose rule, session/observation minutes, vitals checkpoints, BP hold threshold,
    #: spacing, the visit pattern and the course endpoint (IVK-08)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Chair(db.Model):  # type: ignore[name-defined]
    __tablename__ = "chairs"
    __table_args__ = (UniqueConstraint("location_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    name: Mapped[str] = mapped_column(String(80))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class Closure(db.Model):  # type: ignore[name-defined]
    """A holiday or closure: no appointment starts on these local dates."""

    __tablename__ = "closures"
    __table_args__ = (CheckConstraint("ends_on >= starts_on", name="ordered"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(200))


class PrescriberHours(db.Model):  # type: ignore[name-defined]
    """When a prescriber is on site at a location, per weekday in local time. A prescriber with no
    rows at a location is not constrained there (small clinics rarely keep rosters)."""

    __tablename__ = "prescriber_hours"
    __table_args__ = (UniqueConstraint("location_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    #: {"mon": ["08:00", "12:00"], ..., "sun": null}, as a location's own hours
    hours: Mapped[dict[str, Any]] = mapped_column(JSON)


class SeriesStatus(StrEnum):
    active = "active"
    completed = "completed"
    cancelled = "cancelled"


class AppointmentStatus(StrEnum):
    """A visit's state; the dosing visit walks it from check-in to a safe discharge."""

    scheduled = "scheduled"
    checked_in = "checked_in"
    dosed = "dosed"
    observing = "observing"
    ready_for_discharge = "ready_for_discharge"
    discharged = "discharged"
    cancelled = "cancelled"
    no_show = "no_show"
    missed = "missed"


S = AppointmentStatus
#: every move a visit may make; anything else is refused, naming where it stands (409)
TRANSITIONS: dict[AppointmentStatus, frozenset[AppointmentStatus]] = {
    S.scheduled: frozenset({S.checked_in, S.cancelled, S.no_show, S.missed}),
    # Checked in but not dosed: the visit can still be called off, or the patient leave unseen.
    S.checked_in: frozenset({S.dosed, S.cancelled, S.no_show, S.missed}),
    S.dosed: frozenset({S.observing}),
    S.observing: frozenset({S.ready_for_discharge, S.discharged}),
    # Discharge criteria can lapse again (a late rise in blood pressure) before the patient leaves.
    S.ready_for_discharge: frozenset({S.discharged, S.observing}),
    S.discharged: frozenset(),
    S.cancelled: frozenset(),
    S.no_show: frozenset(),
    S.missed: frozenset(),
}
#: visits that still hold their chair and their place in the course
LIVE = frozenset({S.scheduled, S.checked_in})
#: visits that took place or are taking place: drawn in their chair on the calendar
IN_CHAIR = frozenset({S.scheduled, S.checked_in, S.dosed, S.observing, S.ready_for_discharge, S.discharged})
del S


class AppointmentSeries(db.Model):  # type: ignore[name-defined]
    __tablename__ = "appointment_series"
    __table_args__ = (
        CheckConstraint(enum_check("status", SeriesStatus), name="status_known"),
        CheckConstraint(
            "booster_interval_days IS NULL OR booster_interval_days BETWEEN 7 AND 365", name="booster_interval_sane"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    prescriber_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    protocol_id: Mapped[int] = mapped_column(ForeignKey("protocols.id"))
    start_on: Mapped[date] = mapped_column(Date)
    preferred_time: Mapped[time] = mapped_column(Time)
    status: Mapped[str] = mapped_column(String(20), default=SeriesStatus.active.value)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    #: IVK-07: for a booster course, the interval its prescriber set; the next booster is planned from it
    booster_interval_days: Mapped[int | None] = mapped_column(Integer)

    protocol: Mapped[Protocol] = relationship(lazy="joined", innerjoin=True)
    appointments: Mapped[list[Appointment]] = relationship(
        back_populates="series", order_by="Appointment.seq", lazy="selectin"
    )


class Appointment(db.Model):  # type: ignore[name-defined]
    __tablename__ = "appointments"
    __table_args__ = (
        UniqueConstraint("series_id", "seq"),
        CheckConstraint("ends_at > starts_at", name="ordered"),
        CheckConstraint(enum_check("status", AppointmentStatus), name="status_known"),
        Index("ix_appointments_location_starts", "location_id", "starts_at"),
        Index("ix_appointments_patient_starts", "patient_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("appointment_series.id"))
    seq: Mapped[int] = mapped_column(Integer)
    phase: Mapped[str] = mapped_column(String(20))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    chair_id: Mapped[int] = mapped_column(ForeignKey("chairs.id"))
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime)
    planned_dose_mg: Mapped[str | None] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(20), default=AppointmentStatus.scheduled.value)
    status_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    #: RFC 5545 SEQUENCE: raised each time the visit moves or is cancelled, so a subscribed calendar
    #: takes the new version over the one it holds (clinic.scheduling.calendar)
    ical_sequence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    series: Mapped[AppointmentSeries] = relationship(back_populates="appointments")


@event.listens_for(Appointment.starts_at, "set")
def _moved(target: Appointment, value: datetime, old: Any, initiator: Any) -> None:
    if isinstance(old, datetime) and old != value:
        target.ical_sequence = (target.ical_sequence or 0) + 1


@event.listens_for(Appointment.status, "set")
def _status_changed(target: Appointment, value: str, old: Any, initiator: Any) -> None:
    if isinstance(old, str) and old != value and AppointmentStatus.cancelled.value in (value, old):
        target.ical_sequence = (target.ical_sequence or 0) + 1


class AppointmentSlot(db.Model):  # type: ignore[name-defined]
    """One 15-minute slot held by a live appointment. The unique keys are the no-double-booking rule."""

    __tablename__ = "appointment_slots"
    __table_args__ = (
        UniqueConstraint("chair_id", "slot_at"),
        UniqueConstraint("patient_id", "slot_at"),
        Index("ix_appointment_slots_appointment", "appointment_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointments.id"))
    chair_id: Mapped[int] = mapped_column(ForeignKey("chairs.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    slot_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CalendarFeed(db.Model):  # type: ignore[name-defined]
    """An unguessable, revocable iCalendar URL for a patient or a clinician (RFC 5545)."""

    __tablename__ = "calendar_feeds"
    __table_args__ = (CheckConstraint("(patient_id IS NULL) <> (user_id IS NULL)", name="one_owner"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

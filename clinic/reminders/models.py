"""Reminders are an outbox: a row written in the transaction of the change that causes it.

A row is ``pending`` until a sweeper claims it (``claim_token`` and ``lease_until``) and a send
task delivers it. The API knows four states (pending, sent, failed, cancelled); a claim, a send in
flight (``handed_off_at``: past the point of no return) and a retry waiting for its back-off
(``next_attempt_at``) are all still ``pending`` to the outside.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from clinic.core.db import UtcDateTime, enum_check
from clinic.core.time import utcnow
from clinic.extensions import db


class ReminderStatus(StrEnum):
    pending = "pending"
    sent = "sent"
    failed = "failed"
    cancelled = "cancelled"


class ReminderChannel(StrEnum):
    email = "email"
    sms = "sms"
    #: a notice in the staff inbox (the bell)
    in_app = "in_app"


class Audience(StrEnum):
    patient = "patient"
    #: one staff member (a course's prescriber)
    user = "user"
    #: everyone of a role at the location
    role = "role"


class Reminder(db.Model):  # type: ignore[name-defined]
    __tablename__ = "reminders"
    __table_args__ = (
        CheckConstraint(enum_check("status", ReminderStatus), name="status_known"),
        CheckConstraint(enum_check("channel", ReminderChannel), name="channel_known"),
        CheckConstraint(enum_check("audience", Audience), name="audience_known"),
        CheckConstraint(
            "(audience = 'patient' AND patient_id IS NOT NULL) OR (audience = 'user' AND user_id IS NOT NULL)"
            " OR (audience = 'role' AND role IS NOT NULL)",
            name="recipient_named",
        ),
        CheckConstraint("attempts >= 0", name="attempts_counted"),
        CheckConstraint("status <> 'sent' OR sent_at IS NOT NULL", name="sent_stamped"),
        # The sweeper's scan: only what is waiting, by when it may go.
        Index(
            "ix_reminders_waiting",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_reminders_appointment", "appointment_id"),
        Index("ix_reminders_patient_due", "patient_id", "due_at"),
        Index("ix_reminders_subject", "subject_type", "subject_id"),
        Index("ix_reminders_location_status", "location_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(10))
    audience: Mapped[str] = mapped_column(String(10))
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    role: Mapped[str | None] = mapped_column(String(20))
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointments.id"))
    series_id: Mapped[int | None] = mapped_column(ForeignKey("appointment_series.id"))
    #: what else it is about (a loss report, a container, a visit), read again before sending
    subject_type: Mapped[str | None] = mapped_column(String(20))
    subject_id: Mapped[int | None] = mapped_column(Integer)
    #: one reminder per cause and moment: planning twice writes nothing new
    dedupe_key: Mapped[str] = mapped_column(String(160), unique=True)
    #: the rule's moment (e.g. 24 h before the visit)
    planned_for: Mapped[datetime] = mapped_column(UtcDateTime)
    #: when it goes out: planned_for, moved out of the recipient's quiet hours
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    #: not sent after this (an appointment reminder once the visit has started)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    #: facts for the message that are not PHI (a lead time, a deadline), never names or drugs
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(10), default=ReminderStatus.pending.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: the sweeper takes it from then on: due_at, or later after a failed attempt (back-off)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    #: committed just before the point of no return (the SMTP end-of-data, the provider call)
    handed_off_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    #: how it went out: smtp, sms-http, console, in_app
    transport: Mapped[str | None] = mapped_column(String(20))
    #: the idempotency key as the far side saw it (Message-ID, provider key) or its reference
    provider_ref: Mapped[str | None] = mapped_column(String(200))
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    #: why the last attempt failed, in words without PHI
    last_error: Mapped[str | None] = mapped_column(String(300))
    cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<Reminder {self.id} {self.kind} {self.status}>"


class ReminderSettings(db.Model):  # type: ignore[name-defined]
    """A location's reminder rules; what it does not set comes from clinic.reminders.rules.DEFAULTS."""

    __tablename__ = "reminder_settings"

    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"), primary_key=True)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ReminderOptOut(db.Model):  # type: ignore[name-defined]
    """A patient who wants no reminders on one channel (the whole opt-out is Patient.reminders_opt_out)."""

    __tablename__ = "reminder_opt_outs"
    __table_args__ = (
        UniqueConstraint("patient_id", "channel"),
        CheckConstraint("channel IN ('email', 'sms')", name="channel_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    channel: Mapped[str] = mapped_column(String(10))
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Notice(db.Model):  # type: ignore[name-defined]
    """An in-app notice for staff: a delivered in_app reminder, or word that a reminder failed."""

    __tablename__ = "notices"
    __table_args__ = (
        CheckConstraint("user_id IS NOT NULL OR role IS NOT NULL", name="addressed"),
        Index("ix_notices_user", "user_id", "created_at"),
        Index("ix_notices_role", "role", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: the reminder it delivers; unique, so a reminder becomes at most one notice
    reminder_id: Mapped[int | None] = mapped_column(ForeignKey("reminders.id"), unique=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    role: Mapped[str | None] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(String(2000))
    link: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class NoticeRead(db.Model):  # type: ignore[name-defined]
    __tablename__ = "notice_reads"
    __table_args__ = (UniqueConstraint("notice_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    read_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

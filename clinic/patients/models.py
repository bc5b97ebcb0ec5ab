from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from clinic.core.db import UtcDateTime, enum_check
from clinic.core.time import utcnow
from clinic.extensions import db


class Channel(StrEnum):
    """How a patient wants reminders, or not at all."""

    email = "email"
    sms = "sms"
    none = "none"


class Patient(db.Model):  # type: ignore[name-defined]
    __tablename__ = "patients"
    __table_args__ = (
        CheckConstraint(enum_check("preferred_channel", Channel), name="channel_known"),
        Index("ix_patients_location", "location_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    date_of_birth: Mapped[date] = mapped_column(Date)
    address: Mapped[str] = mapped_column(String(500))
    timezone: Mapped[str] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(40))
    sex: Mapped[str | None] = mapped_column(String(1))
    preferred_channel: Mapped[str] = mapped_column(String(8), default="email", server_default="email")
    reminders_opt_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    emergency_contact: Mapped[str | None] = mapped_column(String(200))
    ride_contact: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    #: where the patient is registered (SYS-12): staff there see them, as do staff of any location
    #: where they have a course; None only for patients registered before locations had members
    location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id"))

    def __repr__(self) -> str:  # never the name: logs carry ids only
        return f"<Patient {self.id}>"


class PatientWeight(db.Model):  # type: ignore[name-defined]
    """Weight history (kg as integer grams): doses are computed from the latest one."""

    __tablename__ = "patient_weights"
    __table_args__ = (
        CheckConstraint("weight_g BETWEEN 2000 AND 400000", name="weight_plausible"),
        Index("ix_patient_weights_patient_measured", "patient_id", "measured_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    weight_g: Mapped[int] = mapped_column(Integer)
    measured_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class RemsEnrollment(db.Model):  # type: ignore[name-defined]
    """Spravato REMS patient enrolment (SPR-05): required before a first esketamine session."""

    __tablename__ = "rems_enrollments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    enrolled_on: Mapped[date] = mapped_column(Date)
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ScreeningResult(db.Model):  # type: ignore[name-defined]
    """One screening questionnaire, its flags and the decision (DOMAIN.md §4). Never edited:
    a new screening supersedes it; an override is stamped on it once."""

    __tablename__ = "screening_results"
    __table_args__ = (
        CheckConstraint("eligibility IN ('eligible', 'review', 'ineligible')", name="eligibility_known"),
        Index("ix_screening_results_patient", "patient_id", "screened_at"),
        CheckConstraint(
            "review_status IS NULL OR review_status IN ('pending', 'approved', 'rejected')", name="review_status_known"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id"))
    answers: Mapped[dict[str, Any]] = mapped_column(JSON)
    flags: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    eligibility: Mapped[str] = mapped_column(String(12))
    screened_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    screened_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    override_reason: Mapped[str | None] = mapped_column(String(1000))
    overridden_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    overridden_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    #: CI-22: None when no review is needed; else pending, then approved or rejected by a prescriber
    review_status: Mapped[str | None] = mapped_column(String(10))
    #: the HARD/OVERRIDE flag codes of the screening in force that this one no longer raises
    review_cleared: Mapped[list[str] | None] = mapped_column(JSON)
    review_reason: Mapped[str | None] = mapped_column(String(1000))
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

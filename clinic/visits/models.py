"""The dosing visit: one row per appointment that was checked in, its steps, vitals, dose and alerts.

The visit's state is the appointment's status (clinic.scheduling.models.TRANSITIONS); each move is
stamped in ``visit_events`` with who, when it happened (``occurred_at``, back-charting allowed) and
when it was written (``recorded_at``). Amounts are integer micrograms, as in the ledger.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic.core.db import UtcDateTime, enum_check
from clinic.core.time import utcnow
from clinic.extensions import db


class AlertKind(StrEnum):
    vitals_due = "vitals_due"
    vitals_overdue = "vitals_overdue"
    observation_complete = "observation_complete"
    #: the Spravato REMS Patient Monitoring Form is due within 7 days; the alert comes on day 6
    pmf_overdue = "pmf_overdue"
    #: an IV infusion still running past its planned length and tolerance
    infusion_overdue = "infusion_overdue"


class RemainderAction(StrEnum):
    """What became of an opened vial's remainder before the visit closed (IVK-14)."""

    wasted = "wasted"
    returned = "returned"


class Visit(db.Model):  # type: ignore[name-defined]
    __tablename__ = "visits"
    __table_args__ = (
        CheckConstraint("dose_ended_at IS NULL OR dose_ended_at >= dose_started_at", name="dose_ordered"),
        CheckConstraint("discharged_at IS NULL OR discharged_at >= checked_in_at", name="discharge_ordered"),
        Index("ix_visits_location_open", "location_id", "closed"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointments.id"), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    series_id: Mapped[int] = mapped_column(ForeignKey("appointment_series.id"))
    protocol_id: Mapped[int] = mapped_column(ForeignKey("protocols.id"))
    #: False until discharged; the board reads open visits only, so past visits cost it nothing
    closed: Mapped[bool] = mapped_column(Boolean, default=False)

    checked_in_at: Mapped[datetime] = mapped_column(UtcDateTime)
    checked_in_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    ride_home_arranged: Mapped[bool] = mapped_column(Boolean)
    ride_contact: Mapped[str | None] = mapped_column(String(200))
    #: SPR-09 preparation as asked at check-in: {"fasted_2h": bool|None, "no_liquids_30min": ..., ...}
    preparation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: CI-21: the screening the visit re-confirmed (a new one when answers changed)
    screening_id: Mapped[int | None] = mapped_column(ForeignKey("screening_results.id"))
    #: SPR-23: after a missed maintenance visit, whether symptoms worsened (None: not asked)
    symptoms_worsened: Mapped[bool | None] = mapped_column(Boolean)

    hold_released_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    hold_released_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    hold_release_reason: Mapped[str | None] = mapped_column(String(1000))
    #: the newest reading the release covered: any later high reading holds again
    hold_released_through_id: Mapped[int | None] = mapped_column(Integer)

    ordered_ug: Mapped[int | None] = mapped_column(BigInteger)
    ordered_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    ordered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    order_reason: Mapped[str | None] = mapped_column(String(1000))

    dose_ug: Mapped[int | None] = mapped_column(BigInteger)
    dosed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    #: the first device, or the start of the infusion or injection: the observation clock starts here
    dose_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    dose_ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    duration_reason: Mapped[str | None] = mapped_column(String(1000))
    earliest_discharge_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    ready_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ready_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    discharged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    discharged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    early_discharge_reason: Mapped[str | None] = mapped_column(String(1000))
    discharge_checks: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    #: SPR-18: the REMS Patient Monitoring Form's submission reference, once submitted
    pmf_reference: Mapped[str | None] = mapped_column(String(100))
    pmf_submitted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    pmf_submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    doses: Mapped[list[DoseItem]] = relationship(order_by="DoseItem.administered_at, DoseItem.id", lazy="selectin")
    vitals: Mapped[list[VitalSign]] = relationship(order_by="VitalSign.taken_at, VitalSign.id", lazy="selectin")


class VisitEvent(db.Model):  # type: ignore[name-defined]
    """One step of a visit, as it happened and as it was written down."""

    __tablename__ = "visit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"), index=True)
    from_status: Mapped[str] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    note: Mapped[str | None] = mapped_column(String(1000))


class VitalSign(db.Model):  # type: ignore[name-defined]
    __tablename__ = "vital_signs"
    __table_args__ = (
        CheckConstraint("systolic BETWEEN 40 AND 300 AND diastolic BETWEEN 20 AND 200", name="bp_plausible"),
        CheckConstraint("sedation IS NULL OR sedation BETWEEN 0 AND 5", name="moaas_scale"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"), index=True)
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    systolic: Mapped[int] = mapped_column(Integer)
    diastolic: Mapped[int] = mapped_column(Integer)
    heart_rate: Mapped[int] = mapped_column(Integer)
    spo2: Mapped[int | None] = mapped_column(Integer)
    respiratory_rate: Mapped[int | None] = mapped_column(Integer)
    #: MOAA/S, 5 = responds readily to name in a normal tone, 0 = no response (SPR-17)
    sedation: Mapped[int | None] = mapped_column(Integer)
    #: clinician-rated dissociation: 0 none, 1 mild, 2 moderate, 3 severe
    dissociation: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(String(1000))
    #: minutes after the dose started; None for a reading before the dose
    minutes_after_dose: Mapped[int | None] = mapped_column(Integer)
    #: the checkpoints (minutes) this reading satisfied, and those it satisfied late
    checkpoints: Mapped[list[int]] = mapped_column(JSON, default=list)
    late_for: Mapped[list[int]] = mapped_column(JSON, default=list)
    #: [{"field": "systolic", "value": 182, "limit": "above 160"}]: highlighted in words, not colour only
    out_of_range: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class DoseItem(db.Model):  # type: ignore[name-defined]
    """One container's part of the dose: a nasal device, or the vial an IV/IM dose was drawn from."""

    __tablename__ = "visit_doses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"), index=True)
    container_id: Mapped[int] = mapped_column(ForeignKey("containers.id"))
    administered_at: Mapped[datetime] = mapped_column(UtcDateTime)
    drawn_ug: Mapped[int] = mapped_column(BigInteger)
    administered_ug: Mapped[int] = mapped_column(BigInteger)
    wasted_ug: Mapped[int] = mapped_column(BigInteger, default=0)
    administration_entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"))
    waste_entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    #: an opened vial's remainder, resolved before the visit closes
    remainder_action: Mapped[str | None] = mapped_column(String(10))
    remainder_ug: Mapped[int | None] = mapped_column(BigInteger)
    remainder_entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    remainder_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    remainder_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    __table_args__ = (
        UniqueConstraint("visit_id", "container_id"),
        CheckConstraint(enum_check("remainder_action", RemainderAction, nullable=True), name="remainder_known"),
        CheckConstraint(
            "administered_ug > 0 AND wasted_ug >= 0 AND drawn_ug = administered_ug + wasted_ug", name="sums"
        ),
    )


class ObservationAlert(db.Model):  # type: ignore[name-defined]
    """An alert with its due time, written when the visit is dosed; the sweeper raises it once.

    The database holds the timer, not the broker: a worker or broker restart loses nothing, and
    ``raised_at`` is set under a row lock in the sweep's transaction, so no alert is raised twice.
    """

    __tablename__ = "observation_alerts"
    __table_args__ = (
        UniqueConstraint("visit_id", "kind", "checkpoint"),
        CheckConstraint(enum_check("kind", AlertKind), name="kind_known"),
        Index("ix_observation_alerts_pending", "due_at", "raised_at"),
        Index("ix_observation_alerts_location", "location_id", "raised_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"))
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    kind: Mapped[str] = mapped_column(String(24))
    #: minutes after the dose started for vitals alerts; 0 otherwise
    checkpoint: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    raised_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    #: the reading (or submission) that met it, before or after it was raised
    satisfied_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    satisfied_late: Mapped[bool] = mapped_column(Boolean, default=False)
    #: no longer needed (the visit closed first)
    cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

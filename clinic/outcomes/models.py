"""Outcome measures taken during a course: one PHQ-9 or GAD-7 per row.

A score is never edited. A correction is a new score naming the one it replaces (``replaces_id``,
unique: a score is replaced at most once, so two racing corrections cannot both stand), and the
replaced one drops out of the trend. The only later write to a row is a prescriber's acknowledgement
of its item-9 safety alert, once; migration 0009 adds triggers that refuse anything else.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from clinic.core.db import UtcDateTime, enum_check
from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.outcomes.scoring import SPECS, Band, Instrument

#: the rows a prescriber still has to see (OUT-04)
OPEN_ALERT = "safety_alert_at IS NOT NULL AND safety_acknowledged_at IS NULL"


def _total_in_range() -> str:
    return " OR ".join(f"(instrument = '{i.value}' AND total BETWEEN 0 AND {s.max_total})" for i, s in SPECS.items())


class OutcomeScore(db.Model):  # type: ignore[name-defined]
    __tablename__ = "outcome_scores"
    __table_args__ = (
        CheckConstraint(enum_check("instrument", Instrument), name="instrument_known"),
        CheckConstraint(enum_check("band", Band), name="band_known"),
        # OUT-01/02: a total on the instrument's own scale
        CheckConstraint(_total_in_range(), name="total_in_range"),
        CheckConstraint("replaces_id IS NULL OR replaces_id <> id", name="replaces_another"),
        # OUT-04: only a PHQ-9 raises the item-9 alert; an acknowledgement needs an alert, a prescriber and a note
        CheckConstraint("safety_alert_at IS NULL OR instrument = 'phq9'", name="alert_on_phq9"),
        CheckConstraint(
            "(safety_acknowledged_at IS NULL AND safety_acknowledged_by_id IS NULL"
            " AND safety_acknowledgement_note IS NULL)"
            " OR (safety_alert_at IS NOT NULL AND safety_acknowledged_at IS NOT NULL"
            " AND safety_acknowledged_by_id IS NOT NULL AND safety_acknowledgement_note IS NOT NULL)",
            name="acknowledged_whole",
        ),
        Index("ix_outcome_scores_series_taken", "series_id", "instrument", "taken_at"),
        Index("ix_outcome_scores_patient", "patient_id"),
        Index(
            "ix_outcome_scores_open_alerts",
            "series_id",
            postgresql_where=text(OPEN_ALERT),
            sqlite_where=text(OPEN_ALERT),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    #: the course the score belongs to
    series_id: Mapped[int] = mapped_column(ForeignKey("appointment_series.id"))
    #: the visit it was taken at, when it was taken at one
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointments.id"))
    instrument: Mapped[str] = mapped_column(String(8))
    #: the item scores as ticked, in the questionnaire's order
    items: Mapped[list[int]] = mapped_column(JSON)
    total: Mapped[int] = mapped_column(Integer)
    band: Mapped[str] = mapped_column(String(20))
    #: when the patient answered (back-charting allowed, never in the future)
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    #: the score this one corrects; that one is left out of the trend
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("outcome_scores.id"), unique=True)
    #: OUT-04: when the item-9 alert was raised (at recording), for a prescriber the same day
    safety_alert_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    safety_acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    safety_acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    safety_acknowledgement_note: Mapped[str | None] = mapped_column(String(1000))

    @property
    def safety_alert(self) -> bool:
        return self.safety_alert_at is not None

    def __repr__(self) -> str:  # ids only: scores are PHI
        return f"<OutcomeScore {self.id}>"

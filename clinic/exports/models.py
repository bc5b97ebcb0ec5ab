"""Export jobs and the accounting of disclosures they make (HIP-07..10)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from clinic.core.db import UtcDateTime, enum_check
from clinic.core.time import utcnow
from clinic.extensions import db


class ExportStatus(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class PurposeKind(StrEnum):
    """Why records leave the clinic. Health oversight, law enforcement and disclosures required by
    law are accounted for per patient (HIP-08/09); the clinic's own operations are not (HIP-07)."""

    health_oversight = "health_oversight"
    law_enforcement = "law_enforcement"
    required_by_law = "required_by_law"
    operations = "operations"


#: purposes that need no accounting entry (HIP-07: treatment, payment, operations)
NOT_ACCOUNTED = frozenset({PurposeKind.operations})


class Export(db.Model):  # type: ignore[name-defined]
    __tablename__ = "exports"
    __table_args__ = (
        CheckConstraint(enum_check("status", ExportStatus), name="status_known"),
        CheckConstraint(enum_check("purpose_kind", PurposeKind), name="purpose_kind_known"),
        Index("ix_exports_requested_by", "requested_by_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(20))
    file_format: Mapped[str] = mapped_column(String(5))
    profile: Mapped[str] = mapped_column(String(20))
    location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id"))
    since: Mapped[datetime] = mapped_column(UtcDateTime)
    until: Mapped[datetime] = mapped_column(UtcDateTime)
    schedule: Mapped[str | None] = mapped_column(String(4))
    drug_id: Mapped[int | None] = mapped_column(ForeignKey("drugs.id"))
    recipient: Mapped[str | None] = mapped_column(String(200))
    recipient_address: Mapped[str | None] = mapped_column(String(500))
    purpose_kind: Mapped[str] = mapped_column(String(20), default=PurposeKind.operations.value)
    purpose: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(8), default=ExportStatus.queued.value)
    rows_done: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_total: Mapped[int | None] = mapped_column(BigInteger)
    rows: Mapped[int | None] = mapped_column(BigInteger)
    file_name: Mapped[str | None] = mapped_column(String(200))
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    #: the clinic's own run of the offline verifier on the finished bundle
    verification: Mapped[str | None] = mapped_column(String(300))
    error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Disclosure(db.Model):  # type: ignore[name-defined]
    """HIP-10: one accounting entry per patient whose PHI an export took outside the clinic."""

    __tablename__ = "disclosures"
    __table_args__ = (Index("ix_disclosures_patient", "patient_id", "disclosed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    export_id: Mapped[int] = mapped_column(ForeignKey("exports.id"))
    disclosed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recipient: Mapped[str] = mapped_column(String(200))
    recipient_address: Mapped[str | None] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text)
    purpose_kind: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(500))
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

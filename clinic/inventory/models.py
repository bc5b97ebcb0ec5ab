"""Drugs, containers and the controlled-substance ledger.

Quantities are integer micrograms (``*_ug``): exact on every backend, no floats anywhere.
The API speaks decimal milligram strings; conversion happens in schemas.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic.core.db import UtcDateTime, enum_check
from clinic.core.time import utcnow
from clinic.extensions import db


class Schedule(StrEnum):
    CII = "CII"
    CIII = "CIII"
    CIV = "CIV"
    CV = "CV"


class DrugForm(StrEnum):
    vial = "vial"
    nasal_device = "nasal_device"
    tablet = "tablet"
    troche = "troche"


class DrugUnit(StrEnum):
    mL = "mL"
    device = "device"
    tablet = "tablet"
    troche = "troche"


class ContainerStatus(StrEnum):
    sealed = "sealed"
    open = "open"
    empty = "empty"
    expired = "expired"
    quarantined = "quarantined"
    disposed = "disposed"


class EntryKind(StrEnum):
    initial_inventory = "initial_inventory"
    receipt = "receipt"
    administration = "administration"
    waste = "waste"
    transfer = "transfer"
    return_to_distributor = "return_to_distributor"
    destruction = "destruction"
    loss = "loss"
    stock_count = "count"  # (str.count would be shadowed by a member called count)
    adjustment = "adjustment"
    correction = "correction"


class LossKind(StrEnum):
    """What a loss entry says happened; theft and significant loss also open a Form 106 draft."""

    theft = "theft"
    loss = "loss"
    breakage = "breakage"
    spill = "spill"


#: kinds a count shortage can be escalated to: it is unexplained, so it cannot be a spill
ESCALATION_KINDS = (LossKind.theft, LossKind.loss)


class DiscrepancyAction(StrEnum):
    """How a prescriber resolves a count discrepancy (DEA-20/21)."""

    explain = "explain"
    adjust = "adjust"
    escalate = "escalate"


class LossReportStep(StrEnum):
    notified = "notified"
    filed = "filed"
    #: the state board's own notice (DEA-37), when the location's profile sets a deadline for it
    board_notified = "board_notified"


class Drug(db.Model):  # type: ignore[name-defined]
    __tablename__ = "drugs"
    __table_args__ = (
        CheckConstraint(enum_check("schedule", Schedule), name="schedule_known"),
        CheckConstraint(enum_check("form", DrugForm), name="form_known"),
        CheckConstraint(enum_check("unit", DrugUnit), name="unit_known"),
        CheckConstraint("ug_per_unit > 0", name="strength_positive"),
        CheckConstraint("milliunits_per_container > 0", name="size_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    ndc: Mapped[str] = mapped_column(String(13), unique=True)
    schedule: Mapped[str] = mapped_column(String(4))
    form: Mapped[str] = mapped_column(String(20))
    unit: Mapped[str] = mapped_column(String(10))
    #: strength: micrograms per unit (50 mg/mL -> 50_000)
    ug_per_unit: Mapped[int] = mapped_column(BigInteger)
    #: container size in thousandths of a unit (a 10 mL vial -> 10_000)
    milliunits_per_container: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    @property
    def container_ug(self) -> int:
        return self.ug_per_unit * self.milliunits_per_container // 1000


class Container(db.Model):  # type: ignore[name-defined]
    """One vial, device or bottle. Its balance is a cache of its ledger movements, kept exact."""

    __tablename__ = "containers"
    __table_args__ = (
        CheckConstraint("balance_ug >= 0", name="balance_not_negative"),
        CheckConstraint("balance_ug <= initial_ug", name="balance_within_initial"),
        CheckConstraint(enum_check("status", ContainerStatus), name="status_known"),
        Index("ix_containers_location_status", "location_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    storage_site_id: Mapped[int] = mapped_column(ForeignKey("storage_sites.id"))
    drug_id: Mapped[int] = mapped_column(ForeignKey("drugs.id"))
    lot_number: Mapped[str] = mapped_column(String(40))
    expires_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(12), default=ContainerStatus.sealed.value)
    initial_ug: Mapped[int] = mapped_column(BigInteger)
    balance_ug: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    drug: Mapped[Drug] = relationship(lazy="joined", innerjoin=True)


class LedgerChain(db.Model):  # type: ignore[name-defined]
    """The head of one location's hash chain. Locked for every append, so appends are serialised."""

    __tablename__ = "ledger_chains"

    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"), primary_key=True)
    head_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    head_hash: Mapped[str] = mapped_column(String(64))
    has_initial_inventory: Mapped[bool] = mapped_column(Boolean, default=False)
    #: when the initial inventory was taken (DEA-14): nothing at the location is recorded before it
    initial_inventory_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class LedgerEntry(db.Model):  # type: ignore[name-defined]
    """One controlled-substance movement or record. Append-only (SYS-01): triggers reject changes.

    ``delta_ug`` is the signed change to the container's balance; ``balance_after_ug`` the balance
    it left. ``hash`` = SHA-256(0x00 || canonical(fields) || prev_hash) (RELIABILITY.md §1.3).
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("location_id", "seq"),
        UniqueConstraint("location_id", "prev_hash"),  # no two entries continue the same head: no forks
        CheckConstraint(enum_check("kind", EntryKind), name="kind_known"),
        CheckConstraint("balance_after_ug IS NULL OR balance_after_ug >= 0", name="balance_after_not_negative"),
        CheckConstraint("witness_id IS NULL OR witness_id <> actor_id", name="witness_not_actor"),
        CheckConstraint("second_witness_id IS NULL OR second_witness_id <> actor_id", name="second_witness_not_actor"),
        Index("ix_ledger_entries_container", "container_id", "seq"),
        Index("ix_ledger_entries_location_occurred", "location_id", "occurred_at"),
        Index("ix_ledger_entries_kind", "location_id", "kind", "seq"),
        # the entries written before migration 0021 (no stored record): where an export must still
        # rebuild the record; new entries never enter it
        Index(
            "ix_ledger_entries_no_record",
            "location_id",
            "seq",
            postgresql_where=text("committed_record IS NULL"),
            sqlite_where=text("committed_record IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(24))
    container_id: Mapped[int | None] = mapped_column(ForeignKey("containers.id"))
    drug_id: Mapped[int | None] = mapped_column(ForeignKey("drugs.id"))
    delta_ug: Mapped[int] = mapped_column(BigInteger, default=0)
    balance_after_ug: Mapped[int | None] = mapped_column(BigInteger)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"))
    appointment_id: Mapped[int | None] = mapped_column(Integer)
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    witness_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    second_witness_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    #: the seq (same location) of the entry this one corrects
    corrects_seq: Mapped[int | None] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str | None] = mapped_column(String(500))
    #: kind-specific record fields (supplier, invoice, method, storage sites, count id, ...)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: form 2 (HIP-15): the random salt of each PHI field's commitment, by path ("patient_id",
    #: "details.patient_name"); kept here, never exported without its value. NULL: a form-1 entry
    #: (hashed in the clear, before migration 0013), whose salts are in ``ledger_form1_salts``.
    phi_salts: Mapped[dict[str, str] | None] = mapped_column(JSON)
    #: form 2's committed record as its hash covers it (``canonical(committed(...), 2)``, UTF-8),
    #: kept by the append so an export sends it as it is (issue 13); the integrity check proves it
    #: equal to the record the columns give. NULL: an entry written before migration 0021.
    committed_record: Mapped[str | None] = mapped_column(Text)

    container: Mapped[Container | None] = relationship(lazy="joined")


class Form1Salts(db.Model):  # type: ignore[name-defined]
    """The salts migration 0013 gave a form-1 entry's PHI fields, so an export can leave its PHI out
    and still prove it through the chain's re-anchoring entry (HIP-15, SYS-05)."""

    __tablename__ = "ledger_form1_salts"

    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    salts: Mapped[dict[str, str]] = mapped_column(JSON)


class CountKind(StrEnum):
    shift = "shift"
    initial = "initial"
    biennial = "biennial"


class DiscrepancyStatus(StrEnum):
    open = "open"
    explained = "explained"
    adjusted = "adjusted"
    escalated = "escalated"


class Count(db.Model):  # type: ignore[name-defined]
    __tablename__ = "counts"
    __table_args__ = (CheckConstraint(enum_check("kind", CountKind), name="kind_known"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    kind: Mapped[str] = mapped_column(String(10))
    business_hours: Mapped[str | None] = mapped_column(String(8))
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    witness_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))


class CountLine(db.Model):  # type: ignore[name-defined]
    __tablename__ = "count_lines"
    __table_args__ = (UniqueConstraint("count_id", "container_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    count_id: Mapped[int] = mapped_column(ForeignKey("counts.id"))
    container_id: Mapped[int] = mapped_column(ForeignKey("containers.id"))
    expected_ug: Mapped[int] = mapped_column(BigInteger)
    counted_ug: Mapped[int] = mapped_column(BigInteger)
    is_exact: Mapped[bool] = mapped_column(Boolean, default=True)


class Discrepancy(db.Model):  # type: ignore[name-defined]
    """A count that differs from the books. Must be explained, adjusted (two signatures) or escalated."""

    __tablename__ = "discrepancies"
    __table_args__ = (
        CheckConstraint(enum_check("status", DiscrepancyStatus), name="status_known"),
        Index("ix_discrepancies_location_status", "location_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    count_id: Mapped[int] = mapped_column(ForeignKey("counts.id"))
    container_id: Mapped[int] = mapped_column(ForeignKey("containers.id"))
    expected_ug: Mapped[int] = mapped_column(BigInteger)
    counted_ug: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10), default=DiscrepancyStatus.open.value)
    resolution: Mapped[str | None] = mapped_column(String(1000))
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    @property
    def difference_ug(self) -> int:
        return self.counted_ug - self.expected_ug


class AlertDecision(StrEnum):
    """How a prescriber or admin closes a small-discrepancy pattern alert (DEA-35)."""

    #: the pattern is a significant loss: it is reported (a Form 106 is opened through an escalation)
    reported = "reported"
    #: after review, not a loss (e.g. a counting practice now fixed): said why
    not_significant = "not_significant"


class DiscrepancyAlert(db.Model):  # type: ignore[name-defined]
    """DEA-35: a continuing pattern of small unexplained shortages, raised once and resolved by a
    prescriber or admin with a documented decision. Shortages from before a resolved alert's raising
    do not count again."""

    __tablename__ = "discrepancy_alerts"
    __table_args__ = (
        CheckConstraint("decision IS NULL OR decision IN ('reported', 'not_significant')", name="decision_known"),
        Index("ix_discrepancy_alerts_location", "location_id", "resolved_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    raised_at: Mapped[datetime] = mapped_column(UtcDateTime)
    #: the unexplained shortages that made the pattern, and the rule then in force
    discrepancy_ids: Mapped[list[int]] = mapped_column(JSON)
    rule: Mapped[dict[str, Any]] = mapped_column(JSON)
    decision: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(1000))
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class LossReport(db.Model):  # type: ignore[name-defined]
    """A DEA Form 106 draft with its deadlines (DEA-31/32): notice in 1 business day, filing in 45 days."""

    __tablename__ = "loss_reports"
    __table_args__ = (CheckConstraint(enum_check("kind", LossKind), name="kind_known"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"))
    kind: Mapped[str] = mapped_column(String(12))
    discovered_at: Mapped[datetime] = mapped_column(UtcDateTime)
    notice_due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    filing_due_on: Mapped[date] = mapped_column(Date)
    notified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    filed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    form: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: DEA-37: the state board's own deadline (a local day), when the profile sets one
    board_notice_due_on: Mapped[date | None] = mapped_column(Date)
    board_notified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Checkpoint(db.Model):  # type: ignore[name-defined]
    """A signed chain head (Ed25519): lets an auditor detect truncation or a recomputed chain."""

    __tablename__ = "ledger_checkpoints"
    __table_args__ = (UniqueConstraint("location_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    public_key: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))


class LedgerAnchor(db.Model):  # type: ignore[name-defined]
    """Where a location's chain starts again after ``clinic purge ledger`` removed its oldest entries
    (SYS-02, DEA-08, SYS-05): the hash of the last entry removed and the chain's facts at that seq
    (each container's running balance, status, site and last seq; the initial inventory; the form-1
    re-anchoring state), signed (clinic.inventory.anchors.anchor_message). Append-only."""

    __tablename__ = "ledger_anchors"
    __table_args__ = (UniqueConstraint("location_id", "through_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    purge_id: Mapped[int] = mapped_column(ForeignKey("purges.id"))
    through_seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    cutoff: Mapped[datetime] = mapped_column(UtcDateTime)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    public_key: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))

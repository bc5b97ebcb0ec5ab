from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from clinic.core.db import UtcDateTime
from clinic.core.time import utcnow
from clinic.extensions import db


class AccessEvent(db.Model):  # type: ignore[name-defined]
    """One row per authenticated request and per denial (HIP-01..03, ASVS V16.2.1, V16.3.2).

    Append-only: UPDATE and DELETE are rejected by database triggers (migration 0001).
    No PHI: the object is named by type and id, never by content.
    """

    __tablename__ = "access_events"
    __table_args__ = (
        Index("ix_access_events_occurred_at", "occurred_at"),
        Index("ix_access_events_user_occurred", "user_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    #: "GET auth_api.Me": the method and the endpoint, stable across URL changes.
    action: Mapped[str] = mapped_column(String(160))
    #: "user:17", or "" when the request names no object; every object, however many (a receipt of
    #: 500 containers names its 500 ledger entries), so unbounded text, never cut.
    object: Mapped[str] = mapped_column(Text, default="")
    #: allowed, denied (authorisation), unauthenticated, failed (4xx other than those), error (5xx)
    outcome: Mapped[str] = mapped_column(String(20))
    status_code: Mapped[int] = mapped_column(SmallInteger)
    client_addr: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64))


class AuditEvent(db.Model):  # type: ignore[name-defined]
    """A state change, recorded in the same transaction as the change. Append-only."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_subject", "subject_type", "subject_id"),
        Index("ix_audit_events_occurred_at", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    #: source:subject:action, e.g. "auth:user:disable"
    tag: Mapped[str] = mapped_column(String(80))
    subject_type: Mapped[str] = mapped_column(String(40))
    subject_id: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    request_id: Mapped[str | None] = mapped_column(String(64))


class LogSeal(db.Model):  # type: ignore[name-defined]
    """A signed checkpoint over a range of access-log or audit-trail rows (SYS-05, HIP-04).

    Rows ``first_id..last_id`` of ``stream`` hash to ``root`` (clinic.audit.sealform); each seal
    names the hash of the one before, so a seal removed or re-signed breaks the next one's link.
    Append-only like the rows it seals (migration 0014).
    """

    __tablename__ = "log_seals"
    __table_args__ = (
        UniqueConstraint("stream", "seq"),
        CheckConstraint("stream IN ('access', 'audit')", name="stream_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stream: Mapped[str] = mapped_column(String(10))
    seq: Mapped[int] = mapped_column(Integer)
    first_id: Mapped[int] = mapped_column(BigInteger)
    last_id: Mapped[int] = mapped_column(BigInteger)
    row_count: Mapped[int] = mapped_column(Integer)
    root: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    #: the newest row's time: a purge removes a seal's rows only once this is older than retention
    last_occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sealed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    public_key: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))


class Purge(db.Model):  # type: ignore[name-defined]
    """One run of ``clinic purge`` on one stream, done or refused (SYS-02). Never deleted.

    While ``open`` (only inside the purging transaction, so no other session ever sees it) the
    database's retention guard lets that transaction delete rows of the stream up to ``through_id``
    that are older than retention; the guard checks the age itself.
    """

    __tablename__ = "purges"
    __table_args__ = (Index("ix_purges_stream", "stream", "open"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stream: Mapped[str] = mapped_column(String(20))
    #: the ledger's purge (stream "ledger", migration 0022) is one location's: its chain, whose
    #: entries up to seq ``through_id`` the open row lets the guard delete
    location_id: Mapped[int | None] = mapped_column(Integer)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    requested_by: Mapped[str] = mapped_column(String(200))
    cutoff: Mapped[datetime] = mapped_column(UtcDateTime)
    through_id: Mapped[int] = mapped_column(BigInteger, default=0)
    #: the seals whose rows were removed (the seals themselves stay: verify still links them)
    through_seal: Mapped[int] = mapped_column(Integer, default=0)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str] = mapped_column(String(1000), default="")
    open: Mapped[bool] = mapped_column(Boolean, default=False)
    #: a done purge is signed (clinic.audit.sealform.purge_message), so a forged one does not verify
    public_key: Mapped[str | None] = mapped_column(String(64))
    signature: Mapped[str | None] = mapped_column(String(128))


class IntegrityCheck(db.Model):  # type: ignore[name-defined]
    """The result of one daily integrity check: every ledger chain and the sealed logs."""

    __tablename__ = "integrity_checks"
    __table_args__ = (Index("ix_integrity_checks_checked_at", "checked_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    checked_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ok: Mapped[bool] = mapped_column(Boolean)
    problems: Mapped[list[str]] = mapped_column(JSON, default=list)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

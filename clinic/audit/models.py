from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, SmallInteger, String, Text
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

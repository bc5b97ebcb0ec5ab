from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from clinic.core.db import UtcDateTime
from clinic.extensions import db


class Heartbeat(db.Model):  # type: ignore[name-defined]
    """Last time a periodic task ran: proves beat scheduled it and a worker executed it."""

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    beat_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Installation(db.Model):  # type: ignore[name-defined]
    """This installation's own id (one row, made by migration 0015): what keeps its calendar events'
    UIDs apart from another installation's in one subscriber's calendar (RFC 5545 §3.8.4.7)."""

    __tablename__ = "installation"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(36))

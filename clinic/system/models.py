from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from clinic.core.db import UtcDateTime
from clinic.extensions import db


class Heartbeat(db.Model):  # type: ignore[name-defined]
    """Last time a periodic task ran: proves beat scheduled it and a worker executed it."""

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    beat_at: Mapped[datetime] = mapped_column(UtcDateTime)

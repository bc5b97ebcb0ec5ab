"""The one clock. UTC inside; zones only at the edges (schemas, templates)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_zone(dt: datetime, tz: str) -> datetime:
    return dt.astimezone(ZoneInfo(tz))

"""The one clock. UTC inside; zones only at the edges (schemas, templates).

Every "now" comes from ``utcnow``. A calendar day is always a day *somewhere*: a location's or a
patient's IANA zone, never the server's and never UTC's (at 02:30 UTC it is still yesterday in
the Americas). Ask ``today_at(zone)`` for it, and ``local_day(instant, zone)`` for the day an
instant falls on there.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

Zone = str | ZoneInfo


def _zone(tz: Zone) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_zone(dt: datetime, tz: Zone) -> datetime:
    return dt.astimezone(_zone(tz))


def local_now(tz: Zone) -> datetime:
    """Now as a wall clock in ``tz`` shows it (an aware datetime in that zone)."""
    return to_zone(utcnow(), tz)


def local_day(at: datetime, tz: Zone) -> date:
    """The calendar date in ``tz`` at the instant ``at`` (an aware datetime)."""
    return to_zone(at, tz).date()


def today_at(tz: Zone) -> date:
    """Today's date in ``tz``: the day a location's staff or a patient there would write down."""
    return local_day(utcnow(), tz)


#: Clock skew tolerated for a back-charted time said to be "now" by another machine.
FUTURE_TOLERANCE = timedelta(minutes=2)


def happened_at(value: datetime | None, field: str) -> datetime:
    """When something happened, as the client charts it: default now, never in the future, UTC."""
    from clinic.core.errors import ValidationFailed

    now = utcnow()
    if value is None:
        return now
    if value.tzinfo is None:
        raise ValidationFailed(errors={field: ["Give a time zone offset."]})
    if value > now + FUTURE_TOLERANCE:
        raise ValidationFailed(errors={field: ["Cannot be in the future."]})
    return value.astimezone(UTC)


def database_now() -> datetime:
    """The database server's clock: one authority for processes whose own clocks may step.

    Beat and workers raise timers by it, so a worker whose clock jumps an hour raises nothing early
    or late (RELIABILITY F12). On SQLite the database is this process, so it is :func:`utcnow`.
    """
    from sqlalchemy import text

    from clinic.extensions import db

    if db.engine.dialect.name != "postgresql":
        return utcnow()
    value = db.session.scalar(text("SELECT clock_timestamp()"))
    return value.astimezone(UTC)

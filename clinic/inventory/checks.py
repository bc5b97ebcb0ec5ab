"""What an entry must pass before it is appended: its times in order and its links agreeing.

Called by the services under the chain lock (so what they read cannot change before the append),
and kept apart from ``ledger.append`` itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from clinic.core.errors import ValidationFailed
from clinic.core.time import EARLIEST, OFF_THE_CALENDAR, utcnow
from clinic.extensions import db
from clinic.inventory.models import EntryKind, LedgerEntry

#: the default back-charting window (CLINIC_LEDGER_BACKCHART_HOURS); earlier needs a reason (DEA-06)
BACKCHART_HOURS = 72


def when(
    *,
    location_id: int,
    at: datetime,
    field: str,
    container_ids: tuple[int, ...] = (),
    late_reason: str | None = None,
    initial: bool = False,
) -> dict[str, Any]:
    """DEA-06: ``occurred_at`` is when it really happened, so it must fit the record: on the
    calendar, not before the location's initial inventory nor before the container's previous
    movement, and within the back-charting window unless a reason is given. Returns the details
    the entry keeps about it (the reason for a late entry)."""
    if at < EARLIEST:
        raise ValidationFailed(errors={field: [OFF_THE_CALENDAR]})
    hours = int(current_app.config.get("LEDGER_BACKCHART_HOURS", BACKCHART_HOURS))
    reason = (late_reason or "").strip()
    if at < utcnow() - timedelta(hours=hours) and not reason:
        raise ValidationFailed(
            errors={
                field: [
                    f"More than {hours} hours ago: give late_entry_reason to chart it this late.",
                ],
                "late_entry_reason": ["Required for an entry charted this late."],
            }
        )
    if not initial:
        opened = db.session.scalar(
            select(LedgerEntry.occurred_at)
            .where(LedgerEntry.location_id == location_id, LedgerEntry.kind == EntryKind.initial_inventory.value)
            .limit(1)
        )
        if opened is not None and at < opened:
            raise ValidationFailed(
                errors={field: [f"Before this location's initial inventory ({opened.isoformat()})."]}
            )
    for cid in container_ids:
        last = db.session.scalar(select(func.max(LedgerEntry.occurred_at)).where(LedgerEntry.container_id == cid))
        if last is not None:
            last = _aware(last)
            if at < last:
                raise ValidationFailed(
                    errors={field: [f"Before container {cid}'s previous movement ({last.isoformat()})."]}
                )
    return {"late_entry_reason": reason} if reason else {}


def not_before(later: datetime, earlier: datetime, field: str, what: str) -> None:
    if later < earlier:
        raise ValidationFailed(errors={field: [f"Cannot be before {what}."]})


def _aware(value: datetime | str) -> datetime:
    """Aggregates skip the column type on SQLite: the max comes back as text."""
    from datetime import UTC

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)

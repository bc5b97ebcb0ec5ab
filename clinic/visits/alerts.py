"""The observation timers' sweeper: every due alert raised exactly once (SYS-06, RELIABILITY F12).

Due times are rows written when the visit is dosed; nothing waits in the broker. The beat task
runs every few seconds and raises what is due in one transaction: the rows are locked with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL (two sweepers never take the same alert; SQLite's write
lock serialises them), and ``raised_at`` is set in the same commit as the audit row. A sweeper
killed before it commits raised nothing; the next one raises it. One that committed has raised
it, and it is never picked again.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from clinic.audit import service as audit
from clinic.audit.tags import Tag
from clinic.extensions import db
from clinic.visits.models import ObservationAlert

logger = logging.getLogger(__name__)

#: alerts raised per sweep; the rest wait for the next sweep a few seconds later
BATCH = 500


def raise_due(now: datetime) -> list[ObservationAlert]:
    q = (
        select(ObservationAlert)
        .where(
            ObservationAlert.raised_at.is_(None),
            ObservationAlert.satisfied_at.is_(None),
            ObservationAlert.cancelled_at.is_(None),
            ObservationAlert.due_at <= now,
        )
        .order_by(ObservationAlert.due_at, ObservationAlert.id)
        .limit(BATCH)
    )
    if db.engine.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    alerts = list(db.session.scalars(q))
    for alert in alerts:
        alert.raised_at = now
        audit.record(
            actor=None,
            tag=Tag.visits_alert_raise,
            subject=("visit", alert.visit_id),
            data={
                "alert_id": alert.id,
                "kind": alert.kind,
                "checkpoint": alert.checkpoint,
                "due_at": alert.due_at.isoformat(),
            },
        )
        logger.info(
            "alert %s raised: %s at %s min for visit %s", alert.id, alert.kind, alert.checkpoint, alert.visit_id
        )
    db.session.flush()
    return alerts

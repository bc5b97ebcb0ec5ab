from __future__ import annotations

from celery import shared_task

from clinic.core.time import database_now
from clinic.visits import alerts


@shared_task(name="visits.raise_due_alerts", acks_late=True, ignore_result=True)
def raise_due_alerts() -> int:
    """Beat task body: raise every observation alert that is due by the database's clock, once (SYS-06)."""
    return len(alerts.raise_due(database_now()))

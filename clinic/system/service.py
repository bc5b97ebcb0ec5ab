from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import text

from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.system.models import Heartbeat

logger = logging.getLogger(__name__)

SCHEDULER = "scheduler"


def record_heartbeat(name: str = SCHEDULER) -> datetime:
    now = utcnow()
    row = db.session.get(Heartbeat, name)
    if row is None:
        db.session.add(Heartbeat(name=name, beat_at=now))
    else:
        row.beat_at = now
    db.session.flush()
    return now


def scheduler_is_stale() -> bool:
    """True when the beat -> worker loop has not run lately: reminders would silently stop."""
    row = db.session.get(Heartbeat, SCHEDULER)
    limit = timedelta(seconds=current_app.config["HEARTBEAT_STALE_SECONDS"])
    return row is None or utcnow() - row.beat_at > limit


def database_ok() -> bool:
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:
        db.session.rollback()
        logger.warning("health: database unreachable")
        return False
    db.session.rollback()
    return True


def broker_ok() -> bool:
    celery = current_app.extensions["celery"]
    try:
        with celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception:
        logger.warning("health: broker unreachable")
        return False
    return True

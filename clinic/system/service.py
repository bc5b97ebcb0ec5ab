from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import text

from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.system.models import Heartbeat

logger = logging.getLogger(__name__)

SCHEDULER = "scheduler"
#: when this process started: the dashboard gives a scheduler started beside it the stale limit to
#: report in before it warns (issue 10: right after `make run`, beat's first heartbeat is a minute away)
STARTED_AT = utcnow()


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


def scheduler_warning() -> bool:
    """The dashboard's banner: a heartbeat was missed, counting from the later of the last heartbeat
    and this process's start. Readiness stays strict (``scheduler_is_stale``): a probe must not call
    a scheduler that never reported in healthy."""
    row = db.session.get(Heartbeat, SCHEDULER)
    limit = timedelta(seconds=current_app.config["HEARTBEAT_STALE_SECONDS"])
    since = STARTED_AT if row is None else max(row.beat_at, STARTED_AT)
    return utcnow() - since > limit


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


@functools.cache
def _code_revisions() -> tuple[frozenset[str], frozenset[str]]:
    """(heads, every revision) of the migrations this code ships: read once per process."""
    from alembic.script import ScriptDirectory

    from clinic.cli import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(script.get_heads()), frozenset(rev.revision for rev in script.walk_revisions())


def migrations_state() -> str:
    """ "ok" when the database's schema is this code's head; else "behind", "ahead" or "unavailable".

    "ahead" is a database migrated by newer code than this process runs (a rollback of the code).
    """
    try:
        found = frozenset(db.session.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except Exception:
        db.session.rollback()
        logger.warning("health: no migration version could be read")
        return "unavailable"
    db.session.rollback()
    heads, known = _code_revisions()
    if found == heads:
        return "ok"
    return "behind" if found <= known else "ahead"


def readiness() -> dict[str, str]:
    """What a load balancer needs before it sends traffic: each check "ok" or what is wrong."""
    database = database_ok()
    checks = {
        "database": "ok" if database else "unavailable",
        "migrations": migrations_state() if database else "unknown",
        "broker": "ok" if broker_ok() else "unavailable",
        "scheduler": "unknown",
    }
    if database:
        try:
            checks["scheduler"] = "stale" if scheduler_is_stale() else "ok"
        except Exception:  # e.g. the heartbeats table is not there yet (migrations behind)
            logger.warning("health: no scheduler heartbeat could be read")
        finally:
            db.session.rollback()
    return checks

"""Retention (SYS-02): what may be purged, and ``clinic purge`` for the access log and audit trail.

The logs are kept for the longest retention of any location, never under 6 years (HIPAA, HIP-06),
and not at all while any location is under legal hold. A purge removes the rows of whole seals
whose newest row is past that age, oldest first; the seals themselves stay, so the chain of seals
still links and ``clinic ledger verify`` still proves what is left (a signed purge record says
which seals' rows are gone, and by which cutoff). Every run is recorded, a refused one too.

The database guards the same rule on its own (clinic.core.retention): the delete runs under an
open ``purges`` row only this transaction can see, and the trigger re-checks each row's age by
the database's clock, so no path, this one included, can remove a young row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, event, select, text

from clinic.audit import sealform
from clinic.audit.models import AccessEvent, AuditEvent, LogSeal, Purge
from clinic.audit.service import record
from clinic.audit.tags import Tag
from clinic.core import signing
from clinic.core.errors import DomainError
from clinic.core.retention import LOG_FLOOR_YEARS
from clinic.extensions import db

#: export-style names (CONTRACT "access-log") -> seal streams
KINDS = {"access-log": "access", "audit-trail": "audit"}
_TABLES = {"access": AccessEvent.__table__, "audit": AuditEvent.__table__}


class RetentionError(DomainError):
    """A record is within its retention period: it cannot be deleted (SYS-02)."""

    code = "retention"
    http_status = 409
    title = "Within its retention period"


@dataclass
class Policy:
    years: int
    held_by: list[int]


def log_policy() -> Policy:
    """The logs' retention (SYS-02): the longest of any location's, at least 6 years (HIP-06); the
    holds in force."""
    from clinic.locations.models import Location

    years, held = LOG_FLOOR_YEARS, []
    for location in db.session.scalars(select(Location).order_by(Location.id)):
        years = max(years, int(location.rule("retention_years") or 0))
        if location.rule("legal_hold"):
            held.append(location.id)
    return Policy(years, held)


def database_clock() -> datetime:
    """The clock the database's guard uses (PostgreSQL's now(), SQLite's 'now'), so both agree."""
    if db.engine.dialect.name == "postgresql":
        value = db.session.scalar(text("SELECT now()"))
        return value.astimezone(UTC)
    value = db.session.scalar(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"))
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def years_before(at: datetime, years: int) -> datetime:
    """``years`` calendar years before ``at``, less a day: the database's own calendar arithmetic
    (a 29 February) can then never keep a row this cutoff lets go."""
    try:
        back = at.replace(year=at.year - years)
    except ValueError:  # 29 February
        back = at.replace(year=at.year - years, day=28)
    return back - timedelta(days=1)


def purge(kind: str, *, requested_by: str, dry_run: bool = False) -> Purge:
    """Remove the rows of the whole seals of ``kind`` older than retention; record the run (SYS-02)."""
    stream = KINDS[kind]
    now = database_clock()
    policy = log_policy()
    cutoff = years_before(now, policy.years)
    run = _new_run(stream, requested_by, now, cutoff)
    if policy.held_by:
        return _refuse(run, f"location(s) {', '.join(map(str, policy.held_by))} under legal hold")
    done = (
        db.session.scalar(
            select(Purge.through_seal)
            .where(Purge.stream == stream, Purge.outcome == "done")
            .order_by(Purge.through_seal.desc())
            .limit(1)
        )
        or 0
    )
    through: LogSeal | None = None
    for seal in db.session.scalars(
        select(LogSeal).where(LogSeal.stream == stream, LogSeal.seq > done).order_by(LogSeal.seq)
    ):
        if seal.last_occurred_at >= cutoff:
            break  # oldest first, whole seals only: a younger seal ends the purge
        through = seal
    if through is None:
        run.outcome, run.detail = "nothing", f"no sealed rows older than {policy.years} years"
        db.session.add(run)
        return run
    run.through_seal, run.through_id = through.seq, through.last_id
    if dry_run:
        run.outcome = "dry_run"
        run.rows = _count(stream, through.last_id)
        return run
    run.open, run.outcome = (
        True,
        "running",
    )  # seen only by this transaction: the database's guard lets it delete these ids
    db.session.add(run)
    db.session.flush()
    table = _TABLES[stream]
    run.rows = db.session.execute(delete(table).where(table.c.id <= through.last_id)).rowcount or 0  # type: ignore[attr-defined]
    run.open, run.outcome = False, "done"
    run.detail = f"rows of seals up to {through.seq} (ids up to {through.last_id}), older than {policy.years} years"
    sign_purge(run, cutoff=cutoff, requested_at=now)
    db.session.flush()
    record(
        actor=None,
        tag=Tag.audit_log_purge,
        subject=("purge", run.id),
        data={"stream": stream, "through_seal": run.through_seal, "rows": run.rows, "requested_by": run.requested_by},
    )
    return run


def sign_purge(run: Purge, *, cutoff: datetime, requested_at: datetime) -> None:
    """Sign what a purge removed (SYS-02), so ``clinic-verify`` can tell a signed gap from a dropped range."""
    fields = {
        "stream": run.stream,
        "through_seal": run.through_seal,
        "through_id": run.through_id,
        "cutoff": cutoff,
        "requested_at": requested_at,
    }
    run.public_key, run.signature = signing.public_key_hex(), signing.sign(sealform.purge_message(fields))


def _new_run(stream: str, requested_by: str, now: datetime, cutoff: datetime) -> Purge:
    return Purge(
        stream=stream,
        requested_at=now,
        requested_by=requested_by[:200],
        cutoff=cutoff,
        through_id=0,
        through_seal=0,
        rows=0,
        detail="",
        open=False,
    )


def _count(stream: str, through_id: int) -> int:
    from sqlalchemy import func

    table = _TABLES[stream]
    return db.session.scalar(select(func.count()).select_from(table).where(table.c.id <= through_id)) or 0


def _refuse(run: Purge, why: str) -> Purge:
    run.outcome, run.detail = "refused", why[:1000]
    db.session.add(run)
    db.session.flush()
    record(
        actor=None,
        tag=Tag.audit_log_purge_refused,
        subject=("purge", run.id),
        data={"stream": run.stream, "reason": run.detail, "requested_by": run.requested_by},
    )
    return run


def refuse_ledger(kind: str, *, requested_by: str) -> Purge:
    """Inventories are not purged by this version (the ledger is: clinic.inventory.purge): the
    refusal is recorded all the same."""
    now = database_clock()
    run = _new_run(kind, requested_by, now, now)
    return _refuse(run, f"{kind} is kept whole: inventories are not purged by this version (DEA-08, SYS-02)")


# --- the ORM path: deleting a kept record through the session is refused before the database is asked


def _refuse_delete(mapper: Any, connection: Any, target: Any) -> None:
    raise RetentionError(
        f"{type(target).__name__} {getattr(target, 'id', '')} cannot be deleted: records are kept for their "
        "retention period and removed only by `clinic purge` (SYS-02)"
    )


def install_orm_guard() -> None:
    """SYS-02: a kept record deleted through the session is refused at the flush, on any backend."""
    from clinic.inventory.models import Checkpoint, Count, CountLine, LedgerEntry

    for model in (AccessEvent, AuditEvent, LogSeal, Purge, LedgerEntry, Checkpoint, Count, CountLine):
        if not event.contains(model, "before_delete", _refuse_delete):
            event.listen(model, "before_delete", _refuse_delete)

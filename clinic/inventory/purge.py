"""``clinic purge ledger``: a location's oldest entries past retention go, and what is left still
proves itself (SYS-02, DEA-08, SYS-05).

Per location, the purge removes the oldest stretch of its chain, seq 1..S (or on from an earlier
purge's cut), where S is the seq of a signed checkpoint and every entry up to S is older than the
location's retention (its ``retention_years``, never under the DEA's 2 years) by the database's
clock, by the later of when it happened and when it was recorded. It takes the largest such S.

Before deleting it writes a signed anchor (clinic.inventory.anchors): the hash of entry S and the
chain's facts there, which ``clinic ledger verify`` then starts from. An entry another kept record
points at (a visit's dose, a Form 106, a count or discrepancy younger than retention, a table this
module does not know) stops the cut before it; an old count or resolved discrepancy past retention
keeps its row and loses only its link to the entry. A legal hold refuses the purge; a chain that does
not verify is not purged. Every run is recorded in ``purges`` and the audit trail, a refusal too.

The purge locks the location's chain head, as every append does, so two purges of one location, or
a purge and an append, run one after the other. The database's guard (clinic.core.retention)
re-checks every deleted entry's age itself, under the purge's open ``purges`` row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update

from clinic.audit.models import Purge
from clinic.audit.retention import database_clock, sign_purge, years_before
from clinic.audit.service import record
from clinic.audit.tags import Tag
from clinic.core.errors import NotFound
from clinic.core.retention import RECORD_FLOOR_YEARS
from clinic.extensions import db
from clinic.inventory import anchors, integrity
from clinic.inventory.anchors import Cut
from clinic.inventory.models import Checkpoint, Form1Salts, LedgerAnchor, LedgerChain, LedgerEntry
from clinic.locations.models import Location

STREAM = "ledger"
_ENTRIES = LedgerEntry.__table__


@dataclass
class Plan:
    """What may go: entries after ``start`` through ``through`` (0: none), and why not further."""

    start: int
    through: int
    why_not_further: str


def location_ids(location_id: int | None = None) -> list[int]:
    """The locations a run covers: the one named, or every location."""
    if location_id is not None:
        if db.session.get(Location, location_id) is None:
            raise NotFound("No such location")
        return [location_id]
    return list(db.session.scalars(select(Location.id).order_by(Location.id)))


def retention_years(location: Location) -> int:
    """The location's retention of its records: its ``retention_years``, never under DEA-08's 2."""
    return max(RECORD_FLOOR_YEARS, int(location.rule("retention_years") or 0))


def purge_location(location_id: int, *, requested_by: str, dry_run: bool = False) -> Purge:
    """SYS-02, DEA-08: remove the location's oldest entries past retention up to a signed checkpoint,
    under a signed anchor; or record why not (a legal hold, a chain that does not verify, nothing)."""
    # the chain head first, as an append locks it: purges and appends of this location queue here
    chain = db.session.scalar(
        select(LedgerChain)
        .where(LedgerChain.location_id == location_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    location = db.session.get(Location, location_id, populate_existing=True)
    assert location is not None
    now = database_clock()
    years = retention_years(location)
    cutoff = years_before(now, years)
    run = Purge(
        stream=STREAM,
        location_id=location_id,
        requested_at=now,
        requested_by=requested_by[:200],
        cutoff=cutoff,
        through_id=0,
        through_seal=0,
        rows=0,
        detail="",
        open=False,
    )
    if location.rule("legal_hold"):
        return _refuse(run, f"location {location_id} is under legal hold")
    if chain is None or chain.head_seq == 0:
        return _nothing(run, "the location has no ledger entries")
    report = integrity.verify_location(location_id)
    if not report.ok:
        return _refuse(
            run, f"the chain does not verify (seq {report.bad_seq}: {report.problem}): a broken chain is not purged"
        )
    plan = plan_cut(location_id, cutoff, chain.head_seq)
    if plan.through <= plan.start:
        return _nothing(
            run, f"no entries past {years} years' retention up to a signed checkpoint: {plan.why_not_further}"
        )
    run.through_id, run.rows = plan.through, plan.through - plan.start
    if dry_run:
        run.outcome = "dry_run"
        run.detail = f"seq {plan.start + 1}..{plan.through}, older than {years} years; {plan.why_not_further}"
        return run
    newest = anchors.newest(location_id)
    start = Cut.of(newest) if newest is not None else Cut()
    cut, _, broken = integrity.walk(location_id, start, upto=plan.through)
    if broken is not None or cut.seq != plan.through:  # verified just now, under the lock: cannot happen
        return _refuse(run, f"the chain could not be walked to seq {plan.through}: {broken}")
    # seen only by this transaction: the database's guard lets it delete this location's entries up to S
    run.open, run.outcome = True, "running"
    db.session.add(run)
    db.session.flush()
    anchor = LedgerAnchor(
        location_id=location_id,
        purge_id=run.id,
        through_seq=cut.seq,
        head_hash=cut.head_hash,
        state=cut.state(),
        cutoff=cutoff,
        requested_at=now,
    )
    anchors.sign(anchor)
    db.session.add(anchor)
    db.session.flush()
    purged = select(LedgerEntry.id).where(LedgerEntry.location_id == location_id, LedgerEntry.seq <= cut.seq)
    for column, _ in _clearable():
        db.session.execute(update(column.table).where(column.in_(purged)).values({column.name: None}))
    db.session.execute(delete(Form1Salts).where(Form1Salts.location_id == location_id, Form1Salts.seq <= cut.seq))
    rows = db.session.execute(
        delete(_ENTRIES).where(_ENTRIES.c.location_id == location_id, _ENTRIES.c.seq <= cut.seq)
    ).rowcount  # type: ignore[attr-defined]
    run.rows, run.open, run.outcome = rows or 0, False, "done"
    run.detail = (
        f"location {location_id}: entries seq {plan.start + 1}..{cut.seq}, older than {years} years; "
        f"{plan.why_not_further}"
    )[:1000]
    sign_purge(run, cutoff=cutoff, requested_at=now)
    db.session.flush()
    record(
        actor=None,
        tag=Tag.inventory_ledger_purge_done,
        subject=("purge", run.id),
        data={
            "location_id": location_id,
            "through_seq": cut.seq,
            "rows": run.rows,
            "anchor_id": anchor.id,
            "requested_by": run.requested_by,
        },
    )
    return run


def plan_cut(location_id: int, cutoff: datetime, head_seq: int) -> Plan:
    """The largest S past every earlier cut such that each entry up to S is older than ``cutoff``, no
    record kept longer points at one of them, and a checkpoint signs entry S."""
    newest = anchors.newest(location_id)
    start = newest.through_seq if newest is not None else 0
    limit, why = head_seq, "the whole chain is past retention"
    young = db.session.scalar(
        select(func.min(LedgerEntry.seq)).where(
            LedgerEntry.location_id == location_id,
            LedgerEntry.seq > start,
            or_(LedgerEntry.occurred_at >= cutoff, LedgerEntry.recorded_at >= cutoff),
        )
    )
    if young is not None:
        limit, why = young - 1, f"entry seq {young} is within retention"
    for column, old in _references():
        kept = (column == LedgerEntry.id) if old is None else and_(column == LedgerEntry.id, ~old(cutoff))
        held = db.session.scalar(
            select(func.min(LedgerEntry.seq))
            .join(column.table, kept)
            .where(LedgerEntry.location_id == location_id, LedgerEntry.seq > start, LedgerEntry.seq <= limit)
        )
        if held is not None:
            limit, why = held - 1, f"entry seq {held} is still referenced by {column.table.name}.{column.name}"
    for cp in db.session.scalars(
        select(Checkpoint)
        .where(Checkpoint.location_id == location_id, Checkpoint.seq > start, Checkpoint.seq <= limit)
        .order_by(Checkpoint.seq.desc())
    ):
        at = db.session.scalar(
            select(LedgerEntry.hash).where(LedgerEntry.location_id == location_id, LedgerEntry.seq == cp.seq)
        )
        if at == cp.head_hash and integrity.checkpoint_signature_ok(cp):
            if cp.seq < limit:
                why = f"{why}; the last signed checkpoint before it is at seq {cp.seq}"
            return Plan(start, cp.seq, why)
    return Plan(start, 0, f"{why}, and no signed checkpoint is at or before seq {limit}")


#: tables whose link to a ledger entry may be cleared once the row itself is past retention, and how
#: that age is read; every other reference to an entry keeps it
_OLD_WHEN: dict[str, Any] = {
    "counts": lambda t, cutoff: and_(t.c.occurred_at < cutoff, t.c.recorded_at < cutoff),
    "discrepancies": lambda t, cutoff: and_(
        t.c.created_at < cutoff, t.c.resolved_at.is_not(None), t.c.resolved_at < cutoff
    ),
}


def _references() -> list[tuple[Any, Any]]:
    """Every column of another table that points at a ledger entry, with (when its link may be
    cleared) the condition that its row is past retention; read from the models, so a new reference
    holds its entries until it is taught here."""
    found = []
    for table in db.metadata.sorted_tables:
        if table is _ENTRIES:
            continue
        for fk in table.foreign_keys:
            if fk.column is _ENTRIES.c.id:
                rule = _OLD_WHEN.get(table.name) if fk.parent.nullable else None
                found.append((fk.parent, (lambda cutoff, t=table, r=rule: r(t, cutoff)) if rule else None))
    return found


def _clearable() -> list[tuple[Any, Any]]:
    return [(column, old) for column, old in _references() if old is not None]


def _nothing(run: Purge, why: str) -> Purge:
    run.outcome, run.detail = "nothing", why[:1000]
    db.session.add(run)
    db.session.flush()
    return run


def _refuse(run: Purge, why: str) -> Purge:
    run.outcome, run.detail = "refused", why[:1000]
    run.open = False
    db.session.add(run)
    db.session.flush()
    record(
        actor=None,
        tag=Tag.inventory_ledger_purge_refused,
        subject=("purge", run.id),
        data={"location_id": run.location_id, "reason": run.detail, "requested_by": run.requested_by},
    )
    return run


def purged_through(location_id: int) -> int:
    """The last seq purged at the location (0: none)."""
    newest = anchors.newest(location_id)
    return newest.through_seq if newest is not None else 0


def export_refusal(location_id: int, since: datetime) -> str | None:
    """An export's chain segment starts one entry before the period's first recording
    (clinic.exports.writer), so that nothing earlier can fall in the period. When that entry was
    purged the export cannot prove its period complete: why it is refused, else None."""
    through = purged_through(location_id)
    if not through:
        return None
    first = db.session.scalar(
        select(func.min(LedgerEntry.seq)).where(
            LedgerEntry.location_id == location_id, LedgerEntry.recorded_at >= since
        )
    )
    head = db.session.scalar(select(LedgerChain.head_seq).where(LedgerChain.location_id == location_id)) or 0
    if max(1, (first if first is not None else head) - 1) > through:
        return None
    after = db.session.scalar(
        select(LedgerEntry.recorded_at).where(LedgerEntry.location_id == location_id, LedgerEntry.seq == through + 1)
    )
    return (
        f"The ledger of location {location_id} was purged through seq {through}, past retention (SYS-02, DEA-08): "
        "an export's period must start after the first entry kept was recorded"
        + (f" ({after.isoformat()})" if after is not None else " (none has been recorded since)")
        + "."
    )

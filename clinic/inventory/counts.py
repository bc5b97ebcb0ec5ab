"""Counts and inventories (DEA-14..22), and the discrepancies they open."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from clinic.audit import service as audit
from clinic.audit.tags import Tag
from clinic.auth.models import User
from clinic.core.errors import Conflict, NotFound, ValidationFailed
from clinic.core.fields import format_mg
from clinic.core.time import today_at, utcnow
from clinic.extensions import db
from clinic.inventory import checks, patterns, records
from clinic.inventory.errors import AlreadyRecorded, ContainerUnusable, InitialInventoryRequired
from clinic.inventory.ledger import append, check_time, lock_chain, lock_container
from clinic.inventory.losses import record_loss
from clinic.inventory.models import (
    Container,
    ContainerStatus,
    Count,
    CountKind,
    CountLine,
    Discrepancy,
    DiscrepancyAction,
    DiscrepancyStatus,
    EntryKind,
)
from clinic.inventory.state import next_status
from clinic.inventory.witness import WitnessSignature, verify_witness
from clinic.locations.models import Location
from clinic.reminders import service as reminders


@dataclass
class CountResult:
    count: Count
    discrepancies: list[Discrepancy]


def reconcile_count(
    *,
    actor: User,
    location_id: int,
    kind: str,
    lines: list[dict[str, Any]],
    witness: WitnessSignature | None,
    client_addr: str,
    business_hours: str | None = None,
    occurred_at: datetime | None = None,
    late_entry_reason: str | None = None,
) -> CountResult:
    """A shift count or an initial/biennial inventory (DEA-14..21). Differences open discrepancies."""
    at = check_time(occurred_at)
    location = db.session.get(Location, location_id)
    if location is None:
        raise NotFound("No such location")
    if kind != CountKind.shift and business_hours not in ("opening", "close"):
        raise ValidationFailed(errors={"business_hours": ["Say whether it was taken at opening or close."]})
    signed_by = verify_witness(witness, actor=actor, location_id=location_id, client_addr=client_addr)
    chain = lock_chain(location_id)
    if kind == CountKind.initial and chain.has_initial_inventory:
        raise Conflict(
            "This location already has its initial inventory",
            errors={"kind": ["This location already has its initial inventory."]},
        )
    if kind != CountKind.initial and not chain.has_initial_inventory:
        raise InitialInventoryRequired()
    on_hand = {
        c.id: c
        for c in db.session.scalars(
            select(Container)
            .where(Container.location_id == location_id, Container.status != ContainerStatus.disposed.value)
            .with_for_update(of=Container)
            .execution_options(populate_existing=True)
        )
    }
    seen: set[int] = set()
    count = Count(
        location_id=location_id,
        kind=kind,
        business_hours=business_hours,
        actor_id=actor.id,
        witness_id=signed_by.id,
        occurred_at=at,
    )
    db.session.add(count)
    db.session.flush()
    result = CountResult(count, [])
    for i, line in enumerate(lines):
        container = on_hand.get(line["container_id"])
        if container is None or container.id in seen:
            raise ValidationFailed(errors={f"lines.{i}.container_id": ["Not on hand here, or listed twice."]})
        seen.add(container.id)
        if line["counted_ug"] > container.initial_ug:
            raise ValidationFailed(errors={f"lines.{i}.counted_mg": ["More than the container can hold."]})
        if not line.get("exact", True):
            estimate_allowed(container, line["counted_ug"], mode=str(location.rule("count_mode")), field=f"lines.{i}")
        db.session.add(
            CountLine(
                count_id=count.id,
                container_id=container.id,
                expected_ug=container.balance_ug,
                counted_ug=line["counted_ug"],
                is_exact=line.get("exact", True),
            )
        )
        if line["counted_ug"] != container.balance_ug:
            disc = Discrepancy(
                location_id=location_id,
                count_id=count.id,
                container_id=container.id,
                expected_ug=container.balance_ug,
                counted_ug=line["counted_ug"],
            )
            db.session.add(disc)
            result.discrepancies.append(disc)
    late = checks.when(
        chain=chain,
        at=at,
        field="occurred_at",
        container_ids=tuple(sorted(seen)),
        late_reason=late_entry_reason,
        initial=kind == CountKind.initial,
    )
    if kind != CountKind.shift:
        # everything with stock in it, expired stock awaiting disposal too (DEA-17); an empty
        # container holds nothing to inventory (it may still be listed, at zero)
        missing = sorted(cid for cid, c in on_hand.items() if c.balance_ug > 0 and cid not in seen)
        if missing:
            raise ValidationFailed(
                errors={"lines": [f"An inventory lists every container with stock on hand; missing {missing}."]}
            )
    entry_kind = EntryKind.initial_inventory if kind == CountKind.initial else EntryKind.stock_count
    entry = append(
        chain=chain,
        kind=entry_kind,
        actor=actor,
        occurred_at=at,
        witness=signed_by,
        details={
            "count_id": count.id,
            "count_kind": kind,
            "business_hours": business_hours,
            **late,
            # DEA-17/18/20/21: the inventory stands on its own, read years later: who the registrant
            # was, who counted and witnessed, and each drug as it was described then.
            "registrant": records.registrant(location),
            "taken_by": actor.name,
            "witnessed_by": signed_by.name,
            "lines": [
                {
                    "container_id": ln["container_id"],
                    "counted_ug": ln["counted_ug"],
                    "exact": ln.get("exact", True),
                    **records.drug_record(on_hand[ln["container_id"]].drug),
                    "lot_number": on_hand[ln["container_id"]].lot_number,
                    "expires_on": on_hand[ln["container_id"]].expires_on.isoformat(),
                }
                for ln in lines
            ],
        },
    )
    count.entry_id = entry.id
    if kind == CountKind.initial:
        chain.has_initial_inventory = True
        chain.initial_inventory_at = at
    db.session.flush()
    reminders.count_recorded(location_id, kind)  # the next count or inventory falls due
    if result.discrepancies:
        patterns.raise_if_pattern(location_id)
    return result


#: DEA-19: an opened container of more than this many tablets or capsules is counted exactly
EXACT_ABOVE_UNITS = 1000


def estimate_allowed(container: Container, counted_ug: int, *, mode: str, field: str) -> None:
    """Whether an opened container may be estimated rather than counted exactly (DEA-19, DEA-22)."""
    drug = container.drug

    def refuse(why: str) -> None:
        raise ValidationFailed(errors={f"{field}.exact": [why]})

    if drug.schedule == "CII":
        refuse("Schedule II stock is counted or measured exactly.")
    if mode == "exact":
        refuse("This jurisdiction requires exact counts.")
    if drug.unit in ("tablet", "troche") and drug.milliunits_per_container > EXACT_ABOVE_UNITS * 1000:
        refuse(f"A container of more than {EXACT_ABOVE_UNITS} units is counted exactly.")
    if mode == "exact_liquid_quarters":
        if drug.unit != "mL":
            refuse("Only a liquid in an unincremented container may be estimated here.")
        quarter = drug.container_ug // 4
        if quarter == 0 or counted_ug % quarter:
            refuse(f"Estimate to the nearest quarter container ({format_mg(quarter)} mg steps).")


def inventory_overdue(location_id: int) -> bool:
    """A location whose next full inventory (DEA-15, DEA-22) is past due, in its own calendar."""
    due = next_inventory_due_on(location_id)
    if due is None:
        return False
    location = db.session.get(Location, location_id)
    assert location is not None
    return due < today_at(location.timezone)


def resolve_discrepancy(
    *,
    actor: User,
    discrepancy_id: int,
    action: str,
    explanation: str,
    witness: WitnessSignature | None = None,
    client_addr: str = "",
    loss_kind: str = "loss",
) -> Discrepancy:
    """Explain (books stand), adjust (two signatures; the books follow the count) or escalate to a loss."""
    disc = db.session.get(Discrepancy, discrepancy_id)
    if disc is None:
        raise NotFound("No such discrepancy")
    if not explanation.strip():
        raise ValidationFailed(errors={"explanation": ["Explain the difference."]})
    if action not in {a.value for a in DiscrepancyAction}:
        raise ValidationFailed(errors={"action": ["One of: explain, adjust, escalate."]})
    signed_by = None
    if action == DiscrepancyAction.adjust:  # a password check is slow: before any lock
        signed_by = verify_witness(witness, actor=actor, location_id=disc.location_id, client_addr=client_addr)
    # Two prescribers resolving one discrepancy at once: the chain lock queues them and the row is
    # read again under it, so the second sees the first's resolution (409), never a second effect.
    chain = lock_chain(disc.location_id)
    disc = _lock_discrepancy(discrepancy_id)
    if disc.status != DiscrepancyStatus.open:
        raise AlreadyRecorded(f"This discrepancy is already {disc.status}.", errors={"status": ["Already resolved."]})
    if action == "explain":
        disc.status = DiscrepancyStatus.explained.value
    elif action == "adjust":
        assert signed_by is not None
        container = lock_container(disc.container_id)
        # The counted difference, not the counted figure: a dose drawn since the count is already on
        # the books, and setting the balance to the count would hide it.
        delta = disc.difference_ug
        if container.status == ContainerStatus.disposed or container.balance_ug + delta > container.initial_ug:
            raise ContainerUnusable(
                "The container has moved since the count in a way the difference cannot be applied to "
                f"(it holds {format_mg(container.balance_ug)} mg, status {container.status}): count it again."
            )
        before = container.status
        entry = append(
            chain=chain,
            kind=EntryKind.adjustment,
            actor=actor,
            occurred_at=utcnow(),
            container=container,
            delta_ug=delta,
            witness=signed_by,
            reason=explanation,
            details={"discrepancy_id": disc.id, "count_id": disc.count_id},
        )
        # an "empty" vial found to hold some is open again (append only ever lowers a status)
        container.status = next_status(
            before, kind=entry.kind, delta_ug=delta, balance_after=container.balance_ug, details={}
        )
        disc.entry_id = entry.id
        disc.status = DiscrepancyStatus.adjusted.value
    elif action == "escalate":
        missing = disc.expected_ug - disc.counted_ug
        if missing <= 0:
            raise ValidationFailed(errors={"action": ["Only a shortage can be escalated to a loss."]})
        entry = record_loss(
            actor=actor,
            container_id=disc.container_id,
            quantity_ug=missing,
            kind=loss_kind,
            description=explanation,
        )
        disc.entry_id = entry.id
        disc.status = DiscrepancyStatus.escalated.value
    disc.resolution = explanation
    disc.resolved_by_id = actor.id
    disc.resolved_at = utcnow()
    audit.record(
        actor=actor, tag=Tag.inventory_discrepancy_resolve, subject=("discrepancy", disc.id), data={"action": action}
    )
    db.session.flush()
    return disc


def _lock_discrepancy(discrepancy_id: int) -> Discrepancy:
    disc = db.session.scalar(
        select(Discrepancy)
        .where(Discrepancy.id == discrepancy_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert disc is not None  # discrepancies are never deleted
    return disc


def next_inventory_due_on(location_id: int) -> date | None:
    """The next full inventory: biennial federally (DEA-15), sooner where the profile says (DEA-22)."""
    location = db.session.get(Location, location_id)
    if location is None:
        raise NotFound("No such location")
    last = db.session.scalar(
        select(func.max(Count.occurred_at)).where(
            Count.location_id == location_id, Count.kind.in_([CountKind.initial.value, CountKind.biennial.value])
        )
    )
    if last is None:
        return None
    if last.tzinfo is None:  # aggregates skip the column type on SQLite
        last = datetime.fromisoformat(str(last)).replace(tzinfo=UTC)
    day = last.astimezone(ZoneInfo(location.timezone)).date()
    days = location.rule("inventory_interval_days")
    if days:
        return day + timedelta(days=int(days))
    months = int(location.rule("inventory_interval_months"))
    year, month = divmod(day.month - 1 + months, 12)
    year += day.year
    month += 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")

"""The hash chain itself: how an entry is appended, and the checks every append path shares.

Appends to a location's chain are serialised by locking its chain-head row (``FOR UPDATE`` on
PostgreSQL; on SQLite every transaction already holds the write lock from ``BEGIN IMMEDIATE``).
The container row is locked too, and a CHECK constraint keeps its balance non-negative even if a
code path forgot to look.
"""

from __future__ import annotations

import secrets
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from clinic.audit import service as audit
from clinic.audit.tags import ledger_tag
from clinic.auth.models import User
from clinic.core.errors import NotFound, ValidationFailed
from clinic.core.fields import format_mg
from clinic.core.time import happened_at, utcnow
from clinic.extensions import db
from clinic.inventory.chain import GENESIS, entry_hash, phi_paths
from clinic.inventory.errors import InsufficientStock
from clinic.inventory.models import Container, ContainerStatus, Drug, EntryKind, LedgerChain, LedgerEntry
from clinic.locations.models import Location


def lock_chain(location_id: int) -> LedgerChain:
    chain = db.session.scalar(select(LedgerChain).where(LedgerChain.location_id == location_id).with_for_update())
    if chain is None:
        if db.session.get(Location, location_id) is None:
            raise NotFound("No such location")
        chain = LedgerChain(location_id=location_id, head_seq=0, head_hash=GENESIS, has_initial_inventory=False)
        db.session.add(chain)
        db.session.flush()
    return chain


def lock_container(container_id: int) -> Container:
    container = db.session.scalar(
        select(Container)
        .where(Container.id == container_id)
        .with_for_update(of=Container)
        .execution_options(populate_existing=True)
    )
    if container is None:
        raise NotFound("No such container")
    return container


def check_time(occurred_at: datetime | None, field: str = "occurred_at") -> datetime:
    return happened_at(occurred_at, field)


def require_positive(quantity_ug: int) -> None:
    """The schemas refuse it first; services called from tasks or the CLI get the same rule."""
    if quantity_ug <= 0:
        raise ValidationFailed(errors={"quantity_mg": ["Must be more than zero."]})


def location_day(location_id: int, at: datetime) -> date:
    location = db.session.get(Location, location_id)
    assert location is not None
    return at.astimezone(ZoneInfo(location.timezone)).date()


def append(
    *,
    chain: LedgerChain,
    kind: EntryKind,
    actor: User,
    occurred_at: datetime,
    container: Container | None = None,
    delta_ug: int = 0,
    patient_id: int | None = None,
    appointment_id: int | None = None,
    witness: User | None = None,
    second_witness: User | None = None,
    corrects_seq: int | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> LedgerEntry:
    """One entry on a chain the caller has locked (and the container with it)."""
    balance_after = None
    if container is not None:
        balance_after = container.balance_ug + delta_ug
        if balance_after < 0:
            raise InsufficientStock(f"The container holds {format_mg(container.balance_ug)} mg.")
        container.balance_ug = balance_after
        if balance_after == 0 and container.status in (ContainerStatus.sealed, ContainerStatus.open):
            container.status = ContainerStatus.empty.value
        elif delta_ug < 0 and container.status == ContainerStatus.sealed:
            container.status = ContainerStatus.open.value
    fields: dict[str, Any] = {
        "location_id": chain.location_id,
        "seq": chain.head_seq + 1,
        "kind": kind.value,
        "container_id": container.id if container else None,
        "drug_id": container.drug_id if container else None,
        "delta_ug": delta_ug,
        "balance_after_ug": balance_after,
        "patient_id": patient_id,
        "appointment_id": appointment_id,
        "actor_id": actor.id,
        "witness_id": witness.id if witness else None,
        "second_witness_id": second_witness.id if second_witness else None,
        "corrects_seq": corrects_seq,
        "occurred_at": occurred_at,
        "recorded_at": utcnow(),
        "reason": reason,
        "details": details or {},
        "prev_hash": chain.head_hash,
    }
    # HIP-15: each PHI field enters the hash as a salted commitment, so an export can leave it out
    fields["phi_salts"] = {path: secrets.token_hex(16) for path in phi_paths(fields)}
    fields["hash"] = entry_hash(fields)
    entry = LedgerEntry(**fields)
    db.session.add(entry)
    chain.head_seq = entry.seq
    chain.head_hash = entry.hash
    db.session.flush()
    audit.touched("ledger_entry", entry.id)
    audit.record(
        actor=actor,
        tag=ledger_tag(kind.value),
        subject=("ledger_entry", entry.id),
        data={"seq": entry.seq, "container_id": entry.container_id, "delta_ug": delta_ug},
    )
    return entry


def list_entries(
    *,
    location_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    kind: str | None = None,
    container_id: int | None = None,
    after_id: int | None = None,
    limit: int = 100,
    drug_id: int | None = None,
    schedule: str | None = None,
) -> list[LedgerEntry]:
    """One page of entries. ``schedule`` keeps the entries of that schedule's drugs, so "every
    Schedule III record of this registrant for a period" is one query (DEA-09/10); counts and
    inventories name no single drug and are found by their kind."""
    q = select(LedgerEntry).order_by(LedgerEntry.id).limit(limit)
    if drug_id is not None:
        q = q.where(LedgerEntry.drug_id == drug_id)
    if schedule is not None:
        q = q.where(LedgerEntry.drug_id.in_(select(Drug.id).where(Drug.schedule == schedule)))
    if location_id is not None:
        q = q.where(LedgerEntry.location_id == location_id)
    if since is not None:
        q = q.where(LedgerEntry.occurred_at >= since)
    if until is not None:
        q = q.where(LedgerEntry.occurred_at < until)
    if kind is not None:
        q = q.where(LedgerEntry.kind == kind)
    if container_id is not None:
        q = q.where(LedgerEntry.container_id == container_id)
    if after_id is not None:
        q = q.where(LedgerEntry.id > after_id)
    return list(db.session.scalars(q))

"""Ledger and stock rules (DOMAIN.md §1). Every movement is one hash-chained, append-only entry.

Appends to a location's chain are serialised by locking its chain-head row (``FOR UPDATE`` on
PostgreSQL; on SQLite every transaction already holds the write lock from ``BEGIN IMMEDIATE``).
The container row is locked too, and a CHECK constraint keeps its balance non-negative even if a
code path forgot to look.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from clinic.audit import service as audit
from clinic.auth import service as auth
from clinic.auth.errors import InvalidCredentials
from clinic.auth.models import Role, User
from clinic.core.errors import NotFound, ValidationFailed
from clinic.core.fields import format_mg
from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.inventory.chain import GENESIS, entry_hash
from clinic.inventory.errors import (
    ContainerUnusable,
    InitialInventoryRequired,
    InsufficientStock,
    WitnessCredentialsInvalid,
    WitnessInvalid,
    WitnessRequired,
)
from clinic.inventory.models import (
    Container,
    ContainerStatus,
    Count,
    CountKind,
    CountLine,
    Discrepancy,
    DiscrepancyStatus,
    Drug,
    EntryKind,
    LedgerChain,
    LedgerEntry,
    LossReport,
)
from clinic.locations.models import Location, StorageSite
from clinic.patients.models import Patient

logger = logging.getLogger(__name__)

#: Clock skew tolerated for a back-charted time said to be "now" by another machine.
FUTURE_TOLERANCE = timedelta(minutes=2)
WITNESS_ROLES = frozenset({Role.nurse, Role.prescriber})
REPORTABLE_LOSS_KINDS = frozenset({"theft", "loss"})


# --- catalog -----------------------------------------------------------------------------------


def create_drug(
    *,
    actor: User,
    name: str,
    ndc: str,
    schedule: str,
    form: str,
    unit: str,
    ug_per_unit: int,
    milliunits_per_container: int,
) -> Drug:
    if db.session.scalar(select(Drug.id).where(Drug.ndc == ndc)) is not None:
        raise ValidationFailed(errors={"ndc": ["A drug with this NDC exists."]})
    if ug_per_unit * milliunits_per_container % 1000:
        raise ValidationFailed(errors={"units_per_container": ["Container content must be a whole microgram."]})
    drug = Drug(
        name=name,
        ndc=ndc,
        schedule=schedule,
        form=form,
        unit=unit,
        ug_per_unit=ug_per_unit,
        milliunits_per_container=milliunits_per_container,
    )
    db.session.add(drug)
    db.session.flush()
    audit.record(actor=actor, tag="inventory:drug:create", subject=("drug", drug.id), data={"ndc": ndc})
    return drug


def get_drug(drug_id: int) -> Drug:
    drug = db.session.get(Drug, drug_id)
    if drug is None:
        raise NotFound("No such drug")
    return drug


def list_drugs() -> list[Drug]:
    return list(db.session.scalars(select(Drug).order_by(Drug.name, Drug.id)))


def get_container(container_id: int) -> Container:
    container = db.session.get(Container, container_id)
    if container is None:
        raise NotFound("No such container")
    return container


# --- the chain ---------------------------------------------------------------------------------


def _lock_chain(location_id: int) -> LedgerChain:
    chain = db.session.scalar(select(LedgerChain).where(LedgerChain.location_id == location_id).with_for_update())
    if chain is None:
        if db.session.get(Location, location_id) is None:
            raise NotFound("No such location")
        chain = LedgerChain(location_id=location_id, head_seq=0, head_hash=GENESIS, has_initial_inventory=False)
        db.session.add(chain)
        db.session.flush()
    return chain


def _lock_container(container_id: int) -> Container:
    container = db.session.scalar(
        select(Container)
        .where(Container.id == container_id)
        .with_for_update(of=Container)
        .execution_options(populate_existing=True)
    )
    if container is None:
        raise NotFound("No such container")
    return container


def _check_time(occurred_at: datetime | None, field: str = "occurred_at") -> datetime:
    now = utcnow()
    if occurred_at is None:
        return now
    if occurred_at.tzinfo is None:
        raise ValidationFailed(errors={field: ["Give a time zone offset."]})
    if occurred_at > now + FUTURE_TOLERANCE:
        raise ValidationFailed(errors={field: ["Cannot be in the future."]})
    return occurred_at.astimezone(UTC)


def _append(
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
    fields["hash"] = entry_hash(fields)
    entry = LedgerEntry(**fields)
    db.session.add(entry)
    chain.head_seq = entry.seq
    chain.head_hash = entry.hash
    db.session.flush()
    audit.record(
        actor=actor,
        tag=f"inventory:ledger:{kind.value}",
        subject=("ledger_entry", entry.id),
        data={"seq": entry.seq, "container_id": entry.container_id, "delta_ug": delta_ug},
    )
    return entry


def _positive(quantity_ug: int) -> None:
    """The schemas refuse it first; services called from tasks or the CLI get the same rule."""
    if quantity_ug <= 0:
        raise ValidationFailed(errors={"quantity_mg": ["Must be more than zero."]})


def _usable(container: Container, *, on: date) -> None:
    if container.status in (ContainerStatus.quarantined, ContainerStatus.disposed, ContainerStatus.expired):
        raise ContainerUnusable(f"The container is {container.status}.")
    if container.expires_on < on:
        raise ContainerUnusable("The container is past its expiry date.")


def _location_day(location_id: int, at: datetime) -> date:
    location = db.session.get(Location, location_id)
    assert location is not None
    return at.astimezone(ZoneInfo(location.timezone)).date()


def _witness(
    *,
    actor: User,
    location_id: int,
    email: str | None,
    password: str | None,
    totp_code: str | None,
    client_addr: str,
    field: str = "witness",
) -> User:
    """A second person who signs with their own credentials, now (HIP-05, DEA-42, ASVS V2.3.5).

    Call it before writing anything: a wrong password commits the failed attempt (for throttling),
    and with it whatever the transaction already holds.
    """
    if not email or not password:
        raise WitnessRequired(errors={f"{field}_email": ["A witness must sign with their own email and password."]})
    try:
        witness = auth.verify_password(email=email, password=password, client_addr=client_addr)
        if witness.totp_secret is not None:
            auth.verify_totp(user=witness, code=totp_code or "", client_addr=client_addr)
    except InvalidCredentials:
        raise WitnessCredentialsInvalid(
            errors={f"{field}_password": ["The witness's credentials are not correct."]}
        ) from None
    if witness.id == actor.id:
        raise WitnessInvalid(errors={f"{field}_email": ["The witness must be someone other than you."]})
    location = db.session.get(Location, location_id)
    assert location is not None
    if witness.role_enum not in WITNESS_ROLES or (
        location.rule("witness_must_be_licensed") and not witness.is_licensed
    ):
        raise WitnessInvalid(errors={f"{field}_email": ["The witness must be a licensed clinician."]})
    return witness


# --- movements ---------------------------------------------------------------------------------


@dataclass
class Receipt:
    containers: list[Container]
    entries: list[LedgerEntry]


def receive_stock(
    *,
    actor: User,
    storage_site_id: int,
    drug_id: int,
    lot_number: str,
    expires_on: date,
    container_count: int,
    supplier_name: str,
    supplier_address: str,
    supplier_dea_registration: str,
    invoice_number: str,
    occurred_at: datetime | None = None,
) -> Receipt:
    """A shipment into a safe (DEA-23/24): one container row and one receipt entry per container."""
    site = db.session.get(StorageSite, storage_site_id)
    if site is None:
        raise NotFound("No such storage site")
    drug = get_drug(drug_id)
    at = _check_time(occurred_at)
    chain = _lock_chain(site.location_id)
    if not chain.has_initial_inventory:
        raise InitialInventoryRequired()
    if expires_on < _location_day(site.location_id, at):
        raise ContainerUnusable("This lot is already past its expiry date.")
    details = {
        "supplier_name": supplier_name,
        "supplier_address": supplier_address,
        "supplier_dea_registration": supplier_dea_registration,
        "invoice_number": invoice_number,
        "lot_number": lot_number,
        "expires_on": expires_on.isoformat(),
        "storage_site_id": site.id,
        "container_count": container_count,
    }
    receipt = Receipt([], [])
    for _ in range(container_count):
        container = Container(
            location_id=site.location_id,
            storage_site_id=site.id,
            drug_id=drug.id,
            lot_number=lot_number,
            expires_on=expires_on,
            status=ContainerStatus.sealed.value,
            initial_ug=drug.container_ug,
            balance_ug=0,
        )
        db.session.add(container)
        db.session.flush()
        receipt.containers.append(container)
        receipt.entries.append(
            _append(
                chain=chain,
                kind=EntryKind.receipt,
                actor=actor,
                occurred_at=at,
                container=container,
                delta_ug=drug.container_ug,
                details=details,
            )
        )
        container.status = ContainerStatus.sealed.value
    return receipt


def record_administration(
    *,
    actor: User,
    container_id: int,
    patient_id: int,
    quantity_ug: int,
    administered_at: datetime | None = None,
    appointment_id: int | None = None,
) -> LedgerEntry:
    """A dose given to a patient from a specific container (DEA-26)."""
    _positive(quantity_ug)
    patient = db.session.get(Patient, patient_id)
    if patient is None:
        raise ValidationFailed(errors={"patient_id": ["No such patient."]})
    at = _check_time(administered_at, "administered_at")
    container = get_container(container_id)
    # Everything that can be read before the chain lock is: the lock serialises every append here.
    day = _location_day(container.location_id, at)
    _ = actor.id  # an instance expired by the idempotency claim's commit reloads now, not under the lock
    chain = _lock_chain(container.location_id)
    container = _lock_container(container_id)
    _usable(container, on=day)
    return _append(
        chain=chain,
        kind=EntryKind.administration,
        actor=actor,
        occurred_at=at,
        container=container,
        delta_ug=-quantity_ug,
        patient_id=patient.id,
        appointment_id=appointment_id,
        details={
            "patient_name": f"{patient.first_name} {patient.last_name}",
            "patient_address": patient.address,
            "drug_name": container.drug.name,
            "ndc": container.drug.ndc,
            "lot_number": container.lot_number,
        },
    )


def record_waste(
    *,
    actor: User,
    container_id: int,
    quantity_ug: int,
    reason: str,
    witness_email: str | None,
    witness_password: str | None,
    witness_totp_code: str | None = None,
    client_addr: str,
    occurred_at: datetime | None = None,
    patient_id: int | None = None,
) -> LedgerEntry:
    """The unusable remainder of a dose, destroyed before a second licensed person (DEA-38..42)."""
    _positive(quantity_ug)
    at = _check_time(occurred_at)
    container = get_container(container_id)
    location = db.session.get(Location, container.location_id)
    assert location is not None
    witness = None
    if location.rule("waste_witness_required") or witness_email:
        witness = _witness(
            actor=actor,
            location_id=location.id,
            email=witness_email,
            password=witness_password,
            totp_code=witness_totp_code,
            client_addr=client_addr,
        )
    chain = _lock_chain(container.location_id)
    container = _lock_container(container_id)
    if container.status in (ContainerStatus.disposed, ContainerStatus.quarantined):
        raise ContainerUnusable(f"The container is {container.status}.")
    return _append(
        chain=chain,
        kind=EntryKind.waste,
        actor=actor,
        occurred_at=at,
        container=container,
        delta_ug=-quantity_ug,
        witness=witness,
        reason=reason,
        patient_id=patient_id,
    )


def record_transfer(
    *, actor: User, container_id: int, to_storage_site_id: int, occurred_at: datetime | None = None
) -> LedgerEntry:
    at = _check_time(occurred_at)
    site = db.session.get(StorageSite, to_storage_site_id)
    container = get_container(container_id)
    if site is None or site.location_id != container.location_id:
        raise ValidationFailed(errors={"to_storage_site_id": ["Must be a storage site of the same location."]})
    if site.id == container.storage_site_id:
        raise ValidationFailed(errors={"to_storage_site_id": ["The container is already there."]})
    chain = _lock_chain(container.location_id)
    container = _lock_container(container_id)
    if container.status == ContainerStatus.disposed:
        raise ContainerUnusable("The container is disposed.")
    details = {"from_storage_site_id": container.storage_site_id, "to_storage_site_id": site.id}
    container.storage_site_id = site.id
    return _append(
        chain=chain, kind=EntryKind.transfer, actor=actor, occurred_at=at, container=container, details=details
    )


def _add_business_days(day: date, n: int) -> date:
    while n:
        day += timedelta(days=1)
        if day.weekday() < 5:
            n -= 1
    return day


def record_loss(
    *,
    actor: User,
    container_id: int,
    quantity_ug: int,
    kind: str,
    description: str,
    occurred_at: datetime | None = None,
    discovered_at: datetime | None = None,
) -> LedgerEntry:
    """Theft, loss, breakage or spill. Theft and loss open a DEA Form 106 draft with its deadlines."""
    _positive(quantity_ug)
    at = _check_time(occurred_at)
    found = _check_time(discovered_at, "discovered_at") if discovered_at else utcnow()
    container = get_container(container_id)
    chain = _lock_chain(container.location_id)
    container = _lock_container(container_id)
    entry = _append(
        chain=chain,
        kind=EntryKind.loss,
        actor=actor,
        occurred_at=at,
        container=container,
        delta_ug=-quantity_ug,
        reason=description,
        details={"loss_kind": kind},
    )
    if kind in REPORTABLE_LOSS_KINDS:
        _open_form_106(entry=entry, container=container, kind=kind, discovered_at=found, quantity_ug=quantity_ug)
    return entry


def _open_form_106(
    *, entry: LedgerEntry, container: Container, kind: str, discovered_at: datetime, quantity_ug: int
) -> LossReport:
    location = db.session.get(Location, container.location_id)
    assert location is not None
    tz = ZoneInfo(location.timezone)
    local_day = discovered_at.astimezone(tz).date()
    # DEA-31: written notice within one business day of discovery (end of that local day).
    notice_day = _add_business_days(local_day, 1)
    notice_due = datetime.combine(notice_day, time(23, 59, 59), tzinfo=tz).astimezone(UTC)
    drug = container.drug
    report = LossReport(
        location_id=location.id,
        entry_id=entry.id,
        kind=kind,
        discovered_at=discovered_at,
        notice_due_at=notice_due,
        filing_due_on=local_day + timedelta(days=45),  # DEA-32
        form={
            "registrant_name": location.name,
            "registrant_address": location.address,
            "dea_registration": location.dea_registration,
            "date_of_loss": local_day.isoformat(),
            "type": kind,
            "products": [
                {"ndc": drug.ndc, "name": drug.name, "form": drug.form, "quantity_lost_mg": format_mg(quantity_ug)}
            ],
        },
    )
    db.session.add(report)
    db.session.flush()
    return report


def record_disposal(
    *,
    actor: User,
    container_id: int,
    method: str,
    witness_email: str | None,
    witness_password: str | None,
    client_addr: str,
    witness_totp_code: str | None = None,
    second_witness_email: str | None = None,
    second_witness_password: str | None = None,
    reverse_distributor: dict[str, str] | None = None,
    occurred_at: datetime | None = None,
) -> LedgerEntry:
    """Expired or unwanted stock out of inventory: to a reverse distributor (DEA-43/44, the actor
    and a second employee) or destroyed on site (DEA-45/46, Form 41 data: two witnesses)."""
    at = _check_time(occurred_at)
    container = get_container(container_id)
    witness = _witness(
        actor=actor,
        location_id=container.location_id,
        email=witness_email,
        password=witness_password,
        totp_code=witness_totp_code,
        client_addr=client_addr,
    )
    second = None
    if reverse_distributor is None and not second_witness_email:
        # On-site destruction: Form 41 carries two witnesses besides the person destroying (DEA-45/46).
        raise WitnessRequired(errors={"second_witness_email": ["On-site destruction needs a second witness."]})
    if second_witness_email:
        second = _witness(
            actor=actor,
            location_id=container.location_id,
            email=second_witness_email,
            password=second_witness_password,
            totp_code=None,
            client_addr=client_addr,
            field="second_witness",
        )
        if second.id == witness.id:
            raise WitnessInvalid(errors={"second_witness_email": ["Two different witnesses are needed."]})
    chain = _lock_chain(container.location_id)
    container = _lock_container(container_id)
    if container.status == ContainerStatus.disposed:
        raise ContainerUnusable("The container is already disposed.")
    kind = EntryKind.return_to_distributor if reverse_distributor else EntryKind.destruction
    drug = container.drug
    details = {
        "method": method,
        "ndc": drug.ndc,
        "lot_number": container.lot_number,
        "quantity_mg": format_mg(container.balance_ug),
        **({"reverse_distributor": reverse_distributor} if reverse_distributor else {}),
    }
    entry = _append(
        chain=chain,
        kind=kind,
        actor=actor,
        occurred_at=at,
        container=container,
        delta_ug=-container.balance_ug,
        witness=witness,
        second_witness=second,
        details=details,
    )
    container.status = ContainerStatus.disposed.value
    db.session.flush()
    return entry


def record_correction(
    *,
    actor: User,
    location_id: int,
    corrects_seq: int,
    reason: str,
    witness_email: str | None,
    witness_password: str | None,
    client_addr: str,
    witness_totp_code: str | None = None,
    occurred_at: datetime | None = None,
) -> LedgerEntry:
    """Reverse an entry's effect with a new, linked entry (SYS-01). Nothing is edited."""
    if not reason.strip():
        raise ValidationFailed(errors={"reason": ["Say why the entry is corrected."]})
    at = _check_time(occurred_at)
    original = db.session.scalar(
        select(LedgerEntry).where(LedgerEntry.location_id == location_id, LedgerEntry.seq == corrects_seq)
    )
    if original is None:
        raise NotFound("No such ledger entry")
    already = db.session.scalar(
        select(LedgerEntry.id).where(LedgerEntry.location_id == location_id, LedgerEntry.corrects_seq == corrects_seq)
    )
    if already is not None:
        raise ValidationFailed(errors={"corrects_seq": ["That entry is already corrected."]})
    witness = _witness(
        actor=actor,
        location_id=location_id,
        email=witness_email,
        password=witness_password,
        totp_code=witness_totp_code,
        client_addr=client_addr,
    )
    chain = _lock_chain(location_id)
    container = _lock_container(original.container_id) if original.container_id else None
    if container is not None and container.balance_ug - original.delta_ug > container.initial_ug:
        raise ValidationFailed(errors={"corrects_seq": ["Reversing it would exceed the container's size."]})
    return _append(
        chain=chain,
        kind=EntryKind.correction,
        actor=actor,
        occurred_at=at,
        container=container,
        delta_ug=-original.delta_ug,
        witness=witness,
        corrects_seq=corrects_seq,
        reason=reason,
        patient_id=original.patient_id,
    )


# --- counts and inventories ------------------------------------------------------------------------


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
    witness_email: str | None,
    witness_password: str | None,
    client_addr: str,
    witness_totp_code: str | None = None,
    business_hours: str | None = None,
    occurred_at: datetime | None = None,
) -> CountResult:
    """A shift count or an initial/biennial inventory (DEA-14..21). Differences open discrepancies."""
    at = _check_time(occurred_at)
    location = db.session.get(Location, location_id)
    if location is None:
        raise NotFound("No such location")
    if kind != CountKind.shift and business_hours not in ("opening", "close"):
        raise ValidationFailed(errors={"business_hours": ["Say whether it was taken at opening or close."]})
    witness = _witness(
        actor=actor,
        location_id=location_id,
        email=witness_email,
        password=witness_password,
        totp_code=witness_totp_code,
        client_addr=client_addr,
    )
    chain = _lock_chain(location_id)
    if kind == CountKind.initial and chain.has_initial_inventory:
        raise ValidationFailed(errors={"kind": ["This location already has its initial inventory."]})
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
        witness_id=witness.id,
        occurred_at=at,
    )
    db.session.add(count)
    db.session.flush()
    result = CountResult(count, [])
    exact_required = location.rule("count_mode") == "exact"
    for i, line in enumerate(lines):
        container = on_hand.get(line["container_id"])
        if container is None or container.id in seen:
            raise ValidationFailed(errors={f"lines.{i}.container_id": ["Not on hand here, or listed twice."]})
        seen.add(container.id)
        if line["counted_ug"] > container.initial_ug:
            raise ValidationFailed(errors={f"lines.{i}.counted_mg": ["More than the container can hold."]})
        if exact_required and not line.get("exact", True):
            raise ValidationFailed(errors={f"lines.{i}.exact": ["This jurisdiction requires exact counts."]})
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
    if kind != CountKind.shift:
        missing = sorted(set(on_hand) - seen)
        if missing:
            raise ValidationFailed(
                errors={"lines": [f"An inventory lists every container on hand; missing {missing}."]}
            )
    entry_kind = EntryKind.initial_inventory if kind == CountKind.initial else EntryKind.stock_count
    entry = _append(
        chain=chain,
        kind=entry_kind,
        actor=actor,
        occurred_at=at,
        witness=witness,
        details={
            "count_id": count.id,
            "count_kind": kind,
            "business_hours": business_hours,
            "lines": [
                {"container_id": ln["container_id"], "counted_ug": ln["counted_ug"], "exact": ln.get("exact", True)}
                for ln in lines
            ],
        },
    )
    count.entry_id = entry.id
    if kind == CountKind.initial:
        chain.has_initial_inventory = True
    db.session.flush()
    return result


def resolve_discrepancy(
    *,
    actor: User,
    discrepancy_id: int,
    action: str,
    explanation: str,
    witness_email: str | None = None,
    witness_password: str | None = None,
    client_addr: str = "",
    witness_totp_code: str | None = None,
    loss_kind: str = "loss",
) -> Discrepancy:
    """Explain (books stand), adjust (two signatures; the books follow the count) or escalate to a loss."""
    disc = db.session.get(Discrepancy, discrepancy_id)
    if disc is None:
        raise NotFound("No such discrepancy")
    if disc.status != DiscrepancyStatus.open:
        raise ValidationFailed(errors={"status": ["Already resolved."]})
    if not explanation.strip():
        raise ValidationFailed(errors={"explanation": ["Explain the difference."]})
    if action == "explain":
        disc.status = DiscrepancyStatus.explained.value
    elif action == "adjust":
        witness = _witness(
            actor=actor,
            location_id=disc.location_id,
            email=witness_email,
            password=witness_password,
            totp_code=witness_totp_code,
            client_addr=client_addr,
        )
        chain = _lock_chain(disc.location_id)
        container = _lock_container(disc.container_id)
        delta = disc.counted_ug - container.balance_ug
        entry = _append(
            chain=chain,
            kind=EntryKind.adjustment,
            actor=actor,
            occurred_at=utcnow(),
            container=container,
            delta_ug=delta,
            witness=witness,
            reason=explanation,
            details={"discrepancy_id": disc.id, "count_id": disc.count_id},
        )
        disc.entry_id = entry.id
        disc.status = DiscrepancyStatus.adjusted.value
    elif action == "escalate":
        missing = disc.expected_ug - disc.counted_ug
        if missing <= 0:
            raise ValidationFailed(errors={"action": ["Only a shortage can be escalated to a loss."]})
        container = get_container(disc.container_id)
        entry = record_loss(
            actor=actor,
            container_id=container.id,
            quantity_ug=min(missing, container.balance_ug),
            kind=loss_kind,
            description=explanation,
        )
        disc.entry_id = entry.id
        disc.status = DiscrepancyStatus.escalated.value
    else:
        raise ValidationFailed(errors={"action": ["One of: explain, adjust, escalate."]})
    disc.resolution = explanation
    disc.resolved_by_id = actor.id
    disc.resolved_at = utcnow()
    audit.record(
        actor=actor, tag="inventory:discrepancy:resolve", subject=("discrepancy", disc.id), data={"action": action}
    )
    db.session.flush()
    return disc


def small_discrepancy_pattern(location_id: int) -> bool:
    """DEA-35: a continuing pattern of small unexplained losses is significant."""
    location = db.session.get(Location, location_id)
    if location is None:
        raise NotFound("No such location")
    rule = location.rule("small_discrepancy_pattern")
    since = utcnow() - timedelta(days=rule["days"])
    n = db.session.scalar(
        select(func.count())
        .select_from(Discrepancy)
        .where(
            Discrepancy.location_id == location_id,
            Discrepancy.created_at >= since,
            Discrepancy.counted_ug < Discrepancy.expected_ug,
            Discrepancy.status.in_([DiscrepancyStatus.open.value, DiscrepancyStatus.explained.value]),
        )
    )
    return bool(n and n >= rule["count"])


# --- reading -----------------------------------------------------------------------------------


def list_entries(
    *,
    location_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    kind: str | None = None,
    container_id: int | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> list[LedgerEntry]:
    q = select(LedgerEntry).order_by(LedgerEntry.id).limit(limit)
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


def get_balance(container_id: int) -> int:
    return get_container(container_id).balance_ug


def balances(location_id: int) -> tuple[list[Container], list[dict[str, Any]]]:
    containers = list(
        db.session.scalars(
            select(Container)
            .where(Container.location_id == location_id, Container.status != ContainerStatus.disposed.value)
            .order_by(Container.drug_id, Container.expires_on, Container.id)
        )
    )
    per_drug: dict[int, dict[str, Any]] = {}
    for c in containers:
        row = per_drug.setdefault(
            c.drug_id, {"drug_id": c.drug_id, "drug_name": c.drug.name, "balance_ug": 0, "containers": 0}
        )
        row["balance_ug"] += c.balance_ug
        row["containers"] += 1
    return containers, list(per_drug.values())


# --- DEA Form 106 drafts and inventory cadence --------------------------------------------------


def list_loss_reports(location_id: int | None = None) -> list[LossReport]:
    q = select(LossReport).order_by(LossReport.discovered_at.desc(), LossReport.id.desc())
    if location_id is not None:
        q = q.where(LossReport.location_id == location_id)
    return list(db.session.scalars(q))


def mark_loss_report(*, actor: User, report_id: int, step: str, occurred_at: datetime | None = None) -> LossReport:
    """Record that DEA was notified in writing (DEA-31) or that Form 106 was filed (DEA-32)."""
    report = db.session.get(LossReport, report_id)
    if report is None:
        raise NotFound("No such loss report")
    at = _check_time(occurred_at)
    if at < report.discovered_at:
        raise ValidationFailed(errors={"occurred_at": ["Cannot be before the loss was discovered."]})
    if step == "notified":
        if report.notified_at is not None:
            raise ValidationFailed(errors={"step": ["The notice is already recorded."]})
        report.notified_at = at
    elif step == "filed":
        if report.filed_at is not None:
            raise ValidationFailed(errors={"step": ["The filing is already recorded."]})
        report.filed_at = at
    else:
        raise ValidationFailed(errors={"step": ["One of: notified, filed."]})
    audit.record(
        actor=actor,
        tag=f"inventory:loss_report:{step}",
        subject=("loss_report", report.id),
        data={"at": at.isoformat()},
    )
    db.session.flush()
    return report


def overdue_loss_reports(now: datetime) -> list[LossReport]:
    return list(
        db.session.scalars(
            select(LossReport).where(
                ((LossReport.notified_at.is_(None)) & (LossReport.notice_due_at < now))
                # A local day (judged per location below); no zone's date is ahead of UTC's in 14 hours.
                | ((LossReport.filed_at.is_(None)) & (LossReport.filing_due_on < (now + timedelta(hours=14)).date()))
            )
        )
    )


def flag_overdue_loss_reports(now: datetime) -> int:
    """Beat task body: one audit alert per overdue report and deadline, never repeated."""
    from clinic.audit.models import AuditEvent

    flagged = 0
    for report in overdue_loss_reports(now):
        deadlines = (
            ("notice", report.notified_at is None and report.notice_due_at < now, report.notice_due_at.isoformat()),
            (
                "filing",
                report.filed_at is None and report.filing_due_on < _location_day(report.location_id, now),
                report.filing_due_on.isoformat(),
            ),
        )
        for deadline, late, due in deadlines:
            tag = f"inventory:loss_report:{deadline}_overdue"
            if (
                not late
                or db.session.scalar(
                    select(AuditEvent.id).where(
                        AuditEvent.tag == tag,
                        AuditEvent.subject_type == "loss_report",
                        AuditEvent.subject_id == report.id,
                    )
                )
                is not None
            ):
                continue
            audit.record(actor=None, tag=tag, subject=("loss_report", report.id), data={"due": due})
            logger.warning("loss report %s: %s deadline passed", report.id, deadline)
            flagged += 1
    db.session.flush()
    return flagged


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

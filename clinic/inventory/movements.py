"""Stock moving in, out and around: receipts, doses, waste, transfers, disposal, and corrections."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from clinic.auth.models import User
from clinic.core.errors import Conflict, NotFound, ValidationFailed
from clinic.core.fields import format_mg
from clinic.extensions import db
from clinic.inventory import checks, records
from clinic.inventory.catalog import get_container, get_drug
from clinic.inventory.errors import (
    ContainerUnusable,
    InitialInventoryRequired,
    WitnessInvalid,
    WitnessRequired,
)
from clinic.inventory.ledger import (
    append,
    check_time,
    location_day,
    lock_chain,
    lock_container,
    lock_movement,
    require_positive,
)
from clinic.inventory.models import Container, ContainerStatus, Drug, EntryKind, LedgerEntry
from clinic.inventory.witness import WitnessSignature, verify_witness
from clinic.locations.models import Location, StorageSite
from clinic.reminders import service as reminders


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
    late_entry_reason: str | None = None,
    order_form_number: str | None = None,
    confirm_repeat_invoice: bool = False,
) -> Receipt:
    """A shipment into a safe (DEA-23/24): one container row and one receipt entry per container."""
    site = db.session.get(StorageSite, storage_site_id)
    if site is None:
        raise NotFound("No such storage site")
    drug = get_drug(drug_id)
    at = check_time(occurred_at)
    record = checks.receipt_record(
        drug=drug,
        supplier_name=supplier_name,
        supplier_address=supplier_address,
        supplier_dea_registration=supplier_dea_registration,
        invoice_number=invoice_number,
        lot_number=lot_number,
        order_form_number=order_form_number,
    )
    chain = lock_chain(site.location_id)
    if not chain.has_initial_inventory:
        raise InitialInventoryRequired()
    if expires_on < location_day(site.location_id, at):
        raise ContainerUnusable("This lot is already past its expiry date.")
    late = checks.when(chain=chain, at=at, field="occurred_at", late_reason=late_entry_reason)
    repeated = checks.repeated_invoice(location_id=site.location_id, record=record, confirmed=confirm_repeat_invoice)
    details = {
        **late,
        **record,
        **repeated,
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
            lot_number=record["lot_number"],
            expires_on=expires_on,
            status=ContainerStatus.sealed.value,
            initial_ug=drug.container_ug,
            balance_ug=0,
        )
        db.session.add(container)
        db.session.flush()
        receipt.containers.append(container)
        receipt.entries.append(
            append(
                chain=chain,
                kind=EntryKind.receipt,
                actor=actor,
                occurred_at=at,
                container=container,
                delta_ug=drug.container_ug,
                details=details,
            )
        )
    reminders.stock_received(site.location_id, [(drug.id, lot_number, expires_on)])
    return receipt


def quantities(drug: Drug, quantity_ug: int) -> dict[str, str]:
    """DEA-28: mass and volume side by side, with the strength that converts one to the other."""
    out = {"quantity_mg": format_mg(quantity_ug), "mg_per_unit": format_mg(drug.ug_per_unit), "unit": drug.unit}
    if drug.unit == "mL":
        # thousandths of a mL, rounded half up: 0.001 mL is finer than any syringe reads
        out["quantity_ml"] = format_mg((quantity_ug * 1_000_000 // drug.ug_per_unit + 500) // 1000)
    return out


def _usable(container: Container, *, on: date) -> None:
    if container.status in (ContainerStatus.quarantined, ContainerStatus.disposed, ContainerStatus.expired):
        raise ContainerUnusable(f"The container is {container.status}.")
    if container.expires_on < on:
        raise ContainerUnusable("The container is past its expiry date.")


def record_administration(
    *,
    actor: User,
    container_id: int,
    patient_id: int,
    quantity_ug: int,
    administered_at: datetime | None = None,
    appointment_id: int | None = None,
    late_entry_reason: str | None = None,
    last_write: bool = False,
) -> LedgerEntry:
    """A dose given to a patient from a specific container (DEA-26).

    ``last_write``: the caller's request writes nothing after this entry (the API's POST), so on
    PostgreSQL the entry may travel with the COMMIT (:func:`ledger.append`'s ``entry_id``)."""
    require_positive(quantity_ug)
    at = check_time(administered_at, "administered_at")
    # The hot path: one statement locks the chain head and the container and reads what the checks
    # need (the patient too); the append is one more (on PostgreSQL), DEA-06's previous-movement check
    # inside it.
    chain, container, timezone, entry_id, patient = lock_movement(
        container_id, reserve_id=last_write, patient_id=patient_id
    )
    if administered_at is None:
        # "now" is read once the container is ours: a draw that waited for the lock behind another
        # one on the same vial is not dated before it (DEA-06 would refuse it as back-dated)
        at = check_time(None, "administered_at")
    checks.links(
        location_id=container.location_id, patient_id=patient.id, appointment_id=appointment_id, patient_found=True
    )
    _usable(container, on=at.astimezone(ZoneInfo(timezone)).date())
    late = checks.when(chain=chain, at=at, field="administered_at", late_reason=late_entry_reason)
    return append(
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
            **late,
        },
        after_previous="administered_at",
        entry_id=entry_id,
    )


def record_waste(
    *,
    actor: User,
    container_id: int,
    quantity_ug: int,
    reason: str,
    witness: WitnessSignature | None,
    client_addr: str,
    occurred_at: datetime | None = None,
    patient_id: int | None = None,
    late_entry_reason: str | None = None,
    administration_seq: int | None = None,
    no_administration_reason: str | None = None,
) -> LedgerEntry:
    """The unusable remainder of a dose, destroyed before a second licensed person (DEA-38..42)."""
    require_positive(quantity_ug)
    at = check_time(occurred_at)
    container = get_container(container_id)
    checks.links(location_id=container.location_id, patient_id=patient_id, appointment_id=None)
    location = db.session.get(Location, container.location_id)
    assert location is not None
    signed_by = None
    if location.rule("waste_witness_required") or witness is not None:
        signed_by = verify_witness(witness, actor=actor, location_id=location.id, client_addr=client_addr)
    chain = lock_chain(container.location_id)
    container = lock_container(container_id)
    if container.status in (ContainerStatus.disposed, ContainerStatus.quarantined):
        raise ContainerUnusable(f"The container is {container.status}.")
    late = checks.when(
        chain=chain,
        at=at,
        field="occurred_at",
        container_ids=(container.id,),
        late_reason=late_entry_reason,
    )
    link = checks.waste_link(
        container_id=container.id,
        at=at,
        patient_id=patient_id,
        administration_seq=administration_seq,
        reason=no_administration_reason,
    )
    return append(
        chain=chain,
        kind=EntryKind.waste,
        actor=actor,
        occurred_at=at,
        container=container,
        delta_ug=-quantity_ug,
        witness=signed_by,
        reason=reason,
        patient_id=patient_id,
        details={**quantities(container.drug, quantity_ug), **link, **late},
    )


def record_transfer(
    *,
    actor: User,
    container_id: int,
    to_storage_site_id: int,
    occurred_at: datetime | None = None,
    late_entry_reason: str | None = None,
) -> LedgerEntry:
    at = check_time(occurred_at)
    site = db.session.get(StorageSite, to_storage_site_id)
    container = get_container(container_id)
    if site is None or site.location_id != container.location_id:
        raise ValidationFailed(errors={"to_storage_site_id": ["Must be a storage site of the same location."]})
    chain = lock_chain(container.location_id)
    container = lock_container(container_id)
    if site.id == container.storage_site_id:  # read under the lock: a racing twin may have moved it
        raise Conflict(
            "The container is already there", errors={"to_storage_site_id": ["The container is already there."]}
        )
    if container.status == ContainerStatus.disposed:
        raise ContainerUnusable("The container is disposed.")
    late = checks.when(
        chain=chain,
        at=at,
        field="occurred_at",
        container_ids=(container.id,),
        late_reason=late_entry_reason,
    )
    details = {"from_storage_site_id": container.storage_site_id, "to_storage_site_id": site.id, **late}
    container.storage_site_id = site.id
    return append(
        chain=chain, kind=EntryKind.transfer, actor=actor, occurred_at=at, container=container, details=details
    )


def record_disposal(
    *,
    actor: User,
    container_id: int,
    method: str,
    witness: WitnessSignature | None,
    client_addr: str,
    second_witness: WitnessSignature | None = None,
    reverse_distributor: dict[str, str] | None = None,
    occurred_at: datetime | None = None,
    late_entry_reason: str | None = None,
    method_note: str | None = None,
) -> LedgerEntry:
    """Expired or unwanted stock out of inventory: to a reverse distributor (DEA-43/44, the actor
    and a second employee) or destroyed on site (DEA-45/46, Form 41 data: two witnesses)."""
    at = check_time(occurred_at)
    container = get_container(container_id)
    if reverse_distributor is None:
        method = records.destruction_method(method)
    elif not method.strip():
        raise ValidationFailed(errors={"method": ["Say how it leaves (e.g. returned for destruction)."]})
    first = verify_witness(witness, actor=actor, location_id=container.location_id, client_addr=client_addr)
    second = None
    if reverse_distributor is None and second_witness is None:
        # On-site destruction: Form 41 carries two witnesses besides the person destroying (DEA-45/46).
        raise WitnessRequired(errors={"second_witness_email": ["On-site destruction needs a second witness."]})
    if second_witness is not None:
        second = verify_witness(
            second_witness,
            actor=actor,
            location_id=container.location_id,
            client_addr=client_addr,
            field="second_witness",
        )
        if second.id == first.id:
            raise WitnessInvalid(errors={"second_witness_email": ["Two different witnesses are needed."]})
    chain = lock_chain(container.location_id)
    container = lock_container(container_id)
    if container.status == ContainerStatus.disposed:
        raise ContainerUnusable("The container is already disposed.")
    late = checks.when(
        chain=chain,
        at=at,
        field="occurred_at",
        container_ids=(container.id,),
        late_reason=late_entry_reason,
    )
    kind = EntryKind.return_to_distributor if reverse_distributor else EntryKind.destruction
    drug = container.drug
    details = {
        "method": method,
        "ndc": drug.ndc,
        "lot_number": container.lot_number,
        "quantity_mg": format_mg(container.balance_ug),
        **({"reverse_distributor": reverse_distributor} if reverse_distributor else {}),
        **late,
    }
    if kind == EntryKind.destruction:
        location = db.session.get(Location, container.location_id)
        site = db.session.get(StorageSite, container.storage_site_id)
        assert location is not None
        assert site is not None
        assert second is not None
        details["form_41"] = records.form_41(
            location=location,
            container=container,
            at=at,
            method=method,
            note=method_note,
            destroyed_by=actor,
            witnesses=[first, second],
            storage_site=site.name,
        )
    elif method_note and method_note.strip():
        details["method_note"] = method_note.strip()
    entry = append(
        chain=chain,
        kind=kind,
        actor=actor,
        occurred_at=at,
        container=container,
        delta_ug=-container.balance_ug,
        witness=first,
        second_witness=second,
        details=details,
    )
    container.status = ContainerStatus.disposed.value
    db.session.flush()
    return entry

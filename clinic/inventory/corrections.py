"""Corrections (SYS-01): a new entry linked to the one it corrects, restoring the state as well as
the milligrams, or refused with the reason. Nothing already in the chain is edited."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from clinic.auth.models import User
from clinic.core.errors import Conflict, NotFound, ValidationFailed
from clinic.core.fields import format_mg
from clinic.extensions import db
from clinic.inventory import anchors, checks
from clinic.inventory.errors import AlreadyRecorded, CorrectionRefused
from clinic.inventory.ledger import append, check_time, lock_chain, lock_container
from clinic.inventory.models import Container, ContainerStatus, EntryKind, LedgerEntry
from clinic.inventory.state import DISPOSALS, next_status
from clinic.inventory.witness import WitnessSignature, verify_witness

#: entries whose quantity left the container: a correction may carry the true quantity instead
OUTFLOWS = (EntryKind.administration.value, EntryKind.waste.value, EntryKind.loss.value)
#: what each refused kind is corrected by instead
REFUSED = {
    EntryKind.receipt.value: "A receipt stays in the record: send the container back to the distributor, "
    "or record it as a loss, with a reason.",
    EntryKind.initial_inventory.value: "An inventory is a record of what was counted: take a new count.",
    EntryKind.stock_count.value: "A count is a record of what was counted: take a new count.",
    EntryKind.correction.value: "A correction is not corrected again: correct the original entry's "
    "remaining difference with a count and its adjustment.",
}


def record_correction(
    *,
    actor: User,
    location_id: int,
    corrects_seq: int,
    reason: str,
    witness: WitnessSignature | None,
    client_addr: str,
    occurred_at: datetime | None = None,
    corrected_quantity_ug: int | None = None,
    late_entry_reason: str | None = None,
) -> LedgerEntry:
    """SYS-01: undo an entry, or (``corrected_quantity_ug``) make an administration, waste or loss say what
    really happened: 40 mg charted, 45 mg given, is a linked entry for the 5 mg difference."""
    if not reason.strip():
        raise ValidationFailed(errors={"reason": ["Say why the entry is corrected."]})
    at = check_time(occurred_at)
    original = db.session.scalar(
        select(LedgerEntry).where(LedgerEntry.location_id == location_id, LedgerEntry.seq == corrects_seq)
    )
    if original is None:
        raise NotFound("No such ledger entry")
    checks.not_before(at, original.occurred_at, "occurred_at", "the entry it corrects")
    if original.kind in REFUSED:
        raise CorrectionRefused(REFUSED[original.kind], errors={"corrects_seq": [REFUSED[original.kind]]})
    if corrected_quantity_ug is not None and original.kind not in OUTFLOWS:
        raise ValidationFailed(
            errors={"corrected_quantity_mg": ["Only an administration, waste or loss has a quantity to correct."]}
        )
    if corrected_quantity_ug is not None and corrected_quantity_ug == -original.delta_ug:
        raise Conflict(
            "That is what the entry already says",
            errors={"corrected_quantity_mg": ["That is what the entry already says."]},
        )
    signed_by = verify_witness(witness, actor=actor, location_id=location_id, client_addr=client_addr)
    chain = lock_chain(location_id)
    # Under the chain lock: two people correcting one entry at once, the second is told (409).
    already = db.session.scalar(
        select(LedgerEntry.id).where(LedgerEntry.location_id == location_id, LedgerEntry.corrects_seq == corrects_seq)
    )
    if already is not None:
        raise AlreadyRecorded(errors={"corrects_seq": ["That entry is already corrected."]})
    assert original.container_id is not None  # every kind left has a container
    container = lock_container(original.container_id)
    delta = -original.delta_ug if corrected_quantity_ug is None else -original.delta_ug - corrected_quantity_ug
    details: dict[str, object] = {
        "corrects_kind": original.kind,
        **checks.when(chain=chain, at=at, field="occurred_at", late_reason=late_entry_reason),
    }
    if corrected_quantity_ug is not None:
        details["corrected_quantity_mg"] = format_mg(corrected_quantity_ug)
    if original.kind in DISPOSALS:
        details["restores_status"] = _status_before(container, original.seq)
    elif container.status == ContainerStatus.disposed:
        raise CorrectionRefused(
            "The container has since been disposed of: correct its disposal first.",
            errors={"corrects_seq": ["The container is disposed."]},
        )
    if original.kind == EntryKind.transfer:
        came_from, went_to = original.details["from_storage_site_id"], original.details["to_storage_site_id"]
        if container.storage_site_id != went_to:
            raise CorrectionRefused(
                "The container has moved again since: transfer it back instead.",
                errors={"corrects_seq": ["The container is no longer where that transfer put it."]},
            )
        details["restores_storage_site_id"] = came_from
        container.storage_site_id = came_from
    if container.balance_ug + delta > container.initial_ug:
        raise CorrectionRefused(
            "The correction would leave more in the container than it can hold.",
            errors={"corrects_seq": ["Reversing it would exceed the container's size."]},
        )
    before = container.status
    entry = append(
        chain=chain,
        kind=EntryKind.correction,
        actor=actor,
        occurred_at=at,
        container=container,
        delta_ug=delta,
        witness=signed_by,
        corrects_seq=corrects_seq,
        reason=reason,
        patient_id=original.patient_id,
        details=details,
    )
    container.status = next_status(
        before, kind=entry.kind, delta_ug=delta, balance_after=container.balance_ug, details=details
    )
    db.session.flush()
    return entry


def _status_before(container: Container, seq: int) -> str:
    """The container's status just before entry ``seq``, re-walked from its own entries; from the
    purge's anchor on when the oldest of them were purged (SYS-02: the anchor keeps its status)."""
    status: str | None = None
    after = 0
    anchor = anchors.newest(container.location_id)
    if anchor is not None and anchor.through_seq < seq:
        after = anchor.through_seq
        kept = anchors.Cut.of(anchor).containers.get(container.id)
        status = kept[1] if kept is not None else None
    rows = db.session.execute(
        select(LedgerEntry.kind, LedgerEntry.delta_ug, LedgerEntry.balance_after_ug, LedgerEntry.details)
        .where(LedgerEntry.container_id == container.id, LedgerEntry.seq > after, LedgerEntry.seq < seq)
        .order_by(LedgerEntry.seq)
    )
    for kind, delta, balance, details in rows:
        status = next_status(status, kind=kind, delta_ug=delta, balance_after=balance or 0, details=details or {})
    assert status is not None  # a disposal comes after the container's receipt
    return status

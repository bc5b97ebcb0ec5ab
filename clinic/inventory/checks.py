"""What an entry must pass before it is appended: its times in order and its links agreeing.

Called by the services under the chain lock (so what they read cannot change before the append),
and kept apart from ``ledger.append`` itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from clinic.core.errors import Conflict, NotFound, ValidationFailed
from clinic.core.retention import RECORD_FLOOR_YEARS
from clinic.core.time import EARLIEST, OFF_THE_CALENDAR, utcnow
from clinic.extensions import db
from clinic.inventory.models import EntryKind, LedgerAnchor, LedgerChain, LedgerEntry

#: the default back-charting window (CLINIC_LEDGER_BACKCHART_HOURS); earlier needs a reason (DEA-06)
BACKCHART_HOURS = 72


def when(
    *,
    chain: LedgerChain,
    at: datetime,
    field: str,
    container_ids: tuple[int, ...] = (),
    late_reason: str | None = None,
    initial: bool = False,
) -> dict[str, Any]:
    """DEA-06: ``occurred_at`` is when it really happened, so it must fit the record: on the
    calendar, not before the location's initial inventory nor before the container's previous
    movement, and within the back-charting window unless a reason is given. Returns the details
    the entry keeps about it (the reason for a late entry)."""
    if at < EARLIEST:
        raise ValidationFailed(errors={field: [OFF_THE_CALENDAR]})
    hours = int(current_app.config.get("LEDGER_BACKCHART_HOURS", BACKCHART_HOURS))
    reason = (late_reason or "").strip()
    if at < utcnow() - timedelta(hours=hours) and not reason:
        raise ValidationFailed(
            errors={
                field: [
                    f"More than {hours} hours ago: give late_entry_reason to chart it this late.",
                ],
                "late_entry_reason": ["Required for an entry charted this late."],
            }
        )
    opened = chain.initial_inventory_at
    if not initial and opened is not None and at < opened:
        raise ValidationFailed(errors={field: [f"Before this location's initial inventory ({opened.isoformat()})."]})
    if at < utcnow() - PURGED_AT_LEAST:
        not_in_purged_past(location_id=chain.location_id, at=at, field=field)
    if container_ids:
        after_previous_movements(at=at, field=field, container_ids=container_ids)
    return {"late_entry_reason": reason} if reason else {}


def after_previous_movements(*, at: datetime, field: str, container_ids: tuple[int, ...]) -> None:
    """DEA-06: no entry is dated before its container's previous movement. One read for a whole
    inventory's containers. (``ledger.append`` checks it inside its one statement on PostgreSQL.)"""
    latest = db.session.execute(
        select(LedgerEntry.container_id, func.max(LedgerEntry.occurred_at))
        .where(LedgerEntry.container_id.in_(container_ids))
        .group_by(LedgerEntry.container_id)
    )
    for cid, last in sorted(latest, key=lambda row: row[0] or 0):
        if last is not None and at < _aware(last):
            raise ValidationFailed(
                errors={field: [f"Before container {cid}'s previous movement ({_aware(last).isoformat()})."]}
            )


#: every purge's cutoff is at least this long ago (2 years' retention, DEA-08), less a week for the
#: app's clock against the database's: a later entry needs no look at the purges
PURGED_AT_LEAST = timedelta(days=365 * RECORD_FLOOR_YEARS - 7)


def not_in_purged_past(*, location_id: int, at: datetime, field: str) -> None:
    """DEA-06 after a purge (SYS-02): the entries before a purge's cutoff are gone, the container's
    previous movements with them, so nothing read here can show an entry dated then out of order:
    none is taken."""
    cutoff = db.session.scalar(select(func.max(LedgerAnchor.cutoff)).where(LedgerAnchor.location_id == location_id))
    if cutoff is not None and at < _aware(cutoff):
        raise ValidationFailed(
            errors={
                field: [
                    f"Before {_aware(cutoff).isoformat()}: this location's records up to then were purged "
                    "past retention."
                ]
            }
        )


def not_before(later: datetime, earlier: datetime, field: str, what: str) -> None:
    if later < earlier:
        raise ValidationFailed(errors={field: [f"Cannot be before {what}."]})


def _aware(value: datetime | str) -> datetime:
    """Aggregates skip the column type on SQLite: the max comes back as text."""
    from datetime import UTC

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def links(*, location_id: int, patient_id: int | None, appointment_id: int | None, patient_found: bool = False) -> None:
    """Every id an entry names exists and agrees, before it is chained for ever: the appointment is
    the patient's, and at the container's location. ``patient_found``: the caller has read the
    patient already (no second read)."""
    from clinic.patients.models import Patient
    from clinic.scheduling.models import Appointment

    if patient_id is not None and not patient_found and db.session.get(Patient, patient_id) is None:
        raise NotFound("No such patient", errors={"patient_id": ["No such patient."]})
    if appointment_id is None:
        return
    appt = db.session.get(Appointment, appointment_id)
    if appt is None:
        raise NotFound("No such appointment", errors={"appointment_id": ["No such appointment."]})
    if patient_id is None or appt.patient_id != patient_id:
        raise Conflict(
            "That appointment is another patient's",
            errors={"appointment_id": ["That appointment is another patient's."]},
        )
    if appt.location_id != location_id:
        raise Conflict(
            "That appointment is at another location",
            errors={"appointment_id": ["That appointment is at another location."]},
        )


#: a waste belongs to an administration from its container within this long before it (a visit that
#: runs past midnight included); otherwise it names one, or says why there is none
WASTE_LINK_HOURS = 24


def waste_link(
    *, container_id: int, at: datetime, patient_id: int | None, administration_seq: int | None, reason: str | None
) -> dict[str, Any]:
    """The administration a waste is the remainder of (DEA-41: the patient it was drawn for)."""
    q = select(LedgerEntry).where(
        LedgerEntry.container_id == container_id, LedgerEntry.kind == EntryKind.administration.value
    )
    if administration_seq is not None:
        dose = db.session.scalar(q.where(LedgerEntry.seq == administration_seq))
        if dose is None:
            raise ValidationFailed(errors={"administration_seq": ["Not an administration from this container."]})
        if patient_id is not None and dose.patient_id != patient_id:
            raise Conflict(
                "That administration is another patient's",
                errors={"administration_seq": ["That administration is another patient's."]},
            )
    else:
        dose = db.session.scalar(
            q.where(LedgerEntry.occurred_at >= at - timedelta(hours=WASTE_LINK_HOURS), LedgerEntry.occurred_at <= at)
            .order_by(LedgerEntry.seq.desc())
            .limit(1)
        )
    if dose is not None:
        return {"administration_seq": dose.seq}
    if not (reason or "").strip():
        raise ValidationFailed(
            errors={
                "administration_seq": [
                    "No dose was drawn from this container in the last day: name the administration this "
                    "waste belongs to, or give no_administration_reason."
                ]
            }
        )
    return {"no_administration_reason": (reason or "").strip()}


def receipt_record(
    *,
    drug: Any,
    supplier_name: str,
    supplier_address: str,
    supplier_dea_registration: str,
    invoice_number: str,
    lot_number: str,
    order_form_number: str | None,
) -> dict[str, str]:
    """DEA-24: the supplier's name, address and DEA number, all present; DEA-23: a Schedule II
    order's Form 222 or CSOS number. Returned trimmed, as the entry keeps them."""
    from clinic.locations.schemas import dea_number_check

    record = {
        "supplier_name": supplier_name.strip(),
        "supplier_address": supplier_address.strip(),
        "supplier_dea_registration": supplier_dea_registration.strip(),
        "invoice_number": invoice_number.strip(),
        "lot_number": lot_number.strip(),
    }
    errors = {name: ["Cannot be blank."] for name, value in record.items() if not value}
    try:
        dea_number_check(record["supplier_dea_registration"])
    except Exception as exc:  # marshmallow's ValidationError: the same check as the schema's
        errors["supplier_dea_registration"] = [str(getattr(exc, "messages", [exc])[0])]
    order = (order_form_number or "").strip()
    if drug.schedule == "CII" and not order:
        errors["order_form_number"] = ["A Schedule II receipt needs its DEA Form 222 or CSOS order number."]
    if errors:
        raise ValidationFailed(errors=errors)
    if order:
        record["order_form_number"] = order
    return record


class RepeatedInvoice(ValidationFailed):
    code = "repeated_invoice"
    title = "This invoice was already received"
    http_status = 409


def repeated_invoice(*, location_id: int, record: dict[str, str], confirmed: bool) -> dict[str, Any]:
    """DEA-24: a second receipt of an invoice from the same supplier is a mistake more often than a split
    shipment: it needs ``confirm_repeat_invoice``, and the entry says it was confirmed."""
    earlier = db.session.execute(
        select(LedgerEntry.seq, LedgerEntry.details["lot_number"].as_string())
        .where(
            LedgerEntry.location_id == location_id,
            LedgerEntry.kind == EntryKind.receipt.value,
            LedgerEntry.details["invoice_number"].as_string() == record["invoice_number"],
            LedgerEntry.details["supplier_dea_registration"].as_string() == record["supplier_dea_registration"],
        )
        .order_by(LedgerEntry.seq)
        .limit(1)
    ).first()
    if earlier is None:
        return {}
    if not confirmed:
        same_lot = " with the same lot" if earlier[1] == record["lot_number"] else ""
        raise RepeatedInvoice(
            f"Invoice {record['invoice_number']} from this supplier was received already{same_lot} "
            f"(ledger #{earlier[0]}): set confirm_repeat_invoice if this is a second delivery on it.",
            errors={"confirm_repeat_invoice": ["Confirm a second receipt of this invoice."]},
        )
    return {"repeat_of_seq": earlier[0]}

"""The inventory domain as other code calls it (DOMAIN.md §1); the rules live in the modules named below.

Every movement is one hash-chained, append-only entry: ``ledger`` appends it, ``witness`` checks
the second signature, ``movements``, ``counts`` and ``losses`` decide what is recorded, and
``catalog`` holds the drugs and containers.
"""

from __future__ import annotations

from clinic.inventory.catalog import balances, create_drug, get_container, list_drugs
from clinic.inventory.corrections import record_correction
from clinic.inventory.counts import (
    inventory_overdue,
    next_inventory_due_on,
    reconcile_count,
    resolve_discrepancy,
)
from clinic.inventory.ledger import list_entries
from clinic.inventory.losses import flag_overdue_loss_reports, list_loss_reports, mark_loss_report, record_loss
from clinic.inventory.movements import (
    receive_stock,
    record_administration,
    record_disposal,
    record_transfer,
    record_waste,
)
from clinic.inventory.patterns import open_alert, resolve_alert, small_discrepancy_pattern
from clinic.inventory.witness import WitnessSignature


def check_links(*, container_id: int, patient_id: int | None, appointment_id: int | None) -> None:
    """The ids a request names exist and agree (appointment, patient, the container's location)."""
    from clinic.inventory import checks

    container = get_container(container_id)
    checks.links(location_id=container.location_id, patient_id=patient_id, appointment_id=appointment_id)


__all__ = [
    "WitnessSignature",
    "balances",
    "check_links",
    "create_drug",
    "flag_overdue_loss_reports",
    "get_container",
    "inventory_overdue",
    "list_drugs",
    "list_entries",
    "list_loss_reports",
    "mark_loss_report",
    "next_inventory_due_on",
    "open_alert",
    "receive_stock",
    "reconcile_count",
    "record_administration",
    "record_correction",
    "record_disposal",
    "record_loss",
    "record_transfer",
    "record_waste",
    "resolve_alert",
    "resolve_discrepancy",
    "small_discrepancy_pattern",
]

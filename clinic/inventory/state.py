"""A container's status and place as its chain entries leave them: one rule for the services that
append and for the verifier that re-walks the chain (so a stored status can be checked, SYS-05)."""

from __future__ import annotations

from typing import Any

from clinic.inventory.models import ContainerStatus, EntryKind

DISPOSALS = (EntryKind.destruction.value, EntryKind.return_to_distributor.value)


def next_status(status: str | None, *, kind: str, delta_ug: int, balance_after: int, details: dict[str, Any]) -> str:
    """The status an entry leaves its container in, given the status before it."""
    if kind == EntryKind.receipt:
        return ContainerStatus.sealed.value
    if kind in DISPOSALS:
        return ContainerStatus.disposed.value
    restored = details.get("restores_status")
    if restored:
        return str(restored)
    assert status is not None
    if balance_after == 0 and status in (ContainerStatus.sealed, ContainerStatus.open):
        return ContainerStatus.empty.value
    if delta_ug < 0 and status == ContainerStatus.sealed:
        return ContainerStatus.open.value
    if delta_ug > 0 and status == ContainerStatus.empty:
        return ContainerStatus.open.value
    return status


def next_site(site_id: int | None, *, kind: str, details: dict[str, Any]) -> int | None:
    """The storage site an entry leaves its container in."""
    if kind == EntryKind.receipt:
        return int(details["storage_site_id"])
    if kind == EntryKind.transfer:
        return int(details["to_storage_site_id"])
    if "restores_storage_site_id" in details:
        return int(details["restores_storage_site_id"])
    return site_id

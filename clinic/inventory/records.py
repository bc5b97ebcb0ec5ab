"""What a record carries so that it stands on its own years later: the registrant, the drug as it
was described, the Form 41 data set of a destruction (DEA-17/18/20/21, DEA-45/46)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from clinic.auth.models import User
from clinic.core.errors import ValidationFailed
from clinic.core.fields import format_mg
from clinic.core.time import local_day
from clinic.inventory.models import Container, ContainerStatus, Drug
from clinic.locations.models import Location

#: DEA-45: on-site destruction must leave the drug non-retrievable. Methods a clinic uses to do that;
#: anything else a destroyer wants to say goes in the method note.
NON_RETRIEVABLE_METHODS = (
    "incineration",
    "chemical_digestion",
    "activated_carbon_disposal_system",
    "denaturing_and_solidifying_agent",
)


def destruction_method(method: str) -> str:
    """DEA-45: the listed method ``method`` names ("Chemical digestion" and "chemical_digestion" alike)."""
    key = "_".join(method.strip().lower().replace("-", " ").split())
    if key not in NON_RETRIEVABLE_METHODS:
        raise ValidationFailed(
            errors={
                "method": [
                    "On-site destruction uses a non-retrievable method, one of: "
                    + ", ".join(NON_RETRIEVABLE_METHODS)
                    + ". Say more in method_note."
                ]
            }
        )
    return key


def registrant(location: Location) -> dict[str, Any]:
    """DEA-20/21, DEA-46: who the record is of, as it was then."""
    return {
        "name": location.name,
        "address": location.address,
        "dea_registration": location.dea_registration,
        "phone": location.phone,
    }


def drug_record(drug: Drug) -> dict[str, Any]:
    """DEA-18: the substance, its finished form and strength, and what one commercial container holds."""
    return {
        "drug_name": drug.name,
        "ndc": drug.ndc,
        "schedule": drug.schedule,
        "form": drug.form,
        "strength": f"{format_mg(drug.ug_per_unit)} mg/{drug.unit}",
        "container_size": f"{format_mg(drug.milliunits_per_container)} {drug.unit}",
    }


def form_41(
    *,
    location: Location,
    container: Container,
    at: datetime,
    method: str,
    note: str | None,
    destroyed_by: User,
    witnesses: list[User],
    storage_site: str,
) -> dict[str, Any]:
    """DEA-46: the registrant, the item (NDC, batch, name, strength, form, package quantity, full and
    partial packages, total destroyed), the date, method and place, and the two witnesses."""
    drug = container.drug
    sealed = container.status == ContainerStatus.sealed and container.balance_ug == container.initial_ug
    units = container.balance_ug * 1000 // drug.ug_per_unit  # thousandths of a unit left
    return {
        "registrant": registrant(location),
        "items": [
            {
                **drug_record(drug),
                "batch_number": container.lot_number,
                "container_id": container.id,
                "package_quantity": f"{format_mg(drug.milliunits_per_container)} {drug.unit}",
                "full_packages": 1 if sealed else 0,
                "partial_package_quantity": None if sealed else f"{format_mg(units)} {drug.unit}",
                "total_destroyed_mg": format_mg(container.balance_ug),
            }
        ],
        "date": local_day(at, location.timezone).isoformat(),
        "method": method,
        "method_note": (note or "").strip() or None,
        "location_of_destruction": f"{location.name}, {location.address} ({storage_site})",
        "destroyed_by": {"user_id": destroyed_by.id, "name": destroyed_by.name},
        "witnesses": [{"user_id": w.id, "name": w.name} for w in witnesses],
    }

"""Drugs, and the containers of them on hand."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from clinic.audit import service as audit
from clinic.audit.tags import Tag
from clinic.auth.models import User
from clinic.core.errors import Conflict, NotFound, ValidationFailed
from clinic.extensions import db
from clinic.inventory.models import Container, ContainerStatus, Drug

#: Sane bounds for a clinic's container (the strongest ketamine is 100 mg/mL; vials hold up to
#: 50 mL; a tablet or device is a few hundred mg): a typo of 1e9 is refused here, not later as an
#: overflow in a balance.
MAX_MG_PER_UNIT = 1_000
MAX_UNITS_PER_CONTAINER = 1_000
MAX_MG_PER_CONTAINER = 100_000


def _out_of_bounds(ug_per_unit: int, milliunits_per_container: int) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if ug_per_unit > MAX_MG_PER_UNIT * 1000:
        errors["mg_per_unit"] = [f"At most {MAX_MG_PER_UNIT} mg per unit."]
    if milliunits_per_container > MAX_UNITS_PER_CONTAINER * 1000:
        errors["units_per_container"] = [f"At most {MAX_UNITS_PER_CONTAINER} units per container."]
    if not errors and ug_per_unit * milliunits_per_container > MAX_MG_PER_CONTAINER * 1000 * 1000:
        errors["units_per_container"] = [f"A container may hold at most {MAX_MG_PER_CONTAINER} mg."]
    return errors


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
        raise Conflict("A drug with this NDC exists", errors={"ndc": ["A drug with this NDC exists."]})
    bounds = _out_of_bounds(ug_per_unit, milliunits_per_container)
    if bounds:
        raise ValidationFailed(errors=bounds)
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
    audit.record(actor=actor, tag=Tag.inventory_drug_create, subject=("drug", drug.id), data={"ndc": ndc})
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

"""Setting up a clinic through the services: the one set of ``create_*`` helpers that the demo
(``clinic demo``), the benchmarks (bench/) and the test factories share.

Every helper calls the real services (so every rule and audit row applies) and only flushes: the
caller owns the unit of work and commits (``clinic.core.tx.commit``). Defaults are plausible and
valid; anything a caller cares about is a keyword.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from clinic.auth import members as auth_members
from clinic.auth import service as auth
from clinic.auth.models import User
from clinic.inventory import service as inventory
from clinic.inventory.models import Drug
from clinic.inventory.movements import Receipt
from clinic.locations import service as locations
from clinic.locations.models import Location
from clinic.patients import service as patients
from clinic.patients.models import Patient
from clinic.scheduling import service as scheduling

#: screening answers with no flag raised: a patient cleared for treatment (no contraindication)
CLEAR_SCREENING: dict[str, Any] = {
    "pregnant": False,
    "breastfeeding": False,
    "psychosis_or_mania": False,
    "uncontrolled_hypertension": False,
    "cardiovascular_disease": False,
    "aneurysm_avm_or_ich": False,
    "substance_use_disorder": False,
    "prior_ketamine_reaction": False,
    "medications": [],
}


@dataclass(frozen=True)
class DrugSpec:
    name: str
    ndc: str
    form: str
    unit: str
    ug_per_unit: int
    #: thousandths of a unit per container (10 mL = 10_000; one device = 1_000)
    milliunits_per_container: int
    schedule: str = "CIII"


KETAMINE_10 = DrugSpec("Ketamine HCl 10 mg/mL, 20 mL vial", "42023-113-10", "vial", "mL", 10_000, 20_000)
KETAMINE_50 = DrugSpec("Ketamine HCl 50 mg/mL, 10 mL vial", "42023-114-10", "vial", "mL", 50_000, 10_000)
KETAMINE_100 = DrugSpec("Ketamine HCl 100 mg/mL, 5 mL vial", "42023-115-10", "vial", "mL", 100_000, 5_000)
SPRAVATO_28 = DrugSpec(
    "Spravato (esketamine) 28 mg nasal device", "50458-028-02", "nasal_device", "device", 28_000, 1_000
)
CATALOG = (KETAMINE_10, KETAMINE_50, KETAMINE_100, SPRAVATO_28)

#: a wholesaler's order-form record fields for receipts (a made-up registrant with a valid check digit)
SUPPLIER: dict[str, str] = {
    "supplier_name": "Midwest Medical Supply",
    "supplier_address": "9 Depot Rd, Joliet IL",
    "supplier_dea_registration": "RW7654329",
}


def create_user(
    *,
    role: str,
    email: str,
    password: str,
    name: str | None = None,
    license_number: str | None = None,
    license_type: str | None = None,
    location_ids: Sequence[int] = (),
) -> User:
    """A staff account (created by nobody: as ``clinic users create`` does), a member of
    ``location_ids``; a licence number alone takes the role's usual type (the service's rule)."""
    return auth.create_user(
        actor=None,
        email=email,
        name=name or email.split("@")[0],
        role=role,
        password=password,
        license_number=license_number,
        license_type=license_type,
        location_ids=location_ids,
    )


@dataclass(frozen=True)
class Place:
    """A location as set up here, with the ids of its storage sites and chairs in the order given."""

    location: Location
    sites: tuple[int, ...]
    chairs: tuple[int, ...]

    @property
    def id(self) -> int:
        return self.location.id


def create_location(
    actor: User,
    *,
    dea_registration: str,
    timezone: str,
    name: str = "Test clinic",
    address: str = "1 Main St",
    storage_sites: tuple[str, ...] = (),
    chairs: tuple[str, ...] | int = (),
    members: Sequence[User] = (),
    **extra: Any,
) -> Place:
    """A location with its storage sites and chairs (``chairs=3`` names them "Chair 01".."Chair 03"),
    where ``members`` work (SYS-11; admins work everywhere and are skipped)."""
    location = locations.create_location(
        actor=actor, name=name, address=address, dea_registration=dea_registration, timezone=timezone, **extra
    )
    for user in members:
        if user.role != "admin":
            auth_members.grant(actor=None, location_id=location.id, user_id=user.id)
    sites = tuple(
        locations.create_storage_site(actor=actor, location_id=location.id, name=site).id for site in storage_sites
    )
    names = tuple(f"Chair {i + 1:02d}" for i in range(chairs)) if isinstance(chairs, int) else chairs
    made = tuple(scheduling.create_chair(actor=actor, location_id=location.id, name=chair).id for chair in names)
    return Place(location, sites, made)


def create_drug(actor: User, spec: DrugSpec = KETAMINE_50, **overrides: Any) -> Drug:
    fields: dict[str, Any] = {
        "name": spec.name,
        "ndc": spec.ndc,
        "schedule": spec.schedule,
        "form": spec.form,
        "unit": spec.unit,
        "ug_per_unit": spec.ug_per_unit,
        "milliunits_per_container": spec.milliunits_per_container,
    }
    return inventory.create_drug(actor=actor, **(fields | overrides))


def open_ledger(
    actor: User, location_id: int, witness: inventory.WitnessSignature, *, occurred_at: datetime | None = None
) -> Any:
    """The location's witnessed initial inventory (of nothing): what any receipt needs first."""
    return inventory.reconcile_count(
        actor=actor,
        location_id=location_id,
        kind="initial",
        lines=[],
        business_hours="opening",
        witness=witness,
        client_addr="127.0.0.1",
        occurred_at=occurred_at,
    )


def create_receipt(
    actor: User,
    *,
    storage_site_id: int,
    drug_id: int,
    count: int,
    expires_on: date,
    lot_number: str = "LOT1",
    invoice_number: str = "INV-1",
    supplier: dict[str, Any] | None = None,
    **extra: Any,
) -> Receipt:
    """``count`` sealed containers of one lot received into a storage site."""
    return inventory.receive_stock(
        actor=actor,
        storage_site_id=storage_site_id,
        drug_id=drug_id,
        lot_number=lot_number,
        expires_on=expires_on,
        container_count=count,
        invoice_number=invoice_number,
        **(supplier or SUPPLIER),
        **extra,
    )


def create_patient(
    actor: User,
    *,
    first_name: str,
    last_name: str,
    timezone: str,
    date_of_birth: date = date(1980, 1, 1),
    address: str = "2 Main St",
    clinician: User | None = None,
    screen: dict[str, Any] | None = None,
    location_id: int | None = None,
    weight_g: int | None = None,
    weighed_at: datetime | None = None,
    rems_enrolled_on: date | None = None,
    **extra: Any,
) -> Patient:
    """A patient; ``screen``: screened by ``clinician`` (else the actor) with these answers laid over
    :data:`CLEAR_SCREENING` (``screen={}``: cleared for treatment, checked); weighed and REMS-enrolled
    when asked."""
    patient = patients.create_patient(
        actor=actor,
        first_name=first_name,
        last_name=last_name,
        date_of_birth=date_of_birth,
        address=address,
        timezone=timezone,
        location_id=location_id,
        **extra,
    )
    clinician = clinician or actor
    if screen is not None:
        result = patients.record_screening(
            actor=clinician, patient_id=patient.id, answers={**CLEAR_SCREENING, **screen}, location_id=location_id
        )
        if not screen and result.eligibility != "eligible":  # the rules changed under the setup
            raise RuntimeError(f"a patient with a clear screening was found {result.eligibility}: {result.flags}")
    if weight_g is not None:
        patients.record_weight(actor=clinician, patient_id=patient.id, weight_g=weight_g, measured_at=weighed_at)
    if rems_enrolled_on is not None:
        patients.enroll_in_rems(actor=clinician, patient_id=patient.id, enrolled_on=rems_enrolled_on)
    return patient


def book_course(
    actor: User,
    *,
    patient_id: int,
    location_id: int,
    prescriber_id: int,
    start_on: date,
    preferred_time: time = time(9, 0),
    protocol: str = "esketamine-rems",
) -> Any:
    """A treatment course from a protocol, booked as the front desk would."""
    return scheduling.create_series(
        actor=actor,
        patient_id=patient_id,
        protocol=protocol,
        location_id=location_id,
        prescriber_id=prescriber_id,
        start_on=start_on,
        preferred_time=preferred_time,
    )

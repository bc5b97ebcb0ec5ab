"""Demo clinic data. Idempotent: running it twice changes nothing and prints the same logins."""

from __future__ import annotations

import json
import os
import secrets
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select

from clinic.auth import service as auth
from clinic.auth.models import User
from clinic.core.time import today_at
from clinic.core.tx import commit
from clinic.extensions import db

DEMO_USERS = [
    ("admin", "admin@demo.clinic", "Avery Admin", None, None),
    ("prescriber", "prescriber@demo.clinic", "Dr. Priya Prescriber", "MD", "MD-100200"),
    ("nurse", "nurse@demo.clinic", "Noah Nurse", "RN", "RN-300400"),
    ("nurse", "nurse2@demo.clinic", "Nia Witness", "RN", "RN-300500"),
    ("front_desk", "frontdesk@demo.clinic", "Frankie Desk", None, None),
    ("auditor", "auditor@demo.clinic", "Audrey Auditor", None, None),
]


def _passwords(instance: Path) -> dict[str, str]:
    """Random per install, kept in the instance folder so reruns print the same ones."""
    path = instance / "demo-logins.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    passwords = {email: secrets.token_urlsafe(12) for _, email, *_ in DEMO_USERS}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(passwords, fh)
    return passwords


def seed(instance: Path) -> list[tuple[str, str, str]]:
    passwords = _passwords(instance)
    logins = []
    for role, email, name, license_type, license_number in DEMO_USERS:
        password = passwords[email]
        if db.session.scalar(select(User.id).where(User.email == email)) is None:
            auth.create_user(
                actor=None,
                email=email,
                name=name,
                role=role,
                password=password,
                license_type=license_type,
                license_number=license_number,
            )
        logins.append((role, email, password))
    commit()
    _seed_clinic(passwords)
    commit()
    _seed_schedule()
    commit()
    return logins


DEMO_DEA = "FD1234563"


def _user(email: str) -> User:
    user = db.session.scalar(select(User).where(User.email == email))
    assert user is not None
    return user


def _seed_clinic(passwords: dict[str, str]) -> None:
    """A location with a safe, the drug catalog, a received shipment, doses, waste and a count."""
    from clinic.inventory import service as inventory
    from clinic.inventory.models import Drug
    from clinic.locations import service as locations
    from clinic.locations.models import Location
    from clinic.patients import service as patients

    if db.session.scalar(select(Location.id).where(Location.dea_registration == DEMO_DEA)) is not None:
        return
    admin, nurse = _user("admin@demo.clinic"), _user("nurse@demo.clinic")
    witness: dict[str, Any] = {
        "witness": inventory.WitnessSignature("nurse2@demo.clinic", passwords["nurse2@demo.clinic"]),
        "client_addr": "127.0.0.1",
    }
    location = locations.create_location(
        actor=admin,
        name="Lakeside Ketamine Clinic",
        address="400 Lake Shore Dr, Chicago IL 60611",
        dea_registration=DEMO_DEA,
        timezone="America/Chicago",
        phone="312-555-0100",
        jurisdiction={"state": "IL"},
    )
    safe = locations.create_storage_site(actor=admin, location_id=location.id, name="Main safe")
    locations.create_storage_site(actor=admin, location_id=location.id, name="Infusion room cabinet")
    catalog = [  # (name, NDC, form, unit, micrograms per unit, thousandths of a unit per container)
        ("Ketamine HCl 10 mg/mL, 20 mL vial", "42023-113-10", "vial", "mL", 10_000, 20_000),
        ("Ketamine HCl 50 mg/mL, 10 mL vial", "42023-114-10", "vial", "mL", 50_000, 10_000),
        ("Ketamine HCl 100 mg/mL, 5 mL vial", "42023-115-10", "vial", "mL", 100_000, 5_000),
        ("Spravato (esketamine) 28 mg nasal device", "50458-028-02", "nasal_device", "device", 28_000, 1_000),
    ]
    drugs: list[Drug] = []
    for name, ndc, form, unit, ug, milli in catalog:
        existing = db.session.scalar(select(Drug).where(Drug.ndc == ndc))
        drugs.append(
            existing
            or inventory.create_drug(
                actor=admin,
                name=name,
                ndc=ndc,
                schedule="CIII",
                form=form,
                unit=unit,
                ug_per_unit=ug,
                milliunits_per_container=milli,
            )
        )
    inventory.reconcile_count(
        actor=nurse, location_id=location.id, kind="initial", lines=[], business_hours="opening", **witness
    )
    supplier: dict[str, Any] = {
        "supplier_name": "Midwest Medical Supply",
        "supplier_address": "9 Depot Rd, Joliet IL",
        "supplier_dea_registration": "RW7654329",
    }
    today = today_at(location.timezone)  # the clinic's own day: UTC's is a day ahead in its evenings
    vials = inventory.receive_stock(
        actor=nurse,
        storage_site_id=safe.id,
        drug_id=drugs[1].id,
        lot_number="KX2291",
        expires_on=date(today.year + 2, 1, 31),
        container_count=6,
        invoice_number="INV-40211",
        **supplier,
    )
    inventory.receive_stock(
        actor=nurse,
        storage_site_id=safe.id,
        drug_id=drugs[3].id,
        lot_number="SP7781",
        expires_on=date(today.year + 1, 6, 30),
        container_count=9,
        invoice_number="INV-40212",
        **supplier,
    )
    people = [
        ("Jordan", "Rivera", date(1984, 5, 17)),
        ("Sam", "Okafor", date(1979, 11, 2)),
        ("Alex", "Nguyen", date(1991, 3, 28)),
    ]
    for i, (first, last, born) in enumerate(people):
        patient = patients.create_patient(
            actor=nurse,
            first_name=first,
            last_name=last,
            date_of_birth=born,
            address=f"{100 + i} Demo Ave, Chicago IL",
            timezone="America/Chicago",
        )
        vial = vials.containers[i]
        inventory.record_administration(
            actor=nurse, container_id=vial.id, patient_id=patient.id, quantity_ug=35_000 + 5_000 * i
        )
        inventory.record_waste(
            actor=nurse,
            container_id=vial.id,
            quantity_ug=vial.balance_ug,
            reason="unused remainder of a single-patient vial",
            patient_id=patient.id,
            **witness,
        )
    on_hand = inventory.balances(location.id)[0]
    inventory.reconcile_count(
        actor=nurse,
        location_id=location.id,
        kind="shift",
        **witness,
        lines=[{"container_id": c.id, "counted_ug": c.balance_ug, "exact": True} for c in on_hand],
    )


NO_FLAGS: dict[str, Any] = {
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


def _seed_schedule() -> None:
    """Chairs and patients at every stage: booked esketamine and IV courses, one awaiting a
    prescriber's review, one ineligible, one not yet screened."""
    from datetime import time, timedelta

    from clinic.locations.models import Location
    from clinic.patients import service as patients
    from clinic.scheduling import service as scheduling
    from clinic.scheduling.models import Chair

    location = db.session.scalar(select(Location).where(Location.dea_registration == DEMO_DEA))
    if location is None or db.session.scalar(select(Chair.id).where(Chair.location_id == location.id)):
        return
    admin, desk = _user("admin@demo.clinic"), _user("frontdesk@demo.clinic")
    nurse, prescriber = _user("nurse@demo.clinic"), _user("prescriber@demo.clinic")
    for name in ("Chair 1", "Chair 2", "Infusion bay"):
        scheduling.create_chair(actor=admin, location_id=location.id, name=name)
    # The clinic's own day: at 00:00-06:00 UTC, UTC's date is still tomorrow in Chicago, and a REMS
    # enrolment "today" by UTC's calendar is refused there as a date in the future.
    today = today_at(location.timezone)
    monday = today + timedelta(days=7 - today.weekday())  # next Monday, 1 to 7 days ahead
    cases: list[tuple[str, str, date, dict[str, Any] | None, bool, str | None, time | None]] = [
        # (first, last, born, screening answers, REMS, protocol, preferred time)
        ("Morgan", "Lee", date(1988, 2, 14), {}, True, "esketamine-rems", time(9, 0)),
        (
            "Riley",
            "Santos",
            date(1975, 8, 9),
            {"medications": ["clonazepam", "lamotrigine"]},
            False,
            "ketamine-iv-induction",
            time(13, 0),
        ),
        ("Taylor", "Brooks", date(1969, 4, 22), {"psychosis_or_mania": True}, False, None, None),
        ("Jamie", "Fox", date(1993, 12, 3), {"pregnant": True}, False, None, None),
        ("Avery", "Kim", date(2001, 7, 30), None, False, None, None),
    ]
    for first, last, born, answers, rems, protocol, at in cases:
        patient = patients.create_patient(
            actor=desk,
            first_name=first,
            last_name=last,
            date_of_birth=born,
            address="12 Demo St, Chicago IL",
            timezone="America/Chicago",
            email=f"{first.lower()}@example.org",
        )
        if answers is not None:
            patients.record_screening(
                actor=nurse, patient_id=patient.id, answers={**NO_FLAGS, **answers}, location_id=location.id
            )
        patients.record_weight(actor=nurse, patient_id=patient.id, weight_g=72_500)
        if rems:
            patients.enroll_in_rems(actor=nurse, patient_id=patient.id, enrolled_on=today)
        if protocol and at:
            scheduling.create_series(
                actor=desk,
                patient_id=patient.id,
                protocol=protocol,
                location_id=location.id,
                prescriber_id=prescriber.id,
                start_on=monday,
                preferred_time=at,
            )

from __future__ import annotations

from datetime import date

from clinic.audit import service as audit
from clinic.auth.models import User
from clinic.core.errors import NotFound, ValidationFailed
from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.patients.models import Patient


def create_patient(
    *,
    actor: User,
    first_name: str,
    last_name: str,
    date_of_birth: date,
    address: str,
    timezone: str,
    email: str | None = None,
    phone: str | None = None,
) -> Patient:
    if date_of_birth > utcnow().date():
        raise ValidationFailed(errors={"date_of_birth": ["Cannot be in the future."]})
    patient = Patient(
        first_name=first_name.strip(),
        last_name=last_name.strip(),
        date_of_birth=date_of_birth,
        address=address.strip(),
        timezone=timezone,
        email=email,
        phone=phone,
    )
    db.session.add(patient)
    db.session.flush()
    audit.record(actor=actor, tag="patients:patient:create", subject=("patient", patient.id), data={})
    return patient


def get_patient(patient_id: int) -> Patient:
    patient = db.session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("No such patient")
    return patient

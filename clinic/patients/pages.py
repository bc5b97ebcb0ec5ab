"""The patient picker (htmx search by name and date of birth, wherever a form needs a patient) and
the edit page with the record's history from the audit trail. Routes on the patients blueprint."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from marshmallow import ValidationError
from sqlalchemy import select

from clinic.audit.models import AuditEvent
from clinic.audit.tags import Tag
from clinic.auth import scope
from clinic.auth.policy import allowed, current_actor, require
from clinic.core import tx
from clinic.core.errors import DomainError
from clinic.core.fields import id_arg
from clinic.extensions import db
from clinic.inventory.queries import user_names
from clinic.patients import service
from clinic.patients.models import Patient
from clinic.patients.schemas import UpdatePatientSchema
from clinic.patients.views import TIMEZONES, bp
from clinic.web.forms import form_payload, refused

PICKER_LIMIT = 20
_EDITABLE = ("email", "phone", "sex", "emergency_contact", "ride_contact")


@dataclass(frozen=True)
class Choice:
    id: int
    label: str


def _choice(patient: Patient) -> Choice:
    return Choice(
        patient.id, f"{patient.last_name}, {patient.first_name} · born {patient.date_of_birth} · #{patient.id}"
    )


@bp.app_template_global("patient_choice")
def patient_choice(value: Any) -> Choice | None:
    """The patient a form already names (typed back after an error, or preselected by a link), if the
    reader may see patients."""
    from flask import g

    patient_id = id_arg(str(value)) if value not in (None, "") else None
    if patient_id is None or g.get("actor") is None or not allowed(g.actor, "patients.view"):
        return None
    if not scope.may_see_patient(g.actor, patient_id):  # SYS-12: None (no such patient) or False
        return None
    patient = db.session.get(Patient, patient_id)
    return _choice(patient) if patient else None


@bp.get("/picker")
@require("patients.view")
def picker() -> Any:
    """The matches for the picker: every word of the name in the first or last name, and the date of
    birth when given (a malformed one is ignored: the browser's date field sends none or a valid one)."""
    q = request.args.get("picker_q", "").strip()[:100]
    try:
        born = date.fromisoformat(request.args.get("picker_dob", ""))
    except ValueError:
        born = None
    records = (
        service.list_patients(actor=current_actor(), q=q, date_of_birth=born, limit=PICKER_LIMIT) if q or born else []
    )
    field = request.args.get("field", "patient_id")
    field = field if field.isidentifier() else "patient_id"
    matches = [_choice(r.patient) for r in records]
    # The patient already chosen stays chosen when the new matches still hold them.
    kept = id_arg(request.args.get(field, ""))
    return render_template(
        "patients/picker_results.html",
        field=field,
        label=request.args.get("label", "Patient")[:60],
        required=bool(request.args.get("required")),
        matches=matches,
        chosen=next((m for m in matches if m.id == kept), None),
    )


# --- editing a patient ---------------------------------------------------------------------------


def _edit_context(patient_id: int) -> dict[str, Any]:
    patient = service.get_patient(patient_id)
    history = list(
        db.session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.subject_type == "patient",
                AuditEvent.subject_id == patient_id,
                AuditEvent.tag.in_([Tag.patients_patient_create, Tag.patients_patient_update]),
            )
            .order_by(AuditEvent.id.desc())
        )
    )
    return {
        "patient": patient,
        "history": history,
        "names": user_names(e.actor_id for e in history),
        "timezones": TIMEZONES,
    }


def _as_form(patient: Patient) -> dict[str, Any]:
    keys = ("first_name", "last_name", "date_of_birth", "address", "timezone", "preferred_channel", *_EDITABLE)
    form = {k: "" if getattr(patient, k) is None else str(getattr(patient, k)) for k in keys}
    if patient.reminders_opt_out:
        form["reminders_opt_out"] = "on"
    return form


@bp.get("/<int:patient_id>/edit")
@require("patients.update")
def edit(patient_id: int) -> Any:
    context = _edit_context(patient_id)
    return render_template("patients/edit.html", form=_as_form(context["patient"]), errors={}, error=None, **context)


@bp.post("/<int:patient_id>/edit")
@require("patients.update")
def update(patient_id: int) -> Any:
    schema = UpdatePatientSchema()
    try:
        data = form_payload(schema, "UTC", request.form)
        for key in _EDITABLE:  # an emptied optional field clears it
            data.setdefault(key, None)
        args = schema.load(data)
        tx.attempt(lambda: service.update_patient(actor=current_actor(), patient_id=patient_id, changes=args))
    except (ValidationError, DomainError) as exc:
        return refused("patients/edit.html", exc, **_edit_context(patient_id))
    flash("Patient details saved.", "success")
    return redirect(url_for(".chart", patient_id=patient_id))

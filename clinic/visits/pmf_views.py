"""The monitoring form's staff page: the form as it will be submitted, its PDF, and the reference.

Thin, like the other pages: the form is read by clinic.visits.pmf, shown through the same HTML the
PDF is made from (clinic.visits.pmf_document.form_html), and the submission's reference is loaded
with the API's schema and recorded as the request's unit of work (clinic.core.tx: views never
commit); a refusal comes back on the same page with the reason beside the field.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError

from clinic.auth.policy import current_actor, require
from clinic.core import tx
from clinic.core.errors import DomainError
from clinic.visits import pmf, pmf_document
from clinic.visits.pmf_api import PmfSubmissionInSchema, pdf_response
from clinic.web.forms import form_payload, refused

bp = Blueprint("visits_pmf_ui", __name__, url_prefix="/visits")

TEMPLATE = "visits/pmf.html"


def _context(appointment_id: int) -> dict[str, Any]:
    form = pmf.build_form(appointment_id)
    return {"pmf": form, "form_html": pmf_document.form_html(form)}


@bp.get("/<int:appointment_id>/monitoring-form")
@require("visits.view")
def monitoring_form(appointment_id: int) -> Any:
    return render_template(TEMPLATE, form={}, errors={}, error=None, **_context(appointment_id))


@bp.get("/<int:appointment_id>/monitoring-form.pdf")
@require("visits.view")
def monitoring_form_pdf(appointment_id: int) -> Any:
    return pdf_response(pmf.build_form(appointment_id))


@bp.post("/<int:appointment_id>/monitoring-form/submission")
@require("visits.chart")
def record_submission(appointment_id: int) -> Any:
    schema = PmfSubmissionInSchema()
    try:
        args = schema.load(form_payload(schema, "UTC", request.form))
        visit = tx.attempt(
            lambda: pmf.record_submission(
                actor=current_actor(), appointment_id=appointment_id, reference=args["reference"]
            )
        )
    except (ValidationError, DomainError) as exc:
        return refused(TEMPLATE, exc, **_context(appointment_id))
    flash(f"Submission recorded: reference {visit.pmf_reference}.", "success")
    return redirect(url_for(".monitoring_form", appointment_id=appointment_id))

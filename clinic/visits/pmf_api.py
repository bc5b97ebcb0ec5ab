"""The REMS Patient Monitoring Form API (SPR-18/19): the form as JSON, as a PDF, and its submission."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response
from flask.views import MethodView
from marshmallow import validate

from clinic.auth.policy import current_actor, require
from clinic.core.fields import StrictSchema
from clinic.extensions import Blueprint
from clinic.visits import pmf, pmf_document
from clinic.visits.schemas import OutOfRangeSchema

blp = Blueprint(
    "visits_pmf_api", __name__, url_prefix="/api/v1", description="The SPRAVATO REMS Patient Monitoring Form"
)

F = ma.fields


class PmfReadingSchema(ma.Schema):
    vital_sign_id = F.Integer(required=True)
    taken_at = F.AwareDateTime(required=True)
    minutes_after_dose = F.Integer(allow_none=True)
    systolic = F.Integer(required=True)
    diastolic = F.Integer(required=True)
    bp = F.String(required=True)
    heart_rate = F.Integer(required=True)
    spo2 = F.Integer(allow_none=True)
    sedation = F.Integer(allow_none=True)
    dissociation = F.Integer(allow_none=True)
    checkpoints = F.List(F.Integer(), required=True)
    late_for = F.List(F.Integer(), required=True)
    late = F.Boolean(required=True)
    out_of_range = F.List(F.Nested(OutOfRangeSchema), required=True)


class PmfPatientPartSchema(ma.Schema):
    first_name = F.String(required=True)
    middle_initial = F.String(allow_none=True)
    last_name = F.String(required=True)
    date_of_birth = F.Date(required=True)
    sex = F.String(allow_none=True)
    first_treatment = F.Boolean(required=True)
    enrolled = F.Boolean(required=True)
    enrolled_on = F.Date(allow_none=True)


class PmfMedicationsSchema(ma.Schema):
    boxes = F.Dict(keys=F.String(), values=F.List(F.String()), required=True)
    other_sedating = F.List(F.String(), required=True)
    screened_at = F.AwareDateTime(allow_none=True)


class PmfProviderSchema(ma.Schema):
    user_id = F.Integer(required=True)
    name = F.String(required=True)
    phone = F.String(allow_none=True)
    email = F.String(required=True)


class PmfSettingSchema(ma.Schema):
    location_id = F.Integer(required=True)
    name = F.String(required=True)
    address = F.String(required=True)
    timezone = F.String(required=True)


class PmfDeviceSchema(ma.Schema):
    container_id = F.Integer(required=True)
    lot_number = F.String(required=True)
    administered_at = F.AwareDateTime(required=True)
    minutes_from_first = F.Integer(required=True)
    dose_mg = F.String(required=True)


class PmfSessionSchema(ma.Schema):
    treatment_date = F.Date(required=True)
    dose_mg = F.String(required=True)
    dose_choice = F.String(required=True, metadata={"enum": ["56", "84", "other"]})
    lot_numbers = F.List(F.String(), required=True)
    devices = F.List(F.Nested(PmfDeviceSchema), required=True)
    started_at = F.AwareDateTime(required=True)
    discharged_at = F.AwareDateTime(required=True)
    duration_minutes = F.Integer(required=True)
    duration_meets_minimum = F.Boolean(required=True)
    early_discharge_reason = F.String(allow_none=True)
    ready_minutes = F.Integer(allow_none=True)


class PmfVitalsPartSchema(ma.Schema):
    acceptable_before_dose = F.Boolean(allow_none=True)
    acceptable_before_completion = F.Boolean(allow_none=True)
    bp_before_dose = F.Nested(PmfReadingSchema, allow_none=True)
    bp_at_40 = F.Nested(PmfReadingSchema, allow_none=True)
    bp_before_completion = F.Nested(PmfReadingSchema, allow_none=True)
    spo2 = F.List(F.Nested(PmfReadingSchema), required=True)
    late = F.List(F.Nested(PmfReadingSchema), required=True)


class PmfAdverseEventSchema(ma.Schema):
    kind = F.String(required=True)
    label = F.String(required=True)
    occurred = F.Boolean(required=True)
    first_minutes = F.Integer(allow_none=True)
    worst = F.Integer(allow_none=True)
    resolved = F.Boolean(allow_none=True)
    detail = F.String(required=True)


class PmfFlagSchema(ma.Schema):
    code = F.String(required=True)
    message = F.String(required=True)


class PmfSubmissionSchema(ma.Schema):
    reference = F.String(allow_none=True)
    submitted_at = F.AwareDateTime(allow_none=True)
    submitted_by_id = F.Integer(allow_none=True)
    submitted_by_name = F.String(allow_none=True)


class MonitoringFormSchema(ma.Schema):
    appointment_id = F.Integer(required=True)
    visit_id = F.Integer(required=True)
    patient = F.Nested(PmfPatientPartSchema, required=True)
    medications = F.Nested(PmfMedicationsSchema, required=True)
    provider = F.Nested(PmfProviderSchema, required=True)
    setting = F.Nested(PmfSettingSchema, required=True)
    session = F.Nested(PmfSessionSchema, required=True)
    vitals = F.Nested(PmfVitalsPartSchema, required=True)
    adverse_events = F.List(F.Nested(PmfAdverseEventSchema), required=True)
    flags = F.List(F.Nested(PmfFlagSchema), required=True)
    due_on = F.Date(required=True)
    overdue = F.Boolean(required=True)
    submitted = F.Boolean(required=True)
    submission = F.Nested(PmfSubmissionSchema, required=True)
    generated_at = F.AwareDateTime(required=True)


class PmfSubmissionInSchema(StrictSchema):
    reference = F.String(
        required=True,
        validate=[
            validate.Length(min=1, max=pmf.REFERENCE_MAX),
            # something besides spaces, and no control characters (a line break included)
            validate.Regexp(
                r"^ *[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$",
                error="Give the reference on one line, without control characters.",
            ),
        ],
        metadata={"description": "The REMS confirmation number of an online submission, or the fax receipt's"},
    )


class PmfSubmissionOutSchema(ma.Schema):
    appointment_id = F.Integer(required=True)
    visit_id = F.Integer(required=True)
    reference = F.String(required=True)
    submitted_at = F.AwareDateTime(required=True)
    submitted_by_id = F.Integer(required=True)


@blp.route("/appointments/<int:appointment_id>/monitoring-form")
class MonitoringForm(MethodView):
    @require("visits.view")
    @blp.response(200, MonitoringFormSchema)
    def get(self, appointment_id: int) -> Any:
        return pmf.build_form(appointment_id)


@blp.route("/appointments/<int:appointment_id>/monitoring-form.pdf")
class MonitoringFormPdf(MethodView):
    @require("visits.view")
    @blp.response(200, {"type": "string", "format": "binary"}, content_type="application/pdf")
    def get(self, appointment_id: int) -> Any:
        return pdf_response(pmf.build_form(appointment_id))


@blp.route("/appointments/<int:appointment_id>/monitoring-form/submission")
class MonitoringFormSubmission(MethodView):
    @require("visits.chart")
    @blp.arguments(PmfSubmissionInSchema)
    @blp.response(201, PmfSubmissionOutSchema)
    def post(self, args: dict[str, Any], appointment_id: int) -> Any:
        visit = pmf.record_submission(actor=current_actor(), appointment_id=appointment_id, reference=args["reference"])
        return {
            "appointment_id": appointment_id,
            "visit_id": visit.id,
            "reference": visit.pmf_reference,
            "submitted_at": visit.pmf_submitted_at,
            "submitted_by_id": visit.pmf_submitted_by_id,
        }


def pdf_response(form: pmf.MonitoringForm) -> Response:
    """The PDF as a download; it carries PHI, so no cache keeps it."""
    return Response(
        pmf_document.render_pdf(form),
        mimetype="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{pmf_document.pdf_filename(form)}"',
            "Cache-Control": "no-store",
        },
    )

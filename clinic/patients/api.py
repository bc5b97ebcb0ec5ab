"""The patients API (CONTRACT.md /patients). Thin: parse, call one service function, dump.

Patient answers come in two views: clinicians and admins get ``PatientClinicalSchema``, the front
desk ``PatientSchema`` (no screening answers or flags, no weight). The OpenAPI document shows the
clinical one; the front-desk answer is the same shape with fewer fields.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from flask.views import MethodView

from clinic.auth.policy import allowed, current_actor, require
from clinic.extensions import Blueprint
from clinic.patients import service
from clinic.patients.schemas import (
    CreatePatientSchema,
    OverrideScreeningSchema,
    PatientClinicalSchema,
    PatientPageSchema,
    PatientQuerySchema,
    PatientSchema,
    RecordScreeningSchema,
    RecordWeightSchema,
    RemsEnrollmentOutSchema,
    RemsEnrollmentSchema,
    ReviewScreeningSchema,
    ScreeningListSchema,
    ScreeningSchema,
    UpdatePatientSchema,
    WeightListSchema,
    WeightSchema,
)

blp = Blueprint("patients_api", __name__, url_prefix="/api/v1", description="Patients")

VIEW_NOTE = "Front-desk users get the same shape without `latest_weight_kg` and with only the screening's decision."


def _patient_view(record: service.PatientRecord, status: int) -> Response:
    schema = PatientClinicalSchema() if allowed(current_actor(), "patients.clinical_view") else PatientSchema()
    resp = jsonify(schema.dump(record))
    resp.status_code = status
    return resp


@blp.route("/patients")
class Patients(MethodView):
    @require("patients.view")
    @blp.arguments(PatientQuerySchema, location="query")
    @blp.response(200, PatientPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        cursor = args.pop("cursor")
        items = service.list_patients(actor=current_actor(), after_id=int(cursor) if cursor else None, **args)
        return {"items": items, "next_cursor": str(items[-1].id) if len(items) == args["limit"] else None}

    @require("patients.create")
    @blp.arguments(CreatePatientSchema)
    @blp.response(201, PatientClinicalSchema, description=VIEW_NOTE)
    def post(self, args: dict[str, Any]) -> Response:
        patient = service.create_patient(actor=current_actor(), **args)
        return _patient_view(service.get_patient_record(patient.id), 201)


@blp.route("/patients/<int:patient_id>")
class PatientById(MethodView):
    @require("patients.view")
    @blp.response(200, PatientClinicalSchema, description=VIEW_NOTE)
    def get(self, patient_id: int) -> Response:
        return _patient_view(service.get_patient_record(patient_id), 200)

    @require("patients.update")
    @blp.arguments(UpdatePatientSchema)
    @blp.response(200, PatientClinicalSchema, description=VIEW_NOTE)
    def patch(self, args: dict[str, Any], patient_id: int) -> Response:
        service.update_patient(actor=current_actor(), patient_id=patient_id, changes=args)
        return _patient_view(service.get_patient_record(patient_id), 200)


@blp.route("/patients/<int:patient_id>/weights")
class PatientWeights(MethodView):
    @require("patients.clinical_view")
    @blp.response(200, WeightListSchema)
    def get(self, patient_id: int) -> dict[str, Any]:
        return {"items": service.list_weights(patient_id)}

    @require("patients.chart")
    @blp.arguments(RecordWeightSchema)
    @blp.response(201, WeightSchema)
    def post(self, args: dict[str, Any], patient_id: int) -> Any:
        return service.record_weight(actor=current_actor(), patient_id=patient_id, **args)


@blp.route("/patients/<int:patient_id>/rems-enrollment")
class PatientRemsEnrollment(MethodView):
    @require("patients.rems")
    @blp.arguments(RemsEnrollmentSchema)
    @blp.response(201, RemsEnrollmentOutSchema)
    def post(self, args: dict[str, Any], patient_id: int) -> Any:
        return service.enroll_in_rems(actor=current_actor(), patient_id=patient_id, **args)


@blp.route("/patients/<int:patient_id>/screenings")
class PatientScreenings(MethodView):
    @require("patients.clinical_view")
    @blp.response(200, ScreeningListSchema)
    def get(self, patient_id: int) -> dict[str, Any]:
        return {"items": service.list_screenings(patient_id)}

    @require("patients.chart")
    @blp.arguments(RecordScreeningSchema)
    @blp.response(201, ScreeningSchema)
    def post(self, args: dict[str, Any], patient_id: int) -> Any:
        return service.record_screening(actor=current_actor(), patient_id=patient_id, **args)


@blp.route("/patients/<int:patient_id>/screenings/<int:screening_id>")
class PatientScreeningById(MethodView):
    @require("patients.clinical_view")
    @blp.response(200, ScreeningSchema)
    def get(self, patient_id: int, screening_id: int) -> Any:
        return service.get_screening(patient_id, screening_id)


@blp.route("/patients/<int:patient_id>/screenings/<int:screening_id>/override")
class ScreeningOverride(MethodView):
    @require("patients.override")
    @blp.arguments(OverrideScreeningSchema)
    @blp.response(200, ScreeningSchema)
    def post(self, args: dict[str, Any], patient_id: int, screening_id: int) -> Any:
        return service.override_screening(
            actor=current_actor(), patient_id=patient_id, screening_id=screening_id, reason=args["reason"]
        )


@blp.route("/patients/<int:patient_id>/screenings/<int:screening_id>/review")
class ScreeningReview(MethodView):
    @require("patients.override")
    @blp.arguments(ReviewScreeningSchema)
    @blp.response(200, ScreeningSchema)
    def post(self, args: dict[str, Any], patient_id: int, screening_id: int) -> Any:
        return service.review_screening(actor=current_actor(), patient_id=patient_id, screening_id=screening_id, **args)

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from clinic.auth.policy import current_actor, require
from clinic.core.tx import commits
from clinic.patients import service
from clinic.patients.schemas import CreatePatientSchema, PatientSchema

blp = Blueprint("patients_api", __name__, url_prefix="/api/v1", description="Patients")


@blp.route("/patients")
class Patients(MethodView):
    @require("patients.create")
    @blp.arguments(CreatePatientSchema)
    @blp.response(201, PatientSchema)
    @commits
    def post(self, args: dict[str, Any]) -> Any:
        return service.create_patient(actor=current_actor(), **args)


@blp.route("/patients/<int:patient_id>")
class PatientById(MethodView):
    @require("patients.view")
    @blp.response(200, PatientSchema)
    def get(self, patient_id: int) -> Any:
        return service.get_patient(patient_id)

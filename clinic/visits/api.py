"""The dosing visit API (CONTRACT.md /appointments/{id}/..., /observations/active). Thin: parse, call, dump."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from clinic.auth.policy import client_addr, current_actor, require
from clinic.core.idempotency import idempotent
from clinic.extensions import Blueprint, db
from clinic.scheduling.models import Appointment
from clinic.visits import discharge as discharging
from clinic.visits import dosing, queries, service
from clinic.visits.models import Visit
from clinic.visits.schemas import (
    ArrangementsSchema,
    BoardQuerySchema,
    BoardSchema,
    CheckInSchema,
    DischargeSchema,
    DoseInSchema,
    DoseOutSchema,
    InfusionEndSchema,
    OrderSchema,
    ReasonSchema,
    RemainderSchema,
    VisitDetailSchema,
    VisitOutSchema,
    VitalsInSchema,
    VitalsSchema,
)

blp = Blueprint("visits_api", __name__, url_prefix="/api/v1", description="The dosing visit")

MISSED_FOLLOW_UP = (
    "The previous maintenance visit was missed: ask whether symptoms worsened, and if so consider returning "
    "to the previous frequency (SPR-23)."
)


def _appointment(visit: Visit) -> Appointment:
    appt = db.session.get(Appointment, visit.appointment_id)
    assert appt is not None
    return appt


def _out(visit: Visit, **extra: Any) -> dict[str, Any]:
    appt = _appointment(visit)
    return {"appointment_id": appt.id, "status": appt.status, "visit": visit, **extra}


@blp.route("/appointments/<int:appointment_id>/visit")
class VisitById(MethodView):
    @require("visits.view")
    @blp.response(200, VisitDetailSchema)
    def get(self, appointment_id: int) -> Any:
        return queries.visit_detail(appointment_id)


@blp.route("/appointments/<int:appointment_id>/check-in")
class CheckIn(MethodView):
    @require("visits.check_in")
    @blp.arguments(CheckInSchema)
    @blp.response(200, VisitOutSchema)
    def post(self, args: dict[str, Any], appointment_id: int) -> Any:
        visit = service.check_in(actor=current_actor(), appointment_id=appointment_id, **args)
        follow_up = MISSED_FOLLOW_UP if service.after_missed_maintenance(_appointment(visit)) else None
        return _out(visit, follow_up=follow_up)


@blp.route("/appointments/<int:appointment_id>/arrangements")
class Arrangements(MethodView):
    @require("visits.check_in")
    @blp.arguments(ArrangementsSchema)
    @blp.response(200, VisitOutSchema)
    def post(self, args: dict[str, Any], appointment_id: int) -> Any:
        return _out(service.update_arrangements(actor=current_actor(), appointment_id=appointment_id, **args))


@blp.route("/appointments/<int:appointment_id>/release-hold")
class ReleaseHold(MethodView):
    @require("visits.release_hold")
    @blp.arguments(ReasonSchema)
    @blp.response(200, VisitOutSchema)
    def post(self, args: dict[str, Any], appointment_id: int) -> Any:
        return _out(service.release_hold(actor=current_actor(), appointment_id=appointment_id, **args))


@blp.route("/appointments/<int:appointment_id>/vitals")
class Vitals(MethodView):
    @require("visits.chart")
    @blp.arguments(VitalsInSchema)
    @blp.response(201, VitalsSchema)
    def post(self, args: dict[str, Any], appointment_id: int) -> Any:
        return service.record_vitals(actor=current_actor(), appointment_id=appointment_id, **args)


@blp.route("/appointments/<int:appointment_id>/order")
class Order(MethodView):
    @require("visits.order")
    @blp.arguments(OrderSchema)
    @blp.response(200, VisitOutSchema)
    def post(self, args: dict[str, Any], appointment_id: int) -> Any:
        return _out(service.order_dose(actor=current_actor(), appointment_id=appointment_id, **args))


@blp.route("/appointments/<int:appointment_id>/dose")
class Dose(MethodView):
    @require("visits.dose")
    @idempotent
    @blp.arguments(DoseInSchema)
    @blp.response(201, DoseOutSchema)
    def post(self, args: dict[str, Any], appointment_id: int) -> Any:
        result = dosing.record_dose(
            actor=current_actor(),
            appointment_id=appointment_id,
            req=dosing.DoseRequest(**args),
            client_addr=client_addr(),
        )
        administrations = [e for e in result.entries if e.kind == "administration"]
        waste = next((e for e in result.entries if e.kind == "waste"), None)
        detail = queries.visit_detail(appointment_id)
        return {
            "administration": administrations[0],
            "administrations": administrations,
            "waste": waste,
            "status": detail["status"],
            "observation": detail["timers"],
            "visit": result.visit,
        }


@blp.route("/appointments/<int:appointment_id>/infusion-end")
class InfusionEnd(MethodView):
    @require("visits.chart")
    @blp.arguments(InfusionEndSchema)
    @blp.response(200, VisitOutSchema)
    def post(self, args: dict[str, Any], appointment_id: int) -> Any:
        return _out(dosing.end_infusion(actor=current_actor(), appointment_id=appointment_id, **args))


@blp.route("/appointments/<int:appointment_id>/vial-remainder")
class VialRemainder(MethodView):
    @require("visits.dose")
    @idempotent
    @blp.arguments(RemainderSchema)
    @blp.response(200, VisitOutSchema)
    def post(self, args: dict[str, Any], appointment_id: int) -> Any:
        item = dosing.resolve_remainder(
            actor=current_actor(), appointment_id=appointment_id, client_addr=client_addr(), **args
        )
        visit = db.session.get(Visit, item.visit_id)
        assert visit is not None
        db.session.expire(visit, ["doses"])
        return _out(visit)


@blp.route("/appointments/<int:appointment_id>/discharge")
class Discharge(MethodView):
    @require("visits.discharge")
    @blp.arguments(DischargeSchema)
    @blp.response(200, VisitOutSchema)
    def post(self, args: dict[str, Any], appointment_id: int) -> Any:
        visit = discharging.discharge(actor=current_actor(), appointment_id=appointment_id, **args)
        return _out(visit, instructions=(visit.discharge_checks or {}).get("instructions"))


@blp.route("/observations/active")
class ActiveObservations(MethodView):
    @require("visits.view")
    @blp.arguments(BoardQuerySchema, location="query")
    @blp.response(200, BoardSchema)
    def get(self, args: dict[str, Any]) -> Any:
        return queries.observation_board(args["location_id"])

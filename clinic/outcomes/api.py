"""The outcome measures API. Thin: parse, call one service function, dump."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from clinic.auth.policy import current_actor, require
from clinic.extensions import Blueprint
from clinic.outcomes import service
from clinic.outcomes.schemas import (
    AcknowledgeSchema,
    OutcomeScoreSchema,
    RecordScoreSchema,
    SafetyAlertListSchema,
    SafetyAlertQuerySchema,
    TrendQuerySchema,
    TrendSchema,
    trend_body,
)

blp = Blueprint("outcomes_api", __name__, url_prefix="/api/v1", description="Outcome measures (PHQ-9, GAD-7)")


@blp.route("/patients/<int:patient_id>/outcomes")
class PatientOutcomes(MethodView):
    @require("outcomes.record")
    @blp.arguments(RecordScoreSchema)
    @blp.response(201, OutcomeScoreSchema)
    def post(self, args: dict[str, Any], patient_id: int) -> Any:
        """Record a PHQ-9 or GAD-7; a PHQ-9 with item 9 above 0 raises the same-day safety alert."""
        return service.record_score(actor=current_actor(), patient_id=patient_id, **args)


@blp.route("/series/<int:series_id>/outcomes")
class SeriesOutcomes(MethodView):
    @require("outcomes.view")
    @blp.arguments(TrendQuerySchema, location="query")
    @blp.response(200, TrendSchema)
    def get(self, args: dict[str, Any], series_id: int) -> dict[str, Any]:
        """The course's trend for one instrument: baseline, points, response and remission."""
        return trend_body(series_id, service.trend(series_id, args["instrument"]))


@blp.route("/outcomes/safety-alerts")
class SafetyAlerts(MethodView):
    @require("outcomes.view")
    @blp.arguments(SafetyAlertQuerySchema, location="query")
    @blp.response(200, SafetyAlertListSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """The location's unacknowledged PHQ-9 item-9 alerts, oldest first."""
        return {"items": service.open_safety_alerts(args["location_id"])}


@blp.route("/outcomes/<int:score_id>/acknowledge")
class AcknowledgeSafetyAlert(MethodView):
    @require("outcomes.acknowledge")
    @blp.arguments(AcknowledgeSchema)
    @blp.response(200, OutcomeScoreSchema)
    def post(self, args: dict[str, Any], score_id: int) -> Any:
        """A prescriber acknowledges a score's safety alert, with a note of what was done."""
        return service.acknowledge_safety_alert(actor=current_actor(), score_id=score_id, note=args["note"])

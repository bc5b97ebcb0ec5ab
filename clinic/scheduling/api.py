from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import url_for
from flask.views import MethodView

from clinic.auth.policy import current_actor, require
from clinic.core.errors import ValidationFailed
from clinic.extensions import Blueprint
from clinic.locations.schemas import HoursSchema
from clinic.scheduling import calendar, protocol_versions, service
from clinic.scheduling.schemas import (
    AbsentResultSchema,
    AbsentSchema,
    AppointmentListSchema,
    AppointmentSchema,
    BoosterIntervalSchema,
    CalendarFeedSchema,
    CalendarQuerySchema,
    CancelSchema,
    ChairSchema,
    ClosureSchema,
    CreateChairSchema,
    CreateClosureSchema,
    CreateProtocolSchema,
    CreateSeriesSchema,
    PrescriberHoursSchema,
    ProtocolListSchema,
    ProtocolSchema,
    RescheduleSchema,
    SeriesSchema,
)

blp = Blueprint("scheduling_api", __name__, url_prefix="/api/v1", description="Treatment courses")


@blp.route("/protocols")
class Protocols(MethodView):
    @require("scheduling.view")
    @blp.response(200, ProtocolListSchema)
    def get(self) -> dict[str, Any]:
        return {"items": service.list_protocols()}

    @require("protocols.manage")
    @blp.arguments(CreateProtocolSchema)
    @blp.response(201, ProtocolSchema)
    def post(self, args: dict[str, Any]) -> Any:
        """A new version of a protocol (the first for a new code); booked courses keep theirs."""
        return protocol_versions.create_protocol(actor=current_actor(), **args)


@blp.route("/locations/<int:location_id>/chairs")
class Chairs(MethodView):
    @require("locations.manage")
    @blp.arguments(CreateChairSchema)
    @blp.response(201, ChairSchema)
    def post(self, args: dict[str, Any], location_id: int) -> Any:
        return service.create_chair(actor=current_actor(), location_id=location_id, name=args["name"])


@blp.route("/locations/<int:location_id>/closures")
class Closures(MethodView):
    @require("locations.manage")
    @blp.arguments(CreateClosureSchema)
    @blp.response(201, ClosureSchema)
    def post(self, args: dict[str, Any], location_id: int) -> Any:
        return service.create_closure(actor=current_actor(), location_id=location_id, **args)


@blp.route("/series")
class SeriesCollection(MethodView):
    @require("scheduling.book")
    @blp.arguments(CreateSeriesSchema)
    @blp.response(201, SeriesSchema)
    def post(self, args: dict[str, Any]) -> Any:
        return service.create_series(actor=current_actor(), **args)


@blp.route("/series/<int:series_id>")
class SeriesById(MethodView):
    @require("scheduling.view")
    @blp.response(200, SeriesSchema)
    def get(self, series_id: int) -> Any:
        return service.get_series(series_id)


@blp.route("/series/<int:series_id>/booster-interval")
class SeriesBoosterInterval(MethodView):
    @require("patients.override")
    @blp.arguments(BoosterIntervalSchema)
    @blp.response(200, SeriesSchema)
    def put(self, args: dict[str, Any], series_id: int) -> Any:
        return service.set_booster_interval(actor=current_actor(), series_id=series_id, **args)


@blp.route("/appointments")
class Appointments(MethodView):
    @require("scheduling.view")
    @blp.arguments(CalendarQuerySchema, location="query")
    @blp.response(200, AppointmentListSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        if not timedelta(0) < args["until"] - args["since"] <= timedelta(days=62):
            raise ValidationFailed(errors={"until": ["Ask for at most 62 days after since."]})
        return {"items": service.list_appointments(**args)}


@blp.route("/appointments/<int:appointment_id>/cancel")
class CancelAppointment(MethodView):
    @require("scheduling.book")
    @blp.arguments(CancelSchema)
    @blp.response(200, AppointmentSchema)
    def post(self, args: dict[str, Any], appointment_id: int) -> Any:
        return service.cancel_appointment(actor=current_actor(), appointment_id=appointment_id, **args)


@blp.route("/appointments/<int:appointment_id>/reschedule")
class RescheduleAppointment(MethodView):
    @require("scheduling.book")
    @blp.arguments(RescheduleSchema)
    @blp.response(200, AppointmentSchema)
    def post(self, args: dict[str, Any], appointment_id: int) -> Any:
        return service.reschedule_appointment(actor=current_actor(), appointment_id=appointment_id, **args)


@blp.route("/appointments/<int:appointment_id>/no-show")
class NoShow(MethodView):
    @require("scheduling.book")
    @blp.arguments(AbsentSchema)
    @blp.response(200, AbsentResultSchema)
    def post(self, args: dict[str, Any], appointment_id: int) -> Any:
        return service.mark_absent(actor=current_actor(), appointment_id=appointment_id, status="no_show", **args)


@blp.route("/appointments/<int:appointment_id>/missed")
class Missed(MethodView):
    @require("scheduling.book")
    @blp.arguments(AbsentSchema)
    @blp.response(200, AbsentResultSchema)
    def post(self, args: dict[str, Any], appointment_id: int) -> Any:
        return service.mark_absent(actor=current_actor(), appointment_id=appointment_id, status="missed", **args)


@blp.route("/patients/<int:patient_id>/calendar-feed")
class PatientCalendarFeed(MethodView):
    @require("scheduling.book")
    @blp.response(201, CalendarFeedSchema)
    def post(self, patient_id: int) -> dict[str, Any]:
        feed, raw = calendar.create_feed(actor=current_actor(), patient_id=patient_id)
        return {"id": feed.id, "url": url_for("scheduling_ui.calendar_feed", token=raw, _external=True)}


@blp.route("/users/me/calendar-feed")
class MyCalendarFeed(MethodView):
    @require("scheduling.view")  # a feed of the visits one works: an auditor works none
    @blp.response(201, CalendarFeedSchema)
    def post(self) -> dict[str, Any]:
        actor = current_actor()
        feed, raw = calendar.create_feed(actor=actor, user_id=actor.id)
        return {"id": feed.id, "url": url_for("scheduling_ui.calendar_feed", token=raw, _external=True)}


@blp.route("/calendar-feeds/<int:feed_id>")
class CalendarFeedById(MethodView):
    @require("scheduling.book")
    @blp.response(204)
    def delete(self, feed_id: int) -> None:
        calendar.revoke_feed(actor=current_actor(), feed_id=feed_id)


@blp.route("/locations/<int:location_id>/prescribers/<int:user_id>/hours")
class PrescriberOnSiteHours(MethodView):
    @require("locations.manage")
    @blp.arguments(HoursSchema)
    @blp.response(200, PrescriberHoursSchema)
    def put(self, args: dict[str, Any], location_id: int, user_id: int) -> Any:
        return service.set_prescriber_hours(actor=current_actor(), location_id=location_id, user_id=user_id, hours=args)

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from clinic.auth import scope
from clinic.auth.policy import current_actor, require
from clinic.extensions import Blueprint
from clinic.reminders import service
from clinic.reminders.schemas import (
    CancelReminderSchema,
    NoticeListSchema,
    OptOutsSchema,
    ReminderListSchema,
    ReminderQuerySchema,
    ReminderSchema,
    ReminderSettingsSchema,
)

blp = Blueprint("reminders_api", __name__, url_prefix="/api/v1", description="Reminders")


@blp.route("/reminders")
class Reminders(MethodView):
    @require("reminders.view")
    @blp.arguments(ReminderQuerySchema, location="query")
    @blp.response(200, ReminderListSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"items": service.list_reminders(location_ids=scope.member_location_ids(current_actor()), **args)}


@blp.route("/reminders/<int:reminder_id>/retry")
class RetryReminder(MethodView):
    @require("reminders.manage")
    @blp.response(200, ReminderSchema)
    def post(self, reminder_id: int) -> Any:
        return service.retry(actor=current_actor(), reminder_id=reminder_id)


@blp.route("/reminders/<int:reminder_id>/cancel")
class CancelReminder(MethodView):
    @require("reminders.manage")
    @blp.arguments(CancelReminderSchema)
    @blp.response(200, ReminderSchema)
    def post(self, args: dict[str, Any], reminder_id: int) -> Any:
        return service.cancel(actor=current_actor(), reminder_id=reminder_id, reason=args["reason"])


@blp.route("/locations/<int:location_id>/reminder-settings")
class LocationReminderSettings(MethodView):
    @require("reminders.view")
    @blp.response(200, ReminderSettingsSchema)
    def get(self, location_id: int) -> dict[str, Any]:
        return service.get_settings(location_id)

    @require("reminders.configure")
    @blp.arguments(ReminderSettingsSchema)
    @blp.response(200, ReminderSettingsSchema)
    def put(self, args: dict[str, Any], location_id: int) -> dict[str, Any]:
        return service.update_settings(actor=current_actor(), location_id=location_id, values=args)


@blp.route("/patients/<int:patient_id>/reminder-opt-outs")
class PatientOptOuts(MethodView):
    @require("reminders.view")
    @blp.response(200, OptOutsSchema)
    def get(self, patient_id: int) -> dict[str, Any]:
        return {"opted_out_channels": service.opt_outs(patient_id)}

    @require("patients.update")
    @blp.arguments(OptOutsSchema)
    @blp.response(200, OptOutsSchema)
    def put(self, args: dict[str, Any], patient_id: int) -> dict[str, Any]:
        channels = service.set_opt_outs(
            actor=current_actor(), patient_id=patient_id, channels=args["opted_out_channels"]
        )
        return {"opted_out_channels": channels}


@blp.route("/notices")
class Notices(MethodView):
    @require("notices.view")
    @blp.response(200, NoticeListSchema)
    def get(self) -> dict[str, Any]:
        actor = current_actor()
        rows = service.inbox(actor)
        items = [
            {
                "id": n.id,
                "kind": n.kind,
                "title": n.title,
                "body": n.body,
                "link": n.link,
                "created_at": n.created_at,
                "read": read_at is not None,
            }
            for n, read_at in rows
        ]
        return {"unread": service.unread_count(actor), "items": items}


@blp.route("/notices/<int:notice_id>/read")
class ReadNotice(MethodView):
    @require("notices.view")
    @blp.response(204)
    def post(self, notice_id: int) -> None:
        service.mark_read(actor=current_actor(), notice_id=notice_id)

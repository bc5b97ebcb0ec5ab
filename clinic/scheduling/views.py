"""Scheduling pages: the public calendar feed, the booking wizard, a course and the calendars."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import marshmallow as ma
from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError

from clinic.auth import scope
from clinic.auth.policy import current_actor, public, require
from clinic.core import tx
from clinic.core.errors import DomainError
from clinic.core.fields import id_arg
from clinic.core.time import on_the_calendar
from clinic.locations.models import Location
from clinic.scheduling import calendar, protocol_versions, queries, service
from clinic.scheduling.schemas import (
    AbsentSchema,
    CancelSchema,
    CreateProtocolSchema,
    CreateSeriesSchema,
    RescheduleSchema,
)
from clinic.web.forms import form_payload, refused

bp = Blueprint("scheduling_ui", __name__, template_folder="templates")


@bp.route("/calendar/<token>.ics")
@public
def calendar_feed(token: str) -> Any:
    """The token in the URL is the credential; a revoked or unknown one is a 404."""
    return Response(calendar.render(token), mimetype="text/calendar", headers={"Cache-Control": "private, max-age=300"})


# --- staff pages: the booking wizard, a course, the calendars ------------------------------------
#
# Thin, as the inventory pages are: a form is loaded with the API's own input schema, one service
# (or read-only query) function runs, and the page redirects (post/redirect/get) or comes back with
# the errors and what was typed. Times are shown in the location's time zone.

#: keys of a refused booking's errors that a page does not list field by field (flag texts stay
#: on the clinical pages; clashes are shown by the preview)
_NOT_LISTED = frozenset({"flags", "conflicts"})


@bp.app_template_filter("in_zone")
def in_zone(at: datetime | None, tz: str, fmt: str = "%a %Y-%m-%d %H:%M") -> str:
    return "—" if at is None else at.astimezone(ZoneInfo(tz)).strftime(fmt)


@bp.app_template_filter("fromiso")
def fromiso(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _refused(template: str, exc: ValidationError | DomainError, **context: Any) -> Any:
    return refused(template, exc, unlisted=_NOT_LISTED, **context)


def _wizard_choices() -> dict[str, Any]:
    # The patient comes from the picker (patients/_picker.html), which offers the one the form names.
    return {
        "protocols": service.list_protocols(),
        "locations": scope.my_locations(current_actor()),
        "prescribers": queries.prescribers(scope.member_location_ids(current_actor())),
    }


@bp.get("/schedule/book")
@require("scheduling.book")
def book_form() -> Any:
    return render_template(
        "scheduling/book.html", form=request.args.to_dict(), errors={}, error=None, **_wizard_choices()
    )


@bp.post("/schedule/book/preview")
@require("scheduling.book")
def book_preview() -> Any:
    schema = CreateSeriesSchema()
    try:
        args = schema.load(form_payload(schema, "UTC", request.form))
        preview = queries.preview_series(**args)
    except (ValidationError, DomainError) as exc:
        return _refused("scheduling/book.html", exc, **_wizard_choices())
    form = {k: v for k, v in request.form.items() if k != "csrf_token"}
    return render_template("scheduling/preview.html", preview=preview, form=form, error=None)


@bp.post("/schedule/book")
@require("scheduling.book")
def book() -> Any:
    schema = CreateSeriesSchema()
    try:
        args = schema.load(form_payload(schema, "UTC", request.form))
        series = tx.attempt(lambda: service.create_series(actor=current_actor(), **args))
    except (ValidationError, DomainError) as exc:
        return _refused("scheduling/book.html", exc, **_wizard_choices())
    flash(f"Course booked: {len(series.appointments)} visits.", "success")
    return redirect(url_for(".series", series_id=series.id))


@bp.get("/schedule/series/<int:series_id>")
@require("scheduling.view")
def series(series_id: int) -> Any:
    return render_template(
        "scheduling/series.html", page=queries.series_page(series_id), form={}, errors={}, error=None
    )


def _change(series_id: int, appointment_id: int, schema: ma.Schema, action: Callable[..., Any], done: str) -> Any:
    service.get_appointment(appointment_id, series_id=series_id)
    page = queries.series_page(series_id)
    try:
        args = schema.load(form_payload(schema, page.location.timezone, request.form))
        result = tx.attempt(lambda: action(actor=current_actor(), appointment_id=appointment_id, **args))
    except (ValidationError, DomainError) as exc:
        return _refused("scheduling/series.html", exc, page=queries.series_page(series_id), failed_id=appointment_id)
    follow_up = result.get("follow_up") if isinstance(result, dict) else None
    flash(f"Visit {done}." + (f" Follow-up: {follow_up}." if follow_up else ""), "success")
    return redirect(url_for(".series", series_id=series_id))


@bp.post("/schedule/series/<int:series_id>/appointments/<int:appointment_id>/cancel")
@require("scheduling.book")
def cancel(series_id: int, appointment_id: int) -> Any:
    return _change(series_id, appointment_id, CancelSchema(), service.cancel_appointment, "cancelled")


@bp.post("/schedule/series/<int:series_id>/appointments/<int:appointment_id>/reschedule")
@require("scheduling.book")
def reschedule(series_id: int, appointment_id: int) -> Any:
    return _change(series_id, appointment_id, RescheduleSchema(), service.reschedule_appointment, "rescheduled")


@bp.post("/schedule/series/<int:series_id>/appointments/<int:appointment_id>/no-show")
@require("scheduling.book")
def no_show(series_id: int, appointment_id: int) -> Any:
    return _change(
        series_id,
        appointment_id,
        AbsentSchema(),
        functools.partial(service.mark_absent, status="no_show"),
        "marked a no-show",
    )


@bp.post("/schedule/series/<int:series_id>/appointments/<int:appointment_id>/missed")
@require("scheduling.book")
def missed(series_id: int, appointment_id: int) -> Any:
    return _change(
        series_id,
        appointment_id,
        AbsentSchema(),
        functools.partial(service.mark_absent, status="missed"),
        "marked missed",
    )


def _where() -> tuple[Location | None, list[Location], date | None]:
    """The location asked for (else the first), all locations, and the asked date (else today there)."""
    locations = scope.my_locations(current_actor())
    wanted = id_arg(request.args.get("location_id"))
    location = next((loc for loc in locations if loc.id == wanted), locations[0] if locations else None)
    day: date | None
    try:
        day = date.fromisoformat(request.args.get("date", ""))
    except ValueError:
        day = queries.today_at(location) if location else None
    return location, locations, day


@bp.get("/schedule/day")
@require("scheduling.view")
def day() -> Any:
    location, locations, on = _where()
    with on_the_calendar("date"):  # the page and its links to the next day
        view = queries.day_view(location, on) if location and on else None
        return render_template("scheduling/day.html", view=view, locations=locations, timedelta=timedelta)


@bp.get("/schedule/week")
@require("scheduling.view")
def week() -> Any:
    location, locations, on = _where()
    with on_the_calendar("date"):  # the page and its links to the next week
        view = queries.week_view(location, on) if location and on else None
        return render_template("scheduling/week.html", view=view, locations=locations, timedelta=timedelta)


# --- protocols as data ---------------------------------------------------------------------------


def _protocols_page(**context: Any) -> Any:
    return render_template("scheduling/protocols.html", protocols=service.list_protocols(), **context)


@bp.get("/protocols")
@require("scheduling.view")
def protocols() -> Any:
    return _protocols_page(form={}, errors={}, error=None)


@bp.post("/protocols")
@require("protocols.manage")
def create_protocol() -> Any:
    """The form's rules are the API's JSON: one schema and one service for both."""
    try:
        try:
            rules = json.loads(request.form.get("rules") or "")
        except ValueError:
            raise ValidationError({"rules": ["Not valid JSON."]}) from None
        args = CreateProtocolSchema().load(
            {"code": request.form.get("code", ""), "name": request.form.get("name", ""), "rules": rules}
        )
        saved = tx.attempt(lambda: protocol_versions.create_protocol(actor=current_actor(), **args))
    except (ValidationError, DomainError) as exc:
        return refused("scheduling/protocols.html", exc, protocols=service.list_protocols())
    flash(f"Protocol {saved.code} version {saved.version} saved.", "success")
    return redirect(url_for(".protocols"))

"""Setting up a location in one place: details and DEA number, jurisdiction profile, storage sites,
chairs, weekly hours, closures (with the year's public holidays), prescribers' hours and REMS
certification.

Each form is loaded with the API's own input schema and runs the API's service function under the
same permission (``locations.manage``), as the request's one unit of work; a refused form comes
back on the same page with its errors beside its fields (only that section shows them) and nothing
written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import marshmallow as ma
from flask import Blueprint, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError, validate
from sqlalchemy import select

from clinic.auth.policy import current_actor, require
from clinic.core import tx
from clinic.core.errors import DomainError
from clinic.core.fields import StrictSchema, id_arg
from clinic.core.time import today_at
from clinic.extensions import db
from clinic.locations import service
from clinic.locations.calendar import SUBDIVISIONS
from clinic.locations.profiles import PRESETS
from clinic.locations.schemas import (
    DAYS,
    CreateLocationSchema,
    CreateStorageSiteSchema,
    HoursSchema,
    JurisdictionSchema,
    UpdateLocationSchema,
)
from clinic.scheduling import closures, queries
from clinic.scheduling import service as scheduling
from clinic.scheduling.models import PrescriberHours
from clinic.scheduling.schemas import CreateChairSchema, CreateClosureSchema
from clinic.web.forms import form_payload, refused

bp = Blueprint("locations_ui", __name__, url_prefix="/admin/locations", template_folder="templates")

DAY_NAMES = dict(zip(DAYS, ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"), strict=True))
#: the profile fields the page edits (the screening levels stay with the API)
PROFILE_FIELDS = (
    "state",
    "inventory_interval_months",
    "inventory_interval_days",
    "count_mode",
    "waste_witness_required",
    "witness_must_be_licensed",
    "board_loss_notice_days",
    "board_theft_notice_days",
    "retention_years",
)


class HolidayYearSchema(StrictSchema):
    year = ma.fields.Integer(
        required=True, strict=True, validate=validate.Range(min=closures.FIRST_YEAR, max=closures.LAST_YEAR)
    )


def _setup_context(location_id: int) -> dict[str, Any]:
    location = service.get_location(location_id)
    return {
        "location": location,
        "sites": service.list_storage_sites(location_id),
        "chairs": queries.chair_names(location_id),
        "closures": closures.list_closures(location_id),
        "prescribers": queries.prescribers([location_id]),
        "rosters": _rosters(location_id),
        "states": sorted(SUBDIVISIONS),
        "presets": PRESETS,
        "days": DAY_NAMES,
        "this_year": today_at(location.timezone).year,
        "profile": {k: "" if v is None else v for k, v in location.rule_set().items()},
    }


def _rosters(location_id: int) -> dict[int, dict[str, Any]]:
    rows = db.session.scalars(select(PrescriberHours).where(PrescriberHours.location_id == location_id))
    return {row.user_id: row.hours for row in rows}


def _setup_page(location_id: int, *, section: str | None = None, status: int = 200, **context: Any) -> Any:
    context.setdefault("errors", {})
    context.setdefault("error", None)
    context.setdefault("form", {})
    return render_template("locations/setup.html", section=section, **_setup_context(location_id), **context), status


def _hours_payload(source: Mapping[str, str]) -> dict[str, Any]:
    """Two time fields a day; both empty is a closed day, one alone is left for the schema to refuse."""
    hours: dict[str, Any] = {}
    for day in DAYS:
        opens, closes = source.get(f"{day}_open", ""), source.get(f"{day}_close", "")
        hours[day] = None if not opens and not closes else [v for v in (opens, closes) if v]
    return hours


def _day_errors(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    """``mon.0`` -> ``mon``: the page shows a day's errors once, beside its row."""
    out: dict[str, list[str]] = {}
    for key, messages in errors.items():
        out.setdefault(key.split(".")[0], []).extend(messages)
    return out


def _submit(location_id: int, section: str, load: Callable[[], Any], run: Callable[[Any], Any], done: str) -> Any:
    try:
        args = load()
        tx.attempt(lambda: run(args))
    except (ValidationError, DomainError) as exc:
        return refused(
            "locations/setup.html",
            exc,
            rename=_day_errors if section in ("hours", "prescriber_hours") else None,
            section=section,
            **_setup_context(location_id),
        )
    flash(done, "success")
    return redirect(url_for(".setup", location_id=location_id, _anchor=section.replace("_", "-")))


# --- the list and a new location -----------------------------------------------------------------


@bp.get("/")
@require("locations.manage")
def index() -> Any:
    return render_template("locations/index.html", locations=service.list_locations(), form={}, errors={}, error=None)


@bp.post("/")
@require("locations.manage")
def create() -> Any:
    schema = CreateLocationSchema()
    try:
        args = schema.load(form_payload(schema, "UTC", request.form))
        location = tx.attempt(lambda: service.create_location(actor=current_actor(), **args))
    except (ValidationError, DomainError) as exc:
        return refused("locations/index.html", exc, locations=service.list_locations())
    flash(f"Location {location.name} created. Set up its profile, safe, chairs and hours below.", "success")
    return redirect(url_for(".setup", location_id=location.id))


# --- one location's setup ----------------------------------------------------------------------


@bp.get("/<int:location_id>")
@require("locations.manage")
def setup(location_id: int) -> Any:
    return _setup_page(location_id)


@bp.post("/<int:location_id>/details")
@require("locations.manage")
def details(location_id: int) -> Any:
    schema = UpdateLocationSchema()

    def load() -> dict[str, Any]:
        data = form_payload(schema, "UTC", request.form)
        data.setdefault("phone", None)  # an emptied field clears it
        data.setdefault("rems_certified_until", None)
        return schema.load(data)

    return _submit(
        location_id,
        "details",
        load,
        lambda args: service.update_location(actor=current_actor(), location_id=location_id, changes=args),
        "Details saved.",
    )


@bp.post("/<int:location_id>/profile")
@require("locations.manage")
def profile(location_id: int) -> Any:
    schema = JurisdictionSchema()

    def load() -> dict[str, Any]:
        data = form_payload(schema, "UTC", request.form)
        for name in PROFILE_FIELDS:  # an emptied number or state is "none", not "unchanged"
            if name not in data and not isinstance(schema.fields[name], ma.fields.Boolean):
                data[name] = None
        if data.get("count_mode") is None:
            data.pop("count_mode")
        if data.get("retention_years") is None:
            data.pop("retention_years")
        if request.form.get("apply_preset"):  # the state's preset, nothing typed over it
            data = {"state": data.get("state")}
        return schema.load(data)

    return _submit(
        location_id,
        "profile",
        load,
        lambda args: service.update_location(
            actor=current_actor(), location_id=location_id, changes={"jurisdiction": args}
        ),
        "Jurisdiction profile saved.",
    )


@bp.post("/<int:location_id>/storage-sites")
@require("locations.manage")
def add_storage_site(location_id: int) -> Any:
    schema = CreateStorageSiteSchema()
    return _submit(
        location_id,
        "sites",
        lambda: schema.load(form_payload(schema, "UTC", request.form)),
        lambda args: service.create_storage_site(actor=current_actor(), location_id=location_id, name=args["name"]),
        f"Storage site {request.form.get('name', '').strip()} added.",
    )


@bp.post("/<int:location_id>/chairs")
@require("locations.manage")
def add_chair(location_id: int) -> Any:
    schema = CreateChairSchema()
    return _submit(
        location_id,
        "chairs",
        lambda: schema.load(form_payload(schema, "UTC", request.form)),
        lambda args: scheduling.create_chair(actor=current_actor(), location_id=location_id, name=args["name"]),
        f"Chair {request.form.get('name', '').strip()} added.",
    )


@bp.post("/<int:location_id>/hours")
@require("locations.manage")
def hours(location_id: int) -> Any:
    return _submit(
        location_id,
        "hours",
        lambda: HoursSchema().load(_hours_payload(request.form)),
        lambda args: service.set_hours(actor=current_actor(), location_id=location_id, hours=args),
        "Opening hours saved.",
    )


@bp.post("/<int:location_id>/closures")
@require("locations.manage")
def add_closure(location_id: int) -> Any:
    schema = CreateClosureSchema()
    return _submit(
        location_id,
        "closures",
        lambda: schema.load(form_payload(schema, "UTC", request.form)),
        lambda args: scheduling.create_closure(actor=current_actor(), location_id=location_id, **args),
        "Closure added.",
    )


@bp.post("/<int:location_id>/closures/holidays")
@require("locations.manage")
def add_holidays(location_id: int) -> Any:
    schema = HolidayYearSchema()
    added: list[Any] = []

    def run(args: dict[str, Any]) -> None:
        added.extend(closures.add_public_holidays(actor=current_actor(), location_id=location_id, year=args["year"]))

    return _submit(
        location_id,
        "holidays",
        lambda: schema.load(form_payload(schema, "UTC", request.form)),
        run,
        f"Public holidays of {request.form.get('year', '')} added.",
    )


@bp.post("/<int:location_id>/prescriber-hours")
@require("locations.manage")
def prescriber_hours(location_id: int) -> Any:
    user_id = id_arg(request.form.get("user_id"))

    def load() -> dict[str, Any]:
        if user_id is None:
            raise ValidationError({"user_id": ["Choose a prescriber."]})
        return HoursSchema().load(_hours_payload(request.form))

    return _submit(
        location_id,
        "prescriber_hours",
        load,
        lambda args: scheduling.set_prescriber_hours(
            actor=current_actor(), location_id=location_id, user_id=user_id or 0, hours=args
        ),
        "Prescriber's hours on site saved.",
    )

"""The dosing visit's staff pages: the visit runner for one patient and the observation board.

Thin, like the API beside it: each form is loaded with the API's own input schema, one service
function runs as the request's one unit of work (clinic.core.tx), and the page then redirects
(post/redirect/get) or comes back with the errors beside the fields of the form that failed and
what was typed (never a password). The gates, the countdown and the discharge criteria are the
server's: the page shows them in words and never decides them. The runner works without
JavaScript; ``static/visits.js`` only ticks the server's countdown down between loads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import marshmallow as ma
from flask import Blueprint, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError

from clinic.auth.policy import allowed, client_addr, current_actor, require
from clinic.core import tx
from clinic.core.errors import DomainError
from clinic.core.fields import format_mg, id_arg
from clinic.scheduling import service as scheduling
from clinic.visits import discharge as discharging
from clinic.visits import dosing, pages, service
from clinic.visits.schemas import (
    ArrangementsSchema,
    CheckInSchema,
    DischargeSchema,
    DoseInSchema,
    InfusionEndSchema,
    OrderSchema,
    ReasonSchema,
    RemainderSchema,
    VitalsInSchema,
)
from clinic.web.forms import WHOLE, form_payload, refused

bp = Blueprint("visits_ui", __name__, url_prefix="/visits")

_LIST_SPLIT = re.compile(r"[,;\n]+")
_LOCAL_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$")
#: error keys a refusal carries as data the page lists in words (not as field errors)
_LISTED = ("gates", "unmet")
WITNESS_KEYS = ("witness_email", "witness_password", "witness_totp_code")


@bp.app_context_processor
def _scales() -> dict[str, Any]:
    return {
        "vital_fields": pages.VITAL_FIELDS,
        "sedation_scale": pages.SEDATION_SCALE,
        "dissociation_scale": pages.DISSOCIATION_SCALE,
        "preparation_questions": pages.PREPARATION,
    }


# --- the observation board -------------------------------------------------------------------------


@bp.get("/board")
@require("visits.view")
def board() -> Any:
    """Everyone in observation at a location; it reloads itself every 15 s (htmx, or a meta refresh
    without JavaScript), and the page script ticks the countdown between reloads."""
    return render_template("visits/board.html", board=pages.board(request.args.get("location_id", type=id_arg)))


# --- the visit runner ------------------------------------------------------------------------------


def _page(appointment_id: int) -> pages.Runner:
    return pages.runner(appointment_id, clinical=allowed(current_actor(), "patients.clinical_view"))


@bp.get("/<int:appointment_id>")
@require("visits.view")
def runner(appointment_id: int) -> Any:
    return render_template(
        "visits/runner.html", page=_page(appointment_id), form={}, errors={}, error=None, failed=None
    )


def _step(
    appointment_id: int,
    name: str,
    load: Callable[[pages.FormContext], dict[str, Any]],
    action: Callable[[dict[str, Any]], Any],
    done: Callable[[Any], str],
    rename: Callable[[dict[str, list[str]]], dict[str, list[str]]] | None = None,
) -> Any:
    """Load one form, run one service call, then back to the runner; or the runner again with the
    errors beside the form ``name`` and the server's lists (gates, unmet criteria) in words."""
    ctx = pages.form_context(appointment_id)
    try:
        args = load(ctx)
        result = tx.attempt(lambda: action(args))
    except (ValidationError, DomainError) as exc:
        listed = (exc.errors or {}) if isinstance(exc, DomainError) else {}
        return refused(
            "visits/runner.html",
            exc,
            unlisted=_LISTED,
            rename=rename,
            page=_page(appointment_id),
            failed=name,
            chosen=request.form.getlist("container_ids"),
            gates_refused=listed.get("gates"),
            unmet_refused=listed.get("unmet"),
        )
    flash(done(result), "success")
    return redirect(url_for(".runner", appointment_id=appointment_id, _anchor=name))


def _tri(value: str | None) -> bool | None:
    """A yes / no / not-asked radio group."""
    return {"yes": True, "no": False}.get(value or "")


def _local(value: str | None, tz: str) -> str | None:
    """A ``datetime-local`` value, read in the location's zone, as the API's ISO time with offset."""
    if not value:
        return None
    if _LOCAL_DATETIME.match(value):
        return datetime.fromisoformat(value).replace(tzinfo=ZoneInfo(tz)).isoformat()
    return value  # for the schema to refuse


def _whole(value: str) -> Any:
    return int(value) if WHOLE.match(value) else value


def _preparation(form: Mapping[str, str]) -> dict[str, bool | None] | None:
    answers = {key: _tri(form.get(key)) for key, _ in pages.PREPARATION}
    return answers if any(v is not None for v in answers.values()) else None


def _simple(schema: ma.Schema) -> Callable[[pages.FormContext], dict[str, Any]]:
    def load(ctx: pages.FormContext) -> dict[str, Any]:
        loaded: dict[str, Any] = schema.load(form_payload(schema, ctx.timezone, request.form))
        return loaded

    return load


@bp.post("/<int:appointment_id>/check-in")
@require("visits.check_in")
def check_in(appointment_id: int) -> Any:
    def load(ctx: pages.FormContext) -> dict[str, Any]:
        form = request.form
        body: dict[str, Any] = {"ride_home_arranged": form.get("ride_home_arranged") in ("on", "yes", "true", "1")}
        changes = [m.strip() for m in _LIST_SPLIT.split(form.get("medication_changes", "")) if m.strip()]
        if changes:
            body["medication_changes"] = changes
        for key in ("pregnant", "symptoms_worsened"):
            if _tri(form.get(key)) is not None:
                body[key] = _tri(form.get(key))
        if form.get("ride_contact"):
            body["ride_contact"] = form["ride_contact"]
        if (arrived := _local(form.get("occurred_at"), ctx.timezone)) is not None:
            body["occurred_at"] = arrived
        if (prep := _preparation(form)) is not None:
            body["preparation"] = prep
        loaded: dict[str, Any] = CheckInSchema().load(body)
        return loaded

    def done(visit: Any) -> str:
        follow = " The previous maintenance visit was missed: ask whether symptoms worsened (SPR-23)."
        appt = scheduling.get_appointment(appointment_id)
        return "Checked in." + (follow if service.after_missed_maintenance(appt) else "")

    return _step(
        appointment_id,
        "check-in",
        load,
        lambda args: service.check_in(actor=current_actor(), appointment_id=appointment_id, **args),
        done,
    )


@bp.post("/<int:appointment_id>/arrangements")
@require("visits.check_in")
def arrangements(appointment_id: int) -> Any:
    def load(ctx: pages.FormContext) -> dict[str, Any]:
        form = request.form
        body: dict[str, Any] = {}
        if _tri(form.get("ride_home_arranged")) is not None:
            body["ride_home_arranged"] = _tri(form.get("ride_home_arranged"))
        if form.get("ride_contact"):
            body["ride_contact"] = form["ride_contact"]
        if (prep := _preparation(form)) is not None:
            body["preparation"] = prep
        if _tri(form.get("symptoms_worsened")) is not None:
            body["symptoms_worsened"] = _tri(form.get("symptoms_worsened"))
        loaded: dict[str, Any] = ArrangementsSchema().load(body)
        return loaded

    return _step(
        appointment_id,
        "arrangements",
        load,
        lambda args: service.update_arrangements(actor=current_actor(), appointment_id=appointment_id, **args),
        lambda _: "Ride home and preparation updated.",
    )


@bp.post("/<int:appointment_id>/vitals")
@require("visits.chart")
def record_vitals(appointment_id: int) -> Any:
    def done(reading: Any) -> str:
        text = f"Vital signs recorded: {reading.systolic}/{reading.diastolic}, HR {reading.heart_rate}."
        words = pages.flag_words(reading.out_of_range or [])
        if words:
            text += " Out of range: " + "; ".join(f"{k.replace('_', ' ')} {v}" for k, v in words.items()) + "."
        if reading.late_for:
            text += " Charted late for the " + ", ".join(f"{c}-minute" for c in reading.late_for) + " check."
        return text

    return _step(
        appointment_id,
        "vitals",
        _simple(VitalsInSchema()),
        lambda args: service.record_vitals(actor=current_actor(), appointment_id=appointment_id, **args),
        done,
    )


@bp.post("/<int:appointment_id>/release-hold")
@require("visits.release_hold")
def release_hold(appointment_id: int) -> Any:
    return _step(
        appointment_id,
        "hold",
        _simple(ReasonSchema()),
        lambda args: service.release_hold(actor=current_actor(), appointment_id=appointment_id, **args),
        lambda _: "Hold released: the dose may go ahead.",
    )


@bp.post("/<int:appointment_id>/order")
@require("visits.order")
def order(appointment_id: int) -> Any:
    return _step(
        appointment_id,
        "order",
        _simple(OrderSchema()),
        lambda args: service.order_dose(actor=current_actor(), appointment_id=appointment_id, **args),
        lambda visit: f"Ordered {format_mg(visit.ordered_ug)} mg for this visit.",
    )


def _dose_body(ctx: pages.FormContext, form: Any) -> dict[str, Any]:
    """The dose form as DoseInSchema's JSON: the ticked devices with their times, or one vial."""
    tz = ctx.timezone
    keys = ("dose_mg", "drawn_mg", "reason", "duration_reason", "waste_reason")
    body: dict[str, Any] = {key: form[key] for key in (*keys, *WITNESS_KEYS) if form.get(key)}
    if ctx.devices:
        ids = [_whole(v) for v in form.getlist("container_ids") if v]
        if not ids:
            raise ValidationError({"container_ids": ["Tick the devices given."]})
        timed = [(t, i) for i in ids if (t := _local(form.get(f"device_time-{i}"), tz)) is not None]
        if timed:
            # In the order they were given; a ticked device without a time leaves the counts unequal,
            # which the schema and the service name.
            def when(pair: tuple[str, Any]) -> Any:
                try:
                    return (0, datetime.fromisoformat(pair[0]))
                except ValueError:
                    return (1, pair[0])

            timed.sort(key=when)
            body["device_times"] = [t for t, _ in timed]
            ids = [i for _, i in timed] + [i for i in ids if i not in {j for _, j in timed}]
        body["container_ids"] = ids
    else:
        if not form.get("container_id"):
            raise ValidationError({"container_id": ["Choose the vial the dose is drawn from."]})
        body["container_id"] = _whole(form["container_id"])
        for key in ("administered_at", "infusion_ended_at"):
            if (at := _local(form.get(key), tz)) is not None:
                body[key] = at
    return body


@bp.post("/<int:appointment_id>/dose")
@require("visits.dose")
def dose(appointment_id: int) -> Any:
    def load(ctx: pages.FormContext) -> dict[str, Any]:
        loaded: dict[str, Any] = DoseInSchema().load(_dose_body(ctx, request.form))
        return loaded

    def done(result: dosing.DoseResult) -> str:
        entries = ", ".join(f"#{e.seq}" for e in result.entries)
        waste = next((e for e in result.entries if e.kind == "waste"), None)
        text = f"Dose of {format_mg(result.visit.dose_ug or 0)} mg recorded (ledger {entries})."
        if waste is not None:
            text += f" {format_mg(-waste.delta_ug)} mg drawn but not given was wasted, witnessed."
        return text + " The observation timer has started."

    def rename(errors: dict[str, list[str]]) -> dict[str, list[str]]:
        """Devices have a time each: the first device's time is what the service calls administered_at."""
        if "administered_at" in errors and pages.form_context(appointment_id).devices:
            errors = {**errors, "device_times": errors.get("device_times", []) + errors["administered_at"]}
            del errors["administered_at"]
        return errors

    return _step(
        appointment_id,
        "dose",
        load,
        lambda args: dosing.record_dose(
            actor=current_actor(),
            appointment_id=appointment_id,
            req=dosing.DoseRequest(**args),
            client_addr=client_addr(),
        ),
        done,
        rename,
    )


@bp.post("/<int:appointment_id>/infusion-end")
@require("visits.chart")
def infusion_end(appointment_id: int) -> Any:
    return _step(
        appointment_id,
        "infusion-end",
        _simple(InfusionEndSchema()),
        lambda args: dosing.end_infusion(actor=current_actor(), appointment_id=appointment_id, **args),
        lambda _: "Infusion ended: the observation minimum counts from now.",
    )


@bp.post("/<int:appointment_id>/vial-remainder")
@require("visits.dose")
def vial_remainder(appointment_id: int) -> Any:
    container_id = id_arg(request.form.get("container_id"))
    name = f"remainder-{container_id}" if container_id else "remainder"

    def done(item: Any) -> str:
        how = "wasted before a witness" if item.remainder_action == "wasted" else "returned to the safe"
        return f"Container #{item.container_id}: {format_mg(item.remainder_ug or 0)} mg {how}."

    return _step(
        appointment_id,
        name,
        _simple(RemainderSchema()),
        lambda args: dosing.resolve_remainder(
            actor=current_actor(), appointment_id=appointment_id, client_addr=client_addr(), **args
        ),
        done,
    )


@bp.post("/<int:appointment_id>/discharge")
@require("visits.discharge")
def discharge(appointment_id: int) -> Any:
    return _step(
        appointment_id,
        "discharge",
        _simple(DischargeSchema()),
        lambda args: discharging.discharge(actor=current_actor(), appointment_id=appointment_id, **args),
        lambda _: "Discharged. Give the patient the instructions below.",
    )

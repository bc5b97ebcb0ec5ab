"""The outcome measures' staff pages: a course's trend (chart and table), the PHQ-9 / GAD-7 form,
and the location's open item-9 safety alerts with the prescriber's acknowledgement.

Thin, like the API: forms are loaded with the API's input schema, one service function runs as the
request's unit of work, and the page redirects or comes back with the errors beside the items. The
chart is drawn server-side as inline SVG (no script); a table beside it carries the same figures.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError

from clinic.auth import scope
from clinic.auth.policy import current_actor, require
from clinic.core import tx
from clinic.core.errors import DomainError
from clinic.core.fields import id_arg
from clinic.locations import service as locations_service
from clinic.outcomes import service
from clinic.outcomes.schemas import AcknowledgeSchema, RecordScoreSchema
from clinic.outcomes.scoring import SPECS, SUICIDALITY_ITEM, Instrument, Trend
from clinic.patients import service as patients_service
from clinic.scheduling import service as scheduling_service
from clinic.web.forms import WHOLE, form_payload, refused

bp = Blueprint("outcomes_ui", __name__, url_prefix="/outcomes", template_folder="templates")

#: The questionnaires as published (public domain; developed by Drs. Robert L. Spitzer, Janet B.W.
#: Williams, Kurt Kroenke and colleagues, with an educational grant from Pfizer Inc.).
STEMS = {
    Instrument.phq9: "Over the last 2 weeks, how often have you been bothered by any of the following problems?",
    Instrument.gad7: "Over the last 2 weeks, how often have you been bothered by the following problems?",
}
QUESTIONS: dict[Instrument, tuple[str, ...]] = {
    Instrument.phq9: (
        "Little interest or pleasure in doing things",
        "Feeling down, depressed, or hopeless",
        "Trouble falling or staying asleep, or sleeping too much",
        "Feeling tired or having little energy",
        "Poor appetite or overeating",
        "Feeling bad about yourself \u2014 or that you are a failure or have let yourself or your family down",
        "Trouble concentrating on things, such as reading the newspaper or watching television",
        "Moving or speaking so slowly that other people could have noticed? Or the opposite \u2014 being so "
        "fidgety or restless that you have been moving around a lot more than usual",
        "Thoughts that you would be better off dead or of hurting yourself in some way",
    ),
    Instrument.gad7: (
        "Feeling nervous, anxious or on edge",
        "Not being able to stop or control worrying",
        "Worrying too much about different things",
        "Trouble relaxing",
        "Being so restless that it is hard to sit still",
        "Becoming easily annoyed or irritable",
        "Feeling afraid as if something awful might happen",
    ),
}
ANSWERS = (("0", "Not at all"), ("1", "Several days"), ("2", "More than half the days"), ("3", "Nearly every day"))
BAND_NAMES = {
    "minimal": "minimal",
    "mild": "mild",
    "moderate": "moderate",
    "moderately_severe": "moderately severe",
    "severe": "severe",
}
_ITEM_ERROR = re.compile(r"^items\.(\d+)$")


@bp.app_template_filter("band_name")
def band_name(band: str) -> str:
    return BAND_NAMES.get(band, band)


@bp.app_template_filter("pct")
def pct(value: Decimal | None) -> str:
    if value is None:
        return "—"
    return f"+{value} %" if value > 0 else f"{value} %"


@bp.app_context_processor
def _instruments() -> dict[str, Any]:
    return {"instrument_specs": SPECS, "answer_options": ANSWERS}


def _instrument_arg(value: str | None) -> Instrument:
    return Instrument(value) if value in {i.value for i in Instrument} else Instrument.phq9


# --- the chart -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChartPoint:
    x: float
    y: float
    total: int
    response: bool
    remission: bool
    is_baseline: bool
    point: Any


@dataclass(frozen=True)
class TrendChart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    max_total: int
    points: list[ChartPoint]
    #: y of the response line (50 % of baseline) and of the remission line (5), or None
    response_y: float | None
    response_value: Decimal | None
    remission_y: float
    remission_below: int
    ticks: list[tuple[int, float]]

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)

    @property
    def plot_right(self) -> int:
        return self.width - self.right

    @property
    def plot_bottom(self) -> int:
        return self.height - self.bottom


def trend_chart(trend: Trend, width: int = 640, height: int = 280) -> TrendChart | None:
    """Coordinates for an inline SVG line chart: totals over time (oldest left) on the instrument's
    full scale, with the response line at half the baseline and the remission line at 5."""
    if not trend.points:
        return None
    spec = SPECS[trend.instrument]
    left, right, top, bottom = 48, 24, 20, 32
    plot_w, plot_h = width - left - right, height - top - bottom

    def y_of(value: float) -> float:
        return top + plot_h * (spec.max_total - value) / spec.max_total

    first, last = trend.points[0].taken_at, trend.points[-1].taken_at
    span = (last - first).total_seconds()
    points = []
    for n, p in enumerate(trend.points):
        if len(trend.points) == 1:
            x = left + plot_w / 2
        elif span > 0:
            x = left + plot_w * (p.taken_at - first).total_seconds() / span
        else:  # all at one instant: spread evenly
            x = left + plot_w * n / (len(trend.points) - 1)
        points.append(ChartPoint(x, y_of(p.total), p.total, p.response, p.remission, p.is_baseline, p))
    threshold = trend.response_at_or_below
    step = 5
    ticks = [(v, y_of(v)) for v in range(0, spec.max_total + 1, step)]
    if ticks[-1][0] != spec.max_total:
        ticks.append((spec.max_total, y_of(spec.max_total)))
    return TrendChart(
        width=width,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        max_total=spec.max_total,
        points=points,
        response_y=None if threshold is None else y_of(float(threshold)),
        response_value=None if threshold is None else threshold.quantize(Decimal("0.1")),
        remission_y=y_of(trend.remission_below),
        remission_below=trend.remission_below,
        ticks=ticks,
    )


# --- a course's outcomes -------------------------------------------------------------------------


def _course(series_id: int, instrument: Instrument) -> dict[str, Any]:
    series = scheduling_service.get_series(series_id)
    trend = service.trend(series_id, instrument)
    return {
        "series": series,
        "patient": patients_service.get_patient(series.patient_id),
        "location": locations_service.get_location(series.location_id),
        "instrument": instrument,
        "spec": SPECS[instrument],
        "trend": trend,
        "chart": trend_chart(trend),
        "scores": service.course_scores(series_id, instrument),
    }


@bp.get("/series/<int:series_id>")
@require("outcomes.view")
def course(series_id: int) -> Any:
    instrument = _instrument_arg(request.args.get("instrument"))
    return render_template("outcomes/course.html", **_course(series_id, instrument))


def _form_context(series_id: int, instrument: Instrument) -> dict[str, Any]:
    series = scheduling_service.get_series(series_id)
    return {
        "series": series,
        "patient": patients_service.get_patient(series.patient_id),
        "location": locations_service.get_location(series.location_id),
        "instrument": instrument,
        "spec": SPECS[instrument],
        "stem": STEMS[instrument],
        "questions": QUESTIONS[instrument],
        "suicidality_item": SUICIDALITY_ITEM,
    }


@bp.get("/series/<int:series_id>/new")
@require("outcomes.record")
def score_form(series_id: int) -> Any:
    instrument = _instrument_arg(request.args.get("instrument"))
    form = {k: v for k, v in request.args.items() if k in ("replaces_id", "appointment_id")}
    return render_template(
        "outcomes/score_form.html", form=form, errors={}, error=None, **_form_context(series_id, instrument)
    )


def _score_body(series_id: int, tz: str, form: Mapping[str, str]) -> dict[str, Any]:
    """The form as RecordScoreSchema's JSON: the ticked radios as whole numbers in order (an
    unanswered item as null, for the schema to refuse), the time read in the location's zone."""
    instrument = _instrument_arg(form.get("instrument"))
    items: list[Any] = []
    for n in range(SPECS[instrument].items):
        value = form.get(f"item_{n + 1}", "")
        items.append(int(value) if WHOLE.match(value) else (value or None))
    extra = {k: form[k] for k in ("appointment_id", "taken_at", "replaces_id") if form.get(k)}
    return {
        **form_payload(RecordScoreSchema(), tz, extra),
        "instrument": form.get("instrument", ""),
        "series_id": series_id,
        "items": items,
    }


def _item_fields(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    """``items.3`` (0-based, the API's) is the form's fourth radio group, ``item_4``."""
    out: dict[str, list[str]] = {}
    for key, messages in errors.items():
        m = _ITEM_ERROR.match(key)
        out[f"item_{int(m[1]) + 1}" if m else key] = messages
    return out


@bp.post("/series/<int:series_id>/scores")
@require("outcomes.record")
def record(series_id: int) -> Any:
    instrument = _instrument_arg(request.form.get("instrument"))
    context = _form_context(series_id, instrument)
    try:
        args = RecordScoreSchema().load(_score_body(series_id, context["location"].timezone, request.form))
        score = tx.attempt(
            lambda: service.record_score(actor=current_actor(), patient_id=context["patient"].id, **args)
        )
    except (ValidationError, DomainError) as exc:
        return refused("outcomes/score_form.html", exc, rename=_item_fields, **context)
    label = SPECS[instrument].label
    flash(f"{label} recorded: total {score.total} ({band_name(score.band)}).", "success")
    if score.safety_alert:
        flash(
            "Item 9 was answered above \u201cnot at all\u201d: a safety alert is open for a prescriber today.",
            "warning",
        )
    return redirect(url_for(".course", series_id=series_id, instrument=instrument.value))


# --- safety alerts (OUT-04) ----------------------------------------------------------------------


def _alerts_context(location_id: int | None) -> dict[str, Any]:
    locations = scope.my_locations(current_actor())
    location = next((loc for loc in locations if loc.id == location_id), locations[0] if locations else None)
    return {
        "location": location,
        "locations": locations,
        "alerts": service.open_safety_alerts(location.id) if location else [],
        "answer_text": dict(ANSWERS),
    }


@bp.get("/safety-alerts")
@require("outcomes.view")
def safety_alerts() -> Any:
    context = _alerts_context(id_arg(request.args.get("location_id")))
    return render_template("outcomes/safety_alerts.html", form={}, errors={}, error=None, failed=None, **context)


@bp.post("/<int:score_id>/acknowledge")
@require("outcomes.acknowledge")
def acknowledge(score_id: int) -> Any:
    location_id = id_arg(request.form.get("location_id"))
    schema = AcknowledgeSchema()
    try:
        args = schema.load(form_payload(schema, "UTC", {"note": request.form.get("note", "")}))
        tx.attempt(
            lambda: service.acknowledge_safety_alert(actor=current_actor(), score_id=score_id, note=args["note"])
        )
    except (ValidationError, DomainError) as exc:
        return refused("outcomes/safety_alerts.html", exc, failed=score_id, **_alerts_context(location_id))
    flash(f"Safety alert on score #{score_id} acknowledged.", "success")
    return redirect(url_for(".safety_alerts", location_id=location_id))

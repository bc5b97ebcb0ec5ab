"""The patients' staff pages: the list and search, a new patient, the chart, the screening form
and its result, weights, REMS enrolment and the prescriber's override.

Thin, like the API beside it: forms are loaded with the API's input schemas, one service function
runs as the request's unit of work, and the page redirects (post/redirect/get) or comes back with
the errors beside the fields and what was typed. Clinical detail (screening answers and flags,
weights) is neither read nor shown for a role without ``patients.clinical_view``: the front desk
sees demographics and the eligibility decision only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError

from clinic.auth import scope
from clinic.auth.policy import allowed, current_actor, require
from clinic.core import tx
from clinic.core.errors import DomainError
from clinic.patients import screening, service
from clinic.patients.models import PatientWeight
from clinic.patients.schemas import (
    CHANNELS,
    SEXES,
    CreatePatientSchema,
    OverrideScreeningSchema,
    PatientQuerySchema,
    RecordScreeningSchema,
    RecordWeightSchema,
    RemsEnrollmentSchema,
    ReviewScreeningSchema,
    ScreeningAnswersSchema,
)
from clinic.scheduling import queries as scheduling_queries
from clinic.web.forms import WHOLE, flat_errors, form_payload, refused

bp = Blueprint("patients_ui", __name__, url_prefix="/patients", template_folder="templates")

PAGE_SIZE = 50
_MEDICATION_SPLIT = re.compile(r"[,;\n]+")

#: the questionnaire as staff read it: (answer key, question), required ones first
QUESTIONS: tuple[tuple[str, str], ...] = (
    ("pregnant", "Is the patient pregnant?"),
    ("breastfeeding", "Is the patient breastfeeding?"),
    ("psychosis_or_mania", "History of psychosis, schizophrenia or mania?"),
    ("uncontrolled_hypertension", "Uncontrolled high blood pressure?"),
    ("cardiovascular_disease", "Heart or cerebrovascular disease (coronary disease, prior stroke, brain injury)?"),
    ("aneurysm_avm_or_ich", "Aneurysm, arteriovenous malformation or a past bleed in the brain?"),
    ("substance_use_disorder", "Substance use disorder (including alcohol) or a history of misuse?"),
    ("prior_ketamine_reaction", "A prior hypersensitivity or serious reaction to ketamine or esketamine?"),
    ("raised_intracranial_or_intraocular_pressure", "Raised pressure in the skull or eye, or an open eye injury?"),
    ("untreated_hyperthyroidism", "Untreated overactive thyroid?"),
    ("liver_or_bladder_disease", "Liver disease, or bladder or urinary symptoms?"),
    ("suicidality", "Current suicidal thoughts or behaviour?"),
)
REQUIRED = frozenset(screening.REQUIRED_ANSWERS)
TIMEZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
)


@bp.app_template_filter("kg")
def kg(grams: int | None) -> str:
    return "—" if grams is None else f"{grams / 1000:.1f} kg"


@bp.app_template_filter("patient_time")
def patient_time(at: datetime | None, tz: str) -> str:
    return "—" if at is None else at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")


@bp.app_context_processor
def _questions() -> dict[str, Any]:
    return {"screening_questions": QUESTIONS, "required_answers": REQUIRED}


# --- parsing -------------------------------------------------------------------------------------


def _screening_body(form: Mapping[str, str]) -> dict[str, Any]:
    """The questionnaire as RecordScreeningSchema's JSON: "yes"/"no" per question (an unanswered
    required question is left out, for the schema to refuse), medicines split on commas, semicolons
    or lines."""
    answers: dict[str, Any] = {}
    for key in ScreeningAnswersSchema().fields:
        if key == "medications":
            continue
        value = form.get(key, "")
        if value in ("yes", "no"):
            answers[key] = value == "yes"
        elif value:  # anything else is for the schema to refuse
            answers[key] = value
    answers["medications"] = [m.strip() for m in _MEDICATION_SPLIT.split(form.get("medications", "")) if m.strip()]
    body: dict[str, Any] = {"answers": answers}
    location = form.get("location_id", "")
    if location:
        body["location_id"] = int(location) if WHOLE.match(location) else location
    return body


def _refused(template: str, exc: ValidationError | DomainError, **context: Any) -> Any:
    return refused(template, exc, transparent=("answers",), **context)


# --- the chart's data (clinical parts only for clinical roles) ------------------------------------


@dataclass(frozen=True)
class WeightChart:
    width: int
    height: int
    points: list[tuple[float, float, PatientWeight]]
    low_kg: float
    high_kg: float
    first: datetime
    last: datetime

    @property
    def polyline(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in self.points)


def _weight_chart(weights: list[PatientWeight], width: int = 640, height: int = 200) -> WeightChart | None:
    """Points for an inline SVG line chart of weight over time (oldest left), padded for the axes."""
    if not weights:
        return None
    ordered = sorted(weights, key=lambda w: (w.measured_at, w.id))
    kgs = [w.weight_g / 1000 for w in ordered]
    low, high = min(kgs) - 1, max(kgs) + 1
    first, last = ordered[0].measured_at, ordered[-1].measured_at
    span = (last - first).total_seconds() or 1.0
    left, right, top, bottom = 56, 16, 12, 28
    points = []
    for w, value in zip(ordered, kgs, strict=True):
        x = left + (width - left - right) * (
            (w.measured_at - first).total_seconds() / span if len(ordered) > 1 else 0.5
        )
        y = top + (height - top - bottom) * (high - value) / (high - low)
        points.append((x, y, w))
    return WeightChart(width, height, points, low, high, first, last)


def _chart(patient_id: int) -> dict[str, Any]:
    actor = current_actor()
    clinical = allowed(actor, "patients.clinical_view")
    if clinical:
        record = service.get_patient_record(patient_id)
        weights = service.list_weights(patient_id)
        screenings = service.list_screenings(patient_id)
    else:  # the decision only; weights and screening details are not read at all
        record = service.PatientRecord(
            patient=service.get_patient(patient_id),
            screening=service.latest_screening(patient_id),
            rems_enrolled_on=service.rems_enrolled_on(patient_id),
        )
        weights, screenings = [], []
    courses = (
        scheduling_queries.patient_courses(patient_id, scope.member_location_ids(actor))
        if allowed(actor, "scheduling.view")
        else []
    )
    return {
        "record": record,
        "clinical": clinical,
        "weights": weights,
        "weight_chart": _weight_chart(weights),
        "screenings": screenings,
        "courses": courses,
    }


# --- the list and a new patient -----------------------------------------------------------------


@bp.get("/")
@require("patients.view")
def index() -> Any:
    query = {k: v for k, v in request.args.items() if v != ""}
    try:
        args = PatientQuerySchema().load({**query, "limit": PAGE_SIZE})
    except ValidationError as exc:
        return render_template(
            "patients/index.html",
            items=[],
            next_cursor=None,
            form=query,
            errors=flat_errors(exc.normalized_messages(), transparent=("answers",)),
        ), 422
    cursor = args.pop("cursor")
    items = service.list_patients(actor=current_actor(), after_id=int(cursor) if cursor else None, **args)
    next_cursor = str(items[-1].id) if len(items) == PAGE_SIZE else None
    return render_template("patients/index.html", items=items, next_cursor=next_cursor, form=query, errors={})


def _new_context() -> dict[str, Any]:
    return {
        "timezones": TIMEZONES,
        "sexes": SEXES,
        "channels": CHANNELS,
        "locations": scope.my_locations(current_actor()),
    }


@bp.get("/new")
@require("patients.create")
def new() -> Any:
    form = {"timezone": TIMEZONES[1], **request.args.to_dict()}
    return render_template("patients/new.html", form=form, errors={}, error=None, **_new_context())


@bp.post("/new")
@require("patients.create")
def create() -> Any:
    schema = CreatePatientSchema()
    try:
        args = schema.load(form_payload(schema, "UTC", request.form))
        patient = tx.attempt(lambda: service.create_patient(actor=current_actor(), **args))
    except (ValidationError, DomainError) as exc:
        return _refused("patients/new.html", exc, **_new_context())
    flash(f"Patient #{patient.id} added.", "success")
    return redirect(url_for(".chart", patient_id=patient.id))


# --- the chart ---------------------------------------------------------------------------------


@bp.get("/<int:patient_id>")
@require("patients.view")
def chart(patient_id: int) -> Any:
    return render_template("patients/chart.html", form={}, errors={}, error=None, failed=None, **_chart(patient_id))


@bp.post("/<int:patient_id>/weights")
@require("patients.chart")
def record_weight(patient_id: int) -> Any:
    schema = RecordWeightSchema()
    try:
        tz = service.get_patient(patient_id).timezone
        args = schema.load(form_payload(schema, tz, request.form))
        weight = tx.attempt(lambda: service.record_weight(actor=current_actor(), patient_id=patient_id, **args))
    except (ValidationError, DomainError) as exc:
        return _refused("patients/chart.html", exc, failed="weight", **_chart(patient_id))
    flash(f"Weight {kg(weight.weight_g)} recorded.", "success")
    return redirect(url_for(".chart", patient_id=patient_id, _anchor="weights"))


@bp.post("/<int:patient_id>/rems")
@require("patients.rems")
def enroll_in_rems(patient_id: int) -> Any:
    schema = RemsEnrollmentSchema()
    try:
        args = schema.load(form_payload(schema, "UTC", request.form))
        tx.attempt(lambda: service.enroll_in_rems(actor=current_actor(), patient_id=patient_id, **args))
    except (ValidationError, DomainError) as exc:
        return _refused("patients/chart.html", exc, failed="rems", **_chart(patient_id))
    flash(f"Enrolled in the SPRAVATO REMS on {args['enrolled_on'].isoformat()}.", "success")
    return redirect(url_for(".chart", patient_id=patient_id))


# --- screening -----------------------------------------------------------------------------------


def _screening_context(patient_id: int) -> dict[str, Any]:
    return {"patient": service.get_patient(patient_id), "locations": scope.my_locations(current_actor())}


@bp.get("/<int:patient_id>/screenings/new")
@require("patients.chart")
def screening_form(patient_id: int) -> Any:
    return render_template(
        "patients/screening_form.html",
        form=request.args.to_dict(),
        errors={},
        error=None,
        **_screening_context(patient_id),
    )


@bp.post("/<int:patient_id>/screenings")
@require("patients.chart")
def record_screening(patient_id: int) -> Any:
    try:
        args = RecordScreeningSchema().load(_screening_body(request.form))
        result = tx.attempt(lambda: service.record_screening(actor=current_actor(), patient_id=patient_id, **args))
    except (ValidationError, DomainError) as exc:
        return _refused("patients/screening_form.html", exc, **_screening_context(patient_id))
    flash(f"Screening recorded: {result.eligibility}.", "success")
    return redirect(url_for(".screening_result", patient_id=patient_id, screening_id=result.id))


@bp.get("/<int:patient_id>/screenings/<int:screening_id>")
@require("patients.clinical_view")
def screening_result(patient_id: int, screening_id: int) -> Any:
    return render_template(
        "patients/screening.html",
        patient=service.get_patient(patient_id),
        result=service.get_screening(patient_id, screening_id),
        latest=service.latest_screening(patient_id),
        form={},
        errors={},
        error=None,
    )


@bp.post("/<int:patient_id>/screenings/<int:screening_id>/override")
@require("patients.override")
def override_screening(patient_id: int, screening_id: int) -> Any:
    schema = OverrideScreeningSchema()
    try:
        args = schema.load(form_payload(schema, "UTC", request.form))
        tx.attempt(
            lambda: service.override_screening(
                actor=current_actor(), patient_id=patient_id, screening_id=screening_id, reason=args["reason"]
            )
        )
    except (ValidationError, DomainError) as exc:
        return _refused("patients/chart.html", exc, failed=f"override-{screening_id}", **_chart(patient_id))
    flash(f"Screening #{screening_id} overridden: the patient may now be booked.", "success")
    return redirect(url_for(".chart", patient_id=patient_id, _anchor="screenings"))


@bp.post("/<int:patient_id>/screenings/<int:screening_id>/review")
@require("patients.override")
def review_screening(patient_id: int, screening_id: int) -> Any:
    """CI-22: the prescriber's approval or rejection of a screening that cleared earlier flags."""
    schema = ReviewScreeningSchema()
    try:
        args = schema.load(form_payload(schema, "UTC", request.form))
        result = tx.attempt(
            lambda: service.review_screening(
                actor=current_actor(), patient_id=patient_id, screening_id=screening_id, **args
            )
        )
    except (ValidationError, DomainError) as exc:
        return _refused("patients/chart.html", exc, failed=f"review-{screening_id}", **_chart(patient_id))
    flash(f"Screening #{screening_id} {result.review_status}.", "success")
    return redirect(url_for(".chart", patient_id=patient_id, _anchor="screenings"))

"""Outcome measure input schemas and output views.

Items are checked here (shape: whole numbers 0..3, as many as the instrument has) and again by
``scoring.score`` in the service, for callers that do not come through a schema.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

import marshmallow as ma
from marshmallow import validate

from clinic.core.fields import ChartedTime, Date, Id, StrictBoolean, StrictSchema
from clinic.outcomes import scoring
from clinic.outcomes.scoring import ITEM_MAX, ITEM_MIN, SPECS, Band, Instrument

INSTRUMENTS = tuple(i.value for i in Instrument)
BANDS = tuple(b.value for b in Band)
_FEWEST = min(s.items for s in SPECS.values())
_MOST = max(s.items for s in SPECS.values())
#: a note may run over lines; other control characters are refused
_NOTE_TEXT = validate.Regexp(r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$", error="Must not contain control characters.")


class ItemScore(ma.fields.Integer):
    """One answer: 0 (not at all) .. 3 (nearly every day); no bools, no floats, no strings."""

    default_error_messages = {
        "invalid": f"Must be a whole number from {ITEM_MIN} to {ITEM_MAX}.",
        "null": "Not answered.",
    }

    def __init__(self, **kwargs: Any) -> None:
        in_range = validate.Range(min=ITEM_MIN, max=ITEM_MAX, error=f"Must be from {ITEM_MIN} to {ITEM_MAX}.")
        super().__init__(strict=True, validate=in_range, **kwargs)


class DecimalText(ma.fields.String):
    """A Decimal dumped as its decimal string ("-50.0"), never as a binary float."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else str(value)


class RecordScoreSchema(StrictSchema):
    """POST /patients/{id}/outcomes: one questionnaire at one course."""

    instrument = ma.fields.String(required=True, validate=validate.OneOf(INSTRUMENTS))
    items = ma.fields.List(
        ItemScore(),
        required=True,
        metadata={
            "description": "Item scores 0..3 in questionnaire order: 9 for phq9, 7 for gad7",
            "minItems": _FEWEST,
            "maxItems": _MOST,
        },
    )
    series_id = Id(required=True, metadata={"description": "The course (treatment series) the score belongs to"})
    appointment_id = Id(load_default=None, allow_none=True, metadata={"description": "The visit, if taken at one"})
    taken_at = ChartedTime(
        load_default=None,
        allow_none=True,
        metadata={"description": "When answered; default now (a correction: the replaced one's)"},
    )
    replaces_id = Id(load_default=None, allow_none=True, metadata={"description": "The score this one corrects"})

    #: each instrument its own number of items (scoring.item_errors), stated in the document
    OPENAPI_RULES: ClassVar[dict[str, Any]] = {
        "oneOf": [
            {
                "properties": {
                    "instrument": {"enum": [kind.value]},
                    "items": {"minItems": spec.items, "maxItems": spec.items},
                }
            }
            for kind, spec in SPECS.items()
        ]
    }

    @ma.validates_schema
    def _item_count(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors = scoring.item_errors(data["instrument"], data["items"])
        if errors:
            raise ma.ValidationError({"items": errors})


class OutcomeScoreSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    patient_id = ma.fields.Integer(required=True)
    series_id = ma.fields.Integer(required=True)
    appointment_id = ma.fields.Integer(required=True, allow_none=True)
    instrument = ma.fields.String(required=True, validate=validate.OneOf(INSTRUMENTS))
    items = ma.fields.List(ma.fields.Integer(), required=True)
    total = ma.fields.Integer(required=True)
    band = ma.fields.String(required=True, validate=validate.OneOf(BANDS))
    taken_at = ma.fields.AwareDateTime(required=True)
    recorded_at = ma.fields.AwareDateTime(required=True)
    recorded_by_id = ma.fields.Integer(required=True)
    replaces_id = ma.fields.Integer(required=True, allow_none=True)
    safety_alert = StrictBoolean(required=True, metadata={"description": "PHQ-9 item 9 above 0 (OUT-04)"})
    safety_alert_at = ma.fields.AwareDateTime(required=True, allow_none=True)
    safety_acknowledged_at = ma.fields.AwareDateTime(required=True, allow_none=True)
    safety_acknowledged_by_id = ma.fields.Integer(required=True, allow_none=True)
    safety_acknowledgement_note = ma.fields.String(required=True, allow_none=True)


class TrendQuerySchema(StrictSchema):
    instrument = ma.fields.String(required=True, validate=validate.OneOf(INSTRUMENTS))


class TrendPointSchema(ma.Schema):
    score_id = ma.fields.Integer(required=True)
    taken_at = ma.fields.AwareDateTime(required=True)
    total = ma.fields.Integer(required=True)
    band = ma.fields.String(required=True, validate=validate.OneOf(BANDS))
    is_baseline = StrictBoolean(required=True)
    change_pct = DecimalText(
        required=True, allow_none=True, metadata={"description": 'Change from baseline in %, e.g. "-50.0"; null at 0'}
    )
    response = StrictBoolean(required=True, metadata={"description": "Total at most half the baseline"})
    remission = StrictBoolean(required=True, metadata={"description": "Total below remission_below"})


class TrendSchema(ma.Schema):
    series_id = ma.fields.Integer(required=True)
    instrument = ma.fields.String(required=True, validate=validate.OneOf(INSTRUMENTS))
    baseline = ma.fields.Nested(TrendPointSchema, required=True, allow_none=True)
    points = ma.fields.List(ma.fields.Nested(TrendPointSchema), required=True)
    response_at_or_below = DecimalText(
        required=True,
        allow_none=True,
        metadata={"description": "Half the baseline total; null without a baseline above 0"},
    )
    remission_below = ma.fields.Integer(required=True)
    remission_is_convention = StrictBoolean(
        required=True,
        metadata={"description": "True for GAD-7: < 5 is a common convention, not a validated definition"},
    )


class SafetyAlertQuerySchema(StrictSchema):
    location_id = Id(required=True, strict=False)  # a query string carries text


class SafetyAlertSchema(ma.Schema):
    score_id = ma.fields.Integer(required=True, attribute="score.id")
    patient_id = ma.fields.Integer(required=True, attribute="score.patient_id")
    series_id = ma.fields.Integer(required=True, attribute="score.series_id")
    appointment_id = ma.fields.Integer(required=True, allow_none=True, attribute="score.appointment_id")
    location_id = ma.fields.Integer(required=True, attribute="location.id")
    taken_at = ma.fields.AwareDateTime(required=True, attribute="score.taken_at")
    raised_at = ma.fields.AwareDateTime(required=True, attribute="score.safety_alert_at")
    raised_on = Date(required=True, metadata={"description": "The location's day the alert was raised"})
    overdue = StrictBoolean(required=True, metadata={"description": "Still open after the day it was raised"})
    item9 = ma.fields.Integer(required=True)
    total = ma.fields.Integer(required=True, attribute="score.total")
    band = ma.fields.String(required=True, attribute="score.band", validate=validate.OneOf(BANDS))
    replaced_by_id = ma.fields.Integer(required=True, allow_none=True)


class SafetyAlertListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(SafetyAlertSchema), required=True)


class AcknowledgeSchema(StrictSchema):
    note = ma.fields.String(required=True, validate=[validate.Length(min=1, max=1000), _NOTE_TEXT])


def trend_body(series_id: int, trend: scoring.Trend) -> dict[str, Any]:
    """The trend as TrendSchema dumps it (the response line to one decimal place)."""
    threshold = trend.response_at_or_below
    return {
        "series_id": series_id,
        "instrument": trend.instrument.value,
        "baseline": trend.baseline,
        "points": trend.points,
        "response_at_or_below": None if threshold is None else threshold.quantize(Decimal("0.1")),
        "remission_below": trend.remission_below,
        "remission_is_convention": trend.remission_is_convention,
    }

from __future__ import annotations

from typing import Any, ClassVar

import marshmallow as ma
from marshmallow import validate

from clinic.core.fields import AwareDateTime, Date, Id, StrictBoolean, StrictSchema, WallClockTime
from clinic.scheduling import course_rules


class ProtocolSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    code = ma.fields.String(required=True)
    version = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    rules = ma.fields.Dict(required=True)


class ProtocolListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ProtocolSchema), required=True)


# --- a new protocol version (the safety bounds are checked in clinic.scheduling.protocol_versions)


_DOSE = validate.Regexp(r"^\d{1,4}(\.\d{1,3})?$", error='A decimal string such as "0.5".')


class DoseRuleSchema(StrictSchema):
    """``mg_per_kg`` (IV/IM ketamine: target, min, max) or ``fixed`` (esketamine: options in mg)."""

    kind = ma.fields.String(required=True, validate=validate.OneOf(["mg_per_kg", "fixed"]))
    target = ma.fields.String(validate=_DOSE)
    min = ma.fields.String(validate=_DOSE)
    max = ma.fields.String(validate=_DOSE)
    options_mg = ma.fields.List(ma.fields.String(validate=_DOSE), validate=validate.Length(min=1, max=5))
    first_mg = ma.fields.String(validate=_DOSE)
    device_mg = ma.fields.String(validate=_DOSE)
    higher_only_after = ma.fields.String(validate=_DOSE)


class BpHoldSchema(StrictSchema):
    systolic = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=100, max=200))
    diastolic = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=60, max=130))


class PhaseSchema(StrictSchema):
    phase = ma.fields.String(required=True, validate=validate.OneOf(["induction", "maintenance", "booster", "series"]))
    weeks = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=52))
    per_week = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=3))


class ProtocolRulesSchema(StrictSchema):
    drug = ma.fields.String(required=True, validate=validate.OneOf(["ketamine", "esketamine"]))
    route = ma.fields.String(required=True, validate=validate.OneOf(["IV", "IM", "intranasal"]))
    dose = ma.fields.Nested(DoseRuleSchema, required=True)
    infusion_minutes = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=240))
    chair_minutes = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=15, max=480))
    observation_minutes = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=30, max=480))
    vitals_checkpoints_minutes = ma.fields.List(
        ma.fields.Integer(strict=True, validate=validate.Range(min=0, max=480)),
        required=True,
        validate=validate.Length(min=1, max=20),
    )
    bp_hold = ma.fields.Nested(BpHoldSchema, required=True)
    min_spacing_hours = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=24 * 90))
    max_per_week = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=3))
    phases = ma.fields.List(ma.fields.Nested(PhaseSchema), required=True, validate=validate.Length(min=1, max=6))
    endpoint = ma.fields.String(required=True, validate=validate.Length(max=500))
    requires_rems = ma.fields.Boolean(truthy={True}, falsy={False}, load_default=False)
    max_span_days = ma.fields.Integer(strict=True, validate=validate.Range(min=1, max=730))


class CreateProtocolSchema(StrictSchema):
    OPENAPI_RULES: ClassVar[dict[str, Any]] = {
        "description": "Refused (422) when the rules are unsafe (clinic.scheduling.protocol_versions.unsafe): "
        "no endpoint (IVK-08); a route not the drug's; min_spacing_hours under 24 (IVK-07); a phase with more "
        "visits a week than max_per_week; chair_minutes under infusion_minutes plus the first hour of "
        "observation; ketamine not by weight within min <= target <= max inside its bounds (IVK-03) or with "
        "the REMS; esketamine not a fixed 56 or 84 mg from 28 mg devices, not under the REMS, observed "
        "under 120 minutes, without a vitals checkpoint at 35 to 45 minutes, held only above 140/90, or "
        "more than twice a week (SPR-01, SPR-03, SPR-10, SPR-11, SPR-20, SPR-21, SPR-22)."
    }
    code = ma.fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9-]{2,39}$"))
    name = ma.fields.String(required=True, validate=validate.Length(min=3, max=200))
    rules = ma.fields.Nested(ProtocolRulesSchema, required=True)


class CreateChairSchema(StrictSchema):
    name = ma.fields.String(required=True, validate=validate.Length(min=1, max=80))


class ChairSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    location_id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    is_active = StrictBoolean(required=True)


class CreateClosureSchema(StrictSchema):
    starts_on = Date(required=True)
    ends_on = Date(required=True)
    reason = ma.fields.String(required=True, validate=validate.Length(min=1, max=200))


class ClosureSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    location_id = ma.fields.Integer(required=True)
    starts_on = Date(required=True)
    ends_on = Date(required=True)
    reason = ma.fields.String(required=True)


class CreateSeriesSchema(StrictSchema):
    patient_id = Id(required=True)
    protocol = ma.fields.String(required=True, validate=validate.Length(min=1, max=40))
    location_id = Id(required=True)
    prescriber_id = Id(required=True)
    start_on = Date(required=True)
    preferred_time = WallClockTime(required=True, metadata={"description": "Local wall-clock time, HH:MM"})


class AppointmentSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    series_id = ma.fields.Integer(required=True)
    seq = ma.fields.Integer(required=True)
    phase = ma.fields.String(required=True)
    patient_id = ma.fields.Integer(required=True)
    location_id = ma.fields.Integer(required=True)
    chair_id = ma.fields.Integer(required=True)
    starts_at = ma.fields.AwareDateTime(required=True)
    ends_at = ma.fields.AwareDateTime(required=True)
    planned_dose_mg = ma.fields.String(allow_none=True)
    status = ma.fields.String(required=True)
    status_reason = ma.fields.String(allow_none=True)


class SeriesSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    patient_id = ma.fields.Integer(required=True)
    location_id = ma.fields.Integer(required=True)
    prescriber_id = ma.fields.Integer(required=True)
    protocol = ma.fields.Function(lambda s: s.protocol.code, required=True)
    protocol_version = ma.fields.Function(lambda s: s.protocol.version, required=True)
    start_on = Date(required=True)
    preferred_time = ma.fields.Time(required=True)
    status = ma.fields.String(required=True)
    appointments = ma.fields.List(ma.fields.Nested(AppointmentSchema), required=True)
    reviews = ma.fields.Method("_reviews", required=True)
    #: e.g. visits past the location's REMS certification end (SPR-03), each named
    warnings = ma.fields.Method("_warnings", required=True)
    booster_interval_days = ma.fields.Integer(allow_none=True)
    next_booster_on = ma.fields.Method("_next_booster_on", allow_none=True)

    def _reviews(self, series: object) -> list[dict]:
        from clinic.scheduling.service import reviews

        return reviews(series)  # type: ignore[arg-type]

    def _warnings(self, series: object) -> list[dict]:
        from clinic.scheduling.course_rules import rems_warnings

        return rems_warnings(series)

    def _next_booster_on(self, series: object) -> str | None:
        from clinic.scheduling.course_rules import next_booster_on

        day = next_booster_on(series)
        return day.isoformat() if day else None


class CancelSchema(StrictSchema):
    reason = ma.fields.String(required=True, validate=validate.Length(min=1, max=500))


class AbsentSchema(StrictSchema):
    reason = ma.fields.String(load_default=None, validate=validate.Length(max=500))


class AbsentResultSchema(ma.Schema):
    appointment = ma.fields.Nested(AppointmentSchema, required=True)
    follow_up = ma.fields.String(required=True)


class RescheduleSchema(StrictSchema):
    starts_at = AwareDateTime(required=True)
    #: where the client saw the visit: a move that raced another move of it is then a 409
    expected_starts_at = AwareDateTime(load_default=None)
    #: a prescriber's reason to break the course's rules (visits per week, span)
    override_reason = ma.fields.String(
        load_default=None,
        validate=[
            validate.Length(max=1000),
            validate.Regexp(course_rules.OVERRIDE_REASON, error=course_rules.OVERRIDE_REASON_ERROR),
        ],
    )


class CalendarQuerySchema(StrictSchema):
    location_id = Id(required=True, strict=False)
    since = AwareDateTime(required=True)
    until = AwareDateTime(
        required=True, metadata={"description": "Refused (422) unless after since and at most 62 days after it."}
    )


class AppointmentListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(AppointmentSchema), required=True)


class CalendarFeedSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    url = ma.fields.String(required=True)


class PrescriberHoursSchema(ma.Schema):
    location_id = ma.fields.Integer(required=True)
    user_id = ma.fields.Integer(required=True)
    hours = ma.fields.Dict(required=True)


class BoosterIntervalSchema(StrictSchema):
    interval_days = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=7, max=365))

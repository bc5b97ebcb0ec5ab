from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from clinic.core.fields import AwareDateTime, Id, StrictBoolean, StrictSchema


class ProtocolSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    code = ma.fields.String(required=True)
    version = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    rules = ma.fields.Dict(required=True)


class ProtocolListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ProtocolSchema), required=True)


class CreateChairSchema(StrictSchema):
    name = ma.fields.String(required=True, validate=validate.Length(min=1, max=80))


class ChairSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    location_id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    is_active = StrictBoolean(required=True)


class CreateClosureSchema(StrictSchema):
    starts_on = ma.fields.Date(required=True)
    ends_on = ma.fields.Date(required=True)
    reason = ma.fields.String(required=True, validate=validate.Length(min=1, max=200))


class ClosureSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    location_id = ma.fields.Integer(required=True)
    starts_on = ma.fields.Date(required=True)
    ends_on = ma.fields.Date(required=True)
    reason = ma.fields.String(required=True)


class CreateSeriesSchema(StrictSchema):
    patient_id = Id(required=True)
    protocol = ma.fields.String(required=True, validate=validate.Length(min=1, max=40))
    location_id = Id(required=True)
    prescriber_id = Id(required=True)
    start_on = ma.fields.Date(required=True)
    preferred_time = ma.fields.Time(required=True, metadata={"description": "Local wall-clock time, HH:MM"})


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
    start_on = ma.fields.Date(required=True)
    preferred_time = ma.fields.Time(required=True)
    status = ma.fields.String(required=True)
    appointments = ma.fields.List(ma.fields.Nested(AppointmentSchema), required=True)
    reviews = ma.fields.Method("_reviews", required=True)

    def _reviews(self, series: object) -> list[dict]:
        from clinic.scheduling.service import reviews

        return reviews(series)  # type: ignore[arg-type]


class CancelSchema(StrictSchema):
    reason = ma.fields.String(required=True, validate=validate.Length(min=1, max=500))


class AbsentSchema(StrictSchema):
    reason = ma.fields.String(load_default=None, validate=validate.Length(max=500))


class AbsentResultSchema(ma.Schema):
    appointment = ma.fields.Nested(AppointmentSchema, required=True)
    follow_up = ma.fields.String(required=True)


class RescheduleSchema(StrictSchema):
    starts_at = AwareDateTime(required=True)


class CalendarQuerySchema(StrictSchema):
    location_id = Id(required=True, strict=False)
    since = AwareDateTime(required=True)
    until = AwareDateTime(required=True)


class AppointmentListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(AppointmentSchema), required=True)


class CalendarFeedSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    url = ma.fields.String(required=True)


class PrescriberHoursSchema(ma.Schema):
    location_id = ma.fields.Integer(required=True)
    user_id = ma.fields.Integer(required=True)
    hours = ma.fields.Dict(required=True)

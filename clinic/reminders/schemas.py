from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from clinic.core.fields import Id, StrictBoolean, StrictSchema
from clinic.reminders.models import ReminderStatus
from clinic.reminders.rules import KINDS

HHMM = validate.Regexp(r"^([01]\d|2[0-3]):[0-5]\d$", error="Use HH:MM (24-hour).")


class ReminderQuerySchema(StrictSchema):
    patient_id = Id(strict=False)
    appointment_id = Id(strict=False)
    location_id = Id(strict=False)
    status = ma.fields.String(validate=validate.OneOf([s.value for s in ReminderStatus]))
    kind = ma.fields.String(validate=validate.OneOf(KINDS))
    limit = ma.fields.Integer(strict=False, load_default=200, validate=validate.Range(min=1, max=1000))


class ReminderSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    kind = ma.fields.String(required=True)
    channel = ma.fields.String(required=True)
    due_at = ma.fields.AwareDateTime(required=True)
    status = ma.fields.String(required=True, metadata={"enum": [s.value for s in ReminderStatus]})
    appointment_id = ma.fields.Integer(allow_none=True)
    sent_at = ma.fields.AwareDateTime(allow_none=True)
    patient_id = ma.fields.Integer(allow_none=True)
    location_id = ma.fields.Integer(required=True)
    audience = ma.fields.String(required=True)
    planned_for = ma.fields.AwareDateTime(required=True)
    attempts = ma.fields.Integer(required=True)
    next_attempt_at = ma.fields.AwareDateTime(required=True)
    last_error = ma.fields.String(allow_none=True)
    cancelled_at = ma.fields.AwareDateTime(allow_none=True)
    cancel_reason = ma.fields.String(allow_none=True)


class ReminderListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ReminderSchema), required=True)


class CancelReminderSchema(StrictSchema):
    reason = ma.fields.String(required=True, validate=validate.Length(min=1, max=200))


class _Toggle(StrictSchema):
    enabled = StrictBoolean()


class QuietHoursSchema(StrictSchema):
    start = ma.fields.String(allow_none=True, validate=HHMM)
    end = ma.fields.String(allow_none=True, validate=HHMM)


class AppointmentRuleSchema(_Toggle):
    lead_hours = ma.fields.List(
        ma.fields.Integer(strict=True, validate=validate.Range(min=1, max=24 * 14)), validate=validate.Length(max=4)
    )


class AtRuleSchema(_Toggle):
    at = ma.fields.String(validate=HHMM)


class MissedRuleSchema(_Toggle):
    business_days = ma.fields.Integer(strict=True, validate=validate.Range(min=1, max=10))


class BoosterRuleSchema(_Toggle):
    interval_days = ma.fields.Integer(strict=True, validate=validate.Range(min=0, max=365))
    lead_days = ma.fields.Integer(strict=True, validate=validate.Range(min=0, max=60))


class ShiftCountRuleSchema(_Toggle):
    minutes_before_close = ma.fields.Integer(strict=True, validate=validate.Range(min=0, max=240))


class DaysBeforeListSchema(_Toggle):
    days_before = ma.fields.List(
        ma.fields.Integer(strict=True, validate=validate.Range(min=1, max=365)), validate=validate.Length(max=6)
    )


class LotRuleSchema(_Toggle):
    days_before = ma.fields.Integer(strict=True, validate=validate.Range(min=1, max=365))


class Form106RuleSchema(_Toggle):
    filing_days_before = ma.fields.List(
        ma.fields.Integer(strict=True, validate=validate.Range(min=1, max=44)), validate=validate.Length(max=6)
    )


class PmfRuleSchema(_Toggle):
    due_day = ma.fields.Integer(strict=True, validate=validate.Range(min=1, max=7))


class ReminderSettingsSchema(StrictSchema):
    """A location's rules; any part left out keeps the default (clinic/reminders/rules.py)."""

    quiet_hours = ma.fields.Nested(QuietHoursSchema)
    staff_send_time = ma.fields.String(validate=HHMM)
    appointment = ma.fields.Nested(AppointmentRuleSchema)
    next_day_checkin = ma.fields.Nested(AtRuleSchema)
    missed_follow_up = ma.fields.Nested(MissedRuleSchema)
    reviews = ma.fields.Nested(_Toggle)
    course_completion = ma.fields.Nested(_Toggle)
    booster_due = ma.fields.Nested(BoosterRuleSchema)
    shift_count = ma.fields.Nested(ShiftCountRuleSchema)
    inventory_due = ma.fields.Nested(DaysBeforeListSchema)
    lot_expiring = ma.fields.Nested(LotRuleSchema)
    form_106 = ma.fields.Nested(Form106RuleSchema)
    pmf = ma.fields.Nested(PmfRuleSchema)


class OptOutsSchema(StrictSchema):
    opted_out_channels = ma.fields.List(
        ma.fields.String(validate=validate.OneOf(["email", "sms"])), required=True, validate=validate.Length(max=2)
    )


class NoticeSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    kind = ma.fields.String(required=True)
    title = ma.fields.String(required=True)
    body = ma.fields.String(required=True)
    link = ma.fields.String(allow_none=True)
    created_at = ma.fields.AwareDateTime(required=True)
    read = StrictBoolean(required=True)


class NoticeListSchema(ma.Schema):
    unread = ma.fields.Integer(required=True)
    items = ma.fields.List(ma.fields.Nested(NoticeSchema), required=True)

from __future__ import annotations

from typing import Any, ClassVar

import marshmallow as ma
from marshmallow import validate

from clinic.core.fields import ChartedTime, Id, Milligrams, StrictBoolean, StrictSchema
from clinic.inventory.schemas import LedgerEntrySchema, WitnessFields
from clinic.visits.models import RemainderAction

REASON = validate.Length(min=1, max=1000)


def _int(low: int, high: int, **kwargs: Any) -> ma.fields.Integer:
    return ma.fields.Integer(strict=True, validate=validate.Range(min=low, max=high), **kwargs)


class PreparationSchema(StrictSchema):
    """SPR-09, as asked at check-in: True met, False not met, absent not asked."""

    fasted_2h = StrictBoolean(load_default=None, metadata={"description": "No food for at least 2 hours"})
    no_liquids_30min = StrictBoolean(load_default=None, metadata={"description": "No liquids for 30 minutes"})
    nasal_medicines_1h = StrictBoolean(
        load_default=None, metadata={"description": "Nasal corticosteroid or decongestant taken at least 1 h before"}
    )
    counselled = StrictBoolean(
        load_default=None, metadata={"description": "Counselled on monitoring, sedation and dissociation (SPR-08)"}
    )


class CheckInSchema(StrictSchema):
    ride_home_arranged = StrictBoolean(required=True)
    medication_changes = ma.fields.List(ma.fields.String(validate=validate.Length(min=1, max=200)), load_default=None)
    pregnant = StrictBoolean(load_default=None)
    substance_use = StrictBoolean(
        load_default=None, metadata={"description": "Substance use since the last visit (CI-21)"}
    )
    occurred_at = ChartedTime(load_default=None)
    preparation = ma.fields.Nested(PreparationSchema, load_default=None)
    ride_contact = ma.fields.String(load_default=None, validate=validate.Length(max=200))
    symptoms_worsened = StrictBoolean(load_default=None)


class ArrangementsSchema(StrictSchema):
    ride_home_arranged = StrictBoolean(load_default=None)
    ride_contact = ma.fields.String(load_default=None, validate=validate.Length(max=200))
    preparation = ma.fields.Nested(PreparationSchema, load_default=None)
    symptoms_worsened = StrictBoolean(load_default=None)


class ReasonSchema(StrictSchema):
    reason = ma.fields.String(required=True, validate=REASON)


class VitalsInSchema(StrictSchema):
    systolic = _int(40, 300, required=True)
    diastolic = _int(20, 200, required=True, metadata={"description": "Refused (422) unless below systolic."})
    heart_rate = _int(20, 250, required=True)
    spo2 = _int(50, 100, load_default=None)
    respiratory_rate = _int(0, 60, load_default=None)
    sedation = _int(0, 5, load_default=None, metadata={"description": "MOAA/S, 5 = responds readily to name"})
    dissociation = _int(0, 3, load_default=None, metadata={"description": "0 none, 1 mild, 2 moderate, 3 severe"})
    note = ma.fields.String(load_default=None, validate=validate.Length(max=1000))
    taken_at = ChartedTime(load_default=None)

    @ma.validates_schema
    def _bp(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["diastolic"] >= data["systolic"]:
            raise ma.ValidationError("Must be below the systolic pressure.", "diastolic")


class OutOfRangeSchema(ma.Schema):
    field = ma.fields.String(required=True)
    value = ma.fields.Integer(required=True)
    limit = ma.fields.String(required=True)


class VitalsSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    taken_at = ma.fields.AwareDateTime(required=True)
    recorded_at = ma.fields.AwareDateTime(required=True)
    recorded_by_id = ma.fields.Integer(required=True)
    systolic = ma.fields.Integer(required=True)
    diastolic = ma.fields.Integer(required=True)
    heart_rate = ma.fields.Integer(required=True)
    spo2 = ma.fields.Integer(allow_none=True)
    respiratory_rate = ma.fields.Integer(allow_none=True)
    sedation = ma.fields.Integer(allow_none=True)
    dissociation = ma.fields.Integer(allow_none=True)
    note = ma.fields.String(allow_none=True)
    minutes_after_dose = ma.fields.Integer(allow_none=True)
    checkpoints = ma.fields.List(ma.fields.Integer(), required=True)
    late_for = ma.fields.List(ma.fields.Integer(), required=True)
    late = ma.fields.Function(lambda v: bool(v.late_for), required=True)
    out_of_range = ma.fields.List(ma.fields.Nested(OutOfRangeSchema), required=True)


class OrderSchema(StrictSchema):
    dose_mg = Milligrams(attribute="dose_ug", load_default=None)
    reason = ma.fields.String(load_default=None, validate=REASON)


class DoseInSchema(WitnessFields):
    container_id = Id(load_default=None)
    container_ids = ma.fields.List(Id(), load_default=None, validate=validate.Length(min=1, max=6))
    dose_mg = Milligrams(attribute="dose_ug", load_default=None)
    administered_at = ChartedTime(load_default=None)
    device_times = ma.fields.List(ChartedTime(), load_default=None, validate=validate.Length(min=1, max=6))
    drawn_mg = Milligrams(attribute="drawn_ug", load_default=None)
    infusion_ended_at = ChartedTime(load_default=None)
    duration_reason = ma.fields.String(load_default=None, validate=REASON)
    reason = ma.fields.String(
        load_default=None,
        validate=REASON,
        metadata={"description": "A prescriber's reason for a dose outside the protocol's bounds"},
    )
    waste_reason = ma.fields.String(load_default=None, validate=validate.Length(min=1, max=500))

    #: a vial or devices, never both (null counts as not given)
    OPENAPI_RULES: ClassVar[dict[str, Any]] = {
        "oneOf": [
            {"required": ["container_id"], "properties": {"container_id": {"type": "integer"}}},
            {"required": ["container_ids"], "properties": {"container_ids": {"type": "array"}}},
        ]
    }

    @ma.post_load
    def _containers(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        one, many = data.pop("container_id"), data.pop("container_ids")
        if (one is None) == (many is None):
            raise ma.ValidationError("Give container_id (a vial) or container_ids (devices).", "container_id")
        data["container_ids"] = [one] if one is not None else many
        return data


class InfusionEndSchema(StrictSchema):
    ended_at = ChartedTime(load_default=None)
    duration_reason = ma.fields.String(load_default=None, validate=REASON)


class RemainderSchema(WitnessFields):
    container_id = Id(required=True)
    action = ma.fields.String(required=True, validate=validate.OneOf([a.value for a in RemainderAction]))
    measured_mg = Milligrams(attribute="measured_ug", positive=False, load_default=None)
    reason = ma.fields.String(load_default=None, validate=validate.Length(min=1, max=500))
    occurred_at = ChartedTime(load_default=None)


class DischargeSchema(StrictSchema):
    ride_confirmed = StrictBoolean(required=True)
    clinically_stable = StrictBoolean(required=True)
    sedation_resolved = StrictBoolean(required=True)
    dissociation_resolved = StrictBoolean(required=True)
    override_reason = ma.fields.String(load_default=None, validate=REASON)
    occurred_at = ChartedTime(load_default=None)


class DoseItemSchema(ma.Schema):
    container_id = ma.fields.Integer(required=True)
    administered_at = ma.fields.AwareDateTime(required=True)
    drawn_mg = Milligrams(attribute="drawn_ug", required=True)
    administered_mg = Milligrams(attribute="administered_ug", required=True)
    wasted_mg = Milligrams(attribute="wasted_ug", positive=False, required=True)
    administration_entry_id = ma.fields.Integer(required=True)
    waste_entry_id = ma.fields.Integer(allow_none=True)
    remainder_action = ma.fields.String(allow_none=True)
    remainder_mg = Milligrams(attribute="remainder_ug", positive=False, allow_none=True)


class VisitSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    appointment_id = ma.fields.Integer(required=True)
    patient_id = ma.fields.Integer(required=True)
    location_id = ma.fields.Integer(required=True)
    series_id = ma.fields.Integer(required=True)
    checked_in_at = ma.fields.AwareDateTime(required=True)
    ride_home_arranged = StrictBoolean(required=True)
    ride_contact = ma.fields.String(allow_none=True)
    preparation = ma.fields.Dict(required=True)
    screening_id = ma.fields.Integer(allow_none=True)
    symptoms_worsened = StrictBoolean(allow_none=True)
    hold_released_at = ma.fields.AwareDateTime(allow_none=True)
    hold_release_reason = ma.fields.String(allow_none=True)
    ordered_mg = Milligrams(attribute="ordered_ug", allow_none=True)
    ordered_by_id = ma.fields.Integer(allow_none=True)
    dose_mg = Milligrams(attribute="dose_ug", allow_none=True)
    dose_started_at = ma.fields.AwareDateTime(allow_none=True)
    dose_ended_at = ma.fields.AwareDateTime(allow_none=True)
    earliest_discharge_at = ma.fields.AwareDateTime(allow_none=True)
    ready_at = ma.fields.AwareDateTime(allow_none=True)
    discharged_at = ma.fields.AwareDateTime(allow_none=True)
    early_discharge_reason = ma.fields.String(allow_none=True)
    discharge_checks = ma.fields.Dict(allow_none=True)
    doses = ma.fields.List(ma.fields.Nested(DoseItemSchema), required=True)
    vitals = ma.fields.List(ma.fields.Nested(VitalsSchema), required=True)


class VisitOutSchema(ma.Schema):
    """A visit step's answer: the appointment's new state and the visit."""

    appointment_id = ma.fields.Integer(required=True)
    status = ma.fields.String(required=True)
    visit = ma.fields.Nested(VisitSchema, required=True)
    follow_up = ma.fields.String(allow_none=True)
    instructions = ma.fields.String(allow_none=True)


class AlertSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    kind = ma.fields.String(required=True)
    checkpoint_minutes = ma.fields.Integer(required=True)
    due_at = ma.fields.AwareDateTime(required=True)
    raised_at = ma.fields.AwareDateTime(allow_none=True)
    satisfied_at = ma.fields.AwareDateTime(allow_none=True)
    late = StrictBoolean(required=True)


class TimersSchema(ma.Schema):
    dose_started_at = ma.fields.AwareDateTime(allow_none=True)
    earliest_discharge_at = ma.fields.AwareDateTime(allow_none=True)
    seconds_left = ma.fields.Integer(allow_none=True)
    next_vitals_due_at = ma.fields.AwareDateTime(allow_none=True)
    next_vitals_checkpoint = ma.fields.Integer(allow_none=True)
    vitals_due = ma.fields.List(ma.fields.AwareDateTime(), required=True)
    overdue_checkpoints = ma.fields.List(ma.fields.Integer(), required=True)
    observation_complete = StrictBoolean(required=True)
    alerts = ma.fields.List(ma.fields.Nested(AlertSchema), required=True)


class DoseOutSchema(ma.Schema):
    administration = ma.fields.Nested(LedgerEntrySchema, required=True)
    administrations = ma.fields.List(ma.fields.Nested(LedgerEntrySchema), required=True)
    waste = ma.fields.Nested(LedgerEntrySchema, allow_none=True)
    status = ma.fields.String(required=True)
    observation = ma.fields.Nested(TimersSchema, required=True)
    visit = ma.fields.Nested(VisitSchema, required=True)


class GateSchema(ma.Schema):
    code = ma.fields.String(required=True)
    message = ma.fields.String(required=True)


class EventSchema(ma.Schema):
    from_status = ma.fields.String(required=True)
    to_status = ma.fields.String(required=True)
    actor_id = ma.fields.Integer(required=True)
    occurred_at = ma.fields.AwareDateTime(required=True)
    recorded_at = ma.fields.AwareDateTime(required=True)
    note = ma.fields.String(allow_none=True)


class VisitDetailSchema(ma.Schema):
    appointment_id = ma.fields.Integer(required=True)
    status = ma.fields.String(required=True)
    visit = ma.fields.Nested(VisitSchema, allow_none=True)
    protocol = ma.fields.Dict()
    gates = ma.fields.List(ma.fields.Nested(GateSchema))
    held = StrictBoolean()
    events = ma.fields.List(ma.fields.Nested(EventSchema))
    timers = ma.fields.Nested(TimersSchema)


class BoardQuerySchema(StrictSchema):
    location_id = Id(required=True, strict=False)


class BoardItemSchema(TimersSchema):
    appointment_id = ma.fields.Integer(required=True)
    visit_id = ma.fields.Integer(required=True)
    patient_id = ma.fields.Integer(required=True)
    patient_name = ma.fields.String(required=True)
    chair = ma.fields.String(required=True)
    status = ma.fields.String(required=True)


class BoardSchema(ma.Schema):
    location_id = ma.fields.Integer(required=True)
    now = ma.fields.AwareDateTime(required=True)
    items = ma.fields.List(ma.fields.Nested(BoardItemSchema), required=True)

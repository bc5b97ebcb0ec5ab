"""Patient input schemas and the output views.

Two patient views (ARCHITECTURE rule 4, data minimisation): ``PatientSchema`` is what the front
desk sees (demographics, contact, and of the screening only its eligibility); ``PatientClinicalSchema``
adds the latest weight and the full latest screening (answers, flags, override) for clinicians and
admins. Screening answers and flags are only ever dumped by the clinical schemas.
"""

from __future__ import annotations

from typing import Any, ClassVar

import marshmallow as ma
from marshmallow import validate

from clinic.core.fields import (
    ChartedDay,
    ChartedTime,
    Date,
    DecimalString,
    Id,
    StrictBoolean,
    StrictSchema,
    TimeZoneName,
)
from clinic.patients.models import Channel
from clinic.patients.screening import Eligibility, Level

SEXES = ("M", "F", "X")
CHANNELS = tuple(c.value for c in Channel)
_PHONE = validate.Regexp(r"^\+?[0-9 ().-]{7,40}$", error="Digits, spaces and + ( ) . - only, e.g. +1 312 555 0100.")
_PRINTABLE = validate.Regexp(r"^[^\x00-\x1f\x7f]*$", error="Must not contain control characters.")


def _name(**kwargs: Any) -> ma.fields.String:
    return ma.fields.String(validate=[validate.Length(min=1, max=100), _PRINTABLE], **kwargs)


#: the rule service.create_patient and update_patient apply, which no JSON Schema keyword can say
DOB_RULE = "Refused (422) if after today, or more than 130 years before it."


class _PatientFields(StrictSchema):
    first_name = _name(required=True)
    last_name = _name(required=True)
    date_of_birth = Date(required=True, metadata={"description": DOB_RULE})
    address = ma.fields.String(required=True, validate=validate.Length(min=1, max=500))
    timezone = TimeZoneName(required=True)
    email = ma.fields.Email(allow_none=True, validate=validate.Length(max=254))
    phone = ma.fields.String(allow_none=True, validate=_PHONE)
    sex = ma.fields.String(allow_none=True, validate=validate.OneOf(SEXES))
    preferred_channel = ma.fields.String(validate=validate.OneOf(CHANNELS))
    reminders_opt_out = StrictBoolean()
    emergency_contact = ma.fields.String(allow_none=True, validate=validate.Length(max=200))
    ride_contact = ma.fields.String(allow_none=True, validate=validate.Length(max=200))
    location_id = Id(
        metadata={
            "description": "Where the patient is registered (SYS-12); by default the user's only location "
            "or the one they chose last"
        }
    )


class CreatePatientSchema(_PatientFields):
    """POST /patients: CONTRACT's required fields; the rest optional."""


class UpdatePatientSchema(_PatientFields):
    """PATCH /patients/{id}: any of the creation fields; null clears an optional one."""

    first_name = _name()
    last_name = _name()
    date_of_birth = Date(metadata={"description": DOB_RULE})
    address = ma.fields.String(validate=validate.Length(min=1, max=500))
    timezone = TimeZoneName()

    OPENAPI_RULES: ClassVar[dict[str, Any]] = {"minProperties": 1}  # at least one field to change

    @ma.validates_schema
    def _not_empty(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data:
            raise ma.ValidationError("Give at least one field to change.", "_schema")


class PatientQuerySchema(StrictSchema):
    q = ma.fields.String(load_default=None, validate=[validate.Length(max=100), _PRINTABLE])
    date_of_birth = Date(load_default=None)
    cursor = ma.fields.String(load_default=None, validate=validate.Regexp(r"^\d{1,9}$"))
    limit = ma.fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


# --- screening -----------------------------------------------------------------------------------


class FlagSchema(ma.Schema):
    code = ma.fields.String(required=True)
    level = ma.fields.String(required=True, validate=validate.OneOf([lv.value for lv in Level]))
    text = ma.fields.String(required=True)


class ScreeningAnswersSchema(StrictSchema):
    """CONTRACT's eight required yes/no answers and the medicines; CI-17..CI-20 may be left out
    (not asked). A missing required answer is refused: an unanswered question is never a "no"."""

    pregnant = StrictBoolean(required=True)
    breastfeeding = StrictBoolean(required=True)
    psychosis_or_mania = StrictBoolean(required=True)
    uncontrolled_hypertension = StrictBoolean(required=True)
    cardiovascular_disease = StrictBoolean(required=True)
    aneurysm_avm_or_ich = StrictBoolean(required=True)
    substance_use_disorder = StrictBoolean(required=True)
    prior_ketamine_reaction = StrictBoolean(required=True)
    medications = ma.fields.List(
        ma.fields.String(validate=[validate.Length(min=1, max=200), _PRINTABLE]),
        required=True,
        validate=validate.Length(max=100),
        metadata={"description": "Names as the patient gives them (generic or brand); [] for none"},
    )
    raised_intracranial_or_intraocular_pressure = StrictBoolean(load_default=None, allow_none=True)
    untreated_hyperthyroidism = StrictBoolean(load_default=None, allow_none=True)
    liver_or_bladder_disease = StrictBoolean(load_default=None, allow_none=True)
    suicidality = StrictBoolean(load_default=None, allow_none=True)


class RecordScreeningSchema(StrictSchema):
    answers = ma.fields.Nested(ScreeningAnswersSchema, required=True)
    location_id = Id(load_default=None)


class ScreeningSummarySchema(ma.Schema):
    """What the front desk sees of a screening: the decision, not its reasons."""

    id = ma.fields.Integer(required=True)
    eligibility = ma.fields.String(required=True, validate=validate.OneOf([e.value for e in Eligibility]))
    screened_at = ma.fields.AwareDateTime(required=True)
    overridden_at = ma.fields.AwareDateTime(allow_none=True)
    #: CI-22: pending while a prescriber has not reviewed a screening that cleared earlier flags
    review_status = ma.fields.String(allow_none=True, validate=validate.OneOf(["pending", "approved", "rejected"]))


class ScreeningSchema(ScreeningSummarySchema):
    patient_id = ma.fields.Integer(required=True)
    location_id = ma.fields.Integer(allow_none=True)
    flags = ma.fields.List(ma.fields.Nested(FlagSchema), required=True)
    answers = ma.fields.Dict(required=True)
    screened_by_id = ma.fields.Integer(required=True)
    override_reason = ma.fields.String(allow_none=True)
    overridden_by_id = ma.fields.Integer(allow_none=True)
    review_cleared = ma.fields.List(ma.fields.String(), allow_none=True)
    review_reason = ma.fields.String(allow_none=True)
    reviewed_by_id = ma.fields.Integer(allow_none=True)
    reviewed_at = ma.fields.AwareDateTime(allow_none=True)


class ScreeningListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ScreeningSchema), required=True)


class OverrideScreeningSchema(StrictSchema):
    reason = ma.fields.String(required=True, validate=[validate.Length(min=10, max=1000), _PRINTABLE])


class ReviewScreeningSchema(StrictSchema):
    """CI-22: a prescriber's decision on a screening that cleared earlier HARD or OVERRIDE flags."""

    decision = ma.fields.String(required=True, validate=validate.OneOf(["approved", "rejected"]))
    reason = ma.fields.String(required=True, validate=[validate.Length(min=10, max=1000), _PRINTABLE])


# --- patients out --------------------------------------------------------------------------------


class PatientSchema(ma.Schema):
    """The front-desk view (and the base of the clinical one)."""

    id = ma.fields.Integer(required=True)
    first_name = ma.fields.String(required=True)
    last_name = ma.fields.String(required=True)
    date_of_birth = Date(required=True)
    sex = ma.fields.String(allow_none=True)
    address = ma.fields.String(required=True)
    timezone = ma.fields.String(required=True)
    email = ma.fields.String(allow_none=True)
    phone = ma.fields.String(allow_none=True)
    preferred_channel = ma.fields.String(required=True, validate=validate.OneOf(CHANNELS))
    reminders_opt_out = StrictBoolean(required=True)
    emergency_contact = ma.fields.String(allow_none=True)
    ride_contact = ma.fields.String(allow_none=True)
    location_id = ma.fields.Integer(allow_none=True)
    rems_enrolled_on = Date(allow_none=True)
    screening = ma.fields.Nested(ScreeningSummarySchema, allow_none=True)


class PatientClinicalSchema(PatientSchema):
    """Clinicians and admins: adds the latest weight and the whole latest screening."""

    latest_weight_kg = DecimalString(scale=1000, attribute="latest_weight_g", allow_none=True)
    screening = ma.fields.Nested(ScreeningSchema, allow_none=True)


class PatientListItemSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    first_name = ma.fields.String(required=True)
    last_name = ma.fields.String(required=True)
    date_of_birth = Date(required=True)
    phone = ma.fields.String(allow_none=True)
    email = ma.fields.String(allow_none=True)
    eligibility = ma.fields.Function(lambda r: r.screening.eligibility if r.screening else None, allow_none=True)


class PatientPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(PatientListItemSchema), required=True)
    next_cursor = ma.fields.String(allow_none=True, required=True)


# --- weights and REMS ----------------------------------------------------------------------------


#: 2 to 400 kg (service.MIN_WEIGHT_G, MAX_WEIGHT_G), at most three places: stated in the document
WEIGHT_KG = r"^(?:(?:[2-9]|[1-9]\d|[1-3]\d\d)(?:\.\d{1,3})?|400(?:\.0{1,3})?)$"


class RecordWeightSchema(StrictSchema):
    weight_kg = DecimalString(
        scale=1000,
        pattern=WEIGHT_KG,
        whole=(2, 400),
        too_large="Must be between 2 and 400 kg.",
        required=True,
        attribute="weight_g",
        metadata={"description": 'kg as a decimal string, e.g. "72.4"'},
    )
    measured_at = ChartedTime(load_default=None)


class WeightSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    patient_id = ma.fields.Integer(required=True)
    weight_kg = DecimalString(scale=1000, attribute="weight_g", required=True)
    measured_at = ma.fields.AwareDateTime(required=True)
    recorded_by_id = ma.fields.Integer(required=True)
    recorded_at = ma.fields.AwareDateTime(required=True)


class WeightListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(WeightSchema), required=True)


class RemsEnrollmentSchema(StrictSchema):
    enrolled_on = ChartedDay(required=True)


class RemsEnrollmentOutSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    patient_id = ma.fields.Integer(required=True)
    enrolled_on = Date(required=True)
    recorded_by_id = ma.fields.Integer(required=True)
    recorded_at = ma.fields.AwareDateTime(required=True)

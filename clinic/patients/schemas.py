from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from clinic.core.fields import StrictSchema, TimeZoneName


class CreatePatientSchema(StrictSchema):
    first_name = ma.fields.String(required=True, validate=validate.Length(min=1, max=100))
    last_name = ma.fields.String(required=True, validate=validate.Length(min=1, max=100))
    date_of_birth = ma.fields.Date(required=True)
    address = ma.fields.String(required=True, validate=validate.Length(min=1, max=500))
    timezone = TimeZoneName(required=True)
    email = ma.fields.Email(load_default=None, validate=validate.Length(max=254))
    phone = ma.fields.String(load_default=None, validate=validate.Length(max=40))


class PatientSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    first_name = ma.fields.String(required=True)
    last_name = ma.fields.String(required=True)
    date_of_birth = ma.fields.Date(required=True)
    address = ma.fields.String(required=True)
    timezone = ma.fields.String(required=True)
    email = ma.fields.String(allow_none=True)
    phone = ma.fields.String(allow_none=True)

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from clinic.core.fields import DateOrTimestamp, Id, StrictSchema
from clinic.exports.models import ExportStatus, PurposeKind
from clinic.exports.verifier import KINDS, PROFILES

FORMATS = ("csv", "jsonl", "pdf")


class ExportRequestSchema(StrictSchema):
    kind = ma.fields.String(required=True, validate=validate.OneOf(list(KINDS)))
    format = ma.fields.String(required=True, validate=validate.OneOf(FORMATS))
    #: a date (the location's local day; ``until`` inclusive) or a timestamp with its offset
    since = DateOrTimestamp(required=True, validate=validate.Length(min=10, max=40))
    until = DateOrTimestamp(
        required=True,
        validate=validate.Length(min=10, max=40),
        metadata={"description": "Refused (422) unless after since (a date: that whole local day included)."},
    )
    location_id = Id(allow_none=True)
    profile = ma.fields.String(load_default="dea-inspection", validate=validate.OneOf(list(PROFILES)))
    schedule = ma.fields.String(allow_none=True, validate=validate.OneOf(["CII", "CIII", "CIV", "CV"]))
    drug_id = Id(allow_none=True)
    recipient = ma.fields.String(allow_none=True, validate=validate.Length(max=200))
    recipient_address = ma.fields.String(allow_none=True, validate=validate.Length(max=500))
    purpose_kind = ma.fields.String(
        load_default=PurposeKind.operations.value, validate=validate.OneOf([p.value for p in PurposeKind])
    )
    purpose = ma.fields.String(allow_none=True, validate=validate.Length(max=500))


class ExportSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    kind = ma.fields.String(required=True)
    format = ma.fields.String(attribute="file_format", required=True)
    profile = ma.fields.String(required=True)
    location_id = ma.fields.Integer(allow_none=True)
    since = ma.fields.AwareDateTime(required=True)
    until = ma.fields.AwareDateTime(required=True)
    schedule = ma.fields.String(allow_none=True)
    drug_id = ma.fields.Integer(allow_none=True)
    recipient = ma.fields.String(allow_none=True)
    purpose_kind = ma.fields.String(required=True)
    status = ma.fields.String(required=True, metadata={"enum": [s.value for s in ExportStatus]})
    rows_done = ma.fields.Integer(required=True)
    rows_total = ma.fields.Integer(allow_none=True)
    rows = ma.fields.Integer(allow_none=True)
    manifest_sha256 = ma.fields.String(allow_none=True)
    verification = ma.fields.String(allow_none=True)
    error = ma.fields.String(allow_none=True)
    created_at = ma.fields.AwareDateTime(required=True)
    finished_at = ma.fields.AwareDateTime(allow_none=True)


class ExportListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ExportSchema), required=True)


class SigningKeySchema(ma.Schema):
    public_key = ma.fields.String(required=True)
    fingerprint = ma.fields.String(required=True)


class DisclosureQuerySchema(StrictSchema):
    since = DateOrTimestamp(required=True, validate=validate.Length(min=10, max=40))
    until = DateOrTimestamp(
        required=True,
        validate=validate.Length(min=10, max=40),
        metadata={"description": "Refused (422) unless after since (a date: that whole local day included)."},
    )


class DisclosureSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    disclosed_at = ma.fields.AwareDateTime(required=True)
    recipient = ma.fields.String(required=True)
    recipient_address = ma.fields.String(allow_none=True)
    description = ma.fields.String(required=True)
    purpose_kind = ma.fields.String(required=True)
    purpose = ma.fields.String(required=True)
    export_id = ma.fields.Integer(required=True)


class DisclosureListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(DisclosureSchema), required=True)

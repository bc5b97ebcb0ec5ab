from __future__ import annotations

from typing import Any, ClassVar

import marshmallow as ma
from marshmallow import validate

from clinic.auth.models import DEFAULT_LICENSE_TYPE, LicenseType, Role
from clinic.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from clinic.core.fields import NOT_BLANK, StrictBoolean, StrictSchema


def _GIVEN(name: str) -> dict[str, Any]:
    """JSON Schema for "the field is there, not null and not blank" (blank is read as not given)."""
    return {"required": [name], "properties": {name: {"type": "string", "pattern": NOT_BLANK}}}


class CreateTokenSchema(StrictSchema):
    email = ma.fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = ma.fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=1024))
    totp_code = ma.fields.String(load_default=None, validate=validate.Regexp(r"^\d{6}$"))
    ttl_hours = ma.fields.Integer(load_default=None, validate=validate.Range(min=1, max=24 * 30))


class TokenSchema(ma.Schema):
    token = ma.fields.String(required=True)
    expires_at = ma.fields.AwareDateTime(required=True)


class UserSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    email = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    role = ma.fields.String(required=True, validate=validate.OneOf([r.value for r in Role]))
    license_number = ma.fields.String(allow_none=True)
    license_type = ma.fields.String(allow_none=True)
    is_active = StrictBoolean(required=True)


class CreateUserSchema(StrictSchema):
    email = ma.fields.Email(required=True, validate=validate.Length(max=254))
    name = ma.fields.String(required=True, validate=validate.Length(min=1, max=200))
    role = ma.fields.String(required=True, validate=validate.OneOf([r.value for r in Role]))
    license_number = ma.fields.String(load_default=None, validate=validate.Length(max=64))
    license_type = ma.fields.String(load_default=None, validate=validate.OneOf([t.value for t in LicenseType]))
    password = ma.fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH),
        metadata={
            "description": "Refused (422) if on the bundled list of breached or common passwords, or if it "
            "holds a word of the user's name or e-mail (ASVS V6)."
        },
    )
    location_ids = ma.fields.List(
        ma.fields.Integer(validate=validate.Range(min=1, max=2**31 - 1)),
        load_default=list,
        validate=validate.Length(max=1000),
        metadata={"description": "Locations the new user is a member of (SYS-11); ignored for admins"},
    )

    #: service._license_type: a licence type needs its number; a number alone takes the role's usual
    #: type (nurse RN, prescriber MD), and other roles must name it
    OPENAPI_RULES: ClassVar[dict[str, Any]] = {
        "allOf": [
            {"anyOf": [{"not": _GIVEN("license_type")}, _GIVEN("license_number")]},
            {
                "anyOf": [
                    {"not": _GIVEN("license_number")},
                    _GIVEN("license_type"),
                    {"properties": {"role": {"enum": [role.value for role in DEFAULT_LICENSE_TYPE]}}},
                ]
            },
        ]
    }


class MembershipSchema(ma.Schema):
    user_id = ma.fields.Integer(required=True)
    location_id = ma.fields.Integer(required=True)
    location_ids = ma.fields.List(
        ma.fields.Integer(), required=True, metadata={"description": "Every location the user is a member of"}
    )


class UserListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(UserSchema), required=True)

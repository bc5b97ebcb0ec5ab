from __future__ import annotations

import re
from typing import Any, ClassVar

import marshmallow as ma
from marshmallow import validate

from clinic.core.fields import Date, StrictBoolean, StrictSchema, TimeZoneName
from clinic.locations.calendar import SUBDIVISIONS

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _dea_pattern() -> str:
    """DEA numbers as one regular expression, check digit included, so the OpenAPI document states them.

    The check digit d7 is (d1 + d3 + d5 + 2 * (d2 + d4 + d6)) mod 10. A pair (odd, even) adds
    odd + 2 * even; ``pair[r]`` is every pair adding r. The first two pairs add some u, then the third
    pair and the check digit follow: for each u, ten ways on, each ending in the digit it makes.
    """

    def pair(r: int) -> str:
        return "(?:" + "|".join(f"{(r - 2 * even) % 10}{even}" for even in range(10)) + ")"

    def first_two(u: int) -> str:
        return "(?:" + "|".join(pair(r) + pair((u - r) % 10) for r in range(10)) + ")"

    def last_three(u: int) -> str:
        return "(?:" + "|".join(pair(r) + str((u + r) % 10) for r in range(10)) + ")"

    return "^[A-Z][A-Z9](?:" + "|".join(first_two(u) + last_three(u) for u in range(10)) + ")$"


#: two letters (the second may be a 9), seven digits, the last a check digit
DEA_NUMBER = _dea_pattern()


def dea_number_check(value: str) -> None:
    """DEA numbers: two letters, seven digits, the last a check digit (21 CFR 1301 practice)."""
    if not re.fullmatch(r"[A-Z][A-Z9]\d{7}", value):
        raise ma.ValidationError("Two letters and seven digits, e.g. AB1234563.")
    d = [int(c) for c in value[2:]]
    if (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10 != d[6]:
        raise ma.ValidationError("The check digit does not match.")


class DeaNumber(ma.fields.String):
    """A DEA registration number; the document states its whole rule as a pattern (DEA_NUMBER)."""

    pattern = DEA_NUMBER

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {}).setdefault(
            "description", "Two letters and seven digits, the last a check digit, e.g. AB1234563."
        )
        super().__init__(validate=dea_number_check, **kwargs)


class DiscrepancyPatternSchema(StrictSchema):
    """DEA-35: this many unexplained shortages within this many days is a pattern."""

    count = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=2, max=100))
    days = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=366))


LEVELS = ["HARD", "OVERRIDE", "WARN"]


class JurisdictionSchema(StrictSchema):
    """SYS-04. Naming a state applies its preset (clinic.locations.profiles); fields set here win."""

    state = ma.fields.String(allow_none=True, validate=validate.OneOf(sorted(SUBDIVISIONS)))
    inventory_interval_months = ma.fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=1, max=24))
    #: DEA-15: at most two years; Iowa's one year and one week is 372
    inventory_interval_days = ma.fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=1, max=731))
    count_mode = ma.fields.String(validate=validate.OneOf(["exact", "estimated", "exact_liquid_quarters"]))
    waste_witness_required = StrictBoolean()
    witness_must_be_licensed = StrictBoolean()
    board_loss_notice_days = ma.fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=0, max=90))
    board_theft_notice_days = ma.fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=0, max=90))
    retention_years = ma.fields.Integer(strict=True, validate=validate.Range(min=2, max=30))
    #: SYS-02: while set, nothing of this location (nor the clinic's logs) is purged, however old
    legal_hold = ma.fields.Boolean()
    small_discrepancy_pattern = ma.fields.Nested(DiscrepancyPatternSchema)
    screening_levels = ma.fields.Dict(
        keys=ma.fields.String(validate=validate.Regexp(r"^CI-\d{2}$", error="A flag code such as CI-06.")),
        values=ma.fields.String(validate=validate.OneOf(LEVELS)),
        # OpenAPI 3.0 cannot say what keys look like (no propertyNames): the hundred codes are listed
        metadata={
            "openapi_rules": {
                "properties": {f"CI-{n:02d}": {"type": "string", "enum": LEVELS} for n in range(100)},
                "additionalProperties": False,
            }
        },
    )


class CreateLocationSchema(StrictSchema):
    name = ma.fields.String(required=True, validate=validate.Length(min=1, max=200))
    address = ma.fields.String(required=True, validate=validate.Length(min=1, max=500))
    dea_registration = DeaNumber(required=True)
    timezone = TimeZoneName(required=True)
    phone = ma.fields.String(load_default=None, validate=validate.Length(max=40))
    jurisdiction = ma.fields.Nested(JurisdictionSchema, load_default=None)
    rems_certified_until = Date(load_default=None)


class UpdateLocationSchema(StrictSchema):
    name = ma.fields.String(validate=validate.Length(min=1, max=200))
    address = ma.fields.String(validate=validate.Length(min=1, max=500))
    dea_registration = DeaNumber()
    timezone = TimeZoneName()
    phone = ma.fields.String(allow_none=True, validate=validate.Length(max=40))
    jurisdiction = ma.fields.Nested(JurisdictionSchema)
    rems_certified_until = Date(allow_none=True)


class LocationSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    address = ma.fields.String(required=True)
    phone = ma.fields.String(allow_none=True)
    dea_registration = ma.fields.String(required=True)
    timezone = ma.fields.String(required=True)
    jurisdiction = ma.fields.Dict(required=True)
    hours = ma.fields.Dict(required=True)
    rems_certified_until = Date(allow_none=True)


class LocationListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(LocationSchema), required=True)


class CreateStorageSiteSchema(StrictSchema):
    name = ma.fields.String(required=True, validate=validate.Length(min=1, max=120))


class StorageSiteSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    location_id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)


class OpeningSpan(ma.fields.List):
    """["HH:MM", "HH:MM"] in local wall-clock time, opening before closing; null when closed."""

    def __init__(self) -> None:
        super().__init__(
            ma.fields.String(validate=validate.Regexp(_HHMM)),
            allow_none=True,
            load_default=None,
            validate=self._span,
            metadata={
                "description": '["HH:MM", "HH:MM"] in local time, or null when closed. '
                "Refused (422) unless the opening is before the closing."
            },
        )

    @staticmethod
    def _span(value: list[str]) -> None:
        if len(value) != 2 or value[0] >= value[1]:
            raise ma.ValidationError('Give ["HH:MM", "HH:MM"] with the opening before the closing, or null.')


class HoursSchema(StrictSchema):
    """The whole week (a PUT): a day left out or null is closed; an empty body is refused, since it
    would close every day by accident."""

    OPENAPI_RULES: ClassVar[dict[str, Any]] = {"minProperties": 1}  # every field is a day: name one

    @ma.validates_schema(pass_original=True)
    def _names_a_day(self, data: dict, original: Any, **kwargs: Any) -> None:
        if isinstance(original, dict) and not any(day in original for day in DAYS):
            raise ma.ValidationError({"hours": ["Name the days (mon..sun), each open span or null when closed."]})

    mon = OpeningSpan()
    tue = OpeningSpan()
    wed = OpeningSpan()
    thu = OpeningSpan()
    fri = OpeningSpan()
    sat = OpeningSpan()
    sun = OpeningSpan()

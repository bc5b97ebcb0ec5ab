"""Marshmallow fields shared by the domains' schemas."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import marshmallow as ma
from marshmallow import validate
from werkzeug.routing import IntegerConverter

from clinic.core.time import EARLIEST, LATEST, OFF_THE_CALENDAR


class Milligrams(ma.fields.Field):
    """A drug amount: a decimal string in mg on the wire ("37.5"), integer micrograms inside.

    Floats are refused: a binary float cannot say 0.1 mg exactly.
    """

    def __init__(self, *, positive: bool = True, **kwargs: Any) -> None:
        self.positive = positive
        kwargs.setdefault("metadata", {}).setdefault("description", 'Decimal string in mg, e.g. "37.5"')
        super().__init__(**kwargs)

    def _serialize(self, value: int | None, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return format_mg(value)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ma.ValidationError('Give the amount as a decimal string in mg, e.g. "37.5".')
        try:
            mg = Decimal(str(value).strip())
        except InvalidOperation:
            raise ma.ValidationError("Not a number.") from None
        if not mg.is_finite():
            raise ma.ValidationError("Not a number.")
        ug = mg * 1000
        if ug != ug.to_integral_value():
            raise ma.ValidationError("At most three decimal places (1 microgram).")
        if self.positive and ug <= 0:
            raise ma.ValidationError("Must be more than zero.")
        if ug < 0:
            raise ma.ValidationError("Cannot be negative.")
        if ug > 10**12:
            raise ma.ValidationError("Too large.")
        return int(ug)


def format_mg(ug: int) -> str:
    sign = "-" if ug < 0 else ""
    whole, frac = divmod(abs(ug), 1000)
    return f"{sign}{whole}" + (f".{frac:03d}".rstrip("0") if frac else "")


class DecimalString(ma.fields.Field):
    """A positive decimal given as a string, scaled to an integer (``scale`` = 1000: thousandths)."""

    def __init__(self, *, scale: int, **kwargs: Any) -> None:
        self.scale = scale
        super().__init__(**kwargs)

    def _serialize(self, value: int | None, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return format_mg(value * 1000 // self.scale)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ma.ValidationError('Give a decimal string, e.g. "10" or "0.2".')
        try:
            d = Decimal(str(value).strip()) * self.scale
        except InvalidOperation:
            raise ma.ValidationError("Not a number.") from None
        if not d.is_finite() or d != d.to_integral_value() or d <= 0 or d > 10**12:
            raise ma.ValidationError("Must be a positive number with at most three decimal places.")
        return int(d)


#: zone files on disk that are no IANA name: "localtime" is the server's own zone (it would move
#: with the machine), "Factory" a placeholder, "posixrules" a template
NOT_IANA = frozenset({"localtime", "Factory", "posixrules", "posix", "right"})


@cache
def iana_names() -> frozenset[str]:
    return frozenset(available_timezones()) - NOT_IANA


class StrictBoolean(ma.fields.Boolean):
    """JSON ``true`` or ``false`` only: ``0``, ``1``, ``"yes"`` or ``"false"`` are refused, not guessed
    (marshmallow's Boolean takes them all, and ``"false"`` meant true to nobody who sent ``0``).
    Pages turn checkboxes into real booleans before loading (clinic.web.forms)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if value is True or value is False:
            return value
        raise self.make_error("invalid")


class TimeZoneName(ma.fields.String):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        name = super()._deserialize(value, attr, data, **kwargs)
        if name not in iana_names() or name.split("/", 1)[0] in NOT_IANA:
            raise ma.ValidationError("Not an IANA time zone, e.g. America/New_York.")
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ma.ValidationError("Not an IANA time zone, e.g. America/New_York.") from None
        return name


#: Dates past this year are refused as input: nothing a clinic books, enrols or certifies is that
#: far off, and far dates overflowed arithmetic (a day or a zone added) into 500s.
LAST_YEAR = 2100
BEYOND = f"Must not be after {LAST_YEAR}-12-31."


def _beyond(value: Any) -> bool:
    if isinstance(value, date):  # datetimes too
        return value.year > LAST_YEAR
    if isinstance(value, list | tuple):
        return any(_beyond(v) for v in value)
    return False


class StrictSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    @ma.validates_schema
    def _within_the_horizon(self, data: dict[str, Any], **kwargs: Any) -> None:
        """Every date or time given is on or before LAST_YEAR's last day (a 422 naming the field)."""
        bad = {}
        for name, field in self.fields.items():
            if field.dump_only:
                continue
            value = data.get(field.attribute or name)
            if _beyond(value):
                bad[field.data_key or name] = [BEYOND]
        if bad:
            raise ma.ValidationError(bad)

    @ma.pre_load
    def _refuse_nul(self, data: Any, **kwargs: Any) -> Any:
        """PostgreSQL text cannot hold NUL; refuse it at the edge on every backend alike."""
        if isinstance(data, dict):
            bad = [k for k, v in data.items() if isinstance(v, str) and "\x00" in v]
            if bad:
                raise ma.ValidationError({key: ["Must not contain the NUL character."] for key in bad})
        return data


class AwareDateTime(ma.fields.AwareDateTime):
    """ISO 8601 with an offset; naive times are refused rather than guessed. Returned in UTC."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="iso", **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            moment = moment.astimezone(UTC)
        except (OverflowError, ValueError):  # year 1 or 9999 pushed over the edge by its offset
            raise ma.ValidationError(OFF_THE_CALENDAR) from None
        if not EARLIEST <= moment <= LATEST:  # stored, it could not be shown in every zone
            raise ma.ValidationError(OFF_THE_CALENDAR)
        return moment


#: Our ids are 32-bit INTEGER columns on PostgreSQL; larger numbers cannot name anything.
MAX_ID = 2**31 - 1


class Id(ma.fields.Integer):
    """A reference to a row: a whole JSON number from 1 to MAX_ID."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("strict", True)
        extra = kwargs.pop("validate", None)
        extra = [] if extra is None else list(extra) if isinstance(extra, list | tuple) else [extra]
        super().__init__(validate=[validate.Range(min=1, max=MAX_ID), *extra], **kwargs)


class IdConverter(IntegerConverter):
    """``<int:...>`` in URLs: an id beyond MAX_ID names nothing, so it is a 404, not a database error."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def id_arg(value: str | None) -> int | None:
    """A query-string id for the pages: None unless it is a whole number in range."""
    # ASCII digits only: str.isdigit() also takes other scripts' digits, which int() reads
    if value is None or not (value.isascii() and value.isdigit()) or not 0 < int(value) <= MAX_ID:
        return None
    return int(value)

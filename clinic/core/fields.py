"""Marshmallow fields shared by the domains' schemas."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import marshmallow as ma
from marshmallow import validate
from werkzeug.routing import IntegerConverter

from clinic.core.time import EARLIEST, FUTURE_TOLERANCE, LATEST, OFF_THE_CALENDAR

#: a character str.strip() keeps (Python's whitespace, which differs from a regex's \s, spelled out)
NOT_BLANK = "[^\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def filled(least: int = 1) -> str:
    """A whole-value pattern: a text with at least ``least`` characters str.strip() keeps and no NUL
    (StrictSchema refuses one). Blanks and the rest are disjoint classes, so nothing backtracks."""
    blank, kept = "[" + NOT_BLANK[2:], "[^\x00" + NOT_BLANK[2:]
    return f"^(?:{blank}*{kept}){{{least}}}[^\x00]*$"


#: not blank, as a pattern the OpenAPI document states
FILLED = filled()

#: The decimals a Milligrams or DecimalString field takes, as the OpenAPI document states them: plain
#: digits, no sign, exponent, spaces or leading zeros, at most three places, up to 10**9 (10**12 of the
#: smallest unit). The server reads exactly this, so the document and the server agree on every string.
_ZERO_POINT = r"0\.(?:[1-9]\d{0,2}|0[1-9]\d?|00[1-9])"


def positive_decimal(digits: int) -> str:
    """More than 0 and at most 10**digits, at most three places."""
    zeros = "0" * digits
    upto = rf"[1-9]\d{{0,{digits - 1}}}(?:\.\d{{1,3}})?|1{zeros}(?:\.0{{1,3}})?"
    return rf"^(?:{upto}|{_ZERO_POINT})$"


POSITIVE_DECIMAL = positive_decimal(9)
DECIMAL = POSITIVE_DECIMAL[:-2] + r"|0(?:\.0{1,3})?)$"


def _decimal(
    value: Any,
    pattern: str,
    error: str,
    *,
    not_positive: str | None,
    too_large: str,
    bound: int,
    whole: tuple[int, int],
) -> Decimal:
    """``value`` if it matches ``pattern`` or is a JSON whole number within ``whole`` (both as the
    document states them); otherwise the reason, as specific as it can be (pages show it on the
    field): ``not_positive`` None means zero is taken."""
    if isinstance(value, int) and not isinstance(value, bool):
        # A whole number is exact (only a fraction can be a lossy binary float): taken since the
        # first release, so clients that send 80 keep working.
        low, high = whole
        if low <= value <= high:
            return Decimal(value)
        if not_positive is not None and value <= 0:
            raise ma.ValidationError(not_positive)
        raise ma.ValidationError("Cannot be negative." if value < 0 else too_large)
    if not isinstance(value, str):
        raise ma.ValidationError(error)
    if re.fullmatch(pattern, value):
        return Decimal(value)
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        raise ma.ValidationError("Not a number.") from None
    if not number.is_finite():
        raise ma.ValidationError("Not a number.")
    if number * 1000 != (number * 1000).to_integral_value():
        raise ma.ValidationError("At most three decimal places (1 microgram).")
    if not_positive is not None and number <= 0:
        raise ma.ValidationError(not_positive)
    if number < 0:
        raise ma.ValidationError("Cannot be negative.")
    if number > bound or re.fullmatch(POSITIVE_DECIMAL, value):  # plain, but outside the field's own range
        raise ma.ValidationError(too_large)
    raise ma.ValidationError(
        f'Write plain digits, e.g. "{_example(error)}": no sign, spaces, exponent or leading zeros.'
    )


def _example(error: str) -> str:
    return "37.5" if "mg" in error else "0.2"


class Milligrams(ma.fields.Field):
    """A drug amount: a decimal string in mg on the wire ("37.5"), integer micrograms inside.

    A fraction as a JSON number is refused (CONTRACT: decimal strings in mg): a binary float cannot
    say 0.1 mg exactly. A whole JSON number is exact and taken.
    """

    def __init__(self, *, positive: bool = True, **kwargs: Any) -> None:
        self.positive = positive
        self.pattern = POSITIVE_DECIMAL if positive else DECIMAL
        self.whole = (1 if positive else 0, 10**9)
        kwargs.setdefault("metadata", {}).setdefault("description", 'Decimal string in mg, e.g. "37.5"')
        super().__init__(**kwargs)

    def _serialize(self, value: int | None, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return format_mg(value)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        mg = _decimal(
            value,
            self.pattern,
            'Give the amount as a decimal string in mg, e.g. "37.5".',
            not_positive="Must be more than zero." if self.positive else None,
            too_large="Too large.",
            bound=10**9,
            whole=self.whole,
        )
        return int(mg * 1000)


def format_mg(ug: int) -> str:
    sign = "-" if ug < 0 else ""
    whole, frac = divmod(abs(ug), 1000)
    return f"{sign}{whole}" + (f".{frac:03d}".rstrip("0") if frac else "")


class DecimalString(ma.fields.Field):
    """A positive decimal given as a string, in thousandths inside (at most three places)."""

    def __init__(
        self,
        *,
        scale: int,
        digits: int = 9,
        too_large: str = "Too large.",
        pattern: str | None = None,
        whole: tuple[int, int] | None = None,
        **kwargs: Any,
    ) -> None:
        """``digits``: at most 10**digits (a whole power of ten, so the bound is a pattern too);
        ``pattern``: a narrower one of the field's own, whose refusal is ``too_large``, with ``whole``
        the range of JSON whole numbers it takes."""
        assert scale == 1000, "the patterns state three places"
        assert (pattern is None) == (whole is None), "a narrower pattern names its whole numbers too"
        self.scale = scale
        self.digits = digits
        self.too_large = too_large
        self.pattern = pattern or positive_decimal(digits)
        self.whole = whole or (1, 10**digits)
        super().__init__(**kwargs)

    def _serialize(self, value: int | None, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return format_mg(value * 1000 // self.scale)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        number = _decimal(
            value,
            self.pattern,
            'Give a decimal string, e.g. "10" or "0.2".',
            not_positive="Must be a positive number with at most three decimal places.",
            too_large=self.too_large,
            bound=10**self.digits,
            whole=self.whole,
        )
        return int(number * self.scale)


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


@cache
def zone_names() -> list[str]:
    """The zones TimeZoneName takes, as the OpenAPI document lists them (an enum)."""
    names = []
    for name in sorted(iana_names()):
        if name.split("/", 1)[0] in NOT_IANA:
            continue
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        names.append(name)
    return names


class TimeZoneName(ma.fields.String):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        name = super()._deserialize(value, attr, data, **kwargs)
        if name not in frozenset(zone_names()):
            raise ma.ValidationError("Not an IANA time zone, e.g. America/New_York.")
        return name


#: "HH:MM", 00:00 to 23:59
HHMM = r"^(?:[01]\d|2[0-3]):[0-5]\d$"


class WallClockTime(ma.fields.Field):
    """A local wall-clock time as "HH:MM" (no seconds, no offset), a ``datetime.time`` inside."""

    pattern = HHMM

    def _serialize(self, value: time | None, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else value.strftime("%H:%M")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> time:
        if not isinstance(value, str) or not re.fullmatch(HHMM, value):
            raise ma.ValidationError('A local time as "HH:MM", e.g. "09:30".')
        return time(int(value[:2]), int(value[3:]))


#: Dates past this year are refused as input: nothing a clinic books, enrols or certifies is that
#: far off, and far dates overflowed arithmetic (a day or a zone added) into 500s.
LAST_YEAR = 2100
BEYOND = f"Must not be after {LAST_YEAR}-12-31."
#: the years a date or a timestamp may be written with, stated in the document as a pattern on the
#: string (0001 to 2100 for dates; timestamps from 0002, so that no offset takes them off the calendar)
#: (RFC 3339 shapes only: Python also reads ISO weeks, basic formats and leap seconds' neighbours)
DATE_PATTERN = r"^(?:0\d{3}|1\d{3}|20\d{2}|2100)-\d{2}-\d{2}$"
TIMESTAMP_PATTERN = (
    r"^(?:000[2-9]|00[1-9]\d|0[1-9]\d{2}|1\d{3}|20\d{2}|2100)-\d{2}-\d{2}"
    r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$"
)
EARLIEST_YEAR = 2


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
            if field.dump_only or isinstance(field, AwareDateTime):  # judged as written, by the field
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
    """ISO 8601 with an offset; naive times are refused rather than guessed. Returned in UTC.

    The year as written is from EARLIEST_YEAR to LAST_YEAR (TIMESTAMP_PATTERN, stated in the document):
    so no offset can push a timestamp off the calendar, and the document can say which are taken."""

    pattern = TIMESTAMP_PATTERN

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="iso", **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        if moment.year > LAST_YEAR:
            raise ma.ValidationError(BEYOND)
        if moment.year < EARLIEST_YEAR:
            raise ma.ValidationError(OFF_THE_CALENDAR)
        if not re.fullmatch(TIMESTAMP_PATTERN, value):
            raise ma.ValidationError("A timestamp as YYYY-MM-DDTHH:MM:SS with Z or an offset (+HH:MM).")
        moment = moment.astimezone(UTC)
        assert EARLIEST <= moment <= LATEST
        return moment


class ChartedTime(AwareDateTime):
    """When something happened, as the client charts it: the service refuses (422) a time later than
    the server's clock allows (clinic.core.time.happened_at). The document says so on the field, in
    words and as ``x-not-future`` (a JSON Schema keyword cannot compare a value with the clock)."""


#: what the document says of every ChartedTime
NOT_FUTURE = (
    "Refused (422) when in the future: later than the server's clock by more than "
    f"{int(FUTURE_TOLERANCE.total_seconds() // 60)} minutes."
)


class Date(ma.fields.Date):
    """A calendar date as YYYY-MM-DD, year LAST_YEAR at most (DATE_PATTERN, stated in the document)."""

    pattern = DATE_PATTERN

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        day = super()._deserialize(value, attr, data, **kwargs)
        if day.year > LAST_YEAR:
            raise ma.ValidationError(BEYOND)
        if not re.fullmatch(DATE_PATTERN, value):
            raise ma.ValidationError("A date as YYYY-MM-DD.")
        return day


class ChartedDay(Date):
    """A day something happened on: the service refuses (422) a day after today where it happened
    (the patient's or the location's zone). Said on the field as :class:`ChartedTime` says its rule."""


#: what the document says of every ChartedDay
NOT_FUTURE_DAY = "Refused (422) when after today where it happened (the patient's or the location's time zone)."


class DateOrTimestamp(ma.fields.String):
    """A local day (YYYY-MM-DD) or a timestamp with its offset, kept as given for the service to read.

    Years 0003 to 2100 either way: read in the location's zone, year 2 could become year 1, which
    the export refuses as out of range."""

    YEARS = r"^(?:000[3-9]|00[1-9]\d|0[1-9]\d{2}|1\d{3}|20\d{2}|2100)-"
    DATE = YEARS + r"\d{2}-\d{2}$"
    TIMESTAMP = YEARS + TIMESTAMP_PATTERN.split(")-", 1)[1]

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            if re.fullmatch(self.DATE, text):
                date.fromisoformat(text)
                return text
            if re.fullmatch(self.TIMESTAMP, text):
                datetime.fromisoformat(text)
                return text
        except ValueError:
            pass
        raise ma.ValidationError("A date (YYYY-MM-DD) or a timestamp with its offset.")


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


# --- the OpenAPI document: what these fields take, stated ----------------------------------------


def _in_input_schema(field: ma.fields.Field) -> bool:
    """Inputs are StrictSchemas; answers are plain schemas, whose values are not held to input rules."""
    parent: Any = field.parent
    while isinstance(parent, ma.fields.Field):
        parent = parent.parent
    return isinstance(parent, StrictSchema)


#: StrictSchema._refuse_nul, as a pattern on a schema's own string fields
NO_NUL = r"^[^\x00]*$"
#: apispec documents a nullable Nested as anyOf [its schema, any object or null]: the second
#: branch lets any object through; it is meant to add null, so it says just that
_ANY_OBJECT_OR_NULL = {"type": "object", "nullable": True}
_NULL = {"type": "object", "nullable": True, "enum": [None]}


def openapi_attributes(self: Any, field: ma.fields.Field, ret: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """apispec attribute function (registered by create_app): the formats the fields above enforce."""
    extra: dict[str, Any] = {}
    if not _in_input_schema(field):
        return {"type": "string"} if isinstance(field, Milligrams | DecimalString | WallClockTime) else {}
    # a field's own rules, in JSON Schema words, where no validator says them (e.g. a Dict's keys)
    extra.update(field.metadata.get("openapi_rules", {}))
    if isinstance(field, ma.fields.Nested) and _ANY_OBJECT_OR_NULL in ret.get("anyOf", []):
        extra["anyOf"] = [_NULL if branch == _ANY_OBJECT_OR_NULL else branch for branch in ret["anyOf"]]
    if isinstance(field, DateOrTimestamp):
        extra["anyOf"] = [
            {"format": "date", "pattern": DateOrTimestamp.DATE},
            {"format": "date-time", "pattern": DateOrTimestamp.TIMESTAMP},
        ]
        return extra
    if (
        type(field) is ma.fields.String
        and isinstance(field.parent, StrictSchema)
        and "pattern" not in ret
        and "enum" not in ret
    ):
        extra["pattern"] = NO_NUL
    if isinstance(field, Milligrams | DecimalString):
        low, high = field.whole
        extra["anyOf"] = [
            {"type": "string", "pattern": field.pattern},
            {"type": "integer", "minimum": low, "maximum": high},
        ]
        return extra
    if isinstance(field, WallClockTime):
        extra["type"] = "string"
    if isinstance(field, ChartedTime | ChartedDay):
        rule = NOT_FUTURE if isinstance(field, ChartedTime) else NOT_FUTURE_DAY
        said = ret.get("description") or field.metadata.get("description")
        extra.update({"x-not-future": True, "description": f"{said} {rule}" if said else rule})
    if isinstance(field, TimeZoneName):
        extra["enum"] = zone_names()
    pattern = getattr(field, "pattern", None)
    if isinstance(pattern, str) and "pattern" not in ret:
        extra["pattern"] = pattern
    return extra

"""The patterns the OpenAPI document states are the rules the fields enforce (issue 9).

schemathesis generates from the document and expects a schema-valid request to be taken and an
invalid one refused; these check the two agree on the edges a fuzzer rarely draws.
"""

from __future__ import annotations

import random
import re

import marshmallow as ma
import pytest
from flask import Flask

from clinic.core.fields import (
    DATE_PATTERN,
    DECIMAL,
    HHMM,
    POSITIVE_DECIMAL,
    TIMESTAMP_PATTERN,
    AwareDateTime,
    Date,
    DateOrTimestamp,
    DecimalString,
    Milligrams,
    WallClockTime,
    positive_decimal,
)
from clinic.locations.schemas import DEA_NUMBER, dea_number_check


def _takes(field: ma.fields.Field, value: object) -> bool:
    try:
        field.deserialize(value)
    except ma.ValidationError:
        return False
    return True


def test_the_dea_pattern_is_the_check_digit_rule() -> None:
    rng = random.Random(9)
    numbers = ["AB1234563", "A91234563", "ZZ0000000"] + [
        rng.choice("ABFGMPRX") + rng.choice("ABCZ9") + f"{rng.randrange(10**7):07d}" for _ in range(5000)
    ]
    for number in numbers:
        try:
            dea_number_check(number)
            valid = True
        except ma.ValidationError:
            valid = False
        assert valid == bool(re.fullmatch(DEA_NUMBER, number)), number
    assert not re.fullmatch(DEA_NUMBER, "ab1234563")


@pytest.mark.parametrize(
    ("value", "positive", "non_negative"),
    [
        ("37.5", True, True),
        ("0.001", True, True),
        ("1000000000", True, True),
        ("1000000000.000", True, True),
        ("0", False, True),
        ("0.000", False, True),
        ("1000000000.001", False, False),
        ("0.0001", False, False),
        ("037.5", False, False),
        (" 37.5", False, False),
        ("1e3", False, False),
        ("-1", False, False),
        ("+1", False, False),
        ("1_000", False, False),
        ("NaN", False, False),
        ("", False, False),
    ],
)
def test_decimal_strings_are_read_as_the_pattern_says(value: str, positive: bool, non_negative: bool) -> None:
    assert bool(re.fullmatch(POSITIVE_DECIMAL, value)) == positive == _takes(Milligrams(), value)
    assert bool(re.fullmatch(DECIMAL, value)) == non_negative == _takes(Milligrams(positive=False), value)
    assert _takes(DecimalString(scale=1000), value) == positive


def test_fractions_as_numbers_are_refused_and_whole_numbers_taken_as_stated() -> None:
    for value in (37.5, 37.0, True, None, ["1"], 0, 10**9 + 1):
        assert not _takes(Milligrams(), value), value
    assert _takes(Milligrams(), 37) and _takes(Milligrams(), 10**9)
    assert _takes(Milligrams(positive=False), 0) and not _takes(Milligrams(positive=False), -1)
    assert _takes(DecimalString(scale=1000, digits=3), 1000) and not _takes(DecimalString(scale=1000, digits=3), 1001)


def test_the_document_states_whole_numbers_beside_the_pattern(app) -> None:
    """Every decimal field of an input schema is documented as the string pattern or a whole number
    in the field's own range: exactly what the server takes (weight: 2 to 400)."""
    with app.test_request_context():
        doc = app.test_client().get("/api/v1/openapi.json").json
    weight = doc["components"]["schemas"]["RecordWeight"]["properties"]["weight_kg"]
    assert {"type": "integer", "minimum": 2, "maximum": 400} in weight["anyOf"]
    assert any(branch.get("type") == "string" and branch.get("pattern") for branch in weight["anyOf"])


def test_a_bounded_decimal_string() -> None:
    field = DecimalString(scale=1000, digits=3)
    assert field.pattern == positive_decimal(3)
    assert _takes(field, "1000") and _takes(field, "999.999")
    assert not _takes(field, "1000.001") and not _takes(field, "1001")


@pytest.mark.parametrize(
    ("value", "taken"),
    [
        ("2024-02-29", True),
        ("0001-01-01", True),
        ("2100-12-31", True),
        ("2101-01-01", False),
        ("2023-02-29", False),
        ("20240229", False),
        ("2024-W09-4", False),
    ],
)
def test_dates(value: str, taken: bool) -> None:
    assert _takes(Date(), value) == taken
    assert bool(re.fullmatch(DATE_PATTERN, value)) or not taken


@pytest.mark.parametrize(
    ("value", "taken"),
    [
        ("2024-02-29T10:00:00Z", True),
        ("2024-02-29T10:00:00.123456+05:30", True),
        ("2100-12-31T23:00:00-05:00", True),  # 2101 in UTC: the year is judged as written
        ("0002-01-01T00:00:00+14:00", True),
        ("0001-12-31T23:00:00Z", False),
        ("2101-01-01T00:00:00+01:00", False),
        ("2024-02-29T10:00:00", False),  # naive
        ("2024-02-29 10:00:00Z", False),
        ("2024-02-29T10:00Z", False),
        ("2024-02-29T23:59:60Z", False),
    ],
)
def test_timestamps(value: str, taken: bool) -> None:
    assert _takes(AwareDateTime(), value) == taken
    assert bool(re.fullmatch(TIMESTAMP_PATTERN, value)) or not taken


def test_a_day_or_a_timestamp() -> None:
    field = DateOrTimestamp()
    assert _takes(field, "2024-02-29") and _takes(field, "2024-02-29T10:00:00+01:00")
    assert not _takes(field, "0002-01-01") and not _takes(field, "2024-02-30") and not _takes(field, "2024-02-29T10")


def test_wall_clock_times() -> None:
    assert _takes(WallClockTime(), "00:00") and _takes(WallClockTime(), "23:59")
    for value in ("24:00", "9:30", "09:30:00", "0930", "09:30+01:00"):
        assert not _takes(WallClockTime(), value) and not re.fullmatch(HHMM, value)


def test_the_document_states_the_rules(app: Flask) -> None:
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    schemas = doc["components"]["schemas"]

    def prop(schema: str, name: str) -> dict:
        return schemas[schema]["properties"][name]

    assert prop("CreateLocation", "dea_registration")["pattern"] == DEA_NUMBER
    assert "America/New_York" in prop("CreateLocation", "timezone")["enum"]
    assert "localtime" not in prop("CreateLocation", "timezone")["enum"]
    assert schemas["UpdatePatient"]["minProperties"] == 1
    assert len(schemas["DoseIn"]["oneOf"]) == 2
    assert prop("CreateSeries", "preferred_time")["pattern"] == HHMM
    # answers are not held to input rules
    assert "pattern" not in prop("Location", "dea_registration")

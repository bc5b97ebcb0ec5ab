"""The scoring rules as pure functions (OUT-01..04): bands at every edge, item checks, the trend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from clinic.outcomes import scoring
from clinic.outcomes.scoring import Band, Instrument, Reading
from tests.outcomes.conftest import summing_to

PHQ9_EDGES = [
    (0, Band.minimal),
    (4, Band.minimal),
    (5, Band.mild),
    (9, Band.mild),
    (10, Band.moderate),
    (14, Band.moderate),
    (15, Band.moderately_severe),
    (19, Band.moderately_severe),
    (20, Band.severe),
    (27, Band.severe),
]
GAD7_EDGES = [
    (0, Band.minimal),
    (4, Band.minimal),
    (5, Band.mild),
    (9, Band.mild),
    (10, Band.moderate),
    (14, Band.moderate),
    (15, Band.severe),
    (21, Band.severe),
]


@pytest.mark.parametrize(("total", "band"), PHQ9_EDGES)
def test_phq9_band_at_every_edge(total, band):
    assert scoring.band_for(Instrument.phq9, total) is band
    scored = scoring.score("phq9", summing_to(total))
    assert (scored.total, scored.band) == (total, band)


@pytest.mark.parametrize(("total", "band"), GAD7_EDGES)
def test_gad7_band_at_every_edge(total, band):
    assert scoring.band_for(Instrument.gad7, total) is band
    scored = scoring.score("gad7", summing_to(total, 7))
    assert (scored.total, scored.band) == (total, band)


def test_gad7_has_no_moderately_severe_band():
    assert {scoring.band_for("gad7", t) for t in range(22)} == {Band.minimal, Band.mild, Band.moderate, Band.severe}


@pytest.mark.parametrize(("instrument", "total"), [("phq9", -1), ("phq9", 28), ("gad7", 22), ("gad7", True)])
def test_a_total_off_the_scale_has_no_band(instrument, total):
    with pytest.raises(ValueError, match="total is 0"):
        scoring.band_for(instrument, total)


@pytest.mark.parametrize(
    ("instrument", "items", "errors"),
    [
        ("phq9", [0] * 8, ["The PHQ-9 has 9 items; 8 given."]),
        ("phq9", [0] * 10, ["The PHQ-9 has 9 items; 10 given."]),
        ("gad7", [0] * 9, ["The GAD-7 has 7 items; 9 given."]),
        ("gad7", [], ["The GAD-7 has 7 items; 0 given."]),
        ("phq9", "000000000", ["Give the 9 item scores of the PHQ-9 as a list."]),
        ("phq9", [True, 0, 0, 0, 0, 0, 0, 0, 0], {0: ["Must be a whole number from 0 to 3."]}),
        ("phq9", [0, 1.0, 0, 0, 0, 0, 0, 0, 0], {1: ["Must be a whole number from 0 to 3."]}),
        ("gad7", [0, 0, "2", 0, 0, 0, 0], {2: ["Must be a whole number from 0 to 3."]}),
        ("gad7", [0, 0, 0, None, 0, 0, 0], {3: ["Not answered."]}),
        ("phq9", [0, 0, 0, 0, -1, 0, 0, 0, 4], {4: ["Must be from 0 to 3."], 8: ["Must be from 0 to 3."]}),
    ],
)
def test_items_must_be_the_right_number_of_whole_numbers_0_to_3(instrument, items, errors):
    assert scoring.item_errors(instrument, items) == errors
    with pytest.raises(scoring.ItemsInvalid) as raised:
        scoring.score(instrument, items)
    assert raised.value.errors == errors


def test_item9_alone_raises_the_safety_alert():
    assert scoring.score("phq9", [0] * 8 + [1]).safety_alert
    assert scoring.score("phq9", [3] * 8 + [0]).safety_alert is False
    # the seventh GAD-7 item is not a suicidality item
    assert scoring.score("gad7", [0] * 6 + [3]).safety_alert is False


T0 = datetime(2024, 3, 4, 15, 0, tzinfo=UTC)


def readings(*totals: int, instrument: str = "phq9") -> list[Reading]:
    return [
        Reading(100 + n, T0 + timedelta(days=7 * n), t, scoring.band_for(instrument, t).value)
        for n, t in enumerate(totals)
    ]


def test_trend_response_and_remission_against_the_first_score():
    trend = scoring.trend("phq9", readings(22, 15, 11, 12, 4))
    assert trend.baseline is not None and trend.baseline.total == 22 and trend.baseline.is_baseline
    assert trend.response_at_or_below == Decimal(11)
    got = [(p.total, p.change_pct, p.response, p.remission) for p in trend.points]
    assert got == [
        (22, Decimal("0.0"), False, False),
        (15, Decimal("-31.8"), False, False),
        (11, Decimal("-50.0"), True, False),  # exactly half: a response
        (12, Decimal("-45.5"), False, False),
        (4, Decimal("-81.8"), True, True),
    ]


def test_an_odd_baseline_judges_half_exactly_and_rounds_half_away_from_zero():
    trend = scoring.trend("phq9", readings(17, 9, 8))
    assert trend.response_at_or_below == Decimal("8.5")
    assert [p.response for p in trend.points] == [False, False, True]  # 9 > 8.5 >= 8
    assert scoring.change_pct(16, 15) == Decimal("-6.3")  # -6.25
    assert scoring.change_pct(8, 5) == Decimal("-37.5")
    assert scoring.change_pct(6, 13) == Decimal("116.7")  # a rise is positive


def test_a_baseline_of_zero_never_responds_and_has_no_ratio():
    trend = scoring.trend("phq9", readings(0, 0, 6, 2))
    assert trend.response_at_or_below is None
    assert [p.change_pct for p in trend.points] == [None, None, None, None]
    assert [p.response for p in trend.points] == [False] * 4
    # remission is a level, not a change: below 5 after the baseline
    assert [p.remission for p in trend.points] == [False, True, False, True]


def test_the_baseline_is_the_earliest_taken_whatever_the_order_given():
    early, late = readings(9, 20)
    back_charted = Reading(999, T0 - timedelta(days=3), 14, "moderate")
    trend = scoring.trend("phq9", [late, early, back_charted])
    assert [p.score_id for p in trend.points] == [999, early.score_id, late.score_id]
    assert trend.baseline is not None and trend.baseline.total == 14
    assert [p.response for p in trend.points] == [False, False, False]


def test_gad7_remission_is_given_as_a_convention():
    trend = scoring.trend("gad7", readings(16, 8, 3, instrument="gad7"))
    assert trend.remission_is_convention is True
    assert scoring.trend("phq9", []).remission_is_convention is False
    assert [(p.response, p.remission) for p in trend.points] == [(False, False), (True, False), (True, True)]


def test_no_scores_no_baseline():
    trend = scoring.trend("gad7", [])
    assert (trend.baseline, trend.points, trend.response_at_or_below) == (None, [], None)

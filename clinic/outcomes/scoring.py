"""PHQ-9 and GAD-7 scoring, severity bands and the course trend, as pure functions (no database).

- OUT-01: PHQ-9 is nine items scored 0..3, total 0..27, banded minimal / mild / moderate /
  moderately severe / severe at 5, 10, 15 and 20 (Kroenke, Spitzer & Williams 2001).
- OUT-02: GAD-7 is seven items scored 0..3, total 0..21, banded minimal / mild / moderate / severe
  at 5, 10 and 15 (Spitzer, Kroenke, Williams & Löwe 2006).
- OUT-03: against the course's baseline (its first score), a response is a total at or below half
  the baseline (a drop of 50 % or more; a baseline of 0 cannot respond), a remission a PHQ-9 total
  below 5. GAD-7 below 5 is given too, marked as a convention rather than a validated definition.
- OUT-04: a PHQ-9 with item 9 above 0 needs a prescriber the same day (``needs_safety_alert``).

Items must be exactly the instrument's count of whole numbers 0..3; a bool or a float (``True``,
``1.0``) is refused rather than read as a number, so what is stored is what was ticked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any


class Instrument(StrEnum):
    phq9 = "phq9"
    gad7 = "gad7"


class Band(StrEnum):
    minimal = "minimal"
    mild = "mild"
    moderate = "moderate"
    moderately_severe = "moderately_severe"
    severe = "severe"


@dataclass(frozen=True)
class Spec:
    label: str
    items: int
    #: (lowest total, band), ascending: a total takes the last band whose lowest total it reaches
    bands: tuple[tuple[int, Band], ...]
    #: a total below this is remission; ``remission_is_convention`` when no validated definition says so
    remission_below: int
    remission_is_convention: bool

    @property
    def max_total(self) -> int:
        return self.items * ITEM_MAX


ITEM_MIN, ITEM_MAX = 0, 3
#: PHQ-9 item 9 ("thoughts that you would be better off dead or of hurting yourself"), 0-based
SUICIDALITY_ITEM = 8

SPECS: dict[Instrument, Spec] = {
    # OUT-01 (Kroenke 2001): 0-4, 5-9, 10-14, 15-19, 20-27
    Instrument.phq9: Spec(
        label="PHQ-9",
        items=9,
        bands=((0, Band.minimal), (5, Band.mild), (10, Band.moderate), (15, Band.moderately_severe), (20, Band.severe)),
        remission_below=5,
        remission_is_convention=False,
    ),
    # OUT-02 (Spitzer 2006): 0-4, 5-9, 10-14, 15-21; remission < 5 by convention only (OUT-03)
    Instrument.gad7: Spec(
        label="GAD-7",
        items=7,
        bands=((0, Band.minimal), (5, Band.mild), (10, Band.moderate), (15, Band.severe)),
        remission_below=5,
        remission_is_convention=True,
    ),
}


class ItemsInvalid(ValueError):
    """The items cannot be scored; ``errors`` as marshmallow gives them for ``items``."""

    def __init__(self, errors: list[str] | dict[int, list[str]]) -> None:
        super().__init__("items cannot be scored")
        self.errors = errors


def item_errors(instrument: Instrument | str, items: Any) -> list[str] | dict[int, list[str]]:
    """What is wrong with ``items`` for ``instrument`` (empty when nothing is): OUT-01/02 fix how
    many items there are and that each is a whole number 0..3."""
    spec = SPECS[Instrument(instrument)]
    if not isinstance(items, list | tuple):
        return [f"Give the {spec.items} item scores of the {spec.label} as a list."]
    if len(items) != spec.items:
        return [f"The {spec.label} has {spec.items} items; {len(items)} given."]
    errors: dict[int, list[str]] = {}
    for n, value in enumerate(items):
        if value is None:
            errors[n] = ["Not answered."]
        elif isinstance(value, bool) or not isinstance(value, int):
            errors[n] = [f"Must be a whole number from {ITEM_MIN} to {ITEM_MAX}."]
        elif not ITEM_MIN <= value <= ITEM_MAX:
            errors[n] = [f"Must be from {ITEM_MIN} to {ITEM_MAX}."]
    return errors


def band_for(instrument: Instrument | str, total: int) -> Band:
    """The severity band of a total on the instrument's scale (OUT-01, OUT-02)."""
    spec = SPECS[Instrument(instrument)]
    if isinstance(total, bool) or not 0 <= total <= spec.max_total:
        raise ValueError(f"a {spec.label} total is 0..{spec.max_total}")
    return next(band for lowest, band in reversed(spec.bands) if total >= lowest)


@dataclass(frozen=True)
class Scored:
    items: list[int]
    total: int
    band: Band
    #: OUT-04: PHQ-9 item 9 above 0
    safety_alert: bool


def score(instrument: Instrument | str, items: Any) -> Scored:
    """Total, band and the item-9 alert; :class:`ItemsInvalid` when the items cannot be scored."""
    instrument = Instrument(instrument)
    errors = item_errors(instrument, items)
    if errors:
        raise ItemsInvalid(errors)
    values = [int(v) for v in items]
    total = sum(values)
    return Scored(values, total, band_for(instrument, total), needs_safety_alert(instrument, values))


def needs_safety_alert(instrument: Instrument | str, items: Sequence[int]) -> bool:
    """OUT-04: any answer but "not at all" to PHQ-9 item 9 raises a same-day prescriber alert."""
    return Instrument(instrument) is Instrument.phq9 and items[SUICIDALITY_ITEM] > 0


# --- the trend of a course (OUT-03) ------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One score as the trend needs it (a replaced score is never handed in)."""

    score_id: int
    taken_at: datetime
    total: int
    band: str


@dataclass(frozen=True)
class Point:
    score_id: int
    taken_at: datetime
    total: int
    band: str
    is_baseline: bool
    #: % change from the baseline, to one decimal place; None at a baseline of 0 (no ratio)
    change_pct: Decimal | None
    response: bool
    remission: bool


@dataclass(frozen=True)
class Trend:
    instrument: Instrument
    baseline: Point | None
    points: list[Point]
    #: a total at or below this is a response (half the baseline); None without a baseline above 0
    response_at_or_below: Decimal | None
    remission_below: int
    remission_is_convention: bool


_TENTH = Decimal("0.1")


def change_pct(baseline: int, total: int) -> Decimal | None:
    """(total - baseline) / baseline as a percentage, rounded half away from zero to 0.1."""
    if baseline == 0:
        return None
    return (Decimal(total - baseline) * 100 / Decimal(baseline)).quantize(_TENTH, rounding=ROUND_HALF_UP)


def is_response(baseline: int, total: int) -> bool:
    """OUT-03: at most half the baseline, judged on whole numbers (no rounding); never from 0."""
    return baseline > 0 and 2 * total <= baseline


def trend(instrument: Instrument | str, readings: Sequence[Reading]) -> Trend:
    """OUT-03: the course's scores oldest first; the first is the baseline and is neither a response
    nor a remission (it is what the others are judged against)."""
    instrument = Instrument(instrument)
    spec = SPECS[instrument]
    ordered = sorted(readings, key=lambda r: (r.taken_at, r.score_id))
    points: list[Point] = []
    base = ordered[0].total if ordered else 0
    for n, r in enumerate(ordered):
        first = n == 0
        points.append(
            Point(
                score_id=r.score_id,
                taken_at=r.taken_at,
                total=r.total,
                band=r.band,
                is_baseline=first,
                change_pct=change_pct(base, r.total),
                response=not first and is_response(base, r.total),
                remission=not first and r.total < spec.remission_below,
            )
        )
    return Trend(
        instrument=instrument,
        baseline=points[0] if points else None,
        points=points,
        response_at_or_below=Decimal(base) / 2 if points and base > 0 else None,
        remission_below=spec.remission_below,
        remission_is_convention=spec.remission_is_convention,
    )

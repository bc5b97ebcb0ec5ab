"""Business days per jurisdiction: weekends and public holidays, federal and (when the location's
profile names a state) the state's own, from the ``holidays`` package. Every business-day deadline
(the DEA theft notice, DEA-31) counts on it."""

from __future__ import annotations

from datetime import date, timedelta
from functools import cache

import holidays

#: US states and territories the holidays package knows, for the profile schema to check against
SUBDIVISIONS: frozenset[str] = frozenset(holidays.country_holidays("US").subdivisions)


@cache
def _closed(year: int, state: str | None) -> frozenset[date]:
    return frozenset(holidays.country_holidays("US", subdiv=state, years=year))


def is_business_day(day: date, state: str | None = None) -> bool:
    """Monday to Friday and not a holiday (its observed day included) federally or in ``state``."""
    return day.weekday() < 5 and day not in _closed(day.year, state)


def add_business_days(day: date, n: int, state: str | None = None) -> date:
    """The ``n``-th business day after ``day`` (DEA-31: the theft notice's next business day)."""
    while n:
        day += timedelta(days=1)
        if is_business_day(day, state):
            n -= 1
    return day

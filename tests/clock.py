"""The tests' clock: dates relative to today at a place, and the clock shift that proves it.

No test may depend on the calendar date it runs on. A test that books, enrols or receives stock
takes its dates from ``today_in(zone)`` (the location's or the patient's day, as the app judges
it), never from a literal that will one day be in the past. Fixed dates are kept only where they
are facts that no clock moves: a date of birth, a date that is in the past forever, or a pure
function given its own ``on`` date.

``CLINIC_TEST_NOW`` (an ISO instant with its offset, e.g. ``2028-12-03T02:30:00Z``) runs the whole
suite at that time: ``start_shift`` (called from ``pytest_configure``, before any test module is
imported, since some compute dates at import) makes time-machine move this process's clock there,
ticking; ``clock_env`` gives subprocesses (the ``clinic`` CLI, gunicorn, celery) the same
clock through libfaketime. PostgreSQL's own ``now()`` is not shifted: the app never asks the
database for the time (every timestamp is ``clinic.core.time.utcnow`` on the Python side).
"""

from __future__ import annotations

import glob
import os
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from clinic.core.time import today_at, utcnow

SHIFT_VAR = "CLINIC_TEST_NOW"
MONDAY, TUESDAY, WEDNESDAY, THURSDAY, FRIDAY, SATURDAY, SUNDAY = range(7)

_shift: time_machine.travel | None = None


def shift_target() -> datetime | None:
    raw = os.environ.get(SHIFT_VAR, "").strip()
    if not raw:
        return None
    at = datetime.fromisoformat(raw)
    if at.tzinfo is None:
        raise pytest.UsageError(f"{SHIFT_VAR}={raw!r} needs an offset (e.g. Z): a wall time is no instant")
    return at.astimezone(UTC)


def start_shift() -> datetime | None:
    global _shift
    target = shift_target()
    if target is not None and _shift is None:
        _shift = time_machine.travel(target, tick=True)
        _shift.start()
    return target


def stop_shift() -> None:
    global _shift
    if _shift is not None:
        _shift.stop()
        _shift = None


def offset_seconds() -> float:
    """How far this process's clock (shifted or frozen by time-machine) is from the real one."""
    if not time_machine.escape_hatch.is_travelling():  # its escape hatch only answers while travelling
        return 0.0
    return utcnow().timestamp() - time_machine.escape_hatch.time.time()


# Debian's multi-threaded libfaketime (gunicorn's threads, celery's): apt-get install faketime.
_LIBFAKETIME = ("/usr/lib/*/faketime/libfaketimeMT.so.1", "/usr/lib/faketime/libfaketimeMT.so.1")


def _libfaketime() -> str | None:
    found = [path for pattern in _LIBFAKETIME for path in sorted(glob.glob(pattern))]
    return found[0] if found else None


def clock_env(step_seconds: int = 0) -> dict[str, str]:
    """Environment variables that put a subprocess on this process's clock: none on the real clock,
    else libfaketime preloaded with the same offset (plus ``step_seconds``: a clock that jumped).

    Preloaded rather than through the ``faketime`` wrapper, which forks and does not pass SIGTERM
    on (a terminated worker would live on holding its pipes). A relative offset, not a start
    instant, so every process the child forks or execs (gunicorn's workers, celery's pool) keeps
    the same ticking clock. The monotonic clock moves by the same offset: with it left real
    (FAKETIME_DONT_FAKE_MONOTONIC), libfaketime 0.9.10 fails Python's time.sleep with EINVAL.
    """
    offset = round(offset_seconds()) + step_seconds
    if abs(offset) < 2:
        return {}
    lib = _libfaketime()
    if lib is None:
        message = "the clock is shifted and libfaketime is missing (apt-get install faketime)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    preload = " ".join(p for p in (lib, os.environ.get("LD_PRELOAD")) if p)
    return {"LD_PRELOAD": preload, "FAKETIME": f"{offset:+d}"}


# --- dates relative to today at a place ----------------------------------------------------------


def today_in(tz: str) -> date:
    return today_at(tz)


def years_after(day: date, years: int) -> date:
    """The same day ``years`` later (or earlier, when negative); 29 February becomes the 28th."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def years_before(day: date, years: int) -> date:
    return years_after(day, -years)


def on_or_after(day: date, weekday: int) -> date:
    return day + timedelta(days=(weekday - day.weekday()) % 7)


def next_weekday(weekday: int, tz: str, *, at_least_days: int = 14) -> date:
    """The first ``weekday`` (0 = Monday) at least ``at_least_days`` after today in ``tz``."""
    return on_or_after(today_in(tz) + timedelta(days=at_least_days), weekday)


def last_weekday(weekday: int, tz: str, *, at_least_days: int = 7) -> date:
    """The latest ``weekday`` at least ``at_least_days`` before today in ``tz``."""
    day = today_in(tz) - timedelta(days=at_least_days)
    return day - timedelta(days=(day.weekday() - weekday) % 7)


def next_offset_change(tz: str, *, after: date) -> date:
    """The first local date after ``after`` whose noon has another UTC offset than the day before
    (a DST change happened overnight). Every zone the tests use changes within a year."""
    zone = ZoneInfo(tz)

    def offset(day: date) -> timedelta | None:
        return datetime.combine(day, time(12), tzinfo=zone).utcoffset()

    day = after
    for _ in range(400):
        if offset(day + timedelta(days=1)) != offset(day):
            return day + timedelta(days=1)
        day += timedelta(days=1)
    raise AssertionError(f"{tz} does not change its offset within 400 days of {after}")


def at_local(day: date, hh_mm: str, tz: str) -> datetime:
    """``day`` at the wall time ``hh_mm`` in ``tz``, as an aware UTC instant."""
    return datetime.combine(day, time.fromisoformat(hh_mm), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def in_years(years: int, tz: str = "UTC") -> date:
    """Today in ``tz`` ``years`` from now: an expiry date that stays ahead whenever the suite runs."""
    return years_after(today_in(tz), years)

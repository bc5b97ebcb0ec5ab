"""Read-only scheduling views for the staff pages: the booking preview, the day and week
calendars by chair, a series page and a patient's courses.

Nothing here writes: :func:`preview_series` runs the same planning and availability checks as
``service.create_series`` (the same internals, in the same order) and stops before the insert, so
what the wizard shows is what booking would do, as of now.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from clinic.auth.models import Membership, Role, User
from clinic.core import time as clock
from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.locations.models import Location
from clinic.patients.models import Patient
from clinic.scheduling import service
from clinic.scheduling.models import IN_CHAIR, SLOT_MINUTES, Appointment, AppointmentSeries, Chair, Protocol

logger = logging.getLogger(__name__)

DEFAULT_SPAN = (time(8, 0), time(18, 0))


# --- the booking preview -----------------------------------------------------------------------


@dataclass(frozen=True)
class Suggestion:
    starts_at: datetime
    chair_id: int


@dataclass(frozen=True)
class PlannedVisit:
    seq: int
    phase: str
    starts_at: datetime
    ends_at: datetime
    dose_mg: str | None
    chair_id: int | None


@dataclass(frozen=True)
class VisitConflict:
    seq: int
    reason: str
    starts_at: datetime | None = None
    day: date | None = None
    next_free: list[Suggestion] = field(default_factory=list)


@dataclass(frozen=True)
class Preview:
    protocol: Protocol
    location: Location
    patient: Patient
    prescriber: User
    timezone: str
    chair_names: dict[int, str]
    visits: list[PlannedVisit]
    conflicts: list[VisitConflict]

    @property
    def bookable(self) -> bool:
        return not self.conflicts and bool(self.visits)

    def conflict_for(self, seq: int) -> VisitConflict | None:
        return next((c for c in self.conflicts if c.seq == seq), None)


def preview_series(
    *,
    patient_id: int,
    protocol: str,
    location_id: int,
    prescriber_id: int,
    start_on: date,
    preferred_time: time,
) -> Preview:
    """The course ``create_series`` would book with these arguments, and every clash, unsaved.

    Same planning as the booking itself (``service.plan_series``); only the shape is for the page.
    """
    plan = service.plan_series(
        patient_id=patient_id,
        protocol=protocol,
        location_id=location_id,
        prescriber_id=prescriber_id,
        start_on=start_on,
        preferred_time=preferred_time,
    )
    conflicts = [
        VisitConflict(
            seq=c["seq"],
            reason=c["reason"],
            starts_at=datetime.fromisoformat(c["starts_at"]) if "starts_at" in c else None,
            day=date.fromisoformat(c["date"]) if "date" in c else None,
            next_free=[
                Suggestion(datetime.fromisoformat(f["starts_at"]), f["chair_id"]) for f in c.get("next_free", [])
            ],
        )
        for c in plan.problems
    ]
    visits = [
        PlannedVisit(p.seq, p.phase, p.starts_at, p.starts_at + timedelta(minutes=plan.minutes), p.dose_mg, chair)
        for p, chair in zip(plan.visits, plan.chairs, strict=True)
    ]
    return Preview(
        protocol=plan.protocol,
        location=plan.calendar.location,
        patient=plan.patient,
        prescriber=plan.prescriber,
        timezone=plan.calendar.location.timezone,
        chair_names=chair_names(location_id),
        visits=visits,
        conflicts=conflicts,
    )


# --- choices for the wizard ----------------------------------------------------------------------


def prescribers(location_ids: Collection[int] | None = None) -> list[User]:
    """Active prescribers, by name: who a course can be booked under; with ``location_ids``, only
    those who work at one of them (SYS-11)."""
    query = select(User).where(User.is_active.is_(True)).order_by(User.name, User.id)
    if location_ids is not None:
        query = query.where(
            User.id.in_(select(Membership.user_id).where(Membership.location_id.in_(sorted(location_ids))))
        )
    return [u for u in db.session.scalars(query) if u.role_enum is Role.prescriber]


def chair_names(location_id: int, *, active_only: bool = False) -> dict[int, str]:
    stmt = select(Chair).where(Chair.location_id == location_id).order_by(Chair.name, Chair.id)
    if active_only:
        stmt = stmt.where(Chair.is_active.is_(True))
    return {c.id: c.name for c in db.session.scalars(stmt)}


def patient_names(patient_ids: set[int]) -> dict[int, str]:
    if not patient_ids:
        return {}
    rows = db.session.execute(
        select(Patient.id, Patient.first_name, Patient.last_name).where(Patient.id.in_(patient_ids))
    )
    return {pid: f"{first} {last}" for pid, first, last in rows}


# --- the calendar ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One table cell of the day view: an appointment starting in this row (``rows`` tall), free, or
    covered by an appointment that started above it (not drawn)."""

    appointment: Appointment | None = None
    rows: int = 1
    covered: bool = False


@dataclass(frozen=True)
class Day:
    location: Location
    day: date
    timezone: str
    chairs: dict[int, str]
    times: list[datetime]  # the start of each 15-minute row, aware in the location's zone
    grid: list[list[Cell]]  # grid[row][chair index]
    off_grid: list[Appointment]  # cancelled, no-show, missed, or outside the rows
    names: dict[int, str]
    is_open: bool

    @property
    def count(self) -> int:
        return sum(1 for row in self.grid for cell in row if cell.appointment is not None)


@dataclass(frozen=True)
class Week:
    location: Location
    start: date  # Monday
    timezone: str
    chairs: dict[int, str]
    days: list[date]
    cells: dict[tuple[date, int], list[Appointment]]
    names: dict[int, str]
    off_grid: dict[date, int]

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.cells.values())


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


def day_view(location: Location, day: date) -> Day:
    tz = ZoneInfo(location.timezone)
    cal = service._calendar(location.id)
    chairs = chair_names(location.id)
    appts = service.list_appointments(
        location_id=location.id, since=_local_midnight(day, tz), until=_local_midnight(day + timedelta(days=1), tz)
    )
    span = cal.open_span(day)
    first, last = span or DEFAULT_SPAN
    in_chair = [a for a in appts if a.status in IN_CHAIR and a.chair_id in chairs]
    for a in in_chair:  # widen the rows to anything booked outside today's hours
        begin = a.starts_at.astimezone(tz)
        if begin.date() == day:
            first = min(first, begin.time().replace(minute=begin.minute // SLOT_MINUTES * SLOT_MINUTES))
        end = a.ends_at.astimezone(tz)
        last = max(last, end.time() if end.date() == day else time(23, 45))
    step = timedelta(minutes=SLOT_MINUTES)
    times: list[datetime] = []
    at = datetime.combine(day, first, tzinfo=tz)
    stop = datetime.combine(day, last, tzinfo=tz)
    while at < stop:
        times.append(at)
        at += step
    chair_ids = list(chairs)
    index = {t.astimezone(tz).replace(tzinfo=None): i for i, t in enumerate(times)}
    grid: list[list[Cell]] = [[Cell() for _ in chair_ids] for _ in times]
    off_grid = [a for a in appts if a not in in_chair]
    for a in in_chair:
        start_local = a.starts_at.astimezone(tz).replace(tzinfo=None)
        row = index.get(start_local)
        col = chair_ids.index(a.chair_id)
        if row is None or grid[row][col].covered or grid[row][col].appointment is not None:
            off_grid.append(a)
            continue
        rows = max(1, -(-int((a.ends_at - a.starts_at).total_seconds() // 60) // SLOT_MINUTES))
        rows = min(rows, len(times) - row)
        grid[row][col] = Cell(appointment=a, rows=rows)
        for r in range(row + 1, row + rows):
            grid[r][col] = Cell(covered=True)
    return Day(
        location=location,
        day=day,
        timezone=location.timezone,
        chairs=chairs,
        times=times,
        grid=grid,
        off_grid=sorted(off_grid, key=lambda a: a.starts_at),
        names=patient_names({a.patient_id for a in appts}),
        is_open=span is not None,
    )


def week_view(location: Location, day: date) -> Week:
    tz = ZoneInfo(location.timezone)
    start = day - timedelta(days=day.weekday())
    days = [start + timedelta(days=i) for i in range(7)]
    chairs = chair_names(location.id)
    appts = service.list_appointments(
        location_id=location.id, since=_local_midnight(start, tz), until=_local_midnight(start + timedelta(days=7), tz)
    )
    cells: dict[tuple[date, int], list[Appointment]] = {(d, c): [] for d in days for c in chairs}
    off_grid: dict[date, int] = dict.fromkeys(days, 0)
    for a in appts:
        local_day = a.starts_at.astimezone(tz).date()
        if a.status in IN_CHAIR and (local_day, a.chair_id) in cells:
            cells[(local_day, a.chair_id)].append(a)
        elif local_day in off_grid:
            off_grid[local_day] += 1
    return Week(
        location=location,
        start=start,
        timezone=location.timezone,
        chairs=chairs,
        days=days,
        cells=cells,
        names=patient_names({a.patient_id for a in appts}),
        off_grid=off_grid,
    )


def today_at(location: Location) -> date:
    return clock.today_at(location.timezone)


# --- series and courses ------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesPage:
    series: AppointmentSeries
    location: Location
    patient: Patient
    prescriber: User | None
    chairs: dict[int, str]
    reviews: list[dict[str, Any]]
    now: datetime


def series_page(series_id: int) -> SeriesPage:
    series = service.get_series(series_id)
    from clinic.locations import service as locations
    from clinic.patients import service as patients

    location = locations.get_location(series.location_id)
    patient = patients.get_patient(series.patient_id)
    return SeriesPage(
        series=series,
        location=location,
        patient=patient,
        prescriber=db.session.get(User, series.prescriber_id),
        chairs=chair_names(series.location_id),
        reviews=service.reviews(series),
        now=utcnow(),
    )


@dataclass(frozen=True)
class Course:
    series: AppointmentSeries
    location: Location
    chairs: dict[int, str]


def patient_courses(patient_id: int, location_ids: Collection[int] | None = None) -> list[Course]:
    """A patient's courses, newest first, with their appointments (for the chart); with
    ``location_ids``, only those at these locations (SYS-11)."""
    query = select(AppointmentSeries).where(AppointmentSeries.patient_id == patient_id)
    if location_ids is not None:
        query = query.where(AppointmentSeries.location_id.in_(sorted(location_ids)))
    series = list(db.session.scalars(query.order_by(AppointmentSeries.id.desc())))
    locations = {
        loc.id: loc
        for loc in db.session.scalars(select(Location).where(Location.id.in_({s.location_id for s in series} or {-1})))
    }
    chairs: dict[int, dict[int, str]] = {}
    for lid in locations:
        chairs[lid] = chair_names(lid)
    return [Course(s, locations[s.location_id], chairs[s.location_id]) for s in series]

"""Read-only page data for the visit pages (``views.py``): the runner, the board and the Today dashboard.

Nothing here writes, decides a rule or commits. It gathers what one page shows from the visit's own
readers (``queries.visit_detail``, ``queries.observation_board``, ``discharge.unmet_criteria``,
``service.dose_bounds``) and the other domains' services, and puts words to the server's timers:
"due in 8 min", "OVERDUE by 12 min", "1:04:10 left". Every countdown comes from the server's
``seconds_left``; the page script only ticks it down between refreshes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from clinic.auth import scope
from clinic.auth.models import User
from clinic.core.errors import DomainError
from clinic.core.fields import format_mg
from clinic.core.time import today_at, utcnow
from clinic.extensions import db
from clinic.inventory import queries as inventory_queries
from clinic.inventory import service as inventory
from clinic.inventory.models import Container, ContainerStatus, LossReport
from clinic.locations import service as locations
from clinic.locations.models import Location
from clinic.patients import service as patients
from clinic.patients.models import Patient, ScreeningResult
from clinic.scheduling import queries as scheduling_queries
from clinic.scheduling import service as scheduling
from clinic.scheduling.models import Appointment, AppointmentSeries, AppointmentStatus, SeriesStatus
from clinic.visits import discharge as discharging
from clinic.visits import dosing, queries, rules, service
from clinic.visits.models import DoseItem, Visit, VitalSign
from clinic.visits.rules import DoseBounds

S = AppointmentStatus
UNDER_WAY = (S.dosed.value, S.observing.value, S.ready_for_discharge.value)

#: vital signs as the table and the form name them
VITAL_FIELDS: tuple[tuple[str, str], ...] = (
    ("systolic", "Systolic"),
    ("diastolic", "Diastolic"),
    ("heart_rate", "Heart rate"),
    ("spo2", "SpO2 %"),
    ("respiratory_rate", "Resp. rate"),
    ("sedation", "MOAA/S"),
    ("dissociation", "Dissociation"),
)
SEDATION_SCALE: tuple[tuple[int, str], ...] = (
    (5, "5 · responds readily to name in a normal tone"),
    (4, "4 · lethargic response to name in a normal tone"),
    (3, "3 · responds only after name is called loudly or repeatedly"),
    (2, "2 · responds only after mild prodding or shaking"),
    (1, "1 · does not respond to mild prodding or shaking"),
    (0, "0 · does not respond to a noxious stimulus"),
)
DISSOCIATION_SCALE: tuple[tuple[int, str], ...] = (
    (0, "0 · none"),
    (1, "1 · mild"),
    (2, "2 · moderate"),
    (3, "3 · severe"),
)
#: SPR-09 and SPR-08, as asked at check-in
PREPARATION: tuple[tuple[str, str], ...] = (
    ("fasted_2h", "No food in the last 2 hours"),
    ("no_liquids_30min", "No liquids in the last 30 minutes"),
    ("nasal_medicines_1h", "Any nasal corticosteroid or decongestant taken at least 1 hour ago (or none today)"),
    ("counselled", "Counselled on the monitoring, sedation and dissociation to expect (SPR-08)"),
)
#: what the front desk is told of a gate: where to send it, not the clinical detail
GATE_FOR_DESK = {
    "screening": "The screening needs a clinician's attention.",
    "rems_location": "This location's REMS certification needs renewing.",
    "weight": "The patient needs weighing.",
    "pre_dose_vitals": "A nurse takes the pre-dose vital signs.",
    "bp_hold": "The dose is held for a prescriber's decision.",
}
STATUS_WORDS = {
    S.scheduled.value: "Booked, not yet arrived",
    S.checked_in.value: "Checked in, waiting for the dose",
    S.dosed.value: "Dosed: infusion or devices under way",
    S.observing.value: "In observation",
    S.ready_for_discharge.value: "Ready for discharge",
    S.discharged.value: "Discharged",
    S.cancelled.value: "Cancelled",
    S.no_show.value: "No-show",
    S.missed.value: "Missed",
}


# --- words for the server's timers ---------------------------------------------------------------


def clock(seconds: int) -> str:
    """1:04:09 (hours:minutes:seconds), as the page script also writes it."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def countdown_text(seconds_left: int | None) -> str:
    if seconds_left is None:
        return "—"
    return f"{clock(seconds_left)} left" if seconds_left > 0 else "Observation minimum complete"


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


@dataclass(frozen=True)
class Due:
    """When the next vital signs are due, in words; ``level`` picks the colour and never stands alone."""

    level: str  # "none", "later", "due", "overdue"
    text: str


def vitals_due(timers: dict[str, Any], *, now: datetime, window_minutes: int, tz: str) -> Due:
    """The next checkpoint's state, judged on the server's clock: due from its time, overdue once the
    overdue window has passed (whether or not the sweeper has raised the alert yet)."""
    overdue = list(timers.get("overdue_checkpoints") or [])
    due_at: datetime | None = timers.get("next_vitals_due_at")
    checkpoint = timers.get("next_vitals_checkpoint")
    if overdue and (checkpoint is None or checkpoint not in overdue):
        checks = ", ".join(f"{c}-minute" for c in overdue)
        return Due("overdue", f"OVERDUE: the {checks} vital signs")
    if due_at is None:
        return Due("none", "No more vital signs due")
    local = due_at.astimezone(ZoneInfo(tz)).strftime("%H:%M")
    what = f"{checkpoint}-minute vital signs"
    if due_at > now:
        minutes = max(1, -(-int((due_at - now).total_seconds()) // 60))
        return Due("later", f"{what} due in {minutes} min (at {local})")
    late = now - due_at
    if late < timedelta(minutes=window_minutes) and checkpoint not in overdue:
        return Due("due", f"DUE NOW: {what} (since {local})")
    return Due("overdue", f"OVERDUE by {_minutes(late)} min: {what} (due at {local})")


# --- the observation board -----------------------------------------------------------------------


@dataclass(frozen=True)
class BoardRow:
    item: dict[str, Any]
    due: Due
    countdown: str


@dataclass(frozen=True)
class Board:
    location: Location | None
    locations: list[Location]
    now: datetime
    rows: list[BoardRow]

    @property
    def timezone(self) -> str:
        return self.location.timezone if self.location else "UTC"

    @property
    def overdue(self) -> int:
        return sum(1 for r in self.rows if r.due.level == "overdue")


def pick_location(location_id: int | None) -> tuple[Location | None, list[Location]]:
    """The location asked for (NotFound if unknown), else the first; and all of them for the picker."""
    found = scope.my_locations(scope.acting_user())
    if location_id is not None:
        location = locations.get_location(location_id)
        scope.require_location(scope.acting_user(), location.id)  # SYS-11
        return location, found
    return (found[0] if found else None), found


def board_rows(location: Location) -> tuple[datetime, list[BoardRow]]:
    board = queries.observation_board(location.id)
    now: datetime = board["now"]
    window = service.overdue_minutes()
    rows = [
        BoardRow(
            item,
            vitals_due(item, now=now, window_minutes=window, tz=location.timezone),
            countdown_text(item["seconds_left"]),
        )
        for item in board["items"]
    ]
    return now, rows


def board(location_id: int | None) -> Board:
    location, found = pick_location(location_id)
    if location is None:
        return Board(None, found, utcnow(), [])
    now, rows = board_rows(location)
    return Board(location, found, now, rows)


# --- the visit runner ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VitalRow:
    reading: VitalSign
    #: field -> "HIGH: above 160" / "LOW: below 90"
    flags: dict[str, str]

    @property
    def when(self) -> str:
        m = self.reading.minutes_after_dose
        return "pre-dose" if m is None else f"{m} min after the dose"

    @property
    def late_text(self) -> str | None:
        late = self.reading.late_for or []
        return ("LATE for the " + ", ".join(f"{c}-minute" for c in late) + " check") if late else None


def flag_words(out_of_range: Iterable[dict[str, Any]]) -> dict[str, str]:
    words = {}
    for o in out_of_range:
        limit = str(o["limit"])
        words[str(o["field"])] = ("HIGH: " if limit.startswith("above") else "LOW: ") + limit
    return words


@dataclass(frozen=True)
class Remainder:
    item: DoseItem
    container: Container


@dataclass
class Runner:
    appointment: Appointment
    series: AppointmentSeries
    patient: Patient
    location: Location
    chair: str
    rules: dict[str, Any]
    detail: dict[str, Any]
    now: datetime
    names: dict[int, str]
    clinical: bool
    missed_maintenance: bool = False
    vitals: list[VitalRow] = field(default_factory=list)
    stock: list[Container] = field(default_factory=list)
    site_names: dict[int, str] = field(default_factory=dict)
    #: the dose the nurse gives: the prescriber's order, else the course's standing order
    dose_ug: int | None = None
    dose_source: str | None = None
    bounds: DoseBounds | None = None
    bounds_error: str | None = None
    remainders: list[Remainder] = field(default_factory=list)
    unmet: list[discharging.Unmet] = field(default_factory=list)
    due: Due | None = None
    countdown: str = "—"

    @property
    def status(self) -> str:
        return str(self.detail["status"])

    @property
    def visit(self) -> Visit | None:
        return self.detail.get("visit")

    @property
    def timers(self) -> dict[str, Any]:
        return self.detail.get("timers") or {}

    @property
    def timezone(self) -> str:
        return self.location.timezone

    @property
    def devices(self) -> bool:
        return rules.is_devices(self.rules)

    @property
    def route(self) -> str:
        return str(self.rules.get("route", ""))

    @property
    def status_words(self) -> str:
        return STATUS_WORDS.get(self.status, self.status.replace("_", " "))

    @property
    def instructions(self) -> str:
        """What the patient leaves with: as recorded at discharge, else this protocol's text."""
        recorded = ((self.visit.discharge_checks if self.visit else None) or {}).get("instructions")
        return str(recorded or discharging.no_driving(self.rules))

    @property
    def gates(self) -> list[dict[str, str]]:
        """The pre-dose checks that fail now, in words (the front desk is told where to send them)."""
        gates: list[dict[str, str]] = self.detail.get("gates") or []
        if self.clinical:
            return gates
        return [{"code": g["code"], "message": GATE_FOR_DESK.get(g["code"], g["message"])} for g in gates]

    @property
    def device_ug(self) -> int:
        return self.bounds.device_ug if self.bounds and self.bounds.device_ug else 28_000

    @property
    def devices_needed(self) -> int:
        return self.dose_ug // self.device_ug if self.dose_ug and self.devices else 0

    @property
    def bounds_text(self) -> str | None:
        b = self.bounds
        if b is None:
            return self.bounds_error
        if b.options_ug:
            return "This course allows " + " or ".join(f"{format_mg(o)} mg" for o in b.options_ug) + " at this visit."
        return f"The protocol's range for this weight: {format_mg(b.min_ug)} to {format_mg(b.max_ug)} mg."


def _names(visit: Visit | None, events: Iterable[Any]) -> dict[int, str]:
    ids: list[int | None] = [e.actor_id for e in events]
    if visit is not None:
        ids += [
            visit.checked_in_by_id,
            visit.hold_released_by_id,
            visit.ordered_by_id,
            visit.dosed_by_id,
            visit.discharged_by_id,
            *(v.recorded_by_id for v in visit.vitals),
            *(d.remainder_by_id for d in visit.doses),
        ]
    return inventory_queries.user_names(ids)


def _usable_stock(location: Location, form: str, *, device_ug: int | None) -> tuple[list[Container], dict[int, str]]:
    """Containers the dose can come from: unused devices, or vials with drug left, unexpired."""
    stock = inventory_queries.stock(location.id)
    today = today_at(location.timezone)
    out = []
    for c in stock.containers:
        if c.drug.form != form or c.expires_on < today or c.balance_ug <= 0:
            continue
        if form == "nasal_device":
            if c.status != ContainerStatus.sealed or (device_ug is not None and c.balance_ug != device_ug):
                continue
        elif c.status not in (ContainerStatus.sealed, ContainerStatus.open):
            continue
        out.append(c)
    out.sort(key=lambda c: (c.expires_on, c.id))
    return out, stock.site_names


def _standing_dose(runner: Runner) -> None:
    visit, appt = runner.visit, runner.appointment
    assert visit is not None
    try:
        runner.bounds = service.dose_bounds(visit, at=runner.now)
    except DomainError as exc:
        messages = [m for ms in (exc.errors or {}).values() for m in (ms if isinstance(ms, list) else [ms])]
        runner.bounds_error = " ".join(str(m) for m in messages) or exc.detail
    if visit.ordered_ug is not None:
        runner.dose_ug, runner.dose_source = visit.ordered_ug, "the prescriber's order for this visit"
    elif appt.planned_dose_mg is not None:
        runner.dose_ug, runner.dose_source = rules.ug(appt.planned_dose_mg), "the course's standing order"
    elif runner.bounds is not None:
        runner.dose_ug, runner.dose_source = runner.bounds.target_ug, "the protocol's dose for this weight"


@dataclass(frozen=True)
class FormContext:
    """What reading one of the runner's forms needs: the zone its times are in, and whether the
    dose comes from nasal devices (one time per device)."""

    timezone: str
    devices: bool


def form_context(appointment_id: int) -> FormContext:
    appt = scheduling.get_appointment(appointment_id)
    series = scheduling.get_series(appt.series_id)
    return FormContext(locations.get_location(appt.location_id).timezone, rules.is_devices(series.protocol.rules))


def runner(appointment_id: int, *, clinical: bool) -> Runner:
    """Everything the runner shows for one visit; the clinical parts only for clinical roles."""
    detail = queries.visit_detail(appointment_id)
    appt = scheduling.get_appointment(appointment_id)
    series = scheduling.get_series(appt.series_id)
    location = locations.get_location(appt.location_id)
    visit: Visit | None = detail.get("visit")
    page = Runner(
        appointment=appt,
        series=series,
        patient=patients.get_patient(appt.patient_id),
        location=location,
        chair=scheduling_queries.chair_names(location.id).get(appt.chair_id, f"Chair #{appt.chair_id}"),
        rules=dict(series.protocol.rules),
        detail=detail,
        now=utcnow(),
        names=_names(visit, detail.get("events") or []),
        clinical=clinical,
    )
    if appt.status == S.scheduled:
        page.missed_maintenance = service.after_missed_maintenance(appt)
    if visit is None:
        return page
    timers = page.timers
    page.countdown = countdown_text(timers.get("seconds_left"))
    page.due = vitals_due(timers, now=page.now, window_minutes=service.overdue_minutes(), tz=location.timezone)
    if not clinical:
        return page
    page.vitals = [VitalRow(v, flag_words(v.out_of_range or [])) for v in visit.vitals]
    if appt.status == S.checked_in:
        _standing_dose(page)
        form = rules.container_form(page.rules)
        page.stock, page.site_names = _usable_stock(
            location, form, device_ug=page.bounds.device_ug if page.bounds else None
        )
    if appt.status in UNDER_WAY:
        page.remainders = [
            Remainder(item, inventory.get_container(item.container_id)) for item in dosing.unresolved_remainders(visit)
        ]
        page.unmet = discharging.unmet_criteria(
            visit,
            at=page.now,
            ride_confirmed=True,
            clinically_stable=True,
            sedation_resolved=True,
            dissociation_resolved=True,
            early=False,
        )
    return page


# --- the Today dashboard -------------------------------------------------------------------------


@dataclass(frozen=True)
class TodayVisit:
    appointment: Appointment
    name: str
    chair: str
    visit: Visit | None
    #: for checked-in visits: the pre-dose checks that fail now, and whether a BP reading holds the dose
    gates: list[dict[str, str]] = field(default_factory=list)
    held: bool = False

    @property
    def status_words(self) -> str:
        return STATUS_WORDS.get(self.appointment.status, self.appointment.status)


@dataclass(frozen=True)
class ScreeningReview:
    patient_id: int
    name: str
    screening: ScreeningResult
    next_visit: datetime


@dataclass(frozen=True)
class CourseReview:
    series_id: int
    name: str
    kind: str
    due_at: datetime


@dataclass
class Today:
    location: Location | None
    locations: list[Location]
    day: date | None
    now: datetime
    visits: list[TodayVisit] = field(default_factory=list)
    board: list[BoardRow] = field(default_factory=list)
    screening_reviews: list[ScreeningReview] = field(default_factory=list)
    course_reviews: list[CourseReview] = field(default_factory=list)
    loss_reports: list[LossReport] = field(default_factory=list)
    next_inventory_due_on: date | None = None
    open_discrepancies: int = 0

    @property
    def timezone(self) -> str:
        return self.location.timezone if self.location else "UTC"

    def in_status(self, *statuses: str) -> list[TodayVisit]:
        return [v for v in self.visits if v.appointment.status in statuses]

    @property
    def arrivals(self) -> list[TodayVisit]:
        return self.in_status(S.scheduled.value)

    @property
    def checked_in(self) -> list[TodayVisit]:
        return self.in_status(S.checked_in.value)

    @property
    def held(self) -> list[TodayVisit]:
        return [v for v in self.checked_in if v.held]

    @property
    def awaiting_order(self) -> list[TodayVisit]:
        return [v for v in self.checked_in if not v.held and v.visit is not None and v.visit.ordered_ug is None]

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in self.visits:
            out[v.appointment.status] = out.get(v.appointment.status, 0) + 1
        return out

    @property
    def overdue(self) -> list[BoardRow]:
        return [r for r in self.board if r.due.level == "overdue"]


def _local_midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(tz))


def today(location_id: int | None, *, actor: User, sections: set[str]) -> Today:
    """The day at one location, gathered only for the sections the actor's role sees:
    ``visits`` (the day's list), ``board``, ``prescriber`` (holds, orders, reviews), ``admin``."""
    location, found = pick_location(location_id)
    now = utcnow()
    if location is None:
        return Today(None, found, None, now)
    tz = location.timezone
    day = today_at(tz)
    page = Today(location, found, day, now)
    if sections & {"visits", "prescriber"}:
        appts = scheduling.list_appointments(
            location_id=location.id,
            since=_local_midnight(day, tz),
            until=_local_midnight(day + timedelta(days=1), tz),
        )
        appts = [a for a in appts if a.status != S.cancelled.value]
        names = scheduling_queries.patient_names({a.patient_id for a in appts})
        chairs = scheduling_queries.chair_names(location.id)
        visits = {
            v.appointment_id: v
            for v in db.session.scalars(select(Visit).where(Visit.appointment_id.in_([a.id for a in appts] or [-1])))
        }
        for a in appts:
            visit = visits.get(a.id)
            gates: list[dict[str, str]] = []
            held = False
            if visit is not None and a.status == S.checked_in and "prescriber" in sections:
                detail = queries.visit_detail(a.id)
                gates, held = list(detail["gates"]), bool(detail["held"])
            page.visits.append(
                TodayVisit(
                    a,
                    names.get(a.patient_id, f"Patient #{a.patient_id}"),
                    chairs.get(a.chair_id, f"Chair #{a.chair_id}"),
                    visit,
                    gates,
                    held,
                )
            )
    if "board" in sections:
        _, page.board = board_rows(location)
    if "prescriber" in sections:
        _reviews(page, location)
    if "admin" in sections:
        page.next_inventory_due_on = inventory.next_inventory_due_on(location.id)
        page.loss_reports = [r for r in inventory.list_loss_reports(location.id) if r.filed_at is None]
        page.open_discrepancies = len(inventory_queries.discrepancies(location.id))
    return page


#: how far ahead the prescriber's review list looks
REVIEW_DAYS = 7


def _reviews(page: Today, location: Location) -> None:
    """Screenings waiting for a prescriber's decision (patients booked here in the coming week) and
    courses whose end-of-induction or end-of-course review falls due by then."""
    assert page.day is not None
    until = _local_midnight(page.day + timedelta(days=REVIEW_DAYS + 1), location.timezone)
    coming = scheduling.list_appointments(
        location_id=location.id, since=_local_midnight(page.day, location.timezone), until=until
    )
    coming = [a for a in coming if a.status in (S.scheduled.value, S.checked_in.value)]
    first: dict[int, datetime] = {}
    for a in coming:
        first.setdefault(a.patient_id, a.starts_at)
    names = scheduling_queries.patient_names(set(first))
    for pid, starts_at in first.items():
        latest = patients.latest_screening(pid)
        if latest is not None and latest.eligibility == "review" and latest.overridden_at is None:
            page.screening_reviews.append(ScreeningReview(pid, names.get(pid, f"Patient #{pid}"), latest, starts_at))
    active = db.session.scalars(
        select(AppointmentSeries).where(
            AppointmentSeries.location_id == location.id, AppointmentSeries.status == SeriesStatus.active.value
        )
    ).all()
    series_names = scheduling_queries.patient_names({s.patient_id for s in active})
    for series in active:
        for review in scheduling.reviews(series):
            due = datetime.fromisoformat(review["due_at"])
            if due < until:
                page.course_reviews.append(
                    CourseReview(
                        series.id, series_names.get(series.patient_id, f"Patient #{series.patient_id}"),
                        str(review["kind"]), due,
                    )
                )  # fmt: skip
    page.course_reviews.sort(key=lambda r: r.due_at)

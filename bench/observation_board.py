"""observation_board: the observation board with 50,000 past visits at the location vs 500 past visits.

``GET /api/v1/observations/active?location_id=`` with a nurse's bearer token, in process through the
Flask test client (each request pushes and pops its own app context, so the session, the token lookup
and the access-log row are a production request's), for a location with OPEN patients in observation
"now" and PAST visits already closed there (ours, default 50,000) vs BASE_PAST (baseline, default 500),
in one fresh PostgreSQL database ``clinic_bench_board_<pid>_<hex>``, measured in the same run.

1. ``clinic db upgrade``; the clock travels (time-machine, frozen) to 07:30 on a Monday at least a
   week ahead in America/New_York. Through the services, each call in the app context and committed
   with ``clinic.core.tx.commit``: a front-desk user, two nurses, a prescriber, a location certified in
   the SPRAVATO REMS with OPEN chairs and a safe, a Spravato 28 mg nasal device drug, the witnessed
   initial inventory, a receipt of 2 x OPEN devices, and OPEN patients screened eligible and enrolled
   in the REMS, each booked an esketamine-rems course (12 visits) starting that day at 09:00, one
   chair each.
2. The visit day, in time order (the clock moved to each step): check-in (from 09:00, 10 s apart) and
   a pre-dose reading; the dose, two devices 5 minutes apart (the first from 09:05, 30 s apart), so
   everyone is in observation until 11:05-11:24; the sweeper (``alerts.raise_due``) every 5 minutes
   from 09:45; the 40-minute reading on time for half the patients, late (after the overdue alert)
   for a quarter, and not yet for the last quarter. The clock then stays frozen at 10:30 for the
   measured phases: every board answer is the same OPEN items, with raised and overdue alerts.
3. Past visits, bulk-loaded with COPY (foreign-key triggers skipped with ``session_replication_role =
   replica``; unique indexes enforced), consistent by construction, at the same location and on the
   same chairs, on the weekdays before that Monday: courses of 12 esketamine-rems visits (every third
   weekday, the same chair and time: 08:00, 10:30, 13:00 or 15:30), one fresh patient each (with a
   screening and a REMS enrolment), each visit an appointment ``discharged`` holding its ten 15-minute
   slots (inserted by SQL from the loaded appointments), a ``visits`` row with ``closed = true``
   (checked in, dosed 56 or 84 mg, observed, discharged; 2% early by a prescriber with a reason; the
   monitoring form submitted when it was due before now),
   its five ``visit_events``, three vital signs (pre-dose, 40 min with some late or out of range, 120
   min or before an early discharge) and six observation alerts raised / satisfied / cancelled as the
   services would have left them. Not loaded: ``visit_doses`` and their hash-chained ledger entries
   and containers (the board reads neither), nor audit rows. The first BASE_PAST visits are loaded
   for the baseline, then the rest up to PAST for ours; VACUUM ANALYZE (the whole database) after
   each load, and after the top-up a check that every past visit has its slots, events, readings and
   alerts.
4. Each phase: a bearer token issued for a nurse, WARMUP requests, then REQUESTS measured one after
   the other. Every answer must be 200 with the OPEN visits, byte for byte the same within a phase
   and the same as the baseline's once each item's alerts are in id order (the board's alerts query
   has no ORDER BY, and the plan that reads them changes with the table's size).

SQL statements are counted per request with a ``before_cursor_execute`` listener on the engine (every
statement sent: the token lookup, the board's reads, the access-log insert; BEGIN/COMMIT are not
cursor statements). Every request of both phases must send the same number, or the benchmark fails:
the board must not cost more as past visits pile up. Per-statement database time is printed to
stderr, and EXPLAIN (ANALYZE, BUFFERS) of the request's SELECTs after each phase. The app's JSON log
lines (one per request) go to a file in the temp folder, not stderr. About 1-2 minutes.

Knobs (environment): BENCH_OBSERVATION_BOARD_REQUESTS (measured per phase, default 300),
BENCH_OBSERVATION_BOARD_WARMUP (default 30), BENCH_OBSERVATION_BOARD_PAST (default 50000),
BENCH_OBSERVATION_BOARD_BASE_PAST (default 500), BENCH_OBSERVATION_BOARD_OPEN (patients in
observation, default 40), BENCH_OBSERVATION_BOARD_SEED (default 7), BENCH_OBSERVATION_BOARD_EXPLAIN
(print the plans, default 1).

Figures: ``observation_board.requests_per_s`` (requests / time spent in them), ``observation_board.
statements_per_request`` (ratio must be 1.000), ``observation_board.p50_ms``, ``observation_board.p99_ms``,
and ``observation_board.cpu_ms_per_request``: this process's CPU time (``time.process_time``, checking the
answers left out) plus the PostgreSQL backends' (utime + stime from ``/proc/<pid>/stat``, the backends the
pool kept from the warm-up; the figure is left out when they cannot be read), per request. Lower is
better; unlike the wall-clock figures it is not inflated by other load on the machine, since the phases
cannot alternate (the top-up is one way).
"""

from __future__ import annotations

import collections
import contextlib
import gc
import io
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.harness import BenchmarkError, Figure, bench_app, note, postgres_database, run_command, tool
from bench.loadgen import _percentile

REQUESTS = max(1, int(os.environ.get("BENCH_OBSERVATION_BOARD_REQUESTS", "300")))
WARMUP = max(0, int(os.environ.get("BENCH_OBSERVATION_BOARD_WARMUP", "30")))
PAST = max(0, int(os.environ.get("BENCH_OBSERVATION_BOARD_PAST", "50000")))
BASE_PAST = min(PAST, max(0, int(os.environ.get("BENCH_OBSERVATION_BOARD_BASE_PAST", "500"))))
OPEN = max(4, int(os.environ.get("BENCH_OBSERVATION_BOARD_OPEN", "40")))
SEED = int(os.environ.get("BENCH_OBSERVATION_BOARD_SEED", "7"))
EXPLAIN = os.environ.get("BENCH_OBSERVATION_BOARD_EXPLAIN", "1") not in ("", "0", "no", "false")

PATH = "/api/v1/observations/active"
PROTOCOL = "esketamine-rems"
TZ = "America/New_York"
ZONE = ZoneInfo(TZ)
PASSWORD = "throwaway-orchid-lattice"  # throwaway users in a throwaway database
DEA = "AB1234563"  # a well-formed registration (check digit 3), not a real one
DEVICE_UG = 28_000
#: the measured phases' frozen moment, local time on the visit day: everyone is in observation
MEASURE_AT = dtime(10, 30)
#: the past visits' grid: every chair at these local times (150-minute chair blocks, 08:00-18:00)
BLOCKS = (dtime(8, 0), dtime(10, 30), dtime(13, 0), dtime(15, 30))
CHAIR_MINUTES = 150
COURSE = 12  # visits per past course, every INTERLEAVE-th weekday on one chair and block
INTERLEAVE = 3
INDUCTION = 8  # esketamine-rems: 8 induction visits, then maintenance


@dataclass(frozen=True)
class Clinic:
    location_id: int
    desk_id: int
    nurse_id: int
    prescriber_id: int
    protocol_id: int
    chairs: tuple[int, ...]
    appointments: tuple[int, ...]  # the open visits' appointments, as booked
    visits: tuple[int, ...]
    day: date
    screening: tuple[str, str]  # a stored eligible screening's answers and flags (JSON), for past patients
    rules: dict[str, Any]  # the protocol's

    def local(self, at: dtime, day: date | None = None) -> datetime:
        return datetime.combine(day or self.day, at, tzinfo=ZONE).astimezone(UTC)


@dataclass
class Phase:
    label: str
    past: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)
    shapes: list[tuple[str, ...]] = field(default_factory=list)
    body: bytes = b""  # the first answer, byte for byte
    reference: Any = None  # the first answer (the baseline's for ours), each item's alerts in id order
    reordered: int = 0  # answers equal to the reference only once their alerts are sorted
    app_cpu_s: float = 0.0  # this process's CPU time over the measured requests
    db_cpu_s: float | None = None  # the PostgreSQL backends' (None: unknown)

    @property
    def per_s(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        """CPU per request, the app's and the database's: what the machine's other load does not inflate."""
        return (self.app_cpu_s + (self.db_cpu_s or 0.0)) / len(self.latencies_ms) * 1000

    def pct(self, p: float) -> float:
        return _percentile(sorted(self.latencies_ms), p)

    def summary(self) -> str:
        counts = collections.Counter(self.statements)
        fifth = max(1, len(self.latencies_ms) // 5)
        trend = "/".join(
            f"{statistics.median(self.latencies_ms[i : i + fifth]):.2f}"
            for i in range(0, len(self.latencies_ms), fifth)
        )
        return (
            f"{len(self.latencies_ms)} requests with {self.past} past visits in {self.seconds:.2f}s = "
            f"{self.per_s:.1f}/s; p50 {self.pct(50):.2f} ms, p99 {self.pct(99):.2f} ms, "
            f"max {max(self.latencies_ms):.2f} ms, median by fifths {trend} ms; "
            f"statements per request {dict(sorted(counts.items()))}; CPU per request: app "
            f"{self.app_cpu_s / len(self.latencies_ms) * 1000:.2f} ms + database "
            + ("unknown" if self.db_cpu_s is None else f"{self.db_cpu_s / len(self.latencies_ms) * 1000:.2f} ms")
        )


class StatementCounter:
    """Every statement the engine sends (before_cursor_execute): its first words, the full text and
    parameters of the last request's (for EXPLAIN), and the time spent in each kind (until
    after_cursor_execute) over a phase's measured requests."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.full: list[tuple[str, Any]] = []
        self.seconds: collections.Counter[str] = collections.Counter()
        self.backends: set[int] = set()  # PostgreSQL backend pids the statements went to
        self._started = 0.0

    def before(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        self.texts.append(" ".join(statement.split()[:4]) + (" [many]" if executemany else ""))
        self.full.append((statement, params))
        with contextlib.suppress(AttributeError):
            self.backends.add(conn.connection.dbapi_connection.info.backend_pid)
        self._started = time.perf_counter()

    def after(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        if self.texts:
            self.seconds[self.texts[-1]] += time.perf_counter() - self._started

    def reset(self, *, timings: bool = False) -> None:
        self.texts = []
        self.full = []
        if timings:
            self.seconds = collections.Counter()

    def by_statement(self, requests: int) -> str:
        return "; ".join(f"{shape}: {t / requests * 1000:.3f} ms" for shape, t in self.seconds.most_common())


# --- the app, in process ---------------------------------------------------------------------------


@contextlib.contextmanager
def make_app(url: str, instance: Path, log: Path) -> Iterator[Any]:
    """The app on ``url`` (no app context pushed: each test-client request pushes its own). Its JSON
    log lines (one per request, as in production) go to ``log`` instead of stderr while it runs."""
    import logging

    from clinic.core.logging import JsonFormatter
    from clinic.extensions import db

    app = bench_app(url, instance)
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    handlers = [h for h in handlers if isinstance(h.formatter, JsonFormatter)]
    with log.open("a") as stream:
        saved_streams = [h.setStream(stream) for h in handlers]
        try:
            yield app
        finally:
            for h, old in zip(handlers, saved_streams, strict=True):
                if old is not None:
                    h.setStream(old)
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


def sql(url: str, *statements: str) -> list[Any]:
    """Each statement in autocommit (VACUUM needs it); the first column of each first row."""
    import psycopg

    out = []
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        for statement in statements:
            cur = conn.execute(statement)
            row = cur.fetchone() if cur.description else None
            out.append(row[0] if row else None)
    return out


# --- setup through the services, on the travelling clock -------------------------------------------


def visit_day() -> date:
    """The first Monday at least a week after today in the location's zone."""
    day = datetime.now(UTC).astimezone(ZONE).date() + timedelta(days=7)
    return day + timedelta(days=(0 - day.weekday()) % 7)


def set_up(traveller: Any, day: date) -> Clinic:
    from sqlalchemy import select

    from clinic import fixtures
    from clinic.core.tx import commit
    from clinic.extensions import db
    from clinic.inventory.witness import WitnessSignature
    from clinic.patients.models import ScreeningResult
    from clinic.scheduling import service as scheduling

    def user(role: str, n: int, licence: str | None = None) -> Any:
        email = f"bench.{role}{n}@bench.clinic"
        return fixtures.create_user(role=role, email=email, password=PASSWORD, license_number=licence)

    desk = user("front_desk", 1)
    nurse, witness = user("nurse", 1, "1"), user("nurse", 2, "2")
    prescriber = user("prescriber", 1, "3")
    loc = fixtures.create_location(
        nurse,
        name="Bench clinic",
        address="1 Bench St",
        dea_registration=DEA,
        timezone=TZ,
        rems_certified_until=day + timedelta(days=365),
        chairs=OPEN,
        storage_sites=("Safe",),
        members=(desk, nurse, witness, prescriber),
    )
    drug = fixtures.create_drug(nurse, fixtures.SPRAVATO_28)
    assert drug.container_ug == DEVICE_UG
    commit()
    fixtures.open_ledger(nurse, loc.id, WitnessSignature(witness.email, PASSWORD))
    commit()
    receipt = fixtures.create_receipt(
        nurse,
        storage_site_id=loc.sites[0],
        drug_id=drug.id,
        count=2 * OPEN,
        lot_number="BENCH1",
        expires_on=day + timedelta(days=700),
    )
    devices = [c.id for c in receipt.containers]
    commit()

    appointments: list[int] = []
    first_screening: int | None = None
    for i in range(OPEN):
        patient = fixtures.create_patient(
            desk,
            first_name="Casey",
            last_name=f"Board{i:02d}",
            date_of_birth=date(1970 + i % 30, 1 + i % 12, 1 + i % 28),
            address=f"{i} Bench St",
            timezone=TZ,
            clinician=nurse,
            screen={},
            location_id=loc.id,
            rems_enrolled_on=day - timedelta(days=3),
        )
        first_screening = first_screening or db.session.scalar(
            select(ScreeningResult.id).where(ScreeningResult.patient_id == patient.id)
        )
        series = fixtures.book_course(
            desk,
            patient_id=patient.id,
            protocol=PROTOCOL,
            location_id=loc.id,
            prescriber_id=prescriber.id,
            start_on=day,
            preferred_time=dtime(9, 0),
        )
        first = series.appointments[0]
        if first.starts_at != datetime.combine(day, dtime(9, 0), tzinfo=ZONE).astimezone(UTC):
            raise BenchmarkError(f"course {i} starts at {first.starts_at}, not on the visit day at 09:00")
        appointments.append(first.id)
        commit()
    protocol = scheduling.current_protocol(PROTOCOL)
    protocol_id, protocol_rules = protocol.id, dict(protocol.rules)
    stored = db.session.get(ScreeningResult, first_screening)
    assert stored is not None
    screening = (json.dumps(stored.answers), json.dumps(stored.flags))
    db.session.rollback()

    ids = {"location": loc.id, "desk": desk.id, "nurse": nurse.id, "prescriber": prescriber.id}
    visits = run_the_day(traveller, day, appointments, devices, desk_id=ids["desk"], nurse_id=ids["nurse"])
    return Clinic(
        location_id=ids["location"],
        desk_id=ids["desk"],
        nurse_id=ids["nurse"],
        prescriber_id=ids["prescriber"],
        protocol_id=protocol_id,
        chairs=loc.chairs,
        appointments=tuple(appointments),
        visits=visits,
        day=day,
        screening=screening,
        rules=protocol_rules,
    )


def run_the_day(
    traveller: Any, day: date, appointments: list[int], devices: list[int], *, desk_id: int, nurse_id: int
) -> tuple[int, ...]:
    """Check in, pre-dose vitals, dose, the sweeper and the 40-minute readings, in time order."""
    from clinic.auth.models import User
    from clinic.core.time import utcnow
    from clinic.core.tx import commit
    from clinic.extensions import db
    from clinic.visits import alerts, service
    from clinic.visits.dosing import DoseRequest, record_dose

    def at(t: dtime) -> datetime:
        return datetime.combine(day, t, tzinfo=ZONE).astimezone(UTC)

    def actor(user_id: int) -> User:
        found = db.session.get(User, user_id)
        assert found is not None
        return found

    def vitals(appt: int) -> Callable[[], Any]:
        return lambda: service.record_vitals(
            actor=actor(nurse_id),
            appointment_id=appt,
            systolic=124,
            diastolic=78,
            heart_rate=72,
            spo2=98,
            sedation=5,
            dissociation=0,
        )

    steps: list[tuple[datetime, int, str, Callable[[], Any]]] = []
    nine = at(dtime(9, 0))
    for i, appt in enumerate(appointments):
        checked_in = nine + timedelta(seconds=10 * i)
        first_device = at(dtime(9, 5)) + timedelta(seconds=30 * i)
        steps.append(
            (
                checked_in,
                0,
                "check in",
                lambda appt=appt: service.check_in(actor=actor(desk_id), appointment_id=appt, ride_home_arranged=True),
            )
        )
        steps.append((checked_in + timedelta(minutes=1), 1, "pre-dose vitals", vitals(appt)))
        pair = devices[2 * i : 2 * i + 2]
        steps.append(
            (
                first_device + timedelta(minutes=5),  # charted as the second device goes in
                2,
                "dose",
                lambda appt=appt, pair=pair: record_dose(
                    actor=actor(nurse_id),
                    appointment_id=appt,
                    req=DoseRequest(container_ids=pair),
                    client_addr="127.0.0.1",
                ),
            )
        )
        if i % 2 == 0:  # on time
            steps.append((first_device + timedelta(minutes=41), 3, "40-minute vitals", vitals(appt)))
        elif i % 4 == 1:  # late: after the overdue alert was raised
            steps.append((first_device + timedelta(minutes=62), 3, "late 40-minute vitals", vitals(appt)))
        # i % 4 == 3: not yet taken; overdue on the board
    sweep = at(dtime(9, 45))
    while sweep <= at(MEASURE_AT):
        steps.append((sweep, 4, "sweep", lambda: alerts.raise_due(utcnow())))
        sweep += timedelta(minutes=5)
    steps.sort(key=lambda s: (s[0], s[1]))
    for moment, _, what, action in steps:
        traveller.move_to(moment)
        try:
            action()
            commit()
        except Exception as exc:
            db.session.rollback()
            raise BenchmarkError(f"{what} at {moment.astimezone(ZONE):%H:%M:%S} failed: {exc!r}") from exc
        finally:
            db.session.remove()
    from clinic.visits.models import Visit

    visits = tuple(
        db.session.scalars(
            db.select(Visit.id).where(Visit.appointment_id.in_(appointments)).order_by(Visit.appointment_id)
        )
    )
    db.session.rollback()
    if len(visits) != len(appointments):
        raise BenchmarkError(f"{len(visits)} visits opened for {len(appointments)} appointments")
    return visits


# --- past visits, bulk-loaded ----------------------------------------------------------------------

TABLES: dict[str, str] = {
    "patients": "id, first_name, last_name, date_of_birth, address, timezone, preferred_channel, "
    "reminders_opt_out, created_at",
    "screening_results": "id, patient_id, location_id, answers, flags, eligibility, screened_by_id, screened_at",
    "rems_enrollments": "id, patient_id, enrolled_on, recorded_by_id, recorded_at",
    "appointment_series": "id, patient_id, location_id, prescriber_id, protocol_id, start_on, preferred_time, "
    "status, created_by_id, created_at",
    "appointments": "id, series_id, seq, phase, patient_id, location_id, chair_id, starts_at, ends_at, "
    "planned_dose_mg, status, status_reason, created_at",
    "visits": "id, appointment_id, patient_id, location_id, series_id, protocol_id, closed, checked_in_at, "
    "checked_in_by_id, ride_home_arranged, preparation, screening_id, ordered_ug, ordered_by_id, ordered_at, "
    "dose_ug, dosed_by_id, dose_started_at, "
    "dose_ended_at, earliest_discharge_at, ready_at, ready_by_id, discharged_at, discharged_by_id, "
    "early_discharge_reason, discharge_checks, pmf_reference, pmf_submitted_at, pmf_submitted_by_id, created_at",
    "visit_events": "id, visit_id, from_status, to_status, actor_id, occurred_at, recorded_at, note",
    "vital_signs": "id, visit_id, taken_at, recorded_at, recorded_by_id, systolic, diastolic, heart_rate, spo2, "
    "respiratory_rate, sedation, dissociation, minutes_after_dose, checkpoints, late_for, out_of_range",
    "observation_alerts": "id, visit_id, location_id, kind, checkpoint, due_at, raised_at, satisfied_at, "
    "satisfied_late, cancelled_at",
}
N = "\\N"


def _ts(at: datetime | None) -> str:
    return N if at is None else at.isoformat()


def _copy_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


@dataclass
class Chunk:
    """COPY text per table for some past visits."""

    out: dict[str, io.StringIO] = field(default_factory=lambda: {t: io.StringIO() for t in TABLES})
    rows: collections.Counter[str] = field(default_factory=collections.Counter)
    visits: int = 0
    appointment_ids: tuple[int, int] = (0, -1)  # first, last: their slots are inserted by SQL
    early: int = 0
    late: int = 0
    pmf_pending: int = 0

    def write(self, table: str, line: str) -> None:
        self.out[table].write(line)
        self.rows[table] += 1


class PastPlanner:
    """Courses of past visits on a grid of (weekday before the visit day, chair, block), each course one
    fresh patient's COURSE visits every INTERLEAVE-th weekday on one chair and block, newest courses
    first; ids from the tables' sequences. ``chunk(n)`` plans the next ``n`` visits (the last course cut
    short to hit the number exactly)."""

    def __init__(self, clinic: Clinic, first_ids: dict[str, int], now: datetime, rng: random.Random) -> None:
        from clinic.visits import discharge, rules
        from clinic.visits.models import AlertKind

        self.c = clinic
        self.ids = dict(first_ids)
        self.now = now
        self.rng = rng
        self.rules = clinic.rules
        self.kinds = AlertKind
        self.out_of_range = rules.out_of_range
        checks = {
            "ride_confirmed": True,
            "clinically_stable": True,
            "sedation_resolved": True,
            "dissociation_resolved": True,
            "instructions": discharge.NO_DRIVING,
        }
        self.checks = _copy_text(json.dumps(checks))
        self.window = timedelta(minutes=10)  # VITALS_OVERDUE_MINUTES, the default
        streams = len(clinic.chairs) * len(BLOCKS)
        period = COURSE * INTERLEAVE  # weekdays per period: INTERLEAVE courses per stream
        periods = -(-PAST // (streams * INTERLEAVE * COURSE)) + 1
        self.weekdays: list[date] = []
        day = clinic.day
        while len(self.weekdays) < periods * period:
            day -= timedelta(days=1)
            if day.weekday() < 5:
                self.weekdays.append(day)
        self.courses = self._courses(periods, streams, period)

    def _courses(self, periods: int, streams: int, period: int) -> Iterator[list[tuple[date, int, dtime]]]:
        """Each course's visits, oldest first: (day, chair id, block start)."""
        for p in range(periods):
            for s in range(streams):
                chair, block = self.c.chairs[s % len(self.c.chairs)], BLOCKS[s // len(self.c.chairs)]
                for j in range(INTERLEAVE):
                    ks = [p * period + j + INTERLEAVE * m for m in range(COURSE)]
                    yield [(self.weekdays[k], chair, block) for k in reversed(ks)]

    def take(self, table: str) -> int:
        self.ids[table] += 1
        return self.ids[table] - 1

    def chunk(self, visits: int) -> Chunk:
        out = Chunk()
        first = self.ids["appointments"]
        while out.visits < visits:
            course = next(self.courses)[: visits - out.visits]
            self.course(out, course)
        out.appointment_ids = (first, self.ids["appointments"] - 1)
        return out

    def course(self, out: Chunk, course: list[tuple[date, int, dtime]]) -> None:
        c, rng = self.c, self.rng
        first_start = c.local(course[0][2], course[0][0])
        created = first_start - timedelta(days=rng.randint(3, 14))
        registered = created - timedelta(days=rng.randint(1, 10))
        pid, scr, rems, sid = (self.take(t) for t in ("patients", "screening_results", "rems_enrollments", "series"))
        born = date(1950 + rng.randrange(50), 1 + rng.randrange(12), 1 + rng.randrange(28))
        out.write(
            "patients",
            f"{pid}\tPat\tPast{pid}\t{born}\t{pid} Past St\t{TZ}\temail\tf\t{_ts(registered)}\n",
        )
        answers, flags = c.screening
        out.write(
            "screening_results",
            f"{scr}\t{pid}\t{c.location_id}\t{_copy_text(answers)}\t{_copy_text(flags)}\teligible\t{c.nurse_id}\t"
            f"{_ts(registered)}\n",
        )
        out.write(
            "rems_enrollments",
            f"{rems}\t{pid}\t{registered.astimezone(ZONE).date()}\t{c.nurse_id}\t{_ts(registered)}\n",
        )
        status = "completed" if len(course) == COURSE else "cancelled"
        out.write(
            "appointment_series",
            f"{sid}\t{pid}\t{c.location_id}\t{c.prescriber_id}\t{c.protocol_id}\t{course[0][0]}\t{course[0][2]}\t"
            f"{status}\t{c.desk_id}\t{_ts(created)}\n",
        )
        for seq, (day, chair, block) in enumerate(course, start=1):
            dose_mg = 56 if seq == 1 or rng.random() < 0.4 else 84  # 84 only after a 56 (SPR-21)
            self.visit(out, pid, scr, sid, seq, c.local(block, day), chair, dose_mg, created)

    def visit(
        self,
        out: Chunk,
        pid: int,
        scr: int,
        sid: int,
        seq: int,
        start: datetime,
        chair: int,
        dose_mg: int,
        created: datetime,
    ) -> None:
        c, rng, K = self.c, self.rng, self.kinds
        aid, vid = self.take("appointments"), self.take("visits")
        phase = "induction" if seq <= INDUCTION else "maintenance"
        out.write(
            "appointments",
            f"{aid}\t{sid}\t{seq}\t{phase}\t{pid}\t{c.location_id}\t{chair}\t{_ts(start)}\t"
            f"{_ts(start + timedelta(minutes=CHAIR_MINUTES))}\t56\tdischarged\t{N}\t"
            f"{_ts(created)}\n",
        )

        checked_in = start + timedelta(seconds=rng.randint(-300, 300))
        t0 = checked_in + timedelta(minutes=10, seconds=rng.randint(0, 120))  # the first device
        devices = dose_mg // 28
        ended = t0 + timedelta(minutes=5 * (devices - 1))
        earliest = t0 + timedelta(minutes=120)
        early = rng.random() < 0.02
        if early:
            discharged = t0 + timedelta(minutes=rng.randint(95, 110))
            discharger = c.prescriber_id
            out.early += 1
        else:
            discharged = earliest + timedelta(minutes=rng.randint(1, 10))
            discharger = c.nurse_id

        # vital signs: pre-dose, at 40 minutes (some late, some out of range), at 120 or before leaving
        late = rng.random() < 0.08
        m40 = rng.randint(52, 58) if late else rng.randint(37, 43)
        out.late += late
        readings: list[tuple[datetime, int | None, dict[str, int], list[int], list[int]]] = [
            (checked_in + timedelta(minutes=3), None, self._values(rng, calm=True), [], []),
            (t0 + timedelta(minutes=m40), m40, self._values(rng, calm=False), [40], [40] if late else []),
        ]
        if early:
            m_last = int((discharged - t0) / timedelta(minutes=1)) - 5
            readings.append((t0 + timedelta(minutes=m_last), m_last, self._values(rng, calm=True), [], []))
        else:
            m_last = rng.randint(117, 119)
            readings.append((t0 + timedelta(minutes=m_last), m_last, self._values(rng, calm=True), [120], []))
        for taken, minutes, values, checkpoints, late_for in readings:
            oor = self.out_of_range(self.rules, values)
            out.write(
                "vital_signs",
                f"{self.take('vitals')}\t{vid}\t{_ts(taken)}\t{_ts(taken + timedelta(seconds=rng.randint(5, 90)))}\t"
                f"{c.nurse_id}\t{values['systolic']}\t{values['diastolic']}\t{values['heart_rate']}\t{values['spo2']}\t"
                f"{values['respiratory_rate']}\t{values['sedation']}\t{values['dissociation']}\t"
                f"{N if minutes is None else minutes}\t{json.dumps(checkpoints)}\t{json.dumps(late_for)}\t"
                f"{_copy_text(json.dumps(oor)) if oor else '[]'}\n",
            )

        # the monitoring form: submitted 1-5 days later (5%: after the day-6 alert), unless that is after now
        form_at = t0 + (
            timedelta(days=6, hours=rng.randint(1, 20)) if rng.random() < 0.05 else timedelta(days=rng.randint(1, 5))
        )
        submitted = form_at if form_at <= self.now else None
        out.pmf_pending += submitted is None

        # alerts, as the sweeper (raised a few seconds after due) and the readings left them
        def raised(due: datetime, met: datetime | None) -> datetime | None:
            if met is not None and met < due:
                return None
            sweep = due + timedelta(seconds=rng.randint(1, 5))
            return sweep if sweep <= self.now and (met is None or sweep <= met) else None

        taken40 = readings[1][0]
        taken120 = readings[2][0] if not early else None
        alerts: list[tuple[str, int, datetime, datetime | None, datetime | None, bool, datetime | None]] = []
        for kind, due in ((K.vitals_due, t0 + timedelta(minutes=40)), (K.vitals_overdue, t0 + timedelta(minutes=50))):
            alerts.append((kind.value, 40, due, raised(due, taken40), taken40, m40 >= 40 + 10, None))
        for kind, due in ((K.vitals_due, earliest), (K.vitals_overdue, earliest + self.window)):
            if early:  # discharged first: moot, cancelled at discharge
                alerts.append((kind.value, 120, due, None, None, False, discharged))
            else:
                alerts.append((kind.value, 120, due, raised(due, taken120), taken120, False, None))
        if early:
            alerts.append((K.observation_complete.value, 0, earliest, None, None, False, discharged))
        else:
            alerts.append((K.observation_complete.value, 0, earliest, raised(earliest, None), None, False, None))
        pmf_due = t0 + timedelta(days=6)
        alerts.append((K.pmf_overdue.value, 0, pmf_due, raised(pmf_due, submitted), submitted, False, None))
        for kind, checkpoint, due, raised_at, satisfied_at, satisfied_late, cancelled_at in alerts:
            out.write(
                "observation_alerts",
                f"{self.take('alerts')}\t{vid}\t{c.location_id}\t{kind}\t{checkpoint}\t{_ts(due)}\t{_ts(raised_at)}\t"
                f"{_ts(satisfied_at)}\t{'t' if satisfied_late else 'f'}\t{_ts(cancelled_at)}\n",
            )

        reason = "patient stable, asked to leave early" if early else None
        # the standing order is the planned 56 mg; 84 mg is the prescriber's order for the visit
        order = (
            f"{dose_mg * 1000}\t{c.prescriber_id}\t{_ts(t0 - timedelta(minutes=3))}"
            if dose_mg != 56
            else f"{N}\t{N}\t{N}"
        )
        out.write(
            "visits",
            f"{vid}\t{aid}\t{pid}\t{c.location_id}\t{sid}\t{c.protocol_id}\tt\t{_ts(checked_in)}\t{c.desk_id}\tt\t{{}}\t"
            f"{scr}\t{order}\t{dose_mg * 1000}\t{c.nurse_id}\t{_ts(t0)}\t{_ts(ended)}\t{_ts(earliest)}\t"
            f"{_ts(discharged)}\t"
            f"{discharger}\t{_ts(discharged)}\t{discharger}\t{reason or N}\t{self.checks}\t"
            f"{N if submitted is None else f'PMF-{vid}'}\t{_ts(submitted)}\t{N if submitted is None else c.nurse_id}\t"
            f"{_ts(checked_in)}\n",
        )
        steps = [
            ("scheduled", "checked_in", c.desk_id, checked_in, None),
            ("checked_in", "dosed", c.nurse_id, t0, None),
            ("dosed", "observing", c.nurse_id, ended, None),
            ("observing", "ready_for_discharge", discharger, discharged, None),
            ("ready_for_discharge", "discharged", discharger, discharged, reason),
        ]
        for before, after, actor, at, note_ in steps:
            out.write(
                "visit_events",
                f"{self.take('events')}\t{vid}\t{before}\t{after}\t{actor}\t{_ts(at)}\t"
                f"{_ts(at + timedelta(seconds=rng.randint(5, 90)))}\t{note_ or N}\n",
            )
        out.visits += 1

    @staticmethod
    def _values(rng: random.Random, *, calm: bool) -> dict[str, int]:
        """A reading within the limits; at 40 minutes some sedation or dissociation (out of range)."""
        return {
            "systolic": rng.randint(110, 138),
            "diastolic": rng.randint(66, 88),
            "heart_rate": rng.randint(58, 96),
            "spo2": rng.randint(95, 99),
            "respiratory_rate": rng.randint(12, 18),
            "sedation": 5 if calm or rng.random() > 0.15 else 4,
            "dissociation": 0 if calm or rng.random() > 0.2 else 1,
        }


SEQUENCES = {
    "patients": "patients",
    "screening_results": "screening_results",
    "rems_enrollments": "rems_enrollments",
    "series": "appointment_series",
    "appointments": "appointments",
    "visits": "visits",
    "events": "visit_events",
    "vitals": "vital_signs",
    "alerts": "observation_alerts",
}


def next_ids(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return {
            key: conn.execute(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))").fetchone()[0]
            for key, table in SEQUENCES.items()
        }


def load(url: str, chunk: Chunk) -> None:
    """COPY a chunk in (parents first), move the id sequences past it; then each appointment's ten
    15-minute slots, by SQL from the appointments just loaded."""
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as conn:
        conn.execute("SET session_replication_role = replica")  # skip FK triggers; unique indexes still hold
        with conn.cursor() as cur:
            for table, columns in TABLES.items():
                body = chunk.out[table].getvalue()
                with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    copy.write(body)
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            cur.execute(
                "INSERT INTO appointment_slots (appointment_id, chair_id, patient_id, slot_at)"
                " SELECT a.id, a.chair_id, a.patient_id, a.starts_at + k * interval '15 minutes'"
                " FROM appointments a, generate_series(0, %s) AS k WHERE a.id BETWEEN %s AND %s ORDER BY a.id, k",
                (CHAIR_MINUTES // 15 - 1, *chunk.appointment_ids),
            )
            chunk.rows["appointment_slots"] = cur.rowcount


def count_past(url: str, location_id: int) -> tuple[int, int]:
    closed, open_ = sql(
        url,
        f"SELECT count(*) FROM visits WHERE location_id = {location_id} AND closed",
        f"SELECT count(*) FROM visits WHERE location_id = {location_id} AND NOT closed",
    )
    return int(closed), int(open_)


def check_past(url: str) -> None:
    """What the load promised: every past visit's appointment discharged and holding its slots, its
    five events, three readings and six alerts; nothing after the frozen now."""
    bad = sql(
        url,
        "SELECT count(*) FROM visits v JOIN appointments a ON a.id = v.appointment_id"
        " WHERE v.closed AND (a.status <> 'discharged' OR a.patient_id <> v.patient_id OR a.series_id <> v.series_id)",
        "SELECT count(*) FROM visits v WHERE v.closed AND (SELECT count(*) FROM appointment_slots s"
        " WHERE s.appointment_id = v.appointment_id) <> 10",
        "SELECT count(*) FROM visits v WHERE v.closed AND ((SELECT count(*) FROM visit_events e"
        " WHERE e.visit_id = v.id) <> 5 OR (SELECT count(*) FROM vital_signs s WHERE s.visit_id = v.id) <> 3"
        " OR (SELECT count(*) FROM observation_alerts o WHERE o.visit_id = v.id) <> 6)",
    )
    if any(bad):
        raise BenchmarkError(f"past visits inconsistent: {bad} (appointment, slots, events/vitals/alerts)")


# --- measuring -------------------------------------------------------------------------------------


def issue_token(app: Any, user_id: int) -> str:
    from clinic.auth import service as auth
    from clinic.auth.models import User
    from clinic.core.tx import commit
    from clinic.extensions import db

    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        token = auth.issue_token(user=user)[0]
        commit()
    return token


def canonical(data: bytes) -> Any:
    """An answer with each item's alerts in id order (the board's alerts query has no ORDER BY: they
    come in whatever order the plan reads them, which changes with the table's size)."""
    answer = json.loads(data)
    for item in answer["items"]:
        item["alerts"] = sorted(item["alerts"], key=lambda a: a["id"])
    return answer


def backend_cpu(pids: set[int]) -> dict[int, float]:
    """CPU seconds (user + system) of each PostgreSQL backend process, from /proc (same machine only)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime: fields 14 and 15
    return out


def measure(app: Any, clinic: Clinic, counter: StatementCounter, phase: Phase, token: str) -> None:
    """WARMUP requests, then REQUESTS measured one after the other; each answer checked (untimed).
    Also the CPU time of this process and of the backends the warm-up used (the pool keeps them)."""
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    query = {"location_id": clinic.location_id}
    expected = set(clinic.visits)

    def check(resp: Any) -> None:
        if resp.status_code != 200:
            raise BenchmarkError(f"{phase.label}: the board answered {resp.status_code}: {resp.data[:500]!r}")
        if phase.body and resp.data == phase.body:
            return
        answer = canonical(resp.data)
        items = answer["items"]
        got = {i["visit_id"] for i in items}
        if len(items) != OPEN or got != expected or any(i["status"] != "observing" for i in items):
            raise BenchmarkError(
                f"{phase.label}: the board has {len(items)} items ({sorted(got)[:5]}...), statuses "
                f"{sorted({i['status'] for i in items})}; meant the {OPEN} open visits {sorted(expected)[:5]}..."
            )
        if phase.reference is not None and answer != phase.reference:
            raise BenchmarkError(f"{phase.label}: an answer differs from the first (baseline's) on a frozen clock")
        if phase.reference is None:
            phase.reference = answer
        elif phase.body:
            phase.reordered += 1
        phase.body = phase.body or resp.data

    counter.backends = set()
    for _ in range(WARMUP):
        check(client.get(PATH, query_string=query, headers=headers))
    warm_backends = set(counter.backends)
    gc.collect()
    counter.reset(timings=True)
    cpu0, db0 = time.process_time(), backend_cpu(warm_backends)
    for _ in range(REQUESTS):
        counter.reset()
        t0 = time.perf_counter()
        resp = client.get(PATH, query_string=query, headers=headers)
        elapsed = time.perf_counter() - t0
        phase.latencies_ms.append(elapsed * 1000)
        phase.statements.append(len(counter.texts))
        phase.shapes.append(tuple(counter.texts))
        paused = time.process_time()
        check(resp)
        cpu0 += time.process_time() - paused  # checking the answer is not the request's work
    phase.app_cpu_s = time.process_time() - cpu0
    db1 = backend_cpu(warm_backends)
    if counter.backends <= set(db0) and set(db1) == set(db0):
        phase.db_cpu_s = sum(db1.values()) - sum(db0.values())
    else:
        note(f"observation_board: {phase.label}: backends {sorted(counter.backends)} not all readable in /proc")
    phase.seconds = sum(phase.latencies_ms) / 1000


def explain(app: Any, counter: StatementCounter, label: str) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) the last request's SELECTs, in a transaction rolled back."""
    from clinic.extensions import db

    statements = [(s, p) for s, p in counter.full if s.lstrip().upper().startswith("SELECT")]
    with app.app_context(), db.engine.connect() as conn:
        for statement, params in statements:
            rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params).all()
            plan = "\n    ".join(r[0] for r in rows)
            note(f"observation_board: {label}: EXPLAIN ANALYZE {' '.join(statement.split())[:200]}...\n    {plan}")
        conn.rollback()


def check_statements(base: Phase, ours: Phase) -> None:
    counts = set(base.statements) | set(ours.statements)
    if len(counts) == 1:
        if set(base.shapes) != set(ours.shapes):
            note("observation_board: warning: same statement count, but the statements differ between the phases")
        return
    sample_b = base.shapes[0]
    sample_o = max(ours.shapes, key=len)
    extra = collections.Counter(sample_o) - collections.Counter(sample_b)
    missing = collections.Counter(sample_b) - collections.Counter(sample_o)
    raise BenchmarkError(
        f"statements per request depend on the past visits: {base.past} past {sorted(set(base.statements))}, "
        f"{ours.past} past {sorted(set(ours.statements))}; extra with more past visits: {dict(extra)}; "
        f"missing: {dict(missing)}"
    )


def main() -> list[Figure]:
    import time_machine
    from sqlalchemy import event

    from clinic.extensions import db

    note(
        f"observation_board: {REQUESTS} board requests per phase after {WARMUP} warm-up, {OPEN} patients in "
        f"observation, {BASE_PAST} past visits (baseline) vs {PAST} (ours)"
    )
    started = time.monotonic()
    day = visit_day()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="clinic-bench-observation-board-")))
        url = stack.enter_context(postgres_database("clinic_bench_board"))
        env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"} | {
            "DATABASE_URL": url,
            "CLINIC_INSTANCE_PATH": str(tmp / "instance"),
        }
        run_command([tool("clinic"), "db", "upgrade"], env=env)
        app = stack.enter_context(make_app(url, tmp / "instance", tmp / "app.log"))
        morning = datetime.combine(day, dtime(7, 30), tzinfo=ZONE)
        traveller = stack.enter_context(time_machine.travel(morning, tick=False))
        with app.app_context():
            clinic = set_up(traveller, day)
            engine = db.engine
        now = clinic.local(MEASURE_AT)
        traveller.move_to(now)
        note(
            f"observation_board: migrated, set up and {OPEN} visits dosed on {day} (local) "
            f"in {time.monotonic() - started:.1f}s; the clock stays at {now.astimezone(ZONE):%H:%M} local"
        )

        t0 = time.monotonic()
        with app.app_context():
            planner = PastPlanner(clinic, next_ids(url), now, random.Random(SEED))
        base_chunk = planner.chunk(BASE_PAST)
        load(url, base_chunk)
        sql(url, "VACUUM ANALYZE")
        past, still_open = count_past(url, clinic.location_id)
        if (past, still_open) != (BASE_PAST, OPEN):
            raise BenchmarkError(f"{past} past and {still_open} open visits after the first load")
        note(f"observation_board: {past} past visits loaded and analysed in {time.monotonic() - t0:.1f}s")

        counter = StatementCounter()
        for name, fn in (("before_cursor_execute", counter.before), ("after_cursor_execute", counter.after)):
            event.listen(engine, name, fn)
            stack.callback(event.remove, engine, name, fn)

        base = Phase("baseline", past)
        measure(app, clinic, counter, base, issue_token(app, clinic.nurse_id))
        note(f"observation_board: baseline {base.summary()}")
        note(f"observation_board: baseline database time per request, by statement: {counter.by_statement(REQUESTS)}")
        if EXPLAIN:
            explain(app, counter, f"{base.past} past")

        t0 = time.monotonic()
        top_up = planner.chunk(PAST - BASE_PAST)
        note(
            f"observation_board: planned {top_up.visits} more past visits ({top_up.early} discharged early, "
            f"{top_up.late} late 40-minute readings, {top_up.pmf_pending} monitoring forms pending): "
            + ", ".join(f"{t} {n}" for t, n in top_up.rows.items())
            + f" rows in {time.monotonic() - t0:.1f}s"
        )
        t0 = time.monotonic()
        load(url, top_up)
        slots = top_up.rows["appointment_slots"]
        del top_up
        sql(url, "VACUUM ANALYZE")
        check_past(url)
        past, still_open = count_past(url, clinic.location_id)
        if (past, still_open) != (PAST, OPEN):
            raise BenchmarkError(f"{past} past and {still_open} open visits after the top-up")
        note(
            f"observation_board: topped up to {past} past visits ({slots} more slots), loaded, checked and analysed "
            f"in {time.monotonic() - t0:.1f}s"
        )

        ours = Phase("ours", past)
        ours.reference = base.reference  # the same answer (alerts in id order)
        measure(app, clinic, counter, ours, issue_token(app, clinic.nurse_id))
        note(f"observation_board: ours     {ours.summary()}")
        if ours.body != base.body:
            note(
                "observation_board: ours answers the baseline's board with the alerts of an item in another order "
                "(the alerts query has no ORDER BY); equal once sorted by id"
            )
        note(f"observation_board: ours     database time per request, by statement: {counter.by_statement(REQUESTS)}")
        if EXPLAIN:
            explain(app, counter, f"{ours.past} past")
        check_statements(base, ours)
        note(f"observation_board: one request's statements: {list(ours.shapes[0])}")
    note(f"observation_board: {time.monotonic() - started:.0f}s in all")
    return [
        Figure("observation_board.requests_per_s", ours.per_s, base.per_s, decimals=1),
        Figure(
            "observation_board.statements_per_request",
            statistics.fmean(ours.statements),
            statistics.fmean(base.statements),
            decimals=1,
        ),
        Figure("observation_board.p50_ms", ours.pct(50), base.pct(50), decimals=2),
        Figure("observation_board.p99_ms", ours.pct(99), base.pct(99), decimals=2),
        *(
            [Figure("observation_board.cpu_ms_per_request", ours.cpu_ms, base.cpu_ms, decimals=2)]
            if ours.db_cpu_s is not None and base.db_cpu_s is not None
            else []
        ),
    ]


if __name__ == "__main__":
    for figure in main():
        print(figure.line())

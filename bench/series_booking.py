"""series_booking: treatment courses booked per second into a crowded calendar vs an empty one (issue 4).

In process, through the service (``clinic.scheduling.service.create_series``) inside an app context,
each booking its own transaction committed with ``clinic.core.tx.commit`` as a request's would be,
the session removed afterwards. One fresh PostgreSQL database, ``clinic db upgrade``, then through
the services: a front-desk user, a nurse, a prescriber, a location (America/New_York, the default
Mon-Fri 08:00-18:00 hours) with CHAIRS chairs, and 2 x (WARMUP + BOOKINGS) fresh patients, each with
an eligible screening and a SPRAVATO REMS enrolment.

The bookings are esketamine-rems courses (12 visits of 150 min over 8 weeks), each for a fresh
patient, at (start date, preferred time) pairs chosen beforehand by replaying the service's own
planner (``_plan``) and first-free-chair rule against the calendar's slots, so that every booking
finds a free chair for every visit in both calendars (a conflict fails the benchmark).

1. Baseline, the empty calendar: WARMUP bookings, deleted again; VACUUM ANALYZE; BOOKINGS bookings
   measured; all of them deleted again.
2. Ours: CALENDAR appointments (default 50,000) bulk-loaded with COPY into ``patients``,
   ``appointment_series``, ``appointments`` and ``appointment_slots``: courses of all five seeded
   protocols, each for its own patient, expanded by the service's planner (DST policy included)
   from start dates spread over the last 30 months and the next 10, placed on the first free chair
   as the service does; past visits mostly discharged, some cancelled or no-show (those hold no
   slots), future ones scheduled or cancelled. The unique (chair, slot) and (patient, slot) indexes
   are enforced during the load; foreign-key triggers are skipped for speed
   (``session_replication_role = replica``), the rows being consistent by construction.
   VACUUM ANALYZE; the same WARMUP bookings (kept), then the same BOOKINGS bookings measured, for the
   other half of the fresh patients.

SQL statements are counted per booking with a ``before_cursor_execute`` listener on the engine
(every statement sent, savepoints included; BEGIN/COMMIT are not cursor statements). Every booking
of both phases must send the same number of statements, or the benchmark fails: the count must not
depend on the calendar's size.

Knobs (environment): BENCH_SERIES_BOOKING_BOOKINGS (measured per phase, default 200),
BENCH_SERIES_BOOKING_WARMUP (default 10), BENCH_SERIES_BOOKING_CALENDAR (default 50000),
BENCH_SERIES_BOOKING_CHAIRS (default 20), BENCH_SERIES_BOOKING_SEED (default 4).

Figures: ``series_booking.bookings_per_s``, ``series_booking.statements_per_booking`` (ratio must be
1.000), ``series_booking.p50_ms``, ``series_booking.p99_ms``.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import io
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

from bench.harness import BenchmarkError, Figure, note, postgres_database, run_command, tool
from bench.ledger_append import app_context
from bench.loadgen import _percentile

BOOKINGS = max(1, int(os.environ.get("BENCH_SERIES_BOOKING_BOOKINGS", "200")))
WARMUP = max(0, int(os.environ.get("BENCH_SERIES_BOOKING_WARMUP", "10")))
CALENDAR = max(0, int(os.environ.get("BENCH_SERIES_BOOKING_CALENDAR", "50000")))
CHAIRS = max(1, int(os.environ.get("BENCH_SERIES_BOOKING_CHAIRS", "20")))
SEED = int(os.environ.get("BENCH_SERIES_BOOKING_SEED", "4"))
#: ANALYZE the scheduling tables after every this many measured bookings (untimed), as autovacuum would
#: once 50 rows + 10% have changed: without it the empty calendar's IN-list estimates have no column
#: statistics, the planner picks sequential scans, and the baseline slows down as its bookings pile up.
ANALYZE_EVERY = max(0, int(os.environ.get("BENCH_SERIES_BOOKING_ANALYZE_EVERY", "25")))

PROTOCOL = "esketamine-rems"
VISITS = 12
TZ = "America/New_York"
PASSWORD = "throwaway-orchid-lattice"  # throwaway users in a throwaway database
DEA = "AB1234563"  # a well-formed registration (check digit 3), not a real one
SLOT_SECONDS = 15 * 60
CHAIR_BITS = 64  # an occupied (chair index, slot) is the int slot_number * CHAIR_BITS + chair index
#: the mix of courses already in the calendar (weights)
PRELOAD_MIX = {
    "esketamine-rems": 35,
    "ketamine-iv-induction": 25,
    "ketamine-im": 15,
    "ketamine-iv-booster": 15,
    "esketamine-mdsi": 10,
}
PRELOAD_PAST_DAYS = 45 * 30
PRELOAD_FUTURE_DAYS = 18 * 30
BENCH_FIRST_DAY, BENCH_LAST_DAY = 14, 18 * 30  # bench courses start this many days from today


@dataclass(frozen=True)
class Clinic:
    location_id: int
    desk_id: int
    prescriber_id: int
    chairs: tuple[int, ...]
    patients_base: tuple[int, ...]
    patients_ours: tuple[int, ...]


@dataclass
class Phase:
    label: str
    calendar_before: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)
    shapes: list[tuple[str, ...]] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        return _percentile(sorted(self.latencies_ms), p)

    def summary(self) -> str:
        counts = collections.Counter(self.statements)
        fifth = max(1, len(self.latencies_ms) // 5)
        trend = "/".join(
            f"{statistics.median(self.latencies_ms[i : i + fifth]):.1f}"
            for i in range(0, len(self.latencies_ms), fifth)
        )
        return (
            f"{len(self.latencies_ms)} bookings into {self.calendar_before} appointments in {self.seconds:.2f}s = "
            f"{self.per_s:.1f}/s; p50 {self.pct(50):.2f} ms, p99 {self.pct(99):.2f} ms, "
            f"max {max(self.latencies_ms):.2f} ms, median by fifths {trend} ms; "
            f"statements per booking {dict(sorted(counts.items()))}"
        )


class StatementCounter:
    """Every statement the engine sends (before_cursor_execute), with the first words of each, and the
    time spent in each kind of statement (until after_cursor_execute) over the measured bookings."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.seconds: collections.Counter[str] = collections.Counter()
        self._started = 0.0

    def before(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        self.texts.append(" ".join(statement.split()[:4]) + (" [many]" if executemany else ""))
        self._started = time.perf_counter()

    def after(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        if self.texts:
            self.seconds[self.texts[-1]] += time.perf_counter() - self._started

    def reset(self, *, timings: bool = False) -> None:
        self.texts = []
        if timings:
            self.seconds = collections.Counter()

    def slowest(self, bookings: int, n: int = 4) -> str:
        return "; ".join(f"{shape}: {t / bookings * 1000:.2f} ms" for shape, t in self.seconds.most_common(n))


# --- setup through the services --------------------------------------------------------------------


def set_up() -> Clinic:
    from clinic import fixtures
    from clinic.core.tx import commit

    def user(role: str, licence: str | None = None) -> Any:
        email = f"bench.{role.replace('_', '')}@bench.clinic"
        return fixtures.create_user(role=role, email=email, password=PASSWORD, license_number=licence)

    desk, nurse, prescriber = user("front_desk"), user("nurse", "1"), user("prescriber", "2")
    loc = fixtures.create_location(
        nurse,
        name="Bench clinic",
        dea_registration=DEA,
        timezone=TZ,
        chairs=CHAIRS,
        address="1 Bench St",
        # esketamine courses are booked only at a certified location (SPR-03); years ahead of any run
        rems_certified_until=datetime.now(UTC).date() + timedelta(days=3650),
        members=(desk, nurse, prescriber),
    )
    commit()
    enrolled_on = datetime.now(UTC).date() - timedelta(days=30)
    ids = []
    for i in range(2 * (WARMUP + BOOKINGS)):
        patient = fixtures.create_patient(
            desk,
            first_name="Casey",
            last_name=f"Course{i:04d}",
            date_of_birth=date(1970 + i % 30, 1 + i % 12, 1 + i % 28),
            address=f"{i} Bench St",
            timezone=TZ,
            clinician=nurse,
            screen={},
            location_id=loc.id,
            rems_enrolled_on=enrolled_on,
        )
        ids.append(patient.id)
        if i % 50 == 49:
            commit()
    commit()
    half = WARMUP + BOOKINGS
    return Clinic(loc.id, desk.id, prescriber.id, loc.chairs, tuple(ids[:half]), tuple(ids[half:]))


# --- choosing free times: the service's planner and first-free-chair rule, replayed ---------------


def _slot_numbers(start: datetime, minutes: int) -> range:
    first = int(start.timestamp()) // SLOT_SECONDS
    return range(first, first + -(-minutes // 15))


def first_free_chair(occupied: set[int], slots: range, chairs: int) -> int | None:
    for chair in range(chairs):
        if all(s * CHAIR_BITS + chair not in occupied for s in slots):
            return chair
    return None


def place(planned: list[Any], minutes: int, occupied: set[int], chairs: int) -> list[int] | None:
    """The chair index of each visit as the service would pick it, or None if one finds no chair: the
    first chair free for every visit keeps the whole course, else each visit the first free then."""
    every = [s for p in planned for s in _slot_numbers(p.starts_at, minutes)]
    steady = next((c for c in range(chairs) if all(s * CHAIR_BITS + c not in occupied for s in every)), None)
    if steady is not None:
        return [steady] * len(planned)
    picked = []
    for p in planned:
        chair = first_free_chair(occupied, _slot_numbers(p.starts_at, minutes), chairs)
        if chair is None:
            return None
        picked.append(chair)
    return picked


def hold(planned: list[Any], picked: list[int], minutes: int, occupied: set[int]) -> None:
    for p, chair in zip(planned, picked, strict=True):
        occupied.update(s * CHAIR_BITS + chair for s in _slot_numbers(p.starts_at, minutes))


def _times(minutes: int, step: int = 30) -> list[dtime]:
    """Preferred times every ``step`` minutes from 08:00 to the last that ends by 18:00."""
    return [dtime(h, m) for h in range(8, 18) for m in range(0, 60, step) if h * 60 + m + minutes <= 18 * 60]


def choose_bookings(
    cal: Any, proto: Any, today: date, full: set[int], rng: random.Random, count: int
) -> list[tuple[date, dtime]]:
    """``count`` (start_on, preferred_time) pairs that book without a conflict, one after the other,
    both into the empty calendar and into ``full`` (updated), each for a patient with no visits."""
    from clinic.scheduling import service as scheduling

    minutes = int(proto.rules["chair_minutes"])
    times = _times(minutes, 15)
    empty: set[int] = set()
    chosen: list[tuple[date, dtime]] = []
    tries = 0
    while len(chosen) < count:
        tries += 1
        if tries > 300 * count:
            raise BenchmarkError(f"found only {len(chosen)} of {count} free course times in {tries} tries")
        start_on = today + timedelta(days=rng.randint(BENCH_FIRST_DAY, BENCH_LAST_DAY))
        preferred = rng.choice(times)
        planned, problems = scheduling._plan(proto, cal, start_on, preferred)
        if problems or len(planned) != VISITS:
            continue
        in_full, in_empty = place(planned, minutes, full, CHAIRS), place(planned, minutes, empty, CHAIRS)
        if in_full is None or in_empty is None:
            continue
        hold(planned, in_full, minutes, full)
        hold(planned, in_empty, minutes, empty)
        chosen.append((start_on, preferred))
    return chosen


# --- the preloaded calendar --------------------------------------------------------------------------


@dataclass
class Preload:
    patients: list[tuple[int, date]] = field(default_factory=list)
    series: list[tuple[int, int, int, date, dtime, datetime]] = field(default_factory=list)  # id, patient, proto
    appointments: io.StringIO = field(default_factory=io.StringIO)
    slots: io.StringIO = field(default_factory=io.StringIO)
    appointment_count: int = 0
    slot_count: int = 0
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)


def _status(starts_at: datetime, now: datetime, rng: random.Random) -> str:
    r = rng.random()
    if starts_at < now:
        return "discharged" if r < 0.88 else "cancelled" if r < 0.95 else "no_show"
    return "scheduled" if r < 0.96 else "cancelled"


def plan_preload(
    cal: Any, protocols: dict[str, Any], today: date, now: datetime, first_ids: dict[str, int], rng: random.Random
) -> tuple[Preload, set[int]]:
    """CALENDAR appointments (the last course cut short to hit the number exactly) and their slots."""
    from clinic.scheduling import service as scheduling

    out = Preload()
    occupied: set[int] = set()
    codes = list(PRELOAD_MIX)
    weights = [PRELOAD_MIX[c] for c in codes]
    pid, sid, aid, slot_id = (first_ids[t] for t in ("patients", "series", "appointments", "slots"))
    times = {code: _times(int(protocols[code].rules["chair_minutes"])) for code in codes}
    tries = 0
    while out.appointment_count < CALENDAR:
        tries += 1
        if tries > CALENDAR:
            raise BenchmarkError(
                f"could not place {CALENDAR} appointments on {CHAIRS} chairs ({out.appointment_count})"
            )
        code = rng.choices(codes, weights)[0]
        proto = protocols[code]
        minutes = int(proto.rules["chair_minutes"])
        start_on = today + timedelta(days=rng.randint(-PRELOAD_PAST_DAYS, PRELOAD_FUTURE_DAYS))
        preferred = rng.choice(times[code])
        planned, problems = scheduling._plan(proto, cal, start_on, preferred)
        if problems or not planned:
            continue
        planned = planned[: CALENDAR - out.appointment_count]
        statuses = [_status(p.starts_at, now, rng) for p in planned]
        live = [(p, s) for p, s in zip(planned, statuses, strict=True) if s in ("scheduled", "discharged")]
        picked = place([p for p, _ in live], minutes, occupied, CHAIRS)
        if picked is None:
            continue
        hold([p for p, _ in live], picked, minutes, occupied)
        chair_of = {p.seq: cal.chairs[c] for (p, _), c in zip(live, picked, strict=True)}
        booked_at = min(now, planned[0].starts_at - timedelta(days=rng.randint(1, 21)))
        out.patients.append((pid, date(1950 + rng.randrange(50), 1 + rng.randrange(12), 1 + rng.randrange(28))))
        out.series.append((sid, pid, proto.id, start_on, preferred, booked_at))
        ends = timedelta(minutes=minutes)
        for p, status in zip(planned, statuses, strict=True):
            chair = chair_of.get(p.seq, cal.chairs[rng.randrange(CHAIRS)])
            reason = "patient request" if status == "cancelled" else "\\N"
            out.appointments.write(
                f"{aid}\t{sid}\t{p.seq}\t{p.phase}\t{pid}\t{cal.location.id}\t{chair}\t{p.starts_at.isoformat()}\t"
                f"{(p.starts_at + ends).isoformat()}\t{p.dose_mg or chr(92) + 'N'}\t{status}\t{reason}\t"
                f"{booked_at.isoformat()}\n"
            )
            out.statuses[status] += 1
            if p.seq in chair_of:
                for k in range(-(-minutes // 15)):
                    at = p.starts_at + timedelta(minutes=15 * k)
                    out.slots.write(f"{slot_id}\t{aid}\t{chair}\t{pid}\t{at.isoformat()}\n")
                    slot_id += 1
                    out.slot_count += 1
            aid += 1
            out.appointment_count += 1
        pid += 1
        sid += 1
    return out, occupied


def load_preload(url: str, clinic: Clinic, data: Preload) -> None:
    """COPY the preloaded calendar in, move the id sequences past it."""
    import psycopg

    def text(rows: list[tuple[Any, ...]]) -> str:
        return "".join("\t".join(str(v) for v in row) + "\n" for row in rows)

    patients = text(
        [
            (pid, "Pat", f"Calendar{pid}", born, f"{pid} Calendar St", TZ, "none", "f", "2024-01-01T00:00:00+00:00")
            for pid, born in data.patients
        ]
    )
    series = text(
        [
            (
                sid,
                pid,
                clinic.location_id,
                clinic.prescriber_id,
                proto,
                start_on,
                preferred,
                "active",
                clinic.desk_id,
                at.isoformat(),
            )
            for sid, pid, proto, start_on, preferred, at in data.series
        ]
    )
    copies = [
        (
            "patients",
            "id, first_name, last_name, date_of_birth, address, timezone, preferred_channel, "
            "reminders_opt_out, created_at",
            patients,
        ),
        (
            "appointment_series",
            "id, patient_id, location_id, prescriber_id, protocol_id, start_on, preferred_time, "
            "status, created_by_id, created_at",
            series,
        ),
        (
            "appointments",
            "id, series_id, seq, phase, patient_id, location_id, chair_id, starts_at, ends_at, "
            "planned_dose_mg, status, status_reason, created_at",
            data.appointments.getvalue(),
        ),
        ("appointment_slots", "id, appointment_id, chair_id, patient_id, slot_at", data.slots.getvalue()),
    ]
    with psycopg.connect(url, connect_timeout=5) as conn:
        conn.execute("SET session_replication_role = replica")  # skip FK triggers; unique indexes still hold
        with conn.cursor() as cur:
            for table, columns, body in copies:
                t0 = time.perf_counter()
                with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    copy.write(body)
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
                note(f"series_booking: COPY {table}: {body.count(chr(10))} rows in {time.perf_counter() - t0:.1f}s")


def next_ids(url: str) -> dict[str, int]:
    import psycopg

    tables = {
        "patients": "patients",
        "series": "appointment_series",
        "appointments": "appointments",
        "slots": "appointment_slots",
    }
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return {
            key: conn.execute(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))").fetchone()[0]
            for key, table in tables.items()
        }


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


def clear_bookings(url: str) -> None:
    # reminders planned for the booked visits go with them (their rows name the course)
    sql(
        url,
        "DELETE FROM reminders",
        "DELETE FROM appointment_slots",
        "DELETE FROM appointments",
        "DELETE FROM appointment_series",
    )


def analyze(url: str, vacuum: bool = True) -> None:
    verb = "VACUUM ANALYZE" if vacuum else "ANALYZE"
    sql(url, *(f"{verb} {t}" for t in ("appointment_slots", "appointments", "appointment_series", "patients")))


def count_appointments(url: str) -> int:
    return int(sql(url, "SELECT count(*) FROM appointments")[0])


# --- measuring -----------------------------------------------------------------------------------------


def book(
    clinic: Clinic,
    counter: StatementCounter,
    bookings: list[tuple[date, dtime]],
    patients: tuple[int, ...],
    phase: Phase | None,
    url: str | None = None,
) -> None:
    """One transaction per course, committed like a request, the session removed after each."""
    from clinic.auth.models import User
    from clinic.core.tx import commit
    from clinic.extensions import db
    from clinic.scheduling import service as scheduling
    from clinic.scheduling.errors import BookingConflict

    gc.collect()
    counter.reset(timings=True)
    loop_start = time.perf_counter()
    paused = 0.0
    for n, ((start_on, preferred), patient_id) in enumerate(zip(bookings, patients, strict=True)):
        if url and ANALYZE_EVERY and n and n % ANALYZE_EVERY == 0:
            t_pause = time.perf_counter()
            analyze(url, vacuum=False)
            paused += time.perf_counter() - t_pause
        actor = db.session.get(User, clinic.desk_id)  # what a request's token lookup gives the view
        counter.reset()
        t0 = time.perf_counter()
        try:
            series = scheduling.create_series(
                actor=actor,
                patient_id=patient_id,
                protocol=PROTOCOL,
                location_id=clinic.location_id,
                prescriber_id=clinic.prescriber_id,
                start_on=start_on,
                preferred_time=preferred,
            )
            commit()
        except BookingConflict as exc:
            db.session.rollback()
            raise BenchmarkError(
                f"booking {start_on} {preferred} for patient {patient_id} conflicted: {exc.errors}"
            ) from exc
        elapsed = time.perf_counter() - t0
        if phase is not None:
            phase.latencies_ms.append(elapsed * 1000)
            phase.statements.append(len(counter.texts))
            phase.shapes.append(tuple(counter.texts))
        del series
        db.session.remove()
    if phase is not None:
        phase.seconds = time.perf_counter() - loop_start - paused


def check_statements(base: Phase, ours: Phase) -> None:
    counts = set(base.statements) | set(ours.statements)
    if len(counts) == 1:
        if set(base.shapes) != set(ours.shapes):
            note("series_booking: warning: same statement count, but the statements differ between the calendars")
        return
    sample_b = base.shapes[0]
    sample_o = max(ours.shapes, key=len)
    extra = collections.Counter(sample_o) - collections.Counter(sample_b)
    missing = collections.Counter(sample_b) - collections.Counter(sample_o)
    raise BenchmarkError(
        f"statements per booking depend on the calendar: empty {sorted(set(base.statements))}, "
        f"{ours.calendar_before} appointments {sorted(set(ours.statements))}; extra in the crowded calendar: "
        f"{dict(extra)}; missing: {dict(missing)}"
    )


def main() -> list[Figure]:
    from sqlalchemy import event

    from clinic.extensions import db
    from clinic.scheduling import service as scheduling

    note(
        f"series_booking: {BOOKINGS} {PROTOCOL} courses ({VISITS} visits) per phase after {WARMUP} warm-up, "
        f"into an empty calendar and one of {CALENDAR} appointments on {CHAIRS} chairs"
    )
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="clinic-bench-series-booking-")))
        url = stack.enter_context(postgres_database("clinic_bench_series"))
        env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"} | {
            "DATABASE_URL": url,
            "CLINIC_INSTANCE_PATH": str(tmp / "instance"),
        }
        run_command([tool("clinic"), "db", "upgrade"], env=env)
        stack.enter_context(app_context(url, tmp / "instance"))
        clinic = set_up()
        note(
            f"series_booking: migrated, {len(clinic.patients_base) * 2} patients set up "
            f"in {time.monotonic() - started:.1f}s"
        )

        rng = random.Random(SEED)
        cal = scheduling._calendar(clinic.location_id)
        if list(cal.chairs) != list(clinic.chairs):
            raise BenchmarkError("the chairs are not in the expected order")
        protocols = {code: scheduling.current_protocol(code) for code in PRELOAD_MIX}
        now = datetime.now(UTC)
        today = now.astimezone(cal.tz).date()
        db.session.rollback()

        t0 = time.monotonic()
        preload, occupied = plan_preload(cal, protocols, today, now, next_ids(url), rng)
        chosen = choose_bookings(cal, protocols[PROTOCOL], today, occupied, rng, WARMUP + BOOKINGS)
        warm, measured = chosen[:WARMUP], chosen[WARMUP:]
        note(
            f"series_booking: planned {preload.appointment_count} appointments ({dict(preload.statuses)}), "
            f"{preload.slot_count} slots, {len(preload.series)} courses, and {len(chosen)} free course times "
            f"in {time.monotonic() - t0:.1f}s"
        )
        db.session.remove()

        counter = StatementCounter()
        for name, fn in (("before_cursor_execute", counter.before), ("after_cursor_execute", counter.after)):
            event.listen(db.engine, name, fn)
            stack.callback(event.remove, db.engine, name, fn)

        # baseline: the empty calendar
        book(clinic, counter, warm, clinic.patients_base[:WARMUP], None)
        clear_bookings(url)
        analyze(url)
        base = Phase("baseline", count_appointments(url))
        book(clinic, counter, measured, clinic.patients_base[WARMUP:], base, url)
        note(f"series_booking: baseline {base.summary()}")
        note(f"series_booking: baseline database time per booking, by statement: {counter.slowest(BOOKINGS)}")
        clear_bookings(url)

        # ours: the crowded calendar
        t0 = time.monotonic()
        load_preload(url, clinic, preload)
        analyze(url)
        loaded = count_appointments(url)
        if loaded != CALENDAR:
            raise BenchmarkError(f"loaded {loaded} appointments, meant {CALENDAR}")
        note(f"series_booking: {loaded} appointments loaded and analysed in {time.monotonic() - t0:.1f}s")
        del preload, occupied
        book(clinic, counter, warm, clinic.patients_ours[:WARMUP], None)
        ours = Phase("ours", count_appointments(url))
        book(clinic, counter, measured, clinic.patients_ours[WARMUP:], ours, url)
        note(f"series_booking: ours     {ours.summary()}")
        note(f"series_booking: ours     database time per booking, by statement: {counter.slowest(BOOKINGS)}")

        expected = CALENDAR + (WARMUP + BOOKINGS) * VISITS
        final, slots_held = sql(
            url,
            "SELECT count(*) FROM appointments",
            "SELECT count(*) FROM appointment_slots s JOIN appointments a ON a.id = s.appointment_id"
            " WHERE a.status IN ('scheduled', 'checked_in', 'dosed', 'observing', 'ready_for_discharge', 'discharged')",
        )
        if final != expected:
            raise BenchmarkError(f"{final} appointments at the end, expected {expected}")
        note(f"series_booking: {final} appointments, {slots_held} slots held at the end")
        check_statements(base, ours)
        note(f"series_booking: one booking's statements: {collections.Counter(ours.shapes[0])}")
    note(f"series_booking: {time.monotonic() - started:.0f}s in all")
    return [
        Figure("series_booking.bookings_per_s", ours.per_s, base.per_s, decimals=1),
        Figure(
            "series_booking.statements_per_booking",
            statistics.fmean(ours.statements),
            statistics.fmean(base.statements),
            decimals=1,
        ),
        Figure("series_booking.p50_ms", ours.pct(50), base.pct(50), decimals=2),
        Figure("series_booking.p99_ms", ours.pct(99), base.pct(99), decimals=2),
    ]


if __name__ == "__main__":
    for figure in main():
        print(figure.line())

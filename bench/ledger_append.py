"""ledger_append: administrations per second through the HTTP API vs the same transaction in raw SQL.

Ours is the real thing: gunicorn serving ``clinic.wsgi:app`` on a fresh PostgreSQL database,
``POST /api/v1/inventory/administrations`` with a bearer token and a fresh ``Idempotency-Key``
per request (claimed in its own transaction, then one transaction that locks the location's chain
head and the container, appends the hash-chained entry and an audit row and stores the answer,
then the access-log row). The baseline is the bare transaction shape with psycopg, no ORM, no
Flask, no HTTP, on its own fresh database set up identically: for each draw, in one transaction,
``SELECT ... FOR UPDATE`` the chain head, lock the container, check its balance, update it, hash
the entry's committed record with ``clinic.inventory.chain`` (kept with the entry, as the service
does), insert it, move the chain head, insert the idempotency-key row, commit. Its workers are
processes with a connection each, kept for the run.

Every draw is 0.1 mg from one of many 500 mg vials in turn, so none runs dry. Afterwards, for both
databases: one administration entry per idempotency key answered 201 and the other way round (the
stored answer names the entry's hash), every container's balance equals its movements, and
``integrity.verify_location`` passes; ours committed an entry for every 201 its load generator
saw (plus at most the requests wrk abandons in flight when it stops a run), the baseline exactly
as many as its workers committed.

Knobs (environment): BENCH_LEDGER_APPEND_REQUESTS ("ours,baseline" per round, default
"800,2500"), BENCH_LEDGER_APPEND_ROUNDS (default 3), BENCH_LEDGER_APPEND_VIALS (default 40),
BENCH_CONCURRENCY (connections and baseline workers, default 8).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import http.client
import json
import multiprocessing
import os
import queue
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bench.harness import (
    BenchmarkError,
    Figure,
    Server,
    bench_app,
    gunicorn,
    note,
    postgres_database,
    run_command,
    tool,
)
from bench.loadgen import LoadResult, Requests, _percentile, load_generator
from bench.wirecount import drive, wire_counter
from clinic.inventory.chain import HASHED_FIELDS  # stdlib only: no app is built by importing it

PATH = "/api/v1/inventory/administrations"
_ours_n, _, _base_n = os.environ.get("BENCH_LEDGER_APPEND_REQUESTS", "800,2500").partition(",")
REQUESTS = {"ours": int(_ours_n), "baseline": int(_base_n or _ours_n)}
ROUNDS = max(1, int(os.environ.get("BENCH_LEDGER_APPEND_ROUNDS", "3")))
VIALS = max(1, int(os.environ.get("BENCH_LEDGER_APPEND_VIALS", "40")))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
WARMUP = {"ours": 150, "baseline": 400}
TIME_LIMIT = 8.0  # seconds per load run, whatever the count
COUNTED_WARMUP = 40  # through the counting proxy: opens the pooled connections, prepares the statements
COUNTED_REQUESTS = 200

DRAW_MG = "0.1"
DRAW_UG = 100
VIAL_UG = 500_000  # Ketamine 50 mg/mL, 10 mL
EMAIL = "bench.nurse@bench.clinic"
WITNESS_EMAIL = "bench.witness@bench.clinic"
PASSWORD = "throwaway-orchid-lattice"  # throwaway users in throwaway databases
DEA = "AB1234563"  # a well-formed registration (check digit 3), not a real one


@dataclass(frozen=True)
class Clinic:
    """One database's setup: what a draw needs."""

    url: str
    location_id: int
    user_id: int
    patient_id: int
    containers: tuple[int, ...]
    token: str

    @property
    def bodies(self) -> tuple[str, ...]:
        """Request n draws from vial n % VIALS: the same bodies for ours and the baseline."""
        return tuple(
            json.dumps({"container_id": c, "patient_id": self.patient_id, "quantity_mg": DRAW_MG})
            for c in self.containers
        )


# --- setup and checks, through the app factory and the services -----------------------------------


@contextlib.contextmanager
def app_context(url: str, instance: Path) -> Iterator[None]:
    """The app on ``url``, in this process; its connection pool is closed afterwards."""
    from clinic.extensions import db

    with bench_app(url, instance).app_context():
        try:
            yield
        finally:
            db.session.remove()
            db.engine.dispose()


def set_up(url: str, instance: Path) -> Clinic:
    """A location with its initial inventory, a patient, VIALS received vials and a nurse's token."""
    from clinic import fixtures
    from clinic.auth import service as auth
    from clinic.extensions import db
    from clinic.inventory.witness import WitnessSignature

    with app_context(url, instance):
        nurse = fixtures.create_user(role="nurse", email=EMAIL, password=PASSWORD, license_number="1")
        witness = fixtures.create_user(role="nurse", email=WITNESS_EMAIL, password=PASSWORD, license_number="2")
        loc = fixtures.create_location(
            nurse,
            name="Bench clinic",
            dea_registration=DEA,
            timezone="UTC",
            storage_sites=("Safe",),
            members=(nurse, witness),
        )
        (site,) = loc.sites
        drug = fixtures.create_drug(nurse, fixtures.KETAMINE_50)
        assert drug.container_ug == VIAL_UG
        patient = fixtures.create_patient(nurse, first_name="Pat", last_name="Bench", timezone="UTC")
        fixtures.open_ledger(nurse, loc.id, WitnessSignature(WITNESS_EMAIL, PASSWORD))
        receipt = fixtures.create_receipt(
            nurse,
            storage_site_id=site,
            drug_id=drug.id,
            count=VIALS,
            lot_number="BENCH1",
            expires_on=date(datetime.now(UTC).year + 3, 1, 1),
        )
        token = auth.issue_token(user=nurse)[0]
        db.session.commit()
        return Clinic(
            url=url,
            location_id=loc.id,
            user_id=nurse.id,
            patient_id=patient.id,
            containers=tuple(c.id for c in receipt.containers),
            token=token,
        )


def check_books(label: str, clinic: Clinic, instance: Path) -> int:
    """The ledger after the load: returns the number of administration entries.

    Each idempotency key answered 201 stored the answer, which names the entry's hash: keys and
    entries must match one to one (compared here, not in SQL: without statistics the planner
    joins them quadratically). Then every balance against its movements, then the verifier.
    """
    import psycopg

    with psycopg.connect(clinic.url, connect_timeout=5) as conn:
        entries = [
            h
            for (h,) in conn.execute(
                "SELECT hash FROM ledger_entries WHERE location_id = %s AND kind = 'administration'",
                (clinic.location_id,),
            )
        ]
        keys = conn.execute(
            "SELECT status_code, response_body FROM idempotency_keys WHERE user_id = %s", (clinic.user_id,)
        ).fetchall()
        off_balance, lowest = conn.execute(
            "SELECT count(*) FILTER (WHERE c.balance_ug <> (SELECT coalesce(sum(e.delta_ug), 0)"
            " FROM ledger_entries e WHERE e.container_id = c.id)), min(c.balance_ug)"
            " FROM containers c WHERE c.location_id = %s",
            (clinic.location_id,),
        ).fetchone() or (0, 0)
    not_201 = sum(1 for status, _ in keys if status != 201)
    answered = [json.loads(body)["hash"] for status, body in keys if status == 201]
    if not_201 or len(set(answered)) != len(answered) or len(set(entries)) != len(entries):
        raise BenchmarkError(
            f"{label}: {len(keys)} idempotency keys, {not_201} not answered 201, {len(set(answered))} distinct "
            f"entries named in {len(answered)} answers; {len(entries)} administration entries "
            f"({len(set(entries))} distinct)"
        )
    if set(answered) != set(entries):
        raise BenchmarkError(
            f"{label}: {len(set(answered) - set(entries))} answers name no entry, "
            f"{len(set(entries) - set(answered))} entries have no answer"
        )
    if off_balance:
        raise BenchmarkError(f"{label}: {off_balance} containers' balances differ from their movements")

    from clinic.inventory import integrity

    with app_context(clinic.url, instance):
        report = integrity.verify_location(clinic.location_id)
    if not report.ok:
        raise BenchmarkError(f"{label}: integrity.verify_location failed: {report}")
    note(
        f"ledger_append: {label}: {len(entries)} administrations, one per key answered 201; balances match; "
        f"chain of {report.entries} entries verifies; lowest vial {(lowest or 0) / 1000:g} mg"
    )
    return len(entries)


# --- the baseline: the transaction in raw SQL, one process and connection per worker ---------------

_PATIENT = "SELECT first_name, last_name, address FROM patients WHERE id = %s"
_LOCK_CHAIN = "SELECT head_seq, head_hash FROM ledger_chains WHERE location_id = %s FOR UPDATE"
_LOCK_CONTAINER = (
    "SELECT c.balance_ug, c.status, c.drug_id, c.lot_number, c.expires_on, d.name, d.ndc"
    " FROM containers c JOIN drugs d ON d.id = c.drug_id"
    " WHERE c.id = %s AND c.location_id = %s FOR UPDATE OF c"
)
_UPDATE_CONTAINER = "UPDATE containers SET balance_ug = %s, status = %s WHERE id = %s"
# the chain's own field list, so the two cannot drift; PHI enters the hash as salted commitments
_ENTRY_COLUMNS = (*HASHED_FIELDS, "phi_salts", "committed_record", "hash")
_INSERT_ENTRY = (
    f"INSERT INTO ledger_entries ({', '.join(_ENTRY_COLUMNS)})"
    f" VALUES ({', '.join(['%s'] * len(_ENTRY_COLUMNS))}) RETURNING id"
)
_MOVE_HEAD = "UPDATE ledger_chains SET head_seq = %s, head_hash = %s WHERE location_id = %s"
_INSERT_KEY = (
    "INSERT INTO idempotency_keys (user_id, key, request_hash, status_code, content_type, response_body, created_at)"
    " VALUES (%s, %s, %s, 201, 'application/json', %s, %s)"
)
_UNUSABLE = ("quarantined", "disposed", "expired")


class DrawRefused(Exception):
    """The baseline's equivalent of a 409: the vial is unusable or holds too little."""


@dataclass(frozen=True)
class BaselineRun:
    prefix: str
    requests: int
    time_limit: float


def _mg(ug: int) -> str:
    whole, frac = divmod(abs(ug), 1000)
    return ("-" if ug < 0 else "") + f"{whole}" + (f".{frac:03d}".rstrip("0") if frac else "")


def _draw(conn: Any, clinic: Clinic, bodies: tuple[str, ...], n: int, prefix: str) -> None:
    """One administration: the service's locked transaction in plain SQL. Left out, and so priced by
    the figure: HTTP, Flask, the token lookup, the ORM, the key's separate claim transaction, the
    audit row and the access-log transaction."""
    from psycopg.types.json import Json

    from clinic.inventory.chain import committed_record, phi_paths, record_body_hash

    container_id = clinic.containers[n % len(clinic.containers)]
    body = bodies[n % len(bodies)]
    request_hash = hashlib.sha256(f"POST {PATH}\n".encode() + body.encode()).hexdigest()
    with conn.transaction():
        patient = conn.execute(_PATIENT, (clinic.patient_id,)).fetchone()
        if patient is None:
            raise DrawRefused("no such patient")
        head_seq, head_hash = conn.execute(_LOCK_CHAIN, (clinic.location_id,)).fetchone()
        row = conn.execute(_LOCK_CONTAINER, (container_id, clinic.location_id)).fetchone()
        if row is None:
            raise DrawRefused("no such container")
        balance, status, drug_id, lot_number, expires_on, drug_name, ndc = row
        now = datetime.now(UTC)
        if status in _UNUSABLE or expires_on < now.date():
            raise DrawRefused(f"container {container_id} is {status}, expires {expires_on}")
        after = balance - DRAW_UG
        if after < 0:
            raise DrawRefused(f"container {container_id} holds {balance} ug")
        if after == 0 and status in ("sealed", "open"):
            status = "empty"
        elif status == "sealed":
            status = "open"
        conn.execute(_UPDATE_CONTAINER, (after, status, container_id))
        fields: dict[str, Any] = {
            "location_id": clinic.location_id,
            "seq": head_seq + 1,
            "kind": "administration",
            "container_id": container_id,
            "drug_id": drug_id,
            "delta_ug": -DRAW_UG,
            "balance_after_ug": after,
            "patient_id": clinic.patient_id,
            "appointment_id": None,
            "actor_id": clinic.user_id,
            "witness_id": None,
            "second_witness_id": None,
            "corrects_seq": None,
            "occurred_at": now,
            "recorded_at": datetime.now(UTC),
            "reason": None,
            "details": {
                "patient_name": f"{patient[0]} {patient[1]}",
                "patient_address": patient[2],
                "drug_name": drug_name,
                "ndc": ndc,
                "lot_number": lot_number,
            },
            "prev_hash": head_hash,
        }
        fields["phi_salts"] = {path: secrets.token_hex(16) for path in phi_paths(fields)}
        record = committed_record(fields)
        fields["committed_record"] = record.decode()
        fields["hash"] = record_body_hash(record, head_hash)
        values = [Json(v) if k in ("details", "phi_salts") else v for k, v in ((c, fields[c]) for c in _ENTRY_COLUMNS)]
        (entry_id,) = conn.execute(_INSERT_ENTRY, values).fetchone()
        conn.execute(_MOVE_HEAD, (fields["seq"], fields["hash"], clinic.location_id))
        answer = {
            "id": entry_id,
            **{k: v for k, v in fields.items() if k not in ("delta_ug", "balance_after_ug")},
            "quantity_mg": _mg(DRAW_UG),
            "delta_mg": _mg(-DRAW_UG),
            "balance_after_mg": _mg(after),
            "occurred_at": fields["occurred_at"].isoformat(),
            "recorded_at": fields["recorded_at"].isoformat(),
        }
        conn.execute(_INSERT_KEY, (clinic.user_id, f"{prefix}-{n}", request_hash, json.dumps(answer), now))


def _baseline_worker(barrier: Any, tickets: Any, commands: Any, results: Any) -> None:
    """A worker process: first the Clinic to connect to (one connection, kept), then one command per run
    and a report per run, until None."""
    import psycopg

    from clinic.inventory.chain import committed_record  # noqa: F401 - imported now, not in the first run

    try:
        clinic = commands.get()
        if clinic is None:
            return
        conn = psycopg.connect(clinic.url, autocommit=True, connect_timeout=5)
    except BaseException as exc:
        results.put({"fatal": f"connect: {exc!r}"})
        return
    bodies = clinic.bodies
    results.put({"ready": True})
    try:
        while (run := commands.get()) is not None:
            barrier.wait(timeout=60)
            start = time.perf_counter()
            deadline = start + run.time_limit
            latencies: list[float] = []
            refused = 0
            last_error = None
            while time.perf_counter() < deadline:
                with tickets.get_lock():
                    n = tickets.value
                    if n >= run.requests:
                        break
                    tickets.value = n + 1
                t0 = time.perf_counter()
                try:
                    _draw(conn, clinic, bodies, n, run.prefix)
                except (DrawRefused, psycopg.Error) as exc:
                    refused += 1
                    last_error = repr(exc)
                    continue
                latencies.append((time.perf_counter() - t0) * 1000)
            results.put(
                {"start": start, "end": time.perf_counter(), "ms": latencies, "refused": refused, "error": last_error}
            )
    except BaseException as exc:
        results.put({"fatal": repr(exc)})
    finally:
        conn.close()


class BaselineWorkers:
    """Worker processes (spawned, each with its own connection), started once: ``start()`` early (their
    interpreters start up while the databases are set up), ``connect()`` once the baseline's is ready."""

    def __init__(self, count: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.count = count
        self.barrier = ctx.Barrier(count)
        self.tickets = ctx.Value("q", 0)
        self.results = ctx.Queue()
        self.commands = [ctx.Queue() for _ in range(count)]
        self.procs = [
            ctx.Process(
                target=_baseline_worker,
                args=(self.barrier, self.tickets, cmds, self.results),
                name=f"ledger-append-baseline-{i}",
                daemon=True,
            )
            for i, cmds in enumerate(self.commands)
        ]
        self.committed = 0

    def _collect(self, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        reports = []
        while len(reports) < self.count:
            try:
                report = self.results.get(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                dead = [p.name for p in self.procs if not p.is_alive()]
                if dead or time.monotonic() > deadline:
                    raise BenchmarkError(
                        f"baseline workers: {len(reports)} of {self.count} reported; dead: {dead}"
                    ) from None
                continue
            if "fatal" in report:
                raise BenchmarkError(f"a baseline worker failed: {report['fatal']}")
            reports.append(report)
        return reports

    def start(self) -> None:
        for p in self.procs:
            p.start()

    def connect(self, clinic: Clinic) -> None:
        for cmds in self.commands:
            cmds.put(clinic)
        self._collect(60)

    def run(self, requests: int, time_limit: float) -> LoadResult:
        self.tickets.value = 0
        job = BaselineRun(prefix=f"baseline-{uuid.uuid4().hex[:12]}", requests=requests, time_limit=time_limit)
        for cmds in self.commands:
            cmds.put(job)
        reports = self._collect(time_limit + 60)
        ordered = sorted(x for r in reports for x in r["ms"])
        refused = sum(r["refused"] for r in reports)
        self.committed += len(ordered)
        seconds = max(r["end"] for r in reports) - min(r["start"] for r in reports)
        if refused:
            errors = {r["error"] for r in reports if r["error"]}
            note(f"ledger_append: baseline refused {refused} draws, e.g. {sorted(errors)[:2]}")
        return LoadResult(
            generator="psycopg",
            requests=len(ordered) + refused,
            non_2xx=refused,
            socket_errors=0,
            seconds=seconds,
            mean_ms=statistics.fmean(ordered) if ordered else 0.0,
            p50_ms=_percentile(ordered, 50),
            p90_ms=_percentile(ordered, 90),
            p99_ms=_percentile(ordered, 99),
            max_ms=ordered[-1] if ordered else 0.0,
        )

    def stop(self) -> None:
        for cmds in self.commands:
            with contextlib.suppress(Exception):
                cmds.put(None)
        for p in self.procs:
            if p.pid is not None:
                p.join(timeout=5)
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=5)


@contextlib.contextmanager
def baseline_workers(count: int) -> Iterator[BaselineWorkers]:
    workers = BaselineWorkers(count)
    try:
        workers.start()
        yield workers
    finally:
        workers.stop()


# --- ours: one probe, then the load generator ------------------------------------------------------


def probe(server: Server, clinic: Clinic) -> None:
    """One draw by hand: 201 and an entry in the answer, or the benchmark stops here."""
    conn = http.client.HTTPConnection(server.host, timeout=10)
    try:
        conn.request(
            "POST",
            PATH,
            body=clinic.bodies[0],
            headers={
                "Authorization": f"Bearer {clinic.token}",
                "Content-Type": "application/json",
                "Idempotency-Key": f"probe-{uuid.uuid4().hex}",
            },
        )
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 201 or "hash" not in json.loads(body or b"{}"):
        raise BenchmarkError(f"ours answered {resp.status} to a draw: {body[:500]!r}\n{server.log_tail()}")


def round_trips_ours(clinic: Clinic, env: dict[str, str], log_dir: Path) -> tuple[float, int]:
    """SQL round trips per draw of ours, served through the counting proxy (every answer awaited);
    also the number of draws it answered 201, which the books must hold."""
    headers = {"Authorization": f"Bearer {clinic.token}", "Content-Type": "application/json"}
    prefix = f"counted-{uuid.uuid4().hex[:12]}"
    draws = [
        ("POST", PATH, headers | {"Idempotency-Key": f"{prefix}-{n}"}, clinic.bodies[n % len(clinic.bodies)])
        for n in range(COUNTED_WARMUP + COUNTED_REQUESTS)
    ]
    with (
        wire_counter(env["DATABASE_URL"]) as wire,
        gunicorn(
            "ours-counted",
            "clinic.wsgi:app",
            env=env | {"DATABASE_URL": wire.url(env["DATABASE_URL"])},
            log_dir=log_dir,
        ) as server,
    ):
        status, body = server.wait_ready("/api/v1/users/me", headers)
        if status != 200:
            raise BenchmarkError(f"ours through the counting proxy answered {status}: {body[:300]!r}")
        warm = drive(server.host, draws[:COUNTED_WARMUP], concurrency=CONCURRENCY)
        before = wire.snapshot()
        counted = drive(server.host, draws[COUNTED_WARMUP:], concurrency=CONCURRENCY)
        after = wire.snapshot()
    statuses = warm + counted
    if len(counted) != COUNTED_REQUESTS or any(s != 201 for s in statuses):
        raise BenchmarkError(f"ours: the counting run was answered {sorted(set(statuses))}, {len(counted)} answers")
    return _per_draw("ours", before, after), len(statuses)


def round_trips_baseline(clinic: Clinic) -> tuple[float, int]:
    """The baseline's round trips per draw: its transaction on one connection through the counting proxy."""
    import psycopg

    prefix = f"counted-{uuid.uuid4().hex[:12]}"
    with wire_counter(clinic.url) as wire, psycopg.connect(wire.url(clinic.url), autocommit=True) as conn:
        for n in range(COUNTED_WARMUP):
            _draw(conn, clinic, clinic.bodies, n, prefix)
        before = wire.snapshot()
        for n in range(COUNTED_WARMUP, COUNTED_WARMUP + COUNTED_REQUESTS):
            _draw(conn, clinic, clinic.bodies, n, prefix)
        after = wire.snapshot()
    return _per_draw("baseline", before, after), COUNTED_WARMUP + COUNTED_REQUESTS


def _per_draw(label: str, before: tuple[int, int], after: tuple[int, int]) -> float:
    trips, statements = after[0] - before[0], after[1] - before[1]
    note(
        f"ledger_append: {label} sends {trips / COUNTED_REQUESTS:.2f} SQL round trips per draw "
        f"({statements / COUNTED_REQUESTS:.2f} statements, BEGIN and COMMIT included; {COUNTED_REQUESTS} draws)"
    )
    return trips / COUNTED_REQUESTS


def main() -> list[Figure]:
    generator = load_generator()
    counted = COUNTED_WARMUP + COUNTED_REQUESTS
    planned_ours = WARMUP["ours"] + ROUNDS * REQUESTS["ours"] + 1 + counted
    planned_base = WARMUP["baseline"] + ROUNDS * REQUESTS["baseline"] + counted
    if max(planned_ours, planned_base) * DRAW_UG * 2 > VIALS * VIAL_UG:
        raise BenchmarkError(f"{VIALS} vials of {VIAL_UG // 1000} mg are too few for the planned draws")
    note(
        f"ledger_append: load generator {generator.name}, {CONCURRENCY} connections / baseline workers, "
        f"{ROUNDS} rounds of {REQUESTS['ours']} (ours) / {REQUESTS['baseline']} (baseline) draws of {DRAW_MG} mg "
        f"from {VIALS} vials"
    )
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="clinic-bench-ledger-append-")))
        workers = stack.enter_context(baseline_workers(CONCURRENCY))
        urls = {
            "ours": stack.enter_context(postgres_database("clinic_bench_ledger_ours")),
            "baseline": stack.enter_context(postgres_database("clinic_bench_ledger_base")),
        }
        envs = {
            label: {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
            | {"DATABASE_URL": url, "CLINIC_INSTANCE_PATH": str(tmp / f"instance-{label}")}
            for label, url in urls.items()
        }
        clinic_cli = tool("clinic")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for done in [pool.submit(run_command, [clinic_cli, "db", "upgrade"], env=e) for e in envs.values()]:
                done.result()
        clinics = {label: set_up(url, tmp / f"instance-{label}") for label, url in urls.items()}
        note(f"ledger_append: two databases migrated and set up in {time.monotonic() - started:.1f}s")

        ours = stack.enter_context(gunicorn("ours", "clinic.wsgi:app", env=envs["ours"], log_dir=tmp))
        headers = {"Authorization": f"Bearer {clinics['ours'].token}", "Content-Type": "application/json"}
        status, body = ours.wait_ready("/api/v1/users/me", headers)
        if status != 200:
            raise BenchmarkError(f"ours answered {status} to /api/v1/users/me: {body[:500]!r}\n{ours.log_tail()}")
        probe(ours, clinics["ours"])
        answered_ours = 1
        runs_ours = 0
        workers.connect(clinics["baseline"])

        def load(label: str, requests: int) -> LoadResult:
            nonlocal answered_ours, runs_ours
            if label == "baseline":
                result = workers.run(requests, TIME_LIMIT)
            else:
                spec = Requests(
                    method="POST",
                    bodies=clinics["ours"].bodies,
                    unique_header="Idempotency-Key",
                    prefix=f"ours-{uuid.uuid4().hex[:12]}",
                )
                result = generator.run(
                    ours.host,
                    PATH,
                    headers,
                    requests=requests,
                    concurrency=CONCURRENCY,
                    time_limit=TIME_LIMIT,
                    spec=spec,
                )
                answered_ours += result.requests - result.non_2xx
                runs_ours += 1
                time.sleep(0.2)  # let requests the generator abandoned in flight finish before the next run
                if not ours.alive():
                    raise BenchmarkError(f"ours died under load:\n{ours.log_tail()}")
            result.check(label, requests)
            return result

        for label in ("ours", "baseline"):  # warm up: workers, pools, prepared statements, caches
            load(label, WARMUP[label])

        results: dict[str, list[LoadResult]] = {"ours": [], "baseline": []}
        for round_no in range(ROUNDS):
            order = ["ours", "baseline"] if round_no % 2 == 0 else ["baseline", "ours"]
            for label in order:
                result = load(label, REQUESTS[label])
                results[label].append(result)
                note(f"ledger_append round {round_no + 1} {label:<8} {result.summary()}")

        ours.stop()  # graceful: every request it accepted is finished before the books are checked
        workers.stop()
        per_draw_ours, counted_ours = round_trips_ours(clinics["ours"], envs["ours"], tmp)
        answered_ours += counted_ours
        per_draw_base, counted_base = round_trips_baseline(clinics["baseline"])
        committed_ours = check_books("ours", clinics["ours"], tmp / "instance-ours")
        slack = runs_ours * CONCURRENCY  # wrk drops the answers in flight when it stops a run
        if not answered_ours <= committed_ours <= answered_ours + (slack if generator.name == "wrk" else 0):
            raise BenchmarkError(
                f"ours: the load generator saw {answered_ours} draws answered 201 but {committed_ours} were committed"
            )
        if committed_ours > answered_ours:
            note(
                f"ledger_append: ours committed {committed_ours - answered_ours} draws whose answers wrk abandoned "
                f"in flight when it stopped a run ({runs_ours} runs)"
            )
        committed_base = check_books("baseline", clinics["baseline"], tmp / "instance-baseline")
        if committed_base != workers.committed + counted_base:
            raise BenchmarkError(
                f"baseline: workers committed {workers.committed} draws and the counting run {counted_base}, "
                f"the ledger has {committed_base}"
            )
    note(f"ledger_append: {time.monotonic() - started:.0f}s in all")

    def median(label: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in results[label])

    return [
        Figure("ledger_append.rps", median("ours", "rps"), median("baseline", "rps"), decimals=1),
        Figure("ledger_append.p50_ms", median("ours", "p50_ms"), median("baseline", "p50_ms"), decimals=2),
        Figure("ledger_append.p99_ms", median("ours", "p99_ms"), median("baseline", "p99_ms"), decimals=2),
        Figure("ledger_append.sql_per_request", per_draw_ours, per_draw_base, decimals=2),
    ]


if __name__ == "__main__":
    for figure in main():
        print(figure.line())

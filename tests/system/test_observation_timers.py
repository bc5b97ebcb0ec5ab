"""RELIABILITY F12: observation alerts survive a killed worker, a restarted broker and a worker
whose clock jumped an hour, and none is raised twice or early. A real beat and a real worker on a
real Redis of the test's own (restarting it disturbs nobody), on both backends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import func, select, update

from clinic.audit.models import AuditEvent
from clinic.core.time import database_now
from clinic.extensions import db
from clinic.visits.models import ObservationAlert
from tests.clock import at_local, clock_env
from tests.conftest import IN_CI, Account, temp_app
from tests.visits.conftest import TZ, open_ward, ward_day

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
VISITS = 9  # three chairs, three sessions a day
SPREAD_SECONDS = 40
#: F12: "fires within 60 s of due"
LATENESS = timedelta(seconds=60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Redis:
    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            if IN_CI:
                pytest.fail("redis-server is not installed (CI must run this test)")
            pytest.skip("redis-server is not installed")
        self.binary, self.port, self.dir = binary, _free_port(), tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                time.sleep(0.1)
            else:
                return
        raise AssertionError("the test's redis did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def _celery(args: list[str], env: dict[str, str], *, step: int = 0) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "celery"), "-A", "worker", *args],
        env={**os.environ, **clock_env(step), **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _worker(env: dict[str, str], *, step: int = 0) -> subprocess.Popen[bytes]:
    return _celery(
        ["worker", "--pool=solo", "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env,
        step=step,
    )


def _stop(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.terminate()
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return (err or b"").decode(errors="replace")[-1500:]


def _dosed_visits(app, client, make_user) -> list[int]:
    """Esketamine visits dosed on a frozen Monday morning, through the API."""
    day = ward_day()
    with time_machine.travel(at_local(day, "07:30", TZ), tick=False) as traveller:
        ward = open_ward(app, client, make_user, traveller, day)
        devices = ward.receive(ward.devices_drug, 3 * VISITS)
        appts = []
        for i in range(VISITS):
            appt = ward.book(ward.patient(), at=("09:00", "11:30", "14:00")[i % 3])[0]
            appts.append(appt)
        for i, appt in enumerate(appts):
            ward.at(("09:00", "11:30", "14:00")[i % 3])
            assert ward.check_in(appt).status_code == 200
            assert ward.vitals(appt).status_code == 201
            ward.later(minutes=12)
            resp = ward.dose(appt, {"container_ids": devices[3 * i : 3 * i + 3]})
            assert resp.status_code == 201, resp.json
    return appts


def test_no_alert_lost_or_repeated_across_worker_and_broker_restarts(backend, tmp_path):
    # A database of its own: what other tests left in the shared one cannot queue ahead of these timers.
    with temp_app(backend, "f12") as app:
        _run(app, backend, tmp_path)


def _users(app):  # type: ignore[no-untyped-def]
    """make_user for this test's own app (the fixture is bound to the shared one)."""
    from clinic.auth import service as auth
    from clinic.core.tx import commit

    def make(role: str = "nurse") -> Account:
        email = f"{role}.{uuid.uuid4().hex[:8]}.f12@test.clinic"  # roaming: works at every location (tests/conftest.py)
        password = f"pw-{uuid.uuid4().int}"
        with app.app_context():
            user = auth.create_user(
                actor=None,
                email=email,
                name=f"F12 {role}",
                role=role,
                password=password,
                license_type="RN" if role in ("nurse", "prescriber") else None,
                license_number="F12-1" if role in ("nurse", "prescriber") else None,
            )
            commit()
            return Account(user.id, email, password, role, None)

    return make


def _run(app, backend: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _dosed_visits(app, app.test_client(), _users(app))
    # The timers were set on the frozen Monday; bring them to the next seconds of real time, spread
    # out, so beat and the worker (which run on the real clock) meet them while being restarted.
    with app.app_context():
        ids = list(db.session.scalars(select(ObservationAlert.id).where(ObservationAlert.raised_at.is_(None))))
        start = database_now() + timedelta(seconds=5)
        for n, alert_id in enumerate(ids):
            due = start + timedelta(seconds=SPREAD_SECONDS * n / len(ids))
            db.session.execute(update(ObservationAlert).where(ObservationAlert.id == alert_id).values(due_at=due))
        # Other tests' timers in this shared database, left unraised with no sweeper running, would
        # queue ahead of ours: stand them down, so the figure is about these sessions alone.
        db.session.execute(
            update(ObservationAlert)
            .where(ObservationAlert.id.not_in(ids), ObservationAlert.raised_at.is_(None))
            .values(cancelled_at=start)
        )
        db.session.commit()
    redis = Redis(tmp_path)
    redis.start()
    env = {"DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "CELERY_BROKER_URL": redis.url}
    beat = _celery(["beat", "--loglevel=WARNING", "-s", str(tmp_path / "beat-schedule")], env)
    worker = _worker(env)
    logs = []
    try:
        time.sleep(15)
        worker.kill()  # kill -9: whatever it held is lost with it
        worker.communicate()
        redis.kill()  # the broker restarts empty: queued sweeps are gone
        time.sleep(2)
        redis.start()
        # ... and, on PostgreSQL, the worker comes back with its clock an hour ahead: timers go by
        # the database server's clock. (An SQLite database has no clock but this machine's.)
        worker = _worker(env, step=3600 if backend == "postgresql" else 0)
        deadline = time.monotonic() + SPREAD_SECONDS + 60
        while time.monotonic() < deadline:
            with app.app_context():
                left = db.session.scalar(
                    select(func.count())
                    .select_from(ObservationAlert)
                    .where(ObservationAlert.id.in_(ids), ObservationAlert.raised_at.is_(None))
                )
                db.session.rollback()
            if left == 0:
                break
            time.sleep(1)
        time.sleep(12)  # a sweep or two more: nothing may be raised again
    finally:
        logs.append(_stop(worker))
        logs.append(_stop(beat))
        redis.kill()
    with app.app_context():
        alerts = list(db.session.scalars(select(ObservationAlert).where(ObservationAlert.id.in_(ids))))
        raises = list(
            db.session.scalars(
                select(AuditEvent).where(AuditEvent.tag == "visits:alert:raise", AuditEvent.subject_type == "visit")
            )
        )
    per_alert: dict[int, int] = {}
    for event in raises:
        if event.data["alert_id"] in ids:
            per_alert[event.data["alert_id"]] = per_alert.get(event.data["alert_id"], 0) + 1
    assert all(a.raised_at is not None for a in alerts), f"alerts never raised; worker/beat said: {logs}"
    assert sorted(per_alert) == sorted(ids)
    assert set(per_alert.values()) == {1}, "an alert was raised twice"
    late = [a.id for a in alerts if a.raised_at - a.due_at > LATENESS]
    assert late == [], f"raised more than {LATENESS} after due"
    assert all(a.raised_at >= a.due_at for a in alerts), "raised before due"

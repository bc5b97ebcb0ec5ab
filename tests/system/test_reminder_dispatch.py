"""Issue 12's acceptance, RELIABILITY F8/F9: 500 reminders due within a minute, a real worker
SIGKILLed several times (pool children and the whole worker) and its Redis restarted empty: every
reminder is sent, none twice, counted at a real SMTP server (aiosmtpd) by Message-ID.

A real beat and a real prefork worker on a Redis of the test's own (never the shared one), on a
database of the test's own, on both backends. The lease is short here (10 s) so a lost batch comes
back quickly; in production it is 2 minutes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from clinic.core.time import database_now
from clinic.extensions import db
from clinic.reminders import planning
from clinic.reminders.models import Reminder
from clinic.scheduling.models import Appointment
from tests.clock import clock_env
from tests.conftest import bearer, temp_app
from tests.reminders.conftest import SmtpServer, patient, users_of
from tests.scheduling.conftest import make_desk
from tests.system.test_observation_timers import BIN, ROOT, Redis

REMINDERS = 500
SPREAD_SECONDS = 60
LEASE_SECONDS = 10
SWEEP_SECONDS = 2
#: F8: delivered within lease + 2 sweep intervals of due; a worker restart (a few seconds) on top
LATENESS = timedelta(seconds=LEASE_SECONDS + 2 * SWEEP_SECONDS + 30)


def _celery(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "celery"), "-A", "worker", *args],
        env={**os.environ, **clock_env(), **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: killing the group kills main and pool alike
    )


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return _celery(
        [
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env,
    )


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker and its pool at once: a power cut, as far as the worker can tell."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def _kill_a_child(proc: subprocess.Popen[bytes]) -> bool:
    """SIGKILL one pool process mid-task; the main process lives on and requeues its task."""
    children = _children(proc.pid)
    if not children:
        return False
    os.kill(children[0], signal.SIGKILL)
    return True


def _stop(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    return (err or b"").decode(errors="replace")[-1500:]


def _seed(app) -> list[int]:  # type: ignore[no-untyped-def]
    """Ten patients with a course each; 500 visit reminders due over the next minute."""
    client = app.test_client()
    desk = make_desk(app, client, users_of(app), chairs=10)
    # The test runs at any hour: the default quiet hours would (rightly) hold everything till morning.
    resp = client.put(
        f"/api/v1/locations/{desk.location_id}/reminder-settings",
        headers=bearer(app, users_of(app)("admin")),
        json={"quiet_hours": {"start": None, "end": None}},
    )
    assert resp.status_code == 200, resp.json
    appts = []
    for i in range(10):
        booked = desk.book(patient(desk), protocol="ketamine-im", preferred_time=f"{8 + i // 2:02d}:{30 * (i % 2):02d}")
        assert booked.status_code == 201, booked.json
        appts.append(booked.json["appointments"][-1]["id"])
    with app.app_context():
        # Only these 500 are due: what booking planned is weeks ahead.
        start = database_now() + timedelta(seconds=5)
        plans = []
        for n in range(REMINDERS):
            appt = db.session.get(Appointment, appts[n % len(appts)])
            at = start + timedelta(seconds=SPREAD_SECONDS * n / REMINDERS)
            plans.append(
                planning.Plan(
                    kind="appointment",
                    location_id=appt.location_id,
                    planned_for=at,
                    key=f"f8:{uuid.uuid4().hex}",
                    tz="UTC",
                    channel="email",
                    patient_id=appt.patient_id,
                    appointment_id=appt.id,
                    series_id=appt.series_id,
                    expires_at=appt.starts_at,
                    params={"lead_hours": 24, "starts_at": appt.starts_at.isoformat()},
                )
            )
        planning.write(plans, settings=planning.settings_for(appt.location_id))
        db.session.commit()
        return list(db.session.scalars(select(Reminder.id).where(Reminder.dedupe_key.like("f8:%"))))


def test_every_reminder_sent_once_through_worker_kills_and_an_empty_redis(backend, tmp_path):
    with temp_app(backend, "f8") as app:
        _run(app, tmp_path)


def _run(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = _seed(app)
    assert len(ids) == REMINDERS
    smtp = SmtpServer()
    smtp.controller.start()
    redis = Redis(tmp_path)
    redis.start()
    env = {
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "CELERY_BROKER_URL": redis.url,
        "CLINIC_MAIL_HOST": "127.0.0.1",
        "CLINIC_MAIL_PORT": str(smtp.port),
        "CLINIC_MAIL_MESSAGE_ID_DOMAIN": "f8.test",
        "CLINIC_REMINDER_LEASE_SECONDS": str(LEASE_SECONDS),
        "CLINIC_REMINDER_SWEEP_SECONDS": str(SWEEP_SECONDS),
        "CLINIC_REMINDER_TASK_BATCH": "10",
    }
    beat = _celery(["beat", "--loglevel=WARNING", "-s", str(tmp_path / "beat-schedule")], env)
    worker = _worker(env)
    logs: list[str] = []
    kills = 0

    def left() -> int:
        with app.app_context():
            n = db.session.scalar(
                select(func.count()).select_from(Reminder).where(Reminder.id.in_(ids), Reminder.status != "sent")
            )
            db.session.rollback()
            return int(n or 0)

    try:
        # Disturbances while the minute's reminders fall due: a pool child, the whole worker, the
        # broker restarted empty (with the worker killed again), a pool child once more.
        t0 = time.monotonic()
        for at, what in ((12, "child"), (22, "worker"), (32, "redis"), (44, "worker"), (54, "child")):
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            if what == "child":
                kills += _kill_a_child(worker)
            elif what == "worker":
                _kill_group(worker)
                kills += 1
                worker = _worker(env)
            else:
                _kill_group(worker)
                kills += 1
                redis.kill()
                time.sleep(1)
                redis.start()
                worker = _worker(env)
        deadline = time.monotonic() + SPREAD_SECONDS + 60
        while time.monotonic() < deadline and left():
            time.sleep(1)
        time.sleep(2 * SWEEP_SECONDS + 1)  # a sweep or two more: nothing may go twice
    finally:
        logs.append(_stop(worker))
        logs.append(_stop(beat))
        redis.kill()
        smtp.controller.stop()
    assert kills >= 4, "the test did not kill the worker as often as it means to"
    with app.app_context():
        rows = list(db.session.scalars(select(Reminder).where(Reminder.id.in_(ids))))
    unsent = [r.id for r in rows if r.status != "sent"]
    assert unsent == [], f"{len(unsent)} never sent; worker/beat said: {logs}"
    received = smtp.inbox.ids()
    expected = {f"<reminder-{i}@f8.test>" for i in ids}
    twice = {k: n for k, n in received.items() if n > 1}
    assert twice == {}, f"sent twice at the SMTP server: {twice}"
    assert set(received) == expected, f"missing at the server: {sorted(expected - set(received))[:10]}"
    assert Counter(r.provider_ref for r in rows) == Counter(expected)
    late = [r.id for r in rows if r.sent_at - r.due_at > LATENESS]
    assert late == [], f"{len(late)} sent more than {LATENESS} after due"
    assert all(r.sent_at >= r.due_at for r in rows), "sent before due"

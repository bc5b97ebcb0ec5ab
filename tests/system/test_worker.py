"""A real Celery worker process, on Redis and on the embedded broker, running a real task."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from celery import Celery
from sqlalchemy import select

from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.system.models import Heartbeat
from tests.clock import clock_env
from tests.conftest import REDIS_URL, require_service, temp_app

BIN = Path(sys.executable).parent


def _start_worker(env_extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, **clock_env(), **env_extra}
    return subprocess.Popen(
        [
            str(BIN / "celery"),
            "-A",
            "worker",
            "worker",
            "--pool=solo",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _stop(proc: subprocess.Popen[bytes]) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err.decode(errors="replace")[-2000:]


def _wait_for_heartbeat(app, since, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            beat = db.session.scalar(select(Heartbeat.beat_at).where(Heartbeat.name == "scheduler"))
            db.session.rollback()
        if beat is not None and beat >= since:
            return beat
        time.sleep(0.3)
    return None


def _send(broker_url: str) -> None:
    sender = Celery(broker=broker_url)
    sender.conf.task_serializer = "json"
    with sender.connection_for_write() as conn:
        sender.send_task("system.heartbeat", connection=conn)


def test_worker_on_redis_runs_the_heartbeat_task(app):
    require_service("Redis", "127.0.0.1", 6379)
    since = utcnow()
    proc = _start_worker({"DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "CELERY_BROKER_URL": REDIS_URL})
    try:
        _send(REDIS_URL)
        beat = _wait_for_heartbeat(app, since)
    finally:
        log = _stop(proc)
    assert beat is not None, f"the worker never ran the task; worker said:\n{log}"


def test_worker_on_the_embedded_broker_needs_no_server(tmp_path):
    """The zero-setup default: SQLite database and kombu's SQLAlchemy transport, no servers."""
    broker = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    since = utcnow()
    with temp_app("sqlite", "embedded") as app:
        proc = _start_worker({"DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "CELERY_BROKER_URL": broker})
        try:
            _send(broker)
            beat = _wait_for_heartbeat(app, since)
        finally:
            log = _stop(proc)
    assert beat is not None, f"the worker never ran the task; worker said:\n{log}"


def test_dashboard_warns_when_the_scheduler_is_stale(app, login_as):
    from clinic.system import service

    c, _ = login_as("nurse")
    with app.app_context():
        service.record_heartbeat()
        db.session.commit()
    assert "does not seem to be running" not in c.get("/").get_data(as_text=True)
    old = app.config["HEARTBEAT_STALE_SECONDS"]
    app.config["HEARTBEAT_STALE_SECONDS"] = -1
    try:
        assert "does not seem to be running" in c.get("/").get_data(as_text=True)
    finally:
        app.config["HEARTBEAT_STALE_SECONDS"] = old


def test_beat_schedule_names_registered_tasks():
    from worker import app as celery_app

    celery_app.loader.import_default_modules()
    for name, entry in celery_app.conf.beat_schedule.items():
        assert entry["task"] in celery_app.tasks, name
    assert celery_app.conf.task_acks_late is True
    assert celery_app.conf.task_serializer == "json"


def test_dashboard_waits_for_a_missed_heartbeat_after_start(app, login_as, monkeypatch):
    """Right after start, with beat's first heartbeat still a minute away, no banner; once the stale
    limit has passed since start with no heartbeat, the banner."""
    from datetime import timedelta

    from clinic.core.time import utcnow
    from clinic.system import service
    from clinic.system.models import Heartbeat

    c, _ = login_as("nurse")
    with app.app_context():
        db.session.query(Heartbeat).delete()
        db.session.commit()
        assert service.scheduler_is_stale()  # readiness stays strict
    limit = timedelta(seconds=app.config["HEARTBEAT_STALE_SECONDS"])
    monkeypatch.setattr(service, "STARTED_AT", utcnow() - limit + timedelta(seconds=30))
    assert "does not seem to be running" not in c.get("/").get_data(as_text=True)
    monkeypatch.setattr(service, "STARTED_AT", utcnow() - limit - timedelta(seconds=1))
    assert "does not seem to be running" in c.get("/").get_data(as_text=True)

"""Live versus ready (issue 14): ``/health/live`` is the process alone; ``/health/ready`` (and
``clinic health``, for containers without HTTP) needs the database, the schema at this code's
head, the broker and a fresh scheduler heartbeat, and names what is missing. ``/health`` keeps its
contract (tests/test_health.py)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import time_machine
from alembic import command
from flask import Flask
from sqlalchemy import text

from clinic.cli import alembic_config
from clinic.core.time import utcnow
from clinic.core.tx import commit
from clinic.extensions import db
from clinic.system import service as system
from tests.conftest import Client, dispose, make_app
from tests.ops.conftest import fresh_app

READY = {"status": "ready", "database": "ok", "migrations": "ok", "broker": "ok", "scheduler": "ok"}


def beat(app: Flask) -> None:
    with app.app_context():
        system.record_heartbeat()
        commit()


def ready(app: Flask) -> tuple[int, dict[str, Any]]:
    resp = app.test_client().get("/health/ready")
    assert resp.content_type == "application/json"
    return resp.status_code, resp.json


def test_ready_when_everything_answers(app: Flask) -> None:
    beat(app)
    assert ready(app) == (200, READY)
    live = app.test_client().get("/health/live")
    assert (live.status_code, live.json) == (200, {"status": "ok"})
    result = app.test_cli_runner().invoke(args=["health"])
    assert result.exit_code == 0 and json.loads(result.output) == READY


def test_a_stale_scheduler_heartbeat_is_not_ready(app: Flask) -> None:
    beat(app)
    stale = app.config["HEARTBEAT_STALE_SECONDS"]
    with time_machine.travel(utcnow() + timedelta(seconds=stale + 5), tick=False):
        status, body = ready(app)
        result = app.test_cli_runner().invoke(args=["health"])
    assert (status, body) == (503, {**READY, "status": "not_ready", "scheduler": "stale"})
    assert result.exit_code == 1 and json.loads(result.output)["scheduler"] == "stale"
    assert app.test_client().get("/health/live").status_code == 200


def test_a_schema_behind_or_ahead_of_the_code_is_not_ready(backend: str) -> None:
    with fresh_app(backend, "behind", migrated=True) as app:
        beat(app)
        assert ready(app)[0] == 200
        with app.app_context():
            command.downgrade(alembic_config(), "-1")
        status, body = ready(app)
        assert (status, body["migrations"]) == (503, "behind"), body
        with app.app_context():
            command.upgrade(alembic_config(), "head")
            db.session.execute(text("UPDATE alembic_version SET version_num = 'fffffffffff0'"))
            commit()
        status, body = ready(app)
        assert (status, body["migrations"]) == (503, "ahead"), body
        with app.app_context():
            db.session.execute(text("DROP TABLE alembic_version"))
            commit()
        assert ready(app)[1]["migrations"] == "unavailable"


def test_an_unreachable_broker_is_not_ready(app: Flask) -> None:
    beat(app)
    broken = make_app(app.config["SQLALCHEMY_DATABASE_URI"])
    broken.extensions["celery"].conf.broker_url = "redis://127.0.0.1:1/0"
    broken.test_client_class = Client
    try:
        assert ready(broken) == (503, {**READY, "status": "not_ready", "broker": "unavailable"})
        assert broken.test_client().get("/health/live").status_code == 200
    finally:
        dispose(broken)


def test_an_unreachable_database_is_not_ready_but_still_live(backend: str, tmp_path) -> None:
    url = (
        f"sqlite:///{tmp_path}/no/such/folder/clinic.sqlite"
        if backend == "sqlite"
        else "postgresql://postgres@127.0.0.1:1/none"
    )
    down = make_app(url)
    down.test_client_class = Client
    try:
        status, body = ready(down)
        assert status == 503
        assert body == {
            "status": "not_ready",
            "database": "unavailable",
            "migrations": "unknown",
            "broker": "ok",
            "scheduler": "unknown",
        }
        assert "sqlite" not in json.dumps(body) and "postgres" not in json.dumps(body)
        assert down.test_client().get("/health/live").status_code == 200
    finally:
        dispose(down)

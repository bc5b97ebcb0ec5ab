"""Configuration from the environment (CONTRACT.md) and the embedded default."""

from __future__ import annotations

import sqlite3

from sqlalchemy import text

from clinic.core.db import normalise_database_url
from clinic.extensions import db
from tests.conftest import dispose, make_app


def test_plain_postgresql_url_uses_psycopg():
    assert normalise_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_defaults_need_no_server(monkeypatch, tmp_path):
    from clinic import create_app

    for var in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "SECRET_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLINIC_INSTANCE_PATH", str(tmp_path))
    app = create_app()
    try:
        assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'clinic.sqlite'}"
        assert app.config["CELERY"]["broker_url"].startswith("sqla+sqlite:///")
        assert app.config["SECRET_KEY"] == (tmp_path / "secret_key").read_text().strip()
        assert len(app.config["SECRET_KEY"]) >= 48
        assert create_app().config["SECRET_KEY"] == app.config["SECRET_KEY"]  # stable across restarts
        assert app.config["SESSION_COOKIE_NAME"] == "__Host-session"
        assert app.config["SESSION_COOKIE_SECURE"] is True
    finally:
        dispose(app)


def test_env_overrides(monkeypatch, tmp_path):
    from clinic import create_app

    monkeypatch.setenv("CLINIC_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "postgresql://someone@db.internal/clinic")
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://cache.internal:6379/0")
    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    monkeypatch.setenv("CLINIC_IDLE_TIMEOUT_MINUTES", "10")
    app = create_app()
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://someone@db.internal/clinic"
    assert app.config["CELERY"]["broker_url"] == "redis://cache.internal:6379/0"
    assert app.config["SECRET_KEY"] == "from-the-environment"
    assert app.config["IDLE_TIMEOUT_MINUTES"] == 10
    assert not (tmp_path / "secret_key").exists()


def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(app, backend):
    with app.app_context(), db.engine.connect() as conn:
        if backend == "sqlite":
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 5000
        else:
            assert conn.dialect.driver == "psycopg"


def test_sqlite_transactions_take_the_write_lock_at_begin(tmp_path):
    """BEGIN IMMEDIATE: while our transaction is open, another writer is locked out at once."""
    app = make_app(f"sqlite:///{tmp_path / 'lock.sqlite'}")
    try:
        with app.app_context(), db.engine.connect() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.commit()
            conn.execute(text("SELECT 1"))  # a plain read already holds the reserved lock
            probe = sqlite3.connect(tmp_path / "lock.sqlite", timeout=0)
            try:
                try:
                    probe.execute("INSERT INTO t VALUES (1)")
                    locked = False
                except sqlite3.OperationalError as exc:
                    locked = "locked" in str(exc)
            finally:
                probe.close()
            conn.rollback()
        assert locked
    finally:
        dispose(app)

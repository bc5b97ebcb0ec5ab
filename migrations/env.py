"""Alembic environment: runs inside the Flask app, on the app's engine.

On PostgreSQL each run takes an advisory lock (two deploys never migrate at once) and sets lock and
statement timeouts so a migration waiting on a busy table fails fast instead of stalling traffic.
"""

from __future__ import annotations

from alembic import context
from flask import has_app_context
from sqlalchemy import text

from clinic.extensions import db

MIGRATION_LOCK_ID = 7_261_202_611


def _app_ctx():  # type: ignore[no-untyped-def]
    if has_app_context():
        return None
    from clinic import create_app

    ctx = create_app().app_context()
    ctx.push()
    return ctx


def _sqlite_foreign_keys(connection, *, on: bool) -> None:  # type: ignore[no-untyped-def]
    if connection.in_transaction():
        connection.commit()
    raw = connection.connection.driver_connection  # isolation_level None: PRAGMA runs outside a transaction
    raw.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def _sqlite_foreign_key_check(connection) -> None:  # type: ignore[no-untyped-def]
    broken = connection.connection.driver_connection.execute("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"migration left {len(broken)} rows with dangling foreign keys, e.g. {broken[:3]}")


def run_migrations_online() -> None:
    ctx = _app_ctx()
    try:
        engine = db.engine
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # Batch migrations rebuild a table that others reference; SQLite's documented way is
                # foreign keys off (outside a transaction) during the change and a full check after.
                _sqlite_foreign_keys(connection, on=False)
            if connection.dialect.name == "postgresql":
                connection.execute(text("SET lock_timeout = '4s'"))
                connection.execute(text("SET statement_timeout = '60s'"))
                connection.execute(text(f"SELECT pg_advisory_lock({MIGRATION_LOCK_ID})"))
                connection.commit()
            context.configure(
                connection=connection,
                target_metadata=db.metadata,
                transaction_per_migration=True,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            try:
                with context.begin_transaction():
                    context.run_migrations()
                if sqlite:
                    _sqlite_foreign_key_check(connection)
            finally:
                if sqlite:
                    _sqlite_foreign_keys(connection, on=True)
                if connection.dialect.name == "postgresql":
                    connection.execute(text(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})"))
                    connection.commit()
    finally:
        if ctx is not None:
            ctx.pop()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `clinic db upgrade`")
run_migrations_online()

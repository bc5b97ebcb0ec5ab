"""F6 on PostgreSQL: as the least-privileged app role, no edit of an append-only table gets through,
not even by switching its triggers off. (On SQLite the triggers are the control; see test_integrity.)
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from clinic.core.appendonly import APPEND_ONLY_TABLES
from clinic.extensions import db
from tests.conftest import temp_app

ATTACKS = [
    "UPDATE {t} SET id = id",
    "DELETE FROM {t}",
    "TRUNCATE {t} CASCADE",
    "ALTER TABLE {t} DISABLE TRIGGER USER",
    "DROP TRIGGER IF EXISTS {t}_append_only ON {t}",
]


@pytest.fixture(scope="module")
def pg_app():
    with temp_app("postgresql", "approle") as app:
        role = f"clinic_app_{uuid.uuid4().hex[:8]}"
        with app.app_context():
            with db.engine.begin() as conn:
                conn.execute(text(f'CREATE ROLE "{role}" NOLOGIN'))
            result = app.test_cli_runner().invoke(args=["db", "grant-app-role", role])
            assert result.exit_code == 0, result.output
        yield app, role
        with app.app_context(), db.engine.begin() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
@pytest.mark.parametrize("attack", ATTACKS)
def test_app_role_cannot_alter_append_only_tables(pg_app, table, attack):
    app, role = pg_app
    with app.app_context(), db.engine.connect() as conn:
        conn.execute(text(f'SET ROLE "{role}"'))
        with pytest.raises(DatabaseError, match=r"permission denied|must be owner|append-only"):
            conn.execute(text(attack.format(t=table)))
        conn.rollback()


def test_app_role_can_still_read_and_append(pg_app):
    app, role = pg_app
    with app.app_context(), db.engine.connect() as conn:
        conn.execute(text(f'SET ROLE "{role}"'))
        conn.execute(text("SELECT count(*) FROM ledger_entries"))
        conn.execute(
            text(
                "INSERT INTO audit_events (occurred_at, tag, subject_type, data) "
                "VALUES (now(), 'test:role:append', 'test', '{}')"
            )
        )
        conn.execute(text("UPDATE containers SET status = status WHERE false"))  # ordinary tables stay writable
        conn.rollback()

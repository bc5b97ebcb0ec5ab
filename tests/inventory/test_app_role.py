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


def test_app_role_cannot_change_a_balance_without_an_entry(pg_app):
    """A balance edited in place would blame the next honest draw: the commit is refused."""
    from clinic import fixtures
    from clinic.inventory.witness import WitnessSignature
    from tests.clock import in_years
    from tests.inventory.conftest import dea_number, ndc

    app, role = pg_app
    with app.app_context():
        nurse = fixtures.create_user(
            role="nurse", email="r-n@test.clinic", password="role-pass-one", license_number="1"
        )
        fixtures.create_user(role="nurse", email="r-w@test.clinic", password="role-pass-two", license_number="2")
        loc = fixtures.create_location(nurse, dea_registration=dea_number(), timezone="UTC", storage_sites=("Safe",))
        drug = fixtures.create_drug(nurse, ndc=ndc())
        fixtures.open_ledger(nurse, loc.id, WitnessSignature("r-w@test.clinic", "role-pass-two"))
        receipt = fixtures.create_receipt(
            nurse, storage_site_id=loc.sites[0], drug_id=drug.id, count=1, expires_on=in_years(2)
        )
        cid = receipt.containers[0].id
        db.session.commit()
        with db.engine.connect() as conn:
            conn.execute(text(f'SET ROLE "{role}"'))
            conn.execute(text(f"UPDATE containers SET balance_ug = balance_ug - 1000 WHERE id = {cid}"))
            with pytest.raises(DatabaseError, match="is not its ledger balance"):
                conn.commit()
        with db.engine.connect() as conn:
            assert conn.execute(text(f"SELECT balance_ug FROM containers WHERE id = {cid}")).scalar() == 500_000

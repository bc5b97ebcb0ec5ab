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
    from clinic.auth import service as auth
    from clinic.inventory import service as inventory
    from clinic.locations import service as locations
    from tests.clock import in_years
    from tests.inventory.conftest import dea_number, ndc

    app, role = pg_app
    with app.app_context():
        nurse = auth.create_user(
            actor=None,
            email="r-n@test.clinic",
            name="N",
            role="nurse",
            password="role-pass-one",
            license_type="RN",
            license_number="1",
        )
        auth.create_user(
            actor=None,
            email="r-w@test.clinic",
            name="W",
            role="nurse",
            password="role-pass-two",
            license_type="RN",
            license_number="2",
        )
        loc = locations.create_location(
            actor=nurse, name="R", address="A", dea_registration=dea_number(), timezone="UTC"
        )
        site = locations.create_storage_site(actor=nurse, location_id=loc.id, name="Safe")
        drug = inventory.create_drug(
            actor=nurse,
            name="K",
            ndc=ndc(),
            schedule="CIII",
            form="vial",
            unit="mL",
            ug_per_unit=50_000,
            milliunits_per_container=10_000,
        )
        inventory.reconcile_count(
            actor=nurse,
            location_id=loc.id,
            kind="initial",
            lines=[],
            business_hours="opening",
            witness=inventory.WitnessSignature("r-w@test.clinic", "role-pass-two"),
            client_addr="t",
        )
        receipt = inventory.receive_stock(
            actor=nurse,
            storage_site_id=site.id,
            drug_id=drug.id,
            lot_number="L",
            expires_on=in_years(2),
            container_count=1,
            supplier_name="S",
            supplier_address="A",
            supplier_dea_registration=dea_number(),
            invoice_number="I",
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

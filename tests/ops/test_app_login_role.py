"""The login role compose runs web, worker, beat and backup as (issue 14), on PostgreSQL.

``clinic db grant-app-role ROLE --login-password-env VAR``, run by the owner after the migration,
creates the role; the app then does a clinic's day connected as that role alone (receipts, a visit,
witnessed waste, counts, the checkpoint and heartbeat tasks, ``clinic backup``, readiness), while
the same role cannot edit the ledger or switch a trigger off by any of the ways an owner could.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError

from clinic.core.appendonly import APPEND_ONLY_TABLES
from clinic.extensions import db
from tests.conftest import Client, dispose, make_app
from tests.ops.conftest import cli, fresh_app
from tests.ops.seed import seed_clinic, user_maker
from tests.visits.conftest import ward_day

ATTACKS = [
    "ALTER TABLE {t} DISABLE TRIGGER USER",
    "ALTER TABLE {t} DISABLE TRIGGER ALL",
    "DROP TRIGGER IF EXISTS {t}_append_only ON {t}",
    "ALTER TABLE {t} OWNER TO CURRENT_USER",
    "SET session_replication_role = replica",
    "UPDATE {t} SET id = id",
    "DELETE FROM {t}",
    "TRUNCATE {t} CASCADE",
    "DROP TABLE {t} CASCADE",
    "CREATE OR REPLACE FUNCTION clinic_reject_mutation() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$",
]


@pytest.fixture(scope="module")
def role_app(backend: str) -> Iterator[tuple[Flask, Flask, str]]:
    """(owner's app, the app as the login role, role name) on a database migrated by the owner."""
    if backend != "postgresql":
        pytest.skip("login roles are PostgreSQL's; on SQLite file permissions are the control")
    role = f"clinic_app_{uuid.uuid4().hex[:8]}"
    with fresh_app(backend, "approle", migrated=True) as owner:
        os.environ["CLINIC_TEST_APP_DB_PASSWORD"] = password = uuid.uuid4().hex
        try:
            granted = cli(owner, "db", "grant-app-role", role, "--login-password-env", "CLINIC_TEST_APP_DB_PASSWORD")
        finally:
            os.environ.pop("CLINIC_TEST_APP_DB_PASSWORD")
        assert granted.exit_code == 0, granted.output
        assert f"created login role {role}" in granted.output
        url = make_url(owner.config["SQLALCHEMY_DATABASE_URI"]).set(username=role, password=password)
        as_role = make_app(url.render_as_string(hide_password=False))
        as_role.test_client_class = Client
        try:
            yield owner, as_role, role
        finally:
            dispose(as_role)
            with (
                owner.app_context(),
                db.engine.begin() as conn,
            ):  # the database goes with fresh_app; roles are the cluster's
                conn.execute(text(f'DROP OWNED BY "{role}"'))
                conn.execute(text(f'DROP ROLE "{role}"'))


def test_the_role_owns_nothing_and_is_no_superuser(role_app: Any) -> None:
    _, as_role, role = role_app
    with as_role.app_context():
        assert db.session.scalar(text("SELECT current_user")) == role
        flags = db.session.execute(
            text(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
                "FROM pg_roles WHERE rolname = current_user"
            )
        ).one()
        assert not any(flags)
        owned = db.session.scalar(
            text("SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = current_user")
        )
        assert owned == 0
        db.session.rollback()


def test_a_clinic_day_runs_as_the_role(role_app: Any, tmp_path: Path) -> None:
    """Everything web, worker, beat and backup do works with the role's grants alone."""
    from clinic.core.tx import commit
    from clinic.system import service as system
    from clinic.system.tasks import heartbeat

    _, as_role, role = role_app
    ward = seed_clinic(as_role, as_role.test_client(), user_maker(as_role), ward_day())  # includes a checkpoint
    with as_role.app_context():
        system.record_heartbeat()
        commit()
        assert heartbeat.run()  # the beat task's body, as the worker runs it
        commit()
        assert db.session.scalar(text("SELECT current_user")) == role
        db.session.rollback()
    assert cli(as_role, "ledger", "verify").exit_code == 0
    taken = cli(as_role, "backup", "-o", str(tmp_path / "as-role.pgdump"))
    assert taken.exit_code == 0, taken.output
    # Restored by the owner into an empty database, then granted again: the role reads it, edits nothing.
    with fresh_app("postgresql", "rolerestore") as restored:
        result = cli(restored, "restore", str(tmp_path / "as-role.pgdump"), "--grant-app-role", role)
        assert result.exit_code == 0, result.output
        url = make_url(restored.config["SQLALCHEMY_DATABASE_URI"]).set(username=role)
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM ledger_entries")).scalar()
                with pytest.raises(DatabaseError, match=r"permission denied|must be owner"):
                    conn.execute(text("ALTER TABLE ledger_entries DISABLE TRIGGER USER"))
        finally:
            engine.dispose()
    ready = as_role.test_client().get("/health/ready")
    assert ready.json["database"] == ready.json["migrations"] == ready.json["scheduler"] == "ok", ready.json
    assert ward.container(ward.extra["vial"])["balance_mg"] == "460"


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
def test_the_role_cannot_edit_an_append_only_table_or_switch_its_triggers_off(role_app: Any, table: str) -> None:
    _, as_role, _ = role_app
    engine = create_engine(as_role.config["SQLALCHEMY_DATABASE_URI"])
    try:
        for attack in ATTACKS:
            with engine.connect() as conn:
                with pytest.raises(DatabaseError, match=r"permission denied|must be owner|append-only"):
                    conn.execute(text(attack.format(t=table)))
                conn.rollback()
    finally:
        engine.dispose()


def test_grant_app_role_refuses_a_role_that_could_switch_triggers_off(role_app: Any) -> None:
    owner, _, _ = role_app
    os.environ["CLINIC_TEST_APP_DB_PASSWORD"] = "x" * 20
    try:
        with owner.app_context():
            current = db.session.scalar(text("SELECT current_user"))  # the owner (a superuser here)
            db.session.rollback()
        for role, why in ((current, "superuser"), ("bad-name;", "letters, digits")):
            result = owner.test_cli_runner().invoke(
                args=["db", "grant-app-role", role, "--login-password-env", "CLINIC_TEST_APP_DB_PASSWORD"]
            )
            assert result.exit_code != 0 and why in result.output, result.output
        missing = owner.test_cli_runner().invoke(
            args=["db", "grant-app-role", "clinic_nobody", "--login-password-env", "CLINIC_TEST_NO_SUCH_VARIABLE"]
        )
        assert missing.exit_code != 0 and "is not set" in missing.output
    finally:
        os.environ.pop("CLINIC_TEST_APP_DB_PASSWORD")

"""The retention guard (SYS-02): nothing younger than retention is deleted by any path (the ORM, raw
SQL, ``clinic purge``); ``clinic purge`` removes whole old seals of the logs and what is left still
verifies; a refused purge is recorded. Own database: purges and legal holds must not leak."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.exc import DatabaseError

from clinic.audit import retention, seals
from clinic.audit.models import AccessEvent, AuditEvent, Purge
from clinic.audit.service import access_event
from clinic.core.tx import commit
from clinic.extensions import db
from tests.conftest import temp_app


@pytest.fixture(scope="module")
def rapp(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    log = tmp_path_factory.mktemp("retention") / "checkpoints.jsonl"
    with temp_app(backend, "retention", SEAL_WAIT_SECONDS=0.3, CHECKPOINT_LOG=str(log)) as application:
        with application.app_context():
            from clinic.auth.service import create_user
            from clinic.locations.service import create_location

            admin = create_user(
                actor=None, email="admin@retention.test", name="Admin", role="admin", password=uuid.uuid4().hex
            )
            create_location(
                actor=admin, name="Main", address="1 Main St", dea_registration="AR1234563", timezone="America/Chicago"
            )
            commit()
        yield application


def add_access(app: Flask, n: int, *, years_ago: int = 0) -> list[int]:
    """Rows written ``years_ago`` by the database's own clock (the one its guard reads)."""
    with app.app_context():
        at = retention.database_clock() - timedelta(days=365 * years_ago + 1)
        rows = []
        for i in range(n):
            row = access_event(
                user_id=None,
                action="GET old" if years_ago else "GET new",
                obj=f"user:{i}",
                outcome="allowed",
                status_code=200,
                client_addr="192.0.2.7",
                request_id=uuid.uuid4().hex,
            )
            rows.append({**row, "occurred_at": at} if years_ago else row)
        ids = [
            db.session.execute(AccessEvent.__table__.insert().returning(AccessEvent.id), r).scalar_one() for r in rows
        ]
        commit()
        return ids


def sql(app: Flask, statement: str) -> None:
    with app.app_context(), db.engine.connect() as conn:
        try:
            conn.execute(text(statement))
            conn.commit()
        finally:
            conn.rollback()


def cli(app: Flask, *args: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_a_young_row_is_deleted_by_no_path(rapp):
    (young,) = add_access(rapp, 1)
    with rapp.app_context():
        event = db.session.get(AccessEvent, young)
        db.session.delete(event)
        with pytest.raises(retention.RetentionError, match="SYS-02"):
            db.session.flush()
        db.session.rollback()
        audit_id = db.session.scalar(select(AuditEvent.id).limit(1))
    for statement in (
        f"DELETE FROM access_events WHERE id = {young}",
        f"DELETE FROM audit_events WHERE id = {audit_id}",
    ):
        with pytest.raises(DatabaseError, match="append-only"):
            sql(rapp, statement)
    # even under an open purge (an insider's own purges row), the database checks the age itself
    with rapp.app_context():
        now = retention.database_clock()
        db.session.rollback()  # SQLite: the session's BEGIN IMMEDIATE would hold the write lock
    with rapp.app_context(), db.engine.connect() as conn:
        conn.execute(
            Purge.__table__.insert(),
            {
                "stream": "access",
                "requested_at": now,
                "requested_by": "insider",
                "cutoff": now,
                "through_id": 10**9,
                "through_seal": 0,
                "rows": 0,
                "outcome": "done",
                "detail": "",
                "open": True,
            },
        )
        with pytest.raises(DatabaseError, match="retention"):
            conn.execute(text(f"DELETE FROM access_events WHERE id = {young}"))
        conn.rollback()
    with rapp.app_context():
        assert db.session.get(AccessEvent, young) is not None


def test_an_inventory_within_retention_cannot_be_deleted(rapp):
    with rapp.app_context():
        from clinic.auth.models import User
        from clinic.inventory.models import Count
        from clinic.locations.models import Location

        loc = db.session.scalar(select(Location.id))
        user = db.session.scalar(select(User.id))
        now = retention.database_clock()
        count_id = db.session.execute(
            Count.__table__.insert().returning(Count.id),
            {
                "location_id": loc,
                "kind": "initial",
                "business_hours": "opening",
                "actor_id": user,
                "occurred_at": now,
                "recorded_at": now,
            },
        ).scalar_one()
        commit()
    with pytest.raises(DatabaseError, match="retention"):
        sql(rapp, f"DELETE FROM counts WHERE id = {count_id}")


def test_purge_never_skips_a_young_seal(rapp):
    """Whole seals, oldest first: old rows sealed after young ones wait for the young ones' turn."""
    with rapp.app_context():
        seals.seal_all()  # everything so far (young) in its own seals
        commit()
    old = add_access(rapp, 3, years_ago=10)
    with rapp.app_context():
        seals.seal_all()
        commit()
    with pytest.raises(DatabaseError, match="clinic purge"):
        sql(rapp, f"DELETE FROM access_events WHERE id = {old[0]}")  # old, but not through the purge
    code, out = cli(rapp, "purge", "access-log")
    assert code == 0 and "nothing to purge" in out, out
    with rapp.app_context():
        assert db.session.scalar(select(AccessEvent.id).where(AccessEvent.id == old[0])) == old[0]
    code, out = cli(rapp, "ledger", "verify")
    assert code == 0, out


def test_purge_of_the_oldest_seals(backend, tmp_path):
    """A fresh database whose oldest seal holds only old rows: the purge removes exactly those."""
    with temp_app(backend, "purge", SEAL_WAIT_SECONDS=0.3, CHECKPOINT_LOG=str(tmp_path / "cp.jsonl")) as app:
        old = add_access(app, 3, years_ago=10)
        with app.app_context():
            seals.seal_all()
            commit()
        young = add_access(app, 2)
        with app.app_context():
            seals.seal_all()
            commit()
        code, out = cli(app, "purge", "access-log", "--dry-run")
        assert code == 0 and "would remove 3 rows" in out, out
        code, out = cli(app, "purge", "access-log")
        assert code == 0 and "removed 3 rows" in out, out
        with app.app_context():
            left = set(db.session.scalars(select(AccessEvent.id)))
            assert not left & set(old) and set(young) <= left
            tags = list(db.session.scalars(select(AuditEvent.tag)))
            assert "audit:log:purge" in tags
        code, out = cli(app, "ledger", "verify")
        assert code == 0 and "access log: " in out, out
        assert cli(app, "purge", "access-log")[1].startswith("access-log: nothing to purge")
        # a row forged into the purged range is found
        with app.app_context():
            row = access_event(
                user_id=None,
                action="GET forged",
                obj="",
                outcome="allowed",
                status_code=200,
                client_addr="192.0.2.7",
                request_id="f",
            )
            db.session.execute(AccessEvent.__table__.insert(), [{**row, "id": old[1]}])
            commit()
        code, out = cli(app, "ledger", "verify")
        assert code == 1 and "inserted into a purged range" in out, out


def test_a_legal_hold_refuses_the_purge_and_the_refusal_is_logged(rapp):
    with rapp.app_context():
        from clinic.locations.models import Location

        loc = db.session.scalar(select(Location))
        loc.jurisdiction = {**loc.jurisdiction, "legal_hold": True}
        commit()
    try:
        code, out = cli(rapp, "purge", "audit-trail")
        assert code == 1 and "REFUSED" in out and "legal hold" in out
        with rapp.app_context():
            run = db.session.scalar(select(Purge).order_by(Purge.id.desc()).limit(1))
            assert run.outcome == "refused" and run.rows == 0
            assert db.session.scalar(
                select(AuditEvent.id).where(
                    AuditEvent.tag == "audit:log:purge_refused", AuditEvent.subject_id == run.id
                )
            )
    finally:
        with rapp.app_context():
            loc = db.session.scalar(select(Location))
            loc.jurisdiction = {**loc.jurisdiction, "legal_hold": False}
            commit()


def test_the_ledger_purge_runs_and_the_inventory_purge_is_refused_and_logged(rapp):
    """The ledger is purged per location (tests/audit/test_ledger_purge.py): with nothing past
    retention here, each location's run is recorded as "nothing". Inventories are not purged by this
    version: the refusal is recorded and exits 1."""
    code, out = cli(rapp, "purge", "ledger")
    assert code == 0 and "nothing to purge" in out, out
    with rapp.app_context():
        run = db.session.scalar(select(Purge).order_by(Purge.id.desc()).limit(1))
        assert (run.stream, run.outcome) == ("ledger", "nothing")
    code, out = cli(rapp, "purge", "inventory")
    assert code == 1 and "REFUSED" in out
    with rapp.app_context():
        run = db.session.scalar(select(Purge).order_by(Purge.id.desc()).limit(1))
        assert (run.stream, run.outcome) == ("inventory", "refused")
        assert db.session.scalar(
            select(AuditEvent.id).where(AuditEvent.tag == "audit:log:purge_refused", AuditEvent.subject_id == run.id)
        )

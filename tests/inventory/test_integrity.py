"""Tamper evidence: the database refuses edits, and the verifier finds edits made around it."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from clinic.extensions import db
from clinic.inventory import integrity


def _verify(app, location_id):
    runner = app.test_cli_runner()
    return runner.invoke(args=["ledger", "verify", "--location", str(location_id)])


def _raw(app, *statements: str) -> None:
    with app.app_context(), db.engine.connect() as conn:
        try:
            for sql in statements:
                conn.execute(text(sql))
            conn.commit()
        finally:
            conn.rollback()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ledger_entries SET delta_ug = 0 WHERE location_id = {loc}",
        "DELETE FROM ledger_entries WHERE location_id = {loc}",
    ],
)
def test_ledger_rows_cannot_be_changed(app, clinic, sql):
    clinic.receive(count=1)
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(app, sql.format(loc=clinic.location_id))
    assert _verify(app, clinic.location_id).exit_code == 0


def test_truncate_is_refused(app, backend, clinic):
    sql = "TRUNCATE ledger_entries CASCADE" if backend == "postgresql" else "DELETE FROM ledger_entries"
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(app, sql)


def _bypass_triggers(backend: str, sql: str) -> list[str]:
    """What an insider with the table owner's rights could do: switch the triggers off around an edit."""
    if backend == "postgresql":
        return [
            "ALTER TABLE ledger_entries DISABLE TRIGGER USER",
            sql,
            "ALTER TABLE ledger_entries ENABLE TRIGGER USER",
        ]
    return [
        "DROP TRIGGER ledger_entries_no_update",
        "DROP TRIGGER ledger_entries_no_delete",
        sql,
        "CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries "
        "BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END",
        "CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries "
        "BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END",
    ]


@pytest.mark.parametrize(
    ("mutation", "expect_seq"),
    [
        ("UPDATE ledger_entries SET delta_ug = delta_ug - 1000 WHERE location_id = {loc} AND seq = 3", 3),
        ("UPDATE ledger_entries SET witness_id = NULL WHERE location_id = {loc} AND seq = 1", 1),
        ("UPDATE ledger_entries SET occurred_at = recorded_at WHERE location_id = {loc} AND seq = 2", 2),
        ("DELETE FROM ledger_entries WHERE location_id = {loc} AND seq = 2", 2),
        ("DELETE FROM ledger_entries WHERE location_id = {loc} AND seq = 4", 4),
    ],
)
def test_verify_names_the_first_bad_entry(app, backend, clinic, mutation, expect_seq):
    cid = clinic.receive(count=2).json["containers"][0]["id"]
    clinic.post(
        "/inventory/administrations", {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "10"}
    )
    assert _verify(app, clinic.location_id).exit_code == 0
    _raw(app, *_bypass_triggers(backend, mutation.format(loc=clinic.location_id)))
    result = _verify(app, clinic.location_id)
    assert result.exit_code == 1
    assert f"BROKEN at seq {expect_seq}" in result.output


def test_signed_checkpoint_detects_a_recomputed_tail(app, backend, clinic):
    """Deleting the newest entry and resetting the head passes the chain walk; the checkpoint does not."""
    clinic.receive(count=2)
    with app.app_context():
        made = integrity.sign_checkpoints()
        db.session.commit()
        assert [cp.seq for cp in made if cp.location_id == clinic.location_id] == [3]
    delete = f"DELETE FROM ledger_entries WHERE location_id = {clinic.location_id} AND seq = 3"
    _raw(app, *_bypass_triggers(backend, delete))
    with app.app_context():
        prev = db.session.execute(
            text(f"SELECT hash FROM ledger_entries WHERE location_id = {clinic.location_id} AND seq = 2")
        ).scalar()
        db.session.execute(
            text(
                f"UPDATE ledger_chains SET head_seq = 2, head_hash = '{prev}' WHERE location_id = {clinic.location_id}"
            )
        )
        db.session.commit()
    result = _verify(app, clinic.location_id)
    assert result.exit_code == 1
    assert "checkpoint" in result.output


def test_checkpoint_signature_is_ed25519_over_the_head(app, clinic):
    clinic.receive(count=1)
    with app.app_context():
        (cp,) = [c for c in integrity.sign_checkpoints() if c.location_id == clinic.location_id]
        db.session.commit()
        assert integrity.checkpoint_signature_ok(cp)
        cp.head_hash = "f" * 64  # in memory only
        assert not integrity.checkpoint_signature_ok(cp)
        db.session.rollback()
        assert integrity.sign_checkpoints() == [] or all(
            c.location_id != clinic.location_id for c in integrity.sign_checkpoints()
        )
        db.session.rollback()


def test_verify_all_locations_summary(app, clinic):
    clinic.receive(count=1)
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    # Other tests break their own chains on purpose in this shared database, so the exit code
    # speaks for all of them; this location's line must still say intact.
    assert f"location {clinic.location_id}: 2 entries intact" in result.output
    assert result.exit_code == (1 if "BROKEN" in result.output else 0)

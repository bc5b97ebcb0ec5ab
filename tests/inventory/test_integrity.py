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
        "UPDATE ledger_entries SET committed_record = NULL WHERE location_id = {loc}",
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


def test_entries_keep_the_committed_record_their_hash_covers(app, clinic):
    """Migration 0021: the append stores the record it hashed, byte for byte (an export sends it)."""
    from sqlalchemy import select

    from clinic.exports.verifier import canonical
    from clinic.inventory.chain import committed, record_body_hash
    from clinic.inventory.models import LedgerEntry

    cid = clinic.receive(count=1).json["containers"][0]["id"]
    clinic.post(
        "/inventory/administrations", {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "10"}
    )
    with app.app_context():
        entries = db.session.scalars(select(LedgerEntry).where(LedgerEntry.location_id == clinic.location_id)).all()
        assert len(entries) == 3
        for e in entries:
            record = canonical(committed(integrity.entry_fields(e), e.phi_salts or {}), 2)
            assert e.committed_record is not None and e.committed_record.encode() == record
            assert record_body_hash(record, e.prev_hash) == e.hash


@pytest.mark.parametrize(
    ("edit", "broken"),
    [
        # one byte of the record: the hash still matches the columns, the stored text does not
        ("replace(committed_record, '\"administration\"', '\"waste\"')", True),
        ("committed_record || ' '", True),
        ("NULL", False),  # an entry from before 0021: its record is rebuilt from the columns
    ],
)
def test_verify_names_an_edited_committed_record(app, backend, clinic, edit, broken):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    clinic.post(
        "/inventory/administrations", {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "10"}
    )
    loc = clinic.location_id
    sql = f"UPDATE ledger_entries SET committed_record = {edit} WHERE location_id = {loc} AND seq = 3"
    _raw(app, *_bypass_triggers(backend, sql))
    result = _verify(app, loc)
    if broken:
        assert result.exit_code == 1, result.output
        assert "BROKEN at seq 3" in result.output
        assert "stored committed record does not match its content" in result.output
    else:
        assert result.exit_code == 0, result.output


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


# --- issue 8: the verifier pins the key, keeps checkpoints outside the database, checks balances ----


def _checkpoint(app) -> None:
    result = app.test_cli_runner().invoke(args=["ledger", "checkpoint"])
    assert result.exit_code == 0, result.output


def _recompute_from(app, backend, location_id: int, seq: int, edit: str) -> None:
    """An insider's full rewrite: edit an entry, then recompute every hash after it (and the
    committed record the entry keeps, migration 0021) and the head."""
    from clinic.inventory.chain import committed_record, entry_hash
    from clinic.inventory.integrity import entry_fields
    from clinic.inventory.models import LedgerEntry

    _raw(app, *_bypass_triggers(backend, edit))
    with app.app_context():
        entries = db.session.query(LedgerEntry).filter_by(location_id=location_id).order_by(LedgerEntry.seq).all()
        fixes, prev = [], "0" * 64
        for e in entries:
            fields = {**entry_fields(e), "prev_hash": prev}
            new = entry_hash(fields)
            if e.seq >= seq:
                # (quoted for SQL, its colons escaped for text(): not bind parameters)
                text_ = committed_record(fields).decode().replace("'", "''").replace(":", "\\:")
                record = "NULL" if e.phi_salts is None else f"'{text_}'"
                fixes.append(
                    f"UPDATE ledger_entries SET prev_hash = '{prev}', hash = '{new}', committed_record = {record} "
                    f"WHERE id = {e.id}"
                )
            prev = new
        db.session.rollback()
    for sql in fixes:
        _raw(app, *_bypass_triggers(backend, sql))
    _raw(app, f"UPDATE ledger_chains SET head_hash = '{prev}' WHERE location_id = {location_id}")


def test_verify_names_a_checkpoint_resigned_with_another_key(app, backend, clinic):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from clinic.core.time import utcnow
    from clinic.inventory.chain import format_time
    from clinic.inventory.models import Checkpoint

    clinic.receive(count=2)
    with app.app_context():
        integrity.sign_checkpoints()
        db.session.commit()  # (not through the unit of work: no copy outside the database)
    loc = clinic.location_id
    _recompute_from(
        app, backend, loc, 2, f"UPDATE ledger_entries SET reason = 'forged' WHERE location_id = {loc} AND seq = 2"
    )
    assert "does not match" in _verify(app, loc).output  # the honest checkpoint catches the rewrite
    # ...so the insider deletes it and signs the rewritten head with a key of their own.
    forger = Ed25519PrivateKey.generate()
    _raw(
        app,
        *_bypass_triggers_on(
            backend, "ledger_checkpoints", f"DELETE FROM ledger_checkpoints WHERE location_id = {loc}"
        ),
    )
    with app.app_context():
        head = db.session.execute(
            text(f"SELECT head_seq, head_hash FROM ledger_chains WHERE location_id = {loc}")
        ).one()
        now = utcnow()
        message = integrity.checkpoint_message(loc, head.head_seq, head.head_hash, format_time(now))
        from cryptography.hazmat.primitives import serialization

        db.session.add(
            Checkpoint(
                location_id=loc,
                seq=head.head_seq,
                head_hash=head.head_hash,
                signed_at=now,
                public_key=forger.public_key()
                .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
                .hex(),
                signature=forger.sign(message).hex(),
            )
        )
        db.session.commit()
    result = _verify(app, loc)
    assert result.exit_code == 1
    assert f"BROKEN at seq {head.head_seq}" in result.output and "signed by another key" in result.output
    # Trusting the forger's key on purpose is the only way it passes.
    pem = app.instance_path + f"/forger-{loc}.hex"
    with open(pem, "w") as fh:
        fh.write(forger.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex())
    trusted = app.test_cli_runner().invoke(args=["ledger", "verify", "--location", str(loc), "--public-key", pem])
    assert trusted.exit_code == 0, trusted.output


def _bypass_triggers_on(backend: str, table: str, sql: str) -> list[str]:
    if backend == "postgresql":
        return [f"ALTER TABLE {table} DISABLE TRIGGER USER", sql, f"ALTER TABLE {table} ENABLE TRIGGER USER"]
    return [
        f"DROP TRIGGER {table}_no_delete",
        sql,
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END",
    ]


def test_verify_names_a_cut_tail_with_its_checkpoints(app, backend, clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    _checkpoint(app)
    clinic.post(
        "/inventory/administrations", {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "10"}
    )
    _checkpoint(app)
    loc = clinic.location_id
    assert _verify(app, loc).exit_code == 0
    # The insider removes the draw, its checkpoint, and puts the head and the vial back as they were.
    _raw(app, *_bypass_triggers(backend, f"DELETE FROM ledger_entries WHERE location_id = {loc} AND seq = 3"))
    _raw(
        app,
        *_bypass_triggers_on(
            backend, "ledger_checkpoints", f"DELETE FROM ledger_checkpoints WHERE location_id = {loc} AND seq = 3"
        ),
    )
    with app.app_context():
        prev = db.session.execute(
            text(f"SELECT hash FROM ledger_entries WHERE location_id = {loc} AND seq = 2")
        ).scalar()
    _raw(
        app,
        *_without_balance_guard(
            backend,
            f"UPDATE ledger_chains SET head_seq = 2, head_hash = '{prev}' WHERE location_id = {loc}",
            f"UPDATE containers SET balance_ug = initial_ug, status = 'sealed' WHERE id = {cid}",
        ),
    )
    result = _verify(app, loc)
    assert result.exit_code == 1, result.output
    assert "BROKEN at seq 3" in result.output and "tail was cut" in result.output


def _without_balance_guard(backend: str, *sql: str) -> list[str]:
    if backend == "postgresql":
        return ["SET session_replication_role = replica", *sql, "SET session_replication_role = DEFAULT"]
    return list(sql)


def test_verify_names_an_edited_stored_balance(app, backend, clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    clinic.post(
        "/inventory/administrations", {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "10"}
    )
    _raw(
        app, *_without_balance_guard(backend, f"UPDATE containers SET balance_ug = balance_ug + 5000 WHERE id = {cid}")
    )
    result = _verify(app, clinic.location_id)
    assert result.exit_code == 1
    assert "BROKEN at seq 3" in result.output and f"container {cid}'s stored balance 495 mg" in result.output


def test_verify_names_an_edited_stored_status(app, backend, clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    _raw(app, f"UPDATE containers SET status = 'disposed' WHERE id = {cid}")
    result = _verify(app, clinic.location_id)
    assert result.exit_code == 1 and "stored status disposed is not the chain's sealed" in result.output

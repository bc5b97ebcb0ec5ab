"""The restore drill (issue 14), on SQLite and PostgreSQL: a clinic's day is backed up with
``clinic backup``, restored with ``clinic restore`` into a fresh database, and the copy is the same
clinic: the same row counts, chain heads and signed checkpoints, ``clinic ledger verify`` passing,
the API reading it. A copy that was altered after it was written is refused; one taken of a
database whose ledger was edited (a row removed, a row altered) restores but fails verification.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import inspect, text

from clinic.extensions import db
from clinic.system import backup
from tests.conftest import bearer, dispose, make_app
from tests.ops.conftest import cli, fresh_app
from tests.ops.seed import seed_clinic, user_maker
from tests.visits.conftest import ward_day


def facts(app: Flask) -> dict[str, Any]:
    with app.app_context(), db.engine.connect() as conn:
        return backup.read_facts(conn)


@pytest.fixture(scope="module")
def seeded(app: Flask) -> Any:
    client = app.test_client()
    return seed_clinic(app, client, user_maker(app), ward_day())


@pytest.fixture(scope="module")
def good_backup(app: Flask, seeded: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("backups") / "clinic.backup"
    result = cli(app, "backup", "-o", str(path))
    assert result.exit_code == 0, result.output
    assert f"backup {path}" in result.output
    return path


def manifest_of(path: Path) -> dict[str, Any]:
    return json.loads(backup.manifest_path(path).read_text())


def test_the_manifest_describes_the_clinic(app: Flask, seeded: Any, good_backup: Path) -> None:
    manifest = manifest_of(good_backup)
    now = facts(app)
    assert manifest["format"] == "clinic-backup/1"
    assert manifest["backend"] == app.config["SQLALCHEMY_DATABASE_URI"].split(":")[0].split("+")[0]
    assert manifest["schema_revision"] == backup.code_head() == now["schema_revision"]
    assert manifest["tables"] == now["tables"]
    for table in ("ledger_entries", "access_events", "audit_events", "visit_doses", "ledger_checkpoints"):
        assert manifest["tables"][table] > 0, table
    (chain,) = [c for c in manifest["ledger"] if c["location_id"] == seeded.location_id]
    entries = seeded.client.get(
        "/api/v1/inventory/ledger",
        query_string={"location_id": seeded.location_id, "limit": 500},
        headers=seeded.nurse_h,
    ).json["items"]
    assert chain["head_seq"] == len(entries) == max(e["seq"] for e in entries)
    checkpoint = chain["last_checkpoint"]
    assert checkpoint and checkpoint["seq"] == chain["head_seq"] - 1  # the receipt after it is not signed yet
    assert manifest["file"]["sha256"] == backup._sha256(good_backup)
    with app.app_context():
        assert backup.signature_problem(manifest) is None
    assert oct(good_backup.stat().st_mode & 0o777) == "0o600", "a backup holds PHI: owner-only"


def test_restore_into_a_fresh_database_is_the_same_clinic(
    app: Flask, backend: str, seeded: Any, good_backup: Path
) -> None:
    with fresh_app(backend, "restored") as target:
        result = cli(target, "restore", str(good_backup))
        assert result.exit_code == 0, result.output
        assert "every chain verifies" in result.output
        restored, manifest = facts(target), manifest_of(good_backup)
        assert restored == {k: manifest[k] for k in restored}
        assert restored["ledger"] == facts(app)["ledger"]
        verified = cli(target, "ledger", "verify")
        assert verified.exit_code == 0, verified.output
        assert all(f"head {c['head_hash'][:16]}" in verified.output for c in manifest["ledger"])
        # The API reads the restored clinic: the same balances, the same ledger.
        client = target.test_client()
        nurse_h = bearer(target, seeded.nurse)
        query = {"location_id": seeded.location_id}
        for path in ("/api/v1/inventory/balances", "/api/v1/inventory/ledger"):
            restored = client.get(path, query_string=query, headers=nurse_h)
            original = seeded.client.get(path, query_string=query, headers=seeded.nurse_h)
            assert restored.status_code == original.status_code == 200
            assert restored.json == original.json
        # A password set before the backup still signs in after it.
        signed_in = client.post(
            "/api/v1/auth/tokens", json={"email": seeded.nurse.email, "password": seeded.nurse.password}
        )
        assert signed_in.status_code == 201, signed_in.json


def test_restore_refuses_a_database_that_is_not_empty(app: Flask, good_backup: Path) -> None:
    before = facts(app)
    result = app.test_cli_runner().invoke(args=["restore", str(good_backup)])
    assert result.exit_code != 0
    assert "nothing restored" in result.output and "not empty" in result.output
    assert facts(app) == before


def _altered_copy(source: Path, folder: Path) -> Path:
    copy = folder / "altered.backup"
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    backup.manifest_path(copy).write_text(backup.manifest_path(source).read_text())
    return copy


def test_a_backup_altered_after_it_was_written_is_refused(backend: str, good_backup: Path, tmp_path: Path) -> None:
    copy = _altered_copy(good_backup, tmp_path)
    forged = tmp_path / "forged.backup"
    forged.write_bytes(good_backup.read_bytes())
    manifest = manifest_of(good_backup)
    manifest["tables"]["ledger_entries"] -= 1  # the manifest edited to match a removed row
    backup.manifest_path(forged).write_text(json.dumps(manifest))
    with fresh_app(backend, "refused") as target:
        for path, why in ((copy, "SHA-256"), (forged, "signature")):
            result = target.test_cli_runner().invoke(args=["restore", str(path)])
            assert result.exit_code != 0
            assert "nothing restored" in result.output and why in result.output, result.output
            with target.app_context():
                assert backup.database_contents(db.engine.url) is None, "the target was written to"


def test_a_backup_signed_by_another_key_needs_that_key_named(backend: str, good_backup: Path, tmp_path: Path) -> None:
    """Restoring on a new machine (another signing key) is refused until IT names the key it trusts."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    other = Ed25519PrivateKey.generate()
    key = other.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    manifest = manifest_of(good_backup)
    manifest["signature"] = {
        "algorithm": "ed25519",
        "public_key": key,
        "value": other.sign(backup._canonical(manifest)).hex(),
    }
    foreign = tmp_path / "foreign.backup"
    foreign.write_bytes(good_backup.read_bytes())
    backup.manifest_path(foreign).write_text(json.dumps(manifest))
    with fresh_app(backend, "foreign") as target:
        refused = target.test_cli_runner().invoke(args=["restore", str(foreign)])
        assert refused.exit_code != 0 and "--public-key" in refused.output and key in refused.output
        trusted = cli(target, "restore", str(foreign), "--public-key", key)
        assert trusted.exit_code == 0, trusted.output


def _tamper(app: Flask, backend: str, location_id: int, how: str) -> int:
    """Edit one middle ledger entry as someone holding the database itself would (triggers off)."""
    with app.app_context():
        # A middle entry no other row points to (a dangling reference would give the removal away
        # before the chain did; the point here is the chain).
        inspector = inspect(db.engine)
        referenced = [
            f"SELECT {fk['constrained_columns'][0]} FROM {table} WHERE {fk['constrained_columns'][0]} IS NOT NULL"
            for table in inspector.get_table_names()
            for fk in inspector.get_foreign_keys(table)
            if fk["referred_table"] == "ledger_entries"
        ]
        seqs = db.session.scalars(
            text(
                "SELECT seq FROM ledger_entries WHERE location_id = :l AND id NOT IN "
                f"({' UNION '.join(referenced)}) ORDER BY seq"
            ),
            {"l": location_id},
        ).all()
        db.session.rollback()
        seq = seqs[len(seqs) // 2]
        statement = {
            "removed": "DELETE FROM ledger_entries WHERE location_id = :l AND seq = :s",
            "altered": "UPDATE ledger_entries SET reason = 'nothing to see' WHERE location_id = :l AND seq = :s",
        }[how]
        if backend == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("SET LOCAL session_replication_role = replica"))  # superuser: no triggers, no FKs
                assert conn.execute(text(statement), {"l": location_id, "s": seq}).rowcount == 1
        else:
            conn = sqlite3.connect(db.engine.url.database)
            with conn:
                for trigger in ("ledger_entries_no_update", "ledger_entries_no_delete"):
                    conn.execute(f"DROP TRIGGER {trigger}")
                assert conn.execute(statement.replace(":l", "?").replace(":s", "?"), (location_id, seq)).rowcount == 1
            conn.close()
        db.engine.dispose()
    return int(seq)


@pytest.mark.parametrize("how", ["removed", "altered"])
def test_a_backup_of_an_edited_ledger_restores_but_fails_verification(
    backend: str, seeded: Any, good_backup: Path, tmp_path: Path, how: str
) -> None:
    edited = tmp_path / f"{how}.backup"
    with fresh_app(backend, f"edit{how}") as scratch:
        assert cli(scratch, "restore", str(good_backup)).exit_code == 0
        seq = _tamper(scratch, backend, seeded.location_id, how)
        taken = cli(scratch, "backup", "-o", str(edited))
        assert taken.exit_code == 0, taken.output  # a backup is taken whatever the data: it may be all there is
    with fresh_app(backend, f"after{how}") as target:
        result = target.test_cli_runner().invoke(args=["restore", str(edited)])
        assert result.exit_code == 1, result.output
        assert f"ledger BROKEN at seq {seq}" in result.output
        verified = target.test_cli_runner().invoke(args=["ledger", "verify"])
        assert verified.exit_code == 1
        assert f"location {seeded.location_id}: BROKEN at seq {seq}" in verified.output
        problem = "is missing" if how == "removed" else "does not match its hash"
        assert problem in verified.output


def test_restore_names_what_the_manifest_says_that_the_database_does_not(
    backend: str, good_backup: Path, tmp_path: Path
) -> None:
    """A difference between the restored rows and the signed manifest is reported even where no
    hash chain covers the table (the access log)."""
    manifest = manifest_of(good_backup)
    manifest["tables"]["access_events"] += 1
    shifted = tmp_path / "counted.backup"
    shifted.write_bytes(good_backup.read_bytes())
    with fresh_app(backend, "counted") as target:
        with target.app_context():
            backup._sign(manifest)  # as clinic backup would have, had the count been so
        backup.manifest_path(shifted).write_text(json.dumps(manifest))
        result = target.test_cli_runner().invoke(args=["restore", str(shifted)])
        assert result.exit_code == 1, result.output
        expected = manifest["tables"]["access_events"]
        assert f"table access_events: {expected - 1} rows, the backup says {expected}" in result.output


def test_a_backup_taken_while_the_clinic_writes_is_one_moment(
    app: Flask, backend: str, seeded: Any, tmp_path: Path
) -> None:
    """Receipts keep arriving while ``clinic backup`` runs: the manifest and the copy are the same
    moment (PostgreSQL: pg_dump in the manifest's snapshot), so the restore matches it and verifies."""
    import threading
    from datetime import timedelta

    import time_machine

    from tests.clock import at_local
    from tests.visits.conftest import TZ

    stop, written, failures = threading.Event(), [], []

    def receive(headers: dict[str, str]) -> None:
        client = app.test_client()
        while not stop.is_set():
            resp = client.post(
                "/api/v1/inventory/receipts",
                headers=headers,
                json={
                    "storage_site_id": seeded.safe_id,
                    "drug_id": seeded.vial_drug,
                    "lot_number": f"LIVE{len(written)}",
                    "expires_on": (seeded.day + timedelta(days=700)).isoformat(),
                    "container_count": 1,
                    "supplier_name": "Acme Wholesale",
                    "supplier_address": "1 Supply Rd, Newark NJ",
                    "supplier_dea_registration": "AB1234563",
                    "invoice_number": f"LIVE-{len(written)}",
                },
            )
            (written if resp.status_code == 201 else failures).append(resp.status_code)

    path = tmp_path / "live.backup"
    # After the seeded day, so the new receipts come later in the chain than everything before.
    with time_machine.travel(at_local(seeded.day + timedelta(days=1), "08:00", TZ), tick=True):
        writer = threading.Thread(target=receive, args=(bearer(app, seeded.nurse),))
        writer.start()
        try:
            while len(written) < 3:
                assert not failures, failures
                threading.Event().wait(0.01)
            taken = cli(app, "backup", "-o", str(path))
            during = len(written)
            while len(written) < during + 3:
                assert not failures, failures
                threading.Event().wait(0.01)
        finally:
            stop.set()
            writer.join()
    assert taken.exit_code == 0, taken.output
    assert not failures, failures
    with fresh_app(backend, "live") as target:
        result = cli(target, "restore", str(path))
        assert result.exit_code == 0, result.output
        assert "every chain verifies" in result.output
    assert manifest_of(path)["tables"]["ledger_entries"] < facts(app)["tables"]["ledger_entries"]


def test_restore_will_not_replay_a_leftover_write_ahead_log(good_backup: Path, tmp_path: Path) -> None:
    if backup.manifest_path(good_backup).exists() and manifest_of(good_backup)["backend"] != "sqlite":
        return  # SQLite's own files
    target = tmp_path / "clinic.sqlite"
    (tmp_path / "clinic.sqlite-wal").write_bytes(b"\0" * 64)
    app = make_app(f"sqlite:///{target}")
    try:
        result = app.test_cli_runner().invoke(args=["restore", str(good_backup)])
        assert result.exit_code != 0 and "clinic.sqlite-wal is left over" in result.output, result.output
        assert not target.exists() or target.stat().st_size == 0
    finally:
        dispose(app)

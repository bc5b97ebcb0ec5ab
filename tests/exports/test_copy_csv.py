"""On PostgreSQL a CSV ledger export's rows are built by COPY (clinic.exports.copysql): its files must
be byte for byte those the Python writer produces, for every kind, profile and filter it takes, and a
row SQL cannot spell falls back to the Python writer with nothing of the COPY left in the file."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tests.exports.conftest import period


def _bundle(shop, tmp: Path, kind: str, profile: str, **filters) -> dict[str, bytes]:
    from clinic.core.tx import commit
    from clinic.exports import writer

    since, until = period()
    with shop.app.app_context():
        spec = writer.Spec(
            kind=kind,
            file_format="csv",
            since=datetime.fromisoformat(since),
            until=datetime.fromisoformat(until),
            profile=profile,
            location_id=shop.location_id,
            generated_by={"name": "test"},
            **filters,
        )
        out = tmp / f"{kind}.csv"
        result = writer.write(spec, out)
        commit()
    files = {p.name[len(out.name) :]: p.read_bytes() for p in tmp.glob(out.name + "*") if "manifest" not in p.name}
    manifest = result.manifest
    files["rows+names"] = repr((manifest["rows"], manifest["names"], sorted(result.patients))).encode()
    return files


CASES = [
    ("dispensing-log", "full", {}),
    ("dispensing-log", "dea-inspection", {}),
    ("dispensing-log", "no-phi", {}),
    ("waste-log", "full", {}),
    ("waste-log", "dea-inspection", {"schedule": "CIII"}),
    ("receiving-log", "no-phi", {}),
    ("ledger", "full", {}),
    ("ledger", "dea-inspection", {"schedule": "CII"}),
    ("disposal-log", "full", {}),
]


@pytest.mark.parametrize(("kind", "profile", "filters"), CASES, ids=[f"{k}-{p}-{f}" for k, p, f in CASES])
def test_copy_writes_the_python_writers_bytes(shop, tmp_path, monkeypatch, kind, profile, filters):
    from clinic.exports import writer

    real = writer._copy_csv
    results: list[object] = []
    monkeypatch.setattr(writer, "_copy_csv", lambda *a: results.append(real(*a)) or results[-1])
    (tmp_path / "copy").mkdir()
    copied = _bundle(shop, tmp_path / "copy", kind, profile, **filters)
    if kind != "ledger":  # the whole ledger holds counts (lines: arrays of objects): those fall back
        assert (results[0] is not None) == (_backend(shop) == "postgresql"), "COPY fell back"
    calls: list[int] = []
    monkeypatch.setattr(writer, "_copy_csv", lambda *a: calls.append(1))
    (tmp_path / "python").mkdir()
    python = _bundle(shop, tmp_path / "python", kind, profile, **filters)
    monkeypatch.setattr(writer, "_copy_csv", real)
    assert calls, "the Python path was not taken"
    assert copied.keys() == python.keys()
    for name in python:
        assert copied[name] == python[name], name


def test_copy_is_taken_on_postgresql(shop, tmp_path, monkeypatch):
    from clinic.exports import writer

    taken: list[object] = []
    real = writer._copy_csv

    def spy(*args):
        result = real(*args)
        taken.append(result)
        return result

    monkeypatch.setattr(writer, "_copy_csv", spy)
    _bundle(shop, tmp_path, "dispensing-log", "full")
    assert taken and (taken[0] is not None) == (_backend(shop) == "postgresql")


def _backend(shop) -> str:
    with shop.app.app_context():
        from clinic.extensions import db

        return db.engine.dialect.name


def test_a_row_sql_cannot_spell_falls_back_to_python(shop, tmp_path, monkeypatch, caplog):
    """A failing COPY (here: every row refused, as a float in details would be) rolls back to its
    savepoint and leaves the file as the Python writer writes it, header once. The log says why by
    SQLSTATE only: the driver's message quotes the value it could not read, which may be PHI."""
    from clinic.exports import copysql, writer

    (tmp_path / "python").mkdir()
    monkeypatch.setattr(writer, "_copy_csv", lambda *a: None)
    python = _bundle(shop, tmp_path / "python", "dispensing-log", "full")
    monkeypatch.undo()
    monkeypatch.setattr(
        copysql, "_phi_json", lambda allowed, shapes: "(('clinic-export-fallback ' || e.seq)::int)::text"
    )
    (tmp_path / "fallback").mkdir()
    with caplog.at_level("INFO"):
        fallback = _bundle(shop, tmp_path / "fallback", "dispensing-log", "full")
    assert fallback == python
    said = [r.getMessage() for r in caplog.records if "rows written in Python" in r.getMessage()]
    on_postgresql = _backend(shop) == "postgresql"  # SQLite has no COPY: nothing fell back
    assert said == (["export: rows written in Python (SQLSTATE 22P02)"] if on_postgresql else [])


def _forget_records(shop) -> None:
    """Entries as written before migration 0021 (no stored record): every other one of the first
    half of the chain, so the COPY meets rows without a record among rows with one, then rows that
    all have it. The triggers are switched off around the edit, as only a migration could write."""
    from sqlalchemy import text

    from clinic.extensions import db

    with shop.app.app_context(), db.engine.connect() as conn:
        loc = shop.location_id
        (head,) = conn.execute(text(f"SELECT max(seq) FROM ledger_entries WHERE location_id = {loc}")).one()
        forget = (
            f"UPDATE ledger_entries SET committed_record = NULL WHERE location_id = {loc} "
            f"AND seq <= {head // 2} AND seq % 2 = 1"
        )
        if db.engine.dialect.name == "postgresql":
            statements = [
                "ALTER TABLE ledger_entries DISABLE TRIGGER USER",
                forget,
                "ALTER TABLE ledger_entries ENABLE TRIGGER USER",
            ]
        else:
            statements = [
                "DROP TRIGGER ledger_entries_no_update",
                forget,
                "CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries "
                "BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END",
            ]
        for sql in statements:
            conn.execute(text(sql))
        conn.commit()
        kept = conn.execute(
            text(f"SELECT count(*), count(committed_record) FROM ledger_entries WHERE location_id = {loc}")
        ).one()
    assert 0 < kept[1] < kept[0], kept


OLD_AND_NEW = [
    ("dispensing-log", "full", {}),
    ("dispensing-log", "no-phi", {}),
    ("waste-log", "dea-inspection", {}),
    ("ledger", "full", {}),
]


@pytest.mark.parametrize(("kind", "profile", "filters"), OLD_AND_NEW, ids=[f"{k}-{p}" for k, p, _ in OLD_AND_NEW])
def test_entries_without_a_stored_record_are_rebuilt_byte_for_byte(shop, tmp_path, monkeypatch, kind, profile, filters):
    """Entries from before 0021 have their record rebuilt from the columns, the others send the one
    they keep: the same bytes as the Python writer either way, and the chain still verifies."""
    _forget_records(shop)
    test_copy_writes_the_python_writers_bytes(shop, tmp_path, monkeypatch, kind, profile, filters)
    result = shop.app.test_cli_runner().invoke(args=["ledger", "verify", "--location", str(shop.location_id)])
    assert result.exit_code == 0, result.output


def test_a_summary_that_missed_rows_is_counted_again_in_the_transaction(shop, tmp_path, monkeypatch):
    """The rows' summary is read on another connection while the COPY runs; one that does not see
    every row (entries this transaction wrote) is read again on the export's own connection."""
    from clinic.exports import writer

    (tmp_path / "python").mkdir()
    monkeypatch.setattr(writer, "_copy_csv", lambda *a: None)
    python = _bundle(shop, tmp_path / "python", "dispensing-log", "full")
    monkeypatch.undo()
    monkeypatch.setattr(writer, "_in_background", lambda bind, query: lambda: [])
    (tmp_path / "copy").mkdir()
    assert _bundle(shop, tmp_path / "copy", "dispensing-log", "full") == python

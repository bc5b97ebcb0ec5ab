"""Seals over the access log and audit trail (SYS-05, HIP-04): ranges are sealed only once final, and
``clinic ledger verify`` names every tampering: an edited, deleted or inserted row, a re-signed or
removed seal. Each module gets its own database: a tampered log must not leak into other tests."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flask import Flask
from sqlalchemy import func, select, text

from clinic.audit import sealform, seals
from clinic.audit.models import AccessEvent, LogSeal
from clinic.audit.service import access_event, log_access, record
from clinic.audit.tags import Tag
from clinic.core.tx import commit
from clinic.extensions import db
from tests.conftest import temp_app


@pytest.fixture(scope="module")
def sapp(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    log = tmp_path_factory.mktemp("seals") / "checkpoints.jsonl"
    with temp_app(backend, "seals", SEAL_WAIT_SECONDS=0.3, CHECKPOINT_LOG=str(log)) as application:
        yield application


def write_access(app: Flask, n: int) -> None:
    with app.app_context():
        for i in range(n):
            log_access(
                access_event(
                    user_id=None,
                    action=f"GET x.{i}",
                    obj=f"user:{i}",
                    outcome="allowed",
                    status_code=200,
                    client_addr="192.0.2.1",
                    request_id=uuid.uuid4().hex,
                )
            )
        commit()


def write_audit(app: Flask, n: int) -> None:
    with app.app_context():
        for i in range(n):
            record(actor=None, tag=Tag.auth_user_create, subject=("user", i), data={"n": i, "note": "é"})
        commit()


def seal(app: Flask, **kwargs) -> list[tuple[str, int, int, int]]:  # type: ignore[no-untyped-def]
    with app.app_context():
        made = seals.seal_all(**kwargs)
        out = [(s.stream, s.seq, s.first_id, s.last_id) for s in made]
        commit()
        return out


def verify(app: Flask) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    return result.exit_code, result.output


def raw(app: Flask, backend: str, table: str, *statements: str, params: dict | None = None) -> None:
    """What an insider with the owner's rights can do: switch the table's triggers off around an edit."""
    with app.app_context(), db.engine.connect() as conn:
        if backend == "postgresql":
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            for sql in statements:
                conn.execute(text(sql), params or {})
            conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
        else:
            triggers = conn.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"), {"t": table}
            ).all()
            for name, _ in triggers:
                conn.execute(text(f"DROP TRIGGER {name}"))
            for sql in statements:
                conn.execute(text(sql), params or {})
            for _, sql in triggers:
                conn.execute(text(sql))
        conn.commit()


def test_rows_are_sealed_in_ranges_and_verify(sapp):
    write_access(sapp, 5)
    write_audit(sapp, 3)
    made = seal(sapp, max_rows=2)
    access = [m for m in made if m[0] == "access"]
    assert len(access) >= 3 and all(m[1] == i + 1 for i, m in enumerate(access))
    # contiguous ranges: each seal starts where the one before ended
    assert all(b[2] == a[3] + 1 for a, b in itertools.pairwise(access))
    assert seal(sapp) == []  # nothing new: no empty seals
    code, out = verify(sapp)
    assert code == 0, out
    assert "access log:" in out and "audit trail:" in out and "0 not yet sealed" in out


def test_range_root_is_rfc6962():
    import hashlib

    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
    node = hashlib.sha256(b"\x01" + leaves[0] + leaves[1]).digest()
    assert sealform.range_root(leaves) == hashlib.sha256(b"\x01" + node + leaves[2]).hexdigest()
    assert sealform.range_root(leaves[:1]) == leaves[0].hex()


def test_a_row_digest_has_one_spelling_of_time_whatever_the_year():
    from datetime import UTC, datetime, timedelta, timezone

    for at in (datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)):
        row = {"id": 7, "occurred_at": at, "tag": "t", "data": {"b": 1, "a": "é"}}
        same = [
            {**row, "occurred_at": at.isoformat()},
            {**row, "occurred_at": at.replace(tzinfo=None)},
            {**row, "data": {"a": "é", "b": 1}},
        ]
        if at.year == 1:
            same.append({**row, "occurred_at": at.astimezone(timezone(timedelta(hours=5)))})
        assert {sealform.row_digest("audit", r) for r in same} == {sealform.row_digest("audit", row)}
        assert sealform.row_digest("audit", {**row, "id": 8}) != sealform.row_digest("audit", row)
        assert sealform.format_time(at).startswith(f"{at.year:04d}-")


def _first_sealed(app: Flask, stream: str = "access") -> dict:
    with app.app_context():
        s = db.session.scalar(select(LogSeal).where(LogSeal.stream == stream).order_by(LogSeal.seq).limit(1))
        row = (
            db.session.execute(
                select(AccessEvent.__table__).where(AccessEvent.id >= s.first_id).order_by(AccessEvent.id).limit(1)
            )
            .mappings()
            .one()
        )
        return dict(row)


@pytest.fixture
def sealed(sapp):
    write_access(sapp, 4)
    write_audit(sapp, 2)
    seal(sapp, max_rows=2)
    code, out = verify(sapp)
    assert code == 0, out
    return sapp


def test_an_edited_row_is_named(sealed, backend):
    row = _first_sealed(sealed)
    raw(sealed, backend, "access_events", f"UPDATE access_events SET outcome = 'denied' WHERE id = {row['id']}")
    try:
        code, out = verify(sealed)
        assert code == 1 and "access log: BROKEN at seal 1" in out and "a row was edited" in out
    finally:
        raw(
            sealed,
            backend,
            "access_events",
            f"UPDATE access_events SET outcome = '{row['outcome']}' WHERE id = {row['id']}",
        )
    assert verify(sealed)[0] == 0


def test_a_deleted_row_is_named(sealed, backend):
    row = _first_sealed(sealed)
    raw(sealed, backend, "access_events", f"DELETE FROM access_events WHERE id = {row['id']}")
    try:
        code, out = verify(sealed)
        assert code == 1 and "1 row(s) deleted" in out
    finally:
        with sealed.app_context():
            db.session.execute(AccessEvent.__table__.insert(), [row])
            commit()
    assert verify(sealed)[0] == 0


def test_an_inserted_row_is_named(sapp, backend):
    # A range with a gap (an id a rolled-back request took), sealed; then a row forged into the gap.
    with sapp.app_context():
        top = db.session.scalar(select(func.max(AccessEvent.id))) or 0
        row = access_event(
            user_id=None,
            action="GET x",
            obj="",
            outcome="allowed",
            status_code=200,
            client_addr="192.0.2.1",
            request_id="gap",
        )
        db.session.execute(AccessEvent.__table__.insert(), [{**row, "id": top + 2}])
        if backend == "postgresql":
            db.session.execute(text("SELECT setval(pg_get_serial_sequence('access_events', 'id'), :v)"), {"v": top + 2})
        commit()
    seal(sapp)
    with sapp.app_context():  # inserts need no trigger switched off: the log is append-only, not closed
        db.session.execute(AccessEvent.__table__.insert(), [{**row, "id": top + 1, "action": "GET forged"}])
        commit()
    try:
        code, out = verify(sapp)
        assert code == 1 and "1 row(s) inserted" in out, out
    finally:
        raw(sapp, backend, "access_events", f"DELETE FROM access_events WHERE id = {top + 1}")
    assert verify(sapp)[0] == 0


def _seal_row(app: Flask, seq: int | None = None) -> dict:
    with app.app_context():
        q = select(LogSeal.__table__).where(LogSeal.stream == "access")
        q = q.where(LogSeal.seq == seq) if seq else q.order_by(LogSeal.seq.desc()).limit(1)
        return dict(db.session.execute(q).mappings().one())


def test_a_resigned_seal_is_named(sealed, backend):
    s = _seal_row(sealed, 1)
    other = Ed25519PrivateKey.generate()
    msg = sealform.seal_message(s)
    pub = other.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    raw(
        sealed,
        backend,
        "log_seals",
        "UPDATE log_seals SET public_key = :k, signature = :s WHERE id = :i",
        params={"k": pub, "s": other.sign(msg).hex(), "i": s["id"]},
    )
    try:
        code, out = verify(sealed)
        assert code == 1 and "seal 1 is signed by another key" in out and "re-signed" in out
    finally:
        raw(
            sealed,
            backend,
            "log_seals",
            "UPDATE log_seals SET public_key = :k, signature = :s WHERE id = :i",
            params={"k": s["public_key"], "s": s["signature"], "i": s["id"]},
        )
    assert verify(sealed)[0] == 0


@pytest.mark.parametrize("where", ["middle", "tail"])
def test_a_removed_seal_is_named(sealed, backend, where):
    last = _seal_row(sealed)
    s = _seal_row(sealed, 1) if where == "middle" else last
    assert last["seq"] >= 2
    raw(sealed, backend, "log_seals", f"DELETE FROM log_seals WHERE id = {s['id']}")
    try:
        code, out = verify(sealed)
        want = "was removed" if where == "middle" else "is in the seal log but was removed from the database"
        assert code == 1 and f"seal {s['seq']}" in out and want in out, out
    finally:
        with sealed.app_context():
            db.session.execute(LogSeal.__table__.insert(), [s])
            commit()
    assert verify(sealed)[0] == 0


def test_a_late_commit_below_a_committed_id_is_not_sealed_past(sapp, backend):
    """Two real transactions on PostgreSQL: the first takes id a and stays open, the second takes
    a+1 and commits. A sealer sealing by "the largest committed id" would seal a+1 and leave a
    outside; when a commits, its range would have changed. The sealer must wait for it."""
    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time: ids commit in order")
    seal(sapp)
    row = access_event(
        user_id=None,
        action="GET slow",
        obj="",
        outcome="allowed",
        status_code=200,
        client_addr="192.0.2.9",
        request_id="slow",
    )
    with sapp.app_context():
        slow = db.engine.connect()
        try:
            a = slow.execute(AccessEvent.__table__.insert().returning(AccessEvent.id), row).scalar_one()
            write_access(sapp, 1)  # id a+1, committed
            assert seal(sapp, wait_seconds=0.2) == []  # a is still open: nothing from a on is final
            slow.commit()
        finally:
            slow.close()
    made = seal(sapp)
    assert made and made[0][2] <= a <= made[-1][3]
    code, out = verify(sapp)
    assert code == 0, out


def test_two_sealers_at_once_seal_each_range_once(sapp, backend):
    if backend != "postgresql":
        pytest.skip("the advisory lock is PostgreSQL's; SQLite writers are serial")
    import threading

    write_access(sapp, 3)
    results: list[object] = []

    def run() -> None:
        try:
            results.append(seal(sapp))
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    made = [r for r in results if isinstance(r, list) and r]
    assert len(made) == 1, results
    assert verify(sapp)[0] == 0

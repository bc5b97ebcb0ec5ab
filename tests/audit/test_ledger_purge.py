"""``clinic purge ledger`` (SYS-02, DEA-08): a location's oldest entries past retention go, up to a
signed checkpoint, under a signed anchor; what is left still verifies and takes new entries; nothing
younger than retention is deleted by any path; a legal hold refuses the purge and the refusal is
recorded; tampering after a purge is named. Own database: purges and anchors must not leak.

Old entries are written straight into the table with a correct chain and back-dated times (the
append service refuses back-dating, DEA-06, and must keep refusing it): the database's guard reads
its own clock, so the dates are taken from it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.exc import DatabaseError

from clinic.audit import retention
from clinic.audit.models import AuditEvent, Purge
from clinic.core.tx import commit
from clinic.extensions import db
from clinic.inventory import integrity
from clinic.inventory.chain import committed_record, phi_paths, record_body_hash, salt_hex
from clinic.inventory.models import Container, Count, LedgerAnchor, LedgerChain, LedgerEntry
from tests.conftest import temp_app
from tests.inventory.conftest import dea_number, ndc

MG = 1000  # micrograms


@dataclass
class Site:
    location_id: int
    site_id: int


@pytest.fixture(scope="module")
def papp(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    log = tmp_path_factory.mktemp("ledgerpurge") / "checkpoints.jsonl"
    with temp_app(backend, "ledgerpurge", SEAL_WAIT_SECONDS=0.3, CHECKPOINT_LOG=str(log)) as application:
        with application.app_context():
            from clinic import fixtures

            admin = fixtures.create_user(role="admin", email="admin@purge.test", password=uuid.uuid4().hex)
            application.config["TEST_ADMIN_ID"] = admin.id
            application.config["TEST_DRUG_ID"] = fixtures.create_drug(admin, ndc=ndc()).id
            commit()
        yield application


def new_location(app: Flask, **jurisdiction: Any) -> Site:
    from clinic import fixtures
    from clinic.auth.models import User

    with app.app_context():
        admin = db.session.get(User, app.config["TEST_ADMIN_ID"])
        place = fixtures.create_location(
            admin,
            dea_registration=dea_number(),
            timezone="America/Chicago",
            storage_sites=("Safe",),
            jurisdiction=jurisdiction or None,
        )
        commit()
        return Site(place.id, place.sites[0])


def ago(days: float) -> Any:
    """A time ``days`` ago by the database's clock (the one its guard reads)."""
    return retention.database_clock() - timedelta(days=days)


def put(app: Flask, site: Site, kind: str, *, days: float, recorded_days: float | None = None, **what: Any) -> int:
    """Write one entry straight into the chain, dated ``days`` ago (recorded ``recorded_days`` ago,
    the same by default), hashed as the append hashes it; the head and the container follow. A
    ``receipt`` makes a new container (``mg``); ``administration`` draws ``mg`` from ``container``."""
    with app.app_context():
        chain = db.session.get(LedgerChain, site.location_id)
        if chain is None:
            chain = LedgerChain(location_id=site.location_id, head_seq=0, head_hash="0" * 64)
            db.session.add(chain)
            db.session.flush()
        occurred = ago(days)
        recorded = ago(days if recorded_days is None else recorded_days)
        container, delta, details = None, 0, dict(what.get("details") or {})
        if kind == "receipt":
            container = Container(
                location_id=site.location_id,
                storage_site_id=site.site_id,
                drug_id=app.config["TEST_DRUG_ID"],
                lot_number="OLD1",
                expires_on=date(2099, 1, 1),
                status="sealed",
                initial_ug=what["mg"] * MG,
                balance_ug=0,
            )
            db.session.add(container)
            db.session.flush()
            delta = what["mg"] * MG
            details |= {"storage_site_id": site.site_id, "invoice_number": "INV-OLD"}
        elif kind == "administration":
            container = db.session.get(Container, what["container"])
            delta = -what["mg"] * MG
        status = None
        if container is not None:
            status = "sealed" if kind == "receipt" else ("empty" if container.balance_ug + delta == 0 else "open")
        fields: dict[str, Any] = {
            "location_id": site.location_id,
            "seq": chain.head_seq + 1,
            "kind": kind,
            "container_id": container.id if container else None,
            "drug_id": container.drug_id if container else None,
            "delta_ug": delta,
            "balance_after_ug": container.balance_ug + delta if container else None,
            "patient_id": None,
            "appointment_id": None,
            "actor_id": app.config["TEST_ADMIN_ID"],
            "witness_id": None,
            "second_witness_id": None,
            "corrects_seq": None,
            "occurred_at": occurred,
            "recorded_at": recorded,
            "reason": None,
            "details": details,
            "prev_hash": chain.head_hash,
        }
        fields["phi_salts"] = {path: salt_hex() for path in phi_paths(fields)}
        body = committed_record(fields)
        fields["committed_record"] = body.decode()
        fields["hash"] = record_body_hash(body, fields["prev_hash"])
        entry_id = db.session.execute(
            LedgerEntry.__table__.insert().returning(LedgerEntry.__table__.c.id), fields
        ).scalar_one()
        chain.head_seq, chain.head_hash = fields["seq"], fields["hash"]
        if kind == "initial_inventory":
            chain.has_initial_inventory, chain.initial_inventory_at = True, occurred
        if container is not None and status is not None:
            container.balance_ug, container.status = fields["balance_after_ug"], status
        commit()
        return int(container.id if kind == "receipt" and container else entry_id)


def checkpoint(app: Flask) -> None:
    with app.app_context():
        integrity.sign_checkpoints()
        commit()


def entry_id(app: Flask, site: Site, seq: int) -> int:
    with app.app_context():
        return db.session.scalar(
            select(LedgerEntry.id).where(LedgerEntry.location_id == site.location_id, LedgerEntry.seq == seq)
        )


def seqs(app: Flask, site: Site) -> list[int]:
    with app.app_context():
        return list(
            db.session.scalars(
                select(LedgerEntry.seq).where(LedgerEntry.location_id == site.location_id).order_by(LedgerEntry.seq)
            )
        )


def cli(app: Flask, *args: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def verify(app: Flask, site: Site) -> integrity.ChainReport:
    with app.app_context():
        report = integrity.verify_location(site.location_id)
        db.session.rollback()
        return report


def last_run(app: Flask, site: Site) -> Purge:
    with app.app_context():
        run = db.session.scalar(
            select(Purge).where(Purge.location_id == site.location_id).order_by(Purge.id.desc()).limit(1)
        )
        db.session.expunge(run)
        return run


def old_chain(app: Flask, site: Site) -> dict[str, int]:
    """seq 1 initial inventory (4 years ago), 2 a receipt, 3 a draw from it (checkpoint), 4 another
    receipt (3 years ago; checkpoint), 5 a receipt today (checkpoint)."""
    put(app, site, "initial_inventory", days=4 * 365)
    a = put(app, site, "receipt", days=4 * 365 - 1, mg=500)
    put(app, site, "administration", days=3 * 365 + 100, container=a, mg=25)
    checkpoint(app)
    b = put(app, site, "receipt", days=3 * 365, mg=200)
    checkpoint(app)
    c = put(app, site, "receipt", days=0, mg=100)
    checkpoint(app)
    return {"a": a, "b": b, "c": c}


def test_the_old_prefix_goes_and_what_is_left_still_verifies(papp):
    site = new_location(papp)
    made = old_chain(papp, site)
    # an old inventory's link to the initial inventory is cleared, the count itself kept (DEA-08)
    first = entry_id(papp, site, 1)
    with papp.app_context():
        at = ago(4 * 365)
        count_id = db.session.execute(
            Count.__table__.insert().returning(Count.__table__.c.id),
            {
                "location_id": site.location_id,
                "kind": "initial",
                "business_hours": "opening",
                "actor_id": papp.config["TEST_ADMIN_ID"],
                "occurred_at": at,
                "recorded_at": at,
                "entry_id": first,
            },
        ).scalar_one()
        commit()
    code, out = cli(papp, "purge", "ledger", "--location", str(site.location_id), "--dry-run")
    assert code == 0 and "would remove 4 entries" in out, out
    assert seqs(papp, site) == [1, 2, 3, 4, 5]
    code, out = cli(papp, "purge", "ledger", "--location", str(site.location_id))
    assert code == 0 and "removed 4 entries" in out, out
    assert seqs(papp, site) == [5]
    run = last_run(papp, site)
    assert (run.stream, run.outcome, run.through_id, run.rows, run.open) == ("ledger", "done", 4, 4, False)
    with papp.app_context():
        anchor = db.session.scalar(select(LedgerAnchor).where(LedgerAnchor.location_id == site.location_id))
        assert (anchor.through_seq, anchor.purge_id) == (4, run.id)
        assert anchor.state["containers"][str(made["a"])] == [475 * MG, "open", site.site_id, 3]
        assert anchor.state["opened"][0] == 1
        assert db.session.scalar(select(Count.entry_id).where(Count.id == count_id)) is None
        assert db.session.scalar(
            select(AuditEvent.id).where(
                AuditEvent.tag == "inventory:ledger_purge:done", AuditEvent.subject_id == run.id
            )
        )
    report = verify(papp, site)
    assert report.ok and report.entries == 5, report
    for statement in ("DELETE FROM ledger_anchors", "UPDATE ledger_anchors SET head_hash = head_hash"):
        with pytest.raises(DatabaseError, match="append-only"):
            _sql(papp, statement)
    code, out = cli(papp, "ledger", "verify")
    assert code == 0, out
    # nothing more is past retention: a second run finds nothing, and says so
    code, out = cli(papp, "purge", "ledger", "--location", str(site.location_id))
    assert code == 0 and "nothing to purge" in out, out
    assert last_run(papp, site).outcome == "nothing"
    # the chain takes new entries after the purge, and they verify
    receive_now(papp, site)
    checkpoint(papp)
    assert verify(papp, site).ok
    assert seqs(papp, site) == [5, 6]
    code, out = cli(papp, "ledger", "verify")
    assert code == 0, out


def test_a_young_entry_stops_the_cut_and_a_young_reference_too(papp):
    site = new_location(papp)
    put(papp, site, "initial_inventory", days=4 * 365)
    a = put(papp, site, "receipt", days=4 * 365, mg=100)
    checkpoint(papp)  # seq 2
    put(papp, site, "administration", days=3 * 365, recorded_days=0, container=a, mg=10)  # recorded today
    put(papp, site, "administration", days=3 * 365, container=a, mg=10)  # old, after a young one
    checkpoint(papp)  # seq 4
    code, out = cli(papp, "purge", "ledger", "--location", str(site.location_id), "--dry-run")
    assert code == 0 and "would remove 2 entries" in out and "seq 3 is within retention" in out, out
    # a count of today still points at the receipt: the cut stops before it
    receipt = entry_id(papp, site, 2)
    with papp.app_context():
        now = retention.database_clock()
        db.session.execute(
            Count.__table__.insert(),
            {
                "location_id": site.location_id,
                "kind": "shift",
                "business_hours": "opening",
                "actor_id": papp.config["TEST_ADMIN_ID"],
                "occurred_at": now,
                "recorded_at": now,
                "entry_id": receipt,
            },
        )
        commit()
    code, out = cli(papp, "purge", "ledger", "--location", str(site.location_id))
    assert code == 0 and "nothing to purge" in out and "referenced by counts.entry_id" in out, out
    assert seqs(papp, site) == [1, 2, 3, 4]
    assert verify(papp, site).ok


def test_a_longer_retention_keeps_three_year_old_entries(papp):
    site = new_location(papp, retention_years=5)
    put(papp, site, "initial_inventory", days=3 * 365)
    put(papp, site, "receipt", days=3 * 365, mg=100)
    checkpoint(papp)
    code, out = cli(papp, "purge", "ledger", "--location", str(site.location_id))
    assert code == 0 and "nothing to purge" in out and "5 years" in out, out
    assert seqs(papp, site) == [1, 2]
    with pytest.raises(DatabaseError, match="append-only"):
        _delete_under_an_open_purge(papp, site, 1)
    assert seqs(papp, site) == [1, 2]


def test_a_legal_hold_refuses_the_purge_and_the_refusal_is_logged(papp):
    site = new_location(papp, legal_hold=True)
    put(papp, site, "initial_inventory", days=4 * 365)
    checkpoint(papp)
    code, out = cli(papp, "purge", "ledger", "--location", str(site.location_id))
    assert code == 1 and "REFUSED" in out and "legal hold" in out, out
    run = last_run(papp, site)
    assert (run.stream, run.outcome, run.rows) == ("ledger", "refused", 0)
    with papp.app_context():
        assert db.session.scalar(
            select(AuditEvent.id).where(
                AuditEvent.tag == "inventory:ledger_purge:refused", AuditEvent.subject_id == run.id
            )
        )
    assert seqs(papp, site) == [1]
    with pytest.raises(DatabaseError, match="append-only"):
        _delete_under_an_open_purge(papp, site, 1)  # the database refuses it under a hold too
    assert seqs(papp, site) == [1]


def test_the_inventory_purge_is_refused_and_logged(papp):
    code, out = cli(papp, "purge", "inventory")
    assert code == 1 and "REFUSED" in out
    with papp.app_context():
        run = db.session.scalar(select(Purge).order_by(Purge.id.desc()).limit(1))
        assert (run.stream, run.outcome) == ("inventory", "refused")
        assert db.session.scalar(
            select(AuditEvent.id).where(AuditEvent.tag == "audit:log:purge_refused", AuditEvent.subject_id == run.id)
        )


def _sql(app: Flask, statement: str) -> None:
    with app.app_context(), db.engine.connect() as conn:
        try:
            conn.execute(text(statement))
            conn.commit()
        finally:
            conn.rollback()


def _delete_under_an_open_purge(app: Flask, site: Site, seq: int) -> None:
    """An insider's own open purge row, then a raw DELETE: the database still checks age and hold."""
    with app.app_context():
        now = retention.database_clock()
        db.session.rollback()  # SQLite: the session's BEGIN IMMEDIATE would hold the write lock
    with app.app_context(), db.engine.connect() as conn:
        try:
            opened = conn.execute(
                Purge.__table__.insert().returning(Purge.__table__.c.id),
                {
                    "stream": "ledger",
                    "location_id": site.location_id,
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
            ).scalar_one()
            conn.execute(text(f"DELETE FROM ledger_entries WHERE location_id = {site.location_id} AND seq = {seq}"))
            conn.execute(text(f"UPDATE purges SET open = false WHERE id = {opened}"))  # never committed open
            conn.commit()
        finally:
            conn.rollback()


def test_raw_sql_cannot_delete_a_young_entry_or_an_old_one_without_a_purge(papp):
    site = new_location(papp)
    put(papp, site, "initial_inventory", days=4 * 365)
    put(papp, site, "receipt", days=0, mg=10)
    old, young = entry_id(papp, site, 1), entry_id(papp, site, 2)
    with pytest.raises(DatabaseError, match="append-only"):
        _sql(papp, f"DELETE FROM ledger_entries WHERE id = {old}")  # old, but no open purge
    with pytest.raises(DatabaseError, match="append-only"):
        _sql(papp, f"DELETE FROM ledger_entries WHERE id = {young}")
    with pytest.raises(DatabaseError, match="retention"):
        _delete_under_an_open_purge(papp, site, 2)  # young: even an open purge does not let it go
    with pytest.raises(DatabaseError, match="append-only"):
        _sql(papp, f"UPDATE ledger_entries SET reason = 'edited' WHERE id = {old}")
    assert seqs(papp, site) == [1, 2]
    # the ORM refuses it before the database is asked
    with papp.app_context():
        db.session.delete(db.session.get(LedgerEntry, old))
        with pytest.raises(retention.RetentionError):
            db.session.flush()
        db.session.rollback()
    # and the guard is what lets the purge's own delete through: an old entry under an open purge goes
    _delete_under_an_open_purge(papp, site, 1)
    assert seqs(papp, site) == [2]


@pytest.fixture
def purged(papp) -> Site:
    site = new_location(papp)
    old_chain(papp, site)
    code, out = cli(papp, "purge", "ledger", "--location", str(site.location_id))
    assert code == 0 and "removed 4 entries" in out, out
    receive_now(papp, site)  # seq 6, through the service
    checkpoint(papp)
    assert verify(papp, site).ok
    return site


def receive_now(app: Flask, site: Site) -> None:
    from clinic import fixtures
    from clinic.auth.models import User

    with app.app_context():
        admin = db.session.get(User, app.config["TEST_ADMIN_ID"])
        fixtures.create_receipt(
            admin,
            storage_site_id=site.site_id,
            drug_id=app.config["TEST_DRUG_ID"],
            count=1,
            expires_on=date(2099, 1, 1),
            invoice_number=f"INV-{uuid.uuid4().hex[:8]}",
        )
        commit()


def _unguarded(table: str) -> str:
    """Switch a table's triggers off inside the test's transaction (rolled back after)."""
    if db.engine.dialect.name == "postgresql":
        return f"ALTER TABLE {table} DISABLE TRIGGER USER"
    return f"DROP TRIGGER IF EXISTS {table}_no_{'update' if table == 'ledger_anchors' else 'delete'}"


def _tampered(app: Flask, site: Site, table: str, change: Any) -> integrity.ChainReport:
    with app.app_context():
        db.session.execute(text(_unguarded(table)))
        change()
        db.session.flush()
        try:
            return integrity.verify_location(site.location_id)
        finally:
            db.session.rollback()


def test_an_anchor_whose_signature_is_flipped_is_named(papp, purged):
    def flip() -> None:
        anchor = db.session.scalar(select(LedgerAnchor).where(LedgerAnchor.location_id == purged.location_id))
        sig = anchor.signature
        anchor.signature = ("0" if sig[0] != "0" else "1") + sig[1:]

    report = _tampered(papp, purged, "ledger_anchors", flip)
    assert not report.ok and "does not verify" in report.problem, report
    assert verify(papp, purged).ok  # rolled back


def test_an_anchor_with_a_wrong_hash_is_named_even_signed(papp, purged):
    from clinic.inventory import anchors

    def rehash() -> None:
        anchor = db.session.scalar(select(LedgerAnchor).where(LedgerAnchor.location_id == purged.location_id))
        anchor.head_hash = "ab" * 32
        anchors.sign(anchor)  # with the clinic's own key: only the hash is wrong

    report = _tampered(papp, purged, "ledger_anchors", rehash)
    assert not report.ok and report.bad_seq == 5 and "prev_hash" in report.problem, report


def test_an_entry_removed_after_the_cut_is_named(papp, purged):
    report = _tampered(
        papp,
        purged,
        "ledger_entries",
        lambda: db.session.execute(
            text(f"DELETE FROM ledger_entries WHERE location_id = {purged.location_id} AND seq = 5")
        ),
    )
    assert not report.ok and "seq 5 is missing" in report.problem, report


def test_a_forged_anchor_or_entries_put_back_are_named(papp, purged):
    """What the application's role can do (INSERT): a later anchor copied with its old signature, or
    an entry put back into the purged range."""
    with papp.app_context():
        real = db.session.scalar(select(LedgerAnchor).where(LedgerAnchor.location_id == purged.location_id))
        forged = {c.name: getattr(real, c.key) for c in LedgerAnchor.__table__.columns if c.name != "id"}
        head5 = db.session.scalar(
            select(LedgerEntry.hash).where(LedgerEntry.location_id == purged.location_id, LedgerEntry.seq == 5)
        )
        db.session.execute(LedgerAnchor.__table__.insert(), {**forged, "through_seq": 5, "head_hash": head5})
        report = integrity.verify_location(purged.location_id)
        db.session.rollback()
    assert not report.ok and "does not verify" in report.problem, report
    with papp.app_context():
        five = db.session.scalar(
            select(LedgerEntry).where(LedgerEntry.location_id == purged.location_id, LedgerEntry.seq == 5)
        )
        row = {c.name: getattr(five, c.key) for c in LedgerEntry.__table__.columns if c.name != "id"}
        db.session.execute(LedgerEntry.__table__.insert(), {**row, "seq": 1, "hash": "cd" * 32, "prev_hash": "0" * 64})
        report = integrity.verify_location(purged.location_id)
        db.session.rollback()
    assert not report.ok and "not the chain the purge anchor signed" in report.problem, report


def test_an_export_after_the_cut_verifies_and_one_reaching_into_it_is_refused(papp, purged, tmp_path):
    from clinic.auth.models import User
    from clinic.core.errors import Conflict
    from clinic.exports import service

    with papp.app_context():
        admin = db.session.get(User, papp.config["TEST_ADMIN_ID"])
        fifth = db.session.scalar(
            select(LedgerEntry.recorded_at).where(LedgerEntry.location_id == purged.location_id, LedgerEntry.seq == 5)
        )
        # the receipt after the cut (seq 6) is dated by the app's clock, the others by the database's
        # (the shifted-clock run sets them two years apart): the period is taken from the entries
        sixth = db.session.scalar(
            select(LedgerEntry.occurred_at).where(LedgerEntry.location_id == purged.location_id, LedgerEntry.seq == 6)
        )
        until = max(retention.database_clock(), sixth) + timedelta(days=1)
        with pytest.raises(Conflict, match="purged through seq 4") as refused:
            service.request_export(
                actor=admin,
                kind="receiving-log",
                file_format="csv",
                since=fifth - timedelta(days=400),
                until=until,
                location_id=purged.location_id,
                out=tmp_path / "refused.csv",
            )
        assert refused.value.http_status == 409
        db.session.rollback()
    # the receipt after the first kept entry (seq 6): a period starting after seq 5 is provable
    with papp.app_context():
        admin = db.session.get(User, papp.config["TEST_ADMIN_ID"])
        export = service.request_export(
            actor=admin,
            kind="receiving-log",
            file_format="csv",
            since=max(fifth + timedelta(microseconds=1), sixth),
            until=until,
            location_id=purged.location_id,
            out=tmp_path / "after.csv",
        )
        commit()
        assert export.status == "done" and export.rows == 1, (export.status, export.error)
        assert export.verification.startswith("OK"), export.verification


def test_two_purges_at_once_delete_once(papp, backend):
    if backend != "postgresql":
        pytest.skip("SQLite's BEGIN IMMEDIATE queues writers: the race is PostgreSQL's")
    from clinic.inventory import purge

    site = new_location(papp)
    old_chain(papp, site)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def one() -> None:
        with papp.app_context():
            barrier.wait()
            run = purge.purge_location(site.location_id, requested_by="race")
            outcomes.append(run.outcome)
            commit()

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["done", "nothing"], outcomes
    assert seqs(papp, site) == [5]
    with papp.app_context():
        assert (
            db.session.scalar(
                select(func.count()).select_from(LedgerAnchor).where(LedgerAnchor.location_id == site.location_id)
            )
            == 1
        )
    assert verify(papp, site).ok


def test_a_purge_racing_appends_keeps_the_chain(papp, backend):
    if backend != "postgresql":
        pytest.skip("SQLite's BEGIN IMMEDIATE queues writers: the race is PostgreSQL's")
    from clinic.inventory import purge

    site = new_location(papp)
    old_chain(papp, site)
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def purging() -> None:
        try:
            with papp.app_context():
                barrier.wait()
                purge.purge_location(site.location_id, requested_by="race")
                commit()
        except BaseException as exc:
            errors.append(exc)

    def appending() -> None:
        try:
            barrier.wait()
            for _ in range(3):
                receive_now(papp, site)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=purging)] + [threading.Thread(target=appending) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert seqs(papp, site) == list(range(5, 12))
    checkpoint(papp)
    assert verify(papp, site).ok
    with papp.app_context():
        assert db.session.scalar(select(LedgerChain.head_seq).where(LedgerChain.location_id == site.location_id)) == 11


def test_checkpoints_at_or_before_the_cut_are_taken_on_their_signature_and_the_anchor(papp, purged, tmp_path):
    """The checkpoint log still holds the heads the purge removed (seq 3 and 4): they verify by their
    signature, and the one at the cut against the anchor's hash. One signed at the cut with another
    hash, or with a bad signature before it, is named."""
    from clinic.core import signing
    from clinic.inventory.chain import checkpoint_message

    loc = purged.location_id
    with papp.app_context():
        at = "2020-01-01T00:00:00.000000Z"

        def head(seq: int, head_hash: str, good: bool = True) -> integrity.SignedHead:
            sig = signing.sign(checkpoint_message(loc, seq, head_hash, at))
            if not good:
                sig = ("0" if sig[0] != "0" else "1") + sig[1:]
            return integrity.SignedHead(loc, seq, head_hash, at, signing.public_key_hex(), sig)

        anchor = db.session.scalar(select(LedgerAnchor).where(LedgerAnchor.location_id == loc))
        cases = {
            "ok": head(anchor.through_seq, anchor.head_hash),
            "a checkpoint (": head(anchor.through_seq, "ef" * 32),
            "signature is invalid": head(2, "12" * 32, good=False),
        }
        for expected, signed in cases.items():
            path = tmp_path / f"{uuid.uuid4().hex}.jsonl"
            path.write_text(signed.as_json() + "\n")
            report = integrity.verify_location(loc, checkpoint_files=(path,))
            if expected == "ok":
                assert report.ok, report
            else:
                assert not report.ok and expected in report.problem, (expected, report)
        db.session.rollback()


def test_every_reference_to_an_entry_holds_it_unless_taught_otherwise(papp):
    """Read from the models: a visit's dose and a Form 106 always keep the entry they name; an
    inventory or a discrepancy only while it is itself within retention (its link is then cleared)."""
    from clinic.inventory import purge

    with papp.app_context():
        found = {f"{c.table.name}.{c.name}": old is not None for c, old in purge._references()}
    assert found == {
        "counts.entry_id": True,
        "discrepancies.entry_id": True,
        "loss_reports.entry_id": False,
        "visit_doses.administration_entry_id": False,
        "visit_doses.waste_entry_id": False,
        "visit_doses.remainder_entry_id": False,
    }, found
    code, out = cli(papp, "purge", "ledger", "--location", "999999")
    assert code == 2 and "no location 999999" in out, out


def test_correcting_a_disposal_of_a_container_whose_receipt_was_purged(papp):
    """Another path to the container's state: correcting a disposal re-walks the container's own
    entries for the status to restore (clinic.inventory.corrections). Once its receipt and draws are
    purged that walk must start from the anchor's figures, not from nothing: the container was open."""
    from clinic import fixtures
    from clinic.auth.models import User
    from clinic.inventory import service as inventory

    site = new_location(papp)
    made = old_chain(papp, site)  # container a: received, 25 mg drawn (open), all purged below
    code, out = cli(papp, "purge", "ledger", "--location", str(site.location_id))
    assert code == 0 and "removed 4 entries" in out, out
    password = uuid.uuid4().hex
    with papp.app_context():
        emails = []
        for n in range(2):
            email = f"w{n}-{uuid.uuid4().hex[:6]}@purge.test"
            fixtures.create_user(
                role="nurse", email=email, password=password, license_number="W-1", location_ids=(site.location_id,)
            )
            emails.append(email)
        commit()
    with papp.app_context():
        admin = db.session.get(User, papp.config["TEST_ADMIN_ID"])
        disposal = inventory.record_disposal(
            actor=admin,
            container_id=made["a"],
            method="returned",
            witness=inventory.WitnessSignature(emails[0], password),
            client_addr="127.0.0.1",
            reverse_distributor={"name": "R", "address": "A", "dea_registration": dea_number()},
        )
        commit()
        seq = disposal.seq
    with papp.app_context():
        admin = db.session.get(User, papp.config["TEST_ADMIN_ID"])
        inventory.record_correction(
            actor=admin,
            location_id=site.location_id,
            corrects_seq=seq,
            reason="returned the wrong vial",
            witness=inventory.WitnessSignature(emails[1], password),
            client_addr="127.0.0.1",
        )
        commit()
    with papp.app_context():
        assert db.session.get(Container, made["a"]).status == "open"
    checkpoint(papp)
    assert verify(papp, site).ok


def test_a_late_entry_cannot_be_dated_into_the_purged_past(papp):
    """DEA-06: no entry is dated before its container's previous movement. Once that movement is
    purged the table no longer shows it: a late entry dated before the purge's cutoff (before
    records that are gone) is refused, for a container whose every entry was purged too."""
    from clinic.auth.models import User
    from clinic.core.errors import ValidationFailed
    from clinic.inventory import service as inventory
    from clinic.locations import service as locations

    site = new_location(papp)
    made = old_chain(papp, site)  # container a: received 4 years ago less a day; all purged below
    code, out = cli(papp, "purge", "ledger", "--location", str(site.location_id))
    assert code == 0 and "removed 4 entries" in out, out
    with papp.app_context():
        admin = db.session.get(User, papp.config["TEST_ADMIN_ID"])
        other = locations.create_storage_site(actor=admin, location_id=site.location_id, name="Cabinet").id
        commit()
    with papp.app_context():
        admin = db.session.get(User, papp.config["TEST_ADMIN_ID"])
        with pytest.raises(ValidationFailed) as refused:
            inventory.record_transfer(
                actor=admin,
                container_id=made["a"],
                to_storage_site_id=other,
                occurred_at=ago(4 * 365 - 0.5),  # after the initial inventory, before the receipt
                late_entry_reason="found the transfer sheet",
            )
        assert "occurred_at" in refused.value.errors, refused.value.errors
        db.session.rollback()
    assert seqs(papp, site) == [5]
    # a late entry after the cut's cutoff is still taken
    with papp.app_context():
        admin = db.session.get(User, papp.config["TEST_ADMIN_ID"])
        inventory.record_transfer(
            actor=admin,
            container_id=made["a"],
            to_storage_site_id=other,
            occurred_at=ago(2),
            late_entry_reason="found the transfer sheet",
        )
        commit()
    checkpoint(papp)
    assert verify(papp, site).ok


def test_an_open_purge_row_is_never_committed(papp, backend):
    """The guard lets a transaction delete old entries under an open ``purges`` row, which only
    the purging transaction is meant to see. Committed open, it would let every later session
    (a stray ORM delete, a script) delete that location's old entries without clinic purge and
    without an anchor: the database refuses the commit (PostgreSQL: a deferred constraint trigger)."""
    if backend != "postgresql":
        pytest.skip("SQLite has no deferred triggers: file permissions are the control")
    site = new_location(papp)
    put(papp, site, "initial_inventory", days=4 * 365)
    put(papp, site, "receipt", days=0, mg=10)
    with papp.app_context():
        now = retention.database_clock()
        db.session.rollback()
    row = {
        "stream": "ledger",
        "location_id": site.location_id,
        "requested_at": now,
        "requested_by": "insider",
        "cutoff": now,
        "through_id": 10**9,
        "through_seal": 0,
        "rows": 0,
        "outcome": "done",
        "detail": "",
    }
    with papp.app_context(), db.engine.connect() as conn:
        conn.execute(Purge.__table__.insert(), {**row, "open": True})
        with pytest.raises(DatabaseError, match="open"):
            conn.commit()
        conn.rollback()
    with papp.app_context(), db.engine.connect() as conn:  # nor opened later by an UPDATE
        purge_id = conn.execute(Purge.__table__.insert().returning(Purge.__table__.c.id), {**row, "open": False})
        purge_id = purge_id.scalar_one()
        conn.commit()
        conn.execute(text(f"UPDATE purges SET open = true WHERE id = {purge_id}"))
        with pytest.raises(DatabaseError, match="open"):
            conn.commit()
        conn.rollback()
    with pytest.raises(DatabaseError, match="append-only"):
        _sql(papp, f"DELETE FROM ledger_entries WHERE id = {entry_id(papp, site, 1)}")
    assert seqs(papp, site) == [1, 2]
    # the purge itself opens and closes its row in one transaction: still fine
    _delete_under_an_open_purge(papp, site, 1)
    assert seqs(papp, site) == [2]


def test_choosing_a_state_keeps_the_legal_hold_and_the_retention(papp):
    """SYS-02: records are kept for the longest period that applies, a legal hold the clinic placed
    included. Choosing the location's state applies that state's preset (SYS-04); it must not lift
    the hold nor shorten the retention the clinic set, or the purge that follows deletes what was held."""
    from clinic.auth.models import User
    from clinic.locations import service as locations

    site = new_location(papp, legal_hold=True, retention_years=7)
    put(papp, site, "initial_inventory", days=4 * 365)
    put(papp, site, "receipt", days=4 * 365 - 1, mg=10)
    checkpoint(papp)
    with papp.app_context():
        admin = db.session.get(User, papp.config["TEST_ADMIN_ID"])
        locations.update_location(actor=admin, location_id=site.location_id, changes={"jurisdiction": {"state": "CA"}})
        commit()
    with papp.app_context():
        from clinic.locations.models import Location

        location = db.session.get(Location, site.location_id)
        assert location.rule("state") == "CA" and location.rule("board_loss_notice_days") == 30  # the preset
        assert location.rule("legal_hold") is True and location.rule("retention_years") == 7
    code, _ = cli(papp, "purge", "ledger", "--location", str(site.location_id))
    assert code == 1 and last_run(papp, site).outcome == "refused"
    assert seqs(papp, site) == [1, 2]


def test_a_legal_hold_placed_while_another_change_is_saved_is_kept(papp, backend):
    """Two changes to one location's profile at once (PostgreSQL): each merges into the profile it
    read, so without a lock the second wrote back the profile without the first: a hold placed
    at the same moment as another setting was lost, and answered as saved."""
    if backend != "postgresql":
        pytest.skip("SQLite's BEGIN IMMEDIATE queues writers: the race is PostgreSQL's")
    from clinic.auth.models import User
    from clinic.locations import service as locations
    from clinic.locations.models import Location

    site = new_location(papp)
    held = threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with papp.app_context():
                admin = db.session.get(User, papp.config["TEST_ADMIN_ID"])
                locations.update_location(
                    actor=admin, location_id=site.location_id, changes={"jurisdiction": {"legal_hold": True}}
                )
                held.set()
                threading.Event().wait(0.5)  # the other change reads the profile meanwhile
                commit()
        except BaseException as exc:
            errors.append(exc)
            held.set()

    def other() -> None:
        try:
            held.wait(10)
            with papp.app_context():
                admin = db.session.get(User, papp.config["TEST_ADMIN_ID"])
                locations.update_location(
                    actor=admin, location_id=site.location_id, changes={"jurisdiction": {"retention_years": 7}}
                )
                commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hold), threading.Thread(target=other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    with papp.app_context():
        location = db.session.get(Location, site.location_id)
        assert location.rule("legal_hold") is True and location.rule("retention_years") == 7, location.jurisdiction


def test_a_verify_walking_while_a_purge_commits_is_not_a_false_break(papp, backend, monkeypatch):
    """The daily check walks every chain while a nightly purge may commit (PostgreSQL reads each
    statement afresh): a walk that started from the genesis before the purge then found seq 1
    gone and stored a broken ledger, with a notice to the admins. It is walked again from the anchor."""
    if backend != "postgresql":
        pytest.skip("SQLite's read transaction sees one snapshot: the race is PostgreSQL's")
    from clinic.inventory import purge

    site = new_location(papp)
    old_chain(papp, site)
    started, purged_now = threading.Event(), threading.Event()
    real_walk = integrity.walk
    reports: list[integrity.ChainReport] = []

    def slow_walk(location_id: int, start: Any, *args: Any, **kwargs: Any) -> Any:
        if location_id == site.location_id and start.seq == 0 and not started.is_set():
            started.set()
            purged_now.wait(10)  # the purge commits here
        return real_walk(location_id, start, *args, **kwargs)

    monkeypatch.setattr(integrity, "walk", slow_walk)

    def verifying() -> None:
        with papp.app_context():
            reports.append(integrity.verify_location(site.location_id))
            db.session.rollback()

    t = threading.Thread(target=verifying)
    t.start()
    assert started.wait(10)
    with papp.app_context():
        assert purge.purge_location(site.location_id, requested_by="race").outcome == "done"
        commit()
    purged_now.set()
    t.join(30)
    assert len(reports) == 1 and reports[0].ok, reports

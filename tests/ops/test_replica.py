"""CLINIC_REPLICA_URL (issue 14): read-only reports go to a PostgreSQL streaming replica, writes never.

The test owns two throwaway clusters on loopback (the shared server on 5432 is never touched): a
primary (initdb + pg_ctl, as tests/test_disconnects.py does) and a hot standby made from it with
``pg_basebackup -R``. The app runs against the primary with the standby as its replica.

- The auditors' ledger listing is read on the standby (its own table statistics count the scans;
  the primary's do not move) and names it (``Clinic-Read-Source``/``Clinic-Read-LSN``); the request's
  access-log row, a flush, a locking SELECT inside the block still go to the primary (the standby
  would refuse each of them).
- A lagging standby (replay paused): the read waits for it to replay what the primary had when the
  request began, or, past ``REPLICA_WAIT_SECONDS``, reads the primary and says why; either way the
  answer holds the entry written just before.
- A replica URL that is no standby of this primary, or that does not answer, is not used.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import time_machine
from flask import Flask
from sqlalchemy import select, text

from clinic.audit.models import AuditEvent
from clinic.core import replica
from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.inventory.models import LedgerChain
from tests.clock import at_local
from tests.conftest import IN_CI, Client, dispose, make_app, migrate
from tests.ops.seed import seed_clinic, user_maker
from tests.test_disconnects import PrivateCluster, _postgres_bin
from tests.visits.conftest import TZ, ward_day

pytestmark = pytest.mark.slow


class Standby(PrivateCluster):
    """A hot standby of ``primary``: pg_basebackup -R (standby.signal and primary_conninfo)."""

    def __init__(self, bindir: Path, primary: PrivateCluster) -> None:
        super().__init__(bindir)
        self.primary = primary

    def start(self) -> None:
        backup = [str(self.bin / "pg_basebackup"), "-D", str(self.data), "-h", "127.0.0.1"]
        backup += ["-p", str(self.primary.port), "-U", "postgres", "-X", "stream", "-c", "fast", "-R", "--no-sync"]
        subprocess.run([*self.as_user, *backup], check=True, capture_output=True, timeout=120)
        self._pg_ctl("-o", self.options, "-w", "-t", "60", "start")


@dataclass
class Pair:
    primary: PrivateCluster
    standby: Standby
    app: Flask
    ward: Any

    def sql(self, cluster: PrivateCluster, query: str) -> Any:
        with psycopg.connect(cluster.url("clinic"), autocommit=True) as conn:
            return conn.execute(query).fetchone()[0]  # type: ignore[index]

    def ledger_scans(self, cluster: PrivateCluster) -> int:
        return int(
            self.sql(
                cluster,
                "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables "
                "WHERE relname = 'ledger_entries'",
            )
        )

    def flushed_scans(self, cluster: PrivateCluster) -> int:
        """Ledger scans once the app's connections have ended (a backend reports its counts as it ends)."""
        replica.dispose(self.app)
        dispose(self.app)
        deadline = time.monotonic() + 20
        while self.sql(
            cluster,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'clinic' "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
        ):
            assert time.monotonic() < deadline, "the app's connections did not end"
            time.sleep(0.05)
        return self.ledger_scans(cluster)

    def caught_up(self) -> None:
        wanted = self.sql(self.primary, "SELECT pg_current_wal_lsn()::text")
        deadline = time.monotonic() + 30
        while self.sql(self.standby, f"SELECT pg_last_wal_replay_lsn() >= '{wanted}'::pg_lsn") is not True:
            assert time.monotonic() < deadline, "the standby never caught up"
            time.sleep(0.05)

    def listing(self) -> Any:
        resp = self.ward.client.get(
            "/api/v1/inventory/ledger",
            query_string={"location_id": self.ward.location_id, "limit": 500},
            headers=self.ward.nurse_h,
        )
        assert resp.status_code == 200, resp.json
        return resp


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    bindir = _postgres_bin()
    if bindir is None:
        if IN_CI:
            pytest.fail("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are missing; CI must run this test")
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) are not installed")
    primary = PrivateCluster(bindir)
    standby = Standby(bindir, primary)
    app = None
    try:
        primary.start()
        primary.create_database("clinic")
        app = make_app(primary.url("clinic"), REPLICA_URL=None)
        app.test_client_class = Client
        migrate(app)
        standby.start()
        app.config.update(REPLICA_URL=standby.url("clinic"), REPLICA_WAIT_SECONDS=5.0)
        ward = seed_clinic(app, app.test_client(), user_maker(app), ward_day())
        ward.client = app.test_client()
        pair = Pair(primary, standby, app, ward)
        pair.caught_up()
        yield pair
    finally:
        if app is not None:
            replica.dispose(app)
            dispose(app)
        standby.destroy()
        primary.destroy()


def test_the_ledger_listing_reads_from_the_replica_and_writes_stay_on_the_primary(pair: Pair) -> None:
    on_primary = pair.flushed_scans(pair.primary)
    on_standby = pair.flushed_scans(pair.standby)
    with pair.app.app_context():
        logged = db.session.scalar(text("SELECT count(*) FROM access_events"))
        db.session.rollback()

    before = pair.sql(pair.primary, "SELECT pg_current_wal_lsn()::text")
    resp = pair.listing()
    assert resp.headers["Clinic-Read-Source"] == "replica"
    assert replica.lsn_int(resp.headers["Clinic-Read-LSN"]) >= replica.lsn_int(before)
    with pair.app.app_context():
        head = db.session.get(LedgerChain, pair.ward.location_id)
        assert head is not None
        assert [e["seq"] for e in resp.json["items"]] == list(range(1, head.head_seq + 1))
        # The request's access-log row went to the primary (the standby refuses writes).
        assert db.session.scalar(text("SELECT count(*) FROM access_events")) == logged + 1
        db.session.rollback()

    assert pair.flushed_scans(pair.standby) > on_standby, "the standby did not read the ledger"
    assert pair.flushed_scans(pair.primary) == on_primary, "the primary read the ledger itself"


def test_inside_a_replica_block_writes_and_locks_still_go_to_the_primary(pair: Pair) -> None:
    from clinic.core.tx import commit

    with pair.app.app_context():
        with replica.reads() as where:
            assert where.source == "replica"
            # Each of these would fail on the standby ("cannot execute ... in a read-only transaction").
            db.session.add(AuditEvent(occurred_at=utcnow(), tag="test:replica:write", subject_type="test", data={}))
            db.session.flush()
            locked = db.session.scalars(
                select(LedgerChain).where(LedgerChain.location_id == pair.ward.location_id).with_for_update()
            ).one()
            assert locked.head_seq > 0
            assert db.session.scalar(select(LedgerChain.head_seq).limit(1)) is not None  # a plain read: the standby
        commit()
        assert pair.sql(pair.primary, "SELECT count(*) FROM audit_events WHERE tag = 'test:replica:write'") == 1


def test_a_lagging_replica_is_waited_for_or_named(pair: Pair) -> None:
    pair.sql(pair.standby, "SELECT pg_wal_replay_pause()")
    deadline = time.monotonic() + 10
    while pair.sql(pair.standby, "SELECT pg_get_wal_replay_pause_state()") != "paused":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    try:
        # On the primary; the standby does not replay it. On the seeded day's evening: a receipt is never
        # dated in the future (the ward charts its stock received at the start of its day).
        with time_machine.travel(at_local(pair.ward.day, "18:00", TZ), tick=False):
            pair.ward.receive(pair.ward.vial_drug, 1)
        written = pair.sql(pair.primary, "SELECT pg_current_wal_lsn()::text")
        with pair.app.app_context():
            head = db.session.get(LedgerChain, pair.ward.location_id).head_seq  # type: ignore[union-attr]
            db.session.rollback()

        # Past the wait: the primary answers, and says why.
        pair.app.config["REPLICA_WAIT_SECONDS"] = 0.3
        started = time.monotonic()
        resp = pair.listing()
        assert time.monotonic() - started >= 0.3
        assert resp.headers["Clinic-Read-Source"] == "primary"
        assert resp.headers["Clinic-Read-Note"].startswith("replica behind (replayed ")
        assert resp.json["items"][-1]["seq"] == head

        # Within the wait: the replica catches up (replay resumes after a moment) and answers.
        pair.app.config["REPLICA_WAIT_SECONDS"] = 10.0
        resume = threading.Timer(0.4, pair.sql, (pair.standby, "SELECT pg_wal_replay_resume()"))
        resume.start()
        resp = pair.listing()
        resume.join()
        assert resp.headers["Clinic-Read-Source"] == "replica"
        assert resp.json["items"][-1]["seq"] == head, "the replica answered before it had the new entry"
        assert replica.lsn_int(resp.headers["Clinic-Read-LSN"]) >= replica.lsn_int(written)
    finally:
        pair.sql(pair.standby, "SELECT pg_wal_replay_resume()")
        pair.app.config["REPLICA_WAIT_SECONDS"] = 5.0


@pytest.mark.parametrize("which", ["the primary itself", "nothing listening"])
def test_a_replica_that_is_no_standby_of_ours_or_is_down_is_not_used(pair: Pair, which: str) -> None:
    url = pair.primary.url("clinic") if which == "the primary itself" else "postgresql://postgres@127.0.0.1:1/clinic"
    other = make_app(pair.primary.url("clinic"), REPLICA_URL=url, REPLICA_WAIT_SECONDS=5.0)
    other.test_client_class = Client
    try:
        pair.ward.client = other.test_client()
        for _ in range(2):  # the second read does not try the bad replica again (no wait, no error)
            started = time.monotonic()
            resp = pair.listing()
            assert resp.headers["Clinic-Read-Source"] == "primary"
            assert resp.headers["Clinic-Read-Note"] in ("replica misconfigured", "replica unavailable")
            assert time.monotonic() - started < 4
    finally:
        pair.ward.client = pair.app.test_client()
        replica.dispose(other)
        dispose(other)


def test_a_replica_needs_a_postgresql_primary(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="CLINIC_REPLICA_URL needs a PostgreSQL DATABASE_URL"):
        make_app(f"sqlite:///{tmp_path}/x.sqlite", REPLICA_URL="postgresql://postgres@127.0.0.1:1/x")


def test_the_ledger_page_reads_from_the_replica_too(pair: Pair) -> None:
    from tests.conftest import sign_in

    browser = pair.app.test_client()
    sign_in(browser, pair.ward.nurse)  # type: ignore[arg-type]
    page = browser.get("/inventory/ledger", query_string={"location_id": pair.ward.location_id})
    assert page.status_code == 200
    assert page.headers["Clinic-Read-Source"] == "replica"
    assert "Clinic-Read-Source" not in browser.get("/inventory/").headers  # only the reports that opt in


def _export(pair: Pair, out: Path) -> tuple[dict[str, Any], str]:
    """A receiving-log export of the ward's whole history, run in process; its manifest and verdict."""
    from clinic.core import signing
    from clinic.core.tx import commit
    from clinic.exports import service as exports
    from clinic.exports import verifier

    with pair.app.app_context():
        done = exports.request_export(
            actor=None,
            kind="receiving-log",
            file_format="csv",
            since=datetime(2000, 1, 1, tzinfo=UTC),
            until=utcnow() + timedelta(days=3660),
            location_id=pair.ward.location_id,
            run_now=True,
            out=out,
        )
        assert done.status == "done", done.error
        commit()
        verdict = verifier.verify(str(out), None, {signing.public_key_hex()}, set())
    return json.loads(out.with_name(out.name + ".manifest.json").read_text()), verdict


def test_an_export_reads_the_replica_and_verifies_like_one_from_the_primary(pair: Pair, tmp_path: Path) -> None:
    on_primary = pair.flushed_scans(pair.primary)
    on_standby = pair.flushed_scans(pair.standby)
    before = pair.sql(pair.primary, "SELECT pg_current_wal_lsn()::text")
    manifest, verdict = _export(pair, tmp_path / "replica.csv")
    assert manifest["read"]["source"] == "replica", manifest["read"]
    assert replica.lsn_int(manifest["read"]["lsn"]) >= replica.lsn_int(before)
    # The rows were read on the standby; the primary only signed the checkpoint and kept the records.
    assert pair.flushed_scans(pair.standby) > on_standby, "the standby did not read the ledger"
    assert pair.flushed_scans(pair.primary) == on_primary, "the primary read the ledger itself"

    pair.app.config["REPLICA_URL"] = None
    try:
        from_primary, primary_verdict = _export(pair, tmp_path / "primary.csv")
    finally:
        pair.app.config["REPLICA_URL"] = pair.standby.url("clinic")
    assert "read" not in from_primary
    assert verdict == primary_verdict and verdict.startswith("receiving-log: ")
    assert manifest["segment"] == from_primary["segment"] and manifest["rows"] == from_primary["rows"] > 0
    assert (tmp_path / "replica.csv").read_bytes() == (tmp_path / "primary.csv").read_bytes()


def test_an_export_on_a_lagging_replica_waits_for_it_or_names_where_it_read(pair: Pair, tmp_path: Path) -> None:
    pair.sql(pair.standby, "SELECT pg_wal_replay_pause()")
    deadline = time.monotonic() + 10
    while pair.sql(pair.standby, "SELECT pg_get_wal_replay_pause_state()") != "paused":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    try:
        with time_machine.travel(at_local(pair.ward.day, "18:30", TZ), tick=False):
            pair.ward.receive(pair.ward.vial_drug, 1)
        with pair.app.app_context():
            head = db.session.get(LedgerChain, pair.ward.location_id).head_seq  # type: ignore[union-attr]
            db.session.rollback()

        pair.app.config["REPLICA_WAIT_SECONDS"] = 0.3
        manifest, verdict = _export(pair, tmp_path / "behind.csv")
        assert manifest["read"]["source"] == "primary"
        assert manifest["read"]["reason"].startswith("replica behind (replayed ")
        assert manifest["read"]["lsn"] == manifest["read"]["wanted_lsn"]
        assert manifest["segment"]["last_seq"] == head and verdict.startswith("receiving-log: ")

        pair.app.config["REPLICA_WAIT_SECONDS"] = 10.0
        resume = threading.Timer(0.4, pair.sql, (pair.standby, "SELECT pg_wal_replay_resume()"))
        resume.start()
        manifest, verdict = _export(pair, tmp_path / "waited.csv")
        resume.join()
        assert manifest["read"]["source"] == "replica" and manifest["read"]["waited_ms"] > 0
        assert manifest["segment"]["last_seq"] == head, "the replica was read before it had the new entry"
        assert (tmp_path / "waited.csv").read_bytes() == (tmp_path / "behind.csv").read_bytes()
    finally:
        pair.sql(pair.standby, "SELECT pg_wal_replay_resume()")
        pair.app.config["REPLICA_WAIT_SECONDS"] = 5.0


def test_a_block_that_wrote_a_record_across_a_flushed_page_still_reads_the_replica(pair: Pair) -> None:
    """The WAL writer flushes whole pages, so the primary's flushed position can fall inside this
    session's own uncommitted record; the standby then replays only up to that record's start and
    cannot reach the position until the session commits. ``flushed_lsn`` must give a position it
    can reach (it waited the whole REPLICA_WAIT_SECONDS and read the primary before)."""
    with pair.app.app_context():
        db.session.add(  # one record of about 24 KB: three WAL pages, the first two soon flushed whole
            AuditEvent(occurred_at=utcnow(), tag="test:replica:big", subject_type="test",
                       data={"filler": os.urandom(12_000).hex()})
        )  # fmt: skip
        db.session.flush()
        deadline = time.monotonic() + 5
        while True:  # the WAL writer (every 200 ms) has flushed to a page boundary inside the record
            flushed = db.session.execute(text("SELECT pg_current_wal_flush_lsn()::text")).scalar_one()
            inserted = db.session.execute(text("SELECT pg_current_wal_insert_lsn()::text")).scalar_one()
            if replica.lsn_int(flushed) % 8192 == 0 and replica.lsn_int(flushed) < replica.lsn_int(inserted):
                break
            assert time.monotonic() < deadline, (flushed, inserted)
            time.sleep(0.05)
        with replica.reads(replica.flushed_lsn()) as where:
            assert where.source == "replica", where
            assert where.waited_ms < 4000
        db.session.rollback()

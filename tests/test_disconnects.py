"""Database connection faults under load (RELIABILITY.md F14): the app keeps no ping per checkout
(clinic/config.py), so a pooled connection the server dropped fails on first use, the pool is
invalidated and the request's first statement (authentication) is tried once more.

The test owns a throwaway PostgreSQL cluster (initdb + pg_ctl on a free port in a temporary
directory: restarting the shared server is not ours to do), migrates it with ``clinic db upgrade``
and runs gunicorn against it. A few threads drive authenticated ``GET /users/me`` and keyed
``POST /inventory/administrations``; meanwhile a control connection ``pg_terminate_backend``s
every app backend, three times, and the cluster is restarted with ``pg_ctl restart -m immediate``,
twice. Most faults land under load; one termination and one restart land in a quiet moment, when
the killed connections lie idle in the pools and the first requests after meet them.

Asserted: only requests in flight during a fault fail, and only as 503 problem+json with
Retry-After (never a 500, never a traceback); every request that starts after a fault succeeds;
each failed write, retried with its key, happens exactly once; the ledger has no partial write
(balances equal their movements, every entry its audit row, every key its answer, chains verify).
"""

from __future__ import annotations

import contextlib
import glob
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select

from clinic.audit.models import AuditEvent
from clinic.core.idempotency import IdempotencyKey
from clinic.extensions import db
from clinic.inventory import integrity
from clinic.inventory.models import Container, LedgerEntry
from tests.conftest import IN_CI, dispose, make_app
from tests.inventory.test_concurrency import BIN, _free_port, _setup
from tests.inventory.test_crash import Server

pytestmark = pytest.mark.slow

LEASE_SECONDS = 3  # a claim left by a request the restart killed is taken over this soon
THREADS = 4
TERMINATIONS = 3


def _postgres_bin() -> Path | None:
    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        if os.access(Path(found) / "initdb", os.X_OK) and os.access(Path(found) / "pg_ctl", os.X_OK):
            return Path(found)
    return None


class PrivateCluster:
    """A PostgreSQL cluster of this test's own, trust auth, loopback only, in a temporary directory."""

    def __init__(self, bindir: Path) -> None:
        self.bin = bindir
        self.port = _free_port()
        self.base = Path(tempfile.mkdtemp(prefix="clinic-pg-"))  # not under pytest's 0700 root tmp
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            import pwd

            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.base)
                message = "running as root and there is no postgres user to run the private cluster as"
                if IN_CI:
                    pytest.fail(message)
                pytest.skip(message)
            os.chown(self.base, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def options(self) -> str:
        # fsync off: a process crash (immediate shutdown) loses nothing committed; only the OS could.
        return f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.base} -c fsync=off"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _pg_ctl(self, *args: str) -> None:
        # Always -D our own directory: the shared server on 5432 is never touched.
        cmd = [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), *args]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        initdb = [str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
        subprocess.run([*self.as_user, *initdb, "--no-sync"], check=True, capture_output=True, timeout=120)
        self._pg_ctl("-o", self.options, "-w", "-t", "60", "start")

    def restart(self) -> None:
        self._pg_ctl("-o", self.options, "-w", "-t", "60", "-m", "immediate", "restart")

    def terminate_backends(self, database: str) -> int:
        """End every client backend of ``database``, waiting until each has gone."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                "WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall()
        return sum(1 for (ok,) in rows if ok)

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def destroy(self) -> None:
        if self.data.exists():
            with contextlib.suppress(subprocess.SubprocessError):
                self._pg_ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def private_pg() -> Iterator[PrivateCluster]:
    bindir = _postgres_bin()
    if bindir is None:
        if IN_CI:
            pytest.fail("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are missing; CI must run this test")
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    cluster = PrivateCluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@dataclass
class Call:
    kind: str  # "me" or "draw"
    key: str | None
    body: str | None
    started: float
    ended: float = 0.0
    status: int | None = None
    content_type: str = ""
    retry_after: str | None = None
    text: str = ""
    payload: dict = field(default_factory=dict)


def _send(port: int, token: str, kind: str, key: str | None = None, body: str | None = None) -> Call:
    call = Call(kind, key, body, time.monotonic())
    headers = {"Authorization": f"Bearer {token}"}
    if kind == "draw":
        headers |= {"Content-Type": "application/json", "Idempotency-Key": key or ""}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        if kind == "me":
            conn.request("GET", "/api/v1/users/me", headers=headers)
        else:
            conn.request("POST", "/api/v1/inventory/administrations", body=body, headers=headers)
        resp = conn.getresponse()
        call.text = resp.read().decode(errors="replace")
        call.status = resp.status
        call.content_type = resp.getheader("Content-Type") or ""
        call.retry_after = resp.getheader("Retry-After")
        with contextlib.suppress(ValueError):
            call.payload = {"replayed": resp.getheader("Idempotent-Replayed"), **json.loads(call.text or "{}")}
    except (OSError, http.client.HTTPException) as exc:
        call.text = f"no answer: {type(exc).__name__}"
    finally:
        conn.close()
        call.ended = time.monotonic()
    return call


def _draw_body(setup: dict, n: int) -> str:
    containers = setup["containers"]
    return json.dumps(
        {"container_id": containers[n % len(containers)], "patient_id": setup["patient_id"], "quantity_mg": "0.5"}
    )


def test_disconnects_and_a_restart_fail_only_requests_in_flight_and_lose_or_double_nothing(tmp_path, private_pg):
    database = "clinic"
    private_pg.create_database(database)
    url = private_pg.url(database)
    env = {**os.environ, "DATABASE_URL": url, "CLINIC_INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "disconnects"}
    upgraded = subprocess.run([str(BIN / "clinic"), "db", "upgrade"], env=env, capture_output=True, timeout=300)
    assert upgraded.returncode == 0, upgraded.stderr.decode(errors="replace")[-2000:]

    app = make_app(url)
    setup = _setup(app)
    dispose(app)  # the test's own connections must not be among those the faults hit
    server = Server(app, tmp_path)
    server.env["CLINIC_IDEMPOTENCY_LEASE_SECONDS"] = str(LEASE_SECONDS)
    server.start()

    calls: list[Call] = []
    lock = threading.Lock()
    stop = threading.Event()
    running = threading.Event()  # cleared: the load pauses between requests (a quiet moment)
    running.set()
    busy = [0]
    counter = iter(range(10**9))

    def load(token: str) -> None:
        while not stop.is_set():
            if not running.wait(timeout=0.1):
                continue
            with lock:
                busy[0] += 1
            n = next(counter)
            batch = [_send(server.port, token, "me")] if n % 2 else []
            batch.append(_send(server.port, token, "draw", uuid.uuid4().hex, _draw_body(setup, n)))
            with lock:
                calls.extend(batch)
                busy[0] -= 1

    def settle(n: int) -> None:  # let at least n more answers come in
        with lock:
            target = len(calls) + n
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with lock:
                if len(calls) >= target:
                    return
            time.sleep(0.02)
        raise AssertionError("the load stalled")

    @contextlib.contextmanager
    def quiet() -> Iterator[None]:
        """No request in flight: every pooled connection the fault kills lies idle in a pool, so only
        the retry at authentication stands between it and the next request."""
        running.clear()
        deadline = time.monotonic() + 60
        while True:
            with lock:
                if busy[0] == 0:
                    break
            assert time.monotonic() < deadline, "the load did not pause"
            time.sleep(0.02)
        try:
            yield
        finally:
            running.set()

    faults: list[tuple[str, float, float, int]] = []

    def terminate() -> None:
        begin = time.monotonic()
        ended = private_pg.terminate_backends(database)
        faults.append(("terminate", begin, time.monotonic(), ended))

    def restart() -> None:
        begin = time.monotonic()
        private_pg.restart()
        faults.append(("restart", begin, time.monotonic(), 0))

    threads = [threading.Thread(target=load, args=(setup["tokens"][i],)) for i in range(THREADS)]
    try:
        for t in threads:
            t.start()
        settle(20)
        for _ in range(TERMINATIONS - 1):  # under load
            terminate()
            settle(16)
        with quiet():
            terminate()
        settle(16)
        restart()  # under load: mid-run
        settle(30)
        with quiet():
            restart()
        settle(30)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)

    try:
        assert all(n > 0 for kind, _, _, n in faults if kind == "terminate"), faults

        # Every answer is a success, or a 503 problem+json with Retry-After for a request in flight
        # during a fault. Nothing else: no 500, no dropped connection, no traceback.
        def in_flight(call: Call) -> bool:
            return any(call.started <= end and call.ended >= begin for _, begin, end, _ in faults)

        failed = [c for c in calls if c.status not in (200, 201)]
        for c in failed:
            assert c.status == 503, (c.kind, c.status, c.text[:300])
            assert c.content_type.startswith("application/problem+json"), c.content_type
            assert c.retry_after and int(c.retry_after) > 0, c.text[:300]
            assert "Traceback" not in c.text
            assert in_flight(c), f"a {c.kind} in flight during no fault failed: {c.text[:300]}"
        for kind, _begin, end, _ in faults:  # the app recovered: requests after each fault got through
            after = [c for c in calls if c.started > end and not in_flight(c)]
            assert len(after) >= 10, (kind, len(after))

        # Each failed write, retried with its own key, happens once (a claim the fault left behind is
        # leased: 409 until the lease runs out, then the retry completes it).
        answered = {c.key: c for c in calls if c.kind == "draw" and c.status == 201}
        for c in [c for c in failed if c.kind == "draw"]:
            deadline = time.monotonic() + LEASE_SECONDS + 30
            while True:
                retry = _send(server.port, setup["tokens"][0], "draw", c.key, c.body)
                if retry.status == 201:
                    answered[c.key] = retry
                    break
                assert retry.status == 409 and retry.payload.get("code") == "idempotency_in_flight", retry.text
                assert time.monotonic() < deadline, f"key {c.key} still claimed after its lease"
                time.sleep(0.3)
        bodies = {c.key: c.body for c in calls if c.kind == "draw"}
        replays = {key: _send(server.port, setup["tokens"][0], "draw", key, bodies[key]) for key in answered}
    finally:
        server.stop()
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert '"unhandled' not in log, log[-3000:]

    # a key that runs again was answered 201 for work the database lost (acknowledged before durable)
    ran_again = [r.text[:300] for r in replays.values() if not (r.status == 201 and r.payload["replayed"] == "true")]
    assert not ran_again, ran_again[:3]
    assert {k: r.payload["hash"] for k, r in replays.items()} == {k: c.payload["hash"] for k, c in answered.items()}
    assert len(answered) == len({c.key for c in calls if c.kind == "draw"})  # every write, once

    check = make_app(url)
    try:
        with check.app_context():
            entries = db.session.scalars(
                select(LedgerEntry).where(
                    LedgerEntry.location_id == setup["location_id"], LedgerEntry.kind == "administration"
                )
            ).all()
            assert len(entries) == len(answered)  # none lost, none twice
            assert {e.hash for e in entries} == {c.payload["hash"] for c in answered.values()}
            audited = db.session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.tag == "inventory:ledger:administration")
            )
            assert audited == len(entries)  # no entry without its audit row (same transaction)
            unanswered = db.session.scalar(
                select(func.count()).select_from(IdempotencyKey).where(IdempotencyKey.status_code.is_(None))
            )
            assert unanswered == 0
            for cid in setup["containers"]:
                moved = db.session.scalar(select(func.sum(LedgerEntry.delta_ug)).where(LedgerEntry.container_id == cid))
                balance = db.session.get(Container, cid).balance_ug
                assert balance == moved and balance >= 0
            assert integrity.verify_location(setup["location_id"]).ok
    finally:
        dispose(check)

"""Concurrent draws through the real HTTP API (F1, F2, F7): gunicorn, several client processes.

Invariants afterwards: no negative balance; every container's balance equals its movements
exactly; every 2xx answer has exactly one entry (replays with the same Idempotency-Key none);
the chain has no gaps and no forks; the verifier passes; no 5xx, every refusal is problem+json.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from clinic import fixtures
from clinic.auth import service as auth
from clinic.extensions import db
from clinic.inventory import integrity
from clinic.inventory import service as inventory
from clinic.inventory.models import Container, LedgerEntry
from tests.clock import clock_env, in_years
from tests.conftest import require_service, temp_app
from tests.inventory.conftest import dea_number, ndc

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
VIALS = 8
DRAWS_PER_CLIENT = 40


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _setup(app) -> dict:
    with app.app_context():
        nurse = fixtures.create_user(
            role="nurse", email="c-nurse@test.clinic", password="concurrency-pass-1", license_number="1"
        )
        witness = fixtures.create_user(
            role="nurse", email="c-witness@test.clinic", password="concurrency-pass-2", license_number="2"
        )
        loc = fixtures.create_location(nurse, dea_registration=dea_number(), timezone="UTC", storage_sites=("Safe",))
        drug = fixtures.create_drug(nurse, fixtures.KETAMINE_50, ndc=ndc())
        patient = fixtures.create_patient(nurse, first_name="P", last_name="Q", timezone="UTC")
        fixtures.open_ledger(nurse, loc.id, inventory.WitnessSignature(witness.email, "concurrency-pass-2"))
        receipt = fixtures.create_receipt(
            nurse, storage_site_id=loc.sites[0], drug_id=drug.id, count=VIALS, expires_on=in_years(4)
        )
        tokens = [auth.issue_token(user=nurse)[0] for _ in range(8)]
        db.session.commit()
        return {
            "location_id": loc.id,
            "containers": [c.id for c in receipt.containers],
            "patient_id": patient.id,
            "tokens": tokens,
        }


def _client(args: tuple) -> list[tuple[str, int, str]]:
    port, token, containers, patient_id, seed = args
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    results = []
    last = None
    for _ in range(DRAWS_PER_CLIENT):
        if last is not None and rng.random() < 0.2:
            key, body = last  # a resend after a "lost" answer
        else:
            body = json.dumps(
                {
                    "container_id": rng.choice(containers),
                    "patient_id": patient_id,
                    "quantity_mg": f"{rng.randint(1, 300) / 10:.1f}",
                }
            )
            key = uuid.uuid4().hex
        conn.request(
            "POST",
            "/api/v1/inventory/administrations",
            body=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Idempotency-Key": key},
        )
        resp = conn.getresponse()
        payload = resp.read().decode()
        results.append((key, resp.status, resp.getheader("Content-Type") or ""))
        if resp.status == 201:
            results[-1] = (key, 201, json.loads(payload)["hash"])
        last = (key, body)
    conn.close()
    return results


@pytest.mark.parametrize(("backend_name", "clients"), [("postgresql", 8), ("sqlite", 4)])
def test_concurrent_draws_keep_every_invariant(tmp_path, backend_name, clients):
    if backend_name == "postgresql":
        require_service("PostgreSQL", "127.0.0.1", 5432)
    with temp_app(backend_name, "concurrency") as app:
        setup = _setup(app)
        port = _free_port()
        log = (tmp_path / "gunicorn.log").open("w+b")  # a pipe would fill up and block the workers
        env = {
            **os.environ,
            "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
            "CLINIC_INSTANCE_PATH": str(tmp_path),
            "SECRET_KEY": "concurrency-test",
            **clock_env(),
        }
        server = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "4",
                "--worker-class",
                "gthread",
                "--threads",
                "2",
                "--log-level",
                "warning",
                "clinic.wsgi:app",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            for _ in range(100):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    time.sleep(0.1)
            work = [
                (port, setup["tokens"][i], setup["containers"], setup["patient_id"], 1000 + i) for i in range(clients)
            ]
            with multiprocessing.get_context("spawn").Pool(clients) as pool:
                answers = [a for chunk in pool.map(_client, work) for a in chunk]
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.seek(0)
            err = log.read()
            log.close()

        statuses = [status for _, status, _ in answers]
        assert not [s for s in statuses if s >= 500], err.decode(errors="replace")[-3000:]
        refused = [(s, ct) for _, s, ct in answers if s != 201]
        assert all(s in (409, 422) and ct.startswith("application/problem+json") for s, ct in refused), refused
        committed_keys = {key for key, status, _ in answers if status == 201}
        hashes_by_key: dict[str, set[str]] = {}
        for key, status, h in answers:
            if status == 201:
                hashes_by_key.setdefault(key, set()).add(h)
        assert all(len(h) == 1 for h in hashes_by_key.values()), "a replay answered a different entry"

        with app.app_context():
            entries = db.session.scalars(
                select(LedgerEntry).where(LedgerEntry.location_id == setup["location_id"]).order_by(LedgerEntry.seq)
            ).all()
            administrations = [e for e in entries if e.kind == "administration"]
            assert len(administrations) == len(committed_keys)
            assert {e.hash for e in administrations} == {next(iter(h)) for h in hashes_by_key.values()}
            assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
            assert len({e.prev_hash for e in entries}) == len(entries)  # no forks
            for cid in setup["containers"]:
                container = db.session.get(Container, cid)
                moved = db.session.scalar(select(func.sum(LedgerEntry.delta_ug)).where(LedgerEntry.container_id == cid))
                assert container.balance_ug >= 0
                assert container.balance_ug == moved
            report = integrity.verify_location(setup["location_id"])
            assert report.ok, report
        # Enough contention to mean something: many draws succeeded, and some found their vial too low.
        assert len(committed_keys) > clients * DRAWS_PER_CLIENT * 0.4
        if clients * DRAWS_PER_CLIENT * 15 > VIALS * 500:
            assert any(s == 409 for s in statuses)

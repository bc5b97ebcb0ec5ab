"""A large export through the real Celery path: the API queues it (202) and hands the task to Redis
after its commit, a real worker process (celery -A worker worker) takes it, writes the bundle with
its progress committed per batch, and the auditor downloads a bundle clinic-verify accepts.

This module runs on its own database per backend (the ``app`` fixture below overrides the session
one, so ``shop`` builds its clinic there), sending on a queue of its own on the test Redis: no other
test's worker or message can take part."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from clinic.exports import verifier
from tests.clock import clock_env
from tests.conftest import REDIS_URL, require_service, temp_app
from tests.exports.conftest import period

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
QUEUE = f"exports-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def app(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    from clinic.extensions import celery_init_app

    require_service("Redis", "127.0.0.1", 6379)
    instance = tmp_path_factory.mktemp("worker-instance")
    with temp_app(
        backend, "exportworker", EXPORT_DIR=str(instance / "exports"), CHECKPOINT_LOG=str(instance / "cp.jsonl")
    ) as application:
        application.config["CELERY"] = {
            **application.config["CELERY"],
            "broker_url": REDIS_URL,
            "broker_transport_options": {"visibility_timeout": 3600},
            "task_default_queue": QUEUE,
        }
        celery_init_app(application)  # this app's Celery, on Redis, is the one delay() sends with
        yield application


def _worker(app: Flask) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **clock_env(),
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "CELERY_BROKER_URL": REDIS_URL,
        "CLINIC_INSTANCE_PATH": app.instance_path,  # the same signing key
        "CLINIC_EXPORT_DIR": app.config["EXPORT_DIR"],
        "CLINIC_CHECKPOINT_LOG": app.config["CHECKPOINT_LOG"],
    }
    return subprocess.Popen(
        [
            str(BIN / "celery"),
            "-A",
            "worker",
            "worker",
            "--pool=solo",
            "-Q",
            QUEUE,
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _stop(proc: subprocess.Popen[bytes]) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return (err or b"").decode(errors="replace")[-2000:]


def _download(shop, path: str) -> bytes:  # type: ignore[no-untyped-def]
    resp = shop.client.get(path, headers=shop.auditor_h)
    try:
        assert resp.status_code == 200, path
        return resp.data
    finally:
        resp.close()


def test_a_queued_export_runs_on_a_real_worker_and_verifies(shop, tmp_path):
    since, until = period()
    shop.app.extensions["celery"].set_default()
    shop.app.config["EXPORT_INLINE_ROWS"] = 0
    try:
        queued = shop.client.post(
            "/api/v1/exports",
            headers=shop.auditor_h,
            json={"kind": "ledger", "format": "csv", "since": since, "until": until, "location_id": shop.location_id},
        )
    finally:
        shop.app.config["EXPORT_INLINE_ROWS"] = 5000
    assert queued.status_code == 202 and queued.json["status"] == "queued", queued.json
    export_id = queued.json["id"]
    proc = _worker(shop.app)
    job: dict = {}
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            job = shop.client.get(f"/api/v1/exports/{export_id}", headers=shop.auditor_h).json
            if job["status"] in ("done", "failed") or proc.poll() is not None:
                break
            time.sleep(0.3)
    finally:
        log = _stop(proc)
    assert job.get("status") == "done", f"{job}\nthe worker said:\n{log}"
    assert job["rows_done"] == job["rows_total"] > 0 and job["rows"] > 0
    assert job["verification"].startswith("OK:"), job

    # the auditor's side: download the bundle and verify it offline with the pinned key
    manifest = json.loads(_download(shop, f"/api/v1/exports/{export_id}/manifest"))
    name = next(f["name"] for f in manifest["files"] if f["role"] == "export")
    (tmp_path / name).write_bytes(_download(shop, f"/api/v1/exports/{export_id}/file"))
    (tmp_path / (name + ".manifest.json")).write_text(json.dumps(manifest))
    for f in manifest["files"]:
        if f["role"] != "export":
            (tmp_path / f["name"]).write_bytes(_download(shop, f"/api/v1/exports/{export_id}/files/{f['name']}"))
    key = shop.client.get("/api/v1/exports/signing-key", headers=shop.auditor_h).json["public_key"]
    out = io.StringIO()
    old, sys.stdout = sys.stdout, out
    try:
        code = verifier.main([str(tmp_path / name), "--public-key", key])
    finally:
        sys.stdout = old
    assert code == 0, out.getvalue()
    assert manifest["rows"] == job["rows"]

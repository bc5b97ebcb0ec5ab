"""SYS-07: no server log line carries a query value or a token (PHI stays out of logs).

Canary values go in query strings, a calendar feed's path, a bad request line and a referring URL,
through the development server (``clinic run``), gunicorn with the shipped config (``-c
python:clinic.gunicorn_conf``, as the Dockerfile and compose run it) and the app in-process; then
every captured log is searched. Before the fix the development server logged whole request lines.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.web.test_browser import BIN, BIND, _clinic, _free_port, _server_env, _wait_healthy

CANARY = "Canary" + uuid.uuid4().hex[:10]
FEED_TOKEN = "Tok" + CANARY + "xYz_-0123456789abcdef0123"
REQUESTS = [
    f"/patients?q={CANARY}&date_of_birth=1961-02-03{CANARY}",
    f"/calendar/{FEED_TOKEN}.ics",
    f"/api/v1/inventory/ledger?since={CANARY}",
    f"/api/v1/reminders?patient_id={CANARY}",
    f"/login?next=/patients%3Fq%3D{CANARY}",
    f"/static/{CANARY}.js?v={CANARY}",
]


def _hit(base: str) -> None:
    for path in REQUESTS:
        req = urllib.request.Request(base + path, headers={"Referer": f"{base}/patients?q={CANARY}"})  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - our own loopback server
                resp.read()
        except urllib.error.HTTPError as exc:
            exc.close()
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:  # a request line no server accepts
        sock.sendall(f"GET /x?{CANARY} HTTP/1.1 extra\r\n\r\n".encode())
        sock.recv(1024)


def _serve(cmd: list[str], env: dict[str, str], log_path: Path, port: int) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    _wait_healthy(proc, f"http://{BIND}:{port}/health", log_path)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    instance = tmp_path_factory.mktemp("canary-instance")
    env = _server_env(instance)
    _clinic(env, "db", "upgrade")
    servers = {
        "clinic run": [str(BIN / "clinic"), "run", "--host", BIND, "--port", "{port}"],
        "gunicorn": [
            str(BIN / "gunicorn"), "-c", "python:clinic.gunicorn_conf", "--workers", "1",
            "--bind", f"{BIND}:{{port}}", "clinic.wsgi:app",
        ],
    }  # fmt: skip
    logs = {}
    for name, template in servers.items():
        port = _free_port()
        log_path = instance / f"{name.replace(' ', '-')}.log"
        proc = _serve([part.replace("{port}", str(port)) for part in template], env, log_path, port)
        try:
            _hit(f"http://{BIND}:{port}")
        finally:
            _stop(proc)
        logs[name] = log_path.read_text(errors="replace")
    return logs


@pytest.mark.parametrize("server", ["clinic run", "gunicorn"])
def test_server_logs_carry_no_query_values_or_tokens(server_logs: dict[str, str], server: str) -> None:
    log = server_logs[server]
    assert "/health" in log, log[-2000:]  # the server did log its request lines
    assert CANARY.lower() not in log.lower(), [line for line in log.splitlines() if CANARY.lower() in line.lower()]


def test_in_process_logs_carry_no_query_values(app, client, token_for, caplog: pytest.LogCaptureFixture) -> None:
    headers = token_for("nurse")
    with caplog.at_level(logging.DEBUG):
        for path in REQUESTS:
            client.get(path, headers=headers).close()
            client.get(path).close()
    assert caplog.records
    for record in caplog.records:
        text = record.getMessage() + repr(vars(record))
        assert CANARY not in text, text

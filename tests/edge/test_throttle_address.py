"""SYS-08: one address full of unknown-account failures does not lock out known accounts.

Before the fix, 20 failed sign-ins with random e-mails from one address made every correct sign-in
and every witness signature from that address a 429 (and behind a TLS proxy every client is one
address); the client address is now taken from a configured number of trusted proxies.
"""

from __future__ import annotations

import random
import uuid

import pytest

from tests.conftest import Client, sign_in
from tests.inventory.conftest import clinic  # noqa: F401 - the fixture


def _addr() -> str:
    return f"198.51.100.{random.randint(1, 254)}"


@pytest.fixture
def address_limit(app, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES_PER_ADDRESS", 20)
    return 20


def _fail_unknown(client, addr: str, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    body = {"password": "not-a-password"}
    return [
        client.post(
            "/api/v1/auth/tokens",
            json={**body, "email": f"{uuid.uuid4().hex[:10]}@nowhere.example"},
            environ_base={"REMOTE_ADDR": addr},
        ).status_code
        for _ in range(n)
    ]


def test_unknown_account_failures_do_not_block_known_accounts(
    app, client, make_user, address_limit, monkeypatch, request
):
    ward = request.getfixturevalue("clinic")
    monkeypatch.setitem(app.config, "LOGIN_BASE_DELAY_SECONDS", 600)  # the address still waits at the end
    addr = _addr()
    env = {"REMOTE_ADDR": addr}
    assert _fail_unknown(client, addr, address_limit) == [401] * address_limit
    # The address now waits for unknown accounts (growing delays) ...
    refused = _fail_unknown(client, addr, 1)[0]
    assert refused == 429
    # ... but a known nurse signs in, by the API and by the page, and a witness signs a waste.
    nurse = make_user("nurse")
    token = client.post(
        "/api/v1/auth/tokens", json={"email": nurse.email, "password": nurse.password}, environ_base=env
    )
    assert token.status_code == 201, token.json
    app.test_client_class = Client
    page_client = app.test_client()
    page_client.environ_base.update(env)
    sign_in(page_client, make_user("nurse"))
    cid = ward.receive(1).json["containers"][0]["id"]
    waste = ward.client.post(
        "/api/v1/inventory/wastes",
        json={
            "container_id": cid,
            "quantity_mg": "5",
            "reason": "drawn, not given",
            "no_administration_reason": "declined",
            **ward.witness_fields(),
        },
        headers=ward.nurse_h,
        environ_base=env,
    )
    assert waste.status_code == 201, waste.json
    # A wrong password on a known account from the waiting address answers as an unknown e-mail does.
    wrong = client.post("/api/v1/auth/tokens", json={"email": nurse.email, "password": "nope"}, environ_base=env)
    assert wrong.status_code == 429 and int(wrong.headers["Retry-After"]) >= 1


def test_the_wait_grows_with_each_failure(app, client, address_limit):
    from datetime import timedelta

    from sqlalchemy import update

    from clinic.auth.models import AuthAttempt
    from clinic.core.time import utcnow
    from clinic.extensions import db

    addr = _addr()
    waits = []
    for _ in range(3):
        _fail_unknown(client, addr, address_limit if not waits else 1)
        waits.append(int(_blocked(client, addr).headers["Retry-After"]))
        with app.app_context():  # let the wait pass: move every failure of this address back by it
            db.session.execute(
                update(AuthAttempt)
                .where(AuthAttempt.client_addr == addr)
                .values(attempted_at=utcnow() - timedelta(seconds=waits[-1] + 1))
            )
            db.session.commit()
    assert waits[0] < waits[1] < waits[2], waits


def _blocked(client, addr: str):  # type: ignore[no-untyped-def]
    resp = client.post(
        "/api/v1/auth/tokens", json={"email": "x@nowhere.example", "password": "x"}, environ_base={"REMOTE_ADDR": addr}
    )
    assert resp.status_code == 429, resp.json
    return resp


def test_the_client_address_comes_from_trusted_proxies_only(app, client, monkeypatch):
    from clinic.core.edge import trust_proxies

    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES_PER_ADDRESS", 2)
    n = random.randint(1, 250)

    def attempt(forwarded: str) -> int:
        return client.post(
            "/api/v1/auth/tokens",
            json={"email": f"{uuid.uuid4().hex[:8]}@nowhere.example", "password": "x"},
            headers={"X-Forwarded-For": forwarded},
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        ).status_code

    monkeypatch.setattr(app, "wsgi_app", app.wsgi_app)  # restored afterwards
    trust_proxies(app, 1)  # as CLINIC_TRUSTED_PROXIES=1 does at start-up
    assert [attempt(f"203.0.{n}.9") for _ in range(3)] == [401, 401, 429]
    # Another client behind the same proxy is another address.
    assert attempt(f"203.0.{n}.10") == 401
    # A client cannot pick its address: what it prepends itself is further left and ignored.
    assert attempt(f"203.0.{n}.10, 203.0.{n}.9") == 429


def test_without_trusted_proxies_the_header_changes_nothing(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES_PER_ADDRESS", 2)
    addr = {"REMOTE_ADDR": _addr()}
    codes = [
        client.post(
            "/api/v1/auth/tokens",
            json={"email": f"{uuid.uuid4().hex[:8]}@nowhere.example", "password": "x"},
            headers={"X-Forwarded-For": f"203.0.113.{i}"},
            environ_base=addr,
        ).status_code
        for i in range(3)
    ]
    assert codes == [401, 401, 429]

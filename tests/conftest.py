"""Shared fixtures. The same tests run on SQLite (the embedded default) and on PostgreSQL.

Each backend gets a fresh database for the session, built by ``alembic upgrade head`` (the
migrations are what production runs). Tests do not share rows: every helper makes unique users,
so tests stay independent without truncating the append-only tables.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import socket
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import clock

IN_CI = os.environ.get("CI") == "true"
PG_ADMIN_URL = os.environ.get("CLINIC_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CLINIC_TEST_REDIS", "redis://127.0.0.1:6379/15")
BACKENDS = [b for b in os.environ.get("CLINIC_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]

_INSTANCE = Path(tempfile.mkdtemp(prefix="clinic-test-"))
os.environ["CLINIC_INSTANCE_PATH"] = str(_INSTANCE)
for var in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "SECRET_KEY"):
    os.environ.pop(var, None)


#: e-mail domain of test users who work at every location (as the upgrade to memberships made every
#: existing user): most tests are about something else than where staff work. tests/auth/
#: test_memberships.py makes users of other domains, members only where it says.
ROAMING_DOMAIN = "@test.clinic"


def _roaming_members(session: Any, flush_context: Any) -> None:
    """Roaming test users work at every location: one created in a test process gets them all as
    members, and one of them created here joins every location there is."""
    from sqlalchemy import text

    from clinic.auth.models import User
    from clinic.locations.models import Location

    for obj in session.new:
        if isinstance(obj, Location):
            session.execute(
                text(
                    "INSERT INTO location_members (location_id, user_id, granted_at) "
                    "SELECT :loc, id, CURRENT_TIMESTAMP FROM users WHERE email LIKE :domain AND role <> 'admin'"
                ),
                {"loc": obj.id, "domain": f"%{ROAMING_DOMAIN}"},
            )
        elif isinstance(obj, User) and obj.email.endswith(ROAMING_DOMAIN) and obj.role != "admin":
            session.execute(
                text(
                    "INSERT INTO location_members (location_id, user_id, granted_at) "
                    "SELECT id, :user, CURRENT_TIMESTAMP FROM locations"
                ),
                {"user": obj.id},
            )


def pytest_configure(config: pytest.Config) -> None:
    # Before collection: some test modules compute dates when they are imported.
    clock.start_shift()
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    event.listen(Session, "after_flush", _roaming_members)


def pytest_unconfigure(config: pytest.Config) -> None:
    clock.stop_shift()


def pytest_report_header(config: pytest.Config) -> str:
    target = clock.shift_target()
    return f"clock: shifted to {target.isoformat()} ({clock.SHIFT_VAR})" if target else "clock: real"


TEST_CONFIG = {
    "TESTING": True,
    # Tests all come from 127.0.0.1; the per-address limit is tested with its own addresses.
    "LOGIN_MAX_FAILURES_PER_ADDRESS": 1_000_000,
}


def service_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip locally when a server is missing; in CI a missing server is a failure, never a skip."""
    if service_up(host, port):
        return
    if IN_CI:
        pytest.fail(f"{name} is not answering on {host}:{port} (CI must run against it)")
    pytest.skip(f"{name} not running on {host}:{port}")


def create_pg_database(prefix: str) -> str:
    import psycopg

    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url(backend: str, label: str) -> str:
    if backend == "postgresql":
        return create_pg_database(f"clinic_test_{label}")
    return f"sqlite:///{_INSTANCE / f'{label}-{uuid.uuid4().hex[:6]}.sqlite'}"


def make_app(url: str, **extra: object) -> Flask:
    from clinic import create_app

    return create_app({**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": url, **extra})


def migrate(app: Flask, revision: str = "head") -> None:
    from alembic import command

    from clinic.cli import alembic_config

    with app.app_context():
        command.upgrade(alembic_config(), revision)


def dispose(app: Flask) -> None:
    from clinic.extensions import db

    with app.app_context():
        db.engine.dispose()


@contextlib.contextmanager
def temp_app(backend: str, label: str, *, migrated: bool = True, **extra: object) -> Iterator[Flask]:
    """A throwaway app on its own fresh database, disposed and dropped afterwards."""
    url = database_url(backend, label)
    application = make_app(url, **extra)
    application.test_client_class = Client
    try:
        if migrated:
            migrate(application)
        yield application
    finally:
        dispose(application)
        if backend == "postgresql":
            drop_pg_database(url)


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def app(backend: str) -> Iterator[Flask]:
    url = database_url(backend, "main")
    application = make_app(url)
    migrate(application)
    yield application
    dispose(application)
    if backend == "postgresql":
        drop_pg_database(url)


@pytest.fixture
def app_ctx(app: Flask) -> Iterator[Flask]:
    with app.app_context():
        yield app


class Client(FlaskClient):
    """Talks https, as production does, so the __Host- Secure cookie is sent back."""

    def open(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("base_url", "https://localhost")
        # Browsers send a same-origin Referer; Flask-WTF checks it on https (WTF_CSRF_SSL_STRICT).
        headers = dict(kwargs.pop("headers", None) or {})
        headers.setdefault("Referer", "https://localhost/")
        kwargs["headers"] = headers
        return super().open(*args, **kwargs)

    def csrf(self, path: str = "/login") -> str:
        page = self.get(path).get_data(as_text=True)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match, f"no CSRF token on {path}"
        return match.group(1)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    app.test_client_class = Client
    return app.test_client()


_seq = itertools.count(1)


@dataclass
class Account:
    id: int
    email: str
    password: str
    role: str
    totp_secret: str | None

    def totp_now(self) -> str:
        assert self.totp_secret
        return pyotp.TOTP(self.totp_secret).now()


def create_account(
    app: Flask,
    role: str = "nurse",
    *,
    label: str = "",
    licensed: bool = True,
    enrol_totp: bool | None = None,
    password: str | None = None,
    locations: Sequence[int] | None = None,
) -> Account:
    """A committed user with a unique email (clinic.fixtures); roles needing TOTP get an enrolled secret.

    ``locations``: the locations the user is a member of; None makes a user of every location,
    present and future (ROAMING_DOMAIN)."""
    from clinic import fixtures
    from clinic.core.tx import commit

    n = next(_seq)
    domain = ROAMING_DOMAIN if locations is None else "@member.clinic"
    email = f"{role}.{label}{n}.{uuid.uuid4().hex[:6]}{domain}"
    if password is None:
        from clinic.auth import passwords

        # a random one can hold a word of the random e-mail ("defd" of "30defd"), which the rules refuse
        password = f"pw-{uuid.uuid4().hex}"
        while passwords.problems(password, email=email, name=f"Test {role} {label}{n}"):
            password = f"pw-{uuid.uuid4().hex}"
    with app.app_context():
        user = fixtures.create_user(
            role=role,
            email=email,
            name=f"Test {role} {label}{n}",
            password=password,
            license_type="RN" if licensed else None,
            license_number=f"L-{label}{n}-{uuid.uuid4().hex[:4]}" if licensed else None,
            location_ids=locations or (),
        )
        secret = None
        if enrol_totp if enrol_totp is not None else role in app.config["TOTP_REQUIRED_ROLES"]:
            secret = pyotp.random_base32()
            user.totp_secret = secret
        commit()
        return Account(user.id, email, password, role, secret)


@pytest.fixture
def make_user(app: Flask):  # type: ignore[no-untyped-def]
    """Create a committed user with a unique email; roles needing TOTP get an enrolled secret."""

    def _make(
        role: str = "nurse",
        *,
        licensed: bool = True,
        enrol_totp: bool | None = None,
        password: str | None = None,
        locations: Sequence[int] | None = None,
    ) -> Account:
        return create_account(
            app, role, licensed=licensed, enrol_totp=enrol_totp, password=password, locations=locations
        )

    return _make


def bearer(app: Flask, account: Account) -> dict[str, str]:
    from clinic.auth import service
    from clinic.auth.models import User
    from clinic.core.tx import commit
    from clinic.extensions import db

    with app.app_context():
        token, _ = service.issue_token(user=db.session.get(User, account.id))
        commit()
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def token_for(app: Flask, make_user):  # type: ignore[no-untyped-def]
    def _token(role: str = "nurse") -> dict[str, str]:
        return bearer(app, make_user(role))

    return _token


def sign_in(client: Client, account: Account) -> None:
    """Through the real pages: password, then the second factor when the account has one."""
    resp = client.post(
        "/login", data={"email": account.email, "password": account.password, "csrf_token": client.csrf()}
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)[-500:]
    if resp.location.endswith("/login/totp"):
        resp = client.post("/login/totp", data={"code": account.totp_now(), "csrf_token": client.csrf("/login/totp")})
        assert resp.status_code == 302
    assert not resp.location.startswith("/login")


@pytest.fixture
def login_as(app: Flask, make_user):  # type: ignore[no-untyped-def]
    """A fresh client signed in as a new user of ``role``; returns (client, account)."""

    def _login(role: str = "nurse") -> tuple[Client, Account]:
        app.test_client_class = Client
        c = app.test_client()
        account = make_user(role)
        sign_in(c, account)  # type: ignore[arg-type]
        return c, account  # type: ignore[return-value]

    return _login

"""API sign-in: tokens, wrong passwords, throttling, second factor, revocation."""

from __future__ import annotations

import time
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import func, inspect, select, update

from clinic.auth.models import ApiToken, AuthAttempt, User
from clinic.core.time import utcnow
from clinic.extensions import db

PROBLEM = "application/problem+json"


def _token(client, email, password, **extra):
    return client.post("/api/v1/auth/tokens", json={"email": email, "password": password, **extra})


def test_token_for_right_password_works_on_users_me(client, make_user):
    nurse = make_user("nurse")
    resp = _token(client, nurse.email, nurse.password)
    assert resp.status_code == 201
    assert resp.json["token"].startswith("cot_")
    me = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {resp.json['token']}"})
    assert me.status_code == 200
    assert me.json == {
        "id": nurse.id,
        "email": nurse.email,
        "name": me.json["name"],
        "role": "nurse",
        "license_number": me.json["license_number"],
        "license_type": "RN",
        "is_active": True,
    }


def test_token_is_stored_only_as_hash(app, client, make_user):
    nurse = make_user("nurse")
    token = _token(client, nurse.email, nurse.password).json["token"]
    with app.app_context():
        stored = db.session.scalars(select(ApiToken.token_hash).where(ApiToken.user_id == nurse.id)).all()
    assert len(stored) == 1
    assert token not in stored[0] and len(stored[0]) == 64


def test_wrong_password_is_401_problem_and_same_as_unknown_email(client, make_user):
    nurse = make_user("nurse")
    wrong = _token(client, nurse.email, "not-the-password")
    unknown = _token(client, "nobody-" + nurse.email, "not-the-password")
    for resp in (wrong, unknown):
        assert resp.status_code == 401
        assert resp.mimetype == PROBLEM
        assert resp.json["type"] and resp.json["title"] and resp.json["status"] == 401
        assert "token" not in resp.json
    assert {k: v for k, v in wrong.json.items() if k != "instance"} == {
        k: v for k, v in unknown.json.items() if k != "instance"
    }


def test_missing_fields_are_422_listing_fields(client):
    resp = client.post("/api/v1/auth/tokens", json={"email": "x@y.z"})
    assert resp.status_code == 422
    assert resp.mimetype == PROBLEM
    assert set(resp.json["errors"]) == {"password"}


def test_repeated_wrong_passwords_are_throttled_even_for_the_right_one(app, client, make_user):
    nurse = make_user("nurse")
    limit = app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]
    statuses = [_token(client, nurse.email, f"wrong-{i}").status_code for i in range(limit)]
    assert statuses == [401] * limit
    throttled = _token(client, nurse.email, nurse.password)
    assert throttled.status_code == 429
    assert throttled.mimetype == PROBLEM
    retry_after = int(throttled.headers["Retry-After"])
    assert 0 < retry_after <= app.config["LOGIN_WINDOW_MINUTES"] * 60 + 1
    # 100 more guesses: none is even checked, none succeeds, each is refused.
    assert {_token(client, nurse.email, "guess").status_code for _ in range(20)} == {429}


def test_throttle_lifts_once_failures_age_out_of_the_window(app, client, make_user):
    nurse = make_user("nurse")
    for i in range(app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]):
        _token(client, nurse.email, f"wrong-{i}")
    assert _token(client, nurse.email, nurse.password).status_code == 429
    with app.app_context():
        # auth_attempts is an operational table (not append-only): age the failures.
        db.session.execute(
            update(AuthAttempt)
            .where(AuthAttempt.email == nurse.email)
            .values(attempted_at=utcnow() - timedelta(hours=1))
        )
        db.session.commit()
    assert _token(client, nurse.email, nurse.password).status_code == 201


def test_throttle_per_client_address(app, client, make_user):
    """Failures naming no account fill the address's limit; then attempts naming no account wait,
    while known accounts sign in from there (their own limit guards them: SYS-08)."""
    limit = 3
    old = app.config["LOGIN_MAX_FAILURES_PER_ADDRESS"]
    app.config["LOGIN_MAX_FAILURES_PER_ADDRESS"] = limit
    try:
        addr = {"REMOTE_ADDR": f"10.{time.time_ns() % 250}.7.9"}
        other = {"REMOTE_ADDR": f"10.{time.time_ns() % 250}.8.9"}

        def unknown(environ: dict[str, str]) -> int:
            body = {"email": f"ghost.{time.time_ns()}@test.clinic", "password": "x"}
            return client.post("/api/v1/auth/tokens", json=body, environ_base=environ).status_code

        assert [unknown(addr) for _ in range(limit)] == [401] * limit
        assert unknown(addr) == 429
        assert unknown(other) == 401  # another address is not waiting
        known = make_user("nurse")
        resp = client.post(
            "/api/v1/auth/tokens", json={"email": known.email, "password": known.password}, environ_base=addr
        )
        assert resp.status_code == 201
    finally:
        app.config["LOGIN_MAX_FAILURES_PER_ADDRESS"] = old


def test_admin_token_needs_totp_and_a_code_is_single_use(client, make_user):
    admin = make_user("admin")
    missing = _token(client, admin.email, admin.password)
    assert missing.status_code == 401
    assert missing.json["code"] == "second_factor_required"
    code = admin.totp_now()
    assert _token(client, admin.email, admin.password, totp_code=code).status_code == 201
    replay = _token(client, admin.email, admin.password, totp_code=code)
    assert replay.status_code == 401
    assert replay.json["code"] == "invalid_credentials"


def test_stale_totp_code_is_rejected(client, make_user):
    admin = make_user("admin")
    stale = pyotp.TOTP(admin.totp_secret).at(time.time() - 90)
    assert _token(client, admin.email, admin.password, totp_code=stale).status_code == 401


def test_disabled_user_token_stops_at_once(app, client, make_user, token_for):
    nurse = make_user("nurse")
    headers = {"Authorization": f"Bearer {_token(client, nurse.email, nurse.password).json['token']}"}
    assert client.get("/api/v1/users/me", headers=headers).status_code == 200
    with app.app_context():
        from clinic.auth import service

        admin = db.session.get(User, make_user("admin").id)
        service.set_active(actor=admin, user_id=nurse.id, is_active=False)
        db.session.commit()
    assert client.get("/api/v1/users/me", headers=headers).status_code == 401
    assert _token(client, nurse.email, nurse.password).status_code == 401


def test_expired_token_is_refused(app, client, make_user):
    nurse = make_user("nurse")
    headers = {"Authorization": f"Bearer {_token(client, nurse.email, nurse.password).json['token']}"}
    with app.app_context():
        db.session.execute(
            update(ApiToken).where(ApiToken.user_id == nurse.id).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    resp = client.get("/api/v1/users/me", headers=headers)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"


def test_revoking_the_current_token(client, make_user):
    nurse = make_user("nurse")
    headers = {"Authorization": f"Bearer {_token(client, nurse.email, nurse.password).json['token']}"}
    assert client.delete("/api/v1/auth/tokens/current", headers=headers).status_code == 204
    assert client.get("/api/v1/users/me", headers=headers).status_code == 401


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Basic abc", "Bearer cot_forged", "bearer  "])
def test_malformed_or_forged_authorization_is_401(client, header):
    resp = client.get("/api/v1/users/me", headers={"Authorization": header})
    assert resp.status_code == 401
    assert resp.mimetype == PROBLEM


def test_failed_attempts_are_recorded_but_not_the_password(app, client, make_user):
    nurse = make_user("nurse")
    _token(client, nurse.email, "secret-guess-123")
    with app.app_context():
        rows = db.session.execute(
            select(AuthAttempt.succeeded, func.count())
            .where(AuthAttempt.email == nurse.email)
            .group_by(AuthAttempt.succeeded)
        ).all()
    assert dict(rows) == {False: 1}


def test_passwords_are_argon2id_at_least_owasp_floor(app, make_user):
    nurse = make_user("nurse")
    with app.app_context():
        stored = db.session.get(User, nurse.id).password_hash
    assert stored.startswith("$argon2id$")
    params = dict(p.split("=") for p in stored.split("$")[3].split(","))
    assert int(params["m"]) >= 19456 and int(params["t"]) >= 2


def test_token_lookup_loads_the_user_as_the_orm_would(app, make_user):
    """load_token builds the User from a plain row (clinic.core.db.as_loaded): a clean, persistent
    object with every column loaded, or the session's own one when it holds that user already."""
    from clinic.auth import service
    from clinic.core import tx

    nurse = make_user("nurse")
    with app.app_context():
        raw, _ = service.issue_token(user=db.session.get(User, nurse.id))
        tx.commit()
    with app.app_context():
        user = service.load_token(raw)
        assert user is not None and user.id == nurse.id and user.email == nurse.email
        assert user in db.session and not db.session.is_modified(user)
        assert inspect(user).unloaded == set()  # every column loaded: nothing read lazily later
        assert inspect(user).persistent and user.role == "nurse"
        user.name = "Renamed"  # tracked like any loaded object
        assert db.session.is_modified(user)
        db.session.rollback()
    with app.app_context():
        held = db.session.get(User, nurse.id)
        assert service.load_token(raw) is held
        assert service.load_token(raw + "x") is None


def test_the_token_lookup_gives_the_user_the_orm_would_load(app, make_user):
    """load_token reads the user straight through the driver on PostgreSQL (clinic.core.db.first_row):
    every attribute equals, value and type, what the ORM loads; timestamps are aware UTC."""
    from clinic.auth import service
    from clinic.core.tx import commit

    nurse = make_user("nurse")
    with app.app_context():
        raw, _ = service.issue_token(user=db.session.get(User, nurse.id))
        commit()
    with app.app_context():
        fast = service.load_token(raw)
        assert fast is not None
        mine = {k: getattr(fast, k) for k in inspect(User).column_attrs.keys()}  # noqa: SIM118
        db.session.expunge_all()
        loaded = db.session.get(User, nurse.id)
        theirs = {k: getattr(loaded, k) for k in inspect(User).column_attrs.keys()}  # noqa: SIM118
        assert mine == theirs
        assert {k: type(v) for k, v in mine.items()} == {k: type(v) for k, v in theirs.items()}
        assert fast.created_at.utcoffset() == timedelta(0) and fast.password_changed_at.utcoffset() == timedelta(0)
        assert service.load_token(raw + "x") is None
        db.session.execute(update(ApiToken).where(ApiToken.token_hash == service.token_hash(raw)).values(
            revoked_at=utcnow()))  # fmt: skip
        assert service.load_token(raw) is None
        db.session.rollback()

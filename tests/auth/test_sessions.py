"""Browser sessions: cookie flags, sign-out, idle and absolute expiry, disabling, CSRF, TOTP enrolment."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
from sqlalchemy import select, update

from clinic.auth import service
from clinic.auth.models import User, UserSession
from clinic.core.time import utcnow
from clinic.extensions import db
from tests.conftest import Client, sign_in


def _new_client(app) -> Client:
    app.test_client_class = Client
    return app.test_client()


def test_session_cookie_is_host_prefixed_secure_httponly_samesite(app, make_user):
    c = _new_client(app)
    nurse = make_user("nurse")
    resp = c.post("/login", data={"email": nurse.email, "password": nurse.password, "csrf_token": c.csrf()})
    cookies = resp.headers.getlist("Set-Cookie")
    assert cookies
    for cookie in cookies:
        assert cookie.startswith("__Host-session=")
        attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert {"secure", "httponly", "samesite", "path"} <= attrs
        assert "domain" not in attrs
        assert "samesite=lax" in cookie.lower() and "path=/" in cookie.lower()


def test_sign_in_rotates_the_cookie(app, make_user):
    c = _new_client(app)
    c.get("/login")
    before = c.get_cookie("__Host-session").value
    sign_in(c, make_user("nurse"))
    assert c.get_cookie("__Host-session").value != before


def test_sign_out_kills_the_server_session(app, login_as):
    c, _ = login_as("nurse")
    stolen = c.get_cookie("__Host-session").value
    assert c.post("/logout", data={"csrf_token": c.csrf("/")}).status_code == 302
    replay = _new_client(app)
    replay.set_cookie("__Host-session", stolen, domain="localhost", secure=True)
    resp = replay.get("/")
    assert resp.status_code == 302
    assert resp.location.startswith("/login")


def test_idle_session_expires(app, login_as):
    c, account = login_as("nurse")
    assert c.get("/").status_code == 200
    with app.app_context():
        idle = timedelta(minutes=app.config["IDLE_TIMEOUT_MINUTES"], seconds=1)
        db.session.execute(
            update(UserSession).where(UserSession.user_id == account.id).values(last_seen_at=utcnow() - idle)
        )
        db.session.commit()
    assert c.get("/").status_code == 302


def test_activity_keeps_the_session_alive(app, login_as):
    c, account = login_as("nurse")
    with app.app_context():
        almost = timedelta(minutes=app.config["IDLE_TIMEOUT_MINUTES"] - 1)
        db.session.execute(
            update(UserSession).where(UserSession.user_id == account.id).values(last_seen_at=utcnow() - almost)
        )
        db.session.commit()
    assert c.get("/").status_code == 200
    with app.app_context():
        seen = db.session.scalar(select(UserSession.last_seen_at).where(UserSession.user_id == account.id))
    assert utcnow() - seen < timedelta(seconds=30)


def test_absolute_lifetime_ends_even_an_active_session(app, login_as):
    c, account = login_as("nurse")
    with app.app_context():
        db.session.execute(
            update(UserSession)
            .where(UserSession.user_id == account.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    assert c.get("/").status_code == 302


def test_disabling_a_user_kills_all_their_sessions(app, make_user):
    nurse = make_user("nurse")
    clients = [_new_client(app) for _ in range(3)]
    for c in clients:
        sign_in(c, nurse)
        assert c.get("/").status_code == 200
    admin_client = _new_client(app)
    sign_in(admin_client, make_user("admin"))
    resp = admin_client.post(
        f"/admin/users/{nurse.id}/active", data={"is_active": "0", "csrf_token": admin_client.csrf("/admin/users")}
    )
    assert resp.status_code == 302
    assert [c.get("/").status_code for c in clients] == [302, 302, 302]
    with app.app_context():
        live = db.session.scalars(
            select(UserSession).where(UserSession.user_id == nurse.id, UserSession.revoked_at.is_(None))
        ).all()
    assert live == []


def test_post_without_csrf_token_is_403_and_changes_nothing(app, login_as, make_user):
    c, _ = login_as("admin")
    nurse = make_user("nurse")
    resp = c.post(f"/admin/users/{nurse.id}/active", data={"is_active": "0"})
    assert resp.status_code == 403
    with app.app_context():
        assert db.session.get(User, nurse.id).is_active is True


def test_post_with_foreign_referer_is_refused(app, login_as, make_user):
    c, _ = login_as("admin")
    nurse = make_user("nurse")
    resp = c.post(
        f"/admin/users/{nurse.id}/active",
        data={"is_active": "0", "csrf_token": c.csrf("/")},
        headers={"Referer": "https://evil.example/"},
    )
    assert resp.status_code == 403


def test_wrong_password_on_the_page_shows_an_error(app, make_user):
    c = _new_client(app)
    nurse = make_user("nurse")
    resp = c.post("/login", data={"email": nurse.email, "password": "nope", "csrf_token": c.csrf()})
    assert resp.status_code == 401
    assert 'role="alert"' in resp.get_data(as_text=True)
    assert c.get("/").status_code == 302


def test_open_redirect_after_sign_in_is_refused(app, make_user):
    c = _new_client(app)
    c.get("/login?next=//evil.example/x")
    nurse = make_user("nurse")
    resp = c.post("/login", data={"email": nurse.email, "password": nurse.password, "csrf_token": c.csrf()})
    assert resp.location == "/"


def test_next_is_honoured_for_local_paths(app, make_user):
    c = _new_client(app)
    assert c.get("/admin/users").location == "/login?next=/admin/users"
    c.get("/login?next=/admin/users")
    sign_in(c, make_user("admin"))
    assert c.get("/admin/users").status_code == 200


def test_admin_without_totp_must_enrol_before_anything(app, make_user):
    c = _new_client(app)
    admin = make_user("admin", enrol_totp=False)
    resp = c.post("/login", data={"email": admin.email, "password": admin.password, "csrf_token": c.csrf()})
    assert resp.location.endswith("/login/enrol")
    assert c.get("/").status_code == 302  # not signed in yet
    page = c.get("/login/enrol").get_data(as_text=True)
    secret = re.search(r'value="([A-Z2-7]{32})"', page).group(1)
    token = c.csrf("/login/enrol")
    bad = c.post("/login/enrol", data={"code": "000000", "csrf_token": token})
    assert bad.status_code == 401
    ok = c.post("/login/enrol", data={"code": pyotp.TOTP(secret).now(), "csrf_token": token})
    assert ok.status_code == 302 and ok.location == "/"
    assert c.get("/admin/users").status_code == 200
    with app.app_context():
        assert db.session.get(User, admin.id).totp_secret == secret


def test_totp_step_is_single_use_across_sign_ins(app, make_user):
    admin = make_user("admin")
    first, second = _new_client(app), _new_client(app)
    code = admin.totp_now()
    for c in (first, second):
        c.post("/login", data={"email": admin.email, "password": admin.password, "csrf_token": c.csrf()})
    assert first.post("/login/totp", data={"code": code, "csrf_token": first.csrf("/login/totp")}).status_code == 302
    replay = second.post("/login/totp", data={"code": code, "csrf_token": second.csrf("/login/totp")})
    assert replay.status_code == 401


def test_password_reset_ends_sessions(app, login_as, make_user):
    nurse = make_user("nurse")
    c = _new_client(app)
    sign_in(c, nurse)
    with app.app_context():
        admin = db.session.get(User, make_user("admin").id)
        service.reset_password(actor=admin, user_id=nurse.id, new_password="a-new-long-password")
        db.session.commit()
    assert c.get("/").status_code == 302


def test_enrolment_key_is_not_shown_to_the_next_person(app, make_user):
    c = _new_client(app)
    first, second = make_user("admin", enrol_totp=False), make_user("auditor", enrol_totp=False)
    keys = []
    for account in (first, second):
        c.post("/login", data={"email": account.email, "password": account.password, "csrf_token": c.csrf()})
        page = c.get("/login/enrol").get_data(as_text=True)
        keys.append(re.search(r'value="([A-Z2-7]{32})"', page).group(1))
    assert keys[0] != keys[1]


def test_expired_session_on_a_post_returns_to_a_page_not_the_post_url(app, make_user):
    c = _new_client(app)
    resp = c.post("/logout", data={"csrf_token": c.csrf()})
    assert resp.status_code == 302
    assert resp.location == "/login"

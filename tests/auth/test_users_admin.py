"""The user admin page and API: create, validate, disable, reset password and second factor."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from clinic.auth.models import User
from clinic.extensions import db


def _count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User))


def test_admin_creates_a_user_on_the_page(app, login_as):
    c, _ = login_as("admin")
    email = f"new-{uuid.uuid4().hex[:8]}@test.clinic"
    resp = c.post(
        "/admin/users",
        data={
            "name": "Nora New",
            "email": email,
            "role": "prescriber",
            "license_type": "NP",
            "license_number": "NP-77",
            "password": "long-enough-password",
            "csrf_token": c.csrf("/admin/users"),
        },
    )
    assert resp.status_code == 302
    page = c.get("/admin/users").get_data(as_text=True)
    assert email in page and "Nora New" in page
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        assert (user.role, user.license_type, user.license_number, user.is_active) == (
            "prescriber",
            "NP",
            "NP-77",
            True,
        )


def test_invalid_form_rerenders_with_errors_and_writes_nothing(app, login_as):
    c, _ = login_as("admin")
    before = _count(app)
    resp = c.post(
        "/admin/users",
        data={
            "name": "",
            "email": "not-an-email",
            "role": "janitor",
            "password": "short",
            "csrf_token": c.csrf("/admin/users"),
        },
    )
    assert resp.status_code == 422
    body = resp.get_data(as_text=True)
    assert body.count('class="form-error"') >= 3
    assert 'value="not-an-email"' in body  # the form keeps what was typed
    assert _count(app) == before


def test_duplicate_email_is_a_conflict(app, login_as, make_user):
    c, _ = login_as("admin")
    existing = make_user("nurse")
    resp = c.post(
        "/admin/users",
        data={
            "name": "Dup",
            "email": existing.email.upper(),
            "role": "nurse",
            "password": "long-enough-password",
            "csrf_token": c.csrf("/admin/users"),
        },
    )
    assert resp.status_code == 409
    assert "already exists" in resp.get_data(as_text=True)


def test_reset_totp_forces_enrolment_again(app, login_as, make_user):
    c, _ = login_as("admin")
    other = make_user("auditor")
    c.post(f"/admin/users/{other.id}/totp", data={"csrf_token": c.csrf("/admin/users")})
    with app.app_context():
        assert db.session.get(User, other.id).totp_secret is None
    from tests.conftest import Client

    app.test_client_class = Client
    fresh = app.test_client()
    resp = fresh.post("/login", data={"email": other.email, "password": other.password, "csrf_token": fresh.csrf()})
    assert resp.location.endswith("/login/enrol")


def test_reset_password_via_page_validates(app, login_as, make_user):
    c, _ = login_as("admin")
    other = make_user("nurse")
    bad = c.post(f"/admin/users/{other.id}/password", data={"password": "short", "csrf_token": c.csrf("/admin/users")})
    assert bad.status_code == 422
    ok = c.post(
        f"/admin/users/{other.id}/password",
        data={"password": "brand-new-password", "csrf_token": c.csrf("/admin/users")},
    )
    assert ok.status_code == 302
    resp = app.test_client().post(
        "/api/v1/auth/tokens",
        json={"email": other.email, "password": "brand-new-password"},
        base_url="https://localhost",
    )
    assert resp.status_code == 201


def test_api_creates_users_and_lists_them(app, client, token_for):
    headers = token_for("admin")
    email = f"api-{uuid.uuid4().hex[:8]}@test.clinic"
    resp = client.post(
        "/api/v1/users",
        headers=headers,
        json={"email": email, "name": "Api Made", "role": "front_desk", "password": "tidal-quartz-fennel"},
    )
    assert resp.status_code == 201
    assert resp.json["email"] == email and "password" not in resp.json and "password_hash" not in resp.json
    listed = client.get("/api/v1/users", headers=headers).json["items"]
    assert email in [u["email"] for u in listed]


def test_unknown_user_is_404(login_as):
    c, _ = login_as("admin")
    resp = c.post("/admin/users/99999999/active", data={"is_active": "0", "csrf_token": c.csrf("/admin/users")})
    assert resp.status_code == 404


def test_licence_rules_are_the_same_on_the_api_and_the_page(app, client, token_for, login_as):
    headers = token_for("admin")

    def body(role: str, **extra: str) -> dict[str, str]:
        return {
            "email": f"lic-{uuid.uuid4().hex[:8]}@test.clinic",
            "name": "L",
            "role": role,
            "password": "tidal-quartz-fennel",
            **extra,
        }

    nurse = client.post("/api/v1/users", headers=headers, json=body("nurse", license_number="N-1"))
    assert nurse.status_code == 201 and nurse.json["license_type"] == "RN"
    refused = client.post("/api/v1/users", headers=headers, json=body("admin", license_number="A-1"))
    assert refused.status_code == 422
    assert "licence type" in refused.json["errors"]["license_type"][0]

    page, _ = login_as("admin")
    form = {**body("front_desk", license_number="F-1"), "csrf_token": page.csrf("/admin/users")}
    resp = page.post("/admin/users", data=form)
    assert resp.status_code == 422 and "licence type" in resp.get_data(as_text=True)
    listing = page.get("/admin/users").get_data(as_text=True)
    assert form["email"] not in listing
    row = next(r for r in listing.split("<tr>") if nurse.json["email"] in r)
    assert "<td>yes</td>" in row  # the users page says who can witness

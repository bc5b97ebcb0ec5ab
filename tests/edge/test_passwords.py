"""SYS-09: common and breached passwords, and ones holding the user's e-mail or name, are refused
by the CLI, the API and the users page alike (each writes nothing)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from clinic.auth.passwords import problems

COMMON = ["password1234", "Password1234!", "qwertyuiop123", "iloveyou2024!!", "aaaaaaaaaaaaaa", "abcabcabcabc"]


@pytest.mark.parametrize("password", COMMON)
def test_common_passwords_are_refused(password):
    assert problems(password, email="kim.lee@clinic.example", name="Kim Lee")


@pytest.mark.parametrize(
    ("password", "email", "name"),
    [
        ("margaret-clinic-77", "margaret@clinic.example", "M. Holt"),
        ("Xq9!holtzman-2031", "mh@clinic.example", "Mara Holtzman"),
        ("zz-jdoe1980-zz", "jdoe1980@clinic.example", "J Do"),
    ],
)
def test_passwords_holding_the_email_or_name_are_refused(password, email, name):
    assert problems(password, email=email, name=name) == [
        "The password must not contain your e-mail address or your name."
    ]


def test_a_sound_password_is_accepted():
    assert problems("tidal-quartz-fennel", email="kim.lee@clinic.example", name="Kim Lee") == []


def _users(app) -> int:  # type: ignore[no-untyped-def]
    from clinic.auth.models import User
    from clinic.extensions import db

    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(User)) or 0)


def test_every_way_in_refuses_them(app, client, token_for, login_as, make_user):
    admin_h = token_for("admin")
    admin, _ = login_as("admin")
    other = make_user("nurse")
    before = _users(app)
    email = f"rosa.{uuid.uuid4().hex[:6]}@clinic.example"
    api = client.post(
        "/api/v1/users",
        json={"email": email, "name": "Rosa Quill", "role": "nurse", "password": "Password1234!"},
        headers=admin_h,
    )
    assert api.status_code == 422 and "password" in api.json["errors"], api.json
    cli = app.test_cli_runner().invoke(
        args=["users", "create", "--email", email, "--name", "Rosa Quill", "--role", "nurse", "--password-stdin"],
        input="rosaquill-2026!\n",
    )
    assert cli.exit_code != 0 and "name" in cli.output, cli.output
    page = admin.post(
        "/admin/users",
        data={
            "email": email, "name": "Rosa Quill", "role": "nurse", "password": "qwertyuiop123",
            "csrf_token": admin.csrf("/admin/users"),
        },
    )  # fmt: skip
    assert page.status_code == 422 and "too common" in page.get_data(as_text=True)
    assert _users(app) == before
    reset = admin.post(
        f"/admin/users/{other.id}/password",
        data={"password": "password1234", "csrf_token": admin.csrf("/admin/users")},
    )
    assert reset.status_code == 422
    assert (
        client.post("/api/v1/auth/tokens", json={"email": other.email, "password": other.password}).status_code == 201
    )

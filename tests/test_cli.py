"""The ``clinic`` command as CONTRACT.md names it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

from tests.clock import clock_env

BIN = Path(sys.executable).parent


def test_users_create_and_token(app, client):
    runner = app.test_cli_runner()
    email = f"cli-{uuid.uuid4().hex[:8]}@test.clinic"
    created = runner.invoke(
        args=[
            "users",
            "create",
            "--email",
            email,
            "--name",
            "Cli Nurse",
            "--role",
            "nurse",
            "--license-number",
            "RN-9",
            "--license-type",
            "RN",
            "--password-stdin",
        ],
        input="a-long-enough-password\n",
    )
    assert created.exit_code == 0, created.output
    token = runner.invoke(args=["users", "token", "--email", email, "--ttl-hours", "2"])
    assert token.exit_code == 0
    lines = token.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cot_")
    me = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {lines[0]}"})
    assert me.status_code == 200 and me.json["email"] == email and me.json["license_type"] == "RN"


def test_users_create_rejects_bad_input_and_writes_nothing(app):
    runner = app.test_cli_runner()
    email = f"cli-{uuid.uuid4().hex[:8]}@test.clinic"
    short = runner.invoke(
        args=["users", "create", "--email", email, "--name", "X", "--role", "nurse", "--password-stdin"],
        input="short\n",
    )
    assert short.exit_code != 0 and "password" in short.output
    assert runner.invoke(args=["users", "token", "--email", email]).exit_code != 0
    bad_role = runner.invoke(
        args=["users", "create", "--email", email, "--name", "X", "--role", "janitor", "--password-stdin"],
        input="a-long-enough-password\n",
    )
    assert bad_role.exit_code != 0


def test_token_for_unknown_user_fails(app):
    result = app.test_cli_runner().invoke(args=["users", "token", "--email", "ghost@test.clinic"])
    assert result.exit_code != 0 and result.stdout == ""


def test_console_script_upgrade_and_demo_on_a_fresh_instance(tmp_path):
    """The README's path on the embedded default: no DATABASE_URL, no broker, nothing running."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env["CLINIC_INSTANCE_PATH"] = str(tmp_path)
    env.update(clock_env())  # the demo books on the clinic's day: run it on the tests' clock
    clinic = str(BIN / "clinic")
    for _ in range(2):  # both commands are idempotent
        up = subprocess.run([clinic, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60)
        assert up.returncode == 0, up.stderr[-2000:]
    first = subprocess.run([clinic, "demo"], env=env, capture_output=True, text=True, timeout=60)
    again = subprocess.run([clinic, "demo"], env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout == again.stdout
    roles = set(re.findall(r"^\s+(admin|prescriber|nurse|front_desk|auditor)\s", first.stdout, re.M))
    assert roles == {"admin", "prescriber", "nurse", "front_desk", "auditor"}
    assert (tmp_path / "clinic.sqlite").exists()
    secret = tmp_path / "secret_key"
    assert secret.exists() and (secret.stat().st_mode & 0o077) == 0


def _create(app, role: str, *extra: str):  # type: ignore[no-untyped-def]
    email = f"cli-{uuid.uuid4().hex[:8]}@test.clinic"
    args = ["users", "create", "--email", email, "--name", "Cli User", "--role", role, *extra, "--password-stdin"]
    return email, app.test_cli_runner().invoke(args=args, input="a-long-enough-password\n")


def test_a_licence_number_alone_takes_the_roles_licence_and_can_witness(app):
    """CONTRACT.md's `clinic users create --license-number L` makes a nurse who can sign a waste."""
    from sqlalchemy import select

    from clinic.auth.models import User
    from clinic.extensions import db

    for role, expected in (("nurse", "RN"), ("prescriber", "MD")):
        email, result = _create(app, role, "--license-number", "L-77")
        assert result.exit_code == 0, result.output
        with app.app_context():
            user = db.session.scalar(select(User).where(User.email == email))
            assert (user.license_type, user.license_number, user.can_witness) == (expected, "L-77", True)


def test_a_licence_number_alone_for_another_role_is_refused_saying_what_to_add(app):
    from sqlalchemy import func, select

    from clinic.auth.models import User
    from clinic.extensions import db

    email, result = _create(app, "front_desk", "--license-number", "L-78")
    assert result.exit_code != 0
    assert "licence type" in result.output and "RN" in result.output
    type_only_email, type_only = _create(app, "nurse", "--license-type", "LPN")
    assert type_only.exit_code != 0 and "licence number" in type_only.output
    with app.app_context():
        made = db.session.scalar(select(func.count()).select_from(User).where(User.email.in_([email, type_only_email])))
        assert made == 0

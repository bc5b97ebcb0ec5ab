"""Demo clinic data. Idempotent: running it twice changes nothing and prints the same logins."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from sqlalchemy import select

from clinic.auth import service as auth
from clinic.auth.models import User
from clinic.core.tx import commit
from clinic.extensions import db

DEMO_USERS = [
    ("admin", "admin@demo.clinic", "Avery Admin", None, None),
    ("prescriber", "prescriber@demo.clinic", "Dr. Priya Prescriber", "MD", "MD-100200"),
    ("nurse", "nurse@demo.clinic", "Noah Nurse", "RN", "RN-300400"),
    ("nurse", "nurse2@demo.clinic", "Nia Witness", "RN", "RN-300500"),
    ("front_desk", "frontdesk@demo.clinic", "Frankie Desk", None, None),
    ("auditor", "auditor@demo.clinic", "Audrey Auditor", None, None),
]


def _passwords(instance: Path) -> dict[str, str]:
    """Random per install, kept in the instance folder so reruns print the same ones."""
    path = instance / "demo-logins.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    passwords = {email: secrets.token_urlsafe(12) for _, email, *_ in DEMO_USERS}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(passwords, fh)
    return passwords


def seed(instance: Path) -> list[tuple[str, str, str]]:
    passwords = _passwords(instance)
    logins = []
    for role, email, name, license_type, license_number in DEMO_USERS:
        password = passwords[email]
        if db.session.scalar(select(User.id).where(User.email == email)) is None:
            auth.create_user(
                actor=None,
                email=email,
                name=name,
                role=role,
                password=password,
                license_type=license_type,
                license_number=license_number,
            )
        logins.append((role, email, password))
    commit()
    return logins

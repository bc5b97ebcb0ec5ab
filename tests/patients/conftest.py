"""Patients as staff meet them: one user per role (made on first use), patients and answers."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from flask import Flask

from clinic.core.time import today_at
from tests.clock import years_before
from tests.conftest import Account, bearer

TZ = "America/Chicago"
PROBLEM = "application/problem+json"


def local_today(tz: str = TZ) -> date:
    return today_at(tz)


def born_aged(years: int, *, days_past_birthday: int = 30) -> str:
    """A date of birth that makes the patient ``years`` old today (not on a birthday)."""
    return (years_before(local_today(), years) - timedelta(days=days_past_birthday)).isoformat()


def answers(*, medications: list[str] | None = None, **yes: bool) -> dict[str, Any]:
    """A complete questionnaire: every CONTRACT answer "no" unless given, no medicines unless given."""
    base: dict[str, Any] = dict.fromkeys(
        (
            "pregnant",
            "breastfeeding",
            "psychosis_or_mania",
            "uncontrolled_hypertension",
            "cardiovascular_disease",
            "aneurysm_avm_or_ich",
            "substance_use_disorder",
            "prior_ketamine_reaction",
        ),
        False,
    )
    return {**base, **yes, "medications": medications or []}


class Staff:
    """Bearer headers per role, made on first use; ``account(role)`` for the user behind them."""

    def __init__(self, app: Flask, make_user: Callable[..., Account]) -> None:
        self.app = app
        self.make_user = make_user
        self._accounts: dict[str, Account] = {}
        self._headers: dict[str, dict[str, str]] = {}

    def account(self, role: str) -> Account:
        if role not in self._accounts:
            self._accounts[role] = self.make_user(role)
        return self._accounts[role]

    def ready(self, *roles: str) -> None:
        """Make the users and tokens now (they write audit rows), before counting rows."""
        for role in roles:
            self[role]

    def __getitem__(self, role: str) -> dict[str, str]:
        if role not in self._headers:
            self._headers[role] = bearer(self.app, self.account(role))
        return self._headers[role]


@pytest.fixture
def staff(app, make_user) -> Staff:
    return Staff(app, make_user)


class Api:
    def __init__(self, client: Any, staff: Staff) -> None:
        self.client = client
        self.staff = staff

    def post(self, path: str, body: dict[str, Any], role: str = "nurse"):
        return self.client.post(f"/api/v1{path}", json=body, headers=self.staff[role])

    def patch(self, path: str, body: dict[str, Any], role: str = "nurse"):
        return self.client.patch(f"/api/v1{path}", json=body, headers=self.staff[role])

    def get(self, path: str, role: str = "nurse", **query: Any):
        return self.client.get(f"/api/v1{path}", query_string=query, headers=self.staff[role])

    def new_patient(self, role: str = "front_desk", **fields: Any) -> dict[str, Any]:
        body = {
            "first_name": "Pat",
            "last_name": f"Example-{uuid.uuid4().hex[:8]}",
            "date_of_birth": "1980-02-03",
            "address": "5 Elm St, Springfield IL",
            "timezone": TZ,
            **fields,
        }
        resp = self.post("/patients", body, role)
        assert resp.status_code == 201, resp.json
        return resp.json

    def screen(self, patient_id: int, role: str = "nurse", location_id: int | None = None, **kw: Any):
        body: dict[str, Any] = {"answers": answers(**kw)}
        if location_id is not None:
            body["location_id"] = location_id
        return self.post(f"/patients/{patient_id}/screenings", body, role)


@pytest.fixture
def api(client, staff) -> Api:
    return Api(client, staff)


def row_counts(app: Flask, *models: Any) -> list[int]:
    """Rows in each of ``models`` and in the audit log: equal before and after a refused request."""
    from sqlalchemy import func, select

    from clinic.audit.models import AuditEvent
    from clinic.extensions import db

    with app.app_context():
        return [db.session.scalar(select(func.count()).select_from(m)) or 0 for m in (*models, AuditEvent)]

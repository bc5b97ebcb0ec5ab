"""A patient on a booked course, and the calls the outcome tests make on it through the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from clinic.core.time import utcnow
from tests.scheduling.conftest import Desk, make_desk

PROBLEM = "application/problem+json"


def phq9(*items: int) -> list[int]:
    """Nine items: the ones given, then zeros."""
    return [*items, *[0] * (9 - len(items))]


def gad7(*items: int) -> list[int]:
    return [*items, *[0] * (7 - len(items))]


def summing_to(total: int, count: int = 9, *, item9: int | None = None) -> list[int]:
    """Items that add up to ``total``, filled from the first item on; a PHQ-9's item 9 is left at
    0 unless the total needs it or ``item9`` says otherwise."""
    items = [0] * count
    fill = list(range(count))
    if count == 9 and item9 is not None:
        items[8] = item9
        total -= item9
        fill = fill[:8]
    for n in fill:
        items[n] = min(3, total)
        total -= items[n]
    assert total == 0, "total out of reach"
    return items


def ago(**delta: float) -> str:
    return (utcnow() - timedelta(**delta)).isoformat()


@dataclass
class Course:
    desk: Desk
    patient_id: int
    series_id: int
    appointment_ids: list[int]

    @property
    def client(self) -> Any:
        return self.desk.client

    def headers(self, role: str) -> dict[str, str]:
        return {
            "nurse": self.desk.nurse,
            "prescriber": self.desk.prescriber_h,
            "front_desk": self.desk.desk,
            "admin": self.desk.admin,
        }[role]

    def record(
        self,
        instrument: str = "phq9",
        items: list[Any] | None = None,
        role: str = "nurse",
        patient_id: int | None = None,
        **body: Any,
    ):
        payload = {"instrument": instrument, "series_id": self.series_id, **body}
        payload["items"] = items if items is not None else (phq9() if instrument == "phq9" else gad7())
        return self.client.post(
            f"/api/v1/patients/{patient_id or self.patient_id}/outcomes", json=payload, headers=self.headers(role)
        )

    def recorded(self, instrument: str = "phq9", items: list[Any] | None = None, **body: Any) -> dict[str, Any]:
        resp = self.record(instrument, items, **body)
        assert resp.status_code == 201, resp.json
        return resp.json

    def trend(self, instrument: str = "phq9", role: str = "nurse"):
        return self.client.get(
            f"/api/v1/series/{self.series_id}/outcomes",
            query_string={"instrument": instrument},
            headers=self.headers(role),
        )

    def alerts(self, role: str = "prescriber"):
        return self.client.get(
            "/api/v1/outcomes/safety-alerts",
            query_string={"location_id": self.desk.location_id},
            headers=self.headers(role),
        )

    def acknowledge(
        self, score_id: int, note: Any = "Called the patient; safety plan reviewed.", role: str = "prescriber"
    ):
        body = {} if note is None else {"note": note}
        return self.client.post(f"/api/v1/outcomes/{score_id}/acknowledge", json=body, headers=self.headers(role))


def book_course(desk: Desk, preferred_time: str = "09:00") -> Course:
    pid = desk.patient(rems=False)
    resp = desk.book(pid, protocol="ketamine-iv-induction", preferred_time=preferred_time)
    assert resp.status_code == 201, resp.json
    return Course(desk, pid, resp.json["id"], [a["id"] for a in resp.json["appointments"]])


@pytest.fixture
def desk(app, client, make_user) -> Desk:
    return make_desk(app, client, make_user, chairs=2)


@pytest.fixture
def course(desk) -> Course:
    return book_course(desk)


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest

from clinic.fixtures import CLEAR_SCREENING
from tests.clock import MONDAY, next_weekday, today_in
from tests.conftest import Account, bearer
from tests.inventory.conftest import make_location

PATIENT_TZ = "America/New_York"


@dataclass
class Desk:
    client: Any
    admin: dict[str, str]
    desk: dict[str, str]
    nurse: dict[str, str]
    prescriber: Account
    prescriber_h: dict[str, str]
    location_id: int
    chairs: list[int]
    tz: str
    # The Monday courses start on unless a test says otherwise: a few weeks ahead of the
    # location's today, so the whole course is in the future whenever the suite runs.
    start: date

    def day(self, days: int) -> str:
        """``start`` plus ``days``, as the API takes it."""
        return (self.start + timedelta(days=days)).isoformat()

    def appointments(self, since_day: int, until_day: int) -> list[dict[str, Any]]:
        """The location's appointments from UTC midnight of ``day(since_day)`` to ``day(until_day)``."""
        window = {"since": f"{self.day(since_day)}T00:00:00Z", "until": f"{self.day(until_day)}T00:00:00Z"}
        resp = self.client.get(
            "/api/v1/appointments", query_string={"location_id": self.location_id, **window}, headers=self.desk
        )
        assert resp.status_code == 200, resp.json
        return resp.json["items"]

    @property
    def enrolled_on(self) -> str:
        """A REMS enrolment a month before the patient's today (patients here live in New York)."""
        return (today_in(PATIENT_TZ) - timedelta(days=30)).isoformat()

    def patient(self, *, born: str = "1985-06-01", screen: dict[str, Any] | None = None, rems: bool = True) -> int:
        resp = self.client.post(
            "/api/v1/patients",
            headers=self.desk,
            json={
                "first_name": "Casey",
                "last_name": f"Course{uuid.uuid4().hex[:4]}",
                "date_of_birth": born,
                "address": "1 Test St",
                "timezone": PATIENT_TZ,
            },
        )
        assert resp.status_code == 201, resp.json
        pid = resp.json["id"]
        answers = {**CLEAR_SCREENING, **(screen or {})}
        screening = self.client.post(
            f"/api/v1/patients/{pid}/screenings", headers=self.nurse, json={"answers": answers}
        )
        assert screening.status_code == 201, screening.json
        if rems:
            assert (
                self.client.post(
                    f"/api/v1/patients/{pid}/rems-enrollment",
                    headers=self.nurse,
                    json={"enrolled_on": self.enrolled_on},
                ).status_code
                == 201
            )
        return pid

    def book(
        self,
        patient_id: int,
        protocol: str = "esketamine-rems",
        start_on: str | None = None,
        preferred_time: str = "09:00",
        headers: dict[str, str] | None = None,
    ):
        return self.client.post(
            "/api/v1/series",
            headers=headers or self.desk,
            json={
                "patient_id": patient_id,
                "protocol": protocol,
                "location_id": self.location_id,
                "prescriber_id": self.prescriber.id,
                "start_on": start_on or self.start.isoformat(),
                "preferred_time": preferred_time,
            },
        )


def make_desk(app, client, make_user, chairs: int = 2, tz: str = "America/New_York") -> Desk:
    admin = bearer(app, make_user("admin"))
    # certified in the SPRAVATO REMS well past any course a test books (SPR-03)
    location_id = make_location(
        client, admin, timezone=tz, rems_certified_until=(today_in(tz) + timedelta(days=730)).isoformat()
    )
    chair_ids = []
    for i in range(chairs):
        resp = client.post(f"/api/v1/locations/{location_id}/chairs", headers=admin, json={"name": f"Chair {i + 1}"})
        assert resp.status_code == 201, resp.json
        chair_ids.append(resp.json["id"])
    prescriber = make_user("prescriber")
    return Desk(
        client,
        admin,
        bearer(app, make_user("front_desk")),
        bearer(app, make_user("nurse")),
        prescriber,
        bearer(app, prescriber),
        location_id,
        chair_ids,
        tz,
        next_weekday(MONDAY, tz, at_least_days=14),
    )


@pytest.fixture
def desk(app, client, make_user) -> Desk:
    return make_desk(app, client, make_user)


def local(iso: str, tz: str = "America/New_York"):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(iso).astimezone(ZoneInfo(tz))


__all__ = ["date"]

"""The location setup page: every part of a location set up through forms, under the API's policy,
with the API's schemas (a refused form writes nothing and shows its errors beside its fields)."""

from __future__ import annotations

import uuid
from datetime import date

import holidays
import pytest
from sqlalchemy import func, select

from tests.inventory.test_pages import assert_accessible, text


def dea_number(seed: int) -> str:
    """A valid DEA number (check digit per 21 CFR 1301 practice) unique enough per test run."""
    d = [int(c) for c in f"{seed % 1_000_000:06d}"]
    check = (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10
    return "FB" + "".join(map(str, d)) + str(check)


def post(c, path: str, data: dict, page: str):
    return c.post(path, data={**data, "csrf_token": c.csrf(page)})


def count(app, model, **where) -> int:
    from clinic.extensions import db

    with app.app_context():
        stmt = select(func.count()).select_from(model)
        for name, value in where.items():
            stmt = stmt.where(getattr(model, name) == value)
        return db.session.scalar(stmt) or 0


@pytest.fixture
def admin(login_as):
    c, _ = login_as("admin")
    return c


@pytest.fixture
def new_location(app, admin) -> int:
    dea = dea_number(uuid.uuid4().int)
    resp = post(
        admin,
        "/admin/locations/",
        {"name": f"Lakeside {dea}", "address": "1 Shore Rd, Des Moines IA", "dea_registration": dea,
         "timezone": "America/Chicago", "phone": ""},
        "/admin/locations/",
    )  # fmt: skip
    assert resp.status_code == 302, text(resp)[-2000:]
    return int(resp.location.rstrip("/").split("/")[-1])


def test_a_new_location_is_set_up_in_one_place(app, admin, new_location, make_user):
    from clinic.locations.models import Location, StorageSite
    from clinic.scheduling.models import Chair, Closure, PrescriberHours

    page = f"/admin/locations/{new_location}"
    resp = admin.get(page)
    assert resp.status_code == 200
    assert_accessible(resp)

    resp = post(admin, f"{page}/profile", {"state": "IA", "apply_preset": "1"}, page)
    assert resp.status_code == 302, text(resp)[-2000:]
    resp = post(admin, f"{page}/storage-sites", {"name": "Main safe"}, page)
    assert resp.status_code == 302
    resp = post(admin, f"{page}/chairs", {"name": "Chair 1"}, page)
    assert resp.status_code == 302
    hours = {f"{d}_open": "09:00" for d in ("mon", "tue", "wed", "thu")} | {
        f"{d}_close": "17:00" for d in ("mon", "tue", "wed", "thu")
    }
    resp = post(admin, f"{page}/hours", hours, page)
    assert resp.status_code == 302, text(resp)[-2000:]
    resp = post(admin, f"{page}/closures/holidays", {"year": "2031"}, page)
    assert resp.status_code == 302, text(resp)[-2000:]
    prescriber = make_user("prescriber")
    resp = post(
        admin,
        f"{page}/prescriber-hours",
        {"user_id": str(prescriber.id), "mon_open": "10:00", "mon_close": "14:00"},
        page,
    )
    assert resp.status_code == 302, text(resp)[-2000:]
    new_dea = dea_number(uuid.uuid4().int)
    details = {"name": "Lakeside Clinic", "address": "2 Shore Rd", "dea_registration": new_dea,
               "timezone": "America/Chicago", "rems_certified_until": "2031-06-30"}  # fmt: skip
    resp = post(admin, f"{page}/details", details, page)
    assert resp.status_code == 302, text(resp)[-2000:]

    with app.app_context():
        from clinic.extensions import db

        location = db.session.get(Location, new_location)
        assert (location.name, location.dea_registration) == ("Lakeside Clinic", new_dea)
        assert location.rems_certified_until == date(2031, 6, 30)
        assert location.rule("state") == "IA"
        assert location.rule("inventory_interval_days") == 372  # Iowa's preset
        assert location.hours["mon"] == ["09:00", "17:00"]
        assert location.hours["fri"] is None
        roster = db.session.scalar(select(PrescriberHours).where(PrescriberHours.location_id == new_location))
        assert roster.user_id == prescriber.id
        assert roster.hours["mon"] == ["10:00", "14:00"] and roster.hours["tue"] is None
        closed = {c.starts_on for c in db.session.scalars(select(Closure).where(Closure.location_id == new_location))}
    assert closed == set(holidays.country_holidays("US", subdiv="IA", years=2031))
    assert date(2031, 7, 4) in closed
    assert count(app, StorageSite, location_id=new_location) == 1
    assert count(app, Chair, location_id=new_location) == 1

    # The button twice adds nothing the second time.
    before = count(app, Closure, location_id=new_location)
    assert post(admin, f"{page}/closures/holidays", {"year": "2031"}, page).status_code == 302
    assert count(app, Closure, location_id=new_location) == before

    resp = admin.get(page)
    body = text(resp)
    assert "Main safe" in body and "Chair 1" in body and "Independence Day" in body


def test_refused_forms_show_errors_and_write_nothing(app, admin, new_location):
    from clinic.locations.models import Location, StorageSite
    from clinic.scheduling.models import Closure

    page = f"/admin/locations/{new_location}"
    resp = post(admin, f"{page}/hours", {"mon_open": "18:00", "mon_close": "08:00"}, page)
    assert resp.status_code == 422
    body = text(resp)
    assert 'id="loc-mon-error"' in body and "opening before the closing" in body
    assert_accessible(resp)

    details = {"name": "X", "address": "Y", "dea_registration": "AB1234560", "timezone": "America/Chicago"}
    resp = post(admin, f"{page}/details", details, page)
    assert resp.status_code == 422
    assert "check digit" in text(resp)

    resp = post(
        admin, f"{page}/closures", {"starts_on": "2031-05-02", "ends_on": "2031-05-01", "reason": "Floor"}, page
    )
    assert resp.status_code == 422
    resp = post(admin, f"{page}/closures/holidays", {"year": "1"}, page)
    assert resp.status_code == 422
    resp = post(admin, f"{page}/storage-sites", {"name": ""}, page)
    assert resp.status_code == 422
    resp = post(admin, f"{page}/prescriber-hours", {"user_id": "", "mon_open": "10:00", "mon_close": "14:00"}, page)
    assert resp.status_code == 422
    assert count(app, Closure, location_id=new_location) == 0
    assert count(app, StorageSite, location_id=new_location) == 0
    with app.app_context():
        from clinic.extensions import db

        location = db.session.get(Location, new_location)
        assert location.name.startswith("Lakeside") and location.hours["mon"] == ["08:00", "18:00"]


@pytest.mark.parametrize("role", ["prescriber", "nurse", "front_desk", "auditor"])
def test_only_admins_set_up_locations(app, login_as, role, new_location):
    from clinic.scheduling.models import Chair

    c, _ = login_as(role)
    assert c.get(f"/admin/locations/{new_location}").status_code == 403
    resp = c.post(f"/admin/locations/{new_location}/chairs", data={"name": "Sneaky", "csrf_token": c.csrf("/")})
    assert resp.status_code == 403
    assert count(app, Chair, location_id=new_location, name="Sneaky") == 0

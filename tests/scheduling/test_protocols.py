"""Protocols as data (issue 9): admins and prescribers add versions by API and on a page; unsafe
rules cannot be saved (IVK-03, IVK-07, SPR-01, SPR-03, SPR-10, SPR-11, SPR-21); booked courses keep their
version."""

from __future__ import annotations

import copy
import uuid

import pytest

from clinic.scheduling.protocols import SEED
from tests.conftest import bearer, sign_in

IV = next(p for p in SEED if p["code"] == "ketamine-iv-induction")
NASAL = next(p for p in SEED if p["code"] == "esketamine-rems")


def protocol(base=IV, code=None, **changes):
    body = {
        "code": code or f"test-{uuid.uuid4().hex[:8]}",
        "name": "Clinic course",
        "rules": copy.deepcopy(base["rules"]),
    }
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = body["rules"]
        for key in parents:
            node = node[key]
        if value is None:
            node.pop(leaf)
        else:
            node[leaf] = value
    return body


@pytest.mark.parametrize(
    ("base", "changes", "field"),
    [
        (IV, {"endpoint": None}, "rules.endpoint"),  # no endpoint: the schema refuses a missing one
        (IV, {"endpoint": "   "}, "rules.endpoint"),
        (IV, {"min_spacing_hours": 23}, "rules.min_spacing_hours"),
        (IV, {"dose__max": "2.0"}, "rules.dose"),
        (IV, {"dose__min": "0.05"}, "rules.dose"),
        (NASAL, {"dose__options_mg": ["56", "112"]}, "rules.dose"),
        (NASAL, {"requires_rems": False}, "rules.requires_rems"),
        (NASAL, {"observation_minutes": 60}, "rules.observation_minutes"),
        # SPR-11: an esketamine version cannot raise the 140/90 pre-dose hold out of the way
        (NASAL, {"bp_hold": {"systolic": 200, "diastolic": 130}}, "rules.bp_hold"),
        (NASAL, {"bp_hold": {"systolic": 140, "diastolic": 95}}, "rules.bp_hold"),
        # SPR-10: nor drop the blood pressure at about 40 minutes (no checkpoint: no reading asked for)
        (NASAL, {"vitals_checkpoints_minutes": [0, 120]}, "rules.vitals_checkpoints_minutes"),
        (NASAL, {"vitals_checkpoints_minutes": [0]}, "rules.vitals_checkpoints_minutes"),
        # SPR-21, SPR-22: esketamine is given twice a week at most
        (
            NASAL,
            {"max_per_week": 3, "phases": [{"phase": "induction", "weeks": 4, "per_week": 3}]},
            "rules.max_per_week",
        ),
    ],
)
def test_unsafe_protocols_cannot_be_saved(app, client, make_user, base, changes, field):
    admin = bearer(app, make_user("admin"))
    before = client.get("/api/v1/protocols", headers=admin).json["items"]
    resp = client.post("/api/v1/protocols", headers=admin, json=protocol(base, **changes))
    assert resp.status_code == 422, resp.json
    errors = resp.json["errors"]
    flat = set(errors) | {f"rules.{k}" for k in errors.get("rules", {})}
    assert field in flat, errors
    assert client.get("/api/v1/protocols", headers=admin).json["items"] == before


def test_a_new_version_is_current_and_booked_courses_keep_theirs(app, desk, make_user):
    code = f"clinic-iv-{uuid.uuid4().hex[:6]}"
    assert desk.client.post("/api/v1/protocols", headers=desk.nurse, json=protocol(code=code)).status_code == 403
    v1 = desk.client.post("/api/v1/protocols", headers=desk.prescriber_h, json=protocol(code=code))
    assert (v1.status_code, v1.json["version"]) == (201, 1), v1.json
    booked = desk.book(desk.patient(), code).json
    assert (booked["protocol"], booked["protocol_version"], len(booked["appointments"])) == (code, 1, 6)

    shorter = protocol(code=code, phases=[{"phase": "induction", "weeks": 1, "per_week": 2}])
    v2 = desk.client.post("/api/v1/protocols", headers=desk.admin, json=shorter)
    assert v2.json["version"] == 2
    listed = [p for p in desk.client.get("/api/v1/protocols", headers=desk.desk).json["items"] if p["code"] == code]
    assert [p["version"] for p in listed] == [2]
    again = desk.client.get(f"/api/v1/series/{booked['id']}", headers=desk.desk).json
    assert (again["protocol_version"], len(again["appointments"])) == (1, 6)
    assert len(desk.book(desk.patient(), code).json["appointments"]) == 2


def test_protocols_page_saves_a_version_and_shows_errors_on_the_form(app, make_user):
    from tests.conftest import Client

    app.test_client_class = Client
    page = app.test_client()
    sign_in(page, make_user("prescriber"))
    assert page.get("/protocols").status_code == 200
    import json

    bad = protocol(min_spacing_hours=12)
    resp = page.post(
        "/protocols",
        data={
            "code": bad["code"],
            "name": bad["name"],
            "rules": json.dumps(bad["rules"]),
            "csrf_token": page.csrf("/protocols"),
        },
    )
    assert resp.status_code == 422 and "24 hours" in resp.get_data(as_text=True)
    good = protocol()
    resp = page.post(
        "/protocols",
        data={
            "code": good["code"],
            "name": good["name"],
            "rules": json.dumps(good["rules"]),
            "csrf_token": page.csrf("/protocols"),
        },
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)[-500:]
    assert good["code"] in page.get("/protocols").get_data(as_text=True)

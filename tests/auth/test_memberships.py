"""Staff and auditors belong to locations (issue 9; SYS-11..13).

Two locations, "own" (A) and "other" (B), each with a patient, a course, its appointments and a
vial. Users made here are members only where the test says (not roaming test users).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from clinic.auth.policy import POLICY, PUBLIC, permission_for
from tests.auth.test_access_matrix import routes
from tests.clock import today_in
from tests.conftest import Account, Client, bearer, sign_in
from tests.scheduling.conftest import make_desk

ROLES = ("prescriber", "nurse", "front_desk", "auditor")


@dataclass
class Site:
    location_id: int
    patient_id: int
    series_id: int
    appointment_id: int
    container_id: int


@dataclass
class World:
    client: Any
    admin: dict[str, str]
    own: Site
    other: Site
    desk: Any


def _site(app, client, make_user) -> tuple[Site, Any]:
    from clinic import fixtures
    from clinic.auth.models import User
    from clinic.core.tx import commit
    from clinic.extensions import db
    from clinic.inventory.models import Container, Drug
    from clinic.inventory.witness import WitnessSignature
    from clinic.locations import service as locations

    desk = make_desk(app, client, make_user)
    resp = client.post(
        "/api/v1/patients",
        headers=desk.desk,
        json={
            "first_name": "Lee",
            "last_name": f"Member{uuid.uuid4().hex[:4]}",
            "date_of_birth": "1980-02-03",
            "address": "1 Test St",
            "timezone": "America/New_York",
            "location_id": desk.location_id,
        },
    )
    assert resp.status_code == 201, resp.json
    pid = resp.json["id"]
    assert resp.json["location_id"] == desk.location_id
    from clinic.fixtures import CLEAR_SCREENING

    assert (
        client.post(
            f"/api/v1/patients/{pid}/screenings",
            headers=desk.nurse,
            json={"answers": CLEAR_SCREENING, "location_id": desk.location_id},
        ).status_code
        == 201
    )
    booked = desk.book(pid, protocol="ketamine-iv-induction")
    assert booked.status_code == 201, booked.json
    series_id = booked.json["id"]
    appointment_id = booked.json["appointments"][0]["id"]
    nurse, witness = make_user("nurse"), make_user("nurse")
    with app.app_context():
        admin = db.session.scalar(select(User).where(User.role == "admin").order_by(User.id.desc()))
        drug = db.session.scalar(select(Drug).where(Drug.form == "vial").order_by(Drug.id)) or fixtures.create_drug(
            admin
        )
        site = locations.create_storage_site(actor=admin, location_id=desk.location_id, name="Safe")
        actor = db.session.get(User, nurse.id)
        fixtures.open_ledger(actor, desk.location_id, WitnessSignature(witness.email, witness.password))
        fixtures.create_receipt(
            actor, storage_site_id=site.id, drug_id=drug.id, count=1, expires_on=today_in("UTC") + timedelta(days=365)
        )
        container_id = db.session.scalar(select(Container.id).where(Container.location_id == desk.location_id))
        commit()
    return Site(desk.location_id, pid, series_id, appointment_id, container_id), desk


@pytest.fixture
def world(app, client, make_user) -> World:
    own, desk = _site(app, client, make_user)
    other, _ = _site(app, client, make_user)
    return World(client, desk.admin, own, other, desk)


def _member(app, make_user, role: str, *locations: int) -> tuple[Account, dict[str, str]]:
    account = make_user(role, locations=list(locations))
    return account, bearer(app, account)


def test_staff_act_only_where_they_are_members(app, world: World, make_user) -> None:
    c, own, other = world.client, world.own, world.other
    _, nurse = _member(app, make_user, "nurse", own.location_id)
    # the ledger of their own location, not the other's; a list without a location is their own only
    assert (
        c.get("/api/v1/inventory/ledger", query_string={"location_id": own.location_id}, headers=nurse).status_code
        == 200
    )
    refused = c.get("/api/v1/inventory/ledger", query_string={"location_id": other.location_id}, headers=nurse)
    assert refused.status_code == 403 and refused.json["code"] == "not_a_member"
    listed = c.get("/api/v1/inventory/ledger", query_string={"limit": 200}, headers=nurse).json["items"]
    assert listed and {e["location_id"] for e in listed} == {own.location_id}
    # the other location's vial, appointment, course and patient: refused, and nothing written
    body = {"container_id": other.container_id, "patient_id": own.patient_id, "quantity_mg": "1"}
    assert c.post("/api/v1/inventory/administrations", headers=nurse, json=body).status_code == 403
    assert c.get(f"/api/v1/inventory/containers/{other.container_id}", headers=nurse).status_code == 403
    assert c.get(f"/api/v1/inventory/containers/{own.container_id}", headers=nurse).status_code == 200
    assert c.post(f"/api/v1/appointments/{other.appointment_id}/check-in", headers=nurse, json={}).status_code == 403
    assert c.get(f"/api/v1/series/{other.series_id}", headers=nurse).status_code == 403
    assert c.get(f"/api/v1/patients/{other.patient_id}", headers=nurse).status_code == 403
    assert c.get(f"/api/v1/patients/{own.patient_id}", headers=nurse).status_code == 200
    # a patient registered elsewhere is not in their list or their picker
    names = {p["id"] for p in c.get("/api/v1/patients", query_string={"limit": 200}, headers=nurse).json["items"]}
    assert own.patient_id in names and other.patient_id not in names
    # reminders: the other location's refused by name, and never listed
    assert c.get("/api/v1/reminders", query_string={"location_id": other.location_id}, headers=nurse).status_code == 403
    listed = c.get("/api/v1/reminders", query_string={"limit": 1000}, headers=nurse).json["items"]
    assert {r["location_id"] for r in listed} <= {own.location_id}


def test_a_new_patient_is_registered_where_the_user_works(app, world: World, make_user) -> None:
    c, own, other = world.client, world.own, world.other
    _, desk = _member(app, make_user, "front_desk", own.location_id)
    body = {"first_name": "Ria", "last_name": "Home", "date_of_birth": "1990-01-01", "address": "x", "timezone": "UTC"}
    made = c.post("/api/v1/patients", headers=desk, json=body)
    assert made.status_code == 201 and made.json["location_id"] == own.location_id
    elsewhere = c.post("/api/v1/patients", headers=desk, json={**body, "location_id": other.location_id})
    assert elsewhere.status_code == 403
    # moving a patient to a location the user does not work at is refused too
    moved = c.patch(f"/api/v1/patients/{made.json['id']}", headers=desk, json={"location_id": other.location_id})
    assert moved.status_code == 403
    # a user of no location registers no one
    _, nowhere = _member(app, make_user, "front_desk")
    assert c.post("/api/v1/patients", headers=nowhere, json=body).status_code == 403


def test_a_patients_calendar_feed_is_made_only_by_staff_of_all_their_locations(app, world: World, make_user) -> None:
    """The feed shows every visit of the patient, wherever: one location's staff cannot mint one to
    read another location's schedule (SYS-11). Here the patient is registered at A (so A's staff see
    them) with a course at B."""
    from clinic.core.tx import commit
    from clinic.extensions import db
    from clinic.patients.models import Patient

    c, own, other = world.client, world.own, world.other
    with app.app_context():
        patient = db.session.get(Patient, other.patient_id)
        assert patient is not None
        patient.location_id = own.location_id
        commit()
    _, at_a = _member(app, make_user, "front_desk", own.location_id)
    refused = c.post(f"/api/v1/patients/{other.patient_id}/calendar-feed", headers=at_a)
    assert refused.status_code == 403 and refused.json["code"] == "not_a_member", refused.json
    assert c.post(f"/api/v1/patients/{own.patient_id}/calendar-feed", headers=at_a).status_code == 201
    _, at_both = _member(app, make_user, "front_desk", own.location_id, other.location_id)
    assert c.post(f"/api/v1/patients/{other.patient_id}/calendar-feed", headers=at_both).status_code == 201
    assert c.post(f"/api/v1/patients/{other.patient_id}/calendar-feed", headers=world.admin).status_code == 201


def test_admin_grants_and_withdraws_membership(app, world: World, make_user) -> None:
    c, own, other = world.client, world.own, world.other
    nurse_account, nurse = _member(app, make_user, "nurse", own.location_id)
    path = f"/api/v1/locations/{other.location_id}/members/{nurse_account.id}"
    assert c.put(path, headers=nurse).status_code == 403  # only admins grant
    granted = c.put(path, headers=world.admin)
    assert granted.status_code == 200
    assert granted.json["location_ids"] == sorted([own.location_id, other.location_id])
    assert c.put(path, headers=world.admin).status_code == 200  # idempotent
    assert c.get(f"/api/v1/series/{other.series_id}", headers=nurse).status_code == 200
    assert c.delete(path, headers=world.admin).status_code == 204
    assert c.delete(path, headers=world.admin).status_code == 204
    assert c.get(f"/api/v1/series/{other.series_id}", headers=nurse).status_code == 403
    # unknown location or user: 404; an admin is never a member: 422
    assert c.put(f"/api/v1/locations/999999/members/{nurse_account.id}", headers=world.admin).status_code == 404
    assert c.put(f"/api/v1/locations/{own.location_id}/members/999999", headers=world.admin).status_code == 404
    admin_account = make_user("admin")
    admin_member = c.put(f"/api/v1/locations/{own.location_id}/members/{admin_account.id}", headers=world.admin)
    assert admin_member.status_code == 422
    # the grant and the withdrawal are in the audit trail
    from clinic.audit.models import AuditEvent
    from clinic.extensions import db

    with app.app_context():
        tags = list(
            db.session.scalars(
                select(AuditEvent.tag).where(
                    AuditEvent.subject_type == "user", AuditEvent.subject_id == nurse_account.id
                )
            )
        )
    assert tags.count("auth:membership:grant") == 2 and tags.count("auth:membership:revoke") == 1


def test_an_auditor_reads_only_the_registrants_granted(app, world: World, make_user) -> None:
    c, own, other = world.client, world.own, world.other
    _, auditor = _member(app, make_user, "auditor", own.location_id)
    assert (
        c.get("/api/v1/inventory/ledger", query_string={"location_id": own.location_id}, headers=auditor).status_code
        == 200
    )
    assert (
        c.get("/api/v1/inventory/ledger", query_string={"location_id": other.location_id}, headers=auditor).status_code
        == 403
    )
    since = (today_in("UTC") - timedelta(days=30)).isoformat()
    until = (today_in("UTC") + timedelta(days=1)).isoformat()
    export = {"kind": "receiving-log", "format": "csv", "since": since, "until": until}
    assert (
        c.post("/api/v1/exports", headers=auditor, json={**export, "location_id": other.location_id}).status_code == 403
    )
    whole = c.post("/api/v1/exports", headers=auditor, json=export)
    assert whole.status_code == 422 and "location_id" in whole.json["errors"]
    assert (
        c.post("/api/v1/exports", headers=auditor, json={**export, "location_id": own.location_id}).status_code == 202
    )


def test_a_witness_works_where_the_act_happens(app, world: World, make_user) -> None:
    """SYS-11 and DEA-42: another location's nurse cannot sign a waste here."""
    c, own, other = world.client, world.own, world.other
    _, nurse = _member(app, make_user, "nurse", own.location_id)
    stranger, _ = _member(app, make_user, "nurse", other.location_id)
    body = {
        "container_id": own.container_id,
        "quantity_mg": "1",
        "witness_email": stranger.email,
        "witness_password": stranger.password,
        "reason": "drawn up, not given",
    }
    resp = c.post("/api/v1/inventory/wastes", headers=nurse, json=body)
    assert resp.status_code == 422, resp.json
    assert "does not work at this location" in str(resp.json["errors"])


def test_pages_offer_only_the_users_locations_and_remember_the_choice(app, world: World, make_user) -> None:
    from clinic.auth.models import User
    from clinic.extensions import db

    own, other = world.own, world.other
    account = make_user("nurse", locations=[own.location_id, other.location_id])
    app.test_client_class = Client
    c = app.test_client()
    sign_in(c, account)  # type: ignore[arg-type]
    page = c.get("/inventory/", query_string={"location_id": other.location_id})
    assert page.status_code == 200
    with app.app_context():
        assert db.session.get(User, account.id).current_location_id == other.location_id
    options = set(re.findall(r'<option value="(\d+)"', c.get("/inventory/").get_data(as_text=True)))
    assert options == {str(own.location_id), str(other.location_id)}
    single = make_user("nurse", locations=[own.location_id])
    s = app.test_client()
    sign_in(s, single)  # type: ignore[arg-type]
    assert s.get("/inventory/", query_string={"location_id": other.location_id}).status_code == 403
    html = s.get("/inventory/").get_data(as_text=True)
    assert str(other.location_id) not in set(re.findall(r'<option value="(\d+)"', html))


#: path parameters the location dimension substitutes with a record of the own or the other location
LOCATED = {"location_id", "patient_id", "series_id", "appointment_id", "container_id"}


def _url(rule: str, site: Site) -> str | None:
    names = re.findall(r"<(?:[a-z]+:)?([a-z_]+)>", rule)
    if not names or not set(names) & LOCATED:
        return None
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", lambda m: str(getattr(site, m.group(1), 1)), rule)


@pytest.mark.parametrize("role", ROLES)
def test_location_dimension_of_the_access_matrix(app, world: World, make_user, role: str) -> None:
    """Every route naming a located record, by role, at the own and the other location, against the policy:
    at the other location every role the policy allows is refused as not a member; at its own it is
    not (what follows is the route's own business: 200, 404, 409, 422...)."""
    from clinic.auth.models import Role

    account = make_user(role, locations=[world.own.location_id])
    token = bearer(app, account)
    app.test_client_class = Client
    mismatches = []
    checked = 0
    for endpoint, method, rule in routes(app):
        permission = permission_for(app, endpoint, method)
        if permission in (PUBLIC, None) or Role(role) not in POLICY[permission]:
            continue
        for where, site in (("own", world.own), ("other", world.other)):
            url = _url(rule, site)
            if url is None:
                continue
            c = app.test_client()
            is_api = rule.startswith("/api/")
            kwargs: dict[str, Any] = {"headers": token if is_api else {}}
            if not is_api:
                sign_in(c, account)  # type: ignore[arg-type]
                if method != "GET":
                    kwargs["data"] = {"csrf_token": c.csrf("/")}
            elif method in ("POST", "PUT", "PATCH"):
                kwargs["json"] = {}
            checked += 1
            answer = c.open(url, method=method, **kwargs)
            status, code = answer.status_code, (answer.json or {}).get("code") if answer.is_json else None
            answer.close()
            refused_here = status == 403 and (not is_api or code == "not_a_member")
            if where == "other" and not refused_here:
                mismatches.append((where, method, rule, status))
            if where == "own" and (status == 403 or status >= 500):
                mismatches.append((where, method, rule, status))
    assert mismatches == []
    assert checked >= {"prescriber": 80, "nurse": 80, "front_desk": 50, "auditor": 4}[role], checked


def test_the_command_line_and_the_users_page_grant_locations(app, world: World, make_user) -> None:
    from clinic.auth import members
    from clinic.auth.models import User
    from clinic.extensions import db

    own, other = world.own, world.other
    runner = app.test_cli_runner()
    email = f"cli-{uuid.uuid4().hex[:8]}@member.clinic"
    made = runner.invoke(
        args=["users", "create", "--email", email, "--name", "Cli Nurse", "--role", "nurse",
              "--location", str(own.location_id), "--location", str(other.location_id), "--password-stdin"],
        input="brisk-otter-meadow-41\n",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    unknown = runner.invoke(
        args=["users", "create", "--email", f"x{email}", "--name", "X", "--role", "nurse",
              "--location", "999999", "--password-stdin"],
        input="brisk-otter-meadow-41\n",
    )  # fmt: skip
    assert unknown.exit_code != 0 and "999999" in unknown.output
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        assert members.location_ids_of(user.id) == sorted([own.location_id, other.location_id])
        assert db.session.scalar(select(User.id).where(User.email == f"x{email}")) is None
        user_id = user.id
    # the users page: untick the other location
    app.test_client_class = Client
    admin_account = make_user("admin")
    c = app.test_client()
    sign_in(c, admin_account)  # type: ignore[arg-type]
    page = c.get("/admin/users").get_data(as_text=True)
    assert f'action="/admin/users/{user_id}/locations"' in page
    saved = c.post(
        f"/admin/users/{user_id}/locations",
        data={"csrf_token": c.csrf("/admin/users"), "location_ids": [str(own.location_id)]},
    )
    assert saved.status_code == 302
    with app.app_context():
        assert members.location_ids_of(user_id) == [own.location_id]
    # and a new user made on the page works where it was ticked
    new_email = f"page-{uuid.uuid4().hex[:8]}@member.clinic"
    created = c.post(
        "/admin/users",
        data={"csrf_token": c.csrf("/admin/users"), "name": "Page Desk", "email": new_email, "role": "front_desk",
              "password": "brisk-otter-meadow-41", "location_ids": [str(other.location_id)]},
    )  # fmt: skip
    assert created.status_code == 302, created.get_data(as_text=True)[-400:]
    with app.app_context():
        new_id = db.session.scalar(select(User.id).where(User.email == new_email))
        assert members.location_ids_of(new_id) == [other.location_id]


def test_a_course_and_a_roster_name_only_a_prescriber_of_the_location(app, world: World, make_user) -> None:
    c, own, other = world.client, world.own, world.other
    elsewhere = make_user("prescriber", locations=[other.location_id])
    booked = c.post(
        "/api/v1/series",
        headers=world.desk.desk,
        json={
            "patient_id": own.patient_id,
            "protocol": "ketamine-iv-induction",
            "location_id": own.location_id,
            "prescriber_id": elsewhere.id,
            "start_on": world.desk.day(28),
            "preferred_time": "09:00",
        },
    )
    assert booked.status_code == 422 and "prescriber_id" in booked.json["errors"], booked.json
    roster = c.put(
        f"/api/v1/locations/{own.location_id}/prescribers/{elsewhere.id}/hours",
        headers=world.admin,
        json={"mon": ["09:00", "12:00"]},
    )
    assert roster.status_code == 422 and "user_id" in roster.json["errors"], roster.json
    # the booking page offers only the prescribers of the user's own locations
    app.test_client_class = Client
    page = app.test_client()
    sign_in(page, make_user("front_desk", locations=[own.location_id]))  # type: ignore[arg-type]
    assert f'value="{elsewhere.id}"' not in page.get("/schedule/book").get_data(as_text=True)


def test_a_request_naming_many_ids_is_checked_in_one_query_and_answered(app, world: World, make_user) -> None:
    """Hundreds of ids (a count of a big safe, or junk) are one part per kind of id, never one per id:
    SQLite refuses a compound SELECT of more than 500 parts, which would be a 500."""
    c, own, other = world.client, world.own, world.other
    _, nurse = _member(app, make_user, "nurse", own.location_id)
    many = list(range(10_000_000, 10_000_600))
    body = {"container_ids": many, "lines": [{"container_id": i, "patient_id": i} for i in many]}
    assert c.post("/api/v1/inventory/wastes", headers=nurse, json=body).status_code == 422
    # and one id of the other location among them still refuses the whole request
    body["lines"].append({"container_id": other.container_id})
    refused = c.post("/api/v1/inventory/wastes", headers=nurse, json=body)
    assert refused.status_code == 403 and refused.json["code"] == "not_a_member"

"""Every registered route x every role, against the policy table (STYLE habit 8, F18).

A new route that names no permission fails here (and is denied at run time); a role that can do
more or less than POLICY says fails here.
"""

from __future__ import annotations

import pytest
from flask import Flask

from clinic.auth import service
from clinic.auth.models import Role, User
from clinic.auth.policy import POLICY, PUBLIC, permission_for
from clinic.core.tx import commit
from clinic.extensions import db
from tests.conftest import Client

ROLES = [r.value for r in Role]
SKIP_METHODS = {"HEAD", "OPTIONS"}
#: public probes whose answer is 503 by design while something is not ready (no heartbeat in tests)
READINESS = {"web_ui.health_ready"}


def routes(app: Flask) -> list[tuple[str, str, str]]:
    found = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - SKIP_METHODS):
            found.append((rule.endpoint, method, rule.rule))
    return found


def test_every_route_names_a_permission(app):
    missing = [(e, m) for e, m, _ in routes(app) if permission_for(app, e, m) is None]
    assert missing == []


def test_matrix_covers_the_app(app):
    # The guard test below is only as good as its reach: make sure it sees the API and the pages.
    endpoints = {e for e, _, _ in routes(app)}
    assert {"auth_api.Me", "auth_api.Users", "auth_ui.users", "web_ui.dashboard"} <= endpoints


def _url(rule: str, target_id: int) -> str:
    import re

    return re.sub(r"<(?:[a-z]+:)?[a-z_]+>", str(target_id), rule)


def _client_for(app: Flask, role: str | None) -> tuple[Client, dict[str, str]]:
    app.test_client_class = Client
    c = app.test_client()
    if role is None:
        return c, {}
    with app.app_context():
        import uuid

        user = service.create_user(
            actor=None,
            email=f"matrix-{role}-{uuid.uuid4().hex[:8]}@test.clinic",
            name=f"Matrix {role}",
            role=role,
            password="hollow-vine-ember-7",
            license_type="RN",
            license_number="M-1",
        )
        raw = service.start_session(user=user, client_addr="127.0.0.1")
        token, _ = service.issue_token(user=db.session.get(User, user.id))
        commit()
    with c.session_transaction() as s:
        s["sid"] = raw
    return c, {"Authorization": f"Bearer {token}"}


@pytest.fixture
def target_user(app) -> int:
    with app.app_context():
        import uuid

        user = service.create_user(
            actor=None,
            email=f"target-{uuid.uuid4().hex[:8]}@test.clinic",
            name="Target",
            role="front_desk",
            password="quiet-brook-lantern-4",
        )
        commit()
        return user.id


@pytest.mark.parametrize("role", [None, *ROLES])
def test_route_by_role_matches_policy(app, role, target_user):
    mismatches = []
    for endpoint, method, rule in routes(app):
        permission = permission_for(app, endpoint, method)
        if endpoint == "static":
            continue
        c, headers = _client_for(app, role)  # fresh per route: some routes sign out or revoke
        url = _url(rule, target_user)
        is_api = rule.startswith("/api/")
        kwargs: dict = {"headers": headers if is_api else {}}
        if not is_api and method != "GET":
            kwargs["data"] = {"csrf_token": c.csrf("/login")}
        elif is_api and method in ("POST", "PUT", "PATCH"):
            kwargs["json"] = {}
        answer = c.open(url, method=method, **kwargs)
        status = answer.status_code
        answer.close()  # a file download (an export) holds its file open until closed
        if permission == PUBLIC:
            ok = status < 500 or (endpoint in READINESS and status == 503)
        elif role is None:
            ok = status == (401 if is_api else 302)
        elif Role(role) in POLICY[permission]:
            ok = status not in (401, 403) and status < 500
        else:
            ok = status == 403
        if not ok:
            mismatches.append((method, rule, permission, status))
    assert mismatches == []


#: POSTs that change no record: an export request reads, and writes only its own job and the logs
READS_BY_POST = {"exports.create"}


def test_auditor_cannot_write_anything(app, target_user):
    """Auditors are read-only: every state-changing route but their own sign-out/token is 403."""
    writes = [
        (e, m, r)
        for e, m, r in routes(app)
        if m in ("POST", "PUT", "PATCH", "DELETE")
        and permission_for(app, e, m) not in (PUBLIC, None, *READS_BY_POST)
        and not str(permission_for(app, e, m)).startswith("self.")
    ]
    assert writes, "expected some write routes"
    for _, method, rule in writes:
        c, headers = _client_for(app, "auditor")
        is_api = rule.startswith("/api/")
        kwargs: dict = {"headers": headers} if is_api else {"data": {"csrf_token": c.csrf("/login")}}
        assert c.open(_url(rule, target_user), method=method, **kwargs).status_code == 403, rule


@pytest.mark.parametrize("role", [None, "nurse"])
def test_options_answers_allow_without_auth_and_without_touching_data(app, role, target_user):
    """Review: OPTIONS on an API route answered 403 (401 for a guest); the guard took it for a method
    it protects. It answers as Flask's automatic OPTIONS does (Allow, no body), for everyone, with no
    statement run (so no access-log row either: nothing was done)."""
    from sqlalchemy import event

    with app.app_context():
        engine = db.engine
    statements: list[str] = []

    def on_execute(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    c, headers = _client_for(app, role)
    adapter = app.url_map.bind("localhost")
    wrong = []
    seen = 0
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        for rule in app.url_map.iter_rules():
            if rule.endpoint == "static" or "OPTIONS" not in (rule.methods or ()):
                continue
            url = _url(rule.rule, target_user)
            statements.clear()
            resp = c.open(url, method="OPTIONS", headers=headers if rule.rule.startswith("/api/") else {})
            allow = {m.strip() for m in resp.headers.get("Allow", "").split(",") if m.strip()}
            if resp.status_code not in (200, 204) or allow != set(adapter.allowed_methods(url)) or statements:
                wrong.append((rule.rule, resp.status_code, sorted(allow), len(statements)))
            seen += 1
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    assert seen > 40
    assert wrong == []

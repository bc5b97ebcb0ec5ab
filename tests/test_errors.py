"""Errors: problem+json for the API, friendly pages for people, never a traceback."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import temp_app


def test_unknown_api_path_is_problem_json(client):
    resp = client.get("/api/v1/no-such-thing")
    assert resp.status_code == 404
    assert resp.mimetype == "application/problem+json"
    assert resp.json["status"] == 404 and resp.json["title"] == "Not Found"


def test_wrong_method_is_405_with_allow(client):
    resp = client.put("/api/v1/users/me")
    assert resp.status_code == 405
    assert resp.mimetype == "application/problem+json"
    assert "GET" in resp.headers["Allow"]


def test_unknown_page_is_html(client):
    resp = client.get("/no-such-page")
    assert resp.status_code == 404
    assert resp.mimetype == "text/html"
    assert "Not Found" in resp.get_data(as_text=True)


def test_malformed_json_is_4xx_problem(client, token_for):
    resp = client.post("/api/v1/users", data="{not json", content_type="application/json", headers=token_for("admin"))
    assert 400 <= resp.status_code < 500
    assert resp.mimetype == "application/problem+json"


def test_unknown_field_is_rejected(client, token_for):
    resp = client.post(
        "/api/v1/users",
        headers=token_for("admin"),
        json={"email": "a@b.co", "name": "A", "role": "nurse", "password": "x" * 12, "is_admin": True},
    )
    assert resp.status_code == 422
    assert "is_admin" in resp.json["errors"]


@pytest.fixture
def crashing_app(backend):
    from clinic.auth.policy import public

    @public
    def boom():
        raise RuntimeError("secret-patient-name Jane Canary")

    with temp_app(backend, "crash") as app:
        app.add_url_rule("/api/v1/boom", "boom", boom)
        app.add_url_rule("/boom", "boom_page", boom)
        yield app


def test_unexpected_error_is_500_without_details(crashing_app, caplog):
    c = crashing_app.test_client()
    with caplog.at_level(logging.ERROR):
        api = c.get("/api/v1/boom")
        page = c.get("/boom")
    assert api.status_code == 500 and api.mimetype == "application/problem+json"
    assert page.status_code == 500 and page.mimetype == "text/html"
    for body in (api.get_data(as_text=True), page.get_data(as_text=True)):
        assert "Canary" not in body and "Traceback" not in body and "RuntimeError" not in body
    # The log names the error type and where, never the message (it can carry PHI).
    assert "RuntimeError" in caplog.text
    assert "Canary" not in caplog.text

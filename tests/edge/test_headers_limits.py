"""SYS-07: every answer carries the security headers; bodies and JSON nesting are bounded."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.conftest import Client, sign_in

PROBLEM = "application/problem+json"


def _pages(app: Flask) -> list[str]:
    """Every GET page that needs no URL argument (the same walk as the access matrix)."""
    return sorted(
        {
            rule.rule
            for rule in app.url_map.iter_rules()
            if "GET" in rule.methods  # type: ignore[operator]
            and not rule.arguments
            and not rule.rule.startswith(("/api/", "/static"))
            and rule.endpoint != "auth_ui.logout"
        }
    )


def _check(resp, where: str, *, phi: bool = True) -> None:  # type: ignore[no-untyped-def]
    h = resp.headers
    csp = h.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp, where
    assert "unsafe-inline" not in csp.split("script-src", 1)[-1].split(";")[0], where
    if resp.mimetype == "text/html":
        assert "script-src 'self'" in csp, where
    assert h.get("X-Content-Type-Options") == "nosniff", where
    assert h.get("Referrer-Policy") in ("same-origin", "no-referrer"), where
    if phi:
        assert h.get("Cache-Control") == "no-store", where


def test_every_page_and_api_answer_has_the_headers(app, make_user):
    app.test_client_class = Client
    anonymous = app.test_client()
    admin, nurse = app.test_client(), app.test_client()
    sign_in(admin, make_user("admin"))
    sign_in(nurse, make_user("nurse"))
    pages = _pages(app)
    assert len(pages) > 10, pages
    for c in (anonymous, admin, nurse):
        for path in pages:
            _check(c.get(path), path)
    token = app.test_client().post("/api/v1/auth/tokens", json={"email": "x@y.example", "password": "x"})
    _check(token, "401 API")
    assert token.mimetype == PROBLEM
    _check(anonymous.get("/api/v1/users/me"), "API anonymous")
    _check(anonymous.get("/api/v1/openapi.json"), "openapi")
    _check(anonymous.get("/no/such/page"), "404")
    static = anonymous.get("/static/forms.js")
    _check(static, "static", phi=False)
    static.close()


def test_pages_carry_no_inline_script(app, make_user):
    """The CSP forbids inline script; a page that still had some would break, so none may."""
    import re

    app.test_client_class = Client
    c = app.test_client()
    sign_in(c, make_user("prescriber"))
    inline = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+\s*=|javascript:", re.IGNORECASE)
    for path in _pages(app):
        body = c.get(path).get_data(as_text=True)
        assert not inline.search(body), (path, inline.search(body))


def test_a_body_over_the_limit_is_413_unread(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 4096)
    big = b'{"email": "' + b"a" * 8192 + b'", "password": "x"}'
    resp = client.post("/api/v1/auth/tokens", data=big, content_type="application/json")
    assert resp.status_code == 413 and resp.mimetype == PROBLEM, resp.get_data()[:200]
    form = client.post("/login", data={"email": "a" * 8192, "password": "x"})
    assert form.status_code == 413


@pytest.mark.parametrize("path", ["/api/v1/auth/tokens", "/api/v1/users"])
def test_deep_json_is_a_400_problem_not_a_500(app, client, token_for, path):
    deep = "[" * 100_000 + "]" * 100_000
    headers = token_for("admin") if path == "/api/v1/users" else {}
    resp = client.post(path, data=deep, content_type="application/json", headers=headers)
    assert resp.status_code == 400 and resp.mimetype == PROBLEM, resp.get_data()[:200]
    nested = '{"a": ' * 40 + "1" + "}" * 40  # deeper than 32, in objects, with a "[" inside a string
    resp = client.post(path, data=nested.replace("1", '"[[["'), content_type="application/json", headers=headers)
    assert resp.status_code == 400
    fine = client.post(path, json={"email": "x[{", "password": "{{{["}, headers=headers)
    assert fine.status_code != 400 or "nested" not in fine.json["detail"]


def test_json_depth_scan():
    from clinic.core.edge import json_depth_exceeds

    assert not json_depth_exceeds(b'{"a": [1, {"b": "[[[[[[\\"]]]"}]}', 2 + 1)
    assert json_depth_exceeds(b"[[[[]]]]", 3)
    assert not json_depth_exceeds(b"[[[]]]", 3)


@pytest.mark.parametrize("path", ["/api/v1/auth/tokens", "/api/v1/users", "/api/v1/inventory/wastes"])
def test_deep_json_in_utf16_is_a_400_problem_not_a_500(app, client, token_for, path):
    """SYS-07: Flask's get_json (read by the scope check) reads UTF-16 and UTF-32 as json.loads does.
    In UTF-16 U+2200 is the bytes 00 22, a quote to the byte scan, which then took the nesting after
    it for a string: 100,000 levels reached the parser (a RecursionError, 500). JSON is UTF-8 only."""
    headers = {"/api/v1/users": token_for("admin"), "/api/v1/inventory/wastes": token_for("nurse")}.get(path, {})
    for encoding in ("utf-16-le", "utf-16", "utf-32"):
        deep = ('{"a": "\u2200", "b": ' + "[" * 100_000 + "]" * 100_000 + "}").encode(encoding)
        resp = client.post(path, data=deep, content_type="application/json", headers=headers)
        assert resp.status_code == 400 and resp.mimetype == PROBLEM, (encoding, resp.get_data()[:200])

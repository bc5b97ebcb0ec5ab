"""Sign-in follows only same-site paths in ``next`` (SYS-07): no open redirect, no broken header."""

from __future__ import annotations

from tests.conftest import Client

OUTSIDE = [
    "/\t/evil.example",
    "/\n/evil.example",
    "//evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "https://evil.example/",
    "http:evil.example",
    "/ok\r\nSet-Cookie: x=1",
    " /evil",
    "javascript:alert(1)",
]


def test_next_outside_the_site_goes_to_the_default_page(app, make_user):
    app.test_client_class = Client
    c = app.test_client()
    nurse = make_user("nurse")
    landed = {target: _landing(c, nurse, target) for target in OUTSIDE}
    assert landed == dict.fromkeys(OUTSIDE, "/")


def _landing(c, account, target: str) -> str:  # type: ignore[no-untyped-def]
    c.get("/login", query_string={"next": target})
    resp = c.post("/login", data={"email": account.email, "password": account.password, "csrf_token": c.csrf()})
    assert resp.status_code == 302
    return resp.headers["Location"]


def test_a_same_site_path_is_followed(app, make_user):
    app.test_client_class = Client
    c = app.test_client()
    assert _landing(c, make_user("nurse"), "/patients?q=x") == "/patients?q=x"

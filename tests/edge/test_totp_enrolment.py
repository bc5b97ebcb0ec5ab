"""SYS-10: TOTP enrolment shows the key and a QR code drawn here as SVG; the key stays the same
until enrolment completes (another sign-in, another browser), and a reset makes a new one."""

from __future__ import annotations

import re

import pyotp

from tests.conftest import Client


def _enrol_page(app, account) -> tuple[Client, str]:  # type: ignore[no-untyped-def]
    app.test_client_class = Client
    c = app.test_client()
    resp = c.post("/login", data={"email": account.email, "password": account.password, "csrf_token": c.csrf()})
    assert resp.status_code == 302 and resp.location.endswith("/login/enrol"), resp.location
    return c, c.get("/login/enrol").get_data(as_text=True)


def _key(page: str) -> str:
    key = re.search(r'id="secret" readonly value="([A-Z2-7]{16,})"', page)
    assert key, page[-2000:]
    return key.group(1)


def test_enrolment_shows_a_local_svg_qr_and_keeps_the_key(app, make_user, login_as):
    admin = make_user("admin", enrol_totp=False)
    first, page = _enrol_page(app, admin)
    key = _key(page)
    qr = re.search(r'data-testid="totp-qr"[^>]*>(.*?)</figure>', page, re.S)
    assert qr and qr.group(1).lstrip().startswith("<svg") and "<path" in qr.group(1)
    assert "http" not in qr.group(1).replace("http://www.w3.org", "")  # nothing fetched from elsewhere
    # Signing in again, in another browser, shows the same key.
    _, again = _enrol_page(app, admin)
    assert _key(again) == key
    # A code from that key completes enrolment; the next sign-in asks for a code, not enrolment.
    done = first.post("/login/enrol", data={"code": pyotp.TOTP(key).now(), "csrf_token": first.csrf("/login/enrol")})
    assert done.status_code == 302 and not done.location.startswith("/login")
    # An admin's reset of the second factor means a new key at the next enrolment.
    admin_page, _ = login_as("admin")
    reset = admin_page.post(f"/admin/users/{admin.id}/totp", data={"csrf_token": admin_page.csrf("/admin/users")})
    assert reset.status_code == 302
    _, fresh = _enrol_page(app, admin)
    assert _key(fresh) != key

"""SYS-10: API tokens live 12 hours at most (longer only for a named service account), are listed
and revocable on the user's own account page, and an auditor gets one there for the API."""

from __future__ import annotations

import re


def test_token_lifetime_is_capped_but_for_named_service_accounts(app, client, make_user, monkeypatch):
    nurse = make_user("nurse")
    body = {"email": nurse.email, "password": nurse.password}
    assert client.post("/api/v1/auth/tokens", json={**body, "ttl_hours": 13}).status_code == 422
    assert client.post("/api/v1/auth/tokens", json={**body, "ttl_hours": 12}).status_code == 201
    cli = app.test_cli_runner().invoke(args=["users", "token", "--email", nurse.email, "--ttl-hours", "200"])
    assert cli.exit_code != 0
    monkeypatch.setitem(app.config, "TOKEN_SERVICE_ACCOUNTS", [nurse.email.upper()])
    long = client.post("/api/v1/auth/tokens", json={**body, "ttl_hours": 200})
    assert long.status_code == 201, long.json


def test_an_auditor_gets_lists_and_revokes_tokens_on_the_account_page(client, login_as):
    auditor_page, auditor = login_as("auditor")
    page = auditor_page.get("/account")
    assert page.status_code == 200 and "no live tokens" in page.get_data(as_text=True)
    made = auditor_page.post("/account/tokens", data={"ttl_hours": "2", "csrf_token": auditor_page.csrf("/account")})
    assert made.status_code == 201
    token = re.search(r'value="(cot_[^"]+)"', made.get_data(as_text=True))
    assert token
    headers = {"Authorization": f"Bearer {token.group(1)}"}
    assert client.get("/api/v1/users/me", headers=headers).json["id"] == auditor.id
    assert (
        auditor_page.post(
            "/account/tokens", data={"ttl_hours": "13", "csrf_token": auditor_page.csrf("/account")}
        ).status_code
        == 422
    )
    listed = auditor_page.get("/account").get_data(as_text=True)
    ids = re.findall(r"/account/tokens/(\d+)/revoke", listed)
    assert len(ids) == 1
    # Another user cannot revoke it (404, as for a token that never was) ...
    other_page, _ = login_as("nurse")
    theft = other_page.post(f"/account/tokens/{ids[0]}/revoke", data={"csrf_token": other_page.csrf("/account")})
    assert theft.status_code == 404
    assert client.get("/api/v1/users/me", headers=headers).status_code == 200
    # ... its owner can, and then it opens nothing.
    done = auditor_page.post(f"/account/tokens/{ids[0]}/revoke", data={"csrf_token": auditor_page.csrf("/account")})
    assert done.status_code == 302
    assert client.get("/api/v1/users/me", headers=headers).status_code == 401
    assert "no live tokens" in auditor_page.get("/account").get_data(as_text=True)

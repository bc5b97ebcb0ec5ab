"""Review: "each step usable once" (verify_totp) is checked on an unlocked read of
users.totp_last_step, so two sign-ins racing with the same code both pass on PostgreSQL."""

from __future__ import annotations

import threading

import pytest


def test_one_totp_code_signs_in_once_even_when_two_requests_race(app, make_user, backend):
    if backend != "postgresql":
        pytest.skip("SQLite serialises whole requests")
    admin = make_user("admin")  # TOTP enrolled
    code = admin.totp_now()
    barrier = threading.Barrier(2)
    answers: list[int] = []

    def sign_in() -> None:
        c = app.test_client()
        barrier.wait()
        resp = c.post("/api/v1/auth/tokens", json={"email": admin.email, "password": admin.password, "totp_code": code})
        answers.append(resp.status_code)

    threads = [threading.Thread(target=sign_in) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(answers) == [201, 401], answers

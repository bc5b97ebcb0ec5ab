"""Review: the sign-in throttle counted failures with an unlocked read before the argon2 check, so
N wrong passwords fired at once for one account were each judged against the same stale count and
all got checked (on PostgreSQL). Now an attempt is claimed (counted) in a short transaction of its
own, under a lock, before its password is looked at: at most the limit are ever checked."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from clinic.auth.models import AuthAttempt
from clinic.extensions import db


def _fire(app, n: int, body: dict) -> list[int]:  # type: ignore[no-untyped-def]
    """``n`` sign-ins at once, each from its own thread (its own app context, so its own session)."""
    barrier = threading.Barrier(n)
    answers: list[int] = []

    def sign_in() -> None:
        c = app.test_client()
        barrier.wait()
        answers.append(c.post("/api/v1/auth/tokens", json=body).status_code)

    threads = [threading.Thread(target=sign_in) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return answers


def test_concurrent_wrong_passwords_are_throttled_after_the_limit(app, client, make_user):
    nurse = make_user("nurse")
    limit = app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]
    answers = _fire(app, 3 * limit, {"email": nurse.email, "password": "not-the-password"})
    assert len(answers) == 3 * limit
    assert set(answers) <= {401, 429}, answers
    assert answers.count(401) <= limit, answers  # no more passwords checked than the limit allows
    with app.app_context():
        failures = db.session.scalar(
            select(func.count())
            .select_from(AuthAttempt)
            .where(AuthAttempt.email == nurse.email, ~AuthAttempt.succeeded)
        )
    assert failures <= limit
    # Throttled now: even the right password is refused unchecked.
    right = client.post("/api/v1/auth/tokens", json={"email": nurse.email, "password": nurse.password})
    assert right.status_code == 429


def test_a_right_password_among_concurrent_ones_is_not_counted_as_a_failure(app, make_user):
    nurse = make_user("nurse")
    limit = app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]
    answers = _fire(app, limit, {"email": nurse.email, "password": nurse.password})
    assert answers == [201] * limit
    with app.app_context():
        rows = dict(
            db.session.execute(
                select(AuthAttempt.succeeded, func.count())
                .where(AuthAttempt.email == nurse.email)
                .group_by(AuthAttempt.succeeded)
            ).all()
        )
    assert rows == {True: limit}  # one record per attempt, none left counted as a failure


def test_a_user_created_in_the_same_unit_of_work_can_sign(app):
    """The claim commits on a connection of its own, which cannot see the session's uncommitted rows:
    a command or task that creates a witness and has them sign at once (the demo, the test setups)
    must still find the account."""
    import uuid

    from clinic.auth import service
    from clinic.core import tx

    email = f"fresh.{uuid.uuid4().hex[:8]}@test.clinic"
    with app.app_context():
        created = service.create_user(
            actor=None, email=email, name="Fresh", role="nurse", password="amber-kite-harbor-9", license_number="L-9"
        )
        signed = service.verify_password(email=email, password="amber-kite-harbor-9", client_addr="192.0.2.9")
        assert signed.id == created.id
        tx.commit()

"""Idempotency-Key on ledger writes (CONTRACT.md, F4)."""

from __future__ import annotations

import uuid


def _admin(clinic, cid, key, qty="10"):
    return clinic.client.post(
        "/api/v1/inventory/administrations",
        json={"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": qty},
        headers={**clinic.nurse_h, "Idempotency-Key": key},
    )


def test_replay_returns_the_first_response_and_writes_nothing(clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    key = str(uuid.uuid4())
    first = _admin(clinic, cid, key)
    assert first.status_code == 201
    before = len(clinic.ledger())
    replays = [_admin(clinic, cid, key) for _ in range(3)]
    for r in replays:
        assert r.status_code == 201
        assert r.get_data() == first.get_data()
        assert r.headers["Idempotent-Replayed"] == "true"
    assert len(clinic.ledger()) == before
    assert clinic.container(cid)["balance_mg"] == "490"


def test_same_key_different_body_is_422(clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    key = str(uuid.uuid4())
    assert _admin(clinic, cid, key, "10").status_code == 201
    other = _admin(clinic, cid, key, "20")
    assert other.status_code == 422
    assert other.json["code"] == "idempotency_key_reused"
    assert clinic.container(cid)["balance_mg"] == "490"


def test_a_failed_request_releases_its_key(clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    key = str(uuid.uuid4())
    assert _admin(clinic, cid, key, "600").status_code == 409
    assert _admin(clinic, cid, key, "600").status_code == 409  # still refused, not replayed as in flight
    assert clinic.container(cid)["balance_mg"] == "500"


def _claim(app, clinic, key: str, request_hash: str, lease_seconds: int) -> None:
    """A claim with no response yet, as a request that is still running (or died) leaves it."""
    from datetime import timedelta

    from clinic.core.idempotency import IdempotencyKey
    from clinic.core.time import utcnow
    from clinic.extensions import db

    with app.app_context():
        db.session.add(
            IdempotencyKey(
                user_id=clinic.nurse.id,
                key=key,
                request_hash=request_hash,
                lease_until=utcnow() + timedelta(seconds=lease_seconds),
            )
        )
        db.session.commit()


def test_in_flight_key_is_409(app, clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    other_key = str(uuid.uuid4())
    _claim(app, clinic, other_key, "0" * 64, lease_seconds=60)
    assert _admin(clinic, cid, other_key).status_code == 422  # another body under that key
    key = str(uuid.uuid4())
    _claim(app, clinic, key, _hash_of(app, cid, clinic), lease_seconds=60)
    resp = _admin(clinic, cid, key)
    assert resp.status_code == 409
    assert resp.json["code"] == "idempotency_in_flight"
    assert clinic.container(cid)["balance_mg"] == "500"


def test_a_claim_whose_lease_ran_out_is_completed_once_by_a_retry(app, clinic):
    """A request killed mid-write leaves its claim; after the lease the retry runs the operation."""
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    key = str(uuid.uuid4())
    _claim(app, clinic, key, _hash_of(app, cid, clinic), lease_seconds=-1)
    first = _admin(clinic, cid, key)
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    again = _admin(clinic, cid, key)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_data() == first.get_data()
    assert clinic.container(cid)["balance_mg"] == "490"


def _hash_of(app, cid, clinic) -> str:
    import json

    from clinic.core.idempotency import _request_hash

    body = json.dumps({"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "10"})
    with app.test_request_context(
        "/api/v1/inventory/administrations", method="POST", data=body, content_type="application/json"
    ):
        return _request_hash()


def test_keys_are_per_user(app, clinic, make_user):
    from tests.conftest import bearer

    cid = clinic.receive(count=1).json["containers"][0]["id"]
    key = str(uuid.uuid4())
    assert _admin(clinic, cid, key).status_code == 201
    other = clinic.client.post(
        "/api/v1/inventory/administrations",
        json={"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "10"},
        headers={**bearer(app, make_user("nurse")), "Idempotency-Key": key},
    )
    assert other.status_code == 201
    assert clinic.container(cid)["balance_mg"] == "480"


def test_overlong_key_is_422(clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    assert _admin(clinic, cid, "k" * 300).status_code == 422


def test_a_request_that_outlived_its_lease_loses_to_the_retry_that_took_its_claim_over(
    app, clinic, backend, monkeypatch
):
    """PostgreSQL holds no lock on a claim: its lease marks it as the request's. A request still
    running when its lease ran out, whose claim a retry took over meanwhile, fails at its COMMIT and
    writes nothing (nor lets go of the retry's claim); the operation runs once, by the retry."""
    import pytest

    if backend != "postgresql":
        pytest.skip("SQLite makes the claim inside the work's transaction, under its one write lock")
    from datetime import timedelta

    from sqlalchemy import update

    from clinic.core import idempotency
    from clinic.core.idempotency import IdempotencyKey
    from clinic.core.time import utcnow
    from clinic.extensions import db

    cid = clinic.receive(count=1).json["containers"][0]["id"]
    entries = len(clinic.ledger())
    key = str(uuid.uuid4())
    real_claim = idempotency._claim

    def claim_then_lose_it(*args, **kwargs):  # type: ignore[no-untyped-def]
        claim = real_claim(*args, **kwargs)
        # a retry's takeover, committed on a connection of its own while this request still works
        with db.engine.begin() as conn:
            conn.execute(
                update(IdempotencyKey)
                .where(IdempotencyKey.id == claim[0])
                .values(lease_until=utcnow() + timedelta(minutes=5))
            )
        return claim

    monkeypatch.setattr(idempotency, "_claim", claim_then_lose_it)
    lost = _admin(clinic, cid, key)
    monkeypatch.undo()
    assert lost.status_code == 409, lost.json
    assert lost.json["code"] == "idempotency_in_flight"
    assert "took the operation over" in lost.json["detail"]
    assert clinic.container(cid)["balance_mg"] == "500"
    assert len(clinic.ledger()) == entries
    with app.app_context():  # the retry's claim is left alone
        row = db.session.scalar(db.select(IdempotencyKey).where(IdempotencyKey.key == key))
        assert row is not None and row.status_code is None and row.lease_until > utcnow()
        row.lease_until = utcnow() - timedelta(seconds=1)  # ... and that retry died too
        db.session.commit()
    done = _admin(clinic, cid, key)
    assert done.status_code == 201
    assert _admin(clinic, cid, key).headers["Idempotent-Replayed"] == "true"
    assert clinic.container(cid)["balance_mg"] == "490"
    assert len(clinic.ledger()) == entries + 1

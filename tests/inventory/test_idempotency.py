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


def test_in_flight_key_is_409(app, clinic):
    from clinic.core.idempotency import IdempotencyKey, _request_hash  # noqa: F401
    from clinic.extensions import db

    cid = clinic.receive(count=1).json["containers"][0]["id"]
    key = str(uuid.uuid4())
    with app.app_context():
        # A claim with no response yet: exactly what a concurrent twin sees mid-flight.
        db.session.add(IdempotencyKey(user_id=clinic.nurse.id, key=key, request_hash="0" * 64))
        db.session.commit()
    resp = _admin(clinic, cid, key)
    assert resp.status_code in (409, 422)
    with app.app_context():
        row = db.session.query(IdempotencyKey).filter_by(user_id=clinic.nurse.id, key=key).one()
        row.request_hash = _hash_of(app, cid, clinic)
        db.session.commit()
    resp = _admin(clinic, cid, key)
    assert resp.status_code == 409
    assert resp.json["code"] == "idempotency_in_flight"
    assert clinic.container(cid)["balance_mg"] == "500"


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

"""Two people changing one discrepancy, loss report or entry at the same moment: exactly one wins,
the others get a 409, and the ledger holds one effect (issue 8; F3 for states other than balances).

Threads with a test client each, released together by a barrier: on PostgreSQL their transactions
really overlap; on SQLite ``BEGIN IMMEDIATE`` queues them, and the rule must hold there too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tests.conftest import bearer

RACERS = 6


def race(app, n: int, request: Callable[[Any, int], Any]) -> list[Any]:
    barrier = threading.Barrier(n)
    answers: list[Any] = [None] * n

    def run(i: int) -> None:
        client = app.test_client()
        barrier.wait()
        answers[i] = request(client, i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return answers


def shortage(clinic, counted: str = "400") -> tuple[int, int]:
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    resp = clinic.post(
        "/inventory/counts",
        {
            "location_id": clinic.location_id,
            "kind": "shift",
            **clinic.witness_fields(),
            "lines": [{"container_id": cid, "counted_mg": counted}],
        },
    )
    assert resp.status_code == 201, resp.json
    return cid, resp.json["discrepancies"][0]["id"]


def test_racing_escalations_write_one_loss(app, clinic, make_user):
    cid, disc = shortage(clinic)
    heads = [bearer(app, make_user("prescriber")) for _ in range(RACERS)]
    answers = race(
        app,
        RACERS,
        lambda c, i: c.post(
            f"/api/v1/inventory/discrepancies/{disc}/resolve",
            json={"action": "escalate", "explanation": f"short, racer {i}", "loss_kind": "loss"},
            headers=heads[i],
        ),
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * (RACERS - 1), [a.json for a in answers]
    assert all(a.mimetype == "application/problem+json" for a in answers if a.status_code == 409)
    assert len(clinic.ledger(kind="loss", container_id=cid)) == 1
    assert clinic.container(cid)["balance_mg"] == "400"
    reports = clinic.client.get(
        "/api/v1/inventory/loss-reports", query_string={"location_id": clinic.location_id}, headers=clinic.nurse_h
    ).json["items"]
    assert len(reports) == 1


def test_racing_explain_adjust_and_escalate_one_wins(app, clinic, make_user):
    cid, disc = shortage(clinic, "490")
    heads = [bearer(app, make_user("prescriber")) for _ in range(3)]
    bodies = [
        {"action": "explain", "explanation": "miscounted"},
        {"action": "adjust", "explanation": "evaporation", **clinic.witness_fields()},
        {"action": "escalate", "explanation": "missing"},
    ]
    answers = race(
        app,
        3,
        lambda c, i: c.post(f"/api/v1/inventory/discrepancies/{disc}/resolve", json=bodies[i], headers=heads[i]),
    )
    assert sorted(a.status_code for a in answers) == [200, 409, 409], [a.json for a in answers]
    moved = [e for e in clinic.ledger(container_id=cid) if e["kind"] in ("adjustment", "loss")]
    assert len(moved) <= 1
    assert clinic.container(cid)["balance_mg"] == ("500" if not moved else "490")


def test_racing_loss_report_steps_record_once(app, clinic):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    entry = clinic.post(
        "/inventory/losses", {"container_id": cid, "quantity_mg": "20", "kind": "theft", "description": "gone"}
    ).json
    (report,) = [
        r
        for r in clinic.client.get(
            "/api/v1/inventory/loss-reports", query_string={"location_id": clinic.location_id}, headers=clinic.nurse_h
        ).json["items"]
        if r["entry_id"] == entry["id"]
    ]
    answers = race(
        app,
        RACERS,
        lambda c, i: c.post(
            f"/api/v1/inventory/loss-reports/{report['id']}/steps", json={"step": "notified"}, headers=clinic.nurse_h
        ),
    )
    assert sorted(a.status_code for a in answers) == [200] + [409] * (RACERS - 1), [a.json for a in answers]


def test_racing_corrections_of_one_entry_write_one(app, clinic, make_user):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    wrong = clinic.post(
        "/inventory/administrations", {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "50"}
    ).json
    nurses = [make_user("nurse") for _ in range(3)]
    heads = [bearer(app, n) for n in nurses]
    answers = race(
        app,
        3,
        lambda c, i: c.post(
            "/api/v1/inventory/corrections",
            json={
                "location_id": clinic.location_id,
                "corrects_seq": wrong["seq"],
                "reason": "wrong vial",
                **clinic.witness_fields(),
            },
            headers=heads[i],
        ),
    )
    assert sorted(a.status_code for a in answers) == [201, 409, 409], [a.json for a in answers]
    assert len(clinic.ledger(kind="correction", container_id=cid)) == 1
    assert clinic.container(cid)["balance_mg"] == "500"


def test_racing_decisions_on_one_pattern_alert_record_one(app, clinic, make_user):
    for cid in [c["id"] for c in clinic.receive(count=3).json["containers"]]:
        resp = clinic.post(
            "/inventory/counts",
            {
                "location_id": clinic.location_id,
                "kind": "shift",
                **clinic.witness_fields(),
                "lines": [{"container_id": cid, "counted_mg": "499.9"}],
            },
        )
        assert resp.status_code == 201
    alert = clinic.client.get(
        "/api/v1/inventory/balances", query_string={"location_id": clinic.location_id}, headers=clinic.nurse_h
    ).json["discrepancy_alert"]
    heads = [bearer(app, make_user("prescriber")) for _ in range(3)]
    answers = race(
        app,
        3,
        lambda c, i: c.post(
            f"/api/v1/inventory/discrepancy-alerts/{alert['id']}/resolve",
            json={"decision": ["reported", "not_significant", "reported"][i], "reason": f"decided by {i}"},
            headers=heads[i],
        ),
    )
    assert sorted(a.status_code for a in answers) == [200, 409, 409], [a.json for a in answers]


def test_racing_retries_of_one_key_run_the_operation_once(app, clinic):
    """F4 without a lock on the claim: six twins of a fresh key, then six retries of a key whose
    request died (its lease ran out), each at once. Every answer is a 201 (the first, or its replay)
    or a 409 to retry; the draw happens once per key, and every 201 names that one entry."""
    import uuid
    from datetime import timedelta

    from clinic.core.idempotency import IdempotencyKey
    from clinic.core.time import utcnow
    from clinic.extensions import db
    from tests.inventory.test_idempotency import _hash_of

    cid = clinic.receive(count=1).json["containers"][0]["id"]
    headers = clinic.nurse_h
    body = {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "10"}
    fresh, dead = str(uuid.uuid4()), str(uuid.uuid4())
    with app.app_context():
        db.session.add(
            IdempotencyKey(
                user_id=clinic.nurse.id,
                key=dead,
                request_hash=_hash_of(app, cid, clinic),
                lease_until=utcnow() - timedelta(seconds=1),
            )
        )
        db.session.commit()
    entries = len(clinic.ledger())
    for n, key in enumerate((fresh, dead), start=1):
        answers = race(
            app,
            RACERS,
            lambda client, i, key=key: client.post(
                "/api/v1/inventory/administrations", json=body, headers={**headers, "Idempotency-Key": key}
            ),
        )
        codes = sorted(a.status_code for a in answers)
        assert set(codes) <= {201, 409}, codes
        assert 201 in codes, codes
        named = {a.get_json()["hash"] for a in answers if a.status_code == 201}
        assert len(named) == 1, named
        assert clinic.container(cid)["balance_mg"] == str(500 - 10 * n)
        assert len(clinic.ledger()) == entries + n

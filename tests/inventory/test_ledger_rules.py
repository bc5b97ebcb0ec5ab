"""Issue 8: the DEA record rules as an inspector and an attacker test them, through the API.

Each test here failed before its fix; both backends run every one.
"""

from __future__ import annotations

from tests.conftest import bearer

PROBLEM = "application/problem+json"


def count_line(clinic, cid: int, counted: str) -> dict:
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
    return resp.json["discrepancies"][0]


def draw(clinic, cid: int, mg: str):
    return clinic.post(
        "/inventory/administrations", {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": mg}
    )


# --- an adjustment applies the counted difference ----------------------------------------------


def test_adjustment_after_a_draw_applies_the_difference_not_the_count(app, clinic, make_user):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    disc = count_line(clinic, cid, "490")
    assert draw(clinic, cid, "50").status_code == 201
    resp = clinic.post(
        f"/inventory/discrepancies/{disc['id']}/resolve",
        {"action": "adjust", "explanation": "evaporation", **clinic.witness_fields()},
        headers=bearer(app, make_user("prescriber")),
    )
    assert resp.status_code == 200, resp.json
    assert clinic.container(cid)["balance_mg"] == "440"  # 500 - 10 short - 50 drawn; not back to 490
    (adj,) = clinic.ledger(kind="adjustment", container_id=cid)
    assert adj["delta_mg"] == "-10"


def test_escalation_after_a_draw_loses_the_shortage_only(app, clinic, make_user):
    cid = clinic.receive(count=1).json["containers"][0]["id"]
    disc = count_line(clinic, cid, "480")
    assert draw(clinic, cid, "100").status_code == 201
    resp = clinic.post(
        f"/inventory/discrepancies/{disc['id']}/resolve",
        {"action": "escalate", "explanation": "missing"},
        headers=bearer(app, make_user("prescriber")),
    )
    assert resp.status_code == 200, resp.json
    assert clinic.container(cid)["balance_mg"] == "380"

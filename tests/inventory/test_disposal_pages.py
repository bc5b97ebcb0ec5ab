"""Pages for stock leaving the inventory (reverse-distributor return, on-site destruction with two
witnesses) and for a correction started from a ledger row, linked both ways on the ledger."""

from __future__ import annotations

import re

from tests.inventory import test_pages as base
from tests.inventory.conftest import dea_number
from tests.inventory.test_pages import assert_accessible, receive, submit, text

nurse = base.nurse  # the clinic's own nurse, signed in through the pages


def test_a_return_to_a_reverse_distributor_disposes_the_container(clinic, nurse, make_user):
    (cid,) = receive(clinic, 1)
    page = f"/inventory/return?location_id={clinic.location_id}"
    form = nurse.get(page)
    assert form.status_code == 200
    assert_accessible(form)
    body = {"container_id": str(cid), "method": "returned for destruction", "rd_name": "Returns Inc",
            "rd_address": "9 Dock St, Memphis TN", "rd_dea_registration": dea_number(),
            **clinic.witness_fields()}  # fmt: skip
    # Without the distributor's DEA number: refused beside its field, nothing written.
    resp = submit(nurse, page, {**body, "rd_dea_registration": ""}, page=page)
    assert resp.status_code == 422
    assert 'id="rd_dea_registration-error"' in text(resp)
    assert clinic.container(cid)["status"] != "disposed"
    # The witness is the actor: refused.
    resp = submit(nurse, page, {**body, **clinic.witness_fields(clinic.nurse)}, page=page)
    assert resp.status_code in (403, 409, 422)
    assert clinic.container(cid)["status"] != "disposed"

    resp = submit(nurse, page, body, page=page)
    assert resp.status_code == 302, text(resp)[-1500:]
    assert clinic.container(cid)["status"] == "disposed"
    (entry,) = clinic.ledger(kind="return_to_distributor")
    assert entry["container_id"] == cid and entry["details"]["reverse_distributor"]["name"] == "Returns Inc"


def test_on_site_destruction_needs_two_different_witnesses(clinic, nurse, make_user):
    (cid,) = receive(clinic, 1)
    page = f"/inventory/destroy?location_id={clinic.location_id}"
    assert_accessible(nurse.get(page))
    body = {"container_id": str(cid), "method": "chemical_digestion", **clinic.witness_fields()}
    resp = submit(nurse, page, body, page=page)
    assert resp.status_code in (403, 409, 422)
    assert "second witness" in text(resp).lower()
    second = make_user("prescriber")
    resp = submit(nurse, page, {**body, "second_witness_email": clinic.witness.email,
                                "second_witness_password": clinic.witness.password}, page=page)  # fmt: skip
    assert resp.status_code in (409, 422) and clinic.container(cid)["status"] != "disposed"
    resp = submit(nurse, page, {**body, "second_witness_email": second.email,
                                "second_witness_password": second.password}, page=page)  # fmt: skip
    assert resp.status_code == 302, text(resp)[-1500:]
    (entry,) = clinic.ledger(kind="destruction")
    assert entry["container_id"] == cid


def test_a_correction_from_a_ledger_row_is_linked_both_ways(clinic, nurse):
    (cid,) = receive(clinic, 1)
    given = clinic.post(
        "/inventory/administrations", {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "40"}
    )
    assert given.status_code == 201
    seq = given.json["seq"]
    ledger = text(nurse.get(f"/inventory/ledger?location_id={clinic.location_id}"))
    assert f"/inventory/ledger/{seq}/correct?location_id={clinic.location_id}" in ledger
    assert "Example, Pat" in ledger  # the patient, for a role that may see patients

    page = f"/inventory/ledger/{seq}/correct?location_id={clinic.location_id}"
    form = nurse.get(page)
    assert form.status_code == 200
    assert_accessible(form)
    resp = submit(nurse, page, {"reason": "  ", "corrected_quantity_mg": "45", **clinic.witness_fields()}, page=page)
    assert resp.status_code == 422 and 'id="reason-error"' in text(resp)
    assert clinic.ledger(kind="correction") == []
    resp = submit(nurse, page, {"reason": "45 mg given, 40 charted", "corrected_quantity_mg": "45",
                                **clinic.witness_fields()}, page=page)  # fmt: skip
    assert resp.status_code == 302, text(resp)[-1500:]
    (correction,) = clinic.ledger(kind="correction")
    assert correction["corrects_seq"] == seq
    ledger = text(nurse.get(f"/inventory/ledger?location_id={clinic.location_id}"))
    assert re.search(rf'corrected by <a href="#seq-{correction["seq"]}"', ledger)
    assert f'of <a href="#seq-{seq}" data-testid="corrects">#{seq}</a>' in ledger
    # Corrected once: no second correction link, and the form refuses a second one.
    assert f"/inventory/ledger/{seq}/correct" not in ledger
    again = submit(nurse, page, {"reason": "again", **clinic.witness_fields()}, page=page)
    assert again.status_code == 409


def test_auditors_see_no_patient_on_the_ledger_and_cannot_correct(app, clinic, login_as):
    (cid,) = receive(clinic, 1)
    given = clinic.post(
        "/inventory/administrations", {"container_id": cid, "patient_id": clinic.patient_id, "quantity_mg": "10"}
    )
    auditor, _ = login_as("auditor")
    ledger = text(auditor.get(f"/inventory/ledger?location_id={clinic.location_id}"))
    assert "Example, Pat" not in ledger and ">Patient<" not in ledger and "/correct" not in ledger
    assert (
        auditor.get(f"/inventory/ledger/{given.json['seq']}/correct?location_id={clinic.location_id}").status_code
        == 403
    )


def test_the_safe_lists_what_is_on_hand_and_a_toggle_shows_the_rest(clinic, nurse):
    full, emptied, gone = receive(clinic, 3)
    whole = clinic.container(emptied)["balance_mg"]
    given = clinic.post(
        "/inventory/administrations", {"container_id": emptied, "patient_id": clinic.patient_id, "quantity_mg": whole}
    )
    assert given.status_code == 201, given.json
    assert clinic.container(emptied)["status"] == "empty"
    returned = clinic.post("/inventory/disposals", {
        "container_id": gone, "method": "returned for destruction", **clinic.witness_fields(),
        "reverse_distributor": {"name": "Returns Inc", "address": "9 Dock St", "dea_registration": dea_number()},
    })  # fmt: skip
    assert returned.status_code == 201, returned.json

    safe = text(nurse.get(f"/inventory/?location_id={clinic.location_id}"))
    assert f'data-container="{full}"' in safe
    assert f'data-container="{emptied}"' not in safe and f'data-container="{gone}"' not in safe
    shown = text(nurse.get(f"/inventory/?location_id={clinic.location_id}&show=all"))
    unusable = re.findall(r'<tr data-container="(\d+)" data-unusable="1">(.*?)</tr>', shown, re.S)
    assert {int(cid) for cid, _ in unusable} == {emptied, gone}
    for _, row in unusable:  # no movement from them
        assert "Waste" not in row and "Move" not in row and "Loss" not in row and "History" in row
    # The waste and transfer forms offer only usable containers; the count sheet keeps every one held.
    waste = text(nurse.get(f"/inventory/waste?location_id={clinic.location_id}"))
    offered = re.search(r'<select id="container_id".*?</select>', waste, re.S).group(0)
    assert f'<option value="{full}"' in offered and f'<option value="{emptied}"' not in offered
    count = text(nurse.get(f"/inventory/count?location_id={clinic.location_id}"))
    assert f"counted_mg-{full}" in count and f"counted_mg-{gone}" not in count

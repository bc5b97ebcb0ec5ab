"""The SPRAVATO REMS Patient Monitoring Form (SPR-18, SPR-19) filled from a whole session's records.

The session differs from the other esketamine tests on purpose: 56 mg from two devices of two
lots, seven minutes apart; sedation, dissociation and a low SpO2 at 30 minutes that resolve; the
40-minute blood pressure charted late; discharge at 125 minutes from the first device.
"""

from __future__ import annotations

import re
import threading
import time
import zlib
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from clinic.audit.models import AuditEvent
from clinic.audit.tags import Tag
from clinic.auth.models import User
from clinic.core.time import utcnow
from clinic.core.tx import commit, rollback
from clinic.extensions import db
from clinic.patients import screening
from clinic.visits import alerts, pmf
from tests.clock import at_local
from tests.conftest import bearer, sign_in
from tests.visits.conftest import TZ, Ward

MEDICINES = ["Xanax 0.5 mg", "Adderall XR 20 mg", "gabapentin 300 mg", "sertraline 100 mg"]
PHONE = "+1 212 555 0142"


# --- reading a PDF's text (no PDF library is installed: the streams and ToUnicode maps by hand) ---


def _streams(pdf: bytes) -> list[bytes]:
    out = []
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            out.append(zlib.decompress(m.group(1)))
        except zlib.error:
            out.append(m.group(1))
    return out


def _cmap(stream: bytes) -> dict[str, str]:
    """A ToUnicode CMap: glyph code (hex) -> text."""
    found: dict[str, str] = {}

    def text(hexes: bytes) -> str:
        return bytes.fromhex(hexes.decode()).decode("utf-16-be")

    for block in re.findall(rb"beginbfchar(.*?)endbfchar", stream, re.S):
        for src, dst in re.findall(rb"<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>", block):
            found[src.decode().lower()] = text(dst)
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", stream, re.S):
        for lo, hi, dst in re.findall(rb"<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>", block):
            start, width = int(dst, 16), len(lo)
            for i, code in enumerate(range(int(lo, 16), int(hi, 16) + 1)):
                found[f"{code:0{width}x}"] = chr(start + i)
    return found


def pdf_texts(pdf: bytes) -> list[str]:
    """The pages' text as a reader would copy it, decoded once per embedded font's ToUnicode map
    (a needle set in one font reads right in that font's decoding)."""
    streams = _streams(pdf)
    cmaps = [_cmap(s) for s in streams if b"begincmap" in s]
    runs = [
        re.findall(rb"<([0-9a-fA-F]+)>", arr)
        for s in streams
        if b"TJ" in s
        for arr in re.findall(rb"\[(.*?)\]\s*TJ", s, re.S)
    ]
    texts = []
    for cmap in cmaps:
        lines = []
        for run in runs:
            glyphs = b"".join(run).decode().lower()
            lines.append("".join(cmap.get(glyphs[i : i + 4], "\ufffd") for i in range(0, len(glyphs), 4)))
        texts.append("\n".join(lines))
    return texts


def pdf_has(pdf: bytes, needle: str) -> bool:
    return any(needle in text for text in pdf_texts(pdf))


# --- a whole session -------------------------------------------------------------------------------


def _local(ward: Ward, hh_mm: str, days: int = 0) -> str:
    return at_local(ward.day + timedelta(days=days), hh_mm, TZ).isoformat()


def session(ward: Ward, *, discharge_at: str = "11:10", early_reason: str | None = None) -> dict[str, Any]:
    """A 56 mg session from check-in at 09:00 to discharge; returns the ids and what was charted."""
    admin_phone = ward.client.patch(f"/api/v1/locations/{ward.location_id}", headers=ward.admin, json={"phone": PHONE})
    assert admin_phone.status_code == 200, admin_phone.json
    pid = ward.patient(medications=MEDICINES)
    assert ward.client.patch(f"/api/v1/patients/{pid}", headers=ward.desk, json={"sex": "F"}).status_code == 200
    appt = ward.book(pid, "esketamine-rems")[0]
    ward.at("09:00")
    assert ward.check_in(appt).status_code == 200
    assert ward.vitals(appt, 122, 78, spo2=99).status_code == 201
    devices = ward.receive(ward.devices_drug, 1) + ward.receive(ward.devices_drug, 1)
    ward.at("09:20")
    dosed = ward.dose(appt, {"container_ids": devices, "device_times": [_local(ward, "09:05"), _local(ward, "09:12")]})
    assert dosed.status_code == 201, dosed.json
    assert dosed.json["visit"]["dose_mg"] == "56"
    ward.at("09:35")  # 30 min: sedated, dissociated, SpO2 91
    assert ward.vitals(appt, 134, 84, spo2=91, sedation=4, dissociation=1).status_code == 201
    ward.at("09:57")  # 52 min: the 40-minute reading, late (the overdue window is 10 minutes)
    late = ward.vitals(appt, 138, 86, spo2=95)
    assert late.status_code == 201
    assert late.json["late_for"] == [40]
    ward.at("10:48")  # 103 min
    assert ward.vitals(appt, 128, 82, spo2=96).status_code == 201
    if early_reason is None:
        ward.at("11:03")  # 118 min: meets the 120-minute checkpoint
        assert ward.vitals(appt, 126, 80, spo2=97).status_code == 201
    ward.at(discharge_at)
    extra = {"override_reason": early_reason} if early_reason else {}
    out = ward.discharge(appt, ward.prescriber_h if early_reason else None, **extra)
    assert out.status_code == 200, out.json
    lots = [ward.container(c)["lot_number"] for c in devices]
    return {"appointment": appt, "patient": pid, "devices": devices, "lots": lots, "visit": ward.visit(appt)["visit"]}


def form(ward: Ward, appt: int, headers: dict[str, str] | None = None) -> dict[str, Any]:
    resp = ward.get(f"/appointments/{appt}/monitoring-form", headers)
    assert resp.status_code == 200, resp.json
    return resp.json


def submit(ward: Ward, appt: int, reference: Any, headers: dict[str, str] | None = None):
    return ward.post(f"/appointments/{appt}/monitoring-form/submission", {"reference": reference}, headers)


def raised_pmf(app, visit_id: int) -> list[int]:
    with app.app_context():
        found = [a.visit_id for a in alerts.raise_due(utcnow()) if a.kind == "pmf_overdue" and a.visit_id == visit_id]
        commit()
    return found


def pmf_audit(app, appt: int) -> list[dict[str, Any]]:
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent).where(
                AuditEvent.tag == Tag.visits_pmf_submit.value,
                AuditEvent.subject_type == "appointment",
                AuditEvent.subject_id == appt,
            )
        ).all()
        return [dict(r.data) for r in rows]


# --- the form's fields -------------------------------------------------------------------------------


def test_every_field_comes_from_the_session_records(ward: Ward) -> None:
    s = session(ward)
    f = form(ward, s["appointment"])
    patient = ward.get(f"/patients/{s['patient']}").json

    assert f["patient"]["first_name"] == "Robin"
    assert f["patient"]["last_name"] == patient["last_name"]
    assert f["patient"]["date_of_birth"] == "1984-04-04"
    assert f["patient"]["sex"] == "F"
    assert f["patient"]["first_treatment"] is True
    assert f["patient"]["enrolled"] is True

    boxes = f["medications"]["boxes"]
    assert boxes["benzodiazepines"] == ["Xanax 0.5 mg"]
    assert boxes["psychostimulants"] == ["Adderall XR 20 mg"]
    assert boxes["opioids"] == boxes["maois"] == boxes["sedative_hypnotics"] == []
    assert f["medications"]["other_sedating"] == ["gabapentin 300 mg"]  # CI-11, but no box on the form

    nurse = ward.get("/users/me").json
    assert f["provider"] == {"user_id": ward.nurse.id, "name": nurse["name"], "phone": PHONE, "email": ward.nurse.email}
    assert f["setting"]["address"] == "10 Main St, Springfield IL"

    sess = f["session"]
    assert sess["treatment_date"] == ward.day.isoformat()
    assert (sess["dose_mg"], sess["dose_choice"]) == ("56", "56")
    assert sess["lot_numbers"] == s["lots"]
    assert len(set(s["lots"])) == 2
    assert [(d["lot_number"], d["minutes_from_first"]) for d in sess["devices"]] == [
        (s["lots"][0], 0),
        (s["lots"][1], 7),
    ]
    assert sess["devices"][0]["administered_at"] == _local(ward, "09:05")
    assert sess["duration_minutes"] == 125  # 09:05 (first device) to 11:10 (discharge), SPR-15
    assert sess["duration_meets_minimum"] is True
    assert sess["ready_minutes"] == 125

    v = f["vitals"]
    assert (v["acceptable_before_dose"], v["acceptable_before_completion"]) == (True, True)
    assert v["bp_before_dose"]["bp"] == "122/78"
    assert v["bp_at_40"]["bp"] == "138/86"
    assert v["bp_at_40"]["minutes_after_dose"] == 52
    assert v["bp_at_40"]["late"] is True
    assert v["bp_before_completion"]["bp"] == "126/80"
    assert [r["spo2"] for r in v["spo2"]] == [99, 91, 95, 96, 97]
    assert [r["bp"] for r in v["late"]] == ["138/86"]

    events = {e["kind"]: e for e in f["adverse_events"]}
    assert events["sedation"] | {"detail": None} == {
        "kind": "sedation",
        "label": "Sedation",
        "occurred": True,
        "first_minutes": 30,
        "worst": 4,
        "resolved": True,
        "detail": None,
    }
    assert (events["dissociation"]["occurred"], events["dissociation"]["resolved"]) == (True, True)
    assert events["respiratory_depression"]["worst"] == 91
    assert events["respiratory_depression"]["resolved"] is True

    codes = [flag["code"] for flag in f["flags"]]
    assert "late_reading" in codes
    assert "early_discharge" not in codes
    assert "first_treatment" in codes  # the enrolment form goes with the first session's form
    late = next(flag for flag in f["flags"] if flag["code"] == "late_reading")
    assert "40 min" in late["message"]
    assert "52 min" in late["message"]
    assert f["due_on"] == (ward.day + timedelta(days=7)).isoformat()
    assert f["overdue"] is False
    assert f["submitted"] is False


def test_the_form_classes_are_the_screenings_names() -> None:
    """Every medicine that ticks a box on the form is one the screening also flags (CI-10..12)."""
    known = {n for mc in screening.MEDICATION_CLASSES if mc.code in ("CI-10", "CI-11", "CI-12") for n in mc.names}
    for fc in pmf.FORM_CLASSES:
        assert set(fc.names) <= known, fc.key
    boxes, other = pmf.form_medications(["Ambien 10 mg", "Nardil", "oxycodone", "Ritalin", "Ativan", "Zyrtec"])
    assert {k: v for k, v in boxes.items() if v} == {
        "sedative_hypnotics": ["Ambien 10 mg"],
        "maois": ["Nardil"],
        "opioids": ["oxycodone"],
        "psychostimulants": ["Ritalin"],
        "benzodiazepines": ["Ativan"],
    }
    assert other == []


# --- the PDF and the page ---------------------------------------------------------------------------


def test_the_pdf_is_the_form_with_its_text_extractable(ward: Ward) -> None:
    s = session(ward)
    resp = ward.client.get(f"/api/v1/appointments/{s['appointment']}/monitoring-form.pdf", headers=ward.nurse_h)
    assert resp.status_code == 200
    assert resp.mimetype == "application/pdf"
    assert resp.headers["Cache-Control"] == "no-store"
    assert "attachment" in resp.headers["Content-Disposition"]
    assert "Visit" not in resp.headers["Content-Disposition"]  # no patient name in the file name
    pdf = resp.data
    assert pdf.startswith(b"%PDF")
    last = form(ward, s["appointment"])["patient"]["last_name"]
    for needle in (
        "Robin",
        last,
        "Given: 56 mg from 2 devices",
        *s["lots"],
        "122/78",
        "138/86",
        "126/80",
        "125 minutes",
        "Xanax 0.5 mg",
    ):
        assert pdf_has(pdf, needle), needle


def test_the_page_shows_the_form_and_records_the_reference(app, ward: Ward, make_user) -> None:
    s = session(ward)
    appt = s["appointment"]
    page_client = app.test_client()
    sign_in(page_client, ward.nurse)  # type: ignore[arg-type]
    page = page_client.get(f"/visits/{appt}/monitoring-form")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Download PDF" in html
    assert "138/86" in html
    assert 'data-flag="late_reading"' in html
    pdf = page_client.get(f"/visits/{appt}/monitoring-form.pdf")
    assert pdf.status_code == 200
    assert pdf.data.startswith(b"%PDF")

    token = page_client.csrf(f"/visits/{appt}/monitoring-form")
    empty = page_client.post(f"/visits/{appt}/monitoring-form/submission", data={"reference": "", "csrf_token": token})
    assert empty.status_code == 422
    assert "Nothing was recorded" in empty.get_data(as_text=True)
    done = page_client.post(
        f"/visits/{appt}/monitoring-form/submission", data={"reference": "PMF-77-1203", "csrf_token": token}
    )
    assert done.status_code == 302, done.get_data(as_text=True)[-800:]
    after = page_client.get(done.location).get_data(as_text=True)
    assert "PMF-77-1203" in after
    assert 'data-submitted="PMF-77-1203"' in after
    assert "Record the submission</button>" not in after

    no_token = page_client.post(f"/visits/{appt}/monitoring-form/submission", data={"reference": "X"})
    assert no_token.status_code == 403


# --- the submission ------------------------------------------------------------------------------------


def test_the_reference_is_stored_once(app, ward: Ward) -> None:
    s = session(ward)
    appt = s["appointment"]
    ward.later(minutes=30)
    first = submit(ward, appt, "  RMS-0042-A  ")
    assert first.status_code == 201, first.json
    assert first.json["reference"] == "RMS-0042-A"
    assert first.json["submitted_by_id"] == ward.nurse.id
    again = submit(ward, appt, "RMS-0042-B", ward.prescriber_h)
    assert again.status_code == 409
    assert again.json["code"] == "monitoring_form_submitted"
    assert "RMS-0042-A" in again.json["detail"]
    f = form(ward, appt)
    assert f["submitted"] is True
    assert f["submission"]["reference"] == "RMS-0042-A"
    assert f["submission"]["submitted_by_id"] == ward.nurse.id
    assert [a["reference"] for a in pmf_audit(app, appt)] == ["RMS-0042-A"]


def test_two_racing_submissions_one_wins(app, ward: Ward) -> None:
    """The second submission reads the visit while the first holds its update uncommitted; only the
    conditional UPDATE (pmf_reference IS NULL) can stop it, and it does."""
    appt = session(ward)["appointment"]
    first_updated = threading.Event()
    outcome: dict[str, str] = {}

    def submit_in_thread(name: str, reference: str, hold: float) -> None:
        with app.app_context():
            try:
                actor = db.session.get(User, ward.nurse.id)
                assert actor is not None
                pmf.record_submission(actor=actor, appointment_id=appt, reference=reference)
                if hold:
                    first_updated.set()
                    time.sleep(hold)  # the other reads and tries meanwhile
                commit()
                outcome[name] = "won"
            except pmf.AlreadySubmitted as exc:
                rollback()
                outcome[name] = exc.detail
            finally:
                first_updated.set()
                db.session.remove()

    a = threading.Thread(target=submit_in_thread, args=("a", "RACE-A", 0.6))
    b = threading.Thread(target=lambda: (first_updated.wait(10), submit_in_thread("b", "RACE-B", 0)))
    a.start()
    b.start()
    a.join(20)
    b.join(20)
    assert outcome["a"] == "won"
    assert "RACE-A" in outcome["b"]
    assert form(ward, appt)["submission"]["reference"] == "RACE-A"
    assert [x["reference"] for x in pmf_audit(app, appt)] == ["RACE-A"]


@pytest.mark.parametrize("reference", ["", "   ", "R" * 101, "line\nbreak"])
def test_a_bad_reference_is_refused_and_writes_nothing(app, ward: Ward, reference: str) -> None:
    appt = session(ward)["appointment"]
    resp = submit(ward, appt, reference)
    assert resp.status_code == 422, resp.json
    assert "reference" in resp.json["errors"]
    assert form(ward, appt)["submitted"] is False
    assert pmf_audit(app, appt) == []


def test_who_may_read_and_record(app, ward: Ward, make_user) -> None:
    appt = session(ward)["appointment"]
    assert form(ward, appt, ward.desk)["session"]["dose_mg"] == "56"  # the front desk reads (visits.view)
    refused = submit(ward, appt, "DESK-1", ward.desk)
    assert refused.status_code == 403
    auditor = bearer(app, make_user("auditor"))
    assert ward.get(f"/appointments/{appt}/monitoring-form", auditor).status_code == 403
    assert ward.client.get(f"/api/v1/appointments/{appt}/monitoring-form.pdf", headers=auditor).status_code == 403
    assert submit(ward, appt, "AUD-1", auditor).status_code == 403
    assert form(ward, appt)["submitted"] is False


# --- which visits have a form -------------------------------------------------------------------------


def test_no_form_for_an_iv_visit(ward: Ward) -> None:
    appt = ward.ready_patient("ketamine-iv-induction")
    resp = ward.get(f"/appointments/{appt}/monitoring-form")
    assert resp.status_code == 409
    assert resp.json["code"] == "monitoring_form_unavailable"
    assert "esketamine" in resp.json["detail"]
    assert submit(ward, appt, "IV-1").status_code == 409
    assert ward.client.get(f"/api/v1/appointments/{appt}/monitoring-form.pdf", headers=ward.nurse_h).status_code == 409


def test_no_form_before_discharge(ward: Ward) -> None:
    appt = ward.ready_patient("esketamine-rems")
    devices = ward.receive(ward.devices_drug, 2)
    ward.at("09:20")
    assert ward.dose(appt, {"container_ids": devices}).status_code == 201
    resp = ward.get(f"/appointments/{appt}/monitoring-form")
    assert resp.status_code == 409
    assert "not yet discharged" in resp.json["detail"]
    assert submit(ward, appt, "EARLY-1").status_code == 409


# --- due in seven days; the alert on day six -------------------------------------------------------------


def test_the_day_six_alert_is_raised_once_when_nothing_was_submitted(app, ward: Ward) -> None:
    s = session(ward)
    visit_id = s["visit"]["id"]
    due = datetime.fromisoformat(_local(ward, "09:05")) + timedelta(days=6)  # the first device + 6 x 24 h
    ward.traveller.move_to(due - timedelta(minutes=1))
    assert raised_pmf(app, visit_id) == []
    ward.later(minutes=1)
    assert raised_pmf(app, visit_id) == [visit_id]
    ward.later(minutes=5)
    assert raised_pmf(app, visit_id) == []  # once

    ward.traveller.move_to(at_local(ward.day + timedelta(days=8), "08:00", TZ))
    nurse = bearer(app, ward.nurse)  # the morning's tokens have expired
    late = form(ward, s["appointment"], nurse)
    assert late["overdue"] is True
    assert "overdue" in [flag["code"] for flag in late["flags"]]
    assert submit(ward, s["appointment"], "LATE-9", nurse).status_code == 201
    assert pmf_audit(app, s["appointment"])[0]["late"] is True
    assert form(ward, s["appointment"], nurse)["overdue"] is False


def test_no_day_six_alert_after_a_submission(app, ward: Ward) -> None:
    s = session(ward)
    visit_id = s["visit"]["id"]
    ward.traveller.move_to(at_local(ward.day + timedelta(days=2), "10:00", TZ))
    nurse = bearer(app, ward.nurse)
    assert submit(ward, s["appointment"], "ONTIME-2", nurse).status_code == 201
    assert pmf_audit(app, s["appointment"])[0]["late"] is False
    ward.traveller.move_to(at_local(ward.day + timedelta(days=6), "10:00", TZ))
    assert raised_pmf(app, visit_id) == []
    ward.traveller.move_to(at_local(ward.day + timedelta(days=9), "10:00", TZ))
    assert raised_pmf(app, visit_id) == []

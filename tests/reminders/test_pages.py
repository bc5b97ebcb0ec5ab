"""The reminder pages through the Flask client: what each role sees and may do (the browser test
in tests/web/test_browser_reminders.py clicks through them)."""

from __future__ import annotations

from sqlalchemy import update

from clinic.extensions import db
from clinic.reminders.models import Notice, Reminder
from tests.conftest import sign_in
from tests.reminders.conftest import patient, reminders


def _failed_one(app, desk) -> int:  # type: ignore[no-untyped-def]
    pid = patient(desk)
    appts = desk.book(pid).json["appointments"]
    rid = reminders(desk, appointment_id=appts[0]["id"])[0]["id"]
    with app.app_context():
        db.session.execute(
            update(Reminder).where(Reminder.id == rid).values(status="failed", attempts=5, last_error="SMTP 550")
        )
        db.session.commit()
    return rid


def test_the_outbox_lists_failed_reminders_and_staff_retry_or_cancel_them(app, desk, login_as):
    rid = _failed_one(app, desk)
    client, _ = login_as("front_desk")
    page = client.get(f"/reminders/outbox?location_id={desk.location_id}").get_data(as_text=True)
    assert f'data-reminder="{rid}"' in page and "SMTP 550" in page
    token = client.csrf(f"/reminders/outbox?location_id={desk.location_id}")
    resp = client.post(f"/reminders/{rid}/cancel", data={"csrf_token": token, "reason": ""})
    assert resp.status_code == 302
    assert reminders(desk, status="failed", location_id=desk.location_id)[0]["id"] == rid  # no reason, no cancel
    for outside in ("//evil.example/", "/\\evil.example", "/\t/evil.example"):  # SYS-07, as at sign-in
        resp = client.post(f"/reminders/{rid}/cancel", data={"csrf_token": token, "reason": "", "next": outside})
        assert resp.status_code == 302 and resp.location.startswith("/reminders/outbox"), outside
    resp = client.post(f"/reminders/{rid}/retry", data={"csrf_token": token, "next": "//evil.example/"})
    assert resp.status_code == 302 and resp.location.startswith("/reminders/outbox")
    (row,) = [r for r in reminders(desk, location_id=desk.location_id) if r["id"] == rid]
    assert row["status"] == "pending" and row["attempts"] == 0


def test_the_chart_carries_the_patients_reminders_and_opt_outs(app, desk, login_as):
    pid = patient(desk)
    desk.book(pid)
    client, _ = login_as("front_desk")
    chart = client.get(f"/patients/{pid}").get_data(as_text=True)
    assert 'id="reminders"' in chart and f"/reminders/patients/{pid}" in chart
    part = client.get(f"/reminders/patients/{pid}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<html" not in part and part.count('data-status="pending"') >= 24
    token = client.csrf(f"/reminders/patients/{pid}")
    resp = client.post(f"/reminders/patients/{pid}/opt-outs", data={"csrf_token": token, "opt_out_email": "on"})
    assert resp.status_code == 302
    assert reminders(desk, patient_id=pid, status="pending") == []
    auditor, _ = login_as("auditor")
    assert auditor.get(f"/reminders/patients/{pid}").status_code == 403


def test_settings_show_previews_without_phi_and_only_admins_save(app, desk, login_as, make_user):
    client, _ = login_as("front_desk")
    page = client.get(f"/reminders/settings?location_id={desk.location_id}").get_data(as_text=True)
    assert 'data-preview="appointment"' in page and 'data-preview="form106_notice_due"' in page
    assert "<fieldset disabled" in page  # read-only for the front desk
    lowered = page.lower()
    assert "ketamine" not in lowered and "spravato" not in lowered
    token = client.csrf(f"/reminders/settings?location_id={desk.location_id}")
    assert (
        client.post("/reminders/settings", data={"csrf_token": token, "location_id": desk.location_id}).status_code
        == 403
    )
    admin, _ = login_as("admin")
    token = admin.csrf(f"/reminders/settings?location_id={desk.location_id}")
    form = {
        "csrf_token": token,
        "location_id": str(desk.location_id),
        "quiet_start": "22:00",
        "quiet_end": "07:30",
        "staff_send_time": "08:30",
        "appointment.enabled": "on",
        "appointment.lead_hours": "48, 3",
        "next_day_checkin.enabled": "on",
        "next_day_checkin.at": "11:00",
    }
    resp = admin.post("/reminders/settings", data=form)
    assert resp.status_code == 302, resp.get_data(as_text=True)[-800:]
    saved = desk.client.get(f"/api/v1/locations/{desk.location_id}/reminder-settings", headers=desk.desk).json
    assert saved["appointment"] == {"enabled": True, "lead_hours": [48, 3]}
    assert saved["quiet_hours"] == {"start": "22:00", "end": "07:30"} and saved["pmf"]["enabled"] is False
    bad = admin.post("/reminders/settings", data={**form, "appointment.lead_hours": "soon"})
    assert bad.status_code == 422 and "appointment.lead_hours" in bad.get_data(as_text=True)


def test_the_bell_counts_unread_notices(app, desk, make_user):
    from tests.conftest import Client

    account = make_user("front_desk")
    with app.app_context():
        db.session.add(
            Notice(location_id=desk.location_id, role="front_desk", kind="reminder_failed", title="T", body="B")
        )
        db.session.commit()
    app.test_client_class = Client
    client = app.test_client()
    sign_in(client, account)  # type: ignore[arg-type]
    home = client.get("/").get_data(as_text=True)
    unread = int(home.split('data-testid="unread">')[1].split("<")[0])
    assert unread >= 1
    token = client.csrf("/notices")
    assert client.post("/notices/read", data={"csrf_token": token}).status_code == 302
    assert 'data-testid="unread">0<' in client.get("/").get_data(as_text=True)

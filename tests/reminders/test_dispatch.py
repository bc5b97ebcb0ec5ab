"""Sending (issue 12): claimed by the sweeper, delivered once, never for a cancelled visit.

These run the sweep and the delivery in this process against a real SMTP server (aiosmtpd) and a
real HTTP SMS sink; tests/system/test_reminder_dispatch.py runs them in a real worker and beat.
"""

from __future__ import annotations

import smtplib
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from clinic.core import tx
from clinic.core.time import database_now
from clinic.extensions import db
from clinic.reminders import channels, dispatch
from clinic.reminders.messages import Message
from clinic.reminders.models import Notice, Reminder
from tests.reminders.conftest import make_due, patient, reminders, run_sweep, users_of

DRUG_WORDS = ("ketamine", "esketamine", "spravato", "ketalar", "depress", "suicid", "mg")


@pytest.fixture
def mail(own_app, smtp, monkeypatch):  # type: ignore[no-untyped-def]
    for key, value in smtp.config().items():
        monkeypatch.setitem(own_app.config, key, value)
    return smtp


def _appointment_reminders(desk, pid):  # type: ignore[no-untyped-def]
    return [r for r in reminders(desk, patient_id=pid) if r["kind"] == "appointment"]


def test_due_reminders_go_once_by_smtp_with_the_reminder_as_message_id(own_app, own_desk, mail):
    pid = patient(own_desk)
    appts = own_desk.book(pid).json["appointments"]
    ids = make_due(own_app, Reminder.appointment_id.in_([a["id"] for a in appts[:3]]))
    assert len(ids) == 6
    out = run_sweep(own_app)
    assert out.get("sent") == 6, out
    assert mail.inbox.ids() == {f"<reminder-{i}@reminders.test>": 1 for i in ids}
    for message in mail.inbox.messages:
        assert message["To"] == f"p{pid}@patients.test"
        subject = str(message["Subject"]).lower()
        assert not any(word in subject for word in DRUG_WORDS), subject
        assert "http" not in message.get_content()  # no links for patients
    rows = {r["id"]: r for r in reminders(own_desk, patient_id=pid)}
    assert all(rows[i]["status"] == "sent" and rows[i]["sent_at"] for i in ids)
    # Another sweep (a second beat, a redelivered task) sends nothing again.
    assert run_sweep(own_app).get("sent", 0) == 0
    assert len(mail.inbox.messages) == 6


def test_a_claimed_reminder_of_a_cancelled_visit_is_not_sent(own_app, own_desk, mail):
    pid = patient(own_desk)
    appt = own_desk.book(pid).json["appointments"][0]
    ids = make_due(own_app, Reminder.appointment_id == appt["id"])
    with own_app.app_context():
        token, claimed = dispatch.claim()
        tx.commit()
    assert set(ids) <= set(claimed)
    resp = own_desk.client.post(
        f"/api/v1/appointments/{appt['id']}/cancel", headers=own_desk.desk, json={"reason": "x"}
    )
    assert resp.status_code == 200
    with own_app.app_context():
        dispatch.deliver(token, claimed)
    assert mail.inbox.messages == []
    assert {r["status"] for r in reminders(own_desk, appointment_id=appt["id"])} == {"cancelled"}


def test_a_visit_cancelled_while_its_reminder_is_being_composed_wins(own_app, own_desk, mail, monkeypatch):
    """The last look under the lock (B) comes after the transport's undoable part: a cancel that
    commits in between stops the message at the server's door."""
    pid = patient(own_desk)
    appt = own_desk.book(pid).json["appointments"][0]
    make_due(own_app, Reminder.appointment_id == appt["id"])
    real = channels.SmtpTransport.prepare
    done = []

    def prepare_then_cancel(self, message, slot=0):  # type: ignore[no-untyped-def]
        pending = real(self, message, slot)
        if done:
            return pending
        done.append(1)
        with own_app.test_client() as other:
            resp = other.post(
                f"/api/v1/appointments/{appt['id']}/cancel", headers=own_desk.desk, json={"reason": "phoned in"}
            )
            assert resp.status_code == 200, resp.json
        return pending

    monkeypatch.setattr(channels.SmtpTransport, "prepare", prepare_then_cancel)
    run_sweep(own_app)
    assert mail.inbox.messages == []
    assert {r["status"] for r in reminders(own_desk, appointment_id=appt["id"])} == {"cancelled"}


def test_a_stale_claim_sends_nothing(own_app, own_desk, mail):
    pid = patient(own_desk)
    appt = own_desk.book(pid).json["appointments"][0]
    make_due(own_app, Reminder.appointment_id == appt["id"])
    with own_app.app_context():
        old, ids = dispatch.claim()
        tx.commit()
        # The lease lapses (its worker died); the sweeper claims it again under a new token.
        db.session.execute(update(Reminder).where(Reminder.id.in_(ids)).values(lease_until=database_now()))
        db.session.commit()
        new, again = dispatch.claim()
        tx.commit()
        assert set(again) == set(ids) and new != old
        assert dispatch.deliver(old, ids) == {"stale": len(ids)}
        assert dispatch.deliver(new, again)["sent"] == len(ids)
    assert sum(mail.inbox.ids().values()) == len(ids)


def test_an_unfinished_message_is_discarded_by_the_server_so_sending_again_cannot_double_it(own_app, mail):
    """The premise of the hand-off: a worker killed before the end-of-data line leaves nothing."""
    with own_app.app_context():
        transport = channels.transport_for("email", own_app.config, own_app.instance_path)
        message = Message("appointment", "email", "a@b.test", "s", "body", "sms", None, "<reminder-0@reminders.test>")
        pending = transport.prepare(message)
        pending.abort()  # the line drops mid-DATA, as when the worker is killed
        again = transport.prepare(message)
        again.cross()
        assert again.outcome() == message.key
        channels.drop_connection()
    assert mail.inbox.ids() == {"<reminder-0@reminders.test>": 1}


def test_a_hand_off_whose_worker_died_counts_as_sent_and_is_not_sent_again(own_app, own_desk, mail):
    pid = patient(own_desk)
    appt = own_desk.book(pid).json["appointments"][0]
    (rid, _) = make_due(own_app, Reminder.appointment_id == appt["id"])
    with own_app.app_context():
        now = database_now()
        db.session.execute(
            update(Reminder)
            .where(Reminder.id == rid)
            .values(claim_token="dead", lease_until=now, handed_off_at=now, transport="smtp", provider_ref="<x>")
        )
        db.session.commit()
    run_sweep(own_app)
    with own_app.app_context():
        r = db.session.get(Reminder, rid)
        assert r.status == "sent" and r.sent_at == now and "worker stopped" in r.last_error
    assert f"<reminder-{rid}@reminders.test>" not in mail.inbox.ids()


def test_refusals_are_retried_with_backoff_then_failed_and_shown_to_staff(own_app, own_desk, mail, make_user):
    pid = patient(own_desk)
    appt = own_desk.book(pid).json["appointments"][0]
    (rid, other) = make_due(own_app, Reminder.appointment_id == appt["id"])
    make_due(own_app, Reminder.id == other, at=database_now_in(own_app) + timedelta(days=1))
    mail.inbox.refuse = ["451 4.3.0 try again later"] * 5
    waits = []
    for attempt in range(1, 6):
        out = run_sweep(own_app)
        with own_app.app_context():
            r = db.session.get(Reminder, rid)
            assert r.attempts == attempt and r.last_error == "SMTP 451", out
            if attempt < 5:
                assert r.status == "pending"
                waits.append(round((r.next_attempt_at - database_now()).total_seconds() / 60))
            db.session.execute(update(Reminder).where(Reminder.id == rid).values(next_attempt_at=database_now()))
            db.session.commit()
    assert waits == [1, 2, 4, 8]  # exponential back-off from REMINDER_BACKOFF_SECONDS
    assert mail.inbox.messages == []
    (row,) = [r for r in reminders(own_desk, status="failed") if r["id"] == rid]
    assert row["attempts"] == 5
    with own_app.app_context():
        notice = db.session.scalar(
            select(Notice).where(Notice.kind == "reminder_failed", Notice.title.contains(f"#{rid}"))
        )
        assert notice is not None and notice.role == "front_desk" and "@" not in notice.body
    # Staff retry it; the server takes it now.
    assert own_desk.client.post(f"/api/v1/reminders/{rid}/retry", headers=own_desk.desk).status_code == 200
    assert run_sweep(own_app)["sent"] == 1
    assert mail.inbox.ids() == {f"<reminder-{rid}@reminders.test>": 1}


def database_now_in(application):  # type: ignore[no-untyped-def]
    with application.app_context():
        return database_now()


def test_a_permanent_refusal_fails_at_once(own_app, own_desk, mail):
    pid = patient(own_desk)
    appt = own_desk.book(pid).json["appointments"][0]
    ids = make_due(own_app, Reminder.appointment_id == appt["id"])
    mail.inbox.refuse = ["550 5.1.1 no such mailbox"] * len(ids)
    run_sweep(own_app)
    rows = reminders(own_desk, appointment_id=appt["id"])
    assert {(r["status"], r["attempts"], r["last_error"]) for r in rows} == {("failed", 1, "SMTP 550")}


def test_sms_goes_through_the_provider_with_the_key_and_a_resend_is_harmless(own_app, own_desk, sms, monkeypatch):
    monkeypatch.setitem(own_app.config, "SMS_URL", sms.url)
    monkeypatch.setitem(own_app.config, "SMS_TOKEN", "t0ken")
    pid = patient(own_desk, channel="sms")
    appt = own_desk.book(pid).json["appointments"][0]
    ids = make_due(own_app, Reminder.appointment_id == appt["id"])
    sms.fail = [503]  # the first call: try again later
    run_sweep(own_app)
    with own_app.app_context():
        db.session.execute(update(Reminder).where(Reminder.id.in_(ids)).values(next_attempt_at=database_now()))
        db.session.commit()
    run_sweep(own_app)
    assert sorted(m["key"] for m in sms.received) == sorted(f"<reminder-{i}@{_domain(own_app)}>" for i in ids)
    assert all(m["to"] == "+15555550100" and m["auth"] == "Bearer t0ken" for m in sms.received)
    assert all(len(m["body"]) <= 160 and not any(w in m["body"].lower() for w in DRUG_WORDS) for m in sms.received)
    # A hand-off whose outcome was lost is sent again with the same key: the provider keeps one.
    with own_app.app_context():
        now = database_now()
        db.session.execute(
            update(Reminder)
            .where(Reminder.id == ids[0])
            .values(status="pending", sent_at=None, claim_token="dead", lease_until=now, handed_off_at=now)
        )
        db.session.commit()
    run_sweep(own_app)
    run_sweep(own_app)
    assert len(sms.received) == len(ids)
    assert {r["status"] for r in reminders(own_desk, appointment_id=appt["id"])} == {"sent"}


def _domain(application) -> str:  # type: ignore[no-untyped-def]
    return application.config.get("MAIL_MESSAGE_ID_DOMAIN") or channels.hostname()


def test_staff_reminders_arrive_in_the_inbox_once(own_app, own_desk):
    pid = patient(own_desk)
    own_desk.book(pid)
    ids = make_due(own_app, (Reminder.kind == "evaluate_benefit") & (Reminder.location_id == own_desk.location_id))
    run_sweep(own_app)
    run_sweep(own_app)
    with own_app.app_context():
        notices = list(db.session.scalars(select(Notice).where(Notice.reminder_id.in_(ids))))
    assert len(notices) == len(ids) and all(n.user_id == own_desk.prescriber.id for n in notices)
    from tests.conftest import bearer

    mine = own_desk.client.get("/api/v1/notices", headers=own_desk.prescriber_h).json
    assert mine["unread"] >= 1 and any(i["kind"] == "evaluate_benefit" for i in mine["items"])
    notice_id = next(i["id"] for i in mine["items"] if i["kind"] == "evaluate_benefit")
    assert own_desk.client.post(f"/api/v1/notices/{notice_id}/read", headers=own_desk.prescriber_h).status_code == 204
    assert own_desk.client.get("/api/v1/notices", headers=own_desk.prescriber_h).json["unread"] == mine["unread"] - 1
    # Someone else's notice is not theirs to read.
    nurse = bearer(own_app, users_of(own_app)("nurse"))
    assert own_desk.client.post(f"/api/v1/notices/{notice_id}/read", headers=nurse).status_code == 404


def test_smtp_helper_refuses_nothing_silently(own_app, mail):
    """An unreachable server is a failed attempt with a reason, not an exception in the worker."""
    with own_app.app_context():
        cfg = channels.smtp_settings({**own_app.config, "MAIL_PORT": 1})
        assert cfg is not None
        with pytest.raises(channels.DeliveryFailed, match="unreachable"):
            channels.SmtpTransport(cfg).prepare(
                Message("appointment", "email", "a@b.test", "s", "b", "s", None, "<reminder-1@x>")
            )
    assert isinstance(smtplib.SMTP, type)


def test_a_patient_who_switches_to_sms_mid_send_gets_a_text_not_the_email(own_app, own_desk, mail, sms, monkeypatch):
    monkeypatch.setitem(own_app.config, "SMS_URL", sms.url)
    pid = patient(own_desk)
    appt = own_desk.book(pid).json["appointments"][0]
    ids = make_due(own_app, Reminder.appointment_id == appt["id"])
    real = channels.SmtpTransport.prepare
    switched = []

    def prepare_then_switch(self, message, slot=0):  # type: ignore[no-untyped-def]
        pending = real(self, message, slot)
        if not switched:
            switched.append(1)
            resp = own_app.test_client().patch(
                f"/api/v1/patients/{pid}", headers=own_desk.desk, json={"preferred_channel": "sms"}
            )
            assert resp.status_code == 200, resp.json
        return pending

    monkeypatch.setattr(channels.SmtpTransport, "prepare", prepare_then_switch)
    first = run_sweep(own_app)
    assert first.get("rechannelled") == len(ids) and mail.inbox.messages == [], first
    run_sweep(own_app)
    assert sorted(m["key"] for m in sms.received) == sorted(f"<reminder-{i}@reminders.test>" for i in ids)
    rows = reminders(own_desk, appointment_id=appt["id"])
    assert {(r["status"], r["channel"]) for r in rows} == {("sent", "sms")}

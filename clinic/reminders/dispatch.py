"""Sending: a beat-driven sweeper claims due reminders, Celery tasks deliver them, exactly once.

Nothing waits in the broker (PITFALLS.md: ETA tasks on Redis are lost and duplicated). The due
times are rows; every few seconds ``claim`` takes what is due, stamps it with a claim token and a
lease, and the caller enqueues small batches of ids for ``deliver``. On PostgreSQL the claim is
``FOR UPDATE SKIP LOCKED`` (two sweepers never take the same row); on SQLite every transaction is
``BEGIN IMMEDIATE``, so claims are serialised by the write lock. A claim whose worker died (or
whose message Redis lost) lapses with its lease and is claimed again under a new token; a task
holding a stale token does nothing.

``deliver`` works in three short transactions per reminder, none held open across the network:

A. under the row lock: still ours, still due (checks.still_due), outside the recipient's quiet
   hours, counted as an attempt; in-app notices are delivered right here, in the same commit;
B. after the transport has done everything that can be undone (channels.py), under the row lock
   again: still ours and still due (a cancel that committed meanwhile wins), then
   ``handed_off_at`` is committed: the point of no return is ours from here;
C. the outcome: ``sent`` (exactly one per reminder), or a failed attempt with exponential back-off
   (``next_attempt_at``), or ``failed`` after the last attempt, with a notice for staff.

A row handed off whose worker died before C is settled by the sweeper when its lease lapses:
sent (e-mail, console), or sent again with the same key (an SMS provider that honours it).
Killed workers (F8) and a Redis restarted empty (F9) therefore lose and double nothing; a second
beat (F11) only runs a sweep that finds nothing left to claim.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, TypeVar

from flask import current_app
from sqlalchemy import func, select, text, update

from clinic.core import tx
from clinic.core.time import database_now
from clinic.extensions import db
from clinic.locations.models import Location
from clinic.patients.models import Patient
from clinic.reminders import checks, rules
from clinic.reminders.channels import (
    AmbiguousOutcome,
    AmbiguousResend,
    DeliveryFailed,
    hostname,
    transport_for,
)
from clinic.reminders.messages import compose
from clinic.reminders.models import Audience, Notice, Reminder, ReminderChannel
from clinic.reminders.models import ReminderStatus as RS
from clinic.reminders.planning import settings_for

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
T = TypeVar("T")

#: transports whose far side deduplicates by our key, so an unknown outcome is simply sent again
RESEND_SAFE = frozenset({"sms-http"})


def _cfg(name: str) -> Any:
    return current_app.config[name]


def _pg() -> bool:
    return db.engine.dialect.name == "postgresql"


def _domain() -> str:
    return str(current_app.config.get("MAIL_MESSAGE_ID_DOMAIN") or hostname())


# --- the sweeper ----------------------------------------------------------------------------------


def claim(clock: Clock = database_now) -> tuple[str, list[int]]:
    """Settle lapsed hand-offs, then claim what is due (at most the batch, and no more than the
    in-flight ceiling), and return the claim token with the ids. The caller commits, then enqueues."""
    now = clock()
    settle_lapsed(now)
    in_flight = db.session.scalar(
        select(func.count())
        .select_from(Reminder)
        .where(Reminder.status == RS.pending.value, Reminder.claim_token.is_not(None), Reminder.lease_until > now)
    )
    room = min(int(_cfg("REMINDER_CLAIM_BATCH")), int(_cfg("REMINDER_MAX_IN_FLIGHT")) - int(in_flight or 0))
    if room <= 0:
        return "", []
    q = (
        select(Reminder.id)
        .where(
            Reminder.status == RS.pending.value,
            Reminder.next_attempt_at <= now,
            Reminder.handed_off_at.is_(None),
            (Reminder.lease_until.is_(None)) | (Reminder.lease_until <= now),
        )
        .order_by(Reminder.next_attempt_at, Reminder.id)
        .limit(room)
    )
    if _pg():
        q = q.with_for_update(skip_locked=True)
    ids = list(db.session.scalars(q))
    if not ids:
        return "", []
    token = uuid.uuid4().hex
    lease = now + timedelta(seconds=int(_cfg("REMINDER_LEASE_SECONDS")))
    for chunk in chunks(ids, 500):
        db.session.execute(
            update(Reminder)
            .where(Reminder.id.in_(chunk))
            .values(claim_token=token, lease_until=lease)
            .execution_options(synchronize_session=False)
        )
    return token, ids


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    size = max(size, 1)
    for i in range(0, len(items), size):
        yield items[i : i + size]


def settle_lapsed(now: datetime) -> int:
    """Hand-offs whose worker died before hearing the outcome, and reminders whose moment passed."""
    lapsed = list(
        db.session.scalars(
            select(Reminder).where(
                Reminder.status == RS.pending.value,
                Reminder.handed_off_at.is_not(None),
                Reminder.lease_until <= now,
            )
        )
    )
    for r in lapsed:
        _settle(r)
    db.session.execute(
        update(Reminder)
        .where(
            Reminder.status == RS.pending.value,
            Reminder.handed_off_at.is_(None),
            Reminder.expires_at <= now,
            (Reminder.lease_until.is_(None)) | (Reminder.lease_until <= now),
        )
        .values(
            status=RS.cancelled.value,
            cancelled_at=now,
            cancel_reason="its moment passed before it could be sent",
            claim_token=None,
            lease_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    return len(lapsed)


def _settle(r: Reminder) -> None:
    if r.transport in RESEND_SAFE:
        r.handed_off_at = None  # the provider deduplicates by the key: send it again
        r.claim_token = r.lease_until = None
        return
    assert r.handed_off_at is not None
    _mark_sent(r, r.handed_off_at, r.provider_ref, note="handed over; the worker stopped before the server's reply")


# --- the sender -----------------------------------------------------------------------------------


def _lock(ids: list[int], *, skip_locked: bool = False) -> list[Reminder]:
    q = select(Reminder).where(Reminder.id.in_(ids)).order_by(Reminder.id).execution_options(populate_existing=True)
    if _pg():
        q = q.with_for_update(skip_locked=skip_locked)
    return list(db.session.scalars(q))


#: kinds whose last look reads the course, not the visit
_SERIES_ONLY = frozenset({"evaluate_benefit", "course_reassessment", "course_completion", "booster_due"})


class _Held:
    """What a batch's checks and messages read, loaded in a few queries and held for the
    transaction (the session's identity map keeps only weak references: without a strong one,
    every ``session.get`` would query again)."""

    def __init__(self, rows: list[Reminder], *, for_messages: bool = True) -> None:
        from clinic.reminders.models import ReminderOptOut
        from clinic.scheduling.models import Appointment, AppointmentSeries

        def load(model: Any, ids: set[int | None]) -> list[Any]:
            wanted = [i for i in ids if i is not None]
            return list(db.session.scalars(select(model).where(model.id.in_(wanted)))) if wanted else []

        self.objects = [
            *load(Patient, {r.patient_id for r in rows}),
            *load(Appointment, {r.appointment_id for r in rows if r.kind not in _SERIES_ONLY}),
            *load(AppointmentSeries, {r.series_id for r in rows if r.kind in _SERIES_ONLY}),
        ]
        if for_messages:
            self.objects += load(Location, {r.location_id for r in rows})
        patients = [r.patient_id for r in rows if r.patient_id is not None]
        self.opted_out: dict[int, set[str]] = {pid: set() for pid in patients}
        if patients:
            for pid, channel in db.session.execute(
                select(ReminderOptOut.patient_id, ReminderOptOut.channel).where(ReminderOptOut.patient_id.in_(patients))
            ):
                self.opted_out[pid].add(channel)

    def still_due(self, r: Reminder, now: datetime) -> str | None:
        return checks.still_due(r, now, opted_out=self.opted_out.get(r.patient_id) if r.patient_id else None)


def _recipient_zone(r: Reminder) -> str:
    if r.patient_id is not None:
        patient = db.session.get(Patient, r.patient_id)
        if patient is not None:
            return patient.timezone
    location = db.session.get(Location, r.location_id)
    assert location is not None
    return location.timezone


def _mark_sent(r: Reminder, at: datetime, ref: str | None, *, note: str | None = None) -> None:
    r.status, r.sent_at, r.provider_ref = RS.sent.value, at, ref
    r.claim_token = r.lease_until = None
    r.last_error = note


def _cancel(r: Reminder, now: datetime, reason: str) -> None:
    r.status, r.cancelled_at, r.cancel_reason = RS.cancelled.value, now, reason[:200]
    r.claim_token = r.lease_until = None


def _backoff(attempts: int) -> timedelta:
    base = int(_cfg("REMINDER_BACKOFF_SECONDS"))
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), 6 * 3600))


def _attempt_failed(r: Reminder, now: datetime, reason: str, *, permanent: bool) -> None:
    r.handed_off_at = None
    r.claim_token = r.lease_until = None
    r.last_error = reason[:300]
    if permanent or r.attempts >= int(_cfg("REMINDER_MAX_ATTEMPTS")):
        _fail(r, now, reason)
    else:
        r.next_attempt_at = now + _backoff(r.attempts)
    logger.warning("reminder %s attempt %s failed: %s", r.id, r.attempts, reason)


def _fail(r: Reminder, now: datetime, reason: str) -> None:
    r.status, r.last_error = RS.failed.value, reason[:300]
    r.claim_token = r.lease_until = None
    # Shown to staff: in the outbox, and as a notice to the front desk (no PHI: kind and number).
    db.session.add(
        Notice(
            location_id=r.location_id,
            role="front_desk",
            kind="reminder_failed",
            title=f"Reminder #{r.id} could not be delivered",
            body=f"A {r.kind.replace('_', ' ')} reminder by {r.channel} failed after {r.attempts} attempt(s): "
            f"{reason[:200]}. Retry or cancel it in the outbox.",
            link="/reminders/outbox?status=failed",
        )
    )


def _deliver_notice(r: Reminder, now: datetime) -> None:
    message = compose(r, domain=_domain())
    db.session.add(
        Notice(
            reminder_id=r.id,
            location_id=r.location_id,
            user_id=r.user_id if r.audience == Audience.user else None,
            role=r.role if r.audience == Audience.role else None,
            kind=r.kind,
            title=message.subject[:200],
            body=message.text[:2000],
            link=message.link,
        )
    )
    r.transport = "in_app"
    _mark_sent(r, now, f"notice:{r.id}")


def _relaxed_commit() -> None:
    """What the next commit records can be lost, without harm, if the database server itself
    crashes in the next moments (PostgreSQL's asynchronous commit): a lost claim is claimed again,
    a lost attempt count only allows one more, and a lost outcome leaves the durable hand-off,
    which the sweeper settles. The hand-off itself is always committed durably."""
    if _pg():
        db.session.execute(text("SET LOCAL synchronous_commit TO OFF"))


def deliver(token: str, ids: list[int], clock: Clock = database_now) -> dict[str, int]:
    """Deliver the reminders of one claim. Safe to run twice, or after a crash at any line."""
    outcome: dict[str, int] = {}

    def count(what: str, n: int = 1) -> None:
        outcome[what] = outcome.get(what, 0) + n

    # A: check, count the attempt, deliver in-app notices, compose the rest.
    outgoing = []
    settings: dict[int, dict[str, Any]] = {}
    _relaxed_commit()
    locked = _lock(ids, skip_locked=True)
    held = _Held(locked)
    now = clock()  # once per transaction: on PostgreSQL it is a round trip (and an autoflush)
    for r in locked:
        if r.status != RS.pending or r.claim_token != token:
            count("stale")
            continue
        if r.handed_off_at is not None:  # this claim's earlier run died past the point of no return
            _settle(r)
            count("settled")
            continue
        reason = held.still_due(r, now)
        if reason:
            _cancel(r, now, reason)
            count("cancelled")
            continue
        if r.channel != ReminderChannel.in_app:
            if r.location_id not in settings:
                settings[r.location_id] = settings_for(r.location_id)
            cfg = settings[r.location_id]
            end = rules.quiet_end(now, cfg["quiet_hours"], _recipient_zone(r))
            if end is not None:  # e.g. a retry that fell into the night: wait for the morning
                r.next_attempt_at = end
                r.claim_token = r.lease_until = None
                count("deferred")
                continue
        r.attempts += 1
        if r.attempts > int(_cfg("REMINDER_MAX_ATTEMPTS")):
            _fail(r, now, "the worker stopped during every attempt")
            count("failed")
            continue
        r.lease_until = now + timedelta(seconds=int(_cfg("REMINDER_LEASE_SECONDS")))
        if r.channel == ReminderChannel.in_app:
            _deliver_notice(r, now)
            count("sent")
            continue
        outgoing.append((r.id, compose(r, domain=_domain())))
    tx.commit()

    for group in chunks(outgoing, int(_cfg("REMINDER_SEND_GROUP"))):
        for what, n in _send_group(token, group, clock).items():
            count(what, n)
    return outcome


def _send_group(token: str, group: list[tuple[int, Any]], clock: Clock) -> dict[str, int]:
    """Take a group of messages up to the point of no return, each on its own connection; commit
    their hand-offs together (B); finish them; record the outcomes together (C)."""
    results: dict[str, int] = {}
    prepared = []
    refused: list[tuple[int, DeliveryFailed]] = []
    for slot, (reminder_id, message) in enumerate(group):
        transport = transport_for(message.channel, current_app.config, current_app.instance_path)
        try:
            prepared.append((reminder_id, message, transport, transport.prepare(message, slot)))
        except DeliveryFailed as exc:
            refused.append((reminder_id, exc))

    # B: the last look under the lock, then the point of no return is committed, durably.
    rows = {r.id: r for r in _lock([p[0] for p in prepared])}
    held = _Held(list(rows.values()), for_messages=False)
    now = clock()
    going = []
    for reminder_id, message, transport, pending in prepared:
        r = rows.get(reminder_id)
        if r is None or r.status != RS.pending or r.claim_token != token or r.handed_off_at is not None:
            pending.abort()
            results["stale"] = results.get("stale", 0) + 1
            continue
        reason = held.still_due(r, now)
        if reason:
            pending.abort()
            _cancel(r, now, reason)
            results["cancelled"] = results.get("cancelled", 0) + 1
            continue
        if r.channel != message.channel:  # the patient chose another channel meanwhile: compose again
            pending.abort()
            r.claim_token = r.lease_until = None
            results["rechannelled"] = results.get("rechannelled", 0) + 1
            continue
        r.handed_off_at, r.transport, r.provider_ref = now, transport.name, message.key
        going.append((reminder_id, message, pending))
    tx.commit()

    # Cross every point of no return at once, then hear the answers: a worker killed between the
    # commit and here loses only what it had not yet crossed, which is microseconds' worth.
    finished: list[tuple[int, str | None, DeliveryFailed | None, str | None]] = []
    crossed = []
    for reminder_id, message, pending in going:
        try:
            pending.cross()
        except DeliveryFailed as exc:
            finished.append((reminder_id, None, exc, None))
        else:
            crossed.append((reminder_id, message, pending))
    for reminder_id, message, pending in crossed:
        try:
            finished.append((reminder_id, pending.outcome(), None, None))
        except AmbiguousOutcome as exc:
            finished.append((reminder_id, message.key, None, str(exc)))
        except DeliveryFailed as exc:
            finished.append((reminder_id, None, exc, None))
    finished.extend((reminder_id, None, exc, None) for reminder_id, exc in refused)

    # C: the outcomes, for the reminders still this claim's.
    _relaxed_commit()
    rows = {r.id: r for r in _lock([f[0] for f in finished])}
    now = clock()
    for reminder_id, ref, failed, note in finished:
        r = rows.get(reminder_id)
        what = "stale"
        if r is not None and r.status == RS.pending and r.claim_token == token:
            if failed is None:
                _mark_sent(r, now, ref, note=note)
                what = "sent"
            else:
                resend = isinstance(failed, AmbiguousResend)
                _attempt_failed(r, now, failed.reason, permanent=failed.permanent and not resend)
                what = "failed" if r.status == RS.failed else "retry"
        results[what] = results.get(what, 0) + 1
    tx.commit()
    return results
